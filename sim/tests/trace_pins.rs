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
        "6b07c7cb566879a922f14af9251d8c1c48ade428b424f24631774b31f63cffc1",
    ),
    (
        2,
        "f76c2524105e779616fa80f5d27b7fd543f935ca40d5c4bdc77d50abdaffd1e5",
    ),
    (
        3,
        "65f0e1d3a0f0196509ee113e7487ac8e4aa3f48329196df90e31dae923f57e65",
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
