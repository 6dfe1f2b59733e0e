//! SSE through a real axum server and a raw HTTP client on loopback, parsed as a
//! browser does: adversarial chunks arrive exactly, ids are chunk positions that
//! resume exactly, keep-alives while the producer is silent, and a final `end` or
//! `error` event; in memory and on a private redis-server.

mod support;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use resumable_stream::skip::catch_up;
use resumable_stream_axum::{
    sse_body, Config, Durable, ResumableStreamContext, SkipUnit, SseOptions,
};
use resumable_stream_testkit::sse::{adversarial, check_well_formed, joined};
use std::time::Duration;
use support::{
    gated, read_sse, read_until_chunks, request, serve, sse_routes, App, Backend, Sources,
    SseParser,
};

/// Keep-alives every 100 ms of silence.
async fn chatty(State(app): State<App>, Path(id): Path<String>) -> Response {
    let source = app.sources.take();
    match app.ctx.resumable_stream(&id, move || source, None).await {
        Ok(Some(stream)) => {
            let options = SseOptions::default().keep_alive(Some(Duration::from_millis(100)));
            sse_body(app.ctx.sse(stream, options))
        }
        other => panic!("{:?}", other.map(|s| s.is_some())),
    }
}

async fn server(ctx: ResumableStreamContext, sources: Sources) -> std::net::SocketAddr {
    let router = sse_routes()
        .route("/k/{id}", get(chatty))
        .with_state(App { ctx, sources });
    serve(router).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_chunks_arrive_exactly_and_resume_exactly() {
    for backend in Backend::both() {
        let sources = Sources::default();
        let a = server(backend.context(Config::default()).await, sources.clone()).await;
        // A second instance on the same backend serves the resumes.
        let b = server(backend.context(Config::default()).await, sources.clone()).await;
        let chunks = adversarial();
        let half = chunks.len() / 2;
        let (open, gate) = tokio::sync::oneshot::channel();
        sources.push(gated(
            chunks[..half].to_vec(),
            gate,
            chunks[half..].to_vec(),
        ));

        let mut whole = request(a, "GET", "/s/adv", &[], b"").await;
        assert_eq!(whole.status, 200);
        assert_eq!(whole.header("content-type"), Some("text/event-stream"));
        assert_eq!(whole.header("cache-control"), Some("no-cache"));
        assert_eq!(whole.header("x-accel-buffering"), Some("no"));
        let mut parser = SseParser::default();
        read_until_chunks(&mut whole, &mut parser, half).await;

        // Mid-stream: by Last-Event-ID (a chunk position), by UTF-16 offset, from the start.
        let by_id = request(b, "GET", "/s/adv", &[("last-event-id", b"3")], b"").await;
        let units = 40;
        let by_offset = request(b, "GET", &format!("/r/adv?offset={units}"), &[], b"").await;
        let from_start = request(b, "GET", "/r/adv", &[], b"").await;
        for response in [&by_id, &by_offset, &from_start] {
            assert_eq!(response.status, 200, "{}", backend.name());
        }
        open.send(()).unwrap();

        while let Some(piece) = whole.next_piece().await {
            parser.feed(&piece);
        }
        let by_id = read_sse(by_id).await;
        let by_offset = read_sse(by_offset).await;
        let from_start = read_sse(from_start).await;

        assert_eq!(
            parser.chunks(),
            chunks.iter().map(|c| c.to_vec()).collect::<Vec<_>>()
        );
        assert_eq!(parser.retry, Some(1000));
        check_well_formed(&parser, chunks.len() as u64, true, "end");
        assert_eq!(joined(&by_id.chunks()), joined(&chunks[3..]));
        check_well_formed(&by_id, chunks.len() as u64, false, "end");
        let rest = catch_up(&chunks, units, SkipUnit::Utf16);
        assert_eq!(joined(&by_offset.chunks()), rest.to_vec());
        assert_eq!(joined(&from_start.chunks()), joined(&chunks));
        check_well_formed(&from_start, chunks.len() as u64, false, "end");
        check_well_formed(&by_offset, chunks.len() as u64, false, "end");
        let bytes_events = parser
            .events
            .iter()
            .filter(|e| e.event_type == "bytes")
            .count();
        println!(
            "{}: {} chunks ({bytes_events} as base64), resumed exactly by Last-Event-ID 3, offset {units} and from the start",
            backend.name(),
            chunks.len()
        );

        // Finished: 204, which stops a browser's EventSource from reconnecting.
        let done = request(b, "GET", "/s/adv", &[], b"").await;
        assert_eq!(done.status, 204);
        assert_eq!(request(b, "GET", "/r/adv", &[], b"").await.status, 204);
        assert_eq!(request(a, "GET", "/r/nobody", &[], b"").await.status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stream_ends_with_an_error_event_and_a_finished_one_with_end() {
    for backend in Backend::both() {
        let sources = Sources::default();
        let a = server(backend.context(Config::default()).await, sources.clone()).await;
        let b = server(backend.context(Config::default()).await, sources.clone()).await;
        let (open, gate) = tokio::sync::oneshot::channel();
        let failing = gated(vec![Bytes::from("partial")], gate, vec![])
            .chain(stream::iter([Err(std::io::Error::other(
                "the model\r\nfailed",
            ))]))
            .boxed();
        sources.push(failing);
        let mut local = request(a, "GET", "/s/fails", &[], b"").await;
        let mut parser = SseParser::default();
        read_until_chunks(&mut local, &mut parser, 1).await;
        let remote = request(b, "GET", "/s/fails", &[("last-event-id", b"0")], b"").await;
        assert_eq!(remote.status, 200);
        open.send(()).unwrap();
        while let Some(piece) = local.next_piece().await {
            parser.feed(&piece);
        }
        let remote = read_sse(remote).await;
        for (who, parser) in [("local", &parser), ("remote", &remote)] {
            check_well_formed(parser, 1, who == "local", "error");
            let error = parser.last().unwrap();
            assert!(error.data.contains("the model  failed"), "{who}: {error:?}");
            assert!(!error.data.contains(['\r', '\n']));
            assert_eq!(parser.chunks(), [b"partial".to_vec()]);
            println!("{} {who}: error event {:?}", backend.name(), error.data);
        }
        sources.push(stream::iter([Ok(Bytes::from("whole"))]).boxed());
        let ended = read_sse(request(a, "GET", "/s/ends", &[], b"").await).await;
        check_well_formed(&ended, 1, true, "end");
        assert_eq!(ended.last().unwrap().data, "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_flow_while_the_producer_is_silent() {
    let sources = Sources::default();
    let a = server(ResumableStreamContext::in_memory(), sources.clone()).await;
    let silent = stream::iter([Ok(Bytes::from("before "))])
        .chain(stream::once(async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok(Bytes::from("after"))
        }))
        .boxed();
    sources.push(silent);
    let parser = read_sse(request(a, "GET", "/k/quiet", &[], b"").await).await;
    println!(
        "{} keep-alive comments in 700 ms of silence (one per 100 ms)",
        parser.comments
    );
    assert!(
        parser.comments >= 2,
        "keep-alives while silent: {}",
        parser.comments
    );
    assert_eq!(joined(&parser.chunks()), b"before after");
    check_well_formed(&parser, 2, true, "end");
}

/// Durable mode: a reload after the end replays the whole answer (200, not 204), by
/// `Last-Event-ID` from any chunk position, on another instance; a position past the
/// end is 416.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_a_reload_after_the_end_replays_the_answer() {
    let durable = Config::default().with_durable(Durable::default());
    for backend in Backend::both() {
        let sources = Sources::default();
        let a = server(backend.context(durable.clone()).await, sources.clone()).await;
        let b = server(backend.context(durable.clone()).await, sources.clone()).await;
        let chunks = adversarial();
        sources.push(stream::iter(chunks.clone().into_iter().map(Ok)).boxed());
        let produced = read_sse(request(a, "GET", "/s/dur", &[], b"").await).await;
        assert_eq!(joined(&produced.chunks()), joined(&chunks));

        let reload = request(b, "GET", "/s/dur", &[], b"").await;
        assert_eq!(reload.status, 200, "{}: a reload replays", backend.name());
        let reload = read_sse(reload).await;
        assert_eq!(joined(&reload.chunks()), joined(&chunks));
        check_well_formed(&reload, chunks.len() as u64, false, "end");
        let from_3 =
            read_sse(request(b, "GET", "/r/dur", &[("last-event-id", b"3")], b"").await).await;
        assert_eq!(joined(&from_3.chunks()), joined(&chunks[3..]));
        check_well_formed(&from_3, chunks.len() as u64, false, "end");
        let past = format!("{}", chunks.len() + 5);
        let past = request(
            b,
            "GET",
            "/r/dur",
            &[("last-event-id", past.as_bytes())],
            b"",
        )
        .await;
        assert_eq!(past.status, 416, "{}", backend.name());
        println!(
            "{}: replayed whole after the end, and from Last-Event-ID 3",
            backend.name()
        );
    }
}
