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
//! - Whenever a node connection drops, the engine is told the pub/sub connection was
//!   interrupted, and restored once every master answers again (or lost after the
//!   reconnect window): it then subscribes every channel again (on its current
//!   owner) and its resumers ask again from what they have, so a message lost
//!   meanwhile costs nothing. Every `sunsubscribe` push is reported as a dropped
//!   subscription: the engine knows which of them it still wants, and subscribes
//!   those again.
//! - A master that dies is replaced by its replica once the cluster fails it over
//!   (after its `cluster-node-timeout`): meanwhile redis-rs retries the commands of its
//!   slots, refreshing the slot map, for up to the reconnect window (its overall
//!   response timeout), so a failover shorter than the window costs a wait, not an
//!   error.
//! - Blocking reads (`XREAD ... BLOCK`) go to the master owning their slot, each on a
//!   connection of a pool of that master's own, never on the multiplexed node
//!   connections ([`cluster_reads`](super::cluster_reads)).
//! - `rediss://` URLs connect every node over TLS, trusting the given roots or the
//!   system's.

use super::cluster_reads::{slot_ranges, ClusterReads};
use super::redis::{connection_failed, retry};
use super::wire::{connect_error, pipeline, replies, to_reply, to_reply_error};
use super::{wrong_connection, Inbox, Transport};
use crate::mailbox::{mailbox, Receiver, Sender};
use crate::runtime::Runtime;
use bytes::Bytes;
use futures_util::future::{self, BoxFuture, Either};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{PushInfo, PushKind, Value};
use resumable_stream::cluster::key_slot;
use resumable_stream::{Command, Error, Op, PubSubState, Reply, ReplyError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one request may wait for its reply, as for a single Redis.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where pushes go: messages and dropped subscriptions straight into the engine;
/// disconnections to the task that waits for the cluster and tells the engine.
struct Pushes {
    inbox: Mutex<Option<Inbox>>,
    interrupted: Sender<()>,
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
                // Ours or the server's (a slot moved): the engine tells them apart.
                let inbox = crate::sync::lock(&self.inbox).clone();
                if let (Some(inbox), Some(Value::BulkString(channel))) = (inbox, info.data.first())
                {
                    inbox.subscription_dropped(channel);
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
    /// How long the cluster may stay incomplete before what waits for it fails.
    reconnect_window: Duration,
    /// The slots whose last pipeline failed for want of a connection, and since when:
    /// the window counts from then, not anew for each batch behind it.
    failing: Mutex<HashMap<u16, Instant>>,
    /// Blocking reads, on connections of their own to each master.
    reads: ClusterReads,
    runtime: Arc<dyn Runtime>,
}

/// How long a slot's pipeline may try once its window is spent: one attempt.
const ONE_ATTEMPT: Duration = Duration::from_secs(1);

/// The longest pause between two of redis-rs's attempts at a request whose node is
/// away: short, so that a promoted replica is found soon after the failover.
const MAX_RETRY_PAUSE_MS: u64 = 1000;
/// The shortest such pause.
const MIN_RETRY_PAUSE_MS: u64 = 200;
/// The most attempts redis-rs may make at one request: its backoff computes
/// `2^attempt * 10` ms, which overflows (a panic in a debug build) past about 60.
const MAX_RETRIES: u128 = 50;

impl ClusterTransport {
    /// Connects to the cluster that `urls` (any of its nodes, `redis://host:port`, or
    /// `rediss://` for TLS) belong to; over TLS, trusting `root_certificates` (PEM)
    /// when given, else the system's roots. A node away is waited for up to
    /// `reconnect_window`.
    ///
    /// # Errors
    /// [`Error::Config`] when a URL or the certificates do not parse, or certificates
    /// come with a URL that is not `rediss://`; [`Error::Redis`] (`CONNECT`) when no
    /// node can be reached.
    pub async fn connect(
        urls: &[String],
        root_certificates: Option<&[u8]>,
        reconnect_window: Duration,
        runtime: Arc<dyn Runtime>,
    ) -> Result<ClusterTransport, Error> {
        let (interrupted, disconnections) = mailbox();
        let pushes = Arc::new(Pushes {
            inbox: Mutex::new(None),
            interrupted,
        });
        let sink = pushes.clone();
        // Enough attempts to span the window at the mean pause, up to redis-rs's
        // limit; the overall timeout is what ends them.
        let mean_pause = u128::from(MIN_RETRY_PAUSE_MS + MAX_RETRY_PAUSE_MS) / 2;
        let attempts = (reconnect_window.as_millis() / mean_pause + 1).min(MAX_RETRIES);
        let builder = redis::cluster::ClusterClientBuilder::new(urls.iter().map(String::as_str))
            .use_protocol(redis::ProtocolVersion::RESP3)
            .response_timeout(RESPONSE_TIMEOUT)
            .overall_response_timeout(Some(reconnect_window.max(RESPONSE_TIMEOUT)))
            .retries(u32::try_from(attempts).unwrap_or(u32::MAX))
            .min_retry_wait(MIN_RETRY_PAUSE_MS)
            .max_retry_wait(MAX_RETRY_PAUSE_MS)
            .push_sender(move |info: PushInfo| {
                sink.push(info);
                Ok::<(), std::convert::Infallible>(())
            });
        let builder = with_tls(builder, urls, root_certificates)?;
        let reads = ClusterReads::new(urls, root_certificates)?;
        let client = builder
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
            reconnect_window,
            failing: Mutex::new(HashMap::new()),
            reads,
            runtime,
        })
    }
}

/// The cluster client's TLS: `rediss://` URLs select it; `root_certificates`, given,
/// replace the system's roots, and then every URL must be `rediss://`.
fn with_tls(
    builder: redis::cluster::ClusterClientBuilder,
    urls: &[String],
    root_certificates: Option<&[u8]>,
) -> Result<redis::cluster::ClusterClientBuilder, Error> {
    #[cfg(feature = "tls")]
    if urls.iter().any(|url| super::wire::is_tls_url(url)) {
        super::wire::tls::use_default_provider();
    }
    let Some(roots) = root_certificates else {
        return Ok(builder);
    };
    for url in urls {
        super::wire::check_tls_url(url)?;
    }
    #[cfg(feature = "tls")]
    return Ok(builder.certs(super::wire::tls::certificates(roots)));
    #[cfg(not(feature = "tls"))]
    {
        let _ = (builder, roots);
        Err(Error::Config(
            "TLS root certificates need the `tls` feature of the driver crate".into(),
        ))
    }
}

/// `request`, or a connection error if it has not answered by `deadline`.
async fn until<T>(
    runtime: &dyn Runtime,
    deadline: Instant,
    request: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    let request = std::pin::pin!(request);
    match future::select(request, runtime.sleep_until(deadline)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the Redis Cluster did not answer within the reconnect window",
        ))),
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

/// `PING` to the master of every slot range `CLUSTER SLOTS` names, by its address:
/// succeeds once each shard's master answers. (A `PING` routed to all masters, or to a
/// slot's master, would succeed without the dead one: redis-rs answers from a replica
/// of the shard, or any node, while it cannot reach the master, and the slot map keeps
/// a dead master until its replica takes over.)
async fn ping_masters(mut connection: ClusterConnection) -> redis::RedisResult<Value> {
    for range in slot_ranges(&mut connection).await? {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: range.host,
            port: range.port,
        });
        connection
            .route_command(redis::cmd("PING"), routing)
            .await?;
    }
    Ok(Value::Okay)
}

impl Transport for ClusterTransport {
    fn attach(&self, inbox: Inbox) {
        *crate::sync::lock(&self.pushes.inbox) = Some(inbox.clone());
        let Some(disconnections) = crate::sync::lock(&self.disconnections).take() else {
            return;
        };
        let Some(closed) = inbox.close_signal() else {
            return;
        };
        let connection = self.connection.clone();
        let runtime = self.runtime.clone();
        let window = self.reconnect_window;
        self.runtime.spawn(Box::pin(async move {
            loop {
                let next = std::pin::pin!(disconnections.recv());
                let stop = std::pin::pin!(closed.recv());
                match future::select(next, stop).await {
                    Either::Left((Some(()), _)) => {}
                    _ => return,
                }
                log::warn!("resumable-stream: Redis Cluster pub/sub interrupted");
                inbox.pubsub_state(PubSubState::Interrupted);
                let deadline = Instant::now() + window;
                let recovered = std::pin::pin!(retry(&*runtime, deadline, || {
                    until(&*runtime, deadline, ping_masters(connection.clone()))
                }));
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
                    inbox.pubsub_state(PubSubState::Restored);
                } else {
                    log::warn!(
                        "resumable-stream: the Redis Cluster did not come back within {window:?}"
                    );
                    inbox.pubsub_state(PubSubState::Lost);
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
                let deadline = self.deadline_of(slot);
                async move {
                    let pipe = pipeline(&group);
                    let request = connection.route_pipeline(pipe, 0, group.len(), master_of(slot));
                    let result = until(&*self.runtime, deadline, request).await;
                    self.note(slot, &result);
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

    fn blocking<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<Reply, ReplyError>> {
        Box::pin(self.reads.read(
            &self.connection,
            command,
            &*self.runtime,
            self.reconnect_window,
        ))
    }

    fn pubsub<'a>(&'a self, commands: &'a [Command]) -> BoxFuture<'a, Vec<Result<(), ReplyError>>> {
        Box::pin(async move {
            // One at a time: sharded channels may each live on another shard.
            let mut results = Vec::with_capacity(commands.len());
            for command in commands {
                results.push(self.subscription(&command.op).await);
            }
            results
        })
    }

    fn cluster(&self) -> bool {
        true
    }

    fn sharded_pubsub(&self) -> bool {
        true
    }
}

impl ClusterTransport {
    /// Until when a pipeline of `slot` may wait for its node: the reconnect window
    /// from now, or from when the slot's node went away; one attempt past that.
    fn deadline_of(&self, slot: u16) -> Instant {
        let now = Instant::now();
        match crate::sync::lock(&self.failing).get(&slot) {
            Some(since) => (*since + self.reconnect_window).max(now + ONE_ATTEMPT),
            None => now + self.reconnect_window.max(RESPONSE_TIMEOUT),
        }
    }

    /// Remembers whether `slot`'s node answered.
    fn note(&self, slot: u16, result: &redis::RedisResult<Vec<Value>>) {
        let mut failing = crate::sync::lock(&self.failing);
        if connection_failed(result) {
            failing.entry(slot).or_insert_with(Instant::now);
        } else {
            failing.remove(&slot);
        }
    }

    /// Runs one (un)subscription; redis-rs routes it (a sharded channel to the shard
    /// owning its slot). A subscription is tried again while its node is away or
    /// answers that the slot is elsewhere (a failover or a slot move under way,
    /// redis-rs refreshing its slot map), for up to the reconnect window; one that
    /// still finds no node then is a pub/sub connection lost for good, and the engine
    /// is told so (its resumers end with a typed error rather than wait for a
    /// message that cannot come).
    async fn subscription(&self, op: &Op) -> Result<(), ReplyError> {
        let subscribing = matches!(op, Op::Subscribe { .. } | Op::SSubscribe { .. });
        let unsubscribing = matches!(op, Op::Unsubscribe { .. } | Op::SUnsubscribe { .. });
        if !subscribing && !unsubscribing {
            return Err(wrong_connection(op));
        }
        let deadline = Instant::now() + self.reconnect_window;
        loop {
            let attempt = until(
                &*self.runtime,
                deadline.max(Instant::now() + ONE_ATTEMPT),
                async {
                    let mut connection = self.connection.clone();
                    match op {
                        Op::Subscribe { channel } => connection.subscribe(channel.as_ref()).await,
                        Op::Unsubscribe { channel } => {
                            connection.unsubscribe(channel.as_ref()).await
                        }
                        Op::SSubscribe { channel } => connection.ssubscribe(channel.as_ref()).await,
                        Op::SUnsubscribe { channel } => {
                            connection.sunsubscribe(channel.as_ref()).await
                        }
                        // Refused above.
                        _ => Ok(()),
                    }
                },
            );
            let error = match attempt.await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let elsewhere = matches!(
                error.code(),
                Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
            );
            let away = error.code().is_none();
            if subscribing && (elsewhere || away) && Instant::now() < deadline {
                let pause = Instant::now() + Duration::from_millis(100);
                self.runtime.sleep_until(pause.min(deadline)).await;
                continue;
            }
            if subscribing && away {
                log::warn!(
                    "resumable-stream: a Redis Cluster subscription found no node within {:?}",
                    self.reconnect_window
                );
                let inbox = crate::sync::lock(&self.pushes.inbox).clone();
                if let Some(inbox) = inbox {
                    inbox.pubsub_state(PubSubState::Lost);
                }
            }
            return Err(to_reply_error(&error));
        }
    }
}
