//! The producer's side: buffering chunks, answering resume requests with a catch-up,
//! publishing every later chunk to every listener in order, and ending the stream.
//!
//! Toward v1 listeners the wire is exactly the deployed one. Toward listeners that
//! announced the extension protocol (docs/protocol-extensions.md) the producer adds
//! control messages: a hello before the catch-up, heartbeats while idle, and a typed
//! ending (error, cancelled) where v1 can only say "done".

use super::{Engine, Pending, Route, State, Timer};
use crate::error::Error;
use crate::event::{Event, Handle, Role};
use crate::io::{Op, Reply, ReplyError};
use crate::skip::{catch_up, count_units, settled_units, SkipUnit};
use crate::wire::{Control, Incoming, ResumeRequest, StreamNames, DONE_MESSAGE, DONE_VALUE};
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
    SourceFailed(String),
    Cancelled,
}

impl Ending {
    /// The control message extended listeners get instead of the end message, for a
    /// stream of `next` chunks.
    fn control(&self, next: u64) -> Control {
        match self {
            Ending::Clean => Control::End { next },
            Ending::SourceFailed(message) => Control::Error {
                kind: "source".to_owned(),
                message: message.clone(),
                next: Some(next),
            },
            Ending::Cancelled => Control::Cancelled { next: Some(next) },
        }
    }

    /// The local reader's last event.
    fn event(&self, handle: Handle) -> Event {
        match self {
            Ending::Clean => Event::End { handle },
            Ending::SourceFailed(message) => Event::Failed {
                handle,
                error: Error::Source(message.clone()),
            },
            Ending::Cancelled => Event::Failed {
                handle,
                error: Error::Cancelled,
            },
        }
    }
}

#[derive(Debug)]
struct Listener {
    /// Names this listener in `Pending::Deliver`, unique within its producer.
    serial: u64,
    channel: Bytes,
    /// The control-message token of a listener that speaks the extension protocol.
    token: Option<String>,
    /// A publish to this extended listener failed: it gets no more content, only the
    /// `lost` notice (again at every heartbeat tick, in case that one is lost too),
    /// until it asks again or leaves.
    lost: bool,
}

fn lost_notice(token: &str) -> Bytes {
    Control::Error {
        kind: "lost".to_owned(),
        message: "a message to this listener could not be published".to_owned(),
        next: None,
    }
    .encode(token)
}

/// What a bounded buffer dropped from its front, to keep skips exact.
///
/// Characters are counted over the joined stream, so a character split across two
/// chunks is one: the dropped bytes' last unfinished character (`carry`, at most 3
/// bytes) is kept and counted with the held chunks.
#[derive(Debug, Default, Clone)]
struct Dropped {
    chunks: u64,
    bytes: u64,
    /// UTF-16 units and code points of the dropped bytes before `carry`.
    utf16: u64,
    code_points: u64,
    carry: SmallVec<[u8; 4]>,
}

impl Dropped {
    /// Counts `chunk`, the oldest held chunk, as dropped.
    fn drop_chunk(&mut self, chunk: &[u8]) {
        self.chunks += 1;
        self.bytes += chunk.len() as u64;
        let joined: Vec<u8>;
        let bytes: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            joined = [&self.carry[..], chunk].concat();
            &joined
        };
        let (utf16, code_points, settled) = settled_units(bytes);
        self.utf16 += utf16;
        self.code_points += code_points;
        self.carry = SmallVec::from_slice(&bytes[settled..]);
    }

    fn units(&self, unit: SkipUnit) -> u64 {
        match unit {
            SkipUnit::Utf16 => self.utf16,
            SkipUnit::CodePoint => self.code_points,
            SkipUnit::Byte => self.bytes,
        }
    }
}

#[derive(Debug)]
pub(super) struct Producer {
    pub(super) stream_id: String,
    pub(super) names: StreamNames,
    phase: Phase,
    /// The chunks still held, shared with local delivery and every PUBLISH.
    buffer: VecDeque<Bytes>,
    buffered: usize,
    dropped: Dropped,
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
    /// An extended listener's publish failed or reached nobody: it may be
    /// reconnecting, so after the end the producer keeps answering requests for a
    /// liveness window, long enough for it to ask again.
    unsettled: bool,
}

impl Producer {
    pub(super) fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Heartbeat => self.heartbeat_at,
            Timer::Grace => self.grace_until,
            _ => None,
        }
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    pub(super) fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    pub(super) fn detach_reader(&mut self) {
        self.reader_attached = false;
    }

    /// This engine's pub/sub connection dropped: the producer may have missed requests
    /// of listeners that were reconnecting too, so after its end it keeps answering
    /// them for a while, as after a failed publish.
    pub(super) fn on_pubsub_interrupted(&mut self) {
        if self.listeners.iter().any(|l| l.token.is_some()) {
            self.unsettled = true;
        }
    }

    pub(super) fn reader_attached(&self) -> bool {
        self.reader_attached
    }

    /// Whether the application was told it produces (after which it owns the source).
    pub(super) fn started(&self) -> bool {
        matches!(self.phase, Phase::Live | Phase::Finished)
    }

    fn chunk_count(&self) -> u64 {
        self.dropped.chunks + self.buffer.len() as u64
    }

    /// The catch-up for `request`, or `None` when it needs data no longer held.
    fn catch_up_for(&mut self, request: &ResumeRequest, default_unit: SkipUnit) -> Option<Bytes> {
        if let Some(from) = request.ext.as_ref().and_then(|ext| ext.from_chunk) {
            let first = from.checked_sub(self.dropped.chunks)?;
            let held: Vec<Bytes> = self
                .buffer
                .iter()
                .skip(first.min(usize::MAX as u64) as usize)
                .cloned()
                .collect();
            return Some(join(&held));
        }
        let unit = request.unit.unwrap_or(default_unit);
        let skip = request.skip.unwrap_or(0);
        let held = self.buffer.make_contiguous();
        if self.dropped.chunks == 0 {
            return Some(catch_up(held, skip, unit));
        }
        let dropped = self.dropped.units(unit);
        // Characters are cut in the joined stream: the dropped bytes' unfinished last
        // character goes before the held chunks (bytes need no such care).
        let with_carry: Vec<Bytes>;
        let held: &[Bytes] = if unit == SkipUnit::Byte || self.dropped.carry.is_empty() {
            held
        } else {
            with_carry = std::iter::once(Bytes::copy_from_slice(&self.dropped.carry))
                .chain(held.iter().cloned())
                .collect();
            &with_carry
        };
        if skip < 0 {
            // From the end: fine while it stays within what is held. Past the start it
            // is the whole stream, held only when what was dropped held no unit (empty
            // chunks, or the start of a character kept with the held ones).
            let available = count_units(held, unit);
            if skip.unsigned_abs() <= available {
                return Some(catch_up(held, skip, unit));
            }
            return (dropped == 0).then(|| catch_up(held, 0, unit));
        }
        let skip = (skip as u64).checked_sub(dropped)?;
        Some(catch_up(held, skip.min(i64::MAX as u64) as i64, unit))
    }
}

fn join(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut out = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
            for chunk in many {
                out.extend_from_slice(chunk);
            }
            out.freeze()
        }
    }
}

impl Engine {
    pub(super) fn become_producer(&mut self, handle: Handle) {
        let Some(State::Starting(s)) = self.states.remove(&handle) else {
            return;
        };
        let channel = s.names.request_channel.clone();
        if self.routes.contains_key(&channel) {
            // Another producer of this engine owns the request channel: a second one
            // would answer every request twice.
            let stream_id = s.stream_id.clone();
            self.states.insert(handle, State::Starting(s));
            return self.fail_handle(handle, Error::AlreadyProducing { stream_id });
        }
        self.routes.insert(channel.clone(), Route::Producer(handle));
        self.states.insert(
            handle,
            State::Producer(Box::new(Producer {
                stream_id: s.stream_id,
                names: s.names,
                phase: Phase::Subscribing,
                buffer: VecDeque::new(),
                buffered: 0,
                dropped: Dropped::default(),
                listeners: SmallVec::new(),
                next_serial: 0,
                reader_attached: s.reader_attached,
                end: None,
                ending: None,
                heartbeat_at: None,
                quiet: true,
                grace_until: None,
                unsettled: false,
            })),
        );
        self.send(Op::Subscribe { channel }, Pending::Subscribe(handle));
    }

    /// Subscribed to requests: now the sentinel may say "active".
    pub(super) fn on_producer_subscribed(&mut self, handle: Handle) {
        let ttl = self.config.sentinel_ttl_seconds();
        let Some(State::Producer(p)) = self.states.get_mut(&handle) else {
            return;
        };
        if p.phase != Phase::Subscribing {
            return;
        }
        p.phase = Phase::Marking;
        let op = Op::Set {
            key: p.names.sentinel.clone(),
            value: Bytes::from_static(b"1"),
            expire_seconds: ttl,
        };
        self.send(op, Pending::MarkActive(handle));
    }

    pub(super) fn on_marked_active(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        match reply {
            Ok(Reply::Ok) => {
                if let Some(State::Producer(p)) = self.states.get_mut(&handle) {
                    if p.phase == Phase::Marking {
                        p.phase = Phase::Live;
                        self.emit(Event::Started {
                            handle,
                            role: Role::Producer,
                        });
                    }
                }
            }
            Ok(other) => self.abandon_production(handle, super::unexpected("SET", &other)),
            Err(error) => self.abandon_production(handle, super::redis_error("SET", error)),
        }
    }

    /// A producer could not start: leave the request channel and fail.
    pub(super) fn abandon_production(&mut self, handle: Handle, error: Error) {
        if let Some(State::Producer(p)) = self.states.get(&handle) {
            let channel = p.names.request_channel.clone();
            self.send(Op::Unsubscribe { channel }, Pending::Write);
        }
        self.fail_handle(handle, error);
    }

    pub(super) fn produce_chunk(&mut self, handle: Handle, chunk: Bytes) -> Result<(), Error> {
        let Some(State::Producer(producer)) = self.states.get_mut(&handle) else {
            return Err(Error::NotProducing);
        };
        if producer.phase != Phase::Live {
            return Err(Error::NotProducing);
        }
        let index = producer.chunk_count();
        for listener in producer.listeners.iter().filter(|l| !l.lost) {
            let id = crate::io::CommandId(self.next_command);
            self.next_command += 1;
            self.pending.insert(
                id,
                Pending::Deliver {
                    producer: handle,
                    listener: listener.serial,
                },
            );
            self.commands.push_back(crate::io::Command {
                id,
                op: Op::Publish {
                    channel: listener.channel.clone(),
                    // An extended listener gets each chunk with its index, so that it
                    // can tell a lost or repeated message from the next one.
                    message: match &listener.token {
                        Some(token) => Incoming::encode_chunk(token, index, &chunk),
                        None => chunk.clone(),
                    },
                },
            });
            if listener.token.is_some() {
                producer.quiet = false;
            }
        }
        producer.buffered += chunk.len();
        producer.buffer.push_back(chunk.clone());
        if producer.reader_attached && !chunk.is_empty() {
            self.events.push_back(Event::Data {
                handle,
                data: chunk,
                chunk: Some(producer.chunk_count()),
            });
        }
        if let Some(limit) = self.config.max_buffer_bytes() {
            // Keep the newest chunk whatever its size: a catch-up must end where live
            // delivery begins.
            while producer.buffered > limit && producer.buffer.len() > 1 {
                let Some(oldest) = producer.buffer.pop_front() else {
                    break;
                };
                producer.buffered -= oldest.len();
                producer.dropped.drop_chunk(&oldest);
            }
        }
        Ok(())
    }

    pub(super) fn end_production(&mut self, handle: Handle, ending: Ending) -> Result<(), Error> {
        let ttl = self.config.sentinel_ttl_seconds();
        let Some(State::Producer(producer)) = self.states.get_mut(&handle) else {
            return Err(Error::NotProducing);
        };
        if producer.phase != Phase::Live {
            return Err(Error::NotProducing);
        }
        producer.phase = Phase::Finished;
        producer.end = Some(ending.event(handle));
        producer.ending = Some(ending.clone());
        producer.heartbeat_at = None;
        let sentinel = producer.names.sentinel.clone();
        let next = producer.chunk_count();
        let listeners = std::mem::take(&mut producer.listeners);
        if ending == Ending::Cancelled {
            // The source must stop now, not at its next chunk.
            self.emit(Event::StopSource { handle });
        }
        self.send(
            Op::Set {
                key: sentinel,
                value: Bytes::from_static(DONE_VALUE),
                expire_seconds: ttl,
            },
            Pending::MarkedDone(handle),
        );
        for listener in listeners {
            let message = final_message(&ending, next, listener.token.as_deref());
            self.send(
                Op::Publish {
                    channel: listener.channel,
                    message,
                },
                Pending::Write,
            );
        }
        Ok(())
    }

    /// The stream is marked done: the local reader ends, and after the grace period
    /// the producer stops answering requests.
    pub(super) fn on_marked_done(
        &mut self,
        now: Instant,
        handle: Handle,
        reply: Result<Reply, ReplyError>,
    ) {
        if let Err(error) = reply {
            self.stats.failed_writes += 1;
            log::warn!("resumable-stream: marking a stream done failed: {error}");
        }
        let configured = self.config.grace_period();
        let window = self.config.heartbeat_interval() * 3;
        let Some(State::Producer(p)) = self.states.get_mut(&handle) else {
            return;
        };
        let grace = if p.unsettled {
            configured.max(window)
        } else {
            configured
        };
        let end = p.end.take();
        if std::mem::take(&mut p.reader_attached) {
            if let Some(end) = end {
                self.events.push_back(end);
            }
        }
        if grace.is_zero() {
            let channel = p.names.request_channel.clone();
            self.send(Op::Unsubscribe { channel }, Pending::RetireProducer(handle));
        } else {
            let at = now + grace;
            p.grace_until = Some(at);
            self.arm(handle, Timer::Grace, at);
        }
    }

    pub(super) fn on_grace_over(&mut self, handle: Handle) {
        if let Some(State::Producer(p)) = self.states.get_mut(&handle) {
            p.grace_until = None;
            let channel = p.names.request_channel.clone();
            self.send(Op::Unsubscribe { channel }, Pending::RetireProducer(handle));
        }
    }

    pub(super) fn on_retired(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        if let Err(error) = reply {
            log::warn!("resumable-stream: unsubscribing a finished stream failed: {error}");
        }
        if let Some(State::Producer(p)) = self.states.remove(&handle) {
            self.routes.remove(&p.names.request_channel);
        }
    }

    /// A PUBLISH to one listener was answered. A count of 0 means nobody subscribes to
    /// its channel any more: the listener left (its subscription always precedes its
    /// request), so the producer stops publishing to it.
    pub(super) fn on_delivered(
        &mut self,
        handle: Handle,
        serial: u64,
        reply: Result<Reply, ReplyError>,
    ) {
        let Some(State::Producer(p)) = self.states.get_mut(&handle) else {
            return;
        };
        let Some(index) = p.listeners.iter().position(|l| l.serial == serial) else {
            // To a listener already sent its end: if this reached nobody or failed, it
            // may be reconnecting and ask again for what it missed, so keep answering
            // for a while after the end (for a v1 listener that left, the request
            // channel is only kept a little longer).
            match reply {
                Err(_) => {
                    self.stats.failed_writes += 1;
                    p.unsettled = true;
                }
                Ok(Reply::Integer(0)) => p.unsettled = true,
                Ok(_) => {}
            }
            return;
        };
        match reply {
            Ok(Reply::Integer(0)) => {
                let listener = p.listeners.remove(index);
                p.unsettled |= listener.token.is_some();
                self.stats.departed_listeners += 1;
            }
            Ok(_) => {}
            Err(error) => {
                self.stats.failed_writes += 1;
                log::warn!("resumable-stream: a chunk was not published: {error}");
                // An extended listener is told, and asks again from what it has; a v1
                // listener cannot be told anything, so it keeps getting what follows.
                p.unsettled |= p.listeners[index].token.is_some();
                let listener = &mut p.listeners[index];
                if let (Some(token), false) = (&listener.token, listener.lost) {
                    listener.lost = true;
                    let message = lost_notice(token);
                    let channel = listener.channel.clone();
                    self.send(
                        Op::Publish { channel, message },
                        Pending::Deliver {
                            producer: handle,
                            listener: serial,
                        },
                    );
                }
            }
        }
    }

    /// A message on the request channel: a resume request (or a cancel).
    pub(super) fn on_request(&mut self, now: Instant, handle: Handle, message: &[u8]) {
        let request = match ResumeRequest::decode(message) {
            Ok(request) => request,
            Err(error) => {
                self.stats.malformed_requests += 1;
                log::debug!("resumable-stream: dropped a resume request: {error}");
                return;
            }
        };
        let channel = self.names.chunk_channel(&request.listener_id);
        if request.ext.as_ref().is_some_and(|ext| ext.cancel) {
            return self.on_cancel_request(handle, channel, &request);
        }
        let default_unit = self.config.skip_unit();
        let heartbeat = self.config.heartbeat_interval();
        let Some(State::Producer(producer)) = self.states.get_mut(&handle) else {
            return;
        };
        if let Some(index) = producer.listeners.iter().position(|l| l.channel == channel) {
            if request.ext.is_none() {
                self.stats.duplicate_listeners += 1;
                return;
            }
            // An extended listener asking again (after a lost message or a reconnect):
            // it is served afresh from the position it names.
            producer.listeners.remove(index);
        }
        let token = request.ext.as_ref().map(|ext| ext.token.clone());
        let Some(catch_up) = producer.catch_up_for(&request, default_unit) else {
            // The data asked for is no longer held: never send wrong data. An extended
            // listener is told; a v1 listener gets no acknowledgement and fails with
            // its own ack timeout.
            if let Some(token) = token {
                let control = Control::Error {
                    kind: "truncated".to_owned(),
                    message: "the data asked for is no longer buffered".to_owned(),
                    next: None,
                };
                self.send(
                    Op::Publish {
                        channel,
                        message: control.encode(&token),
                    },
                    Pending::Write,
                );
            }
            return;
        };
        let next = producer.chunk_count();
        let ending = producer.ending.clone();
        let serial = producer.next_serial;
        producer.next_serial += 1;
        let mut messages: SmallVec<[Bytes; 2]> = SmallVec::new();
        // The catch-up is the acknowledgement: sent even when empty. An extended
        // listener gets it in one message with the hello, so neither arrives alone.
        messages.push(match &token {
            Some(token) => Incoming::encode_answer(
                token,
                next,
                heartbeat.as_millis().min(u128::from(u64::MAX)) as u64,
                request.ext.as_ref().map_or(0, |ext| ext.seq),
                &catch_up,
            ),
            None => catch_up,
        });
        match &ending {
            Some(ending) => messages.push(final_message(ending, next, token.as_deref())),
            None => {
                let extended = token.is_some();
                producer.listeners.push(Listener {
                    serial,
                    channel: channel.clone(),
                    token,
                    lost: false,
                });
                if extended && producer.heartbeat_at.is_none() {
                    let at = now + heartbeat;
                    producer.heartbeat_at = Some(at);
                    self.arm(handle, Timer::Heartbeat, at);
                }
            }
        }
        for message in messages {
            self.send(
                Op::Publish {
                    channel: channel.clone(),
                    message,
                },
                Pending::Deliver {
                    producer: handle,
                    listener: serial,
                },
            );
        }
    }

    fn on_cancel_request(&mut self, handle: Handle, channel: Bytes, request: &ResumeRequest) {
        let token = request
            .ext
            .as_ref()
            .map(|ext| ext.token.clone())
            .unwrap_or_default();
        let Some(State::Producer(producer)) = self.states.get(&handle) else {
            return;
        };
        let answer = match producer.phase {
            // Already over: the canceller learns it finished.
            Phase::Finished => Bytes::from_static(DONE_MESSAGE),
            Phase::Live => Control::Cancelled { next: None }.encode(&token),
            // Still starting: nothing to stop yet. No answer, so the canceller fails
            // with its ack timeout rather than being told a lie.
            Phase::Subscribing | Phase::Marking => return,
        };
        let live = producer.phase == Phase::Live;
        self.send(
            Op::Publish {
                channel,
                message: answer,
            },
            Pending::Write,
        );
        if live {
            let _ = self.end_production(handle, Ending::Cancelled);
        }
    }

    /// Every heartbeat interval while extended listeners are attached: if nothing was
    /// published to them since the last tick, say "alive". No listener, no traffic.
    pub(super) fn on_heartbeat_due(&mut self, now: Instant, handle: Handle) {
        let interval = self.config.heartbeat_interval();
        let Some(State::Producer(p)) = self.states.get_mut(&handle) else {
            return;
        };
        p.heartbeat_at = None;
        if p.phase != Phase::Live || !p.listeners.iter().any(|l| l.token.is_some()) {
            return;
        }
        let messages: Vec<(u64, Bytes, Bytes)> = if std::mem::replace(&mut p.quiet, true) {
            p.listeners
                .iter()
                .filter_map(|l| {
                    l.token
                        .as_ref()
                        .map(|t| (l.serial, l.channel.clone(), Control::Heartbeat.encode(t)))
                })
                .collect()
        } else {
            Vec::new()
        };
        let at = now + interval;
        p.heartbeat_at = Some(at);
        self.arm(handle, Timer::Heartbeat, at);
        for (serial, channel, message) in messages {
            self.send(
                Op::Publish { channel, message },
                Pending::Deliver {
                    producer: handle,
                    listener: serial,
                },
            );
        }
    }
}

/// The last message to a listener: the v1 end message, or a typed ending for an
/// extended one.
fn final_message(ending: &Ending, next: u64, token: Option<&str>) -> Bytes {
    match token {
        Some(token) => ending.control(next).encode(token),
        None => Bytes::from_static(DONE_MESSAGE),
    }
}
