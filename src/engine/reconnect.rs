//! What a lost pub/sub connection, or one lost subscription, does to the engine's
//! machines: Redis forgot the subscriptions and dropped what was published meanwhile,
//! so every channel is subscribed again once the connection is back, and each resumer
//! of a producer of ours asks again from what it has (no byte lost, none repeated).
//! A resumer of a v1 producer cannot be told what it missed: it fails with a typed
//! error.

use super::outbox::Expect;
use super::{Engine, Machine};
use crate::error::Error;
use crate::event::Handle;
use crate::io::{Op, PubSubState, ReplyError};
use bytes::Bytes;
use std::time::Instant;

impl Engine {
    /// The pub/sub connection's state changed; see [`PubSubState`].
    pub fn handle_pubsub_state(&mut self, now: Instant, state: PubSubState) {
        let _ = now;
        match state {
            PubSubState::Interrupted => self.on_pubsub_interrupted(),
            PubSubState::Restored => self.on_pubsub_restored(),
            PubSubState::Lost => self.on_pubsub_lost(),
        }
    }

    /// The server dropped the subscription of `channel` on its own (a Redis Cluster
    /// shard whose slot moved sends `sunsubscribe`), or confirmed an unsubscription of
    /// ours. A channel a stream still listens on is subscribed again, and its stream
    /// recovers as after an interrupted connection; any other channel is none of the
    /// engine's business.
    pub fn handle_subscription_dropped(&mut self, now: Instant, channel: &[u8]) {
        let _ = now;
        let Some(handle) = self.routes.get(channel).copied() else {
            return;
        };
        match self.machines.get_mut(&handle) {
            // Retiring: the drop is the confirmation of its own UNSUBSCRIBE.
            Some(Machine::Producer(p)) if p.retiring() => return,
            Some(Machine::Producer(p)) => p.on_pubsub_interrupted(),
            // What was published meanwhile is lost, and a v1 resumer cannot ask for it
            // again: it fails, as it does when the whole connection drops (bug 17).
            Some(Machine::Resumer(r)) if !r.can_recover() => {
                let next = r.fail_connection(Self::pubsub_error(), &mut self.out);
                self.apply(handle, next);
                return;
            }
            Some(Machine::Resumer(r)) => r.on_interrupted(),
            _ => return,
        }
        let channel = Bytes::copy_from_slice(channel);
        self.out
            .send(handle, Op::Subscribe { channel }, Expect::Resubscribe);
    }

    fn pubsub_error() -> Error {
        Error::Redis {
            command: "SUBSCRIBE",
            error: ReplyError::Connection("the pub/sub connection was lost".to_owned()),
        }
    }

    /// Fails every resumer `doomed` picks, with the lost connection as the cause.
    fn fail_resumers(&mut self, doomed: impl Fn(&super::resumer::Resumer) -> bool) {
        let handles: Vec<Handle> = self
            .machines
            .iter()
            .filter(|(_, machine)| matches!(machine, Machine::Resumer(r) if doomed(r)))
            .map(|(handle, _)| *handle)
            .collect();
        for handle in handles {
            let Some(Machine::Resumer(r)) = self.machines.get_mut(&handle) else {
                continue;
            };
            let next = r.fail_connection(Self::pubsub_error(), &mut self.out);
            self.apply(handle, next);
        }
    }

    /// The connection dropped and the driver is reconnecting: resumers of v1
    /// producers fail now (nothing can tell them what they missed); the others wait
    /// for the restore and then ask again.
    fn on_pubsub_interrupted(&mut self) {
        self.fail_resumers(|r| !r.can_recover());
        for machine in self.machines.values_mut() {
            match machine {
                Machine::Producer(p) => p.on_pubsub_interrupted(),
                Machine::Resumer(r) => r.on_interrupted(),
                // The log's readers need no subscription.
                Machine::Opening(_)
                | Machine::Checking(_)
                | Machine::LogReader(_)
                | Machine::Tail(_) => {}
            }
        }
    }

    /// The connection is back: every channel is subscribed again, in handle order.
    fn on_pubsub_restored(&mut self) {
        let mut channels: Vec<(Handle, Bytes)> = self
            .machines
            .iter()
            .filter_map(|(handle, machine)| machine.channel().map(|c| (*handle, c.clone())))
            .collect();
        channels.sort_by_key(|(handle, _)| *handle);
        for (handle, channel) in channels {
            self.out
                .send(handle, Op::Subscribe { channel }, Expect::Resubscribe);
        }
    }

    /// The connection is lost for good: every subscription is gone, so every resumer
    /// fails. Producers keep producing for their reader and the listeners they have
    /// (those publishes use the command connection), but hear no new request.
    fn on_pubsub_lost(&mut self) {
        self.fail_resumers(|_| true);
    }
}
