//! Durable mode's behaviour cases, for every driver and store: readers on another
//! context reading the log byte-exact while chunks flow, a finished stream replayed
//! whole, chunk positions in the log (past the end, before what it retains), a
//! producer whose context dies, many streams followed by few blocking reads, and a
//! store that cannot hold a log.

use crate::harness::{fixed, manual, Context, Harness, Resumed};
use crate::store::Store;
use crate::suite::{read_all, read_exactly};
use resumable_stream::wire::log::{decode_range, LogEntry};
use resumable_stream::{Config, Durable, Error, Position, Reply, Role, StreamId, StreamState};
use std::time::{Duration, Instant};

/// The heartbeat of these cases: the lease lapses after three.
const HEARTBEAT: Duration = Duration::from_millis(100);

fn durable(harness: &dyn Harness, store: &Store) -> Box<dyn Context> {
    let config = Config::default()
        .with_heartbeat_interval(HEARTBEAT)
        .with_durable(Durable::default());
    harness.context(store, config)
}

fn log_key(id: &str) -> String {
    format!("resumable-stream:rs:log:{id}")
}

/// The chunks in the log of stream `id` (default prefix), joined, as Redis holds them:
/// what a durable reader must have printed when the producer died.
///
/// # Panics
/// When the key is not a log of ours.
pub fn logged(connection: &mut redis::Connection, id: &str) -> Vec<u8> {
    let mut data = Vec::new();
    for entry in log_entries(connection, &log_key(id)) {
        if let LogEntry::Chunks { chunks, .. } = entry {
            chunks.iter().for_each(|c| data.extend_from_slice(c));
        }
    }
    data
}

/// Every entry of the log at `key`, decoded, as Redis holds it (`XRANGE key - +`).
///
/// # Panics
/// When the key is not a log of ours.
pub fn log_entries(connection: &mut redis::Connection, key: &str) -> Vec<LogEntry> {
    let value: redis::Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(connection)
        .expect("XRANGE");
    decode_range(&to_reply(value)).expect("a log of ours")
}

/// A redis-rs value in the engine's neutral shape.
fn to_reply(value: redis::Value) -> Reply {
    match value {
        redis::Value::Nil => Reply::Nil,
        redis::Value::BulkString(data) => Reply::Data(data.into()),
        redis::Value::Array(items) => Reply::Array(items.into_iter().map(to_reply).collect()),
        other => Reply::Other(format!("{other:?}")),
    }
}

fn existing(context: &dyn Context, id: &str) -> Box<dyn crate::harness::Reader> {
    match context.resume_existing_stream(id, None) {
        Ok(Resumed::Stream(reader)) => {
            assert_eq!(reader.role(), Role::Resumer);
            reader
        }
        Ok(other) => panic!("expected a stream to resume, got {}", describe(&other)),
        Err(error) => panic!("expected a stream to resume, got {error}"),
    }
}

fn describe(resumed: &Resumed) -> &'static str {
    match resumed {
        Resumed::Stream(_) => "a stream",
        Resumed::Done => "done",
        Resumed::NotFound => "not found",
    }
}

/// Readers on another context read the log byte-exact, joining before and while
/// chunks flow; once it ended, the explicit and the idempotent call replay it whole.
pub fn durable_readers_elsewhere_are_byte_exact_and_a_finished_stream_replays(
    harness: &dyn Harness,
    store: &Store,
) {
    let (a, b) = (durable(harness, store), durable(harness, store));
    let (feed, source) = manual();
    let mut producer = a
        .resumable_stream("d", source, None)
        .expect("no error")
        .expect("a new stream");
    let mut expected = String::new();
    let mut readers = Vec::new();
    for i in 0..40 {
        let chunk = format!("{i}·é🚀 ");
        feed.chunk(chunk.clone());
        expected.push_str(&chunk);
        read_exactly(&mut producer, chunk.len());
        if i % 10 == 0 {
            readers.push(existing(&*b, "d"));
        }
    }
    drop(feed);
    assert_eq!(read_all(producer), (vec![], None));
    for reader in readers {
        assert_eq!(read_all(reader), (expected.clone().into_bytes(), None));
    }
    assert!(store.stream_len(&log_key("d")).is_some_and(|n| n >= 2));
    assert_eq!(b.has_existing_stream("d").unwrap(), StreamState::Done);
    let late = existing(&*b, "d");
    assert_eq!(read_all(late), (expected.clone().into_bytes(), None));
    let idempotent = b
        .resumable_stream("d", fixed(Vec::<String>::new()), None)
        .expect("no error")
        .expect("a replay");
    assert_eq!(read_all(idempotent), (expected.into_bytes(), None));
}

/// A chunk position (an SSE `Last-Event-ID`) maps straight into the log; a position
/// past the end, or before what the log retains, is a typed error and no data.
pub fn durable_chunk_positions_in_the_log(harness: &dyn Harness, store: &Store) {
    let (a, b) = (durable(harness, store), durable(harness, store));
    let chunks = ["a0 ", "a1 ", "a2 ", "a3 ", "a4 "];
    let (feed, source) = manual();
    let mut producer = a.resumable_stream("p", source, None).unwrap().unwrap();
    for chunk in chunks {
        // Paced past the linger, so that most chunks get entries of their own.
        feed.chunk(chunk);
        read_exactly(&mut producer, chunk.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(feed);
    assert_eq!(read_all(producer).1, None);
    let at = |k: u64| {
        b.resumable_stream_at("p", fixed(Vec::<String>::new()), Position::Chunk(k))
            .map(|reader| read_all(reader.expect("a replay")))
    };
    for k in 0..=5u64 {
        let expected = chunks[k as usize..].concat().into_bytes();
        assert_eq!(at(k).unwrap(), (expected, None), "from chunk {k}");
    }
    match at(9) {
        Ok((
            data,
            Some(Error::PastEnd {
                position: 9,
                length: 5,
                ..
            }),
        )) => assert!(data.is_empty()),
        Err(Error::PastEnd { .. }) => {}
        other => panic!("expected PastEnd, got {other:?}"),
    }
    // An operator trims the log's start: what is no longer there is refused.
    store.trim_log_before(&log_key("p"), StreamId::new(3, 0));
    match at(0) {
        Ok((data, Some(Error::BeforeRetained { position: 0, .. }))) => assert!(data.is_empty()),
        Err(Error::BeforeRetained { .. }) => {}
        other => panic!("expected BeforeRetained, got {other:?}"),
    }
    // Anything the log retains reads as before.
    assert_eq!(at(4).unwrap(), (b"a4 ".to_vec(), None));
    // Trimmed to its end entry: no chunk is retained.
    store.trim_log_before(&log_key("p"), StreamId::new(u64::MAX, 0));
    match at(4) {
        Ok((
            data,
            Some(Error::BeforeRetained {
                position: 4,
                retained_from: 5,
                ..
            }),
        )) => {
            assert!(data.is_empty())
        }
        Err(Error::BeforeRetained {
            position: 4,
            retained_from: 5,
            ..
        }) => {}
        other => panic!("expected BeforeRetained, got {other:?}"),
    }
}

/// The producer's context dies mid-stream (its lease lapses): its resumer elsewhere
/// gets every chunk that reached the log, then `ProducerGone`, within a few
/// heartbeats; a reader that comes later gets the same at once.
pub fn durable_a_producer_that_dies_leaves_its_log(harness: &dyn Harness, store: &Store) {
    let (a, b) = (durable(harness, store), durable(harness, store));
    let (feed, source) = manual();
    let mut producer = a.resumable_stream("g", source, None).unwrap().unwrap();
    for chunk in ["kept ", "also "] {
        feed.chunk(chunk);
        read_exactly(&mut producer, chunk.len());
    }
    let mut resumer = existing(&*b, "g");
    assert_eq!(read_exactly(&mut resumer, 10), b"kept also ");
    let died = Instant::now();
    drop(producer);
    drop(a);
    let (rest, error) = read_all(resumer);
    let took = died.elapsed();
    assert!(rest.is_empty());
    assert!(
        matches!(error, Some(Error::ProducerGone { .. })),
        "{error:?}"
    );
    // Three heartbeats of lease, one of the reader's check, and slack for a loaded
    // machine.
    let bound = HEARTBEAT * 4 + Duration::from_secs(3);
    assert!(took <= bound, "ProducerGone after {took:?}");
    drop(feed);
    assert_eq!(b.has_existing_stream("g").unwrap(), StreamState::Done);
    let later = existing(&*b, "g");
    let (data, error) = read_all(later);
    assert_eq!(data, b"kept also ");
    assert!(
        matches!(error, Some(Error::ProducerGone { .. })),
        "{error:?}"
    );
}

/// Many streams, each followed by two readers of one context: one tail per stream,
/// few blocking reads for them all (on Redis, few blocked clients), every reader exact.
pub fn durable_many_streams_share_few_blocking_reads(harness: &dyn Harness, store: &Store) {
    let (a, b) = (durable(harness, store), durable(harness, store));
    let streams = 100;
    let mut feeds = Vec::new();
    let mut producers = Vec::new();
    for i in 0..streams {
        let (feed, source) = manual();
        producers.push(
            a.resumable_stream(&format!("m{i}"), source, None)
                .unwrap()
                .unwrap(),
        );
        feeds.push(feed);
    }
    for (feed, producer) in feeds.iter().zip(&mut producers) {
        feed.chunk("first ");
        read_exactly(producer, 6);
    }
    let mut readers: Vec<_> = (0..streams)
        .flat_map(|i| {
            [
                existing(&*b, &format!("m{i}")),
                existing(&*b, &format!("m{i}")),
            ]
        })
        .collect();
    for reader in &mut readers {
        assert_eq!(read_exactly(reader, 6), b"first ");
    }
    // Every reader now follows live: the blocking reads in flight are few.
    if let Some(blocked) = store.blocked_clients() {
        assert!(
            blocked <= 8,
            "{blocked} blocked clients for {streams} streams"
        );
    }
    for (feed, producer) in feeds.iter().zip(&mut producers) {
        feed.chunk("second");
        read_exactly(producer, 6);
    }
    drop(feeds);
    for producer in producers {
        assert_eq!(read_all(producer), (vec![], None));
    }
    for reader in readers {
        assert_eq!(read_all(reader), (b"second".to_vec(), None));
    }
}

/// A store that cannot hold a log (a custom publisher/subscriber has no streams): the
/// durable producer's reader fails with a typed error, and nothing hangs.
pub fn durable_without_a_log_store_is_a_typed_error(harness: &dyn Harness, store: &Store) {
    let a = durable(harness, store);
    let (feed, source) = manual();
    let mut producer = match a.resumable_stream("x", source, None) {
        Ok(Some(producer)) => producer,
        Err(Error::Redis { .. }) => return,
        other => panic!(
            "expected a stream or a typed error, got {:?}",
            other.map(|r| r.is_some())
        ),
    };
    feed.chunk("a");
    let mut error = None;
    while let Some(item) = producer.next() {
        if let Err(e) = item {
            error = Some(e);
            break;
        }
    }
    assert!(matches!(error, Some(Error::Redis { .. })), "{error:?}");
}
