//! The fuzzer's operations: what `Arbitrary` makes of the input bytes, shared by the
//! targets (the skip unit) and read by the engine model's harness (`steps`).
//!
//! The derived enums here pick their variant by scaling a `u32` to the variant count:
//! adding a variant changes what every committed corpus input means. New operations
//! go into the discriminant range of an existing one (see [`AnyStep`]).

use crate::durable_ops::DurableStep;
use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use resumable_stream::{Position, ReplyError, SkipUnit};

#[derive(Debug, Arbitrary, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Utf16,
    CodePoint,
    Byte,
}

impl Unit {
    pub fn get(self) -> SkipUnit {
        match self {
            Unit::Utf16 => SkipUnit::Utf16,
            Unit::CodePoint => SkipUnit::CodePoint,
            Unit::Byte => SkipUnit::Byte,
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum Grace {
    None,
    Short,
    Long,
}

#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum Heartbeat {
    Default,
    Fast,
    Slow,
}

#[derive(Debug, Arbitrary)]
pub struct Setup {
    pub unit: Unit,
    pub extensions: bool,
    /// A buffer cap of 1 to 64 bytes.
    pub max_buffer: Option<u8>,
    pub grace: Grace,
    pub heartbeat: Heartbeat,
}

#[derive(Debug, Arbitrary)]
pub enum Chunk {
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

pub const RICH: &str = "a🚀é日\u{10FFFF}b";

impl Chunk {
    pub fn get(&self) -> Bytes {
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
pub enum ArbPosition {
    Start,
    Units(u8),
    Chunk(u8),
}

impl ArbPosition {
    pub fn get(self) -> Position {
        match self {
            ArbPosition::Start => Position::Start,
            ArbPosition::Units(n) => Position::Units(u64::from(n)),
            ArbPosition::Chunk(n) => Position::Chunk(u64::from(n % 16)),
        }
    }
}

#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum FaultError {
    NotAnInteger,
    Server,
    Connection,
}

impl FaultError {
    pub fn get(self) -> ReplyError {
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
pub enum Forged {
    /// Naming a listener some resumer really uses.
    Real(u8),
    Unknown(String),
}

#[derive(Debug, Arbitrary)]
pub enum Step {
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
pub enum MessageFault {
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
pub enum AnyStep {
    Step(Step),
    Fault(MessageFault),
    Subscription(SubscriptionFault),
    /// Durable mode's operations, parsed from the upper three quarters of the range of
    /// `Step::Misuse`'s discriminant, which no committed input used (all of them replay
    /// the same steps as before these were added).
    Durable(DurableStep),
}

/// The server drops one subscription of an engine (a Cluster slot moved, an ACL
/// changed), added after the message faults: parsed from the top sixteenth of
/// `DeleteSentinel`'s range, which only message faults used, and none of the
/// committed inputs (every one replays the same steps as before it was added).
#[derive(Debug, Arbitrary)]
pub struct SubscriptionFault {
    /// The engine whose subscription goes.
    pub engine: u8,
    /// Which of its subscribed channels (the model's, in handle order).
    pub nth: u8,
}

/// How many variants `Step` has, and which one `MessageFault` shares the range of
/// (checked by [`check_step_layout`]).
pub const STEP_VARIANTS: u64 = 21;
pub const SHARED_VARIANT: u64 = 15;
/// The variant whose range durable steps share: `Step::Misuse`.
pub const DURABLE_VARIANT: u64 = 6;

/// The discriminant bytes the derived `Step` reads as variant `index`.
pub fn discriminant(index: u64) -> [u8; 4] {
    let x = ((index << 32).div_ceil(STEP_VARIANTS)) as u32;
    x.to_le_bytes()
}

/// `STEP_VARIANTS` and `SHARED_VARIANT` still describe `Step`.
pub fn check_step_layout() {
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
    // The shared variant's range: its lower half a `DeleteSentinel`, then message
    // faults (0xbcf3cf3d * 21), and its top sixteenth a subscription fault (0xc2492493).
    let any = |bytes: &[u8]| AnyStep::arbitrary(&mut Unstructured::new(bytes));
    let bytes = |x: u32, rest: [u8; 4]| {
        let mut all = x.to_le_bytes().to_vec();
        all.extend(rest);
        all
    };
    assert!(matches!(
        any(&bytes(0xc249_2493, [1, 0, 0, 0])),
        Ok(AnyStep::Subscription(_))
    ));
    assert!(matches!(
        any(&bytes(0xbcf3_cf3d, [1, 0, 0, 0])),
        Ok(AnyStep::Fault(_))
    ));
    assert!(matches!(
        any(&bytes(
            u32::from_le_bytes(discriminant(SHARED_VARIANT)),
            [0; 4]
        )),
        Ok(AnyStep::Step(Step::DeleteSentinel { .. }))
    ));
    // Misuse's range: its lowest quarter a `Misuse`, the rest durable steps.
    assert!(matches!(parse(DURABLE_VARIANT), Ok(Step::Misuse { .. })));
    assert!(matches!(
        any(&bytes(
            u32::from_le_bytes(discriminant(DURABLE_VARIANT)),
            [0; 4]
        )),
        Ok(AnyStep::Step(Step::Misuse { .. }))
    ));
    let top_of_misuse = u32::from_le_bytes(discriminant(DURABLE_VARIANT + 1)) - 1;
    assert!(matches!(
        any(&bytes(top_of_misuse, [0; 4])),
        Ok(AnyStep::Durable(_))
    ));
}

impl<'a> Arbitrary<'a> for AnyStep {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // The discriminant the derived `Step` reads: a little-endian `u32`, zero-padded.
        let mut bytes = [0u8; 4];
        let available = u.peek_bytes(u.len().min(4)).unwrap_or_default();
        bytes[..available.len()].copy_from_slice(available);
        let scaled = u64::from(u32::from_le_bytes(bytes)) * STEP_VARIANTS;
        if scaled >> 32 == DURABLE_VARIANT && scaled as u32 >= 1 << 30 {
            u.bytes(available.len())?;
            return DurableStep::arbitrary(u).map(AnyStep::Durable);
        }
        if scaled >> 32 == SHARED_VARIANT && scaled as u32 >= 15 << 28 {
            u.bytes(available.len())?;
            return SubscriptionFault::arbitrary(u).map(AnyStep::Subscription);
        }
        if scaled >> 32 == SHARED_VARIANT && scaled as u32 >= 1 << 31 {
            u.bytes(available.len())?;
            return MessageFault::arbitrary(u).map(AnyStep::Fault);
        }
        Step::arbitrary(u).map(AnyStep::Step)
    }
}

#[derive(Debug, Arbitrary)]
pub struct Input {
    pub three_engines: bool,
    pub setups: [Setup; 3],
    pub steps: Vec<AnyStep>,
}
