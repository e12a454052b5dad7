//! Lamport-range anti-entropy (DESIGN.md §5): range-based set reconciliation
//! over the ordered key space `(lamport, hash)`, in the style of Negentropy,
//! with set sketches for the leftover ranges.
//!
//! A message carries consecutive ranges covering the key space, each named
//! by its exclusive upper bound (the lower bound is the previous range's
//! upper bound), and says one thing per range ([`Mode`]):
//! - `Skip`: settled;
//! - `Fingerprint`: count and DESIGN.md fingerprint (truncated salted
//!   SHA-256 of the sum of the item hashes; for the whole key space, of
//!   the wide [`LogDigest`] instead): equal or not;
//! - `Sketch`: count and a set sketch (PinSketch over GF(2^64), see
//!   `sketch.rs`) of the items' 64-bit salted short ids, optionally with
//!   estimation levels (sketches of 4^-j samples);
//! - `Ids`: the sender's full list of short ids in the range;
//! - `Want` / `Roots`: "send me your items in this range with these short
//!   ids" / "whose short ids are roots of this polynomial".
//!
//! How a reconciliation runs:
//! 1. The initiator opens with one range: the fingerprint of its whole
//!    log, from the [`LogDigest`] its store keeps up to date on insert
//!    (~20 bytes). Equal logs settle on it in one round trip, and neither
//!    side reads a key: the responder compares with its own cached digest.
//!    Otherwise the responder answers with a salted sketch of everything
//!    with estimation levels; or, when the counts differ by
//!    [`OPENING_CAPACITY`] or more, with a partition sized for that
//!    difference (step 3) at once.
//! 2. XOR-ing two sketches gives the sketch of the difference. If it has
//!    fewer than `capacity` elements it decodes. The receiver finds which
//!    elements are its own (the peer lacks them: pushed at once) and asks
//!    for the rest with `Roots`. So a few differences settle in 2 round
//!    trips, whatever the log size.
//! 3. Otherwise the estimation levels give the size `d` of the difference
//!    within a factor of about two. The receiver answers with one sketch
//!    sized for `d`, or partitions its items into about
//!    `d / CHILD_DIFFERENCES_TARGET` equal-count sub-ranges, each with a
//!    sketch sized for its share. That is one round trip for any number of
//!    scattered differences, at ~12 bytes per difference on top of the 8
//!    of naming it. A sub-range whose sketch does not decode is answered
//!    with a larger sketch and fresh estimation levels (capacities only
//!    grow, and past [`SKETCH_CAPACITY_MAX`] the range is split), so every
//!    exchange makes progress.
//! 4. Small ranges, or a side that holds few items of a range, are settled
//!    with explicit id lists (`Ids` -> `Want`). A node back from a week
//!    offline lacks whole ranges: the peer sees its empty list and pushes
//!    everything there.
//!
//! Each side learns what the other lacks, so sync is two-way. Events travel
//! in bounded batches. The initiator ends the session when it has nothing
//! to send or await and the peer's last message left no range open and
//! carried a batch that was not full ([`SyncSession::finished`]): no
//! closing exchange of empty messages.
//!
//! Range fingerprints come from the store
//! ([`EventStore::fingerprint`](crate::store::EventStore::fingerprint),
//! [`EventStore::log_digest`](crate::store::EventStore::log_digest)),
//! which answers from a [`FingerprintIndex`] instead of re-hashing the log.
//! The session salt is applied to the cached sum at the end, not to each
//! item; the whole-log digest is 4,096 bits wide so that a crafted
//! collision cannot hide a difference in every session (see
//! [`LogDigest`]).
//!
//! This goes beyond the fingerprint tree that DESIGN.md §5 describes, as
//! that section suggests ("sketches for small leftover ranges"). With 8-byte
//! id lists, 5,000 scattered differences in 100k events cost ~2.1x the
//! missing events' bytes; with sketches, ~1.1x.
//!
//! Sans-IO: a [`SyncSession`] reads the store through
//! [`EventStore`](crate::store::EventStore) and returns messages to send.
//! Received events are handed back as bytes for the caller to pass through
//! verification ([`crate::core::Node::receive`]): sync never bypasses the
//! log's checks. Pending events are not in the store, so they are not
//! synced.

mod fingerprint;
mod index;
mod message;
mod session;
mod sketch;

pub use fingerprint::{short_id, Accumulator, LogDigest};
pub use index::FingerprintIndex;
pub use message::{KeyBound, Mode, Range, SyncMessage};
pub use session::{SyncSession, SyncStats};

use crate::store::StoreError;

/// Encoded size cap of one message. Well under the request-response codec
/// limit, so an honest message always fits. Replies stay under it by
/// construction: ranges <= RANGE_BYTES_MAX, events <= EVENT_BATCH_BYTES_MAX
/// plus at most 3 bytes of framing each, and a few bytes of header.
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Encoded bytes of ranges one reply may spend. Past it, the remaining
/// ranges are answered with plain fingerprints for the next round.
pub const RANGE_BYTES_MAX: usize = 384 << 10;
/// Ranges in one message. A message must fit in RANGE_BYTES_MAX with a
/// fingerprint (<= 64 bytes) per range, and answering each range costs a
/// store seek.
pub const RANGES_MAX: usize = 4096;
/// Short ids in one `Ids` or `Want` range. We list a range only when the
/// list is no bigger than the sketch we would otherwise send (capacity <=
/// 64), with room for peers that list a little more eagerly.
pub const IDS_MAX: usize = 128;
/// Syndromes in one sketch (512 bytes), and coefficients in one `Roots`.
/// Bigger differences are partitioned first. Decoding costs O(capacity^2)
/// field products, so the cap also bounds a hostile peer's cost.
pub const SKETCH_CAPACITY_MAX: usize = 64;
/// Syndromes (sketches and estimation levels) in one message: 256 KiB.
/// Decoding a sketch of capacity c costs about c^2 field products, so this
/// bounds the work a hostile message can ask for to ~4M products (~0.1 s),
/// while an honest partition of BUCKETS_MAX sketches of ~36 fits.
pub const SYNDROMES_MAX: usize = 32 * 1024;
/// Syndromes per estimation level: the densest level that decodes (at most
/// 7 elements) gives the estimate, within a factor of about two.
pub const STRATA_CAPACITY: usize = 8;
/// Estimation levels in one sketch: level j samples 4^-j of the items, so
/// 16 levels cover logs of billions of events.
pub const STRATA_LEVELS_MAX: usize = 16;
/// Capacity of the opening sketch: 64 bytes that settle up to 7
/// differences in one exchange, whatever the log size.
pub const OPENING_CAPACITY: usize = 8;
/// Differences per partition sub-range. Each sub-range's sketch carries a
/// margin of about 2*sqrt(d) + 2 syndromes. At 24 that margin is about
/// half of the 8 bytes per difference, while a capacity of ~36 stays well
/// inside SKETCH_CAPACITY_MAX when the estimate is off by half.
pub const CHILD_DIFFERENCES_TARGET: f64 = 24.0;
/// Sub-ranges one range may be partitioned into: 6k differences per round
/// trip. Even at capacity 64, 256 sketches take half of SYNDROMES_MAX and
/// ~150 KiB, so a partition always fits in a reply.
pub const BUCKETS_MAX: usize = 256;
/// Events in one message. Each is verified on arrival (~10k per second per
/// core), so this bounds the work one message brings to ~0.2 s.
pub const EVENTS_MAX: usize = 2048;
/// Event bytes in one message: 36 events of the maximum size, or ~2,500
/// typical ones.
pub const EVENT_BATCH_BYTES_MAX: usize = 576 << 10;
/// Bytes of a range fingerprint. It is salted per session, so a chance
/// collision (2^-64) cannot hide a difference twice.
pub const FINGERPRINT_BYTES: usize = 8;
/// Messages with open ranges a session may handle. Each one settles
/// ranges or grows or splits their sketches, and that takes a handful of
/// rounds. A peer that never settles is cut off here.
pub const ROUNDS_MAX: u32 = 64;
/// Messages of any kind a session may handle. Event-only messages carry a
/// catch-up of ~2,500 events each, so this allows ~10M events per session.
pub const MESSAGES_MAX: u32 = 4096;

/// Why a sync message was refused. The session is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync message is {size} bytes, over the {MESSAGE_BYTES_MAX}-byte limit")]
    TooLarge { size: usize },
    #[error("sync message is not valid for this protocol: {0}")]
    Malformed(String),
    #[error("sync message has {got} {what}, over the limit of {max}")]
    TooMany {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("sync ranges are not in ascending order at range {index}")]
    Unordered { index: usize },
    #[error("sync bound has a hash prefix of {0} bytes (at most 32)")]
    BadBound(usize),
    #[error("sync session exceeded {ROUNDS_MAX} rounds or {MESSAGES_MAX} messages")]
    TooManyRounds,
    /// A message with ranges whose salt is not the running session's: a
    /// late message of a session that is over, or a confused peer.
    #[error("sync message of session {theirs:#x}, not of the running one ({ours:#x})")]
    OtherSession { ours: u64, theirs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}
