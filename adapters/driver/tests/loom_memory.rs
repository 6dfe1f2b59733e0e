//! Model checks of the in-process backend: one store behind a lock, used by several
//! contexts' threads at once (every driver's `MemoryBackend`).
//! `RUSTFLAGS="--cfg loom" cargo test -p resumable-stream-driver --release --test loom_memory`.

#![cfg(loom)]

use bytes::Bytes;
use loom::thread;
use resumable_stream::{Op, Reply};
use resumable_stream_driver::MemoryBackend;

fn incr(key: &'static str) -> Op {
    Op::Incr {
        key: Bytes::from_static(key.as_bytes()),
    }
}

/// Two instances racing for one stream (the idempotent `INCR`): exactly one of them
/// gets 1 and becomes the producer, whatever the interleaving.
#[test]
fn concurrent_incr_elects_exactly_one_producer() {
    loom::model(|| {
        let backend = MemoryBackend::new();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let backend = backend.clone();
                thread::spawn(move || {
                    let connection = backend.connect();
                    match connection.run(&incr("s")) {
                        Ok(Reply::Integer(n)) => n,
                        other => panic!("INCR answered {other:?}"),
                    }
                })
            })
            .collect();
        let mut answers: Vec<i64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        answers.sort_unstable();
        assert_eq!(answers, [1, 2]);
        let now = std::time::Instant::now();
        assert_eq!(
            backend.with_store(|store| store.get_raw(now, b"s")),
            Some(Bytes::from_static(b"2"))
        );
    });
}

/// A connection dropped on one thread while another publishes and sets keys: nothing
/// is lost from the store, and the dropped connection's subscription is gone.
#[test]
fn a_connection_dropped_while_another_writes() {
    loom::model(|| {
        let backend = MemoryBackend::new();
        let listener = backend.connect();
        let subscribe = Op::Subscribe {
            channel: Bytes::from_static(b"chunks"),
        };
        assert!(listener.run(&subscribe).is_ok());
        let writer = {
            let backend = backend.clone();
            thread::spawn(move || {
                let connection = backend.connect();
                let set = Op::Set {
                    key: Bytes::from_static(b"sentinel"),
                    value: Bytes::from_static(b"1"),
                    expire_seconds: 60,
                };
                assert!(matches!(connection.run(&set), Ok(Reply::Ok)));
                backend.publish(&b"chunks"[..], &b"hello"[..])
            })
        };
        drop(listener);
        let receivers = writer.join().unwrap();
        assert!((0..=1).contains(&receivers));
        // Once the listener is gone, nobody hears the channel.
        assert_eq!(backend.publish(&b"chunks"[..], &b"again"[..]), 0);
        let now = std::time::Instant::now();
        assert_eq!(
            backend.with_store(|store| store.get_raw(now, b"sentinel")),
            Some(Bytes::from_static(b"1"))
        );
    });
}
