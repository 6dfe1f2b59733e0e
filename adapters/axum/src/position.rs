//! Where a reader starts, from an HTTP request: the [`StartAt`] extractor. A malformed
//! position is refused with a 400 and a one-line reason ([`PositionRejection`]), never
//! a panic and never a silent restart from the beginning (which would send a client
//! again what it already has).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use resumable_stream::Position;

/// The header a browser's `EventSource` sends when it reconnects: the `id:` of the
/// last event it received, a chunk position.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";
/// The query parameter that carries a chunk position for clients that cannot set a
/// header (`EventSource` polyfills, a link): the same value as `Last-Event-ID`.
pub const LAST_EVENT_ID_PARAM: &str = "lastEventId";
/// The query parameter that carries an offset: how many units of the stream the
/// client already has (UTF-16 code units unless the context is configured otherwise,
/// as a browser's `string.length` counts).
pub const OFFSET_PARAM: &str = "offset";
/// The largest position accepted: 2^53, the end of the integers a browser counts
/// exactly. No stream of chunks or units comes near it; a larger number is a client's
/// bug or an attack, refused rather than clamped.
pub const MAX_POSITION: u64 = 1 << 53;

/// Where a reader starts, as the request asks:
///
/// - a chunk position, [`Position::Chunk`]: the `Last-Event-ID` header (or the
///   `lastEventId` query parameter; when both are given they must agree);
/// - else an offset, [`Position::Units`]: the `offset` query parameter (0 is the
///   start);
/// - else [`Position::Start`].
///
/// A chunk position wins over an offset: a browser whose page opened
/// `/stream?offset=120` (after a reload) reconnects by itself to the same URL with
/// `Last-Event-ID`, which counts what it received since.
///
/// Refused with 400 and a one-line reason ([`PositionRejection`]): a value that is not
/// a decimal number of ASCII digits (negative, signed, empty, spaces, `1e3`), one above
/// [`MAX_POSITION`], a header that is not UTF-8, a header or parameter given twice
/// with different values, a header and `lastEventId` that disagree.
///
/// ```
/// use axum::extract::FromRequestParts;
/// use axum::http::Request;
/// use resumable_stream_axum::{Position, StartAt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = Request::get("/s?offset=12").header("last-event-id", "7").body(()).unwrap();
/// let (mut parts, ()) = request.into_parts();
/// let StartAt(position) = StartAt::from_request_parts(&mut parts, &()).await.unwrap();
/// assert_eq!(position, Position::Chunk(7));
///
/// let request = Request::get("/s?offset=-1").body(()).unwrap();
/// let (mut parts, ()) = request.into_parts();
/// let refused = StartAt::from_request_parts(&mut parts, &()).await.unwrap_err();
/// assert_eq!(refused.reason(), "offset must be a non-negative integer, not \"-1\"");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAt(pub Position);

/// Why a request's position was refused: answered as 400 Bad Request with the reason
/// as a one-line `text/plain` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRejection {
    reason: String,
}

impl PositionRejection {
    fn new(reason: impl Into<String>) -> PositionRejection {
        PositionRejection {
            reason: reason.into(),
        }
    }

    /// The reason, on one line.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for PositionRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for PositionRejection {}

impl IntoResponse for PositionRejection {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.reason).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StartAt {
    type Rejection = PositionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<StartAt, PositionRejection> {
        start_at(&parts.headers, parts.uri.query()).map(StartAt)
    }
}

impl StartAt {
    /// The position `headers` and `query` (the URI's query string, undecoded) ask
    /// for, as the extractor decides it.
    ///
    /// # Errors
    /// The [`PositionRejection`] the extractor answers with.
    pub fn parse(headers: &HeaderMap, query: Option<&str>) -> Result<StartAt, PositionRejection> {
        start_at(headers, query).map(StartAt)
    }
}

fn start_at(headers: &HeaderMap, query: Option<&str>) -> Result<Position, PositionRejection> {
    let mut header = None;
    for value in headers.get_all(LAST_EVENT_ID_HEADER) {
        let value = value
            .to_str()
            .map_err(|_| PositionRejection::new("Last-Event-ID is not UTF-8"))?;
        header = Some(agree(
            "Last-Event-ID",
            header,
            parse_number("Last-Event-ID", value)?,
        )?);
    }
    let (mut param, mut offset) = (None, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == LAST_EVENT_ID_PARAM {
            param = Some(agree(
                LAST_EVENT_ID_PARAM,
                param,
                parse_number(LAST_EVENT_ID_PARAM, &value)?,
            )?);
        } else if name == OFFSET_PARAM {
            offset = Some(agree(
                OFFSET_PARAM,
                offset,
                parse_number(OFFSET_PARAM, &value)?,
            )?);
        }
    }
    let chunk = match (header, param) {
        (Some(h), Some(p)) if h != p => {
            return Err(PositionRejection::new(format!(
                "Last-Event-ID ({h}) and {LAST_EVENT_ID_PARAM} ({p}) disagree"
            )))
        }
        (h, p) => h.or(p),
    };
    Ok(match (chunk, offset) {
        (Some(chunk), _) => Position::Chunk(chunk),
        (None, Some(0) | None) => Position::Start,
        (None, Some(units)) => Position::Units(units),
    })
}

/// A repeated field must repeat its value.
fn agree(what: &str, before: Option<u64>, now: u64) -> Result<u64, PositionRejection> {
    match before {
        Some(before) if before != now => Err(PositionRejection::new(format!(
            "{what} is given twice, as {before} and {now}"
        ))),
        _ => Ok(now),
    }
}

/// A non-negative decimal integer of ASCII digits, at most [`MAX_POSITION`].
fn parse_number(what: &str, value: &str) -> Result<u64, PositionRejection> {
    // The value is quoted in the reason: bounded and escaped, so that it stays one
    // short line.
    let shown: String = value.chars().take(32).collect();
    let malformed = || {
        PositionRejection::new(format!(
            "{what} must be a non-negative integer, not {shown:?}"
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_POSITION => Ok(n),
        _ => Err(PositionRejection::new(format!(
            "{what} is absurdly large (at most {MAX_POSITION}): {shown:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn at(header: Option<&[u8]>, query: Option<&str>) -> Result<Position, String> {
        let mut headers = HeaderMap::new();
        if let Some(value) = header {
            headers.insert(
                LAST_EVENT_ID_HEADER,
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        start_at(&headers, query).map_err(|r| r.reason)
    }

    #[test]
    fn positions() {
        assert_eq!(at(None, None), Ok(Position::Start));
        assert_eq!(at(None, Some("offset=0")), Ok(Position::Start));
        assert_eq!(at(None, Some("offset=12&x=y")), Ok(Position::Units(12)));
        assert_eq!(at(Some(b"3"), Some("offset=12")), Ok(Position::Chunk(3)));
        assert_eq!(at(Some(b"0"), None), Ok(Position::Chunk(0)));
        assert_eq!(
            at(None, Some("lastEventId=4&offset=1")),
            Ok(Position::Chunk(4))
        );
        assert_eq!(
            at(Some(b"4"), Some("lastEventId=4")),
            Ok(Position::Chunk(4))
        );
        assert_eq!(at(None, Some("offset=5&offset=5")), Ok(Position::Units(5)));
        assert_eq!(
            at(None, Some(&format!("offset={MAX_POSITION}"))),
            Ok(Position::Units(MAX_POSITION))
        );
    }

    #[test]
    fn malformed_positions_are_refused_with_a_reason() {
        let refused: [(Option<&[u8]>, Option<&str>); 14] = [
            (Some(b"abc"), None),
            (Some(b"-1"), None),
            (Some(b"+1"), None),
            (Some(b" 1"), None),
            (Some(b""), None),
            (Some(b"99999999999999999999999"), None),
            (Some(b"\xFF"), None),
            (None, Some("offset=-3")),
            (None, Some("offset=1e3")),
            (None, Some("offset=")),
            (None, Some("offset=9007199254740993")),
            (None, Some("offset=1&offset=2")),
            (Some(b"1"), Some("lastEventId=2")),
            (None, Some("lastEventId=x")),
        ];
        for (header, query) in refused {
            let reason = at(header, query).expect_err("refused");
            assert!(!reason.contains('\n') && !reason.is_empty(), "{reason:?}");
            println!("{header:?} {query:?}: {reason}");
        }
    }
}
