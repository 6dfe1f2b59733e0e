//! The typed errors a stream can end with.

use crate::io::ReplyError;
use std::fmt;
use std::sync::Arc;
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
    /// The producer's source failed (or panicked). Its local reader gets the source's
    /// own error, chain included ([`std::error::Error::source`]); readers elsewhere get
    /// its message.
    Source(SourceError),
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
    /// Durable mode: the position asked for is before what the stream's log still
    /// holds (its start was trimmed): nothing is delivered rather than wrong data.
    BeforeRetained {
        /// The stream id.
        stream_id: String,
        /// The chunk position asked for.
        position: u64,
        /// The first chunk the log holds.
        retained_from: u64,
    },
    /// Durable mode: the position asked for is past the end of the finished stream.
    PastEnd {
        /// The stream id.
        stream_id: String,
        /// The chunk position asked for.
        position: u64,
        /// The stream's length.
        length: u64,
    },
    /// Durable mode: this producer's lease lapsed (it was stalled for longer than three
    /// heartbeat intervals) and a reader ended the stream's log as gone; Redis refuses
    /// what it produces since. Its readers got every chunk that reached the log.
    Fenced {
        /// The stream id.
        stream_id: String,
    },
    /// Durable mode: the stream's log reached its byte cap
    /// ([`Durable::with_max_log_bytes`](crate::Durable::with_max_log_bytes)); the stream
    /// ended there.
    LogFull {
        /// The stream id.
        stream_id: String,
        /// The cap, in bytes.
        limit: u64,
    },
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
            Error::Source(error) => write!(f, "the stream's source failed: {error}"),
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
            Error::BeforeRetained { stream_id, position, retained_from } => write!(
                f,
                "stream {stream_id:?}: position {position} is before what its log holds (from chunk {retained_from})"
            ),
            Error::PastEnd { stream_id, position, length } => write!(
                f,
                "stream {stream_id:?}: position {position} is past its end ({length} chunks)"
            ),
            Error::Fenced { stream_id } => write!(
                f,
                "stream {stream_id:?}: this producer's lease lapsed and a reader ended its log; later chunks are refused"
            ),
            Error::LogFull { stream_id, limit } => write!(
                f,
                "stream {stream_id:?}: its durable log reached its cap of {limit} bytes"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Redis { error, .. } => Some(error),
            Error::Source(error) => error
                .error()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

/// A producer's source error: the message every reader is told, and, where the source
/// failed (its local reader's copy), the error itself.
///
/// Two source errors are equal when their messages are.
///
/// ```
/// use resumable_stream::SourceError;
/// use std::error::Error as _;
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "the model timed out");
/// let error = SourceError::from_error(io);
/// assert_eq!(error.message(), "the model timed out");
/// let original = error.error().unwrap();
/// assert!(original.downcast_ref::<std::io::Error>().is_some());
/// assert_eq!(SourceError::from("the model timed out"), error);
/// ```
#[derive(Clone)]
pub struct SourceError {
    message: String,
    error: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl SourceError {
    /// A source error known only by its message (as it reaches a reader elsewhere).
    pub fn new(message: impl Into<String>) -> SourceError {
        SourceError {
            message: message.into(),
            error: None,
        }
    }

    /// The source's own error; its `Display` is the message.
    pub fn from_error(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SourceError {
        let error: Box<dyn std::error::Error + Send + Sync> = error.into();
        SourceError {
            message: error.to_string(),
            error: Some(Arc::from(error)),
        }
    }

    /// What every reader is told.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The source's own error, where it failed (not for readers elsewhere).
    pub fn error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.error.as_deref()
    }
}

impl From<&str> for SourceError {
    fn from(message: &str) -> SourceError {
        SourceError::new(message)
    }
}

impl From<String> for SourceError {
    fn from(message: String) -> SourceError {
        SourceError::new(message)
    }
}

impl PartialEq for SourceError {
    fn eq(&self, other: &SourceError) -> bool {
        self.message == other.message
    }
}

impl Eq for SourceError {}

impl fmt::Debug for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
