//! The AI SDK's two routes through real servers: `POST` streams a new answer (bytes as
//! they are, `x-vercel-ai-ui-message-stream: v1`), `GET {chatId}/stream` on another
//! instance replays the active answer from its start, 204 when the chat never ran or
//! its answer finished, and a new message starts a new stream; a stop on another
//! instance cancels the running answer (200) and finds nothing to stop after (204); in
//! memory and on a private redis-server.

mod support;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use resumable_stream_axum::{ai_sdk, Config, Durable, ResumableStreamContext};
use resumable_stream_testkit::sse::joined;
use support::{gated, request, serve, App, Backend, Sources};

/// The AI SDK's request body carries the chat id as `id`.
async fn chat(State(app): State<App>, body: String) -> Response {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let chat_id = body["id"].as_str().unwrap().to_owned();
    ai_sdk::start(&app.ctx, &chat_id, app.sources.take()).await
}

async fn reconnect(State(app): State<App>, Path(id): Path<String>) -> Response {
    ai_sdk::resume(&app.ctx, &id).await
}

async fn stop_route(State(app): State<App>, Path(id): Path<String>) -> Response {
    ai_sdk::stop(&app.ctx, &id).await
}

async fn server(ctx: ResumableStreamContext, sources: Sources) -> std::net::SocketAddr {
    let router = Router::new()
        .route("/api/chat", post(chat))
        .route("/api/chat/{id}/stream", get(reconnect))
        .route("/api/chat/{id}/stop", post(stop_route))
        .with_state(App { ctx, sources });
    serve(router).await
}

/// An answer in the UI message stream protocol, one part per chunk.
fn answer(text: &str) -> Vec<Bytes> {
    let mut parts = vec![
        r#"{"type":"start","messageId":"m1"}"#.to_owned(),
        r#"{"type":"text-start","id":"t1"}"#.to_owned(),
    ];
    for word in text.split_inclusive(' ') {
        parts
            .push(serde_json::json!({"type": "text-delta", "id": "t1", "delta": word}).to_string());
    }
    parts.push(r#"{"type":"text-end","id":"t1"}"#.to_owned());
    parts.push(r#"{"type":"finish"}"#.to_owned());
    parts.push("[DONE]".to_owned());
    parts
        .into_iter()
        .map(|p| Bytes::from(format!("data: {p}\n\n")))
        .collect()
}

fn post_body(chat_id: &str) -> Vec<u8> {
    serde_json::json!({"id": chat_id, "messages": [], "trigger": "submit-message"})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_streams_and_get_resumes_from_the_start_or_answers_204() {
    // Durable mode too: the reconnect reads the log, and a finished answer is still
    // 204 (the client holds it), not replayed.
    let durable = Config::default().with_durable(Durable::default());
    let setups = [Config::default(), durable]
        .into_iter()
        .flat_map(|config| Backend::both().map(|backend| (backend, config.clone())));
    for (backend, config) in setups {
        let name = format!("{} durable={}", backend.name(), config.durable().is_some());
        let sources = Sources::default();
        let a = server(backend.context(config.clone()).await, sources.clone()).await;
        let ctx_b = backend.context(config).await;
        let b = server(ctx_b.clone(), sources.clone()).await;

        // A chat that never ran.
        let never = request(b, "GET", "/api/chat/never-ran/stream", &[], b"").await;
        assert_eq!(never.status, 204, "{name}");

        // The first message: its answer waits halfway.
        let first = answer("Resumable streams survive a lost connection, and a reload. ");
        let (open, gate) = tokio::sync::oneshot::channel();
        sources.push(gated(first[..4].to_vec(), gate, first[4..].to_vec()));
        let mut posted = request(
            a,
            "POST",
            "/api/chat",
            &[("content-type", b"application/json")],
            &post_body("c1"),
        )
        .await;
        assert_eq!(posted.status, 200, "{name}");
        assert_eq!(posted.header("x-vercel-ai-ui-message-stream"), Some("v1"));
        assert_eq!(posted.header("content-type"), Some("text/event-stream"));
        let mut received = Vec::new();
        while received.len() < joined(&first[..4]).len() {
            received.extend(posted.next_piece().await.expect("the first parts"));
        }
        // The connection is cut here (the AI SDK then reconnects): dropped.
        drop(posted);

        // Another instance resumes the chat from its start.
        let resumed = request(b, "GET", "/api/chat/c1/stream", &[], b"").await;
        assert_eq!(resumed.status, 200, "{name}");
        assert_eq!(resumed.header("x-vercel-ai-ui-message-stream"), Some("v1"));
        open.send(()).unwrap();
        assert_eq!(
            resumed.body().await,
            joined(&first),
            "{name}: the whole answer, exactly"
        );
        let first_stream = ctx_b.active_stream("c1").await.unwrap().expect("recorded");
        assert!(first_stream.starts_with("c1:"), "{first_stream}");

        // Finished: 204.
        assert_eq!(
            request(b, "GET", "/api/chat/c1/stream", &[], b"")
                .await
                .status,
            204
        );
        assert_eq!(
            request(a, "GET", "/api/chat/c1/stream", &[], b"")
                .await
                .status,
            204
        );

        // A new message in the same chat is a new stream; a reconnect finds it.
        let second = answer("A second answer. ");
        let (open, gate) = tokio::sync::oneshot::channel();
        sources.push(gated(second[..2].to_vec(), gate, second[2..].to_vec()));
        let posted = request(a, "POST", "/api/chat", &[], &post_body("c1")).await;
        assert_eq!(posted.status, 200);
        let second_stream = ctx_b.active_stream("c1").await.unwrap().expect("recorded");
        assert_ne!(first_stream, second_stream);
        let resumed = request(b, "GET", "/api/chat/c1/stream", &[], b"").await;
        assert_eq!(resumed.status, 200);
        open.send(()).unwrap();
        assert_eq!(resumed.body().await, joined(&second), "{name}");
        assert_eq!(posted.body().await, joined(&second), "{name}");
        assert_eq!(
            request(b, "GET", "/api/chat/c1/stream", &[], b"")
                .await
                .status,
            204
        );
        println!("{name}: {first_stream} then {second_stream}: resumed whole on the other instance, then 204");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_answer_ends_with_an_error_part_and_bad_chat_ids_are_400() {
    let sources = Sources::default();
    let a = server(ResumableStreamContext::in_memory(), sources.clone()).await;
    let failing = stream::iter([Ok(Bytes::from("data: {\"type\":\"start\"}\n\n"))])
        .chain(stream::iter([Err(std::io::Error::other(
            "the model failed",
        ))]))
        .boxed();
    sources.push(failing);
    let body = request(a, "POST", "/api/chat", &[], &post_body("c2"))
        .await
        .body()
        .await;
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.starts_with("data: {\"type\":\"start\"}\n\n"),
        "{body:?}"
    );
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    let part: serde_json::Value =
        serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(part["type"], "error");
    assert!(
        part["errorText"]
            .as_str()
            .unwrap()
            .contains("the model failed"),
        "{part}"
    );

    let long = "x".repeat(ai_sdk::MAX_CHAT_ID_LEN + 1);
    assert_eq!(
        request(a, "POST", "/api/chat", &[], &post_body(&long))
            .await
            .status,
        400
    );
    assert_eq!(
        request(a, "POST", "/api/chat", &[], &post_body(""))
            .await
            .status,
        400
    );
    assert_eq!(
        request(a, "GET", &format!("/api/chat/{long}/stream"), &[], b"")
            .await
            .status,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_another_instance_cancels_the_running_answer_then_answers_204() {
    for backend in Backend::both() {
        let name = backend.name();
        let sources = Sources::default();
        let a = server(backend.context(Config::default()).await, sources.clone()).await;
        let b = server(backend.context(Config::default()).await, sources.clone()).await;

        // Nothing ever ran in this chat: nothing to stop.
        let none = request(b, "POST", "/api/chat/never-ran/stop", &[], b"").await;
        assert_eq!(none.status, 204, "{name}");

        // An answer that waits after its first parts, forever unless stopped (the gate
        // is kept open until the end of the test).
        let parts = answer("An answer that is stopped before its end. ");
        let (_keep_open, gate) = tokio::sync::oneshot::channel::<()>();
        sources.push(gated(parts[..3].to_vec(), gate, parts[3..].to_vec()));
        let mut posted = request(a, "POST", "/api/chat", &[], &post_body("s1")).await;
        assert_eq!(posted.status, 200, "{name}");
        let mut received = Vec::new();
        while received.len() < joined(&parts[..3]).len() {
            received.extend(posted.next_piece().await.expect("the first parts"));
        }

        // Stopped from the other instance.
        let stopped = request(b, "POST", "/api/chat/s1/stop", &[], b"").await;
        assert_eq!(stopped.status, 200, "{name}");
        assert_eq!(stopped.header("content-type"), Some("application/json"));
        assert_eq!(
            stopped.body().await,
            ai_sdk::STOPPED_BODY.as_bytes(),
            "{name}"
        );

        // The POST's reader ends with an error part, no finish.
        received.extend(posted.body().await);
        let text = String::from_utf8(received).unwrap();
        assert!(
            text.starts_with(std::str::from_utf8(&joined(&parts[..3])).unwrap()),
            "{name}: {text:?}"
        );
        assert!(!text.contains(r#""type":"finish""#), "{name}: {text:?}");
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        let part: serde_json::Value =
            serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(part["type"], "error", "{name}: {text:?}");

        // Then: nothing to resume, nothing to stop, on either instance.
        for at in [a, b] {
            assert_eq!(
                request(at, "GET", "/api/chat/s1/stream", &[], b"")
                    .await
                    .status,
                204,
                "{name}"
            );
            assert_eq!(
                request(at, "POST", "/api/chat/s1/stop", &[], b"")
                    .await
                    .status,
                204,
                "{name}"
            );
        }

        // A finished answer is not stopped: 204.
        let done = answer("Short. ");
        sources.push(stream::iter(done.clone().into_iter().map(Ok)).boxed());
        let posted = request(a, "POST", "/api/chat", &[], &post_body("s2")).await;
        assert_eq!(posted.body().await, joined(&done), "{name}");
        assert_eq!(
            request(b, "POST", "/api/chat/s2/stop", &[], b"")
                .await
                .status,
            204,
            "{name}"
        );

        // A chat id that cannot be one: 400.
        let long = "x".repeat(ai_sdk::MAX_CHAT_ID_LEN + 1);
        assert_eq!(
            request(b, "POST", &format!("/api/chat/{long}/stop"), &[], b"")
                .await
                .status,
            400,
            "{name}"
        );
        println!("{name}: stopped from the other instance (200, error part, no finish), then 204");
    }
}
