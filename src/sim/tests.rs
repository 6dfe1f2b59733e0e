//! Blocking reads in the simulator: parked in Redis, then served by an `XADD`, timed out
//! in virtual time, or failed with their connection.

use super::*;
use crate::io::{Command, CommandId, Reply, StreamId};
use std::time::Duration;

fn xread(id: u64, block_millis: u64, after: StreamId) -> Command {
    Command {
        id: CommandId(id),
        op: Op::XRead {
            count: 10,
            block_millis,
            streams: vec![("log".into(), after)],
        },
    }
}

fn xadd(id: u64, key: &'static str, entry: StreamId) -> Command {
    Command {
        id: CommandId(id),
        op: Op::XAdd {
            create: true,
            key: key.into(),
            id: entry,
            fields: vec!["d".into(), "x".into()],
        },
    }
}

/// Sends `command` from `node` and runs it in Redis at `now`, its reply due at `due`.
fn run(net: &mut Net, node: usize, command: Command, now: Instant, due: Instant) -> Executed {
    let link = Link::up(command.op.connection());
    net.send(node, command, now);
    let Some(Item::Command(command)) = net.pop(node, link) else {
        panic!("the command is on its link up");
    };
    net.execute(node, command, now, due)
}

fn sid(ms: u64, seq: u64) -> StreamId {
    StreamId::new(ms, seq)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_parked_read_is_answered_by_a_later_xadd_from_another_node() {
    let t0 = Instant::now();
    let mut net = Net::new();
    let (reader, writer) = (net.add_node(), net.add_node());
    let _ = run(&mut net, writer, xadd(1, "log", sid(1, 0)), t0, t0);
    let _ = net.pop(writer, Link::CommandsDown);
    let executed = run(&mut net, reader, xread(7, 1000, sid(1, 0)), t0, t0 + ms(1));
    assert!(executed.ran && executed.parked);
    assert_eq!(net.len(reader, Link::BlockingDown), 0, "no reply yet");
    assert_eq!(
        net.blocked(reader).map(|c| c.id).collect::<Vec<_>>(),
        [CommandId(7)]
    );
    assert!(net.is_idle(), "a parked read is not traffic");

    // Neither another stream's entry nor one at or below the read's id serves it.
    let other = run(&mut net, writer, xadd(2, "other", sid(5, 0)), t0, t0);
    assert_eq!(other.woken, 0);
    let refused = run(&mut net, writer, xadd(3, "log", sid(1, 0)), t0, t0);
    assert_eq!(refused.woken, 0);
    assert_eq!(net.blocked(reader).count(), 1);
    while net.pop(writer, Link::CommandsDown).is_some() {}

    let (now, due) = (t0 + ms(5), t0 + ms(6));
    let added = run(&mut net, writer, xadd(4, "log", sid(2, 0)), now, due);
    assert_eq!(added.woken, 1);
    assert_eq!(net.blocked(reader).count(), 0);
    assert_eq!(
        net.pop(writer, Link::CommandsDown),
        Some(Item::Reply(CommandId(4), Ok(Reply::Data("2-0".into()))))
    );
    assert_eq!(net.next_due(), Some((due, reader, Link::BlockingDown)));
    let entry = Reply::Array(vec![
        Reply::Data("2-0".into()),
        Reply::Array(vec![Reply::Data("d".into()), Reply::Data("x".into())]),
    ]);
    let served = Reply::Array(vec![Reply::Array(vec![
        Reply::Data("log".into()),
        Reply::Array(vec![entry]),
    ])]);
    assert_eq!(
        net.pop(reader, Link::BlockingDown),
        Some(Item::Reply(CommandId(7), Ok(served)))
    );
    assert_eq!(net.next_timeout(), None, "nothing is left to time out");
}

#[test]
fn a_read_with_data_is_answered_at_once() {
    let t0 = Instant::now();
    let mut net = Net::new();
    let node = net.add_node();
    let _ = run(&mut net, node, xadd(1, "log", sid(1, 0)), t0, t0);
    let executed = run(&mut net, node, xread(2, 1000, sid(0, 0)), t0, t0);
    assert!(executed.ran && !executed.parked);
    assert!(matches!(
        net.pop(node, Link::BlockingDown),
        Some(Item::Reply(CommandId(2), Ok(Reply::Array(_))))
    ));
}

#[test]
fn a_parked_read_answers_nil_when_its_block_time_ends() {
    let t0 = Instant::now();
    let mut net = Net::new();
    let node = net.add_node();
    let _ = run(&mut net, node, xread(1, 1000, sid(0, 0)), t0, t0 + ms(1));
    // BLOCK 0 waits for ever: it has no timeout.
    let _ = run(&mut net, node, xread(2, 0, sid(0, 0)), t0, t0 + ms(1));
    assert_eq!(net.next_timeout(), Some(t0 + ms(1000)));
    assert_eq!(net.time_out(t0 + ms(999)), 0);
    assert_eq!(net.time_out(t0 + ms(1000)), 1);
    assert_eq!(
        net.next_due(),
        Some((t0 + ms(1001), node, Link::BlockingDown))
    );
    assert_eq!(
        net.pop(node, Link::BlockingDown),
        Some(Item::Reply(CommandId(1), Ok(Reply::Nil)))
    );
    assert_eq!(
        net.blocked(node).map(|c| c.id).collect::<Vec<_>>(),
        [CommandId(2)]
    );
    assert_eq!(net.next_timeout(), None);
}

#[test]
fn the_sim_times_parked_reads_out_in_virtual_time() {
    let mut sim = Sim::new(1, ms(1), Config::default());
    let now = sim.now();
    sim.net
        .send(0, xread(u64::MAX, 1000, sid(0, 0)), now + ms(1));
    // Settling runs the read, which parks, and returns: a parked read is no traffic.
    sim.settle();
    assert_eq!(sim.elapsed(), ms(1));
    assert_eq!(sim.net.blocked(0).count(), 1);
    sim.advance(ms(999));
    assert_eq!(sim.net.blocked(0).count(), 1, "blocked until 1001 ms");
    sim.advance(ms(1));
    assert_eq!(sim.net.blocked(0).count(), 0, "Redis gave up at 1001 ms");
    assert_eq!(
        sim.net.len(0, Link::BlockingDown),
        1,
        "its nil arrives at 1002 ms"
    );
    assert_eq!(sim.engine(0).stats().unmatched_replies, 0);
    sim.advance(ms(1));
    assert_eq!(sim.net.len(0, Link::BlockingDown), 0);
    assert_eq!(
        sim.engine(0).stats().unmatched_replies,
        1,
        "the engine got the nil"
    );
}

#[test]
fn the_sim_serves_a_parked_read_when_another_node_adds_an_entry() {
    let mut sim = Sim::new(2, ms(1), Config::default());
    let now = sim.now();
    sim.net
        .send(0, xread(u64::MAX, 1000, sid(0, 0)), now + ms(1));
    sim.settle();
    assert_eq!(sim.net.blocked(0).count(), 1);
    sim.advance(ms(10));
    let now = sim.now();
    sim.net
        .send(1, xadd(u64::MAX, "log", sid(1, 0)), now + ms(1));
    sim.settle();
    assert_eq!(sim.net.blocked(0).count(), 0);
    assert_eq!(
        sim.elapsed(),
        ms(13),
        "the entry arrives one latency after the XADD ran"
    );
    assert_eq!(sim.engine(0).stats().unmatched_replies, 1);
    assert_eq!(sim.engine(1).stats().unmatched_replies, 1);
}

#[test]
fn a_dropped_blocking_connection_fails_its_parked_reads() {
    let t0 = Instant::now();
    let mut net = Net::new();
    let (node, other) = (net.add_node(), net.add_node());
    let _ = run(&mut net, node, xread(1, 1000, sid(0, 0)), t0, t0);
    let _ = run(&mut net, node, xread(2, 1000, sid(0, 0)), t0, t0);
    let _ = run(&mut net, other, xread(3, 1000, sid(0, 0)), t0, t0);
    // A read answered but not arrived, and one not run yet.
    let _ = run(&mut net, other, xadd(9, "data", sid(1, 0)), t0, t0);
    let mut answered = xread(4, 1000, sid(0, 0));
    answered.op = Op::XRead {
        count: 1,
        block_millis: 1000,
        streams: vec![("data".into(), sid(0, 0))],
    };
    let _ = run(&mut net, node, answered, t0, t0);
    net.send(node, xread(5, 1000, sid(0, 0)), t0);

    let failed = net.drop_connection(node, Connection::Blocking);
    assert_eq!(failed, [4, 1, 2, 5].map(CommandId));
    assert_eq!(net.blocked(node).count(), 0);
    assert_eq!(
        net.blocked(other).count(),
        1,
        "another node's read still waits"
    );
    assert_eq!(net.next_timeout(), Some(t0 + ms(1000)));

    // Taking the connection down fails the parked reads with the error, and what is
    // sent while it is down.
    let error = ReplyError::Connection("connection reset".into());
    net.set_down(other, Connection::Blocking, Some(error.clone()));
    assert_eq!(net.blocked(other).count(), 0);
    assert_eq!(
        net.pop(other, Link::BlockingDown),
        Some(Item::Reply(CommandId(3), Err(error.clone())))
    );
    let executed = run(&mut net, other, xread(6, 1000, sid(0, 0)), t0, t0);
    assert!(!executed.ran && !executed.parked);
    assert_eq!(
        net.pop(other, Link::BlockingDown),
        Some(Item::Reply(CommandId(6), Err(error)))
    );
    net.set_down(other, Connection::Blocking, None);
    let executed = run(&mut net, other, xread(7, 1000, sid(0, 0)), t0, t0);
    assert!(executed.ran && executed.parked);
    assert_eq!(net.next_timeout(), Some(t0 + ms(1000)));
}

#[test]
fn a_partition_fails_the_parked_reads_in_the_sim() {
    let mut sim = Sim::new(1, ms(1), Config::default());
    let now = sim.now();
    sim.net.send(0, xread(u64::MAX, 0, sid(0, 0)), now + ms(1));
    sim.settle();
    assert_eq!(sim.net.blocked(0).count(), 1, "BLOCK 0 waits for ever");
    sim.partition(0, true);
    assert!(sim.net.is_down(0, Connection::Blocking));
    sim.settle();
    assert_eq!(sim.net.blocked(0).count(), 0);
    assert_eq!(
        sim.engine(0).stats().unmatched_replies,
        1,
        "the failure arrived"
    );
    sim.partition(0, false);
    assert!(!sim.net.is_down(0, Connection::Blocking));
}
