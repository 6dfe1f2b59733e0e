//! The v1 wire format, byte for byte what the npm and PyPI libraries write: key and
//! channel names, the sentinel's values, the end-of-stream message, the resume-request
//! JSON, and listener ids. docs/protocol.md describes each.

use super::ext::Extension;
use crate::skip::SkipUnit;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// The end-of-stream message published on a chunk channel: 56 bytes, exactly.
pub const DONE_MESSAGE: &[u8] = b"\n\n\nDONE_SENTINEL_hasdfasudfyge374%$%^$EDSATRTYFtydryrte\n";

/// The sentinel value of a finished stream.
pub const DONE_VALUE: &[u8] = b"DONE";

/// The text of the error Redis answers to `INCR` on a key that holds `"DONE"`.
pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

/// The longest listener id this engine accepts in a request (a v1 id is a 36-byte
/// UUID); longer ids are dropped as malformed rather than turned into channel names.
pub const MAX_LISTENER_ID_LEN: usize = 256;

/// Key and channel names for one key prefix, built once per engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `{prefix}:rs:`
    base: String,
}

/// The names of one stream, built once and shared by every command about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamNames {
    /// `{prefix}:rs:sentinel:{id}`
    pub sentinel: Bytes,
    /// `{prefix}:rs:request:{id}`
    pub request_channel: Bytes,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Names {
        Names {
            base: format!("{prefix}:rs:"),
        }
    }

    /// The key prefix these names are under.
    pub fn prefix(&self) -> &str {
        &self.base[..self.base.len() - ":rs:".len()]
    }

    fn join(&self, kind: &str, id: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.base.len() + kind.len() + 1 + id.len());
        out.put_slice(self.base.as_bytes());
        out.put_slice(kind.as_bytes());
        out.put_u8(b':');
        out.put_slice(id);
        out.freeze()
    }

    /// The names of stream `stream_id`.
    ///
    /// ```
    /// use resumable_stream::wire::Names;
    /// let names = Names::new("resumable-stream").stream("abc");
    /// assert_eq!(names.sentinel, "resumable-stream:rs:sentinel:abc");
    /// assert_eq!(names.request_channel, "resumable-stream:rs:request:abc");
    /// ```
    pub fn stream(&self, stream_id: &str) -> StreamNames {
        StreamNames {
            sentinel: self.join("sentinel", stream_id.as_bytes()),
            request_channel: self.join("request", stream_id.as_bytes()),
        }
    }

    /// `{prefix}:rs:active:{owner}`: the key holding the id of `owner`'s active stream
    /// (an extension of ours: see [`Engine::set_active_stream`](crate::Engine::set_active_stream)).
    ///
    /// ```
    /// use resumable_stream::wire::Names;
    /// assert_eq!(Names::new("resumable-stream").active("chat-7"), "resumable-stream:rs:active:chat-7");
    /// ```
    pub fn active(&self, owner: &str) -> Bytes {
        self.join("active", owner.as_bytes())
    }

    /// `{prefix}:rs:log:{id}`: durable mode's log of stream `stream_id`, a Redis Stream
    /// ([`log`](super::log)).
    ///
    /// ```
    /// use resumable_stream::wire::Names;
    /// assert_eq!(Names::new("p").log("abc"), "p:rs:log:abc");
    /// ```
    pub fn log(&self, stream_id: &str) -> Bytes {
        self.join("log", stream_id.as_bytes())
    }

    /// `{prefix}:rs:lease:{id}`: durable mode's producer lease of stream `stream_id`,
    /// refreshed while its producer lives.
    pub fn lease(&self, stream_id: &str) -> Bytes {
        self.join("lease", stream_id.as_bytes())
    }

    /// `{prefix}:rs:chunk:{listener_id}`, the channel a resumer listens on.
    pub fn chunk_channel(&self, listener_id: &str) -> Bytes {
        self.join("chunk", listener_id.as_bytes())
    }
}

/// A resume request, as published on a stream's request channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The resumer's listener id; its chunk channel is named after it.
    pub listener_id: String,
    /// How much of the stream the resumer already has; `None` (absent or `null`) means
    /// nothing. Negative values are possible from v1 peers.
    pub skip: Option<i64>,
    /// The unit of `skip`, when the resumer names one (our extension field
    /// `skipUnit`; v1 peers never send it and ignore it).
    pub unit: Option<SkipUnit>,
    /// The extension fields of a resumer of ours; `None` from a v1 peer.
    pub ext: Option<Extension>,
}

/// Why a request message was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not a JSON object.
    NotJson(String),
    /// `listenerId` is missing or not a string.
    MissingListenerId,
    /// `listenerId` is empty, too long or holds a control character.
    BadListenerId,
    /// `skipCharacters` is present but not a number or null.
    BadSkip,
    /// `skipUnit` is present but not one of the known names.
    BadUnit,
    /// The extension fields are malformed (`token` missing or not hex, `fromChunk` not
    /// a non-negative integer, `cancel` not a boolean).
    BadExtension,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotJson(e) => write!(f, "request is not a JSON object: {e}"),
            RequestError::MissingListenerId => f.write_str("request has no string listenerId"),
            RequestError::BadListenerId => {
                f.write_str("request's listenerId is empty, too long or has control characters")
            }
            RequestError::BadSkip => f.write_str("request's skipCharacters is not a number"),
            RequestError::BadUnit => {
                f.write_str("request's skipUnit is not utf16, codepoint or byte")
            }
            RequestError::BadExtension => f.write_str("request's extension fields are malformed"),
        }
    }
}

impl std::error::Error for RequestError {}

impl ResumeRequest {
    /// Decodes a request message. Extra fields are ignored, as the deployed producers do.
    ///
    /// A fractional skip is truncated toward zero, as JavaScript's `slice` does.
    ///
    /// ```
    /// use resumable_stream::wire::ResumeRequest;
    /// let request = ResumeRequest::decode(br#"{"listenerId": "l1", "skipCharacters": 5}"#).unwrap();
    /// assert_eq!(request.listener_id, "l1");
    /// assert_eq!(request.skip, Some(5));
    /// assert!(ResumeRequest::decode(br#"{"listenerId": 7}"#).is_err());
    /// ```
    pub fn decode(message: &[u8]) -> Result<ResumeRequest, RequestError> {
        let value: serde_json::Value =
            serde_json::from_slice(message).map_err(|e| RequestError::NotJson(e.to_string()))?;
        let object = value
            .as_object()
            .ok_or_else(|| RequestError::NotJson("not an object".to_owned()))?;
        let listener_id = object
            .get("listenerId")
            .and_then(|v| v.as_str())
            .ok_or(RequestError::MissingListenerId)?;
        if listener_id.is_empty()
            || listener_id.len() > MAX_LISTENER_ID_LEN
            || listener_id.chars().any(char::is_control)
        {
            return Err(RequestError::BadListenerId);
        }
        let skip = match object.get("skipCharacters") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => Some(match n.as_i64() {
                Some(i) => i,
                // Saturating, truncating toward zero (`as` does both for f64).
                None => n.as_f64().map_or(0, |f| f as i64),
            }),
            Some(_) => return Err(RequestError::BadSkip),
        };
        let unit = match object.get("skipUnit") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => {
                Some(SkipUnit::parse(s).ok_or(RequestError::BadUnit)?)
            }
            Some(_) => return Err(RequestError::BadUnit),
        };
        let ext = Extension::decode(object)?;
        Ok(ResumeRequest {
            listener_id: listener_id.to_owned(),
            skip,
            unit,
            ext,
        })
    }

    /// Encodes the request as the TypeScript library does
    /// (`JSON.stringify({listenerId, skipCharacters})`), with `skipUnit` added only when
    /// a unit is named.
    ///
    /// ```
    /// use resumable_stream::wire::ResumeRequest;
    /// let request = ResumeRequest { listener_id: "l1".into(), skip: Some(3), unit: None, ext: None };
    /// assert_eq!(request.encode(), r#"{"listenerId":"l1","skipCharacters":3}"#);
    /// let request = ResumeRequest { listener_id: "l1".into(), skip: None, unit: None, ext: None };
    /// assert_eq!(request.encode(), r#"{"listenerId":"l1"}"#);
    /// ```
    pub fn encode(&self) -> Bytes {
        let mut out = String::with_capacity(64 + self.listener_id.len());
        out.push_str("{\"listenerId\":");
        out.push_str(&serde_json::Value::from(self.listener_id.as_str()).to_string());
        if let Some(skip) = self.skip {
            out.push_str(",\"skipCharacters\":");
            out.push_str(&skip.to_string());
        }
        if let Some(unit) = self.unit {
            out.push_str(",\"skipUnit\":\"");
            out.push_str(unit.as_str());
            out.push('"');
        }
        if let Some(ext) = &self.ext {
            ext.encode_into(&mut out);
        }
        out.push('}');
        Bytes::from(out)
    }
}

/// What a sentinel value says about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sentinel {
    /// `"DONE"`.
    Done,
    /// An integer (`"1"` or an INCR count): a producer started.
    Active,
}

impl Sentinel {
    /// Reads a sentinel value; `None` for anything no deployed library writes.
    pub fn parse(value: &[u8]) -> Option<Sentinel> {
        if value == DONE_VALUE {
            return Some(Sentinel::Done);
        }
        let text = std::str::from_utf8(value).ok()?;
        text.parse::<i64>().ok().map(|_| Sentinel::Active)
    }
}

/// Makes a random UUID v4 string from a seeded generator (splitmix64), as listener ids.
#[derive(Debug, Clone)]
pub struct ListenerIds {
    state: u64,
}

impl ListenerIds {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> ListenerIds {
        ListenerIds { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next id, formatted `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
    ///
    /// ```
    /// use resumable_stream::wire::ListenerIds;
    /// let id = ListenerIds::new(1).next_id();
    /// assert_eq!(id.len(), 36);
    /// assert_eq!(&id[14..15], "4");
    /// ```
    pub fn next_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0F) | 0x40;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        let mut out = String::with_capacity(36);
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 0x0F), 16).unwrap_or('0'));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_message_is_the_deployed_56_bytes() {
        assert_eq!(DONE_MESSAGE.len(), 56);
        assert!(DONE_MESSAGE.starts_with(b"\n\n\nDONE_SENTINEL_"));
    }

    #[test]
    fn requests_from_node_and_python_decode() {
        // JSON.stringify and Python's json.dumps spellings.
        let node = ResumeRequest::decode(br#"{"listenerId":"a-b","skipCharacters":12}"#).unwrap();
        let python =
            ResumeRequest::decode(br#"{"listenerId": "a-b", "skipCharacters": null}"#).unwrap();
        assert_eq!(node.skip, Some(12));
        assert_eq!(python.skip, None);
        assert_eq!(python.listener_id, "a-b");
        let fractional =
            ResumeRequest::decode(br#"{"listenerId":"x","skipCharacters":2.9}"#).unwrap();
        assert_eq!(fractional.skip, Some(2));
        let huge = ResumeRequest::decode(br#"{"listenerId":"x","skipCharacters":1e300}"#).unwrap();
        assert_eq!(huge.skip, Some(i64::MAX));
        let extra =
            ResumeRequest::decode(br#"{"listenerId":"x","future":[1,2],"skipUnit":"byte"}"#)
                .unwrap();
        assert_eq!(extra.unit, Some(SkipUnit::Byte));
    }

    #[test]
    fn malformed_requests_are_typed_errors() {
        let cases: &[(&[u8], RequestError)] = &[
            (b"", RequestError::NotJson(String::new())),
            (b"[1,2]", RequestError::NotJson(String::new())),
            (b"\xff\xfe", RequestError::NotJson(String::new())),
            (br#"{"skipCharacters":1}"#, RequestError::MissingListenerId),
            (br#"{"listenerId":null}"#, RequestError::MissingListenerId),
            (br#"{"listenerId":""}"#, RequestError::BadListenerId),
            (br#"{"listenerId":"a\nb"}"#, RequestError::BadListenerId),
            (
                br#"{"listenerId":"a","skipCharacters":"3"}"#,
                RequestError::BadSkip,
            ),
            (
                br#"{"listenerId":"a","skipCharacters":[]}"#,
                RequestError::BadSkip,
            ),
            (
                br#"{"listenerId":"a","skipUnit":"bits"}"#,
                RequestError::BadUnit,
            ),
            (br#"{"listenerId":"a","skipUnit":3}"#, RequestError::BadUnit),
        ];
        for (input, expected) in cases {
            let got = ResumeRequest::decode(input).unwrap_err();
            match (expected, &got) {
                (RequestError::NotJson(_), RequestError::NotJson(_)) => {}
                _ => assert_eq!(&got, expected, "{}", String::from_utf8_lossy(input)),
            }
        }
        let long = format!(
            r#"{{"listenerId":"{}"}}"#,
            "x".repeat(MAX_LISTENER_ID_LEN + 1)
        );
        assert_eq!(
            ResumeRequest::decode(long.as_bytes()),
            Err(RequestError::BadListenerId)
        );
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let request = ResumeRequest {
            listener_id: "quote\"and\\slash".into(),
            skip: Some(-4),
            unit: Some(SkipUnit::CodePoint),
            ext: None,
        };
        assert_eq!(ResumeRequest::decode(&request.encode()), Ok(request));
        let extended = ResumeRequest {
            listener_id: "l".into(),
            skip: None,
            unit: None,
            ext: Some(Extension {
                token: "00ff".into(),
                from_chunk: Some(7),
                cancel: true,
                seq: 3,
            }),
        };
        assert_eq!(ResumeRequest::decode(&extended.encode()), Ok(extended));
        for bad in [
            &br#"{"listenerId":"l","ext":1}"#[..],
            br#"{"listenerId":"l","ext":1,"token":"xyz"}"#,
            br#"{"listenerId":"l","ext":1,"token":"ab","fromChunk":-1}"#,
            br#"{"listenerId":"l","ext":1,"token":"ab","cancel":"yes"}"#,
        ] {
            assert_eq!(ResumeRequest::decode(bad), Err(RequestError::BadExtension));
        }
    }

    #[test]
    fn sentinel_values() {
        assert_eq!(Sentinel::parse(b"DONE"), Some(Sentinel::Done));
        assert_eq!(Sentinel::parse(b"1"), Some(Sentinel::Active));
        assert_eq!(Sentinel::parse(b"42"), Some(Sentinel::Active));
        assert_eq!(Sentinel::parse(b"done"), None);
        assert_eq!(Sentinel::parse(b"\xff"), None);
        assert_eq!(Sentinel::parse(b""), None);
    }

    #[test]
    fn listener_ids_are_distinct_uuid_v4s() {
        let mut ids = ListenerIds::new(7);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 36);
            assert_eq!(id.as_bytes()[14], b'4');
            assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        }
    }
}
