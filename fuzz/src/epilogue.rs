//! Time in the harness (settling the network, advancing the clock, firing every
//! deadline: the engines' and the block times of reads parked in Redis), and the
//! epilogue: every fault stops, every producer finishes, time runs, and then the
//! liveness checks.

use crate::harness::*;
use crate::model::*;
use crate::trace;
use resumable_stream::Role;
use std::time::{Duration, Instant};

/// How long after the epilogue begins a log reader may take to end: its writer's
/// lease (three heartbeats) lapses, a tail checks it within one heartbeat of its own
/// engine, and up to the producer's append retries (100 ms to 800 ms, five attempts)
/// and a linger come first.
const LOG_SLACK: Duration = Duration::from_secs(3);

impl Harness {
    pub fn settle(&mut self, limit: usize) {
        let mut next = 0u8;
        for _ in 0..limit {
            let Some((node, link)) = self.pick_link(next) else {
                return;
            };
            self.deliver(node, link);
            next = next.wrapping_add(1);
        }
    }

    pub fn advance(&mut self, by: Duration) {
        let target = (self.now + by).min(self.start + MAX_ELAPSED);
        if target <= self.now {
            return;
        }
        self.now = target;
        self.fire();
    }

    /// Time is `now`: Redis gives up on the blocking reads whose block time ran out
    /// (their nil replies go down), then every engine fires its due deadlines.
    pub fn fire(&mut self) {
        let timed_out = self.net.time_out(self.now);
        if timed_out > 0 {
            trace!("  {timed_out} blocking reads time out");
        }
        for node in 0..self.nodes.len() {
            if self.nodes[node].killed {
                continue;
            }
            self.nodes[node].engine.handle_timeout(self.now);
            self.drain(node, NO_CTX);
            if let Some(deadline) = self.nodes[node].engine.poll_timeout() {
                assert!(deadline > self.now, "handle_timeout left a due deadline");
            }
            self.check_renewals(node);
        }
    }

    /// The first deadline of a live engine or of a read parked in Redis.
    fn next_deadline(&mut self) -> Option<Instant> {
        self.nodes
            .iter_mut()
            .filter(|n| !n.killed)
            .filter_map(|n| n.engine.poll_timeout())
            .chain(self.net.next_timeout())
            .min()
    }

    fn live_producers(&self) -> Vec<Key> {
        self.order
            .iter()
            .copied()
            .filter(|k| !self.nodes[k.0].killed)
            .filter(|k| self.readers[k].prod.is_some() && self.readers[k].live_producer())
            .collect()
    }

    /// Every fault stops (cut nodes heal, interrupted connections come back; killed
    /// nodes stay dead), every producer finishes; the network drains while time runs
    /// to each next deadline; then the liveness checks. Without durable engines the
    /// clock runs 256 deadlines; with them, also until every log reader had the time
    /// to learn how its stream ended (`LOG_SLACK`).
    pub fn epilogue(&mut self) {
        for node in 0..self.nodes.len() {
            if !self.nodes[node].killed {
                self.heal(node);
                self.restore(node);
            }
        }
        let from = self.now;
        let max_heartbeat = self.nodes.iter().map(|n| n.heartbeat).max().unwrap();
        let durable = self.nodes.iter().any(|n| n.durable.is_some());
        let horizon = from + 4 * max_heartbeat + LOG_SLACK;
        for round in 0..100_000 {
            if round >= 256 && !(durable && self.now <= horizon) {
                break;
            }
            for key in self.live_producers() {
                self.finish(key, false);
            }
            self.settle(100_000);
            if self.pick_link(0).is_some() {
                break;
            }
            if !self.live_producers().is_empty() {
                continue;
            }
            match self.next_deadline() {
                Some(deadline) => {
                    self.now = self.now.max(deadline);
                    self.fire();
                }
                None => break,
            }
        }
        if !self.any_fault {
            assert!(self.pick_link(0).is_none(), "the network never drained");
        }
        for key in &self.order {
            let r = &self.readers[key];
            if self.nodes[key.0].killed {
                continue;
            }
            if r.log_reader {
                if self.faults[r.stream].breaks_log_liveness() || self.logs[r.stream].wild {
                    continue;
                }
                assert!(
                    r.dropped || r.finals == 1,
                    "{key:?} (a log reader of {}) never ended: {r:?}",
                    STREAMS[r.stream]
                );
                // Within a lease and a check of the last renewal, once faults stop.
                let bound = from + 3 * max_heartbeat + self.nodes[key.0].heartbeat + LOG_SLACK;
                if let Some(at) = r.final_at {
                    assert!(
                        at <= bound,
                        "{key:?} (a log reader of {}) ended {:?} after the faults stopped",
                        STREAMS[r.stream],
                        at - from
                    );
                }
                continue;
            }
            if self.faults[r.stream].breaks_liveness() {
                continue;
            }
            assert!(
                r.dropped || r.finals == 1,
                "{key:?} ({:?} of {}) never got its final event: {r:?}",
                r.kind,
                STREAMS[r.stream]
            );
        }
        for (stream, faults) in self.faults.iter().enumerate() {
            let produced = self
                .readers
                .values()
                .any(|r| r.stream == stream && r.started == Some(Role::Producer));
            if !faults.any() && produced {
                let value = self.net.redis.get_raw(self.now, &names(stream).0);
                assert_eq!(
                    value.as_deref(),
                    Some(&b"DONE"[..]),
                    "the sentinel of {stream}"
                );
            }
        }
        if !self.any_fault {
            for (i, node) in self.nodes.iter().enumerate() {
                assert_eq!(node.engine.live_handles(), 0, "engine {i} keeps handles");
            }
        }
    }
}
