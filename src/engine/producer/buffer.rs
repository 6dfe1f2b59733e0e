//! A producer's held chunks: everything produced (or, with a byte cap, the newest of
//! it, with an exact account of what was dropped), and the catch-up each resume
//! request is owed, computed from them.

use crate::skip::{catch_up, count_units, settled_units, SkipUnit};
use crate::wire::ResumeRequest;
use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use std::collections::VecDeque;

/// What a bounded buffer dropped from its front, to keep skips exact.
///
/// Characters are counted over the joined stream, so a character split across two
/// chunks is one: the dropped bytes' last unfinished character (`carry`, at most 3
/// bytes) is kept and counted with the held chunks.
#[derive(Debug, Default, Clone)]
struct Dropped {
    chunks: u64,
    bytes: u64,
    /// UTF-16 units and code points of the dropped bytes before `carry`.
    utf16: u64,
    code_points: u64,
    carry: SmallVec<[u8; 4]>,
}

impl Dropped {
    /// Counts `chunk`, the oldest held chunk, as dropped.
    fn drop_chunk(&mut self, chunk: &[u8]) {
        self.chunks += 1;
        self.bytes += chunk.len() as u64;
        let joined: Vec<u8>;
        let bytes: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            joined = [&self.carry[..], chunk].concat();
            &joined
        };
        let (utf16, code_points, settled) = settled_units(bytes);
        self.utf16 += utf16;
        self.code_points += code_points;
        self.carry = SmallVec::from_slice(&bytes[settled..]);
    }

    fn units(&self, unit: SkipUnit) -> u64 {
        match unit {
            SkipUnit::Utf16 => self.utf16,
            SkipUnit::CodePoint => self.code_points,
            SkipUnit::Byte => self.bytes,
        }
    }
}

/// The chunks a producer holds for catch-ups, shared with local delivery and every
/// PUBLISH to a v1 listener.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    chunks: VecDeque<Bytes>,
    /// The bytes of `chunks`.
    held: usize,
    dropped: Dropped,
}

impl Buffer {
    /// The number of chunks produced so far (held or dropped): the next chunk's index.
    pub(super) fn chunk_count(&self) -> u64 {
        self.dropped.chunks + self.chunks.len() as u64
    }

    /// The bytes held.
    pub(super) fn held_bytes(&self) -> usize {
        self.held
    }

    /// Holds `chunk`, then drops the oldest chunks beyond `limit` bytes, always
    /// keeping the newest: a catch-up must end where live delivery begins.
    pub(super) fn push(&mut self, chunk: Bytes, limit: Option<usize>) {
        self.held += chunk.len();
        self.chunks.push_back(chunk);
        let Some(limit) = limit else {
            return;
        };
        while self.held > limit && self.chunks.len() > 1 {
            let Some(oldest) = self.chunks.pop_front() else {
                break;
            };
            self.held -= oldest.len();
            self.dropped.drop_chunk(&oldest);
        }
    }

    /// The catch-up for `request`, or `None` when it needs data no longer held.
    pub(super) fn catch_up_for(
        &mut self,
        request: &ResumeRequest,
        default_unit: SkipUnit,
    ) -> Option<Bytes> {
        if let Some(from) = request.ext.as_ref().and_then(|ext| ext.from_chunk) {
            let first = from.checked_sub(self.dropped.chunks)?;
            let first = usize::try_from(first).unwrap_or(usize::MAX);
            return Some(join(self.chunks.iter().skip(first)));
        }
        let unit = request.unit.unwrap_or(default_unit);
        let skip = request.skip.unwrap_or(0);
        let held = self.chunks.make_contiguous();
        if self.dropped.chunks == 0 {
            return Some(catch_up(held, skip, unit));
        }
        let dropped = self.dropped.units(unit);
        // Characters are cut in the joined stream: the dropped bytes' unfinished last
        // character goes before the held chunks (bytes need no such care).
        let with_carry: Vec<Bytes>;
        let held: &[Bytes] = if unit == SkipUnit::Byte || self.dropped.carry.is_empty() {
            held
        } else {
            with_carry = std::iter::once(Bytes::copy_from_slice(&self.dropped.carry))
                .chain(held.iter().cloned())
                .collect();
            &with_carry
        };
        if skip < 0 {
            // From the end: fine while it stays within what is held. Past the start it
            // is the whole stream, held only when what was dropped held no unit (empty
            // chunks, or the start of a character kept with the held ones).
            let available = count_units(held, unit);
            if skip.unsigned_abs() <= available {
                return Some(catch_up(held, skip, unit));
            }
            return (dropped == 0).then(|| catch_up(held, 0, unit));
        }
        let skip = (skip as u64).checked_sub(dropped)?;
        Some(catch_up(held, skip.min(i64::MAX as u64) as i64, unit))
    }
}

/// The chunks joined into one: no copy for one chunk.
fn join<'a>(chunks: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let mut rest = chunks.clone();
    match (rest.next(), rest.next()) {
        (None, _) => Bytes::new(),
        (Some(one), None) => one.clone(),
        _ => {
            let mut out = BytesMut::with_capacity(chunks.clone().map(Bytes::len).sum());
            for chunk in chunks {
                out.extend_from_slice(chunk);
            }
            out.freeze()
        }
    }
}
