//! The behaviour suite against the simulated Redis: every behaviour of the deployed
//! library's own suite, and the invariants it leaves unchecked, in deterministic
//! virtual time.

#[path = "support/sim_producer.rs"]
mod sim_producer;

use bytes::Bytes;
use resumable_stream::sim::Sim;
use resumable_stream::skip::catch_up;
use resumable_stream::{
    CommandId, Config, Error, Event, Handle, PubSubState, Reply, ReplyError, Role, SkipUnit,
    StreamState,
};
use sim_producer::{producer, push};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn sim(nodes: usize) -> Sim {
    Sim::new(nodes, MS, Config::default())
}

/// Node `node`'s pub/sub connection drops (and what it would have received is lost).
fn cut_pubsub(sim: &mut Sim, node: usize) {
    sim.partition(node, true);
    let now = sim.now();
    sim.engine(node)
        .handle_pubsub_state(now, PubSubState::Interrupted);
}

/// Node `node`'s pub/sub connection is back.
fn restore_pubsub(sim: &mut Sim, node: usize) {
    sim.partition(node, false);
    let now = sim.now();
    sim.engine(node)
        .handle_pubsub_state(now, PubSubState::Restored);
}

#[test]
fn acts_like_a_normal_stream() {
    let mut sim = sim(1);
    let p = producer(&mut sim, "s");
    for chunk in ["1\n", "2\n", "3\n"] {
        push(&mut sim, p, chunk);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(0, p);
    assert_eq!(log.data, b"1\n2\n3\n");
    assert!(log.ended);
    assert_eq!((log.finals, log.after_final), (1, 0));
    assert_eq!(
        sim.net
            .redis
            .get_raw(sim.now(), b"resumable-stream:rs:sentinel:s")
            .unwrap(),
        "DONE"
    );
    // No Redis traffic per chunk while nobody listens: INCR, SUBSCRIBE, SET "1" EX,
    // SET "DONE" EX, UNSUBSCRIBE, as npm 2.2.13 sends.
    assert_eq!(sim.commands_sent.get("PUBLISH"), None);
    assert_eq!(sim.commands_sent.values().sum::<u64>(), 5);
}

#[test]
fn resuming_a_done_stream_answers_done() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "x");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let again = sim.engine(1).resumable_stream("s", None);
    let explicit = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    assert!(sim.log(1, again).done);
    assert!(sim.log(1, explicit).done);
    assert_eq!(sim.log(1, again).finals, 1);
}

#[test]
fn resume_in_progress_and_reverse_read_order() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "1\n");
    push(&mut sim, p, "2\n");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    // The resumer has the catch-up before the producer's reader reads on.
    assert_eq!(sim.log(1, r).data, b"1\n2\n");
    push(&mut sim, p, "3\n");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"1\n2\n3\n");
    assert_eq!(sim.log(0, p).data, b"1\n2\n3\n");
    assert!(sim.log(1, r).ended && sim.log(0, p).ended);
}

#[test]
fn it_really_streams_consumer_first() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, r).role, Some(Role::Resumer));
    assert!(sim.log(1, r).data.is_empty());
    for (i, chunk) in ["a", "b", "c"].iter().enumerate() {
        push(&mut sim, p, chunk);
        sim.settle();
        assert_eq!(
            sim.log(1, r).chunks.len(),
            i + 1,
            "each chunk arrives as it is produced"
        );
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"abc");
}

#[test]
fn several_resumers_and_two_streams_kept_apart() {
    let mut sim = sim(3);
    let a = producer(&mut sim, "a");
    let b = producer(&mut sim, "b");
    push(&mut sim, a, "A1");
    push(&mut sim, b, "B1");
    let ra: Vec<_> = (0..3)
        .map(|_| sim.engine(1).resumable_stream("a", None))
        .collect();
    let rb = sim.engine(2).resumable_stream("b", None);
    sim.settle();
    push(&mut sim, a, "A2");
    push(&mut sim, b, "B2");
    sim.engine(0).finish(a).unwrap();
    sim.engine(0).finish(b).unwrap();
    sim.settle();
    for r in ra {
        assert_eq!(sim.log(1, r).data, b"A1A2");
        assert!(sim.log(1, r).ended);
    }
    assert_eq!(sim.log(2, rb).data, b"B1B2");
}

#[test]
fn skips_of_0_2_and_4() {
    for (skip, expected) in [(0u64, "1\n2\n3\n"), (2, "2\n3\n"), (4, "3\n")] {
        let mut sim = sim(2);
        let p = producer(&mut sim, "s");
        push(&mut sim, p, "1\n");
        push(&mut sim, p, "2\n");
        let r = sim.engine(1).resumable_stream("s", Some(skip));
        sim.settle();
        push(&mut sim, p, "3\n");
        sim.engine(0).finish(p).unwrap();
        sim.settle();
        assert_eq!(sim.log(1, r).data, expected.as_bytes(), "skip {skip}");
    }
}

#[test]
fn a_utf16_skip_cuts_like_javascript_inside_the_emoji() {
    let text = ["héllo", " ", "日本", " ", "🚀", " done"];
    let joined: String = text.concat();
    let units: Vec<u16> = joined.encode_utf16().collect();
    for skip in 0..=units.len() {
        let mut sim = sim(2);
        let p = producer(&mut sim, "s");
        for chunk in text {
            push(&mut sim, p, chunk);
        }
        let r = sim.engine(1).resumable_stream("s", Some(skip as u64));
        sim.settle();
        sim.engine(0).finish(p).unwrap();
        sim.settle();
        let expected = String::from_utf16_lossy(&units[skip..]);
        assert_eq!(sim.log(1, r).data, expected.as_bytes(), "skip {skip}");
    }
}

#[test]
fn a_resumer_that_names_its_unit_gets_that_unit() {
    // The producer counts in one unit, the resumer asks in another and names it
    // (`skipUnit`; a UTF-16 resumer names none, docs/interop.md): the skip is counted
    // in the resumer's unit. In each case the
    // producer's own unit would cut somewhere else, so a producer that ignored the
    // request's unit would fail this.
    let cases = [
        // Byte skip 3 is past "日"; as UTF-16 units it is past the whole text.
        ("日本", SkipUnit::Utf16, SkipUnit::Byte, 3, "本"),
        // One code point is "日"; one byte would cut inside "日".
        ("日本", SkipUnit::Byte, SkipUnit::CodePoint, 1, "本"),
        // One code point is "🚀"; one UTF-16 unit would cut its surrogate pair.
        ("🚀x", SkipUnit::Utf16, SkipUnit::CodePoint, 1, "x"),
    ];
    for (text, producer_unit, resumer_unit, skip, expected) in cases {
        let as_producer_counts = catch_up(&[Bytes::from(text)], skip, producer_unit);
        assert_ne!(
            as_producer_counts,
            expected.as_bytes(),
            "the case tells them apart"
        );
        let mut sim = Sim::with_configs(
            vec![
                Config::default().with_skip_unit(producer_unit),
                Config::default().with_skip_unit(resumer_unit),
            ],
            MS,
        );
        let p = sim.engine(0).create_new_resumable_stream("s");
        sim.settle();
        sim.engine(0).push_chunk(p, text.into()).unwrap();
        let r = sim.engine(1).resume_existing_stream("s", Some(skip as u64));
        sim.settle();
        sim.engine(0).finish(p).unwrap();
        sim.settle();
        let log = sim.log(1, r);
        assert_eq!(
            log.data,
            expected.as_bytes(),
            "{resumer_unit:?} skip {skip} from a {producer_unit:?} producer: {log:?}"
        );
        assert!(log.ended, "{log:?}");
    }
}

#[test]
fn done_once_finished_and_state_at_each_stage() {
    let mut sim = sim(2);
    let before = sim.engine(1).has_existing_stream("s");
    sim.settle();
    assert_eq!(sim.log(1, before).state, Some(StreamState::None));
    let p = producer(&mut sim, "s");
    let during = sim.engine(1).has_existing_stream("s");
    sim.settle();
    assert_eq!(sim.log(1, during).state, Some(StreamState::Active));
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let after = sim.engine(1).has_existing_stream("s");
    let again = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, after).state, Some(StreamState::Done));
    assert!(sim.log(1, again).done);
}

#[test]
fn explicit_create_and_resume() {
    let mut sim = sim(2);
    let missing = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    assert!(sim.log(1, missing).not_found);
    let p = sim.engine(0).create_new_resumable_stream("s");
    sim.settle();
    assert_eq!(sim.log(0, p).role, Some(Role::Producer));
    let key = b"resumable-stream:rs:sentinel:s";
    assert_eq!(sim.net.redis.get_raw(sim.now(), key).unwrap(), "1");
    assert!(sim.net.redis.expiry(sim.now(), key).is_some(), "SET ... EX");
    push(&mut sim, p, "hello");
    let r = sim.engine(1).resume_existing_stream("s", Some(1));
    sim.settle();
    push(&mut sim, p, " world");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"ello world");
    let done = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    assert!(sim.log(1, done).done);
}

#[test]
fn four_resumers_joining_while_chunks_flow_are_byte_exact() {
    // Slow links, so that every resume request arrives while earlier publishes are
    // still in flight: the case where the Python port duplicates a chunk.
    let mut sim = Sim::new(2, Duration::from_millis(5), Config::default());
    let p = producer(&mut sim, "s");
    let mut expected = Vec::new();
    let mut resumers = Vec::new();
    for i in 0..400 {
        let chunk = format!("{i:08}:chunk\n");
        expected.extend_from_slice(chunk.as_bytes());
        push(&mut sim, p, &chunk);
        if i % 100 == 50 {
            resumers.push(sim.engine(1).resumable_stream("s", None));
        }
        sim.advance(MS);
    }
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(resumers.len(), 4);
    for r in resumers {
        let log = sim.log(1, r);
        assert_eq!(log.data, expected, "resumer {r:?} is byte-exact");
        assert!(log.ended);
        assert_eq!((log.finals, log.after_final), (1, 0));
    }
    assert_eq!(sim.log(0, p).data, expected);
}

#[test]
fn a_thousand_concurrent_streams() {
    let mut sim = sim(2);
    let producers: Vec<_> = (0..1000)
        .map(|i| sim.engine(0).resumable_stream(&format!("s{i}"), None))
        .collect();
    sim.settle();
    for (i, p) in producers.iter().enumerate() {
        push(&mut sim, *p, &format!("first {i};"));
    }
    let resumers: Vec<_> = (0..1000)
        .map(|i| sim.engine(1).resumable_stream(&format!("s{i}"), None))
        .collect();
    sim.settle();
    for (i, p) in producers.iter().enumerate() {
        push(&mut sim, *p, &format!("second {i}"));
        sim.engine(0).finish(*p).unwrap();
    }
    sim.settle();
    for (i, r) in resumers.iter().enumerate() {
        let log = sim.log(1, *r);
        assert_eq!(log.data, format!("first {i};second {i}").as_bytes());
        assert!(log.ended);
    }
    assert_eq!(
        sim.engine(0).live_handles(),
        0,
        "finished producers are retired"
    );
    assert_eq!(
        sim.engine(1).live_handles(),
        0,
        "ended resumers are retired"
    );
}

#[test]
fn unknown_ids_and_channels_are_counted_and_ignored() {
    let mut sim = sim(1);
    let p = producer(&mut sim, "s");
    let now = sim.now();
    let engine = sim.engine(0);
    engine.handle_reply(now, CommandId(987_654), Ok(Reply::Integer(1)));
    engine.handle_reply(
        now,
        CommandId(987_655),
        Err(ReplyError::Connection("x".into())),
    );
    engine.handle_message(
        now,
        b"resumable-stream:rs:chunk:nobody",
        Bytes::from_static(b"hi"),
    );
    engine.handle_message(now, b"", Bytes::new());
    assert!(engine.push_chunk(Handle(424_242), "x".into()).is_err());
    assert!(engine.finish(Handle(424_242)).is_err());
    engine.drop_reader(Handle(424_242));
    let stats = engine.stats();
    assert_eq!(stats.unmatched_replies, 2);
    assert_eq!(stats.unrouted_messages, 2);
    push(&mut sim, p, "still fine");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(0, p).data, b"still fine");
}

#[test]
fn malformed_requests_are_dropped_without_disturbing_the_stream() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "abc");
    let r = sim.engine(1).resumable_stream("s", None);
    let now = sim.now();
    let channel = b"resumable-stream:rs:request:s";
    let garbage: &[&[u8]] = &[
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        br#"{"listenerId": 5}"#,
        br#"{"listenerId": "x", "skipCharacters": "2"}"#,
        br#"{"listenerId": "", "skipCharacters": 1}"#,
        br#"{"listenerId": "x", "skipUnit": "furlong"}"#,
    ];
    for message in garbage {
        sim.engine(0)
            .handle_message(now, channel, Bytes::from_static(message));
    }
    assert_eq!(
        sim.engine(0).stats().malformed_requests,
        garbage.len() as u64
    );
    sim.settle();
    push(&mut sim, p, "def");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"abcdef");
    assert_eq!(sim.log(0, p).data, b"abcdef");
}

#[test]
fn a_producer_that_is_gone_fails_the_resumer_within_the_ack_timeout() {
    for ack in [Config::default().ack_timeout(), Duration::from_millis(300)] {
        let mut sim = Sim::new(2, MS, Config::default().with_ack_timeout(ack));
        // The sentinel says active, but nobody listens on the request channel.
        sim.net.redis.set_raw("resumable-stream:rs:sentinel:s", "1");
        let r = sim.engine(1).resumable_stream("s", None);
        sim.advance(ack * 3);
        let log = sim.log(1, r);
        assert!(
            matches!(log.error, Some(Error::AckTimeout { waited, .. }) if waited == ack),
            "{log:?}"
        );
        assert!(log.role.is_none());
        assert_eq!(log.finals, 1);
        // When the error arrived: the timeout runs from the SUBSCRIBE's reply (after
        // the INCR's and the SUBSCRIBE's round trips) and is followed by one more round
        // trip (the GET that tells a finished stream from a gone producer): the timeout
        // plus three round trips of two link latencies each.
        let failed_at = log.final_at.expect("the error's time");
        let slack = 3 * 2 * MS;
        assert!(
            failed_at >= ack && failed_at <= ack + slack,
            "failed at {failed_at:?}, ack timeout {ack:?} + {slack:?}"
        );
    }
}

#[test]
fn an_ack_timeout_on_a_stream_that_finished_meanwhile_answers_done() {
    let mut sim = sim(2);
    sim.net.redis.set_raw("resumable-stream:rs:sentinel:s", "1");
    let r = sim.engine(1).resume_existing_stream("s", None);
    sim.advance(Duration::from_millis(500));
    sim.net
        .redis
        .set_raw("resumable-stream:rs:sentinel:s", "DONE");
    sim.advance(Duration::from_secs(1));
    assert!(sim.log(1, r).done, "{:?}", sim.log(1, r));
}

#[test]
fn unexpected_sentinel_values_are_typed_errors() {
    let mut sim = sim(1);
    sim.net
        .redis
        .set_raw("resumable-stream:rs:sentinel:s", "garbage");
    let idem = sim.engine(0).resumable_stream("s", None);
    let resume = sim.engine(0).resume_existing_stream("s", None);
    let state = sim.engine(0).has_existing_stream("s");
    sim.settle();
    for handle in [idem, resume, state] {
        let log = sim.log(0, handle);
        assert!(
            matches!(log.error, Some(Error::UnexpectedSentinel { ref value }) if value == "garbage"),
            "{log:?}"
        );
        assert_eq!(log.finals, 1);
    }
}

#[test]
fn replies_of_the_wrong_type_are_typed_errors() {
    let mut sim = sim(1);
    let now = sim.now();
    let engine = sim.engine(0);
    let h = engine.resumable_stream("s", None);
    let incr = engine.poll_command().unwrap();
    engine.handle_reply(now, incr.id, Ok(Reply::Data("1".into())));
    let q = engine.has_existing_stream("s");
    let get = engine.poll_command().unwrap();
    engine.handle_reply(now, get.id, Ok(Reply::Integer(3)));
    let events: Vec<_> = std::iter::from_fn(|| engine.poll_event()).collect();
    assert!(
        matches!(&events[0], Event::Failed { handle, error: Error::UnexpectedReply { command: "INCR", .. } } if *handle == h)
    );
    assert!(
        matches!(&events[1], Event::Failed { handle, error: Error::UnexpectedReply { command: "GET", .. } } if *handle == q)
    );
}

#[test]
fn a_dead_redis_gives_typed_errors_not_hangs() {
    let mut sim = sim(1);
    sim.partition(0, true);
    let a = sim.engine(0).resumable_stream("s", None);
    let b = sim.engine(0).resume_existing_stream("s", None);
    let c = sim.engine(0).has_existing_stream("s");
    let d = sim.engine(0).create_new_resumable_stream("s");
    sim.settle();
    for handle in [a, b, c, d] {
        let log = sim.log(0, handle);
        assert!(
            matches!(
                log.error,
                Some(Error::Redis {
                    error: ReplyError::Connection(_),
                    ..
                })
            ),
            "{log:?}"
        );
    }
}

#[test]
fn the_producer_finishes_when_its_local_reader_goes_away() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    push(&mut sim, p, "one ");
    sim.engine(0).drop_reader(p);
    push(&mut sim, p, "two");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(
        sim.log(0, p).data,
        b"one ",
        "no events after the reader left"
    );
    assert!(!sim.log(0, p).ended);
    assert_eq!(sim.log(1, r).data, b"one two");
    assert!(sim.log(1, r).ended);
}

#[test]
fn a_source_error_reaches_every_reader_of_ours_and_ends_v1_listeners_cleanly() {
    let v1 = Config::default().with_extensions(false);
    let mut sim = Sim::with_configs(vec![Config::default(), Config::default(), v1], MS);
    let p = producer(&mut sim, "s");
    let ours = sim.engine(1).resumable_stream("s", None);
    let v1_reader = sim.engine(2).resumable_stream("s", None);
    sim.settle();
    push(&mut sim, p, "partial");
    sim.engine(0).fail(p, "model crashed").unwrap();
    sim.settle();
    let crashed = Some(Error::Source("model crashed".into()));
    assert_eq!(sim.log(0, p).error, crashed);
    assert_eq!(
        sim.log(1, ours).error,
        crashed,
        "the listener of ours gets the typed error"
    );
    assert_eq!(sim.log(1, ours).data, b"partial");
    assert!(sim.log(2, v1_reader).ended && sim.log(2, v1_reader).error.is_none());
    assert_eq!(sim.log(2, v1_reader).data, b"partial");
    assert_eq!(
        sim.net
            .redis
            .get_raw(sim.now(), b"resumable-stream:rs:sentinel:s")
            .unwrap(),
        "DONE"
    );
}

#[test]
fn a_dropped_resumer_stops_listening() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    push(&mut sim, p, "a");
    sim.settle();
    sim.engine(1).drop_reader(r);
    sim.settle();
    push(&mut sim, p, "b");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a");
    assert!(!log.ended);
    assert_eq!(sim.engine(1).live_handles(), 0);
}

#[test]
fn a_request_dropped_before_it_resolves_emits_nothing() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.engine(1).drop_reader(r);
    let q = sim.engine(1).has_existing_stream("s");
    sim.engine(1).drop_reader(q);
    sim.settle();
    assert_eq!(sim.log(1, r), Default::default());
    assert_eq!(sim.log(1, q), Default::default());
    assert_eq!(sim.engine(1).live_handles(), 0);
    // A producer-to-be that was dropped still starts: its source must run.
    let orphan = sim.engine(0).resumable_stream("t", None);
    sim.engine(0).drop_reader(orphan);
    sim.settle();
    assert_eq!(sim.log(0, orphan).role, Some(Role::Producer));
    sim.engine(0).finish(p).unwrap();
}

#[test]
fn a_second_local_producer_of_one_stream_is_refused() {
    let mut sim = sim(1);
    let p = producer(&mut sim, "s");
    let again = sim.engine(0).create_new_resumable_stream("s");
    sim.settle();
    assert!(matches!(
        sim.log(0, again).error,
        Some(Error::AlreadyProducing { .. })
    ));
    push(&mut sim, p, "x");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert!(sim.log(0, p).ended);
}

#[test]
fn a_late_request_after_the_end_gets_everything_and_the_end() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "all of it");
    sim.engine(0).finish(p).unwrap();
    // Deliver the request while the producer's UNSUBSCRIBE is still in flight.
    let now = sim.now();
    sim.engine(0).handle_message(
        now,
        b"resumable-stream:rs:request:s",
        Bytes::from_static(br#"{"listenerId":"late","skipCharacters":4}"#),
    );
    let mut publishes = Vec::new();
    while let Some(command) = sim.engine(0).poll_command() {
        if let resumable_stream::Op::Publish { channel, message } = command.op {
            publishes.push((channel, message));
        }
    }
    let late: Vec<_> = publishes
        .iter()
        .filter(|(c, _)| c == "resumable-stream:rs:chunk:late")
        .collect();
    assert_eq!(late.len(), 2);
    assert_eq!(late[0].1, "of it");
    assert_eq!(late[1].1, resumable_stream::wire::DONE_MESSAGE);
}

#[test]
fn deadlines_move_forward_and_none_is_left_behind() {
    let mut sim = sim(2);
    sim.net.redis.set_raw("resumable-stream:rs:sentinel:s", "1");
    let _r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    let first = sim.engine(1).poll_timeout().expect("an ack deadline");
    assert!(first > sim.now());
    sim.advance(Duration::from_secs(5));
    assert_eq!(
        sim.engine(1).poll_timeout(),
        None,
        "no stale deadline keeps a driver awake"
    );
}

#[test]
fn losing_the_pubsub_connection_fails_resumers_and_spares_producers() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    let now = sim.now();
    sim.engine(1).handle_pubsub_state(now, PubSubState::Lost);
    sim.settle();
    assert!(matches!(
        sim.log(1, r).error,
        Some(Error::Redis {
            command: "SUBSCRIBE",
            ..
        })
    ));
    push(&mut sim, p, "x");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert!(sim.log(0, p).ended);
}

#[test]
fn the_local_reader_ends_only_once_the_stream_is_marked_done() {
    let mut sim = sim(1);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "x");
    sim.engine(0).finish(p).unwrap();
    // Only the chunk: the end waits for the SET "DONE" reply.
    assert!(matches!(
        sim.engine(0).poll_event(),
        Some(Event::Data { .. })
    ));
    assert_eq!(sim.engine(0).poll_event(), None);
    sim.settle();
    assert!(sim.log(0, p).ended);
    assert_eq!(
        sim.net
            .redis
            .get_raw(sim.now(), b"resumable-stream:rs:sentinel:s")
            .unwrap(),
        "DONE"
    );
    assert_eq!(sim.engine(0).live_handles(), 0);
}

#[test]
fn a_producer_subscribes_before_the_sentinel_appears_and_the_sentinel_expires() {
    let mut sim = sim(1);
    for (id, explicit) in [("idem", false), ("explicit", true)] {
        let handle = if explicit {
            sim.engine(0).create_new_resumable_stream(id)
        } else {
            sim.engine(0).resumable_stream(id, None)
        };
        let mut ops = Vec::new();
        let now = sim.now();
        // Drive by hand to see the order: each command is answered before the next.
        for _ in 0..3 {
            let Some(command) = sim.engine(0).poll_command() else {
                break;
            };
            ops.push(command.op.name());
            let (reply, _) = sim
                .net
                .redis
                .execute(now, resumable_stream::ClientId(0), &command.op);
            sim.engine(0).handle_reply(now, command.id, reply);
        }
        let expected: &[&str] = if explicit {
            &["SUBSCRIBE", "SET"]
        } else {
            &["INCR", "SUBSCRIBE", "SET"]
        };
        assert_eq!(ops, expected, "{id}");
        assert!(matches!(
            sim.engine(0).poll_event(),
            Some(Event::Started {
                role: Role::Producer,
                ..
            })
        ));
        let key = format!("resumable-stream:rs:sentinel:{id}");
        assert_eq!(sim.net.redis.get_raw(now, key.as_bytes()).unwrap(), "1");
        assert!(
            sim.net.redis.expiry(now, key.as_bytes()).is_some(),
            "no orphan key without a TTL"
        );
        sim.engine(0).finish(handle).unwrap();
        sim.settle();
    }
}

#[test]
fn the_done_watchdog_ends_a_v1_resumer_whose_end_message_was_lost() {
    let v1 = Config::default().with_extensions(false);
    let mut sim = Sim::with_configs(vec![Config::default(), v1], MS);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "all");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"all");
    // The stream is marked done, but the end message never comes.
    sim.lose_message(1, resumable_stream::wire::DONE_MESSAGE);
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(9));
    assert!(!sim.log(1, r).ended, "one interval is not enough");
    sim.advance(Duration::from_secs(15));
    let log = sim.log(1, r);
    assert!(log.ended && log.error.is_none(), "{log:?}");
    assert_eq!(log.data, b"all");
    assert_eq!(sim.engine(1).poll_timeout(), None);
}

#[test]
fn the_done_watchdog_never_ends_an_extended_resumer_that_may_miss_chunks() {
    // The last chunk and the end are lost on their way to the resumer, silently; the
    // heartbeat (20 s) is slower than the watchdog (two readings, 10 s apart), so the
    // watchdog acts first. The resumer cannot know it misses a chunk: it asks again.
    // A producer in its grace period answers, and the stream ends byte-exact; one that
    // is gone does not, and the liveness bound fails the resumer, never a clean end.
    for grace in [Duration::from_secs(60), Duration::ZERO] {
        let config = Config::default()
            .with_heartbeat_interval(Duration::from_secs(20))
            .with_grace_period(grace);
        let mut sim = Sim::new(2, MS, config);
        let p = producer(&mut sim, "s");
        push(&mut sim, p, "first ");
        let r = sim.engine(1).resumable_stream("s", None);
        sim.settle();
        sim.lose_message(1, "last");
        sim.lose_message(1, r#"{"t":"end""#);
        push(&mut sim, p, "last");
        sim.engine(0).finish(p).unwrap();
        sim.advance(Duration::from_secs(120));
        let log = sim.log(1, r);
        if grace.is_zero() {
            assert_eq!(log.data, b"first ", "{log:?}");
            assert!(
                matches!(log.error, Some(Error::ProducerGone { .. })),
                "{log:?}"
            );
        } else {
            assert_eq!(log.data, b"first last", "{log:?}");
            assert!(log.ended && log.error.is_none(), "{log:?}");
        }
    }
}

#[test]
fn a_stream_that_ends_while_only_its_resumer_reconnects_still_answers_it() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a ");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    cut_pubsub(&mut sim, 1);
    // The chunk reaches nobody, and the stream ends before that PUBLISH's reply (0
    // receivers) comes back: the producer learns of the departure after its end.
    push(&mut sim, p, "b");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    restore_pubsub(&mut sim, 1);
    sim.advance(Duration::from_secs(10));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn the_done_watchdog_fails_a_resumer_whose_stream_vanished_and_spares_a_live_one() {
    let mut sim = sim(3);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "x");
    let live = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    // A live stream is read every interval and left alone.
    sim.advance(Duration::from_secs(35));
    assert!(sim.log(1, live).finals == 0);
    assert!(sim.commands_sent.get("GET").copied().unwrap_or(0) >= 3);
    sim.net.redis.delete(b"resumable-stream:rs:sentinel:s");
    sim.advance(Duration::from_secs(25));
    assert!(
        matches!(sim.log(1, live).error, Some(Error::Vanished { .. })),
        "{:?}",
        sim.log(1, live)
    );
}

// ----- extensions (docs/protocol-extensions.md) -----

fn config_with_heartbeat(ms: u64) -> Config {
    Config::default().with_heartbeat_interval(Duration::from_millis(ms))
}

#[test]
fn a_resumer_of_ours_detects_a_dead_producer_within_three_heartbeats() {
    let heartbeat = Duration::from_secs(1);
    // The producer dies at four phases of its heartbeat cycle.
    for phase in 0..4u32 {
        let mut sim = Sim::new(2, MS, config_with_heartbeat(1000));
        let p = producer(&mut sim, "s");
        push(&mut sim, p, "a");
        let r = sim.engine(1).resumable_stream("s", None);
        sim.settle();
        // Idle but alive: heartbeats keep it going for a minute.
        sim.advance(Duration::from_secs(60) + heartbeat * phase / 4);
        assert_eq!(sim.log(1, r).finals, 0, "{:?}", sim.log(1, r));
        // The producer's process dies: nothing more comes from it.
        sim.partition(0, true);
        let died = sim.elapsed();
        sim.advance(Duration::from_secs(10));
        let log = sim.log(1, r);
        assert!(
            matches!(log.error, Some(Error::ProducerGone { .. })),
            "{log:?}"
        );
        assert_eq!(log.data, b"a");
        // The promise: gone after three heartbeat intervals of silence. The last
        // heartbeat the resumer heard left the producer less than one interval before
        // it died and reached the resumer at most one link latency after (it was
        // already past Redis): so the error comes more than two intervals and at most
        // three intervals plus one latency after the death.
        let detected = log.final_at.expect("the error's time") - died;
        assert!(
            detected > heartbeat * 2 && detected <= heartbeat * 3 + MS,
            "phase {phase}: detected {detected:?} after the death"
        );
    }
}

#[test]
fn an_idle_stream_nobody_resumes_costs_no_redis_traffic() {
    let mut sim = Sim::new(1, MS, config_with_heartbeat(100));
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "x");
    sim.settle();
    let before: u64 = sim.commands_sent.values().sum();
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.commands_sent.values().sum::<u64>(), before);
    assert_eq!(sim.engine(0).poll_timeout(), None);
}

#[test]
fn a_producer_stops_publishing_to_a_listener_that_left() {
    let v1 = Config::default().with_extensions(false);
    let mut sim = Sim::with_configs(vec![Config::default(), Config::default(), v1], MS);
    let p = producer(&mut sim, "s");
    let ours = sim.engine(1).resumable_stream("s", None);
    let theirs = sim.engine(2).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.engine(0).listener_count(p), Some(2));
    sim.engine(1).drop_reader(ours);
    // A v1 listener that goes away just unsubscribes: simulated by its engine leaving.
    sim.engine(2).drop_reader(theirs);
    sim.settle();
    push(&mut sim, p, "to nobody");
    sim.settle();
    assert_eq!(sim.engine(0).listener_count(p), Some(0));
    assert_eq!(sim.engine(0).stats().departed_listeners, 2);
    let publishes = sim.commands_sent["PUBLISH"];
    push(&mut sim, p, "still nobody");
    sim.settle();
    assert_eq!(
        sim.commands_sent["PUBLISH"], publishes,
        "no publish to dead listeners"
    );
}

#[test]
fn cancel_stops_a_stream_from_another_instance() {
    let v1 = Config::default().with_extensions(false);
    let mut sim = Sim::with_configs(
        vec![Config::default(), Config::default(), v1, Config::default()],
        MS,
    );
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "some");
    let ours = sim.engine(1).resumable_stream("s", None);
    let theirs = sim.engine(2).resumable_stream("s", None);
    sim.settle();
    let cancel = sim.engine(3).cancel("s");
    sim.settle();
    assert!(sim.log(3, cancel).cancelled, "{:?}", sim.log(3, cancel));
    assert!(
        sim.log(0, p).stop_source,
        "the producer is told to drop its source"
    );
    assert_eq!(sim.log(0, p).error, Some(Error::Cancelled));
    assert_eq!(sim.log(1, ours).error, Some(Error::Cancelled));
    assert!(sim.log(2, theirs).ended, "a v1 listener ends cleanly");
    assert!(sim.engine(0).push_chunk(p, "late".into()).is_err());
    assert_eq!(
        sim.net
            .redis
            .get_raw(sim.now(), b"resumable-stream:rs:sentinel:s")
            .unwrap(),
        "DONE"
    );
    let again = sim.engine(3).cancel("s");
    let unknown = sim.engine(3).cancel("nope");
    sim.settle();
    assert!(sim.log(3, again).done);
    assert!(sim.log(3, unknown).not_found);
}

#[test]
fn a_grace_period_keeps_answering_resumes_after_the_end() {
    let config = Config::default().with_grace_period(Duration::from_secs(5));
    let mut sim = Sim::new(2, MS, config);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "whole");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert!(sim.log(0, p).ended);
    // The stream is done; an explicit resume asks the producer anyway through the
    // idempotent path's resume of an active... here: a raw request still answered.
    let now = sim.now();
    sim.engine(0).handle_message(
        now,
        b"resumable-stream:rs:request:s",
        Bytes::from_static(br#"{"listenerId":"late","skipCharacters":1}"#),
    );
    let answered: Vec<_> = std::iter::from_fn(|| sim.engine(0).poll_command())
        .filter_map(|c| match c.op {
            resumable_stream::Op::Publish { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        answered.len(),
        2,
        "catch-up and end, during the grace period"
    );
    assert_eq!(answered[0], "hole");
    sim.advance(Duration::from_secs(6));
    assert_eq!(
        sim.engine(0).live_handles(),
        0,
        "retired after the grace period"
    );
}

#[test]
fn resume_by_chunk_index_for_last_event_id() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    for chunk in ["c0 ", "c1 ", "c2 ", "c3 "] {
        push(&mut sim, p, chunk);
    }
    sim.settle();
    assert_eq!(
        sim.log(0, p).last_chunk,
        Some(4),
        "the local reader counts chunks too"
    );
    let r = sim
        .engine(1)
        .resumable_stream("s", resumable_stream::Position::Chunk(2));
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"c2 c3 ");
    assert_eq!(sim.log(1, r).last_chunk, Some(4));
    push(&mut sim, p, "c4");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"c2 c3 c4");
    assert_eq!(sim.log(1, r).last_chunk, Some(5));
    assert!(sim.log(1, r).ended);
}

#[test]
fn a_bounded_buffer_refuses_what_it_no_longer_holds_and_serves_the_rest() {
    let config = Config::default().with_max_buffer_bytes(8);
    let v1 = config
        .clone()
        .with_extensions(false)
        .with_ack_timeout(Duration::from_millis(500));
    let mut sim = Sim::with_configs(vec![config.clone(), config.clone(), v1, config], MS);
    let p = producer(&mut sim, "s");
    for chunk in ["aaaa", "bbbb", "cccc", "dddd"] {
        push(&mut sim, p, chunk);
    }
    sim.settle();
    assert!(sim.engine(0).buffered_bytes(p).unwrap() <= 8);
    let whole = sim.engine(1).resumable_stream("s", None);
    let v1_whole = sim.engine(2).resumable_stream("s", None);
    let tail = sim.engine(3).resumable_stream("s", Some(10));
    sim.advance(Duration::from_secs(2));
    assert!(
        matches!(sim.log(1, whole).error, Some(Error::Truncated { .. })),
        "{:?}",
        sim.log(1, whole)
    );
    assert!(
        matches!(sim.log(2, v1_whole).error, Some(Error::AckTimeout { .. })),
        "never wrong data: {:?}",
        sim.log(2, v1_whole)
    );
    assert_eq!(sim.log(3, tail).data, b"ccdddd");
}

#[test]
fn a_resumer_of_ours_survives_a_pubsub_reconnect_byte_exact() {
    let v1 = Config::default().with_extensions(false);
    let mut sim = Sim::with_configs(vec![Config::default(), Config::default(), v1], MS);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "before ");
    let ours = sim.engine(1).resumable_stream("s", None);
    let theirs = sim.engine(2).resumable_stream("s", None);
    sim.settle();
    // Both resumers' pub/sub connections drop; what is published meanwhile is lost.
    cut_pubsub(&mut sim, 1);
    cut_pubsub(&mut sim, 2);
    push(&mut sim, p, "during ");
    sim.settle();
    assert!(
        matches!(sim.log(2, theirs).error, Some(Error::Redis { .. })),
        "a resumer of a v1 peer cannot know what it missed: {:?}",
        sim.log(2, theirs)
    );
    restore_pubsub(&mut sim, 1);
    sim.settle();
    push(&mut sim, p, "after");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, ours);
    assert_eq!(log.data, b"before during after", "{log:?}");
    assert!(log.ended && log.error.is_none());
}

#[test]
fn both_sides_cut_off_while_chunks_flow_recover_byte_exact() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a ");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    for node in [0, 1] {
        cut_pubsub(&mut sim, node);
    }
    push(&mut sim, p, "b ");
    push(&mut sim, p, "c ");
    sim.advance(Duration::from_millis(300));
    for node in [0, 1] {
        restore_pubsub(&mut sim, node);
    }
    sim.advance(Duration::from_millis(10));
    push(&mut sim, p, "d");
    sim.advance(Duration::from_secs(3));
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(3));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b c d", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn a_stream_created_again_while_an_incr_was_refused_is_resumed_not_an_error() {
    let mut sim = sim(2);
    sim.net
        .redis
        .set_raw("resumable-stream:rs:sentinel:s", "DONE");
    let r = sim.engine(1).resumable_stream("s", None);
    // Deliver the INCR (refused), then recreate the stream before the GET runs.
    let now = sim.now();
    let incr = sim.engine(1).poll_command().unwrap();
    let (reply, _) = sim
        .net
        .redis
        .execute(now, resumable_stream::ClientId(1), &incr.op);
    sim.engine(1).handle_reply(now, incr.id, reply);
    // Hold the GET that tells "done" from a failure until the stream exists again.
    let get = sim.engine(1).poll_command().unwrap();
    assert_eq!(get.op.name(), "GET");
    let p = sim.engine(0).create_new_resumable_stream("s");
    sim.settle();
    assert_eq!(sim.log(0, p).role, Some(Role::Producer));
    let now = sim.now();
    let (reply, _) = sim
        .net
        .redis
        .execute(now, resumable_stream::ClientId(1), &get.op);
    sim.engine(1).handle_reply(now, get.id, reply);
    sim.settle();
    assert_eq!(
        sim.log(1, r).role,
        Some(Role::Resumer),
        "{:?}",
        sim.log(1, r)
    );
}

#[test]
fn a_zero_heartbeat_interval_does_not_spin() {
    let mut sim = Sim::new(
        2,
        MS,
        Config::default().with_heartbeat_interval(Duration::ZERO),
    );
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.advance(Duration::from_millis(50));
    push(&mut sim, p, "x");
    sim.engine(0).finish(p).unwrap();
    // Heartbeats every millisecond keep the simulated network busy: advance, not settle.
    sim.advance(Duration::from_millis(100));
    assert!(sim.log(1, r).ended);
}

#[test]
fn one_refused_publish_in_a_pipeline_loses_nothing_and_repeats_nothing() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "c0 ");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    // c2's PUBLISH fails while c3's, sent right behind it, succeeds.
    sim.refuse_publish(0, "c2 ");
    for chunk in ["c1 ", "c2 ", "c3 ", "c4 "] {
        push(&mut sim, p, chunk);
    }
    sim.advance(Duration::from_millis(50));
    push(&mut sim, p, "c5");
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(5));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"c0 c1 c2 c3 c4 c5", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
    assert_eq!(log.last_chunk, Some(6));
    assert_eq!(sim.engine(0).stats().failed_writes, 1);
}

#[test]
fn a_refused_last_chunk_before_the_end_is_asked_for_again() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    push(&mut sim, p, "first ");
    sim.refuse_publish(0, "last");
    push(&mut sim, p, "last");
    // The end message goes out right behind the refused chunk.
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(5));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"first last", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn an_interruption_before_the_first_hello_loses_and_repeats_nothing() {
    // 10 ms each way: the resumer's request reaches the producer at 60 ms, its hello
    // would arrive at 80 ms; the resumer's pub/sub drops at 65 ms.
    let latency = Duration::from_millis(10);
    for skip in [None, Some(3), Some(100)] {
        let mut sim = Sim::new(2, latency, Config::default());
        let p = producer(&mut sim, "s");
        push(&mut sim, p, "abcdef");
        let r = sim.engine(1).resumable_stream("s", skip);
        sim.advance(Duration::from_millis(65));
        assert_eq!(sim.log(1, r).role, None, "no hello yet");
        cut_pubsub(&mut sim, 1);
        push(&mut sim, p, "ghi");
        sim.advance(Duration::from_millis(40));
        restore_pubsub(&mut sim, 1);
        sim.advance(Duration::from_millis(5));
        push(&mut sim, p, "jkl");
        sim.advance(Duration::from_millis(200));
        sim.engine(0).finish(p).unwrap();
        sim.advance(Duration::from_secs(5));
        let log = sim.log(1, r);
        let whole = b"abcdefghijkl";
        // A skip past what exists when the request is answered gives what follows.
        let expected: &[u8] = match skip {
            None => whole,
            Some(n) => &whole[(n as usize).min(whole.len())..],
        };
        assert_eq!(log.data, expected, "skip {skip:?}: {log:?}");
        assert!(log.ended && log.error.is_none(), "skip {skip:?}: {log:?}");
    }
}

#[test]
fn a_bounded_buffer_cuts_characters_split_across_chunks_exactly() {
    // "é" (C3 A9), "€" (E2 82 AC) and "🚀" (F0 9F 9A 80) split across chunks.
    // The buffer keeps 9 bytes: the last two chunks, and "é"'s first byte is dropped.
    let chunks: Vec<Bytes> = [
        &b"ab\xC3"[..],
        b"\xA9c\xE2\x82",
        b"\xACd\xF0\x9F",
        b"\x9A\x80e\xC3",
        b"\xA9hij",
        b"klmn",
    ]
    .iter()
    .map(|c| Bytes::copy_from_slice(c))
    .collect();
    for unit in [SkipUnit::Utf16, SkipUnit::CodePoint] {
        for skip in 0..16u64 {
            let config = Config::default()
                .with_max_buffer_bytes(9)
                .with_skip_unit(unit);
            let mut sim = Sim::new(2, MS, config);
            let p = producer(&mut sim, "s");
            for chunk in &chunks {
                sim.engine(0).push_chunk(p, chunk.clone()).unwrap();
            }
            let r = sim.engine(1).resumable_stream("s", Some(skip));
            sim.advance(Duration::from_millis(20));
            sim.engine(0).finish(p).unwrap();
            sim.advance(Duration::from_secs(3));
            let log = sim.log(1, r);
            let exact = catch_up(&chunks, skip as i64, unit);
            match &log.error {
                // Refused only where the answer needs more than the 9 bytes held (the
                // held chunks and the dropped half of "é"): never wrong data.
                Some(Error::Truncated { .. }) => {
                    assert!(exact.len() > 9, "{unit:?} skip {skip}: refused {exact:?}")
                }
                None => assert_eq!(log.data, exact, "{unit:?} skip {skip}: {log:?}"),
                Some(other) => panic!("{unit:?} skip {skip}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_stream_that_ends_while_its_resumer_reconnects_is_still_served_after_the_end() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a ");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    for node in [0, 1] {
        cut_pubsub(&mut sim, node);
    }
    sim.settle();
    // The resumer is back first: its request reaches nobody (the producer's request
    // channel is not subscribed again yet).
    restore_pubsub(&mut sim, 1);
    sim.settle();
    restore_pubsub(&mut sim, 0);
    sim.settle();
    // The stream ends before the resumer asks again.
    push(&mut sim, p, "b");
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(10));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn a_source_error_right_after_a_lost_chunk_comes_after_that_chunk() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a ");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    // The chunk's PUBLISH fails; the error, sent right behind it, arrives.
    sim.refuse_publish(0, "b ");
    push(&mut sim, p, "b ");
    sim.engine(0).fail(p, "boom").unwrap();
    sim.advance(Duration::from_secs(10));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b ", "{log:?}");
    assert!(
        matches!(&log.error, Some(Error::Source(m)) if m.message() == "boom"),
        "{log:?}"
    );
}

#[test]
fn a_repeated_answer_arriving_after_a_later_one_changes_nothing() {
    let mut sim = sim(2);
    let p = producer(&mut sim, "s");
    push(&mut sim, p, "a ");
    // The first answer (the hello and "a ") arrives again 2 s later, after the resumer
    // has asked again (a refused publish) and had the answer to that, and after that
    // request's rewind timer (one ack timeout).
    sim.repeat_message(1, r#""t":"hello""#, Duration::from_secs(2));
    let r = sim.engine(1).resumable_stream("s", None);
    // Not `settle`, which would deliver the copy too.
    sim.advance(Duration::from_millis(50));
    sim.refuse_publish(0, "b ");
    push(&mut sim, p, "b ");
    sim.advance(Duration::from_millis(100));
    assert_eq!(sim.log(1, r).data, b"a b ", "{:?}", sim.log(1, r));
    sim.advance(Duration::from_secs(2));
    push(&mut sim, p, "c");
    sim.engine(0).finish(p).unwrap();
    sim.advance(Duration::from_secs(30));
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b c", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn a_negative_skip_past_the_start_is_the_whole_stream_when_only_empty_chunks_were_dropped() {
    // A v1 peer may send a negative skip: JavaScript's `slice(-n)` counts from the end,
    // and from past the start it is everything.
    let mut sim = Sim::new(1, MS, Config::default().with_max_buffer_bytes(4));
    let p = producer(&mut sim, "s");
    // The buffer keeps the newest chunk, over the cap: the empty one before it goes.
    push(&mut sim, p, "");
    push(&mut sim, p, "abcdefgh");
    sim.settle();
    let answer = |sim: &mut Sim, skip: i64| -> Vec<Bytes> {
        let now = sim.now();
        let request = format!(r#"{{"listenerId":"l{skip}","skipCharacters":{skip}}}"#);
        sim.engine(0)
            .handle_message(now, b"resumable-stream:rs:request:s", request.into());
        std::iter::from_fn(|| sim.engine(0).poll_command())
            .filter_map(|c| match c.op {
                resumable_stream::Op::Publish { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    };
    assert_eq!(answer(&mut sim, -3), [Bytes::from("fgh")]);
    assert_eq!(answer(&mut sim, -8), [Bytes::from("abcdefgh")]);
    assert_eq!(answer(&mut sim, -100), [Bytes::from("abcdefgh")]);
    // Once bytes were dropped, from past what is held is refused: never wrong data.
    push(&mut sim, p, "ij");
    sim.settle();
    assert_eq!(answer(&mut sim, -2), [Bytes::from("ij")]);
    assert_eq!(answer(&mut sim, -100), Vec::<Bytes>::new());
}
