//! How a context reaches its store: the [`Transport`] trait every backend implements
//! (Redis, Redis Cluster, the in-process store, the application's own), and the
//! [`Inbox`] through which pub/sub messages and the pub/sub connection's state enter
//! the engine.
//!
//! A transport never interprets a command: it runs them in order on the connection
//! each names (blocking reads each on a connection of its own, in any order) and
//! returns one reply per command, in the engine's neutral [`Reply`] shape. How it
//! batches (one pipeline per batch, one SUBSCRIBE naming many channels) is its own
//! business; what to send, and what a reply means, is the engine's.

#[cfg(all(not(loom), feature = "cluster"))]
pub mod cluster;
#[cfg(all(not(loom), feature = "cluster"))]
mod cluster_reads;
mod custom;
mod memory;
#[cfg(all(not(loom), feature = "redis"))]
mod read_pool;
#[cfg(all(not(loom), feature = "redis"))]
pub mod redis;
#[cfg(feature = "redis")]
pub mod wire;

pub use custom::{CustomTransport, Publisher, Subscriber};
pub use memory::{MemoryBackend, MemoryConnection};

use crate::hub::{Hub, Shared};
use crate::mailbox::Receiver;
use crate::sync::Weak;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use resumable_stream::{Command, PubSubState, Reply, ReplyError};
use std::time::Instant;

/// Where a backend delivers pub/sub messages and the state of its pub/sub connection:
/// straight into the context's engine.
#[derive(Clone)]
pub struct Inbox {
    hub: Weak<Shared>,
}

impl Inbox {
    /// The inbox of `hub`; it does not keep the hub alive.
    pub(crate) fn for_hub(hub: &Hub) -> Inbox {
        Inbox {
            hub: hub.downgrade(),
        }
    }

    /// A message arrived on `channel`.
    pub fn deliver(&self, channel: &[u8], message: Bytes) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| engine.handle_message(Instant::now(), channel, message));
        }
    }

    /// Messages that arrived, in order, as (channel, message): handed to the engine
    /// under one lock.
    pub fn deliver_many<C: AsRef<[u8]>>(&self, messages: impl IntoIterator<Item = (C, Bytes)>) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| {
                let now = Instant::now();
                for (channel, message) in messages {
                    engine.handle_message(now, channel.as_ref(), message);
                }
            });
        }
    }

    /// The pub/sub connection dropped (its subscriptions are gone), came back, or was
    /// lost for good.
    pub fn pubsub_state(&self, state: PubSubState) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| engine.handle_pubsub_state(Instant::now(), state));
        }
    }

    /// The server dropped the subscription of `channel` on its own (a Redis Cluster
    /// shard whose slot moved sends `sunsubscribe`). Whether the engine still wants
    /// it, and what then, is the engine's decision: report every such drop.
    pub fn subscription_dropped(&self, channel: &[u8]) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| engine.handle_subscription_dropped(Instant::now(), channel));
        }
    }

    /// A mailbox that ends when the context closes, for a message loop to stop on.
    pub fn close_signal(&self) -> Option<Receiver<()>> {
        Hub::upgrade(&self.hub).map(|hub| hub.close_signal())
    }
}

/// A backend a context runs on, whatever the driver (tokio, async-std, smol, or the
/// blocking driver, which runs it on a private I/O thread).
///
/// Implement it to pipeline commands to a store of your own; for the simpler
/// per-command shape of the deployed libraries, implement [`Publisher`] and
/// [`Subscriber`] instead.
pub trait Transport: Send + Sync + 'static {
    /// Called once, before any command, with the inbox for pub/sub messages.
    fn attach(&self, inbox: Inbox);

    /// Runs commands of the command connection
    /// ([`Connection::Commands`](resumable_stream::Connection)) in order; returns
    /// exactly one reply per command, in the same order.
    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>>;

    /// Runs commands of the pub/sub connection (`SUBSCRIBE`, `UNSUBSCRIBE` and their
    /// sharded forms) in order, each resolved once the server confirmed it; returns
    /// exactly one result per command. A transport may send a run of them as one
    /// command naming many channels.
    fn pubsub<'a>(&'a self, commands: &'a [Command]) -> BoxFuture<'a, Vec<Result<(), ReplyError>>>;

    /// Runs one blocking read of a connection reserved for them
    /// ([`Connection::Blocking`](resumable_stream::Connection): `XREAD ... BLOCK`),
    /// never on the command connection, which it would stall. The context's loop runs up
    /// to a few of them at once, each on a connection of its own, and waits for each at
    /// most its `block_millis` plus a slack (see
    /// [`times_out_blocking_reads`](Self::times_out_blocking_reads)); past that it
    /// drops the future, so dropping it must be safe (the connection it used must not be
    /// used again).
    ///
    /// The default answers that this backend has no blocking reads (a server error).
    fn blocking<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Reply, ReplyError>> {
        let _ = command;
        Box::pin(std::future::ready(Err(ReplyError::Server(
            "ERR this backend has no blocking reads (XREAD BLOCK)".into(),
        ))))
    }

    /// Whether [`blocking`](Self::blocking) answers by itself once a read's
    /// `block_millis` passed without data, as Redis does (nil); then the context's
    /// loop gives it a slack beyond that, and answers a connection error past it. A
    /// backend that waits for data for ever (the in-process store) says `false`: the
    /// loop then ends its read at exactly `block_millis` and answers nil itself.
    /// `true` unless overridden.
    fn times_out_blocking_reads(&self) -> bool {
        true
    }

    /// Whether this backend is a Redis Cluster, where one command's keys must share a
    /// slot: the context then tells its engine so
    /// ([`Config::with_cluster`](resumable_stream::Config::with_cluster)), which groups
    /// the streams of one blocking read by slot. `false` unless overridden.
    fn cluster(&self) -> bool {
        false
    }

    /// Whether this backend has sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE`): a context
    /// configured with [`PubSub::Sharded`](resumable_stream::PubSub) refuses to start
    /// on one that has not.
    fn sharded_pubsub(&self) -> bool {
        false
    }
}

/// The error of a backend without sharded pub/sub, for a command that needs it.
pub(crate) fn no_sharded_pubsub() -> ReplyError {
    ReplyError::Server("ERR this backend has no sharded pub/sub (SSUBSCRIBE)".into())
}

/// The error for a command sent on a connection that does not carry it.
pub(crate) fn wrong_connection(op: &resumable_stream::Op) -> ReplyError {
    ReplyError::Connection(format!("{} does not travel on this connection", op.name()))
}
