//! The router over the memory store, request by request (the official conformance
//! suite runs in scripts/durable-streams-test.sh).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use resumable_stream_durable_streams::{router, Config, MemoryStore};
use tower::ServiceExt;

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn create_append_read_close() {
    let app = router(MemoryStore::new(), Config::default());
    let text = [("content-type", "text/plain")];
    let (status, headers, _) = send(&app, req("PUT", "/v1/stream/a", &text, "hello ")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, _, _) = send(&app, req("POST", "/v1/stream/a", &text, "world")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, body) = send(&app, req("GET", "/v1/stream/a?offset=-1", &[], "")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello world"));
    assert_eq!(headers["stream-up-to-date"], "true");
    let next = headers["stream-next-offset"].to_str().unwrap().to_owned();

    let close = [("stream-closed", "true")];
    let (status, headers, _) = send(&app, req("POST", "/v1/stream/a", &close, "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["stream-closed"], "true");
    let (status, _, _) = send(&app, req("POST", "/v1/stream/a", &text, "more")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let uri = format!("/v1/stream/a?offset={next}&live=long-poll");
    let (status, headers, _) = send(&app, req("GET", &uri, &[], "")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["stream-closed"], "true");
}

#[tokio::test]
async fn producers_are_exactly_once_and_fenced() {
    let app = router(MemoryStore::new(), Config::default());
    let json = ("content-type", "application/json");
    send(&app, req("PUT", "/v1/stream/p", &[json], "")).await;
    let producer = |epoch: &'static str, seq: &'static str| {
        [
            json,
            ("producer-id", "w"),
            ("producer-epoch", epoch),
            ("producer-seq", seq),
        ]
    };
    let (status, _, _) = send(
        &app,
        req("POST", "/v1/stream/p", &producer("0", "0"), "[1,2]"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(
        &app,
        req("POST", "/v1/stream/p", &producer("0", "0"), "[1,2]"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, _) =
        send(&app, req("POST", "/v1/stream/p", &producer("0", "5"), "3")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(headers["producer-expected-seq"], "1");
    send(&app, req("POST", "/v1/stream/p", &producer("1", "0"), "3")).await;
    let (status, headers, _) =
        send(&app, req("POST", "/v1/stream/p", &producer("0", "1"), "4")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["producer-epoch"], "1");
    let (_, _, body) = send(&app, req("GET", "/v1/stream/p", &[], "")).await;
    assert_eq!(body, "[1,2,3]");
}

#[tokio::test]
async fn bad_input_is_refused_without_a_panic() {
    let app = router(MemoryStore::new(), Config::default());
    for (method, uri, headers, body) in [
        ("PUT", "/v1/stream/x", vec![("stream-ttl", "+1")], ""),
        (
            "PUT",
            "/v1/stream/x",
            vec![("stream-expires-at", "yesterday")],
            "",
        ),
        (
            "PUT",
            "/v1/stream/x",
            vec![("content-type", "application/json")],
            "{",
        ),
        ("GET", "/v1/stream/x?offset=1,2", vec![], ""),
        (
            "PUT",
            "/v1/stream/y",
            vec![
                ("stream-forked-from", "/v1/stream/z"),
                ("stream-fork-offset", "nope"),
            ],
            "",
        ),
    ] {
        let (status, _, _) = send(&app, req(method, uri, &headers, body)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {uri} {headers:?}"
        );
    }
    let (status, _, _) = send(&app, req("GET", "/elsewhere", &[], "")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
