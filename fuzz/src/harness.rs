//! The engine model's harness: two or three engines on the simulated network of
//! `resumable_stream::sim::Net`, the model beside them, and the application's calls
//! (`new_reader`, `push`, `finish`) with the commands each must cause.

use crate::model::*;
use crate::ops::{Grace, Heartbeat, Input};
use crate::trace;
use bytes::Bytes;
use resumable_stream::sim::{Item, Net};
use resumable_stream::wire::{Control, Incoming, ResumeRequest};
use resumable_stream::{Command, CommandId, Config, Engine, Handle, Op, Position, Role, SkipUnit};
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
}

pub struct CommandInfo {
    pub op: Op,
    pub owner: Option<Handle>,
    /// A `PUBLISH` to a registered listener: its producer and registration serial.
    pub deliver: Option<(Key, u64)>,
    /// An `UNSUBSCRIBE` of a request channel: the producer leaving it.
    pub retire: Option<Key>,
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
}

impl Harness {
    pub fn new(input: &Input) -> Harness {
        let mut net = Net::new();
        let count = if input.three_engines { 3 } else { 2 };
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
                net.add_node();
                Node {
                    engine: Engine::new(config),
                    unit,
                    extensions: setup.extensions,
                    max_buffer,
                    heartbeat,
                    interrupted: false,
                }
            })
            .collect();
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
            Name::Sentinel(s) | Name::Request(s) => Some(s),
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

    // ----- draining the engines -----

    /// Moves every command of `node` onto its links and checks every event. Returns the
    /// commands, for the caller's checks.
    /// What `node` sent for the stream `owner` produces (no chunk message in play):
    /// the operations, drained, for a step to compare with what the model expects.
    pub fn drain_ops(&mut self, node: usize, owner: Option<Handle>) -> Vec<Op> {
        let ctx = Ctx {
            owner,
            chunk_message: false,
        };
        self.drain(node, ctx).into_iter().map(|c| c.op).collect()
    }

    pub fn drain(&mut self, node: usize, ctx: Ctx) -> Vec<Command> {
        let mut sent = Vec::new();
        while let Some(command) = self.nodes[node].engine.poll_command() {
            trace!(
                "    command e{node}: {}",
                describe(&Item::Command(command.clone()))
            );
            self.on_command(node, &command, ctx);
            self.net.send(node, command.clone(), self.now);
            sent.push(command);
        }
        while let Some(event) = self.nodes[node].engine.poll_event() {
            trace!("    event e{node}: {event:?}");
            self.on_event(node, event, ctx);
        }
        if let Some(deadline) = self.nodes[node].engine.poll_timeout() {
            assert!(deadline > self.now, "a deadline that is already due");
        }
        assert_eq!(
            self.nodes[node].engine.stats().unmatched_replies,
            0,
            "a reply the engine did not expect"
        );
        sent
    }

    pub fn on_command(&mut self, node: usize, command: &Command, ctx: Ctx) {
        let mut deliver = None;
        let mut retire = None;
        match (&command.op, parse_name(command.op.routing_key())) {
            (Op::Set { expire_seconds, .. }, _) => assert!(*expire_seconds >= 1),
            (Op::Subscribe { .. }, Name::Request(_)) if ctx.owner.is_none() => {
                // Subscribing again after a reconnect: a producer's own channel.
            }
            (Op::Subscribe { .. }, Name::Chunk(listener)) if ctx.owner.is_none() => {
                assert!(
                    self.listener_owner
                        .get(&listener)
                        .is_some_and(|k| k.0 == node),
                    "a resubscription to a channel of another engine"
                );
            }
            (Op::Subscribe { .. }, Name::Request(stream)) => {
                let owner = ctx.owner.expect("a request channel SUBSCRIBE has an owner");
                if let Some(other) = self.routed_producer(node, stream) {
                    panic!("{owner:?} subscribes to the request channel {other:?} owns");
                }
                let r = self.readers.get_mut(&(node, owner)).expect("owner");
                assert_eq!(r.stream, stream);
                assert!(matches!(r.kind, Kind::Idempotent | Kind::Create));
                assert!(r.prod.is_none(), "one producer per handle");
                r.prod = Some(Prod {
                    routed: true,
                    ..Prod::default()
                });
            }
            (Op::Unsubscribe { .. }, Name::Request(stream)) => {
                retire = self.routed_producer(node, stream);
            }
            (Op::Subscribe { .. }, Name::Chunk(listener)) => {
                let owner = ctx.owner.expect("a chunk channel SUBSCRIBE has an owner");
                let r = self.readers.get_mut(&(node, owner)).expect("owner");
                assert!(matches!(
                    r.kind,
                    Kind::Idempotent | Kind::Resume | Kind::Cancel
                ));
                assert!(r.listener.is_none(), "one listener id per resumer");
                r.listener = Some(listener.clone());
                let previous = self.listener_owner.insert(listener, (node, owner));
                assert!(previous.is_none(), "listener ids are unique");
            }
            (Op::Publish { message, .. }, Name::Chunk(listener)) => {
                // The producer whose input this is, else (a heartbeat) whichever of
                // this engine's producers has that listener.
                let own = ctx.owner.and_then(|h| {
                    let p = self.readers.get(&(node, h))?.prod.as_ref()?;
                    let reg = p.registrations.iter().find(|r| r.listener == listener)?;
                    Some(((node, h), reg.serial))
                });
                deliver = own.or_else(|| {
                    ctx.owner
                        .is_none()
                        .then(|| self.registration_of(node, &listener, message))
                        .flatten()
                });
            }
            (Op::Publish { message, .. }, Name::Request(stream)) => {
                let request = ResumeRequest::decode(message).expect("our requests decode");
                let owner = *self
                    .listener_owner
                    .get(&request.listener_id)
                    .expect("a request from a resumer of ours");
                assert_eq!(owner.0, node, "a request for another engine's listener");
                self.check_request_sent(node, owner, stream, request);
            }
            _ => {}
        }
        self.commands.insert(
            (node, command.id),
            CommandInfo {
                op: command.op.clone(),
                owner: ctx.owner,
                deliver,
                retire,
            },
        );
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
            },
        );
        self.order.push(key);
        if self.nodes[node].interrupted {
            self.fault(Some(stream), |f| f.interrupted = true);
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
        let result = self.nodes[node].engine.push_chunk(handle, chunk.clone());
        assert_eq!(result.is_ok(), live, "push_chunk on {key:?}: {result:?}");
        let mut expected = Vec::new();
        if live {
            let cap = self.nodes[node].max_buffer;
            let r = self.readers.get_mut(&key).unwrap();
            let dropped = r.dropped;
            let p = r.prod_mut();
            p.chunks.push(chunk.clone());
            p.held_bytes += chunk.len();
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
        let ops = self.drain_ops(node, Some(handle));
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
        let mut expected = vec![Op::Set {
            key: sentinel,
            value: Bytes::from_static(b"DONE"),
            expire_seconds: 24 * 3600,
        }];
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
        let ops = self.drain_ops(node, Some(handle));
        assert_eq!(
            ops, expected,
            "finish on {key:?}: SET DONE, then the end to each listener"
        );
    }

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

    pub fn fire(&mut self) {
        for node in 0..self.nodes.len() {
            self.nodes[node].engine.handle_timeout(self.now);
            self.drain(node, NO_CTX);
            if let Some(deadline) = self.nodes[node].engine.poll_timeout() {
                assert!(deadline > self.now, "handle_timeout left a due deadline");
            }
        }
    }

    // ----- the steps -----

    pub fn pick(&self, n: u8, filter: impl Fn(&Reader) -> bool) -> Option<Key> {
        let candidates: Vec<Key> = self
            .order
            .iter()
            .copied()
            .filter(|k| filter(&self.readers[k]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[usize::from(n) % candidates.len()])
    }

    /// Every producer finishes; the network drains while time runs; then the liveness
    /// checks.
    pub fn epilogue(&mut self) {
        for node in 0..self.nodes.len() {
            self.restore(node);
        }
        let live_producers = |h: &Harness| -> Vec<Key> {
            h.order
                .iter()
                .copied()
                .filter(|k| h.readers[k].prod.is_some() && h.readers[k].live_producer())
                .collect()
        };
        for _round in 0..256 {
            for key in live_producers(self) {
                self.finish(key, false);
            }
            self.settle(100_000);
            if self.pick_link(0).is_some() {
                break;
            }
            if !live_producers(self).is_empty() {
                continue;
            }
            let next = self
                .nodes
                .iter_mut()
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            match next {
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
            op => format!("#{} {} {}", c.id.0, op.name(), text(op.routing_key())),
        },
        Item::Reply(id, reply) => format!("reply #{} {reply:?}", id.0),
        Item::Message { channel, message } => {
            format!("message {} {:?}", text(channel), text(message))
        }
    }
}
