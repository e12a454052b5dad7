//! Event storage behind one trait, so the core never names a database.
//!
//! The log is a set of events keyed by [`EventKey`] `(lamport, hash)`, with
//! lookups by hash (and, for tests and tools, a scan by event id), and a
//! local *arrival sequence* (1, 2, 3, ... in the order this node stored
//! events) that snapshots refer to: late events can carry low Lamport
//! times, so "covered up to Lamport L" would be wrong, while "covered up to
//! arrival N" is exact.
//!
//! Implementations: [`MemoryStore`] (tests, simulator, `--no-default-features`)
//! and, with the `runtime` feature, [`SledStore`] (the default on disk).

use std::ops::Bound;

use hearth_proto::{EventError, EventHash, EventId, EventKey, VerifiedEvent};

use crate::core::sync::{Accumulator, LogDigest};

mod memory;
#[cfg(feature = "runtime")]
mod sled_store;

pub use memory::MemoryStore;
#[cfg(feature = "runtime")]
pub use sled_store::{open_waiting_for_lock, SledStore, PREFETCH_CHUNK};

/// Errors from a store. Disk trouble is an operating error the caller
/// reports; a record that fails its re-check is corruption, named by key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The disk holding the store is full. Reads still work; writes are
    /// refused until [`EventStore::recover`] finds space again.
    #[error("the disk is full: {0}")]
    Full(String),
    /// The store's directory or file system cannot be written.
    #[error("the store is read-only: {0}")]
    ReadOnly(String),
    /// Another process holds the store's lock.
    #[error("the store is locked by another process: {0}")]
    Locked(String),
    #[error("stored record {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("stored event {hash} fails its re-check: {source}")]
    BadEvent {
        hash: EventHash,
        #[source]
        source: EventError,
    },
}

impl StoreError {
    /// What this error says about writing, if it is a storage condition
    /// rather than a fault: full or read-only.
    pub fn write_state(&self) -> Option<WriteState> {
        match self {
            StoreError::Full(_) => Some(WriteState::Full),
            StoreError::ReadOnly(_) => Some(WriteState::ReadOnly),
            _ => None,
        }
    }
}

/// Whether a store can take writes now. Shown by `hearth status`; anything
/// but `Ok` means reads work and writes are refused until it clears.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteState {
    #[default]
    Ok,
    /// The last write failed for lack of space.
    Full,
    /// The last write failed because the store cannot be written.
    ReadOnly,
}

impl WriteState {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteState::Ok => "ok",
            WriteState::Full => "full",
            WriteState::ReadOnly => "read_only",
        }
    }

    /// What a person should do, for the store at `location`; `None` if ok.
    pub fn advice(self, location: &str) -> Option<String> {
        match self {
            WriteState::Ok => None,
            WriteState::Full => Some(format!(
                "the disk is full: free space on {location}; writes resume by themselves"
            )),
            WriteState::ReadOnly => Some(format!(
                "the store cannot be written: make {location} writable; \
                 writes resume by themselves"
            )),
        }
    }
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
    ///
    /// Only tests and tools ask this, so this default scans the whole log
    /// (reading and re-checking every event): keeping an id index on disk
    /// cost the sled store a fourth record on every insert (issue 15 item
    /// 1). A store that has an index in memory anyway may answer from it.
    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        let mut out = Vec::new();
        for event in self.range(Bound::Unbounded, Bound::Unbounded) {
            let event = event?;
            if event.event().id == *id {
                out.push(event);
            }
        }
        Ok(out)
    }

    /// Events with keys in the range, ascending by `(lamport, hash)`.
    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_>;

    /// Keys only, ascending, without reading event bodies (sync fingerprints).
    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_>;

    /// The sum and count of the hashes of the keys in the range, for sync
    /// range fingerprints. This default scans the keys; a store that keeps
    /// a [`FingerprintIndex`](crate::core::sync::FingerprintIndex) answers
    /// without reading the log.
    fn fingerprint(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Result<Accumulator, StoreError> {
        let mut acc = Accumulator::default();
        for key in self.keys(from, to) {
            acc.add(&key?.hash);
        }
        Ok(acc)
    }

    /// The digest of the whole log that opens a sync session. This default
    /// reads every key (and costs ~0.3 µs per event); stores keep it up to
    /// date on insert instead.
    fn log_digest(&self) -> Result<LogDigest, StoreError> {
        let mut digest = LogDigest::default();
        for key in self.keys(Bound::Unbounded, Bound::Unbounded) {
            digest.add(&key?.hash);
        }
        Ok(digest)
    }

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

    /// Whether writes work now. A store whose last write failed for lack of
    /// space (or permission) says so until [`EventStore::recover`] clears it.
    fn write_state(&self) -> WriteState {
        WriteState::Ok
    }

    /// Tries to make a store in a failed [`WriteState`] writable again.
    ///
    /// `Ok(true)`: the store was reopened, so its contents are now what was
    /// last durable: events inserted but not flushed before the failure may
    /// be gone, and the caller must rebuild whatever it derived from them.
    /// `Ok(false)`: nothing needed doing. An error: still not writable
    /// (reads keep working where the store can serve them).
    fn recover(&mut self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Where the store lives, for messages that tell a person where to look.
    fn location(&self) -> String {
        "(in memory)".to_owned()
    }
}
