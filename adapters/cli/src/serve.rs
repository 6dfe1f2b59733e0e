//! `resumable-stream serve`: the Durable Streams protocol over HTTP
//! (`resumable-stream-durable-streams`), in memory or on Redis.

use std::time::Duration;

use clap::Args;
use resumable_stream_durable_streams::{
    router, Config, MemoryStore, RedisStore, SubscriptionConfig,
};

use crate::{Exit, EXIT_ERROR, EXIT_USAGE};

/// `serve`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on, e.g. 127.0.0.1:4437.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Keep streams on this Redis (in resumable-stream's durable log format) instead of
    /// in memory; `redis://` URLs.
    #[arg(long, value_name = "URL", conflicts_with = "redis_cluster")]
    redis: Option<String>,
    /// Keep streams on this Redis Cluster instead (comma-separated node URLs; also
    /// from REDIS_CLUSTER_URLS when neither --redis nor this is given).
    #[arg(long, value_name = "URL,URL,...", value_delimiter = ',')]
    redis_cluster: Option<Vec<String>>,
    /// Key prefix shared with the resumable-stream services on that Redis.
    #[arg(long, value_name = "P", default_value = "resumable-stream")]
    prefix: String,
    /// The path under which stream ids live.
    #[arg(long, value_name = "P", default_value = "/v1/stream")]
    base_path: String,
    /// Seconds a long-poll waits for data before answering 204.
    #[arg(long, value_name = "S", default_value_t = 10)]
    long_poll_timeout: u64,
    /// Accept webhook subscriptions to loopback addresses (http://127.0.0.1, localhost),
    /// for development and tests; refused by default (protocol section 12.8).
    /// Subscriptions are served in memory only (501 on Redis).
    #[arg(long)]
    webhook_allow_loopback: bool,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<Exit, Exit> {
    let config = Config {
        base_path: args.base_path.trim_end_matches('/').to_owned(),
        long_poll_timeout: Duration::from_secs(args.long_poll_timeout),
        subscriptions: SubscriptionConfig {
            allow_loopback_webhooks: args.webhook_allow_loopback,
            ..SubscriptionConfig::default()
        },
        ..Config::default()
    };
    let cluster = args.redis_cluster.clone().or_else(|| {
        if args.redis.is_some() {
            return None;
        }
        let urls = std::env::var("REDIS_CLUSTER_URLS").ok()?;
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        (!urls.is_empty()).then_some(urls)
    });
    let (app, store) = match (&args.redis, cluster) {
        (Some(url), _) => {
            let store = RedisStore::connect(url, &args.prefix)
                .await
                .map_err(|e| Exit::with(EXIT_ERROR, format!("Redis at {url}: {e}")))?;
            (router(store, config), "Redis")
        }
        (None, Some(urls)) => {
            let store = RedisStore::connect_cluster(&urls, &args.prefix)
                .await
                .map_err(|e| Exit::with(EXIT_ERROR, format!("Redis Cluster: {e}")))?;
            (router(store, config), "a Redis Cluster")
        }
        (None, None) => (router(MemoryStore::new(), config), "memory"),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Exit::with(EXIT_USAGE, format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Exit::with(EXIT_ERROR, e.to_string()))?;
    eprintln!(
        "serving Durable Streams at http://{addr}{} (streams in {store})",
        args.base_path
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Exit::with(EXIT_ERROR, e.to_string()))?;
    Ok(Exit::ok())
}
