//! One fuzzer step on the harness: an application call, a delivery, time, or a fault.

use crate::harness::*;
use crate::model::*;
use crate::ops::{Forged, Step, Unit};
use bytes::Bytes;
use resumable_stream::sim::Item;
use resumable_stream::wire::{Extension, ResumeRequest};
use resumable_stream::{Op, Position, PubSubState};
use std::time::Duration;

impl Harness {
    pub fn step(&mut self, step: &Step) {
        let engine = match step {
            Step::Create { engine, .. }
            | Step::Resume { engine, .. }
            | Step::State { engine, .. }
            | Step::Cancel { engine, .. }
            | Step::LosePubSub { engine, .. }
            | Step::Interrupt { engine, .. }
            | Step::Restore { engine }
            | Step::ForgeRequest { engine, .. }
            | Step::ForgeRaw { engine, .. } => Some(*engine),
            _ => None,
        };
        if engine.is_some_and(|e| self.nodes[self.node(e)].killed) {
            return; // a process that died does nothing
        }
        match step {
            Step::Create {
                engine,
                stream,
                explicit,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let engine = &mut self.nodes[node].engine;
                let (handle, kind) = if *explicit {
                    (
                        engine.create_new_resumable_stream(STREAMS[stream]),
                        Kind::Create,
                    )
                } else {
                    (
                        engine.resumable_stream(STREAMS[stream], None),
                        Kind::Idempotent,
                    )
                };
                self.new_reader(node, handle, stream, kind, Position::Start);
            }
            Step::Resume {
                engine,
                stream,
                explicit,
                position,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let position = position.get();
                let engine = &mut self.nodes[node].engine;
                let (handle, kind) = if *explicit {
                    (
                        engine.resume_existing_stream(STREAMS[stream], position),
                        Kind::Resume,
                    )
                } else {
                    (
                        engine.resumable_stream(STREAMS[stream], position),
                        Kind::Idempotent,
                    )
                };
                self.new_reader(node, handle, stream, kind, position);
            }
            Step::State { engine, stream } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let handle = self.nodes[node].engine.has_existing_stream(STREAMS[stream]);
                self.new_reader(node, handle, stream, Kind::State, Position::Start);
            }
            Step::Cancel { engine, stream } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let handle = self.nodes[node].engine.cancel(STREAMS[stream]);
                self.new_reader(node, handle, stream, Kind::Cancel, Position::Start);
            }
            Step::Push { producer, chunk } => {
                let live = |r: &Reader| r.prod.is_some() && r.live_producer();
                if let Some(key) = self.pick(*producer, live) {
                    self.push(key, chunk.get());
                }
            }
            Step::Finish { producer, fail } => {
                let live = |r: &Reader| r.prod.is_some() && r.live_producer();
                if let Some(key) = self.pick(*producer, live) {
                    self.finish(key, *fail);
                }
            }
            Step::Misuse { handle, what } => {
                if let Some(key) = self.pick(*handle, |_| true) {
                    match what % 3 {
                        0 => self.push(key, Bytes::from_static(b"misuse")),
                        1 => self.finish(key, false),
                        _ => self.finish(key, true),
                    }
                }
            }
            Step::DropReader { reader } => {
                if let Some(key) = self.pick(*reader, |r| !r.dropped) {
                    self.nodes[key.0].engine.drop_reader(key.1);
                    let r = self.readers.get_mut(&key).unwrap();
                    r.dropped = true;
                    r.expected_local.clear();
                    let sent = self.drain(
                        key.0,
                        Ctx {
                            owner: Some(key.1),
                            chunk_message: false,
                        },
                    );
                    for command in sent {
                        assert!(
                            matches!(command.op, Op::Unsubscribe { .. } | Op::XRead { .. }),
                            "drop_reader sends {:?}",
                            command.op
                        );
                    }
                }
            }
            Step::Deliver { link } => {
                if let Some((node, link)) = self.pick_link(*link) {
                    self.deliver(node, link);
                }
            }
            Step::DeliverMany { link, count } => {
                for _ in 0..(count % 16) {
                    if let Some((node, link)) = self.pick_link(*link) {
                        self.deliver(node, link);
                    }
                }
            }
            Step::Settle => self.settle(4096),
            Step::Advance { ms } => self.advance(Duration::from_millis(u64::from(*ms % 2048))),
            Step::AdvanceLong { tenths } => {
                self.advance(Duration::from_millis(100 * u64::from(*tenths % 1024)))
            }
            Step::DropNext { link } => {
                if let Some((node, link)) = self.pick_link(*link) {
                    let item = self.net.pop(node, link).expect("a non-empty link");
                    let silent = match &item {
                        Item::Message { .. } => true,
                        Item::Command(c) => matches!(c.op, Op::Publish { .. }),
                        Item::Reply(..) => false,
                    };
                    // A command or reply lost without an error: a wait may never end.
                    let lost = !silent && !link.is_pubsub();
                    for stream in self.item_streams(node, &item) {
                        self.fault(stream, |f| {
                            f.lost |= lost;
                            if silent {
                                f.silent = true
                            } else {
                                f.other = true
                            }
                        });
                    }
                    self.lost_blocking_read(node, &item);
                }
            }
            Step::FailNext { link, error } => {
                if let Some((node, link)) = self.pick_link(*link) {
                    // A command never runs and its connection reports the error; a
                    // command that ran has its reply lost to an error, delivered now.
                    let item = self
                        .net
                        .fail_next(node, link, error.get(), self.now)
                        .expect("a non-empty link");
                    let (op, _) = self.item_info(node, &item);
                    let chunk_publish = op.as_ref().is_some_and(is_chunk_publish);
                    let message = matches!(item, Item::Message { .. });
                    for stream in self.item_streams(node, &item) {
                        self.fault(stream, |f| {
                            if message {
                                f.silent = true
                            } else if chunk_publish {
                                f.failed_publish = true
                            } else {
                                f.other = true
                            }
                        });
                    }
                    if let Item::Reply(..) = item {
                        self.deliver(node, link);
                    }
                }
            }
            Step::DeleteSentinel { stream } => {
                let stream = usize::from(*stream) % STREAMS.len();
                self.net.redis.delete(&names(stream).0);
                self.fault(Some(stream), |f| f.other = true);
            }
            Step::LosePubSub {
                engine,
                errors_first,
            } => self.drop_pubsub(self.node(*engine), PubSubState::Lost, *errors_first),
            // The pub/sub connection drops and the driver reconnects (until `Restore`).
            Step::Interrupt {
                engine,
                errors_first,
            } => self.drop_pubsub(self.node(*engine), PubSubState::Interrupted, *errors_first),
            Step::Restore { engine } => {
                let node = self.node(*engine);
                self.restore(node);
            }
            Step::ForgeRequest {
                engine,
                stream,
                listener,
                skip,
                unit,
                ext,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let listener_id = match listener {
                    Forged::Real(n) => {
                        let Some(key) = self.pick(*n, |r| r.listener.is_some()) else {
                            return;
                        };
                        let theirs = self.readers[&key].stream;
                        self.fault(Some(theirs), |f| f.wild = true);
                        self.fault(Some(stream), |f| f.wild = true);
                        self.readers[&key].listener.clone().unwrap()
                    }
                    Forged::Unknown(id) => {
                        if self.listener_owner.contains_key(id) {
                            return;
                        }
                        id.clone()
                    }
                };
                let request = ResumeRequest {
                    listener_id,
                    skip: *skip,
                    unit: unit.map(Unit::get),
                    ext: ext.map(|(token, from_chunk, cancel, seq)| Extension {
                        token: format!("{token:x}"),
                        from_chunk: from_chunk.map(u64::from),
                        cancel,
                        seq: u64::from(seq),
                    }),
                };
                if request.ext.as_ref().is_some_and(|e| e.cancel) {
                    // A forged cancel really cancels: readers then fail, as they should.
                    self.fault(Some(stream), |f| f.other = true);
                }
                self.request(node, stream, request.encode());
            }
            Step::ForgeRaw {
                engine,
                stream,
                bytes,
            } => {
                let node = self.node(*engine);
                let stream = usize::from(*stream) % STREAMS.len();
                let message = Bytes::from(bytes.clone());
                // Only garbage: forged requests are `ForgeRequest`'s business.
                if ResumeRequest::decode(&message).is_err() {
                    self.request(node, stream, message);
                }
            }
        }
    }
}
