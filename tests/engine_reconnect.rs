//! The engine across Redis trouble, on the simulator: a request the server refuses,
//! and a pub/sub connection down for longer than the liveness bound (a managed Redis
//! failing over), in deterministic virtual time.

use bytes::Bytes;
use resumable_stream::sim::Sim;
use resumable_stream::{Config, Connection, Error, Handle, PubSubState, ReplyError, Role};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// A producer on instance 0 that sent "before " to a resumer on instance 1, whose
/// pub/sub connection then went down (cut off, and reported interrupted).
fn interrupted_mid_stream() -> (Sim, Handle, Handle) {
    let mut sim = Sim::new(2, MS, Config::default());
    let p = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    sim.engine(0)
        .push_chunk(p, Bytes::from_static(b"before "))
        .unwrap();
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, r).data, b"before ");

    sim.partition(1, true);
    let now = sim.now();
    sim.engine(1)
        .handle_pubsub_state(now, PubSubState::Interrupted);
    (sim, p, r)
}

/// A resumer whose request `PUBLISH` the server refuses (an ACL without `+publish` on
/// the request channel) ends with that refusal at once, not after the acknowledgement
/// timeout.
#[test]
fn a_refused_request_ends_the_resumer_with_the_refusal() {
    let mut sim = Sim::new(2, MS, Config::default());
    let p = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(0, p).role, Some(Role::Producer));
    // The resumer's request names its listener id: refuse the next request PUBLISH.
    sim.refuse_publish(1, "listenerId");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    let log = sim.log(1, r);
    assert!(
        matches!(
            &log.error,
            Some(Error::Redis {
                command: "PUBLISH",
                ..
            })
        ),
        "{log:?}"
    );
    let ended = log.final_at.expect("ended");
    assert!(ended < Duration::from_millis(100), "ended after {ended:?}");
}

/// The pub/sub connection is down for four times the liveness window (three heartbeats
/// of 2 s): the resumer does not take the silence for the producer's death; once the
/// connection is back it asks again and gets the rest, byte-exact.
#[test]
fn a_long_interruption_is_no_producer_death() {
    let (mut sim, p, r) = interrupted_mid_stream();
    sim.engine(0)
        .push_chunk(p, Bytes::from_static(b"during "))
        .unwrap();
    sim.advance(Duration::from_secs(24));
    assert!(sim.log(1, r).error.is_none(), "{:?}", sim.log(1, r));

    sim.partition(1, false);
    let now = sim.now();
    sim.engine(1)
        .handle_pubsub_state(now, PubSubState::Restored);
    sim.settle();
    sim.engine(0)
        .push_chunk(p, Bytes::from_static(b"after"))
        .unwrap();
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    let log = sim.log(1, r);
    assert_eq!(log.data, b"before during after");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

/// The transport says the pub/sub connection is back, but the resumer's subscription
/// fails again (a Cluster shard still down when the others answer): the resumer does
/// not wait for ever for a restore that may never be reported; the liveness bound runs
/// again from the failed subscription and ends it with `ProducerGone`.
#[test]
fn a_subscription_that_fails_after_a_restore_cannot_wait_for_ever() {
    let (mut sim, _, r) = interrupted_mid_stream();
    sim.advance(Duration::from_secs(10));
    let restored = sim.now();
    let restored_at = sim.elapsed();
    let engine = sim.engine(1);
    engine.handle_pubsub_state(restored, PubSubState::Restored);
    // The subscription the restore sends fails as the shard is still away.
    let mut failed = 0;
    while let Some(command) = engine.poll_command() {
        if command.op.connection() == Connection::PubSub {
            let refused = ReplyError::Connection("connection refused".into());
            engine.handle_reply(restored, command.id, Err(refused));
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "one subscription sent again");
    sim.advance(Duration::from_secs(30));
    let log = sim.log(1, r);
    assert!(
        matches!(log.error, Some(Error::ProducerGone { .. })),
        "{log:?}"
    );
    // Three heartbeats of 2 s from the failed subscription, plus the simulator's
    // millisecond links.
    let ended = log.final_at.expect("ended") - restored_at;
    assert!(
        ended <= Duration::from_millis(6_100),
        "ended {ended:?} after the restore"
    );
}
