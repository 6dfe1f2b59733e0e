//! `PubSub::Sharded`: the engine speaks SPUBLISH / SSUBSCRIBE / SUNSUBSCRIBE, and
//! streams work end to end over them; `Classic` (the default) stays the v1 commands.

use resumable_stream::sim::Sim;
use resumable_stream::{Config, Engine, Op, PubSub, Role};
use std::time::{Duration, Instant};

fn op_names(config: Config) -> Vec<&'static str> {
    let mut engine = Engine::new(config);
    let resumer = engine.resume_existing_stream("s", None);
    let mut names = Vec::new();
    // GET sentinel -> "1" -> SUBSCRIBE -> confirmed -> PUBLISH request.
    let get = engine.poll_command().expect("GET");
    names.push(get.op.name());
    engine.handle_reply(
        Instant::now(),
        get.id,
        Ok(resumable_stream::Reply::Data("1".into())),
    );
    let subscribe = engine.poll_command().expect("SUBSCRIBE");
    names.push(subscribe.op.name());
    engine.handle_reply(
        Instant::now(),
        subscribe.id,
        Ok(resumable_stream::Reply::Ok),
    );
    let publish = engine.poll_command().expect("PUBLISH");
    names.push(publish.op.name());
    assert!(matches!(
        publish.op,
        Op::Publish { .. } | Op::SPublish { .. }
    ));
    let _ = resumer;
    names
}

#[test]
fn sharded_engines_use_the_sharded_commands() {
    assert_eq!(
        op_names(Config::default().with_pubsub(PubSub::Sharded)),
        ["GET", "SSUBSCRIBE", "SPUBLISH"]
    );
    assert_eq!(op_names(Config::default()), ["GET", "SUBSCRIBE", "PUBLISH"]);
}

#[test]
fn a_stream_resumes_over_sharded_pubsub() {
    let config = Config::default().with_pubsub(PubSub::Sharded);
    let mut sim = Sim::new(2, Duration::from_millis(1), config);
    let producer = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    sim.engine(0).push_chunk(producer, "hello ".into()).unwrap();
    let resumer = sim.engine(1).resumable_stream("s", Some(2));
    sim.settle();
    sim.engine(0).push_chunk(producer, "world".into()).unwrap();
    sim.engine(0).finish(producer).unwrap();
    sim.settle();
    let log = sim.log(1, resumer);
    assert_eq!(log.role, Some(Role::Resumer));
    assert_eq!(log.data, b"llo world");
    assert!(log.ended);
}

#[test]
fn a_sharded_resumer_does_not_hear_a_classic_producer() {
    let sharded = Config::default()
        .with_pubsub(PubSub::Sharded)
        .with_ack_timeout(Duration::from_millis(100));
    let mut sim = Sim::with_configs(vec![Config::default(), sharded], Duration::from_millis(1));
    let producer = sim.engine(0).resumable_stream("s", None);
    sim.settle();
    sim.engine(0).push_chunk(producer, "hello".into()).unwrap();
    let resumer = sim.engine(1).resume_existing_stream("s", None);
    sim.settle();
    sim.advance(Duration::from_millis(200));
    sim.settle();
    assert!(matches!(
        sim.log(1, resumer).error,
        Some(resumable_stream::Error::AckTimeout { .. })
    ));
}
