//! The reserved subscription APIs (protocol sections 6 and 7): subscriptions over
//! stream paths (a glob and explicit links), one cursor per linked stream, wakes with
//! a generation and a wake id, webhook delivery (signed, retried with backoff, bounded
//! in time and count) and pull-wake claims, leases that expire.
//!
//! The registry lives in the router's process, beside a store whose streams all live
//! there too ([`Store::local_streams`]): every append reaches it through the router
//! ([`Registry::appended`]). Over a store shared between processes the routes answer
//! `501`.

mod keys;
mod model;
pub(crate) mod routes;
mod state;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use keys::BadSigningKey;
use model::Delivery;
use state::{Effect, Sub};

use crate::store::{Append, Appended, Store};

/// How the reserved subscription APIs behave.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    /// Accept webhook URLs to loopback (`localhost`, `127.0.0.0/8`, `::1`), over
    /// `http://` too: for development and tests only (protocol section 12.8). Private,
    /// link-local and other local addresses are refused either way.
    pub allow_loopback_webhooks: bool,
    /// How long one webhook delivery may take, connection to answer.
    pub webhook_timeout: Duration,
    /// Delivery attempts of one wake (the first and its retries, 1 s to 60 s apart,
    /// doubling, 20 % jitter) before the subscription waits for the next append.
    pub webhook_attempts: u32,
    /// The most subscriptions this server keeps.
    pub max_subscriptions: usize,
    /// The most streams one subscription links.
    pub max_links: usize,
    /// The scheme and authority of the callback and JWKS URLs told to receivers
    /// (`https://streams.example`); by default those of each request's `Host`.
    pub public_origin: Option<String>,
    /// The Ed25519 private key (PKCS#8 DER) that signs webhooks; by default one made
    /// at start, so receivers must refetch the JWKS after a restart.
    pub signing_key_pkcs8: Option<Vec<u8>>,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            allow_loopback_webhooks: false,
            webhook_timeout: Duration::from_secs(10),
            webhook_attempts: 8,
            max_subscriptions: 10_000,
            max_links: 10_000,
            public_origin: None,
            signing_key_pkcs8: None,
        }
    }
}

/// A router's subscriptions: `Ok(None)` over a store shared between processes.
pub(crate) type Subscriptions = Result<Option<Arc<Registry>>, BadSigningKey>;

/// Every subscription of a router.
pub(crate) struct Registry {
    store: Arc<dyn Store>,
    config: SubscriptionConfig,
    base_path: String,
    keys: keys::Keys,
    subs: Mutex<Subs>,
}

#[derive(Default)]
pub(crate) struct Subs {
    by_id: HashMap<String, Sub>,
    /// Distinguishes a subscription from an earlier one of the same id.
    next_instance: u64,
}

impl Registry {
    /// The registry over `store`, or `None` when its streams are not all in this
    /// process.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        config: SubscriptionConfig,
        base_path: &str,
    ) -> Subscriptions {
        if store.local_streams().is_none() {
            return Ok(None);
        }
        let keys = keys::Keys::new(config.signing_key_pkcs8.as_deref())?;
        Ok(Some(Arc::new(Self {
            store,
            config,
            base_path: base_path.trim_end_matches('/').to_owned(),
            keys,
            subs: Mutex::new(Subs::default()),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Subs> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `appended` chunks were added to `path` (created with them, when `created`),
    /// whose tail is now `tail`: links it to the subscriptions whose pattern matches
    /// (at the tail before the append) and wakes those with pending work.
    pub(crate) fn appended(self: &Arc<Self>, path: &str, tail: u64, appended: u64) {
        let now = Instant::now();
        let effects = {
            let mut subs = self.lock();
            let mut effects = Vec::new();
            for (id, sub) in &mut subs.by_id {
                if sub.observe(path, tail, appended, self.config.max_links) {
                    effects.extend(sub.maybe_wake(id, now, &self.keys));
                }
            }
            effects
        };
        self.run(effects);
    }

    /// `path` was deleted: its glob links go, its explicit ones start over at 0.
    pub(crate) fn deleted(&self, path: &str) {
        for sub in self.lock().by_id.values_mut() {
            sub.forget(path);
        }
    }

    /// Carries out what a state change asks for, off the lock.
    fn run(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            let registry = Arc::clone(self);
            match effect {
                Effect::Deliver(job) => {
                    tokio::spawn(async move { registry.deliver(job).await });
                }
                Effect::WriteWake { stream, events } => {
                    tokio::spawn(async move { registry.write_wake(&stream, events).await });
                }
                Effect::LeaseTimer {
                    id,
                    instance,
                    wake_id,
                    at,
                } => {
                    tokio::spawn(
                        async move { registry.lease_timer(id, instance, wake_id, at).await },
                    );
                }
                Effect::RetryTimer { id, instance, at } => {
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let effects = {
                            let mut subs = registry.lock();
                            match subs.by_id.get_mut(&id) {
                                Some(sub) if sub.instance == instance => {
                                    sub.retry_at = None;
                                    sub.maybe_wake(&id, Instant::now(), &registry.keys)
                                }
                                _ => Vec::new(),
                            }
                        };
                        registry.run(effects);
                    });
                }
            }
        }
    }

    /// Waits out a lease, renewed or not; when it expires the wake ends and, with work
    /// pending, another begins (protocol section 7.3).
    async fn lease_timer(self: Arc<Self>, id: String, instance: u64, wake_id: String, at: Instant) {
        let mut at = at;
        loop {
            tokio::time::sleep_until(at).await;
            let now = Instant::now();
            let effects = {
                let mut subs = self.lock();
                let Some(sub) = subs.by_id.get_mut(&id).filter(|s| s.instance == instance) else {
                    return;
                };
                let Some(wake) = sub.wake.as_ref().filter(|w| w.id == wake_id) else {
                    return;
                };
                match wake.lease_until {
                    Some(until) if until > now => {
                        at = until;
                        continue;
                    }
                    None => return,
                    Some(_) => {
                        sub.wake = None;
                        sub.maybe_wake(&id, now, &self.keys)
                    }
                }
            };
            self.run(effects);
            return;
        }
    }

    /// Appends a pull-wake subscription's wake events to its wake stream.
    async fn write_wake(self: &Arc<Self>, stream: &str, events: Vec<Bytes>) {
        let count = events.len() as u64;
        let req = Append {
            content_type: Some("application/json".into()),
            chunks: events,
            close: false,
            stream_seq: None,
            producer: None,
        };
        // A wake stream that is missing, closed or not JSON gets no event: the wake
        // stays in flight and a claim still takes it.
        if let Ok(Appended::Done { tail, .. }) = self.store.append(stream, req).await {
            self.appended(stream, tail, count);
        }
    }

    /// One webhook delivery; its answer acks, waits for a callback, or schedules a
    /// retry.
    async fn deliver(self: Arc<Self>, job: state::Delivery) {
        let body = job.body.to_string().into_bytes();
        let signature = self.keys.signature(crate::memory::unix_ms() / 1000, &body);
        let outcome = webhook::post(
            &job.target,
            self.config.allow_loopback_webhooks,
            &[("Webhook-Signature", signature)],
            &body,
            // One delivery at most in flight: none outlives its wake's lease.
            self.config.webhook_timeout.min(job.timeout),
        )
        .await;
        let done = match &outcome {
            Ok(a) if (200..300).contains(&a.status) => Some(
                serde_json::from_slice::<serde_json::Value>(&a.body)
                    .ok()
                    .and_then(|v| v.get("done").and_then(serde_json::Value::as_bool))
                    == Some(true),
            ),
            _ => None,
        };
        let now = Instant::now();
        let effects = {
            let mut subs = self.lock();
            let Some(sub) = subs
                .by_id
                .get_mut(&job.id)
                .filter(|s| s.instance == job.instance)
            else {
                return;
            };
            if sub.wake.as_ref().map(|w| &w.id) != Some(&job.wake_id) {
                return;
            }
            match done {
                Some(true) => {
                    sub.attempts = 0;
                    sub.failed = false;
                    sub.finish_wake(true);
                    sub.maybe_wake(&job.id, now, &self.keys)
                }
                Some(false) => {
                    sub.attempts = 0;
                    sub.failed = false;
                    Vec::new()
                }
                None => {
                    sub.wake = None;
                    sub.failed = true;
                    sub.attempts += 1;
                    if sub.attempts >= self.config.webhook_attempts {
                        // Given up until the next append.
                        sub.attempts = 0;
                        Vec::new()
                    } else {
                        let backoff = backoff(sub.attempts, self.keys.unit());
                        let at = now + backoff;
                        sub.retry_at = Some(at);
                        vec![Effect::RetryTimer {
                            id: job.id.clone(),
                            instance: job.instance,
                            at,
                        }]
                    }
                }
            }
        };
        self.run(effects);
    }

    /// The absolute URL of a path under the stream root, for receivers.
    fn url(&self, origin: &str, rest: &str) -> String {
        let origin = self.config.public_origin.as_deref().unwrap_or(origin);
        format!(
            "{}{}/__ds/{rest}",
            origin.trim_end_matches('/'),
            self.base_path
        )
    }
}

/// The delay before retry `attempt` (1-based): 1 s doubling to 60 s, ±20 %.
fn backoff(attempt: u32, unit: f64) -> Duration {
    let base = 1000u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(60_000) as f64;
    Duration::from_millis((base * (0.8 + 0.4 * unit)) as u64)
}

/// The delivery kind's name in the protocol's JSON.
fn kind(d: &Delivery) -> &'static str {
    match d {
        Delivery::Webhook { .. } => "webhook",
        Delivery::PullWake { .. } => "pull-wake",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter() {
        assert_eq!(backoff(1, 0.5), Duration::from_millis(1000));
        assert_eq!(backoff(2, 0.5), Duration::from_millis(2000));
        assert_eq!(backoff(7, 0.5), Duration::from_millis(60_000));
        assert_eq!(backoff(40, 0.0), Duration::from_millis(48_000));
        assert_eq!(backoff(40, 1.0), Duration::from_millis(72_000));
    }
}
