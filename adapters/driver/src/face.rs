//! What an async driver's users hold, written once: the [`ResumableStream`] a reader
//! receives, and the [`async_driver!`](crate::async_driver) macro that gives each async
//! driver its own `ResumableStreamContext` type (the same methods on tokio,
//! async-std and smol, each a thin call into the shared [`Context`](crate::Context)).

use crate::reader::Reader;
use bytes::Bytes;
use futures_core::Stream;
use resumable_stream::{Error, Role};
use std::pin::Pin;
use std::task::{Context, Poll};

/// One reader's view of a resumable stream: every chunk in order, then the end
/// (`None`) or one error.
///
/// Dropping it detaches the reader: a resumer stops listening; a producer keeps
/// producing for its other readers, as the protocol requires.
#[derive(Debug)]
pub struct ResumableStream {
    reader: Reader,
}

impl ResumableStream {
    /// The stream of `reader`.
    #[doc(hidden)]
    pub fn new(reader: Reader) -> ResumableStream {
        ResumableStream { reader }
    }

    /// Whether this caller produces the stream or resumed one produced elsewhere.
    pub fn role(&self) -> Role {
        self.reader.role()
    }

    /// How many chunks of the stream this reader has received: resume at this
    /// [`Position::Chunk`](resumable_stream::Position::Chunk) to continue right after
    /// them (use it as an SSE event id). `None` until a chunk arrives, and from a v1
    /// producer, which does not say.
    pub fn chunk_position(&self) -> Option<u64> {
        self.reader.chunk_position()
    }
}

impl Stream for ResumableStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.reader.poll_next(cx)
    }
}

/// Defines an async driver's `ResumableStreamContext` and `ContextBuilder` in the
/// calling crate, on the runtime that `$runtime` (an expression of type
/// `Arc<dyn Runtime>`, evaluated where a context is built) names, and re-exports the
/// types its API names (but `redis`, which rustdoc would show as `$crate::redis`).
#[doc(hidden)]
#[macro_export]
macro_rules! async_driver {
    (runtime = $runtime:expr; $(#[$doc:meta])*) => {
        pub use $crate::engine::bytes::Bytes;
        pub use $crate::engine::resumable_stream::{
            Config, Durable, Error, Position, PubSub, ReplyError, Role, SkipUnit, SourceError,
            Stats, StreamState,
        };
        pub use $crate::{
            Cancelled, Inbox, MemoryBackend, Publisher, ResumableStream, SseOptions, SseStream,
            Subscriber, Transport,
        };

        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct ResumableStreamContext {
            core: $crate::Context,
        }

        /// Builds a [`ResumableStreamContext`]: the configuration and the backend;
        /// `build().await` connects.
        pub type ContextBuilder = $crate::Builder<ResumableStreamContext>;

        impl $crate::Face for ResumableStreamContext {
            type Built = $crate::BoxFuture<'static, ::std::result::Result<Self, $crate::Error>>;

            fn build(parts: $crate::Parts) -> Self::Built {
                // The runtime is the one the future is awaited on.
                ::std::boxed::Box::pin(async move {
                    let core = parts.connect($runtime).await?;
                    Ok(ResumableStreamContext { core })
                })
            }
        }

        impl ResumableStreamContext {
            /// A builder, with the default configuration and Redis from the
            /// environment.
            pub fn builder() -> ContextBuilder {
                ContextBuilder::new()
            }

            /// Redis from `REDIS_URL` (or `KV_URL`), or the Redis Cluster of
            /// `REDIS_CLUSTER_URLS` when that is set; default configuration.
            ///
            /// # Errors
            /// As [`ContextBuilder::build`](ContextBuilder).
            pub async fn from_env() -> ::std::result::Result<Self, $crate::Error> {
                Self::builder().build().await
            }

            /// A context on a private in-process backend: a single-instance server
            /// without Redis.
            pub fn in_memory() -> Self {
                ResumableStreamContext {
                    core: $crate::Context::in_memory($runtime),
                }
            }

            /// Creates the stream `stream_id`, or resumes it if it exists: the
            /// deployed libraries' idempotent `resumableStream`.
            ///
            /// `make_stream` is called only when this caller becomes the producer,
            /// on the producer's own task; its source then runs to its end even if
            /// the returned stream is dropped. A resumer starts at `position`:
            /// `None` (the start), `Some(n)` (skip `n` units, UTF-16 unless
            /// configured otherwise), or any [`Position`]
            /// ([`Position::Chunk`] for an SSE `Last-Event-ID`).
            ///
            /// Returns `None` when the stream already finished.
            ///
            /// # Errors
            /// Typed [`Error`]s: Redis failures, an unexpected sentinel, an
            /// acknowledgement timeout (no producer answered), [`Error::Unsupported`]
            /// for a chunk position on a v1 producer, [`Error::Closed`].
            pub async fn resumable_stream<F, S, B, E>(
                &self,
                stream_id: &str,
                make_stream: F,
                position: impl Into<$crate::Position>,
            ) -> ::std::result::Result<Option<ResumableStream>, $crate::Error>
            where
                F: FnOnce() -> S + Send + 'static,
                S: $crate::Stream<Item = ::std::result::Result<B, E>> + Send + 'static,
                B: Into<$crate::Bytes>,
                E: Into<Box<dyn ::std::error::Error + Send + Sync>>,
            {
                let starter = $crate::task_starter(self.core.runtime().clone(), make_stream);
                let opened = self.core.resumable_stream(stream_id, position.into(), starter);
                Ok(opened.await?.map(ResumableStream::new))
            }

            /// Creates the stream `stream_id` unconditionally and produces it from
            /// `make_stream`.
            ///
            /// # Errors
            /// As [`resumable_stream`](Self::resumable_stream), and
            /// [`Error::AlreadyProducing`] if this context already produces that id.
            pub async fn create_new_resumable_stream<F, S, B, E>(
                &self,
                stream_id: &str,
                make_stream: F,
            ) -> ::std::result::Result<ResumableStream, $crate::Error>
            where
                F: FnOnce() -> S + Send + 'static,
                S: $crate::Stream<Item = ::std::result::Result<B, E>> + Send + 'static,
                B: Into<$crate::Bytes>,
                E: Into<Box<dyn ::std::error::Error + Send + Sync>>,
            {
                let starter = $crate::task_starter(self.core.runtime().clone(), make_stream);
                let opened = self.core.create_new_resumable_stream(stream_id, starter);
                Ok(ResumableStream::new(opened.await?))
            }

            /// Resumes the existing stream `stream_id` at `position` (as for
            /// [`resumable_stream`](Self::resumable_stream)).
            ///
            /// # Errors
            /// As [`resumable_stream`](Self::resumable_stream).
            pub async fn resume_existing_stream(
                &self,
                stream_id: &str,
                position: impl Into<$crate::Position>,
            ) -> ::std::result::Result<Resumed, $crate::Error> {
                let resumed = self.core.resume_existing_stream(stream_id, position.into());
                Ok(resumed.await?.map(ResumableStream::new))
            }

            /// Whether the stream `stream_id` exists: [`StreamState::None`],
            /// `Active` or `Done`.
            ///
            /// # Errors
            /// Redis failures and an unexpected sentinel, as typed [`Error`]s.
            pub async fn has_existing_stream(
                &self,
                stream_id: &str,
            ) -> ::std::result::Result<$crate::StreamState, $crate::Error> {
                self.core.has_existing_stream(stream_id).await
            }

            /// Stops the stream `stream_id` wherever it is produced, if its producer
            /// is ours: the producer drops its source; its readers end with
            /// [`Error::Cancelled`].
            ///
            /// # Errors
            /// [`Error::Unsupported`] for a v1 producer, [`Error::AckTimeout`] when
            /// nobody produces it, Redis failures.
            pub async fn cancel(
                &self,
                stream_id: &str,
            ) -> ::std::result::Result<$crate::Cancelled, $crate::Error> {
                self.core.cancel(stream_id).await
            }

            /// Records `stream_id` as `owner`'s active stream (a chat's, a job's),
            /// replacing the one before, for
            /// [`active_stream`](Self::active_stream) to find from any instance: in
            /// the same Redis (or memory), under the key prefix, with the sentinels'
            /// TTL.
            ///
            /// # Errors
            /// Redis failures, [`Error::ShuttingDown`], [`Error::Closed`].
            pub async fn set_active_stream(
                &self,
                owner: &str,
                stream_id: &str,
            ) -> ::std::result::Result<(), $crate::Error> {
                self.core.set_active_stream(owner, stream_id).await.map(drop)
            }

            /// `owner`'s active stream, as last recorded by
            /// [`set_active_stream`](Self::set_active_stream): `None` if none is (or
            /// it expired).
            ///
            /// # Errors
            /// Redis failures, [`Error::ShuttingDown`], [`Error::Closed`].
            pub async fn active_stream(
                &self,
                owner: &str,
            ) -> ::std::result::Result<Option<String>, $crate::Error> {
                self.core.active_stream(owner).await
            }

            /// The SSE body of `stream`: an [`SseStream`], its keep-alives timed on this
            /// context's runtime.
            pub fn sse(&self, stream: ResumableStream, options: $crate::SseOptions) -> $crate::SseStream {
                $crate::SseStream::new(stream, self.core.runtime().clone(), options)
            }

            /// Counters of the inputs the engine dropped (malformed requests, stray
            /// messages).
            pub fn stats(&self) -> $crate::Stats {
                self.core.stats()
            }

            /// Shuts the context down gracefully, for a server that received SIGTERM
            /// while other instances keep serving: it takes no new request at once
            /// ([`Error::ShuttingDown`]), lets the streams it produces run to their
            /// end (their readers and listeners served), and returns when none is
            /// left or at `deadline`, whichever comes first; then it closes (readers
            /// still open end with [`Error::Closed`]). Every clone of the context is
            /// shut down.
            pub async fn shutdown(&self, deadline: ::std::time::Instant) {
                self.core.shutdown(deadline).await
            }
        }

        /// What [`ResumableStreamContext::resume_existing_stream`] found.
        pub type Resumed = $crate::Resumed<ResumableStream>;
    };
}
