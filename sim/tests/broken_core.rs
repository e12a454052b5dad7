//! The checker can fail: a deliberately broken core must be reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_sim::{run, InjectedBug, SimConfig, Violation};

/// A node whose store wrongly reports one received event in eight as
/// already held never converges, and the summary says so.
#[test]
fn false_duplicate_bug_is_caught() {
    let cfg = SimConfig {
        inject_bug: Some(InjectedBug::FalseDuplicate),
        liveness_ms_max: 60_000,
        ..SimConfig::all_faults(3, 16, 60)
    };
    let summary = run(cfg).unwrap();
    assert!(!summary.converged, "{summary:?}");
    assert!(!summary.ok());
    assert!(
        summary
            .violations
            .iter()
            .any(|v| v.starts_with("not converged")),
        "{:?}",
        summary.violations
    );
}

/// The same configuration without the bug converges: the failure above is
/// the bug's doing, not the configuration's.
#[test]
fn same_run_without_the_bug_converges() {
    let cfg = SimConfig {
        liveness_ms_max: 60_000,
        ..SimConfig::all_faults(3, 16, 60)
    };
    let summary = run(cfg).unwrap();
    assert!(summary.ok(), "{summary:?}");
    let _ = Violation::NotConverged {
        detail: String::new(),
    };
}
