//! The resumer's side: subscribing to a private chunk channel, asking the producer for
//! the stream, and turning what arrives into reader events, with the deadlines that
//! keep it from waiting forever: the acknowledgement timeout (v1), the done watchdog
//! (npm 2.2.13) and, toward producers of ours, the liveness bound.

use super::{Engine, Pending, Position, Purpose, Route, State, Timer};
use crate::error::Error;
use crate::event::{Event, Handle, Role};
use crate::io::{Op, Reply, ReplyError};
use crate::skip::SkipUnit;
use crate::wire::{
    Control, Extension, Incoming, ResumeRequest, StreamNames, DONE_MESSAGE, DONE_VALUE,
};
use bytes::Bytes;
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
    /// Speaks the extension protocol; `next` is the index of the next live chunk.
    Extended {
        next: u64,
    },
}

#[derive(Debug)]
pub(super) struct Resumer {
    pub(super) stream_id: String,
    pub(super) names: StreamNames,
    listener_id: String,
    pub(super) channel: Bytes,
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
    /// The request announced the extension protocol (only then can it be recovered).
    extended: bool,
}

impl Resumer {
    pub(super) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match (timer, self.phase) {
            (Timer::Ack, Phase::AwaitingAck { deadline }) => Some(deadline),
            (Timer::Watchdog, _) => self.watchdog_at,
            (Timer::Liveness, _) => self.liveness_at,
            (Timer::Rewind, _) => self.rewind_at,
            _ => None,
        }
    }

    /// The request this resumer publishes; the extension fields go along when
    /// `extensions` is on, or when the purpose needs them.
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
}

/// How often a resumer asks again for chunks an ending says it missed.
const MAX_INCOMPLETE_ENDINGS: u8 = 3;

/// Whether `control` ends the stream itself (not an answer to one request).
fn is_final(control: &Control) -> bool {
    match control {
        Control::Cancelled { .. } => true,
        Control::Error { kind, .. } => kind == "source",
        _ => false,
    }
}

/// The error an extended producer's control message stands for.
fn remote_error(stream_id: &str, kind: &str, message: String) -> Error {
    match kind {
        "source" => Error::Source(message),
        "truncated" => Error::Truncated {
            stream_id: stream_id.to_owned(),
        },
        _ => Error::Remote {
            kind: kind.to_owned(),
            message,
        },
    }
}

impl Engine {
    pub(super) fn become_resumer(&mut self, handle: Handle) {
        let Some(State::Starting(s)) = self.states.remove(&handle) else {
            return;
        };
        if !s.reader_attached {
            return;
        }
        let listener_id = self.listener_ids.next_id();
        let token = self.listener_ids.next_id().replace('-', "");
        let channel = self.names.chunk_channel(&listener_id);
        self.routes.insert(channel.clone(), Route::Resumer(handle));
        self.states.insert(
            handle,
            State::Resumer(Resumer {
                stream_id: s.stream_id,
                names: s.names,
                listener_id,
                channel: channel.clone(),
                token,
                purpose: s.purpose,
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
                extended: self.config.extensions()
                    || matches!(
                        s.purpose,
                        Purpose::Cancel | Purpose::Read(Position::Chunk(_))
                    ),
            }),
        );
        self.send(Op::Subscribe { channel }, Pending::Subscribe(handle));
    }

    /// Subscribed: ask the producer, and start the acknowledgement timeout.
    pub(super) fn on_resumer_subscribed(&mut self, now: Instant, handle: Handle) {
        let ack = self.config.ack_timeout();
        let unit = self.config.skip_unit();
        let extensions = self.config.extensions();
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if r.phase != Phase::Subscribing {
            return;
        }
        let deadline = now + ack;
        r.phase = Phase::AwaitingAck { deadline };
        let op = Op::Publish {
            channel: r.names.request_channel.clone(),
            message: r.request(unit, extensions).encode(),
        };
        self.arm(handle, Timer::Ack, deadline);
        self.send(op, Pending::Write);
    }

    /// The reader went away: stop listening. The producer notices (a PUBLISH that
    /// reaches nobody) and stops publishing to this channel.
    pub(super) fn leave(&mut self, handle: Handle) {
        if let Some(State::Resumer(r)) = self.states.remove(&handle) {
            self.routes.remove(&r.channel);
            self.send(Op::Unsubscribe { channel: r.channel }, Pending::Write);
        }
    }

    /// Ends the resumer with `event` and leaves its channel.
    fn close_resumer(&mut self, handle: Handle, event: Event) {
        self.leave(handle);
        self.emit(event);
    }

    pub(super) fn on_chunk_message(&mut self, now: Instant, handle: Handle, message: Bytes) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        r.last_heard = Some(now);
        let incoming = Incoming::decode(&message, &r.token);

        // A cancel is answered by one message.
        if r.purpose == Purpose::Cancel {
            let event = match incoming {
                Some(Ok(Incoming::Control(Control::Cancelled { .. }))) => {
                    Event::Cancelled { handle }
                }
                Some(Ok(Incoming::Control(Control::Error { kind, message, .. }))) => {
                    Event::Failed {
                        handle,
                        error: remote_error(&r.stream_id, &kind, message),
                    }
                }
                Some(Ok(Incoming::Control(Control::End { .. }))) => Event::Done { handle },
                Some(_) => return,
                None if message == DONE_MESSAGE => Event::Done { handle },
                None => Event::Failed {
                    handle,
                    error: Error::Unsupported {
                        what: "cancel (the producer speaks only the v1 protocol)",
                    },
                },
            };
            return self.close_resumer(handle, event);
        }

        match incoming {
            Some(Ok(Incoming::Control(control))) => self.on_control(now, handle, control),
            Some(Ok(Incoming::Answer {
                next,
                heartbeat_ms,
                seq,
                catch_up,
            })) => self.on_answer(now, handle, (next, heartbeat_ms, seq), catch_up),
            Some(Ok(Incoming::Chunk { index, data })) => {
                self.on_indexed_chunk(now, handle, index, data)
            }
            Some(Err(())) => {
                log::debug!("resumable-stream: an unreadable control message was dropped")
            }
            None => self.on_plain_message(now, handle, message),
        }
    }

    /// The resumer's first sign that the stream is flowing: arms the watchdog (and,
    /// toward an extended producer, the liveness bound) and tells the reader.
    fn start_streaming(&mut self, now: Instant, handle: Handle) {
        let watchdog = self.config.done_watchdog_interval();
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if r.phase == Phase::Streaming {
            return;
        }
        r.phase = Phase::Streaming;
        let watch_at = now + watchdog;
        r.watchdog_at = Some(watch_at);
        let live_at =
            matches!(r.peer, Peer::Extended { .. }).then(|| now + liveness_window(r.heartbeat));
        r.liveness_at = live_at;
        self.arm(handle, Timer::Watchdog, watch_at);
        if let Some(at) = live_at {
            self.arm(handle, Timer::Liveness, at);
        }
        self.emit(Event::Started {
            handle,
            role: Role::Resumer,
        });
    }

    fn on_control(&mut self, now: Instant, handle: Handle, control: Control) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        match control {
            // A hello always comes with its catch-up, as an answer.
            Control::Hello { .. } | Control::Heartbeat => {}
            // The stream's last word, while asking again for what was missed: the
            // answer brings the missing chunks, then this ending again.
            Control::Cancelled { .. } | Control::Error { .. }
                if r.rewinding && is_final(&control) => {}
            // The stream ended after `next` chunks: unless some are missing, this is
            // the end.
            Control::Cancelled { next: Some(next) }
            | Control::Error {
                next: Some(next), ..
            } if !matches!(r.peer, Peer::Extended { next: have } if have >= next)
                && r.incomplete_endings < MAX_INCOMPLETE_ENDINGS =>
            {
                r.incomplete_endings += 1;
                let from = r.received_through();
                self.ask_again(now, handle, from);
            }
            Control::Cancelled { .. } => {
                let event = Event::Failed {
                    handle,
                    error: Error::Cancelled,
                };
                self.close_resumer(handle, event);
            }
            // Something to us was lost: ask again from what we have (unless we already
            // did: the rewind timer covers that request).
            Control::Error { kind, .. } if kind == "lost" => {
                if !r.rewinding {
                    let from = r.received_through();
                    self.ask_again(now, handle, from);
                }
            }
            Control::Error { kind, message, .. } => {
                let error = remote_error(&r.stream_id, &kind, message);
                self.close_resumer(handle, Event::Failed { handle, error });
            }
            // The end, after `next` chunks: unless some are missing, it is the end.
            Control::End { next } => {
                if r.rewinding {
                    return;
                }
                match r.peer {
                    Peer::Extended { next: have } if have >= next => {
                        self.close_resumer(handle, Event::End { handle })
                    }
                    _ if r.incomplete_endings < MAX_INCOMPLETE_ENDINGS => {
                        r.incomplete_endings += 1;
                        let from = r.received_through();
                        self.ask_again(now, handle, from);
                    }
                    // Never an end with chunks missing: a typed error.
                    peer => {
                        let have = match peer {
                            Peer::Extended { next } => next,
                            _ => 0,
                        };
                        let error = Error::Remote {
                            kind: "incomplete".to_owned(),
                            message: format!(
                                "the stream ended after {next} chunks; {have} could be received"
                            ),
                        };
                        self.close_resumer(handle, Event::Failed { handle, error });
                    }
                }
            }
        }
    }

    /// The answer of an extended producer to the latest request: its hello (`next`,
    /// heartbeat, `seq`) and the catch-up, holding the stream before chunk `next`.
    fn on_answer(
        &mut self,
        now: Instant,
        handle: Handle,
        (next, heartbeat_ms, seq): (u64, u64, u64),
        catch_up: Bytes,
    ) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if seq != r.seq {
            // The answer to an earlier request: overtaken by a later one (content stays
            // dropped until that one's answer), or repeated after it (a retried
            // `PUBLISH`). Dropped either way: content is indexed, so what follows needs
            // no care (dropping content here would wait for an answer already had).
            return;
        }
        if !r.rewinding && r.peer != Peer::Unknown {
            // Already answered, and not asking again: a repeat of that answer.
            return;
        }
        r.rewinding = false;
        r.rewind_at = None;
        r.rewind_attempts = 0;
        r.peer = Peer::Extended { next };
        r.heartbeat = Duration::from_millis(heartbeat_ms);
        self.start_streaming(now, handle);
        if !catch_up.is_empty() {
            self.emit(Event::Data {
                handle,
                data: catch_up,
                chunk: Some(next),
            });
        }
    }

    /// Live chunk `index` from an extended producer: the next one is delivered, a
    /// repeated one dropped, one after a gap makes the resumer ask again.
    fn on_indexed_chunk(&mut self, now: Instant, handle: Handle, index: u64, data: Bytes) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if r.rewinding {
            return;
        }
        match &mut r.peer {
            Peer::Extended { next } => {
                if index == *next {
                    *next += 1;
                    let chunk = Some(*next);
                    if !data.is_empty() {
                        self.emit(Event::Data {
                            handle,
                            data,
                            chunk,
                        });
                    }
                } else if index > *next {
                    let from = Some(*next);
                    self.ask_again(now, handle, from);
                }
            }
            // The answer was lost: ask again as first asked.
            Peer::Unknown => self.ask_again(now, handle, None),
            // Content of a v1 producer never carries our token.
            Peer::V1 => {}
        }
    }

    /// A message without our token: v1 content, or the v1 end message.
    fn on_plain_message(&mut self, now: Instant, handle: Handle, message: Bytes) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if r.rewinding {
            // Asked again: what arrives before the hello comes again after it.
            return;
        }
        match r.peer {
            Peer::Unknown => {
                // Content before any hello: a v1 producer.
                r.peer = Peer::V1;
                if let Purpose::Read(Position::Chunk(_)) = r.purpose {
                    let error = Error::Unsupported {
                        what: "resuming by chunk index (the producer speaks only the v1 protocol)",
                    };
                    return self.close_resumer(handle, Event::Failed { handle, error });
                }
                self.start_streaming(now, handle);
            }
            Peer::V1 => {}
            Peer::Extended { .. } => {
                // Our producers frame all they send to an extended listener: this is
                // not from the producer that answered. Ask that one again.
                log::debug!("resumable-stream: unframed content from an extended producer");
                let from = r.received_through();
                return self.ask_again(now, handle, from);
            }
        }
        if message == DONE_MESSAGE {
            return self.close_resumer(handle, Event::End { handle });
        }
        if !message.is_empty() {
            self.emit(Event::Data {
                handle,
                data: message,
                chunk: None,
            });
        }
    }

    /// Asks the producer again, from chunk `from`, or (no content received since the
    /// hello: `None`) with the original request, under the same listener id: the
    /// producer replaces the old registration.
    fn ask_again(&mut self, now: Instant, handle: Handle, from: Option<u64>) {
        let unit = self.config.skip_unit();
        let wait = self.config.ack_timeout();
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if let Some(from) = from {
            r.purpose = Purpose::Read(Position::Chunk(from));
        }
        r.rewinding = true;
        r.seq += 1;
        let op = Op::Publish {
            channel: r.names.request_channel.clone(),
            message: r.request(unit, true).encode(),
        };
        let at = now + wait;
        r.rewind_at = Some(at);
        self.arm(handle, Timer::Rewind, at);
        self.send(op, Pending::Write);
    }

    /// No hello since asking again: ask once more, a few times, then leave it to the
    /// liveness bound.
    pub(super) fn on_rewind_due(&mut self, now: Instant, handle: Handle) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        r.rewind_at = None;
        if r.rewinding && r.rewind_attempts < 5 {
            r.rewind_attempts += 1;
            // The purpose already names where to start.
            self.ask_again(now, handle, None);
        }
    }

    /// The pub/sub connection dropped: what arrives from now on may follow a gap, so
    /// content is dropped until the hello of the request sent after the restore.
    pub(super) fn on_interrupted(&mut self, handle: Handle) {
        if let Some(State::Resumer(r)) = self.states.get_mut(&handle) {
            // A request that announced the extension will be asked again, with a new
            // `seq`, even if no hello came yet: what arrives before that hello may
            // follow a gap.
            if r.can_recover() {
                r.rewinding = true;
            }
        }
    }

    /// Subscribed again after a reconnect: ask again from what was received, or send
    /// the first request again if no answer had come.
    pub(super) fn resume_after_reconnect(&mut self, now: Instant, handle: Handle) {
        let ack = self.config.ack_timeout();
        let unit = self.config.skip_unit();
        let extensions = self.config.extensions();
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        match r.peer {
            Peer::Extended { .. } => {
                let from = r.received_through();
                self.ask_again(now, handle, from);
            }
            Peer::V1 => {}
            // No answer yet, to a request that announced the extension: ask again with
            // a new `seq`, and give the producer a whole acknowledgement timeout.
            Peer::Unknown if r.extended => {
                if let Phase::AwaitingAck { deadline } = &mut r.phase {
                    *deadline = now + ack;
                    let at = *deadline;
                    self.arm(handle, Timer::Ack, at);
                }
                self.ask_again(now, handle, None);
            }
            // A v1 request with no answer yet: the original request is still exact.
            Peer::Unknown => {
                let op = Op::Publish {
                    channel: r.names.request_channel.clone(),
                    message: r.request(unit, extensions).encode(),
                };
                self.send(op, Pending::Write);
            }
        }
    }

    pub(super) fn on_ack_timeout(&mut self, handle: Handle) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        let cause = Error::AckTimeout {
            stream_id: r.stream_id.clone(),
            waited: self.config.ack_timeout(),
        };
        let channel = r.channel.clone();
        self.routes.remove(&channel);
        self.send(Op::Unsubscribe { channel }, Pending::Write);
        self.check_done(handle, cause);
    }

    pub(super) fn on_watchdog_due(&mut self, handle: Handle) {
        if let Some(State::Resumer(r)) = self.states.get_mut(&handle) {
            r.watchdog_at = None;
            let key = r.names.sentinel.clone();
            self.send(Op::Get { key }, Pending::Watchdog(handle));
        }
    }

    /// The done watchdog's reading: two readings of a finished (or vanished) stream in
    /// a row end the resumer, giving in-flight messages a whole interval to arrive; a
    /// resumer of an extended producer asks again instead of ending (below).
    pub(super) fn on_watchdog(
        &mut self,
        now: Instant,
        handle: Handle,
        reply: Result<Reply, ReplyError>,
    ) {
        let interval = self.config.done_watchdog_interval();
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        let finished = match &reply {
            Ok(Reply::Data(value)) if value == DONE_VALUE => Some(true),
            Ok(Reply::Nil) => Some(false),
            // A failed reading proves nothing either way.
            Err(_) => None,
            Ok(_) => {
                r.done_readings = 0;
                None
            }
        };
        if let Some(done) = finished {
            r.done_readings += 1;
            if r.done_readings >= 2 && done && matches!(r.peer, Peer::Extended { .. }) {
                // An extended producer's end names its chunk count; without it this
                // resumer cannot know it has every chunk, so it does not end: it asks
                // again from what it has (a producer in its grace period, or still
                // answering after an unsettled end, sends the rest and the end), and if
                // nobody answers, the liveness bound fails it (`ProducerGone`).
                r.done_readings = 0;
                let at = now + interval;
                r.watchdog_at = Some(at);
                let asking = r.rewinding;
                let from = r.received_through();
                self.arm(handle, Timer::Watchdog, at);
                if !asking {
                    self.ask_again(now, handle, from);
                }
                return;
            }
            if r.done_readings >= 2 {
                log::debug!("resumable-stream: done watchdog ends {handle:?}: the end message never arrived");
                let stream_id = r.stream_id.clone();
                let event = if done {
                    Event::End { handle }
                } else {
                    Event::Failed {
                        handle,
                        error: Error::Vanished { stream_id },
                    }
                };
                return self.close_resumer(handle, event);
            }
        }
        let at = now + interval;
        r.watchdog_at = Some(at);
        self.arm(handle, Timer::Watchdog, at);
    }

    /// Nothing heard from an extended producer for three of its heartbeat intervals:
    /// it is gone (killed, or cut off from Redis).
    pub(super) fn on_liveness_due(&mut self, now: Instant, handle: Handle) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        r.liveness_at = None;
        let window = liveness_window(r.heartbeat);
        let heard = r.last_heard.unwrap_or(now);
        if now < heard + window {
            let at = heard + window;
            r.liveness_at = Some(at);
            return self.arm(handle, Timer::Liveness, at);
        }
        let error = Error::ProducerGone {
            stream_id: r.stream_id.clone(),
            silent_for: now - heard,
        };
        self.close_resumer(handle, Event::Failed { handle, error });
    }
}

/// How long a resumer waits for an extended producer that promised a heartbeat every
/// `heartbeat`: three intervals, so that one late or lost heartbeat is no failure.
fn liveness_window(heartbeat: Duration) -> Duration {
    heartbeat.max(Duration::from_millis(100)) * 3
}
