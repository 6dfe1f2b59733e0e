//! A reference implementation of the rules in the module documentation of
//! `resumable_stream::skip`, written for clarity, not speed, and independent of the
//! engine's scanner: it joins the chunks and decides what a character is with the
//! standard library's UTF-8 validation.
//!
//! - a valid UTF-8 sequence is one code point; a four-byte one is two UTF-16 units;
//! - any other byte is one unit of its own, in every unit, and is kept verbatim;
//! - a UTF-16 cut between the halves of a surrogate pair yields U+FFFD (`EF BF BD`)
//!   and then what follows the pair;
//! - a negative skip counts from the end; a skip at or past the end gives nothing.

use resumable_stream::SkipUnit;

/// The length in bytes of the character at the start of `rest` (non-empty): that of a
/// valid UTF-8 sequence, or 1 for a byte that does not start one.
fn char_len(rest: &[u8]) -> usize {
    let window = &rest[..rest.len().min(4)];
    let valid = match std::str::from_utf8(window) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&window[..e.valid_up_to()]).unwrap_or(""),
    };
    valid.chars().next().map_or(1, char::len_utf8)
}

/// Units of the character at the start of `rest`, and its length in bytes.
fn next_char(rest: &[u8], unit: SkipUnit) -> (u64, usize) {
    match unit {
        SkipUnit::Byte => (1, 1),
        SkipUnit::CodePoint => (1, char_len(rest)),
        SkipUnit::Utf16 => {
            let len = char_len(rest);
            (if len == 4 { 2 } else { 1 }, len)
        }
        // `SkipUnit` may grow: a unit this reference does not know is the target's bug.
        other => panic!("the reference does not know the unit {other:?}"),
    }
}

/// How many units `text` holds.
pub fn count(text: &[u8], unit: SkipUnit) -> u64 {
    let mut at = 0;
    let mut units = 0;
    while at < text.len() {
        let (u, len) = next_char(&text[at..], unit);
        units += u;
        at += len;
    }
    units
}

/// `text` from `skip` units on: the catch-up a producer owes a resumer.
pub fn catch_up(text: &[u8], skip: i64, unit: SkipUnit) -> Vec<u8> {
    let start = if skip >= 0 {
        skip as u64
    } else {
        count(text, unit).saturating_sub(skip.unsigned_abs())
    };
    let mut at = 0;
    let mut units = 0u64;
    while at < text.len() {
        if units == start {
            return text[at..].to_vec();
        }
        let (u, len) = next_char(&text[at..], unit);
        at += len;
        units += u;
        if units > start {
            // The cut falls between the two halves of a surrogate pair.
            let mut out = "\u{FFFD}".as_bytes().to_vec();
            out.extend_from_slice(&text[at..]);
            return out;
        }
    }
    Vec::new()
}

/// The joined bytes of `chunks`.
pub fn join<T: AsRef<[u8]>>(chunks: &[T]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

/// Where the catch-up of `skip` units cuts `text`: the byte offset from which the
/// catch-up is `text` verbatim, and whether U+FFFD precedes it (a UTF-16 cut inside a
/// surrogate pair). `text.len()` when the skip reaches the end.
pub fn cut(text: &[u8], skip: i64, unit: SkipUnit) -> (usize, bool) {
    let start = if skip >= 0 {
        skip as u64
    } else {
        count(text, unit).saturating_sub(skip.unsigned_abs())
    };
    let mut at = 0;
    let mut units = 0u64;
    while at < text.len() {
        if units == start {
            return (at, false);
        }
        let (u, len) = next_char(&text[at..], unit);
        at += len;
        units += u;
        if units > start {
            return (at, true);
        }
    }
    (text.len(), false)
}

/// Whether a multi-byte character of `text` (as the rules decode the joined text)
/// straddles one of the byte offsets in `boundaries`.
pub fn splits_a_character(text: &[u8], boundaries: &[usize]) -> bool {
    let mut at = 0;
    while at < text.len() {
        let len = char_len(&text[at..]);
        if boundaries.iter().any(|&b| at < b && b < at + len) {
            return true;
        }
        at += len;
    }
    false
}
