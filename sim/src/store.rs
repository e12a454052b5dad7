//! The simulator's store: the real [`MemoryStore`] behind a wrapper that
//! models durability (what a hard crash keeps is what was flushed) and can
//! inject one deliberate core bug, so tests can prove the checker fails when
//! the core is wrong (a checker that cannot fail proves nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use hearth_node::core::VerifiedMemo;
use hearth_node::store::{EventIter, EventStore, MemoryStore, StoreError};
use hearth_proto::{EventHash, EventId, EventKey, NodeId, VerifiedEvent};

/// A deliberately broken core, for the test that the checker can fail.
/// Only ever set by tests and the hidden `--inject-bug` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectedBug {
    /// Node 1's store claims to already hold one received event in eight
    /// (a dedupe by a truncated hash, say): the log skips storing and
    /// applying it, and sync can never repair it.
    FalseDuplicate,
    /// Every node's marketplace view shows, for a post with several
    /// updates, the update it applied last rather than the one with the
    /// highest key (the view depends on arrival order; logs stay right).
    /// Every node, not just node 1: a node shows it only if it received a
    /// post's updates out of order, which one node often never does.
    ArrivalOrderView,
    /// Every node's conversations view keeps the first acceptance of a post
    /// it applied instead of the highest `(lamport, hash)` one, so the
    /// accepted claim (and who fulfilled the post) depends on arrival order.
    FirstAcceptance,
}

#[derive(Debug)]
pub struct SimStore {
    inner: MemoryStore,
    owner: NodeId,
    false_duplicate: bool,
    /// Arrivals up to this one were flushed: a hard crash keeps them.
    durable_arrival: u64,
    /// Every metadata key written, and for those written since the last
    /// flush, the value they had then (an undo log: the log flushes right
    /// after each write, so this is almost always empty, and the snapshot
    /// is not held twice).
    meta_keys: BTreeSet<String>,
    meta_undo: BTreeMap<String, Option<Vec<u8>>>,
}

impl SimStore {
    pub fn new(owner: NodeId, bug: Option<InjectedBug>) -> SimStore {
        SimStore {
            inner: MemoryStore::new(),
            owner,
            false_duplicate: bug == Some(InjectedBug::FalseDuplicate),
            durable_arrival: 0,
            meta_keys: BTreeSet::new(),
            meta_undo: BTreeMap::new(),
        }
    }

    /// Events a hard crash now would keep.
    pub fn durable_len(&self) -> u64 {
        // Arrival numbers are dense from 1, one per stored event.
        self.durable_arrival
    }

    /// What survives a hard crash (power cut, kill -9): the store as of its
    /// last flush. Events received since are gone, as with a disk store
    /// whose writes had not reached the platter; sync fetches them again.
    /// Also returns the node's own events that were lost: the log promises
    /// a local event is flushed once appended, so any is a core bug.
    pub fn crash(self) -> Result<(SimStore, Vec<EventHash>), StoreError> {
        let mut kept = MemoryStore::new();
        let mut own_lost = Vec::new();
        for item in self.inner.since_arrival(0) {
            let (seq, event) = item?;
            if seq <= self.durable_arrival {
                kept.insert(&event)?;
            } else if event.event().author == self.owner {
                own_lost.push(*event.hash());
            }
        }
        for key in &self.meta_keys {
            let value = match self.meta_undo.get(key) {
                Some(before) => before.clone(),
                None => self.inner.get_meta(key)?,
            };
            if let Some(value) = value {
                kept.put_meta(key, &value)?;
            }
        }
        let store = SimStore {
            inner: kept,
            meta_undo: BTreeMap::new(),
            ..self
        };
        Ok((store, own_lost))
    }

    fn refuses(&self, event: &VerifiedEvent) -> bool {
        // Never the genesis or the node's own events: the log asserts a
        // local append is new, and the bug is about received events.
        self.false_duplicate
            && event.event().lamport > 0
            && event.event().author != self.owner
            && event.hash().0[0].is_multiple_of(8)
    }
}

impl EventStore for SimStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        if self.refuses(event) {
            return Ok(None);
        }
        self.inner.insert(event)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush()?;
        self.durable_arrival = self.inner.last_arrival();
        self.meta_undo.clear();
        Ok(())
    }
    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        self.inner.contains(hash)
    }
    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        self.inner.get(hash)
    }
    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        self.inner.get_by_id(id)
    }
    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        self.inner.range(from, to)
    }
    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_> {
        self.inner.keys(from, to)
    }
    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        self.inner.since_arrival(seq)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn last_arrival(&self) -> u64 {
        self.inner.last_arrival()
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if !self.meta_undo.contains_key(key) {
            let before = self.inner.get_meta(key)?;
            self.meta_undo.insert(key.to_owned(), before);
        }
        self.meta_keys.insert(key.to_owned());
        self.inner.put_meta(key, value)
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }
}

/// The run's memo of decoded, verified events, shared by every simulated
/// core (see [`VerifiedMemo`]): each distinct event is verified once, by
/// whichever core receives it first, and held in memory once, however many
/// nodes store it. `--verify-every-copy` turns it off; a test checks that
/// both give the same trace.
#[derive(Debug, Default)]
pub struct SharedVerified {
    events: Mutex<BTreeMap<EventHash, VerifiedEvent>>,
}

impl SharedVerified {
    pub fn new() -> Arc<SharedVerified> {
        Arc::new(SharedVerified::default())
    }
}

impl VerifiedMemo for SharedVerified {
    fn get(&self, hash: &EventHash) -> Option<VerifiedEvent> {
        // One thread: the lock is never contended or poisoned by a panic
        // that we would then go on from.
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.get(hash).cloned()
    }

    fn put(&self, event: &VerifiedEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.insert(*event.hash(), event.clone());
    }
}
