//! A producer's listeners: answering each resume request (its catch-up, or the
//! typed refusal of one it can no longer serve), a cancel, the replies to what was
//! published to them, and the heartbeats that keep listeners of ours from taking
//! silence for death.

use super::{Ending, Phase, Producer};
use crate::config::Config;
use crate::engine::outbox::{Expect, Outbox, Timer};
use crate::event::Handle;
use crate::io::{Reply, ReplyError};
use crate::wire::{Control, ErrorKind, Incoming, ResumeRequest, DONE_MESSAGE};
use bytes::Bytes;
use smallvec::SmallVec;
use std::time::Instant;

#[derive(Debug)]
pub(super) struct Listener {
    /// Names this listener in `Expect::Deliver`, unique within its producer.
    pub(super) serial: u64,
    pub(super) channel: Bytes,
    /// The control-message token of a listener that speaks our extensions.
    pub(super) token: Option<String>,
    /// A publish to this extended listener failed: it gets no more content, only the
    /// `lost` notice (again at every heartbeat tick, in case that one is lost too),
    /// until it asks again or leaves.
    pub(super) lost: bool,
}

impl Listener {
    /// Publishes `message` to this listener, its reply routed back to it.
    pub(super) fn deliver(&self, handle: Handle, message: Bytes, out: &mut Outbox) {
        let expect = Expect::Deliver {
            listener: self.serial,
        };
        out.publish(handle, self.channel.clone(), message, expect);
    }
}

fn lost_notice(token: &str) -> Bytes {
    Control::Error {
        kind: ErrorKind::Lost,
        message: "a message to this listener could not be published".to_owned(),
        next: None,
    }
    .encode(token)
}

impl Producer {
    /// A PUBLISH to one listener was answered. A count of 0 means nobody subscribes to
    /// its channel any more: the listener left (its subscription always precedes its
    /// request), so the producer stops publishing to it.
    pub(super) fn on_delivered(
        &mut self,
        serial: u64,
        reply: Result<Reply, ReplyError>,
        out: &mut Outbox,
    ) {
        let Some(index) = self.listeners.iter().position(|l| l.serial == serial) else {
            // To a listener already sent its end: if this reached nobody or failed, it
            // may be reconnecting and ask again for what it missed, so keep answering
            // for a while after the end.
            match reply {
                Err(_) => {
                    out.stats.failed_writes += 1;
                    self.unsettled = true;
                }
                Ok(Reply::Integer(0)) => self.unsettled = true,
                Ok(_) => {}
            }
            return;
        };
        match reply {
            Ok(Reply::Integer(0)) => {
                let listener = self.listeners.remove(index);
                self.unsettled |= listener.token.is_some();
                out.stats.departed_listeners += 1;
            }
            Ok(_) => {}
            Err(error) => {
                out.stats.failed_writes += 1;
                log::warn!(
                    "resumable-stream: a chunk of {:?} was not published: {error}",
                    self.stream_id
                );
                // An extended listener is told, and asks again from what it has; a v1
                // listener cannot be told anything, so it keeps getting what follows.
                let listener = &mut self.listeners[index];
                self.unsettled |= listener.token.is_some();
                if let (Some(token), false) = (&listener.token, listener.lost) {
                    listener.lost = true;
                    listener.deliver(self.handle, lost_notice(token), out);
                }
            }
        }
    }

    /// A message on the request channel: a resume request (or a cancel).
    pub(in crate::engine) fn on_request(
        &mut self,
        now: Instant,
        message: &[u8],
        config: &Config,
        out: &mut Outbox,
    ) {
        let request = match ResumeRequest::decode(message) {
            Ok(request) => request,
            Err(error) => {
                out.stats.malformed_requests += 1;
                log::debug!(
                    "resumable-stream: dropped a resume request for {:?}: {error}",
                    self.stream_id
                );
                return;
            }
        };
        let channel = config.names().chunk_channel(&request.listener_id);
        if request.ext.as_ref().is_some_and(|ext| ext.cancel) {
            return self.on_cancel_request(channel, &request, config, out);
        }
        if let Some(index) = self.listeners.iter().position(|l| l.channel == channel) {
            if request.ext.is_none() {
                out.stats.duplicate_listeners += 1;
                return;
            }
            // An extended listener asking again (after a lost message or a reconnect):
            // it is served afresh from the position it names.
            self.listeners.remove(index);
        }
        let token = request.ext.as_ref().map(|ext| ext.token.clone());
        let Some(catch_up) = self.buffer.catch_up_for(&request, config.skip_unit()) else {
            // The data asked for is no longer held: never send wrong data. An extended
            // listener is told; a v1 listener gets no acknowledgement and fails with
            // its own ack timeout.
            if let Some(token) = token {
                let control = Control::Error {
                    kind: ErrorKind::Truncated,
                    message: "the data asked for is no longer buffered".to_owned(),
                    next: None,
                };
                out.publish(self.handle, channel, control.encode(&token), Expect::Write);
            }
            return;
        };
        let next = self.buffer.chunk_count();
        let serial = self.next_serial;
        self.next_serial += 1;
        let heartbeat = config.heartbeat_interval();
        // The catch-up is the acknowledgement: sent even when empty. An extended
        // listener gets it in one message with the hello, so neither arrives alone.
        let answer = match &token {
            Some(token) => Incoming::encode_answer(
                token,
                next,
                heartbeat.as_millis().min(u128::from(u64::MAX)) as u64,
                request.ext.as_ref().map_or(0, |ext| ext.seq),
                &catch_up,
            ),
            None => catch_up,
        };
        let mut messages: SmallVec<[Bytes; 2]> = SmallVec::new();
        messages.push(answer);
        match &self.ending {
            Some(ending) => messages.push(ending.message(next, token.as_deref())),
            None => {
                let extended = token.is_some();
                self.listeners.push(Listener {
                    serial,
                    channel: channel.clone(),
                    token,
                    lost: false,
                });
                if extended && self.heartbeat_at.is_none() {
                    self.arm_heartbeat(now, config, out);
                }
            }
        }
        for message in messages {
            let expect = Expect::Deliver { listener: serial };
            out.publish(self.handle, channel.clone(), message, expect);
        }
    }

    fn on_cancel_request(
        &mut self,
        channel: Bytes,
        request: &ResumeRequest,
        config: &Config,
        out: &mut Outbox,
    ) {
        let token = request.ext.as_ref().map_or("", |ext| ext.token.as_str());
        let answer = match self.phase {
            // Already over: the canceller learns it finished.
            Phase::Finished => Bytes::from_static(DONE_MESSAGE),
            Phase::Live => Control::Cancelled { next: None }.encode(token),
            // Still starting: nothing to stop yet. No answer, so the canceller fails
            // with its ack timeout rather than being told a lie.
            Phase::Subscribing | Phase::Marking => return,
        };
        out.publish(self.handle, channel, answer, Expect::Write);
        if self.phase == Phase::Live {
            let _ = self.end(Ending::Cancelled, config, out);
        }
    }

    /// Every heartbeat interval while extended listeners are attached: if nothing was
    /// published to them since the last tick, say "alive"; a listener whose content
    /// was lost is told again. No listener, no traffic.
    pub(super) fn on_heartbeat_due(&mut self, now: Instant, config: &Config, out: &mut Outbox) {
        self.heartbeat_at = None;
        if self.phase != Phase::Live || !self.listeners.iter().any(|l| l.token.is_some()) {
            return;
        }
        let quiet = std::mem::replace(&mut self.quiet, true);
        for listener in &self.listeners {
            let message = match &listener.token {
                Some(token) if listener.lost => lost_notice(token),
                Some(token) if quiet => Control::Heartbeat.encode(token),
                _ => continue,
            };
            listener.deliver(self.handle, message, out);
        }
        self.arm_heartbeat(now, config, out);
    }

    /// The next heartbeat tick, one interval from `now`.
    fn arm_heartbeat(&mut self, now: Instant, config: &Config, out: &mut Outbox) {
        let at = now + config.heartbeat_interval();
        self.heartbeat_at = Some(at);
        out.arm(self.handle, Timer::Heartbeat, at);
    }
}
