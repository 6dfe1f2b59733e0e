//! Allocations per chunk through the tokio driver, counted by a global allocator:
//! a source's chunks go through the producer loop, the hub, the reader's mailbox and
//! the reader, in steady state, and cost no allocation of ours beyond the chunk's own
//! `Bytes` (made before the count). Counts, not times: this fails when a per-chunk
//! allocation creeps into that path, on any machine. `tests/allocations.rs` at the
//! workspace root counts the engine alone.

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use resumable_stream_testkit::redis_server::RedisServer;
use resumable_stream_tokio::ResumableStreamContext;
use stats_alloc::{Region, Stats, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::convert::Infallible;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Chunks read before the count starts: the producer loop's batch, the hub's staging
/// queues and the reader's mailbox reach their working size (a few batches of 512).
const WARM_UP: usize = 4_096;
/// Chunks counted.
const COUNTED: usize = 20_000;

/// The allocator's counters when the source gave chunk `WARM_UP`: the count starts
/// there, so that it covers the production of the counted chunks as well as their
/// reading, whichever runs ahead.
static COUNT_FROM: std::sync::Mutex<Option<Stats>> = std::sync::Mutex::new(None);

fn start_count() {
    let now = GLOBAL.stats();
    *COUNT_FROM.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
}

/// What was allocated since [`start_count`].
fn counted() -> Stats {
    let now = GLOBAL.stats();
    let from = COUNT_FROM
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .expect("the source started the count");
    now - from
}

/// Peerbench's chunk `i`: 64 ASCII bytes.
fn chunk(i: usize) -> Bytes {
    Bytes::from(format!(
        "{i:08}:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQR\n"
    ))
}

/// How a test's source gives its chunks.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// Always ready: the producer loop feeds whole batches.
    Ready,
    /// Yields to the runtime before every chunk: one chunk per feed, per routing and
    /// per mailbox send.
    Yielding,
}

/// The chunks (starting the count at chunk `WARM_UP`), then the source stays open (as
/// a model thinking), so that the stream's end never falls inside the count.
fn source(
    chunks: Vec<Bytes>,
    pace: Pace,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let chunks = stream::iter(chunks.into_iter().enumerate()).map(|(i, chunk)| {
        if i == WARM_UP {
            start_count();
        }
        chunk
    });
    let chunks = match pace {
        Pace::Ready => chunks.left_stream(),
        Pace::Yielding => chunks
            .then(|chunk| async move {
                tokio::task::yield_now().await;
                chunk
            })
            .right_stream(),
    };
    chunks.map(Ok).chain(stream::pending())
}

/// What was allocated from the moment the source gave chunk `WARM_UP` until a reader
/// of `ctx` read the `COUNTED` chunks from there, the source paced by `pace`: the
/// reader is the stream's first caller, on a task of a current-thread runtime (a
/// server's handler). Every chunk is checked.
async fn counted_while_reading(ctx: ResumableStreamContext, stream_id: &str, pace: Pace) -> Stats {
    let chunks: Vec<Bytes> = (0..WARM_UP + COUNTED).map(chunk).collect();
    let expected = chunks.clone();
    let stream_id = stream_id.to_string();
    let reader = tokio::spawn(async move {
        let mut reader = ctx
            .resumable_stream(&stream_id, move || source(chunks, pace), None)
            .await
            .expect("the stream starts")
            .expect("a new stream");
        for (k, want) in expected.iter().enumerate() {
            let got = reader.next().await.expect("a chunk").expect("no error");
            assert_eq!(got, *want, "chunk {k}");
        }
        let counted = counted();
        // The reader, the context and the open source go after the count.
        drop(reader);
        counted
    });
    reader.await.expect("the reader task")
}

/// Runs `test` on a fresh current-thread runtime.
fn on_runtime<T>(test: impl std::future::Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(test)
}

/// What a chunk may cost without listeners: nothing per chunk. The stream's buffer
/// (the engine's `VecDeque`, doubling) grows while it is read: at most one
/// reallocation per doubling of the whole stream, log2(24,096) < 15, here allowed
/// twice over for whatever else doubles (a staging queue meeting a larger batch).
/// One allocation per chunk would be 20,000; even one per batch of 512, 40.
fn growth_bound() -> usize {
    2 * (usize::BITS - (WARM_UP + COUNTED).leading_zeros()) as usize
}

fn check(what: &str, counted: Stats) {
    let total = counted.allocations + counted.reallocations;
    println!(
        "{what}: {} allocations, {} reallocations, {} deallocations for {COUNTED} chunks \
         ({:.4} per chunk)",
        counted.allocations,
        counted.reallocations,
        counted.deallocations,
        total as f64 / COUNTED as f64
    );
    assert!(
        total <= growth_bound(),
        "{what}: {} allocations and {} reallocations for {COUNTED} chunks (bound {})",
        counted.allocations,
        counted.reallocations,
        growth_bound()
    );
}

/// One test, the cases in turn: the counters are global, so nothing else of this
/// binary may run during a count (another test starting a redis-server would be
/// counted).
#[test]
fn a_chunk_nobody_listens_to_allocates_nothing_on_its_way_to_the_reader() {
    // The allocator really is instrumented: a Vec's allocation shows.
    let region = Region::new(GLOBAL);
    let v: Vec<u8> = Vec::with_capacity(100);
    assert!(region.change().allocations >= 1, "the counter counts");
    drop(v);

    let counted = on_runtime(async {
        counted_while_reading(ResumableStreamContext::in_memory(), "ready", Pace::Ready).await
    });
    check("in memory, a ready source", counted);

    let counted = on_runtime(async {
        counted_while_reading(
            ResumableStreamContext::in_memory(),
            "yielding",
            Pace::Yielding,
        )
        .await
    });
    check("in memory, a source yielding before every chunk", counted);

    let server = RedisServer::start();
    let counted = on_runtime(async {
        let ctx = ResumableStreamContext::builder()
            .redis_url(format!("redis://127.0.0.1:{}", server.port))
            .build()
            .await
            .expect("a context on the test's redis-server");
        counted_while_reading(ctx, "on-redis", Pace::Ready).await
    });
    check("on Redis, a ready source", counted);
}
