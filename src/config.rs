//! Engine configuration: the deployed defaults, each one adjustable.

use crate::skip::SkipUnit;
use crate::wire::Names;
use std::time::Duration;

/// How an [`Engine`](crate::Engine) names its keys and how long it waits.
///
/// The defaults are those of the deployed TypeScript library, so that a Rust service
/// with the default configuration is indistinguishable on the wire from a Node one.
///
/// ```
/// use resumable_stream::{Config, SkipUnit};
/// use std::time::Duration;
///
/// let config = Config::default()
///     .with_key_prefix("chat")
///     .with_ack_timeout(Duration::from_millis(500))
///     .with_skip_unit(SkipUnit::CodePoint);
/// assert_eq!(config.key_prefix(), "chat");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The key and channel names under the prefix, built once.
    names: Names,
    sentinel_ttl: Duration,
    ack_timeout: Duration,
    done_watchdog_interval: Duration,
    heartbeat_interval: Duration,
    grace_period: Duration,
    max_buffer_bytes: Option<usize>,
    extensions: bool,
    skip_unit: SkipUnit,
    seed: u64,
    pubsub: PubSub,
    durable: Option<Durable>,
    cluster: bool,
}

/// Durable mode's settings ([`Config::with_durable`]): every chunk also goes to a
/// Redis Stream log, so that a stream outlives its producer (docs/guide.md, "Durable
/// mode").
///
/// ```
/// use resumable_stream::{Config, Durable};
/// use std::time::Duration;
///
/// let config = Config::default().with_durable(
///     Durable::default()
///         .with_linger(Duration::from_millis(10))
///         .with_max_log_bytes(16 << 20),
/// );
/// assert_eq!(config.durable().unwrap().linger(), Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Durable {
    linger: Duration,
    max_batch_bytes: usize,
    expiry_refresh: Duration,
    replay_window: Option<Duration>,
    max_log_bytes: Option<u64>,
    read_count: u64,
    max_blocking_reads: usize,
}

impl Default for Durable {
    fn default() -> Self {
        Durable {
            linger: Duration::from_millis(5),
            max_batch_bytes: 64 * 1024,
            expiry_refresh: Duration::from_secs(5),
            replay_window: None,
            max_log_bytes: None,
            read_count: 512,
            max_blocking_reads: 8,
        }
    }
}

impl Durable {
    /// How long a producer holds chunks before appending them to the log, so that one
    /// pipeline carries every stream's chunks of that time (producers of one engine
    /// flush together). Default 5 ms.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// A producer appends at once when it holds this many bytes. Default 64 KiB.
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// The log's expiry is refreshed at most this often while the stream is produced.
    /// Default 5 s.
    pub fn with_expiry_refresh(mut self, every: Duration) -> Self {
        self.expiry_refresh = every;
        self
    }

    /// How long a finished stream's log stays readable after its end, for a reload to
    /// replay it whole. Default, and at most: the sentinel's TTL.
    pub fn with_replay_window(mut self, window: Duration) -> Self {
        self.replay_window = Some(window);
        self
    }

    /// Caps a stream's log: a chunk that would take it past `bytes` ends the stream
    /// with [`Error::LogFull`](crate::Error::LogFull) instead (the start is never
    /// trimmed). Default: no cap.
    pub fn with_max_log_bytes(mut self, bytes: u64) -> Self {
        self.max_log_bytes = Some(bytes);
        self
    }

    /// How many entries one `XRANGE` page or one `XREAD` takes per stream. Default 512.
    pub fn with_read_count(mut self, count: u64) -> Self {
        self.read_count = count.max(1);
        self
    }

    /// How many blocking reads (`XREAD BLOCK`, each on its own connection) an engine
    /// keeps in flight; each follows many streams (on a Redis Cluster, those of one
    /// slot). Default 8.
    pub fn with_max_blocking_reads(mut self, reads: usize) -> Self {
        self.max_blocking_reads = reads.max(1);
        self
    }

    /// The linger.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// The size that makes a producer append at once.
    pub fn max_batch_bytes(&self) -> usize {
        self.max_batch_bytes
    }

    /// How often the log's expiry is refreshed.
    pub fn expiry_refresh(&self) -> Duration {
        self.expiry_refresh
    }

    /// The replay window, if set (else the sentinel's TTL).
    pub fn replay_window(&self) -> Option<Duration> {
        self.replay_window
    }

    /// The log's byte cap, if any.
    pub fn max_log_bytes(&self) -> Option<u64> {
        self.max_log_bytes
    }

    /// Entries per read.
    pub fn read_count(&self) -> u64 {
        self.read_count
    }

    /// Blocking reads in flight at most.
    pub fn max_blocking_reads(&self) -> usize {
        self.max_blocking_reads
    }
}

/// Which pub/sub commands an engine uses.
///
/// ```
/// use resumable_stream::{Config, PubSub};
/// let config = Config::default().with_pubsub(PubSub::Sharded);
/// assert_eq!(config.pubsub(), PubSub::Sharded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PubSub {
    /// `PUBLISH` / `SUBSCRIBE` / `UNSUBSCRIBE`, as the npm and PyPI libraries use: the
    /// default, and the only choice that interoperates with them. In a Redis Cluster
    /// every `PUBLISH` is broadcast to every node.
    #[default]
    Classic,
    /// Redis 7's sharded pub/sub, `SPUBLISH` / `SSUBSCRIBE` / `SUNSUBSCRIBE`: in a Redis
    /// Cluster each channel lives on the shard that owns its slot, so pub/sub traffic
    /// scales with the shards. Every instance sharing the streams must use it (a v1
    /// library, which subscribes classically, hears none of it).
    Sharded,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            names: Names::new("resumable-stream"),
            sentinel_ttl: Duration::from_secs(24 * 60 * 60),
            ack_timeout: Duration::from_millis(1000),
            done_watchdog_interval: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(2),
            grace_period: Duration::ZERO,
            max_buffer_bytes: None,
            extensions: true,
            skip_unit: SkipUnit::Utf16,
            seed: 0x005e_ed0f_5eed,
            pubsub: PubSub::Classic,
            durable: None,
            cluster: false,
        }
    }
}

impl Config {
    /// The prefix of every key and channel (`{prefix}:rs:...`). Default `resumable-stream`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.names = Names::new(&prefix.into());
        self
    }

    /// How long the sentinel key lives after each `SET` (`EX`). Default 24 h; values
    /// under one second are rounded up to one second.
    pub fn with_sentinel_ttl(mut self, ttl: Duration) -> Self {
        self.sentinel_ttl = ttl;
        self
    }

    /// How long a resumer waits for the producer's first message. Default 1 s.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// How often a streaming resumer reads the sentinel, in case the end message was
    /// lost: two readings of `"DONE"` in a row end it, as npm 2.2.13 does. Default 10 s.
    pub fn with_done_watchdog_interval(mut self, interval: Duration) -> Self {
        self.done_watchdog_interval = interval;
        self
    }

    /// How often a producer tells its listeners of ours that it is alive while its
    /// source is idle (only while such listeners are attached: a stream nobody resumes
    /// costs no traffic). A resumer of ours declares the producer gone after three
    /// intervals of silence. Default 2 s.
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a producer keeps answering resume requests after its source ended
    /// (for work after the stream, such as database writes). Default 0.
    pub fn with_grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Caps each producer's buffer: the oldest chunks are dropped beyond `bytes` (the
    /// newest is always kept). A resume that needs dropped data gets
    /// [`Error::Truncated`](crate::Error::Truncated) (a v1 resumer gets no answer and
    /// fails with its ack timeout), never wrong data. Default: no cap.
    pub fn with_max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.max_buffer_bytes = Some(bytes);
        self
    }

    /// Whether this engine's resumers announce the extension protocol in their
    /// requests (docs/protocol.md). Off, they send exactly the v1 request
    /// and get v1 service. Default on; producers serve both kinds regardless.
    pub fn with_extensions(mut self, enabled: bool) -> Self {
        self.extensions = enabled;
        self
    }

    /// The unit this engine's producers count `skipCharacters` in when a request does
    /// not name one, and the unit this engine's resumers ask for. Default
    /// [`SkipUnit::Utf16`], as the TypeScript library and browsers count.
    pub fn with_skip_unit(mut self, unit: SkipUnit) -> Self {
        self.skip_unit = unit;
        self
    }

    /// Seeds the generator of listener ids. Drivers pass real entropy; tests and fuzz
    /// targets pass a constant to replay a run exactly.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Classic or sharded pub/sub (see [`PubSub`]). Default [`PubSub::Classic`].
    pub fn with_pubsub(mut self, pubsub: PubSub) -> Self {
        self.pubsub = pubsub;
        self
    }

    /// Durable mode (see [`Durable`]): this engine's producers also append every chunk
    /// to a log in Redis, and its resumers read that log when a stream has one (falling
    /// back to pub/sub for a v1 producer). Default off.
    pub fn with_durable(mut self, durable: Durable) -> Self {
        self.durable = Some(durable);
        self
    }

    /// Whether the store is a Redis Cluster: one blocking read then follows only
    /// streams whose logs share a slot. Drivers set it from their backend.
    pub fn with_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Durable mode's settings, when it is on.
    pub fn durable(&self) -> Option<&Durable> {
        self.durable.as_ref()
    }

    /// Whether the store is a Redis Cluster.
    pub fn cluster(&self) -> bool {
        self.cluster
    }

    /// Durable mode: how long a log stays after its end, in milliseconds: the replay
    /// window, at most the sentinel's TTL (a log must not outlive the sentinel that
    /// says its stream exists: a new producer of that id would find it ended).
    pub(crate) fn replay_window_millis(&self) -> u64 {
        let ttl = self.sentinel_ttl;
        let window = self
            .durable
            .as_ref()
            .and_then(|d| d.replay_window)
            .map_or(ttl, |w| w.min(ttl));
        millis(window)
    }

    /// Durable mode: how long a log lives while its stream is produced, in
    /// milliseconds: the sentinel's TTL.
    pub(crate) fn log_ttl_millis(&self) -> u64 {
        millis(self.sentinel_ttl)
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.names.prefix()
    }

    /// The key and channel names under the prefix.
    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    /// The sentinel's time to live.
    pub fn sentinel_ttl(&self) -> Duration {
        self.sentinel_ttl
    }

    /// The sentinel's time to live in whole seconds, as sent with `EX` (at least 1).
    pub fn sentinel_ttl_seconds(&self) -> u64 {
        let secs = self.sentinel_ttl.as_secs() + u64::from(self.sentinel_ttl.subsec_nanos() > 0);
        secs.max(1)
    }

    /// The resumer's acknowledgement timeout.
    pub fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// The done watchdog's interval.
    pub fn done_watchdog_interval(&self) -> Duration {
        self.done_watchdog_interval
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        // A zero interval would re-arm at "now" forever.
        self.heartbeat_interval.max(Duration::from_millis(1))
    }

    /// The grace period.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// The buffer cap, if any.
    pub fn max_buffer_bytes(&self) -> Option<usize> {
        self.max_buffer_bytes
    }

    /// Whether resumers announce the extension protocol.
    pub fn extensions(&self) -> bool {
        self.extensions
    }

    /// The default skip unit.
    pub fn skip_unit(&self) -> SkipUnit {
        self.skip_unit
    }

    /// The listener-id seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Classic or sharded pub/sub.
    pub fn pubsub(&self) -> PubSub {
        self.pubsub
    }
}

/// `duration` in whole milliseconds, at least 1 (an expiry of 0 deletes a key).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
