//! Redis Cluster scaling: the same two workloads on a one-shard cluster (one master
//! owning all 16384 slots) and on a three-shard cluster, sharded pub/sub, each on
//! private `redis-server`s on loopback ports started here.
//!
//! - fanout: one producer, four resumers in another context, 20000 chunks of 64 bytes;
//!   every resumer's output is checked byte for byte;
//! - many: 2000 concurrent streams of 50 chunks each, read by their creators.
//!
//! Prints, as a table, the median of three runs of: chunks per second (produced chunks
//! over the wall time until every reader has everything), and the CPU time of the
//! busiest node (`INFO cpu`, user + system) per run: what sharding divides. The same
//! workloads on three shards with classic pub/sub show what broadcasting costs.
//!
//! ```sh
//! cargo run --release -p resumable-stream-tokio --example clusterbench
//! ```

use futures_util::{stream, StreamExt};
use resumable_stream_testkit::RedisCluster;
use resumable_stream_tokio::{PubSub, ResumableStreamContext, Role};
use std::time::{Duration, Instant};

const FANOUT_CHUNKS: usize = 20_000;
const FANOUT_RESUMERS: usize = 4;
const MANY_STREAMS: usize = 2_000;
const MANY_CHUNKS: usize = 50;
const RUNS: usize = 3;

/// Chunk `i`: 64 bytes, different for every index.
fn chunk(i: usize) -> String {
    format!("{i:063}\n")
}

/// The CPU seconds (user + system) each node has used so far.
fn cpu_seconds(cluster: &RedisCluster) -> Vec<f64> {
    (0..cluster.len())
        .map(|node| cluster.cpu_seconds(node))
        .collect()
}

/// The most CPU milliseconds one node spent between two readings.
fn busiest_ms(before: &[f64], after: &[f64]) -> f64 {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (a - b) * 1000.0)
        .fold(0.0, f64::max)
}

async fn context(cluster: &RedisCluster, pubsub: PubSub) -> ResumableStreamContext {
    ResumableStreamContext::builder()
        .redis_cluster(cluster.urls())
        .pubsub(pubsub)
        .build()
        .await
        .expect("a context on the cluster")
}

async fn read_to_end(mut reader: resumable_stream_tokio::ResumableStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(item) = reader.next().await {
        out.extend_from_slice(&item.expect("no error"));
    }
    out
}

/// One producer, four resumers in another context: chunks per second.
async fn fanout(cluster: &RedisCluster, pubsub: PubSub, run: usize) -> f64 {
    let (a, b) = (
        context(cluster, pubsub).await,
        context(cluster, pubsub).await,
    );
    let id = format!("fanout-{run}");
    let (start_tx, start_rx) = tokio::sync::oneshot::channel::<()>();
    let source = move || {
        stream::once(async move {
            let _ = start_rx.await;
            stream::iter((0..FANOUT_CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i))))
        })
        .flatten()
    };
    let producer = a
        .resumable_stream(&id, source, None)
        .await
        .expect("no error")
        .expect("a new stream");
    let mut resumers = Vec::new();
    for _ in 0..FANOUT_RESUMERS {
        let reader = b
            .resumable_stream(&id, stream::empty::<Result<String, std::io::Error>>, None)
            .await
            .expect("no error")
            .expect("an active stream");
        assert_eq!(reader.role(), Role::Resumer);
        resumers.push(tokio::spawn(read_to_end(reader)));
    }
    let expected: Vec<u8> = (0..FANOUT_CHUNKS)
        .flat_map(|i| chunk(i).into_bytes())
        .collect();
    let started = Instant::now();
    let _ = start_tx.send(());
    let own = tokio::spawn(read_to_end(producer));
    for resumer in resumers {
        assert!(
            resumer.await.expect("a resumer task") == expected,
            "byte-exact"
        );
    }
    assert!(own.await.expect("the producer's reader") == expected);
    FANOUT_CHUNKS as f64 / started.elapsed().as_secs_f64()
}

/// 2000 concurrent streams of 50 chunks, each read by its creator: chunks per second.
async fn many(cluster: &RedisCluster, pubsub: PubSub, run: usize) -> f64 {
    let a = context(cluster, pubsub).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..MANY_STREAMS)
        .map(|s| {
            let a = a.clone();
            tokio::spawn(async move {
                let id = format!("many-{run}-{s}");
                let chunks: Vec<String> = (0..MANY_CHUNKS).map(chunk).collect();
                let expected = chunks.concat().into_bytes();
                let source = move || stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
                let reader = a
                    .resumable_stream(&id, source, None)
                    .await
                    .expect("no error")
                    .expect("a new stream");
                assert!(read_to_end(reader).await == expected);
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a stream task");
    }
    (MANY_STREAMS * MANY_CHUNKS) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    for (shards, pubsub) in [
        (1, PubSub::Sharded),
        (3, PubSub::Sharded),
        (3, PubSub::Classic),
    ] {
        let cluster = RedisCluster::start(shards);
        let (mut fanouts, mut fanout_cpu, mut manys, mut many_cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            let before = cpu_seconds(&cluster);
            fanouts.push(fanout(&cluster, pubsub, run).await);
            let middle = cpu_seconds(&cluster);
            manys.push(many(&cluster, pubsub, run).await);
            let after = cpu_seconds(&cluster);
            fanout_cpu.push(busiest_ms(&before, &middle));
            many_cpu.push(busiest_ms(&middle, &after));
            // Let the contexts of this run close before the next one.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "{shards} shard(s), {pubsub:?}: fanout {fanouts:.0?} ({fanout_cpu:.0?} ms), \
             many {manys:.0?} ({many_cpu:.0?} ms)"
        );
        rows.push((
            shards,
            pubsub,
            median(fanouts),
            median(fanout_cpu),
            median(manys),
            median(many_cpu),
        ));
    }
    println!(
        "| shards | pub/sub | fanout (chunks/s) | fanout: busiest node CPU (ms) \
         | many (chunks/s) | many: busiest node CPU (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for (shards, pubsub, fanout, fanout_cpu, many, many_cpu) in &rows {
        println!(
            "| {shards} | {pubsub:?} | {fanout:.0} | {fanout_cpu:.0} | {many:.0} | {many_cpu:.0} |"
        );
    }
}
