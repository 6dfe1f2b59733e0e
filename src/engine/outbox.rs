//! What the engine's machines hand back: commands (each with the id its reply will
//! carry, and what that reply means to whom), events for the application, deadlines,
//! and counters. One outbox per engine, lent to a machine for each input, so that a
//! machine never needs the engine itself.

use crate::event::{Event, Handle};
use crate::idmap::IdMap;
use crate::io::{Command, CommandId, Op};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// What a pending command's reply means to the machine that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// The idempotent path's `INCR`.
    Incr,
    /// A producer's `SET "1" EX ttl`, after its subscription: the stream starts once
    /// the sentinel is written.
    MarkActive,
    /// A finished producer's `SET "DONE"`: its local reader ends once the stream is
    /// marked done, so that a reader that saw the end also sees the state "done".
    MarkedDone,
    /// The `UNSUBSCRIBE` that retires a finished producer.
    Retire,
    /// A `PUBLISH` to the producer's listener `listener`: a count of 0 means the
    /// listener left.
    Deliver {
        /// The listener's serial within its producer.
        listener: u64,
    },
    /// An explicit resume's or a cancel's `GET`.
    ResumeGet,
    /// A state query's `GET`.
    StateGet,
    /// The `GET` that tells "done" from a failure, after an INCR that was refused or an
    /// acknowledgement that never came.
    DoneCheck,
    /// A resumer's periodic `GET` of the sentinel (the done watchdog).
    Watchdog,
    /// The `SUBSCRIBE` of a producer's request channel or a resumer's chunk channel.
    Subscribe,
    /// A `SUBSCRIBE` sent again after the subscription was lost.
    Resubscribe,
    /// A resumer's (or a cancel's) request `PUBLISH`: refused by the server, the
    /// request can never be answered.
    Request,
    /// A write whose reply only matters if it fails.
    Write,
    /// The `SET` of an owner's active stream (`engine/active.rs`).
    ActiveSet,
    /// The `GET` of an owner's active stream.
    ActiveGet,
    /// A durable producer's `XADD` of chunks.
    LogAppend,
    /// The `XRANGE` of one id that tells whether a refused append had landed.
    LogVerify,
    /// A durable producer's `XADD` of the end entry.
    LogEnd,
    /// A log reader's `XRANGE` page.
    LogPage,
    /// A log reader's `GET` of the lease, when the log is empty.
    LeaseProbe,
    /// A tail's `GET` of the lease while the log is quiet.
    LeaseCheck,
    /// A tail's `XADD` of the `gone` end entry.
    GoneEnd,
    /// A tail's `GET` of the sentinel before a `gone` end in a log it never read.
    GoneCheck,
    /// A blocking `XREAD` of the tails of one lane.
    TailRead {
        /// The lane.
        lane: u64,
    },
}

/// The deadlines a machine can have; each machine keeps the instant of its own, so
/// a deadline that was moved or cleared is recognised as stale when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Timer {
    /// A resumer waits for its first message.
    Ack,
    /// A resumer reads the sentinel (a lost end message).
    Watchdog,
    /// A resumer of an extended producer has heard nothing for too long.
    Liveness,
    /// A resumer that asked again has had no hello: ask once more.
    Rewind,
    /// A producer speaks to its extended listeners when idle.
    Heartbeat,
    /// A finished producer stops answering late requests.
    Grace,
    /// A durable producer appends what it holds to the log.
    Flush,
    /// A durable producer renews its lease.
    Lease,
    /// A tail reads the lease of a quiet log.
    LeaseCheck,
    /// A tail reads again after a failed read.
    ReadRetry,
}

/// Counters of what the engine dropped or ignored, for monitoring.
///
/// None of these is an error for any stream: each counts an input that could not
/// belong to a live stream and was dropped without disturbing one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Request messages that did not decode (bad JSON, wrong types, bad listener id).
    pub malformed_requests: u64,
    /// Requests naming a listener already registered with that producer.
    pub duplicate_listeners: u64,
    /// Pub/sub messages on a channel no stream of this engine listens to.
    pub unrouted_messages: u64,
    /// Replies whose command id this engine is not waiting for.
    pub unmatched_replies: u64,
    /// PUBLISH or SET commands whose reply was an error (a listener may have missed
    /// data, or the sentinel was not updated).
    pub failed_writes: u64,
    /// Listeners a producer stopped publishing to because they left (a PUBLISH
    /// reached nobody).
    pub departed_listeners: u64,
}

/// The engine's outputs, and the bookkeeping that routes replies and deadlines back.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    next_command: u64,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    pending: IdMap<CommandId, (Handle, Expect)>,
    deadlines: BinaryHeap<Reverse<(Instant, Handle, Timer)>>,
    /// The time of the latest input, and of the first: requests between inputs (a
    /// pushed chunk) are timed by the latest, and flushes align on a grid from the
    /// first.
    now: Option<Instant>,
    epoch: Option<Instant>,
    /// Counters of what was dropped or ignored.
    pub(super) stats: Stats,
}

impl Outbox {
    /// Queues `op` for `handle`'s machine, whose reply means `expect`.
    pub(super) fn send(&mut self, handle: Handle, op: Op, expect: Expect) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        self.pending.insert(id, (handle, expect));
        self.commands.push_back(Command { id, op });
        id
    }

    /// Queues a `PUBLISH` of `message` to `channel` for `handle`'s machine.
    pub(super) fn publish(
        &mut self,
        handle: Handle,
        channel: Bytes,
        message: Bytes,
        expect: Expect,
    ) {
        self.send(handle, Op::Publish { channel, message }, expect);
    }

    /// Queues an `UNSUBSCRIBE` from `channel` for `handle`'s machine.
    pub(super) fn unsubscribe(&mut self, handle: Handle, channel: Bytes, expect: Expect) {
        self.send(handle, Op::Unsubscribe { channel }, expect);
    }

    /// An input arrived at `now`.
    pub(super) fn set_now(&mut self, now: Instant) {
        self.epoch.get_or_insert(now);
        if self.now.is_none_or(|last| last < now) {
            self.now = Some(now);
        }
    }

    /// The time of the latest input (what a request between inputs is timed by), and
    /// of the first; `None` before any input (the engine reads no clock).
    pub(super) fn clock(&self) -> Option<(Instant, Instant)> {
        Some((self.now?, self.epoch?))
    }

    /// Queues an event for the application.
    pub(super) fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Sets `handle`'s `timer` to fire at `at` (the machine keeps `at` too).
    pub(super) fn arm(&mut self, handle: Handle, timer: Timer, at: Instant) {
        self.deadlines.push(Reverse((at, handle, timer)));
    }

    /// Who sent command `id`, and what its reply means; `None` for an id nobody waits
    /// for.
    pub(super) fn take_pending(&mut self, id: CommandId) -> Option<(Handle, Expect)> {
        self.pending.remove(&id)
    }

    /// The earliest deadline, due or not.
    pub(super) fn peek_deadline(&self) -> Option<(Instant, Handle, Timer)> {
        self.deadlines.peek().map(|Reverse(deadline)| *deadline)
    }

    /// Drops the earliest deadline (it fired, or it is stale).
    pub(super) fn pop_deadline(&mut self) {
        self.deadlines.pop();
    }

    pub(super) fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    pub(super) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(super) fn has_output(&self) -> bool {
        !self.commands.is_empty() || !self.events.is_empty()
    }
}
