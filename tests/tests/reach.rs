//! Reaching across routers (issue 16), over real libp2p swarms on
//! loopback: Kademlia stays inside a community, a relay keeps its limits,
//! and gossip flows over a relayed circuit. Every wait is on a node's own
//! events or a polled status with a deadline; timeouts only guard hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use ciborium::Value;
use hearth_node::core::services::market::PostParams;
use hearth_node::net::behaviour::RelayLimits;
use hearth_node::net::driver::{NetConfig, NetEvent, Status};
use hearth_node::net::reach::{ConnKind, ReachConfig};
use hearth_proto::{Category, Identity};
use hearth_tests::identity;
use hearth_tests::mesh::{test_net_config, Community, TestNode};
use libp2p::{Multiaddr, PeerId};

/// Polls `f` on `node`'s status until it holds; fails after `GUARD`.
async fn until_status(node: &TestNode, what: &str, f: impl Fn(&Status) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let s = node.handle.status().await.expect("status");
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last status: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const GUARD: Duration = Duration::from_secs(60);

fn reach(f: impl FnOnce(&mut ReachConfig)) -> ReachConfig {
    let mut r = ReachConfig {
        upnp: false,
        walk_interval: Duration::from_secs(1),
        ..Default::default()
    };
    f(&mut r);
    r
}

fn cfg(listen: Vec<Multiaddr>, bootstrap: Vec<Multiaddr>, r: ReachConfig) -> NetConfig {
    NetConfig {
        listen,
        reach: r,
        ..test_net_config(bootstrap)
    }
}

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
}

async fn start(c: &Community, who: &Identity, seed: u64, cfg: NetConfig) -> TestNode {
    TestNode::start(c.node(who, seed).unwrap(), cfg)
        .await
        .unwrap()
}

fn post_params(title: &str, body_chars: usize) -> Value {
    Value::serialized(&PostParams {
        category: Category::Offer,
        title: title.into(),
        body: "x".repeat(body_chars),
        tags: vec![],
        ttl_seconds: None,
        location: None,
        client_id: None,
    })
    .unwrap()
}

fn peers_of(s: &Status) -> BTreeSet<String> {
    s.peers.iter().map(|p| p.peer_id.clone()).collect()
}

/// Two communities whose nodes are connected to each other (both
/// bootstrap from both first nodes) never put each other's peers in their
/// Kademlia tables, and each node finds the member it was never told of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kad_two_communities_never_mix() {
    let ids: Vec<Identity> = (2..8).map(identity).collect();
    let a = Community::named(&ids[0..3], "Elm Street").unwrap();
    let b = Community::named(&ids[3..6], "Oak Street").unwrap();
    assert_ne!(a.id(), b.id());
    // Every node is reachable here (no NAT on loopback): Kademlia servers.
    let r = || reach(|r| r.anchor = true);
    let a1 = start(&a, &ids[0], 1, cfg(loopback(), vec![], r())).await;
    let b1 = start(&b, &ids[3], 4, cfg(loopback(), vec![], r())).await;
    let both = vec![a1.addr.clone(), b1.addr.clone()];
    let a2 = start(&a, &ids[1], 2, cfg(loopback(), both.clone(), r())).await;
    let b2 = start(&b, &ids[4], 5, cfg(loopback(), both.clone(), r())).await;
    let a3 = start(&a, &ids[2], 3, cfg(loopback(), both.clone(), r())).await;
    let b3 = start(&b, &ids[5], 6, cfg(loopback(), both.clone(), r())).await;
    let id = |n: &TestNode| n.handle.peer_id.to_string();
    let a_set: BTreeSet<String> = [&a1, &a2, &a3].iter().map(|n| id(n)).collect();
    let b_set: BTreeSet<String> = [&b1, &b2, &b3].iter().map(|n| id(n)).collect();
    // a2 and a3 were only told of a1 and b1: they meet through Kademlia.
    let s = until_status(&a3, "a3 to find a2 through Kademlia", |s| {
        peers_of(s).contains(&id(&a2))
    })
    .await;
    assert!(
        peers_of(&s).contains(&id(&b1)),
        "a3 is connected to the other community's node: isolation is tested, not assumed"
    );
    until_status(&b3, "b3 to find b2 through Kademlia", |s| {
        peers_of(s).contains(&id(&b2))
    })
    .await;
    for (nodes, own, other) in [
        ([&a1, &a2, &a3], &a_set, &b_set),
        ([&b1, &b2, &b3], &b_set, &a_set),
    ] {
        for n in nodes {
            let me = id(n);
            let want: BTreeSet<String> = own.iter().filter(|p| **p != me).cloned().collect();
            let s = until_status(n, "a full routing table of the own community", |s| {
                s.reach
                    .routing_table
                    .iter()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    == want
            })
            .await;
            let table: BTreeSet<String> = s.reach.routing_table.into_iter().collect();
            assert!(
                table.is_disjoint(other),
                "{me} has the other community's peers in its table: {table:?}"
            );
        }
    }
    for n in [a1, a2, a3, b1, b2, b3] {
        n.stop().await.unwrap();
    }
}

/// A relay holds at most its configured number of reservations and
/// refuses the next with the protocol's RESOURCE_LIMIT_EXCEEDED status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_relay_refuses_reservations_beyond_its_limit() {
    let ids: Vec<Identity> = (2..6).map(identity).collect();
    let c = Community::new(&ids).unwrap();
    let limits = RelayLimits {
        reservations_max: 2,
        ..RelayLimits::default()
    };
    let mut relay = start(
        &c,
        &ids[0],
        1,
        cfg(
            loopback(),
            vec![],
            reach(|r| {
                r.anchor = true;
                r.relay_limits = limits;
            }),
        ),
    )
    .await;
    let client = |boot: Multiaddr, listen: Vec<Multiaddr>| {
        cfg(listen, vec![boot], reach(|r| r.hole_punching = false))
    };
    // The first two listen only through the relay: their start returns
    // once the relay accepted them.
    let c1 = start(&c, &ids[1], 2, client(relay.addr.clone(), vec![])).await;
    let c2 = start(&c, &ids[2], 3, client(relay.addr.clone(), vec![])).await;
    for p in [c1.handle.peer_id, c2.handle.peer_id] {
        relay
            .wait_for("a reservation", |e| *e == NetEvent::ReservationAccepted(p))
            .await
            .unwrap();
    }
    let mut c3 = start(&c, &ids[3], 4, client(relay.addr.clone(), loopback())).await;
    let c3_peer = c3.handle.peer_id;
    let denied = relay
        .wait_for(
            "the third reservation's refusal",
            |e| matches!(e, NetEvent::ReservationDenied { peer, .. } if *peer == c3_peer),
        )
        .await
        .unwrap();
    assert_eq!(
        denied,
        NetEvent::ReservationDenied {
            peer: c3_peer,
            status: "RESOURCE_LIMIT_EXCEEDED".into()
        }
    );
    let relay_peer = relay.handle.peer_id;
    let lost = c3
        .wait_for(
            "the refused slot",
            |e| matches!(e, NetEvent::RelaySlotLost { relay, .. } if *relay == relay_peer),
        )
        .await
        .unwrap();
    let NetEvent::RelaySlotLost { reason, .. } = lost else {
        unreachable!()
    };
    assert!(
        reason.to_lowercase().contains("resource limit"),
        "the client hears why: {reason}"
    );
    let s = relay.handle.status().await.unwrap();
    assert!(s.reach.relay_server);
    assert_eq!(s.reach.reservations_held, 2, "{:#?}", s.reach);
    for n in [relay, c1, c2, c3] {
        n.stop().await.unwrap();
    }
}

/// Two nodes that can only reach each other through a relay exchange
/// posts by gossip over the circuit, and each sees the other as relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_gossip_flows_over_a_relayed_circuit() {
    let ids: Vec<Identity> = (2..5).map(identity).collect();
    let c = Community::new(&ids).unwrap();
    let relay = start(
        &c,
        &ids[0],
        1,
        cfg(loopback(), vec![], reach(|r| r.anchor = true)),
    )
    .await;
    // No listen address of their own, no hole punching: the circuit is the
    // only way between them.
    let nat = || reach(|r| r.hole_punching = false);
    let mut x = start(&c, &ids[1], 2, cfg(vec![], vec![relay.addr.clone()], nat())).await;
    let mut y = start(&c, &ids[2], 3, cfg(vec![], vec![relay.addr.clone()], nat())).await;
    y.handle.dial(x.addr.clone()).await;
    let x_peer = x.handle.peer_id;
    y.wait_for("x subscribed over the circuit", |e| {
        *e == NetEvent::Subscribed(x_peer)
    })
    .await
    .unwrap();
    // Both ways: x publishes only to peers it knows are subscribed.
    let y_peer = y.handle.peer_id;
    x.wait_for("y subscribed over the circuit", |e| {
        *e == NetEvent::Subscribed(y_peer)
    })
    .await
    .unwrap();
    x.handle
        .call("market.post", post_params("Ladder over the relay", 20))
        .await
        .unwrap();
    y.wait_for("the post over the circuit", |e| {
        matches!(
            e,
            NetEvent::Stored {
                source: Some(hearth_node::core::Source::Peer(_)),
                ..
            }
        )
    })
    .await
    .unwrap();
    let s = y.handle.status().await.unwrap();
    let to_x = s
        .peers
        .iter()
        .find(|p| p.peer_id == x_peer.to_string())
        .expect("x connected");
    assert_eq!(to_x.connection, Some(ConnKind::Relayed));
    let _ = &mut x;
    for n in [relay, x, y] {
        n.stop().await.unwrap();
    }
}

/// A circuit that carries more than the relay's byte limit is closed by
/// the relay, and the two ends lose their connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_relay_closes_a_circuit_past_its_data_limit() {
    let ids: Vec<Identity> = (2..5).map(identity).collect();
    let c = Community::new(&ids).unwrap();
    const LIMIT_BYTES: u64 = 64 * 1024;
    let mut relay = start(
        &c,
        &ids[0],
        1,
        cfg(
            loopback(),
            vec![],
            reach(|r| {
                r.anchor = true;
                r.relay_limits.circuit_bytes_max = LIMIT_BYTES;
            }),
        ),
    )
    .await;
    let nat = || reach(|r| r.hole_punching = false);
    let x = start(&c, &ids[1], 2, cfg(vec![], vec![relay.addr.clone()], nat())).await;
    let mut y = start(&c, &ids[2], 3, cfg(vec![], vec![relay.addr.clone()], nat())).await;
    y.handle.dial(x.addr.clone()).await;
    let x_peer = x.handle.peer_id;
    let y_peer: PeerId = y.handle.peer_id;
    y.wait_for("x subscribed over the circuit", |e| {
        *e == NetEvent::Subscribed(x_peer)
    })
    .await
    .unwrap();
    // Each post is about 3 KiB on the wire: 40 of them are twice the limit.
    let poster = x.handle.clone();
    let posting = tokio::spawn(async move {
        for i in 0..40 {
            if poster
                .call("market.post", post_params(&format!("Post {i}"), 3000))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Either end may have opened the circuit the posts travel on (x can
    // dial y back through the relay while y dials x), and the relay shows
    // other events meanwhile: any circuit between the two, within a bound.
    let between = |src: &PeerId, dst: &PeerId| {
        (*src == y_peer && *dst == x_peer) || (*src == x_peer && *dst == y_peer)
    };
    let closed = tokio::time::timeout(
        GUARD,
        relay.wait_for(
            "the circuit to close",
            |e| matches!(e, NetEvent::CircuitClosed { src, dst, .. } if between(src, dst)),
        ),
    )
    .await
    .expect("the relay closed no circuit between x and y within 60 s")
    .unwrap();
    tokio::time::timeout(
        GUARD,
        y.wait_for("y to lose x", |e| *e == NetEvent::PeerDisconnected(x_peer)),
    )
    .await
    .expect("y still connected to x 60 s after the circuit closed")
    .unwrap();
    posting.await.unwrap();
    let NetEvent::CircuitClosed { error, .. } = closed else {
        unreachable!()
    };
    let error = error.expect("closed by the relay's limit, not by either end");
    assert!(error.contains("Max circuit bytes"), "{error}");
    for n in [relay, x, y] {
        n.stop().await.unwrap();
    }
}
