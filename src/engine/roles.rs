//! How a request becomes a machine, and how machines go: an opening request's first
//! command, the role its reply decides (producer, pub/sub resumer, log reader, or an
//! answer at once), and what a machine asks of the engine after an input.

use super::outbox::Expect;
use super::producer::Producer;
use super::requests::{Checking, Decision, Opening, Purpose};
use super::resumer::Resumer;
use super::{Engine, Machine, Next};
use crate::error::Error;
use crate::event::{Event, Handle};
use bytes::Bytes;

impl Engine {
    /// A new request for `stream_id`, its first command `first` (none for the
    /// explicit create, which produces at once).
    pub(super) fn open(
        &mut self,
        stream_id: &str,
        purpose: Purpose,
        first: Option<Expect>,
    ) -> Handle {
        let handle = Handle(self.next_handle);
        self.next_handle += 1;
        let opening = Opening {
            handle,
            stream_id: stream_id.to_owned(),
            names: self.config.names().stream(stream_id),
            purpose,
            reader_attached: true,
        };
        if let Some(first) = first {
            opening.ask(first, &mut self.out);
        }
        self.machines.insert(handle, Machine::Opening(opening));
        handle
    }

    pub(super) fn take_opening(&mut self, handle: Handle) -> Option<Opening> {
        match self.machines.remove(&handle) {
            Some(Machine::Opening(opening)) => Some(opening),
            Some(other) => {
                self.machines.insert(handle, other);
                None
            }
            None => None,
        }
    }

    /// Acts on what an opening request's reply decided.
    pub(super) fn decide(&mut self, handle: Handle, decision: Decision) {
        if let Decision::Wait = decision {
            return;
        }
        let Some(opening) = self.take_opening(handle) else {
            return;
        };
        match decision {
            Decision::Wait => {}
            // A producer starts even if nobody reads it: its `Started` tells the
            // application to feed the source, which its listeners are owed.
            Decision::Produce => self.become_producer(opening),
            // Nobody waits for any other answer to a dropped request.
            _ if !opening.reader_attached => {}
            Decision::Resume if self.reads_log(opening.purpose) => {
                self.become_log_reader(opening, false)
            }
            Decision::Resume => self.become_resumer(opening),
            // Durable mode replays a finished stream from its log.
            Decision::Answer(Event::Done { .. }) if self.reads_log(opening.purpose) => {
                self.become_log_reader(opening, true)
            }
            Decision::Check(cause) => {
                let checking = Checking::start(
                    handle,
                    &opening.names.sentinel.clone(),
                    cause,
                    Some(opening),
                    &mut self.out,
                );
                self.machines.insert(handle, Machine::Checking(checking));
            }
            Decision::Answer(event) => self.out.emit(event),
        }
    }

    pub(super) fn become_producer(&mut self, opening: Opening) {
        let handle = opening.handle;
        let channel = &opening.names.request_channel;
        if self.routes.contains_key(channel) {
            // Another producer of this engine owns the request channel: a second one
            // would answer every request twice.
            if opening.reader_attached {
                let stream_id = opening.stream_id;
                self.out.emit(Event::Failed {
                    handle,
                    error: Error::AlreadyProducing { stream_id },
                });
            }
            return;
        }
        self.routes.insert(channel.clone(), handle);
        let token = Bytes::from(self.listener_ids.next_id());
        let producer = Producer::start(
            handle,
            opening.stream_id,
            opening.names,
            opening.reader_attached,
            token,
            &self.config,
            &mut self.out,
        );
        self.machines
            .insert(handle, Machine::Producer(Box::new(producer)));
    }

    pub(in crate::engine) fn become_resumer(&mut self, opening: Opening) {
        if !opening.reader_attached {
            return;
        }
        let handle = opening.handle;
        let listener_id = self.listener_ids.next_id();
        let token = self.listener_ids.next_id().replace('-', "");
        let resumer = Resumer::start(
            handle,
            opening.stream_id,
            opening.names,
            opening.purpose,
            listener_id,
            token,
            &self.config,
            &mut self.out,
        );
        self.routes.insert(resumer.channel().clone(), handle);
        self.machines.insert(handle, Machine::Resumer(resumer));
    }

    /// Acts on what a machine asked after an input.
    pub(super) fn apply(&mut self, handle: Handle, next: Next) {
        match next {
            Next::Stay => {}
            Next::Remove => self.remove(handle),
            Next::Check(cause) => {
                let Some(Machine::Resumer(resumer)) = self.machines.get(&handle) else {
                    return;
                };
                let sentinel = resumer.sentinel().clone();
                self.remove(handle);
                let checking = Checking::start(handle, &sentinel, cause, None, &mut self.out);
                self.machines.insert(handle, Machine::Checking(checking));
            }
        }
    }

    /// Forgets `handle`'s machine and its channel's route.
    pub(super) fn remove(&mut self, handle: Handle) {
        let Some(machine) = self.machines.remove(&handle) else {
            return;
        };
        if let Machine::LogReader(reader) = &machine {
            self.leave_tail(handle, reader.log_key());
        }
        if let Some(channel) = machine.channel() {
            if self.routes.get(channel) == Some(&handle) {
                self.routes.remove(channel);
            }
        }
    }
}
