//! The local HTTP API over real HTTP on loopback, against a running node
//! (the driver on a real libp2p swarm, in this process; and `hearth run`
//! for the flags and the printed URL). Requests are hand-written HTTP/1.1
//! over a TCP stream, so every header the server sees is the test's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::http::{send, serve, Api};
use std::net::SocketAddr;

use common::{key, Fixture};
use hearth_node::api::{self, ApiConfig, Tuning};
use hearth_node::net::driver::NetEvent;
use hearth_proto::Level;
use serde_json::{json, Value};

/// The anchor's node (`who` = key 1) or an admitted member, served on an
/// ephemeral loopback port.
async fn start_as(f: &Fixture, who: u8, lan: bool) -> Api {
    start_with(f, who, lan, Tuning::default()).await
}

/// [`start_as`] with the given limits and health window.
async fn start_with(f: &Fixture, who: u8, lan: bool, tuning: Tuning) -> Api {
    serve(f.admitted_node(&key(who), Level::Member), lan, tuning).await
}

async fn start(lan: bool) -> Api {
    start_as(&Fixture::new(), 1, lan).await
}

fn error_of(v: &Value) -> (i64, String, String) {
    let e = &v["error"];
    (
        e["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error in {v}")),
        e["data"]["code"].as_str().unwrap_or_default().to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Every method the API serves answers over `POST /rpc`: the market
/// capabilities, the membership ones (`member.set` under both names), the
/// node and log calls and `rpc.discover`, with the writes taking effect
/// (the post is listed, found, updated, searched, expired; the member is
/// listed; the exported log imports as duplicates). The list of methods
/// called here is checked against the served names, so a new method
/// without a test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_method_answers() {
    let api = start(false).await;
    let posted = api
        .call(
            "market.post",
            json!({"category": "offer", "title": "Ladder to lend", "tags": ["tools"]}),
        )
        .await;
    let id = posted["post"]["id"].clone();
    assert_eq!(posted["created"], json!(true));
    let listed = api.call("market.list", json!({})).await;
    assert!(listed.to_string().contains("Ladder to lend"), "{listed}");
    let got = api.call("market.get", json!({"id": id})).await;
    assert!(got.to_string().contains("Ladder to lend"), "{got}");
    let updated = api
        .call("market.update", json!({"id": id, "title": "Tall ladder"}))
        .await;
    assert!(updated.to_string().contains("Tall ladder"), "{updated}");
    let found = api.call("market.search", json!({"query": "ladder"})).await;
    assert!(found.to_string().contains("Tall ladder"), "{found}");
    let expired = api.call("market.expire", json!({"id": id})).await;
    assert!(!expired.is_null());
    let listed = api.call("market.list", json!({})).await;
    assert!(!listed.to_string().contains("Tall ladder"), "{listed}");
    let neighbour = serde_json::to_value(key(2).node_id()).unwrap();
    let set = api
        .call(
            "community.member.set",
            json!({"member": neighbour, "level": "member"}),
        )
        .await;
    assert!(!set.is_null());
    let members = api.call("member.list", Value::Null).await;
    assert!(
        members.to_string().contains(neighbour.as_str().unwrap()),
        "{members}"
    );
    let settings = api
        .call("community.settings", json!({"name": "Lindenhof"}))
        .await;
    assert_eq!(settings["changed"], json!(true), "{settings}");
    let profile = api.call("member.profile", json!({"name": "Ana"})).await;
    assert_eq!(profile["name"], json!("Ana"));
    let status = api.call("node.status", json!({})).await;
    assert_eq!(status["community_name"], json!("Lindenhof"));
    assert_eq!(status["display_name"], json!("Ana"));
    // The API name of community.member.set.
    let third = serde_json::to_value(key(3).node_id()).unwrap();
    let set = api
        .call("member.set", json!({"member": third, "level": "trusted"}))
        .await;
    assert_eq!(
        (set["level"].clone(), set["changed"].clone()),
        (json!("trusted"), json!(true))
    );
    let members = api.call("member.list", json!({})).await;
    assert!(
        members.to_string().contains(third.as_str().unwrap()),
        "{members}"
    );
    let peers = api.call("node.peers", json!({})).await;
    assert_eq!(peers, json!({"peers": []}), "no peer is connected");
    // Conversations (issue 14) and saved searches: each answers with a
    // result or a refusal of its own, never "no such method" or "bad
    // params" for well-formed params.
    let me = status["node_id"].clone();
    let post_ref = json!({"author": me, "id": id});
    let token = api.token();
    for (name, params) in [
        (
            "market.reply",
            json!({"post": post_ref, "body": "Still there?"}),
        ),
        (
            "market.claim",
            json!({"post": post_ref, "note": "I'd like it"}),
        ),
        (
            "market.accept_claim",
            json!({"post": id, "claim": post_ref}),
        ),
        ("dm.send", json!({"to": neighbour, "body": "Hello"})),
        ("conversation.list", json!({})),
        ("conversation.get", json!({"with": neighbour})),
        ("conversation.mark_read", json!({"with": neighbour})),
        ("market.withdraw_claim", json!({"post": post_ref})),
        ("subscription.create", json!({"q": "ladder"})),
        ("subscription.list", json!({})),
        ("subscription.deliveries", json!({})),
        ("subscription.delete", json!({"id": "no-such-id"})),
    ] {
        let r = api
            .rpc(
                &json!({"jsonrpc": "2.0", "id": 9, "method": name, "params": params}),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let body = r.json();
        if body.get("result").is_none() {
            let (n, _, message) = error_of(&body);
            assert!(n != -32601 && n != -32602, "{name}: {n} {message}");
        }
    }
    let page = api.call("log.export", json!({})).await;
    let events = page["events"].as_array().unwrap().clone();
    assert!(events.len() >= 5, "genesis, admissions, posts: {page}");
    assert_eq!(page["next"], Value::Null, "one page holds this log");
    let hash = hex::encode(sha2_of(&hex::decode(events[0].as_str().unwrap()).unwrap()));
    let held = api
        .call("log.contains", json!({"hashes": [hash, "00".repeat(32)]}))
        .await;
    assert_eq!(held, json!({"held": [true, false]}));
    let imported = api
        .call("log.import", json!({"events": [events[0].clone()]}))
        .await;
    assert_eq!(imported["outcomes"][0]["outcome"], json!("duplicate"));
    let doc = api.call("rpc.discover", json!({})).await;
    assert_eq!(doc["openrpc"], json!("1.3.2"));
    let mut called = vec![
        "market.post",
        "market.list",
        "market.get",
        "market.update",
        "market.search",
        "market.expire",
        "community.member.set",
        "member.list",
        "community.settings",
        "member.profile",
        "node.status",
        "member.set",
        "node.peers",
        "log.export",
        "log.contains",
        "log.import",
        "rpc.discover",
        "market.reply",
        "market.claim",
        "market.accept_claim",
        "dm.send",
        "conversation.list",
        "conversation.get",
        "conversation.mark_read",
        "market.withdraw_claim",
        "subscription.create",
        "subscription.list",
        "subscription.deliveries",
        "subscription.delete",
    ];
    let mut served = api::dispatch::Method::names();
    called.sort_unstable();
    served.sort_unstable();
    assert_eq!(called, served, "every served method is called above");
    api.stop().await;
}

/// SHA-256: an event's hash is the hash of its encoded bytes.
fn sha2_of(bytes: &[u8]) -> [u8; 32] {
    hearth_proto::hash_bytes(bytes).0
}

/// A batch answers each call by its id, a failing member with its own
/// error (the others still succeed), and notifications not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_a_failing_member() {
    let api = start(false).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "market.list", "params": {}},
        {"jsonrpc": "2.0", "id": "b", "method": "market.get",
         "params": {"id": "01KAAAAAAAAAAAAAAAAAAAAAAA"}},
        {"jsonrpc": "2.0", "method": "node.status"},
        {"jsonrpc": "2.0", "id": 3, "method": "node.status"},
    ]);
    let r = api.rpc(&batch, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answers = r.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(
        answers.len(),
        3,
        "the notification gets no answer: {answers:?}"
    );
    assert_eq!(answers[0]["id"], json!("a"));
    assert!(answers[0].get("result").is_some());
    assert_eq!(answers[1]["id"], json!("b"));
    let (number, code, _) = error_of(&answers[1]);
    assert_eq!(
        (number, code.as_str()),
        (-32002, "not_found"),
        "{}",
        answers[1]
    );
    assert_eq!(answers[2]["id"], json!(3));
    assert!(answers[2]["result"]["node_id"].is_string());
    // Only notifications: nothing to answer.
    let r = api
        .rpc(&json!({"jsonrpc": "2.0", "method": "node.status"}), None)
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    api.stop().await;
}

/// The standard JSON-RPC errors: unknown method -32601 (naming the
/// methods served), bad params -32602, parse error -32700, invalid
/// request -32600 (not 2.0, empty batch, over-long batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_json_rpc_errors() {
    let api = start(false).await;
    let r = api
        .rpc(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "market.sell"}),
            None,
        )
        .await;
    let (n, code, message) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32601, "not_found"));
    assert!(
        message.contains("market.sell") && message.contains("market.list"),
        "{message}"
    );
    let r = api
        .rpc(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "market.search",
                    "params": {"query": "x", "colour": 1}}),
            None,
        )
        .await;
    let (n, code, message) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32602, "bad_request"), "{message}");
    assert!(message.contains("colour"), "{message}");
    let r = api
        .rpc(
            &json!({"jsonrpc": "2.0", "id": 3, "method": "market.list", "params": [1]}),
            None,
        )
        .await;
    assert_eq!(error_of(&r.json()).0, -32602);
    let r = send(api.addr, "POST", "/rpc", &[], b"{\"jsonrpc\": ").await;
    assert_eq!(r.status, 200);
    let (n, code, _) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32700, "bad_request"));
    let r = api
        .rpc(
            &json!({"jsonrpc": "1.0", "id": 4, "method": "node.status"}),
            None,
        )
        .await;
    let v = r.json();
    assert_eq!((error_of(&v).0, v["id"].clone()), (-32600, json!(4)));
    let r = api.rpc(&json!([]), None).await;
    assert_eq!(error_of(&r.json()).0, -32600);
    let long: Vec<Value> = (0..=api::rpc::BATCH_MAX)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "node.status"}))
        .collect();
    let r = api.rpc(&Value::Array(long), None).await;
    let (n, _, message) = error_of(&r.json());
    assert_eq!(n, -32600);
    assert!(
        message.contains(&api::rpc::BATCH_MAX.to_string()),
        "{message}"
    );
    // A handler's own refusal keeps its wire code's number.
    let r = api
        .rpc(
            &json!({"jsonrpc": "2.0", "id": 5, "method": "market.post",
                    "params": {"category": "offer", "title": ""}}),
            Some(&api.token()),
        )
        .await;
    let (n, code, _) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32000, "bad_request"), "{}", r.text());
    api.stop().await;
}

/// Private messages are read only with the token: `conversation.list`,
/// `conversation.get` and `conversation.mark_read` without it (or with a
/// wrong one) are 401 like a write, alone or hidden in a batch of reads;
/// with it they answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_private_messages_needs_the_token() {
    let api = start(false).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "conversation.list"});
    let get = json!({"jsonrpc": "2.0", "id": 2, "method": "conversation.get",
                     "params": {"with": "00".repeat(32)}});
    let mark = json!({"jsonrpc": "2.0", "id": 3, "method": "conversation.mark_read",
                      "params": {"with": "00".repeat(32)}});
    for call in [&list, &get, &mark] {
        for token in [None, Some("0123")] {
            let r = api.rpc(call, token).await;
            assert_eq!(r.status, 401, "{call}: {}", r.text());
            assert_eq!(error_of(&r.json()).1, "unauthorized");
        }
    }
    let batch = json!([{"jsonrpc": "2.0", "id": 0, "method": "market.list"}, list.clone()]);
    assert_eq!(api.rpc(&batch, None).await.status, 401);
    let r = api.rpc(&list, Some(&api.token())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("result").is_some(), "{}", r.text());
    api.stop().await;
}

/// Writes need the token: without it or with a wrong one, 401
/// `unauthorized` naming the token file, and nothing is posted; reads on
/// loopback need none. `token rotate` makes the old token fail at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_current_token() {
    let api = start(false).await;
    let post = json!({"jsonrpc": "2.0", "id": 1, "method": "market.post",
                      "params": {"category": "offer", "title": "Ladder"}});
    for token in [None, Some("0123")] {
        let r = api.rpc(&post, token).await;
        assert_eq!(r.status, 401, "{}", r.text());
        let (n, code, message) = error_of(&r.json());
        assert_eq!((n, code.as_str()), (-32001, "unauthorized"));
        assert!(
            message.contains(&api.token_file.display().to_string()),
            "{message}"
        );
    }
    // A write hidden in a batch of reads is refused the same.
    let r = api
        .rpc(
            &json!([{"jsonrpc": "2.0", "id": 0, "method": "market.list"}, post.clone()]),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let listed = api.call("market.list", json!({})).await;
    assert!(!listed.to_string().contains("Ladder"), "{listed}");
    let old = api.token();
    assert_eq!(api.rpc(&post, Some(&old)).await.status, 200);
    let new = api::token::rotate(&api.token_file).unwrap();
    let r = api.rpc(&post, Some(&old)).await;
    assert_eq!(r.status, 401, "the rotated-out token still works");
    assert_eq!(api.rpc(&post, Some(&new)).await.status, 200);
    // No token file at all: every write refused, saying how to make one.
    std::fs::remove_file(&api.token_file).unwrap();
    let r = api.rpc(&post, Some(&new)).await;
    assert_eq!(r.status, 401);
    assert!(
        error_of(&r.json()).2.contains("hearth token rotate"),
        "{}",
        r.text()
    );
    api.stop().await;
}

/// A body over the bound is refused with 413 before it is parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let api = start(false).await;
    let body = vec![b' '; api::rpc::BODY_BYTES_MAX + 1];
    let r = send(api.addr, "POST", "/rpc", &[], &body).await;
    assert_eq!(r.status, 413);
    let (_, code, message) = error_of(&r.json());
    assert_eq!(code, "bad_request");
    assert!(message.contains("bytes"), "{message}");
    api.stop().await;
}

/// A `Host` other than the server's own (DNS rebinding) is refused with
/// 421, reads included; `localhost:PORT` is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mismatch_is_refused() {
    let api = start(false).await;
    let r = send(
        api.addr,
        "GET",
        "/health",
        &[("Host", "evil.example:7878")],
        b"",
    )
    .await;
    assert_eq!(r.status, 421, "{}", r.text());
    assert!(r.text().contains("evil.example"), "{}", r.text());
    let host = format!("localhost:{}", api.addr.port());
    let r = send(api.addr, "GET", "/health", &[("Host", &host)], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    api.stop().await;
}

/// A write from another origin's page is refused with 403 even with the
/// token; the server's own origin and no origin (a script) are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_mismatch_on_a_write_is_refused() {
    let api = start(false).await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "market.post",
                      "params": {"category": "offer", "title": "Ladder"}})
    .to_string();
    let auth = format!("Bearer {}", api.token());
    let r = send(
        api.addr,
        "POST",
        "/rpc",
        &[("Authorization", &auth), ("Origin", "http://evil.example")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let (_, code, message) = error_of(&r.json());
    assert_eq!(code, "unauthorized");
    assert!(
        message.contains("cross-origin") && message.contains("evil.example"),
        "{message}"
    );
    let listed = api.call("market.list", json!({})).await;
    assert!(
        !listed.to_string().contains("Ladder"),
        "the refused write ran"
    );
    let own = format!("http://{}", api.addr);
    let r = send(
        api.addr,
        "POST",
        "/rpc",
        &[("Authorization", &auth), ("Origin", &own)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A read from another origin is not a write: served.
    let read = json!({"jsonrpc": "2.0", "id": 1, "method": "market.list"}).to_string();
    let r = send(
        api.addr,
        "POST",
        "/rpc",
        &[("Origin", "http://evil.example")],
        read.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    api.stop().await;
}

/// Sums the samples of `name` (all label sets) in Prometheus text, or
/// `None` if the family is absent; every sample line must parse.
fn metric(text: &str, name: &str, label: &str) -> Option<f64> {
    let mut found = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let family = series.split('{').next().unwrap();
        if family == name && series.contains(label) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// `/metrics` is Prometheus text from the one registry (gossipsub's and
/// the node's gauges beside the API's), and the rpc counter moves after a
/// post, as do the log-size gauge and the HTTP counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_after_a_post() {
    let api = start(false).await;
    let scrape = || async {
        let r = send(api.addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        text
    };
    let before = scrape().await;
    let posts = r#"method="market.post",outcome="ok""#;
    assert_eq!(metric(&before, "hearth_rpc_calls_total", posts), None);
    let events_before = metric(&before, "hearth_log_events", "").unwrap();
    assert!(
        before.contains("gossipsub_"),
        "gossipsub's metrics are in the same registry"
    );
    api.call(
        "market.post",
        json!({"category": "offer", "title": "Ladder"}),
    )
    .await;
    let after = scrape().await;
    assert_eq!(metric(&after, "hearth_rpc_calls_total", posts), Some(1.0));
    assert_eq!(
        metric(&after, "hearth_log_events", ""),
        Some(events_before + 1.0)
    );
    assert!(metric(&after, "hearth_lamport_clock", "").unwrap() >= 1.0);
    assert_eq!(metric(&after, "hearth_peers", ""), Some(0.0));
    assert!(
        metric(
            &after,
            "hearth_http_requests_total",
            r#"route="/rpc",status="200""#
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        metric(
            &after,
            "hearth_http_request_duration_seconds_count",
            r#"route="/rpc""#
        )
        .unwrap()
            >= 1.0
    );
    api.stop().await;
}

/// `/health` is `degraded` (200) with no peers once the no-peer window
/// (here 0 s) has passed, `ok` once a peer is connected; every answer
/// echoes an `X-Request-Id`, unique per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_degraded_then_ok_and_request_ids() {
    let f = Fixture::new();
    let no_window = Tuning {
        health_no_peers: std::time::Duration::ZERO,
        ..Tuning::default()
    };
    let mut a = start_with(&f, 1, false, no_window).await;
    let r = send(a.addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], json!("degraded"), "{v}");
    assert!(
        v["reasons"][0].as_str().unwrap().contains("no peers"),
        "{v}"
    );
    let id1 = r.header("x-request-id").unwrap().to_owned();
    let mut b = start_as(&f, 2, false).await;
    let b_addr = loop {
        match b.events.recv().await.unwrap() {
            NetEvent::Listening(addr) => break addr,
            _ => continue,
        }
    };
    a.handle.dial(b_addr).await;
    loop {
        if let NetEvent::PeerConnected(p) = a.events.recv().await.unwrap() {
            if p == b.handle.peer_id {
                break;
            }
        }
    }
    let r = send(a.addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok", "reasons": []}));
    let id2 = r.header("x-request-id").unwrap();
    assert!(!id1.is_empty() && id1 != id2);
    b.stop().await;
    a.stop().await;
}

/// With `--lan` every request needs the token, reads and `/health`
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_refuses_a_read_without_the_token() {
    let api = start(true).await;
    let read = json!({"jsonrpc": "2.0", "id": 1, "method": "market.list"});
    let r = api.rpc(&read, None).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(error_of(&r.json()).1, "unauthorized");
    assert_eq!(send(api.addr, "GET", "/health", &[], b"").await.status, 401);
    assert_eq!(api.rpc(&read, Some(&api.token())).await.status, 200);
    api.stop().await;
}

/// A port in use is a clear error naming the address and the flag to
/// change it; a non-loopback address without `--lan` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_in_use_and_non_loopback_are_refused() {
    let api = start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = |listen: SocketAddr, lan| ApiConfig {
        listen,
        lan,
        token_file: api::token::path(dir.path()),
    };
    let err = api::serve(cfg(api.addr, false), api.handle.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&api.addr.to_string()) && err.contains("in use") && err.contains("--http"),
        "{err}"
    );
    let err = api::serve(cfg("0.0.0.0:0".parse().unwrap(), false), api.handle.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("0.0.0.0") && err.contains("--lan"), "{err}");
    api.stop().await;
}

const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");

/// `hearth run` refuses a non-loopback `--http` without `--lan` before it
/// founds anything, and with a free port prints the URL with the token of
/// the 0600 file, serves `/health` there, and stops cleanly on SIGINT.
#[test]
fn hearth_run_flags_and_printed_url() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = Command::new(HEARTH)
        .arg("--data-dir")
        .arg(&dir)
        .args(["run", "--name", "L", "--no-mdns", "--http", "0.0.0.0:7878"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--lan") && err.contains("0.0.0.0:7878"),
        "{err}"
    );
    assert!(
        !dir.exists(),
        "a refused address must leave no data dir behind"
    );
    let mut child = Command::new(HEARTH)
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "run",
            "--name",
            "L",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--http",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("hearth run ended before printing the URL")
            .unwrap();
        if let Some(url) = line.strip_prefix("HTTP API: ") {
            break url.to_owned();
        }
    };
    let (addr, token) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once("/#token="))
        .unwrap_or_else(|| panic!("{url}"));
    let file = api::token::path(&dir);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let addr: SocketAddr = addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(send(addr, "GET", "/health", &[], b""));
    assert_eq!(r.status, 200, "{}", r.text());
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(rest.iter().any(|l| l == "stopped cleanly"), "{rest:?}");
}

/// `/health` is `failing` (503) with the storage reason while the store
/// refuses writes, a post meanwhile answers `storage_full`, and health
/// recovers by itself once there is room again (no restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_while_the_store_is_full_and_recovers() {
    use common::fillable_store::FillableStore;
    use std::sync::atomic::Ordering;
    let f = Fixture::new();
    let (store, full) = FillableStore::new();
    let node = hearth_node::core::Node::new(
        f.anchor.clone(),
        &f.genesis,
        store,
        hearth_node::core::Config::default(),
        3,
    )
    .unwrap();
    let a = serve(node, false, Tuning::default()).await;
    let post = json!({"jsonrpc": "2.0", "id": 1, "method": "market.post",
        "params": {"category": "offer", "title": "Ladder"}});
    full.store(true, Ordering::SeqCst);
    let r = a.rpc(&post, Some(&a.token())).await;
    let (_, code, _) = error_of(&r.json());
    assert_eq!(code, "storage_full", "{}", r.text());
    let r = send(a.addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], json!("failing"), "{v}");
    assert!(
        v["reasons"].to_string().contains("full"),
        "the reason names the full store: {v}"
    );
    full.store(false, Ordering::SeqCst);
    let r = send(a.addr, "GET", "/health", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.json()["status"], json!("failing"));
    a.call(
        "market.post",
        json!({"category": "offer", "title": "Ladder"}),
    )
    .await;
    a.stop().await;
}

/// Params that do not decode as a method's params type get JSON-RPC's
/// -32602 (bad params, code `bad_request`) for every served method, and
/// nothing runs: the bad `market.post` posts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_params_are_32602_for_every_method() {
    let api = start(false).await;
    let token = api.token();
    for name in api::dispatch::Method::names() {
        // A wrong type for a field every decoder knows, or an unknown one.
        let params = match name {
            "market.list" => json!({"limit": "many"}),
            "log.export" => json!({"after": 5}),
            "log.import" => json!({"events": 5}),
            "log.contains" => json!({"hashes": ["zz"]}),
            _ => json!({"category": "offer", "title": "Ladder", "no_such_param": 1}),
        };
        let r = api
            .rpc(
                &json!({"jsonrpc": "2.0", "id": 1, "method": name, "params": params}),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let (n, code, message) = error_of(&r.json());
        assert_eq!(
            (n, code.as_str()),
            (-32602, "bad_request"),
            "{name}: {message}"
        );
        assert!(message.starts_with("invalid params"), "{name}: {message}");
    }
    let listed = api.call("market.list", json!({})).await;
    assert_eq!(listed["posts"], json!([]), "{listed}");
    api.stop().await;
}

/// A post that does not exist is `not_found` (-32002) for get, update and
/// expire alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_post_is_not_found() {
    let api = start(false).await;
    let id = "01KAAAAAAAAAAAAAAAAAAAAAAA";
    for (method, params) in [
        ("market.get", json!({"id": id})),
        ("market.update", json!({"id": id, "title": "x"})),
        ("market.expire", json!({"id": id})),
    ] {
        let r = api
            .rpc(
                &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
                Some(&api.token()),
            )
            .await;
        let (n, code, message) = error_of(&r.json());
        assert_eq!(
            (n, code.as_str()),
            (-32002, "not_found"),
            "{method}: {message}"
        );
    }
    api.stop().await;
}

/// `member.set` is for anchors only: a member's node is refused with
/// `unauthorized` (-32001) saying so, and signs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_set_needs_an_anchor() {
    let f = Fixture::new();
    let api = start_as(&f, 2, false).await;
    let third = serde_json::to_value(key(3).node_id()).unwrap();
    let r = api
        .rpc(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "member.set",
                    "params": {"member": third, "level": "member"}}),
            Some(&api.token()),
        )
        .await;
    let (n, code, message) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32001, "unauthorized"), "{message}");
    assert!(message.contains("anchor"), "{message}");
    let members = api.call("member.list", json!({})).await;
    assert!(
        !members.to_string().contains(third.as_str().unwrap()),
        "{members}"
    );
    api.stop().await;
}

/// Writes over a client's bucket are 429 `overloaded` (-32004) with
/// `Retry-After` and a message saying when to retry; a batch holding more
/// writes than are left is refused whole; searches have their own bucket
/// and plain reads none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_searches_over_the_rate_are_429() {
    use api::limits::Rate;
    let slow = Rate {
        burst: 2,
        per_minute: 1,
    };
    let tuning = Tuning {
        writes: slow,
        searches: slow,
        ..Tuning::default()
    };
    let api = start_with(&Fixture::new(), 1, false, tuning).await;
    let token = api.token();
    let post = |n: u32| {
        json!({"jsonrpc": "2.0", "id": n, "method": "market.post",
               "params": {"category": "offer", "title": format!("Ladder {n}")}})
    };
    assert_eq!(api.rpc(&post(1), Some(&token)).await.status, 200);
    // Two writes in one batch, with one left: refused whole.
    let r = api
        .rpc(&Value::Array(vec![post(2), post(3)]), Some(&token))
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(api.rpc(&post(4), Some(&token)).await.status, 200);
    let r = api.rpc(&post(5), Some(&token)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("60"));
    let (n, code, message) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32004, "overloaded"));
    assert!(
        message.contains("writes") && message.contains("retry in 60 s"),
        "{message}"
    );
    let listed = api.call("market.list", json!({})).await;
    let titles = listed.to_string();
    assert!(
        titles.contains("Ladder 1") && titles.contains("Ladder 4") && !titles.contains("Ladder 2"),
        "{titles}"
    );
    let search = json!({"jsonrpc": "2.0", "id": 9, "method": "market.search",
                        "params": {"query": "ladder"}});
    assert_eq!(api.rpc(&search, None).await.status, 200);
    assert_eq!(api.rpc(&search, None).await.status, 200);
    let r = api.rpc(&search, None).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(error_of(&r.json()).2.contains("searches"), "{}", r.text());
    for _ in 0..5 {
        let read = json!({"jsonrpc": "2.0", "id": 1, "method": "market.list"});
        assert_eq!(api.rpc(&read, None).await.status, 200);
    }
    api.stop().await;
}

/// A 10,000-deep JSON array is refused with 400 `bad_request` before it
/// is parsed (no stack overflow), and the server answers on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_before_parsing() {
    let api = start(false).await;
    let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = send(api.addr, "POST", "/rpc", &[], body.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let (n, code, message) = error_of(&r.json());
    assert_eq!((n, code.as_str()), (-32600, "bad_request"));
    assert!(message.contains("deep"), "{message}");
    // Deep params inside a call are refused the same.
    let params = format!(
        "{{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"market.list\", \"params\": {{\"x\": {}{}}}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let r = send(api.addr, "POST", "/rpc", &[], params.as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let status = api.call("node.status", json!({})).await;
    assert!(status["node_id"].is_string());
    api.stop().await;
}

/// A batch may hold one `log.export`: a second one in the same batch is
/// an invalid request (-32600) saying to page with the cursor, the first
/// is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_export_is_one_page_per_batch() {
    let api = start(false).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "log.export"},
        {"jsonrpc": "2.0", "id": 2, "method": "log.export"},
    ]);
    let r = api.rpc(&batch, None).await;
    let answers = r.json();
    assert!(answers[0]["result"]["events"].is_array(), "{answers}");
    let (n, _, message) = error_of(&answers[1]);
    assert_eq!(n, -32600);
    assert!(message.contains("cursor"), "{message}");
    api.stop().await;
}

/// Reads a JSON file of the repository.
fn repo_json(path: &str) -> Value {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap()
}

/// The OpenRPC meta-schema shipped in docs/openrpc, as a validator (its
/// JSON Schema meta-schema registered locally: nothing is fetched).
fn openrpc_validator() -> jsonschema::Validator {
    use jsonschema::{Draft, Registry};
    let mut meta = repo_json("docs/openrpc/meta-schema.json");
    meta.as_object_mut().unwrap().remove("$schema");
    let mut tools = repo_json("docs/openrpc/json-schema-tools-meta-schema.json");
    let obj = tools.as_object_mut().unwrap();
    obj.remove("$schema");
    obj.remove("$id");
    let registry = Registry::new()
        .draft(Draft::Draft7)
        .add(
            "https://meta.json-schema.tools",
            Draft::Draft7.create_resource(tools.clone()),
        )
        .unwrap()
        .add(
            "https://meta.json-schema.tools/",
            Draft::Draft7.create_resource(tools),
        )
        .unwrap()
        .prepare()
        .unwrap();
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .with_registry(&registry)
        .build(&meta)
        .unwrap()
}

/// `rpc.discover` over HTTP returns an OpenRPC 1.3 document that validates
/// against the shipped meta-schema, names every method the server answers
/// (each of which answers: none is unknown), and carries each
/// capability's descriptor as `x-` fields. The validator is shown to
/// refuse a broken document, so a pass means something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_discover_validates_against_the_openrpc_meta_schema() {
    let api = start(false).await;
    let doc = api.call("rpc.discover", Value::Null).await;
    let validator = openrpc_validator();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut broken = doc.clone();
    broken["methods"][0].as_object_mut().unwrap().remove("name");
    assert!(!validator.is_valid(&broken), "the validator checks methods");
    let listed: Vec<&str> = doc["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for name in api::dispatch::Method::names() {
        assert!(listed.contains(&name), "{name} is not in the document");
    }
    for name in &listed {
        let r = api
            .rpc(
                &json!({"jsonrpc": "2.0", "id": 1, "method": name, "params": {"?": 1}}),
                Some(&api.token()),
            )
            .await;
        assert_ne!(
            r.json()["error"]["code"],
            json!(api::rpc::METHOD_NOT_FOUND),
            "{name} is listed but unknown"
        );
    }
    for d in hearth_node::core::services::descriptors() {
        let m = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == d.name)
            .unwrap();
        assert_eq!(m["x-timeout-ms"], json!(d.timeout_ms), "{}", d.name);
        assert_eq!(m["x-max-concurrent"], json!(d.max_concurrent));
        assert_eq!(m["x-idempotent"], json!(d.idempotent));
        assert_eq!(m["x-writes"], json!(d.writes));
        assert_eq!(
            m["x-trust"],
            serde_json::to_value(d.trust_required).unwrap()
        );
    }
    api.stop().await;
}

/// `/health` with no peer stays `ok` inside the no-peer window
/// (`api.health_no_peers_s`, here an hour); the hooks add their reasons:
/// degraded search makes it `degraded` (200), a failed replay `failing`
/// (503) with both reasons; cleared, it is `ok` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_window_and_reason_hooks() {
    let hooks = std::sync::Arc::new(api::HealthHooks::default());
    let tuning = Tuning {
        health_no_peers: std::time::Duration::from_secs(3600),
        health: hooks.clone(),
        ..Tuning::default()
    };
    let api = start_with(&Fixture::new(), 1, false, tuning).await;
    let health = || async { send(api.addr, "GET", "/health", &[], b"").await };
    let r = health().await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"status": "ok", "reasons": []})),
        "no peer, but inside the window"
    );
    hooks.set_search_degraded(Some("the embedder is unreachable; keyword search".into()));
    let r = health().await;
    let v = r.json();
    assert_eq!((r.status, v["status"].clone()), (200, json!("degraded")));
    assert!(
        v["reasons"][0].as_str().unwrap().contains("embedder"),
        "{v}"
    );
    hooks.set_replay_failed(Some("snapshot 12 is corrupt".into()));
    let r = health().await;
    let v = r.json();
    assert_eq!((r.status, v["status"].clone()), (503, json!("failing")));
    assert_eq!(v["reasons"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["reasons"][0].as_str().unwrap().contains("replay"), "{v}");
    hooks.set_replay_failed(None);
    hooks.set_search_degraded(None);
    assert_eq!(health().await.json()["status"], json!("ok"));
    api.stop().await;
}
