//! # resumable-stream-driver
//!
//! What every driver of [`resumable_stream`] shares, so that the tokio, async-std and
//! blocking drivers stay thin and say nothing twice:
//!
//! - [`mailbox`]: a queue a receiver can await on any executor or block a thread on;
//!   the only concurrent data structure, model-checked with loom;
//! - [`hub`]: the engine behind one lock, routing its commands to per-connection
//!   mailboxes and its events to readers;
//! - [`MemoryBackend`]: the in-process backend;
//! - [`AsyncContext`]: the whole async API (context, builder, streams, and the loops that
//!   carry commands, subscriptions and deadlines), generic over an [`AsyncRuntime`];
//! - `redis_wire`, `redis_aio` and `redis_cluster` (features `redis`, `tokio`,
//!   `smol`): commands to redis-rs and replies back, for one Redis or a Redis Cluster.
//!
//! No protocol decision is made here: the engine makes them all.

#![forbid(unsafe_code)]

/// What a cancel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The producer stopped the stream.
    Cancelled,
    /// The stream had already finished.
    AlreadyDone,
    /// No stream with that id exists.
    NotFound,
}

pub mod hub;
pub mod mailbox;
pub mod production;
#[cfg(not(loom))]
pub mod reader;
mod sync;

#[cfg(not(loom))]
mod context;
mod memory;
#[cfg(all(not(loom), feature = "redis-aio"))]
pub mod redis_aio;
#[cfg(all(not(loom), feature = "redis-aio"))]
pub mod redis_cluster;
#[cfg(all(not(loom), feature = "redis"))]
pub mod redis_wire;
mod transport;

#[cfg(not(loom))]
pub use context::{
    engine_for, entropy, redis_cluster_urls_from_env, redis_url_from_env, AsyncContext,
    AsyncContextBuilder, AsyncRuntime, ResumableStream, Resumed,
};
pub use memory::{MemoryBackend, MemoryConnection};
pub use transport::{AsyncTransport, CustomTransport, Inbox, Publisher, Subscriber};
