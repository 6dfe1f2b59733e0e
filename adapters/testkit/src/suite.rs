//! The behaviour suite, written once for every driver: every behaviour of the deployed
//! library's own suite, and what it leaves unchecked (byte-exact joins while chunks
//! flow, non-ASCII skips, a thousand streams, malformed input, dead producers, dead
//! Redis, the exact commands on the wire).

use crate::harness::{fixed, manual, Context, Harness, Reader, Resumed};
use crate::redis_server::free_port;
use crate::store::Store;
use resumable_stream::{Config, Error, Role, StreamState};
use std::time::{Duration, Instant};

/// Reads a stream to its end: the bytes, and the error it ended with, if any.
pub fn read_all(mut reader: Box<dyn Reader>) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    while let Some(item) = reader.next() {
        match item {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(error) => return (out, Some(error)),
        }
    }
    (out, None)
}

/// Reads exactly `len` bytes.
pub fn read_exactly(reader: &mut Box<dyn Reader>, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        match reader.next() {
            Some(Ok(chunk)) => out.extend_from_slice(&chunk),
            other => panic!(
                "expected more data after {} bytes, got {other:?}",
                out.len()
            ),
        }
    }
    out
}

fn ctx(harness: &dyn Harness, store: &Store) -> Box<dyn Context> {
    harness.context(store, Config::default())
}

fn new_stream(context: &dyn Context, id: &str, source: crate::harness::Source) -> Box<dyn Reader> {
    context
        .resumable_stream(id, source, None)
        .expect("no error")
        .expect("a new stream")
}

fn resume(context: &dyn Context, id: &str, skip: Option<u64>) -> Box<dyn Reader> {
    let reader = context
        .resumable_stream(id, fixed(Vec::<String>::new()), skip)
        .expect("no error")
        .expect("an active stream");
    assert_eq!(reader.role(), Role::Resumer);
    reader
}

const SENTINEL: &str = "resumable-stream:rs:sentinel:s";

/// A single producer reads its own stream to the end; the sentinel says DONE.
pub fn acts_like_a_normal_stream(harness: &dyn Harness, store: &Store) {
    let a = ctx(harness, store);
    let stream = new_stream(&*a, "s", fixed(["1 ", "2 ", "3 "]));
    assert_eq!(stream.role(), Role::Producer);
    assert_eq!(read_all(stream), (b"1 2 3 ".to_vec(), None));
    assert_eq!(store.get(SENTINEL).unwrap(), "DONE");
}

/// The idempotent and the explicit calls on a finished stream answer "done".
pub fn resuming_a_done_stream_answers_done(harness: &dyn Harness, store: &Store) {
    let a = ctx(harness, store);
    read_all(new_stream(&*a, "s", fixed(["a"])));
    let b = ctx(harness, store);
    assert!(b
        .resumable_stream("s", fixed(Vec::<String>::new()), None)
        .unwrap()
        .is_none());
    assert!(matches!(
        b.resume_existing_stream("s", None).unwrap(),
        Resumed::Done
    ));
}

/// The resumer is read to its end before the producer's reader reads anything.
pub fn reverse_read_order(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    feed.chunk("1\n");
    let resumer = resume(&*b, "s", None);
    feed.chunk("2\n");
    drop(feed);
    assert_eq!(read_all(resumer).0, b"1\n2\n");
    assert_eq!(read_all(producer).0, b"1\n2\n");
}

/// A resumer joining mid-stream gets the catch-up and the rest.
pub fn resume_in_progress(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    feed.chunk("1\n");
    feed.chunk("2\n");
    assert_eq!(read_exactly(&mut producer, 4), b"1\n2\n");
    let resumer = resume(&*b, "s", None);
    feed.chunk("3\n");
    drop(feed);
    assert_eq!(read_all(resumer).0, b"1\n2\n3\n");
    assert_eq!(read_all(producer).0, b"3\n");
}

/// Each chunk reaches every reader before the next one is produced.
pub fn it_really_streams_producer_first(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    feed.chunk("first");
    assert_eq!(read_exactly(&mut producer, 5), b"first");
    let mut resumer = resume(&*b, "s", None);
    assert_eq!(read_exactly(&mut resumer, 5), b"first");
    for chunk in ["a", "b", "c"] {
        feed.chunk(chunk);
        assert_eq!(read_exactly(&mut producer, 1), chunk.as_bytes());
        assert_eq!(read_exactly(&mut resumer, 1), chunk.as_bytes());
    }
    drop(feed);
    assert_eq!(read_all(resumer), (vec![], None));
}

/// A resumer that joins before any chunk gets each chunk as it is produced.
pub fn it_really_streams_consumer_first(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    let mut resumer = resume(&*b, "s", None);
    for chunk in ["x", "y"] {
        feed.chunk(chunk);
        assert_eq!(read_exactly(&mut resumer, 1), chunk.as_bytes());
    }
    drop(feed);
    assert_eq!(read_all(resumer), (vec![], None));
    assert_eq!(read_all(producer).0, b"xy");
}

/// Three resumers on three instances all get the whole stream.
pub fn several_resumers(harness: &dyn Harness, store: &Store) {
    let a = ctx(harness, store);
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    feed.chunk("one ");
    let contexts: Vec<_> = (0..3).map(|_| ctx(harness, store)).collect();
    let resumers: Vec<_> = contexts.iter().map(|c| resume(&**c, "s", None)).collect();
    feed.chunk("two");
    drop(feed);
    for resumer in resumers {
        assert_eq!(read_all(resumer), (b"one two".to_vec(), None));
    }
    assert_eq!(read_all(producer).0, b"one two");
}

/// Two streams of one context never mix.
pub fn two_streams_kept_apart(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed1, s1) = manual();
    let (feed2, s2) = manual();
    let p1 = new_stream(&*a, "one", s1);
    let p2 = new_stream(&*a, "two", s2);
    feed1.chunk("1a");
    feed2.chunk("2a");
    let r1 = resume(&*b, "one", None);
    let r2 = resume(&*b, "two", None);
    feed1.chunk("1b");
    feed2.chunk("2b");
    drop((feed1, feed2));
    assert_eq!(read_all(r1).0, b"1a1b");
    assert_eq!(read_all(r2).0, b"2a2b");
    assert_eq!(read_all(p1).0, b"1a1b");
    assert_eq!(read_all(p2).0, b"2a2b");
}

/// Skips of 0, 2 and 4 characters.
pub fn skips_of_0_2_and_4(harness: &dyn Harness, store: &Store) {
    for (skip, expected) in [(0u64, "1\n2\n3\n"), (2, "2\n3\n"), (4, "3\n")] {
        let id = format!("skip-{skip}");
        let (a, b) = (ctx(harness, store), ctx(harness, store));
        let (feed, source) = manual();
        let mut producer = new_stream(&*a, &id, source);
        feed.chunk("1\n");
        feed.chunk("2\n");
        // A skip applies to what was produced when the request arrives: wait for it.
        read_exactly(&mut producer, 4);
        let resumer = resume(&*b, &id, Some(skip));
        feed.chunk("3\n");
        drop(feed);
        assert_eq!(read_all(resumer).0, expected.as_bytes(), "skip {skip}");
    }
}

/// A finished stream is "done" for every later call, right after its reader ended.
pub fn done_once_finished(harness: &dyn Harness, store: &Store) {
    let a = ctx(harness, store);
    read_all(new_stream(&*a, "s", fixed(["x"])));
    assert!(a
        .resumable_stream("s", fixed(Vec::<String>::new()), None)
        .unwrap()
        .is_none());
    assert_eq!(a.has_existing_stream("s").unwrap(), StreamState::Done);
}

/// Explicit create and resume: not found, stream, done.
pub fn explicit_create_and_resume(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    assert!(matches!(
        b.resume_existing_stream("s", None).unwrap(),
        Resumed::NotFound
    ));
    let (feed, source) = manual();
    let mut producer = a.create_new_resumable_stream("s", source).unwrap();
    assert_eq!(store.get(SENTINEL).unwrap(), "1");
    feed.chunk("hello");
    read_exactly(&mut producer, 5);
    let Resumed::Stream(resumer) = b.resume_existing_stream("s", Some(1)).unwrap() else {
        panic!("the stream is active");
    };
    feed.chunk(" world");
    drop(feed);
    assert_eq!(read_all(resumer).0, b"ello world");
    assert_eq!(read_all(producer).0, b" world");
    assert!(matches!(
        b.resume_existing_stream("s", None).unwrap(),
        Resumed::Done
    ));
}

/// `has_existing_stream` before, during and after.
pub fn state_at_each_stage(harness: &dyn Harness, store: &Store) {
    let a = ctx(harness, store);
    assert_eq!(a.has_existing_stream("s").unwrap(), StreamState::None);
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    assert_eq!(a.has_existing_stream("s").unwrap(), StreamState::Active);
    drop(feed);
    read_all(producer);
    assert_eq!(a.has_existing_stream("s").unwrap(), StreamState::Done);
}

/// Four resumers join a 4000-chunk stream while its chunks flow: each gets every byte
/// exactly once, in order.
pub fn four_resumers_joining_while_chunks_flow_are_byte_exact(
    harness: &dyn Harness,
    store: &Store,
) {
    let a = ctx(harness, store);
    let chunks: Vec<String> = (0..4000)
        .map(|i| format!("{i:08}:{}\n", "x".repeat(54)))
        .collect();
    let expected: Vec<u8> = chunks.concat().into_bytes();
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    let mut joined = Vec::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        feed.chunk(chunk);
        if i % 1000 == 500 {
            let context = ctx(harness, store);
            let reader = resume(&*context, "s", None);
            joined.push((context, reader));
        }
    }
    drop(feed);
    assert_eq!(joined.len(), 4);
    for (context, reader) in joined {
        let (bytes, error) = read_all(reader);
        assert!(error.is_none(), "{error:?}");
        assert!(
            bytes == expected,
            "a resumer got {} bytes, expected exactly {}",
            bytes.len(),
            expected.len()
        );
        drop(context);
    }
    assert!(read_all(producer).0 == expected);
}

/// A UTF-16 skip at every offset of "héllo 日本 🚀 done", cuts inside the emoji
/// included, gives what JavaScript's `slice` gives.
pub fn utf16_skips_across_non_ascii_text(harness: &dyn Harness, store: &Store) {
    let chunks = ["héllo", " ", "日本", " ", "🚀", " done"];
    let units: Vec<u16> = chunks.concat().encode_utf16().collect();
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    for skip in 0..=units.len() {
        let id = format!("utf16-{skip}");
        let (feed, source) = manual();
        let mut producer = new_stream(&*a, &id, source);
        for chunk in chunks {
            feed.chunk(chunk);
        }
        read_exactly(&mut producer, chunks.concat().len());
        let resumer = resume(&*b, &id, Some(skip as u64));
        drop(feed);
        let expected = String::from_utf16_lossy(&units[skip..]);
        assert_eq!(read_all(resumer).0, expected.as_bytes(), "skip {skip}");
    }
}

/// A thousand streams open at once on two instances.
pub fn a_thousand_concurrent_streams(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let mut streams = Vec::new();
    for i in 0..1000 {
        let id = format!("many-{i}");
        let (feed, source) = manual();
        let producer = new_stream(&*a, &id, source);
        feed.chunk(format!("first {i};"));
        streams.push((id, feed, producer));
    }
    let mut all = Vec::new();
    for (i, (id, feed, producer)) in streams.into_iter().enumerate() {
        let resumer = resume(&*b, &id, None);
        feed.chunk(format!("second {i}"));
        all.push((producer, resumer));
    }
    for (i, (producer, resumer)) in all.into_iter().enumerate() {
        let expected = format!("first {i};second {i}").into_bytes();
        assert_eq!(read_all(resumer), (expected.clone(), None));
        assert_eq!(read_all(producer), (expected, None));
    }
}

/// Garbage on a request channel is dropped and counted; the stream goes on.
pub fn malformed_requests_do_not_disturb_streams(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    feed.chunk("abc");
    read_exactly(&mut producer, 3);
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
        assert_eq!(store.publish("resumable-stream:rs:request:s", message), 1);
    }
    let resumer = resume(&*b, "s", None);
    feed.chunk("def");
    drop(feed);
    assert_eq!(read_all(resumer).0, b"abcdef");
    assert_eq!(read_all(producer).0, b"def");
    assert_eq!(a.stats().malformed_requests, garbage.len() as u64);
}

/// A sentinel that says "active" with nobody producing: the resumer fails with the
/// acknowledgement timeout, not a hang.
pub fn a_gone_producer_fails_the_resumer_with_ack_timeout(harness: &dyn Harness, store: &Store) {
    store.set(SENTINEL, "1");
    let context = harness.context(
        store,
        Config::default().with_ack_timeout(Duration::from_millis(200)),
    );
    let started = Instant::now();
    let result = context.resumable_stream("s", fixed(Vec::<String>::new()), None);
    assert!(
        matches!(result, Err(Error::AckTimeout { .. })),
        "{:?}",
        result.map(|r| r.is_some())
    );
    let explicit = context.resume_existing_stream("s", None);
    assert!(matches!(explicit, Err(Error::AckTimeout { .. })));
    // Not a timing assertion: a bound that only a hang would cross.
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// A sentinel holding something no library writes, or a key of the wrong type.
pub fn unexpected_sentinels_are_typed_errors(harness: &dyn Harness, store: &Store) {
    store.set(SENTINEL, "garbage");
    let context = ctx(harness, store);
    let idempotent = context.resumable_stream("s", fixed(Vec::<String>::new()), None);
    assert!(matches!(idempotent, Err(Error::UnexpectedSentinel { .. })));
    let resumed = context.resume_existing_stream("s", None);
    assert!(matches!(resumed, Err(Error::UnexpectedSentinel { .. })));
    let state = context.has_existing_stream("s");
    assert!(
        matches!(state, Err(Error::UnexpectedSentinel { .. })),
        "{state:?}"
    );
    if let Store::Redis(server) = store {
        let _: () = redis::cmd("HSET")
            .arg("resumable-stream:rs:sentinel:h")
            .arg("f")
            .arg("v")
            .query(&mut server.connection())
            .unwrap();
        let wrong = context.resumable_stream("h", fixed(Vec::<String>::new()), None);
        assert!(matches!(
            &wrong,
            Err(Error::Redis {
                command: "INCR",
                ..
            })
        ));
        let wrong = context.has_existing_stream("h");
        assert!(
            matches!(&wrong, Err(Error::Redis { command: "GET", .. })),
            "{wrong:?}"
        );
    }
}

/// A source error reaches the local reader and every resumer of ours as
/// `Error::Source`.
pub fn a_source_error_reaches_the_local_reader(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    feed.chunk("partial");
    let resumer = resume(&*b, "s", None);
    feed.fail("model crashed");
    let (bytes, error) = read_all(producer);
    assert_eq!(bytes, b"partial");
    let crashed = Some(Error::Source("model crashed".into()));
    assert_eq!(error, crashed);
    // A resumer of ours gets the same typed error (a v1 one would get a clean end).
    assert_eq!(read_all(resumer), (b"partial".to_vec(), crashed));
    assert_eq!(store.get(SENTINEL).unwrap(), "DONE");
}

/// The producer finishes the stream for its listeners after its own reader left.
pub fn the_producer_finishes_without_its_local_reader(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    feed.chunk("one ");
    let resumer = resume(&*b, "s", None);
    drop(producer);
    feed.chunk("two");
    drop(feed);
    assert_eq!(read_all(resumer), (b"one two".to_vec(), None));
    assert_eq!(store.get(SENTINEL).unwrap(), "DONE");
}

/// Dropping a context ends its readers with `Error::Closed`.
pub fn dropping_the_context_ends_its_streams(harness: &dyn Harness, store: &Store) {
    let a = ctx(harness, store);
    let (_feed, source) = manual();
    let producer = new_stream(&*a, "s", source);
    drop(a);
    assert_eq!(read_all(producer), (vec![], Some(Error::Closed)));
}

/// No Redis at the URL: a typed error, at once; a URL that does not parse: `Config`.
pub fn connecting_to_no_redis_is_a_typed_error(harness: &dyn Harness) {
    let result = harness.redis_context(
        &format!("redis://127.0.0.1:{}/", free_port()),
        Config::default(),
    );
    assert!(matches!(
        result,
        Err(Error::Redis {
            command: "CONNECT",
            ..
        })
    ));
    let invalid = harness.redis_context("not a url", Config::default());
    assert!(matches!(invalid, Err(Error::Config(_))));
}

/// Sharded pub/sub on a backend without it (a single Redis) is refused when the
/// context is built, with a configuration error, not command by command.
pub fn sharded_pubsub_without_a_cluster_is_refused_at_build(harness: &dyn Harness) {
    let server = crate::RedisServer::start();
    let config = Config::default().with_pubsub(resumable_stream::PubSub::Sharded);
    let result = harness.redis_context(&server.url(), config);
    assert!(
        matches!(&result, Err(Error::Config(message)) if message.contains("sharded")),
        "{:?}",
        result.err()
    );
}

/// Redis killed mid-stream and not restarted, with a reconnect window of
/// [`DYING_WINDOW`]: the resumer ends with a typed error, the producer's local reader
/// gets every chunk and the end, new requests fail, each within the window plus
/// [`SLACK`] of the kill. Nothing hangs.
pub fn redis_dying_mid_stream_ends_readers_with_typed_errors(
    harness: &dyn Harness,
    store: &mut Store,
) {
    let context = || {
        let setup = store
            .setup(Config::default())
            .reconnect_window(DYING_WINDOW);
        harness.build(setup).expect("a context")
    };
    let (a, b) = (context(), context());
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    feed.chunk("before");
    assert_eq!(read_exactly(&mut producer, 6), b"before");
    let mut resumer = resume(&*b, "s", None);
    assert_eq!(read_exactly(&mut resumer, 6), b"before");

    store.redis_server().expect("a Redis store").kill();
    let killed = Instant::now();
    let within_bound = |what: &str| {
        let elapsed = killed.elapsed();
        assert!(
            elapsed < DYING_WINDOW + SLACK,
            "{what} took {elapsed:?} after the kill"
        );
    };

    // The drivers retry the connection for the window; the resumer ends with a typed
    // error (the connection is given up, or the producer is silent past the
    // liveness bound), never a hang.
    let ended = resumer.next();
    assert!(
        matches!(
            ended,
            Some(Err(Error::Redis { .. } | Error::ProducerGone { .. }))
        ),
        "the resumer ends with a typed error: {ended:?}"
    );
    within_bound("the resumer's end");
    feed.chunk(" after");
    drop(feed);
    assert_eq!(read_all(producer), (b" after".to_vec(), None));
    within_bound("the producer's end");
    let request = a.has_existing_stream("s");
    assert!(matches!(request, Err(Error::Redis { .. })), "{request:?}");
    within_bound("a request");
}

/// The reconnect window of [`redis_dying_mid_stream_ends_readers_with_typed_errors`]:
/// short, so that the case is quick; the default window (30 s) behaves the same,
/// later.
pub const DYING_WINDOW: Duration = Duration::from_secs(3);

/// What a timed bound of a fault case allows beyond its window: a loaded machine.
pub const SLACK: Duration = Duration::from_secs(10);

/// A stream is cancelled from another instance: its producer stops, every reader ends
/// with `Error::Cancelled`, and the stream is done.
pub fn cancel_from_another_instance(harness: &dyn Harness, store: &Store) {
    use resumable_stream_driver::Cancelled;
    let (a, b, c) = (
        ctx(harness, store),
        ctx(harness, store),
        ctx(harness, store),
    );
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    feed.chunk("some");
    read_exactly(&mut producer, 4);
    let resumer = resume(&*b, "s", None);
    assert_eq!(c.cancel("s").unwrap(), Cancelled::Cancelled);
    assert_eq!(read_all(producer), (vec![], Some(Error::Cancelled)));
    assert_eq!(
        read_all(resumer),
        (b"some".to_vec(), Some(Error::Cancelled))
    );
    assert_eq!(store.get(SENTINEL).unwrap(), "DONE");
    assert_eq!(c.cancel("s").unwrap(), Cancelled::AlreadyDone);
    assert_eq!(c.cancel("nope").unwrap(), Cancelled::NotFound);
    drop(feed);
}

/// A reader resumes at a chunk index (an SSE `Last-Event-ID`), and readers report
/// their chunk position.
pub fn resume_by_chunk_index(harness: &dyn Harness, store: &Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    for chunk in ["c0 ", "c1 ", "c2 "] {
        feed.chunk(chunk);
    }
    read_exactly(&mut producer, 9);
    assert_eq!(producer.chunk_position(), Some(3));
    let mut resumer = b
        .resumable_stream_at(
            "s",
            fixed(Vec::<String>::new()),
            resumable_stream::Position::Chunk(1),
        )
        .unwrap()
        .unwrap();
    assert_eq!(read_exactly(&mut resumer, 6), b"c1 c2 ");
    assert_eq!(resumer.chunk_position(), Some(3));
    feed.chunk("c3");
    drop(feed);
    assert_eq!(read_exactly(&mut resumer, 2), b"c3");
    assert_eq!(resumer.chunk_position(), Some(4));
    assert_eq!(read_all(resumer), (vec![], None));
}

/// Redis restarts mid-stream (killed, then started again on its port, empty): both
/// contexts reconnect, the resumer of ours asks again from the chunk it has, and gets
/// the rest byte-exact; the producer's reader gets everything; nothing hangs.
pub fn redis_restarting_mid_stream_loses_no_byte(harness: &dyn Harness, store: &mut Store) {
    let (a, b) = (ctx(harness, store), ctx(harness, store));
    let (feed, source) = manual();
    let mut producer = new_stream(&*a, "s", source);
    feed.chunk("before ");
    assert_eq!(read_exactly(&mut producer, 7), b"before ");
    let mut resumer = resume(&*b, "s", None);
    assert_eq!(read_exactly(&mut resumer, 7), b"before ");

    let server = store.redis_server().expect("a Redis store");
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();

    feed.chunk("after");
    assert_eq!(read_exactly(&mut producer, 5), b"after");
    // Let the reconnections settle before the end.
    std::thread::sleep(Duration::from_millis(1500));
    feed.chunk(" the end");
    drop(feed);
    assert_eq!(read_all(producer), (b" the end".to_vec(), None));
    assert_eq!(read_all(resumer), (b"after the end".to_vec(), None));
}
