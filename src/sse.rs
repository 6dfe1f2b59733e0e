//! Server-sent events framing for a resumable stream: pure functions from a stream's
//! chunks to the bytes of an `text/event-stream` body, with no I/O and no runtime, so
//! that every HTTP framework (axum, a blocking tiny_http server, anything else) frames
//! the same way. The drivers wrap them into a `Stream` or an `Iterator` of [`Bytes`]
//! that also sends keep-alives (`SseStream` and `SseIter` in
//! `resumable-stream-driver`, re-exported by each driver).
//!
//! # The events
//!
//! A body is, in order:
//!
//! 1. `retry: N` (the browser's reconnection delay in milliseconds), on its own;
//! 2. one event per chunk, carrying `id: N`, the reader's chunk position once it has
//!    the chunk (the browser sends it back as `Last-Event-ID`; resume at
//!    [`Position::Chunk(N)`](crate::Position::Chunk)). A chunk from a v1 producer,
//!    which tells no position, carries no id: resume such a stream by offset;
//! 3. comments (`: keep-alive`) whenever the producer is silent for a while, which a
//!    client ignores and which keep proxies from closing an idle connection;
//! 4. exactly one final event: `event: end` (empty data) when the stream ended, or
//!    `event: error` whose data is the error's message on one line when it failed. A
//!    connection that drops without either is a drop: resume it. (In a browser, the
//!    `error` listener also receives the `EventSource`'s own connection errors, which
//!    are plain `Event`s without `data`; ours is a `MessageEvent` with `data`.)
//!
//! # How chunk bytes are framed, exactly
//!
//! SSE carries UTF-8 text in lines: CR, LF and CRLF all end a line, a blank line ends
//! an event, and a browser replaces invalid UTF-8 with U+FFFD. So each chunk is framed
//! in one of two ways, chosen per chunk:
//!
//! - **Text** (the default event type, `message`): a chunk that is valid UTF-8 on its
//!   own and holds no CR and no NUL is sent as `data:` lines, one per line of the
//!   chunk (split on LF). The SSE parser joins them with LF, so the event's `data` is
//!   the chunk's text exactly, LFs included; encode it as UTF-8 to get the bytes.
//! - **Bytes** (`event: bytes`): any other chunk (a CR, a NUL, binary data, or a
//!   character split across two chunks, whose halves are not UTF-8 on their own) is
//!   sent as one `data:` line holding the chunk's bytes in standard base64 (RFC 4648,
//!   with padding). Decode it to get the bytes.
//!
//! No byte of content ever reaches the wire unencoded where it could end a line or an
//! event: a forged `"\r\n\r\nevent: end"` inside a chunk travels as base64. Either way
//! the client gets each chunk's bytes exactly; a client that wants text joins the
//! bytes and decodes them as one UTF-8 stream (in JavaScript, one
//! `TextDecoder` with `{stream: true}`), so that a split character is whole again.
//! [`decode_chunk`] does the decoding for a Rust client.
//!
//! In a browser:
//!
//! ```text
//! const decoder = new TextDecoder();
//! const es = new EventSource(url);
//! es.onmessage = (e) => append(e.data);
//! es.addEventListener("bytes", (e) => {
//!   const bytes = Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0));
//!   append(decoder.decode(bytes, { stream: true }));
//! });
//! es.addEventListener("end", () => es.close());
//! es.addEventListener("error", (e) => { if (e.data !== undefined) { es.close(); fail(e.data); } });
//! ```
//!
//! (Text events between bytes events that split a character cannot occur: the chunk
//! after a split starts with a continuation byte, so it is not UTF-8 on its own and is
//! sent as bytes too.)
//!
//! ```
//! use resumable_stream::sse;
//!
//! assert_eq!(sse::encode_chunk(b"two\nlines", Some(3)), "id: 3\ndata: two\ndata: lines\n\n");
//! assert_eq!(sse::encode_chunk(b"a\r\nb", Some(4)), "id: 4\nevent: bytes\ndata: YQ0KYg==\n\n");
//! assert_eq!(sse::decode_chunk("bytes", "YQ0KYg==").as_deref(), Some(&b"a\r\nb"[..]));
//! assert_eq!(sse::encode_end(), "event: end\ndata: \n\n");
//! assert_eq!(sse::encode_error("Redis\nis down"), "event: error\ndata: Redis is down\n\n");
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use std::time::Duration;

/// The event type of a chunk framed as base64 bytes.
pub const BYTES_EVENT: &str = "bytes";
/// The event type of the final event of a stream that ended.
pub const END_EVENT: &str = "end";
/// The event type of the final event of a stream that failed.
pub const ERROR_EVENT: &str = "error";
/// The `Content-Type` of an SSE body.
pub const CONTENT_TYPE: &str = "text/event-stream";
/// A keep-alive comment: ignored by every SSE client.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The event for one chunk: text `data:` lines when the chunk is clean UTF-8, else
/// `event: bytes` with base64 (see the module docs); `id` is the reader's chunk
/// position once it has this chunk, if known.
pub fn encode_chunk(data: &[u8], id: Option<u64>) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 32);
    if let Some(id) = id {
        out.put_slice(format!("id: {id}\n").as_bytes());
    }
    match std::str::from_utf8(data) {
        Ok(text) if !text.contains(['\r', '\0']) => {
            for line in text.split('\n') {
                out.put_slice(b"data: ");
                out.put_slice(line.as_bytes());
                out.put_u8(b'\n');
            }
        }
        _ => {
            out.put_slice(b"event: bytes\ndata: ");
            out.put_slice(base64_encode(data).as_bytes());
            out.put_u8(b'\n');
        }
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// The bytes of a chunk event, from its event type and its `data` as an SSE parser
/// gives them: `message` (or empty) is text, `bytes` is base64. `None` for another
/// event type, or base64 that does not decode.
pub fn decode_chunk(event_type: &str, data: &str) -> Option<Vec<u8>> {
    match event_type {
        "" | "message" => Some(data.as_bytes().to_vec()),
        BYTES_EVENT => base64_decode(data),
        _ => None,
    }
}

/// The final event of a stream that ended: `event: end`, with empty data (an event
/// without a data line is never dispatched by a browser).
pub fn encode_end() -> Bytes {
    Bytes::from_static(b"event: end\ndata: \n\n")
}

/// The final event of a stream that failed: `event: error`, its data `message` on one
/// line (CR, LF and NUL become spaces).
pub fn encode_error(message: &str) -> Bytes {
    encode_event(ERROR_EVENT, message)
}

/// An event of type `name` whose data is `data` on one line: CR, LF and NUL become
/// spaces in both (for an application's own events, such as a status line before the
/// chunks; use JSON to carry structure).
pub fn encode_event(name: &str, data: &str) -> Bytes {
    let one_line = |s: &str| s.replace(['\r', '\n', '\0'], " ");
    Bytes::from(format!(
        "event: {}\ndata: {}\n\n",
        one_line(name),
        one_line(data)
    ))
}

/// `retry: N`: how long a browser waits before it reconnects a dropped connection, in
/// whole milliseconds.
pub fn encode_retry(delay: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", delay.as_millis()))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Strict standard base64 with padding; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let groups = text.len() / 4;
    for (index, group) in text.chunks(4).enumerate() {
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for &c in &group[..4 - padding] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * padding as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length_and_byte() {
        for len in 0..70usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let encoded = base64_encode(&data);
            assert_eq!(base64_decode(&encoded), Some(data), "{encoded}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), None);
        assert_eq!(base64_decode("Zm=8"), None);
        assert_eq!(base64_decode("Zm8=Zm8="), None);
        assert_eq!(base64_decode("Z!8="), None);
    }

    #[test]
    fn clean_text_is_sent_as_lines_and_the_rest_as_bytes() {
        assert_eq!(encode_chunk(b"", None), "data: \n\n");
        assert_eq!(encode_chunk(b"\n", Some(1)), "id: 1\ndata: \ndata: \n\n");
        assert_eq!(encode_chunk(" lead".as_bytes(), None), "data:  lead\n\n");
        for dirty in [&b"a\rb"[..], b"nul\0", b"\xE2\x82", b"\xFF"] {
            let event = encode_chunk(dirty, Some(2));
            assert!(
                event.starts_with(b"id: 2\nevent: bytes\ndata: "),
                "{event:?}"
            );
        }
        assert_eq!(
            encode_event("me\nta", "{\"a\":\r1}"),
            "event: me ta\ndata: {\"a\": 1}\n\n"
        );
        assert_eq!(encode_retry(Duration::from_millis(1500)), "retry: 1500\n\n");
    }
}
