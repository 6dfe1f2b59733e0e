//! The harness's side of the network: delivering what the fuzzer picks (Redis runs a
//! command, an engine gets a reply or a message) with the model's checks, and the
//! faults that concern a whole connection or one message.

use crate::durable::entry_of;
use crate::harness::*;
use crate::model::*;
use crate::ops::{MessageFault, SubscriptionFault};
use crate::trace;
use bytes::Bytes;
use resumable_stream::sim::{Item, Link};
use resumable_stream::wire::log::{LogEnding, LogEntry};
use resumable_stream::wire::{Control, ErrorKind};
use resumable_stream::{Command, CommandId, Connection, Op, PubSubState, Reply, ReplyError};

impl Harness {
    /// The first non-empty link at or after `n`, in the cycle of every node's six links
    /// (commands, pub/sub, blocking; up then down). The scan starts at the `n`th of the
    /// command and pub/sub links, as when each node had only those four: a run
    /// without blocking reads picks exactly as it did then, and a blocking link is
    /// picked when the links before it in the cycle are empty (or by
    /// `DurableStep::Blocking`).
    pub fn pick_link(&self, n: u8) -> Option<(usize, Link)> {
        let nodes = self.nodes.len();
        let old = usize::from(n) % (nodes * 4);
        let start = old / 4 * 6 + old % 4;
        let total = nodes * 6;
        (0..total)
            .map(|i| (start + i) % total)
            .map(|i| (i / 6, Link::ALL[i % 6]))
            .find(|&(node, link)| !self.nodes[node].killed && self.net.len(node, link) > 0)
    }

    pub fn deliver(&mut self, node: usize, link: Link) {
        let Some(item) = self.net.pop(node, link) else {
            return;
        };
        trace!("  deliver e{node} {link:?}: {}", describe(&item));
        if self.nodes[node].killed {
            return; // to a process that died
        }
        match item {
            Item::Command(command) => self.execute(node, command),
            Item::Reply(id, reply) => self.reply(node, id, reply),
            Item::Message { channel, message } => self.message(node, channel, message),
        }
    }

    /// Redis runs a command (unless its connection is down): its reply goes down the
    /// same connection, the messages it publishes down each subscriber's pub/sub link.
    pub fn execute(&mut self, node: usize, command: Command) {
        let request = match (&command.op, parse_name(command.op.routing_key())) {
            (Op::Publish { .. }, Name::Request(stream)) => Some(stream),
            _ => None,
        };
        // Durable mode: whether Redis takes an append, and what.
        let append = match (&command.op, parse_name(command.op.routing_key())) {
            (
                Op::XAdd {
                    key, id, fields, ..
                },
                Name::Log(stream),
            ) => {
                let before = self.net.redis.stream_last_id(self.now, key);
                let writer = self
                    .commands
                    .get(&(node, command.id))
                    .and_then(|c| c.writer);
                Some((stream, key.clone(), *id, fields.clone(), before, writer))
            }
            _ => None,
        };
        // Durable mode: a read of the lease that finds none (a tail's check, a reader's
        // probe) is what justifies a gone end.
        let lease_read = match (&command.op, parse_name(command.op.routing_key())) {
            (Op::Get { key }, Name::Lease(stream)) => {
                Some(stream).filter(|_| self.net.redis.get_raw(self.now, key).is_none())
            }
            _ => None,
        };
        let executed = self.net.execute(node, command, self.now, self.now);
        if let (Some(stream), true) = (lease_read, executed.ran) {
            if !self.logs[stream].lapsed_on.contains(&node) {
                self.logs[stream].lapsed_on.push(node);
            }
        }
        if let Some((stream, key, id, fields, before, writer)) = append {
            let after = self.net.redis.stream_last_id(self.now, &key);
            let existed = {
                let log = &self.logs[stream];
                log.writer.is_some() || log.end.is_some()
            };
            if executed.ran && before.is_none() && after.is_none() && existed {
                trace!(
                    "    the log of {} is gone (expired): not made anew",
                    STREAMS[stream]
                );
                self.logs[stream].expired = true;
            }
            if executed.ran && after == Some(id) && before.is_none_or(|b| b < id) {
                if before.is_none() && existed {
                    // Made anew: only in a new life of the stream id, once the old log
                    // expired: by the first append of a producer that never wrote this
                    // log, or by a tail's gone end while the sentinel says the new life
                    // is active (its producer died before its first append); never by
                    // the old writer, nor a tail for a stream that is done.
                    let old = &self.logs[stream];
                    let sentinel = crate::model::names(stream).0;
                    let active = self
                        .net
                        .redis
                        .get_raw(self.now, &sentinel)
                        .is_some_and(|v| v.as_ref() != b"DONE");
                    let gone_end = fields.first().is_some_and(|f| f.as_ref() == b"end");
                    // Or the log's own first append, held up in the network for longer
                    // than the replay window after an earlier attempt of it had made the
                    // log: it makes the log's start again, never a middle.
                    let first_again =
                        writer.is_some() && old.writer == writer && old.first_id == Some(id);
                    assert!(
                        writer.is_some_and(|w| old.writer != Some(w))
                            || writer.is_none() && gone_end && active
                            || first_again,
                        "{}: an append made the log anew after it had expired or was lost",
                        STREAMS[stream]
                    );
                    trace!(
                        "    a new log for {}: a new life of the id",
                        STREAMS[stream]
                    );
                    let producers = old.producers.clone();
                    let lapsed_on = old.lapsed_on.clone();
                    self.logs[stream] = crate::durable::StreamLog {
                        producers,
                        lapsed_on,
                        ..Default::default()
                    };
                }
                let entry = entry_of(id, &fields).expect("checked when sent");
                if let LogEntry::End {
                    ending: LogEnding::Gone,
                    ..
                } = entry
                {
                    let log = &self.logs[stream];
                    assert!(
                        log.lapsed_on.contains(&node) || log.wild,
                        "{}: engine {node} wrote a gone end, but none of its reads of the \
                         lease found it lapsed",
                        STREAMS[stream]
                    );
                }
                trace!("    appended to the log of {}: {entry:?}", STREAMS[stream]);
                self.on_appended(stream, writer, entry);
            }
        }
        if let Some(stream) = request {
            if executed.deliveries > 1 {
                // Two engines hear requests for one stream: two producers may answer.
                self.fault(Some(stream), |f| f.wild = true);
            }
        }
    }

    pub fn reply(&mut self, node: usize, id: CommandId, reply: Result<Reply, ReplyError>) {
        let (owner, deliver, retire, op) = match self.commands.get(&(node, id)) {
            Some(info) => (info.owner, info.deliver, info.retire, Some(info.op.clone())),
            None => (None, None, None, None),
        };
        // A PUBLISH to a registered listener: 0 receivers means it left; an error
        // removes an extended listener and tells it.
        let mut expected = None;
        if let (Some((pkey, serial)), Some(Op::Publish { channel, .. })) = (deliver, &op) {
            let p = self.readers.get_mut(&pkey).unwrap().prod_mut();
            if let Some(index) = p.registrations.iter().position(|r| r.serial == serial) {
                match &reply {
                    Ok(Reply::Integer(0)) => {
                        p.registrations.remove(index);
                        expected = Some(Vec::new());
                    }
                    Err(_) => {
                        // An extended listener is told `lost` (once) and gets nothing
                        // more until it asks again; a v1 listener goes on as it is.
                        let reg = &mut p.registrations[index];
                        expected = Some(match (reg.token.clone(), reg.lost) {
                            (Some(token), false) => {
                                reg.lost = true;
                                let lost = Control::Error {
                                    kind: ErrorKind::Lost,
                                    message: "a message to this listener could not be published"
                                        .to_owned(),
                                    next: None,
                                };
                                vec![Op::Publish {
                                    channel: channel.clone(),
                                    message: lost.encode(&token),
                                }]
                            }
                            _ => Vec::new(),
                        });
                    }
                    Ok(_) => expected = Some(Vec::new()),
                }
            }
        }
        // (A failed re-SUBSCRIBE leaves a producer as it is: it only cannot hear new
        // requests. Nothing changes in the model.)
        self.nodes[node].engine.handle_reply(self.now, id, reply);
        if let Some(pkey) = retire {
            // Its request channel is left once this reply arrives.
            if let Some(p) = self.readers.get_mut(&pkey).unwrap().prod.as_mut() {
                p.routed = false;
            }
        }
        let ops = app_ops(self.drain_ops(node, owner));
        if let Some(expected) = expected {
            assert_eq!(ops, expected, "the reply to a PUBLISH to a listener");
        }
    }

    pub fn message(&mut self, node: usize, channel: Bytes, message: Bytes) {
        match parse_name(&channel) {
            Name::Request(stream) => self.request(node, stream, message),
            Name::Chunk(listener) => {
                let owner = self
                    .listener_owner
                    .get(&listener)
                    .filter(|k| k.0 == node)
                    .map(|k| k.1);
                self.nodes[node]
                    .engine
                    .handle_message(self.now, &channel, message);
                let sent = self.drain(
                    node,
                    Ctx {
                        owner,
                        chunk_message: true,
                    },
                );
                for command in sent {
                    let fits = match &command.op {
                        Op::Unsubscribe { channel: c } => *c == channel,
                        // A tail that waited for a lane joins the next read.
                        Op::XRead { .. } => true,
                        // Asking again after `lost`.
                        Op::Publish { channel: c, .. } => {
                            matches!(parse_name(c), Name::Request(_))
                        }
                        _ => false,
                    };
                    assert!(
                        fits,
                        "a chunk message makes a resumer send {:?}",
                        command.op
                    );
                }
            }
            _ => panic!("a message on a channel nobody subscribes to"),
        }
    }

    /// Duplicates or drops a pub/sub message on its way to an engine.
    pub fn message_fault(&mut self, fault: &MessageFault) {
        let (MessageFault::Duplicate { engine, nth, .. } | MessageFault::Drop { engine, nth }) =
            fault;
        let node = self.node(*engine);
        if self.nodes[node].killed {
            return;
        }
        let messages: Vec<(usize, Bytes)> = self
            .net
            .items(node, Link::PubSubDown)
            .enumerate()
            .filter_map(|(i, item)| match item {
                Item::Message { channel, .. } => Some((i, channel.clone())),
                _ => None,
            })
            .collect();
        if messages.is_empty() {
            return;
        }
        let (at, channel) = messages[usize::from(*nth) % messages.len()].clone();
        let stream = self.stream_of(&channel);
        match fault {
            MessageFault::Duplicate { later, .. } => {
                let len = self.net.len(node, Link::PubSubDown);
                let later = usize::from(*later) % (len - at);
                self.net.duplicate(node, Link::PubSubDown, at, later);
                self.fault(stream, |f| f.duplicated = true);
            }
            MessageFault::Drop { .. } => {
                self.net.remove(node, Link::PubSubDown, at);
                self.fault(stream, |f| f.silent = true);
            }
        }
    }

    /// The server drops one subscription of an engine, which its driver reports
    /// (`handle_subscription_dropped`): what is published on that channel until the
    /// engine subscribes again is lost, as in an interruption of that channel alone.
    pub fn subscription_dropped(&mut self, fault: &SubscriptionFault) {
        let node = self.node(fault.engine);
        if self.nodes[node].killed {
            return;
        }
        let channels: Vec<(usize, Bytes)> = self
            .order
            .iter()
            .filter(|k| k.0 == node)
            .filter_map(|k| {
                let r = &self.readers[k];
                if r.prod.as_ref().is_some_and(|p| p.routed) {
                    Some((r.stream, names(r.stream).1))
                } else if r.finals == 0 {
                    r.listener.as_deref().map(|l| (r.stream, chunk_channel(l)))
                } else {
                    None
                }
            })
            .collect();
        if channels.is_empty() {
            return;
        }
        let (stream, channel) = channels[usize::from(fault.nth) % channels.len()].clone();
        self.fault(Some(stream), |f| f.interrupted = true);
        self.net.drop_subscription(node, &channel, self.now);
        self.nodes[node]
            .engine
            .handle_subscription_dropped(self.now, &channel);
        self.drain(node, NO_CTX);
    }

    /// The pub/sub connection of `node` drops: lost for good (`Lost`), or interrupted
    /// until [`restore`](Self::restore) (`Interrupted`). What was in flight on it comes
    /// back as errors, before or after the engine is told (`errors_first`); messages in
    /// flight are lost; Redis forgets the subscriptions.
    pub fn drop_pubsub(&mut self, node: usize, state: PubSubState, errors_first: bool) {
        let interrupted = state == PubSubState::Interrupted;
        if self.nodes[node].killed || interrupted && self.nodes[node].interrupted {
            return;
        }
        let touched: Vec<usize> = self
            .readers
            .iter()
            .filter(|(k, _)| k.0 == node)
            .map(|(_, r)| r.stream)
            .collect();
        self.any_fault = true;
        for s in touched {
            self.fault(Some(s), |f| {
                if interrupted {
                    f.interrupted = true
                } else {
                    f.silent = true
                }
            });
        }
        if interrupted {
            self.nodes[node].interrupted = true;
            let error = ReplyError::Connection("the pub/sub connection is down".into());
            self.net.set_down(node, Connection::PubSub, Some(error));
        }
        if !errors_first {
            self.nodes[node].engine.handle_pubsub_state(self.now, state);
            self.drain(node, NO_CTX);
        }
        let text = if interrupted {
            "the pub/sub connection dropped"
        } else {
            "the pub/sub connection was lost"
        };
        for id in self.net.drop_connection(node, Connection::PubSub) {
            self.reply(node, id, Err(ReplyError::Connection(text.into())));
        }
        if errors_first {
            self.nodes[node].engine.handle_pubsub_state(self.now, state);
            self.drain(node, NO_CTX);
        }
    }

    /// The pub/sub connection of `node` is back (if it was interrupted): commands sent
    /// while it was down have failed by now.
    pub fn restore(&mut self, node: usize) {
        if self.nodes[node].killed || !self.nodes[node].interrupted {
            return;
        }
        while self.net.len(node, Link::PubSubUp) > 0 {
            let error = ReplyError::Connection("the pub/sub connection is down".into());
            self.net.fail_next(node, Link::PubSubUp, error, self.now);
        }
        self.nodes[node].interrupted = false;
        self.net.set_down(node, Connection::PubSub, None);
        self.nodes[node]
            .engine
            .handle_pubsub_state(self.now, PubSubState::Restored);
        self.drain(node, NO_CTX);
    }
}
