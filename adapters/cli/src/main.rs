//! # resumable-stream (the command-line tool)
//!
//! An operator's tool over [`resumable_stream_tokio`]: query a stream's state, produce
//! a stream from a list of chunks, or resume one, on the same Redis as services written
//! with this library or with the npm and PyPI `resumable-stream` libraries.
//!
//! The bytes a stream carries are written to stdout exactly as received (no newline,
//! no decoding), flushed chunk by chunk, so the tool can sit in a pipe. Everything
//! else goes to stderr. The exit codes are part of the interface (the interop suite's
//! Node and Python peers mirror them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the stream ended cleanly (or `state` answered) |
//! | 1 | a library error (its message is on stderr): Redis, ack timeout, ... |
//! | 2 | bad usage: arguments, the chunks file, the `--cacert` file, no Redis URL |
//! | 3 | the stream is already done (`DONE` on stderr) |
//! | 4 | no such stream (`resume`, `cancel`); `resume` without `--existing` has then made it an empty, finished stream (said on stderr) |
//! | 5 | the producer is gone (`--durable`): what reached the stream's log was printed, exactly, then the tool stopped |

#![forbid(unsafe_code)]

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{stream, Stream, StreamExt};
use resumable_stream_tokio::{
    Cancelled, Config, Durable, Error, Position, ResumableStream, ResumableStreamContext, Resumed,
    Role, SkipUnit,
};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

mod serve;

const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_DONE: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;
const EXIT_PRODUCER_GONE: u8 = 5;

const EXIT_CODES: &str = "\
Exit codes:
  0  the stream ended cleanly (or `state` answered)
  1  a library error, its message on stderr (Redis, \"Timeout waiting for ack\", ...)
  2  bad usage (arguments, the chunks file, the --cacert file, no Redis URL)
  3  the stream is already done (\"DONE\" on stderr)
  4  no stream with that id (resume, cancel); without --existing, resume
     leaves the id holding an empty, finished stream (said on stderr)
  5  the producer is gone (--durable): what reached the stream's log was
     printed, exactly, then the tool stopped";

/// Produce, resume and inspect resumable streams on Redis.
///
/// Speaks the wire protocol of the npm (2.x) and PyPI (0.2) `resumable-stream`
/// libraries: streams made by Node, Python or Rust services on the same Redis and key
/// prefix can be resumed by any of them, and by this tool.
#[derive(Debug, Parser)]
#[command(name = "resumable-stream", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the stream's state: `none`, `active` or `done`.
    State {
        #[command(flatten)]
        target: Target,
    },
    /// Create the stream (idempotently) from a JSON list of chunks, and print it.
    ///
    /// Uses the idempotent call: if the stream already exists and is being produced
    /// elsewhere, this becomes a resumer and prints what it receives; if it is done,
    /// prints DONE on stderr and exits 3.
    #[command(after_help = EXIT_CODES)]
    Produce(ProduceArgs),
    /// Resume the stream and print the rest of it.
    ///
    /// Without --existing this uses the idempotent call, which, when no stream exists,
    /// makes this process the producer of an empty stream (and marks it done), as the
    /// deployed libraries do; it then exits 4, as --existing does, saying on stderr
    /// that the id now holds an empty, finished stream. A pure reader should pass
    /// --existing, which never creates anything.
    #[command(after_help = EXIT_CODES)]
    Resume(ResumeArgs),
    /// Stop the stream wherever it is produced (a producer of this library): prints
    /// `cancelled`, or DONE on stderr and exits 3 when it had finished, or exits 4 when
    /// no stream exists. A v1 producer cannot be stopped: exit 1.
    #[command(after_help = EXIT_CODES)]
    Cancel {
        #[command(flatten)]
        target: Target,
    },
    /// Serve the Durable Streams HTTP protocol (in memory, or on Redis with --redis,
    /// where streams made by resumable-stream in durable mode are readable too).
    Serve(serve::ServeArgs),
}

/// Where the stream lives.
#[derive(Debug, Args)]
struct Target {
    /// Redis URL [default: $REDIS_URL, then $KV_URL]; `rediss://user:password@host:port`
    /// for TLS, as managed Redis services hand it out.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// For `rediss://`: trust the CA certificates (PEM) in FILE instead of the
    /// system's (which $SSL_CERT_FILE overrides).
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Key prefix shared with the other services.
    #[arg(long, value_name = "P", default_value = "resumable-stream")]
    prefix: String,
    /// The stream id.
    #[arg(long, value_name = "ID")]
    id: String,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    #[command(flatten)]
    target: Target,
    /// A JSON array of strings: the chunks, in order.
    #[arg(long, value_name = "FILE")]
    chunks: PathBuf,
    /// The source waits this long before each chunk.
    #[arg(long, value_name = "D", default_value_t = 0)]
    delay_ms: u64,
    /// The source stays open this long after the last chunk, so that resumers can join
    /// a stream whose content is complete [default: the delay].
    #[arg(long, value_name = "H")]
    hold_ms: Option<u64>,
    /// While resumers of this library listen, say "alive" this often when no chunk
    /// flows; they declare this producer gone after three silent intervals. With
    /// --durable, also how often the log's lease is renewed (it lapses after three).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    heartbeat_ms: u64,
    #[command(flatten)]
    durable: DurableArgs,
}

/// Durable mode: the stream goes to a log in Redis and outlives its producer.
#[derive(Debug, Args)]
struct DurableArgs {
    /// Durable mode: a producer also appends every chunk to the stream's log in Redis,
    /// so that the stream outlives it; a resumer reads that log (or pub/sub, from a
    /// producer without one) and exits 5 when the producer is gone.
    #[arg(long)]
    durable: bool,
    /// With --durable: how long a producer holds chunks before appending them.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    linger_ms: u64,
}

impl DurableArgs {
    fn apply(&self, config: Config) -> Config {
        if !self.durable {
            return config;
        }
        let durable = Durable::default().with_linger(Duration::from_millis(self.linger_ms));
        config.with_durable(durable)
    }
}

#[derive(Debug, Args)]
struct ResumeArgs {
    #[command(flatten)]
    target: Target,
    /// Skip the first N units of the stream (what the caller already has).
    #[arg(long, value_name = "N", conflicts_with = "from_chunk")]
    skip: Option<u64>,
    /// Start after the first N chunks (an SSE `Last-Event-ID`): producers of this
    /// library, and durable logs, only.
    #[arg(long, value_name = "N")]
    from_chunk: Option<u64>,
    /// How often a --durable reader checks a quiet log's producer lease: it reports
    /// the producer gone (exit 5) at most this long after the lease lapsed.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    heartbeat_ms: u64,
    #[command(flatten)]
    durable: DurableArgs,
    /// Explicit resume: exit 4 when no stream exists, never become a producer.
    #[arg(long)]
    existing: bool,
    /// The unit --skip counts in. Other than utf16 it is named in the request
    /// (`skipUnit`); producers of this library honour it, but v1 producers (the npm
    /// library counts UTF-16 code units, the PyPI port code points) ignore it and count
    /// in their own unit.
    #[arg(long, value_enum, default_value_t = Unit::Utf16)]
    unit: Unit,
    /// How long to wait for the producer's acknowledgement before failing with
    /// "Timeout waiting for ack" [default: 1000, as the npm library].
    #[arg(long, value_name = "MS")]
    ack_timeout_ms: Option<u64>,
}

/// `SkipUnit`, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Unit {
    /// UTF-16 code units, as JavaScript and browsers count.
    Utf16,
    /// Unicode code points, as Python counts.
    Codepoint,
    /// Bytes of the UTF-8 stream.
    Byte,
}

impl From<Unit> for SkipUnit {
    fn from(unit: Unit) -> SkipUnit {
        match unit {
            Unit::Utf16 => SkipUnit::Utf16,
            Unit::Codepoint => SkipUnit::CodePoint,
            Unit::Byte => SkipUnit::Byte,
        }
    }
}

/// How a run ends: an exit code, with a message for stderr.
struct Exit {
    code: u8,
    message: Option<String>,
}

impl Exit {
    fn ok() -> Exit {
        Exit {
            code: 0,
            message: None,
        }
    }

    fn with(code: u8, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: Some(message.into()),
        }
    }

    fn done() -> Exit {
        Exit::with(EXIT_DONE, "DONE")
    }
}

impl From<Error> for Exit {
    fn from(error: Error) -> Exit {
        Exit::with(EXIT_ERROR, error.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let exit = match Cli::parse().command {
        Command::State { target } => state(target).await,
        Command::Produce(args) => produce(args).await,
        Command::Resume(args) => resume(args).await,
        Command::Cancel { target } => cancel(target).await,
        Command::Serve(args) => serve::serve(args).await,
    }
    .unwrap_or_else(|exit| exit);
    if let Some(message) = exit.message {
        eprintln!("{message}");
    }
    ExitCode::from(exit.code)
}

/// `--redis`, else `REDIS_URL`, else `KV_URL`, as the deployed libraries read them.
fn redis_url(target: &Target) -> Result<String, Exit> {
    target
        .redis
        .clone()
        .or_else(|| {
            ["REDIS_URL", "KV_URL"]
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        })
        .ok_or_else(|| {
            Exit::with(
                EXIT_USAGE,
                "no Redis URL: pass --redis or set REDIS_URL or KV_URL",
            )
        })
}

async fn context(target: &Target, config: Config) -> Result<ResumableStreamContext, Exit> {
    let url = redis_url(target)?;
    let config = config.with_key_prefix(target.prefix.clone());
    let builder = ResumableStreamContext::builder()
        .config(config)
        .redis_url(url);
    #[cfg(feature = "tls")]
    let builder = match &target.cacert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Exit::with(EXIT_USAGE, format!("cannot read {}: {e}", path.display()))
            })?;
            builder.tls_root_certificates(pem)
        }
        None => builder,
    };
    Ok(builder.build().await?)
}

async fn state(target: Target) -> Result<Exit, Exit> {
    let ctx = context(&target, Config::default()).await?;
    let state = ctx.has_existing_stream(&target.id).await?;
    println!("{}", state.as_str());
    Ok(Exit::ok())
}

async fn cancel(target: Target) -> Result<Exit, Exit> {
    let ctx = context(&target, Config::default()).await?;
    match ctx.cancel(&target.id).await? {
        Cancelled::Cancelled => {
            println!("cancelled");
            Ok(Exit::ok())
        }
        Cancelled::AlreadyDone => Ok(Exit::done()),
        Cancelled::NotFound => Ok(Exit::with(EXIT_NOT_FOUND, "NOT_FOUND")),
        other => Err(Exit::with(EXIT_ERROR, format!("ERROR: {other:?}"))),
    }
}

async fn produce(args: ProduceArgs) -> Result<Exit, Exit> {
    let chunks = read_chunks(&args.chunks)?;
    let delay = Duration::from_millis(args.delay_ms);
    let hold = Duration::from_millis(args.hold_ms.unwrap_or(args.delay_ms));
    let config =
        Config::default().with_heartbeat_interval(Duration::from_millis(args.heartbeat_ms.max(1)));
    let ctx = context(&args.target, args.durable.apply(config)).await?;
    let make_stream = move || paced(chunks, delay, hold);
    match ctx
        .resumable_stream(&args.target.id, make_stream, None)
        .await?
    {
        None => Ok(Exit::done()),
        Some(stream) => {
            let role = stream.role();
            // SIGTERM (a deploy) shuts the context down gracefully: the stream runs
            // to its end for every reader, here and on other instances.
            let on_sigterm = tokio::spawn(shut_down_on_sigterm(ctx.clone()));
            copy_to_stdout(stream, args.durable.durable).await?;
            on_sigterm.abort();
            if role == Role::Producer {
                // The stream's last commands (the sentinel's DONE, the end message to
                // each listener) are sent before the process exits.
                ctx.shutdown(Instant::now() + SHUTDOWN_GRACE).await;
            }
            Ok(Exit::ok())
        }
    }
}

/// How long a producer may take to finish once told to stop (SIGTERM), or to send its
/// stream's last commands at its end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Waits for SIGTERM, then shuts `ctx` down: no new request, the running stream goes
/// on to its end.
async fn shut_down_on_sigterm(ctx: ResumableStreamContext) {
    let Ok(mut terms) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    if terms.recv().await.is_some() {
        eprintln!("SIGTERM: finishing the stream, then exiting");
        ctx.shutdown(Instant::now() + SHUTDOWN_GRACE).await;
    }
}

async fn resume(args: ResumeArgs) -> Result<Exit, Exit> {
    let mut config = Config::default()
        .with_skip_unit(args.unit.into())
        .with_heartbeat_interval(Duration::from_millis(args.heartbeat_ms.max(1)));
    if let Some(ms) = args.ack_timeout_ms {
        config = config.with_ack_timeout(Duration::from_millis(ms));
    }
    let ctx = context(&args.target, args.durable.apply(config)).await?;
    let id = &args.target.id;
    let from = match (args.from_chunk, args.skip) {
        (Some(chunks), _) => Position::Chunk(chunks),
        (None, skip) => Position::from(skip),
    };
    let stream = if args.existing {
        match ctx.resume_existing_stream(id, from).await? {
            Resumed::Stream(stream) => stream,
            Resumed::Done => return Ok(Exit::done()),
            Resumed::NotFound => return Ok(Exit::with(EXIT_NOT_FOUND, "NOT_FOUND")),
            _ => {
                return Err(Exit::with(
                    EXIT_ERROR,
                    "ERROR: an answer this tool does not know",
                ))
            }
        }
    } else {
        // The source is used only if no stream exists: the idempotent call then makes
        // us its producer, and an empty source ends it at once.
        let empty = || stream::empty::<Result<Bytes, Infallible>>();
        match ctx.resumable_stream(id, empty, from).await? {
            Some(stream) => stream,
            None => return Ok(Exit::done()),
        }
    };
    let role = stream.role();
    copy_to_stdout(stream, args.durable.durable).await?;
    if role == Role::Producer {
        // We were the producer: nothing was there to resume.
        ctx.shutdown(Instant::now() + SHUTDOWN_GRACE).await;
        return Ok(Exit::with(
            EXIT_NOT_FOUND,
            format!("NOT_FOUND: no stream {id:?} existed; it now holds an empty, finished stream (pass --existing to only read)"),
        ));
    }
    Ok(Exit::ok())
}

fn read_chunks(path: &PathBuf) -> Result<Vec<String>, Exit> {
    let text = std::fs::read(path)
        .map_err(|e| Exit::with(EXIT_USAGE, format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| {
        Exit::with(
            EXIT_USAGE,
            format!("{} is not a JSON array of strings: {e}", path.display()),
        )
    })
}

/// The chunks, each after `delay`, then the end after `hold`.
fn paced(
    chunks: Vec<String>,
    delay: Duration,
    hold: Duration,
) -> impl Stream<Item = Result<String, Infallible>> + Send + 'static {
    stream::unfold(chunks.into_iter(), move |mut rest| async move {
        match rest.next() {
            Some(chunk) => {
                tokio::time::sleep(delay).await;
                Some((Ok(chunk), rest))
            }
            None => {
                tokio::time::sleep(hold).await;
                None
            }
        }
    })
}

/// Writes every chunk to stdout as it arrives, flushed, so that a reader of the pipe
/// sees the stream's progress. In durable mode a gone producer is exit 5 (without it,
/// exit 1 as every other library error, which the interop peers mirror).
async fn copy_to_stdout(mut stream: ResumableStream, durable: bool) -> Result<(), Exit> {
    let mut stdout = tokio::io::stdout();
    let write_failed = |e: std::io::Error| Exit::with(EXIT_ERROR, format!("writing stdout: {e}"));
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error @ Error::ProducerGone { .. }) if durable => {
                return Err(Exit::with(EXIT_PRODUCER_GONE, error.to_string()))
            }
            Err(error) => return Err(error.into()),
        };
        stdout.write_all(&chunk).await.map_err(write_failed)?;
        stdout.flush().await.map_err(write_failed)?;
    }
    Ok(())
}
