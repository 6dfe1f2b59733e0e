//! Durable mode's steps on the harness: a node killed or cut off and healed, a log
//! trimmed, and the blocking links' deliveries and faults.

use crate::durable_ops::{BlockingFault, DurableStep};
use crate::harness::*;
use crate::model::*;
use resumable_stream::sim::{Item, Link};
use resumable_stream::{Connection, Op, PubSubState, ReplyError, StreamId};
use std::time::Duration;

impl Harness {
    pub fn durable_step(&mut self, step: &DurableStep) {
        match step {
            // Taken before the run (`Harness::new`).
            DurableStep::Configure { .. } => {}
            DurableStep::Kill { engine } => self.kill(self.node(*engine)),
            DurableStep::CutOff {
                engine,
                errors_first,
            } => self.cut_off(self.node(*engine), *errors_first),
            DurableStep::Heal { engine } => self.heal(self.node(*engine)),
            DurableStep::Trim { stream, before } => {
                let stream = usize::from(*stream) % STREAMS.len();
                let before = StreamId::new(u64::from(before % 16), 0);
                let key = log_names(stream).0;
                if self.net.redis.trim_stream_before(&key, before) > 0 {
                    self.fault(Some(stream), |f| f.trimmed = true);
                }
            }
            DurableStep::Blocking {
                engine,
                down,
                count,
            } => {
                let node = self.node(*engine);
                let link = if *down {
                    Link::BlockingDown
                } else {
                    Link::BlockingUp
                };
                for _ in 0..=count % 8 {
                    if self.nodes[node].killed || self.net.len(node, link) == 0 {
                        break;
                    }
                    self.deliver(node, link);
                }
            }
            DurableStep::BlockingFault {
                engine,
                down,
                nth,
                by,
                fault,
            } => {
                let node = self.node(*engine);
                let link = if *down {
                    Link::BlockingDown
                } else {
                    Link::BlockingUp
                };
                self.blocking_fault(node, link, *nth, *by, *fault);
            }
        }
    }

    /// Every stream an item concerns (an `XREAD` follows several), or `[None]`.
    pub fn item_streams(&self, node: usize, item: &Item) -> Vec<Option<usize>> {
        match self.item_info(node, item) {
            (Some(Op::XRead { streams, .. }), _) => {
                streams.iter().map(|(key, _)| self.stream_of(key)).collect()
            }
            (_, stream) => vec![stream],
        }
    }

    /// A fault on item `nth` of a blocking link. Several blocking reads may be in
    /// flight on as many connections, so reordering and repeating them is no fault of
    /// the streams: the engine must not notice (but for the repeated reply it ignores).
    fn blocking_fault(&mut self, node: usize, link: Link, nth: u8, by: u8, fault: BlockingFault) {
        let len = self.net.len(node, link);
        if self.nodes[node].killed || len == 0 {
            return;
        }
        let at = usize::from(nth) % len;
        match fault {
            BlockingFault::Drop => {
                let item = self.net.remove(node, link, at).expect("an item");
                for stream in self.item_streams(node, &item) {
                    self.fault(stream, |f| {
                        f.lost = true;
                        f.other = true;
                    });
                }
                self.lost_blocking_read(node, &item);
            }
            BlockingFault::Fail(error) => {
                let item = self
                    .net
                    .fail_next(node, link, error.get(), self.now)
                    .expect("an item");
                for stream in self.item_streams(node, &item) {
                    self.fault(stream, |f| f.other = true);
                }
                if let Item::Reply(..) = item {
                    self.deliver(node, link);
                }
            }
            BlockingFault::Reorder => self.net.reorder(node, link, at, usize::from(by % 8) + 1),
            BlockingFault::Delay => {
                let due = self.now + Duration::from_millis(10 * u64::from(by));
                self.net.delay(node, link, at, due);
            }
            BlockingFault::Duplicate => {
                self.net.duplicate(node, link, at, usize::from(by % 4));
                self.unmatched_allowed[node] += 1;
            }
        }
    }

    /// A blocking read (or its reply) lost without a trace holds one of the engine's
    /// lanes for ever: every tail of `node` may wait for one.
    pub fn lost_blocking_read(&mut self, node: usize, item: &Item) {
        if let (Some(Op::XRead { .. }), _) = self.item_info(node, item) {
            self.fault_node(node, |f| f.lost = true);
        }
    }

    /// Marks every stream with a handle on `node`.
    fn fault_node(&mut self, node: usize, set: impl Fn(&mut Faults)) {
        let touched: Vec<usize> = self
            .readers
            .iter()
            .filter(|(k, _)| k.0 == node)
            .map(|(_, r)| r.stream)
            .collect();
        self.any_fault = true;
        for stream in touched {
            set(&mut self.faults[stream]);
        }
    }

    /// `node`'s process dies. Redis drops its connections (its subscriptions, its
    /// parked reads); what it had sent and what was on its way to it is gone. Its
    /// producers' leases lapse: their log readers elsewhere must learn it. Readers of
    /// its streams over pub/sub may wait for ever (a v1 producer's death is silent).
    fn kill(&mut self, node: usize) {
        if self.nodes[node].killed {
            return;
        }
        self.fault_node(node, |f| f.silent = true);
        self.nodes[node].killed = true;
        for connection in [
            Connection::Commands,
            Connection::PubSub,
            Connection::Blocking,
        ] {
            let error = ReplyError::Connection("the process died".into());
            self.net.set_down(node, connection, Some(error));
        }
        for link in Link::ALL {
            while self.net.pop(node, link).is_some() {}
        }
    }

    /// Every connection of `node` drops and stays down until [`heal`](Self::heal):
    /// what was in flight fails with a connection error (replies not yet arrived
    /// first, before or after the engine hears of its pub/sub connection), commands
    /// sent meanwhile fail as they reach Redis. A producer cut off longer than its lease
    /// finds its log ended when it is back (fenced).
    pub fn cut_off(&mut self, node: usize, errors_first: bool) {
        if self.nodes[node].killed || self.nodes[node].cut {
            return;
        }
        // Its PUBLISHes in flight fail: a v1 listener may miss a chunk.
        self.fault_node(node, |f| {
            f.cut = true;
            f.failed_publish = true;
        });
        self.nodes[node].cut = true;
        if !self.nodes[node].interrupted {
            self.drop_pubsub(node, PubSubState::Interrupted, errors_first);
        }
        for connection in [Connection::Commands, Connection::Blocking] {
            let error = ReplyError::Connection("connection reset".into());
            self.net.set_down(node, connection, Some(error.clone()));
            for id in self.net.drop_connection(node, connection) {
                self.reply(node, id, Err(error.clone()));
            }
        }
    }

    /// `node`'s connections are back.
    pub fn heal(&mut self, node: usize) {
        if self.nodes[node].killed || !self.nodes[node].cut {
            return;
        }
        self.nodes[node].cut = false;
        self.net.set_down(node, Connection::Commands, None);
        self.net.set_down(node, Connection::Blocking, None);
        self.restore(node);
    }
}
