//! A failing run names its seed and a command, and that command replays it
//! exactly: the promise every bug report from the simulator rests on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use hearth_sim::{run, InjectedBug, SimConfig};

#[test]
fn a_failing_runs_replay_command_reproduces_it() {
    let cfg = SimConfig {
        inject_bug: Some(InjectedBug::FalseDuplicate),
        liveness_ms_max: 120_000,
        ..SimConfig::all_faults(5, 20, 60)
    };
    let summary = run(cfg.clone()).unwrap();
    assert!(!summary.ok(), "the injected bug must fail the run");

    let command = cfg.replay_command();
    let args: Vec<&str> = command
        .split_whitespace()
        .skip_while(|a| *a != "--")
        .skip(1)
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-sim"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a failed run exits 1");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("FAILED: seed 5"), "{stderr}");
    assert!(stderr.contains(&format!("replay: {command}")), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["converged"], false);
    assert_eq!(last["trace_hash"], summary.trace_hash.as_str());
}
