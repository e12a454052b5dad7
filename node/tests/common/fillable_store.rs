//! A memory store that can be made to fail as a full disk does, for tests
//! of what a node does then (no root or tmpfs needed).

use hearth_node::store::{EventIter, EventStore, MemoryStore, StoreError, WriteState};
use hearth_proto::{EventHash, EventId, EventKey, VerifiedEvent};

/// A memory store whose writes fail as on a full disk while `full` is set;
/// it recovers (as a reopened sled store would) once `full` is cleared.
/// Runs everywhere, root or not.
#[derive(Debug)]
pub struct FillableStore {
    pub inner: MemoryStore,
    pub full: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub state: WriteState,
    /// Flushes that reached the inner store: what a test of the log's
    /// durability batches counts.
    pub flushes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// While set, meta writes (the view snapshot) fail with an I/O error:
    /// a fault, not a refusal.
    pub meta_broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FillableStore {
    fn refuse(&mut self, op: &str) -> Result<(), StoreError> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            self.state = WriteState::Full;
            return Err(StoreError::Full(format!("{op}: no space left (simulated)")));
        }
        if self.state != WriteState::Ok {
            return Err(StoreError::Full(format!("{op}: waiting to recover")));
        }
        Ok(())
    }
}

impl EventStore for FillableStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        self.refuse("insert")?;
        self.inner.insert(event)
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.refuse("flush")?;
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
    fn range(
        &self,
        from: std::ops::Bound<EventKey>,
        to: std::ops::Bound<EventKey>,
    ) -> EventIter<'_> {
        self.inner.range(from, to)
    }
    fn keys(
        &self,
        from: std::ops::Bound<EventKey>,
        to: std::ops::Bound<EventKey>,
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
        self.refuse("put_meta")?;
        if self.meta_broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Io(format!(
                "put_meta {key}: device error (simulated)"
            )));
        }
        self.inner.put_meta(key, value)
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_meta(key)
    }
    fn write_state(&self) -> WriteState {
        self.state
    }
    fn recover(&mut self) -> Result<bool, StoreError> {
        if self.state == WriteState::Ok {
            return Ok(false);
        }
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Full("still no space (simulated)".into()));
        }
        self.state = WriteState::Ok;
        Ok(true)
    }
}

impl FillableStore {
    /// An empty, writable store, and the switch that fills its disk.
    pub fn new() -> (FillableStore, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = FillableStore {
            inner: MemoryStore::new(),
            full: full.clone(),
            state: WriteState::Ok,
            flushes: Default::default(),
            meta_broken: Default::default(),
        };
        (store, full)
    }
}
