//! The tokio side of the engine: one mutex around the engine, and the tasks that carry
//! its commands to a [`Transport`] and fire its deadlines.
//!
//! Every input follows the same path: lock, feed the engine, drain its outputs
//! (commands into per-connection queues, events to their readers), unlock. The lock is
//! never held across an `.await`.

use crate::transport::{lock, Inbox, Transport};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use resumable_stream::{Command, Connection, Engine, Error, Event, Handle, Role, StreamState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// A source, type-erased: chunks or the source's error text.
pub(crate) type Source = BoxStream<'static, Result<Bytes, String>>;
/// Makes the source, called only when this caller becomes the producer.
pub(crate) type SourceFactory = Box<dyn FnOnce() -> Source + Send>;
/// What a reader receives.
pub(crate) type ReaderItem = Result<Bytes, Error>;

/// The answer to an application request.
pub(crate) enum Answer {
    Stream(Role, mpsc::UnboundedReceiver<ReaderItem>),
    Done,
    NotFound,
    State(StreamState),
}

enum Waiter {
    Request {
        answer: oneshot::Sender<Result<Answer, Error>>,
        factory: Option<SourceFactory>,
    },
    Reader(mpsc::UnboundedSender<ReaderItem>),
}

struct Inner {
    engine: Engine,
    waiters: HashMap<Handle, Waiter>,
    /// The deadline the timer task sleeps toward.
    armed: Option<Instant>,
    closed: bool,
}

/// State shared by the context, its tasks and its streams.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    commands: mpsc::UnboundedSender<Command>,
    subscriptions: mpsc::UnboundedSender<Command>,
    timer: Notify,
    /// Becomes true when the context closes; producer tasks stop on it.
    closed: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
    /// This value's own `Arc`, for the producer tasks it spawns.
    me: Weak<Shared>,
}

/// The background tasks of one context; aborted when the context goes away.
pub(crate) struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Shared {
    /// Starts the driver of `engine` over `transport`.
    pub(crate) fn start(engine: Engine, transport: Arc<dyn Transport>) -> (Arc<Shared>, Tasks) {
        let (commands, command_queue) = mpsc::unbounded_channel();
        let (subscriptions, subscription_queue) = mpsc::unbounded_channel();
        let shared = Arc::new_cyclic(|me| Shared {
            inner: Mutex::new(Inner {
                engine,
                waiters: HashMap::new(),
                armed: None,
                closed: false,
            }),
            commands,
            subscriptions,
            timer: Notify::new(),
            closed: watch::Sender::new(false),
            runtime: tokio::runtime::Handle::current(),
            me: me.clone(),
        });
        transport.attach(Inbox::new(Arc::downgrade(&shared)));
        let tasks = vec![
            tokio::spawn(run_commands(
                shared.clone(),
                transport.clone(),
                command_queue,
            )),
            tokio::spawn(run_subscriptions(
                shared.clone(),
                transport,
                subscription_queue,
            )),
            tokio::spawn(run_timer(shared.clone())),
        ];
        (shared, Tasks(tasks))
    }

    /// Feeds the engine under the lock, then drains its outputs.
    pub(crate) fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let mut inner = lock(&self.inner);
        let result = f(&mut inner.engine);
        self.drain(&mut inner);
        result
    }

    /// Makes a request and waits for its answer.
    pub(crate) async fn request(
        self: &Arc<Self>,
        make: impl FnOnce(&mut Engine) -> Handle,
        factory: Option<SourceFactory>,
    ) -> Result<(Handle, Answer), Error> {
        let (answer, answered) = oneshot::channel();
        let handle = {
            let mut inner = lock(&self.inner);
            if inner.closed {
                return Err(Error::Closed);
            }
            let handle = make(&mut inner.engine);
            inner
                .waiters
                .insert(handle, Waiter::Request { answer, factory });
            self.drain(&mut inner);
            handle
        };
        let answer = answered.await.unwrap_or(Err(Error::Closed))?;
        Ok((handle, answer))
    }

    /// The application stopped reading `handle`.
    pub(crate) fn drop_reader(&self, handle: Handle) {
        let mut inner = lock(&self.inner);
        inner.waiters.remove(&handle);
        inner.engine.drop_reader(handle);
        self.drain(&mut inner);
    }

    /// Ends every reader and request with [`Error::Closed`]; later requests fail at once.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
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
    }

    fn drain(&self, inner: &mut Inner) {
        loop {
            let mut progressed = false;
            while let Some(command) = inner.engine.poll_command() {
                progressed = true;
                let queue = match command.op.connection() {
                    Connection::Commands => &self.commands,
                    Connection::PubSub => &self.subscriptions,
                };
                if let Err(mpsc::error::SendError(command)) = queue.send(command) {
                    // The driver is shutting down: the command fails as a lost connection.
                    let error =
                        resumable_stream::ReplyError::Connection("the driver has stopped".into());
                    inner
                        .engine
                        .handle_reply(Instant::now(), command.id, Err(error));
                }
            }
            while let Some(event) = inner.engine.poll_event() {
                progressed = true;
                self.dispatch(inner, event);
            }
            if !progressed {
                break;
            }
        }
        let next = inner.engine.poll_timeout();
        if next != inner.armed {
            inner.armed = next;
            self.timer.notify_one();
        }
    }

    fn dispatch(&self, inner: &mut Inner, event: Event) {
        let handle = event.handle();
        let final_event = event.is_final();
        let waiter = if final_event {
            inner.waiters.remove(&handle)
        } else {
            inner.waiters.get(&handle).map(|w| match w {
                Waiter::Reader(tx) => Waiter::Reader(tx.clone()),
                Waiter::Request { .. } => Waiter::Reader(mpsc::unbounded_channel().0),
            })
        };
        match (event, waiter) {
            (Event::Started { role, .. }, Some(_)) => {
                let Some(Waiter::Request { answer, factory }) = inner.waiters.remove(&handle)
                else {
                    return;
                };
                let (reader, stream) = mpsc::unbounded_channel();
                if role == Role::Producer {
                    match factory {
                        Some(factory) => {
                            let source = factory();
                            if let Some(shared) = self.me.upgrade() {
                                self.runtime.spawn(produce(shared, handle, source));
                            }
                        }
                        None => {
                            let _ = inner
                                .engine
                                .fail(handle, "no source was given for this stream");
                        }
                    }
                }
                if answer.send(Ok(Answer::Stream(role, stream))).is_ok() {
                    inner.waiters.insert(handle, Waiter::Reader(reader));
                } else {
                    inner.engine.drop_reader(handle);
                }
            }
            (Event::Data { data, .. }, Some(Waiter::Reader(reader))) => {
                if reader.send(Ok(data)).is_err() {
                    inner.waiters.remove(&handle);
                    inner.engine.drop_reader(handle);
                }
            }
            (Event::End { .. }, _) => {}
            (Event::Failed { error, .. }, Some(Waiter::Reader(reader))) => {
                let _ = reader.send(Err(error));
            }
            (Event::Failed { error, .. }, Some(Waiter::Request { answer, .. })) => {
                let _ = answer.send(Err(error));
            }
            (Event::Done { .. }, Some(Waiter::Request { answer, .. })) => {
                let _ = answer.send(Ok(Answer::Done));
            }
            (Event::NotFound { .. }, Some(Waiter::Request { answer, .. })) => {
                let _ = answer.send(Ok(Answer::NotFound));
            }
            (Event::State { state, .. }, Some(Waiter::Request { answer, .. })) => {
                let _ = answer.send(Ok(Answer::State(state)));
            }
            (event, _) => log::debug!("resumable-stream: no reader for {event:?}"),
        }
    }
}

/// Pulls the source of the stream `handle` produces and feeds the engine, until the
/// source ends or fails, or the context closes. The local reader going away does not
/// stop it: the producer always finishes the stream for its listeners.
async fn produce(shared: Arc<Shared>, handle: Handle, mut source: Source) {
    let mut closed = shared.closed.subscribe();
    loop {
        let item = tokio::select! {
            item = source.next() => item,
            _ = closed.wait_for(|closed| *closed) => return,
        };
        let result = shared.with_engine(|engine| match item {
            Some(Ok(chunk)) => engine.push_chunk(handle, chunk).map(|()| true),
            Some(Err(message)) => engine.fail(handle, message).map(|()| false),
            None => engine.finish(handle).map(|()| false),
        });
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                log::warn!("resumable-stream: producer {handle:?} stopped: {error}");
                return;
            }
        }
    }
}

/// Carries commands to the transport: everything queued goes as one pipeline, one
/// pipeline in flight at a time, so the batch grows with the load.
async fn run_commands(
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    mut queue: mpsc::UnboundedReceiver<Command>,
) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 4096).await > 0 {
        let replies = transport.execute(&batch).await;
        shared.with_engine(|engine| {
            let now = Instant::now();
            let mut replies = replies.into_iter();
            for command in batch.drain(..) {
                let reply = replies.next().unwrap_or_else(|| {
                    Err(resumable_stream::ReplyError::Connection(
                        "missing reply".into(),
                    ))
                });
                engine.handle_reply(now, command.id, reply);
            }
        });
    }
}

/// Carries SUBSCRIBE and UNSUBSCRIBE to the transport, in order.
async fn run_subscriptions(
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    mut queue: mpsc::UnboundedReceiver<Command>,
) {
    while let Some(command) = queue.recv().await {
        let result = match command.op {
            resumable_stream::Op::Subscribe { channel } => transport.subscribe(channel).await,
            resumable_stream::Op::Unsubscribe { channel } => transport.unsubscribe(channel).await,
            _ => Err(resumable_stream::ReplyError::Connection(
                "not a pub/sub command".into(),
            )),
        };
        let reply = result.map(|()| resumable_stream::Reply::Ok);
        shared.with_engine(|engine| engine.handle_reply(Instant::now(), command.id, reply));
    }
}

/// Sleeps until the engine's next deadline, and fires it.
async fn run_timer(shared: Arc<Shared>) {
    loop {
        // Registered before the deadline is read, so a change in between is not missed.
        let notified = shared.timer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let deadline = lock(&shared.inner).armed;
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                        shared.with_engine(|engine| engine.handle_timeout(Instant::now()));
                    }
                    () = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}
