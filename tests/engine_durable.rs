//! Durable mode against the simulated Redis, in virtual time: the log a producer
//! writes, readers catching up and following it, a producer that dies or stalls, a
//! finished stream replayed, positions outside the log, the byte cap, the cost in
//! writes, and the fallback to pub/sub for a producer without a log.

#[path = "support/sim_producer.rs"]
mod sim_producer;

use bytes::Bytes;
use resumable_stream::sim::Sim;
use resumable_stream::wire::log::{decode_range, LogEnding, LogEntry};
use resumable_stream::wire::Names;
use resumable_stream::{Config, Durable, Error, Handle, Op, Position, Role, SkipUnit, StreamId};
use sim_producer::{producer, push};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const HEARTBEAT: Duration = Duration::from_millis(100);

fn durable() -> Config {
    Config::default()
        .with_heartbeat_interval(HEARTBEAT)
        .with_durable(Durable::default())
}

fn sim(nodes: usize) -> Sim {
    Sim::new(nodes, MS, durable())
}

/// A producer of `s` on node 0 that pushed `chunk`, and a reader of it on node 1
/// following its log.
fn producer_and_reader(sim: &mut Sim, chunk: &str) -> (Handle, Handle) {
    let p = producer(sim, "s");
    push(sim, p, chunk);
    sim.advance(20 * MS);
    let r = sim.engine(1).resume_existing_stream("s", None);
    sim.advance(20 * MS);
    (p, r)
}

/// The log of `id`, decoded, as Redis holds it.
fn log_of(sim: &mut Sim, id: &str) -> Vec<LogEntry> {
    let key = Names::new("resumable-stream").log(id);
    let now = sim.now();
    let client = sim.redis().connect();
    let op = Op::XRange {
        key,
        start: StreamId::new(0, 1),
        end: StreamId::MAX,
        count: 100_000,
    };
    let (reply, _) = sim.redis().execute(now, client, &op);
    decode_range(&reply.unwrap()).unwrap()
}

fn chunks_in(entries: &[LogEntry]) -> Vec<u8> {
    let mut data = Vec::new();
    for entry in entries {
        if let LogEntry::Chunks { chunks, .. } = entry {
            chunks.iter().for_each(|c| data.extend_from_slice(c));
        }
    }
    data
}

#[test]
fn a_resumer_reads_the_log_live_and_a_late_one_replays_it_whole() {
    let mut sim = sim(2);
    let (p, live) = producer_and_reader(&mut sim, "hello ");
    for chunk in ["wor", "ld", "!"] {
        push(&mut sim, p, chunk);
        sim.advance(3 * MS);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(0, p).data, b"hello world!");
    assert!(sim.log(0, p).ended);
    let live = sim.log(1, live);
    assert_eq!(live.role, Some(Role::Resumer));
    assert_eq!(live.data, b"hello world!");
    assert!(live.ended, "{live:?}");
    assert_eq!(live.last_chunk, Some(4));

    let entries = log_of(&mut sim, "s");
    assert_eq!(chunks_in(&entries), b"hello world!");
    assert_eq!(
        entries.last(),
        Some(&LogEntry::End {
            ending: LogEnding::Done,
            next: Some(4)
        })
    );
    // After the end, a resume (explicit or idempotent) replays the whole answer.
    let late = sim.engine(1).resume_existing_stream("s", None);
    let idempotent = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    for handle in [late, idempotent] {
        let log = sim.log(1, handle);
        assert_eq!(log.data, b"hello world!", "{log:?}");
        assert!(log.ended && log.error.is_none(), "{log:?}");
    }
}

#[test]
fn a_last_event_id_maps_to_a_log_position() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    for chunk in ["a", "b", "c", "d", "e"] {
        push(&mut sim, p, chunk);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    for k in 0..=5u64 {
        let r = sim
            .engine(1)
            .resume_existing_stream("s", Position::Chunk(k));
        sim.settle();
        let log = sim.log(1, r);
        assert_eq!(log.data, &b"abcde"[k as usize..], "from {k}");
        assert!(log.ended, "from {k}: {log:?}");
    }
    // Past the end: a typed error, no data.
    let r = sim
        .engine(1)
        .resume_existing_stream("s", Position::Chunk(9));
    sim.settle();
    let log = sim.log(1, r);
    assert!(log.data.is_empty());
    assert!(
        matches!(
            log.error,
            Some(Error::PastEnd {
                position: 9,
                length: 5,
                ..
            })
        ),
        "{log:?}"
    );
}

#[test]
fn a_position_before_what_the_log_retains_is_a_typed_error() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    for chunk in ["a", "b", "c"] {
        push(&mut sim, p, chunk);
        sim.advance(10 * MS);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    // An operator trims the log's start (XTRIM MINID): the first entry is gone.
    let key = Names::new("resumable-stream").log("s");
    sim.redis().trim_stream_before(&key, StreamId::new(2, 0));
    let r = sim
        .engine(1)
        .resume_existing_stream("s", Position::Chunk(0));
    sim.settle();
    let log = sim.log(1, r);
    assert!(log.data.is_empty(), "{log:?}");
    assert!(
        matches!(
            log.error,
            Some(Error::BeforeRetained {
                position: 0,
                retained_from: 1,
                ..
            })
        ),
        "{log:?}"
    );
    // From what is retained, it reads on.
    let r = sim
        .engine(1)
        .resume_existing_stream("s", Position::Chunk(1));
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"bc");
}

#[test]
fn a_dead_producer_leaves_its_log_and_readers_learn_it_within_a_few_heartbeats() {
    let mut sim = sim(3);
    let (p, attached) = producer_and_reader(&mut sim, "kept ");
    push(&mut sim, p, "also");
    sim.advance(20 * MS);
    // The producer's process dies: nothing of it reaches Redis any more.
    let killed_at = sim.elapsed();
    sim.partition(0, true);
    sim.advance(HEARTBEAT * 10);
    let log = sim.log(1, attached);
    assert_eq!(log.data, b"kept also");
    assert!(
        matches!(log.error, Some(Error::ProducerGone { .. })),
        "{log:?}"
    );
    let took = log.final_at.unwrap() - killed_at;
    // The lease lives three heartbeats; a quiet tail checks it every heartbeat.
    assert!(took <= HEARTBEAT * 5, "ProducerGone after {took:?}");
    // The first reader recorded the end in the log: a later reader learns it at once.
    assert_eq!(
        log_of(&mut sim, "s").last(),
        Some(&LogEntry::End {
            ending: LogEnding::Gone,
            next: None
        })
    );
    let later = sim.engine(2).resume_existing_stream("s", None);
    let asked_at = sim.elapsed();
    sim.settle();
    let log = sim.log(2, later);
    assert_eq!(log.data, b"kept also");
    assert!(
        matches!(log.error, Some(Error::ProducerGone { .. })),
        "{log:?}"
    );
    assert!(log.final_at.unwrap() - asked_at < HEARTBEAT);
}

#[test]
fn a_stalled_producer_is_fenced_by_redis_once_a_reader_ended_its_log() {
    let mut sim = sim(2);
    let (p, r) = producer_and_reader(&mut sim, "one ");
    // Stalled (cut off) for longer than its lease, then back.
    sim.partition(0, true);
    sim.advance(HEARTBEAT * 8);
    sim.partition(0, false);
    push(&mut sim, p, "two");
    sim.settle();
    let reader = sim.log(1, r);
    assert_eq!(reader.data, b"one ");
    assert!(matches!(reader.error, Some(Error::ProducerGone { .. })));
    let local = sim.log(0, p);
    assert!(
        matches!(local.error, Some(Error::Fenced { .. })),
        "{local:?}"
    );
    assert!(local.stop_source);
    // The log holds what it held when the reader ended it: the append was refused.
    let entries = log_of(&mut sim, "s");
    assert_eq!(chunks_in(&entries), b"one ");
    assert!(matches!(
        entries.last(),
        Some(LogEntry::End {
            ending: LogEnding::Gone,
            ..
        })
    ));
}

#[test]
fn a_slow_producer_with_a_live_lease_is_not_ended() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a");
    sim.advance(20 * MS);
    let r = sim.engine(1).resume_existing_stream("s", None);
    // Its source is silent for twenty heartbeats; its lease is renewed all along.
    sim.advance(HEARTBEAT * 20);
    push(&mut sim, p, "b");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"ab");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn local_readers_of_one_stream_share_one_tail_and_reads_stay_few() {
    let mut sim = sim(2);
    let mut producers = Vec::new();
    for i in 0..20 {
        let id = format!("s{i}");
        producers.push((id.clone(), producer(&mut sim, &id)));
    }
    let mut readers = Vec::new();
    for (id, _) in &producers {
        for _ in 0..3 {
            readers.push(sim.engine(1).resume_existing_stream(id, None));
        }
    }
    sim.advance(20 * MS);
    let (tails, reads) = (sim.engine(1).tails(), sim.engine(1).blocking_reads());
    assert_eq!(tails, 20);
    assert!(reads <= 8, "{reads} blocking reads");
    for round in 0..10 {
        for (_, p) in &producers {
            push(&mut sim, *p, &format!("{round},"));
        }
        sim.advance(7 * MS);
    }
    for (_, p) in &producers {
        sim.engine(0).finish(*p).unwrap();
    }
    sim.settle();
    let expected: String = (0..10).map(|r| format!("{r},")).collect();
    for r in readers {
        let log = sim.log(1, r);
        assert_eq!(log.data, expected.as_bytes());
        assert!(log.ended);
    }
    assert_eq!(
        (sim.engine(1).tails(), sim.engine(1).blocking_reads()),
        (0, 0)
    );
}

#[test]
fn appends_are_batched_and_the_expiry_refreshed_rarely() {
    // Heartbeats of 2 s, as by default; a linger of 200 ms.
    let config =
        Config::default().with_durable(Durable::default().with_linger(Duration::from_millis(200)));
    let mut sim = Sim::new(1, MS, config);
    let p = producer(&mut sim, "s");
    sim.commands_sent.clear();
    // 50 chunks a second for ten seconds: an LLM's pace.
    for i in 0..500 {
        push(&mut sim, p, &format!("{i} "));
        sim.advance(20 * MS);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let sent = |name| sim.commands_sent.get(name).copied().unwrap_or(0);
    // Every write: appends, expiry refreshes, lease renewals (one a heartbeat) and
    // the sentinel's "DONE".
    let writes = sent("XADD") + sent("PEXPIRE") + sent("SET");
    assert!(
        writes <= 50,
        "{writes} writes for 500 chunks: {:?}",
        sim.commands_sent
    );
    // The expiry: once at the first append, then at most every 5 s, then at the end.
    assert!(sent("PEXPIRE") <= 4, "{} PEXPIRE", sent("PEXPIRE"));
    let expected: String = (0..500).map(|i| format!("{i} ")).collect();
    assert_eq!(chunks_in(&log_of(&mut sim, "s")), expected.as_bytes());
}

#[test]
fn a_producer_without_a_log_is_resumed_over_pub_sub() {
    let mut sim = Sim::with_configs(vec![Config::default(), durable()], MS);
    let p = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    push(&mut sim, p, "v1 ");
    let r = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    push(&mut sim, p, "stream");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"v1 stream");
    assert!(log.ended, "{log:?}");
}

#[test]
fn a_durable_producer_still_answers_pub_sub_resumers() {
    let mut sim = Sim::with_configs(vec![durable(), Config::default()], MS);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "to ");
    let r = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    push(&mut sim, p, "v1");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"to v1");
    assert!(sim.log(1, r).ended);
}

#[test]
fn the_byte_cap_ends_the_stream_with_a_typed_error_and_keeps_the_start() {
    let config = durable().with_durable(Durable::default().with_max_log_bytes(8));
    let mut sim = Sim::new(2, MS, config);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "1234");
    push(&mut sim, p, "5678");
    let refused = sim.engine(0).push_chunk(p, Bytes::from_static(b"9"));
    assert!(
        matches!(refused, Err(Error::LogFull { limit: 8, .. })),
        "{refused:?}"
    );
    sim.settle();
    assert!(matches!(sim.log(0, p).error, Some(Error::LogFull { .. })));
    let r = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"12345678");
    assert!(
        matches!(log.error, Some(Error::LogFull { limit: 8, .. })),
        "{log:?}"
    );
}

#[test]
fn a_skip_in_units_reads_from_the_log_across_split_characters() {
    let config = durable().with_skip_unit(SkipUnit::Utf16);
    let mut sim = Sim::new(2, MS, config);
    let p = producer(&mut sim, "s");
    let text = "héllo 🚀 wörld".as_bytes();
    // Split inside the multi-byte characters.
    for part in [&text[..2], &text[2..8], &text[8..10], &text[10..]] {
        sim.engine(0)
            .push_chunk(p, Bytes::copy_from_slice(part))
            .unwrap();
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    for skip in [0u64, 1, 2, 7, 8, 9, 30] {
        let r = sim
            .engine(1)
            .resume_existing_stream("s", Position::Units(skip));
        sim.settle();
        let expected = resumable_stream::skip::catch_up(
            &[Bytes::copy_from_slice(text)],
            skip as i64,
            SkipUnit::Utf16,
        );
        let log = sim.log(1, r);
        assert_eq!(log.data, expected, "skip {skip}");
        assert!(log.ended);
    }
}

#[test]
fn an_append_that_met_a_lost_connection_goes_again_without_a_duplicate() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a");
    sim.advance(20 * MS);
    // Node 0 cannot reach Redis for a moment.
    sim.partition(0, true);
    push(&mut sim, p, "b");
    sim.advance(20 * MS);
    sim.partition(0, false);
    push(&mut sim, p, "c");
    sim.engine(0).finish(p).unwrap();
    // The append goes again after a pause.
    sim.advance(HEARTBEAT * 5);
    assert!(sim.log(0, p).ended, "{:?}", sim.log(0, p));
    let entries = log_of(&mut sim, "s");
    assert_eq!(chunks_in(&entries), b"abc", "{entries:?}");
    let r = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"abc");
}

#[test]
fn a_cancel_from_anywhere_ends_the_log_and_its_readers() {
    let mut sim = sim(3);
    let (p, r) = producer_and_reader(&mut sim, "partial ");
    let cancel = sim.engine(2).cancel("s");
    sim.advance(50 * MS);
    assert!(sim.log(2, cancel).cancelled, "{:?}", sim.log(2, cancel));
    assert!(sim.log(0, p).stop_source);
    let reader = sim.log(1, r);
    assert_eq!(reader.data, b"partial ");
    assert_eq!(reader.error, Some(Error::Cancelled), "{reader:?}");
    assert!(matches!(
        log_of(&mut sim, "s").last(),
        Some(LogEntry::End {
            ending: LogEnding::Cancelled,
            next: Some(1)
        })
    ));
    // A reload after the cancel replays what was produced, then the cancel.
    let late = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, late).data, b"partial ");
    assert_eq!(sim.log(1, late).error, Some(Error::Cancelled));
}

#[test]
fn the_log_outlives_its_end_by_the_replay_window_at_most_the_sentinel_ttl() {
    let config = durable()
        .with_sentinel_ttl(Duration::from_secs(60))
        .with_durable(Durable::default().with_replay_window(Duration::from_secs(3600)));
    let mut sim = Sim::new(1, MS, config);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "x");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let now = sim.now();
    let key = Names::new("resumable-stream").log("s");
    let expiry = sim.redis().expiry(now, &key).expect("an expiry");
    assert!(
        expiry <= now + Duration::from_secs(60),
        "the log outlives its sentinel"
    );
    assert!(expiry > now + Duration::from_secs(59));
}

// Regressions: the four bugs the engine_model fuzz target found in durable mode
// (docs/fuzzing.md), each as the simulator replays it.

/// A producer whose end entry was refused because a reader had written `gone` (its
/// lease lapsed while the end was held up) learns that it was fenced; its lease is
/// renewed until its end is in, so that retries alone do not let it lapse.
#[test]
fn a_producer_whose_end_was_refused_by_a_gone_end_is_fenced() {
    let mut sim = sim(2);
    let (p, r) = producer_and_reader(&mut sim, "a");
    sim.partition(0, true);
    sim.engine(0).finish(p).unwrap();
    sim.advance(HEARTBEAT * 8);
    sim.partition(0, false);
    sim.advance(HEARTBEAT * 20);
    let reader = sim.log(1, r);
    assert!(
        matches!(reader.error, Some(Error::ProducerGone { .. })),
        "{reader:?}"
    );
    let local = sim.log(0, p);
    assert!(
        matches!(local.error, Some(Error::Fenced { .. })),
        "{local:?}"
    );
    assert!(matches!(
        log_of(&mut sim, "s").last(),
        Some(LogEntry::End {
            ending: LogEnding::Gone,
            ..
        })
    ));
}

/// A log that expired (a replay window shorter than a reader's absence) is never made
/// anew by a late `gone` end: the reader fails with `Vanished` (what it waited for can
/// never come), and nothing reads as gone afterwards.
#[test]
fn a_late_gone_end_does_not_make_an_expired_log_anew() {
    let config =
        durable().with_durable(Durable::default().with_replay_window(Duration::from_secs(1)));
    let mut sim = Sim::new(2, MS, config);
    let (p, r) = producer_and_reader(&mut sim, "a");
    sim.partition(1, true);
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(2));
    assert!(sim.log(0, p).ended);
    assert_eq!(log_of(&mut sim, "s"), []);
    sim.partition(1, false);
    sim.advance(HEARTBEAT * 5);
    let reader = sim.log(1, r);
    assert_eq!(reader.data, b"a");
    assert!(
        matches!(reader.error, Some(Error::Vanished { .. })),
        "{reader:?}"
    );
    assert_eq!(
        log_of(&mut sim, "s"),
        [],
        "no log was made for a gone end alone"
    );
}

/// A fenced producer whose `gone` log expired before its append went again does not
/// make the log anew from its middle: the append finds no log, and it fails.
#[test]
fn a_fenced_producer_does_not_write_again_once_the_log_expired() {
    let config =
        durable().with_durable(Durable::default().with_replay_window(Duration::from_secs(1)));
    let mut sim = Sim::new(2, MS, config);
    let (p, r) = producer_and_reader(&mut sim, "a");
    sim.partition(0, true);
    push(&mut sim, p, "b");
    sim.advance(Duration::from_millis(1450));
    assert!(matches!(
        sim.log(1, r).error,
        Some(Error::ProducerGone { .. })
    ));
    assert_eq!(log_of(&mut sim, "s"), []);
    sim.partition(0, false);
    sim.advance(Duration::from_secs(2));
    let local = sim.log(0, p);
    assert!(local.error.is_some() && !local.ended, "{local:?}");
    assert!(
        log_of(&mut sim, "s").is_empty(),
        "the log was made anew: {:?}",
        log_of(&mut sim, "s")
    );
}

/// A reader that asked for a position past what the log holds, and a later local
/// reader from the start, share one tail: the later one still gets every chunk.
#[test]
fn a_reader_past_the_end_does_not_make_a_later_local_reader_miss_chunks() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let ahead = sim
        .engine(1)
        .resume_existing_stream("s", Position::Chunk(2));
    sim.advance(20 * MS);
    let from_start = sim.engine(1).resume_existing_stream("s", Position::Start);
    sim.advance(20 * MS);
    for chunk in ["a", "b", "c"] {
        push(&mut sim, p, chunk);
        sim.advance(20 * MS);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, ahead).data, b"c");
    assert!(sim.log(1, ahead).ended);
    let log = sim.log(1, from_start);
    assert_eq!(log.data, b"abc", "{log:?}");
    assert!(log.ended, "{log:?}");
}

/// An empty page after a full one means caught up, not an empty log: the reader
/// follows the log (and learns that the dead producer is gone), it does not start
/// over on pub/sub.
#[test]
fn an_empty_page_after_a_full_one_is_caught_up() {
    let config = durable().with_durable(Durable::default().with_read_count(1));
    let mut sim = Sim::new(2, MS, config);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a");
    sim.advance(20 * MS);
    sim.partition(0, true);
    sim.advance(HEARTBEAT * 5);
    let r = sim.engine(1).resume_existing_stream("s", Position::Start);
    sim.advance(Duration::from_secs(3));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a");
    assert!(
        matches!(log.error, Some(Error::ProducerGone { .. })),
        "{log:?}"
    );
}
