//! How every driver's context is configured and connected, written once: the
//! engine's [`Config`] and the backend (Redis, a Redis Cluster, the in-process store,
//! the application's own transport), then [`Builder::build`], which each driver
//! finishes in its own way (an async driver returns a future of its context, the
//! blocking driver the context itself): see [`Face`].
//!
//! Redis backends also take how they connect: TLS roots for `rediss://` (feature
//! `tls`) and the reconnect window, one policy for the single-Redis and the Cluster
//! transports.

use crate::context::Context;
use crate::runtime::Runtime;
use crate::transport::{CustomTransport, MemoryBackend, Publisher, Subscriber, Transport};
use resumable_stream::{Config, Error, PubSub};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// How a driver finishes a [`Builder`]: what `build()` returns, from the builder's
/// [`Parts`].
pub trait Face: Sized {
    /// What [`Builder::build`] returns: a future of the driver's context, or the
    /// context itself.
    type Built;

    /// Connects `parts` (for Redis) and starts the context's loops.
    fn build(parts: Parts) -> Self::Built;
}

enum Backend {
    FromEnv,
    #[cfg(feature = "redis")]
    Url(String),
    #[cfg(feature = "redis")]
    Client(redis::Client),
    #[cfg(feature = "redis")]
    Connections(redis::aio::MultiplexedConnection, redis::aio::PubSub),
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
    Memory(MemoryBackend),
    Transport(Arc<dyn Transport>),
}

/// Builds a context: the configuration and the backend. The default backend is Redis
/// from the environment (`REDIS_CLUSTER_URLS`, else `REDIS_URL`, else `KV_URL`).
#[must_use = "a builder does nothing until built"]
pub struct Builder<F: Face> {
    parts: Parts,
    face: PhantomData<F>,
}

/// What a [`Builder`] gathered, for its driver's [`Face::build`].
pub struct Parts {
    config: Config,
    backend: Backend,
    /// PEM root certificates trusted for `rediss://` instead of the system's.
    root_certificates: Option<Vec<u8>>,
    reconnect_window: Duration,
}

/// The default [`Builder::reconnect_window`]: 30 s, so that a managed Redis's failover
/// (a replica promoted and the endpoint moved to it, typically 10 to 30 s) is ridden
/// out rather than failing every reader; a Redis that stays away fails them after it.
pub(crate) const DEFAULT_RECONNECT_WINDOW: Duration = Duration::from_secs(30);

impl<F: Face> Default for Builder<F> {
    fn default() -> Self {
        Builder {
            parts: Parts {
                config: Config::default(),
                backend: Backend::FromEnv,
                root_certificates: None,
                reconnect_window: DEFAULT_RECONNECT_WINDOW,
            },
            face: PhantomData,
        }
    }
}

impl<F: Face> Builder<F> {
    /// A builder with the default configuration and Redis from the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole engine configuration (prefix, TTL, timeouts, skip unit, pub/sub).
    pub fn config(mut self, config: Config) -> Self {
        self.parts.config = config;
        self
    }

    /// The key prefix (default `resumable-stream`).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.parts.config = self.parts.config.with_key_prefix(prefix);
        self
    }

    /// Classic (default) or sharded pub/sub: see [`PubSub`]. Sharded pub/sub needs a
    /// backend that has it (a Redis Cluster, or the in-process store): `build()`
    /// refuses any other with [`Error::Config`].
    pub fn pubsub(mut self, pubsub: PubSub) -> Self {
        self.parts.config = self.parts.config.with_pubsub(pubsub);
        self
    }

    /// Redis at `url`: `redis://host:port/db`, or `rediss://user:password@host:port`
    /// over TLS (feature `tls`, on by default), as managed Redis services hand it out.
    #[cfg(feature = "redis")]
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.parts.backend = Backend::Url(url.into());
        self
    }

    /// Redis through an existing redis-rs client; the context opens its two
    /// connections, and opens them again when they drop.
    #[cfg(feature = "redis")]
    pub fn redis_client(mut self, client: redis::Client) -> Self {
        self.parts.backend = Backend::Client(client);
        self
    }

    /// Redis through existing connections: one for commands, one for pub/sub. Without
    /// a client the context cannot reopen them: a dropped pub/sub connection is lost
    /// for good.
    #[cfg(feature = "redis")]
    pub fn redis_connections(
        mut self,
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
    ) -> Self {
        self.parts.backend = Backend::Connections(commands, pubsub);
        self
    }

    /// A Redis Cluster, reached through any of its nodes (`redis://host:port`): keys
    /// and channels are routed by slot. Combine with [`PubSub::Sharded`] (see
    /// [`pubsub`](Self::pubsub)) so that pub/sub scales with the shards; classic
    /// pub/sub (the default) stays available for the npm and PyPI libraries.
    #[cfg(feature = "cluster")]
    pub fn redis_cluster<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.parts.backend = Backend::Cluster(urls.into_iter().map(Into::into).collect());
        self
    }

    /// Trusts these root certificates (PEM, one or more) for `rediss://` instead of the
    /// system's: for a Redis whose certificate a private CA signed. Applies to
    /// [`redis_url`](Self::redis_url), [`redis_cluster`](Self::redis_cluster) and the
    /// URLs from the environment; without it the system's roots are used (honouring
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR`). `build()` refuses it
    /// ([`Error::Config`]) with a `redis://` URL, a URL that is not TLS, or a backend
    /// that is not given by URL (a `redis::Client` carries its own TLS settings).
    #[cfg(feature = "tls")]
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.parts.root_certificates = Some(pem.into());
        self
    }

    /// How long a Redis backend keeps reconnecting a dropped connection before it gives
    /// up (default 30 s, long enough for a managed Redis's failover: a replica
    /// promoted and the endpoint moved to it typically take 10 to 30 s); the same
    /// policy for a single Redis and a Cluster, counted from the drop. Meanwhile
    /// commands wait for the connection (a Cluster's for the new owner of their slot)
    /// and resumers of ours wait for pub/sub to come back, then ask again from what
    /// they have; past the window, the waiting commands fail
    /// with [`Error::Redis`] and every resumer of the context ends with it. A resumer
    /// also ends, sooner, with [`Error::ProducerGone`] when its producer is silent for
    /// three heartbeat intervals (6 s by default): raise
    /// [`Config::with_heartbeat_interval`] with the window to ride out longer outages.
    #[cfg(feature = "redis")]
    pub fn reconnect_window(mut self, window: Duration) -> Self {
        self.parts.reconnect_window = window;
        self
    }

    /// The in-process backend; contexts built on clones of one [`MemoryBackend`] see
    /// each other's streams.
    pub fn memory(mut self, backend: MemoryBackend) -> Self {
        self.parts.backend = Backend::Memory(backend);
        self
    }

    /// A backend of your own that pipelines commands.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.parts.backend = Backend::Transport(transport);
        self
    }

    /// A backend of your own in the deployed libraries' shape: a publisher for
    /// commands and a subscriber for pub/sub.
    pub fn publisher_subscriber(
        mut self,
        publisher: impl Publisher,
        subscriber: impl Subscriber,
    ) -> Self {
        let transport = CustomTransport::new(publisher, subscriber);
        self.parts.backend = Backend::Transport(Arc::new(transport));
        self
    }

    /// Connects (for Redis) and starts the context: a future of it on an async
    /// driver, the context itself on the blocking driver.
    ///
    /// # Errors
    /// [`Error::Config`] without a usable Redis URL, or for sharded pub/sub on a
    /// backend without it; [`Error::Redis`] when Redis cannot be reached.
    pub fn build(self) -> F::Built {
        F::build(self.parts)
    }
}

impl Parts {
    /// Connects (for Redis) and starts a context whose loops run on `runtime`.
    ///
    /// # Errors
    /// As [`Builder::build`].
    pub async fn connect(self, runtime: Arc<dyn Runtime>) -> Result<Context, Error> {
        let Parts {
            config,
            backend,
            root_certificates,
            reconnect_window,
        } = self;
        let by_url = match &backend {
            Backend::FromEnv => true,
            #[cfg(feature = "redis")]
            Backend::Url(_) => true,
            #[cfg(feature = "cluster")]
            Backend::Cluster(_) => true,
            _ => false,
        };
        if root_certificates.is_some() && !by_url {
            return Err(Error::Config(
                "TLS root certificates apply to a Redis given by URL (redis_url, \
                 redis_cluster, the environment); a redis::Client or connections carry \
                 their own TLS settings"
                    .into(),
            ));
        }
        #[cfg(feature = "redis")]
        let redis = Redis {
            root_certificates: root_certificates.as_deref(),
            reconnect_window,
            runtime: &runtime,
        };
        #[cfg(not(feature = "redis"))]
        let _ = reconnect_window;
        let transport: Arc<dyn Transport> = match backend {
            Backend::Memory(memory) => Arc::new(memory.connect()),
            Backend::Transport(transport) => transport,
            #[cfg(feature = "redis")]
            Backend::Connections(commands, pubsub) => Arc::new(
                crate::transport::redis::RedisTransport::new(commands, pubsub, runtime.clone()),
            ),
            #[cfg(feature = "redis")]
            Backend::FromEnv => match redis_cluster_urls_from_env() {
                #[cfg(feature = "cluster")]
                Some(urls) => redis.cluster(&urls).await?,
                #[cfg(not(feature = "cluster"))]
                Some(_) => {
                    return Err(Error::Config(
                        "REDIS_CLUSTER_URLS is set, but this build has no Redis Cluster \
                         support (feature `cluster`)"
                            .into(),
                    ))
                }
                None => redis.url(&redis_url_from_env()?).await?,
            },
            #[cfg(feature = "cluster")]
            Backend::Cluster(urls) => redis.cluster(&urls).await?,
            #[cfg(feature = "redis")]
            Backend::Url(url) => redis.url(&url).await?,
            #[cfg(feature = "redis")]
            Backend::Client(client) => redis.client(&client).await?,
            #[cfg(not(feature = "redis"))]
            Backend::FromEnv => {
                redis_url_from_env()?;
                return Err(Error::Config("this build has no Redis support".into()));
            }
        };
        if config.pubsub() == PubSub::Sharded && !transport.sharded_pubsub() {
            return Err(Error::Config(
                "sharded pub/sub needs a backend that has it (a Redis Cluster, or the \
                 in-memory store); this one has classic pub/sub only"
                    .into(),
            ));
        }
        // On a Redis Cluster, the engine keeps each blocking read within one slot.
        let config = if transport.cluster() {
            config.with_cluster(true)
        } else {
            config
        };
        Ok(Context::start(config, transport, runtime))
    }
}

impl Context {
    /// A context on a private in-process backend, its loops on `runtime`: a
    /// single-instance server without Redis.
    pub fn in_memory(runtime: Arc<dyn Runtime>) -> Context {
        let transport = Arc::new(MemoryBackend::new().connect());
        Context::start(Config::default(), transport, runtime)
    }
}

/// How the Redis backends connect, as the builder set it.
#[cfg(feature = "redis")]
struct Redis<'a> {
    root_certificates: Option<&'a [u8]>,
    reconnect_window: Duration,
    runtime: &'a Arc<dyn Runtime>,
}

#[cfg(feature = "redis")]
impl Redis<'_> {
    async fn url(&self, url: &str) -> Result<Arc<dyn Transport>, Error> {
        let client = crate::transport::wire::client_for(url, self.root_certificates)?;
        self.client(&client).await
    }

    async fn client(&self, client: &redis::Client) -> Result<Arc<dyn Transport>, Error> {
        let transport = crate::transport::redis::RedisTransport::connect(
            client,
            self.reconnect_window,
            self.runtime.clone(),
        )
        .await?;
        Ok(Arc::new(transport))
    }

    #[cfg(feature = "cluster")]
    async fn cluster(&self, urls: &[String]) -> Result<Arc<dyn Transport>, Error> {
        let transport = crate::transport::cluster::ClusterTransport::connect(
            urls,
            self.root_certificates,
            self.reconnect_window,
            self.runtime.clone(),
        )
        .await?;
        Ok(Arc::new(transport))
    }
}

/// `REDIS_CLUSTER_URLS`: the comma-separated URLs of some nodes of a Redis Cluster,
/// preferred to `REDIS_URL` when set.
#[cfg(feature = "redis")]
fn redis_cluster_urls_from_env() -> Option<Vec<String>> {
    let urls: Vec<String> = std::env::var("REDIS_CLUSTER_URLS")
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

/// `REDIS_URL`, else `KV_URL`, as the deployed libraries read them.
fn redis_url_from_env() -> Result<String, Error> {
    ["REDIS_URL", "KV_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .ok_or_else(|| {
            Error::Config(
                "no Redis URL: set REDIS_URL or KV_URL, or use the in-memory backend".into(),
            )
        })
}
