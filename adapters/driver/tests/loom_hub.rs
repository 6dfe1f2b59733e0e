//! Model checks of the hub: the engine behind one lock, fed by I/O threads and read
//! by callers at once.
//! `RUSTFLAGS="--cfg loom" cargo test -p resumable-stream-driver --release --test loom_hub`.

#![cfg(loom)]

use bytes::Bytes;
use loom::thread;
use resumable_stream::{Config, Engine, Error, Op, Reply, StreamState};
use resumable_stream_driver::hub::{Hub, Queues, Waiter};
use resumable_stream_driver::Reader;
use resumable_stream_driver::{Request, Resumed};
use std::time::Instant;

/// A hub with one resumer streaming: returns the hub, its queues, the reader and the
/// resumer's chunk channel.
fn streaming_resumer() -> (Hub, Queues, Reader, Bytes) {
    let (hub, queues) = Hub::new(Engine::new(Config::default().with_seed(1)));
    let answered: Request<Resumed<Reader>> = hub.request(
        |engine| engine.resume_existing_stream("s", None),
        Waiter::Resume,
    );
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
    // Answered by now: the wait returns at once.
    let Ok(Resumed::Stream(reader)) = answered.wait() else {
        panic!("a stream");
    };
    (hub, queues, reader, channel)
}

#[test]
fn a_state_query_is_answered_or_closed_never_lost() {
    loom::model(|| {
        let (hub, queues) = Hub::new(Engine::new(Config::default()));
        let answered: Request<StreamState> =
            hub.request(|engine| engine.has_existing_stream("s"), Waiter::State);
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
        let answer = answered.wait();
        assert!(matches!(answer, Ok(StreamState::None) | Err(Error::Closed)));
        io.join().unwrap();
        closer.join().unwrap();
    });
}

#[test]
fn messages_racing_a_dropped_reader_deliver_a_prefix_and_never_deadlock() {
    loom::model(|| {
        let (hub, _queues, mut reader, channel) = streaming_resumer();
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
        let first = reader.next_blocking();
        assert_eq!(first.map(Result::unwrap), Some(Bytes::from_static(b"a")));
        // Detaches the reader from the engine (it has not finished).
        drop(reader);
        io.join().unwrap();
    });
}

#[test]
fn closing_while_messages_arrive_ends_the_reader_with_closed_after_a_prefix() {
    loom::model(|| {
        let (hub, _queues, mut reader, channel) = streaming_resumer();
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
            match reader.next_blocking() {
                Some(Ok(chunk)) => got.extend_from_slice(&chunk),
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

/// A producer whose SUBSCRIBE was just answered, with a starter whose thread feeds
/// "a" and the end: returns the hub, its queues, the request, the source thread's
/// join handle (once the starter ran) and the `SET "1"` to answer.
fn starting_producer() -> (
    Hub,
    Queues,
    Request<Reader>,
    loom::sync::mpsc::Receiver<thread::JoinHandle<()>>,
    resumable_stream::Command,
) {
    use resumable_stream_driver::hub::Starter;
    use resumable_stream_driver::production::{Production, SourceEnd};
    let (hub, queues) = Hub::new(Engine::new(Config::default().with_seed(1)));
    let (feeder, fed) = loom::sync::mpsc::channel();
    let starter: Starter = Box::new(move |hub, handle| {
        let mut production = Production::new(hub, handle);
        let source = thread::spawn(move || {
            production.feed([Bytes::from_static(b"a")], Some(SourceEnd::Finished));
        });
        let _ = feeder.send(source);
    });
    let answered: Request<Reader> = hub.request(
        |engine| engine.create_new_resumable_stream("s"),
        |answer| Waiter::Create { answer, starter },
    );
    let subscribe = queues.subscriptions.try_recv().unwrap().unwrap();
    hub.with_engine(|engine| engine.handle_reply(Instant::now(), subscribe.id, Ok(Reply::Ok)));
    let set_active = queues.commands.try_recv().unwrap().unwrap();
    (hub, queues, answered, fed, set_active)
}

/// Reads a reader to its end, as a blocking driver does: the bytes and how it ended.
fn read_to_end(mut reader: Reader) -> (Vec<u8>, Option<Result<Bytes, Error>>) {
    let mut got = Vec::new();
    loop {
        match reader.next_blocking() {
            Some(Ok(data)) => got.extend_from_slice(&data),
            ending => return (got, ending),
        }
    }
}

/// The producer-start path: the engine says "you produce", the hub runs the starter
/// after its unlock, and the starter's thread feeds the source while the I/O thread
/// answers Redis. The reader gets the whole stream and its end; the source's thread
/// never blocks on the hub.
#[test]
fn a_started_producer_feeds_its_reader_to_the_end() {
    loom::model(|| {
        let (hub, queues, answered, fed, set_active) = starting_producer();
        // The SET's reply starts the stream: the starter runs, after the unlock.
        hub.handle_replies([set_active], vec![Ok(Reply::Ok)]);
        let Ok(reader) = answered.wait() else {
            panic!("a stream");
        };
        // Redis answers the SET "DONE" the source's end causes.
        let set_done = queues.commands.recv_blocking().expect("SET DONE");
        hub.handle_replies([set_done], vec![Ok(Reply::Ok)]);
        assert_eq!(read_to_end(reader), (b"a".to_vec(), None));
        fed.recv().unwrap().join().unwrap();
    });
}

/// The same while the context closes: the reader gets a prefix of the stream, then
/// its end or `Closed`; nothing hangs.
#[test]
fn a_producer_starting_while_the_context_closes_ends_its_reader() {
    loom::model(|| {
        let (hub, queues, answered, fed, set_active) = starting_producer();
        let closer = {
            let hub = hub.clone();
            thread::spawn(move || hub.close())
        };
        hub.handle_replies([set_active], vec![Ok(Reply::Ok)]);
        let reader = match answered.wait() {
            Ok(reader) => Some(reader),
            Err(Error::Closed) => None,
            Err(error) => panic!("a stream or Closed, not {error:?}"),
        };
        // Redis: every later command (the SET "DONE") is answered, until the queue closes.
        while let Some(command) = queues.commands.recv_blocking() {
            hub.handle_replies([command], vec![Ok(Reply::Ok)]);
        }
        if let Some(reader) = reader {
            let (got, ending) = read_to_end(reader);
            assert!(got == b"a" || got.is_empty(), "a prefix: {got:?}");
            assert!(
                matches!(ending, None | Some(Err(Error::Closed))),
                "the end or Closed: {ending:?}"
            );
        }
        closer.join().unwrap();
        if let Ok(source) = fed.try_recv() {
            source.join().unwrap();
        }
    });
}
