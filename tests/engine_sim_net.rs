//! The simulated network's own faults (`sim::Net`: delay, reorder, duplicate, drop or
//! fail one item of a link), used on a resumer of ours: content carries its chunk index, so a chunk that
//! arrives late, out of order or twice is asked for again or dropped, never delivered
//! wrong.

use bytes::Bytes;
use resumable_stream::sim::{Item, Link, Sim};
use resumable_stream::{Config, Handle, ReplyError, Role};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// A producer on node 0 with "a " pushed and a resumer of ours on node 1 that has it;
/// then "b " and "c " pushed and run by Redis: their messages to the resumer are on its
/// pub/sub link, not delivered yet.
fn two_messages_in_flight() -> (Sim, Handle, Handle) {
    let mut sim = Sim::new(2, MS, Config::default());
    let p = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(0, p).role, Some(Role::Producer));
    sim.engine(0)
        .push_chunk(p, Bytes::from_static(b"a "))
        .unwrap();
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"a ");
    for chunk in [&b"b "[..], b"c "] {
        sim.engine(0)
            .push_chunk(p, Bytes::copy_from_slice(chunk))
            .unwrap();
    }
    // One latency: Redis runs both PUBLISHes; their messages are due one latency later.
    sim.advance(MS);
    assert_eq!(messages(&sim).len(), 2, "{:?}", messages(&sim));
    (sim, p, r)
}

/// The messages on node 1's pub/sub link, in order.
fn messages(sim: &Sim) -> Vec<Bytes> {
    sim.net
        .items(1, Link::PubSubDown)
        .filter_map(|item| match item {
            Item::Message { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Where on node 1's pub/sub link the message ending with `tail` is.
fn position(sim: &Sim, tail: &[u8]) -> usize {
    sim.net
        .items(1, Link::PubSubDown)
        .position(|item| matches!(item, Item::Message { message, .. } if message.ends_with(tail)))
        .expect("the message is in flight")
}

fn finish_and_check(mut sim: Sim, p: Handle, r: Handle) {
    sim.settle();
    sim.engine(0)
        .push_chunk(p, Bytes::from_static(b"d"))
        .unwrap();
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b c d", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
    assert_eq!(log.finals, 1);
}

#[test]
fn a_chunk_delayed_behind_the_next_is_asked_for_again_byte_exact() {
    let (mut sim, p, r) = two_messages_in_flight();
    let at = position(&sim, b"b ");
    let late = sim.now() + 50 * MS;
    sim.net.delay(1, Link::PubSubDown, at, late);
    assert!(messages(&sim)[0].ends_with(b"c "), "{:?}", messages(&sim));
    finish_and_check(sim, p, r);
}

#[test]
fn a_chunk_reordered_behind_the_next_is_asked_for_again_byte_exact() {
    let (mut sim, p, r) = two_messages_in_flight();
    let at = position(&sim, b"b ");
    sim.net.reorder(1, Link::PubSubDown, at, 1);
    assert!(messages(&sim)[0].ends_with(b"c "), "{:?}", messages(&sim));
    finish_and_check(sim, p, r);
}

#[test]
fn a_chunk_duplicated_behind_the_next_is_dropped() {
    let (mut sim, p, r) = two_messages_in_flight();
    let at = position(&sim, b"b ");
    sim.net.duplicate(1, Link::PubSubDown, at, 1);
    assert_eq!(messages(&sim).len(), 3);
    finish_and_check(sim, p, r);
}

#[test]
fn a_chunk_lost_on_the_way_is_asked_for_again_byte_exact() {
    let (mut sim, p, r) = two_messages_in_flight();
    // Lost without a trace: the resumer learns of it from the next chunk's index.
    let at = position(&sim, b"b ");
    sim.net.remove(1, Link::PubSubDown, at);
    finish_and_check(sim, p, r);
}

#[test]
fn a_failed_publish_is_answered_with_its_error_and_the_chunk_asked_for_again() {
    let (mut sim, p, r) = two_messages_in_flight();
    sim.settle();
    sim.engine(0)
        .push_chunk(p, Bytes::from_static(b"x "))
        .unwrap();
    // Onto the network, not run yet: the PUBLISH fails, its reply is the error.
    sim.advance(Duration::ZERO);
    let error = ReplyError::Connection("connection reset".into());
    let due = sim.now() + MS;
    let failed = sim.net.fail_next(0, Link::CommandsUp, error, due);
    assert!(
        matches!(&failed, Some(Item::Command(c)) if c.op.name() == "PUBLISH"),
        "{failed:?}"
    );
    sim.settle();
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"a b c x ", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}
