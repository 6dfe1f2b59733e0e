//! The engine behind one lock, and the routing of its outputs: commands into one
//! mailbox per connection, events to the mailbox of the reader or request they name.
//!
//! Every input from any thread or task takes the same path: lock, feed the engine,
//! drain every output, unlock. The lock is never held while waiting on anything, so
//! the hub works the same under tokio, async-std or plain threads. What differs per
//! runtime is only how the loops that empty the mailboxes wait, and how a producer's
//! source is pulled: a driver passes that in as a [`Starter`].

use crate::mailbox::{mailbox, Receiver, Sender};
use crate::sync::{lock, new_cyclic, Arc, Mutex, Weak};
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
/// feed through [`Hub::feed`].
pub type Starter = Box<dyn FnOnce(Arc<Hub>, Handle) + Send>;

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

/// The receiving ends a driver's loops empty.
pub struct Queues {
    /// Commands for the command connection, in order.
    pub commands: Receiver<Command>,
    /// SUBSCRIBE / UNSUBSCRIBE for the pub/sub connection, in order.
    pub subscriptions: Receiver<Command>,
    /// A wake-up each time the engine's next deadline changes.
    pub timer: Receiver<()>,
}

/// One engine shared by a context's callers, streams and I/O loops.
pub struct Hub {
    inner: Mutex<Inner>,
    commands: Sender<Command>,
    subscriptions: Sender<Command>,
    timer: Sender<()>,
    me: Weak<Hub>,
}

impl Hub {
    /// A hub around `engine`, and the queues its driver must empty.
    pub fn new(engine: Engine) -> (Arc<Hub>, Queues) {
        let (commands, command_queue) = mailbox();
        let (subscriptions, subscription_queue) = mailbox();
        let (timer, timer_queue) = mailbox();
        let hub = new_cyclic(|me| Hub {
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
            me,
        });
        let queues = Queues {
            commands: command_queue,
            subscriptions: subscription_queue,
            timer: timer_queue,
        };
        (hub, queues)
    }

    /// Feeds the engine under the lock, then routes everything it emitted.
    pub fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let mut inner = lock(&self.inner);
        let result = f(&mut inner.engine);
        self.drain(&mut inner);
        result
    }

    /// Makes a request; its answer arrives in the returned mailbox. `starter` runs if
    /// this caller becomes the producer.
    pub fn request(
        &self,
        make: impl FnOnce(&mut Engine) -> Handle,
        starter: Option<Starter>,
    ) -> (Handle, Receiver<Result<Answer, Error>>) {
        let (answer, answered) = mailbox();
        let mut inner = lock(&self.inner);
        if inner.closed {
            let _ = answer.send(Err(Error::Closed));
            return (Handle(u64::MAX), answered);
        }
        let handle = make(&mut inner.engine);
        inner
            .waiters
            .insert(handle, Waiter::Request { answer, starter });
        self.drain(&mut inner);
        (handle, answered)
    }

    /// The application stopped reading `handle`.
    pub fn drop_reader(&self, handle: Handle) {
        let mut inner = lock(&self.inner);
        inner.waiters.remove(&handle);
        inner.engine.drop_reader(handle);
        self.drain(&mut inner);
    }

    /// One step of a producer loop: the source's next item (`None` at its end). Returns
    /// whether the loop should pull again.
    pub fn feed(&self, handle: Handle, item: Option<Result<Bytes, String>>) -> bool {
        let result = self.with_engine(|engine| match item {
            Some(Ok(chunk)) => engine.push_chunk(handle, chunk).map(|()| true),
            Some(Err(message)) => engine.fail(handle, message).map(|()| false),
            None => engine.finish(handle).map(|()| false),
        });
        match result {
            Ok(more) => more,
            Err(error) => {
                log::debug!("resumable-stream: producer {handle:?} stops: {error}");
                false
            }
        }
    }

    /// Several steps of a producer loop under one lock: `chunks`, then, if `last` is
    /// given, the source's last item (`None`: its end; else its error). Returns whether
    /// the loop should pull again.
    pub fn feed_batch(
        &self,
        handle: Handle,
        chunks: impl IntoIterator<Item = Bytes>,
        last: Option<Option<Result<Bytes, String>>>,
    ) -> bool {
        let result = self.with_engine(|engine| {
            for chunk in chunks {
                engine.push_chunk(handle, chunk)?;
            }
            match last {
                None => Ok(true),
                Some(Some(Ok(chunk))) => engine.push_chunk(handle, chunk).map(|()| true),
                Some(Some(Err(message))) => engine.fail(handle, message).map(|()| false),
                Some(None) => engine.finish(handle).map(|()| false),
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
        let mut inner = lock(&self.inner);
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
    pub fn stop_signal(&self, handle: Handle) -> Receiver<()> {
        let (signal, signalled) = mailbox();
        let mut inner = lock(&self.inner);
        if inner.closed {
            signal.close();
        } else {
            inner.stop_signals.insert(handle, signal);
        }
        signalled
    }

    /// Producer `handle`'s loop ended: its stop signal is no longer needed.
    pub fn forget_stop_signal(&self, handle: Handle) {
        lock(&self.inner).stop_signals.remove(&handle);
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
        lock(&self.inner).armed
    }

    /// Fires the deadlines that have passed.
    pub fn fire_timeouts(&self) {
        self.with_engine(|engine| engine.handle_timeout(Instant::now()));
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }

    /// Ends every reader and request with [`Error::Closed`], every queue and every
    /// producer loop; later requests fail at once.
    pub fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        for (_, waiter) in inner.waiters.drain() {
            match waiter {
                Waiter::Request { answer, .. } => {
                    let _ = answer.send(Err(Error::Closed));
                }
                Waiter::Reader(reader) => {
                    let _ = reader.send(Err(Error::Closed));
                }
            }
        }
        for signal in inner.close_signals.drain(..) {
            signal.close();
        }
        for (_, signal) in inner.stop_signals.drain() {
            signal.close();
        }
        drop(inner);
        self.commands.close();
        self.subscriptions.close();
        self.timer.close();
    }

    fn drain(&self, inner: &mut Inner) {
        let mut commands = std::mem::take(&mut inner.staged_commands);
        let mut subscriptions = std::mem::take(&mut inner.staged_subscriptions);
        let mut chunks = std::mem::take(&mut inner.staged_chunks);
        loop {
            let mut progressed = false;
            while let Some(command) = inner.engine.poll_command() {
                progressed = true;
                match command.op.connection() {
                    Connection::Commands => commands.push(command),
                    Connection::PubSub => subscriptions.push(command),
                }
            }
            for (queue, staged) in [
                (&self.commands, &mut commands),
                (&self.subscriptions, &mut subscriptions),
            ] {
                if !staged.is_empty() && !queue.send_all(staged) {
                    // Closed: the commands fail as on a lost connection.
                    for command in staged.drain(..) {
                        let error = ReplyError::Connection("the driver has stopped".into());
                        inner
                            .engine
                            .handle_reply(Instant::now(), command.id, Err(error));
                    }
                }
            }
            // Consecutive chunks for one reader go to its mailbox under one lock.
            let mut chunks_for = None;
            while let Some(event) = inner.engine.poll_event() {
                progressed = true;
                match event {
                    Event::Data {
                        handle,
                        data,
                        chunk,
                    } => {
                        if chunks_for != Some(handle) {
                            if let Some(previous) = chunks_for {
                                deliver(inner, previous, &mut chunks);
                            }
                            chunks_for = Some(handle);
                        }
                        chunks.push(Ok(Chunk { data, index: chunk }));
                    }
                    event => {
                        if let Some(previous) = chunks_for.take() {
                            deliver(inner, previous, &mut chunks);
                        }
                        self.dispatch(inner, event);
                    }
                }
            }
            if let Some(previous) = chunks_for {
                deliver(inner, previous, &mut chunks);
            }
            if !progressed {
                break;
            }
        }
        inner.staged_commands = commands;
        inner.staged_subscriptions = subscriptions;
        inner.staged_chunks = chunks;
        let next = inner.engine.poll_timeout();
        if next != inner.armed {
            inner.armed = next;
            let _ = self.timer.send(());
        }
    }

    fn dispatch(&self, inner: &mut Inner, event: Event) {
        let handle = event.handle();
        match event {
            Event::Started { role, .. } => {
                let Some(Waiter::Request { answer, starter }) = inner.waiters.remove(&handle)
                else {
                    return;
                };
                if role == Role::Producer {
                    match (starter, self.me.upgrade()) {
                        (Some(starter), Some(hub)) => starter(hub, handle),
                        _ => {
                            let _ = inner
                                .engine
                                .fail(handle, "no source was given for this stream");
                        }
                    }
                }
                let (reader, stream) = mailbox();
                if answer.send(Ok(Answer::Stream(role, stream))).is_ok() {
                    inner.waiters.insert(handle, Waiter::Reader(reader));
                } else {
                    // The caller stopped waiting: nobody reads this handle.
                    inner.engine.drop_reader(handle);
                }
            }
            Event::Data { data, chunk, .. } => {
                if let Some(Waiter::Reader(reader)) = inner.waiters.get(&handle) {
                    if reader.send(Ok(Chunk { data, index: chunk })).is_err() {
                        inner.waiters.remove(&handle);
                        inner.engine.drop_reader(handle);
                    }
                }
            }
            Event::End { .. } => {
                // Dropping the reader's sender ends its mailbox after what is queued.
                inner.waiters.remove(&handle);
            }
            Event::Failed { error, .. } => match inner.waiters.remove(&handle) {
                Some(Waiter::Reader(reader)) => {
                    let _ = reader.send(Err(error));
                }
                Some(Waiter::Request { answer, .. }) => {
                    let _ = answer.send(Err(error));
                }
                None => {}
            },
            Event::Done { .. } => answer(inner, handle, Answer::Done),
            Event::NotFound { .. } => answer(inner, handle, Answer::NotFound),
            Event::State { state, .. } => answer(inner, handle, Answer::State(state)),
            Event::Cancelled { .. } => answer(inner, handle, Answer::Cancelled),
            Event::StopSource { .. } => {
                if let Some(signal) = inner.stop_signals.remove(&handle) {
                    signal.close();
                }
            }
        }
    }
}

/// Hands `chunks` to the reader of `handle` (dropping them if it has none), emptying it.
fn deliver(inner: &mut Inner, handle: Handle, chunks: &mut Vec<ReaderItem>) {
    if let Some(Waiter::Reader(reader)) = inner.waiters.get(&handle) {
        if !reader.send_all(chunks) {
            inner.waiters.remove(&handle);
            inner.engine.drop_reader(handle);
        }
    }
    chunks.clear();
}

fn answer(inner: &mut Inner, handle: Handle, answer: Answer) {
    if let Some(Waiter::Request { answer: to, .. }) = inner.waiters.remove(&handle) {
        let _ = to.send(Ok(answer));
    }
}
