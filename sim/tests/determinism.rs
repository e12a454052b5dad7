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

/// Sharing one decoded, verified copy of each event between the simulated
/// cores is only a cost saving: verifying every copy at every node gives
/// the very same run (bad signatures are still rejected by every node).
#[test]
fn shared_verification_changes_nothing() {
    let shared = run(small(11)).unwrap();
    let every_copy = run(SimConfig {
        verify_every_copy: true,
        ..small(11)
    })
    .unwrap();
    assert!(shared.ok(), "{shared:?}");
    assert!(shared.rejected.keys().any(|r| r.contains("signature")));
    assert_eq!(shared, every_copy);
}

/// Indexing one run-wide event table instead of a store per node is only
/// a memory saving: every node on its own `MemoryStore` gives the very same
/// run, faults, crashes (what a hard crash keeps) and conversations included.
#[test]
fn shared_event_table_changes_nothing() {
    for seed in [12, 13] {
        let cfg = SimConfig {
            conversations: true,
            ..small(seed)
        };
        let compact = run(cfg.clone()).unwrap();
        let own = run(SimConfig {
            own_stores: true,
            ..cfg
        })
        .unwrap();
        assert!(compact.ok(), "{compact:?}");
        assert!(compact.crashes > 0, "{compact:?}");
        assert_eq!(compact, own);
    }
}
