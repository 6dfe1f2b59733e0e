//! The sans-IO [`Engine`] driven by hand: one thread, one small poll loop, two
//! synchronous redis-rs connections. This is what every driver of this workspace does
//! with more machinery; read it to embed the engine in a runtime of your own.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-blocking --example poll_loop
//! cargo run -p resumable-stream-blocking --example poll_loop -- --memory   # no Redis
//! ```
//!
//! It produces the stream `poll-loop-demo` (or the id given as an argument), one chunk
//! every 200 ms. Started again while the first one runs, on the same Redis, it resumes
//! that stream instead; once finished, the id answers "done" for the sentinel's 24 h.

use bytes::Bytes;
use resumable_stream::{
    ClientId, Command, Config, Connection, Engine, Event, MemoryRedis, Op, Reply, ReplyError, Role,
};
use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const CHUNKS: [&str; 6] = [
    "héllo ",
    "from ",
    "a ",
    "hand-driven ",
    "loop ",
    "🚀 日本\n",
];
const CHUNK_INTERVAL: Duration = Duration::from_millis(200);
/// How long one wait for a pub/sub message lasts: the loop's tick.
const TICK: Duration = Duration::from_millis(5);
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// What the loop needs from a backend: the two connections of the protocol.
trait Backend {
    /// Runs a batch of command-connection commands; one reply per command, in order.
    fn execute(&mut self, batch: &[Command]) -> Vec<Result<Reply, ReplyError>>;
    /// Runs a SUBSCRIBE or UNSUBSCRIBE on the pub/sub connection.
    fn subscription(&mut self, op: &Op) -> Result<Reply, ReplyError>;
    /// The next pub/sub message `(channel, payload)`, waiting at most [`TICK`].
    fn next_message(&mut self) -> Option<(Vec<u8>, Bytes)>;
}

/// A redis-rs reply as the engine's neutral one.
fn reply(value: redis::Value) -> Result<Reply, ReplyError> {
    match value {
        redis::Value::Nil => Ok(Reply::Nil),
        redis::Value::Int(n) => Ok(Reply::Integer(n)),
        redis::Value::BulkString(data) => Ok(Reply::Data(Bytes::from(data))),
        redis::Value::Okay => Ok(Reply::Ok),
        redis::Value::ServerError(error) => Err(ReplyError::Server(format!(
            "{} {}",
            error.code(),
            error.details().unwrap_or_default()
        ))),
        other => Ok(Reply::Other(format!("{other:?}"))),
    }
}

/// A redis-rs failure as the engine's: Redis's refusal, or a lost connection.
fn reply_error(error: &redis::RedisError) -> ReplyError {
    match error.code() {
        Some(code) => ReplyError::Server(format!("{code} {}", error.detail().unwrap_or_default())),
        None => ReplyError::Connection(error.to_string()),
    }
}

/// Real Redis: a command connection (pipelines) and one in subscriber mode.
struct Redis<'a> {
    commands: redis::Connection,
    pubsub: redis::PubSub<'a>,
}

impl Backend for Redis<'_> {
    fn execute(&mut self, batch: &[Command]) -> Vec<Result<Reply, ReplyError>> {
        // Everything queued goes as one pipeline. `req_packed_commands` keeps each
        // command's error reply apart instead of failing the whole pipeline.
        let mut pipe = redis::pipe();
        for command in batch {
            // The command as the engine spells it: its name, then its arguments.
            let cmd = pipe.cmd(command.op.name());
            command.op.for_each_arg(|arg| {
                cmd.arg(arg);
            });
        }
        let packed = pipe.get_packed_pipeline();
        match redis::ConnectionLike::req_packed_commands(
            &mut self.commands,
            &packed,
            0,
            batch.len(),
        ) {
            Ok(values) => values.into_iter().map(reply).collect(),
            Err(error) => vec![Err(reply_error(&error)); batch.len()],
        }
    }

    fn subscription(&mut self, op: &Op) -> Result<Reply, ReplyError> {
        let result = match op {
            Op::Subscribe { channel } => self.pubsub.subscribe(channel.as_ref()),
            Op::Unsubscribe { channel } => self.pubsub.unsubscribe(channel.as_ref()),
            _ => return Err(ReplyError::Connection("not a pub/sub command".into())),
        };
        // redis-rs returns once Redis confirmed: that confirmation is the reply.
        result.map(|()| Reply::Ok).map_err(|e| reply_error(&e))
    }

    fn next_message(&mut self) -> Option<(Vec<u8>, Bytes)> {
        // The read timeout (TICK) makes this return `Err(timeout)` when nothing came.
        // A real driver would also report a dropped connection: `handle_pubsub_state`.
        let message = self.pubsub.get_message().ok()?;
        let channel = message.get_channel::<Vec<u8>>().ok()?;
        Some((channel, Bytes::copy_from_slice(message.get_payload_bytes())))
    }
}

/// The in-process stand-in: the same loop, without sockets.
struct Memory {
    redis: MemoryRedis,
    me: ClientId,
    /// Messages PUBLISH delivered to this client, not read yet.
    inbox: VecDeque<(Vec<u8>, Bytes)>,
}

impl Memory {
    fn run(&mut self, op: &Op) -> Result<Reply, ReplyError> {
        let (reply, deliveries) = self.redis.execute(Instant::now(), self.me, op);
        for (_, channel, message) in deliveries {
            self.inbox.push_back((channel.to_vec(), message));
        }
        reply
    }
}

impl Backend for Memory {
    fn execute(&mut self, batch: &[Command]) -> Vec<Result<Reply, ReplyError>> {
        batch.iter().map(|command| self.run(&command.op)).collect()
    }

    fn subscription(&mut self, op: &Op) -> Result<Reply, ReplyError> {
        self.run(op)
    }

    fn next_message(&mut self) -> Option<(Vec<u8>, Bytes)> {
        let message = self.inbox.pop_front();
        if message.is_none() {
            std::thread::sleep(TICK); // what the Redis read timeout does
        }
        message
    }
}

/// The poll loop. Returns whether the stream ended cleanly (or was already done).
fn drive(backend: &mut dyn Backend, stream_id: &str) -> bool {
    let mut engine = Engine::new(Config::default());
    let handle = engine.resumable_stream(stream_id, None);
    let mut source = CHUNKS.iter();
    let mut next_chunk_at: Option<Instant> = None; // Some once we produce
    let give_up_at = Instant::now() + GIVE_UP_AFTER;

    while Instant::now() < give_up_at {
        // 1. Carry every command to its connection, and each reply back. Replies can
        //    queue new commands, hence the outer loop.
        let mut batch = Vec::new();
        loop {
            while let Some(command) = engine.poll_command() {
                if command.op.connection() == Connection::PubSub {
                    let reply = backend.subscription(&command.op);
                    engine.handle_reply(Instant::now(), command.id, reply);
                } else {
                    batch.push(command);
                }
            }
            if batch.is_empty() {
                break;
            }
            let replies = backend.execute(&batch);
            for (command, reply) in batch.drain(..).zip(replies) {
                engine.handle_reply(Instant::now(), command.id, reply);
            }
        }

        // 2. Act on every event. (One handle here; a server routes by `event.handle()`.)
        while let Some(event) = engine.poll_event() {
            match event {
                Event::Started { role, .. } => {
                    println!("[started as {role:?}]");
                    if role == Role::Producer {
                        next_chunk_at = Some(Instant::now());
                    }
                }
                Event::Data { data, .. } => println!("data: {:?}", String::from_utf8_lossy(&data)),
                Event::End { .. } => {
                    println!("[end]");
                    return true;
                }
                Event::Done { .. } => {
                    println!("[stream {stream_id:?} is already done: try another id]");
                    return true;
                }
                Event::Failed { error, .. } => {
                    println!("[failed: {error}]");
                    return false;
                }
                other => println!("[unexpected {other:?}]"),
            }
        }

        // 3. As producer, feed the source when its next chunk is due. The engine only
        //    queues commands and events here; the next turn of the loop sends them.
        if next_chunk_at.is_some_and(|at| Instant::now() >= at) {
            next_chunk_at = Some(Instant::now() + CHUNK_INTERVAL);
            let fed = match source.next() {
                Some(chunk) => engine.push_chunk(handle, Bytes::from_static(chunk.as_bytes())),
                None => {
                    next_chunk_at = None;
                    engine.finish(handle)
                }
            };
            fed.expect("the handle produces");
        }

        // 4. Wait up to one tick for a pub/sub message: a resume request to answer if
        //    we produce, a chunk if we resume.
        if let Some((channel, message)) = backend.next_message() {
            engine.handle_message(Instant::now(), &channel, message);
        }

        // 5. Fire the deadlines that passed (a resumer's acknowledgement timeout).
        if engine.poll_timeout().is_some_and(|at| Instant::now() >= at) {
            engine.handle_timeout(Instant::now());
        }
    }
    println!("[gave up after {GIVE_UP_AFTER:?}]");
    false
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let memory = args.iter().any(|a| a == "--memory");
    args.retain(|a| a != "--memory");
    let stream_id = args.first().map_or("poll-loop-demo", String::as_str);

    let ok = if memory {
        let mut redis = MemoryRedis::new();
        let me = redis.connect();
        let inbox = VecDeque::new();
        drive(&mut Memory { redis, me, inbox }, stream_id)
    } else {
        let Ok(url) = std::env::var("REDIS_URL") else {
            eprintln!("set REDIS_URL (e.g. redis://127.0.0.1:6379), or pass --memory");
            return ExitCode::from(2);
        };
        let connect = || -> redis::RedisResult<_> {
            let client = redis::Client::open(url.as_str())?;
            let (commands, pubsub) = (client.get_connection()?, client.get_connection()?);
            pubsub.set_read_timeout(Some(TICK))?;
            Ok((commands, pubsub))
        };
        let (commands, mut pubsub) = match connect() {
            Ok(connections) => connections,
            Err(error) => {
                eprintln!("cannot connect to Redis: {error}");
                return ExitCode::FAILURE;
            }
        };
        let mut redis = Redis {
            commands,
            pubsub: pubsub.as_pubsub(),
        };
        drive(&mut redis, stream_id)
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
