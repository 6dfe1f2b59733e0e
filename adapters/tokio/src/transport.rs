//! Carrying the engine's commands to a backend and messages back: Redis (redis-rs), the
//! in-memory store, or the application's own publisher and subscriber.
//!
//! A transport never interprets a command: it runs them in order and returns one reply
//! per command, in the engine's neutral [`Reply`] shape.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use resumable_stream::{ClientId, Command, Connection, MemoryRedis, Op, Reply, ReplyError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::driver::Shared;

/// Where a transport delivers pub/sub messages: straight into the context's engine.
#[derive(Clone)]
pub struct Inbox {
    shared: Weak<Shared>,
}

impl Inbox {
    pub(crate) fn new(shared: Weak<Shared>) -> Inbox {
        Inbox { shared }
    }

    /// A message arrived on `channel`.
    pub fn deliver(&self, channel: &[u8], message: Bytes) {
        if let Some(shared) = self.shared.upgrade() {
            shared.with_engine(|engine| engine.handle_message(Instant::now(), channel, message));
        }
    }

    /// The pub/sub connection was lost: every subscription is gone.
    pub fn connection_lost(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.with_engine(|engine| engine.handle_connection_lost(Connection::PubSub));
        }
    }
}

/// A backend the tokio driver can run on.
///
/// Implement it to pipeline commands to a store of your own; for the simpler
/// per-command shape of the deployed libraries, implement [`Publisher`] and
/// [`Subscriber`] instead and use
/// [`ContextBuilder::publisher_subscriber`](crate::ContextBuilder::publisher_subscriber).
pub trait Transport: Send + Sync + 'static {
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
}

// ----- Redis -----

/// Redis over redis-rs: one multiplexed connection for commands (pipelined), one
/// pub/sub connection for every subscription.
pub(crate) struct RedisTransport {
    commands: redis::aio::MultiplexedConnection,
    sink: tokio::sync::Mutex<redis::aio::PubSubSink>,
    stream: Mutex<Option<redis::aio::PubSubStream>>,
    runtime: tokio::runtime::Handle,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RedisTransport {
    pub(crate) fn new(
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
    ) -> RedisTransport {
        let (sink, stream) = pubsub.split();
        RedisTransport {
            commands,
            sink: tokio::sync::Mutex::new(sink),
            stream: Mutex::new(Some(stream)),
            runtime: tokio::runtime::Handle::current(),
            reader: Mutex::new(None),
        }
    }
}

impl Drop for RedisTransport {
    fn drop(&mut self) {
        if let Some(reader) = lock(&self.reader).take() {
            reader.abort();
        }
    }
}

fn to_reply(value: redis::Value) -> Result<Reply, ReplyError> {
    match value {
        redis::Value::Nil => Ok(Reply::Nil),
        redis::Value::Int(n) => Ok(Reply::Integer(n)),
        redis::Value::BulkString(data) => Ok(Reply::Data(Bytes::from(data))),
        redis::Value::Okay => Ok(Reply::Ok),
        redis::Value::ServerError(error) => Err(ReplyError::Server(match error.details() {
            Some(details) => format!("{} {details}", error.code()),
            None => error.code().to_owned(),
        })),
        other => Ok(Reply::Other(format!("{other:?}"))),
    }
}

fn to_reply_error(error: &redis::RedisError) -> ReplyError {
    match error.code() {
        Some(code) => ReplyError::Server(format!("{code} {}", error.detail().unwrap_or_default())),
        None => ReplyError::Connection(error.to_string()),
    }
}

impl Transport for RedisTransport {
    fn attach(&self, inbox: Inbox) {
        let Some(mut stream) = lock(&self.stream).take() else {
            return;
        };
        let task = self.runtime.spawn(async move {
            while let Some(message) = stream.next().await {
                let channel = match message.get_channel::<Vec<u8>>() {
                    Ok(channel) => channel,
                    Err(_) => continue,
                };
                inbox.deliver(
                    &channel,
                    Bytes::copy_from_slice(message.get_payload_bytes()),
                );
            }
            log::warn!("resumable-stream: the Redis pub/sub connection closed");
            inbox.connection_lost();
        });
        *lock(&self.reader) = Some(task);
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for command in commands {
                match &command.op {
                    Op::Incr { key } => pipe.cmd("INCR").arg(key.as_ref()),
                    Op::Set {
                        key,
                        value,
                        expire_seconds,
                    } => pipe
                        .cmd("SET")
                        .arg(key.as_ref())
                        .arg(value.as_ref())
                        .arg("EX")
                        .arg(*expire_seconds),
                    Op::Get { key } => pipe.cmd("GET").arg(key.as_ref()),
                    Op::Publish { channel, message } => pipe
                        .cmd("PUBLISH")
                        .arg(channel.as_ref())
                        .arg(message.as_ref()),
                    // Subscriptions travel on the pub/sub connection; the driver never
                    // sends them here.
                    Op::Subscribe { .. } | Op::Unsubscribe { .. } => pipe.cmd("PING"),
                };
            }
            let mut connection = self.commands.clone();
            match redis::aio::ConnectionLike::req_packed_commands(
                &mut connection,
                &pipe,
                0,
                commands.len(),
            )
            .await
            {
                Ok(values) if values.len() == commands.len() => {
                    values.into_iter().map(to_reply).collect()
                }
                Ok(values) => {
                    let error = ReplyError::Connection(format!(
                        "{} replies to a pipeline of {} commands",
                        values.len(),
                        commands.len()
                    ));
                    vec![Err(error); commands.len()]
                }
                Err(error) => vec![Err(to_reply_error(&error)); commands.len()],
            }
        })
    }

    fn subscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        Box::pin(async move {
            let mut sink = self.sink.lock().await;
            sink.subscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }

    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        Box::pin(async move {
            let mut sink = self.sink.lock().await;
            sink.unsubscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }
}

// ----- in memory -----

/// An in-process Redis stand-in that several contexts can share, so that they behave
/// like several server instances on one Redis.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use resumable_stream_tokio::{MemoryBackend, ResumableStreamContext};
/// let backend = MemoryBackend::new();
/// let instance_a = ResumableStreamContext::builder().memory(backend.clone()).build().await.unwrap();
/// let instance_b = ResumableStreamContext::builder().memory(backend).build().await.unwrap();
/// # drop((instance_a, instance_b)); }
/// ```
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    redis: MemoryRedis,
    inboxes: HashMap<ClientId, Inbox>,
}

impl MemoryBackend {
    /// A new, empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Runs `f` on the store, to inspect or change keys as an operator would.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut MemoryRedis) -> T) -> T {
        f(&mut lock(&self.inner).redis)
    }

    /// Publishes `message` on `channel` as another client would (`redis-cli PUBLISH`);
    /// returns how many subscribers received it.
    pub fn publish(&self, channel: impl Into<Bytes>, message: impl Into<Bytes>) -> i64 {
        let client = lock(&self.inner).redis.connect();
        let op = Op::Publish {
            channel: channel.into(),
            message: message.into(),
        };
        match self.run(client, &op) {
            Ok(Reply::Integer(n)) => n,
            _ => 0,
        }
    }

    pub(crate) fn transport(&self) -> MemoryTransport {
        let client = lock(&self.inner).redis.connect();
        MemoryTransport {
            backend: self.clone(),
            client,
        }
    }

    fn run(&self, client: ClientId, op: &Op) -> Result<Reply, ReplyError> {
        let (reply, deliveries) = {
            let mut inner = lock(&self.inner);
            let (reply, deliveries) = inner.redis.execute(Instant::now(), client, op);
            let targets: Vec<_> = deliveries
                .into_iter()
                .filter_map(|(to, channel, message)| {
                    inner
                        .inboxes
                        .get(&to)
                        .map(|inbox| (inbox.clone(), channel, message))
                })
                .collect();
            (reply, targets)
        };
        // Delivered outside the store's lock: the receiving engine may publish in turn.
        for (inbox, channel, message) in deliveries {
            inbox.deliver(&channel, message);
        }
        reply
    }
}

pub(crate) struct MemoryTransport {
    backend: MemoryBackend,
    client: ClientId,
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut inner = lock(&self.backend.inner);
        inner.inboxes.remove(&self.client);
        inner.redis.disconnect(self.client);
    }
}

impl Transport for MemoryTransport {
    fn attach(&self, inbox: Inbox) {
        lock(&self.backend.inner).inboxes.insert(self.client, inbox);
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        let replies = commands
            .iter()
            .map(|c| self.backend.run(self.client, &c.op))
            .collect();
        Box::pin(std::future::ready(replies))
    }

    fn subscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        let reply = self
            .backend
            .run(self.client, &Op::Subscribe { channel })
            .map(drop);
        Box::pin(std::future::ready(reply))
    }

    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        let reply = self
            .backend
            .run(self.client, &Op::Unsubscribe { channel })
            .map(drop);
        Box::pin(std::future::ready(reply))
    }
}

// ----- the application's own publisher and subscriber -----

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

pub(crate) struct CustomTransport {
    pub(crate) publisher: Box<dyn Publisher>,
    pub(crate) subscriber: Box<dyn Subscriber>,
    pub(crate) inbox: Mutex<Option<Inbox>>,
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
                    Op::Subscribe { .. } | Op::Unsubscribe { .. } => Err(ReplyError::Connection(
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

/// Locks a mutex, recovering it if a thread panicked while holding it: the data guarded
/// here stays consistent between statements.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
