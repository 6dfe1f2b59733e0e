//! # resumable-stream
//!
//! Streams that survive a lost connection. A server wraps any stream of text or bytes
//! (an LLM answer over SSE, a job's log); a client that loses its connection, or a
//! second client on another server instance, picks the stream up where it left off.
//!
//! This crate is the sans-IO core: a pure state machine, [`Engine`], that speaks the
//! wire protocol of the npm and PyPI `resumable-stream` libraries byte for byte over
//! Redis pub/sub and keys, without doing any I/O itself; the protocol, v1 and this
//! crate's extensions to it, is specified in `docs/protocol.md`. Drivers carry its
//! commands to Redis and its events to the application:
//!
//! - `resumable-stream-tokio` (in `adapters/tokio`): async, on tokio and redis-rs;
//! - [`MemoryRedis`]: an in-process Redis stand-in for single-instance servers;
//! - the `sim` module (feature `sim`): a deterministic network simulation for tests.
//!
//! ## The drive loop
//!
//! Feed one input, then drain every output (see [`Engine`] for a complete example):
//!
//! ```no_run
//! # use resumable_stream::*;
//! # use std::time::Instant;
//! # fn send(_: &Command) {}
//! # fn deliver(_: Event) {}
//! # fn next_input() -> (Instant, CommandId, Result<Reply, ReplyError>) { unimplemented!() }
//! let mut engine = Engine::new(Config::default());
//! let _handle = engine.resumable_stream("stream-id", None);
//! loop {
//!     while let Some(command) = engine.poll_command() {
//!         send(&command); // on the connection `command.op.connection()` names
//!     }
//!     while let Some(event) = engine.poll_event() {
//!         deliver(event); // to the reader `event.handle()` names
//!     }
//!     let _wake_at = engine.poll_timeout(); // call handle_timeout then
//!     let (now, id, reply) = next_input();
//!     engine.handle_reply(now, id, reply);
//! }
//! ```
//!
//! ## Guarantees
//!
//! - Every listener gets its catch-up, then every later chunk exactly once and in
//!   order, then the end, because one engine emits every command of a stream in one
//!   ordered queue.
//! - Nothing from Redis or a peer makes the engine panic; malformed input is dropped and
//!   counted in [`Stats`], failures reach the application as a typed [`Error`].
//! - A chunk nobody listens to, or only v1 listeners, costs no allocation beyond its
//!   own [`Bytes`](bytes::Bytes): the buffer, the local reader's [`Event::Data`] and
//!   each v1 listener's `PUBLISH` share it. Each listener of ours gets its own frame of
//!   the chunk (its token and the chunk's index before the bytes, from
//!   [`Incoming::encode_chunk`](wire::Incoming::encode_chunk)): one allocation and one
//!   copy per chunk per such listener. `tests/allocations.rs` counts both.

#![forbid(unsafe_code)]

pub mod cluster;
mod config;
mod engine;
mod error;
mod event;
mod idmap;
mod io;
mod memory;
mod position;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod skip;
pub mod sse;
pub mod wire;

pub use config::{Config, Durable, PubSub};
pub use engine::{Engine, Stats};
pub use error::{Error, SourceError};
pub use event::{Event, Handle, Role, StreamState};
pub use idmap::{HandleMap, IdHasher};
pub use io::{Command, CommandId, Connection, Op, PubSubState, Reply, ReplyError, StreamId};
pub use memory::{ClientId, Delivery, MemoryRedis};
pub use position::Position;
pub use skip::SkipUnit;
