//! The cached fingerprints of a log: range fingerprints in O(blocks) and
//! the whole log's [`LogDigest`] in O(1), kept up to date by the store on
//! every insert, so a sync session does not re-hash the log.
//!
//! The keys live in sorted blocks of at most [`BLOCK_KEYS_MAX`], each with
//! the [`Accumulator`] of its keys. A range's fingerprint merges the blocks
//! it covers and adds the keys of the (at most two) blocks it cuts. That is
//! a sqrt-decomposition rather than a balanced tree: far less code, no
//! unsafe, and at a million keys a range costs ~1,000 merges plus ~2,000
//! adds, some 20 µs, against ~20 ms for a scan of the keys. The stores have
//! no removal, so neither has the index.

use std::collections::BTreeMap;
use std::ops::Bound;

use hearth_proto::EventKey;

use super::fingerprint::{Accumulator, LogDigest};

/// Keys per block before it splits in two. The cost of a range is the
/// number of blocks it covers plus the keys of two blocks, so about
/// sqrt(n) is best; 1,024 suits the 100k to 1M-event logs we sync. A block
/// costs 40 bytes a key and ~100 bytes of map node.
pub const BLOCK_KEYS_MAX: usize = 1024;

/// Range fingerprints and the log digest of a set of keys.
#[derive(Clone)]
pub struct FingerprintIndex {
    /// Non-empty sorted blocks, keyed by their first key, disjoint and in
    /// order.
    blocks: BTreeMap<EventKey, Block>,
    total: Accumulator,
    digest: LogDigest,
    /// [`BLOCK_KEYS_MAX`], smaller in tests so blocks split often.
    block_keys_max: usize,
}

impl Default for FingerprintIndex {
    fn default() -> Self {
        FingerprintIndex {
            blocks: BTreeMap::new(),
            total: Accumulator::default(),
            digest: LogDigest::default(),
            block_keys_max: BLOCK_KEYS_MAX,
        }
    }
}

#[derive(Clone, Default)]
struct Block {
    keys: Vec<EventKey>,
    acc: Accumulator,
}

impl Block {
    fn of(keys: Vec<EventKey>) -> Block {
        let mut acc = Accumulator::default();
        for k in &keys {
            acc.add(&k.hash);
        }
        Block { keys, acc }
    }
}

impl std::fmt::Debug for FingerprintIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintIndex")
            .field("keys", &self.total.count())
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

impl FingerprintIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`; false (and no change) if it is there already.
    pub fn insert(&mut self, key: EventKey) -> bool {
        // The block that holds or would hold `key`: the last one starting
        // at or before it, or the first one for a key before them all.
        let at = self
            .blocks
            .range(..=key)
            .next_back()
            .or_else(|| self.blocks.iter().next())
            .map(|(k, _)| *k);
        let mut block = at.and_then(|k| self.blocks.remove(&k)).unwrap_or_default();
        let fresh = match block.keys.binary_search(&key) {
            Ok(_) => false,
            Err(i) => {
                block.keys.insert(i, key);
                block.acc.add(&key.hash);
                true
            }
        };
        if fresh {
            self.total.add(&key.hash);
            self.digest.add(&key.hash);
        }
        if block.keys.len() > self.block_keys_max {
            let tail = block.keys.split_off(block.keys.len() / 2);
            let head = Block::of(std::mem::take(&mut block.keys));
            self.put(head);
            self.put(Block::of(tail));
        } else {
            self.put(block);
        }
        fresh
    }

    fn put(&mut self, block: Block) {
        if let Some(first) = block.keys.first() {
            self.blocks.insert(*first, block);
        }
    }

    /// Whether `key` is held: a binary search in the one block that would
    /// hold it (the store's duplicate check asks this on every insert).
    pub fn contains(&self, key: &EventKey) -> bool {
        self.blocks
            .range(..=*key)
            .next_back()
            .is_some_and(|(_, block)| block.keys.binary_search(key).is_ok())
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.total.count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held: the blocks' key vectors and map nodes
    /// (for the memory figure of `scripts/bench`).
    pub fn heap_bytes(&self) -> usize {
        let per_block = std::mem::size_of::<EventKey>() + std::mem::size_of::<Block>() + 16;
        self.blocks
            .values()
            .map(|b| per_block + b.keys.capacity() * std::mem::size_of::<EventKey>())
            .sum()
    }

    /// The digest of every key, for a session's opening fingerprint.
    pub fn digest(&self) -> &LogDigest {
        &self.digest
    }

    /// The accumulator of the keys in `(from, to)`.
    pub fn fingerprint(&self, from: Bound<&EventKey>, to: Bound<&EventKey>) -> Accumulator {
        if from == Bound::Unbounded && to == Bound::Unbounded {
            return self.total;
        }
        let start = match from {
            Bound::Unbounded => None,
            Bound::Included(k) | Bound::Excluded(k) => {
                self.blocks.range(..=*k).next_back().map(|(k, _)| *k)
            }
        };
        let blocks = match start {
            Some(s) => self.blocks.range(s..),
            None => self.blocks.range(..),
        };
        let mut acc = Accumulator::default();
        for (first, block) in blocks {
            if !below(first, to) {
                break;
            }
            let (Some(head), Some(last)) = (block.keys.first(), block.keys.last()) else {
                continue;
            };
            if above(head, from) && below(last, to) {
                acc.merge(&block.acc);
            } else {
                let lo = block.keys.partition_point(|k| !above(k, from));
                let hi = block.keys.partition_point(|k| below(k, to)).max(lo);
                for k in &block.keys[lo..hi] {
                    acc.add(&k.hash);
                }
            }
        }
        acc
    }
}

/// Whether `k` is at or past the lower bound `from`.
fn above(k: &EventKey, from: Bound<&EventKey>) -> bool {
    match from {
        Bound::Unbounded => true,
        Bound::Included(b) => k >= b,
        Bound::Excluded(b) => k > b,
    }
}

/// Whether `k` is before the upper bound `to`.
fn below(k: &EventKey, to: Bound<&EventKey>) -> bool {
    match to {
        Bound::Unbounded => true,
        Bound::Included(b) => k <= b,
        Bound::Excluded(b) => k < b,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use hearth_proto::EventHash;
    use proptest::prelude::*;

    use super::*;

    fn key(lamport: u64, seed: u64) -> EventKey {
        let mut h = [0u8; 32];
        // Spread the bits so sums carry across limbs.
        for (i, b) in h.iter_mut().enumerate() {
            *b = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
        EventKey {
            lamport,
            hash: EventHash(h),
        }
    }

    fn fresh(
        set: &BTreeSet<EventKey>,
        from: Bound<&EventKey>,
        to: Bound<&EventKey>,
    ) -> Accumulator {
        let mut acc = Accumulator::default();
        for k in set.iter().filter(|k| above(k, from) && below(k, to)) {
            acc.add(&k.hash);
        }
        acc
    }

    fn bound(kind: u8, k: &EventKey) -> Bound<&EventKey> {
        match kind % 3 {
            0 => Bound::Unbounded,
            1 => Bound::Included(k),
            _ => Bound::Excluded(k),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After any sequence of inserts (duplicates included, blocks
        /// splitting many times), every cached range fingerprint and the
        /// cached log digest equal a computation from scratch.
        #[test]
        fn cached_fingerprints_equal_a_fresh_computation(
            block_keys_max in 2usize..40,
            inserts in proptest::collection::vec((0u64..64, 0u64..4000), 0..3000),
            queries in proptest::collection::vec((0u64..70, 0u64..4000, 0u8..3, 0u64..70, 0u64..4000, 0u8..3), 1..40),
        ) {
            let mut index = FingerprintIndex { block_keys_max, ..FingerprintIndex::new() };
            let mut set = BTreeSet::new();
            for (i, (lamport, seed)) in inserts.iter().enumerate() {
                let k = key(*lamport, *seed);
                prop_assert_eq!(index.insert(k), set.insert(k));
                if i % 500 == 0 {
                    prop_assert_eq!(index.fingerprint(Bound::Unbounded, Bound::Unbounded), fresh(&set, Bound::Unbounded, Bound::Unbounded));
                }
            }
            prop_assert_eq!(index.len(), set.len() as u64);
            prop_assert!(index.blocks.values().all(|b| !b.keys.is_empty() && b.keys.len() <= block_keys_max));
            prop_assert_eq!(index.digest(), &LogDigest::of(set.iter().map(|k| &k.hash)));
            for (l1, s1, b1, l2, s2, b2) in queries {
                let (a, b) = (key(l1, s1), key(l2, s2));
                prop_assert_eq!(index.contains(&a), set.contains(&a));
                let (from, to) = (bound(b1, &a), bound(b2, &b));
                prop_assert_eq!(index.fingerprint(from, to), fresh(&set, from, to));
            }
            // Bounds on keys that are present cut blocks exactly there.
            for k in set.iter().step_by(97) {
                prop_assert!(index.contains(k));
                for kind in 0..3 {
                    let from = bound(kind, k);
                    prop_assert_eq!(index.fingerprint(from, Bound::Unbounded), fresh(&set, from, Bound::Unbounded));
                    prop_assert_eq!(index.fingerprint(Bound::Unbounded, bound(kind, k)), fresh(&set, Bound::Unbounded, bound(kind, k)));
                }
            }
        }
    }

    /// Blocks split at the bound, so no block grows past it.
    #[test]
    fn blocks_stay_bounded() {
        let mut index = FingerprintIndex::new();
        for i in 0..(5 * BLOCK_KEYS_MAX as u64) {
            index.insert(key(i % 7, i));
        }
        assert!(index
            .blocks
            .values()
            .all(|b| b.keys.len() <= BLOCK_KEYS_MAX));
        assert!(index.blocks.len() >= 5);
        assert_eq!(index.len(), 5 * BLOCK_KEYS_MAX as u64);
    }

    /// A block fills up to BLOCK_KEYS_MAX keys and splits only past it,
    /// into two halves.
    #[test]
    fn a_block_splits_in_halves_only_past_the_bound() {
        let mut index = FingerprintIndex::new();
        for i in 0..BLOCK_KEYS_MAX as u64 {
            index.insert(key(i, i));
        }
        assert_eq!(index.blocks.len(), 1, "a full block is not split");
        index.insert(key(BLOCK_KEYS_MAX as u64, 0));
        let sizes: Vec<usize> = index.blocks.values().map(|b| b.keys.len()).collect();
        assert_eq!(sizes, [BLOCK_KEYS_MAX / 2, BLOCK_KEYS_MAX / 2 + 1]);
    }

    /// `len` counts distinct keys, and the index is empty only until the
    /// first insert.
    #[test]
    fn len_counts_distinct_keys() {
        let mut index = FingerprintIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.len(), 0);
        assert!(index.insert(key(1, 1)));
        assert!(!index.insert(key(1, 1)), "a duplicate is not added");
        assert!(!index.is_empty());
        assert_eq!(index.len(), 1);
    }

    /// `heap_bytes` counts each block's overhead (its first key in the
    /// map, the block, ~16 bytes of map node) and its key vector's
    /// capacity; an empty index holds none.
    #[test]
    fn heap_bytes_counts_blocks_and_key_capacity() {
        let mut index = FingerprintIndex::new();
        assert_eq!(index.heap_bytes(), 0);
        for i in 0..3_000 {
            index.insert(key(i % 7, i));
        }
        let key_bytes = std::mem::size_of::<EventKey>();
        let per_block = key_bytes + std::mem::size_of::<Block>() + 16;
        let capacity: usize = index.blocks.values().map(|b| b.keys.capacity()).sum();
        assert!(capacity >= 3_000 && index.blocks.len() > 1);
        assert_eq!(
            index.heap_bytes(),
            index.blocks.len() * per_block + capacity * key_bytes
        );
    }

    /// The debug form names the number of keys and blocks, not the keys.
    #[test]
    fn debug_shows_keys_and_blocks() {
        let mut index = FingerprintIndex::new();
        index.insert(key(1, 1));
        index.insert(key(2, 2));
        assert_eq!(
            format!("{index:?}"),
            "FingerprintIndex { keys: 2, blocks: 1 }"
        );
    }
}
