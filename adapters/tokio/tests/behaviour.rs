//! The behaviour suite of the tokio driver, run against a real redis-server (started by
//! the test on a free loopback port), against the in-memory backend, and against a custom
//! backend: every test
//! below runs in `mod on_redis`, in `mod in_memory`, and in `mod custom_backend` (the
//! application's own `Publisher` and `Subscriber`).

mod support;

use futures_util::StreamExt;
use resumable_stream_tokio::{Config, Error, ResumableStream, Resumed, Role, StreamState};
use std::time::Duration;
use support::{fixed_source, manual_source, within, Fixture};

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Fixture::memory()).await
                }
            )*
        }
        mod custom_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Fixture::custom()).await
                }
            )*
        }
        mod on_redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Fixture::redis()).await
                }
            )*
        }
    };
}

suite!(
    acts_like_a_normal_stream,
    resuming_a_done_stream_answers_done,
    reverse_read_order,
    resume_in_progress,
    it_really_streams_producer_first,
    it_really_streams_consumer_first,
    several_resumers,
    two_streams_kept_apart,
    skips_of_0_2_and_4,
    done_once_finished,
    explicit_create_and_resume,
    state_at_each_stage,
    four_resumers_joining_while_chunks_flow_are_byte_exact,
    utf16_skips_across_non_ascii_text,
    a_thousand_concurrent_streams,
    malformed_requests_do_not_disturb_streams,
    a_gone_producer_fails_the_resumer_with_ack_timeout,
    unexpected_sentinels_are_typed_errors,
    a_source_error_reaches_the_local_reader,
    the_producer_finishes_without_its_local_reader,
    dropping_the_context_ends_its_streams,
);

/// Reads a stream to its end: the bytes, and the error it ended with, if any.
async fn read_all(mut stream: ResumableStream) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    while let Some(item) = within("reading a stream", stream.next()).await {
        match item {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(error) => return (out, Some(error)),
        }
    }
    (out, None)
}

/// Reads exactly `len` bytes.
async fn read_exactly(stream: &mut ResumableStream, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let chunk = within("reading", stream.next())
            .await
            .expect("more data")
            .expect("no error");
        out.extend_from_slice(&chunk);
    }
    out
}

fn words(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

async fn acts_like_a_normal_stream(fixture: Fixture) {
    let ctx = fixture.context().await;
    let stream = ctx
        .resumable_stream("s", fixed_source(words("1 2 3 ")), None)
        .await
        .unwrap()
        .expect("a new stream");
    assert_eq!(stream.role(), Role::Producer);
    assert_eq!(read_all(stream).await, (b"1 2 3 ".to_vec(), None));
    assert_eq!(
        fixture.get("resumable-stream:rs:sentinel:s").unwrap(),
        "DONE"
    );
}

async fn resuming_a_done_stream_answers_done(fixture: Fixture) {
    let ctx = fixture.context().await;
    let stream = ctx
        .resumable_stream("s", fixed_source(words("a b")), None)
        .await
        .unwrap()
        .unwrap();
    read_all(stream).await;
    let other = fixture.context().await;
    let again = other
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap();
    assert!(again.is_none());
    assert!(matches!(
        other.resume_existing_stream("s", None).await.unwrap(),
        Resumed::Done
    ));
}

async fn reverse_read_order(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("1\n".into())).unwrap();
    let resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resumer.role(), Role::Resumer);
    tx.send(Ok("2\n".into())).unwrap();
    drop(tx);
    // The resumer is read to the end before the producer's reader reads anything.
    assert_eq!(read_all(resumer).await.0, b"1\n2\n");
    assert_eq!(read_all(producer).await.0, b"1\n2\n");
}

async fn resume_in_progress(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let mut producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("1\n".into())).unwrap();
    tx.send(Ok("2\n".into())).unwrap();
    assert_eq!(read_exactly(&mut producer, 4).await, b"1\n2\n");
    let resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("3\n".into())).unwrap();
    drop(tx);
    assert_eq!(read_all(resumer).await.0, b"1\n2\n3\n");
    assert_eq!(read_all(producer).await.0, b"3\n");
}

async fn it_really_streams_producer_first(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let mut producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("first".into())).unwrap();
    assert_eq!(read_exactly(&mut producer, 5).await, b"first");
    let mut resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_exactly(&mut resumer, 5).await, b"first");
    // Each later chunk reaches both readers before the next one is produced.
    for chunk in ["a", "b", "c"] {
        tx.send(Ok(chunk.into())).unwrap();
        assert_eq!(read_exactly(&mut producer, 1).await, chunk.as_bytes());
        assert_eq!(read_exactly(&mut resumer, 1).await, chunk.as_bytes());
    }
    drop(tx);
    assert_eq!(read_all(resumer).await, (vec![], None));
}

async fn it_really_streams_consumer_first(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    let mut resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    for chunk in ["x", "y"] {
        tx.send(Ok(chunk.into())).unwrap();
        assert_eq!(read_exactly(&mut resumer, 1).await, chunk.as_bytes());
    }
    drop(tx);
    assert_eq!(read_all(resumer).await, (vec![], None));
    assert_eq!(read_all(producer).await.0, b"xy");
}

async fn several_resumers(fixture: Fixture) {
    let a = fixture.context().await;
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("one ".into())).unwrap();
    let mut resumers = Vec::new();
    for _ in 0..3 {
        let ctx = fixture.context().await;
        resumers.push((
            ctx.resumable_stream("s", fixed_source(vec![]), None)
                .await
                .unwrap()
                .unwrap(),
            ctx,
        ));
    }
    tx.send(Ok("two".into())).unwrap();
    drop(tx);
    for (resumer, _ctx) in resumers {
        assert_eq!(read_all(resumer).await, (b"one two".to_vec(), None));
    }
    assert_eq!(read_all(producer).await.0, b"one two");
}

async fn two_streams_kept_apart(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx1, s1) = manual_source();
    let (tx2, s2) = manual_source();
    let p1 = a.resumable_stream("one", s1, None).await.unwrap().unwrap();
    let p2 = a.resumable_stream("two", s2, None).await.unwrap().unwrap();
    tx1.send(Ok("1a".into())).unwrap();
    tx2.send(Ok("2a".into())).unwrap();
    let r1 = b
        .resumable_stream("one", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    let r2 = b
        .resumable_stream("two", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    tx1.send(Ok("1b".into())).unwrap();
    tx2.send(Ok("2b".into())).unwrap();
    drop((tx1, tx2));
    assert_eq!(read_all(r1).await.0, b"1a1b");
    assert_eq!(read_all(r2).await.0, b"2a2b");
    assert_eq!(read_all(p1).await.0, b"1a1b");
    assert_eq!(read_all(p2).await.0, b"2a2b");
}

async fn skips_of_0_2_and_4(fixture: Fixture) {
    for (skip, expected) in [(0u64, "1\n2\n3\n"), (2, "2\n3\n"), (4, "3\n")] {
        let id = format!("skip-{skip}");
        let (a, b) = (fixture.context().await, fixture.context().await);
        let (tx, source) = manual_source();
        let mut producer = a
            .resumable_stream(&id, source, None)
            .await
            .unwrap()
            .unwrap();
        tx.send(Ok("1\n".into())).unwrap();
        tx.send(Ok("2\n".into())).unwrap();
        // A skip applies to what was produced when the request arrives: wait for it.
        read_exactly(&mut producer, 4).await;
        let resumer = b
            .resumable_stream(&id, fixed_source(vec![]), Some(skip))
            .await
            .unwrap()
            .unwrap();
        tx.send(Ok("3\n".into())).unwrap();
        drop(tx);
        assert_eq!(
            read_all(resumer).await.0,
            expected.as_bytes(),
            "skip {skip}"
        );
        drop(producer);
    }
}

async fn done_once_finished(fixture: Fixture) {
    let ctx = fixture.context().await;
    let stream = ctx
        .resumable_stream("s", fixed_source(words("x")), None)
        .await
        .unwrap()
        .unwrap();
    read_all(stream).await;
    assert!(ctx
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        ctx.has_existing_stream("s").await.unwrap(),
        StreamState::Done
    );
}

async fn explicit_create_and_resume(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    assert!(matches!(
        b.resume_existing_stream("s", None).await.unwrap(),
        Resumed::NotFound
    ));
    let (tx, source) = manual_source();
    let mut producer = a.create_new_resumable_stream("s", source).await.unwrap();
    assert_eq!(fixture.get("resumable-stream:rs:sentinel:s").unwrap(), "1");
    tx.send(Ok("hello".into())).unwrap();
    read_exactly(&mut producer, 5).await;
    let Resumed::Stream(resumer) = b.resume_existing_stream("s", Some(1)).await.unwrap() else {
        panic!("the stream is active");
    };
    tx.send(Ok(" world".into())).unwrap();
    drop(tx);
    assert_eq!(read_all(resumer).await.0, b"ello world");
    assert_eq!(read_all(producer).await.0, b" world");
    assert!(matches!(
        b.resume_existing_stream("s", None).await.unwrap(),
        Resumed::Done
    ));
}

async fn state_at_each_stage(fixture: Fixture) {
    let ctx = fixture.context().await;
    assert_eq!(
        ctx.has_existing_stream("s").await.unwrap(),
        StreamState::None
    );
    let (tx, source) = manual_source();
    let producer = ctx
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ctx.has_existing_stream("s").await.unwrap(),
        StreamState::Active
    );
    drop(tx);
    read_all(producer).await;
    assert_eq!(
        ctx.has_existing_stream("s").await.unwrap(),
        StreamState::Done
    );
}

async fn four_resumers_joining_while_chunks_flow_are_byte_exact(fixture: Fixture) {
    let a = fixture.context().await;
    let chunks: Vec<String> = (0..4000)
        .map(|i| format!("{i:08}:{}\n", "x".repeat(54)))
        .collect();
    let expected: Vec<u8> = chunks.concat().into_bytes();
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    let mut readers = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        tx.send(Ok(chunk)).unwrap();
        if i % 1000 == 500 {
            // The join happens while earlier publishes are still in flight.
            let ctx = fixture.context().await;
            let stream = ctx
                .resumable_stream("s", fixed_source(vec![]), None)
                .await
                .unwrap()
                .unwrap();
            readers.push(tokio::spawn(async move {
                let out = read_all(stream).await;
                drop(ctx);
                out
            }));
        }
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    drop(tx);
    assert_eq!(readers.len(), 4);
    for reader in readers {
        let (bytes, error) = reader.await.unwrap();
        assert!(error.is_none(), "{error:?}");
        assert!(
            bytes == expected,
            "a resumer got {} bytes, expected {} exactly",
            bytes.len(),
            expected.len()
        );
    }
    assert!(read_all(producer).await.0 == expected);
}

async fn utf16_skips_across_non_ascii_text(fixture: Fixture) {
    let chunks = ["héllo", " ", "日本", " ", "🚀", " done"];
    let units: Vec<u16> = chunks.concat().encode_utf16().collect();
    let (a, b) = (fixture.context().await, fixture.context().await);
    for skip in 0..=units.len() {
        let id = format!("utf16-{skip}");
        let (tx, source) = manual_source();
        let producer = a
            .resumable_stream(&id, source, None)
            .await
            .unwrap()
            .unwrap();
        for chunk in chunks {
            tx.send(Ok(chunk.to_owned())).unwrap();
        }
        let mut producer = producer;
        read_exactly(&mut producer, chunks.concat().len()).await;
        let resumer = b
            .resumable_stream(&id, fixed_source(vec![]), Some(skip as u64))
            .await
            .unwrap()
            .unwrap();
        drop(tx);
        let expected = String::from_utf16_lossy(&units[skip..]);
        assert_eq!(
            read_all(resumer).await.0,
            expected.as_bytes(),
            "skip {skip}"
        );
    }
}

async fn a_thousand_concurrent_streams(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("many-{i}");
            let (tx, source) = manual_source();
            let producer = a
                .resumable_stream(&id, source, None)
                .await
                .unwrap()
                .unwrap();
            tx.send(Ok(format!("first {i};"))).unwrap();
            let resumer = b
                .resumable_stream(&id, fixed_source(vec![]), None)
                .await
                .unwrap()
                .unwrap();
            tx.send(Ok(format!("second {i}"))).unwrap();
            drop(tx);
            let expected = format!("first {i};second {i}").into_bytes();
            assert_eq!(read_all(resumer).await, (expected.clone(), None));
            assert_eq!(read_all(producer).await, (expected, None));
        }));
    }
    for task in tasks {
        within("1000 streams", task).await.unwrap();
    }
}

async fn malformed_requests_do_not_disturb_streams(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("abc".into())).unwrap();
    let garbage: &[&[u8]] = &[
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        br#"{"listenerId": 5}"#,
        br#"{"listenerId": "x", "skipCharacters": "2"}"#,
        br#"{"listenerId": ""}"#,
    ];
    for message in garbage {
        assert_eq!(fixture.publish("resumable-stream:rs:request:s", message), 1);
    }
    let resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("def".into())).unwrap();
    drop(tx);
    assert_eq!(read_all(resumer).await.0, b"abcdef");
    assert_eq!(read_all(producer).await.0, b"abcdef");
    assert_eq!(a.stats().malformed_requests, garbage.len() as u64);
}

async fn a_gone_producer_fails_the_resumer_with_ack_timeout(fixture: Fixture) {
    fixture.set("resumable-stream:rs:sentinel:s", "1");
    let ctx = fixture
        .context_with(Config::default().with_ack_timeout(Duration::from_millis(200)))
        .await;
    let result = within(
        "resume of a gone producer",
        ctx.resumable_stream("s", fixed_source(vec![]), None),
    )
    .await;
    assert!(
        matches!(result, Err(Error::AckTimeout { .. })),
        "{result:?}"
    );
    let explicit = within("explicit resume", ctx.resume_existing_stream("s", None)).await;
    assert!(
        matches!(explicit, Err(Error::AckTimeout { .. })),
        "{explicit:?}"
    );
}

async fn unexpected_sentinels_are_typed_errors(fixture: Fixture) {
    fixture.set("resumable-stream:rs:sentinel:s", "garbage");
    let ctx = fixture.context().await;
    let idempotent = ctx.resumable_stream("s", fixed_source(vec![]), None).await;
    assert!(
        matches!(idempotent, Err(Error::UnexpectedSentinel { .. })),
        "{idempotent:?}"
    );
    let resumed = ctx.resume_existing_stream("s", None).await;
    assert!(
        matches!(resumed, Err(Error::UnexpectedSentinel { .. })),
        "{resumed:?}"
    );
    let state = ctx.has_existing_stream("s").await;
    assert!(
        matches!(state, Err(Error::UnexpectedSentinel { .. })),
        "{state:?}"
    );
    if let Fixture::Redis(server) = &fixture {
        // A key of the wrong type: Redis answers WRONGTYPE.
        let _: () = redis::cmd("HSET")
            .arg("resumable-stream:rs:sentinel:h")
            .arg("f")
            .arg("v")
            .query(&mut server.connection())
            .unwrap();
        let wrong = ctx.resumable_stream("h", fixed_source(vec![]), None).await;
        assert!(
            matches!(
                &wrong,
                Err(Error::Redis {
                    command: "INCR",
                    ..
                })
            ),
            "{wrong:?}"
        );
        let wrong = ctx.has_existing_stream("h").await;
        assert!(
            matches!(&wrong, Err(Error::Redis { command: "GET", .. })),
            "{wrong:?}"
        );
    }
}

async fn a_source_error_reaches_the_local_reader(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("partial".into())).unwrap();
    let resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Err("model crashed".into())).unwrap();
    let (bytes, error) = read_all(producer).await;
    assert_eq!(bytes, b"partial");
    assert_eq!(error, Some(Error::Source("model crashed".into())));
    // A v1-shaped listener sees a clean end rather than hanging.
    assert_eq!(read_all(resumer).await, (b"partial".to_vec(), None));
    assert_eq!(
        fixture.get("resumable-stream:rs:sentinel:s").unwrap(),
        "DONE"
    );
}

async fn the_producer_finishes_without_its_local_reader(fixture: Fixture) {
    let (a, b) = (fixture.context().await, fixture.context().await);
    let (tx, source) = manual_source();
    let producer = a
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    tx.send(Ok("one ".into())).unwrap();
    let resumer = b
        .resumable_stream("s", fixed_source(vec![]), None)
        .await
        .unwrap()
        .unwrap();
    drop(producer);
    tx.send(Ok("two".into())).unwrap();
    drop(tx);
    assert_eq!(read_all(resumer).await, (b"one two".to_vec(), None));
    assert_eq!(
        fixture.get("resumable-stream:rs:sentinel:s").unwrap(),
        "DONE"
    );
}

async fn dropping_the_context_ends_its_streams(fixture: Fixture) {
    let ctx = fixture.context().await;
    let (_tx, source) = manual_source();
    let producer = ctx
        .resumable_stream("s", source, None)
        .await
        .unwrap()
        .unwrap();
    drop(ctx);
    assert_eq!(read_all(producer).await, (vec![], Some(Error::Closed)));
}
