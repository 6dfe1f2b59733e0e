//! The protocol engine: a `&mut self` state machine that turns application requests,
//! Redis replies, pub/sub messages and deadlines into Redis commands and application
//! events.
//!
//! Its shape is quinn-proto's split of routing from the machines it routes to:
//! - [`Engine`] (this file) owns the routes (which machine a pending reply, a channel
//!   or a deadline belongs to) and the machines, and is the public API;
//! - one machine per handle: an [`Opening`](requests::Opening) request whose role is
//!   not decided yet, a [`Checking`](requests::Checking) one, a
//!   [`Producer`](producer::Producer), a [`Resumer`](resumer::Resumer) (over pub/sub)
//!   or, in durable mode, a log reader and the tail its stream's readers share
//!   (`durable/`); each is a plain struct whose methods take
//!   `(&mut self, now, &Config, &mut Outbox)`;
//! - `roles.rs`: how a request becomes one of these machines, and how machines go;
//! - the [`Outbox`](outbox::Outbox) the machines write to: commands with their reply
//!   routes, events, deadlines, counters;
//! - `reconnect.rs`: what a lost pub/sub connection or subscription does to them all.
//!
//! The drain rule: after any request or input, call `poll_command` and `poll_event`
//! until both return `None`, then sleep until `poll_timeout`.

mod active;
mod durable;
mod outbox;
mod producer;
mod reconnect;
mod requests;
mod resumer;
mod roles;

use crate::config::{Config, PubSub};
use crate::error::{Error, SourceError};
use crate::event::{Event, Handle};
use crate::idmap::IdMap;
use crate::io::{Command, CommandId, Reply, ReplyError};
pub use crate::position::Position;
use crate::wire::ListenerIds;
use bytes::Bytes;
pub use outbox::Stats;
use outbox::{Expect, Outbox};
use producer::{Ending, Producer};
use requests::{Checked, Checking, Opening, Purpose};
use resumer::Resumer;
use std::collections::HashMap;
use std::time::Instant;

/// What a machine asks of the engine after an input.
#[derive(Debug)]
pub(super) enum Next {
    /// Nothing: it goes on.
    Stay,
    /// It is over: forget it and its channel.
    Remove,
    /// A resumer that timed out: read the sentinel to tell "done" from this failure.
    Check(Error),
}

/// The machine of one handle.
#[derive(Debug)]
enum Machine {
    Opening(Opening),
    Checking(Checking),
    Producer(Box<Producer>),
    Resumer(Resumer),
    LogReader(Box<durable::reader::LogReader>),
    Tail(Box<durable::tail::Tail>),
}

impl Machine {
    fn deadline(&self, timer: outbox::Timer) -> Option<Instant> {
        match self {
            Machine::Producer(p) => p.deadline(timer),
            Machine::Resumer(r) => r.deadline(timer),
            Machine::Tail(t) => t.deadline(timer),
            Machine::Opening(_) | Machine::Checking(_) | Machine::LogReader(_) => None,
        }
    }

    /// The channel this machine's stream is routed by, if it has one.
    fn channel(&self) -> Option<&Bytes> {
        match self {
            Machine::Producer(p) => Some(p.request_channel()),
            Machine::Resumer(r) => Some(r.channel()),
            Machine::Opening(_)
            | Machine::Checking(_)
            | Machine::LogReader(_)
            | Machine::Tail(_) => None,
        }
    }
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
    listener_ids: ListenerIds,
    next_handle: u64,
    machines: IdMap<Handle, Machine>,
    /// Which machine a subscribed channel's messages go to.
    routes: HashMap<Bytes, Handle>,
    /// Durable mode's tails and their blocking reads.
    lanes: durable::Lanes,
    out: Outbox,
}

impl Engine {
    /// A new engine with no streams.
    pub fn new(config: Config) -> Engine {
        Engine {
            listener_ids: ListenerIds::new(config.seed()),
            config,
            next_handle: 0,
            machines: IdMap::default(),
            routes: HashMap::new(),
            lanes: durable::Lanes::default(),
            out: Outbox::default(),
        }
    }

    // ----- getters -----

    /// The configuration this engine was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters of dropped and ignored inputs.
    pub fn stats(&self) -> Stats {
        self.out.stats
    }

    /// How many handles (requests, producers, readers) are alive (durable mode's
    /// tails, which no request names, are not counted).
    pub fn live_handles(&self) -> usize {
        self.machines.len().saturating_sub(self.lanes.tails())
    }

    /// Durable mode: how many streams this engine follows live (one tail per stream,
    /// however many local readers it has).
    pub fn tails(&self) -> usize {
        self.lanes.tails()
    }

    /// Durable mode: how many blocking reads (`XREAD BLOCK`) carry this engine's tails
    /// now; one read follows many streams.
    pub fn blocking_reads(&self) -> usize {
        self.lanes.in_flight()
    }

    /// How many streams this engine produces and has not retired yet: a producer is
    /// retired once its source ended, its ending was published, and it stopped
    /// answering late requests (its grace period, or the liveness window after an
    /// unsettled end).
    pub fn producing(&self) -> usize {
        self.machines
            .values()
            .filter(|machine| matches!(machine, Machine::Producer(_)))
            .count()
    }

    /// The size in bytes of the buffer of the stream `handle` produces, or `None` when
    /// it produces none.
    pub fn buffered_bytes(&self, handle: Handle) -> Option<usize> {
        match self.machines.get(&handle) {
            Some(Machine::Producer(p)) => Some(p.buffered_bytes()),
            _ => None,
        }
    }

    /// The id of the stream `handle` reads, produces or asks about, while the engine
    /// knows the handle: for log records and errors that name the stream.
    pub fn stream_id(&self, handle: Handle) -> Option<&str> {
        match self.machines.get(&handle)? {
            Machine::Opening(opening) => Some(&opening.stream_id),
            Machine::Checking(checking) => checking.stream_id(),
            Machine::Producer(p) => Some(p.stream_id()),
            Machine::Resumer(r) => Some(r.stream_id()),
            Machine::LogReader(r) => Some(r.stream_id()),
            Machine::Tail(t) => Some(t.stream_id()),
        }
    }

    /// How many listeners the stream `handle` produces is publishing to.
    pub fn listener_count(&self, handle: Handle) -> Option<usize> {
        match self.machines.get(&handle) {
            Some(Machine::Producer(p)) => Some(p.listener_count()),
            _ => None,
        }
    }

    // ----- application requests -----

    /// Creates the stream `stream_id`, or resumes it at `position` if it exists (the
    /// deployed libraries' `resumableStream`; `position` takes v1's optional skip,
    /// `None` or `Some(n)`, or any [`Position`]).
    ///
    /// The answer arrives as an event for the returned handle: `Started` as producer
    /// (this caller must feed the source) or as resumer, `Done` if the stream already
    /// finished, or `Failed`.
    pub fn resumable_stream(&mut self, stream_id: &str, position: impl Into<Position>) -> Handle {
        self.open(
            stream_id,
            Purpose::Read(position.into()),
            Some(Expect::Incr),
        )
    }

    /// Creates the stream `stream_id` unconditionally and makes this caller its
    /// producer: `SUBSCRIBE` to its request channel, then `SET sentinel "1" EX ttl`, as
    /// npm 2.2.13 does (subscribing first, so no request sent after the sentinel
    /// appears is lost). Answers `Started` as producer, or `Failed`.
    pub fn create_new_resumable_stream(&mut self, stream_id: &str) -> Handle {
        let handle = self.open(stream_id, Purpose::Read(Position::Start), None);
        if let Some(opening) = self.take_opening(handle) {
            self.become_producer(opening);
        }
        handle
    }

    /// Resumes the existing stream `stream_id` at `position`. Answers `Started` as
    /// resumer, `NotFound`, `Done`, or `Failed`.
    pub fn resume_existing_stream(
        &mut self,
        stream_id: &str,
        position: impl Into<Position>,
    ) -> Handle {
        self.open(
            stream_id,
            Purpose::Read(position.into()),
            Some(Expect::ResumeGet),
        )
    }

    /// Stops the stream `stream_id`, wherever its producer runs, if it is ours: the
    /// producer drops its source, its readers end with [`Error::Cancelled`] and the
    /// stream is marked done. Answers `Cancelled`, `Done` (it had finished),
    /// `NotFound`, or `Failed` ([`Error::Unsupported`] for a v1 producer, which cannot
    /// be stopped; [`Error::AckTimeout`] when nobody produces it).
    pub fn cancel(&mut self, stream_id: &str) -> Handle {
        self.open(stream_id, Purpose::Cancel, Some(Expect::ResumeGet))
    }

    /// Asks whether the stream `stream_id` exists. Answers `State`, or `Failed`.
    pub fn has_existing_stream(&mut self, stream_id: &str) -> Handle {
        self.open(
            stream_id,
            Purpose::Read(Position::Start),
            Some(Expect::StateGet),
        )
    }

    /// Gives the next chunk of the source of the stream `handle` produces.
    ///
    /// The chunk goes to the local reader (unless it went away), into the buffer, and to
    /// every listener: v1 listeners and the buffer share its allocation, each listener
    /// of ours gets it framed with its index (one allocation each).
    ///
    /// # Errors
    /// [`Error::NotProducing`] unless `handle` received `Started` as producer and has
    /// not finished.
    pub fn push_chunk(&mut self, handle: Handle, chunk: Bytes) -> Result<(), Error> {
        match self.machines.get_mut(&handle) {
            Some(Machine::Producer(p)) => p.push(chunk, &self.config, &mut self.out),
            _ => Err(Error::NotProducing),
        }
    }

    /// The source of the stream `handle` produces ended: marks the stream done, ends
    /// every listener and the local reader.
    ///
    /// # Errors
    /// [`Error::NotProducing`] as for [`push_chunk`](Self::push_chunk).
    pub fn finish(&mut self, handle: Handle) -> Result<(), Error> {
        self.end_production(handle, Ending::Clean)
    }

    /// The source of the stream `handle` produces failed. The local reader and every
    /// listener of ours get [`Error::Source`] (the local reader with `error` itself, chain
    /// included; listeners elsewhere with its message); v1 listeners get a clean
    /// end (v1 has no error signal); the sentinel says `DONE`.
    ///
    /// # Errors
    /// [`Error::NotProducing`] as for [`push_chunk`](Self::push_chunk).
    pub fn fail(&mut self, handle: Handle, error: impl Into<SourceError>) -> Result<(), Error> {
        self.end_production(handle, Ending::SourceFailed(error.into()))
    }

    fn end_production(&mut self, handle: Handle, ending: Ending) -> Result<(), Error> {
        match self.machines.get_mut(&handle) {
            Some(Machine::Producer(p)) => p.end(ending, &self.config, &mut self.out),
            _ => Err(Error::NotProducing),
        }
    }

    /// The application no longer reads `handle`. A producer keeps producing (its
    /// listeners still get every chunk); a resumer stops listening; a pending request
    /// is answered to nobody. No further event is emitted for a resumer or a request;
    /// a producer's `Started` still comes, since the application must feed its source.
    pub fn drop_reader(&mut self, handle: Handle) {
        let next = match self.machines.get_mut(&handle) {
            Some(Machine::Producer(p)) => {
                p.detach_reader();
                Next::Stay
            }
            Some(Machine::Opening(o)) => {
                o.reader_attached = false;
                Next::Stay
            }
            Some(Machine::Resumer(r)) => r.leave(&mut self.out),
            Some(Machine::Checking(_) | Machine::LogReader(_)) => Next::Remove,
            Some(Machine::Tail(_)) | None => Next::Stay,
        };
        self.apply(handle, next);
    }

    // ----- inputs -----

    /// The reply to command `id`. Replies may come in any order across connections;
    /// unknown ids are counted and ignored.
    pub fn handle_reply(&mut self, now: Instant, id: CommandId, reply: Result<Reply, ReplyError>) {
        self.out.set_now(now);
        let Some((handle, expect)) = self.out.take_pending(id) else {
            self.out.stats.unmatched_replies += 1;
            return;
        };
        if let Expect::TailRead { lane } = expect {
            return self.on_tail_read(now, lane, reply);
        }
        if expect == Expect::Write {
            if let Err(error) = reply {
                self.out.stats.failed_writes += 1;
                let stream_id = self.stream_id(handle).unwrap_or("a finished stream");
                log::warn!("resumable-stream: a write for {stream_id:?} failed: {error}");
            }
            return;
        }
        let config = &self.config;
        let out = &mut self.out;
        let next = match self.machines.get_mut(&handle) {
            Some(Machine::Producer(p)) => p.on_reply(now, expect, reply, config, out),
            Some(Machine::Resumer(r)) => r.on_reply(now, expect, reply, config, out),
            Some(Machine::Opening(o)) => {
                let decision = o.on_reply(expect, reply);
                return self.decide(handle, decision);
            }
            Some(Machine::Checking(_)) => {
                if let Some(Machine::Checking(checking)) = self.machines.remove(&handle) {
                    match checking.on_reply(reply) {
                        Checked::Resume(opening) if self.reads_log(opening.purpose) => {
                            self.become_log_reader(opening, false)
                        }
                        Checked::Resume(opening) => self.become_resumer(opening),
                        // Durable mode replays a finished stream from its log.
                        Checked::Finished(opening) if self.reads_log(opening.purpose) => {
                            self.become_log_reader(opening, true)
                        }
                        Checked::Finished(opening) => {
                            let handle = opening.handle;
                            if opening.reader_attached {
                                self.out.emit(Event::Done { handle });
                            }
                        }
                        Checked::Answer(event) => self.out.emit(event),
                    }
                }
                return;
            }
            Some(Machine::LogReader(r)) => {
                let wants = r.on_reply(expect, reply, config, out);
                return self.on_wants(now, handle, wants);
            }
            Some(Machine::Tail(t)) => {
                if let Some(error) = t.on_reply(now, expect, reply, config, out) {
                    self.fail_tail(handle, &error);
                }
                return;
            }
            None => Next::Stay,
        };
        self.apply(handle, next);
    }

    /// A pub/sub message arrived on `channel`. Messages on channels no stream listens to,
    /// and malformed requests, are counted and dropped.
    pub fn handle_message(&mut self, now: Instant, channel: &[u8], message: Bytes) {
        self.out.set_now(now);
        let Some(handle) = self.routes.get(channel).copied() else {
            self.out.stats.unrouted_messages += 1;
            return;
        };
        let next = match self.machines.get_mut(&handle) {
            Some(Machine::Producer(p)) => {
                p.on_request(now, &message, &self.config, &mut self.out);
                Next::Stay
            }
            Some(Machine::Resumer(r)) => r.on_message(now, message, &self.config, &mut self.out),
            _ => Next::Stay,
        };
        self.apply(handle, next);
    }

    /// Time has reached `now`: fires every deadline at or before it.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.set_now(now);
        while let Some((deadline, handle, timer)) = self.out.peek_deadline() {
            if deadline > now {
                break;
            }
            self.out.pop_deadline();
            let next = match self.machines.get_mut(&handle) {
                Some(machine) if machine.deadline(timer) != Some(deadline) => continue,
                Some(Machine::Producer(p)) => p.on_timeout(now, timer, &self.config, &mut self.out),
                Some(Machine::Resumer(r)) => r.on_timeout(now, timer, &self.config, &mut self.out),
                Some(Machine::Tail(t)) => {
                    t.on_timeout(now, timer, &self.config, &mut self.out);
                    // A retry that came due makes the tail want a read.
                    self.lanes.wanted = true;
                    continue;
                }
                _ => continue,
            };
            self.apply(handle, next);
        }
    }

    // ----- outputs -----

    /// The next command to send. Changes after any request or input.
    pub fn poll_command(&mut self) -> Option<Command> {
        // Tails that want a read join one now, with every other tail that does.
        self.schedule_reads();
        let command = self.out.poll_command()?;
        Some(match self.config.pubsub() {
            PubSub::Classic => command,
            flavour => Command {
                id: command.id,
                op: command.op.in_flavour(flavour),
            },
        })
    }

    /// The next event for the application. Changes after any request or input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    /// Changes after any request or input; stale deadlines are discarded here.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some((deadline, handle, timer)) = self.out.peek_deadline() {
            let live = self
                .machines
                .get(&handle)
                .is_some_and(|machine| machine.deadline(timer) == Some(deadline));
            if live {
                return Some(deadline);
            }
            self.out.pop_deadline();
        }
        None
    }

    /// Whether commands or events are waiting to be polled.
    pub fn has_output(&self) -> bool {
        self.out.has_output()
    }
}

pub(super) fn unexpected(command: &'static str, reply: &Reply) -> Error {
    Error::UnexpectedReply {
        command,
        reply: reply.to_string(),
    }
}

pub(super) fn redis_error(command: &'static str, error: ReplyError) -> Error {
    Error::Redis { command, error }
}
