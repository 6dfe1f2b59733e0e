//! Statuses through a real server: every malformed position is a 400 with a one-line
//! reason (never a restart from zero), and errors become the statuses of the table in
//! `resumable_stream_axum::status` (shutting down 503, an unanswered resume 504,
//! Redis down 503), with the table itself checked case by case.

mod support;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use resumable_stream_axum::{status_for, Config, Error, ErrorResponse, ResumableStreamContext};
use resumable_stream_testkit::RedisServer;
use std::time::{Duration, Instant};
use support::{request, serve, sse_routes, App, Backend, Sources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(ctx: ResumableStreamContext) -> std::net::SocketAddr {
    let router = sse_routes().with_state(App {
        ctx,
        sources: Sources::default(),
    });
    serve(router).await
}

/// Request headers: names and raw values.
type Headers = &'static [(&'static str, &'static [u8])];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_positions_are_400_with_a_one_line_reason() {
    let ctx = ResumableStreamContext::in_memory();
    let addr = server(ctx.clone()).await;
    let cases: [(&str, Headers); 15] = [
        ("/s/p?offset=abc", &[]),
        ("/s/p?offset=-1", &[]),
        ("/s/p?offset=%2B1", &[]),
        ("/s/p?offset=1.5", &[]),
        ("/s/p?offset=", &[]),
        ("/s/p?offset=99999999999999999999999999", &[]),
        ("/s/p?offset=9007199254740993", &[]),
        ("/s/p?offset=1&offset=2", &[]),
        ("/s/p", &[("last-event-id", b"seven")]),
        ("/s/p", &[("last-event-id", b"-7")]),
        ("/s/p", &[("last-event-id", b"18446744073709551616")]),
        ("/s/p", &[("last-event-id", b"\xFF\xFE")]),
        ("/s/p", &[("last-event-id", b"1"), ("last-event-id", b"2")]),
        ("/s/p?lastEventId=2", &[("last-event-id", b"1")]),
        ("/r/p?lastEventId=1e3", &[]),
    ];
    for (path, headers) in cases {
        let response = request(addr, "GET", path, headers, b"").await;
        let status = response.status;
        let reason = String::from_utf8(response.body().await).unwrap();
        println!("{path} {headers:?}: {status} {reason}");
        assert_eq!(status, 400, "{path} {headers:?}");
        assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
    }
    // None of them started a stream from zero.
    assert_eq!(
        ctx.has_existing_stream("p").await.unwrap(),
        resumable_stream_axum::StreamState::None
    );
    // A well-formed one does (the producer starts from the beginning whatever it asks).
    assert_eq!(
        request(addr, "GET", "/s/p?offset=3", &[], b"").await.status,
        200
    );
}

#[test]
fn the_status_table() {
    let redis = resumable_stream::ReplyError::Connection("refused".into());
    let cases = [
        (
            Error::Unsupported {
                what: "chunk positions",
            },
            409,
        ),
        (
            Error::AlreadyProducing {
                stream_id: "s".into(),
            },
            409,
        ),
        (
            Error::AckTimeout {
                stream_id: "s".into(),
                waited: Duration::from_secs(1),
            },
            504,
        ),
        (
            Error::ProducerGone {
                stream_id: "s".into(),
                silent_for: Duration::from_secs(3),
            },
            504,
        ),
        (
            Error::Redis {
                command: "GET",
                error: redis,
            },
            503,
        ),
        (Error::ShuttingDown, 503),
        (Error::Closed, 503),
        (Error::UnexpectedSentinel { value: "x".into() }, 502),
        (
            Error::UnexpectedReply {
                command: "GET",
                reply: "x".into(),
            },
            502,
        ),
        (Error::Source("model".into()), 502),
        (
            Error::Remote {
                kind: "k".into(),
                message: "m".into(),
            },
            502,
        ),
        (
            Error::Vanished {
                stream_id: "s".into(),
            },
            410,
        ),
        (
            Error::Truncated {
                stream_id: "s".into(),
            },
            410,
        ),
        (Error::Cancelled, 410),
        (
            Error::BeforeRetained {
                stream_id: "s".into(),
                position: 0,
                retained_from: 3,
            },
            410,
        ),
        (
            Error::PastEnd {
                stream_id: "s".into(),
                position: 9,
                length: 5,
            },
            416,
        ),
        (
            Error::Fenced {
                stream_id: "s".into(),
            },
            409,
        ),
        (
            Error::LogFull {
                stream_id: "s".into(),
                limit: 8,
            },
            507,
        ),
        (Error::NotProducing, 500),
        (Error::Internal("bug"), 500),
        (Error::Config("no url".into()), 500),
    ];
    for (error, status) in cases {
        assert_eq!(
            status_for(&error),
            StatusCode::from_u16(status).unwrap(),
            "{error}"
        );
        assert_eq!(ErrorResponse(error).into_response().status(), status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_shutting_down_answers_503() {
    let ctx = ResumableStreamContext::in_memory();
    let addr = server(ctx.clone()).await;
    ctx.shutdown(Instant::now()).await;
    let response = request(addr, "GET", "/s/late", &[], b"").await;
    assert_eq!(response.status, 503);
    println!("503: {}", String::from_utf8_lossy(&response.body().await));
}

/// Sends one command to `server` in RESP, returns the raw reply.
async fn redis_command(server: &RedisServer, args: &[&str]) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(command.as_bytes()).await.unwrap();
    let mut reply = vec![0; 256];
    let n = stream.read(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_resume_is_504_and_redis_down_is_503() {
    let backend = Backend::redis();
    let Backend::Redis(server_process) = &backend else {
        unreachable!()
    };
    // A sentinel that says "active" with nobody producing: a producer that died.
    let reply = redis_command(
        server_process,
        &["SET", "resumable-stream:rs:sentinel:orphan", "1"],
    )
    .await;
    assert_eq!(reply, "+OK\r\n");
    let config = Config::default().with_ack_timeout(Duration::from_millis(300));
    let ctx = backend.context(config).await;
    let addr = server(ctx).await;
    let started = Instant::now();
    let response = request(addr, "GET", "/r/orphan", &[], b"").await;
    println!("504 after {:?}: {}", started.elapsed(), response.status);
    assert_eq!(response.status, 504);

    drop(backend); // kills redis-server
    let started = Instant::now();
    let response = request(addr, "GET", "/r/gone", &[], b"").await;
    let status = response.status;
    println!(
        "Redis down: {status} after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&response.body().await)
    );
    assert_eq!(status, 503);
}
