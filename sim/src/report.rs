//! What a run measured, and the one-line JSON summary the CLI prints last.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counters the engine bumps as it goes. Plain numbers: no behaviour
/// depends on them.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub gossip_sent: u64,
    pub gossip_bytes: u64,
    /// Gossip messages that reached a running node.
    pub gossip_delivered: u64,
    /// Deliveries the duplicate cache or the log recognised as seen.
    pub gossip_duplicates: u64,
    /// Lazy gossip: IHAVE announcements, IWANT requests, and messages sent
    /// in answer to an IWANT (also counted in `gossip_sent`).
    pub ihave_sent: u64,
    pub iwant_sent: u64,
    pub gossip_pulled: u64,
    pub lazy_messages: u64,
    pub lazy_bytes: u64,
    pub sync_messages: u64,
    pub sync_bytes: u64,
    pub sync_sessions: u64,
    pub sync_completed: u64,
    pub sync_round_trips: u64,
    pub sync_timeouts: u64,
    pub sync_errors: u64,
    /// Ranges of sync messages that carried several open ranges: a range
    /// split into buckets or partitioned into sketched sub-ranges.
    pub sync_split_ranges: u64,
    /// `Ids` ranges: small ranges settled by explicit id lists.
    pub sync_id_lists: u64,
    /// `Roots` ranges: a sketch (or sketch difference) that decoded and
    /// asks for the peer's items by the roots of their polynomial.
    pub sync_sketch_roots: u64,
    /// Messages lost to the loss fault.
    pub lost: u64,
    /// Messages to a down or unreachable node.
    pub dropped: u64,
    pub duplicated: u64,
    pub stored_via_gossip: u64,
    pub stored_via_sync: u64,
    pub stored_other: u64,
    pub crashes: u64,
    /// Received events hard crashes lost because they were not flushed yet.
    pub lost_unflushed: u64,
    pub restarts: u64,
    pub rejected: BTreeMap<String, u64>,
    pub ignored: BTreeMap<String, u64>,
    pub workload_done: u64,
    pub workload_refused: BTreeMap<String, u64>,
    /// Issue 10's acts the workload carried out: settings signed, names
    /// set, posts moderated (see `Summary::rules`).
    pub rules_done: BTreeMap<String, u64>,
    /// Delivery latency for nodes that were up when the event was published.
    pub delivery_ms: Vec<u64>,
    /// Delivery latency for nodes that came up after publication (churn,
    /// late joiners): catch-up time, kept apart so it does not hide the
    /// gossip figure.
    pub catchup_ms: Vec<u64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(values: &[u64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut v = values.to_vec();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            count: v.len() as u64,
            p50: at(0.50),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Lazy gossip (IHAVE/IWANT) over the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LazySummary {
    pub ihave: u64,
    pub iwant: u64,
    /// Messages sent in answer to an IWANT.
    pub pulled: u64,
    pub bytes_per_event: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SyncSummary {
    pub sessions: u64,
    pub completed: u64,
    pub round_trips: u64,
    pub timeouts: u64,
    pub errors: u64,
    pub bytes: u64,
    /// See [`Stats::sync_split_ranges`].
    pub split_ranges: u64,
    pub id_lists: u64,
    pub sketch_roots: u64,
}

/// The run's outcome. Serialised as the CLI's last stdout line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub converged: bool,
    pub invariants_held: bool,
    pub seed: u64,
    /// SHA-256 over the ordered trace of deliveries and core outputs: equal
    /// for two runs of one seed, or the simulator is not deterministic.
    pub trace_hash: String,
    pub nodes: usize,
    /// Events in the community log at the end (all valid events).
    pub log_events: u64,
    /// Events published by honest nodes.
    pub honest_events: u64,
    pub workload_actions: u64,
    /// Per delivery: publication to one node storing it, for nodes up
    /// when it was published.
    pub delivery_ms: Percentiles,
    /// Per event: publication to the last node storing it, the virtual
    /// time to full delivery (includes partitions and nodes that were
    /// down until the liveness phase).
    pub full_delivery_ms: Percentiles,
    pub catchup_delivery_ms: Percentiles,
    /// Virtual time from the start of the liveness phase to convergence.
    pub converge_ms: Option<u64>,
    pub virtual_ms: u64,
    pub gossip_messages_per_event: f64,
    pub gossip_bytes_per_event: f64,
    /// Gossip copies a node receives per event (eager push to D peers makes
    /// this about D when everyone is up); `duplicates` is that minus the
    /// first copy.
    pub gossip_deliveries_per_event_per_node: f64,
    pub duplicates_per_event_per_node: f64,
    /// What eager push alone implies: each node hears an event from each of
    /// its D mesh peers but one (the sender it came from), so D - 1
    /// duplicates. Loss, partitions and churn push the measured figure
    /// below this; lazy pulls add to it.
    pub eager_duplicates_expected: f64,
    pub lazy: LazySummary,
    pub sync_bytes_per_event: f64,
    pub sync: SyncSummary,
    pub stored_via_gossip: u64,
    pub stored_via_sync: u64,
    pub lost: u64,
    pub dropped: u64,
    pub crashes: u64,
    /// Received events that hard crashes lost before a flush.
    pub lost_unflushed: u64,
    pub rejected: BTreeMap<String, u64>,
    pub ignored: BTreeMap<String, u64>,
    pub workload_refused: BTreeMap<String, u64>,
    /// How much of issue 10's rules the run exercised: the workload's acts
    /// (`settings signed`, `names set`, `moderations`) and, in node 0's
    /// final log as the reference model reads it, posts `capped` (effective
    /// expiry below the author's), `over_limit`, `moderated` (a counting
    /// moderation), `ts_faked` (content clock over a year ahead), `named`
    /// (display names shown) and `settings_counted` (1 if not the defaults).
    pub rules: BTreeMap<String, u64>,
    pub violation_count: u64,
    pub violations: Vec<String>,
    /// Wall time, filled in by the CLI (never by the engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.converged && self.invariants_held
    }
}

/// Collapses the variable parts of a refusal reason (hashes, keys) so
/// reasons can be counted: runs of 16 or more hex digits become `<id>`, and
/// numbers become `N`.
pub fn reason_class(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let chars: Vec<char> = reason.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if run >= 16 {
            out.push_str("<id>");
            i += run;
        } else if chars[i].is_ascii_digit() {
            let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            out.push('N');
            i += digits;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_list() {
        let v: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p99, p.max, p.count), (51, 99, 100, 100));
    }

    #[test]
    fn reasons_lose_their_ids() {
        let r = reason_class("duplicate event 0123456789abcdef0123: already held");
        assert_eq!(r, "duplicate event <id>: already held");
    }
}
