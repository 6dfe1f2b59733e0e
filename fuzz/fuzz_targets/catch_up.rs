//! `skip::catch_up` and `skip::count_units` against a reference written from the rules
//! in the module documentation of `src/skip.rs`, on arbitrary chunk lists (valid and
//! invalid UTF-8, characters split across chunks, empty chunks), skips (negative, zero,
//! past the end, `i64::MIN` / `i64::MAX`) and units.
//!
//! The reference (`fuzz/src/reference.rs`) joins the chunks and walks them one
//! character at a time, deciding what a character is with the standard library's UTF-8
//! validation (not the engine's scanner): a valid UTF-8 sequence is one code point, a
//! four-byte one is two UTF-16 units, any other byte is one unit of its own; a UTF-16
//! cut inside a surrogate pair yields `EF BF BD` and then what follows the pair; a
//! negative skip counts from the end; a skip at or past the end gives nothing. Outputs
//! must be byte-identical.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use resumable_stream::skip::{catch_up, count_units};
use resumable_stream::SkipUnit;
use resumable_stream_fuzz::ops::Unit;
use resumable_stream_fuzz::reference;

#[derive(Debug, Arbitrary)]
enum Skip {
    /// Small skips land inside the text, where the interesting cuts are.
    Small(i8),
    Any(i64),
}

#[derive(Debug, Arbitrary)]
struct Input {
    chunks: Vec<Vec<u8>>,
    skip: Skip,
    unit: Unit,
}

/// Where `x.slice(skip)` starts, for a sequence of `len` elements.
fn slice_start(len: usize, skip: i64) -> usize {
    if skip >= 0 {
        usize::try_from(skip).unwrap_or(usize::MAX).min(len)
    } else {
        len.saturating_sub(usize::try_from(skip.unsigned_abs()).unwrap_or(usize::MAX))
    }
}

fuzz_target!(|input: Input| {
    let unit = input.unit.get();
    let skip = match input.skip {
        Skip::Small(s) => i64::from(s),
        Skip::Any(s) => s,
    };
    let chunks: Vec<Bytes> = input.chunks.into_iter().map(Bytes::from).collect();
    let text = reference::join(&chunks);

    let expected = reference::catch_up(&text, skip, unit);
    let got = catch_up(&chunks, skip, unit);
    assert_eq!(
        &got[..],
        &expected[..],
        "catch_up({chunks:?}, {skip}, {unit:?})"
    );
    assert_eq!(
        count_units(&chunks, unit),
        reference::count(&text, unit),
        "count_units({chunks:?}, {unit:?})"
    );
    // Chunk boundaries never matter: the joined text gives the same answer.
    assert_eq!(catch_up(&[Bytes::from(text.clone())], skip, unit), got);
    // A skip of 0 is everything; skipping everything is nothing.
    if skip == 0 {
        assert_eq!(&got[..], &text[..]);
    }
    // On valid UTF-8 the rules are JavaScript's `slice` (then UTF-8 encoding, lone
    // surrogates becoming U+FFFD) and Python's `str` slicing: check the reference too.
    if let Ok(valid) = std::str::from_utf8(&text) {
        let oracle = match unit {
            SkipUnit::Utf16 => {
                let units: Vec<u16> = valid.encode_utf16().collect();
                String::from_utf16_lossy(&units[slice_start(units.len(), skip)..]).into_bytes()
            }
            SkipUnit::CodePoint => {
                let chars: Vec<char> = valid.chars().collect();
                chars[slice_start(chars.len(), skip)..]
                    .iter()
                    .collect::<String>()
                    .into_bytes()
            }
            SkipUnit::Byte => text[slice_start(text.len(), skip)..].to_vec(),
            other => panic!("the target never asks for the unit {other:?}"),
        };
        assert_eq!(&got[..], &oracle[..], "JavaScript / Python slicing");
    }
    let total = reference::count(&text, unit);
    if total <= i64::MAX as u64 {
        assert!(catch_up(&chunks, total as i64, unit).is_empty());
    }
});
