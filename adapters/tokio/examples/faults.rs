//! The fault suite: streams under Redis faults, with a table of how each ended.
//!
//! ```sh
//! cargo build -p resumable-stream-cli && cargo run -p resumable-stream-tokio --example faults
//! ```
//!
//! Each scenario runs `STREAMS` streams (default 100) produced by one context and
//! resumed by another, on a private redis-server on a free loopback port, and injects
//! one fault mid-stream:
//!
//! - `redis restart`: the server is killed and started again, empty, on its port;
//! - `connections dropped`: `CLIENT KILL` of every client connection;
//! - `malformed flood`: thousands of malformed requests (random bytes, a 1 MiB payload,
//!   wrong JSON types) on the request channels while the streams run;
//! - `producer killed`: producers are child processes (the `resumable-stream` CLI), killed
//!   with SIGKILL mid-stream.
//!
//! Every reader must end byte-exact or with a typed error within a bound; a reader
//! that gets wrong bytes without an error, or that hangs, fails the run (exit 1). The
//! last lines are a markdown table.

use bytes::Bytes;
use futures_util::StreamExt;
use resumable_stream::Error;
use resumable_stream_testkit::{RedisServer, Store};
use resumable_stream_tokio::{ResumableStream, ResumableStreamContext};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a reader may take to end after the stream's last chunk, fault included.
const BOUND: Duration = Duration::from_secs(30);

#[derive(Default, Clone, Copy)]
struct Outcome {
    exact: usize,
    typed_error: usize,
    wrong: usize,
    hung: usize,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        self.exact += other.exact;
        self.typed_error += other.typed_error;
        self.wrong += other.wrong;
        self.hung += other.hung;
    }
}

fn chunks(stream: usize) -> Vec<String> {
    (0..40).map(|i| format!("s{stream:03}-c{i:02}|")).collect()
}

/// Reads `reader` to its end and says how it ended against `expected`.
async fn judge(mut reader: ResumableStream, expected: Vec<u8>) -> (Outcome, Option<Error>) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + BOUND + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, reader.next()).await {
            Err(_) => {
                return (
                    Outcome {
                        hung: 1,
                        ..Outcome::default()
                    },
                    None,
                )
            }
            Ok(Some(Ok(chunk))) => got.extend_from_slice(&chunk),
            Ok(Some(Err(error))) => {
                // A typed error, and what came before it is a prefix of the stream.
                let prefix = expected.starts_with(&got);
                let outcome = if prefix {
                    Outcome {
                        typed_error: 1,
                        ..Outcome::default()
                    }
                } else {
                    Outcome {
                        wrong: 1,
                        ..Outcome::default()
                    }
                };
                return (outcome, Some(error));
            }
            Ok(None) if got == expected => {
                return (
                    Outcome {
                        exact: 1,
                        ..Outcome::default()
                    },
                    None,
                )
            }
            Ok(None) => {
                return (
                    Outcome {
                        wrong: 1,
                        ..Outcome::default()
                    },
                    None,
                )
            }
        }
    }
}

async fn context(url: &str) -> ResumableStreamContext {
    ResumableStreamContext::builder()
        .redis_url(url)
        .build()
        .await
        .expect("a context")
}

/// Runs `streams` in-process streams, calling `fault` once every stream has a reader
/// and half its chunks are out.
async fn in_process(
    streams: usize,
    store: &mut Store,
    fault: impl FnOnce(&mut Store),
) -> (Outcome, Vec<String>) {
    let url = match store {
        Store::Redis(server) => server.url(),
        _ => unreachable!("the fault suite runs on Redis"),
    };
    let (a, b) = (context(&url).await, context(&url).await);
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
    let mut resumers = Vec::new();
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
        resumers.push((s, resumer));
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
    let mut outcome = Outcome::default();
    let mut errors = Vec::new();
    let mut judging = Vec::new();
    for (s, reader) in readers.into_iter().chain(resumers) {
        let expected = chunks(s).concat().into_bytes();
        judging.push(tokio::spawn(judge(reader, expected)));
    }
    for judged in judging {
        let (o, error) = judged.await.expect("judge");
        outcome.add(o);
        errors.extend(error.as_ref().map(kind));
    }
    (outcome, errors)
}

fn redis_cli(port: u16, args: &[&str]) {
    let _ = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .status();
}

/// Producers as child processes of the CLI, killed mid-stream; readers in process.
async fn killed_producers(
    streams: usize,
    server: &RedisServer,
    cli: &std::path::Path,
) -> (Outcome, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("rs-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("chunks.json");
    std::fs::write(&file, serde_json::to_string(&chunks(0)).expect("json")).expect("chunks file");
    let mut children: Vec<Child> = (0..streams)
        .map(|s| {
            Command::new(cli)
                .args([
                    "produce",
                    "--redis",
                    &server.url(),
                    "--id",
                    &format!("k{s}"),
                ])
                .args([
                    "--chunks",
                    file.to_str().unwrap_or_default(),
                    "--delay-ms",
                    "50",
                    "--heartbeat-ms",
                    "300",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the resumable-stream CLI (cargo build -p resumable-stream-cli)")
        })
        .collect();
    let b = context(&server.url()).await;
    let mut resumers = Vec::new();
    for s in 0..streams {
        let id = format!("k{s}");
        let started = Instant::now();
        loop {
            if let Ok(resumable_stream_tokio::Resumed::Stream(r)) =
                b.resume_existing_stream(&id, None).await
            {
                resumers.push(r);
                break;
            }
            assert!(started.elapsed() < BOUND, "producer {s} never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut outcome = Outcome::default();
    let mut errors = Vec::new();
    let judged: Vec<_> = resumers
        .into_iter()
        .map(|r| tokio::spawn(judge(r, chunks(0).concat().into_bytes())))
        .collect();
    for j in judged {
        let (o, error) = j.await.expect("judge");
        outcome.add(o);
        errors.extend(error.as_ref().map(kind));
    }
    let _ = std::fs::remove_dir_all(&dir);
    (outcome, errors)
}

/// The errors seen, by kind, with counts: `ProducerGone ×20`.
fn summary(errors: &[String]) -> String {
    let mut kinds: Vec<&str> = errors.iter().map(String::as_str).collect();
    kinds.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    for kind in &kinds {
        if out
            .last()
            .is_some_and(|last| last.starts_with(&format!("{kind} ")))
        {
            continue;
        }
        let count = kinds.iter().filter(|k| *k == kind).count();
        out.push(format!("{kind} ×{count}"));
    }
    out.join(", ")
}

/// An error's variant name, for the table.
fn kind(error: &Error) -> String {
    format!("{error:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("error")
        .to_owned()
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
    let mut failed = false;

    let started = Instant::now();
    let mut store = Store::redis();
    let (o, e) = in_process(streams, &mut store, |store| {
        if let Some(server) = store.redis_server() {
            let port = server.port;
            server.kill();
            std::thread::sleep(Duration::from_millis(300));
            *server = RedisServer::start_on(port);
        }
    })
    .await;
    rows.push((
        "redis restart",
        2 * streams,
        o,
        summary(&e),
        started.elapsed(),
    ));

    let started = Instant::now();
    let mut store = Store::redis();
    let (o, e) = in_process(streams, &mut store, |store| {
        if let Some(server) = store.redis_server() {
            redis_cli(server.port, &["CLIENT", "KILL", "TYPE", "pubsub"]);
            redis_cli(server.port, &["CLIENT", "KILL", "TYPE", "normal"]);
        }
    })
    .await;
    rows.push((
        "connections dropped",
        2 * streams,
        o,
        summary(&e),
        started.elapsed(),
    ));

    let started = Instant::now();
    let mut store = Store::redis();
    let (o, e) = in_process(streams, &mut store, |store| {
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
                _ => {
                    if i % 1000 == 4 {
                        &huge
                    } else {
                        b"not json at all"
                    }
                }
            };
            store.publish(
                &format!("resumable-stream:rs:request:f{}", i % streams),
                message,
            );
        }
    })
    .await;
    rows.push((
        "malformed flood (5000 messages)",
        2 * streams,
        o,
        summary(&e),
        started.elapsed(),
    ));

    match &cli {
        Some(cli) => {
            let started = Instant::now();
            let server = RedisServer::start();
            let killed = streams.min(20);
            let (o, e) = killed_producers(killed, &server, cli).await;
            rows.push((
                "producer processes killed",
                killed,
                o,
                summary(&e),
                started.elapsed(),
            ));
        }
        None => {
            eprintln!("the resumable-stream CLI is not built next to this example: skipping the killed-producer scenario");
            failed = true;
        }
    }

    println!(
        "| fault | readers | byte-exact | typed error | wrong data | hung | errors seen | time |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, readers, o, errors, time) in &rows {
        failed |= o.wrong > 0 || o.hung > 0 || o.exact + o.typed_error != *readers;
        println!(
            "| {name} | {readers} | {} | {} | {} | {} | {} | {:.1} s |",
            o.exact,
            o.typed_error,
            o.wrong,
            o.hung,
            if errors.is_empty() { "-" } else { errors },
            time.as_secs_f64()
        );
    }
    if failed {
        eprintln!("FAILED: a reader got wrong data, hung, or a scenario could not run");
        std::process::exit(1);
    }
}
