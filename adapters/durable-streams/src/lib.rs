//! The [Durable Streams](https://github.com/durable-streams/durable-streams) HTTP
//! protocol as an axum [`Router`](axum::Router): create (`PUT`), append and close
//! (`POST`), read (catch-up, long-poll, SSE), `HEAD`, `DELETE`, JSON mode, idempotent
//! producers and forks, over a [`Store`]:
//!
//! - [`MemoryStore`]: every stream in this process's memory;
//! - `RedisStore` (feature `redis`, on by default): streams on Redis or a Redis Cluster
//!   in resumable-stream's durable log format, shared by every server on that Redis
//!   and readable by `resumable_stream` (see the README).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use resumable_stream_durable_streams::{router, Config, MemoryStore};
//!
//! let app = router(MemoryStore::new(), Config::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4437").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The protocol's sections cited in this crate are those of its text, `PROTOCOL.md` in
//! the protocol's repository.

mod http;
pub mod json;
mod memory;
#[cfg(feature = "redis")]
mod redis_store;
mod reserved;
mod sse;
pub mod store;
#[cfg(feature = "subscriptions")]
mod subs;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use store::Store;
#[cfg(feature = "subscriptions")]
pub use subs::{BadSigningKey, SubscriptionConfig};

/// How the router serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The path under which stream ids live: `/v1/stream` serves `/v1/stream/{id}`.
    pub base_path: String,
    /// How long a long-poll waits for data before answering `204`.
    pub long_poll_timeout: Duration,
    /// How long an SSE response stays open before the server ends it (the client
    /// reconnects from the last offset; protocol section 10.2).
    pub sse_lifetime: Duration,
    /// About how many bytes a read answers at most (always at least one chunk).
    pub max_read_bytes: usize,
    /// The largest request body accepted (`413` above).
    pub max_body_bytes: usize,
    /// The reserved subscription APIs (protocol sections 6 and 7), served over a
    /// store whose streams all live in this process (`MemoryStore`); `501` otherwise.
    #[cfg(feature = "subscriptions")]
    pub subscriptions: SubscriptionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_path: "/v1/stream".into(),
            long_poll_timeout: Duration::from_secs(10),
            sse_lifetime: Duration::from_secs(60),
            max_read_bytes: 1 << 20,
            max_body_bytes: 64 << 20,
            #[cfg(feature = "subscriptions")]
            subscriptions: SubscriptionConfig::default(),
        }
    }
}

/// The protocol's routes over `store`, every path under `config.base_path`.
pub fn router<S: Store>(store: S, config: Config) -> axum::Router {
    router_dyn(Arc::new(store), config)
}

/// [`router`] over a store chosen at run time.
pub fn router_dyn(store: Arc<dyn Store>, config: Config) -> axum::Router {
    http::router(store, config)
}
