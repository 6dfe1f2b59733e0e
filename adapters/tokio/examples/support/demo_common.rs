//! What the example servers share (the tokio `demo`, the blocking `blocking_server`
//! and the axum `ai_chat`, which include this file with `#[path]`): the command line,
//! the pace of the simulated model, which backend the environment asks for, and the
//! stream ids they accept. (Their SSE framing is `resumable_stream::sse`.)

#![allow(dead_code)] // Each example uses what it needs.

use std::time::Duration;

/// `--port N` (or `--port=N`), else `PORT`, else `default`.
pub fn port_from_args_or_env(default: u16) -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = std::env::var("PORT").ok();
    while let Some(arg) = args.next() {
        if arg == "--port" {
            port = Some(args.next().ok_or("--port needs a value")?);
        } else if let Some(value) = arg.strip_prefix("--port=") {
            port = Some(value.to_owned());
        } else {
            return Err(format!("unknown argument {arg:?} (only --port N)"));
        }
    }
    match port {
        Some(port) => port
            .parse()
            .map_err(|_| format!("the port must be a port number, not {port:?}")),
        None => Ok(default),
    }
}

/// The pause before each simulated token: `TOKEN_MS` milliseconds, default 50.
pub fn token_interval_from_env() -> Result<Duration, String> {
    match std::env::var("TOKEN_MS") {
        Ok(ms) => ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("TOKEN_MS must be a number of milliseconds, not {ms:?}")),
        Err(_) => Ok(Duration::from_millis(50)),
    }
}

/// Whether the environment names a Redis (`REDIS_URL` or `KV_URL`, the variables the
/// library's `from_env` reads), said on stdout; instances on one Redis share their
/// `what` ("streams", "chats"). The URL itself is not printed: it may hold a password.
pub fn redis_from_env(what: &str) -> bool {
    let redis = std::env::var("REDIS_URL").is_ok() || std::env::var("KV_URL").is_ok();
    if redis {
        println!("backend: Redis (from REDIS_URL or KV_URL); instances on it share {what}");
    } else {
        println!("backend: in memory (set REDIS_URL to share {what} between instances)");
    }
    redis
}

/// Ids become parts of Redis keys and channel names; the demo keeps them short and
/// plain so that a typo in the URL hash cannot make odd keys.
pub fn is_plain_id(id: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (1..=64).contains(&id.len()) && id.chars().all(plain)
}
