//! The in-process backend: the core's [`MemoryRedis`] behind a lock, shared by any
//! number of contexts (so that they behave like several instances on one Redis), with
//! messages delivered straight into each context's engine.

use super::{Inbox, Transport};
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
}

impl MemoryBackend {
    /// A new, empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Runs `f` on the store, to inspect or change keys as an operator would.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut MemoryRedis) -> T) -> T {
        f(&mut lock(&self.inner).redis)
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

    fn run(&self, client: ClientId, op: &Op) -> Result<Reply, ReplyError> {
        let (reply, deliveries) = {
            let mut inner = lock(&self.inner);
            let (reply, deliveries) = inner.redis.execute(Instant::now(), client, op);
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

    fn sharded_pubsub(&self) -> bool {
        // The store has one shard: sharded pub/sub is pub/sub.
        true
    }
}
