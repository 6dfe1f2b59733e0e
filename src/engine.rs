//! The protocol engine: a `&mut self` state machine that turns application requests,
//! Redis replies, pub/sub messages and deadlines into Redis commands and application
//! events.
//!
//! Methods fall into four groups:
//! - application requests: [`resumable_stream`](Engine::resumable_stream),
//!   [`create_new_resumable_stream`](Engine::create_new_resumable_stream),
//!   [`resume_existing_stream`](Engine::resume_existing_stream),
//!   [`has_existing_stream`](Engine::has_existing_stream), and for producers
//!   [`push_chunk`](Engine::push_chunk), [`finish`](Engine::finish),
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

use crate::config::Config;
use crate::error::Error;
use crate::event::{Event, Handle, Role, StreamState};
use crate::io::{Command, CommandId, Connection, Op, Reply, ReplyError};
use crate::skip::{catch_up, SkipUnit};
use crate::wire::{
    ListenerIds, Names, ResumeRequest, Sentinel, StreamNames, DONE_MESSAGE, DONE_VALUE,
    NOT_AN_INTEGER,
};
use bytes::Bytes;
use smallvec::SmallVec;
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
}

/// What a pending command's reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The idempotent path's `INCR`.
    Incr(Handle),
    /// A producer's `SET "1" EX ttl`, after its subscription: the stream starts once
    /// the sentinel is written.
    MarkActive(Handle),
    /// A resumer's periodic `GET` of the sentinel (the done watchdog).
    Watchdog(Handle),
    /// An explicit resume's `GET`.
    ResumeGet(Handle),
    /// A state query's `GET`.
    StateGet(Handle),
    /// The `GET` that tells "done" from a failure, after an INCR that was refused or an
    /// acknowledgement that never came.
    DoneCheck(Handle),
    /// The `SUBSCRIBE` of a producer's request channel or a resumer's chunk channel.
    Subscribe(Handle),
    /// The `UNSUBSCRIBE` that retires a finished producer.
    RetireProducer(Handle),
    /// The `SET "DONE"` of a finished producer: its local reader ends once the stream
    /// is marked done, so that a reader that saw the end also sees the state "done".
    MarkedDone(Handle),
    /// A write whose reply only matters if it fails (PUBLISH, SET "DONE").
    Write,
}

#[derive(Debug)]
struct Starting {
    stream_id: String,
    names: StreamNames,
    skip: Option<u64>,
    /// False once the application dropped its reader before the stream started.
    reader_attached: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProducerPhase {
    /// Waiting for the request channel's subscription.
    Subscribing,
    /// Subscribed; waiting for the sentinel's `SET "1"`.
    Marking,
    /// Taking chunks.
    Live,
    /// The source ended; answering late requests until the unsubscription is confirmed.
    Finished,
}

#[derive(Debug)]
struct Producer {
    stream_id: String,
    names: StreamNames,
    phase: ProducerPhase,
    /// Every chunk so far, shared with local delivery and every PUBLISH.
    buffer: Vec<Bytes>,
    /// Chunk channels of registered listeners, in registration order.
    listeners: SmallVec<[Bytes; 4]>,
    reader_attached: bool,
    /// The local reader's last event, held until the sentinel says "DONE".
    end: Option<Event>,
    /// The request channel's unsubscription is confirmed.
    unsubscribed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResumerPhase {
    Subscribing,
    AwaitingAck { deadline: Instant },
    Streaming,
}

#[derive(Debug)]
struct Resumer {
    stream_id: String,
    names: StreamNames,
    listener_id: String,
    channel: Bytes,
    skip: Option<u64>,
    phase: ResumerPhase,
    /// When the done watchdog next reads the sentinel (none while a read is in flight).
    watchdog_at: Option<Instant>,
    /// Consecutive watchdog readings of a finished stream.
    done_readings: u8,
}

#[derive(Debug)]
enum State {
    Starting(Starting),
    Producer(Producer),
    Resumer(Resumer),
    /// Waiting for the GET that decides between "done" and a failure.
    Checking {
        stream_id: String,
        cause: Error,
    },
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
///     let mut progressed = false;
///     while let Some(event) = engine.poll_event() {
///         progressed = true;
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
    pending: HashMap<CommandId, Pending>,
    states: HashMap<Handle, State>,
    routes: HashMap<Bytes, Route>,
    deadlines: BinaryHeap<Reverse<(Instant, Handle)>>,
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
            pending: HashMap::new(),
            states: HashMap::new(),
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
            Some(State::Producer(p)) => Some(p.buffer.iter().map(Bytes::len).sum()),
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
        let handle = self.start(stream_id, skip);
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
        let handle = self.start(stream_id, None);
        self.become_producer(handle);
        handle
    }

    /// Resumes the existing stream `stream_id`, skipping `skip` units. Answers
    /// `Started` as resumer, `NotFound`, `Done`, or `Failed`.
    pub fn resume_existing_stream(&mut self, stream_id: &str, skip: Option<u64>) -> Handle {
        let handle = self.start(stream_id, skip);
        self.get_sentinel(handle, Pending::ResumeGet(handle));
        handle
    }

    /// Asks whether the stream `stream_id` exists. Answers `State`, or `Failed`.
    pub fn has_existing_stream(&mut self, stream_id: &str) -> Handle {
        let handle = self.start(stream_id, None);
        self.get_sentinel(handle, Pending::StateGet(handle));
        handle
    }

    /// Gives the next chunk of the source of the stream `handle` produces.
    ///
    /// The chunk goes to the local reader (unless it went away), into the buffer, and to
    /// every listener, all sharing the one allocation.
    ///
    /// # Errors
    /// [`Error::NotProducing`] unless `handle` received `Started` as producer and has
    /// not finished.
    pub fn push_chunk(&mut self, handle: Handle, chunk: Bytes) -> Result<(), Error> {
        let Some(State::Producer(producer)) = self.states.get_mut(&handle) else {
            return Err(Error::NotProducing);
        };
        if producer.phase != ProducerPhase::Live {
            return Err(Error::NotProducing);
        }
        for channel in &producer.listeners {
            let id = CommandId(self.next_command);
            self.next_command += 1;
            self.pending.insert(id, Pending::Write);
            self.commands.push_back(Command {
                id,
                op: Op::Publish {
                    channel: channel.clone(),
                    message: chunk.clone(),
                },
            });
        }
        if producer.reader_attached && !chunk.is_empty() {
            self.events.push_back(Event::Data {
                handle,
                data: chunk.clone(),
            });
        }
        producer.buffer.push(chunk);
        Ok(())
    }

    /// The source of the stream `handle` produces ended: marks the stream done, ends
    /// every listener and the local reader.
    ///
    /// # Errors
    /// [`Error::NotProducing`] as for [`push_chunk`](Self::push_chunk).
    pub fn finish(&mut self, handle: Handle) -> Result<(), Error> {
        self.end_production(handle, None)
    }

    /// The source of the stream `handle` produces failed. The local reader gets
    /// [`Error::Source`]; on the wire the stream ends as a v1 stream does (sentinel
    /// `DONE`, end message to every listener), so that no listener hangs.
    ///
    /// # Errors
    /// [`Error::NotProducing`] as for [`push_chunk`](Self::push_chunk).
    pub fn fail(&mut self, handle: Handle, message: impl Into<String>) -> Result<(), Error> {
        self.end_production(handle, Some(Error::Source(message.into())))
    }

    /// The application no longer reads `handle`. A producer keeps producing (its
    /// listeners still get every chunk); a resumer stops listening; a pending request
    /// is answered to nobody. No further event is emitted for a resumer or a request;
    /// a producer's `Started` still comes, since the application must feed its source.
    pub fn drop_reader(&mut self, handle: Handle) {
        match self.states.get_mut(&handle) {
            Some(State::Producer(p)) => p.reader_attached = false,
            Some(State::Starting(s)) => s.reader_attached = false,
            Some(State::Resumer(_)) => {
                if let Some(State::Resumer(r)) = self.states.remove(&handle) {
                    self.routes.remove(&r.channel);
                    self.send(Op::Unsubscribe { channel: r.channel }, Pending::Write);
                }
            }
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
            Pending::MarkActive(handle) => match reply {
                Ok(Reply::Ok) => self.start_producing(handle),
                Ok(other) => self.abandon_production(handle, unexpected("SET", &other)),
                Err(error) => self.abandon_production(handle, redis_error("SET", error)),
            },
            Pending::Watchdog(handle) => self.on_watchdog(now, handle, reply),
            Pending::ResumeGet(handle) => self.on_resume_get(handle, reply),
            Pending::StateGet(handle) => self.on_state_get(handle, reply),
            Pending::DoneCheck(handle) => self.on_done_check(handle, reply),
            Pending::Subscribe(handle) => self.on_subscribed(now, handle, reply),
            Pending::RetireProducer(handle) => {
                if let Err(error) = reply {
                    log::warn!("resumable-stream: unsubscribing a finished stream failed: {error}");
                }
                if let Some(State::Producer(p)) = self.states.get_mut(&handle) {
                    p.unsubscribed = true;
                    let request_channel = p.names.request_channel.clone();
                    self.routes.remove(&request_channel);
                    self.retire_if_settled(handle);
                }
            }
            Pending::MarkedDone(handle) => {
                if let Err(error) = reply {
                    self.stats.failed_writes += 1;
                    log::warn!("resumable-stream: marking a stream done failed: {error}");
                }
                if let Some(State::Producer(p)) = self.states.get_mut(&handle) {
                    let end = p.end.take();
                    if std::mem::take(&mut p.reader_attached) {
                        if let Some(end) = end {
                            self.events.push_back(end);
                        }
                    }
                    self.retire_if_settled(handle);
                }
            }
        }
    }

    /// A pub/sub message arrived on `channel`. Messages on channels no stream listens to,
    /// and malformed requests, are counted and dropped.
    pub fn handle_message(&mut self, now: Instant, channel: &[u8], message: Bytes) {
        match self.routes.get(channel).copied() {
            Some(Route::Producer(handle)) => self.on_request(handle, &message),
            Some(Route::Resumer(handle)) => self.on_chunk_message(now, handle, message),
            None => self.stats.unrouted_messages += 1,
        }
    }

    /// Time has reached `now`: fires every deadline at or before it.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((deadline, handle))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            match self.states.get_mut(&handle) {
                Some(State::Resumer(r)) if r.phase == ResumerPhase::AwaitingAck { deadline } => {
                    self.on_ack_timeout(handle)
                }
                Some(State::Resumer(r)) if r.watchdog_at == Some(deadline) => {
                    r.watchdog_at = None;
                    let key = r.names.sentinel.clone();
                    self.send(Op::Get { key }, Pending::Watchdog(handle));
                }
                _ => {}
            }
        }
    }

    /// The connection `connection` was lost. Replies to commands in flight on it must
    /// still be handed back (as errors) by the driver; this input accounts for what
    /// Redis forgot with it.
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
        self.commands.pop_front()
    }

    /// The next event for the application. Changes after any request or input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    /// Changes after any request or input; stale deadlines are discarded here.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, handle))) = self.deadlines.peek().copied() {
            let live = matches!(
                self.states.get(&handle),
                Some(State::Resumer(r)) if r.phase == ResumerPhase::AwaitingAck { deadline } || r.watchdog_at == Some(deadline)
            );
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

    // ----- internals -----

    fn start(&mut self, stream_id: &str, skip: Option<u64>) -> Handle {
        let handle = Handle(self.next_handle);
        self.next_handle += 1;
        let names = self.names.stream(stream_id);
        self.states.insert(
            handle,
            State::Starting(Starting {
                stream_id: stream_id.to_owned(),
                names,
                skip,
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

    fn get_sentinel(&mut self, handle: Handle, pending: Pending) {
        let key = match self.states.get(&handle) {
            Some(State::Starting(s)) => s.names.sentinel.clone(),
            Some(State::Resumer(r)) => r.names.sentinel.clone(),
            _ => return,
        };
        self.send(Op::Get { key }, pending);
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
                if p.reader_attached
                    || matches!(p.phase, ProducerPhase::Subscribing | ProducerPhase::Marking)
                {
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
                let stream_id = match self.states.get(&handle) {
                    Some(State::Starting(s)) => s.stream_id.clone(),
                    _ => return,
                };
                let cause = Error::Redis {
                    command: "INCR",
                    error: ReplyError::Server(message),
                };
                self.check_done(handle, stream_id, cause);
            }
            Err(error) => self.fail_handle(handle, redis_error("INCR", error)),
        }
    }

    /// Reads the sentinel to tell whether `handle`'s stream is done; fails with `cause`
    /// if it is not.
    fn check_done(&mut self, handle: Handle, stream_id: String, cause: Error) {
        let key = match self.states.get(&handle) {
            Some(State::Starting(s)) => s.names.sentinel.clone(),
            Some(State::Resumer(r)) => r.names.sentinel.clone(),
            _ => return,
        };
        let attached = match self.states.get(&handle) {
            Some(State::Starting(s)) => s.reader_attached,
            _ => true,
        };
        if !attached {
            self.states.remove(&handle);
            return;
        }
        self.states
            .insert(handle, State::Checking { stream_id, cause });
        self.send(Op::Get { key }, Pending::DoneCheck(handle));
    }

    fn on_done_check(&mut self, handle: Handle, reply: Result<Reply, ReplyError>) {
        let Some(State::Checking { cause, .. }) = self.states.remove(&handle) else {
            return;
        };
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

    fn become_producer(&mut self, handle: Handle) {
        let Some(State::Starting(s)) = self.states.remove(&handle) else {
            return;
        };
        let channel = s.names.request_channel.clone();
        if self.routes.contains_key(&channel) {
            // Another producer of this engine owns the request channel: a second one
            // would answer every request twice.
            self.states.insert(handle, State::Starting(s));
            return self.fail_handle(
                handle,
                Error::AlreadyProducing {
                    stream_id: self.stream_id_of(handle),
                },
            );
        }
        self.routes.insert(channel.clone(), Route::Producer(handle));
        self.states.insert(
            handle,
            State::Producer(Producer {
                stream_id: s.stream_id,
                names: s.names,
                phase: ProducerPhase::Subscribing,
                buffer: Vec::new(),
                listeners: SmallVec::new(),
                reader_attached: s.reader_attached,
                end: None,
                unsubscribed: false,
            }),
        );
        self.send(Op::Subscribe { channel }, Pending::Subscribe(handle));
    }

    /// The sentinel says "active": the application may feed the source.
    fn start_producing(&mut self, handle: Handle) {
        if let Some(State::Producer(p)) = self.states.get_mut(&handle) {
            if p.phase == ProducerPhase::Marking {
                p.phase = ProducerPhase::Live;
                self.emit(Event::Started {
                    handle,
                    role: Role::Producer,
                });
            }
        }
    }

    /// A producer could not start: leave the request channel and fail.
    fn abandon_production(&mut self, handle: Handle, error: Error) {
        if let Some(State::Producer(p)) = self.states.get(&handle) {
            let channel = p.names.request_channel.clone();
            self.send(Op::Unsubscribe { channel }, Pending::Write);
        }
        self.fail_handle(handle, error);
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

    fn become_resumer(&mut self, handle: Handle) {
        let Some(State::Starting(s)) = self.states.remove(&handle) else {
            return;
        };
        if !s.reader_attached {
            return;
        }
        let listener_id = self.listener_ids.next_id();
        let channel = self.names.chunk_channel(&listener_id);
        self.routes.insert(channel.clone(), Route::Resumer(handle));
        self.states.insert(
            handle,
            State::Resumer(Resumer {
                stream_id: s.stream_id,
                names: s.names,
                listener_id,
                channel: channel.clone(),
                skip: s.skip,
                phase: ResumerPhase::Subscribing,
                watchdog_at: None,
                done_readings: 0,
            }),
        );
        self.send(Op::Subscribe { channel }, Pending::Subscribe(handle));
    }

    fn on_subscribed(&mut self, now: Instant, handle: Handle, reply: Result<Reply, ReplyError>) {
        if let Err(error) = reply {
            return self.fail_handle(handle, redis_error("SUBSCRIBE", error));
        }
        match self.states.get_mut(&handle) {
            Some(State::Producer(p)) if p.phase == ProducerPhase::Subscribing => {
                p.phase = ProducerPhase::Marking;
                let op = Op::Set {
                    key: p.names.sentinel.clone(),
                    value: Bytes::from_static(b"1"),
                    expire_seconds: self.config.sentinel_ttl_seconds(),
                };
                self.send(op, Pending::MarkActive(handle));
            }
            Some(State::Resumer(r)) if r.phase == ResumerPhase::Subscribing => {
                let deadline = now + self.config.ack_timeout();
                r.phase = ResumerPhase::AwaitingAck { deadline };
                let unit = self.config.skip_unit();
                let request = ResumeRequest {
                    listener_id: r.listener_id.clone(),
                    skip: r.skip.map(|s| s.min(i64::MAX as u64) as i64),
                    // v1 peers count UTF-16: name the unit only when it differs.
                    unit: (unit != SkipUnit::Utf16).then_some(unit),
                };
                let op = Op::Publish {
                    channel: r.names.request_channel.clone(),
                    message: request.encode(),
                };
                self.deadlines.push(Reverse((deadline, handle)));
                self.send(op, Pending::Write);
            }
            _ => {}
        }
    }

    fn on_request(&mut self, handle: Handle, message: &[u8]) {
        let request = match ResumeRequest::decode(message) {
            Ok(request) => request,
            Err(error) => {
                self.stats.malformed_requests += 1;
                log::debug!("resumable-stream: dropped a resume request: {error}");
                return;
            }
        };
        let channel = self.names.chunk_channel(&request.listener_id);
        let default_unit = self.config.skip_unit();
        let Some(State::Producer(producer)) = self.states.get_mut(&handle) else {
            return;
        };
        if producer.listeners.contains(&channel) {
            self.stats.duplicate_listeners += 1;
            return;
        }
        let unit = request.unit.unwrap_or(default_unit);
        let catch_up = catch_up(&producer.buffer, request.skip.unwrap_or(0), unit);
        let finished = producer.phase == ProducerPhase::Finished;
        if !finished {
            producer.listeners.push(channel.clone());
        }
        // The catch-up is the acknowledgement: sent even when empty.
        self.send(
            Op::Publish {
                channel: channel.clone(),
                message: catch_up,
            },
            Pending::Write,
        );
        if finished {
            self.send(
                Op::Publish {
                    channel,
                    message: Bytes::from_static(DONE_MESSAGE),
                },
                Pending::Write,
            );
        }
    }

    fn on_chunk_message(&mut self, now: Instant, handle: Handle, message: Bytes) {
        let Some(State::Resumer(r)) = self.states.get_mut(&handle) else {
            return;
        };
        if r.phase != ResumerPhase::Streaming {
            r.phase = ResumerPhase::Streaming;
            let at = now + self.config.done_watchdog_interval();
            r.watchdog_at = Some(at);
            self.deadlines.push(Reverse((at, handle)));
            self.emit(Event::Started {
                handle,
                role: Role::Resumer,
            });
        }
        if message == DONE_MESSAGE {
            if let Some(State::Resumer(r)) = self.states.remove(&handle) {
                self.routes.remove(&r.channel);
                self.send(Op::Unsubscribe { channel: r.channel }, Pending::Write);
            }
            self.emit(Event::End { handle });
        } else if !message.is_empty() {
            self.emit(Event::Data {
                handle,
                data: message,
            });
        }
    }

    /// The done watchdog's reading: two readings of a finished (or vanished) stream in
    /// a row end the resumer, giving in-flight messages a whole interval to arrive.
    fn on_watchdog(&mut self, now: Instant, handle: Handle, reply: Result<Reply, ReplyError>) {
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
            if r.done_readings >= 2 {
                log::debug!("resumable-stream: done watchdog ends {handle:?}: the end message never arrived");
                let stream_id = r.stream_id.clone();
                let channel = r.channel.clone();
                self.states.remove(&handle);
                self.routes.remove(&channel);
                self.send(Op::Unsubscribe { channel }, Pending::Write);
                self.emit(if done {
                    Event::End { handle }
                } else {
                    Event::Failed {
                        handle,
                        error: Error::Vanished { stream_id },
                    }
                });
                return;
            }
        }
        let at = now + interval;
        r.watchdog_at = Some(at);
        self.deadlines.push(Reverse((at, handle)));
    }

    fn on_ack_timeout(&mut self, handle: Handle) {
        let Some(State::Resumer(r)) = self.states.remove(&handle) else {
            return;
        };
        self.routes.remove(&r.channel);
        self.send(
            Op::Unsubscribe {
                channel: r.channel.clone(),
            },
            Pending::Write,
        );
        let cause = Error::AckTimeout {
            stream_id: r.stream_id.clone(),
            waited: self.config.ack_timeout(),
        };
        let stream_id = r.stream_id.clone();
        self.states.insert(handle, State::Resumer(r));
        self.check_done(handle, stream_id, cause);
    }

    fn end_production(&mut self, handle: Handle, error: Option<Error>) -> Result<(), Error> {
        let Some(State::Producer(producer)) = self.states.get_mut(&handle) else {
            return Err(Error::NotProducing);
        };
        if producer.phase != ProducerPhase::Live {
            return Err(Error::NotProducing);
        }
        producer.phase = ProducerPhase::Finished;
        producer.end = Some(match error {
            None => Event::End { handle },
            Some(error) => Event::Failed { handle, error },
        });
        let sentinel = producer.names.sentinel.clone();
        let request_channel = producer.names.request_channel.clone();
        let listeners = std::mem::take(&mut producer.listeners);
        let ttl = self.config.sentinel_ttl_seconds();
        self.send(
            Op::Set {
                key: sentinel,
                value: Bytes::from_static(DONE_VALUE),
                expire_seconds: ttl,
            },
            Pending::MarkedDone(handle),
        );
        self.send(
            Op::Unsubscribe {
                channel: request_channel,
            },
            Pending::RetireProducer(handle),
        );
        for channel in listeners {
            self.send(
                Op::Publish {
                    channel,
                    message: Bytes::from_static(DONE_MESSAGE),
                },
                Pending::Write,
            );
        }
        Ok(())
    }

    /// Forgets a finished producer once the sentinel is marked and the request channel
    /// left: both replies may come in either order, on two connections.
    fn retire_if_settled(&mut self, handle: Handle) {
        if matches!(
            self.states.get(&handle),
            Some(State::Producer(p)) if p.unsubscribed && p.end.is_none()
        ) {
            self.states.remove(&handle);
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
