//! The engine behind one lock, and the routing of its outputs: commands into one
//! mailbox per connection, events to the mailbox of the reader or request they name.
//!
//! Every input from any thread or task takes the same path: lock, feed the engine,
//! route every output, unlock, then do what routing left for after the lock. The lock
//! holds only the engine and the routing tables: it is never held while waiting on
//! anything, and no user code runs under it (a producer's `make_stream`, its source
//! and the closures that own them start or drop after the unlock). So the hub works
//! the same under tokio, async-std or plain threads. What differs per runtime is only
//! how the loops that empty the mailboxes wait, and how a producer's source is
//! pulled: a driver passes that in as a [`Starter`].

use crate::mailbox::{mailbox, Receiver, Sender};
use crate::production::SourceEnd;
use crate::sync::{downgrade, lock, Arc, Mutex, Weak};
use bytes::Bytes;
use resumable_stream::idmap::IdMap;
use resumable_stream::{
    Command, Connection, Engine, Error, Event, Handle, Reply, ReplyError, Role, StreamState,
};
use std::time::Instant;

/// What a reader receives: the next chunk, or the error that ends the stream.
pub type ReaderItem = Result<Chunk, Error>;

/// Bytes of a stream, with the chunk position a reader has once it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The bytes.
    pub data: Bytes,
    /// How many chunks of the stream the reader has with these bytes: the index to
    /// resume at (an SSE event id). `None` from a v1 producer.
    pub index: Option<u64>,
}

/// Starts pulling the source of a stream this caller produces, once the engine says
/// so: a task on an async runtime, or a thread. Called with the hub and the handle to
/// feed through [`Hub::feed`], never under the hub's lock; it must return at once and
/// call the user's `make_stream` on the task or thread it starts, so that a slow or
/// panicking `make_stream` delays or fails only its own stream.
pub type Starter = Box<dyn FnOnce(Hub, Handle) + Send>;

/// The answer to an application request.
pub enum Answer {
    /// A stream to read, produced here or resumed.
    Stream(Role, Receiver<ReaderItem>),
    /// The stream already finished.
    Done,
    /// No stream with that id exists.
    NotFound,
    /// The stream's state.
    State(StreamState),
    /// The stream was cancelled, as asked.
    Cancelled,
}

impl Answer {
    /// The answer to a state query.
    ///
    /// # Errors
    /// [`unexpected_answer`] for any other kind.
    pub fn into_state(self) -> Result<StreamState, Error> {
        match self {
            Answer::State(state) => Ok(state),
            _ => Err(unexpected_answer()),
        }
    }

    /// The answer to a cancel.
    ///
    /// # Errors
    /// [`unexpected_answer`] for any other kind.
    pub fn into_cancelled(self) -> Result<crate::Cancelled, Error> {
        match self {
            Answer::Cancelled => Ok(crate::Cancelled::Cancelled),
            Answer::Done => Ok(crate::Cancelled::AlreadyDone),
            Answer::NotFound => Ok(crate::Cancelled::NotFound),
            _ => Err(unexpected_answer()),
        }
    }
}

/// An answer of the wrong kind for the request: a bug in the engine, reported rather
/// than panicking.
pub fn unexpected_answer() -> Error {
    Error::UnexpectedReply {
        command: "engine",
        reply: "an answer of the wrong kind for this request".into(),
    }
}

/// A map keyed by handles: one multiply per key instead of SipHash, which a chunk's
/// dispatch would otherwise pay.
type HandleMap<V> = IdMap<Handle, V>;

enum Waiter {
    Request {
        answer: Sender<Result<Answer, Error>>,
        starter: Option<Starter>,
    },
    Reader(Sender<ReaderItem>),
}

struct Inner {
    engine: Engine,
    waiters: HandleMap<Waiter>,
    /// The deadline the timer loop was last told about.
    armed: Option<Instant>,
    closed: bool,
    /// Closed when the hub closes: loops wait on these to stop.
    close_signals: Vec<Sender<()>>,
    /// Closed when a producer's source must stop (cancelled) or the hub closes.
    stop_signals: HandleMap<Sender<()>>,
    /// Reused by `drain`: commands for each connection, chunks for one reader, each
    /// handed to its mailbox under one lock.
    staged_commands: Vec<Command>,
    staged_subscriptions: Vec<Command>,
    staged_chunks: Vec<ReaderItem>,
}

/// What routing leaves for after the unlock: user code, and inputs for the engine that
/// routing itself produced (routing only routes; it never feeds the engine).
enum AfterUnlock {
    /// Start pulling the source of producer `handle` (runs the user's `make_stream`).
    Start(Starter, Handle),
    /// A starter that is not needed (the caller resumed instead): dropping it drops
    /// the user's closure.
    Discard(Starter),
    /// Producer `handle` has no source to pull: fail its stream.
    NoSource(Handle),
    /// Nobody reads `handle` any more: its mailbox's receiver is gone.
    DropReader(Handle),
    /// A command that could not be queued (the driver stopped): fail it as on a lost
    /// connection.
    Unsent(Command),
}
/// The receiving ends a driver's loops empty.
pub struct Queues {
    /// Commands for the command connection, in order.
    pub commands: Receiver<Command>,
    /// SUBSCRIBE / UNSUBSCRIBE for the pub/sub connection, in order.
    pub subscriptions: Receiver<Command>,
    /// A wake-up each time the engine's next deadline changes.
    pub timer: Receiver<()>,
}

/// One engine shared by a context's callers, streams and I/O loops: a cheap handle
/// (clones share the engine).
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// What the handles of one hub share.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    commands: Sender<Command>,
    subscriptions: Sender<Command>,
    timer: Sender<()>,
}

impl Hub {
    /// A hub around `engine`, and the queues its driver must empty.
    pub fn new(engine: Engine) -> (Hub, Queues) {
        let (commands, command_queue) = mailbox();
        let (subscriptions, subscription_queue) = mailbox();
        let (timer, timer_queue) = mailbox();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine,
                waiters: HandleMap::default(),
                armed: None,
                closed: false,
                close_signals: Vec::new(),
                stop_signals: HandleMap::default(),
                staged_commands: Vec::new(),
                staged_subscriptions: Vec::new(),
                staged_chunks: Vec::new(),
            }),
            commands,
            subscriptions,
            timer,
        });
        let hub = Hub { shared };
        let queues = Queues {
            commands: command_queue,
            subscriptions: subscription_queue,
            timer: timer_queue,
        };
        (hub, queues)
    }

    /// Feeds the engine under the lock, routes everything it emitted, then (unlocked)
    /// does what routing left to do.
    pub fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let (result, after) = {
            let mut inner = lock(&self.shared.inner);
            let result = f(&mut inner.engine);
            (result, self.route(&mut inner))
        };
        self.after_unlock(after);
        result
    }

    /// Does what routing left for after the unlock. Inputs it gives the engine are
    /// routed in turn, until nothing is left.
    fn after_unlock(&self, mut after: Vec<AfterUnlock>) {
        while !after.is_empty() {
            let mut inputs = Vec::new();
            for action in after.drain(..) {
                match action {
                    AfterUnlock::Start(starter, handle) => starter(self.clone(), handle),
                    AfterUnlock::Discard(starter) => drop(starter),
                    input => inputs.push(input),
                }
            }
            if inputs.is_empty() {
                return;
            }
            let mut inner = lock(&self.shared.inner);
            let now = Instant::now();
            for input in inputs {
                match input {
                    AfterUnlock::NoSource(handle) => {
                        let _ = inner
                            .engine
                            .fail(handle, "no source was given for this stream");
                    }
                    AfterUnlock::DropReader(handle) => inner.engine.drop_reader(handle),
                    AfterUnlock::Unsent(command) => {
                        let error = ReplyError::Connection("the driver has stopped".into());
                        inner.engine.handle_reply(now, command.id, Err(error));
                    }
                    AfterUnlock::Start(..) | AfterUnlock::Discard(_) => {}
                }
            }
            after = self.route(&mut inner);
        }
    }

    /// Makes a request; its answer arrives in the returned mailbox. `starter` runs if
    /// this caller becomes the producer.
    pub fn request(
        &self,
        make: impl FnOnce(&mut Engine) -> Handle,
        starter: Option<Starter>,
    ) -> (Handle, Receiver<Result<Answer, Error>>) {
        let (answer, answered) = mailbox();
        let mut inner = lock(&self.shared.inner);
        if inner.closed {
            let _ = answer.send(Err(Error::Closed));
            return (Handle(u64::MAX), answered);
        }
        let handle = make(&mut inner.engine);
        inner
            .waiters
            .insert(handle, Waiter::Request { answer, starter });
        let after = self.route(&mut inner);
        drop(inner);
        self.after_unlock(after);
        (handle, answered)
    }

    /// The application stopped reading `handle`.
    pub fn drop_reader(&self, handle: Handle) {
        let (waiter, after) = {
            let mut inner = lock(&self.shared.inner);
            let waiter = inner.waiters.remove(&handle);
            inner.engine.drop_reader(handle);
            (waiter, self.route(&mut inner))
        };
        // After the unlock: a request's starter owns user code.
        drop(waiter);
        self.after_unlock(after);
    }

    /// Feeds producer `handle` what its source gave: `chunks`, then its end if it
    /// ended. Returns whether the loop should pull again. Producer loops call it
    /// through [`Production`](crate::production::Production).
    pub(crate) fn feed_source(
        &self,
        handle: Handle,
        chunks: impl IntoIterator<Item = Bytes>,
        end: Option<SourceEnd>,
    ) -> bool {
        let result = self.with_engine(|engine| {
            for chunk in chunks {
                engine.push_chunk(handle, chunk)?;
            }
            match end {
                None => Ok(true),
                Some(SourceEnd::Finished) => engine.finish(handle).map(|()| false),
                Some(SourceEnd::Failed(message)) => engine.fail(handle, message).map(|()| false),
            }
        });
        match result {
            Ok(more) => more,
            Err(error) => {
                log::debug!("resumable-stream: producer {handle:?} stops: {error}");
                false
            }
        }
    }

    /// A mailbox that ends when the hub closes, for a producer loop to wait on.
    pub fn close_signal(&self) -> Receiver<()> {
        let (signal, signalled) = mailbox();
        let mut inner = lock(&self.shared.inner);
        if inner.closed {
            signal.close();
        } else {
            inner.close_signals.retain(|s| !s.is_receiver_gone());
            inner.close_signals.push(signal);
        }
        signalled
    }

    /// A mailbox that ends when producer `handle`'s source must stop: the stream was
    /// cancelled, or the hub closed. A producer loop waits on it beside its source.
    pub(crate) fn stop_signal(&self, handle: Handle) -> Receiver<()> {
        let (signal, signalled) = mailbox();
        let mut inner = lock(&self.shared.inner);
        if inner.closed {
            signal.close();
        } else {
            inner.stop_signals.insert(handle, signal);
        }
        signalled
    }

    /// Producer `handle`'s loop ended: its stop signal is no longer needed.
    pub(crate) fn forget_stop_signal(&self, handle: Handle) {
        lock(&self.shared.inner).stop_signals.remove(&handle);
    }

    /// Replies to a batch of the command connection, in order.
    pub fn handle_replies(
        &self,
        commands: impl IntoIterator<Item = Command>,
        replies: Vec<Result<Reply, ReplyError>>,
    ) {
        self.with_engine(|engine| {
            let now = Instant::now();
            let mut replies = replies.into_iter();
            for command in commands {
                let reply = replies.next().unwrap_or_else(|| {
                    Err(ReplyError::Connection("no reply for this command".into()))
                });
                engine.handle_reply(now, command.id, reply);
            }
        });
    }

    /// The engine's next deadline, as last routed.
    pub fn next_deadline(&self) -> Option<Instant> {
        lock(&self.shared.inner).armed
    }

    /// Fires the deadlines that have passed.
    pub fn fire_timeouts(&self) {
        self.with_engine(|engine| engine.handle_timeout(Instant::now()));
    }

    /// A reference that does not keep the hub alive (a transport's inbox holds one).
    pub(crate) fn downgrade(&self) -> Weak<Shared> {
        downgrade(&self.shared)
    }

    /// The hub of a reference from [`downgrade`](Self::downgrade), if it is alive.
    pub(crate) fn upgrade(weak: &Weak<Shared>) -> Option<Hub> {
        weak.upgrade().map(|shared| Hub { shared })
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.inner).closed
    }

    /// Ends every reader and request with [`Error::Closed`], every queue and every
    /// producer loop; later requests fail at once.
    pub fn close(&self) {
        let mut inner = lock(&self.shared.inner);
        inner.closed = true;
        // Answered and dropped after the unlock: a request's starter owns user code.
        let waiters = std::mem::take(&mut inner.waiters);
        let close_signals = std::mem::take(&mut inner.close_signals);
        let stop_signals = std::mem::take(&mut inner.stop_signals);
        drop(inner);
        for (_, waiter) in waiters {
            match waiter {
                Waiter::Request { answer, .. } => {
                    let _ = answer.send(Err(Error::Closed));
                }
                Waiter::Reader(reader) => {
                    let _ = reader.send(Err(Error::Closed));
                }
            }
        }
        for signal in close_signals {
            signal.close();
        }
        for (_, signal) in stop_signals {
            signal.close();
        }
        self.shared.commands.close();
        self.shared.subscriptions.close();
        self.shared.timer.close();
    }

    /// Routes every output of the engine: commands to their connection's mailbox,
    /// events to the mailbox of the reader or request they name, the next deadline to
    /// the timer loop. Returns what must wait for the unlock; feeds the engine nothing.
    fn route(&self, inner: &mut Inner) -> Vec<AfterUnlock> {
        let mut after = Vec::new();
        let mut commands = std::mem::take(&mut inner.staged_commands);
        let mut subscriptions = std::mem::take(&mut inner.staged_subscriptions);
        let mut chunks = std::mem::take(&mut inner.staged_chunks);
        while let Some(command) = inner.engine.poll_command() {
            match command.op.connection() {
                Connection::Commands => commands.push(command),
                Connection::PubSub => subscriptions.push(command),
            }
        }
        for (queue, staged) in [
            (&self.shared.commands, &mut commands),
            (&self.shared.subscriptions, &mut subscriptions),
        ] {
            if !staged.is_empty() && !queue.send_all(staged) {
                // Closed: the commands fail as on a lost connection.
                after.extend(staged.drain(..).map(AfterUnlock::Unsent));
            }
        }
        // Consecutive chunks for one reader go to its mailbox under one lock.
        let mut chunks_for = None;
        while let Some(event) = inner.engine.poll_event() {
            match event {
                Event::Data {
                    handle,
                    data,
                    chunk,
                } => {
                    if chunks_for != Some(handle) {
                        if let Some(previous) = chunks_for {
                            deliver(inner, previous, &mut chunks, &mut after);
                        }
                        chunks_for = Some(handle);
                    }
                    chunks.push(Ok(Chunk { data, index: chunk }));
                }
                event => {
                    if let Some(previous) = chunks_for.take() {
                        deliver(inner, previous, &mut chunks, &mut after);
                    }
                    dispatch(inner, event, &mut after);
                }
            }
        }
        if let Some(previous) = chunks_for {
            deliver(inner, previous, &mut chunks, &mut after);
        }
        inner.staged_commands = commands;
        inner.staged_subscriptions = subscriptions;
        inner.staged_chunks = chunks;
        let next = inner.engine.poll_timeout();
        if next != inner.armed {
            inner.armed = next;
            let _ = self.shared.timer.send(());
        }
        after
    }
}

/// Routes one event other than a reader's chunks.
fn dispatch(inner: &mut Inner, event: Event, after: &mut Vec<AfterUnlock>) {
    let handle = event.handle();
    match event {
        Event::Started { role, .. } => {
            let Some(Waiter::Request { answer, starter }) = inner.waiters.remove(&handle) else {
                return;
            };
            match (role, starter) {
                (Role::Producer, Some(starter)) => after.push(AfterUnlock::Start(starter, handle)),
                (Role::Producer, None) => after.push(AfterUnlock::NoSource(handle)),
                (Role::Resumer, Some(starter)) => after.push(AfterUnlock::Discard(starter)),
                (Role::Resumer, None) => {}
            }
            let (reader, stream) = mailbox();
            if answer.send(Ok(Answer::Stream(role, stream))).is_ok() {
                inner.waiters.insert(handle, Waiter::Reader(reader));
            } else {
                // The caller stopped waiting: nobody reads this handle.
                after.push(AfterUnlock::DropReader(handle));
            }
        }
        Event::Data { data, chunk, .. } => {
            let mut one = vec![Ok(Chunk { data, index: chunk })];
            deliver(inner, handle, &mut one, after);
        }
        Event::End { .. } => {
            // Dropping the reader's sender ends its mailbox after what is queued.
            inner.waiters.remove(&handle);
        }
        Event::Failed { error, .. } => match inner.waiters.remove(&handle) {
            Some(Waiter::Reader(reader)) => {
                let _ = reader.send(Err(error));
            }
            Some(Waiter::Request { answer, starter }) => {
                let _ = answer.send(Err(error));
                after.extend(starter.map(AfterUnlock::Discard));
            }
            None => {}
        },
        Event::Done { .. } => answer(inner, handle, Answer::Done, after),
        Event::NotFound { .. } => answer(inner, handle, Answer::NotFound, after),
        Event::State { state, .. } => answer(inner, handle, Answer::State(state), after),
        Event::Cancelled { .. } => answer(inner, handle, Answer::Cancelled, after),
        Event::StopSource { .. } => {
            if let Some(signal) = inner.stop_signals.remove(&handle) {
                signal.close();
            }
        }
    }
}

/// Hands `chunks` to the reader of `handle` (dropping them if it has none), emptying it.
fn deliver(
    inner: &mut Inner,
    handle: Handle,
    chunks: &mut Vec<ReaderItem>,
    after: &mut Vec<AfterUnlock>,
) {
    if let Some(Waiter::Reader(reader)) = inner.waiters.get(&handle) {
        if !reader.send_all(chunks) {
            inner.waiters.remove(&handle);
            after.push(AfterUnlock::DropReader(handle));
        }
    }
    chunks.clear();
}

/// Ends request `handle` with a final, non-stream answer.
fn answer(inner: &mut Inner, handle: Handle, answer: Answer, after: &mut Vec<AfterUnlock>) {
    if let Some(Waiter::Request {
        answer: to,
        starter,
    }) = inner.waiters.remove(&handle)
    {
        let _ = to.send(Ok(answer));
        after.extend(starter.map(AfterUnlock::Discard));
    }
}
