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

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
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
use crate::reference::{PostRow, Reference};
use crate::report::{reason_class, LazySummary, Percentiles, Stats, Summary, SyncSummary};
use crate::rng::SimRng;
use crate::store::{SharedVerified, SimStore};

/// Most queued actions at once. A run of 1,000 nodes holds a few hundred
/// thousand (in-flight messages plus one timer per node); far more means a
/// feedback loop in the model, which should stop the run, not eat memory.
pub const QUEUE_ENTRIES_MAX: usize = 20_000_000;
/// Entries in one node's duplicate cache, beside its time limit: a flood
/// cannot grow it without bound.
pub const SEEN_ENTRIES_MAX: usize = 1 << 18;
/// Violations kept with their text (the rest are counted).
pub const VIOLATIONS_MAX: usize = 64;
/// Violations the one-line summary lists (keeps the line short).
pub const SUMMARY_VIOLATIONS_MAX: usize = 8;
/// A node's Lamport clock above this means a Lamport bomb got through:
/// honest clocks grow by one per event, and 2^40 is far beyond any run.
pub const CLOCK_CONTAINED_MAX: u64 = 1 << 40;
/// Heartbeats whose messages an IHAVE announces (gossipsub's
/// `history_gossip`).
const HISTORY_GOSSIP: u64 = 3;
/// Heartbeats a message stays in the cache for IWANT (`history_length`).
const MCACHE_HEARTBEATS: u64 = 5;
/// Peers a restarted or healed node syncs with at once ("on connect").
const SYNC_ON_CONNECT_PEERS: usize = 2;
/// Nodes whose views are compared with the reference model at each
/// safety-phase check. The model rebuilds from a node's whole log, so this
/// bounds a check's cost; the rotation reaches every node over a run, and
/// at the end of the liveness phase every node is compared.
pub const REFERENCE_SAMPLE_PER_CHECK: usize = 4;
/// Up to this many nodes every completed sync is audited for
/// completeness; above it one in [`SYNC_AUDIT_EVERY`] (an audit reads both
/// logs, which at 1,000 nodes and 10,000 events would dominate the run).
pub const SYNC_AUDIT_NODES_MAX: usize = 200;
pub const SYNC_AUDIT_EVERY: u64 = 16;
/// Mismatching posts a reference violation names (keeps the text short).
const MISMATCH_DETAIL_MAX: usize = 3;
/// Hostile posts kept for moderators to pick from (see `hostile_posts`).
const HOSTILE_POSTS_MAX: usize = 4_096;
/// The flooder's faked clock on every fourth post: a century ahead, so the
/// TTL cap (which counts from `ts`) cannot reach it; only moderation can.
const FAKED_TS_AHEAD_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Settings the anchors sign in turn: the cap lowered to a day, an hour
/// or minutes and the per-author bound to a few posts, so both bite
/// within a short run (the flooder alone posts more than any of these).
const SETTINGS_CHOICES: [(u64, u64); 4] = [(86_400, 5), (3_600, 10), (600, 3), (120, 2)];

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

/// A broken invariant: the checker's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An event that no honest node or valid adversary produced entered a log.
    InvalidEventStored { node: Ix, hash: EventHash },
    /// A node's log holds fewer events than it once did (durably, across
    /// a hard crash).
    LogShrank { node: Ix, had: u64, has: u64 },
    /// A hard crash lost an event the node had published itself: the log
    /// promises local events are flushed once appended.
    LocalEventLost { node: Ix, hash: EventHash },
    /// A listed post whose author is not an active member.
    InactiveAuthorShown { node: Ix, author: NodeId },
    /// A Lamport bomb moved an honest clock.
    ClockBombed { node: Ix, clock: u64 },
    /// Liveness: no convergence within the bound.
    NotConverged { detail: String },
    /// Incremental views differ from a full replay.
    ReplayMismatch { node: Ix },
    /// Views restored from a snapshot differ from the incremental ones.
    RestoreMismatch { node: Ix },
    /// An honest event is missing from the converged log.
    HonestEventMissing { hash: EventHash },
    /// A node's views differ from the reference model over its own log.
    ReferenceMismatch { node: Ix, detail: String },
    /// A node's log holds an event whose author the vouching closure over
    /// that same log does not vouch for.
    UnvouchedEventStored { node: Ix, author: NodeId },
    /// An honest node published a second expiry of one post (its views
    /// already showed the post expired: a sweeper or service bug).
    RedundantExpiry { node: Ix, target: EventId },
    /// An honest node published an event whose Lamport time is not above
    /// every (non-bomb) event it already held: its clock did not follow
    /// what it received, so its updates can sort below what they replace.
    LamportNotAdvanced { node: Ix, lamport: u64, seen: u64 },
    /// A sync reported complete while one side still lacked `missing`
    /// events the other held when it started.
    SyncIncomplete {
        initiator: Ix,
        responder: Ix,
        lacking: Ix,
        missing: u64,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::InvalidEventStored { node, hash } => {
                write!(f, "node {node} stored invalid event {hash}")
            }
            Violation::LogShrank { node, had, has } => {
                write!(f, "node {node}'s log shrank from {had} to {has} events")
            }
            Violation::InactiveAuthorShown { node, author } => {
                write!(f, "node {node} lists a post by inactive author {author}")
            }
            Violation::LocalEventLost { node, hash } => {
                write!(f, "node {node} lost its own event {hash} in a crash")
            }
            Violation::ClockBombed { node, clock } => {
                write!(f, "node {node}'s clock reached {clock}")
            }
            Violation::NotConverged { detail } => write!(f, "not converged: {detail}"),
            Violation::ReplayMismatch { node } => {
                write!(f, "node {node}: incremental views != full replay")
            }
            Violation::RestoreMismatch { node } => {
                write!(f, "node {node}: snapshot restore != incremental views")
            }
            Violation::HonestEventMissing { hash } => {
                write!(f, "honest event {hash} missing from the converged log")
            }
            Violation::ReferenceMismatch { node, detail } => {
                write!(
                    f,
                    "node {node}'s views differ from the reference model: {detail}"
                )
            }
            Violation::UnvouchedEventStored { node, author } => {
                write!(
                    f,
                    "node {node} stored an event of unvouched author {author}"
                )
            }
            Violation::RedundantExpiry { node, target } => {
                write!(f, "node {node} expired post {target} a second time")
            }
            Violation::LamportNotAdvanced {
                node,
                lamport,
                seen,
            } => write!(
                f,
                "node {node} published at Lamport {lamport} after holding an event at {seen}"
            ),
            Violation::SyncIncomplete {
                initiator,
                responder,
                lacking,
                missing,
            } => write!(
                f,
                "sync {initiator} -> {responder} completed with node {lacking} lacking {missing} events"
            ),
        }
    }
}

#[derive(Debug, Clone)]
enum Msg {
    /// An event, shared by every copy in flight.
    Gossip(Rc<Gossip>),
    SyncRequest {
        session: u64,
        bytes: Vec<u8>,
    },
    SyncResponse {
        session: u64,
        bytes: Vec<u8>,
    },
    /// Lazy gossip: "I have these" (ids of recent messages), sent each
    /// heartbeat to a few connected peers outside the mesh.
    IHave(Rc<[EventHash]>),
    /// "Send me these", the answer to an IHAVE naming unseen ids.
    IWant(Vec<EventHash>),
}

/// A gossip message: event bytes and their message id (SHA-256 of the
/// bytes, as gossipsub is configured to compute it; computed once here
/// rather than at every hop, which gives the same id).
#[derive(Debug)]
struct Gossip {
    id: EventHash,
    bytes: Vec<u8>,
}

impl Gossip {
    fn new(bytes: Vec<u8>) -> Rc<Gossip> {
        Rc::new(Gossip {
            id: hash_bytes(&bytes),
            bytes,
        })
    }
}

impl Msg {
    fn len(&self) -> usize {
        match self {
            Msg::Gossip(g) => g.bytes.len(),
            Msg::IHave(ids) => ids.len() * 32,
            Msg::IWant(ids) => ids.len() * 32,
            Msg::SyncRequest { bytes, .. } | Msg::SyncResponse { bytes, .. } => bytes.len(),
        }
    }
}

/// A fault the random run schedules (scenarios call the methods directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Partition { groups: usize },
    Heal,
    Crash { node: Ix, clean: bool },
    Restart { node: Ix },
}

#[derive(Debug)]
enum Action {
    Deliver { from: Ix, to: Ix, msg: Msg },
    Tick { node: Ix, incarnation: u32 },
    SyncTimer { node: Ix, incarnation: u32 },
    Heartbeat { node: Ix, incarnation: u32 },
    SyncTimeout { node: Ix, peer: Ix, session: u64 },
    Workload,
    Adversary { adv: usize },
    Fault(Fault),
    Check,
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Gossipsub's duplicate cache: message ids seen within `ttl_ms`.
///
/// Keyed by the first 8 bytes of the id: ids are SHA-256 outputs, so two
/// messages of one run share a prefix with odds near 2^-40, and u64 keys
/// make the lookups that every delivery and IHAVE entry does cheap (this
/// cache was a tenth of a 1,000-node run).
#[derive(Debug, Default)]
struct SeenCache {
    set: BTreeSet<u64>,
    order: VecDeque<(u64, u64)>,
}

fn seen_key(hash: &EventHash) -> u64 {
    let b = &hash.0;
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl SeenCache {
    /// Records `hash`; false if it was already there.
    fn insert(&mut self, now: u64, ttl_ms: u64, hash: EventHash) -> bool {
        while let Some(&(t, k)) = self.order.front() {
            if now.saturating_sub(t) < ttl_ms && self.order.len() < SEEN_ENTRIES_MAX {
                break;
            }
            self.order.pop_front();
            self.set.remove(&k);
        }
        let key = seen_key(&hash);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }

    fn contains(&self, hash: &EventHash) -> bool {
        self.set.contains(&seen_key(hash))
    }

    fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }
}

#[derive(Debug, Clone, Copy)]
struct SyncOut {
    session: u64,
    last_ms: u64,
    /// Both logs' last arrival numbers when the sync started: when it
    /// completes, each side must hold everything the other held then.
    own_arrival: u64,
    peer_arrival: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdvKind {
    BadSignature,
    NonMember,
    LamportBomb,
    Flooder,
    Impostor,
    SyncForger,
}

impl AdvKind {
    /// Whether anchor 0 admits this adversary before the run.
    fn admitted(self) -> bool {
        !matches!(self, AdvKind::NonMember | AdvKind::SyncForger)
    }
}

#[derive(Debug)]
struct Adversary {
    identity: Identity,
    kind: AdvKind,
    peers: Vec<Ix>,
    sent: u64,
}

#[derive(Debug, Clone, Copy)]
struct EventInfo {
    published_ms: u64,
    honest: bool,
    lamport: u64,
    /// The last time a node stored it: once every node holds it, the
    /// event's full delivery time.
    last_stored_ms: u64,
}

impl EventInfo {
    fn new(published_ms: u64, honest: bool, lamport: u64) -> EventInfo {
        EventInfo {
            published_ms,
            honest,
            lamport,
            last_stored_ms: published_ms,
        }
    }
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
    seq: u64,
    queue: BinaryHeap<Scheduled>,
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
    let mut core = Node::new(identity.clone(), genesis, store, Config::default(), seed)
        .map_err(|source| SimError::Node { node: i, source })?;
    if let Some(memo) = memo {
        core.share_verified(memo.clone());
    }
    if bug == Some(crate::store::InjectedBug::ArrivalOrderView) {
        core.inject_arrival_order_bug();
    }
    Ok(core)
}

const TAGS: [&str; 8] = [
    "tools", "garden", "food", "kids", "repair", "lift", "books", "power",
];

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
        let mut anchor0 = open(0, SimStore::new(ids[0], None))?;
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
                (None, Some(SimStore::new(ids[i], bug)))
            } else if i == 0 {
                (anchor0.take(), None)
            } else {
                let mut node = open(i, SimStore::new(ids[i], bug))?;
                for ev in &admissions {
                    // Preloaded: the founding history every invited device
                    // carries. Verified once, when anchor 0 signed it.
                    let _ = node.log_mut().append_received(ev.clone());
                }
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
            seq: 0,
            queue: BinaryHeap::new(),
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

    fn schedule(&mut self, at: u64, action: Action) -> Result<(), SimError> {
        if self.queue.len() >= QUEUE_ENTRIES_MAX {
            return Err(SimError::QueueFull);
        }
        self.seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            action,
        });
        Ok(())
    }

    /// Processes every action due up to `until`, then sets the clock there.
    pub fn run_until(&mut self, until: u64) -> Result<(), SimError> {
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            if let Some(s) = self.queue.pop() {
                self.now = s.at;
                self.dispatch(s.action)?;
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

    fn violation(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(v);
        }
    }

    // ---- the network ----------------------------------------------------

    fn is_up(&self, i: Ix) -> bool {
        i >= self.slots.len() || self.slots[i].core.is_some()
    }

    /// Whether a message can pass between `a` and `b` now (adversaries sit
    /// outside partitions: they are not what partitions test).
    fn reachable(&self, a: Ix, b: Ix) -> bool {
        let n = self.slots.len();
        self.is_up(a) && self.is_up(b) && (a >= n || b >= n || self.group[a] == self.group[b])
    }

    /// The node's current mesh: its first D reachable connected peers.
    fn mesh(&self, i: Ix) -> Vec<Ix> {
        self.peers[i]
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| self.reachable(i, p))
            .take(self.cfg.mesh_degree)
            .collect()
    }

    fn link_latency(&self, from: Ix, to: Ix) -> u64 {
        let n = self.slots.len();
        if from >= n || to >= n {
            return self.cfg.latency_ms_max;
        }
        self.peers[from]
            .iter()
            .find(|&&(p, _)| p == to)
            .map_or(self.cfg.latency_ms_max, |&(_, l)| l)
    }

    /// Sends one message through the link model: bandwidth queueing,
    /// latency and jitter, and, while faults are on, loss, reordering and
    /// duplication.
    fn send(&mut self, from: Ix, to: Ix, msg: Msg) -> Result<(), SimError> {
        let len = msg.len() as u64;
        match &msg {
            Msg::Gossip(_) => {
                self.stats.gossip_sent += 1;
                self.stats.gossip_bytes += len;
            }
            Msg::IHave(_) | Msg::IWant(_) => {
                self.stats.lazy_messages += 1;
                self.stats.lazy_bytes += len;
            }
            _ => {
                self.stats.sync_messages += 1;
                self.stats.sync_bytes += len;
            }
        }
        if !self.reachable(from, to) {
            self.stats.dropped += 1;
            return Ok(());
        }
        if self.faults_on && self.rng_net.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return Ok(());
        }
        let mut depart = self.now;
        if from < self.slots.len() && self.cfg.bandwidth_bytes_per_s > 0 {
            let tx_ms = len * 1000 / self.cfg.bandwidth_bytes_per_s;
            let slot = &mut self.slots[from];
            depart = slot.uplink_free_at.max(self.now) + tx_ms;
            slot.uplink_free_at = depart;
        }
        let mut at =
            depart + self.link_latency(from, to) + self.rng_net.exp(self.cfg.jitter_ms_mean);
        if self.faults_on && self.rng_net.chance(self.cfg.reorder) {
            at += self.rng_net.below(self.cfg.reorder_ms_max);
        }
        if self.faults_on && self.rng_net.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            let again = at + self.rng_net.exp(self.cfg.jitter_ms_mean.max(1) * 4);
            self.schedule(
                again,
                Action::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            )?;
        }
        self.schedule(at, Action::Deliver { from, to, msg })
    }

    fn gossip(&mut self, from: Ix, except: Option<Ix>, msg: &Rc<Gossip>) -> Result<(), SimError> {
        if from < self.slots.len() && self.cfg.gossip_lazy > 0 {
            let now = self.now;
            self.slots[from].mcache.push_back((now, msg.clone()));
        }
        for peer in self.mesh(from) {
            if Some(peer) != except {
                self.send(from, peer, Msg::Gossip(msg.clone()))?;
            }
        }
        Ok(())
    }

    fn on_deliver(&mut self, from: Ix, to: Ix, msg: Msg) -> Result<(), SimError> {
        let n = self.slots.len();
        if to >= n && self.reachable(from, to) {
            // Only the sync forger answers anything (its syncs).
            if let (Msg::SyncRequest { session, bytes }, AdvKind::SyncForger) =
                (&msg, self.advs[to - n].kind)
            {
                return self.sync_forger_answer(to - n, from, *session, bytes);
            }
        }
        // A partition or crash after sending breaks the connection too.
        if !self.reachable(from, to) || to >= n {
            self.stats.dropped += 1;
            return Ok(());
        }
        let from_id = self.ids[from];
        let node_now = self.node_now(to);
        match msg {
            Msg::Gossip(msg) => {
                self.stats.gossip_delivered += 1;
                let hash = msg.id;
                let ttl = self.cfg.seen_ttl_ms;
                let now = self.now;
                if !self.slots[to].seen.insert(now, ttl, hash) {
                    self.stats.gossip_duplicates += 1;
                    self.trace(1, from as u64, to as u64, &hash.0);
                    return Ok(());
                }
                self.trace(2, from as u64, to as u64, &hash.0);
                let Some(core) = self.slots[to].core.as_mut() else {
                    return Ok(());
                };
                core.handle(
                    node_now,
                    Input::Received {
                        bytes: msg.bytes.clone(),
                        source: Source::Peer(from_id),
                    },
                );
                self.drain(to, Some((from, &msg)))
            }
            Msg::IHave(ids) => {
                self.trace(13, from as u64, to as u64, &[]);
                let want: Vec<EventHash> = ids
                    .iter()
                    .filter(|id| !self.slots[to].seen.contains(id))
                    .copied()
                    .collect();
                if want.is_empty() {
                    return Ok(());
                }
                self.stats.iwant_sent += 1;
                self.send(to, from, Msg::IWant(want))
            }
            Msg::IWant(ids) => {
                self.trace(14, from as u64, to as u64, &[]);
                let found: Vec<Rc<Gossip>> = ids
                    .iter()
                    .filter_map(|id| {
                        self.slots[to]
                            .mcache
                            .iter()
                            .find(|(_, g)| g.id == *id)
                            .map(|(_, g)| g.clone())
                    })
                    .collect();
                for g in found {
                    self.stats.gossip_pulled += 1;
                    self.send(to, from, Msg::Gossip(g))?;
                }
                Ok(())
            }
            Msg::SyncRequest { session, bytes } => {
                self.trace(3, from as u64, to as u64, &session.to_be_bytes());
                self.count_sync_ranges(&bytes);
                let Some(core) = self.slots[to].core.as_mut() else {
                    return Ok(());
                };
                let answer = core.sync_answer(from_id, &bytes);
                self.drain(to, None)?;
                match answer {
                    Ok(reply) => self.send(
                        to,
                        from,
                        Msg::SyncResponse {
                            session,
                            bytes: reply,
                        },
                    ),
                    Err(e) => {
                        self.stats.sync_errors += 1;
                        *self
                            .stats
                            .rejected
                            .entry(format!("sync: {}", reason_class(&e.to_string())))
                            .or_default() += 1;
                        Ok(())
                    }
                }
            }
            Msg::SyncResponse { session, bytes } => {
                self.trace(4, from as u64, to as u64, &session.to_be_bytes());
                self.count_sync_ranges(&bytes);
                let current = self.slots[to].sync_out.get(&from).map(|s| s.session);
                if current != Some(session) {
                    return Ok(()); // an answer to a sync given up on
                }
                self.stats.sync_round_trips += 1;
                let Some(core) = self.slots[to].core.as_mut() else {
                    return Ok(());
                };
                let next = core.sync_continue(from_id, &bytes);
                self.drain(to, None)?;
                match next {
                    Ok(Some(msg)) => {
                        let now = self.now;
                        if let Some(s) = self.slots[to].sync_out.get_mut(&from) {
                            s.last_ms = now;
                        }
                        self.send(
                            to,
                            from,
                            Msg::SyncRequest {
                                session,
                                bytes: msg,
                            },
                        )
                    }
                    Ok(None) => {
                        self.stats.sync_completed += 1;
                        if let Some(out) = self.slots[to].sync_out.remove(&from) {
                            self.audit_sync(to, from, out);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.stats.sync_errors += 1;
                        *self
                            .stats
                            .rejected
                            .entry(format!("sync: {}", reason_class(&e.to_string())))
                            .or_default() += 1;
                        self.give_up_sync(to, from);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Tallies how a delivered sync message reconciles: split ranges, id
    /// lists, decoded sketches (the summary shows the workload exercises
    /// more than the opening sketch). Undecodable messages are the core's
    /// to refuse, and count nothing here.
    fn count_sync_ranges(&mut self, bytes: &[u8]) {
        let Ok(msg) = SyncMessage::decode(bytes) else {
            return;
        };
        let open = msg
            .ranges
            .iter()
            .filter(|r| !matches!(r.mode, Mode::Skip))
            .count() as u64;
        if open > 1 {
            self.stats.sync_split_ranges += open;
        }
        for r in &msg.ranges {
            match r.mode {
                Mode::Ids(_) => self.stats.sync_id_lists += 1,
                Mode::Roots(_) => self.stats.sync_sketch_roots += 1,
                _ => {}
            }
        }
    }

    /// Drains a node's outputs after an input: publishes its new events,
    /// relays what it accepted from gossip, records what it stored.
    fn drain(&mut self, i: Ix, relay: Option<(Ix, &Rc<Gossip>)>) -> Result<(), SimError> {
        while let Some(out) = self.slots[i].core.as_mut().and_then(|c| c.poll_output()) {
            match out {
                Output::Broadcast(ev) => {
                    let hash = *ev.hash();
                    self.registry.entry(hash).or_insert(EventInfo::new(
                        self.now,
                        true,
                        ev.event().lamport,
                    ));
                    self.trace(5, i as u64, 0, &hash.0);
                    let (now, ttl) = (self.now, self.cfg.seen_ttl_ms);
                    self.slots[i].seen.insert(now, ttl, hash);
                    self.gossip(i, None, &Gossip::new(ev.bytes().to_vec()))?;
                }
                Output::Verdict {
                    hash,
                    source,
                    verdict,
                    reason,
                } => {
                    self.trace(6, i as u64, verdict as u64, &hash.0);
                    let reason = reason_class(reason.as_deref().unwrap_or("none"));
                    match verdict {
                        Verdict::Accept => {
                            if let (Source::Peer(_), Some((from, msg))) = (source, relay) {
                                self.gossip(i, Some(from), msg)?;
                            }
                        }
                        Verdict::Reject => {
                            *self.stats.rejected.entry(reason).or_default() += 1;
                        }
                        Verdict::Ignore => {
                            if reason.starts_with("duplicate") {
                                self.stats.gossip_duplicates +=
                                    u64::from(matches!(source, Source::Peer(_)));
                            }
                            *self.stats.ignored.entry(reason).or_default() += 1;
                        }
                    }
                }
                Output::Stored { hash, source } => {
                    self.trace(7, i as u64, 0, &hash.0);
                    match source {
                        Some(Source::Peer(_)) => self.stats.stored_via_gossip += 1,
                        Some(Source::Sync(_)) => self.stats.stored_via_sync += 1,
                        _ => self.stats.stored_other += 1,
                    }
                    if source.is_none() {
                        // A local event: `publish` reports it stored before
                        // it hands it out to broadcast.
                        self.check_local_event(i, &hash);
                    }
                    let now = self.now;
                    let info = self.registry.get_mut(&hash).map(|info| {
                        info.last_stored_ms = now;
                        *info
                    });
                    match info {
                        None => self.violation(Violation::InvalidEventStored { node: i, hash }),
                        Some(info) if source.is_some() => {
                            if info.lamport <= CLOCK_CONTAINED_MAX {
                                let seen = &mut self.slots[i].lamport_seen;
                                *seen = (*seen).max(info.lamport);
                            }
                            let latency = self.now.saturating_sub(info.published_ms);
                            if self.slots[i].up_since <= info.published_ms {
                                self.stats.delivery_ms.push(latency);
                            } else {
                                self.stats.catchup_ms.push(latency);
                            }
                        }
                        Some(_) => {}
                    }
                }
                // The live change feed is the driver's business; the
                // simulator checks the views themselves.
                Output::ViewChanged(_) => {}
            }
        }
        self.rearm_tick(i)
    }

    /// Registers node `i`'s own new event and checks what an honest
    /// publisher promises: its Lamport time is above every event it held
    /// (the clock follows what it receives), and it never expires a post
    /// it already expired (the sweeper and the service skip ended posts).
    fn check_local_event(&mut self, i: Ix, hash: &EventHash) {
        let ev = match self.slots[i]
            .core
            .as_ref()
            .map(|c| c.log().store().get(hash))
        {
            Some(Ok(Some(ev))) => ev,
            _ => return, // not readable back: the log checks cover it
        };
        let e = ev.event();
        self.registry
            .entry(*hash)
            .or_insert(EventInfo::new(self.now, true, e.lamport));
        let seen = self.slots[i].lamport_seen;
        if e.lamport <= seen {
            self.violation(Violation::LamportNotAdvanced {
                node: i,
                lamport: e.lamport,
                seen,
            });
        }
        self.slots[i].lamport_seen = seen.max(e.lamport);
        self.lamport_honest_max = self.lamport_honest_max.max(e.lamport);
        if let Payload::PostExpired(x) = &e.payload {
            if !self.expiries_published.insert((i, x.target)) {
                self.violation(Violation::RedundantExpiry {
                    node: i,
                    target: x.target,
                });
            }
        }
    }

    /// Highest non-bomb Lamport time in node `i`'s log (0 if down).
    fn lamport_held(&self, i: Ix) -> u64 {
        let Some(core) = self.slots[i].core.as_ref() else {
            return 0;
        };
        let below_bombs = EventKey {
            lamport: CLOCK_CONTAINED_MAX + 1,
            hash: EventHash([0; 32]),
        };
        core.log()
            .store()
            .keys(Bound::Unbounded, Bound::Excluded(below_bombs))
            .filter_map(Result::ok)
            .map(|k| k.lamport)
            .max()
            .unwrap_or(0)
    }

    // ---- timers ---------------------------------------------------------

    fn rearm_tick(&mut self, i: Ix) -> Result<(), SimError> {
        let Some(core) = self.slots[i].core.as_ref() else {
            return Ok(());
        };
        let Some(due_node) = core.poll_timeout() else {
            return Ok(());
        };
        let due = due_node.saturating_add_signed(-self.slots[i].skew_ms);
        if self.slots[i].tick_at != Some(due) {
            self.slots[i].tick_at = Some(due);
            let incarnation = self.slots[i].incarnation;
            self.schedule(
                due,
                Action::Tick {
                    node: i,
                    incarnation,
                },
            )?;
        }
        Ok(())
    }

    fn on_tick(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        let slot = &self.slots[i];
        if slot.incarnation != incarnation || slot.tick_at != Some(self.now) {
            return Ok(()); // superseded, or the node restarted since
        }
        let node_now = self.node_now(i);
        let Some(core) = self.slots[i].core.as_mut() else {
            return Ok(());
        };
        core.handle(node_now, Input::Tick);
        self.slots[i].tick_at = None;
        self.drain(i, None)
    }

    fn on_sync_timer(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        if self.slots[i].incarnation != incarnation || self.slots[i].core.is_none() {
            return Ok(());
        }
        let reachable: Vec<Ix> = self.peers[i]
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| self.reachable(i, p))
            .collect();
        if !reachable.is_empty() {
            let peer = reachable[self.rng_net.index(reachable.len())];
            self.start_sync(i, peer)?;
        }
        let interval = self.cfg.sync_interval_ms;
        // As the driver: the interval plus up to a quarter more.
        let next = self.now + interval + self.rng_net.below(interval / 4 + 1);
        self.schedule(
            next,
            Action::SyncTimer {
                node: i,
                incarnation,
            },
        )
    }

    fn schedule_heartbeat(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        if self.cfg.gossip_lazy == 0 {
            return Ok(());
        }
        let at = self.now + 1 + self.rng_net.below(self.cfg.heartbeat_ms);
        self.schedule(
            at,
            Action::Heartbeat {
                node: i,
                incarnation,
            },
        )
    }

    /// Gossipsub's heartbeat, as far as dissemination goes: forget old
    /// cache entries, then announce the ids of the last `HISTORY_GOSSIP`
    /// heartbeats to `gossip_lazy` random connected peers outside the mesh,
    /// which pull what they have not seen (IWANT). This is how a message
    /// gets past a mesh link that lost it without waiting for sync.
    fn on_heartbeat(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        if self.slots[i].incarnation != incarnation || self.slots[i].core.is_none() {
            return Ok(());
        }
        let beat = self.cfg.heartbeat_ms;
        let now = self.now;
        let keep_from = now.saturating_sub(beat * MCACHE_HEARTBEATS);
        let announce_from = now.saturating_sub(beat * HISTORY_GOSSIP);
        let mcache = &mut self.slots[i].mcache;
        while mcache.front().is_some_and(|(t, _)| *t < keep_from) {
            mcache.pop_front();
        }
        let ids: Vec<EventHash> = mcache
            .iter()
            .filter(|(t, _)| *t >= announce_from)
            .map(|(_, g)| g.id)
            .collect();
        if !ids.is_empty() {
            let mesh = self.mesh(i);
            let mut others: Vec<Ix> = self.peers[i]
                .iter()
                .map(|&(p, _)| p)
                .filter(|&p| !mesh.contains(&p) && self.reachable(i, p))
                .collect();
            self.rng_net.shuffle(&mut others);
            others.truncate(self.cfg.gossip_lazy);
            let ids: Rc<[EventHash]> = ids.into();
            for p in others {
                self.stats.ihave_sent += 1;
                self.send(i, p, Msg::IHave(ids.clone()))?;
            }
        }
        self.schedule(
            now + beat,
            Action::Heartbeat {
                node: i,
                incarnation,
            },
        )
    }

    fn start_sync(&mut self, i: Ix, peer: Ix) -> Result<(), SimError> {
        if self.slots[i].sync_out.contains_key(&peer) {
            return Ok(());
        }
        let peer_id = self.ids[peer];
        let (own_arrival, peer_arrival) = (self.last_arrival(i), self.last_arrival(peer));
        let Some(core) = self.slots[i].core.as_mut() else {
            return Ok(());
        };
        match core.sync_start(peer_id) {
            Ok(Some(bytes)) => {
                let session = self.next_session;
                self.next_session += 1;
                self.stats.sync_sessions += 1;
                let now = self.now;
                self.slots[i].sync_out.insert(
                    peer,
                    SyncOut {
                        session,
                        last_ms: now,
                        own_arrival,
                        peer_arrival,
                    },
                );
                self.send(i, peer, Msg::SyncRequest { session, bytes })?;
                self.schedule(
                    now + self.cfg.sync_timeout_ms,
                    Action::SyncTimeout {
                        node: i,
                        peer,
                        session,
                    },
                )
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.stats.sync_errors += 1;
                *self
                    .stats
                    .rejected
                    .entry(format!("sync: {}", reason_class(&e.to_string())))
                    .or_default() += 1;
                Ok(())
            }
        }
    }

    fn on_sync_timeout(&mut self, i: Ix, peer: Ix, session: u64) -> Result<(), SimError> {
        let Some(s) = self.slots[i].sync_out.get(&peer).copied() else {
            return Ok(());
        };
        if s.session != session {
            return Ok(());
        }
        let idle = self.now.saturating_sub(s.last_ms);
        if idle < self.cfg.sync_timeout_ms {
            // Progress since: look again when this round would time out.
            return self.schedule(
                s.last_ms + self.cfg.sync_timeout_ms,
                Action::SyncTimeout {
                    node: i,
                    peer,
                    session,
                },
            );
        }
        self.stats.sync_timeouts += 1;
        self.give_up_sync(i, peer);
        Ok(())
    }

    /// Last arrival number of node `i`'s store (0 if down or an adversary).
    fn last_arrival(&self, i: Ix) -> u64 {
        self.slots
            .get(i)
            .and_then(|s| s.core.as_ref())
            .map_or(0, |c| c.log().store().last_arrival())
    }

    /// A completed sync between honest nodes made both sides whole as of
    /// its start: each holds every event the other held when it began
    /// (events are stored only once valid and vouched, and the vouching
    /// `member.set` travels in the same sync). Sync on its own, without
    /// gossip, must be complete: a reconciliation that drops part of a
    /// split range converges later by luck, not by design, and this is
    /// where it shows. Sampled above [`SYNC_AUDIT_NODES_MAX`] nodes: the
    /// audit reads both logs.
    fn audit_sync(&mut self, initiator: Ix, responder: Ix, out: SyncOut) {
        let n = self.slots.len();
        if responder >= n
            || (n > SYNC_AUDIT_NODES_MAX && !out.session.is_multiple_of(SYNC_AUDIT_EVERY))
        {
            return;
        }
        for (holder, upto, other) in [
            (responder, out.peer_arrival, initiator),
            (initiator, out.own_arrival, responder),
        ] {
            let (Some(h), Some(o)) = (
                self.slots[holder].core.as_ref(),
                self.slots[other].core.as_ref(),
            ) else {
                return;
            };
            let missing = h
                .log()
                .store()
                .since_arrival(0)
                .filter_map(Result::ok)
                .take_while(|(seq, _)| *seq <= upto)
                .filter(|(_, e)| !o.log().store().contains(e.hash()).unwrap_or(true))
                .count() as u64;
            if missing > 0 {
                self.violation(Violation::SyncIncomplete {
                    initiator,
                    responder,
                    lacking: other,
                    missing,
                });
            }
        }
    }

    /// Node `i` gives up the sync it started with `peer` (a timeout or a
    /// failed answer), as the driver does: only its own session goes; the
    /// peer keeps whatever session it has with `i` (a fresh salt replaces
    /// it when `i` starts again).
    fn give_up_sync(&mut self, i: Ix, peer: Ix) {
        let peer_id = self.ids[peer];
        if let Some(core) = self.slots[i].core.as_mut() {
            core.sync_abort_initiated(&peer_id);
        }
        self.slots[i].sync_out.remove(&peer);
    }

    /// Forgets the syncs between `i` and `peer` on both sides, as the driver
    /// does when a connection closes.
    fn abort_sync(&mut self, i: Ix, peer: Ix) {
        let n = self.slots.len();
        for (a, b) in [(i, peer), (peer, i)] {
            if a < n {
                let b_id = self.ids[b];
                if let Some(core) = self.slots[a].core.as_mut() {
                    core.sync_abort(&b_id);
                }
                self.slots[a].sync_out.remove(&b);
            }
        }
    }

    // ---- faults -----------------------------------------------------------

    fn apply_fault(&mut self, f: Fault) -> Result<(), SimError> {
        match f {
            Fault::Partition { groups } => {
                let g: Vec<u32> = (0..self.slots.len())
                    .map(|_| self.rng_fault.below(groups as u64) as u32)
                    .collect();
                self.partition(g);
                Ok(())
            }
            Fault::Heal => self.heal(),
            Fault::Crash { node, clean } => self.crash(node, clean),
            Fault::Restart { node } => self.restart(node),
        }
    }

    /// Splits the network: `group[i]` is node i's side. Connections across
    /// sides close, and with them their syncs.
    pub fn partition(&mut self, group: Vec<u32>) {
        self.trace(8, group.len() as u64, 0, &[]);
        self.group = group;
        for i in 0..self.slots.len() {
            let cut: Vec<Ix> = self.peers[i]
                .iter()
                .map(|&(p, _)| p)
                .filter(|&p| self.group[p] != self.group[i])
                .collect();
            for p in cut {
                self.abort_sync(i, p);
            }
        }
    }

    /// Heals every partition; every node syncs at once with a peer it can
    /// now reach (sync on connect).
    pub fn heal(&mut self) -> Result<(), SimError> {
        self.trace(9, 0, 0, &[]);
        self.group = vec![0; self.slots.len()];
        for i in 0..self.slots.len() {
            self.sync_on_connect(i)?;
        }
        Ok(())
    }

    fn sync_on_connect(&mut self, i: Ix) -> Result<(), SimError> {
        if self.slots[i].core.is_none() {
            return Ok(());
        }
        let reachable: Vec<Ix> = self.peers[i]
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| self.reachable(i, p))
            .collect();
        for _ in 0..SYNC_ON_CONNECT_PEERS.min(reachable.len()) {
            let peer = reachable[self.rng_net.index(reachable.len())];
            self.start_sync(i, peer)?;
        }
        Ok(())
    }

    /// Stops a node, keeping its durable store. `clean` writes a snapshot
    /// first (a shutdown); otherwise the restart replays from the last one.
    pub fn crash(&mut self, i: Ix, clean: bool) -> Result<(), SimError> {
        let Some(mut core) = self.slots[i].core.take() else {
            return Ok(());
        };
        self.trace(10, i as u64, u64::from(clean), &[]);
        self.stats.crashes += 1;
        if clean {
            if let Err(e) = core.shutdown() {
                *self
                    .stats
                    .workload_refused
                    .entry(format!("shutdown: {e}"))
                    .or_default() += 1;
            }
        }
        let store = if clean {
            core.into_store()
                .map_err(|source| SimError::Store { node: i, source })?
        } else {
            // A power cut: what was not flushed is gone.
            let unflushed = core.into_store_unflushed();
            let before = unflushed.len();
            let (store, own_lost) = unflushed
                .crash()
                .map_err(|source| SimError::Store { node: i, source })?;
            self.stats.lost_unflushed += before.saturating_sub(store.len());
            for hash in own_lost {
                self.violation(Violation::LocalEventLost { node: i, hash });
            }
            // Received events since the last flush may go (sync brings
            // them back); the log must not lose more than that.
            self.slots[i].log_len_max = store.durable_len();
            store
        };
        let slot = &mut self.slots[i];
        slot.parked = Some(store);
        slot.incarnation += 1;
        slot.tick_at = None;
        slot.seen.clear();
        slot.mcache.clear();
        let peers: Vec<Ix> = self.peers[i].iter().map(|&(p, _)| p).collect();
        for p in peers {
            self.abort_sync(i, p);
        }
        self.slots[i].sync_out.clear();
        Ok(())
    }

    /// Starts a node that is down (restart, or a late joiner's first start)
    /// on its kept store, and syncs with peers at once.
    pub fn restart(&mut self, i: Ix) -> Result<(), SimError> {
        if self.slots[i].core.is_some() {
            return Ok(());
        }
        if std::mem::take(&mut self.slots[i].awaiting_invite) {
            self.invite(i)?;
        }
        self.trace(11, i as u64, 0, &[]);
        self.stats.restarts += 1;
        let bug = if i == 1 { self.cfg.inject_bug } else { None };
        let store = self.slots[i]
            .parked
            .take()
            .unwrap_or_else(|| SimStore::new(self.ids[i], bug));
        let incarnation = self.slots[i].incarnation;
        let seed = seed_u64(
            self.cfg.seed,
            "rng",
            ((incarnation as u64) << 32) | i as u64,
        );
        let core = open_core(
            i,
            &self.slots[i].identity,
            &self.genesis,
            store,
            seed,
            &self.memo,
            self.cfg.inject_bug,
        )?;
        let slot = &mut self.slots[i];
        slot.core = Some(core);
        slot.up_since = self.now;
        slot.uplink_free_at = self.now;
        let len = self.log_len(i);
        self.check_log_len(i, len);
        // A hard crash may have lost received events: what the restarted
        // clock must be above is what the store kept.
        self.slots[i].lamport_seen = self.lamport_held(i);
        self.slots[i].tick_at = Some(self.now);
        self.schedule(
            self.now,
            Action::Tick {
                node: i,
                incarnation,
            },
        )?;
        let next = self.now + self.rng_net.below(self.cfg.sync_interval_ms);
        self.schedule(
            next,
            Action::SyncTimer {
                node: i,
                incarnation,
            },
        )?;
        self.schedule_heartbeat(i, incarnation)?;
        self.sync_on_connect(i)?;
        self.drain(i, None)
    }

    /// A newcomer's invitation: the first anchor that is up admits it (if
    /// the workload has not already). With no anchor up it starts
    /// unadmitted: its posts are refused, and held pending elsewhere, until
    /// the workload admits it.
    fn invite(&mut self, i: Ix) -> Result<(), SimError> {
        if self.levels[i].is_active() {
            return Ok(());
        }
        let Some(anchor) = (0..self.cfg.anchors).find(|&a| self.slots[a].core.is_some()) else {
            self.refused("invite", "no anchor up");
            return Ok(());
        };
        if let Err(e) = self.set_level(anchor, i, Level::Member) {
            self.refused("invite", &refusal_code(&e));
        }
        Ok(())
    }

    fn log_len(&self, i: Ix) -> u64 {
        self.slots[i]
            .core
            .as_ref()
            .map_or(0, |c| c.log().store().len())
    }

    fn check_log_len(&mut self, i: Ix, len: u64) {
        let had = self.slots[i].log_len_max;
        if len < had {
            self.violation(Violation::LogShrank {
                node: i,
                had,
                has: len,
            });
        }
        self.slots[i].log_len_max = had.max(len);
    }

    // ---- adversaries --------------------------------------------------------

    fn adversary_step(&mut self, a: usize) -> Result<(), SimError> {
        match self.advs[a].kind {
            AdvKind::Impostor => return self.impostor_step(a),
            AdvKind::SyncForger => return self.sync_forger_step(a),
            _ => {}
        }
        let n = self.slots.len();
        let kind = self.advs[a].kind;
        let burst = match kind {
            AdvKind::Flooder => (self.cfg.flood_events / 10).max(1),
            _ => 1,
        };
        for _ in 0..burst {
            let adv = &mut self.advs[a];
            adv.sent += 1;
            let sent = adv.sent;
            let lamport = match kind {
                AdvKind::LamportBomb => LAMPORT_MAX - adv.sent,
                _ => adv.sent,
            };
            let identity = adv.identity.clone();
            let title = format!("{kind:?} {lamport}");
            let ev = if kind == AdvKind::Flooder {
                // A hostile member's own config: posts that never expire
                // (the cap must end them), and every fourth with its clock
                // a century ahead (it escapes the cap; moderation ends it).
                let mut content = self.adversary_content(&title);
                content.expires_at = u64::MAX;
                let ts = if sent.is_multiple_of(4) {
                    self.now.saturating_add(FAKED_TS_AHEAD_MS)
                } else {
                    self.now
                };
                let community = self.genesis.founded_community().unwrap_or_default();
                let ev = self.adversary_event_at(
                    &identity,
                    lamport,
                    ts,
                    community,
                    Payload::PostCreated(PostCreated {
                        content: content.into(),
                        client_id: None,
                    }),
                )?;
                if self.hostile_posts.len() < HOSTILE_POSTS_MAX {
                    self.hostile_posts.push((identity.node_id(), ev.event().id));
                }
                ev
            } else {
                self.adversary_post(&identity, lamport, &title)?
            };
            let bytes: Vec<u8> = match kind {
                AdvKind::BadSignature => flip_signature(&ev),
                AdvKind::LamportBomb | AdvKind::Flooder => {
                    self.registry
                        .insert(*ev.hash(), EventInfo::new(self.now, false, lamport));
                    ev.bytes().to_vec()
                }
                _ => ev.bytes().to_vec(),
            };
            let msg = Gossip::new(bytes);
            self.trace(12, a as u64, lamport, &msg.id.0);
            let peers = self.advs[a].peers.clone();
            for p in peers {
                self.send(n + a, p, Msg::Gossip(msg.clone()))?;
            }
        }
        Ok(())
    }

    /// A post signed by `identity` in this community, a week's TTL.
    fn adversary_post(
        &mut self,
        identity: &Identity,
        lamport: u64,
        title: &str,
    ) -> Result<VerifiedEvent, SimError> {
        let community = self.genesis.founded_community().unwrap_or_default();
        self.adversary_event(
            identity,
            lamport,
            community,
            Payload::PostCreated(PostCreated {
                content: self.adversary_content(title).into(),
                client_id: None,
            }),
        )
    }

    fn adversary_content(&self, title: &str) -> PostContent {
        PostContent {
            category: Category::Offer,
            title: title.to_owned(),
            body: String::new(),
            tags: vec![],
            expires_at: self.now + 7 * 24 * 3600 * 1000,
            location: None,
        }
    }

    fn adversary_event(
        &mut self,
        identity: &Identity,
        lamport: u64,
        community: CommunityId,
        payload: Payload,
    ) -> Result<VerifiedEvent, SimError> {
        self.adversary_event_at(identity, lamport, self.now, community, payload)
    }

    /// An adversary's event with its own choice of `ts` (the author's clock,
    /// advisory: nothing checks it against anyone's time).
    fn adversary_event_at(
        &mut self,
        identity: &Identity,
        lamport: u64,
        ts: u64,
        community: CommunityId,
        payload: Payload,
    ) -> Result<VerifiedEvent, SimError> {
        let random = u128::from(self.rng_fault.next_u64());
        Ok(Event {
            id: EventId::from_parts(self.now, random),
            ts,
            author: identity.node_id(),
            lamport,
            community,
            payload,
        }
        .sign(identity)?)
    }

    /// The impostor, a plain member, publishes by gossip what only others
    /// may: an update of someone else's post, a `fulfilled` expiry of it
    /// (author-only), a `stale` or `moderated` expiry (trusted only), or
    /// community settings (anchors only). Its Lamport time
    /// is above every honest event's, so each would win if a view let it
    /// count. The events are valid and enter every log; views ignore them.
    fn impostor_step(&mut self, a: usize) -> Result<(), SimError> {
        let n = self.slots.len();
        if self.posts.is_empty() {
            return Ok(());
        }
        let (author, target) = self.posts[self.rng_fault.index(self.posts.len())];
        let adv = &mut self.advs[a];
        adv.sent += 1;
        let (sent, identity) = (adv.sent, adv.identity.clone());
        let lamport = self.lamport_honest_max + 1;
        let payload = match sent % 5 {
            0 => Payload::PostUpdated(PostUpdated {
                target,
                content: self
                    .adversary_content(&format!("impostor's edit of node {author}'s post"))
                    .into(),
            }),
            1 => Payload::PostExpired(PostExpired {
                target,
                reason: ExpiryReason::Fulfilled,
            }),
            2 => Payload::PostExpired(PostExpired {
                target,
                reason: ExpiryReason::Stale,
            }),
            // A plain member moderating: counts only from trusted or anchor.
            3 => Payload::PostExpired(PostExpired {
                target,
                reason: ExpiryReason::Moderated,
            }),
            // A plain member's settings, drastic enough to show anywhere
            // they counted: a minute's cap, one post per author.
            _ => Payload::Settings(CommunitySettings {
                name: format!("impostor's name {sent}"),
                post_ttl_max_s: 60,
                posts_per_author_max: 1,
            }),
        };
        let community = self.genesis.founded_community().unwrap_or_default();
        let ev = self.adversary_event(&identity, lamport, community, payload)?;
        self.registry
            .insert(*ev.hash(), EventInfo::new(self.now, false, lamport));
        let msg = Gossip::new(ev.bytes().to_vec());
        self.trace(12, a as u64, lamport, &msg.id.0);
        let peers = self.advs[a].peers.clone();
        for p in peers {
            self.send(n + a, p, Msg::Gossip(msg.clone()))?;
        }
        Ok(())
    }

    /// The bad events the sync forger pushes: a member's post with a
    /// forged signature, the same garbled (cut in half), the same with a
    /// zeroed signature (unsigned), its own post (it is no member) and a
    /// member's genuine post for another community. The genuine post they
    /// are made from is never sent: if any of these enters a log, the
    /// registry does not know it.
    fn forged_batch(&mut self, a: usize) -> Result<Vec<Vec<u8>>, SimError> {
        let n = self.slots.len();
        let adv = &mut self.advs[a];
        adv.sent += 1;
        let (sent, forger) = (adv.sent, adv.identity.clone());
        let lamport = self.lamport_honest_max + 1;
        let member = self.slots[1 + self.rng_fault.index(n - 1)].identity.clone();
        let genuine = self.adversary_post(&member, lamport, &format!("forged {sent}"))?;
        let forged = flip_signature(&genuine);
        let garbled = genuine.bytes()[..genuine.bytes().len() / 2].to_vec();
        let mut zeroed = genuine.bytes().to_vec();
        if let Some(pos) = find(&zeroed, genuine.signature()) {
            zeroed[pos..pos + 64].fill(0);
        }
        let own = self.adversary_post(&forger, lamport, "not a member")?;
        let elsewhere = self.adversary_event(
            &member,
            lamport,
            CommunityId([0x5a; 32]),
            Payload::PostCreated(PostCreated {
                content: self.adversary_content("elsewhere").into(),
                client_id: None,
            }),
        )?;
        Ok(vec![
            forged,
            garbled,
            zeroed,
            own.bytes().to_vec(),
            elsewhere.bytes().to_vec(),
        ])
    }

    /// The sync forger pushes its batch to each peer in a sync request of
    /// its own, and makes each peer open a sync with it (a connection:
    /// sync on connect), which it answers with another batch.
    fn sync_forger_step(&mut self, a: usize) -> Result<(), SimError> {
        let n = self.slots.len();
        let peers = self.advs[a].peers.clone();
        for p in peers {
            if self.slots[p].core.is_none() {
                continue;
            }
            let events = self.forged_batch(a)?;
            let bytes = SyncMessage {
                events,
                ..SyncMessage::default()
            }
            .encode();
            self.trace(15, a as u64, p as u64, &hash_bytes(&bytes).0);
            let session = self.next_session;
            self.next_session += 1;
            self.send(n + a, p, Msg::SyncRequest { session, bytes })?;
            self.start_sync(p, n + a)?;
        }
        Ok(())
    }

    /// The sync forger's answer to a sync an honest node opened with it:
    /// a forged batch to its opening, "nothing more" to the rest.
    fn sync_forger_answer(
        &mut self,
        a: usize,
        to: Ix,
        session: u64,
        request: &[u8],
    ) -> Result<(), SimError> {
        let opening = SyncMessage::decode(request).is_ok_and(|m| !m.ranges.is_empty());
        let events = if opening {
            self.forged_batch(a)?
        } else {
            Vec::new()
        };
        let bytes = SyncMessage {
            events,
            ..SyncMessage::default()
        }
        .encode();
        let n = self.slots.len();
        self.send(n + a, to, Msg::SyncResponse { session, bytes })
    }

    /// Injects one adversary burst now (scenarios).
    pub fn adversary_burst(&mut self, kind_index: usize) -> Result<(), SimError> {
        self.adversary_step(kind_index)
    }

    // ---- workload --------------------------------------------------------

    fn active_up(&self, i: Ix) -> bool {
        self.slots[i].core.is_some() && self.levels[i] != Level::Removed
    }

    fn pick_poster(&mut self) -> Option<Ix> {
        for _ in 0..8 {
            let i = self.rng_work.index(self.slots.len());
            if self.active_up(i) {
                return Some(i);
            }
        }
        None
    }

    fn refused(&mut self, what: &str, code: &str) {
        *self
            .stats
            .workload_refused
            .entry(format!("{what}: {code}"))
            .or_default() += 1;
    }

    /// Posts from node `i` (a scenario step or the workload's).
    pub fn post(&mut self, i: Ix, ttl_seconds: Option<u64>) -> Result<EventId, SimError> {
        let n = self.posts.len();
        let category = Category::ALL[self.rng_work.index(Category::ALL.len())];
        let tag = TAGS[self.rng_work.index(TAGS.len())];
        let now = self.node_now(i);
        let core = self.slots[i].core.as_mut().ok_or(SimError::NotRunning(i))?;
        let receipt = core
            .market_post(
                now,
                Caller::Local,
                PostParams {
                    category,
                    title: format!("post {n}"),
                    body: format!("body of post {n} by node {i}"),
                    tags: vec![tag.into()],
                    ttl_seconds,
                    location: None,
                    client_id: None,
                },
            )
            .map_err(|e| SimError::Refused {
                node: i,
                message: e.to_string(),
            });
        self.drain(i, None)?;
        let id = receipt?.post.id;
        self.posts.push((i, id));
        Ok(id)
    }

    /// Sets `member`'s level, signed by anchor `anchor`.
    pub fn set_level(&mut self, anchor: Ix, member: Ix, level: Level) -> Result<(), SimError> {
        let now = self.node_now(anchor);
        let member_id = self.ids[member];
        let core = self.slots[anchor]
            .core
            .as_mut()
            .ok_or(SimError::NotRunning(anchor))?;
        let result = core.set_member(now, member_id, level);
        self.drain(anchor, None)?;
        result.map_err(|e| SimError::Refused {
            node: anchor,
            message: e.to_string(),
        })?;
        if member < self.levels.len() {
            self.levels[member] = level;
        }
        Ok(())
    }

    /// Node `by` expires `author`'s post `id` with `reason`.
    pub fn expire(
        &mut self,
        by: Ix,
        author: NodeId,
        id: EventId,
        reason: ExpiryReason,
    ) -> Result<(), SimError> {
        let now = self.node_now(by);
        let core = self.slots[by]
            .core
            .as_mut()
            .ok_or(SimError::NotRunning(by))?;
        let result = core.market_expire(
            now,
            Caller::Local,
            ExpireParams {
                id,
                author: Some(author),
                reason,
            },
        );
        self.drain(by, None)?;
        result.map(|_| ()).map_err(|e| SimError::Refused {
            node: by,
            message: e.to_string(),
        })
    }

    fn workload_step(&mut self) -> Result<(), SimError> {
        self.stats.workload_done += 1;
        let roll = self.rng_work.below(100);
        match roll {
            0..=54 => {
                let Some(i) = self.pick_poster() else {
                    return Ok(());
                };
                let ttl = self
                    .rng_work
                    .chance(self.cfg.short_ttl_fraction)
                    .then(|| self.rng_work.between(60, 600));
                if let Err(e) = self.post(i, ttl) {
                    self.refused("post", &refusal_code(&e));
                }
            }
            55..=79 => {
                if self.posts.is_empty() {
                    return Ok(());
                }
                let (author, id) = self.posts[self.rng_work.index(self.posts.len())];
                if !self.active_up(author) {
                    return Ok(());
                }
                let now = self.node_now(author);
                let edit = self.stats.workload_done;
                let Some(core) = self.slots[author].core.as_mut() else {
                    return Ok(());
                };
                let result = if roll < 70 {
                    core.market_update(
                        now,
                        Caller::Local,
                        UpdateParams {
                            id,
                            body: Some(format!("edit {edit}")),
                            ..UpdateParams::default()
                        },
                    )
                    .map(|_| ())
                } else {
                    core.market_expire(
                        now,
                        Caller::Local,
                        ExpireParams {
                            id,
                            author: None,
                            reason: ExpiryReason::Fulfilled,
                        },
                    )
                    .map(|_| ())
                };
                self.drain(author, None)?;
                if let Err(e) = result {
                    self.refused(if roll < 70 { "update" } else { "expire" }, e.code.as_str());
                }
            }
            80..=83 => {
                // A stale expiry by an anchor, of someone's post past TTL.
                let a = self.rng_work.index(self.cfg.anchors);
                let now = self.node_now(a);
                let me = self.ids[a];
                let Some(core) = self.slots[a].core.as_ref() else {
                    return Ok(());
                };
                let due = core
                    .views()
                    .market
                    .past_ttl(now)
                    .find(|p| p.author != me)
                    .map(|p| (p.author, p.id));
                if let Some((author, id)) = due {
                    if let Err(e) = self.expire(a, author, id, ExpiryReason::Stale) {
                        self.refused("stale", &refusal_code(&e));
                    }
                }
            }
            84..=86 => self.moderate_step()?,
            87..=90 => self.settings_step()?,
            91..=93 => self.profile_step()?,
            _ => {
                // Membership: anchor 0 removes, re-admits or promotes.
                if self.slots.len() <= self.cfg.anchors || self.slots[0].core.is_none() {
                    return Ok(());
                }
                let span = (self.slots.len() - self.cfg.anchors) as u64;
                let mut m = self.cfg.anchors + self.rng_work.below(span) as usize;
                // Half the time a member who set a display name: a removed
                // member's name must stop showing, and few are named.
                if !self.named.is_empty() && self.rng_work.chance(0.5) {
                    m = self.named[self.rng_work.index(self.named.len())];
                }
                let level = match (roll, self.levels[m]) {
                    (94..=96, Level::Member | Level::Trusted) => Level::Removed,
                    (_, Level::Removed) => Level::Member,
                    (_, Level::Member) => Level::Trusted,
                    _ => return Ok(()),
                };
                if let Err(e) = self.set_level(0, m, level) {
                    self.refused("member.set", &refusal_code(&e));
                }
            }
        }
        Ok(())
    }

    /// A trusted member or an anchor ends a post as `moderated`: half the
    /// time one of the flooder's (never-expiring, some with a faked clock),
    /// else any honest post. The service refuses nobody here (the workload
    /// picks a moderator its own membership truth says is trusted).
    fn moderate_step(&mut self) -> Result<(), SimError> {
        let moderators: Vec<Ix> = (0..self.slots.len())
            .filter(|i| {
                self.slots[*i].core.is_some()
                    && matches!(self.levels[*i], Level::Trusted | Level::Anchor)
            })
            .collect();
        if moderators.is_empty() {
            return Ok(());
        }
        let by = moderators[self.rng_work.index(moderators.len())];
        let target = if !self.hostile_posts.is_empty() && self.rng_work.chance(0.5) {
            Some(self.hostile_posts[self.rng_work.index(self.hostile_posts.len())])
        } else if !self.posts.is_empty() {
            let (author, id) = self.posts[self.rng_work.index(self.posts.len())];
            Some((self.ids[author], id))
        } else {
            None
        };
        let Some((author, id)) = target else {
            return Ok(());
        };
        match self.expire(by, author, id, ExpiryReason::Moderated) {
            Ok(()) => self.rule_done("moderations"),
            Err(e) => self.refused("moderate", &refusal_code(&e)),
        }
        Ok(())
    }

    /// An anchor signs new settings: the next of [`SETTINGS_CHOICES`] (by
    /// a draw) and a new name. Both anchors do this, so settings race.
    fn settings_step(&mut self) -> Result<(), SimError> {
        let a = self.rng_work.index(self.cfg.anchors);
        let (ttl, max) = SETTINGS_CHOICES[self.rng_work.index(SETTINGS_CHOICES.len())];
        let name = format!("hearth-sim {}", self.stats.workload_done);
        match self.set_settings(a, Some(name), Some(ttl), Some(max)) {
            Ok(()) => self.rule_done("settings signed"),
            Err(e) => self.refused("community.settings", &refusal_code(&e)),
        }
        Ok(())
    }

    /// A member sets a display name (a new one each time).
    fn profile_step(&mut self) -> Result<(), SimError> {
        let Some(i) = self.pick_poster() else {
            return Ok(());
        };
        let name = format!("household {i}.{}", self.stats.workload_done);
        match self.set_name(i, &name) {
            Ok(()) => {
                if i >= self.cfg.anchors && !self.named.contains(&i) {
                    self.named.push(i);
                }
                self.rule_done("names set")
            }
            Err(e) => self.refused("member.profile", &refusal_code(&e)),
        }
        Ok(())
    }

    fn rule_done(&mut self, what: &str) {
        *self.stats.rules_done.entry(what.to_owned()).or_default() += 1;
    }

    /// Anchor `anchor` signs community settings (fields left `None` keep
    /// those in force).
    pub fn set_settings(
        &mut self,
        anchor: Ix,
        name: Option<String>,
        post_ttl_max_s: Option<u64>,
        posts_per_author_max: Option<u64>,
    ) -> Result<(), SimError> {
        let now = self.node_now(anchor);
        let core = self.slots[anchor]
            .core
            .as_mut()
            .ok_or(SimError::NotRunning(anchor))?;
        let result = core.community_settings(
            now,
            Caller::Local,
            SettingsParams {
                name,
                post_ttl_max_s,
                posts_per_author_max,
            },
        );
        self.drain(anchor, None)?;
        result.map(|_| ()).map_err(|e| SimError::Refused {
            node: anchor,
            message: e.to_string(),
        })
    }

    /// Node `i` sets its display name.
    pub fn set_name(&mut self, i: Ix, name: &str) -> Result<(), SimError> {
        let now = self.node_now(i);
        let core = self.slots[i].core.as_mut().ok_or(SimError::NotRunning(i))?;
        let result = core.member_profile(
            now,
            Caller::Local,
            ProfileParams {
                name: name.to_owned(),
            },
        );
        self.drain(i, None)?;
        result.map(|_| ()).map_err(|e| SimError::Refused {
            node: i,
            message: e.to_string(),
        })
    }

    // ---- the checker --------------------------------------------------------

    /// The safety invariants, on every running node (posts on a rotating
    /// sample): logs never shrink, clocks stay contained, and a listed post's
    /// author is an active member who was once admitted.
    pub fn check_invariants(&mut self) {
        self.checks += 1;
        let n = self.slots.len();
        for i in 0..n {
            if self.slots[i].core.is_none() {
                continue;
            }
            let len = self.log_len(i);
            self.check_log_len(i, len);
            let clock = self.slots[i].core.as_ref().map_or(0, |c| c.log().clock());
            if clock > CLOCK_CONTAINED_MAX {
                self.violation(Violation::ClockBombed { node: i, clock });
            }
        }
        let sample = self.cfg.check_sample.min(n);
        let start = (self.checks as usize * sample) % n;
        for k in 0..sample {
            let i = (start + k) % n;
            let now = self.node_now(i);
            let Some(core) = self.slots[i].core.as_ref() else {
                continue;
            };
            let membership = &core.views().membership;
            let bad: Vec<NodeId> = core
                .views()
                .market
                .all_active(now)
                .filter(|p| {
                    !membership.is_active(&p.author) || self.never_admitted.contains(&p.author)
                })
                .map(|p| p.author)
                .collect();
            for author in bad {
                self.violation(Violation::InactiveAuthorShown { node: i, author });
            }
        }
        if self.phase == Phase::Safety {
            self.check_reference_sample();
        }
    }

    /// The reference model over node `i`'s current log (None if down or
    /// the store cannot be read, which the log checks report).
    fn reference_of(&self, i: Ix) -> Option<Reference> {
        let core = self.slots[i].core.as_ref()?;
        let events: Result<Vec<VerifiedEvent>, StoreError> = core
            .log()
            .store()
            .range(Bound::Unbounded, Bound::Unbounded)
            .collect();
        events.ok().map(Reference::new)
    }

    /// Compares node `i`'s views with `model`, built over the same log:
    /// levels, every post (expired and hidden ones too) and the list as
    /// `list` shows it at the node's own `now`; and every logged event's
    /// author must be vouched by the closure over that log.
    fn check_reference(&mut self, i: Ix, model: &Reference) {
        let now = self.node_now(i);
        let Some(core) = self.slots[i].core.as_ref() else {
            return;
        };
        let mut problems: Vec<String> = Vec::new();
        let levels: BTreeMap<NodeId, Level> = core
            .views()
            .membership
            .levels()
            .iter()
            .filter(|(_, l)| **l != Level::Removed)
            .map(|(k, l)| (*k, *l))
            .collect();
        if levels != model.levels() {
            problems.push(format!(
                "levels: view has {} active keys, model {}",
                levels.len(),
                model.levels().len()
            ));
        }
        let market = &core.views().market;
        if market.post_count() != model.posts().len() {
            problems.push(format!(
                "{} posts in the view, {} in the model",
                market.post_count(),
                model.posts().len()
            ));
        }
        let membership = &core.views().membership;
        if membership.settings() != model.settings()
            || membership.community_name() != model.settings().name
        {
            problems.push(format!(
                "settings: view has {:?} (name {:?}), model {:?}",
                membership.settings(),
                membership.community_name(),
                model.settings()
            ));
        }
        let names = model.names();
        let mut keys: BTreeSet<NodeId> = model.profile_authors().copied().collect();
        keys.extend(membership.levels().keys().copied());
        for k in keys {
            let got = membership.display_name(&k);
            let want = names.get(&k).map(String::as_str);
            if got != want && problems.len() < MISMATCH_DETAIL_MAX {
                problems.push(format!("display name of {k}: view {got:?}, model {want:?}"));
            }
        }
        for (name, want) in model.posts() {
            let post = market.get(name);
            let got = post.map(PostRow::of_core);
            // The status `get` reports, as the service derives it from the
            // view's post, against the model's own.
            let status = post.map(|p| PostView::of(p, now, membership).status);
            let status_ok = status.as_deref() == Some(want.status(now));
            if (got.as_ref() != Some(want) || !status_ok) && problems.len() < MISMATCH_DETAIL_MAX {
                problems.push(format!(
                    "post {}/{}: view {:?} {status:?}, model {:?} {:?}",
                    name.author,
                    name.id,
                    got.map(|p| (
                        p.content_event,
                        p.expires_at,
                        p.expired,
                        p.author_active,
                        p.over_limit
                    )),
                    (
                        want.content_event,
                        want.expires_at,
                        &want.expired,
                        want.author_active,
                        want.over_limit
                    ),
                    want.status(now),
                ));
            }
        }
        let listed: Vec<_> = market.all_active(now).map(|p| p.key()).collect();
        if listed != model.listed(now) {
            problems.push(format!(
                "list at {now}: view shows {}, model {}",
                listed.len(),
                model.listed(now).len()
            ));
        }
        let unvouched: BTreeSet<NodeId> = core
            .log()
            .store()
            .range(Bound::Unbounded, Bound::Unbounded)
            .filter_map(Result::ok)
            .map(|e| e.event().author)
            .filter(|a| !model.is_vouched(a))
            .collect();
        for author in unvouched {
            self.violation(Violation::UnvouchedEventStored { node: i, author });
        }
        if !problems.is_empty() {
            self.violation(Violation::ReferenceMismatch {
                node: i,
                detail: problems.join("; "),
            });
        }
    }

    /// The safety phase's sample: a few nodes per check, rotating.
    fn check_reference_sample(&mut self) {
        let n = self.slots.len();
        for _ in 0..REFERENCE_SAMPLE_PER_CHECK.min(n) {
            let i = (self.reference_checks as usize) % n;
            self.reference_checks += 1;
            if let Some(model) = self.reference_of(i) {
                self.check_reference(i, &model);
            }
        }
    }

    /// Digest of a node's event set: its keys in order.
    fn log_digest(&self, i: Ix) -> Option<[u8; 32]> {
        let core = self.slots[i].core.as_ref()?;
        let mut h = Sha256::new();
        for k in core.log().store().keys(Bound::Unbounded, Bound::Unbounded) {
            match k {
                Ok(k) => h.update(k.to_bytes()),
                Err(_) => return None,
            }
        }
        Some(h.finalize().into())
    }

    /// Whether every node is up and holds the same log and views. Cheap
    /// tests first: sizes, then the key sets, then the view digests.
    fn convergence_gap(&self) -> Option<String> {
        let n = self.slots.len();
        if let Some(down) = (0..n).find(|&i| self.slots[i].core.is_none()) {
            return Some(format!("node {down} is down"));
        }
        let len0 = self.log_len(0);
        if let Some(i) = (1..n).find(|&i| self.log_len(i) != len0) {
            return Some(format!(
                "node {i} holds {} events, node 0 holds {len0}",
                self.log_len(i)
            ));
        }
        let d0 = self.log_digest(0);
        if let Some(i) = (1..n).find(|&i| self.log_digest(i) != d0) {
            return Some(format!("node {i}'s event set differs from node 0's"));
        }
        let v0 = self.slots[0].core.as_ref().map(|c| c.views().digest());
        if let Some(i) =
            (1..n).find(|&i| self.slots[i].core.as_ref().map(|c| c.views().digest()) != v0)
        {
            return Some(format!("node {i}'s views differ from node 0's"));
        }
        None
    }

    /// The liveness phase: faults off (partitions healed, every node up,
    /// no loss, adversaries and workload stopped), then run until every node
    /// holds the same log and views, within `liveness_ms_max`. Then the
    /// final checks: every honest event everywhere, the membership truth in
    /// every view, and incremental == full replay == snapshot restore.
    pub fn liveness(&mut self) -> Result<bool, SimError> {
        self.phase = Phase::Liveness;
        self.faults_on = false;
        let start = self.now;
        self.heal()?;
        for i in 0..self.slots.len() {
            self.restart(i)?;
        }
        let deadline = start + self.cfg.liveness_ms_max;
        let step = self.cfg.check_interval_ms.min(1_000);
        let mut gap = self.convergence_gap();
        while gap.is_some() && self.now < deadline {
            self.run_for(step)?;
            gap = self.convergence_gap();
        }
        if let Some(detail) = gap {
            self.violation(Violation::NotConverged {
                detail: format!("{detail} after {} virtual ms", self.now - start),
            });
            // Which nodes are wrong, not only different: each against the
            // model over its own log.
            for i in 0..self.slots.len() {
                if let Some(model) = self.reference_of(i) {
                    self.check_reference(i, &model);
                }
            }
            self.converged = false;
            return Ok(false);
        }
        self.converge_ms = Some(self.now - start);
        self.converged = true;
        self.final_checks()?;
        Ok(self.violation_count == 0)
    }

    fn final_checks(&mut self) -> Result<(), SimError> {
        self.check_invariants();
        // Every node against the reference model. The logs are equal now
        // (convergence compared their keys), so one model serves all.
        if let Some(model) = self.reference_of(0) {
            for i in 0..self.slots.len() {
                self.check_reference(i, &model);
            }
        }
        // Every honest event in the (common) log.
        let missing: Vec<EventHash> = match self.slots[0].core.as_ref() {
            Some(core) => self
                .registry
                .iter()
                .filter(|(_, info)| info.honest)
                .filter(|(h, _)| !core.log().store().contains(h).unwrap_or(false))
                .map(|(h, _)| *h)
                .collect(),
            None => Vec::new(),
        };
        for hash in missing {
            self.violation(Violation::HonestEventMissing { hash });
        }
        // The membership truth: nobody the workload removed is listed.
        for i in 0..self.slots.len() {
            let now = self.node_now(i);
            let Some(core) = self.slots[i].core.as_ref() else {
                continue;
            };
            let bad: Vec<NodeId> = core
                .views()
                .market
                .all_active(now)
                .filter(|p| {
                    self.ids[..self.levels.len()]
                        .iter()
                        .position(|id| *id == p.author)
                        .is_some_and(|a| self.levels[a] == Level::Removed)
                })
                .map(|p| p.author)
                .collect();
            for author in bad {
                self.violation(Violation::InactiveAuthorShown { node: i, author });
            }
        }
        // Incremental == snapshot restore == full replay, on a sample.
        let n = self.slots.len();
        let sample = self.cfg.restore_sample.min(n);
        for k in 0..sample {
            let i = (k * n) / sample.max(1);
            self.check_restore(i)?;
        }
        Ok(())
    }

    /// Shuts node `i` down (snapshot), reopens it from its store, compares
    /// the restored views with the incremental ones, then replays the whole
    /// log and compares again.
    pub fn check_restore(&mut self, i: Ix) -> Result<(), SimError> {
        let Some(mut core) = self.slots[i].core.take() else {
            return Ok(());
        };
        let before = core.views().digest();
        core.shutdown().map_err(|e| SimError::Refused {
            node: i,
            message: e.to_string(),
        })?;
        let store = core
            .into_store()
            .map_err(|source| SimError::Store { node: i, source })?;
        let mut reopened = open_core(
            i,
            &self.slots[i].identity,
            &self.genesis,
            store,
            u64::from(self.slots[i].incarnation) + 1,
            &self.memo,
            self.cfg.inject_bug,
        )?;
        if reopened.views().digest() != before {
            self.violation(Violation::RestoreMismatch { node: i });
        }
        reopened
            .log_mut()
            .replay_all()
            .map_err(|source| SimError::Store { node: i, source })?;
        if reopened.views().digest() != before {
            self.violation(Violation::ReplayMismatch { node: i });
        }
        self.slots[i].core = Some(reopened);
        Ok(())
    }

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

/// The event's bytes with one bit of its signature's R flipped.
fn flip_signature(ev: &VerifiedEvent) -> Vec<u8> {
    let mut b = ev.bytes().to_vec();
    if let Some(pos) = find(&b, ev.signature()) {
        b[pos] ^= 1;
    }
    b
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn refusal_code(e: &SimError) -> String {
    match e {
        SimError::Refused { message, .. } => message.split(':').next().unwrap_or("").to_owned(),
        other => reason_class(&other.to_string()),
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
