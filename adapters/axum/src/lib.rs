#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! - [`StartAt`] and [`PositionRejection`]: where a reader starts;
//! - [`resumable_sse`], [`resume_sse`], [`sse_body`], [`sse_response`], [`Sse`]: SSE
//!   responses (the framing: [`framing`], which is `resumable_stream::sse`);
//! - [`status_for`] and [`ErrorResponse`]: the table of statuses (in [`status`]);
//! - [`ai_sdk`]: the Vercel AI SDK's chat routes.

#![forbid(unsafe_code)]

pub mod ai_sdk;
mod position;
mod sse;
pub mod status;

pub use position::{
    PositionRejection, StartAt, LAST_EVENT_ID_HEADER, LAST_EVENT_ID_PARAM, MAX_POSITION,
    OFFSET_PARAM,
};
pub use sse::{resumable_sse, resume_sse, sse_body, sse_response, Sse};
pub use status::{status_for, ErrorResponse};

pub use axum::http;
pub use bytes::Bytes;
pub use resumable_stream::sse as framing;
pub use resumable_stream_tokio::{
    Cancelled, Config, Durable, Error, MemoryBackend, Position, ResumableStream,
    ResumableStreamContext, Resumed, Role, SkipUnit, SseOptions, SseStream, StreamState,
};
