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

fn sweep(seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let summary = run(SimConfig::all_faults(seed, NODES, EVENTS)).unwrap();
        assert!(
            summary.ok(),
            "seed {seed} failed: {:?}\nreplay: {}",
            summary.violations,
            SimConfig::all_faults(seed, NODES, EVENTS).replay_command()
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
