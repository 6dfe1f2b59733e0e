//! Maps keyed by the engine's own sequence numbers (command ids, handles): one multiply
//! per key instead of SipHash, which a chunk's dispatch would otherwise pay. Drivers
//! use [`HandleMap`] for their maps keyed by handles. The keys are counters the engine
//! hands out, never input from Redis or clients, so there is nothing to flood.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for integer keys (FxHash's mix).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by engine-issued ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A map keyed by stream [`Handle`](crate::Handle)s, hashed with [`IdHasher`]: what a
/// driver keeps per stream of the engine (its readers, its producers).
///
/// ```
/// use resumable_stream::HandleMap;
/// let readers: HandleMap<Vec<u8>> = HandleMap::default();
/// assert!(readers.is_empty());
/// ```
pub type HandleMap<V> = HashMap<crate::Handle, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_and_round_trip() {
        let mut map: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000u64 {
            map.insert(i, i * 2);
        }
        assert_eq!(map.len(), 10_000);
        assert!((0..10_000u64).all(|i| map.get(&i) == Some(&(i * 2))));
        let distinct: std::collections::HashSet<u64> = (0..1000u64)
            .map(|i| {
                let mut h = IdHasher::default();
                h.write_u64(i);
                h.finish() >> 57 // the bits hashbrown's control bytes use
            })
            .collect();
        assert!(distinct.len() > 64, "top bits vary: {}", distinct.len());
    }
}
