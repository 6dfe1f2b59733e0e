//! The fuzzer's operations on durable mode (`Config::with_durable`): which engines are
//! durable and how, the faults only a log has (a node killed, cut off past its lease
//! then healed, an operator's `XTRIM`), and the blocking connection's deliveries and
//! faults. They are parsed from the upper three quarters of the range of
//! `Step::Misuse`'s discriminant (see [`AnyStep`](crate::ops::AnyStep)), which no
//! committed input used, so every input committed before them means what it meant.
//!
//! `DurableStep` is a derived enum: adding a variant changes what every input with a
//! durable step means; append new operations to the payload of an existing variant
//! or carve another range, as `AnyStep` does.

use crate::ops::FaultError;
use arbitrary::Arbitrary;
use resumable_stream::Durable;
use std::time::Duration;

/// How long a durable producer holds chunks before appending them.
#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum Linger {
    Zero,
    Default,
    Long,
}

/// How long a finished (or gone) log stays readable.
#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum Replay {
    /// The sentinel's TTL (24 h, past the end of any run).
    Default,
    /// One second: a log that expires within a run.
    Short,
    /// Two minutes.
    Long,
}

/// One engine's durable settings; small values make the rare paths common (a chunk
/// appended at once, paging one entry at a time, one blocking read for every tail, a
/// log that fills up or expires).
#[derive(Debug, Arbitrary, Clone, Copy)]
pub struct DurableSetup {
    pub linger: Linger,
    /// Append at once past 1 to 32 bytes, or at the default 64 KiB.
    pub batch: Option<u8>,
    /// Entries per `XRANGE` page and `XREAD`: 1 to 4, or the default 512.
    pub read_count: Option<u8>,
    /// Blocking reads in flight at most: 1 to 3, or the default 8.
    pub blocking_reads: Option<u8>,
    /// A log cap of 0 to 63 bytes.
    pub max_log_bytes: Option<u8>,
    pub replay: Replay,
    /// Refresh the log's expiry every 500 ms rather than every 5 s.
    pub fast_refresh: bool,
}

impl DurableSetup {
    pub fn get(&self) -> Durable {
        let linger = match self.linger {
            Linger::Zero => Duration::ZERO,
            Linger::Default => Duration::from_millis(5),
            Linger::Long => Duration::from_millis(50),
        };
        let mut durable = Durable::default().with_linger(linger);
        if let Some(bytes) = self.batch {
            durable = durable.with_max_batch_bytes(usize::from(bytes % 32) + 1);
        }
        if let Some(count) = self.read_count {
            durable = durable.with_read_count(u64::from(count % 4) + 1);
        }
        if let Some(reads) = self.blocking_reads {
            durable = durable.with_max_blocking_reads(usize::from(reads % 3) + 1);
        }
        if let Some(cap) = self.max_log_bytes {
            durable = durable.with_max_log_bytes(u64::from(cap % 64));
        }
        match self.replay {
            Replay::Default => {}
            Replay::Short => durable = durable.with_replay_window(Duration::from_secs(1)),
            Replay::Long => durable = durable.with_replay_window(Duration::from_secs(120)),
        }
        if self.fast_refresh {
            durable = durable.with_expiry_refresh(Duration::from_millis(500));
        }
        durable
    }
}

/// A fault on an item of a blocking link (`XREAD BLOCK`s up, their replies down).
/// Several blocking reads may be in flight on several connections, so unlike the
/// command and pub/sub links these may reorder and repeat.
#[derive(Debug, Arbitrary, Clone, Copy)]
pub enum BlockingFault {
    /// Lost without a trace (no reply, no error).
    Drop,
    /// The next read fails, or the next reply becomes an error.
    Fail(FaultError),
    /// Moved `by` places further back.
    Reorder,
    /// Due `by` × 10 ms later: items due before then overtake it.
    Delay,
    /// Arrives twice (the copy `by` places further back): a read run twice, a reply
    /// repeated; the engine counts the second reply as unmatched.
    Duplicate,
}

#[derive(Debug, Arbitrary)]
pub enum DurableStep {
    /// Durable mode for `engine`, with these settings. Taken from wherever it is in the
    /// input, before the run starts (the first one per engine wins): a step in the
    /// middle of a run still makes that engine durable from the start.
    Configure {
        engine: u8,
        setup: DurableSetup,
    },
    /// The node's process dies: nothing it sent and nothing sent to it arrives any
    /// more, Redis drops its connections; its handles are never heard of again.
    Kill {
        engine: u8,
    },
    /// Every connection of the node goes down (commands in flight fail with a
    /// connection error, its subscriptions and parked reads are dropped) until `Heal`
    /// (or the end of the run): a stall that may outlast a producer's lease.
    CutOff {
        engine: u8,
        errors_first: bool,
    },
    Heal {
        engine: u8,
    },
    /// An operator's `XTRIM MINID`: the log's entries holding chunks before `before`
    /// go.
    Trim {
        stream: u8,
        before: u8,
    },
    /// Delivers up to `count + 1` items of a blocking link.
    Blocking {
        engine: u8,
        down: bool,
        count: u8,
    },
    BlockingFault {
        engine: u8,
        down: bool,
        nth: u8,
        by: u8,
        fault: BlockingFault,
    },
}
