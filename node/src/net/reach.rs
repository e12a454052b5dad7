//! Reaching across routers (issue 16): what this node knows about how it
//! and its peers are reachable, as plain data the driver updates from
//! swarm events and reads for decisions and for `hearth status`.
//!
//! Owns: the kind of every open connection (direct, relayed, hole-punched),
//! this node's confirmed external addresses and AutoNAT's verdict, the
//! relay slots this node reserved (client) and the reservations it holds
//! for others (server). The driver owns the swarm calls.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use super::behaviour::RelayLimits;

/// Settings for reaching peers beyond the LAN (all on `NetConfig`).
#[derive(Debug, Clone)]
pub struct ReachConfig {
    /// The anchor profile (`hearth run --anchor`): reachable by
    /// definition (its listen addresses are announced as external), relay
    /// server on, Kademlia in server mode. Default off.
    pub anchor: bool,
    /// Run the relay server without the anchor profile. Default off.
    pub relay_server: bool,
    /// Limits of the relay server (see `RelayLimits` for defaults).
    pub relay_limits: RelayLimits,
    /// Relays to reserve a slot on while this node is not reachable
    /// (default 2: one anchor may be down).
    pub relays_max: usize,
    /// Upgrade relayed connections with DCUtR (default on).
    pub hole_punching: bool,
    /// Map a port on the home router with UPnP IGD (default on in the
    /// CLI; off in tests and with `--no-upnp`).
    pub upnp: bool,
    /// Period of Kademlia's random walk (bootstrap) that finds members
    /// this node has not met (default 60 s).
    pub walk_interval: Duration,
    /// Addresses announced as reachable without AutoNAT's confirmation
    /// (an anchor behind a port forward). Default none.
    pub external: Vec<Multiaddr>,
}

impl Default for ReachConfig {
    fn default() -> Self {
        ReachConfig {
            anchor: false,
            relay_server: false,
            relay_limits: RelayLimits::default(),
            relays_max: RELAYS_MAX,
            hole_punching: true,
            upnp: true,
            walk_interval: Duration::from_secs(60),
            external: Vec::new(),
        }
    }
}

/// Relays a node reserves on at most, whatever the config says: each
/// reservation is a connection kept open and renewed.
pub const RELAYS_MAX: usize = 2;
/// Confirmed external addresses remembered: a node has one or two per
/// transport; more only from a misbehaving AutoNAT server.
pub const EXTERNAL_ADDRS_MAX: usize = 16;
/// Peers found by Kademlia that the node dials on its own once it has
/// this many connected peers it stops: a neighbourhood is far smaller.
pub const PEERS_DIALED_MAX: usize = 64;

/// How a connection reaches its peer.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConnKind {
    /// Through a relay's circuit (limited in bytes and time).
    Relayed,
    /// Dialed or accepted directly.
    Direct,
    /// A direct connection DCUtR made by punching through NATs.
    HolePunched,
}

impl ConnKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::Relayed => "relayed",
            ConnKind::Direct => "direct",
            ConnKind::HolePunched => "hole-punched",
        }
    }
}

pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Whether an anchor announces listen address `addr` as reachable: not
/// relayed, and not loopback unless loopback is all it was told to
/// listen on (tests); a loopback address announced to other machines
/// only sends their dials (and relayed addresses built on it) nowhere.
pub fn announceable(addr: &Multiaddr, listen: &[Multiaddr]) -> bool {
    !is_relayed(addr) && (!is_loopback(addr) || listen.iter().all(is_loopback))
}

/// Whether this node can be dialed from outside its network.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    /// No verdict yet.
    #[default]
    Unknown,
    /// An address of this node was dialed back (AutoNAT), mapped (UPnP)
    /// or announced (anchor).
    Public,
    /// AutoNAT's dial-backs failed: behind NAT or a firewall; reached
    /// through relays.
    Private,
}

/// One relay slot this node asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    listener: ListenerId,
    reserved: bool,
}

/// This node's reachability state (see the module doc).
#[derive(Debug, Default)]
pub struct Reach {
    /// Every open connection: its peer, kind and remote address. Entries
    /// leave when the connection closes, so this is bounded by the
    /// swarm's open connections.
    connections: BTreeMap<ConnectionId, (PeerId, ConnKind, Multiaddr)>,
    /// Confirmed external addresses that are not relayed (bounded by
    /// `EXTERNAL_ADDRS_MAX`).
    external: BTreeSet<Multiaddr>,
    /// AutoNAT's last dial-back failed.
    autonat_failed: bool,
    /// Relay slots, by relay (bounded by `ReachConfig::relays_max`).
    slots: BTreeMap<PeerId, Slot>,
    /// Peers holding a reservation on this node's relay server (bounded
    /// by the server's `reservations_max`, which refuses beyond).
    held: BTreeSet<PeerId>,
}

/// What `hearth status` shows of reachability.
#[derive(schemars::JsonSchema, Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReachStatus {
    pub reachability: Reachability,
    /// Confirmed external addresses (not relayed).
    pub external: Vec<String>,
    /// Relays this node asked for a slot on, and whether it got one.
    pub reservations: Vec<Reservation>,
    /// Whether this node relays for others, and for how many.
    pub relay_server: bool,
    pub reservations_held: usize,
    /// Peers in the Kademlia routing table (members of this community).
    pub routing_table: Vec<String>,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reservation {
    pub relay: String,
    /// `true` once the relay accepted; `false` while asking.
    pub accepted: bool,
}

impl Reach {
    pub fn connected(&mut self, id: ConnectionId, peer: PeerId, remote: Multiaddr, relayed: bool) {
        let kind = if relayed || is_relayed(&remote) {
            ConnKind::Relayed
        } else {
            ConnKind::Direct
        };
        self.connections.insert(id, (peer, kind, remote));
    }

    pub fn closed(&mut self, id: ConnectionId) {
        self.connections.remove(&id);
    }

    /// DCUtR made connection `id`: it is hole-punched.
    pub fn hole_punched(&mut self, id: ConnectionId) {
        if let Some(entry) = self.connections.get_mut(&id) {
            entry.1 = ConnKind::HolePunched;
        }
    }

    /// The best way `peer` is connected now (hole-punched over direct over
    /// relayed), `None` if not connected.
    pub fn kind(&self, peer: &PeerId) -> Option<ConnKind> {
        self.connections
            .values()
            .filter(|(p, _, _)| p == peer)
            .map(|(_, k, _)| *k)
            .max()
    }

    /// An address `peer` was reached at directly, to reserve a relay slot
    /// through.
    pub fn direct_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.connections
            .values()
            .find(|(p, k, _)| p == peer && *k != ConnKind::Relayed)
            .map(|(_, _, a)| a.clone())
    }

    pub fn external_confirmed(&mut self, addr: Multiaddr) {
        if is_relayed(&addr) || self.external.len() >= EXTERNAL_ADDRS_MAX {
            return;
        }
        self.external.insert(addr);
        self.autonat_failed = false;
    }

    pub fn external_expired(&mut self, addr: &Multiaddr) {
        self.external.remove(addr);
    }

    pub fn autonat_result(&mut self, ok: bool) {
        if !ok {
            self.autonat_failed = true;
        }
    }

    pub fn reachability(&self) -> Reachability {
        match (self.external.is_empty(), self.autonat_failed) {
            (false, _) => Reachability::Public,
            (true, true) => Reachability::Private,
            (true, false) => Reachability::Unknown,
        }
    }

    /// Whether to ask `relay` for a slot: not while reachable, not twice,
    /// not beyond `relays_max`.
    pub fn wants_slot(&self, relay: &PeerId, relays_max: usize) -> bool {
        self.reachability() != Reachability::Public
            && !self.slots.contains_key(relay)
            && self.slots.len() < relays_max.min(RELAYS_MAX)
    }

    pub fn slot_requested(&mut self, relay: PeerId, listener: ListenerId) {
        self.slots.insert(
            relay,
            Slot {
                listener,
                reserved: false,
            },
        );
    }

    pub fn slot_accepted(&mut self, relay: &PeerId) {
        if let Some(slot) = self.slots.get_mut(relay) {
            slot.reserved = true;
        }
    }

    /// The listener closed: the slot is gone (refused, expired or the
    /// relay left). Returns the relay it was on, if it was a slot.
    pub fn listener_closed(&mut self, listener: ListenerId) -> Option<PeerId> {
        let relay = self
            .slots
            .iter()
            .find(|(_, s)| s.listener == listener)
            .map(|(r, _)| *r)?;
        self.slots.remove(&relay);
        Some(relay)
    }

    pub fn held(&mut self, peer: PeerId) {
        self.held.insert(peer);
    }

    pub fn released(&mut self, peer: &PeerId) {
        self.held.remove(peer);
    }

    pub fn status(&self, relay_server: bool, routing_table: Vec<String>) -> ReachStatus {
        ReachStatus {
            reachability: self.reachability(),
            external: self.external.iter().map(|a| a.to_string()).collect(),
            reservations: self
                .slots
                .iter()
                .map(|(relay, s)| Reservation {
                    relay: relay.to_string(),
                    accepted: s.reserved,
                })
                .collect(),
            relay_server,
            reservations_held: self.held.len(),
            routing_table,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    /// A hole-punched connection ranks above a relayed one to the same peer.
    #[test]
    fn test_kind_prefers_hole_punched_over_relayed() {
        let mut r = Reach::default();
        let peer = PeerId::random();
        let relay = PeerId::random();
        let circuit = addr("/ip4/10.0.0.1/tcp/4001")
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        r.connected(ConnectionId::new_unchecked(1), peer, circuit, false);
        assert_eq!(r.kind(&peer), Some(ConnKind::Relayed));
        assert_eq!(r.direct_addr(&peer), None);
        r.connected(
            ConnectionId::new_unchecked(2),
            peer,
            addr("/ip4/10.0.1.2/udp/4001/quic-v1"),
            false,
        );
        // The listener's end of a circuit: no circuit in the address.
        r.connected(
            ConnectionId::new_unchecked(3),
            relay,
            Multiaddr::empty().with(Protocol::P2p(relay)),
            true,
        );
        assert_eq!(r.kind(&relay), Some(ConnKind::Relayed));
        r.hole_punched(ConnectionId::new_unchecked(2));
        assert_eq!(r.kind(&peer), Some(ConnKind::HolePunched));
        r.closed(ConnectionId::new_unchecked(2));
        assert_eq!(r.kind(&peer), Some(ConnKind::Relayed));
    }

    /// An anchor listening on every interface announces its LAN/WAN
    /// addresses, not loopback; one told to listen on loopback only does.
    #[test]
    fn test_anchor_announces_loopback_only_when_told_to() {
        let any = [addr("/ip4/0.0.0.0/tcp/4001")];
        let lo = [addr("/ip4/127.0.0.1/tcp/0")];
        assert!(!announceable(&addr("/ip4/127.0.0.1/tcp/4001"), &any));
        assert!(announceable(&addr("/ip4/10.99.0.1/tcp/4001"), &any));
        assert!(announceable(&addr("/ip4/127.0.0.1/tcp/4001"), &lo));
    }

    /// A node stops asking for relay slots once an address of its own is
    /// confirmed, and never asks for more than the cap.
    #[test]
    fn test_slots_only_while_not_public_and_bounded() {
        let mut r = Reach::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert!(r.wants_slot(&a, 2));
        r.slot_requested(a, ListenerId::next());
        assert!(!r.wants_slot(&a, 2), "not twice on one relay");
        r.slot_requested(b, ListenerId::next());
        assert!(!r.wants_slot(&c, 2), "at most relays_max");
        assert!(
            !r.wants_slot(&c, 10),
            "at most RELAYS_MAX whatever the config"
        );
        let mut p = Reach::default();
        p.external_confirmed(addr("/ip4/192.0.2.1/tcp/4001"));
        assert_eq!(p.reachability(), Reachability::Public);
        assert!(!p.wants_slot(&a, 2));
    }

    /// A relayed address confirmed as external does not make the node
    /// publicly reachable; a failed dial-back makes it private.
    #[test]
    fn test_relayed_external_is_not_public() {
        let mut r = Reach::default();
        let relay = PeerId::random();
        r.external_confirmed(
            addr("/ip4/192.0.2.1/tcp/4001")
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit),
        );
        assert_eq!(r.reachability(), Reachability::Unknown);
        r.autonat_result(false);
        assert_eq!(r.reachability(), Reachability::Private);
    }
}
