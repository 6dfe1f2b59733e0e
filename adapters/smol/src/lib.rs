//! # resumable-stream-smol
//!
//! The smol driver of [`resumable_stream`]: the same API as the tokio and async-std
//! drivers (all three are written once, in `resumable-stream-driver`), on smol's
//! executor, without async-std. Redis I/O runs on redis-rs's `smol-comp`, over
//! `async-io`, smol's own reactor.
//!
//! A context's loops and producers are spawned with `smol::spawn`, on smol's global
//! executor (its threads start on first use; `SMOL_THREADS` sets how many), so they
//! run whether or not the caller is inside `smol::block_on`.
//!
//! ```no_run
//! use futures_util::{stream, StreamExt};
//! use resumable_stream_smol::ResumableStreamContext;
//!
//! # fn main() -> Result<(), resumable_stream_smol::Error> { smol::block_on(async {
//! let ctx = ResumableStreamContext::from_env().await?; // REDIS_URL, then KV_URL
//! let make_stream = || stream::iter(["a", "b"].map(Ok::<_, std::convert::Infallible>));
//! if let Some(mut chunks) = ctx.resumable_stream("job-7", make_stream, None).await? {
//!     while let Some(chunk) = chunks.next().await {
//!         print!("{}", String::from_utf8_lossy(&chunk?));
//!     }
//! }
//! # Ok(()) }) }
//! ```

#![forbid(unsafe_code)]

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Instant;

/// The Redis client (redis-rs) whose types the builder's `redis_client` and
/// `redis_connections` take, at the version this driver was built with.
#[cfg(feature = "redis")]
pub use resumable_stream_driver::redis;

/// smol's global executor, as the shared driver needs it.
#[derive(Clone, Copy, Debug, Default)]
struct Smol;

impl resumable_stream_driver::Runtime for Smol {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Detached: every loop of the driver ends by itself when its context closes.
        smol::spawn(task).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }
}

resumable_stream_driver::async_driver! {
    runtime = Arc::new(Smol);
    /// A handle to one engine and its connections, on smol: the object a server keeps.
    /// The same methods as the tokio driver's `ResumableStreamContext`.
    ///
    /// Cheap to clone; every clone shares the engine and connections. Dropping the
    /// last clone closes the connections; streams still being read then end with
    /// [`Error::Closed`].
}
