//! The shared behaviour suite (resumable-stream-testkit) on the smol driver: against
//! a private redis-server, the in-memory backend and a custom publisher/subscriber,
//! plus the Redis fault and wire-capture cases.

use resumable_stream_smol::ResumableStreamContext;
use resumable_stream_testkit::{AsyncHarness, Executor};

resumable_stream_testkit::async_context!(
    Driver = ResumableStreamContext,
    sleep = |d| Box::pin(async move {
        smol::Timer::after(d).await;
    })
);

/// smol, entered from the test thread.
struct SmolExecutor;

impl Executor for SmolExecutor {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        smol::block_on(future)
    }
}

fn harness() -> AsyncHarness<Driver, SmolExecutor> {
    // smol's global executor, which every context of this test binary shares, runs on
    // one thread unless told otherwise; the suite runs cases in parallel, and one case
    // blocks a thread in `make_stream` on purpose. Four threads, as a server would
    // configure it (the tokio suite runs on a multi-threaded runtime too).
    std::env::set_var("SMOL_THREADS", "4");
    AsyncHarness::new(SmolExecutor)
}

resumable_stream_testkit::behaviour_suite!(super::harness(); memory, redis, custom);

#[test]
fn in_memory_contexts_need_no_redis() {
    harness().in_memory_contexts_need_no_redis();
}
