//! Redis Cluster over redis-rs's async cluster connection (RESP3): commands routed by
//! the slot of their key or channel, pub/sub classic or sharded, as the engine's
//! [`PubSub`](resumable_stream::PubSub) setting says.
//!
//! - Commands: a batch is split by slot ([`key_slot`]); each slot's commands go as one
//!   pipeline to the master owning that slot, in the engine's order, all slots at once.
//!   A reply that redirects (`MOVED`, `ASK`) or asks to retry (`TRYAGAIN`,
//!   `CLUSTERDOWN`) is retried alone through redis-rs, which follows the redirect and
//!   refreshes its slot map.
//! - Pub/sub: `SSUBSCRIBE` goes to the shard owning the channel's slot, classic
//!   `SUBSCRIBE` to any node (a cluster broadcasts `PUBLISH`); messages (`message`,
//!   `smessage`) arrive as RESP3 pushes. redis-rs tracks every subscription and
//!   re-establishes it after a reconnect; but when a slot moves (resharding, failover)
//!   the old owner drops its sharded subscriptions with a `sunsubscribe` push, and
//!   redis-rs forgets them.
//! - Whenever a node connection drops, or a shard drops a sharded subscription the
//!   engine still wants, the engine is told the pub/sub connection was interrupted,
//!   and restored once every master answers again (or lost after
//!   [`RECONNECT_WINDOW`]): it then subscribes every channel again (on its current
//!   owner) and its resumers ask again from what they have, so a message lost
//!   meanwhile costs nothing.

use crate::mailbox::{mailbox, Receiver, Sender};
use crate::redis_aio::{retry, Hooks, RECONNECT_WINDOW};
use crate::redis_wire::{connect_error, pipeline, replies, to_reply, to_reply_error};
use crate::transport::{AsyncTransport, Inbox};
use bytes::Bytes;
use futures_util::future::{self, BoxFuture, Either};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{PushInfo, PushKind, Value};
use resumable_stream::cluster::key_slot;
use resumable_stream::{Command, Error, Reply, ReplyError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one request may wait for its reply, as for a single Redis.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where pushes go: messages straight into the engine; disconnections, and sharded
/// subscriptions the server dropped, to the task that tells the engine.
struct Pushes {
    inbox: Mutex<Option<Inbox>>,
    interrupted: Sender<()>,
    /// The sharded channels the engine wants: a `sunsubscribe` push for one of them
    /// came from the server (its slot moved to another shard), not from us.
    wanted: Mutex<HashSet<Vec<u8>>>,
}

impl Pushes {
    fn push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                let mut data = info.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(message))) =
                    (data.next(), data.next())
                else {
                    return;
                };
                let inbox = crate::sync::lock(&self.inbox).clone();
                if let Some(inbox) = inbox {
                    inbox.deliver(&channel, Bytes::from(message));
                }
            }
            PushKind::Disconnection => {
                let _ = self.interrupted.send(());
            }
            PushKind::SUnsubscribe => {
                let dropped = matches!(info.data.first(), Some(Value::BulkString(channel))
                    if crate::sync::lock(&self.wanted).contains(channel));
                if dropped {
                    log::warn!("resumable-stream: a shard dropped a subscription (slot moved)");
                    let _ = self.interrupted.send(());
                }
            }
            _ => {}
        }
    }
}

/// A Redis Cluster through one redis-rs async cluster connection.
pub struct ClusterTransport {
    connection: ClusterConnection,
    pushes: Arc<Pushes>,
    disconnections: Mutex<Option<Receiver<()>>>,
    hooks: Arc<Hooks>,
}

impl ClusterTransport {
    /// Connects to the cluster that `urls` (any of its nodes, `redis://host:port`)
    /// belong to.
    ///
    /// # Errors
    /// [`Error::Config`] when a URL does not parse; [`Error::Redis`] (`CONNECT`) when
    /// no node can be reached.
    pub async fn connect(urls: &[String], hooks: Hooks) -> Result<ClusterTransport, Error> {
        let (interrupted, disconnections) = mailbox();
        let pushes = Arc::new(Pushes {
            inbox: Mutex::new(None),
            interrupted,
            wanted: Mutex::new(HashSet::new()),
        });
        let sink = pushes.clone();
        let client = redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .use_protocol(redis::ProtocolVersion::RESP3)
            .response_timeout(RESPONSE_TIMEOUT)
            .push_sender(move |info: PushInfo| {
                sink.push(info);
                Ok::<(), std::convert::Infallible>(())
            })
            .build()
            .map_err(|e| Error::Config(format!("invalid Redis Cluster URLs: {e}")))?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(|e| connect_error(&e))?;
        Ok(ClusterTransport {
            connection,
            pushes,
            disconnections: Mutex::new(Some(disconnections)),
            hooks: Arc::new(hooks),
        })
    }
}

/// The route of everything on `slot`: its master.
fn master_of(slot: u16) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master))
}

/// Whether a reply says the command did not run where it was sent and may run again.
fn redirected(reply: &Result<Reply, ReplyError>) -> bool {
    matches!(reply, Err(ReplyError::Server(text))
        if ["MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"].iter().any(|p| text.starts_with(p)))
}

/// `PING` to every master: succeeds once every shard answers.
async fn ping_masters(mut connection: ClusterConnection) -> redis::RedisResult<Value> {
    let routing = RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllMasters,
        Some(ResponsePolicy::AllSucceeded),
    ));
    connection.route_command(redis::cmd("PING"), routing).await
}

impl AsyncTransport for ClusterTransport {
    fn attach(&self, inbox: Inbox) {
        *crate::sync::lock(&self.pushes.inbox) = Some(inbox.clone());
        let Some(disconnections) = crate::sync::lock(&self.disconnections).take() else {
            return;
        };
        let Some(closed) = inbox.close_signal() else {
            return;
        };
        let connection = self.connection.clone();
        let hooks = self.hooks.clone();
        (self.hooks.spawn)(Box::pin(async move {
            loop {
                let next = std::pin::pin!(disconnections.recv());
                let stop = std::pin::pin!(closed.recv());
                match future::select(next, stop).await {
                    Either::Left((Some(()), _)) => {}
                    _ => return,
                }
                log::warn!("resumable-stream: Redis Cluster pub/sub interrupted");
                inbox.connection_interrupted();
                let recovered = std::pin::pin!(retry(&hooks, || ping_masters(connection.clone())));
                let stop = std::pin::pin!(closed.recv());
                let back = match future::select(recovered, stop).await {
                    Either::Left((back, _)) => back,
                    // The context closed while waiting: nobody to tell.
                    Either::Right(_) => return,
                };
                // Drops that happened while waiting are covered by this recovery.
                while let Ok(Some(())) = disconnections.try_recv() {}
                if back.is_some() {
                    log::info!("resumable-stream: every Redis Cluster master answers again");
                    inbox.connection_restored();
                } else {
                    log::warn!(
                        "resumable-stream: the Redis Cluster did not come back within {:?}",
                        RECONNECT_WINDOW
                    );
                    inbox.connection_lost();
                }
            }
        }));
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        Box::pin(async move {
            // Each slot's commands, in the engine's order, and where their replies go.
            let mut slots: HashMap<u16, (Vec<Command>, Vec<usize>)> = HashMap::new();
            for (index, command) in commands.iter().enumerate() {
                let group = slots.entry(key_slot(command.op.routing_key())).or_default();
                group.0.push(command.clone());
                group.1.push(index);
            }
            let batches = slots.into_iter().map(|(slot, (group, indices))| {
                let mut connection = self.connection.clone();
                async move {
                    let pipe = pipeline(&group);
                    let result = connection
                        .route_pipeline(pipe, 0, group.len(), master_of(slot))
                        .await;
                    let group_replies = replies(result, group.len());
                    (slot, group, indices, group_replies)
                }
            });
            let mut out: Vec<Result<Reply, ReplyError>> = Vec::with_capacity(commands.len());
            out.resize(
                commands.len(),
                Err(ReplyError::Connection("no reply".into())),
            );
            for (slot, group, indices, group_replies) in future::join_all(batches).await {
                for ((command, index), reply) in group.iter().zip(indices).zip(group_replies) {
                    out[index] = if redirected(&reply) {
                        // redis-rs follows the redirect for a single command.
                        let cmd = pipeline(std::slice::from_ref(command))
                            .cmd_iter()
                            .next()
                            .cloned()
                            .unwrap_or_else(|| redis::cmd("PING"));
                        let routing = RoutingInfo::SingleNode(master_of(slot));
                        match self.connection.clone().route_command(cmd, routing).await {
                            Ok(value) => to_reply(value),
                            Err(error) => Err(to_reply_error(&error)),
                        }
                    } else {
                        reply
                    };
                }
            }
            out
        })
    }

    fn subscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        let mut connection = self.connection.clone();
        Box::pin(async move {
            connection
                .subscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }

    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        let mut connection = self.connection.clone();
        Box::pin(async move {
            connection
                .unsubscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }

    fn ssubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        crate::sync::lock(&self.pushes.wanted).insert(channel.to_vec());
        let mut connection = self.connection.clone();
        Box::pin(async move {
            // Right after a slot moved, redis-rs may still send to the old owner: the
            // `MOVED` makes it refresh its slot map, and the next attempt goes right.
            let started = std::time::Instant::now();
            loop {
                match connection.ssubscribe(channel.as_ref()).await {
                    Err(error)
                        if matches!(
                            error.code(),
                            Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
                        ) && started.elapsed() < RECONNECT_WINDOW =>
                    {
                        (self.hooks.sleep)(Duration::from_millis(50)).await;
                    }
                    result => return result.map_err(|e| to_reply_error(&e)),
                }
            }
        })
    }

    fn sunsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        crate::sync::lock(&self.pushes.wanted).remove(channel.as_ref());
        let mut connection = self.connection.clone();
        Box::pin(async move {
            connection
                .sunsubscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }
}
