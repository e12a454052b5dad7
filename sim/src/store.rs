//! The simulator's store: the real [`MemoryStore`] behind a wrapper that can
//! inject one deliberate core bug, so tests can prove the checker fails when
//! the core is wrong (a checker that cannot fail proves nothing).

use std::collections::BTreeMap;
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
}

#[derive(Debug)]
pub struct SimStore {
    inner: MemoryStore,
    owner: NodeId,
    false_duplicate: bool,
}

impl SimStore {
    pub fn new(owner: NodeId, bug: Option<InjectedBug>) -> SimStore {
        SimStore {
            inner: MemoryStore::new(),
            owner,
            false_duplicate: bug == Some(InjectedBug::FalseDuplicate),
        }
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
        self.inner.flush()
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
