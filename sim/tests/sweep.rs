//! The seed sweep: many seeds, every fault kind on, each must converge with
//! every invariant held. Split in chunks so the test harness runs them in
//! parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_sim::{run, SimConfig};

/// Nodes per run: the lower bound.
const NODES: usize = 50;
/// Workload actions per run: sized so 50 seeds fit the debug-build test
/// budget; the release CLI and `scripts/sim-soak` run the big ones.
const EVENTS: usize = 100;

/// Runs the seeds; each must converge with every invariant held, and the
/// chunk's syncs must have split ranges (so the sweep exercises the
/// responder's splitting, not only the opening sketch: seeds 0 to 49 split
/// 6 to 83 ranges each).
///
/// Each chunk must also exercise issue 10's rules, so a core that breaks
/// one meets the reference model: settings signed and counted, display
/// names shown, posts capped, hidden over the per-author bound and ended by
/// a counting moderation (`Summary::rules`).
fn sweep(seeds: std::ops::Range<u64>) {
    let mut split_ranges = 0;
    let mut rules: std::collections::BTreeMap<String, u64> = Default::default();
    for seed in seeds {
        let summary = run(SimConfig::all_faults(seed, NODES, EVENTS)).unwrap();
        assert!(
            summary.ok(),
            "seed {seed} failed: {:?}\nreplay: {}",
            summary.violations,
            SimConfig::all_faults(seed, NODES, EVENTS).replay_command()
        );
        split_ranges += summary.sync.split_ranges;
        for (k, v) in summary.rules {
            *rules.entry(k).or_default() += v;
        }
    }
    assert!(split_ranges > 0, "no sync split a range in this chunk");
    for rule in [
        "settings_counted",
        "named",
        "capped",
        "over_limit",
        "moderated",
        "ts_faked",
    ] {
        assert!(
            rules.get(rule).is_some_and(|n| *n > 0),
            "no run of this chunk exercised `{rule}`: {rules:?}"
        );
    }
}

#[test]
fn sweep_seeds_0_to_9() {
    sweep(0..10);
}
#[test]
fn sweep_seeds_10_to_19() {
    sweep(10..20);
}
#[test]
fn sweep_seeds_20_to_29() {
    sweep(20..30);
}
#[test]
fn sweep_seeds_30_to_39() {
    sweep(30..40);
}
#[test]
fn sweep_seeds_40_to_49() {
    sweep(40..50);
}
