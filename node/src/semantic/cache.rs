//! Post vectors: an LRU in memory keyed by `(post id, content event hash)`,
//! so an update (a new content event) misses and the old entry ages out,
//! backed by a sled tree keyed by model id and the hash of the embedded
//! text, so a restart does not embed every post again.

use std::collections::HashMap;
use std::sync::Arc;

use hearth_proto::{EventHash, EventId};
use sha2::{Digest, Sha256};

/// Vectors kept in memory (issue 13: 5,000; `embed.cache_entries`).
pub const MEMORY_ENTRIES_DEFAULT: usize = 5_000;
/// Vectors kept on disk (2 KiB each for 512 dimensions: ~100 MiB). Past
/// it the tree is emptied and refills with what searches need: rare, and
/// simpler and cheaper than keeping an order on disk.
pub const DISK_ENTRIES_MAX: usize = 50_000;

/// Eviction frees this fraction of the capacity at once (1/16: 312 of
/// 5,000 entries).
const EVICT_SLACK: usize = 16;

/// Which post content a vector belongs to.
pub type VectorKey = (EventId, EventHash);

/// Counters a test (and `/metrics`) can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    pub inserted: u64,
}

#[derive(Debug)]
pub struct VectorCache {
    model: String,
    capacity: usize,
    /// Vector and last use tick (unique; the smallest is the least
    /// recently used). A hash map with the tick stored in place: a search
    /// reads every candidate's vector, and keeping an ordered index of
    /// uses costs two B-tree updates per read. Order is needed only to
    /// evict, which [`Self::evict`] does in batches. Not core: nothing here
    /// decides what a view shows, and eviction reads no iteration order.
    entries: HashMap<VectorKey, (Arc<[f32]>, u64)>,
    tick: u64,
    disk: Option<sled::Tree>,
    stats: CacheStats,
}

impl VectorCache {
    pub fn new(model: &str, capacity: usize, disk: Option<sled::Tree>) -> VectorCache {
        VectorCache {
            model: model.to_owned(),
            capacity: capacity.max(1),
            entries: HashMap::new(),
            tick: 0,
            disk,
            stats: CacheStats::default(),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Switches to another model's vectors: the memory entries are of the
    /// old model, so they go (the disk keeps both, keyed by model).
    pub fn use_model(&mut self, model: &str) {
        if self.model != model {
            self.model = model.to_owned();
            self.entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The vector of `key` from memory, else from disk by the hash of
    /// `text()` (computed only on a memory miss), moved into memory.
    pub fn get(&mut self, key: &VectorKey, text: impl FnOnce() -> String) -> Option<Arc<[f32]>> {
        if let Some((v, used)) = self.entries.get_mut(key) {
            self.tick += 1;
            *used = self.tick;
            self.stats.memory_hits += 1;
            return Some(v.clone());
        }
        let from_disk = self.disk.as_ref().and_then(|tree| {
            let bytes = tree.get(disk_key(&self.model, &text())).ok()??;
            decode(&bytes)
        });
        match from_disk {
            Some(v) => {
                self.stats.disk_hits += 1;
                self.remember(*key, v.clone());
                Some(v)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Keeps `vector` for `key` (and on disk under the hash of `text`).
    pub fn put(&mut self, key: VectorKey, text: &str, vector: Arc<[f32]>) {
        if let Some(tree) = &self.disk {
            if tree.len() >= DISK_ENTRIES_MAX {
                let _ = tree.clear();
            }
            if let Err(e) = tree.insert(disk_key(&self.model, text), encode(&vector)) {
                // A cache: losing a vector costs a re-embedding, not data.
                tracing::warn!(error = %e, "cannot keep a post vector on disk");
            }
        }
        self.stats.inserted += 1;
        self.remember(key, vector);
    }

    fn remember(&mut self, key: VectorKey, vector: Arc<[f32]>) {
        self.tick += 1;
        self.entries.insert(key, (vector, self.tick));
        if self.entries.len() > self.capacity {
            self.evict();
        }
    }

    /// Drops the least recently used entries down to the capacity less
    /// 1/[`EVICT_SLACK`] of it: one pass over the entries pays for that
    /// many later inserts, instead of a pass per insert.
    fn evict(&mut self) {
        let keep = self.capacity - self.capacity / EVICT_SLACK;
        let excess = self.entries.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let mut uses: Vec<(u64, VectorKey)> = self
            .entries
            .iter()
            .map(|(k, (_, used))| (*used, *k))
            .collect();
        uses.select_nth_unstable(excess - 1);
        for (_, key) in &uses[..excess] {
            self.entries.remove(key);
        }
    }
}

fn disk_key(model: &str, text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(model.len() + 1 + 32);
    key.extend_from_slice(model.as_bytes());
    key.push(0);
    key.extend_from_slice(&Sha256::digest(text.as_bytes()));
    key
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `None` for bytes that are not whole f32s (a damaged entry is a miss).
fn decode(bytes: &[u8]) -> Option<Arc<[f32]>> {
    let chunks = bytes.chunks_exact(4);
    if bytes.is_empty() || !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> VectorKey {
        (EventId::from_parts(1, u128::from(n)), EventHash([n; 32]))
    }

    fn v(x: f32) -> Arc<[f32]> {
        Arc::from(vec![x, 1.0 - x])
    }

    /// The least recently used entry goes first once the bound is reached.
    #[test]
    fn memory_is_bounded_and_least_recently_used_goes() {
        let mut c = VectorCache::new("m", 2, None);
        c.put(key(1), "a", v(0.1));
        c.put(key(2), "b", v(0.2));
        assert!(c.get(&key(1), String::new).is_some()); // 1 is now newer than 2
        c.put(key(3), "c", v(0.3));
        assert_eq!(c.len(), 2);
        assert!(
            c.get(&key(2), String::new).is_none(),
            "2 was least recently used"
        );
        assert!(c.get(&key(1), String::new).is_some());
        assert!(c.get(&key(3), String::new).is_some());
        assert_eq!(c.stats().misses, 1);
    }

    /// At a larger capacity eviction frees a batch, never exceeds the
    /// bound, and takes only the least recently used.
    #[test]
    fn eviction_in_batches_keeps_the_recently_used() {
        let mut c = VectorCache::new("m", 64, None);
        let key_n = |n: u16| (EventId::from_parts(2, u128::from(n)), EventHash([0; 32]));
        for n in 0..64 {
            c.put(key_n(n), "", v(0.5));
        }
        // 0..8 read again: the least recently used are now 8..16.
        for n in 0..8 {
            assert!(c.get(&key_n(n), String::new).is_some());
        }
        c.put(key_n(100), "", v(0.5));
        assert_eq!(c.len(), 64 - 64 / EVICT_SLACK);
        for n in 0..8 {
            assert!(c.get(&key_n(n), String::new).is_some(), "{n} was read");
        }
        for n in 8..13 {
            assert!(c.get(&key_n(n), String::new).is_none(), "{n} was oldest");
        }
        assert!(c.get(&key_n(13), String::new).is_some());
        assert!(c.get(&key_n(100), String::new).is_some());
        for n in 200..400 {
            c.put(key_n(n), "", v(0.5));
            assert!(c.len() <= 64);
        }
    }

    /// A vector kept on disk comes back in a new cache by its text, but
    /// not for another model or another text.
    #[test]
    fn disk_survives_a_new_cache_and_keys_by_model_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("vectors").unwrap();
        let mut c = VectorCache::new("m1", 10, Some(tree.clone()));
        c.put(key(1), "ladder", v(0.25));
        let mut fresh = VectorCache::new("m1", 10, Some(tree.clone()));
        let back = fresh.get(&key(1), || "ladder".into()).unwrap();
        assert_eq!(&*back, &*v(0.25));
        assert_eq!(fresh.stats().disk_hits, 1);
        assert!(fresh.get(&key(2), || "drill".into()).is_none());
        let mut other = VectorCache::new("m2", 10, Some(tree));
        assert!(other.get(&key(1), || "ladder".into()).is_none());
    }

    /// A damaged disk entry is a miss, not a panic or a wrong vector.
    #[test]
    fn damaged_disk_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let tree = sled::open(dir.path()).unwrap().open_tree("v").unwrap();
        tree.insert(disk_key("m", "t"), vec![1, 2, 3]).unwrap();
        let mut c = VectorCache::new("m", 10, Some(tree));
        assert!(c.get(&key(1), || "t".into()).is_none());
        assert_eq!(c.stats().misses, 1);
    }

    /// Switching model forgets the memory entries of the old one.
    #[test]
    fn another_model_empties_memory() {
        let mut c = VectorCache::new("m1", 10, None);
        c.put(key(1), "a", v(0.5));
        c.use_model("m1");
        assert_eq!(c.len(), 1);
        c.use_model("m2");
        assert!(c.is_empty());
    }
}
