//! Gossipsub as DESIGN.md §3 fixes it: raw event bytes on the topic
//! `hearthnet/1/<community hex>`, libp2p signing off (events carry their own
//! signatures), message id = SHA-256 of the bytes (the event hash), and
//! every message validated by the core before it is forwarded.

use std::collections::HashMap;
use std::time::Duration;

use hearth_proto::CommunityId;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use sha2::{Digest, Sha256};

/// A gossipsub frame can carry many events (an IWANT answer bundles them),
/// and the limit applies to the whole frame: 1 MiB, far above one 16 KiB event.
pub const MAX_TRANSMIT_BYTES: usize = 1 << 20;
/// Per-connection send queue: a burst of a few hundred posts (a node back
/// online publishing its backlog) must not overflow it.
pub const HANDLER_QUEUE_LEN: usize = 10_000;

pub fn topic(community: &CommunityId) -> IdentTopic {
    IdentTopic::new(format!("hearthnet/1/{}", community.to_hex()))
}

pub fn message_id(bytes: &[u8]) -> MessageId {
    MessageId::new(&Sha256::digest(bytes))
}

/// Builds the behaviour with every setting that matters spelled out.
pub fn behaviour(
    community: &CommunityId,
    heartbeat: Duration,
) -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub::ConfigBuilder::default()
        // Anonymous: no from/seqno/signature fields; events are self-signed.
        .validation_mode(ValidationMode::Anonymous)
        // Message id = event hash; the default (from + seqno) would be the
        // same for every unsigned message and drop all but the first.
        .message_id_fn(|m: &gossipsub::Message| message_id(&m.data))
        // Forward only what the core accepted (report_message_validation_result).
        .validate_messages()
        .max_transmit_size(MAX_TRANSMIT_BYTES)
        .connection_handler_queue_len(HANDLER_QUEUE_LEN)
        // Default is 1 s; a community mesh converges faster with shorter
        // heartbeats, and tests pass a small value so meshes form quickly.
        .heartbeat_interval(heartbeat)
        // Publish to every subscribed peer, not only the mesh: a post reaches
        // a small neighbourhood at once even before the mesh is grafted.
        .flood_publish(true)
        // Events are kept for sync anyway; remember ids long enough that a
        // burst relayed around the mesh is not re-delivered.
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gossip = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)?;
    let (params, thresholds) = scoring(community);
    gossip.with_peer_score(params, thresholds)?;
    Ok(gossip)
}

/// Peer scoring: invalid events (a `Reject` verdict) cost the sender
/// heavily; the defaults that would punish honest peers here are off.
fn scoring(community: &CommunityId) -> (PeerScoreParams, PeerScoreThresholds) {
    let topic = TopicScoreParams {
        // P3/P3b punish mesh peers that deliver fewer than ~20 messages per
        // window: a quiet neighbourhood topic would punish everyone.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: each invalid event costs much more than any honest credit.
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        topic_weight: 1.0,
        ..TopicScoreParams::default()
    };
    let mut topics = HashMap::new();
    topics.insert(self::topic(community).hash(), topic);
    let params = PeerScoreParams {
        topics,
        // Households behind one router (and loopback tests) share an IP.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    (params, PeerScoreThresholds::default())
}
