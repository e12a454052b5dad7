//! Lamport-range anti-entropy (DESIGN.md §5): range-based set reconciliation
//! over the ordered key space `(lamport, hash)`, in the style of Negentropy.
//!
//! A message carries consecutive ranges covering the key space, each named
//! by its exclusive upper bound (the lower bound is the previous range's
//! upper bound), in one of three modes:
//! - `Skip`: this range is settled;
//! - `Fingerprint`: the sender's count and fingerprint of the range;
//! - `Ids`: the sender's complete list of items in the range, as 8-byte
//!   short ids: SHA-256 of a per-session salt and the event hash, truncated.
//!   A full hash is 32 bytes; 8 bytes make the lists 4x smaller, and the
//!   salt means a rare short-id collision between two items of one range
//!   cannot hide a difference in the next session too.
//!
//! A side answering a differing fingerprint either lists its ids (a small
//! range) or splits its items into [`BUCKETS`] sub-ranges of equal count and
//! sends their fingerprints. A side answering an id list knows both
//! differences at once: it pushes the events the other lacks and asks
//! (`want`) for the ones it lacks. So each side learns what the other lacks,
//! equal logs settle in one round trip, and a few differences settle in
//! O(log n) round trips with bytes close to the events themselves.
//!
//! Sans-IO: a [`SyncSession`] reads the store through [`EventStore`] and
//! returns messages to send; received events are handed back as bytes for
//! the caller to pass through verification ([`crate::core::Node::receive`]):
//! sync never bypasses the log's checks.

use std::collections::BTreeSet;
use std::ops::Bound;

use hearth_proto::{EventHash, EventKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{EventStore, StoreError};

/// A range with at most this many items is answered with its id list
/// (32 bytes each) rather than split: below ~2 x BUCKETS items splitting
/// costs more bytes than listing.
pub const LEAF_ITEMS_MAX: usize = 32;
/// Sub-ranges per split. 16 keeps each level ~400 bytes and 100k items
/// four levels deep.
pub const BUCKETS: usize = 16;
/// Encoded size cap of one message. Well under the request-response codec
/// limit so an honest message always fits.
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Ranges per message: a split answers at most BUCKETS per incoming range.
pub const RANGES_MAX: usize = 4096;
/// Ids in one `Ids` range (a leaf is at most LEAF_ITEMS_MAX; a little slack).
pub const IDS_MAX: usize = 4 * LEAF_ITEMS_MAX;
/// Events pushed per message, and their total bytes.
pub const EVENTS_MAX: usize = 512;
pub const EVENT_BATCH_BYTES_MAX: usize = 640 << 10;
/// Hashes asked for in one message.
pub const WANT_MAX: usize = 4096;
/// Bytes of ranges and wants one answer may spend; past it, the remaining
/// ranges are handed back as plain fingerprints for the next round. With
/// the event batch this keeps every honest message under MESSAGE_BYTES_MAX
/// (320 + 640 KiB + framing).
pub const RANGE_BYTES_BUDGET: usize = 320 << 10;
/// Bytes of a short id.
pub const SHORT_ID_BYTES: usize = 8;
/// Round trips after which a session gives up (a peer that never settles).
pub const ROUNDS_MAX: u32 = 64;

/// Why a sync message was refused.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync message is {size} bytes, over the {MESSAGE_BYTES_MAX}-byte limit")]
    TooLarge { size: usize },
    #[error("sync message is not valid CBOR for this protocol: {0}")]
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
    #[error("sync session exceeded {ROUNDS_MAX} round trips")]
    TooManyRounds,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An exclusive upper bound in the key space: every key below
/// `(lamport, prefix padded with zero bytes)`. `None` in a range means +inf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBound {
    #[serde(rename = "l")]
    pub lamport: u64,
    #[serde(rename = "p", with = "bytes")]
    pub prefix: Vec<u8>,
}

impl KeyBound {
    /// Whether `key` lies below this bound.
    fn above(&self, key: &EventKey) -> bool {
        (key.lamport, &key.hash.0[..]) < (self.lamport, &self.padded()[..])
    }

    fn padded(&self) -> [u8; 32] {
        let mut p = [0u8; 32];
        p[..self.prefix.len()].copy_from_slice(&self.prefix);
        p
    }

    /// The first key at or above this bound (for store range queries).
    fn as_key(&self) -> EventKey {
        EventKey {
            lamport: self.lamport,
            hash: EventHash(self.padded()),
        }
    }

    /// The shortest bound that separates `below` from `at` (below < at):
    /// the Lamport time alone when they differ, else the shortest hash
    /// prefix of `at` that `below` does not share.
    fn between(below: &EventKey, at: &EventKey) -> KeyBound {
        if below.lamport != at.lamport {
            return KeyBound {
                lamport: at.lamport,
                prefix: Vec::new(),
            };
        }
        let shared = below
            .hash
            .0
            .iter()
            .zip(at.hash.0.iter())
            .take_while(|(a, b)| a == b)
            .count();
        KeyBound {
            lamport: at.lamport,
            prefix: at.hash.0[..(shared + 1).min(32)].to_vec(),
        }
    }
}

/// Byte strings as CBOR byte strings, not arrays of numbers.
mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match ciborium::Value::deserialize(d)? {
            ciborium::Value::Bytes(b) => Ok(b),
            _ => Err(serde::de::Error::custom("expected a byte string")),
        }
    }
}

mod byte_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct B(#[serde(with = "super::bytes")] Vec<u8>);

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| B(b.clone())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<B>::deserialize(d)?.into_iter().map(|b| b.0).collect())
    }
}

/// An item's id within one session: salted and truncated (see module docs).
pub type ShortId = [u8; SHORT_ID_BYTES];

pub fn short_id(salt: u64, hash: &EventHash) -> ShortId {
    let mut h = Sha256::new();
    h.update(salt.to_le_bytes());
    h.update(hash.0);
    let mut out = [0u8; SHORT_ID_BYTES];
    out.copy_from_slice(&h.finalize()[..SHORT_ID_BYTES]);
    out
}

/// Short ids as one concatenated byte string: no per-item framing.
mod short_list {
    use serde::{Deserializer, Serializer};

    use super::{ShortId, SHORT_ID_BYTES};

    pub fn serialize<S: Serializer>(v: &[ShortId], s: S) -> Result<S::Ok, S::Error> {
        let flat: Vec<u8> = v.iter().flatten().copied().collect();
        s.serialize_bytes(&flat)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ShortId>, D::Error> {
        let flat = super::bytes::deserialize(d)?;
        if flat.len() % SHORT_ID_BYTES != 0 {
            return Err(serde::de::Error::custom(
                "id list is not a multiple of 8 bytes",
            ));
        }
        Ok(flat
            .chunks_exact(SHORT_ID_BYTES)
            .map(|c| {
                let mut id = [0u8; SHORT_ID_BYTES];
                id.copy_from_slice(c);
                id
            })
            .collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "s")]
    Skip,
    #[serde(rename = "f")]
    Fingerprint {
        #[serde(with = "bytes")]
        fp: Vec<u8>,
        #[serde(rename = "n")]
        count: u64,
    },
    #[serde(rename = "i")]
    Ids(#[serde(with = "short_list")] Vec<ShortId>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Exclusive upper bound; `None` is +inf (the last range).
    #[serde(rename = "u")]
    pub upper: Option<KeyBound>,
    #[serde(rename = "m")]
    pub mode: Mode,
}

/// One sync message. Empty (all ranges skipped, nothing wanted or sent)
/// means the sender has nothing more to say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// Short field names: sync bytes are a measured target (DESIGN.md §5).
pub struct SyncMessage {
    /// The session's salt for short ids, chosen by the initiator.
    #[serde(rename = "s")]
    pub salt: u64,
    #[serde(rename = "r")]
    pub ranges: Vec<Range>,
    #[serde(rename = "w", with = "short_list")]
    pub want: Vec<ShortId>,
    #[serde(rename = "e", with = "byte_list")]
    pub events: Vec<Vec<u8>>,
}

impl SyncMessage {
    pub fn is_empty(&self) -> bool {
        self.want.is_empty()
            && self.events.is_empty()
            && self.ranges.iter().all(|r| r.mode == Mode::Skip)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Serialising owned plain data into a Vec cannot fail.
        let ok = ciborium::into_writer(self, &mut out).is_ok();
        debug_assert!(ok);
        out
    }

    /// Decodes and checks every bound before anything is looked at.
    pub fn decode(bytes: &[u8]) -> Result<SyncMessage, SyncError> {
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(SyncError::TooLarge { size: bytes.len() });
        }
        let msg: SyncMessage =
            ciborium::from_reader(bytes).map_err(|e| SyncError::Malformed(e.to_string()))?;
        msg.check()?;
        Ok(msg)
    }

    fn check(&self) -> Result<(), SyncError> {
        let too_many = |what, got: usize, max| {
            if got > max {
                Err(SyncError::TooMany { what, got, max })
            } else {
                Ok(())
            }
        };
        too_many("ranges", self.ranges.len(), RANGES_MAX)?;
        too_many("wanted hashes", self.want.len(), WANT_MAX)?;
        too_many("events", self.events.len(), EVENTS_MAX)?;
        let event_bytes: usize = self.events.iter().map(Vec::len).sum();
        too_many("event bytes", event_bytes, EVENT_BATCH_BYTES_MAX)?;
        let mut prev: Option<&KeyBound> = None;
        for (i, r) in self.ranges.iter().enumerate() {
            if let Mode::Ids(ids) = &r.mode {
                too_many("ids in a range", ids.len(), IDS_MAX)?;
            }
            match &r.upper {
                Some(b) => {
                    if b.prefix.len() > 32 {
                        return Err(SyncError::BadBound(b.prefix.len()));
                    }
                    if prev.is_some_and(|p| (p.lamport, p.padded()) >= (b.lamport, b.padded())) {
                        return Err(SyncError::Unordered { index: i });
                    }
                    prev = Some(b);
                }
                None if i + 1 != self.ranges.len() => {
                    return Err(SyncError::Unordered { index: i });
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Bytes of a range fingerprint. Fingerprints are salted per session like
/// short ids, so a collision (2^-64) cannot hide a difference twice: 8 bytes
/// instead of 16 saves ~130 bytes per split level.
pub const FINGERPRINT_BYTES: usize = 8;

/// Fingerprint of a set of hashes: their sum mod 2^256 (little-endian) and
/// count, hashed with the session salt and truncated to
/// [`FINGERPRINT_BYTES`]. Order-free, so one pass suffices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accumulator {
    sum: [u64; 4],
    count: u64,
}

impl Accumulator {
    pub fn add(&mut self, h: &EventHash) {
        let mut carry = 0u128;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h.0[i * 8..i * 8 + 8]);
            let v = u128::from(*limb) + u128::from(u64::from_le_bytes(w)) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        self.count += 1;
    }

    pub fn fingerprint(&self, salt: u64) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(salt.to_le_bytes());
        for limb in self.sum {
            h.update(limb.to_le_bytes());
        }
        h.update(self.count.to_le_bytes());
        h.finalize()[..FINGERPRINT_BYTES].to_vec()
    }
}

/// What a session did, for status and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStats {
    /// Messages this side handled from the peer.
    pub messages_in: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub events_sent: u64,
    pub events_received: u64,
}

/// One side of a reconciliation with one peer. The same type serves the
/// initiator and the responder: each message in gets one message out.
#[derive(Debug, Default)]
pub struct SyncSession {
    salt: u64,
    stats: SyncStats,
    /// Events the peer lacks that did not fit in the last message.
    outbox: Vec<EventHash>,
    /// Short ids we asked for and have not received.
    wanted: BTreeSet<ShortId>,
    /// Our items we listed in `Ids`, so a `want` can name them briefly.
    advertised: std::collections::BTreeMap<ShortId, EventHash>,
    /// Received event bytes for the caller to verify and admit.
    received: Vec<Vec<u8>>,
}

fn keys_in<S: EventStore>(
    store: &S,
    lower: &Option<KeyBound>,
    upper: &Option<KeyBound>,
) -> Result<Vec<EventKey>, StoreError> {
    let from = lower
        .as_ref()
        .map_or(Bound::Unbounded, |b| Bound::Included(b.as_key()));
    let to = upper
        .as_ref()
        .map_or(Bound::Unbounded, |b| Bound::Excluded(b.as_key()));
    let keys: Result<Vec<EventKey>, StoreError> = store.keys(from, to).collect();
    let mut keys = keys?;
    // The store's bounds are on padded keys; re-check against the bound
    // semantics (identical by construction, asserted in tests).
    if let Some(b) = upper {
        keys.retain(|k| b.above(k));
    }
    Ok(keys)
}

fn fingerprint_of(keys: &[EventKey], salt: u64) -> (Vec<u8>, u64) {
    let mut acc = Accumulator::default();
    for k in keys {
        acc.add(&k.hash);
    }
    (acc.fingerprint(salt), keys.len() as u64)
}

impl SyncSession {
    /// Starts a reconciliation: one range covering everything. `salt`
    /// comes from the node's seeded generator (a fresh one per session).
    pub fn initiate<S: EventStore>(
        store: &S,
        salt: u64,
    ) -> Result<(SyncSession, SyncMessage), SyncError> {
        let mut session = SyncSession {
            salt,
            ..SyncSession::default()
        };
        // Open with the split a responder would answer with (as negentropy
        // does): half a round trip saved on every log that differs, for a
        // few hundred bytes more when the logs are equal.
        let keys = keys_in(store, &None, &None)?;
        let mut ranges = Vec::new();
        if keys.len() > LEAF_ITEMS_MAX {
            split(&keys, &None, salt, &mut ranges);
        } else {
            let (fp, count) = fingerprint_of(&keys, salt);
            ranges.push(Range {
                upper: None,
                mode: Mode::Fingerprint { fp, count },
            });
        }
        let msg = SyncMessage {
            salt,
            ranges,
            ..SyncMessage::default()
        };
        session.stats.bytes_sent += msg.encode().len() as u64;
        Ok((session, msg))
    }

    /// Handles one message from the peer and returns the answer. An empty
    /// answer means this side has nothing more to say.
    pub fn handle<S: EventStore>(
        &mut self,
        store: &S,
        bytes: &[u8],
    ) -> Result<SyncMessage, SyncError> {
        let msg = SyncMessage::decode(bytes)?;
        self.stats.messages_in += 1;
        if self.stats.messages_in > ROUNDS_MAX {
            return Err(SyncError::TooManyRounds);
        }
        self.stats.bytes_received += bytes.len() as u64;
        // The responder adopts the initiator's salt with its first message.
        if self.stats.messages_in == 1 && self.salt == 0 {
            self.salt = msg.salt;
        }
        let salt = self.salt;
        let mut out = SyncMessage {
            salt,
            ..SyncMessage::default()
        };

        // Events first: what the peer pushed or we asked for.
        for e in msg.events {
            let hash = hearth_proto::hash_bytes(&e);
            self.wanted.remove(&short_id(salt, &hash));
            self.stats.events_received += 1;
            self.received.push(e);
        }
        // Then what the peer wants from us (only items we listed).
        for id in msg.want {
            if let Some(hash) = self.advertised.get(&id) {
                self.outbox.push(*hash);
            }
        }

        let mut lower: Option<KeyBound> = None;
        let mut spent = 0usize;
        for range in msg.ranges {
            if spent > RANGE_BYTES_BUDGET && range.mode != Mode::Skip {
                // Out of budget: answer with our fingerprint; the peer
                // picks this range up again next round.
                let mine = keys_in(store, &lower, &range.upper)?;
                let (fp, count) = fingerprint_of(&mine, salt);
                spent += 64;
                out.ranges.push(Range {
                    upper: range.upper.clone(),
                    mode: Mode::Fingerprint { fp, count },
                });
                lower = range.upper;
                continue;
            }
            match range.mode {
                Mode::Skip => push_skip(&mut out.ranges, range.upper.clone()),
                Mode::Fingerprint { fp, count } => {
                    let mine = keys_in(store, &lower, &range.upper)?;
                    let (my_fp, my_count) = fingerprint_of(&mine, salt);
                    if my_fp == fp && my_count == count {
                        push_skip(&mut out.ranges, range.upper.clone());
                    } else if mine.len() <= LEAF_ITEMS_MAX {
                        spent += 64 + SHORT_ID_BYTES * mine.len();
                        let ids = mine
                            .iter()
                            .map(|k| {
                                let id = short_id(salt, &k.hash);
                                self.advertised.insert(id, k.hash);
                                id
                            })
                            .collect();
                        out.ranges.push(Range {
                            upper: range.upper.clone(),
                            mode: Mode::Ids(ids),
                        });
                    } else {
                        spent += 64 * BUCKETS;
                        split(&mine, &range.upper, salt, &mut out.ranges);
                    }
                }
                Mode::Ids(theirs) => {
                    let mine = keys_in(store, &lower, &range.upper)?;
                    let theirs: BTreeSet<ShortId> = theirs.into_iter().collect();
                    let mine_ids: BTreeSet<ShortId> =
                        mine.iter().map(|k| short_id(salt, &k.hash)).collect();
                    for k in &mine {
                        if !theirs.contains(&short_id(salt, &k.hash)) {
                            self.outbox.push(k.hash);
                        }
                    }
                    for id in theirs.difference(&mine_ids) {
                        if self.wanted.insert(*id) {
                            spent += SHORT_ID_BYTES;
                            out.want.push(*id);
                        }
                    }
                    push_skip(&mut out.ranges, range.upper.clone());
                }
            }
            lower = range.upper;
        }
        debug_assert!(out.want.len() <= WANT_MAX, "the range budget bounds wants");
        self.fill_events(store, &mut out)?;
        if out.is_empty() {
            out.ranges.clear();
        }
        self.stats.bytes_sent += out.encode().len() as u64;
        Ok(out)
    }

    /// Moves events from the outbox into `out`, within the batch bounds.
    fn fill_events<S: EventStore>(
        &mut self,
        store: &S,
        out: &mut SyncMessage,
    ) -> Result<(), SyncError> {
        let mut bytes = 0usize;
        let mut rest = Vec::new();
        let outbox = std::mem::take(&mut self.outbox);
        for hash in outbox {
            if out.events.len() >= EVENTS_MAX {
                rest.push(hash);
                continue;
            }
            let Some(event) = store.get(&hash)? else {
                continue; // asked for something we do not have: ignore
            };
            if bytes + event.bytes().len() > EVENT_BATCH_BYTES_MAX {
                rest.push(hash);
                continue;
            }
            bytes += event.bytes().len();
            out.events.push(event.into_bytes());
            self.stats.events_sent += 1;
        }
        self.outbox = rest;
        Ok(())
    }

    /// Event bytes received so far, for the caller to verify and admit.
    pub fn take_received(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.received)
    }

    /// Nothing left to send and nothing awaited.
    pub fn is_done(&self) -> bool {
        self.outbox.is_empty() && self.wanted.is_empty()
    }

    pub fn stats(&self) -> SyncStats {
        self.stats
    }
}

fn push_skip(ranges: &mut Vec<Range>, upper: Option<KeyBound>) {
    // Consecutive skips merge into one: fewer bytes, same meaning.
    if let Some(last) = ranges.last_mut() {
        if last.mode == Mode::Skip {
            last.upper = upper;
            return;
        }
    }
    ranges.push(Range {
        upper,
        mode: Mode::Skip,
    });
}

/// Splits `keys` (all inside the range ending at `upper`) into BUCKETS
/// sub-ranges of about equal count and appends their fingerprints.
fn split(keys: &[EventKey], upper: &Option<KeyBound>, salt: u64, out: &mut Vec<Range>) {
    let per = keys.len().div_ceil(BUCKETS);
    let mut start = 0;
    while start < keys.len() {
        let end = (start + per).min(keys.len());
        let bound = if end == keys.len() {
            upper.clone()
        } else {
            Some(KeyBound::between(&keys[end - 1], &keys[end]))
        };
        let (fp, count) = fingerprint_of(&keys[start..end], salt);
        out.push(Range {
            upper: bound,
            mode: Mode::Fingerprint { fp, count },
        });
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(lamport: u64, first: u8) -> EventKey {
        let mut h = [0u8; 32];
        h[0] = first;
        h[31] = 1;
        EventKey {
            lamport,
            hash: EventHash(h),
        }
    }

    #[test]
    fn bound_between_separates_neighbours() {
        let (a, b) = (key(5, 0x10), key(5, 0x11));
        let bound = KeyBound::between(&a, &b);
        assert_eq!(bound.prefix, vec![0x11]);
        assert!(bound.above(&a) && !bound.above(&b));
        let bound = KeyBound::between(&key(4, 0xff), &key(5, 0));
        assert!(bound.prefix.is_empty());
        assert!(bound.above(&key(4, 0xff)) && !bound.above(&key(5, 0)));
    }

    #[test]
    fn accumulator_is_order_free() {
        let (a, b) = (key(1, 1).hash, key(2, 2).hash);
        let mut x = Accumulator::default();
        x.add(&a);
        x.add(&b);
        let mut y = Accumulator::default();
        y.add(&b);
        y.add(&a);
        assert_eq!(x.fingerprint(7), y.fingerprint(7));
        assert_ne!(x.fingerprint(7), Accumulator::default().fingerprint(7));
        assert_ne!(x.fingerprint(7), x.fingerprint(8), "salted per session");
    }

    #[test]
    fn message_round_trips_and_hashes_are_flat_bytes() {
        let msg = SyncMessage {
            salt: 9,
            ranges: vec![Range {
                upper: None,
                mode: Mode::Ids(vec![
                    short_id(9, &key(1, 1).hash),
                    short_id(9, &key(2, 2).hash),
                ]),
            }],
            want: vec![short_id(9, &key(3, 3).hash)],
            events: vec![vec![1, 2, 3]],
        };
        let bytes = msg.encode();
        assert_eq!(SyncMessage::decode(&bytes).ok(), Some(msg));
        // 3 x 8 id bytes plus small framing: no per-id overhead.
        assert!(bytes.len() < 3 * 8 + 32, "{} bytes", bytes.len());
    }
}
