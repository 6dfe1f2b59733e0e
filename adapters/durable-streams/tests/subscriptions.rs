//! The reserved subscription APIs (protocol sections 6 and 7) over the memory store:
//! pull-wake claims, acks, leases and fencing; webhook delivery to a receiver on
//! loopback, its signature and its refusal by default; `501` over a shared store.
#![cfg(feature = "subscriptions")]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use resumable_stream_durable_streams::store::{
    Append, Appended, BoxFuture, Create, Created, Deleted, From, Head, Read, StoreError,
};
use resumable_stream_durable_streams::{router, Config, MemoryStore, Store, SubscriptionConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:4437")
        .header("content-type", "application/json");
    if let Some(token) = auth {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn sub_url(id: &str) -> String {
    format!("/v1/stream/__ds/subscriptions/{id}")
}

/// Polls `check` for up to 5 s.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met in 5 s");
}

#[tokio::test]
async fn pull_wake_claims_acks_releases_and_fences() {
    let app = router(MemoryStore::new(), Config::default());
    send(&app, "PUT", "/v1/stream/wake/pool", None, json!([])).await;
    send(&app, "PUT", "/v1/stream/events/old", None, json!({"n": 0})).await;
    let config = json!({"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool", "lease_ttl_ms": 1000});
    let (status, created) = send(&app, "PUT", &sub_url("p"), None, config.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    // An existing stream is linked at its tail: nothing to replay.
    assert_eq!(created["streams"][0]["path"], "events/old");
    assert_eq!(
        created["streams"][0]["acked_offset"],
        "0000000000000000_0000000000000001"
    );
    assert_eq!(
        send(&app, "PUT", &sub_url("p"), None, config).await.0,
        StatusCode::OK
    );
    let other = json!({"type": "pull-wake", "pattern": "events/**", "wake_stream": "wake/pool"});
    let (status, body) = send(&app, "PUT", &sub_url("p"), None, other).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("SUBSCRIPTION_EXISTS"))
    );
    let (status, body) = send(
        &app,
        "POST",
        &format!("{}/claim", sub_url("p")),
        None,
        json!({"worker": "w1"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("NO_PENDING_WORK"))
    );

    send(&app, "POST", "/v1/stream/events/old", None, json!({"n": 1})).await;
    eventually(|| async {
        let (_, events) = send(
            &app,
            "GET",
            "/v1/stream/wake/pool?offset=-1",
            None,
            Value::Null,
        )
        .await;
        events.as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["subscription_id"] == "p" && e["stream"] == "events/old")
        })
    })
    .await;
    let claim_url = format!("{}/claim", sub_url("p"));
    let (status, claim) = send(&app, "POST", &claim_url, None, json!({"worker": "w1"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claim["generation"], 1);
    assert_eq!(
        claim["streams"][0]["tail_offset"],
        "0000000000000000_0000000000000002"
    );
    let (status, busy) = send(&app, "POST", &claim_url, None, json!({"worker": "w2"})).await;
    assert_eq!(
        (status, &busy["error"]["current_holder"]),
        (StatusCode::CONFLICT, &json!("w1"))
    );

    let ack_url = format!("{}/ack", sub_url("p"));
    let token = claim["token"].as_str().unwrap();
    let ack = json!({"wake_id": claim["wake_id"], "generation": 1,
        "acks": [{"stream": "events/old", "offset": "0000000000000000_0000000000000002"}], "done": true});
    assert_eq!(
        send(&app, "POST", &ack_url, None, ack.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, "POST", &ack_url, Some("forged"), ack.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let bad = json!({"wake_id": claim["wake_id"], "generation": 1, "acks": [{"stream": "events/old", "offset": "x"}]});
    assert_eq!(
        send(&app, "POST", &ack_url, Some(token), bad).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = send(&app, "POST", &ack_url, Some(token), ack.clone()).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ok": true, "next_wake": false}))
    );
    let (status, body) = send(&app, "POST", &ack_url, Some(token), ack).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("FENCED"))
    );
    let (_, sub) = send(&app, "GET", &sub_url("p"), None, Value::Null).await;
    assert_eq!(
        sub["streams"][0]["acked_offset"],
        "0000000000000000_0000000000000002"
    );

    // A new stream matching the pattern is linked before its first data: a wake.
    send(&app, "PUT", "/v1/stream/events/new", None, json!({"n": 0})).await;
    let (status, claim) = send(&app, "POST", &claim_url, None, json!({"worker": "w1"})).await;
    assert_eq!((status, &claim["generation"]), (StatusCode::OK, &json!(2)));
    // The lease expires: the claim's token is fenced, the work is claimed anew.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let release = json!({"wake_id": claim["wake_id"], "generation": 2});
    let release_url = format!("{}/release", sub_url("p"));
    let token = claim["token"].as_str().unwrap();
    assert_eq!(
        send(&app, "POST", &release_url, Some(token), release)
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (status, claim) = send(&app, "POST", &claim_url, None, json!({"worker": "w2"})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(claim["generation"].as_u64().unwrap() >= 3);
    let release = json!({"wake_id": claim["wake_id"], "generation": claim["generation"]});
    let token = claim["token"].as_str().unwrap();
    assert_eq!(
        send(&app, "POST", &release_url, Some(token), release)
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        send(&app, "DELETE", &sub_url("p"), None, Value::Null)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, "GET", &sub_url("p"), None, Value::Null).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "POST", &claim_url, None, json!({})).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_requests_get_the_protocols_errors() {
    let app = router(MemoryStore::new(), Config::default());
    for (body, code) in [
        (
            json!({"type": "webhook", "pattern": "a/*", "webhook": {"url": "http://10.0.0.1/hook"}}),
            "WEBHOOK_URL_REJECTED",
        ),
        (
            json!({"type": "webhook", "pattern": "a/*", "webhook": {"url": "http://127.0.0.1:9/hook"}}),
            "WEBHOOK_URL_REJECTED",
        ),
        (
            json!({"type": "webhook", "pattern": "a/*", "webhook": {"url": "https://169.254.169.254/"}}),
            "WEBHOOK_URL_REJECTED",
        ),
        (
            json!({"type": "webhook", "pattern": "a/*"}),
            "INVALID_REQUEST",
        ),
        (
            json!({"type": "pull-wake", "wake_stream": "w"}),
            "INVALID_REQUEST",
        ),
        (
            json!({"type": "pull-wake", "pattern": "*", "wake_stream": "w", "lease_ttl_ms": 600_001}),
            "INVALID_REQUEST",
        ),
        (json!("text"), "INVALID_REQUEST"),
    ] {
        let (status, answer) = send(&app, "PUT", &sub_url("s"), None, body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!(code))
        );
    }
    assert_eq!(
        send(&app, "GET", "/v1/stream/__ds/other", None, Value::Null)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "GET", &sub_url("%ZZ"), None, Value::Null)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&app, "PATCH", &sub_url("s"), None, Value::Null)
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // `__ds` is never a stream.
    assert_eq!(
        send(&app, "PUT", "/v1/stream/__ds", None, json!([]))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, jwks) = send(&app, "GET", "/v1/stream/__ds/jwks.json", None, Value::Null).await;
    assert_eq!(
        (status, &jwks["keys"][0]["crv"]),
        (StatusCode::OK, &json!("Ed25519"))
    );
}

/// A webhook receiver on loopback: answers each request with `answer`, sends what it
/// received (headers and body) on the channel.
async fn receiver(
    status: u16,
    answer: &'static str,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    });
                    if n == 0 || body.len() >= length.unwrap_or(0) {
                        break (head.to_owned(), body.to_owned());
                    }
                }
                if n == 0 {
                    break (text, String::new());
                }
            };
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = tx.send((head, body));
        }
    });
    (url, rx)
}

fn loopback_app() -> axum::Router {
    let config = Config {
        subscriptions: SubscriptionConfig {
            allow_loopback_webhooks: true,
            ..SubscriptionConfig::default()
        },
        ..Config::default()
    };
    router(MemoryStore::new(), config)
}

#[tokio::test]
async fn webhooks_are_signed_and_done_acks_the_snapshot() {
    let app = loopback_app();
    let (url, mut received) = receiver(200, r#"{"done":true}"#).await;
    let config = json!({"type": "webhook", "streams": ["jobs/a"], "webhook": {"url": url}, "lease_ttl_ms": 1000});
    let (status, created) = send(&app, "PUT", &sub_url("h"), None, config).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created["webhook"]["signing"]["jwks_url"],
        "http://127.0.0.1:4437/v1/stream/__ds/jwks.json"
    );
    assert_eq!(created["streams"][0]["link_type"], "explicit");
    send(&app, "PUT", "/v1/stream/jobs/a", None, json!({"n": 0})).await;
    let (head, body) = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    let notification: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        notification["callback_url"],
        "http://127.0.0.1:4437/v1/stream/__ds/subscriptions/h/callback"
    );
    assert_eq!(notification["streams"][0]["has_pending"], true);

    // Ed25519 over `t.body`, with the key the JWKS publishes.
    let signature = head
        .lines()
        .find_map(|l| l.strip_prefix("Webhook-Signature: "))
        .unwrap();
    let mut parts = signature.split(',');
    let t = parts.next().unwrap().strip_prefix("t=").unwrap();
    let kid = parts.next().unwrap().strip_prefix("kid=").unwrap();
    let sig = decode(parts.next().unwrap().strip_prefix("ed25519=").unwrap());
    let (_, jwks) = send(&app, "GET", "/v1/stream/__ds/jwks.json", None, Value::Null).await;
    assert_eq!(jwks["keys"][0]["kid"], kid);
    let x = decode(jwks["keys"][0]["x"].as_str().unwrap());
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, x);
    assert!(key.verify(format!("{t}.{body}").as_bytes(), &sig).is_ok());

    eventually(|| async {
        let (_, sub) = send(&app, "GET", &sub_url("h"), None, Value::Null).await;
        sub["streams"][0]["acked_offset"] == "0000000000000000_0000000000000001"
    })
    .await;
    // Membership: an explicit link removed; the callback of a done wake is fenced.
    assert_eq!(
        send(
            &app,
            "POST",
            &format!("{}/streams", sub_url("h")),
            None,
            json!({"streams": ["jobs/b"]})
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(
            &app,
            "DELETE",
            &format!("{}/streams/jobs%2Fb", sub_url("h")),
            None,
            Value::Null
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    let (_, sub) = send(&app, "GET", &sub_url("h"), None, Value::Null).await;
    assert_eq!(sub["streams"].as_array().unwrap().len(), 1);
    let stale = json!({"wake_id": notification["wake_id"], "generation": notification["generation"], "done": true});
    let token = notification["callback_token"].as_str().unwrap();
    let (status, body) = send(
        &app,
        "POST",
        &format!("{}/callback", sub_url("h")),
        Some(token),
        stale,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::CONFLICT, &json!("FENCED"))
    );
}

#[tokio::test]
async fn a_failing_webhook_marks_the_subscription_failed() {
    let app = loopback_app();
    let (url, mut received) = receiver(500, "{}").await;
    let config = json!({"type": "webhook", "pattern": "jobs/*", "webhook": {"url": url}});
    assert_eq!(
        send(&app, "PUT", &sub_url("f"), None, config).await.0,
        StatusCode::CREATED
    );
    send(&app, "PUT", "/v1/stream/jobs/x", None, json!({"n": 0})).await;
    tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    eventually(|| async {
        send(&app, "GET", &sub_url("f"), None, Value::Null).await.1["status"] == "failed"
    })
    .await;
    // Retried after about a second, as a new wake.
    let (_, body) = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["generation"],
        2
    );
}

/// The memory store, as if shared between processes.
struct Shared(MemoryStore);

impl Store for Shared {
    fn create<'a>(
        &'a self,
        id: &'a str,
        req: Create,
    ) -> BoxFuture<'a, Result<Created, StoreError>> {
        self.0.create(id, req)
    }
    fn append<'a>(
        &'a self,
        id: &'a str,
        req: Append,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        self.0.append(id, req)
    }
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Deleted, StoreError>> {
        self.0.delete(id)
    }
    fn head<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Head, StoreError>> {
        self.0.head(id)
    }
    fn read<'a>(
        &'a self,
        id: &'a str,
        from: From,
        max: usize,
        touch: bool,
    ) -> BoxFuture<'a, Result<Read, StoreError>> {
        self.0.read(id, from, max, touch)
    }
    fn wait<'a>(
        &'a self,
        id: &'a str,
        tail: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.wait(id, tail, timeout)
    }
}

#[tokio::test]
async fn a_shared_store_answers_501() {
    let app = router(Shared(MemoryStore::new()), Config::default());
    let config = json!({"type": "pull-wake", "pattern": "*", "wake_stream": "w"});
    assert_eq!(
        send(&app, "PUT", &sub_url("s"), None, config).await.0,
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        send(&app, "PUT", "/v1/stream/a", None, json!([])).await.0,
        StatusCode::CREATED
    );
}

/// Unpadded base64url.
fn decode(text: &str) -> Vec<u8> {
    let bits: Vec<u32> = text
        .bytes()
        .map(|c| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        })
        .map(u32::from)
        .collect();
    let mut out = Vec::new();
    for group in bits.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0, |n, (i, v)| n | v << (18 - 6 * i));
        for i in 0..group.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
