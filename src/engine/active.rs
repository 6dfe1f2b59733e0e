//! An owner's active stream: a pointer from an id a client knows before it knows the
//! stream's (a chat, a job) to the stream now answering it, as the AI SDK's
//! `GET /{chatId}/stream` needs. An extension of ours, in the same Redis under the
//! same key prefix: `SET {prefix}:rs:active:{owner} {stream_id} EX {sentinel ttl}`
//! records it, `GET` reads it; it expires with the sentinels' TTL. The deployed
//! libraries neither read nor write it.

use super::outbox::Expect;
use super::requests::{get_value, Decision, Opening, Purpose};
use super::{redis_error, unexpected, Engine, Position};
use crate::error::Error;
use crate::event::{Event, Handle};
use crate::io::{Op, Reply, ReplyError};
use bytes::Bytes;

impl Engine {
    /// Records `stream_id` as `owner`'s active stream (`SET` with the sentinels' TTL),
    /// replacing the one before. Answers `ActiveStream` with `Some(stream_id)`, or
    /// `Failed`.
    ///
    /// ```
    /// use resumable_stream::{Config, Engine, Event, MemoryRedis};
    /// use std::time::Instant;
    ///
    /// let mut engine = Engine::new(Config::default());
    /// let mut redis = MemoryRedis::new();
    /// let me = redis.connect();
    /// let set = engine.set_active_stream("chat-7", "chat-7:a1");
    /// let get = engine.active_stream("chat-7");
    /// while let Some(command) = engine.poll_command() {
    ///     let (reply, _) = redis.execute(Instant::now(), me, &command.op);
    ///     engine.handle_reply(Instant::now(), command.id, reply);
    /// }
    /// let found = Some("chat-7:a1".to_owned());
    /// assert_eq!(engine.poll_event(), Some(Event::ActiveStream { handle: set, stream_id: found.clone() }));
    /// assert_eq!(engine.poll_event(), Some(Event::ActiveStream { handle: get, stream_id: found }));
    /// ```
    pub fn set_active_stream(&mut self, owner: &str, stream_id: &str) -> Handle {
        // The opening's stream id is what the answer reports.
        let handle = self.open(stream_id, Purpose::Read(Position::Start), None);
        let op = Op::Set {
            key: self.config.names().active(owner),
            value: Bytes::copy_from_slice(stream_id.as_bytes()),
            expire_seconds: self.config.sentinel_ttl_seconds(),
        };
        self.out.send(handle, op, Expect::ActiveSet);
        handle
    }

    /// Reads `owner`'s active stream (`GET`). Answers `ActiveStream`, or `Failed`.
    pub fn active_stream(&mut self, owner: &str) -> Handle {
        let handle = self.open(owner, Purpose::Read(Position::Start), None);
        let key = self.config.names().active(owner);
        self.out.send(handle, Op::Get { key }, Expect::ActiveGet);
        handle
    }
}

impl Opening {
    /// The reply to [`Engine::set_active_stream`]'s `SET`.
    pub(super) fn on_active_set(&self, reply: Result<Reply, ReplyError>) -> Decision {
        match reply {
            Ok(Reply::Ok) => Decision::Answer(Event::ActiveStream {
                handle: self.handle,
                stream_id: Some(self.stream_id.clone()),
            }),
            Ok(other) => self.fail(unexpected("SET", &other)),
            Err(error) => self.fail(redis_error("SET", error)),
        }
    }

    /// The reply to [`Engine::active_stream`]'s `GET`.
    pub(super) fn on_active_get(&self, reply: Result<Reply, ReplyError>) -> Decision {
        let stream_id = match get_value(reply) {
            Ok(None) => None,
            Ok(Some(value)) => match String::from_utf8(value.to_vec()) {
                Ok(id) => Some(id),
                Err(_) => {
                    return self.fail(Error::UnexpectedReply {
                        command: "GET",
                        reply: format!("an active stream id that is not UTF-8: {value:?}"),
                    })
                }
            },
            Err(error) => return self.fail(error),
        };
        Decision::Answer(Event::ActiveStream {
            handle: self.handle,
            stream_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Engine, Error, Event, MemoryRedis, Reply, ReplyError};
    use std::time::{Duration, Instant};

    /// Runs every command against `redis`, returns the events.
    fn drain(engine: &mut Engine, redis: &mut MemoryRedis, now: Instant) -> Vec<Event> {
        let me = redis.connect();
        while let Some(command) = engine.poll_command() {
            let (reply, _) = redis.execute(now, me, &command.op);
            engine.handle_reply(now, command.id, reply);
        }
        std::iter::from_fn(|| engine.poll_event()).collect()
    }

    #[test]
    fn the_pointer_is_replaced_and_expires_with_the_sentinel_ttl() {
        let config = Config::default()
            .with_key_prefix("p")
            .with_sentinel_ttl(Duration::from_secs(5));
        let mut engine = Engine::new(config);
        let mut redis = MemoryRedis::new();
        let now = Instant::now();
        let get = engine.active_stream("c");
        let events = drain(&mut engine, &mut redis, now);
        assert_eq!(
            events,
            [Event::ActiveStream {
                handle: get,
                stream_id: None
            }]
        );
        engine.set_active_stream("c", "c:1");
        engine.set_active_stream("c", "c:2");
        let commands: Vec<_> = std::iter::from_fn(|| engine.poll_command()).collect();
        assert!(matches!(
            &commands[0].op,
            crate::Op::Set { key, value, expire_seconds: 5 } if key == "p:rs:active:c" && value == "c:1"
        ));
        let me = redis.connect();
        for command in commands {
            let (reply, _) = redis.execute(now, me, &command.op);
            engine.handle_reply(now, command.id, reply);
        }
        assert_eq!(std::iter::from_fn(|| engine.poll_event()).count(), 2);
        let get = engine.active_stream("c");
        let events = drain(&mut engine, &mut redis, now + Duration::from_secs(4));
        let found = Some("c:2".to_owned());
        assert_eq!(
            events,
            [Event::ActiveStream {
                handle: get,
                stream_id: found
            }]
        );
        let get = engine.active_stream("c");
        let events = drain(&mut engine, &mut redis, now + Duration::from_secs(6));
        assert_eq!(
            events,
            [Event::ActiveStream {
                handle: get,
                stream_id: None
            }]
        );
        assert_eq!(engine.live_handles(), 0);
    }

    #[test]
    fn odd_replies_fail_the_request_without_a_panic() {
        let mut engine = Engine::new(Config::default());
        let now = Instant::now();
        let replies = [
            Ok(Reply::Data(vec![0xFF, 0xFE].into())),
            Ok(Reply::Integer(3)),
            Err(ReplyError::Connection("gone".into())),
        ];
        for reply in replies {
            let get = engine.active_stream("c");
            let command = engine.poll_command().unwrap();
            engine.handle_reply(now, command.id, reply);
            match engine.poll_event() {
                Some(Event::Failed { handle, error }) => {
                    assert_eq!(handle, get);
                    assert!(matches!(
                        error,
                        Error::UnexpectedReply { .. } | Error::Redis { .. }
                    ));
                }
                other => panic!("{other:?}"),
            }
        }
        let set = engine.set_active_stream("c", "s");
        let command = engine.poll_command().unwrap();
        engine.handle_reply(now, command.id, Ok(Reply::Nil));
        assert!(matches!(engine.poll_event(), Some(Event::Failed { handle, .. }) if handle == set));
    }
}
