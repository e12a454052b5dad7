//! The HTTP harness the API tests share (http_api.rs, http_rest.rs,
//! web_page.rs): a node's driver and HTTP API on an ephemeral loopback
//! port, and hand-written HTTP/1.1 requests over a TCP stream, so every
//! header the server sees is the test's own.

use std::net::SocketAddr;
use std::path::PathBuf;

use hearth_node::api::{self, ApiConfig, ApiServer, Tuning};
use hearth_node::core::Node;
use hearth_node::net::driver::{self, Handle, NetConfig, NetEvent};
use hearth_node::store::EventStore;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
/// `Host` is the server's address unless `headers` names one.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head += &format!("Host: {addr}\r\n");
    }
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    // A refused oversized body may be answered before it is all sent.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut body = Vec::new();
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[end + 2..end + 2 + size]);
            rest = rest[end + 4 + size..].to_vec();
        }
        rest = body;
    }
    Resp {
        status,
        headers,
        body: rest,
    }
}

/// `Authorization` value of a bearer token.
pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A node running its driver and HTTP API, with its token.
pub struct Api {
    pub addr: SocketAddr,
    pub token_file: PathBuf,
    pub handle: Handle,
    pub server: Option<ApiServer>,
    pub events: tokio::sync::broadcast::Receiver<NetEvent>,
    pub _dir: tempfile::TempDir,
}

pub fn net_config() -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..NetConfig::default()
    }
}

/// Runs `node`'s driver on loopback and serves its API on an ephemeral
/// loopback port (never 7878), `--lan` when `lan`, with `tuning`.
pub async fn serve<S: EventStore + 'static>(node: Node<S>, lan: bool, tuning: Tuning) -> Api {
    let running = driver::spawn(node, net_config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = api::token::path(dir.path());
    let server = api::serve_with(
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            lan,
            token_file: token_file.clone(),
        },
        tuning,
        running.handle.clone(),
    )
    .await
    .unwrap();
    Api {
        addr: server.addr,
        token_file,
        handle: running.handle,
        server: Some(server),
        events: running.events,
        _dir: dir,
    }
}

impl Api {
    /// The current token (the file's: `hearth token rotate` changes it).
    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file).unwrap()
    }

    /// The running server.
    pub fn server(&self) -> &ApiServer {
        self.server.as_ref().unwrap()
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(self.addr, "GET", path, &[], b"").await
    }

    /// `GET path`, expecting 200 and JSON.
    pub async fn get_ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        r.json()
    }

    /// `GET path`, expecting an error of `status` and `code` whose message
    /// contains `says`.
    pub async fn get_err(&self, path: &str, status: u16, code: &str, says: &str) {
        let r = self.get(path).await;
        assert_rest_error(&r, status, code, says);
    }

    /// `POST /rpc` with `body`, with the bearer `token` if given.
    pub async fn rpc(&self, body: &Value, token: Option<&str>) -> Resp {
        let auth = token.map(bearer);
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        send(
            self.addr,
            "POST",
            "/rpc",
            &headers,
            body.to_string().as_bytes(),
        )
        .await
    }

    /// Calls `method` with the token (a batch when `params` is an array of
    /// params objects), expects 200 and no error, and returns the results.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let batch = params.is_array();
        let calls: Vec<Value> = match params {
            Value::Array(ps) => ps
                .into_iter()
                .enumerate()
                .map(|(i, p)| json!({"jsonrpc": "2.0", "id": i, "method": method, "params": p}))
                .collect(),
            p => vec![json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": p})],
        };
        let body = if batch {
            json!(calls)
        } else {
            calls[0].clone()
        };
        let r = self.rpc(&body, Some(&self.token())).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let answers = match r.json() {
            Value::Array(a) => a,
            one => vec![one],
        };
        let results: Vec<Value> = answers
            .into_iter()
            .map(|a| {
                assert!(a.get("error").is_none(), "{method}: {a}");
                a["result"].clone()
            })
            .collect();
        if batch {
            Value::Array(results)
        } else {
            results[0].clone()
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.handle.shutdown().await;
    }
}

/// `r` is a REST error (docs/api.md): `status`, JSON, and
/// `{"error": {"code": code, "message": ..says..}}`.
pub fn assert_rest_error(r: &Resp, status: u16, code: &str, says: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
}
