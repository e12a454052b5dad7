//! Fuzz targets of every decoder in the node that reads bytes from outside:
//! sync messages (and the core answering them), request-response bodies of
//! `/hearthnet/sync/1` and `/hearthnet/bus/1` (and the bus dispatching
//! them), received events, invites, import files (CBOR sequence splitting
//! and `hearth log import` itself) and the local API's request lines (over
//! a real socket of a running `hearth run`). Proptest targets, since
//! cargo-fuzz needs a nightly toolchain.
//!
//! Each target feeds arbitrary bytes, CBOR-shaped garbage and damaged valid
//! inputs; each decoder must return its error and never panic, and what it
//! accepts must respect the bounds it promises. Inputs claiming huge
//! lengths must not make anything reserve memory for the claim.
//!
//! Case counts: `HEARTH_FUZZ_CASES` (default 256) is the number of cases of
//! a cheap target; costlier targets run a stated fraction of it. Each target
//! prints `fuzz target=<name> cases=<n>` (seen with `--nocapture`), which
//! `scripts/fuzz` adds up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use clap::Parser;
use common::{key, Fixture, NOW};
use futures::executor::block_on;
use hearth_node::cli::{cbor_seq, data_dir::DataDir, Cli};
use hearth_node::core::bus::{BusError, Caller};
use hearth_node::core::sync::{
    KeyBound, Mode, Range, SyncMessage, EVENTS_MAX, EVENT_BATCH_BYTES_MAX, IDS_MAX,
    MESSAGE_BYTES_MAX, RANGES_MAX, SKETCH_CAPACITY_MAX, STRATA_CAPACITY, STRATA_LEVELS_MAX,
};
use hearth_node::core::{Config, Ingested, Node, Source};
use hearth_node::net::local_api::REQUEST_BYTES_MAX as LINE_BYTES_MAX;
use hearth_node::net::wire::{
    BusRequest, BusResponse, SyncRequest, SyncResponse, BUS_PROTOCOL, REQUEST_BYTES_MAX,
    RESPONSE_BYTES_MAX, SYNC_PROTOCOL,
};
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::cbor::item_len;
use hearth_proto::{
    Category, ExpiryReason, Level, Location, NodeId, Payload, PostContent, PostCreated,
    VerifiedEvent, EVENT_BYTES_MAX,
};
use libp2p::request_response::cbor::codec::Codec as CborCodec;
use libp2p::request_response::Codec as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};

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
    let config = RunConfig {
        cases,
        failure_persistence: None,
        ..RunConfig::default()
    };
    let result = TestRunner::new(config).run(&strategy, test);
    println!("fuzz target={name} cases={cases}");
    if let Err(e) = result {
        panic!("fuzz target {name} failed: {e}\n{e:?}");
    }
}

/// Peak virtual memory of this process (see proto/tests/fuzz.rs): a
/// capacity reserved from a hostile length shows here even untouched.
fn vm_peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Growth of the peak allowed while decoding hostile lengths: generous
/// (other tests' threads allocate too), far below any honoured claim.
const VM_GROWTH_MAX: u64 = 1 << 30;

fn assert_vm_growth_bounded(before: Option<u64>, what: &str) {
    match (before, vm_peak_bytes()) {
        (Some(before), Some(after)) => assert!(
            after.saturating_sub(before) < VM_GROWTH_MAX,
            "{what}: peak virtual memory grew by {} bytes",
            after - before
        ),
        _ => eprintln!("no /proc/self/status here: allocation not measured"),
    }
}

// ------------------------------------------------------------ mutations

/// Byte runs decoders treat specially: header edges, huge lengths,
/// indefinite starts and breaks, floats, null, tags.
const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0xff],
    &[0x18],
    &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x7a, 0xff, 0xff, 0xff, 0xff],
    &[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xbb, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
    &[0x9a, 0x04, 0x00, 0x00, 0x00],
    &[0x9f],
    &[0xbf],
    &[0xf6],
    &[0xf9, 0x3c, 0x00],
    &[0xc0],
    &[0xa9],
    &[0x60],
    &[0x40],
    b"\"",
    b"{",
    b"}",
    b"\\u0000",
    b"\\ud800",
    b"1e999999",
    b"-0",
];

/// One edit of a byte string; positions scale to the current length.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Interesting(Index, Index),
    Insert(Index, Vec<u8>),
    Delete(Index, u8),
    Truncate(Index),
    Duplicate(Index, u8, Index),
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
        _ => {}
    }
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..7)
}

fn damaged(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        apply(&mut bytes, e);
    }
    bytes
}

/// Arbitrary bytes, mostly short, sometimes long.
fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
    ]
}

/// A CBOR header of any major type with an edge argument, shortest form
/// or not, reserved or indefinite.
fn cbor_token() -> impl Strategy<Value = Vec<u8>> {
    let argument = prop_oneof![
        0u64..24,
        Just(24u64),
        Just(255),
        Just(256),
        Just(65_536),
        Just(1 << 32),
        Just(u64::MAX),
        any::<u64>(),
    ];
    (0u8..8, argument, 0u8..9).prop_map(|(major, arg, width)| {
        let info = 23 + width;
        let n = match info {
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => 0,
        };
        let mut out = vec![major << 5 | if info == 23 { (arg % 24) as u8 } else { info }];
        out.extend_from_slice(&arg.to_be_bytes()[8 - n..]);
        out
    })
}

/// Garbage made of CBOR headers, text keys the decoders look for, and
/// random runs: it gets further into a decoder than uniform bytes do.
fn cbor_shaped() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => cbor_token(),
        2 => prop::sample::select(vec![
            &b"\x61e"[..], b"\x61r", b"\x61s", b"\x61c", b"\x61g", b"\x61a", b"\x62Ok",
            b"\x63Err", b"\x68Messages", b"\x67Refused", b"\x6acapability", b"\x66params",
            b"\x69community", b"\x67message", b"\x64code", b"\x67message",
        ])
        .prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..32).prop_map(|p| p.concat())
}

// ------------------------------------------------------------ fixtures

/// Valid events of the fixture's community: its genesis, an admission,
/// posts by the anchor and the admitted member, an expiry, an unknown type.
fn corpus() -> &'static [VerifiedEvent] {
    static CORPUS: OnceLock<Vec<VerifiedEvent>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let f = Fixture::new();
        let member = key(2);
        vec![
            f.genesis.clone(),
            f.member_set(&f.anchor, 1, &member, Level::Member),
            f.post(&f.anchor, 2, 10, "Ladder to lend"),
            f.post(&member, 3, 11, "Seedlings"),
            f.event(
                &f.anchor,
                4,
                12,
                Payload::PostCreated(PostCreated {
                    content: PostContent {
                        category: Category::Emergency,
                        title: "Water".into(),
                        body: "Tap water is off until 18:00".into(),
                        tags: vec!["water".into()],
                        expires_at: NOW + 3_600_000,
                        location: Some(Location {
                            lat: 52_520_008,
                            lng: 13_404_954,
                            label: "Corner shop".into(),
                        }),
                    }
                    .into(),
                    client_id: Some("cli-7".into()),
                }),
            ),
            f.expire(&member, 5, 11, ExpiryReason::Fulfilled),
            f.event(
                &member,
                6,
                13,
                Payload::Unknown {
                    type_name: "garden.plot.shared".into(),
                    data: hearth_proto::cbor::Value::map([(
                        "plot",
                        hearth_proto::cbor::Value::Uint(7),
                    )]),
                },
            ),
        ]
    })
}

fn node() -> Node<MemoryStore> {
    let f = Fixture::new();
    Node::new(
        f.anchor.clone(),
        &f.genesis,
        MemoryStore::new(),
        Config::default(),
        7,
    )
    .expect("a fresh node opens")
}

fn peer() -> NodeId {
    key(9).node_id()
}

// ------------------------------------------------------------ sync messages

/// A key bound: a Lamport delta and a short hash prefix.
fn bounds(n: usize) -> impl Strategy<Value = Vec<KeyBound>> {
    prop::collection::vec((0u64..1000, prop::collection::vec(any::<u8>(), 0..4)), n).prop_map(
        |steps| {
            let mut lamport = 0;
            steps
                .into_iter()
                .map(|(dl, prefix)| {
                    // Strictly ascending: each bound one Lamport step on.
                    lamport += dl + 1;
                    KeyBound { lamport, prefix }
                })
                .collect()
        },
    )
}

fn words(max: usize) -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(any::<u64>(), 1..=max)
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Skip),
        (any::<u64>(), any::<[u8; 8]>()).prop_map(|(count, fp)| Mode::Fingerprint { count, fp }),
        (
            any::<u64>(),
            words(SKETCH_CAPACITY_MAX),
            prop::collection::vec(any::<u64>(), 0..3)
        )
            .prop_map(|(count, syndromes, levels)| Mode::Sketch {
                count,
                syndromes,
                strata: levels
                    .iter()
                    .flat_map(|l| std::iter::repeat_n(*l, STRATA_CAPACITY))
                    .collect(),
            }),
        prop::collection::vec(any::<u64>(), 0..IDS_MAX).prop_map(Mode::Ids),
        prop::collection::vec(any::<u64>(), 0..IDS_MAX).prop_map(Mode::Want),
        words(8).prop_map(Mode::Roots),
    ]
}

/// A well-formed sync message: ascending ranges (the last one possibly
/// open-ended), a salt, and some of the corpus events.
fn sync_message() -> impl Strategy<Value = SyncMessage> {
    (0usize..6)
        .prop_flat_map(|n| {
            (
                bounds(n),
                prop::collection::vec(mode(), n),
                any::<bool>(),
                any::<u64>(),
                prop::collection::vec(any::<Index>(), 0..4),
            )
        })
        .prop_map(|(bounds, modes, open_end, salt, events)| {
            let n = bounds.len();
            let ranges = bounds
                .into_iter()
                .zip(modes)
                .enumerate()
                .map(|(i, (b, mode))| Range {
                    upper: (!(open_end && i + 1 == n)).then_some(b),
                    mode,
                })
                .collect::<Vec<_>>();
            SyncMessage {
                salt: if ranges.is_empty() { 0 } else { salt | 1 },
                ranges,
                events: events
                    .iter()
                    .map(|i| corpus()[i.index(corpus().len())].bytes().to_vec())
                    .collect(),
            }
        })
}

/// What a decoded sync message promises: every cap of `core::sync` holds,
/// bounds ascend strictly and only the last range is open-ended, and it
/// re-encodes to a message that decodes to itself.
fn check_sync_message(msg: &SyncMessage) -> Result<(), TestCaseError> {
    prop_assert!(msg.events.len() <= EVENTS_MAX);
    prop_assert!(msg.events.iter().all(|e| e.len() <= EVENT_BYTES_MAX));
    prop_assert!(msg.events.iter().map(Vec::len).sum::<usize>() <= EVENT_BATCH_BYTES_MAX);
    prop_assert!(msg.ranges.len() <= RANGES_MAX);
    let mut prev: Option<(u64, [u8; 32])> = None;
    for (i, r) in msg.ranges.iter().enumerate() {
        match &r.upper {
            Some(b) => {
                prop_assert!(b.prefix.len() <= 32);
                let mut padded = [0u8; 32];
                padded[..b.prefix.len()].copy_from_slice(&b.prefix);
                if let Some(p) = prev {
                    prop_assert!((b.lamport, padded) > p, "range {i} does not ascend");
                }
                prev = Some((b.lamport, padded));
            }
            None => prop_assert_eq!(i + 1, msg.ranges.len(), "open range before the last"),
        }
        match &r.mode {
            Mode::Ids(ids) | Mode::Want(ids) => prop_assert!(ids.len() <= IDS_MAX),
            Mode::Roots(c) => prop_assert!(!c.is_empty() && c.len() <= SKETCH_CAPACITY_MAX),
            Mode::Sketch {
                syndromes, strata, ..
            } => {
                prop_assert!(!syndromes.is_empty() && syndromes.len() <= SKETCH_CAPACITY_MAX);
                prop_assert!(strata.len() % STRATA_CAPACITY == 0);
                prop_assert!(strata.len() / STRATA_CAPACITY <= STRATA_LEVELS_MAX);
            }
            Mode::Skip | Mode::Fingerprint { .. } => {}
        }
    }
    let again = SyncMessage::decode(&msg.encode());
    prop_assert!(again.is_ok(), "re-encoding is refused: {:?}", again);
    let again = again.unwrap();
    prop_assert_eq!(&again.ranges, &msg.ranges);
    prop_assert_eq!(&again.events, &msg.events);
    if !msg.ranges.is_empty() {
        prop_assert_eq!(again.salt, msg.salt);
    }
    Ok(())
}

fn check_sync_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(msg) = SyncMessage::decode(bytes) {
        prop_assert!(bytes.len() <= MESSAGE_BYTES_MAX);
        check_sync_message(&msg)?;
    }
    Ok(())
}

/// Arbitrary and CBOR-shaped bytes never panic the sync decoder; what it
/// accepts keeps every bound and round-trips.
#[test]
fn fuzz_sync_message_garbage() {
    let input = prop_oneof![arbitrary_bytes(), cbor_shaped()];
    fuzz("node/sync-message-garbage", 1, input, |bytes| {
        check_sync_bytes(&bytes)
    });
}

/// Well-formed sync messages round-trip; damaged ones never panic the
/// decoder, and what it still accepts keeps every bound.
#[test]
fn fuzz_sync_message_damaged() {
    fuzz(
        "node/sync-message-damaged",
        2,
        (sync_message(), edits()),
        |(msg, edits)| {
            let bytes = msg.encode();
            let decoded = SyncMessage::decode(&bytes).ok();
            prop_assert_eq!(decoded.as_ref(), Some(&msg));
            check_sync_bytes(&damaged(bytes, &edits))
        },
    );
}

/// A node answering (or continuing) a sync with garbage or damaged
/// messages returns a result and never panics, and its log grows by at
/// most the valid events the message carried (and those they release from
/// pending).
#[test]
fn fuzz_sync_answer() {
    let node = RefCell::new(node());
    let input = prop_oneof![
        3 => (sync_message(), edits()).prop_map(|(m, e)| damaged(m.encode(), &e)),
        1 => sync_message().prop_map(|m| m.encode()),
        1 => cbor_shaped(),
    ];
    fuzz(
        "node/sync-answer",
        8,
        (input, any::<bool>()),
        |(bytes, answer)| {
            let mut node = node.borrow_mut();
            let before = node.log().store().len();
            let pending = node.log().pending_len();
            let carried = SyncMessage::decode(&bytes)
                .map(|m| {
                    m.events
                        .iter()
                        .filter(|e| VerifiedEvent::decode(e).is_ok())
                        .count()
                })
                .unwrap_or(0);
            if answer {
                let _ = node.sync_answer(peer(), &bytes);
            } else {
                let _ = node.sync_start(peer());
                let _ = node.sync_continue(peer(), &bytes);
            }
            while node.poll_output().is_some() {}
            // An admission among them may release events held pending.
            let grown = node.log().store().len() - before;
            prop_assert!(
                grown as usize <= carried + pending,
                "{grown} events stored from {carried} valid ones and {pending} pending"
            );
            Ok(())
        },
    );
}

// ------------------------------------------------------------ request-response bodies

fn codec<Req, Resp>() -> CborCodec<Req, Resp> {
    // As `net::behaviour::request_response` configures it.
    CborCodec::default()
        .set_request_size_maximum(REQUEST_BYTES_MAX)
        .set_response_size_maximum(RESPONSE_BYTES_MAX)
}

type SyncCodec = CborCodec<SyncRequest, SyncResponse>;
type BusCodec = CborCodec<BusRequest, BusResponse>;

/// The request and response bodies the codec writes for honest messages
/// of both protocols: what damage starts from.
fn wire_corpus() -> &'static [Vec<u8>] {
    static WIRE: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    WIRE.get_or_init(|| {
        let f = Fixture::new();
        let msg = SyncMessage {
            salt: 5,
            ranges: vec![Range {
                upper: None,
                mode: Mode::Fingerprint {
                    count: 3,
                    fp: [1; 8],
                },
            }],
            events: vec![corpus()[2].bytes().to_vec()],
        };
        let post = ciborium::Value::serialized(&serde_json::json!({
            "category": "offer", "title": "Ladder", "body": "3 m", "tags": ["tools"],
            "ttl_seconds": 3600, "location": {"lat": 1, "lng": -2, "label": "here"},
            "client_id": "c1",
        }))
        .unwrap();
        let list = ciborium::Value::serialized(&serde_json::json!({"category": "offer"})).unwrap();
        let mut out = Vec::new();
        let mut write_sync = |req: Option<SyncRequest>, resp: Option<SyncResponse>| {
            let mut buf = futures::io::Cursor::new(Vec::new());
            let mut c: SyncCodec = codec();
            if let Some(req) = req {
                block_on(c.write_request(&SYNC_PROTOCOL, &mut buf, req)).unwrap();
            }
            if let Some(resp) = resp {
                block_on(c.write_response(&SYNC_PROTOCOL, &mut buf, resp)).unwrap();
            }
            out.push(buf.into_inner());
        };
        write_sync(
            Some(SyncRequest {
                community: f.community,
                message: msg.encode(),
            }),
            None,
        );
        write_sync(
            None,
            Some(SyncResponse::Messages(vec![
                serde_bytes::ByteBuf::from(msg.encode()),
                serde_bytes::ByteBuf::from(SyncMessage::default().encode()),
            ])),
        );
        write_sync(None, Some(SyncResponse::Refused("other community".into())));
        let mut write_bus = |req: Option<BusRequest>, resp: Option<BusResponse>| {
            let mut buf = futures::io::Cursor::new(Vec::new());
            let mut c: BusCodec = codec();
            if let Some(req) = req {
                block_on(c.write_request(&BUS_PROTOCOL, &mut buf, req)).unwrap();
            }
            if let Some(resp) = resp {
                block_on(c.write_response(&BUS_PROTOCOL, &mut buf, resp)).unwrap();
            }
            out.push(buf.into_inner());
        };
        write_bus(
            Some(BusRequest {
                capability: "market.post".into(),
                params: post.clone(),
            }),
            None,
        );
        write_bus(
            Some(BusRequest {
                capability: "market.list".into(),
                params: list,
            }),
            None,
        );
        write_bus(
            None,
            Some(BusResponse::Ok(ciborium::Value::Array(vec![post]))),
        );
        write_bus(
            None,
            Some(BusResponse::Err(BusError::not_found("no post 01J..."))),
        );
        out
    })
}

/// Reads `bytes` as each of the four bodies, as the codec does off a
/// stream. Returns the decoded bus and sync requests, for the core.
fn read_bodies(bytes: &[u8]) -> (Option<BusRequest>, Option<SyncRequest>) {
    let mut sync: SyncCodec = codec();
    let mut bus: BusCodec = codec();
    let io = || futures::io::Cursor::new(bytes.to_vec());
    let sync_req = block_on(sync.read_request(&SYNC_PROTOCOL, &mut io())).ok();
    let _ = block_on(sync.read_response(&SYNC_PROTOCOL, &mut io()));
    let bus_req = block_on(bus.read_request(&BUS_PROTOCOL, &mut io())).ok();
    let _ = block_on(bus.read_response(&BUS_PROTOCOL, &mut io()));
    (bus_req, sync_req)
}

fn wire_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (any::<Index>(), edits()).prop_map(|(i, e)| {
            damaged(wire_corpus()[i.index(wire_corpus().len())].clone(), &e)
        }),
        1 => any::<Index>().prop_map(|i| wire_corpus()[i.index(wire_corpus().len())].clone()),
        1 => cbor_shaped(),
        1 => arbitrary_bytes(),
    ]
}

/// Request and response bodies of both protocols, damaged or garbage,
/// are refused by the codec with an error, never a panic; whatever
/// decodes is handed to the core (bus dispatch, sync answer), which
/// answers without panicking either.
#[test]
fn fuzz_request_response_bodies() {
    let node = RefCell::new(node());
    fuzz("node/request-response-bodies", 4, wire_input(), |bytes| {
        let (bus, sync) = read_bodies(&bytes);
        let mut node = node.borrow_mut();
        if let Some(req) = bus {
            for caller in [Caller::Local, Caller::Remote(peer())] {
                let before = node.log().store().len();
                if node
                    .call(NOW, caller, &req.capability, req.params.clone())
                    .is_err()
                {
                    prop_assert_eq!(node.log().store().len(), before, "a refused call wrote");
                }
            }
        }
        if let Some(req) = sync {
            let _ = node.sync_answer(peer(), &req.message);
        }
        while node.poll_output().is_some() {}
        Ok(())
    });
}

/// Arbitrary CBOR values for bus params, including every shape serde may
/// meet: floats, nulls, tags, nesting, and maps with the fields the
/// handlers look for holding values of the wrong kind.
fn cbor_value() -> impl Strategy<Value = ciborium::Value> {
    use ciborium::Value as V;
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| V::Integer(n.into())),
        any::<u64>().prop_map(|n| V::Integer(n.into())),
        any::<f64>().prop_map(V::Float),
        ".{0,16}".prop_map(V::Text),
        prop::sample::select(vec![
            "offer",
            "request",
            "emergency",
            "stale",
            "fulfilled",
            "01J0000000000000000000000",
        ])
        .prop_map(|s| V::Text(s.into())),
        "[0-9a-f]{64}".prop_map(V::Text),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(V::Bytes),
        any::<bool>().prop_map(V::Bool),
        Just(V::Null),
    ];
    let field = prop::sample::select(vec![
        "category",
        "title",
        "body",
        "tags",
        "ttl_seconds",
        "location",
        "lat",
        "lng",
        "label",
        "client_id",
        "id",
        "author",
        "reason",
        "query",
        "limit",
        "member",
        "level",
        "x",
    ]);
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(V::Array),
            prop::collection::vec(
                (field.clone().prop_map(|f| V::Text(f.into())), inner.clone()),
                0..7
            )
            .prop_map(V::Map),
            (any::<u64>(), inner).prop_map(|(t, v)| V::Tag(t, Box::new(v))),
        ]
    })
}

/// Any capability name with any params, from the node's own user or a
/// stranger, gets a typed answer and never panics; a refused call leaves
/// the log as it was.
#[test]
fn fuzz_bus_dispatch() {
    let node = RefCell::new(node());
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "market.list", "market.get", "market.post", "market.update", "market.expire",
            "market.search", "community.member.set", "node.status", "embed.text",
        ])
        .prop_map(String::from),
        1 => ".{0,24}",
    ];
    fuzz(
        "node/bus-dispatch",
        4,
        (name, cbor_value(), any::<bool>()),
        |(name, params, local)| {
            let mut node = node.borrow_mut();
            let caller = if local {
                Caller::Local
            } else {
                Caller::Remote(peer())
            };
            let before = node.log().store().len();
            if node.call(NOW, caller, &name, params).is_err() {
                prop_assert_eq!(node.log().store().len(), before, "a refused call wrote");
            }
            while node.poll_output().is_some() {}
            Ok(())
        },
    );
}

/// Bodies claiming huge arrays, maps, byte or text strings, and bodies
/// nested to any depth, are refused by the codec without reserving memory
/// for the claim or overflowing the stack; the sync decoder too.
#[test]
fn huge_and_deep_bodies_are_refused() {
    let before = vm_peak_bytes();
    let claims = [1u64 << 20, 1 << 26, 1 << 31, 1 << 32, 1 << 40, u64::MAX];
    let mut inputs = Vec::new();
    for major in [2u8, 3, 4, 5] {
        for claim in claims {
            let mut head = vec![major << 5 | 27];
            head.extend_from_slice(&claim.to_be_bytes());
            // Alone, as a sync request's message, and as bus params.
            inputs.push([&head[..], &[0u8; 16]].concat());
            inputs.push(
                [
                    &b"\xa2\x69community\x58\x20"[..],
                    &[0; 32],
                    b"\x67message",
                    &head,
                ]
                .concat(),
            );
            inputs.push(
                [
                    &b"\xa2\x6acapability\x6bmarket.list\x66params"[..],
                    &head,
                    &[0; 8],
                ]
                .concat(),
            );
            inputs.push([&b"\xa1\x61e"[..], &head, &[0; 8]].concat());
            inputs.push([&b"\xa2\x61r"[..], &head, &[0; 8]].concat());
        }
    }
    for opener in [&[0x81u8][..], &[0xa1, 0x61, b'x'], &[0x9f], &[0xc6]] {
        let mut deep = b"\xa2\x6acapability\x6bmarket.list\x66params".to_vec();
        deep.extend(opener.repeat(100_000));
        deep.push(0);
        inputs.push(deep.clone());
        inputs.push(opener.repeat(100_000));
    }
    for bytes in &inputs {
        let (bus, sync) = read_bodies(bytes);
        assert!(
            bus.is_none() && sync.is_none(),
            "{:02x?} decoded",
            &bytes[..bytes.len().min(40)]
        );
        assert!(SyncMessage::decode(bytes).is_err());
    }
    assert_vm_growth_bounded(before, "decoding huge claims");
}

// ------------------------------------------------------------ received events

/// Damaged events of the node's own community, from a peer, sync or a
/// file, are refused and leave the log as it was; only intact corpus
/// events are ever stored.
#[test]
fn fuzz_received_events() {
    let node = RefCell::new(node());
    let sources = prop::sample::select(vec![
        Source::Peer(peer()),
        Source::Sync(peer()),
        Source::File,
    ]);
    let input = (any::<Index>(), edits(), 0u8..4).prop_map(|(i, e, intact)| {
        let bytes = corpus()[i.index(corpus().len())].bytes().to_vec();
        // One case in four delivers the event intact, so the log fills
        // and later damage meets admitted authors.
        if intact == 0 {
            bytes
        } else {
            damaged(bytes, &e)
        }
    });
    fuzz(
        "node/received-events",
        4,
        (input, sources),
        |(bytes, source)| {
            let mut node = node.borrow_mut();
            let before = node.log().store().len();
            let intact = corpus().iter().any(|e| e.bytes() == bytes.as_slice());
            match node.receive(&bytes, source) {
                Ok(Ingested::Stored(_)) | Ok(Ingested::Pending) => {
                    prop_assert!(intact, "damaged bytes were taken")
                }
                Err(_) => prop_assert_eq!(node.log().store().len(), before, "a refusal wrote"),
            }
            while node.poll_output().is_some() {}
            Ok(())
        },
    );
}

// ------------------------------------------------------------ invites

/// The invite format of `hearth community invite` (a CBOR map behind a
/// prefix and hex), rebuilt here so damage can be done to its bytes.
#[derive(serde::Serialize)]
struct InviteBody<'a> {
    #[serde(rename = "c", with = "serde_bytes")]
    community: &'a [u8],
    #[serde(rename = "g", with = "serde_bytes")]
    genesis: &'a [u8],
    #[serde(rename = "a")]
    addrs: Vec<String>,
}

fn invite_bytes() -> Vec<u8> {
    let f = Fixture::new();
    let body = InviteBody {
        community: &f.community.0,
        genesis: f.genesis.bytes(),
        addrs: vec![
            "/ip4/127.0.0.1/tcp/4001".into(),
            "/ip6/::1/udp/4001/quic-v1".into(),
        ],
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&body, &mut bytes).unwrap();
    bytes
}

fn invite_text(bytes: &[u8]) -> String {
    format!(
        "{}{}",
        hearth_node::cli::commands::community::INVITE_PREFIX,
        hex::encode(bytes)
    )
}

/// Runs the CLI in this process, as `hearth --data-dir DIR ARGS...`.
fn hearth(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec![
        "hearth",
        "--data-dir",
        dir.to_str().expect("utf-8 temp path"),
    ];
    argv.extend_from_slice(args);
    hearth_node::cli::run(Cli::try_parse_from(argv)?)
}

/// `hearth join` with a damaged invite (its CBOR, its hex text or its
/// prefix damaged) fails with an error and writes nothing; when the
/// damage left it valid, the community joined is the invite's own.
#[test]
fn fuzz_invites() {
    let valid = invite_bytes();
    assert!(valid.len() > 100);
    let input = prop_oneof![
        3 => edits().prop_map(|e| invite_text(&damaged(invite_bytes(), &e))),
        2 => edits().prop_map(|e| {
            String::from_utf8_lossy(&damaged(invite_text(&invite_bytes()).into_bytes(), &e))
                .into_owned()
        }),
        1 => cbor_shaped().prop_map(|b| invite_text(&b)),
        1 => ".{0,64}",
    ];
    let dir = RefCell::new(tempfile::tempdir().unwrap());
    let community = Fixture::new().community;
    fuzz("node/invites", 16, input, |text| {
        let path = dir.borrow().path().to_owned();
        // `--`: an invite that starts with `-` is still the invite.
        let result = hearth(&path, &["join", "--", &text]);
        let data = DataDir::new(path);
        match result {
            Ok(()) => {
                let joined = data.load_genesis().expect("a join writes the genesis");
                prop_assert_eq!(joined.community, community);
                // Next case on an empty dir again.
                *dir.borrow_mut() = tempfile::tempdir().unwrap();
            }
            Err(e) => {
                prop_assert!(!data.has_genesis(), "a refused join wrote: {e:#}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
        Ok(())
    });
}

// ------------------------------------------------------------ import files

/// A corpus file: every corpus event, genesis first, as `log export`
/// writes them.
fn export_file() -> Vec<u8> {
    corpus().iter().flat_map(|e| e.bytes().to_vec()).collect()
}

/// The (offset, length) of each item `cbor_seq` cuts, and where it gave
/// up. One place to adapt when splitting becomes streaming.
fn split(bytes: &[u8]) -> (Vec<(usize, usize)>, Option<usize>) {
    let (items, broken) = cbor_seq::split(bytes);
    (
        items.iter().map(|i| (i.offset, i.bytes.len())).collect(),
        broken.map(|b| b.offset),
    )
}

/// Splitting any file into CBOR items never panics: the items tile the
/// file from its start, each as long as `item_len` says, and splitting
/// stops only where an item's end cannot be found.
#[test]
fn fuzz_import_splitting() {
    let input = prop_oneof![
        3 => edits().prop_map(|e| damaged(export_file(), &e)),
        1 => cbor_shaped(),
        1 => arbitrary_bytes(),
    ];
    fuzz("node/import-splitting", 2, input, |bytes| {
        let (items, broken) = split(&bytes);
        let mut at = 0;
        for (offset, len) in items {
            prop_assert_eq!(offset, at, "items do not tile the file");
            prop_assert!(len > 0);
            prop_assert_eq!(item_len(&bytes[offset..]), Ok(len));
            at += len;
        }
        match broken {
            Some(offset) => {
                prop_assert_eq!(offset, at);
                prop_assert!(item_len(&bytes[offset..]).is_err());
            }
            None => prop_assert_eq!(at, bytes.len()),
        }
        Ok(())
    });
}

/// `hearth log import` of a damaged export into an empty data dir
/// returns (an error or a report), never panics, and stores only intact
/// events of the file.
#[test]
fn fuzz_import_files() {
    let input = prop_oneof![
        4 => edits().prop_map(|e| damaged(export_file(), &e)),
        1 => cbor_shaped(),
    ];
    let intact: Vec<_> = corpus().iter().map(|e| *e.hash()).collect();
    fuzz("node/import-files", 64, input, |bytes| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("import.cbor");
        std::fs::write(&file, &bytes).unwrap();
        let data = dir.path().join("node");
        let result = hearth(&data, &["log", "import", file.to_str().unwrap()]);
        let data = DataDir::new(data);
        if result.is_ok() || data.has_genesis() {
            let (node, _) = data
                .open_node(Config::default())
                .expect("the store opens after an import");
            let store = node.log().store();
            let stored: Vec<_> = store
                .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
                .collect();
            for event in stored {
                let event = event.expect("stored events read back");
                prop_assert!(
                    intact.contains(event.hash()),
                    "a damaged event was imported"
                );
            }
        }
        Ok(())
    });
}

// ------------------------------------------------------------ local API lines

/// A running `hearth run` on loopback, stopped (SIGKILL, by its pid) on drop.
struct Running {
    child: Child,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls of 50 ms for the node's socket to answer: a 30 s guard. Across
/// processes there is no event to await.
const START_POLLS: usize = 600;

fn start_node() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(dir.path())
        // No HTTP API: other tests run nodes at the same time.
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--no-http",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("node.sock");
    let running = Running {
        child,
        _dir: dir,
        socket,
    };
    for _ in 0..START_POLLS {
        if let Ok(mut c) = connect(&running.socket) {
            if call(&mut c, b"{\"capability\":\"node.status\"}").is_ok() {
                return running;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("hearth run did not answer on {}", running.socket.display());
}

type Conn = (UnixStream, BufReader<UnixStream>);

fn connect(path: &Path) -> std::io::Result<Conn> {
    let stream = UnixStream::connect(path)?;
    // A guard against a hung node, not a synchronisation.
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((stream, reader))
}

/// Sends one line, returns the answer line parsed as JSON.
fn call(conn: &mut Conn, line: &[u8]) -> anyhow::Result<serde_json::Value> {
    conn.0.write_all(line)?;
    conn.0.write_all(b"\n")?;
    let mut answer = String::new();
    if conn.1.read_line(&mut answer)? == 0 {
        anyhow::bail!("the node closed the connection");
    }
    Ok(serde_json::from_str(&answer)?)
}

/// Wire error codes (DESIGN.md section 6).
const ERROR_CODES: [&str; 8] = [
    "bad_request",
    "unauthorized",
    "not_found",
    "partition",
    "overloaded",
    "timeout",
    "unavailable",
    "internal",
];

fn local_line() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop::sample::select(vec![
        r#"{"capability":"market.list","params":{"category":"offer"}}"#,
        r#"{"capability":"market.search","params":{"query":"ladder","limit":5}}"#,
        r#"{"capability":"market.get","params":{"id":"01J0000000000000000000000A"}}"#,
        r#"{"capability":"market.post","params":{"category":"offer","title":"Ladder","tags":["tools"],"ttl_seconds":600}}"#,
        r#"{"capability":"market.expire","params":{"id":"01J0000000000000000000000A","reason":"stale"}}"#,
        r#"{"capability":"node.status","params":{}}"#,
    ]);
    let json_value = prop_oneof![
        Just(serde_json::json!(null)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|n| serde_json::json!(n)),
        ".{0,12}".prop_map(|s| serde_json::json!(s)),
        Just(serde_json::json!({"category": ["offer"], "title": 1e300})),
        Just(serde_json::json!({"id": {"nested": [[[]]]}})),
    ];
    let shaped = (
        prop::sample::select(vec!["market.list", "market.post", "market.get", "x", ""]),
        json_value,
    )
        .prop_map(|(cap, params)| {
            serde_json::json!({"capability": cap, "params": params})
                .to_string()
                .into_bytes()
        });
    prop_oneof![
        3 => (valid, edits()).prop_map(|(v, e)| damaged(v.as_bytes().to_vec(), &e)),
        1 => shaped,
        1 => arbitrary_bytes(),
    ]
    // One request is one line: a newline inside would be two requests.
    .prop_map(|mut b| {
        b.retain(|c| *c != b'\n');
        b
    })
}

/// Request lines sent to a running node's socket, damaged, garbage or
/// wrongly shaped, each get one answer: a JSON object with `ok` or an
/// `error` whose code is a wire code; the node keeps answering.
#[test]
fn fuzz_local_api_lines() {
    let node = start_node();
    let conn = RefCell::new(connect(&node.socket).unwrap());
    fuzz("node/local-api-lines", 8, local_line(), |line| {
        let mut conn = conn.borrow_mut();
        let answer = call(&mut conn, &line);
        prop_assert!(
            answer.is_ok(),
            "no answer to {:?}: {:?}",
            String::from_utf8_lossy(&line),
            answer
        );
        let answer = answer.unwrap();
        let ok = answer.get("ok").is_some();
        let error = answer.get("error");
        prop_assert!(ok != error.is_some(), "answer {answer}");
        if let Some(error) = error {
            let code = error["code"].as_str().unwrap_or_default();
            prop_assert!(ERROR_CODES.contains(&code), "code {code:?} in {answer}");
            prop_assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        Ok(())
    });
    // An over-long line is refused with `bad_request` on a fresh connection.
    let mut c = connect(&node.socket).unwrap();
    let long = vec![b'x'; LINE_BYTES_MAX as usize + 10];
    let answer = call(&mut c, &long).unwrap();
    assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
    let mut c = connect(&node.socket).unwrap();
    let status = call(&mut c, b"{\"capability\":\"node.status\"}").unwrap();
    assert!(
        status.get("ok").is_some(),
        "the node stopped answering: {status}"
    );
}
