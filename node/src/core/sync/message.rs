//! Sync messages and their compact CBOR form.
//!
//! ```text
//! message = { ?"e": [* bytes],          ; events, encoded as on the wire
//!             ?"r": [* range],          ; consecutive ranges, ascending
//!             ?"s": uint }              ; session salt (present with "r")
//! range   = [mode, ?bound, *payload]    ; bound absent: +inf (last range only)
//! bound   = dl / [dl, bytes]            ; Lamport delta from the previous
//!                                       ; bound, and a hash prefix if needed
//! mode 0 Skip        payload: none
//! mode 1 Fingerprint payload: count, bytes(8)
//! mode 2 Sketch      payload: count, bytes(8 x capacity), bytes(8 x 8 x levels)
//! mode 3 Ids         payload: bytes(8 x n)      short ids, little-endian
//! mode 4 Want        payload: bytes(8 x n)
//! mode 5 Roots       payload: bytes(8 x degree)  polynomial coefficients
//! ```
//!
//! Positional arrays and one byte string per id list keep a fingerprint
//! range at 13-17 bytes, where a map with named fields took about 40.
//! Anything over the caps in [`super`], out of order or of the wrong
//! shape is a typed [`SyncError`], found before any of it is acted on.

use ciborium::value::{Integer, Value};
use hearth_proto::{EventHash, EventKey, EVENT_BYTES_MAX};

use super::{
    SyncError, EVENTS_MAX, EVENT_BATCH_BYTES_MAX, FINGERPRINT_BYTES, IDS_MAX, MESSAGE_BYTES_MAX,
    RANGES_MAX, SKETCH_CAPACITY_MAX, STRATA_CAPACITY, STRATA_LEVELS_MAX, SYNDROMES_MAX,
};

/// An exclusive upper bound in the key space: every key below
/// `(lamport, prefix padded with zero bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBound {
    pub lamport: u64,
    pub prefix: Vec<u8>,
}

impl KeyBound {
    fn padded(&self) -> [u8; 32] {
        let mut p = [0u8; 32];
        let n = self.prefix.len().min(32);
        p[..n].copy_from_slice(&self.prefix[..n]);
        p
    }

    /// The first key at or above this bound (for store range queries).
    pub(super) fn as_key(&self) -> EventKey {
        EventKey {
            lamport: self.lamport,
            hash: EventHash(self.padded()),
        }
    }

    /// The shortest bound that separates `below` from `at` (below < at):
    /// the Lamport time alone when they differ, else the shortest hash
    /// prefix of `at` that `below` does not share.
    pub(super) fn between(below: &EventKey, at: &EventKey) -> KeyBound {
        debug_assert!(below < at);
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

/// What one side says about one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Settled: nothing more to say.
    Skip,
    /// The sender's count and DESIGN.md fingerprint of the range. Cheap to
    /// make; tells equal from different, nothing more.
    Fingerprint {
        count: u64,
        fp: [u8; FINGERPRINT_BYTES],
    },
    /// The sender's count and set sketch of the range (capacity =
    /// `syndromes.len()`), optionally with estimation levels (`strata`, 8
    /// syndromes per level) from which the receiver sizes its answer when
    /// the sketch itself cannot be decoded.
    Sketch {
        count: u64,
        syndromes: Vec<u64>,
        strata: Vec<u64>,
    },
    /// The sender's complete list of short ids in the range.
    Ids(Vec<u64>),
    /// "Send me your items in this range with these short ids."
    Want(Vec<u64>),
    /// "Send me your items in this range whose short ids are roots of
    /// `x^n + c_1 x^(n-1) + ... + c_n`" (from a decoded sketch).
    Roots(Vec<u64>),
}

impl Mode {
    fn tag(&self) -> u8 {
        match self {
            Mode::Skip => 0,
            Mode::Fingerprint { .. } => 1,
            Mode::Sketch { .. } => 2,
            Mode::Ids(_) => 3,
            Mode::Want(_) => 4,
            Mode::Roots(_) => 5,
        }
    }
}

/// Payload fields per mode tag.
fn arity(tag: u8) -> Option<usize> {
    match tag {
        0 => Some(0),
        1 => Some(2),
        2 => Some(3),
        3..=5 => Some(1),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Exclusive upper bound; `None` is +inf (the last range).
    pub upper: Option<KeyBound>,
    pub mode: Mode,
}

/// One sync message. Ranges cover the key space from its minimum up to the
/// last range's bound; what lies above is settled (trailing skips are left
/// out). A message with no open range and no events says "nothing more".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncMessage {
    /// The session's salt for fingerprints and short ids, chosen by the
    /// initiator (never 0) and echoed by the responder. Sent only with
    /// ranges: a message without ranges decodes with salt 0.
    pub salt: u64,
    pub ranges: Vec<Range>,
    /// Encoded events the receiver lacks (or asked for).
    pub events: Vec<Vec<u8>>,
}

fn ids_to_bytes(ids: &[u64]) -> Value {
    Value::Bytes(ids.iter().flat_map(|i| i.to_le_bytes()).collect())
}

fn uint(v: u64) -> Value {
    Value::Integer(Integer::from(v))
}

fn malformed(what: impl Into<String>) -> SyncError {
    SyncError::Malformed(what.into())
}

fn too_many(what: &'static str, got: usize, max: usize) -> Result<(), SyncError> {
    if got > max {
        Err(SyncError::TooMany { what, got, max })
    } else {
        Ok(())
    }
}

fn as_u64(v: &Value, what: &str) -> Result<u64, SyncError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| malformed(format!("{what}: not a u64"))),
        _ => Err(malformed(format!("{what}: expected an unsigned integer"))),
    }
}

fn as_bytes<'a>(v: &'a Value, what: &str) -> Result<&'a [u8], SyncError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(malformed(format!("{what}: expected a byte string"))),
    }
}

fn as_array<'a>(v: &'a Value, what: &str) -> Result<&'a [Value], SyncError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(malformed(format!("{what}: expected an array"))),
    }
}

/// A byte string of 64-bit little-endian words, with a cap on their number.
fn as_words(v: &Value, what: &'static str, per: usize, max: usize) -> Result<Vec<u64>, SyncError> {
    let b = as_bytes(v, what)?;
    if b.len() % (8 * per) != 0 {
        return Err(malformed(format!(
            "{what}: {} bytes is not a multiple of {}",
            b.len(),
            8 * per
        )));
    }
    too_many(what, b.len() / (8 * per), max)?;
    Ok(b.chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect())
}

impl Range {
    fn to_value(&self, prev_lamport: &mut u64) -> Value {
        let mut items = vec![uint(u64::from(self.mode.tag()))];
        if let Some(b) = &self.upper {
            // Wrapping: a hand-made descending message still encodes (and
            // is then refused by the decoder).
            let dl = uint(b.lamport.wrapping_sub(*prev_lamport));
            *prev_lamport = b.lamport;
            items.push(if b.prefix.is_empty() {
                dl
            } else {
                Value::Array(vec![dl, Value::Bytes(b.prefix.clone())])
            });
        }
        match &self.mode {
            Mode::Skip => {}
            Mode::Fingerprint { count, fp } => {
                items.push(uint(*count));
                items.push(Value::Bytes(fp.to_vec()));
            }
            Mode::Sketch {
                count,
                syndromes,
                strata,
            } => {
                items.push(uint(*count));
                items.push(ids_to_bytes(syndromes));
                items.push(ids_to_bytes(strata));
            }
            Mode::Ids(ids) | Mode::Want(ids) | Mode::Roots(ids) => items.push(ids_to_bytes(ids)),
        }
        Value::Array(items)
    }

    fn from_value(v: &Value, prev_lamport: &mut u64, is_last: bool) -> Result<Range, SyncError> {
        let items = as_array(v, "range")?;
        let tag = match items.first() {
            Some(t) => as_u64(t, "range mode")?,
            None => return Err(malformed("empty range")),
        };
        let tag = u8::try_from(tag).map_err(|_| malformed(format!("unknown range mode {tag}")))?;
        let arity = arity(tag).ok_or_else(|| malformed(format!("unknown range mode {tag}")))?;
        let has_bound = match items.len().checked_sub(1 + arity) {
            Some(0) => false,
            Some(1) => true,
            _ => {
                return Err(malformed(format!(
                    "range of mode {tag} has {} fields",
                    items.len()
                )))
            }
        };
        let upper = if has_bound {
            let (dl, prefix) = match &items[1] {
                Value::Array(pair) if pair.len() == 2 => (
                    as_u64(&pair[0], "bound")?,
                    as_bytes(&pair[1], "bound prefix")?.to_vec(),
                ),
                other => (as_u64(other, "bound")?, Vec::new()),
            };
            if prefix.len() > 32 {
                return Err(SyncError::BadBound(prefix.len()));
            }
            let lamport = prev_lamport
                .checked_add(dl)
                .ok_or_else(|| malformed("bound Lamport time overflows"))?;
            *prev_lamport = lamport;
            Some(KeyBound { lamport, prefix })
        } else {
            None
        };
        let p = &items[1 + usize::from(has_bound)..];
        let mode = match tag {
            0 => Mode::Skip,
            1 => {
                let fp = as_bytes(&p[1], "fingerprint")?;
                Mode::Fingerprint {
                    count: as_u64(&p[0], "count")?,
                    fp: fp
                        .try_into()
                        .map_err(|_| malformed(format!("fingerprint of {} bytes", fp.len())))?,
                }
            }
            2 => {
                let syndromes = as_words(&p[1], "sketch capacity", 1, SKETCH_CAPACITY_MAX)?;
                if syndromes.is_empty() {
                    return Err(malformed("sketch of capacity 0"));
                }
                Mode::Sketch {
                    count: as_u64(&p[0], "count")?,
                    syndromes,
                    strata: as_words(
                        &p[2],
                        "estimation levels",
                        STRATA_CAPACITY,
                        STRATA_LEVELS_MAX,
                    )?,
                }
            }
            3 => Mode::Ids(as_words(&p[0], "ids in a range", 1, IDS_MAX)?),
            4 => Mode::Want(as_words(&p[0], "wanted ids in a range", 1, IDS_MAX)?),
            _ => {
                let coeffs = as_words(&p[0], "root polynomial degree", 1, SKETCH_CAPACITY_MAX)?;
                if coeffs.is_empty() {
                    return Err(malformed("root polynomial of degree 0"));
                }
                Mode::Roots(coeffs)
            }
        };
        if upper.is_none() && !is_last {
            return Err(malformed(
                "a range without bound (+inf) that is not the last",
            ));
        }
        Ok(Range { upper, mode })
    }
}

impl SyncMessage {
    /// No open range and no events: the sender has nothing more to say.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.ranges.iter().all(|r| r.mode == Mode::Skip)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut map = Vec::new();
        if !self.events.is_empty() {
            let events = self.events.iter().map(|e| Value::Bytes(e.clone()));
            map.push((Value::Text("e".into()), Value::Array(events.collect())));
        }
        if !self.ranges.is_empty() {
            let mut prev = 0u64;
            let ranges = self.ranges.iter().map(|r| r.to_value(&mut prev));
            map.push((Value::Text("r".into()), Value::Array(ranges.collect())));
            map.push((Value::Text("s".into()), uint(self.salt)));
        }
        let mut out = Vec::new();
        // Writing an in-memory value into a Vec cannot fail.
        let ok = ciborium::into_writer(&Value::Map(map), &mut out).is_ok();
        debug_assert!(ok);
        out
    }

    /// Decodes and checks every bound before anything is looked at.
    pub fn decode(bytes: &[u8]) -> Result<SyncMessage, SyncError> {
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(SyncError::TooLarge { size: bytes.len() });
        }
        let mut rest = bytes;
        let value: Value =
            ciborium::from_reader(&mut rest).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} bytes after the message", rest.len())));
        }
        let Value::Map(entries) = value else {
            return Err(malformed("expected a map"));
        };
        let mut msg = SyncMessage::default();
        let mut seen = [false; 3];
        for (k, v) in &entries {
            let slot = match k {
                Value::Text(t) if t == "e" => 0,
                Value::Text(t) if t == "r" => 1,
                Value::Text(t) if t == "s" => 2,
                _ => return Err(malformed(format!("unknown key {k:?}"))),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(malformed(format!("duplicate key {k:?}")));
            }
            match slot {
                0 => msg.events = decode_events(v)?,
                1 => msg.ranges = decode_ranges(v)?,
                _ => msg.salt = as_u64(v, "salt")?,
            }
        }
        Ok(msg)
    }
}

fn decode_events(v: &Value) -> Result<Vec<Vec<u8>>, SyncError> {
    let items = as_array(v, "events")?;
    too_many("events", items.len(), EVENTS_MAX)?;
    let mut total = 0usize;
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let e = as_bytes(item, "event")?;
        too_many("bytes in one event", e.len(), EVENT_BYTES_MAX)?;
        total += e.len();
        events.push(e.to_vec());
    }
    too_many("event bytes", total, EVENT_BATCH_BYTES_MAX)?;
    Ok(events)
}

fn decode_ranges(v: &Value) -> Result<Vec<Range>, SyncError> {
    let items = as_array(v, "ranges")?;
    too_many("ranges", items.len(), RANGES_MAX)?;
    let mut prev_lamport = 0u64;
    let mut prev: Option<[u8; 32]> = None;
    let mut ranges = Vec::with_capacity(items.len());
    let mut syndromes = 0usize;
    for (index, item) in items.iter().enumerate() {
        let before = prev_lamport;
        let r = Range::from_value(item, &mut prev_lamport, index + 1 == items.len())?;
        if let Some(b) = &r.upper {
            // Strictly ascending: a peer cannot make us scan a range twice.
            if let Some(p) = prev {
                if (b.lamport, b.padded()) <= (before, p) {
                    return Err(SyncError::Unordered { index });
                }
            }
            prev = Some(b.padded());
        }
        if let Mode::Sketch {
            syndromes: s,
            strata,
            ..
        } = &r.mode
        {
            syndromes += s.len() + strata.len();
            too_many("sketch syndromes in a message", syndromes, SYNDROMES_MAX)?;
        }
        ranges.push(r);
    }
    Ok(ranges)
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

    fn bound(lamport: u64, prefix: &[u8]) -> Option<KeyBound> {
        Some(KeyBound {
            lamport,
            prefix: prefix.to_vec(),
        })
    }

    fn sample() -> SyncMessage {
        SyncMessage {
            salt: 9,
            ranges: vec![
                Range {
                    upper: bound(3, &[]),
                    mode: Mode::Skip,
                },
                Range {
                    upper: bound(3, &[0x40]),
                    mode: Mode::Fingerprint {
                        count: 12,
                        fp: [7; 8],
                    },
                },
                Range {
                    upper: bound(900, &[]),
                    mode: Mode::Sketch {
                        count: 1000,
                        syndromes: vec![1, 2, 3],
                        strata: vec![4; 16],
                    },
                },
                Range {
                    upper: bound(901, &[1, 2]),
                    mode: Mode::Ids(vec![5, 6]),
                },
                Range {
                    upper: bound(1 << 40, &[]),
                    mode: Mode::Want(vec![7]),
                },
                Range {
                    upper: None,
                    mode: Mode::Roots(vec![8, 9]),
                },
            ],
            events: vec![vec![1, 2, 3]],
        }
    }

    fn with_ranges(ranges: Vec<Value>) -> Vec<u8> {
        let v = Value::Map(vec![
            (Value::Text("r".into()), Value::Array(ranges)),
            (Value::Text("s".into()), uint(1)),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    }

    /// Every mode survives encoding, with bounds delta-coded.
    #[test]
    fn every_mode_round_trips() {
        let msg = sample();
        assert_eq!(SyncMessage::decode(&msg.encode()).unwrap(), msg);
        assert!(SyncMessage::default().is_empty());
        assert_eq!(SyncMessage::default().encode(), vec![0xa0], "empty map");
    }

    /// A fingerprint range costs under 20 bytes; ids are one flat string.
    #[test]
    fn ranges_are_compact() {
        let one = |mode| SyncMessage {
            salt: 1,
            ranges: vec![Range {
                upper: bound(70_000, &[0xab]),
                mode,
            }],
            events: vec![],
        };
        let base = one(Mode::Skip).encode().len();
        let fp = one(Mode::Fingerprint {
            count: 6000,
            fp: [1; 8],
        })
        .encode()
        .len();
        assert!(fp - base <= 12, "{} bytes", fp - base);
        let ids = one(Mode::Ids(vec![3; 16])).encode().len();
        assert_eq!(ids - base, 2 + 16 * 8);
    }

    /// The separating bound is as short as it can be and separates.
    #[test]
    fn bound_between_separates_neighbours() {
        let (a, b) = (key(5, 0x10), key(5, 0x11));
        let bound = KeyBound::between(&a, &b);
        assert_eq!(bound.prefix, vec![0x11]);
        assert!(a < bound.as_key() && bound.as_key() <= b);
        let bound = KeyBound::between(&key(4, 0xff), &key(5, 0));
        assert!(bound.prefix.is_empty());
        assert!(key(4, 0xff) < bound.as_key() && bound.as_key() <= key(5, 0));
    }

    /// Trailing bytes, unknown keys and modes, wrong field counts, a bad
    /// id-list length and a misplaced +inf bound are each refused.
    #[test]
    fn malformed_shapes_are_refused() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            SyncMessage::decode(&bytes),
            Err(SyncError::Malformed(_))
        ));
        let cases = [
            vec![Value::Array(vec![uint(9)])],
            vec![Value::Array(vec![uint(3), uint(1), uint(2), uint(3)])],
            vec![Value::Array(vec![uint(3), Value::Bytes(vec![0; 7])])],
            vec![
                Value::Array(vec![uint(0)]),
                Value::Array(vec![uint(0), uint(5)]),
            ],
            vec![Value::Array(vec![
                uint(2),
                uint(1),
                Value::Bytes(vec![]),
                Value::Bytes(vec![]),
            ])],
            vec![Value::Array(vec![
                uint(1),
                uint(1),
                Value::Bytes(vec![0; 7]),
            ])],
            vec![Value::Text("x".into())],
        ];
        for (i, ranges) in cases.into_iter().enumerate() {
            let err = SyncMessage::decode(&with_ranges(ranges));
            assert!(
                matches!(err, Err(SyncError::Malformed(_))),
                "case {i}: {err:?}"
            );
        }
        let v = Value::Map(vec![(Value::Text("z".into()), uint(1))]);
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        assert!(matches!(
            SyncMessage::decode(&out),
            Err(SyncError::Malformed(_))
        ));
    }

    /// Caps on sketches, estimation levels, roots and prefixes are typed.
    #[test]
    fn caps_are_typed_errors() {
        let words = |n: usize| Value::Bytes(vec![1; 8 * n]);
        let sketch = |cap, levels| {
            with_ranges(vec![Value::Array(vec![
                uint(2),
                uint(1),
                words(cap),
                words(levels * STRATA_CAPACITY),
            ])])
        };
        assert!(matches!(
            SyncMessage::decode(&sketch(SKETCH_CAPACITY_MAX + 1, 0)),
            Err(SyncError::TooMany {
                what: "sketch capacity",
                ..
            })
        ));
        assert!(matches!(
            SyncMessage::decode(&sketch(1, STRATA_LEVELS_MAX + 1)),
            Err(SyncError::TooMany {
                what: "estimation levels",
                ..
            })
        ));
        let roots = with_ranges(vec![Value::Array(vec![
            uint(5),
            words(SKETCH_CAPACITY_MAX + 1),
        ])]);
        assert!(matches!(
            SyncMessage::decode(&roots),
            Err(SyncError::TooMany { .. })
        ));
        let prefix = with_ranges(vec![Value::Array(vec![
            uint(0),
            Value::Array(vec![uint(1), Value::Bytes(vec![0; 33])]),
        ])]);
        assert!(matches!(
            SyncMessage::decode(&prefix),
            Err(SyncError::BadBound(33))
        ));
    }

    /// Every cap admits exactly its limit: messages with the most ranges,
    /// ids, wanted ids, root coefficients, sketch syndromes, estimation
    /// levels, prefix bytes, events and event bytes each decode whole.
    #[test]
    fn caps_admit_exactly_their_limit() {
        let round_trips = |msg: SyncMessage| {
            assert_eq!(SyncMessage::decode(&msg.encode()).unwrap(), msg);
        };
        let last = |mode| SyncMessage {
            salt: 1,
            ranges: vec![Range { upper: None, mode }],
            events: vec![],
        };
        round_trips(last(Mode::Ids(vec![3; IDS_MAX])));
        round_trips(last(Mode::Want(vec![3; IDS_MAX])));
        round_trips(last(Mode::Roots(vec![3; SKETCH_CAPACITY_MAX])));
        round_trips(last(Mode::Sketch {
            count: 1,
            syndromes: vec![3; SKETCH_CAPACITY_MAX],
            strata: vec![4; STRATA_LEVELS_MAX * STRATA_CAPACITY],
        }));
        round_trips(SyncMessage {
            salt: 1,
            ranges: vec![Range {
                upper: bound(7, &[0xab; 32]),
                mode: Mode::Skip,
            }],
            events: vec![],
        });
        round_trips(SyncMessage {
            salt: 1,
            ranges: (1..=RANGES_MAX as u64)
                .map(|l| Range {
                    upper: bound(l, &[]),
                    mode: Mode::Skip,
                })
                .collect(),
            events: vec![],
        });
        // EVENTS_MAX events of EVENT_BATCH_BYTES_MAX bytes in all.
        assert_eq!(EVENT_BATCH_BYTES_MAX % EVENTS_MAX, 0);
        round_trips(SyncMessage {
            events: vec![vec![5; EVENT_BATCH_BYTES_MAX / EVENTS_MAX]; EVENTS_MAX],
            ..SyncMessage::default()
        });
        round_trips(SyncMessage {
            events: vec![vec![5; EVENT_BYTES_MAX]],
            ..SyncMessage::default()
        });
    }

    /// The sketch syndromes and estimation levels of all of a message's
    /// ranges count together: SYNDROMES_MAX of them decode, one more is
    /// refused.
    #[test]
    fn syndromes_are_capped_per_message() {
        // 256 ranges of a capacity-64 sketch with 8 levels: 128 syndromes
        // each, SYNDROMES_MAX in all.
        let per = SKETCH_CAPACITY_MAX + 8 * STRATA_CAPACITY;
        assert_eq!(SYNDROMES_MAX % per, 0);
        let ranges = |n: u64| -> Vec<Range> {
            (1..=n)
                .map(|l| Range {
                    upper: bound(l, &[]),
                    mode: Mode::Sketch {
                        count: 1,
                        syndromes: vec![3; SKETCH_CAPACITY_MAX],
                        strata: vec![4; 8 * STRATA_CAPACITY],
                    },
                })
                .collect()
        };
        let full = SyncMessage {
            salt: 1,
            ranges: ranges((SYNDROMES_MAX / per) as u64),
            events: vec![],
        };
        assert_eq!(SyncMessage::decode(&full.encode()).unwrap(), full);
        let mut over = full;
        over.ranges.push(Range {
            upper: None,
            mode: Mode::Sketch {
                count: 1,
                syndromes: vec![3],
                strata: vec![],
            },
        });
        assert!(matches!(
            SyncMessage::decode(&over.encode()),
            Err(SyncError::TooMany {
                what: "sketch syndromes in a message",
                got,
                max: SYNDROMES_MAX,
            }) if got == SYNDROMES_MAX + 1
        ));
    }

    /// The size cap applies to the bytes before decoding and admits
    /// exactly MESSAGE_BYTES_MAX: that many garbage bytes are malformed,
    /// one more is too large.
    #[test]
    fn the_size_cap_is_exact() {
        assert!(matches!(
            SyncMessage::decode(&vec![0xff; MESSAGE_BYTES_MAX]),
            Err(SyncError::Malformed(_))
        ));
        assert!(matches!(
            SyncMessage::decode(&vec![0xff; MESSAGE_BYTES_MAX + 1]),
            Err(SyncError::TooLarge { size }) if size == MESSAGE_BYTES_MAX + 1
        ));
    }

    /// A bound given as an array must be exactly `[delta, prefix]`, and
    /// estimation levels must be whole levels of 8 words: anything else is
    /// malformed (not read in part).
    #[test]
    fn bound_pairs_and_whole_levels_are_required() {
        let skip_with_bound =
            |b: Vec<Value>| with_ranges(vec![Value::Array(vec![uint(0), Value::Array(b)])]);
        for b in [
            vec![uint(1)],
            vec![uint(1), Value::Bytes(vec![7]), Value::Bytes(vec![8])],
        ] {
            let err = SyncMessage::decode(&skip_with_bound(b));
            assert!(matches!(err, Err(SyncError::Malformed(_))), "{err:?}");
        }
        // One level and one word more.
        let sketch = with_ranges(vec![Value::Array(vec![
            uint(2),
            uint(1),
            Value::Bytes(vec![1; 8]),
            Value::Bytes(vec![1; 8 * (STRATA_CAPACITY + 1)]),
        ])]);
        let err = SyncMessage::decode(&sketch);
        assert!(matches!(err, Err(SyncError::Malformed(_))), "{err:?}");
    }

    /// A message is empty (the sender has nothing more to say) when it
    /// carries no events and every range it has is a skip; an open range
    /// or an event makes it non-empty.
    #[test]
    fn empty_means_no_events_and_no_open_range() {
        let with = |modes: Vec<Mode>, events: Vec<Vec<u8>>| SyncMessage {
            salt: 1,
            ranges: modes
                .into_iter()
                .enumerate()
                .map(|(i, mode)| Range {
                    upper: bound(i as u64 + 1, &[]),
                    mode,
                })
                .collect(),
            events,
        };
        let fp = || Mode::Fingerprint {
            count: 1,
            fp: [1; 8],
        };
        assert!(with(vec![], vec![]).is_empty());
        assert!(with(vec![Mode::Skip, Mode::Skip], vec![]).is_empty());
        assert!(!with(vec![fp()], vec![]).is_empty());
        assert!(!with(vec![fp(), Mode::Want(vec![3])], vec![]).is_empty());
        assert!(!with(vec![Mode::Skip, fp()], vec![]).is_empty());
        assert!(!with(vec![Mode::Skip], vec![vec![1]]).is_empty());
    }
}
