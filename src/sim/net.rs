//! The simulated network: per node and connection, a link up (commands to Redis) and a
//! link down (replies and, on the pub/sub connection, messages), around one
//! [`MemoryRedis`].
//!
//! Each node has three connections: commands, pub/sub, and one for blocking reads
//! (`XREAD BLOCK`, [`Connection::Blocking`]). A blocking read that finds nothing is
//! parked in Redis ([`Net::blocked`]) instead of answered: an `XADD` to one of its
//! streams answers it with the new entries (as Redis 7.0 serves a blocked read), and its
//! block time running out with nil ([`Net::time_out`], at [`Net::next_timeout`]). Several
//! may be parked per node, as a driver may keep several blocking connections; the faults
//! of the blocking links act on all of them at once, as on one connection.
//!
//! A link keeps its items in the order they are due (then in the order they were
//! queued), as TCP keeps a connection's bytes in order. Whoever drives the network
//! picks what moves: [`Sim`](super::Sim) delivers the earliest head of all links in
//! virtual time ([`Net::next_due`]); a fuzz target picks any link it likes, which
//! reorders deliveries freely across connections and nodes. The faults are the same
//! for both: [`drop`](Net::remove), [`fail`](Net::fail_next), [`delay`](Net::delay)
//! and [`reorder`](Net::reorder) one item, [`duplicate`](Net::duplicate) a message,
//! [`take a connection down`](Net::drop_connection) (which fails the reads parked on it),
//! and [`drop one subscription`](Net::drop_subscription) on the server side.
//!
//! ```
//! use resumable_stream::sim::{Item, Link, Net};
//! use resumable_stream::{Command, CommandId, Op, Reply};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut net = Net::new();
//! let node = net.add_node();
//! let get = Command { id: CommandId(1), op: Op::Get { key: "k".into() } };
//! net.send(node, get, now);
//! let Some(Item::Command(command)) = net.pop(node, Link::CommandsUp) else { panic!() };
//! net.execute(node, command, now, now);
//! let reply = net.pop(node, Link::CommandsDown);
//! assert!(matches!(reply, Some(Item::Reply(CommandId(1), Ok(Reply::Nil)))));
//! ```

use crate::io::{Command, CommandId, Connection, Op, Reply, ReplyError};
use crate::memory::{ClientId, MemoryRedis};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One of a node's six links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Commands to Redis on the command connection.
    CommandsUp,
    /// Their replies.
    CommandsDown,
    /// (Un)subscriptions to Redis on the pub/sub connection.
    PubSubUp,
    /// Their replies, and the messages of the subscribed channels.
    PubSubDown,
    /// Blocking reads to Redis on the blocking connection.
    BlockingUp,
    /// Their replies (at once, when an entry arrives, or nil when the block time ran
    /// out).
    BlockingDown,
}

impl Link {
    /// The six links, in a fixed order (commands, pub/sub, blocking; up then down):
    /// the first four are the command and pub/sub links, as before blocking reads.
    pub const ALL: [Link; 6] = [
        Link::CommandsUp,
        Link::CommandsDown,
        Link::PubSubUp,
        Link::PubSubDown,
        Link::BlockingUp,
        Link::BlockingDown,
    ];

    /// The link up of `connection`.
    pub fn up(connection: Connection) -> Link {
        match connection {
            Connection::Commands => Link::CommandsUp,
            Connection::PubSub => Link::PubSubUp,
            Connection::Blocking => Link::BlockingUp,
        }
    }

    /// The link that carries the replies of this link's commands (itself if it is down).
    pub fn down(self) -> Link {
        match self {
            Link::CommandsUp | Link::CommandsDown => Link::CommandsDown,
            Link::PubSubUp | Link::PubSubDown => Link::PubSubDown,
            Link::BlockingUp | Link::BlockingDown => Link::BlockingDown,
        }
    }

    /// The connection this link is part of.
    pub fn connection(self) -> Connection {
        match self {
            Link::CommandsUp | Link::CommandsDown => Connection::Commands,
            Link::PubSubUp | Link::PubSubDown => Connection::PubSub,
            Link::BlockingUp | Link::BlockingDown => Connection::Blocking,
        }
    }

    /// Whether this link is on the pub/sub connection.
    pub fn is_pubsub(self) -> bool {
        matches!(self, Link::PubSubUp | Link::PubSubDown)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What travels on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A command, on its way to Redis.
    Command(Command),
    /// The reply to command `id`, on its way back.
    Reply(CommandId, Result<Reply, ReplyError>),
    /// A pub/sub message, on its way to a subscriber.
    Message {
        /// The channel it was published on.
        channel: Bytes,
        /// The message.
        message: Bytes,
    },
}

#[derive(Debug)]
struct Queued {
    due: Instant,
    seq: u64,
    item: Item,
}

#[derive(Debug)]
struct Node {
    client: ClientId,
    links: [VecDeque<Queued>; 6],
    /// While set, commands on the connection fail with this error, messages to it are
    /// lost: [commands, pub/sub, blocking].
    down: [Option<ReplyError>; 3],
}

/// A blocking `XREAD` that Redis holds until an entry arrives or its block time ends.
#[derive(Debug)]
struct Parked {
    node: usize,
    /// The read (an [`Op::XRead`]).
    command: Command,
    /// When Redis gives up with nil, and when that nil arrives (the block time after
    /// the read ran and after its reply would have arrived); `None` for `BLOCK 0`, which
    /// waits for ever.
    timeout: Option<(Instant, Instant)>,
    /// When its reply would have arrived had Redis answered at once: where a failure
    /// of its connection is queued.
    due: Instant,
}

/// What [`Net::execute`] did with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Executed {
    /// Whether Redis ran it (its connection was up).
    pub ran: bool,
    /// How many subscribers its `PUBLISH` reached.
    pub deliveries: usize,
    /// It is a blocking read that found nothing: Redis holds it (see [`Net::blocked`]),
    /// no reply went down yet.
    pub parked: bool,
    /// How many parked reads its `XADD` answered.
    pub woken: usize,
}

/// The links of every node and the Redis they lead to.
#[derive(Debug, Default)]
pub struct Net {
    /// The simulated Redis. Tests may inspect or modify keys directly.
    pub redis: MemoryRedis,
    nodes: Vec<Node>,
    seq: u64,
    /// Blocking reads Redis holds, in the order they blocked (the order Redis serves
    /// them in).
    parked: Vec<Parked>,
}

fn slot(connection: Connection) -> usize {
    match connection {
        Connection::Commands => 0,
        Connection::PubSub => 1,
        Connection::Blocking => 2,
    }
}

impl Net {
    /// A network without nodes around an empty Redis.
    pub fn new() -> Net {
        Net::default()
    }

    /// Adds a node (one Redis client for all its connections) and returns its index.
    pub fn add_node(&mut self) -> usize {
        let client = self.redis.connect();
        self.nodes.push(Node {
            client,
            links: Default::default(),
            down: [None, None, None],
        });
        self.nodes.len() - 1
    }

    /// How many nodes there are.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The node whose Redis client is `client`.
    pub fn node_of(&self, client: ClientId) -> Option<usize> {
        self.nodes.iter().position(|n| n.client == client)
    }

    /// Queues `item` on `link` of `node`, due at `due`: behind everything due by then.
    pub fn push(&mut self, node: usize, link: Link, item: Item, due: Instant) {
        self.seq += 1;
        let seq = self.seq;
        let queue = &mut self.nodes[node].links[link.index()];
        let at = queue.partition_point(|q| q.due <= due);
        queue.insert(at, Queued { due, seq, item });
    }

    /// Sends `command` up the link of the connection it goes on, due at `due`.
    pub fn send(&mut self, node: usize, command: Command, due: Instant) {
        let link = Link::up(command.op.connection());
        self.push(node, link, Item::Command(command), due);
    }

    /// How many items are on `link` of `node`.
    pub fn len(&self, node: usize, link: Link) -> usize {
        self.nodes[node].links[link.index()].len()
    }

    /// Whether every link of every node is empty. Reads parked in Redis do not count:
    /// they wait on something else happening, as an idle subscriber does.
    pub fn is_idle(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.links.iter().all(VecDeque::is_empty))
    }

    /// The items on `link` of `node`, next first.
    pub fn items(&self, node: usize, link: Link) -> impl Iterator<Item = &Item> {
        self.nodes[node].links[link.index()].iter().map(|q| &q.item)
    }

    /// The link whose head is due first (then queued first), and when.
    pub fn next_due(&self) -> Option<(Instant, usize, Link)> {
        let mut best: Option<(Instant, u64, usize, Link)> = None;
        for (index, node) in self.nodes.iter().enumerate() {
            for link in Link::ALL {
                if let Some(q) = node.links[link.index()].front() {
                    if best.is_none_or(|(due, seq, ..)| (q.due, q.seq) < (due, seq)) {
                        best = Some((q.due, q.seq, index, link));
                    }
                }
            }
        }
        best.map(|(due, _, node, link)| (due, node, link))
    }

    /// Takes the next item off `link` of `node`.
    pub fn pop(&mut self, node: usize, link: Link) -> Option<Item> {
        self.nodes[node].links[link.index()]
            .pop_front()
            .map(|q| q.item)
    }

    /// Removes item `at` of `link` (a silent loss), and returns it.
    pub fn remove(&mut self, node: usize, link: Link, at: usize) -> Option<Item> {
        self.nodes[node].links[link.index()]
            .remove(at)
            .map(|q| q.item)
    }

    /// Inserts a copy of item `at` of `link` behind it, `later` items further on (at
    /// most at the end): a retried `PUBLISH` that had run, a proxy replaying.
    pub fn duplicate(&mut self, node: usize, link: Link, at: usize, later: usize) {
        let queue = &mut self.nodes[node].links[link.index()];
        let Some(original) = queue.get(at) else {
            return;
        };
        let copy = Queued {
            due: original.due,
            seq: original.seq,
            item: original.item.clone(),
        };
        let to = (at + 1 + later).min(queue.len());
        queue.insert(to, copy);
    }

    /// Moves item `at` of `link` `by` places further back (at most to the end): it
    /// arrives after items queued behind it.
    pub fn reorder(&mut self, node: usize, link: Link, at: usize, by: usize) {
        let queue = &mut self.nodes[node].links[link.index()];
        if let Some(item) = queue.remove(at) {
            let to = (at + by).min(queue.len());
            queue.insert(to, item);
        }
    }

    /// Makes item `at` of `link` due at `due` (and queues it by that): in virtual time,
    /// a delay that lets later items overtake it.
    pub fn delay(&mut self, node: usize, link: Link, at: usize, due: Instant) {
        if let Some(mut q) = self.nodes[node].links[link.index()].remove(at) {
            q.due = due;
            let queue = &mut self.nodes[node].links[link.index()];
            let to = queue.partition_point(|other| (other.due, other.seq) <= (q.due, q.seq));
            queue.insert(to, q);
        }
    }

    /// Fails the next item of `link` and returns it as it was: a command does not run
    /// and its reply (due at `due`) is `error`; a reply becomes `error` and stays next on
    /// its link; a message is lost.
    pub fn fail_next(
        &mut self,
        node: usize,
        link: Link,
        error: ReplyError,
        due: Instant,
    ) -> Option<Item> {
        let item = self.pop(node, link)?;
        match &item {
            Item::Command(command) => {
                self.push(node, link.down(), Item::Reply(command.id, Err(error)), due)
            }
            Item::Reply(id, _) => {
                self.seq += 1;
                let failed = Queued {
                    due,
                    seq: self.seq,
                    item: Item::Reply(*id, Err(error)),
                };
                self.nodes[node].links[link.index()].push_front(failed);
            }
            Item::Message { .. } => {}
        }
        Some(item)
    }

    /// Redis receives `command` from `node`: unless its connection is down, it runs;
    /// its reply goes down the same connection and what it publishes down each
    /// subscriber's pub/sub link, all due at `due`.
    ///
    /// A blocking `XREAD` that finds nothing is parked instead of answered; an `XADD`
    /// answers the parked reads it gives an entry to (their replies due at `due` too, as
    /// Redis serves them right after the `XADD`).
    pub fn execute(
        &mut self,
        node: usize,
        command: Command,
        now: Instant,
        due: Instant,
    ) -> Executed {
        let link = Link::up(command.op.connection());
        let mut executed = Executed {
            ran: false,
            deliveries: 0,
            parked: false,
            woken: 0,
        };
        if let Some(error) = self.nodes[node].down[slot(command.op.connection())].clone() {
            self.push(node, link.down(), Item::Reply(command.id, Err(error)), due);
            return executed;
        }
        executed.ran = true;
        let client = self.nodes[node].client;
        let (reply, deliveries) = self.redis.execute(now, client, &command.op);
        match (&command.op, &reply) {
            (Op::XRead { block_millis, .. }, Ok(Reply::Nil)) => {
                // BLOCK 0 waits for ever; a block time past what the clock holds, too.
                let timeout = (*block_millis > 0)
                    .then(|| Duration::from_millis(*block_millis))
                    .and_then(|block| {
                        let deadline = now.checked_add(block)?;
                        Some((deadline, due.checked_add(block).unwrap_or(deadline)))
                    });
                self.parked.push(Parked {
                    node,
                    command,
                    timeout,
                    due,
                });
                executed.parked = true;
                return executed;
            }
            (Op::XAdd { key, .. }, Ok(_)) => {
                self.push(node, link.down(), Item::Reply(command.id, reply), due);
                executed.woken = self.wake(key, now, due);
            }
            _ => self.push(node, link.down(), Item::Reply(command.id, reply), due),
        }
        executed.deliveries = deliveries.len();
        for (to, channel, message) in deliveries {
            if let Some(target) = self.node_of(to) {
                self.push(
                    target,
                    Link::PubSubDown,
                    Item::Message { channel, message },
                    due,
                );
            }
        }
        executed
    }

    /// Answers, in the order they blocked, the parked reads that `key`'s new entries
    /// serve: their replies go down at `due`. Returns how many.
    fn wake(&mut self, key: &[u8], now: Instant, due: Instant) -> usize {
        let mut woken = 0;
        let mut index = 0;
        while let Some(parked) = self.parked.get(index) {
            let served = match &parked.command.op {
                Op::XRead { count, streams, .. } => {
                    self.redis.serve_blocked_read(now, key, *count, streams)
                }
                _ => None,
            };
            match served {
                Some(reply) => {
                    let parked = self.parked.remove(index);
                    let item = Item::Reply(parked.command.id, Ok(reply));
                    self.push(parked.node, Link::BlockingDown, item, due);
                    woken += 1;
                }
                None => index += 1,
            }
        }
        woken
    }

    /// The blocking reads of `node` that Redis holds, in the order they blocked.
    pub fn blocked(&self, node: usize) -> impl Iterator<Item = &Command> {
        self.parked
            .iter()
            .filter(move |p| p.node == node)
            .map(|p| &p.command)
    }

    /// When the first parked read's block time runs out, if one has a block time.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.parked
            .iter()
            .filter_map(|p| p.timeout.map(|(deadline, _)| deadline))
            .min()
    }

    /// Redis gives up on every parked read whose block time ran out by `now`: each
    /// answers nil, due the block time after its reply would have arrived had Redis
    /// answered at once. Returns how many.
    pub fn time_out(&mut self, now: Instant) -> usize {
        let mut timed_out = 0;
        let mut index = 0;
        while let Some(parked) = self.parked.get(index) {
            match parked.timeout {
                Some((deadline, due)) if deadline <= now => {
                    let parked = self.parked.remove(index);
                    let item = Item::Reply(parked.command.id, Ok(Reply::Nil));
                    self.push(parked.node, Link::BlockingDown, item, due);
                    timed_out += 1;
                }
                _ => index += 1,
            }
        }
        timed_out
    }

    /// Takes the reads parked on `node`'s blocking connection out of Redis.
    fn unpark(&mut self, node: usize) -> Vec<Parked> {
        let (gone, kept) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.node == node);
        self.parked = kept;
        gone
    }

    /// Whether a message to `node` arriving now is lost (its pub/sub connection is down).
    pub fn is_down(&self, node: usize, connection: Connection) -> bool {
        self.nodes[node].down[slot(connection)].is_some()
    }

    /// Takes `connection` of `node` down (commands sent on it fail with `error`,
    /// messages to it are lost) or, with `None`, brings it back. Taking the pub/sub
    /// connection down makes Redis forget the node's subscriptions; taking the blocking
    /// connection down fails the reads parked on it with `error`, at once (due when
    /// their replies would have been had Redis answered them on arrival).
    pub fn set_down(&mut self, node: usize, connection: Connection, error: Option<ReplyError>) {
        if let Some(error) = &error {
            match connection {
                Connection::PubSub => {
                    let client = self.nodes[node].client;
                    self.redis.disconnect(client);
                }
                Connection::Blocking => {
                    for parked in self.unpark(node) {
                        let item = Item::Reply(parked.command.id, Err(error.clone()));
                        self.push(node, Link::BlockingDown, item, parked.due);
                    }
                }
                Connection::Commands => {}
            }
        }
        self.nodes[node].down[slot(connection)] = error;
    }

    /// The connection `connection` of `node` drops: Redis forgets the node's
    /// subscriptions (on the pub/sub connection) and the reads parked on it (on the
    /// blocking connection), messages in flight are lost, and the commands in flight
    /// (replies not yet arrived first, then reads parked in Redis, then commands not
    /// yet run) are returned: each will fail.
    pub fn drop_connection(&mut self, node: usize, connection: Connection) -> Vec<CommandId> {
        let up = Link::up(connection);
        let down: Vec<Queued> = self.nodes[node].links[up.down().index()]
            .drain(..)
            .collect();
        let sent: Vec<Queued> = self.nodes[node].links[up.index()].drain(..).collect();
        let parked = match connection {
            Connection::PubSub => {
                let client = self.nodes[node].client;
                self.redis.disconnect(client);
                Vec::new()
            }
            Connection::Blocking => self.unpark(node),
            Connection::Commands => Vec::new(),
        };
        let in_flight = |q: Queued| match q.item {
            Item::Command(c) => Some(c.id),
            Item::Reply(id, _) => Some(id),
            Item::Message { .. } => None,
        };
        down.into_iter()
            .filter_map(in_flight)
            .chain(parked.into_iter().map(|p| p.command.id))
            .chain(sent.into_iter().filter_map(in_flight))
            .collect()
    }

    /// The server drops one subscription of `node` (a Cluster slot moved, an ACL
    /// changed): later messages on `channel` no longer reach it.
    pub fn drop_subscription(&mut self, node: usize, channel: &[u8], now: Instant) {
        let client = self.nodes[node].client;
        let channel = Bytes::copy_from_slice(channel);
        for op in [
            Op::Unsubscribe {
                channel: channel.clone(),
            },
            Op::SUnsubscribe { channel },
        ] {
            let _ = self.redis.execute(now, client, &op);
        }
    }
}
