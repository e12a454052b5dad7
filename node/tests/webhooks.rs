//! Saved searches and webhooks (issue 11, item 7) against a running node
//! with its HTTP API: a matching post is delivered to a loopback receiver,
//! signed, and retried with the same delivery id; the stream gets a
//! `match` event; subscriptions survive a restart; bad input is refused.
//! Calls go through the one request path (`api::dispatch::call`), which
//! the HTTP API and the Unix socket share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{key, Fixture};
use hearth_node::api::{self, dispatch, ApiConfig, ApiServer};
use hearth_node::core::ErrorCode;
use hearth_node::net::changes::Change;
use hearth_node::net::driver::{self, Handle, NetConfig};
use hearth_proto::Level;
use hmac::{Mac, SimpleHmac};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Longest wait for any one thing (the retry comes after about 1-1.5 s).
const PATIENCE: Duration = Duration::from_secs(60);

/// What the receiver got: headers (lowercase names) and body.
#[derive(Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP receiver answering the given statuses in turn (the
/// last one from then on); reports each request it read.
async fn receiver(statuses: Vec<u16>) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut raw = Vec::new();
            let split = loop {
                if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p;
                }
                let mut buf = [0u8; 4096];
                let got = s.read(&mut buf).await.unwrap();
                assert!(got > 0, "the node closed before its headers");
                raw.extend_from_slice(&buf[..got]);
            };
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let headers: Vec<(String, String)> = head
                .split("\r\n")
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = raw[split + 4..].to_vec();
            while body.len() < len {
                let mut buf = [0u8; 4096];
                let got = s.read(&mut buf).await.unwrap();
                assert!(got > 0, "the node closed before its body");
                body.extend_from_slice(&buf[..got]);
            }
            let status = statuses[n.min(statuses.len() - 1)];
            n += 1;
            let answer =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(answer.as_bytes()).await;
            let _ = tx.send(Received { headers, body });
        }
    });
    (addr, rx)
}

struct Api {
    handle: Handle,
    server: Option<ApiServer>,
}

impl Api {
    async fn call(&self, method: &str, params: Value) -> Value {
        dispatch::call(method, params, &self.handle)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.handle.shutdown().await;
    }
}

/// The anchor's node with its HTTP API, its data (token, saved searches)
/// in `dir`.
async fn start(f: &Fixture, dir: &Path) -> Api {
    let node = f.admitted_node(&key(1), Level::Anchor);
    let running = driver::spawn(
        node,
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            ..NetConfig::default()
        },
    )
    .unwrap();
    let server = api::serve(
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            lan: false,
            token_file: api::token::path(dir),
        },
        running.handle.clone(),
    )
    .await
    .unwrap();
    Api {
        handle: running.handle,
        server: Some(server),
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A receiver answering 500 then 200 gets the matching post twice, with
/// the same `X-Hearth-Delivery` and a valid `X-Hearth-Signature` each
/// time; a post that does not match is not delivered; the stream shows a
/// `match` event; the delivery log shows two attempts, then delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_with_the_same_delivery_id_and_a_valid_signature() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let api = start(&f, dir.path()).await;
    let (addr, mut got) = receiver(vec![500, 200]).await;
    let created = api
        .call(
            "subscription.create",
            json!({"category": "offer", "tags": ["tools"], "webhook": format!("http://{addr}/hook")}),
        )
        .await;
    let sub = &created["subscription"];
    let (id, secret) = (sub["id"].as_str().unwrap(), sub["secret"].as_str().unwrap());
    assert_eq!(secret.len(), 64, "{created}");
    let mut feed = api.handle.subscribe_changes();
    let mut finished = api
        .handle
        .subscriptions
        .get()
        .unwrap()
        .deliveries_finished();
    api.call(
        "market.post",
        json!({"category": "request", "title": "Need a drill", "tags": ["tools"]}),
    )
    .await;
    let posted = api
        .call(
            "market.post",
            json!({"category": "offer", "title": "Drill to lend", "tags": ["tools"]}),
        )
        .await;
    let post_id = posted["post"]["id"].as_str().unwrap();
    let first = tokio::time::timeout(PATIENCE, got.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(PATIENCE, got.recv())
        .await
        .unwrap()
        .unwrap();
    for r in [&first, &second] {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body["id"],
            json!(post_id),
            "the request was delivered: {body}"
        );
        assert_eq!(
            r.header("x-hearth-signature").unwrap(),
            format!("sha256={}", hmac_hex(secret, &r.body))
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let delivery = first.header("x-hearth-delivery").unwrap();
    assert!(!delivery.is_empty());
    assert_eq!(second.header("x-hearth-delivery"), Some(delivery));
    // The stream's `match`: after the post's own change on the feed.
    let matched = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Change::Match { subscription, post } = &feed.recv().await.unwrap().change {
                return (subscription.clone(), post.id.to_string());
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(matched, (id.to_owned(), post_id.to_owned()));
    tokio::time::timeout(PATIENCE, finished.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    let log = api
        .call("subscription.deliveries", json!({"subscription": id}))
        .await;
    let d = &log["deliveries"];
    assert_eq!(d.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(d[0]["id"], json!(delivery));
    assert_eq!(d[0]["state"], json!("delivered"));
    assert_eq!(d[0]["attempts"][0]["status"], json!(500));
    assert_eq!(d[0]["attempts"][1]["status"], json!(200));
    let listed = api.call("subscription.list", json!({})).await;
    assert_eq!(listed["subscriptions"][0]["matches"], json!(1), "{listed}");
    assert!(
        listed["subscriptions"][0].get("secret").is_none(),
        "{listed}"
    );
    api.stop().await;
}

/// Saved searches are kept in the data dir (0600): a node started again
/// on it lists the same ones; one deleted stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_a_restart() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let api = start(&f, dir.path()).await;
    let keep = api
        .call(
            "subscription.create",
            json!({"name": "garden", "tags": ["garden"], "q": "Seeds",
                   "near": {"lat": 48.1, "lng": 11.5, "radius_km": 2.5},
                   "webhook": "https://example.org/hook"}),
        )
        .await;
    let gone = api
        .call(
            "subscription.create",
            json!({"category": ["info", "emergency"]}),
        )
        .await;
    api.call(
        "subscription.delete",
        json!({"id": gone["subscription"]["id"]}),
    )
    .await;
    let before = api.call("subscription.list", json!({})).await;
    api.stop().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("subscriptions.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let api = start(&f, dir.path()).await;
    let after = api.call("subscription.list", json!({})).await;
    assert_eq!(after, before);
    let subs = after["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{after}");
    assert_eq!(subs[0]["id"], keep["subscription"]["id"]);
    assert_eq!(subs[0]["filter"]["q"], json!("seeds"));
    assert_eq!(subs[0]["webhook"], json!("https://example.org/hook"));
    api.stop().await;
}

/// A webhook URL that is not http(s) with a host, an unknown category or
/// field, and deleting an unknown id are refused with a message that
/// says what to do, and nothing is saved; without the HTTP API the calls
/// answer `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let api = start(&f, dir.path()).await;
    for (params, code, says) in [
        (
            json!({"webhook": "ftp://example.org/x"}),
            ErrorCode::BadRequest,
            "uses ftp",
        ),
        (
            json!({"webhook": "javascript:alert(1)"}),
            ErrorCode::BadRequest,
            "uses javascript",
        ),
        (
            json!({"webhook": "http://exa mple.org/"}),
            ErrorCode::BadRequest,
            "is not a URL",
        ),
        (
            json!({"webhook": "http:///x"}),
            ErrorCode::BadRequest,
            "has no host",
        ),
        (
            json!({"webhook": "/hook"}),
            ErrorCode::BadRequest,
            "has no scheme",
        ),
        (
            json!({"category": "bikes"}),
            ErrorCode::BadRequest,
            "not one",
        ),
        (
            json!({"colour": "red"}),
            ErrorCode::BadRequest,
            "unknown field",
        ),
        (
            json!({"near": {"lat": 91.0, "lng": 0.0, "radius_km": 1.0}}),
            ErrorCode::BadRequest,
            "near must be",
        ),
    ] {
        let e = dispatch::call("subscription.create", params.clone(), &api.handle)
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{params}: {e:?}");
        assert!(e.message().contains(says), "{params}: {}", e.message());
    }
    let e = dispatch::call("subscription.delete", json!({"id": "nope"}), &api.handle)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
    assert!(e.message().contains("subscription.list"), "{}", e.message());
    assert_eq!(
        api.call("subscription.list", json!({})).await,
        json!({"subscriptions": []})
    );
    assert!(!dir.path().join("subscriptions.json").exists());
    // A node whose HTTP API is off has no saved searches.
    let bare = driver::spawn(
        f.admitted_node(&key(2), Level::Member),
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            ..NetConfig::default()
        },
    )
    .unwrap();
    let e = dispatch::call("subscription.list", json!({}), &bare.handle)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(e.message().contains("--no-http"), "{}", e.message());
    bare.handle.shutdown().await;
    api.stop().await;
}
