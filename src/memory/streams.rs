//! Redis Streams in [`MemoryRedis`]: `XADD` with an explicit id, `XRANGE`, and `XREAD`
//! (what it answers at once, and what a blocked one is served when an `XADD` reaches
//! one of its streams), with Redis 7.0's semantics and error texts.

use super::{server, Entry, MemoryRedis, Value, NOT_AN_INTEGER, WRONGTYPE};
use crate::io::{Reply, ReplyError, StreamId};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

/// How many entries per stream Redis serves a blocked `XREAD` given no `COUNT` (or
/// `COUNT 0`): its `XREAD_BLOCKED_DEFAULT_COUNT`.
const BLOCKED_DEFAULT_COUNT: usize = 1000;

/// The id below every id a stream can hold.
const ZERO: StreamId = StreamId::new(0, 0);

/// One stream: its entries by id, and the last id it ever took.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    entries: BTreeMap<StreamId, Vec<Bytes>>,
    /// The id of the last entry added, kept when entries are trimmed away: a later
    /// `XADD` must go above it.
    last_id: StreamId,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            entries: BTreeMap::new(),
            last_id: ZERO,
        }
    }

    /// The entries in `range`, at most `limit` of them, as Redis replies them.
    fn reply(&self, range: (Bound<StreamId>, Bound<StreamId>), limit: usize) -> Vec<Reply> {
        self.entries
            .range(range)
            .take(limit)
            .map(|(id, fields)| {
                Reply::Array(vec![
                    Reply::Data(Bytes::from(id.to_string())),
                    Reply::Array(fields.iter().cloned().map(Reply::Data).collect()),
                ])
            })
            .collect()
    }

    /// The entries after `id`, at most `limit` of them.
    fn after(&self, id: StreamId, limit: usize) -> Vec<Reply> {
        self.reply((Bound::Excluded(id), Bound::Unbounded), limit)
    }
}

/// A stream's part of an `XREAD` reply: its key and its entries.
fn read_pair(key: &Bytes, entries: Vec<Reply>) -> Reply {
    Reply::Array(vec![Reply::Data(key.clone()), Reply::Array(entries)])
}

/// A `COUNT` argument as Redis parses it: a signed 64-bit integer.
fn count_limit(count: u64) -> Result<usize, ReplyError> {
    if i64::try_from(count).is_err() {
        return Err(server(NOT_AN_INTEGER));
    }
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

impl MemoryRedis {
    /// The stream at `key`: `None` if the key is missing, `WRONGTYPE` for a string.
    fn stream(&mut self, now: Instant, key: &[u8]) -> Result<Option<&mut Stream>, ReplyError> {
        match self.live(now, key) {
            None => Ok(None),
            Some(Entry {
                value: Value::Stream(stream),
                ..
            }) => Ok(Some(stream)),
            Some(_) => Err(server(WRONGTYPE)),
        }
    }

    /// `XADD key id field value ...`, checked in Redis 7.0's order: the arity, the id
    /// 0-0, the key's type, then the id against the stream's last one. A missing key
    /// becomes a stream without expiry.
    pub(super) fn xadd(
        &mut self,
        now: Instant,
        key: &Bytes,
        create: bool,
        id: StreamId,
        fields: &[Bytes],
    ) -> Result<Reply, ReplyError> {
        if fields.is_empty() || fields.len() % 2 == 1 {
            return Err(server("ERR wrong number of arguments for 'xadd' command"));
        }
        if id == ZERO {
            return Err(server(
                "ERR The ID specified in XADD must be greater than 0-0",
            ));
        }
        if self.stream(now, key)?.is_none() {
            if !create {
                // NOMKSTREAM: a missing stream stays missing.
                return Ok(Reply::Nil);
            }
            let stream = Value::Stream(Stream::new());
            self.keys.insert(
                key.clone(),
                Entry {
                    value: stream,
                    expires_at: None,
                },
            );
        }
        let Some(stream) = self.stream(now, key)? else {
            return Err(server(WRONGTYPE));
        };
        if stream.last_id == StreamId::MAX {
            return Err(server(
                "ERR The stream has exhausted the last possible ID, unable to add more items",
            ));
        }
        if id <= stream.last_id {
            return Err(server(
                "ERR The ID specified in XADD is equal or smaller than the target stream top item",
            ));
        }
        stream.entries.insert(id, fields.to_vec());
        stream.last_id = id;
        Ok(Reply::Data(Bytes::from(id.to_string())))
    }

    /// `XRANGE key start end COUNT count`: the entries from `start` to `end`, both
    /// included. As in Redis 7.0, a missing key is an empty array, and `COUNT 0` on a
    /// stream a nil (null array).
    pub(super) fn xrange(
        &mut self,
        now: Instant,
        key: &[u8],
        start: StreamId,
        end: StreamId,
        count: u64,
    ) -> Result<Reply, ReplyError> {
        let limit = count_limit(count)?;
        let Some(stream) = self.stream(now, key)? else {
            return Ok(Reply::Array(Vec::new()));
        };
        if limit == 0 {
            return Ok(Reply::Nil);
        }
        if start > end {
            return Ok(Reply::Array(Vec::new()));
        }
        let range = (Bound::Included(start), Bound::Included(end));
        Ok(Reply::Array(stream.reply(range, limit)))
    }

    /// `XREAD COUNT count BLOCK millis STREAMS key... id...` answered at once: for each
    /// stream in order, its entries after its id (at most `count`, `COUNT 0` meaning no
    /// limit), streams without any left out; nil if none has any. The arguments are
    /// checked as Redis 7.0 parses them (`COUNT`, `BLOCK`, at least one stream), then
    /// every key's type before anything is read.
    pub(super) fn xread(
        &mut self,
        now: Instant,
        count: u64,
        block_millis: u64,
        streams: &[(Bytes, StreamId)],
    ) -> Result<Reply, ReplyError> {
        let limit = match count_limit(count)? {
            0 => usize::MAX,
            limit => limit,
        };
        if i64::try_from(block_millis).is_err() {
            return Err(server("ERR timeout is not an integer or out of range"));
        }
        if now
            .checked_add(Duration::from_millis(block_millis))
            .is_none()
        {
            return Err(server("ERR timeout is out of range"));
        }
        if streams.is_empty() {
            return Err(server("ERR syntax error"));
        }
        for (key, _) in streams {
            self.stream(now, key)?;
        }
        let mut found = Vec::new();
        for (key, after) in streams {
            if let Some(stream) = self.stream(now, key)? {
                let entries = stream.after(*after, limit);
                if !entries.is_empty() {
                    found.push(read_pair(key, entries));
                }
            }
        }
        Ok(if found.is_empty() {
            Reply::Nil
        } else {
            Reply::Array(found)
        })
    }

    /// What Redis 7.0 serves a client blocked in `XREAD COUNT count ... STREAMS
    /// streams` once an `XADD` wrote to `key`, or `None` if the read stays blocked
    /// (`key` is none of its streams, or has no entry after the read's id for it).
    ///
    /// The reply names `key` alone (Redis 7.0 serves a blocked read from the stream that
    /// became ready), with its entries after the read's first id for it: at most
    /// `count`, or 1000 for `COUNT 0`, as Redis caps a blocked read given no count.
    ///
    /// ```
    /// use resumable_stream::{MemoryRedis, Op, Reply, StreamId};
    /// use std::time::Instant;
    ///
    /// let (mut redis, now) = (MemoryRedis::new(), Instant::now());
    /// let client = redis.connect();
    /// let streams = vec![("log".into(), StreamId::new(1, 0))];
    /// let read = Op::XRead { count: 10, block_millis: 500, streams: streams.clone() };
    /// assert_eq!(redis.execute(now, client, &read).0, Ok(Reply::Nil)); // it blocks
    /// let add = Op::XAdd { key: "log".into(), create: true, id: StreamId::new(2, 0), fields: vec!["d".into(), "x".into()] };
    /// let _ = redis.execute(now, client, &add);
    /// let served = redis.serve_blocked_read(now, b"log", 10, &streams);
    /// assert!(matches!(served, Some(Reply::Array(pairs)) if pairs.len() == 1));
    /// ```
    pub fn serve_blocked_read(
        &mut self,
        now: Instant,
        key: &[u8],
        count: u64,
        streams: &[(Bytes, StreamId)],
    ) -> Option<Reply> {
        let (key, after) = streams.iter().find(|(k, _)| k[..] == *key)?;
        let limit = match count {
            0 => BLOCKED_DEFAULT_COUNT,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let entries = self.stream(now, key).ok()??.after(*after, limit);
        if entries.is_empty() {
            return None;
        }
        Some(Reply::Array(vec![read_pair(key, entries)]))
    }

    /// How many entries the stream at `key` holds at `now`, if it exists and is a
    /// stream (`XLEN`).
    pub fn stream_len(&mut self, now: Instant, key: &[u8]) -> Option<usize> {
        Some(self.stream(now, key).ok()??.entries.len())
    }

    /// The last id the stream at `key` took (kept when its entries are trimmed), if it
    /// exists and is a stream at `now`.
    pub fn stream_last_id(&mut self, now: Instant, key: &[u8]) -> Option<StreamId> {
        Some(self.stream(now, key).ok()??.last_id)
    }

    /// Deletes the entries of the stream at `key` below `id`, as `XTRIM key MINID id`
    /// would (the stream keeps its last id, and its key even when empty), and returns
    /// how many went: for tests that simulate a trimmed log. Nothing happens to a
    /// missing key or a string.
    pub fn trim_stream_before(&mut self, key: &[u8], id: StreamId) -> usize {
        let Some(Entry {
            value: Value::Stream(stream),
            ..
        }) = self.keys.get_mut(key)
        else {
            return 0;
        };
        let kept = stream.entries.split_off(&id);
        let removed = stream.entries.len();
        stream.entries = kept;
        removed
    }
}

#[cfg(test)]
mod tests;
