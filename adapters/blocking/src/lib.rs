//! # resumable-stream-blocking
//!
//! The blocking driver of [`resumable_stream`], for servers without an async runtime
//! (tiny_http, a thread per request): a blocking API over the same transports as the
//! async drivers, run on a private I/O thread (see [Threads](#threads)). Streams are
//! `Iterator<Item = Result<Bytes, Error>>`; a producer's source is an iterator pulled on
//! its own thread, which keeps running when its reader goes away.
//!
//! ```no_run
//! use resumable_stream_blocking::ResumableStreamContext;
//!
//! # fn handler() -> Result<(), resumable_stream::Error> {
//! let ctx = ResumableStreamContext::from_env()?; // REDIS_URL, then KV_URL
//! let make_stream = || ["data: hello\n\n", "data: world\n\n"].map(Ok::<_, std::io::Error>);
//! match ctx.resumable_stream("chat-42", make_stream, None)? {
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
//! The API is blocking; the I/O is not. As reqwest's blocking client runs its async
//! core, a context runs the same transports as the async drivers (redis-rs's async
//! connections, Redis Cluster, the in-process store, a publisher and subscriber of
//! your own), with the same pipelining, reconnection and retry policy, on one private
//! I/O thread (a smol executor). A producer's source is an iterator whose `next` may
//! block, so each is pulled on a thread of its own. Callers, the I/O thread and the
//! producer threads share only the driver's hub and mailboxes, which are
//! model-checked with loom in `resumable-stream-driver`. Everything stops when the
//! last clone of the context is dropped.

#![forbid(unsafe_code)]

use resumable_stream_driver::{thread_starter, Builder, Context, Face, Parts, Reader, Runtime};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use bytes::Bytes;
pub use resumable_stream::{
    Config, Durable, Error, Position, PubSub, ReplyError, Role, SkipUnit, SourceError, Stats,
    StreamState,
};
/// The Redis client (redis-rs) whose types the builder's `redis_client` and
/// `redis_connections` take, at the version this driver was built with.
#[cfg(feature = "redis")]
pub use resumable_stream_driver::redis;
pub use resumable_stream_driver::{
    BlockingChunks, Cancelled, Inbox, MemoryBackend, Publisher, SseIter, SseOptions, Subscriber,
    TimedOut, Transport,
};

/// What [`ResumableStreamContext::resume_existing_stream`] found.
pub type Resumed = resumable_stream_driver::Resumed<ResumableStream>;

/// Builds a [`ResumableStreamContext`]: the configuration and the backend; `build()`
/// connects.
pub type ContextBuilder = Builder<ResumableStreamContext>;

/// A handle to one engine, its connections and its I/O thread: the object a server
/// keeps.
///
/// Cheap to clone. Dropping the last clone stops its I/O thread and closes its
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
///     .resumable_stream("answer-1", unused, Position::Chunk(1))?
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
    /// Dropped first: it closes the engine's queues, so the loops end.
    core: Context,
    /// Then the I/O thread stops.
    _io: IoThread,
}

impl std::fmt::Debug for ResumableStreamContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableStreamContext")
            .finish_non_exhaustive()
    }
}

/// The private I/O thread of one context: a smol executor running its loops and
/// connections until the context is dropped.
struct IoThread {
    runtime: Arc<Smol>,
    /// Dropping it ends the thread.
    _stop: smol::channel::Sender<()>,
}

/// The I/O thread's executor, as the shared driver needs it.
struct Smol {
    executor: smol::Executor<'static>,
}

impl Runtime for Smol {
    fn spawn(&self, task: futures_util::future::BoxFuture<'static, ()>) {
        self.executor.spawn(task).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }
}

impl IoThread {
    /// Starts the thread.
    ///
    /// # Errors
    /// [`Error::Config`] when the operating system refuses a thread.
    fn start() -> Result<IoThread, Error> {
        let runtime = Arc::new(Smol {
            executor: smol::Executor::new(),
        });
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let executor = runtime.clone();
        std::thread::Builder::new()
            .name("resumable-stream-io".into())
            .spawn(move || smol::block_on(executor.executor.run(stopped.recv())))
            .map_err(|e| Error::Config(format!("cannot start the I/O thread: {e}")))?;
        Ok(IoThread {
            runtime,
            _stop: stop,
        })
    }

    fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }
}

impl Face for ResumableStreamContext {
    type Built = Result<ResumableStreamContext, Error>;

    fn build(parts: Parts) -> Self::Built {
        let io = IoThread::start()?;
        // Connected on the I/O thread, where its connections will live.
        let (answer, answered) = smol::channel::bounded(1);
        let runtime = io.runtime();
        io.runtime.spawn(Box::pin(async move {
            let _ = answer.send(parts.connect(runtime).await).await;
        }));
        let core = answered.recv_blocking().unwrap_or(Err(Error::Closed))?;
        Ok(ResumableStreamContext::assemble(core, io))
    }
}

impl ResumableStreamContext {
    fn assemble(core: Context, io: IoThread) -> ResumableStreamContext {
        ResumableStreamContext {
            inner: Arc::new(ContextInner { core, _io: io }),
        }
    }

    /// A builder, with the default configuration and Redis from the environment.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::new()
    }

    /// Redis from `REDIS_URL` (or `KV_URL`), or the Redis Cluster of
    /// `REDIS_CLUSTER_URLS` when that is set; default configuration.
    ///
    /// # Errors
    /// As [`Builder::build`].
    pub fn from_env() -> Result<ResumableStreamContext, Error> {
        Self::builder().build()
    }

    /// A context on a private in-process backend: a single-instance server without
    /// Redis.
    ///
    /// # Panics
    /// When the operating system refuses its I/O thread.
    pub fn in_memory() -> ResumableStreamContext {
        Self::builder()
            .memory(MemoryBackend::new())
            .build()
            .expect("the in-memory backend always connects")
    }

    fn core(&self) -> &Context {
        &self.inner.core
    }

    /// Creates the stream `stream_id`, or resumes it if it exists: the deployed
    /// libraries' idempotent `resumableStream`.
    ///
    /// `make_stream` is called only when this caller becomes the producer, on a
    /// thread of its own; its iterator is then pulled there to its end, even if the
    /// returned stream is dropped. A resumer starts at `position`: `None` (the
    /// start), `Some(n)` (skip `n` units, UTF-16 unless configured otherwise), or any
    /// [`Position`] ([`Position::Chunk`] for an SSE `Last-Event-ID`). Returns `None`
    /// when the stream already finished.
    ///
    /// # Errors
    /// Typed [`Error`]s: Redis failures, an unexpected sentinel, an acknowledgement
    /// timeout (no producer answered), [`Error::Unsupported`] for a chunk position on
    /// a v1 producer, [`Error::Closed`].
    pub fn resumable_stream<F, I, B, E>(
        &self,
        stream_id: &str,
        make_stream: F,
        position: impl Into<Position>,
    ) -> Result<Option<ResumableStream>, Error>
    where
        F: FnOnce() -> I + Send + 'static,
        I: IntoIterator<Item = Result<B, E>>,
        B: Into<Bytes>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let starter = thread_starter(make_stream);
        let opened = self
            .core()
            .resumable_stream(stream_id, position.into(), starter);
        Ok(opened.wait()?.map(ResumableStream::new))
    }

    /// Creates the stream `stream_id` unconditionally and produces it from
    /// `make_stream`.
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream), and [`Error::AlreadyProducing`]
    /// if this context already produces that id.
    pub fn create_new_resumable_stream<F, I, B, E>(
        &self,
        stream_id: &str,
        make_stream: F,
    ) -> Result<ResumableStream, Error>
    where
        F: FnOnce() -> I + Send + 'static,
        I: IntoIterator<Item = Result<B, E>>,
        B: Into<Bytes>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let starter = thread_starter(make_stream);
        let opened = self.core().create_new_resumable_stream(stream_id, starter);
        Ok(ResumableStream::new(opened.wait()?))
    }

    /// Resumes the existing stream `stream_id` at `position` (as for
    /// [`resumable_stream`](Self::resumable_stream)).
    ///
    /// # Errors
    /// As [`resumable_stream`](Self::resumable_stream).
    pub fn resume_existing_stream(
        &self,
        stream_id: &str,
        position: impl Into<Position>,
    ) -> Result<Resumed, Error> {
        let resumed = self
            .core()
            .resume_existing_stream(stream_id, position.into());
        Ok(resumed.wait()?.map(ResumableStream::new))
    }

    /// Whether the stream `stream_id` exists: [`StreamState::None`], `Active` or `Done`.
    ///
    /// # Errors
    /// Redis failures and an unexpected sentinel, as typed [`Error`]s.
    pub fn has_existing_stream(&self, stream_id: &str) -> Result<StreamState, Error> {
        self.core().has_existing_stream(stream_id).wait()
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
        self.core().cancel(stream_id).wait()
    }

    /// Records `stream_id` as `owner`'s active stream (a chat's, a job's), replacing
    /// the one before, for [`active_stream`](Self::active_stream) to find from any
    /// instance: in the same Redis (or memory), under the key prefix, with the
    /// sentinels' TTL.
    ///
    /// ```
    /// let ctx = resumable_stream_blocking::ResumableStreamContext::in_memory();
    /// assert_eq!(ctx.active_stream("chat-1")?, None);
    /// ctx.set_active_stream("chat-1", "chat-1:a")?;
    /// ctx.set_active_stream("chat-1", "chat-1:b")?; // a new message, a new stream
    /// assert_eq!(ctx.active_stream("chat-1")?.as_deref(), Some("chat-1:b"));
    /// # Ok::<(), resumable_stream_blocking::Error>(())
    /// ```
    ///
    /// # Errors
    /// Redis failures, [`Error::ShuttingDown`], [`Error::Closed`].
    pub fn set_active_stream(&self, owner: &str, stream_id: &str) -> Result<(), Error> {
        self.core()
            .set_active_stream(owner, stream_id)
            .wait()
            .map(drop)
    }

    /// `owner`'s active stream, as last recorded by
    /// [`set_active_stream`](Self::set_active_stream): `None` if none is (or it
    /// expired).
    ///
    /// # Errors
    /// Redis failures, [`Error::ShuttingDown`], [`Error::Closed`].
    pub fn active_stream(&self, owner: &str) -> Result<Option<String>, Error> {
        self.core().active_stream(owner).wait()
    }

    /// Counters of the inputs the engine dropped (malformed requests, stray messages).
    pub fn stats(&self) -> Stats {
        self.core().stats()
    }

    /// Shuts the context down gracefully, for a server that received SIGTERM while
    /// other instances keep serving: it takes no new request at once
    /// ([`Error::ShuttingDown`]), lets the streams it produces run to their end (their
    /// readers and listeners served), and returns when none is left or at `deadline`,
    /// whichever comes first; then it closes (readers still open end with
    /// [`Error::Closed`]). Every clone of the context is shut down.
    pub fn shutdown(&self, deadline: Instant) {
        self.core().shutdown_blocking(deadline);
    }
}

/// One reader's view of a resumable stream: every chunk in order, then the end
/// (`None`) or one error.
///
/// Dropping it detaches the reader: a resumer stops listening; a producer keeps
/// producing for its other readers.
#[derive(Debug)]
pub struct ResumableStream {
    reader: Reader,
}

impl ResumableStream {
    fn new(reader: Reader) -> ResumableStream {
        ResumableStream { reader }
    }

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

    /// Like [`Iterator::next`], but waits at most `timeout`; `Err(TimedOut)` when it
    /// passed with nothing to read.
    ///
    /// # Errors
    /// [`TimedOut`] when `timeout` passed first.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<Bytes, Error>>, TimedOut> {
        self.reader.next_before(Instant::now() + timeout)
    }
}

impl resumable_stream_driver::BlockingChunks for ResumableStream {
    fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<Bytes, Error>>, TimedOut> {
        ResumableStream::next_timeout(self, timeout)
    }

    fn chunk_position(&self) -> Option<u64> {
        ResumableStream::chunk_position(self)
    }
}

impl ResumableStream {
    /// This stream as the body of a server-sent events response: `retry:`, one event
    /// per chunk (its id the chunk position), keep-alives while the producer is
    /// silent, then `event: end` or `event: error` (see [`resumable_stream::sse`]).
    /// Write each item to the response and flush it.
    ///
    /// ```
    /// use resumable_stream_blocking::{ResumableStreamContext, SseOptions};
    /// use std::convert::Infallible;
    ///
    /// let ctx = ResumableStreamContext::in_memory();
    /// let source = || ["one\n", "two\r\n"].map(Ok::<_, Infallible>);
    /// let stream = ctx.resumable_stream("s", source, None).unwrap().unwrap();
    /// let body: Vec<_> = stream.into_sse(SseOptions::default()).collect();
    /// assert_eq!(body[0], "retry: 1000\n\n");
    /// assert_eq!(body[1], "id: 1\ndata: one\ndata: \n\n");
    /// assert_eq!(body[2], "id: 2\nevent: bytes\ndata: dHdvDQo=\n\n"); // "two\r\n" in base64
    /// assert_eq!(body[3], "event: end\ndata: \n\n");
    /// assert_eq!(body.len(), 4);
    /// ```
    pub fn into_sse(self, options: SseOptions) -> SseIter<ResumableStream> {
        SseIter::new(self, options)
    }
}

impl Iterator for ResumableStream {
    type Item = Result<Bytes, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next_blocking()
    }
}
