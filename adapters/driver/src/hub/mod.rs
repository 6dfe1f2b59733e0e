//! The engine behind one lock, and the routing of its outputs: commands into one
//! mailbox per connection (commands, pub/sub, blocking reads), events to the mailbox
//! of the reader or request they name.
//!
//! Every input from any thread or task takes the same path: lock, feed the engine,
//! route every output, unlock, then do what routing left for after the lock. The lock
//! holds only the engine and the routing tables: it is never held while waiting on
//! anything, and no user code runs under it (a producer's `make_stream`, its source
//! and the closures that own them start or drop after the unlock). So the hub works
//! the same under tokio, async-std or plain threads. What differs per runtime is only
//! how the loops that empty the mailboxes wait, and how a producer's source is
//! pulled: a driver passes that in as a [`Starter`].

mod waiters;

pub use waiters::Waiter;
use waiters::{deliver, dispatch};

use crate::mailbox::{mailbox, Receiver, Sender};
use crate::production::SourceEnd;
use crate::request::{Answer, Request};
use crate::sync::{downgrade, lock, Arc, Mutex, Weak};
use bytes::Bytes;
use resumable_stream::HandleMap;
use resumable_stream::{
    Command, CommandId, Connection, Engine, Error, Event, Handle, Reply, ReplyError,
};
use std::collections::VecDeque;
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
/// so: a task on an async runtime, or a thread ([`task_starter`](crate::task_starter),
/// [`thread_starter`](crate::thread_starter)). Called with the hub and the handle to
/// feed, never under the hub's lock; it must return at once and call the user's `make_stream` on the task
/// or thread it starts, so that a slow or panicking `make_stream` delays or fails
/// only its own stream.
pub type Starter = Box<dyn FnOnce(Hub, Handle) + Send>;

struct Inner {
    engine: Engine,
    waiters: HandleMap<Waiter>,
    /// The deadline the timer loop was last told about.
    armed: Option<Instant>,
    closed: bool,
    /// Shutting down: no new request, and `drained` signals close once no stream is
    /// produced here any more.
    shutting_down: bool,
    drained: Vec<Sender<()>>,
    /// Closed when the hub closes: loops wait on these to stop.
    close_signals: Vec<Sender<()>>,
    /// Closed when a producer's source must stop (cancelled) or the hub closes.
    stop_signals: HandleMap<Sender<()>>,
    /// Reused by `route`: commands for each connection, chunks for one reader, each
    /// handed to its mailbox under one lock (swapped with the mailbox's empty queue,
    /// so the queues' memory circulates instead of growing anew).
    staged_commands: VecDeque<Command>,
    staged_subscriptions: VecDeque<Command>,
    staged_blocking: VecDeque<Command>,
    staged_chunks: VecDeque<ReaderItem>,
}

/// What routing leaves for after the unlock: user code, and inputs for the engine that
/// routing itself produced (routing only routes; it never feeds the engine).
enum AfterUnlock {
    /// Start pulling the source of producer `handle` (runs the user's `make_stream`).
    Start(Starter, Handle),
    /// A starter that is not needed (the caller resumed instead): dropping it drops
    /// the user's closure.
    Discard(Starter),
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
    /// Blocking reads (`XREAD ... BLOCK`), each for a connection of its own, in any
    /// order.
    pub blocking: Receiver<Command>,
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
    blocking: Sender<Command>,
    timer: Sender<()>,
}

impl Hub {
    /// A hub around `engine`, and the queues its driver must empty.
    pub fn new(engine: Engine) -> (Hub, Queues) {
        let (commands, command_queue) = mailbox();
        let (subscriptions, subscription_queue) = mailbox();
        let (blocking, blocking_queue) = mailbox();
        let (timer, timer_queue) = mailbox();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                engine,
                waiters: HandleMap::default(),
                armed: None,
                closed: false,
                shutting_down: false,
                drained: Vec::new(),
                close_signals: Vec::new(),
                stop_signals: HandleMap::default(),
                staged_commands: VecDeque::new(),
                staged_subscriptions: VecDeque::new(),
                staged_blocking: VecDeque::new(),
                staged_chunks: VecDeque::new(),
            }),
            commands,
            subscriptions,
            blocking,
            timer,
        });
        let hub = Hub { shared };
        let queues = Queues {
            commands: command_queue,
            subscriptions: subscription_queue,
            blocking: blocking_queue,
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

    /// Makes a request: `make` asks the engine, `waiter` says who waits for the
    /// answer (it gets the answer's sender).
    pub fn request<T: Answer>(
        &self,
        make: impl FnOnce(&mut Engine) -> Handle,
        waiter: impl FnOnce(Sender<Result<T::Raw, Error>>) -> Waiter,
    ) -> Request<T> {
        let (answer, answered) = mailbox();
        let waiter = waiter(answer);
        let mut inner = lock(&self.shared.inner);
        let mut after = Vec::new();
        if inner.closed || inner.shutting_down {
            let error = if inner.closed {
                Error::Closed
            } else {
                Error::ShuttingDown
            };
            drop(inner);
            waiter.fail(error, &mut after);
        } else {
            let handle = make(&mut inner.engine);
            inner.waiters.insert(handle, waiter);
            after = self.route(&mut inner);
            drop(inner);
        }
        self.after_unlock(after);
        Request::new(answered, self.clone())
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
            let fed = feed(engine, handle, chunks, end);
            fed.map_err(|error| (engine.stream_id(handle).map(str::to_owned), error))
        });
        match result {
            Ok(more) => more,
            Err((stream_id, error)) => {
                let stream_id = stream_id.as_deref().unwrap_or("a finished stream");
                log::debug!("resumable-stream: the producer of {stream_id:?} stops: {error}");
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
                let reply = replies.next().unwrap_or_else(crate::runtime::missing_reply);
                engine.handle_reply(now, command.id, reply);
            }
        });
    }

    /// The reply to one command, whatever connection it travelled on (a blocking
    /// read's, answered alone).
    pub fn handle_reply(&self, id: CommandId, reply: Result<Reply, ReplyError>) {
        self.with_engine(|engine| engine.handle_reply(Instant::now(), id, reply));
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

    /// Starts a graceful shutdown: later requests fail with [`Error::ShuttingDown`];
    /// what runs goes on. The returned mailbox ends once no stream is produced here any
    /// more (at once if none is), or when the hub closes.
    pub fn shut_down(&self) -> Receiver<()> {
        let (signal, drained) = mailbox();
        let mut inner = lock(&self.shared.inner);
        inner.shutting_down = true;
        if inner.closed || inner.engine.producing() == 0 {
            signal.close();
        } else {
            inner.drained.push(signal);
        }
        drained
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
        let drained = std::mem::take(&mut inner.drained);
        let stop_signals = std::mem::take(&mut inner.stop_signals);
        drop(inner);
        let mut after = Vec::new();
        for (_, waiter) in waiters {
            waiter.fail(Error::Closed, &mut after);
        }
        // Nothing here feeds the engine: dropping the starters is all that is left.
        drop(after);
        for signal in close_signals.into_iter().chain(drained) {
            signal.close();
        }
        for (_, signal) in stop_signals {
            signal.close();
        }
        self.shared.commands.close();
        self.shared.subscriptions.close();
        self.shared.blocking.close();
        self.shared.timer.close();
    }

    /// Routes every output of the engine: commands to their connection's mailbox,
    /// events to the mailbox of the reader or request they name, the next deadline to
    /// the timer loop. Returns what must wait for the unlock; feeds the engine nothing.
    fn route(&self, inner: &mut Inner) -> Vec<AfterUnlock> {
        let mut after = Vec::new();
        let mut commands = std::mem::take(&mut inner.staged_commands);
        let mut subscriptions = std::mem::take(&mut inner.staged_subscriptions);
        let mut blocking = std::mem::take(&mut inner.staged_blocking);
        let mut chunks = std::mem::take(&mut inner.staged_chunks);
        while let Some(command) = inner.engine.poll_command() {
            match command.op.connection() {
                Connection::PubSub => subscriptions.push_back(command),
                Connection::Blocking => blocking.push_back(command),
                // The command connection, and any a later engine adds before this
                // driver knows it: the transport answers what it cannot run.
                _ => commands.push_back(command),
            }
        }
        for (queue, staged) in [
            (&self.shared.commands, &mut commands),
            (&self.shared.subscriptions, &mut subscriptions),
            (&self.shared.blocking, &mut blocking),
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
                    chunks.push_back(Ok(Chunk { data, index: chunk }));
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
        inner.staged_blocking = blocking;
        inner.staged_chunks = chunks;
        if inner.shutting_down && !inner.drained.is_empty() && inner.engine.producing() == 0 {
            for signal in inner.drained.drain(..) {
                signal.close();
            }
        }
        let next = inner.engine.poll_timeout();
        if next != inner.armed {
            inner.armed = next;
            let _ = self.shared.timer.send(());
        }
        after
    }
}

/// Gives the engine what producer `handle`'s source gave; whether it wants more.
fn feed(
    engine: &mut Engine,
    handle: Handle,
    chunks: impl IntoIterator<Item = Bytes>,
    end: Option<SourceEnd>,
) -> Result<bool, Error> {
    for chunk in chunks {
        engine.push_chunk(handle, chunk)?;
    }
    match end {
        None => Ok(true),
        Some(SourceEnd::Finished) => engine.finish(handle).map(|()| false),
        Some(SourceEnd::Failed(message)) => engine.fail(handle, message).map(|()| false),
    }
}
