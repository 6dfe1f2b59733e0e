//! An in-process stand-in for Redis: string keys with expiry and pub/sub, executing the
//! engine's [`Op`]s with Redis's semantics and error texts.
//!
//! It is the embedded backend of a single-instance server (no Redis needed), and the
//! Redis inside the simulator that tests the engine.

use crate::io::{Op, Reply, ReplyError};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Names one connection of a [`MemoryRedis`]: the subscriber that messages go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// A message to deliver: (subscriber, channel, message).
pub type Delivery = (ClientId, Bytes, Bytes);

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
}

/// Keys and pub/sub in memory, with Redis's semantics for the commands the protocol
/// uses.
///
/// ```
/// use resumable_stream::{MemoryRedis, Op, Reply};
/// use std::time::Instant;
///
/// let mut redis = MemoryRedis::new();
/// let client = redis.connect();
/// let (reply, _) = redis.execute(Instant::now(), client, &Op::Incr { key: "k".into() });
/// assert_eq!(reply, Ok(Reply::Integer(1)));
/// ```
#[derive(Debug, Default)]
pub struct MemoryRedis {
    keys: HashMap<Bytes, Entry>,
    // Keyed by (sharded, channel): as in Redis, SPUBLISH reaches only SSUBSCRIBE
    // subscribers and PUBLISH only SUBSCRIBE ones.
    subscribers: HashMap<(bool, Bytes), Vec<ClientId>>,
    subscriptions: HashMap<ClientId, HashSet<(bool, Bytes)>>,
    next_client: u64,
    commands_executed: u64,
}

impl MemoryRedis {
    /// An empty store.
    pub fn new() -> MemoryRedis {
        MemoryRedis::default()
    }

    /// A new client id, for one engine's connections.
    pub fn connect(&mut self) -> ClientId {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        id
    }

    /// Drops every subscription of `client`, as Redis does when its connection closes.
    pub fn disconnect(&mut self, client: ClientId) {
        for channel in self.subscriptions.remove(&client).unwrap_or_default() {
            self.remove_subscriber(&channel, client);
        }
    }

    /// How many commands ran so far.
    pub fn commands_executed(&self) -> u64 {
        self.commands_executed
    }

    /// Sets `key` to `value` without expiry, as a test or an operator would with
    /// `redis-cli SET`.
    pub fn set_raw(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.keys.insert(
            key.into(),
            Entry {
                value: value.into(),
                expires_at: None,
            },
        );
    }

    /// Deletes `key`, as `DEL` would.
    pub fn delete(&mut self, key: &[u8]) {
        self.keys.remove(key);
    }

    /// The value of `key` at `now`, if it exists.
    pub fn get_raw(&mut self, now: Instant, key: &[u8]) -> Option<Bytes> {
        self.live(now, key).map(|e| e.value.clone())
    }

    /// The expiry of `key`, if it exists and has one.
    pub fn expiry(&mut self, now: Instant, key: &[u8]) -> Option<Instant> {
        self.live(now, key).and_then(|e| e.expires_at)
    }

    fn live(&mut self, now: Instant, key: &[u8]) -> Option<&mut Entry> {
        if matches!(self.keys.get(key), Some(e) if e.expires_at.is_some_and(|t| t <= now)) {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    fn remove_subscriber(&mut self, channel: &(bool, Bytes), client: ClientId) {
        if let Some(list) = self.subscribers.get_mut(channel) {
            list.retain(|c| *c != client);
            if list.is_empty() {
                self.subscribers.remove(channel);
            }
        }
    }

    /// Runs `op` for `client` at time `now`: its reply, and the messages a PUBLISH
    /// delivers (in subscription order).
    pub fn execute(
        &mut self,
        now: Instant,
        client: ClientId,
        op: &Op,
    ) -> (Result<Reply, ReplyError>, Vec<Delivery>) {
        self.commands_executed += 1;
        let mut deliveries = Vec::new();
        let reply = match op {
            Op::Incr { key } => match self.live(now, key) {
                None => {
                    self.keys.insert(
                        key.clone(),
                        Entry {
                            value: Bytes::from_static(b"1"),
                            expires_at: None,
                        },
                    );
                    Ok(Reply::Integer(1))
                }
                Some(entry) => {
                    let parsed = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok());
                    match parsed.and_then(|n| n.checked_add(1)) {
                        Some(n) => {
                            entry.value = Bytes::from(n.to_string());
                            Ok(Reply::Integer(n))
                        }
                        None => Err(ReplyError::Server(
                            "ERR value is not an integer or out of range".to_owned(),
                        )),
                    }
                }
            },
            Op::Set {
                key,
                value,
                expire_seconds,
            } => {
                if *expire_seconds == 0 {
                    Err(ReplyError::Server(
                        "ERR invalid expire time in 'set' command".to_owned(),
                    ))
                } else {
                    let expires_at =
                        now.checked_add(std::time::Duration::from_secs(*expire_seconds));
                    self.keys.insert(
                        key.clone(),
                        Entry {
                            value: value.clone(),
                            expires_at,
                        },
                    );
                    Ok(Reply::Ok)
                }
            }
            Op::Get { key } => Ok(self
                .live(now, key)
                .map_or(Reply::Nil, |e| Reply::Data(e.value.clone()))),
            Op::Publish { channel, message } | Op::SPublish { channel, message } => {
                let slot = (matches!(op, Op::SPublish { .. }), channel.clone());
                let receivers = self
                    .subscribers
                    .get(&slot)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                for client in receivers {
                    deliveries.push((*client, channel.clone(), message.clone()));
                }
                Ok(Reply::Integer(receivers.len() as i64))
            }
            Op::Subscribe { channel } | Op::SSubscribe { channel } => {
                let slot = (matches!(op, Op::SSubscribe { .. }), channel.clone());
                if self
                    .subscriptions
                    .entry(client)
                    .or_default()
                    .insert(slot.clone())
                {
                    self.subscribers.entry(slot).or_default().push(client);
                }
                Ok(Reply::Ok)
            }
            Op::Unsubscribe { channel } | Op::SUnsubscribe { channel } => {
                let slot = (matches!(op, Op::SUnsubscribe { .. }), channel.clone());
                if let Some(set) = self.subscriptions.get_mut(&client) {
                    set.remove(&slot);
                }
                self.remove_subscriber(&slot, client);
                Ok(Reply::Ok)
            }
        };
        (reply, deliveries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn incr_on_done_is_the_redis_error() {
        let mut redis = MemoryRedis::new();
        let c = redis.connect();
        let now = Instant::now();
        redis.set_raw("k", "DONE");
        let (reply, _) = redis.execute(now, c, &Op::Incr { key: "k".into() });
        assert_eq!(
            reply,
            Err(ReplyError::Server(
                "ERR value is not an integer or out of range".into()
            ))
        );
    }

    #[test]
    fn keys_expire() {
        let mut redis = MemoryRedis::new();
        let c = redis.connect();
        let now = Instant::now();
        let set = Op::Set {
            key: "k".into(),
            value: "1".into(),
            expire_seconds: 2,
        };
        assert_eq!(redis.execute(now, c, &set).0, Ok(Reply::Ok));
        let get = Op::Get { key: "k".into() };
        assert_eq!(
            redis.execute(now + Duration::from_secs(1), c, &get).0,
            Ok(Reply::Data("1".into()))
        );
        assert_eq!(
            redis.execute(now + Duration::from_secs(2), c, &get).0,
            Ok(Reply::Nil)
        );
    }

    #[test]
    fn publish_reaches_subscribers_until_they_leave() {
        let mut redis = MemoryRedis::new();
        let (a, b) = (redis.connect(), redis.connect());
        let now = Instant::now();
        let _ = redis.execute(
            now,
            a,
            &Op::Subscribe {
                channel: "ch".into(),
            },
        );
        let _ = redis.execute(
            now,
            b,
            &Op::Subscribe {
                channel: "ch".into(),
            },
        );
        let _ = redis.execute(
            now,
            b,
            &Op::Subscribe {
                channel: "ch".into(),
            },
        );
        let publish = Op::Publish {
            channel: "ch".into(),
            message: "m".into(),
        };
        let (reply, deliveries) = redis.execute(now, a, &publish);
        assert_eq!(reply, Ok(Reply::Integer(2)));
        assert_eq!(deliveries.len(), 2);
        redis.disconnect(a);
        let _ = redis.execute(
            now,
            b,
            &Op::Unsubscribe {
                channel: "ch".into(),
            },
        );
        assert_eq!(redis.execute(now, a, &publish).0, Ok(Reply::Integer(0)));
    }

    #[test]
    fn sharded_and_classic_channels_are_apart() {
        let mut redis = MemoryRedis::new();
        let (a, b) = (redis.connect(), redis.connect());
        let now = Instant::now();
        let _ = redis.execute(
            now,
            a,
            &Op::SSubscribe {
                channel: "ch".into(),
            },
        );
        let _ = redis.execute(
            now,
            b,
            &Op::Subscribe {
                channel: "ch".into(),
            },
        );
        let spublish = Op::SPublish {
            channel: "ch".into(),
            message: "m".into(),
        };
        let (reply, deliveries) = redis.execute(now, b, &spublish);
        assert_eq!(reply, Ok(Reply::Integer(1)));
        assert_eq!(deliveries, vec![(a, "ch".into(), "m".into())]);
        let _ = redis.execute(
            now,
            a,
            &Op::SUnsubscribe {
                channel: "ch".into(),
            },
        );
        assert_eq!(redis.execute(now, b, &spublish).0, Ok(Reply::Integer(0)));
    }
}
