//! One subscription's state and its transitions (protocol section 7): links and
//! cursors, the current wake, and what each change asks the registry to do.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::{Duration, Instant};

use super::keys::Keys;
use super::model::{Delivery as Kind, SubConfig};
use super::webhook::Target;
use crate::wire::offset;

/// A linked stream's cursor.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) explicit: bool,
    pub(crate) glob: bool,
    /// Last processed position, inclusive (in chunks).
    pub(crate) acked: u64,
    /// The tail last seen.
    pub(crate) tail: u64,
}

/// The wake in flight.
#[derive(Debug)]
pub(crate) struct Wake {
    pub(crate) id: String,
    /// The claiming worker (pull-wake), or `webhook`.
    pub(crate) holder: Option<String>,
    /// When the lease ends; `None` before a pull-wake claim.
    pub(crate) lease_until: Option<Instant>,
    /// The tails the wake was issued with (acked by a webhook's `{"done": true}`).
    pub(crate) snapshot: Vec<(String, u64)>,
}

/// A webhook delivery to make.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) id: String,
    pub(crate) instance: u64,
    pub(crate) wake_id: String,
    pub(crate) target: Target,
    pub(crate) body: Value,
    /// The wake's lease.
    pub(crate) timeout: Duration,
}

/// What a transition asks the registry to do once the lock is released.
#[derive(Debug)]
pub(crate) enum Effect {
    Deliver(Delivery),
    WriteWake {
        stream: String,
        events: Vec<Bytes>,
    },
    LeaseTimer {
        id: String,
        instance: u64,
        wake_id: String,
        at: Instant,
    },
    RetryTimer {
        id: String,
        instance: u64,
        at: Instant,
    },
}

#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) config: SubConfig,
    pub(crate) hash: Vec<u8>,
    pub(crate) instance: u64,
    pub(crate) created_at_ms: u64,
    /// The checked webhook URL.
    pub(crate) target: Option<Target>,
    /// Callback URL of webhook bodies.
    pub(crate) callback_url: String,
    pub(crate) links: BTreeMap<String, Link>,
    pub(crate) generation: u64,
    pub(crate) wake: Option<Wake>,
    /// A webhook delivery failed (and has not succeeded since).
    pub(crate) failed: bool,
    pub(crate) attempts: u32,
    /// A retry is scheduled then: no other wake until it.
    pub(crate) retry_at: Option<Instant>,
}

impl Sub {
    /// Sees an append to `path`; links it when the pattern matches (at the tail
    /// before the append). Whether the subscription links it.
    pub(crate) fn observe(
        &mut self,
        path: &str,
        tail: u64,
        appended: u64,
        max_links: usize,
    ) -> bool {
        if self.config.wake_stream() == Some(path) {
            return false;
        }
        if let Some(link) = self.links.get_mut(path) {
            link.tail = link.tail.max(tail);
            return true;
        }
        if !self.config.matches(path) || self.links.len() >= max_links {
            return false;
        }
        let before = tail.saturating_sub(appended);
        self.links.insert(
            path.to_owned(),
            Link {
                explicit: false,
                glob: true,
                acked: before,
                tail,
            },
        );
        true
    }

    /// Links `path` explicitly at `tail` (idempotent: an existing cursor stays).
    pub(crate) fn link_explicit(&mut self, path: &str, tail: u64, max_links: usize) -> bool {
        if self.config.wake_stream() == Some(path) {
            return true;
        }
        if let Some(link) = self.links.get_mut(path) {
            link.explicit = true;
            return true;
        }
        if self.links.len() >= max_links {
            return false;
        }
        self.links.insert(
            path.to_owned(),
            Link {
                explicit: true,
                glob: false,
                acked: tail,
                tail,
            },
        );
        true
    }

    /// Removes the explicit link to `path`; a glob link stays.
    pub(crate) fn unlink_explicit(&mut self, path: &str) {
        if let Some(link) = self.links.get_mut(path) {
            link.explicit = false;
            if !link.glob {
                self.links.remove(path);
            }
        }
    }

    /// `path` was deleted.
    pub(crate) fn forget(&mut self, path: &str) {
        if let Some(link) = self.links.get_mut(path) {
            if link.explicit {
                link.glob = false;
                link.acked = 0;
                link.tail = 0;
            } else {
                self.links.remove(path);
            }
        }
    }

    pub(crate) fn pending(&self) -> bool {
        self.links.values().any(|l| l.tail > l.acked)
    }

    /// Issues a wake when there is pending work, no wake in flight and no retry
    /// scheduled (protocol section 7).
    pub(crate) fn maybe_wake(&mut self, id: &str, now: Instant, keys: &Keys) -> Vec<Effect> {
        if self.wake.is_some() || self.retry_at.is_some_and(|at| at > now) || !self.pending() {
            return Vec::new();
        }
        self.retry_at = None;
        self.generation += 1;
        let wake_id = keys.random_id("w_");
        let snapshot: Vec<(String, u64)> = self
            .links
            .iter()
            .map(|(p, l)| (p.clone(), l.tail))
            .collect();
        let streams = self.streams_view(true);
        let mut effects = Vec::new();
        match &self.config.delivery {
            Kind::Webhook { .. } => {
                let until = now + Duration::from_millis(self.config.lease_ttl_ms);
                let token = keys.token(self.instance, id, self.generation, &wake_id);
                if let Some(target) = self.target.clone() {
                    effects.push(Effect::Deliver(Delivery {
                        id: id.to_owned(),
                        instance: self.instance,
                        wake_id: wake_id.clone(),
                        target,
                        timeout: Duration::from_millis(self.config.lease_ttl_ms),
                        body: json!({
                            "subscription_id": id,
                            "wake_id": wake_id,
                            "generation": self.generation,
                            "streams": streams,
                            "callback_url": self.callback_url,
                            "callback_token": token,
                        }),
                    }));
                }
                effects.push(Effect::LeaseTimer {
                    id: id.to_owned(),
                    instance: self.instance,
                    wake_id: wake_id.clone(),
                    at: until,
                });
                self.wake = Some(Wake {
                    id: wake_id,
                    holder: Some("webhook".into()),
                    lease_until: Some(until),
                    snapshot,
                });
            }
            Kind::PullWake { wake_stream } => {
                let ts = crate::memory::unix_ms();
                let events = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.tail > l.acked)
                    .map(|(path, _)| {
                        Bytes::from(
                            json!({
                                "type": "wake",
                                "subscription_id": id,
                                "stream": path,
                                "generation": self.generation,
                                "ts": ts,
                            })
                            .to_string(),
                        )
                    })
                    .collect();
                effects.push(Effect::WriteWake {
                    stream: wake_stream.clone(),
                    events,
                });
                self.wake = Some(Wake {
                    id: wake_id,
                    holder: None,
                    lease_until: None,
                    snapshot,
                });
            }
        }
        effects
    }

    /// Ends the wake in flight, acking its snapshot first when `ack_snapshot`.
    pub(crate) fn finish_wake(&mut self, ack_snapshot: bool) {
        if let Some(wake) = self.wake.take() {
            if ack_snapshot {
                for (path, tail) in wake.snapshot {
                    if let Some(link) = self.links.get_mut(&path) {
                        link.acked = link.acked.max(tail.min(link.tail));
                    }
                }
            }
        }
    }

    /// The linked streams as the protocol's JSON; with tails for a wake.
    pub(crate) fn streams_view(&self, with_tails: bool) -> Vec<Value> {
        self.links
            .iter()
            .map(|(path, l)| {
                let mut v = json!({
                    "path": path,
                    "link_type": if l.explicit { "explicit" } else { "glob" },
                    "acked_offset": offset(l.acked),
                });
                if with_tails {
                    v["tail_offset"] = json!(offset(l.tail));
                    v["has_pending"] = json!(l.tail > l.acked);
                }
                v
            })
            .collect()
    }

    /// The subscription as `GET` answers it (protocol section 6.3).
    pub(crate) fn view(&self, id: &str, kid: &str, jwks_url: &str) -> Value {
        let (webhook, wake_stream) = match &self.config.delivery {
            Kind::Webhook { url } => (
                json!({ "url": url, "signing": { "alg": "ed25519", "kid": kid, "jwks_url": jwks_url } }),
                Value::Null,
            ),
            Kind::PullWake { wake_stream } => (Value::Null, json!(wake_stream)),
        };
        json!({
            "id": id,
            "subscription_id": id,
            "type": super::kind(&self.config.delivery),
            "pattern": self.config.pattern,
            "streams": self.streams_view(false),
            "webhook": webhook,
            "wake_stream": wake_stream,
            "lease_ttl_ms": self.config.lease_ttl_ms,
            "created_at": crate::wire::format_rfc3339(self.created_at_ms),
            "status": if self.failed { "failed" } else { "active" },
            "description": self.config.description,
        })
    }
}
