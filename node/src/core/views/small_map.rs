//! A sorted-vector map for the views' many tiny inner maps.
//!
//! Almost every post has one `created`, zero or one update and zero or one
//! expiry, yet a `BTreeMap` allocates a whole node (room for eleven entries)
//! for its first one: about 2.5 KB per post for the `created` map alone. A
//! sorted `Vec` holds one entry in exactly its size, and lookups over one to
//! three entries are as fast. Serialized as a map, so snapshots read the same
//! as the `BTreeMap`s they replaced.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ordered by key, like `BTreeMap`; meant for a handful of entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// Inserts or replaces, as `BTreeMap::insert`.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                // Grow one at a time: `Vec` would make room for four.
                self.entries.reserve_exact(1);
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value at `key`, inserted as `V::default()` first if missing
    /// (`BTreeMap::entry(key).or_default()`).
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let i = match self.entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => i,
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, (key, V::default()));
                i
            }
        };
        &mut self.entries[i].1
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.binary_search_by(|(k, _)| k.cmp(key)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes the entry with the highest key (`BTreeMap::pop_last`).
    pub fn pop_last(&mut self) -> Option<(K, V)> {
        self.entries.pop()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    /// Through a `BTreeMap`, which sorts and drops duplicate keys for us.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<K, V>::deserialize(d)?;
        Ok(SmallMap {
            entries: map.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_replaces_like_a_btreemap() {
        let mut m = SmallMap::default();
        let mut b = BTreeMap::new();
        for (k, v) in [(5, 'a'), (1, 'b'), (9, 'c'), (5, 'd'), (0, 'e')] {
            assert_eq!(m.insert(k, v), b.insert(k, v));
        }
        assert!(m.iter().eq(b.iter()));
        assert_eq!(m.iter().count(), b.len());
        assert_eq!(m.iter().next_back(), b.iter().next_back());
        assert_eq!(m.len(), b.len());
        for k in 0..10 {
            assert_eq!(m.contains_key(&k), b.contains_key(&k), "{k}");
        }
        assert_eq!(m.pop_last(), b.pop_last());
        assert!(m.iter().eq(b.iter()));
    }

    #[test]
    fn get_or_default_inserts_in_order_once() {
        let mut m: SmallMap<u8, Vec<u8>> = SmallMap::default();
        let mut b: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        for (k, v) in [(4, 1), (2, 2), (4, 3), (7, 4), (0, 5)] {
            m.get_or_default(k).push(v);
            b.entry(k).or_default().push(v);
        }
        assert!(m.iter().eq(b.iter()));
    }

    #[test]
    fn serializes_exactly_as_the_btreemap_it_replaced() {
        let mut m = SmallMap::default();
        let mut b = BTreeMap::new();
        for (k, v) in [(3u32, "x".to_string()), (1, "y".into()), (2, "z".into())] {
            m.insert(k, v.clone());
            b.insert(k, v);
        }
        let (mut a, mut c) = (Vec::new(), Vec::new());
        ciborium::into_writer(&m, &mut a).unwrap();
        ciborium::into_writer(&b, &mut c).unwrap();
        assert_eq!(a, c);
        let back: SmallMap<u32, String> = ciborium::from_reader(&c[..]).unwrap();
        assert_eq!(back, m);
    }
}
