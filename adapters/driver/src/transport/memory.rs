//! The in-process backend: the core's [`MemoryRedis`] behind a lock, shared by any
//! number of contexts (so that they behave like several instances on one Redis), with
//! messages delivered straight into each context's engine.
//!
//! Blocking reads (`XREAD ... BLOCK`) are served as Redis serves them: at once if one
//! of their streams has entries after the id read from; else the read parks, its
//! mailbox registered under the same lock as it looked (so no entry added between the
//! two goes unseen), and each `XADD` tells every parked read its key: the first to one
//! of the read's streams serves it, with that stream's new entries
//! ([`MemoryRedis::serve_blocked_read`]). The store never times a read out by itself:
//! the context's loop ends it at its `block_millis`, with nil
//! ([`Transport::times_out_blocking_reads`]).

use super::{Inbox, Transport};
use crate::mailbox::{mailbox, Sender};
use crate::sync::lock;
use crate::sync::{Arc, Mutex};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use resumable_stream::{ClientId, Command, MemoryRedis, Op, Reply, ReplyError};
use std::collections::HashMap;
use std::time::Instant;

/// An in-process Redis stand-in that several contexts can share.
///
/// Clones share one store.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    redis: MemoryRedis,
    inboxes: HashMap<ClientId, Inbox>,
    /// One per parked blocking read: told the key of every entry added (`None`: any
    /// key may have changed, the store having been changed by hand).
    parked: Vec<Sender<Option<Bytes>>>,
}

impl MemoryInner {
    /// Tells every parked read that `key` got an entry (`None`: that anything may
    /// have changed); forgets the reads that gave up (their loop timed them out).
    fn tell_parked(&mut self, key: Option<&Bytes>) {
        self.parked.retain(|read| read.send(key.cloned()).is_ok());
    }
}

impl MemoryBackend {
    /// A new, empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Runs `f` on the store, to inspect or change keys as an operator would (parked
    /// blocking reads then look again).
    pub fn with_store<T>(&self, f: impl FnOnce(&mut MemoryRedis) -> T) -> T {
        let mut inner = lock(&self.inner);
        let result = f(&mut inner.redis);
        inner.tell_parked(None);
        result
    }

    /// Publishes `message` on `channel` as another client would (`redis-cli PUBLISH`);
    /// returns how many subscribers received it.
    pub fn publish(&self, channel: impl Into<Bytes>, message: impl Into<Bytes>) -> i64 {
        let client = lock(&self.inner).redis.connect();
        let op = Op::Publish {
            channel: channel.into(),
            message: message.into(),
        };
        match self.run(client, &op) {
            Ok(Reply::Integer(n)) => n,
            _ => 0,
        }
    }

    /// A connection of one context to this store.
    pub fn connect(&self) -> MemoryConnection {
        let client = lock(&self.inner).redis.connect();
        MemoryConnection {
            backend: self.clone(),
            client,
        }
    }

    /// Runs the blocking read `op` (`XREAD`) as Redis does: answered at once if one of
    /// its streams has entries after the id read from; else parked until an `XADD` to
    /// one of them, and served that stream's new entries. Waits for ever: the caller
    /// bounds it.
    async fn blocking_read(&self, client: ClientId, op: &Op) -> Result<Reply, ReplyError> {
        let Op::XRead { count, streams, .. } = op else {
            return self.run(client, op);
        };
        let parked = {
            let mut inner = lock(&self.inner);
            // A read delivers no message.
            let (reply, _) = inner.redis.execute(Instant::now(), client, op);
            if reply != Ok(Reply::Nil) {
                return reply;
            }
            let (tell, told) = mailbox();
            inner.parked.retain(|read| !read.is_receiver_gone());
            inner.parked.push(tell);
            told
        };
        while let Some(change) = parked.recv().await {
            let mut inner = lock(&self.inner);
            let now = Instant::now();
            let served = match change {
                Some(key) => inner
                    .redis
                    .serve_blocked_read(now, &key, *count, streams)
                    .map(Ok),
                None => match inner.redis.execute(now, client, op).0 {
                    Ok(Reply::Nil) => None,
                    reply => Some(reply),
                },
            };
            if let Some(reply) = served {
                return reply;
            }
        }
        // The store keeps a parked read's sender until the read gives up: not reached.
        Ok(Reply::Nil)
    }

    fn run(&self, client: ClientId, op: &Op) -> Result<Reply, ReplyError> {
        let (reply, deliveries) = {
            let mut inner = lock(&self.inner);
            let (reply, deliveries) = inner.redis.execute(Instant::now(), client, op);
            if let (Op::XAdd { key, .. }, Ok(_)) = (op, &reply) {
                inner.tell_parked(Some(key));
            }
            let targets: Vec<_> = deliveries
                .into_iter()
                .filter_map(|(to, channel, message)| {
                    inner
                        .inboxes
                        .get(&to)
                        .map(|inbox| (inbox.clone(), channel, message))
                })
                .collect();
            (reply, targets)
        };
        // Delivered outside the store's lock: the receiving engine may publish in turn.
        for (inbox, channel, message) in deliveries {
            inbox.deliver(&channel, message);
        }
        reply
    }
}

/// One context's connection to a [`MemoryBackend`]: commands run at once, messages
/// reach the attached inbox synchronously.
pub struct MemoryConnection {
    backend: MemoryBackend,
    client: ClientId,
}

impl MemoryConnection {
    /// Routes this connection's pub/sub messages to `inbox`.
    pub fn attach(&self, inbox: Inbox) {
        lock(&self.backend.inner).inboxes.insert(self.client, inbox);
    }

    /// Runs one command.
    pub fn run(&self, op: &Op) -> Result<Reply, ReplyError> {
        self.backend.run(self.client, op)
    }

    /// Runs commands in order.
    pub fn execute(&self, commands: &[Command]) -> Vec<Result<Reply, ReplyError>> {
        commands.iter().map(|c| self.run(&c.op)).collect()
    }
}

impl Drop for MemoryConnection {
    fn drop(&mut self) {
        let mut inner = lock(&self.backend.inner);
        inner.inboxes.remove(&self.client);
        inner.redis.disconnect(self.client);
    }
}

impl Transport for MemoryConnection {
    fn attach(&self, inbox: Inbox) {
        MemoryConnection::attach(self, inbox);
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        Box::pin(std::future::ready(MemoryConnection::execute(
            self, commands,
        )))
    }

    fn pubsub<'a>(&'a self, commands: &'a [Command]) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
        let results = commands.iter().map(|c| self.run(&c.op).map(drop)).collect();
        Box::pin(std::future::ready(results))
    }

    fn blocking<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Reply, ReplyError>> {
        Box::pin(self.backend.blocking_read(self.client, &command.op))
    }

    fn times_out_blocking_reads(&self) -> bool {
        // A read waits here for data for ever: the loop answers nil at `block_millis`.
        false
    }

    fn sharded_pubsub(&self) -> bool {
        // The store has one shard: sharded pub/sub is pub/sub.
        true
    }
}
