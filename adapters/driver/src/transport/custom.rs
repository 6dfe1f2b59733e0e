//! A backend of the application's own, in the shape the deployed libraries take: a
//! [`Publisher`] for the four commands the protocol uses and a [`Subscriber`] for
//! pub/sub, joined into a [`Transport`] that sends one command at a time.

use super::{no_sharded_pubsub, wrong_connection, Inbox, Transport};
use crate::sync::{lock, Mutex};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use resumable_stream::{Command, Op, Reply, ReplyError};

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

/// A [`Publisher`] and a [`Subscriber`] as one [`Transport`] (commands one at a
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

impl Transport for CustomTransport {
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
                    | Op::SUnsubscribe { .. } => Err(wrong_connection(&command.op)),
                    op => Err(ReplyError::Server(format!(
                        "ERR a publisher and subscriber cannot run {}",
                        op.name()
                    ))),
                };
                replies.push(reply);
            }
            replies
        })
    }

    fn pubsub<'a>(&'a self, commands: &'a [Command]) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
        let inbox = lock(&self.inbox).clone();
        Box::pin(async move {
            let mut results = Vec::with_capacity(commands.len());
            for command in commands {
                let result = match (&command.op, &inbox) {
                    (Op::Subscribe { channel }, Some(inbox)) => {
                        self.subscriber
                            .subscribe(channel.clone(), inbox.clone())
                            .await
                    }
                    (Op::Subscribe { .. }, None) => {
                        Err(ReplyError::Connection("transport not attached".into()))
                    }
                    (Op::Unsubscribe { channel }, _) => {
                        self.subscriber.unsubscribe(channel.clone()).await
                    }
                    (Op::SSubscribe { .. } | Op::SUnsubscribe { .. }, _) => {
                        Err(no_sharded_pubsub())
                    }
                    _ => Err(wrong_connection(&command.op)),
                };
                results.push(result);
            }
            results
        })
    }
}
