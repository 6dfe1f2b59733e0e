//! What a context needs of an executor, and the three loops it runs there: one
//! carries commands to the transport, one carries (un)subscriptions, one fires the
//! engine's deadlines. The async drivers run them on their runtime (tokio, async-std,
//! smol); the blocking driver runs them on a private I/O thread.

use crate::hub::{Hub, Queues};
use crate::mailbox::Receiver;
use crate::transport::Transport;
use futures_util::future::{self, BoxFuture, Either};
use resumable_stream::{Command, Reply, ReplyError};
use std::sync::Arc;
use std::time::Instant;

/// An executor a context runs on: how to spawn a task and how to sleep.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// Resolves at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
}

/// Starts the loops that empty `queues` through `transport`.
pub(crate) fn start_loops(
    hub: &Hub,
    queues: Queues,
    transport: Arc<dyn Transport>,
    runtime: &Arc<dyn Runtime>,
) {
    let Queues {
        commands,
        subscriptions,
        timer,
    } = queues;
    runtime.spawn(Box::pin(run_commands(
        hub.clone(),
        transport.clone(),
        commands,
    )));
    runtime.spawn(Box::pin(run_subscriptions(
        hub.clone(),
        transport,
        subscriptions,
    )));
    runtime.spawn(Box::pin(run_timer(hub.clone(), runtime.clone(), timer)));
}

/// The most commands one pipeline carries.
const COMMAND_BATCH: usize = 4096;

/// Carries commands to the transport: everything queued goes as one pipeline, one
/// pipeline in flight at a time, so the batch grows with the load.
async fn run_commands(hub: Hub, transport: Arc<dyn Transport>, queue: Receiver<Command>) {
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, COMMAND_BATCH).await > 0 {
        let replies = transport.execute(&batch).await;
        hub.handle_replies(batch.drain(..), replies);
    }
}

/// The most (un)subscriptions handed to the transport at once.
const SUBSCRIPTION_BATCH: usize = 1024;

/// Carries SUBSCRIBE and UNSUBSCRIBE (or their sharded forms) to the transport, in
/// order, as many as are queued at once: the transport decides how to batch them.
async fn run_subscriptions(hub: Hub, transport: Arc<dyn Transport>, queue: Receiver<Command>) {
    let mut batch = Vec::with_capacity(64);
    while queue.recv_many(&mut batch, SUBSCRIPTION_BATCH).await > 0 {
        let results = transport.pubsub(&batch).await;
        let replies = results.into_iter().map(|r| r.map(|()| Reply::Ok)).collect();
        hub.handle_replies(batch.drain(..), replies);
    }
}

/// Sleeps until the engine's next deadline and fires it; wakes early whenever the
/// deadline changes.
async fn run_timer(hub: Hub, runtime: Arc<dyn Runtime>, wakeups: Receiver<()>) {
    loop {
        match hub.next_deadline() {
            Some(deadline) => {
                let sleep = runtime.sleep_until(deadline);
                let woken = std::pin::pin!(wakeups.recv());
                match future::select(sleep, woken).await {
                    Either::Left(_) => hub.fire_timeouts(),
                    Either::Right((None, _)) => return,
                    Either::Right((Some(()), _)) => {}
                }
            }
            None => {
                if wakeups.recv().await.is_none() {
                    return;
                }
            }
        }
    }
}

/// What replies a transport gave short of one per command become: connection errors.
pub(crate) fn missing_reply() -> Result<Reply, ReplyError> {
    Err(ReplyError::Connection("no reply for this command".into()))
}
