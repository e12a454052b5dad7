//! Order independence (DESIGN.md §4): the same set of events, in any order,
//! gives the same log and the same views; incremental apply equals full
//! replay and snapshot/restore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use crate::common::*;
use hearth_node::core::Node;
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::{
    Category, Event, EventId, ExpiryReason, Level, MemberProfile, Payload, PostCreated,
    VerifiedEvent,
};
use proptest::prelude::*;

/// A pool of events touching every rule: admissions, promotions and a
/// removal, an anchor added by an anchor, posts with shared ids, updates
/// before and after their post, author and stale expiries, a non-member.
fn pool() -> &'static (Fixture, Vec<VerifiedEvent>) {
    static POOL: OnceLock<(Fixture, Vec<VerifiedEvent>)> = OnceLock::new();
    POOL.get_or_init(|| {
        let f = Fixture::new();
        let a = &f.anchor;
        let (alice, bob, carol, dora, stranger) = (key(2), key(3), key(4), key(5), key(9));
        let mut v = vec![
            f.member_set(a, 1, &alice, Level::Member),
            f.member_set(a, 2, &bob, Level::Member),
            f.member_set(a, 3, &dora, Level::Anchor),
            f.member_set(&dora, 4, &carol, Level::Member),
            f.member_set(a, 20, &bob, Level::Trusted),
            f.member_set(a, 25, &alice, Level::Removed),
            f.member_set(a, 26, &alice, Level::Member),
            f.member_set(&dora, 30, &carol, Level::Removed),
        ];
        for (i, who) in [&alice, &bob, &carol, &dora, &stranger]
            .into_iter()
            .enumerate()
        {
            for j in 0..4u128 {
                let n = (i as u128) * 10 + j;
                let cat = Category::ALL[(n % 4) as usize];
                let expires = if j == 3 { NOW - 1 } else { NOW + DAY_MS };
                v.push(f.post_with(
                    who,
                    5 + n as u64,
                    n,
                    content(&format!("p{n}"), cat, &["a", "b"], expires),
                ));
            }
        }
        // A shared id: the anchor reuses alice's id 0.
        v.push(f.post(a, 9, 0, "anchor's id 0"));
        v.push(f.update(&alice, 12, 1, "alice 1 v2"));
        v.push(f.update(&alice, 3, 2, "below its created"));
        v.push(f.update(&bob, 13, 1, "bob hijacks alice 1"));
        v.push(f.expire(&alice, 14, 0, ExpiryReason::Fulfilled));
        v.push(f.expire(&bob, 15, 13, ExpiryReason::Stale)); // bob's own? no: 13 is bob's post 3
        v.push(f.expire(&bob, 16, 2, ExpiryReason::Stale)); // counts once bob is trusted
        v.push(f.expire(&carol, 17, 20, ExpiryReason::Withdrawn));
        v.push(f.expire(a, 18, 31, ExpiryReason::Stale));
        v.push(f.expire(&stranger, 19, 41, ExpiryReason::Fulfilled));
        (f, v)
    })
}

/// A pool for the rules of issue 10: settings by anchors (one removed
/// later, so a late removal changes which settings count) and by
/// non-anchors, profiles, `moderated` and `stale` expiries by members of
/// every level, posts asking never to expire (so the cap decides), and a
/// flood past a small per-author bound.
fn pool10() -> &'static (Fixture, Vec<VerifiedEvent>) {
    static POOL: OnceLock<(Fixture, Vec<VerifiedEvent>)> = OnceLock::new();
    POOL.get_or_init(|| {
        let f = Fixture::new();
        let a = &f.anchor;
        let (alice, bob, dora, stranger) = (key(2), key(3), key(5), key(9));
        let profile = |n: &str| Payload::Profile(MemberProfile { name: n.into() });
        let mut v = vec![
            f.member_set(a, 1, &alice, Level::Member),
            f.member_set(a, 2, &bob, Level::Member),
            f.member_set(a, 3, &dora, Level::Anchor),
            f.member_set(a, 20, &bob, Level::Trusted),
            f.member_set(a, 40, &dora, Level::Removed),
            f.event(&dora, 10, 900, settings("Dora's street", 3600, 3)),
            f.event(a, 30, 901, settings("Lindenhof", 7200, 4)),
            f.event(&bob, 35, 902, settings("Bob's", 60, 1)),
            // After dora's removal: counts only while the removal is missing.
            f.event(&dora, 50, 903, settings("Dora's coup", 60, 2)),
            f.event(&alice, 5, 904, profile("Alice")),
            f.event(&alice, 8, 905, profile("Alice B")),
            f.event(&bob, 6, 906, profile("Bob")),
            f.event(&stranger, 7, 907, profile("Stranger")),
            f.event(&dora, 45, 908, profile("Dora")),
        ];
        // Alice floods past the bound, asking never to expire; bob posts a few.
        for i in 0..8u128 {
            let ts = NOW + (i as u64) * 1000;
            v.push(
                Event {
                    id: EventId::from_parts(NOW, 100 + i),
                    ts,
                    author: alice.node_id(),
                    lamport: 11 + i as u64,
                    community: f.community,
                    payload: Payload::PostCreated(PostCreated {
                        content: content(&format!("a{i}"), Category::Offer, &["x"], u64::MAX)
                            .into(),
                        client_id: None,
                    }),
                }
                .sign(&alice)
                .unwrap(),
            );
        }
        for i in 0..3u128 {
            v.push(f.post(&bob, 21 + i as u64, 200 + i, &format!("b{i}")));
        }
        v.push(f.update(&alice, 33, 107, "a7 v2"));
        v.push(f.expire(&bob, 31, 107, ExpiryReason::Moderated)); // bob trusted: counts
        v.push(f.expire(&alice, 32, 200, ExpiryReason::Moderated)); // alice plain: ignored
        v.push(f.expire(&bob, 19, 105, ExpiryReason::Stale)); // counts: bob trusted now
        v.push(f.expire(&alice, 34, 106, ExpiryReason::Fulfilled));
        v.push(f.expire(&dora, 46, 201, ExpiryReason::Moderated)); // dora removed: ignored
        (f, v)
    })
}

fn node_from(events: &[VerifiedEvent]) -> Node<MemoryStore> {
    let (f, _) = pool();
    let mut node = f.node(&key(50));
    for e in events {
        let _ = node.log_mut().append_received(e.clone());
    }
    node
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any permutation of the set gives the same log size and view digest.
    #[test]
    fn any_permutation_gives_the_same_views(perm in Just((0..pool().1.len()).collect::<Vec<_>>()).prop_shuffle()) {
        let (_, events) = pool();
        let reference = node_from(events);
        let shuffled: Vec<VerifiedEvent> = perm.iter().map(|i| events[*i].clone()).collect();
        let node = node_from(&shuffled);
        prop_assert_eq!(node.log().store().len(), reference.log().store().len());
        prop_assert_eq!(node.log().pending_len(), reference.log().pending_len());
        prop_assert_eq!(node.views().digest(), reference.views().digest());
    }

    /// Any subset, applied incrementally in any order, equals a full replay
    /// of the stored log and a snapshot/restore of it.
    #[test]
    fn incremental_apply_equals_full_replay(
        perm in Just((0..pool().1.len()).collect::<Vec<_>>()).prop_shuffle(),
        keep in 1usize..60,
    ) {
        let (f, events) = pool();
        let chosen: Vec<VerifiedEvent> = perm.iter().take(keep).map(|i| events[*i].clone()).collect();
        let mut node = node_from(&chosen);
        let incremental = node.views().digest();
        node.shutdown().unwrap();
        let store = node.into_store().unwrap();
        let restored = Node::new(key(50), &f.genesis, store.clone(), Default::default(), 1).unwrap();
        prop_assert_eq!(restored.views().digest(), incremental);
        let mut replayed = Node::new(key(50), &f.genesis, store, Default::default(), 1).unwrap();
        replayed.log_mut().replay_all().unwrap();
        prop_assert_eq!(replayed.views().digest(), incremental);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With settings, profiles, moderated and stale expiries and a flood,
    /// any permutation of the set gives the same log and view digest.
    #[test]
    fn issue10_rules_give_the_same_views_in_any_order(perm in Just((0..pool10().1.len()).collect::<Vec<_>>()).prop_shuffle()) {
        let (f, events) = pool10();
        let reference = node_from10(f, events);
        let shuffled: Vec<VerifiedEvent> = perm.iter().map(|i| events[*i].clone()).collect();
        let node = node_from10(f, &shuffled);
        prop_assert_eq!(node.log().store().len(), reference.log().store().len());
        prop_assert_eq!(node.views().digest(), reference.views().digest());
    }

    /// Any subset of the issue-10 pool, applied in any order, equals a full
    /// replay and a snapshot/restore of its log.
    #[test]
    fn issue10_incremental_apply_equals_replay_and_restore(
        perm in Just((0..pool10().1.len()).collect::<Vec<_>>()).prop_shuffle(),
        keep in 1usize..40,
    ) {
        let (f, events) = pool10();
        let chosen: Vec<VerifiedEvent> = perm.iter().take(keep).map(|i| events[*i].clone()).collect();
        let mut node = node_from10(f, &chosen);
        let incremental = node.views().digest();
        node.shutdown().unwrap();
        let store = node.into_store().unwrap();
        let restored = Node::new(key(50), &f.genesis, store.clone(), Default::default(), 1).unwrap();
        prop_assert_eq!(restored.views().digest(), incremental);
        let mut replayed = Node::new(key(50), &f.genesis, store, Default::default(), 1).unwrap();
        replayed.log_mut().replay_all().unwrap();
        prop_assert_eq!(replayed.views().digest(), incremental);
    }
}

fn node_from10(f: &Fixture, events: &[VerifiedEvent]) -> Node<MemoryStore> {
    let mut node = f.node(&key(50));
    for e in events {
        let _ = node.log_mut().append_received(e.clone());
    }
    node
}

/// Sanity of the issue-10 pool: the final state is the one the rules say
/// (anchor's settings, names of active members, the bound, the cap,
/// moderation by the trusted only).
#[test]
fn issue10_pool_ends_in_the_state_the_rules_say() {
    use hearth_node::core::views::PostKey;
    let (f, events) = pool10();
    let node = node_from10(f, events);
    let m = &node.views().membership;
    assert_eq!(m.community_name(), "Lindenhof");
    assert_eq!(m.settings().posts_per_author_max, 4);
    assert_eq!(m.display_name(&key(2).node_id()), Some("Alice B"));
    assert_eq!(m.display_name(&key(5).node_id()), None, "dora removed");
    assert_eq!(m.display_name(&key(9).node_id()), None, "never admitted");
    let market = &node.views().market;
    let post = |who: u8, id: u128| {
        market
            .get(&PostKey {
                author: key(who).node_id(),
                id: EventId::from_parts(NOW, id),
            })
            .unwrap()
    };
    // a7 moderated by bob, a6 fulfilled, a5 stale: a4..a1 are the newest 4.
    assert!(post(2, 107).expired.is_some());
    assert!(!post(2, 104).over_limit && !post(2, 101).over_limit);
    assert!(post(2, 100).over_limit);
    assert_eq!(post(2, 104).expires_at, NOW + 4000 + 7_200_000, "capped");
    assert!(
        post(3, 200).expired.is_none(),
        "a plain member's moderation"
    );
    assert!(
        post(3, 201).expired.is_none(),
        "a removed anchor's moderation"
    );
}

/// The checker can fail: different sets give different digests.
#[test]
fn digest_distinguishes_different_sets() {
    let (_, events) = pool();
    let all = node_from(events);
    let fewer = node_from(&events[..events.len() - 3]);
    assert_ne!(all.views().digest(), fewer.views().digest());
}

/// Sanity of the pool: the order-dependent cases really occur.
#[test]
fn pool_exercises_removal_trust_and_pending() {
    let (_, events) = pool();
    let node = node_from(events);
    let m = &node.views().membership;
    assert_eq!(m.level(&key(3).node_id()), Some(Level::Trusted));
    assert_eq!(m.level(&key(4).node_id()), Some(Level::Removed));
    assert_eq!(m.level(&key(2).node_id()), Some(Level::Member));
    assert!(node.log().pending_len() > 0, "the stranger's events wait");
    assert!(node.log().store().len() > 20);
}

/// A level change says what it changes for the views: activity (own posts
/// show or hide) and trust (stale marks count or not), in order or late.
#[test]
fn a_level_change_names_only_what_it_changes() {
    use hearth_node::core::views::MembershipView;
    let f = Fixture::new();
    let a = &f.anchor;
    let bob = key(3);
    let id = bob.node_id();
    let mut m = MembershipView::default();
    m.apply(&f.genesis);
    let admit = m.apply(&f.member_set(a, 1, &bob, Level::Member));
    assert!(admit.active_changed.contains(&id) && admit.trusted_changed.is_empty());
    let promote = m.apply(&f.member_set(a, 2, &bob, Level::Trusted));
    assert!(promote.active_changed.is_empty() && promote.trusted_changed.contains(&id));
    let to_anchor = m.apply(&f.member_set(a, 3, &bob, Level::Anchor));
    assert!(to_anchor.active_changed.is_empty() && to_anchor.trusted_changed.is_empty());
    let remove = m.apply(&f.member_set(a, 5, &bob, Level::Removed));
    assert!(remove.active_changed.contains(&id) && remove.trusted_changed.contains(&id));
    // A late set (lamport 4, before the removal) changes nothing shown.
    let late = m.apply(&f.member_set(a, 4, &bob, Level::Member));
    assert!(late.active_changed.is_empty() && late.trusted_changed.is_empty());
    assert_eq!(m.level(&id), Some(Level::Removed));
}

/// Settings say the market must re-derive every post only when a limit it
/// derives from moves (the TTL cap or the per-author bound), in order or
/// through a replay: a rename moves neither.
#[test]
fn only_new_limits_ask_the_market_to_re_derive() {
    use hearth_node::core::views::MembershipView;
    let f = Fixture::new();
    let a = &f.anchor;
    let settings = |lamport, id, name: &str, ttl: u64, max: u64| {
        f.event(a, lamport, id, settings(name, ttl, max))
    };
    let mut m = MembershipView::default();
    m.apply(&f.genesis);
    assert!(m.apply(&settings(2, 100, "First", 3_600, 5)).limits_changed);
    let rename = m.apply(&settings(3, 101, "Second", 3_600, 5));
    assert!(!rename.limits_changed, "a rename alone");
    assert_eq!(m.community_name(), "Second");
    assert!(m.apply(&settings(4, 102, "Second", 600, 5)).limits_changed);
    assert!(m.apply(&settings(5, 103, "Second", 600, 3)).limits_changed);
    // Through a replay (a member set that sorts before the settings): the
    // limits in force come out the same, so nothing to re-derive.
    let late = m.apply(&f.member_set(a, 1, &key(3), Level::Member));
    assert!(!late.limits_changed);
    // A late settings event that is not the latest moves nothing either.
    assert!(!m.apply(&settings(3, 104, "Old", 60, 1)).limits_changed);
    assert_eq!(m.settings().post_ttl_max_s, 600);
}

/// Member sets that exercise every case of a late set: admissions,
/// promotions, a removal and re-admission, an anchor made by an anchor
/// (who set someone before being made one), a removed anchor, the genesis
/// anchor demoting itself (its later sets stop counting), and a plain
/// member's set (which counts nowhere).
fn set_pool() -> &'static (Fixture, Vec<VerifiedEvent>) {
    static POOL: OnceLock<(Fixture, Vec<VerifiedEvent>)> = OnceLock::new();
    POOL.get_or_init(|| {
        let f = Fixture::new();
        let a = &f.anchor;
        let [alice, bob, carol, dora, eve, frank, gus, hank, ivy] =
            [2, 3, 4, 5, 6, 7, 8, 9, 10].map(key);
        let v = vec![
            f.member_set(a, 1, &alice, Level::Member),
            f.member_set(&dora, 2, &ivy, Level::Member),
            f.member_set(a, 3, &bob, Level::Member),
            f.member_set(a, 4, &dora, Level::Anchor),
            f.member_set(a, 5, &carol, Level::Trusted),
            f.member_set(&dora, 6, &eve, Level::Member),
            f.member_set(a, 7, &bob, Level::Trusted),
            f.member_set(a, 8, &alice, Level::Removed),
            f.member_set(a, 9, &alice, Level::Member),
            f.member_set(&dora, 10, &frank, Level::Member),
            f.member_set(a, 11, &dora, Level::Removed),
            f.member_set(&dora, 12, &ivy, Level::Trusted),
            f.member_set(a, 13, a, Level::Trusted),
            f.member_set(a, 14, &gus, Level::Member),
            f.member_set(&bob, 15, &hank, Level::Member),
            f.member_set(a, 16, &eve, Level::Trusted),
        ];
        (f, v)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Member sets applied one at a time in any order give, after each,
    /// the levels and digest of a full replay of the sets so far, and a
    /// change that names exactly the keys whose level, activity or trust
    /// moved (a late set is often decided without a replay).
    #[test]
    fn late_member_sets_give_the_replayed_levels_and_changes(
        perm in Just((0..set_pool().1.len()).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        use hearth_node::core::views::MembershipView;
        let (f, sets) = set_pool();
        let mut view = MembershipView::default();
        view.apply(&f.genesis);
        for (n, i) in perm.iter().enumerate() {
            let before = view.levels().clone();
            let change = view.apply(&sets[*i]);
            // The reference: the sets first, then the genesis, which
            // replays them all in key order.
            let mut replayed = MembershipView::default();
            for j in &perm[..=n] {
                replayed.apply(&sets[*j]);
            }
            replayed.apply(&f.genesis);
            prop_assert_eq!(view.levels(), replayed.levels());
            prop_assert_eq!(view.digest(), replayed.digest());
            let moved = |test: fn(Level) -> bool| -> std::collections::BTreeSet<_> {
                before
                    .keys()
                    .chain(view.levels().keys())
                    .filter(|k| {
                        before.get(*k).is_some_and(|l| test(*l))
                            != view.level(k).is_some_and(test)
                    })
                    .copied()
                    .collect()
            };
            let levels_moved: std::collections::BTreeSet<_> = before
                .keys()
                .chain(view.levels().keys())
                .filter(|k| before.get(*k).copied() != view.level(k))
                .copied()
                .collect();
            prop_assert_eq!(&change.levels_changed, &levels_moved);
            prop_assert_eq!(&change.active_changed, &moved(Level::is_active));
            prop_assert_eq!(&change.trusted_changed, &moved(Level::is_trusted));
        }
    }
}

/// A genesis anchor that demoted itself: its set after the demotion
/// counts in no order of arrival, even when the demotion is the only set
/// before it (a late set whose author has a set of their own before it
/// is decided by a replay, not by the author's genesis rank).
#[test]
fn a_demoted_genesis_anchors_later_set_never_counts() {
    use hearth_node::core::views::MembershipView;
    let f = Fixture::new();
    let a = &f.anchor;
    let (gus, hank) = (key(8), key(9));
    let sets = [
        f.member_set(a, 1, a, Level::Trusted),
        f.member_set(a, 2, &gus, Level::Member),
        f.member_set(a, 3, &hank, Level::Member),
    ];
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let mut view = MembershipView::default();
        view.apply(&f.genesis);
        for i in order {
            view.apply(&sets[i]);
        }
        assert_eq!(view.level(&a.node_id()), Some(Level::Trusted), "{order:?}");
        assert_eq!(view.level(&gus.node_id()), None, "{order:?}");
        assert_eq!(view.level(&hank.node_id()), None, "{order:?}");
    }
}
