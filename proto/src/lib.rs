//! HearthNet wire format, version 1: event types, canonical CBOR, signing.
//!
//! This crate is pure: no I/O, no clocks, no async. Everything here is the
//! same on every node, because whether an event is valid must not depend on
//! who checks it. See `DESIGN.md` section 3 for the format itself.
//!
//! - [`cbor`]: canonical encoding and the strict decoder.
//! - [`event`]: the envelope, signing and verification; [`VerifiedEvent`].
//! - [`payload`]: typed `data` of the known event types.
//! - [`ids`]: node, community and event identifiers.
//! - [`sealed`]: private messages sealed to a member's key (`dm.sealed`).

#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod cbor;
pub mod event;
pub mod ids;
pub mod payload;
pub mod sealed;
pub mod sign;

pub use event::{
    hash_bytes, Event, EventError, EventKey, SignedEvent, VerifiedEvent, EVENT_BYTES_MAX,
    FORMAT_VERSION, LAMPORT_MAX,
};
pub use ids::{CommunityId, EventHash, EventId, IdParseError, NodeId};
pub use payload::{
    Category, ClaimRef, CommunitySettings, DmSealed, EventRef, ExpiryReason, Genesis, Level,
    Location, MemberProfile, MemberSet, Payload, PostClaim, PostContent, PostCreated, PostExpired,
    PostReply, PostUpdated, SchemaError,
};
pub use sign::{Identity, SIGNING_DOMAIN};
