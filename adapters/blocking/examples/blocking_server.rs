//! A blocking HTTP server (tiny_http, one thread per request, no async runtime) that
//! streams a simulated LLM answer as resumable server-sent events. It serves the same
//! page and speaks the same SSE format as the tokio demo, so a browser can cut the
//! connection, reload, or open a second tab and resume.
//!
//! # Running it
//!
//! ```text
//! # In memory: one process, port 3001 (PORT overrides it).
//! cargo run -p resumable-stream-blocking --example blocking_server
//!
//! # Redis (REDIS_URL, or KV_URL): streams outlive the process, and this server
//! # resumes streams that another instance (or the tokio demo) produces.
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-blocking --example blocking_server
//! ```
//!
//! Then open the URL it prints. The server listens on 127.0.0.1 only.
//!
//! # Routes
//!
//! - `GET /`: the page (the tokio demo's `demo.html`).
//! - `GET /api/stream/{id}?skip=N`: creates the stream `id` or resumes it, skipping the
//!   first `N` UTF-16 code units. SSE: `event: meta` (`{"role":..,"skip":N}`), one
//!   unnamed event per chunk whose data is the chunk's text as a JSON string, then
//!   `event: end` (data `done`), or `event: error` with the message. A finished stream
//!   answers 422 "Stream is already done".
//! - `GET /api/state/{id}`: `{"state":"none"|"active"|"done"}`.
//! - `GET /healthz`: `ok`.
//!
//! # Streaming with tiny_http
//!
//! `Request::respond` copies a body of unknown length through tiny_http's chunked
//! encoder, which buffers 8 KiB and only flushes at the end: the events of a short
//! answer would all arrive at once. So the SSE response is written by hand on
//! `Request::into_writer`: the status line and headers, then one HTTP chunk per read
//! of the [`SseBody`] reader (one read is one event), flushed each time.

use resumable_stream::Role;
use resumable_stream_blocking::{BlockingStream, Error, ResumableStreamContext, StreamState};
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::thread;
use std::time::Duration;
use tiny_http::{HTTPVersion, Header, Method, Request, Response, Server};

/// The tokio demo's page: the two servers are interchangeable behind it.
const PAGE: &str = include_str!("../../tokio/examples/demo.html");

/// The simulated model's answer (about 90 words). Accents, CJK and an emoji outside the
/// Basic Multilingual Plane (two UTF-16 units) make a wrong resume offset visible.
const ANSWER: &str = "Here is a résumé of resumable streams, served by plain threads. The \
server that starts a stream keeps every token it has sent, so a reader that loses its \
connection can come back, say \"héllo\" again, and ask for the rest. Offsets are counted the \
way a browser counts them, in UTF-16 code units: 日本 costs two, and the rocket 🚀 costs two \
on its own.\nTry it: cut the connection halfway, reload the page, or open a second tab. Every \
reader ends with the same text, naïve façade and all. ✨";

/// The pause before each token, as a model would take.
const TOKEN_INTERVAL: Duration = Duration::from_millis(50);

/// An SSE comment is sent after this long without an event, so that proxies keep the
/// connection open and a vanished client is noticed (the write fails).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port = match std::env::var("PORT") {
        Ok(port) => port
            .parse::<u16>()
            .map_err(|_| format!("PORT must be a port number, not {port:?}"))?,
        Err(_) => 3001,
    };
    // The URL itself is not printed: it may hold a password.
    let ctx = if std::env::var("REDIS_URL").is_ok() || std::env::var("KV_URL").is_ok() {
        let ctx = ResumableStreamContext::from_env()?;
        println!("backend: Redis (from REDIS_URL or KV_URL); instances on it share streams");
        ctx
    } else {
        println!("backend: in memory (set REDIS_URL to share streams between instances)");
        ResumableStreamContext::in_memory()
    };

    let server = Server::http(("127.0.0.1", port))?;
    println!("open http://127.0.0.1:{port}/");
    for request in server.incoming_requests() {
        let ctx = ctx.clone();
        thread::spawn(move || route(&ctx, request));
    }
    Ok(())
}

fn route(ctx: &ResumableStreamContext, request: Request) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if *request.method() != Method::Get {
        return send(request, text(405, "only GET is served"));
    }
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
    if let Some(id) = path.strip_prefix("/api/stream/") {
        return stream_route(ctx, request, id, query);
    }
    if let Some(id) = path.strip_prefix("/api/state/") {
        let response = if !is_plain_id(id) {
            bad_id()
        } else {
            match ctx.has_existing_stream(id) {
                Ok(state) => {
                    let state = match state {
                        StreamState::None => "none",
                        StreamState::Active => "active",
                        StreamState::Done => "done",
                    };
                    let json = serde_json::json!({ "state": state }).to_string();
                    text(200, json).with_header(header("Content-Type", "application/json"))
                }
                Err(error) => error_response(id, &error),
            }
        };
        return send(request, response);
    }
    send(request, text(404, "not found"))
}

/// `GET /api/stream/{id}?skip=N`: the whole protocol is one call, create-or-resume.
fn stream_route(ctx: &ResumableStreamContext, request: Request, id: &str, query: &str) {
    if !is_plain_id(id) {
        return send(request, bad_id());
    }
    let skip = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("skip="))
        .next_back()
        .map(str::parse::<u64>);
    let skip = match skip {
        None => None,
        Some(Ok(skip)) => Some(skip),
        Some(Err(_)) => return send(request, text(400, "skip must be a non-negative integer")),
    };

    // The factory runs only if this request becomes the producer; its iterator is then
    // pulled on its own thread to the end, even if this client goes away.
    let chunks = match ctx.resumable_stream(id, simulated_llm, skip) {
        Ok(Some(chunks)) => chunks,
        Ok(None) => return send(request, text(422, "Stream is already done")),
        Err(error) => return send(request, error_response(id, &error)),
    };
    let role = match chunks.role() {
        Role::Producer => "producer",
        Role::Resumer => "resumer",
    };
    println!("stream {id}: {role}, skip {}", skip.unwrap_or(0));
    // A producer's reader starts at offset 0 (there was nothing to skip).
    let skip = if role == "producer" {
        0
    } else {
        skip.unwrap_or(0)
    };
    let meta = serde_json::json!({ "role": role, "skip": skip }).to_string();
    let mut body = SseBody::new(chunks, &meta);

    if *request.http_version() < HTTPVersion(1, 1) {
        // No chunked encoding in HTTP/1.0: tiny_http reads the body to its end and
        // sends it with a Content-Length. Correct, just not progressive.
        let sse = Response::new(200.into(), sse_headers(), body, None, None);
        return send(request, sse);
    }
    let mut out = request.into_writer();
    match write_sse(&mut out, &mut body) {
        Ok(()) => println!("stream {id}: sent to the end"),
        // The client went away: dropping `body` detaches this reader. A producer's
        // source keeps running for its other readers.
        Err(error) => println!("stream {id}: the client left ({error})"),
    }
}

/// Writes a 200 SSE response with chunked encoding: one HTTP chunk per read of `body`,
/// flushed at once, so that each event reaches the client as it is produced.
fn write_sse(out: &mut dyn Write, body: &mut impl Read) -> io::Result<()> {
    out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n")?;
    for h in sse_headers() {
        write!(out, "{}: {}\r\n", h.field, h.value)?;
    }
    out.write_all(b"\r\n")?;
    out.flush()?;
    let mut buf = [0; 8192];
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        write!(out, "{n:x}\r\n")?;
        out.write_all(&buf[..n])?;
        out.write_all(b"\r\n")?;
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn sse_headers() -> Vec<Header> {
    vec![
        header("Content-Type", "text/event-stream"),
        header("Cache-Control", "no-cache"),
        // Asks nginx-style proxies not to buffer the stream either.
        header("X-Accel-Buffering", "no"),
    ]
}

/// The SSE bytes of a [`BlockingStream`], as a `std::io::Read`: each `read` returns
/// (part of) one event, waiting for the next chunk when the last event is all read.
struct SseBody {
    /// `None` once the last event (`end` or `error`) is queued.
    chunks: Option<BlockingStream>,
    decoder: Utf8Decoder,
    /// The current event, and how much of it was read.
    event: Vec<u8>,
    read: usize,
}

impl SseBody {
    fn new(chunks: BlockingStream, meta: &str) -> SseBody {
        let mut body = SseBody {
            chunks: Some(chunks),
            decoder: Utf8Decoder::default(),
            event: Vec::new(),
            read: 0,
        };
        push_event(&mut body.event, Some("meta"), meta);
        body
    }

    /// Waits for the stream's next item and makes it the current event (possibly
    /// empty: a chunk that only began a character). `false` at the end of the body.
    fn next_event(&mut self) -> bool {
        let Some(chunks) = self.chunks.as_mut() else {
            return false;
        };
        self.event.clear();
        self.read = 0;
        let json = |text: &str| serde_json::Value::from(text).to_string();
        match chunks.next_timeout(KEEP_ALIVE) {
            Err(()) => self.event.extend_from_slice(b": keep-alive\n\n"),
            Ok(Some(Ok(bytes))) => {
                let text = self.decoder.push(&bytes);
                if !text.is_empty() {
                    push_event(&mut self.event, None, &json(&text));
                }
            }
            Ok(Some(Err(error))) => {
                push_event(&mut self.event, Some("error"), &error.to_string());
                self.chunks = None;
            }
            Ok(None) => {
                let tail = std::mem::take(&mut self.decoder).finish();
                if !tail.is_empty() {
                    push_event(&mut self.event, None, &json(&tail));
                }
                // Browsers ignore events with empty data, hence a word.
                push_event(&mut self.event, Some("end"), "done");
                self.chunks = None;
            }
        }
        true
    }
}

impl Read for SseBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.read == self.event.len() {
            if !self.next_event() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.event.len() - self.read);
        buf[..n].copy_from_slice(&self.event[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

/// Appends one SSE event; `data` gets one `data:` line per line of text.
fn push_event(out: &mut Vec<u8>, name: Option<&str>, data: &str) {
    if let Some(name) = name {
        out.extend_from_slice(format!("event: {name}\n").as_bytes());
    }
    for line in data.lines() {
        out.extend_from_slice(format!("data: {line}\n").as_bytes());
    }
    out.push(b'\n');
}

/// The simulated LLM: each word with the whitespace after it, one every
/// [`TOKEN_INTERVAL`]. The sleep runs on the producer's thread, as the driver pulls.
fn simulated_llm() -> impl Iterator<Item = Result<&'static str, Infallible>> + Send + 'static {
    ANSWER.split_inclusive(char::is_whitespace).map(|word| {
        thread::sleep(TOKEN_INTERVAL);
        Ok(word)
    })
}

/// Ids become parts of Redis keys and channel names: short and plain only.
fn is_plain_id(id: &str) -> bool {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (1..=64).contains(&id.len()) && id.chars().all(plain)
}

fn bad_id() -> Response<io::Cursor<Vec<u8>>> {
    text(
        400,
        "stream ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
    )
}

fn error_response(id: &str, error: &Error) -> Response<io::Cursor<Vec<u8>>> {
    println!("stream {id}: {error}");
    // A resume that no producer answered is the upstream failing to answer in time.
    let status = match error {
        Error::AckTimeout { .. } => 504,
        _ => 500,
    };
    text(status, error.to_string())
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
