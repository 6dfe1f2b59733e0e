//! Durable mode in the model (docs/protocol.md, "Durable mode"): per durable producer
//! its lease and its appends, per stream what Redis accepted into its log, and the
//! checks of the log itself, read back from `net.redis` after every step. The events
//! of log readers and the endings of durable producers are checked in
//! `crate::log_readers` and `crate::events`.
//!
//! The log is the truth a durable reader reads: its entries must be the chunks its
//! writer (the producer whose entry Redis accepted first) pushed, one entry per chunk
//! index, in order, from chunk 0 unless trimmed, the end last and naming the writer's
//! length and ending. Redis must never accept a chunk after an end (the fence), and a
//! `gone` end only from an engine that read the lease and found it lapsed.

use crate::harness::{Ctx, Harness};
use crate::model::*;
use bytes::Bytes;
use resumable_stream::wire::log::{decode_range, LogEnding, LogEntry};
use resumable_stream::{Command, Op, Reply, Role, StreamId};
use std::time::Instant;

/// A durable producer's side of the model.
#[derive(Debug, Clone, Default)]
pub struct ProdLog {
    /// Its log's cap, if any.
    pub limit: Option<u64>,
    /// The bytes it took into the log, against the cap.
    pub bytes: u64,
    /// When it last sent its lease (or went live): it renews every heartbeat.
    pub renewed_at: Option<Instant>,
    /// The chunks its appends covered (the `after` of its latest one).
    pub appended: u64,
    /// Its latest append, which a lost reply sends again.
    pub last_append: Option<StreamId>,
    /// It sent its end entry: its lease is left to lapse.
    pub end_sent: bool,
}

/// What the model knows of one stream's log.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    /// The durable producers that took the stream's lease, in order.
    pub producers: Vec<Key>,
    /// The producer whose entry Redis accepted first: the log's chunks are its.
    pub writer: Option<Key>,
    /// The producers that sent appends to this log.
    pub appenders: Vec<Key>,
    /// Two durable producers wrote to one log (an explicit create of a stream that
    /// exists, a deleted sentinel): the model no longer knows whose chunk an entry
    /// holds, and checks only the log's shape.
    pub wild: bool,
    /// The first end entry Redis accepted.
    pub end: Option<LogEnding>,
    /// Redis accepted a `gone` end (a tail found the lease lapsed).
    pub gone: bool,
    /// The engines whose read of the lease found none (run by Redis): the producer's
    /// lease had lapsed (it died, stalled, or its renewals were held up or lost), or
    /// it had none yet. Only they may write a gone end.
    pub lapsed_on: Vec<usize>,
    /// The log had existed and was found missing by an append that did not create it
    /// (`NOMKSTREAM`): it expired (its replay window passed) or was lost. Only then
    /// may its readers and its producer end with `Vanished`.
    pub expired: bool,
    /// The id of the first entry Redis accepted into this log (its writer's first
    /// append, or a gone end).
    pub first_id: Option<StreamId>,
}

/// Decodes the entry an `XADD` of `id` with `fields` writes.
pub fn entry_of(id: StreamId, fields: &[Bytes]) -> Result<LogEntry, String> {
    let entry = Reply::Array(vec![
        Reply::Data(Bytes::from(id.to_string())),
        Reply::Array(fields.iter().cloned().map(Reply::Data).collect()),
    ]);
    let mut entries = decode_range(&Reply::Array(vec![entry]))?;
    Ok(entries.remove(0))
}

impl Harness {
    /// Whether `node` is a durable engine.
    pub fn durable(&self, node: usize) -> bool {
        self.nodes[node].durable.is_some()
    }

    /// The durable producer of `node` that writes `stream`'s log now: the latest to
    /// take the lease there, but for one whose setup failed. (An engine has one
    /// producer of a stream at a time: it holds the stream's request channel from its
    /// start until it is gone, so a later one started after it.)
    pub fn log_producer(&self, node: usize, stream: usize) -> Option<Key> {
        self.logs[stream].producers.iter().rev().copied().find(|k| {
            let r = &self.readers[k];
            let setup_failed = r.started.is_none() && r.finals > 0;
            k.0 == node && r.prod.is_some() && !setup_failed
        })
    }

    /// A durable producer whose log cannot be written leaves its request channel at
    /// once (its `UNSUBSCRIBE` is sent as it goes, not awaited as a retiring one's is):
    /// the model learns it from the engine, which no longer knows the handle.
    pub fn forget_removed_producers(&mut self, node: usize) {
        let engine = &self.nodes[node].engine;
        for (key, r) in self.readers.iter_mut() {
            if key.0 != node || r.lease_token.is_none() {
                continue;
            }
            if let Some(p) = r.prod.as_mut() {
                if p.routed && engine.stream_id(key.1).is_none() {
                    p.routed = false;
                    p.registrations.clear();
                }
            }
        }
    }

    /// A durable command of `node`: the lease, appends (checked against what was
    /// pushed), the reads that make a reader a log reader. Returns the producer an
    /// append is from.
    pub fn on_log_command(&mut self, node: usize, command: &Command, ctx: Ctx) -> Option<Key> {
        match (&command.op, parse_name(command.op.routing_key())) {
            (
                Op::SetPx {
                    value,
                    expire_millis,
                    ..
                },
                Name::Lease(stream),
            ) => {
                assert!(self.durable(node), "a lease from an engine without a log");
                let lease = 3 * self.nodes[node].heartbeat.as_millis() as u64;
                assert_eq!(*expire_millis, lease, "the lease lives three heartbeats");
                let renewing =
                    self.order.iter().copied().find(|k| {
                        k.0 == node && self.readers[k].lease_token.as_ref() == Some(value)
                    });
                match renewing {
                    Some(key) => {
                        let now = self.now;
                        let r = self.readers.get_mut(&key).unwrap();
                        // Renewed until its end entry is in (an end held up by retries
                        // must not let it lapse), never once its reader has ended.
                        assert_eq!(r.finals, 0, "{key:?} renews its lease after its end");
                        let log = r.prod_mut().log.as_mut().expect("a durable producer");
                        log.renewed_at = Some(now);
                    }
                    None => {
                        let owner = ctx.owner.expect("a producer's first lease has an owner");
                        let r = self.readers.get_mut(&(node, owner)).expect("owner");
                        assert_eq!(r.stream, stream);
                        assert!(matches!(r.kind, Kind::Idempotent | Kind::Create));
                        assert!(r.prod.is_none() && r.lease_token.is_none());
                        r.lease_token = Some(value.clone());
                        self.logs[stream].producers.push((node, owner));
                    }
                }
                None
            }
            (Op::XAdd { id, fields, .. }, Name::Log(stream)) => {
                let entry = entry_of(*id, fields)
                    .unwrap_or_else(|e| panic!("an append that is no log entry: {e}"));
                if let LogEntry::End {
                    ending: LogEnding::Gone,
                    next,
                } = &entry
                {
                    // A tail ending the log of a producer whose lease lapsed.
                    assert_eq!(*next, None, "a gone end names no length");
                    return None;
                }
                let key = self
                    .log_producer(node, stream)
                    .expect("an append from a durable producer");
                // Another producer's appends in this log: whose chunk is whose?
                let log = &mut self.logs[stream];
                if !log.appenders.contains(&key) {
                    log.appenders.push(key);
                }
                log.wild |= log.appenders.len() > 1;
                let r = self.readers.get_mut(&key).unwrap();
                let p = r.prod.as_mut().unwrap();
                let chunks = &p.chunks;
                let ending = p.ending;
                let log = p.log.as_mut().expect("a durable producer");
                let retry = log.last_append == Some(*id);
                match entry {
                    LogEntry::End { ending: end, next } => {
                        assert!(!log.end_sent || retry, "{key:?} writes a second end");
                        let expected = match ending {
                            Some(Ending::Clean) => LogEnding::Done,
                            Some(Ending::Source) => LogEnding::Error(SOURCE_ERROR.to_owned()),
                            Some(Ending::Cancelled) => LogEnding::Cancelled,
                            Some(Ending::LogFull(limit)) => LogEnding::Full(limit),
                            other => panic!("{key:?} writes the end {end:?}, ending {other:?}"),
                        };
                        assert_eq!(end, expected, "{key:?}: the end entry says how it ended");
                        assert_eq!(next, Some(chunks.len() as u64), "the end names the length");
                        assert_eq!(
                            log.appended,
                            chunks.len() as u64,
                            "the end after every chunk"
                        );
                        log.end_sent = true;
                    }
                    LogEntry::Chunks {
                        first, chunks: got, ..
                    } => {
                        assert!(!log.end_sent, "{key:?} appends after its end");
                        if !retry {
                            assert_eq!(first, log.appended, "appends follow each other");
                        }
                        let end = first as usize + got.len();
                        assert!(end <= chunks.len(), "{key:?} appends chunks never pushed");
                        assert_eq!(
                            got,
                            chunks[first as usize..end],
                            "an append holds the chunks pushed"
                        );
                        log.appended = end as u64;
                    }
                }
                log.last_append = Some(*id);
                Some(key)
            }
            (Op::XRange { .. }, Name::Log(stream)) => {
                // A reader's page (a producer's XRANGE checks whether an append landed).
                if let Some(owner) = ctx.owner {
                    let r = self.readers.get_mut(&(node, owner)).expect("owner");
                    if r.prod.is_none() && r.lease_token.is_none() {
                        assert_eq!(r.stream, stream);
                        assert!(matches!(r.kind, Kind::Idempotent | Kind::Resume));
                        assert!(r.listener.is_none(), "a resumer over pub/sub reads the log");
                        r.log_reader = true;
                    }
                }
                None
            }
            (Op::PExpire { millis, .. }, Name::Log(_)) => {
                assert!(*millis >= 1, "a log's expiry");
                None
            }
            _ => None,
        }
    }

    /// Redis accepted `entry` into `stream`'s log, from `writer` (a producer) or a tail.
    pub fn on_appended(&mut self, stream: usize, writer: Option<Key>, entry: LogEntry) {
        let log = &mut self.logs[stream];
        log.first_id.get_or_insert(entry.id());
        if let Some(w) = writer {
            match log.writer {
                None => log.writer = Some(w),
                Some(first) if first != w => log.wild = true,
                Some(_) => {}
            }
        }
        let tolerated = log.wild;
        match entry {
            LogEntry::Chunks { id, .. } => assert!(
                log.end.is_none() || tolerated,
                "{}: Redis accepted the append {id} after the log's end ({:?}): a producer \
                 wrote past its fence",
                STREAMS[stream],
                log.end
            ),
            LogEntry::End { ending, .. } => {
                log.gone |= ending == LogEnding::Gone;
                assert!(
                    log.end.is_none() || tolerated,
                    "{}: Redis accepted a second end ({ending:?} after {:?})",
                    STREAMS[stream],
                    log.end
                );
                log.end.get_or_insert(ending);
            }
        }
    }

    /// The log of `stream` as Redis holds it now.
    pub fn log_entries(&mut self, stream: usize) -> Vec<LogEntry> {
        let op = Op::XRange {
            key: log_names(stream).0,
            start: StreamId::new(0, 0),
            end: StreamId::MAX,
            count: 1 << 20,
        };
        let (reply, _) = self.net.redis.execute(self.now, self.inspector, &op);
        let reply = reply.expect("an XRANGE of a log");
        decode_range(&reply)
            .unwrap_or_else(|e| panic!("the log of {} is malformed: {e}", STREAMS[stream]))
    }

    /// The log of every stream (after every step): one entry per chunk index, in
    /// order, from chunk 0 unless trimmed, each chunk the writer's, the end last and
    /// naming the writer's length and ending.
    pub fn check_logs(&mut self) {
        for (stream, name) in STREAMS.iter().enumerate() {
            let entries = self.log_entries(stream);
            let log = &self.logs[stream];
            let trimmed = self.faults[stream].trimmed;
            let writer = log
                .writer
                .filter(|_| !log.wild)
                .map(|w| self.readers[&w].prod());
            let mut next: Option<u64> = None;
            for (i, entry) in entries.iter().enumerate() {
                match entry {
                    LogEntry::Chunks { id, first, chunks } => {
                        match next {
                            // Two writers: any shape.
                            _ if log.wild => {}
                            None => assert!(
                                *first == 0 || trimmed,
                                "the log of {} lost its start: its first entry, {id}, holds \
                                 chunks from {first} on",
                                name
                            ),
                            Some(n) => assert_eq!(
                                *first, n,
                                "the log of {}: entry {id} after chunk {n}",
                                name
                            ),
                        }
                        let end = first + chunks.len() as u64;
                        next = Some(end);
                        if let Some(p) = writer {
                            assert!(end as usize <= p.chunks.len(), "a chunk never pushed");
                            assert_eq!(
                                chunks[..],
                                p.chunks[*first as usize..end as usize],
                                "the log of {} holds chunks the producer did not push",
                                name
                            );
                        }
                    }
                    LogEntry::End {
                        ending,
                        next: length,
                    } => {
                        assert_eq!(i + 1, entries.len(), "the end is the last entry");
                        let Some(p) = writer else { continue };
                        if *ending == LogEnding::Gone {
                            continue;
                        }
                        let len = p.chunks.len() as u64;
                        assert_eq!(*length, Some(len), "the end names the stream's length");
                        assert!(next.is_none_or(|n| n == len), "an end before every chunk");
                        let fits = match ending {
                            LogEnding::Done => p.ending == Some(Ending::Clean),
                            LogEnding::Error(m) => {
                                p.ending == Some(Ending::Source) && m == SOURCE_ERROR
                            }
                            LogEnding::Cancelled => p.ending == Some(Ending::Cancelled),
                            LogEnding::Full(limit) => p.ending == Some(Ending::LogFull(*limit)),
                            LogEnding::Gone => true,
                        };
                        assert!(fits, "the log ends {ending:?}, its producer {:?}", p.ending);
                    }
                }
            }
        }
    }

    /// A live durable producer renews its lease every heartbeat (checked after each
    /// time step): a lease that lapses is a stall, a death or a fault, never the
    /// engine's forgetting.
    pub fn check_renewals(&self, node: usize) {
        for key in self.order.iter().filter(|k| k.0 == node) {
            let r = &self.readers[key];
            let Some(p) = r.prod.as_ref() else { continue };
            let Some(log) = p.log.as_ref() else { continue };
            if r.started != Some(Role::Producer) || p.ending.is_some() {
                continue;
            }
            let at = log.renewed_at.expect("a live producer took its lease");
            assert!(
                self.now < at + self.nodes[node].heartbeat,
                "{key:?} last renewed its lease {:?} ago",
                self.now - at
            );
        }
    }
}

/// Whether `op` is durable mode's (log, lease, blocking reads): the application's
/// calls are checked without them, their own checks are here.
pub fn is_log_op(op: &Op) -> bool {
    match op {
        Op::XAdd { .. } | Op::XRange { .. } | Op::XRead { .. } | Op::PExpire { .. } => true,
        Op::SetPx { .. } => true,
        Op::Get { key } => matches!(parse_name(key), Name::Lease(_)),
        _ => false,
    }
}
