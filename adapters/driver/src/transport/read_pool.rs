//! Connections reserved for blocking reads (`XREAD ... BLOCK`), for the Redis and
//! Redis Cluster transports: a small pool per server, apart from the command and
//! pub/sub connections, so that a read parked for seconds never stalls the multiplexed
//! command connection behind it.
//!
//! Each connection carries one read at a time, with no response timeout of its own
//! (the context's loop bounds every read, by its `block_millis` plus a slack, and drops
//! it past that). A read takes an idle connection or opens one; it gives it back once
//! answered. A read whose future is dropped drops its connection with it, unanswered
//! read and all, so that no later read can get that reply. On a connection error the
//! connection is dropped, and so is every idle one (a server that went away took them
//! too): the next read opens a new one, retried for up to the reconnect window counted
//! from the failure, as the command connection is.

use super::redis::retry;
use super::wire::{command as spelled, to_reply, to_reply_error};
use crate::runtime::{Runtime, MAX_BLOCKING_READS};
use crate::sync::lock;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use resumable_stream::{Command, Reply, ReplyError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The idle connections for blocking reads of one server, and since when it is away.
#[derive(Default)]
pub(crate) struct ReadPool {
    idle: Mutex<Vec<MultiplexedConnection>>,
    /// Set by a connection error, cleared once a connection opens again: the reconnect
    /// window counts from then, not anew for each read.
    down_since: Mutex<Option<Instant>>,
}

/// A connection for blocking reads: no response timeout (the context's loop bounds
/// each read by its own `block_millis`, which may be longer than any fixed timeout).
async fn open(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

impl ReadPool {
    /// Runs `command` alone on a connection of this pool to `client`'s server, after
    /// `ASKING` when `asking` (a Redis Cluster's `ASK` redirect); opens one if none is
    /// idle, trying for up to `reconnect_window`.
    pub(crate) async fn read(
        &self,
        client: &redis::Client,
        command: &Command,
        asking: bool,
        runtime: &dyn Runtime,
        reconnect_window: Duration,
    ) -> Result<Reply, ReplyError> {
        let idle = lock(&self.idle).pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect(client, runtime, reconnect_window).await?,
        };
        let result = if asking {
            let mut pipe = redis::pipe();
            pipe.cmd("ASKING").add_command(spelled(command));
            // The reply of the command, after the one of ASKING.
            connection
                .req_packed_commands(&pipe, 1, 1)
                .await
                .map(|values| values.into_iter().next().unwrap_or(redis::Value::Nil))
        } else {
            connection.req_packed_command(&spelled(command)).await
        };
        match result {
            Err(error) if error.code().is_none() => {
                // The connection failed: it goes, and the idle ones with it.
                lock(&self.idle).clear();
                lock(&self.down_since).get_or_insert_with(Instant::now);
                Err(to_reply_error(&error))
            }
            Err(error) => {
                self.give_back(connection);
                Err(to_reply_error(&error))
            }
            Ok(value) => {
                self.give_back(connection);
                to_reply(value)
            }
        }
    }

    /// Opens a connection, trying until the reconnect window (from the last failure,
    /// or from now) passes; once at least.
    async fn connect(
        &self,
        client: &redis::Client,
        runtime: &dyn Runtime,
        reconnect_window: Duration,
    ) -> Result<MultiplexedConnection, ReplyError> {
        let since = (*lock(&self.down_since)).unwrap_or_else(Instant::now);
        let deadline = since.checked_add(reconnect_window).unwrap_or(since);
        match retry(runtime, deadline, || open(client)).await {
            Some(connection) => {
                *lock(&self.down_since) = None;
                Ok(connection)
            }
            None => {
                lock(&self.down_since).get_or_insert(since);
                Err(ReplyError::Connection(
                    "cannot open a Redis connection for blocking reads".into(),
                ))
            }
        }
    }

    /// Keeps an answered connection for the next read, up to as many as the context
    /// runs at once.
    fn give_back(&self, connection: MultiplexedConnection) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_BLOCKING_READS {
            idle.push(connection);
        }
    }
}
