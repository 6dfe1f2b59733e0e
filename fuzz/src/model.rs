//! The reference model of the protocol (docs/protocol.md): per producer, what it was
//! given and who listens; per reader, what it asked and what it is owed; per stream,
//! the faults that befell it. The harness updates it at each delivery; every event is
//! checked against it here (`on_event`, `check_resumer`).

use crate::durable::ProdLog;
use bytes::Bytes;
use resumable_stream::wire::{Control, ErrorKind, DONE_MESSAGE};
use resumable_stream::{Handle, Op, Position, Role};
use std::collections::VecDeque;
use std::time::Instant;

pub const PREFIX: &str = "resumable-stream:rs:";
pub const STREAMS: [&str; 3] = ["s0", "s1", "s2"];
pub const SOURCE_ERROR: &str = "source failed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Idempotent,
    Create,
    Resume,
    State,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Clean,
    Source,
    Cancelled,
    /// Durable mode: a reader ended the log while the lease had lapsed.
    Fenced,
    /// Durable mode: the log reached its cap (in bytes).
    LogFull(u64),
    /// Durable mode: the log could not be written (an injected fault): the producer
    /// stops, telling no listener.
    LogFailed,
}

pub type Key = (usize, Handle);

#[derive(Debug, Clone)]
pub struct Registration {
    pub serial: u64,
    pub listener: String,
    pub token: Option<String>,
    /// A publish to this extended listener failed: it was told `lost` and gets no
    /// chunk until it asks again.
    pub lost: bool,
}

#[derive(Debug, Default)]
pub struct Prod {
    /// Owns its request channel in its engine.
    pub routed: bool,
    pub chunks: Vec<Bytes>,
    /// Chunks the bounded buffer dropped from the front.
    pub dropped: usize,
    pub held_bytes: usize,
    pub ending: Option<Ending>,
    pub registrations: Vec<Registration>,
    pub next_serial: u64,
    /// Durable mode's side of the producer (`crate::durable`).
    pub log: Option<ProdLog>,
}

/// What a resumer is owed: `catch_up` (which covers the producer's first `from`
/// chunks), then every later chunk.
#[derive(Debug)]
pub struct Owed {
    pub producer: Key,
    pub catch_up: Bytes,
    pub from: usize,
}

#[derive(Debug)]
pub struct Reader {
    pub stream: usize,
    pub kind: Kind,
    pub position: Position,
    pub dropped: bool,
    pub any_event: bool,
    pub started: Option<Role>,
    pub finals: u32,
    pub stopped: bool,
    pub prod: Option<Prod>,
    pub expected_local: VecDeque<(Bytes, u64)>,
    // As a resumer:
    pub listener: Option<String>,
    pub token: Option<String>,
    pub extended: bool,
    pub owed: Option<Owed>,
    /// The `seq` of the request whose answer `owed` follows.
    pub owed_seq: u64,
    pub refused: bool,
    pub cancel_answered_by: Option<Key>,
    pub received: Vec<Bytes>,
    pub received_bytes: Vec<u8>,
    /// Durable mode: it reads the stream's log (it sent an `XRANGE` of it), not
    /// pub/sub.
    pub log_reader: bool,
    /// Durable mode: the lease token its producer took.
    pub lease_token: Option<Bytes>,
    /// When its final event came.
    pub final_at: Option<Instant>,
}

/// What befell a stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    /// A message, a publish or a connection was lost without anyone being told.
    pub silent: bool,
    /// A `PUBLISH` to a listener failed with an error reply.
    pub failed_publish: bool,
    /// A pub/sub message arrived twice.
    pub duplicated: bool,
    /// Another command or reply failed or was lost (no data lost).
    pub other: bool,
    /// Two producers answered one request, or a request was forged.
    pub wild: bool,
    /// A pub/sub connection of an engine with a handle of it was interrupted (and is
    /// restored by the end of the run).
    pub interrupted: bool,
    /// Durable mode: a command or reply of the command or blocking connection was lost
    /// without a trace (no error, no disconnect): a wait may never end.
    pub lost: bool,
    /// Durable mode: an operator trimmed the start of the log.
    pub trimmed: bool,
    /// A node with a handle of it was cut off (every connection down for a while).
    pub cut: bool,
}

impl Faults {
    pub fn any(&self) -> bool {
        self.silent
            || self.failed_publish
            || self.duplicated
            || self.other
            || self.wild
            || self.interrupted
            || self.lost
            || self.trimmed
            || self.cut
    }

    /// Faults after which every handle must still end.
    pub fn breaks_liveness(&self) -> bool {
        self.silent || self.failed_publish || self.other || self.wild || self.lost || self.cut
    }

    /// Faults after which a log reader need not end: what a log reader does not use
    /// (pub/sub) cannot stop it; a producer that died, stalled or failed leaves a
    /// lease that lapses, so its readers end all the same. Only a command or reply
    /// lost without a trace (a wait with no timeout) or two producers of one stream
    /// can.
    pub fn breaks_log_liveness(&self) -> bool {
        self.lost || self.wild
    }
}

/// The log and lease keys of `stream`.
pub fn log_names(stream: usize) -> (Bytes, Bytes) {
    let id = STREAMS[stream];
    (
        Bytes::from(format!("{PREFIX}log:{id}")),
        Bytes::from(format!("{PREFIX}lease:{id}")),
    )
}

pub fn names(stream: usize) -> (Bytes, Bytes) {
    let id = STREAMS[stream];
    (
        Bytes::from(format!("{PREFIX}sentinel:{id}")),
        Bytes::from(format!("{PREFIX}request:{id}")),
    )
}

pub fn chunk_channel(listener: &str) -> Bytes {
    Bytes::from(format!("{PREFIX}chunk:{listener}"))
}

pub enum Name {
    Sentinel(usize),
    Request(usize),
    Chunk(String),
    Log(usize),
    Lease(usize),
    Other,
}

pub fn parse_name(name: &[u8]) -> Name {
    let Some(rest) = name.strip_prefix(PREFIX.as_bytes()) else {
        return Name::Other;
    };
    let stream = |id: &[u8]| STREAMS.iter().position(|s| s.as_bytes() == id);
    if let Some(id) = rest.strip_prefix(b"sentinel:") {
        return stream(id).map_or(Name::Other, Name::Sentinel);
    }
    if let Some(id) = rest.strip_prefix(b"request:") {
        return stream(id).map_or(Name::Other, Name::Request);
    }
    if let Some(id) = rest.strip_prefix(b"log:") {
        return stream(id).map_or(Name::Other, Name::Log);
    }
    if let Some(id) = rest.strip_prefix(b"lease:") {
        return stream(id).map_or(Name::Other, Name::Lease);
    }
    if let Some(id) = rest.strip_prefix(b"chunk:") {
        return Name::Chunk(String::from_utf8_lossy(id).into_owned());
    }
    Name::Other
}

pub fn is_chunk_publish(op: &Op) -> bool {
    matches!(op, Op::Publish { channel, .. } if matches!(parse_name(channel), Name::Chunk(_)))
}

/// Whether `sub` is a subsequence of `full`.
pub fn is_subsequence(sub: &[Bytes], full: &[Bytes]) -> bool {
    let mut it = full.iter();
    sub.iter().all(|x| it.any(|y| y == x))
}

/// The last message to a listener: the end message, or a typed ending for an extended
/// listener.
pub fn final_message(ending: Ending, next: u64, token: Option<&str>) -> Bytes {
    match (ending, token) {
        (Ending::Clean, Some(token)) => Control::End { next }.encode(token),
        (Ending::Source, Some(token)) => Control::Error {
            kind: ErrorKind::Source,
            message: SOURCE_ERROR.to_owned(),
            next: Some(next),
        }
        .encode(token),
        (Ending::Cancelled, Some(token)) => Control::Cancelled { next: Some(next) }.encode(token),
        (Ending::Fenced, Some(token)) => Control::Error {
            kind: ErrorKind::Other("fenced".to_owned()),
            message: "the producer's lease lapsed and a reader ended the stream".to_owned(),
            next: Some(next),
        }
        .encode(token),
        (Ending::LogFull(limit), Some(token)) => Control::Error {
            kind: ErrorKind::Other("log-full".to_owned()),
            message: format!("the stream's log reached its cap of {limit} bytes"),
            next: Some(next),
        }
        .encode(token),
        _ => Bytes::from_static(DONE_MESSAGE),
    }
}

pub fn publish(listener: &str, message: Bytes) -> Op {
    Op::Publish {
        channel: chunk_channel(listener),
        message,
    }
}

impl Reader {
    pub fn prod(&self) -> &Prod {
        self.prod.as_ref().expect("a producer")
    }

    pub fn prod_mut(&mut self) -> &mut Prod {
        self.prod.as_mut().expect("a producer")
    }

    pub fn live_producer(&self) -> bool {
        self.started == Some(Role::Producer) && self.prod().ending.is_none()
    }
}
