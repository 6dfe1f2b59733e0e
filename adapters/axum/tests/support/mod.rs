//! What the axum tests share: a real axum server on a loopback port, a raw HTTP/1.1
//! client over `TcpStream` (chunked bodies read as they arrive), and the WHATWG SSE
//! parser of `resumable_stream_testkit::sse`, so that what the tests see is what a
//! browser's `EventSource` would.

#![allow(dead_code)]

pub use resumable_stream_testkit::sse::SseParser;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use resumable_stream_axum::{resumable_sse, resume_sse, StartAt};
use resumable_stream_testkit::RedisServer;
use resumable_stream_tokio::{Config, ResumableStreamContext};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long any single wait of a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Serves `router` on a free loopback port, in the background.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// Where a test's contexts keep their streams.
pub enum Backend {
    /// One in-process store shared by every context of the test.
    Memory(resumable_stream_tokio::MemoryBackend),
    /// A private redis-server of the test's own.
    Redis(RedisServer),
}

impl Backend {
    pub fn memory() -> Backend {
        Backend::Memory(resumable_stream_tokio::MemoryBackend::new())
    }

    pub fn redis() -> Backend {
        Backend::Redis(RedisServer::start())
    }

    /// Both, for tests that run on each.
    pub fn both() -> [Backend; 2] {
        [Backend::memory(), Backend::redis()]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    /// A context (an "instance") on this backend.
    pub async fn context(&self, config: Config) -> ResumableStreamContext {
        let builder = ResumableStreamContext::builder().config(config);
        match self {
            Backend::Memory(backend) => builder.memory(backend.clone()),
            Backend::Redis(server) => builder.redis_url(server.url()),
        }
        .build()
        .await
        .unwrap()
    }
}

/// A response read from the wire.
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    remaining: Option<usize>,
    done: bool,
}

/// Sends `GET path` (or another method) with `headers` and `body`, returns the
/// response once its head arrived.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> HttpResponse {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(body);
    tokio::time::timeout(WAIT, exchange(addr, head))
        .await
        .expect("the response's head within the bound")
}

/// Writes a whole request, reads the response's head.
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').expect("a header line");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let remaining = find("content-length").and_then(|v| v.parse().ok());
    HttpResponse {
        status,
        headers,
        reader,
        chunked,
        remaining,
        done: false,
    }
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body as it arrives (an HTTP chunk); `None` at its end.
    pub async fn next_piece(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, self.next_piece_unbounded())
            .await
            .expect("the next piece of the body within the bound")
    }

    async fn next_piece_unbounded(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        if self.chunked {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                self.done = true;
                return None;
            }
            let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
            let mut data = vec![0; size + 2];
            self.reader.read_exact(&mut data).await.ok()?;
            data.truncate(size);
            if size == 0 {
                self.done = true;
                return None;
            }
            Some(data)
        } else {
            let mut data = vec![0; self.remaining.unwrap_or(64 * 1024)];
            let mut read = 0;
            while read < data.len() {
                match self.reader.read(&mut data[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
                if self.remaining.is_none() {
                    break;
                }
            }
            data.truncate(read);
            if self.remaining.is_some() || read == 0 {
                self.done = true;
            }
            (read > 0).then_some(data)
        }
    }

    /// The whole body.
    pub async fn body(mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(piece) = self.next_piece().await {
            body.extend_from_slice(&piece);
        }
        body
    }
}

/// What the test servers' handlers share: a context (an instance) and the sources its
/// producing requests pull.
#[derive(Clone)]
pub struct App {
    pub ctx: ResumableStreamContext,
    pub sources: Sources,
}

/// `GET /s/{id}`: creates the stream from the next queued source, or resumes it.
pub async fn create_or_resume(
    State(app): State<App>,
    Path(id): Path<String>,
    at: StartAt,
) -> Response {
    let source = app.sources.take();
    resumable_sse(&app.ctx, &id, move || source, at).await
}

/// `GET /r/{id}`: resumes the stream only.
pub async fn resume_only(State(app): State<App>, Path(id): Path<String>, at: StartAt) -> Response {
    resume_sse(&app.ctx, &id, at).await
}

/// The SSE routes `/s/{id}` ([`create_or_resume`]) and `/r/{id}` ([`resume_only`]).
pub fn sse_routes() -> Router<App> {
    Router::new()
        .route("/s/{id}", get(create_or_resume))
        .route("/r/{id}", get(resume_only))
}

/// Reads a whole SSE response into a parser.
pub async fn read_sse(mut response: HttpResponse) -> SseParser {
    let mut parser = SseParser::default();
    while let Some(piece) = response.next_piece().await {
        parser.feed(&piece);
    }
    parser
}

/// The sources the next producing requests pull, in order: a test queues one before
/// each request that may start a stream.
#[derive(Clone, Default)]
pub struct Sources(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Source>>>);

/// A source: chunks, or an error.
pub type Source = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

impl Sources {
    pub fn push(&self, source: Source) {
        self.0.lock().unwrap().push_back(source);
    }

    /// The next queued source (an empty one if none is queued).
    pub fn take(&self) -> Source {
        use futures_util::StreamExt;
        self.0
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| futures_util::stream::empty().boxed())
    }
}

/// `chunks`, then a wait until `gate` is sent (or dropped), then `rest`.
pub fn gated(
    chunks: Vec<bytes::Bytes>,
    gate: tokio::sync::oneshot::Receiver<()>,
    rest: Vec<bytes::Bytes>,
) -> Source {
    use futures_util::{stream, StreamExt};
    stream::iter(chunks.into_iter().map(Ok))
        .chain(stream::once(async move { drop(gate.await) }).filter_map(|()| async { None }))
        .chain(stream::iter(rest.into_iter().map(Ok)))
        .boxed()
}

/// Reads `response` into `parser` until it holds `n` chunk events.
pub async fn read_until_chunks(response: &mut HttpResponse, parser: &mut SseParser, n: usize) {
    while parser.chunks().len() < n {
        let piece = response.next_piece().await.expect("more of the stream");
        parser.feed(&piece);
    }
}
