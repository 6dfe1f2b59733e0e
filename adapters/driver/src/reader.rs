//! One reader's end of a stream, shared by every driver's stream type: it receives what
//! the hub routes to its handle, remembers the chunk position, and detaches the reader
//! from the engine when dropped before the end.

use crate::hub::{Hub, ReaderItem};
use crate::mailbox::{Receiver, RecvTimeoutError};
use bytes::Bytes;
use resumable_stream::{Error, Handle, Role};
use std::collections::VecDeque;
use std::task::{Context, Poll};

/// A deadline passed with nothing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing to read before the deadline")
    }
}

impl std::error::Error for TimedOut {}

/// One reader's end of a stream: what the hub routes to it, its chunk position, and
/// its detach when dropped before the end. Drivers wrap it in a `Stream` or an
/// `Iterator`.
pub struct Reader {
    receiver: Receiver<ReaderItem>,
    handle: Handle,
    role: Role,
    hub: Hub,
    finished: bool,
    position: Option<u64>,
    /// What the last wait took from the mailbox at once, not yet handed out.
    taken: VecDeque<ReaderItem>,
}

impl Reader {
    /// The reader of `handle`, receiving from `receiver`.
    pub(crate) fn new(
        hub: Hub,
        handle: Handle,
        role: Role,
        receiver: Receiver<ReaderItem>,
    ) -> Reader {
        Reader {
            receiver,
            handle,
            role,
            hub,
            finished: false,
            position: None,
            taken: VecDeque::new(),
        }
    }

    /// Producer or resumer.
    pub fn role(&self) -> Role {
        self.role
    }

    /// How many chunks of the stream this reader has received (see the drivers'
    /// `chunk_position`).
    pub fn chunk_position(&self) -> Option<u64> {
        self.position
    }

    /// Whether the end or an error was delivered: nothing follows.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Waits on the thread for what the reader sees next: a chunk, the error that ends
    /// the stream, or its end (`None`).
    pub fn next_blocking(&mut self) -> Option<Result<Bytes, Error>> {
        if self.finished {
            return None;
        }
        if let Some(item) = self.taken.pop_front() {
            return self.accept(Some(item));
        }
        let item = self.receiver.recv_blocking();
        self.accept(item)
    }

    /// [`next_blocking`](Self::next_blocking), waiting no later than `deadline`:
    /// `Err(TimedOut)` when it passed with nothing to see.
    pub fn next_before(
        &mut self,
        deadline: std::time::Instant,
    ) -> Result<Option<Result<Bytes, Error>>, TimedOut> {
        if self.finished {
            return Ok(None);
        }
        if let Some(item) = self.taken.pop_front() {
            return Ok(self.accept(Some(item)));
        }
        match self.receiver.recv_deadline(deadline) {
            Ok(item) => Ok(self.accept(Some(item))),
            Err(RecvTimeoutError::Closed) => Ok(self.accept(None)),
            Err(RecvTimeoutError::Timeout) => Err(TimedOut),
        }
    }

    /// Waits (asynchronously) for what the reader sees next: a chunk, the error that
    /// ends the stream, or its end (`None`). Takes everything queued in the mailbox at
    /// once, so a reader behind its producer pays one lock and one wake-up per batch.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(item) = self.taken.pop_front() {
            return Poll::Ready(self.accept(Some(item)));
        }
        match self.receiver.poll_recv_all(cx, &mut self.taken) {
            Poll::Ready(true) => {
                let item = self.taken.pop_front();
                Poll::Ready(self.accept(item))
            }
            Poll::Ready(false) => Poll::Ready(self.accept(None)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes what the mailbox gave (`None`: it ended) and returns what the reader sees.
    fn accept(&mut self, item: Option<ReaderItem>) -> Option<Result<Bytes, Error>> {
        match item {
            Some(Ok(chunk)) => {
                self.position = chunk.index;
                Some(Ok(chunk.data))
            }
            other => {
                self.finished = true;
                other.map(|item| item.map(|chunk| chunk.data))
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if !self.finished {
            self.hub.drop_reader(self.handle);
        }
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("handle", &self.handle)
            .field("role", &self.role)
            .field("finished", &self.finished)
            .field("position", &self.position)
            .finish()
    }
}
