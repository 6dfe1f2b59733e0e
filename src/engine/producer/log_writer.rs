//! A durable producer's log writer: it appends the stream's chunks to the log in
//! batches (one `XADD` per flush, flushes aligned across the engine's producers so that
//! one pipeline carries them all), keeps the producer's lease alive, refreshes the
//! log's expiry at most every few seconds, and writes the end entry once every chunk
//! is in. One append is in flight at a time, so a lost reply is retried with the same
//! id and nothing lands out of order; Redis refusing an id means either that the
//! append had landed (checked with an `XRANGE` of that id) or that a reader ended the
//! log (this producer is fenced).

use super::super::outbox::{Expect, Outbox, Timer};
use super::super::redis_error;
use crate::config::{Config, Durable};
use crate::error::Error;
use crate::event::Handle;
use crate::io::{Op, Reply, ReplyError, StreamId};
use crate::wire::log::{chunk_fields, chunks_id, end_fields, LogEnding, END_ID};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// How often an append that met a lost connection is sent again before the stream
/// fails (the driver has retried the connection itself by then), and the first pause
/// before it goes again (doubled each time).
const MAX_ATTEMPTS: u8 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The text of Redis's refusal of an id not above the stream's last one.
const ID_REFUSED: &str = "equal or smaller than the target stream top item";

/// An append sent and not yet acknowledged.
#[derive(Debug)]
struct Append {
    id: StreamId,
    fields: Vec<Bytes>,
    attempts: u8,
    /// The end entry, not chunks.
    end: bool,
    /// Waiting for its retry (the flush timer) rather than for a reply; `verify`: the
    /// retry is the `XRANGE` check, not the append.
    waiting: Option<Retry>,
    /// When it was first sent: a first append sent again may make the log only while
    /// its first attempt, had it landed, could not have expired yet.
    first_sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Append,
    Verify,
}

/// What a reply did to the log.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Logged {
    /// Nothing the producer must act on.
    Going,
    /// The end entry is in the log: the stream may be marked done.
    Ended,
    /// A reader ended the log (the lease had lapsed): Redis refuses this producer.
    Fenced,
    /// The log is gone (it expired, or Redis lost it): it is not made anew.
    Vanished,
    /// The log cannot be written.
    Failed(Error),
}

#[derive(Debug)]
pub(super) struct LogWriter {
    log: Bytes,
    lease: Bytes,
    token: Bytes,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// Chunks handed to the log, pending ones included.
    handed: u64,
    in_flight: Option<Append>,
    flush_at: Option<Instant>,
    lease_at: Option<Instant>,
    /// The log's expiry may be refreshed again from then on (`None`: at the next append).
    refresh_at: Option<Instant>,
    log_bytes: u64,
    /// The end to write once every chunk is in, with the stream's length.
    ending: Option<(LogEnding, u64)>,
    ended: bool,
    /// An append landed: the log exists, and later appends never make it anew
    /// (`NOMKSTREAM`): a log that expired or was lost meanwhile is not restarted from
    /// its middle.
    created: bool,
    /// The log's expiry while it grows: the sentinel's TTL.
    ttl_millis: u64,
    /// The log's expiry after its end: the replay window.
    replay_millis: u64,
}

impl LogWriter {
    /// The writer of stream `stream_id`'s log; takes the lease at once (before the
    /// sentinel says "active", so that a reader that sees the stream also sees it).
    pub(super) fn start(
        handle: Handle,
        stream_id: &str,
        token: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) -> LogWriter {
        let names = config.names();
        let writer = LogWriter {
            log: names.log(stream_id),
            lease: names.lease(stream_id),
            token,
            pending: Vec::new(),
            pending_bytes: 0,
            handed: 0,
            in_flight: None,
            flush_at: None,
            lease_at: None,
            refresh_at: None,
            log_bytes: 0,
            ending: None,
            ended: false,
            created: false,
            ttl_millis: config.log_ttl_millis(),
            replay_millis: config.replay_window_millis(),
        };
        writer.renew_lease(handle, config, out);
        writer
    }

    pub(super) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Flush => self.flush_at,
            Timer::Lease => self.lease_at,
            _ => None,
        }
    }

    /// The stream is live: the lease is renewed every heartbeat from now on.
    pub(super) fn on_live(
        &mut self,
        handle: Handle,
        now: Instant,
        config: &Config,
        out: &mut Outbox,
    ) {
        let at = now + config.heartbeat_interval();
        self.lease_at = Some(at);
        out.arm(handle, Timer::Lease, at);
    }

    fn renew_lease(&self, handle: Handle, config: &Config, out: &mut Outbox) {
        let op = Op::SetPx {
            key: self.lease.clone(),
            value: self.token.clone(),
            expire_millis: lease_millis(config),
        };
        out.send(handle, op, Expect::Write);
    }

    /// Takes the next chunk. `Err(limit)` when it would take the log past its cap.
    pub(super) fn push(
        &mut self,
        handle: Handle,
        chunk: &Bytes,
        durable: &Durable,
        out: &mut Outbox,
    ) -> Result<(), u64> {
        let size = chunk.len() as u64;
        if let Some(limit) = durable.max_log_bytes() {
            if self.log_bytes.saturating_add(size) > limit {
                return Err(limit);
            }
        }
        self.log_bytes += size;
        self.pending.push(chunk.clone());
        self.pending_bytes += chunk.len();
        self.handed += 1;
        if self.in_flight.is_some() {
            // Appended once the one in flight is acknowledged.
            return Ok(());
        }
        match out.clock() {
            Some((now, epoch)) if self.pending_bytes < durable.max_batch_bytes() => {
                if self.flush_at.is_none() {
                    let at = aligned(epoch, now, durable.linger());
                    self.flush_at = Some(at);
                    out.arm(handle, Timer::Flush, at);
                }
            }
            // Enough for one append (or no time known yet, so no timer to wait on).
            clock => {
                self.flush_at = None;
                self.flush(handle, clock.map(|(now, _)| now), durable, out);
            }
        }
        Ok(())
    }

    /// Appends what is pending as one entry, unless an append is in flight.
    fn flush(&mut self, handle: Handle, now: Option<Instant>, durable: &Durable, out: &mut Outbox) {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        let count = self.pending.len() as u64;
        let id = chunks_id(self.handed, count);
        let fields = chunk_fields(&self.pending);
        self.pending.clear();
        self.pending_bytes = 0;
        self.send(
            handle,
            Append {
                id,
                fields,
                attempts: 0,
                end: false,
                waiting: None,
                first_sent: None,
            },
            out,
        );
        if self
            .refresh_at
            .is_none_or(|at| now.is_none_or(|now| at <= now))
        {
            self.refresh_at = now.map(|now| now + durable.expiry_refresh());
            // The log lives as long as the sentinel while it grows.
            let millis = self.ttl_millis;
            out.send(
                handle,
                Op::PExpire {
                    key: self.log.clone(),
                    millis,
                },
                Expect::Write,
            );
        }
    }

    /// Asks whether the append in flight landed: its id, read back.
    fn verify(&mut self, handle: Handle, out: &mut Outbox) {
        if let Some(append) = &self.in_flight {
            let op = Op::XRange {
                key: self.log.clone(),
                start: append.id,
                end: append.id,
                count: 1,
            };
            out.send(handle, op, Expect::LogVerify);
        }
    }

    fn send(&mut self, handle: Handle, mut append: Append, out: &mut Outbox) {
        let now = out.clock().map(|(now, _)| now);
        if append.first_sent.is_none() {
            append.first_sent = now;
        }
        // Sent again, a first append may make the log only while its first attempt,
        // had it landed, could not have expired since (a stall longer than the replay
        // window): a log is never made anew.
        let fresh = match (append.first_sent, now) {
            (Some(first), Some(now)) => {
                now.saturating_duration_since(first) < Duration::from_millis(self.replay_millis)
            }
            _ => true,
        };
        let op = Op::XAdd {
            key: self.log.clone(),
            create: !self.created && fresh,
            id: append.id,
            fields: append.fields.clone(),
        };
        out.send(
            handle,
            op,
            if append.end {
                Expect::LogEnd
            } else {
                Expect::LogAppend
            },
        );
        self.in_flight = Some(append);
    }

    /// The source ended: the end entry follows the last chunk.
    pub(super) fn end(
        &mut self,
        handle: Handle,
        ending: LogEnding,
        config: &Config,
        durable: &Durable,
        out: &mut Outbox,
    ) {
        self.ending = Some((ending, self.handed));
        if self.in_flight.is_none() {
            // (Otherwise the timer may be an append's retry.)
            self.flush_at = None;
        }
        let now = out.clock().map(|(now, _)| now);
        self.flush(handle, now, durable, out);
        self.write_end(handle, config, out);
    }

    /// Writes the end entry once nothing is pending or in flight.
    fn write_end(&mut self, handle: Handle, config: &Config, out: &mut Outbox) {
        if self.in_flight.is_some() || !self.pending.is_empty() {
            return;
        }
        let Some((ending, next)) = self.ending.take() else {
            return;
        };
        let fields = end_fields(&ending, Some(next));
        self.send(
            handle,
            Append {
                id: END_ID,
                fields,
                attempts: 0,
                end: true,
                waiting: None,
                first_sent: None,
            },
            out,
        );
        let millis = config.replay_window_millis();
        out.send(
            handle,
            Op::PExpire {
                key: self.log.clone(),
                millis,
            },
            Expect::Write,
        );
        // The lease is renewed until the end is in (a reader must not take an end
        // held up by retries for a dead producer's).
    }

    /// A deadline of the writer came due.
    pub(super) fn on_timeout(
        &mut self,
        handle: Handle,
        now: Instant,
        timer: Timer,
        config: &Config,
        durable: &Durable,
        out: &mut Outbox,
    ) {
        match timer {
            Timer::Flush => {
                self.flush_at = None;
                match self.in_flight.as_mut().map(|append| append.waiting.take()) {
                    Some(Some(Retry::Append)) => {
                        if let Some(append) = self.in_flight.take() {
                            self.send(handle, append, out);
                        }
                    }
                    Some(Some(Retry::Verify)) => self.verify(handle, out),
                    _ => self.flush(handle, Some(now), durable, out),
                }
            }
            Timer::Lease if self.ended => self.lease_at = None,
            Timer::Lease => {
                self.renew_lease(handle, config, out);
                let at = now + config.heartbeat_interval();
                self.lease_at = Some(at);
                out.arm(handle, Timer::Lease, at);
            }
            _ => {}
        }
    }

    /// The reply to an append, to the check after a refusal, or to the end entry.
    pub(super) fn on_reply(
        &mut self,
        handle: Handle,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        durable: &Durable,
        out: &mut Outbox,
    ) -> Logged {
        let Some(mut append) = self.in_flight.take() else {
            return Logged::Going;
        };
        let landed = match (expect, reply) {
            // NOMKSTREAM found no log: it expired, or Redis lost it.
            (Expect::LogAppend | Expect::LogEnd, Ok(Reply::Nil)) => {
                self.ended = true;
                return Logged::Vanished;
            }
            (Expect::LogAppend | Expect::LogEnd, Ok(_)) => true,
            // The entry at its id is its own (same fields) or another writer's (a
            // reader's `gone` end, or a second producer's); no end left at all: the
            // log expired meanwhile.
            (Expect::LogVerify, Ok(Reply::Array(entries))) => match entries.as_slice() {
                [] if append.end => {
                    self.ended = true;
                    return Logged::Vanished;
                }
                [entry] => same_fields(entry, &append.fields),
                _ => false,
            },
            (Expect::LogAppend | Expect::LogEnd, Err(ReplyError::Server(message)))
                if message.contains(ID_REFUSED) =>
            {
                // Landed before its reply was lost, or a reader ended the log: the
                // entry itself tells.
                self.in_flight = Some(append);
                self.verify(handle, out);
                return Logged::Going;
            }
            (Expect::LogVerify, Ok(other)) => {
                return Logged::Failed(super::super::unexpected("XRANGE", &other));
            }
            (_, Err(ReplyError::Connection(error))) if append.attempts + 1 < MAX_ATTEMPTS => {
                log::debug!(
                    "resumable-stream: an append to {:?} goes again: {error}",
                    self.log
                );
                // After a pause: the connection is being reopened.
                let pause = RETRY_PAUSE * (1u32 << append.attempts);
                append.attempts += 1;
                append.waiting = Some(if expect == Expect::LogVerify {
                    Retry::Verify
                } else {
                    Retry::Append
                });
                self.in_flight = Some(append);
                if let Some((now, _)) = out.clock() {
                    let at = now + pause;
                    self.flush_at = Some(at);
                    out.arm(handle, Timer::Flush, at);
                }
                return Logged::Going;
            }
            (_, Err(error)) => return Logged::Failed(redis_error("XADD", error)),
            (_, Ok(_)) => return Logged::Going,
        };
        self.created = true;
        if !landed {
            self.ended = true;
            return Logged::Fenced;
        }
        if append.end {
            self.ended = true;
            return Logged::Ended;
        }
        // What came meanwhile waits for the next aligned flush, with every other
        // stream's (sent alone at once, it would make one entry per chunk under load);
        // at once only when it fills a batch, or when the end waits behind it.
        let clock = out.clock();
        match clock {
            Some((now, epoch))
                if self.ending.is_none() && self.pending_bytes < durable.max_batch_bytes() =>
            {
                if !self.pending.is_empty() && self.flush_at.is_none() {
                    let at = aligned(epoch, now, durable.linger());
                    self.flush_at = Some(at);
                    out.arm(handle, Timer::Flush, at);
                }
            }
            _ => {
                self.flush_at = None;
                self.flush(handle, clock.map(|(now, _)| now), durable, out);
            }
        }
        self.write_end(handle, config, out);
        Logged::Going
    }
}

/// Whether `entry` (`[id, [field, value, ...]]`, as `XRANGE` answers) holds exactly
/// `fields`.
fn same_fields(entry: &Reply, fields: &[Bytes]) -> bool {
    match entry {
        Reply::Array(parts) => match parts.as_slice() {
            [_, Reply::Array(found)] => {
                found.len() == fields.len()
                    && found
                        .iter()
                        .zip(fields)
                        .all(|(f, ours)| matches!(f, Reply::Data(d) if d == ours))
            }
            _ => false,
        },
        _ => false,
    }
}

/// How long the lease lives without renewal: three heartbeats, as a resumer of ours
/// waits for a silent producer.
pub(crate) fn lease_millis(config: &Config) -> u64 {
    u64::try_from((config.heartbeat_interval() * 3).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// `now + linger`, rounded up to a multiple of `linger` since `epoch`: producers that
/// flush within one linger of each other flush at the same instant, in one pipeline.
fn aligned(epoch: Instant, now: Instant, linger: Duration) -> Instant {
    let linger_nanos = linger.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos() + linger_nanos;
    let rounded = since.div_ceil(linger_nanos) * linger_nanos;
    let offset = u64::try_from(rounded).unwrap_or(u64::MAX);
    epoch
        .checked_add(Duration::from_nanos(offset))
        .unwrap_or(now + linger)
}

#[cfg(test)]
mod tests {
    use super::aligned;
    use std::time::{Duration, Instant};

    #[test]
    fn flushes_align_on_one_grid() {
        let epoch = Instant::now();
        let linger = Duration::from_millis(5);
        let a = aligned(epoch, epoch + Duration::from_millis(1), linger);
        let b = aligned(epoch, epoch + Duration::from_millis(4), linger);
        assert_eq!(a, b);
        assert_eq!(a, epoch + Duration::from_millis(10));
        let c = aligned(epoch, epoch + Duration::from_millis(5), linger);
        assert_eq!(c, epoch + Duration::from_millis(10));
        assert!(aligned(epoch, epoch, Duration::ZERO) >= epoch);
    }
}
