//! Anti-entropy sync (DESIGN.md §5) between two stores and two nodes:
//! both sides end equal, with round trips and bytes reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use common::*;
use hearth_node::core::sync::{
    Mode, Range, SyncError, SyncMessage, SyncSession, EVENTS_MAX, IDS_MAX, MESSAGE_BYTES_MAX,
};
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::cbor::Value;
use hearth_proto::{Event, EventId, Level, Payload, VerifiedEvent};

/// 105k small signed events, made once for every case.
fn pool() -> &'static Vec<VerifiedEvent> {
    static POOL: OnceLock<Vec<VerifiedEvent>> = OnceLock::new();
    POOL.get_or_init(|| {
        let f = Fixture::new();
        let who = key(2);
        (0..105_000u64)
            .map(|i| {
                Event {
                    id: EventId::from_parts(NOW, u128::from(i)),
                    ts: NOW,
                    author: who.node_id(),
                    lamport: 1 + i / 3, // several events share a Lamport time
                    community: f.community,
                    payload: Payload::Unknown {
                        type_name: "test.note".into(),
                        data: Value::map([("n", Value::Uint(i))]),
                    },
                }
                .sign(&who)
                .unwrap()
            })
            .collect()
    })
}

#[derive(Debug, Default)]
struct Exchange {
    round_trips: u32,
    bytes: usize,
}

fn admit(store: &mut MemoryStore, received: Vec<Vec<u8>>) {
    for bytes in received {
        let e = VerifiedEvent::decode(&bytes).unwrap();
        store.insert(&e).unwrap();
    }
}

/// Runs a whole reconciliation between two stores in memory.
fn reconcile(a: &mut MemoryStore, b: &mut MemoryStore) -> Exchange {
    let (mut sa, first) = SyncSession::initiate(a, 0x5eed).unwrap();
    let mut sb = SyncSession::default();
    let mut msg = first.encode();
    let mut x = Exchange {
        bytes: msg.len(),
        ..Exchange::default()
    };
    loop {
        x.round_trips += 1;
        assert!(x.round_trips < 40, "sync does not settle");
        let reply = sb.handle(b, &msg).unwrap();
        admit(b, sb.take_received());
        let reply_bytes = reply.encode();
        x.bytes += reply_bytes.len();
        let next = sa.handle(a, &reply_bytes).unwrap();
        admit(a, sa.take_received());
        if next.is_empty() && reply.is_empty() && sa.is_done() {
            return x;
        }
        msg = next.encode();
        x.bytes += msg.len();
    }
}

fn keys(s: &MemoryStore) -> Vec<hearth_proto::EventKey> {
    s.keys(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .map(|k| k.unwrap())
        .collect()
}

/// Builds two stores sharing `n` events, with `k` more split between them
/// (even positions to A, odd to B), scattered through the key space.
fn stores(n: usize, k: usize) -> (MemoryStore, MemoryStore, usize) {
    let pool = pool();
    let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
    // Differences are every (n+k)/k-th event, so they are scattered.
    let total = n + k;
    let stride = total.checked_div(k).unwrap_or(usize::MAX);
    let mut diff = 0;
    let mut diff_bytes = 0;
    for (i, e) in pool.iter().take(total).enumerate() {
        if k > 0 && i % stride == 0 && diff < k {
            diff_bytes += e.bytes().len();
            if diff % 2 == 0 {
                a.insert(e).unwrap()
            } else {
                b.insert(e).unwrap()
            };
            diff += 1;
        } else {
            a.insert(e).unwrap();
            b.insert(e).unwrap();
        }
    }
    assert_eq!(diff, k);
    (a, b, diff_bytes)
}

fn case(n: usize, k: usize) -> Exchange {
    let (mut a, mut b, diff_bytes) = stores(n, k);
    let x = reconcile(&mut a, &mut b);
    assert_eq!(keys(&a), keys(&b), "n={n} k={k}: both sides end equal");
    assert_eq!(a.len() as usize, n + k);
    eprintln!(
        "sync n={n:>6} k={k:>4}: {} round trips, {} bytes ({:.2}x the {} bytes of differing events)",
        x.round_trips,
        x.bytes,
        if diff_bytes > 0 { x.bytes as f64 / diff_bytes as f64 } else { 0.0 },
        diff_bytes
    );
    x
}

/// Equal logs settle in one round trip, whatever their size.
#[test]
fn equal_logs_settle_in_one_round_trip() {
    for n in [0, 1, 10_000, 100_000] {
        let x = case(n, 0);
        assert_eq!(x.round_trips, 1, "n={n}");
        assert!(x.bytes < 1024, "n={n}: {} bytes", x.bytes);
    }
}

/// One difference settles in a few round trips and a few KiB.
#[test]
fn one_difference_settles_in_log_rounds() {
    for n in [0, 1, 10_000, 100_000] {
        let x = case(n, 1);
        assert!(x.round_trips <= 6, "n={n}: {} round trips", x.round_trips);
        assert!(x.bytes < 4096, "n={n}: {} bytes", x.bytes);
    }
}

/// 100 scattered differences split across both sides.
#[test]
fn hundred_scattered_differences_both_ways() {
    for n in [0, 1, 10_000, 100_000] {
        let x = case(n, 100);
        assert!(x.round_trips <= 8, "n={n}: {} round trips", x.round_trips);
    }
}

/// 5,000 scattered differences, both ways, batched within the bounds.
#[test]
fn five_thousand_differences_both_ways() {
    for n in [0, 1, 10_000, 100_000] {
        let x = case(n, 5_000);
        assert!(x.round_trips <= 12, "n={n}: {} round trips", x.round_trips);
    }
}

fn refused(bytes: &[u8]) -> SyncError {
    let store = MemoryStore::new();
    let mut s = SyncSession::default();
    let err = s.handle(&store, bytes).unwrap_err();
    assert!(
        s.is_done() && s.take_received().is_empty(),
        "session untouched"
    );
    err
}

/// Malformed bytes are a typed error, not a panic.
#[test]
fn malformed_message_is_refused() {
    assert!(matches!(
        refused(&[0xff, 0x00, 0x13]),
        SyncError::Malformed(_)
    ));
}

/// An oversized message is refused before decoding.
#[test]
fn oversized_message_is_refused() {
    assert!(matches!(
        refused(&vec![0u8; MESSAGE_BYTES_MAX + 1]),
        SyncError::TooLarge { .. }
    ));
}

/// Ranges must ascend: a peer cannot make us scan the key space twice.
#[test]
fn unordered_ranges_are_refused() {
    let bound = |l| {
        Some(hearth_node::core::sync::KeyBound {
            lamport: l,
            prefix: vec![],
        })
    };
    let msg = SyncMessage {
        ranges: vec![
            Range {
                upper: bound(5),
                mode: Mode::Skip,
            },
            Range {
                upper: bound(3),
                mode: Mode::Skip,
            },
        ],
        ..Default::default()
    };
    assert!(matches!(
        refused(&msg.encode()),
        SyncError::Unordered { index: 1 }
    ));
}

/// An id list over the cap is refused.
#[test]
fn oversized_id_list_is_refused() {
    let msg = SyncMessage {
        ranges: vec![Range {
            upper: None,
            mode: Mode::Ids(vec![[1u8; 8]; IDS_MAX + 1]),
        }],
        ..Default::default()
    };
    assert!(matches!(
        refused(&msg.encode()),
        SyncError::TooMany {
            what: "ids in a range",
            ..
        }
    ));
}

/// An event batch over the cap is refused.
#[test]
fn oversized_event_batch_is_refused() {
    let msg = SyncMessage {
        events: vec![vec![0]; EVENTS_MAX + 1],
        ..Default::default()
    };
    assert!(matches!(
        refused(&msg.encode()),
        SyncError::TooMany { what: "events", .. }
    ));
}

/// Through the nodes: a member's events and its admission reach a node
/// that had neither, and each side learns what the other lacks; invalid
/// bytes pushed by a peer are refused by verification.
#[test]
fn nodes_sync_both_ways_through_verification() {
    let f = Fixture::new();
    let alice = key(2);
    let mut a = f.admitted_node(&f.anchor, Level::Anchor);
    let mut b = f.node(&key(7));
    a.set_member(NOW, alice.node_id(), Level::Member).unwrap();
    for i in 0..30u128 {
        a.log_mut()
            .append_received(f.post(&alice, 10 + i as u64, i, "from a"))
            .unwrap();
    }
    b.log_mut()
        .append_received(f.member_set(&f.anchor, 2, &key(7), Level::Member))
        .unwrap();
    b.log_mut()
        .append_received(f.post(&key(7), 5, 500, "from b"))
        .unwrap();
    let (ida, idb) = (a.node_id(), b.node_id());
    let mut msg = a.sync_start(idb).unwrap().unwrap();
    for _ in 0..20 {
        let reply = b.sync_answer(ida, &msg).unwrap();
        match a.sync_continue(idb, &reply).unwrap() {
            Some(next) => msg = next,
            None => break,
        }
    }
    assert!(!a.sync_running(&idb));
    assert_eq!(a.log().store().len(), b.log().store().len());
    assert_eq!(a.views().digest(), b.views().digest());
    assert!(a
        .last_sync()
        .is_some_and(|r| r.stats.events_received > 0 && r.stats.events_sent > 0));

    // A peer pushing a corrupted event: refused by verification, not stored.
    let mut bad = f.post(&alice, 99, 999, "tampered").into_bytes();
    let n = bad.len();
    bad[n - 40] ^= 1;
    let push = SyncMessage {
        events: vec![bad],
        ..Default::default()
    };
    let before = b.log().store().len();
    b.sync_answer(ida, &push.encode()).unwrap();
    assert_eq!(b.log().store().len(), before);
}
