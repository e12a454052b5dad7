//! The web page over real HTTP on loopback (issue 12): the embedded files
//! with their headers, and `--lan` device pairing (pair, use, revoke).
//! The browser end-to-end tests are in tests/e2e (run by scripts/test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::{key, Fixture};
use hearth_node::api::{self, web, ApiConfig, ApiServer};
use hearth_node::net::driver::{self, Handle, NetConfig};
use hearth_proto::Level;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request (`Connection: close`); the answers here are never chunked.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

struct Api {
    server: ApiServer,
    handle: Handle,
    owner: String,
    _dir: tempfile::TempDir,
}

async fn start(lan: bool) -> Api {
    let f = Fixture::new();
    let node = f.admitted_node(&key(1), Level::Member);
    let running = driver::spawn(
        node,
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            ..NetConfig::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = api::token::path(dir.path());
    let server = api::serve(
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            lan,
            token_file: token_file.clone(),
        },
        running.handle.clone(),
    )
    .await
    .unwrap();
    Api {
        owner: server.token.clone(),
        server,
        handle: running.handle,
        _dir: dir,
    }
}

impl Api {
    async fn stop(self) {
        self.server.shutdown().await;
        self.handle.shutdown().await;
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `/` is the page as HTML, each file with its own content type, the CSP
/// that forbids inline script, no-cache with an ETag, and 304 for a
/// matching `If-None-Match`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_types_csp_and_etags() {
    let api = start(false).await;
    let addr = api.server.addr;
    let page = send(addr, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&page.body).contains("<main"));
    assert_eq!(page.header("content-security-policy"), Some(web::CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let js = send(addr, "GET", "/app.js", &[], "").await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let css = send(addr, "GET", "/app.css", &[], "").await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let manifest = send(addr, "GET", "/manifest.webmanifest", &[], "").await;
    assert_eq!(
        manifest.header("content-type"),
        Some("application/manifest+json")
    );
    assert_eq!(manifest.json()["start_url"], json!("/"));
    let etag = page.header("etag").unwrap().to_owned();
    let again = send(addr, "GET", "/", &[("If-None-Match", &etag)], "").await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(send(addr, "GET", "/nope.js", &[], "").await.status, 404);
    // Pairing exists only under --lan.
    let pair = send(addr, "POST", "/api/pair", &[], r#"{"code":"00"}"#).await;
    assert_eq!(pair.status, 404);
    api.stop().await;
}

/// Under `--lan`: the page loads without a token but reads do not; the
/// pairing link's code buys a device token that reads and writes, cannot
/// manage devices, and is refused (401) once the owner revokes it; a wrong
/// code, a bad name and revoking an unknown device are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_pairing_gives_a_device_token_until_revoked() {
    let api = start(true).await;
    let addr = api.server.addr;
    assert_eq!(send(addr, "GET", "/", &[], "").await.status, 200);
    assert_eq!(send(addr, "GET", "/health", &[], "").await.status, 401);
    let url = api
        .server
        .pairing_url()
        .expect("a pairing link on 127.0.0.1");
    let code = url.split("#pair=").nth(1).unwrap().to_owned();
    assert!(url.starts_with(&format!("http://{addr}/#pair=")), "{url}");

    let wrong = send(addr, "POST", "/api/pair", &[], r#"{"code":"00"}"#).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], json!("unauthorized"));
    let bad_name = json!({"code": code, "name": "a\u{7}b"}).to_string();
    let r = send(addr, "POST", "/api/pair", &[], &bad_name).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        send(addr, "POST", "/api/pair", &[], "not json")
            .await
            .status,
        400
    );

    let body = json!({"code": code, "name": "Kitchen phone"}).to_string();
    let paired = send(addr, "POST", "/api/pair", &[], &body).await;
    assert_eq!(paired.status, 201);
    let device = paired.json()["token"].as_str().unwrap().to_owned();
    let id = paired.json()["device"]["id"].as_str().unwrap().to_owned();
    assert_ne!(device, api.owner);
    let as_device = bearer(&device);
    let as_owner = bearer(&api.owner);
    let device_h = [("Authorization", as_device.as_str())];
    let owner_h = [("Authorization", as_owner.as_str())];
    assert_eq!(
        send(addr, "GET", "/health", &device_h, "").await.status,
        200
    );
    let post = json!({"jsonrpc": "2.0", "id": 1, "method": "market.post",
        "params": {"category": "offer", "title": "From the phone"}})
    .to_string();
    let json_h = ("Content-Type", "application/json");
    let r = send(addr, "POST", "/rpc", &[device_h[0], json_h], &post).await;
    assert_eq!(r.status, 200);
    assert!(r.json().get("error").is_none(), "{}", r.json());
    assert_eq!(
        send(addr, "GET", "/api/devices", &device_h, "")
            .await
            .status,
        401,
        "a device token cannot manage devices"
    );

    let list = send(addr, "GET", "/api/devices", &owner_h, "").await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["devices"][0]["name"], json!("Kitchen phone"));
    assert!(list["devices"][0].get("hash").is_none(), "{list}");
    assert_eq!(list["pairing"]["url"], json!(url));
    assert!(list["pairing"]["qr"].as_array().unwrap().len() >= 21);

    let path = format!("/api/devices/{id}");
    assert_eq!(send(addr, "DELETE", &path, &device_h, "").await.status, 401);
    assert_eq!(send(addr, "DELETE", &path, &owner_h, "").await.status, 204);
    assert_eq!(send(addr, "DELETE", &path, &owner_h, "").await.status, 404);
    assert_eq!(
        send(addr, "GET", "/health", &device_h, "").await.status,
        401
    );
    let r = send(addr, "POST", "/rpc", &[device_h[0], json_h], &post).await;
    assert_eq!(r.status, 401);
    assert_eq!(send(addr, "GET", "/health", &owner_h, "").await.status, 200);
    api.stop().await;
}
