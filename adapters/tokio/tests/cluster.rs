//! The behaviour suite (resumable-stream-testkit) on the tokio driver against a private
//! three-master Redis Cluster: sharded pub/sub, classic pub/sub, and a node killed and
//! restarted mid-stream.

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

resumable_stream_testkit::cluster_suite!(super::harness());

#[test]
fn connecting_to_no_cluster_is_a_typed_error() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let url = format!(
        "redis://127.0.0.1:{}/",
        resumable_stream_testkit::redis_server::free_port()
    );
    let result = runtime.block_on(
        resumable_stream_tokio::ResumableStreamContext::builder()
            .redis_cluster([url])
            .build(),
    );
    assert!(
        matches!(
            result,
            Err(resumable_stream::Error::Redis {
                command: "CONNECT",
                ..
            })
        ),
        "{result:?}"
    );
}
