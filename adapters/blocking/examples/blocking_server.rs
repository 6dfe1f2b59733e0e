//! A blocking HTTP server (tiny_http, one thread per request, no async runtime) that
//! streams a simulated LLM answer as resumable server-sent events. It serves the same
//! page and speaks the same SSE format as the tokio demo, so a browser can cut the
//! connection, reload, or open a second tab and resume.
//!
//! # Running it
//!
//! ```text
//! # In memory: one process, port 3001 (PORT or --port overrides it).
//! cargo run -p resumable-stream-blocking --example blocking_server
//!
//! # Redis (REDIS_URL, or KV_URL): streams outlive the process, and this server
//! # resumes streams that another instance (or the tokio demo) produces.
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-blocking --example blocking_server
//! ```
//!
//! Then open the URL it prints. The server listens on 127.0.0.1 only. `TOKEN_MS` sets
//! the pause before each simulated token (default 50 ms).
//!
//! # Routes
//!
//! The tokio demo's, with the same meaning (see its documentation for the three ways
//! to resume):
//!
//! - `GET /`: the page (the tokio demo's `demo.html`).
//! - `GET /api/stream/{id}?offset=N&client=C`: creates the stream `id` or resumes it: at
//!   the chunk position in a `Last-Event-ID` header, else after the first `N` UTF-16
//!   code units (the rules of `resumable-stream-axum`'s `StartAt`; a malformed one is
//!   refused with 400). SSE: `event: meta`
//!   (`{"role":..,"from":"start"|{"chunk":N}|{"offset":N}}`), then the events of
//!   `resumable_stream::sse` (one per chunk, its id the chunk position, then
//!   `event: end` or `event: error`). A finished stream answers 204.
//! - `POST /api/cut/{client}`: closes the SSE responses the page `client` has open here.
//! - `GET /api/state/{id}`: `{"state":"none"|"active"|"done"}`.
//! - `GET /api/answer`: the whole simulated answer.
//! - `GET /healthz`: `ok`.
//!
//! # Streaming with tiny_http
//!
//! `Request::respond` copies a body of unknown length through tiny_http's chunked
//! encoder, which buffers 8 KiB and only flushes at the end: the events of a short
//! answer would all arrive at once. So the SSE response is written by hand on
//! `Request::into_writer`: the status line and headers, then one HTTP chunk per item
//! of the stream's [`SseIter`] (one event, or a keep-alive), flushed each time.

use resumable_stream::{sse, Role};
use resumable_stream_axum::http::{HeaderMap, HeaderValue};
use resumable_stream_axum::{status_for, StartAt, LAST_EVENT_ID_HEADER};
use resumable_stream_blocking::{
    BlockingChunks, Bytes, Error, Position, ResumableStream, ResumableStreamContext, SseIter,
    SseOptions, TimedOut,
};
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};
use tiny_http::{HTTPVersion, Header, Method, Request, Response, Server};

/// The tokio demo's page: the two servers are interchangeable behind it.
#[path = "../../tokio/examples/support/demo_common.rs"]
mod demo_common;
use demo_common::{is_plain_id, port_from_args_or_env, redis_from_env, token_interval_from_env};

const PAGE: &str = include_str!("../../tokio/examples/demo.html");

/// The simulated model's answer (about 90 words). Accents, CJK and an emoji outside the
/// Basic Multilingual Plane (two UTF-16 units) make a wrong resume offset visible; the
/// CRLF travels as an `event: bytes` (a CR cannot be in an SSE data line).
const ANSWER: &str = "Here is a résumé of resumable streams, served by plain threads. The \
server that starts a stream keeps every token it has sent, so a reader that loses its \
connection can come back, say \"héllo\" again, and ask for the rest. Offsets are counted the \
way a browser counts them, in UTF-16 code units: 日本 costs two, and the rocket 🚀 costs two \
on its own.\r\nTry it: cut the connection halfway, reload the page, or open a second tab. Every \
reader ends with the same text, naïve façade and all. ✨";

/// How often an SSE response waiting for the next chunk checks whether it was cut.
const CUT_POLL: Duration = Duration::from_millis(100);

/// How long the browser waits before reconnecting a dropped `EventSource` (SSE `retry`).
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The open SSE responses, by the page (`client`) that opened them: a cut sets their
/// flags.
type Connections = Arc<Mutex<Vec<(String, Weak<AtomicBool>)>>>;

/// What every request thread shares.
#[derive(Clone)]
struct App {
    ctx: ResumableStreamContext,
    token_interval: Duration,
    connections: Connections,
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port = port_from_args_or_env(3001)?;
    let token_interval = token_interval_from_env()?;
    let ctx = if redis_from_env("streams") {
        ResumableStreamContext::from_env()?
    } else {
        ResumableStreamContext::in_memory()
    };

    let app = App {
        ctx,
        token_interval,
        connections: Arc::default(),
    };
    let server = Server::http(("127.0.0.1", port))?;
    println!("open http://127.0.0.1:{port}/");
    for request in server.incoming_requests() {
        let app = app.clone();
        thread::spawn(move || route(&app, request));
    }
    Ok(())
}

fn route(app: &App, request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if *request.method() == Method::Post {
        if let Some(client) = path.strip_prefix("/api/cut/") {
            let response = if is_plain_id(client) {
                let cut = cut(app, client);
                text(200, serde_json::json!({ "listeners": cut }).to_string())
                    .with_header(header("Content-Type", "application/json"))
            } else {
                bad_id()
            };
            return send(request, response);
        }
    }
    if *request.method() != Method::Get {
        return send(
            request,
            text(405, "only GET (and POST /api/cut/...) is served"),
        );
    }
    let ctx = &app.ctx;
    if path == "/" {
        let page = Response::from_string(PAGE);
        return send(
            request,
            page.with_header(header("Content-Type", "text/html; charset=utf-8")),
        );
    }
    if path == "/healthz" {
        return send(request, text(200, "ok"));
    }
    if path == "/api/answer" {
        let answer = text(200, ANSWER);
        return send(
            request,
            answer.with_header(header("Content-Type", "text/plain; charset=utf-8")),
        );
    }
    if let Some(id) = path.strip_prefix("/api/stream/") {
        return stream_route(app, request, id, query);
    }
    if let Some(id) = path.strip_prefix("/api/state/") {
        let response = if !is_plain_id(id) {
            bad_id()
        } else {
            match ctx.has_existing_stream(id) {
                Ok(state) => {
                    let json = serde_json::json!({ "state": state.as_str() }).to_string();
                    text(200, json).with_header(header("Content-Type", "application/json"))
                }
                Err(error) => error_response(id, &error),
            }
        };
        return send(request, response);
    }
    send(request, text(404, "not found"))
}

/// The last value of the query parameter `name`.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .next_back()
}

/// Where a request asks to start, by the rules of `resumable-stream-axum`'s `StartAt`
/// (plain functions over `http` types): a `Last-Event-ID` header (sent by the
/// browser's own reconnection) wins over `?offset`; anything malformed is refused.
fn requested_position(request: &Request, query: &str) -> Result<Position, String> {
    let mut headers = HeaderMap::new();
    for h in request
        .headers()
        .iter()
        .filter(|h| h.field.equiv(LAST_EVENT_ID_HEADER))
    {
        let value = HeaderValue::from_bytes(h.value.as_bytes())
            .map_err(|_| "Last-Event-ID is not a valid header value".to_owned())?;
        headers.append(LAST_EVENT_ID_HEADER, value);
    }
    StartAt::parse(&headers, Some(query))
        .map(|StartAt(position)| position)
        .map_err(|refused| refused.to_string())
}

/// `POST /api/cut/{client}`: flags that client's open SSE responses, which end at their
/// next check. Returns how many there were.
fn cut(app: &App, client: &str) -> usize {
    let mut connections = app.connections.lock().unwrap_or_else(|e| e.into_inner());
    let mut cut = 0;
    connections.retain(|(owner, flag)| match flag.upgrade() {
        Some(flag) if owner == client => {
            flag.store(true, Ordering::Relaxed);
            cut += 1;
            false
        }
        Some(_) => true,
        None => false,
    });
    cut
}

/// `GET /api/stream/{id}?offset=N&client=C`: the whole protocol is one call,
/// create-or-resume.
fn stream_route(app: &App, request: Request, id: &str, query: &str) {
    if !is_plain_id(id) {
        return send(request, bad_id());
    }
    let position = match requested_position(&request, query) {
        Ok(position) => position,
        Err(reason) => return send(request, text(400, reason)),
    };

    // The factory runs only if this request becomes the producer; its iterator is then
    // pulled on its own thread to the end, even if this client goes away.
    let interval = app.token_interval;
    let make_stream = move || simulated_llm(interval);
    let chunks = match app.ctx.resumable_stream(id, make_stream, position) {
        Ok(Some(chunks)) => chunks,
        Ok(None) => return send(request, text(204, "")),
        Err(error) => return send(request, error_response(id, &error)),
    };
    // A producer's reader starts at the beginning (there was nothing to skip).
    let from = match (chunks.role(), position) {
        (Role::Producer, _) | (_, Position::Start) => serde_json::json!("start"),
        (Role::Resumer, Position::Chunk(n)) => serde_json::json!({ "chunk": n }),
        (Role::Resumer, Position::Units(n)) => serde_json::json!({ "offset": n }),
        (Role::Resumer, other) => serde_json::json!(format!("{other:?}")),
    };
    let role = match chunks.role() {
        Role::Producer => "producer",
        Role::Resumer => "resumer",
    };
    println!("stream {id}: {role}, from {from}");
    let meta = serde_json::json!({ "role": role, "from": from }).to_string();
    let cut = Arc::new(AtomicBool::new(false));
    if let Some(client) = query_param(query, "client").filter(|c| is_plain_id(c)) {
        let mut connections = app.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections.retain(|(_, flag)| flag.strong_count() > 0);
        connections.push((client.to_owned(), Arc::downgrade(&cut)));
    }
    // The page's `meta` event, then the stream's events (`resumable_stream::sse`).
    let options = SseOptions::default().retry(Some(RECONNECT_DELAY));
    let chunks = Cuttable {
        chunks,
        cut: cut.clone(),
    };
    let events =
        std::iter::once(sse::encode_event("meta", &meta)).chain(SseIter::new(chunks, options));

    if *request.http_version() < HTTPVersion(1, 1) {
        // No chunked encoding in HTTP/1.0: the whole body at once, with a
        // Content-Length. Correct, just not progressive.
        let body: Vec<u8> = events.flat_map(|event| event.to_vec()).collect();
        let sse = Response::new(200.into(), sse_headers(), &body[..], Some(body.len()), None);
        return send(request, sse);
    }
    let mut out = request.into_writer();
    match write_sse(&mut out, events, &cut) {
        Ok(()) if cut.load(Ordering::Relaxed) => println!("stream {id}: cut"),
        Ok(()) => println!("stream {id}: sent to the end"),
        // The client went away: dropping the events detaches this reader. A producer's
        // source keeps running for its other readers.
        Err(error) => println!("stream {id}: the client left ({error})"),
    }
}

/// Writes a 200 SSE response with chunked encoding: one HTTP chunk per event, flushed
/// at once, so that each event reaches the client as it is produced. A cut ends the
/// body early, as a dropped connection would (no final event).
fn write_sse(
    out: &mut dyn Write,
    events: impl Iterator<Item = Bytes>,
    cut: &AtomicBool,
) -> io::Result<()> {
    out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n")?;
    for h in sse_headers() {
        write!(out, "{}: {}\r\n", h.field, h.value)?;
    }
    out.write_all(b"\r\n")?;
    out.flush()?;
    for event in events {
        if cut.load(Ordering::Relaxed) {
            break;
        }
        write!(out, "{:x}\r\n", event.len())?;
        out.write_all(&event)?;
        out.write_all(b"\r\n")?;
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn sse_headers() -> Vec<Header> {
    vec![
        header("Content-Type", sse::CONTENT_TYPE),
        header("Cache-Control", "no-cache"),
        // Asks nginx-style proxies not to buffer the stream either.
        header("X-Accel-Buffering", "no"),
    ]
}

/// The stream, its waits cut short when its page asks for a cut (checked every
/// [`CUT_POLL`]), so that a cut ends a silent response at once too.
struct Cuttable {
    chunks: ResumableStream,
    cut: Arc<AtomicBool>,
}

impl BlockingChunks for Cuttable {
    fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<Bytes, Error>>, TimedOut> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.cut.load(Ordering::Relaxed) || left.is_zero() {
                return Err(TimedOut);
            }
            match self.chunks.next_timeout(left.min(CUT_POLL)) {
                Err(TimedOut) => {}
                item => return item,
            }
        }
    }

    fn chunk_position(&self) -> Option<u64> {
        self.chunks.chunk_position()
    }
}

/// The simulated LLM: each word with the whitespace after it, one every `interval`.
/// The sleep runs on the producer's thread, as the driver pulls.
fn simulated_llm(
    interval: Duration,
) -> impl Iterator<Item = Result<&'static str, Infallible>> + Send + 'static {
    ANSWER
        .split_inclusive(char::is_whitespace)
        .map(move |word| {
            thread::sleep(interval);
            Ok(word)
        })
}

fn bad_id() -> Response<io::Cursor<Vec<u8>>> {
    text(
        400,
        "stream ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
    )
}

/// The error's status by the table of `resumable-stream-axum` (`status_for`).
fn error_response(id: &str, error: &Error) -> Response<io::Cursor<Vec<u8>>> {
    println!("stream {id}: {error}");
    text(
        status_for(error).as_u16(),
        error.to_string().replace(['\r', '\n'], " "),
    )
}

fn text(status: u16, body: impl Into<String>) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_string(body).with_status_code(status)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn send<R: Read>(request: Request, response: Response<R>) {
    if let Err(error) = request.respond(response) {
        println!("could not answer: {error}");
    }
}
