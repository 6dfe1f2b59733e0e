//! The in-memory store: every stream in one map behind one mutex, forks copied at
//! creation, waiters woken through a `watch` channel per stream. For tests, development
//! and a single process; nothing survives a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::store::{
    Append, Appended, BoxFuture, Create, Created, Deleted, Expiry, Fork, From, Head, Meta, Read,
    Store, StoreError,
};

/// A producer's state on one stream: its epoch and the last sequence number accepted.
#[derive(Debug, Clone, Copy)]
struct ProducerState {
    epoch: u64,
    last_seq: u64,
}

#[derive(Debug)]
struct Stream {
    content_type: String,
    expiry: Expiry,
    touched: Instant,
    chunks: Vec<Bytes>,
    closed: bool,
    /// The producer request that closed the stream, for its retries.
    closed_by: Option<(String, u64, u64)>,
    producers: HashMap<String, ProducerState>,
    stream_seq: Option<String>,
    /// The source and fork point this stream was forked from.
    fork_of: Option<(String, u64, u64)>,
    /// Live forks of this stream.
    forks: usize,
    /// Deleted while forks still referenced it.
    deleted: bool,
    changed: watch::Sender<()>,
}

impl Stream {
    fn meta(&self) -> Meta {
        Meta {
            content_type: self.content_type.clone(),
            expiry: self.expiry,
            tail: self.chunks.len() as u64,
            closed: self.closed,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        match self.expiry {
            Expiry::Never => false,
            Expiry::Ttl(secs) => now.duration_since(self.touched) >= Duration::from_secs(secs),
            Expiry::At(ms) => unix_ms() >= ms,
        }
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether two content types name the same media type (parameters and case aside).
pub(crate) fn same_type(a: &str, b: &str) -> bool {
    fn media(s: &str) -> &str {
        s.split(';').next().unwrap_or("").trim()
    }
    media(a).eq_ignore_ascii_case(media(b))
}

/// Streams kept in this process's memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    streams: Arc<Mutex<HashMap<String, Stream>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Stream>> {
        self.streams
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops `id` if it has expired (soft-deleting it while forks read it), then removes
/// every source left soft-deleted with no fork.
fn expire(streams: &mut HashMap<String, Stream>, id: &str) {
    let now = Instant::now();
    let Some(stream) = streams.get_mut(id) else {
        return;
    };
    if stream.deleted || !stream.expired(now) {
        return;
    }
    remove(streams, id);
}

/// Deletes `id`: soft while forks read it, else removed with the cascade up its sources.
fn remove(streams: &mut HashMap<String, Stream>, id: &str) {
    let Some(stream) = streams.get_mut(id) else {
        return;
    };
    stream.notify();
    if stream.forks > 0 {
        stream.deleted = true;
        return;
    }
    let mut next = streams
        .remove(id)
        .and_then(|s| s.fork_of.map(|(source, _, _)| source));
    while let Some(source) = next.take() {
        let Some(parent) = streams.get_mut(&source) else {
            break;
        };
        parent.forks = parent.forks.saturating_sub(1);
        if parent.deleted && parent.forks == 0 {
            next = streams
                .remove(&source)
                .and_then(|s| s.fork_of.map(|(up, _, _)| up));
        }
    }
}

impl MemoryStore {
    fn create_now(&self, id: &str, req: Create) -> Created {
        let mut streams = self.lock();
        expire(&mut streams, id);
        if let Some(fork) = &req.fork {
            expire(&mut streams, &fork.source);
        }
        if let Some(existing) = streams.get(id) {
            return if !existing.deleted && matches_existing(existing, &req) {
                Created::Existing(existing.meta())
            } else {
                Created::Conflict
            };
        }
        let (content_type, expiry, mut chunks, fork_of) = match &req.fork {
            None => (
                req.content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
                req.expiry,
                Vec::new(),
                None,
            ),
            Some(fork) => match fork_base(&streams, fork, &req) {
                Ok(base) => base,
                Err(outcome) => return outcome,
            },
        };
        if let Some((source, _, _)) = &fork_of {
            if let Some(parent) = streams.get_mut(source) {
                parent.forks += 1;
            }
        }
        chunks.extend(req.chunks);
        let stream = Stream {
            content_type,
            expiry,
            touched: Instant::now(),
            chunks,
            closed: req.closed,
            closed_by: None,
            producers: HashMap::new(),
            stream_seq: None,
            fork_of,
            forks: 0,
            deleted: false,
            changed: watch::channel(()).0,
        };
        let meta = stream.meta();
        streams.insert(id.to_owned(), stream);
        Created::New(meta)
    }
}

type ForkBase = (String, Expiry, Vec<Bytes>, Option<(String, u64, u64)>);

/// A fork's content type, expiry, inherited chunks and origin, or why it cannot be.
fn fork_base(
    streams: &HashMap<String, Stream>,
    fork: &Fork,
    req: &Create,
) -> Result<ForkBase, Created> {
    let Some(source) = streams.get(&fork.source) else {
        return Err(Created::SourceNotFound);
    };
    if source.deleted {
        return Err(Created::SourceDeleted);
    }
    if let Some(ct) = &req.content_type {
        if !same_type(ct, &source.content_type) {
            return Err(Created::SourceTypeMismatch);
        }
    }
    let tail = source.chunks.len() as u64;
    let offset = fork.offset.unwrap_or(tail);
    if offset > tail {
        return Err(Created::BadForkPoint);
    }
    let at = usize::try_from(offset).map_err(|_| Created::BadForkPoint)?;
    let mut chunks = source.chunks[..at].to_vec();
    if fork.sub_offset > 0 {
        let Some(next) = source.chunks.get(at) else {
            return Err(Created::BadForkPoint);
        };
        let sub = usize::try_from(fork.sub_offset).map_err(|_| Created::BadForkPoint)?;
        if crate::json::is_json(&source.content_type) {
            // A JSON chunk is one message: the sub-offset counts whole messages.
            let end = at
                .checked_add(sub)
                .filter(|end| *end <= source.chunks.len());
            let Some(end) = end else {
                return Err(Created::BadForkPoint);
            };
            chunks.extend_from_slice(&source.chunks[at..end]);
        } else {
            if sub > next.len() {
                return Err(Created::BadForkPoint);
            }
            chunks.push(next.slice(..sub));
        }
    }
    let expiry = match req.expiry {
        Expiry::Never => source.expiry,
        own => own,
    };
    Ok((
        source.content_type.clone(),
        expiry,
        chunks,
        Some((fork.source.clone(), offset, fork.sub_offset)),
    ))
}

/// Whether an idempotent create matches the existing stream's configuration.
fn matches_existing(existing: &Stream, req: &Create) -> bool {
    let type_ok = match &req.content_type {
        Some(ct) => same_type(ct, &existing.content_type),
        None => req.fork.is_some() || same_type("application/octet-stream", &existing.content_type),
    };
    let expiry_ok =
        req.expiry == existing.expiry || (req.expiry == Expiry::Never && req.fork.is_some());
    let fork_ok = match (&req.fork, &existing.fork_of) {
        (None, _) => true,
        (Some(fork), Some((source, offset, sub))) => {
            fork.source == *source
                && fork.offset.is_none_or(|o| o == *offset)
                && fork.sub_offset == *sub
        }
        (Some(_), None) => false,
    };
    type_ok && expiry_ok && fork_ok && req.closed == existing.closed
}

fn append_to(stream: &mut Stream, req: Append) -> Appended {
    let tail = stream.chunks.len() as u64;
    let key = req
        .producer
        .as_ref()
        .map(|p| (p.id.clone(), p.epoch, p.seq));
    if stream.closed {
        if req.chunks.is_empty() && req.close {
            let last_seq = req.producer.as_ref().map_or(0, |p| p.seq);
            return Appended::Duplicate {
                tail,
                closed: true,
                last_seq,
            };
        }
        if key.is_some() && key == stream.closed_by {
            let last_seq = key.map_or(0, |k| k.2);
            return Appended::Duplicate {
                tail,
                closed: true,
                last_seq,
            };
        }
        return Appended::Closed { tail };
    }
    if !req.chunks.is_empty() {
        if let Some(ct) = &req.content_type {
            if !same_type(ct, &stream.content_type) {
                return Appended::TypeMismatch;
            }
        }
    }
    if let Some(p) = &req.producer {
        match stream.producers.get(&p.id) {
            Some(state) if p.epoch < state.epoch => {
                return Appended::StaleEpoch {
                    current: state.epoch,
                }
            }
            Some(state) if p.epoch == state.epoch => {
                if p.seq <= state.last_seq {
                    return Appended::Duplicate {
                        tail,
                        closed: stream.closed,
                        last_seq: state.last_seq,
                    };
                }
                if p.seq > state.last_seq + 1 {
                    return Appended::SeqGap {
                        expected: state.last_seq + 1,
                    };
                }
            }
            _ if p.seq != 0 => {
                return match stream.producers.get(&p.id) {
                    Some(_) => Appended::NewEpochNotAtZero,
                    None => Appended::SeqGap { expected: 0 },
                }
            }
            _ => {}
        }
    }
    if let Some(seq) = &req.stream_seq {
        if stream
            .stream_seq
            .as_ref()
            .is_some_and(|last| seq.as_bytes() <= last.as_bytes())
        {
            return Appended::SeqRegression;
        }
        stream.stream_seq = Some(seq.clone());
    }
    if let Some(p) = &req.producer {
        stream.producers.insert(
            p.id.clone(),
            ProducerState {
                epoch: p.epoch,
                last_seq: p.seq,
            },
        );
    }
    stream.chunks.extend(req.chunks);
    if req.close {
        stream.closed = true;
        stream.closed_by = key;
    }
    stream.touched = Instant::now();
    stream.notify();
    Appended::Done {
        tail: stream.chunks.len() as u64,
        closed: stream.closed,
    }
}

impl Store for MemoryStore {
    fn local_streams(&self) -> Option<Vec<(String, u64)>> {
        let now = Instant::now();
        let streams = self.lock();
        Some(
            streams
                .iter()
                .filter(|(_, s)| !s.deleted && !s.expired(now))
                .map(|(id, s)| (id.clone(), s.chunks.len() as u64))
                .collect(),
        )
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        req: Create,
    ) -> BoxFuture<'a, Result<Created, StoreError>> {
        Box::pin(async move { Ok(self.create_now(id, req)) })
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        req: Append,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(async move {
            let mut streams = self.lock();
            expire(&mut streams, id);
            Ok(match streams.get_mut(id) {
                None => Appended::NotFound,
                Some(stream) if stream.deleted => Appended::Gone,
                Some(stream) => append_to(stream, req),
            })
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Deleted, StoreError>> {
        Box::pin(async move {
            let mut streams = self.lock();
            expire(&mut streams, id);
            Ok(match streams.get(id) {
                None => Deleted::NotFound,
                Some(stream) if stream.deleted => Deleted::Gone,
                Some(_) => {
                    remove(&mut streams, id);
                    Deleted::Done
                }
            })
        })
    }

    fn head<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Head, StoreError>> {
        Box::pin(async move {
            let mut streams = self.lock();
            expire(&mut streams, id);
            Ok(match streams.get(id) {
                None => Head::NotFound,
                Some(stream) if stream.deleted => Head::Gone,
                Some(stream) => Head::Found(stream.meta()),
            })
        })
    }

    fn read<'a>(
        &'a self,
        id: &'a str,
        from: From,
        max_bytes: usize,
        touch: bool,
    ) -> BoxFuture<'a, Result<Read, StoreError>> {
        Box::pin(async move {
            let mut streams = self.lock();
            expire(&mut streams, id);
            let stream = match streams.get_mut(id) {
                None => return Ok(Read::NotFound),
                Some(stream) if stream.deleted => return Ok(Read::Gone),
                Some(stream) => stream,
            };
            if touch {
                stream.touched = Instant::now();
            }
            let tail = stream.chunks.len() as u64;
            let start = match from {
                From::Tail => tail,
                From::At(at) if at > tail => return Ok(Read::PastTail),
                From::At(at) => at,
            };
            let mut chunks = Vec::new();
            let mut bytes = 0;
            for chunk in stream
                .chunks
                .iter()
                .skip(usize::try_from(start).unwrap_or(usize::MAX))
            {
                if !chunks.is_empty() && bytes + chunk.len() > max_bytes {
                    break;
                }
                bytes += chunk.len();
                chunks.push(chunk.clone());
            }
            Ok(Read::Data {
                meta: stream.meta(),
                start,
                chunks,
            })
        })
    }

    fn wait<'a>(
        &'a self,
        id: &'a str,
        tail: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut changed = {
                let streams = self.lock();
                match streams.get(id) {
                    Some(s) if !s.deleted && !s.closed && s.chunks.len() as u64 <= tail => {
                        s.changed.subscribe()
                    }
                    _ => return Ok(()),
                }
            };
            let _ = tokio::time::timeout(timeout, changed.changed()).await;
            Ok(())
        })
    }
}
