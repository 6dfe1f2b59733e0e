//! A producer engine driven by hand, with a stand-in Redis that answers every command
//! at once: what the criterion benches and the allocation test measure. Included with
//! `#[path]` by `benches/core.rs` and `tests/allocations.rs`.

use bytes::Bytes;
use resumable_stream::wire::Names;
use resumable_stream::{Config, Engine, Event, Handle, Op, Reply, Role};
use std::time::Instant;

/// A producer of stream `bench` and the time its replies carry.
pub struct Rig {
    /// The engine, producing.
    pub engine: Engine,
    /// The producer's handle.
    pub handle: Handle,
    /// The (fixed) time replies are handed in at.
    pub now: Instant,
}

/// The reply Redis would give, for a stream that does not exist yet.
fn reply(op: &Op) -> Reply {
    match op {
        Op::Incr { .. } => Reply::Integer(1),
        Op::Get { .. } => Reply::Nil,
        Op::Publish { .. } | Op::SPublish { .. } => Reply::Integer(1),
        // SET, the (un)subscriptions, and any command a later engine adds.
        _ => Reply::Ok,
    }
}

/// Peerbench's chunk `i`: 64 ASCII bytes.
pub fn chunk(i: usize) -> Bytes {
    Bytes::from(format!(
        "{i:08}:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQR\n"
    ))
}

impl Rig {
    /// A live producer with `listeners` v1 listeners (skip 0, so each got the empty
    /// buffer as its catch-up).
    #[allow(dead_code)] // Each including target uses one of the two constructors.
    pub fn producer(listeners: usize) -> Rig {
        Rig::producer_with(listeners, false)
    }

    /// A live producer with `listeners` listeners, of ours (`extended`: each chunk goes
    /// to them framed with its index) or v1.
    pub fn producer_with(listeners: usize, extended: bool) -> Rig {
        let mut engine = Engine::new(Config::default().with_seed(7));
        let now = Instant::now();
        let handle = engine.resumable_stream("bench", None);
        let mut rig = Rig {
            engine,
            handle,
            now,
        };
        let mut started = false;
        rig.settle_with(|event| {
            started |= matches!(
                event,
                Event::Started {
                    role: Role::Producer,
                    ..
                }
            )
        });
        assert!(started, "the rig's stream did not start as producer");
        let request_channel = Names::new(rig.engine.config().key_prefix())
            .stream("bench")
            .request_channel;
        for i in 0..listeners {
            let request = if extended {
                format!(
                    r#"{{"listenerId":"listener-{i}","skipCharacters":0,"ext":1,"token":"{:032x}"}}"#,
                    i + 1
                )
            } else {
                format!(r#"{{"listenerId":"listener-{i}","skipCharacters":0}}"#)
            };
            rig.engine
                .handle_message(now, &request_channel, Bytes::from(request));
        }
        rig.settle();
        assert_eq!(rig.engine.listener_count(handle), Some(listeners));
        rig
    }

    /// Answers every command and takes every event; returns (commands, events).
    pub fn settle(&mut self) -> (usize, usize) {
        self.settle_with(|_| {})
    }

    /// [`settle`](Self::settle), showing each event to `seen`.
    pub fn settle_with(&mut self, mut seen: impl FnMut(&Event)) -> (usize, usize) {
        let (mut commands, mut events) = (0, 0);
        loop {
            let mut progressed = false;
            while let Some(command) = self.engine.poll_command() {
                progressed = true;
                commands += 1;
                let answer = reply(&command.op);
                self.engine.handle_reply(self.now, command.id, Ok(answer));
            }
            while let Some(event) = self.engine.poll_event() {
                progressed = true;
                events += 1;
                seen(&event);
            }
            if !progressed {
                return (commands, events);
            }
        }
    }
}
