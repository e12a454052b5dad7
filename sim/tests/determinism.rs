//! One seed is one run: the property every replay command relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_sim::{run, SimConfig};

fn small(seed: u64) -> SimConfig {
    SimConfig::all_faults(seed, 24, 80)
}

/// The same seed twice gives the same trace hash and the same summary.
#[test]
fn same_seed_same_trace() {
    let a = run(small(7)).unwrap();
    let b = run(small(7)).unwrap();
    assert!(a.ok(), "{a:?}");
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a, b);
}

/// Different seeds give different runs (the trace hash sees the difference).
#[test]
fn different_seeds_differ() {
    let a = run(small(8)).unwrap();
    let b = run(small(9)).unwrap();
    assert_ne!(a.trace_hash, b.trace_hash);
}
