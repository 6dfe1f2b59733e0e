//! Every event an engine emits, checked against the model (`crate::model`): the event
//! grammar per handle, a producer's endings, and a resumer's data against what it is
//! owed (`check_resumer`). Durable log readers' events go to `crate::log_readers`.

use crate::harness::{Ctx, Harness};
use crate::log_readers::ends_as_logged;
use crate::model::*;
use crate::reference;
use bytes::Bytes;
use resumable_stream::sim::{Item, Link};
use resumable_stream::wire::log::LogEnding;
use resumable_stream::{Error, Event, Role};

#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// A `Data` event with this chunk index.
    Data(Option<u64>),
    /// Ended by a message, the way the producer ended.
    Ended(Ending),
    /// A cancel was answered `Cancelled` by this producer.
    CancelledBy(Key),
    /// A resumer ended by the done watchdog, not by a message.
    WatchdogEnd,
}

impl Harness {
    pub fn on_event(&mut self, node: usize, event: Event, ctx: Ctx) {
        let key = (node, event.handle());
        let (faults, stream) = {
            let r = self
                .readers
                .get(&key)
                .expect("an event for a handle never issued");
            (self.faults[r.stream], r.stream)
        };
        if self.readers[&key].log_reader && !self.readers[&key].dropped {
            assert_eq!(
                self.readers[&key].finals, 0,
                "an event after the final one: {event:?}"
            );
            return self.on_log_reader_event(key, &event);
        }
        // Durable mode: how the stream's log ended, for its producer's events.
        let log = self.logs[stream].clone();
        // Redis holds no log for the stream now (it expired, or was lost).
        let log_absent_now = self
            .net
            .redis
            .stream_len(self.now, &crate::model::log_names(stream).0)
            .is_none();
        // The producer a resumer over pub/sub is owed, and how it ended.
        let owed_ending = self.readers[&key]
            .owed
            .as_ref()
            .and_then(|o| self.readers.get(&o.producer))
            .and_then(|p| p.prod.as_ref())
            .and_then(|p| p.ending);
        let now = self.now;
        let mut listeners_untold = false;
        let r = self.readers.get_mut(&key).unwrap();
        assert_eq!(r.finals, 0, "an event after the final one: {event:?}");
        if r.dropped {
            let allowed = match &event {
                Event::Started {
                    role: Role::Producer,
                    ..
                }
                | Event::Failed { .. } => r.started.is_none(),
                Event::StopSource { .. } => true,
                _ => false,
            };
            assert!(allowed, "an event after drop_reader: {event:?}");
        }
        let mut check = None;
        match &event {
            Event::Started { role, .. } => {
                assert!(!r.any_event, "Started is a first event: {event:?}");
                match role {
                    Role::Producer => {
                        assert!(r.prod.is_some(), "Started as producer, never subscribed");
                        // Durable mode: it renews its lease every heartbeat from now on.
                        if let Some(log) = r.prod_mut().log.as_mut() {
                            log.renewed_at = Some(now);
                        }
                    }
                    Role::Resumer => {
                        assert!(ctx.chunk_message, "a resumer starts on its first message");
                        assert!(matches!(r.kind, Kind::Idempotent | Kind::Resume));
                    }
                }
                r.started = Some(*role);
            }
            Event::Data { data, chunk, .. } => {
                assert!(!data.is_empty(), "empty Data");
                match r.started {
                    Some(Role::Producer) => {
                        let (expected, index) =
                            r.expected_local.pop_front().expect("unexpected local Data");
                        assert_eq!(data, &expected, "the local reader gets each chunk");
                        assert_eq!(*chunk, Some(index), "the local reader's chunk index");
                    }
                    Some(Role::Resumer) => {
                        assert!(ctx.chunk_message);
                        r.received.push(data.clone());
                        r.received_bytes.extend_from_slice(data);
                        check = Some(Check::Data(*chunk));
                    }
                    None => panic!("Data before Started: {event:?}"),
                }
            }
            Event::StopSource { .. } => {
                assert_eq!(r.started, Some(Role::Producer));
                assert!(!r.stopped, "StopSource twice");
                r.stopped = true;
                let p = r.prod_mut();
                match p.ending {
                    Some(Ending::Cancelled | Ending::LogFull(_)) => {}
                    // Durable mode: the engine stopped it. A reader ended the log (the
                    // lease had lapsed): fenced; or the log cannot be written (only
                    // under a fault), and its listeners are never told.
                    None if p.log.is_some() => {
                        let fenced = log.gone;
                        assert!(
                            fenced || faults.any() || log.wild,
                            "{key:?} was stopped, neither fenced nor under a fault"
                        );
                        p.ending = Some(if fenced {
                            Ending::Fenced
                        } else {
                            Ending::LogFailed
                        });
                        p.registrations.clear();
                        listeners_untold = !fenced;
                    }
                    other => panic!("StopSource without a cancel: {other:?}"),
                }
            }
            Event::End { .. } => match r.started {
                Some(Role::Producer) => {
                    assert_eq!(
                        r.prod().ending,
                        Some(Ending::Clean),
                        "a producer ends when finished"
                    );
                    assert!(
                        ends_as_logged(r.prod(), &log, LogEnding::Done),
                        "{key:?} ended cleanly, but its log ends {:?}",
                        log.end
                    );
                }
                Some(Role::Resumer) => {
                    check = Some(if ctx.chunk_message {
                        Check::Ended(Ending::Clean)
                    } else {
                        Check::WatchdogEnd
                    });
                }
                None => panic!("End before Started"),
            },
            Event::Done { .. }
            | Event::NotFound { .. }
            | Event::State { .. }
            | Event::Cancelled { .. } => {
                assert!(!r.any_event, "an answer is a first event: {event:?}");
                let fits = match event {
                    Event::Done { .. } => !matches!(r.kind, Kind::State | Kind::Create),
                    Event::NotFound { .. } => matches!(r.kind, Kind::Resume | Kind::Cancel),
                    Event::State { .. } => r.kind == Kind::State,
                    _ => r.kind == Kind::Cancel,
                };
                assert!(fits, "{event:?} answers a {:?} request", r.kind);
                if let (Event::Cancelled { .. }, false) = (&event, faults.wild) {
                    assert!(ctx.chunk_message);
                    let by = r
                        .cancel_answered_by
                        .expect("Cancelled, but no producer was asked");
                    check = Some(Check::CancelledBy(by));
                }
            }
            Event::Failed { error, .. } => {
                if r.started == Some(Role::Producer) {
                    let p = r.prod_mut();
                    let ending = p.ending;
                    let durable = p.log.is_some();
                    // Durable mode: the local reader's ending is the log's.
                    let logged = |end: LogEnding| ends_as_logged(p, &log, end);
                    let log_absent = log.expired || log_absent_now;
                    let fits = match error {
                        Error::Source(m) => {
                            ending == Some(Ending::Source)
                                && m.message() == SOURCE_ERROR
                                && logged(LogEnding::Error(SOURCE_ERROR.to_owned()))
                        }
                        Error::Cancelled => {
                            ending == Some(Ending::Cancelled) && logged(LogEnding::Cancelled)
                        }
                        Error::LogFull { limit, .. } => {
                            ending == Some(Ending::LogFull(*limit))
                                && logged(LogEnding::Full(*limit))
                        }
                        // Fenced while live, or while its last chunks went in.
                        // (A trim may take the entry it checks: fenced too.)
                        Error::Fenced { .. } => {
                            // Or another producer of the id wrote the log (an explicit
                            // create of a live id): Redis refused this one's appends.
                            let other_writer = log.writer.is_some_and(|w| w != key);
                            durable
                                && (logged(LogEnding::Gone)
                                    || faults.trimmed
                                    || other_writer
                                    || log.wild)
                        }
                        // The log could not be written.
                        Error::Redis { .. } | Error::UnexpectedReply { .. } => {
                            durable && (faults.any() || log.wild)
                        }
                        // Its log is gone (expired, or lost): never made anew.
                        Error::Vanished { .. } => durable && log_absent,
                        _ => false,
                    };
                    assert!(
                        fits,
                        "{key:?}, a live producer, fails only by fail(), a cancel or its \
                         log: {error:?} (ending {ending:?}, its log {log:?})"
                    );
                    p.ending.get_or_insert(Ending::LogFailed);
                } else {
                    if let Some(p) = r.prod.as_mut() {
                        // Setup failed: it leaves its request channel.
                        p.routed = false;
                        p.registrations.clear();
                    }
                    if r.started == Some(Role::Resumer) && ctx.chunk_message {
                        match error {
                            Error::Source(_) => check = Some(Check::Ended(Ending::Source)),
                            Error::Cancelled => check = Some(Check::Ended(Ending::Cancelled)),
                            _ => {}
                        }
                    }
                    if !faults.any() {
                        let fits = match error {
                            Error::AckTimeout { .. } | Error::ProducerGone { .. } => true,
                            // Durable mode: the producer's log ended it.
                            Error::Remote { kind, .. } if kind == "fenced" => {
                                owed_ending == Some(Ending::Fenced)
                            }
                            Error::Remote { kind, .. } if kind == "log-full" => {
                                matches!(owed_ending, Some(Ending::LogFull(_)))
                            }
                            Error::AlreadyProducing { .. } => {
                                matches!(r.kind, Kind::Idempotent | Kind::Create)
                            }
                            Error::Truncated { .. } => r.refused,
                            Error::Source(_) | Error::Cancelled => check.is_some(),
                            _ => false,
                        };
                        assert!(
                            fits,
                            "{key:?} ({:?}) failed without a fault: {error:?}",
                            r.kind
                        );
                    }
                }
            }
            other => panic!("an event this target does not know: {other:?}"),
        }
        r.any_event = true;
        if event.is_final() {
            r.finals += 1;
            r.final_at = Some(now);
        }
        if listeners_untold {
            self.faults[stream].other = true;
        }
        match check {
            Some(Check::CancelledBy(by)) => {
                let ending = self.readers[&by].prod().ending;
                assert_eq!(
                    ending,
                    Some(Ending::Cancelled),
                    "{key:?} was told Cancelled, but its producer {by:?} was not cancelled"
                );
            }
            Some(check) => self.check_resumer(key, faults, check),
            None => {}
        }
    }

    /// A resumer's data against what it is owed.
    pub fn check_resumer(&self, key: Key, faults: Faults, check: Check) {
        if faults.wild {
            return;
        }
        let r = &self.readers[&key];
        let Some(owed) = &r.owed else {
            panic!("{key:?} received {:?} without being registered", r.received);
        };
        let producer = self.readers[&owed.producer].prod();
        let owed_messages = || -> Vec<Bytes> {
            std::iter::once(&owed.catch_up)
                .chain(&producer.chunks[owed.from..])
                .filter(|m| !m.is_empty())
                .cloned()
                .collect()
        };
        let owed_through = |n: usize| -> Vec<u8> {
            assert!(
                n >= owed.from && n <= producer.chunks.len(),
                "{key:?}: chunk index {n}"
            );
            let mut out = owed.catch_up.to_vec();
            out.extend(reference::join(&producer.chunks[owed.from..n]));
            out
        };
        // An extended resumer is checked under every fault but a wild one (two
        // producers of one stream, a forged request naming it): its content carries
        // chunk indices, so a lost or repeated message is asked for again, never
        // delivered wrong. A v1 resumer cannot tell: after a lost message it holds a
        // subsequence of what it is owed, after a repeated one anything.
        match check {
            Check::Data(Some(n)) => {
                assert!(r.extended, "{key:?}: a chunk index for a v1 resumer");
                assert_eq!(
                    r.received_bytes,
                    owed_through(n as usize),
                    "{key:?}: the bytes up to chunk {n} (owed from chunk {})",
                    owed.from
                );
            }
            Check::Data(None) => {
                assert!(
                    !r.extended,
                    "{key:?}: an extended resumer without chunk indices"
                );
                let owed = owed_messages();
                if faults.duplicated {
                    // Anything: a repeat looks like content.
                } else if faults.silent || faults.failed_publish {
                    assert!(
                        is_subsequence(&r.received, &owed),
                        "{key:?} received {:?}, not a subsequence of {owed:?}",
                        r.received
                    );
                } else {
                    assert!(
                        owed.starts_with(&r.received),
                        "{key:?} received {:?}, owed {owed:?}",
                        r.received
                    );
                }
            }
            Check::CancelledBy(_) => {}
            Check::Ended(ending) => {
                let actual = producer
                    .ending
                    .expect("ended by a message before its producer");
                if r.extended {
                    assert_eq!(actual, ending, "{key:?} ended as its producer did");
                    assert_eq!(
                        r.received_bytes,
                        owed_through(producer.chunks.len()),
                        "{key:?} ended without all it is owed"
                    );
                } else if !(faults.silent || faults.failed_publish || faults.duplicated) {
                    assert_eq!(
                        r.received,
                        owed_messages(),
                        "{key:?} ended without all it is owed"
                    );
                }
            }
            // The done watchdog read the stream finished twice, the end message never
            // came: an extended resumer that ends cleanly has everything.
            Check::WatchdogEnd => {
                if r.extended {
                    assert_eq!(
                        r.received_bytes,
                        owed_through(producer.chunks.len()),
                        "{key:?} ended by the done watchdog without all it is owed"
                    );
                } else if !(faults.silent
                    || faults.failed_publish
                    || faults.duplicated
                    || self.in_flight_to(key))
                {
                    // A v1 resumer cannot ask again, but nothing was lost on its way
                    // and nothing is still coming: it has everything.
                    assert_eq!(
                        r.received,
                        owed_messages(),
                        "{key:?} (v1) ended by the done watchdog without all it is owed"
                    );
                }
            }
        }
    }

    /// Whether a message to `key`'s chunk channel is still on the network: its
    /// `PUBLISH` not yet run, or the message not yet delivered.
    pub fn in_flight_to(&self, key: Key) -> bool {
        let Some(listener) = self.readers[&key].listener.as_deref() else {
            return false;
        };
        let channel = chunk_channel(listener);
        (0..self.nodes.len()).any(|node| {
            let publishes = self
                .net
                .items(node, Link::CommandsUp)
                .any(|item| matches!(item, Item::Command(c) if c.op.routing_key() == &channel[..]));
            let messages = self
                .net
                .items(node, Link::PubSubDown)
                .any(|item| matches!(item, Item::Message { channel: c, .. } if *c == channel));
            publishes || messages
        })
    }
}
