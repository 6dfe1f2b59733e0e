//! How a test's context is built, as data, so that every driver builds it the same way
//! through its own `Builder`: the configuration, the backend, and how a Redis backend
//! connects (the TLS roots to trust, the reconnect window).

use crate::custom::CustomStore;
use resumable_stream::{Config, PubSub};
use resumable_stream_driver::{Builder, Face, MemoryBackend};
use std::time::Duration;

/// Where a context's streams live.
#[derive(Clone)]
pub enum Backend {
    /// The in-process store.
    Memory(MemoryBackend),
    /// The application's own publisher and subscriber.
    Custom(CustomStore),
    /// Redis at this URL.
    Url(String),
    /// A Redis Cluster through these nodes, on this pub/sub.
    Cluster(Vec<String>, PubSub),
    /// Redis from the environment (`REDIS_URL`, `KV_URL`, `REDIS_CLUSTER_URLS`).
    FromEnv,
}

/// Everything a driver's builder is told.
#[derive(Clone)]
pub struct Setup {
    /// The engine's configuration.
    pub config: Config,
    /// The backend.
    pub backend: Backend,
    /// Root certificates (PEM) to trust for `rediss://`, instead of the system's.
    pub root_certificates: Option<Vec<u8>>,
    /// The reconnect window, when not the default.
    pub reconnect_window: Option<Duration>,
}

impl Setup {
    /// `config` on `backend`, connecting as by default.
    pub fn new(config: Config, backend: Backend) -> Setup {
        Setup {
            config,
            backend,
            root_certificates: None,
            reconnect_window: None,
        }
    }

    /// Redis at `url`.
    pub fn url(url: impl Into<String>, config: Config) -> Setup {
        Setup::new(config, Backend::Url(url.into()))
    }

    /// Trusting `pem` for `rediss://`.
    pub fn trusting(mut self, pem: impl Into<Vec<u8>>) -> Setup {
        self.root_certificates = Some(pem.into());
        self
    }

    /// With this reconnect window.
    pub fn reconnect_window(mut self, window: Duration) -> Setup {
        self.reconnect_window = Some(window);
        self
    }

    /// `builder`, told all of it.
    pub fn apply<F: Face>(self, builder: Builder<F>) -> Builder<F> {
        let builder = builder.config(self.config);
        let builder = match self.backend {
            Backend::Memory(memory) => builder.memory(memory),
            Backend::Custom(custom) => {
                let subscriber = custom.subscriber();
                builder.publisher_subscriber(custom, subscriber)
            }
            Backend::Url(url) => builder.redis_url(url),
            Backend::Cluster(urls, pubsub) => builder.redis_cluster(urls).pubsub(pubsub),
            Backend::FromEnv => builder,
        };
        let builder = match self.root_certificates {
            Some(pem) => builder.tls_root_certificates(pem),
            None => builder,
        };
        match self.reconnect_window {
            Some(window) => builder.reconnect_window(window),
            None => builder,
        }
    }
}
