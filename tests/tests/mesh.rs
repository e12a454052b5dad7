//! Multi-node tests over real libp2p swarms on loopback TCP (issue 4):
//! gossip, sync on connect, partitions, restarts, and misbehaving peers.
//! Every wait is on a node's own events; timeouts only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use ciborium::Value;
use hearth_node::core::bus::{Caller, ErrorCode};
use hearth_node::core::services::market::{PostParams, PostReceipt, SearchResult};
use hearth_node::core::Source;
use hearth_node::net::driver::NetEvent;
use hearth_proto::{Category, EventHash, Identity};
use hearth_tests::mesh::{test_net_config, Community, TestNode};
use hearth_tests::{identity, FIXED_NOW_MS};

fn post_params(title: &str, tags: &[&str]) -> Value {
    Value::serialized(&PostParams {
        category: Category::Offer,
        title: title.into(),
        body: format!("{title}, come and get it"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ttl_seconds: None,
        location: None,
        client_id: None,
    })
    .unwrap()
}

/// Posts through the node's local API; returns the hash of the new event.
async fn post(node: &mut TestNode, title: &str, tags: &[&str]) -> EventHash {
    node.handle
        .call("market.post", post_params(title, tags))
        .await
        .unwrap();
    post_hash(node).await
}

async fn titles(node: &TestNode) -> Vec<String> {
    let v = node
        .handle
        .call("market.list", Value::Map(vec![]))
        .await
        .unwrap();
    let list: hearth_node::core::services::market::ListResult = v.deserialized().unwrap();
    let mut t: Vec<String> = list.posts.into_iter().map(|p| p.title).collect();
    t.sort();
    t
}

async fn start(
    c: &Community,
    who: &Identity,
    seed: u64,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> TestNode {
    TestNode::start(c.node(who, seed).unwrap(), test_net_config(bootstrap))
        .await
        .unwrap()
}

/// B starts after A posted; A never gossiped the post, so B can only get
/// it by the sync that runs when they connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_two_node_post_visible_after_sync() {
    let (a_id, b_id) = (identity(2), identity(3));
    let c = Community::new(&[a_id.clone(), b_id.clone()]).unwrap();
    let mut a_core = c.node(&a_id, 1).unwrap();
    let receipt = a_core.market_post(
        FIXED_NOW_MS,
        Caller::Local,
        PostParams {
            category: Category::Request,
            title: "Need a ladder".into(),
            body: String::new(),
            tags: vec![],
            ttl_seconds: Some(3600 * 24 * 365 * 2 / 100),
            location: None,
            client_id: None,
        },
    );
    let receipt: PostReceipt = receipt.unwrap();
    while a_core.poll_output().is_some() {} // drop the broadcast: no gossip
    let a = TestNode::start(a_core, test_net_config(vec![]))
        .await
        .unwrap();
    let mut b = start(&c, &b_id, 2, vec![a.addr.clone()]).await;
    let got = b
        .wait_for("the post by sync", |e| {
            matches!(
                e,
                NetEvent::Stored {
                    source: Some(Source::Sync(_)),
                    ..
                }
            )
        })
        .await
        .unwrap();
    assert!(matches!(got, NetEvent::Stored { .. }));
    let v = b
        .handle
        .call(
            "market.get",
            Value::serialized(&serde_json_id(&receipt)).unwrap(),
        )
        .await;
    assert!(v.is_ok(), "{v:?}");
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
}

fn serde_json_id(r: &PostReceipt) -> std::collections::BTreeMap<&'static str, String> {
    [("id", r.post.id.to_string())].into_iter().collect()
}

/// A recent event that a node learns by sync is gossiped on at once
/// (issue 15): C, which never meets A and whose own sync with B ran before
/// B had the post, gets A's post by gossip from B, not at a sync an hour
/// away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_events_learned_by_sync_are_gossiped_on() {
    let (a_id, b_id, c_id) = (identity(2), identity(3), identity(4));
    let community = Community::new(&[a_id.clone(), b_id.clone(), c_id.clone()]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut a_core = community.node(&a_id, 1).unwrap();
    let _: PostReceipt = a_core
        .market_post(
            now,
            Caller::Local,
            PostParams {
                category: Category::Offer,
                title: "Sandbags at the corner".into(),
                body: String::new(),
                tags: vec![],
                ttl_seconds: None,
                location: None,
                client_id: None,
            },
        )
        .unwrap();
    // Take the broadcast: A never gossips the post.
    let mut hash = None;
    while let Some(out) = a_core.poll_output() {
        if let hearth_node::core::Output::Broadcast(e) = out {
            hash = Some(*e.hash());
        }
    }
    let hash = hash.expect("the post was broadcast");
    let mut b = start(&community, &b_id, 2, vec![]).await;
    let mut c = start(&community, &c_id, 3, vec![b.addr.clone()]).await;
    let (b_peer, c_peer) = (b.handle.peer_id, c.handle.peer_id);
    b.wait_for("C subscribed", |e| *e == NetEvent::Subscribed(c_peer))
        .await
        .unwrap();
    c.wait_for("B subscribed", |e| *e == NetEvent::Subscribed(b_peer))
        .await
        .unwrap();

    let a = TestNode::start(a_core, test_net_config(vec![b.addr.clone()]))
        .await
        .unwrap();
    b.wait_for(
        "the post by sync from A",
        |e| matches!(e, NetEvent::Stored { hash: h, source: Some(Source::Sync(_)) } if *h == hash),
    )
    .await
    .unwrap();
    // A leaves before it could find C through B (Kademlia): the post can
    // reach C only from B.
    a.stop().await.unwrap();
    let got = c
        .wait_for(
            "the post",
            |e| matches!(e, NetEvent::Stored { hash: h, .. } if *h == hash),
        )
        .await
        .unwrap();
    let b_node = b_id.node_id();
    assert_eq!(
        got,
        NetEvent::Stored {
            hash,
            source: Some(Source::Peer(b_node))
        },
        "C got the post by gossip from B"
    );
}

/// Three nodes post at once; every post reaches every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_three_node_concurrent_posts_all_visible() {
    let ids = [identity(2), identity(3), identity(4)];
    let c = Community::new(&ids).unwrap();
    let mut a = start(&c, &ids[0], 1, vec![]).await;
    let mut b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    let mut d = start(&c, &ids[2], 3, vec![a.addr.clone(), b.addr.clone()]).await;
    for n in [&mut a, &mut b, &mut d] {
        n.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
            .await
            .unwrap();
    }
    let (ha, hb, hd) = tokio::join!(
        post(&mut a, "from a", &[]),
        post(&mut b, "from b", &[]),
        post(&mut d, "from d", &[])
    );
    let all: BTreeSet<EventHash> = [ha, hb, hd].into();
    for n in [&mut a, &mut b, &mut d] {
        n.wait_stored(&all).await.unwrap();
    }
    for n in [&a, &b, &d] {
        assert_eq!(titles(n).await, vec!["from a", "from b", "from d"]);
    }
    // Status carries gossipsub's own counters (what the mesh benchmark's
    // duplicate figure is made of): some posts came by gossip, and no node
    // counts fewer copies than first copies.
    let mut unique = 0;
    for n in [&a, &b, &d] {
        let g = n.handle.status().await.unwrap().gossip;
        assert!(g.received >= g.unique, "{g:?}");
        unique += g.unique;
    }
    assert!(unique > 0, "no gossip counted");
}

/// An expiry reaches the peer and the post leaves its list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_expire_propagates_then_list_excludes() {
    let ids = [identity(2), identity(3)];
    let c = Community::new(&ids).unwrap();
    let mut a = start(&c, &ids[0], 1, vec![]).await;
    let mut b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    b.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    let v = a
        .handle
        .call("market.post", post_params("Bike pump", &[]))
        .await
        .unwrap();
    let receipt: PostReceipt = v.deserialized().unwrap();
    let h = post_hash(&mut a).await;
    b.wait_stored(&[h].into()).await.unwrap();
    assert_eq!(titles(&b).await, vec!["Bike pump"]);
    let params = Value::serialized(
        &[
            ("id", receipt.post.id.to_string()),
            ("reason", "fulfilled".into()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    a.handle.call("market.expire", params).await.unwrap();
    let x = post_hash(&mut a).await;
    b.wait_stored(&[x].into()).await.unwrap();
    assert!(titles(&b).await.is_empty());
}

/// The hash of the next event this node makes itself.
async fn post_hash(node: &mut TestNode) -> EventHash {
    match node
        .wait_for("a local event", |e| {
            matches!(e, NetEvent::Stored { source: None, .. })
        })
        .await
        .unwrap()
    {
        NetEvent::Stored { hash, .. } => hash,
        _ => unreachable!(),
    }
}

/// Keyword search on a peer finds what was posted elsewhere, and a remote
/// search over the bus answers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_market_search_returns_relevant() {
    let ids = [identity(2), identity(3)];
    let c = Community::new(&ids).unwrap();
    let mut a = start(&c, &ids[0], 1, vec![]).await;
    let mut b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    b.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    let h1 = post(&mut a, "Drinking water", &["water"]).await;
    let h2 = post(&mut a, "Firewood", &["heat"]).await;
    b.wait_stored(&[h1, h2].into()).await.unwrap();
    let q = Value::serialized(
        &[("query", "WATER")]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let local: SearchResult = b
        .handle
        .call("market.search", q.clone())
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    assert_eq!(local.mode, "keyword");
    assert_eq!(
        local
            .results
            .iter()
            .map(|p| p.title.as_str())
            .collect::<Vec<_>>(),
        vec!["Drinking water"]
    );
    let remote: SearchResult = b
        .handle
        .remote_call(a.handle.peer_id, "market.search", q)
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    assert_eq!(remote.results.len(), 1);
}

/// Two halves post while apart; once one link joins them, sync on connect
/// and then periodic sync (1 s here) make all four equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_to_equal_digests() {
    let ids = [identity(2), identity(3), identity(4), identity(5)];
    let c = Community::new(&ids).unwrap();
    let cfg = |boot: Vec<libp2p::Multiaddr>| hearth_node::net::driver::NetConfig {
        sync_interval: std::time::Duration::from_secs(1),
        ..test_net_config(boot)
    };
    let node = |i: usize| c.node(&ids[i], i as u64).unwrap();
    let mut a = TestNode::start(node(0), cfg(vec![])).await.unwrap();
    let mut b = TestNode::start(node(1), cfg(vec![a.addr.clone()]))
        .await
        .unwrap();
    let mut x = TestNode::start(node(2), cfg(vec![])).await.unwrap();
    let mut y = TestNode::start(node(3), cfg(vec![x.addr.clone()]))
        .await
        .unwrap();
    b.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    y.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    let mut left = BTreeSet::new();
    let mut right = BTreeSet::new();
    for i in 0..10 {
        left.insert(post(&mut a, &format!("left {i}"), &[]).await);
        right.insert(post(&mut x, &format!("right {i}"), &[]).await);
    }
    b.wait_stored(&left).await.unwrap();
    y.wait_stored(&right).await.unwrap();
    assert_ne!(a.digest().await.unwrap(), x.digest().await.unwrap());
    // Heal: one link between the halves.
    b.handle.dial(y.addr.clone()).await;
    let all: BTreeSet<EventHash> = left.union(&right).copied().collect();
    // Events already stored before the heal are in `stored` too.
    for n in [&mut a, &mut b, &mut x, &mut y] {
        let own: BTreeSet<EventHash> = n.stored.clone();
        let need: BTreeSet<EventHash> = all.difference(&own).copied().collect();
        n.wait_stored(&need).await.unwrap();
    }
    let d = a.digest().await.unwrap();
    for n in [&b, &x, &y] {
        assert_eq!(n.digest().await.unwrap(), d);
    }
}

/// A node stopped while others post 1,000 events gets all of them when it
/// comes back with its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_on_a_thousand_events() {
    let ids = [identity(2), identity(3)];
    let c = Community::new(&ids).unwrap();
    let mut a = start(&c, &ids[0], 1, vec![]).await;
    let b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    let b_node = b.stop().await.unwrap();
    let store = b_node.into_store().unwrap();
    let mut posted = BTreeSet::new();
    for i in 0..1000 {
        posted.insert(post(&mut a, &format!("while b was away {i}"), &[]).await);
    }
    let node =
        hearth_node::core::Node::new(ids[1].clone(), &c.genesis, store, Default::default(), 5)
            .unwrap();
    let mut b = TestNode::start(node, test_net_config(vec![a.addr.clone()]))
        .await
        .unwrap();
    b.wait_stored(&posted).await.unwrap();
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
}

/// A non-member's own events are rejected by every node, which lowers its
/// gossip score; tampered bytes never reach a view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_and_invalid_events_are_rejected_and_scored() {
    let ids = [identity(2), identity(3)];
    let stranger = identity(9);
    let c = Community::new(&ids).unwrap();
    let mut a = start(&c, &ids[0], 1, vec![]).await;
    let mut b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    let mut s = start(&c, &stranger, 3, vec![a.addr.clone(), b.addr.clone()]).await;
    for n in [&mut a, &mut b] {
        n.wait_for(
            "the stranger",
            |e| matches!(e, NetEvent::PeerConnected(p) if *p == s.handle.peer_id),
        )
        .await
        .unwrap();
    }
    // Publish only once both members are on the topic.
    let mut subscribed = BTreeSet::new();
    while subscribed.len() < 2 {
        let e = s
            .wait_for("subscriptions", |e| matches!(e, NetEvent::Subscribed(_)))
            .await
            .unwrap();
        if let NetEvent::Subscribed(p) = e {
            subscribed.insert(p);
        }
    }
    // The stranger's own post, signed correctly, published raw.
    let own = hearth_proto::Event {
        id: hearth_proto::EventId::from_parts(FIXED_NOW_MS, 77),
        ts: FIXED_NOW_MS,
        author: stranger.node_id(),
        lamport: 5,
        community: c.id(),
        payload: hearth_proto::Payload::PostCreated(hearth_proto::PostCreated {
            content: hearth_proto::PostContent {
                category: Category::Offer,
                title: "spam".into(),
                body: String::new(),
                tags: vec![],
                expires_at: u64::MAX / 2,
                location: None,
            }
            .into(),
            client_id: None,
        }),
    }
    .sign(&stranger)
    .unwrap();
    let digest_before = a.digest().await.unwrap();
    // Tampered copy of a member-looking event: invalid signature.
    let mut tampered = own.bytes().to_vec();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    s.handle.publish_raw(own.bytes().to_vec()).await;
    s.handle.publish_raw(tampered).await;
    for n in [&mut a, &mut b] {
        n.wait_for("a reject", |e| {
            matches!(e, NetEvent::Verdict(_, hearth_node::core::Verdict::Reject))
        })
        .await
        .unwrap();
    }
    for n in [&a, &b] {
        let st = n.handle.status().await.unwrap();
        assert_eq!(st.digest, digest_before, "no view changed");
        let score = st
            .peers
            .iter()
            .find(|p| p.peer_id == s.handle.peer_id.to_string())
            .and_then(|p| p.score);
        assert!(
            score.is_some_and(|x| x < 0.0),
            "stranger's score dropped: {score:?}"
        );
    }
}

/// A remote `market.expire` by someone who is not the author is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_expire_by_non_author_is_unauthorized() {
    let ids = [identity(2), identity(3)];
    let c = Community::new(&ids).unwrap();
    let mut a = start(&c, &ids[0], 1, vec![]).await;
    let mut b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    b.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    let receipt: PostReceipt = a
        .handle
        .call("market.post", post_params("Tent", &[]))
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    let params = Value::serialized(
        &[
            ("id", receipt.post.id.to_string()),
            ("reason", "fulfilled".into()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    let err = b
        .handle
        .remote_call(a.handle.peer_id, "market.expire", params)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
    let _ = post_hash(&mut a).await;
}

/// Twenty nodes in a random connected topology, 200 posts from random
/// nodes: every node ends with the same view digest (gossip plus the
/// periodic sync every node runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_converge_on_two_hundred_posts() {
    const N: usize = 20;
    let ids: Vec<Identity> = (0..N).map(|i| identity(10 + i as u8)).collect();
    let c = Community::new(&ids).unwrap();
    // Deterministic "random" topology: each node dials two earlier ones.
    let mut topology = hearth_tests::mesh::Topology::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move |m: usize| topology.pick(m);
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let boot = if i == 0 {
            vec![]
        } else {
            vec![nodes[next(i)].addr.clone(), nodes[next(i)].addr.clone()]
        };
        // Periodic sync on, as in a real node: gossip is the fast path and
        // may drop a message on a loaded machine; sync is what completes it.
        let cfg = hearth_node::net::driver::NetConfig {
            sync_interval: std::time::Duration::from_secs(5),
            ..test_net_config(boot)
        };
        nodes.push(
            TestNode::start(c.node(id, i as u64).unwrap(), cfg)
                .await
                .unwrap(),
        );
    }
    let mut all = BTreeSet::new();
    for k in 0..200 {
        let i = next(N);
        all.insert(post(&mut nodes[i], &format!("post {k}"), &["bulk"]).await);
    }
    for n in nodes.iter_mut() {
        let have = n.stored.clone();
        let need: BTreeSet<EventHash> = all.difference(&have).copied().collect();
        n.wait_stored(&need).await.unwrap();
    }
    let d = nodes[0].digest().await.unwrap();
    for n in &nodes[1..] {
        assert_eq!(n.digest().await.unwrap(), d);
    }
}

/// Over `/hearthnet/bus/1`: a member may read a peer's market, a non-member
/// is `unauthorized`, an unknown capability is `not_found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_bus_calls_check_membership_and_names() {
    let ids = [identity(2), identity(3)];
    let stranger = identity(9);
    let c = Community::new(&ids).unwrap();
    let a = start(&c, &ids[0], 1, vec![]).await;
    let mut b = start(&c, &ids[1], 2, vec![a.addr.clone()]).await;
    let mut s = start(&c, &stranger, 3, vec![a.addr.clone()]).await;
    b.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    s.wait_for("a peer", |e| matches!(e, NetEvent::PeerConnected(_)))
        .await
        .unwrap();
    let empty = Value::Map(vec![]);
    assert!(b
        .handle
        .remote_call(a.handle.peer_id, "market.list", empty.clone())
        .await
        .is_ok());
    let err = s
        .handle
        .remote_call(a.handle.peer_id, "market.list", empty.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
    let err = b
        .handle
        .remote_call(a.handle.peer_id, "market.nothing", empty)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound, "{err}");
}
