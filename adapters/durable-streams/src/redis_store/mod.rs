//! The Redis store: each stream's data is resumable-stream's durable log
//! (`{prefix}:rs:log:{id}`), its protocol metadata a hash in the log's Cluster slot, and
//! every operation one Lua script, so that several servers on one Redis stay ordered
//! and exactly once. See the crate's README for the layout and the cost per operation.

mod keys;
mod ops;
mod reply;
mod scripts;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind, Value};
use resumable_stream::wire::log::read_after;
use resumable_stream::wire::Names;

use crate::store::{
    Append, Appended, BoxFuture, Create, Created, Deleted, From, Head, Read, Store, StoreError,
};
use keys::{stream_keys, StreamKeys};
use reply::{expiry_args, Reply};
use scripts::{Lua, Scripts};

/// How long a command may take before it fails (a script copies a fork's chunks).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle blocking connections kept for long-polls and SSE (one Redis).
const IDLE_BLOCKING: usize = 16;
/// How often a wait on a Cluster polls the stream's tail.
const CLUSTER_POLL: Duration = Duration::from_millis(50);
/// At most this many sources unreferenced in a row (a chain of forks).
const MAX_CASCADE: usize = 1024;

/// One Redis: commands on a reconnecting multiplexed connection, blocking reads on
/// dedicated ones.
struct Single {
    commands: ConnectionManager,
    client: redis::Client,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

enum Conn {
    Single(Box<Single>),
    Cluster(ClusterConnection),
}

struct Inner {
    conn: Conn,
    names: Names,
    scripts: Scripts,
}

/// Streams on Redis, in resumable-stream's durable log format: a stream made by
/// `resumable_stream` in durable mode reads as a Durable Stream, and one made over the
/// protocol is a durable log `resumable_stream` readers can follow.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
    foreign_content_type: Arc<str>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.names.prefix())
            .field("cluster", &matches!(self.inner.conn, Conn::Cluster(_)))
            .finish()
    }
}

fn store_error(e: RedisError) -> StoreError {
    StoreError(e.to_string())
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://`), its keys under `prefix` (the key
    /// prefix of the resumable-stream services sharing the streams).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let commands = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(store_error)?;
        let single = Single {
            commands,
            client,
            idle: Mutex::new(Vec::new()),
        };
        Ok(Self::with(Conn::Single(Box::new(single)), prefix))
    }

    /// A store on the Redis Cluster reached through any of `urls`.
    pub async fn connect_cluster(urls: &[String], prefix: &str) -> Result<RedisStore, StoreError> {
        let client = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(store_error)?;
        let conn = client.get_async_connection().await.map_err(store_error)?;
        Ok(Self::with(Conn::Cluster(conn), prefix))
    }

    fn with(conn: Conn, prefix: &str) -> RedisStore {
        RedisStore {
            inner: Arc::new(Inner {
                conn,
                names: Names::new(prefix),
                scripts: Scripts::new(),
            }),
            foreign_content_type: Arc::from("application/octet-stream"),
        }
    }

    /// The content type a log made by `resumable_stream` (a log without the protocol's
    /// metadata) is served with; `application/octet-stream` unless set.
    pub fn with_foreign_content_type(mut self, content_type: impl Into<String>) -> RedisStore {
        self.foreign_content_type = Arc::from(content_type.into());
        self
    }

    fn cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        match &self.inner.conn {
            Conn::Single(single) => cmd.query_async(&mut single.commands.clone()).await,
            Conn::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }

    fn keys(&self, id: &str) -> Result<StreamKeys, StoreError> {
        let keys = stream_keys(&self.inner.names, id);
        if self.cluster() && !keys.colocated {
            return Err(StoreError(format!(
                "stream id {id:?} cannot be served on a Redis Cluster: its log key holds a '}}' outside a hash tag"
            )));
        }
        Ok(keys)
    }

    /// Runs `script` on a stream's keys with `args` after the shared first argument.
    async fn eval(
        &self,
        script: &Lua,
        keys: &StreamKeys,
        args: &[&[u8]],
    ) -> Result<Reply, StoreError> {
        let build = |first: &str, body: &str| {
            let mut cmd = redis::cmd(first);
            cmd.arg(body);
            if self.cluster() {
                cmd.arg(2).arg(&keys.meta).arg(keys.log.as_ref());
            } else {
                cmd.arg(3)
                    .arg(&keys.meta)
                    .arg(keys.log.as_ref())
                    .arg(keys.lease.as_ref());
            }
            cmd.arg(&*self.foreign_content_type);
            for arg in args {
                cmd.arg(*arg);
            }
            cmd
        };
        let value = match self.query(&build("EVALSHA", &script.sha)).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.query(&build("EVAL", &script.code)).await
            }
            other => other,
        }
        .map_err(store_error)?;
        let reply = Reply::new(value)?;
        Ok(reply)
    }

    /// Unreferences `source` and, as each source whose last fork went is removed, its
    /// own source in turn. Best effort: a failure leaves a source soft-deleted.
    async fn release(&self, mut source: Option<String>) {
        for _ in 0..MAX_CASCADE {
            let Some(id) = source.take() else { return };
            let Ok(keys) = self.keys(&id) else { return };
            match self.eval(&self.inner.scripts.unref, &keys, &[]).await {
                Ok(reply) => source = reply.unref(),
                Err(_) => return,
            }
        }
    }

    /// Runs a script and the unreferences it asks for.
    async fn run(
        &self,
        script: &Lua,
        keys: &StreamKeys,
        args: &[&[u8]],
    ) -> Result<Reply, StoreError> {
        let reply = self.eval(script, keys, args).await?;
        self.release(reply.unref()).await;
        Ok(reply)
    }
}
