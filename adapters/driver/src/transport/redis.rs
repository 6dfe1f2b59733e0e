//! Redis over redis-rs's async API: one multiplexed connection for commands (pipelined),
//! one pub/sub connection for every subscription, and a small pool of connections for
//! blocking reads, one read on each at a time ([`read_pool`](super::read_pool)).
//! redis-rs runs it on tokio or on async-io (smol, async-std), whichever the caller
//! runs on.
//!
//! Both connections come back after Redis restarts or drops them: the command
//! connection is reopened before the next pipeline, the pub/sub connection as soon as
//! its stream ends (each retried for up to the reconnect window,
//! [`Builder::reconnect_window`](crate::Builder::reconnect_window)), after which the
//! engine subscribes every channel again. A transport built from existing connections
//! has no client to reopen them with, and reports the loss instead; nor can it open
//! connections for blocking reads, which it answers with a connection error.

use super::read_pool::ReadPool;
use super::wire::{connect_error, pipeline, replies, to_reply_error};
use super::{wrong_connection, Inbox, Transport};
use crate::runtime::Runtime;
use bytes::Bytes;
use futures_util::future::{self, BoxFuture, Either};
use futures_util::lock::Mutex as AsyncMutex;
use futures_util::{FutureExt, StreamExt};
use resumable_stream::{Command, Error, Op, PubSubState, Reply, ReplyError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Redis through redis-rs's async connections.
pub struct RedisTransport {
    client: Option<redis::Client>,
    commands: AsyncMutex<Commands>,
    sink: Arc<AsyncMutex<Option<redis::aio::PubSubSink>>>,
    stream: Mutex<Option<redis::aio::PubSubStream>>,
    /// Connections for blocking reads (opened with `client`).
    reads: ReadPool,
    /// How long a dropped connection is retried before what waits for it fails.
    reconnect_window: Duration,
    runtime: Arc<dyn Runtime>,
}

impl RedisTransport {
    /// A transport over existing connections. Without a client it cannot reconnect:
    /// a lost connection is reported to the engine as lost for good.
    pub fn new(
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
        runtime: Arc<dyn Runtime>,
    ) -> RedisTransport {
        Self::assemble(None, commands, pubsub, Duration::ZERO, runtime)
    }

    fn assemble(
        client: Option<redis::Client>,
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
        reconnect_window: Duration,
        runtime: Arc<dyn Runtime>,
    ) -> RedisTransport {
        let (sink, stream) = pubsub.split();
        RedisTransport {
            client,
            commands: AsyncMutex::new(Commands {
                open: Some(commands),
                down_since: None,
            }),
            sink: Arc::new(AsyncMutex::new(Some(sink))),
            stream: Mutex::new(Some(stream)),
            reads: ReadPool::default(),
            reconnect_window,
            runtime,
        }
    }

    /// Opens the two connections of `client`, and reopens them when they drop, trying
    /// for up to `reconnect_window` each time.
    ///
    /// # Errors
    /// [`Error::Redis`] (`CONNECT`) when Redis cannot be reached (or refuses the TLS
    /// handshake, or the credentials).
    pub async fn connect(
        client: &redis::Client,
        reconnect_window: Duration,
        runtime: Arc<dyn Runtime>,
    ) -> Result<RedisTransport, Error> {
        let commands = open_commands(client).await.map_err(|e| connect_error(&e))?;
        let pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| connect_error(&e))?;
        Ok(Self::assemble(
            Some(client.clone()),
            commands,
            pubsub,
            reconnect_window,
            runtime,
        ))
    }
}

/// How long one pipeline may wait for its replies: generous, since a dead server fails
/// at once and a busy one is not dead (redis-rs's default is 500 ms).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

async fn open_commands(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Tries `open` with a growing pause until it succeeds or `deadline` passes; once at
/// least, even past it.
pub(crate) async fn retry<T, F>(
    runtime: &dyn Runtime,
    deadline: Instant,
    mut open: impl FnMut() -> F,
) -> Option<T>
where
    F: std::future::Future<Output = redis::RedisResult<T>>,
{
    let mut pause = Duration::from_millis(20);
    loop {
        match open().await {
            Ok(value) => return Some(value),
            Err(error) if Instant::now() >= deadline => {
                log::warn!("resumable-stream: giving up reconnecting to Redis: {error}");
                return None;
            }
            Err(_) => {
                runtime
                    .sleep_until((Instant::now() + pause).min(deadline))
                    .await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// The command connection, and since when it is down: the reconnect window counts
/// from the drop, so that pipelines queued behind the first do not each wait a window
/// of their own once Redis stays away (they try once, and fail).
struct Commands {
    open: Option<redis::aio::MultiplexedConnection>,
    down_since: Option<Instant>,
}

/// The most pub/sub messages handed to the engine under one lock.
const MESSAGE_BATCH: usize = 256;

/// Adds `message` to `batch` as (channel, payload); a message whose channel is not a
/// bulk string (none that Redis sends) is dropped.
fn take(message: &redis::Msg, batch: &mut Vec<(Vec<u8>, Bytes)>) {
    if let Ok(channel) = message.get_channel::<Vec<u8>>() {
        batch.push((channel, Bytes::copy_from_slice(message.get_payload_bytes())));
    }
}

/// Whether a pipeline failed because the connection did (not because of a reply).
pub(crate) fn connection_failed(result: &redis::RedisResult<Vec<redis::Value>>) -> bool {
    matches!(result, Err(error) if error.code().is_none())
}

impl Transport for RedisTransport {
    fn attach(&self, inbox: Inbox) {
        let Some(stream) = crate::sync::lock(&self.stream).take() else {
            return;
        };
        let Some(closed) = inbox.close_signal() else {
            return;
        };
        let client = self.client.clone();
        let sink = self.sink.clone();
        let runtime = self.runtime.clone();
        let window = self.reconnect_window;
        self.runtime.spawn(Box::pin(async move {
            let mut stream = stream;
            let mut batch = Vec::new();
            loop {
                loop {
                    let next = std::pin::pin!(stream.next());
                    let stop = std::pin::pin!(closed.recv());
                    let message = match future::select(next, stop).await {
                        Either::Left((Some(message), _)) => message,
                        Either::Left((None, _)) => break,
                        // The context closed: stop reading; dropping the stream closes it.
                        Either::Right(_) => return,
                    };
                    take(&message, &mut batch);
                    // Whatever else has arrived goes in with it, under one lock of the
                    // engine: a busy connection costs one lock per batch, not per message.
                    let mut ended = false;
                    while batch.len() < MESSAGE_BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(message)) => take(&message, &mut batch),
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    inbox.deliver_many(batch.drain(..));
                    if ended {
                        break;
                    }
                }
                log::warn!("resumable-stream: the Redis pub/sub connection closed");
                *sink.lock().await = None;
                let Some(client) = &client else {
                    return inbox.pubsub_state(PubSubState::Lost);
                };
                inbox.pubsub_state(PubSubState::Interrupted);
                let deadline = Instant::now() + window;
                let Some(pubsub) = retry(&*runtime, deadline, || client.get_async_pubsub()).await
                else {
                    return inbox.pubsub_state(PubSubState::Lost);
                };
                let (new_sink, new_stream) = pubsub.split();
                *sink.lock().await = Some(new_sink);
                stream = new_stream;
                log::info!("resumable-stream: the Redis pub/sub connection is back");
                inbox.pubsub_state(PubSubState::Restored);
            }
        }));
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        Box::pin(async move {
            let mut connection = self.commands.lock().await;
            if connection.open.is_none() {
                if let Some(client) = &self.client {
                    let since = *connection.down_since.get_or_insert_with(Instant::now);
                    let deadline = since + self.reconnect_window;
                    connection.open =
                        retry(&*self.runtime, deadline, || open_commands(client)).await;
                    if connection.open.is_some() {
                        connection.down_since = None;
                    }
                }
            }
            let Some(open) = connection.open.as_mut() else {
                let error = ReplyError::Connection("the Redis command connection is down".into());
                return vec![Err(error); commands.len()];
            };
            let pipe = pipeline(commands);
            let result =
                redis::aio::ConnectionLike::req_packed_commands(open, &pipe, 0, commands.len())
                    .await;
            if connection_failed(&result) {
                // Reopened before the next pipeline.
                connection.open = None;
                connection.down_since = Some(Instant::now());
            }
            replies(result, commands.len())
        })
    }

    fn blocking<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Reply, ReplyError>> {
        Box::pin(async move {
            let Some(client) = &self.client else {
                return Err(ReplyError::Connection(
                    "blocking reads need connections of their own, which a transport \
                     built from existing connections cannot open (give a Redis URL or \
                     client instead)"
                        .into(),
                ));
            };
            let (runtime, window) = (&*self.runtime, self.reconnect_window);
            self.reads
                .read(client, command, false, runtime, window)
                .await
        })
    }

    fn pubsub<'a>(&'a self, commands: &'a [Command]) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(commands.len());
            let mut sink = self.sink.lock().await;
            // A run of SUBSCRIBEs (UNSUBSCRIBEs) goes as one command naming every
            // channel: one round trip, however many streams start at once.
            for run in commands.chunk_by(|a, b| same_kind(&a.op, &b.op)) {
                let channels: Vec<&[u8]> = run.iter().map(|c| c.op.routing_key()).collect();
                let result = match (sink.as_mut(), &run[0].op) {
                    (None, _) => Err(ReplyError::Connection(
                        "the Redis pub/sub connection is down".into(),
                    )),
                    (Some(sink), Op::Subscribe { .. }) => sink
                        .subscribe(channels)
                        .await
                        .map_err(|e| to_reply_error(&e)),
                    (Some(sink), Op::Unsubscribe { .. }) => sink
                        .unsubscribe(channels)
                        .await
                        .map_err(|e| to_reply_error(&e)),
                    // A single Redis has no sharded pub/sub through this connection.
                    (Some(_), op) => Err(wrong_connection(op)),
                };
                results.extend(std::iter::repeat_n(result, run.len()));
            }
            results
        })
    }
}

/// Whether two pub/sub commands can go as one (both SUBSCRIBE, or both UNSUBSCRIBE).
fn same_kind(a: &Op, b: &Op) -> bool {
    matches!(
        (a, b),
        (Op::Subscribe { .. }, Op::Subscribe { .. })
            | (Op::Unsubscribe { .. }, Op::Unsubscribe { .. })
    )
}
