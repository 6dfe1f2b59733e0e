//! Model checks of the hub: the engine behind one lock, fed by I/O threads and read
//! by callers at once.
//! `RUSTFLAGS="--cfg loom" cargo test -p resumable-stream-driver --release --test loom_hub`.

#![cfg(loom)]

use bytes::Bytes;
use loom::sync::Arc;
use loom::thread;
use resumable_stream::{Config, Engine, Error, Op, Reply, StreamState};
use resumable_stream_driver::hub::{Answer, Chunk, Hub, Queues};
use std::time::Instant;

/// A hub with one resumer streaming: returns the hub, its queues, the reader's
/// mailbox and the resumer's chunk channel.
fn streaming_resumer() -> (
    Arc<Hub>,
    Queues,
    resumable_stream_driver::mailbox::Receiver<Result<Chunk, Error>>,
    Bytes,
) {
    let (hub, queues) = Hub::new(Engine::new(Config::default().with_seed(1)));
    let (_, answered) = hub.request(|engine| engine.resume_existing_stream("s", None), None);
    let get = queues.commands.try_recv().unwrap().unwrap();
    hub.handle_replies([get], vec![Ok(Reply::Data(Bytes::from_static(b"1")))]);
    let subscribe = queues.subscriptions.try_recv().unwrap().unwrap();
    let Op::Subscribe { channel } = subscribe.op.clone() else {
        panic!("a SUBSCRIBE");
    };
    hub.with_engine(|engine| engine.handle_reply(Instant::now(), subscribe.id, Ok(Reply::Ok)));
    // The acknowledgement (the catch-up) starts the stream.
    hub.with_engine(|engine| {
        engine.handle_message(Instant::now(), &channel, Bytes::from_static(b"a"))
    });
    let Ok(Answer::Stream(_, reader)) = answered.try_recv().unwrap().unwrap() else {
        panic!("a stream");
    };
    (hub, queues, reader, channel)
}

#[test]
fn a_state_query_is_answered_or_closed_never_lost() {
    loom::model(|| {
        let (hub, queues) = Hub::new(Engine::new(Config::default()));
        let (_, answered) = hub.request(|engine| engine.has_existing_stream("s"), None);
        let io = {
            let hub = hub.clone();
            thread::spawn(move || {
                if let Ok(Some(get)) = queues.commands.try_recv() {
                    hub.handle_replies([get], vec![Ok(Reply::Nil)]);
                }
            })
        };
        let closer = {
            let hub = hub.clone();
            thread::spawn(move || hub.close())
        };
        let answer = answered.recv_blocking().expect("an answer, not a hang");
        assert!(matches!(
            answer,
            Ok(Answer::State(StreamState::None)) | Err(Error::Closed)
        ));
        io.join().unwrap();
        closer.join().unwrap();
    });
}

#[test]
fn messages_racing_a_dropped_reader_deliver_a_prefix_and_never_deadlock() {
    loom::model(|| {
        let (hub, _queues, reader, channel) = streaming_resumer();
        let io = {
            let hub = hub.clone();
            thread::spawn(move || {
                for chunk in [&b"b"[..], b"c"] {
                    hub.with_engine(|engine| {
                        engine.handle_message(Instant::now(), &channel, Bytes::from_static(chunk))
                    });
                }
            })
        };
        let first = reader.recv_blocking();
        assert_eq!(
            first.map(|item| item.unwrap().data),
            Some(Bytes::from_static(b"a"))
        );
        drop(reader);
        hub.drop_reader(resumable_stream::Handle(0));
        io.join().unwrap();
    });
}

#[test]
fn closing_while_messages_arrive_ends_the_reader_with_closed_after_a_prefix() {
    loom::model(|| {
        let (hub, _queues, reader, channel) = streaming_resumer();
        let io = {
            let hub = hub.clone();
            thread::spawn(move || {
                hub.with_engine(|engine| {
                    engine.handle_message(Instant::now(), &channel, Bytes::from_static(b"b"))
                });
            })
        };
        let closer = {
            let hub = hub.clone();
            thread::spawn(move || hub.close())
        };
        let mut got = Vec::new();
        let ending = loop {
            match reader.recv_blocking() {
                Some(Ok(chunk)) => got.extend_from_slice(&chunk.data),
                other => break other,
            }
        };
        io.join().unwrap();
        closer.join().unwrap();
        assert!(
            got == b"a" || got == b"ab",
            "a prefix of the stream, in order"
        );
        assert!(matches!(ending, Some(Err(Error::Closed))), "{ending:?}");
    });
}
