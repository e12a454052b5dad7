//! Issue 10, defect 6: a post that asks never to expire is capped the same
//! way on two real nodes with different `market.max_ttl_seconds` configs,
//! because the cap is a rule of the view (the community's
//! `post_ttl_max_s`), not of anyone's local config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use ciborium::Value;
use hearth_node::core::services::market::{ListResult, PostView};
use hearth_node::core::views::membership::POST_TTL_MAX_S_DEFAULT;
use hearth_node::core::{Config, Node};
use hearth_node::net::driver::now_ms;
use hearth_node::store::MemoryStore;
use hearth_proto::{
    Category, Event, EventId, Identity, Payload, PostContent, PostCreated, VerifiedEvent,
};
use hearth_tests::identity;
use hearth_tests::mesh::{test_net_config, Community, TestNode};

const DAY_S: u64 = 24 * 3600;

/// A post signed directly with the proto API, as a hostile member whose own
/// node allows any TTL would: `expires_at` = u64::MAX.
fn forever_post(c: &Community, who: &Identity, lamport: u64, id: u128, ts: u64) -> VerifiedEvent {
    Event {
        id: EventId::from_parts(ts, id),
        ts,
        author: who.node_id(),
        lamport,
        community: c.id(),
        payload: Payload::PostCreated(PostCreated {
            content: PostContent {
                category: Category::Offer,
                title: format!("forever {id}"),
                body: String::new(),
                tags: vec![],
                expires_at: u64::MAX,
                location: None,
            }
            .into(),
            client_id: None,
        }),
    }
    .sign(who)
    .unwrap()
}

fn node_with(c: &Community, who: &Identity, max_ttl_seconds: u64) -> Node<MemoryStore> {
    let mut config = Config::default();
    config.market.max_ttl_seconds = max_ttl_seconds;
    config.market.default_ttl_seconds = config.market.default_ttl_seconds.min(max_ttl_seconds);
    let mut node = Node::new(who.clone(), &c.genesis, MemoryStore::new(), config, 3).unwrap();
    for e in &c.history {
        node.log_mut().append_received(e.clone()).unwrap();
    }
    node
}

async fn get(node: &TestNode, e: &VerifiedEvent) -> PostView {
    let params = Value::serialized(
        &[
            ("id", e.event().id.to_string()),
            ("author", e.event().author.to_string()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    node.handle
        .call("market.get", params)
        .await
        .unwrap()
        .deserialized()
        .unwrap()
}

async fn titles(node: &TestNode) -> Vec<String> {
    let list: ListResult = node
        .handle
        .call("market.list", Value::Map(vec![]))
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    let mut t: Vec<String> = list.posts.into_iter().map(|p| p.title).collect();
    t.sort();
    t
}

/// Two nodes, one allowing 1-day TTLs and one 10 years, hold a hostile
/// member's never-expiring posts (one fresh, one whose `ts` is 31 days old):
/// both show the same effective expiry `ts + 30 days`, the same digest,
/// the fresh post listed and the old one gone from both lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_ttl_is_capped_identically_on_nodes_with_different_configs() {
    let (a_id, b_id, mallory) = (identity(2), identity(3), identity(4));
    let c = Community::new(&[a_id.clone(), b_id.clone(), mallory.clone()]).unwrap();
    let now = now_ms();
    let fresh = forever_post(&c, &mallory, 10, 1, now);
    let old_ts = now - 31 * DAY_S * 1000;
    let old = forever_post(&c, &mallory, 11, 2, old_ts);
    let mut a_core = node_with(&c, &a_id, DAY_S);
    a_core.log_mut().append_received(fresh.clone()).unwrap();
    a_core.log_mut().append_received(old.clone()).unwrap();
    let a = TestNode::start(a_core, test_net_config(vec![]))
        .await
        .unwrap();
    let b_core = node_with(&c, &b_id, 10 * 365 * DAY_S);
    let mut b = TestNode::start(b_core, test_net_config(vec![a.addr.clone()]))
        .await
        .unwrap();
    let want: BTreeSet<_> = [*fresh.hash(), *old.hash()].into();
    b.wait_stored(&want).await.unwrap();
    let cap_ms = POST_TTL_MAX_S_DEFAULT * 1000;
    for node in [&a, &b] {
        let f = get(node, &fresh).await;
        assert_eq!(f.expires_at, now + cap_ms, "fresh post capped");
        assert_eq!(f.status, "active");
        let o = get(node, &old).await;
        assert_eq!(o.expires_at, old_ts + cap_ms, "old post capped");
        assert_eq!(o.status, "past_ttl");
        assert_eq!(titles(node).await, vec!["forever 1".to_string()]);
    }
    assert_eq!(a.digest().await.unwrap(), b.digest().await.unwrap());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
