//! `hearth-sim`: one randomised simulator run from the command line.
//!
//! Prints its seed and parameters first and, as the last line of stdout, a
//! one-line JSON summary. Exits 0 only if the run converged and every
//! invariant held; otherwise prints the seed and the command that replays
//! the run exactly.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use hearth_sim::{Adversaries, InjectedBug, SimConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Bug {
    /// Node 1's store pretends to hold one received event in eight.
    FalseDuplicate,
    /// Every node's marketplace view shows the update applied last, not the latest.
    ArrivalOrderView,
    /// Every node's conversations view keeps a post's first acceptance, not the highest.
    FirstAcceptance,
}

/// Deterministic multi-node simulation of a HearthNet community.
#[derive(Debug, Parser)]
#[command(name = "hearth-sim", version)]
struct Args {
    /// Run seed; the same seed gives the same run. Random if absent.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Workload actions (posts, updates, expiries, moderation, community
    /// settings, display names, membership changes).
    #[arg(long, default_value_t = 1_000)]
    events: usize,
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Split into this many groups during the safety phase (0 = none).
    #[arg(long, default_value_t = 0)]
    partitions: usize,
    /// Fraction of nodes that crash (store kept) during the safety phase.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Fraction of nodes that join late with an empty log.
    #[arg(long, default_value_t = 0.0)]
    late_join: f64,
    /// Largest clock skew of a node either way, ms (`ts`, TTLs, sweeps).
    #[arg(long, default_value_t = 2_000)]
    clock_skew_ms: u64,
    #[arg(long, default_value_t = 6)]
    mesh_degree: usize,
    /// Peers outside the mesh that each heartbeat's IHAVE goes to (0 = no
    /// lazy gossip).
    #[arg(long, default_value_t = 6)]
    gossip_lazy: usize,
    #[arg(long, default_value_t = 30_000)]
    sync_interval_ms: u64,
    /// Posts the flooding member publishes.
    #[arg(long, default_value_t = 200)]
    flood_events: usize,
    /// Leave out the adversaries (bad signatures, non-member, Lamport bomb,
    /// flooder, impostor, sync forger).
    #[arg(long)]
    no_adversaries: bool,
    /// Uplink bandwidth per node, bytes/s (0 = unlimited).
    #[arg(long, default_value_t = 1_000_000)]
    bandwidth: u64,
    /// Virtual time the liveness phase may take, ms.
    #[arg(long, default_value_t = 600_000)]
    liveness_ms_max: u64,
    /// Decode and verify every copy at every node instead of sharing one
    /// decoded copy of each event between the simulated cores (same run,
    /// slower, more memory).
    #[arg(long)]
    verify_every_copy: bool,
    /// Add conversations to the workload: replies, claims, withdrawals,
    /// acceptances and sealed messages, each checked.
    #[arg(long)]
    conversations: bool,
    /// Give every node its own in-memory store instead of an index over
    /// one shared event table (same run, more memory).
    #[arg(long)]
    own_stores: bool,
    /// Print a progress line to stderr every 30 virtual seconds.
    #[arg(long)]
    progress: bool,
    /// Test only: run a deliberately broken core, to see the checker fail.
    #[arg(long, hide = true)]
    inject_bug: Option<Bug>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        // The one place a random seed is drawn: printed first, so any run
        // can be replayed.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ u64::from(std::process::id()).rotate_left(32)
    });
    let cfg = SimConfig {
        seed,
        nodes: args.nodes,
        events: args.events,
        loss: args.loss,
        duplicate: args.duplicate,
        reorder: args.reorder,
        partitions: args.partitions,
        churn: args.churn,
        late_join: args.late_join,
        clock_skew_ms_max: args.clock_skew_ms,
        mesh_degree: args.mesh_degree,
        gossip_lazy: args.gossip_lazy,
        sync_interval_ms: args.sync_interval_ms,
        flood_events: args.flood_events,
        adversaries: if args.no_adversaries {
            Adversaries::NONE
        } else {
            Adversaries::ALL
        },
        bandwidth_bytes_per_s: args.bandwidth,
        liveness_ms_max: args.liveness_ms_max,
        verify_every_copy: args.verify_every_copy,
        conversations: args.conversations,
        own_stores: args.own_stores,
        inject_bug: args.inject_bug.map(|bug| match bug {
            Bug::FalseDuplicate => InjectedBug::FalseDuplicate,
            Bug::ArrivalOrderView => InjectedBug::ArrivalOrderView,
            Bug::FirstAcceptance => InjectedBug::FirstAcceptance,
        }),
        ..SimConfig::default()
    };
    println!("seed {seed}");
    match serde_json::to_string(&cfg) {
        Ok(p) => println!("parameters {p}"),
        Err(e) => eprintln!("cannot print parameters: {e}"),
    }
    let started = Instant::now();
    let replay = cfg.replay_command();
    let progress = args.progress;
    let observe = |sim: &hearth_sim::Sim| {
        if progress {
            let s = sim.stats();
            eprintln!(
                "progress: {:?} phase, virtual {} s, {} actions, {} stores, wall {} s",
                sim.phase(),
                (sim.now() - hearth_sim::START_MS) / 1000,
                s.workload_done,
                s.stored_via_gossip + s.stored_via_sync + s.stored_other,
                started.elapsed().as_secs()
            );
        }
    };
    match hearth_sim::run_observed(cfg, observe) {
        Ok(mut summary) => {
            summary.wall_ms = Some(started.elapsed().as_millis() as u64);
            let ok = summary.ok();
            if !ok {
                eprintln!("FAILED: seed {seed}");
                for v in &summary.violations {
                    eprintln!("  {v}");
                }
                eprintln!("replay: {replay}");
            }
            match serde_json::to_string(&summary) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("cannot print summary: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("FAILED: seed {seed}");
            eprintln!("replay: {replay}");
            println!(
                "{}",
                serde_json::json!({"converged": false, "seed": seed, "error": e.to_string()})
            );
            ExitCode::FAILURE
        }
    }
}
