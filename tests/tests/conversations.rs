//! Conversations across real libp2p swarms on loopback (issue 14): claims,
//! acceptance, sealed messages carried by the mesh while their recipient is
//! offline, the local inbox (unread counts, names, sent copies) and the
//! change feed's conversation events. Every wait is on a node's own events
//! or change feed; timeouts only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use hearth_node::api::dispatch;
use hearth_node::net::changes::{Change, Stamped};
use hearth_node::net::driver::{Handle, NetEvent};
use hearth_proto::sealed::{self, OpenError};
use hearth_proto::{EventHash, Identity, NodeId};
use hearth_tests::identity;
use hearth_tests::mesh::{test_net_config, Community, TestNode, GUARD};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Calls `name` through the one request path the socket and HTTP share.
async fn call(node: &TestNode, name: &str, params: Value) -> Value {
    dispatch::call(name, params, &node.handle)
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {}", e.message()))
}

/// The hash of an answer's `hash` field (a write's receipt).
fn hash_of(v: &Value) -> EventHash {
    let hex = v["hash"].as_str().unwrap();
    EventHash::from_slice(&hex::decode(hex).unwrap()).unwrap()
}

fn hex(n: &NodeId) -> String {
    n.to_hex()
}

/// A reader of a node's change feed from its first change, so nothing
/// published before the test looked is missed.
struct Feed {
    missed: std::collections::VecDeque<Arc<Stamped>>,
    live: broadcast::Receiver<Arc<Stamped>>,
}

impl Feed {
    fn of(handle: &Handle) -> Feed {
        let r = handle.changes.resume(Some(&handle.changes.event_id(0)));
        Feed {
            missed: r.missed.unwrap().into(),
            live: r.live,
        }
    }

    /// The first change (from the start of the feed) that `pred` picks.
    async fn wait<T>(&mut self, what: &str, mut pred: impl FnMut(&Change) -> Option<T>) -> T {
        loop {
            let next = match self.missed.pop_front() {
                Some(s) => s,
                None => tokio::time::timeout(GUARD, self.live.recv())
                    .await
                    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                    .unwrap_or_else(|e| panic!("feed ended waiting for {what}: {e}")),
            };
            if let Some(t) = pred(&next.change) {
                return t;
            }
        }
    }
}

async fn start(c: &Community, who: &Identity, seed: u64, boot: Vec<libp2p::Multiaddr>) -> TestNode {
    TestNode::start(c.node(who, seed).unwrap(), test_net_config(boot))
        .await
        .unwrap()
}

/// Waits until `node` saw `n` peers subscribe to the community topic.
async fn subscribed(node: &mut TestNode, n: usize) {
    for _ in 0..n {
        node.wait_for("a peer's subscription", |e| {
            matches!(e, NetEvent::Subscribed(_))
        })
        .await
        .unwrap();
    }
}

async fn wait_stored(node: &mut TestNode, hashes: &[EventHash]) {
    node.wait_stored(&hashes.iter().copied().collect::<BTreeSet<_>>())
        .await
        .unwrap();
}

/// B claims A's offer and A accepts: every node shows the post fulfilled by
/// B, and the feeds announce the claim, the acceptance and the fulfilled
/// expiry with `fulfilled_by`. C stores and syncs A's and B's sealed
/// messages but cannot open them. A goes offline, B writes, A comes back
/// and reads it, with the unread count, B's name and the `message` event
/// (no text in it); B sees its own text, and `dm_waiting` counts the
/// message while A is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_accept_and_sealed_messages_across_three_nodes() {
    let (a_id, b_id, c_id) = (identity(2), identity(3), identity(4));
    let (a_n, b_n) = (a_id.node_id(), b_id.node_id());
    let community = Community::new(&[a_id.clone(), b_id.clone(), c_id.clone()]).unwrap();
    let mut a = start(&community, &a_id, 1, vec![]).await;
    let mut b = start(&community, &b_id, 2, vec![a.addr.clone()]).await;
    let mut c = start(&community, &c_id, 3, vec![a.addr.clone(), b.addr.clone()]).await;
    subscribed(&mut a, 2).await;
    subscribed(&mut b, 2).await;
    subscribed(&mut c, 2).await;
    let mut a_feed = Feed::of(&a.handle);
    let mut b_feed = Feed::of(&b.handle);

    let profile = call(&b, "member.profile", json!({"name": "Bea"})).await;
    let post = call(
        &a,
        "market.post",
        json!({"category": "offer", "title": "Water canister", "body": "free", "tags": []}),
    )
    .await;
    let post_ref = json!({"author": hex(&a_n), "id": post["post"]["id"]});
    let profile_hash = b
        .wait_for("the profile event", |e| {
            matches!(e, NetEvent::Stored { source: None, .. })
        })
        .await
        .unwrap();
    let NetEvent::Stored {
        hash: profile_hash, ..
    } = profile_hash
    else {
        unreachable!()
    };
    let _ = profile;
    b_feed
        .wait("A's post on B", |ch| {
            matches!(ch, Change::PostAdded(p) if p.author == a_n).then_some(())
        })
        .await;

    // B claims, A sees the claim and accepts it.
    let claim = call(
        &b,
        "market.claim",
        json!({"post": post_ref, "note": "I can come by tonight"}),
    )
    .await;
    let state = a_feed
        .wait("the claim on A", |ch| match ch {
            Change::Claim { author, state, .. } if *author == b_n => Some(*state),
            _ => None,
        })
        .await;
    assert_eq!(state.as_str(), "open");
    let accept = call(
        &a,
        "market.accept_claim",
        json!({"post": post["post"]["id"], "claim": {"author": hex(&b_n), "id": claim["id"]}}),
    )
    .await;
    let fulfilled_by = b_feed
        .wait("the fulfilled expiry on B", |ch| match ch {
            Change::PostExpired(g) if g.author == a_n => Some((g.reason.clone(), g.fulfilled_by)),
            _ => None,
        })
        .await;
    assert_eq!(fulfilled_by, ("fulfilled".to_owned(), Some(b_n)));
    let accepted = b_feed
        .wait("claim_accepted on B", |ch| match ch {
            Change::ClaimAccepted { claim, .. } => Some(claim.author),
            _ => None,
        })
        .await;
    assert_eq!(accepted, b_n);
    wait_stored(&mut c, &[hash_of(&accept), profile_hash]).await;
    for node in [&a, &b, &c] {
        let got = call(node, "market.get", json!({"id": post["post"]["id"]})).await;
        assert_eq!(got["status"], "expired", "{got}");
        assert_eq!(got["expired_reason"], "fulfilled", "{got}");
        let thread = call(node, "conversation.get", json!({"post": post_ref})).await;
        assert_eq!(thread["fulfilled_by"], hex(&b_n), "{thread}");
    }

    // A and B write to each other; C stores both.
    let a_to_b = call(&a, "dm.send", json!({"to": hex(&b_n), "body": "Come at 7"})).await;
    let b_to_a = call(
        &b,
        "dm.send",
        json!({"to": hex(&a_n), "body": "Thanks, see you"}),
    )
    .await;
    wait_stored(&mut c, &[hash_of(&a_to_b), hash_of(&b_to_a)]).await;
    wait_stored(&mut a, &[hash_of(&b_to_a)]).await;
    let unread = a_feed
        .wait("the message event on A", |ch| match ch {
            Change::Message {
                with,
                unread,
                outgoing: false,
                ..
            } if *with == b_n => Some(*unread),
            _ => None,
        })
        .await;
    assert_eq!(unread, 1);
    let data = Change::Message {
        with: b_n,
        lamport: 1,
        unread: 1,
        outgoing: false,
    }
    .data();
    assert!(
        !data.to_string().contains("Thanks"),
        "the stream never carries text"
    );

    // A goes offline; B writes; C carries it.
    let a_peer = hearth_node::net::identity::peer_id(&a_n).unwrap();
    let a_core = a.stop().await.unwrap();
    b.wait_for("A gone", |e| *e == NetEvent::PeerDisconnected(a_peer))
        .await
        .unwrap();
    let while_away = call(
        &b,
        "dm.send",
        json!({"to": hex(&a_n), "body": "Running late, 7:30?"}),
    )
    .await;
    wait_stored(&mut c, &[hash_of(&while_away)]).await;
    let status = call(&b, "node.status", json!({})).await;
    assert_eq!(status["dm_waiting"], 1, "the message waits for A: {status}");
    let mine = call(&b, "conversation.get", json!({"with": hex(&a_n)})).await;
    let sent: Vec<&Value> = mine["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outgoing"] == true)
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1]["body"], "Running late, 7:30?",
        "B sees what it sent"
    );

    // C holds every sealed message between A and B and opens none.
    let c_core = c.stop().await.unwrap();
    let held: Vec<_> = c_core
        .views()
        .conversations
        .sealed_between(&a_n, &b_n)
        .chain(c_core.views().conversations.sealed_between(&b_n, &a_n))
        .cloned()
        .collect();
    assert_eq!(held.len(), 3, "C stores A's and B's messages");
    for s in &held {
        assert!(matches!(
            sealed::open(&c_id, &s.sealed),
            Err(OpenError::NotForMe)
        ));
    }
    let c_list = c_core
        .conversation_list(
            hearth_node::net::driver::now_ms(),
            hearth_node::core::bus::Caller::Local,
        )
        .unwrap();
    assert!(c_list.conversations.is_empty(), "C has no conversation");

    // A comes back (through B: C is gone) and reads what B wrote meanwhile.
    let mut a = TestNode::start(a_core, test_net_config(vec![b.addr.clone()]))
        .await
        .unwrap();
    let mut a_feed = Feed::of(&a.handle);
    wait_stored(&mut a, &[hash_of(&while_away)]).await;
    a_feed
        .wait("the message event on A after its return", |ch| match ch {
            Change::Message { with, .. } if *with == b_n => Some(()),
            _ => None,
        })
        .await;
    let got = call(&a, "conversation.get", json!({"with": hex(&b_n)})).await;
    let texts: Vec<&str> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from"] == hex(&b_n))
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Thanks, see you", "Running late, 7:30?"]);
    let list = call(&a, "conversation.list", json!({})).await;
    let dm = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "dm")
        .unwrap()
        .clone();
    assert_eq!(dm["with"], hex(&b_n));
    assert_eq!(dm["name"], "Bea");
    assert_eq!(dm["unread"], 2, "{dm}");
    assert_eq!(dm["last"]["text"], "Running late, 7:30?");
    let marked = call(&a, "conversation.mark_read", json!({"with": hex(&b_n)})).await;
    assert_eq!(marked["marked"], 2);
    let marked = call(&a, "conversation.mark_read", json!({"post": post_ref})).await;
    assert_eq!(marked["marked"], 1, "B's claim under A's post");
    let list = call(&a, "conversation.list", json!({})).await;
    assert!(list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["unread"] == 0));
    let thread = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "post")
        .unwrap()
        .clone();
    assert_eq!(thread["title"], "Water canister");
    assert_eq!(thread["received"], 1, "B's claim: {thread}");
    // A is back: nothing waits for it any more.
    let status = call(&b, "node.status", json!({})).await;
    assert_eq!(status["dm_waiting"], 0, "{status}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
