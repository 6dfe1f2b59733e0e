//! One subscription dropped by the server (`Engine::handle_subscription_dropped`: a
//! Cluster slot moved, an ACL changed) while the rest of the pub/sub connection lives,
//! in the simulator: a producer subscribes to its request channel again, a resumer
//! that can recover asks again and ends byte-exact, one that cannot (a v1 resumer, or the resumer of a v1 producer) fails with a typed error
//! instead of going on with a hole in its data (docs/fuzzing.md, bug 17).

use bytes::Bytes;
use resumable_stream::sim::{ReaderLog, Sim};
use resumable_stream::{Config, Error, Handle, Role};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn push(sim: &mut Sim, handle: Handle, chunk: &'static str) {
    sim.engine(0)
        .push_chunk(handle, Bytes::from_static(chunk.as_bytes()))
        .unwrap();
    sim.settle();
}

/// The chunk channel node `node`'s only resumer listens on.
fn chunk_channel(sim: &Sim, node: usize) -> Bytes {
    let channels: Vec<&Bytes> = sim
        .subscribed(node)
        .iter()
        .filter(|c| c.starts_with(b"resumable-stream:rs:chunk:"))
        .collect();
    assert_eq!(channels.len(), 1, "one resumer: {channels:?}");
    channels[0].clone()
}

/// A producer on node 0 with "a " pushed, and a resumer of it on node 1 with `config`,
/// which has received "a ".
fn streaming(config: Config) -> (Sim, Handle, Handle) {
    let mut sim = Sim::with_configs(vec![Config::default(), config], MS);
    let p = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(0, p).role, Some(Role::Producer));
    push(&mut sim, p, "a ");
    let r = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    assert_eq!(sim.log(1, r).role, Some(Role::Resumer));
    assert_eq!(sim.log(1, r).data, b"a ");
    (sim, p, r)
}

/// The resumer's chunk subscription dropped by the server after "a ", then "b " and
/// "c" published while it is not subscribed (it can never learn of them from those
/// messages) and the stream finished: what the resumer saw.
fn dropped_then_finished(config: Config) -> ReaderLog {
    let (mut sim, p, r) = streaming(config);
    let channel = chunk_channel(&sim, 1);
    sim.drop_subscription(1, &channel);
    push(&mut sim, p, "b ");
    push(&mut sim, p, "c");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    sim.log(1, r)
}

#[test]
fn a_v1_resumer_whose_subscription_is_dropped_fails_rather_than_miss_a_chunk() {
    let log = dropped_then_finished(Config::default().with_extensions(false));
    // Before the fix it was subscribed again, no error: its producer dropped it on the
    // PUBLISH of "b " that reached nobody, so it got "a " and then nothing at all.
    assert!(
        matches!(log.error, Some(Error::Redis { .. })),
        "a v1 resumer cannot know what it missed: {log:?}"
    );
    assert!(!log.ended, "{log:?}");
    assert_eq!(log.data, b"a ", "nothing after the hole: {log:?}");
    assert_eq!(log.finals, 1);
}

#[test]
fn a_resumer_of_ours_whose_subscription_is_dropped_asks_again_byte_exact() {
    let log = dropped_then_finished(Config::default());
    assert_eq!(log.data, b"a b c", "{log:?}");
    assert!(log.ended && log.error.is_none(), "{log:?}");
}

#[test]
fn a_producer_whose_request_channel_is_dropped_subscribes_again_and_serves_later_resumers() {
    let (mut sim, p, first) = streaming(Config::default());
    let request_channel = Bytes::from_static(b"resumable-stream:rs:request:s");
    let before = sim.subscribed(0).len();
    sim.drop_subscription(0, &request_channel);
    sim.settle();
    assert_eq!(
        &sim.subscribed(0)[before..],
        [request_channel],
        "the producer subscribes to its request channel again"
    );
    // A resumer that asks after that is heard and served.
    let second = sim.engine(1).resumable_stream("s", None);
    sim.settle();
    push(&mut sim, p, "b");
    sim.engine(0).finish(p).unwrap();
    sim.settle();
    for r in [first, second] {
        let log = sim.log(1, r);
        assert_eq!(log.data, b"a b", "{log:?}");
        assert!(log.ended && log.error.is_none(), "{log:?}");
    }
}
