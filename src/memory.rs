//! An in-process stand-in for Redis: string and stream keys with expiry, and pub/sub,
//! executing the engine's [`Op`]s with Redis 7.0's semantics and error texts.
//!
//! It is the embedded backend of a single-instance server (no Redis needed), and the
//! Redis inside the simulator that tests the engine.

mod streams;

use crate::io::{Op, Reply, ReplyError};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use streams::Stream;

/// What Redis answers a command on a key of another type.
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// What Redis answers a number argument that does not fit a signed 64-bit integer.
const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// A Redis error reply with this text.
fn server(text: impl Into<String>) -> ReplyError {
    ReplyError::Server(text.into())
}

/// Names one connection of a [`MemoryRedis`]: the subscriber that messages go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// A message to deliver: (subscriber, channel, message).
pub type Delivery = (ClientId, Bytes, Bytes);

/// A key's value: as in Redis, a key holds one type.
#[derive(Debug, Clone)]
enum Value {
    String(Bytes),
    Stream(Stream),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    expires_at: Option<Instant>,
}

impl Entry {
    fn string(value: Bytes, expires_at: Option<Instant>) -> Entry {
        Entry {
            value: Value::String(value),
            expires_at,
        }
    }
}

/// The instant `millis` after `now`, as Redis 7.0 takes a relative expiry in
/// milliseconds: a number beyond a signed 64-bit integer is refused as one, and one
/// past what the clock can hold as an invalid expire time for `command`.
fn expire_at(now: Instant, millis: u64, command: &str) -> Result<Instant, ReplyError> {
    if i64::try_from(millis).is_err() {
        return Err(server(NOT_AN_INTEGER));
    }
    now.checked_add(Duration::from_millis(millis))
        .ok_or_else(|| server(format!("ERR invalid expire time in '{command}' command")))
}

/// Keys (strings and streams) and pub/sub in memory, with Redis 7.0's semantics for the
/// commands the protocol uses.
///
/// `XREAD` is answered as without `BLOCK` (nil when no stream has a new entry): waiting
/// is the business of whoever holds the connection, who parks the read and asks
/// [`serve_blocked_read`](MemoryRedis::serve_blocked_read) after each `XADD` (as the
/// simulator does).
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
        self.keys
            .insert(key.into(), Entry::string(value.into(), None));
    }

    /// Deletes `key`, as `DEL` would.
    pub fn delete(&mut self, key: &[u8]) {
        self.keys.remove(key);
    }

    /// The value of `key` at `now`, if it exists and holds a string (`None` for a stream).
    pub fn get_raw(&mut self, now: Instant, key: &[u8]) -> Option<Bytes> {
        match self.live(now, key)?.value {
            Value::String(ref value) => Some(value.clone()),
            Value::Stream(_) => None,
        }
    }

    /// The expiry of `key` (a string or a stream), if it exists and has one.
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

    /// `INCR key`: a missing key counts from 0 (and gets no expiry).
    fn incr(&mut self, now: Instant, key: &Bytes) -> Result<Reply, ReplyError> {
        let Some(entry) = self.live(now, key) else {
            self.keys
                .insert(key.clone(), Entry::string(Bytes::from_static(b"1"), None));
            return Ok(Reply::Integer(1));
        };
        let Value::String(value) = &mut entry.value else {
            return Err(server(WRONGTYPE));
        };
        let parsed = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        match parsed.and_then(|n| n.checked_add(1)) {
            Some(n) => {
                *value = Bytes::from(n.to_string());
                Ok(Reply::Integer(n))
            }
            None => Err(server(NOT_AN_INTEGER)),
        }
    }

    /// `SET key value PX millis`: replaces a value of any type, and its expiry.
    fn set_px(
        &mut self,
        now: Instant,
        key: &Bytes,
        value: &Bytes,
        millis: u64,
    ) -> Result<Reply, ReplyError> {
        if millis == 0 {
            return Err(server("ERR invalid expire time in 'set' command"));
        }
        let at = expire_at(now, millis, "set")?;
        self.keys
            .insert(key.clone(), Entry::string(value.clone(), Some(at)));
        Ok(Reply::Ok)
    }

    /// `PEXPIRE key millis`: 1 once a key of any type has its new expiry (an expiry
    /// already reached deletes it, as Redis does), 0 for a missing key.
    fn pexpire(&mut self, now: Instant, key: &[u8], millis: u64) -> Result<Reply, ReplyError> {
        // Redis refuses an expiry it cannot compute before it looks the key up.
        let at = expire_at(now, millis, "pexpire")?;
        let Some(entry) = self.live(now, key) else {
            return Ok(Reply::Integer(0));
        };
        if at <= now {
            self.keys.remove(key);
        } else {
            entry.expires_at = Some(at);
        }
        Ok(Reply::Integer(1))
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
            Op::Incr { key } => self.incr(now, key),
            Op::Set {
                key,
                value,
                expire_seconds,
            } => {
                if *expire_seconds == 0 {
                    Err(server("ERR invalid expire time in 'set' command"))
                } else {
                    let expires_at = now.checked_add(Duration::from_secs(*expire_seconds));
                    self.keys
                        .insert(key.clone(), Entry::string(value.clone(), expires_at));
                    Ok(Reply::Ok)
                }
            }
            Op::SetPx {
                key,
                value,
                expire_millis,
            } => self.set_px(now, key, value, *expire_millis),
            Op::Get { key } => match self.live(now, key) {
                None => Ok(Reply::Nil),
                Some(Entry {
                    value: Value::String(value),
                    ..
                }) => Ok(Reply::Data(value.clone())),
                Some(_) => Err(server(WRONGTYPE)),
            },
            Op::PExpire { key, millis } => self.pexpire(now, key, *millis),
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
            Op::XAdd {
                key,
                create,
                id,
                fields,
            } => self.xadd(now, key, *create, *id, fields),
            Op::XRange {
                key,
                start,
                end,
                count,
            } => self.xrange(now, key, *start, *end, *count),
            Op::XRead {
                count,
                block_millis,
                streams,
            } => self.xread(now, *count, *block_millis, streams),
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
    fn set_px_expires_in_milliseconds_and_refuses_0() {
        let mut redis = MemoryRedis::new();
        let c = redis.connect();
        let now = Instant::now();
        let set_px = |millis| Op::SetPx {
            key: "k".into(),
            value: "v".into(),
            expire_millis: millis,
        };
        assert_eq!(
            redis.execute(now, c, &set_px(0)).0,
            Err(ReplyError::Server(
                "ERR invalid expire time in 'set' command".into()
            ))
        );
        assert_eq!(
            redis.execute(now, c, &set_px(u64::MAX)).0,
            Err(ReplyError::Server(NOT_AN_INTEGER.into()))
        );
        assert_eq!(
            redis.get_raw(now, b"k"),
            None,
            "refused commands set nothing"
        );
        assert_eq!(redis.execute(now, c, &set_px(1500)).0, Ok(Reply::Ok));
        assert_eq!(
            redis.expiry(now, b"k"),
            Some(now + Duration::from_millis(1500))
        );
        let get = Op::Get { key: "k".into() };
        let almost = now + Duration::from_millis(1499);
        assert_eq!(
            redis.execute(almost, c, &get).0,
            Ok(Reply::Data("v".into()))
        );
        let expired = now + Duration::from_millis(1500);
        assert_eq!(redis.execute(expired, c, &get).0, Ok(Reply::Nil));
        // SET without PX drops the expiry SET PX gave, and the reverse.
        redis.set_raw("k", "w");
        assert_eq!(redis.execute(now, c, &set_px(10)).0, Ok(Reply::Ok));
        assert_eq!(
            redis.expiry(now, b"k"),
            Some(now + Duration::from_millis(10))
        );
    }

    #[test]
    fn pexpire_sets_the_expiry_of_an_existing_key() {
        let mut redis = MemoryRedis::new();
        let c = redis.connect();
        let now = Instant::now();
        let pexpire = |key: &'static str, millis| Op::PExpire {
            key: key.into(),
            millis,
        };
        assert_eq!(
            redis.execute(now, c, &pexpire("k", 100)).0,
            Ok(Reply::Integer(0))
        );
        assert_eq!(
            redis.get_raw(now, b"k"),
            None,
            "a missing key stays missing"
        );
        redis.set_raw("k", "v");
        assert_eq!(
            redis.execute(now, c, &pexpire("k", 100)).0,
            Ok(Reply::Integer(1))
        );
        assert_eq!(
            redis.expiry(now, b"k"),
            Some(now + Duration::from_millis(100))
        );
        // Renewing moves the expiry, later or earlier.
        let later = now + Duration::from_millis(60);
        assert_eq!(
            redis.execute(later, c, &pexpire("k", 100)).0,
            Ok(Reply::Integer(1))
        );
        assert_eq!(
            redis.get_raw(now + Duration::from_millis(159), b"k"),
            Some("v".into())
        );
        assert_eq!(redis.get_raw(now + Duration::from_millis(160), b"k"), None);
        let expired = now + Duration::from_millis(160);
        assert_eq!(
            redis.execute(expired, c, &pexpire("k", 100)).0,
            Ok(Reply::Integer(0)),
            "an expired key is missing"
        );
        // An expiry already reached deletes the key, which counts as set.
        redis.set_raw("k", "v");
        assert_eq!(
            redis.execute(now, c, &pexpire("k", 0)).0,
            Ok(Reply::Integer(1))
        );
        assert_eq!(redis.get_raw(now, b"k"), None);
        redis.set_raw("k", "v");
        assert_eq!(
            redis.execute(now, c, &pexpire("k", u64::MAX)).0,
            Err(ReplyError::Server(NOT_AN_INTEGER.into()))
        );
        assert_eq!(
            redis.expiry(now, b"k"),
            None,
            "a refused PEXPIRE changes nothing"
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
