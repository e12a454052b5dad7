//! The one driver loop: swarm events become core inputs, core outputs become
//! swarm calls. Priority order of the `biased` select (first wins):
//! 1. shutdown (SIGINT/SIGTERM or a command): flush and stop promptly;
//! 2. swarm events: the network must not back up behind local work;
//! 3. local commands (CLI, API, tests);
//! 4. the core's timer (`poll_timeout`), the end of the next peer ban and
//!    the periodic sync timer.
//!
//! Each wake handles one item, then drains the core's outputs, so no wake
//! does unbounded work.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use hearth_proto::{EventHash, NodeId};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::metrics::Registry;
use libp2p::swarm::{ListenError, SwarmEvent};
use libp2p::{
    dcutr, identify, kad, mdns, noise, relay, request_response, tcp, upnp, yamux, Multiaddr,
    PeerId, Swarm,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, info_span, warn, Instrument};

use super::behaviour::{self, Behaviour, BehaviourEvent};
use super::changes::{Change, ChangeFeed, PeerChange, PostGone, Stamped};
use super::reach::{self, ConnKind, Reach, ReachConfig};
use super::wire::{BusRequest, BusResponse, SyncRequest, SyncResponse};
use super::{gossip, identity};
use crate::core::bus::{BusError, BusQueue, Caller};
use crate::core::services::market::PostView;
use crate::core::views::{PostChange, ViewChange};
use crate::core::{Input, Node, Output, Source, Verdict};
use crate::store::EventStore;

mod offloop;
pub use offloop::SearchSetup;

/// The sync period plus up to a quarter more, drawn fresh each time, so
/// the nodes of a neighbourhood do not all sync with each other at once.
fn jittered(period: Duration) -> Duration {
    use rand_core::RngCore;
    let spread = (period.as_millis() as u64 / 4).max(1);
    period + Duration::from_millis(rand_core::OsRng.next_u64() % spread)
}

/// Unix milliseconds from the wall clock: the one place the node reads time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Local events waiting for a subscribed peer: a node posting offline keeps
/// this many to publish when peers arrive; older ones are left to sync.
pub const UNPUBLISHED_MAX: usize = 1024;
/// Events learned by sync whose author wrote them at most this long ago
/// are gossiped on (issue 15): after a partition heals, the rest of this
/// side hears of them at once instead of at its own next sync. Older ones
/// are not, so a node back from a week offline does not flood the mesh
/// with what everyone already has. Two minutes is several gossip windows
/// and well under the 30 s sync interval's worst case plus clock skew.
pub const REGOSSIP_WINDOW_MS: u64 = 120_000;

/// The verdict gossipsub hears for a message from its author. A
/// non-member publishing its own events is rejected (DESIGN.md §4), but
/// until this node's sync with that peer has ended it may simply lack
/// the peer's admission: an honest newcomer's first posts often arrive
/// before it. So a `Reject` of an event held pending is only an `Ignore`
/// until then; forged or invalid events (never pending) are rejected at
/// once. A transport policy: what the views show does not depend on it.
pub fn soften_before_sync(verdict: Verdict, held_pending: bool, synced_with_peer: bool) -> Verdict {
    if verdict == Verdict::Reject && held_pending && !synced_with_peer {
        Verdict::Ignore
    } else {
        verdict
    }
}

/// Whether an event written at `ts` (the author's clock) and learned by
/// sync at `now` is recent enough to gossip on. A `ts` ahead of our clock
/// counts as recent (skew), never as an error.
pub fn regossip_recent(ts: u64, now: u64) -> bool {
    now.saturating_sub(ts) <= REGOSSIP_WINDOW_MS
}
/// Commands queued from the local API before callers are made to wait.
pub const COMMANDS_QUEUE_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on (default: all interfaces, TCP and QUIC, any port).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (from config or an invite).
    pub bootstrap: Vec<Multiaddr>,
    /// LAN discovery (default on; `--no-mdns`).
    pub mdns: bool,
    /// Gossipsub heartbeat (default 1 s).
    pub heartbeat: Duration,
    /// Anti-entropy period (default 30 s, jittered by up to a quarter).
    pub sync_interval: Duration,
    /// Idle connections stay open this long (default 60 s).
    pub idle_timeout: Duration,
    /// A peer that falls below the graylist threshold is refused this long
    /// (default `gossip::BAN_DURATION`, 10 min; tests shorten it).
    pub ban_duration: Duration,
    /// The embedding model and vector store for semantic search.
    pub search: SearchSetup,
    /// Reaching peers beyond the LAN: anchor profile, relays, hole
    /// punching, UPnP, Kademlia's walk (see `ReachConfig`).
    pub reach: ReachConfig,
    /// This node's local inbox state (read marks, copies of sent
    /// messages): in memory by default; `hearth run` keeps it in the data
    /// dir (`super::inbox`).
    pub inbox: std::sync::Arc<super::inbox::Inbox>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            heartbeat: Duration::from_secs(1),
            sync_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            ban_duration: gossip::BAN_DURATION,
            search: SearchSetup::default(),
            reach: ReachConfig::default(),
            inbox: std::sync::Arc::new(super::inbox::Inbox::in_memory()),
        }
    }
}

/// Requests into the running node.
#[derive(Debug)]
pub enum Command {
    /// A capability call by the local user.
    Call {
        name: String,
        params: ciborium::Value,
        reply: oneshot::Sender<Result<ciborium::Value, BusError>>,
    },
    /// A capability call served by the core itself, never off the loop
    /// (the searcher's own keyword half of `market.search`).
    CoreCall {
        name: String,
        params: ciborium::Value,
        reply: oneshot::Sender<Result<ciborium::Value, BusError>>,
    },
    /// A capability call on a peer over `/hearthnet/bus/2`.
    RemoteCall {
        peer: PeerId,
        name: String,
        params: ciborium::Value,
        reply: oneshot::Sender<Result<ciborium::Value, BusError>>,
    },
    Status {
        reply: oneshot::Sender<Status>,
    },
    /// The connected peers alone: what a search needs to pick a provider,
    /// without the status's store probe and metrics walk.
    Peers {
        reply: oneshot::Sender<Vec<PeerStatus>>,
    },
    Dial {
        addr: Multiaddr,
    },
    /// Publishes raw bytes on the community topic, unchecked: for relaying
    /// imported events and for tests that play a misbehaving peer.
    PublishRaw {
        bytes: Vec<u8>,
    },
    /// The Prometheus text of the node's one registry, with the node's
    /// gauges (log size, Lamport clock, pending, peers) read just before.
    Metrics {
        reply: oneshot::Sender<String>,
    },
    /// The live posts a semantic search ranks (`semantic::search`).
    SearchCandidates {
        category: Option<hearth_proto::Category>,
        tags: Vec<String>,
        reply: oneshot::Sender<Vec<crate::semantic::search::Candidate>>,
    },
    /// Posts as callers see them, by name (unknown names are left out).
    PostViews {
        keys: Vec<crate::core::views::market::PostKey>,
        reply: oneshot::Sender<Vec<crate::core::services::market::PostView>>,
    },
    /// A `market.list` page whose `q` the searcher already answered
    /// (`semantic::search::Searcher::list`): the hits best first.
    ListRanked {
        query: crate::core::views::market::ListQuery,
        ranked: Vec<crate::core::views::market::PostKey>,
        search: crate::core::services::market::ListSearch,
        reply: oneshot::Sender<Result<crate::core::services::market::ListResult, BusError>>,
    },
    /// A log page in or out for the local API (`net::local_api::serve_log`).
    Log {
        request: super::local_api::LogRequest,
        reply: oneshot::Sender<Result<super::local_api::LogAnswer, BusError>>,
    },
    Shutdown,
}

/// What `hearth status` shows of a running node.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node_id: NodeId,
    /// The libp2p peer id of this node (what routing tables and relays
    /// name it by).
    #[serde(default)]
    pub peer_id: String,
    pub community: hearth_proto::CommunityId,
    /// The community's name now (the genesis name, or an anchor's rename).
    #[serde(default)]
    pub community_name: String,
    /// This node's display name, if it set one and is a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub level: Option<hearth_proto::Level>,
    pub events: u64,
    pub clock: u64,
    pub pending: usize,
    pub posts: usize,
    pub listen: Vec<String>,
    pub peers: Vec<PeerStatus>,
    /// Hex digest of every view: equal digests, equal marketplaces.
    pub digest: String,
    pub gossip: GossipCounts,
    /// Whether the store takes writes: `ok`, `full` or `read_only`
    /// (re-probed on every status request, so freed space shows at once).
    #[serde(default)]
    pub storage: crate::store::WriteState,
    /// What to do about `storage` (absent while it is `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_note: Option<String>,
    /// Peers refused for falling below gossipsub's graylist threshold.
    #[serde(default)]
    pub banned: Vec<BannedPeer>,
    /// This node's reachability, relay slots and routing table.
    #[serde(default)]
    pub reach: reach::ReachStatus,
    /// Private messages this node sent whose recipient has not been
    /// connected since and is not now: they wait in the mesh for a peer
    /// that is offline (no receipt exists; a connection is the best sign
    /// the node has that gossip or sync carried them).
    #[serde(default)]
    pub dm_waiting: usize,
}

/// A peer the node refuses for now (see `gossip::BanList`).
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BannedPeer {
    pub node_id: Option<NodeId>,
    pub peer_id: String,
    /// Gossipsub's retained score of the peer: below the graylist
    /// threshold when it was banned, and frozen while it is away.
    pub score: Option<f64>,
    /// Unix ms when the ban ends.
    pub until_ms: u64,
}

/// Gossip messages this node received since it started.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq,
)]
pub struct GossipCounts {
    /// Every copy, duplicates included.
    pub received: u64,
    /// The first copy of each message.
    pub unique: u64,
    /// Messages ignored because their peer was over its rate limit (they
    /// come later by sync).
    #[serde(default)]
    pub rate_limited: u64,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub node_id: Option<NodeId>,
    pub peer_id: String,
    /// Unix ms of the last completed sync with this peer.
    pub last_sync_ms: Option<u64>,
    /// Gossipsub's score of the peer (negative: it sent invalid events).
    pub score: Option<f64>,
    /// How the peer is connected: direct, relayed or hole-punched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnKind>,
    /// The remote address of that connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Unix ms since which the peer has been connected without a break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since_ms: Option<u64>,
    /// Events this node stored that came from the peer (gossip or sync)
    /// while connected this time.
    #[serde(default)]
    pub events_received: u64,
    /// Events this node's syncs with the peer sent it while connected this
    /// time (what gossip sends fans out to many peers and is not counted).
    #[serde(default)]
    pub events_sent: u64,
}

/// What a connected peer and this node exchanged since it connected.
#[derive(Debug, Clone, Copy)]
struct PeerTraffic {
    since_ms: u64,
    received: u64,
    sent: u64,
}

/// Things tests and the API can watch for, instead of sleeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    Listening(Multiaddr),
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// A peer joined the community topic (gossip now reaches it).
    Subscribed(PeerId),
    /// An event entered the log, from gossip, sync, a file or this node.
    Stored {
        hash: EventHash,
        source: Option<Source>,
    },
    /// A received message got this verdict.
    Verdict(EventHash, Verdict),
    /// A peer fell below the graylist threshold: disconnected and refused
    /// for `NetConfig::ban_duration`.
    PeerBanned(PeerId),
    /// A banned peer's connection was refused.
    PeerRefused(PeerId),
    /// A ban ended: the peer may connect again (still graylisted until
    /// its retained score decays).
    PeerUnbanned(PeerId),
    SyncDone {
        peer: PeerId,
    },
    /// Kademlia added a member of this community to the routing table.
    Discovered(PeerId),
    /// A relay accepted this node's reservation.
    RelayReserved(PeerId),
    /// A relay slot this node asked for is gone or was refused; `reason`
    /// names the protocol's status when the relay gave one.
    RelaySlotLost {
        relay: PeerId,
        reason: String,
    },
    /// This node's relay server refused a reservation with this status
    /// code of the circuit relay v2 protocol (e.g. `RESOURCE_LIMIT_EXCEEDED`).
    ReservationDenied {
        peer: PeerId,
        status: String,
    },
    /// This node's relay server accepted a reservation.
    ReservationAccepted(PeerId),
    /// A circuit through this node's relay server closed; `error` says why
    /// when it did not end normally (a data or time limit, a reset).
    CircuitClosed {
        src: PeerId,
        dst: PeerId,
        error: Option<String>,
    },
    /// DCUtR upgraded the relayed connection to `peer` to a direct one.
    HolePunched(PeerId),
    /// An address of this node was confirmed reachable from outside.
    ExternalConfirmed(Multiaddr),
}

/// Handle to a running driver.
#[derive(Debug, Clone)]
pub struct Handle {
    pub peer_id: PeerId,
    pub commands: mpsc::Sender<Command>,
    pub events: broadcast::Sender<NetEvent>,
    /// The node's one Prometheus registry (gossipsub's metrics, the node's
    /// gauges): the HTTP API registers its own metrics here, and `/metrics`
    /// encodes it through [`Command::Metrics`].
    pub metrics: SharedRegistry,
    /// What the node shows differently, as it happens (see
    /// [`super::changes`]): the live stream and saved searches read it.
    pub changes: std::sync::Arc<ChangeFeed>,
    /// The saved searches, once the HTTP API started them (it knows the
    /// data dir); the one request path serves `subscription.*` from here.
    pub subscriptions: std::sync::Arc<
        std::sync::OnceLock<std::sync::Arc<crate::api::subscriptions::Subscriptions>>,
    >,
}

/// The registry shared by the driver and the HTTP API. Locked only to
/// register or encode: never across an await.
pub type SharedRegistry = std::sync::Arc<std::sync::Mutex<Registry>>;

/// Locks the registry; a panic while encoding leaves nothing half-done.
pub fn lock_registry(r: &SharedRegistry) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's gauges, set from the node when `/metrics` is read.
#[derive(Debug, Clone, Default)]
struct Gauges {
    log_events: prometheus_client::metrics::gauge::Gauge,
    lamport_clock: prometheus_client::metrics::gauge::Gauge,
    pending_events: prometheus_client::metrics::gauge::Gauge,
    peers: prometheus_client::metrics::gauge::Gauge,
}

impl Gauges {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hearth");
        r.register("log_events", "Events in the log", self.log_events.clone());
        r.register(
            "lamport_clock",
            "The node's Lamport clock",
            self.lamport_clock.clone(),
        );
        r.register(
            "pending_events",
            "Events held until their author is admitted",
            self.pending_events.clone(),
        );
        r.register("peers", "Connected peers", self.peers.clone());
    }
}

impl Handle {
    pub async fn call(
        &self,
        name: &str,
        params: ciborium::Value,
    ) -> Result<ciborium::Value, BusError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Call {
            name: name.into(),
            params,
            reply,
        };
        self.send(cmd, rx).await
    }

    /// Calls `name` on the core directly: for callers that serve a call
    /// off the loop themselves and need the core's own answer.
    pub async fn call_core(
        &self,
        name: &str,
        params: ciborium::Value,
    ) -> Result<ciborium::Value, BusError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::CoreCall {
            name: name.into(),
            params,
            reply,
        };
        self.send(cmd, rx).await
    }

    /// Calls `name` on `peer`. The capability's own timeout applies: past
    /// it the caller gets `timeout`, whatever the peer does later.
    pub async fn remote_call(
        &self,
        peer: PeerId,
        name: &str,
        params: ciborium::Value,
    ) -> Result<ciborium::Value, BusError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::RemoteCall {
            peer,
            name: name.into(),
            params,
            reply,
        };
        let limit = crate::core::services::descriptor(name)
            .or_else(|| crate::semantic::descriptor(name))
            .map_or(behaviour::REQUEST_TIMEOUT, |d| {
                Duration::from_millis(d.timeout_ms)
            });
        match tokio::time::timeout(limit, self.send(cmd, rx)).await {
            Ok(result) => result,
            Err(_) => Err(BusError::new(
                crate::core::ErrorCode::Timeout,
                format!(
                    "{name} on {peer} did not answer within {} ms",
                    limit.as_millis()
                ),
            )),
        }
    }

    async fn send<T>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, BusError>>,
    ) -> Result<T, BusError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| BusError::unavailable("the node is shutting down"))?;
        rx.await
            .map_err(|_| BusError::unavailable("the node stopped before answering"))?
    }

    /// The live posts passing the filters, for a semantic search.
    pub async fn search_candidates(
        &self,
        category: Option<hearth_proto::Category>,
        tags: Vec<String>,
    ) -> Result<Vec<crate::semantic::search::Candidate>, BusError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SearchCandidates {
                category,
                tags,
                reply,
            })
            .await
            .map_err(|_| BusError::unavailable("the node is shutting down"))?;
        rx.await
            .map_err(|_| BusError::unavailable("the node stopped before answering"))
    }

    /// The posts named by `keys` as callers see them.
    pub async fn post_views(
        &self,
        keys: Vec<crate::core::views::market::PostKey>,
    ) -> Result<Vec<crate::core::services::market::PostView>, BusError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::PostViews { keys, reply })
            .await
            .map_err(|_| BusError::unavailable("the node is shutting down"))?;
        rx.await
            .map_err(|_| BusError::unavailable("the node stopped before answering"))
    }

    /// A `market.list` page restricted to and ordered by `ranked`.
    pub async fn list_ranked(
        &self,
        query: crate::core::views::market::ListQuery,
        ranked: Vec<crate::core::views::market::PostKey>,
        search: crate::core::services::market::ListSearch,
    ) -> Result<crate::core::services::market::ListResult, BusError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::ListRanked {
            query,
            ranked,
            search,
            reply,
        };
        self.send(cmd, rx).await
    }

    /// A log page in or out, as the local API serves `log.export`,
    /// `log.import` and `log.contains`.
    pub async fn log(
        &self,
        request: super::local_api::LogRequest,
    ) -> Result<super::local_api::LogAnswer, BusError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Log { request, reply }, rx).await
    }

    /// The connected peers, as `status` lists them (cheap: no store probe).
    pub async fn peers(&self) -> Option<Vec<PeerStatus>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Peers { reply }).await.ok()?;
        rx.await.ok()
    }

    pub async fn status(&self) -> Option<Status> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Status { reply }).await.ok()?;
        rx.await.ok()
    }

    /// The Prometheus text of the registry; `None` once the node stopped.
    pub async fn metrics_text(&self) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Metrics { reply }).await.ok()?;
        rx.await.ok()
    }

    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::Dial { addr }).await;
    }

    pub async fn publish_raw(&self, bytes: Vec<u8>) {
        let _ = self.commands.send(Command::PublishRaw { bytes }).await;
    }

    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// A receiver of the node's changes from now on (bounded: a reader
    /// that falls [`super::changes::BROADCAST_MAX`] behind sees `Lagged`).
    pub fn subscribe_changes(&self) -> broadcast::Receiver<std::sync::Arc<Stamped>> {
        self.changes.subscribe()
    }
}

pub fn build_swarm<S: EventStore>(
    node: &Node<S>,
    cfg: &NetConfig,
    metrics: &mut Registry,
) -> anyhow::Result<Swarm<Behaviour>> {
    let key = identity::keypair(node.identity());
    let community = node.community();
    let heartbeat = cfg.heartbeat;
    let mdns_on = cfg.mdns;
    let reach = cfg.reach.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("TCP transport")?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .context("relay client transport")?
        .with_behaviour(
            |key, relay_client| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
                let local = key.public().to_peer_id();
                let relay_on = reach.anchor || reach.relay_server;
                let mut kad = behaviour::kad_behaviour(&community, local, reach.walk_interval)?;
                if reach.anchor {
                    // Reachable by profile: answer queries from the start.
                    kad.set_mode(Some(kad::Mode::Server));
                }
                // Otherwise kad's own rule: server once an external address
                // is confirmed (AutoNAT, UPnP, or a relay reservation, which
                // makes the node reachable through the relay), client before.
                Ok(Behaviour {
                    blocked: Default::default(),
                    gossipsub: gossip::behaviour(&community, heartbeat)?.with_metrics(
                        metrics.sub_registry_with_prefix("gossipsub"),
                        Default::default(),
                    ),
                    sync: behaviour::sync_behaviour(),
                    bus: behaviour::bus_behaviour(),
                    identify: behaviour::identify_behaviour(key),
                    ping: libp2p::ping::Behaviour::default(),
                    mdns: behaviour::mdns_behaviour(mdns_on, local)?,
                    kad,
                    autonat_client: Default::default(),
                    autonat_server: Default::default(),
                    relay_server: relay_on
                        .then(|| behaviour::relay_server(local, reach.relay_limits))
                        .into(),
                    relay_client,
                    dcutr: reach
                        .hole_punching
                        .then(|| dcutr::Behaviour::new(local))
                        .into(),
                    upnp: behaviour::upnp_behaviour(reach.upnp),
                })
            },
        )
        .map_err(|e| anyhow::anyhow!("building the behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
        .build();
    Ok(swarm)
}

#[allow(missing_debug_implementations)] // JoinHandle of a generic node
/// A started driver: its handle, a receiver subscribed before the first
/// event (so `Listening` cannot be missed), and the task that ends with the
/// node (after a final snapshot and flush).
pub struct Running<S: EventStore> {
    pub handle: Handle,
    pub events: broadcast::Receiver<NetEvent>,
    pub task: tokio::task::JoinHandle<anyhow::Result<Node<S>>>,
}

/// Starts the driver on the current tokio runtime.
pub fn spawn<S: EventStore + 'static>(
    mut node: Node<S>,
    cfg: NetConfig,
) -> anyhow::Result<Running<S>> {
    // A sync message's events are verified on a second thread while the
    // core stores them (issue 15 item 1).
    node.share_verified(super::verify_ahead::VerifyAhead::spawn().context("start the verifier")?);
    let mut metrics = Registry::default();
    let mut swarm = build_swarm(&node, &cfg, &mut metrics)?;
    let gauges = Gauges::default();
    gauges.register(&mut metrics);
    let metrics = std::sync::Arc::new(std::sync::Mutex::new(metrics));
    for addr in &cfg.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listen on {addr}"))?;
    }
    let topic = gossip::topic(&node.community());
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .context("subscribe to the community topic")?;
    for addr in &cfg.reach.external {
        swarm.add_external_address(addr.clone());
    }
    for addr in &cfg.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    let (tx, rx) = mpsc::channel(COMMANDS_QUEUE_MAX);
    // Large enough for a test's burst; a slow listener sees `Lagged`.
    let (events, first_receiver) = broadcast::channel(1 << 16);
    let changes = std::sync::Arc::new(ChangeFeed::new());
    let handle = Handle {
        peer_id: *swarm.local_peer_id(),
        commands: tx,
        events: events.clone(),
        metrics: metrics.clone(),
        changes: changes.clone(),
        subscriptions: Default::default(),
    };
    let (offloop, finished) = offloop::OffLoop::new(&cfg.search, handle.clone());
    let driver = Driver {
        node,
        swarm,
        topic,
        commands: rx,
        events,
        unpublished: VecDeque::new(),
        sync_settled: BTreeSet::new(),
        traffic: BTreeMap::new(),
        sync_refused: BTreeSet::new(),
        pending_bus: BTreeMap::new(),
        last_sync: BTreeMap::new(),
        bus_queue: BusQueue::default(),
        metrics,
        gauges,
        cfg,
        rate: gossip::RateLimiter::default(),
        rate_limited: 0,
        bans: gossip::BanList::default(),
        offloop,
        finished,
        changes,
        reach: Reach::default(),
    };
    let span = info_span!("driver", peer = %handle.peer_id);
    Ok(Running {
        handle,
        events: first_receiver,
        task: tokio::spawn(driver.run().instrument(span)),
    })
}

struct Driver<S: EventStore> {
    node: Node<S>,
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetEvent>,
    unpublished: VecDeque<Vec<u8>>,
    /// Connected peers whose sync with us (ours of them) ended, however:
    /// until then a pending event from its author is not held against it
    /// ([`soften_before_sync`]). Bounded by the connected peers: an entry
    /// leaves with the peer's last connection.
    sync_settled: BTreeSet<PeerId>,
    /// Per connected peer, for the node tab. Bounded by the connected
    /// peers: an entry leaves with the peer's last connection.
    traffic: BTreeMap<PeerId, PeerTraffic>,
    /// Connected peers that refused our sync (another community): skipped
    /// by the periodic sync until they reconnect. Bounded likewise.
    sync_refused: BTreeSet<PeerId>,
    pending_bus: BTreeMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<ciborium::Value, BusError>>,
    >,
    last_sync: BTreeMap<PeerId, u64>,
    /// Remote bus calls waiting for their handler (see `BusQueue`).
    bus_queue: BusQueue<InboundCall>,
    /// The one registry: gossipsub's own counters (for status and
    /// `/metrics`), the gauges below, and the HTTP API's metrics.
    metrics: SharedRegistry,
    gauges: Gauges,
    cfg: NetConfig,
    /// Per-peer token buckets in front of the core (bounded inside).
    rate: gossip::RateLimiter,
    /// Messages the rate limit turned away since start.
    rate_limited: u64,
    /// Peers refused for a while after falling below the graylist
    /// threshold (bounded inside).
    bans: gossip::BanList,
    /// Calls served off the loop (search, embeddings) and their answers.
    offloop: offloop::OffLoop,
    finished: mpsc::Receiver<offloop::Finished>,
    /// The change feed (bounded inside; never blocks the loop).
    changes: std::sync::Arc<ChangeFeed>,
    /// Connection kinds, reachability and relay slots (bounded inside).
    reach: Reach,
}

/// A remote bus call waiting in the queue.
struct InboundCall {
    caller: NodeId,
    request: BusRequest,
    channel: request_response::ResponseChannel<BusResponse>,
}

impl std::fmt::Debug for InboundCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundCall")
            .field("caller", &self.caller)
            .field("capability", &self.request.capability)
            .finish_non_exhaustive()
    }
}

/// Addresses taken from one identify message: a node listens on a few;
/// a peer announcing hundreds would only fill our routing table.
const IDENTIFY_ADDRS_MAX: usize = 8;

/// A relay status code as the circuit relay v2 spec names it.
fn status_name(status: &relay::StatusCode) -> &'static str {
    match status {
        relay::StatusCode::OK => "OK",
        relay::StatusCode::ReservationRefused => "RESERVATION_REFUSED",
        relay::StatusCode::ResourceLimitExceeded => "RESOURCE_LIMIT_EXCEEDED",
        relay::StatusCode::PermissionDenied => "PERMISSION_DENIED",
        relay::StatusCode::ConnectionFailed => "CONNECTION_FAILED",
        relay::StatusCode::NoReservation => "NO_RESERVATION",
        relay::StatusCode::MalformedMessage => "MALFORMED_MESSAGE",
        relay::StatusCode::UnexpectedMessage => "UNEXPECTED_MESSAGE",
    }
}

/// An error and its sources on one line (a relay's refusal sits a few
/// levels down in the listener's error).
fn relay_error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Queued bus calls served per wake of the loop: bounded work per wake.
const BUS_SERVED_PER_WAKE: usize = 8;

impl<S: EventStore> Driver<S> {
    async fn run(mut self) -> anyhow::Result<Node<S>> {
        let mut next_sync = tokio::time::Instant::now() + jittered(self.cfg.sync_interval);
        self.node.handle(now_ms(), Input::Tick);
        loop {
            self.serve_bus();
            self.drain_outputs();
            let wake = self
                .node
                .poll_timeout()
                .map(|t| t.saturating_sub(now_ms()))
                .unwrap_or(60_000);
            let core_timer = tokio::time::sleep(Duration::from_millis(wake));
            let unban_at = self.bans.next_expiry();
            let unban_timer = tokio::time::sleep_until(
                unban_at.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
            );
            tokio::select! {
                biased;
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                cmd = self.commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.on_command(cmd),
                },
                Some(done) = self.finished.recv() => self.on_finished(done),
                _ = core_timer => self.node.handle(now_ms(), Input::Tick),
                _ = unban_timer, if unban_at.is_some() => self.lift_bans(),
                _ = tokio::time::sleep_until(next_sync) => {
                    self.sync_all();
                    next_sync = tokio::time::Instant::now() + jittered(self.cfg.sync_interval);
                }
            }
        }
        info!("shutting down: snapshot and flush");
        self.node.shutdown().context("final snapshot")?;
        Ok(self.node)
    }

    fn emit(&self, e: NetEvent) {
        // No receivers is fine: events are for whoever listens.
        let _ = self.events.send(e);
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Broadcast(event) => self.publish(event.into_bytes()),
                Output::Verdict {
                    hash,
                    verdict,
                    source,
                    ..
                } => {
                    if let Source::Peer(from) = source {
                        self.report(hash, verdict, from);
                    }
                    self.emit(NetEvent::Verdict(hash, verdict));
                }
                Output::Stored { hash, source } => {
                    if let Some(Source::Sync(from) | Source::Peer(from)) = source {
                        if let Some(t) =
                            identity::peer_id(&from).and_then(|p| self.traffic.get_mut(&p))
                        {
                            t.received += 1;
                        }
                    }
                    if let Some(Source::Sync(_)) = source {
                        self.regossip(&hash);
                    }
                    self.emit(NetEvent::Stored { hash, source })
                }
                Output::ViewChanged(change) => {
                    if let Some(change) = self.change_of(change) {
                        self.changes.publish(change);
                    }
                }
            }
        }
    }

    /// The feed's form of a view change, read from the views as they are
    /// now (the change was just applied). A post added or updated past
    /// its TTL is not reported: no reader would list it.
    fn change_of(&self, change: ViewChange) -> Option<Change> {
        let views = self.node.views();
        let now = now_ms();
        match change {
            ViewChange::Post { name, change } => {
                let post = views.market.get(&name)?;
                let gone = |reason: String, by: Option<NodeId>| PostGone {
                    id: post.id,
                    author: post.author,
                    reason,
                    by,
                    fulfilled_by: None,
                    category: post.content.category,
                    tags: post.content.tags.clone(),
                };
                let view = || Box::new(PostView::of(post, now, &views.membership));
                match change {
                    PostChange::Added | PostChange::Updated if post.expires_at <= now => None,
                    PostChange::Added => Some(Change::PostAdded(view())),
                    PostChange::Updated => Some(Change::PostUpdated(view())),
                    PostChange::Expired => {
                        let x = post.expired.as_ref()?;
                        let mut g = gone(PostGone::reason_of(&x.reason), Some(x.by));
                        if x.reason == hearth_proto::ExpiryReason::Fulfilled {
                            // An accepted claim: whose (issue 14).
                            let post_ref = hearth_proto::EventRef {
                                author: post.author,
                                id: post.id,
                            };
                            g.fulfilled_by = views
                                .conversations
                                .accepted(&post_ref)
                                .map(|a| a.fulfilled_by());
                        }
                        Some(Change::PostExpired(g))
                    }
                    PostChange::Hidden => Some(Change::PostHidden(gone(
                        if post.author_active {
                            "over_limit".into()
                        } else {
                            "author_inactive".into()
                        },
                        None,
                    ))),
                }
            }
            ViewChange::Level { node, level } => Some(Change::MemberLevel {
                node,
                level,
                name: views.membership.display_name(&node).map(str::to_owned),
            }),
            ViewChange::Conversation(c) => {
                crate::net::changes::conversation_change(&self.node, &*self.cfg.inbox, c)
            }
            ViewChange::Lost { count } => Some(Change::Reset {
                reason: format!("{count} changes at once were too many to send: reload"),
            }),
        }
    }

    fn peer_change(peer: PeerId, address: Option<&Multiaddr>) -> PeerChange {
        PeerChange {
            peer: peer.to_string(),
            node: identity::node_id(&peer),
            address: address.map(ToString::to_string),
        }
    }

    fn report(&mut self, hash: EventHash, verdict: Verdict, from: NodeId) {
        let Some(peer) = identity::peer_id(&from) else {
            return;
        };
        let verdict = soften_before_sync(
            verdict,
            self.node.log().is_pending(&hash),
            self.sync_settled.contains(&peer),
        );
        self.report_to_gossip(&gossipsub::MessageId::new(&hash.0), peer, verdict);
    }

    /// Tells gossipsub what became of message `id` from `peer` (its score
    /// moves with it), and bans the peer if a `Reject` graylisted it. The
    /// one place a validation result leaves the driver.
    fn report_to_gossip(&mut self, id: &gossipsub::MessageId, peer: PeerId, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, &peer, acceptance);
        if verdict == Verdict::Reject {
            self.ban_if_graylisted(peer);
        }
    }

    /// A `Reject` is the only thing that moves a score far down (P4): after
    /// one, a peer below the graylist threshold is disconnected and refused
    /// for `NetConfig::ban_duration`. Gossipsub alone would only ignore its
    /// RPCs while it stays connected, syncing and holding a slot.
    fn ban_if_graylisted(&mut self, peer: PeerId) {
        let score = self.swarm.behaviour().gossipsub.peer_score(&peer);
        if !score.is_some_and(|s| s < gossip::GRAYLIST_THRESHOLD) {
            return;
        }
        warn!(%peer, ?score, "peer below the graylist threshold: disconnected and banned");
        if let Some(lifted) = self.bans.ban(peer, Instant::now(), self.cfg.ban_duration) {
            self.swarm.behaviour_mut().blocked.unblock_peer(lifted);
        }
        // Closes every connection to the peer and denies new ones.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.emit(NetEvent::PeerBanned(peer));
    }

    /// Lets peers whose ban ended connect again. Their gossipsub score was
    /// retained, so they stay graylisted until it decays.
    fn lift_bans(&mut self) {
        for peer in self.bans.expire(Instant::now()) {
            info!(%peer, "ban ended");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            self.emit(NetEvent::PeerUnbanned(peer));
        }
    }

    fn publish(&mut self, bytes: Vec<u8>) {
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes.clone())
        {
            Ok(_) => {}
            Err(PublishError::NoPeersSubscribedToTopic) | Err(PublishError::AllQueuesFull(_)) => {
                debug!("no subscribed peer yet: event kept for later");
                if self.unpublished.len() >= UNPUBLISHED_MAX {
                    self.unpublished.pop_front();
                }
                self.unpublished.push_back(bytes);
            }
            Err(PublishError::Duplicate) => {}
            Err(e) => warn!(error = %e, "publish failed; sync will carry the event"),
        }
    }

    /// Gossips on an event this node learned by sync, if it is recent
    /// ([`REGOSSIP_WINDOW_MS`]). Never queued: with no subscriber there is
    /// no one to tell, and sync carries it anyway.
    fn regossip(&mut self, hash: &EventHash) {
        let event = match self.node.log().store().get(hash) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "cannot read a synced event to gossip it on");
                return;
            }
        };
        if !regossip_recent(event.event().ts, now_ms()) {
            return;
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), event.into_bytes())
        {
            Ok(_) => debug!(%hash, "synced event gossiped on"),
            Err(e) => debug!(%hash, error = %e, "synced event not gossiped on"),
        }
    }

    fn republish(&mut self) {
        let queued: Vec<Vec<u8>> = self.unpublished.drain(..).collect();
        for bytes in queued {
            self.publish(bytes);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Call {
                name,
                params,
                reply,
            } => {
                if let Some((name, params, reply)) = self.local_call_off_loop(name, params, reply) {
                    let inbox = self.cfg.inbox.clone();
                    let result =
                        self.node
                            .call_with_inbox(now_ms(), Caller::Local, &name, params, &*inbox);
                    if name == crate::core::services::conversations::DM_SEND {
                        // A recipient connected now gets it by gossip.
                        for peer in self.swarm.connected_peers() {
                            if let Some(node) = identity::node_id(peer) {
                                inbox.recipient_seen(&node);
                            }
                        }
                    }
                    let _ = reply.send(result);
                }
            }
            Command::CoreCall {
                name,
                params,
                reply,
            } => {
                let _ = reply.send(self.node.call(now_ms(), Caller::Local, &name, params));
            }
            Command::SearchCandidates {
                category,
                tags,
                reply,
            } => {
                let found = crate::semantic::search::candidates(
                    &self.node.views().market,
                    now_ms(),
                    category,
                    &tags,
                );
                let _ = reply.send(found);
            }
            Command::ListRanked {
                query,
                ranked,
                search,
                reply,
            } => {
                let page = self
                    .node
                    .market_list_ranked(now_ms(), query, Some((ranked, search)));
                let _ = reply.send(page);
            }
            Command::PostViews { keys, reply } => {
                let views = self.node.views();
                let now = now_ms();
                let found = keys
                    .iter()
                    .filter_map(|k| views.market.get(k))
                    .map(|p| crate::core::services::market::PostView::of(p, now, &views.membership))
                    .collect();
                let _ = reply.send(found);
            }
            Command::RemoteCall {
                peer,
                name,
                params,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().bus.send_request(
                    &peer,
                    BusRequest {
                        capability: name,
                        params,
                    },
                );
                self.pending_bus.insert(id, reply);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_statuses());
            }
            Command::Status { reply } => {
                // The storage probe: a store that refused writes may take
                // them again now; the status then says so.
                if let Err(e) = self.node.log_mut().probe_store() {
                    debug!(error = %e, "store still refuses writes");
                }
                let _ = reply.send(self.status());
            }
            Command::Dial { addr } => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    warn!(%addr, error = %e, "dial failed");
                }
            }
            Command::PublishRaw { bytes } => self.publish(bytes),
            Command::Metrics { reply } => {
                let g = &self.gauges;
                let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                g.log_events.set(to_i64(self.node.log().store().len()));
                g.lamport_clock.set(to_i64(self.node.log().clock()));
                g.pending_events
                    .set(to_i64(self.node.log().pending_len() as u64));
                g.peers
                    .set(to_i64(self.swarm.connected_peers().count() as u64));
                let mut text = String::new();
                if let Err(e) = prometheus_client::encoding::text::encode(
                    &mut text,
                    &lock_registry(&self.metrics),
                ) {
                    warn!(error = %e, "cannot encode metrics");
                }
                let _ = reply.send(text);
            }
            Command::Log { request, reply } => {
                let _ = reply.send(super::local_api::serve_log(&mut self.node, request));
            }
            Command::Shutdown => {}
        }
    }

    /// Every connected peer as `node.status` lists it.
    fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.swarm
            .connected_peers()
            .map(|p| PeerStatus {
                node_id: identity::node_id(p),
                peer_id: p.to_string(),
                last_sync_ms: self.last_sync.get(p).copied(),
                score: self.swarm.behaviour().gossipsub.peer_score(p),
                connection: self.reach.kind(p),
                address: self.reach.address(p).map(|a| a.to_string()),
                connected_since_ms: self.traffic.get(p).map(|t| t.since_ms),
                events_received: self.traffic.get(p).map_or(0, |t| t.received),
                events_sent: self.traffic.get(p).map_or(0, |t| t.sent),
            })
            .collect()
    }

    fn status(&mut self) -> Status {
        let views = self.node.views();
        let me = self.node.node_id();
        Status {
            node_id: me,
            peer_id: self.swarm.local_peer_id().to_string(),
            community: self.node.community(),
            community_name: views.membership.community_name().to_owned(),
            display_name: views.membership.display_name(&me).map(str::to_owned),
            level: views.membership.level(&me),
            events: self.node.log().store().len(),
            clock: self.node.log().clock(),
            pending: self.node.log().pending_len(),
            posts: views.market.post_count(),
            listen: self.swarm.listeners().map(|a| a.to_string()).collect(),
            peers: self.peer_statuses(),
            digest: hex::encode(views.digest()),
            gossip: self.gossip_counts(),
            storage: self.node.log().write_state(),
            storage_note: self
                .node
                .log()
                .write_state()
                .advice(&self.node.log().store().location()),
            banned: self.banned(),
            reach: self.reach_status(),
            dm_waiting: self.cfg.inbox.waiting(
                &self
                    .swarm
                    .connected_peers()
                    .filter_map(identity::node_id)
                    .collect(),
            ),
        }
    }

    fn reach_status(&mut self) -> reach::ReachStatus {
        let table = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .flat_map(|b| {
                b.iter()
                    .map(|e| e.node.key.preimage().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let relay_on = self.swarm.behaviour().relay_server.is_enabled();
        self.reach.status(relay_on, table)
    }

    fn banned(&self) -> Vec<BannedPeer> {
        let now = Instant::now();
        let wall = now_ms();
        self.bans
            .iter()
            .map(|(p, until)| BannedPeer {
                node_id: identity::node_id(p),
                peer_id: p.to_string(),
                score: self.swarm.behaviour().gossipsub.peer_score(p),
                until_ms: wall + until.saturating_duration_since(now).as_millis() as u64,
            })
            .collect()
    }

    /// Gossip messages received, with and without duplicates, read from
    /// gossipsub's metrics (it drops duplicates before we see them).
    fn gossip_counts(&self) -> GossipCounts {
        let mut text = String::new();
        if let Err(e) =
            prometheus_client::encoding::text::encode(&mut text, &lock_registry(&self.metrics))
        {
            warn!(error = %e, "cannot encode gossip metrics");
        }
        let sum = |name: &str| -> u64 {
            text.lines()
                .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        GossipCounts {
            received: sum("gossipsub_topic_msg_recv_counts_unfiltered_total"),
            unique: sum("gossipsub_topic_msg_recv_counts_total"),
            rate_limited: self.rate_limited,
        }
    }

    /// Periodic anti-entropy with every connected peer.
    fn sync_all(&mut self) {
        let peers: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|p| !self.sync_refused.contains(p))
            .copied()
            .collect();
        for peer in peers {
            self.start_sync(peer);
        }
    }

    fn start_sync(&mut self, peer: PeerId) {
        let Some(node) = identity::node_id(&peer) else {
            return;
        };
        match self.node.sync_start(node) {
            Ok(Some(message)) => self.send_sync(peer, message),
            Ok(None) => {}
            Err(e) => warn!(%peer, error = %e, "cannot start sync"),
        }
    }

    fn send_sync(&mut self, peer: PeerId, message: Vec<u8>) {
        let request = SyncRequest {
            community: self.node.community(),
            message,
        };
        self.swarm.behaviour_mut().sync.send_request(&peer, request);
    }

    fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = match identity::node_id(&peer) {
                    _ if request.community != self.node.community() => SyncResponse::Refused(
                        format!("this node syncs community {}", self.node.community()),
                    ),
                    None => SyncResponse::Refused("peer key is not ed25519".into()),
                    Some(from) => match self.node.sync_answer(from, &request.message) {
                        Ok(reply) => {
                            SyncResponse::Messages(vec![serde_bytes::ByteBuf::from(reply)])
                        }
                        Err(e) => {
                            warn!(%peer, error = %e, "refused sync message");
                            SyncResponse::Refused(e.to_string())
                        }
                    },
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Event::Message {
                peer,
                message: Message::Response { response, .. },
                ..
            } => {
                let Some(from) = identity::node_id(&peer) else {
                    return;
                };
                match response {
                    SyncResponse::Refused(reason) => {
                        // Said once per connection: a peer of another
                        // community (an anchor relaying for several)
                        // refuses every time, and is not asked again.
                        if self.sync_refused.insert(peer) {
                            warn!(%peer, %reason, "peer refused sync; not asked again while connected");
                        }
                        self.sync_settled.insert(peer);
                        self.node.sync_abort_initiated(&from);
                    }
                    SyncResponse::Messages(messages) => {
                        for m in messages {
                            if !self.node.sync_running(&from) {
                                // A late answer to a sync given up on: not
                                // a completed sync.
                                debug!(%peer, "late sync answer ignored");
                                break;
                            }
                            match self.node.sync_continue(from, &m) {
                                Ok(Some(next)) => self.send_sync(peer, next),
                                Ok(None) => {
                                    self.last_sync.insert(peer, now_ms());
                                    self.sync_settled.insert(peer);
                                    if let Some(r) = self.node.last_sync() {
                                        if let Some(t) = self.traffic.get_mut(&peer) {
                                            t.sent += r.stats.events_sent;
                                        }
                                        self.changes.publish(Change::SyncFinished {
                                            peer: peer.to_string(),
                                            node: Some(r.peer),
                                            received: r.stats.events_received,
                                            sent: r.stats.events_sent,
                                            rounds: r.stats.rounds,
                                        });
                                    }
                                    self.emit(NetEvent::SyncDone { peer });
                                }
                                Err(e) => {
                                    warn!(%peer, error = %e, "sync failed");
                                    self.sync_settled.insert(peer);
                                    self.node.sync_abort_initiated(&from);
                                }
                            }
                        }
                    }
                }
            }
            Event::OutboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "sync request failed");
                self.sync_settled.insert(peer);
                if let Some(from) = identity::node_id(&peer) {
                    self.node.sync_abort_initiated(&from);
                }
            }
            _ => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if self.cfg.reach.anchor && reach::announceable(&address, &self.cfg.listen) {
                    // The anchor profile is reachable by definition: announce
                    // what it listens on (identify and kad carry it).
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(NetEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                num_established,
                endpoint,
                ..
            } => {
                // A relayed inbound connection's remote address is just
                // `/p2p/<peer>`: ask the endpoint, not the address.
                let relayed = endpoint.is_relayed();
                self.reach.connected(
                    connection_id,
                    peer_id,
                    endpoint.get_remote_address().clone(),
                    relayed,
                );
                // Every connection, not only a peer's first: scripts/bench-netns
                // times the first direct one from this line.
                debug!(peer = %peer_id, relayed = relayed || reach::is_relayed(endpoint.get_remote_address()), "connection established");
                if num_established.get() == 1 {
                    debug!(peer = %peer_id, "connected");
                    self.traffic.insert(
                        peer_id,
                        PeerTraffic {
                            since_ms: now_ms(),
                            received: 0,
                            sent: 0,
                        },
                    );
                    if let Some(node) = identity::node_id(&peer_id) {
                        // The sync on connecting carries what waited for it.
                        self.cfg.inbox.recipient_seen(&node);
                    }
                    self.changes
                        .publish(Change::PeerConnected(Self::peer_change(
                            peer_id,
                            Some(endpoint.get_remote_address()),
                        )));
                    self.emit(NetEvent::PeerConnected(peer_id));
                    self.start_sync(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.reach.closed(connection_id);
                if num_established == 0 {
                    if let Some(node) = identity::node_id(&peer_id) {
                        self.node.sync_abort(&node);
                    }
                    self.sync_settled.remove(&peer_id);
                    self.traffic.remove(&peer_id);
                    self.sync_refused.remove(&peer_id);
                    self.changes
                        .publish(Change::PeerDisconnected(Self::peer_change(peer_id, None)));
                    self.emit(NetEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address }
                if !self.cfg.reach.anchor
                    && !self.cfg.reach.external.contains(&address)
                    && reach::lan_only(
                        &address,
                        &self.swarm.listeners().cloned().collect::<Vec<_>>(),
                    ) =>
            {
                // A neighbour on our LAN dialed us back: not reachable
                // beyond the router, so neither public nor advertised.
                debug!(%address, "address confirmed only on our LAN: not external");
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
                self.reach.external_confirmed(address.clone());
                self.emit(NetEvent::ExternalConfirmed(address));
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                debug!(%address, "external address expired");
                self.reach.external_expired(&address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self.reach.listener_closed(listener_id) {
                    let reason = match reason {
                        Ok(()) => "closed".to_owned(),
                        Err(e) => relay_error_chain(&e),
                    };
                    info!(%relay, %reason, "relay slot lost");
                    self.emit(NetEvent::RelaySlotLost { relay, reason });
                }
            }
            SwarmEvent::IncomingConnectionError {
                peer_id: Some(peer),
                error: ListenError::Denied { .. },
                ..
            } if self.bans.is_banned(&peer, Instant::now()) => {
                debug!(%peer, "banned peer refused");
                self.emit(NetEvent::PeerRefused(peer));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.on_gossip(e),
            SwarmEvent::Behaviour(BehaviourEvent::Bus(e)) => self.on_bus(e),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    // Also over a relayed connection: a neighbour on the
                    // same LAN is better reached directly (hole punching
                    // through one's own router rarely works: no hairpin).
                    let relayed_only = self.reach.kind(&peer) == Some(ConnKind::Relayed);
                    if !self.swarm.is_connected(&peer) || relayed_only {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                debug!(peer = %peer_id, agent = %info.agent_version, "identified");
                self.on_identified(peer_id, info);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatClient(e)) => {
                debug!(addr = %e.tested_addr, server = %e.server, ok = e.result.is_ok(), "AutoNAT probe");
                self.reach.autonat_result(e.result.is_ok());
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(e)) => self.on_relay_server(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                info!(relay = %relay_peer_id, "relay slot reserved");
                self.reach.slot_accepted(&relay_peer_id);
                self.emit(NetEvent::RelayReserved(relay_peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(connection) => {
                    info!(peer = %remote_peer_id, "hole punched: direct connection");
                    self.reach.hole_punched(connection);
                    self.emit(NetEvent::HolePunched(remote_peer_id));
                }
                Err(e) => debug!(peer = %remote_peer_id, error = %e, "hole punch failed"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Upnp(e)) => match e {
                upnp::Event::NewExternalAddr { external_addr, .. } => {
                    info!(%external_addr, "UPnP mapped a port on the router");
                }
                other => debug!(event = ?other, "UPnP"),
            },
            _ => {}
        }
    }

    /// A peer told us who it is: a member of this community (it speaks our
    /// Kademlia protocol) enters the routing table with the addresses it
    /// listens on; a relay gets asked for a slot while we are not
    /// reachable; a peer reached only through a relay is dialed on our
    /// LAN when it is on it.
    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        if self.reach.kind(&peer) == Some(ConnKind::Relayed) {
            // Met through a relay but on our LAN: dial it there (see
            // `reach::same_lan`); the relayed connection stays until idle.
            let ours: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
            let lan = reach::same_lan(&ours, &info.listen_addrs);
            if !lan.is_empty() {
                debug!(%peer, ?lan, "relayed peer on our LAN: dialing it directly");
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(lan)
                    .condition(libp2p::swarm::dial_opts::PeerCondition::NotDialing)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(%peer, error = %e, "cannot dial a relayed peer's LAN address");
                }
            }
        }
        let kad_protocol = self.swarm.behaviour().kad.protocol_names().first().cloned();
        if kad_protocol.is_some_and(|p| info.protocols.contains(&p)) {
            for addr in info.listen_addrs.into_iter().take(IDENTIFY_ADDRS_MAX) {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr);
            }
        }
        let relays = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
        if relays && self.reach.wants_slot(&peer, self.cfg.reach.relays_max) {
            let Some(addr) = self.reach.direct_addr(&peer) else {
                return;
            };
            let circuit = addr
                .with_p2p(peer)
                .unwrap_or_else(|a| a)
                .with(libp2p::multiaddr::Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    info!(%circuit, "asking the relay for a slot");
                    self.reach.slot_requested(peer, listener);
                }
                Err(e) => warn!(%circuit, error = %e, "cannot listen through the relay"),
            }
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        // Only routing-table changes matter: the periodic walk (bootstrap)
        // and identify fill the table; a new member gets dialed.
        if let kad::Event::RoutingUpdated {
            peer,
            is_new_peer: true,
            addresses,
            ..
        } = event
        {
            debug!(%peer, "member discovered");
            self.emit(NetEvent::Discovered(peer));
            let connected = self.swarm.connected_peers().count();
            if self.swarm.is_connected(&peer) || connected >= reach::PEERS_DIALED_MAX {
                return;
            }
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addresses.into_vec())
                .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, error = %e, "cannot dial a discovered member");
            }
        }
    }

    fn on_relay_server(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                self.reach.held(src_peer_id);
                self.emit(NetEvent::ReservationAccepted(src_peer_id));
            }
            relay::Event::ReservationReqDenied {
                src_peer_id,
                status,
            } => {
                let status = status_name(&status);
                info!(peer = %src_peer_id, %status, "relay reservation refused");
                self.emit(NetEvent::ReservationDenied {
                    peer: src_peer_id,
                    status: status.to_owned(),
                });
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.reach.released(&src_peer_id);
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                debug!(src = %src_peer_id, dst = %dst_peer_id, ?error, "circuit closed");
                self.emit(NetEvent::CircuitClosed {
                    src: src_peer_id,
                    dst: dst_peer_id,
                    error: error.map(|e| e.to_string()),
                });
            }
            other => debug!(event = ?other, "relay server"),
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            } => {
                let span = info_span!("gossip_in", from = %propagation_source);
                let _enter = span.enter();
                if !self.rate.allow(propagation_source, Instant::now()) {
                    // Over the limit: not stored now, not forwarded, no
                    // penalty; sync brings the event later.
                    self.rate_limited += 1;
                    let id = gossip::message_id(&message.data);
                    self.report_to_gossip(&id, propagation_source, Verdict::Ignore);
                    return;
                }
                match identity::node_id(&propagation_source) {
                    Some(from) => self.node.handle(
                        now_ms(),
                        Input::Received {
                            bytes: message.data,
                            source: Source::Peer(from),
                        },
                    ),
                    None => {
                        let id = gossip::message_id(&message.data);
                        self.report_to_gossip(&id, propagation_source, Verdict::Reject);
                    }
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                debug!(peer = %peer_id, "peer subscribed");
                self.emit(NetEvent::Subscribed(peer_id));
                self.republish();
            }
            _ => {}
        }
    }

    /// Serves queued remote calls, a bounded number per wake.
    fn serve_bus(&mut self) {
        for _ in 0..BUS_SERVED_PER_WAKE {
            let Some((call, late)) = self.bus_queue.pop(now_ms()) else {
                return;
            };
            let span =
                info_span!("bus_in", from = %call.caller, capability = %call.request.capability);
            let _enter = span.enter();
            let result = match late {
                Some(timeout) => Err(timeout),
                None => self.node.call(
                    now_ms(),
                    Caller::Remote(call.caller),
                    &call.request.capability,
                    call.request.params,
                ),
            };
            let response = match result {
                Ok(v) => BusResponse::Ok(v),
                Err(e) => BusResponse::Err(e),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .bus
                .send_response(call.channel, response);
        }
    }

    fn on_bus(&mut self, event: request_response::Event<BusRequest, BusResponse>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let Some(channel) = self.remote_call_off_loop(peer, &request, channel) else {
                    return;
                };
                let caller = identity::node_id(&peer);
                let desc = crate::core::services::descriptor(&request.capability);
                let refusal = match (caller, desc) {
                    (None, _) => BusError::unauthorized("peer key is not ed25519"),
                    (_, None) => {
                        BusError::not_found(format!("no capability named {:?}", request.capability))
                    }
                    (Some(caller), Some(desc)) => {
                        let call = InboundCall {
                            caller,
                            request,
                            channel,
                        };
                        if let Err((call, overloaded)) = self.bus_queue.offer(desc, now_ms(), call)
                        {
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .bus
                                .send_response(call.channel, BusResponse::Err(overloaded));
                        }
                        return;
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .bus
                    .send_response(channel, BusResponse::Err(refusal));
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_bus.remove(&request_id) {
                    let _ = reply.send(match response {
                        BusResponse::Ok(v) => Ok(v),
                        BusResponse::Err(e) => Err(e),
                    });
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending_bus.remove(&request_id) {
                    let code = match error {
                        request_response::OutboundFailure::Timeout => BusError::new(
                            crate::core::ErrorCode::Timeout,
                            "the peer did not answer in time",
                        ),
                        other => BusError::new(
                            crate::core::ErrorCode::Partition,
                            format!("cannot reach the peer: {other}"),
                        ),
                    };
                    let _ = reply.send(Err(code));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synced events are gossiped on only while recent: inside the window
    /// (and when the author's clock runs ahead of ours), not after it.
    #[test]
    fn only_recent_synced_events_are_gossiped_on() {
        let now = 1_800_000_000_000;
        assert!(regossip_recent(now, now));
        assert!(regossip_recent(now - REGOSSIP_WINDOW_MS, now));
        assert!(!regossip_recent(now - REGOSSIP_WINDOW_MS - 1, now));
        assert!(!regossip_recent(now - 7 * 24 * 3_600_000, now));
        assert!(regossip_recent(now + 60_000, now), "a clock ahead of ours");
    }

    /// A pending event from its author is only ignored until a sync with
    /// that peer finished; after it, and for invalid events at any time,
    /// the verdict stands.
    #[test]
    fn pending_rejects_wait_for_a_finished_sync() {
        use Verdict::{Accept, Ignore, Reject};
        assert_eq!(soften_before_sync(Reject, true, false), Ignore);
        assert_eq!(soften_before_sync(Reject, true, true), Reject);
        assert_eq!(soften_before_sync(Reject, false, false), Reject);
        assert_eq!(soften_before_sync(Accept, false, false), Accept);
        assert_eq!(soften_before_sync(Ignore, true, false), Ignore);
    }
}
