//! Views: state derived from the log, each a pure function of the set of
//! events it has seen (the same set in any order gives the same state).
//!
//! The membership view comes first because the others read levels from it.
//! Every view offers `reset / apply / snapshot_state / restore_state` and a
//! digest for convergence checks.

pub mod conversations;
pub mod market;
pub mod membership;
mod small_map;

use hearth_proto::{Level, NodeId, VerifiedEvent};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use conversations::{ConversationChange, ConversationsView, Thread};
pub use market::{ListQuery, MarketView, Post, PostChange, PostKey};
pub use membership::{MembershipChange, MembershipView, Settings};

/// What applying events changed in what the views show: data the core
/// hands out (`Output::ViewChanged`), from which the driver builds the
/// node's change feed. Reported for events applied one by one (received,
/// local, imported), never for the replay that rebuilds the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewChange {
    /// A post's shown state changed.
    Post { name: PostKey, change: PostChange },
    /// A key's current level changed (`None`: no level, e.g. a set that
    /// arrived out of order undid an admission).
    Level { node: NodeId, level: Option<Level> },
    /// A reply, claim, acceptance or sealed message now shows (issue 14).
    Conversation(ConversationChange),
    /// More changes than one input may record ([`market::CHANGES_MAX`]):
    /// this many were dropped, so a reader must reload what it shows.
    Lost { count: u64 },
}

/// A snapshot that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("view snapshot cannot be encoded: {0}")]
    Encode(String),
    #[error("view snapshot is unreadable: {0}")]
    Decode(String),
}

/// Snapshot format version: a snapshot of another version is ignored and the
/// views are rebuilt by full replay.
/// Version 2 (issue 10): updates keep their `ts`, membership keeps settings
/// and profiles. Version 3 (issue 14): the conversations view, and claim
/// acceptances among the marketplace's expiries.
const SNAPSHOT_VERSION: u32 = 3;

/// The registered views, applied in dependency order.
#[derive(Debug, Clone, Default)]
pub struct Views {
    pub membership: MembershipView,
    pub market: MarketView,
    pub conversations: ConversationsView,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Arrival sequence covered: every event with a sequence <= this is in.
    arrival: u64,
    /// The Lamport clock when the snapshot was taken.
    clock: u64,
    membership: serde_bytes_vec::Bytes,
    market: serde_bytes_vec::Bytes,
    conversations: serde_bytes_vec::Bytes,
}

/// Byte vectors as CBOR byte strings rather than arrays of numbers.
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Debug)]
    pub struct Bytes(pub Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let v = ciborium::Value::deserialize(d)?;
            match v {
                ciborium::Value::Bytes(b) => Ok(Bytes(b)),
                _ => Err(serde::de::Error::custom("expected a byte string")),
            }
        }
    }
}

/// What a snapshot restores besides the views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotCover {
    pub arrival: u64,
    pub clock: u64,
}

impl Views {
    pub fn reset(&mut self) {
        self.membership.reset();
        self.market.reset();
        self.conversations.reset();
    }

    /// Full replay: views may defer derived state until [`Views::end_bulk`].
    pub fn begin_bulk(&mut self) {
        self.market.begin_bulk();
    }

    pub fn end_bulk(&mut self) {
        self.market.end_bulk(&self.membership);
    }

    /// Applies one logged event to every view; returns the membership
    /// change so the log can release pending events of newly vouched keys.
    pub fn apply(&mut self, event: &VerifiedEvent) -> MembershipChange {
        self.apply_reporting(event, &mut Vec::new())
    }

    /// [`Views::apply`], appending to `out` what the views now show
    /// differently: level changes first, then post changes, then a
    /// [`ViewChange::Lost`] if the market view had to drop some.
    pub fn apply_reporting(
        &mut self,
        event: &VerifiedEvent,
        out: &mut Vec<ViewChange>,
    ) -> MembershipChange {
        let change = self.membership.apply(event);
        self.market.apply(event, &self.membership, &change);
        let conversation = self.conversations.apply_reporting(event, &self.membership);
        out.extend(change.levels_changed.iter().map(|node| ViewChange::Level {
            node: *node,
            level: self.membership.level(node),
        }));
        let (posts, lost) = self.market.take_changes();
        out.extend(
            posts
                .into_iter()
                .map(|(name, change)| ViewChange::Post { name, change }),
        );
        out.extend(conversation.map(ViewChange::Conversation));
        if lost > 0 {
            out.push(ViewChange::Lost { count: lost });
        }
        change
    }

    pub fn snapshot_state(&self, cover: SnapshotCover) -> Result<Vec<u8>, ViewError> {
        to_cbor(&Snapshot {
            version: SNAPSHOT_VERSION,
            arrival: cover.arrival,
            clock: cover.clock,
            membership: serde_bytes_vec::Bytes(self.membership.snapshot_state()?),
            market: serde_bytes_vec::Bytes(self.market.snapshot_state()?),
            conversations: serde_bytes_vec::Bytes(self.conversations.snapshot_state()?),
        })
    }

    /// Restores every view; on error the views are left reset.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<SnapshotCover, ViewError> {
        let result = self.try_restore(bytes);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn try_restore(&mut self, bytes: &[u8]) -> Result<SnapshotCover, ViewError> {
        let snap: Snapshot = from_cbor(bytes)?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(ViewError::Decode(format!(
                "snapshot version {} (this node writes {SNAPSHOT_VERSION})",
                snap.version
            )));
        }
        self.membership.restore_state(&snap.membership.0)?;
        self.market
            .restore_state(&snap.market.0, &self.membership)?;
        self.conversations.restore_state(&snap.conversations.0)?;
        Ok(SnapshotCover {
            arrival: snap.arrival,
            clock: snap.clock,
        })
    }

    /// One digest over every view.
    pub fn digest(&self) -> [u8; 32] {
        digest_of(&(
            self.membership.digest(),
            self.market.digest(),
            self.conversations.digest(),
        ))
    }
}

pub(crate) fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, ViewError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| ViewError::Encode(e.to_string()))?;
    Ok(out)
}

pub(crate) fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ViewError> {
    ciborium::from_reader(bytes).map_err(|e| ViewError::Decode(e.to_string()))
}

/// SHA-256 of the serde CBOR form. Only used on ordered data (BTreeMaps,
/// structs), so equal states give equal digests.
pub(crate) fn digest_of<T: Serialize>(value: &T) -> [u8; 32] {
    let mut out = Vec::new();
    // Serialising plain ordered data into a Vec cannot fail; an error would
    // be a programming bug, and an empty input still yields a digest.
    let ok = ciborium::into_writer(value, &mut out).is_ok();
    debug_assert!(ok);
    Sha256::digest(&out).into()
}
