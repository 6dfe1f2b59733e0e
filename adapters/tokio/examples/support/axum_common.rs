//! What the axum example servers share (the tokio `demo` and `ai_chat`, which include
//! this file with `#[path]`, after `demo_common.rs`): the context the environment asks
//! for, the page and health routes, and serving on 127.0.0.1 until Ctrl-C.

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use resumable_stream_axum::ResumableStreamContext;
use std::net::{Ipv4Addr, SocketAddr};

/// On Redis if the environment names one (`REDIS_URL`, `KV_URL`), else in memory; says
/// which ([`super::demo_common::redis_from_env`]).
pub async fn context_from_env(
    what: &str,
) -> Result<ResumableStreamContext, resumable_stream_axum::Error> {
    if super::demo_common::redis_from_env(what) {
        ResumableStreamContext::from_env().await
    } else {
        Ok(ResumableStreamContext::in_memory())
    }
}

/// `GET /`: `page`; `GET /healthz`: `ok` (what the test scripts wait for).
pub fn page_and_health<S: Clone + Send + Sync + 'static>(page: &'static str) -> Router<S> {
    Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves `router` on `127.0.0.1:port`, printing its URL, until Ctrl-C (or forever if
/// the signal handler cannot be installed).
pub async fn serve_locally(router: Router, port: u16) -> std::io::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("open http://{}/", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
}
