//! Conversations in the simulator (issue 14): replies, claims, withdrawals,
//! acceptances and sealed messages under every fault, and a deliberately
//! broken acceptance rule that the checker must catch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_sim::{run, InjectedBug, SimConfig, Summary};

/// Every fault, conversations on, a short liveness bound (the bug run
/// never converges; its findings come from the safety phase).
fn cfg(seed: u64) -> SimConfig {
    SimConfig {
        conversations: true,
        liveness_ms_max: 120_000,
        ..SimConfig::all_faults(seed, 24, 300)
    }
}

fn rule(s: &Summary, what: &str) -> u64 {
    s.rules.get(what).copied().unwrap_or(0)
}

/// Under every fault, with replies, claims, withdrawals, acceptances
/// (second ones from the author included) and sealed messages in the
/// workload, every node converges to the threads the reference model
/// derives from its log, and every sealed message opens for its recipient
/// only.
#[test]
fn conversations_converge_under_every_fault() {
    let mut done = std::collections::BTreeMap::new();
    for seed in 1..=2 {
        let s = run(cfg(seed)).unwrap();
        assert!(s.ok(), "seed {seed}: {:?}", s.violations);
        for (what, n) in &s.rules {
            *done.entry(what.clone()).or_insert(0) += n;
        }
    }
    // The seeds together exercise every conversation action.
    for what in [
        "replies",
        "claims",
        "acceptances",
        "second acceptances",
        "withdrawals",
        "sealed messages",
    ] {
        assert!(
            done.get(what).copied().unwrap_or(0) > 0,
            "no {what}: {done:?}"
        );
    }
}

/// A conversations view where the first acceptance applied wins (instead
/// of the author's highest `(lamport, hash)`) is caught: some node's
/// thread differs from the reference model over its own log.
#[test]
fn first_acceptance_bug_is_caught() {
    let s = run(SimConfig {
        inject_bug: Some(InjectedBug::FirstAcceptance),
        ..cfg(1)
    })
    .unwrap();
    assert!(!s.ok(), "{s:?}");
    assert!(
        s.violations
            .iter()
            .any(|v| v.contains("views differ from the reference model: thread of")),
        "{:?}",
        s.violations
    );
}

/// Without conversations the workload draws nothing for them: a run's
/// trace is the same whether the (unused) conversation code exists, so
/// pinned seeds keep their hashes; with them on, the trace differs.
#[test]
fn conversations_are_off_by_default() {
    let off = run(SimConfig::all_faults(5, 12, 40)).unwrap();
    let on = run(SimConfig {
        conversations: true,
        ..SimConfig::all_faults(5, 12, 40)
    })
    .unwrap();
    assert!(off.ok() && on.ok());
    assert_eq!(rule(&off, "replies") + rule(&off, "claims"), 0);
    assert_ne!(off.trace_hash, on.trace_hash);
}
