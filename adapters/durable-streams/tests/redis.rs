//! The Redis store on a private redis-server: a stream produced by `resumable_stream`
//! in durable mode read over the protocol (catch-up, long-poll, SSE) and refused
//! appends while its producer's lease is live; two routers on one Redis (as two `serve`
//! processes) sharing streams, their concurrent appends ordered and exactly once.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use resumable_stream::{Config as EngineConfig, Durable};
use resumable_stream_durable_streams::{router, Config, RedisStore};
use resumable_stream_testkit::RedisServer;
use resumable_stream_tokio::ResumableStreamContext;
use support::{log_key, offset, req, send, PREFIX};

async fn app(server: &RedisServer) -> axum::Router {
    let store = RedisStore::connect(&server.url(), PREFIX)
        .await
        .expect("Redis store")
        .with_foreign_content_type("text/plain; charset=utf-8");
    let config = Config {
        long_poll_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    router(store, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_resumable_stream_reads_over_the_protocol_and_refuses_appends() {
    let server = RedisServer::start();
    let ctx = ResumableStreamContext::builder()
        .redis_url(server.url())
        .config(
            EngineConfig::default()
                .with_durable(Durable::default().with_linger(Duration::from_millis(1))),
        )
        .build()
        .await
        .expect("context");
    let (go_tx, go_rx) = tokio::sync::watch::channel(0usize);
    // Chunk i is produced once the test allows i + 1 chunks.
    let source = move || {
        futures_util::stream::unfold((0usize, go_rx), |(i, mut rx)| async move {
            if i == 6 {
                return None;
            }
            while *rx.borrow_and_update() <= i {
                rx.changed().await.ok()?;
            }
            Some((
                Ok::<_, std::convert::Infallible>(format!("c{i} ")),
                (i + 1, rx),
            ))
        })
    };
    let mut produced = ctx
        .resumable_stream("talk", source, None)
        .await
        .expect("produce")
        .expect("a new stream");
    let local = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(chunk) = produced.next().await {
            all.extend_from_slice(&chunk.expect("chunk"));
        }
        all
    });
    let app = app(&server).await;
    go_tx.send_replace(2);
    // Catch-up: the two chunks, once they reached the log.
    let body = loop {
        let (status, headers, body) =
            send(&app, req("GET", "/v1/stream/talk?offset=-1", &[], "")).await;
        if status == StatusCode::OK && body == b"c0 c1 " {
            assert_eq!(headers["stream-next-offset"], offset(2).as_str());
            assert!(!headers.contains_key("stream-closed"));
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body, b"c0 c1 ");
    // An append while the producer's lease is live: 409, with the reason.
    let text = [("content-type", "text/plain; charset=utf-8")];
    let (status, _, reason) = send(&app, req("POST", "/v1/stream/talk", &text, "intruder")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        String::from_utf8_lossy(&reason).contains("lease"),
        "{reason:?}"
    );

    // A long-poll at the tail answers with the next chunk.
    let poll = {
        let app = app.clone();
        let uri = format!("/v1/stream/talk?offset={}&live=long-poll", offset(2));
        tokio::spawn(async move { send(&app, req("GET", &uri, &[], "")).await })
    };
    // SSE from chunk 1 on, until the stream closes.
    let sse = {
        let app = app.clone();
        let uri = format!("/v1/stream/talk?offset={}&live=sse", offset(1));
        tokio::spawn(async move { send(&app, req("GET", &uri, &[], "")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    go_tx.send_replace(3);
    let (status, headers, body) = poll.await.expect("long-poll");
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"c2 "[..]));
    assert_eq!(headers["stream-next-offset"], offset(3).as_str());
    go_tx.send_replace(6);
    assert_eq!(
        local.await.expect("producer's reader"),
        b"c0 c1 c2 c3 c4 c5 "
    );

    let (status, _, events) = tokio::time::timeout(Duration::from_secs(20), sse)
        .await
        .expect("the SSE response ends at the stream's end")
        .expect("SSE");
    assert_eq!(status, StatusCode::OK);
    let events = String::from_utf8_lossy(&events);
    let data: String = events
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter(|d| !d.trim_start().starts_with('{'))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    assert_eq!(data, "c1 c2 c3 c4 c5 ", "{events}");
    assert!(events.contains("\"streamClosed\":true"), "{events}");

    // Finished: the whole stream, closed, and a closed stream refuses appends.
    let (status, headers, body) =
        send(&app, req("GET", "/v1/stream/talk?offset=-1", &[], "")).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"c0 c1 c2 c3 c4 c5 "[..])
    );
    assert_eq!(headers["stream-closed"], "true");
    assert_eq!(headers["stream-next-offset"], offset(6).as_str());
    let (status, headers, _) = send(&app, req("POST", "/v1/stream/talk", &text, "late")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(headers["stream-closed"], "true");
}

/// The log as Redis holds it: every entry `{after}-{count}`, chunks in order.
fn log_chunks(server: &RedisServer, id: &str) -> Vec<String> {
    support::log_chunks(&mut server.connection(), &log_key(id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_redis_share_streams_exactly_once() {
    let server = RedisServer::start();
    let (a, b) = (app(&server).await, app(&server).await);
    let json = [("content-type", "application/json")];
    let (status, _, _) = send(&a, req("PUT", "/v1/stream/shared", &json, "")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = send(&a, req("POST", "/v1/stream/shared", &json, "\"first\"")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = send(&b, req("GET", "/v1/stream/shared?offset=-1", &[], "")).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"[\"first\"]"[..])
    );

    // Concurrent appends through both, each an idempotent producer sending every
    // append twice (once through each server): each lands once, in its order.
    let writer = |name: &'static str, first: axum::Router, second: axum::Router| async move {
        for seq in 0..30u32 {
            let body = format!("\"{name}{seq}\"");
            let seq = seq.to_string();
            let headers = [
                ("content-type", "application/json"),
                ("producer-id", name),
                ("producer-epoch", "0"),
                ("producer-seq", seq.as_str()),
            ];
            let (status, _, _) =
                send(&first, req("POST", "/v1/stream/shared", &headers, &body)).await;
            assert_eq!(status, StatusCode::OK);
            let (status, _, _) =
                send(&second, req("POST", "/v1/stream/shared", &headers, &body)).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "a retry is a duplicate");
        }
    };
    let one = tokio::spawn(writer("a", a.clone(), b.clone()));
    let two = tokio::spawn(writer("b", b.clone(), a.clone()));
    one.await.expect("writer a");
    two.await.expect("writer b");

    let chunks = log_chunks(&server, "shared");
    assert_eq!(chunks.len(), 61);
    for name in ["a", "b"] {
        let mine: Vec<&String> = chunks
            .iter()
            .filter(|c| c.starts_with(&format!("\"{name}")))
            .collect();
        let expected: Vec<String> = (0..30).map(|i| format!("\"{name}{i}\"")).collect();
        assert_eq!(
            mine.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected
        );
    }
    // Both servers read the same 61 messages.
    for app in [&a, &b] {
        let (_, headers, body) =
            send(app, req("GET", "/v1/stream/shared?offset=-1", &[], "")).await;
        let messages: Vec<String> = serde_json::from_slice(&body).expect("JSON array");
        assert_eq!(messages.len(), 61);
        assert_eq!(headers["stream-next-offset"], offset(61).as_str());
    }
    // A close through one is seen by a long-poll through the other.
    let poll = {
        let b = b.clone();
        let uri = format!("/v1/stream/shared?offset={}&live=long-poll", offset(61));
        tokio::spawn(async move { send(&b, req("GET", &uri, &[], "")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, _) = send(
        &a,
        req(
            "POST",
            "/v1/stream/shared",
            &[("stream-closed", "true")],
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, _) = poll.await.expect("long-poll");
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["stream-closed"], "true");
}
