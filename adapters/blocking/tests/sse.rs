//! The blocking driver's SSE body (`ResumableStream::into_sse`, an `SseIter`), parsed
//! as a browser does (the WHATWG parser of `resumable_stream_testkit::sse`):
//! adversarial chunks arrive exactly, ids are chunk positions that resume exactly on
//! another instance, keep-alive comments while the producer is silent, and a final
//! `end` or `error` event; in memory and on a private redis-server.

use bytes::Bytes;
use resumable_stream::Position;
use resumable_stream_blocking::{ResumableStreamContext, Resumed, SseOptions};
use resumable_stream_testkit::sse::{adversarial, check_well_formed, joined, SseParser};
use resumable_stream_testkit::Store;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for its gate before it gives up (and fails).
const WAIT: Duration = Duration::from_secs(20);

type Item = Result<Bytes, std::io::Error>;

/// A context (an "instance") on `store`.
fn context(store: &Store) -> ResumableStreamContext {
    store
        .setup(resumable_stream::Config::default())
        .apply(ResumableStreamContext::builder())
        .build()
        .unwrap()
}

/// `first`, then a wait until `gate` is sent (or dropped), then `rest`, then `last`
/// (an error, or nothing).
fn gated(
    first: Vec<Bytes>,
    gate: mpsc::Receiver<()>,
    rest: Vec<Bytes>,
    last: Option<std::io::Error>,
) -> impl Iterator<Item = Item> + Send {
    let mut gate = Some(gate);
    first
        .into_iter()
        .map(Ok)
        .chain(std::iter::from_fn(move || {
            // Waits once, bounded: a test that never opens the gate fails, never hangs.
            let _ = gate.take()?.recv_timeout(WAIT);
            None
        }))
        .chain(rest.into_iter().map(Ok))
        .chain(last.map(Err))
}

/// Feeds `body` into a parser until it holds `n` chunk events.
fn read_until_chunks(body: &mut impl Iterator<Item = Bytes>, parser: &mut SseParser, n: usize) {
    while parser.chunks().len() < n {
        parser.feed(&body.next().expect("more of the body"));
    }
}

/// A whole body, parsed.
fn parse(body: impl Iterator<Item = Bytes>) -> SseParser {
    let mut parser = SseParser::default();
    for piece in body {
        parser.feed(&piece);
    }
    parser
}

/// The resumer's SSE body from `position`.
fn resumed_body(
    ctx: &ResumableStreamContext,
    id: &str,
    position: Position,
) -> impl Iterator<Item = Bytes> {
    match ctx.resume_existing_stream(id, position).unwrap() {
        Resumed::Stream(stream) => stream.into_sse(SseOptions::default()),
        other => panic!("expected a stream to resume, got {other:?}"),
    }
}

#[test]
fn adversarial_chunks_round_trip_exactly_and_resume_by_chunk_position() {
    for (name, store) in [("memory", Store::memory()), ("redis", Store::redis())] {
        let (a, b) = (context(&store), context(&store));
        let chunks = adversarial();
        let half = chunks.len() / 2;
        let (open, gate) = mpsc::channel();
        let source = gated(chunks[..half].to_vec(), gate, chunks[half..].to_vec(), None);
        let producer = a
            .create_new_resumable_stream("adv", move || source)
            .unwrap();
        let mut whole = producer.into_sse(SseOptions::default());
        let mut parser = SseParser::default();
        read_until_chunks(&mut whole, &mut parser, half);

        // Mid-stream, on the other instance: after chunk position 3 (a browser's
        // Last-Event-ID: 3), and from the start.
        let by_position = resumed_body(&b, "adv", Position::Chunk(3));
        let from_start = resumed_body(&b, "adv", Position::Start);
        open.send(()).unwrap();
        for piece in whole {
            parser.feed(&piece);
        }
        let by_position = parse(by_position);
        let from_start = parse(from_start);

        assert_eq!(
            parser.chunks(),
            chunks.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
            "{name}: every chunk exactly, one event each"
        );
        assert_eq!(parser.retry, Some(1000), "{name}");
        check_well_formed(&parser, chunks.len() as u64, true, "end");
        assert_eq!(
            joined(&by_position.chunks()),
            joined(&chunks[3..]),
            "{name}"
        );
        check_well_formed(&by_position, chunks.len() as u64, false, "end");
        assert_eq!(joined(&from_start.chunks()), joined(&chunks), "{name}");
        check_well_formed(&from_start, chunks.len() as u64, false, "end");
        let as_base64 = parser
            .events
            .iter()
            .filter(|e| e.event_type == "bytes")
            .count();
        println!(
            "{name}: {} chunks ({as_base64} as base64) exactly; resumed exactly after chunk 3 and from the start on the other instance",
            chunks.len()
        );
        assert!(
            matches!(
                b.resume_existing_stream("adv", Position::Start),
                Ok(Resumed::Done)
            ),
            "{name}: finished"
        );
    }
}

#[test]
fn a_failed_stream_ends_with_an_error_event_and_a_finished_one_with_end() {
    for (name, store) in [("memory", Store::memory()), ("redis", Store::redis())] {
        let (a, b) = (context(&store), context(&store));
        let (open, gate) = mpsc::channel();
        let failure = std::io::Error::other("the model\r\nfailed");
        let source = gated(vec![Bytes::from("partial")], gate, vec![], Some(failure));
        let producer = a
            .create_new_resumable_stream("fails", move || source)
            .unwrap();
        let mut local = producer.into_sse(SseOptions::default());
        let mut parser = SseParser::default();
        read_until_chunks(&mut local, &mut parser, 1);
        let remote = resumed_body(&b, "fails", Position::Chunk(0));
        open.send(()).unwrap();
        for piece in local {
            parser.feed(&piece);
        }
        let remote = parse(remote);
        for (who, parser) in [("local", &parser), ("remote", &remote)] {
            check_well_formed(parser, 1, who == "local", "error");
            let error = parser.last().unwrap();
            assert!(
                error.data.contains("the model  failed"),
                "{name} {who}: {error:?}"
            );
            assert!(!error.data.contains(['\r', '\n']), "{name} {who}: one line");
            assert_eq!(parser.chunks(), [b"partial".to_vec()], "{name} {who}");
            println!("{name} {who}: error event {:?}", error.data);
        }

        let ended = a
            .create_new_resumable_stream("ends", || [Ok::<_, std::io::Error>("whole")])
            .unwrap();
        let ended = parse(ended.into_sse(SseOptions::default().retry(None)));
        check_well_formed(&ended, 1, true, "end");
        assert_eq!(ended.last().unwrap().data, "", "{name}");
        assert_eq!(ended.retry, None, "{name}: no retry: asked");
    }
}

#[test]
fn keep_alives_flow_while_the_producer_is_silent() {
    for (name, store) in [("memory", Store::memory()), ("redis", Store::redis())] {
        let ctx = context(&store);
        let silence = Duration::from_millis(700);
        let source = [Ok::<_, std::io::Error>(Bytes::from("before "))]
            .into_iter()
            .chain(std::iter::once_with(move || {
                std::thread::sleep(silence);
                Ok(Bytes::from("after"))
            }));
        let stream = ctx
            .create_new_resumable_stream("quiet", move || source)
            .unwrap();
        let options = SseOptions::default().keep_alive(Some(Duration::from_millis(100)));
        let started = Instant::now();
        let parser = parse(stream.into_sse(options));
        println!(
            "{name}: {} keep-alive comments in {:?} of silence (one per 100 ms), body read in {:?}",
            parser.comments,
            silence,
            started.elapsed()
        );
        assert!(
            parser.comments >= 2,
            "{name}: keep-alives while silent: {}",
            parser.comments
        );
        assert_eq!(joined(&parser.chunks()), b"before after", "{name}");
        check_well_formed(&parser, 2, true, "end");
    }
}
