//! The REST reads of the local HTTP API (docs/api.md, issue 11 part 3)
//! over real HTTP on loopback, against a running node (the driver on a
//! real libp2p swarm in this process, the API on an ephemeral port): every
//! route and error path, the pagination contract while posts are added,
//! facets against the test's own count, and `near` against the test's own
//! distances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::http::{send, Api};
use common::{key, Fixture};
use hearth_node::api;
use hearth_node::core::Node;
use hearth_node::net::driver::NetEvent;
use hearth_node::store::MemoryStore;
use hearth_proto::{Category, Event, EventId, Level, Payload, PostContent, PostCreated};
use serde_json::{json, Value};

/// Serves `node` on an ephemeral loopback port (never 7878). The tests
/// post hundreds of posts through `/rpc`, so the per-client write limit
/// (tested in http_api.rs) is raised out of their way.
async fn serve(node: Node<MemoryStore>) -> Api {
    let unlimited = api::limits::Rate {
        burst: 1_000_000,
        per_minute: 1_000_000,
    };
    let tuning = api::Tuning {
        writes: unlimited,
        searches: unlimited,
        ..api::Tuning::default()
    };
    common::http::serve(node, false, tuning).await
}

/// The anchor's node, its per-author bound raised so one node can hold
/// hundreds of posts.
async fn start() -> Api {
    let f = Fixture::new();
    let api = serve(f.admitted_node(&key(1), Level::Anchor)).await;
    api.call("community.settings", json!({"posts_per_author_max": 5000}))
        .await;
    api
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every item of every page of `query` (`&`-joined, may be empty), walked
/// by cursor; checks each page's shape on the way.
async fn walk(api: &Api, query: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/api/posts?{query}");
        if let Some(c) = &cursor {
            path += &format!("&cursor={c}");
        }
        let v = api.get_ok(&path).await;
        all.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("the walk of {query} did not end");
}

/// Every REST route answers: the listing (items newest first with
/// `author_level`, total, facets, a null cursor on the last page, `search`
/// only with `q`), one post by author and id and by id alone, the members
/// (this node among them) and the connected peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_route_answers() {
    let f = Fixture::new();
    let mut api = serve(f.admitted_node(&key(1), Level::Anchor)).await;
    let a = api
        .call(
            "market.post",
            json!({"category": "offer", "title": "Ladder to lend", "tags": ["tools"]}),
        )
        .await;
    api.call(
        "market.post",
        json!({"category": "request", "title": "Need soup", "tags": ["food"]}),
    )
    .await;
    let id = a["post"]["id"].as_str().unwrap().to_owned();
    let author = a["post"]["author"].as_str().unwrap().to_owned();

    let v = api.get_ok("/api/posts").await;
    assert_eq!(v["total"], json!(2), "{v}");
    assert_eq!(
        v["items"][0]["title"],
        json!("Need soup"),
        "newest first: {v}"
    );
    assert_eq!(v["items"][0]["author_level"], json!("anchor"), "{v}");
    assert!(v["next_cursor"].is_null(), "{v}");
    assert!(v.get("search").is_none(), "{v}");
    assert_eq!(
        v["facets"]["category"],
        json!({"offer": 1, "request": 1, "info": 0, "emergency": 0})
    );
    assert_eq!(
        v["facets"]["tags"],
        json!([{"tag": "food", "count": 1}, {"tag": "tools", "count": 1}])
    );

    let v = api.get_ok("/api/posts?q=ladder").await;
    assert_eq!(ids(&v["items"]), vec![id.clone()], "{v}");
    // No model and no peer offering one: the hybrid search fell back.
    assert_eq!(v["search"]["mode"], json!("keyword"), "{v}");
    assert_eq!(v["search"]["degraded"], json!("partition"), "{v}");

    let p = api.get_ok(&format!("/api/posts/{author}/{id}")).await;
    assert_eq!(
        (p["title"].as_str(), p["status"].as_str()),
        (Some("Ladder to lend"), Some("active"))
    );
    let p = api.get_ok(&format!("/api/posts/{id}")).await;
    assert_eq!(p["title"], json!("Ladder to lend"));

    let m = api.get_ok("/api/members").await;
    let me = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == json!(author))
        .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(me["level"], json!("anchor"));

    assert_eq!(api.get_ok("/api/peers").await, json!({"peers": []}));
    let mut b = serve(f.admitted_node(&key(2), Level::Member)).await;
    let b_addr = loop {
        if let NetEvent::Listening(addr) = b.events.recv().await.unwrap() {
            break addr;
        }
    };
    api.handle.dial(b_addr).await;
    loop {
        if let NetEvent::PeerConnected(p) = api.events.recv().await.unwrap() {
            if p == b.handle.peer_id {
                break;
            }
        }
    }
    let peers = api.get_ok("/api/peers").await;
    assert_eq!(
        peers["peers"][0]["peer_id"],
        json!(b.handle.peer_id.to_string()),
        "{peers}"
    );
    b.stop().await;
    api.stop().await;
}

/// Signs a post by `who` with a chosen id, dated now (so it is live by
/// the real clock the driver reads).
fn post_now(
    f: &Fixture,
    who: u8,
    lamport: u64,
    id: EventId,
    title: &str,
) -> hearth_proto::VerifiedEvent {
    let now = now_ms();
    Event {
        id,
        ts: now,
        author: key(who).node_id(),
        lamport,
        community: f.community,
        payload: Payload::PostCreated(PostCreated {
            content: PostContent {
                category: Category::Offer,
                title: title.into(),
                body: String::new(),
                tags: vec![],
                expires_at: now + 3_600_000,
                location: None,
            }
            .into(),
            client_id: None,
        }),
    }
    .sign(&key(who))
    .unwrap()
}

/// Every error path of the REST reads answers its status with
/// `{"error": {"code", "message"}}` and a message naming the problem:
/// bad limit, bad cursor, bad near, bad sort, unknown parameter, unknown
/// post, malformed ids, and an id two authors used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_name_the_problem() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&key(1), Level::Anchor);
    for (lamport, who) in [(1, 2u8), (2, 3)] {
        node.log_mut()
            .append_received(f.member_set(&f.anchor, lamport, &key(who), Level::Member))
            .unwrap();
    }
    // Two authors, one id.
    let shared = EventId::from_parts(now_ms(), 77);
    for (lamport, who) in [(3, 2u8), (4, 3)] {
        node.log_mut()
            .append_received(post_now(&f, who, lamport, shared, "twin"))
            .unwrap();
    }
    let api = serve(node).await;
    for _ in 0..3 {
        api.call("market.post", json!({"category": "info", "title": "x"}))
            .await;
    }
    let first = api.get_ok("/api/posts?limit=1").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();

    api.get_err(
        "/api/posts?limit=201",
        400,
        "bad_request",
        "limit must be 1 to 200",
    )
    .await;
    api.get_err(
        "/api/posts?limit=0",
        400,
        "bad_request",
        "limit must be 1 to 200",
    )
    .await;
    api.get_err(
        "/api/posts?limit=lots",
        400,
        "bad_request",
        "limit must be a whole number",
    )
    .await;
    api.get_err("/api/posts?cursor=nonsense", 400, "bad_request", "cursor")
        .await;
    api.get_err(
        &format!("/api/posts?sort=oldest&cursor={cursor}"),
        400,
        "bad_request",
        "sort=newest",
    )
    .await;
    api.get_err(
        "/api/posts?near=52.5&radius_km=1",
        400,
        "bad_request",
        "near must be LAT,LNG",
    )
    .await;
    api.get_err(
        "/api/posts?near=95,13&radius_km=1",
        400,
        "bad_request",
        "latitude",
    )
    .await;
    api.get_err(
        "/api/posts?near=52,13&radius_km=-1",
        400,
        "bad_request",
        "radius_km",
    )
    .await;
    api.get_err(
        "/api/posts?near=52,13",
        400,
        "bad_request",
        "needs radius_km",
    )
    .await;
    api.get_err("/api/posts?sort=nearest", 400, "bad_request", "needs near")
        .await;
    api.get_err("/api/posts?sort=best", 400, "bad_request", "sort must be")
        .await;
    api.get_err(
        "/api/posts?category=gifts",
        400,
        "bad_request",
        "category must be",
    )
    .await;
    api.get_err(
        "/api/posts?colour=red",
        400,
        "bad_request",
        "unknown query parameter",
    )
    .await;
    api.get_err("/api/posts?author=me", 400, "bad_request", "author")
        .await;
    api.get_err("/api/posts?q=", 400, "bad_request", "query is empty")
        .await;

    let unknown = EventId::from_parts(now_ms(), 12345);
    api.get_err(
        &format!("/api/posts/{unknown}"),
        404,
        "not_found",
        "no post",
    )
    .await;
    let author = key(2).node_id();
    api.get_err(
        &format!("/api/posts/{author}/{unknown}"),
        404,
        "not_found",
        "no post",
    )
    .await;
    api.get_err("/api/posts/not-an-id", 400, "bad_request", "not a post id")
        .await;
    api.get_err(
        &format!("/api/posts/abc/{unknown}"),
        400,
        "bad_request",
        "node id",
    )
    .await;
    api.get_err(
        &format!("/api/posts/{shared}"),
        400,
        "bad_request",
        "2 posts have id",
    )
    .await;
    // Named by author, each twin answers.
    let p = api.get_ok(&format!("/api/posts/{author}/{shared}")).await;
    assert_eq!(p["author"], json!(author.to_string()));
    api.stop().await;
}

/// The pagination contract: with 500 posts, pages of 37 walked by cursor
/// while another task adds posts between pages list every original post
/// exactly once, in order, for `newest`, `oldest` and `expiring`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_list_every_original_post_once_while_posts_are_added() {
    let api = start().await;
    let params: Vec<Value> = (0..500)
        .map(|i| {
            json!({
                "category": Category::ALL[i % 4],
                "title": format!("original {i}"),
                // Expiries in a shuffled order, some equal.
                "ttl_seconds": 3600 + (i * 7919 % 400) * 60,
            })
        })
        .collect();
    let mut originals: BTreeSet<String> = BTreeSet::new();
    for chunk in params.chunks(50) {
        for r in api
            .call("market.post", json!(chunk))
            .await
            .as_array()
            .unwrap()
        {
            originals.insert(r["post"]["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(originals.len(), 500);

    // The adder: two posts for each page the walker asks it for.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
    let adder_addr = api.addr;
    let token = api.token();
    let adder = tokio::spawn(async move {
        let mut n = 0;
        while let Some(done) = rx.recv().await {
            for _ in 0..2 {
                n += 1;
                let body = json!({"jsonrpc": "2.0", "id": n, "method": "market.post",
                    "params": {"category": "offer", "title": format!("added {n}"),
                               "ttl_seconds": 60 + n}});
                let auth = format!("Bearer {token}");
                let r = send(
                    adder_addr,
                    "POST",
                    "/rpc",
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &auth),
                    ],
                    body.to_string().as_bytes(),
                )
                .await;
                assert!(r.json().get("result").is_some(), "{}", r.text());
            }
            let _ = done.send(());
        }
        n
    });

    for sort in ["newest", "oldest", "expiring"] {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/posts?limit=37&sort={sort}");
            if let Some(c) = &cursor {
                path += &format!("&cursor={c}");
            }
            let v = api.get_ok(&path).await;
            let items = v["items"].as_array().unwrap();
            assert!(items.len() <= 37);
            seen.extend(items.iter().cloned());
            pages += 1;
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            tx.send(done_tx).await.unwrap();
            done_rx.await.unwrap();
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert!(pages >= 14, "{sort}: {pages} pages");
        let got: Vec<String> = ids(&json!(seen))
            .into_iter()
            .filter(|id| originals.contains(id))
            .collect();
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(got.len(), 500, "{sort}: an original twice or missing");
        assert_eq!(unique.len(), 500, "{sort}: an original twice");
        // Order of everything listed (added posts too), by the sort's key.
        let key = |p: &Value| {
            (
                p["expires_at"].as_u64().unwrap(),
                p["created_lamport"].as_u64().unwrap(),
            )
        };
        for w in seen.windows(2) {
            let (a, b) = (key(&w[0]), key(&w[1]));
            let ordered = match sort {
                "newest" => a.1 > b.1,
                "oldest" => a.1 < b.1,
                _ => a < b,
            };
            assert!(ordered, "{sort}: {a:?} then {b:?}");
        }
    }
    drop(tx);
    let added = adder.await.unwrap();
    assert!(
        added >= 3 * 2 * 14,
        "posts were added during the walks: {added}"
    );
    let total = api.get_ok("/api/posts?limit=1").await["total"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 500 + added as u64);
    api.stop().await;
}

/// Facets and `total` equal the test's own count over the filtered set
/// (every page walked), per category and per tag, most used tags first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_equal_a_count_over_the_filtered_set() {
    let api = start().await;
    let tags = ["garden", "tools", "kids", "food", "bikes"];
    let params: Vec<Value> = (0..120usize)
        .map(|i| {
            let mut t = vec![tags[i % 5]];
            if i % 3 == 0 {
                t.push(tags[(i / 3) % 5]);
            }
            if i % 7 == 0 {
                t.push("garden");
            }
            json!({"category": Category::ALL[i % 4], "title": format!("p{i}"), "tags": t})
        })
        .collect();
    for chunk in params.chunks(60) {
        api.call("market.post", json!(chunk)).await;
    }
    for query in [
        "",
        "category=offer",
        "category=offer&category=info&tags=garden",
        "tags=garden,tools",
        "tags=kids&sort=expiring",
        "q=p1",
    ] {
        let items = walk(&api, &format!("limit=17&{query}")).await;
        let v = api.get_ok(&format!("/api/posts?limit=3&{query}")).await;
        assert_eq!(v["total"].as_u64().unwrap(), items.len() as u64, "{query}");
        let mut cats: BTreeMap<String, u64> = Category::ALL
            .iter()
            .map(|c| (c.as_str().to_owned(), 0))
            .collect();
        let mut tag_counts: BTreeMap<String, u64> = BTreeMap::new();
        for p in &items {
            *cats.get_mut(p["category"].as_str().unwrap()).unwrap() += 1;
            for t in p["tags"].as_array().unwrap() {
                *tag_counts
                    .entry(t.as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        assert_eq!(v["facets"]["category"], json!(cats), "{query}");
        let mut want: Vec<(String, u64)> = tag_counts.into_iter().collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let got: Vec<(String, u64)> = v["facets"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["tag"].as_str().unwrap().to_owned(),
                    t["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{query}");
    }
    api.stop().await;
}

/// The test's own haversine (spherical law of cosines would do too; this
/// one is written independently of the node's).
fn distance_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let r = 6371.0088;
    let (a, b) = (lat1.to_radians(), lat2.to_radians());
    let h = ((b - a) / 2.0).sin().powi(2)
        + a.cos() * b.cos() * ((lng2 - lng1).to_radians() / 2.0).sin().powi(2);
    2.0 * r * h.sqrt().asin()
}

/// `near` with a known set of coordinates returns exactly the posts within
/// the radius (posts without a location left out), each with its
/// `distance_km`, and `sort=nearest` orders them by distance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_returns_exactly_the_posts_within_the_radius() {
    let api = start().await;
    let (lat0, lng0) = (52.52, 13.405);
    // Offsets in km north and east of the centre; the radius is 3 km.
    let offsets: [(f64, f64); 10] = [
        (0.0, 0.0),
        (0.5, 0.0),
        (0.0, -1.2),
        (1.5, 1.5),
        (-2.0, 2.0),
        (2.9, 0.0),
        (0.0, 3.2),
        (-3.5, 0.0),
        (2.5, 2.5),
        (10.0, 10.0),
    ];
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for (i, (north, east)) in offsets.iter().enumerate() {
        let lat = lat0 + north / 111.195;
        let lng = lng0 + east / (111.195 * lat0.to_radians().cos());
        let (lat_u, lng_u) = ((lat * 1e6).round() as i64, (lng * 1e6).round() as i64);
        let r = api
            .call(
                "market.post",
                json!({"category": "offer", "title": format!("at {i}"),
                       "location": {"lat": lat_u, "lng": lng_u, "label": ""}}),
            )
            .await;
        let d = distance_km(lat0, lng0, lat_u as f64 / 1e6, lng_u as f64 / 1e6);
        assert!((d - 3.0).abs() > 0.05, "no point on the boundary: {d}");
        if d <= 3.0 {
            expected.insert(r["post"]["id"].as_str().unwrap().to_owned(), d);
        }
    }
    // Posts without a location are never near anything.
    api.call(
        "market.post",
        json!({"category": "offer", "title": "nowhere"}),
    )
    .await;
    assert_eq!(expected.len(), 6, "{expected:?}");

    let items = walk(&api, "near=52.52,13.405&radius_km=3&limit=4").await;
    let got: BTreeMap<String, f64> = items
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["distance_km"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (id, d) in &got {
        assert!(
            (d - expected[id]).abs() < 0.002,
            "{id}: {d} vs {}",
            expected[id]
        );
    }
    let nearest = walk(&api, "near=52.52,13.405&radius_km=3&sort=nearest&limit=4").await;
    let ds: Vec<f64> = nearest
        .iter()
        .map(|p| p["distance_km"].as_f64().unwrap())
        .collect();
    assert_eq!(ds.len(), 6);
    assert!(ds.windows(2).all(|w| w[0] <= w[1]), "{ds:?}");
    let v = api.get_ok("/api/posts?near=52.52,13.405&radius_km=3").await;
    assert_eq!(v["total"], json!(6));
    api.stop().await;
}

/// Every error of an `/api/` route is in REST form
/// (`{"error": {"code", "message"}}` under its status), the server's own
/// refusals included: a foreign `Host` (421), a missing token under
/// `--lan` (401), a body over the bound (413), searches over the rate
/// (429 with `Retry-After`), an unknown path (404) and a wrong method
/// (405); `/rpc` keeps answering its refusals in JSON-RPC form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_answer_in_rest_form() {
    use common::http::assert_rest_error;
    let f = Fixture::new();
    let one_search = api::limits::Rate {
        burst: 1,
        per_minute: 1,
    };
    let tuning = api::Tuning {
        searches: one_search,
        ..api::Tuning::default()
    };
    let a = common::http::serve(f.admitted_node(&key(1), Level::Member), false, tuning).await;
    let r = send(
        a.addr,
        "GET",
        "/api/posts",
        &[("Host", "evil.example:7878")],
        b"",
    )
    .await;
    assert_rest_error(&r, 421, "bad_request", "evil.example");
    let r = send(
        a.addr,
        "POST",
        "/rpc",
        &[("Host", "evil.example:7878")],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 421);
    assert_eq!(r.json()["error"]["data"]["code"], json!("bad_request"));

    let big = vec![b' '; api::rest::BODY_BYTES_MAX + 1];
    let r = send(a.addr, "POST", "/api/pair", &[], &big).await;
    assert_rest_error(&r, 413, "bad_request", "bytes");

    let r = a.get("/api/posts?q=ladder").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = a.get("/api/posts?q=ladder").await;
    assert_rest_error(&r, 429, "overloaded", "searches");
    assert_eq!(r.header("retry-after"), Some("60"));
    // A listing without `q` is not a search.
    a.get_ok("/api/posts").await;

    a.get_err("/api/nope", 404, "not_found", "no route GET /api/nope")
        .await;
    let r = send(a.addr, "DELETE", "/api/posts", &[], b"").await;
    assert_rest_error(&r, 405, "bad_request", "GET");
    // Outside /api/ an unknown path stays a bare 404.
    assert_eq!(a.get("/nope").await.status, 404);
    a.stop().await;

    let lan = common::http::serve(
        f.admitted_node(&key(1), Level::Member),
        true,
        Default::default(),
    )
    .await;
    let r = lan.get("/api/posts").await;
    assert_rest_error(&r, 401, "unauthorized", "token");
    let read = json!({"jsonrpc": "2.0", "id": 1, "method": "market.list"});
    let r = lan.rpc(&read, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["data"]["code"], json!("unauthorized"));
    let auth = common::http::bearer(&lan.token());
    let r = send(
        lan.addr,
        "GET",
        "/api/posts",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    lan.stop().await;
}
