//! # resumable-stream-blocking
//!
//! The blocking driver of [`resumable_stream`], for servers without an async runtime:
//! plain `std` threads and redis-rs's synchronous connections. Streams are
//! `Iterator<Item = Result<Bytes, Error>>`; a producer's source is an iterator pulled on
//! its own thread, which keeps running when its reader goes away.
//!
//! ```no_run
//! use resumable_stream_blocking::ResumableStreamContext;
//!
//! # fn handler() -> Result<(), resumable_stream::Error> {
//! let ctx = ResumableStreamContext::from_env()?; // REDIS_URL, then KV_URL
//! let make_source = || ["data: hello\n\n", "data: world\n\n"].map(Ok::<_, std::io::Error>);
//! match ctx.resumable_stream("chat-42", make_source, None)? {
//!     Some(chunks) => {
//!         for chunk in chunks {
//!             print!("{}", String::from_utf8_lossy(&chunk?));
//!         }
//!     }
//!     None => println!("the stream already finished"),
//! }
//! # Ok(()) }
//! ```
//!
//! ## Threads
//!
//! A context runs three threads: one carries commands to Redis (everything queued
//! goes as one pipeline), one owns the pub/sub connection, one fires deadlines. The
//! pub/sub connection is synchronous, so that thread wakes every
//! [`PUBSUB_POLL`] to send new subscriptions: a resume may wait that long once for
//! its SUBSCRIBE. All of them stop when the last clone of the context is dropped.
//! What the threads share with callers is the driver's hub and mailboxes, which are
//! model-checked with loom in `resumable-stream-driver`.

#![forbid(unsafe_code)]

use bytes::Bytes;
use resumable_stream::{Command, Config, Engine, Handle, Op, Reply, ReplyError, Role};
use resumable_stream_driver::hub::{unexpected_answer, Answer, Hub, Queues, ReaderItem, Starter};
use resumable_stream_driver::mailbox::{Receiver, RecvTimeoutError};
use resumable_stream_driver::production::{catch_source_panic, Production, SourceEnd};
use resumable_stream_driver::reader::Reader;
#[cfg(feature = "cluster")]
use resumable_stream_driver::redis_cluster_urls_from_env;
use resumable_stream_driver::redis_wire::{
    client_for, connect_error, pipeline, replies, to_reply_error,
};
use resumable_stream_driver::{engine_for, redis_url_from_env, Inbox, MemoryConnection};
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use resumable_stream::{Error, Position, PubSub, SkipUnit, StreamState};
pub use resumable_stream_driver::{Cancelled, MemoryBackend};

/// How often the pub/sub thread stops waiting for messages to send new subscriptions.
pub const PUBSUB_POLL: Duration = Duration::from_millis(5);

/// How long the pub/sub thread waits for Redis to confirm a (un)subscription.
const CONFIRMATION_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`ResumableStreamContext::resume_existing_stream`] found.
#[derive(Debug)]
pub enum Resumed {
    /// The stream exists and is being produced: read the rest of it here.
    Stream(BlockingStream),
    /// The stream finished; there is nothing to resume.
    Done,
    /// No stream with that id exists.
    NotFound,
}

/// A handle to one engine, its connections and threads: the object a server keeps.
///
/// Cheap to clone. Dropping the last clone stops its threads and closes its
/// connections; streams still being read then end with [`Error::Closed`].
///
/// Every call, on the in-memory backend (the same on Redis, across instances):
///
/// ```
/// use resumable_stream::Role;
/// use resumable_stream_blocking::{
///     Cancelled, Error, Position, ResumableStreamContext, Resumed, StreamState,
/// };
/// use std::convert::Infallible;
///
/// # fn main() -> Result<(), Error> {
/// let ctx = ResumableStreamContext::in_memory();
///
/// // Two tokens, then the source waits (on the producer's own thread) until `go`.
/// let (go, wait) = std::sync::mpsc::channel::<()>();
/// let source = move || {
///     ["Hello", ", world"].into_iter().map(Ok::<_, Infallible>)
///         .chain(std::iter::from_fn(move || { wait.recv().ok(); None }))
/// };
/// let mut producer = ctx.resumable_stream("answer-1", source, None)?.expect("new stream");
/// assert_eq!(producer.role(), Role::Producer);
/// assert_eq!(&producer.next().unwrap()?[..], b"Hello");
/// assert_eq!(producer.chunk_position(), Some(1)); // an SSE event id
///
/// // Another request resumes right after chunk 1 (a browser's `Last-Event-ID: 1`).
/// let unused = || std::iter::empty::<Result<&'static str, Infallible>>();
/// let mut resumer = ctx
///     .resumable_stream_at("answer-1", unused, Position::Chunk(1))?
///     .expect("still running");
/// assert_eq!(resumer.role(), Role::Resumer);
/// assert_eq!(&resumer.next().unwrap()?[..], b", world");
/// assert_eq!(resumer.chunk_position(), Some(2));
///
/// // Queries.
/// assert_eq!(ctx.has_existing_stream("answer-1")?, StreamState::Active);
/// assert!(matches!(ctx.resume_existing_stream("nobody", None)?, Resumed::NotFound));
///
/// // Stop it from any instance: its readers end with `Error::Cancelled`.
/// assert_eq!(ctx.cancel("answer-1")?, Cancelled::Cancelled);
/// assert!(matches!(resumer.next(), Some(Err(Error::Cancelled))));
/// assert_eq!(ctx.has_existing_stream("answer-1")?, StreamState::Done);
/// drop(go); // lets the source's thread finish
///
/// // The explicit create: always a producer (an error if this context already is).
/// let once = || ["bye"].map(Ok::<_, Infallible>);
/// let mut created = ctx.create_new_resumable_stream("answer-2", once)?;
/// assert_eq!(&created.next().unwrap()?[..], b"bye");
/// assert!(created.next().is_none());
/// assert!(matches!(ctx.resume_existing_stream("answer-2", None)?, Resumed::Done));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ResumableStreamContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    hub: Hub,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        self.hub.close();
    }
}

impl std::fmt::Debug for ResumableStreamContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableStreamContext")
            .finish_non_exhaustive()
    }
}

enum Backend {
    FromEnv,
    Url(String),
    Client(redis::Client),
    Memory(MemoryBackend),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
}

/// Builds a [`ResumableStreamContext`]: the configuration and the backend.
pub struct ContextBuilder {
    config: Config,
    backend: Backend,
}

impl ContextBuilder {
    /// The whole engine configuration (prefix, TTL, ack timeout, skip unit).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The key prefix (default `resumable-stream`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config = self.config.with_key_prefix(prefix);
        self
    }

    /// Redis at `url`.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Backend::Url(url.into());
        self
    }

    /// Redis through an existing redis-rs client; the context opens its two connections.
    pub fn redis_client(mut self, client: redis::Client) -> Self {
        self.backend = Backend::Client(client);
        self
    }

    /// The in-process backend; contexts built on clones of one [`MemoryBackend`] see
    /// each other's streams.
    pub fn memory(mut self, backend: MemoryBackend) -> Self {
        self.backend = Backend::Memory(backend);
        self
    }

    /// A Redis Cluster, reached through any of its nodes (`redis://host:port`): keys
    /// and channels are routed by slot, and the node connections come back after a
    /// node restarts. Combine with [`pubsub`](Self::pubsub)`(PubSub::Sharded)` so that
    /// pub/sub scales with the shards. (Feature `cluster`: redis-rs's async cluster
    /// connection, run on smol's own background threads; the API stays blocking.)
    ///
    /// ```no_run
    /// use resumable_stream_blocking::{PubSub, ResumableStreamContext};
    ///
    /// # fn main() -> Result<(), resumable_stream::Error> {
    /// let ctx = ResumableStreamContext::builder()
    ///     .redis_cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
    ///     .pubsub(PubSub::Sharded)
    ///     .build()?;
    /// # drop(ctx); Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn redis_cluster<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.backend = Backend::Cluster(urls.into_iter().map(Into::into).collect());
        self
    }

    /// Classic (default) or sharded pub/sub: see [`PubSub`].
    pub fn pubsub(mut self, pubsub: PubSub) -> Self {
        self.config = self.config.with_pubsub(pubsub);
        self
    }

    /// Connects (for Redis) and starts the context's threads.
    ///
    /// # Errors
    /// [`Error::Config`] without a usable Redis URL; [`Error::Redis`] when Redis
    /// cannot be reached.
    pub fn build(self) -> Result<ResumableStreamContext, Error> {
        let client = match self.backend {
            Backend::Memory(memory) => {
                return Ok(ResumableStreamContext::start_memory(self.config, memory))
            }
            #[cfg(feature = "cluster")]
            Backend::Cluster(urls) => {
                return ResumableStreamContext::start_cluster(self.config, &urls)
            }
            #[cfg(feature = "cluster")]
            Backend::FromEnv if redis_cluster_urls_from_env().is_some() => {
                let urls = redis_cluster_urls_from_env().unwrap_or_default();
                return ResumableStreamContext::start_cluster(self.config, &urls);
            }
            Backend::FromEnv => client_for(&redis_url_from_env()?)?,
            Backend::Url(url) => client_for(&url)?,
            Backend::Client(client) => client,
        };
        let commands = client.get_connection().map_err(|e| connect_error(&e))?;
        let pubsub = client.get_connection().map_err(|e| connect_error(&e))?;
        pubsub
            .set_read_timeout(Some(PUBSUB_POLL))
            .map_err(|e| connect_error(&e))?;
        let (hub, queues) = Hub::new(engine_for(self.config));
        let inbox = Inbox::for_hub(&hub);
        let mut commands = Some(commands);
        let command_client = client.clone();
        Ok(ResumableStreamContext::start_threads(
            hub,
            queues,
            move |batch| {
                if commands.is_none() {
                    commands = retry(|| command_client.get_connection());
                }
                let Some(connection) = commands.as_mut() else {
                    let error =
                        ReplyError::Connection("the Redis command connection is down".into());
                    return vec![Err(error); batch.len()];
                };
                let pipe = pipeline(batch);
                let result = redis::ConnectionLike::req_packed_commands(
                    connection,
                    &pipe.get_packed_pipeline(),
                    0,
                    batch.len(),
                );
                if matches!(&result, Err(error) if error.code().is_none()) {
                    // Reopened before the next pipeline.
                    commands = None;
                }
                replies(result, batch.len())
            },
            move |hub, queue| run_redis_pubsub(hub, &client, pubsub, queue, &inbox),
        ))
    }
}

fn spawn(role: &str, body: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name(format!("resumable-stream-{role}"))
        .spawn(body);
    if let Err(error) = spawned {
        log::error!("resumable-stream: cannot start the {role} thread: {error}");
    }
}

/// Carries commands in pipelines: everything queued goes at once.
fn run_commands(
    hub: &Hub,
    queue: &Receiver<Command>,
    mut execute: impl FnMut(&[Command]) -> Vec<Result<Reply, ReplyError>>,
) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many_blocking(&mut batch, 4096) > 0 {
        let replies = execute(&batch);
        hub.handle_replies(batch.drain(..), replies);
    }
}

/// How long a dropped connection is retried before what waits on it fails.
pub const RECONNECT_WINDOW: Duration = Duration::from_secs(10);

/// Tries `open` with a growing pause until it succeeds or [`RECONNECT_WINDOW`] is spent.
fn retry<T>(mut open: impl FnMut() -> redis::RedisResult<T>) -> Option<T> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match open() {
            Ok(value) => return Some(value),
            Err(error) if started.elapsed() >= RECONNECT_WINDOW => {
                log::warn!("resumable-stream: giving up reconnecting to Redis: {error}");
                return None;
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Owns the pub/sub connection: sends queued (un)subscriptions, then waits up to
/// [`PUBSUB_POLL`] for a message, until the context closes. When the connection drops
/// it is reopened (the engine then subscribes every channel again); when that fails
/// for [`RECONNECT_WINDOW`], the loss is final and subscriptions fail.
fn run_redis_pubsub(
    hub: &Hub,
    client: &redis::Client,
    connection: redis::Connection,
    queue: &Receiver<Command>,
    inbox: &Inbox,
) {
    let mut connection = Some(connection);
    while let Some(mut open) = connection.take() {
        let failure = serve_pubsub(hub, &mut open, queue, inbox);
        let Some(error) = failure else {
            return; // The context closed.
        };
        log::warn!("resumable-stream: the Redis pub/sub connection failed: {error}");
        inbox.connection_interrupted();
        connection = retry(|| {
            let reopened = client.get_connection()?;
            reopened.set_read_timeout(Some(PUBSUB_POLL))?;
            Ok(reopened)
        });
        match &connection {
            Some(_) => inbox.connection_restored(),
            None => inbox.connection_lost(),
        }
    }
    // Lost for good: answer what is still asked, until the context closes.
    while let Some(command) = queue.recv_blocking() {
        let error = ReplyError::Connection("the Redis pub/sub connection is down".into());
        hub.with_engine(|engine| engine.handle_reply(Instant::now(), command.id, Err(error)));
    }
}

/// Serves one pub/sub connection until it fails (the error) or the context closes.
fn serve_pubsub(
    hub: &Hub,
    connection: &mut redis::Connection,
    queue: &Receiver<Command>,
    inbox: &Inbox,
) -> Option<redis::RedisError> {
    let mut pubsub = connection.as_pubsub();
    loop {
        loop {
            let command = match queue.try_recv() {
                Ok(Some(command)) => command,
                Ok(None) => break,
                Err(()) => return None,
            };
            if matches!(command.op, Op::SSubscribe { .. } | Op::SUnsubscribe { .. }) {
                let error = ReplyError::Server(
                    "ERR sharded pub/sub needs the Redis Cluster backend (redis_cluster)".into(),
                );
                hub.with_engine(|engine| {
                    engine.handle_reply(Instant::now(), command.id, Err(error))
                });
                continue;
            }
            // The confirmation may take longer than a poll: wait for it properly.
            let _ = pubsub.set_read_timeout(Some(CONFIRMATION_TIMEOUT));
            let result = match &command.op {
                Op::Subscribe { channel } => pubsub.subscribe(channel.as_ref()),
                Op::Unsubscribe { channel } => pubsub.unsubscribe(channel.as_ref()),
                _ => Ok(()),
            };
            let _ = pubsub.set_read_timeout(Some(PUBSUB_POLL));
            let reply = result.as_ref().map(|()| Reply::Ok).map_err(to_reply_error);
            hub.with_engine(|engine| engine.handle_reply(Instant::now(), command.id, reply));
            if let Err(error) = result {
                if error.code().is_none() {
                    return Some(error);
                }
            }
        }
        match pubsub.get_message() {
            Ok(message) => {
                if let Ok(channel) = message.get_channel::<Vec<u8>>() {
                    inbox.deliver(
                        &channel,
                        Bytes::copy_from_slice(message.get_payload_bytes()),
                    );
                }
            }
            Err(error) if error.is_timeout() => {}
            Err(error) => return Some(error),
        }
    }
}

/// Fires the engine's deadlines; wakes early when the next one changes.
fn run_timer(hub: &Hub, wakeups: &Receiver<()>) {
    loop {
        let woken = match hub.next_deadline() {
            Some(deadline) => wakeups.recv_deadline(deadline),
            None => wakeups.recv_blocking().ok_or(RecvTimeoutError::Closed),
        };
        match woken {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => hub.fire_timeouts(),
            Err(RecvTimeoutError::Closed) => return,
        }
    }
}

impl ResumableStreamContext {
    /// A builder, with the default configuration and Redis from the environment.
    pub fn builder() -> ContextBuilder {
        ContextBuilder {
            config: Config::default(),
            backend: Backend::FromEnv,
        }
    }

    /// Redis from `REDIS_URL` (or `KV_URL`), default configuration.
    ///
    /// # Errors
    /// As [`ContextBuilder::build`].
    pub fn from_env() -> Result<ResumableStreamContext, Error> {
        Self::builder().build()
    }

    /// A context on a private in-process backend: a single-instance server without
    /// Redis.
    pub fn in_memory() -> ResumableStreamContext {
        Self::start_memory(Config::default(), MemoryBackend::new())
    }

    fn start_memory(config: Config, backend: MemoryBackend) -> ResumableStreamContext {
        let (hub, queues) = Hub::new(engine_for(config));
        let connection = Arc::new(backend.connect());
        connection.attach(Inbox::for_hub(&hub));
        let commands = connection.clone();
        Self::start_threads(
            hub,
            queues,
            move |batch| commands.execute(batch),
            move |hub, queue| run_memory_subscriptions(hub, &connection, queue),
        )
    }

    #[cfg(feature = "cluster")]
    fn start_cluster(config: Config, urls: &[String]) -> Result<ResumableStreamContext, Error> {
        use resumable_stream_driver::redis_aio::Hooks;
        use resumable_stream_driver::redis_cluster::ClusterTransport;
        use resumable_stream_driver::AsyncTransport;
        let hooks = Hooks {
            spawn: Box::new(|task| smol::spawn(task).detach()),
            sleep: Box::new(|pause| {
                Box::pin(async move {
                    smol::Timer::after(pause).await;
                })
            }),
        };
        let transport = Arc::new(smol::block_on(ClusterTransport::connect(urls, hooks))?);
        let (hub, queues) = Hub::new(engine_for(config));
        transport.attach(Inbox::for_hub(&hub));
        let commands = transport.clone();
        Ok(Self::start_threads(
            hub,
            queues,
            move |batch| smol::block_on(commands.execute(batch)),
            move |hub, queue| {
                while let Some(command) = queue.recv_blocking() {
                    let reply =
                        smol::block_on(transport.run_pubsub(command.op)).map(|()| Reply::Ok);
                    hub.with_engine(|engine| {
                        engine.handle_reply(Instant::now(), command.id, reply)
                    });
                }
            },
        ))
    }

    /// Starts the context's three threads over one backend: `execute` carries each
    /// pipeline of commands, `pubsub` serves the subscription queue (and the pub/sub
    /// connection), and the timer fires the engine's deadlines.
    fn start_threads(
        hub: Hub,
        queues: Queues,
        mut execute: impl FnMut(&[Command]) -> Vec<Result<Reply, ReplyError>> + Send + 'static,
        pubsub: impl FnOnce(&Hub, &Receiver<Command>) + Send + 'static,
    ) -> ResumableStreamContext {
        let Queues {
            commands,
            subscriptions,
            timer,
        } = queues;
        spawn("commands", {
            let hub = hub.clone();
            move || run_commands(&hub, &commands, &mut execute)
        });
        spawn("pubsub", {
            let hub = hub.clone();
            move || pubsub(&hub, &subscriptions)
        });
        spawn("timer", {
            let hub = hub.clone();
            move || run_timer(&hub, &timer)
        });
        ResumableStreamContext {
            inner: Arc::new(ContextInner { hub }),
        }
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    fn ask(
        &self,
        make: impl FnOnce(&mut Engine) -> Handle,
        starter: Option<Starter>,
    ) -> Result<(Handle, Answer), Error> {
        let (handle, answered) = self.hub().request(make, starter);
        let answer = answered.recv_blocking().unwrap_or(Err(Error::Closed))?;
        Ok((handle, answer))
    }

    fn stream(&self, handle: Handle, role: Role, receiver: Receiver<ReaderItem>) -> BlockingStream {
        BlockingStream {
            reader: Reader::new(self.hub().clone(), handle, role, receiver),
        }
    }

    /// Creates the stream `stream_id`, or resumes it if it exists: the deployed
    /// libraries' idempotent `resumableStream`.
    ///
    /// `make_source` is called only when this caller becomes the producer; its
    /// iterator is then pulled on its own thread to its end, even if the returned
    /// stream is dropped. A resumer skips the first `skip` units of what was produced
    /// when its request arrives. Returns `None` when the stream already finished.
    ///
    /// # Errors
    /// Typed [`Error`]s: Redis failures, an unexpected sentinel, an acknowledgement
    /// timeout (no producer answered), [`Error::Closed`].
    pub fn resumable_stream<F, I, B, E>(
        &self,
        stream_id: &str,
        make_source: F,
        skip: Option<u64>,
    ) -> Result<Option<BlockingStream>, Error>
    where
        F: FnOnce() -> I + Send + 'static,
        I: IntoIterator<Item = Result<B, E>>,
        I::IntoIter: Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        self.resumable_stream_at(stream_id, make_source, Position::from_skip(skip))
    }

    /// [`resumable_stream`](Self::resumable_stream), resuming at any [`Position`]
    /// (`Position::Chunk(n)` for an SSE `Last-Event-ID`; see
    /// [`BlockingStream::chunk_position`]).
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream), and [`Error::Unsupported`] for
    /// a chunk position on a v1 producer.
    pub fn resumable_stream_at<F, I, B, E>(
        &self,
        stream_id: &str,
        make_source: F,
        position: Position,
    ) -> Result<Option<BlockingStream>, Error>
    where
        F: FnOnce() -> I + Send + 'static,
        I: IntoIterator<Item = Result<B, E>>,
        I::IntoIter: Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        let (handle, answer) = self.ask(
            |engine| engine.resumable_stream_at(stream_id, position),
            Some(starter(make_source)),
        )?;
        match answer {
            Answer::Stream(role, receiver) => Ok(Some(self.stream(handle, role, receiver))),
            Answer::Done => Ok(None),
            Answer::NotFound | Answer::State(_) | Answer::Cancelled => Err(unexpected_answer()),
        }
    }

    /// Creates the stream `stream_id` unconditionally and produces it from
    /// `make_source`.
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream), and [`Error::AlreadyProducing`]
    /// if this context already produces that id.
    pub fn create_new_resumable_stream<F, I, B, E>(
        &self,
        stream_id: &str,
        make_source: F,
    ) -> Result<BlockingStream, Error>
    where
        F: FnOnce() -> I + Send + 'static,
        I: IntoIterator<Item = Result<B, E>>,
        I::IntoIter: Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        let (handle, answer) = self.ask(
            |engine| engine.create_new_resumable_stream(stream_id),
            Some(starter(make_source)),
        )?;
        match answer {
            Answer::Stream(role, receiver) => Ok(self.stream(handle, role, receiver)),
            _ => Err(unexpected_answer()),
        }
    }

    /// Resumes the existing stream `stream_id`, skipping `skip` units.
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream).
    pub fn resume_existing_stream(
        &self,
        stream_id: &str,
        skip: Option<u64>,
    ) -> Result<Resumed, Error> {
        self.resume_existing_stream_at(stream_id, Position::from_skip(skip))
    }

    /// [`resume_existing_stream`](Self::resume_existing_stream) at any [`Position`].
    ///
    /// # Errors
    /// As [`resumable_stream_at`](Self::resumable_stream_at).
    pub fn resume_existing_stream_at(
        &self,
        stream_id: &str,
        position: Position,
    ) -> Result<Resumed, Error> {
        let (handle, answer) = self.ask(
            |engine| engine.resume_existing_stream_at(stream_id, position),
            None,
        )?;
        Ok(match answer {
            Answer::Stream(role, receiver) => Resumed::Stream(self.stream(handle, role, receiver)),
            Answer::Done => Resumed::Done,
            Answer::NotFound => Resumed::NotFound,
            Answer::State(_) | Answer::Cancelled => return Err(unexpected_answer()),
        })
    }

    /// Whether the stream `stream_id` exists: [`StreamState::None`], `Active` or `Done`.
    ///
    /// # Errors
    /// Redis failures and an unexpected sentinel, as typed [`Error`]s.
    pub fn has_existing_stream(&self, stream_id: &str) -> Result<StreamState, Error> {
        self.ask(|engine| engine.has_existing_stream(stream_id), None)?
            .1
            .into_state()
    }

    /// Stops the stream `stream_id` wherever it is produced, if its producer is ours:
    /// the producer stops pulling its source (after the item it is waiting for: a
    /// thread blocked in `next()` cannot be interrupted); readers end with
    /// [`Error::Cancelled`].
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a v1 producer, [`Error::AckTimeout`] when nobody
    /// produces it, Redis failures.
    pub fn cancel(&self, stream_id: &str) -> Result<Cancelled, Error> {
        self.ask(|engine| engine.cancel(stream_id), None)?
            .1
            .into_cancelled()
    }

    /// Counters of the inputs the engine dropped (malformed requests, stray messages).
    pub fn stats(&self) -> resumable_stream::Stats {
        self.hub().with_engine(|engine| engine.stats())
    }
}

/// Runs SUBSCRIBE / UNSUBSCRIBE on the in-memory backend, in order.
fn run_memory_subscriptions(hub: &Hub, connection: &MemoryConnection, queue: &Receiver<Command>) {
    while let Some(command) = queue.recv_blocking() {
        let reply = connection.run(&command.op);
        hub.with_engine(|engine| engine.handle_reply(Instant::now(), command.id, reply));
    }
}

/// Starts a producer on its own thread: `make_source` runs there (never under the
/// hub's lock), then its iterator is pulled into the hub until it ends, fails or
/// panics, or the stream is stopped.
fn starter<F, I, B, E>(make_source: F) -> Starter
where
    F: FnOnce() -> I + Send + 'static,
    I: IntoIterator<Item = Result<B, E>>,
    I::IntoIter: Send + 'static,
    B: Into<Bytes>,
    E: Display,
{
    Box::new(move |hub: Hub, handle: Handle| {
        let production = Production::new(hub, handle);
        let spawned = std::thread::Builder::new()
            .name("resumable-stream-producer".into())
            .spawn(move || produce(production, make_source));
        if let Err(error) = spawned {
            // The closure, and the `Production` in it, is dropped: the stream fails
            // as a source error (the message names the cause).
            log::error!("resumable-stream: cannot start a producer thread: {error}");
        }
    })
}

/// A producer thread's body.
fn produce<F, I, B, E>(mut production: Production, make_source: F)
where
    F: FnOnce() -> I,
    I: IntoIterator<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Display,
{
    let Some(items) = production.make(make_source) else {
        return;
    };
    let mut items = items.into_iter();
    loop {
        // A panicking source ends the stream as a source error.
        let fed = match catch_source_panic(|| items.next()) {
            Ok(Some(Ok(chunk))) => production.feed([chunk.into()], None),
            Ok(Some(Err(error))) => production.feed([], Some(SourceEnd::Failed(error.to_string()))),
            Ok(None) => production.feed([], Some(SourceEnd::Finished)),
            Err(end) => production.feed([], Some(end)),
        };
        if !fed {
            return;
        }
    }
}

/// One reader's view of a resumable stream: every chunk in order, then the end
/// (`None`) or one error.
///
/// Dropping it detaches the reader: a resumer stops listening; a producer keeps
/// producing for its other readers.
#[derive(Debug)]
pub struct BlockingStream {
    reader: Reader,
}

impl BlockingStream {
    /// Whether this caller produces the stream or resumed one produced elsewhere.
    pub fn role(&self) -> Role {
        self.reader.role()
    }

    /// How many chunks of the stream this reader has received: resume at this
    /// [`Position::Chunk`] to continue right after them (use it as an SSE event id).
    /// `None` until a chunk arrives, and from a v1 producer, which does not say.
    pub fn chunk_position(&self) -> Option<u64> {
        self.reader.chunk_position()
    }

    /// Like [`Iterator::next`], but waits at most `timeout`; `Err(())` when it passed.
    #[allow(clippy::result_unit_err)]
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<Bytes, Error>>, ()> {
        if self.reader.is_finished() {
            return Ok(None);
        }
        match self
            .reader
            .receiver()
            .recv_deadline(Instant::now() + timeout)
        {
            Ok(item) => Ok(self.reader.accept(Some(item))),
            Err(RecvTimeoutError::Closed) => Ok(self.reader.accept(None)),
            Err(RecvTimeoutError::Timeout) => Err(()),
        }
    }
}

impl Iterator for BlockingStream {
    type Item = Result<Bytes, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_finished() {
            return None;
        }
        let item = self.reader.receiver().recv_blocking();
        self.reader.accept(item)
    }
}
