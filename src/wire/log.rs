//! Durable mode's log: a Redis Stream per stream, `{prefix}:rs:log:{id}`, and the
//! producer's lease, `{prefix}:rs:lease:{id}` (docs/protocol.md, "Durable mode").
//!
//! An entry's id says which chunks it holds, so that a chunk position (an SSE
//! `Last-Event-ID`) maps straight to a log position:
//!
//! - a chunks entry has the id `{after}-{count}`: it holds `count` chunks (at least
//!   one), the last of which leaves the stream `after` chunks long; its fields are
//!   `d` and a chunk, once per chunk, in order. A reader that has `p` chunks reads
//!   from `{p + 1}-0` on: the first entry it gets holds chunk `p`.
//! - the end entry has the id `18446744073709551615-0`, above any chunks entry, so
//!   that once the end is written Redis itself refuses every later append (fencing: a
//!   stale producer cannot add to an ended log). Its fields: `end` and the ending
//!   (`done`, `error`, `cancelled`, `gone`), then `next` and the stream's length when
//!   its producer wrote it, and `message` and the error's text for `error`. `gone` is
//!   written by a reader that found the producer's lease lapsed.

use crate::io::{Reply, StreamId};
use bytes::Bytes;

/// The id of the end entry: above every chunks entry.
pub const END_ID: StreamId = StreamId::new(u64::MAX, 0);

const DATA_FIELD: &[u8] = b"d";
const END_FIELD: &[u8] = b"end";
const NEXT_FIELD: &[u8] = b"next";
const MESSAGE_FIELD: &[u8] = b"message";
const LIMIT_FIELD: &[u8] = b"limit";

/// How a durable stream ended, as its end entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnding {
    /// `done`: the source ended cleanly.
    Done,
    /// `error`: the source failed, with its message.
    Error(String),
    /// `cancelled`: the stream was cancelled.
    Cancelled,
    /// `gone`: a reader found the producer's lease lapsed without an end.
    Gone,
    /// `full`: the log reached its byte cap (`limit`, in bytes).
    Full(u64),
}

impl LogEnding {
    fn name(&self) -> &'static [u8] {
        match self {
            LogEnding::Done => b"done",
            LogEnding::Error(_) => b"error",
            LogEnding::Cancelled => b"cancelled",
            LogEnding::Gone => b"gone",
            LogEnding::Full(_) => b"full",
        }
    }
}

/// One decoded log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// Chunks `first..first + chunks.len()` of the stream.
    Chunks {
        /// The entry's id.
        id: StreamId,
        /// The index of its first chunk.
        first: u64,
        /// The chunks, in order.
        chunks: Vec<Bytes>,
    },
    /// The end of the stream.
    End {
        /// How it ended.
        ending: LogEnding,
        /// The stream's length, when its producer wrote the end.
        next: Option<u64>,
    },
}

impl LogEntry {
    /// The entry's id in the log.
    pub fn id(&self) -> StreamId {
        match self {
            LogEntry::Chunks { id, .. } => *id,
            LogEntry::End { .. } => END_ID,
        }
    }
}

/// The fields of a chunks entry holding `chunks`: `d`, chunk, `d`, chunk, ...
pub fn chunk_fields(chunks: &[Bytes]) -> Vec<Bytes> {
    let mut fields = Vec::with_capacity(chunks.len() * 2);
    for chunk in chunks {
        fields.push(Bytes::from_static(DATA_FIELD));
        fields.push(chunk.clone());
    }
    fields
}

/// The id of a chunks entry holding `count` chunks that leave the stream `after`
/// chunks long.
pub fn chunks_id(after: u64, count: u64) -> StreamId {
    StreamId::new(after, count)
}

/// The first id a reader that has `position` chunks reads from.
pub fn read_from(position: u64) -> StreamId {
    StreamId::new(position.saturating_add(1), 0)
}

/// The id after which a reader that has `position` chunks and no entry yet reads
/// (`XREAD` takes the id *after* which to read).
pub fn read_after(position: u64) -> StreamId {
    StreamId::new(position, u64::MAX)
}

/// The id right after `id` (for the next page of an `XRANGE`).
pub fn next_id(id: StreamId) -> StreamId {
    match id.seq.checked_add(1) {
        Some(seq) => StreamId::new(id.ms, seq),
        None => StreamId::new(id.ms.saturating_add(1), 0),
    }
}

/// The fields of the end entry.
pub fn end_fields(ending: &LogEnding, next: Option<u64>) -> Vec<Bytes> {
    let mut fields = vec![
        Bytes::from_static(END_FIELD),
        Bytes::from_static(ending.name()),
    ];
    if let Some(next) = next {
        fields.push(Bytes::from_static(NEXT_FIELD));
        fields.push(Bytes::from(next.to_string()));
    }
    match ending {
        LogEnding::Error(message) => {
            fields.push(Bytes::from_static(MESSAGE_FIELD));
            fields.push(Bytes::from(message.clone()));
        }
        LogEnding::Full(limit) => {
            fields.push(Bytes::from_static(LIMIT_FIELD));
            fields.push(Bytes::from(limit.to_string()));
        }
        _ => {}
    }
    fields
}

/// Why a reply could not be read as log entries: described for the error.
pub type Malformed = String;

/// The entries of an `XRANGE` reply (an array of entries).
pub fn decode_range(reply: &Reply) -> Result<Vec<LogEntry>, Malformed> {
    let Reply::Array(entries) = reply else {
        return Err(format!("not an array of entries: {reply}"));
    };
    entries.iter().map(decode_entry).collect()
}

/// The entries per key of an `XREAD` reply: nil (nothing came), or an array of
/// `[key, entries]` pairs.
pub fn decode_read(reply: &Reply) -> Result<Vec<(Bytes, Vec<LogEntry>)>, Malformed> {
    match reply {
        Reply::Nil => Ok(Vec::new()),
        Reply::Array(streams) => streams
            .iter()
            .map(|stream| match stream {
                Reply::Array(pair) => match pair.as_slice() {
                    [Reply::Data(key), entries] => Ok((key.clone(), decode_range(entries)?)),
                    _ => Err(format!("not a [key, entries] pair: {stream}")),
                },
                other => Err(format!("not a [key, entries] pair: {other}")),
            })
            .collect(),
        other => Err(format!("not an XREAD reply: {other}")),
    }
}

/// One entry: `[id, [field, value, ...]]`.
fn decode_entry(entry: &Reply) -> Result<LogEntry, Malformed> {
    let Reply::Array(parts) = entry else {
        return Err(format!("not an entry: {entry}"));
    };
    let [Reply::Data(id), Reply::Array(fields)] = parts.as_slice() else {
        return Err(format!("not an [id, fields] entry: {entry}"));
    };
    let id = StreamId::parse(id)
        .ok_or_else(|| format!("bad entry id {:?}", String::from_utf8_lossy(id)))?;
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        match field {
            Reply::Data(value) => values.push(value.clone()),
            other => return Err(format!("a field that is not a string: {other}")),
        }
    }
    if values.len() % 2 != 0 {
        return Err(format!("entry {id} has an odd number of fields"));
    }
    if id == END_ID {
        return decode_end(&values);
    }
    let count = id.seq;
    let first = id.ms.checked_sub(count);
    let chunks: Vec<Bytes> = values
        .chunks_exact(2)
        .filter(|pair| pair[0] == DATA_FIELD)
        .map(|pair| pair[1].clone())
        .collect();
    match first {
        Some(first) if count > 0 && chunks.len() as u64 == count => {
            Ok(LogEntry::Chunks { id, first, chunks })
        }
        _ => Err(format!(
            "entry {id} does not hold the chunks its id names ({} found)",
            chunks.len()
        )),
    }
}

fn decode_end(values: &[Bytes]) -> Result<LogEntry, Malformed> {
    let field = |name: &[u8]| {
        values
            .chunks_exact(2)
            .find(|pair| pair[0] == name)
            .map(|pair| &pair[1])
    };
    let message = || {
        field(MESSAGE_FIELD)
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default()
    };
    let number = |name: &[u8]| -> Result<Option<u64>, Malformed> {
        match field(name) {
            None => Ok(None),
            Some(text) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| "an end entry with a field that is not a number".to_owned()),
        }
    };
    let ending = match field(END_FIELD).map(|v| &v[..]) {
        Some(b"done") => LogEnding::Done,
        Some(b"error") => LogEnding::Error(message()),
        Some(b"cancelled") => LogEnding::Cancelled,
        Some(b"gone") => LogEnding::Gone,
        Some(b"full") => LogEnding::Full(number(LIMIT_FIELD)?.unwrap_or(0)),
        other => {
            let other = other.map(String::from_utf8_lossy);
            return Err(format!("an end entry of unknown ending {other:?}"));
        }
    };
    let next = number(NEXT_FIELD)?;
    Ok(LogEntry::End { ending, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: StreamId, fields: Vec<Bytes>) -> Reply {
        Reply::Array(vec![
            Reply::Data(Bytes::from(id.to_string())),
            Reply::Array(fields.into_iter().map(Reply::Data).collect()),
        ])
    }

    #[test]
    fn entries_round_trip() {
        let chunks = [Bytes::from("a"), Bytes::new(), Bytes::from("c")];
        let ending = LogEnding::Error("boom".into());
        let reply = Reply::Array(vec![
            entry(chunks_id(5, 3), chunk_fields(&chunks)),
            entry(END_ID, end_fields(&ending, Some(5))),
        ]);
        let decoded = decode_range(&reply).unwrap();
        assert_eq!(
            decoded,
            [
                LogEntry::Chunks {
                    id: StreamId::new(5, 3),
                    first: 2,
                    chunks: chunks.to_vec()
                },
                LogEntry::End {
                    ending,
                    next: Some(5)
                }
            ]
        );
        let read = Reply::Array(vec![Reply::Array(vec![Reply::Data("k".into()), reply])]);
        assert_eq!(decode_read(&read).unwrap()[0].1, decoded);
        assert_eq!(decode_read(&Reply::Nil).unwrap(), []);
    }

    #[test]
    fn a_reader_at_p_reads_the_entry_holding_chunk_p_first() {
        // Entries [0,2) and [2,5): a reader with 3 chunks needs the second one.
        assert!(read_from(3) > chunks_id(2, 2) && read_from(3) <= chunks_id(5, 3));
        assert!(read_after(3) >= chunks_id(2, 2) && read_after(3) < chunks_id(5, 3));
        assert!(END_ID > chunks_id(u64::MAX - 1, 1));
        assert_eq!(next_id(StreamId::new(1, u64::MAX)), StreamId::new(2, 0));
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let bad = [
            Reply::Nil,
            Reply::Array(vec![Reply::Nil]),
            Reply::Array(vec![entry(
                StreamId::new(1, 2),
                chunk_fields(&["x".into()]),
            )]),
            Reply::Array(vec![entry(StreamId::new(1, 0), vec![])]),
            Reply::Array(vec![entry(END_ID, vec!["end".into(), "what".into()])]),
            Reply::Array(vec![entry(END_ID, vec!["end".into()])]),
            Reply::Array(vec![entry(
                END_ID,
                vec!["end".into(), "done".into(), "next".into(), "x".into()],
            )]),
        ];
        for reply in bad {
            assert!(decode_range(&reply).is_err(), "{reply:?}");
        }
        assert!(decode_read(&Reply::Integer(1)).is_err());
    }
}
