//! The shared behaviour suite (resumable-stream-testkit) on the async-std driver:
//! against a private redis-server, the in-memory backend and a custom
//! publisher/subscriber, plus the Redis fault and wire-capture cases.

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

#[test]
fn in_memory_contexts_need_no_redis() {
    harness().in_memory_contexts_need_no_redis();
}
