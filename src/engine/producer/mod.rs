//! The producer's machine: it owns a stream's request channel, holds every chunk for
//! catch-ups, answers each resume request with its catch-up, publishes every later
//! chunk to every listener in order, and ends the stream.
//!
//! Toward v1 listeners the wire is exactly the deployed one. Toward listeners that
//! announced our extensions (docs/protocol.md) it adds control messages: the answer
//! (hello and catch-up in one message), chunks framed with their index, heartbeats
//! while idle, and a typed ending (error, cancelled) where v1 can only say "done".
//! In durable mode its [`LogWriter`] also appends every chunk to the stream's log.

mod buffer;
mod listeners;
mod log_writer;

use super::outbox::{Expect, Outbox, Timer};
use super::{redis_error, unexpected, Next};
use crate::config::Config;
use crate::error::{Error, SourceError};
use crate::event::{Event, Handle, Role};
use crate::io::{Op, Reply, ReplyError};
use crate::wire::log::LogEnding;
use crate::wire::{Control, ErrorKind, Incoming, StreamNames, DONE_MESSAGE, DONE_VALUE};
use buffer::Buffer;
use bytes::Bytes;
use listeners::Listener;
pub(crate) use log_writer::lease_millis;
use log_writer::{LogWriter, Logged};
use smallvec::SmallVec;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the request channel's subscription.
    Subscribing,
    /// Subscribed; waiting for the sentinel's `SET "1"`.
    Marking,
    /// Taking chunks.
    Live,
    /// The source ended; answering late requests until the unsubscription is confirmed.
    Finished,
}

/// How production ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    Clean,
    SourceFailed(SourceError),
    Cancelled,
    /// Durable mode: a reader ended the log while this producer's lease had lapsed.
    Fenced,
    /// Durable mode: the log reached its byte cap.
    LogFull {
        limit: u64,
    },
}

impl Ending {
    /// The control message extended listeners get instead of the end message, for a
    /// stream of `next` chunks.
    fn control(&self, next: u64) -> Control {
        match self {
            Ending::Clean => Control::End { next },
            Ending::SourceFailed(error) => Control::Error {
                kind: ErrorKind::Source,
                message: error.message().to_owned(),
                next: Some(next),
            },
            Ending::Cancelled => Control::Cancelled { next: Some(next) },
            Ending::Fenced | Ending::LogFull { .. } => Control::Error {
                kind: ErrorKind::Other(self.kind().to_owned()),
                message: self.describe(),
                next: Some(next),
            },
        }
    }

    /// The kind of a durable ending on the wire.
    fn kind(&self) -> &'static str {
        match self {
            Ending::LogFull { .. } => "log-full",
            _ => "fenced",
        }
    }

    fn describe(&self) -> String {
        match self {
            Ending::LogFull { limit } => {
                format!("the stream's log reached its cap of {limit} bytes")
            }
            _ => "the producer's lease lapsed and a reader ended the stream".to_owned(),
        }
    }

    /// The end entry of the log; `None` when a reader wrote it already.
    fn log_ending(&self) -> Option<LogEnding> {
        Some(match self {
            Ending::Clean => LogEnding::Done,
            Ending::SourceFailed(error) => LogEnding::Error(error.message().to_owned()),
            Ending::Cancelled => LogEnding::Cancelled,
            Ending::LogFull { limit } => LogEnding::Full(*limit),
            Ending::Fenced => return None,
        })
    }

    /// The local reader's last event.
    fn event(&self, handle: Handle, stream_id: &str) -> Event {
        let stream_id = stream_id.to_owned();
        match self {
            Ending::Fenced => Event::Failed {
                handle,
                error: Error::Fenced { stream_id },
            },
            Ending::LogFull { limit } => Event::Failed {
                handle,
                error: Error::LogFull {
                    stream_id,
                    limit: *limit,
                },
            },
            Ending::Clean => Event::End { handle },
            Ending::SourceFailed(error) => Event::Failed {
                handle,
                error: Error::Source(error.clone()),
            },
            Ending::Cancelled => Event::Failed {
                handle,
                error: Error::Cancelled,
            },
        }
    }

    /// The last message to a listener: the v1 end message, or a typed ending for an
    /// extended one, for a stream of `next` chunks.
    fn message(&self, next: u64, token: Option<&str>) -> Bytes {
        match token {
            Some(token) => self.control(next).encode(token),
            None => Bytes::from_static(DONE_MESSAGE),
        }
    }
}

/// One stream this engine produces.
#[derive(Debug)]
pub(super) struct Producer {
    handle: Handle,
    stream_id: String,
    names: StreamNames,
    phase: Phase,
    buffer: Buffer,
    /// Registered listeners, in registration order.
    listeners: SmallVec<[Listener; 4]>,
    next_serial: u64,
    reader_attached: bool,
    /// The local reader's last event, held until the sentinel says "DONE".
    end: Option<Event>,
    /// How production ended, for requests that arrive after the end.
    ending: Option<Ending>,
    heartbeat_at: Option<Instant>,
    /// Nothing was published to extended listeners since the last heartbeat tick.
    quiet: bool,
    grace_until: Option<Instant>,
    /// An extended listener's publish failed or reached nobody, or this engine's
    /// pub/sub connection dropped: a listener may be reconnecting, so after the end
    /// the producer keeps answering requests for a liveness window, long enough for
    /// it to ask again.
    unsettled: bool,
    /// Durable mode's log writer.
    log: Option<Box<LogWriter>>,
}

impl Producer {
    /// The stream's id.
    pub(super) fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The producer of `stream_id` for request `handle`: subscribes to its request
    /// channel first, so that no request sent once the sentinel says "active" is lost.
    /// In durable mode it takes the log's lease first, with `token` as its value.
    pub(super) fn start(
        handle: Handle,
        stream_id: String,
        names: StreamNames,
        reader_attached: bool,
        token: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) -> Producer {
        let log = config
            .durable()
            .map(|_| Box::new(LogWriter::start(handle, &stream_id, token, config, out)));
        let channel = names.request_channel.clone();
        out.send(handle, Op::Subscribe { channel }, Expect::Subscribe);
        Producer {
            handle,
            stream_id,
            names,
            phase: Phase::Subscribing,
            buffer: Buffer::default(),
            listeners: SmallVec::new(),
            next_serial: 0,
            reader_attached,
            end: None,
            ending: None,
            heartbeat_at: None,
            quiet: true,
            grace_until: None,
            unsettled: false,
            log,
        }
    }

    /// The channel this producer hears requests on.
    pub(super) fn request_channel(&self) -> &Bytes {
        &self.names.request_channel
    }

    pub(super) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Heartbeat => self.heartbeat_at,
            Timer::Grace => self.grace_until,
            Timer::Flush | Timer::Lease => self.log.as_ref()?.deadline(timer),
            _ => None,
        }
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.buffer.held_bytes()
    }

    pub(super) fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    pub(super) fn detach_reader(&mut self) {
        self.reader_attached = false;
    }

    /// Whether its request channel's UNSUBSCRIBE is on its way: done, and retiring.
    pub(super) fn retiring(&self) -> bool {
        self.phase == Phase::Finished && self.grace_until.is_none() && self.end.is_none()
    }

    /// This engine's pub/sub connection dropped (or the request channel's
    /// subscription): the producer may have missed requests of listeners that were
    /// reconnecting too, so after its end it keeps answering them for a while.
    pub(super) fn on_pubsub_interrupted(&mut self) {
        if self.listeners.iter().any(|l| l.token.is_some()) {
            self.unsettled = true;
        }
    }

    /// The producer ends with `error`: its reader is told, unless the application
    /// already owns the source and dropped the reader.
    pub(super) fn fail(&mut self, error: Error, out: &mut Outbox) -> Next {
        let started = matches!(self.phase, Phase::Live | Phase::Finished);
        if self.reader_attached || !started {
            out.emit(Event::Failed {
                handle: self.handle,
                error,
            });
        }
        Next::Remove
    }

    /// The producer could not start: leave the request channel and fail.
    fn abandon(&mut self, error: Error, out: &mut Outbox) -> Next {
        let channel = self.names.request_channel.clone();
        out.unsubscribe(self.handle, channel, Expect::Write);
        self.fail(error, out)
    }

    /// The reply to one of this producer's commands.
    pub(super) fn on_reply(
        &mut self,
        now: Instant,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        match (expect, reply) {
            (Expect::Subscribe, Err(error)) => self.abandon(redis_error("SUBSCRIBE", error), out),
            (Expect::Subscribe, Ok(_)) if self.phase == Phase::Subscribing => {
                // Subscribed to requests: now the sentinel may say "active".
                self.phase = Phase::Marking;
                let op = Op::Set {
                    key: self.names.sentinel.clone(),
                    value: Bytes::from_static(b"1"),
                    expire_seconds: config.sentinel_ttl_seconds(),
                };
                out.send(self.handle, op, Expect::MarkActive);
                Next::Stay
            }
            (Expect::MarkActive, Ok(Reply::Ok)) if self.phase == Phase::Marking => {
                self.phase = Phase::Live;
                if let Some(log) = &mut self.log {
                    log.on_live(self.handle, now, config, out);
                }
                out.emit(Event::Started {
                    handle: self.handle,
                    role: Role::Producer,
                });
                Next::Stay
            }
            (Expect::MarkActive, Ok(other)) => self.abandon(unexpected("SET", &other), out),
            (Expect::MarkActive, Err(error)) => self.abandon(redis_error("SET", error), out),
            (Expect::MarkedDone, reply) => self.on_marked_done(now, reply, config, out),
            (Expect::Retire, reply) => {
                if let Err(error) = reply {
                    log::warn!(
                        "resumable-stream: unsubscribing the finished stream {:?} failed: {error}",
                        self.stream_id
                    );
                }
                Next::Remove
            }
            (Expect::LogAppend | Expect::LogVerify | Expect::LogEnd, reply) => {
                self.on_logged(expect, reply, config, out)
            }
            (Expect::Deliver { listener }, reply) => {
                self.on_delivered(listener, reply, out);
                Next::Stay
            }
            (Expect::Resubscribe, Err(ReplyError::Server(error))) => {
                // It keeps producing for its reader and the listeners it has; it only
                // cannot hear new requests.
                log::warn!(
                    "resumable-stream: the producer of {:?} could not subscribe again: {error}",
                    self.stream_id
                );
                Next::Stay
            }
            _ => Next::Stay,
        }
    }

    /// Deadline `timer` of this producer came due.
    pub(super) fn on_timeout(
        &mut self,
        now: Instant,
        timer: Timer,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        match timer {
            Timer::Heartbeat => self.on_heartbeat_due(now, config, out),
            Timer::Grace => {
                self.grace_until = None;
                self.retire(out);
            }
            Timer::Flush | Timer::Lease => {
                if let (Some(log), Some(durable)) = (&mut self.log, config.durable()) {
                    log.on_timeout(self.handle, now, timer, config, durable, out);
                }
            }
            _ => {}
        }
        Next::Stay
    }

    /// The reply to one of the log writer's commands.
    fn on_logged(
        &mut self,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        let (Some(log), Some(durable)) = (&mut self.log, config.durable()) else {
            return Next::Stay;
        };
        let logged = match log.on_reply(self.handle, expect, reply, config, durable, out) {
            Logged::Vanished => Logged::Failed(Error::Vanished {
                stream_id: self.stream_id.clone(),
            }),
            logged => logged,
        };
        match logged {
            Logged::Going | Logged::Vanished => Next::Stay,
            Logged::Ended => {
                self.mark_done(config, out);
                Next::Stay
            }
            Logged::Fenced if self.phase == Phase::Live => {
                let _ = self.end(Ending::Fenced, config, out);
                Next::Stay
            }
            Logged::Fenced => {
                // Fenced while its last chunks were going in: what its reader is told
                // changes; the stream is marked done as the reader that ended it did.
                if self.end.is_some() {
                    self.end = Some(Ending::Fenced.event(self.handle, &self.stream_id));
                }
                self.mark_done(config, out);
                Next::Stay
            }
            Logged::Failed(error) => {
                log::warn!(
                    "resumable-stream: the log of {:?} cannot be written: {error}",
                    self.stream_id
                );
                if self.phase == Phase::Live {
                    out.emit(Event::StopSource {
                        handle: self.handle,
                    });
                }
                self.log = None;
                let channel = self.names.request_channel.clone();
                out.unsubscribe(self.handle, channel, Expect::Write);
                self.fail(error, out)
            }
        }
    }

    fn retire(&mut self, out: &mut Outbox) {
        let channel = self.names.request_channel.clone();
        out.unsubscribe(self.handle, channel, Expect::Retire);
    }

    /// The source's next chunk: to every listener (framed with its index for an
    /// extended one), into the buffer, and to the local reader.
    ///
    /// # Errors
    /// [`Error::NotProducing`] unless the stream is live.
    pub(super) fn push(
        &mut self,
        chunk: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        if self.phase != Phase::Live {
            return Err(Error::NotProducing);
        }
        if let (Some(log), Some(durable)) = (&mut self.log, config.durable()) {
            if let Err(limit) = log.push(self.handle, &chunk, durable, out) {
                self.end(Ending::LogFull { limit }, config, out)?;
                out.emit(Event::StopSource {
                    handle: self.handle,
                });
                let stream_id = self.stream_id.clone();
                return Err(Error::LogFull { stream_id, limit });
            }
        }
        let index = self.buffer.chunk_count();
        for listener in self.listeners.iter().filter(|l| !l.lost) {
            // An extended listener gets each chunk with its index, so that it can tell
            // a lost or repeated message from the next one.
            let message = match &listener.token {
                Some(token) => {
                    self.quiet = false;
                    Incoming::encode_chunk(token, index, &chunk)
                }
                None => chunk.clone(),
            };
            listener.deliver(self.handle, message, out);
        }
        if self.reader_attached && !chunk.is_empty() {
            out.emit(Event::Data {
                handle: self.handle,
                data: chunk.clone(),
                chunk: Some(index + 1),
            });
        }
        self.buffer.push(chunk, config.max_buffer_bytes());
        Ok(())
    }

    /// The source ended (`ending`): marks the stream done, ends every listener, and
    /// (once the sentinel says "DONE") the local reader.
    ///
    /// # Errors
    /// [`Error::NotProducing`] unless the stream is live.
    pub(super) fn end(
        &mut self,
        ending: Ending,
        config: &Config,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        if self.phase != Phase::Live {
            return Err(Error::NotProducing);
        }
        self.phase = Phase::Finished;
        self.end = Some(ending.event(self.handle, &self.stream_id));
        self.heartbeat_at = None;
        if matches!(ending, Ending::Cancelled | Ending::Fenced) {
            // The source must stop now, not at its next chunk.
            out.emit(Event::StopSource {
                handle: self.handle,
            });
        }
        match (&mut self.log, config.durable(), ending.log_ending()) {
            // The stream is marked done once its end is in the log, after every chunk.
            (Some(log), Some(durable), Some(log_ending)) => {
                log.end(self.handle, log_ending, config, durable, out);
            }
            _ => self.mark_done(config, out),
        }
        let next = self.buffer.chunk_count();
        for listener in std::mem::take(&mut self.listeners) {
            let message = ending.message(next, listener.token.as_deref());
            out.publish(self.handle, listener.channel, message, Expect::Write);
        }
        self.ending = Some(ending);
        Ok(())
    }

    /// Writes "DONE" to the sentinel; the local reader ends once it is written.
    fn mark_done(&mut self, config: &Config, out: &mut Outbox) {
        let op = Op::Set {
            key: self.names.sentinel.clone(),
            value: Bytes::from_static(DONE_VALUE),
            expire_seconds: config.sentinel_ttl_seconds(),
        };
        out.send(self.handle, op, Expect::MarkedDone);
    }

    /// The stream is marked done: the local reader ends, and after the grace period
    /// the producer stops answering requests.
    fn on_marked_done(
        &mut self,
        now: Instant,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        if let Err(error) = reply {
            out.stats.failed_writes += 1;
            log::warn!(
                "resumable-stream: marking the stream {:?} done failed: {error}",
                self.stream_id
            );
        }
        let grace = if self.unsettled {
            config.grace_period().max(config.heartbeat_interval() * 3)
        } else {
            config.grace_period()
        };
        let end = self.end.take();
        if std::mem::take(&mut self.reader_attached) {
            if let Some(end) = end {
                out.emit(end);
            }
        }
        if grace.is_zero() {
            self.retire(out);
        } else {
            let at = now + grace;
            self.grace_until = Some(at);
            out.arm(self.handle, Timer::Grace, at);
        }
        Next::Stay
    }
}
