//! Shared helpers for the multi-process tests and the benchmarks.

pub mod bench;
pub mod mesh;
pub mod plain_peer;
pub mod relevance;

use hearth_proto::{
    CommunityId, Event, EventError, EventId, Genesis, Identity, Payload, VerifiedEvent,
};

/// 2026-01-01T00:00:00Z: a fixed "now" so fixtures are byte-stable.
pub const FIXED_NOW_MS: u64 = 1_767_225_600_000;

/// A deterministic identity from a one-byte seed.
pub fn identity(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

/// A community founded by `anchor` at [`FIXED_NOW_MS`]: the same bytes every
/// time, so a test and its child process agree on the community.
pub fn genesis(anchor: &Identity, name: &str) -> Result<VerifiedEvent, EventError> {
    Event {
        id: EventId::from_parts(FIXED_NOW_MS, 1),
        ts: FIXED_NOW_MS,
        author: anchor.node_id(),
        lamport: 0,
        community: CommunityId::default(),
        payload: Payload::Genesis(Genesis {
            name: name.into(),
            anchors: vec![anchor.node_id()],
        }),
    }
    .sign(anchor)
}
