//! Commands to redis-rs and replies back, shared by the async and the blocking Redis
//! transports: how each [`Op`] is spelled, and how each reply is turned into the
//! engine's neutral [`Reply`].

use bytes::Bytes;
use resumable_stream::{Command, Error, Op, Reply, ReplyError};

/// A redis-rs client for `url`.
///
/// # Errors
/// [`Error::Config`] when the URL does not parse.
pub fn client_for(url: &str) -> Result<redis::Client, Error> {
    redis::Client::open(url).map_err(|e| Error::Config(format!("invalid Redis URL: {e}")))
}

/// A connection failure while connecting, as the engine's error.
pub fn connect_error(error: &redis::RedisError) -> Error {
    Error::Redis {
        command: "CONNECT",
        error: ReplyError::Connection(error.to_string()),
    }
}

/// A reply value, as the engine's neutral reply.
pub fn to_reply(value: redis::Value) -> Result<Reply, ReplyError> {
    match value {
        redis::Value::Nil => Ok(Reply::Nil),
        redis::Value::Int(n) => Ok(Reply::Integer(n)),
        redis::Value::BulkString(data) => Ok(Reply::Data(Bytes::from(data))),
        redis::Value::Okay => Ok(Reply::Ok),
        redis::Value::ServerError(error) => Err(ReplyError::Server(match error.details() {
            Some(details) => format!("{} {details}", error.code()),
            None => error.code().to_owned(),
        })),
        other => Ok(Reply::Other(format!("{other:?}"))),
    }
}

/// A failed request, as the engine's reply error.
pub fn to_reply_error(error: &redis::RedisError) -> ReplyError {
    match error.code() {
        Some(code) => ReplyError::Server(format!("{code} {}", error.detail().unwrap_or_default())),
        None => ReplyError::Connection(error.to_string()),
    }
}

/// The pipeline of a batch of commands of the command connection.
pub fn pipeline(commands: &[Command]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for command in commands {
        match &command.op {
            Op::Incr { key } => pipe.cmd("INCR").arg(key.as_ref()),
            Op::Set {
                key,
                value,
                expire_seconds,
            } => pipe
                .cmd("SET")
                .arg(key.as_ref())
                .arg(value.as_ref())
                .arg("EX")
                .arg(*expire_seconds),
            Op::Get { key } => pipe.cmd("GET").arg(key.as_ref()),
            Op::Publish { channel, message } => pipe
                .cmd("PUBLISH")
                .arg(channel.as_ref())
                .arg(message.as_ref()),
            Op::SPublish { channel, message } => pipe
                .cmd("SPUBLISH")
                .arg(channel.as_ref())
                .arg(message.as_ref()),
            // Subscriptions travel on the pub/sub connection; a driver never sends them
            // here. A harmless command keeps replies aligned if one ever does.
            Op::Subscribe { .. }
            | Op::Unsubscribe { .. }
            | Op::SSubscribe { .. }
            | Op::SUnsubscribe { .. } => pipe.cmd("PING"),
        };
    }
    pipe
}

/// The replies of a pipeline, one per command, whatever went wrong.
pub fn replies(
    result: redis::RedisResult<Vec<redis::Value>>,
    count: usize,
) -> Vec<Result<Reply, ReplyError>> {
    match result {
        Ok(values) if values.len() == count => values.into_iter().map(to_reply).collect(),
        Ok(values) => {
            let error = ReplyError::Connection(format!(
                "{} replies to a pipeline of {count} commands",
                values.len()
            ));
            vec![Err(error); count]
        }
        Err(error) => vec![Err(to_reply_error(&error)); count],
    }
}
