//! A chat backend for the Vercel AI SDK's `useChat({ resume: true })`: a simulated
//! model's answers as resumable UI message streams.
//!
//! # Running it
//!
//! ```text
//! # In memory: one process.
//! cargo run -p resumable-stream-axum --example ai_chat -- --port 3000
//!
//! # On Redis: several instances share their chats; a chat sent to one is resumed on
//! # any other.
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-axum --example ai_chat -- --port 3000
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resumable-stream-axum --example ai_chat -- --port 3001
//! ```
//!
//! The server listens on 127.0.0.1 only; `--port` (or `PORT`) picks the port (default
//! 3000). `TOKEN_MS` sets the pause before each token (default 50 ms).
//!
//! # Routes (the contract `scripts/aisdk-test.sh` holds it to)
//!
//! - `POST /api/chat`: the body the AI SDK's `DefaultChatTransport` posts (`id`,
//!   `messages`, `trigger`, `messageId`, ...). Answers the last user message with the
//!   simulated model, in the AI SDK's UI message stream protocol: SSE events
//!   `data: {"type":"start",..}`, `text-start`, one `text-delta` per token, `text-end`,
//!   `finish`, then `data: [DONE]`, with the header `x-vercel-ai-ui-message-stream: v1`.
//!   The answer becomes the chat's active stream, resumable from any instance; a new
//!   message in the chat starts a new stream. A body the example cannot read is a 400
//!   with a one-line reason.
//! - `GET /api/chat/{id}/stream`: what `useChat({ resume: true })` asks on mount (the
//!   transport's `reconnectToStream`): the chat's active stream replayed from its start
//!   and followed to its end, or 204 when the chat has none or it has finished.
//! - `POST /api/chat/{id}/stop`: stops the chat's answer from any instance
//!   ([`ai_sdk::stop`]: 200 `{"stopped":"cancelled"}`, or 204 when nothing was
//!   running); its readers get an AI SDK
//!   `error` part and no `finish`, and a reconnect then gets 204. The AI SDK's
//!   `stop()` only closes the client's connection: a stop button calls this.
//! - `GET /api/answer?prompt=..`: `{"text": .., "tokens": n}`, the model's whole answer
//!   to a prompt, computed without streaming, for tests to compare with.
//! - `GET /`: a chat page that speaks the same protocol by hand, with a "Cut
//!   connection" button (`tests/browser/ai_chat.test.mjs` drives it).
//! - `GET /healthz`: `ok`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use resumable_stream_axum::{ai_sdk, ResumableStreamContext};
use std::collections::HashMap;
use std::time::Duration;

#[path = "../../tokio/examples/support/axum_common.rs"]
mod axum_common;
#[path = "../../tokio/examples/support/demo_common.rs"]
mod demo_common;
use axum_common::{context_from_env, page_and_health, serve_locally};
use demo_common::{port_from_args_or_env, token_interval_from_env};

#[path = "ai_chat_support/model.rs"]
mod model;
#[path = "ai_chat_support/request.rs"]
mod request;

const PAGE: &str = include_str!("ai_chat_support/page.html");

/// What every handler shares.
#[derive(Clone)]
struct App {
    ctx: ResumableStreamContext,
    token_interval: Duration,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_args_or_env(3000)?;
    let token_interval = token_interval_from_env()?;
    let ctx = context_from_env("chats").await?;

    let app = App {
        ctx,
        token_interval,
    };
    let router = page_and_health(PAGE)
        .route("/api/answer", get(answer))
        .route("/api/chat", post(chat))
        .route("/api/chat/{id}/stream", get(resume))
        .route("/api/chat/{id}/stop", post(stop))
        .with_state(app);

    serve_locally(router, port).await?;
    Ok(())
}

/// `POST /api/chat`: the model's answer to the last user message, as the chat's new
/// active stream.
async fn chat(State(app): State<App>, Json(body): Json<serde_json::Value>) -> Response {
    let request = match request::parse(&body) {
        Ok(request) => request,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    println!("chat {}: answering {:?}", request.chat_id, request.prompt);
    // The answer becomes the chat's active stream and runs to its end, whoever reads.
    let answer = model::ui_message_stream(&request.prompt, request.message_id, app.token_interval);
    ai_sdk::start(&app.ctx, &request.chat_id, answer).await
}

/// `GET /api/chat/{id}/stream`: the chat's active stream from its start, or 204.
async fn resume(State(app): State<App>, Path(chat_id): Path<String>) -> Response {
    if !request::is_plain_id(&chat_id) {
        return (StatusCode::BAD_REQUEST, "not a chat id").into_response();
    }
    ai_sdk::resume(&app.ctx, &chat_id).await
}

/// `POST /api/chat/{id}/stop`: stops the chat's answer wherever it is produced (the
/// AI SDK's `stop()` only closes the client's connection).
async fn stop(State(app): State<App>, Path(chat_id): Path<String>) -> Response {
    if !request::is_plain_id(&chat_id) {
        return (StatusCode::BAD_REQUEST, "not a chat id").into_response();
    }
    let response = ai_sdk::stop(&app.ctx, &chat_id).await;
    println!("chat {chat_id}: stop: {}", response.status());
    response
}

/// `GET /api/answer?prompt=..`.
async fn answer(Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(prompt) = query.get("prompt") else {
        return (StatusCode::BAD_REQUEST, "?prompt= is required").into_response();
    };
    let text = model::answer(prompt);
    let tokens = model::tokens(&text).count();
    Json(serde_json::json!({ "text": text, "tokens": tokens })).into_response()
}
