//! How an async driver reaches its backend: the [`AsyncTransport`] trait, the inbox
//! through which pub/sub messages enter the engine, and the deployed libraries'
//! custom-client shape ([`Publisher`] + [`Subscriber`]).
//!
//! A transport never interprets a command: it runs them in order and returns one reply
//! per command, in the engine's neutral [`Reply`] shape.

use crate::hub::{Hub, Shared};
use crate::mailbox::Receiver;
use crate::sync::lock;
use crate::sync::{Mutex, Weak};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use resumable_stream::{Command, Connection, Op, Reply, ReplyError};
use std::time::Instant;

/// Where a backend delivers pub/sub messages: straight into the context's engine.
#[derive(Clone)]
pub struct Inbox {
    hub: Weak<Shared>,
}

impl Inbox {
    /// The inbox of `hub`; it does not keep the hub alive.
    pub fn for_hub(hub: &Hub) -> Inbox {
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

    /// The pub/sub connection dropped and is being reopened.
    pub fn connection_interrupted(&self) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| engine.handle_connection_interrupted(Connection::PubSub));
        }
    }

    /// The pub/sub connection is back: the engine subscribes every channel again.
    pub fn connection_restored(&self) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| engine.handle_connection_restored(Connection::PubSub));
        }
    }

    /// The pub/sub connection was lost for good: every subscription is gone.
    pub fn connection_lost(&self) {
        if let Some(hub) = Hub::upgrade(&self.hub) {
            hub.with_engine(|engine| engine.handle_connection_lost(Connection::PubSub));
        }
    }

    /// A mailbox that ends when the context closes, for a message loop to stop on.
    pub fn close_signal(&self) -> Option<Receiver<()>> {
        Hub::upgrade(&self.hub).map(|hub| hub.close_signal())
    }
}

/// A backend an async driver (tokio, async-std) can run on.
///
/// Implement it to pipeline commands to a store of your own; for the simpler
/// per-command shape of the deployed libraries, implement [`Publisher`] and
/// [`Subscriber`] instead.
pub trait AsyncTransport: Send + Sync + 'static {
    /// Called once, before any command, with the inbox for pub/sub messages.
    fn attach(&self, inbox: Inbox);

    /// Runs commands of the [`Connection::Commands`] connection in order; returns
    /// exactly one reply per command, in the same order.
    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>>;

    /// Subscribes to `channel`; resolves once the subscription is confirmed.
    fn subscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>>;

    /// Unsubscribes from `channel`.
    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>>;

    /// Subscribes to the sharded channel `channel` (`SSUBSCRIBE`, for an engine
    /// configured with [`PubSub::Sharded`](resumable_stream::PubSub)); resolves once the
    /// subscription is confirmed. By default a backend has no sharded pub/sub and
    /// answers with an error.
    fn ssubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        drop(channel);
        Box::pin(std::future::ready(Err(no_sharded_pubsub())))
    }

    /// Unsubscribes from the sharded channel `channel` (`SUNSUBSCRIBE`).
    fn sunsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        drop(channel);
        Box::pin(std::future::ready(Err(no_sharded_pubsub())))
    }

    /// Runs one pub/sub command of the engine (`SUBSCRIBE`, `UNSUBSCRIBE` or their
    /// sharded forms) with the method above that carries it.
    fn run_pubsub(&self, op: Op) -> BoxFuture<'_, Result<(), ReplyError>> {
        match op {
            Op::Subscribe { channel } => self.subscribe(channel),
            Op::Unsubscribe { channel } => self.unsubscribe(channel),
            Op::SSubscribe { channel } => self.ssubscribe(channel),
            Op::SUnsubscribe { channel } => self.sunsubscribe(channel),
            _ => Box::pin(std::future::ready(Err(ReplyError::Connection(
                "not a pub/sub command".into(),
            )))),
        }
    }

    /// Subscribes to (`subscribe`) or unsubscribes from every channel of `channels`, in
    /// order; one result per channel. The default sends them one at a time; a backend
    /// that can name several channels in one command (Redis) overrides it.
    fn subscribe_many<'a>(
        &'a self,
        subscribe: bool,
        channels: &'a [Bytes],
    ) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(channels.len());
            for channel in channels {
                let result = if subscribe {
                    self.subscribe(channel.clone()).await
                } else {
                    self.unsubscribe(channel.clone()).await
                };
                results.push(result);
            }
            results
        })
    }
}

/// The error of a backend without sharded pub/sub.
pub(crate) fn no_sharded_pubsub() -> ReplyError {
    ReplyError::Server("ERR this backend has no sharded pub/sub (SSUBSCRIBE)".into())
}

/// The command side of a custom backend, as in the deployed libraries: the four
/// commands the protocol uses.
pub trait Publisher: Send + Sync + 'static {
    /// `PUBLISH channel message`; the number of receivers.
    fn publish(&self, channel: Bytes, message: Bytes) -> BoxFuture<'_, Result<i64, ReplyError>>;
    /// `SET key value EX expire_seconds`.
    fn set(
        &self,
        key: Bytes,
        value: Bytes,
        expire_seconds: u64,
    ) -> BoxFuture<'_, Result<(), ReplyError>>;
    /// `GET key`.
    fn get(&self, key: Bytes) -> BoxFuture<'_, Result<Option<Bytes>, ReplyError>>;
    /// `INCR key`. Must fail with a [`ReplyError::Server`] whose text contains
    /// `value is not an integer or out of range` when the key is not a number, as Redis
    /// does.
    fn incr(&self, key: Bytes) -> BoxFuture<'_, Result<i64, ReplyError>>;
}

/// The pub/sub side of a custom backend.
pub trait Subscriber: Send + Sync + 'static {
    /// Subscribes to `channel` and hands every message on it to `inbox`; resolves once
    /// subscribed.
    fn subscribe(&self, channel: Bytes, inbox: Inbox) -> BoxFuture<'_, Result<(), ReplyError>>;
    /// Stops the messages of `channel`.
    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>>;
}

/// A [`Publisher`] and a [`Subscriber`] as one [`AsyncTransport`] (commands one at a
/// time, as the deployed libraries send them).
pub struct CustomTransport {
    publisher: Box<dyn Publisher>,
    subscriber: Box<dyn Subscriber>,
    inbox: Mutex<Option<Inbox>>,
}

impl CustomTransport {
    /// Joins the two halves.
    pub fn new(publisher: impl Publisher, subscriber: impl Subscriber) -> CustomTransport {
        CustomTransport {
            publisher: Box::new(publisher),
            subscriber: Box::new(subscriber),
            inbox: Mutex::new(None),
        }
    }
}

impl AsyncTransport for CustomTransport {
    fn attach(&self, inbox: Inbox) {
        *lock(&self.inbox) = Some(inbox);
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        Box::pin(async move {
            let mut replies = Vec::with_capacity(commands.len());
            for command in commands {
                let reply = match &command.op {
                    Op::Incr { key } => self.publisher.incr(key.clone()).await.map(Reply::Integer),
                    Op::Set {
                        key,
                        value,
                        expire_seconds,
                    } => self
                        .publisher
                        .set(key.clone(), value.clone(), *expire_seconds)
                        .await
                        .map(|()| Reply::Ok),
                    Op::Get { key } => self
                        .publisher
                        .get(key.clone())
                        .await
                        .map(|v| v.map_or(Reply::Nil, Reply::Data)),
                    Op::Publish { channel, message } => self
                        .publisher
                        .publish(channel.clone(), message.clone())
                        .await
                        .map(Reply::Integer),
                    Op::SPublish { .. } => Err(no_sharded_pubsub()),
                    Op::Subscribe { .. }
                    | Op::Unsubscribe { .. }
                    | Op::SSubscribe { .. }
                    | Op::SUnsubscribe { .. } => Err(ReplyError::Connection(
                        "subscriptions go to the subscriber".into(),
                    )),
                };
                replies.push(reply);
            }
            replies
        })
    }

    fn subscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        let inbox = lock(&self.inbox).clone();
        Box::pin(async move {
            match inbox {
                Some(inbox) => self.subscriber.subscribe(channel, inbox).await,
                None => Err(ReplyError::Connection("transport not attached".into())),
            }
        })
    }

    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        self.subscriber.unsubscribe(channel)
    }
}
