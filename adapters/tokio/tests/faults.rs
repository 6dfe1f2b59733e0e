//! Redis faults: a Redis that is not there, and one that dies mid-stream. Nothing
//! hangs; every reader ends with its data so far and a typed error or a clean end.

mod support;

use futures_util::StreamExt;
use resumable_stream_tokio::{Error, ResumableStreamContext};
use support::{fixed_source, manual_source, within, RedisServer};

#[tokio::test]
async fn connecting_to_no_redis_is_a_typed_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = ResumableStreamContext::builder()
        .redis_url(format!("redis://127.0.0.1:{port}/"))
        .build()
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Redis {
                command: "CONNECT",
                ..
            })
        ),
        "{result:?}"
    );
    let invalid = ResumableStreamContext::builder()
        .redis_url("not a url")
        .build()
        .await;
    assert!(matches!(invalid, Err(Error::Config(_))), "{invalid:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dying_mid_stream_ends_readers_with_typed_errors() {
    let mut server = RedisServer::start();
    let a = ResumableStreamContext::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    let b = ResumableStreamContext::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    let (tx, source) = manual_source();
    let mut producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("before".into())).unwrap();
    assert_eq!(
        within("producer", producer.next()).await.unwrap().unwrap(),
        "before"
    );
    let mut resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        within("catch-up", resumer.next()).await.unwrap().unwrap(),
        "before"
    );

    server.kill();

    // The resumer learns that its subscription is gone: a typed error, not a hang.
    let ended = within("resumer after the kill", resumer.next()).await;
    assert!(
        matches!(ended, Some(Err(Error::Redis { .. }))),
        "the resumer ends with a Redis error: {ended:?}"
    );
    // The producer's local reader is unaffected: it gets every chunk and the end.
    tx.send(Ok(" after".into())).unwrap();
    drop(tx);
    assert_eq!(
        within("producer after the kill", producer.next())
            .await
            .unwrap()
            .unwrap(),
        " after"
    );
    assert!(within("producer end", producer.next()).await.is_none());
    // New requests fail fast with a typed error.
    let request = within("a request to a dead Redis", a.has_existing_stream("s")).await;
    assert!(matches!(request, Err(Error::Redis { .. })), "{request:?}");
}
