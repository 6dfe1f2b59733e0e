//! The fault suite: streams under Redis faults, each fault checked against what it
//! promises of every reader; the run fails (exit 1) when a promise is broken.
//!
//! ```sh
//! cargo build -p resumable-stream-cli -p resumable-stream-tokio --bins --example faults
//! STREAMS=100 target/debug/examples/faults
//! ```
//!
//! Each in-process scenario runs `STREAMS` streams (default 100) produced by one
//! context and resumed by another, on a private redis-server on a free loopback port,
//! and injects one fault mid-stream. They promise that **every** reader, producer's and
//! resumer's, ends with the whole stream, byte-exact, and no error:
//!
//! - `redis restart`: the server is killed and started again, empty, on its port;
//! - `connections dropped`: `CLIENT KILL` of every client connection;
//! - `malformed flood`: thousands of malformed requests (random bytes, a 1 MiB payload,
//!   wrong JSON types) on the request channels while the streams run.
//!
//! The last scenario, `producer processes killed`, runs its producers as child processes
//! (the `resumable-stream` CLI, built next to this example) and kills them with SIGKILL
//! mid-stream. It promises that every resumer ends with [`Error::ProducerGone`], after
//! bytes that are a prefix of the stream, within three heartbeat intervals of the kill
//! plus [`LIVENESS_SLACK`], measured from each producer's kill to its resumer's error.
//!
//! The same faults then run in durable mode (`support/durable_faults.rs`): Redis
//! restarted from its append-only file and every connection dropped (every reader
//! byte-exact), Redis restarted empty (what it forgot is lost: every reader byte-exact
//! or a prefix then a typed error, never wrong data), and durable producer processes
//! killed (every resumer, attached or started after the kill, prints exactly what
//! reached the log, then `ProducerGone`, within four heartbeats plus the slack).
//!
//! The results are printed as a markdown table on stdout and written, the table to
//! `results.md` and every figure to `results.json`, in the directory named by
//! `FAULTS_OUT` (default: `faults/` in the target directory this example was built in).

#[path = "support/durable_faults.rs"]
mod durable_faults;
#[path = "support/fault_judging.rs"]
mod fault_judging;

use bytes::Bytes;
use fault_judging::{judge, Ending, Promise, Row};
use resumable_stream::Error;
use resumable_stream_testkit::{RedisServer, Store};
use resumable_stream_tokio::{Config, Durable, ResumableStreamContext};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A reader that has not ended this long after its judging started hangs.
const HANG_BOUND: Duration = Duration::from_secs(60);
/// How long a killed-producer child may take to make its stream active.
const START_BOUND: Duration = Duration::from_secs(30);
/// The heartbeat interval the killed producers promise their resumers.
const HEARTBEAT: Duration = Duration::from_millis(300);
/// Beyond the three silent heartbeat intervals a resumer waits by design: the SIGKILL's
/// delivery, messages already in flight when it landed, the timer's firing and the
/// error's way to the reader, in a debug build on a loaded 2-core machine that also
/// runs the children, Redis and the suite. The results show the measured times.
const LIVENESS_SLACK: Duration = Duration::from_millis(1500);
/// How many producer processes the killed-producer scenario starts (at most `STREAMS`).
const KILLED: usize = 20;

fn chunks(stream: usize) -> Vec<String> {
    (0..40).map(|i| format!("s{stream:03}-c{i:02}|")).collect()
}

async fn context(url: &str, durable: bool) -> ResumableStreamContext {
    // Durable readers check a quiet log's lease every heartbeat.
    let config = if durable {
        Config::default()
            .with_heartbeat_interval(HEARTBEAT)
            .with_durable(Durable::default())
    } else {
        Config::default()
    };
    ResumableStreamContext::builder()
        .config(config)
        .redis_url(url)
        .build()
        .await
        .expect("a context")
}

/// Runs `streams` in-process streams (in durable mode or not), calling `fault` once
/// every stream has a reader and half its chunks are out.
async fn in_process(
    streams: usize,
    store: &mut Store,
    durable: bool,
    fault: impl FnOnce(&mut Store),
) -> Vec<Ending> {
    let url = match store {
        Store::Redis(server) => server.url(),
        _ => unreachable!("the fault suite runs on Redis"),
    };
    let (a, b) = (context(&url, durable).await, context(&url, durable).await);
    let mut feeds = Vec::new();
    let mut readers = Vec::new();
    for s in 0..streams {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<String, String>>();
        let source = move || {
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|i| (i, rx)) },
            )
        };
        let id = format!("f{s}");
        let producer = a
            .resumable_stream(&id, source, None)
            .await
            .expect("start")
            .expect("new");
        feeds.push(tx);
        readers.push((s, producer));
    }
    for s in 0..streams {
        let resumer = b
            .resumable_stream(
                &format!("f{s}"),
                futures_util::stream::empty::<Result<Bytes, Error>>,
                None,
            )
            .await
            .expect("resume")
            .expect("active");
        readers.push((s, resumer));
    }
    let mut fault = Some(fault);
    for i in 0..40 {
        if let Some(fault) = fault.take_if(|_| i == 20) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            fault(store);
        }
        for (s, feed) in feeds.iter().enumerate() {
            let _ = feed.send(Ok(chunks(s)[i].clone()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(feeds);
    let judging: Vec<_> = readers
        .into_iter()
        .map(|(s, reader)| tokio::spawn(judge(reader, chunks(s).concat().into_bytes())))
        .collect();
    let mut endings = Vec::new();
    for judged in judging {
        endings.push(judged.await.expect("judge"));
    }
    endings
}

/// One in-process fault's row: `streams` streams on `store` (in durable mode or not),
/// `fault` injected mid-stream, every reader judged against `promise`.
async fn in_process_row(
    fault_name: &'static str,
    promise: Promise,
    streams: usize,
    mut store: Store,
    durable: bool,
    fault: impl FnOnce(&mut Store),
) -> Row {
    let started = Instant::now();
    let endings = in_process(streams, &mut store, durable, fault).await;
    Row::new(fault_name, promise, &endings, started.elapsed())
}

/// `CLIENT KILL` of every pub/sub and every normal connection of the store's server.
fn drop_connections(store: &mut Store) {
    if let Some(server) = store.redis_server() {
        redis_cli(server.port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        redis_cli(server.port, &["CLIENT", "KILL", "TYPE", "normal"]);
    }
}

fn redis_cli(port: u16, args: &[&str]) {
    let _ = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .status();
}

/// `streams` producers of the streams `{stem}0`, `{stem}1`, ... as child processes of
/// the CLI (with `extra` arguments), their sources held open for a minute so that none
/// can end before it is killed; and the chunks file they produce, in `dir`.
fn spawn_producers(
    cli: &Path,
    url: &str,
    stem: &str,
    extra: &[&str],
    streams: usize,
) -> (Vec<Child>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("rs-faults-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("chunks.json");
    std::fs::write(&file, serde_json::to_string(&chunks(0)).expect("json")).expect("chunks file");
    let heartbeat_ms = HEARTBEAT.as_millis().to_string();
    let children = (0..streams)
        .map(|s| {
            Command::new(cli)
                .arg("produce")
                .args(extra)
                .args(["--redis", url, "--id", &format!("{stem}{s}")])
                .args(["--chunks", file.to_str().unwrap_or_default()])
                .args(["--delay-ms", "50", "--hold-ms", "60000"])
                .args(["--heartbeat-ms", &heartbeat_ms])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the resumable-stream CLI (cargo build -p resumable-stream-cli)")
        })
        .collect();
    (children, dir)
}

/// SIGKILLs every child; when each was killed.
fn kill_all(children: &mut [Child]) -> Vec<Instant> {
    let killed_at = children
        .iter_mut()
        .map(|child| {
            let at = Instant::now();
            child.kill().expect("SIGKILL a producer");
            at
        })
        .collect();
    for child in children {
        let _ = child.wait();
    }
    killed_at
}

/// A resumer of `id`, once its producer made it exist.
async fn resume(
    context: &ResumableStreamContext,
    id: &str,
) -> resumable_stream_tokio::ResumableStream {
    let started = Instant::now();
    loop {
        if let Ok(resumable_stream_tokio::Resumed::Stream(reader)) =
            context.resume_existing_stream(id, None).await
        {
            return reader;
        }
        assert!(
            started.elapsed() < START_BOUND,
            "producer {id} never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Producers as child processes of the CLI, killed mid-stream; readers in process, read
/// from the start so that each error is timed as it arrives.
async fn killed_producers(streams: usize, server: &RedisServer, cli: &Path) -> Vec<Ending> {
    let (mut children, dir) = spawn_producers(cli, &server.url(), "k", &[], streams);
    let b = context(&server.url(), false).await;
    let mut judging = Vec::new();
    for s in 0..streams {
        let resumer = resume(&b, &format!("k{s}")).await;
        judging.push(tokio::spawn(judge(
            resumer,
            chunks(0).concat().into_bytes(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let killed_at = kill_all(&mut children);
    let mut endings = Vec::new();
    for (judged, killed_at) in judging.into_iter().zip(killed_at) {
        let ending = judged.await.expect("judge");
        endings.push(Ending {
            killed_at: Some(killed_at),
            ..ending
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    endings
}

/// The malformed requests of the flood: random bytes, wrong JSON types, a 1 MiB payload.
fn flood(store: &mut Store, streams: usize) {
    let huge = vec![b'{'; 1 << 20];
    let mut seed = 0x9e37_79b9_u64;
    for i in 0..5000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let random: Vec<u8> = (0..(seed % 64)).map(|k| (seed >> (k % 56)) as u8).collect();
        let message: &[u8] = match i % 5 {
            0 => &random,
            1 => br#"{"listenerId": 12, "skipCharacters": "x"}"#,
            2 => br#"{"listenerId": "", "ext": 1}"#,
            3 => br#"[1, 2, 3]"#,
            _ if i % 1000 == 4 => &huge,
            _ => b"not json at all",
        };
        store.publish(
            &format!("resumable-stream:rs:request:f{}", i % streams),
            message,
        );
    }
}

/// Where the results go: `FAULTS_OUT`, else `faults/` in this example's target directory.
fn out_dir() -> PathBuf {
    std::env::var_os("FAULTS_OUT")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            // <target>/<profile>/examples/faults
            Some(exe.ancestors().nth(3)?.join("faults"))
        })
        .unwrap_or_else(|| PathBuf::from("target/faults"))
}
/// The library's log records on stderr, at the level named by `FAULTS_LOG` (`warn`,
/// `info`, `debug`): to see what a fault made the engines and drivers do.
struct StderrLog(log::LevelFilter, Instant);

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.0
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let ms = self.1.elapsed().as_millis();
            eprintln!("{ms:>7} ms [{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Some(level) = std::env::var("FAULTS_LOG")
        .ok()
        .and_then(|l| l.parse::<log::LevelFilter>().ok())
    {
        let logger: &'static StderrLog = Box::leak(Box::new(StderrLog(level, Instant::now())));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(level);
        }
    }
    let streams: usize = std::env::var("STREAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let cli = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()?
                .parent()
                .map(|dir| dir.join("resumable-stream"))
        })
        .filter(|path| path.exists());
    let mut rows = Vec::new();

    rows.push(
        in_process_row(
            "redis restart",
            Promise::ByteExact,
            streams,
            Store::redis(),
            false,
            |store| {
                if let Some(server) = store.redis_server() {
                    let port = server.port;
                    server.kill();
                    std::thread::sleep(Duration::from_millis(300));
                    *server = RedisServer::start_on(port);
                }
            },
        )
        .await,
    );
    let dropped = "connections dropped";
    rows.push(
        in_process_row(
            dropped,
            Promise::ByteExact,
            streams,
            Store::redis(),
            false,
            drop_connections,
        )
        .await,
    );
    let flooded = "malformed flood (5000 messages)";
    rows.push(
        in_process_row(
            flooded,
            Promise::ByteExact,
            streams,
            Store::redis(),
            false,
            |store| flood(store, streams),
        )
        .await,
    );

    let gone = Promise::ProducerGoneWithin(HEARTBEAT * 3 + LIVENESS_SLACK);
    let started = Instant::now();
    let endings = match &cli {
        Some(cli) => killed_producers(streams.min(KILLED), &RedisServer::start(), cli).await,
        None => {
            eprintln!("the resumable-stream CLI is not built next to this example (cargo build -p resumable-stream-cli): the killed-producer scenario cannot run");
            Vec::new()
        }
    };
    rows.push(Row::new(
        "producer processes killed (SIGKILL)",
        gone,
        &endings,
        started.elapsed(),
    ));
    rows.extend(durable_faults::rows(streams, cli.as_deref()).await);

    let mut table = format!("{}\n", Row::HEADER);
    for row in &rows {
        table.push_str(&row.markdown());
        table.push('\n');
    }
    print!("{table}");
    let broken: Vec<&str> = rows.iter().filter(|r| !r.held()).map(|r| r.fault).collect();
    let results = json!({
        "streams": streams,
        "heartbeat_ms": HEARTBEAT.as_millis(),
        "liveness_slack_ms": LIVENESS_SLACK.as_millis(),
        "every_promise_held": broken.is_empty(),
        "faults": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    let dir = out_dir();
    std::fs::create_dir_all(&dir).expect("the results directory");
    let pretty = serde_json::to_string_pretty(&results).expect("json");
    std::fs::write(dir.join("results.md"), &table).expect("results.md");
    std::fs::write(dir.join("results.json"), pretty + "\n").expect("results.json");
    eprintln!("results: {}", dir.display());
    if !broken.is_empty() {
        eprintln!("FAILED: the promise broken by {}", broken.join(", "));
        std::process::exit(1);
    }
}
