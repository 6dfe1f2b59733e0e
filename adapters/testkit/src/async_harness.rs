//! The [`Harness`] of every async driver, written once: the driver's
//! [`AsyncContext`] driven from the blocking test thread through an [`Executor`].

use crate::harness::{self, Harness, Item, Made, Source};
use crate::store::Store;
use futures_util::future::{self, Either};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use resumable_stream::{Config, Error, Position, Role, Stats, StreamState};
use resumable_stream_driver::{AsyncContext, AsyncRuntime, Cancelled, ResumableStream, Resumed};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs a future to completion on the driver's runtime, from a plain thread.
pub trait Executor: Send + Sync + 'static {
    /// Blocks the calling thread until `future` completes.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
}

/// An async driver under test: its runtime `R`, entered through `E`.
pub struct AsyncHarness<R: AsyncRuntime, E: Executor> {
    executor: Arc<E>,
    runtime: std::marker::PhantomData<R>,
}

impl<R: AsyncRuntime, E: Executor> AsyncHarness<R, E> {
    /// A harness that runs everything through `executor`.
    pub fn new(executor: E) -> Self {
        AsyncHarness {
            executor: Arc::new(executor),
            runtime: std::marker::PhantomData,
        }
    }

    fn wrap(&self, context: AsyncContext<R>) -> Box<dyn harness::Context> {
        Box::new(Context {
            context,
            executor: self.executor.clone(),
        })
    }
}

struct Context<R: AsyncRuntime, E: Executor> {
    context: AsyncContext<R>,
    executor: Arc<E>,
}

struct Reader<R: AsyncRuntime, E: Executor> {
    stream: ResumableStream,
    executor: Arc<E>,
    runtime: std::marker::PhantomData<R>,
}

impl<R: AsyncRuntime, E: Executor> harness::Reader for Reader<R, E> {
    fn role(&self) -> Role {
        self.stream.role()
    }

    fn chunk_position(&self) -> Option<u64> {
        self.stream.chunk_position()
    }

    fn next(&mut self) -> Option<Result<bytes::Bytes, Error>> {
        let stream = &mut self.stream;
        let next = async move {
            let deadline = R::current().sleep_until(Instant::now() + Duration::from_secs(30));
            match future::select(stream.next(), deadline).await {
                Either::Left((item, _)) => item,
                Either::Right(_) => panic!("nothing arrived within 30 s"),
            }
        };
        self.executor.block_on(next)
    }
}

type Chunks = BoxStream<'static, Result<String, String>>;

fn chunks(source: Source) -> impl FnOnce() -> Chunks + Send + 'static {
    move || match source.make() {
        Made::Manual(feed) => futures_util::stream::unfold(feed, |feed| async move {
            let item = match feed.recv().await? {
                Item::Chunk(chunk) => Ok(chunk),
                Item::Fail(message) => Err(message),
                Item::Panic(message) => panic!("{message}"),
            };
            Some((item, feed))
        })
        .boxed(),
        Made::Fixed(list) => futures_util::stream::iter(list.into_iter().map(Ok)).boxed(),
    }
}

impl<R: AsyncRuntime, E: Executor> Context<R, E> {
    fn reader(&self, stream: ResumableStream) -> Box<dyn harness::Reader> {
        Box::new(Reader::<R, E> {
            stream,
            executor: self.executor.clone(),
            runtime: std::marker::PhantomData,
        })
    }
}

impl<R: AsyncRuntime, E: Executor> harness::Context for Context<R, E> {
    fn resumable_stream_at(
        &self,
        id: &str,
        source: Source,
        position: Position,
    ) -> Result<Option<Box<dyn harness::Reader>>, Error> {
        let stream = self.executor.block_on(self.context.resumable_stream_at(
            id,
            chunks(source),
            position,
        ))?;
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
            match self
                .executor
                .block_on(self.context.resume_existing_stream(id, skip))?
            {
                Resumed::Stream(stream) => harness::Resumed::Stream(self.reader(stream)),
                Resumed::Done => harness::Resumed::Done,
                Resumed::NotFound => harness::Resumed::NotFound,
            },
        )
    }

    fn has_existing_stream(&self, id: &str) -> Result<StreamState, Error> {
        self.executor.block_on(self.context.has_existing_stream(id))
    }

    fn stats(&self) -> Stats {
        self.context.stats()
    }
}

impl<R: AsyncRuntime, E: Executor> Harness for AsyncHarness<R, E> {
    fn context(&self, store: &Store, config: Config) -> Box<dyn harness::Context> {
        let builder = AsyncContext::<R>::builder().config(config);
        let builder = match store {
            Store::Memory(memory) => builder.memory(memory.clone()),
            Store::Redis(server) => builder.redis_url(server.url()),
            Store::Custom(custom) => {
                builder.publisher_subscriber(custom.clone(), custom.subscriber())
            }
            Store::Cluster(cluster, pubsub) => {
                builder.redis_cluster(cluster.urls()).pubsub(*pubsub)
            }
        };
        self.wrap(self.executor.block_on(builder.build()).expect("a context"))
    }

    fn redis_context(&self, url: &str, config: Config) -> Result<Box<dyn harness::Context>, Error> {
        let builder = AsyncContext::<R>::builder().config(config).redis_url(url);
        Ok(self.wrap(self.executor.block_on(builder.build())?))
    }
}
