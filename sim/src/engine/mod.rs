//! The discrete-event engine: virtual clock, event queue, network model,
//! node slots, faults, adversaries, workload and the checker.
//!
//! One queue ordered by `(time, seq)` holds everything that happens: message
//! deliveries, core timers, sync timers, workload steps, faults and checks.
//! `seq` breaks ties in insertion order, and every random draw comes from a
//! [`SimRng`] stream derived from the run seed, so one seed is one run.
//! Nothing here iterates a hash-ordered collection or reads a clock.
//!
//! The network stands in for gossipsub: each node has a list of connected
//! peers in a random preference order, and its mesh is the first D of them
//! that are reachable (up, same partition group), which models GRAFT
//! replacing lost mesh peers. A node pushes a new event, and relays every
//! event its core `Accept`s, to its mesh (never back to the sender); a
//! duplicate cache with gossipsub's lifetime drops copies before they reach
//! the core. Each heartbeat a node announces the ids it sent lately (IHAVE)
//! to `gossip_lazy` connected peers outside its mesh, which pull what they
//! have not seen (IWANT), as gossipsub does. Anti-entropy sync with one
//! random connected peer runs every `sync_interval_ms`, and on every
//! (re)connection, through the core's own sync sessions.
//!
//! Every distinct event is decoded and verified once, by the first core that
//! receives it, and shared by all (see `SharedVerified`); a test checks that
//! verifying every copy gives the same trace.
//!
//! Each concept is one module: [`queue`], [`network`], [`sync`], [`faults`],
//! [`adversary`], [`workload`], [`conversations`] and [`checker`]; this one holds the [`Sim`]
//! itself, its construction, the run loop and the summary.

mod adversary;
mod checker;
mod conversations;
mod faults;
mod network;
mod queue;
mod sync;
mod workload;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::rc::Rc;
use std::sync::Arc;

use hearth_node::core::services::market::{ExpireParams, PostParams, PostView, UpdateParams};
use hearth_node::core::services::membership::{ProfileParams, SettingsParams};
use hearth_node::core::sync::{Mode, SyncMessage};
use hearth_node::core::{Caller, Config, Input, Node, NodeError, Output, Source, Verdict};
use hearth_node::store::{EventStore, StoreError};
use hearth_proto::{
    hash_bytes, Category, CommunityId, CommunitySettings, Event, EventError, EventHash, EventId,
    EventKey, ExpiryReason, Genesis, Identity, Level, NodeId, Payload, PostContent, PostCreated,
    PostExpired, PostUpdated, VerifiedEvent, LAMPORT_MAX,
};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, SimConfig, START_MS};
use crate::reference::{PostRow, Reference, ThreadRow};
use crate::report::{reason_class, LazySummary, Percentiles, Stats, Summary, SyncSummary};
use crate::rng::SimRng;
use crate::store::{EventTable, SharedVerified, SimStore};

pub use self::checker::{
    Violation, CLOCK_CONTAINED_MAX, REFERENCE_SAMPLE_PER_CHECK, SUMMARY_VIOLATIONS_MAX,
    SYNC_AUDIT_EVERY, SYNC_AUDIT_NODES_MAX, VIOLATIONS_MAX,
};
pub use self::conversations::{CLAIMS_TRACKED_MAX, SEALED_AUDIT_MAX};
pub use self::faults::Fault;
pub use self::network::SEEN_ENTRIES_MAX;
pub use self::queue::QUEUE_ENTRIES_MAX;
pub use self::workload::SETTINGS_SIGNED_MAX;
use self::{
    adversary::*, checker::*, conversations::*, network::*, queue::*, sync::*, workload::*,
};

/// A node's index: honest nodes first, then adversaries.
pub type Ix = usize;

/// Why a run could not go on (as opposed to a failed check, which is a
/// [`Violation`] in the summary).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("node {node} could not start: {source}")]
    Node { node: Ix, source: NodeError },
    #[error("node {node}'s store failed: {source}")]
    Store { node: Ix, source: StoreError },
    #[error("cannot sign a simulated event: {0}")]
    Sign(#[from] EventError),
    #[error("event queue is over {QUEUE_ENTRIES_MAX} entries: the model is feeding itself")]
    QueueFull,
    #[error("node {0} is not running")]
    NotRunning(Ix),
    #[error("node {node} refused a scenario action: {message}")]
    Refused { node: Ix, message: String },
}

#[derive(Debug)]
struct Slot {
    identity: Identity,
    core: Option<Node<SimStore>>,
    /// The durable store while the node is down.
    parked: Option<SimStore>,
    incarnation: u32,
    tick_at: Option<u64>,
    seen: SeenCache,
    /// Gossipsub's message cache: what this node sent to its mesh, by
    /// time, for IHAVE (recent heartbeats) and IWANT (a little longer).
    mcache: VecDeque<(u64, Rc<Gossip>)>,
    uplink_free_at: u64,
    skew_ms: i64,
    /// Largest log size seen: a log never loses an event it had.
    log_len_max: u64,
    /// Highest Lamport time of an event in this node's log, bombs left
    /// out (the clock rightly ignores them): its next event must be above.
    lamport_seen: u64,
    /// Syncs this node started, by peer.
    sync_out: BTreeMap<Ix, SyncOut>,
    up_since: u64,
    /// A late joiner not yet started: an anchor admits it when it joins,
    /// so its first posts may reach others before its admission does.
    awaiting_invite: bool,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Safety,
    Liveness,
}

/// The simulator. Scenario tests drive it step by step; [`run`] does a whole
/// randomised run.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    now: u64,
    queue: EventQueue,
    slots: Vec<Slot>,
    advs: Vec<Adversary>,
    /// Node ids of every index, honest and adversary.
    ids: Vec<NodeId>,
    genesis: VerifiedEvent,
    /// Connected peers in preference order, with each link's base latency.
    peers: Vec<Vec<(Ix, u64)>>,
    /// Partition group of each honest node (all 0 when healed).
    group: Vec<u32>,
    phase: Phase,
    faults_on: bool,
    rng_net: SimRng,
    rng_work: SimRng,
    rng_fault: SimRng,
    /// Every event that may enter a log.
    registry: BTreeMap<EventHash, EventInfo>,
    /// Keys that were never admitted: their posts must never show.
    never_admitted: BTreeSet<NodeId>,
    /// Honest posts, for updates and expiries.
    posts: Vec<(Ix, EventId)>,
    /// The flooder's posts (huge `expires_at`, some with a faked `ts`), for
    /// trusted members and anchors to moderate. At most
    /// [`HOSTILE_POSTS_MAX`]: moderation needs a choice, not all of them.
    hostile_posts: Vec<(NodeId, EventId)>,
    /// Honest non-anchors that set a display name, for the workload to
    /// remove now and then. At most one entry per node.
    named: Vec<Ix>,
    /// Claims the workload made (at most [`CLAIMS_TRACKED_MAX`]).
    claims: Vec<ClaimMade>,
    /// Sealed messages the final checks open (at most [`SEALED_AUDIT_MAX`]).
    sealed_sent: Vec<SealedSent>,
    /// Posts each honest node has expired: a second expiry is a bug.
    expiries_published: BTreeSet<(Ix, EventId)>,
    /// Reference-model checks done (rotates the sample).
    reference_checks: u64,
    /// Highest Lamport time of an honest event: the impostor and the
    /// forger publish above it, so their events would win if they counted.
    lamport_honest_max: u64,
    /// The workload's membership truth (only anchor 0 changes levels, so
    /// its own order is the (lamport, hash) order).
    levels: Vec<Level>,
    next_session: u64,
    checks: u64,
    stats: Stats,
    trace: Sha256,
    violations: Vec<Violation>,
    violation_count: u64,
    converge_ms: Option<u64>,
    converged: bool,
    /// Decoded events shared by every core (None: each verifies its own).
    memo: Option<Arc<SharedVerified>>,
    /// The run's event table the nodes' stores index (None: own stores).
    table: Option<Arc<EventTable>>,
}

fn derive_seed(seed: u64, what: &str, i: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_be_bytes());
    h.update(what.as_bytes());
    h.update(i.to_be_bytes());
    h.finalize().into()
}

fn seed_u64(seed: u64, what: &str, i: u64) -> u64 {
    let d = derive_seed(seed, what, i);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Each simulated node takes a view snapshot after this many arrivals: the
/// node's default before periodic snapshots were turned off, kept so that
/// traces and run costs stay what they were.
const SNAPSHOT_EVERY_EVENTS: u64 = 10_000;

/// Opens node `i`'s core on `store`, sharing the run's memo if it has one.
/// `bug` is the run's injected bug: the arrival-order view bug goes into
/// every core (the store bugs are node 1's, set on its store).
fn open_core(
    i: Ix,
    identity: &Identity,
    genesis: &VerifiedEvent,
    store: SimStore,
    seed: u64,
    memo: &Option<Arc<SharedVerified>>,
    bug: Option<crate::store::InjectedBug>,
) -> Result<Node<SimStore>, SimError> {
    // Periodic snapshots are off in a node by default; the simulator keeps
    // taking them, so restoring one stays tested under every fault.
    let config = Config {
        snapshot_every_events: SNAPSHOT_EVERY_EVENTS,
        ..Config::default()
    };
    let mut core = Node::new(identity.clone(), genesis, store, config, seed)
        .map_err(|source| SimError::Node { node: i, source })?;
    if let Some(memo) = memo {
        core.share_verified(memo.clone());
    }
    if bug == Some(crate::store::InjectedBug::ArrivalOrderView) {
        core.inject_arrival_order_bug();
    }
    if bug == Some(crate::store::InjectedBug::FirstAcceptance) {
        core.inject_first_acceptance_bug();
    }
    Ok(core)
}

impl Sim {
    /// Builds the community: identities, the genesis, admissions of every
    /// node (preloaded, as if invited before the run), the topology, and
    /// starts every node that is up from the start (`late` ones are not).
    pub fn new(cfg: SimConfig) -> Result<Sim, SimError> {
        Self::with_late(cfg, &[])
    }

    /// As [`Sim::new`], with the nodes in `late` starting down and empty:
    /// they must fetch the whole history when they join.
    pub fn with_late(cfg: SimConfig, late: &[Ix]) -> Result<Sim, SimError> {
        cfg.validate()?;
        let n = cfg.nodes;
        let mut rng_net = SimRng::new(cfg.seed, 1);
        let identities: Vec<Identity> = (0..n)
            .map(|i| Identity::from_seed(derive_seed(cfg.seed, "node", i as u64)))
            .collect();
        let a = cfg.adversaries;
        let mut advs = Vec::new();
        for (on, kind) in [
            (a.bad_signature, AdvKind::BadSignature),
            (a.non_member, AdvKind::NonMember),
            (a.lamport_bomb, AdvKind::LamportBomb),
            (a.flooder, AdvKind::Flooder),
            (a.impostor, AdvKind::Impostor),
            (a.sync_forger, AdvKind::SyncForger),
        ] {
            if on {
                let identity = Identity::from_seed(derive_seed(cfg.seed, "adversary", kind as u64));
                advs.push(Adversary {
                    identity,
                    kind,
                    peers: Vec::new(),
                    sent: 0,
                });
            }
        }
        let mut ids: Vec<NodeId> = identities.iter().map(|i| i.node_id()).collect();
        ids.extend(advs.iter().map(|a| a.identity.node_id()));

        let anchors: Vec<NodeId> = ids[..cfg.anchors].to_vec();
        let genesis = Event {
            id: EventId::from_parts(START_MS, 1),
            ts: START_MS,
            author: ids[0],
            lamport: 0,
            community: Default::default(),
            payload: Payload::Genesis(Genesis {
                name: "hearth-sim".into(),
                anchors,
            }),
        }
        .sign(&identities[0])?;

        let memo = (!cfg.verify_every_copy).then(SharedVerified::new);
        let table = (!cfg.own_stores).then(EventTable::new);
        // Anchor 0 admits everyone but the non-member and the late joiners,
        // before the run: a late joiner is invited when it first starts.
        let open = |i: Ix, store: SimStore| {
            let seed = seed_u64(cfg.seed, "rng", i as u64);
            open_core(
                i,
                &identities[i],
                &genesis,
                store,
                seed,
                &memo,
                cfg.inject_bug,
            )
        };
        let mut anchor0 = open(0, SimStore::new(ids[0], None, table.as_ref()))?;
        let mut admissions = Vec::new();
        for (i, id) in ids.iter().enumerate().skip(cfg.anchors) {
            if (i >= n && !advs[i - n].kind.admitted()) || late.contains(&i) {
                continue;
            }
            let ev = anchor0
                .set_member(START_MS, *id, Level::Member)
                .map_err(|e| SimError::Refused {
                    node: 0,
                    message: e.message,
                })?;
            admissions.push(ev);
        }
        while anchor0.poll_output().is_some() {}

        let mut registry = BTreeMap::new();
        for ev in std::iter::once(&genesis).chain(admissions.iter()) {
            registry.insert(
                *ev.hash(),
                EventInfo::new(START_MS, true, ev.event().lamport),
            );
        }

        let mut slots = Vec::with_capacity(n);
        let mut anchor0 = Some(anchor0);
        for (i, identity) in identities.iter().enumerate() {
            let bug = if i == 1 { cfg.inject_bug } else { None };
            let skew =
                rng_net.between(0, 2 * cfg.clock_skew_ms_max) as i64 - cfg.clock_skew_ms_max as i64;
            let (core, parked) = if late.contains(&i) {
                (None, Some(SimStore::new(ids[i], bug, table.as_ref())))
            } else if i == 0 {
                (anchor0.take(), None)
            } else {
                let mut node = open(i, SimStore::new(ids[i], bug, table.as_ref()))?;
                for ev in &admissions {
                    // Preloaded: the founding history every invited device
                    // carries. Verified once, when anchor 0 signed it.
                    let _ = node.log_mut().append_received(ev.clone());
                }
                // The change feed of that history (one level change per
                // admission, up to the log's bound) would wait for the
                // node's first input, to be dropped as every feed is here:
                // at 2,000 nodes it was a quarter of the heap.
                let _ = node.log_mut().take_changes();
                (Some(node), None)
            };
            slots.push(Slot {
                identity: identity.clone(),
                core,
                parked,
                incarnation: 0,
                tick_at: None,
                seen: SeenCache::default(),
                mcache: VecDeque::new(),
                uplink_free_at: START_MS,
                skew_ms: skew,
                log_len_max: 0,
                lamport_seen: 0,
                sync_out: BTreeMap::new(),
                up_since: START_MS,
                awaiting_invite: late.contains(&i),
            });
        }

        // Topology: a random graph where every node has at least
        // peers_per_node connections, in a random preference order.
        let want = cfg.peers_per_node.min(n - 1);
        let mut adj: Vec<BTreeMap<Ix, u64>> = vec![BTreeMap::new(); n];
        for i in 0..n {
            let mut guard = 0;
            while adj[i].len() < want && guard < 64 * want {
                guard += 1;
                let j = rng_net.index(n);
                if j == i || adj[i].contains_key(&j) {
                    continue;
                }
                let lat = rng_net.between(cfg.latency_ms_min, cfg.latency_ms_max);
                adj[i].insert(j, lat);
                adj[j].insert(i, lat);
            }
        }
        let peers: Vec<Vec<(Ix, u64)>> = adj
            .into_iter()
            .map(|m| {
                let mut v: Vec<(Ix, u64)> = m.into_iter().collect();
                rng_net.shuffle(&mut v);
                v
            })
            .collect();
        for adv in &mut advs {
            adv.peers = (0..cfg.mesh_degree).map(|_| rng_net.index(n)).collect();
            adv.peers.sort_unstable();
            adv.peers.dedup();
        }

        let never_admitted = advs
            .iter()
            .filter(|a| !a.kind.admitted())
            .map(|a| a.identity.node_id())
            .collect();
        let levels = (0..n)
            .map(|i| {
                if i < cfg.anchors {
                    Level::Anchor
                } else if late.contains(&i) {
                    Level::Removed // not admitted yet
                } else {
                    Level::Member
                }
            })
            .collect();
        let mut sim = Sim {
            rng_work: SimRng::new(cfg.seed, 2),
            rng_fault: SimRng::new(cfg.seed, 3),
            now: START_MS,
            queue: EventQueue::default(),
            group: vec![0; n],
            slots,
            advs,
            ids,
            genesis,
            peers,
            phase: Phase::Safety,
            faults_on: true,
            rng_net,
            registry,
            never_admitted,
            posts: Vec::new(),
            hostile_posts: Vec::new(),
            named: Vec::new(),
            claims: Vec::new(),
            sealed_sent: Vec::new(),
            expiries_published: BTreeSet::new(),
            reference_checks: 0,
            lamport_honest_max: 0,
            levels,
            next_session: 1,
            checks: 0,
            stats: Stats::default(),
            trace: Sha256::new(),
            violations: Vec::new(),
            violation_count: 0,
            converge_ms: None,
            converged: false,
            memo,
            table,
            cfg,
        };
        for i in 0..n {
            if sim.slots[i].core.is_some() {
                sim.slots[i].log_len_max = sim.log_len(i);
                sim.slots[i].lamport_seen = sim.lamport_held(i);
                sim.schedule(
                    START_MS,
                    Action::Tick {
                        node: i,
                        incarnation: 0,
                    },
                )?;
                sim.slots[i].tick_at = Some(START_MS);
                let first = START_MS + sim.rng_net.below(sim.cfg.sync_interval_ms);
                sim.schedule(
                    first,
                    Action::SyncTimer {
                        node: i,
                        incarnation: 0,
                    },
                )?;
                sim.schedule_heartbeat(i, 0)?;
            }
        }
        sim.schedule(START_MS + sim.cfg.check_interval_ms, Action::Check)?;
        Ok(sim)
    }

    // ---- accessors for scenarios -------------------------------------

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn node_id(&self, i: Ix) -> NodeId {
        self.ids[i]
    }

    /// A running node's core (None while it is down).
    pub fn node(&self, i: Ix) -> Option<&Node<SimStore>> {
        self.slots[i].core.as_ref()
    }

    /// The node's own clock: virtual time plus its skew.
    pub fn node_now(&self, i: Ix) -> u64 {
        self.now.saturating_add_signed(self.slots[i].skew_ms)
    }

    /// The flooder's posts so far (author, id), for scenarios to moderate.
    pub fn hostile_posts(&self) -> &[(NodeId, EventId)] {
        &self.hostile_posts
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    // ---- the queue ----------------------------------------------------

    /// Processes every action due up to `until`, then sets the clock there.
    pub fn run_until(&mut self, until: u64) -> Result<(), SimError> {
        while self.queue.next_due().is_some_and(|at| at <= until) {
            if let Some((at, action)) = self.queue.pop() {
                self.now = at;
                self.dispatch(action)?;
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    pub fn run_for(&mut self, ms: u64) -> Result<(), SimError> {
        self.run_until(self.now.saturating_add(ms))
    }

    fn dispatch(&mut self, action: Action) -> Result<(), SimError> {
        match action {
            Action::Deliver { from, to, msg } => self.on_deliver(from, to, msg),
            Action::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Action::SyncTimer { node, incarnation } => self.on_sync_timer(node, incarnation),
            Action::Heartbeat { node, incarnation } => self.on_heartbeat(node, incarnation),
            Action::SyncTimeout {
                node,
                peer,
                session,
            } => self.on_sync_timeout(node, peer, session),
            Action::Workload => {
                if self.phase == Phase::Safety {
                    self.workload_step()?;
                }
                Ok(())
            }
            Action::Adversary { adv } => {
                if self.faults_on {
                    self.adversary_step(adv)?;
                }
                Ok(())
            }
            Action::Fault(f) => {
                if self.faults_on {
                    self.apply_fault(f)?;
                }
                Ok(())
            }
            Action::Check => {
                self.check_invariants();
                self.schedule(self.now + self.cfg.check_interval_ms, Action::Check)
            }
        }
    }

    fn trace(&mut self, tag: u8, a: u64, b: u64, data: &[u8]) {
        self.trace.update(self.now.to_be_bytes());
        self.trace.update([tag]);
        self.trace.update(a.to_be_bytes());
        self.trace.update(b.to_be_bytes());
        self.trace.update(data);
    }

    // ---- the network ----------------------------------------------------

    // ---- timers ---------------------------------------------------------

    // ---- faults -----------------------------------------------------------

    // ---- adversaries --------------------------------------------------------

    // ---- workload --------------------------------------------------------

    // ---- the checker --------------------------------------------------------

    // ---- the randomised run --------------------------------------------------

    /// Schedules the workload, faults and adversaries of a randomised run;
    /// returns the end of the safety phase.
    pub fn plan(&mut self) -> Result<u64, SimError> {
        let mut t = self.now;
        for _ in 0..self.cfg.events {
            t += self.rng_work.exp(self.cfg.event_interval_ms).max(1);
            self.schedule(t, Action::Workload)?;
        }
        let span = t.saturating_sub(self.now).max(1_000);
        let start = self.now;
        let safety_end = t + 2_000;
        if self.cfg.partitions >= 2 {
            let groups = self.cfg.partitions;
            self.schedule(start + span / 5, Action::Fault(Fault::Partition { groups }))?;
            self.schedule(start + span * 7 / 10, Action::Fault(Fault::Heal))?;
        }
        let n = self.slots.len();
        let ordinary: Vec<Ix> = (self.cfg.anchors..n).collect();
        let churned =
            ((self.cfg.churn * ordinary.len() as f64).round() as usize).min(ordinary.len());
        let mut pool = ordinary.clone();
        self.rng_fault.shuffle(&mut pool);
        for &node in pool.iter().take(churned) {
            let at = start + self.rng_fault.below(span * 9 / 10);
            let clean = self.rng_fault.chance(0.5);
            self.schedule(at, Action::Fault(Fault::Crash { node, clean }))?;
            // A quarter stay away until liveness: the long absences.
            if !self.rng_fault.chance(0.25) {
                let back = at + self.rng_fault.exp(self.cfg.downtime_ms_mean).max(1);
                self.schedule(back, Action::Fault(Fault::Restart { node }))?;
            }
        }
        for a in 0..self.advs.len() {
            for k in 0..10u64 {
                self.schedule(start + span * k / 10 + 1, Action::Adversary { adv: a })?;
            }
        }
        Ok(safety_end)
    }

    /// The nodes a randomised run starts late, drawn from the seed.
    pub fn late_joiners(cfg: &SimConfig) -> Vec<Ix> {
        let ordinary = cfg.nodes.saturating_sub(cfg.anchors);
        let count = ((cfg.late_join * ordinary as f64).round() as usize).min(ordinary);
        let mut rng = SimRng::new(cfg.seed, 4);
        let mut pool: Vec<Ix> = (cfg.anchors..cfg.nodes).collect();
        rng.shuffle(&mut pool);
        pool.truncate(count);
        pool.sort_unstable();
        pool
    }

    /// Schedules each late joiner's first start inside the safety phase
    /// (a third of them only at liveness).
    fn plan_joins(&mut self, late: &[Ix], safety_end: u64) -> Result<(), SimError> {
        let span = safety_end.saturating_sub(self.now).max(1);
        for &node in late {
            if !self.rng_fault.chance(1.0 / 3.0) {
                let at = self.now + span / 3 + self.rng_fault.below(span * 2 / 3);
                self.schedule(at, Action::Fault(Fault::Restart { node }))?;
            }
        }
        Ok(())
    }

    /// How much of issue 10's rules the run exercised (`Summary::rules`).
    fn rules_exercised(&self) -> BTreeMap<String, u64> {
        let mut rules = self.stats.rules_done.clone();
        let Some(model) = self.reference_of(0) else {
            return rules;
        };
        let year_ahead = self.now.saturating_add(365 * 24 * 3600 * 1000);
        let mut count = |what: &str, n: usize| {
            rules.insert(what.to_owned(), n as u64);
        };
        let posts = model.posts().values();
        count(
            "capped",
            posts
                .clone()
                .filter(|p| p.expires_at < p.content.expires_at)
                .count(),
        );
        count("over_limit", posts.clone().filter(|p| p.over_limit).count());
        count(
            "moderated",
            posts
                .clone()
                .filter(|p| {
                    p.expired
                        .as_ref()
                        .is_some_and(|(by, r, _)| *r == ExpiryReason::Moderated && *by != p.author)
                })
                .count(),
        );
        count(
            "ts_faked",
            posts.filter(|p| p.content_ts > year_ahead).count(),
        );
        count("named", model.names().len());
        let defaults = model.settings().name == "hearth-sim"
            && model.settings().post_ttl_max_s == crate::reference::POST_TTL_MAX_S_DEFAULT
            && model.settings().posts_per_author_max
                == crate::reference::POSTS_PER_AUTHOR_MAX_DEFAULT;
        count("settings_counted", usize::from(!defaults));
        rules
    }

    /// The summary of the run so far.
    pub fn summary(&self) -> Summary {
        let s = &self.stats;
        // Per-event figures count only events published during the run:
        // the preloaded founding history never crossed the network.
        let published = self
            .registry
            .values()
            .filter(|i| i.published_ms > START_MS || !i.honest)
            .count();
        let events = published.max(1) as f64;
        // Honest events of the run: publication to the last node storing
        // it (every node holds it once the run has converged).
        let full_delivery: Vec<u64> = self
            .registry
            .values()
            .filter(|i| i.honest && i.published_ms > START_MS)
            .map(|i| i.last_stored_ms.saturating_sub(i.published_ms))
            .collect();
        let honest = self.registry.values().filter(|i| i.honest).count() as u64;
        let nodes = self.slots.len() as f64;
        let deliveries = s.gossip_delivered as f64 / (events * nodes);
        Summary {
            converged: self.converged,
            invariants_held: self.violation_count == 0,
            seed: self.cfg.seed,
            trace_hash: hex::encode(self.trace.clone().finalize()),
            nodes: self.slots.len(),
            log_events: self.log_len(0),
            honest_events: honest,
            workload_actions: s.workload_done,
            delivery_ms: Percentiles::of(&s.delivery_ms),
            full_delivery_ms: Percentiles::of(&full_delivery),
            catchup_delivery_ms: Percentiles::of(&s.catchup_ms),
            converge_ms: self.converge_ms,
            virtual_ms: self.now - START_MS,
            gossip_messages_per_event: s.gossip_sent as f64 / events,
            gossip_bytes_per_event: s.gossip_bytes as f64 / events,
            gossip_deliveries_per_event_per_node: deliveries,
            duplicates_per_event_per_node: s.gossip_duplicates as f64 / (events * nodes),
            eager_duplicates_expected: self.cfg.mesh_degree.saturating_sub(1) as f64,
            lazy: LazySummary {
                ihave: s.ihave_sent,
                iwant: s.iwant_sent,
                pulled: s.gossip_pulled,
                bytes_per_event: s.lazy_bytes as f64 / events,
            },
            sync_bytes_per_event: s.sync_bytes as f64 / events,
            sync: SyncSummary {
                sessions: s.sync_sessions,
                completed: s.sync_completed,
                round_trips: s.sync_round_trips,
                timeouts: s.sync_timeouts,
                errors: s.sync_errors,
                bytes: s.sync_bytes,
                split_ranges: s.sync_split_ranges,
                id_lists: s.sync_id_lists,
                sketch_roots: s.sync_sketch_roots,
            },
            stored_via_gossip: s.stored_via_gossip,
            stored_via_sync: s.stored_via_sync,
            lost: s.lost,
            dropped: s.dropped,
            crashes: s.crashes,
            lost_unflushed: s.lost_unflushed,
            rejected: s.rejected.clone(),
            ignored: s.ignored.clone(),
            workload_refused: s.workload_refused.clone(),
            rules: self.rules_exercised(),
            violation_count: self.violation_count,
            violations: self
                .violations
                .iter()
                .take(SUMMARY_VIOLATIONS_MAX)
                .map(|v| v.to_string())
                .collect(),
            wall_ms: None,
        }
    }
}

/// One randomised run: safety phase with every configured fault, then the
/// liveness phase. The summary says whether it converged and every
/// invariant held.
pub fn run(cfg: SimConfig) -> Result<Summary, SimError> {
    run_observed(cfg, |_| {})
}

/// Virtual time between two calls of `run_observed`'s observer.
pub const OBSERVE_EVERY_MS: u64 = 30_000;

/// As [`run`], calling `observe` every [`OBSERVE_EVERY_MS`] of virtual
/// time during the safety phase and once at the end (progress lines).
pub fn run_observed(cfg: SimConfig, mut observe: impl FnMut(&Sim)) -> Result<Summary, SimError> {
    let late = Sim::late_joiners(&cfg);
    let mut sim = Sim::with_late(cfg, &late)?;
    let safety_end = sim.plan()?;
    sim.plan_joins(&late, safety_end)?;
    while sim.now < safety_end {
        sim.run_until(safety_end.min(sim.now + OBSERVE_EVERY_MS))?;
        observe(&sim);
    }
    sim.liveness()?;
    observe(&sim);
    Ok(sim.summary())
}
