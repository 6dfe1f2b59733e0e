//! A log reader: one reader of a durable stream. It catches up with `XRANGE` pages on
//! the command connection, then follows its stream's [`Tail`](super::tail::Tail),
//! which this engine shares among every local reader of that stream. Entries name the
//! chunks they hold, so each reader delivers every chunk from its position exactly
//! once, whatever arrives twice; a chunk missing before the first one it gets is a
//! typed error, never a gap.

use super::super::outbox::{Expect, Outbox};
use super::super::requests::Purpose;
use super::super::{redis_error, unexpected, Next, Position};
use crate::config::Config;
use crate::error::{Error, SourceError};
use crate::event::{Event, Handle, Role};
use crate::io::{Op, Reply, ReplyError, StreamId};
use crate::skip::{catch_up, settled_units, SkipUnit};
use crate::wire::log::{decode_range, next_id, read_from, LogEnding, LogEntry, END_ID};
use crate::wire::StreamNames;
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading pages up to `until`: the end of the log (catching up, before it
    /// follows a tail), or where the tail was when this reader joined it (`joining`);
    /// `first` until the first page came.
    Paging {
        until: StreamId,
        first: bool,
        joining: bool,
    },
    /// The log is empty: is its producer alive (a durable one that has not appended
    /// yet) or is it a v1 producer, with no log at all?
    Probing,
    /// Following the tail.
    Following,
}

/// One reader of a durable stream.
#[derive(Debug)]
pub(in crate::engine) struct LogReader {
    handle: Handle,
    stream_id: String,
    names: StreamNames,
    purpose: Purpose,
    log: Bytes,
    lease: Bytes,
    phase: Phase,
    /// The chunks this reader has (its next chunk's index).
    position: u64,
    /// The position first asked for: a finished stream shorter than it is an error.
    asked: u64,
    /// The last entry read from the log.
    last_id: Option<StreamId>,
    /// Units still to skip (`Position::Units`), and the chunks held until they are.
    skip: Option<u64>,
    held: Vec<Bytes>,
    /// The sentinel said "DONE": an empty log means there is nothing to replay.
    finished: bool,
    started: bool,
    /// What the tail delivered while this reader was still paging.
    buffered: Vec<LogEntry>,
    /// How many bytes are held.
    held_bytes: usize,
    unit: SkipUnit,
    /// How long a silent producer is given, for `ProducerGone`.
    lease_ttl: Duration,
}

/// What a reader asks of the engine beyond [`Next`].
#[derive(Debug)]
pub(in crate::engine) enum Wants {
    /// Nothing.
    Nothing,
    /// To follow its stream's tail from `after`.
    Tail { after: StreamId },
    /// There is no log: resume over pub/sub (a v1 producer).
    PubSub,
    /// Done with this machine.
    Next(Next),
}

impl LogReader {
    /// A reader of `stream_id` from `position`; `finished` when its sentinel said
    /// "DONE". Reads the first page at once.
    pub(in crate::engine) fn start(
        handle: Handle,
        stream_id: String,
        names: StreamNames,
        purpose: Purpose,
        finished: bool,
        config: &Config,
        out: &mut Outbox,
    ) -> LogReader {
        let (position, skip) = match purpose {
            Purpose::Read(Position::Chunk(n)) => (n, None),
            Purpose::Read(Position::Units(n)) if n > 0 => (0, Some(n)),
            _ => (0, None),
        };
        let log = config.names().log(&stream_id);
        let lease_key = config.names().lease(&stream_id);
        let reader = LogReader {
            handle,
            names,
            purpose,
            log,
            lease: lease_key,
            phase: Phase::Paging {
                until: END_ID,
                first: true,
                joining: false,
            },
            position,
            asked: position,
            last_id: None,
            skip,
            held: Vec::new(),
            held_bytes: 0,
            unit: config.skip_unit(),
            finished,
            started: false,
            buffered: Vec::new(),
            lease_ttl: Duration::from_millis(super::super::producer::lease_millis(config)),
            stream_id,
        };
        reader.read_page(read_from(position), END_ID, config, out);
        reader
    }

    pub(in crate::engine) fn stream_id(&self) -> &str {
        &self.stream_id
    }

    pub(in crate::engine) fn log_key(&self) -> &Bytes {
        &self.log
    }

    /// The stream's names and what was asked, to resume over pub/sub instead.
    pub(in crate::engine) fn into_parts(self) -> (Handle, String, StreamNames, Purpose) {
        (self.handle, self.stream_id, self.names, self.purpose)
    }

    fn read_page(&self, start: StreamId, end: StreamId, config: &Config, out: &mut Outbox) {
        let count = config.durable().map_or(512, |d| d.read_count());
        let op = Op::XRange {
            key: self.log.clone(),
            start,
            end,
            count,
        };
        out.send(self.handle, op, Expect::LogPage);
    }

    /// Joins a tail that has read up to `tail_after`: pages up to there first, if the
    /// tail is ahead of this reader, holding what the tail delivers meanwhile.
    pub(in crate::engine) fn join(
        &mut self,
        tail_after: StreamId,
        config: &Config,
        out: &mut Outbox,
    ) {
        let mine = self.after();
        if tail_after > mine {
            self.phase = Phase::Paging {
                until: tail_after,
                first: false,
                joining: true,
            };
            self.read_page(next_id(mine), tail_after, config, out);
        } else {
            self.phase = Phase::Following;
        }
    }

    /// The id after which this reader needs entries.
    ///
    /// Only an entry this reader read proves that the log holds everything up to it
    /// (one producer appends in id order): before any, it is the log's start, even for
    /// a position further on (chunks below it are skipped), so that a tail made for
    /// this reader never starts past entries not yet written that a later local reader
    /// needs.
    fn after(&self) -> StreamId {
        self.last_id.unwrap_or(StreamId::new(0, 0))
    }

    /// The reply to one of this reader's commands.
    pub(in crate::engine) fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Wants {
        match (expect, self.phase) {
            (
                Expect::LogPage,
                Phase::Paging {
                    until,
                    first,
                    joining,
                },
            ) => self.on_page(reply, (until, first, joining), config, out),
            (Expect::LeaseProbe, Phase::Probing) => match reply {
                // A durable producer that has appended nothing yet.
                Ok(Reply::Data(_)) => {
                    self.start_reading(out);
                    Wants::Tail {
                        after: self.after(),
                    }
                }
                Ok(Reply::Nil) => Wants::PubSub,
                Ok(other) => Wants::Next(self.fail(unexpected("GET", &other), out)),
                Err(error) => Wants::Next(self.fail(redis_error("GET", error), out)),
            },
            _ => Wants::Nothing,
        }
    }

    fn on_page(
        &mut self,
        reply: Result<Reply, ReplyError>,
        (until, first, joining): (StreamId, bool, bool),
        config: &Config,
        out: &mut Outbox,
    ) -> Wants {
        let entries = match reply
            .map_err(|e| redis_error("XRANGE", e))
            .and_then(|reply| {
                decode_range(&reply).map_err(|reason| Error::UnexpectedReply {
                    command: "XRANGE",
                    reply: reason,
                })
            }) {
            Ok(entries) => entries,
            Err(error) => return Wants::Next(self.fail(error, out)),
        };
        if first && entries.is_empty() {
            if self.finished {
                // Nothing left to replay (the replay window passed): as v1 answers.
                out.emit(Event::Done {
                    handle: self.handle,
                });
                return Wants::Next(Next::Remove);
            }
            self.phase = Phase::Probing;
            let op = Op::Get {
                key: self.lease.clone(),
            };
            out.send(self.handle, op, Expect::LeaseProbe);
            return Wants::Nothing;
        }
        if first {
            // A position outside the log fails before the stream starts, so that an
            // HTTP face can still answer with its status (416, 410).
            if let Some(error) = self.outside(entries.first()) {
                return Wants::Next(self.fail(error, out));
            }
        }
        self.start_reading(out);
        let full = entries.len() as u64 >= config.durable().map_or(512, |d| d.read_count());
        let last = entries.last().map(LogEntry::id);
        if let Some(next) = self.take(&entries, out) {
            return Wants::Next(next);
        }
        match last {
            Some(last) if full && last < until => {
                // The next page is not the first: an empty one means caught up.
                self.phase = Phase::Paging {
                    until,
                    first: false,
                    joining,
                };
                self.read_page(next_id(last), until, config, out);
                Wants::Nothing
            }
            _ if !joining => Wants::Tail {
                after: self.after(),
            },
            _ => {
                // Caught up with the tail: what it delivered meanwhile follows.
                self.phase = Phase::Following;
                let buffered = std::mem::take(&mut self.buffered);
                match self.take(&buffered, out) {
                    Some(next) => Wants::Next(next),
                    None => Wants::Nothing,
                }
            }
        }
    }

    /// Why this reader's position is outside the log whose first entry from that
    /// position is `entry`, if it is.
    fn outside(&self, entry: Option<&LogEntry>) -> Option<Error> {
        let stream_id = self.stream_id.clone();
        match entry? {
            LogEntry::Chunks { first, .. } if *first > self.position => {
                Some(Error::BeforeRetained {
                    stream_id,
                    position: self.position,
                    retained_from: *first,
                })
            }
            LogEntry::End {
                next: Some(length), ..
            } if self.asked > *length => Some(Error::PastEnd {
                stream_id,
                position: self.asked,
                length: *length,
            }),
            LogEntry::End {
                next: Some(length), ..
            } if self.position < *length => Some(Error::BeforeRetained {
                stream_id,
                position: self.position,
                retained_from: *length,
            }),
            _ => None,
        }
    }

    fn start_reading(&mut self, out: &mut Outbox) {
        if !std::mem::replace(&mut self.started, true) {
            out.emit(Event::Started {
                handle: self.handle,
                role: Role::Resumer,
            });
        }
    }

    /// Entries from the tail.
    pub(in crate::engine) fn on_entries(
        &mut self,
        entries: &[LogEntry],
        out: &mut Outbox,
    ) -> Option<Next> {
        match self.phase {
            Phase::Following => self.take(entries, out),
            _ => {
                self.buffered.extend_from_slice(entries);
                None
            }
        }
    }

    /// Delivers `entries`; `Some` once the stream ended for this reader.
    /// Borrowed: a tail hands every one of its readers the same entries, and each
    /// takes only the chunks it needs (shared `Bytes`, no copy).
    fn take(&mut self, entries: &[LogEntry], out: &mut Outbox) -> Option<Next> {
        for entry in entries {
            match entry {
                &LogEntry::Chunks {
                    id,
                    first,
                    ref chunks,
                } => {
                    if self.last_id.is_some_and(|last| id <= last) {
                        continue;
                    }
                    if first > self.position {
                        let error = Error::BeforeRetained {
                            stream_id: self.stream_id.clone(),
                            position: self.position,
                            retained_from: first,
                        };
                        return Some(self.fail(error, out));
                    }
                    self.last_id = Some(id);
                    let skip = usize::try_from(self.position - first).unwrap_or(usize::MAX);
                    for chunk in chunks.iter().skip(skip) {
                        self.position += 1;
                        self.deliver(chunk.clone(), out);
                    }
                }
                LogEntry::End { ending, next } => {
                    return Some(self.finish(ending.clone(), *next, out))
                }
            }
        }
        None
    }

    fn deliver(&mut self, chunk: Bytes, out: &mut Outbox) {
        if let Some(skip) = self.skip {
            // Held until the units to skip are all here, then skipped at once, as a
            // producer answers a skip (characters split across chunks included).
            self.held_bytes += chunk.len();
            self.held.push(chunk);
            // No unit is shorter than a byte: count only once enough bytes are held,
            // and only whole characters (the next chunk may complete the last one).
            let enough = self.held_bytes as u64 >= skip && self.settled_units() >= skip;
            if !enough {
                return;
            }
            self.release_held(out);
            return;
        }
        if !chunk.is_empty() {
            out.emit(Event::Data {
                handle: self.handle,
                data: chunk,
                chunk: Some(self.position),
            });
        }
    }

    /// The units held, up to where a character the next chunk may complete begins.
    fn settled_units(&self) -> u64 {
        if self.unit == SkipUnit::Byte {
            return self.held_bytes as u64;
        }
        let joined: Vec<u8> = self.held.concat();
        let (utf16, code_points, _) = settled_units(&joined);
        match self.unit {
            SkipUnit::CodePoint => code_points,
            _ => utf16,
        }
    }

    fn release_held(&mut self, out: &mut Outbox) {
        let Some(skip) = self.skip.take() else {
            return;
        };
        let skip = i64::try_from(skip).unwrap_or(i64::MAX);
        self.held_bytes = 0;
        let data = catch_up(&std::mem::take(&mut self.held), skip, self.unit);
        if !data.is_empty() {
            out.emit(Event::Data {
                handle: self.handle,
                data,
                chunk: Some(self.position),
            });
        }
    }

    fn finish(&mut self, ending: LogEnding, next: Option<u64>, out: &mut Outbox) -> Next {
        let length = next.unwrap_or(self.position);
        if self.asked > length {
            let error = Error::PastEnd {
                stream_id: self.stream_id.clone(),
                position: self.asked,
                length,
            };
            return self.fail(error, out);
        }
        if self.position < length {
            // The log ends at `length` chunks but holds none from this reader's
            // position: its start was trimmed.
            let error = Error::BeforeRetained {
                stream_id: self.stream_id.clone(),
                position: self.position,
                retained_from: length,
            };
            return self.fail(error, out);
        }
        self.release_held(out);
        let handle = self.handle;
        let stream_id = self.stream_id.clone();
        let event = match ending {
            LogEnding::Done => Event::End { handle },
            LogEnding::Error(message) => Event::Failed {
                handle,
                error: Error::Source(SourceError::new(message)),
            },
            LogEnding::Cancelled => Event::Failed {
                handle,
                error: Error::Cancelled,
            },
            LogEnding::Gone => Event::Failed {
                handle,
                error: Error::ProducerGone {
                    stream_id,
                    silent_for: self.lease_ttl,
                },
            },
            LogEnding::Full(limit) => Event::Failed {
                handle,
                error: Error::LogFull { stream_id, limit },
            },
        };
        out.emit(event);
        Next::Remove
    }

    pub(in crate::engine) fn fail(&mut self, error: Error, out: &mut Outbox) -> Next {
        out.emit(Event::Failed {
            handle: self.handle,
            error,
        });
        Next::Remove
    }
}
