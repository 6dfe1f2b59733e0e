//! The keys of a stream: resumable-stream's log and lease (`{prefix}:rs:log:{id}`,
//! `{prefix}:rs:lease:{id}`, named by [`resumable_stream::wire::Names`]) and the
//! protocol's metadata hash, named so that it shares the log's Cluster slot.

use bytes::Bytes;
use resumable_stream::wire::Names;

/// The keys of one stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamKeys {
    /// The metadata hash, in the log's slot.
    pub(crate) meta: Vec<u8>,
    /// The durable log (a Redis Stream).
    pub(crate) log: Bytes,
    /// A resumable_stream producer's lease (its own slot on a Cluster).
    pub(crate) lease: Bytes,
    /// Whether `meta` is in the log's slot on a Cluster (always on one Redis).
    pub(crate) colocated: bool,
}

/// The hash tag Redis Cluster hashes a key by: the text between its first `{` and the
/// first `}` after it, when not empty.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|b| *b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|b| *b == b'}')?;
    (close > 0).then(|| &rest[..close])
}

/// The metadata key of the log key `log`: `{log}:ds` when the log has no hash tag (so
/// its tag is the whole log key: the same slot), `{tag}:ds:` and the log key when it has
/// one. A log key without a tag but with a `}` cannot be matched (`colocated` false).
pub(crate) fn meta_key(log: &[u8]) -> (Vec<u8>, bool) {
    let mut meta = Vec::with_capacity(log.len() * 2 + 8);
    meta.push(b'{');
    match hash_tag(log) {
        Some(tag) => {
            meta.extend_from_slice(tag);
            meta.extend_from_slice(b"}:ds:");
            meta.extend_from_slice(log);
            (meta, true)
        }
        None => {
            meta.extend_from_slice(log);
            meta.extend_from_slice(b"}:ds");
            (meta, !log.contains(&b'}'))
        }
    }
}

/// The keys of stream `id` under `names`.
pub(crate) fn stream_keys(names: &Names, id: &str) -> StreamKeys {
    let log = names.log(id);
    let (meta, colocated) = meta_key(&log);
    StreamKeys {
        meta,
        log,
        lease: names.lease(id),
        colocated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_shares_the_logs_hash_tag() {
        assert_eq!(
            meta_key(b"p:rs:log:abc"),
            (b"{p:rs:log:abc}:ds".to_vec(), true)
        );
        assert_eq!(
            meta_key(b"p:rs:log:{user1}:a"),
            (b"{user1}:ds:p:rs:log:{user1}:a".to_vec(), true)
        );
        assert_eq!(hash_tag(b"{p:rs:log:abc}:ds"), Some(&b"p:rs:log:abc"[..]));
        assert_eq!(
            hash_tag(b"{user1}:ds:p:rs:log:{user1}:a"),
            Some(&b"user1"[..])
        );
        // `{}` is no tag: the whole key is hashed, and it holds a `}`.
        assert!(!meta_key(b"p:rs:log:{}x").1);
        assert!(!meta_key(b"p:rs:log:a}b").1);
    }
}
