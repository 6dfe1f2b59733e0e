//! peerbench: this library under the load scenarios of `../shared/peerbench`, so that
//! its figures sit beside the npm and PyPI libraries' in one run.
//!
//! ```sh
//! cargo build --release -p resumable-stream-tokio --example peerbench
//! IMPLS="node python rust" RUST_BENCH=target/release/examples/peerbench \
//!   bash ../shared/peerbench/run-all.sh
//! ```
//!
//! It follows peerbench's contract: `--redis URL --scenario NAME --timeout 60` plus the
//! optional overrides, and ONE JSON line last on stdout with the keys the Node and
//! Python benches print (`impl`, `scenario`, `params`, `wall_s`, `chunks_per_s`,
//! `verified`, `redis_commands_total`, `redis_commands`, `connections_opened`,
//! `peak_rss_mib`, and the latency quantiles for `resume_latency`). On a timeout it
//! prints a line with `"error"` and exits 2. Run with `--help` for the flags.
//!
//! Beyond the contract: `--scenario scale` is `many` with `--streams N` meant for 1k,
//! 10k, 100k concurrent streams in one process, and `--threads` picks the runtime.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use resumable_stream_tokio::{ResumableStream, ResumableStreamContext};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const CHUNK_BYTES: usize = 64;
const FILL: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQR"; // 54 chars

const HELP: &str = "\
peerbench (resumable-stream, Rust): one scenario, one JSON line on stdout.

Usage: peerbench --redis URL --scenario NAME [options]

  --redis URL               Redis to use (default redis://127.0.0.1:6390); loopback only
  --scenario NAME           solo | fanout | resume_latency | many | join_live | scale
  --timeout SECONDS         give up after this long: prints an \"error\" line, exits 2 (60)
  --n N                     chunks of solo, fanout and join_live (20000)
  --resumers K              resumers of fanout and join_live (4)
  --preload P               chunks buffered before resume_latency measures (1000)
  --resumes R               sequential resumes of resume_latency (200)
  --streams S               concurrent streams of many / scale (2000)
  --chunks-per-stream C     chunks per stream of many / scale (50)
  --prefix P                key prefix (default pb-rust-<pid>-<random>)
  --threads T               tokio worker threads; 0 = a current-thread runtime, one
                            event loop as node's and asyncio's (0)
  --help                    this text

Chunk i is format!(\"{i:08}:\") + 54 filler characters + \"\\n\": 64 ASCII bytes.
";

#[derive(Clone, Debug)]
struct Args {
    redis: String,
    scenario: String,
    timeout: f64,
    n: usize,
    resumers: usize,
    preload: usize,
    resumes: usize,
    streams: usize,
    chunks_per_stream: usize,
    prefix: String,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        redis: "redis://127.0.0.1:6390".into(),
        scenario: String::new(),
        timeout: 60.0,
        n: 20000,
        resumers: 4,
        preload: 1000,
        resumes: 200,
        streams: 2000,
        chunks_per_stream: 50,
        prefix: String::new(),
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} wants a number, got {value:?}"))
        };
        match flag.as_str() {
            "--redis" => args.redis = value.clone(),
            "--scenario" => args.scenario = value.clone(),
            "--timeout" => {
                args.timeout = value
                    .parse()
                    .map_err(|_| format!("--timeout wants seconds, got {value:?}"))?
            }
            "--n" => args.n = number()?,
            "--resumers" => args.resumers = number()?,
            "--preload" => args.preload = number()?,
            "--resumes" => args.resumes = number()?,
            "--streams" => args.streams = number()?,
            "--chunks-per-stream" => args.chunks_per_stream = number()?,
            "--prefix" => args.prefix = value.clone(),
            "--threads" => args.threads = number()?,
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if args.scenario.is_empty() {
        return Err("--scenario is required (see --help)".into());
    }
    Ok(args)
}

fn chunk(i: usize) -> Bytes {
    Bytes::from(format!("{i:08}:{FILL}\n"))
}

fn make_input(n: usize) -> Arc<Vec<Bytes>> {
    Arc::new((0..n).map(chunk).collect())
}

/// The bytes a reader of `input` must receive, in one piece.
fn concat(input: &[Bytes]) -> Arc<Vec<u8>> {
    Arc::new(input.concat())
}

/// A source over `input` that waits for `gate` before chunk `gate_at` (if `gate_at ==
/// input.len()`, after the last chunk: the stream stays open until the gate opens).
fn gated_source(
    input: Arc<Vec<Bytes>>,
    gate_at: usize,
    gate: Option<watch::Receiver<bool>>,
) -> BoxStream<'static, Result<Bytes, Infallible>> {
    stream::unfold(
        (0usize, input, gate),
        move |(i, input, mut gate)| async move {
            if i == gate_at {
                if let Some(g) = gate.as_mut() {
                    let _ = g.wait_for(|open| *open).await;
                }
            }
            let next = input.get(i)?.clone();
            Some((Ok(next), (i + 1, input, gate)))
        },
    )
    .boxed()
}

/// A source that yields to the runtime before every chunk (join_live).
fn paced_source(input: Arc<Vec<Bytes>>) -> BoxStream<'static, Result<Bytes, Infallible>> {
    stream::unfold((0usize, input), |(i, input)| async move {
        tokio::task::yield_now().await;
        let next = input.get(i)?.clone();
        Some((Ok(next), (i + 1, input)))
    })
    .boxed()
}

/// The make_stream of a caller that must resume: it fails the stream if ever called.
fn no_produce() -> BoxStream<'static, Result<Bytes, String>> {
    stream::once(async {
        Err("make_stream called on a resumer: stream id was not live".to_string())
    })
    .boxed()
}

/// What a reader received, checked byte by byte against what it must receive as the
/// chunks arrive (the bench keeps no copy of the output).
#[derive(Debug)]
struct Received {
    /// Bytes received.
    len: usize,
    /// Where the received bytes first differ from the expected ones, if they do (a
    /// reader that got a prefix of the expected bytes has `None` and a short `len`).
    first_diff: Option<usize>,
    expected_len: usize,
}

impl Received {
    /// Exactly the expected bytes.
    fn is_exact(&self) -> bool {
        self.first_diff.is_none() && self.len == self.expected_len
    }

    /// "ok", or where the output went wrong.
    fn describe(&self) -> String {
        if self.is_exact() {
            return "ok".to_string();
        }
        let i = self.first_diff.unwrap_or(self.len.min(self.expected_len));
        format!(
            "len {} vs {}, first diff at char {i} (chunk {})",
            self.len,
            self.expected_len,
            i / CHUNK_BYTES
        )
    }
}

/// Reads `reader` to its end, checking every byte against `expected`; `on_chunk(k)`
/// after the k-th chunk (1-based).
async fn read_checked(
    mut reader: ResumableStream,
    expected: Arc<Vec<u8>>,
    mut on_chunk: impl FnMut(usize),
) -> Result<Received, String> {
    let mut received = Received {
        len: 0,
        first_diff: None,
        expected_len: expected.len(),
    };
    let mut k = 0;
    while let Some(item) = reader.next().await {
        let bytes = item.map_err(|e| e.to_string())?;
        if received.first_diff.is_none() {
            let want = expected.get(received.len..).unwrap_or_default();
            if !want.starts_with(&bytes) {
                let same = bytes.iter().zip(want).take_while(|(a, b)| a == b).count();
                received.first_diff = Some(received.len + same);
            }
        }
        received.len += bytes.len();
        k += 1;
        on_chunk(k);
    }
    Ok(received)
}

struct Bench {
    args: Args,
    prefix: String,
    admin: redis::aio::MultiplexedConnection,
    progress: Arc<AtomicU64>,
}

#[derive(Default)]
struct Snapshot {
    cmds: BTreeMap<String, i64>,
    conns: i64,
}

impl Bench {
    async fn context(&self) -> Result<ResumableStreamContext, String> {
        ResumableStreamContext::builder()
            .redis_url(self.args.redis.clone())
            .key_prefix(self.prefix.clone())
            .build()
            .await
            .map_err(|e| format!("context: {e}"))
    }

    async fn snapshot(&self) -> Result<Snapshot, String> {
        let mut admin = self.admin.clone();
        let text: String = redis::cmd("INFO")
            .arg("stats")
            .arg("commandstats")
            .query_async(&mut admin)
            .await
            .map_err(|e| format!("INFO: {e}"))?;
        let mut snap = Snapshot::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("cmdstat_") {
                if let Some((name, stats)) = rest.split_once(':') {
                    let calls = stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("calls="))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    snap.cmds.insert(name.to_string(), calls);
                }
            } else if let Some(v) = line.strip_prefix("total_connections_received:") {
                snap.conns = v.trim().parse().unwrap_or(0);
            }
        }
        Ok(snap)
    }

    fn diff(before: &Snapshot, after: &Snapshot, out: &mut Map<String, Value>) {
        let mut per = Map::new();
        let mut total = 0;
        for (name, calls) in &after.cmds {
            let mut d = calls - before.cmds.get(name).copied().unwrap_or(0);
            if name == "info" {
                d -= 1; // our own "before" INFO
            }
            if d > 0 {
                per.insert(name.clone(), json!(d));
                total += d;
            }
        }
        out.insert("redis_commands_total".into(), json!(total));
        out.insert("redis_commands".into(), Value::Object(per));
        out.insert(
            "connections_opened".into(),
            json!(after.conns - before.conns),
        );
    }

    async fn solo(&self) -> Result<Map<String, Value>, String> {
        let n = self.args.n;
        let ctx = self.context().await?;
        // The source owns its chunks, as a real one does: it yields them, the engine
        // and the reader share them.
        let input: Vec<Bytes> = (0..n).map(chunk).collect();
        let expected = concat(&input);
        let before = self.snapshot().await?;
        let t0 = measure_start();
        let source = move || stream::iter(input.into_iter().map(Ok::<_, Infallible>));
        let progress = self.progress.clone();
        // The caller runs on a task, as a server's handler does: a current-thread
        // runtime polls its `block_on` future only between rounds of up to 61 task
        // polls, so a reader there would start (and lag) that many of the producer
        // task's batches late, its mailbox holding them.
        let caller = ctx.clone();
        let read = tokio::spawn(async move {
            let reader = caller
                .resumable_stream("solo", source, None)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("solo: the stream was already done")?;
            read_checked(reader, expected, move |k| {
                progress.store(k as u64, Ordering::Relaxed)
            })
            .await
        });
        let out = read.await.map_err(|e| e.to_string())??;
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = self.snapshot().await?;
        let mut result = Map::new();
        result.insert("params".into(), json!({"n": n, "chunk_bytes": CHUNK_BYTES}));
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((n as f64 / wall).round()));
        result.insert("verified".into(), json!(out.is_exact()));
        Self::diff(&before, &after, &mut result);
        Ok(result)
    }

    async fn fanout(&self) -> Result<Map<String, Value>, String> {
        let (n, resumers) = (self.args.n, self.args.resumers);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(n);
        let expected = concat(&input);
        let (gate, gate_rx) = watch::channel(false);
        let gate = Arc::new(gate);
        let (first, mut first_rx) = watch::channel(false);
        let before = self.snapshot().await?;
        let t0 = measure_start();
        let source = input.clone();
        let reader = ctx_p
            .resumable_stream(
                "fanout",
                move || gated_source(source, 1, Some(gate_rx)),
                None,
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or("fanout: the stream was already done")?;
        let p_read = tokio::spawn(read_checked(reader, expected.clone(), move |k| {
            if k == 1 {
                let _ = first.send(true);
            }
        }));
        let _ = first_rx.wait_for(|v| *v).await;
        let joined = Arc::new(AtomicUsize::new(0));
        let mut r_reads = Vec::new();
        for _ in 0..resumers {
            let (ctx_r, gate, joined, expected) = (
                ctx_r.clone(),
                gate.clone(),
                joined.clone(),
                expected.clone(),
            );
            r_reads.push(tokio::spawn(async move {
                let reader = ctx_r
                    .resumable_stream("fanout", no_produce, None)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("resumer got None (stream DONE)")?;
                let mut seen = false;
                read_checked(reader, expected, |_| {
                    if !seen {
                        seen = true;
                        if joined.fetch_add(1, Ordering::SeqCst) + 1 == resumers {
                            let _ = gate.send(true);
                        }
                    }
                })
                .await
            }));
        }
        let deadline = {
            let gate = gate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = gate.send(true); // never wedge the producer
            })
        };
        let mut outs = vec![p_read.await.map_err(|e| e.to_string())?];
        for r in r_reads {
            outs.push(r.await.map_err(|e| e.to_string())?);
        }
        let (wall, minor_faults) = measure_end(t0);
        deadline.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = self.snapshot().await?;
        let per_reader: Vec<bool> = outs
            .iter()
            .map(|o| o.as_ref().is_ok_and(Received::is_exact))
            .collect();
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"n": n, "chunk_bytes": CHUNK_BYTES, "resumers": resumers}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((n as f64 / wall).round()));
        result.insert("verified".into(), json!(per_reader.iter().all(|ok| *ok)));
        result.insert("per_reader_ok".into(), json!(per_reader));
        result.insert(
            "resumers_joined_before_gate".into(),
            json!(joined.load(Ordering::SeqCst)),
        );
        Self::diff(&before, &after, &mut result);
        Ok(result)
    }

    async fn resume_latency(&self) -> Result<Map<String, Value>, String> {
        let (preload, resumes) = (self.args.preload, self.args.resumes);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(preload);
        let (finish, finish_rx) = watch::channel(false);
        let (preloaded, mut preloaded_rx) = watch::channel(false);
        let source = input.clone();
        let reader = ctx_p
            .resumable_stream(
                "lat",
                move || gated_source(source, preload, Some(finish_rx)),
                None,
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or("resume_latency: the stream was already done")?;
        // Every resume asks for skip 0, so its first message is the whole buffer.
        let expected = concat(&input);
        let p_read = tokio::spawn(read_checked(reader, expected.clone(), move |k| {
            if k == preload {
                let _ = preloaded.send(true);
            }
        }));
        let _ = preloaded_rx.wait_for(|v| *v).await;
        let before = self.snapshot().await?;
        let mut lat = Vec::with_capacity(resumes);
        let mut complete = 0;
        let t00 = measure_start();
        for k in 0..resumes {
            let t0 = Instant::now();
            let mut reader = ctx_r
                .resumable_stream("lat", no_produce, Some(0))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("resumer got None (stream DONE)")?;
            let first = reader.next().await;
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            if matches!(&first, Some(Ok(bytes)) if bytes[..] == expected[..]) {
                complete += 1;
            }
            drop(reader);
            self.progress.store(k as u64 + 1, Ordering::Relaxed);
        }
        let (loop_wall, minor_faults) = measure_end(t00);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = self.snapshot().await?;
        let _ = finish.send(true);
        let producer_exact = matches!(p_read.await, Ok(Ok(out)) if out.is_exact());
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let rank = ((p / 100.0) * lat.len() as f64).ceil() as usize;
            lat[rank.clamp(1, lat.len()) - 1]
        };
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"preload": preload, "chunk_bytes": CHUNK_BYTES, "resumes": resumes, "skip": 0}),
        );
        result.insert("p50_ms".into(), json!(r3(q(50.0))));
        result.insert("p90_ms".into(), json!(r3(q(90.0))));
        result.insert("p99_ms".into(), json!(r3(q(99.0))));
        result.insert("max_ms".into(), json!(r3(lat[lat.len() - 1])));
        result.insert(
            "mean_ms".into(),
            json!(r3(lat.iter().sum::<f64>() / lat.len() as f64)),
        );
        result.insert("wall_s".into(), json!(r3(loop_wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        // The peer benches' key: resumes whose first message was exactly the buffer.
        result.insert("first_message_complete".into(), json!(complete));
        result.insert("producer_exact".into(), json!(producer_exact));
        result.insert(
            "verified".into(),
            json!(complete == resumes && producer_exact),
        );
        Self::diff(&before, &after, &mut result);
        Ok(result)
    }

    async fn many(&self) -> Result<Map<String, Value>, String> {
        let (streams, per) = (self.args.streams, self.args.chunks_per_stream);
        let ctx = self.context().await?;
        let input = make_input(per);
        let expected = concat(&input);
        let before = self.snapshot().await?;
        let rss_before = peak_rss_mib();
        let t0 = measure_start();
        let mut tasks = Vec::with_capacity(streams);
        for k in 0..streams {
            let (ctx, input, expected, progress) = (
                ctx.clone(),
                input.clone(),
                expected.clone(),
                self.progress.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let reader = match ctx
                    .resumable_stream(
                        &format!("many-{k}"),
                        move || gated_source(input, usize::MAX, None),
                        None,
                    )
                    .await
                {
                    Ok(Some(reader)) => reader,
                    Ok(None) => return Err("stream already DONE".to_string()),
                    Err(e) => return Err(e.to_string()),
                };
                let out = read_checked(reader, expected, |_| {}).await?;
                progress.fetch_add(1, Ordering::Relaxed);
                Ok(out.is_exact())
            }));
        }
        let mut ok = 0;
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for task in tasks {
            match task.await {
                Ok(Ok(true)) => ok += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => *errors.entry(e).or_default() += 1,
                Err(e) => *errors.entry(e.to_string()).or_default() += 1,
            }
        }
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = self.snapshot().await?;
        let total = streams * per;
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"streams": streams, "chunks_per_stream": per, "chunk_bytes": CHUNK_BYTES}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((total as f64 / wall).round()));
        result.insert("verified".into(), json!(ok == streams));
        result.insert("streams_ok".into(), json!(ok));
        result.insert("rss_before_mib".into(), json!(rss_before));
        Self::diff(&before, &after, &mut result);
        if let Some(total) = result.get("redis_commands_total").and_then(Value::as_f64) {
            result.insert(
                "redis_commands_per_stream".into(),
                json!(r3(total / streams as f64)),
            );
        }
        if !errors.is_empty() {
            result.insert("errors".into(), json!(errors));
        }
        Ok(result)
    }

    async fn join_live(&self) -> Result<Map<String, Value>, String> {
        let (n, resumers) = (self.args.n, self.args.resumers);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(n);
        let expected = concat(&input);
        let join_at: Vec<usize> = (0..resumers)
            .map(|r| (r + 1) * n / (resumers + 1))
            .collect();
        let before = self.snapshot().await?;
        let t0 = measure_start();
        let source = input.clone();
        let reader = ctx_p
            .resumable_stream("live", move || paced_source(source), None)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("join_live: the stream was already done")?;
        let mut r_reads = Vec::new();
        let p_out = read_checked(reader, expected.clone(), |k| {
            if join_at.contains(&k) {
                let (ctx_r, expected) = (ctx_r.clone(), expected.clone());
                r_reads.push(tokio::spawn(async move {
                    match ctx_r.resumable_stream("live", no_produce, None).await {
                        Ok(Some(reader)) => read_checked(reader, expected, |_| {}).await,
                        Ok(None) => Err("<None: stream already DONE>".into()),
                        Err(e) => Err(e.to_string()),
                    }
                }));
            }
        })
        .await;
        let mut outs = vec![p_out];
        for r in r_reads {
            outs.push(r.await.map_err(|e| e.to_string())?);
        }
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = self.snapshot().await?;
        let describe = |o: &Result<Received, String>| match o {
            Err(e) => format!("error: {e}"),
            Ok(received) => received.describe(),
        };
        let per_reader: Vec<String> = outs.iter().map(describe).collect();
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"n": n, "chunk_bytes": CHUNK_BYTES, "resumers": resumers, "join_at": join_at}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((n as f64 / wall).round()));
        result.insert(
            "verified".into(),
            json!(per_reader.iter().all(|d| d == "ok") && per_reader.len() == resumers + 1),
        );
        result.insert("per_reader".into(), json!(per_reader));
        Self::diff(&before, &after, &mut result);
        Ok(result)
    }
}

/// A scenario's measured phase, begun: when, and the page faults taken before it.
struct Phase {
    started: Instant,
    minor_faults: u64,
}

/// Starts a scenario's measured phase. Never inlined, so that a profiler can mark the
/// phase: `valgrind --tool=callgrind --zero-before=peerbench::measure_start
/// --dump-before=peerbench::measure_end` counts only what the wall time covers.
#[inline(never)]
fn measure_start() -> Phase {
    let minor_faults = minor_faults();
    Phase {
        started: Instant::now(),
        minor_faults,
    }
}

/// Ends a measured phase (see [`measure_start`]): its wall time in seconds, and the
/// minor page faults the process took during it (fresh memory touched: what
/// callgrind's instruction counts do not show).
#[inline(never)]
fn measure_end(phase: Phase) -> (f64, u64) {
    let wall = phase.started.elapsed().as_secs_f64();
    (wall, minor_faults().saturating_sub(phase.minor_faults))
}

/// This process's minor page faults so far (`minflt` of `/proc/self/stat`), 0 where
/// unreadable.
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start with the
    // state, field 3; minflt is field 10.
    stat.rsplit_once(')')
        .and_then(|(_, fields)| fields.split_whitespace().nth(7))
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (kib / 1024.0 * 10.0).round() / 10.0
}

fn emit(mut head: Map<String, Value>, extra: Map<String, Value>, code: i32) -> ! {
    head.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
    head.extend(extra);
    println!("{}", Value::Object(head));
    std::process::exit(code);
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("peerbench: {message}");
            std::process::exit(64);
        }
    };
    let runtime = if args.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("peerbench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let prefix = if args.prefix.is_empty() {
        format!(
            "pb-rust-{}-{:06x}",
            std::process::id(),
            random_suffix() & 0xff_ffff
        )
    } else {
        args.prefix.clone()
    };
    let mut head = Map::new();
    head.insert("impl".into(), json!("rust"));
    head.insert(
        "lib".into(),
        json!(format!("resumable-stream {}", env!("CARGO_PKG_VERSION"))),
    );
    head.insert(
        "client".into(),
        json!("redis-rs 1.8 (multiplexed + pubsub)"),
    );
    head.insert(
        "runtime".into(),
        json!(if args.threads == 0 {
            "tokio current_thread".to_string()
        } else {
            format!("tokio multi_thread({})", args.threads)
        }),
    );
    head.insert("scenario".into(), json!(args.scenario));
    let admin = match redis::Client::open(args.redis.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await,
        Err(e) => Err(e),
    };
    let admin = match admin {
        Ok(admin) => admin,
        Err(e) => {
            let mut extra = Map::new();
            extra.insert("error".into(), json!(format!("admin connection: {e}")));
            emit(head, extra, 1);
        }
    };
    let bench = Bench {
        args: args.clone(),
        prefix,
        admin,
        progress: Arc::new(AtomicU64::new(0)),
    };
    let work = async {
        match args.scenario.as_str() {
            "solo" => bench.solo().await,
            "fanout" => bench.fanout().await,
            "resume_latency" => bench.resume_latency().await,
            "many" | "scale" => bench.many().await,
            "join_live" => bench.join_live().await,
            other => {
                eprintln!("--scenario must be one of solo, fanout, resume_latency, many, join_live, scale (got {other})");
                std::process::exit(64);
            }
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs_f64(args.timeout), work).await;
    match outcome {
        Ok(Ok(result)) => emit(head, result, 0),
        Ok(Err(error)) => {
            let mut extra = Map::new();
            extra.insert("error".into(), json!(error));
            emit(head, extra, 1)
        }
        Err(_) => {
            let mut extra = Map::new();
            extra.insert(
                "error".into(),
                json!(format!("timeout after {}s", args.timeout)),
            );
            extra.insert(
                "progress".into(),
                json!(bench.progress.load(Ordering::Relaxed)),
            );
            emit(head, extra, 2)
        }
    }
}

/// A random number from the standard library's per-process hash keys.
fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}
