//! The engine across Redis trouble, on the simulator: a request the server refuses,
//! and a pub/sub connection down for longer than the liveness bound (a managed Redis
//! failing over), in deterministic virtual time.

use bytes::Bytes;
use resumable_stream::sim::Sim;
use resumable_stream::{Config, Error, PubSubState, Role};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

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
