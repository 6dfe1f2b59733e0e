//! Producing a stream: the two ways a source is pulled (a `Stream` on a task of the
//! context's runtime, an `Iterator` on a thread of its own) and what they share, a
//! [`Production`]: the loop's hold on its stream. It feeds the hub what the source
//! gives, catches a panic in the user's `make_stream` or source, and ends the stream
//! as a source error if the loop stops before the source did (a panic, a task dropped
//! by its runtime, a thread that could not start). So no reader waits for a producer
//! that no longer runs, and the user's code runs on the producer's task or thread,
//! never under the hub's lock.

use crate::hub::{Hub, Starter};
use crate::mailbox::Receiver;
use crate::runtime::Runtime;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::future;
use resumable_stream::{Handle, SourceError};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEnd {
    /// It yielded its last item.
    Finished,
    /// It failed (or panicked): the readers' `Error::Source`.
    Failed(SourceError),
}

/// Producer `handle`'s loop: feed it, and drop it when the loop ends.
pub struct Production {
    hub: Hub,
    handle: Handle,
    /// Until the source's end has been fed (or the engine stopped the stream).
    open: bool,
}

impl Production {
    /// The loop of producer `handle`, which [`Hub`] handed to a starter.
    pub fn new(hub: Hub, handle: Handle) -> Production {
        Production {
            hub,
            handle,
            open: true,
        }
    }

    /// A mailbox that ends when the source must stop: the stream was cancelled, or the
    /// context closed. The loop waits on it beside its source.
    pub fn stop_signal(&self) -> Receiver<()> {
        self.hub.stop_signal(self.handle)
    }

    /// Feeds what the source gave: `chunks`, then its end if it ended. Returns whether
    /// the loop should pull again; once it returns `false` the stream is over.
    pub fn feed(
        &mut self,
        chunks: impl IntoIterator<Item = Bytes>,
        end: Option<SourceEnd>,
    ) -> bool {
        if !self.open {
            return false;
        }
        self.open = self.hub.feed_source(self.handle, chunks, end);
        self.open
    }

    /// The stream was stopped from outside (cancelled, or the context closed): the loop
    /// ends without feeding anything more.
    pub fn stopped(&mut self) {
        self.open = false;
    }

    /// Runs the user's `make` (their `make_stream`), turning a panic into the
    /// stream's end: `None` then, and the loop must stop.
    pub fn make<S>(&mut self, make: impl FnOnce() -> S) -> Option<S> {
        match catch_unwind(AssertUnwindSafe(make)) {
            Ok(source) => Some(source),
            Err(panic) => {
                self.feed([], Some(panicked("make_stream", &*panic)));
                None
            }
        }
    }
}

impl Drop for Production {
    fn drop(&mut self) {
        if self.open {
            let end = SourceEnd::Failed(SourceError::new(
                "the producer stopped before its source ended: its task was dropped, or its thread could not start",
            ));
            self.hub.feed_source(self.handle, [], Some(end));
        }
        self.hub.forget_stop_signal(self.handle);
    }
}

/// The source error for a panic in `what` (the user's `make_stream`, or the source).
fn panicked(what: &str, payload: &(dyn Any + Send)) -> SourceEnd {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    SourceEnd::Failed(SourceError::new(format!("{what} panicked: {message}")))
}

/// Calls `poll`, turning a panic into the source's end.
fn catch_source_panic<T>(poll: impl FnOnce() -> T) -> Result<T, SourceEnd> {
    catch_unwind(AssertUnwindSafe(poll)).map_err(|panic| panicked("the source", &*panic))
}

/// The starter of a stream whose source is `make_stream`'s `Stream`, pulled on a task
/// of `runtime`.
pub fn task_starter<F, S, B, E>(runtime: Arc<dyn Runtime>, make_stream: F) -> Starter
where
    F: FnOnce() -> S + Send + 'static,
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: Into<Bytes>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The stream's hold is taken before the spawn: a task the runtime drops unrun
    // still ends its stream.
    Box::new(move |hub, handle| {
        let production = Production::new(hub, handle);
        runtime.spawn(Box::pin(produce_task(production, make_stream)));
    })
}

/// The starter of a stream whose source is `make_stream`'s `Iterator`, pulled on a
/// thread of its own (its `next` may block).
pub fn thread_starter<F, I, B, E>(make_stream: F) -> Starter
where
    F: FnOnce() -> I + Send + 'static,
    I: IntoIterator<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Box::new(move |hub: Hub, handle: Handle| {
        let stream_id = hub.with_engine(|engine| engine.stream_id(handle).map(str::to_owned));
        let production = Production::new(hub, handle);
        let spawned = std::thread::Builder::new()
            .name("resumable-stream-producer".into())
            .spawn(move || produce_thread(production, make_stream));
        if let Err(error) = spawned {
            // The closure, and the `Production` in it, is dropped: the stream fails
            // as a source error.
            let stream_id = stream_id.as_deref().unwrap_or("a stopped stream");
            log::error!(
                "resumable-stream: cannot start the producer thread of {stream_id:?}: {error}"
            );
        }
    })
}

/// A producer thread's body: `make_stream`, then its items, one at a time.
fn produce_thread<F, I, B, E>(mut production: Production, make_stream: F)
where
    F: FnOnce() -> I,
    I: IntoIterator<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(items) = production.make(make_stream) else {
        return;
    };
    let mut items = items.into_iter();
    loop {
        let fed = match catch_source_panic(|| items.next()) {
            Ok(Some(Ok(chunk))) => production.feed([chunk.into()], None),
            Ok(Some(Err(error))) => {
                production.feed([], Some(SourceEnd::Failed(SourceError::from_error(error))))
            }
            Ok(None) => production.feed([], Some(SourceEnd::Finished)),
            Err(end) => production.feed([], Some(end)),
        };
        if !fed {
            return;
        }
    }
}

/// The most chunks a producer loop takes from its source before feeding the engine.
const SOURCE_BATCH: usize = 512;

/// Makes a producer's source (the user's `make_stream`) and pulls it into the engine
/// until it ends, fails or panics, the stream is cancelled, or the context closes. The
/// local reader going away does not stop it.
///
/// Whatever the source has ready (up to [`SOURCE_BATCH`] chunks) is fed to the engine
/// under one lock, so a fast source costs one lock, one drain and one reader wake-up
/// per batch rather than per chunk; a source that yields one chunk at a time is fed
/// one chunk at a time, as before. After a whole batch the loop returns to the
/// runtime once before pulling again, so the readers (and the command loop) run
/// between batches: what waits in their mailboxes stays within a batch or two,
/// in memory that is reused, instead of growing to the whole stream while a source
/// that is always ready keeps the task busy.
async fn produce_task<F, S>(mut production: Production, make_stream: F)
where
    F: FnOnce() -> S,
    S: Source,
{
    let Some(source) = production.make(make_stream) else {
        return;
    };
    let mut source = std::pin::pin!(source);
    let stop = production.stop_signal();
    // Grows to what the source has ready, not to SOURCE_BATCH: a context may run
    // thousands of producer loops at once.
    let mut batch = Vec::new();
    let mut pause = Pause::No;
    loop {
        let step = future::poll_fn(|cx| {
            if stop.poll_recv(cx).is_ready() {
                return Poll::Ready(Pulled::Stop);
            }
            match std::mem::replace(&mut pause, Pause::No) {
                Pause::No => {}
                Pause::UntilWoken => return Poll::Pending,
                Pause::Yield => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            // A panicking source ends the stream as a source error (after the chunks
            // it gave before); it is not polled again.
            catch_source_panic(|| pull(source.as_mut(), cx, &mut batch))
                .unwrap_or_else(|end| Poll::Ready(Pulled::End(end)))
        })
        .await;
        let end = match step {
            Pulled::Stop => return production.stopped(),
            Pulled::Chunks { source_pending } => {
                pause = if source_pending {
                    Pause::UntilWoken
                } else {
                    Pause::Yield
                };
                None
            }
            Pulled::End(end) => Some(end),
        };
        if !production.feed(batch.drain(..), end) {
            return;
        }
    }
}

/// What a producer loop pulls: a user's `Stream`, its items made what the engine takes
/// (the chunk's `Bytes`, or the error's text), unboxed.
trait Source {
    /// The next item, as [`Stream::poll_next`].
    fn poll_chunk(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Bytes, SourceError>>>;
}

impl<S, B, E> Source for S
where
    S: Stream<Item = Result<B, E>>,
    B: Into<Bytes>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn poll_chunk(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Bytes, SourceError>>> {
        self.poll_next(cx)
            .map(|item| item.map(|item| item.map(Into::into).map_err(SourceError::from_error)))
    }
}

/// Polls `source` for what it has ready, into `batch`, up to [`SOURCE_BATCH`] chunks.
fn pull<S: Source>(
    mut source: Pin<&mut S>,
    cx: &mut std::task::Context<'_>,
    batch: &mut Vec<Bytes>,
) -> Poll<Pulled> {
    loop {
        match source.as_mut().poll_chunk(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                batch.push(chunk);
                if batch.len() == SOURCE_BATCH {
                    return Poll::Ready(Pulled::Chunks {
                        source_pending: false,
                    });
                }
            }
            Poll::Ready(Some(Err(error))) => {
                return Poll::Ready(Pulled::End(SourceEnd::Failed(error)))
            }
            Poll::Ready(None) => return Poll::Ready(Pulled::End(SourceEnd::Finished)),
            Poll::Pending if batch.is_empty() => return Poll::Pending,
            Poll::Pending => {
                return Poll::Ready(Pulled::Chunks {
                    source_pending: true,
                })
            }
        }
    }
}

/// What a producer loop took from its source.
enum Pulled {
    /// The stream must stop (cancelled, or the context closed).
    Stop,
    /// Chunks, and the source may have more; `source_pending`: it said Pending after
    /// them, so it has registered a wake-up.
    Chunks { source_pending: bool },
    /// Chunks, then the source's end.
    End(SourceEnd),
}

/// What a producer loop does before it pulls its source again.
enum Pause {
    /// Nothing: it pulls.
    No,
    /// The source said Pending after the last batch: it has registered a wake-up, and
    /// must not be polled again before the task returns to the runtime (a source that
    /// yields, as `yield_now` does, would otherwise never let anything else run).
    UntilWoken,
    /// A whole batch was fed: the task returns to the runtime once, woken at once,
    /// so that what the batch woke runs first.
    Yield,
}
