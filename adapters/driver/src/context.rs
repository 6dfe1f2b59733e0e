//! The async API every async driver offers, written once: the context, its builder,
//! the stream a reader receives, and the loops that carry commands, subscriptions and
//! deadlines. A driver supplies only an [`AsyncRuntime`]: how to spawn a task and how to
//! sleep.

use crate::hub::{unexpected_answer, Answer, Hub, Queues, ReaderItem, Starter};
use crate::mailbox::Receiver;
use crate::memory::MemoryBackend;
use crate::production::{catch_source_panic, Production, SourceEnd};
use crate::reader::Reader;
use crate::transport::{AsyncTransport, CustomTransport, Inbox, Publisher, Subscriber};
use crate::Cancelled;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::future::{self, BoxFuture, Either};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use resumable_stream::{
    Command, Config, Engine, Error, Handle, Op, Position, Reply, ReplyError, Role, StreamState,
};
use std::fmt::Display;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// What an async driver provides: spawning and sleeping on its runtime.
pub trait AsyncRuntime: Clone + Send + Sync + 'static {
    /// The runtime the caller runs on.
    ///
    /// # Panics
    /// May panic outside the runtime (tokio does).
    fn current() -> Self;

    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// Resolves at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
}

/// What [`AsyncContext::resume_existing_stream`] found.
#[derive(Debug)]
pub enum Resumed {
    /// The stream exists and is being produced: read the rest of it here.
    Stream(ResumableStream),
    /// The stream finished; there is nothing to resume.
    Done,
    /// No stream with that id exists.
    NotFound,
}

/// A handle to one engine and its connections: the object a server keeps.
///
/// Cheap to clone; every clone shares the engine and connections. Dropping the last
/// clone closes the connections; streams still being read then end with
/// [`Error::Closed`].
///
/// A runnable example of every method is on the tokio driver's
/// `resumable_stream_tokio::ResumableStreamContext` (this type on tokio).
pub struct AsyncContext<R: AsyncRuntime> {
    inner: Arc<ContextInner>,
    runtime: R,
}

impl<R: AsyncRuntime> Clone for AsyncContext<R> {
    fn clone(&self) -> Self {
        AsyncContext {
            inner: self.inner.clone(),
            runtime: self.runtime.clone(),
        }
    }
}

struct ContextInner {
    hub: Hub,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // Ends every queue, so every loop of this context returns and drops its
        // connection.
        self.hub.close();
    }
}

impl<R: AsyncRuntime> std::fmt::Debug for AsyncContext<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableStreamContext")
            .finish_non_exhaustive()
    }
}

enum Backend {
    FromEnv,
    #[cfg(feature = "redis-aio")]
    Url(String),
    #[cfg(feature = "redis-aio")]
    Client(redis::Client),
    #[cfg(feature = "redis-aio")]
    Connections(redis::aio::MultiplexedConnection, redis::aio::PubSub),
    #[cfg(feature = "redis-aio")]
    Cluster(Vec<String>),
    Memory(MemoryBackend),
    Transport(Arc<dyn AsyncTransport>),
}

/// Builds an [`AsyncContext`]: the configuration and the backend.
pub struct AsyncContextBuilder<R: AsyncRuntime> {
    config: Config,
    backend: Backend,
    runtime: std::marker::PhantomData<R>,
}

impl<R: AsyncRuntime> AsyncContextBuilder<R> {
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

    /// Redis at `url` (`redis://host:port/db`).
    #[cfg(feature = "redis-aio")]
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Backend::Url(url.into());
        self
    }

    /// Redis through an existing redis-rs client; the context opens its two connections.
    #[cfg(feature = "redis-aio")]
    pub fn redis_client(mut self, client: redis::Client) -> Self {
        self.backend = Backend::Client(client);
        self
    }

    /// Redis through existing connections: one for commands, one for pub/sub.
    #[cfg(feature = "redis-aio")]
    pub fn redis_connections(
        mut self,
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
    ) -> Self {
        self.backend = Backend::Connections(commands, pubsub);
        self
    }

    /// A Redis Cluster, reached through any of its nodes (`redis://host:port`): keys
    /// and channels are routed by slot. Combine with
    /// [`PubSub::Sharded`](resumable_stream::PubSub) (see [`pubsub`](Self::pubsub)) so
    /// that pub/sub scales with the shards; classic pub/sub (the default) stays
    /// available for the npm and PyPI libraries.
    #[cfg(feature = "redis-aio")]
    pub fn redis_cluster<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.backend = Backend::Cluster(urls.into_iter().map(Into::into).collect());
        self
    }

    /// Classic (default) or sharded pub/sub: see [`PubSub`](resumable_stream::PubSub).
    pub fn pubsub(mut self, pubsub: resumable_stream::PubSub) -> Self {
        self.config = self.config.with_pubsub(pubsub);
        self
    }

    /// The in-process backend; contexts built on clones of one [`MemoryBackend`] see
    /// each other's streams.
    pub fn memory(mut self, backend: MemoryBackend) -> Self {
        self.backend = Backend::Memory(backend);
        self
    }

    /// A backend of your own that pipelines commands.
    pub fn transport(mut self, transport: Arc<dyn AsyncTransport>) -> Self {
        self.backend = Backend::Transport(transport);
        self
    }

    /// A backend of your own in the deployed libraries' shape: a publisher for
    /// commands and a subscriber for pub/sub.
    pub fn publisher_subscriber(
        mut self,
        publisher: impl Publisher,
        subscriber: impl Subscriber,
    ) -> Self {
        self.backend = Backend::Transport(Arc::new(CustomTransport::new(publisher, subscriber)));
        self
    }

    /// Connects (for Redis) and starts the driver's loops on the current runtime.
    ///
    /// # Errors
    /// [`Error::Config`] without a usable Redis URL; [`Error::Redis`] when Redis
    /// cannot be reached.
    pub async fn build(self) -> Result<AsyncContext<R>, Error> {
        let runtime = R::current();
        let transport: Arc<dyn AsyncTransport> = match self.backend {
            Backend::Memory(memory) => Arc::new(memory.connect()),
            Backend::Transport(transport) => transport,
            #[cfg(feature = "redis-aio")]
            Backend::Connections(commands, pubsub) => Arc::new(
                crate::redis_aio::RedisTransport::new(commands, pubsub, spawner(&runtime)),
            ),
            #[cfg(feature = "redis-aio")]
            Backend::FromEnv => match redis_cluster_urls_from_env() {
                Some(urls) => connect_cluster(&urls, &runtime).await?,
                None => {
                    connect(
                        &crate::redis_wire::client_for(&redis_url_from_env()?)?,
                        &runtime,
                    )
                    .await?
                }
            },
            #[cfg(feature = "redis-aio")]
            Backend::Cluster(urls) => connect_cluster(&urls, &runtime).await?,
            #[cfg(feature = "redis-aio")]
            Backend::Url(url) => connect(&crate::redis_wire::client_for(&url)?, &runtime).await?,
            #[cfg(feature = "redis-aio")]
            Backend::Client(client) => connect(&client, &runtime).await?,
            #[cfg(not(feature = "redis-aio"))]
            Backend::FromEnv => {
                redis_url_from_env()?;
                return Err(Error::Config("this build has no Redis support".into()));
            }
        };
        Ok(AsyncContext::start(self.config, transport, runtime))
    }
}

#[cfg(feature = "redis-aio")]
fn spawner<R: AsyncRuntime>(runtime: &R) -> crate::redis_aio::Hooks {
    let (spawn, sleep) = (runtime.clone(), runtime.clone());
    crate::redis_aio::Hooks {
        spawn: Box::new(move |task| spawn.spawn(task)),
        sleep: Box::new(move |pause| sleep.sleep_until(Instant::now() + pause)),
    }
}

#[cfg(feature = "redis-aio")]
async fn connect<R: AsyncRuntime>(
    client: &redis::Client,
    runtime: &R,
) -> Result<Arc<dyn AsyncTransport>, Error> {
    Ok(Arc::new(
        crate::redis_aio::RedisTransport::connect(client, spawner(runtime)).await?,
    ))
}

#[cfg(feature = "redis-aio")]
async fn connect_cluster<R: AsyncRuntime>(
    urls: &[String],
    runtime: &R,
) -> Result<Arc<dyn AsyncTransport>, Error> {
    Ok(Arc::new(
        crate::redis_cluster::ClusterTransport::connect(urls, spawner(runtime)).await?,
    ))
}

/// `REDIS_CLUSTER_URLS`: the comma-separated URLs of some nodes of a Redis Cluster,
/// which [`AsyncContext::from_env`] prefers to `REDIS_URL` when set.
pub fn redis_cluster_urls_from_env() -> Option<Vec<String>> {
    let urls: Vec<String> = std::env::var("REDIS_CLUSTER_URLS")
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

/// `REDIS_URL`, else `KV_URL`, as the deployed libraries read them.
///
/// # Errors
/// [`Error::Config`] when neither is set.
pub fn redis_url_from_env() -> Result<String, Error> {
    ["REDIS_URL", "KV_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            Error::Config(
                "no Redis URL: set REDIS_URL or KV_URL, or use the in-memory backend".into(),
            )
        })
}

/// A seed for listener ids from the standard library's per-process random keys, mixed
/// into the configured one so that two processes never share a sequence.
pub fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

/// The engine of a new context: `config`, its listener-id seed mixed with entropy.
pub fn engine_for(config: Config) -> Engine {
    let seed = config.seed() ^ entropy();
    Engine::new(config.with_seed(seed))
}

/// A source, type-erased: chunks or the source's error text.
type Source = BoxStream<'static, Result<Bytes, String>>;

fn erase<F, S, B, E>(make_stream: F) -> Box<dyn FnOnce() -> Source + Send>
where
    F: FnOnce() -> S + Send + 'static,
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: Into<Bytes>,
    E: Display,
{
    Box::new(move || {
        make_stream()
            .map(|item| item.map(Into::into).map_err(|e| e.to_string()))
            .boxed()
    })
}

impl<R: AsyncRuntime> AsyncContext<R> {
    /// A builder, with the default configuration and Redis from the environment.
    pub fn builder() -> AsyncContextBuilder<R> {
        AsyncContextBuilder {
            config: Config::default(),
            backend: Backend::FromEnv,
            runtime: std::marker::PhantomData,
        }
    }

    /// Redis from `REDIS_URL` (or `KV_URL`), or the Redis Cluster of
    /// `REDIS_CLUSTER_URLS` when that is set; default configuration.
    ///
    /// # Errors
    /// As [`AsyncContextBuilder::build`].
    pub async fn from_env() -> Result<AsyncContext<R>, Error> {
        Self::builder().build().await
    }

    /// A context on a private in-process backend: a single-instance server without
    /// Redis.
    pub fn in_memory() -> AsyncContext<R> {
        let transport: Arc<dyn AsyncTransport> = Arc::new(MemoryBackend::new().connect());
        Self::start(Config::default(), transport, R::current())
    }

    fn start(config: Config, transport: Arc<dyn AsyncTransport>, runtime: R) -> AsyncContext<R> {
        let (hub, queues) = Hub::new(engine_for(config));
        transport.attach(Inbox::for_hub(&hub));
        let Queues {
            commands,
            subscriptions,
            timer,
        } = queues;
        runtime.spawn(Box::pin(run_commands(
            hub.clone(),
            transport.clone(),
            commands,
        )));
        runtime.spawn(Box::pin(run_subscriptions(
            hub.clone(),
            transport,
            subscriptions,
        )));
        runtime.spawn(Box::pin(run_timer(hub.clone(), runtime.clone(), timer)));
        AsyncContext {
            inner: Arc::new(ContextInner { hub }),
            runtime,
        }
    }

    fn starter<F, S, B, E>(&self, make_stream: F) -> Starter
    where
        F: FnOnce() -> S + Send + 'static,
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        let make = erase(make_stream);
        let runtime = self.runtime.clone();
        // `make_stream` runs on the producer's task, never under the hub's lock nor on
        // the I/O loop that learnt this caller produces.
        // The stream's hold is taken before the spawn: a task the runtime drops unrun
        // still ends its stream.
        Box::new(move |hub, handle| {
            let production = Production::new(hub, handle);
            runtime.spawn(Box::pin(produce(production, make)));
        })
    }

    async fn ask(
        &self,
        make: impl FnOnce(&mut Engine) -> Handle,
        starter: Option<Starter>,
    ) -> Result<(Handle, Answer), Error> {
        let (handle, answered) = self.hub().request(make, starter);
        let answer = answered.recv().await.unwrap_or(Err(Error::Closed))?;
        Ok((handle, answer))
    }

    fn stream(
        &self,
        handle: Handle,
        role: Role,
        receiver: Receiver<ReaderItem>,
    ) -> ResumableStream {
        ResumableStream {
            reader: Reader::new(self.hub().clone(), handle, role, receiver),
        }
    }

    /// Creates the stream `stream_id`, or resumes it if it exists: the deployed
    /// libraries' idempotent `resumableStream`.
    ///
    /// `make_stream` is called only when this caller becomes the producer; its source
    /// then runs to its end even if the returned stream is dropped. A resumer skips the
    /// first `skip` units (UTF-16 code units unless configured otherwise) of what was
    /// produced when its request arrives.
    ///
    /// Returns `None` when the stream already finished.
    ///
    /// # Errors
    /// Typed [`Error`]s: Redis failures, an unexpected sentinel, an acknowledgement
    /// timeout (no producer answered), [`Error::Closed`].
    pub async fn resumable_stream<F, S, B, E>(
        &self,
        stream_id: &str,
        make_stream: F,
        skip: Option<u64>,
    ) -> Result<Option<ResumableStream>, Error>
    where
        F: FnOnce() -> S + Send + 'static,
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        self.resumable_stream_at(stream_id, make_stream, Position::from_skip(skip))
            .await
    }

    /// [`resumable_stream`](Self::resumable_stream), resuming at any [`Position`]:
    /// `Position::Chunk(n)` resumes at chunk `n` (an SSE `Last-Event-ID`; see
    /// [`ResumableStream::chunk_position`]).
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream), and [`Error::Unsupported`] for
    /// a chunk position on a v1 producer.
    pub async fn resumable_stream_at<F, S, B, E>(
        &self,
        stream_id: &str,
        make_stream: F,
        position: Position,
    ) -> Result<Option<ResumableStream>, Error>
    where
        F: FnOnce() -> S + Send + 'static,
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        let starter = self.starter(make_stream);
        let (handle, answer) = self
            .ask(
                |engine| engine.resumable_stream_at(stream_id, position),
                Some(starter),
            )
            .await?;
        match answer {
            Answer::Stream(role, receiver) => Ok(Some(self.stream(handle, role, receiver))),
            Answer::Done => Ok(None),
            Answer::NotFound | Answer::State(_) | Answer::Cancelled => Err(unexpected_answer()),
        }
    }

    /// Creates the stream `stream_id` unconditionally and produces it from
    /// `make_stream`.
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream), and
    /// [`Error::AlreadyProducing`] if this context already produces that id.
    pub async fn create_new_resumable_stream<F, S, B, E>(
        &self,
        stream_id: &str,
        make_stream: F,
    ) -> Result<ResumableStream, Error>
    where
        F: FnOnce() -> S + Send + 'static,
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes>,
        E: Display,
    {
        let starter = self.starter(make_stream);
        let (handle, answer) = self
            .ask(
                |engine| engine.create_new_resumable_stream(stream_id),
                Some(starter),
            )
            .await?;
        match answer {
            Answer::Stream(role, receiver) => Ok(self.stream(handle, role, receiver)),
            _ => Err(unexpected_answer()),
        }
    }

    /// Resumes the existing stream `stream_id`, skipping `skip` units.
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream).
    pub async fn resume_existing_stream(
        &self,
        stream_id: &str,
        skip: Option<u64>,
    ) -> Result<Resumed, Error> {
        self.resume_existing_stream_at(stream_id, Position::from_skip(skip))
            .await
    }

    /// [`resume_existing_stream`](Self::resume_existing_stream) at any [`Position`].
    ///
    /// # Errors
    /// As [`resumable_stream_at`](Self::resumable_stream_at).
    pub async fn resume_existing_stream_at(
        &self,
        stream_id: &str,
        position: Position,
    ) -> Result<Resumed, Error> {
        let (handle, answer) = self
            .ask(
                |engine| engine.resume_existing_stream_at(stream_id, position),
                None,
            )
            .await?;
        Ok(match answer {
            Answer::Stream(role, receiver) => Resumed::Stream(self.stream(handle, role, receiver)),
            Answer::Done => Resumed::Done,
            Answer::NotFound => Resumed::NotFound,
            Answer::State(_) | Answer::Cancelled => return Err(unexpected_answer()),
        })
    }

    /// Whether the stream `stream_id` exists: [`StreamState::None`], `Active` or
    /// `Done`.
    ///
    /// # Errors
    /// Redis failures and an unexpected sentinel, as typed [`Error`]s.
    pub async fn has_existing_stream(&self, stream_id: &str) -> Result<StreamState, Error> {
        let (_, answer) = self
            .ask(|engine| engine.has_existing_stream(stream_id), None)
            .await?;
        answer.into_state()
    }

    /// Stops the stream `stream_id` wherever it is produced, if its producer is ours:
    /// the producer drops its source; its readers end with [`Error::Cancelled`].
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a v1 producer, [`Error::AckTimeout`] when nobody
    /// produces it, Redis failures.
    pub async fn cancel(&self, stream_id: &str) -> Result<Cancelled, Error> {
        self.ask(|engine| engine.cancel(stream_id), None)
            .await?
            .1
            .into_cancelled()
    }

    /// Counters of the inputs the engine dropped (malformed requests, stray messages).
    pub fn stats(&self) -> resumable_stream::Stats {
        self.hub().with_engine(|engine| engine.stats())
    }

    fn hub(&self) -> &Hub {
        &self.inner.hub
    }
}

/// One reader's view of a resumable stream: every chunk in order, then the end (`None`)
/// or one error.
///
/// Dropping it detaches the reader: a resumer stops listening; a producer keeps
/// producing for its other readers, as the protocol requires.
#[derive(Debug)]
pub struct ResumableStream {
    reader: Reader,
}

impl ResumableStream {
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
}

impl Stream for ResumableStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.reader.poll_next(cx)
    }
}

/// The most chunks a producer loop takes from its source before feeding the engine.
const SOURCE_BATCH: usize = 512;

/// Makes a producer's source (the user's `make_stream`) and pulls it into the engine
/// until it ends, fails or panics, the stream is cancelled, or the context closes. The
/// local reader going away does not stop it.
///
/// Whatever the source has ready (up to [`SOURCE_BATCH`] chunks) is fed to the engine
/// under one lock, so a fast source costs one lock, one drain and one reader wake-up
/// per batch rather than per chunk; a source that yields one chunk at a time is fed
/// one chunk at a time, as before.
async fn produce(mut production: Production, make: Box<dyn FnOnce() -> Source + Send>) {
    let Some(mut source) = production.make(make) else {
        return;
    };
    let stop = production.stop_signal();
    // Grows to what the source has ready, not to SOURCE_BATCH: a context may run
    // thousands of producer loops at once.
    let mut batch = Vec::new();
    // The source said Pending after the last batch: it has registered a wake-up, and
    // must not be polled again before the task returns to the runtime (a source that
    // yields, as `yield_now` does, would otherwise never let anything else run).
    let mut source_pending = false;
    loop {
        let step = future::poll_fn(|cx| {
            if stop.poll_recv(cx).is_ready() {
                return Poll::Ready(Pulled::Stop);
            }
            if std::mem::take(&mut source_pending) {
                return Poll::Pending;
            }
            loop {
                // A panicking source ends the stream as a source error; it is not
                // polled again.
                let polled = match catch_source_panic(|| source.poll_next_unpin(cx)) {
                    Ok(polled) => polled,
                    Err(end) => return Poll::Ready(Pulled::End(end)),
                };
                match polled {
                    Poll::Ready(Some(Ok(chunk))) => {
                        batch.push(chunk);
                        if batch.len() == SOURCE_BATCH {
                            return Poll::Ready(Pulled::Chunks);
                        }
                    }
                    Poll::Ready(Some(Err(message))) => {
                        return Poll::Ready(Pulled::End(SourceEnd::Failed(message)))
                    }
                    Poll::Ready(None) => return Poll::Ready(Pulled::End(SourceEnd::Finished)),
                    Poll::Pending if batch.is_empty() => return Poll::Pending,
                    Poll::Pending => {
                        source_pending = true;
                        return Poll::Ready(Pulled::Chunks);
                    }
                }
            }
        })
        .await;
        let end = match step {
            Pulled::Stop => return production.stopped(),
            Pulled::Chunks => None,
            Pulled::End(end) => Some(end),
        };
        if !production.feed(batch.drain(..), end) {
            return;
        }
    }
}

/// What a producer loop took from its source.
enum Pulled {
    /// The stream must stop (cancelled, or the context closed).
    Stop,
    /// Chunks, and the source may have more.
    Chunks,
    /// Chunks, then the source's end.
    End(SourceEnd),
}

/// Carries commands to the transport: everything queued goes as one pipeline, one
/// pipeline in flight at a time, so the batch grows with the load.
async fn run_commands(hub: Hub, transport: Arc<dyn AsyncTransport>, queue: Receiver<Command>) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 4096).await > 0 {
        let replies = transport.execute(&batch).await;
        hub.handle_replies(batch.drain(..), replies);
    }
}

/// The most channels one SUBSCRIBE or UNSUBSCRIBE names.
const SUBSCRIPTION_BATCH: usize = 1024;

/// Carries SUBSCRIBE and UNSUBSCRIBE to the transport, in order: what is queued goes in
/// runs of the same kind, each run as one command naming all its channels.
async fn run_subscriptions(hub: Hub, transport: Arc<dyn AsyncTransport>, queue: Receiver<Command>) {
    let mut batch = Vec::with_capacity(64);
    let mut channels = Vec::with_capacity(64);
    while queue.recv_many(&mut batch, SUBSCRIPTION_BATCH).await > 0 {
        let mut start = 0;
        while start < batch.len() {
            let subscribe = match &batch[start].op {
                Op::Subscribe { .. } => true,
                Op::Unsubscribe { .. } => false,
                // Sharded channels may each live on another shard: one at a time (and
                // anything else is refused alone).
                op => {
                    let id = batch[start].id;
                    let reply = transport.run_pubsub(op.clone()).await.map(|()| Reply::Ok);
                    hub.with_engine(|engine| engine.handle_reply(Instant::now(), id, reply));
                    start += 1;
                    continue;
                }
            };
            // A run of classic (un)subscriptions goes as one command naming them all.
            let mut end = start;
            channels.clear();
            while let Some(command) = batch.get(end) {
                match (&command.op, subscribe) {
                    (Op::Subscribe { channel }, true) | (Op::Unsubscribe { channel }, false) => {
                        channels.push(channel.clone());
                        end += 1;
                    }
                    _ => break,
                }
            }
            let results = transport.subscribe_many(subscribe, &channels).await;
            let mut results = results.into_iter();
            hub.with_engine(|engine| {
                let now = Instant::now();
                for command in &batch[start..end] {
                    let reply = results.next().unwrap_or_else(|| {
                        Err(ReplyError::Connection("no reply for this command".into()))
                    });
                    engine.handle_reply(now, command.id, reply.map(|()| Reply::Ok));
                }
            });
            start = end;
        }
        batch.clear();
    }
}

/// Sleeps until the engine's next deadline and fires it; wakes early whenever the
/// deadline changes.
async fn run_timer<R: AsyncRuntime>(hub: Hub, runtime: R, wakeups: Receiver<()>) {
    loop {
        match hub.next_deadline() {
            Some(deadline) => {
                let sleep = runtime.sleep_until(deadline);
                let woken = std::pin::pin!(wakeups.recv());
                match future::select(sleep, woken).await {
                    Either::Left(_) => hub.fire_timeouts(),
                    Either::Right((None, _)) => return,
                    Either::Right((Some(()), _)) => {}
                }
            }
            None => {
                if wakeups.recv().await.is_none() {
                    return;
                }
            }
        }
    }
}
