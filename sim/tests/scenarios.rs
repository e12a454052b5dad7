//! Named scenarios: scripted runs that each show one thing a neighbourhood
//! mesh does to the community, and that the community survives it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_node::store::EventStore;
use hearth_proto::{ExpiryReason, Level, LAMPORT_MAX};
use hearth_sim::{Adversaries, Sim, SimConfig};

const DAY_MS: u64 = 24 * 3600 * 1000;

fn quiet(seed: u64, nodes: usize) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        events: 0,
        ..SimConfig::default()
    }
}

fn assert_converged(sim: &mut Sim) {
    let ok = sim.liveness().unwrap();
    let summary = sim.summary();
    assert!(ok && summary.ok(), "{summary:?}");
}

/// Two halves post apart for ten virtual minutes, then heal: every node ends
/// with both halves' posts.
#[test]
fn long_partition_then_heal() {
    let mut sim = Sim::new(quiet(11, 20)).unwrap();
    sim.partition((0..20).map(|i| (i % 2) as u32).collect());
    let mut ids = Vec::new();
    for round in 0..10 {
        for node in [2 + round % 8, 3 + round % 8] {
            ids.push((node, sim.post(node, None).unwrap()));
        }
        sim.run_for(60_000).unwrap();
    }
    // Still apart: node 2 (even side) has not seen the odd side's posts.
    let odd = ids.iter().find(|(n, _)| n % 2 == 1).unwrap();
    let seen = sim.node(2).unwrap().views().market.find(&odd.1);
    assert!(seen.is_empty(), "a partition let a post through");
    sim.heal().unwrap();
    assert_converged(&mut sim);
    for i in 0..20 {
        let market = &sim.node(i).unwrap().views().market;
        for (_, id) in &ids {
            assert_eq!(market.find(id).len(), 1, "node {i} lacks post {id}");
        }
    }
}

/// A device offline for seven virtual days comes back, catches up on what
/// it missed, and its own view agrees with everyone's.
#[test]
fn node_offline_seven_days() {
    let cfg = SimConfig {
        sync_interval_ms: 600_000,
        check_interval_ms: 3_600_000,
        ..quiet(12, 10)
    };
    let mut sim = Sim::new(cfg).unwrap();
    sim.post(5, Some(30 * 24 * 3600)).unwrap();
    sim.run_for(10_000).unwrap();
    sim.crash(5, false).unwrap();
    let mut missed = Vec::new();
    for day in 0..7 {
        missed.push(sim.post(2 + day % 3, Some(30 * 24 * 3600)).unwrap());
        sim.run_for(DAY_MS).unwrap();
    }
    assert!(sim.node(5).is_none());
    sim.restart(5).unwrap();
    sim.run_for(60_000).unwrap();
    let market = &sim.node(5).unwrap().views().market;
    for id in &missed {
        assert_eq!(market.find(id).len(), 1, "post {id} not fetched");
    }
    assert_converged(&mut sim);
}

/// A newcomer that joins after ten thousand events: an anchor admits it as
/// it joins, it fetches the whole history by sync alone, and then its own
/// post reaches everyone.
#[test]
fn late_joiner_fetches_history() {
    const POSTS: usize = 10_000;
    let mut sim = Sim::with_late(quiet(13, 4), &[3]).unwrap();
    for k in 0..POSTS {
        sim.post(k % 3, None).unwrap();
        if k % 100 == 99 {
            sim.run_for(1_000).unwrap();
        }
    }
    sim.run_for(5_000).unwrap();
    let history = sim.node(0).unwrap().log().store().len();
    assert!(history as usize > POSTS);
    // Anchor 0 admits the newcomer as it joins.
    sim.restart(3).unwrap();
    sim.run_for(60_000).unwrap();
    let with_admission = history + 1;
    assert_eq!(sim.node(3).unwrap().log().store().len(), with_admission);
    assert!(sim.stats().stored_via_sync as usize >= POSTS);
    // Now a member, its own post reaches everyone.
    let id = sim.post(3, None).unwrap();
    assert_converged(&mut sim);
    for i in 0..4 {
        let market = &sim.node(i).unwrap().views().market;
        assert_eq!(market.find(&id).len(), 1, "node {i}");
    }
}

/// An anchor removes a member: the member's posts leave every view, while
/// the events stay in every log (the closure never shrinks).
#[test]
fn removed_member_posts_disappear_everywhere() {
    let mut sim = Sim::new(quiet(14, 12)).unwrap();
    let member = 7;
    let posts: Vec<_> = (0..3).map(|_| sim.post(member, None).unwrap()).collect();
    sim.run_for(5_000).unwrap();
    let log_before = sim.node(0).unwrap().log().store().len();
    for i in 0..12 {
        let now = sim.node_now(i);
        let shown = sim.node(i).unwrap().views().market.all_active(now).count();
        assert_eq!(shown, 3, "node {i} before removal");
    }
    sim.set_level(0, member, Level::Removed).unwrap();
    assert_converged(&mut sim);
    let author = sim.node_id(member);
    for i in 0..12 {
        let core = sim.node(i).unwrap();
        let now = sim.node_now(i);
        assert_eq!(core.views().market.all_active(now).count(), 0, "node {i}");
        assert_eq!(core.log().store().len(), log_before + 1, "node {i}");
        for id in &posts {
            let post = core.views().market.find(id)[0];
            assert_eq!(post.author, author);
            assert!(!post.author_active);
        }
    }
}

/// Two anchors mark one stale post at once, each unaware of the other:
/// both expiries reach every log, and every view reports the same one.
/// The author's own sweeper may also mark it (in its own part of the
/// partition, so neither anchor knows before it acts): then three
/// concurrent expiries, and still one outcome everywhere.
#[test]
fn concurrent_stale_expiry_by_two_anchors() {
    let mut sim = Sim::new(quiet(15, 10)).unwrap();
    let author = 5;
    let id = sim.post(author, Some(60)).unwrap();
    sim.run_for(2_000).unwrap();
    // Anchors 0 and 1 apart, each with part of the rest, the author alone;
    // sweepers would beat the scripted expiries, so expire just after the
    // TTL passes.
    sim.partition(
        (0..10)
            .map(|i| if i == author { 2 } else { (i % 2) as u32 })
            .collect(),
    );
    sim.run_for(61_000 - 2_000 + 2_500).unwrap();
    let author_id = sim.node_id(author);
    for anchor in [0, 1] {
        sim.expire(anchor, author_id, id, ExpiryReason::Stale)
            .expect("neither anchor knows of another expiry");
    }
    sim.heal().unwrap();
    assert_converged(&mut sim);
    let first = sim.node(0).unwrap().views().market.find(&id)[0].clone();
    let expired = first.expired.clone().expect("post expired");
    assert_eq!(expired.reason, ExpiryReason::Stale);
    let anchors = [sim.node_id(0), sim.node_id(1)];
    let mut by = std::collections::BTreeSet::new();
    for i in 0..10 {
        let post = sim.node(i).unwrap().views().market.find(&id)[0].clone();
        assert_eq!(post, first, "node {i} shows another outcome");
        let log = sim.node(i).unwrap().log().store();
        let expiries = log.get_by_id(&id).unwrap().len();
        assert!(expiries >= 1);
        by.insert(post.expired.unwrap().by);
    }
    assert_eq!(by.len(), 1);
    let winner = *by.iter().next().unwrap();
    assert!(
        anchors.contains(&winner) || winner == author_id,
        "ended by {winner:?}, who did not expire it"
    );
    // Both anchors' expiries are in the log (and the author's, if its
    // sweeper ran).
    let store = sim.node(3).unwrap().log().store();
    let authors: std::collections::BTreeSet<_> = store
        .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .map(|e| e.unwrap())
        .filter(|e| {
            matches!(&e.event().payload, hearth_proto::Payload::PostExpired(x) if x.target == id)
        })
        .map(|e| e.event().author)
        .collect();
    assert!(
        anchors.iter().all(|a| authors.contains(a)),
        "both anchors' expiries should be stored: {authors:?}"
    );
    assert!(authors
        .iter()
        .all(|a| anchors.contains(a) || *a == author_id));
}

/// A member publishing Lamport values near 2^53 gets its events stored and
/// relayed (they are valid), but no honest clock follows: members keep
/// posting with small Lamport times, and the community converges.
#[test]
fn lamport_bomb_contained() {
    let cfg = SimConfig {
        adversaries: Adversaries {
            lamport_bomb: true,
            ..Adversaries::NONE
        },
        ..quiet(16, 12)
    };
    let mut sim = Sim::new(cfg).unwrap();
    for _ in 0..5 {
        sim.adversary_burst(0).unwrap();
        sim.run_for(2_000).unwrap();
    }
    let bombs = sim.node(4).unwrap().views().market.max_lamport();
    assert!(bombs > LAMPORT_MAX - 10, "the bomb did not arrive");
    let id = sim.post(4, None).unwrap();
    sim.run_for(5_000).unwrap();
    for i in 0..12 {
        let core = sim.node(i).unwrap();
        assert!(
            core.log().clock() < 1 << 20,
            "node {i} clock {}",
            core.log().clock()
        );
        let post = core.views().market.find(&id);
        assert_eq!(post.len(), 1, "node {i}");
        assert!(post[0].created.lamport < 1 << 20);
    }
    assert_converged(&mut sim);
}

/// A power cut: a node loses the received events it had not flushed yet,
/// never one it published itself, and sync brings the lost ones back.
#[test]
fn power_cut_loses_only_unflushed_received_events() {
    let mut sim = Sim::new(quiet(16, 8)).unwrap();
    let own = sim.post(5, None).unwrap();
    sim.run_for(5_000).unwrap();
    // A burst from others reaches node 5 and sits unflushed: the log
    // flushes every 256 events and on its tick.
    for k in 0..40 {
        sim.post(k % 4, None).unwrap();
    }
    sim.run_for(300).unwrap();
    let before = sim.node(5).unwrap().log().store().len();
    sim.crash(5, false).unwrap();
    let lost = sim.stats().lost_unflushed;
    assert!(
        lost > 0,
        "nothing was unflushed: the scenario shows nothing"
    );
    sim.restart(5).unwrap();
    let after_restart = sim.node(5).unwrap().log().store().len();
    assert_eq!(after_restart, before - lost);
    assert_eq!(sim.node(5).unwrap().views().market.find(&own).len(), 1);
    assert_converged(&mut sim);
    assert_eq!(sim.node(5).unwrap().log().store().len(), before);
}
