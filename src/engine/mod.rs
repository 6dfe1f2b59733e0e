//! The protocol engine: a `&mut self` state machine that turns application requests,
//! Redis replies, pub/sub messages and deadlines into Redis commands and application
//! events.
//!
//! Methods fall into four groups:
//! - application requests: [`resumable_stream`](Engine::resumable_stream),
//!   [`create_new_resumable_stream`](Engine::create_new_resumable_stream),
//!   [`resume_existing_stream`](Engine::resume_existing_stream),
//!   [`has_existing_stream`](Engine::has_existing_stream), [`cancel`](Engine::cancel),
//!   and for producers [`push_chunk`](Engine::push_chunk), [`finish`](Engine::finish),
//!   [`fail`](Engine::fail), and for readers [`drop_reader`](Engine::drop_reader);
//! - inputs from the driver: [`handle_reply`](Engine::handle_reply),
//!   [`handle_message`](Engine::handle_message), [`handle_timeout`](Engine::handle_timeout),
//!   [`handle_connection_lost`](Engine::handle_connection_lost);
//! - outputs: [`poll_command`](Engine::poll_command), [`poll_event`](Engine::poll_event),
//!   [`poll_timeout`](Engine::poll_timeout);
//! - getters: [`stats`](Engine::stats), [`config`](Engine::config).
//!
//! The drain rule: after any call of the first two groups, call `poll_command` and
//! `poll_event` until both return `None`, then sleep until `poll_timeout`.
//!
//! The producer's side lives in `producer.rs`, the resumer's in `resumer.rs`; this
//! file holds what they share and the requests that decide a caller's role.

mod producer;
mod resumer;

use crate::config::Config;
use crate::error::Error;
use crate::event::{Event, Handle, StreamState};
use crate::io::{Command, CommandId, Connection, Op, Reply, ReplyError};
use crate::wire::{ListenerIds, Names, Sentinel, StreamNames, DONE_VALUE, NOT_AN_INTEGER};
use bytes::Bytes;
use producer::Producer;
use resumer::Resumer;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

/// Counters of what the engine dropped or ignored, for monitoring.
///
/// None of these is an error for any stream: each counts an input that could not
/// belong to a live stream and was dropped without disturbing one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// Where a reader starts.
///
/// ```
/// use resumable_stream::Position;
///
/// // v1's `skipCharacters`, as the deployed libraries take it.
/// assert_eq!(Position::from_skip(None), Position::Start);
/// assert_eq!(Position::from_skip(Some(12)), Position::Units(12));
/// // An SSE `Last-Event-ID` header holding a reader's chunk position.
/// let last_event_id = "7";
/// let position = last_event_id.parse().map(Position::Chunk);
/// assert_eq!(position, Ok(Position::Chunk(7)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// From the beginning (the v1 request carries no `skipCharacters`).
    Start,
    /// After this many units (UTF-16 by default) of what was produced: v1's
    /// `skipCharacters`.
    Units(u64),
    /// From this chunk index (0 is the first chunk): for SSE `Last-Event-ID`. Needs a
    /// producer of ours (extension `fromChunk`); a v1 producer is refused with
    /// [`Error::Unsupported`].
    Chunk(u64),
}

impl Position {
    /// v1's optional skip: `None` is [`Position::Start`].
    pub fn from_skip(skip: Option<u64>) -> Position {
        skip.map_or(Position::Start, Position::Units)
    }
}

/// v1's optional skip, as the deployed libraries take it: `None` is the start,
/// `Some(n)` skips `n` units. So a driver's `position` argument takes `None`,
/// `Some(12)` or a [`Position`].
///
/// ```
/// use resumable_stream::Position;
/// assert_eq!(Position::from(Some(12)), Position::Units(12));
/// assert_eq!(Position::from(None), Position::Start);
/// ```
impl From<Option<u64>> for Position {
    fn from(skip: Option<u64>) -> Position {
        Position::from_skip(skip)
    }
}

/// What a pending command's reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The idempotent path's `INCR`.
    Incr(Handle),
    /// A producer's `SET "1" EX ttl`, after its subscription: the stream starts once
    /// the sentinel is written.
    MarkActive(Handle),
    /// A finished producer's `SET "DONE"`: its local reader ends once the stream is
    /// marked done, so that a reader that saw the end also sees the state "done".
    MarkedDone(Handle),
    /// The `UNSUBSCRIBE` that retires a finished producer.
    RetireProducer(Handle),
    /// A `PUBLISH` to listener `listener` of producer `producer`: a count of 0 means the
    /// listener left.
    Deliver { producer: Handle, listener: u64 },
    /// An explicit resume's or a cancel's `GET`.
    ResumeGet(Handle),
    /// A state query's `GET`.
    StateGet(Handle),
    /// The `GET` that tells "done" from a failure, after an INCR that was refused or an
    /// acknowledgement that never came.
    DoneCheck(Handle),
    /// A resumer's periodic `GET` of the sentinel (the done watchdog).
    Watchdog(Handle),
    /// The `SUBSCRIBE` of a producer's request channel or a resumer's chunk channel.
    Subscribe(Handle),
    /// A `SUBSCRIBE` sent again after the pub/sub connection came back.
    Resubscribe(Handle),
    /// A write whose reply only matters if it fails.
    Write,
}

/// What a request is for, until its role is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Read(Position),
    Cancel,
}

#[derive(Debug)]
struct Starting {
    stream_id: String,
    names: StreamNames,
    purpose: Purpose,
    /// False once the application dropped its reader before the stream started.
    reader_attached: bool,
}

#[derive(Debug)]
enum State {
    Starting(Starting),
    Producer(Box<Producer>),
    Resumer(Resumer),
    /// Waiting for the GET that decides between "done" and a failure.
    Checking {
        stream_id: String,
        cause: Error,
        /// The idempotent request that found the stream done: if the sentinel says
        /// "active" now (the stream was created again meanwhile), it resumes.
        retry: Option<Starting>,
    },
}

/// The deadlines a handle can have; each state keeps the instant of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
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
}

impl State {
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match (self, timer) {
            (State::Resumer(r), _) => r.deadline(timer),
            (State::Producer(p), _) => p.deadline(timer),
            _ => None,
        }
    }
}

/// Who receives the messages of a subscribed channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Producer(Handle),
    Resumer(Handle),
}

/// The sans-IO resumable-stream engine.
///
/// One engine serves any number of concurrent streams, produced or resumed, over one
/// command connection and one pub/sub connection. It never blocks, never reads a clock
/// and never panics on input from Redis or a peer.
///
/// # The drive loop
///
/// A driver feeds one input, then drains every output. This loop runs the engine
/// against the in-memory store of [`MemoryRedis`](crate::MemoryRedis); a real driver
/// does the same over sockets.
///
/// ```
/// use resumable_stream::{Config, Engine, Event, MemoryRedis, Role};
/// use std::time::Instant;
///
/// let mut engine = Engine::new(Config::default());
/// let mut redis = MemoryRedis::new();
/// let me = redis.connect();
/// let now = Instant::now();
///
/// let handle = engine.resumable_stream("chat-1", None);
/// let mut received = Vec::new();
/// let mut chunks = vec!["hello ", "world"].into_iter();
/// loop {
///     // Carry every command to "Redis" and its reply back.
///     while let Some(command) = engine.poll_command() {
///         let (reply, deliveries) = redis.execute(now, me, &command.op);
///         engine.handle_reply(now, command.id, reply);
///         for (_, channel, message) in deliveries {
///             engine.handle_message(now, &channel, message);
///         }
///     }
///     // Act on every event.
///     while let Some(event) = engine.poll_event() {
///         match event {
///             Event::Started { role: Role::Producer, .. } => {}
///             Event::Data { data, .. } => received.extend_from_slice(&data),
///             Event::End { .. } => {
///                 assert_eq!(received, b"hello world");
///                 return;
///             }
///             other => panic!("unexpected {other:?}"),
///         }
///     }
///     // This handle produces: feed the source.
///     match chunks.next() {
///         Some(chunk) => engine.push_chunk(handle, chunk.into()).unwrap(),
///         None => engine.finish(handle).unwrap(),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Engine {
    config: Config,
    names: Names,
    listener_ids: ListenerIds,
    next_command: u64,
    next_handle: u64,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    pending: crate::idmap::IdMap<CommandId, Pending>,
    states: crate::idmap::IdMap<Handle, State>,
    routes: HashMap<Bytes, Route>,
    deadlines: BinaryHeap<Reverse<(Instant, Handle, Timer)>>,
    stats: Stats,
}

impl Engine {
    /// A new engine with no streams.
    pub fn new(config: Config) -> Engine {
        Engine {
            names: Names::new(config.key_prefix()),
            listener_ids: ListenerIds::new(config.seed()),
            config,
            next_command: 0,
            next_handle: 0,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            pending: Default::default(),
            states: Default::default(),
            routes: HashMap::new(),
            deadlines: BinaryHeap::new(),
            stats: Stats::default(),
        }
    }

    // ----- getters -----

    /// The configuration this engine was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters of dropped and ignored inputs.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How many handles (requests, producers, readers) are alive.
    pub fn live_handles(&self) -> usize {
        self.states.len()
    }

    /// The size in bytes of the buffer of the stream `handle` produces, or `None` when
    /// it produces none.
    pub fn buffered_bytes(&self, handle: Handle) -> Option<usize> {
        match self.states.get(&handle) {
            Some(State::Producer(p)) => Some(p.buffered_bytes()),
            _ => None,
        }
    }

    /// How many listeners the stream `handle` produces is publishing to.
    pub fn listener_count(&self, handle: Handle) -> Option<usize> {
        match self.states.get(&handle) {
            Some(State::Producer(p)) => Some(p.listener_count()),
            _ => None,
        }
    }

    // ----- application requests -----

    /// Creates the stream `stream_id`, or resumes it if it exists (the deployed
    /// libraries' `resumableStream`).
    ///
    /// The answer arrives as an event for the returned handle: `Started` as producer
    /// (this caller must feed the source) or as resumer (skipping `skip` units of what
    /// was produced), `Done` if the stream already finished, or `Failed`.
    pub fn resumable_stream(&mut self, stream_id: &str, skip: Option<u64>) -> Handle {
        self.resumable_stream_at(stream_id, Position::from_skip(skip))
    }

    /// [`resumable_stream`](Self::resumable_stream), resuming at any [`Position`].
    pub fn resumable_stream_at(&mut self, stream_id: &str, position: Position) -> Handle {
        let handle = self.start(stream_id, Purpose::Read(position));
        if let Some(State::Starting(s)) = self.states.get(&handle) {
            let key = s.names.sentinel.clone();
            self.send(Op::Incr { key }, Pending::Incr(handle));
        }
        handle
    }

    /// Creates the stream `stream_id` unconditionally and makes this caller its
    /// producer: `SUBSCRIBE` to its request channel, then `SET sentinel "1" EX ttl`, as
    /// npm 2.2.13 does (subscribing first, so no request sent after the sentinel
    /// appears is lost). Answers `Started` as producer, or `Failed`.
    pub fn create_new_resumable_stream(&mut self, stream_id: &str) -> Handle {
        let handle = self.start(stream_id, Purpose::Read(Position::Start));
        self.become_producer(handle);
        handle
    }

    /// Resumes the existing stream `stream_id`, skipping `skip` units. Answers
    /// `Started` as resumer, `NotFound`, `Done`, or `Failed`.
    pub fn resume_existing_stream(&mut self, stream_id: &str, skip: Option<u64>) -> Handle {
        self.resume_existing_stream_at(stream_id, Position::from_skip(skip))
    }

    /// [`resume_existing_stream`](Self::resume_existing_stream) at any [`Position`].
    pub fn resume_existing_stream_at(&mut self, stream_id: &str, position: Position) -> Handle {
        let handle = self.start(stream_id, Purpose::Read(position));
        self.get_sentinel(handle, Pending::ResumeGet(handle));
        handle
    }

    /// Stops the stream `stream_id`, wherever its producer runs, if it is ours: the
    /// producer drops its source, its readers end with [`Error::Cancelled`] and the
    /// stream is marked done. Answers `Cancelled`, `Done` (it had finished),
    /// `NotFound`, or `Failed` ([`Error::Unsupported`] for a v1 producer, which cannot
    /// be stopped; [`Error::AckTimeout`] when nobody produces it).
    pub fn cancel(&mut self, stream_id: &str) -> Handle {
        let handle = self.start(stream_id, Purpose::Cancel);
        self.get_sentinel(handle, Pending::ResumeGet(handle));
        handle
    }

    /// Asks whether the stream `stream_id` exists. Answers `State`, or `Failed`.
    pub fn has_existing_stream(&mut self, stream_id: &str) -> Handle {
        let handle = self.start(stream_id, Purpose::Read(Position::Start));
        self.get_sentinel(handle, Pending::StateGet(handle));
        handle
    }

    /// Gives the next chunk of the source of the stream `handle` produces.
    ///
    /// The chunk goes to the local reader (unless it went away), into the buffer, and to
    /// every listener: all share it, but each listener of ours gets its own framed copy.
    ///
    /// # Errors
    /// [`Error::NotProducing`] unless `handle` received `Started` as producer and has
    /// not finished.
    pub fn push_chunk(&mut self, handle: Handle, chunk: Bytes) -> Result<(), Error> {
        self.produce_chunk(handle, chunk)
    }

    /// The source of the stream `handle` produces ended: marks the stream done, ends
    /// every listener and the local reader.
    ///
    /// # Errors
    /// [`Error::NotProducing`] as for [`push_chunk`](Self::push_chunk).
    pub fn finish(&mut self, handle: Handle) -> Result<(), Error> {
        self.end_production(handle, producer::Ending::Clean)
    }

    /// The source of the stream `handle` produces failed. The local reader and every
    /// listener of ours get [`Error::Source`] with `message`; v1 listeners get a clean
    /// end (v1 has no error signal); the sentinel says `DONE`.
    ///
    /// # Errors
    /// [`Error::NotProducing`] as for [`push_chunk`](Self::push_chunk).
    pub fn fail(&mut self, handle: Handle, message: impl Into<String>) -> Result<(), Error> {
        self.end_production(handle, producer::Ending::SourceFailed(message.into()))
    }

    /// The application no longer reads `handle`. A producer keeps producing (its
    /// listeners still get every chunk); a resumer stops listening; a pending request
    /// is answered to nobody. No further event is emitted for a resumer or a request;
    /// a producer's `Started` still comes, since the application must feed its source.
    pub fn drop_reader(&mut self, handle: Handle) {
        match self.states.get_mut(&handle) {
            Some(State::Producer(p)) => p.detach_reader(),
            Some(State::Starting(s)) => s.reader_attached = false,
            Some(State::Resumer(_)) => self.leave(handle),
            Some(State::Checking { .. }) => {
                self.states.remove(&handle);
            }
            None => {}
        }
    }

    // ----- inputs -----

    /// The reply to command `id`. Replies may come in any order across connections;
    /// unknown ids are counted and ignored.
    pub fn handle_reply(&mut self, now: Instant, id: CommandId, reply: Result<Reply, ReplyError>) {
        let Some(pending) = self.pending.remove(&id) else {
            self.stats.unmatched_replies += 1;
            return;
        };
        match pending {
            Pending::Write => {
                if let Err(error) = reply {
                    self.stats.failed_writes += 1;
                    log::warn!("resumable-stream: a write failed: {error}");
                }
            }
            Pending::Incr(handle) => self.on_incr(handle, reply),
            Pending::MarkActive(handle) => self.on_marked_active(handle, reply),
            Pending::MarkedDone(handle) => self.on_marked_done(now, handle, reply),
            Pending::RetireProducer(handle) => self.on_retired(handle, reply),
            Pending::Deliver { producer, listener } => self.on_delivered(producer, listener, reply),
            Pending::ResumeGet(handle) => self.on_resume_get(handle, reply),
            Pending::StateGet(handle) => self.on_state_get(handle, reply),
            Pending::DoneCheck(handle) => self.on_done_check(handle, reply),
            Pending::Watchdog(handle) => self.on_watchdog(now, handle, reply),
            Pending::Subscribe(handle) => self.on_subscribed(now, handle, reply),
            Pending::Resubscribe(handle) => self.on_resubscribed(now, handle, reply),
        }
    }

    /// A pub/sub message arrived on `channel`. Messages on channels no stream listens to,
    /// and malformed requests, are counted and dropped.
    pub fn handle_message(&mut self, now: Instant, channel: &[u8], message: Bytes) {
        match self.routes.get(channel).copied() {
            Some(Route::Producer(handle)) => self.on_request(now, handle, &message),
            Some(Route::Resumer(handle)) => self.on_chunk_message(now, handle, message),
            None => self.stats.unrouted_messages += 1,
        }
    }

    /// Time has reached `now`: fires every deadline at or before it.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((deadline, handle, timer))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let live = self
                .states
                .get(&handle)
                .is_some_and(|state| state.deadline(timer) == Some(deadline));
            if !live {
                continue;
            }
            match timer {
                Timer::Ack => self.on_ack_timeout(handle),
                Timer::Watchdog => self.on_watchdog_due(handle),
                Timer::Liveness => self.on_liveness_due(now, handle),
                Timer::Rewind => self.on_rewind_due(now, handle),
                Timer::Heartbeat => self.on_heartbeat_due(now, handle),
                Timer::Grace => self.on_grace_over(handle),
            }
        }
    }

    /// The pub/sub connection's state changed: see [`PubSubState`](crate::PubSubState).
    pub fn handle_pubsub_state(&mut self, now: Instant, state: crate::io::PubSubState) {
        let _ = now;
        match state {
            crate::io::PubSubState::Interrupted => {
                self.handle_connection_interrupted(Connection::PubSub)
            }
            crate::io::PubSubState::Restored => self.handle_connection_restored(Connection::PubSub),
            crate::io::PubSubState::Lost => self.handle_connection_lost(Connection::PubSub),
        }
    }

    /// The server dropped the subscription of `channel` on its own (a Redis Cluster
    /// shard whose slot moved sends `sunsubscribe`), or confirmed an unsubscription of
    /// ours. A channel a stream still listens on is subscribed again, and its stream
    /// recovers as after an interrupted connection (a resumer of ours asks again from
    /// what it has); any other channel is none of the engine's business.
    pub fn handle_subscription_dropped(&mut self, now: Instant, channel: &[u8]) {
        let _ = now;
        let Some(route) = self.routes.get(channel).copied() else {
            return;
        };
        let handle = match route {
            Route::Producer(handle) => {
                match self.states.get_mut(&handle) {
                    // Retiring: the drop is the confirmation of its own UNSUBSCRIBE.
                    Some(State::Producer(p)) if p.retiring() => return,
                    Some(State::Producer(p)) => p.on_pubsub_interrupted(),
                    _ => return,
                }
                handle
            }
            Route::Resumer(handle) => {
                self.on_interrupted(handle);
                handle
            }
        };
        let channel = Bytes::copy_from_slice(channel);
        self.send(Op::Subscribe { channel }, Pending::Resubscribe(handle));
    }

    /// The connection `connection` dropped, and the driver is reconnecting. Redis forgot
    /// every subscription of a pub/sub connection, and messages published meanwhile are
    /// lost: resumers of v1 producers fail now with a typed error (nothing can tell
    /// them what they missed); resumers of producers of ours wait for
    /// [`handle_connection_restored`](Self::handle_connection_restored) and then ask
    /// again from the chunk they have.
    pub fn handle_connection_interrupted(&mut self, connection: Connection) {
        if connection != Connection::PubSub {
            return;
        }
        let doomed: Vec<Handle> = self
            .states
            .iter()
            .filter(|(_, state)| matches!(state, State::Resumer(r) if !r.can_recover()))
            .map(|(handle, _)| *handle)
            .collect();
        for handle in doomed {
            let error = Error::Redis {
                command: "SUBSCRIBE",
                error: ReplyError::Connection("the pub/sub connection was lost".to_owned()),
            };
            self.fail_handle(handle, error);
        }
        for state in self.states.values_mut() {
            if let State::Producer(p) = state {
                p.on_pubsub_interrupted();
            }
        }
        let survivors: Vec<Handle> = self
            .states
            .iter()
            .filter(|(_, state)| matches!(state, State::Resumer(_)))
            .map(|(handle, _)| *handle)
            .collect();
        for handle in survivors {
            self.on_interrupted(handle);
        }
    }

    /// The connection `connection` is back after
    /// [`handle_connection_interrupted`](Self::handle_connection_interrupted): every
    /// channel is subscribed again; producers hear requests again, and each resumer of
    /// a producer of ours asks again from what it has (no byte lost, none repeated).
    pub fn handle_connection_restored(&mut self, connection: Connection) {
        if connection != Connection::PubSub {
            return;
        }
        let mut channels: Vec<(Handle, Bytes)> = Vec::new();
        for (handle, state) in &self.states {
            match state {
                State::Producer(p) => channels.push((*handle, p.names.request_channel.clone())),
                State::Resumer(r) => channels.push((*handle, r.channel.clone())),
                _ => {}
            }
        }
        channels.sort_by_key(|(handle, _)| *handle);
        for (handle, channel) in channels {
            self.send(Op::Subscribe { channel }, Pending::Resubscribe(handle));
        }
    }

    fn on_resubscribed(&mut self, now: Instant, handle: Handle, reply: Result<Reply, ReplyError>) {
        if let Err(error) = reply {
            // The connection dropped again: the driver reports it, and every channel
            // is subscribed again once it is back.
            if let ReplyError::Connection(_) = error {
                log::debug!(
                    "resumable-stream: a subscription waits for the next reconnect: {error}"
                );
                return;
            }
            // A producer keeps producing for its reader and the listeners it has; it
            // only cannot hear new requests. A resumer cannot go on.
            if matches!(self.states.get(&handle), Some(State::Producer(_))) {
                log::warn!("resumable-stream: a producer could not subscribe again: {error}");
                return;
            }
            return self.fail_handle(handle, redis_error("SUBSCRIBE", error));
        }
        if matches!(self.states.get(&handle), Some(State::Resumer(_))) {
            self.resume_after_reconnect(now, handle);
        }
    }

    /// The connection `connection` was lost for good. Replies to commands in flight on
    /// it must still be handed back (as errors) by the driver; this input accounts for
    /// what Redis forgot with it.
    ///
    /// Losing the pub/sub connection drops every subscription: each resumer of this
    /// engine fails with a typed error. Producers keep producing for their local reader
    /// and the listeners they already have (those publishes use the command
    /// connection), but can no longer hear new resume requests.
    pub fn handle_connection_lost(&mut self, connection: Connection) {
        if connection != Connection::PubSub {
            return;
        }
        let resumers: Vec<Handle> = self
            .states
            .iter()
            .filter(|(_, state)| matches!(state, State::Resumer(_)))
            .map(|(handle, _)| *handle)
            .collect();
        for handle in resumers {
            let error = Error::Redis {
                command: "SUBSCRIBE",
                error: ReplyError::Connection("the pub/sub connection was lost".to_owned()),
            };
            self.fail_handle(handle, error);
        }
    }

    // ----- outputs -----

    /// The next command to send. Changes after any request or input.
    pub fn poll_command(&mut self) -> Option<Command> {
        let command = self.commands.pop_front()?;
        Some(match self.config.pubsub() {
            crate::config::PubSub::Classic => command,
            flavour => Command {
                id: command.id,
                op: command.op.in_flavour(flavour),
            },
        })
    }

    /// The next event for the application. Changes after any request or input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    /// Changes after any request or input; stale deadlines are discarded here.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, handle, timer))) = self.deadlines.peek().copied() {
            let live = self
                .states
                .get(&handle)
                .is_some_and(|state| state.deadline(timer) == Some(deadline));
            if live {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Whether commands or events are waiting to be polled.
    pub fn has_output(&self) -> bool {
        !self.commands.is_empty() || !self.events.is_empty()
    }

    // ----- shared internals -----

    fn start(&mut self, stream_id: &str, purpose: Purpose) -> Handle {
        let handle = Handle(self.next_handle);
        self.next_handle += 1;
        let names = self.names.stream(stream_id);
        self.states.insert(
            handle,
            State::Starting(Starting {
                stream_id: stream_id.to_owned(),
                names,
                purpose,
                reader_attached: true,
            }),
        );
        handle
    }

    fn send(&mut self, op: Op, pending: Pending) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        self.pending.insert(id, pending);
        self.commands.push_back(Command { id, op });
        id
    }

    fn arm(&mut self, handle: Handle, timer: Timer, at: Instant) {
        self.deadlines.push(Reverse((at, handle, timer)));
    }

    fn get_sentinel(&mut self, handle: Handle, pending: Pending) {
        if let Some(State::Starting(s)) = self.states.get(&handle) {
            let key = s.names.sentinel.clone();
            self.send(Op::Get { key }, pending);
        }
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Ends a request or stream with an error. Events for readers the application
    /// dropped are not emitted.
    fn fail_handle(&mut self, handle: Handle, error: Error) {
        match self.states.remove(&handle) {
            Some(State::Starting(s)) if !s.reader_attached => {}
            Some(State::Producer(p)) => {
                self.routes.remove(&p.names.request_channel);
                if p.reader_attached() || !p.started() {
                    self.emit(Event::Failed { handle, error });
                }
            }
            Some(State::Resumer(r)) => {
                self.routes.remove(&r.channel);
                self.emit(Event::Failed { handle, error });
            }
            Some(_) => self.emit(Event::Failed { handle, error }),
            None => {}
        }
    }

    /// Ends a request with a final, non-error answer.
    fn answer(&mut self, handle: Handle, event: Event) {
        if let Some(State::Starting(s)) = self.states.remove(&handle) {
            if !s.reader_attached {
                return;
            }
        }
        self.emit(event);
    }

    fn stream_id_of(&self, handle: Handle) -> String {
        match self.states.get(&handle) {
            Some(State::Starting(s)) => s.stream_id.clone(),
            Some(State::Producer(p)) => p.stream_id.clone(),
            Some(State::Resumer(r)) => r.stream_id.clone(),
            Some(State::Checking { stream_id, .. }) => stream_id.clone(),
            None => String::new(),
        }
    }

    fn on_incr(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        match reply {
            Ok(Reply::Integer(1)) => self.become_producer(handle),
            Ok(Reply::Integer(n)) if n > 1 => self.become_resumer(handle),
            Ok(Reply::Integer(n)) => self.fail_handle(
                handle,
                Error::UnexpectedSentinel {
                    value: n.to_string(),
                },
            ),
            Ok(other) => self.fail_handle(handle, unexpected("INCR", &other)),
            Err(ReplyError::Server(message)) if message.contains(NOT_AN_INTEGER) => {
                // The sentinel is not a number: "DONE", or something nobody should write.
                let cause = Error::Redis {
                    command: "INCR",
                    error: ReplyError::Server(message),
                };
                self.check_done(handle, cause);
            }
            Err(error) => self.fail_handle(handle, redis_error("INCR", error)),
        }
    }

    /// Reads the sentinel to tell whether `handle`'s stream is done; fails with `cause`
    /// if it is not.
    fn check_done(&mut self, handle: Handle, cause: Error) {
        let (key, attached) = match self.states.get(&handle) {
            Some(State::Starting(s)) => (s.names.sentinel.clone(), s.reader_attached),
            Some(State::Resumer(r)) => (r.names.sentinel.clone(), true),
            _ => return,
        };
        if !attached {
            self.states.remove(&handle);
            return;
        }
        let stream_id = self.stream_id_of(handle);
        let retry = match self.states.remove(&handle) {
            Some(State::Starting(s)) => Some(s),
            _ => None,
        };
        self.states.insert(
            handle,
            State::Checking {
                stream_id,
                cause,
                retry,
            },
        );
        self.send(Op::Get { key }, Pending::DoneCheck(handle));
    }

    fn on_done_check(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        let Some(State::Checking { cause, retry, .. }) = self.states.remove(&handle) else {
            return;
        };
        if let (Some(starting), Ok(Reply::Data(value))) = (retry, &reply) {
            if Sentinel::parse(value.as_ref()) == Some(Sentinel::Active) {
                self.states.insert(handle, State::Starting(starting));
                return self.become_resumer(handle);
            }
        }
        let event = match reply {
            Ok(Reply::Data(value)) if value == DONE_VALUE => Event::Done { handle },
            Ok(Reply::Data(value)) if matches!(cause, Error::Redis { .. }) => Event::Failed {
                handle,
                error: Error::UnexpectedSentinel {
                    value: String::from_utf8_lossy(&value).into_owned(),
                },
            },
            Ok(_) => Event::Failed {
                handle,
                error: cause,
            },
            Err(error) => Event::Failed {
                handle,
                error: redis_error("GET", error),
            },
        };
        self.emit(event);
    }

    fn on_resume_get(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        match reply {
            Ok(Reply::Nil) => self.answer(handle, Event::NotFound { handle }),
            Ok(Reply::Data(value)) => match Sentinel::parse(&value) {
                Some(Sentinel::Done) => self.answer(handle, Event::Done { handle }),
                Some(Sentinel::Active) => self.become_resumer(handle),
                None => self.fail_handle(
                    handle,
                    Error::UnexpectedSentinel {
                        value: String::from_utf8_lossy(&value).into_owned(),
                    },
                ),
            },
            Ok(other) => self.fail_handle(handle, unexpected("GET", &other)),
            Err(error) => self.fail_handle(handle, redis_error("GET", error)),
        }
    }

    fn on_state_get(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        let state = match reply {
            Ok(Reply::Nil) => StreamState::None,
            Ok(Reply::Data(value)) => match Sentinel::parse(&value) {
                Some(Sentinel::Done) => StreamState::Done,
                Some(Sentinel::Active) => StreamState::Active,
                None => {
                    let value = String::from_utf8_lossy(&value).into_owned();
                    return self.fail_handle(handle, Error::UnexpectedSentinel { value });
                }
            },
            Ok(other) => return self.fail_handle(handle, unexpected("GET", &other)),
            Err(error) => return self.fail_handle(handle, redis_error("GET", error)),
        };
        self.answer(handle, Event::State { handle, state });
    }

    fn on_subscribed(&mut self, now: Instant, handle: Handle, reply: Result<Reply, ReplyError>) {
        if let Err(error) = reply {
            return match self.states.get(&handle) {
                Some(State::Producer(_)) => {
                    self.abandon_production(handle, redis_error("SUBSCRIBE", error))
                }
                _ => self.fail_handle(handle, redis_error("SUBSCRIBE", error)),
            };
        }
        match self.states.get(&handle) {
            Some(State::Producer(_)) => self.on_producer_subscribed(handle),
            Some(State::Resumer(_)) => self.on_resumer_subscribed(now, handle),
            _ => {}
        }
    }
}

fn unexpected(command: &'static str, reply: &Reply) -> Error {
    Error::UnexpectedReply {
        command,
        reply: reply.to_string(),
    }
}

fn redis_error(command: &'static str, error: ReplyError) -> Error {
    Error::Redis { command, error }
}
