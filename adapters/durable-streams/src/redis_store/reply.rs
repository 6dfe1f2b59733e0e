//! A script's reply: an array whose first item names the outcome, whose second is the
//! source to unreference (a fork's source whose last reference just went), then the
//! outcome's values.

use bytes::Bytes;
use redis::Value;

use crate::store::{Expiry, Meta, StoreError};

/// A decoded script reply.
pub(crate) struct Reply(Vec<Value>);

fn malformed(what: &str) -> StoreError {
    StoreError(format!("unexpected script reply: {what}"))
}

impl Reply {
    /// Checks that `value` is an array with at least the outcome and the unreference.
    pub(crate) fn new(value: Value) -> Result<Reply, StoreError> {
        match value {
            Value::Array(items) if items.len() >= 2 => Ok(Reply(items)),
            other => Err(malformed(&format!("{other:?}"))),
        }
    }

    /// The item at `i` as bytes (`None` when nil or absent).
    pub(crate) fn bytes(&self, i: usize) -> Option<Bytes> {
        match self.0.get(i)? {
            Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
            Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
            Value::Int(n) => Some(Bytes::from(n.to_string())),
            _ => None,
        }
    }

    /// The item at `i` as text.
    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        let b = self.bytes(i).ok_or_else(|| malformed("missing item"))?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed("text that is not UTF-8"))
    }

    /// The item at `i` as a number.
    pub(crate) fn num(&self, i: usize) -> Result<u64, StoreError> {
        match self.0.get(i) {
            Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| malformed("negative number")),
            _ => self.text(i)?.parse().map_err(|_| malformed("not a number")),
        }
    }

    /// The outcome's name.
    pub(crate) fn code(&self) -> Result<String, StoreError> {
        self.text(0)
    }

    /// The source to unreference, if any.
    pub(crate) fn unref(&self) -> Option<String> {
        self.bytes(1)
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
    }

    /// The metadata at `i` on: content type, expiry kind and value, tail, closed.
    pub(crate) fn meta(&self, i: usize) -> Result<Meta, StoreError> {
        Ok(Meta {
            content_type: self.text(i)?,
            expiry: expiry(&self.text(i + 1)?, self.num(i + 2)?)?,
            tail: self.num(i + 3)?,
            closed: self.num(i + 4)? == 1,
        })
    }

    /// Every item from `i` on, as bytes (the chunks of a read).
    pub(crate) fn chunks(&self, i: usize) -> Vec<Bytes> {
        (i..self.0.len()).filter_map(|j| self.bytes(j)).collect()
    }
}

/// An expiry as the scripts spell it: `n`, `t` and seconds, `a` and milliseconds.
pub(crate) fn expiry(kind: &str, value: u64) -> Result<Expiry, StoreError> {
    match kind {
        "n" => Ok(Expiry::Never),
        "t" => Ok(Expiry::Ttl(value)),
        "a" => Ok(Expiry::At(value)),
        _ => Err(malformed("unknown expiry kind")),
    }
}

/// The scripts' spelling of an expiry.
pub(crate) fn expiry_args(expiry: Expiry) -> (&'static str, u64) {
    match expiry {
        Expiry::Never => ("n", 0),
        Expiry::Ttl(secs) => ("t", secs),
        Expiry::At(ms) => ("a", ms),
    }
}
