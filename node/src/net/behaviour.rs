//! The composed libp2p behaviour. Protocol logic lives in the core; these
//! behaviours only move bytes, and find and reach peers: Kademlia scoped to
//! the community, AutoNAT v2, circuit relay v2 (server and client), DCUtR
//! and UPnP (issue 16).

use std::num::NonZeroUsize;
use std::time::Duration;

use hearth_proto::CommunityId;
use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    autonat, dcutr, gossipsub, identify, kad, mdns, ping, relay, request_response, upnp, PeerId,
    StreamProtocol,
};

use super::wire::{
    BusRequest, BusResponse, SyncRequest, SyncResponse, BUS_PROTOCOL, REQUEST_BYTES_MAX,
    RESPONSE_BYTES_MAX, SYNC_PROTOCOL,
};

pub type SyncBehaviour = request_response::cbor::Behaviour<SyncRequest, SyncResponse>;
pub type BusBehaviour = request_response::cbor::Behaviour<BusRequest, BusResponse>;

// libp2p's behaviours do not implement Debug.
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Peers banned for falling below the graylist threshold (see
    /// `gossip::BanList`): their connections are closed and new ones
    /// denied. First, so a denied connection reaches no other behaviour.
    pub blocked: allow_block_list::Behaviour<BlockedPeers>,
    pub gossipsub: gossipsub::Behaviour,
    pub sync: SyncBehaviour,
    pub bus: BusBehaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Peer discovery inside the community (see [`kad_protocol`]).
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Asks peers to dial this node's candidate addresses back: a
    /// confirmed one becomes an external address (reachable).
    pub autonat_client: autonat::v2::client::Behaviour,
    /// Dials other nodes' candidate addresses back for them.
    pub autonat_server: autonat::v2::server::Behaviour,
    /// Circuit relay v2 server: on anchors and by config.
    pub relay_server: Toggle<relay::Behaviour>,
    /// Reserves slots on relays and dials through them.
    pub relay_client: relay::client::Behaviour,
    /// Upgrades relayed connections to direct ones (hole punching).
    pub dcutr: Toggle<dcutr::Behaviour>,
    /// Port mapping on the home router, off by config.
    pub upnp: Toggle<upnp::tokio::Behaviour>,
}

/// The Kademlia protocol of one community: nodes of other communities do
/// not speak it, so they never enter each other's routing tables, even
/// when connected (the same anchor serving two communities).
pub fn kad_protocol(community: &CommunityId) -> Result<StreamProtocol, String> {
    StreamProtocol::try_from_owned(format!("/hearthnet/{}/kad/1.0.0", community.to_hex()))
        .map_err(|e| format!("kad protocol name: {e}"))
}

/// Peers per k-bucket: Kademlia's usual 20; with 256 buckets the routing
/// table is bounded at 5,120 peers, far above a neighbourhood.
pub const KAD_BUCKET_SIZE: usize = 20;
/// A Kademlia message carries peers and their addresses only (no records
/// are stored): 64 KiB is ample and caps what a peer can make us parse.
pub const KAD_PACKET_BYTES_MAX: usize = 64 * 1024;
/// Records a peer could push into our store: none are wanted (we use only
/// the routing table), so the store is the smallest that works.
pub const KAD_RECORDS_MAX: usize = 16;

/// Kademlia for `community`: routing table only, bounded, refreshed by a
/// random walk (bootstrap) every `walk_interval`.
pub fn kad_behaviour(
    community: &CommunityId,
    local: PeerId,
    walk_interval: Duration,
) -> Result<kad::Behaviour<kad::store::MemoryStore>, String> {
    let mut config = kad::Config::new(kad_protocol(community)?);
    config
        .set_kbucket_size(NonZeroUsize::new(KAD_BUCKET_SIZE).ok_or("kbucket size 0")?)
        .set_max_packet_size(KAD_PACKET_BYTES_MAX)
        // Remote PUT_RECORD / ADD_PROVIDER requests are handed to the driver
        // (which ignores them) instead of stored: we publish no records.
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_periodic_bootstrap_interval(Some(walk_interval))
        .set_query_timeout(Duration::from_secs(30));
    let store = kad::store::MemoryStore::with_config(
        local,
        kad::store::MemoryStoreConfig {
            max_records: KAD_RECORDS_MAX,
            max_value_bytes: 1024,
            max_providers_per_key: 1,
            max_provided_keys: KAD_RECORDS_MAX,
        },
    );
    Ok(kad::Behaviour::with_config(local, store, config))
}

/// Limits of this node's relay server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held at once (default 128: every household of a
    /// large neighbourhood behind NAT, twice over).
    pub reservations_max: usize,
    /// Reservations one peer may hold (default 2: a renewal overlapping).
    pub reservations_per_peer_max: usize,
    /// Relayed circuits open at once (default 64).
    pub circuits_max: usize,
    /// Circuits from one peer at once (default 8).
    pub circuits_per_peer_max: usize,
    /// Bytes one circuit may carry before the relay closes it (default
    /// 8 MiB: a full sync of a busy neighbourhood, while DCUtR upgrades).
    pub circuit_bytes_max: u64,
    /// How long one circuit lives before the relay closes it (default 15
    /// min; the node dials again through the relay if it still needs to).
    pub circuit_duration: Duration,
    /// How long a reservation lasts before the client must renew it
    /// (default 1 h, the protocol's usual value).
    pub reservation_duration: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            reservations_max: 128,
            reservations_per_peer_max: 2,
            circuits_max: 64,
            circuits_per_peer_max: 8,
            circuit_bytes_max: 8 << 20,
            circuit_duration: Duration::from_secs(15 * 60),
            reservation_duration: Duration::from_secs(3600),
        }
    }
}

/// The relay server with `limits`, every one spelled out (the crate's
/// defaults allow 128 KiB per circuit, too little for a sync).
pub fn relay_server(local: PeerId, limits: RelayLimits) -> relay::Behaviour {
    let config = relay::Config {
        max_reservations: limits.reservations_max,
        max_reservations_per_peer: limits.reservations_per_peer_max,
        reservation_duration: limits.reservation_duration,
        max_circuits: limits.circuits_max,
        max_circuits_per_peer: limits.circuits_per_peer_max,
        max_circuit_duration: limits.circuit_duration,
        max_circuit_bytes: limits.circuit_bytes_max,
        ..relay::Config::default()
    };
    let mut server = relay::Behaviour::new(local, config);
    // Serve from the start: an anchor is reachable by profile, it need not
    // wait for AutoNAT to confirm an address before it relays.
    server.set_status(Some(relay::Status::Enable));
    server
}

/// Sync and bus requests time out after this long; the bus also applies
/// each capability's own timeout, which is shorter.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn request_response<Req, Resp>(
    protocol: libp2p::StreamProtocol,
) -> request_response::cbor::Behaviour<Req, Resp>
where
    Req: Send + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(REQUEST_BYTES_MAX)
        .set_response_size_maximum(RESPONSE_BYTES_MAX);
    request_response::Behaviour::with_codec(
        codec,
        [(protocol, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
    )
}

pub fn sync_behaviour() -> SyncBehaviour {
    request_response(SYNC_PROTOCOL)
}

pub fn bus_behaviour() -> BusBehaviour {
    request_response(BUS_PROTOCOL)
}

pub fn identify_behaviour(key: &libp2p::identity::Keypair) -> identify::Behaviour {
    identify::Behaviour::new(identify::Config::new("/hearthnet/1".into(), key.public()))
}

pub fn upnp_behaviour(enabled: bool) -> Toggle<upnp::tokio::Behaviour> {
    Toggle::from(enabled.then(upnp::tokio::Behaviour::default))
}

pub fn mdns_behaviour(
    enabled: bool,
    local: PeerId,
) -> std::io::Result<Toggle<mdns::tokio::Behaviour>> {
    let inner = if enabled {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
    } else {
        None
    };
    Ok(Toggle::from(inner))
}
