//! A small client of the running node's HTTP API (`POST /rpc`, see
//! docs/api.md): one JSON-RPC call per connection, over hyper's HTTP/1
//! client (the hyper axum already builds). `hearth mcp` uses it; any
//! command that must reach a node through HTTP rather than the Unix socket
//! can too.
//!
//! The bearer token is read from the data dir's `api.token` on every call,
//! so a `hearth token rotate` takes effect at once; it is sent with every
//! call it can be read for (a node run with `--lan` wants it on reads too)
//! and a write without it is refused here with where the token comes from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header;
use serde_json::{json, Value};

use crate::api::token::{self, TokenError};

/// A call that takes longer than this is reported as a timeout: the longest
/// capability timeout is 10 s, and the node answers `timeout` itself then.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer over this is refused: the node's own request bound (1 MiB)
/// holds any answer of the market calls (at most 500 posts of a few KiB)
/// with room, and an MCP client gets the text whole.
pub const ANSWER_BYTES_MAX: usize = 8 << 20;
/// The bytes of an unexpected (non-JSON) answer quoted in the error.
const QUOTED_BYTES_MAX: usize = 200;

/// Why a call did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum HttpRpcError {
    #[error(
        "the node is not running (nothing answers on http://{addr}): start it with `hearth run` \
         (it serves the HTTP API unless given --no-http); if it serves elsewhere, set api.listen \
         in config.toml or pass --http ADDR"
    )]
    NotRunning { addr: SocketAddr },
    #[error(
        "{0}; the token is written by the first `hearth run` that serves HTTP on this data dir \
         (or by `hearth token rotate`)"
    )]
    Token(TokenError),
    /// The node answered with a JSON-RPC error: `code` is the wire code
    /// (`error.data.code`), `number` the JSON-RPC number.
    #[error("{code}: {message}")]
    Refused {
        code: String,
        number: i64,
        message: String,
    },
    #[error(
        "the node at http://{addr} did not answer {method} within {} s; it may still carry it out",
        CALL_TIMEOUT.as_secs()
    )]
    Timeout { addr: SocketAddr, method: String },
    #[error(
        "talking to the node at http://{addr} failed: {cause} (did it stop? check `hearth run`)"
    )]
    Transport { addr: SocketAddr, cause: String },
    #[error(
        "unexpected answer from http://{addr} (HTTP {status}): {body}; is that a hearth node?"
    )]
    Unexpected {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
}

/// Calls the node serving its HTTP API on one address.
#[derive(Debug, Clone)]
pub struct HttpRpc {
    addr: SocketAddr,
    token_file: PathBuf,
}

impl HttpRpc {
    /// `token_file` is the data dir's `api.token`.
    pub fn new(addr: SocketAddr, token_file: PathBuf) -> HttpRpc {
        HttpRpc { addr, token_file }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `method` with `params` and returns its `result`. `write`: the
    /// call needs the token (the node refuses it without).
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        write: bool,
    ) -> Result<Value, HttpRpcError> {
        let token = match token::read(&self.token_file) {
            Ok(t) => Some(t),
            Err(e) if write => return Err(HttpRpcError::Token(e)),
            Err(_) => None,
        };
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let exchange = self.exchange(body.to_string(), token);
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| HttpRpcError::Timeout {
                addr: self.addr,
                method: method.to_owned(),
            })??;
        self.answer(status, &bytes)
    }

    /// One request on a fresh connection: the status and the whole body.
    async fn exchange(
        &self,
        body: String,
        token: Option<String>,
    ) -> Result<(u16, Bytes), HttpRpcError> {
        let transport = |cause: String| HttpRpcError::Transport {
            addr: self.addr,
            cause,
        };
        let stream = tokio::net::TcpStream::connect(connect_addr(self.addr))
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    HttpRpcError::NotRunning { addr: self.addr }
                }
                _ => transport(format!("connecting: {e}")),
            })?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| transport(format!("HTTP handshake: {e}")))?;
        // The connection ends when the sender is dropped after the answer.
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri("/rpc")
            // The server checks Host against its listen address (DNS
            // rebinding protection): the configured address is that.
            .header(header::HOST, self.addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONNECTION, "close");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(format!("sending the request: {e}")))?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), ANSWER_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// The `result` of a JSON-RPC answer, or its error.
    fn answer(&self, status: u16, bytes: &[u8]) -> Result<Value, HttpRpcError> {
        let unexpected = || {
            let shown = &bytes[..bytes.len().min(QUOTED_BYTES_MAX)];
            HttpRpcError::Unexpected {
                addr: self.addr,
                status,
                body: String::from_utf8_lossy(shown).into_owned(),
            }
        };
        let mut answer: Value = serde_json::from_slice(bytes).map_err(|_| unexpected())?;
        if let Some(result) = answer.get_mut("result") {
            return Ok(result.take());
        }
        let error = answer.get("error").ok_or_else(unexpected)?;
        Err(HttpRpcError::Refused {
            code: error["data"]["code"]
                .as_str()
                .unwrap_or("internal")
                .to_owned(),
            number: error["code"].as_i64().unwrap_or(0),
            message: error["message"].as_str().unwrap_or("no message").to_owned(),
        })
    }
}

/// Where to connect for a listen address: a node listening on every
/// interface (`0.0.0.0`, `::`, with `--lan`) is reached on loopback.
fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> HttpRpc {
        HttpRpc::new(
            SocketAddr::from(([127, 0, 0, 1], 7878)),
            PathBuf::from("/nonexistent/api.token"),
        )
    }

    /// A JSON-RPC error answer becomes `Refused` with the wire code from
    /// `error.data.code`; a body that is not JSON-RPC is `Unexpected`,
    /// quoting a bounded prefix of it.
    #[test]
    fn answers_are_read_as_results_errors_or_unexpected() {
        let c = client();
        let ok = c.answer(200, br#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#);
        assert_eq!(ok.ok(), Some(json!({"a": 1})));
        let refused = c.answer(
            401,
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"missing token","data":{"code":"unauthorized"}}}"#,
        );
        match refused {
            Err(HttpRpcError::Refused {
                code,
                number,
                message,
            }) => {
                assert_eq!((code.as_str(), number), ("unauthorized", -32001));
                assert_eq!(message, "missing token");
            }
            other => panic!("{other:?}"),
        }
        let long = vec![b'x'; 1000];
        match c.answer(502, &long) {
            Err(e @ HttpRpcError::Unexpected { .. }) => {
                let text = e.to_string();
                assert!(text.contains("HTTP 502"), "{text}");
                assert!(text.len() < 400, "the quote is bounded: {text}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A write without a readable token is refused before any connection,
    /// naming the file and how it comes to exist.
    #[test]
    fn a_write_without_a_token_names_the_file() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = rt
            .block_on(client().call("market.post", json!({}), true))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("/nonexistent/api.token") && err.contains("hearth run"),
            "{err}"
        );
    }

    /// A node listening on every interface is reached on loopback.
    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let a = connect_addr("0.0.0.0:9000".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(a.to_string(), "127.0.0.1:9000");
        let a = connect_addr("[::]:9000".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(a.to_string(), "[::1]:9000");
    }
}
