//! The tests of Redis Streams in [`MemoryRedis`]: each rule of Redis 7.0 they follow.

use super::*;
use crate::io::Op;
use crate::memory::ClientId;

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId::new(ms, seq)
}

fn fields(pairs: &[&'static str]) -> Vec<Bytes> {
    pairs
        .iter()
        .map(|f| Bytes::from_static(f.as_bytes()))
        .collect()
}

fn add(key: &'static str, id: StreamId, pairs: &[&'static str]) -> Op {
    Op::XAdd {
        create: true,
        key: key.into(),
        id,
        fields: fields(pairs),
    }
}

fn range(key: &'static str, start: StreamId, end: StreamId, count: u64) -> Op {
    Op::XRange {
        key: key.into(),
        start,
        end,
        count,
    }
}

fn read(count: u64, streams: &[(&'static str, StreamId)]) -> Op {
    Op::XRead {
        count,
        block_millis: 100,
        streams: streams.iter().map(|(k, i)| (Bytes::from(*k), *i)).collect(),
    }
}

/// An entry as Redis replies it.
fn entry(id: StreamId, pairs: &[&'static str]) -> Reply {
    Reply::Array(vec![
        Reply::Data(id.to_string().into()),
        Reply::Array(fields(pairs).into_iter().map(Reply::Data).collect()),
    ])
}

fn error(text: &str) -> Result<Reply, ReplyError> {
    Err(ReplyError::Server(text.to_owned()))
}

fn setup() -> (MemoryRedis, ClientId, Instant) {
    let mut redis = MemoryRedis::new();
    let client = redis.connect();
    (redis, client, Instant::now())
}

#[test]
fn xadd_appends_above_the_last_id_and_answers_it() {
    let (mut redis, c, now) = setup();
    let reply = redis.execute(now, c, &add("s", id(1, 5), &["f", "v"])).0;
    assert_eq!(reply, Ok(Reply::Data("1-5".into())));
    assert_eq!(redis.expiry(now, b"s"), None, "a new stream has no expiry");
    for same_or_below in [id(1, 5), id(1, 4), id(0, 9)] {
        assert_eq!(
            redis
                .execute(now, c, &add("s", same_or_below, &["f", "v"]))
                .0,
            error(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item"
            )
        );
    }
    assert_eq!(
        redis
            .execute(now, c, &add("s", id(1, 6), &["a", "1", "b", "2"]))
            .0,
        Ok(Reply::Data("1-6".into()))
    );
    assert_eq!(redis.stream_len(now, b"s"), Some(2));
    assert_eq!(redis.stream_last_id(now, b"s"), Some(id(1, 6)));
}

#[test]
fn xadd_refuses_0_0_and_a_wrong_number_of_fields_before_the_type() {
    let (mut redis, c, now) = setup();
    redis.set_raw("text", "x");
    for key in ["s", "text"] {
        assert_eq!(
            redis.execute(now, c, &add(key, id(0, 0), &["f", "v"])).0,
            error("ERR The ID specified in XADD must be greater than 0-0")
        );
        for odd in [&[][..], &["f"], &["f", "v", "g"]] {
            assert_eq!(
                redis.execute(now, c, &add(key, id(1, 0), odd)).0,
                error("ERR wrong number of arguments for 'xadd' command")
            );
        }
    }
    assert_eq!(redis.stream_len(now, b"s"), None, "no key was created");
    assert_eq!(
        redis.execute(now, c, &add("text", id(1, 0), &["f", "v"])).0,
        error(WRONGTYPE)
    );
}

#[test]
fn xadd_after_the_largest_id_is_the_exhausted_error() {
    let (mut redis, c, now) = setup();
    let _ = redis.execute(now, c, &add("s", StreamId::MAX, &["f", "v"]));
    assert_eq!(
        redis
            .execute(now, c, &add("s", StreamId::MAX, &["f", "v"]))
            .0,
        error("ERR The stream has exhausted the last possible ID, unable to add more items")
    );
}

#[test]
fn a_trimmed_stream_keeps_its_last_id() {
    let (mut redis, c, now) = setup();
    for seq in 1..=4 {
        let _ = redis.execute(now, c, &add("s", id(7, seq), &["f", "v"]));
    }
    assert_eq!(redis.trim_stream_before(b"s", id(7, 3)), 2);
    assert_eq!(redis.stream_len(now, b"s"), Some(2));
    assert_eq!(redis.trim_stream_before(b"s", StreamId::MAX), 2);
    assert_eq!(redis.stream_len(now, b"s"), Some(0), "the key stays, empty");
    assert_eq!(
        redis.execute(now, c, &add("s", id(7, 4), &["f", "v"])).0,
        error("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    );
    assert_eq!(
        redis.execute(now, c, &add("s", id(7, 5), &["f", "v"])).0,
        Ok(Reply::Data("7-5".into()))
    );
    assert_eq!(redis.trim_stream_before(b"missing", id(9, 0)), 0);
}

#[test]
fn xrange_is_inclusive_ordered_and_counted() {
    let (mut redis, c, now) = setup();
    for (ms, value) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        let _ = redis.execute(now, c, &add("s", id(ms, 0), &["d", value]));
    }
    assert_eq!(
        redis.execute(now, c, &range("s", id(2, 0), id(3, 0), 10)).0,
        Ok(Reply::Array(vec![
            entry(id(2, 0), &["d", "b"]),
            entry(id(3, 0), &["d", "c"])
        ]))
    );
    assert_eq!(
        redis
            .execute(now, c, &range("s", id(0, 0), StreamId::MAX, 2))
            .0,
        Ok(Reply::Array(vec![
            entry(id(1, 0), &["d", "a"]),
            entry(id(2, 0), &["d", "b"])
        ]))
    );
    let empty = Ok(Reply::Array(Vec::new()));
    assert_eq!(
        redis.execute(now, c, &range("s", id(3, 0), id(2, 0), 10)).0,
        empty,
        "start above end"
    );
    assert_eq!(
        redis
            .execute(now, c, &range("missing", id(0, 0), StreamId::MAX, 10))
            .0,
        empty
    );
    // Redis 7.0 answers COUNT 0 on a stream with a null array, on a missing key
    // with an empty one.
    assert_eq!(
        redis
            .execute(now, c, &range("s", id(0, 0), StreamId::MAX, 0))
            .0,
        Ok(Reply::Nil)
    );
    assert_eq!(
        redis
            .execute(now, c, &range("missing", id(0, 0), StreamId::MAX, 0))
            .0,
        empty
    );
    assert_eq!(
        redis
            .execute(now, c, &range("s", id(0, 0), StreamId::MAX, u64::MAX))
            .0,
        error(NOT_AN_INTEGER)
    );
}

#[test]
fn xread_answers_streams_with_new_entries_in_request_order() {
    let (mut redis, c, now) = setup();
    for seq in 1..=3 {
        let _ = redis.execute(now, c, &add("a", id(1, seq), &["d", "x"]));
    }
    let _ = redis.execute(now, c, &add("b", id(5, 0), &["d", "y"]));
    let op = read(
        2,
        &[("b", id(0, 0)), ("missing", id(0, 0)), ("a", id(1, 1))],
    );
    assert_eq!(
        redis.execute(now, c, &op).0,
        Ok(Reply::Array(vec![
            Reply::Array(vec![
                Reply::Data("b".into()),
                Reply::Array(vec![entry(id(5, 0), &["d", "y"])])
            ]),
            Reply::Array(vec![
                Reply::Data("a".into()),
                Reply::Array(vec![
                    entry(id(1, 2), &["d", "x"]),
                    entry(id(1, 3), &["d", "x"])
                ])
            ]),
        ]))
    );
    // Streams without an entry after their id are left out; none at all is nil.
    let op = read(10, &[("a", id(1, 3)), ("b", id(0, 0))]);
    let Ok(Reply::Array(pairs)) = redis.execute(now, c, &op).0 else {
        panic!("b has an entry");
    };
    assert_eq!(pairs.len(), 1);
    let op = read(
        10,
        &[("a", id(1, 3)), ("b", id(5, 0)), ("missing", id(0, 0))],
    );
    assert_eq!(redis.execute(now, c, &op).0, Ok(Reply::Nil));
    // COUNT 0 is no limit.
    let Ok(Reply::Array(pairs)) = redis.execute(now, c, &read(0, &[("a", id(0, 0))])).0 else {
        panic!("a has entries");
    };
    assert_eq!(
        pairs[0],
        Reply::Array(vec![
            Reply::Data("a".into()),
            Reply::Array((1..=3).map(|seq| entry(id(1, seq), &["d", "x"])).collect())
        ])
    );
}

#[test]
fn xread_checks_every_type_and_its_arguments_first() {
    let (mut redis, c, now) = setup();
    let _ = redis.execute(now, c, &add("a", id(1, 0), &["d", "x"]));
    redis.set_raw("text", "x");
    let op = read(10, &[("a", id(0, 0)), ("text", id(0, 0))]);
    assert_eq!(redis.execute(now, c, &op).0, error(WRONGTYPE));
    assert_eq!(
        redis.execute(now, c, &read(10, &[])).0,
        error("ERR syntax error")
    );
    let op = read(u64::MAX, &[("a", id(0, 0))]);
    assert_eq!(redis.execute(now, c, &op).0, error(NOT_AN_INTEGER));
    let op = Op::XRead {
        count: 1,
        block_millis: u64::MAX,
        streams: vec![("a".into(), id(0, 0))],
    };
    assert_eq!(
        redis.execute(now, c, &op).0,
        error("ERR timeout is not an integer or out of range")
    );
}

#[test]
fn strings_and_streams_refuse_each_others_commands() {
    let (mut redis, c, now) = setup();
    let _ = redis.execute(now, c, &add("s", id(1, 0), &["d", "x"]));
    redis.set_raw("text", "1");
    assert_eq!(
        redis.execute(now, c, &Op::Get { key: "s".into() }).0,
        error(WRONGTYPE)
    );
    assert_eq!(
        redis.execute(now, c, &Op::Incr { key: "s".into() }).0,
        error(WRONGTYPE)
    );
    assert_eq!(redis.get_raw(now, b"s"), None);
    assert_eq!(
        redis
            .execute(now, c, &range("text", id(0, 0), StreamId::MAX, 1))
            .0,
        error(WRONGTYPE)
    );
    assert_eq!(
        redis.execute(now, c, &read(1, &[("text", id(0, 0))])).0,
        error(WRONGTYPE)
    );
    assert_eq!(redis.stream_len(now, b"text"), None);
    // SET replaces a stream, as in Redis.
    let set = Op::SetPx {
        key: "s".into(),
        value: "v".into(),
        expire_millis: 10,
    };
    assert_eq!(redis.execute(now, c, &set).0, Ok(Reply::Ok));
    assert_eq!(redis.get_raw(now, b"s"), Some("v".into()));
}

#[test]
fn entries_expire_with_their_key() {
    let (mut redis, c, now) = setup();
    let _ = redis.execute(now, c, &add("s", id(1, 0), &["d", "x"]));
    let pexpire = Op::PExpire {
        key: "s".into(),
        millis: 50,
    };
    assert_eq!(redis.execute(now, c, &pexpire).0, Ok(Reply::Integer(1)));
    let later = now + Duration::from_millis(49);
    assert_eq!(redis.stream_len(later, b"s"), Some(1));
    let gone = now + Duration::from_millis(50);
    assert_eq!(redis.stream_len(gone, b"s"), None);
    assert_eq!(
        redis.execute(gone, c, &read(1, &[("s", id(0, 0))])).0,
        Ok(Reply::Nil)
    );
    // The stream is gone with its last id: a new one starts over.
    assert_eq!(
        redis.execute(gone, c, &add("s", id(0, 1), &["d", "y"])).0,
        Ok(Reply::Data("0-1".into()))
    );
    assert_eq!(redis.expiry(gone, b"s"), None);
}

#[test]
fn a_blocked_read_is_served_from_the_stream_that_got_an_entry() {
    let (mut redis, c, now) = setup();
    let streams: Vec<(Bytes, StreamId)> = vec![
        ("a".into(), id(5, 0)),
        ("b".into(), id(0, 0)),
        ("a".into(), id(0, 0)),
    ];
    assert_eq!(redis.serve_blocked_read(now, b"a", 1, &streams), None);
    let _ = redis.execute(now, c, &add("a", id(3, 0), &["d", "old"]));
    assert_eq!(
        redis.serve_blocked_read(now, b"a", 1, &streams),
        None,
        "the read's first id for a is above the new entry"
    );
    for ms in 6..=7 {
        let _ = redis.execute(now, c, &add("a", id(ms, 0), &["d", "new"]));
    }
    let _ = redis.execute(now, c, &add("b", id(1, 0), &["d", "b"]));
    assert_eq!(
        redis.serve_blocked_read(now, b"a", 1, &streams),
        Some(Reply::Array(vec![Reply::Array(vec![
            Reply::Data("a".into()),
            Reply::Array(vec![entry(id(6, 0), &["d", "new"])])
        ])]))
    );
    assert_eq!(redis.serve_blocked_read(now, b"c", 1, &streams), None);
    redis.set_raw("text", "x");
    let on_text = vec![(Bytes::from("text"), id(0, 0))];
    assert_eq!(redis.serve_blocked_read(now, b"text", 1, &on_text), None);
}

#[test]
fn nomkstream_leaves_a_missing_stream_missing() {
    let (mut redis, client, now) = (MemoryRedis::new(), ClientId(0), Instant::now());
    let op = Op::XAdd {
        create: false,
        key: "log".into(),
        id: StreamId::new(1, 1),
        fields: fields(&["d", "x"]),
    };
    assert_eq!(redis.execute(now, client, &op).0, Ok(Reply::Nil));
    assert_eq!(redis.stream_len(now, b"log"), None);
    redis
        .execute(now, client, &add("log", StreamId::new(1, 1), &["d", "x"]))
        .0
        .unwrap();
    let next = Op::XAdd {
        create: false,
        key: "log".into(),
        id: StreamId::new(2, 1),
        fields: fields(&["d", "y"]),
    };
    assert_eq!(
        redis.execute(now, client, &next).0,
        Ok(Reply::Data("2-1".into()))
    );
}
