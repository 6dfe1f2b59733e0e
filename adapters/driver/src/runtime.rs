//! What a context needs of an executor, and the four loops it runs there: one
//! carries commands to the transport, one carries (un)subscriptions, one runs blocking
//! reads (a few at once, each bounded in time), one fires the engine's deadlines. The
//! async drivers run them on their runtime (tokio, async-std, smol); the blocking
//! driver runs them on a private I/O thread.

use crate::hub::{Hub, Queues};
use crate::mailbox::{mailbox, Receiver};
use crate::transport::Transport;
use futures_util::future::{self, BoxFuture, Either};
use resumable_stream::{Command, Op, Reply, ReplyError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        blocking,
        timer,
    } = queues;
    runtime.spawn(Box::pin(run_commands(
        hub.clone(),
        transport.clone(),
        commands,
    )));
    runtime.spawn(Box::pin(run_subscriptions(
        hub.clone(),
        transport.clone(),
        subscriptions,
    )));
    runtime.spawn(Box::pin(run_blocking(
        hub.clone(),
        transport,
        runtime.clone(),
        blocking,
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

/// The most blocking reads in flight at once. Each holds a connection of its own for
/// up to its `block_millis`, so this bounds the connections a context opens for them;
/// durable mode's live tails need few (one read can name many streams). Further reads
/// wait for one to end, which each does within its bound.
pub(crate) const MAX_BLOCKING_READS: usize = 8;

/// How long past its `block_millis` a blocking read may stay unanswered by a backend
/// that times out by itself (Redis answers nil at `block_millis`) before the loop gives
/// up on it, as on a server that stopped answering: generous, as for a pipeline.
const BLOCKING_SLACK: Duration = Duration::from_secs(10);

/// Runs blocking reads, each on a task of its own, at most [`MAX_BLOCKING_READS`] at
/// once, and hands each reply to the engine as it comes. A read still running when the
/// context closes is dropped.
async fn run_blocking(
    hub: Hub,
    transport: Arc<dyn Transport>,
    runtime: Arc<dyn Runtime>,
    queue: Receiver<Command>,
) {
    // Each task signals its end here; the loop keeps a sender, so this never ends.
    let (ended, ends) = mailbox::<()>();
    let mut in_flight = 0usize;
    loop {
        while let Ok(Some(())) = ends.try_recv() {
            in_flight = in_flight.saturating_sub(1);
        }
        if in_flight >= MAX_BLOCKING_READS {
            if ends.recv().await.is_some() {
                in_flight = in_flight.saturating_sub(1);
            }
            continue;
        }
        let Some(command) = queue.recv().await else {
            return;
        };
        in_flight += 1;
        let (hub, transport, sleeper, ended) = (
            hub.clone(),
            transport.clone(),
            runtime.clone(),
            ended.clone(),
        );
        runtime.spawn(Box::pin(async move {
            let closed = hub.close_signal();
            let read = bounded_read(&*transport, &*sleeper, &command, BLOCKING_SLACK);
            let read = std::pin::pin!(read);
            let stop = std::pin::pin!(closed.recv());
            if let Either::Left((reply, _)) = future::select(read, stop).await {
                hub.handle_reply(command.id, reply);
            }
            let _ = ended.send(());
        }));
    }
}

/// One blocking read through `transport`, bounded in time: a backend that times out
/// by itself gets `slack` past the read's `block_millis`, then the read
/// fails as on a lost connection; one that does not
/// ([`Transport::times_out_blocking_reads`]) is stopped at `block_millis`, and the
/// read answers nil, as Redis would.
async fn bounded_read(
    transport: &dyn Transport,
    runtime: &dyn Runtime,
    command: &Command,
    slack: Duration,
) -> Result<Reply, ReplyError> {
    let block = match &command.op {
        Op::XRead { block_millis, .. } => Duration::from_millis(*block_millis),
        _ => Duration::ZERO,
    };
    let ours = !transport.times_out_blocking_reads();
    let bound = if ours {
        block
    } else {
        block.saturating_add(slack)
    };
    let read = transport.blocking(command);
    // A bound too far to represent is no bound.
    let Some(deadline) = Instant::now().checked_add(bound) else {
        return read.await;
    };
    match future::select(read, runtime.sleep_until(deadline)).await {
        Either::Left((reply, _)) => reply,
        Either::Right(_) if ours => Ok(Reply::Nil),
        Either::Right(_) => Err(ReplyError::Connection("no reply to a blocking read".into())),
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use crate::mailbox::mailbox;
    use crate::transport::{Inbox, MemoryBackend};
    use bytes::Bytes;
    use resumable_stream::{CommandId, Config, Engine, StreamId};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::Duration;

    /// Runs `future` on this thread, parking it until woken.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        struct ThreadWaker(std::thread::Thread);
        impl Wake for ThreadWaker {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    /// A runtime of threads: a thread per task, a thread per sleep.
    struct Threads;

    impl Runtime for Threads {
        fn spawn(&self, task: BoxFuture<'static, ()>) {
            std::thread::spawn(move || block_on(task));
        }

        fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
            let (done, slept) = mailbox::<()>();
            std::thread::spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                done.close();
            });
            Box::pin(async move {
                let _ = slept.recv().await;
            })
        }
    }

    fn xread(key: &'static str, block_millis: u64) -> Command {
        Command {
            id: CommandId(7),
            op: Op::XRead {
                count: 10,
                block_millis,
                streams: vec![(Bytes::from_static(key.as_bytes()), StreamId::new(0, 0))],
            },
        }
    }

    #[test]
    fn a_store_that_waits_for_ever_is_answered_nil_at_block_millis() {
        let connection = MemoryBackend::new().connect();
        let started = Instant::now();
        let reply = block_on(bounded_read(
            &connection,
            &Threads,
            &xread("nothing", 100),
            Duration::from_secs(10),
        ));
        assert_eq!(reply, Ok(Reply::Nil));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    /// A backend whose blocking reads never answer, and that claims to time them out.
    struct Silent;

    impl Transport for Silent {
        fn attach(&self, _: Inbox) {}

        fn execute<'a>(
            &'a self,
            commands: &'a [Command],
        ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
            Box::pin(future::ready(vec![Ok(Reply::Nil); commands.len()]))
        }

        fn pubsub<'a>(
            &'a self,
            commands: &'a [Command],
        ) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
            Box::pin(future::ready(vec![Ok(()); commands.len()]))
        }
    }

    #[test]
    fn without_blocking_reads_a_backend_answers_a_server_error() {
        let reply = block_on(Silent.blocking(&xread("k", 10)));
        assert!(matches!(reply, Err(ReplyError::Server(text)) if text.contains("XREAD BLOCK")));
    }

    /// Silent, but with blocking reads that never answer.
    struct Mute;

    impl Transport for Mute {
        fn attach(&self, _: Inbox) {}

        fn execute<'a>(
            &'a self,
            commands: &'a [Command],
        ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
            Silent.execute(commands)
        }

        fn pubsub<'a>(
            &'a self,
            commands: &'a [Command],
        ) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
            Silent.pubsub(commands)
        }

        fn blocking<'a>(&'a self, _: &'a Command) -> BoxFuture<'a, Result<Reply, ReplyError>> {
            Box::pin(future::pending())
        }
    }

    #[test]
    fn a_read_unanswered_past_its_slack_fails_as_a_lost_connection() {
        let reply = block_on(bounded_read(
            &Mute,
            &Threads,
            &xread("k", 50),
            Duration::from_millis(50),
        ));
        assert_eq!(
            reply,
            Err(ReplyError::Connection("no reply to a blocking read".into()))
        );
    }

    #[test]
    fn a_memory_read_wakes_when_an_entry_is_added() {
        let backend = MemoryBackend::new();
        let reader = backend.connect();
        let writer = backend.connect();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.run(&Op::XAdd {
                create: true,
                key: Bytes::from_static(b"s"),
                id: StreamId::new(1, 0),
                fields: vec![Bytes::from_static(b"f"), Bytes::from_static(b"v")],
            })
        });
        let started = Instant::now();
        let reply = block_on(bounded_read(
            &reader,
            &Threads,
            &xread("s", 10_000),
            Duration::from_secs(10),
        ));
        assert!(
            matches!(reply, Ok(Reply::Array(ref streams)) if streams.len() == 1),
            "{reply:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(thread.join(), Ok(Ok(_))));
    }

    /// Counts blocking reads in flight, and the most at once; each takes 30 ms.
    #[derive(Default)]
    struct Counting {
        now: AtomicUsize,
        most: AtomicUsize,
        done: AtomicUsize,
    }

    impl Transport for Counting {
        fn attach(&self, _: Inbox) {}

        fn execute<'a>(
            &'a self,
            commands: &'a [Command],
        ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
            Silent.execute(commands)
        }

        fn pubsub<'a>(
            &'a self,
            commands: &'a [Command],
        ) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
            Silent.pubsub(commands)
        }

        fn blocking<'a>(&'a self, _: &'a Command) -> BoxFuture<'a, Result<Reply, ReplyError>> {
            Box::pin(async move {
                let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                Threads
                    .sleep_until(Instant::now() + Duration::from_millis(30))
                    .await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                self.done.fetch_add(1, Ordering::SeqCst);
                Ok(Reply::Nil)
            })
        }
    }

    #[test]
    fn the_loop_runs_reads_at_once_up_to_its_limit_and_answers_each() {
        let (hub, _queues) = Hub::new(Engine::new(Config::default()));
        let transport = Arc::new(Counting::default());
        let (send, queue) = mailbox();
        for id in 0..20 {
            let mut command = xread("k", 1000);
            command.id = CommandId(1000 + id);
            assert!(send.send(command).is_ok());
        }
        let loop_ = std::thread::spawn({
            let (hub, transport) = (hub.clone(), transport.clone());
            move || block_on(run_blocking(hub, transport, Arc::new(Threads), queue))
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while transport.done.load(Ordering::SeqCst) < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Every reply reached the engine (which sent none of these reads).
        while hub.with_engine(|engine| engine.stats().unmatched_replies) < 20
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(transport.done.load(Ordering::SeqCst), 20);
        assert_eq!(transport.most.load(Ordering::SeqCst), MAX_BLOCKING_READS);
        assert_eq!(
            hub.with_engine(|engine| engine.stats().unmatched_replies),
            20
        );
        send.close();
        assert!(loop_.join().is_ok());
    }
}
