//! The shared behaviour suite (resumable-stream-testkit) on the async-std driver:
//! against a private redis-server, the in-memory backend and a custom
//! publisher/subscriber, plus the Redis fault and wire-capture cases.

use futures_util::StreamExt;
use resumable_stream::Error;
use resumable_stream_async_std::ResumableStreamContext;
use resumable_stream_testkit::{AsyncHarness, Executor};

resumable_stream_testkit::async_context!(
    Driver = ResumableStreamContext,
    sleep = |d| Box::pin(async_std::task::sleep(d))
);

/// async-std's executor, entered from the test thread.
struct AsyncStdExecutor;

impl Executor for AsyncStdExecutor {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

fn harness() -> AsyncHarness<Driver, AsyncStdExecutor> {
    AsyncHarness::new(AsyncStdExecutor)
}

resumable_stream_testkit::behaviour_suite!(super::harness(); memory, redis, custom);

#[async_std::test]
async fn in_memory_contexts_need_no_redis() {
    let context = ResumableStreamContext::in_memory();
    let chunks = || futures_util::stream::iter([Ok::<_, Error>("a"), Ok("b")]);
    let stream = context
        .resumable_stream("s", chunks, None)
        .await
        .unwrap()
        .unwrap();
    let bytes: Vec<_> = stream.map(Result::unwrap).collect().await;
    assert_eq!(bytes.concat(), b"ab");
}
