//! # resumable-stream-async-std
//!
//! The async-std driver of [`resumable_stream`]: the same API as the tokio driver
//! (both are written once, in `resumable-stream-driver`), with only the runtime swapped.
//!
//! ## Why redis-rs's `smol-comp`
//!
//! redis-rs 1.x dropped its async-std feature. Its `smol-comp` feature runs the
//! connections on `async-io`, which is also the reactor under async-std, so a context
//! built on async-std talks to Redis without starting a second runtime. When a build
//! also enables redis-rs's `tokio-comp` (a workspace that holds both drivers, as ours
//! does), redis-rs picks tokio only inside a tokio runtime and async-io everywhere
//! else, so each driver keeps its own runtime: our test suite runs both in one build.
//!
//! async-std itself is discontinued upstream in favour of smol (advisory
//! RUSTSEC-2025-0052): this driver stays for the services that still run on it, and
//! new code on async-io should use `resumable-stream-smol`, the same API on smol.
//!
//! ```no_run
//! use futures_util::{stream, StreamExt};
//! use resumable_stream_async_std::ResumableStreamContext;
//!
//! # async fn handler() -> Result<(), resumable_stream::Error> {
//! let ctx = ResumableStreamContext::from_env().await?;
//! let make_stream = || stream::iter(["a", "b"].map(Ok::<_, std::convert::Infallible>));
//! if let Some(mut chunks) = ctx.resumable_stream("job-7", make_stream, None).await? {
//!     while let Some(chunk) = chunks.next().await {
//!         print!("{}", String::from_utf8_lossy(&chunk?));
//!     }
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// The Redis client (redis-rs) whose types the builder's `redis_client` and
/// `redis_connections` take, at the version this driver was built with.
#[cfg(feature = "redis")]
pub use resumable_stream_driver::redis;

/// The async-std runtime: its global executor runs the context's loops and producers.
#[derive(Clone, Copy, Debug, Default)]
struct AsyncStd;

impl resumable_stream_driver::Runtime for AsyncStd {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Detached: every loop of the driver ends by itself when its context closes.
        drop(async_std::task::spawn(task));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(
            deadline.saturating_duration_since(Instant::now()),
        ))
    }
}

resumable_stream_driver::async_driver! {
    runtime = Arc::new(AsyncStd);
    /// A handle to one engine and its connections, on async-std: the object a server
    /// keeps. The same methods as the tokio driver's `ResumableStreamContext`.
    ///
    /// Cheap to clone; every clone shares the engine and connections. Dropping the
    /// last clone closes the connections; streams still being read then end with
    /// [`Error::Closed`].
}
