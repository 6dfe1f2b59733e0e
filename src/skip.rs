//! Counting `skipCharacters` and cutting the catch-up out of a producer's buffer.
//!
//! A resumer asks for "everything after the first N characters". What a character is
//! depends on who counts: the TypeScript library and browsers count UTF-16 code units,
//! the Python port counts code points, and binary streams count bytes. The producer
//! counts over the *joined* stream, so a character split across two chunks is still one
//! character.
//!
//! # The rules
//!
//! - Valid UTF-8 sequences count as one code point; in UTF-16, a four-byte sequence
//!   (outside the Basic Multilingual Plane, such as "🚀") counts two units.
//! - A byte that is not part of a valid UTF-8 sequence counts as one unit, in every
//!   unit, and is kept verbatim.
//! - A UTF-16 skip that ends between the two halves of a surrogate pair yields U+FFFD
//!   (`EF BF BD`) in place of the low half, then the rest: exactly the bytes the
//!   TypeScript library puts on the wire (JavaScript slices the pair, and UTF-8 encoding
//!   turns the lone half into U+FFFD).
//! - A skip of 0 gives everything; a skip past the end gives the empty catch-up.
//! - A negative skip (only a v1 peer can send one) counts from the end, as JavaScript's
//!   `slice` and Python's slicing both do.

use bytes::{Bytes, BytesMut};

/// The unit `skipCharacters` is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SkipUnit {
    /// UTF-16 code units: what JavaScript's `string.length` counts, so what a browser
    /// client counts. The TypeScript library's unit, and the default.
    #[default]
    Utf16,
    /// Unicode code points: what Python's `len(str)` counts. The Python port's unit.
    CodePoint,
    /// Bytes: for binary streams, or clients that count what they received on the wire.
    Byte,
}

impl SkipUnit {
    /// The name used on the wire (`skipUnit` in our request extension) and on command
    /// lines: `utf16`, `codepoint` or `byte`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipUnit::Utf16 => "utf16",
            SkipUnit::CodePoint => "codepoint",
            SkipUnit::Byte => "byte",
        }
    }

    /// Parses a name produced by [`as_str`](Self::as_str).
    ///
    /// ```
    /// use resumable_stream::SkipUnit;
    /// assert_eq!(SkipUnit::parse("codepoint"), Some(SkipUnit::CodePoint));
    /// assert_eq!(SkipUnit::parse("chars"), None);
    /// ```
    pub fn parse(name: &str) -> Option<SkipUnit> {
        match name {
            "utf16" => Some(SkipUnit::Utf16),
            "codepoint" => Some(SkipUnit::CodePoint),
            "byte" => Some(SkipUnit::Byte),
            _ => None,
        }
    }
}

/// U+FFFD REPLACEMENT CHARACTER in UTF-8.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Counts the units in `text` as this module's rules say.
///
/// ```
/// use resumable_stream::skip::count_units;
/// use resumable_stream::SkipUnit;
/// let text = "héllo 🚀".as_bytes();
/// assert_eq!(count_units(&[text.to_vec().into()], SkipUnit::Utf16), 8);
/// assert_eq!(count_units(&[text.to_vec().into()], SkipUnit::CodePoint), 7);
/// assert_eq!(count_units(&[text.to_vec().into()], SkipUnit::Byte), 11);
/// ```
pub fn count_units(chunks: &[Bytes], unit: SkipUnit) -> u64 {
    match unit {
        SkipUnit::Byte => chunks.iter().map(|c| c.len() as u64).sum(),
        _ => match find_cut(chunks, u64::MAX, unit) {
            CutResult::PastEnd { counted } => counted,
            // Unreachable in practice: no buffer holds u64::MAX units.
            CutResult::At(_) => u64::MAX,
        },
    }
}

/// The joined buffer from `skip` units on, as the catch-up message of a resume.
///
/// Where the cut falls on a chunk boundary and one chunk remains, the result shares that
/// chunk's memory; otherwise the remainder is copied once into one new buffer.
///
/// ```
/// use bytes::Bytes;
/// use resumable_stream::skip::catch_up;
/// use resumable_stream::SkipUnit;
/// let chunks = [Bytes::from("héllo "), Bytes::from("🚀 done")];
/// assert_eq!(catch_up(&chunks, 2, SkipUnit::Utf16), "llo 🚀 done");
/// assert_eq!(catch_up(&chunks, 7, SkipUnit::Utf16), "\u{FFFD} done");
/// assert_eq!(catch_up(&chunks, 7, SkipUnit::CodePoint), " done");
/// assert_eq!(catch_up(&chunks, 100, SkipUnit::Byte), "");
/// ```
pub fn catch_up(chunks: &[Bytes], skip: i64, unit: SkipUnit) -> Bytes {
    let start = if skip >= 0 {
        skip as u64
    } else {
        count_units(chunks, unit).saturating_sub(skip.unsigned_abs())
    };
    let cut = match unit {
        SkipUnit::Byte => byte_cut(chunks, start),
        _ => find_cut(chunks, start, unit),
    };
    match cut {
        CutResult::PastEnd { .. } => Bytes::new(),
        CutResult::At(cut) => assemble(chunks, cut),
    }
}

/// Where a skip ends: byte `offset` of chunk `chunk`, possibly inside a surrogate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    chunk: usize,
    offset: usize,
    /// The skip ended between the halves of a surrogate pair, whose bytes end at
    /// (`chunk`, `offset`): the catch-up starts with U+FFFD.
    replacement: bool,
}

enum CutResult {
    At(Cut),
    /// The buffer holds fewer units than the skip; `counted` is how many it holds.
    PastEnd {
        counted: u64,
    },
}

fn byte_cut(chunks: &[Bytes], mut skip: u64) -> CutResult {
    let mut counted = 0u64;
    for (index, chunk) in chunks.iter().enumerate() {
        let len = chunk.len() as u64;
        if skip < len {
            return CutResult::At(Cut {
                chunk: index,
                offset: skip as usize,
                replacement: false,
            });
        }
        skip -= len;
        counted += len;
    }
    CutResult::PastEnd { counted }
}

/// A read position in a list of chunks that can look a few bytes ahead across chunk
/// boundaries.
struct Scan<'a> {
    chunks: &'a [Bytes],
    chunk: usize,
    offset: usize,
}

impl Scan<'_> {
    /// Moves past exhausted and empty chunks.
    fn settle(&mut self) {
        while self.chunk < self.chunks.len() && self.offset >= self.chunks[self.chunk].len() {
            self.offset -= self.chunks[self.chunk].len();
            self.chunk += 1;
        }
    }

    fn at_end(&self) -> bool {
        self.chunk >= self.chunks.len()
    }

    /// The byte `ahead` positions after the current one, if there is one.
    fn peek(&self, ahead: usize) -> Option<u8> {
        let mut chunk = self.chunk;
        let mut offset = self.offset + ahead;
        while let Some(bytes) = self.chunks.get(chunk) {
            if offset < bytes.len() {
                return Some(bytes[offset]);
            }
            offset -= bytes.len();
            chunk += 1;
        }
        None
    }

    fn advance(&mut self, bytes: usize) {
        self.offset += bytes;
        self.settle();
    }

    /// The length in bytes of the character at the current position: that of a valid
    /// UTF-8 sequence, or 1 for a byte that does not start one.
    fn char_len(&self) -> usize {
        let in_range = |ahead: usize, lo: u8, hi: u8| matches!(self.peek(ahead), Some(b) if (lo..=hi).contains(&b));
        let Some(lead) = self.peek(0) else { return 1 };
        match lead {
            0xC2..=0xDF if in_range(1, 0x80, 0xBF) => 2,
            0xE0..=0xEF => {
                let lo = if lead == 0xE0 { 0xA0 } else { 0x80 };
                let hi = if lead == 0xED { 0x9F } else { 0xBF };
                if in_range(1, lo, hi) && in_range(2, 0x80, 0xBF) {
                    3
                } else {
                    1
                }
            }
            0xF0..=0xF4 => {
                let lo = if lead == 0xF0 { 0x90 } else { 0x80 };
                let hi = if lead == 0xF4 { 0x8F } else { 0xBF };
                if in_range(1, lo, hi) && in_range(2, 0x80, 0xBF) && in_range(3, 0x80, 0xBF) {
                    4
                } else {
                    1
                }
            }
            _ => 1,
        }
    }
}

/// Units in a chunk that is valid UTF-8 on its own.
fn str_units(text: &str, unit: SkipUnit) -> u64 {
    let bytes = text.as_bytes();
    let code_points = bytes.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u64;
    match unit {
        SkipUnit::Utf16 => code_points + bytes.iter().filter(|&&b| b >= 0xF0).count() as u64,
        SkipUnit::CodePoint => code_points,
        SkipUnit::Byte => bytes.len() as u64,
    }
}

/// Finds where `skip` characters (UTF-16 units or code points) end.
fn find_cut(chunks: &[Bytes], skip: u64, unit: SkipUnit) -> CutResult {
    let mut scan = Scan {
        chunks,
        chunk: 0,
        offset: 0,
    };
    scan.settle();
    let mut remaining = skip;
    loop {
        if remaining == 0 && !scan.at_end() {
            return CutResult::At(Cut {
                chunk: scan.chunk,
                offset: scan.offset,
                replacement: false,
            });
        }
        if scan.at_end() {
            return CutResult::PastEnd {
                counted: skip - remaining,
            };
        }
        // Fast path: a whole chunk that is valid UTF-8 on its own and lies entirely
        // within the skip is counted without decoding it character by character.
        if scan.offset == 0 {
            let chunk = &chunks[scan.chunk];
            let units = if chunk.is_ascii() {
                Some(chunk.len() as u64)
            } else {
                std::str::from_utf8(chunk)
                    .ok()
                    .map(|text| str_units(text, unit))
            };
            if let Some(units) = units {
                if units <= remaining {
                    remaining -= units;
                    scan.advance(chunk.len());
                    continue;
                }
            }
        }
        let len = scan.char_len();
        let units = if len == 4 && unit == SkipUnit::Utf16 {
            2
        } else {
            1
        };
        scan.advance(len);
        if units <= remaining {
            remaining -= units;
        } else {
            // Two units, one left to skip: the cut falls inside a surrogate pair.
            return CutResult::At(Cut {
                chunk: scan.chunk,
                offset: scan.offset,
                replacement: true,
            });
        }
    }
}

/// The units of `bytes`, the start of a longer stream, as these rules count them in
/// the joined stream: counted up to where a character that the following bytes may
/// complete begins. Returns (UTF-16 units, code points, length of the counted part);
/// the rest (at most 3 bytes) is to be counted with what follows.
pub(crate) fn settled_units(bytes: &[u8]) -> (u64, u64, usize) {
    // Valid UTF-8 ends on a character boundary: counted whole, without decoding.
    if let Ok(text) = std::str::from_utf8(bytes) {
        let units = |unit| str_units(text, unit);
        return (
            units(SkipUnit::Utf16),
            units(SkipUnit::CodePoint),
            bytes.len(),
        );
    }
    let (mut utf16, mut code_points, mut at) = (0u64, 0u64, 0usize);
    while at < bytes.len() {
        let lead = bytes[at];
        // The sequence length a lead byte announces, and its second byte's range.
        let (len, lo, hi) = match lead {
            0xC2..=0xDF => (2, 0x80, 0xBF),
            0xE0 => (3, 0xA0, 0xBF),
            0xED => (3, 0x80, 0x9F),
            0xE1..=0xEF => (3, 0x80, 0xBF),
            0xF0 => (4, 0x90, 0xBF),
            0xF4 => (4, 0x80, 0x8F),
            0xF1..=0xF3 => (4, 0x80, 0xBF),
            _ => (1, 0, 0),
        };
        let fits = |i: usize, b: u8| {
            if i == 1 {
                (lo..=hi).contains(&b)
            } else {
                (0x80..=0xBF).contains(&b)
            }
        };
        let available = (bytes.len() - at).min(len);
        let valid_so_far = (1..available).all(|i| fits(i, bytes[at + i]));
        let step = if len > 1 && valid_so_far && available < len {
            // May be completed by the bytes that follow: not settled yet.
            break;
        } else if len > 1 && valid_so_far {
            len
        } else {
            1
        };
        code_points += 1;
        utf16 += if step == 4 { 2 } else { 1 };
        at += step;
    }
    (utf16, code_points, at)
}

fn assemble(chunks: &[Bytes], cut: Cut) -> Bytes {
    let rest = chunks.get(cut.chunk..).unwrap_or(&[]);
    let first_len = rest
        .first()
        .map_or(0, |c| c.len().saturating_sub(cut.offset));
    let total: usize = first_len + rest.iter().skip(1).map(Bytes::len).sum::<usize>();
    if !cut.replacement && total == first_len {
        // Only the first remaining chunk: share it.
        return rest
            .first()
            .map_or_else(Bytes::new, |c| c.slice(cut.offset..));
    }
    let prefix = if cut.replacement { REPLACEMENT } else { b"" };
    let mut out = BytesMut::with_capacity(prefix.len() + total);
    out.extend_from_slice(prefix);
    if let Some(first) = rest.first() {
        out.extend_from_slice(&first[cut.offset.min(first.len())..]);
    }
    for chunk in rest.iter().skip(1) {
        out.extend_from_slice(chunk);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(parts: &[&[u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    /// The reference: JavaScript's `slice` on UTF-16, then UTF-8 encoding with lone
    /// surrogates replaced, as Node does.
    fn js_slice(text: &str, skip: usize) -> Vec<u8> {
        let units: Vec<u16> = text.encode_utf16().collect();
        let tail = &units[skip.min(units.len())..];
        String::from_utf16_lossy(tail).into_bytes()
    }

    fn py_slice(text: &str, skip: usize) -> Vec<u8> {
        text.chars().skip(skip).collect::<String>().into_bytes()
    }

    #[test]
    fn utf16_and_code_point_cuts_match_javascript_and_python_at_every_offset() {
        let text = "héllo 日本 🚀 done";
        // Every split of the text into two chunks, including splits inside characters.
        for split in 0..=text.len() {
            let chunks = bytes_of(&[&text.as_bytes()[..split], &text.as_bytes()[split..]]);
            for skip in 0..=text.encode_utf16().count() + 1 {
                assert_eq!(
                    catch_up(&chunks, skip as i64, SkipUnit::Utf16),
                    js_slice(text, skip),
                    "utf16 skip {skip} split {split}"
                );
                assert_eq!(
                    catch_up(&chunks, skip as i64, SkipUnit::CodePoint),
                    py_slice(text, skip),
                    "codepoint skip {skip} split {split}"
                );
                assert_eq!(
                    catch_up(&chunks, skip as i64, SkipUnit::Byte),
                    text.as_bytes()[skip.min(text.len())..],
                    "byte skip {skip} split {split}"
                );
            }
        }
    }

    #[test]
    fn negative_skips_count_from_the_end_like_slice() {
        let chunks = bytes_of(&[b"abc", b"def"]);
        assert_eq!(catch_up(&chunks, -2, SkipUnit::Utf16), "ef");
        assert_eq!(catch_up(&chunks, -100, SkipUnit::Utf16), "abcdef");
        let emoji = bytes_of(&["a🚀".as_bytes()]);
        assert_eq!(catch_up(&emoji, -1, SkipUnit::Utf16), "\u{FFFD}");
        assert_eq!(catch_up(&emoji, -1, SkipUnit::CodePoint), "🚀");
    }

    #[test]
    fn invalid_utf8_counts_one_unit_per_byte_and_is_kept_verbatim() {
        let chunks = bytes_of(&[b"\xff\xfeab", b"\xe6\x97"]);
        assert_eq!(count_units(&chunks, SkipUnit::Utf16), 6);
        assert_eq!(
            catch_up(&chunks, 1, SkipUnit::CodePoint),
            &b"\xfeab\xe6\x97"[..]
        );
        assert_eq!(catch_up(&chunks, 4, SkipUnit::Utf16), &b"\xe6\x97"[..]);
        assert_eq!(catch_up(&chunks, 5, SkipUnit::Utf16), &b"\x97"[..]);
    }

    #[test]
    fn settled_units_match_the_joined_count_at_every_split() {
        let text = "aé€🚀\u{7ff}x"
            .as_bytes()
            .iter()
            .copied()
            .chain([0xFF, 0xE2, 0x82])
            .chain("€".bytes())
            .collect::<Vec<u8>>();
        for split in 0..=text.len() {
            let (utf16, cp, settled) = settled_units(&text[..split]);
            assert!(
                split - settled <= 3,
                "at most an unfinished sequence is left"
            );
            let rest = vec![Bytes::copy_from_slice(&text[settled..])];
            let whole = vec![Bytes::copy_from_slice(&text)];
            assert_eq!(
                utf16 + count_units(&rest, SkipUnit::Utf16),
                count_units(&whole, SkipUnit::Utf16),
                "split {split}"
            );
            assert_eq!(
                cp + count_units(&rest, SkipUnit::CodePoint),
                count_units(&whole, SkipUnit::CodePoint),
                "split {split}"
            );
        }
    }

    #[test]
    fn empty_chunks_and_empty_buffers() {
        assert_eq!(catch_up(&[], 0, SkipUnit::Utf16), "");
        assert_eq!(catch_up(&[], -3, SkipUnit::Byte), "");
        let chunks = bytes_of(&[b"", b"ab", b"", b"c", b""]);
        assert_eq!(catch_up(&chunks, 0, SkipUnit::Utf16), "abc");
        assert_eq!(catch_up(&chunks, 2, SkipUnit::Utf16), "c");
        assert_eq!(catch_up(&chunks, 3, SkipUnit::Utf16), "");
        assert_eq!(catch_up(&chunks, 2, SkipUnit::Byte), "c");
    }

    #[test]
    fn a_cut_in_the_last_chunk_shares_its_memory() {
        let chunks = bytes_of(&[b"abc", b"defgh"]);
        let out = catch_up(&chunks, 4, SkipUnit::Utf16);
        assert_eq!(out, "efgh");
        assert_eq!(out.as_ptr(), chunks[1][1..].as_ptr());
    }
}
