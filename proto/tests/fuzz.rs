//! Fuzz targets of the wire format's decoders (DESIGN.md section 3), run as
//! proptest targets because cargo-fuzz needs a nightly toolchain.
//!
//! Every decoder that reads bytes from outside gets arbitrary bytes,
//! CBOR-shaped garbage, and valid events damaged by bit flips, byte
//! changes, insertions, deletions, truncations, duplicated runs and splices
//! with other events. Each must return its error and never panic; a damaged
//! event must never verify unless it is byte for byte the original; and no
//! length field may make a decoder reserve memory the input cannot back.
//!
//! Case counts: `HEARTH_FUZZ_CASES` (default 256) is the number of cases of
//! a cheap target; costlier targets run a stated fraction of it. Each target
//! prints `fuzz target=<name> cases=<n>` (seen with `--nocapture`), which
//! `scripts/fuzz` adds up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use hearth_proto::cbor::{self, Value, DEPTH_MAX};
use hearth_proto::{
    hash_bytes, Category, CommunityId, Event, EventError, EventHash, EventId, EventKey,
    ExpiryReason, Genesis, Identity, Level, Location, MemberSet, NodeId, Payload, PostContent,
    PostCreated, PostExpired, PostUpdated, SignedEvent, VerifiedEvent, EVENT_BYTES_MAX,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// ------------------------------------------------------------ harness

/// Cases of a cheap target when `HEARTH_FUZZ_CASES` is unset: small, so
/// `scripts/test` stays fast; `scripts/fuzz` sets it high.
const CASES_DEFAULT: u32 = 256;
/// No target runs fewer cases than this, however small its share.
const CASES_MIN: u32 = 8;

/// Cases for a target that costs about `cost` cheap cases each.
fn cases(cost: u32) -> u32 {
    let base = std::env::var("HEARTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(CASES_DEFAULT);
    (base / cost.max(1)).max(CASES_MIN)
}

/// Runs `test` on `cases(cost)` values of `strategy`, reports the count,
/// and fails with proptest's shrunk counterexample.
fn fuzz<S: Strategy>(
    name: &str,
    cost: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let cases = cases(cost);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&strategy, test);
    println!("fuzz target={name} cases={cases}");
    if let Err(e) = result {
        panic!("fuzz target {name} failed: {e}\n{e:?}");
    }
}

/// Peak virtual memory of this process, from `/proc/self/status`. Virtual,
/// not resident: a `Vec::with_capacity` sized by a hostile length field
/// reserves address space without touching it, and only this sees it.
fn vm_peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Growth of the peak allocation allowed while decoding hostile lengths.
/// Generous, since other tests' threads allocate at the same time; an
/// honoured claim of 2^26 or more items reserves several GiB and shows.
const VM_GROWTH_MAX: u64 = 1 << 30;

// ------------------------------------------------------------ corpus

const TS: u64 = 1_767_225_600_000;

fn content(title: &str, body_len: usize) -> PostContent {
    PostContent {
        category: Category::Offer,
        title: title.into(),
        body: "x".repeat(body_len),
        tags: vec!["water".into(), "emergency-kit".into()],
        expires_at: TS + 86_400_000,
        location: Some(Location {
            lat: -33_868_820,
            lng: 151_209_296,
            label: "Town square".into(),
        }),
    }
}

/// Valid signed events of every type: the seeds that mutations start from.
/// One post is close to the size limit, so insertions cross it.
fn corpus() -> &'static [VerifiedEvent] {
    static CORPUS: OnceLock<Vec<VerifiedEvent>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let me = Identity::from_seed([7; 32]);
        let other = Identity::from_seed([8; 32]);
        let community = CommunityId([0x11; 32]);
        let event = |lamport: u64, payload: Payload| Event {
            id: EventId::from_bytes([lamport as u8; 16]),
            ts: TS,
            author: me.node_id(),
            lamport,
            community,
            payload,
        };
        let events = vec![
            Event {
                community: CommunityId::default(),
                ..event(
                    0,
                    Payload::Genesis(Genesis {
                        name: "Lindenhof Street".into(),
                        anchors: vec![other.node_id(), me.node_id()],
                    }),
                )
            },
            event(
                1,
                Payload::MemberSet(MemberSet {
                    member: other.node_id(),
                    level: Level::Trusted,
                }),
            ),
            event(
                2,
                Payload::PostCreated(PostCreated {
                    content: content("Water canisters", 40).into(),
                    client_id: Some("web-1".into()),
                }),
            ),
            event(
                3,
                Payload::PostCreated(PostCreated {
                    content: content("Big", EVENT_BYTES_MAX - 400).into(),
                    client_id: None,
                }),
            ),
            event(
                4,
                Payload::PostUpdated(PostUpdated {
                    target: EventId::from_bytes([2; 16]),
                    content: content("Water canisters (one left)", 10).into(),
                }),
            ),
            event(
                5,
                Payload::PostExpired(PostExpired {
                    target: EventId::from_bytes([2; 16]),
                    reason: ExpiryReason::Other("gone to a neighbour".into()),
                }),
            ),
            event(
                (1 << 53) - 1,
                Payload::Unknown {
                    type_name: "garden.plot.shared".into(),
                    data: Value::map([
                        ("plot", Value::Uint(7)),
                        ("owners", Value::Array(vec![Value::bytes(vec![1; 32])])),
                        ("offset", Value::Nint(41)),
                        ("open", Value::Bool(true)),
                    ]),
                },
            ),
        ];
        events
            .into_iter()
            .map(|e| e.sign(&me).expect("corpus events are valid"))
            .collect()
    })
}

// ------------------------------------------------------------ mutations

/// Byte runs that decoders treat specially: header edges, huge lengths,
/// indefinite starts and breaks, floats, null, tags.
const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0xff],
    &[0x17],
    &[0x18],
    &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x7a, 0xff, 0xff, 0xff, 0xff],
    &[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xbb, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
    &[0x9a, 0x04, 0x00, 0x00, 0x00],
    &[0x5f, 0x41, 0x00, 0xff],
    &[0x9f],
    &[0xbf],
    &[0xf6],
    &[0xf7],
    &[0xf9, 0x3c, 0x00],
    &[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
    &[0xc0],
    &[0xa9],
    &[0xa8],
    &[0x60],
    &[0x40],
    &[0x1c],
];

/// One edit of a byte string. Positions are indices scaled to the current
/// length, so every edit applies to every input.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Interesting(Index, Index),
    Insert(Index, Vec<u8>),
    Delete(Index, u8),
    Truncate(Index),
    Duplicate(Index, u8, Index),
    /// Replace everything from a position on by another corpus event's
    /// bytes from the same position.
    Splice(Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, w)| Edit::Interesting(i, w)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<Index>(), 1u8..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), 1u8..40, any::<Index>()).prop_map(|(f, n, t)| Edit::Duplicate(f, n, t)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(o, i)| Edit::Splice(o, i)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let len = bytes.len();
    match edit {
        Edit::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
        Edit::SetByte(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Edit::Interesting(i, which) => {
            let run = INTERESTING[which.index(INTERESTING.len())];
            let at = i.index(len + 1);
            let end = (at + run.len()).min(len);
            bytes.splice(at..end, run.iter().copied());
        }
        Edit::Insert(i, run) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, run.iter().copied());
        }
        Edit::Delete(i, n) if len > 0 => {
            let at = i.index(len);
            bytes.drain(at..(at + usize::from(*n)).min(len));
        }
        Edit::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Edit::Duplicate(from, n, to) if len > 0 => {
            let start = from.index(len);
            let run = bytes[start..(start + usize::from(*n)).min(len)].to_vec();
            let at = to.index(len + 1);
            bytes.splice(at..at, run);
        }
        Edit::Splice(other, i) => {
            let other = corpus()[other.index(corpus().len())].bytes();
            let at = i.index(len.min(other.len()) + 1);
            bytes.truncate(at);
            bytes.extend_from_slice(&other[at..]);
        }
        _ => {}
    }
}

/// A corpus event and the same bytes after 1 to 6 edits.
fn damaged_event() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (any::<Index>(), prop::collection::vec(edit(), 1..7)).prop_map(|(which, edits)| {
        let which = which.index(corpus().len());
        let mut bytes = corpus()[which].bytes().to_vec();
        for e in &edits {
            apply(&mut bytes, e);
        }
        (which, bytes)
    })
}

/// Bytes built from CBOR headers of every major type and width, with
/// arguments near the edges: far more of it gets past the first header
/// than uniform random bytes do.
fn cbor_shaped() -> impl Strategy<Value = Vec<u8>> {
    let argument = prop_oneof![
        0u64..24,
        24u64..=255,
        Just(0u64),
        Just(23),
        Just(24),
        Just(255),
        Just(256),
        Just(65_535),
        Just(65_536),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        any::<u64>(),
    ];
    let token = (0u8..8, argument, 0u8..9, any::<bool>()).prop_map(|(major, arg, width, raw)| {
        if !raw {
            return header(major, arg);
        }
        // Any width, shortest or not: immediate, 1, 2, 4 or 8 argument
        // bytes, reserved (28..=30) or indefinite (31).
        let info = 23 + width;
        let n = match info {
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => 0,
        };
        let mut out = vec![major << 5 | info];
        out.extend_from_slice(&arg.to_be_bytes()[8 - n..]);
        out
    });
    let piece = prop_oneof![
        4 => token,
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => "[a-z]{0,6}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

// ------------------------------------------------------------ checks

/// What every decoder must do with any input: return, never panic, and
/// agree with each other about what is canonical.
fn check_all_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = cbor::decode(bytes);
    if let Ok(value) = &decoded {
        // One value, one encoding: whatever decodes re-encodes to itself.
        prop_assert_eq!(value.to_bytes(), bytes, "accepted a non-canonical form");
        prop_assert_eq!(cbor::item_len(bytes), Ok(bytes.len()));
    }
    if let Ok(n) = cbor::item_len(bytes) {
        prop_assert!(n <= bytes.len());
        prop_assert_eq!(
            cbor::item_len(&bytes[..n]),
            Ok(n),
            "item end depends on what follows"
        );
    }
    let spans = cbor::decode_map_spans(bytes);
    prop_assert_eq!(
        spans.is_ok(),
        decoded.is_ok(),
        "map spans and decode disagree"
    );
    let signed = SignedEvent::decode(bytes);
    if signed.is_ok() {
        prop_assert!(decoded.is_ok(), "an event decoded from non-canonical CBOR");
        prop_assert!(bytes.len() <= EVENT_BYTES_MAX);
    }
    let verified = VerifiedEvent::decode(bytes);
    if verified.is_ok() {
        prop_assert!(signed.is_ok());
    }
    // `reload` trusts the signature but nothing else.
    let reloaded = VerifiedEvent::reload(bytes, &hash_bytes(bytes));
    prop_assert_eq!(reloaded.is_ok(), signed.is_ok());
    let _ = EventKey::from_bytes(bytes);
    Ok(())
}

// ------------------------------------------------------------ targets

/// Arbitrary bytes never panic any decoder, and whatever CBOR is accepted
/// is the one canonical encoding of its value.
#[test]
fn fuzz_arbitrary_bytes() {
    fuzz(
        "proto/arbitrary-bytes",
        1,
        prop::collection::vec(any::<u8>(), 0..600),
        |bytes| check_all_decoders(&bytes),
    );
}

/// CBOR-shaped garbage (headers of every type and width, edge arguments)
/// never panics a decoder, and accepted CBOR is canonical.
#[test]
fn fuzz_cbor_shaped_bytes() {
    fuzz("proto/cbor-shaped", 1, cbor_shaped(), |bytes| {
        check_all_decoders(&bytes)
    });
}

/// A valid event damaged by bit flips, byte changes, insertions,
/// deletions, truncations, duplicated runs or splices never verifies
/// unless the edits gave back the original bytes; no decoder panics.
#[test]
fn fuzz_damaged_events_never_verify() {
    // How many damaged events got past decoding to the signature check:
    // printed, so a run shows the mutations reach that deep.
    let decoded = AtomicUsize::new(0);
    // A damaged event that still decodes costs one signature check.
    fuzz(
        "proto/damaged-events",
        4,
        damaged_event(),
        |(which, bytes)| {
            check_all_decoders(&bytes)?;
            if SignedEvent::decode(&bytes).is_ok() {
                decoded.fetch_add(1, Ordering::Relaxed);
            }
            let original = &corpus()[which];
            let identical = bytes == original.bytes();
            // A splice from offset 0 gives back another corpus event whole.
            let some_original = corpus().iter().any(|e| e.bytes() == bytes.as_slice());
            match VerifiedEvent::decode(&bytes) {
                Ok(event) => prop_assert!(
                    some_original,
                    "a damaged event verifies: {:?}",
                    event.event()
                ),
                Err(e) => prop_assert!(!some_original, "a valid event was refused: {e}"),
            }
            // Stored bytes damaged on disk are caught by their hash.
            prop_assert_eq!(
                VerifiedEvent::reload(&bytes, original.hash()).is_ok(),
                identical
            );
            Ok(())
        },
    );
    println!(
        "fuzz target=proto/damaged-events decoded-to-signature-check={}",
        decoded.load(Ordering::Relaxed)
    );
}

/// Two valid events back to back are not one event; each half is found
/// by `item_len`, as an import splits a file.
#[test]
fn fuzz_concatenated_events() {
    fuzz(
        "proto/concatenated-events",
        2,
        (any::<Index>(), any::<Index>()),
        |(a, b)| {
            let (a, b) = (
                &corpus()[a.index(corpus().len())],
                &corpus()[b.index(corpus().len())],
            );
            let both = [a.bytes(), b.bytes()].concat();
            prop_assert_eq!(cbor::item_len(&both), Ok(a.bytes().len()));
            prop_assert_eq!(
                cbor::item_len(&both[a.bytes().len()..]),
                Ok(b.bytes().len())
            );
            prop_assert!(VerifiedEvent::decode(&both).is_err());
            Ok(())
        },
    );
}

/// Identifier text from a user parses only when it is 64 lowercase hex
/// digits, and then prints back the same; nothing else panics or parses.
#[test]
fn fuzz_id_text() {
    let text = prop_oneof![
        ".{0,80}",
        "[0-9a-fA-F]{60,68}",
        "[0-9a-f]{64}",
        prop::collection::vec(any::<char>(), 64).prop_map(|c| c.into_iter().collect()),
    ];
    fuzz("proto/id-text", 1, text, |s: String| {
        let well_formed =
            s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        for parsed in [
            s.parse::<NodeId>().map(|i| i.to_hex()),
            s.parse::<CommunityId>().map(|i| i.to_hex()),
            s.parse::<EventHash>().map(|i| i.to_hex()),
        ] {
            match parsed {
                Ok(hex) => prop_assert_eq!(&hex, &s),
                Err(_) => prop_assert!(!well_formed, "{s:?} refused"),
            }
        }
        Ok(())
    });
}

// ------------------------------------------------------------ huge lengths

/// Claimed lengths from modest to absurd: each far above what a short
/// input can hold, several large enough that honouring one would reserve
/// gigabytes or overflow.
const CLAIMS: [u64; 9] = [
    1 << 20,
    1 << 26,
    1 << 28,
    1 << 31,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// The shortest header of major type `major` with argument `arg`.
fn header(major: u8, arg: u64) -> Vec<u8> {
    let mut out = Value::Uint(arg).to_bytes();
    out[0] |= major << 5;
    out
}

/// A byte string, text, array or map claiming up to 2^64 - 1 items or
/// bytes, alone, nested, or as an event's `data`, is refused with an error
/// (and `item_len` too), without reserving memory for the claim.
#[test]
fn huge_length_claims_are_refused_without_allocating() {
    let before = vm_peak_bytes();
    let post = corpus()[2].bytes();
    // Where the `data` value starts: right after the key "data" (0x64 d a t a).
    let data_at = post
        .windows(5)
        .position(|w| w == b"\x64data")
        .expect("a post has data")
        + 5;
    let mut checked = 0;
    for major in [2u8, 3, 4, 5] {
        for claim in CLAIMS {
            let head = header(major, claim);
            let alone = [head.as_slice(), &[0u8; 16]].concat();
            let nested = [&[0x82u8, 0xa1, 0x61, b'k'][..], &head, &[0u8; 16]].concat();
            let as_data = [&post[..data_at], &head, &post[data_at..]].concat();
            for bytes in [alone, nested, as_data] {
                assert!(cbor::decode(&bytes).is_err(), "{bytes:02x?} decoded");
                assert!(cbor::decode_map_spans(&bytes).is_err());
                assert!(cbor::item_len(&bytes).is_err(), "{bytes:02x?} has an end");
                let err = SignedEvent::decode(&bytes).expect_err("not an event");
                assert!(matches!(err, EventError::Cbor(_)), "{bytes:02x?}: {err}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * CLAIMS.len() * 3);
    match (before, vm_peak_bytes()) {
        (Some(before), Some(after)) => assert!(
            after.saturating_sub(before) < VM_GROWTH_MAX,
            "peak virtual memory grew by {} bytes decoding short inputs",
            after - before
        ),
        _ => eprintln!("no /proc/self/status here: allocation not measured"),
    }
}

/// Damaged events with a huge-length header planted at a random place
/// return errors and never reserve memory for the claim.
#[test]
fn fuzz_planted_huge_lengths() {
    let before = vm_peak_bytes();
    let planted = (
        damaged_event(),
        any::<Index>(),
        2u8..6,
        prop::sample::select(CLAIMS.to_vec()),
    )
        .prop_map(|((which, mut bytes), at, major, claim)| {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, header(major, claim));
            (which, bytes)
        });
    fuzz("proto/planted-huge-lengths", 2, planted, |(_, bytes)| {
        check_all_decoders(&bytes)
    });
    if let (Some(before), Some(after)) = (before, vm_peak_bytes()) {
        assert!(
            after.saturating_sub(before) < VM_GROWTH_MAX,
            "peak virtual memory grew by {} bytes",
            after - before
        );
    }
}

/// Nesting a megabyte deep (arrays, maps, tags) is refused by `decode`
/// at `DEPTH_MAX` and walked by `item_len` without recursion: no stack
/// overflow either way.
#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    const DEPTH: usize = 1 << 20;
    for opener in [&[0x81u8][..], &[0xa1, 0x00], &[0xc6]] {
        let mut bytes = opener.repeat(DEPTH);
        bytes.push(0x00);
        let err = cbor::decode(&bytes).expect_err("too deep");
        assert!(
            matches!(
                err,
                cbor::CborError::TooDeep { .. } | cbor::CborError::Tag { .. }
            ),
            "{err}"
        );
        assert!(SignedEvent::decode(&bytes).is_err());
        // The walk finds the end of a well-formed deep item, or refuses.
        if let Ok(n) = cbor::item_len(&bytes) {
            assert_eq!(n, bytes.len());
        }
    }
}

/// The deep-nesting test nests far deeper than the decoder's bound.
const _: () = assert!(1 << 20 > DEPTH_MAX);
