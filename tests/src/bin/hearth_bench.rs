//! `scripts/bench`: prints one JSON line per figure (see tests/src/bench).
//!
//! Flags: `--quick` (small sizes, a smoke run), `--only NAME` (one figure:
//! ingest, replay, list, sync, gossip, throughput).

use anyhow::Context;
use hearth_tests::bench::{self, core, mesh};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    bench::emit(bench::figure(
        "machine",
        json!({
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "git": rev,
            "quick": quick,
        }),
    ));
    let scale = |full: usize, small: usize| if quick { small } else { full };
    if want("ingest") {
        core::ingest(scale(20_000, 2_000))?;
    }
    if want("replay") {
        core::replay(scale(1_000_000, 50_000))?;
    }
    if want("list") {
        core::list(scale(100_000, 10_000))?;
    }
    if want("sync") {
        core::sync(scale(100_000, 10_000), 1)?;
        core::sync(scale(100_000, 10_000), 5_000)?;
    }
    if want("gossip") || want("throughput") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        if want("gossip") {
            rt.block_on(mesh::gossip(scale(50, 10), scale(100, 20)))?;
        }
        if want("throughput") {
            let verify = verify_rate()?;
            rt.block_on(mesh::throughput(10, scale(2_000, 200), verify))?;
        }
    }
    Ok(())
}

/// Single-core decode + verify_strict rate, for the throughput ceiling.
fn verify_rate() -> anyhow::Result<f64> {
    let who = hearth_tests::identity(2);
    let c = hearth_tests::mesh::Community::new(std::slice::from_ref(&who))?;
    let events = bench::sign_posts(&who, c.id(), 10, 2_000)?;
    Ok(bench::rate(events.len(), |i| {
        let ok = hearth_proto::VerifiedEvent::decode(events[i].bytes()).is_ok();
        std::hint::black_box(ok);
    }))
}
