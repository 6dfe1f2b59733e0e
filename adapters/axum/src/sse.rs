//! A reader as an SSE response: the events of [`resumable_stream::sse`] (ids that are
//! chunk positions, chunks delivered exactly, keep-alives, `retry:`, a final `end` or
//! `error`), with the headers a stream needs behind proxies.

use crate::position::StartAt;
use crate::status::ErrorResponse;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use resumable_stream_tokio::{ResumableStreamContext, Resumed, SseOptions, SseStream};
use std::convert::Infallible;

/// The headers of every streaming response here: `text/event-stream`, no caching, and
/// `x-accel-buffering: no` so that nginx passes each event on at once.
pub(crate) fn stream_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(resumable_stream::sse::CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// An [`SseStream`] as a 200 response with the streaming headers
/// (`content-type: text/event-stream`, `cache-control: no-cache`,
/// `x-accel-buffering: no`). Make the stream with
/// [`ResumableStreamContext::sse`] to choose its [`SseOptions`].
pub fn sse_body(events: SseStream) -> Response {
    sse_response(events)
}

/// Any stream of SSE bytes as a 200 response with the streaming headers, as
/// [`sse_body`]: for an [`SseStream`] with events of the application's own around it
/// (made with [`resumable_stream::sse::encode_event`]).
///
/// ```
/// use futures_util::{stream, StreamExt};
/// use resumable_stream_axum::{framing, sse_response, SseStream};
///
/// fn with_status(events: SseStream) -> axum::response::Response {
///     let status = framing::encode_event("status", r#"{"model":"demo"}"#);
///     sse_response(stream::once(async move { Ok(status) }).chain(events))
/// }
/// ```
pub fn sse_response<S>(events: S) -> Response
where
    S: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    let mut response = Response::new(Body::from_stream(events));
    stream_headers(&mut response);
    response
}

/// An SSE response as [`sse_body`], from an [`SseStream`] (`IntoResponse`, to return
/// from a handler).
#[derive(Debug)]
pub struct Sse(pub SseStream);

impl IntoResponse for Sse {
    fn into_response(self) -> Response {
        sse_body(self.0)
    }
}

/// Creates the stream `stream_id` or resumes it at `at`, answered as SSE: the whole
/// route of a resumable endpoint. `make_stream` runs only if this request becomes the
/// producer (see `ResumableStreamContext::resumable_stream`).
///
/// Answers 200 with the events, 204 if the stream already finished (a browser's
/// `EventSource` then stops reconnecting), or the error's status
/// ([`status_for`](crate::status_for)). The events use [`SseOptions::default`].
pub async fn resumable_sse<F, S, B, E>(
    ctx: &ResumableStreamContext,
    stream_id: &str,
    make_stream: F,
    at: StartAt,
) -> Response
where
    F: FnOnce() -> S + Send + 'static,
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: Into<Bytes>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match ctx.resumable_stream(stream_id, make_stream, at.0).await {
        Ok(Some(stream)) => sse_body(ctx.sse(stream, SseOptions::default())),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

/// Resumes the existing stream `stream_id` at `at`, answered as SSE: 200 with the
/// events, 404 if no such stream exists, 204 if it finished, or the error's status.
pub async fn resume_sse(ctx: &ResumableStreamContext, stream_id: &str, at: StartAt) -> Response {
    match ctx.resume_existing_stream(stream_id, at.0).await {
        Ok(Resumed::Stream(stream)) => sse_body(ctx.sse(stream, SseOptions::default())),
        Ok(Resumed::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Ok(Resumed::Done) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(error) => ErrorResponse(error).into_response(),
    }
}
