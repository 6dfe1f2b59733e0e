//! Blocking reads (`XREAD ... BLOCK`, durable mode's live tail) at the transport level,
//! on tokio: against a private redis-server, a private Redis Cluster and the in-process
//! store. The engine does not emit them yet, so these call the transports directly:
//! `execute` for the command connection, `blocking` for a read on a connection of its
//! own.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use resumable_stream::{Command, CommandId, Op, Reply, ReplyError, StreamId};
use resumable_stream_driver::{
    ClusterTransport, MemoryBackend, RedisTransport, Runtime, Transport,
};
use resumable_stream_testkit::{RedisCluster, RedisServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// tokio, as the driver needs it.
struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        drop(tokio::spawn(task));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

fn command(op: Op) -> Command {
    Command {
        id: CommandId(1),
        op,
    }
}

fn xadd(key: &str, ms: u64) -> Command {
    command(Op::XAdd {
        create: true,
        key: Bytes::copy_from_slice(key.as_bytes()),
        id: StreamId::new(ms, 0),
        fields: vec![Bytes::from_static(b"chunk"), Bytes::from(format!("c{ms}"))],
    })
}

/// `XREAD COUNT 10 BLOCK block_millis STREAMS key 0-0`.
fn xread(key: &str, block_millis: u64) -> Command {
    command(Op::XRead {
        count: 10,
        block_millis,
        streams: vec![(Bytes::copy_from_slice(key.as_bytes()), StreamId::new(0, 0))],
    })
}

/// The (key, ids) of each stream of an `XREAD` reply.
fn entries(reply: &Result<Reply, ReplyError>) -> Vec<(Bytes, Vec<Bytes>)> {
    let Ok(Reply::Array(streams)) = reply else {
        panic!("not an XREAD reply with data: {reply:?}");
    };
    streams
        .iter()
        .map(|stream| match stream {
            Reply::Array(pair) => match pair.as_slice() {
                [Reply::Data(key), Reply::Array(items)] => {
                    let ids = items
                        .iter()
                        .map(|item| match item {
                            Reply::Array(entry) => match entry.first() {
                                Some(Reply::Data(id)) => id.clone(),
                                other => panic!("an entry without an id: {other:?}"),
                            },
                            other => panic!("an entry that is not an array: {other:?}"),
                        })
                        .collect();
                    (key.clone(), ids)
                }
                other => panic!("a stream that is not a pair: {other:?}"),
            },
            other => panic!("a stream that is not an array: {other:?}"),
        })
        .collect()
}

fn one_entry(key: &str, id: &str) -> Vec<(Bytes, Vec<Bytes>)> {
    vec![(
        Bytes::copy_from_slice(key.as_bytes()),
        vec![Bytes::copy_from_slice(id.as_bytes())],
    )]
}

async fn execute_one(transport: &dyn Transport, command: Command) -> Result<Reply, ReplyError> {
    let mut replies = transport.execute(std::slice::from_ref(&command)).await;
    assert_eq!(replies.len(), 1);
    replies.remove(0)
}

async fn redis_transport(server: &RedisServer) -> Arc<RedisTransport> {
    let client = resumable_stream_driver::redis::Client::open(server.url()).expect("a client");
    let transport = RedisTransport::connect(&client, Duration::from_secs(5), Arc::new(Tokio))
        .await
        .expect("connect");
    Arc::new(transport)
}

/// A read parked on `key` until `writer` adds an entry there: it returns that entry,
/// well before its block time.
async fn a_read_parks_until_an_entry_is_added(
    reader: Arc<dyn Transport>,
    writer: Arc<dyn Transport>,
) {
    let started = Instant::now();
    let read = tokio::spawn({
        let reader = reader.clone();
        async move { reader.blocking(&xread("tail", 10_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!read.is_finished(), "the read did not wait");
    assert!(matches!(
        execute_one(&*writer, xadd("tail", 1)).await,
        Ok(Reply::Data(_))
    ));
    let reply = read.await.expect("the read's task");
    assert_eq!(entries(&reply), one_entry("tail", "1-0"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_read_parks_until_an_entry_is_added() {
    let server = RedisServer::start();
    let transport = redis_transport(&server).await;
    a_read_parks_until_an_entry_is_added(transport.clone(), transport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_read_parks_until_an_entry_is_added() {
    let backend = MemoryBackend::new();
    let reader = Arc::new(backend.connect());
    let writer = Arc::new(backend.connect());
    a_read_parks_until_an_entry_is_added(reader, writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_read_without_data_answers_nil_after_its_block_time() {
    let server = RedisServer::start();
    let transport = redis_transport(&server).await;
    assert!(transport.times_out_blocking_reads());
    let started = Instant::now();
    assert_eq!(
        transport.blocking(&xread("quiet", 300)).await,
        Ok(Reply::Nil)
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// The in-process store waits for data for ever: the context's loop answers nil at
/// the block time (unit-tested in the driver), so its transport says it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_read_without_data_waits_for_the_loop_to_end_it() {
    let connection = MemoryBackend::new().connect();
    assert!(!connection.times_out_blocking_reads());
    let quiet = xread("quiet", 100);
    let waited =
        tokio::time::timeout(Duration::from_millis(400), connection.blocking(&quiet)).await;
    assert!(waited.is_err(), "{waited:?}");
    // Data already there is answered at once.
    assert!(connection.run(&xadd("quiet", 5).op).is_ok());
    let reply = connection.blocking(&xread("quiet", 100)).await;
    assert_eq!(entries(&reply), one_entry("quiet", "5-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_twenty_parked_reads_leave_the_command_connection_responsive() {
    let server = RedisServer::start();
    let transport = redis_transport(&server).await;
    let block = Duration::from_secs(4);
    let reads: Vec<_> = (0..20)
        .map(|n| {
            let transport = transport.clone();
            tokio::spawn(async move {
                let key = format!("tail-{n}");
                let reply = transport.blocking(&xread(&key, 4_000)).await;
                (key, reply)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reads.iter().all(|read| !read.is_finished()));
    // Each parked on a connection of its own.
    let info: String = resumable_stream_driver::redis::cmd("INFO")
        .arg("clients")
        .query(&mut server.connection())
        .expect("INFO clients");
    assert!(info.contains("blocked_clients:20\r\n"), "{info}");
    let started = Instant::now();
    let get = command(Op::Get {
        key: Bytes::from_static(b"plain"),
    });
    assert_eq!(execute_one(&*transport, get).await, Ok(Reply::Nil));
    let answered_in = started.elapsed();
    assert!(answered_in < Duration::from_millis(500), "{answered_in:?}");
    for n in 0..20 {
        assert!(execute_one(&*transport, xadd(&format!("tail-{n}"), 1))
            .await
            .is_ok());
    }
    for read in reads {
        let (key, reply) = read.await.expect("a read's task");
        assert_eq!(entries(&reply), one_entry(&key, "1-0"));
    }
    assert!(
        started.elapsed() < block,
        "the reads waited their whole block time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_mid_read_fails_the_read_and_the_next_one_works() {
    let mut server = RedisServer::start();
    let transport = redis_transport(&server).await;
    let read = tokio::spawn({
        let transport = transport.clone();
        async move { transport.blocking(&xread("tail", 10_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!read.is_finished());
    // Off the runtime's threads: restarting waits for the server, synchronously.
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let reply = read.await.expect("the read's task");
    assert!(matches!(reply, Err(ReplyError::Connection(_))), "{reply:?}");
    assert_eq!(
        transport.blocking(&xread("tail", 200)).await,
        Ok(Reply::Nil)
    );
    // The command connection finds the restart on its first pipeline (which may fail,
    // as before this change), and reopens before the next.
    let get = command(Op::Get {
        key: Bytes::from_static(b"plain"),
    });
    let _ = execute_one(&*transport, get).await;
    assert!(execute_one(&*transport, xadd("tail", 2)).await.is_ok());
    let reply = transport.blocking(&xread("tail", 200)).await;
    assert_eq!(entries(&reply), one_entry("tail", "2-0"));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_given_by_hand_refuse_blocking_reads() {
    let server = RedisServer::start();
    let client = resumable_stream_driver::redis::Client::open(server.url()).expect("a client");
    let commands = client
        .get_multiplexed_async_connection()
        .await
        .expect("commands");
    let pubsub = client.get_async_pubsub().await.expect("pub/sub");
    let transport = RedisTransport::new(commands, pubsub, Arc::new(Tokio));
    let reply = transport.blocking(&xread("tail", 100)).await;
    assert!(matches!(reply, Err(ReplyError::Connection(_))), "{reply:?}");
}

/// A private three-master cluster, started off the runtime's threads.
async fn cluster() -> RedisCluster {
    tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .expect("a cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_read_goes_to_the_node_owning_its_slot_and_follows_a_moved_slot() {
    let mut cluster = cluster().await;
    let transport = ClusterTransport::connect(
        &cluster.urls(),
        cluster.root_certificates().as_deref(),
        Duration::from_secs(5),
        Arc::new(Tokio),
    )
    .await
    .expect("connect");
    let transport = Arc::new(transport);
    let key = "tail-a";
    let owner = cluster.node_of(key.as_bytes());
    // Parked on its node until the entry comes.
    let read = tokio::spawn({
        let transport = transport.clone();
        async move { transport.blocking(&xread(key, 10_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished());
    assert!(execute_one(&*transport, xadd(key, 1)).await.is_ok());
    let reply = read.await.expect("the read's task");
    assert_eq!(entries(&reply), one_entry(key, "1-0"));
    assert_eq!(cluster.command_calls(owner, "xread"), 1);
    for other in (0..cluster.len()).filter(|&n| n != owner) {
        assert_eq!(cluster.command_calls(other, "xread"), 0, "node {other}");
    }
    // The slot moves: the read, sent where the slot was, follows the redirect.
    let to = (owner + 1) % cluster.len();
    let slot = resumable_stream::cluster::key_slot(key.as_bytes());
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.move_slot(slot, to);
        cluster
    })
    .await
    .expect("move the slot");
    let reply = transport.blocking(&xread(key, 1_000)).await;
    assert_eq!(entries(&reply), one_entry(key, "1-0"));
    assert_eq!(cluster.command_calls(to, "xread"), 1);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("stop the cluster");
}
