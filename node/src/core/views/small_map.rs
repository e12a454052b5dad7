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
