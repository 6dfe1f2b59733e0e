//! Our extensions of the wire, invisible to v1 peers (docs/protocol.md): the fields a
//! resumer of ours adds to its request, and what a producer of ours sends such a
//! listener: control messages, the answer (hello and catch-up in one message), and
//! live chunks framed with their index.

use super::v1::RequestError;
use bytes::{BufMut, Bytes, BytesMut};

/// What a resumer of ours adds to its request (docs/protocol.md, the extensions).
/// A v1 producer ignores every one of these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The prefix that marks this listener's control messages (`"token"`), random per
    /// listener, so that no content can be mistaken for one.
    pub token: String,
    /// Resume at this chunk index instead of at a character offset (`"fromChunk"`).
    pub from_chunk: Option<u64>,
    /// Not a resume: stop the stream (`"cancel": true`).
    pub cancel: bool,
    /// Numbers a listener's successive requests (`"seq"`); the producer's hello echoes
    /// it, so that a listener that asked twice knows which answer is the last.
    pub seq: u64,
}

/// The version of the extension protocol this crate speaks (`"ext": 1`).
pub const EXTENSION_VERSION: u64 = 1;

impl Extension {
    /// The extension fields of a request object: `None` without `"ext"` (a v1 peer).
    pub(super) fn decode(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Extension>, RequestError> {
        if matches!(object.get("ext"), None | Some(serde_json::Value::Null)) {
            return Ok(None);
        }
        let token = object
            .get("token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(RequestError::BadExtension)?;
        let from_chunk = match object.get("fromChunk") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or(RequestError::BadExtension)?),
        };
        let cancel = match object.get("cancel") {
            None | Some(serde_json::Value::Null) => false,
            Some(v) => v.as_bool().ok_or(RequestError::BadExtension)?,
        };
        let seq = match object.get("seq") {
            None | Some(serde_json::Value::Null) => 0,
            Some(v) => v.as_u64().ok_or(RequestError::BadExtension)?,
        };
        Ok(Some(Extension {
            token: token.to_owned(),
            from_chunk,
            cancel,
            seq,
        }))
    }

    /// Appends the extension fields to a request's JSON (after its v1 fields).
    pub(super) fn encode_into(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            ",\"ext\":{EXTENSION_VERSION},\"token\":\"{}\"",
            self.token
        );
        if let Some(chunk) = self.from_chunk {
            let _ = write!(out, ",\"fromChunk\":{chunk}");
        }
        if self.cancel {
            out.push_str(",\"cancel\":true");
        }
        if self.seq > 0 {
            let _ = write!(out, ",\"seq\":{}", self.seq);
        }
    }
}

/// What a producer of ours sends an extended listener, after the control mark and
/// the listener's token: a control message (JSON), the answer to its request (the hello
/// and the catch-up in one message), or a live chunk framed with its index, so that a
/// listener can tell a lost or repeated message from the next one.
///
/// On the wire, after [`CONTROL_MARK`], the token and `:`:
/// - `{"t":"hello",...}`, a newline, then the catch-up bytes: the answer;
/// - `{...}`: any other [`Control`] message;
/// - `#K:` then bytes: live chunk `K` (0-based).
///
/// ```
/// use bytes::Bytes;
/// use resumable_stream::wire::{Incoming, Control};
/// let framed = Incoming::encode_chunk("9f", 7, b"hello");
/// match Incoming::decode(&framed, "9f") {
///     Some(Ok(Incoming::Chunk { index: 7, data })) => assert_eq!(data, "hello"),
///     other => panic!("{other:?}"),
/// }
/// let answer = Incoming::encode_answer("9f", 3, 2000, 1, b"the stream so far");
/// match Incoming::decode(&answer, "9f") {
///     Some(Ok(Incoming::Answer { next: 3, seq: 1, catch_up, .. })) => {
///         assert_eq!(catch_up, "the stream so far")
///     }
///     other => panic!("{other:?}"),
/// }
/// let hb = Control::Heartbeat.encode("9f");
/// assert!(matches!(Incoming::decode(&hb, "9f"), Some(Ok(Incoming::Control(Control::Heartbeat)))));
/// // Content of a v1 producer is not for the extension.
/// assert!(Incoming::decode(&Bytes::from("hello"), "9f").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A control message other than the hello.
    Control(Control),
    /// The answer to a request: the producer speaks the extension protocol, and here
    /// is the stream from the resume position up to chunk `next`.
    Answer {
        /// The index of the first live chunk after the catch-up.
        next: u64,
        /// The producer's heartbeat interval in milliseconds.
        heartbeat_ms: u64,
        /// The `seq` of the request this answers.
        seq: u64,
        /// The catch-up bytes (possibly empty).
        catch_up: Bytes,
    },
    /// One live chunk.
    Chunk {
        /// The chunk's index in the stream, from 0.
        index: u64,
        /// The chunk's bytes.
        data: Bytes,
    },
}

impl Incoming {
    /// The answer to a request with `seq`, for the listener with `token`: the hello
    /// (the producer speaks the extension, the next live chunk is `next`, it speaks at
    /// least every `heartbeat_ms`), then the catch-up, in one message.
    pub fn encode_answer(
        token: &str,
        next: u64,
        heartbeat_ms: u64,
        seq: u64,
        catch_up: &[u8],
    ) -> Bytes {
        let hello = Control::Hello {
            next,
            heartbeat_ms,
            seq,
        }
        .encode(token);
        let mut out = BytesMut::with_capacity(hello.len() + 1 + catch_up.len());
        out.put_slice(&hello);
        out.put_u8(b'\n');
        out.put_slice(catch_up);
        out.freeze()
    }

    /// Frames live chunk `index` for the listener with `token`.
    pub fn encode_chunk(token: &str, index: u64, data: &[u8]) -> Bytes {
        frame_chunk(token, index, data)
    }

    /// Decodes `message` if it is for `token` (`None`: content of a v1 producer, or a
    /// message for another token); `Some(Err(()))` for one that does not parse.
    pub fn decode(message: &Bytes, token: &str) -> Option<Result<Incoming, ()>> {
        let rest = message.strip_prefix(CONTROL_MARK)?;
        let rest = rest.strip_prefix(token.as_bytes())?;
        let body = rest.strip_prefix(b":")?;
        let Some(framed) = body.strip_prefix(b"#") else {
            // JSON never holds a raw newline: the first one ends the hello.
            let (json, catch_up) = match body.iter().position(|&b| b == b'\n') {
                Some(at) => (&body[..at], Some(message.len() - body.len() + at + 1)),
                None => (body, None),
            };
            return Some(match (Control::parse(json), catch_up) {
                (
                    Ok(Control::Hello {
                        next,
                        heartbeat_ms,
                        seq,
                    }),
                    Some(start),
                ) => Ok(Incoming::Answer {
                    next,
                    heartbeat_ms,
                    seq,
                    catch_up: message.slice(start..),
                }),
                // A hello always carries its catch-up; nothing else has one.
                (Ok(Control::Hello { .. }), None) | (Ok(_), Some(_)) | (Err(()), _) => Err(()),
                (Ok(control), None) => Ok(Incoming::Control(control)),
            });
        };
        let Some(colon) = framed.iter().position(|&b| b == b':') else {
            return Some(Err(()));
        };
        let digits = &framed[..colon];
        if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
            return Some(Err(()));
        }
        let Some(index) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            return Some(Err(()));
        };
        let start = message.len() - framed.len() + colon + 1;
        Some(Ok(Incoming::Chunk {
            index,
            data: message.slice(start..),
        }))
    }
}

/// `CONTROL_MARK`, `token`, `:#`, `index`, `:`, then `data`.
fn frame_chunk(token: &str, index: u64, data: &[u8]) -> Bytes {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = index;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let number = &digits[at..];
    let mut out =
        BytesMut::with_capacity(CONTROL_MARK.len() + token.len() + 3 + number.len() + data.len());
    out.put_slice(CONTROL_MARK);
    out.put_slice(token.as_bytes());
    out.put_u8(b':');
    out.put_u8(b'#');
    out.put_slice(number);
    out.put_u8(b':');
    out.put_slice(data);
    out.freeze()
}

/// The start of every control message: `\x01rsx:` then the listener's token, then `:`.
pub const CONTROL_MARK: &[u8] = b"\x01rsx:";

/// A control message from a producer of ours to a listener that announced the
/// extension protocol. On the wire: [`CONTROL_MARK`], the listener's token, `:`, JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The first message to an extended listener: the producer speaks the extension
    /// protocol; `next` is the index the next live chunk will have (the catch-up that
    /// follows holds the chunks before it); `heartbeat_ms` is how often the producer
    /// speaks when idle.
    Hello {
        /// Index of the next live chunk.
        next: u64,
        /// The producer's heartbeat interval in milliseconds.
        heartbeat_ms: u64,
        /// The `seq` of the request this answers.
        seq: u64,
    },
    /// The producer is alive; nothing else to say.
    Heartbeat,
    /// The stream ended cleanly after chunk `next - 1`: an extended listener's end
    /// message, which says how many chunks it should have had.
    End {
        /// The number of chunks the stream had.
        next: u64,
    },
    /// The stream ended with an error; nothing follows.
    Error {
        /// What went wrong.
        kind: ErrorKind,
        /// Human-readable detail.
        message: String,
        /// For `source`: the number of chunks the stream had, so that a listener that
        /// has fewer asks for them before it takes the error.
        next: Option<u64>,
    },
    /// The stream was cancelled; nothing follows.
    Cancelled {
        /// To a listener: the number of chunks the stream had, so that one that has
        /// fewer asks for them first. `None` in the answer to a cancel.
        next: Option<u64>,
    },
}

/// The kind of a [`Control::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `source`: the producer's source failed; this ends the stream.
    Source,
    /// `truncated`: the data asked for is no longer buffered.
    Truncated,
    /// `lost`: a message to this listener could not be published; it should ask again
    /// from what it has.
    Lost,
    /// A kind this version does not know, as sent.
    Other(String),
}

impl ErrorKind {
    /// The kind's name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::Source => "source",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Lost => "lost",
            ErrorKind::Other(kind) => kind,
        }
    }

    /// The kind named `name`.
    ///
    /// ```
    /// use resumable_stream::wire::ErrorKind;
    /// assert_eq!(ErrorKind::parse("lost"), ErrorKind::Lost);
    /// assert_eq!(ErrorKind::parse("x").as_str(), "x");
    /// ```
    pub fn parse(name: &str) -> ErrorKind {
        match name {
            "source" => ErrorKind::Source,
            "truncated" => ErrorKind::Truncated,
            "lost" => ErrorKind::Lost,
            other => ErrorKind::Other(other.to_owned()),
        }
    }
}

impl Control {
    /// Encodes for the listener with `token`.
    pub fn encode(&self, token: &str) -> Bytes {
        let body = match self {
            Control::Hello {
                next,
                heartbeat_ms,
                seq,
            } => format!(
                r#"{{"t":"hello","v":{EXTENSION_VERSION},"next":{next},"hb":{heartbeat_ms},"seq":{seq}}}"#
            ),
            Control::Heartbeat => r#"{"t":"hb"}"#.to_owned(),
            Control::End { next } => format!(r#"{{"t":"end","next":{next}}}"#),
            Control::Error {
                kind,
                message,
                next: None,
            } => serde_json::json!({"t": "error", "kind": kind.as_str(), "message": message})
                .to_string(),
            Control::Error {
                kind,
                message,
                next: Some(next),
            } => serde_json::json!({"t": "error", "kind": kind.as_str(), "message": message, "next": next})
                .to_string(),
            Control::Cancelled { next: None } => r#"{"t":"cancelled"}"#.to_owned(),
            Control::Cancelled { next: Some(next) } => {
                format!(r#"{{"t":"cancelled","next":{next}}}"#)
            }
        };
        let mut out = BytesMut::with_capacity(CONTROL_MARK.len() + token.len() + 1 + body.len());
        out.put_slice(CONTROL_MARK);
        out.put_slice(token.as_bytes());
        out.put_u8(b':');
        out.put_slice(body.as_bytes());
        out.freeze()
    }

    /// Decodes `message` if it is a control message for `token`: `None` for content,
    /// `Some(Err(()))` for a control message that does not parse.
    pub fn decode(message: &[u8], token: &str) -> Option<Result<Control, ()>> {
        let rest = message.strip_prefix(CONTROL_MARK)?;
        let rest = rest.strip_prefix(token.as_bytes())?;
        let body = rest.strip_prefix(b":")?;
        Some(Self::parse(body))
    }

    fn parse(body: &[u8]) -> Result<Control, ()> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(drop)?;
        let field = |name: &str| value.get(name);
        match field("t").and_then(|t| t.as_str()) {
            Some("hello") => Ok(Control::Hello {
                next: field("next").and_then(|v| v.as_u64()).ok_or(())?,
                heartbeat_ms: field("hb").and_then(|v| v.as_u64()).ok_or(())?,
                seq: field("seq").and_then(|v| v.as_u64()).unwrap_or(0),
            }),
            Some("hb") => Ok(Control::Heartbeat),
            Some("end") => Ok(Control::End {
                next: field("next").and_then(|v| v.as_u64()).ok_or(())?,
            }),
            Some("error") => Ok(Control::Error {
                kind: ErrorKind::parse(field("kind").and_then(|v| v.as_str()).unwrap_or("unknown")),
                message: field("message")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned(),
                next: field("next").and_then(|v| v.as_u64()),
            }),
            Some("cancelled") => Ok(Control::Cancelled {
                next: field("next").and_then(|v| v.as_u64()),
            }),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_never_match_another_token() {
        let all = [
            Control::Hello {
                next: 3,
                heartbeat_ms: 2000,
                seq: 1,
            },
            Control::Heartbeat,
            Control::Error {
                kind: ErrorKind::Source,
                message: "model \"crashed\"".into(),
                next: Some(7),
            },
            Control::Error {
                kind: ErrorKind::Lost,
                message: String::new(),
                next: None,
            },
            Control::Error {
                kind: ErrorKind::Other("future".into()),
                message: String::new(),
                next: None,
            },
            Control::End { next: 4 },
            Control::Cancelled { next: None },
            Control::Cancelled { next: Some(3) },
        ];
        for control in all {
            let wire = control.encode("abcd");
            assert_eq!(Control::decode(&wire, "abcd"), Some(Ok(control)));
            assert_eq!(Control::decode(&wire, "abce"), None);
        }
        assert_eq!(Control::decode(b"plain content", "abcd"), None);
        assert_eq!(
            Control::decode(b"\x01rsx:abcd:{nope", "abcd"),
            Some(Err(()))
        );
    }
}
