//! A tail: this engine's one live follower of a durable stream's log, however many
//! local readers that stream has. Its reads are `XREAD BLOCK`s that the engine batches
//! across tails ([`Lanes`]); between them, while the log is quiet, it checks the
//! producer's lease, and when the lease has lapsed without an end in the log it writes
//! the `gone` end itself, so that every reader, here and elsewhere, learns it at once.
//! That end's id is above every chunk's, so a producer that was merely stalled finds
//! its later appends refused by Redis rather than racing the end.

use super::super::outbox::{Expect, Outbox, Timer};
use crate::config::Config;
use crate::error::Error;
use crate::event::Handle;
use crate::io::{Op, Reply, ReplyError, StreamId};
use crate::wire::log::{end_fields, LogEnding, END_ID};
use crate::wire::DONE_VALUE;
use bytes::Bytes;
use smallvec::SmallVec;
use std::time::{Duration, Instant};

/// How long a tail waits before reading again after a failed read.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(in crate::engine) struct Tail {
    pub(super) handle: Handle,
    stream_id: String,
    pub(super) log: Bytes,
    lease: Bytes,
    sentinel: Bytes,
    /// The last id read.
    pub(super) after: StreamId,
    /// The local readers following it.
    pub(super) readers: SmallVec<[Handle; 2]>,
    /// In a read in flight (in that lane).
    pub(super) lane: Option<u64>,
    /// Waiting to read again after a failure.
    retry_at: Option<Instant>,
    /// When the lease is next checked, if the log stays quiet until then.
    lease_at: Option<Instant>,
    /// When the log last brought anything.
    heard_at: Instant,
    checking: bool,
    /// It read an entry: the log existed.
    heard: bool,
    /// The end came: it reads no more.
    pub(super) ended: bool,
}

impl Tail {
    pub(super) fn new(
        handle: Handle,
        stream_id: String,
        after: StreamId,
        now: Instant,
        config: &Config,
        out: &mut Outbox,
    ) -> Tail {
        let names = config.names();
        let sentinel = names.stream(&stream_id).sentinel;
        let at = now + config.heartbeat_interval();
        out.arm(handle, Timer::LeaseCheck, at);
        Tail {
            handle,
            log: names.log(&stream_id),
            lease: names.lease(&stream_id),
            sentinel,
            stream_id,
            after,
            readers: SmallVec::new(),
            lane: None,
            retry_at: None,
            lease_at: Some(at),
            heard_at: now,
            checking: false,
            // Made at an entry its first reader read: the log existed.
            heard: after > StreamId::new(0, 0),
            ended: false,
        }
    }

    pub(in crate::engine) fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub(in crate::engine) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::LeaseCheck => self.lease_at,
            Timer::ReadRetry => self.retry_at,
            _ => None,
        }
    }

    /// Whether it wants to be in the next read.
    pub(super) fn wants_read(&self) -> bool {
        self.lane.is_none() && self.retry_at.is_none() && !self.ended && !self.readers.is_empty()
    }

    /// Its read brought entries up to `last` (or nothing).
    pub(super) fn on_read(&mut self, now: Instant, last: Option<StreamId>) {
        self.lane = None;
        if let Some(last) = last {
            self.after = self.after.max(last);
            self.heard_at = now;
            self.heard = true;
            self.ended |= last == END_ID;
        }
    }

    /// Its read failed on a lost connection: read again after a pause.
    pub(super) fn retry_later(&mut self, now: Instant, out: &mut Outbox) {
        self.lane = None;
        let at = now + RETRY_PAUSE;
        self.retry_at = Some(at);
        out.arm(self.handle, Timer::ReadRetry, at);
    }

    pub(in crate::engine) fn on_timeout(
        &mut self,
        now: Instant,
        timer: Timer,
        config: &Config,
        out: &mut Outbox,
    ) {
        match timer {
            Timer::ReadRetry => self.retry_at = None,
            Timer::LeaseCheck => {
                self.lease_at = None;
                let quiet_since = self.heard_at + config.heartbeat_interval();
                if quiet_since > now {
                    // The log spoke meanwhile: the producer is alive.
                    self.arm_lease_check(quiet_since, out);
                } else if !self.checking && !self.ended {
                    self.checking = true;
                    let key = self.lease.clone();
                    out.send(self.handle, Op::Get { key }, Expect::LeaseCheck);
                }
            }
            _ => {}
        }
    }

    fn arm_lease_check(&mut self, at: Instant, out: &mut Outbox) {
        self.lease_at = Some(at);
        out.arm(self.handle, Timer::LeaseCheck, at);
    }

    /// The reply to one of its commands; `Some` when the gone end found no log, and
    /// its readers fail with this error: what they wait for can never come.
    pub(in crate::engine) fn on_reply(
        &mut self,
        now: Instant,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Option<Error> {
        match (expect, reply) {
            // NOMKSTREAM found no log: one this tail read from expired, or Redis lost it.
            (Expect::GoneEnd, Ok(Reply::Nil)) => {
                return Some(Error::Vanished {
                    stream_id: self.stream_id.clone(),
                });
            }
            (Expect::LeaseCheck, Ok(Reply::Nil)) if !self.ended && self.heard => {
                self.checking = false;
                self.write_gone(false, config, out);
                self.arm_lease_check(now + config.heartbeat_interval(), out);
            }
            // No entry read yet: a producer that died before its first append, or a
            // stream that finished and whose log expired while this tail was away. The
            // sentinel tells: only the first gets its gone end (in a log made for it).
            (Expect::LeaseCheck, Ok(Reply::Nil)) if !self.ended => {
                let key = self.sentinel.clone();
                out.send(self.handle, Op::Get { key }, Expect::GoneCheck);
            }
            // Still active: the log is made for the gone end if it has none. Done (or
            // expired): a gone end only into a log that exists (it then holds an end
            // this tail has not read yet: refused, and the next read brings it); no log
            // means it expired: the readers fail with `Vanished`.
            (Expect::GoneCheck, Ok(reply)) => {
                self.checking = false;
                let active = matches!(&reply, Reply::Data(value) if value.as_ref() != DONE_VALUE);
                self.write_gone(active, config, out);
                self.arm_lease_check(now + config.heartbeat_interval(), out);
            }
            (Expect::GoneCheck, Err(error)) => {
                self.checking = false;
                log::debug!(
                    "resumable-stream: the sentinel of {:?} could not be read: {error}",
                    self.stream_id
                );
                self.arm_lease_check(now + config.heartbeat_interval(), out);
            }
            (Expect::LeaseCheck, reply) => {
                self.checking = false;
                if let Err(error) = reply {
                    log::debug!(
                        "resumable-stream: the lease of {:?} could not be read: {error}",
                        self.stream_id
                    );
                }
                self.arm_lease_check(now + config.heartbeat_interval(), out);
            }
            (Expect::GoneEnd, Err(ReplyError::Server(message)))
                if !message.contains("equal or smaller") =>
            {
                log::warn!(
                    "resumable-stream: the end of {:?}, whose producer is gone, could not be written: {message}",
                    self.stream_id
                );
            }
            // Written, or refused because the log has an end already: either way the
            // next read brings the end.
            _ => {}
        }
        None
    }

    /// The producer's lease lapsed and the log has no end: write `gone`, mark the
    /// stream done for v1 readers, and keep the log for the replay window.
    /// `create`: the log may be made for it (no entry was ever read from it).
    fn write_gone(&mut self, create: bool, config: &Config, out: &mut Outbox) {
        log::info!(
            "resumable-stream: the producer of {:?} is gone (its lease lapsed); ending its log",
            self.stream_id
        );
        let op = Op::XAdd {
            key: self.log.clone(),
            // A log that expired or was lost is not made anew for its end alone.
            create,
            id: END_ID,
            fields: end_fields(&LogEnding::Gone, None),
        };
        out.send(self.handle, op, Expect::GoneEnd);
        // A log made for the gone end alone (its producer died before its first
        // append) lives as long as the sentinel that says "DONE": a first append held
        // up in the network finds it, and is refused, for as long as the stream exists.
        let millis = if create {
            config.log_ttl_millis()
        } else {
            config.replay_window_millis()
        };
        out.send(
            self.handle,
            Op::PExpire {
                key: self.log.clone(),
                millis,
            },
            Expect::Write,
        );
        let op = Op::Set {
            key: self.sentinel.clone(),
            value: Bytes::from_static(DONE_VALUE),
            expire_seconds: config.sentinel_ttl_seconds(),
        };
        out.send(self.handle, op, Expect::Write);
    }
}
