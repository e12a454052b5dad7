//! One behaviour, two stores: every test here runs against [`MemoryStore`]
//! and [`SledStore`]; the sled-only tests at the end cover reopening and
//! corruption on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Bound;

use hearth_node::core::sync::{Accumulator, LogDigest};
use hearth_node::store::{EventStore, MemoryStore, SledStore, StoreError, PREFETCH_CHUNK};
use hearth_proto::cbor::Value;
use hearth_proto::{CommunityId, Event, EventId, EventKey, Identity, Payload, VerifiedEvent};
use tempfile::TempDir;

const NOW: u64 = 1_767_225_600_000;

/// An event of an unknown type by key `author`, at `lamport`, with ULID
/// random part `id` and a payload that makes it unique by `n`.
fn event(author: u8, lamport: u64, id: u128, n: u64) -> VerifiedEvent {
    let identity = Identity::from_seed([author; 32]);
    Event {
        id: EventId::from_parts(NOW, id),
        ts: NOW,
        author: identity.node_id(),
        lamport,
        community: CommunityId([7; 32]),
        payload: Payload::Unknown {
            type_name: "test.note".into(),
            data: Value::map([("n", Value::Uint(n))]),
        },
    }
    .sign(&identity)
    .unwrap()
}

/// 40 events over Lamport times 0..10 (several per time, so hashes order
/// them within one time), inserted out of key order.
fn sample() -> Vec<VerifiedEvent> {
    (0..40u64)
        .map(|i| event(1 + (i % 3) as u8, (i * 7) % 10, u128::from(i), i))
        .collect()
}

fn keys_of(events: &[VerifiedEvent]) -> Vec<EventKey> {
    let mut keys: Vec<EventKey> = events.iter().map(VerifiedEvent::key).collect();
    keys.sort();
    keys
}

fn fill(store: &mut impl EventStore, events: &[VerifiedEvent]) {
    for e in events {
        store.insert(e).unwrap();
    }
}

fn in_range(k: &EventKey, from: &Bound<EventKey>, to: &Bound<EventKey>) -> bool {
    let lo = match from {
        Bound::Included(f) => k >= f,
        Bound::Excluded(f) => k > f,
        Bound::Unbounded => true,
    };
    let hi = match to {
        Bound::Included(t) => k <= t,
        Bound::Excluded(t) => k < t,
        Bound::Unbounded => true,
    };
    lo && hi
}

// ---- the shared suite, generic over the store ----

fn insert_numbers_arrivals_and_ignores_duplicates(mut store: impl EventStore) {
    assert_eq!(store.last_arrival(), 0);
    let events = sample();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(store.insert(e).unwrap(), Some(i as u64 + 1));
    }
    for e in &events {
        assert_eq!(store.insert(e).unwrap(), None, "duplicate must be refused");
    }
    assert_eq!(store.len(), events.len() as u64);
    assert_eq!(store.last_arrival(), events.len() as u64);
}

fn lookups_find_stored_events_only(mut store: impl EventStore) {
    let events = sample();
    let (stored, absent) = events.split_at(30);
    fill(&mut store, stored);
    for e in stored {
        assert!(store.contains(e.hash()).unwrap());
        let got = store.get(e.hash()).unwrap().expect("stored event");
        assert_eq!(got.bytes(), e.bytes());
        assert_eq!(got.key(), e.key());
        let by_id = store.get_by_id(&e.event().id).unwrap();
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[0].bytes(), e.bytes());
    }
    for e in absent {
        assert!(!store.contains(e.hash()).unwrap());
        assert!(store.get(e.hash()).unwrap().is_none());
        assert!(store.get_by_id(&e.event().id).unwrap().is_empty());
    }
}

fn same_id_from_two_authors_returns_both(mut store: impl EventStore) {
    let a = event(1, 3, 99, 1);
    let b = event(2, 5, 99, 2);
    assert_eq!(a.event().id, b.event().id);
    store.insert(&a).unwrap();
    store.insert(&b).unwrap();
    store.insert(&event(1, 3, 100, 3)).unwrap();
    let mut got: Vec<Vec<u8>> = store
        .get_by_id(&a.event().id)
        .unwrap()
        .into_iter()
        .map(VerifiedEvent::into_bytes)
        .collect();
    got.sort();
    let mut want = vec![a.bytes().to_vec(), b.bytes().to_vec()];
    want.sort();
    assert_eq!(got, want);
}

fn range_honours_every_bound_kind(mut store: impl EventStore) {
    let events = sample();
    fill(&mut store, &events);
    let all = keys_of(&events);
    // Bounds on stored keys and on keys between them (lamport 4, zero hash).
    let between = EventKey {
        lamport: 4,
        hash: hearth_proto::EventHash([0; 32]),
    };
    let (lo, hi) = (all[5], all[30]);
    let cases = [
        (Bound::Unbounded, Bound::Unbounded),
        (Bound::Included(lo), Bound::Included(hi)),
        (Bound::Included(lo), Bound::Excluded(hi)),
        (Bound::Excluded(lo), Bound::Included(hi)),
        (Bound::Excluded(lo), Bound::Excluded(hi)),
        (Bound::Included(lo), Bound::Unbounded),
        (Bound::Excluded(lo), Bound::Unbounded),
        (Bound::Unbounded, Bound::Included(hi)),
        (Bound::Unbounded, Bound::Excluded(hi)),
        (Bound::Included(between), Bound::Unbounded),
        (Bound::Unbounded, Bound::Excluded(between)),
        (Bound::Included(hi), Bound::Included(hi)),
        (Bound::Included(hi), Bound::Excluded(all[31])),
    ];
    for (from, to) in cases {
        let want: Vec<EventKey> = all
            .iter()
            .filter(|k| in_range(k, &from, &to))
            .copied()
            .collect();
        let got: Vec<EventKey> = store.range(from, to).map(|e| e.unwrap().key()).collect();
        assert_eq!(got, want, "range {from:?}..{to:?}");
        let got_keys: Vec<EventKey> = store.keys(from, to).map(Result::unwrap).collect();
        assert_eq!(got_keys, want, "keys {from:?}..{to:?}");
    }
}

fn range_returns_full_events_in_key_order(mut store: impl EventStore) {
    let events = sample();
    fill(&mut store, &events);
    let mut want: Vec<&VerifiedEvent> = events.iter().collect();
    want.sort_by_key(|e| e.key());
    let got: Vec<VerifiedEvent> = store
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.bytes(), w.bytes());
    }
}

fn range_ignores_meta_records(mut store: impl EventStore) {
    store.put_meta("zzz", b"after every prefix").unwrap();
    store.put_meta("", b"empty name").unwrap();
    fill(&mut store, &sample()[..3]);
    assert_eq!(store.range(Bound::Unbounded, Bound::Unbounded).count(), 3);
    assert_eq!(store.keys(Bound::Unbounded, Bound::Unbounded).count(), 3);
    assert_eq!(store.since_arrival(0).count(), 3);
}

fn since_arrival_returns_later_arrivals_in_order(mut store: impl EventStore) {
    let events = sample();
    fill(&mut store, &events);
    for seq in [0u64, 1, 17, 39, 40, 41, u64::MAX] {
        let got: Vec<(u64, Vec<u8>)> = store
            .since_arrival(seq)
            .map(|r| {
                let (n, e) = r.unwrap();
                (n, e.into_bytes())
            })
            .collect();
        let want: Vec<(u64, Vec<u8>)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u64 + 1, e.bytes().to_vec()))
            .filter(|(n, _)| *n > seq)
            .collect();
        assert_eq!(got, want, "since_arrival({seq})");
    }
}

fn empty_store_reports_nothing(store: impl EventStore) {
    assert!(store.is_empty());
    assert_eq!(store.len(), 0);
    assert_eq!(store.last_arrival(), 0);
    assert_eq!(store.range(Bound::Unbounded, Bound::Unbounded).count(), 0);
    assert_eq!(store.keys(Bound::Unbounded, Bound::Unbounded).count(), 0);
    assert_eq!(store.since_arrival(0).count(), 0);
    assert!(store.get_meta("community").unwrap().is_none());
}

fn meta_values_are_stored_and_overwritten(mut store: impl EventStore) {
    assert!(store.get_meta("snapshot").unwrap().is_none());
    store.put_meta("snapshot", b"one").unwrap();
    store.put_meta("community", &[1, 2, 3]).unwrap();
    assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"one");
    store.put_meta("snapshot", b"two, longer").unwrap();
    assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"two, longer");
    store.put_meta("snapshot", b"").unwrap();
    assert_eq!(store.get_meta("snapshot").unwrap().unwrap(), b"");
    assert_eq!(store.get_meta("community").unwrap().unwrap(), [1, 2, 3]);
    assert!(store.get_meta("snap").unwrap().is_none());
    assert!(store.is_empty(), "meta is not an event");
}

/// The accumulator and log digest computed from scratch over `events`.
fn fresh_fingerprints(
    events: &[VerifiedEvent],
    from: &Bound<EventKey>,
    to: &Bound<EventKey>,
) -> (Accumulator, LogDigest) {
    let mut acc = Accumulator::default();
    for e in events.iter().filter(|e| in_range(&e.key(), from, to)) {
        acc.add(&e.key().hash);
    }
    (acc, LogDigest::of(events.iter().map(|e| e.hash())))
}

fn fingerprints_follow_every_insert(mut store: impl EventStore) {
    let events = sample();
    let keys = keys_of(&events);
    let bounds = [
        Bound::Unbounded,
        Bound::Included(keys[7]),
        Bound::Excluded(keys[7]),
        Bound::Included(keys[30]),
        Bound::Excluded(keys[30]),
    ];
    // Before any insert, halfway (the first query may build a cache), and
    // after the rest (which a built cache must follow), for every range.
    for upto in [0, 20, events.len()] {
        for e in &events[..upto] {
            store.insert(e).unwrap();
        }
        let held = &events[..upto];
        assert_eq!(
            store.log_digest().unwrap(),
            fresh_fingerprints(held, &Bound::Unbounded, &Bound::Unbounded).1
        );
        for from in &bounds {
            for to in &bounds {
                let (acc, _) = fresh_fingerprints(held, from, to);
                assert_eq!(
                    store.fingerprint(*from, *to).unwrap(),
                    acc,
                    "{from:?}..{to:?}"
                );
            }
        }
    }
}

fn duplicates_are_refused_once_fingerprints_are_kept(mut store: impl EventStore) {
    let events = sample();
    let (before, after) = events.split_at(15);
    fill(&mut store, before);
    // The first sync question: a store may now keep fingerprints in memory
    // and answer its duplicate check from them.
    store.log_digest().unwrap();
    for (i, e) in after.iter().enumerate() {
        assert_eq!(store.insert(e).unwrap(), Some(16 + i as u64));
    }
    for e in &events {
        assert_eq!(store.insert(e).unwrap(), None, "duplicate must be refused");
    }
    assert_eq!(store.len(), 40);
    assert_eq!(store.last_arrival(), 40);
    let arrivals: Vec<u64> = store.since_arrival(0).map(|r| r.unwrap().0).collect();
    assert_eq!(arrivals, (1..=40).collect::<Vec<_>>());
    assert_eq!(
        store.log_digest().unwrap(),
        fresh_fingerprints(&events, &Bound::Unbounded, &Bound::Unbounded).1
    );
}

/// Runs each suite function against a fresh store of every kind.
macro_rules! conformance {
    ($($(#[doc = $doc:literal])* $name:ident;)*) => {
        mod memory {
            use super::*;
            $( $(#[doc = $doc])* #[test] fn $name() { super::$name(MemoryStore::new()); } )*
        }
        mod sled_temporary {
            use super::*;
            $( $(#[doc = $doc])* #[test] fn $name() { super::$name(SledStore::temporary().unwrap()); } )*
        }
        mod sled_on_disk {
            use super::*;
            $( $(#[doc = $doc])* #[test] fn $name() {
                let dir = TempDir::new().unwrap();
                super::$name(SledStore::open(dir.path()).unwrap());
            } )*
        }
    };
}

conformance! {
    /// Inserts get arrival numbers 1, 2, 3, ...; a duplicate gets None and changes nothing.
    insert_numbers_arrivals_and_ignores_duplicates;
    /// contains/get/get_by_id find every stored event and nothing else.
    lookups_find_stored_events_only;
    /// Two events sharing a ULID from different authors are both returned by get_by_id.
    same_id_from_two_authors_returns_both;
    /// range and keys give exactly the keys inside every combination of bounds, ascending.
    range_honours_every_bound_kind;
    /// An unbounded range yields the stored bytes of every event in (lamport, hash) order.
    range_returns_full_events_in_key_order;
    /// Meta records never show up in range, keys or since_arrival.
    range_ignores_meta_records;
    /// since_arrival(n) yields exactly the arrivals after n, in arrival order.
    since_arrival_returns_later_arrivals_in_order;
    /// A new store is empty in every view.
    empty_store_reports_nothing;
    /// Meta values can be read back and overwritten, and do not count as events.
    meta_values_are_stored_and_overwritten;
    /// Range fingerprints and the log digest equal a fresh computation before and after further inserts.
    fingerprints_follow_every_insert;
    /// After the first sync question (log_digest), inserts still number fresh events and refuse every duplicate, old or new.
    duplicates_are_refused_once_fingerprints_are_kept;
}

// ---- sled only: reopening and corruption ----

fn corrupt_named<T>(r: &Result<T, StoreError>, name: &str) -> bool {
    matches!(r, Err(StoreError::Corrupt { what, .. }) if what.contains(name))
}

/// Empty and inverted ranges yield nothing, in both stores (a bare
/// BTreeMap range would panic on these).
#[test]
fn empty_and_inverted_ranges_yield_nothing() {
    fn check(store: &mut impl EventStore) {
        let events = sample();
        fill(store, &events);
        let all = keys_of(&events);
        let (lo, hi) = (all[5], all[30]);
        let cases = [
            (Bound::Excluded(hi), Bound::Excluded(hi)),
            (Bound::Included(hi), Bound::Excluded(hi)),
            (Bound::Included(hi), Bound::Included(lo)),
            (Bound::Excluded(hi), Bound::Excluded(lo)),
        ];
        for (from, to) in cases {
            assert_eq!(store.range(from, to).count(), 0, "{from:?}..{to:?}");
            assert_eq!(store.keys(from, to).count(), 0, "{from:?}..{to:?}");
        }
    }
    check(&mut SledStore::temporary().unwrap());
    check(&mut MemoryStore::new());
}

/// After flush and reopen, events, meta, len and the arrival counter survive, and the next insert gets last + 1.
#[test]
fn sled_reopen_keeps_everything_and_continues_arrivals() {
    let dir = TempDir::new().unwrap();
    let events = sample();
    let (first, later) = events.split_at(25);
    {
        let mut store = SledStore::open(dir.path()).unwrap();
        fill(&mut store, first);
        store.put_meta("community", b"lindenhof").unwrap();
        store.flush().unwrap();
    }
    let mut store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 25);
    assert_eq!(store.last_arrival(), 25);
    assert_eq!(store.get_meta("community").unwrap().unwrap(), b"lindenhof");
    for e in first {
        assert_eq!(store.get(e.hash()).unwrap().unwrap().bytes(), e.bytes());
        assert_eq!(store.insert(e).unwrap(), None, "still a duplicate");
    }
    assert_eq!(store.insert(&later[0]).unwrap(), Some(26));
    fill(&mut store, &later[1..]);
    let got: Vec<EventKey> = store
        .keys(Bound::Unbounded, Bound::Unbounded)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, keys_of(&events));
    let arrivals: Vec<u64> = store.since_arrival(0).map(|r| r.unwrap().0).collect();
    assert_eq!(arrivals, (1..=40).collect::<Vec<_>>());
}

/// A store whose last arrival record lacks the event count (written before it was kept) is counted at open.
#[test]
fn sled_open_counts_events_when_the_arrival_record_has_no_count() {
    let dir = TempDir::new().unwrap();
    let events = sample();
    {
        let mut store = SledStore::open(dir.path()).unwrap();
        fill(&mut store, &events[..12]);
        let mut last = vec![b's'];
        last.extend_from_slice(&12u64.to_be_bytes());
        let old = store.raw_tree().unwrap().get(&last).unwrap().unwrap();
        assert_eq!(old.len(), 48, "event key, then the count");
        assert_eq!(old[40..], 12u64.to_be_bytes());
        store.raw_tree().unwrap().insert(&last, &old[..40]).unwrap();
        store.flush().unwrap();
    }
    let mut store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 12);
    assert_eq!(store.last_arrival(), 12);
    assert_eq!(store.since_arrival(0).count(), 12);
    assert!(store.since_arrival(0).all(|r| r.is_ok()));
    assert_eq!(store.insert(&events[12]).unwrap(), Some(13));
    assert_eq!(store.len(), 13);
}

/// The raw `i` record an older version wrote beside each event (the by-id
/// index issue 15 dropped): `i` + event id + hash, empty value.
fn legacy_id_record(e: &VerifiedEvent) -> Vec<u8> {
    let mut k = vec![b'i'];
    k.extend_from_slice(&e.event().id.to_bytes());
    k.extend_from_slice(&e.hash().0);
    k
}

/// The prefix letters of every record in the store's tree, counted.
fn records_by_prefix(store: &SledStore) -> std::collections::BTreeMap<char, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for item in store.raw_tree().unwrap().iter() {
        let (k, _) = item.unwrap();
        *counts.entry(char::from(k[0])).or_insert(0) += 1;
    }
    counts
}

/// An insert writes exactly three records, `e`, `h` and `s`: no by-id (`i`) record.
#[test]
fn sled_insert_writes_event_hash_and_arrival_records_only() {
    let mut store = SledStore::temporary().unwrap();
    let events = sample();
    fill(&mut store, &events[..7]);
    let counts = records_by_prefix(&store);
    assert_eq!(
        counts,
        [('e', 7), ('h', 7), ('s', 7)].into_iter().collect(),
        "{counts:?}"
    );
}

/// A store written by the previous version, with an `i` record per event,
/// opens and answers every read as before; inserts go on without writing
/// `i` records, and the old ones are left in place and never read (even a
/// stale or malformed one).
#[test]
fn sled_store_with_legacy_id_records_opens_and_works() {
    let dir = TempDir::new().unwrap();
    let events = sample();
    let (old, new) = events.split_at(20);
    {
        let mut store = SledStore::open(dir.path()).unwrap();
        fill(&mut store, old);
        let tree = store.raw_tree().unwrap();
        for e in old {
            tree.insert(legacy_id_record(e), &b""[..]).unwrap();
        }
        // An `i` record whose event is not in the store, and a malformed
        // one: neither is read now.
        tree.insert(legacy_id_record(&new[0]), &b""[..]).unwrap();
        let mut malformed = vec![b'i'];
        malformed.extend_from_slice(&old[0].event().id.to_bytes());
        malformed.extend_from_slice(b"not a hash");
        tree.insert(malformed, &b""[..]).unwrap();
        store.flush().unwrap();
    }
    let mut store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 20);
    assert_eq!(store.last_arrival(), 20);
    for e in old {
        assert_eq!(store.get(e.hash()).unwrap().unwrap().bytes(), e.bytes());
        let by_id = store.get_by_id(&e.event().id).unwrap();
        assert_eq!(by_id.len(), 1, "one event per id, not one per record");
        assert_eq!(by_id[0].bytes(), e.bytes());
    }
    assert!(store.get_by_id(&new[0].event().id).unwrap().is_empty());
    assert_eq!(store.insert(&new[0]).unwrap(), Some(21));
    fill(&mut store, &new[1..]);
    assert_eq!(store.get_by_id(&new[0].event().id).unwrap().len(), 1);
    let got: Vec<EventKey> = store
        .keys(Bound::Unbounded, Bound::Unbounded)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, keys_of(&events));
    let bodies: Vec<Vec<u8>> = store
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(|r| r.unwrap().into_bytes())
        .collect();
    let mut by_key = events.clone();
    by_key.sort_by_key(VerifiedEvent::key);
    let want: Vec<Vec<u8>> = by_key.iter().map(|e| e.bytes().to_vec()).collect();
    assert_eq!(bodies, want, "every event's bytes, in key order");
    let arrivals: Vec<u64> = store.since_arrival(0).map(|r| r.unwrap().0).collect();
    assert_eq!(arrivals, (1..=40).collect::<Vec<_>>());
    let (acc, digest) = fresh_fingerprints(&events, &Bound::Unbounded, &Bound::Unbounded);
    assert_eq!(
        store
            .fingerprint(Bound::Unbounded, Bound::Unbounded)
            .unwrap(),
        acc
    );
    assert_eq!(store.log_digest().unwrap(), digest);
    let counts = records_by_prefix(&store);
    assert_eq!(counts.get(&'i'), Some(&22), "old records kept, none added");
    assert_eq!(counts.get(&'e'), Some(&40));
}

/// Garbage under an `e` key is reported as BadEvent by get and range, not a panic.
#[test]
fn sled_corrupt_event_bytes_are_a_bad_event_error() {
    let mut store = SledStore::temporary().unwrap();
    let events = sample();
    fill(&mut store, &events[..5]);
    let victim = &events[2];
    let mut raw_key = vec![b'e'];
    raw_key.extend_from_slice(&victim.key().to_bytes());
    let old = store
        .raw_tree()
        .unwrap()
        .insert(&raw_key, &b"\xa1garbage"[..])
        .unwrap();
    assert_eq!(old.as_deref(), Some(victim.bytes()), "e + EventKey bytes");

    let err = store.get(victim.hash()).unwrap_err();
    assert!(
        matches!(&err, StoreError::BadEvent { hash, .. } if hash == victim.hash()),
        "{err:?}"
    );
    let results: Vec<_> = store.range(Bound::Unbounded, Bound::Unbounded).collect();
    assert_eq!(results.len(), 5);
    let bad: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(bad.len(), 1);
    assert!(matches!(bad[0], Err(StoreError::BadEvent { hash, .. }) if hash == victim.hash()));
    assert!(store
        .since_arrival(0)
        .any(|r| matches!(r, Err(StoreError::BadEvent { .. }))));
    // Keys never read bodies, so they are unaffected.
    assert_eq!(store.keys(Bound::Unbounded, Bound::Unbounded).count(), 5);
    assert!(store
        .keys(Bound::Unbounded, Bound::Unbounded)
        .all(|k| k.is_ok()));

    // A well-formed event stored under another event's key fails its hash check.
    store
        .raw_tree()
        .unwrap()
        .insert(&raw_key, events[3].bytes())
        .unwrap();
    assert!(matches!(
        store.get(victim.hash()),
        Err(StoreError::BadEvent { .. })
    ));
}

/// A long range, over several of the prefetch thread's chunks, comes back
/// whole and in key order, with each bad record reported in its place.
/// (Which side decodes a chunk depends on timing; both sides are compared
/// in `sled_store`'s unit test.)
#[test]
fn sled_long_range_reports_bad_records_in_place_from_every_chunk() {
    let mut store = SledStore::temporary().unwrap();
    let n = PREFETCH_CHUNK * 3 + 10;
    let events: Vec<VerifiedEvent> = (0..n as u64)
        .map(|i| event(1 + (i % 3) as u8, i, u128::from(i), i))
        .collect();
    fill(&mut store, &events);
    let keys = keys_of(&events);
    let whole: Vec<EventKey> = store
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(|r| r.unwrap().key())
        .collect();
    assert_eq!(whole, keys);

    // One victim in each chunk.
    let victims: Vec<usize> = (0..4).map(|c| c * PREFETCH_CHUNK + 3).collect();
    let tree = store.raw_tree().unwrap();
    for &v in &victims {
        let mut raw_key = vec![b'e'];
        raw_key.extend_from_slice(&keys[v].to_bytes());
        tree.insert(&raw_key, &b"\xa1garbage"[..]).unwrap();
    }
    let results: Vec<_> = store.range(Bound::Unbounded, Bound::Unbounded).collect();
    assert_eq!(results.len(), n);
    for (i, r) in results.iter().enumerate() {
        if victims.contains(&i) {
            assert!(
                matches!(r, Err(StoreError::BadEvent { hash, .. }) if *hash == keys[i].hash),
                "record {i}: {r:?}"
            );
        } else {
            assert_eq!(
                r.as_ref().map(VerifiedEvent::key).ok(),
                Some(keys[i]),
                "record {i}"
            );
        }
    }
}

/// A key of the wrong length inside a prefix is a Corrupt error naming it.
#[test]
fn sled_malformed_index_keys_are_corrupt_errors() {
    let mut store = SledStore::temporary().unwrap();
    let events = sample();
    fill(&mut store, &events[..3]);
    let tree = store.raw_tree().unwrap();
    tree.insert(b"eshort", &b""[..]).unwrap();
    tree.insert(b"s\x00\x01", &b""[..]).unwrap();
    let mut hash_key = vec![b'h'];
    hash_key.extend_from_slice(&events[1].hash().0);
    tree.insert(&hash_key, &b"too short"[..]).unwrap();

    let keys: Vec<_> = store.keys(Bound::Unbounded, Bound::Unbounded).collect();
    assert!(
        keys.iter()
            .any(|r| corrupt_named(r, &format!("e/{}", hex::encode("short")))),
        "{keys:?}"
    );
    assert!(store
        .range(Bound::Unbounded, Bound::Unbounded)
        .any(|r| matches!(r, Err(StoreError::Corrupt { .. }))));
    assert!(store.since_arrival(0).any(|r| corrupt_named(&r, "s/0001")));
    assert!(corrupt_named(&store.get(events[1].hash()), "h/"));
}

// ---- sled only: a full disk's leftovers and a held lock ----

/// The newest `snap.*` file sled wrote in `dir`, if any.
fn newest_snapshot(dir: &std::path::Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snap."))
        .collect();
    names.sort();
    names.pop()
}

/// Unfinished snapshot files (`snap.*.generating`), empty or torn, as a
/// full disk leaves them (spacejam/sled#1527), do not stop the store from
/// opening, are removed, and every event is still there.
#[test]
fn sled_open_removes_unfinished_snapshots_left_by_a_full_disk() {
    let dir = TempDir::new().unwrap();
    let events = sample();
    {
        let mut store = SledStore::open(dir.path()).unwrap();
        fill(&mut store, &events[..10]);
        store.flush().unwrap();
    }
    // A second open makes sled write a snapshot of the log so far.
    drop(SledStore::open(dir.path()).unwrap());
    let newest = newest_snapshot(dir.path()).unwrap_or_else(|| "snap.0".into());
    // Both sort after every complete snapshot, so sled would read them first.
    let empty = dir.path().join(format!("{newest}.generating"));
    let torn = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&empty, b"").unwrap();
    std::fs::write(&torn, [0xa5u8; 100]).unwrap();

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.len(), 10);
    for e in &events[..10] {
        assert!(store.contains(e.hash()).unwrap());
    }
    assert!(!empty.exists() && !torn.exists(), "leftovers removed");
}

/// While another handle holds the lock, open reports `Locked` (the one
/// error that suggests another hearth) and removes nothing: the holder may
/// be writing that very snapshot.
#[test]
fn sled_open_of_a_held_store_is_locked_and_touches_nothing() {
    let dir = TempDir::new().unwrap();
    let held = SledStore::open(dir.path()).unwrap();
    let in_progress = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&in_progress, b"").unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked(_)), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    assert!(in_progress.exists(), "a held store's files are not touched");
    drop(held);
}

fn writable_store_needs_no_recovery(mut store: impl EventStore) {
    assert_eq!(store.write_state(), hearth_node::store::WriteState::Ok);
    assert!(!store.recover().unwrap());
}

/// A store that opens is writable, and recovering it is a no-op.
#[test]
fn memory_and_sled_stores_start_writable() {
    writable_store_needs_no_recovery(MemoryStore::new());
    writable_store_needs_no_recovery(SledStore::temporary().unwrap());
    let dir = TempDir::new().unwrap();
    writable_store_needs_no_recovery(SledStore::open(dir.path()).unwrap());
}
