//! The main target: two or three engines around one `MemoryRedis`, joined by a network
//! the fuzzer controls, checked step by step against a reference model of the protocol
//! (docs/protocol.md: v1, our extensions, and its invariants).
//!
//! # The network
//!
//! Each engine has two connections, each a pair of FIFO links: commands up to Redis,
//! replies (and, on the pub/sub connection, messages) down. Links keep their order, as
//! TCP does; the fuzzer picks which link moves next, so deliveries reorder freely across
//! connections and engines, and time advances only when it says so. As faults it may
//! drop the next item of a link, fail it (the command does not run and its reply is an
//! error, or the reply of a command that ran becomes an error), duplicate or silently
//! drop a pub/sub message on its way to an engine (`MessageFault`), delete a sentinel,
//! lose an engine's pub/sub connection, or forge requests on a producer's channel.
//!
//! # The model
//!
//! Per producer: every chunk pushed, how many the bounded buffer dropped, how it ended
//! (clean, source error, cancelled), its registered listeners in order (each with its
//! extension token, if any), and whether it still owns its request channel (from its
//! `SUBSCRIBE` until it fails or the reply to its `UNSUBSCRIBE` arrives). When the
//! harness delivers a request to an engine the model says which producer answers and
//! with exactly which messages: hello (extended listeners), the catch-up computed by the
//! reference (`fuzz/src/reference.rs`) over everything ever pushed, the ending if the
//! stream is over; or a refusal when the bounded buffer no longer holds what is needed
//! (conservative refusals are tolerated where a dropped chunk boundary splits a
//! character; wrong data never is). From then on that resumer is owed the catch-up and
//! every later chunk, in order. `PUBLISH` replies count too: 0 receivers removes the
//! listener, an error removes an extended one and sends it `lost`.
//!
//! # Invariants (checked after every step)
//!
//! - no panic; per-handle event grammar; nothing after the final event; nothing for a
//!   dropped reader but a producer's `Started`, `StopSource` or setup failure;
//! - the commands of `push_chunk`, `finish`/`fail`, a request and a `PUBLISH` error are
//!   exactly the model's; `push_chunk`/`finish` succeed exactly on a live producer; the
//!   local reader gets every non-empty chunk at once with its chunk index, then its end;
//! - a resumer's request says what it was asked (skip, unit, extension, position);
//! - no unexpected reply (`unmatched_replies == 0`); no two producers of one stream in
//!   one engine; `poll_timeout` is always `None` or later than now;
//! - a v1 resumer's `Data` messages are a prefix of what it is owed; an extended one's
//!   bytes are exactly what it is owed up to the chunk index each `Data` carries; an
//!   end by message means everything owed arrived, and the ending is the producer's;
//!   an extended resumer ended by the done watchdog has everything too;
//! - a cancel answered `Cancelled` means the producer was cancelled;
//! - without faults only timing errors happen (ack timeout, producer gone, truncated
//!   after a refusal, already producing), and after the run, with every producer
//!   finished and time running until the network is quiet, every handle has ended,
//!   every produced sentinel says `DONE` and no engine holds a handle.
//!
//! Extended resumers are checked under every fault but a wild one: whatever is lost or
//! repeated, each ends byte-exact or with a typed error, its bytes an exact prefix of
//! what it is owed ("a lost or repeated message is detected and asked for again, never
//! delivered wrong"). A v1 resumer cannot tell: a silently lost message (or command,
//! or connection) or a failed `PUBLISH` leaves it a subsequence of what it is owed, a
//! repeated message anything. Wild faults, a request heard by two engines (two producers
//! of one stream) or a forged request naming a real listener, leave only the per-handle
//! checks. Any fault lifts the error-kind checks, any but an interruption or a repeated
//! message the liveness checks.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use resumable_stream::wire::{
    Control, ErrorKind, Extension, Incoming, ResumeRequest, DONE_MESSAGE,
};
use resumable_stream::{
    ClientId, Command, CommandId, Config, Connection, Engine, Error, Event, Handle, MemoryRedis,
    Op, Position, PubSubState, Reply, ReplyError, Role, SkipUnit,
};
use resumable_stream_fuzz::reference;
use resumable_stream_fuzz::trace;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

const PREFIX: &str = "resumable-stream:rs:";
const STREAMS: [&str; 3] = ["s0", "s1", "s2"];
const MAX_STEPS: usize = 256;
/// Virtual time stays well under the sentinel's 24 h time to live.
const MAX_ELAPSED: Duration = Duration::from_secs(12 * 3600);
const SOURCE_ERROR: &str = "source failed";

// ----- the fuzzer's input -----

#[derive(Debug, Arbitrary, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Utf16,
    CodePoint,
    Byte,
}

impl Unit {
    fn get(self) -> SkipUnit {
        match self {
            Unit::Utf16 => SkipUnit::Utf16,
            Unit::CodePoint => SkipUnit::CodePoint,
            Unit::Byte => SkipUnit::Byte,
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Grace {
    None,
    Short,
    Long,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Heartbeat {
    Default,
    Fast,
    Slow,
}

#[derive(Debug, Arbitrary)]
struct Setup {
    unit: Unit,
    extensions: bool,
    /// A buffer cap of 1 to 64 bytes.
    max_buffer: Option<u8>,
    grace: Grace,
    heartbeat: Heartbeat,
}

#[derive(Debug, Arbitrary)]
enum Chunk {
    Text(String),
    Raw(Vec<u8>),
    /// A slice, at arbitrary byte offsets, of text rich in multi-byte characters: cuts
    /// land inside characters, so characters straddle chunks.
    Slice {
        repeat: u8,
        from: u8,
        len: u8,
    },
    Empty,
}

const RICH: &str = "a🚀é日\u{10FFFF}b";

impl Chunk {
    fn get(&self) -> Bytes {
        let bytes = match self {
            Chunk::Text(s) => s.as_bytes().to_vec(),
            Chunk::Raw(b) => b.clone(),
            Chunk::Slice { repeat, from, len } => {
                let text = RICH.repeat(usize::from(repeat % 4) + 1);
                let bytes = text.as_bytes();
                let from = usize::from(*from) % bytes.len();
                let to = (from + usize::from(*len % 32)).min(bytes.len());
                bytes[from..to].to_vec()
            }
            Chunk::Empty => Vec::new(),
        };
        Bytes::from(bytes.into_iter().take(64).collect::<Vec<u8>>())
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum ArbPosition {
    Start,
    Units(u8),
    Chunk(u8),
}

impl ArbPosition {
    fn get(self) -> Position {
        match self {
            ArbPosition::Start => Position::Start,
            ArbPosition::Units(n) => Position::Units(u64::from(n)),
            ArbPosition::Chunk(n) => Position::Chunk(u64::from(n % 16)),
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum FaultError {
    NotAnInteger,
    Server,
    Connection,
}

impl FaultError {
    fn get(self) -> ReplyError {
        match self {
            FaultError::NotAnInteger => {
                ReplyError::Server("ERR value is not an integer or out of range".to_owned())
            }
            FaultError::Server => ReplyError::Server("ERR injected".to_owned()),
            FaultError::Connection => ReplyError::Connection("connection reset".to_owned()),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Forged {
    /// Naming a listener some resumer really uses.
    Real(u8),
    Unknown(String),
}

#[derive(Debug, Arbitrary)]
enum Step {
    Create {
        engine: u8,
        stream: u8,
        explicit: bool,
    },
    Resume {
        engine: u8,
        stream: u8,
        explicit: bool,
        position: ArbPosition,
    },
    State {
        engine: u8,
        stream: u8,
    },
    Cancel {
        engine: u8,
        stream: u8,
    },
    Push {
        producer: u8,
        chunk: Chunk,
    },
    Finish {
        producer: u8,
        fail: bool,
    },
    /// Push, finish or fail on any handle: the error paths.
    Misuse {
        handle: u8,
        what: u8,
    },
    DropReader {
        reader: u8,
    },
    Deliver {
        link: u8,
    },
    DeliverMany {
        link: u8,
        count: u8,
    },
    /// Deliver everything in flight, round robin, without time passing.
    Settle,
    Advance {
        ms: u16,
    },
    AdvanceLong {
        tenths: u16,
    },
    // ----- faults -----
    DropNext {
        link: u8,
    },
    FailNext {
        link: u8,
        error: FaultError,
    },
    DeleteSentinel {
        stream: u8,
    },
    LosePubSub {
        engine: u8,
        errors_first: bool,
    },
    /// The pub/sub connection drops and the driver reconnects (until `Restore`).
    Interrupt {
        engine: u8,
        errors_first: bool,
    },
    Restore {
        engine: u8,
    },
    ForgeRequest {
        engine: u8,
        stream: u8,
        listener: Forged,
        skip: Option<i64>,
        unit: Option<Unit>,
        ext: Option<(u32, Option<u8>, bool, u8)>,
    },
    ForgeRaw {
        engine: u8,
        stream: u8,
        bytes: Vec<u8>,
    },
}

/// Faults on the pub/sub messages an engine receives, added after the corpus was
/// committed (see [`AnyStep`]).
#[derive(Debug, Arbitrary)]
enum MessageFault {
    /// Message `nth` on its way to `engine` arrives twice: the copy `later` items behind
    /// it (a retried `PUBLISH` that had already run, a proxy replaying).
    Duplicate { engine: u8, nth: u8, later: u8 },
    /// Message `nth` on its way to `engine` is lost without a trace: no error reply, no
    /// disconnect.
    Drop { engine: u8, nth: u8 },
}

/// A step: a [`Step`], or a [`MessageFault`] parsed from the upper half of the range of
/// `Step::DeleteSentinel`'s discriminant. Adding variants to `Step` would change what
/// every committed input means (derived enums pick their variant by scaling a `u32` to
/// the variant count), the `regression-*` reproducers included; this split changes only
/// inputs with a `DeleteSentinel` step in that half: none of the regression inputs.
#[derive(Debug)]
enum AnyStep {
    Step(Step),
    Fault(MessageFault),
}

/// How many variants `Step` has, and which one `MessageFault` shares the range of
/// (checked by [`check_step_layout`]).
const STEP_VARIANTS: u64 = 21;
const SHARED_VARIANT: u64 = 15;

/// The discriminant bytes the derived `Step` reads as variant `index`.
fn discriminant(index: u64) -> [u8; 4] {
    let x = ((index << 32).div_ceil(STEP_VARIANTS)) as u32;
    x.to_le_bytes()
}

/// `STEP_VARIANTS` and `SHARED_VARIANT` still describe `Step`.
fn check_step_layout() {
    let parse = |index| Step::arbitrary(&mut Unstructured::new(&discriminant(index)));
    assert!(matches!(
        parse(SHARED_VARIANT),
        Ok(Step::DeleteSentinel { .. })
    ));
    assert!(matches!(
        parse(STEP_VARIANTS - 1),
        Ok(Step::ForgeRaw { .. })
    ));
    assert!(matches!(
        Step::arbitrary(&mut Unstructured::new(&[0xFF; 4])),
        Ok(Step::ForgeRaw { .. })
    ));
}

impl<'a> Arbitrary<'a> for AnyStep {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // The discriminant the derived `Step` reads: a little-endian `u32`, zero-padded.
        let mut bytes = [0u8; 4];
        let available = u.peek_bytes(u.len().min(4)).unwrap_or_default();
        bytes[..available.len()].copy_from_slice(available);
        let scaled = u64::from(u32::from_le_bytes(bytes)) * STEP_VARIANTS;
        if scaled >> 32 == SHARED_VARIANT && scaled as u32 >= 1 << 31 {
            u.bytes(available.len())?;
            return MessageFault::arbitrary(u).map(AnyStep::Fault);
        }
        Step::arbitrary(u).map(AnyStep::Step)
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    three_engines: bool,
    setups: [Setup; 3],
    steps: Vec<AnyStep>,
}

// ----- the network -----

#[derive(Debug)]
enum Item {
    Command(Command),
    Reply(CommandId, Result<Reply, ReplyError>),
    Message(Bytes, Bytes),
}

const CMD_UP: usize = 0;
const SUB_UP: usize = 2;
const SUB_DOWN: usize = 3;

struct Node {
    engine: Engine,
    client: ClientId,
    unit: SkipUnit,
    extensions: bool,
    max_buffer: Option<usize>,
    heartbeat: Duration,
    /// Commands up, replies down, pub/sub commands up, pub/sub replies and messages down.
    links: [VecDeque<Item>; 4],
    /// The pub/sub connection is down: its commands fail.
    interrupted: bool,
}

// ----- the model -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idempotent,
    Create,
    Resume,
    State,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Clean,
    Source,
    Cancelled,
}

type Key = (usize, Handle);

#[derive(Debug, Clone)]
struct Registration {
    serial: u64,
    listener: String,
    token: Option<String>,
    /// A publish to this extended listener failed: it was told `lost` and gets no
    /// chunk until it asks again.
    lost: bool,
}

#[derive(Debug, Default)]
struct Prod {
    /// Owns its request channel in its engine.
    routed: bool,
    chunks: Vec<Bytes>,
    /// Chunks the bounded buffer dropped from the front.
    dropped: usize,
    held_bytes: usize,
    ending: Option<Ending>,
    registrations: Vec<Registration>,
    next_serial: u64,
}

/// What a resumer is owed: `catch_up` (which covers the producer's first `from`
/// chunks), then every later chunk.
#[derive(Debug)]
struct Owed {
    producer: Key,
    catch_up: Bytes,
    from: usize,
}

#[derive(Debug)]
struct Reader {
    stream: usize,
    kind: Kind,
    position: Position,
    dropped: bool,
    any_event: bool,
    started: Option<Role>,
    finals: u32,
    stopped: bool,
    prod: Option<Prod>,
    expected_local: VecDeque<(Bytes, u64)>,
    // As a resumer:
    listener: Option<String>,
    token: Option<String>,
    extended: bool,
    owed: Option<Owed>,
    /// The `seq` of the request whose answer `owed` follows.
    owed_seq: u64,
    refused: bool,
    cancel_answered_by: Option<Key>,
    received: Vec<Bytes>,
    received_bytes: Vec<u8>,
}

/// What befell a stream.
#[derive(Debug, Default, Clone, Copy)]
struct Faults {
    /// A message, a publish or a connection was lost without anyone being told.
    silent: bool,
    /// A `PUBLISH` to a listener failed with an error reply.
    failed_publish: bool,
    /// A pub/sub message arrived twice.
    duplicated: bool,
    /// Another command or reply failed or was lost (no data lost).
    other: bool,
    /// Two producers answered one request, or a request was forged.
    wild: bool,
    /// A pub/sub connection of an engine with a handle of it was interrupted (and is
    /// restored by the end of the run).
    interrupted: bool,
}

impl Faults {
    fn any(&self) -> bool {
        self.silent
            || self.failed_publish
            || self.duplicated
            || self.other
            || self.wild
            || self.interrupted
    }

    /// Faults after which every handle must still end.
    fn breaks_liveness(&self) -> bool {
        self.silent || self.failed_publish || self.other || self.wild
    }
}

struct CommandInfo {
    op: Op,
    owner: Option<Handle>,
    /// A `PUBLISH` to a registered listener: its producer and registration serial.
    deliver: Option<(Key, u64)>,
    /// An `UNSUBSCRIBE` of a request channel: the producer leaving it.
    retire: Option<Key>,
}

/// What an input was, for the events it causes.
#[derive(Clone, Copy)]
struct Ctx {
    owner: Option<Handle>,
    /// A pub/sub message on a chunk channel: an ending now comes from a message.
    chunk_message: bool,
}

const NO_CTX: Ctx = Ctx {
    owner: None,
    chunk_message: false,
};

/// The model's expectation of the commands an input causes.
enum Expect {
    Exactly(Vec<Op>),
    /// A refusal or an exact answer, where a split character makes the bounded
    /// buffer's arithmetic conservative.
    Either(Vec<Op>, Vec<Op>),
}

struct Harness {
    redis: MemoryRedis,
    nodes: Vec<Node>,
    start: Instant,
    now: Instant,
    readers: HashMap<Key, Reader>,
    order: Vec<Key>,
    commands: HashMap<(usize, CommandId), CommandInfo>,
    listener_owner: HashMap<String, Key>,
    faults: [Faults; 3],
    any_fault: bool,
}

fn names(stream: usize) -> (Bytes, Bytes) {
    let id = STREAMS[stream];
    (
        Bytes::from(format!("{PREFIX}sentinel:{id}")),
        Bytes::from(format!("{PREFIX}request:{id}")),
    )
}

fn chunk_channel(listener: &str) -> Bytes {
    Bytes::from(format!("{PREFIX}chunk:{listener}"))
}

enum Name {
    Sentinel(usize),
    Request(usize),
    Chunk(String),
    Other,
}

fn parse_name(name: &[u8]) -> Name {
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

fn is_chunk_publish(op: &Op) -> bool {
    matches!(op, Op::Publish { channel, .. } if matches!(parse_name(channel), Name::Chunk(_)))
}

/// Whether `sub` is a subsequence of `full`.
fn is_subsequence(sub: &[Bytes], full: &[Bytes]) -> bool {
    let mut it = full.iter();
    sub.iter().all(|x| it.any(|y| y == x))
}

/// The last message to a listener: the end message, or a typed ending for an extended
/// listener.
fn final_message(ending: Ending, next: u64, token: Option<&str>) -> Bytes {
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

fn publish(listener: &str, message: Bytes) -> Op {
    Op::Publish {
        channel: chunk_channel(listener),
        message,
    }
}

impl Reader {
    fn prod(&self) -> &Prod {
        self.prod.as_ref().expect("a producer")
    }

    fn prod_mut(&mut self) -> &mut Prod {
        self.prod.as_mut().expect("a producer")
    }

    fn live_producer(&self) -> bool {
        self.started == Some(Role::Producer) && self.prod().ending.is_none()
    }
}

impl Harness {
    fn new(input: &Input) -> Harness {
        let mut redis = MemoryRedis::new();
        let count = if input.three_engines { 3 } else { 2 };
        let nodes = (0..count)
            .map(|i| {
                let setup = &input.setups[i];
                let unit = setup.unit.get();
                let heartbeat = match setup.heartbeat {
                    Heartbeat::Default => Duration::from_secs(2),
                    Heartbeat::Fast => Duration::from_millis(250),
                    Heartbeat::Slow => Duration::from_secs(20),
                };
                let grace = match setup.grace {
                    Grace::None => Duration::ZERO,
                    Grace::Short => Duration::from_secs(1),
                    Grace::Long => Duration::from_secs(30),
                };
                let max_buffer = setup.max_buffer.map(|b| usize::from(b % 64) + 1);
                let mut config = Config::default()
                    .with_skip_unit(unit)
                    .with_extensions(setup.extensions)
                    .with_heartbeat_interval(heartbeat)
                    .with_grace_period(grace)
                    .with_seed(0x5eed + 7919 * i as u64);
                if let Some(bytes) = max_buffer {
                    config = config.with_max_buffer_bytes(bytes);
                }
                Node {
                    engine: Engine::new(config),
                    client: redis.connect(),
                    unit,
                    extensions: setup.extensions,
                    max_buffer,
                    heartbeat,
                    links: Default::default(),
                    interrupted: false,
                }
            })
            .collect();
        let start = Instant::now();
        Harness {
            redis,
            nodes,
            start,
            now: start,
            readers: HashMap::new(),
            order: Vec::new(),
            commands: HashMap::new(),
            listener_owner: HashMap::new(),
            faults: [Faults::default(); 3],
            any_fault: false,
        }
    }

    fn node(&self, n: u8) -> usize {
        usize::from(n) % self.nodes.len()
    }

    fn fault(&mut self, stream: Option<usize>, set: impl Fn(&mut Faults)) {
        self.any_fault = true;
        if let Some(s) = stream {
            set(&mut self.faults[s]);
        }
    }

    /// The stream a key or channel belongs to, if the model knows it.
    fn stream_of(&self, name: &[u8]) -> Option<usize> {
        match parse_name(name) {
            Name::Sentinel(s) | Name::Request(s) => Some(s),
            Name::Chunk(l) => self
                .listener_owner
                .get(&l)
                .and_then(|k| self.readers.get(k))
                .map(|r| r.stream),
            Name::Other => None,
        }
    }

    /// The command an item is or answers, and the stream it concerns.
    fn item_info(&self, node: usize, item: &Item) -> (Option<Op>, Option<usize>) {
        match item {
            Item::Command(c) => (Some(c.op.clone()), self.stream_of(c.op.routing_key())),
            Item::Reply(id, _) => match self.commands.get(&(node, *id)) {
                Some(info) => (Some(info.op.clone()), self.stream_of(info.op.routing_key())),
                None => (None, None),
            },
            Item::Message(channel, _) => (None, self.stream_of(channel)),
        }
    }

    /// The producer of `node` that owns the request channel of `stream`, per the model.
    fn routed_producer(&self, node: usize, stream: usize) -> Option<Key> {
        let mut found = None;
        for (key, r) in &self.readers {
            if key.0 == node && r.stream == stream && r.prod.as_ref().is_some_and(|p| p.routed) {
                assert!(found.is_none(), "two producers of one stream in one engine");
                found = Some(*key);
            }
        }
        found
    }

    /// The registration of `listener` with a producer of `node` that `message` (a
    /// heartbeat, sent with the registration's token) is for.
    fn registration_of(&self, node: usize, listener: &str, message: &[u8]) -> Option<(Key, u64)> {
        let mut found = self.order.iter().filter_map(|key| {
            let p = self.readers[key].prod.as_ref()?;
            if key.0 != node {
                return None;
            }
            let reg = p.registrations.iter().find(|r| r.listener == listener)?;
            let token = reg.token.as_deref().unwrap_or_default();
            Control::decode(message, token).map(|_| (*key, reg.serial))
        });
        found.next()
    }

    // ----- draining the engines -----

    /// Moves every command of `node` onto its links and checks every event. Returns the
    /// commands, for the caller's checks.
    fn drain(&mut self, node: usize, ctx: Ctx) -> Vec<Command> {
        let mut sent = Vec::new();
        while let Some(command) = self.nodes[node].engine.poll_command() {
            trace!(
                "    command e{node}: {}",
                describe(&Item::Command(command.clone()))
            );
            self.on_command(node, &command, ctx);
            let link = match command.op.connection() {
                Connection::PubSub => SUB_UP,
                _ => CMD_UP,
            };
            self.nodes[node].links[link].push_back(Item::Command(command.clone()));
            sent.push(command);
        }
        while let Some(event) = self.nodes[node].engine.poll_event() {
            trace!("    event e{node}: {event:?}");
            self.on_event(node, event, ctx);
        }
        if let Some(deadline) = self.nodes[node].engine.poll_timeout() {
            assert!(deadline > self.now, "a deadline that is already due");
        }
        assert_eq!(
            self.nodes[node].engine.stats().unmatched_replies,
            0,
            "a reply the engine did not expect"
        );
        sent
    }

    fn on_command(&mut self, node: usize, command: &Command, ctx: Ctx) {
        let mut deliver = None;
        let mut retire = None;
        match (&command.op, parse_name(command.op.routing_key())) {
            (Op::Set { expire_seconds, .. }, _) => assert!(*expire_seconds >= 1),
            (Op::Subscribe { .. }, Name::Request(_)) if ctx.owner.is_none() => {
                // Subscribing again after a reconnect: a producer's own channel.
            }
            (Op::Subscribe { .. }, Name::Chunk(listener)) if ctx.owner.is_none() => {
                assert!(
                    self.listener_owner
                        .get(&listener)
                        .is_some_and(|k| k.0 == node),
                    "a resubscription to a channel of another engine"
                );
            }
            (Op::Subscribe { .. }, Name::Request(stream)) => {
                let owner = ctx.owner.expect("a request channel SUBSCRIBE has an owner");
                if let Some(other) = self.routed_producer(node, stream) {
                    panic!("{owner:?} subscribes to the request channel {other:?} owns");
                }
                let r = self.readers.get_mut(&(node, owner)).expect("owner");
                assert_eq!(r.stream, stream);
                assert!(matches!(r.kind, Kind::Idempotent | Kind::Create));
                assert!(r.prod.is_none(), "one producer per handle");
                r.prod = Some(Prod {
                    routed: true,
                    ..Prod::default()
                });
            }
            (Op::Unsubscribe { .. }, Name::Request(stream)) => {
                retire = self.routed_producer(node, stream);
            }
            (Op::Subscribe { .. }, Name::Chunk(listener)) => {
                let owner = ctx.owner.expect("a chunk channel SUBSCRIBE has an owner");
                let r = self.readers.get_mut(&(node, owner)).expect("owner");
                assert!(matches!(
                    r.kind,
                    Kind::Idempotent | Kind::Resume | Kind::Cancel
                ));
                assert!(r.listener.is_none(), "one listener id per resumer");
                r.listener = Some(listener.clone());
                let previous = self.listener_owner.insert(listener, (node, owner));
                assert!(previous.is_none(), "listener ids are unique");
            }
            (Op::Publish { message, .. }, Name::Chunk(listener)) => {
                // The producer whose input this is, else (a heartbeat) whichever of
                // this engine's producers has that listener.
                let own = ctx.owner.and_then(|h| {
                    let p = self.readers.get(&(node, h))?.prod.as_ref()?;
                    let reg = p.registrations.iter().find(|r| r.listener == listener)?;
                    Some(((node, h), reg.serial))
                });
                deliver = own.or_else(|| {
                    ctx.owner
                        .is_none()
                        .then(|| self.registration_of(node, &listener, message))
                        .flatten()
                });
            }
            (Op::Publish { message, .. }, Name::Request(stream)) => {
                let request = ResumeRequest::decode(message).expect("our requests decode");
                let owner = *self
                    .listener_owner
                    .get(&request.listener_id)
                    .expect("a request from a resumer of ours");
                assert_eq!(owner.0, node, "a request for another engine's listener");
                self.check_request_sent(node, owner, stream, request);
            }
            _ => {}
        }
        self.commands.insert(
            (node, command.id),
            CommandInfo {
                op: command.op.clone(),
                owner: ctx.owner,
                deliver,
                retire,
            },
        );
    }

    /// A resumer's request says what it was asked.
    fn check_request_sent(&mut self, node: usize, key: Key, stream: usize, request: ResumeRequest) {
        let extensions = self.nodes[node].extensions;
        let unit = self.nodes[node].unit;
        let r = self.readers.get_mut(&key).expect("owner");
        assert_eq!(r.stream, stream);
        assert_eq!(Some(&request.listener_id), r.listener.as_ref());
        match &r.token {
            None => {
                let cancel = r.kind == Kind::Cancel;
                let (skip, from_chunk) = match r.position {
                    Position::Start => (None, None),
                    Position::Units(n) => (Some(n as i64), None),
                    Position::Chunk(n) => (None, Some(n)),
                    other => panic!("a position the target never asks for: {other:?}"),
                };
                assert_eq!(request.skip, skip);
                let named = (unit != SkipUnit::Utf16 && skip.is_some()).then_some(unit);
                assert_eq!(request.unit, named, "the unit is named unless UTF-16");
                let extended = extensions || cancel || from_chunk.is_some();
                assert_eq!(request.ext.is_some(), extended, "{request:?}");
                if let Some(ext) = &request.ext {
                    assert_eq!((ext.from_chunk, ext.cancel), (from_chunk, cancel));
                }
                r.extended = extended;
                r.token = Some(request.ext.map(|e| e.token).unwrap_or_default());
            }
            Some(token) => {
                // Asking again (after `lost`, a reconnect or a missing hello): the same
                // request, or an extended one from a chunk index, with the same token.
                if let Some(ext) = &request.ext {
                    assert_eq!(&ext.token, token);
                    assert_eq!(ext.cancel, r.kind == Kind::Cancel);
                } else {
                    assert!(
                        !r.extended,
                        "an extended resumer asks again without the extension"
                    );
                }
            }
        }
    }

    fn on_event(&mut self, node: usize, event: Event, ctx: Ctx) {
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
    fn check_resumer(&self, key: Key, faults: Faults, check: Check) {
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
                }
            }
        }
    }

    // ----- application calls -----

    fn new_reader(
        &mut self,
        node: usize,
        handle: Handle,
        stream: usize,
        kind: Kind,
        position: Position,
    ) {
        let key = (node, handle);
        assert!(!self.readers.contains_key(&key), "handles are never reused");
        self.readers.insert(
            key,
            Reader {
                stream,
                kind,
                position,
                dropped: false,
                any_event: false,
                started: None,
                finals: 0,
                stopped: false,
                prod: None,
                expected_local: VecDeque::new(),
                listener: None,
                token: None,
                extended: false,
                owed: None,
                owed_seq: 0,
                refused: false,
                cancel_answered_by: None,
                received: Vec::new(),
                received_bytes: Vec::new(),
            },
        );
        self.order.push(key);
        if self.nodes[node].interrupted {
            self.fault(Some(stream), |f| f.interrupted = true);
        }
        self.drain(
            node,
            Ctx {
                owner: Some(handle),
                chunk_message: false,
            },
        );
    }

    fn push(&mut self, key: Key, chunk: Bytes) {
        let (node, handle) = key;
        let live = self.readers[&key].prod.is_some() && self.readers[&key].live_producer();
        let result = self.nodes[node].engine.push_chunk(handle, chunk.clone());
        assert_eq!(result.is_ok(), live, "push_chunk on {key:?}: {result:?}");
        let mut expected = Vec::new();
        if live {
            let cap = self.nodes[node].max_buffer;
            let r = self.readers.get_mut(&key).unwrap();
            let dropped = r.dropped;
            let p = r.prod_mut();
            p.chunks.push(chunk.clone());
            p.held_bytes += chunk.len();
            if let Some(cap) = cap {
                while p.held_bytes > cap && p.chunks.len() - p.dropped > 1 {
                    p.held_bytes -= p.chunks[p.dropped].len();
                    p.dropped += 1;
                }
            }
            let index = p.chunks.len() as u64;
            expected = p
                .registrations
                .iter()
                .filter(|reg| !reg.lost)
                .map(|reg| {
                    let message = match &reg.token {
                        Some(token) => Incoming::encode_chunk(token, index - 1, &chunk),
                        None => chunk.clone(),
                    };
                    publish(&reg.listener, message)
                })
                .collect();
            if !dropped && !chunk.is_empty() {
                r.expected_local.push_back((chunk, index));
            }
        }
        let sent = self.drain(
            node,
            Ctx {
                owner: Some(handle),
                chunk_message: false,
            },
        );
        let ops: Vec<Op> = sent.into_iter().map(|c| c.op).collect();
        assert_eq!(
            ops, expected,
            "push_chunk on {key:?}: one PUBLISH per listener, in order"
        );
        assert!(
            self.readers[&key].expected_local.is_empty(),
            "the local reader gets it at once"
        );
    }

    /// The commands that end production, and the model's update.
    fn end_production(&mut self, key: Key, ending: Ending) -> Vec<Op> {
        let (sentinel, _) = names(self.readers[&key].stream);
        let p = self.readers.get_mut(&key).unwrap().prod_mut();
        p.ending = Some(ending);
        let next = p.chunks.len() as u64;
        let registrations = std::mem::take(&mut p.registrations);
        let mut expected = vec![Op::Set {
            key: sentinel,
            value: Bytes::from_static(b"DONE"),
            expire_seconds: 24 * 3600,
        }];
        for reg in registrations {
            expected.push(publish(
                &reg.listener,
                final_message(ending, next, reg.token.as_deref()),
            ));
        }
        expected
    }

    fn finish(&mut self, key: Key, fail: bool) {
        let (node, handle) = key;
        let live = self.readers[&key].prod.is_some() && self.readers[&key].live_producer();
        let result = if fail {
            self.nodes[node].engine.fail(handle, SOURCE_ERROR)
        } else {
            self.nodes[node].engine.finish(handle)
        };
        assert_eq!(result.is_ok(), live, "finish on {key:?}: {result:?}");
        let expected = if live {
            self.end_production(key, if fail { Ending::Source } else { Ending::Clean })
        } else {
            Vec::new()
        };
        let sent = self.drain(
            node,
            Ctx {
                owner: Some(handle),
                chunk_message: false,
            },
        );
        let ops: Vec<Op> = sent.into_iter().map(|c| c.op).collect();
        assert_eq!(
            ops, expected,
            "finish on {key:?}: SET DONE, then the end to each listener"
        );
    }

    // ----- the network -----

    /// The first non-empty link at or after `n` (over every node's four links).
    fn pick_link(&self, n: u8) -> Option<(usize, usize)> {
        let total = self.nodes.len() * 4;
        (0..total)
            .map(|i| (usize::from(n) + i) % total)
            .map(|i| (i / 4, i % 4))
            .find(|&(node, link)| !self.nodes[node].links[link].is_empty())
    }

    fn deliver(&mut self, node: usize, link: usize) {
        let Some(item) = self.nodes[node].links[link].pop_front() else {
            return;
        };
        trace!("  deliver e{node} link {link}: {}", describe(&item));
        match item {
            Item::Command(command) => self.execute(node, link, command),
            Item::Reply(id, reply) => self.reply(node, id, reply),
            Item::Message(channel, message) => self.message(node, channel, message),
        }
    }

    /// Redis runs a command: its reply goes down the same connection, the messages it
    /// publishes down each subscriber's pub/sub connection.
    fn execute(&mut self, node: usize, link: usize, command: Command) {
        if link == SUB_UP && self.nodes[node].interrupted {
            let error = ReplyError::Connection("the pub/sub connection is down".into());
            self.nodes[node].links[link + 1].push_back(Item::Reply(command.id, Err(error)));
            return;
        }
        let client = self.nodes[node].client;
        let (reply, deliveries) = self.redis.execute(self.now, client, &command.op);
        if let (Op::Publish { .. }, Name::Request(stream)) =
            (&command.op, parse_name(command.op.routing_key()))
        {
            if deliveries.len() > 1 {
                // Two engines hear requests for one stream: two producers may answer.
                self.fault(Some(stream), |f| f.wild = true);
            }
        }
        self.nodes[node].links[link + 1].push_back(Item::Reply(command.id, reply));
        for (to, channel, message) in deliveries {
            if let Some(target) = self.nodes.iter().position(|n| n.client == to) {
                self.nodes[target].links[SUB_DOWN].push_back(Item::Message(channel, message));
            }
        }
    }

    fn reply(&mut self, node: usize, id: CommandId, reply: Result<Reply, ReplyError>) {
        let (owner, deliver, retire, op) = match self.commands.get(&(node, id)) {
            Some(info) => (info.owner, info.deliver, info.retire, Some(info.op.clone())),
            None => (None, None, None, None),
        };
        // A PUBLISH to a registered listener: 0 receivers means it left; an error
        // removes an extended listener and tells it.
        let mut expected = None;
        if let (Some((pkey, serial)), Some(Op::Publish { channel, .. })) = (deliver, &op) {
            let p = self.readers.get_mut(&pkey).unwrap().prod_mut();
            if let Some(index) = p.registrations.iter().position(|r| r.serial == serial) {
                match &reply {
                    Ok(Reply::Integer(0)) => {
                        p.registrations.remove(index);
                        expected = Some(Vec::new());
                    }
                    Err(_) => {
                        // An extended listener is told `lost` (once) and gets nothing
                        // more until it asks again; a v1 listener goes on as it is.
                        let reg = &mut p.registrations[index];
                        expected = Some(match (reg.token.clone(), reg.lost) {
                            (Some(token), false) => {
                                reg.lost = true;
                                let lost = Control::Error {
                                    kind: ErrorKind::Lost,
                                    message: "a message to this listener could not be published"
                                        .to_owned(),
                                    next: None,
                                };
                                vec![Op::Publish {
                                    channel: channel.clone(),
                                    message: lost.encode(&token),
                                }]
                            }
                            _ => Vec::new(),
                        });
                    }
                    Ok(_) => expected = Some(Vec::new()),
                }
            }
        }
        // (A failed re-SUBSCRIBE leaves a producer as it is: it only cannot hear new
        // requests. Nothing changes in the model.)
        self.nodes[node].engine.handle_reply(self.now, id, reply);
        if let Some(pkey) = retire {
            // Its request channel is left once this reply arrives.
            if let Some(p) = self.readers.get_mut(&pkey).unwrap().prod.as_mut() {
                p.routed = false;
            }
        }
        let sent = self.drain(
            node,
            Ctx {
                owner,
                chunk_message: false,
            },
        );
        if let Some(expected) = expected {
            let ops: Vec<Op> = sent.into_iter().map(|c| c.op).collect();
            assert_eq!(ops, expected, "the reply to a PUBLISH to a listener");
        }
    }

    fn message(&mut self, node: usize, channel: Bytes, message: Bytes) {
        match parse_name(&channel) {
            Name::Request(stream) => self.request(node, stream, message),
            Name::Chunk(listener) => {
                let owner = self
                    .listener_owner
                    .get(&listener)
                    .filter(|k| k.0 == node)
                    .map(|k| k.1);
                self.nodes[node]
                    .engine
                    .handle_message(self.now, &channel, message);
                let sent = self.drain(
                    node,
                    Ctx {
                        owner,
                        chunk_message: true,
                    },
                );
                for command in sent {
                    let fits = match &command.op {
                        Op::Unsubscribe { channel: c } => *c == channel,
                        // Asking again after `lost`.
                        Op::Publish { channel: c, .. } => {
                            matches!(parse_name(c), Name::Request(_))
                        }
                        _ => false,
                    };
                    assert!(
                        fits,
                        "a chunk message makes a resumer send {:?}",
                        command.op
                    );
                }
            }
            _ => panic!("a message on a channel nobody subscribes to"),
        }
    }

    /// The model's answer of producer `pkey` (in `node`) to `request`: the messages to
    /// send, or `None` for a refusal; `Err` with both when either is acceptable.
    fn serve(
        &self,
        node: usize,
        pkey: Key,
        request: &ResumeRequest,
    ) -> Result<Option<Bytes>, Bytes> {
        let p = self.readers[&pkey].prod();
        if let Some(from) = request.ext.as_ref().and_then(|e| e.from_chunk) {
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            if from < p.dropped {
                return Ok(None);
            }
            return Ok(Some(Bytes::from(reference::join(
                &p.chunks[from.min(p.chunks.len())..],
            ))));
        }
        let skip = request.skip.unwrap_or(0);
        let unit = request.unit.unwrap_or(self.nodes[node].unit);
        let text = reference::join(&p.chunks);
        let answer = Bytes::from(reference::catch_up(&text, skip, unit));
        if p.dropped == 0 {
            return Ok(Some(answer));
        }
        let mut boundaries = Vec::new();
        let mut at = 0;
        for chunk in &p.chunks[..p.dropped] {
            at += chunk.len();
            boundaries.push(at);
        }
        let dropped_bytes = at;
        let (cut, replacement) = reference::cut(&text, skip, unit);
        // Up to 3 bytes of a character split by the drop boundary are still held (the
        // engine keeps them to count characters over the joined stream): a cut among
        // them may be served, exactly, or refused.
        if cut + 3 < dropped_bytes {
            return Ok(None);
        }
        if cut < dropped_bytes {
            return Err(answer);
        }
        let ambiguous = (replacement && cut - 4 < dropped_bytes)
            || reference::splits_a_character(&text, &boundaries);
        if ambiguous {
            Err(answer)
        } else {
            Ok(Some(answer))
        }
    }

    /// A resume request reaches engine `node`: the model says which producer answers and
    /// with what; the engine's commands must be exactly that.
    fn request(&mut self, node: usize, stream: usize, message: Bytes) {
        let (_, request_channel) = names(stream);
        let producer = self.routed_producer(node, stream);
        let decoded = ResumeRequest::decode(&message).ok();
        let (Some(pkey), Some(request)) = (producer, decoded) else {
            self.nodes[node]
                .engine
                .handle_message(self.now, &request_channel, message);
            let sent = self.drain(node, NO_CTX);
            assert!(
                sent.is_empty(),
                "a request nobody here serves is dropped: {sent:?}"
            );
            return;
        };
        let listener = request.listener_id.clone();
        let token = request.ext.as_ref().map(|e| e.token.clone());
        let resumer = self.listener_owner.get(&listener).copied();
        let p = self.readers[&pkey].prod();
        let ended = p.ending;
        let next = p.chunks.len() as u64;

        if request.ext.as_ref().is_some_and(|e| e.cancel) {
            let live = self.readers[&pkey].live_producer();
            // Over: "done"; live: "cancelled", and it ends; still starting: no answer
            // (nothing to stop yet; the canceller times out rather than hear a lie).
            let answer = match ended {
                Some(_) => Some(Bytes::from_static(DONE_MESSAGE)),
                None if live => Some(
                    Control::Cancelled { next: None }.encode(token.as_deref().unwrap_or_default()),
                ),
                None => None,
            };
            self.nodes[node]
                .engine
                .handle_message(self.now, &request_channel, message);
            let mut expected: Vec<Op> = answer.map(|a| publish(&listener, a)).into_iter().collect();
            if live {
                expected.extend(self.end_production(pkey, Ending::Cancelled));
            }
            if let Some(rkey) = resumer {
                self.readers.get_mut(&rkey).unwrap().cancel_answered_by = Some(pkey);
            }
            let sent = self.drain(
                node,
                Ctx {
                    owner: Some(pkey.1),
                    chunk_message: false,
                },
            );
            let ops: Vec<Op> = sent.into_iter().map(|c| c.op).collect();
            assert_eq!(ops, expected, "the answer to the cancel {request:?}");
            return;
        }

        let registered = p.registrations.iter().position(|r| r.listener == listener);
        if registered.is_some() && token.is_none() {
            // A v1 listener asking twice is a duplicate: dropped.
            self.nodes[node]
                .engine
                .handle_message(self.now, &request_channel, message);
            let sent = self.drain(node, NO_CTX);
            assert!(sent.is_empty(), "a duplicate request is dropped: {sent:?}");
            return;
        }
        let served = |catch_up: &Bytes| -> Vec<Op> {
            let mut ops = vec![publish(
                &listener,
                match &token {
                    Some(token) => Incoming::encode_answer(
                        token,
                        next,
                        self.nodes[node].heartbeat.as_millis() as u64,
                        request.ext.as_ref().map_or(0, |e| e.seq),
                        catch_up,
                    ),
                    None => catch_up.clone(),
                },
            )];
            if let Some(ending) = ended {
                ops.push(publish(
                    &listener,
                    final_message(ending, next, token.as_deref()),
                ));
            }
            ops
        };
        let refused = match &token {
            Some(token) => {
                let control = Control::Error {
                    kind: ErrorKind::Truncated,
                    message: "the data asked for is no longer buffered".to_owned(),
                    next: None,
                };
                vec![publish(&listener, control.encode(token))]
            }
            None => Vec::new(),
        };
        let (expect, catch_up) = match self.serve(node, pkey, &request) {
            Ok(Some(catch_up)) => (Expect::Exactly(served(&catch_up)), Some(catch_up)),
            Ok(None) => (Expect::Exactly(refused), None),
            Err(catch_up) => (Expect::Either(served(&catch_up), refused), Some(catch_up)),
        };

        self.nodes[node]
            .engine
            .handle_message(self.now, &request_channel, message);
        // Update the model before draining, so that the answer's PUBLISHes are known
        // as deliveries to the new registration. A refusal is told apart below.
        let serial = {
            let p = self.readers.get_mut(&pkey).unwrap().prod_mut();
            if let Some(index) = registered {
                p.registrations.remove(index);
            }
            let serial = p.next_serial;
            p.next_serial += 1;
            if ended.is_none() && catch_up.is_some() {
                p.registrations.push(Registration {
                    serial,
                    listener: listener.clone(),
                    token: token.clone(),
                    lost: false,
                });
            }
            serial
        };
        let sent = self.drain(
            node,
            Ctx {
                owner: Some(pkey.1),
                chunk_message: false,
            },
        );
        let ops: Vec<Op> = sent.into_iter().map(|c| c.op).collect();
        let answered = match expect {
            Expect::Exactly(expected) => {
                assert_eq!(ops, expected, "the answer to {request:?} by {pkey:?}");
                catch_up.is_some()
            }
            Expect::Either(served, refused) => {
                if ops == refused {
                    false
                } else {
                    assert_eq!(ops, served, "the answer to {request:?} by {pkey:?}");
                    true
                }
            }
        };
        if !answered {
            let p = self.readers.get_mut(&pkey).unwrap().prod_mut();
            p.registrations.retain(|r| r.serial != serial);
        }
        let Some(rkey) = resumer else {
            return;
        };
        let seq = request.ext.as_ref().map_or(0, |e| e.seq);
        let r = self.readers.get_mut(&rkey).unwrap();
        if !answered {
            r.refused = true;
            return;
        }
        match &r.owed {
            None => {
                r.owed = Some(Owed {
                    producer: pkey,
                    catch_up: catch_up.unwrap(),
                    from: next as usize,
                });
                r.owed_seq = seq;
            }
            // Asked again with nothing received yet (the answer was lost): the answer
            // to the latest request is what it is owed. (A position past the end
            // resumes at the end when the request is answered, so the answers may
            // differ.) A repeated request (the same `seq`) is answered again, but the
            // resumer takes the first answer and drops the repeat; an earlier one,
            // answered late, it drops too.
            Some(owed)
                if owed.producer == pkey
                    && r.extended
                    && r.received_bytes.is_empty()
                    && seq > r.owed_seq =>
            {
                r.owed = Some(Owed {
                    producer: pkey,
                    catch_up: catch_up.unwrap(),
                    from: next as usize,
                });
                r.owed_seq = seq;
            }
            // Asked again (after `lost`): still owed the same stream, from the same
            // producer; a different one makes the stream wild.
            Some(owed) if owed.producer == pkey => {}
            Some(_) => {
                let stream = r.stream;
                self.fault(Some(stream), |f| f.wild = true);
            }
        }
    }

    fn settle(&mut self, limit: usize) {
        let mut next = 0u8;
        for _ in 0..limit {
            let Some((node, link)) = self.pick_link(next) else {
                return;
            };
            self.deliver(node, link);
            next = next.wrapping_add(1);
        }
    }

    fn advance(&mut self, by: Duration) {
        let target = (self.now + by).min(self.start + MAX_ELAPSED);
        if target <= self.now {
            return;
        }
        self.now = target;
        self.fire();
    }

    fn fire(&mut self) {
        for node in 0..self.nodes.len() {
            self.nodes[node].engine.handle_timeout(self.now);
            self.drain(node, NO_CTX);
            if let Some(deadline) = self.nodes[node].engine.poll_timeout() {
                assert!(deadline > self.now, "handle_timeout left a due deadline");
            }
        }
    }

    // ----- the steps -----

    fn pick(&self, n: u8, filter: impl Fn(&Reader) -> bool) -> Option<Key> {
        let candidates: Vec<Key> = self
            .order
            .iter()
            .copied()
            .filter(|k| filter(&self.readers[k]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[usize::from(n) % candidates.len()])
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Create {
                engine,
                stream,
                explicit,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let engine = &mut self.nodes[node].engine;
                let (handle, kind) = if *explicit {
                    (
                        engine.create_new_resumable_stream(STREAMS[stream]),
                        Kind::Create,
                    )
                } else {
                    (
                        engine.resumable_stream(STREAMS[stream], None),
                        Kind::Idempotent,
                    )
                };
                self.new_reader(node, handle, stream, kind, Position::Start);
            }
            Step::Resume {
                engine,
                stream,
                explicit,
                position,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let position = position.get();
                let engine = &mut self.nodes[node].engine;
                let (handle, kind) = if *explicit {
                    (
                        engine.resume_existing_stream(STREAMS[stream], position),
                        Kind::Resume,
                    )
                } else {
                    (
                        engine.resumable_stream(STREAMS[stream], position),
                        Kind::Idempotent,
                    )
                };
                self.new_reader(node, handle, stream, kind, position);
            }
            Step::State { engine, stream } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let handle = self.nodes[node].engine.has_existing_stream(STREAMS[stream]);
                self.new_reader(node, handle, stream, Kind::State, Position::Start);
            }
            Step::Cancel { engine, stream } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let handle = self.nodes[node].engine.cancel(STREAMS[stream]);
                self.new_reader(node, handle, stream, Kind::Cancel, Position::Start);
            }
            Step::Push { producer, chunk } => {
                let live = |r: &Reader| r.prod.is_some() && r.live_producer();
                if let Some(key) = self.pick(*producer, live) {
                    self.push(key, chunk.get());
                }
            }
            Step::Finish { producer, fail } => {
                let live = |r: &Reader| r.prod.is_some() && r.live_producer();
                if let Some(key) = self.pick(*producer, live) {
                    self.finish(key, *fail);
                }
            }
            Step::Misuse { handle, what } => {
                if let Some(key) = self.pick(*handle, |_| true) {
                    match what % 3 {
                        0 => self.push(key, Bytes::from_static(b"misuse")),
                        1 => self.finish(key, false),
                        _ => self.finish(key, true),
                    }
                }
            }
            Step::DropReader { reader } => {
                if let Some(key) = self.pick(*reader, |r| !r.dropped) {
                    self.nodes[key.0].engine.drop_reader(key.1);
                    let r = self.readers.get_mut(&key).unwrap();
                    r.dropped = true;
                    r.expected_local.clear();
                    let sent = self.drain(
                        key.0,
                        Ctx {
                            owner: Some(key.1),
                            chunk_message: false,
                        },
                    );
                    for command in sent {
                        assert!(
                            matches!(command.op, Op::Unsubscribe { .. }),
                            "drop_reader sends {:?}",
                            command.op
                        );
                    }
                }
            }
            Step::Deliver { link } => {
                if let Some((node, link)) = self.pick_link(*link) {
                    self.deliver(node, link);
                }
            }
            Step::DeliverMany { link, count } => {
                for _ in 0..(count % 16) {
                    if let Some((node, link)) = self.pick_link(*link) {
                        self.deliver(node, link);
                    }
                }
            }
            Step::Settle => self.settle(4096),
            Step::Advance { ms } => self.advance(Duration::from_millis(u64::from(*ms % 2048))),
            Step::AdvanceLong { tenths } => {
                self.advance(Duration::from_millis(100 * u64::from(*tenths % 1024)))
            }
            Step::DropNext { link } => {
                if let Some((node, link)) = self.pick_link(*link) {
                    let item = self.nodes[node].links[link].pop_front().unwrap();
                    let (op, stream) = self.item_info(node, &item);
                    let silent = match &item {
                        Item::Message(..) => true,
                        Item::Command(c) => matches!(c.op, Op::Publish { .. }),
                        Item::Reply(..) => false,
                    };
                    let _ = op;
                    self.fault(stream, |f| {
                        if silent {
                            f.silent = true
                        } else {
                            f.other = true
                        }
                    });
                }
            }
            Step::FailNext { link, error } => {
                if let Some((node, link)) = self.pick_link(*link) {
                    let item = self.nodes[node].links[link].pop_front().unwrap();
                    let (op, stream) = self.item_info(node, &item);
                    let chunk_publish = op.as_ref().is_some_and(is_chunk_publish);
                    let message = matches!(item, Item::Message(..));
                    self.fault(stream, |f| {
                        if message {
                            f.silent = true
                        } else if chunk_publish {
                            f.failed_publish = true
                        } else {
                            f.other = true
                        }
                    });
                    match item {
                        // The command never runs; its connection reports the error.
                        Item::Command(command) => self.nodes[node].links[link + 1]
                            .push_back(Item::Reply(command.id, Err(error.get()))),
                        // The command ran; its reply is lost to an error.
                        Item::Reply(id, _) => self.reply(node, id, Err(error.get())),
                        Item::Message(..) => {}
                    }
                }
            }
            Step::DeleteSentinel { stream } => {
                let stream = usize::from(*stream) % STREAMS.len();
                self.redis.delete(&names(stream).0);
                self.fault(Some(stream), |f| f.other = true);
            }
            Step::LosePubSub {
                engine,
                errors_first,
            } => {
                let node = self.node(*engine);
                let touched: Vec<usize> = self
                    .readers
                    .iter()
                    .filter(|(k, _)| k.0 == node)
                    .map(|(_, r)| r.stream)
                    .collect();
                self.any_fault = true;
                for s in touched {
                    self.fault(Some(s), |f| f.silent = true);
                }
                if !errors_first {
                    self.nodes[node]
                        .engine
                        .handle_pubsub_state(self.now, PubSubState::Lost);
                    self.drain(node, NO_CTX);
                }
                // What was in flight on the connection comes back as errors; messages
                // in flight are lost; Redis forgets the subscriptions.
                let down: Vec<Item> = self.nodes[node].links[SUB_DOWN].drain(..).collect();
                let up: Vec<Item> = self.nodes[node].links[SUB_UP].drain(..).collect();
                self.redis.disconnect(self.nodes[node].client);
                for item in down.into_iter().chain(up) {
                    let id = match item {
                        Item::Command(c) => c.id,
                        Item::Reply(id, _) => id,
                        Item::Message(..) => continue,
                    };
                    let error = ReplyError::Connection("the pub/sub connection was lost".into());
                    self.reply(node, id, Err(error));
                }
                if *errors_first {
                    self.nodes[node]
                        .engine
                        .handle_pubsub_state(self.now, PubSubState::Lost);
                    self.drain(node, NO_CTX);
                }
            }
            Step::Interrupt {
                engine,
                errors_first,
            } => {
                let node = self.node(*engine);
                if self.nodes[node].interrupted {
                    return;
                }
                let touched: Vec<usize> = self
                    .readers
                    .iter()
                    .filter(|(k, _)| k.0 == node)
                    .map(|(_, r)| r.stream)
                    .collect();
                self.any_fault = true;
                for s in touched {
                    self.fault(Some(s), |f| f.interrupted = true);
                }
                self.nodes[node].interrupted = true;
                if !errors_first {
                    self.nodes[node]
                        .engine
                        .handle_pubsub_state(self.now, PubSubState::Interrupted);
                    self.drain(node, NO_CTX);
                }
                let down: Vec<Item> = self.nodes[node].links[SUB_DOWN].drain(..).collect();
                let up: Vec<Item> = self.nodes[node].links[SUB_UP].drain(..).collect();
                self.redis.disconnect(self.nodes[node].client);
                for item in down.into_iter().chain(up) {
                    let id = match item {
                        Item::Command(c) => c.id,
                        Item::Reply(id, _) => id,
                        Item::Message(..) => continue,
                    };
                    let error = ReplyError::Connection("the pub/sub connection dropped".into());
                    self.reply(node, id, Err(error));
                }
                if *errors_first {
                    self.nodes[node]
                        .engine
                        .handle_pubsub_state(self.now, PubSubState::Interrupted);
                    self.drain(node, NO_CTX);
                }
            }
            Step::Restore { engine } => {
                let node = self.node(*engine);
                self.restore(node);
            }
            Step::ForgeRequest {
                engine,
                stream,
                listener,
                skip,
                unit,
                ext,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let listener_id = match listener {
                    Forged::Real(n) => {
                        let Some(key) = self.pick(*n, |r| r.listener.is_some()) else {
                            return;
                        };
                        let theirs = self.readers[&key].stream;
                        self.fault(Some(theirs), |f| f.wild = true);
                        self.fault(Some(stream), |f| f.wild = true);
                        self.readers[&key].listener.clone().unwrap()
                    }
                    Forged::Unknown(id) => {
                        if self.listener_owner.contains_key(id) {
                            return;
                        }
                        id.clone()
                    }
                };
                let request = ResumeRequest {
                    listener_id,
                    skip: *skip,
                    unit: unit.map(Unit::get),
                    ext: ext.map(|(token, from_chunk, cancel, seq)| Extension {
                        token: format!("{token:x}"),
                        from_chunk: from_chunk.map(u64::from),
                        cancel,
                        seq: u64::from(seq),
                    }),
                };
                if request.ext.as_ref().is_some_and(|e| e.cancel) {
                    // A forged cancel really cancels: readers then fail, as they should.
                    self.fault(Some(stream), |f| f.other = true);
                }
                self.request(node, stream, request.encode());
            }
            Step::ForgeRaw {
                engine,
                stream,
                bytes,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let message = Bytes::from(bytes.clone());
                // Only garbage: forged requests are `ForgeRequest`'s business.
                if ResumeRequest::decode(&message).is_err() {
                    self.request(node, stream, message);
                }
            }
        }
    }

    /// Duplicates or drops a pub/sub message on its way to an engine.
    fn message_fault(&mut self, fault: &MessageFault) {
        let (MessageFault::Duplicate { engine, nth, .. } | MessageFault::Drop { engine, nth }) =
            fault;
        let node = self.node(*engine);
        let link = &self.nodes[node].links[SUB_DOWN];
        let messages: Vec<usize> = (0..link.len())
            .filter(|&i| matches!(link[i], Item::Message(..)))
            .collect();
        if messages.is_empty() {
            return;
        }
        let at = messages[usize::from(*nth) % messages.len()];
        let Item::Message(channel, message) = &link[at] else {
            unreachable!("a message");
        };
        let (channel, message) = (channel.clone(), message.clone());
        let stream = self.stream_of(&channel);
        match fault {
            MessageFault::Duplicate { later, .. } => {
                let to = at + 1 + usize::from(*later) % (link.len() - at);
                self.nodes[node].links[SUB_DOWN].insert(to, Item::Message(channel, message));
                self.fault(stream, |f| f.duplicated = true);
            }
            MessageFault::Drop { .. } => {
                self.nodes[node].links[SUB_DOWN].remove(at);
                self.fault(stream, |f| f.silent = true);
            }
        }
    }

    fn restore(&mut self, node: usize) {
        if !self.nodes[node].interrupted {
            return;
        }
        // Commands sent while it was down have failed by now.
        let up: Vec<Item> = self.nodes[node].links[SUB_UP].drain(..).collect();
        for item in up {
            if let Item::Command(c) = item {
                let error = ReplyError::Connection("the pub/sub connection is down".into());
                self.nodes[node].links[SUB_DOWN].push_back(Item::Reply(c.id, Err(error)));
            }
        }
        self.nodes[node].interrupted = false;
        self.nodes[node]
            .engine
            .handle_pubsub_state(self.now, PubSubState::Restored);
        self.drain(node, NO_CTX);
    }

    /// Every producer finishes; the network drains while time runs; then the liveness
    /// checks.
    fn epilogue(&mut self) {
        for node in 0..self.nodes.len() {
            self.restore(node);
        }
        let live_producers = |h: &Harness| -> Vec<Key> {
            h.order
                .iter()
                .copied()
                .filter(|k| h.readers[k].prod.is_some() && h.readers[k].live_producer())
                .collect()
        };
        for _round in 0..256 {
            for key in live_producers(self) {
                self.finish(key, false);
            }
            self.settle(100_000);
            if self.pick_link(0).is_some() {
                break;
            }
            if !live_producers(self).is_empty() {
                continue;
            }
            let next = self
                .nodes
                .iter_mut()
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            match next {
                Some(deadline) => {
                    self.now = self.now.max(deadline);
                    self.fire();
                }
                None => break,
            }
        }
        if !self.any_fault {
            assert!(self.pick_link(0).is_none(), "the network never drained");
        }
        for key in &self.order {
            let r = &self.readers[key];
            if self.faults[r.stream].breaks_liveness() {
                continue;
            }
            assert!(
                r.dropped || r.finals == 1,
                "{key:?} ({:?} of {}) never got its final event: {r:?}",
                r.kind,
                STREAMS[r.stream]
            );
        }
        for (stream, faults) in self.faults.iter().enumerate() {
            let produced = self
                .readers
                .values()
                .any(|r| r.stream == stream && r.started == Some(Role::Producer));
            if !faults.any() && produced {
                let value = self.redis.get_raw(self.now, &names(stream).0);
                assert_eq!(
                    value.as_deref(),
                    Some(&b"DONE"[..]),
                    "the sentinel of {stream}"
                );
            }
        }
        if !self.any_fault {
            for (i, node) in self.nodes.iter().enumerate() {
                assert_eq!(node.engine.live_handles(), 0, "engine {i} keeps handles");
            }
        }
    }
}

/// One line about a network item, for traces.
fn describe(item: &Item) -> String {
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let s = s.replace(PREFIX, "");
        if s.len() > 80 {
            format!(
                "{}…",
                &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)]
            )
        } else {
            s
        }
    };
    match item {
        Item::Command(c) => match &c.op {
            Op::Publish { channel, message } => {
                format!("#{} PUBLISH {} {:?}", c.id.0, text(channel), text(message))
            }
            op => format!("#{} {} {}", c.id.0, op.name(), text(op.routing_key())),
        },
        Item::Reply(id, reply) => format!("reply #{} {reply:?}", id.0),
        Item::Message(channel, message) => {
            format!("message {} {:?}", text(channel), text(message))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Check {
    /// A `Data` event with this chunk index.
    Data(Option<u64>),
    /// Ended by a message, the way the producer ended.
    Ended(Ending),
    /// A cancel was answered `Cancelled` by this producer.
    CancelledBy(Key),
    /// A resumer ended by the done watchdog, not by a message.
    WatchdogEnd,
}

fuzz_target!(|input: Input| {
    static LAYOUT: std::sync::Once = std::sync::Once::new();
    LAYOUT.call_once(check_step_layout);
    let mut harness = Harness::new(&input);
    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            AnyStep::Step(step) => {
                trace!("step {step:?}");
                harness.step(step);
            }
            AnyStep::Fault(fault) => {
                trace!("fault {fault:?}");
                harness.message_fault(fault);
            }
        }
    }
    trace!("epilogue");
    harness.epilogue();
});
