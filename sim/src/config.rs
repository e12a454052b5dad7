//! Run parameters: a plain struct with documented defaults and one
//! [`SimConfig::validate`] that names the offending key.

use serde::Serialize;

use crate::store::InjectedBug;

/// Virtual time of the run's start (Unix ms, 2023-11-14): a fixed epoch, so
/// event ids and TTLs are the same in every replay.
pub const START_MS: u64 = 1_700_000_000_000;

/// Which adversaries take part (each is one extra identity with no core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Adversaries {
    /// A member whose events carry broken signatures.
    pub bad_signature: bool,
    /// A key never admitted, publishing its own posts.
    pub non_member: bool,
    /// A member publishing Lamport values near 2^53.
    pub lamport_bomb: bool,
    /// A member publishing bursts of posts.
    pub flooder: bool,
    /// A plain member publishing what only others may: updates and
    /// `fulfilled` expiries of other members' posts, `stale` and
    /// `moderated` expiries it is not trusted to make, and community
    /// settings only an anchor's count. Valid events (they enter every log);
    /// every view must ignore them.
    pub impostor: bool,
    /// A peer pushing bad events through sync, both in requests it opens
    /// and in answers to the syncs honest nodes open with it: forged
    /// signatures, garbled bytes, zeroed signatures, a non-member's events
    /// and another community's. None may enter any log.
    pub sync_forger: bool,
}

impl Adversaries {
    pub const ALL: Adversaries = Adversaries {
        bad_signature: true,
        non_member: true,
        lamport_bomb: true,
        flooder: true,
        impostor: true,
        sync_forger: true,
    };
    pub const NONE: Adversaries = Adversaries {
        bad_signature: false,
        non_member: false,
        lamport_bomb: false,
        flooder: false,
        impostor: false,
        sync_forger: false,
    };
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    pub seed: u64,
    /// Honest nodes, anchors included (default 100).
    pub nodes: usize,
    /// Workload actions in the safety phase (default 1,000).
    pub events: usize,
    /// Genesis anchors among the nodes (default 2: two anchors can race).
    pub anchors: usize,
    /// Eager-push mesh degree D (default 6, gossipsub's D).
    pub mesh_degree: usize,
    /// Peers outside the mesh each heartbeat's IHAVE goes to (gossipsub's
    /// `D_lazy`, 6); 0 turns lazy gossip off.
    pub gossip_lazy: usize,
    /// Gossipsub heartbeat interval (1 s in libp2p).
    pub heartbeat_ms: u64,
    /// Connected peers per node, the pool the mesh and sync draw from
    /// (default 12 = 2 D: gossipsub keeps D_hi = 12 mesh peers at most).
    pub peers_per_node: usize,
    /// Per-link base latency, uniform in this range (default 5..=60 ms:
    /// Wi-Fi and a neighbourhood mesh hop or two).
    pub latency_ms_min: u64,
    pub latency_ms_max: u64,
    /// Mean of the exponential jitter added to every message (default 10 ms).
    pub jitter_ms_mean: u64,
    /// Probability a message is lost while faults are on (default 0).
    pub loss: f64,
    /// Probability a message is delivered twice (default 0).
    pub duplicate: f64,
    /// Probability a message is held back up to `reorder_ms_max` (default 0).
    pub reorder: f64,
    pub reorder_ms_max: u64,
    /// Uplink bandwidth per node in bytes/s; 0 = unlimited (default 1 MB/s).
    pub bandwidth_bytes_per_s: u64,
    /// Partition into this many groups during the safety phase; 0 or 1 = none.
    pub partitions: usize,
    /// Fraction of non-anchor nodes that crash during the safety phase.
    pub churn: f64,
    /// Mean downtime of a crashed node (default 60 s); a quarter of crashed
    /// nodes stay away until the liveness phase (long absences).
    pub downtime_ms_mean: u64,
    /// Fraction of non-anchor nodes that join late, with an empty log.
    pub late_join: f64,
    pub adversaries: Adversaries,
    /// Posts the flooder publishes in all (default 200).
    pub flood_events: usize,
    /// Mean gap between workload actions (default 50 ms).
    pub event_interval_ms: u64,
    /// Fraction of posts with a TTL of minutes, so sweepers and anchors
    /// mark them stale during the run (default 0.1).
    pub short_ttl_fraction: f64,
    /// Largest skew of a node's clock (`ts`, sweeps) either way (default 2 s).
    pub clock_skew_ms_max: u64,
    /// Each node syncs with one connected peer this often, plus up to a
    /// quarter more (default 30 s, as the real driver).
    pub sync_interval_ms: u64,
    /// A sync round with no answer for this long is abandoned (default 5 s).
    pub sync_timeout_ms: u64,
    /// Gossipsub's duplicate cache lifetime (default 120 s, its default).
    pub seen_ttl_ms: u64,
    /// Invariants are checked this often (default 5 s).
    pub check_interval_ms: u64,
    /// Nodes whose shown posts are audited per check (default 16): bounds
    /// the cost of a check at 1,000 nodes.
    pub check_sample: usize,
    /// The liveness phase must converge within this much virtual time
    /// (default 10 min).
    pub liveness_ms_max: u64,
    /// Nodes checked for incremental == full replay == snapshot restore.
    pub restore_sample: usize,
    /// Test-only: a deliberately broken core.
    pub inject_bug: Option<InjectedBug>,
    /// Decode and verify every copy of an event at every node, instead of
    /// sharing one decoded copy per distinct event (same outcome, slower).
    pub verify_every_copy: bool,
    /// The workload also replies to, claims, withdraws claims on and
    /// accepts claims of posts, and sends sealed messages (issue 14), and
    /// the checker checks them. Off by default so the pinned seeds keep
    /// their traces; `scripts/sim-soak` and the conversation tests turn it on.
    pub conversations: bool,
    /// Give every node its own [`hearth_node::store::MemoryStore`] instead
    /// of a compact index over one run-wide event table (same answers,
    /// about four times the memory per stored event).
    pub own_stores: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            nodes: 100,
            events: 1_000,
            anchors: 2,
            mesh_degree: 6,
            gossip_lazy: 6,
            heartbeat_ms: 1_000,
            peers_per_node: 12,
            latency_ms_min: 5,
            latency_ms_max: 60,
            jitter_ms_mean: 10,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_ms_max: 500,
            bandwidth_bytes_per_s: 1_000_000,
            partitions: 0,
            churn: 0.0,
            downtime_ms_mean: 60_000,
            late_join: 0.0,
            adversaries: Adversaries::NONE,
            flood_events: 200,
            event_interval_ms: 50,
            short_ttl_fraction: 0.1,
            clock_skew_ms_max: 2_000,
            sync_interval_ms: 30_000,
            sync_timeout_ms: 5_000,
            seen_ttl_ms: 120_000,
            check_interval_ms: 5_000,
            check_sample: 16,
            liveness_ms_max: 600_000,
            restore_sample: 4,
            inject_bug: None,
            verify_every_copy: false,
            conversations: false,
            own_stores: false,
        }
    }
}

impl SimConfig {
    /// Every fault kind on, at the strengths the seed sweep uses.
    pub fn all_faults(seed: u64, nodes: usize, events: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes,
            events,
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.05,
            partitions: 3,
            churn: 0.1,
            late_join: 0.05,
            // Devices whose clocks are minutes off: `ts`, TTLs and the
            // anchors' stale sweeps disagree between nodes.
            clock_skew_ms_max: 5 * 60_000,
            adversaries: Adversaries::ALL,
            flood_events: events / 5,
            ..SimConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &'static str, problem: String| Err(ConfigError { key, problem });
        if self.nodes < 2 {
            return fail("nodes", format!("{} is too few; at least 2", self.nodes));
        }
        if self.nodes > NODES_MAX {
            return fail("nodes", format!("{} is over {NODES_MAX}", self.nodes));
        }
        if self.anchors == 0 || self.anchors > self.nodes {
            return fail(
                "anchors",
                format!("{} must be 1 to nodes ({})", self.anchors, self.nodes),
            );
        }
        if self.mesh_degree == 0 || self.mesh_degree > self.peers_per_node {
            return fail(
                "mesh_degree",
                format!(
                    "{} must be 1 to peers_per_node ({})",
                    self.mesh_degree, self.peers_per_node
                ),
            );
        }
        if self.latency_ms_min > self.latency_ms_max {
            return fail(
                "latency_ms_min",
                format!("{} is above latency_ms_max", self.latency_ms_min),
            );
        }
        for (key, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("churn", self.churn),
            ("late_join", self.late_join),
            ("short_ttl_fraction", self.short_ttl_fraction),
        ] {
            // Loss of 1 would make the safety phase meaningless; the rest
            // are fractions.
            if !((0.0..1.0).contains(&p) || p == 1.0 && key != "loss") {
                return fail(key, format!("{p} is not a probability below 1"));
            }
        }
        if self.churn + self.late_join > 0.9 {
            return fail(
                "churn",
                "churn + late_join above 0.9 leaves too few nodes up".into(),
            );
        }
        if self.clock_skew_ms_max > CLOCK_SKEW_MS_MAX {
            return fail(
                "clock_skew_ms_max",
                format!(
                    "{} is over {CLOCK_SKEW_MS_MAX} (30 days)",
                    self.clock_skew_ms_max
                ),
            );
        }
        for (key, v) in [
            ("event_interval_ms", self.event_interval_ms),
            ("sync_interval_ms", self.sync_interval_ms),
            ("heartbeat_ms", self.heartbeat_ms),
            ("sync_timeout_ms", self.sync_timeout_ms),
            ("check_interval_ms", self.check_interval_ms),
            ("liveness_ms_max", self.liveness_ms_max),
        ] {
            if v == 0 {
                return fail(key, "must be positive".into());
            }
        }
        Ok(())
    }

    /// The command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!(
            "cargo run -p hearth-sim --release -- --seed {} --nodes {} --events {} --loss {} \
             --duplicate {} --reorder {} --partitions {} --churn {} --late-join {} \
             --clock-skew-ms {} --mesh-degree {} --gossip-lazy {} --sync-interval-ms {} --flood-events {} --bandwidth {} \
             --liveness-ms-max {}",
            self.seed,
            self.nodes,
            self.events,
            self.loss,
            self.duplicate,
            self.reorder,
            self.partitions,
            self.churn,
            self.late_join,
            self.clock_skew_ms_max,
            self.mesh_degree,
            self.gossip_lazy,
            self.sync_interval_ms,
            self.flood_events,
            self.bandwidth_bytes_per_s,
            self.liveness_ms_max,
        );
        if self.adversaries == Adversaries::NONE {
            cmd.push_str(" --no-adversaries");
        }
        if self.verify_every_copy {
            cmd.push_str(" --verify-every-copy");
        }
        if self.conversations {
            cmd.push_str(" --conversations");
        }
        if self.own_stores {
            cmd.push_str(" --own-stores");
        }
        match self.inject_bug {
            Some(InjectedBug::FalseDuplicate) => cmd.push_str(" --inject-bug false-duplicate"),
            Some(InjectedBug::ArrivalOrderView) => cmd.push_str(" --inject-bug arrival-order-view"),
            Some(InjectedBug::FirstAcceptance) => cmd.push_str(" --inject-bug first-acceptance"),
            None => {}
        }
        cmd
    }
}

/// Largest clock skew a run accepts: 30 days.
pub const CLOCK_SKEW_MS_MAX: u64 = 30 * 24 * 3600 * 1000;

/// Most honest nodes in one run: memory and the all-pairs checks are sized
/// for this.
pub const NODES_MAX: usize = 10_000;

/// A configuration value that breaks a rule, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sim config key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}
