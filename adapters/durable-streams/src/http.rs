//! Requests to store calls and outcomes to answers: parsing of the protocol's headers
//! and query, and the headers every answer carries (security, CORS, caching).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use crate::json::{self, JsonError};
use crate::store::{
    Append, Appended, Create, Created, Deleted, Expiry, Fork, From, Head, Meta, Producer, Read,
    Store,
};
use crate::wire::{self, offset};
use crate::Config;

/// What the handlers share.
pub(crate) struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Config,
    /// The subscriptions (protocol section 6): `Ok(None)` over a shared store.
    #[cfg(feature = "subscriptions")]
    pub(crate) subs: crate::subs::Subscriptions,
}

pub(crate) fn router(store: Arc<dyn Store>, config: Config) -> axum::Router {
    #[cfg(feature = "subscriptions")]
    let subs = crate::subs::Registry::new(
        Arc::clone(&store),
        config.subscriptions.clone(),
        &config.base_path,
    );
    axum::Router::new()
        .fallback(handle)
        .with_state(Arc::new(App {
            store,
            config,
            #[cfg(feature = "subscriptions")]
            subs,
        }))
}

/// Headers a browser may read, and may send (CORS).
const EXPOSED: &str = "stream-next-offset, stream-cursor, stream-up-to-date, stream-closed, stream-ttl, \
    stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, producer-expected-seq, \
    producer-received-seq, etag, location, content-type";
const ALLOWED: &str = "content-type, if-none-match, stream-seq, stream-ttl, stream-expires-at, stream-closed, \
    producer-id, producer-epoch, producer-seq, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, \
    authorization";
const CACHEABLE: &str = "public, max-age=60, stale-while-revalidate=300";
/// The largest integer a JavaScript number holds exactly (producer epochs and seqs).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    let mut response = route(&app, req).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static(EXPOSED),
    );
    response
}

async fn route(app: &App, req: Request) -> Response {
    if let Some(rest) = crate::reserved::path(&app.config.base_path, req.uri().path()) {
        let rest = rest.to_owned();
        return app.reserved(&rest, req).await;
    }
    let Some(id) = stream_id(&app.config.base_path, req.uri().path()) else {
        return status(StatusCode::NOT_FOUND, "no stream at this path");
    };
    let id = id.to_owned();
    match *req.method() {
        Method::OPTIONS => preflight(),
        Method::PUT => create(app, &id, req).await,
        Method::POST => append(app, &id, req).await,
        Method::DELETE => delete(app, &id).await,
        Method::HEAD => head(app, &id).await,
        Method::GET => crate::sse::read(app, &id, req.uri().query(), req.headers()).await,
        _ => {
            let mut r = status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            put(&mut r, "allow", "GET, HEAD, PUT, POST, DELETE, OPTIONS");
            r
        }
    }
}

/// The stream id of a path under `base`: what follows `base/`, non-empty; ids under
/// the reserved `__ds` segment (protocol section 6) are not streams.
pub(crate) fn stream_id<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(base.trim_end_matches('/'))?
        .strip_prefix('/')?;
    (!rest.is_empty() && rest != "__ds" && !rest.starts_with("__ds/")).then_some(rest)
}

pub(crate) fn preflight() -> Response {
    let mut r = status(StatusCode::NO_CONTENT, "");
    put(
        &mut r,
        "access-control-allow-methods",
        "GET, HEAD, PUT, POST, DELETE, OPTIONS",
    );
    put(&mut r, "access-control-allow-headers", ALLOWED);
    put(&mut r, "access-control-max-age", "86400");
    r
}

/// An answer with a short plain-text body (empty for `204` and `304`).
pub(crate) fn status(code: StatusCode, text: &'static str) -> Response {
    let body = if matches!(code, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        ""
    } else {
        text
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    if !body.is_empty() {
        put(&mut r, "content-type", "text/plain; charset=utf-8");
    }
    r
}

/// Sets a header, skipping a value that is not a valid header value.
pub(crate) fn put(r: &mut Response, name: &'static str, value: impl AsRef<str>) {
    if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
        r.headers_mut().insert(HeaderName::from_static(name), value);
    }
}

/// A header's value as text (`None` when absent or not visible ASCII).
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Stream-Closed` counts only when it is `true`, in any case (protocol section 4.1).
fn closed_header(headers: &HeaderMap) -> bool {
    header(headers, "stream-closed").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The metadata headers of a stream.
pub(crate) fn meta_headers(r: &mut Response, meta: &Meta, tail: u64) {
    put(r, "content-type", &meta.content_type);
    put(r, "stream-next-offset", offset(tail));
    if meta.closed && tail == meta.tail {
        put(r, "stream-closed", "true");
    }
}

async fn body(app: &App, req: Request) -> Result<Bytes, Response> {
    axum::body::to_bytes(req.into_body(), app.config.max_body_bytes)
        .await
        .map_err(|_| status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))
}

pub(crate) fn bad(text: &'static str) -> Response {
    status(StatusCode::BAD_REQUEST, text)
}

fn unavailable(e: &crate::store::StoreError) -> Response {
    let mut r = status(StatusCode::SERVICE_UNAVAILABLE, "store unavailable");
    *r.body_mut() = Body::from(e.to_string());
    r
}

/// The chunks of a body: JSON messages for a JSON stream, else the body as one chunk.
/// Why a request is malformed (`400`).
type Malformed = &'static str;

fn chunks(content_type: Option<&str>, body: Bytes, append: bool) -> Result<Vec<Bytes>, Malformed> {
    if content_type.is_some_and(json::is_json) {
        if body.is_empty() {
            return Ok(Vec::new());
        }
        return json::messages(&body, append).map_err(|e| match e {
            JsonError::Invalid => "invalid JSON",
            JsonError::EmptyArray => "an empty JSON array appends nothing",
        });
    }
    Ok(if body.is_empty() {
        Vec::new()
    } else {
        vec![body]
    })
}

fn expiry(headers: &HeaderMap) -> Result<Expiry, Malformed> {
    let ttl = header(headers, "stream-ttl");
    let at = header(headers, "stream-expires-at");
    match (ttl, at) {
        (Some(_), Some(_)) => Err("Stream-TTL and Stream-Expires-At are exclusive"),
        (Some(ttl), None) => wire::parse_ttl(ttl)
            .map(Expiry::Ttl)
            .ok_or("invalid Stream-TTL"),
        (None, Some(at)) => wire::parse_rfc3339(at)
            .map(Expiry::At)
            .ok_or("invalid Stream-Expires-At"),
        (None, None)
            if headers.contains_key("stream-ttl") || headers.contains_key("stream-expires-at") =>
        {
            Err("invalid expiry header")
        }
        (None, None) => Ok(Expiry::Never),
    }
}

fn fork(app: &App, headers: &HeaderMap) -> Result<Option<Fork>, Malformed> {
    let from = header(headers, "stream-forked-from");
    let at = header(headers, "stream-fork-offset");
    let sub = header(headers, "stream-fork-sub-offset");
    let Some(from) = from else {
        return if at.is_some() || sub.is_some() {
            Err("fork headers without Stream-Forked-From")
        } else {
            Ok(None)
        };
    };
    let path = from.split(['?', '#']).next().unwrap_or(from);
    let source = stream_id(&app.config.base_path, path).unwrap_or(path.trim_start_matches('/'));
    let offset = match at {
        None => None,
        Some("-1") => Some(0),
        Some(text) => Some(wire::parse_offset(text).ok_or("invalid Stream-Fork-Offset")?),
    };
    let sub_offset = match sub {
        None => 0,
        Some(text) => wire::parse_ttl(text).ok_or("invalid Stream-Fork-Sub-Offset")?,
    };
    Ok(Some(Fork {
        source: source.to_owned(),
        offset,
        sub_offset,
    }))
}

async fn create(app: &App, id: &str, req: Request) -> Response {
    let headers = req.headers().clone();
    let location = location(&app.config, &headers, id);
    let expiry = match expiry(&headers) {
        Ok(e) => e,
        Err(text) => return bad(text),
    };
    let fork = match fork(app, &headers) {
        Ok(f) => f,
        Err(text) => return bad(text),
    };
    let content_type = header(&headers, "content-type").map(str::to_owned);
    let body = match body(app, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let chunks = match chunks(content_type.as_deref(), body, false) {
        Ok(c) => c,
        Err(text) => return bad(text),
    };
    let closed = closed_header(&headers);
    let count = chunks.len();
    let outcome = app
        .store
        .create(
            id,
            Create {
                content_type,
                expiry,
                closed,
                chunks,
                fork,
            },
        )
        .await;
    let (code, meta) = match outcome {
        Err(e) => return unavailable(&e),
        Ok(Created::New(meta)) => {
            app.appended(id, meta.tail, count);
            (StatusCode::CREATED, meta)
        }
        Ok(Created::Existing(meta)) => (StatusCode::OK, meta),
        Ok(Created::Conflict) => {
            return status(
                StatusCode::CONFLICT,
                "the stream exists with another configuration",
            )
        }
        Ok(Created::SourceNotFound) => {
            return status(StatusCode::NOT_FOUND, "no such source stream")
        }
        Ok(Created::SourceDeleted) => {
            return status(StatusCode::CONFLICT, "the source stream is deleted")
        }
        Ok(Created::SourceTypeMismatch) => {
            return status(
                StatusCode::CONFLICT,
                "content type differs from the source's",
            )
        }
        Ok(Created::BadForkPoint) => return bad("fork point past the source's data"),
    };
    let mut r = status(code, "");
    *r.body_mut() = Body::empty();
    meta_headers(&mut r, &meta, meta.tail);
    if code == StatusCode::CREATED {
        put(&mut r, "location", location);
    }
    r
}

/// The absolute URL of a stream, from the request's `Host` (`Location` on `201`).
fn location(config: &Config, headers: &HeaderMap, id: &str) -> String {
    let path = format!("{}/{id}", config.base_path.trim_end_matches('/'));
    match header(headers, "host") {
        Some(host) => {
            let scheme = header(headers, "x-forwarded-proto")
                .filter(|p| *p == "https")
                .unwrap_or("http");
            format!("{scheme}://{host}{path}")
        }
        None => path,
    }
}

fn producer(headers: &HeaderMap) -> Result<Option<Producer>, Malformed> {
    let id = header(headers, "producer-id");
    let epoch = header(headers, "producer-epoch");
    let seq = header(headers, "producer-seq");
    let number = |text: &str| wire::parse_ttl(text).filter(|n| *n <= MAX_SAFE_INTEGER);
    match (id, epoch, seq) {
        (None, None, None) if !headers.contains_key("producer-id") => Ok(None),
        (Some(id), Some(epoch), Some(seq)) if !id.is_empty() => {
            match (number(epoch), number(seq)) {
                (Some(epoch), Some(seq)) => Ok(Some(Producer {
                    id: id.to_owned(),
                    epoch,
                    seq,
                })),
                _ => Err("Producer-Epoch and Producer-Seq must be integers"),
            }
        }
        _ => Err("Producer-Id, Producer-Epoch and Producer-Seq go together"),
    }
}

async fn append(app: &App, id: &str, req: Request) -> Response {
    let headers = req.headers().clone();
    let close = closed_header(&headers);
    let producer = match producer(&headers) {
        Ok(p) => p,
        Err(text) => return bad(text),
    };
    let body = match body(app, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.is_empty() && !close {
        return bad("an append needs a body");
    }
    let content_type = header(&headers, "content-type").map(str::to_owned);
    if !body.is_empty() && content_type.is_none() {
        return bad("an append with a body needs a Content-Type");
    }
    let chunks = match chunks(content_type.as_deref(), body, true) {
        Ok(c) => c,
        Err(text) => return bad(text),
    };
    let stream_seq = header(&headers, "stream-seq").map(str::to_owned);
    let close_only = chunks.is_empty();
    let count = chunks.len();
    let echo = producer.as_ref().map(|p| (p.epoch, p.seq));
    let outcome = app
        .store
        .append(
            id,
            Append {
                content_type,
                chunks,
                close,
                stream_seq,
                producer,
            },
        )
        .await;
    let (mut r, tail, closed) = match outcome {
        Err(e) => return unavailable(&e),
        Ok(Appended::Done { tail, closed }) => {
            if count > 0 {
                app.appended(id, tail, count);
            }
            // A producer's append that added data answers 200; a close-only request 204.
            let code = if echo.is_some() && !close_only {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            };
            let mut r = status(code, "");
            if let Some((epoch, seq)) = echo {
                put(&mut r, "producer-epoch", epoch.to_string());
                put(&mut r, "producer-seq", seq.to_string());
            }
            (r, tail, closed)
        }
        Ok(Appended::Duplicate {
            tail,
            closed,
            last_seq,
        }) => {
            let mut r = status(StatusCode::NO_CONTENT, "");
            if let Some((epoch, _)) = echo {
                put(&mut r, "producer-epoch", epoch.to_string());
                put(&mut r, "producer-seq", last_seq.to_string());
            }
            (r, tail, closed)
        }
        Ok(Appended::Closed { tail }) => (
            status(StatusCode::CONFLICT, "the stream is closed"),
            tail,
            true,
        ),
        Ok(Appended::NotFound) => return status(StatusCode::NOT_FOUND, "no such stream"),
        Ok(Appended::Gone) => return status(StatusCode::GONE, "the stream is deleted"),
        Ok(Appended::TypeMismatch) => {
            return status(
                StatusCode::CONFLICT,
                "content type differs from the stream's",
            )
        }
        Ok(Appended::SeqRegression) => {
            return status(StatusCode::CONFLICT, "Stream-Seq did not increase")
        }
        Ok(Appended::Owned) => {
            return status(
                StatusCode::CONFLICT,
                "a resumable-stream producer owns this stream (its lease is live)",
            )
        }
        Ok(Appended::NewEpochNotAtZero) => {
            return bad("a new producer epoch starts at Producer-Seq 0")
        }
        Ok(Appended::StaleEpoch { current }) => {
            let mut r = status(StatusCode::FORBIDDEN, "stale producer epoch");
            put(&mut r, "producer-epoch", current.to_string());
            return r;
        }
        Ok(Appended::SeqGap { expected }) => {
            let mut r = status(StatusCode::CONFLICT, "producer sequence gap");
            put(&mut r, "producer-expected-seq", expected.to_string());
            put(
                &mut r,
                "producer-received-seq",
                echo.map_or(0, |e| e.1).to_string(),
            );
            return r;
        }
    };
    put(&mut r, "stream-next-offset", offset(tail));
    if closed {
        put(&mut r, "stream-closed", "true");
    }
    r
}

async fn delete(app: &App, id: &str) -> Response {
    match app.store.delete(id).await {
        Err(e) => unavailable(&e),
        Ok(Deleted::Done) => {
            app.deleted(id);
            status(StatusCode::NO_CONTENT, "")
        }
        Ok(Deleted::NotFound) => status(StatusCode::NOT_FOUND, "no such stream"),
        Ok(Deleted::Gone) => status(StatusCode::GONE, "the stream is deleted"),
    }
}

async fn head(app: &App, id: &str) -> Response {
    let mut r = match app.store.head(id).await {
        Err(e) => unavailable(&e),
        Ok(Head::NotFound) => status(StatusCode::NOT_FOUND, ""),
        Ok(Head::Gone) => status(StatusCode::GONE, ""),
        Ok(Head::Found(meta)) => {
            let mut r = status(StatusCode::OK, "");
            meta_headers(&mut r, &meta, meta.tail);
            expiry_headers(&mut r, meta.expiry);
            r
        }
    };
    *r.body_mut() = Body::empty();
    put(&mut r, "cache-control", "no-store");
    r
}

fn expiry_headers(r: &mut Response, expiry: Expiry) {
    match expiry {
        Expiry::Never => {}
        Expiry::Ttl(secs) => put(r, "stream-ttl", secs.to_string()),
        Expiry::At(ms) => put(r, "stream-expires-at", wire::format_rfc3339(ms)),
    }
}

/// The first read of a GET: the store's answer as a response when it is not data.
pub(crate) async fn first_read(
    app: &App,
    id: &str,
    from: From,
) -> Result<(Meta, u64, Vec<Bytes>), Response> {
    match app
        .store
        .read(id, from, app.config.max_read_bytes, true)
        .await
    {
        Err(e) => Err(unavailable(&e)),
        Ok(Read::Data {
            meta,
            start,
            chunks,
        }) => Ok((meta, start, chunks)),
        Ok(Read::NotFound) => Err(status(StatusCode::NOT_FOUND, "no such stream")),
        Ok(Read::Gone) => Err(status(StatusCode::GONE, "the stream is deleted")),
        Ok(Read::PastTail) => Err(bad("offset past the stream's tail")),
        Ok(Read::BeforeRetained) => Err(status(StatusCode::GONE, "offset no longer retained")),
    }
}

/// A catch-up or long-poll answer carrying `chunks` from `start`.
pub(crate) fn data_response(
    id: &str,
    meta: &Meta,
    start: u64,
    chunks: &[Bytes],
    headers: &HeaderMap,
    now: bool,
) -> Response {
    let next = start + chunks.len() as u64;
    let json = json::is_json(&meta.content_type);
    let etag = format!(
        "\"{id}:{}:{}{}\"",
        offset(start),
        offset(next),
        if meta.closed { ":c" } else { "" }
    );
    if !now
        && header(headers, "if-none-match").is_some_and(|m| m.split(',').any(|t| t.trim() == etag))
    {
        let mut r = status(StatusCode::NOT_MODIFIED, "");
        put(&mut r, "etag", &etag);
        put(&mut r, "stream-next-offset", offset(next));
        return r;
    }
    let body = if json {
        json::array(chunks)
    } else {
        chunks.concat().into()
    };
    let mut r = Response::new(Body::from(body));
    meta_headers(&mut r, meta, next);
    if next == meta.tail {
        put(&mut r, "stream-up-to-date", "true");
    }
    if now {
        put(&mut r, "cache-control", "no-store");
    } else {
        put(&mut r, "etag", &etag);
        put(&mut r, "cache-control", CACHEABLE);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::stream_id;

    #[test]
    fn ids_under_the_base_path() {
        assert_eq!(stream_id("/v1/stream", "/v1/stream/a/b"), Some("a/b"));
        assert_eq!(stream_id("/v1/stream/", "/v1/stream/a"), Some("a"));
        assert_eq!(stream_id("", "/a"), Some("a"));
        assert_eq!(stream_id("/v1/stream", "/v1/streamx"), None);
        assert_eq!(stream_id("/v1/stream", "/v1/stream/"), None);
        assert_eq!(
            stream_id("/v1/stream", "/v1/stream/__ds/subscriptions/x"),
            None
        );
    }
}
