//! The resumer's machine: it listens on a private chunk channel, asks the producer for
//! the stream, and turns what arrives into reader events, with the deadlines that
//! keep it from waiting forever: the acknowledgement timeout (v1), the done watchdog
//! (npm 2.2.13) and, toward producers of ours, the liveness bound. A resumer of ours
//! asks again from what it has whenever something may have been lost.

mod recovery;

use super::outbox::{Expect, Outbox, Timer};
use super::requests::Purpose;
use super::{redis_error, Next, Position};
use crate::config::Config;
use crate::error::Error;
use crate::event::{Event, Handle, Role};
use crate::io::{Op, Reply, ReplyError};
use crate::skip::SkipUnit;
use crate::wire::{
    Control, ErrorKind, Extension, Incoming, ResumeRequest, StreamNames, DONE_MESSAGE,
};
use bytes::Bytes;
use recovery::liveness_window;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Subscribing,
    AwaitingAck { deadline: Instant },
    Streaming,
}

/// What the producer turned out to be, from its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Unknown,
    V1,
    /// Speaks our extensions; `next` is the index of the next live chunk.
    Extended {
        next: u64,
    },
}

/// How often a resumer asks again for chunks an ending says it missed.
const MAX_INCOMPLETE_ENDINGS: u8 = 3;

/// How often a resumer that asked again with no hello asks once more.
const MAX_REWIND_ATTEMPTS: u8 = 5;

/// One stream this engine follows, produced elsewhere.
#[derive(Debug)]
pub(super) struct Resumer {
    handle: Handle,
    stream_id: String,
    names: StreamNames,
    listener_id: String,
    channel: Bytes,
    token: String,
    purpose: Purpose,
    phase: Phase,
    peer: Peer,
    /// The producer's promise to speak at least this often (from its hello).
    heartbeat: Duration,
    last_heard: Option<Instant>,
    liveness_at: Option<Instant>,
    /// When the done watchdog next reads the sentinel (none while a read is in flight).
    watchdog_at: Option<Instant>,
    /// Consecutive watchdog readings of a finished stream.
    done_readings: u8,
    /// Asked again from a chunk index: content is dropped until the producer's hello,
    /// since the catch-up after it holds that content again.
    rewinding: bool,
    /// When to ask again if no hello came (the request may have crossed a producer
    /// that was itself reconnecting).
    rewind_at: Option<Instant>,
    rewind_attempts: u8,
    /// How often an ending that named more chunks than were received made this
    /// resumer ask again (bounded: two producers of one stream, after a fault, can
    /// disagree for ever).
    incomplete_endings: u8,
    /// The `seq` of the latest request: only the hello that echoes it counts.
    seq: u64,
    /// The request announced our extensions (only then can it be recovered).
    extended: bool,
}

impl Resumer {
    /// The stream's id.
    pub(super) fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The resumer of `stream_id` for request `handle`, listening on `listener_id`'s
    /// channel (`token` marks its control messages): subscribes first, so that no
    /// answer to its request is lost.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        handle: Handle,
        stream_id: String,
        names: StreamNames,
        purpose: Purpose,
        listener_id: String,
        token: String,
        config: &Config,
        out: &mut Outbox,
    ) -> Resumer {
        let channel = config.names().chunk_channel(&listener_id);
        out.send(
            handle,
            Op::Subscribe {
                channel: channel.clone(),
            },
            Expect::Subscribe,
        );
        Resumer {
            handle,
            stream_id,
            names,
            listener_id,
            channel,
            token,
            purpose,
            phase: Phase::Subscribing,
            peer: Peer::Unknown,
            heartbeat: Duration::ZERO,
            last_heard: None,
            liveness_at: None,
            watchdog_at: None,
            done_readings: 0,
            rewinding: false,
            rewind_at: None,
            rewind_attempts: 0,
            incomplete_endings: 0,
            seq: 0,
            extended: config.extensions()
                || matches!(purpose, Purpose::Cancel | Purpose::Read(Position::Chunk(_))),
        }
    }

    /// The channel this resumer listens on.
    pub(super) fn channel(&self) -> &Bytes {
        &self.channel
    }

    pub(super) fn sentinel(&self) -> &Bytes {
        &self.names.sentinel
    }

    pub(super) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match (timer, self.phase) {
            (Timer::Ack, Phase::AwaitingAck { deadline }) => Some(deadline),
            (Timer::Watchdog, _) => self.watchdog_at,
            (Timer::Liveness, _) => self.liveness_at,
            (Timer::Rewind, _) => self.rewind_at,
            _ => None,
        }
    }

    /// Whether this resumer can recover from lost messages: its producer is one of
    /// ours (or has not answered yet, so nothing was missed).
    pub(super) fn can_recover(&self) -> bool {
        self.extended && !matches!(self.peer, Peer::V1)
    }

    /// Where to ask again from: the chunk after the last one received, or `None` (as
    /// first asked) before the producer's first answer.
    fn received_through(&self) -> Option<u64> {
        match self.peer {
            Peer::Extended { next } => Some(next),
            _ => None,
        }
    }

    /// The request this resumer publishes; our fields go along when `extensions` is
    /// on, or when the purpose needs them.
    fn request(&self, unit: SkipUnit, extensions: bool) -> ResumeRequest {
        let (skip, from_chunk, cancel) = match self.purpose {
            Purpose::Read(Position::Start) => (None, None, false),
            Purpose::Read(Position::Units(n)) => (Some(n.min(i64::MAX as u64) as i64), None, false),
            Purpose::Read(Position::Chunk(n)) => (None, Some(n), false),
            Purpose::Cancel => (None, None, true),
        };
        let extended = extensions || cancel || from_chunk.is_some();
        ResumeRequest {
            listener_id: self.listener_id.clone(),
            skip,
            // v1 peers count UTF-16: name the unit only when it differs.
            unit: (unit != SkipUnit::Utf16 && skip.is_some()).then_some(unit),
            ext: extended.then(|| Extension {
                token: self.token.clone(),
                from_chunk,
                cancel,
                seq: self.seq,
            }),
        }
    }

    fn publish_request(&self, extensions: bool, config: &Config, out: &mut Outbox) {
        let op = Op::Publish {
            channel: self.names.request_channel.clone(),
            message: self.request(config.skip_unit(), extensions).encode(),
        };
        out.send(self.handle, op, Expect::Request);
    }

    /// The reader went away: stop listening. The producer notices (a PUBLISH that
    /// reaches nobody) and stops publishing to this channel.
    pub(super) fn leave(&mut self, out: &mut Outbox) -> Next {
        out.unsubscribe(self.handle, self.channel.clone(), Expect::Write);
        Next::Remove
    }

    /// Ends the resumer with `event` and leaves its channel.
    fn close(&mut self, event: Event, out: &mut Outbox) -> Next {
        out.emit(event);
        self.leave(out)
    }

    /// Ends this resumer because its subscription is gone for good (nothing to leave).
    pub(super) fn fail_connection(&mut self, error: Error, out: &mut Outbox) -> Next {
        out.emit(Event::Failed {
            handle: self.handle,
            error,
        });
        Next::Remove
    }

    fn fail(&mut self, error: Error, out: &mut Outbox) -> Next {
        let handle = self.handle;
        self.close(Event::Failed { handle, error }, out)
    }

    /// The reply to one of this resumer's commands.
    pub(super) fn on_reply(
        &mut self,
        now: Instant,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        match (expect, reply) {
            (Expect::Subscribe, Ok(_)) => {
                self.on_subscribed(now, config, out);
                Next::Stay
            }
            // The connection dropped again: every channel is subscribed again once it
            // is back.
            (Expect::Resubscribe, Err(ReplyError::Connection(error))) => {
                log::debug!(
                    "resumable-stream: the subscription of a reader of {:?} waits for the next reconnect: {error}",
                    self.stream_id
                );
                // The transport called the connection back, yet this subscription
                // failed: if no new interruption pauses it, the liveness bound runs
                // again, so that a subscription never restored cannot wait for ever.
                self.restart_liveness(now, out);
                Next::Stay
            }
            // A failed subscription has nothing to leave.
            (Expect::Subscribe | Expect::Resubscribe, Err(error)) => {
                self.fail_connection(redis_error("SUBSCRIBE", error), out)
            }
            (Expect::Resubscribe, Ok(_)) => {
                self.resume_after_reconnect(now, config, out);
                Next::Stay
            }
            (Expect::Watchdog, reply) => self.on_watchdog(now, reply, config, out),
            // The server refused the request (an ACL without PUBLISH on the request
            // channel, say): nobody will ever answer it. A lost connection is not a
            // refusal: the request goes again once the pub/sub connection is back, or
            // the acknowledgement timeout decides.
            (Expect::Request, Err(error @ ReplyError::Server(_))) => {
                out.stats.failed_writes += 1;
                self.fail(redis_error("PUBLISH", error), out)
            }
            _ => Next::Stay,
        }
    }

    /// Subscribed: ask the producer, and start the acknowledgement timeout.
    fn on_subscribed(&mut self, now: Instant, config: &Config, out: &mut Outbox) {
        if self.phase != Phase::Subscribing {
            return;
        }
        let deadline = now + config.ack_timeout();
        self.phase = Phase::AwaitingAck { deadline };
        out.arm(self.handle, Timer::Ack, deadline);
        self.publish_request(config.extensions(), config, out);
    }

    /// A message on this resumer's chunk channel.
    pub(super) fn on_message(
        &mut self,
        now: Instant,
        message: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        self.last_heard = Some(now);
        let incoming = Incoming::decode(&message, &self.token);
        if self.purpose == Purpose::Cancel {
            return self.on_cancel_answer(incoming, &message, out);
        }
        match incoming {
            Some(Ok(Incoming::Control(control))) => self.on_control(now, control, config, out),
            Some(Ok(Incoming::Answer {
                next,
                heartbeat_ms,
                seq,
                catch_up,
            })) => {
                self.on_answer(now, (next, heartbeat_ms, seq), catch_up, config, out);
                Next::Stay
            }
            Some(Ok(Incoming::Chunk { index, data })) => {
                self.on_indexed_chunk(now, index, data, config, out);
                Next::Stay
            }
            Some(Err(())) => {
                log::debug!("resumable-stream: an unreadable control message was dropped");
                Next::Stay
            }
            None => self.on_plain_message(now, message, config, out),
        }
    }

    /// A cancel is answered by one message.
    fn on_cancel_answer(
        &mut self,
        incoming: Option<Result<Incoming, ()>>,
        message: &[u8],
        out: &mut Outbox,
    ) -> Next {
        let handle = self.handle;
        let event = match incoming {
            Some(Ok(Incoming::Control(Control::Cancelled { .. }))) => Event::Cancelled { handle },
            Some(Ok(Incoming::Control(Control::Error { kind, message, .. }))) => Event::Failed {
                handle,
                error: remote_error(&self.stream_id, kind, message),
            },
            Some(Ok(Incoming::Control(Control::End { .. }))) => Event::Done { handle },
            Some(_) => return Next::Stay,
            None if message == DONE_MESSAGE => Event::Done { handle },
            None => Event::Failed {
                handle,
                error: Error::Unsupported {
                    what: "cancel (the producer speaks only the v1 protocol)",
                },
            },
        };
        self.close(event, out)
    }

    /// The resumer's first sign that the stream is flowing: arms the watchdog (and,
    /// toward an extended producer, the liveness bound) and tells the reader.
    fn start_streaming(&mut self, now: Instant, config: &Config, out: &mut Outbox) {
        if self.phase == Phase::Streaming {
            return;
        }
        self.phase = Phase::Streaming;
        let watch_at = now + config.done_watchdog_interval();
        self.watchdog_at = Some(watch_at);
        out.arm(self.handle, Timer::Watchdog, watch_at);
        if let Peer::Extended { .. } = self.peer {
            let at = now + liveness_window(self.heartbeat);
            self.liveness_at = Some(at);
            out.arm(self.handle, Timer::Liveness, at);
        }
        out.emit(Event::Started {
            handle: self.handle,
            role: Role::Resumer,
        });
    }

    fn on_control(
        &mut self,
        now: Instant,
        control: Control,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        let missing =
            |next: u64, peer: Peer| !matches!(peer, Peer::Extended { next: have } if have >= next);
        match control {
            // A hello always comes with its catch-up, as an answer.
            Control::Hello { .. } | Control::Heartbeat => Next::Stay,
            // The stream's last word, while asking again for what was missed: the
            // answer brings the missing chunks, then this ending again.
            Control::Cancelled { .. }
            | Control::Error {
                kind: ErrorKind::Source,
                ..
            } if self.rewinding => Next::Stay,
            // The stream ended after `next` chunks: unless some are missing, this is
            // the end.
            Control::Cancelled { next: Some(next) }
            | Control::Error {
                kind: ErrorKind::Source,
                next: Some(next),
                ..
            } if missing(next, self.peer) && self.incomplete_endings < MAX_INCOMPLETE_ENDINGS => {
                self.incomplete_endings += 1;
                self.ask_again(now, self.received_through(), config, out);
                Next::Stay
            }
            Control::Cancelled { .. } => self.fail(Error::Cancelled, out),
            // Something to us was lost: ask again from what we have (unless we already
            // did: the rewind timer covers that request).
            Control::Error {
                kind: ErrorKind::Lost,
                ..
            } => {
                if !self.rewinding {
                    self.ask_again(now, self.received_through(), config, out);
                }
                Next::Stay
            }
            Control::Error { kind, message, .. } => {
                let error = remote_error(&self.stream_id, kind, message);
                self.fail(error, out)
            }
            // The end, after `next` chunks: unless some are missing, it is the end.
            Control::End { next } => {
                if self.rewinding {
                    return Next::Stay;
                }
                if !missing(next, self.peer) {
                    let handle = self.handle;
                    return self.close(Event::End { handle }, out);
                }
                if self.incomplete_endings < MAX_INCOMPLETE_ENDINGS {
                    self.incomplete_endings += 1;
                    self.ask_again(now, self.received_through(), config, out);
                    return Next::Stay;
                }
                // Never an end with chunks missing: a typed error.
                let have = self.received_through().unwrap_or(0);
                let error = Error::Remote {
                    kind: "incomplete".to_owned(),
                    message: format!(
                        "the stream ended after {next} chunks; {have} could be received"
                    ),
                };
                self.fail(error, out)
            }
        }
    }

    /// The answer of an extended producer to the latest request: its hello (`next`,
    /// heartbeat, `seq`) and the catch-up, holding the stream before chunk `next`.
    fn on_answer(
        &mut self,
        now: Instant,
        (next, heartbeat_ms, seq): (u64, u64, u64),
        catch_up: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) {
        if seq != self.seq {
            // The answer to an earlier request: overtaken by a later one (content stays
            // dropped until that one's answer), or repeated after it (a retried
            // `PUBLISH`). Dropped either way: content is indexed, so what follows needs
            // no care.
            return;
        }
        if !self.rewinding && self.peer != Peer::Unknown {
            // Already answered, and not asking again: a repeat of that answer.
            return;
        }
        self.rewinding = false;
        self.rewind_at = None;
        self.rewind_attempts = 0;
        self.peer = Peer::Extended { next };
        self.heartbeat = Duration::from_millis(heartbeat_ms);
        self.start_streaming(now, config, out);
        if !catch_up.is_empty() {
            out.emit(Event::Data {
                handle: self.handle,
                data: catch_up,
                chunk: Some(next),
            });
        }
    }

    /// Live chunk `index` from an extended producer: the next one is delivered, a
    /// repeated one dropped, one after a gap makes the resumer ask again.
    fn on_indexed_chunk(
        &mut self,
        now: Instant,
        index: u64,
        data: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) {
        if self.rewinding {
            return;
        }
        match &mut self.peer {
            Peer::Extended { next } if index == *next => {
                *next += 1;
                let chunk = Some(*next);
                if !data.is_empty() {
                    out.emit(Event::Data {
                        handle: self.handle,
                        data,
                        chunk,
                    });
                }
            }
            Peer::Extended { next } if index > *next => {
                let from = Some(*next);
                self.ask_again(now, from, config, out);
            }
            // A repeat.
            Peer::Extended { .. } => {}
            // The answer was lost: ask again as first asked.
            Peer::Unknown => self.ask_again(now, None, config, out),
            // Content of a v1 producer never carries our token.
            Peer::V1 => {}
        }
    }

    /// A message without our token: v1 content, or the v1 end message.
    fn on_plain_message(
        &mut self,
        now: Instant,
        message: Bytes,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        if self.rewinding {
            // Asked again: what arrives before the hello comes again after it.
            return Next::Stay;
        }
        match self.peer {
            Peer::Unknown => {
                // Content before any hello: a v1 producer.
                self.peer = Peer::V1;
                if let Purpose::Read(Position::Chunk(_)) = self.purpose {
                    let error = Error::Unsupported {
                        what: "resuming by chunk index (the producer speaks only the v1 protocol)",
                    };
                    return self.fail(error, out);
                }
                self.start_streaming(now, config, out);
            }
            Peer::V1 => {}
            Peer::Extended { .. } => {
                // Our producers frame all they send to an extended listener: this is
                // not from the producer that answered. Ask that one again.
                log::debug!("resumable-stream: unframed content from an extended producer");
                self.ask_again(now, self.received_through(), config, out);
                return Next::Stay;
            }
        }
        if message == DONE_MESSAGE {
            let handle = self.handle;
            return self.close(Event::End { handle }, out);
        }
        if !message.is_empty() {
            out.emit(Event::Data {
                handle: self.handle,
                data: message,
                chunk: None,
            });
        }
        Next::Stay
    }
}

/// The error an extended producer's control message stands for.
fn remote_error(stream_id: &str, kind: ErrorKind, message: String) -> Error {
    match kind {
        ErrorKind::Source => Error::Source(message.into()),
        ErrorKind::Truncated => Error::Truncated {
            stream_id: stream_id.to_owned(),
        },
        kind => Error::Remote {
            kind: kind.as_str().to_owned(),
            message,
        },
    }
}
