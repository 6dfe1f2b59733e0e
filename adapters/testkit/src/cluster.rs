//! The Redis Cluster cases: that sharded pub/sub really is `SPUBLISH` / `SSUBSCRIBE` on
//! the shard owning each channel (and classic pub/sub the v1 commands), and that a
//! stream survives a node killed and restarted under it.

use crate::harness::{fixed, manual, Context, Feed, Harness, Reader};
use crate::setup::Setup;
use crate::store::Store;
use crate::suite::{read_all, read_exactly, SLACK};
use crate::RedisCluster;
use resumable_stream::{Config, Error, PubSub, Role};
use std::time::{Duration, Instant};

/// Sums `command`'s calls over every node.
fn calls(cluster: &RedisCluster, command: &str) -> u64 {
    (0..cluster.len())
        .map(|node| cluster.command_calls(node, command))
        .sum()
}

/// How many shard subscribers `channel` has on the node that owns it.
fn shard_subscribers(cluster: &RedisCluster, channel: &str) -> i64 {
    let reply: (Vec<u8>, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query::<Vec<(Vec<u8>, i64)>>(&mut cluster.connection_for(channel.as_bytes()))
        .expect("PUBSUB SHARDNUMSUB")
        .pop()
        .expect("one channel");
    reply.1
}

/// The node where a shard channel matching `pattern` is subscribed, and the channel.
fn shard_channel(cluster: &RedisCluster, pattern: &str) -> Option<(usize, Vec<u8>)> {
    (0..cluster.len()).find_map(|node| {
        let mut channels: Vec<Vec<u8>> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(pattern)
            .query(&mut cluster.connection(node))
            .expect("PUBSUB SHARDCHANNELS");
        channels.pop().map(|channel| (node, channel))
    })
}

/// The node where a shard channel matching `pattern` is subscribed, if any.
fn node_with_shard_channel(cluster: &RedisCluster, pattern: &str) -> Option<usize> {
    shard_channel(cluster, pattern).map(|(node, _)| node)
}

/// A stream "s" produced on one context and resumed on another, both readers past
/// "before ": what the fault cases start from.
struct Streaming {
    /// The two contexts, kept alive while the readers are.
    contexts: (Box<dyn Context>, Box<dyn Context>),
    feed: Feed,
    producer: Box<dyn Reader>,
    resumer: Box<dyn Reader>,
}

fn streaming(harness: &dyn Harness, store: &Store) -> Streaming {
    streaming_with(harness, store, Config::default())
}

fn streaming_with(harness: &dyn Harness, store: &Store, config: Config) -> Streaming {
    streaming_on(harness, store.setup(config))
}

fn streaming_on(harness: &dyn Harness, setup: Setup) -> Streaming {
    let context = || harness.build(setup.clone()).expect("a context");
    let (a, b) = (context(), context());
    let (feed, source) = manual();
    let mut producer = a
        .resumable_stream("s", source, None)
        .expect("no error")
        .expect("a new stream");
    feed.chunk("before ");
    assert_eq!(read_exactly(&mut producer, 7), b"before ");
    let mut resumer: Box<dyn Reader> = b
        .resumable_stream("s", fixed(Vec::<String>::new()), None)
        .expect("no error")
        .expect("an active stream");
    assert_eq!(read_exactly(&mut resumer, 7), b"before ");
    Streaming {
        contexts: (a, b),
        feed,
        producer,
        resumer,
    }
}

/// A producer and a resumer on two contexts: the pub/sub commands each node ran are
/// the sharded ones, on the shard owning each channel, for a sharded store; the
/// classic ones, and no sharded one, for a classic store.
pub fn the_pubsub_commands_are_the_configured_ones(harness: &dyn Harness, store: &mut Store) {
    let sharded = matches!(store, Store::Cluster(_, PubSub::Sharded));
    let (a, b) = (
        harness.context(store, Config::default()),
        harness.context(store, Config::default()),
    );
    let (feed, source) = manual();
    let mut producer = a
        .resumable_stream("s", source, None)
        .expect("no error")
        .expect("a new stream");
    feed.chunk("one ");
    assert_eq!(read_exactly(&mut producer, 4), b"one ");
    let resumer = b
        .resumable_stream("s", fixed(Vec::<String>::new()), None)
        .expect("no error")
        .expect("an active stream");
    assert_eq!(resumer.role(), Role::Resumer);
    let cluster = store.redis_cluster().expect("a cluster store");
    if sharded {
        // The producer's request channel is subscribed on its own shard.
        assert_eq!(
            shard_subscribers(cluster, "resumable-stream:rs:request:s"),
            1
        );
        assert!(node_with_shard_channel(cluster, "resumable-stream:rs:chunk:*").is_some());
    }
    feed.chunk("two");
    drop(feed);
    assert_eq!(read_all(resumer), (b"one two".to_vec(), None));
    assert_eq!(read_all(producer), (b"two".to_vec(), None));
    let (spublish, ssubscribe) = (calls(cluster, "spublish"), calls(cluster, "ssubscribe"));
    let (publish, subscribe) = (calls(cluster, "publish"), calls(cluster, "subscribe"));
    if sharded {
        // A request, the catch-up, a chunk, the end; the two subscriptions.
        assert!(spublish >= 4, "{spublish} SPUBLISH");
        assert!(ssubscribe >= 2, "{ssubscribe} SSUBSCRIBE");
        assert_eq!((publish, subscribe), (0, 0));
    } else {
        assert!(publish >= 4, "{publish} PUBLISH");
        assert!(subscribe >= 2, "{subscribe} SUBSCRIBE");
        assert_eq!((spublish, ssubscribe), (0, 0));
    }
}

/// The node holding the resumer's sharded subscription is killed mid-stream and
/// started again (same slots, no data): the resumer gets the rest byte-exact, or ends
/// with a typed error after a prefix of it (never wrong data, never a hang); the
/// producer's reader gets everything.
pub fn a_node_restarting_mid_stream_loses_no_byte(harness: &dyn Harness, store: &mut Store) {
    let Streaming {
        contexts: _contexts,
        feed,
        mut producer,
        resumer,
    } = streaming(harness, store);

    let cluster = store.redis_cluster().expect("a cluster store");
    let node = node_with_shard_channel(cluster, "resumable-stream:rs:chunk:*")
        .expect("the resumer's channel is subscribed on some shard");
    cluster.kill(node);
    std::thread::sleep(Duration::from_millis(300));
    cluster.restart(node);

    feed.chunk("after");
    assert_eq!(read_exactly(&mut producer, 5), b"after");
    // Let the reconnections settle before the end.
    std::thread::sleep(Duration::from_millis(1500));
    feed.chunk(" the end");
    drop(feed);
    assert_eq!(read_all(producer), (b" the end".to_vec(), None));
    assert_eq!(read_all(resumer), (b"after the end".to_vec(), None));
}

/// The slot of the resumer's sharded channel moves to another shard mid-stream (the
/// server drops the subscription, `MOVED` redirects the producer's `SPUBLISH`): the
/// subscription is re-established on the new owner and the resumer gets the rest
/// byte-exact; the producer's reader gets everything.
pub fn a_slot_moving_mid_stream_loses_no_byte(harness: &dyn Harness, store: &mut Store) {
    let Streaming {
        contexts: _contexts,
        feed,
        mut producer,
        resumer,
    } = streaming(harness, store);

    let cluster = store.redis_cluster().expect("a cluster store");
    let (node, channel) = shard_channel(cluster, "resumable-stream:rs:chunk:*")
        .expect("the resumer's channel is subscribed on some shard");
    let to = (node + 1) % cluster.len();
    cluster.move_slot(resumable_stream::cluster::key_slot(&channel), to);

    feed.chunk("after");
    assert_eq!(read_exactly(&mut producer, 5), b"after");
    // Let the resubscription settle before the end.
    std::thread::sleep(Duration::from_millis(1500));
    // The subscription lives on the new owner now.
    assert_eq!(
        node_with_shard_channel(cluster, "resumable-stream:rs:chunk:*"),
        Some(to)
    );
    feed.chunk(" the end");
    drop(feed);
    assert_eq!(read_all(producer), (b" the end".to_vec(), None));
    assert_eq!(read_all(resumer), (b"after the end".to_vec(), None));
}

/// The master holding the resumer's sharded subscription fails over to its replica
/// mid-stream (`CLUSTER FAILOVER`): the resumer gets the rest byte-exact (not a chunk
/// twice, though the old master, now a replica, may keep the old subscription); the
/// producer's reader gets everything.
pub fn a_failover_mid_stream_loses_no_byte(harness: &dyn Harness, store: &mut Store) {
    let Streaming {
        contexts: _contexts,
        feed,
        mut producer,
        resumer,
    } = streaming(harness, store);

    let cluster = store.redis_cluster().expect("a cluster store");
    let (master, channel) = shard_channel(cluster, "resumable-stream:rs:chunk:*")
        .expect("the resumer's channel is subscribed on some shard");
    let replica = cluster
        .replica_of(master)
        .expect("a replicated cluster, the subscription on a master");
    cluster.failover(replica);
    assert_eq!(cluster.node_of(&channel), replica);

    for part in ["after", " and", " more"] {
        feed.chunk(part);
        assert_eq!(read_exactly(&mut producer, part.len()), part.as_bytes());
    }
    // Let the resubscription settle before the end.
    std::thread::sleep(Duration::from_millis(1500));
    feed.chunk(" the end");
    drop(feed);
    assert_eq!(read_all(producer), (b" the end".to_vec(), None));
    assert_eq!(
        read_all(resumer),
        (b"after and more the end".to_vec(), None)
    );
}

/// Kills (SIGKILL) the master holding the resumer's sharded subscription; the master
/// and the channel.
fn kill_the_resumers_master(cluster: &mut RedisCluster) -> (usize, Vec<u8>) {
    let (master, channel) = shard_channel(cluster, "resumable-stream:rs:chunk:*")
        .expect("the resumer's channel is subscribed on some shard");
    cluster.kill(master);
    (master, channel)
}

/// How long a resumer may take, from the kill of a master, to get the rest of its
/// stream after an automatic failover: detecting the death (about twice
/// [`FAILOVER_NODE_TIMEOUT`](crate::store::FAILOVER_NODE_TIMEOUT)), the election, the
/// slot map refreshed, the subscription re-established, the resumer asking again;
/// then [`SLACK`] for a loaded machine.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(20);

/// The master holding the resumer's sharded subscription is killed (SIGKILL)
/// mid-stream, and the cluster fails it over to its replica by itself: the
/// resumer gets everything produced since, byte-exact, within [`FAILOVER_BOUND`] of
/// the kill (the default reconnect window, 30 s, spans the failover); the producer's
/// reader gets everything. With the default heartbeat (2 s): the liveness bound (6 s)
/// waits while the resumer's pub/sub connection is down, so a failover of its shard
/// is no producer death.
pub fn a_master_killed_mid_stream_fails_over(harness: &dyn Harness, store: &mut Store) {
    let config = Config::default();
    let Streaming {
        contexts: _contexts,
        feed,
        mut producer,
        resumer,
    } = streaming_with(harness, store, config);

    let cluster = store.redis_cluster().expect("a cluster store");
    let (master, channel) = kill_the_resumers_master(cluster);
    let killed = Instant::now();
    // Chunks produced while the master is dead and while its replica takes over.
    feed.chunk("during");
    assert_eq!(read_exactly(&mut producer, 6), b"during");
    let replica = cluster.await_failover(master);
    assert_eq!(cluster.node_of(&channel), replica);
    let failed_over = killed.elapsed();
    for part in [" after", " and more"] {
        feed.chunk(part);
        assert_eq!(read_exactly(&mut producer, part.len()), part.as_bytes());
    }
    feed.chunk(" the end");
    drop(feed);
    assert_eq!(read_all(producer), (b" the end".to_vec(), None));
    assert_eq!(
        read_all(resumer),
        (b"during after and more the end".to_vec(), None)
    );
    let done = killed.elapsed();
    assert!(
        done < FAILOVER_BOUND,
        "the resumer ended {done:?} after the kill (failed over after {failed_over:?})"
    );
}

/// The same death with a reconnect window shorter than the failover: the resumer
/// ends with a typed error (`Error::Redis`: the cluster was not whole within the
/// window) within the window plus [`SLACK`] of the kill, after a prefix of the stream,
/// never wrong data; the producer's reader gets every chunk and its end.
pub fn a_failover_longer_than_the_window_ends_readers_with_typed_errors(
    harness: &dyn Harness,
    store: &mut Store,
) {
    const WINDOW: Duration = Duration::from_millis(500);
    let setup = store.setup(Config::default()).reconnect_window(WINDOW);
    let Streaming {
        contexts: _contexts,
        feed,
        mut producer,
        resumer,
    } = streaming_on(harness, setup);

    let cluster = store.redis_cluster().expect("a cluster store");
    let (master, _) = kill_the_resumers_master(cluster);
    let killed = Instant::now();
    feed.chunk("during");
    assert_eq!(read_exactly(&mut producer, 6), b"during");
    let (bytes, error) = read_all(resumer);
    let ended = killed.elapsed();
    assert!(
        b"during".starts_with(&bytes),
        "the resumer got {bytes:?}, not a prefix of the stream"
    );
    assert!(
        matches!(error, Some(Error::Redis { .. })),
        "the resumer ends with a typed error: {error:?}"
    );
    assert!(
        ended < WINDOW + SLACK,
        "the resumer ended {ended:?} after the kill"
    );
    drop(feed);
    let (rest, end) = read_all(producer);
    assert_eq!((rest, end), (Vec::new(), None));
    cluster.await_failover(master);
}
