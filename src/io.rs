//! What crosses the boundary between the engine and a driver: commands going out to
//! Redis, replies and pub/sub messages coming back.
//!
//! A driver never interprets these. It sends each [`Command`] on the connection that
//! [`Op::connection`] names, in the order the engine emitted them, and hands every reply
//! back with the command's [`CommandId`].

use bytes::Bytes;
use std::fmt;

/// Identifies one command so that its reply finds its way back to the engine.
///
/// Ids grow monotonically within one engine; they are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// The connection a command must travel on.
///
/// Order matters only within one connection: a driver keeps the engine's order per
/// connection, and may pipeline freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Connection {
    /// The ordinary request/response connection (INCR, SET, GET, PUBLISH).
    Commands,
    /// The connection in subscriber mode (SUBSCRIBE, UNSUBSCRIBE), which also receives
    /// the pub/sub messages.
    PubSub,
    /// A connection reserved for blocking reads (`XREAD BLOCK`, durable mode's live
    /// tail): never the command connection, which a blocked read would stall. A driver
    /// may keep several, with one such command in flight on each; commands on it are
    /// independent of each other, so their order does not matter.
    Blocking,
}

/// What happened to the pub/sub connection, as a driver tells the engine
/// ([`Engine::handle_pubsub_state`](crate::Engine::handle_pubsub_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PubSubState {
    /// It dropped, and the driver is reconnecting: Redis forgot every subscription,
    /// and messages published meanwhile are lost.
    Interrupted,
    /// It is back after [`Interrupted`](PubSubState::Interrupted): the engine
    /// subscribes every channel again.
    Restored,
    /// It is lost for good (the driver gave up reconnecting).
    Lost,
}

/// One Redis command, as the engine wants it sent.
///
/// Keys, channels and payloads are [`Bytes`] shared with the engine's own state: cloning
/// a command never copies a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `INCR key`
    Incr {
        /// The key to increment.
        key: Bytes,
    },
    /// `SET key value EX seconds`
    Set {
        /// The key to set.
        key: Bytes,
        /// Its new value.
        value: Bytes,
        /// The expiry in whole seconds (`EX`), always at least 1.
        expire_seconds: u64,
    },
    /// `GET key`
    Get {
        /// The key to read.
        key: Bytes,
    },
    /// `PUBLISH channel message`
    Publish {
        /// The channel to publish on.
        channel: Bytes,
        /// The message, byte for byte.
        message: Bytes,
    },
    /// `SUBSCRIBE channel`. The reply is the subscription's confirmation.
    Subscribe {
        /// The channel to subscribe to.
        channel: Bytes,
    },
    /// `UNSUBSCRIBE channel`. The reply is the confirmation.
    Unsubscribe {
        /// The channel to leave.
        channel: Bytes,
    },
    /// `SPUBLISH channel message`: Redis 7's sharded pub/sub, which a cluster routes to
    /// the shard owning the channel's slot (see [`PubSub::Sharded`](crate::PubSub)).
    SPublish {
        /// The channel to publish on.
        channel: Bytes,
        /// The message, byte for byte.
        message: Bytes,
    },
    /// `SSUBSCRIBE channel`: its messages arrive as `smessage`. The reply is the
    /// subscription's confirmation.
    SSubscribe {
        /// The channel to subscribe to.
        channel: Bytes,
    },
    /// `SUNSUBSCRIBE channel`. The reply is the confirmation.
    SUnsubscribe {
        /// The channel to leave.
        channel: Bytes,
    },
    /// `SET key value PX milliseconds`: durable mode's producer lease.
    SetPx {
        /// The key to set.
        key: Bytes,
        /// Its new value.
        value: Bytes,
        /// The expiry in milliseconds (`PX`), always at least 1.
        expire_millis: u64,
    },
    /// `PEXPIRE key milliseconds`: the reply is 1, or 0 for a missing key.
    PExpire {
        /// The key whose expiry is set.
        key: Bytes,
        /// The expiry in milliseconds, always at least 1.
        millis: u64,
    },
    /// `XADD key [NOMKSTREAM] id field value [field value ...]`: appends one entry, with
    /// an explicit id, to a Redis Stream (durable mode's log). Redis refuses an id not
    /// above the stream's last one: that refusal is durable mode's fencing. Without
    /// `create` (`NOMKSTREAM`) a missing stream is not made: the reply is nil.
    XAdd {
        /// The stream's key.
        key: Bytes,
        /// Whether a missing stream is created (else `NOMKSTREAM`: a log that expired
        /// or was lost is never made anew from its middle).
        create: bool,
        /// The entry's id.
        id: StreamId,
        /// Field, value, field, value, ... (never empty, always an even count).
        fields: Vec<Bytes>,
    },
    /// `XRANGE key start end COUNT count`: entries with ids from `start` to `end`,
    /// both included, at most `count` of them. The reply is an array of entries, each
    /// an array of the id and an array of fields and values.
    XRange {
        /// The stream's key.
        key: Bytes,
        /// The first id wanted.
        start: StreamId,
        /// The last id wanted.
        end: StreamId,
        /// At most this many entries.
        count: u64,
    },
    /// `XREAD COUNT count BLOCK millis STREAMS key... id...`: entries after each id, or
    /// nil when none came within `block_millis`. Travels on
    /// [`Connection::Blocking`]; on a Redis Cluster every key is in one slot. The reply
    /// is an array of (key, entries) pairs (a map in RESP3, which transports turn into
    /// the same array).
    XRead {
        /// At most this many entries per stream.
        count: u64,
        /// How long Redis may wait for a first entry, in milliseconds (at least 1).
        block_millis: u64,
        /// Each stream's key and the id after which to read.
        streams: Vec<(Bytes, StreamId)>,
    },
}

/// The id of an entry of a Redis Stream: `ms-seq`.
///
/// ```
/// use resumable_stream::StreamId;
/// assert_eq!(StreamId::new(3, 2).to_string(), "3-2");
/// assert_eq!(StreamId::parse(b"3-2"), Some(StreamId::new(3, 2)));
/// assert_eq!(StreamId::parse(b"3"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// The first part (milliseconds, for ids Redis makes).
    pub ms: u64,
    /// The second part (a sequence number).
    pub seq: u64,
}

impl StreamId {
    /// The id `ms-seq`.
    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The largest id a stream can hold.
    pub const MAX: StreamId = StreamId::new(u64::MAX, u64::MAX);

    /// Parses `ms-seq`, as Redis writes ids in its replies.
    pub fn parse(text: &[u8]) -> Option<StreamId> {
        let dash = text.iter().position(|&b| b == b'-')?;
        let number = |digits: &[u8]| -> Option<u64> {
            if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(digits).ok()?.parse().ok()
        };
        Some(StreamId::new(
            number(&text[..dash])?,
            number(&text[dash + 1..])?,
        ))
    }

    /// `ms-seq` written at the end of `buffer`, without allocating.
    fn write<'b>(&self, buffer: &'b mut [u8; 41]) -> &'b [u8] {
        let mut seq = [0u8; 20];
        let mut ms = [0u8; 20];
        let seq = decimal(self.seq, &mut seq);
        let ms = decimal(self.ms, &mut ms);
        let len = ms.len() + 1 + seq.len();
        let start = buffer.len() - len;
        buffer[start..start + ms.len()].copy_from_slice(ms);
        buffer[start + ms.len()] = b'-';
        buffer[start + ms.len() + 1..].copy_from_slice(seq);
        &buffer[start..]
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl Op {
    /// The connection this command travels on.
    pub fn connection(&self) -> Connection {
        match self {
            Op::Subscribe { .. }
            | Op::Unsubscribe { .. }
            | Op::SSubscribe { .. }
            | Op::SUnsubscribe { .. } => Connection::PubSub,
            Op::XRead { .. } => Connection::Blocking,
            _ => Connection::Commands,
        }
    }

    /// The Redis command name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Incr { .. } => "INCR",
            Op::Set { .. } => "SET",
            Op::Get { .. } => "GET",
            Op::Publish { .. } => "PUBLISH",
            Op::Subscribe { .. } => "SUBSCRIBE",
            Op::Unsubscribe { .. } => "UNSUBSCRIBE",
            Op::SPublish { .. } => "SPUBLISH",
            Op::SSubscribe { .. } => "SSUBSCRIBE",
            Op::SUnsubscribe { .. } => "SUNSUBSCRIBE",
            Op::SetPx { .. } => "SET",
            Op::PExpire { .. } => "PEXPIRE",
            Op::XAdd { .. } => "XADD",
            Op::XRange { .. } => "XRANGE",
            Op::XRead { .. } => "XREAD",
        }
    }

    /// Hands `arg` the command's arguments after its [`name`](Self::name), in order, as
    /// Redis takes them: what a transport writes on the wire (`name`, then these), so
    /// that none of them spells a command out itself. The command's own bytes, borrowed;
    /// the expiry of `SET` as its decimal digits, formatted on the stack: nothing is
    /// allocated or cloned, as every chunk's `PUBLISH` comes through here.
    ///
    /// ```
    /// use resumable_stream::Op;
    /// let op = Op::Set { key: "k".into(), value: "1".into(), expire_seconds: 60 };
    /// let mut args = Vec::new();
    /// op.for_each_arg(|arg| args.push(arg.to_vec()));
    /// assert_eq!(op.name(), "SET");
    /// assert_eq!(args, [&b"k"[..], b"1", b"EX", b"60"]);
    /// ```
    pub fn for_each_arg(&self, mut arg: impl FnMut(&[u8])) {
        match self {
            Op::Incr { key } | Op::Get { key } => arg(key),
            Op::Set {
                key,
                value,
                expire_seconds,
            } => {
                arg(key);
                arg(value);
                arg(b"EX");
                let mut digits = [0u8; 20];
                arg(decimal(*expire_seconds, &mut digits));
            }
            Op::Publish { channel, message } | Op::SPublish { channel, message } => {
                arg(channel);
                arg(message);
            }
            Op::Subscribe { channel }
            | Op::Unsubscribe { channel }
            | Op::SSubscribe { channel }
            | Op::SUnsubscribe { channel } => arg(channel),
            Op::SetPx {
                key,
                value,
                expire_millis,
            } => {
                arg(key);
                arg(value);
                arg(b"PX");
                let mut digits = [0u8; 20];
                arg(decimal(*expire_millis, &mut digits));
            }
            Op::PExpire { key, millis } => {
                arg(key);
                let mut digits = [0u8; 20];
                arg(decimal(*millis, &mut digits));
            }
            Op::XAdd {
                key,
                create,
                id,
                fields,
            } => {
                arg(key);
                if !create {
                    arg(b"NOMKSTREAM");
                }
                let mut text = [0u8; 41];
                arg(id.write(&mut text));
                fields.iter().for_each(|field| arg(field));
            }
            Op::XRange {
                key,
                start,
                end,
                count,
            } => {
                arg(key);
                let mut text = [0u8; 41];
                arg(start.write(&mut text));
                arg(end.write(&mut text));
                arg(b"COUNT");
                let mut digits = [0u8; 20];
                arg(decimal(*count, &mut digits));
            }
            Op::XRead {
                count,
                block_millis,
                streams,
            } => {
                let mut digits = [0u8; 20];
                arg(b"COUNT");
                arg(decimal(*count, &mut digits));
                arg(b"BLOCK");
                arg(decimal(*block_millis, &mut digits));
                arg(b"STREAMS");
                streams.iter().for_each(|(key, _)| arg(key));
                let mut text = [0u8; 41];
                streams.iter().for_each(|(_, id)| arg(id.write(&mut text)));
            }
        }
    }

    /// The key this command reads or writes, or the channel it publishes or
    /// subscribes to: what a Redis Cluster routes it by (the slot of these bytes).
    ///
    /// ```
    /// use resumable_stream::Op;
    /// let op = Op::Get { key: "k".into() };
    /// assert_eq!(op.routing_key(), b"k");
    /// ```
    pub fn routing_key(&self) -> &[u8] {
        match self {
            Op::Incr { key }
            | Op::Set { key, .. }
            | Op::Get { key }
            | Op::SetPx { key, .. }
            | Op::PExpire { key, .. }
            | Op::XAdd { key, .. }
            | Op::XRange { key, .. } => key,
            // Every key of one XREAD shares a slot (the engine groups them so).
            Op::XRead { streams, .. } => streams.first().map_or(&[][..], |(key, _)| key),
            Op::Publish { channel, .. }
            | Op::Subscribe { channel }
            | Op::Unsubscribe { channel }
            | Op::SPublish { channel, .. }
            | Op::SSubscribe { channel }
            | Op::SUnsubscribe { channel } => channel,
        }
    }

    /// This command in the given pub/sub flavour: with [`PubSub::Sharded`](crate::PubSub),
    /// `PUBLISH`, `SUBSCRIBE` and `UNSUBSCRIBE` become `SPUBLISH`, `SSUBSCRIBE` and
    /// `SUNSUBSCRIBE` (and the reverse with `Classic`); other commands are unchanged.
    ///
    /// ```
    /// use resumable_stream::{Op, PubSub};
    /// let op = Op::Subscribe { channel: "c".into() };
    /// assert_eq!(op.in_flavour(PubSub::Sharded), Op::SSubscribe { channel: "c".into() });
    /// ```
    pub fn in_flavour(self, flavour: crate::PubSub) -> Op {
        use crate::PubSub::{Classic, Sharded};
        match (flavour, self) {
            (Sharded, Op::Publish { channel, message }) => Op::SPublish { channel, message },
            (Sharded, Op::Subscribe { channel }) => Op::SSubscribe { channel },
            (Sharded, Op::Unsubscribe { channel }) => Op::SUnsubscribe { channel },
            (Classic, Op::SPublish { channel, message }) => Op::Publish { channel, message },
            (Classic, Op::SSubscribe { channel }) => Op::Subscribe { channel },
            (Classic, Op::SUnsubscribe { channel }) => Op::Unsubscribe { channel },
            (_, op) => op,
        }
    }
}

/// A command with the id its reply must carry back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Pass this id to [`Engine::handle_reply`](crate::Engine::handle_reply).
    pub id: CommandId,
    /// What to send.
    pub op: Op,
}

/// `n` in decimal, written at the end of `buffer` (20 digits hold any `u64`).
fn decimal(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        // `n % 10` is below 10: the cast keeps it.
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[start..];
        }
    }
}

/// A successful reply, in the shape of RESP without interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Nil (a missing key).
    Nil,
    /// An integer reply.
    Integer(i64),
    /// A bulk string.
    Data(Bytes),
    /// The status `OK`, or a confirmed SUBSCRIBE / UNSUBSCRIBE.
    Ok,
    /// An array: what `XRANGE` and `XREAD` answer (a RESP3 map, as `XREAD` answers
    /// over RESP3, arrives as an array of `[key, value]` pairs, the RESP2 shape).
    Array(Vec<Reply>),
    /// Any other shape (status text, a set, ...), described for error messages.
    Other(String),
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Nil => f.write_str("nil"),
            Reply::Integer(n) => write!(f, "integer {n}"),
            Reply::Data(d) => write!(f, "data {:?}", String::from_utf8_lossy(d)),
            Reply::Ok => f.write_str("OK"),
            Reply::Array(items) => write!(f, "array of {}", items.len()),
            Reply::Other(s) => write!(f, "{s}"),
        }
    }
}

/// A command that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// Redis answered with an error reply; the text as Redis sent it
    /// (for example `ERR value is not an integer or out of range`).
    Server(String),
    /// The command may not have reached Redis, or its reply was lost: the connection
    /// failed or was closed.
    Connection(String),
}

impl std::error::Error for ReplyError {}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Server(s) => write!(f, "Redis error: {s}"),
            ReplyError::Connection(s) => write!(f, "connection error: {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_writes_every_u64_as_std_does() {
        for n in [0, 1, 9, 10, 86_400, 1 << 32, u64::MAX - 1, u64::MAX] {
            let mut digits = [0u8; 20];
            assert_eq!(decimal(n, &mut digits), n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn stream_ids_write_and_parse_as_redis_does() {
        use super::StreamId;
        for id in [StreamId::new(0, 1), StreamId::new(7, 0), StreamId::MAX] {
            let mut text = [0u8; 41];
            let written = id.write(&mut text);
            assert_eq!(written, id.to_string().as_bytes());
            assert_eq!(StreamId::parse(written), Some(id));
        }
        for bad in [
            &b""[..],
            b"-",
            b"1-",
            b"-1",
            b"1-2-3",
            b"a-1",
            b"18446744073709551616-0",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }
}
