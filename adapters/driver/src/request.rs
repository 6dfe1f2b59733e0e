//! The answer to a request, typed by the request: a [`Request<T>`] resolves to the `T`
//! its method promises (a stream, a state, a cancel's outcome), either awaited (it is
//! a `Future`) or waited for on the thread ([`Request::wait`]). The hub maps the
//! engine's events to these types in one place, so no call site re-checks an answer.

use crate::hub::{Hub, ReaderItem};
use crate::mailbox::Receiver;
use crate::reader::Reader;
use resumable_stream::{Error, Handle, Role, StreamState};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a cancel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancelled {
    /// The producer stopped the stream.
    Cancelled,
    /// The stream had already finished.
    AlreadyDone,
    /// No stream with that id exists.
    NotFound,
}

/// What resuming an existing stream found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Resumed<S> {
    /// The stream exists and is being produced: read the rest of it here.
    Stream(S),
    /// The stream finished; there is nothing to resume.
    Done,
    /// No stream with that id exists.
    NotFound,
}

impl<S> Resumed<S> {
    /// The same answer, its stream turned into another type.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Resumed<T> {
        match self {
            Resumed::Stream(stream) => Resumed::Stream(f(stream)),
            Resumed::Done => Resumed::Done,
            Resumed::NotFound => Resumed::NotFound,
        }
    }
}

/// A stream the hub opened for a request, before it is a [`Reader`]: plain data, so
/// that it can wait in a mailbox and be dropped anywhere.
pub struct Opened {
    pub(crate) handle: Handle,
    pub(crate) role: Role,
    pub(crate) receiver: Receiver<ReaderItem>,
}

mod sealed {
    pub trait Sealed {}
}

/// A type a [`Request`] can resolve to. Sealed: the answers are the library's.
pub trait Answer: sealed::Sealed + Sized {
    /// What travels from the hub to the caller.
    #[doc(hidden)]
    type Raw: Send + 'static;
    /// The caller's value, made on the caller's side.
    #[doc(hidden)]
    fn finish(raw: Self::Raw, hub: &Hub) -> Self;
}

impl sealed::Sealed for Reader {}
impl Answer for Reader {
    type Raw = Opened;
    fn finish(raw: Opened, hub: &Hub) -> Reader {
        Reader::new(hub.clone(), raw.handle, raw.role, raw.receiver)
    }
}

impl sealed::Sealed for Option<Reader> {}
impl Answer for Option<Reader> {
    type Raw = Option<Opened>;
    fn finish(raw: Option<Opened>, hub: &Hub) -> Option<Reader> {
        raw.map(|opened| Reader::finish(opened, hub))
    }
}

impl sealed::Sealed for Resumed<Reader> {}
impl Answer for Resumed<Reader> {
    type Raw = Resumed<Opened>;
    fn finish(raw: Resumed<Opened>, hub: &Hub) -> Resumed<Reader> {
        raw.map(|opened| Reader::finish(opened, hub))
    }
}

impl sealed::Sealed for StreamState {}
impl Answer for StreamState {
    type Raw = StreamState;
    fn finish(raw: StreamState, _: &Hub) -> StreamState {
        raw
    }
}

impl sealed::Sealed for Option<String> {}
impl Answer for Option<String> {
    type Raw = Option<String>;
    fn finish(raw: Option<String>, _: &Hub) -> Option<String> {
        raw
    }
}

impl sealed::Sealed for Cancelled {}
impl Answer for Cancelled {
    type Raw = Cancelled;
    fn finish(raw: Cancelled, _: &Hub) -> Cancelled {
        raw
    }
}

/// A request in flight: await it, or [`wait`](Request::wait) for it on the thread.
/// Dropping it abandons the request (a stream it would have opened is dropped, and a
/// source it would have produced still runs to its end).
#[must_use = "a request does nothing unless awaited or waited for"]
pub struct Request<T: Answer> {
    answer: Receiver<Result<T::Raw, Error>>,
    hub: Hub,
}

impl<T: Answer> Request<T> {
    pub(crate) fn new(answer: Receiver<Result<T::Raw, Error>>, hub: Hub) -> Request<T> {
        Request { answer, hub }
    }

    /// Blocks the thread until the answer arrives.
    ///
    /// # Errors
    /// The request's typed [`Error`]; [`Error::Closed`] if the context closed first.
    pub fn wait(self) -> Result<T, Error> {
        self.finish(self.answer.recv_blocking())
    }

    fn finish(&self, answer: Option<Result<T::Raw, Error>>) -> Result<T, Error> {
        let raw = answer.unwrap_or(Err(Error::Closed))?;
        Ok(T::finish(raw, &self.hub))
    }
}

impl<T: Answer> Future for Request<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.poll_recv(cx).map(|answer| self.finish(answer))
    }
}

impl<T: Answer> std::fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").finish_non_exhaustive()
    }
}
