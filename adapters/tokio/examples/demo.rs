//! A small HTTP server that streams a simulated LLM answer as server-sent events, and
//! lets a browser cut the connection, reload, or open a second tab and resume.
//!
//! # Running it
//!
//! ```text
//! # In memory: one process, port 3000 (PORT or --port overrides it).
//! cargo run -p resumable-stream-tokio --example demo
//!
//! # Redis: streams outlive the process that serves them, and a second instance
//! # resumes the first one's streams (open the same `#id` on port 3001).
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-tokio --example demo
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-tokio --example demo -- --port 3001
//! ```
//!
//! Then open the URL it prints. The server listens on 127.0.0.1 only. `TOKEN_MS` sets
//! the pause before each simulated token (default 50 ms).
//!
//! # Three ways to resume
//!
//! - **`Last-Event-ID`.** Every chunk event carries `id: N`, the reader's
//!   [`chunk_position`](resumable_stream_tokio::ResumableStream::chunk_position): the
//!   number of chunks the client has once it has that event. When the connection drops
//!   (the page's "Cut connection" button asks the server to close it), the browser's
//!   `EventSource` reconnects by itself and sends `Last-Event-ID: N`; the server resumes
//!   at `Position::Chunk(N)`.
//! - **Character offset.** `?offset=N` resumes after the first `N` UTF-16 code units
//!   (what JavaScript's `string.length` counts): the page keeps the text it received in
//!   `sessionStorage`, so a reload resumes after it (`Position::Units(N)`).
//! - **From the start.** A second tab (or another instance on the same Redis) asks
//!   without either and receives the whole text so far, then the rest.
//!
//! # Routes
//!
//! - `GET /`: the page (`demo.html`, inline script, no external assets).
//! - `GET /api/stream/{id}?offset=N&client=C`: creates the stream `id` or resumes it,
//!   where `resumable-stream-axum`'s `StartAt` says (a `Last-Event-ID` header wins over
//!   `offset`; a malformed one is refused with 400 and the page then reconnects by
//!   offset). The answer is SSE: first `event: meta`
//!   (`{"role":"producer"|"resumer","from":...}` where `from` is `"start"`,
//!   `{"chunk":N}` or `{"offset":N}`), then the events of `resumable_stream::sse`: one
//!   per chunk (text, or `event: bytes` with base64), its id the chunk position, then
//!   `event: end`, or `event: error` with a message if the stream failed. A stream that
//!   already finished answers 204.
//! - `POST /api/cut/{client}`: closes every SSE connection the page `client` has open
//!   here, as a network failure would (the stream itself goes on).
//! - `GET /api/state/{id}`: `{"state":"none"|"active"|"done"}` (`has_existing_stream`).
//! - `GET /api/answer`: the whole simulated answer, for tests to compare with.
//! - `GET /healthz`: `ok`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use futures_util::{stream, Stream, StreamExt};
use resumable_stream_axum::{
    framing, sse_response, ErrorResponse, Position, ResumableStreamContext, Role, SseOptions,
    StartAt,
};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;

#[path = "support/axum_common.rs"]
mod axum_common;
#[path = "support/demo_common.rs"]
mod demo_common;
use axum_common::{context_from_env, page_and_health, serve_locally};
use demo_common::{is_plain_id, port_from_args_or_env, token_interval_from_env};

/// The page, kept in its own file so that it reads as HTML.
const PAGE: &str = include_str!("demo.html");

/// The simulated model's answer. It mixes accents, CJK and an emoji outside the Basic
/// Multilingual Plane (two UTF-16 units) so that a resume offset counted by the browser
/// is visibly right or wrong, and a CRLF: a CR cannot travel in an SSE data line, so
/// that token goes as an `event: bytes` (base64) and the page decodes it.
const ANSWER: &str = "Here is a résumé of resumable streams. The server that starts a stream \
keeps every token it has sent, so a reader that loses its connection can come back, say \
\"héllo\" again, and ask for the rest. Offsets are counted the way a browser counts them, in \
UTF-16 code units: 日本 costs two, and the rocket 🚀 costs two on its own.\r\nTry it: cut the \
connection halfway, reload the page, or open a second tab. Every reader ends with the same \
text, naïve façade and all. ✨";

/// How long the browser waits before reconnecting a dropped `EventSource` (sent as the
/// SSE `retry` field; browsers default to a few seconds).
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// What every handler shares: the context, the pause between tokens, and the channel
/// on which `POST /api/cut/{client}` tells that client's connections to close.
#[derive(Clone)]
struct App {
    ctx: ResumableStreamContext,
    token_interval: Duration,
    cuts: broadcast::Sender<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_args_or_env(3000)?;
    let token_interval = token_interval_from_env()?;
    let ctx = context_from_env("streams").await?;

    let app = App {
        ctx,
        token_interval,
        cuts: broadcast::channel(64).0,
    };
    let router = page_and_health(PAGE)
        .route("/api/answer", get(|| async { ANSWER }))
        .route("/api/stream/{id}", get(stream_handler))
        .route("/api/state/{id}", get(state_handler))
        .route("/api/cut/{client}", post(cut_handler))
        .with_state(app);

    serve_locally(router, port).await?;
    Ok(())
}

/// `GET /api/stream/{id}?offset=N&client=C`: the whole protocol is one call,
/// create-or-resume; the page is told how in a first `meta` event.
async fn stream_handler(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    StartAt(position): StartAt,
) -> Response {
    if !is_plain_id(&id) {
        return bad_id();
    }
    // The factory runs only if this request becomes the producer; from then on the
    // source runs to its end even if this client goes away, for the other readers.
    let interval = app.token_interval;
    let chunks = match app
        .ctx
        .resumable_stream(&id, move || simulated_llm(interval), position)
        .await
    {
        Ok(Some(chunks)) => chunks,
        Ok(None) => return StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            println!("stream {id}: {error}");
            return ErrorResponse(error).into_response();
        }
    };
    // A producer's reader always starts at the beginning (there was nothing to skip).
    let from = match (chunks.role(), position) {
        (Role::Producer, _) | (_, Position::Start) => serde_json::json!("start"),
        (_, Position::Chunk(n)) => serde_json::json!({ "chunk": n }),
        (_, Position::Units(n)) => serde_json::json!({ "offset": n }),
        (_, other) => serde_json::json!(format!("{other:?}")),
    };
    let role = match chunks.role() {
        Role::Producer => "producer",
        Role::Resumer => "resumer",
    };
    println!("stream {id}: {role}, from {from}");
    let meta = framing::encode_event(
        "meta",
        &serde_json::json!({ "role": role, "from": from }).to_string(),
    );
    let events = app
        .ctx
        .sse(chunks, SseOptions::default().retry(Some(RECONNECT_DELAY)));
    let client = query.get("client").cloned().unwrap_or_default();
    let cut = cut_signal(app.cuts.subscribe(), client);
    sse_response(
        stream::once(async { Ok(meta) })
            .chain(events)
            .take_until(cut),
    )
}

/// Resolves when `client` is cut (never for a request that named no client).
async fn cut_signal(mut cuts: broadcast::Receiver<String>, client: String) {
    loop {
        match cuts.recv().await {
            Ok(cut) if !client.is_empty() && cut == client => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// `POST /api/cut/{client}`: ends that client's open SSE responses here. The browser
/// sees its connection end and reconnects with `Last-Event-ID`.
async fn cut_handler(State(app): State<App>, Path(client): Path<String>) -> Response {
    if !is_plain_id(&client) {
        return bad_id();
    }
    // No receiver means no open connection: nothing to cut, not an error.
    let cut = app.cuts.send(client).unwrap_or(0);
    Json(serde_json::json!({ "listeners": cut })).into_response()
}

/// `GET /api/state/{id}`.
async fn state_handler(State(app): State<App>, Path(id): Path<String>) -> Response {
    if !is_plain_id(&id) {
        return bad_id();
    }
    match app.ctx.has_existing_stream(&id).await {
        Ok(state) => Json(serde_json::json!({ "state": state.as_str() })).into_response(),
        Err(error) => ErrorResponse(error).into_response(),
    }
}

fn bad_id() -> Response {
    (
        StatusCode::BAD_REQUEST,
        "ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
    )
        .into_response()
}

/// The simulated LLM: each word with the whitespace after it, one every `interval`.
fn simulated_llm(
    interval: Duration,
) -> impl Stream<Item = Result<&'static str, Infallible>> + Send + 'static {
    stream::unfold(
        ANSWER.split_inclusive(char::is_whitespace),
        move |mut tokens| async move {
            let token = tokens.next()?;
            tokio::time::sleep(interval).await;
            Some((Ok(token), tokens))
        },
    )
}
