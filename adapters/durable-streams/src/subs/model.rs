//! A subscription's configuration as a request states it (protocol section 6.2):
//! parsing, normalization and the hash re-confirmation compares, stream paths, globs,
//! and the protocol's JSON errors.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use ring::digest;
use serde_json::{json, Value};

use crate::http::put;

/// The shortest and longest lease a subscription may ask for, and its default.
const MIN_LEASE_MS: u64 = 1_000;
const MAX_LEASE_MS: u64 = 600_000;
const DEFAULT_LEASE_MS: u64 = 30_000;
/// Bounds on what a request may name.
const MAX_PATH: usize = 1024;
const MAX_SEGMENTS: usize = 64;
const MAX_DESCRIPTION: usize = 4096;
pub(crate) const MAX_ID: usize = 256;

/// An error answer: `{"error":{"code":..,"message":..}}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({ "error": { "code": code, "message": message } }),
        }
    }

    pub(crate) fn bad(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub(crate) fn fenced() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "FENCED",
            "stale wake_id or generation",
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such subscription")
    }
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    put(&mut r, "content-type", "application/json");
    put(&mut r, "cache-control", "no-store");
    r
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        json_response(e.status, &e.body)
    }
}

/// How a subscription is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    Webhook { url: String },
    PullWake { wake_stream: String },
}

/// A subscription's configuration, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubConfig {
    pub(crate) pattern: Option<String>,
    /// Sorted, without duplicates.
    pub(crate) streams: Vec<String>,
    pub(crate) delivery: Delivery,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) description: Option<String>,
}

impl SubConfig {
    /// Parses a `PUT` body; at most `max_streams` explicit streams.
    pub(crate) fn parse(body: &[u8], max_streams: usize) -> Result<Self, ApiError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|_| ApiError::bad("the body is not JSON"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad("the body is not a JSON object"))?;
        let text = |key: &str| -> Result<Option<String>, ApiError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ApiError::bad("a field that must be a string is not")),
            }
        };
        let delivery = match text("type")?.as_deref() {
            Some("webhook") => {
                let url = obj
                    .get("webhook")
                    .and_then(|w| w.get("url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::bad("webhook.url is required"))?;
                Delivery::Webhook {
                    url: url.to_owned(),
                }
            }
            Some("pull-wake") => {
                let wake_stream =
                    text("wake_stream")?.ok_or_else(|| ApiError::bad("wake_stream is required"))?;
                Delivery::PullWake {
                    wake_stream: stream_path(&wake_stream)?,
                }
            }
            _ => return Err(ApiError::bad("type must be webhook or pull-wake")),
        };
        let pattern = text("pattern")?;
        if let Some(p) = &pattern {
            if p.is_empty() || p.len() > MAX_PATH || p.split('/').count() > MAX_SEGMENTS {
                return Err(ApiError::bad("pattern is empty or too long"));
            }
        }
        let streams = match obj.get("streams") {
            None | Some(Value::Null) => None,
            Some(v) => Some(stream_list(v, max_streams)?),
        };
        if pattern.is_none() && streams.is_none() {
            return Err(ApiError::bad("pattern or streams is required"));
        }
        let lease_ttl_ms = match obj.get("lease_ttl_ms") {
            None | Some(Value::Null) => DEFAULT_LEASE_MS,
            Some(v) => v
                .as_u64()
                .filter(|ms| (MIN_LEASE_MS..=MAX_LEASE_MS).contains(ms))
                .ok_or_else(|| ApiError::bad("lease_ttl_ms must be 1000 to 600000"))?,
        };
        let description = text("description")?;
        if description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DESCRIPTION)
        {
            return Err(ApiError::bad("description is too long"));
        }
        Ok(Self {
            pattern,
            streams: streams.unwrap_or_default(),
            delivery,
            lease_ttl_ms,
            description,
        })
    }

    /// The hash re-confirmation compares (SHA-256 of the normalized configuration).
    pub(crate) fn hash(&self) -> Vec<u8> {
        let (kind, target) = match &self.delivery {
            Delivery::Webhook { url } => ("webhook", url),
            Delivery::PullWake { wake_stream } => ("pull-wake", wake_stream),
        };
        let canonical = json!([
            kind,
            self.pattern,
            self.streams,
            target,
            self.lease_ttl_ms,
            self.description
        ]);
        digest::digest(&digest::SHA256, canonical.to_string().as_bytes())
            .as_ref()
            .to_vec()
    }

    pub(crate) fn wake_stream(&self) -> Option<&str> {
        match &self.delivery {
            Delivery::PullWake { wake_stream } => Some(wake_stream),
            Delivery::Webhook { .. } => None,
        }
    }

    /// Whether the pattern matches `path`.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.pattern.as_deref().is_some_and(|p| glob(p, path))
    }
}

/// A list of stream paths (`streams` of a create or of an explicit membership add),
/// sorted and without duplicates.
pub(crate) fn stream_list(v: &Value, max: usize) -> Result<Vec<String>, ApiError> {
    let items = v
        .as_array()
        .ok_or_else(|| ApiError::bad("streams must be an array of paths"))?;
    if items.len() > max {
        return Err(ApiError::bad("too many streams"));
    }
    let mut out = items
        .iter()
        .map(|s| {
            s.as_str()
                .ok_or_else(|| ApiError::bad("streams must be an array of paths"))
                .and_then(stream_path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// A stream-root-relative path: not empty, not too long, not under `__ds`.
pub(crate) fn stream_path(path: &str) -> Result<String, ApiError> {
    let ok = !path.is_empty()
        && path.len() <= MAX_PATH
        && !path.starts_with('/')
        && path != "__ds"
        && !path.starts_with("__ds/")
        && !path.chars().any(char::is_control);
    ok.then(|| path.to_owned())
        .ok_or_else(|| ApiError::bad("not a stream path"))
}

/// Whether `path` matches `pattern`: segments split on `/`, `**` for zero or more
/// segments, `*` within a segment for any run of characters (so a lone `*` is one
/// segment). Dynamic programming over segments: O(segments²), no backtracking.
pub(crate) fn glob(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    // ok[j]: the pattern so far matches the first j segments.
    let mut ok = vec![false; segs.len() + 1];
    ok[0] = true;
    for p in pat {
        let mut next = vec![false; segs.len() + 1];
        if p == "**" {
            let mut any = false;
            for j in 0..=segs.len() {
                any |= ok[j];
                next[j] = any;
            }
        } else {
            for j in 1..=segs.len() {
                next[j] = ok[j - 1] && segment(p.as_bytes(), segs[j - 1].as_bytes());
            }
        }
        ok = next;
    }
    ok[segs.len()]
}

/// One segment against a pattern with `*` wildcards (greedy with one backtrack point:
/// linear-ish, never exponential).
fn segment(p: &[u8], s: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == s[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("events/*", "events/abc"));
        assert!(!glob("events/*", "events/a/b"));
        assert!(!glob("events/*", "events"));
        assert!(glob("events/**", "events"));
        assert!(glob("events/**", "events/a/b"));
        assert!(glob("**/x", "a/b/x"));
        assert!(glob("**", "anything/at/all"));
        assert!(glob("ev*/a*c", "events/abbc"));
        assert!(!glob("ev*/a*c", "events/abbd"));
        assert!(!glob("events/*", "other/abc"));
        let long = "a/".repeat(60) + "b";
        assert!(!glob(&"**/".repeat(30).to_string(), &long));
    }

    #[test]
    fn configurations() {
        let c = SubConfig::parse(
            br#"{"type":"pull-wake","streams":["b","a","b"],"wake_stream":"w"}"#,
            10,
        )
        .expect("valid");
        assert_eq!(c.streams, ["a", "b"]);
        assert_eq!(c.lease_ttl_ms, DEFAULT_LEASE_MS);
        let same = SubConfig::parse(
            br#"{"type":"pull-wake","streams":["a","b"],"wake_stream":"w","lease_ttl_ms":30000}"#,
            10,
        )
        .expect("valid");
        assert_eq!(c.hash(), same.hash());
        for bad in [
            &br#"{"type":"webhook","pattern":"a/*"}"#[..],
            br#"{"type":"pull-wake","wake_stream":"w"}"#,
            br#"{"type":"pull-wake","pattern":"*","wake_stream":"__ds/x"}"#,
            br#"{"type":"pull-wake","pattern":"*","wake_stream":"w","lease_ttl_ms":10}"#,
            br#"{"type":"other","pattern":"*"}"#,
            br#"[1]"#,
            b"\xff",
        ] {
            assert!(SubConfig::parse(bad, 10).is_err());
        }
        assert!(SubConfig::parse(
            br#"{"type":"pull-wake","streams":["a","b"],"wake_stream":"w"}"#,
            1
        )
        .is_err());
    }
}
