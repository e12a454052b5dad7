//! Events from authors nobody has vouched for (yet).
//!
//! They are held here, not in the log and not synced, until a `member.set`
//! vouching for their author enters the log (DESIGN.md §4). The set is
//! bounded three ways so a stranger cannot fill a node's memory.

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::{EventHash, NodeId, VerifiedEvent};

/// Total events held: a few days of posts from a handful of neighbours
/// whose admission has not reached us yet.
pub const PENDING_EVENTS_MAX: usize = 4096;
/// Per author: one unknown key cannot take the whole set.
pub const PENDING_PER_AUTHOR_MAX: usize = 256;
/// Total bytes: 4096 events at the 16 KiB maximum would be 64 MiB; typical
/// events are ~300 bytes, so 8 MiB holds the count bound with room.
pub const PENDING_BYTES_MAX: usize = 8 << 20;

/// Why a pending event was not held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingFull {
    #[error("pending set is full ({PENDING_EVENTS_MAX} events or {PENDING_BYTES_MAX} bytes)")]
    Total,
    #[error("author {0} already has {PENDING_PER_AUTHOR_MAX} pending events")]
    Author(NodeId),
}

#[derive(Debug, Default, Clone)]
pub struct Pending {
    by_author: BTreeMap<NodeId, BTreeMap<EventHash, VerifiedEvent>>,
    hashes: BTreeSet<EventHash>,
    bytes: usize,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn contains(&self, hash: &EventHash) -> bool {
        self.hashes.contains(hash)
    }

    pub fn insert(&mut self, event: VerifiedEvent) -> Result<(), PendingFull> {
        let author = event.event().author;
        if self.hashes.len() >= PENDING_EVENTS_MAX
            || self.bytes + event.bytes().len() > PENDING_BYTES_MAX
        {
            return Err(PendingFull::Total);
        }
        let mine = self.by_author.entry(author).or_default();
        if mine.len() >= PENDING_PER_AUTHOR_MAX {
            return Err(PendingFull::Author(author));
        }
        self.bytes += event.bytes().len();
        self.hashes.insert(*event.hash());
        mine.insert(*event.hash(), event);
        Ok(())
    }

    /// Removes and returns every event of `author`, in hash order.
    pub fn take_author(&mut self, author: &NodeId) -> Vec<VerifiedEvent> {
        let events: Vec<VerifiedEvent> = self
            .by_author
            .remove(author)
            .map(|m| m.into_values().collect())
            .unwrap_or_default();
        for e in &events {
            self.hashes.remove(e.hash());
            self.bytes -= e.bytes().len();
        }
        events
    }
}
