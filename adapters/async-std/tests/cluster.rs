//! The async-std driver on a private three-master Redis Cluster (the cluster backend is
//! shared with the tokio driver, which runs the whole cluster suite): sharded pub/sub
//! with resumers joining while chunks flow, classic pub/sub, and a node restarted
//! mid-stream.

use resumable_stream_async_std::ResumableStreamContext;
use resumable_stream_testkit::{cluster, suite, AsyncHarness, Executor, Store};

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

#[test]
fn sharded_resumers_joining_while_chunks_flow_are_byte_exact() {
    suite::four_resumers_joining_while_chunks_flow_are_byte_exact(&harness(), &Store::cluster());
}

#[test]
fn sharded_pubsub_is_spublish_and_ssubscribe() {
    cluster::the_pubsub_commands_are_the_configured_ones(&harness(), &mut Store::cluster());
}

#[test]
fn classic_pubsub_is_publish_and_subscribe() {
    cluster::the_pubsub_commands_are_the_configured_ones(&harness(), &mut Store::cluster_classic());
}

#[test]
fn a_node_restarting_mid_stream_loses_no_byte() {
    cluster::a_node_restarting_mid_stream_loses_no_byte(&harness(), &mut Store::cluster());
}
