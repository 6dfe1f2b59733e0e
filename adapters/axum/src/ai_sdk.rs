//! The two routes of a resumable chat behind the Vercel AI SDK's `useChat({ resume:
//! true })` (npm `ai`, its `DefaultChatTransport`):
//!
//! - `POST {api}` sends a message; the model's answer comes back as the AI SDK's UI
//!   message stream (already SSE: `data: {"type":"text-delta",...}` events, then
//!   `data: [DONE]`). [`start`] makes that answer a new resumable stream and answers
//!   with its bytes as they are, with the header `x-vercel-ai-ui-message-stream: v1`.
//! - `GET {api}/{chatId}/stream` (the transport's `reconnectToStream`, on a reload or
//!   a dropped connection) must replay the chat's active answer from its start, or
//!   answer 204 when there is none. [`resume`] does.
//! - A stop button: the AI SDK's `stop()` only closes the client's connection, and in
//!   a resumable setup the answer goes on for the next reconnect. [`stop`] cancels the
//!   chat's active answer from any instance (a route of your own, such as
//!   `POST {api}/{chatId}/stop`).
//!
//! Each message starts a new stream, `{chatId}:{unique}`; which one is the chat's
//! active stream is recorded in the same Redis (or memory) under the context's key
//! prefix (`{prefix}:rs:active:{chatId}`) with the sentinels' TTL, by the engine's
//! `set_active_stream` / `active_stream`, so any instance on that Redis resumes any
//! chat.
//!
//! ```no_run
//! use axum::extract::{Path, State};
//! use axum::response::Response;
//! use axum::routing::{get, post};
//! use axum::Router;
//! use bytes::Bytes;
//! use futures_util::stream;
//! use resumable_stream_axum::{ai_sdk, ResumableStreamContext};
//! use std::convert::Infallible;
//!
//! async fn chat(State(ctx): State<ResumableStreamContext>, body: String) -> Response {
//!     let chat_id = "chat-1"; // the request body's `id`, parsed from `body`
//!     let answer = stream::iter([Ok::<_, Infallible>(Bytes::from("data: [DONE]\n\n"))]);
//!     ai_sdk::start(&ctx, chat_id, answer).await
//! }
//!
//! async fn reconnect(State(ctx): State<ResumableStreamContext>, Path(id): Path<String>) -> Response {
//!     ai_sdk::resume(&ctx, &id).await
//! }
//!
//! # fn app(ctx: ResumableStreamContext) -> Router {
//! Router::new()
//!     .route("/api/chat", post(chat))
//!     .route("/api/chat/{id}/stream", get(reconnect))
//!     .with_state(ctx)
//! # }
//! ```

use crate::sse::stream_headers;
use crate::status::ErrorResponse;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use resumable_stream::Position;
use resumable_stream_tokio::{
    Cancelled, ResumableStream, ResumableStreamContext, Resumed, StreamState,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// The header that tells the AI SDK the body is its UI message stream.
pub const UI_MESSAGE_STREAM_HEADER: &str = "x-vercel-ai-ui-message-stream";
/// Its value.
pub const UI_MESSAGE_STREAM_VERSION: &str = "v1";
/// The longest chat id accepted (it becomes part of Redis keys), in bytes.
pub const MAX_CHAT_ID_LEN: usize = 256;

/// A new stream id for a message of `chat_id`: `{chat_id}:{unique}`, unique across
/// processes and instances (a counter mixed with the process's random keys and the
/// time).
///
/// ```
/// let a = resumable_stream_axum::ai_sdk::new_stream_id("chat-1");
/// let b = resumable_stream_axum::ai_sdk::new_stream_id("chat-1");
/// assert!(a.starts_with("chat-1:") && a != b);
/// ```
pub fn new_stream_id(chat_id: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{chat_id}:{:016x}", hasher.finish())
}

/// The `POST` route: `ui_stream` (the model's UI message stream, SSE bytes) becomes a
/// new resumable stream, recorded as `chat_id`'s active stream, and the response
/// carries its bytes as they are (status 200, `text/event-stream`,
/// `x-vercel-ai-ui-message-stream: v1`). The stream runs to its end even if this
/// client goes away, for a later [`resume`].
///
/// If the stream fails, the body ends with an AI SDK error part
/// (`data: {"type":"error","errorText":...}`) after a blank line. Answers 400 for an
/// empty chat id or one longer than [`MAX_CHAT_ID_LEN`], or the error's status
/// ([`status_for`](crate::status_for)) when the stream cannot be created.
pub async fn start<S, B, E>(ctx: &ResumableStreamContext, chat_id: &str, ui_stream: S) -> Response
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: Into<Bytes>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Err(refused) = check_chat_id(chat_id) {
        return *refused;
    }
    let stream_id = new_stream_id(chat_id);
    let stream = match ctx
        .create_new_resumable_stream(&stream_id, move || ui_stream)
        .await
    {
        Ok(stream) => stream,
        Err(error) => return ErrorResponse(error).into_response(),
    };
    // Recorded once the stream exists, so that a reconnect that finds the id finds
    // the stream; until then it finds the previous one (finished: 204).
    if let Err(error) = ctx.set_active_stream(chat_id, &stream_id).await {
        return ErrorResponse(error).into_response();
    }
    raw_body(stream)
}

/// The `GET {chatId}/stream` route: the chat's active stream from its start, as
/// [`start`] answered it; 204 No Content when the chat has no active stream (none
/// ever, or expired) or it finished. Errors as [`status_for`](crate::status_for).
///
/// In durable mode too a finished answer is 204, not replayed from its log: the AI SDK
/// client already holds it, and would show it twice. An answer whose producer died
/// while it ran is resumed until a reader records that end: what reached the log,
/// then an error part.
pub async fn resume(ctx: &ResumableStreamContext, chat_id: &str) -> Response {
    let stream_id = match active(ctx, chat_id).await {
        Ok(stream_id) => stream_id,
        Err(answer) => return *answer,
    };
    match ctx.has_existing_stream(&stream_id).await {
        Ok(StreamState::Active) => {}
        Ok(_) => return StatusCode::NO_CONTENT.into_response(),
        Err(error) => return ErrorResponse(error).into_response(),
    }
    match ctx
        .resume_existing_stream(&stream_id, Position::Start)
        .await
    {
        Ok(Resumed::Stream(stream)) => raw_body(stream),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

/// The body of [`stop`]'s 200: `{"stopped":"cancelled"}`.
pub const STOPPED_BODY: &str = r#"{"stopped":"cancelled"}"#;

/// A stop route: cancels `chat_id`'s active stream, wherever it is produced, through
/// the context's [`active_stream`](ResumableStreamContext::active_stream) and
/// [`cancel`](ResumableStreamContext::cancel). Its readers (the `POST` that started it,
/// any [`resume`]) then end with an AI SDK `error` part and no `finish`, and a later
/// [`resume`] answers 204.
///
/// | Outcome | Status |
/// |---|---|
/// | the running answer was stopped | 200 OK, body [`STOPPED_BODY`] (`application/json`) |
/// | the chat has no active stream (none ever, or expired), or it no longer exists | 204 No Content |
/// | its answer had already finished | 204 No Content |
/// | an empty or too long chat id | 400 Bad Request |
/// | an error: a v1 producer cannot be stopped ([`Error::Unsupported`](crate::Error::Unsupported)), Redis down, ... | [`status_for`](crate::status_for) (409, 503, ...) |
///
/// ```
/// use axum::extract::{Path, State};
/// use axum::response::Response;
/// use axum::routing::post;
/// use axum::Router;
/// use resumable_stream_axum::{ai_sdk, ResumableStreamContext};
///
/// async fn stop(State(ctx): State<ResumableStreamContext>, Path(id): Path<String>) -> Response {
///     ai_sdk::stop(&ctx, &id).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = ResumableStreamContext::in_memory();
/// // Nothing is running in this chat: nothing to stop.
/// assert_eq!(ai_sdk::stop(&ctx, "chat-1").await.status(), 204);
/// let _app: Router = Router::new()
///     .route("/api/chat/{id}/stop", post(stop))
///     .with_state(ctx);
/// # }
/// ```
pub async fn stop(ctx: &ResumableStreamContext, chat_id: &str) -> Response {
    let stream_id = match active(ctx, chat_id).await {
        Ok(stream_id) => stream_id,
        Err(answer) => return *answer,
    };
    match ctx.cancel(&stream_id).await {
        Ok(Cancelled::Cancelled) => (
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            STOPPED_BODY,
        )
            .into_response(),
        // Finished, gone, or anything a newer engine says: nothing was stopped.
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

/// `chat_id`'s active stream, or the answer without one: 400 for a chat id that is
/// empty or too long, 204 when there is none, or the error's status.
async fn active(ctx: &ResumableStreamContext, chat_id: &str) -> Result<String, Box<Response>> {
    check_chat_id(chat_id)?;
    match ctx.active_stream(chat_id).await {
        Ok(Some(stream_id)) => Ok(stream_id),
        Ok(None) => Err(Box::new(StatusCode::NO_CONTENT.into_response())),
        Err(error) => Err(Box::new(ErrorResponse(error).into_response())),
    }
}

/// A 400 for a chat id that is empty or too long.
fn check_chat_id(chat_id: &str) -> Result<(), Box<Response>> {
    if chat_id.is_empty() || chat_id.len() > MAX_CHAT_ID_LEN {
        let reason = format!("a chat id is 1 to {MAX_CHAT_ID_LEN} bytes");
        return Err(Box::new((StatusCode::BAD_REQUEST, reason).into_response()));
    }
    Ok(())
}

/// The stream's bytes as they are, and an AI SDK error part if it fails.
fn raw_body(stream: ResumableStream) -> Response {
    let body = stream.map(|item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(bytes) => bytes,
            Err(error) => {
                let part = serde_json::json!({ "type": "error", "errorText": error.to_string() });
                Bytes::from(format!("\n\ndata: {part}\n\n"))
            }
        })
    });
    let mut response = Response::new(Body::from_stream(body));
    stream_headers(&mut response);
    response.headers_mut().insert(
        UI_MESSAGE_STREAM_HEADER,
        HeaderValue::from_static(UI_MESSAGE_STREAM_VERSION),
    );
    response
}
