//! A small HTTP server that streams a simulated LLM answer as server-sent events, and
//! lets a browser cut the connection, reload, or open a second tab and resume.
//!
//! # Running it
//!
//! ```text
//! # In memory: one process, port 3000 (PORT overrides it).
//! cargo run -p resumable-stream-tokio --example demo
//!
//! # Redis: streams outlive the process that serves them, and a second instance
//! # resumes the first one's streams (open the same `#id` on port 3001).
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-tokio --example demo
//! REDIS_URL=redis://127.0.0.1:6379 PORT=3001 cargo run -p resumable-stream-tokio --example demo
//! ```
//!
//! Then open the URL it prints. The server listens on 127.0.0.1 only.
//!
//! # Routes
//!
//! - `GET /`: the page (`demo.html`, inline script, no external assets).
//! - `GET /api/stream/{id}?skip=N`: creates the stream `id` or resumes it, skipping the
//!   first `N` UTF-16 code units (what JavaScript's `string.length` counts). The answer
//!   is SSE: first an `event: meta` (`{"role":"producer"|"resumer","skip":N}`), then one
//!   unnamed event per chunk whose data is the chunk's text as a JSON string, then
//!   `event: end`, or `event: error` with a message if the stream failed. A stream that
//!   already finished answers 422 "Stream is already done".
//! - `GET /api/state/{id}`: `{"state":"none"|"active"|"done"}`.
//! - `GET /healthz`: `ok`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{stream, Stream, StreamExt};
use resumable_stream_tokio::{Error, ResumableStream, ResumableStreamContext, Role, StreamState};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The page, kept in its own file so that it reads as HTML.
const PAGE: &str = include_str!("demo.html");

/// The simulated model's answer. It mixes accents, CJK and an emoji outside the Basic
/// Multilingual Plane (two UTF-16 units) so that a resume offset counted by the browser
/// is visibly right or wrong, and a newline so that the JSON encoding of events matters.
const ANSWER: &str = "Here is a résumé of resumable streams. The server that starts a stream \
keeps every token it has sent, so a reader that loses its connection can come back, say \
\"héllo\" again, and ask for the rest. Offsets are counted the way a browser counts them, in \
UTF-16 code units: 日本 costs two, and the rocket 🚀 costs two on its own.\nTry it: cut the \
connection halfway, reload the page, or open a second tab. Every reader ends with the same \
text, naïve façade and all. ✨";

/// The pause before each token, as a model would take.
const TOKEN_INTERVAL: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = match std::env::var("PORT") {
        Ok(port) => port
            .parse::<u16>()
            .map_err(|_| format!("PORT must be a port number, not {port:?}"))?,
        Err(_) => 3000,
    };

    // The same variables the library reads; the URL itself is not printed because it
    // may hold a password.
    let ctx = if std::env::var("REDIS_URL").is_ok() || std::env::var("KV_URL").is_ok() {
        let ctx = ResumableStreamContext::from_env().await?;
        println!("backend: Redis (from REDIS_URL or KV_URL); instances on it share streams");
        ctx
    } else {
        println!("backend: in memory (set REDIS_URL to share streams between instances)");
        ResumableStreamContext::in_memory()
    };

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/stream/{id}", get(stream_handler))
        .route("/api/state/{id}", get(state_handler))
        .with_state(ctx);

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    println!("open http://{}/", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // If the signal handler cannot be installed, run until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await?;
    Ok(())
}

/// `GET /api/stream/{id}?skip=N`: the whole protocol is one call, create-or-resume.
async fn stream_handler(
    State(ctx): State<ResumableStreamContext>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !is_plain_id(&id) {
        return bad_id();
    }
    let skip = match query.get("skip").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(skip)) => Some(skip),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "skip must be a non-negative integer",
            )
                .into_response()
        }
    };

    // The factory runs only if this request becomes the producer; from then on the
    // source runs to its end even if this client goes away, for the other readers.
    match ctx.resumable_stream(&id, simulated_llm, skip).await {
        Ok(Some(chunks)) => {
            let role = match chunks.role() {
                Role::Producer => "producer",
                Role::Resumer => "resumer",
            };
            println!("stream {id}: {role}, skip {}", skip.unwrap_or(0));
            // A producer's reader always starts at offset 0 (there was nothing to skip),
            // so it reports 0 and the page knows to start its text afresh.
            let meta = serde_json::json!({
                "role": role,
                "skip": if role == "producer" { 0 } else { skip.unwrap_or(0) },
            });
            let meta = Event::default().event("meta").data(meta.to_string());
            Sse::new(stream::once(async { Ok(meta) }).chain(sse_events(chunks)))
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Ok(None) => (StatusCode::UNPROCESSABLE_ENTITY, "Stream is already done").into_response(),
        Err(error) => error_response(&id, &error),
    }
}

/// `GET /api/state/{id}`.
async fn state_handler(
    State(ctx): State<ResumableStreamContext>,
    Path(id): Path<String>,
) -> Response {
    if !is_plain_id(&id) {
        return bad_id();
    }
    match ctx.has_existing_stream(&id).await {
        Ok(state) => {
            let state = match state {
                StreamState::None => "none",
                StreamState::Active => "active",
                StreamState::Done => "done",
            };
            Json(serde_json::json!({ "state": state })).into_response()
        }
        Err(error) => error_response(&id, &error),
    }
}

/// Ids become parts of Redis keys and channel names; the demo keeps them short and
/// plain so that a typo in the URL hash cannot make odd keys.
fn is_plain_id(id: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (1..=64).contains(&id.len()) && id.chars().all(plain)
}

fn bad_id() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "stream ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
    )
        .into_response()
}

fn error_response(id: &str, error: &Error) -> Response {
    println!("stream {id}: {error}");
    // A resume that no producer answered is the upstream failing to answer in time.
    let status = match error {
        Error::AckTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error.to_string()).into_response()
}

/// The simulated LLM: each word with the whitespace after it, one every
/// [`TOKEN_INTERVAL`].
fn simulated_llm() -> impl Stream<Item = Result<&'static str, Infallible>> + Send + 'static {
    stream::unfold(
        ANSWER.split_inclusive(char::is_whitespace),
        |mut tokens| async move {
            let token = tokens.next()?;
            tokio::time::sleep(TOKEN_INTERVAL).await;
            Some((Ok(token), tokens))
        },
    )
}

/// One SSE event per chunk, then `end`; or `error` with the message, and nothing after.
///
/// Chunk text is sent as a JSON string: SSE splits data on newlines, JSON has none.
fn sse_events(chunks: ResumableStream) -> impl Stream<Item = Result<Event, Infallible>> {
    let text_event = |text: &str| Event::default().data(serde_json::Value::from(text).to_string());
    stream::unfold(
        Some((chunks, Utf8Decoder::default())),
        move |state| async move {
            let (mut chunks, mut decoder) = state?;
            let (events, next) = match chunks.next().await {
                Some(Ok(bytes)) => (
                    vec![text_event(&decoder.push(&bytes))],
                    Some((chunks, decoder)),
                ),
                Some(Err(error)) => (
                    vec![Event::default().event("error").data(error.to_string())],
                    None,
                ),
                None => {
                    let mut last = Vec::new();
                    let tail = decoder.finish();
                    if !tail.is_empty() {
                        last.push(text_event(&tail));
                    }
                    // Browsers ignore events with empty data, hence a word.
                    last.push(Event::default().event("end").data("done"));
                    (last, None)
                }
            };
            Some((events, next))
        },
    )
    .flat_map(stream::iter)
    .map(Ok)
}

/// Decodes a stream of byte chunks as UTF-8 without breaking a character that a
/// producer split across two chunks (this demo's producer never does, but a producer
/// elsewhere on the same Redis may publish arbitrary bytes).
#[derive(Default)]
struct Utf8Decoder {
    /// The start of a character whose end has not arrived yet.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let complete = self.pending.len() - incomplete_tail(&self.pending);
        let tail = self.pending.split_off(complete);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = tail;
        text
    }

    /// What is left at the end of the stream: a truncated character, as U+FFFD.
    fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// How many bytes at the end of `bytes` begin a character that is not complete yet.
/// Invalid bytes earlier on are left for lossy decoding.
fn incomplete_tail(mut bytes: &[u8]) -> usize {
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return 0,
            Err(e) => match e.error_len() {
                // The input ended in the middle of a character.
                None => return bytes.len() - e.valid_up_to(),
                Some(invalid) => bytes = &bytes[e.valid_up_to() + invalid..],
            },
        }
    }
}
