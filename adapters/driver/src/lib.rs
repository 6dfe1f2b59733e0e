//! # resumable-stream-driver
//!
//! The one driver API of [`resumable_stream`], runtime-agnostic, that the tokio,
//! async-std and blocking drivers wrap, so that each of them stays thin and says
//! nothing twice:
//!
//! - [`Builder`] and [`Context`]: the configuration, the backends, and the requests,
//!   each answering a [`Request`] typed by what it asks: awaited by the async
//!   drivers, waited for on the thread by the blocking one ([`Face`] says which);
//! - the hub: the engine behind one lock, routing its commands to per-connection
//!   mailboxes and its events to readers (mailboxes are the one concurrent
//!   structure, model-checked with loom);
//! - [`Runtime`]: what a context needs of an executor, and the loops it runs there;
//! - production: a producer's source pulled on a task ([`task_starter`]) or a thread
//!   ([`thread_starter`]), a panic in it ending the stream as a source error;
//! - [`Transport`]: every backend (Redis, Redis Cluster, the in-process
//!   [`MemoryBackend`], a [`Publisher`] and [`Subscriber`] of your own), each carrying
//!   the engine's commands on the connection each names: the command connection
//!   (pipelined), the pub/sub connection, and connections reserved for blocking reads.
//!
//! No protocol decision is made here: the engine makes them all.

#![forbid(unsafe_code)]
// Under loom only the structures threads share are compiled in use.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(not(loom))]
mod builder;
#[cfg(not(loom))]
mod context;
#[cfg(not(loom))]
mod face;
// The structures threads share are public only for the loom models.
#[cfg(loom)]
pub mod hub;
#[cfg(not(loom))]
mod hub;
#[cfg(loom)]
pub mod mailbox;
#[cfg(not(loom))]
mod mailbox;
#[cfg(loom)]
pub mod production;
#[cfg(not(loom))]
mod production;
mod reader;
mod request;
mod runtime;
#[cfg(not(loom))]
mod sse;
mod sync;
mod transport;

#[cfg(not(loom))]
pub use builder::{Builder, Face, Parts};
#[cfg(not(loom))]
pub use context::Context;
#[cfg(not(loom))]
pub use face::ResumableStream;
pub use hub::Starter;
pub use production::{task_starter, thread_starter};
pub use reader::{Reader, TimedOut};
pub use request::{Answer, Cancelled, Opened, Request, Resumed};
pub use runtime::Runtime;
#[cfg(not(loom))]
pub use sse::{BlockingChunks, SseIter, SseOptions, SseStream};
/// A Redis Cluster transport (redis-rs's async cluster connection), to build by hand
/// and hand to [`Builder::transport`], or to drive directly.
#[cfg(all(not(loom), feature = "cluster"))]
pub use transport::cluster::ClusterTransport;
/// A single-Redis transport (redis-rs's async connections), to build by hand and hand
/// to [`Builder::transport`], or to drive directly.
#[cfg(all(not(loom), feature = "redis"))]
pub use transport::redis::RedisTransport;
pub use transport::{
    CustomTransport, Inbox, MemoryBackend, MemoryConnection, Publisher, Subscriber, Transport,
};

/// The Redis client this crate runs on (redis-rs), whose types
/// [`Builder::redis_client`] and [`Builder::redis_connections`] take: use this one, so
/// that its version is the one the driver was built with.
#[cfg(feature = "redis")]
pub use redis;

// For the `async_driver!` macro's expansion in the drivers.
#[doc(hidden)]
pub mod engine {
    pub use bytes;
    pub use resumable_stream;
}
#[doc(hidden)]
pub use bytes::Bytes;
#[doc(hidden)]
pub use futures_core::Stream;
#[doc(hidden)]
pub use futures_util::future::BoxFuture;
#[doc(hidden)]
pub use resumable_stream::{Error, Position, Stats, StreamState};
