//! The stream a reader receives: `futures::Stream<Item = Result<Bytes, Error>>`.

use crate::driver::{ReaderItem, Shared};
use bytes::Bytes;
use futures_core::Stream;
use resumable_stream::{Error, Handle, Role};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// One reader's view of a resumable stream: every chunk in order, then the end (`None`)
/// or one error.
///
/// Dropping it detaches the reader: a resumer stops listening; a producer keeps
/// producing for its other readers, as the protocol requires.
pub struct ResumableStream {
    receiver: mpsc::UnboundedReceiver<ReaderItem>,
    handle: Handle,
    role: Role,
    shared: Arc<Shared>,
    finished: bool,
}

impl ResumableStream {
    pub(crate) fn new(
        receiver: mpsc::UnboundedReceiver<ReaderItem>,
        handle: Handle,
        role: Role,
        shared: Arc<Shared>,
    ) -> Self {
        ResumableStream {
            receiver,
            handle,
            role,
            shared,
            finished: false,
        }
    }

    /// Whether this caller produces the stream or resumed one produced elsewhere.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl Stream for ResumableStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let polled = self.receiver.poll_recv(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finished = true;
        }
        polled
    }
}

impl Drop for ResumableStream {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.drop_reader(self.handle);
        }
    }
}

impl std::fmt::Debug for ResumableStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableStream")
            .field("handle", &self.handle)
            .field("role", &self.role)
            .field("finished", &self.finished)
            .finish()
    }
}
