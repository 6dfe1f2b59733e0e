//! The wire: what crosses Redis, byte for byte. [`v1`] is the deployed protocol of the
//! npm and PyPI libraries; [`ext`] is what this crate adds, invisible to v1 peers;
//! [`log`] is durable mode's log. docs/protocol.md describes them.

pub mod ext;
pub mod log;
pub mod v1;

pub use ext::{Control, ErrorKind, Extension, Incoming, CONTROL_MARK, EXTENSION_VERSION};
pub use v1::{
    ListenerIds, Names, RequestError, ResumeRequest, Sentinel, StreamNames, DONE_MESSAGE,
    DONE_VALUE, MAX_LISTENER_ID_LEN, NOT_AN_INTEGER,
};
