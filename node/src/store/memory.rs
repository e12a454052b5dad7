//! An in-memory [`EventStore`]: the reference the sled store is tested
//! against, and the store of the simulator.

use std::collections::BTreeMap;
use std::ops::Bound;

use hearth_proto::{EventHash, EventId, EventKey, VerifiedEvent};

use super::{EventIter, EventStore, StoreError};
use crate::core::sync::{Accumulator, FingerprintIndex, LogDigest};

/// Keeps the verified events themselves: a read is a reference count, not a
/// decode, and a simulator's nodes share one copy of each event. (What can
/// go wrong with bytes at rest is tested on the sled store.)
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    events: BTreeMap<EventKey, VerifiedEvent>,
    by_hash: BTreeMap<EventHash, EventKey>,
    by_id: BTreeMap<(EventId, EventHash), ()>,
    arrivals: BTreeMap<u64, EventKey>,
    meta: BTreeMap<String, Vec<u8>>,
    /// Sync fingerprints, updated on every insert (~50 bytes a key).
    fingerprints: FingerprintIndex,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Whether `(from, to)` selects nothing. `BTreeMap::range` panics on an
/// inverted or empty-excluded range where sled returns nothing; both stores
/// must answer the same.
fn is_empty_range(from: &Bound<EventKey>, to: &Bound<EventKey>) -> bool {
    use Bound::{Excluded, Included};
    match (from, to) {
        (Included(a), Included(b)) => a > b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) | (Excluded(a), Excluded(b)) => {
            a >= b
        }
        _ => false,
    }
}

impl EventStore for MemoryStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        let key = event.key();
        if self.by_hash.contains_key(&key.hash) {
            return Ok(None);
        }
        let seq = self.last_arrival() + 1;
        self.events.insert(key, event.clone());
        self.by_hash.insert(key.hash, key);
        self.by_id.insert((event.event().id, key.hash), ());
        self.arrivals.insert(seq, key);
        self.fingerprints.insert(key);
        Ok(Some(seq))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        Ok(self.by_hash.contains_key(hash))
    }

    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        match self.by_hash.get(hash) {
            None => Ok(None),
            Some(key) => {
                let event = self.events.get(key).ok_or_else(|| StoreError::Corrupt {
                    what: format!("event {hash}"),
                    reason: "hash index points at a missing event".into(),
                })?;
                Ok(Some(event.clone()))
            }
        }
    }

    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        let from = (*id, EventHash([0; 32]));
        let to = (*id, EventHash([0xff; 32]));
        let mut out = Vec::new();
        for ((_, hash), ()) in self.by_id.range(from..=to) {
            if let Some(e) = self.get(hash)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        if is_empty_range(&from, &to) {
            return Box::new(std::iter::empty());
        }
        Box::new(
            self.events
                .range((from, to))
                .map(|(_, event)| Ok(event.clone())),
        )
    }

    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_> {
        if is_empty_range(&from, &to) {
            return Box::new(std::iter::empty());
        }
        Box::new(self.events.range((from, to)).map(|(key, _)| Ok(*key)))
    }

    fn fingerprint(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Result<Accumulator, StoreError> {
        Ok(self.fingerprints.fingerprint(from.as_ref(), to.as_ref()))
    }

    fn log_digest(&self) -> Result<LogDigest, StoreError> {
        Ok(self.fingerprints.digest().clone())
    }

    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        Box::new(
            self.arrivals
                .range((Bound::Excluded(seq), Bound::Unbounded))
                .map(|(seq, key)| {
                    let event = self.events.get(key).ok_or_else(|| StoreError::Corrupt {
                        what: format!("arrival {seq}"),
                        reason: "points at a missing event".into(),
                    })?;
                    Ok((*seq, event.clone()))
                }),
        )
    }

    fn len(&self) -> u64 {
        self.events.len() as u64
    }

    fn last_arrival(&self) -> u64 {
        self.arrivals.keys().next_back().copied().unwrap_or(0)
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }
}
