//! # resumable-stream-tokio
//!
//! The tokio driver of [`resumable_stream`]: the sans-IO engine carried over Redis
//! (redis-rs on tokio), over an in-process store, or over your own publisher and
//! subscriber. Everything but the runtime itself (how to spawn a task, how to sleep)
//! is shared with the other drivers in `resumable-stream-driver`; this crate makes no
//! protocol decision.
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
//! A Redis Cluster, with sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE`: each channel on
//! the shard owning its slot):
//!
//! ```no_run
//! use resumable_stream_tokio::{PubSub, ResumableStreamContext};
//!
//! # async fn connect() -> Result<(), resumable_stream::Error> {
//! let ctx = ResumableStreamContext::builder()
//!     .redis_cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])
//!     .pubsub(PubSub::Sharded)
//!     .build()
//!     .await?;
//! # drop(ctx); Ok(()) }
//! ```
//!
//! Several contexts on one [`MemoryBackend`] behave like several server instances on
//! one Redis:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use resumable_stream_tokio::{MemoryBackend, ResumableStreamContext};
//! let backend = MemoryBackend::new();
//! let instance_a = ResumableStreamContext::builder().memory(backend.clone()).build().await.unwrap();
//! let instance_b = ResumableStreamContext::builder().memory(backend).build().await.unwrap();
//! # drop((instance_a, instance_b)); }
//! ```

#![forbid(unsafe_code)]

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// The Redis client (redis-rs) whose types the builder's `redis_client` and
/// `redis_connections` take, at the version this driver was built with.
#[cfg(feature = "redis")]
pub use resumable_stream_driver::redis;

/// The tokio runtime the context is built on: its loops and producers run there.
#[derive(Clone, Debug)]
struct Tokio(tokio::runtime::Handle);

impl Tokio {
    /// The runtime the caller runs on.
    ///
    /// # Panics
    /// Outside a tokio runtime, as tokio's own `spawn` does.
    fn current() -> Arc<dyn resumable_stream_driver::Runtime> {
        Arc::new(Tokio(tokio::runtime::Handle::current()))
    }
}

impl resumable_stream_driver::Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        drop(self.0.spawn(task));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
            deadline,
        )))
    }
}

resumable_stream_driver::async_driver! {
    runtime = Tokio::current();
    /// A handle to one engine and its connections, on tokio: the object a server keeps.
    ///
    /// Every call, on the in-memory backend (the same on Redis, across instances):
    ///
    /// ```
    /// use futures_util::{stream, StreamExt};
    /// use resumable_stream_tokio::{
    ///     Cancelled, Error, Position, ResumableStreamContext, Resumed, Role, StreamState,
    /// };
    /// use std::convert::Infallible;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
    /// let ctx = ResumableStreamContext::in_memory();
    ///
    /// // Two tokens, then the source waits, as a model thinking.
    /// let source = || stream::iter(["Hello", ", world"].map(Ok::<_, Infallible>)).chain(stream::pending());
    /// let mut producer = ctx.resumable_stream("answer-1", source, None).await?.expect("new stream");
    /// assert_eq!(producer.role(), Role::Producer);
    /// assert_eq!(&producer.next().await.unwrap()?[..], b"Hello");
    /// assert_eq!(producer.chunk_position(), Some(1)); // an SSE event id
    ///
    /// // Another request resumes right after chunk 1 (a browser's `Last-Event-ID: 1`).
    /// let unused = || stream::empty::<Result<&'static str, Infallible>>();
    /// let mut resumer = ctx
    ///     .resumable_stream("answer-1", unused, Position::Chunk(1))
    ///     .await?
    ///     .expect("still running");
    /// assert_eq!(resumer.role(), Role::Resumer);
    /// assert_eq!(&resumer.next().await.unwrap()?[..], b", world");
    /// assert_eq!(resumer.chunk_position(), Some(2));
    ///
    /// // Queries.
    /// assert_eq!(ctx.has_existing_stream("answer-1").await?, StreamState::Active);
    /// assert!(matches!(ctx.resume_existing_stream("nobody", None).await?, Resumed::NotFound));
    ///
    /// // Stop it from any instance: its readers end with `Error::Cancelled`.
    /// assert_eq!(ctx.cancel("answer-1").await?, Cancelled::Cancelled);
    /// assert!(matches!(resumer.next().await, Some(Err(Error::Cancelled))));
    /// assert_eq!(ctx.has_existing_stream("answer-1").await?, StreamState::Done);
    ///
    /// // The explicit create: always a producer (an error if this context already is).
    /// let once = || stream::iter(["bye"].map(Ok::<_, Infallible>));
    /// let mut created = ctx.create_new_resumable_stream("answer-2", once).await?;
    /// assert_eq!(&created.next().await.unwrap()?[..], b"bye");
    /// assert!(created.next().await.is_none());
    /// assert!(matches!(ctx.resume_existing_stream("answer-2", None).await?, Resumed::Done));
    /// # Ok(()) }
    /// ```
}

/// The README's example, compiled as a doctest so that it stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The snippets of docs/guide.md, compiled (and run where they need no Redis) as
/// doctests.
#[doc = include_str!("../../../docs/guide.md")]
#[cfg(doctest)]
pub struct GuideDoctests;

/// The snippets of docs/managed-redis.md, compiled as doctests.
#[doc = include_str!("../../../docs/managed-redis.md")]
#[cfg(doctest)]
pub struct ManagedRedisDoctests;
