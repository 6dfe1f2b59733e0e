//! The routes under `{base}/__ds/` (protocol sections 6 and 7): subscriptions, their
//! explicit streams, webhook callbacks, pull-wake claim, ack and release, and the
//! webhook signing keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::time::{Duration, Instant};

use super::model::{self, json_response, ApiError, Delivery, SubConfig};
use super::state::{Effect, Sub};
use super::{webhook, Registry};
use crate::http::{header, put};
use crate::store::Head;
use crate::wire;

/// The largest control request body.
const MAX_BODY: usize = 1 << 20;

/// Serves `{base}/__ds/{rest}`.
pub(crate) async fn route(registry: &Arc<Registry>, rest: &str, req: Request) -> Response {
    match serve(registry, rest, req).await {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

async fn serve(registry: &Arc<Registry>, rest: &str, req: Request) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let origin = origin(req.headers());
    let bearer = header(req.headers(), "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    if rest == "jwks.json" && method == Method::GET {
        let mut r = json_response(StatusCode::OK, &registry.keys.jwks());
        put(&mut r, "content-type", "application/jwk-set+json");
        put(&mut r, "cache-control", "public, max-age=300");
        return Ok(r);
    }
    let Some(rest) = rest.strip_prefix("subscriptions/") else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "no such control path",
        ));
    };
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let id = percent_decode(id)
        .filter(|id| valid_id(id))
        .ok_or_else(|| ApiError::bad("not a subscription id"))?;
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "INVALID_REQUEST",
                "the body is too large",
            )
        })?;
    match (&method, action) {
        (&Method::PUT, "") => create(registry, &id, &origin, &body).await,
        (&Method::GET, "") => {
            let subs = registry.lock();
            let sub = subs.by_id.get(&id).ok_or_else(ApiError::not_found)?;
            Ok(view(registry, &id, sub, &origin, StatusCode::OK))
        }
        (&Method::DELETE, "") => {
            registry
                .lock()
                .by_id
                .remove(&id)
                .ok_or_else(ApiError::not_found)?;
            Ok(no_content())
        }
        (&Method::POST, "streams") => add_streams(registry, &id, &body).await,
        (&Method::DELETE, path) if path.starts_with("streams/") => {
            let path = percent_decode(&path["streams/".len()..])
                .ok_or_else(|| ApiError::bad("not a stream path"))?;
            let mut subs = registry.lock();
            subs.by_id
                .get_mut(&id)
                .ok_or_else(ApiError::not_found)?
                .unlink_explicit(&path);
            Ok(no_content())
        }
        (&Method::POST, "claim") => claim(registry, &id, &body),
        (&Method::POST, "callback" | "ack" | "release") => {
            let token = bearer.ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "a bearer token is required",
                )
            })?;
            settle(registry, &id, action, &token, &body)
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "no such operation",
        )),
    }
}

async fn create(
    registry: &Arc<Registry>,
    id: &str,
    origin: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let config = SubConfig::parse(body, registry.config.max_links)?;
    let target = match &config.delivery {
        Delivery::Webhook { url } => Some(
            webhook::check_url(url, registry.config.allow_loopback_webhooks)
                .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "WEBHOOK_URL_REJECTED", m))?,
        ),
        Delivery::PullWake { .. } => None,
    };
    let hash = config.hash();
    {
        let subs = registry.lock();
        if let Some(sub) = subs.by_id.get(id) {
            return if sub.hash == hash {
                Ok(view(registry, id, sub, origin, StatusCode::OK))
            } else {
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "SUBSCRIPTION_EXISTS",
                    "the subscription exists with another configuration",
                ))
            };
        }
        if subs.by_id.len() >= registry.config.max_subscriptions {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "LIMIT_REACHED",
                "too many subscriptions",
            ));
        }
    }
    // Existing streams are linked at their tails: no replay of history (section 6.2).
    let tails: BTreeMap<String, u64> = registry
        .store
        .local_streams()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut subs = registry.lock();
    if let Some(sub) = subs.by_id.get(id) {
        // Created meanwhile by another request.
        return if sub.hash == hash {
            Ok(view(registry, id, sub, origin, StatusCode::OK))
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "SUBSCRIPTION_EXISTS",
                "the subscription exists with another configuration",
            ))
        };
    }
    subs.next_instance += 1;
    let mut sub = Sub {
        hash,
        instance: subs.next_instance,
        created_at_ms: crate::memory::unix_ms(),
        target,
        callback_url: registry.url(origin, &format!("subscriptions/{id}/callback")),
        links: BTreeMap::new(),
        generation: 0,
        wake: None,
        failed: false,
        attempts: 0,
        retry_at: None,
        config,
    };
    let max = registry.config.max_links;
    for (path, tail) in &tails {
        if sub.config.matches(path) && !sub.observe(path, *tail, 0, max) && sub.links.len() >= max {
            break;
        }
    }
    for path in sub.config.streams.clone() {
        let tail = tails.get(&path).copied().unwrap_or(0);
        if !sub.link_explicit(&path, tail, max) {
            return Err(ApiError::bad("too many streams"));
        }
    }
    let r = view(registry, id, &sub, origin, StatusCode::CREATED);
    subs.by_id.insert(id.to_owned(), sub);
    Ok(r)
}

async fn add_streams(
    registry: &Arc<Registry>,
    id: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::bad("the body is not JSON"))?;
    let paths = model::stream_list(
        v.get("streams").unwrap_or(&Value::Null),
        registry.config.max_links,
    )?;
    if !registry.lock().by_id.contains_key(id) {
        return Err(ApiError::not_found());
    }
    let mut tails = Vec::with_capacity(paths.len());
    for path in paths {
        let tail = match registry.store.head(&path).await {
            Ok(Head::Found(meta)) => meta.tail,
            _ => 0,
        };
        tails.push((path, tail));
    }
    let mut subs = registry.lock();
    let sub = subs.by_id.get_mut(id).ok_or_else(ApiError::not_found)?;
    for (path, tail) in tails {
        if !sub.link_explicit(&path, tail, registry.config.max_links) {
            return Err(ApiError::bad("too many streams"));
        }
    }
    Ok(no_content())
}

/// A pull-wake worker claims the wake in flight, or a new one over pending work
/// (protocol section 7.2).
fn claim(registry: &Arc<Registry>, id: &str, body: &[u8]) -> Result<Response, ApiError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let worker = v
        .get("worker")
        .and_then(Value::as_str)
        .unwrap_or("anonymous");
    if worker.len() > model::MAX_ID {
        return Err(ApiError::bad("worker is too long"));
    }
    let now = Instant::now();
    let (r, effects) = {
        let mut subs = registry.lock();
        let sub = subs.by_id.get_mut(id).ok_or_else(ApiError::not_found)?;
        if !matches!(sub.config.delivery, Delivery::PullWake { .. }) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "WRONG_DELIVERY_TYPE",
                "not a pull-wake subscription",
            ));
        }
        if let Some(wake) = &sub.wake {
            match (&wake.holder, wake.lease_until) {
                (Some(holder), Some(until)) if until > now => {
                    return Err(ApiError {
                        status: StatusCode::CONFLICT,
                        body: json!({ "error": { "code": "ALREADY_CLAIMED", "current_holder": holder, "generation": sub.generation } }),
                    });
                }
                // An expired lease its timer has not cleared yet.
                (Some(_), _) => sub.wake = None,
                (None, _) => {}
            }
        }
        let mut effects = Vec::new();
        if sub.wake.is_none() {
            // Work may be pending with no wake (after an expiry): issue one, the
            // claim takes it at once.
            effects = sub.maybe_wake(id, now, &registry.keys);
        }
        let ttl = Duration::from_millis(sub.config.lease_ttl_ms);
        let snapshot: Vec<(String, u64)> =
            sub.links.iter().map(|(p, l)| (p.clone(), l.tail)).collect();
        let streams = sub.streams_view(true);
        let (generation, instance) = (sub.generation, sub.instance);
        let Some(wake) = sub.wake.as_mut() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "NO_PENDING_WORK",
                "nothing to claim",
            ));
        };
        wake.holder = Some(worker.to_owned());
        wake.lease_until = Some(now + ttl);
        wake.snapshot = snapshot;
        let token = registry.keys.token(instance, id, generation, &wake.id);
        effects.push(Effect::LeaseTimer {
            id: id.to_owned(),
            instance,
            wake_id: wake.id.clone(),
            at: now + ttl,
        });
        let body = json!({
            "wake_id": wake.id, "generation": generation, "token": token,
            "streams": streams, "lease_ttl_ms": sub.config.lease_ttl_ms,
        });
        (json_response(StatusCode::OK, &body), effects)
    };
    registry.run(effects);
    Ok(r)
}

/// A webhook callback, a pull-wake ack (heartbeat without `done`) or a release,
/// fenced by token, generation and wake id (protocol section 7.3).
fn settle(
    registry: &Arc<Registry>,
    id: &str,
    action: &str,
    token: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::bad("the body is not JSON"))?;
    let wake_id = v
        .get("wake_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("wake_id is required"))?;
    let generation = v
        .get("generation")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::bad("generation is required"))?;
    let done = action == "release" || v.get("done").and_then(Value::as_bool) == Some(true);
    let mut acks = Vec::new();
    if action != "release" {
        for ack in v
            .get("acks")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let stream = ack.get("stream").and_then(Value::as_str);
            let offset = ack
                .get("offset")
                .and_then(Value::as_str)
                .and_then(wire::parse_offset);
            match (stream, offset) {
                (Some(s), Some(o)) => acks.push((s.to_owned(), o)),
                _ => return Err(ApiError::bad("each ack needs a stream and an offset")),
            }
        }
    }
    let now = Instant::now();
    let (next_wake, effects) = {
        let mut subs = registry.lock();
        let sub = subs.by_id.get_mut(id).ok_or_else(ApiError::not_found)?;
        let webhook = matches!(sub.config.delivery, Delivery::Webhook { .. });
        if webhook != (action == "callback") && !(webhook && action == "release") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "WRONG_DELIVERY_TYPE",
                "use callback for webhooks, ack and release for pull-wake",
            ));
        }
        let current = sub.wake.as_ref().filter(|w| {
            w.id == wake_id
                && generation == sub.generation
                && w.holder.is_some()
                && w.lease_until.is_some_and(|u| u > now)
        });
        let Some(wake) = current else {
            return Err(ApiError::fenced());
        };
        if !registry
            .keys
            .check_token(token, sub.instance, id, sub.generation, &wake.id)
        {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "the token is not this wake's",
            ));
        }
        if acks.iter().any(|(s, _)| !sub.links.contains_key(s)) {
            return Err(ApiError::bad(
                "an ack names a stream the subscription does not link",
            ));
        }
        for (stream, offset) in acks {
            if let Some(link) = sub.links.get_mut(&stream) {
                link.acked = link.acked.max(offset.min(link.tail));
            }
        }
        if done {
            sub.finish_wake(false);
            let pending = sub.pending();
            (pending, sub.maybe_wake(id, now, &registry.keys))
        } else {
            let ttl = Duration::from_millis(sub.config.lease_ttl_ms);
            if let Some(wake) = sub.wake.as_mut() {
                wake.lease_until = Some(now + ttl);
            }
            (false, Vec::new())
        }
    };
    registry.run(effects);
    if action == "release" {
        return Ok(no_content());
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "ok": true, "next_wake": next_wake }),
    ))
}

fn view(registry: &Registry, id: &str, sub: &Sub, origin: &str, status: StatusCode) -> Response {
    let jwks = registry.url(origin, "jwks.json");
    json_response(status, &sub.view(id, registry.keys.kid(), &jwks))
}

fn no_content() -> Response {
    crate::http::status(StatusCode::NO_CONTENT, "")
}

/// The scheme and authority of the request, from `Host` (and `X-Forwarded-Proto`).
fn origin(headers: &HeaderMap) -> String {
    let scheme = header(headers, "x-forwarded-proto")
        .filter(|p| *p == "https")
        .unwrap_or("http");
    let host = header(headers, "host").unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Subscription ids: visible ASCII without `/`, at most 256 bytes.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= model::MAX_ID
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Percent-decodes a path segment (`None` when malformed or not UTF-8).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
