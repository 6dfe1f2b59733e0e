//! The reference model of the protocol (docs/protocol.md): per producer, what it was
//! given and who listens; per reader, what it asked and what it is owed; per stream,
//! the faults that befell it. The harness updates it at each delivery; every event is
//! checked against it here (`on_event`, `check_resumer`).

use crate::harness::{Ctx, Harness};
use crate::reference;
use bytes::Bytes;
use resumable_stream::sim::{Item, Link};
use resumable_stream::wire::{Control, ErrorKind, DONE_MESSAGE};
use resumable_stream::{Error, Event, Handle, Op, Position, Role};
use std::collections::VecDeque;

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
}

impl Faults {
    pub fn any(&self) -> bool {
        self.silent
            || self.failed_publish
            || self.duplicated
            || self.other
            || self.wild
            || self.interrupted
    }

    /// Faults after which every handle must still end.
    pub fn breaks_liveness(&self) -> bool {
        self.silent || self.failed_publish || self.other || self.wild
    }
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
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// A `Data` event with this chunk index.
    Data(Option<u64>),
    /// Ended by a message, the way the producer ended.
    Ended(Ending),
    /// A cancel was answered `Cancelled` by this producer.
    CancelledBy(Key),
    /// A resumer ended by the done watchdog, not by a message.
    WatchdogEnd,
}

impl Harness {
    pub fn on_event(&mut self, node: usize, event: Event, ctx: Ctx) {
        let key = (node, event.handle());
        let faults = {
            let r = self
                .readers
                .get(&key)
                .expect("an event for a handle never issued");
            self.faults[r.stream]
        };
        let r = self.readers.get_mut(&key).unwrap();
        assert_eq!(r.finals, 0, "an event after the final one: {event:?}");
        if r.dropped {
            let allowed = match &event {
                Event::Started {
                    role: Role::Producer,
                    ..
                }
                | Event::Failed { .. } => r.started.is_none(),
                Event::StopSource { .. } => true,
                _ => false,
            };
            assert!(allowed, "an event after drop_reader: {event:?}");
        }
        let mut check = None;
        match &event {
            Event::Started { role, .. } => {
                assert!(!r.any_event, "Started is a first event: {event:?}");
                match role {
                    Role::Producer => {
                        assert!(r.prod.is_some(), "Started as producer, never subscribed")
                    }
                    Role::Resumer => {
                        assert!(ctx.chunk_message, "a resumer starts on its first message");
                        assert!(matches!(r.kind, Kind::Idempotent | Kind::Resume));
                    }
                }
                r.started = Some(*role);
            }
            Event::Data { data, chunk, .. } => {
                assert!(!data.is_empty(), "empty Data");
                match r.started {
                    Some(Role::Producer) => {
                        let (expected, index) =
                            r.expected_local.pop_front().expect("unexpected local Data");
                        assert_eq!(data, &expected, "the local reader gets each chunk");
                        assert_eq!(*chunk, Some(index), "the local reader's chunk index");
                    }
                    Some(Role::Resumer) => {
                        assert!(ctx.chunk_message);
                        r.received.push(data.clone());
                        r.received_bytes.extend_from_slice(data);
                        check = Some(Check::Data(*chunk));
                    }
                    None => panic!("Data before Started: {event:?}"),
                }
            }
            Event::StopSource { .. } => {
                assert_eq!(r.started, Some(Role::Producer));
                assert_eq!(
                    r.prod().ending,
                    Some(Ending::Cancelled),
                    "StopSource without a cancel"
                );
                assert!(!r.stopped, "StopSource twice");
                r.stopped = true;
            }
            Event::End { .. } => match r.started {
                Some(Role::Producer) => {
                    assert_eq!(
                        r.prod().ending,
                        Some(Ending::Clean),
                        "a producer ends when finished"
                    );
                }
                Some(Role::Resumer) => {
                    check = Some(if ctx.chunk_message {
                        Check::Ended(Ending::Clean)
                    } else {
                        Check::WatchdogEnd
                    });
                }
                None => panic!("End before Started"),
            },
            Event::Done { .. }
            | Event::NotFound { .. }
            | Event::State { .. }
            | Event::Cancelled { .. } => {
                assert!(!r.any_event, "an answer is a first event: {event:?}");
                let fits = match event {
                    Event::Done { .. } => !matches!(r.kind, Kind::State | Kind::Create),
                    Event::NotFound { .. } => matches!(r.kind, Kind::Resume | Kind::Cancel),
                    Event::State { .. } => r.kind == Kind::State,
                    _ => r.kind == Kind::Cancel,
                };
                assert!(fits, "{event:?} answers a {:?} request", r.kind);
                if let (Event::Cancelled { .. }, false) = (&event, faults.wild) {
                    assert!(ctx.chunk_message);
                    let by = r
                        .cancel_answered_by
                        .expect("Cancelled, but no producer was asked");
                    check = Some(Check::CancelledBy(by));
                }
            }
            Event::Failed { error, .. } => {
                if r.started == Some(Role::Producer) {
                    let ending = r.prod().ending;
                    let fits = match error {
                        Error::Source(m) => {
                            ending == Some(Ending::Source) && m.message() == SOURCE_ERROR
                        }
                        Error::Cancelled => ending == Some(Ending::Cancelled),
                        _ => false,
                    };
                    assert!(
                        fits,
                        "a live producer fails only by fail() or a cancel: {error:?}"
                    );
                } else {
                    if let Some(p) = r.prod.as_mut() {
                        // Setup failed: it leaves its request channel.
                        p.routed = false;
                        p.registrations.clear();
                    }
                    if r.started == Some(Role::Resumer) && ctx.chunk_message {
                        match error {
                            Error::Source(_) => check = Some(Check::Ended(Ending::Source)),
                            Error::Cancelled => check = Some(Check::Ended(Ending::Cancelled)),
                            _ => {}
                        }
                    }
                    if !faults.any() {
                        let fits = match error {
                            Error::AckTimeout { .. } | Error::ProducerGone { .. } => true,
                            Error::AlreadyProducing { .. } => {
                                matches!(r.kind, Kind::Idempotent | Kind::Create)
                            }
                            Error::Truncated { .. } => r.refused,
                            Error::Source(_) | Error::Cancelled => check.is_some(),
                            _ => false,
                        };
                        assert!(
                            fits,
                            "{key:?} ({:?}) failed without a fault: {error:?}",
                            r.kind
                        );
                    }
                }
            }
            other => panic!("an event this target does not know: {other:?}"),
        }
        r.any_event = true;
        if event.is_final() {
            r.finals += 1;
        }
        match check {
            Some(Check::CancelledBy(by)) => {
                let ending = self.readers[&by].prod().ending;
                assert_eq!(
                    ending,
                    Some(Ending::Cancelled),
                    "{key:?} was told Cancelled, but its producer {by:?} was not cancelled"
                );
            }
            Some(check) => self.check_resumer(key, faults, check),
            None => {}
        }
    }

    /// A resumer's data against what it is owed.
    pub fn check_resumer(&self, key: Key, faults: Faults, check: Check) {
        if faults.wild {
            return;
        }
        let r = &self.readers[&key];
        let Some(owed) = &r.owed else {
            panic!("{key:?} received {:?} without being registered", r.received);
        };
        let producer = self.readers[&owed.producer].prod();
        let owed_messages = || -> Vec<Bytes> {
            std::iter::once(&owed.catch_up)
                .chain(&producer.chunks[owed.from..])
                .filter(|m| !m.is_empty())
                .cloned()
                .collect()
        };
        let owed_through = |n: usize| -> Vec<u8> {
            assert!(
                n >= owed.from && n <= producer.chunks.len(),
                "{key:?}: chunk index {n}"
            );
            let mut out = owed.catch_up.to_vec();
            out.extend(reference::join(&producer.chunks[owed.from..n]));
            out
        };
        // An extended resumer is checked under every fault but a wild one (two
        // producers of one stream, a forged request naming it): its content carries
        // chunk indices, so a lost or repeated message is asked for again, never
        // delivered wrong. A v1 resumer cannot tell: after a lost message it holds a
        // subsequence of what it is owed, after a repeated one anything.
        match check {
            Check::Data(Some(n)) => {
                assert!(r.extended, "{key:?}: a chunk index for a v1 resumer");
                assert_eq!(
                    r.received_bytes,
                    owed_through(n as usize),
                    "{key:?}: the bytes up to chunk {n} (owed from chunk {})",
                    owed.from
                );
            }
            Check::Data(None) => {
                assert!(
                    !r.extended,
                    "{key:?}: an extended resumer without chunk indices"
                );
                let owed = owed_messages();
                if faults.duplicated {
                    // Anything: a repeat looks like content.
                } else if faults.silent || faults.failed_publish {
                    assert!(
                        is_subsequence(&r.received, &owed),
                        "{key:?} received {:?}, not a subsequence of {owed:?}",
                        r.received
                    );
                } else {
                    assert!(
                        owed.starts_with(&r.received),
                        "{key:?} received {:?}, owed {owed:?}",
                        r.received
                    );
                }
            }
            Check::CancelledBy(_) => {}
            Check::Ended(ending) => {
                let actual = producer
                    .ending
                    .expect("ended by a message before its producer");
                if r.extended {
                    assert_eq!(actual, ending, "{key:?} ended as its producer did");
                    assert_eq!(
                        r.received_bytes,
                        owed_through(producer.chunks.len()),
                        "{key:?} ended without all it is owed"
                    );
                } else if !(faults.silent || faults.failed_publish || faults.duplicated) {
                    assert_eq!(
                        r.received,
                        owed_messages(),
                        "{key:?} ended without all it is owed"
                    );
                }
            }
            // The done watchdog read the stream finished twice, the end message never
            // came: an extended resumer that ends cleanly has everything.
            Check::WatchdogEnd => {
                if r.extended {
                    assert_eq!(
                        r.received_bytes,
                        owed_through(producer.chunks.len()),
                        "{key:?} ended by the done watchdog without all it is owed"
                    );
                } else if !(faults.silent
                    || faults.failed_publish
                    || faults.duplicated
                    || self.in_flight_to(key))
                {
                    // A v1 resumer cannot ask again, but nothing was lost on its way
                    // and nothing is still coming: it has everything.
                    assert_eq!(
                        r.received,
                        owed_messages(),
                        "{key:?} (v1) ended by the done watchdog without all it is owed"
                    );
                }
            }
        }
    }

    /// Whether a message to `key`'s chunk channel is still on the network: its
    /// `PUBLISH` not yet run, or the message not yet delivered.
    pub fn in_flight_to(&self, key: Key) -> bool {
        let Some(listener) = self.readers[&key].listener.as_deref() else {
            return false;
        };
        let channel = chunk_channel(listener);
        (0..self.nodes.len()).any(|node| {
            let publishes = self
                .net
                .items(node, Link::CommandsUp)
                .any(|item| matches!(item, Item::Command(c) if c.op.routing_key() == &channel[..]));
            let messages = self
                .net
                .items(node, Link::PubSubDown)
                .any(|item| matches!(item, Item::Message { channel: c, .. } if *c == channel));
            publishes || messages
        })
    }
}
