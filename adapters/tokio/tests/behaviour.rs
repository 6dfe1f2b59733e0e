//! The shared behaviour suite (resumable-stream-testkit) on the tokio driver: against a
//! private redis-server, the in-memory backend, a custom publisher/subscriber and a
//! redis-server serving TLS only with a password (as a managed Redis does), plus the
//! Redis fault, wire-capture and managed-Redis (TLS, ACL) cases.

use resumable_stream_testkit::{AsyncHarness, Executor};
use resumable_stream_tokio::ResumableStreamContext;

resumable_stream_testkit::async_context!(
    Driver = ResumableStreamContext,
    sleep = |d| Box::pin(tokio::time::sleep(d))
);

/// Enters a multi-threaded tokio runtime from the test thread.
struct TokioExecutor(tokio::runtime::Runtime);

impl Executor for TokioExecutor {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

fn harness() -> AsyncHarness<Driver, TokioExecutor> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    AsyncHarness::new(TokioExecutor(runtime))
}

resumable_stream_testkit::behaviour_suite!(super::harness(); memory, redis, custom, tls);

#[test]
fn in_memory_contexts_need_no_redis() {
    harness().in_memory_contexts_need_no_redis();
}
