//! The typed errors a stream can end with.

use crate::io::ReplyError;
use std::fmt;
use std::time::Duration;

/// Why a request or a stream failed.
///
/// Every failure that reaches an application is one of these; none of them is a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command failed (an error reply, or a lost connection).
    Redis {
        /// The command that failed (`INCR`, `GET`, ...).
        command: &'static str,
        /// What went wrong.
        error: ReplyError,
    },
    /// Redis answered with a reply of a shape the protocol never produces.
    UnexpectedReply {
        /// The command that was answered.
        command: &'static str,
        /// The reply, described.
        reply: String,
    },
    /// The sentinel key holds something no resumable-stream library writes.
    UnexpectedSentinel {
        /// The value found, lossily decoded.
        value: String,
    },
    /// No producer answered a resume request within the acknowledgement timeout, and
    /// the stream is not marked done.
    AckTimeout {
        /// The stream that was asked for.
        stream_id: String,
        /// How long the resumer waited.
        waited: Duration,
    },
    /// A resumer's stream lost its sentinel (expired or deleted) before its end
    /// arrived: its producer is gone, and what follows will never come.
    Vanished {
        /// The stream id.
        stream_id: String,
    },
    /// The producer's source failed; the text is the source's own error.
    Source(String),
    /// The stream was cancelled (by [`Engine::cancel`](crate::Engine::cancel), from
    /// any instance).
    Cancelled,
    /// A producer of ours stopped speaking: no chunk and no heartbeat for three of its
    /// heartbeat intervals (killed, or cut off from Redis).
    ProducerGone {
        /// The stream id.
        stream_id: String,
        /// How long it has been silent.
        silent_for: Duration,
    },
    /// The resume needs data the producer's bounded buffer no longer holds.
    Truncated {
        /// The stream id.
        stream_id: String,
    },
    /// The producer speaks only the v1 protocol, which cannot do this.
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// A producer of ours ended this reader with an error of a kind this version does
    /// not know; or (kind `incomplete`) the stream ended with fewer chunks received than
    /// it had, and asking again did not bring them (two producers of one stream after
    /// a fault may disagree).
    Remote {
        /// The error's kind, as sent.
        kind: String,
        /// Its message.
        message: String,
    },
    /// This engine is already producing that stream.
    AlreadyProducing {
        /// The stream id.
        stream_id: String,
    },
    /// The handle does not name a stream this engine is producing.
    NotProducing,
    /// The driver stopped (its context was dropped, or its connections closed for good).
    Closed,
    /// The context is shutting down: it takes no new request, and lets the streams it
    /// produces finish (another instance serves new streams and resumes).
    ShuttingDown,
    /// A bug in this library, reported instead of a panic: the engine answered a
    /// request with something its kind never has. Please report it.
    Internal(&'static str),
    /// The driver could not be set up (no Redis URL, a URL that does not parse, ...).
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Redis { command, error } => write!(f, "{command} failed: {error}"),
            Error::UnexpectedReply { command, reply } => {
                write!(f, "unexpected reply to {command}: {reply}")
            }
            Error::UnexpectedSentinel { value } => {
                write!(f, "the stream's sentinel key holds an unexpected value: {value:?}")
            }
            Error::AckTimeout { stream_id, waited } => write!(
                f,
                "Timeout waiting for ack: no producer answered the resume request for stream {stream_id:?} within {} ms",
                waited.as_millis()
            ),
            Error::Vanished { stream_id } => write!(
                f,
                "stream {stream_id:?} vanished: its sentinel expired or was deleted before its end arrived"
            ),
            Error::Cancelled => f.write_str("the stream was cancelled"),
            Error::ProducerGone { stream_id, silent_for } => write!(
                f,
                "the producer of stream {stream_id:?} is gone: silent for {} ms",
                silent_for.as_millis()
            ),
            Error::Truncated { stream_id } => write!(
                f,
                "stream {stream_id:?} no longer holds the data this resume needs (its buffer is bounded)"
            ),
            Error::Unsupported { what } => write!(f, "not supported by this stream's producer: {what}"),
            Error::Remote { kind, message } => write!(f, "the producer ended the stream ({kind}): {message}"),
            Error::Source(message) => write!(f, "the stream's source failed: {message}"),
            Error::AlreadyProducing { stream_id } => {
                write!(f, "stream {stream_id:?} is already being produced by this engine")
            }
            Error::NotProducing => f.write_str("this handle does not produce a stream"),
            Error::Closed => f.write_str("the resumable-stream driver has stopped"),
            Error::ShuttingDown => {
                f.write_str("this resumable-stream context is shutting down: it takes no new request")
            }
            Error::Internal(what) => write!(f, "resumable-stream internal error (a bug): {what}"),
            Error::Config(message) => write!(f, "resumable-stream configuration: {message}"),
        }
    }
}

impl std::error::Error for Error {}
