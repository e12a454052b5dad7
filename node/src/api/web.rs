//! The web page (issue 12): the static files of `node/web/`, embedded in the
//! binary at compile time and served at `/`, the page's `--lan` pairing
//! routes (`POST /api/pair`, `GET /api/devices`, `DELETE /api/devices/{id}`),
//! the invite the node tab shows (`GET /api/invite`) and the QR matrices
//! it draws (`GET /api/qr`).
//!
//! The files are a fixed table of `include_bytes!` (no crate, no build
//! step): a missing file fails the build, and the binary alone serves the
//! page offline. Every file answers with its content type, an `ETag` (its
//! SHA-256) and `Cache-Control: no-cache` (the names carry no hash, so a
//! browser revalidates, and gets 304 until the binary changes), plus a CSP
//! that allows only this origin's scripts: no inline script, no `eval`, so
//! text that slipped into the DOM as HTML still could not run.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::{token, AppState};
use crate::core::ErrorCode;

/// The page's Content-Security-Policy: everything from this origin only,
/// scripts never inline; `data:` images for the icons drawn in CSS.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; manifest-src 'self'; worker-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// One embedded file.
#[derive(Debug)]
struct Asset {
    /// The URL path it is served at.
    route: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($route:literal, $file:literal, $type:expr) => {
        Asset {
            route: $route,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `node/web/`. A new file is added here (and the e2e test
/// loads the page, so a forgotten one shows up as a failed request).
static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.css", "app.css", "text/css; charset=utf-8"),
    asset!("/app.js", "app.js", JS),
    asset!("/api.js", "api.js", JS),
    asset!("/dom.js", "dom.js", JS),
    asset!("/i18n.js", "i18n.js", JS),
    asset!("/market.js", "market.js", JS),
    asset!("/conversations.js", "conversations.js", JS),
    asset!("/nodetab.js", "nodetab.js", JS),
    asset!("/sw.js", "sw.js", JS),
    asset!(
        "/manifest.webmanifest",
        "manifest.webmanifest",
        "application/manifest+json"
    ),
    asset!("/icon.svg", "icon.svg", "image/svg+xml"),
    // jsQR 1.4.0 (Apache-2.0, node/web/vendor/README.md): the node tab's
    // QR scanner, loaded only when someone scans.
    asset!("/vendor/jsQR.js", "vendor/jsQR.js", JS),
    asset!(
        "/vendor/jsQR.LICENSE",
        "vendor/jsQR.LICENSE",
        "text/plain; charset=utf-8"
    ),
];

/// Whether a request to `path` is let through without a token under
/// `--lan`: the page's files (they hold no data, and a phone must load the
/// page before it has a token) and the pairing call (the pairing code is
/// its credential). Every other route, reads included, needs a token.
pub fn open_without_token(path: &str) -> bool {
    path == PAIR_ROUTE || ASSETS.iter().any(|a| a.route == path)
}

const PAIR_ROUTE: &str = "/api/pair";

/// The page's routes, merged into the API's router.
pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route(PAIR_ROUTE, post(pair))
        .route("/api/devices", get(devices))
        .route("/api/devices/{id}", delete(revoke))
        .route("/api/invite", get(invite))
        .route("/api/qr", get(qr));
    for asset in ASSETS {
        router = router.route(asset.route, get(move |h: HeaderMap| serve(asset, h)));
    }
    router
}

/// The asset's ETag: computed once per asset and run.
fn etag(asset: &'static Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        use sha2::Digest;
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(sha2::Sha256::digest(a.body))[..32]))
            .collect()
    });
    ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .and_then(|i| tags.get(i))
        .map_or("\"\"", String::as_str)
}

/// Headers every answer of the page carries.
fn page_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn serve(asset: &'static Asset, request: HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    page_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// A REST error: `{"error": {"code", "message"}}` under `status`.
fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code.as_str(), "message": message}})),
    )
        .into_response()
}

fn token_error(e: &token::TokenError) -> Response {
    match e {
        token::TokenError::TooManyDevices | token::TokenError::DeviceName(_) => error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &e.to_string(),
        ),
        _ => {
            warn!(error = %e, "device list");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                &e.to_string(),
            )
        }
    }
}

/// 401 unless the request carries the owner's token (`api.token`): only
/// the owner pairs and revokes devices, so a lost phone cannot lock the
/// household out or hand out more tokens.
fn refused_unless_owner(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (given, token::read(&state.token_file)) {
        (Some(given), Ok(owner)) if token::matches(given, &owner) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            &format!(
                "devices are managed with the owner's token ({}), not a device token: \
                 open the link `hearth run` printed on the node itself",
                state.token_file.display()
            ),
        )),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Deserialize)]
struct PairRequest {
    code: String,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/pair {"code", "name?"}`: a phone that opened the pairing
/// link trades the link's code for a device token of its own.
async fn pair(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let Some(code) = &state.pairing else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "pairing is only open while the node runs with --lan",
        );
    };
    let request: PairRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &format!("expected {{\"code\": \"...\", \"name\": \"...\"}}: {e}"),
            )
        }
    };
    if !token::matches(request.code.trim(), code) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "this pairing code is not the one this node printed (codes change on every \
             `hearth run --lan`): scan the QR code it shows now",
        );
    }
    let name = request.name.unwrap_or_else(|| "Phone".to_owned());
    let _one_writer = state
        .devices_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match token::pair(&token::devices_path(&state.token_file), &name, now_ms()) {
        Ok((device, token)) => {
            info!(device = %device.id, "paired a device");
            (
                StatusCode::CREATED,
                axum::Json(json!({"token": token, "device": shown(&device)})),
            )
                .into_response()
        }
        Err(e) => token_error(&e),
    }
}

/// A device as the page shows it: never its hash.
fn shown(d: &token::Device) -> serde_json::Value {
    json!({"id": d.id, "name": d.name, "created_ms": d.created_ms})
}

/// `GET /api/devices` (owner only): the paired devices, and the pairing
/// link with its QR code (as rows of `1`/`0` modules the page draws) while
/// the node runs with `--lan`.
async fn devices(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refused_unless_owner(&state, &headers) {
        return refused;
    }
    let list = match token::devices(&token::devices_path(&state.token_file)) {
        Ok(l) => l,
        Err(e) => return token_error(&e),
    };
    let pairing = state.pairing_url().map(|url| {
        let qr = qr_rows(&url);
        json!({"url": url, "qr": qr})
    });
    axum::Json(json!({
        "devices": list.iter().map(shown).collect::<Vec<_>>(),
        "pairing": pairing,
    }))
    .into_response()
}

/// `DELETE /api/devices/{id}` (owner only): the device's token stops
/// working with the next request.
async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused_unless_owner(&state, &headers) {
        return refused;
    }
    let _one_writer = state
        .devices_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match token::revoke(&token::devices_path(&state.token_file), &id) {
        Ok(true) => {
            info!(device = %id, "revoked a device");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            &format!("no paired device {id:?}; the node tab lists them"),
        ),
        Err(e) => token_error(&e),
    }
}

/// `GET /api/invite` (a token: the owner's or a paired device's): the
/// invite `hearth community invite` prints, built by the same code
/// ([`crate::invite`]) from this node's genesis and its dialable listen
/// addresses, with its QR code. Any joined node may hand one out, as the
/// CLI does: an invite only lets a device find the community; an anchor
/// still admits it.
async fn invite(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(refused) = state.check_token(&headers) {
        return refused.into_response();
    }
    let Some(status) = state.handle.status().await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the node is shutting down",
        );
    };
    let dir = crate::cli::data_dir::DataDir::new(
        state
            .token_file
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    );
    let genesis = match dir.load_genesis() {
        Ok(g) => g,
        Err(e) => {
            warn!(error = %e, "invite: genesis unreadable");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                &format!("{e:#}"),
            );
        }
    };
    let addrs = match crate::net::identity::peer_id(&status.node_id) {
        Some(peer) => crate::invite::dial_addresses(&status.listen, &peer),
        None => Vec::new(),
    };
    let text = match crate::invite::encode(&genesis.community, &genesis.event, addrs.clone()) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                &e.to_string(),
            )
        }
    };
    let qr = qr_rows(&text);
    axum::Json(json!({
        "invite": text,
        "community": genesis.community.to_hex(),
        "name": genesis.name,
        "addrs": addrs.iter().take(crate::invite::INVITE_ADDRS_MAX).collect::<Vec<_>>(),
        "qr": if qr.is_empty() { None } else { Some(qr) },
    }))
    .into_response()
}

/// Longest text `GET /api/qr` encodes: an invite with every address fits;
/// more would not scan from a screen anyway.
pub const QR_TEXT_MAX: usize = 2048;

/// `GET /api/qr?text=...`: the QR code of `text` as rows of `1`/`0` (the
/// page draws it as SVG), e.g. this node's id for an anchor to scan. A
/// pure function of the text; reads no data of the node.
async fn qr(uri: axum::http::Uri) -> Response {
    let text = uri.query().unwrap_or("").split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "text").then_some(v)
    });
    let Some(raw) = text else {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "give the text to encode: /api/qr?text=...",
        );
    };
    let decoded = match percent_decode(raw) {
        Some(t) => t,
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "text is not valid percent-encoded UTF-8",
            )
        }
    };
    if decoded.is_empty() || decoded.len() > QR_TEXT_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &format!(
                "text must be 1 to {QR_TEXT_MAX} bytes, got {}",
                decoded.len()
            ),
        );
    }
    axum::Json(json!({ "qr": qr_rows(&decoded) })).into_response()
}

/// `%XX` escapes and `+` (space) decoded; `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The QR code of `text` as rows of `1` (dark) and `0`, without the quiet
/// zone (the page adds its own margin).
pub fn qr_rows(text: &str) -> Vec<String> {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        return Vec::new();
    };
    let width = code.width();
    code.to_colors()
        .chunks(width)
        .map(|row| {
            row.iter()
                .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
                .collect()
        })
        .collect()
}

/// The QR code of `text` drawn with half blocks for a terminal (light
/// modules on the terminal's dark background, with a quiet zone), or
/// nothing when the text is too long for a QR code.
pub fn qr_text(text: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every embedded file has a route of its own and a content type, and
    /// only the page's files and the pairing call are open under `--lan`.
    #[test]
    fn assets_have_routes_and_types() {
        let mut routes: Vec<&str> = ASSETS.iter().map(|a| a.route).collect();
        routes.sort_unstable();
        routes.dedup();
        assert_eq!(routes.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.body.is_empty()));
        assert!(open_without_token("/") && open_without_token("/app.js"));
        assert!(open_without_token("/api/pair"));
        for closed in ["/rpc", "/api/posts", "/api/devices", "/metrics", "/health"] {
            assert!(!open_without_token(closed), "{closed}");
        }
    }

    /// The page loads no inline script: index.html has no `<script>` body
    /// and no `on...=` handler attribute, so the CSP can forbid them.
    #[test]
    fn index_has_no_inline_script() {
        let index = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        for tag in index.split("<script").skip(1) {
            let open_end = tag.find('>').unwrap_or(0);
            assert!(tag[..open_end].contains("src="), "inline script: {tag}");
            assert!(tag[open_end + 1..].trim_start().starts_with("</script>"));
        }
        assert!(!index.contains(" onclick=") && !index.contains(" onload="));
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe-inline"));
    }

    /// Percent escapes and `+` decode; a broken escape or non-UTF-8 bytes
    /// are refused.
    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%C3%A4").as_deref(), Some("ä"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    /// The QR matrix is square and encodes something; the terminal form
    /// is several lines of text.
    #[test]
    fn qr_code_renders() {
        let rows = qr_rows("http://192.0.2.1:7878/#pair=00ff");
        assert!(rows.len() >= 21);
        assert!(rows.iter().all(|r| r.len() == rows.len()));
        assert!(qr_text("http://192.0.2.1:7878/#pair=00ff").lines().count() > 10);
    }
}
