//! A producer loop's hold on its stream, shared by every driver: it feeds the hub
//! what the source gives, catches a panic in the user's `make_stream` or source, and
//! ends the stream as a source error if the loop stops before the source did (a
//! panic, a task dropped by its runtime, a thread that could not start). So no reader
//! waits for a producer that no longer runs.

use crate::hub::Hub;
use crate::mailbox::Receiver;
use bytes::Bytes;
use resumable_stream::Handle;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEnd {
    /// It yielded its last item.
    Finished,
    /// It failed (or panicked), with this message for the readers' `Error::Source`.
    Failed(String),
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
            let end = SourceEnd::Failed(
                "the producer stopped before its source ended: its task was dropped, or its thread could not start".into(),
            );
            self.hub.feed_source(self.handle, [], Some(end));
        }
        self.hub.forget_stop_signal(self.handle);
    }
}

/// The source error for a panic in `what` (the user's `make_stream`, or the source).
pub fn panicked(what: &str, payload: &(dyn Any + Send)) -> SourceEnd {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    SourceEnd::Failed(format!("{what} panicked: {message}"))
}

/// Calls `poll`, turning a panic into the source's end.
pub fn catch_source_panic<T>(poll: impl FnOnce() -> T) -> Result<T, SourceEnd> {
    catch_unwind(AssertUnwindSafe(poll)).map_err(|panic| panicked("the source", &*panic))
}
