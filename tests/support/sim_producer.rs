//! What the simulator suites share: a producer on node 0 and its chunks. Included with
//! `#[path]` by `tests/engine_sim.rs` and `tests/engine_durable.rs`.

use bytes::Bytes;
use resumable_stream::sim::Sim;
use resumable_stream::{Handle, Role};

/// Starts a producer of `id` on node 0 and returns its handle, checked.
pub fn producer(sim: &mut Sim, id: &str) -> Handle {
    let handle = sim.engine(0).resumable_stream(id, None);
    sim.settle();
    assert_eq!(sim.log(0, handle).role, Some(Role::Producer));
    handle
}

/// Node 0's producer `handle` takes `chunk` from its source.
pub fn push(sim: &mut Sim, handle: Handle, chunk: &str) {
    sim.engine(0)
        .push_chunk(handle, Bytes::copy_from_slice(chunk.as_bytes()))
        .unwrap();
}
