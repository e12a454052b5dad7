//! Event storage behind one trait, so the core never names a database.
//!
//! The log is a set of events keyed by [`EventKey`] `(lamport, hash)`, with
//! lookups by hash and by event id, and a local *arrival sequence* (1, 2, 3,
//! ... in the order this node stored events) that snapshots refer to: late
//! events can carry low Lamport times, so "covered up to Lamport L" would be
//! wrong, while "covered up to arrival N" is exact.
//!
//! Implementations: [`MemoryStore`] (tests, simulator, `--no-default-features`)
//! and, with the `runtime` feature, [`SledStore`] (the default on disk).

use std::ops::Bound;

use hearth_proto::{EventError, EventHash, EventId, EventKey, VerifiedEvent};

mod memory;
#[cfg(feature = "runtime")]
mod sled_store;

pub use memory::MemoryStore;
#[cfg(feature = "runtime")]
pub use sled_store::SledStore;

/// Errors from a store. Disk trouble is an operating error the caller
/// reports; a record that fails its re-check is corruption, named by key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored record {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("stored event {hash} fails its re-check: {source}")]
    BadEvent {
        hash: EventHash,
        #[source]
        source: EventError,
    },
}

/// Iterator over stored events, each re-checked as it is read.
pub type EventIter<'a> = Box<dyn Iterator<Item = Result<VerifiedEvent, StoreError>> + 'a>;

/// The event log's storage. Every method that reads an event hands back a
/// [`VerifiedEvent`] re-made by [`VerifiedEvent::reload`]: the bytes are
/// checked again after they are read, against the hash they were filed under.
pub trait EventStore: Send {
    /// Stores `event` unless an event with its hash is already there.
    /// Returns the arrival sequence number assigned, or `None` for a
    /// duplicate. Not durable until [`EventStore::flush`].
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError>;

    /// Makes every insert so far durable.
    fn flush(&mut self) -> Result<(), StoreError>;

    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError>;

    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError>;

    /// Every stored event with this id (ids are unique per author only).
    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError>;

    /// Events with keys in the range, ascending by `(lamport, hash)`.
    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_>;

    /// Keys only, ascending, without reading event bodies (sync fingerprints).
    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_>;

    /// Events whose arrival sequence is greater than `seq`, in arrival order,
    /// with their sequence numbers.
    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_>;

    /// Number of stored events.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest arrival sequence assigned so far (0 for an empty store).
    fn last_arrival(&self) -> u64;

    /// Small named values kept beside the log (community id, view snapshot).
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}
