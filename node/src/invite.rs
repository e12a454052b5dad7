//! Invite strings: what `hearth community invite` prints and
//! `GET /api/invite` answers (the node tab shows it as text and QR code),
//! and what `hearth join` / `hearth run --join` read back.
//!
//! What it owns: the invite's wire form (`hearth-invite:` then hex of a
//! CBOR map `{c: community, g: genesis event, a: [multiaddr]}`), and which
//! of a node's addresses go into one ([`dial_addresses`]). Both doors build
//! invites here, so the page and the CLI hand out the same string.

use hearth_proto::{CommunityId, VerifiedEvent};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// Prefix of invite strings; the rest is hex of a CBOR map.
pub const INVITE_PREFIX: &str = "hearth-invite:";
/// Addresses kept in one invite: enough for every interface of a device,
/// and the string stays short enough for a QR code.
pub const INVITE_ADDRS_MAX: usize = 16;

/// What an invite carries. The genesis is verified on `join`; the
/// addresses are only hints for the first dial.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "c", with = "serde_bytes")]
    community: Vec<u8>,
    #[serde(rename = "g", with = "serde_bytes")]
    genesis: Vec<u8>,
    #[serde(rename = "a")]
    addrs: Vec<String>,
}

/// Why an invite could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("an invite starts with {INVITE_PREFIX:?}")]
    Prefix,
    #[error("the invite is not valid hex")]
    Hex,
    #[error("the invite is damaged: {0}")]
    Damaged(String),
    #[error("the invite's genesis event does not verify: {0}")]
    Genesis(String),
    #[error("the invite's address {0:?} is not a multiaddr")]
    Address(String),
    #[error("encoding the invite: {0}")]
    Encode(String),
}

/// An invite as read: the genesis event (verified as an event; the caller
/// checks it founds `community`) and the addresses to dial first.
#[derive(Debug)]
pub struct Parts {
    pub community: Vec<u8>,
    pub genesis: VerifiedEvent,
    pub addrs: Vec<Multiaddr>,
}

/// The invite string for `community` founded by `genesis`, with at most
/// [`INVITE_ADDRS_MAX`] of `addrs` (in the order given).
pub fn encode(
    community: &CommunityId,
    genesis: &VerifiedEvent,
    mut addrs: Vec<String>,
) -> Result<String, InviteError> {
    addrs.truncate(INVITE_ADDRS_MAX);
    let wire = Wire {
        community: community.0.to_vec(),
        genesis: genesis.bytes().to_vec(),
        addrs,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&wire, &mut bytes).map_err(|e| InviteError::Encode(e.to_string()))?;
    Ok(format!("{INVITE_PREFIX}{}", hex::encode(bytes)))
}

/// Reads an invite string; every way it can be wrong is an error saying
/// which.
pub fn decode(text: &str) -> Result<Parts, InviteError> {
    let hex_part = text
        .trim()
        .strip_prefix(INVITE_PREFIX)
        .ok_or(InviteError::Prefix)?;
    let raw = hex::decode(hex_part).map_err(|_| InviteError::Hex)?;
    let wire: Wire =
        ciborium::from_reader(raw.as_slice()).map_err(|e| InviteError::Damaged(e.to_string()))?;
    let genesis =
        VerifiedEvent::decode(&wire.genesis).map_err(|e| InviteError::Genesis(e.to_string()))?;
    let addrs = wire
        .addrs
        .iter()
        .take(INVITE_ADDRS_MAX)
        .map(|a| a.parse().map_err(|_| InviteError::Address(a.clone())))
        .collect::<Result<_, _>>()?;
    Ok(Parts {
        community: wire.community,
        genesis,
        addrs,
    })
}

/// The addresses a new device can dial this node at, from the node's
/// listen addresses (`node.status`'s `listen`: libp2p reports one per
/// interface when bound to `0.0.0.0`/`::`) with `/p2p/<peer>` added.
/// Which addresses, in which order, is `net::reach::dialable`'s one rule
/// (no unspecified or link-local ones; public, LAN, relayed, loopback), so
/// the cap on addresses drops loopback ones first.
pub fn dial_addresses(listen: &[String], peer: &libp2p::PeerId) -> Vec<String> {
    // Unparsable entries are skipped; the peer id is stripped before the
    // rule sees an address, so `/p2p/<peer>` is added exactly once.
    let parsed: Vec<Multiaddr> = listen
        .iter()
        .filter_map(|text| text.parse::<Multiaddr>().ok())
        .map(|mut addr| {
            if matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p == *peer) {
                addr.pop();
            }
            addr
        })
        .collect();
    crate::net::reach::dialable(&parsed)
        .into_iter()
        .map(|addr| addr.with(Protocol::P2p(*peer)).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unspecified addresses are dropped, loopback ones go last, each gets
    /// the peer id once, and unparsable entries are skipped.
    #[test]
    fn dial_addresses_are_real_and_loopback_last() {
        let peer = libp2p::PeerId::random();
        let listen = vec![
            "/ip4/127.0.0.1/tcp/4001".to_owned(),
            "/ip4/0.0.0.0/tcp/4001".to_owned(),
            "/ip6/::/udp/4001/quic-v1".to_owned(),
            "/ip4/192.168.1.20/tcp/4001".to_owned(),
            format!("/ip4/192.168.1.20/udp/4001/quic-v1/p2p/{peer}"),
            "not an address".to_owned(),
        ];
        let got = dial_addresses(&listen, &peer);
        assert_eq!(
            got,
            vec![
                format!("/ip4/192.168.1.20/tcp/4001/p2p/{peer}"),
                format!("/ip4/192.168.1.20/udp/4001/quic-v1/p2p/{peer}"),
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
            ]
        );
    }

    /// Every malformed invite is refused with the reason.
    #[test]
    fn bad_invites_say_what_is_wrong() {
        for (text, says) in [
            ("hello", "starts with"),
            ("hearth-invite:zz", "hex"),
            ("hearth-invite:00ff", "damaged"),
        ] {
            let e = decode(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
