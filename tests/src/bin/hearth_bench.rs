//! `scripts/bench`: prints one JSON line per figure on stdout (see
//! tests/src/bench), progress on stderr.
//!
//! Flags: `--quick` (small sizes, a smoke run), `--only NAME` (one figure:
//! embed, ingest, replay, list, sync, gossip, throughput, search, sse, sealed; repeatable),
//! `--plot` (SVG charts into docs/img, or `--plot-dir DIR`: the sync sweep
//! over a range of differences, ours beside negentropy, and the gossip
//! latency CDF).

use anyhow::{bail, Context};
use hearth_tests::bench::{
    self, embed, ingest, list, mesh, plot, replay, sealed, search, sse, sync,
};
use serde_json::json;

// The node's allocator (see `hearth_node::NodeAllocator`): the figures
// are measured with what `hearth` runs with.
#[global_allocator]
static ALLOCATOR: hearth_node::NodeAllocator = hearth_node::NodeAllocator;

const FIGURES: [&str; 10] = [
    "embed",
    "ingest",
    "replay",
    "list",
    "sync",
    "gossip",
    "throughput",
    "search",
    "sse",
    "sealed",
];
const USAGE: &str =
    "usage: scripts/bench [--quick] [--plot] [--plot-dir DIR] [--only embed|ingest|replay|list|sync|gossip|throughput|search|sse|sealed]...";
/// Where `--plot` writes its SVGs unless `--plot-dir` says otherwise
/// (scripts/bench runs from the repository root; docs/performance.md
/// shows them).
const PLOT_DIR: &str = "docs/img";

fn main() -> anyhow::Result<()> {
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut plot_dir: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--plot" => {
                plot_dir.get_or_insert_with(|| PLOT_DIR.into());
            }
            "--plot-dir" => plot_dir = Some(args.next().context(USAGE)?.into()),
            "--only" => {
                let name = args.next().context(USAGE)?;
                // The figure is printed as list_p99; accept either name.
                let name = if name == "list_p99" {
                    "list".into()
                } else {
                    name
                };
                if !FIGURES.contains(&name.as_str()) {
                    bail!("unknown figure {name:?}\n{USAGE}");
                }
                only.push(name);
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if let Some(dir) = plot_dir {
        plot::enable(dir)?;
    }
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    bench::emit(bench::figure("machine", machine(quick)));
    let scale = |full: usize, small: usize| if quick { small } else { full };
    // First, so its resident-memory figure is not inflated by the others.
    if want("embed") {
        embed::embed(scale(2_000, 320))?;
    }
    if want("ingest") {
        ingest::ingest(scale(20_000, 4_000))?;
    }
    if want("replay") {
        replay::replay(scale(1_000_000, 50_000))?;
    }
    if want("list") {
        list::list(scale(100_000, 10_000))?;
    }
    if want("search") {
        search::search(scale(10_000, 2_000), quick)?;
    }
    if want("sealed") {
        sealed::sealed(scale(10_000, 1_000))?;
    }
    if want("sync") {
        let n = scale(100_000, 10_000);
        // Each case prints a line for ours and one for negentropy-rs.
        if let Some(dir) = plot::dir() {
            // The sweep includes the issue's cases.
            let measured = sync::cases(n, &sync::sweep_cases(n))?;
            sync::plot(dir, n, &measured)?;
        } else {
            sync::cases(n, &sync::ISSUE_CASES)?;
        }
        // The same cases at a million events (issue 15 sets its targets
        // at 100k and 1M): a minute of signing and a few of syncing, so
        // only when sync is asked for.
        if only.iter().any(|o| o == "sync") {
            sync::cases(scale(1_000_000, 100_000), &sync::ISSUE_CASES)?;
        }
    }
    if want("gossip") || want("throughput") || want("sse") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        if want("gossip") {
            rt.block_on(mesh::gossip(scale(100, 10), scale(200, 20), scale(5, 1)))?;
        }
        if want("throughput") {
            let verify = verify_rate()?;
            rt.block_on(mesh::throughput(10, scale(2_000, 200), verify))?;
        }
        if want("sse") {
            rt.block_on(sse::fan_out(100, scale(200, 20)))?;
        }
    }
    Ok(())
}

/// The facts that make a run's numbers readable later.
fn machine(quick: bool) -> serde_json::Value {
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_owned())
    });
    json!({
        "nproc": bench::cores(),
        "cpu": cpu,
        "git": git,
        "git_dirty": dirty,
        "mode": if quick { "quick" } else { "full" },
        "release": !cfg!(debug_assertions),
    })
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
