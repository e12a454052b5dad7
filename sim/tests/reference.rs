//! Named scenarios for what the reference model and the rule-keeping
//! invariants catch: each one sets up the situation a plausible core bug
//! would get wrong (see docs/testing.md, "Simulator mutants"), and passes
//! only while the core keeps the rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_node::store::EventStore;
use hearth_proto::{ExpiryReason, Payload};
use hearth_sim::{Adversaries, Sim, SimConfig};

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

/// Posts past their TTL that already ended (one by its author, one by the
/// author's own sweeper) are never expired again by any sweeper, however
/// many sweeps pass: each post carries exactly one expiry in every log.
#[test]
fn ended_posts_are_not_expired_again() {
    let mut sim = Sim::new(quiet(21, 8)).unwrap();
    let fulfilled = sim.post(3, Some(60)).unwrap();
    let left_to_sweep = sim.post(4, Some(60)).unwrap();
    sim.run_for(2_000).unwrap();
    let author = sim.node_id(3);
    sim.expire(3, author, fulfilled, ExpiryReason::Fulfilled)
        .unwrap();
    // Five sweep intervals past the TTL: every sweeper looks many times.
    sim.run_for(6 * 60_000).unwrap();
    assert_converged(&mut sim);
    let core = sim.node(0).unwrap();
    for (id, reason) in [
        (fulfilled, ExpiryReason::Fulfilled),
        (left_to_sweep, ExpiryReason::Stale),
    ] {
        let post = core.views().market.find(&id)[0].clone();
        assert_eq!(post.expired.map(|x| x.reason), Some(reason));
    }
    let expiry_events = core
        .log()
        .store()
        .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .map(|e| e.unwrap())
        .filter(|e| matches!(e.event().payload, Payload::PostExpired(_)))
        .count();
    // Sweepers run on the same tick everywhere (give or take clock skew),
    // so the author's and both anchors' may mark the swept post at once;
    // the fulfilled one is never marked again.
    assert!(
        (2..=4).contains(&expiry_events),
        "one expiry for the fulfilled post, one per racing sweeper for the \
         other: {expiry_events}"
    );
}

/// Two halves apart long enough to differ by hundreds of scattered events:
/// after the heal, sync partitions ranges into sketched sub-ranges and id
/// lists (the summary counts them), every completed sync leaves both sides
/// whole, and the views match the reference model.
#[test]
fn scattered_partition_splits_sync_ranges() {
    let mut sim = Sim::new(quiet(22, 12)).unwrap();
    sim.partition((0..12).map(|i| (i % 2) as u32).collect());
    for k in 0..300 {
        sim.post(2 + k % 10, None).unwrap();
        if k % 20 == 19 {
            sim.run_for(1_000).unwrap();
        }
    }
    sim.run_for(5_000).unwrap();
    sim.heal().unwrap();
    assert_converged(&mut sim);
    let sync = sim.summary().sync;
    assert!(sync.split_ranges > 0, "no range was split: {sync:?}");
    assert!(sync.id_lists > 0, "no id list was used: {sync:?}");
}

/// The impostor's updates and expiries of others' posts enter every log
/// and change no view; the sync forger's events enter no log; the run
/// holds every invariant, the reference model's included.
#[test]
fn impostor_and_sync_forger_change_nothing() {
    let cfg = SimConfig {
        adversaries: Adversaries {
            impostor: true,
            sync_forger: true,
            ..Adversaries::NONE
        },
        ..quiet(23, 10)
    };
    let mut sim = Sim::new(cfg).unwrap();
    let ids: Vec<_> = (0..6).map(|k| sim.post(2 + k, None).unwrap()).collect();
    sim.run_for(2_000).unwrap();
    let before = sim.node(0).unwrap().log().store().len();
    for _ in 0..6 {
        sim.adversary_burst(0).unwrap(); // the impostor
        sim.adversary_burst(1).unwrap(); // the sync forger
        sim.run_for(2_000).unwrap();
    }
    assert_converged(&mut sim);
    let core = sim.node(0).unwrap();
    // Six impostor events stored; nothing of the forger's.
    assert_eq!(core.log().store().len(), before + 6);
    let now = sim.node_now(0);
    for (k, id) in ids.iter().enumerate() {
        let post = core.views().market.find(id)[0].clone();
        assert_eq!(post.author, sim.node_id(2 + k));
        assert!(post.expired.is_none(), "post {k} ended by the impostor");
        assert_eq!(post.content_event, post.created, "post {k} edited");
        assert!(post.is_live(now));
    }
    assert!(sim.stats().stored_via_sync > 0 || sim.stats().sync_messages > 0);
}

/// Issue 10's rules on one small community, checked value by value and by
/// the reference model on every node at the end: an anchor's settings
/// (cap 600 s, bound 2) count; a display name shows, a removed member's
/// does not; the flooder's
/// never-expiring posts are capped at `ts + 600 s` except those with a
/// faked far-future `ts` (which escape the cap, as the rule says); only
/// the flooder's and a poster's two newest open posts show, the rest
/// `over_limit`; a trusted member's `moderated` ends a post and frees a
/// place in the bound, while a plain member's (the impostor's) ends
/// nothing, and its settings (a minute's cap, one post) change nothing.
#[test]
fn issue_10_rules_hold_on_every_node() {
    use hearth_node::core::views::market::PostKey;
    use hearth_proto::Level;
    let cfg = SimConfig {
        adversaries: Adversaries {
            flooder: true,
            impostor: true,
            ..Adversaries::NONE
        },
        flood_events: 30,
        ..quiet(24, 8)
    };
    let mut sim = Sim::new(cfg).unwrap();
    sim.set_settings(0, Some("Lindenhof".into()), Some(600), Some(2))
        .unwrap();
    sim.set_level(0, 2, Level::Trusted).unwrap();
    sim.set_name(3, "Ada").unwrap();
    sim.set_name(5, "Bo").unwrap();
    sim.run_for(1_000).unwrap();
    sim.set_level(0, 5, Level::Removed).unwrap();
    sim.run_for(2_000).unwrap();
    let own: Vec<_> = (0..4).map(|_| sim.post(4, None).unwrap()).collect();
    for _ in 0..3 {
        sim.adversary_burst(0).unwrap(); // the flooder: 3 posts a burst
        sim.run_for(500).unwrap();
    }
    sim.run_for(2_000).unwrap();
    for _ in 0..5 {
        // The impostor: fulfilled, stale, moderated, settings, update.
        sim.adversary_burst(1).unwrap();
        sim.run_for(500).unwrap();
    }
    let hostile = sim.hostile_posts().to_vec();
    assert_eq!(hostile.len(), 9);
    // The newest flood post: the trusted member moderates it.
    let (flooder, newest) = *hostile.last().unwrap();
    sim.expire(2, flooder, newest, ExpiryReason::Moderated)
        .unwrap();
    sim.run_for(3_000).unwrap();
    assert_converged(&mut sim);

    let now = sim.node_now(0);
    let core = sim.node(0).unwrap();
    let m = &core.views().membership;
    assert_eq!(m.community_name(), "Lindenhof");
    assert_eq!(m.settings().post_ttl_max_s, 600);
    assert_eq!(m.settings().posts_per_author_max, 2);
    assert_eq!(m.display_name(&sim.node_id(3)), Some("Ada"));
    assert_eq!(
        m.display_name(&sim.node_id(5)),
        None,
        "a removed member's name"
    );
    let market = &core.views().market;
    let get = |author, id| market.get(&PostKey { author, id }).unwrap().clone();
    // The poster's two newest show, the two oldest are over the limit.
    let mine: Vec<_> = own.iter().map(|id| get(sim.node_id(4), *id)).collect();
    assert_eq!(
        mine.iter().map(|p| p.over_limit).collect::<Vec<_>>(),
        [true, true, false, false]
    );
    assert!(mine.iter().all(|p| p.expired.is_none()));
    // The flood: capped unless its clock is faked; moderated newest ended.
    let mut shown = 0;
    for (k, (author, id)) in hostile.iter().enumerate() {
        let p = get(*author, *id);
        assert_eq!(p.content.expires_at, u64::MAX);
        assert_eq!(p.expires_at, p.content_ts + 600_000, "flood post {k}");
        let faked = p.content_ts > now + 365 * 24 * 3600 * 1000;
        assert_eq!(
            faked,
            (k + 1) % 4 == 0,
            "flood post {k}: ts {}",
            p.content_ts
        );
        if *id == newest {
            let x = p.expired.clone().unwrap();
            assert_eq!((x.by, x.reason), (sim.node_id(2), ExpiryReason::Moderated));
        } else {
            assert!(p.expired.is_none(), "flood post {k} ended");
        }
        shown += usize::from(p.expired.is_none() && !p.over_limit);
    }
    // Two places: the moderated post left one, the next newest took it.
    assert_eq!(shown, 2);
    // The impostor's expiries (its moderated among them) ended no post,
    // and its edit changed none.
    for id in &own {
        let p = &market.find(id)[0];
        assert!(p.expired.is_none());
        assert_eq!(p.content_event, p.created);
    }
}
