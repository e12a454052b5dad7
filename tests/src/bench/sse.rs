//! SSE fan-out: one node with its HTTP API, `clients` readers connected to
//! `GET /api/stream` over loopback TCP; for each post made through the
//! node's API, the time from the call to the last reader's `post.added`.
//! The ceiling, same run: the same figure with one reader (the cost of the
//! post, the feed and one HTTP stream), so the ratio is what fan-out adds.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hearth_node::api::{self, ApiConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{emit, figure, percentile, progress, round};
use crate::identity;
use crate::mesh::{test_net_config, Community, TestNode};

/// Longest wait for one post to reach every reader: far above any
/// plausible figure, so only a broken stream trips it.
const GUARD: Duration = Duration::from_secs(30);

/// `(reader, post id)` for every `post.added` a reader saw, with when.
type Seen = (usize, String, Instant);

/// Connects one reader and forwards the ids of the posts it sees.
async fn reader(
    addr: std::net::SocketAddr,
    index: usize,
    tx: mpsc::UnboundedSender<Seen>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    // Wait for the headers: once they are here, the reader is subscribed.
    let mut raw = Vec::new();
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(GUARD, s.read(&mut buf)).await??;
        if n == 0 {
            bail!("reader {index}: closed before the headers");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("reader {index} refused: {head}");
    }
    raw.drain(..split + 4);
    Ok(tokio::spawn(async move {
        let mut text = String::new();
        loop {
            dechunk(&mut raw, &mut text);
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if !block.contains("event: post.added") {
                    continue;
                }
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str::<Value>(d).ok());
                if let Some(id) = data.as_ref().and_then(|d| d["id"].as_str()) {
                    let _ = tx.send((index, id.to_owned(), Instant::now()));
                }
            }
            let mut buf = [0u8; 16384];
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    }))
}

/// Moves complete HTTP/1.1 chunks from `raw` to `text`.
fn dechunk(raw: &mut Vec<u8>, text: &mut String) {
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16)
        else {
            return;
        };
        if raw.len() < end + 2 + size + 2 {
            return;
        }
        text.push_str(&String::from_utf8_lossy(&raw[end + 2..end + 2 + size]));
        raw.drain(..end + 2 + size + 2);
    }
}

/// Post-to-last-reader latencies (ms) of `posts` posts with `clients`
/// readers connected.
async fn run(clients: usize, posts: usize) -> anyhow::Result<Vec<f64>> {
    let who = identity(2);
    let c = Community::new(std::slice::from_ref(&who))?;
    let node = TestNode::start(c.node(&who, 1)?, test_net_config(Vec::new())).await?;
    let dir = tempfile::tempdir()?;
    let server = api::serve(
        ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            lan: false,
            token_file: api::token::path(dir.path()),
        },
        node.handle.clone(),
    )
    .await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        tasks.push(reader(server.addr, i, tx.clone()).await?);
    }
    let mut latencies = Vec::with_capacity(posts);
    for i in 0..posts {
        let started = Instant::now();
        let v = api::dispatch::call(
            "market.post",
            json!({"category": "offer", "title": format!("fan-out {i}"), "tags": ["bench"]}),
            &node.handle,
        )
        .await
        .map_err(|e| anyhow!("post {i}: {e:?}"))?;
        let id = v["post"]["id"].as_str().context("post id")?.to_owned();
        let mut reached = vec![false; clients];
        let mut left = clients;
        let mut last = started;
        while left > 0 {
            let (reader, seen, at) = tokio::time::timeout(GUARD, rx.recv())
                .await
                .map_err(|_| anyhow!("post {i} reached {} of {clients} readers", clients - left))?
                .context("readers gone")?;
            if seen == id && !reached[reader] {
                reached[reader] = true;
                left -= 1;
                last = last.max(at);
            }
        }
        latencies.push(last.duration_since(started).as_secs_f64() * 1000.0);
    }
    server.shutdown().await;
    for t in tasks {
        t.abort();
    }
    node.stop().await?;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// The figure: `clients` readers (100 in the issue), `posts` posts.
pub async fn fan_out(clients: usize, posts: usize) -> anyhow::Result<()> {
    progress(format!("sse: 1 reader, {posts} posts (ceiling)"));
    let one = run(1, posts).await?;
    progress(format!("sse: {clients} readers, {posts} posts"));
    let many = run(clients, posts).await?;
    let (p50, p99) = (percentile(&many, 50.0), percentile(&many, 99.0));
    let (one50, one99) = (percentile(&one, 50.0), percentile(&one, 99.0));
    emit(figure(
        "sse_fanout",
        json!({
            "clients": clients,
            "posts": posts,
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "one_reader_p50_ms": round(one50, 3),
            "one_reader_p99_ms": round(one99, 3),
            "ratio_p50_to_one_reader": round(p50 / one50.max(1e-9), 2),
            "ratio_p99_to_one_reader": round(p99 / one99.max(1e-9), 2),
        }),
    ));
    Ok(())
}
