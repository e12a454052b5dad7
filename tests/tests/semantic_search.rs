//! Issue 13: search by meaning across the mesh, on real libp2p nodes.
//!
//! The model here is a stand-in with the real model's contract (a
//! `TextEmbedder`: L2-normalised vectors, one per text): it maps words to
//! shared "concepts" across German and English (Leiter/ladder, ...), so a
//! query that shares no word with its answer still finds it only by
//! meaning. The real model's relevance is tested against the relevance
//! set; these tests prove the plumbing: who embeds, failover, fallback,
//! the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use ciborium::Value;
use hearth_node::core::services::market::{PostReceipt, SearchResult};
use hearth_node::core::ErrorCode;
use hearth_node::net::driver::{NetConfig, NetEvent, SearchSetup};
use hearth_node::semantic::TextEmbedder;
use hearth_proto::{EventHash, Identity};
use hearth_tests::identity;
use hearth_tests::mesh::{test_net_config, Community, TestNode};
use serde_json::json;
use tokio::sync::watch;

const DIM: usize = 64;

/// Words of one meaning share a dimension; other words hash into the rest.
const CONCEPTS: &[&[&str]] = &[
    &["ladder", "ladders", "leiter", "ausleihen", "borrow", "lend"],
    &[
        "gas",
        "gasgeruch",
        "leak",
        "smell",
        "treppenhaus",
        "stairwell",
    ],
    &["water", "wasser", "kanister", "canister"],
    &["bike", "fahrrad", "rad"],
    &["apples", "äpfel", "fruit", "obst"],
];

/// Counts the texts it embeds, observable without polling.
struct Concepts {
    embedded: watch::Sender<usize>,
}

impl Concepts {
    fn new() -> (Arc<Concepts>, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (Arc::new(Concepts { embedded: tx }), rx)
    }
}

impl TextEmbedder for Concepts {
    fn model_id(&self) -> &str {
        "concepts-test-1"
    }
    fn dim(&self) -> usize {
        DIM
    }
    fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.embedded.send_modify(|n| *n += texts.len());
        texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; DIM];
                for w in t.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
                    if w.is_empty() {
                        continue;
                    }
                    let d = CONCEPTS
                        .iter()
                        .position(|c| c.contains(&w))
                        .unwrap_or_else(|| {
                            8 + w.bytes().fold(7usize, |h, b| h * 31 + b as usize) % (DIM - 8)
                        });
                    v[d] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / n).collect()
            })
            .collect()
    }
}

fn with_model(
    model: Option<Arc<Concepts>>,
    vectors: Option<sled::Tree>,
    boot: Vec<libp2p::Multiaddr>,
) -> NetConfig {
    NetConfig {
        search: SearchSetup {
            model: model.map(|m| m as Arc<dyn TextEmbedder>),
            vectors,
            cache_entries: None,
            warm: false,
        },
        ..test_net_config(boot)
    }
}

async fn post(node: &mut TestNode, title: &str, body: &str) -> EventHash {
    let params = json!({"category": "request", "title": title, "body": body});
    let v = node
        .handle
        .call("market.post", Value::serialized(&params).unwrap())
        .await
        .unwrap();
    let _: PostReceipt = v.deserialized().unwrap();
    match node
        .wait_for("the post stored", |e| matches!(e, NetEvent::Stored { .. }))
        .await
        .unwrap()
    {
        NetEvent::Stored { hash, .. } => hash,
        _ => unreachable!(),
    }
}

async fn search(node: &TestNode, query: &str, mode: &str) -> SearchResult {
    let params = json!({"query": query, "mode": mode});
    node.handle
        .call("market.search", Value::serialized(&params).unwrap())
        .await
        .unwrap()
        .deserialized()
        .unwrap()
}

fn titles(r: &SearchResult) -> Vec<&str> {
    r.results.iter().map(|h| h.post.title.as_str()).collect()
}

const POSTS: [(&str, &str); 4] = [
    ("Need a ladder for the weekend", "to clean the gutters"),
    ("Free apples from our garden", "a whole crate"),
    ("Selling my old bike", "three gears, works"),
    ("Ladders wanted for the street party", "two would do"),
];

/// Three members: `a` has the model, `b` and `c` do not; `b` posts.
async fn three_nodes(c_has_model: bool) -> (TestNode, TestNode, TestNode, watch::Receiver<usize>) {
    let [a, b, c]: [Identity; 3] = [identity(10), identity(11), identity(12)];
    let community = Community::new(&[a.clone(), b.clone(), c.clone()]).unwrap();
    let (model, embedded) = Concepts::new();
    let na = TestNode::start(
        community.node(&a, 1).unwrap(),
        with_model(Some(model), None, vec![]),
    )
    .await
    .unwrap();
    let mut nb = TestNode::start(
        community.node(&b, 2).unwrap(),
        with_model(None, None, vec![na.addr.clone()]),
    )
    .await
    .unwrap();
    let c_model = c_has_model.then(|| Concepts::new().0);
    let mut nc = TestNode::start(
        community.node(&c, 3).unwrap(),
        with_model(c_model, None, vec![na.addr.clone()]),
    )
    .await
    .unwrap();
    for n in [&mut nb, &mut nc] {
        n.wait_for("subscribed", |e| matches!(e, NetEvent::Subscribed(_)))
            .await
            .unwrap();
    }
    let mut hashes = BTreeSet::new();
    for (title, body) in POSTS {
        hashes.insert(post(&mut nb, title, body).await);
    }
    nc.wait_stored(&hashes).await.unwrap();
    (na, nb, nc, embedded)
}

/// A node without a model finds "Leiter ausleihen" in an English post by
/// asking the one member that has a model; keyword search alone does not
/// find it at all.
#[tokio::test]
async fn test_market_search_uses_a_peer_model() {
    let (na, nb, nc, embedded) = three_nodes(false).await;
    let keyword = search(&nc, "Leiter ausleihen", "keyword").await;
    assert!(keyword.results.is_empty(), "{:?}", titles(&keyword));
    for mode in ["hybrid", "semantic"] {
        let r = search(&nc, "Leiter ausleihen", mode).await;
        assert_eq!(r.mode, mode);
        assert_eq!(r.degraded, None);
        let top: BTreeSet<&str> = titles(&r).into_iter().take(2).collect();
        assert_eq!(
            top,
            BTreeSet::from([POSTS[0].0, POSTS[3].0]),
            "{mode}: {:?}",
            titles(&r)
        );
    }
    assert!(*embedded.borrow() >= POSTS.len() + 2, "a embedded for c");
    drop((na, nb));
}

/// The provider stops mid-run: the search answers with keyword results,
/// says it is degraded by a partition, and holds every post containing
/// the query.
#[tokio::test]
async fn test_search_falls_back_to_substring_when_embedding_unavailable() {
    let (na, nb, mut nc, _) = three_nodes(false).await;
    let before = search(&nc, "ladder", "hybrid").await;
    assert_eq!(
        (before.mode.as_str(), before.degraded.as_deref()),
        ("hybrid", None)
    );
    let a_peer = na.handle.peer_id;
    na.stop().await.unwrap();
    nc.wait_for("a gone", |e| *e == NetEvent::PeerDisconnected(a_peer))
        .await
        .unwrap();
    let r = search(&nc, "ladder", "hybrid").await;
    assert_eq!(r.mode, "keyword");
    assert_eq!(r.degraded.as_deref(), Some(ErrorCode::Partition.as_str()));
    let got: BTreeSet<&str> = titles(&r).into_iter().collect();
    assert!(
        got.contains(POSTS[0].0) && got.contains(POSTS[3].0),
        "{got:?}"
    );
    drop(nb);
}

/// Vectors are cached: a repeat search embeds only the query, an update
/// re-embeds only that post, and a restart with the same vector store
/// embeds nothing but the query.
#[tokio::test]
async fn vectors_are_cached_invalidated_by_update_and_survive_restart() {
    let a = identity(20);
    let community = Community::new(std::slice::from_ref(&a)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tree = sled::open(dir.path())
        .unwrap()
        .open_tree("vectors")
        .unwrap();
    let (model, embedded) = Concepts::new();
    let cfg = || with_model(Some(model.clone()), Some(tree.clone()), vec![]);
    let mut node = TestNode::start(community.node(&a, 1).unwrap(), cfg())
        .await
        .unwrap();
    for (title, body) in POSTS {
        post(&mut node, title, body).await;
    }
    let count = || *embedded.borrow();
    search(&node, "ladder", "semantic").await;
    assert_eq!(
        count(),
        1 + POSTS.len(),
        "first search embeds the query and every post"
    );
    search(&node, "ladder", "semantic").await;
    assert_eq!(count(), 2 + POSTS.len(), "a repeat embeds only the query");

    let list: serde_json::Value = node
        .handle
        .call("market.list", Value::serialized(&json!({})).unwrap())
        .await
        .unwrap()
        .deserialized()
        .unwrap();
    let bike = list["posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == POSTS[2].0)
        .unwrap()["id"]
        .clone();
    let update = json!({"id": bike, "title": "Selling my old Fahrrad"});
    node.handle
        .call("market.update", Value::serialized(&update).unwrap())
        .await
        .unwrap();
    let r = search(&node, "ladder", "semantic").await;
    assert_eq!(
        count(),
        4 + POSTS.len(),
        "the update re-embeds that post only"
    );
    assert!(titles(&r).contains(&"Selling my old Fahrrad"));

    let core = node.stop().await.unwrap();
    let node = TestNode::start(core, cfg()).await.unwrap();
    let before = count();
    search(&node, "ladder", "semantic").await;
    assert_eq!(
        count(),
        before + 1,
        "after a restart only the query is embedded"
    );
}

async fn list(node: &TestNode, params: serde_json::Value) -> serde_json::Value {
    node.handle
        .call("market.list", Value::serialized(&params).unwrap())
        .await
        .unwrap()
        .deserialized()
        .unwrap()
}

/// `market.list` with `q` (what `GET /api/posts?q=` calls) answers by the
/// hybrid search: a query sharing no word with its answers lists them
/// first, in relevance order without a sort, paged by position; with a
/// sort, in that order. `search` says which mode answered.
#[tokio::test]
async fn listing_with_q_uses_the_hybrid_search_in_relevance_order() {
    let (_na, _nb, nc, _) = three_nodes(false).await;
    let list = |params: serde_json::Value| list(&nc, params);
    let titles = |v: &serde_json::Value| -> Vec<String> {
        v["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let ladders = BTreeSet::from([POSTS[0].0.to_owned(), POSTS[3].0.to_owned()]);
    let v = list(json!({"q": "Leiter ausleihen"})).await;
    assert_eq!(
        v["search"],
        json!({"mode": "hybrid", "degraded": null}),
        "{v}"
    );
    let all = titles(&v);
    let top: BTreeSet<String> = all.iter().take(2).cloned().collect();
    assert_eq!(top, ladders, "{all:?}");
    let first = list(json!({"q": "Leiter ausleihen", "limit": 1})).await;
    assert_eq!(titles(&first), all[..1], "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = list(json!({"q": "Leiter ausleihen", "limit": 1, "cursor": cursor})).await;
    assert_eq!(titles(&second), all[1..2], "{second}");
    let sorted = list(json!({"q": "Leiter ausleihen", "sort": "newest"})).await;
    let mut by_relevance = all.clone();
    let mut newest = titles(&sorted);
    assert_eq!(
        newest.first().map(String::as_str),
        Some(POSTS[3].0),
        "newest first"
    );
    by_relevance.sort();
    newest.sort();
    assert_eq!(by_relevance, newest, "the same hits in another order");
}

/// The value of a counter in `/metrics` text (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// `/metrics` counts vector cache hits and misses of searches: the first
/// search misses every post (and embeds it), the second hits every one.
#[tokio::test]
async fn cache_hit_metric_moves_on_the_second_search() {
    const HITS: &str = "hearth_search_vector_cache_hits_total";
    const MISSES: &str = "hearth_search_vector_cache_misses_total";
    let a = identity(30);
    let community = Community::new(std::slice::from_ref(&a)).unwrap();
    let (model, _) = Concepts::new();
    let mut node = TestNode::start(
        community.node(&a, 1).unwrap(),
        with_model(Some(model), None, vec![]),
    )
    .await
    .unwrap();
    for (title, body) in POSTS {
        post(&mut node, title, body).await;
    }
    let metrics = || async { node.handle.metrics_text().await.unwrap() };
    let before = metrics().await;
    assert!(before.contains(HITS) && before.contains(MISSES), "{before}");
    assert_eq!((counter(&before, HITS), counter(&before, MISSES)), (0, 0));
    search(&node, "ladder", "semantic").await;
    let first = metrics().await;
    let n = POSTS.len() as u64;
    assert_eq!((counter(&first, HITS), counter(&first, MISSES)), (0, n));
    search(&node, "ladder", "hybrid").await;
    let second = metrics().await;
    assert_eq!((counter(&second, HITS), counter(&second, MISSES)), (n, n));
}

/// `embed.text` is refused with a message that says what to do: by a
/// node without a model, and to a caller who is not a member.
#[tokio::test]
async fn embed_text_refusals_say_why() {
    let [a, b, stranger]: [Identity; 3] = [identity(30), identity(31), identity(32)];
    let community = Community::new(&[a.clone(), b.clone()]).unwrap();
    let (model, _) = Concepts::new();
    let na = TestNode::start(
        community.node(&a, 1).unwrap(),
        with_model(Some(model), None, vec![]),
    )
    .await
    .unwrap();
    let mut nb = TestNode::start(
        community.node(&b, 2).unwrap(),
        with_model(None, None, vec![na.addr.clone()]),
    )
    .await
    .unwrap();
    let mut ns = TestNode::start(
        community.node(&stranger, 3).unwrap(),
        with_model(None, None, vec![na.addr.clone(), nb.addr.clone()]),
    )
    .await
    .unwrap();
    for n in [&mut nb, &mut ns] {
        n.wait_for("connected", |e| matches!(e, NetEvent::PeerConnected(_)))
            .await
            .unwrap();
    }
    let texts = || Value::serialized(&json!({"texts": ["ladder"]})).unwrap();
    let ok = nb
        .handle
        .remote_call(na.handle.peer_id, "embed.text", texts())
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let e = na
        .handle
        .remote_call(nb.handle.peer_id, "embed.text", texts())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("no embedding model"), "{e:?}");
    let e = ns
        .handle
        .remote_call(na.handle.peer_id, "embed.text", texts())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("for members"), "{e:?}");
    let e = nb
        .handle
        .remote_call(
            na.handle.peer_id,
            "embed.text",
            Value::serialized(&json!({"texts": []})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
}

/// With the real model (USE-multilingual-v3) on one node of three: a search
/// on a node without the model ranks the right post first for paraphrase
/// and cross-language queries (issue 13). Needs the model scripts/test
/// fetches (`HEARTH_EMBED_MODEL_DIR`); by hand without it, says so and passes.
#[tokio::test]
async fn test_market_search_returns_relevant() {
    let Some(dir) = std::env::var_os("HEARTH_EMBED_MODEL_DIR") else {
        eprintln!("skipped: HEARTH_EMBED_MODEL_DIR is not set (scripts/test sets it)");
        return;
    };
    let model: Arc<dyn TextEmbedder> = Arc::new(hearth_node::semantic::UseM3(
        hearth_embed::Embedder::load(&dir).unwrap(),
    ));
    let [a, b, c]: [Identity; 3] = [identity(40), identity(41), identity(42)];
    let community = Community::new(&[a.clone(), b.clone(), c.clone()]).unwrap();
    let cfg = |model: Option<Arc<dyn TextEmbedder>>, boot| NetConfig {
        search: SearchSetup {
            model,
            vectors: None,
            cache_entries: None,
            warm: false,
        },
        ..test_net_config(boot)
    };
    let na = TestNode::start(community.node(&a, 1).unwrap(), cfg(Some(model), vec![]))
        .await
        .unwrap();
    let mut nb = TestNode::start(
        community.node(&b, 2).unwrap(),
        cfg(None, vec![na.addr.clone()]),
    )
    .await
    .unwrap();
    let mut nc = TestNode::start(
        community.node(&c, 3).unwrap(),
        cfg(None, vec![na.addr.clone()]),
    )
    .await
    .unwrap();
    for n in [&mut nb, &mut nc] {
        n.wait_for("subscribed", |e| matches!(e, NetEvent::Subscribed(_)))
            .await
            .unwrap();
    }
    let posts = [
        (
            "Need a ladder for the weekend",
            "To clean the gutters, back on Monday.",
        ),
        (
            "Gasgeruch im Treppenhaus!",
            "Bitte nicht das Licht einschalten, Feuerwehr ist informiert.",
        ),
        (
            "Frische Äpfel zu verschenken",
            "Eine ganze Kiste aus unserem Garten.",
        ),
        ("Selling my old bike", "Three gears, works fine."),
        ("Babysitter gesucht", "Für Freitagabend, zwei Kinder."),
    ];
    let mut hashes = BTreeSet::new();
    for (title, body) in posts {
        hashes.insert(post(&mut nb, title, body).await);
    }
    nc.wait_stored(&hashes).await.unwrap();
    for (query, want) in [
        ("Leiter ausleihen", posts[0].0),
        ("gas leak in the stairwell", posts[1].0),
        (
            "who can lend me something to climb onto the roof",
            posts[0].0,
        ),
        ("free fruit", posts[2].0),
        ("looking for someone to watch the kids", posts[4].0),
    ] {
        let r = search(&nc, query, "hybrid").await;
        assert_eq!(r.degraded, None, "{query}");
        assert_eq!(
            titles(&r).first().copied(),
            Some(want),
            "{query}: {:?}",
            titles(&r)
        );
    }
    drop((na, nb));
}
