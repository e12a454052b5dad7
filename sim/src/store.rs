//! The simulator's store: the real [`MemoryStore`] behind a wrapper that
//! models durability (what a hard crash keeps is what was flushed) and can
//! inject one deliberate core bug, so tests can prove the checker fails when
//! the core is wrong (a checker that cannot fail proves nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use hearth_node::core::sync::{Accumulator, LogDigest};
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
    inner: Inner,
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

/// The events themselves: the real [`MemoryStore`] per node
/// (`--own-stores`), or a [`CompactStore`] over the run's [`EventTable`].
#[derive(Debug)]
enum Inner {
    Own(MemoryStore),
    Compact(CompactStore),
}

impl Inner {
    fn store(&self) -> &dyn EventStore {
        match self {
            Inner::Own(s) => s,
            Inner::Compact(s) => s,
        }
    }

    fn store_mut(&mut self) -> &mut dyn EventStore {
        match self {
            Inner::Own(s) => s,
            Inner::Compact(s) => s,
        }
    }

    /// An empty store of the same kind.
    fn empty(&self) -> Inner {
        match self {
            Inner::Own(_) => Inner::Own(MemoryStore::new()),
            Inner::Compact(s) => Inner::Compact(CompactStore::new(s.table.clone())),
        }
    }
}

impl SimStore {
    /// A node's empty store: its own [`MemoryStore`] when `table` is
    /// `None`, else a [`CompactStore`] over the run's table.
    pub fn new(
        owner: NodeId,
        bug: Option<InjectedBug>,
        table: Option<&Arc<EventTable>>,
    ) -> SimStore {
        SimStore {
            inner: match table {
                None => Inner::Own(MemoryStore::new()),
                Some(t) => Inner::Compact(CompactStore::new(t.clone())),
            },
            owner,
            false_duplicate: bug == Some(InjectedBug::FalseDuplicate),
            durable_arrival: 0,
            meta_keys: BTreeSet::new(),
            meta_undo: BTreeMap::new(),
        }
    }

    /// Bytes of metadata (view snapshots) this store holds.
    pub fn meta_bytes(&self) -> usize {
        self.meta_keys
            .iter()
            .filter_map(|k| self.inner.store().get_meta(k).ok().flatten())
            .map(|v| v.len())
            .sum()
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
        let mut kept = self.inner.empty();
        let mut own_lost = Vec::new();
        for item in self.inner.store().since_arrival(0) {
            let (seq, event) = item?;
            if seq <= self.durable_arrival {
                kept.store_mut().insert(&event)?;
            } else if event.event().author == self.owner {
                own_lost.push(*event.hash());
            }
        }
        for key in &self.meta_keys {
            let value = match self.meta_undo.get(key) {
                Some(before) => before.clone(),
                None => self.inner.store().get_meta(key)?,
            };
            if let Some(value) = value {
                kept.store_mut().put_meta(key, &value)?;
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
        self.inner.store_mut().insert(event)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.store_mut().flush()?;
        self.durable_arrival = self.inner.store().last_arrival();
        self.meta_undo.clear();
        Ok(())
    }
    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        self.inner.store().contains(hash)
    }
    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        self.inner.store().get(hash)
    }
    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        self.inner.store().get_by_id(id)
    }
    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        self.inner.store().range(from, to)
    }
    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_> {
        self.inner.store().keys(from, to)
    }
    fn fingerprint(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Result<Accumulator, StoreError> {
        self.inner.store().fingerprint(from, to)
    }
    fn log_digest(&self) -> Result<LogDigest, StoreError> {
        self.inner.store().log_digest()
    }
    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        self.inner.store().since_arrival(seq)
    }
    fn len(&self) -> u64 {
        self.inner.store().len()
    }
    fn last_arrival(&self) -> u64 {
        self.inner.store().last_arrival()
    }
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if !self.meta_undo.contains_key(key) {
            let before = self.inner.store().get_meta(key)?;
            self.meta_undo.insert(key.to_owned(), before);
        }
        self.meta_keys.insert(key.to_owned());
        self.inner.store_mut().put_meta(key, value)
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.store().get_meta(key)
    }
}

/// Every event any simulated store of the run holds, each once, numbered
/// in the order first stored (its `gid`). A real node has its own copy of
/// its log; the simulator's thousand logs are mostly the same events, so
/// each node's [`CompactStore`] keeps its order index and a bit per `gid`
/// instead of four index entries per event. A test checks that the run's
/// trace is the same with every node on its own [`MemoryStore`]
/// (`--own-stores`).
#[derive(Debug, Default)]
pub struct EventTable {
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    gids: BTreeMap<EventHash, u32>,
    events: Vec<VerifiedEvent>,
    by_id: BTreeSet<(EventId, EventHash)>,
}

impl EventTable {
    pub fn new() -> Arc<EventTable> {
        Arc::new(EventTable::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // One thread: never contended, never poisoned by a panic we go on from.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gid(&self, hash: &EventHash) -> Option<u32> {
        self.lock().gids.get(hash).copied()
    }

    fn intern(&self, event: &VerifiedEvent) -> Result<u32, StoreError> {
        let mut t = self.lock();
        if let Some(g) = t.gids.get(event.hash()) {
            return Ok(*g);
        }
        let g = u32::try_from(t.events.len()).map_err(|_| StoreError::Corrupt {
            what: "simulator event table".into(),
            reason: "over 2^32 distinct events".into(),
        })?;
        t.gids.insert(*event.hash(), g);
        t.by_id.insert((event.event().id, *event.hash()));
        t.events.push(event.clone());
        Ok(g)
    }

    fn event(&self, gid: u32) -> Option<VerifiedEvent> {
        self.lock().events.get(gid as usize).cloned()
    }

    /// Distinct events in the table.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node's log over the run's [`EventTable`]: the events in key order
/// (shared `Arc`s), a bit per table entry for "held", and arrivals as table
/// numbers. Answers every [`EventStore`] question as [`MemoryStore`] does.
#[derive(Debug)]
pub struct CompactStore {
    table: Arc<EventTable>,
    events: BTreeMap<EventKey, VerifiedEvent>,
    /// Bit `gid` set: this node holds table event `gid`.
    held: Vec<u64>,
    /// Arrival `n` (from 1) is table event `arrivals[n - 1]`.
    arrivals: Vec<u32>,
    meta: BTreeMap<String, Vec<u8>>,
    /// The sync log digest, kept on insert as the real stores keep it
    /// (520 bytes a node). Range fingerprints scan `events` (the trait's
    /// default): a simulated log is small, and an index would cost ~50
    /// bytes per event per node.
    digest: LogDigest,
}

impl CompactStore {
    fn new(table: Arc<EventTable>) -> CompactStore {
        CompactStore {
            table,
            events: BTreeMap::new(),
            held: Vec::new(),
            arrivals: Vec::new(),
            meta: BTreeMap::new(),
            digest: LogDigest::default(),
        }
    }

    fn holds(&self, gid: u32) -> bool {
        self.held
            .get(gid as usize / 64)
            .is_some_and(|w| w & (1 << (gid % 64)) != 0)
    }

    fn held_gid(&self, hash: &EventHash) -> Option<u32> {
        self.table.gid(hash).filter(|g| self.holds(*g))
    }

    fn missing(what: String) -> StoreError {
        StoreError::Corrupt {
            what,
            reason: "not in the simulator's event table".into(),
        }
    }
}

impl EventStore for CompactStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        let gid = self.table.intern(event)?;
        if self.holds(gid) {
            return Ok(None);
        }
        let word = gid as usize / 64;
        if self.held.len() <= word {
            self.held.resize(word + 1, 0);
        }
        self.held[word] |= 1 << (gid % 64);
        self.events.insert(event.key(), event.clone());
        self.arrivals.push(gid);
        self.digest.add(&event.key().hash);
        Ok(Some(self.arrivals.len() as u64))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        Ok(self.held_gid(hash).is_some())
    }

    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        match self.held_gid(hash) {
            None => Ok(None),
            Some(g) => self
                .table
                .event(g)
                .map(Some)
                .ok_or_else(|| Self::missing(format!("event {hash}"))),
        }
    }

    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        let hashes: Vec<EventHash> = {
            let t = self.table.lock();
            let from = (*id, EventHash([0; 32]));
            let to = (*id, EventHash([0xff; 32]));
            t.by_id.range(from..=to).map(|(_, h)| *h).collect()
        };
        let mut out = Vec::new();
        for h in hashes {
            if let Some(e) = self.get(&h)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        if is_empty_range(&from, &to) {
            return Box::new(std::iter::empty());
        }
        Box::new(self.events.range((from, to)).map(|(_, e)| Ok(e.clone())))
    }

    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_> {
        if is_empty_range(&from, &to) {
            return Box::new(std::iter::empty());
        }
        Box::new(self.events.range((from, to)).map(|(k, _)| Ok(*k)))
    }

    fn log_digest(&self) -> Result<LogDigest, StoreError> {
        Ok(self.digest.clone())
    }

    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        let start = usize::try_from(seq).unwrap_or(usize::MAX);
        Box::new(self.arrivals.iter().enumerate().skip(start).map(|(i, g)| {
            let n = i as u64 + 1;
            self.table
                .event(*g)
                .map(|e| (n, e))
                .ok_or_else(|| Self::missing(format!("arrival {n}")))
        }))
    }

    fn len(&self) -> u64 {
        self.events.len() as u64
    }

    fn last_arrival(&self) -> u64 {
        self.arrivals.len() as u64
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }
}

/// Whether `(from, to)` selects nothing (`BTreeMap::range` panics on an
/// inverted range; the stores answer with nothing, as sled does).
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
