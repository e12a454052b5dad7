//! The local HTTP API served by `hearth run` (DESIGN.md §1): `POST /rpc`
//! (JSON-RPC 2.0 over the same request path as the Unix socket, see
//! [`dispatch`]), `GET /metrics` (Prometheus text of the node's one
//! registry) and `GET /health`. This module owns the server: binding,
//! the guards every request passes (Host, token, Origin, the rate limits
//! of [`limits`]), request ids, the HTTP metrics and the health reasons.
//!
//! Reads on loopback are open; writes (a capability whose descriptor
//! `writes`, or `log.import`) need `Authorization: Bearer <token>` (see
//! [`token`]). With `--lan` every request needs it.

pub mod dispatch;
pub mod limits;
pub mod openrpc;
pub mod rest;
pub mod rpc;
pub mod stream;
pub mod subscriptions;
pub mod token;
pub mod web;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info_span, warn, Instrument};

use crate::core::ErrorCode;
use crate::net::driver::{lock_registry, Handle};
use crate::store::WriteState;

/// Where the API listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Serve on a non-loopback address; every request then needs the token.
    pub lan: bool,
    /// The token file (`api.token` in the data dir).
    pub token_file: PathBuf,
}

/// Seconds without a peer before `/health` says `degraded`: a node
/// between two neighbours' laptops is not unhealthy for a short while.
pub const HEALTH_NO_PEERS_S_DEFAULT: u64 = 300;

/// The server's adjustable limits and hooks (see [`serve_with`]); the
/// defaults are the documented constants.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// How long with no peer before `/health` is `degraded`
    /// (`api.health_no_peers_s`).
    pub health_no_peers: Duration,
    /// Per-client bucket on writes.
    pub writes: limits::Rate,
    /// Per-client bucket on searches.
    pub searches: limits::Rate,
    /// Reasons other parts of the node report to `/health`.
    pub health: Arc<HealthHooks>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            health_no_peers: Duration::from_secs(HEALTH_NO_PEERS_S_DEFAULT),
            writes: limits::Rate {
                burst: limits::WRITE_BURST,
                per_minute: limits::WRITES_PER_MINUTE,
            },
            searches: limits::Rate {
                burst: limits::SEARCH_BURST,
                per_minute: limits::SEARCHES_PER_MINUTE,
            },
            health: Arc::default(),
        }
    }
}

/// What other parts of the node tell `/health`: a failed replay of the
/// log into the views (`failing`: what the node shows may be wrong) and a
/// degraded search (`degraded`: search falls back, e.g. from semantic to
/// keyword). Each holds the sentence to show, or `None` while all is well.
/// Shared by `Arc`: the part that knows keeps a clone and sets it.
#[derive(Debug, Default)]
pub struct HealthHooks {
    replay_failed: Mutex<Option<String>>,
    search_degraded: Mutex<Option<String>>,
}

impl HealthHooks {
    pub fn set_replay_failed(&self, why: Option<String>) {
        *self
            .replay_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    pub fn set_search_degraded(&self, why: Option<String>) {
        *self
            .search_degraded
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    fn replay_failed(&self) -> Option<String> {
        self.replay_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn search_degraded(&self) -> Option<String> {
        self.search_degraded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve the HTTP API on {addr}: it is not a loopback address; \
         pass --lan to serve it to the LAN (every request then needs the token), \
         or --http 127.0.0.1:PORT"
    )]
    NotLoopback { addr: SocketAddr },
    #[error(
        "cannot serve the HTTP API on {addr}: the address is in use (another `hearth run`?); \
         choose another with --http ADDR (or api.listen in config.toml), or pass --no-http"
    )]
    InUse { addr: SocketAddr },
    #[error("cannot serve the HTTP API on {addr}: {source}; choose another with --http ADDR")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Token(#[from] token::TokenError),
}

/// A running server.
#[derive(Debug)]
pub struct ApiServer {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// The token at start (for the printed URL).
    pub token: String,
    state: Arc<AppState>,
    /// Where other parts of the node report to `/health`.
    pub health: Arc<HealthHooks>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// `http://ADDR/#token=...`: the page reads the token from the fragment,
    /// which browsers never send to a server.
    pub fn url(&self) -> String {
        format!("http://{}/#token={}", self.addr, self.token)
    }

    /// Under `--lan`: the link a phone opens to pair (issue 12), once the
    /// server knows an address a phone can reach (see [`PairingHandle::set_lan_host`]).
    pub fn pairing_url(&self) -> Option<String> {
        self.state.pairing_url()
    }

    /// Whether the server runs with `--lan`.
    pub fn lan(&self) -> bool {
        self.state.lan
    }

    /// A handle that sets the LAN host later, from another task.
    pub fn pairing_handle(&self) -> PairingHandle {
        PairingHandle {
            state: self.state.clone(),
            port: self.addr.port(),
        }
    }
    /// Stops accepting, lets requests in flight finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            warn!(error = %e, "the HTTP API task failed");
        }
    }
}

/// Sets the pairing link's host once the LAN address is known (issue 12).
#[derive(Debug, Clone)]
pub struct PairingHandle {
    state: Arc<AppState>,
    port: u16,
}

impl PairingHandle {
    /// The LAN address phones reach this server at, when it listens on an
    /// unspecified address (`0.0.0.0`) and so cannot tell by itself.
    pub fn set_lan_host(&self, ip: std::net::IpAddr) {
        let host = SocketAddr::new(ip, self.port).to_string();
        *self
            .state
            .lan_host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(host);
    }

    pub fn pairing_url(&self) -> Option<String> {
        self.state.pairing_url()
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    handle: Handle,
    token_file: PathBuf,
    lan: bool,
    /// `Host` values accepted (empty: any, on an unspecified `--lan`
    /// address, where the token guards every request instead).
    hosts: Vec<String>,
    /// `Origin` values accepted on writes (empty: the one `Host` names).
    origins: Vec<String>,
    metrics: ApiMetrics,
    // --- the page's device pairing (issue 12, api/web.rs) ---
    /// The pairing code of this run under `--lan` (in memory only: an old
    /// printed QR code stops working when the node restarts).
    pairing: Option<String>,
    /// `host:port` phones reach this server at (for the pairing link).
    lan_host: std::sync::Mutex<Option<String>>,
    /// One pairing or revocation at a time rewrites `api.devices`.
    devices_lock: std::sync::Mutex<()>,
    limiter: limits::Limiter,
    health_no_peers: Duration,
    /// When the API last saw a peer connected (or started): `/health`
    /// counts the no-peer window from here.
    last_peer: Mutex<Instant>,
    health_hooks: Arc<HealthHooks>,
}

impl AppState {
    /// The pairing link, under `--lan` once a reachable host is known.
    fn pairing_url(&self) -> Option<String> {
        let code = self.pairing.as_ref()?;
        let host = self
            .lan_host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        Some(format!("http://{host}/#pair={code}"))
    }

    /// 401 unless the request carries the current token, or a paired
    /// device's token (issue 12).
    fn check_token(&self, headers: &HeaderMap) -> Result<(), rpc::Refusal> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let expected = token::read(&self.token_file);
        match (given, expected) {
            (Some(given), Ok(expected)) if token::matches(given.trim(), &expected) => Ok(()),
            (Some(given), _)
                if token::device_of(&token::devices_path(&self.token_file), given.trim())
                    .is_some() =>
            {
                Ok(())
            }
            (_, Err(e)) => {
                warn!(error = %e, "API token unreadable: refusing the request");
                Err(rpc::Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    &format!("{e}; `hearth token rotate` writes a new one"),
                ))
            }
            (given, Ok(_)) => Err(rpc::Refusal::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &format!(
                    "{} token: send `Authorization: Bearer <token>` with the token in {} \
                     (the URL `hearth run` printed carries it too)",
                    if given.is_some() { "wrong" } else { "missing" },
                    self.token_file.display()
                ),
            )),
        }
    }

    /// 403 when a write comes from a page of another origin. A request
    /// without `Origin` (a script, curl) is not a browser's cross-site call.
    /// On an unspecified `--lan` address (no fixed list) the page's origin
    /// must be the `Host` it called.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), rpc::Refusal> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let own: Vec<String> = if self.origins.is_empty() {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| vec![format!("http://{h}")])
                .unwrap_or_default()
        } else {
            self.origins.clone()
        };
        if own.iter().any(|o| o == origin) {
            return Ok(());
        }
        Err(rpc::Refusal::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized,
            &format!(
                "cross-origin write refused: writes are accepted only from this node's own \
                 page ({}), not from a page of {origin:?}; open the node's own address instead",
                own.join(" or ")
            ),
        ))
    }

    /// 429 when `peer` (see [`limits::Client`]) is over its bucket for
    /// any of `wants` (calls of a kind); all are taken or none. For every
    /// route that writes or searches.
    pub fn rate_limit(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        wants: &[(limits::Kind, u32)],
    ) -> Result<(), rpc::Refusal> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let client = limits::Client::of(peer.ip(), authorization);
        self.limiter
            .take_all(client, wants)
            .map_err(|l| rpc::Refusal::limited(&l))
    }
}

/// Metric labels: a few fixed keys with bounded values.
type Labels = Vec<(String, String)>;

/// The HTTP API's metrics, registered in the node's one registry.
#[derive(Debug, Clone)]
struct ApiMetrics {
    /// By route (a fixed set) and status.
    http_requests: Family<Labels, Counter>,
    /// By route.
    http_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// By method (served names, or `unknown`) and outcome (`ok` or a code).
    rpc_calls: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~4 s: loopback calls to a slow write under load.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl ApiMetrics {
    fn register(handle: &Handle) -> ApiMetrics {
        let m = ApiMetrics {
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
            rpc_calls: Family::default(),
        };
        let mut registry = lock_registry(&handle.metrics);
        let r = registry.sub_registry_with_prefix("hearth");
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            m.http_seconds.clone(),
        );
        r.register(
            "rpc_calls",
            "JSON-RPC calls by method and outcome",
            m.rpc_calls.clone(),
        );
        m
    }

    fn rpc_call(&self, method: &str, outcome: &str) {
        self.rpc_calls
            .get_or_create(&vec![
                ("method".into(), method.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }
}

/// Binds `cfg.listen` and serves until [`ApiServer::shutdown`], with the
/// default [`Tuning`]. Creates the token file on first use.
pub async fn serve(cfg: ApiConfig, handle: Handle) -> Result<ApiServer, ServeError> {
    serve_with(cfg, Tuning::default(), handle).await
}

/// [`serve`] with the given limits and health hooks.
pub async fn serve_with(
    cfg: ApiConfig,
    tuning: Tuning,
    handle: Handle,
) -> Result<ApiServer, ServeError> {
    let addr = cfg.listen;
    if !addr.ip().is_loopback() && !cfg.lan {
        return Err(ServeError::NotLoopback { addr });
    }
    let token = token::load_or_create(&cfg.token_file)?;
    if let Some(data_dir) = cfg.token_file.parent() {
        subscriptions::Subscriptions::start(data_dir, &handle);
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => ServeError::InUse { addr },
            _ => ServeError::Bind { addr, source },
        })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let (hosts, origins) = if bound.ip().is_unspecified() {
        (Vec::new(), Vec::new())
    } else {
        let mut hosts = vec![bound.to_string()];
        if bound.ip().is_loopback() {
            hosts.push(format!("localhost:{}", bound.port()));
        }
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        (hosts, origins)
    };
    let lan_host = (cfg.lan && !bound.ip().is_unspecified()).then(|| bound.to_string());
    let state = Arc::new(AppState {
        metrics: ApiMetrics::register(&handle),
        handle,
        token_file: cfg.token_file,
        lan: cfg.lan,
        hosts,
        origins,
        pairing: cfg.lan.then(token::secret),
        lan_host: std::sync::Mutex::new(lan_host),
        devices_lock: std::sync::Mutex::new(()),
        limiter: limits::Limiter::new(tuning.writes, tuning.searches),
        health_no_peers: tuning.health_no_peers,
        last_peer: Mutex::new(Instant::now()),
        health_hooks: tuning.health.clone(),
    });
    let (stream_routes, stream_closer) = stream::routes(&state.handle);
    let app = Router::new()
        .merge(stream_routes)
        .route("/rpc", post(rpc::rpc))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .merge(rest::routes())
        .merge(web::routes())
        .fallback(not_found)
        // Bodies of REST routes (the page's pairing call); `/rpc` reads
        // its body itself under its own bound.
        .layer(axum::extract::DefaultBodyLimit::max(rest::BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        async move {
            // The peer address is the rate limits' client key.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
                // Open streams never end by themselves.
                stream_closer.close();
            });
            if let Err(e) = served.await {
                warn!(error = %e, "the HTTP API stopped");
            }
        }
        .instrument(info_span!("http_api", %bound)),
    );
    Ok(ApiServer {
        addr: bound,
        token,
        state,
        health: tuning.health,
        stop,
        task,
    })
}

/// The label of a path: one of the routes, or `other` (bounded labels).
fn route_label(path: &str) -> &'static str {
    match path {
        "/rpc" => "/rpc",
        "/metrics" => "/metrics",
        "/health" => "/health",
        "/api/stream" => "/api/stream",
        _ => rest::route_label(path).unwrap_or("other"),
    }
}

/// A whole-request refusal in the form of the route: REST
/// (`{"error": {"code", "message"}}`) under `/api/`, JSON-RPC elsewhere.
fn refuse(rest: bool, refused: rpc::Refusal) -> Response {
    if rest {
        rest::refusal(&refused)
    } else {
        refused.into_response()
    }
}

/// Every request: a request id (span and `X-Request-Id`), the `Host`
/// check, the token under `--lan`, and the HTTP metrics. Under `/api/`
/// every error answer, the router's own included (unknown path, wrong
/// method, body over the bound), is in the REST form of docs/api.md.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = ulid::Ulid::new().to_string();
    let route = route_label(request.uri().path());
    let rest = rest::is_rest(request.uri().path());
    let span = info_span!("http", request_id = %id, method = %request.method(), route);
    let mut response = async {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !state.hosts.is_empty() && !state.hosts.iter().any(|h| h == host) {
            // DNS rebinding: a page of another name that resolves here.
            return refuse(
                rest,
                rpc::Refusal::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    ErrorCode::BadRequest,
                    &format!(
                        "Host {host:?} is not this server ({}); use that address",
                        state.hosts.join(" or ")
                    ),
                ),
            );
        }
        // The page's files and the pairing call are open (api/web.rs).
        if state.lan && !web::open_without_token(request.uri().path()) {
            if let Err(refused) = state.check_token(request.headers()) {
                return refuse(rest, refused);
            }
        }
        if rest {
            let declared = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > rest::BODY_BYTES_MAX as u64) {
                return rest::refusal(&rest::too_large());
            }
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            return rest::in_rest_form(next.run(request).await, &method, &path).await;
        }
        next.run(request).await
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let labels = vec![
        ("route".to_owned(), route.to_owned()),
        ("status".to_owned(), response.status().as_u16().to_string()),
    ];
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_seconds
        .get_or_create(&vec![("route".to_owned(), route.to_owned())])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Any path no route serves: an empty 404 (the guard words it for
/// `/api/` paths).
async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// `GET /metrics`: the registry in Prometheus text format.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.handle.metrics_text().await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is shutting down\n",
        )
            .into_response(),
    }
}

/// How the node is, for `GET /health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Failing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub reasons: Vec<String>,
}

/// `GET /health`: `failing` (503) when the store refuses writes, the
/// node does not answer or the replay failed; `degraded` (200) when no
/// peer has been connected for `api.health_no_peers_s` or longer, or
/// search is degraded; else `ok`. Every reason that holds is listed.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let mut failing = Vec::new();
    let mut degraded = Vec::new();
    match state.handle.status().await {
        None => failing.push("the node is not answering (shutting down?)".to_owned()),
        Some(s) => {
            if s.storage != WriteState::Ok {
                failing.push(format!(
                    "the store is not writable ({}){}",
                    serde_json::to_value(s.storage)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    s.storage_note.map(|n| format!(": {n}")).unwrap_or_default()
                ));
            }
            let now = Instant::now();
            let mut last_peer = state
                .last_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !s.peers.is_empty() {
                *last_peer = now;
            } else {
                let alone = now.saturating_duration_since(*last_peer);
                if alone >= state.health_no_peers {
                    degraded.push(format!(
                        "no peers connected for {} s (api.health_no_peers_s is {}): \
                         posts reach nobody until one is",
                        alone.as_secs(),
                        state.health_no_peers.as_secs()
                    ));
                }
            }
        }
    }
    if let Some(why) = state.health_hooks.replay_failed() {
        failing.push(format!("replaying the log into the views failed: {why}"));
    }
    if let Some(why) = state.health_hooks.search_degraded() {
        degraded.push(format!("search is degraded: {why}"));
    }
    let health = if !failing.is_empty() {
        failing.extend(degraded);
        Health {
            status: HealthStatus::Failing,
            reasons: failing,
        }
    } else if !degraded.is_empty() {
        Health {
            status: HealthStatus::Degraded,
            reasons: degraded,
        }
    } else {
        Health {
            status: HealthStatus::Ok,
            reasons: Vec::new(),
        }
    };
    let code = if health.status == HealthStatus::Failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(health)).into_response()
}
