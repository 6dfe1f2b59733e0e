//! Criterion benches of the core: the cost of a chunk through a producer with 0, 1, 4
//! and 16 listeners; building a catch-up from a 1 MiB buffer at various skips in each
//! unit; decoding a resume request.
//!
//! ```sh
//! cargo bench -p resumable-stream --bench core
//! ```
//!
//! Speed targets live here and in `docs/performance.md`, never in timed tests.

use bytes::Bytes;
use criterion::{black_box, criterion_main, BenchmarkId, Criterion, Throughput};
use resumable_stream::skip::{catch_up, count_units};
use resumable_stream::wire::{Extension, ResumeRequest};
use resumable_stream::SkipUnit;
use std::time::{Duration, Instant};

#[path = "../tests/support/rig.rs"]
mod rig;
use rig::{chunk, Rig};

/// Chunks pushed into one rig before a fresh one is built (untimed), so the buffer
/// stays at a realistic size whatever the iteration count.
const CHUNKS_PER_RIG: u64 = 16_384;

fn producer(c: &mut Criterion) {
    let mut group = c.benchmark_group("producer_chunk");
    group.throughput(Throughput::Elements(1));
    let chunks: Vec<Bytes> = (0..CHUNKS_PER_RIG as usize).map(chunk).collect();
    for listeners in [0usize, 1, 4, 16] {
        group.bench_with_input(
            BenchmarkId::new("listeners", listeners),
            &listeners,
            |b, &listeners| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let mut rig = Rig::producer(listeners);
                        let n = left.min(CHUNKS_PER_RIG);
                        let started = Instant::now();
                        for data in &chunks[..n as usize] {
                            rig.engine.push_chunk(rig.handle, data.clone()).unwrap();
                            black_box(rig.settle());
                        }
                        total += started.elapsed();
                        left -= n;
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

/// 1 MiB of chunks: peerbench's ASCII ones, or text mixing 1- to 4-byte characters.
fn megabyte(mixed: bool) -> Vec<Bytes> {
    let text = "héllo wörld, 世界 🎉 ok\n"; // 1-, 2-, 3- and 4-byte characters
    let mut chunks = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < 1 << 20 {
        let c = if mixed {
            Bytes::from(format!("{i:06}:{text}{text}"))
        } else {
            chunk(i)
        };
        size += c.len();
        chunks.push(c);
        i += 1;
    }
    chunks
}

fn catch_ups(c: &mut Criterion) {
    let mut group = c.benchmark_group("catch_up_1MiB");
    for (name, mixed) in [("ascii", false), ("mixed", true)] {
        let chunks = megabyte(mixed);
        let bytes: usize = chunks.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        for unit in [SkipUnit::Utf16, SkipUnit::CodePoint, SkipUnit::Byte] {
            let total = count_units(&chunks, unit) as i64;
            for (at, skip) in [("0", 0), ("half", total / 2), ("end-100", total - 100)] {
                let id = format!("{name}/{}/{at}", unit.as_str());
                group.bench_function(id, |b| {
                    b.iter(|| catch_up(black_box(&chunks), black_box(skip), unit))
                });
            }
        }
    }
    group.finish();
}

fn decode_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_request");
    let v1: &[u8] =
        br#"{"listenerId":"3f2c8a1e-5b7d-4e29-9c61-0d8e4b7a2f15","skipCharacters":64000}"#;
    let extended = ResumeRequest {
        listener_id: "3f2c8a1e-5b7d-4e29-9c61-0d8e4b7a2f15".into(),
        skip: Some(64000),
        unit: Some(SkipUnit::CodePoint),
        ext: Some(Extension {
            token: "k9Qm2Zx7".into(),
            from_chunk: None,
            cancel: false,
            seq: 3,
        }),
    }
    .encode();
    group.bench_function("v1", |b| b.iter(|| ResumeRequest::decode(black_box(v1))));
    group.bench_function("extended", |b| {
        b.iter(|| ResumeRequest::decode(black_box(&extended)))
    });
    group.finish();
}

mod group {
    // criterion_group! defines an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(
        benches,
        super::producer,
        super::catch_ups,
        super::decode_request
    );
}
criterion_main!(group::benches);
