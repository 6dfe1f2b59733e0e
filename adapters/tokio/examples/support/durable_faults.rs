//! The fault suite's durable rows: the faults of the pub/sub rows, with durable
//! contexts, and durable producer processes killed while resumers read their logs.

use super::{
    chunks, context, drop_connections, in_process_row, judge, kill_all, resume, spawn_producers,
    Ending, Promise, Row, HEARTBEAT, LIVENESS_SLACK,
};
use resumable_stream_testkit::durable::logged;
use resumable_stream_testkit::{free_port, RedisServer, ServerOptions, Store};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many durable producer processes are killed; as many readers start after the
/// kill as were attached before it.
const KILLED: usize = 10;

/// The durable rows, in order.
pub async fn rows(streams: usize, cli: Option<&Path>) -> Vec<Row> {
    let mut rows = Vec::new();

    let options = ServerOptions {
        appendonly: true,
        ..ServerOptions::default()
    };
    let aof = Store::Redis(RedisServer::start_with(free_port(), options));
    let restarted = "durable: redis restarted from its AOF";
    // SIGKILL, then the same port and files: Redis reloads its AOF.
    rows.push(in_process_row(restarted, Promise::ByteExact, streams, aof, true, restart).await);
    let dropped = "durable: connections dropped";
    rows.push(
        in_process_row(
            dropped,
            Promise::ByteExact,
            streams,
            Store::redis(),
            true,
            drop_connections,
        )
        .await,
    );
    // Without persistence: the logs, leases and sentinels are gone.
    let emptied = "durable: redis restarted empty (no persistence)";
    let promise = Promise::ExactOrTypedError;
    rows.push(in_process_row(emptied, promise, streams, Store::redis(), true, restart).await);

    let started = Instant::now();
    let endings = match cli {
        Some(cli) => killed_producers(streams.min(KILLED), cli).await,
        None => Vec::new(),
    };
    rows.push(Row::new(
        "durable: producer processes killed (SIGKILL)",
        Promise::LogThenGoneWithin(HEARTBEAT * 4 + LIVENESS_SLACK),
        &endings,
        started.elapsed(),
    ));
    rows
}

/// The store's server killed (SIGKILL) and started again on its port and files.
fn restart(store: &mut Store) {
    if let Some(server) = store.redis_server() {
        server.restart();
    }
}

/// Durable producers as CLI children, killed mid-stream while their chunks flow; one
/// resumer each attached before the kill, one started right after it.
async fn killed_producers(streams: usize, cli: &Path) -> Vec<Ending> {
    let server = RedisServer::start();
    let (mut children, dir) = spawn_producers(cli, &server.url(), "d", &["--durable"], streams);
    let b = context(&server.url(), true).await;
    let expected = chunks(0).concat().into_bytes();
    let mut judging = Vec::new();
    for s in 0..streams {
        let resumer = resume(&b, &format!("d{s}")).await;
        judging.push((s, tokio::spawn(judge(resumer, expected.clone()))));
    }
    // Mid-stream: 40 chunks at 50 ms take 2 s.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed_at = kill_all(&mut children);
    // Readers that come after the kill, on a context of their own.
    let c = context(&server.url(), true).await;
    for s in 0..streams {
        let resumer = resume(&c, &format!("d{s}")).await;
        judging.push((s, tokio::spawn(judge(resumer, expected.clone()))));
    }
    let mut endings = Vec::new();
    for (s, judged) in judging {
        let ending = judged.await.expect("judge");
        endings.push(Ending {
            killed_at: Some(killed_at[s]),
            logged: Some(logged(&mut server.connection(), &format!("d{s}"))),
            ..ending
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    endings
}
