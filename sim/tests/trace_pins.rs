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
        "791bbcbc9fe1f05b0f0148525a420fd2c493483d27602d2140c5d60d31184e4a",
    ),
    (
        2,
        "e3e984e451d95c90870c6eaf83feafa82530294e79b131fcf8806a6c143cca27",
    ),
    (
        3,
        "57a72de57aa12646dfa1226aae65de8e3d3424c54d382b54707437e853be12df",
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
