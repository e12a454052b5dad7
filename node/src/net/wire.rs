//! Request-response bodies of `/hearthnet/sync/1` and `/hearthnet/bus/1`
//! (CBOR, via libp2p's cbor codec). Sync messages travel as opaque bytes
//! that the core decodes with its own bounds: the transport never parses
//! protocol content.

use hearth_proto::CommunityId;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::core::bus::BusError;

pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearthnet/sync/1");
pub const BUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/hearthnet/bus/1");

/// Requests larger than this are refused by the codec: a sync message is
/// capped well below it by the core, a bus call is small.
pub const REQUEST_BYTES_MAX: u64 = 2 << 20;
/// Responses may carry event batches.
pub const RESPONSE_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Sync is per community: a peer of another community is told so.
    pub community: CommunityId,
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The core's encoded reply messages, in order.
    Messages(Vec<serde_bytes::ByteBuf>),
    /// The request was refused; the reason is for logs.
    Refused(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusRequest {
    pub capability: String,
    pub params: ciborium::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BusResponse {
    Ok(ciborium::Value),
    Err(BusError),
}
