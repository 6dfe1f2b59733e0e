//! # resumable-stream-tokio
//!
//! The tokio driver of [`resumable_stream`]: the sans-IO engine carried over Redis
//! (redis-rs), over an in-process store, or over your own publisher and subscriber.
//! It makes no protocol decision of its own; it carries commands, replies, messages
//! and deadlines between the engine and the backend.
//!
//! ```no_run
//! use futures_util::{stream, StreamExt};
//! use resumable_stream_tokio::ResumableStreamContext;
//!
//! # async fn handler() -> Result<(), resumable_stream::Error> {
//! // Redis from REDIS_URL (or KV_URL).
//! let ctx = ResumableStreamContext::from_env().await?;
//! let make_stream = || stream::iter(["data: hello\n\n", "data: world\n\n"].map(Ok::<_, std::convert::Infallible>));
//! match ctx.resumable_stream("chat-42", make_stream, None).await? {
//!     Some(mut chunks) => {
//!         while let Some(chunk) = chunks.next().await {
//!             print!("{}", String::from_utf8_lossy(&chunk?));
//!         }
//!     }
//!     None => println!("the stream already finished"),
//! }
//! # Ok(()) }
//! ```
//!
//! Dropping the last clone of a context closes its connections; its streams then end
//! with [`Error::Closed`].

#![forbid(unsafe_code)]

mod driver;
mod stream;
mod transport;

pub use resumable_stream::{Config, Error, ReplyError, Role, SkipUnit, StreamState};
pub use stream::ResumableStream;
pub use transport::{Inbox, MemoryBackend, Publisher, Subscriber, Transport};

use bytes::Bytes;
use driver::{Answer, Shared, SourceFactory, Tasks};
use futures_core::Stream;
use futures_util::StreamExt;
use resumable_stream::Engine;
use std::fmt::Display;
use std::sync::{Arc, Mutex};

/// What [`ResumableStreamContext::resume_existing_stream`] found.
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
/// Cheap to clone; every clone shares the engine and connections.
#[derive(Clone)]
pub struct ResumableStreamContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    shared: Arc<Shared>,
    _tasks: Tasks,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        self.shared.close();
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
    Connections(redis::aio::MultiplexedConnection, redis::aio::PubSub),
    Memory(MemoryBackend),
    Transport(Arc<dyn Transport>),
}

/// Builds a [`ResumableStreamContext`]: the configuration and the backend.
///
/// ```no_run
/// # async fn f() -> Result<(), resumable_stream::Error> {
/// use resumable_stream_tokio::ResumableStreamContext;
/// let ctx = ResumableStreamContext::builder()
///     .key_prefix("chat")
///     .redis_url("redis://127.0.0.1:6379")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
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

    /// Redis at `url` (`redis://host:port/db`, `rediss://` is not enabled).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.backend = Backend::Url(url.into());
        self
    }

    /// Redis through an existing redis-rs client; the context opens its two connections.
    pub fn redis_client(mut self, client: redis::Client) -> Self {
        self.backend = Backend::Client(client);
        self
    }

    /// Redis through existing connections: one for commands, one for pub/sub.
    pub fn redis_connections(
        mut self,
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
    ) -> Self {
        self.backend = Backend::Connections(commands, pubsub);
        self
    }

    /// The in-process backend; contexts built on clones of one [`MemoryBackend`] see
    /// each other's streams.
    pub fn memory(mut self, backend: MemoryBackend) -> Self {
        self.backend = Backend::Memory(backend);
        self
    }

    /// A backend of your own that pipelines commands.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
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
        self.backend = Backend::Transport(Arc::new(transport::CustomTransport {
            publisher: Box::new(publisher),
            subscriber: Box::new(subscriber),
            inbox: Mutex::new(None),
        }));
        self
    }

    /// Connects (for Redis) and starts the driver. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] without a usable Redis URL; [`Error::Redis`] when Redis
    /// cannot be reached.
    pub async fn build(self) -> Result<ResumableStreamContext, Error> {
        let transport: Arc<dyn Transport> = match self.backend {
            Backend::Memory(memory) => Arc::new(memory.transport()),
            Backend::Transport(transport) => transport,
            Backend::Connections(commands, pubsub) => {
                Arc::new(transport::RedisTransport::new(commands, pubsub))
            }
            Backend::FromEnv => connect(client_for(&redis_url_from_env()?)?).await?,
            Backend::Url(url) => connect(client_for(&url)?).await?,
            Backend::Client(client) => connect(client).await?,
        };
        let config = self
            .config
            .clone()
            .with_seed(self.config.seed() ^ entropy());
        let (shared, tasks) = Shared::start(Engine::new(config), transport);
        Ok(ResumableStreamContext {
            inner: Arc::new(ContextInner {
                shared,
                _tasks: tasks,
            }),
        })
    }
}

/// `REDIS_URL`, else `KV_URL`, as the deployed libraries read them.
fn redis_url_from_env() -> Result<String, Error> {
    ["REDIS_URL", "KV_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            Error::Config(
                "no Redis URL: set REDIS_URL or KV_URL, or use the in-memory backend".into(),
            )
        })
}

fn client_for(url: &str) -> Result<redis::Client, Error> {
    redis::Client::open(url).map_err(|e| Error::Config(format!("invalid Redis URL: {e}")))
}

async fn connect(client: redis::Client) -> Result<Arc<dyn Transport>, Error> {
    let failed = |e: redis::RedisError| Error::Redis {
        command: "CONNECT",
        error: ReplyError::Connection(e.to_string()),
    };
    let commands = client
        .get_multiplexed_async_connection()
        .await
        .map_err(failed)?;
    let pubsub = client.get_async_pubsub().await.map_err(failed)?;
    Ok(Arc::new(transport::RedisTransport::new(commands, pubsub)))
}

/// Entropy for listener ids, from the standard library's per-process random keys.
fn entropy() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn erase<F, S, B, E>(make_stream: F) -> SourceFactory
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
    pub async fn from_env() -> Result<ResumableStreamContext, Error> {
        Self::builder().build().await
    }

    /// A context on a private in-process backend: a single-instance server without
    /// Redis.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn in_memory() -> ResumableStreamContext {
        let config = Config::default();
        let config = config.clone().with_seed(config.seed() ^ entropy());
        let transport: Arc<dyn Transport> = Arc::new(MemoryBackend::new().transport());
        let (shared, tasks) = Shared::start(Engine::new(config), transport);
        ResumableStreamContext {
            inner: Arc::new(ContextInner {
                shared,
                _tasks: tasks,
            }),
        }
    }

    /// Creates the stream `stream_id`, or resumes it if it exists: the deployed
    /// libraries' idempotent `resumableStream`.
    ///
    /// `make_stream` is called only when this caller becomes the producer; its source
    /// then runs to its end even if the returned stream is dropped. A resumer skips the
    /// first `skip` units ([`SkipUnit`], UTF-16 by default) of what was produced.
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
        let factory = erase(make_stream);
        let (handle, answer) = self
            .shared()
            .request(
                |engine| engine.resumable_stream(stream_id, skip),
                Some(factory),
            )
            .await?;
        match answer {
            Answer::Stream(role, rx) => Ok(Some(ResumableStream::new(
                rx,
                handle,
                role,
                self.shared().clone(),
            ))),
            Answer::Done => Ok(None),
            Answer::NotFound | Answer::State(_) => Err(unexpected_answer()),
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
        let factory = erase(make_stream);
        let (handle, answer) = self
            .shared()
            .request(
                |engine| engine.create_new_resumable_stream(stream_id),
                Some(factory),
            )
            .await?;
        match answer {
            Answer::Stream(role, rx) => Ok(ResumableStream::new(
                rx,
                handle,
                role,
                self.shared().clone(),
            )),
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
        let (handle, answer) = self
            .shared()
            .request(
                |engine| engine.resume_existing_stream(stream_id, skip),
                None,
            )
            .await?;
        Ok(match answer {
            Answer::Stream(role, rx) => Resumed::Stream(ResumableStream::new(
                rx,
                handle,
                role,
                self.shared().clone(),
            )),
            Answer::Done => Resumed::Done,
            Answer::NotFound => Resumed::NotFound,
            Answer::State(_) => return Err(unexpected_answer()),
        })
    }

    /// Whether the stream `stream_id` exists: [`StreamState::None`], `Active` or
    /// `Done`.
    ///
    /// # Errors
    /// Redis failures and an unexpected sentinel, as typed [`Error`]s.
    pub async fn has_existing_stream(&self, stream_id: &str) -> Result<StreamState, Error> {
        let (_, answer) = self
            .shared()
            .request(|engine| engine.has_existing_stream(stream_id), None)
            .await?;
        match answer {
            Answer::State(state) => Ok(state),
            _ => Err(unexpected_answer()),
        }
    }

    /// Counters of the inputs the engine dropped (malformed requests, stray messages).
    pub fn stats(&self) -> resumable_stream::Stats {
        self.shared().with_engine(|engine| engine.stats())
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

fn unexpected_answer() -> Error {
    Error::UnexpectedReply {
        command: "engine",
        reply: "an answer of the wrong kind for this request".into(),
    }
}

/// The README's example, compiled as a doctest so that it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
