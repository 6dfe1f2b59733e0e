//! The application's requests until their role is decided: an [`Opening`] asks Redis
//! (an `INCR` for the idempotent call, a `GET` for the explicit resume, the state
//! query and a cancel) and says whether its caller produces, resumes, or is answered
//! at once; a [`Checking`] reads the sentinel once more to tell a finished stream from
//! a failure.

use super::outbox::{Expect, Outbox};
use super::{redis_error, unexpected, Position};
use crate::error::Error;
use crate::event::{Event, Handle, StreamState};
use crate::io::{Op, Reply, ReplyError};
use crate::wire::{Sentinel, StreamNames, DONE_VALUE, NOT_AN_INTEGER};
use bytes::Bytes;

/// What a request is for, until its role is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Read(Position),
    Cancel,
}

/// What an opening request's reply decided.
#[derive(Debug)]
pub(super) enum Decision {
    /// Nothing yet.
    Wait,
    /// This caller produces the stream.
    Produce,
    /// This caller resumes the stream produced elsewhere.
    Resume,
    /// Read the sentinel to tell "done" from a failure with this cause.
    Check(Error),
    /// The request is answered (or failed) with this event; nothing follows.
    Answer(Event),
}

/// A request whose role is not decided yet.
#[derive(Debug)]
pub(super) struct Opening {
    pub(super) handle: Handle,
    pub(super) stream_id: String,
    pub(super) names: StreamNames,
    pub(super) purpose: Purpose,
    /// False once the application dropped its reader before the stream started.
    pub(super) reader_attached: bool,
}

impl Opening {
    /// Sends the request's first command: `INCR` (the idempotent call), `GET` (the
    /// explicit resume, a cancel, a state query); nothing for the explicit create.
    pub(super) fn ask(&self, first: Expect, out: &mut Outbox) {
        let key = self.names.sentinel.clone();
        let op = match first {
            Expect::Incr => Op::Incr { key },
            _ => Op::Get { key },
        };
        out.send(self.handle, op, first);
    }

    /// The reply to the request's first command.
    pub(super) fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Reply, ReplyError>,
    ) -> Decision {
        match expect {
            Expect::Incr => self.on_incr(reply),
            Expect::ResumeGet => self.on_resume_get(reply),
            Expect::StateGet => self.on_state_get(reply),
            Expect::ActiveSet => self.on_active_set(reply),
            Expect::ActiveGet => self.on_active_get(reply),
            _ => Decision::Wait,
        }
    }

    pub(super) fn fail(&self, error: Error) -> Decision {
        Decision::Answer(Event::Failed {
            handle: self.handle,
            error,
        })
    }

    fn on_incr(&self, reply: Result<Reply, ReplyError>) -> Decision {
        match reply {
            Ok(Reply::Integer(1)) => Decision::Produce,
            Ok(Reply::Integer(n)) if n > 1 => Decision::Resume,
            Ok(Reply::Integer(n)) => self.fail(Error::UnexpectedSentinel {
                value: n.to_string(),
            }),
            Ok(other) => self.fail(unexpected("INCR", &other)),
            // The sentinel is not a number: "DONE", or something nobody should write.
            Err(ReplyError::Server(message)) if message.contains(NOT_AN_INTEGER) => {
                Decision::Check(Error::Redis {
                    command: "INCR",
                    error: ReplyError::Server(message),
                })
            }
            Err(error) => self.fail(redis_error("INCR", error)),
        }
    }

    fn on_resume_get(&self, reply: Result<Reply, ReplyError>) -> Decision {
        let handle = self.handle;
        match get_value(reply) {
            Ok(None) => Decision::Answer(Event::NotFound { handle }),
            Ok(Some(value)) => match Sentinel::parse(&value) {
                Some(Sentinel::Done) => Decision::Answer(Event::Done { handle }),
                Some(Sentinel::Active) => Decision::Resume,
                None => self.fail(Error::UnexpectedSentinel {
                    value: String::from_utf8_lossy(&value).into_owned(),
                }),
            },
            Err(error) => self.fail(error),
        }
    }

    fn on_state_get(&self, reply: Result<Reply, ReplyError>) -> Decision {
        let state = match get_value(reply) {
            Ok(None) => StreamState::None,
            Ok(Some(value)) => match Sentinel::parse(&value) {
                Some(Sentinel::Done) => StreamState::Done,
                Some(Sentinel::Active) => StreamState::Active,
                None => {
                    let value = String::from_utf8_lossy(&value).into_owned();
                    return self.fail(Error::UnexpectedSentinel { value });
                }
            },
            Err(error) => return self.fail(error),
        };
        Decision::Answer(Event::State {
            handle: self.handle,
            state,
        })
    }
}

/// A `GET`'s value, `None` for a missing key; any other reply is an error.
pub(super) fn get_value(reply: Result<Reply, ReplyError>) -> Result<Option<Bytes>, Error> {
    match reply {
        Ok(Reply::Nil) => Ok(None),
        Ok(Reply::Data(value)) => Ok(Some(value)),
        Ok(other) => Err(unexpected("GET", &other)),
        Err(error) => Err(redis_error("GET", error)),
    }
}

/// Waiting for the `GET` that tells "done" from a failure.
#[derive(Debug)]
pub(super) struct Checking {
    handle: Handle,
    cause: Error,
    /// The idempotent request that found the stream done: if the sentinel says
    /// "active" now (the stream was created again meanwhile), it resumes.
    retry: Option<Opening>,
}

impl Checking {
    /// The stream checked, when the check may resume it.
    pub(super) fn stream_id(&self) -> Option<&str> {
        self.retry
            .as_ref()
            .map(|opening| opening.stream_id.as_str())
    }
}

/// What the check found.
pub(super) enum Checked {
    /// The stream is active again: the idempotent request resumes it.
    Resume(Opening),
    /// The stream is done: the idempotent request is answered "done" (or, in durable
    /// mode, replays the stream's log).
    Finished(Opening),
    /// The request ends with this event.
    Answer(Event),
}

impl Checking {
    /// Reads `sentinel` for `handle`, which failed with `cause` unless the stream is
    /// done; `retry` is the idempotent request, which resumes if the stream is active.
    pub(super) fn start(
        handle: Handle,
        sentinel: &bytes::Bytes,
        cause: Error,
        retry: Option<Opening>,
        out: &mut Outbox,
    ) -> Checking {
        let key = sentinel.clone();
        out.send(handle, Op::Get { key }, Expect::DoneCheck);
        Checking {
            handle,
            cause,
            retry,
        }
    }

    /// The `GET`'s reply.
    pub(super) fn on_reply(self, reply: Result<Reply, ReplyError>) -> Checked {
        let handle = self.handle;
        if let (Some(opening), Ok(Reply::Data(value))) = (self.retry, &reply) {
            match Sentinel::parse(value.as_ref()) {
                Some(Sentinel::Active) => return Checked::Resume(opening),
                Some(Sentinel::Done) => return Checked::Finished(opening),
                None => {}
            }
        }
        Checked::Answer(match reply {
            Ok(Reply::Data(value)) if value == DONE_VALUE => Event::Done { handle },
            Ok(Reply::Data(value)) if matches!(self.cause, Error::Redis { .. }) => Event::Failed {
                handle,
                error: Error::UnexpectedSentinel {
                    value: String::from_utf8_lossy(&value).into_owned(),
                },
            },
            Ok(_) => Event::Failed {
                handle,
                error: self.cause,
            },
            Err(error) => Event::Failed {
                handle,
                error: redis_error("GET", error),
            },
        })
    }
}
