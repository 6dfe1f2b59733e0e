//! The engine model's harness: two or three engines on the simulated network of
//! `resumable_stream::sim::Net`, the model beside them, and the application's calls
//! (`new_reader`, `push`, `finish`) with the commands each must cause.

use crate::durable::{is_log_op, StreamLog};
use crate::durable_ops::DurableStep;
use crate::model::*;
use crate::ops::{AnyStep, Grace, Heartbeat, Input};
use crate::trace;
use bytes::Bytes;
use resumable_stream::sim::{Item, Net};
use resumable_stream::wire::{Control, Incoming};
use resumable_stream::{
    ClientId, CommandId, Config, Durable, Engine, Error, Handle, Op, Position, SkipUnit,
};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub const MAX_STEPS: usize = 256;
/// Virtual time stays well under the sentinel's 24 h time to live.
pub const MAX_ELAPSED: Duration = Duration::from_secs(12 * 3600);

pub struct Node {
    pub engine: Engine,
    pub unit: SkipUnit,
    pub extensions: bool,
    pub max_buffer: Option<usize>,
    pub heartbeat: Duration,
    /// The pub/sub connection is down: its commands fail.
    pub interrupted: bool,
    /// Durable mode's settings, if this engine is durable.
    pub durable: Option<Durable>,
    /// Its process died (`DurableStep::Kill`): it is never driven again.
    pub killed: bool,
    /// Every connection is down until healed (`DurableStep::CutOff`).
    pub cut: bool,
}

pub struct CommandInfo {
    pub op: Op,
    pub owner: Option<Handle>,
    /// A `PUBLISH` to a registered listener: its producer and registration serial.
    pub deliver: Option<(Key, u64)>,
    /// An `UNSUBSCRIBE` of a request channel: the producer leaving it.
    pub retire: Option<Key>,
    /// An `XADD` of a durable producer: which.
    pub writer: Option<Key>,
}

/// What an input was, for the events it causes.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub owner: Option<Handle>,
    /// A pub/sub message on a chunk channel: an ending now comes from a message.
    pub chunk_message: bool,
}

pub const NO_CTX: Ctx = Ctx {
    owner: None,
    chunk_message: false,
};

/// The model's expectation of the commands an input causes.
pub enum Expect {
    Exactly(Vec<Op>),
    /// A refusal or an exact answer, where a split character makes the bounded
    /// buffer's arithmetic conservative.
    Either(Vec<Op>, Vec<Op>),
}

pub struct Harness {
    /// The engines' network and the Redis in it (`net.redis`).
    pub net: Net,
    pub nodes: Vec<Node>,
    pub start: Instant,
    pub now: Instant,
    pub readers: HashMap<Key, Reader>,
    pub order: Vec<Key>,
    pub commands: HashMap<(usize, CommandId), CommandInfo>,
    pub listener_owner: HashMap<String, Key>,
    pub faults: [Faults; 3],
    pub any_fault: bool,
    /// Durable mode: what the model knows of each stream's log.
    pub logs: [StreamLog; 3],
    /// A Redis client of the harness's own, to read the logs back.
    pub inspector: ClientId,
    /// Replies each engine may not recognise: the second of a repeated blocking read.
    pub unmatched_allowed: Vec<u64>,
}

impl Harness {
    pub fn new(input: &Input) -> Harness {
        let mut net = Net::new();
        let count = if input.three_engines { 3 } else { 2 };
        // Durable mode per engine: the first `Configure` naming it, wherever it is.
        let mut durable: [Option<Durable>; 3] = Default::default();
        for step in &input.steps {
            if let AnyStep::Durable(DurableStep::Configure { engine, setup }) = step {
                durable[usize::from(*engine) % count].get_or_insert_with(|| setup.get());
            }
        }
        let nodes = (0..count)
            .map(|i| {
                let setup = &input.setups[i];
                let unit = setup.unit.get();
                let heartbeat = match setup.heartbeat {
                    Heartbeat::Default => Duration::from_secs(2),
                    Heartbeat::Fast => Duration::from_millis(250),
                    Heartbeat::Slow => Duration::from_secs(20),
                };
                let grace = match setup.grace {
                    Grace::None => Duration::ZERO,
                    Grace::Short => Duration::from_secs(1),
                    Grace::Long => Duration::from_secs(30),
                };
                let max_buffer = setup.max_buffer.map(|b| usize::from(b % 64) + 1);
                let mut config = Config::default()
                    .with_skip_unit(unit)
                    .with_extensions(setup.extensions)
                    .with_heartbeat_interval(heartbeat)
                    .with_grace_period(grace)
                    .with_seed(0x5eed + 7919 * i as u64);
                if let Some(bytes) = max_buffer {
                    config = config.with_max_buffer_bytes(bytes);
                }
                if let Some(durable) = durable[i].clone() {
                    config = config.with_durable(durable);
                }
                trace!("engine {i}: durable {:?}", durable[i]);
                net.add_node();
                Node {
                    engine: Engine::new(config),
                    unit,
                    extensions: setup.extensions,
                    max_buffer,
                    heartbeat,
                    interrupted: false,
                    durable: durable[i].clone(),
                    killed: false,
                    cut: false,
                }
            })
            .collect();
        let inspector = net.redis.connect();
        let start = Instant::now();
        Harness {
            net,
            nodes,
            start,
            now: start,
            readers: HashMap::new(),
            order: Vec::new(),
            commands: HashMap::new(),
            listener_owner: HashMap::new(),
            faults: [Faults::default(); 3],
            any_fault: false,
            logs: Default::default(),
            inspector,
            unmatched_allowed: vec![0; count],
        }
    }

    pub fn node(&self, n: u8) -> usize {
        usize::from(n) % self.nodes.len()
    }

    pub fn fault(&mut self, stream: Option<usize>, set: impl Fn(&mut Faults)) {
        self.any_fault = true;
        if let Some(s) = stream {
            set(&mut self.faults[s]);
        }
    }

    /// The stream a key or channel belongs to, if the model knows it.
    pub fn stream_of(&self, name: &[u8]) -> Option<usize> {
        match parse_name(name) {
            Name::Sentinel(s) | Name::Request(s) | Name::Log(s) | Name::Lease(s) => Some(s),
            Name::Chunk(l) => self
                .listener_owner
                .get(&l)
                .and_then(|k| self.readers.get(k))
                .map(|r| r.stream),
            Name::Other => None,
        }
    }

    /// The command an item is or answers, and the stream it concerns.
    pub fn item_info(&self, node: usize, item: &Item) -> (Option<Op>, Option<usize>) {
        match item {
            Item::Command(c) => (Some(c.op.clone()), self.stream_of(c.op.routing_key())),
            Item::Reply(id, _) => match self.commands.get(&(node, *id)) {
                Some(info) => (Some(info.op.clone()), self.stream_of(info.op.routing_key())),
                None => (None, None),
            },
            Item::Message { channel, .. } => (None, self.stream_of(channel)),
        }
    }

    /// The producer of `node` that owns the request channel of `stream`, per the model.
    pub fn routed_producer(&self, node: usize, stream: usize) -> Option<Key> {
        let mut found = None;
        for (key, r) in &self.readers {
            if key.0 == node && r.stream == stream && r.prod.as_ref().is_some_and(|p| p.routed) {
                assert!(found.is_none(), "two producers of one stream in one engine");
                found = Some(*key);
            }
        }
        found
    }

    /// The registration of `listener` with a producer of `node` that `message` (a
    /// heartbeat, sent with the registration's token) is for.
    pub fn registration_of(
        &self,
        node: usize,
        listener: &str,
        message: &[u8],
    ) -> Option<(Key, u64)> {
        let mut found = self.order.iter().filter_map(|key| {
            let p = self.readers[key].prod.as_ref()?;
            if key.0 != node {
                return None;
            }
            let reg = p.registrations.iter().find(|r| r.listener == listener)?;
            let token = reg.token.as_deref().unwrap_or_default();
            Control::decode(message, token).map(|_| (*key, reg.serial))
        });
        found.next()
    }

    // ----- application calls -----

    pub fn new_reader(
        &mut self,
        node: usize,
        handle: Handle,
        stream: usize,
        kind: Kind,
        position: Position,
    ) {
        let key = (node, handle);
        assert!(!self.readers.contains_key(&key), "handles are never reused");
        self.readers.insert(
            key,
            Reader {
                stream,
                kind,
                position,
                dropped: false,
                any_event: false,
                started: None,
                finals: 0,
                stopped: false,
                prod: None,
                expected_local: VecDeque::new(),
                listener: None,
                token: None,
                extended: false,
                owed: None,
                owed_seq: 0,
                refused: false,
                cancel_answered_by: None,
                received: Vec::new(),
                received_bytes: Vec::new(),
                log_reader: false,
                lease_token: None,
                final_at: None,
            },
        );
        self.order.push(key);
        if self.nodes[node].interrupted {
            self.fault(Some(stream), |f| f.interrupted = true);
        }
        if self.nodes[node].cut {
            self.fault(Some(stream), |f| f.cut = true);
        }
        self.drain(
            node,
            Ctx {
                owner: Some(handle),
                chunk_message: false,
            },
        );
    }

    pub fn push(&mut self, key: Key, chunk: Bytes) {
        let (node, handle) = key;
        let live = self.readers[&key].prod.is_some() && self.readers[&key].live_producer();
        // Durable mode: a chunk that would take the log past its cap ends the stream.
        let full = self.readers[&key]
            .prod
            .as_ref()
            .and_then(|p| p.log.as_ref())
            .and_then(|log| log.limit.filter(|&l| log.bytes + chunk.len() as u64 > l))
            .filter(|_| live);
        let result = self.nodes[node].engine.push_chunk(handle, chunk.clone());
        let mut expected = Vec::new();
        if let Some(limit) = full {
            assert!(
                matches!(result, Err(Error::LogFull { limit: l, .. }) if l == limit),
                "push_chunk past the log's cap of {limit}: {result:?}"
            );
            expected = self.end_production(key, Ending::LogFull(limit));
        } else {
            assert_eq!(result.is_ok(), live, "push_chunk on {key:?}: {result:?}");
        }
        if live && full.is_none() {
            let cap = self.nodes[node].max_buffer;
            let r = self.readers.get_mut(&key).unwrap();
            let dropped = r.dropped;
            let p = r.prod_mut();
            p.chunks.push(chunk.clone());
            p.held_bytes += chunk.len();
            if let Some(log) = p.log.as_mut() {
                log.bytes += chunk.len() as u64;
            }
            if let Some(cap) = cap {
                while p.held_bytes > cap && p.chunks.len() - p.dropped > 1 {
                    p.held_bytes -= p.chunks[p.dropped].len();
                    p.dropped += 1;
                }
            }
            let index = p.chunks.len() as u64;
            expected = p
                .registrations
                .iter()
                .filter(|reg| !reg.lost)
                .map(|reg| {
                    let message = match &reg.token {
                        Some(token) => Incoming::encode_chunk(token, index - 1, &chunk),
                        None => chunk.clone(),
                    };
                    publish(&reg.listener, message)
                })
                .collect();
            if !dropped && !chunk.is_empty() {
                r.expected_local.push_back((chunk, index));
            }
        }
        let ops = app_ops(self.drain_ops(node, Some(handle)));
        assert_eq!(
            ops, expected,
            "push_chunk on {key:?}: one PUBLISH per listener, in order"
        );
        assert!(
            self.readers[&key].expected_local.is_empty(),
            "the local reader gets it at once"
        );
    }

    /// The commands that end production, and the model's update.
    pub fn end_production(&mut self, key: Key, ending: Ending) -> Vec<Op> {
        let (sentinel, _) = names(self.readers[&key].stream);
        let p = self.readers.get_mut(&key).unwrap().prod_mut();
        p.ending = Some(ending);
        let next = p.chunks.len() as u64;
        let registrations = std::mem::take(&mut p.registrations);
        // A durable producer marks the stream done once its end is in the log.
        let mut expected = Vec::new();
        if p.log.is_none() {
            expected.push(Op::Set {
                key: sentinel,
                value: Bytes::from_static(b"DONE"),
                expire_seconds: 24 * 3600,
            });
        }
        for reg in registrations {
            expected.push(publish(
                &reg.listener,
                final_message(ending, next, reg.token.as_deref()),
            ));
        }
        expected
    }

    pub fn finish(&mut self, key: Key, fail: bool) {
        let (node, handle) = key;
        let live = self.readers[&key].prod.is_some() && self.readers[&key].live_producer();
        let result = if fail {
            self.nodes[node].engine.fail(handle, SOURCE_ERROR)
        } else {
            self.nodes[node].engine.finish(handle)
        };
        assert_eq!(result.is_ok(), live, "finish on {key:?}: {result:?}");
        let expected = if live {
            self.end_production(key, if fail { Ending::Source } else { Ending::Clean })
        } else {
            Vec::new()
        };
        let ops = app_ops(self.drain_ops(node, Some(handle)));
        assert_eq!(
            ops, expected,
            "finish on {key:?}: SET DONE, then the end to each listener"
        );
    }

    // ----- the steps -----

    pub fn pick(&self, n: u8, filter: impl Fn(&Reader) -> bool) -> Option<Key> {
        let candidates: Vec<Key> = self
            .order
            .iter()
            .copied()
            .filter(|k| !self.nodes[k.0].killed && filter(&self.readers[k]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[usize::from(n) % candidates.len()])
    }
}

/// The commands of an application call or a pub/sub input that the model checks one
/// by one: all but durable mode's, which `crate::durable` checks.
pub fn app_ops(ops: Vec<Op>) -> Vec<Op> {
    ops.into_iter().filter(|op| !is_log_op(op)).collect()
}

/// One line about a network item, for traces.
pub fn describe(item: &Item) -> String {
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let s = s.replace(PREFIX, "");
        if s.len() > 80 {
            format!(
                "{}…",
                &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)]
            )
        } else {
            s
        }
    };
    match item {
        Item::Command(c) => match &c.op {
            Op::Publish { channel, message } => {
                format!("#{} PUBLISH {} {:?}", c.id.0, text(channel), text(message))
            }
            Op::XRead { streams, .. } => {
                let after: Vec<String> = streams
                    .iter()
                    .map(|(key, id)| format!("{} {id}", text(key)))
                    .collect();
                format!("#{} XREAD {}", c.id.0, after.join(" "))
            }
            Op::XRange {
                key, start, end, ..
            } => {
                format!("#{} XRANGE {} {start} {end}", c.id.0, text(key))
            }
            Op::XAdd {
                key, id, create, ..
            } => {
                let flag = if *create { "" } else { " NOMKSTREAM" };
                format!("#{} XADD {}{flag} {id}", c.id.0, text(key))
            }
            op => format!("#{} {} {}", c.id.0, op.name(), text(op.routing_key())),
        },
        Item::Reply(id, reply) => format!("reply #{} {reply:?}", id.0),
        Item::Message { channel, message } => {
            format!("message {} {:?}", text(channel), text(message))
        }
    }
}
