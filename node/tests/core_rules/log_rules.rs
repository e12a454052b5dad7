//! The event log's admission rules (DESIGN.md §4), each rejection showing
//! that the log and the views stay as they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use hearth_node::core::pending::PENDING_PER_AUTHOR_MAX;
use hearth_node::core::views::ListQuery;
use hearth_node::core::{IngestError, Ingested, Input, Output, Source, Verdict};
use hearth_node::store::EventStore;
use hearth_proto::{
    Category, CommunityId, Event, EventId, ExpiryReason, Identity, Level, Payload, PostContent,
    PostCreated,
};

fn listed(node: &hearth_node::core::Node<hearth_node::store::MemoryStore>) -> Vec<String> {
    node.views()
        .market
        .list(&ListQuery::default(), NOW)
        .iter()
        .map(|p| p.content.title.clone())
        .collect()
}

/// A never-vouched author's event is held pending: log and view unchanged.
#[test]
fn non_member_event_is_held_pending_not_logged() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let stranger = key(9);
    let (events, digest) = (node.log().store().len(), node.views().digest());
    let r = node
        .log_mut()
        .append_received(f.post(&stranger, 5, 1, "spam"))
        .unwrap();
    assert!(matches!(r, Ingested::Pending));
    assert_eq!(node.log().store().len(), events);
    assert_eq!(node.views().digest(), digest);
    assert_eq!(node.log().pending_len(), 1);
}

/// A pending event enters the log when its author's admission arrives,
/// whichever comes first.
#[test]
fn pending_event_enters_when_admission_arrives() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.log_mut()
        .append_received(f.post(&alice, 5, 1, "early post"))
        .unwrap();
    assert!(listed(&node).is_empty());
    let r = node
        .log_mut()
        .append_received(f.member_set(&f.anchor, 2, &alice, Level::Member))
        .unwrap();
    match r {
        Ingested::Stored(events) => assert_eq!(events.len(), 2, "admission and the released post"),
        Ingested::Pending => panic!("admission by the anchor must be stored"),
    }
    assert_eq!(listed(&node), vec!["early post"]);
    assert_eq!(node.log().pending_len(), 0);
}

/// A removed member's new event enters the log (the closure never shrinks)
/// but changes no view; their earlier posts leave the view.
#[test]
fn removed_member_event_grows_log_by_one_and_changes_no_view() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 2, &alice, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(f.post(&alice, 3, 1, "before removal"))
        .unwrap();
    assert_eq!(listed(&node), vec!["before removal"]);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 4, &alice, Level::Removed))
        .unwrap();
    assert!(
        listed(&node).is_empty(),
        "removed member's posts leave the view"
    );
    let events = node.log().store().len();
    let membership = node.views().membership.digest();
    let r = node
        .log_mut()
        .append_received(f.post(&alice, 5, 2, "after removal"))
        .unwrap();
    assert!(matches!(r, Ingested::Stored(_)));
    assert_eq!(
        node.log().store().len(),
        events + 1,
        "the log grew by exactly that event"
    );
    assert!(listed(&node).is_empty(), "the shown market is unchanged");
    assert_eq!(node.views().membership.digest(), membership);
}

/// An event of another community is rejected and stored nowhere.
#[test]
fn wrong_community_is_rejected() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let other = Event {
        id: EventId::from_parts(NOW, 5),
        ts: NOW,
        author: f.anchor.node_id(),
        lamport: 3,
        community: CommunityId([7; 32]),
        payload: Payload::PostCreated(PostCreated {
            content: content("x", Category::Info, &[], NOW + DAY_MS).into(),
            client_id: None,
        }),
    }
    .sign(&f.anchor)
    .unwrap();
    let (events, digest) = (node.log().store().len(), node.views().digest());
    let err = node.log_mut().append_received(other).unwrap_err();
    assert!(matches!(err, IngestError::WrongCommunity { .. }), "{err}");
    assert_eq!(node.log().store().len(), events);
    assert_eq!(node.views().digest(), digest);
}

/// The genesis of another community ("Elsewhere", founded by key 4).
fn foreign_genesis(f: &Fixture) -> hearth_proto::VerifiedEvent {
    Event {
        author: key(4).node_id(),
        payload: Payload::Genesis(hearth_proto::Genesis {
            name: "Elsewhere".into(),
            anchors: vec![key(4).node_id()],
        }),
        ..f.genesis.event().clone()
    }
    .sign(&key(4))
    .unwrap()
}

/// Another community's genesis is also a wrong-community event.
#[test]
fn foreign_genesis_is_rejected() {
    let f = Fixture::new();
    let foreign = foreign_genesis(&f);
    let mut node = f.node(&f.anchor);
    let err = node.log_mut().append_received(foreign).unwrap_err();
    assert!(matches!(err, IngestError::WrongCommunity { .. }));
    assert_eq!(node.log().store().len(), 1);
}

/// The same event twice is a duplicate: reported, stored once.
#[test]
fn replayed_event_is_a_duplicate() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let post = f.post(&f.anchor, 2, 1, "once");
    node.log_mut().append_received(post.clone()).unwrap();
    let (events, digest) = (node.log().store().len(), node.views().digest());
    let err = node.log_mut().append_received(post).unwrap_err();
    assert!(matches!(err, IngestError::Duplicate(_)));
    assert_eq!(node.log().store().len(), events);
    assert_eq!(node.views().digest(), digest);
    // A duplicate of a pending event too.
    let stranger = f.post(&key(9), 2, 1, "pending");
    node.log_mut().append_received(stranger.clone()).unwrap();
    assert!(matches!(
        node.log_mut().append_received(stranger),
        Err(IngestError::Duplicate(_))
    ));
}

/// Malformed bytes are refused with the reason; gossip gets `Reject`.
#[test]
fn malformed_bytes_are_rejected_with_reason_and_reject_verdict() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let mut bytes = f.post(&f.anchor, 2, 1, "x").into_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // corrupt the community id: signature no longer matches
    let (events, digest) = (node.log().store().len(), node.views().digest());
    let err = node.receive(&bytes, Source::File).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Invalid(hearth_proto::EventError::BadSignature(_))
        ),
        "{err}"
    );
    node.handle(
        NOW,
        Input::Received {
            bytes: vec![0xff, 0x00],
            source: Source::Peer(key(5).node_id()),
        },
    );
    let verdicts: Vec<_> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Verdict {
                verdict, reason, ..
            } => Some((verdict, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].0, Verdict::Reject);
    assert!(
        verdicts[0].1.as_deref().unwrap_or("").contains("CBOR"),
        "{:?}",
        verdicts[0].1
    );
    assert_eq!(node.log().store().len(), events);
    assert_eq!(node.views().digest(), digest);
}

/// Gossip verdicts: a non-member publishing its own event is `Reject`ed; a
/// third peer relaying it is `Ignore`d; a duplicate is `Ignore`d.
#[test]
fn gossip_verdicts_for_pending_and_duplicates() {
    let f = Fixture::new();
    let stranger = key(9);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let verdict = |node: &mut hearth_node::core::Node<_>, bytes: Vec<u8>, from: &Identity| {
        node.handle(
            NOW,
            Input::Received {
                bytes,
                source: Source::Peer(from.node_id()),
            },
        );
        std::iter::from_fn(|| node.poll_output())
            .find_map(|o| match o {
                Output::Verdict { verdict, .. } => Some(verdict),
                _ => None,
            })
            .unwrap()
    };
    let own = f.post(&stranger, 2, 1, "mine").into_bytes();
    assert_eq!(verdict(&mut node, own, &stranger), Verdict::Reject);
    let relayed = f.post(&stranger, 3, 2, "relayed").into_bytes();
    assert_eq!(verdict(&mut node, relayed, &key(5)), Verdict::Ignore);
    let good = f.post(&f.anchor, 4, 3, "ok").into_bytes();
    assert_eq!(verdict(&mut node, good.clone(), &key(5)), Verdict::Accept);
    assert_eq!(verdict(&mut node, good, &key(5)), Verdict::Ignore);
}

/// One unknown author cannot hold more than its share of the pending set.
#[test]
fn pending_set_is_bounded_per_author() {
    let f = Fixture::new();
    let stranger = key(9);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    for i in 0..PENDING_PER_AUTHOR_MAX as u128 {
        node.log_mut()
            .append_received(f.post(&stranger, 2, i, "flood"))
            .unwrap();
    }
    let err = node
        .log_mut()
        .append_received(f.post(&stranger, 2, 100_000, "one more"))
        .unwrap_err();
    assert!(matches!(err, IngestError::PendingFull(_)), "{err}");
    assert_eq!(node.log().pending_len(), PENDING_PER_AUTHOR_MAX);
}

/// A member's `member.set` does not vouch: only anchors admit.
#[test]
fn member_cannot_admit_others() {
    let f = Fixture::new();
    let alice = key(2);
    let carol = key(3);
    let mut node = f.admitted_node(&alice, Level::Member);
    node.log_mut()
        .append_received(f.member_set(&alice, 2, &carol, Level::Member))
        .unwrap();
    let r = node
        .log_mut()
        .append_received(f.post(&carol, 3, 1, "carol"))
        .unwrap();
    assert!(matches!(r, Ingested::Pending));
    assert_eq!(node.views().membership.level(&carol.node_id()), None);
}

/// An anchor admitted later vouches for keys it set earlier (closure).
#[test]
fn anchor_vouched_later_releases_its_earlier_admissions() {
    let f = Fixture::new();
    let dora = key(4);
    let erin = key(5);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    // Dora (not yet vouched) admits Erin; Erin posts; both wait.
    node.log_mut()
        .append_received(f.member_set(&dora, 2, &erin, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(f.post(&erin, 3, 1, "erin"))
        .unwrap();
    assert_eq!(node.log().pending_len(), 2);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 4, &dora, Level::Anchor))
        .unwrap();
    assert_eq!(node.log().pending_len(), 0);
    // Erin's admission (lamport 2) came before Dora became anchor (lamport 4):
    // Erin is vouched for the log, but ordered replay gives her no level.
    assert!(node.views().membership.is_vouched(&erin.node_id()));
    assert_eq!(node.views().membership.level(&erin.node_id()), None);
    assert!(listed(&node).is_empty());
}

/// A huge received Lamport time is stored but does not drag the clock.
#[test]
fn lamport_bomb_does_not_exhaust_the_clock() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let bomb = f.post(&f.anchor, hearth_proto::LAMPORT_MAX, 1, "bomb");
    node.log_mut().append_received(bomb).unwrap();
    assert!(node.log().clock() < 1 << 25);
    let receipt = node
        .market_post(
            NOW,
            hearth_node::core::Caller::Local,
            hearth_node::core::services::market::PostParams {
                category: Category::Info,
                title: "still works".into(),
                body: String::new(),
                tags: vec![],
                ttl_seconds: None,
                location: None,
                client_id: None,
            },
        )
        .unwrap();
    assert!(receipt.post.lamport < 1 << 25);
}

/// Updates sorting below the `created` lose; the latest update wins; an
/// update by someone else is ignored; no update revives an expired post.
#[test]
fn update_and_expiry_conflict_rules() {
    let f = Fixture::new();
    let alice = key(2);
    let bob = key(3);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    for s in [
        f.member_set(&f.anchor, 1, &alice, Level::Member),
        f.member_set(&f.anchor, 2, &bob, Level::Member),
    ] {
        node.log_mut().append_received(s).unwrap();
    }
    node.log_mut()
        .append_received(f.post(&alice, 10, 1, "created"))
        .unwrap();
    node.log_mut()
        .append_received(f.update(&alice, 5, 1, "older than created"))
        .unwrap();
    assert_eq!(listed(&node), vec!["created"]);
    node.log_mut()
        .append_received(f.update(&alice, 12, 1, "second"))
        .unwrap();
    node.log_mut()
        .append_received(f.update(&alice, 11, 1, "first"))
        .unwrap();
    node.log_mut()
        .append_received(f.update(&bob, 20, 1, "hijack"))
        .unwrap();
    assert_eq!(listed(&node), vec!["second"]);
    // Bob's expiry for fulfilled does not count; stale by a member neither.
    node.log_mut()
        .append_received(f.expire(&bob, 21, 1, ExpiryReason::Fulfilled))
        .unwrap();
    node.log_mut()
        .append_received(f.expire(&bob, 22, 1, ExpiryReason::Stale))
        .unwrap();
    assert_eq!(listed(&node), vec!["second"]);
    // Bob becomes trusted: his stale expiry now counts.
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 23, &bob, Level::Trusted))
        .unwrap();
    assert!(listed(&node).is_empty());
    node.log_mut()
        .append_received(f.update(&alice, 30, 1, "revive?"))
        .unwrap();
    assert!(
        listed(&node).is_empty(),
        "no update revives an expired post"
    );
}

/// Nobody takes over another's post by reusing its id.
#[test]
fn same_id_by_another_author_is_another_post() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 1, &alice, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(f.post(&alice, 2, 1, "alice's"))
        .unwrap();
    node.log_mut()
        .append_received(f.post(&f.anchor, 3, 1, "anchor's"))
        .unwrap();
    node.log_mut()
        .append_received(f.expire(&f.anchor, 4, 1, ExpiryReason::Withdrawn))
        .unwrap();
    assert_eq!(listed(&node), vec!["alice's"]);
}

/// An unknown event type with a valid envelope is stored and ignored.
#[test]
fn unknown_type_is_stored_and_ignored_by_views() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let digest = node.views().digest();
    let e = f.event(
        &f.anchor,
        2,
        1,
        Payload::Unknown {
            type_name: "market.post.boosted".into(),
            data: hearth_proto::cbor::Value::map([("x", hearth_proto::cbor::Value::Uint(1))]),
        },
    );
    assert!(matches!(
        node.log_mut().append_received(e),
        Ok(Ingested::Stored(_))
    ));
    assert_eq!(node.views().digest(), digest);
}

/// Posts past `expires_at` leave `list` before any stale event exists.
#[test]
fn post_past_ttl_is_not_listed() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let c = PostContent {
        expires_at: NOW + 10,
        ..content("soon", Category::Request, &["x"], 0)
    };
    node.log_mut()
        .append_received(f.post_with(&f.anchor, 2, 1, c))
        .unwrap();
    assert_eq!(
        node.views().market.list(&ListQuery::default(), NOW).len(),
        1
    );
    assert_eq!(
        node.views()
            .market
            .list(&ListQuery::default(), NOW + 10)
            .len(),
        0
    );
}

/// Opening a store that holds another community is refused and names both
/// communities; the store keeps its own community.
#[test]
fn opening_another_communitys_store_is_refused() {
    use hearth_node::core::log::{EventLog, OpenError};
    use hearth_node::store::MemoryStore;
    let f = Fixture::new();
    let foreign = foreign_genesis(&f);
    let elsewhere = foreign.founded_community().unwrap();
    assert_eq!(
        EventLog::stored_community(&MemoryStore::new()).unwrap(),
        None
    );
    let (log, _) = EventLog::open(MemoryStore::new(), &foreign).unwrap();
    assert_eq!(log.community(), elsewhere);
    let store = log.into_store().unwrap();
    assert_eq!(EventLog::stored_community(&store).unwrap(), Some(elsewhere));
    match EventLog::open(store, &f.genesis) {
        Err(OpenError::OtherCommunity { stored, wanted }) => {
            assert_eq!((stored, wanted), (elsewhere, f.community));
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("opened another community's store"),
    }
}

/// A replay counts every stored event once; a snapshot that covers more
/// than the store holds (copied from a fuller store) is not used: the log
/// replays everything and shows what the store holds.
#[test]
fn replay_counts_events_and_ignores_a_snapshot_ahead_of_the_store() {
    use hearth_node::core::log::EventLog;
    use hearth_node::store::MemoryStore;
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.set_member(NOW, alice.node_id(), Level::Member)
        .unwrap();
    for i in 0..5u128 {
        node.log_mut()
            .append_received(f.post(&alice, 10 + i as u64, i, &format!("post {i}")))
            .unwrap();
    }
    let stored = node.log().store().len();
    assert!(node.log().clock() >= 14, "the clock saw Lamport 14");
    let report = node.log_mut().replay_all().unwrap();
    assert_eq!(report.replayed, stored);
    assert!(node.log().clock() >= 14, "replay restores the clock");
    node.log_mut().snapshot().unwrap();
    let full = node.into_store().unwrap();
    let snapshot = full.get_meta("snapshot").unwrap().expect("a snapshot");

    // A store with the genesis only, and the fuller store's snapshot.
    let (log, _) = EventLog::open(MemoryStore::new(), &f.genesis).unwrap();
    let mut small = log.into_store().unwrap();
    small.put_meta("snapshot", &snapshot).unwrap();
    let (log, report) = EventLog::open(small, &f.genesis).unwrap();
    assert_eq!(report.snapshot_arrival, None, "the snapshot is ahead");
    assert_eq!(report.replayed, 1);
    assert_eq!(log.views().market.post_count(), 0);
}

/// A store refusing writes becomes the refusal callers see: `storage_full`
/// for a full disk, `unavailable` for a read-only one, nothing for other
/// faults (the service maps those).
#[test]
fn store_refusals_map_to_their_wire_codes() {
    use hearth_node::core::bus::ErrorCode;
    use hearth_node::core::log::AppendError;
    use hearth_node::store::StoreError;
    let full = AppendError::Store(StoreError::Full("disk".into()));
    assert_eq!(
        full.storage_refusal().map(|e| e.code),
        Some(ErrorCode::StorageFull)
    );
    let read_only = AppendError::Store(StoreError::ReadOnly("dir".into()));
    assert_eq!(
        read_only.storage_refusal().map(|e| e.code),
        Some(ErrorCode::Unavailable)
    );
    assert!(AppendError::Store(StoreError::Io("x".into()))
        .storage_refusal()
        .is_none());
    assert!(AppendError::ClockExhausted.storage_refusal().is_none());
}

// ------------------------------------------------------------ durability

/// A node over a store that counts its flushes, with `bob` admitted.
fn counting_node() -> (
    hearth_node::core::Node<crate::common::fillable_store::FillableStore>,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let f = Fixture::new();
    let (store, _full) = crate::common::fillable_store::FillableStore::new();
    let flushes = store.flushes.clone();
    let mut node = f.node_on(&f.anchor, store);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 1, &key(2), Level::Member))
        .unwrap();
    node.log_mut().flush().unwrap();
    (node, flushes)
}

fn flushed(flushes: &std::sync::atomic::AtomicU64) -> u64 {
    flushes.load(std::sync::atomic::Ordering::SeqCst)
}

/// Received events are made durable in batches: one flush per
/// `FLUSH_BATCH_EVENTS` received, a tick's flush only when something is
/// unflushed, and a local post flushed before it is acknowledged.
#[test]
fn received_events_are_flushed_in_batches_and_a_local_post_at_once() {
    use hearth_node::core::log::FLUSH_BATCH_EVENTS;
    let f = Fixture::new();
    let (mut node, flushes) = counting_node();
    let base = flushed(&flushes);
    let bob = key(2);
    for i in 0..FLUSH_BATCH_EVENTS as u64 - 1 {
        node.log_mut()
            .append_received(f.post(&bob, 10 + i, 10 + u128::from(i), "Ladder"))
            .unwrap();
    }
    assert_eq!(flushed(&flushes), base, "one short of a batch: no flush");
    node.log_mut()
        .append_received(f.post(&bob, 5, 5, "the batch's last"))
        .unwrap();
    assert_eq!(flushed(&flushes), base + 1, "a full batch is flushed");
    node.log_mut().flush().unwrap();
    assert_eq!(flushed(&flushes), base + 1, "nothing unflushed: no flush");
    node.log_mut()
        .append_received(f.post(&bob, 6, 6, "one more"))
        .unwrap();
    node.log_mut().flush().unwrap();
    assert_eq!(flushed(&flushes), base + 2, "a tick flushes what is left");
    node.market_post(
        NOW,
        hearth_node::core::Caller::Local,
        offer_params("mine", String::new()),
    )
    .unwrap();
    assert_eq!(
        flushed(&flushes),
        base + 3,
        "a local post is flushed at once"
    );
}

/// Pending events an admission releases count towards the flush batch
/// like any other received event.
#[test]
fn released_pending_events_count_towards_the_flush_batch() {
    use hearth_node::core::log::FLUSH_BATCH_EVENTS;
    let f = Fixture::new();
    let (mut node, flushes) = counting_node();
    let base = flushed(&flushes);
    let (bob, carol) = (key(2), key(3));
    let held = 199u64;
    // The batch less the admission and carol's held posts.
    for i in 0..FLUSH_BATCH_EVENTS as u64 - held - 1 {
        node.log_mut()
            .append_received(f.post(&bob, 10 + i, 10 + u128::from(i), "Ladder"))
            .unwrap();
    }
    for i in 0..held {
        let r = node
            .log_mut()
            .append_received(f.post(&carol, 20_000 + i, 50_000 + u128::from(i), "early"))
            .unwrap();
        assert!(matches!(r, Ingested::Pending));
    }
    assert_eq!(flushed(&flushes), base);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 2, &carol, Level::Member))
        .unwrap();
    assert_eq!(
        flushed(&flushes),
        base + 1,
        "admission and released posts fill the batch"
    );
}

// ------------------------------------------------------------ a full disk

/// Without a real disk: a store that refuses writes makes `market.post`
/// answer `storage_full` with the view unchanged, a received event is
/// ignored (not rejected) and not stored, a snapshot is skipped without an
/// error; once the store recovers, posts and received events go in again
/// and the views equal a full replay of the store.
#[test]
fn refused_writes_change_no_view_and_resume_after_recovery() {
    let f = Fixture::new();
    let (store, full) = crate::common::fillable_store::FillableStore::new();
    let mut node = f.node_on(&f.anchor, store);
    node.market_post(
        NOW,
        hearth_node::core::Caller::Local,
        offer_params("first", String::new()),
    )
    .unwrap();
    let events = node.log().store().len();

    full.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = node
        .market_post(
            NOW,
            hearth_node::core::Caller::Local,
            offer_params("refused", String::new()),
        )
        .unwrap_err();
    assert_eq!(err.code, hearth_node::core::ErrorCode::StorageFull, "{err}");
    assert_eq!(titles(&node, NOW), vec!["first".to_owned()]);
    assert_eq!(node.log().store().len(), events);
    assert_eq!(
        node.log().write_state(),
        hearth_node::store::WriteState::Full
    );
    let remote = node
        .market_post(
            NOW,
            hearth_node::core::Caller::Remote(key(8).node_id()),
            offer_params("remote", String::new()),
        )
        .unwrap_err();
    assert_eq!(
        remote.code,
        hearth_node::core::ErrorCode::Unauthorized,
        "storage_full is local only: remote callers cannot write at all"
    );

    let member = key(9);
    let admission = f.member_set(&f.anchor, 5, &member, Level::Member);
    let peer = key(8).node_id();
    node.handle(
        NOW,
        hearth_node::core::Input::Received {
            bytes: admission.bytes().to_vec(),
            source: hearth_node::core::Source::Peer(peer),
        },
    );
    let verdict = std::iter::from_fn(|| node.poll_output()).find_map(|o| match o {
        hearth_node::core::Output::Verdict { verdict, .. } => Some(verdict),
        _ => None,
    });
    assert_eq!(verdict, Some(hearth_node::core::Verdict::Ignore));
    assert!(!node.log().store().contains(admission.hash()).unwrap());
    assert!(
        node.shutdown().is_ok(),
        "a skipped snapshot is not an error"
    );

    full.store(false, std::sync::atomic::Ordering::SeqCst);
    node.market_post(
        NOW,
        hearth_node::core::Caller::Local,
        offer_params("after", String::new()),
    )
    .expect("writes resume once the store recovers");
    assert_eq!(node.log().write_state(), hearth_node::store::WriteState::Ok);
    assert!(node
        .receive(admission.bytes(), hearth_node::core::Source::Peer(peer))
        .is_ok());
    assert_eq!(
        titles(&node, NOW),
        vec!["after".to_owned(), "first".to_owned()]
    );
    let digest = node.views().digest();
    node.log_mut().replay_all().unwrap();
    assert_eq!(node.views().digest(), digest, "views equal a full replay");
}

/// The log says which events it holds pending, and for how many arrivals
/// its last view snapshot is behind the store.
#[test]
fn pending_and_arrivals_since_the_snapshot_are_reported() {
    let f = Fixture::new();
    let (bob, carol) = (key(2), key(3));
    let mut node = f.admitted_node(&bob, Level::Member);
    node.log_mut().snapshot().unwrap();
    assert_eq!(node.log().arrivals_since_snapshot(), 0);
    let early = f.post(&carol, 30, 30, "early");
    node.log_mut().append_received(early.clone()).unwrap();
    assert!(node.log().is_pending(early.hash()));
    let ladder = f.post(&bob, 3, 3, "ladder");
    assert!(!node.log().is_pending(ladder.hash()), "never seen");
    node.log_mut().append_received(ladder).unwrap();
    assert_eq!(
        node.log().arrivals_since_snapshot(),
        1,
        "pending is not stored"
    );
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 4, &carol, Level::Member))
        .unwrap();
    assert!(!node.log().is_pending(early.hash()), "released");
    assert_eq!(node.log().arrivals_since_snapshot(), 3);
    node.log_mut().snapshot().unwrap();
    assert_eq!(node.log().arrivals_since_snapshot(), 0);
}

/// A running node takes no view snapshot by default (restoring one is
/// slower than replaying), and takes one on a tick once
/// `snapshot_every_events` arrivals are past the last when it is set.
#[test]
fn periodic_snapshots_are_off_by_default_and_follow_the_setting() {
    let f = Fixture::new();
    let bob = key(2);
    let every = |n: u64| hearth_node::core::Config {
        snapshot_every_events: n,
        ..hearth_node::core::Config::default()
    };
    for (config, expect_snapshot) in [
        (hearth_node::core::Config::default(), false),
        (every(4), true),
    ] {
        let mut node = hearth_node::core::Node::new(
            f.anchor.clone(),
            &f.genesis,
            hearth_node::store::MemoryStore::new(),
            config,
            7,
        )
        .unwrap();
        node.log_mut()
            .append_received(f.member_set(&f.anchor, 1, &bob, Level::Member))
            .unwrap();
        node.log_mut()
            .append_received(f.post(&bob, 2, 2, "one"))
            .unwrap();
        node.handle(NOW, Input::Tick);
        // The genesis, the admission and one post.
        assert_eq!(node.log().arrivals_since_snapshot(), 3, "below the setting");
        node.log_mut()
            .append_received(f.post(&bob, 3, 3, "two"))
            .unwrap();
        node.handle(NOW + 1, Input::Tick);
        let left = node.log().arrivals_since_snapshot();
        if expect_snapshot {
            assert_eq!(left, 0, "the fourth arrival reached the setting");
        } else {
            assert_eq!(left, 4, "no periodic snapshot by default");
        }
    }
}

/// A snapshot the store refuses (full, read-only) is skipped without an
/// error, but a store fault while writing it is reported: only the first
/// is a condition the node waits out.
#[test]
fn a_snapshot_store_fault_is_an_error_unlike_a_refusal() {
    let f = Fixture::new();
    let (store, _full) = crate::common::fillable_store::FillableStore::new();
    let broken = store.meta_broken.clone();
    let mut node = f.node_on(&f.anchor, store);
    node.log_mut().snapshot().unwrap();
    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = node.log_mut().snapshot().unwrap_err();
    assert!(err.to_string().contains("device error"), "{err}");
}

/// A `member.set` by a plain member vouches for no one: the key it names
/// stays a stranger, and that key's events are held pending (before and
/// after the set), not stored. Only an anchor's admission releases them.
#[test]
fn a_plain_members_admission_vouches_for_no_one() {
    let f = Fixture::new();
    let (bob, carol) = (key(2), key(3));
    let mut node = f.admitted_node(&bob, Level::Member);
    let early = f.post(&carol, 3, 3, "before bob's set");
    let r = node.log_mut().append_received(early.clone()).unwrap();
    assert!(matches!(r, Ingested::Pending), "{r:?}");
    node.log_mut()
        .append_received(f.member_set(&bob, 4, &carol, Level::Member))
        .unwrap();
    assert!(
        node.log().is_pending(early.hash()),
        "bob's set released nothing"
    );
    // A new anchor vouches for its own earlier admissions, not bob's.
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 5, &key(4), Level::Anchor))
        .unwrap();
    assert!(node.log().is_pending(early.hash()), "nor did a new anchor");
    let later = f.post(&carol, 6, 6, "after bob's set");
    let r = node.log_mut().append_received(later.clone()).unwrap();
    assert!(matches!(r, Ingested::Pending), "{r:?}");
    for p in [&early, &later] {
        assert!(!node.log().store().contains(p.hash()).unwrap());
    }
    assert_eq!(node.views().membership.level(&carol.node_id()), None);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 7, &carol, Level::Member))
        .unwrap();
    for p in [&early, &later] {
        assert!(node.log().store().contains(p.hash()).unwrap(), "released");
    }
}
