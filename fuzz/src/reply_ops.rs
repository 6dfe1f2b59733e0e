//! The `replies` target's operations: what `Arbitrary` makes of its input bytes (the
//! requests made first, then replies, messages, time and the application's calls).
//!
//! As in `ops`, the derived enums pick their variant by scaling a `u32` to the variant
//! count: adding a variant changes what every committed `replies` input means.

use crate::ops::Unit;
use arbitrary::Arbitrary;
use bytes::Bytes;
use resumable_stream::{Reply, ReplyError};

#[derive(Debug, Arbitrary)]
pub enum Kind {
    Idempotent(Option<u8>),
    Create,
    Resume(Option<u8>),
    ResumeAtChunk(u8),
    State,
    Cancel,
}

#[derive(Debug, Arbitrary)]
pub struct RequestOp {
    pub kind: Kind,
    pub stream: u8,
}

#[derive(Debug, Arbitrary)]
pub enum Text {
    NotAnInteger,
    Other(String),
}

impl Text {
    pub fn get(&self) -> String {
        match self {
            Text::NotAnInteger => "ERR value is not an integer or out of range".to_owned(),
            Text::Other(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub enum ArbReply {
    Nil,
    One,
    Two,
    Integer(i64),
    Done,
    Active,
    Data(Vec<u8>),
    Ok,
    Other(String),
    Server(Text),
    Connection(String),
}

impl ArbReply {
    pub fn get(&self) -> Result<Reply, ReplyError> {
        Ok(match self {
            ArbReply::Nil => Reply::Nil,
            ArbReply::One => Reply::Integer(1),
            ArbReply::Two => Reply::Integer(2),
            ArbReply::Integer(n) => Reply::Integer(*n),
            ArbReply::Done => Reply::Data(Bytes::from_static(b"DONE")),
            ArbReply::Active => Reply::Data(Bytes::from_static(b"1")),
            ArbReply::Data(d) => Reply::Data(Bytes::from(d.clone())),
            ArbReply::Ok => Reply::Ok,
            ArbReply::Other(s) => Reply::Other(s.clone()),
            ArbReply::Server(t) => return Err(ReplyError::Server(t.get())),
            ArbReply::Connection(s) => return Err(ReplyError::Connection(s.clone())),
        })
    }
}

#[derive(Debug, Arbitrary)]
pub enum Target {
    /// The n-th outstanding command (modulo how many there are).
    Outstanding(u8),
    /// The n-th command already answered.
    Answered(u8),
    /// Any id at all.
    Any(u64),
}

#[derive(Debug, Arbitrary)]
pub enum Channel {
    /// The n-th channel the engine named in a command.
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
pub enum Payload {
    Raw(Vec<u8>),
    End,
    Empty,
    /// A request naming the n-th known listener id, or an arbitrary one.
    Request {
        listener: Option<u8>,
        raw_listener: String,
        skip: Option<i64>,
        unit: Option<Unit>,
        ext: Option<(u64, Option<u64>, bool, u64)>,
    },
    /// A control message for a known token (or an arbitrary one), with arbitrary JSON.
    Control {
        token: Option<u8>,
        body: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
pub enum Action {
    Reply(Target, ArbReply),
    Message(Channel, Payload),
    Advance(u16),
    Request(RequestOp),
    Push(u8, Vec<u8>),
    Finish(u8),
    Fail(u8),
    Drop(u8),
    Lost(bool),
    Interrupted(bool),
    Restored(bool),
}

#[derive(Debug, Arbitrary)]
pub struct Input {
    pub unit: Unit,
    pub ack_ms: u16,
    pub watchdog_ms: u16,
    pub heartbeat_ms: u16,
    pub grace_ms: u16,
    pub max_buffer: Option<u8>,
    pub extensions: bool,
    pub setup: Vec<RequestOp>,
    pub actions: Vec<Action>,
}
