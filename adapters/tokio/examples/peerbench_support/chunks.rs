//! What the scenarios feed and how their readers are checked: the contract's chunks, the
//! sources (gated, yielding, paced at a rate), and a reader read to its end with every
//! byte compared to what it must receive.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use resumable_stream_tokio::ResumableStream;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const CHUNK_BYTES: usize = 64;
const FILL: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQR"; // 54 chars

pub fn chunk(i: usize) -> Bytes {
    Bytes::from(format!("{i:08}:{FILL}\n"))
}

pub fn make_input(n: usize) -> Arc<Vec<Bytes>> {
    Arc::new((0..n).map(chunk).collect())
}

/// The bytes a reader of `input` must receive, in one piece.
pub fn concat(input: &[Bytes]) -> Arc<Vec<u8>> {
    Arc::new(input.concat())
}

/// A source over `input` that waits for `gate` before chunk `gate_at` (if `gate_at ==
/// input.len()`, after the last chunk: the stream stays open until the gate opens).
pub fn gated_source(
    input: Arc<Vec<Bytes>>,
    gate_at: usize,
    gate: Option<watch::Receiver<bool>>,
) -> BoxStream<'static, Result<Bytes, Infallible>> {
    stream::unfold(
        (0usize, input, gate),
        move |(i, input, mut gate)| async move {
            if i == gate_at {
                if let Some(g) = gate.as_mut() {
                    let _ = g.wait_for(|open| *open).await;
                }
            }
            let next = input.get(i)?.clone();
            Some((Ok(next), (i + 1, input, gate)))
        },
    )
    .boxed()
}

/// A source that yields to the runtime before every chunk (join_live).
pub fn yielding_source(input: Arc<Vec<Bytes>>) -> BoxStream<'static, Result<Bytes, Infallible>> {
    stream::unfold((0usize, input), |(i, input)| async move {
        tokio::task::yield_now().await;
        let next = input.get(i)?.clone();
        Some((Ok(next), (i + 1, input)))
    })
    .boxed()
}

/// When each chunk of one paced stream left its source, in nanoseconds since a shared
/// base instant (0: not yet).
pub struct Emitted {
    base: Instant,
    at: Vec<AtomicU64>,
}

impl Emitted {
    pub fn new(base: Instant, chunks: usize) -> Arc<Self> {
        Arc::new(Emitted {
            base,
            at: (0..chunks).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn mark(&self, i: usize) {
        let nanos = self.base.elapsed().as_nanos().max(1) as u64;
        self.at[i].store(nanos, Ordering::Relaxed);
    }

    /// How long ago chunk `i` left its source, in ms, if it left after `since_ns`.
    pub fn lag_ms(&self, i: usize, since_ns: u64) -> Option<f32> {
        let at = self.at.get(i)?.load(Ordering::Relaxed);
        if at == 0 || at < since_ns {
            return None;
        }
        let now = self.base.elapsed().as_nanos() as u64;
        Some(now.saturating_sub(at) as f32 / 1e6)
    }

    /// Now, in nanoseconds since the base.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// A source emitting chunk i of `input` at `start + i × period` (as a model's tokens),
/// marking when it yields each in `emitted`.
pub fn paced_source(
    input: Arc<Vec<Bytes>>,
    start: tokio::time::Instant,
    period: Duration,
    emitted: Arc<Emitted>,
) -> BoxStream<'static, Result<Bytes, Infallible>> {
    stream::unfold(
        (0usize, input, emitted),
        move |(i, input, emitted)| async move {
            let next = input.get(i)?.clone();
            tokio::time::sleep_until(start + period.mul_f64(i as f64)).await;
            emitted.mark(i);
            Some((Ok(next), (i + 1, input, emitted)))
        },
    )
    .boxed()
}

/// The make_stream of a caller that must resume: it fails the stream if ever called.
pub fn no_produce() -> BoxStream<'static, Result<Bytes, String>> {
    stream::once(async {
        Err("make_stream called on a resumer: stream id was not live".to_string())
    })
    .boxed()
}

/// What a reader received, checked byte by byte against what it must receive as the
/// chunks arrive (the bench keeps no copy of the output).
#[derive(Debug)]
pub struct Received {
    /// Bytes received.
    pub len: usize,
    /// Where the received bytes first differ from the expected ones, if they do (a
    /// reader that got a prefix of the expected bytes has `None` and a short `len`).
    pub first_diff: Option<usize>,
    pub expected_len: usize,
}

impl Received {
    fn new(expected_len: usize) -> Self {
        Received {
            len: 0,
            first_diff: None,
            expected_len,
        }
    }

    /// Exactly the expected bytes.
    pub fn is_exact(&self) -> bool {
        self.first_diff.is_none() && self.len == self.expected_len
    }

    /// Checks `bytes`, the next ones received, against `expected`.
    fn take(&mut self, bytes: &[u8], expected: &[u8]) {
        if self.first_diff.is_none() {
            let want = expected.get(self.len..).unwrap_or_default();
            if !want.starts_with(bytes) {
                let same = bytes.iter().zip(want).take_while(|(a, b)| a == b).count();
                self.first_diff = Some(self.len + same);
            }
        }
        self.len += bytes.len();
    }

    /// "ok", or where the output went wrong.
    pub fn describe(&self) -> String {
        if self.is_exact() {
            return "ok".to_string();
        }
        let i = self.first_diff.unwrap_or(self.len.min(self.expected_len));
        format!(
            "len {} vs {}, first diff at char {i} (chunk {})",
            self.len,
            self.expected_len,
            i / CHUNK_BYTES
        )
    }
}

/// Reads `reader` to its end, checking every byte against `expected`; `on_data(k, len)`
/// after the k-th item (1-based), `len` the bytes received so far.
pub async fn read_checked(
    mut reader: ResumableStream,
    expected: Arc<Vec<u8>>,
    mut on_data: impl FnMut(usize, usize),
) -> Result<Received, String> {
    let mut received = Received::new(expected.len());
    let mut k = 0;
    while let Some(item) = reader.next().await {
        let bytes = item.map_err(|e| e.to_string())?;
        received.take(&bytes, &expected);
        k += 1;
        on_data(k, received.len);
    }
    Ok(received)
}

/// Reads `reader` until it holds `expected.len()` bytes (or ends): whether they are
/// exactly `expected`, and whether the first item alone was all of them.
pub async fn read_prefix(reader: &mut ResumableStream, expected: &[u8]) -> (bool, bool) {
    let mut received = Received::new(expected.len());
    let mut first_whole = false;
    while received.len < expected.len() {
        match reader.next().await {
            Some(Ok(bytes)) => {
                if received.len == 0 {
                    first_whole = bytes.len() == expected.len();
                }
                received.take(&bytes, expected);
            }
            _ => break,
        }
    }
    (received.is_exact(), first_whole && received.is_exact())
}
