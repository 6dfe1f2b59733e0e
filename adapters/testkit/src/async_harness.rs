//! The [`Harness`] of every async driver, written once: the driver's context (seen
//! through [`AsyncContext`], which [`async_context!`](crate::async_context)
//! implements for a driver's `ResumableStreamContext`) driven from the blocking test
//! thread through an [`Executor`].

use crate::harness::{self, Harness, Item, Made, Source};
use crate::setup::Setup;
use futures_util::future::{self, BoxFuture, Either};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use resumable_stream::{Error, Position, Role, Stats, StreamState};
use resumable_stream_driver::{Builder, Cancelled, Face, ResumableStream, Resumed};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The chunks of a test's source, as a driver's `make_stream` returns them.
pub type Chunks = BoxStream<'static, Result<String, String>>;

/// An async driver's context, as the suite calls it: each method forwards to the
/// driver's own. Implement it with [`async_context!`](crate::async_context).
pub trait AsyncContext:
    Face<Built = BoxFuture<'static, Result<Self, Error>>> + Clone + Send + Sync + 'static
{
    /// `resumable_stream`.
    fn resumable_stream(
        &self,
        id: &str,
        make_stream: Box<dyn FnOnce() -> Chunks + Send>,
        position: Position,
    ) -> BoxFuture<'_, Result<Option<ResumableStream>, Error>>;
    /// `create_new_resumable_stream`.
    fn create_new_resumable_stream(
        &self,
        id: &str,
        make_stream: Box<dyn FnOnce() -> Chunks + Send>,
    ) -> BoxFuture<'_, Result<ResumableStream, Error>>;
    /// `resume_existing_stream`.
    fn resume_existing_stream(
        &self,
        id: &str,
        position: Position,
    ) -> BoxFuture<'_, Result<Resumed<ResumableStream>, Error>>;
    /// `has_existing_stream`.
    fn has_existing_stream(&self, id: &str) -> BoxFuture<'_, Result<StreamState, Error>>;
    /// `cancel`.
    fn cancel(&self, id: &str) -> BoxFuture<'_, Result<Cancelled, Error>>;
    /// `stats`.
    fn stats(&self) -> Stats;
    /// `shutdown`.
    fn shutdown(&self, deadline: std::time::Instant) -> BoxFuture<'_, ()>;
    /// Resolves after `duration` on the driver's runtime.
    fn sleep(duration: Duration) -> BoxFuture<'static, ()>;
    /// `in_memory`.
    fn in_memory() -> Self;
}

/// Defines `$name`, an async driver's context type seen as an [`AsyncContext`] (a
/// local wrapper, as the orphan rule wants), forwarding each method; `sleep` is the
/// driver's runtime's sleep.
///
/// ```ignore
/// resumable_stream_testkit::async_context!(Tokio = resumable_stream_tokio::ResumableStreamContext,
///     sleep = |d| Box::pin(tokio::time::sleep(d)));
/// ```
#[macro_export]
macro_rules! async_context {
    ($name:ident = $context:ty, sleep = $sleep:expr) => {
        /// The driver's context, as the suite drives it.
        #[derive(Clone)]
        struct $name($context);

        impl resumable_stream_driver::Face for $name {
            type Built =
                futures_util::future::BoxFuture<'static, Result<Self, resumable_stream::Error>>;

            fn build(parts: resumable_stream_driver::Parts) -> Self::Built {
                let built = <$context as resumable_stream_driver::Face>::build(parts);
                Box::pin(async move { Ok($name(built.await?)) })
            }
        }

        impl $crate::AsyncContext for $name {
            fn resumable_stream(
                &self,
                id: &str,
                make_stream: Box<dyn FnOnce() -> $crate::async_harness::Chunks + Send>,
                position: resumable_stream::Position,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<Option<resumable_stream_driver::ResumableStream>, resumable_stream::Error>,
            > {
                let id = id.to_owned();
                Box::pin(async move {
                    <$context>::resumable_stream(&self.0, &id, make_stream, position).await
                })
            }
            fn create_new_resumable_stream(
                &self,
                id: &str,
                make_stream: Box<dyn FnOnce() -> $crate::async_harness::Chunks + Send>,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<resumable_stream_driver::ResumableStream, resumable_stream::Error>,
            > {
                let id = id.to_owned();
                Box::pin(async move {
                    <$context>::create_new_resumable_stream(&self.0, &id, make_stream).await
                })
            }
            fn resume_existing_stream(
                &self,
                id: &str,
                position: resumable_stream::Position,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<
                    resumable_stream_driver::Resumed<resumable_stream_driver::ResumableStream>,
                    resumable_stream::Error,
                >,
            > {
                let id = id.to_owned();
                Box::pin(
                    async move { <$context>::resume_existing_stream(&self.0, &id, position).await },
                )
            }
            fn has_existing_stream(
                &self,
                id: &str,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<resumable_stream::StreamState, resumable_stream::Error>,
            > {
                let id = id.to_owned();
                Box::pin(async move { <$context>::has_existing_stream(&self.0, &id).await })
            }
            fn cancel(
                &self,
                id: &str,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<resumable_stream_driver::Cancelled, resumable_stream::Error>,
            > {
                let id = id.to_owned();
                Box::pin(async move { <$context>::cancel(&self.0, &id).await })
            }
            fn stats(&self) -> resumable_stream::Stats {
                <$context>::stats(&self.0)
            }
            fn shutdown(
                &self,
                deadline: std::time::Instant,
            ) -> futures_util::future::BoxFuture<'_, ()> {
                Box::pin(<$context>::shutdown(&self.0, deadline))
            }
            fn sleep(
                duration: std::time::Duration,
            ) -> futures_util::future::BoxFuture<'static, ()> {
                ($sleep)(duration)
            }
            fn in_memory() -> Self {
                $name(<$context>::in_memory())
            }
        }
    };
}

/// Runs a future to completion on the driver's runtime, from a plain thread.
pub trait Executor: Send + Sync + 'static {
    /// Blocks the calling thread until `future` completes.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
}

/// An async driver under test: its runtime `R`, entered through `E`.
pub struct AsyncHarness<C: AsyncContext, E: Executor> {
    executor: Arc<E>,
    context: std::marker::PhantomData<C>,
}

impl<C: AsyncContext, E: Executor> AsyncHarness<C, E> {
    /// A harness that runs everything through `executor`.
    pub fn new(executor: E) -> Self {
        AsyncHarness {
            executor: Arc::new(executor),
            context: std::marker::PhantomData,
        }
    }

    /// `ResumableStreamContext::in_memory()`, called on the driver's runtime: a stream
    /// on it is read back whole, with no Redis anywhere.
    pub fn in_memory_contexts_need_no_redis(&self) {
        self.executor.block_on(async {
            let context = C::in_memory();
            let make_stream: Box<dyn FnOnce() -> Chunks + Send> = Box::new(|| {
                futures_util::stream::iter(["a", "b"].map(|c| Ok(c.to_owned()))).boxed()
            });
            let stream = context
                .resumable_stream("s", make_stream, Position::from(None))
                .await
                .unwrap()
                .unwrap();
            let bytes: Vec<_> = stream.map(Result::unwrap).collect().await;
            assert_eq!(bytes.concat(), b"ab");
        });
    }

    fn wrap(&self, context: C) -> Box<dyn harness::Context> {
        Box::new(Context {
            context,
            executor: self.executor.clone(),
        })
    }
}

struct Context<C: AsyncContext, E: Executor> {
    context: C,
    executor: Arc<E>,
}

struct Reader<C: AsyncContext, E: Executor> {
    stream: ResumableStream,
    executor: Arc<E>,
    context: std::marker::PhantomData<C>,
}

impl<C: AsyncContext, E: Executor> harness::Reader for Reader<C, E> {
    fn role(&self) -> Role {
        self.stream.role()
    }

    fn chunk_position(&self) -> Option<u64> {
        self.stream.chunk_position()
    }

    fn next(&mut self) -> Option<Result<bytes::Bytes, Error>> {
        let stream = &mut self.stream;
        let next = async move {
            let deadline = C::sleep(Duration::from_secs(30));
            match future::select(stream.next(), deadline).await {
                Either::Left((item, _)) => item,
                Either::Right(_) => panic!("nothing arrived within 30 s"),
            }
        };
        self.executor.block_on(next)
    }
}

fn chunks(source: Source) -> Box<dyn FnOnce() -> Chunks + Send> {
    Box::new(move || match source.make() {
        Made::Manual(feed) => futures_util::stream::unfold(feed, |feed| async move {
            let item = match feed.recv().await.ok()? {
                Item::Chunk(chunk) => Ok(chunk),
                Item::Fail(message) => Err(message),
                Item::Panic(message) => panic!("{message}"),
            };
            Some((item, feed))
        })
        .boxed(),
        Made::Fixed(list) => futures_util::stream::iter(list.into_iter().map(Ok)).boxed(),
    })
}

impl<C: AsyncContext, E: Executor> Context<C, E> {
    fn reader(&self, stream: ResumableStream) -> Box<dyn harness::Reader> {
        Box::new(Reader::<C, E> {
            stream,
            executor: self.executor.clone(),
            context: std::marker::PhantomData,
        })
    }
}

impl<C: AsyncContext, E: Executor> harness::Context for Context<C, E> {
    fn resumable_stream_at(
        &self,
        id: &str,
        source: Source,
        position: Position,
    ) -> Result<Option<Box<dyn harness::Reader>>, Error> {
        let stream =
            self.executor
                .block_on(self.context.resumable_stream(id, chunks(source), position))?;
        Ok(stream.map(|s| self.reader(s)))
    }

    fn cancel(&self, id: &str) -> Result<Cancelled, Error> {
        self.executor.block_on(self.context.cancel(id))
    }

    fn create_new_resumable_stream(
        &self,
        id: &str,
        source: Source,
    ) -> Result<Box<dyn harness::Reader>, Error> {
        let stream = self
            .executor
            .block_on(self.context.create_new_resumable_stream(id, chunks(source)))?;
        Ok(self.reader(stream))
    }

    fn resume_existing_stream(
        &self,
        id: &str,
        skip: Option<u64>,
    ) -> Result<harness::Resumed, Error> {
        Ok(
            match self.executor.block_on(
                self.context
                    .resume_existing_stream(id, Position::from_skip(skip)),
            )? {
                Resumed::Stream(stream) => harness::Resumed::Stream(self.reader(stream)),
                Resumed::Done => harness::Resumed::Done,
                Resumed::NotFound => harness::Resumed::NotFound,
                _ => panic!("an answer the suite does not know"),
            },
        )
    }

    fn has_existing_stream(&self, id: &str) -> Result<StreamState, Error> {
        self.executor.block_on(self.context.has_existing_stream(id))
    }

    fn stats(&self) -> Stats {
        self.context.stats()
    }

    fn shutdown(&self, deadline: std::time::Instant) {
        self.executor.block_on(self.context.shutdown(deadline));
    }
}

impl<C: AsyncContext, E: Executor> Harness for AsyncHarness<C, E> {
    fn build(&self, setup: Setup) -> Result<Box<dyn harness::Context>, Error> {
        let builder = setup.apply(Builder::<C>::new());
        Ok(self.wrap(self.executor.block_on(builder.build())?))
    }
}
