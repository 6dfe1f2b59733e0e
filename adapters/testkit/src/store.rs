//! The store a test's contexts share: a private redis-server, the in-memory backend, or
//! a custom publisher/subscriber store; and raw access to it, as an operator has.

use crate::custom::CustomStore;
use crate::redis_cluster::{ClusterOptions, RedisCluster};
use crate::redis_server::RedisServer;
use crate::setup::{Backend, Setup};
use bytes::Bytes;
use resumable_stream::{Config, PubSub};
use resumable_stream_driver::MemoryBackend;
use std::time::Instant;

/// The `cluster-node-timeout` of [`Store::cluster_replicated`]: as low as a loaded
/// 2-core machine allows without failing nodes that are merely slow (Redis's default
/// is 15 s; managed services use seconds too).
pub const FAILOVER_NODE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(2000);

/// One shared store that several contexts ("server instances") use.
pub enum Store {
    /// The in-process backend.
    Memory(MemoryBackend),
    /// A private redis-server.
    Redis(RedisServer),
    /// The application's own publisher and subscriber.
    Custom(CustomStore),
    /// A private Redis Cluster, and the pub/sub its contexts use.
    Cluster(RedisCluster, PubSub),
}

impl Store {
    /// A fresh in-memory store.
    pub fn memory() -> Store {
        Store::Memory(MemoryBackend::new())
    }

    /// A fresh redis-server.
    pub fn redis() -> Store {
        Store::Redis(RedisServer::start())
    }

    /// A fresh redis-server as a managed Redis serves: TLS only, certificates of the
    /// test CA (which the contexts are told to trust), a password on the `default`
    /// user, the URL in the shape Upstash and Vercel KV hand out.
    pub fn tls() -> Store {
        Store::Redis(RedisServer::start_tls())
    }

    /// How a context reaches this store, with `config`.
    pub fn setup(&self, config: Config) -> Setup {
        match self {
            Store::Memory(memory) => Setup::new(config, Backend::Memory(memory.clone())),
            Store::Custom(custom) => Setup::new(config, Backend::Custom(custom.clone())),
            Store::Redis(server) => {
                let setup = Setup::url(server.url(), config);
                match server.root_certificates() {
                    Some(pem) => setup.trusting(pem),
                    None => setup,
                }
            }
            Store::Cluster(cluster, pubsub) => {
                let setup = Setup::new(config, Backend::Cluster(cluster.urls(), *pubsub));
                match cluster.root_certificates() {
                    Some(pem) => setup.trusting(pem),
                    None => setup,
                }
            }
        }
    }

    /// A fresh three-master Redis Cluster, its contexts on sharded pub/sub.
    pub fn cluster() -> Store {
        Store::Cluster(RedisCluster::start(3), PubSub::Sharded)
    }

    /// A fresh three-master Redis Cluster with a replica per master that fails a dead
    /// master over after [`FAILOVER_NODE_TIMEOUT`], its contexts on sharded pub/sub.
    pub fn cluster_replicated() -> Store {
        let options = ClusterOptions {
            replicated: true,
            node_timeout: Some(FAILOVER_NODE_TIMEOUT),
            ..ClusterOptions::masters(3)
        };
        Store::Cluster(RedisCluster::start_with(options), PubSub::Sharded)
    }

    /// A fresh three-master Redis Cluster serving TLS only (`tls-cluster yes`), its
    /// contexts on sharded pub/sub, trusting the test CA.
    pub fn cluster_tls() -> Store {
        let options = ClusterOptions {
            tls: true,
            ..ClusterOptions::masters(3)
        };
        Store::Cluster(RedisCluster::start_with(options), PubSub::Sharded)
    }

    /// A fresh three-master Redis Cluster, its contexts on classic pub/sub.
    pub fn cluster_classic() -> Store {
        Store::Cluster(RedisCluster::start(3), PubSub::Classic)
    }

    /// A fresh custom store.
    pub fn custom() -> Store {
        Store::Custom(CustomStore::default())
    }

    /// `SET key value`.
    pub fn set(&self, key: &str, value: &str) {
        match self {
            Store::Memory(memory) => {
                memory.with_store(|store| store.set_raw(key.to_owned(), value.to_owned()))
            }
            Store::Redis(server) => {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query(&mut server.connection())
                    .expect("SET");
            }
            Store::Custom(store) => store.set_raw(key, value),
            Store::Cluster(cluster, _) => {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .query(&mut cluster.connection_for(key.as_bytes()))
                    .expect("SET");
            }
        }
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        match self {
            Store::Memory(memory) => {
                memory.with_store(|store| store.get_raw(Instant::now(), key.as_bytes()))
            }
            Store::Redis(server) => redis::cmd("GET")
                .arg(key)
                .query::<Option<Vec<u8>>>(&mut server.connection())
                .expect("GET")
                .map(Bytes::from),
            Store::Custom(store) => store.get_raw(key),
            Store::Cluster(cluster, _) => redis::cmd("GET")
                .arg(key)
                .query::<Option<Vec<u8>>>(&mut cluster.connection_for(key.as_bytes()))
                .expect("GET")
                .map(Bytes::from),
        }
    }

    /// How long `key` has left to live (`PTTL`), when the store keeps expiries (the
    /// custom store ignores them: `None`). `Some(None)`: the key has no expiry.
    pub fn ttl(&self, key: &str) -> Option<Option<std::time::Duration>> {
        let millis: i64 = match self {
            Store::Memory(memory) => {
                let now = Instant::now();
                return Some(
                    memory
                        .with_store(|store| store.expiry(now, key.as_bytes()))
                        .map(|at| at.saturating_duration_since(now)),
                );
            }
            Store::Custom(_) => return None,
            Store::Redis(server) => redis::cmd("PTTL")
                .arg(key)
                .query(&mut server.connection())
                .expect("PTTL"),
            Store::Cluster(cluster, _) => redis::cmd("PTTL")
                .arg(key)
                .query(&mut cluster.connection_for(key.as_bytes()))
                .expect("PTTL"),
        };
        // -1: no expiry; -2: no such key (treated as no expiry: the callers check the
        // value first).
        Some(
            u64::try_from(millis)
                .ok()
                .map(std::time::Duration::from_millis),
        )
    }

    /// `PUBLISH channel message` (`SPUBLISH` on a sharded cluster); the number of
    /// receivers.
    pub fn publish(&self, channel: &str, message: &[u8]) -> i64 {
        match self {
            Store::Memory(memory) => memory.publish(channel.to_owned(), message.to_vec()),
            Store::Redis(server) => redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query(&mut server.connection())
                .expect("PUBLISH"),
            Store::Custom(store) => store.publish_raw(channel, message),
            Store::Cluster(cluster, pubsub) => {
                let command = if *pubsub == PubSub::Sharded {
                    "SPUBLISH"
                } else {
                    "PUBLISH"
                };
                redis::cmd(command)
                    .arg(channel)
                    .arg(message)
                    .query(&mut cluster.connection_for(channel.as_bytes()))
                    .expect(command)
            }
        }
    }

    /// How many entries the Redis Stream `key` holds (`XLEN`), `None` when the store
    /// has no streams (the custom store).
    pub fn stream_len(&self, key: &str) -> Option<usize> {
        match self {
            Store::Memory(memory) => {
                memory.with_store(|store| store.stream_len(Instant::now(), key.as_bytes()))
            }
            Store::Custom(_) => None,
            Store::Redis(server) => redis::cmd("XLEN")
                .arg(key)
                .query(&mut server.connection())
                .ok(),
            Store::Cluster(cluster, _) => redis::cmd("XLEN")
                .arg(key)
                .query(&mut cluster.connection_for(key.as_bytes()))
                .ok(),
        }
    }

    /// Deletes the entries of the Redis Stream `key` below `first_kept`, as an
    /// operator's `XTRIM key MINID first_kept` does.
    pub fn trim_log_before(&self, key: &str, first_kept: resumable_stream::StreamId) {
        let trim = || {
            let mut cmd = redis::cmd("XTRIM");
            cmd.arg(key).arg("MINID").arg(first_kept.to_string());
            cmd
        };
        match self {
            Store::Memory(memory) => {
                memory.with_store(|store| store.trim_stream_before(key.as_bytes(), first_kept));
            }
            Store::Custom(_) => {}
            Store::Redis(server) => {
                let _: i64 = trim().query(&mut server.connection()).expect("XTRIM");
            }
            Store::Cluster(cluster, _) => {
                let _: i64 = trim()
                    .query(&mut cluster.connection_for(key.as_bytes()))
                    .expect("XTRIM");
            }
        }
    }

    /// How many clients are blocked in a command (`INFO clients`' `blocked_clients`,
    /// summed over a cluster's nodes); `None` for stores that are not Redis.
    pub fn blocked_clients(&self) -> Option<u64> {
        let count = |conn: &mut redis::Connection| -> u64 {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query(conn)
                .expect("INFO clients");
            info.lines()
                .find_map(|line| line.strip_prefix("blocked_clients:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        match self {
            Store::Memory(_) | Store::Custom(_) => None,
            Store::Redis(server) => Some(count(&mut server.connection())),
            Store::Cluster(cluster, _) => Some(
                (0..cluster.len())
                    .map(|i| count(&mut cluster.connection(i)))
                    .sum(),
            ),
        }
    }

    /// The Redis Cluster, when the store is one.
    pub fn redis_cluster(&mut self) -> Option<&mut RedisCluster> {
        match self {
            Store::Cluster(cluster, _) => Some(cluster),
            _ => None,
        }
    }

    /// The redis-server, when the store is one.
    pub fn redis_server(&mut self) -> Option<&mut RedisServer> {
        match self {
            Store::Redis(server) => Some(server),
            _ => None,
        }
    }
}
