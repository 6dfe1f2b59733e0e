//! What every outcome of a request is in HTTP, in one place: [`status_for`] for an
//! [`Error`], and [`ErrorResponse`] to answer with it.
//!
//! | Outcome | Status |
//! |---|---|
//! | no stream with that id ([`Resumed::NotFound`](crate::Resumed::NotFound)) | 404 Not Found |
//! | the stream already finished ([`Resumed::Done`](crate::Resumed::Done), `None` from `resumable_stream`) | 204 No Content (a browser's `EventSource` then stops reconnecting) |
//! | a malformed position ([`PositionRejection`](crate::PositionRejection)) | 400 Bad Request |
//! | [`Error::Unsupported`]: a chunk position asked of a v1 producer | 409 Conflict (resume by offset instead) |
//! | [`Error::AlreadyProducing`] | 409 Conflict |
//! | [`Error::AckTimeout`], [`Error::ProducerGone`]: no producer answered in time | 504 Gateway Timeout |
//! | [`Error::Redis`]: Redis failed or is unreachable | 503 Service Unavailable |
//! | [`Error::ShuttingDown`], [`Error::Closed`]: this instance stops serving | 503 Service Unavailable |
//! | [`Error::UnexpectedReply`], [`Error::UnexpectedSentinel`]: Redis holds or answers what no library writes | 502 Bad Gateway |
//! | [`Error::Source`], [`Error::Remote`]: the producer's source failed | 502 Bad Gateway |
//! | [`Error::Vanished`], [`Error::Truncated`], [`Error::Cancelled`], [`Error::BeforeRetained`]: what was asked is gone | 410 Gone |
//! | [`Error::PastEnd`]: a position past the end of a finished durable stream | 416 Range Not Satisfiable |
//! | [`Error::Fenced`]: a durable producer whose stream a reader ended (its lease lapsed) | 409 Conflict |
//! | [`Error::LogFull`]: a durable stream's log reached its byte cap | 507 Insufficient Storage |
//! | [`Error::NotProducing`], [`Error::Internal`], [`Error::Config`], anything newer | 500 Internal Server Error |
//!
//! A stop ([`ai_sdk::stop`](crate::ai_sdk::stop)) answers 200 when it stopped a running
//! answer and 204 when nothing was running (no active stream, or it had finished);
//! its errors are the table's.
//!
//! The body is the error's message on one line, as `text/plain`. Once an SSE response
//! has started, its status is sent: a failure after that is its final `event: error`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use resumable_stream::Error;

/// The HTTP status of `error` (the table in this module's docs).
///
/// ```
/// use axum::http::StatusCode;
/// use resumable_stream_axum::{status_for, Error};
/// assert_eq!(status_for(&Error::ShuttingDown), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(status_for(&Error::Unsupported { what: "chunk positions" }), StatusCode::CONFLICT);
/// ```
pub fn status_for(error: &Error) -> StatusCode {
    match error {
        Error::Unsupported { .. } | Error::AlreadyProducing { .. } | Error::Fenced { .. } => {
            StatusCode::CONFLICT
        }
        Error::AckTimeout { .. } | Error::ProducerGone { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::Redis { .. } | Error::ShuttingDown | Error::Closed => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::UnexpectedReply { .. }
        | Error::UnexpectedSentinel { .. }
        | Error::Source(_)
        | Error::Remote { .. } => StatusCode::BAD_GATEWAY,
        Error::Vanished { .. }
        | Error::Truncated { .. }
        | Error::Cancelled
        | Error::BeforeRetained { .. } => StatusCode::GONE,
        Error::PastEnd { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        Error::LogFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An [`Error`] as a response: [`status_for`] it, its message on one line as the body.
///
/// ```
/// use axum::response::IntoResponse;
/// use resumable_stream_axum::{Error, ErrorResponse};
/// let response = ErrorResponse::from(Error::Closed).into_response();
/// assert_eq!(response.status(), 503);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse(pub Error);

impl From<Error> for ErrorResponse {
    fn from(error: Error) -> ErrorResponse {
        ErrorResponse(error)
    }
}

impl std::fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ErrorResponse {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let message = self.0.to_string().replace(['\r', '\n'], " ");
        (status_for(&self.0), message).into_response()
    }
}
