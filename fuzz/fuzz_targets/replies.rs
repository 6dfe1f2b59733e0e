//! One engine with requests of every kind outstanding (idempotent, create, resume by
//! skip and by chunk index, state, cancel), then an arbitrary sequence of inputs no
//! well-behaved Redis would send: replies to real, already answered and unknown command
//! ids, of every shape (nil, integers, bulk strings, OK, other, server and connection
//! errors, the texts the engine looks for), pub/sub messages on real and random channels
//! (raw bytes, the end message, v1 and extended requests, control messages for real
//! tokens with arbitrary JSON), deadlines, interrupted / restored / lost connections,
//! one subscription dropped by the server, and the application's own calls at any time. The configuration is arbitrary too
//! (units, timeouts, heartbeat, grace period, buffer cap, extensions on or off).
//!
//! Checked after every input:
//! - no panic, no hang;
//! - every handle's events follow the grammar of `Event`: one first event (`Started`,
//!   `Done`, `NotFound`, `State`, `Cancelled` or `Failed`), `Data` only after
//!   `Started`, `StopSource` only for a started producer and once, at most one final
//!   event and nothing after it; only issued handles get events;
//! - after `drop_reader`, a handle gets no `Data`, `End` or answer (a producer-to-be
//!   may still get `Started` as producer, or `Failed` while it is being set up, and a
//!   producer `StopSource`);
//! - a producer's local reader gets exactly the non-empty chunks pushed while attached,
//!   each with its chunk index, and ends only after `finish` (`End`), `fail`
//!   (`Failed(Source)`) or a cancel (`Failed(Cancelled)`);
//! - `push_chunk` and `finish` succeed exactly for a handle that got `Started` as
//!   producer and was not finished, failed or cancelled;
//! - command ids strictly increase; every `SET` has an expiry of at least 1 s;
//! - `Stats::unmatched_replies` counts exactly the replies whose id was not outstanding
//!   (every command is outstanding until its first reply);
//! - `poll_timeout` is never before the latest `now` fed, and after
//!   `handle_timeout(now)` it is `None` or later than `now`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use resumable_stream::wire::{Extension, ResumeRequest, CONTROL_MARK, DONE_MESSAGE};
use resumable_stream::{
    CommandId, Config, Engine, Error, Event, Handle, Op, Position, PubSubState, Role,
};
use resumable_stream_fuzz::ops::Unit;
use resumable_stream_fuzz::reply_ops::{Action, Channel, Input, Kind, Payload, RequestOp, Target};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Log {
    first: bool,
    started: Option<Role>,
    final_seen: bool,
    dropped: bool,
    /// `finish` or `fail` succeeded on it.
    finished_by_app: bool,
    /// The application called `fail` on it.
    failed_by_app: bool,
    /// `StopSource` arrived: it was cancelled.
    stopped: bool,
    /// Chunks pushed successfully.
    pushed: u64,
    /// Chunks the local reader must still receive, in order, with their chunk index.
    expected_local: Vec<(Bytes, u64)>,
}

struct Harness {
    engine: Engine,
    now: Instant,
    outstanding: BTreeSet<u64>,
    answered: Vec<u64>,
    last_id: Option<u64>,
    unmatched: u64,
    channels: Vec<Bytes>,
    listeners: Vec<String>,
    tokens: Vec<String>,
    logs: HashMap<Handle, Log>,
    next_handle: u64,
}

const STREAMS: [&str; 3] = ["a", "b", "c"];

impl Harness {
    fn request(&mut self, op: &RequestOp) {
        let id = STREAMS[usize::from(op.stream) % STREAMS.len()];
        let handle = match op.kind {
            Kind::Idempotent(skip) => self.engine.resumable_stream(id, skip.map(u64::from)),
            Kind::Create => self.engine.create_new_resumable_stream(id),
            Kind::Resume(skip) => self.engine.resume_existing_stream(id, skip.map(u64::from)),
            Kind::ResumeAtChunk(n) => self
                .engine
                .resume_existing_stream(id, Position::Chunk(u64::from(n))),
            Kind::State => self.engine.has_existing_stream(id),
            Kind::Cancel => self.engine.cancel(id),
        };
        assert!(handle.0 >= self.next_handle, "handles are never reused");
        self.next_handle = handle.0 + 1;
        self.logs.insert(handle, Log::default());
        self.drain();
    }

    fn handle_at(&self, n: u8) -> Option<Handle> {
        if self.next_handle == 0 {
            return None;
        }
        Some(Handle(u64::from(n) % self.next_handle))
    }

    /// Drains every output and checks it.
    fn drain(&mut self) {
        while let Some(command) = self.engine.poll_command() {
            if let Some(last) = self.last_id {
                assert!(command.id.0 > last, "command ids strictly increase");
            }
            self.last_id = Some(command.id.0);
            self.outstanding.insert(command.id.0);
            let channel = match &command.op {
                Op::Set { expire_seconds, .. } => {
                    assert!(*expire_seconds >= 1, "SET ... EX 0 is an error in Redis");
                    None
                }
                Op::Publish { channel, .. }
                | Op::Subscribe { channel }
                | Op::Unsubscribe { channel } => Some(channel.clone()),
                _ => None,
            };
            if let Op::Publish { message, .. } = &command.op {
                if let Ok(request) = ResumeRequest::decode(message) {
                    if let Some(ext) = request.ext {
                        if self.tokens.len() < 64 {
                            self.tokens.push(ext.token);
                        }
                    }
                }
            }
            if let Some(channel) = channel {
                if let Some(pos) = channel.windows(6).position(|w| w == b":chunk") {
                    if let Some(Ok(id)) = channel.get(pos + 7..).map(std::str::from_utf8) {
                        if self.listeners.len() < 64 && !self.listeners.iter().any(|l| l == id) {
                            self.listeners.push(id.to_owned());
                        }
                    }
                }
                if self.channels.len() < 64 && !self.channels.contains(&channel) {
                    self.channels.push(channel);
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            let handle = event.handle();
            assert!(
                handle.0 < self.next_handle,
                "event for a handle never issued: {event:?}"
            );
            let log = self.logs.entry(handle).or_default();
            assert!(!log.final_seen, "event after the final one: {event:?}");
            if log.dropped {
                let allowed = match &event {
                    Event::Started {
                        role: Role::Producer,
                        ..
                    } => log.started.is_none(),
                    Event::Failed { .. } => log.started.is_none(),
                    Event::StopSource { .. } => log.started == Some(Role::Producer),
                    _ => false,
                };
                assert!(allowed, "event after drop_reader: {event:?}");
            }
            match &event {
                Event::Started { role, .. } => {
                    assert!(!log.first, "Started is a first event: {event:?}");
                    log.started = Some(*role);
                }
                Event::Data { data, chunk, .. } => {
                    assert!(log.started.is_some(), "Data before Started: {event:?}");
                    assert!(!data.is_empty(), "empty Data");
                    if log.started == Some(Role::Producer) {
                        assert!(!log.expected_local.is_empty(), "unexpected local Data");
                        let (expected, index) = log.expected_local.remove(0);
                        assert_eq!(data, &expected, "the local reader gets each chunk");
                        assert_eq!(*chunk, Some(index), "the local reader's chunk index");
                    }
                }
                Event::StopSource { .. } => {
                    assert_eq!(
                        log.started,
                        Some(Role::Producer),
                        "StopSource for a non-producer"
                    );
                    assert!(!log.stopped, "StopSource twice");
                    assert!(!log.finished_by_app, "StopSource after the source ended");
                    log.stopped = true;
                }
                Event::End { .. } => {
                    assert!(log.started.is_some(), "End before Started");
                    if log.started == Some(Role::Producer) {
                        assert!(
                            log.finished_by_app && !log.failed_by_app && !log.stopped,
                            "a producer ends only when finished"
                        );
                    }
                }
                Event::Done { .. }
                | Event::NotFound { .. }
                | Event::State { .. }
                | Event::Cancelled { .. } => {
                    assert!(!log.first, "an answer is a first event: {event:?}");
                }
                Event::Failed { .. } => {}
                other => panic!("an event this target does not know: {other:?}"),
            }
            if log.started == Some(Role::Producer) {
                if let Event::Failed { error, .. } = &event {
                    let by_app = log.failed_by_app && matches!(error, Error::Source(_));
                    let cancelled = log.stopped && matches!(error, Error::Cancelled);
                    assert!(
                        by_app || cancelled,
                        "a live producer fails only through fail() or a cancel: {event:?}"
                    );
                }
            }
            log.first = true;
            if event.is_final() {
                log.final_seen = true;
            }
        }
        if let Some(deadline) = self.engine.poll_timeout() {
            assert!(deadline >= self.now, "a deadline before the latest now");
        }
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Reply(target, reply) => {
                let id = match target {
                    Target::Outstanding(n) => {
                        let len = self.outstanding.len();
                        if len == 0 {
                            return;
                        }
                        *self.outstanding.iter().nth(usize::from(*n) % len).unwrap()
                    }
                    Target::Answered(n) => {
                        if self.answered.is_empty() {
                            return;
                        }
                        self.answered[usize::from(*n) % self.answered.len()]
                    }
                    Target::Any(id) => *id,
                };
                if self.outstanding.remove(&id) {
                    if self.answered.len() < 256 {
                        self.answered.push(id);
                    }
                } else {
                    self.unmatched += 1;
                }
                self.engine
                    .handle_reply(self.now, CommandId(id), reply.get());
                assert_eq!(self.engine.stats().unmatched_replies, self.unmatched);
            }
            Action::Message(channel, payload) => {
                let channel = match channel {
                    Channel::Known(n) if !self.channels.is_empty() => {
                        self.channels[usize::from(*n) % self.channels.len()].clone()
                    }
                    Channel::Known(_) => return,
                    Channel::Raw(raw) => Bytes::from(raw.clone()),
                };
                let message = match payload {
                    Payload::Raw(raw) => Bytes::from(raw.clone()),
                    Payload::End => Bytes::from_static(DONE_MESSAGE),
                    Payload::Empty => Bytes::new(),
                    Payload::Control { token, body } => {
                        let token = match token {
                            Some(n) if !self.tokens.is_empty() => {
                                self.tokens[usize::from(*n) % self.tokens.len()].clone()
                            }
                            _ => "00".to_owned(),
                        };
                        let mut message = CONTROL_MARK.to_vec();
                        message.extend_from_slice(token.as_bytes());
                        message.push(b':');
                        message.extend_from_slice(body);
                        Bytes::from(message)
                    }
                    Payload::Request {
                        listener,
                        raw_listener,
                        skip,
                        unit,
                        ext,
                    } => {
                        let listener_id = match listener {
                            Some(n) if !self.listeners.is_empty() => {
                                self.listeners[usize::from(*n) % self.listeners.len()].clone()
                            }
                            _ => raw_listener.clone(),
                        };
                        ResumeRequest {
                            listener_id,
                            skip: *skip,
                            unit: unit.map(Unit::get),
                            ext: ext.map(|(token, from_chunk, cancel, seq)| Extension {
                                token: format!("{token:x}"),
                                from_chunk,
                                cancel,
                                seq,
                            }),
                        }
                        .encode()
                    }
                };
                self.engine.handle_message(self.now, &channel, message);
            }
            Action::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(*ms));
                self.engine.handle_timeout(self.now);
                self.drain();
                if let Some(deadline) = self.engine.poll_timeout() {
                    assert!(deadline > self.now, "handle_timeout left a due deadline");
                }
            }
            Action::Request(op) => self.request(op),
            Action::Push(n, chunk) => {
                let Some(handle) = self.handle_at(*n) else {
                    return;
                };
                let chunk = Bytes::from(chunk.clone());
                let result = self.engine.push_chunk(handle, chunk.clone());
                let log = self.logs.entry(handle).or_default();
                let live = log.started == Some(Role::Producer)
                    && !log.finished_by_app
                    && !log.stopped
                    && !log.final_seen;
                assert_eq!(result.is_ok(), live, "push_chunk on {handle:?}: {result:?}");
                if result.is_ok() {
                    log.pushed += 1;
                    if !log.dropped && !chunk.is_empty() {
                        log.expected_local.push((chunk, log.pushed));
                    }
                }
            }
            Action::Finish(n) | Action::Fail(n) => {
                let Some(handle) = self.handle_at(*n) else {
                    return;
                };
                let result = if matches!(action, Action::Finish(_)) {
                    self.engine.finish(handle)
                } else {
                    self.engine.fail(handle, "source failed")
                };
                let log = self.logs.entry(handle).or_default();
                let live = log.started == Some(Role::Producer)
                    && !log.finished_by_app
                    && !log.stopped
                    && !log.final_seen;
                assert_eq!(result.is_ok(), live, "finish on {handle:?}: {result:?}");
                if result.is_ok() {
                    log.finished_by_app = true;
                    log.failed_by_app = matches!(action, Action::Fail(_));
                }
            }
            Action::Drop(n) => {
                let Some(handle) = self.handle_at(*n) else {
                    return;
                };
                self.engine.drop_reader(handle);
                let log = self.logs.entry(handle).or_default();
                log.dropped = true;
                log.expected_local.clear();
            }
            // `false` named the command connection, which the engine never cared
            // about: since handle_pubsub_state it means one subscription that the
            // server dropped (the channel named last), and Lost/Restored do nothing.
            Action::Interrupted(true) => {
                self.engine
                    .handle_pubsub_state(self.now, PubSubState::Interrupted);
            }
            Action::Interrupted(false) => {
                if let Some(channel) = self.channels.last().cloned() {
                    self.engine.handle_subscription_dropped(self.now, &channel);
                }
            }
            Action::Restored(true) => {
                self.engine
                    .handle_pubsub_state(self.now, PubSubState::Restored);
            }
            Action::Lost(true) => self.engine.handle_pubsub_state(self.now, PubSubState::Lost),
            Action::Restored(false) | Action::Lost(false) => {}
        }
        self.drain();
        // The local reader's chunks are delivered synchronously.
        for (handle, log) in &self.logs {
            assert!(
                log.expected_local.is_empty(),
                "{handle:?}: local chunks not delivered: {:?}",
                log.expected_local
            );
        }
    }
}

fuzz_target!(|input: Input| {
    let ms = |n: u16| Duration::from_millis(u64::from(n.max(1)));
    let mut config = Config::default()
        .with_skip_unit(input.unit.get())
        .with_ack_timeout(ms(input.ack_ms))
        .with_done_watchdog_interval(ms(input.watchdog_ms))
        // Zero included: the engine must not spin on it.
        .with_heartbeat_interval(Duration::from_millis(u64::from(input.heartbeat_ms)))
        .with_grace_period(Duration::from_millis(u64::from(input.grace_ms)))
        .with_extensions(input.extensions);
    if let Some(cap) = input.max_buffer {
        config = config.with_max_buffer_bytes(usize::from(cap));
    }
    let mut h = Harness {
        engine: Engine::new(config),
        now: Instant::now(),
        outstanding: BTreeSet::new(),
        answered: Vec::new(),
        last_id: None,
        unmatched: 0,
        channels: Vec::new(),
        listeners: Vec::new(),
        tokens: Vec::new(),
        logs: HashMap::new(),
        next_handle: 0,
    };
    // A few requests of each kind outstanding before the first reply.
    for op in input.setup.iter().take(16) {
        h.request(op);
    }
    for action in input.actions.iter().take(512) {
        h.act(action);
    }
});
