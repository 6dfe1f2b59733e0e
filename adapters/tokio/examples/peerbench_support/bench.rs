//! What every scenario shares: its contexts (pub/sub or durable mode), and what a
//! measured phase cost Redis, read from the server around the phase: `INFO` (commands
//! per name, connections, socket reads and writes, memory) and `MEMORY USAGE` of the
//! keys of the streams it left behind.

use resumable_stream_tokio::{Config, Durable, ResumableStreamContext};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::args::Args;

/// The commands counted as Redis writes (data written, or a message sent to listeners),
/// as `INFO commandstats` names them.
pub const WRITE_COMMANDS: &[&str] = &[
    "xadd", "set", "pexpire", "expire", "incr", "del", "xtrim", "publish", "spublish",
];

/// How many streams' keys `MEMORY USAGE` reads after a phase, at most.
const MEMORY_SAMPLE: usize = 32;

pub struct Bench {
    pub args: Args,
    pub prefix: String,
    pub admin: redis::aio::MultiplexedConnection,
    pub progress: Arc<AtomicU64>,
}

/// The server's counters at one instant.
#[derive(Default)]
pub struct Snapshot {
    cmds: BTreeMap<String, i64>,
    conns: i64,
    socket_reads: i64,
    socket_writes: i64,
    net_input_bytes: i64,
    used_memory: i64,
}

/// What a measured phase did, for its costs per chunk and per stream.
pub struct Measured<'a> {
    /// Chunks its sources produced (0: none; no per-chunk figures).
    pub chunks: usize,
    /// Streams created during the phase (0: none; no `used_memory` per stream).
    pub new_streams: usize,
    /// Ids of streams whose keys are measured with `MEMORY USAGE` (a sample of them).
    pub stream_ids: &'a [String],
}

impl Bench {
    /// The durable settings of this run, if durable.
    pub fn durable(&self) -> Option<Durable> {
        if !self.args.durable {
            return None;
        }
        let durable = Durable::default();
        Some(match self.args.linger_ms {
            Some(ms) => durable.with_linger(Duration::from_millis(ms)),
            None => durable,
        })
    }

    /// A context (one engine, its connections): a server instance.
    pub async fn context(&self) -> Result<ResumableStreamContext, String> {
        let mut config = Config::default();
        if let Some(durable) = self.durable() {
            config = config.with_durable(durable);
        }
        ResumableStreamContext::builder()
            .config(config)
            .redis_url(self.args.redis.clone())
            .key_prefix(self.prefix.clone())
            .build()
            .await
            .map_err(|e| format!("context: {e}"))
    }

    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let mut admin = self.admin.clone();
        let text: String = redis::cmd("INFO")
            .arg("stats")
            .arg("commandstats")
            .arg("memory")
            .query_async(&mut admin)
            .await
            .map_err(|e| format!("INFO: {e}"))?;
        let mut snap = Snapshot::default();
        let int = |v: &str| v.trim().parse().unwrap_or(0);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("cmdstat_") {
                if let Some((name, stats)) = rest.split_once(':') {
                    let calls = stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("calls="))
                        .map_or(0, int);
                    snap.cmds.insert(name.to_string(), calls);
                }
            } else if let Some((key, value)) = line.split_once(':') {
                match key {
                    "total_connections_received" => snap.conns = int(value),
                    "total_reads_processed" => snap.socket_reads = int(value),
                    "total_writes_processed" => snap.socket_writes = int(value),
                    "total_net_input_bytes" => snap.net_input_bytes = int(value),
                    "used_memory" => snap.used_memory = int(value),
                    _ => {}
                }
            }
        }
        Ok(snap)
    }

    /// The phase's costs into `out`: commands (the diff of `INFO commandstats`, our
    /// own `INFO` removed), writes, socket reads and writes of the server, per chunk,
    /// and the memory its streams hold. Takes the "after" snapshot itself.
    pub async fn costs(
        &self,
        before: &Snapshot,
        phase: Measured<'_>,
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        let after = self.snapshot().await?;
        let mut per = Map::new();
        let (mut total, mut writes) = (0, 0);
        for (name, calls) in &after.cmds {
            let mut d = calls - before.cmds.get(name).copied().unwrap_or(0);
            if name == "info" {
                d -= 1; // our own "before" INFO
            }
            if d > 0 {
                per.insert(name.clone(), json!(d));
                total += d;
                if WRITE_COMMANDS.contains(&name.as_str()) {
                    writes += d;
                }
            }
        }
        // The server counts a socket read before it runs the command read, so the
        // "after" INFO's read is in the diff (and the "before" one's is not).
        let socket_reads = after.socket_reads - before.socket_reads - 1;
        let socket_writes = after.socket_writes - before.socket_writes;
        let net_input = after.net_input_bytes - before.net_input_bytes;
        out.insert("redis_commands_total".into(), json!(total));
        out.insert("redis_commands".into(), Value::Object(per));
        out.insert("redis_writes".into(), json!(writes));
        out.insert("write_commands".into(), json!(WRITE_COMMANDS));
        out.insert("server_socket_reads".into(), json!(socket_reads));
        out.insert("server_socket_writes".into(), json!(socket_writes));
        // A socket read takes 16 KiB at most (PROTO_IOBUF_LEN; more for a bulk
        // argument over 32 KiB), so while requests stay under that, one read is one
        // request or pipeline a client flushed: a round trip, as far as the server
        // can tell. The input bytes tell how far larger ones split.
        out.insert("server_net_input_bytes".into(), json!(net_input));
        out.insert(
            "connections_opened".into(),
            json!(after.conns - before.conns),
        );
        if phase.chunks > 0 {
            let per_chunk = |x: i64| json!(r4(x as f64 / phase.chunks as f64));
            out.insert("chunks_total".into(), json!(phase.chunks));
            out.insert("redis_commands_per_chunk".into(), per_chunk(total));
            out.insert("redis_writes_per_chunk".into(), per_chunk(writes));
            out.insert("socket_reads_per_chunk".into(), per_chunk(socket_reads));
        }
        if phase.new_streams > 0 {
            let delta = after.used_memory - before.used_memory;
            out.insert("used_memory_delta".into(), json!(delta));
            out.insert(
                "used_memory_delta_per_stream".into(),
                json!((delta as f64 / phase.new_streams as f64).round()),
            );
        }
        self.memory_usage(phase.stream_ids, out).await
    }

    /// `MEMORY USAGE … SAMPLES 0` of the sentinel, log and lease keys of (a sample of)
    /// `ids`: the mean bytes per stream of each (a missing key counts 0) and their sum;
    /// and from the sampled logs' entry ids, the chunks per entry (per `XADD`).
    async fn memory_usage(
        &self,
        ids: &[String],
        out: &mut Map<String, Value>,
    ) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let step = ids.len().div_ceil(MEMORY_SAMPLE);
        let sample: Vec<&String> = ids.iter().step_by(step).collect();
        let mut admin = self.admin.clone();
        let mut sums = BTreeMap::new();
        for id in &sample {
            for kind in ["sentinel", "log", "lease"] {
                let key = format!("{}:rs:{kind}:{id}", self.prefix);
                let bytes: Option<i64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(&mut admin)
                    .await
                    .map_err(|e| format!("MEMORY USAGE: {e}"))?;
                *sums.entry(kind).or_insert(0i64) += bytes.unwrap_or(0);
            }
        }
        let (mut entries, mut chunks, mut single) = (0u64, 0u64, 0u64);
        for id in &sample {
            let key = format!("{}:rs:log:{id}", self.prefix);
            let log: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut admin)
                .await
                .map_err(|e| format!("XRANGE: {e}"))?;
            // A chunks entry's id is `{after}-{count}`; the end's sequence is 0.
            for count in log.iter().filter_map(|(id, _)| id.split_once('-')) {
                match count.1.parse::<u64>() {
                    Ok(0) | Err(_) => {}
                    Ok(count) => {
                        entries += 1;
                        chunks += count;
                        single += u64::from(count == 1);
                    }
                }
            }
        }
        let n = sample.len() as f64;
        if entries > 0 {
            // How the chunks went into the log: per XADD (an entry), how many.
            let e = entries as f64;
            out.insert("log_entries_per_stream".into(), json!(r3(e / n)));
            out.insert("log_chunks_per_entry".into(), json!(r3(chunks as f64 / e)));
            out.insert(
                "log_single_chunk_entries".into(),
                json!(r3(single as f64 / e)),
            );
        }
        let mean = |kind| (sums[kind] as f64 / n).round();
        out.insert("memory_sampled_streams".into(), json!(sample.len()));
        out.insert("memory_sentinel_bytes".into(), json!(mean("sentinel")));
        out.insert("memory_log_bytes".into(), json!(mean("log")));
        out.insert("memory_lease_bytes".into(), json!(mean("lease")));
        out.insert(
            "memory_keys_bytes_per_stream".into(),
            json!((sums.values().sum::<i64>() as f64 / n).round()),
        );
        Ok(())
    }
}

pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn r4(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
}

/// The `p`-th percentile (nearest rank) of sorted `values`.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (kib / 1024.0 * 10.0).round() / 10.0
}

/// This process's minor page faults so far (`minflt` of `/proc/self/stat`), 0 where
/// unreadable.
pub fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start with the
    // state, field 3; minflt is field 10.
    stat.rsplit_once(')')
        .and_then(|(_, fields)| fields.split_whitespace().nth(7))
        .and_then(|field| field.parse().ok())
        .unwrap_or(0)
}
