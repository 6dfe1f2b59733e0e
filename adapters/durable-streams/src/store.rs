//! The storage interface the router speaks to: one call per protocol operation, each
//! answered with an outcome that names every case the protocol gives a status to.
//!
//! A store decides everything that needs atomicity (producer fencing, `Stream-Seq`,
//! closure, content-type checks, fork reference counts), so that several routers over
//! one shared store stay correct; the router only parses requests and formats answers.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

/// A boxed, sendable future: what every [`Store`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure of the store itself (not of the request): answered with `503`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store error: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// How a stream expires (protocol section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expiry {
    /// It lives until deleted.
    #[default]
    Never,
    /// A sliding window in seconds, renewed by every read and write.
    Ttl(u64),
    /// An absolute deadline, in milliseconds since the Unix epoch.
    At(u64),
}

/// A stream's metadata, as `HEAD` and every answer report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The content type given at creation (or inherited by a fork), as given.
    pub content_type: String,
    /// How the stream expires.
    pub expiry: Expiry,
    /// Its length in chunks: the tail offset.
    pub tail: u64,
    /// Whether it is closed (no appends any more).
    pub closed: bool,
}

/// The fork part of a create (protocol section 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The source stream's id.
    pub source: String,
    /// The divergence point in chunks; `None` for the source's tail.
    pub offset: Option<u64>,
    /// Bytes (or JSON messages) of the chunk at `offset` that the fork also inherits.
    pub sub_offset: u64,
}

/// A create request (`PUT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    /// The content type; `None` when the request named none (a fork inherits its
    /// source's, a plain stream gets `application/octet-stream`).
    pub content_type: Option<String>,
    /// The requested expiry; `Expiry::Never` when the request named none.
    pub expiry: Expiry,
    /// Create it closed.
    pub closed: bool,
    /// Its first chunks (one per JSON message in JSON mode).
    pub chunks: Vec<Bytes>,
    /// Make it a fork.
    pub fork: Option<Fork>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new stream (`201`).
    New(Meta),
    /// The stream existed with this configuration (`200`).
    Existing(Meta),
    /// The stream exists with another configuration, or its id is held by a deleted
    /// stream that forks still read (`409`).
    Conflict,
    /// The fork's source does not exist (`404`).
    SourceNotFound,
    /// The fork's source is deleted but still read by forks (`409`).
    SourceDeleted,
    /// The fork's content type differs from its source's (`409`).
    SourceTypeMismatch,
    /// The fork offset or sub-offset lies past the source's data (`400`).
    BadForkPoint,
}

/// An idempotent producer's headers (protocol section 5.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    /// `Producer-Id`.
    pub id: String,
    /// `Producer-Epoch`.
    pub epoch: u64,
    /// `Producer-Seq`.
    pub seq: u64,
}

/// An append request (`POST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The request's content type, when it has a body.
    pub content_type: Option<String>,
    /// The chunks to append (empty for a close-only request).
    pub chunks: Vec<Bytes>,
    /// Close the stream after appending.
    pub close: bool,
    /// `Stream-Seq`, compared bytewise with the stream's last one.
    pub stream_seq: Option<String>,
    /// The idempotent producer, if any.
    pub producer: Option<Producer>,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Appended (and closed if asked): `200` with a producer, else `204`.
    Done {
        /// The tail after the append.
        tail: u64,
        /// Whether the stream is now closed.
        closed: bool,
    },
    /// A producer's retry of an append already made, or a repeated close (`204`).
    Duplicate {
        /// The current tail.
        tail: u64,
        /// Whether the stream is closed.
        closed: bool,
        /// The producer's highest accepted sequence number in its epoch.
        last_seq: u64,
    },
    /// No such stream (`404`).
    NotFound,
    /// Deleted but still read by forks (`410`).
    Gone,
    /// The stream is closed (`409` with `Stream-Closed`).
    Closed {
        /// The final tail.
        tail: u64,
    },
    /// The content type differs from the stream's (`409`).
    TypeMismatch,
    /// `Stream-Seq` did not increase (`409`).
    SeqRegression,
    /// The producer's epoch is older than the stream's (`403`).
    StaleEpoch {
        /// The current epoch.
        current: u64,
    },
    /// A new epoch must start at sequence 0 (`400`).
    NewEpochNotAtZero,
    /// A gap in the producer's sequence numbers (`409`).
    SeqGap {
        /// The sequence number expected.
        expected: u64,
    },
    /// A `resumable_stream` producer owns the stream (its lease is live): `409`.
    Owned,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Removed, or soft-deleted while forks read it (`204`).
    Done,
    /// No such stream (`404`).
    NotFound,
    /// Already soft-deleted (`410`).
    Gone,
}

/// What `HEAD` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The stream's metadata (`200`).
    Found(Meta),
    /// No such stream (`404`).
    NotFound,
    /// Deleted but still read by forks (`410`).
    Gone,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// At this offset, in chunks (`-1` is 0).
    At(u64),
    /// At the tail, whatever it is (`now`).
    Tail,
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The stream and the chunks from the position on (possibly none).
    Data {
        /// The stream's metadata at the time of the read.
        meta: Meta,
        /// Where the chunks start.
        start: u64,
        /// The chunks, at most a page of them.
        chunks: Vec<Bytes>,
    },
    /// No such stream (`404`).
    NotFound,
    /// Deleted but still read by forks (`410`).
    Gone,
    /// The position is past the tail (`400`).
    PastTail,
    /// The position is before what the log still holds (`410`).
    BeforeRetained,
}

/// The storage behind a [`router`](crate::router). Every method is one atomic step.
pub trait Store: Send + Sync + 'static {
    /// Creates a stream (or checks an existing one's configuration).
    fn create<'a>(&'a self, id: &'a str, req: Create)
        -> BoxFuture<'a, Result<Created, StoreError>>;
    /// Appends to (and/or closes) a stream.
    fn append<'a>(
        &'a self,
        id: &'a str,
        req: Append,
    ) -> BoxFuture<'a, Result<Appended, StoreError>>;
    /// Deletes a stream.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Deleted, StoreError>>;
    /// A stream's metadata, without renewing its TTL.
    fn head<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Head, StoreError>>;
    /// Reads at most about `max_bytes` (at least one chunk) from `from`, renewing the
    /// stream's TTL when `touch`.
    fn read<'a>(
        &'a self,
        id: &'a str,
        from: From,
        max_bytes: usize,
        touch: bool,
    ) -> BoxFuture<'a, Result<Read, StoreError>>;
    /// Waits until the stream is longer than `tail` chunks, closed or gone, or until
    /// `timeout`; says nothing of which: the caller reads again.
    fn wait<'a>(
        &'a self,
        id: &'a str,
        tail: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every live stream with its tail, when all of this store's streams live in this
    /// process, so that one router sees every append to them; `None` (the default) for
    /// a store shared between processes. The reserved subscription APIs (protocol
    /// section 6) run only over a store that answers `Some`: their cursors are kept in
    /// the router, beside the streams.
    fn local_streams(&self) -> Option<Vec<(String, u64)>> {
        None
    }
}
