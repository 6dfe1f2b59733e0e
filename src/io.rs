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
}

impl Op {
    /// The connection this command travels on.
    pub fn connection(&self) -> Connection {
        match self {
            Op::Subscribe { .. }
            | Op::Unsubscribe { .. }
            | Op::SSubscribe { .. }
            | Op::SUnsubscribe { .. } => Connection::PubSub,
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
            Op::Incr { key } | Op::Set { key, .. } | Op::Get { key } => key,
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
    /// Any other shape (status text, array, map, ...), described for error messages.
    Other(String),
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Nil => f.write_str("nil"),
            Reply::Integer(n) => write!(f, "integer {n}"),
            Reply::Data(d) => write!(f, "data {:?}", String::from_utf8_lossy(d)),
            Reply::Ok => f.write_str("OK"),
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
}
