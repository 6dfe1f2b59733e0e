//! Every byte string into `ResumeRequest::decode`.
//!
//! - decoding never panics, whatever the bytes;
//! - a request that decodes re-encodes to bytes that decode to an equal request
//!   (round trip), and re-encoding that gives the same bytes (the encoding is
//!   canonical);
//! - a decoded request honours the documented limits: a listener id that is non-empty,
//!   at most `MAX_LISTENER_ID_LEN` bytes and free of control characters (it becomes a
//!   channel name), an extension token that is non-empty hex;
//! - the encoding is byte for byte `JSON.stringify({listenerId, skipCharacters})`, then
//!   `skipUnit` and the extension fields (docs/protocol-extensions.md) when present:
//!   `ext`, `token`, `fromChunk`, `cancel`, and `seq` unless it is 0.
//!
//! The corpus holds valid v1 (npm and Python spellings) and extended requests
//! (`valid-*`), so that replaying it reaches the round-trip assertions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resumable_stream::wire::{ResumeRequest, MAX_LISTENER_ID_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ResumeRequest::decode(data) else {
        return;
    };
    assert!(!request.listener_id.is_empty());
    assert!(request.listener_id.len() <= MAX_LISTENER_ID_LEN);
    assert!(!request.listener_id.chars().any(char::is_control));

    let encoded = request.encode();
    let again = ResumeRequest::decode(&encoded)
        .unwrap_or_else(|e| panic!("{encoded:?} (from {request:?}) does not decode: {e}"));
    assert_eq!(again, request, "round trip through {encoded:?}");
    assert_eq!(again.encode(), encoded, "the encoding is canonical");

    // Byte for byte what `JSON.stringify({listenerId, skipCharacters})` writes (plus
    // our `skipUnit` when a unit is named): the id has no control characters, so only
    // `"` and `\` are escaped.
    let mut expected = String::from("{\"listenerId\":\"");
    for c in request.listener_id.chars() {
        if c == '"' || c == '\\' {
            expected.push('\\');
        }
        expected.push(c);
    }
    expected.push('"');
    if let Some(skip) = request.skip {
        expected.push_str(&format!(",\"skipCharacters\":{skip}"));
    }
    if let Some(unit) = request.unit {
        expected.push_str(&format!(",\"skipUnit\":\"{}\"", unit.as_str()));
    }
    if let Some(ext) = &request.ext {
        // The token is non-empty hex (it is spliced into control messages).
        assert!(!ext.token.is_empty() && ext.token.bytes().all(|b| b.is_ascii_hexdigit()));
        expected.push_str(&format!(",\"ext\":1,\"token\":\"{}\"", ext.token));
        if let Some(chunk) = ext.from_chunk {
            expected.push_str(&format!(",\"fromChunk\":{chunk}"));
        }
        if ext.cancel {
            expected.push_str(",\"cancel\":true");
        }
        // `seq` 0 (the first request) is the default, left out.
        if ext.seq > 0 {
            expected.push_str(&format!(",\"seq\":{}", ext.seq));
        }
    }
    expected.push('}');
    assert_eq!(
        std::str::from_utf8(&encoded).ok(),
        Some(expected.as_str()),
        "the v1 spelling"
    );
});
