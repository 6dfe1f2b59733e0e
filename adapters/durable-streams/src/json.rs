//! JSON mode (protocol section 9.1): a stream of `application/json` keeps message
//! boundaries; an appended array is flattened one level; reads answer an array.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

/// Whether a content type puts its stream in JSON mode.
pub fn is_json(content_type: &str) -> bool {
    crate::memory::same_type(content_type, "application/json")
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON.
    Invalid,
    /// An empty array, refused on append.
    EmptyArray,
}

/// The messages of a JSON body, each re-serialized compactly: the elements of a
/// top-level array, or the value itself. `[]` is refused when `append` (a create may
/// start empty with it).
pub fn messages(body: &[u8], append: bool) -> Result<Vec<Bytes>, JsonError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| JsonError::Invalid)?;
    let items = match value {
        Value::Array(items) if items.is_empty() && append => return Err(JsonError::EmptyArray),
        Value::Array(items) => items,
        other => vec![other],
    };
    items
        .iter()
        .map(|item| {
            serde_json::to_vec(item)
                .map(Bytes::from)
                .map_err(|_| JsonError::Invalid)
        })
        .collect()
}

/// The messages as one JSON array.
pub fn array(chunks: &[Bytes]) -> Bytes {
    let len = chunks.iter().map(|c| c.len() + 1).sum::<usize>() + 2;
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(b'[');
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(chunk);
    }
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_one_level() {
        assert_eq!(
            messages(br#"[[1,2],[3]]"#, true).unwrap(),
            vec![Bytes::from("[1,2]"), Bytes::from("[3]")]
        );
        assert_eq!(
            messages(br#"{"a":1}"#, true).unwrap(),
            vec![Bytes::from(r#"{"a":1}"#)]
        );
        assert_eq!(messages(b"[]", true), Err(JsonError::EmptyArray));
        assert_eq!(messages(b"[]", false).unwrap(), Vec::<Bytes>::new());
        assert_eq!(messages(b"{", true), Err(JsonError::Invalid));
        assert_eq!(
            array(&[Bytes::from("1"), Bytes::from("2")]),
            Bytes::from("[1,2]")
        );
    }
}
