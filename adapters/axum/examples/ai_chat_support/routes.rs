//! INTERIM: the two AI SDK routes on the tokio context, until resumable-stream-axum's
//! own helpers land (then this file goes). The chat → active stream mapping here is
//! per process, so chats are resumed on the instance that started them only.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use resumable_stream_tokio::{Position, ResumableStream, ResumableStreamContext, Resumed};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

fn chats() -> &'static Mutex<HashMap<String, String>> {
    static CHATS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    CHATS.get_or_init(Default::default)
}

fn ui_stream(reader: ResumableStream) -> Response {
    let mut response = Body::from_stream(reader).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-vercel-ai-ui-message-stream",
        HeaderValue::from_static("v1"),
    );
    response
}

pub async fn start_chat<F, S>(ctx: &ResumableStreamContext, chat_id: &str, model: F) -> Response
where
    F: FnOnce() -> S + Send + 'static,
    S: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stream_id = format!("{chat_id}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    match ctx.create_new_resumable_stream(&stream_id, model).await {
        Ok(reader) => {
            if let Ok(mut chats) = chats().lock() {
                chats.insert(chat_id.to_owned(), stream_id);
            }
            ui_stream(reader)
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

pub async fn resume_chat(ctx: &ResumableStreamContext, chat_id: &str) -> Response {
    let stream_id = chats().lock().ok().and_then(|c| c.get(chat_id).cloned());
    let Some(stream_id) = stream_id else {
        return StatusCode::NO_CONTENT.into_response();
    };
    match ctx
        .resume_existing_stream(&stream_id, Position::Start)
        .await
    {
        Ok(Resumed::Stream(reader)) => ui_stream(reader),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
