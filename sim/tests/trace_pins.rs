//! Pinned trace hashes: a refactor of the engine (moving code between
//! modules, renaming) must not change what a seed does. When a change of
//! behaviour is intended (a new rule, a new message), update the pins in
//! the same commit and say why in its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_sim::{run, SimConfig};

/// Seeds with every fault on (24 nodes, 80 events) and their trace hashes.
const PINS: [(u64, &str); 3] = [
    (
        1,
        "d5e3c83faf9f327814a606923c4bd32be69fd3fdf975fcd2b2a0e0449157317c",
    ),
    (
        2,
        "2d35db34f3970d1a41468c1f90063102605c1758bd394d8e85d5b87307ca27aa",
    ),
    (
        3,
        "677c9541ab7ba4bf2c00870897140bfde2c9114a687f1cf5e44717910cd87c5a",
    ),
];

/// Each pinned seed still produces its pinned trace, and still passes.
#[test]
fn pinned_seeds_keep_their_trace() {
    let mut wrong = Vec::new();
    for (seed, pinned) in PINS {
        let s = run(SimConfig::all_faults(seed, 24, 80)).unwrap();
        assert!(s.ok(), "seed {seed}: {s:?}");
        if s.trace_hash != pinned {
            wrong.push(format!("({seed}, \"{}\")", s.trace_hash));
        }
    }
    assert!(wrong.is_empty(), "trace changed; now: {}", wrong.join(", "));
}
