//! Who waits for what the engine says of a handle, and the one place where an
//! engine event becomes the typed answer of the request that waits (or a chunk for
//! its reader).

use super::{AfterUnlock, Chunk, Inner, ReaderItem, Starter};
use crate::mailbox::{mailbox, Sender};
use crate::request::{Cancelled, Opened, Resumed};
use resumable_stream::{Error, Event, Handle, Role, StreamState};
use std::collections::VecDeque;

/// Who waits for what the engine says of a handle: a request, typed by what it
/// answers, or the reader of an open stream.
pub enum Waiter {
    /// `resumable_stream`: a stream (producer or resumer), or `None` when done.
    Open {
        /// Where the answer goes.
        answer: Sender<Result<Option<Opened>, Error>>,
        /// Starts the source if the caller produces.
        starter: Starter,
    },
    /// `create_new_resumable_stream`: a stream this caller produces.
    Create {
        /// Where the answer goes.
        answer: Sender<Result<Opened, Error>>,
        /// Starts the source.
        starter: Starter,
    },
    /// `resume_existing_stream`.
    Resume(Sender<Result<Resumed<Opened>, Error>>),
    /// `has_existing_stream`.
    State(Sender<Result<StreamState, Error>>),
    /// `cancel`.
    Cancel(Sender<Result<Cancelled, Error>>),
    /// `active_stream` and `set_active_stream`.
    Active(Sender<Result<Option<String>, Error>>),
    /// The reader of an open stream.
    Reader(Sender<ReaderItem>),
}

impl Waiter {
    /// Answers the request with `error`; what it owned goes to `after`.
    pub(super) fn fail(self, error: Error, after: &mut Vec<AfterUnlock>) {
        match self {
            Waiter::Open { answer, starter } => {
                let _ = answer.send(Err(error));
                after.push(AfterUnlock::Discard(starter));
            }
            Waiter::Create { answer, starter } => {
                let _ = answer.send(Err(error));
                after.push(AfterUnlock::Discard(starter));
            }
            Waiter::Resume(answer) => drop(answer.send(Err(error))),
            Waiter::State(answer) => drop(answer.send(Err(error))),
            Waiter::Cancel(answer) => drop(answer.send(Err(error))),
            Waiter::Active(answer) => drop(answer.send(Err(error))),
            Waiter::Reader(reader) => drop(reader.send(Err(error))),
        }
    }
}

/// Routes one event other than a reader's chunks: the one place where what the
/// engine says becomes the typed answer of the request that waits.
pub(super) fn dispatch(inner: &mut Inner, event: Event, after: &mut Vec<AfterUnlock>) {
    let handle = event.handle();
    if let Event::StopSource { .. } = event {
        if let Some(signal) = inner.stop_signals.remove(&handle) {
            signal.close();
        }
        return;
    }
    if let Event::Data { data, chunk, .. } = event {
        let mut one = VecDeque::from([Ok(Chunk { data, index: chunk })]);
        return deliver(inner, handle, &mut one, after);
    }
    let Some(waiter) = inner.waiters.remove(&handle) else {
        return;
    };
    // A stream opened for the request: its reader's mailbox, and the answer.
    let open = |role: Role| {
        let (reader, receiver) = mailbox();
        (
            reader,
            Opened {
                handle,
                role,
                receiver,
            },
        )
    };
    // What follows for the handle: a reader to route its chunks to, or (the caller
    // stopped waiting) nobody.
    let read = |sent: bool, reader: Sender<ReaderItem>| if sent { Ok(reader) } else { Err(()) };
    let next: Option<Result<Sender<ReaderItem>, ()>> = match (waiter, event) {
        (waiter, Event::Failed { error, .. }) => {
            waiter.fail(error, after);
            None
        }
        // Dropping the reader's sender ends its mailbox after what is queued.
        (Waiter::Reader(_), Event::End { .. }) => None,
        (Waiter::Open { answer, starter }, Event::Started { role, .. }) => {
            after.push(match role {
                Role::Producer => AfterUnlock::Start(starter, handle),
                Role::Resumer => AfterUnlock::Discard(starter),
            });
            let (reader, opened) = open(role);
            Some(read(answer.send(Ok(Some(opened))).is_ok(), reader))
        }
        (Waiter::Open { answer, starter }, Event::Done { .. }) => {
            after.push(AfterUnlock::Discard(starter));
            let _ = answer.send(Ok(None));
            None
        }
        (
            Waiter::Create { answer, starter },
            Event::Started {
                role: Role::Producer,
                ..
            },
        ) => {
            after.push(AfterUnlock::Start(starter, handle));
            let (reader, opened) = open(Role::Producer);
            Some(read(answer.send(Ok(opened)).is_ok(), reader))
        }
        (
            Waiter::Resume(answer),
            Event::Started {
                role: Role::Resumer,
                ..
            },
        ) => {
            let (reader, opened) = open(Role::Resumer);
            Some(read(
                answer.send(Ok(Resumed::Stream(opened))).is_ok(),
                reader,
            ))
        }
        (Waiter::Resume(answer), Event::Done { .. }) => {
            let _ = answer.send(Ok(Resumed::Done));
            None
        }
        (Waiter::Resume(answer), Event::NotFound { .. }) => {
            let _ = answer.send(Ok(Resumed::NotFound));
            None
        }
        (Waiter::State(answer), Event::State { state, .. }) => {
            let _ = answer.send(Ok(state));
            None
        }
        (
            Waiter::Cancel(answer),
            event @ (Event::Cancelled { .. } | Event::Done { .. } | Event::NotFound { .. }),
        ) => {
            let _ = answer.send(Ok(match event {
                Event::Cancelled { .. } => Cancelled::Cancelled,
                Event::Done { .. } => Cancelled::AlreadyDone,
                _ => Cancelled::NotFound,
            }));
            None
        }
        (Waiter::Active(answer), Event::ActiveStream { stream_id, .. }) => {
            let _ = answer.send(Ok(stream_id));
            None
        }
        (waiter, event) => {
            // The engine answered a request with an event its kind never has.
            log::error!("resumable-stream: {event:?} is no answer to this request (a bug)");
            waiter.fail(
                Error::Internal("the engine's answer does not fit the request"),
                after,
            );
            None
        }
    };
    match next {
        Some(Ok(reader)) => {
            inner.waiters.insert(handle, Waiter::Reader(reader));
        }
        Some(Err(())) => after.push(AfterUnlock::DropReader(handle)),
        None => {}
    }
}

/// Hands `chunks` to the reader of `handle` (dropping them if it has none), emptying it.
pub(super) fn deliver(
    inner: &mut Inner,
    handle: Handle,
    chunks: &mut VecDeque<ReaderItem>,
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
