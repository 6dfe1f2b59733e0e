//! Model check of the in-process store's blocking reads: a read that finds nothing
//! registers for the next write under the store's lock, so an entry added at any
//! moment, before, during or after the read looks, is never missed (a missed one
//! would leave the reader parked for ever, which loom reports).
//! `RUSTFLAGS="--cfg loom" cargo test -p resumable-stream-driver --release --test loom_blocking`.

#![cfg(loom)]

use bytes::Bytes;
use loom::thread;
use resumable_stream::{Command, CommandId, Op, Reply, StreamId};
use resumable_stream_driver::{MemoryBackend, Transport};

#[test]
fn a_parked_read_never_misses_an_entry() {
    loom::model(|| {
        let backend = MemoryBackend::new();
        let reader = backend.connect();
        let writer = {
            let backend = backend.clone();
            thread::spawn(move || {
                let xadd = Op::XAdd {
                    create: true,
                    key: Bytes::from_static(b"s"),
                    id: StreamId::new(1, 0),
                    fields: vec![Bytes::from_static(b"f"), Bytes::from_static(b"v")],
                };
                backend.connect().run(&xadd).is_ok()
            })
        };
        let read = Command {
            id: CommandId(1),
            op: Op::XRead {
                count: 1,
                block_millis: 1000,
                streams: vec![(Bytes::from_static(b"s"), StreamId::new(0, 0))],
            },
        };
        let reply = loom::future::block_on(reader.blocking(&read));
        assert!(matches!(reply, Ok(Reply::Array(_))), "{reply:?}");
        assert!(writer.join().unwrap());
    });
}
