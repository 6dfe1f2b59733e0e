//! Durable mode's reading side, routed by the engine: [`LogReader`]s (one per reader),
//! the [`Tail`] each stream's local readers share, and the lanes that carry the tails'
//! blocking reads: one `XREAD BLOCK` follows every tail that is not already in a read
//! (on a Redis Cluster, every tail of one slot), and at most
//! [`Durable::max_blocking_reads`](crate::Durable::max_blocking_reads) are in flight.
//! When a read returns, its tails join the next one with every tail that waited, so
//! the reads in flight stay few however many streams are followed.

pub(super) mod reader;
pub(super) mod tail;

use super::outbox::Expect;
use super::requests::{Opening, Purpose};
use super::{Engine, Machine};
use crate::cluster::key_slot;
use crate::error::Error;
use crate::event::Handle;
use crate::io::{Op, Reply, ReplyError, StreamId};
use crate::wire::log::{decode_read, LogEntry};
use bytes::Bytes;
use reader::{LogReader, Wants};
use smallvec::SmallVec;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use tail::Tail;

/// How long one blocking read waits for an entry, at most.
fn block_millis(engine: &Engine) -> u64 {
    u64::try_from(engine.config.heartbeat_interval().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The tails of the engine, and the blocking reads that carry them.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    /// The tail of each followed log.
    tails: HashMap<Bytes, Handle>,
    /// The tails each read in flight carries.
    reads: HashMap<u64, SmallVec<[Handle; 4]>>,
    next_lane: u64,
    /// A tail may want a read: set when one is made, a read returns or a retry is
    /// due, so that polling commands does not look at every tail each time.
    pub(super) wanted: bool,
}

impl Lanes {
    /// How many blocking reads are in flight.
    pub(super) fn in_flight(&self) -> usize {
        self.reads.len()
    }

    /// How many tails there are (each is also a machine of the engine's).
    pub(super) fn tails(&self) -> usize {
        self.tails.len()
    }
}

impl Engine {
    /// Starts reading `opening`'s stream from its log; `finished` when its sentinel
    /// said "DONE".
    pub(super) fn become_log_reader(&mut self, opening: Opening, finished: bool) {
        if !opening.reader_attached {
            return;
        }
        let handle = opening.handle;
        let reader = LogReader::start(
            handle,
            opening.stream_id,
            opening.names,
            opening.purpose,
            finished,
            &self.config,
            &mut self.out,
        );
        self.machines
            .insert(handle, Machine::LogReader(Box::new(reader)));
    }

    /// Whether a request with `purpose` reads the log in this engine.
    pub(super) fn reads_log(&self, purpose: Purpose) -> bool {
        self.config.durable().is_some() && matches!(purpose, Purpose::Read(_))
    }

    /// Acts on what a log reader wants after an input.
    pub(super) fn on_wants(&mut self, now: Instant, handle: Handle, wants: Wants) {
        match wants {
            Wants::Nothing => {}
            Wants::Next(next) => self.apply(handle, next),
            Wants::Tail { after } => self.join_tail(now, handle, after),
            Wants::PubSub => {
                if let Some(Machine::LogReader(reader)) = self.machines.remove(&handle) {
                    let (handle, stream_id, names, purpose) = reader.into_parts();
                    let opening = Opening {
                        handle,
                        stream_id,
                        names,
                        purpose,
                        reader_attached: true,
                    };
                    self.become_resumer(opening);
                }
            }
        }
    }

    /// Log reader `handle` follows its stream's tail from `after`.
    fn join_tail(&mut self, now: Instant, handle: Handle, after: StreamId) {
        let Some(Machine::LogReader(reader)) = self.machines.get(&handle) else {
            return;
        };
        let log = reader.log_key().clone();
        let stream_id = reader.stream_id().to_owned();
        let tail_handle = match self.lanes.tails.get(&log).copied() {
            Some(existing) => existing,
            None => {
                let tail_handle = Handle(self.next_handle);
                self.next_handle += 1;
                let tail = Tail::new(
                    tail_handle,
                    stream_id,
                    after,
                    now,
                    &self.config,
                    &mut self.out,
                );
                self.machines
                    .insert(tail_handle, Machine::Tail(Box::new(tail)));
                self.lanes.tails.insert(log, tail_handle);
                self.lanes.wanted = true;
                tail_handle
            }
        };
        let Some(Machine::Tail(tail)) = self.machines.get_mut(&tail_handle) else {
            return;
        };
        tail.readers.push(handle);
        let tail_after = tail.after;
        if let Some(Machine::LogReader(reader)) = self.machines.get_mut(&handle) {
            reader.join(tail_after, &self.config, &mut self.out);
        }
    }

    /// Log reader `handle` is gone: its tail forgets it, and goes once it has no reader
    /// and no read in flight.
    pub(super) fn leave_tail(&mut self, handle: Handle, log: &Bytes) {
        let Some(tail_handle) = self.lanes.tails.get(log).copied() else {
            return;
        };
        if let Some(Machine::Tail(tail)) = self.machines.get_mut(&tail_handle) {
            tail.readers.retain(|reader| *reader != handle);
            if tail.readers.is_empty() && tail.lane.is_none() {
                self.remove_tail(tail_handle);
            }
        }
    }

    fn remove_tail(&mut self, tail_handle: Handle) {
        if let Some(Machine::Tail(tail)) = self.machines.remove(&tail_handle) {
            if self.lanes.tails.get(&tail.log) == Some(&tail_handle) {
                self.lanes.tails.remove(&tail.log);
            }
        }
    }

    /// Sends a blocking read for the tails that want one, while lanes are free: every
    /// such tail in one read (one per slot on a Redis Cluster).
    pub(super) fn schedule_reads(&mut self) {
        let Some(durable) = self.config.durable() else {
            return;
        };
        let (max_reads, count) = (durable.max_blocking_reads(), durable.read_count());
        if !self.lanes.wanted || self.lanes.in_flight() >= max_reads {
            return;
        }
        // Every tail that wants a read gets one below, unless the lanes run out (then
        // it stays wanted for the next read that returns).
        self.lanes.wanted = false;
        // Grouped by slot on a cluster (one XREAD must stay in one slot), else one group.
        let cluster = self.config.cluster();
        let mut groups: BTreeMap<u16, Vec<(Bytes, StreamId, Handle)>> = BTreeMap::new();
        for &tail_handle in self.lanes.tails.values() {
            if let Some(Machine::Tail(tail)) = self.machines.get(&tail_handle) {
                if tail.wants_read() {
                    let slot = if cluster { key_slot(&tail.log) } else { 0 };
                    groups.entry(slot).or_default().push((
                        tail.log.clone(),
                        tail.after,
                        tail_handle,
                    ));
                }
            }
        }
        let block_millis = block_millis(self);
        for (_, group) in groups {
            if self.lanes.in_flight() >= max_reads {
                self.lanes.wanted = true;
                break;
            }
            let lane = self.lanes.next_lane;
            self.lanes.next_lane += 1;
            let mut carried = SmallVec::new();
            let mut streams = Vec::with_capacity(group.len());
            for (log, after, tail_handle) in group {
                if let Some(Machine::Tail(tail)) = self.machines.get_mut(&tail_handle) {
                    tail.lane = Some(lane);
                }
                carried.push(tail_handle);
                streams.push((log, after));
            }
            let op = Op::XRead {
                count,
                block_millis,
                streams,
            };
            let first = carried.first().copied().unwrap_or(Handle(u64::MAX));
            self.out.send(first, op, Expect::TailRead { lane });
            self.lanes.reads.insert(lane, carried);
        }
    }

    /// The reply to the blocking read of `lane`.
    pub(super) fn on_tail_read(
        &mut self,
        now: Instant,
        lane: u64,
        reply: Result<Reply, ReplyError>,
    ) {
        let Some(carried) = self.lanes.reads.remove(&lane) else {
            return;
        };
        // Its tails read again (and a lane is free for any that waited).
        self.lanes.wanted = true;
        let streams = match reply {
            Ok(reply) => decode_read(&reply).map_err(|reason| Error::UnexpectedReply {
                command: "XREAD",
                reply: reason,
            }),
            Err(ReplyError::Connection(error)) => {
                log::debug!("resumable-stream: a blocking read failed, read again: {error}");
                for tail_handle in carried {
                    if let Some(Machine::Tail(tail)) = self.machines.get_mut(&tail_handle) {
                        tail.retry_later(now, &mut self.out);
                    }
                }
                return;
            }
            Err(error) => Err(Error::Redis {
                command: "XREAD",
                error,
            }),
        };
        let streams = match streams {
            Ok(streams) => streams,
            Err(error) => {
                // Nothing this read carries can be followed: its readers fail.
                for tail_handle in carried {
                    self.fail_tail(tail_handle, &error);
                }
                return;
            }
        };
        let mut by_log: HashMap<Bytes, Vec<LogEntry>> = streams.into_iter().collect();
        for tail_handle in carried {
            let Some(Machine::Tail(tail)) = self.machines.get_mut(&tail_handle) else {
                continue;
            };
            let entries = by_log.remove(&tail.log).unwrap_or_default();
            let last = entries.last().map(LogEntry::id);
            tail.on_read(now, last);
            let readers = tail.readers.clone();
            if !entries.is_empty() {
                for reader in readers {
                    let next = match self.machines.get_mut(&reader) {
                        Some(Machine::LogReader(r)) => r.on_entries(&entries, &mut self.out),
                        _ => None,
                    };
                    if let Some(next) = next {
                        self.apply(reader, next);
                    }
                }
            }
            let done = match self.machines.get(&tail_handle) {
                Some(Machine::Tail(tail)) => tail.readers.is_empty() || tail.ended,
                _ => false,
            };
            if done {
                self.remove_tail(tail_handle);
            }
        }
    }

    /// Every reader of `tail_handle` fails with `error`; the tail goes.
    pub(super) fn fail_tail(&mut self, tail_handle: Handle, error: &Error) {
        let readers = match self.machines.get(&tail_handle) {
            Some(Machine::Tail(tail)) => tail.readers.clone(),
            _ => return,
        };
        for reader in readers {
            let next = match self.machines.get_mut(&reader) {
                Some(Machine::LogReader(r)) => r.fail(error.clone(), &mut self.out),
                _ => continue,
            };
            self.apply(reader, next);
        }
        self.remove_tail(tail_handle);
    }
}
