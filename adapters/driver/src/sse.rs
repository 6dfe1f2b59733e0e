//! A reader as the body of a server-sent events response: [`SseStream`] (a `Stream`
//! of [`Bytes`], for async servers) and [`SseIter`] (an `Iterator` of [`Bytes`], for
//! blocking ones). The framing itself is [`resumable_stream::sse`]'s (read its docs
//! for the events and how chunk bytes are delivered exactly); this adds the timing:
//! `retry:` first, a keep-alive comment whenever the producer has been silent for the
//! keep-alive interval, and the final `end` or `error` event.

use crate::face::ResumableStream;
use crate::reader::TimedOut;
use crate::runtime::Runtime;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::future::BoxFuture;
use resumable_stream::{sse, Error};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How an SSE body is timed.
///
/// ```
/// use resumable_stream_driver::SseOptions;
/// use std::time::Duration;
///
/// let options = SseOptions::default()
///     .retry(Some(Duration::from_millis(500)))
///     .keep_alive(Some(Duration::from_secs(5)));
/// assert_eq!(options.retry_delay(), Some(Duration::from_millis(500)));
/// assert_eq!(SseOptions::default().keep_alive_interval(), Some(Duration::from_secs(15)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseOptions {
    retry: Option<Duration>,
    keep_alive: Option<Duration>,
}

impl Default for SseOptions {
    /// `retry: 1000`, and a keep-alive after 15 s of silence.
    fn default() -> SseOptions {
        SseOptions {
            retry: Some(Duration::from_secs(1)),
            keep_alive: Some(Duration::from_secs(15)),
        }
    }
}

impl SseOptions {
    /// The `retry:` sent first (how long a browser waits to reconnect); `None` sends
    /// none (browsers then wait a few seconds).
    pub fn retry(mut self, delay: Option<Duration>) -> SseOptions {
        self.retry = delay;
        self
    }

    /// How long the producer may be silent before a keep-alive comment; `None` sends
    /// none.
    pub fn keep_alive(mut self, interval: Option<Duration>) -> SseOptions {
        self.keep_alive = interval.filter(|i| !i.is_zero());
        self
    }

    /// The `retry:` delay.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry
    }

    /// The keep-alive interval.
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        self.keep_alive
    }
}

/// Where an SSE body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet: `retry:` comes first.
    Start,
    /// Chunks and keep-alives.
    Body,
    /// The final event was sent.
    Done,
}

/// A reader's SSE body, as a `Stream` of [`Bytes`] that never fails (a failure of the
/// stream is its final `error` event): hand it to any HTTP framework as a streaming
/// body. Made by an async driver's `ResumableStreamContext::sse`, or by
/// [`SseStream::new`] on a runtime of your own.
pub struct SseStream {
    stream: ResumableStream,
    runtime: Arc<dyn Runtime>,
    options: SseOptions,
    phase: Phase,
    /// The keep-alive timer, armed while the producer is silent.
    sleep: Option<BoxFuture<'static, ()>>,
}

impl SseStream {
    /// The SSE body of `stream`, its keep-alives timed on `runtime`.
    pub fn new(
        stream: ResumableStream,
        runtime: Arc<dyn Runtime>,
        options: SseOptions,
    ) -> SseStream {
        SseStream {
            stream,
            runtime,
            options,
            phase: Phase::Start,
            sleep: None,
        }
    }

    /// The stream being sent (its role, its chunk position).
    pub fn stream(&self) -> &ResumableStream {
        &self.stream
    }
}

impl Stream for SseStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.phase {
            Phase::Done => return Poll::Ready(None),
            Phase::Start => {
                this.phase = Phase::Body;
                if let Some(delay) = this.options.retry {
                    return Poll::Ready(Some(Ok(sse::encode_retry(delay))));
                }
            }
            Phase::Body => {}
        }
        let event = match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.sleep = None;
                sse::encode_chunk(&chunk, this.stream.chunk_position())
            }
            Poll::Ready(Some(Err(error))) => {
                this.phase = Phase::Done;
                sse::encode_error(&error.to_string())
            }
            Poll::Ready(None) => {
                this.phase = Phase::Done;
                sse::encode_end()
            }
            Poll::Pending => {
                let Some(interval) = this.options.keep_alive else {
                    return Poll::Pending;
                };
                let runtime = &this.runtime;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| runtime.sleep_until(Instant::now() + interval));
                match std::future::Future::poll(sleep.as_mut(), cx) {
                    Poll::Ready(()) => {
                        this.sleep = None;
                        Bytes::from_static(sse::KEEP_ALIVE)
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        Poll::Ready(Some(Ok(event)))
    }
}

impl std::fmt::Debug for SseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseStream")
            .field("stream", &self.stream)
            .field("options", &self.options)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// What [`SseIter`] reads: a blocking driver's stream (the blocking driver's
/// `ResumableStream` implements it).
pub trait BlockingChunks {
    /// The next chunk, the error that ends the stream, or its end (`None`), waiting at
    /// most `timeout`.
    ///
    /// # Errors
    /// [`TimedOut`] when `timeout` passed first.
    fn next_timeout(&mut self, timeout: Duration)
        -> Result<Option<Result<Bytes, Error>>, TimedOut>;

    /// The reader's chunk position once it has the last chunk returned.
    fn chunk_position(&self) -> Option<u64>;
}

/// A blocking reader's SSE body, as an `Iterator` of [`Bytes`]: write each item to the
/// response and flush. The same events as [`SseStream`]; keep-alives come from waiting
/// with [`BlockingChunks::next_timeout`].
#[derive(Debug)]
pub struct SseIter<R> {
    chunks: R,
    options: SseOptions,
    phase: Phase,
}

impl<R: BlockingChunks> SseIter<R> {
    /// The SSE body of `chunks`.
    pub fn new(chunks: R, options: SseOptions) -> SseIter<R> {
        SseIter {
            chunks,
            options,
            phase: Phase::Start,
        }
    }

    /// The stream being sent.
    pub fn chunks(&self) -> &R {
        &self.chunks
    }
}

/// How long a body without keep-alives waits per call, before waiting again: a bound
/// on each wait, not on the stream (whose producer's liveness the engine watches).
const UNBOUNDED_WAIT: Duration = Duration::from_secs(3600);

impl<R: BlockingChunks> Iterator for SseIter<R> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        match self.phase {
            Phase::Done => return None,
            Phase::Start => {
                self.phase = Phase::Body;
                if let Some(delay) = self.options.retry {
                    return Some(sse::encode_retry(delay));
                }
            }
            Phase::Body => {}
        }
        loop {
            let wait = self.options.keep_alive.unwrap_or(UNBOUNDED_WAIT);
            return Some(match self.chunks.next_timeout(wait) {
                Ok(Some(Ok(chunk))) => sse::encode_chunk(&chunk, self.chunks.chunk_position()),
                Ok(Some(Err(error))) => {
                    self.phase = Phase::Done;
                    sse::encode_error(&error.to_string())
                }
                Ok(None) => {
                    self.phase = Phase::Done;
                    sse::encode_end()
                }
                Err(TimedOut) if self.options.keep_alive.is_some() => {
                    Bytes::from_static(sse::KEEP_ALIVE)
                }
                Err(TimedOut) => continue,
            });
        }
    }
}
