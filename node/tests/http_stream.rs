//! `GET /api/stream` over real HTTP on loopback, against running nodes on
//! real libp2p swarms: posts made on another node of the mesh, resuming
//! with `Last-Event-ID`, the filters, the bound on readers, expiry, and
//! shutdown. The SSE client is hand-written (HTTP/1.1, chunked), so every
//! byte the server sends is the test's to check. Nothing sleeps to wait:
//! each step awaits an event (a stream event, a node's own notice).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{key, Fixture};
use hearth_node::api::{self, dispatch, stream::SSE_CLIENTS_MAX, ApiConfig, ApiServer};
use hearth_node::core::{Caller, Node};
use hearth_node::net::changes::Change;
use hearth_node::net::driver::{self, Handle, NetConfig, NetEvent};
use hearth_node::store::MemoryStore;
use hearth_proto::Level;
use libp2p::PeerId;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for any one thing the test expects: far above what a
/// loaded machine needs, so only a real failure trips it.
const PATIENCE: Duration = Duration::from_secs(60);

/// One SSE event as the client read it.
#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

/// A connected reader of `/api/stream`.
struct SseClient {
    stream: TcpStream,
    /// Bytes read but not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body text not yet parsed into events.
    text: String,
}

/// The answer to a stream request: a reader, or a refusal.
enum Opened {
    Stream(SseClient),
    Refused { status: u16, body: Value },
}

impl Opened {
    fn stream(self) -> SseClient {
        match self {
            Opened::Stream(s) => s,
            Opened::Refused { status, body } => panic!("refused {status}: {body}"),
        }
    }
}

async fn open(addr: SocketAddr, path: &str, last_id: Option<&str>) -> Opened {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n"
    );
    if let Some(id) = last_id {
        head += &format!("Last-Event-ID: {id}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("no answer headers")
            .unwrap();
        assert!(n > 0, "closed before the headers");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut client = SseClient {
        stream: s,
        raw: rest,
        text: String::new(),
    };
    if status != 200 {
        let mut rest = std::mem::take(&mut client.raw);
        let _ = tokio::time::timeout(PATIENCE, client.stream.read_to_end(&mut rest)).await;
        let body = if head.to_lowercase().contains("transfer-encoding: chunked") {
            let mut c = SseClient {
                raw: rest,
                ..client
            };
            c.dechunk();
            c.text.into_bytes()
        } else {
            rest
        };
        return Opened::Refused {
            status,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
    }
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    Opened::Stream(client)
}

impl SseClient {
    /// Moves every complete chunk of `raw` into `text`.
    fn dechunk(&mut self) {
        loop {
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
            if self.raw.len() < end + 2 + size + 2 {
                return;
            }
            let chunk = self.raw[end + 2..end + 2 + size].to_vec();
            self.text.push_str(&String::from_utf8(chunk).unwrap());
            self.raw.drain(..end + 2 + size + 2);
            if size == 0 {
                return;
            }
        }
    }

    /// The next event (comments skipped); `None` when the server ended
    /// the stream.
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            self.dechunk();
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let mut buf = [0u8; 8192];
            let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut buf))
                .await
                .expect("no event in time")
                .unwrap();
            if n == 0 {
                return None;
            }
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The next post event (`post.*` or `match`), skipping the others.
    async fn next_post_event(&mut self) -> SseEvent {
        loop {
            let e = self.next_event().await.expect("stream ended");
            if e.event.starts_with("post.") {
                return e;
            }
        }
    }
}

/// A node running its driver and HTTP API.
struct Api {
    addr: SocketAddr,
    handle: Handle,
    server: Option<ApiServer>,
    events: tokio::sync::broadcast::Receiver<NetEvent>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn call(&self, method: &str, params: Value) -> Value {
        dispatch::call(method, params, &self.handle)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    /// Posts an offer (or `category`) titled `title`; returns its id.
    async fn post(&self, category: &str, title: &str, tags: &[&str]) -> String {
        let v = self
            .call(
                "market.post",
                json!({"category": category, "title": title, "tags": tags}),
            )
            .await;
        v["post"]["id"].as_str().unwrap().to_owned()
    }

    async fn listening(&mut self) -> libp2p::Multiaddr {
        loop {
            if let NetEvent::Listening(addr) = self.events.recv().await.unwrap() {
                return addr;
            }
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.handle.shutdown().await;
    }
}

fn net_config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        // No periodic sync in the middle of a test's exact sequence:
        // the sync on connecting still runs.
        sync_interval: Duration::from_secs(3600),
        ..NetConfig::default()
    }
}

/// `who`'s node (key 1 is the anchor; others are admitted members), with
/// its HTTP API on an ephemeral loopback port.
async fn start_as(f: &Fixture, who: u8) -> Api {
    start_node(f.admitted_node(&key(who), Level::Member)).await
}

async fn start_node(node: Node<MemoryStore>) -> Api {
    let running = driver::spawn(node, net_config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = api::serve(
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            lan: false,
            token_file: api::token::path(dir.path()),
        },
        running.handle.clone(),
    )
    .await
    .unwrap();
    Api {
        addr: server.addr,
        handle: running.handle,
        server: Some(server),
        events: running.events,
        _dir: dir,
    }
}

/// Waits until `peer` subscribed to our gossip and the sync we started
/// with it on connecting finished: after that the two nodes are quiet
/// until one of them changes something.
async fn settled(events: &mut tokio::sync::broadcast::Receiver<NetEvent>, peer: PeerId) {
    let (mut subscribed, mut synced) = (false, false);
    while !(subscribed && synced) {
        match events.recv().await.unwrap() {
            NetEvent::Subscribed(p) if p == peer => subscribed = true,
            NetEvent::SyncDone { peer: p } if p == peer => synced = true,
            _ => {}
        }
    }
}

/// Two nodes of one community, connected, each subscribed to the other's
/// gossip (so a post on one reaches the other by gossip), their first
/// sync done.
async fn mesh() -> (Api, Api) {
    let f = Fixture::new();
    let mut a = start_as(&f, 1).await;
    let mut b = start_as(&f, 2).await;
    let b_addr = b.listening().await;
    a.handle.dial(b_addr).await;
    let (a_peer, b_peer) = (a.handle.peer_id, b.handle.peer_id);
    tokio::time::timeout(PATIENCE, async {
        settled(&mut a.events, b_peer).await;
        settled(&mut b.events, a_peer).await;
    })
    .await
    .expect("the two nodes never settled");
    (a, b)
}

/// A reader on node B sees, as `post.added`, a post made on node A of the
/// mesh (it reached B by gossip), with A as its author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_one_node_sees_a_post_made_on_another() {
    let (a, b) = mesh().await;
    let mut reader = open(b.addr, "/api/stream", None).await.stream();
    let id = a.post("offer", "Ladder to lend", &["tools"]).await;
    let e = reader.next_post_event().await;
    assert_eq!(e.event, "post.added", "{e:?}");
    assert_eq!(e.data["id"], json!(id));
    assert_eq!(e.data["title"], json!("Ladder to lend"));
    assert_eq!(e.data["author"], json!(key(1).node_id().to_hex()));
    assert!(e.id.is_some_and(|i| !i.is_empty()));
    a.stop().await;
    b.stop().await;
}

/// A reader that disconnects, misses two posts, and reconnects with
/// `Last-Event-ID` gets exactly those two, then live events again (the
/// next one is a post made after it reconnected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_gets_exactly_what_was_missed() {
    let (a, b) = mesh().await;
    let mut reader = open(b.addr, "/api/stream", None).await.stream();
    let first = a.post("offer", "First", &[]).await;
    let seen = reader.next_post_event().await;
    assert_eq!(seen.data["id"], json!(first));
    let last_id = seen.id.unwrap();
    drop(reader);
    // B's own feed says when both posts are in B's view.
    let mut feed = b.handle.subscribe_changes();
    let second = a.post("offer", "Second", &[]).await;
    let third = a.post("request", "Third", &[]).await;
    let mut arrived = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while arrived.len() < 2 {
            if let Change::PostAdded(p) = &feed.recv().await.unwrap().change {
                arrived.push(p.id.to_string());
            }
        }
    })
    .await
    .expect("the two posts never reached node B");
    assert_eq!(arrived, vec![second.clone(), third.clone()]);
    let mut reader = open(b.addr, "/api/stream", Some(&last_id)).await.stream();
    let got_second = reader.next_event().await.unwrap();
    let got_third = reader.next_event().await.unwrap();
    let marker = b.post("info", "Marker", &[]).await;
    let after = reader.next_event().await.unwrap();
    assert_eq!(
        [&got_second, &got_third, &after].map(|e| (
            e.event.clone(),
            e.data["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{e:?}"))
                .to_owned()
        )),
        [
            ("post.added".to_owned(), second),
            ("post.added".to_owned(), third),
            ("post.added".to_owned(), marker),
        ]
    );
    a.stop().await;
    b.stop().await;
}

/// A `Last-Event-ID` the node never gave out this run (another run's, or
/// garbled) gets one `reset` event first, whose id resumes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_last_event_id_gets_a_reset() {
    let f = Fixture::new();
    let a = start_as(&f, 1).await;
    for (id, says) in [
        ("0badc0de-7", "earlier run"),
        ("0badc0de-x", "not one this node gives out"),
        ("garbage", "not one this node gives out"),
    ] {
        let mut reader = open(a.addr, "/api/stream", Some(id)).await.stream();
        let e = reader.next_event().await.unwrap();
        assert_eq!(e.event, "reset", "{e:?}");
        let reason = e.data["reason"].as_str().unwrap();
        assert!(
            reason.contains(says) && reason.contains("reload"),
            "{id}: {reason}"
        );
        // The reset's id is a valid place to resume from: no second reset.
        let mut again = open(a.addr, "/api/stream", e.id.as_deref()).await.stream();
        let posted = a.post("offer", id, &[]).await;
        let next = again.next_event().await.unwrap();
        assert_eq!(
            (next.event.as_str(), &next.data["id"]),
            ("post.added", &json!(posted))
        );
    }
    a.stop().await;
}

/// `category` and `tags` filter post events: a reader of requests does not
/// see an offer, a reader of `garden` does not see a `tools` post; an
/// unknown category or parameter is refused with 400 `bad_request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_and_tags_filter_post_events() {
    let f = Fixture::new();
    let a = start_as(&f, 1).await;
    let mut requests = open(a.addr, "/api/stream?category=request", None)
        .await
        .stream();
    let mut garden = open(a.addr, "/api/stream?tags=garden", None).await.stream();
    a.post("offer", "Drill", &["tools"]).await;
    let wanted = a.post("request", "Seeds", &["garden"]).await;
    let e = requests.next_post_event().await;
    assert_eq!(e.data["id"], json!(wanted), "the offer got through: {e:?}");
    let e = garden.next_post_event().await;
    assert_eq!(
        e.data["id"],
        json!(wanted),
        "the tools post got through: {e:?}"
    );
    for (path, says) in [
        ("/api/stream?category=bikes", "not a category"),
        ("/api/stream?colour=red", "unknown query parameter"),
    ] {
        match open(a.addr, path, None).await {
            Opened::Refused { status, body } => {
                assert_eq!(status, 400);
                assert_eq!(body["error"]["code"], json!("bad_request"));
                assert!(
                    body["error"]["message"].as_str().unwrap().contains(says),
                    "{body}"
                );
            }
            Opened::Stream(_) => panic!("{path} was served"),
        }
    }
    a.stop().await;
}

/// Past `SSE_CLIENTS_MAX` readers the next is refused with 503
/// `overloaded` and a message saying why; the gauge counts the readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_past_the_limit_are_refused() {
    let f = Fixture::new();
    let a = start_as(&f, 1).await;
    let mut readers = Vec::new();
    for _ in 0..SSE_CLIENTS_MAX {
        readers.push(open(a.addr, "/api/stream", None).await.stream());
    }
    match open(a.addr, "/api/stream", None).await {
        Opened::Refused { status, body } => {
            assert_eq!(status, 503);
            assert_eq!(body["error"]["code"], json!("overloaded"));
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&SSE_CLIENTS_MAX.to_string()) && message.contains("close one"),
                "{message}"
            );
        }
        Opened::Stream(_) => panic!("reader {} was served", SSE_CLIENTS_MAX + 1),
    }
    let metrics = a.handle.metrics_text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("hearth_sse_clients {SSE_CLIENTS_MAX}")),
        "{metrics}"
    );
    drop(readers);
    a.stop().await;
}

/// A post its author ends shows as `post.expired`, with the reason and
/// who ended it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_shows_as_post_expired() {
    let f = Fixture::new();
    let a = start_as(&f, 1).await;
    let mut reader = open(a.addr, "/api/stream", None).await.stream();
    let id = a.post("offer", "Bike", &["transport"]).await;
    assert_eq!(reader.next_post_event().await.event, "post.added");
    a.call("market.expire", json!({"id": id, "reason": "fulfilled"}))
        .await;
    let e = reader.next_post_event().await;
    assert_eq!(e.event, "post.expired", "{e:?}");
    assert_eq!(e.data["id"], json!(id));
    assert_eq!(e.data["reason"], json!("fulfilled"));
    assert_eq!(e.data["by"], json!(key(1).node_id().to_hex()));
    a.stop().await;
}

/// Posts that reach a node by sync (it was not connected when they were
/// made) show as `post.added`, and the sync is reported with its counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_that_arrive_by_sync_show_and_the_sync_is_reported() {
    let f = Fixture::new();
    // A's post is in its log before its driver starts, so nothing
    // gossips it (it is in no queue to publish): only sync carries it.
    let mut node = f.admitted_node(&key(1), Level::Anchor);
    let params = json!({"category": "info", "title": "Street party"});
    let posted = node
        .call(
            driver::now_ms(),
            Caller::Local,
            "market.post",
            ciborium::Value::serialized(&params).unwrap(),
        )
        .unwrap();
    while node.poll_output().is_some() {}
    let id = posted.deserialized::<Value>().unwrap()["post"]["id"].clone();
    let mut a = start_node(node).await;
    let b = start_as(&f, 2).await;
    let mut reader = open(b.addr, "/api/stream", None).await.stream();
    let a_addr = a.listening().await;
    b.handle.dial(a_addr).await;
    let mut saw_post = false;
    let mut saw_sync = false;
    while !(saw_post && saw_sync) {
        let e = reader.next_event().await.unwrap();
        match e.event.as_str() {
            "post.added" => {
                assert_eq!(e.data["id"], id);
                saw_post = true;
            }
            "sync.finished" if e.data["received"].as_u64() >= Some(1) => saw_sync = true,
            _ => {}
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Shutting the server down ends open streams, so the graceful shutdown
/// does not wait for readers that never leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let f = Fixture::new();
    let mut a = start_as(&f, 1).await;
    let mut reader = open(a.addr, "/api/stream", None).await.stream();
    let server = a.server.take().unwrap();
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("the server waited for the open stream");
    assert!(reader.next_event().await.is_none());
    a.stop().await;
}
