//! One key, two names: the node's ed25519 key is both its NodeID (events)
//! and its libp2p identity (PeerId), so a PeerId and a NodeID name one device.

use hearth_proto::{Identity, NodeId};
use libp2p::identity::{self, Keypair};
use libp2p::PeerId;

/// The libp2p keypair of a node identity.
pub fn keypair(identity: &Identity) -> Keypair {
    let mut seed = identity.seed();
    // A 32-byte seed is always a valid ed25519 secret key.
    match Keypair::ed25519_from_bytes(&mut seed) {
        Ok(k) => k,
        Err(_) => unreachable!("32-byte ed25519 seed rejected"),
    }
}

pub fn peer_id(node: &NodeId) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(node.as_bytes()).ok()?;
    Some(PeerId::from_public_key(&identity::PublicKey::from(key)))
}

/// The NodeID behind a PeerId, if the peer uses an ed25519 key (ours do;
/// the key is inlined in the PeerId's identity multihash).
pub fn node_id(peer: &PeerId) -> Option<NodeId> {
    let multihash = peer.as_ref();
    if multihash.code() != 0x00 {
        return None; // not an identity multihash: a hashed (non-ed25519) key
    }
    let key = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(NodeId(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_node_id_name_the_same_key() {
        let id = Identity::from_seed([3; 32]);
        let peer = keypair(&id).public().to_peer_id();
        assert_eq!(peer_id(&id.node_id()), Some(peer));
        assert_eq!(node_id(&peer), Some(id.node_id()));
    }
}
