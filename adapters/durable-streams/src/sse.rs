//! Reads (`GET`): catch-up (protocol section 5.6), long-poll (5.7) and SSE (5.8).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream;

use crate::http::{bad, data_response, first_read, put, status, App};
use crate::json;
use crate::memory::unix_ms;
use crate::store::{From, Meta, Read};
use crate::wire::{self, offset};

/// The read query: where from, which mode, the client's cursor.
struct Query {
    from: From,
    live: Live,
    cursor: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Live {
    No,
    LongPoll,
    Sse,
}

fn query(text: Option<&str>) -> Result<Query, &'static str> {
    let (mut from, mut live, mut cursor) = (None, Live::No, None);
    for (key, value) in form_urlencoded::parse(text.unwrap_or("").as_bytes()) {
        match &*key {
            "offset" => from = Some(wire::parse_from(&value).ok_or("malformed offset")?),
            "live" => {
                live = match &*value {
                    "long-poll" => Live::LongPoll,
                    "sse" => Live::Sse,
                    "" | "false" => Live::No,
                    _ => return Err("unknown live mode"),
                }
            }
            "cursor" => cursor = Some(value.into_owned()),
            _ => {}
        }
    }
    let from = match (from, live) {
        (Some(from), _) => from,
        (None, Live::No) => From::At(0),
        (None, _) => return Err("live reads need an offset"),
    };
    Ok(Query { from, live, cursor })
}

pub(crate) async fn read(
    app: &App,
    id: &str,
    query_text: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let q = match query(query_text) {
        Ok(q) => q,
        Err(text) => return bad(text),
    };
    let (meta, start, chunks) = match first_read(app, id, q.from).await {
        Ok(read) => read,
        Err(r) => return r,
    };
    let now = q.from == From::Tail;
    match q.live {
        Live::No => {
            let chunks = if now { Vec::new() } else { chunks };
            data_response(id, &meta, start, &chunks, headers, now)
        }
        Live::LongPoll => long_poll(app, id, q, meta, start, chunks, headers).await,
        Live::Sse => sse(app, id, q.cursor, meta, start, chunks),
    }
}

async fn long_poll(
    app: &App,
    id: &str,
    q: Query,
    mut meta: Meta,
    start: u64,
    mut chunks: Vec<Bytes>,
    headers: &HeaderMap,
) -> Response {
    let deadline = Instant::now() + app.config.long_poll_timeout;
    while chunks.is_empty() && !meta.closed {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Err(e) = app.store.wait(id, start, left).await {
            return status_text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        match app
            .store
            .read(id, From::At(start), app.config.max_read_bytes, false)
            .await
        {
            Ok(Read::Data {
                meta: m, chunks: c, ..
            }) => (meta, chunks) = (m, c),
            Ok(Read::NotFound | Read::PastTail) => {
                return status(StatusCode::NOT_FOUND, "no such stream")
            }
            Ok(Read::Gone | Read::BeforeRetained) => {
                return status(StatusCode::GONE, "the stream is deleted")
            }
            Err(e) => return status_text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
    let cursor = wire::cursor(q.cursor.as_deref(), unix_ms());
    let mut r = if chunks.is_empty() {
        let mut r = status(StatusCode::NO_CONTENT, "");
        put(&mut r, "stream-next-offset", offset(start));
        put(&mut r, "stream-up-to-date", "true");
        put(&mut r, "cache-control", "no-store");
        if meta.closed {
            put(&mut r, "stream-closed", "true");
        }
        r
    } else {
        data_response(id, &meta, start, &chunks, headers, false)
    };
    if !meta.closed {
        put(&mut r, "stream-cursor", cursor);
    }
    r
}

fn status_text(code: StatusCode, text: String) -> Response {
    let mut r = status(code, "");
    *r.body_mut() = Body::from(text);
    r
}

/// How SSE data events carry a stream's bytes.
#[derive(Clone, Copy)]
enum Encoding {
    Text,
    Json,
    Base64,
}

fn encoding(content_type: &str) -> Encoding {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if json::is_json(content_type) {
        Encoding::Json
    } else if media.starts_with("text/") {
        Encoding::Text
    } else {
        Encoding::Base64
    }
}

/// One `data` event: the payload split into `data:` lines, so no byte of it can end
/// the event or inject a field.
fn data_event(encoding: Encoding, chunks: &[Bytes]) -> String {
    let payload = match encoding {
        Encoding::Json => String::from_utf8_lossy(&json::array(chunks)).into_owned(),
        Encoding::Text => String::from_utf8_lossy(&chunks.concat()).into_owned(),
        Encoding::Base64 => wire::base64(&chunks.concat()),
    };
    let mut event = String::with_capacity(payload.len() + 32);
    event.push_str("event: data\n");
    let normalized = payload.replace("\r\n", "\n").replace('\r', "\n");
    for line in normalized.split('\n') {
        // A reader strips one space after the colon: keep a line's own leading space.
        event.push_str(if line.starts_with(' ') {
            "data: "
        } else {
            "data:"
        });
        event.push_str(line);
        event.push('\n');
    }
    event.push('\n');
    event
}

fn control_event(next: u64, meta: &Meta, cursor: &str) -> String {
    let caught_up = next == meta.tail;
    let mut control = serde_json::Map::new();
    control.insert("streamNextOffset".into(), offset(next).into());
    if meta.closed && caught_up {
        control.insert("streamClosed".into(), true.into());
    } else {
        control.insert("streamCursor".into(), cursor.into());
    }
    if caught_up {
        control.insert("upToDate".into(), true.into());
    }
    format!(
        "event: control\ndata:{}\n\n",
        serde_json::Value::Object(control)
    )
}

/// The state of an SSE response between events.
struct Tail {
    store: std::sync::Arc<dyn crate::Store>,
    id: String,
    encoding: Encoding,
    cursor: String,
    pos: u64,
    max_bytes: usize,
    deadline: Instant,
    /// A read already made, to send first.
    pending: Option<(Meta, Vec<Bytes>)>,
    done: bool,
}

impl Tail {
    /// The next events: a data and its control, or a control alone at the tail; `None`
    /// once the stream is closed and sent, deleted, or the response's lifetime is over.
    async fn next(&mut self) -> Option<String> {
        loop {
            if self.done {
                return None;
            }
            let (meta, chunks) = match self.pending.take() {
                Some(read) => read,
                None => {
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.store
                        .wait(&self.id, self.pos, left.min(Duration::from_secs(15)))
                        .await
                        .ok()?;
                    match self
                        .store
                        .read(&self.id, From::At(self.pos), self.max_bytes, false)
                        .await
                    {
                        Ok(Read::Data { meta, chunks, .. })
                            if !chunks.is_empty() || meta.closed =>
                        {
                            (meta, chunks)
                        }
                        Ok(Read::Data { .. }) => continue,
                        _ => return None,
                    }
                }
            };
            let mut out = String::new();
            if !chunks.is_empty() {
                out.push_str(&data_event(self.encoding, &chunks));
            }
            self.pos += chunks.len() as u64;
            out.push_str(&control_event(self.pos, &meta, &self.cursor));
            self.done = meta.closed && self.pos == meta.tail;
            return Some(out);
        }
    }
}

fn sse(
    app: &App,
    id: &str,
    cursor: Option<String>,
    meta: Meta,
    start: u64,
    chunks: Vec<Bytes>,
) -> Response {
    let encoding = encoding(&meta.content_type);
    let chunks = if start == meta.tail {
        Vec::new()
    } else {
        chunks
    };
    let tail = Tail {
        store: app.store.clone(),
        id: id.to_owned(),
        encoding,
        cursor: wire::cursor(cursor.as_deref(), unix_ms()),
        pos: start,
        max_bytes: app.config.max_read_bytes,
        deadline: Instant::now() + app.config.sse_lifetime,
        pending: Some((meta, chunks)),
        done: false,
    };
    let events = stream::unfold(tail, |mut tail| async move {
        let event = tail.next().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(event)), tail))
    });
    let mut r = Response::new(Body::from_stream(events));
    put(&mut r, "content-type", "text/event-stream");
    put(&mut r, "cache-control", "no-cache");
    if matches!(encoding, Encoding::Base64) {
        put(&mut r, "stream-sse-data-encoding", "base64");
    }
    r
}
