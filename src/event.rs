//! What the engine tells the application.

use crate::error::Error;
use bytes::Bytes;

/// Names one application request (`resumable_stream`, a create, a resume or a state
/// query) and, once it has one, the stream it reads or produces.
///
/// Handles grow monotonically within one engine and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// The state [`Engine::has_existing_stream`](crate::Engine::has_existing_stream) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamState {
    /// No stream with that id exists (or its sentinel expired).
    None,
    /// A producer has started and not yet finished.
    Active,
    /// The stream finished.
    Done,
}

impl StreamState {
    /// `none`, `active` or `done`, as a status page or a JSON answer spells it.
    ///
    /// ```
    /// assert_eq!(resumable_stream::StreamState::Active.as_str(), "active");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::None => "none",
            StreamState::Active => "active",
            StreamState::Done => "done",
        }
    }
}

/// How the stream a handle reads is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// This handle produces the stream: the application pulls its source and feeds the
    /// engine with [`push_chunk`](crate::Engine::push_chunk) and
    /// [`finish`](crate::Engine::finish). It also reads every chunk back as
    /// [`Event::Data`], its local reader's copy.
    Producer,
    /// This handle follows a stream produced elsewhere (another engine, another
    /// process, another language).
    Resumer,
}

/// An event for the application, from [`Engine::poll_event`](crate::Engine::poll_event).
///
/// For every handle, exactly one of [`Started`](Event::Started), [`Done`](Event::Done),
/// [`NotFound`](Event::NotFound), [`State`](Event::State) or
/// [`Failed`](Event::Failed) comes first. After `Started` come any number of
/// [`Data`](Event::Data) and then exactly one [`End`](Event::End) or `Failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The request has a stream to read, in the given role.
    Started {
        /// The request.
        handle: Handle,
        /// Producer or resumer.
        role: Role,
    },
    /// The stream is already finished: there is nothing to read (the deployed
    /// libraries return `null` / `None` here).
    Done {
        /// The request.
        handle: Handle,
    },
    /// `resume_existing_stream` found no stream with that id.
    NotFound {
        /// The request.
        handle: Handle,
    },
    /// The answer to a state query.
    State {
        /// The query.
        handle: Handle,
        /// What the sentinel says.
        state: StreamState,
    },
    /// The next bytes of the stream for this reader.
    Data {
        /// The reader.
        handle: Handle,
        /// The bytes, shared with the producer's buffer where possible.
        data: Bytes,
        /// How many chunks of the stream this reader has once it has these bytes (the
        /// index to resume at with [`Position::Chunk`](crate::Position::Chunk), e.g. as
        /// an SSE event id). `None` from a v1 producer, which does not say.
        chunk: Option<u64>,
    },
    /// The stream was cancelled, as [`Engine::cancel`](crate::Engine::cancel) asked.
    Cancelled {
        /// The cancel request.
        handle: Handle,
    },
    /// For the driver, not a reader: stop pulling this producer's source and drop it
    /// (the stream was cancelled). The reader's own ending follows.
    StopSource {
        /// The producer.
        handle: Handle,
    },
    /// The stream ended cleanly; nothing follows for this handle.
    End {
        /// The reader.
        handle: Handle,
    },
    /// The answer to [`Engine::active_stream`](crate::Engine::active_stream) and
    /// [`Engine::set_active_stream`](crate::Engine::set_active_stream): the owner's
    /// active stream, as the request found or left it.
    ActiveStream {
        /// The request.
        handle: Handle,
        /// The stream id recorded for the owner; `None` when none is (never recorded,
        /// or expired with the sentinels' TTL).
        stream_id: Option<String>,
    },
    /// The request or the stream failed; nothing follows for this handle.
    Failed {
        /// The request or reader.
        handle: Handle,
        /// Why.
        error: Error,
    },
}

impl Event {
    /// The handle this event is for.
    pub fn handle(&self) -> Handle {
        match self {
            Event::Started { handle, .. }
            | Event::Done { handle }
            | Event::NotFound { handle }
            | Event::State { handle, .. }
            | Event::Data { handle, .. }
            | Event::Cancelled { handle }
            | Event::StopSource { handle }
            | Event::End { handle }
            | Event::ActiveStream { handle, .. }
            | Event::Failed { handle, .. } => *handle,
        }
    }

    /// Whether nothing more follows for this handle after this event.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Event::Started { .. } | Event::Data { .. } | Event::StopSource { .. }
        )
    }
}
