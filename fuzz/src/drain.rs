//! Draining the engines: every command an engine sends goes onto its link, seen by the
//! model on its way (`on_command`: who subscribes, who publishes to whom, what each
//! request says, durable mode's commands); every event is checked (`crate::events`).

use crate::durable::{is_log_op, ProdLog};
use crate::harness::*;
use crate::model::*;
use crate::trace;
use resumable_stream::sim::Item;
use resumable_stream::wire::ResumeRequest;
use resumable_stream::{Command, Durable, Handle, Op};

impl Harness {
    /// What `node` sent for the stream `owner` produces (no chunk message in play):
    /// the operations, drained, for a step to compare with what the model expects.
    pub fn drain_ops(&mut self, node: usize, owner: Option<Handle>) -> Vec<Op> {
        let ctx = Ctx {
            owner,
            chunk_message: false,
        };
        self.drain(node, ctx).into_iter().map(|c| c.op).collect()
    }

    /// Moves every command of `node` onto its links and checks every event. Returns the
    /// commands, for the caller's checks.
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
        assert!(
            self.nodes[node].engine.stats().unmatched_replies <= self.unmatched_allowed[node],
            "a reply the engine did not expect"
        );
        self.forget_removed_producers(node);
        sent
    }

    pub fn on_command(&mut self, node: usize, command: &Command, ctx: Ctx) {
        let mut deliver = None;
        let mut retire = None;
        let writer = if is_log_op(&command.op) {
            self.on_log_command(node, command, ctx)
        } else {
            None
        };
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
                let limit = self.nodes[node]
                    .durable
                    .as_ref()
                    .and_then(Durable::max_log_bytes);
                r.prod = Some(Prod {
                    routed: true,
                    log: r.lease_token.as_ref().map(|_| ProdLog {
                        limit,
                        ..ProdLog::default()
                    }),
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
                // A durable reader that found no log and no lease resumes over pub/sub,
                // before it started only.
                assert!(
                    !(r.log_reader && r.any_event),
                    "a log reader that had started turns to pub/sub"
                );
                r.log_reader = false;
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
                writer,
            },
        );
    }
}
