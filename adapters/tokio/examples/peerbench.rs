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
//! Beyond the contract: `--durable` runs both contexts in durable mode (`impl`
//! `"rust-durable"`, `--linger-ms` its linger); `--scenario llm_paced` is many streams
//! at a model's pace, each with a resumer; `--scenario scale` is `many` with `--streams
//! N` meant for 1k, 10k, 100k concurrent streams in one process; `--threads` picks the
//! runtime. Every scenario also reports its Redis writes, the server's socket reads
//! and writes (`INFO stats`), per chunk, and the memory its streams' keys hold
//! (`MEMORY USAGE`, `INFO memory`): `scripts/durable-bench.sh` tabulates them.
//!
//! The code: `peerbench_support/` holds the flags (`args`), the chunks, sources and
//! checked reads (`chunks`), the contexts and Redis's counters (`bench`), and the
//! scenarios (`one_stream`, `many_streams`).

#[path = "peerbench_support/args.rs"]
mod args;
#[path = "peerbench_support/bench.rs"]
mod bench;
#[path = "peerbench_support/chunks.rs"]
mod chunks;
#[path = "peerbench_support/many_streams.rs"]
mod many_streams;
#[path = "peerbench_support/one_stream.rs"]
mod one_stream;

use args::{parse_args, Args};
use bench::{minor_faults, peak_rss_mib, Bench};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    head.insert(
        "impl".into(),
        json!(if args.durable { "rust-durable" } else { "rust" }),
    );
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
    // The mode, as the tables group runs: "pubsub", or "durable" and its linger.
    match bench.durable() {
        None => head.insert("mode".into(), json!("pubsub")),
        Some(durable) => {
            let linger_ms = durable.linger().as_secs_f64() * 1000.0;
            head.insert("linger_ms".into(), json!(linger_ms));
            head.insert(
                "mode".into(),
                json!(format!("durable-linger-{linger_ms}ms")),
            )
        }
    };
    let work = async {
        match args.scenario.as_str() {
            "solo" => bench.solo().await,
            "fanout" => bench.fanout().await,
            "resume_latency" => bench.resume_latency().await,
            "many" | "scale" => bench.many().await,
            "join_live" => bench.join_live().await,
            "llm_paced" => bench.llm_paced().await,
            other => {
                eprintln!("--scenario must be one of solo, fanout, resume_latency, many, join_live, llm_paced, scale (got {other})");
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
