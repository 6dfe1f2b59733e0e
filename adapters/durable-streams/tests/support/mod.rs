//! What the Redis and Cluster store tests share: requests through a router, offsets,
//! and a stream's chunks as its log holds them.

#![allow(dead_code)] // Each test file uses its own part of it.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use resumable_stream::wire::log::LogEntry;
use tower::ServiceExt;

/// The key prefix of these tests' stores.
pub const PREFIX: &str = "resumable-stream";

/// Sends `req` through `app`: its status, headers and whole body.
pub async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, bytes.to_vec())
}

/// A request.
pub fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

/// The protocol's offset of a position `chunks` chunks into a stream.
pub fn offset(chunks: u64) -> String {
    format!("{:016}_{chunks:016}", 0)
}

/// The log key of stream `id`.
pub fn log_key(id: &str) -> String {
    format!("{PREFIX}:rs:log:{id}")
}

/// The chunks of the log at `key` on `connection`, checked: every entry starts where
/// the one before ended (no gap, no repeat).
pub fn log_chunks(connection: &mut redis::Connection, key: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    for entry in resumable_stream_testkit::durable::log_entries(connection, key) {
        if let LogEntry::Chunks {
            first, chunks: c, ..
        } = entry
        {
            assert_eq!(first, chunks.len() as u64, "no gap, no repeat");
            chunks.extend(c.iter().map(|b| String::from_utf8_lossy(b).into_owned()));
        }
    }
    chunks
}
