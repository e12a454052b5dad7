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

/// Whether `addr` names an interface: not `0.0.0.0` or `::`. An
/// unspecified address is what one *listens* on ("every interface"); it
/// cannot be dialed, and in an invite it sends the new device's dial to
/// itself.
pub fn is_specified(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// Whether an anchor's listen address belongs on its "address for
/// invites" line: a real interface (not unspecified), not loopback
/// (useless to anyone else) and not through a relay (an anchor is the
/// relay).
pub fn invite_worthy(addr: &Multiaddr) -> bool {
    is_specified(addr) && !is_loopback(addr) && !is_relayed(addr)
}

/// The addresses another device can dial this node at, from the swarm's
/// listen addresses (`Swarm::listeners`, which libp2p's TCP and QUIC
/// transports expand through if-watch into one address per interface
/// when bound to `0.0.0.0`/`::`, and which include relayed circuit
/// addresses once a relay slot is reserved).
///
/// Dropped: unspecified addresses (never dialable; they only appear when
/// an interface watcher failed, and the expanded ones are in the list
/// anyway), IPv6 link-local ones (need a zone id a multiaddr cannot
/// carry), and duplicates. Ordered best first, so a caller's cap drops
/// the worst: public, then private (same LAN), then relayed (works from
/// anywhere while the relay is up), then loopback (this machine only).
/// Within a group the input's order is kept. This is the one
/// address-selection rule for invites and for the anchor's printed
/// address (the invite module adds `/p2p/<peer>`).
pub fn dialable(listen: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut out: Vec<(u8, Multiaddr)> = Vec::new();
    for addr in listen {
        if !is_specified(addr) || is_ip6_link_local(addr) {
            continue;
        }
        if out.iter().any(|(_, a)| a == addr) {
            continue;
        }
        let rank = if is_relayed(addr) {
            2
        } else if is_loopback(addr) {
            3
        } else if lan_ip(addr).is_some() {
            1
        } else {
            0
        };
        out.push((rank, addr.clone()));
    }
    out.sort_by_key(|(rank, _)| *rank); // stable: input order within a rank
    out.into_iter().map(|(_, a)| a).collect()
}

fn is_ip6_link_local(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip6(ip) => ip.segments()[0] & 0xffc0 == 0xfe80,
        _ => false,
    })
}

/// The LAN a private address belongs to, as this node guesses it without
/// netmasks (a multiaddr has none): the /24 of an RFC 1918 IPv4 address
/// (what home routers hand out), the /64 of an IPv6 unique-local one.
/// `None` for public, loopback, relayed and other addresses.
fn lan_ip(addr: &Multiaddr) -> Option<[u8; 8]> {
    if is_relayed(addr) {
        return None;
    }
    match addr.iter().next()? {
        Protocol::Ip4(ip) if ip.is_private() => {
            let o = ip.octets();
            Some([4, o[0], o[1], o[2], 0, 0, 0, 0])
        }
        Protocol::Ip6(ip) if ip.segments()[0] & 0xfe00 == 0xfc00 => {
            let o = ip.octets();
            Some([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
        }
        _ => None,
    }
}

/// Whether a confirmed external address `addr` proves only that this node
/// is reachable on its own LAN: a private address (see [`lan_ip`]) of an
/// interface it listens on (`ours`). AutoNAT's dial-back from a neighbour
/// in the same home reaches it there, but nobody beyond the home router
/// can; counted as public, the node would stop asking relays for a slot
/// and advertise an address other homes cannot dial. A router's mapped
/// address (UPnP) is not an interface address, and a public interface
/// address is not private: both still count.
pub fn lan_only(addr: &Multiaddr, ours: &[Multiaddr]) -> bool {
    let ip = |a: &Multiaddr| match a.iter().next() {
        Some(Protocol::Ip4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(Protocol::Ip6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    lan_ip(addr).is_some() && ip(addr).is_some_and(|mine| ours.iter().any(|o| ip(o) == Some(mine)))
}

/// LAN addresses dialed for one peer at most: a node listens on TCP and
/// QUIC per interface, a few interfaces at most.
pub const LAN_DIAL_ADDRS_MAX: usize = 4;

/// Of a peer's listen addresses (`theirs`, from identify), the private
/// ones on a LAN this node also listens on (`ours`): a peer met only
/// through a relay but sitting on the same home network is dialed there
/// directly. Hole punching cannot do it: both ends' observed address is
/// the same router's public one, and home routers rarely hairpin. mDNS
/// would, but it may be off (`--no-mdns`) or multicast blocked.
///
/// "Same LAN" is same /24 (IPv4) or /64 (IPv6 ULA), see [`lan_ip`]: a
/// guess narrower than a LAN wider than /24 misses (mDNS still finds
/// those), one wider would dial another home's identical 192.168.x.y.
/// A wrong guess costs one failed dial: the Noise handshake checks the
/// peer id, so no other host is ever taken for the peer. At most
/// [`LAN_DIAL_ADDRS_MAX`].
pub fn same_lan(ours: &[Multiaddr], theirs: &[Multiaddr]) -> Vec<Multiaddr> {
    let lans: BTreeSet<[u8; 8]> = ours.iter().filter_map(lan_ip).collect();
    let mut out: Vec<Multiaddr> = Vec::new();
    for addr in theirs {
        if out.len() >= LAN_DIAL_ADDRS_MAX {
            break;
        }
        if lan_ip(addr).is_some_and(|lan| lans.contains(&lan))
            && !ours.contains(addr)
            && !out.contains(addr)
        {
            out.push(addr.clone());
        }
    }
    out
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
    /// Connected peers DCUtR punched through to (bounded by
    /// `connections`: a peer leaves with its last connection).
    punched: BTreeSet<PeerId>,
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
        } else if self.punched.contains(&peer) {
            ConnKind::HolePunched
        } else {
            ConnKind::Direct
        };
        self.connections.insert(id, (peer, kind, remote));
    }

    pub fn closed(&mut self, id: ConnectionId) {
        if let Some((peer, _, _)) = self.connections.remove(&id) {
            if !self.connections.values().any(|(p, _, _)| *p == peer) {
                self.punched.remove(&peer);
            }
        }
    }

    /// DCUtR made connection `id`: it is hole-punched, and so is every
    /// direct connection to the same peer opened since the relayed one
    /// the punch started from. Both ends dial at once, so a punch often
    /// leaves two connections, each end's own dial plus the other's
    /// arriving through the mapping just opened; DCUtR names only the
    /// first, and which of the two outlives the other is a race. The same
    /// holds for a direct connection that arrives later while the peer
    /// stays connected: it rides the mapping the punch opened.
    pub fn hole_punched(&mut self, id: ConnectionId) {
        let Some((peer, _, _)) = self.connections.get(&id).cloned() else {
            return;
        };
        self.punched.insert(peer);
        let since = self
            .connections
            .iter()
            .filter(|(_, (p, k, _))| *p == peer && *k == ConnKind::Relayed)
            .map(|(c, _)| *c)
            .min();
        for (c, (p, k, _)) in self.connections.iter_mut() {
            let after_relay = since.is_none_or(|s| *c > s);
            if *p == peer && (*c == id || (*k == ConnKind::Direct && after_relay)) {
                *k = ConnKind::HolePunched;
            }
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

    /// The address of `peer`'s best connection (as [`Reach::kind`] picks
    /// it), for people to read.
    pub fn address(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.connections
            .values()
            .filter(|(p, _, _)| p == peer)
            .max_by_key(|(_, k, _)| *k)
            .map(|(_, _, a)| a.clone())
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

    /// A punch's crossing connection (the other end's dial, arriving
    /// through the mapping just opened) counts as hole-punched too, so
    /// whichever of the two survives, the peer reads as punched; a direct
    /// connection older than the relayed one does not, and a peer that
    /// disconnected entirely starts again as direct.
    #[test]
    fn test_punch_marks_the_crossing_connection() {
        let mut r = Reach::default();
        let peer = PeerId::random();
        let id = ConnectionId::new_unchecked;
        let kind_of = |r: &Reach, c: usize| r.connections.get(&id(c)).map(|e| e.1);
        let circuit = addr("/ip4/10.0.0.1/tcp/4001")
            .with(Protocol::P2p(PeerId::random()))
            .with(Protocol::P2pCircuit);
        r.connected(id(1), peer, addr("/ip4/192.168.1.5/tcp/4001"), false);
        r.connected(id(2), peer, circuit, false);
        r.connected(id(3), peer, addr("/ip4/10.99.0.12/tcp/4001"), false);
        r.connected(id(4), peer, addr("/ip4/10.99.0.12/udp/4001/quic-v1"), false);
        r.hole_punched(id(3));
        assert_eq!(kind_of(&r, 1), Some(ConnKind::Direct));
        assert_eq!(kind_of(&r, 3), Some(ConnKind::HolePunched));
        assert_eq!(kind_of(&r, 4), Some(ConnKind::HolePunched));
        r.closed(id(3));
        assert_eq!(r.kind(&peer), Some(ConnKind::HolePunched));
        // Later, while the peer stays connected: through the same mapping.
        r.connected(id(5), peer, addr("/ip4/10.99.0.12/tcp/4001"), false);
        assert_eq!(kind_of(&r, 5), Some(ConnKind::HolePunched));
        for c in [1, 2, 4, 5] {
            r.closed(id(c));
        }
        assert_eq!(r.kind(&peer), None);
        r.connected(id(6), peer, addr("/ip4/10.99.0.12/tcp/4001"), false);
        assert_eq!(r.kind(&peer), Some(ConnKind::Direct));
    }

    /// An address confirmed at a private address of our own interface is
    /// reachable only on our LAN; a router's mapping, a public interface
    /// address and a private address we do not listen on are not.
    #[test]
    fn test_lan_only_is_a_private_address_we_listen_on() {
        let ours = [
            addr("/ip4/192.168.2.10/tcp/42181"),
            addr("/ip4/192.168.2.10/udp/48891/quic-v1"),
            addr("/ip4/203.0.113.7/tcp/4001"),
            addr("/ip6/fd00::5/tcp/4001"),
        ];
        assert!(lan_only(&addr("/ip4/192.168.2.10/tcp/42181"), &ours));
        assert!(lan_only(
            &addr("/ip4/192.168.2.10/udp/48891/quic-v1"),
            &ours
        ));
        assert!(lan_only(&addr("/ip6/fd00::5/tcp/4001"), &ours));
        // The home router's address, mapped by UPnP or observed.
        assert!(!lan_only(&addr("/ip4/10.99.0.12/tcp/42181"), &ours));
        assert!(!lan_only(&addr("/ip4/198.51.100.4/tcp/42181"), &ours));
        // A public interface address is reachable from anywhere.
        assert!(!lan_only(&addr("/ip4/203.0.113.7/tcp/4001"), &ours));
        let relay = PeerId::random();
        let circuit = addr("/ip4/192.168.2.10/tcp/4001")
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        assert!(!lan_only(&circuit, &ours));
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

    /// Invites and the anchor's line never carry `0.0.0.0`/`::` or IPv6
    /// link-local addresses; public come first, then LAN, relayed and
    /// loopback; duplicates go.
    #[test]
    fn test_dialable_drops_unspecified_and_orders_best_first() {
        let relay = PeerId::random();
        let circuit = addr("/ip4/10.99.0.1/tcp/4001")
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        let listen = [
            addr("/ip4/0.0.0.0/tcp/4001"),
            addr("/ip6/::/udp/4001/quic-v1"),
            addr("/ip4/127.0.0.1/tcp/4001"),
            circuit.clone(),
            addr("/ip4/192.168.1.10/tcp/4001"),
            addr("/ip6/fe80::1/tcp/4001"),
            addr("/ip4/203.0.113.7/udp/4001/quic-v1"),
            addr("/ip4/192.168.1.10/tcp/4001"),
        ];
        assert_eq!(
            dialable(&listen),
            vec![
                addr("/ip4/203.0.113.7/udp/4001/quic-v1"),
                addr("/ip4/192.168.1.10/tcp/4001"),
                circuit,
                addr("/ip4/127.0.0.1/tcp/4001"),
            ]
        );
        assert!(dialable(&listen[..2]).is_empty(), "only unspecified: none");
        assert!(!invite_worthy(&addr("/ip4/0.0.0.0/tcp/4001")));
        assert!(!invite_worthy(&addr("/ip6/::/tcp/4001")));
        assert!(!invite_worthy(&addr("/ip4/127.0.0.1/tcp/4001")));
        assert!(invite_worthy(&addr("/ip4/10.99.0.1/tcp/4001")));
    }

    /// A peer's private addresses on our own /24 (or ULA /64) are picked
    /// for a direct dial; other homes' private ranges, public, loopback,
    /// relayed and our own addresses are not, and the pick is bounded.
    #[test]
    fn test_same_lan_picks_only_our_subnet() {
        let relay = PeerId::random();
        let ours = [
            addr("/ip4/127.0.0.1/tcp/4001"),
            addr("/ip4/192.168.1.10/tcp/4001"),
            addr("/ip6/fd00:1:2:3::10/udp/4001/quic-v1"),
        ];
        let theirs = [
            addr("/ip4/127.0.0.1/tcp/5001"),
            addr("/ip4/192.168.1.11/tcp/5001"),
            addr("/ip4/192.168.2.11/tcp/5001"),
            addr("/ip4/203.0.113.7/tcp/5001"),
            addr("/ip4/192.168.1.11/tcp/5001")
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit),
            addr("/ip4/192.168.1.10/tcp/4001"),
            addr("/ip6/fd00:1:2:3::11/udp/5001/quic-v1"),
            addr("/ip6/fd00:1:2:4::11/udp/5001/quic-v1"),
        ];
        assert_eq!(
            same_lan(&ours, &theirs),
            vec![
                addr("/ip4/192.168.1.11/tcp/5001"),
                addr("/ip6/fd00:1:2:3::11/udp/5001/quic-v1"),
            ]
        );
        let many: Vec<Multiaddr> = (0..20)
            .map(|i| addr(&format!("/ip4/192.168.1.{}/tcp/5001", 100 + i)))
            .collect();
        assert_eq!(same_lan(&ours, &many).len(), LAN_DIAL_ADDRS_MAX);
        assert!(same_lan(&[addr("/ip4/203.0.113.1/tcp/1")], &theirs).is_empty());
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
