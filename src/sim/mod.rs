//! A deterministic simulation: several engines ("instances") and one [`MemoryRedis`],
//! joined by the links of [`Net`] with a fixed latency, on a virtual clock.
//!
//! Nothing here touches a socket or the real clock: a test drives requests into the
//! engines, lets the simulated network deliver commands, replies and messages in
//! virtual time, and reads what each reader received. Timeouts fire when the clock
//! reaches them, so a one-second acknowledgement timeout costs no real time.
//!
//! The network itself is [`net`]: per node and connection a link up and a link down,
//! with its faults (drop, fail, delay, reorder, duplicate). [`Sim`] drives it in
//! virtual time; the fuzz targets (`fuzz/`) drive the same network step by step.
//!
//! Blocking reads (`XREAD BLOCK`, on [`Connection::Blocking`]) that find nothing wait in
//! the simulated Redis ([`Net::blocked`]) until an `XADD` serves them or their block
//! time runs out in virtual time. A waiting read is not traffic: [`Sim::settle`] returns
//! while reads wait (as it does while subscribers wait for messages), and
//! [`Sim::advance`] answers those whose block time ends within it with nil.
//!
//! ```
//! use resumable_stream::sim::Sim;
//! use resumable_stream::{Config, Role};
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(2, Duration::from_millis(1), Config::default());
//! let producer = sim.engine(0).resumable_stream("s", None);
//! sim.settle();
//! sim.engine(0).push_chunk(producer, "hello ".into()).unwrap();
//! let resumer = sim.engine(1).resumable_stream("s", Some(2));
//! sim.settle();
//! sim.engine(0).push_chunk(producer, "world".into()).unwrap();
//! sim.engine(0).finish(producer).unwrap();
//! sim.settle();
//! assert_eq!(sim.log(1, resumer).role, Some(Role::Resumer));
//! assert_eq!(sim.log(1, resumer).data, b"llo world");
//! assert!(sim.log(1, resumer).ended);
//! ```

pub mod net;
#[cfg(test)]
mod tests;

use crate::engine::Engine;
use crate::error::Error;
use crate::event::{Event, Handle, Role, StreamState};
use crate::io::{Connection, Op, ReplyError};
use crate::memory::MemoryRedis;
use crate::Config;
use bytes::Bytes;
pub use net::{Executed, Item, Link, Net};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Everything one handle received, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderLog {
    /// The role, once `Started` arrived.
    pub role: Option<Role>,
    /// Every byte of every `Data` event, joined.
    pub data: Vec<u8>,
    /// Each `Data` event's bytes, separately.
    pub chunks: Vec<Bytes>,
    /// `End` arrived.
    pub ended: bool,
    /// `Done` arrived.
    pub done: bool,
    /// `NotFound` arrived.
    pub not_found: bool,
    /// The answer to a state query.
    pub state: Option<StreamState>,
    /// `Failed` arrived with this error.
    pub error: Option<Error>,
    /// `Cancelled` arrived (the answer to a cancel).
    pub cancelled: bool,
    /// `StopSource` arrived (a producer must drop its source).
    pub stop_source: bool,
    /// The chunk index of the last `Data` event, when the producer said.
    pub last_chunk: Option<u64>,
    /// How many final events arrived (exactly one for a finished handle).
    pub finals: usize,
    /// Events that arrived after a final event: always a bug.
    pub after_final: usize,
    /// The virtual time (since the simulation began) at which the first final event
    /// arrived: for tests that bound when a deadline fired.
    pub final_at: Option<Duration>,
}

struct Node {
    engine: Engine,
    logs: HashMap<Handle, ReaderLog>,
    /// PUBLISHes of this node still to be refused with an error reply, oldest first:
    /// the ones whose message contains the given bytes.
    refused_publishes: Vec<Bytes>,
    /// Messages to this node still to be lost, the same way.
    lost_messages: Vec<Bytes>,
    /// Messages to this node still to be delivered twice, the copy after the delay.
    repeated_messages: Vec<(Bytes, Duration)>,
    /// Every channel this node subscribed to, in order (repeats included).
    subscribed: Vec<Bytes>,
}

/// The simulated network of engines around one in-memory Redis.
pub struct Sim {
    /// The network, and the simulated Redis in it (`net.redis`): tests may inspect or
    /// modify keys directly, or act on the links.
    pub net: Net,
    nodes: Vec<Node>,
    start: Instant,
    now: Instant,
    latency: Duration,
    /// Every command sent by any node, by name, for counting.
    pub commands_sent: HashMap<&'static str, u64>,
}

/// The most steps [`Sim::settle`] takes before it declares a livelock.
const MAX_STEPS: usize = 10_000_000;

impl Sim {
    /// `nodes` engines with `config` (each with its own seed), links of `latency` each
    /// way.
    pub fn new(nodes: usize, latency: Duration, config: Config) -> Sim {
        Sim::with_configs(vec![config; nodes], latency)
    }

    /// One engine per configuration (each with its own seed), links of `latency`.
    pub fn with_configs(configs: Vec<Config>, latency: Duration) -> Sim {
        let mut net = Net::new();
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, config)| {
                net.add_node();
                Node {
                    engine: Engine::new(
                        config
                            .clone()
                            .with_seed(config.seed().wrapping_add(i as u64 * 7919)),
                    ),
                    logs: HashMap::new(),
                    refused_publishes: Vec::new(),
                    lost_messages: Vec::new(),
                    repeated_messages: Vec::new(),
                    subscribed: Vec::new(),
                }
            })
            .collect();
        let start = Instant::now();
        Sim {
            net,
            nodes,
            start,
            now: start,
            latency,
            commands_sent: HashMap::new(),
        }
    }

    /// The simulated Redis.
    pub fn redis(&mut self) -> &mut MemoryRedis {
        &mut self.net.redis
    }

    /// The engine of node `node`, to make requests.
    pub fn engine(&mut self, node: usize) -> &mut Engine {
        &mut self.nodes[node].engine
    }

    /// What handle `handle` of node `node` received so far.
    pub fn log(&self, node: usize, handle: Handle) -> ReaderLog {
        self.nodes[node]
            .logs
            .get(&handle)
            .cloned()
            .unwrap_or_default()
    }

    /// The virtual time elapsed since the simulation began.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Cuts node `node` off (its commands fail with a connection error, nothing reaches
    /// it) or heals it. A cut also drops its subscriptions and fails its parked blocking
    /// reads, as closed connections do.
    pub fn partition(&mut self, node: usize, cut: bool) {
        for connection in [
            Connection::Commands,
            Connection::PubSub,
            Connection::Blocking,
        ] {
            let error = cut.then(|| ReplyError::Connection("connection reset".into()));
            self.net.set_down(node, connection, error);
        }
    }

    /// Answers the next PUBLISH of `node` whose message contains `part` with an error
    /// reply instead of executing it, while the commands around it succeed: what a
    /// proxy or a Redis under memory pressure may do to one command of a pipeline.
    pub fn refuse_publish(&mut self, node: usize, part: impl Into<Bytes>) {
        self.nodes[node].refused_publishes.push(part.into());
    }

    /// Loses the next pub/sub message to `node` that contains `part`, without a trace:
    /// no error reply, no disconnect.
    pub fn lose_message(&mut self, node: usize, part: impl Into<Bytes>) {
        self.nodes[node].lost_messages.push(part.into());
    }

    /// Delivers the next pub/sub message to `node` that contains `part` twice: the copy
    /// `delay` after the original (a retried `PUBLISH` that had already run).
    pub fn repeat_message(&mut self, node: usize, part: impl Into<Bytes>, delay: Duration) {
        self.nodes[node]
            .repeated_messages
            .push((part.into(), delay));
    }

    /// Every channel node `node` sent a (sharded) subscription for, in order, repeats
    /// included: to name a resumer's chunk channel, whose listener id is random.
    pub fn subscribed(&self, node: usize) -> &[Bytes] {
        &self.nodes[node].subscribed
    }

    /// The server drops node `node`'s subscription to `channel` (a Cluster slot moved)
    /// and the node's driver tells its engine, as a driver does on such a push.
    pub fn drop_subscription(&mut self, node: usize, channel: &[u8]) {
        let now = self.now;
        self.net.drop_subscription(node, channel, now);
        self.nodes[node]
            .engine
            .handle_subscription_dropped(now, channel);
    }

    /// Moves every pending output of every engine: commands onto the network, events
    /// into the logs.
    fn flush(&mut self) {
        for index in 0..self.nodes.len() {
            while let Some(command) = self.nodes[index].engine.poll_command() {
                *self.commands_sent.entry(command.op.name()).or_default() += 1;
                if let Op::Subscribe { channel } | Op::SSubscribe { channel } = &command.op {
                    self.nodes[index].subscribed.push(channel.clone());
                }
                let at = self.now + self.latency;
                self.net.send(index, command, at);
            }
            let elapsed = self.now - self.start;
            let node = &mut self.nodes[index];
            while let Some(event) = node.engine.poll_event() {
                record(&mut node.logs, event, elapsed);
            }
        }
    }

    /// The first deadline of an engine or of a blocking read parked in Redis.
    fn next_deadline(&mut self) -> Option<Instant> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.engine.poll_timeout())
            .chain(self.net.next_timeout())
            .min()
    }

    /// Delivers everything in flight, and fires any deadline that falls before the next
    /// delivery, until the network is quiet. Deadlines after that are left pending,
    /// among them the block times of reads parked in Redis.
    ///
    /// # Panics
    /// If the engines never stop talking (a livelock): a bug this detects.
    pub fn settle(&mut self) {
        self.run(None);
    }

    /// Like [`settle`](Self::settle), and then lets virtual time run for `duration`,
    /// firing deadlines and delivering what they cause.
    pub fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run(Some(until));
        if self.now < until {
            self.now = until;
        }
    }

    fn run(&mut self, until: Option<Instant>) {
        for _ in 0..MAX_STEPS {
            self.flush();
            let next_transit = self.net.next_due();
            let next_deadline = self.next_deadline();
            let horizon = until.unwrap_or(self.now);
            // With a horizon (`advance`), nothing after it happens yet; without one
            // (`settle`), every delivery happens, and deadlines only before them.
            let beyond = |at: Instant| until.is_some() && at > horizon;
            match (next_transit, next_deadline) {
                (Some((t, ..)), Some(d)) if d < t => {
                    if beyond(d) {
                        return;
                    }
                    self.fire(d)
                }
                (Some((t, node, link)), _) => {
                    if beyond(t) {
                        return;
                    }
                    self.now = self.now.max(t);
                    self.deliver(node, link)
                }
                (None, Some(d)) if d <= horizon => self.fire(d),
                (None, _) => return,
            }
        }
        panic!("the simulation did not settle within {MAX_STEPS} steps");
    }

    fn fire(&mut self, deadline: Instant) {
        self.now = self.now.max(deadline);
        let now = self.now;
        self.net.time_out(now);
        for node in &mut self.nodes {
            node.engine.handle_timeout(now);
        }
    }

    /// Delivers the next item of `link` of `node`, applying this node's faults.
    fn deliver(&mut self, node: usize, link: Link) {
        let Some(item) = self.net.pop(node, link) else {
            return;
        };
        let now = self.now;
        let back = now + self.latency;
        match item {
            Item::Command(command) => {
                let refused = match &command.op {
                    Op::Publish { message, .. } => self.nodes[node]
                        .refused_publishes
                        .iter()
                        .position(|part| contains(message, part)),
                    _ => None,
                };
                if let Some(index) = refused {
                    // An injected error reply: the command is not run.
                    self.nodes[node].refused_publishes.remove(index);
                    let error = ReplyError::Server("ERR injected by the simulation".into());
                    self.net
                        .push(node, link.down(), Item::Reply(command.id, Err(error)), back);
                    return;
                }
                self.net.execute(node, command, now, back);
            }
            Item::Reply(id, reply) => self.nodes[node].engine.handle_reply(now, id, reply),
            Item::Message { channel, message } => {
                let lost = &mut self.nodes[node].lost_messages;
                if let Some(index) = lost.iter().position(|part| contains(&message, part)) {
                    lost.remove(index);
                    return;
                }
                let repeated = &mut self.nodes[node].repeated_messages;
                if let Some(index) = repeated.iter().position(|(p, _)| contains(&message, p)) {
                    let (_, delay) = repeated.remove(index);
                    let copy = Item::Message {
                        channel: channel.clone(),
                        message: message.clone(),
                    };
                    self.net.push(node, Link::PubSubDown, copy, now + delay);
                }
                if !self.net.is_down(node, Connection::PubSub) {
                    self.nodes[node]
                        .engine
                        .handle_message(now, &channel, message);
                }
            }
        }
    }
}

/// Adds `event`, which the engine emitted at virtual time `at`, to its handle's log.
fn record(logs: &mut HashMap<Handle, ReaderLog>, event: Event, at: Duration) {
    let log = logs.entry(event.handle()).or_default();
    if log.finals > 0 {
        log.after_final += 1;
    }
    if event.is_final() {
        log.finals += 1;
        log.final_at.get_or_insert(at);
    }
    match event {
        Event::Started { role, .. } => log.role = Some(role),
        Event::Data { data, chunk, .. } => {
            log.data.extend_from_slice(&data);
            log.chunks.push(data);
            log.last_chunk = chunk;
        }
        Event::Cancelled { .. } => log.cancelled = true,
        Event::StopSource { .. } => log.stop_source = true,
        Event::End { .. } => log.ended = true,
        Event::Done { .. } => log.done = true,
        Event::NotFound { .. } => log.not_found = true,
        Event::State { state, .. } => log.state = Some(state),
        Event::Failed { error, .. } => log.error = Some(error),
        Event::ActiveStream { .. } => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
