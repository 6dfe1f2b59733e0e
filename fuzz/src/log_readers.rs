//! Durable mode's readers in the model: every event of a log reader, checked against
//! the chunks of its stream's log writer from the reader's position (see
//! `crate::durable` for the log itself), and the rule a durable producer's local reader
//! ends by.

use crate::durable::StreamLog;
use crate::harness::Harness;
use crate::model::*;
use crate::reference;
use resumable_stream::wire::log::{LogEnding, LogEntry};
use resumable_stream::{Error, Event, Position, Role};

/// How a log reader's event leaves what it received, for the checks.
enum Received {
    Nothing,
    /// `Data` with this chunk index.
    Upto(u64),
    /// The writer's ending, after every chunk.
    Complete(Ending),
    /// The `gone` end: every chunk in the log.
    Gone,
    /// Past the end: the writer's length.
    PastEnd(u64),
}

impl Harness {
    /// The bytes log reader `key` must hold once it has `upto` chunks of the writer's.
    fn log_owed(&self, key: Key, writer: Key, upto: u64) -> Vec<u8> {
        let r = &self.readers[&key];
        let chunks = &self.readers[&writer].prod().chunks;
        let upto = upto as usize;
        assert!(
            upto <= chunks.len(),
            "{key:?}: chunk {upto} of {}",
            chunks.len()
        );
        match r.position {
            Position::Chunk(k) if k as usize >= upto => Vec::new(),
            Position::Chunk(k) => reference::join(&chunks[k as usize..upto]),
            Position::Units(n) if n > 0 => reference::catch_up(
                &reference::join(&chunks[..upto]),
                n as i64,
                self.nodes[key.0].unit,
            ),
            _ => reference::join(&chunks[..upto]),
        }
    }

    /// An event of a log reader (see the module documentation).
    pub fn on_log_reader_event(&mut self, key: Key, event: &Event) {
        let stream = self.readers[&key].stream;
        let faults = self.faults[stream];
        let now = self.now;
        let log = self.logs[stream].clone();
        // A log that lost its start (trimmed, or expired and created anew), or a tail
        // that skipped part of it.
        let cut = faults.trimmed || log.wild;
        // Redis holds no log for the stream (it expired, was lost, or its producer
        // wrote none): only then may a reader fail with `Vanished`.
        let key_of_log = crate::model::log_names(stream).0;
        let absent = log.expired || self.net.redis.stream_len(now, &key_of_log).is_none();
        let r = self.readers.get_mut(&key).unwrap();
        let mut received = Received::Nothing;
        match event {
            Event::Started { role, .. } => {
                assert!(!r.any_event, "Started is a first event");
                assert_eq!(*role, Role::Resumer, "a log reader starts as a resumer");
                r.started = Some(Role::Resumer);
            }
            Event::Data { data, chunk, .. } => {
                assert_eq!(r.started, Some(Role::Resumer), "Data before Started");
                assert!(!data.is_empty(), "empty Data");
                r.received.push(data.clone());
                r.received_bytes.extend_from_slice(data);
                received = Received::Upto(chunk.expect("a log reader's Data has its index"));
            }
            // Its stream is done and its log empty (expired): nothing to replay.
            Event::Done { .. } => assert!(!r.any_event, "Done is a first event"),
            Event::End { .. } => {
                assert_eq!(r.started, Some(Role::Resumer), "End before Started");
                received = Received::Complete(Ending::Clean);
            }
            Event::Failed { error, .. } => match error {
                Error::Source(m) => {
                    assert_eq!(m.message(), SOURCE_ERROR);
                    received = Received::Complete(Ending::Source);
                }
                Error::Cancelled => received = Received::Complete(Ending::Cancelled),
                Error::LogFull { limit, .. } => {
                    received = Received::Complete(Ending::LogFull(*limit));
                }
                Error::ProducerGone { .. } => {
                    assert!(
                        log.gone || log.wild,
                        "{key:?}: ProducerGone, but no gone end in its log"
                    );
                    received = Received::Gone;
                }
                Error::PastEnd {
                    position, length, ..
                } => {
                    assert_eq!(r.position, Position::Chunk(*position), "{error:?}");
                    assert!(position > length, "{error:?}");
                    assert!(r.received_bytes.is_empty() || log.wild, "{error:?}");
                    received = Received::PastEnd(*length);
                }
                Error::BeforeRetained { .. } => {
                    assert!(cut, "{key:?}: {error:?}, but the log was never trimmed")
                }
                Error::Vanished { .. } => {
                    assert!(absent, "{key:?}: {error:?}, but Redis holds its log")
                }
                Error::Redis { .. } | Error::UnexpectedReply { .. } => {
                    assert!(faults.any(), "{key:?} failed without a fault: {error:?}")
                }
                other => panic!("{key:?}, a log reader, fails with {other:?}"),
            },
            other => panic!("{key:?}, a log reader, gets {other:?}"),
        }
        r.any_event = true;
        if event.is_final() {
            r.finals += 1;
            r.final_at = Some(now);
        }
        // How many chunks the log holds, for a reader told the producer is gone (unless
        // trimmed, or expired since).
        let in_log = match received {
            Received::Gone if !cut => {
                let entries = self.log_entries(stream);
                let chunks = entries.iter().filter_map(|e| match e {
                    LogEntry::Chunks { id, .. } => Some(id.ms),
                    LogEntry::End { .. } => None,
                });
                (!entries.is_empty()).then(|| chunks.max().unwrap_or(0))
            }
            _ => None,
        };
        let log = &self.logs[stream];
        let Some(writer) = log.writer.filter(|_| !log.wild) else {
            // Nothing appended yet (or two writers): a reader has nothing to check.
            if let Received::Upto(_) | Received::Complete(_) = received {
                assert!(log.wild, "{key:?} read chunks nobody appended");
            }
            return;
        };
        let p = self.readers[&writer].prod();
        let received_bytes = &self.readers[&key].received_bytes;
        match received {
            Received::Nothing => {}
            Received::Upto(n) => {
                if let Position::Chunk(k) = self.readers[&key].position {
                    assert!(n > k, "{key:?}: chunk index {n} from position {k}");
                }
                let owed = self.log_owed(key, writer, n);
                assert_eq!(*received_bytes, owed, "{key:?}: the bytes up to chunk {n}");
            }
            Received::Complete(ending) => {
                assert_eq!(
                    p.ending,
                    Some(ending),
                    "{key:?} ended as its writer did not"
                );
                let owed = self.log_owed(key, writer, p.chunks.len() as u64);
                assert_eq!(*received_bytes, owed, "{key:?} ended without every chunk");
            }
            Received::Gone => {
                if let Some(in_log) = in_log {
                    let owed = self.log_owed(key, writer, in_log);
                    assert_eq!(
                        *received_bytes, owed,
                        "{key:?}: ProducerGone without every chunk in the log"
                    );
                }
            }
            Received::PastEnd(length) => {
                assert_eq!(length, p.chunks.len() as u64, "PastEnd names the length");
            }
        }
    }
}

/// Whether the local reader of producer `p` may end with `ending`, given its stream's
/// log: a durable producer's ending is its log's (its own end entry, or `gone` for a
/// fenced one).
pub fn ends_as_logged(p: &Prod, log: &StreamLog, ending: LogEnding) -> bool {
    let Some(own) = p.log.as_ref() else {
        return true;
    };
    if log.wild {
        return true;
    }
    if ending == LogEnding::Gone {
        return log.gone;
    }
    let _ = own;
    log.end.as_ref() == Some(&ending)
}
