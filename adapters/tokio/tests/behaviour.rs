//! The shared behaviour suite (resumable-stream-testkit) on the tokio driver: against a
//! private redis-server, the in-memory backend and a custom publisher/subscriber, plus
//! the Redis fault and wire-capture cases.

use futures_util::StreamExt;
use resumable_stream::{Config, Error, Role, Stats, StreamState};
use resumable_stream_testkit::{harness, Harness, Source, Store};
use resumable_stream_tokio::{ResumableStream, ResumableStreamContext, Resumed};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

/// The tokio driver, driven from a blocking test thread.
struct Tokio {
    runtime: Arc<Runtime>,
}

impl Tokio {
    fn new() -> Tokio {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Tokio {
            runtime: Arc::new(runtime),
        }
    }

    fn wrap(&self, context: ResumableStreamContext) -> Box<dyn harness::Context> {
        Box::new(Context {
            context,
            runtime: self.runtime.clone(),
        })
    }
}

struct Context {
    context: ResumableStreamContext,
    runtime: Arc<Runtime>,
}

struct Reader {
    stream: ResumableStream,
    runtime: Arc<Runtime>,
}

impl harness::Reader for Reader {
    fn role(&self) -> Role {
        self.stream.role()
    }

    fn next(&mut self) -> Option<Result<bytes::Bytes, Error>> {
        let stream = &mut self.stream;
        let next =
            async move { tokio::time::timeout(Duration::from_secs(30), stream.next()).await };
        self.runtime
            .block_on(next)
            .expect("nothing arrived within 30 s")
    }
}

type Chunks = futures_util::stream::BoxStream<'static, Result<String, String>>;

fn chunks(source: Source) -> impl FnOnce() -> Chunks + Send + 'static {
    move || match source {
        Source::Manual(feed) => futures_util::stream::unfold(feed, |feed| async move {
            feed.recv().await.map(|item| (item, feed))
        })
        .boxed(),
        Source::Fixed(list) => futures_util::stream::iter(list.into_iter().map(Ok)).boxed(),
    }
}

impl Context {
    fn reader(&self, stream: ResumableStream) -> Box<dyn harness::Reader> {
        Box::new(Reader {
            stream,
            runtime: self.runtime.clone(),
        })
    }
}

impl harness::Context for Context {
    fn resumable_stream(
        &self,
        id: &str,
        source: Source,
        skip: Option<u64>,
    ) -> Result<Option<Box<dyn harness::Reader>>, Error> {
        let stream =
            self.runtime
                .block_on(self.context.resumable_stream(id, chunks(source), skip))?;
        Ok(stream.map(|s| self.reader(s)))
    }

    fn create_new_resumable_stream(
        &self,
        id: &str,
        source: Source,
    ) -> Result<Box<dyn harness::Reader>, Error> {
        let stream = self
            .runtime
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
                .runtime
                .block_on(self.context.resume_existing_stream(id, skip))?
            {
                Resumed::Stream(stream) => harness::Resumed::Stream(self.reader(stream)),
                Resumed::Done => harness::Resumed::Done,
                Resumed::NotFound => harness::Resumed::NotFound,
            },
        )
    }

    fn has_existing_stream(&self, id: &str) -> Result<StreamState, Error> {
        self.runtime.block_on(self.context.has_existing_stream(id))
    }

    fn stats(&self) -> Stats {
        self.context.stats()
    }
}

impl Harness for Tokio {
    fn context(&self, store: &Store, config: Config) -> Box<dyn harness::Context> {
        let builder = ResumableStreamContext::builder().config(config);
        let builder = match store {
            Store::Memory(memory) => builder.memory(memory.clone()),
            Store::Redis(server) => builder.redis_url(server.url()),
            Store::Custom(custom) => {
                builder.publisher_subscriber(custom.clone(), custom.subscriber())
            }
        };
        self.wrap(self.runtime.block_on(builder.build()).expect("a context"))
    }

    fn redis_context(&self, url: &str, config: Config) -> Result<Box<dyn harness::Context>, Error> {
        let builder = ResumableStreamContext::builder()
            .config(config)
            .redis_url(url);
        Ok(self.wrap(self.runtime.block_on(builder.build())?))
    }
}

resumable_stream_testkit::behaviour_suite!(super::Tokio::new(); memory, redis, custom);

#[test]
fn in_memory_contexts_need_no_redis() {
    let tokio = Tokio::new();
    let _guard = tokio.runtime.enter();
    let context = ResumableStreamContext::in_memory();
    let stream = tokio
        .runtime
        .block_on(context.resumable_stream(
            "s",
            || futures_util::stream::iter([Ok::<_, Error>("a"), Ok("b")]),
            None,
        ))
        .unwrap()
        .unwrap();
    let bytes: Vec<_> = tokio.runtime.block_on(stream.map(Result::unwrap).collect());
    assert_eq!(bytes.concat(), b"ab");
}
