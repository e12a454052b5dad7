//! The composed libp2p behaviour. Protocol logic lives in the core; these
//! behaviours only move bytes.

use std::time::Duration;

use libp2p::allow_block_list::{self, BlockedPeers};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, mdns, ping, request_response, PeerId};

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
