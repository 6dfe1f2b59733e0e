//! Allocations per chunk on the producer path, counted by a global allocator: a chunk
//! costs nothing beyond its own `Bytes` when nobody listens, and O(1) per listener.
//! Counts, not times: this fails when allocations per chunk regress, on any machine.
//! The engine alone: `adapters/tokio/tests/allocations.rs` counts the whole way
//! through the tokio driver (producer loop, hub, mailbox, reader).

use bytes::Bytes;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[path = "support/rig.rs"]
mod rig;
use rig::{chunk, Rig};

const CHUNKS: usize = 20_000;

/// The counters are global: the tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations (and reallocations) made while `CHUNKS` chunks, allocated beforehand,
/// go through a producer with `listeners` listeners, every command answered and every
/// event taken after each chunk.
fn allocations_for(listeners: usize) -> (usize, usize) {
    allocations_with(listeners, false)
}

fn allocations_with(listeners: usize, extended: bool) -> (usize, usize) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let chunks: Vec<Bytes> = (0..CHUNKS).map(chunk).collect();
    let mut rig = Rig::producer_with(listeners, extended);
    // Warm up: the first chunks size the queues and maps once.
    for data in &chunks[..64] {
        rig.engine.push_chunk(rig.handle, data.clone()).unwrap();
        rig.settle();
    }
    let region = Region::new(GLOBAL);
    let mut commands = 0;
    for data in &chunks[64..] {
        rig.engine.push_chunk(rig.handle, data.clone()).unwrap();
        commands += rig.settle().0;
    }
    let change = region.change();
    assert_eq!(
        commands,
        (CHUNKS - 64) * listeners,
        "one PUBLISH per chunk per listener"
    );
    (change.allocations, change.reallocations)
}

/// Growing the stream's buffer (a `VecDeque` that doubles) and the engine's queues and
/// maps is the only allocation left: O(log n) each for the whole stream, 0 per chunk.
fn buffer_growth_bound() -> usize {
    2 * (usize::BITS - CHUNKS.leading_zeros()) as usize
}

#[test]
fn a_chunk_nobody_listens_to_allocates_nothing() {
    let (allocations, reallocations) = allocations_for(0);
    println!(
        "0 listeners: {allocations} allocations, {reallocations} reallocations for {CHUNKS} chunks"
    );
    assert!(
        allocations + reallocations <= buffer_growth_bound(),
        "{allocations} allocations and {reallocations} reallocations for {CHUNKS} chunks without listeners"
    );
}

#[test]
fn a_chunk_to_listeners_allocates_nothing_per_listener_either() {
    for listeners in [1, 4, 16] {
        let (allocations, reallocations) = allocations_for(listeners);
        let per_chunk = (allocations + reallocations) as f64 / CHUNKS as f64;
        println!(
            "{listeners} listeners: {allocations} allocations, {reallocations} reallocations \
             ({per_chunk:.3} per chunk)"
        );
        assert!(
            allocations + reallocations <= buffer_growth_bound() * 4,
            "{per_chunk:.3} allocations per chunk with {listeners} listeners"
        );
    }
}

#[test]
fn the_counter_counts() {
    // The allocator really is instrumented: a Vec's allocation shows.
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let region = Region::new(GLOBAL);
    let v: Vec<u8> = Vec::with_capacity(100);
    assert!(region.change().allocations >= 1);
    drop(v);
}

#[test]
fn a_chunk_to_listeners_of_ours_allocates_one_frame_per_listener() {
    for listeners in [1, 4, 16] {
        let (allocations, reallocations) = allocations_with(listeners, true);
        let frames = (CHUNKS - 64) * listeners;
        println!(
            "{listeners} extended listeners: {allocations} allocations, {reallocations} \
             reallocations for {frames} framed chunks"
        );
        // Each chunk is framed with its index once per listener of ours (the frame
        // carries that listener's token): O(1) per listener, nothing else.
        assert!(
            allocations <= frames + buffer_growth_bound() * 4,
            "{allocations} allocations for {frames} framed chunks"
        );
        assert!(
            reallocations <= buffer_growth_bound() * 4,
            "{reallocations} reallocations with {listeners} extended listeners"
        );
    }
}
