//! Commands to redis-rs and replies back, shared by the Redis and Redis Cluster
//! transports: how each [`Op`](resumable_stream::Op) is spelled (pipelines of the
//! command connection, single blocking reads), and how each reply is turned into the
//! engine's neutral [`Reply`]; and the redis-rs client of a URL, over TLS for
//! `rediss://`.

use bytes::Bytes;
use resumable_stream::{Command, Connection, Error, Reply, ReplyError};

/// A redis-rs client for `url`; for `rediss://`, over TLS trusting `root_certificates`
/// (PEM) when given, else the system's roots.
///
/// # Errors
/// [`Error::Config`] when the URL does not parse, names TLS in a build without it, or
/// is not a `rediss://` URL although root certificates were given; or when the
/// certificates do not parse.
pub fn client_for(url: &str, root_certificates: Option<&[u8]>) -> Result<redis::Client, Error> {
    #[cfg(feature = "tls")]
    if is_tls_url(url) {
        tls::use_default_provider();
    }
    let Some(roots) = root_certificates else {
        return redis::Client::open(url).map_err(|e| invalid_url(url, &e));
    };
    check_tls_url(url)?;
    tls::client(url, roots)
}

/// The error for a URL redis-rs refused.
fn invalid_url(url: &str, error: &redis::RedisError) -> Error {
    if is_tls_url(url) && !cfg!(feature = "tls") {
        return Error::Config(
            "rediss:// needs the `tls` feature of the driver crate (on by default)".into(),
        );
    }
    Error::Config(format!("invalid Redis URL: {error}"))
}

/// Whether `url` is a `rediss://` URL.
pub fn is_tls_url(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// Root certificates are for TLS URLs only: given with a `redis://` URL they would be
/// silently unused, and the connection in clear text.
///
/// # Errors
/// [`Error::Config`] for a URL that is not `rediss://`.
pub fn check_tls_url(url: &str) -> Result<(), Error> {
    if is_tls_url(url) {
        Ok(())
    } else {
        Err(Error::Config(
            "TLS root certificates were given for a Redis URL that is not rediss://".into(),
        ))
    }
}

/// TLS through redis-rs's rustls support.
#[cfg(feature = "tls")]
pub mod tls {
    use resumable_stream::Error;

    /// Makes ring the process's rustls provider unless the application chose one: with
    /// two providers compiled in (an application's dependencies may bring aws-lc-rs),
    /// rustls cannot pick one and would panic when the first connection opens.
    pub fn use_default_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    /// Root certificates (PEM) for redis-rs.
    pub fn certificates(roots: &[u8]) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(roots.to_vec()),
        }
    }

    /// A client for the `rediss://` `url` that trusts `roots` (PEM).
    ///
    /// # Errors
    /// [`Error::Config`] when the URL or the certificates do not parse.
    pub fn client(url: &str, roots: &[u8]) -> Result<redis::Client, Error> {
        redis::Client::build_with_tls(url, certificates(roots))
            .map_err(|e| Error::Config(format!("invalid Redis URL or TLS root certificates: {e}")))
    }
}

/// Without the `tls` feature no certificate can be given (the builder has no such
/// method); this keeps the one call site compiling.
#[cfg(not(feature = "tls"))]
mod tls {
    use resumable_stream::Error;

    pub fn client(_url: &str, _roots: &[u8]) -> Result<redis::Client, Error> {
        Err(Error::Config(
            "TLS root certificates need the `tls` feature of the driver crate".into(),
        ))
    }
}

/// A connection failure while connecting, as the engine's error.
pub fn connect_error(error: &redis::RedisError) -> Error {
    Error::Redis {
        command: "CONNECT",
        error: ReplyError::Connection(error.to_string()),
    }
}

/// A reply value, as the engine's neutral reply: arrays (and RESP3 sets) become
/// [`Reply::Array`], element by element; a RESP3 map becomes the array of its
/// (key, value) pairs, each a two-element [`Reply::Array`], in order, which is the shape
/// RESP2 gives the same reply (`XREAD` answers `[[key, entries], ...]` either way). An
/// error anywhere inside is the reply's error.
pub fn to_reply(value: redis::Value) -> Result<Reply, ReplyError> {
    match value {
        redis::Value::Nil => Ok(Reply::Nil),
        redis::Value::Int(n) => Ok(Reply::Integer(n)),
        redis::Value::BulkString(data) => Ok(Reply::Data(Bytes::from(data))),
        redis::Value::Okay => Ok(Reply::Ok),
        redis::Value::Array(items) | redis::Value::Set(items) => array(items),
        redis::Value::Map(pairs) => pairs
            .into_iter()
            .map(|(key, value)| Ok(Reply::Array(vec![to_reply(key)?, to_reply(value)?])))
            .collect::<Result<_, _>>()
            .map(Reply::Array),
        // The data an attribute annotates is the reply.
        redis::Value::Attribute { data, .. } => to_reply(*data),
        redis::Value::ServerError(error) => Err(ReplyError::Server(match error.details() {
            Some(details) => format!("{} {details}", error.code()),
            None => error.code().to_owned(),
        })),
        other => Ok(Reply::Other(format!("{other:?}"))),
    }
}

/// The elements of an array, each turned into a reply.
fn array(items: Vec<redis::Value>) -> Result<Reply, ReplyError> {
    items
        .into_iter()
        .map(to_reply)
        .collect::<Result<_, _>>()
        .map(Reply::Array)
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
        let op = &command.op;
        if op.connection() != Connection::Commands {
            // Subscriptions travel on the pub/sub connection, blocking reads on
            // connections of their own ([`command`]); a driver never sends them here. A
            // harmless command keeps replies aligned if one ever does (its `PONG` is no
            // reply the engine takes for an answer).
            pipe.cmd("PING");
            continue;
        }
        let cmd = pipe.cmd(op.name());
        op.for_each_arg(|arg| {
            cmd.arg(arg);
        });
    }
    pipe
}

/// One command as redis-rs sends it: its [`name`](resumable_stream::Op::name), then its
/// [arguments](resumable_stream::Op::for_each_arg), whatever connection it travels on
/// (a blocking read goes alone on a connection of its own).
pub fn command(command: &Command) -> redis::Cmd {
    let mut cmd = redis::cmd(command.op.name());
    command.op.for_each_arg(|arg| {
        cmd.arg(arg);
    });
    cmd
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

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;
    use resumable_stream::{CommandId, Op, StreamId};

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn data(text: &'static str) -> Reply {
        Reply::Data(Bytes::from_static(text.as_bytes()))
    }

    /// One stream's entries as `XREAD` sends them: `[[id, [field, value]]]`.
    fn entries() -> Value {
        Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("f"), bulk("v")]),
        ])])
    }

    #[test]
    fn xread_in_resp2_and_resp3_is_one_reply() {
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("k"), entries()])]);
        let resp3 = Value::Map(vec![(bulk("k"), entries())]);
        let expected = Reply::Array(vec![Reply::Array(vec![
            data("k"),
            Reply::Array(vec![Reply::Array(vec![
                data("1-0"),
                Reply::Array(vec![data("f"), data("v")]),
            ])]),
        ])]);
        assert_eq!(to_reply(resp2), Ok(expected.clone()));
        assert_eq!(to_reply(resp3), Ok(expected));
    }

    #[test]
    fn scalars_keep_their_shape_and_nested_errors_fail_the_reply() {
        assert_eq!(to_reply(Value::Nil), Ok(Reply::Nil));
        assert_eq!(to_reply(Value::Okay), Ok(Reply::Ok));
        assert_eq!(to_reply(Value::Int(3)), Ok(Reply::Integer(3)));
        assert_eq!(to_reply(Value::Array(vec![])), Ok(Reply::Array(vec![])));
        assert_eq!(
            to_reply(Value::Set(vec![Value::Int(1)])),
            Ok(Reply::Array(vec![Reply::Integer(1)]))
        );
        assert!(matches!(
            to_reply(Value::SimpleString("PONG".into())),
            Ok(Reply::Other(_))
        ));
        // An array holding an error reply (as `EXEC` may answer).
        let with_error = redis::parse_redis_value(b"*2\r\n:1\r\n-ERR boom\r\n");
        assert_eq!(
            with_error.map(to_reply).ok(),
            Some(Err(ReplyError::Server("ERR boom".into())))
        );
    }

    #[test]
    fn a_blocking_read_is_spelled_by_the_op() {
        let read = Command {
            id: CommandId(1),
            op: Op::XRead {
                count: 10,
                block_millis: 500,
                streams: vec![(Bytes::from_static(b"k"), StreamId::new(3, 1))],
            },
        };
        let packed = String::from_utf8(command(&read).get_packed_command()).unwrap_or_default();
        let args: Vec<&str> = packed
            .split("\r\n")
            .filter(|line| !line.starts_with(['*', '$']))
            .collect();
        assert_eq!(
            args,
            ["XREAD", "COUNT", "10", "BLOCK", "500", "STREAMS", "k", "3-1", ""]
        );
    }
}
