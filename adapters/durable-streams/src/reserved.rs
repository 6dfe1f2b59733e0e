//! The reserved `__ds` prefix (protocol section 6) as the stream routes see it: where
//! it starts, and the hooks that tell the subscriptions (`crate::subs`, feature
//! `subscriptions`) of every append and delete.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::http::{preflight, status, App};

/// What follows `base/__ds/` in a path (the reserved prefix of protocol section 6).
pub(crate) fn path<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(base.trim_end_matches('/'))?
        .strip_prefix("/__ds")?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/')
}

impl App {
    /// Tells the subscriptions of an append (or a create with data).
    pub(crate) fn appended(&self, _id: &str, _tail: u64, _count: usize) {
        #[cfg(feature = "subscriptions")]
        if let Ok(Some(subs)) = &self.subs {
            subs.appended(_id, _tail, _count as u64);
        }
    }

    /// Tells the subscriptions that a stream was deleted.
    pub(crate) fn deleted(&self, _id: &str) {
        #[cfg(feature = "subscriptions")]
        if let Ok(Some(subs)) = &self.subs {
            subs.deleted(_id);
        }
    }

    /// Serves `{base}/__ds/{rest}`: `501` over a store shared between processes.
    pub(crate) async fn reserved(&self, rest: &str, req: Request) -> Response {
        if req.method() == Method::OPTIONS {
            return preflight();
        }
        #[cfg(feature = "subscriptions")]
        match &self.subs {
            Ok(Some(subs)) => return crate::subs::routes::route(subs, rest, req).await,
            Ok(None) => {}
            Err(_) => {
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the configured webhook signing key is not usable",
                )
            }
        }
        let _ = (rest, req);
        status(
            StatusCode::NOT_IMPLEMENTED,
            "the reserved subscription APIs run only over a store in this process (MemoryStore)",
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_paths() {
        assert_eq!(
            super::path("/v1/stream", "/v1/stream/__ds/jwks.json"),
            Some("jwks.json")
        );
        assert_eq!(super::path("/v1/stream/", "/v1/stream/__ds"), Some(""));
        assert_eq!(super::path("/v1/stream", "/v1/stream/__dsx"), None);
        assert_eq!(super::path("/v1/stream", "/v1/stream/a/__ds/x"), None);
    }
}
