//! Redis over redis-rs's async API: one multiplexed connection for commands (pipelined),
//! one pub/sub connection for every subscription. redis-rs runs it on tokio or on
//! async-io (smol, async-std), whichever the caller runs on.

use crate::redis_wire::{connect_error, pipeline, replies, to_reply_error};
use crate::transport::{AsyncTransport, Inbox};
use bytes::Bytes;
use futures_util::future::{self, BoxFuture, Either};
use futures_util::StreamExt;
use resumable_stream::{Command, Error, Reply, ReplyError};
use std::sync::Mutex;

/// Spawns a background future on the caller's runtime.
pub type Spawn = Box<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

/// Redis through redis-rs's async connections.
pub struct RedisTransport {
    commands: redis::aio::MultiplexedConnection,
    sink: futures_util::lock::Mutex<redis::aio::PubSubSink>,
    stream: Mutex<Option<redis::aio::PubSubStream>>,
    spawn: Spawn,
}

impl RedisTransport {
    /// A transport over existing connections; `spawn` runs the message loop.
    pub fn new(
        commands: redis::aio::MultiplexedConnection,
        pubsub: redis::aio::PubSub,
        spawn: Spawn,
    ) -> RedisTransport {
        let (sink, stream) = pubsub.split();
        RedisTransport {
            commands,
            sink: futures_util::lock::Mutex::new(sink),
            stream: Mutex::new(Some(stream)),
            spawn,
        }
    }

    /// Opens the two connections of `client`.
    ///
    /// # Errors
    /// [`Error::Redis`] (`CONNECT`) when Redis cannot be reached.
    pub async fn connect(client: &redis::Client, spawn: Spawn) -> Result<RedisTransport, Error> {
        let commands = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| connect_error(&e))?;
        let pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| connect_error(&e))?;
        Ok(RedisTransport::new(commands, pubsub, spawn))
    }
}

impl AsyncTransport for RedisTransport {
    fn attach(&self, inbox: Inbox) {
        let Some(mut stream) = crate::sync::lock(&self.stream).take() else {
            return;
        };
        let Some(closed) = inbox.close_signal() else {
            return;
        };
        (self.spawn)(Box::pin(async move {
            loop {
                let next = std::pin::pin!(stream.next());
                let stop = std::pin::pin!(closed.recv());
                let message = match future::select(next, stop).await {
                    Either::Left((Some(message), _)) => message,
                    Either::Left((None, _)) => break,
                    // The context closed: stop reading; dropping the stream closes it.
                    Either::Right(_) => return,
                };
                let Ok(channel) = message.get_channel::<Vec<u8>>() else {
                    continue;
                };
                inbox.deliver(
                    &channel,
                    Bytes::copy_from_slice(message.get_payload_bytes()),
                );
            }
            log::warn!("resumable-stream: the Redis pub/sub connection closed");
            inbox.connection_lost();
        }));
    }

    fn execute<'a>(
        &'a self,
        commands: &'a [Command],
    ) -> BoxFuture<'a, Vec<Result<Reply, ReplyError>>> {
        Box::pin(async move {
            let pipe = pipeline(commands);
            let mut connection = self.commands.clone();
            let result = redis::aio::ConnectionLike::req_packed_commands(
                &mut connection,
                &pipe,
                0,
                commands.len(),
            )
            .await;
            replies(result, commands.len())
        })
    }

    fn subscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        Box::pin(async move {
            let mut sink = self.sink.lock().await;
            sink.subscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }

    fn unsubscribe(&self, channel: Bytes) -> BoxFuture<'_, Result<(), ReplyError>> {
        Box::pin(async move {
            let mut sink = self.sink.lock().await;
            sink.unsubscribe(channel.as_ref())
                .await
                .map_err(|e| to_reply_error(&e))
        })
    }
}
