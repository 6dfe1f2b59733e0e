//! How a resumer recovers from what may have been lost, and keeps from waiting
//! forever: asking the producer again from what it has (after a gap, a lost message,
//! an interrupted connection), and its deadlines (the acknowledgement timeout, the
//! done watchdog, the liveness bound, the rewind retries).

use super::{Peer, Phase, Resumer, MAX_REWIND_ATTEMPTS};
use crate::config::Config;
use crate::engine::outbox::{Expect, Outbox, Timer};
use crate::engine::requests::Purpose;
use crate::engine::{Next, Position};
use crate::error::Error;
use crate::event::Event;
use crate::io::{Op, Reply, ReplyError};
use crate::wire::DONE_VALUE;
use std::time::{Duration, Instant};

impl Resumer {
    /// Asks the producer again, from chunk `from`, or (no content received since the
    /// hello: `None`) with the original request, under the same listener id: the
    /// producer replaces the old registration.
    pub(super) fn ask_again(
        &mut self,
        now: Instant,
        from: Option<u64>,
        config: &Config,
        out: &mut Outbox,
    ) {
        if let Some(from) = from {
            self.purpose = Purpose::Read(Position::Chunk(from));
        }
        self.rewinding = true;
        self.seq += 1;
        let at = now + config.ack_timeout();
        self.rewind_at = Some(at);
        out.arm(self.handle, Timer::Rewind, at);
        self.publish_request(true, config, out);
    }

    /// The pub/sub connection dropped (or this channel's subscription): what arrives
    /// from now on may follow a gap, so content is dropped until the hello of the
    /// request sent once subscribed again.
    pub(in crate::engine) fn on_interrupted(&mut self) {
        // A request that announced our extensions will be asked again, with a new
        // `seq`, even if no hello came yet: what arrives before that hello may follow a
        // gap.
        if self.can_recover() {
            self.rewinding = true;
        }
        // Silence while this end cannot hear is no sign of the producer's death: the
        // liveness bound waits for the restore (the reconnect window bounds the wait),
        // and starts again from it.
        self.liveness_at = None;
    }

    /// The liveness bound of an extended producer, paused while the connection was
    /// down, starts again from `now`.
    pub(super) fn restart_liveness(&mut self, now: Instant, out: &mut Outbox) {
        if matches!(self.peer, Peer::Extended { .. }) {
            self.last_heard = Some(now);
            let at = now + liveness_window(self.heartbeat);
            self.liveness_at = Some(at);
            out.arm(self.handle, Timer::Liveness, at);
        }
    }

    /// Subscribed again after a reconnect: ask again from what was received, or send
    /// the first request again if no answer had come.
    pub(super) fn resume_after_reconnect(
        &mut self,
        now: Instant,
        config: &Config,
        out: &mut Outbox,
    ) {
        match self.peer {
            Peer::Extended { .. } => {
                self.restart_liveness(now, out);
                self.ask_again(now, self.received_through(), config, out);
            }
            Peer::V1 => {}
            // No answer yet, to a request that announced our extensions: ask again with
            // a new `seq`, and give the producer a whole acknowledgement timeout.
            Peer::Unknown if self.extended => {
                if let Phase::AwaitingAck { deadline } = &mut self.phase {
                    *deadline = now + config.ack_timeout();
                    out.arm(self.handle, Timer::Ack, *deadline);
                }
                self.ask_again(now, None, config, out);
            }
            // A v1 request with no answer yet: the original request is still exact.
            Peer::Unknown => self.publish_request(config.extensions(), config, out),
        }
    }

    /// Deadline `timer` of this resumer came due.
    pub(in crate::engine) fn on_timeout(
        &mut self,
        now: Instant,
        timer: Timer,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        match timer {
            Timer::Ack => {
                // No producer answered: the stream may have finished meanwhile.
                out.unsubscribe(self.handle, self.channel.clone(), Expect::Write);
                Next::Check(Error::AckTimeout {
                    stream_id: self.stream_id.clone(),
                    waited: config.ack_timeout(),
                })
            }
            Timer::Watchdog => {
                self.watchdog_at = None;
                let key = self.names.sentinel.clone();
                out.send(self.handle, Op::Get { key }, Expect::Watchdog);
                Next::Stay
            }
            Timer::Liveness => self.on_liveness_due(now, out),
            Timer::Rewind => {
                // No hello since asking again: ask once more, a few times, then leave it
                // to the liveness bound.
                self.rewind_at = None;
                if self.rewinding && self.rewind_attempts < MAX_REWIND_ATTEMPTS {
                    self.rewind_attempts += 1;
                    // The purpose already names where to start.
                    self.ask_again(now, None, config, out);
                }
                Next::Stay
            }
            // A producer's or a tail's timers, never a resumer's.
            Timer::Heartbeat
            | Timer::Grace
            | Timer::Flush
            | Timer::Lease
            | Timer::LeaseCheck
            | Timer::ReadRetry => Next::Stay,
        }
    }

    /// The done watchdog's reading: two readings of a finished (or vanished) stream in
    /// a row end the resumer, giving in-flight messages a whole interval to arrive; a
    /// resumer of an extended producer asks again instead of ending.
    pub(super) fn on_watchdog(
        &mut self,
        now: Instant,
        reply: Result<Reply, ReplyError>,
        config: &Config,
        out: &mut Outbox,
    ) -> Next {
        let finished = match &reply {
            Ok(Reply::Data(value)) if value == DONE_VALUE => Some(true),
            Ok(Reply::Nil) => Some(false),
            // A failed reading proves nothing either way.
            Err(_) => None,
            Ok(_) => {
                self.done_readings = 0;
                None
            }
        };
        let at = now + config.done_watchdog_interval();
        if let Some(done) = finished {
            self.done_readings += 1;
            if self.done_readings >= 2 && done && matches!(self.peer, Peer::Extended { .. }) {
                // An extended producer's end names its chunk count; without it this
                // resumer cannot know it has every chunk, so it does not end: it asks
                // again from what it has (a producer in its grace period, or still
                // answering after an unsettled end, sends the rest and the end), and if
                // nobody answers, the liveness bound fails it (`ProducerGone`).
                self.done_readings = 0;
                self.watchdog_at = Some(at);
                out.arm(self.handle, Timer::Watchdog, at);
                if !self.rewinding {
                    self.ask_again(now, self.received_through(), config, out);
                }
                return Next::Stay;
            }
            if self.done_readings >= 2 {
                log::debug!(
                    "resumable-stream: the done watchdog ends a reader of {:?}: the end message never arrived",
                    self.stream_id
                );
                let handle = self.handle;
                let event = if done {
                    Event::End { handle }
                } else {
                    Event::Failed {
                        handle,
                        error: Error::Vanished {
                            stream_id: self.stream_id.clone(),
                        },
                    }
                };
                return self.close(event, out);
            }
        }
        self.watchdog_at = Some(at);
        out.arm(self.handle, Timer::Watchdog, at);
        Next::Stay
    }

    /// Nothing heard from an extended producer for three of its heartbeat intervals:
    /// it is gone (killed, or cut off from Redis).
    fn on_liveness_due(&mut self, now: Instant, out: &mut Outbox) -> Next {
        self.liveness_at = None;
        let window = liveness_window(self.heartbeat);
        let heard = self.last_heard.unwrap_or(now);
        if now < heard + window {
            let at = heard + window;
            self.liveness_at = Some(at);
            out.arm(self.handle, Timer::Liveness, at);
            return Next::Stay;
        }
        let error = Error::ProducerGone {
            stream_id: self.stream_id.clone(),
            silent_for: now - heard,
        };
        self.fail(error, out)
    }
}

/// How long a resumer waits for an extended producer that promised a heartbeat every
/// `heartbeat`: three intervals, so that one late or lost heartbeat is no failure.
pub(super) fn liveness_window(heartbeat: Duration) -> Duration {
    heartbeat.max(Duration::from_millis(100)) * 3
}
