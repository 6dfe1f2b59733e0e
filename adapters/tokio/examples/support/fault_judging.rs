//! How the fault suite judges its readers: what each fault promises ([`Promise`]),
//! how each reader ended ([`judge`], [`Ending`]), and one fault's results as a table
//! row and as JSON ([`Row`]).

use super::{HANG_BOUND, HEARTBEAT, LIVENESS_SLACK};
use futures_util::StreamExt;
use resumable_stream::Error;
use resumable_stream_tokio::ResumableStream;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a fault promises of every one of its readers.
#[derive(Clone, Copy)]
pub enum Promise {
    /// The whole stream, byte-exact, then its end; no error.
    ByteExact,
    /// `Error::ProducerGone` after a prefix of the stream, at most this long after the
    /// reader's producer was killed.
    ProducerGoneWithin(Duration),
    /// Durable mode: exactly what reached the stream's log, then `Error::ProducerGone`,
    /// at most this long after the reader's producer was killed.
    LogThenGoneWithin(Duration),
    /// The whole stream byte-exact, or a prefix of it and then a typed error, never
    /// wrong data and never a hang (what is lost when Redis loses its data).
    ExactOrTypedError,
}

impl Promise {
    fn describe(self) -> String {
        match self {
            Promise::ByteExact => "every reader byte-exact".to_owned(),
            Promise::ProducerGoneWithin(bound) => format!(
                "every resumer `ProducerGone` within {:.1} s of the kill (3 × {} ms heartbeat + {:.1} s slack)",
                bound.as_secs_f64(),
                HEARTBEAT.as_millis(),
                LIVENESS_SLACK.as_secs_f64()
            ),
            Promise::LogThenGoneWithin(bound) => format!(
                "every resumer, attached or started after the kill, prints exactly the log, then `ProducerGone` within {:.1} s of the kill (4 × {} ms heartbeat + {:.1} s slack)",
                bound.as_secs_f64(),
                HEARTBEAT.as_millis(),
                LIVENESS_SLACK.as_secs_f64()
            ),
            Promise::ExactOrTypedError => {
                "every reader byte-exact, or a prefix then a typed error; never wrong data, never hung".to_owned()
            }
        }
    }

    fn kept_by(self, ending: &Ending) -> bool {
        match (self, &ending.end) {
            (Promise::ByteExact, End::Exact) => true,
            (
                Promise::ProducerGoneWithin(bound),
                End::Error {
                    error,
                    prefix: true,
                },
            ) => {
                matches!(error, Error::ProducerGone { .. })
                    && ending.after_kill().is_some_and(|after| after <= bound)
            }
            (Promise::LogThenGoneWithin(bound), End::Error { error, .. }) => {
                matches!(error, Error::ProducerGone { .. })
                    && ending.logged.as_ref() == Some(&ending.got)
                    && ending.after_kill().is_some_and(|after| after <= bound)
            }
            (Promise::ExactOrTypedError, End::Exact | End::Error { prefix: true, .. }) => true,
            _ => false,
        }
    }
}

/// How one reader ended.
pub enum End {
    /// The whole stream, byte-exact, then its end.
    Exact,
    /// A typed error; `prefix` says whether what came before it is a prefix of the stream.
    Error { error: Error, prefix: bool },
    /// The end, after bytes that are not the stream.
    Wrong,
    /// No end within [`HANG_BOUND`].
    Hung,
}

/// How one reader ended, when, and (killed producers) when its producer was killed.
pub struct Ending {
    pub end: End,
    pub at: Instant,
    pub killed_at: Option<Instant>,
    /// What it read.
    pub got: Vec<u8>,
    /// Durable mode: what its stream's log held once the faults were over.
    pub logged: Option<Vec<u8>>,
}

impl Ending {
    pub fn after_kill(&self) -> Option<Duration> {
        Some(self.at.saturating_duration_since(self.killed_at?))
    }
}

/// Reads `reader` to its end and says how it ended against `expected`.
pub async fn judge(mut reader: ResumableStream, expected: Vec<u8>) -> Ending {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + HANG_BOUND;
    let end = loop {
        match tokio::time::timeout_at(deadline, reader.next()).await {
            Err(_) => break End::Hung,
            Ok(Some(Ok(chunk))) => got.extend_from_slice(&chunk),
            Ok(Some(Err(error))) => {
                let prefix = expected.starts_with(&got);
                break End::Error { error, prefix };
            }
            Ok(None) if got == expected => break End::Exact,
            Ok(None) => break End::Wrong,
        }
    };
    Ending {
        end,
        at: Instant::now(),
        killed_at: None,
        got,
        logged: None,
    }
}

/// One fault's results: how its readers ended, and whether its promise held for each.
pub struct Row {
    pub fault: &'static str,
    promise: Promise,
    readers: usize,
    exact: usize,
    typed_error: usize,
    wrong: usize,
    hung: usize,
    errors: BTreeMap<String, usize>,
    after_kill: Vec<Duration>,
    kept: usize,
    time: Duration,
}

impl Row {
    pub fn new(fault: &'static str, promise: Promise, endings: &[Ending], time: Duration) -> Row {
        let mut row = Row {
            fault,
            promise,
            readers: endings.len(),
            exact: 0,
            typed_error: 0,
            wrong: 0,
            hung: 0,
            errors: BTreeMap::new(),
            after_kill: endings.iter().filter_map(Ending::after_kill).collect(),
            kept: endings.iter().filter(|e| promise.kept_by(e)).count(),
            time,
        };
        for ending in endings {
            match &ending.end {
                End::Exact => row.exact += 1,
                End::Error { error, prefix } => {
                    *row.errors.entry(kind(error)).or_default() += 1;
                    if *prefix {
                        row.typed_error += 1;
                    } else {
                        row.wrong += 1;
                    }
                }
                End::Wrong => row.wrong += 1,
                End::Hung => row.hung += 1,
            }
        }
        row
    }

    /// Every reader kept the promise (a scenario with no reader did not run).
    pub fn held(&self) -> bool {
        self.readers > 0 && self.kept == self.readers
    }

    pub const HEADER: &'static str = "| fault | promise | readers | byte-exact | typed error | wrong data | hung | errors seen | error after kill (min–max) | promise held | time |\n|---|---|---|---|---|---|---|---|---|---|---|";

    pub fn markdown(&self) -> String {
        let errors = self
            .errors
            .iter()
            .map(|(kind, count)| format!("{kind} ×{count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let after_kill = match (self.after_kill.iter().min(), self.after_kill.iter().max()) {
            (Some(min), Some(max)) => {
                format!("{:.2}–{:.2} s", min.as_secs_f64(), max.as_secs_f64())
            }
            _ => "-".to_owned(),
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}/{}) | {:.1} s |",
            self.fault,
            self.promise.describe(),
            self.readers,
            self.exact,
            self.typed_error,
            self.wrong,
            self.hung,
            if errors.is_empty() { "-" } else { &errors },
            after_kill,
            if self.held() { "yes" } else { "NO" },
            self.kept,
            self.readers,
            self.time.as_secs_f64()
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let bound_ms = match self.promise {
            Promise::ByteExact | Promise::ExactOrTypedError => None,
            Promise::ProducerGoneWithin(bound) | Promise::LogThenGoneWithin(bound) => {
                Some(bound.as_millis())
            }
        };
        let after_kill_ms: Vec<f64> = self
            .after_kill
            .iter()
            .map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)
            .collect();
        json!({
            "fault": self.fault,
            "promise": self.promise.describe(),
            "readers": self.readers,
            "byte_exact": self.exact,
            "typed_error": self.typed_error,
            "wrong_data": self.wrong,
            "hung": self.hung,
            "errors": self.errors,
            "bound_ms": bound_ms,
            "error_after_kill_ms": after_kill_ms,
            "promise_kept_by": self.kept,
            "promise_held": self.held(),
            "seconds": (self.time.as_secs_f64() * 10.0).round() / 10.0,
        })
    }
}

/// An error's variant name, for the table.
fn kind(error: &Error) -> String {
    format!("{error:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("error")
        .to_owned()
}
