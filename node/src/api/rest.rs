//! The REST reads the web page uses (docs/api.md): `GET /api/posts` (paged
//! and faceted), `GET /api/posts/{author}/{id}`, `GET /api/posts/{id}`,
//! `GET /api/members` and `GET /api/peers`.
//!
//! This module owns turning a query string into the params of a call, and
//! a call's answer or error into a REST answer. Every route is one call on
//! the shared request path ([`dispatch::call`]): `GET /api/posts` is
//! `market.list` with the same params, so REST and RPC share one listing.
//! Errors are `{"error": {"code", "message"}}` under the HTTP status of
//! the wire code, the server's own refusals included (Host, token, body
//! size, rate, unknown path: see [`in_rest_form`] and [`refusal`]).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hearth_proto::{Category, EventId, NodeId};
use serde_json::{json, Map, Value};

use super::{dispatch, limits, AppState};
use crate::core::bus::BusError;
use crate::core::services::{market, membership};
use crate::core::ErrorCode;

/// Query parameters of `GET /api/posts`; any other is refused, so a typo
/// is not silently ignored.
const POSTS_PARAMS: [&str; 12] = [
    "limit",
    "cursor",
    "sort",
    "category",
    "tags",
    "q",
    "author",
    "since_lamport",
    "near",
    "radius_km",
    "tag",
    "past_ttl",
];
/// A REST request body over this is refused with 413: the one REST write
/// (`POST /api/pair`) sends a few dozen bytes.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// An error answer the router made itself (a rejection's plain text) is
/// read up to this many bytes to be reworded: they are a sentence long.
const ROUTER_TEXT_MAX: usize = 4 * 1024;
/// Values one query parameter may repeat: far more than any real filter
/// (10 tags per post, 4 categories), and a bound on the work one URL asks.
const PARAM_VALUES_MAX: usize = 32;

/// The REST routes, merged into the server's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/posts", get(posts))
        .route("/api/posts/{id}", get(post_by_id))
        .route("/api/posts/{author}/{id}", get(post_by_name))
        .route("/api/members", get(members))
        .route("/api/peers", get(peers))
}

/// The metrics label of a REST path (a fixed set), if it is one.
pub fn route_label(path: &str) -> Option<&'static str> {
    match path {
        "/api/posts" => Some("/api/posts"),
        "/api/members" => Some("/api/members"),
        "/api/peers" => Some("/api/peers"),
        p if p.starts_with("/api/posts/") => Some("/api/posts/{id}"),
        _ => None,
    }
}

/// The HTTP status of a wire code (docs/api.md).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Partition | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
    }
}

/// A REST error answer.
pub fn error(e: &BusError) -> Response {
    let body = json!({ "error": { "code": e.code.as_str(), "message": e.message } });
    let status = status_of(e.code);
    if e.code == ErrorCode::Overloaded {
        return (status, [(header::RETRY_AFTER, "1")], axum::Json(body)).into_response();
    }
    (status, axum::Json(body)).into_response()
}

/// Whether `path` is a REST route's (its errors answer in REST form).
pub fn is_rest(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// The wire code of an HTTP error status the router or a guard answered.
fn code_of(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorCode::Unauthorized,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::Overloaded,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        StatusCode::INSUFFICIENT_STORAGE => ErrorCode::StorageFull,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// A REST error answer of any status: `{"error": {"code", "message"}}`.
fn error_with(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = json!({ "error": { "code": code.as_str(), "message": message } });
    (status, axum::Json(body)).into_response()
}

/// A guard's whole-request refusal (421 Host, 401 token, 413, 429) in REST
/// form, with its `Retry-After`.
pub fn refusal(r: &super::rpc::Refusal) -> Response {
    let mut response = error_with(r.status, r.code, &r.message);
    if let Some(v) = r
        .retry_after_s
        .and_then(|s| header::HeaderValue::from_str(&s.to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// 413 for a REST body over [`BODY_BYTES_MAX`].
pub fn too_large() -> super::rpc::Refusal {
    super::rpc::Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BadRequest,
        &format!(
            "the request body is over {BODY_BYTES_MAX} bytes, the most an /api route takes; \
             send a smaller one"
        ),
    )
}

/// An answer of a REST route, with any error the router made itself (an
/// unknown path's empty 404, a wrong method's 405, an extractor's plain
/// text) reworded in REST form; JSON answers pass as they are.
pub async fn in_rest_form(response: Response, method: &Method, path: &str) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, ROUTER_TEXT_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::NOT_FOUND => format!(
            "no route {method} {path}; the REST routes are GET /api/posts, \
             /api/posts/{{id}}, /api/posts/{{author}}/{{id}}, /api/members, /api/peers and \
             /api/stream (docs/api.md)"
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            match parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
            {
                Some(allowed) => format!("{path} does not answer {method}; use {allowed}"),
                None => format!(
                    "{path} does not answer {method}; the REST reads answer GET \
                     (docs/api.md gives each route's method)"
                ),
            }
        }
        StatusCode::PAYLOAD_TOO_LARGE => too_large().message,
        _ if text.is_empty() => format!("{method} {path} failed ({status})"),
        _ => format!("{method} {path}: {text}"),
    };
    let mut answer = error_with(status, code_of(status), &message);
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    answer
}

/// One call on the shared path, answered as REST.
async fn call(state: &AppState, name: &str, params: Value) -> Result<Value, Response> {
    dispatch::call(name, params, &state.handle)
        .await
        .map_err(|e| error(&e.into_bus()))
}

/// `GET /api/posts`: `market.list` with the query string's params; the
/// answer's `posts` are named `items`. With `q` it is a search, rate
/// limited per client like `market.search` (429 `overloaded`).
async fn posts(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let params = match list_params(uri.query().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    if params.get("q").is_some() {
        if let Err(refused) = state.rate_limit(peer, &headers, &[(limits::Kind::Search, 1)]) {
            return refusal(&refused);
        }
    }
    match list(&state, params).await {
        Ok(Value::Object(mut answer)) => {
            let items = answer.remove("posts").unwrap_or(Value::Array(Vec::new()));
            answer.insert("items".into(), items);
            axum::Json(Value::Object(answer)).into_response()
        }
        Ok(other) => error(&BusError::internal(format!(
            "market.list answered {other}, not an object"
        ))),
        Err(refused) => refused,
    }
}

/// The listing of `GET /api/posts` (with `q`: the market's search,
/// answered inside `market.list`).
async fn list(state: &AppState, params: Value) -> Result<Value, Response> {
    call(state, market::LIST, params).await
}

/// `GET /api/posts/{author}/{id}`: one post, whatever its status.
async fn post_by_name(
    State(state): State<Arc<AppState>>,
    Path((author, id)): Path<(String, String)>,
) -> Response {
    let author = match NodeId::from_str(&author) {
        Ok(a) => a,
        Err(e) => {
            return error(&BusError::bad_request(format!(
                "{e}: the path is /api/posts/AUTHOR/ID with the author's node id"
            )))
        }
    };
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(&e),
    };
    answer(call(&state, market::GET, json!({ "id": id, "author": author })).await)
}

/// `GET /api/posts/{id}`: the post with that id; when several authors
/// used it, `bad_request` naming how many (this node's own post wins, as
/// in `market.get`).
async fn post_by_id(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return error(&e),
    };
    answer(call(&state, market::GET, json!({ "id": id })).await)
}

/// `GET /api/members`: `member.list` (community, settings, members with
/// level and name).
async fn members(State(state): State<Arc<AppState>>) -> Response {
    answer(call(&state, membership::MEMBER_LIST, json!({})).await)
}

/// `GET /api/peers`: the connected peers of `node.status`.
async fn peers(State(state): State<Arc<AppState>>) -> Response {
    match call(&state, dispatch::NODE_STATUS, json!({})).await {
        Ok(status) => {
            let peers = status.get("peers").cloned().unwrap_or(json!([]));
            axum::Json(json!({ "peers": peers })).into_response()
        }
        Err(refused) => refused,
    }
}

fn answer(r: Result<Value, Response>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(refused) => refused,
    }
}

fn parse_id(s: &str) -> Result<EventId, BusError> {
    EventId::from_str(s).map_err(|e| {
        BusError::bad_request(format!(
            "{s:?} is not a post id ({e}); ids are 26-character ULIDs as `hearth --json` prints them"
        ))
    })
}

/// Splits a query string into decoded `(key, value)` pairs.
fn pairs(query: &str) -> Result<Vec<(String, String)>, BusError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> Result<String, BusError> {
    let bad = || {
        BusError::bad_request(format!(
            "the query string has a broken percent escape or non-UTF-8 text in {s:?}"
        ))
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The `market.list` params of a `GET /api/posts` query string.
pub fn list_params(query: &str) -> Result<Value, BusError> {
    let mut p = Map::new();
    let mut categories: Vec<Value> = Vec::new();
    let mut tags: Vec<Value> = Vec::new();
    let mut near: Option<(f64, f64)> = None;
    let mut radius: Option<f64> = None;
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in pairs(query)? {
        if !POSTS_PARAMS.contains(&k.as_str()) {
            return Err(BusError::bad_request(format!(
                "unknown query parameter {k:?}; /api/posts takes {}",
                POSTS_PARAMS.join(", ")
            )));
        }
        let repeatable = matches!(k.as_str(), "category" | "tags" | "tag");
        if !repeatable && seen.contains(&k) {
            return Err(BusError::bad_request(format!(
                "query parameter {k:?} is given twice; give it once"
            )));
        }
        seen.push(k.clone());
        match k.as_str() {
            "limit" => {
                let n: u64 = v.trim().parse().map_err(|_| {
                    BusError::bad_request(format!(
                        "limit must be a whole number from 1 to {}, got {v:?}",
                        crate::core::views::market::LIST_LIMIT_MAX
                    ))
                })?;
                p.insert("limit".into(), json!(n));
            }
            "since_lamport" => {
                let n: u64 = v.trim().parse().map_err(|_| {
                    BusError::bad_request(format!(
                        "since_lamport must be a whole number, got {v:?}"
                    ))
                })?;
                p.insert("since_lamport".into(), json!(n));
            }
            "past_ttl" => {
                if !["exclude", "include", "only"].contains(&v.as_str()) {
                    return Err(BusError::bad_request(format!(
                        "past_ttl must be exclude, include or only, got {v:?}"
                    )));
                }
                p.insert("past_ttl".into(), json!(v));
            }
            "sort" => {
                if !["newest", "oldest", "expiring", "nearest"].contains(&v.as_str()) {
                    return Err(BusError::bad_request(format!(
                        "sort must be newest, oldest, expiring or nearest (with near), got {v:?}"
                    )));
                }
                p.insert("sort".into(), json!(v));
            }
            "category" => {
                for c in v.split(',').filter(|c| !c.trim().is_empty()) {
                    let known = Category::ALL.iter().find(|k| k.as_str() == c.trim());
                    let Some(c) = known else {
                        return Err(BusError::bad_request(format!(
                            "category must be offer, request, info or emergency, got {c:?}"
                        )));
                    };
                    categories.push(json!(c.as_str()));
                }
            }
            "tags" | "tag" => tags.extend(
                v.split(',')
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| json!(t.trim())),
            ),
            "author" => {
                let a = NodeId::from_str(v.trim())
                    .map_err(|e| BusError::bad_request(format!("author: {e}")))?;
                p.insert("author".into(), json!(a));
            }
            "near" => {
                let parsed = v.split_once(',').and_then(|(lat, lng)| {
                    Some((lat.trim().parse().ok()?, lng.trim().parse().ok()?))
                });
                let Some(point) = parsed else {
                    return Err(BusError::bad_request(format!(
                        "near must be LAT,LNG in decimal degrees (e.g. near=52.52,13.405), got {v:?}"
                    )));
                };
                near = Some(point);
            }
            "radius_km" => {
                let r: f64 = v.trim().parse().map_err(|_| {
                    BusError::bad_request(format!("radius_km must be a number, got {v:?}"))
                })?;
                radius = Some(r);
            }
            // "cursor", "q": text, checked by the listing.
            _ => {
                p.insert(k, json!(v));
            }
        }
    }
    if categories.len() > PARAM_VALUES_MAX || tags.len() > PARAM_VALUES_MAX {
        return Err(BusError::bad_request(format!(
            "at most {PARAM_VALUES_MAX} categories and {PARAM_VALUES_MAX} tags per query"
        )));
    }
    match (near, radius) {
        (Some((lat, lng)), Some(radius_km)) => {
            p.insert(
                "near".into(),
                json!({ "lat": lat, "lng": lng, "radius_km": radius_km }),
            );
        }
        (Some(_), None) => {
            return Err(BusError::bad_request(
                "near needs radius_km (kilometres), e.g. near=52.52,13.405&radius_km=2",
            ))
        }
        (None, Some(_)) => {
            return Err(BusError::bad_request(
                "radius_km needs near=LAT,LNG (decimal degrees)",
            ))
        }
        (None, None) => {}
    }
    if !categories.is_empty() {
        p.insert("category".into(), Value::Array(categories));
    }
    if !tags.is_empty() {
        p.insert("tags".into(), Value::Array(tags));
    }
    Ok(Value::Object(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeated and comma-separated categories and tags gather into lists,
    /// percent escapes decode, and near with radius_km becomes one circle.
    #[test]
    fn query_strings_become_list_params() {
        let p = list_params(
            "category=offer&category=info,request&tags=garden%20tools,kids&tag=a+b&near=52.5,13.4&radius_km=2&limit=7&q=soup",
        )
        .unwrap();
        assert_eq!(p["category"], json!(["offer", "info", "request"]));
        assert_eq!(p["tags"], json!(["garden tools", "kids", "a b"]));
        assert_eq!(
            p["near"],
            json!({"lat": 52.5, "lng": 13.4, "radius_km": 2.0})
        );
        assert_eq!(p["limit"], json!(7));
        assert_eq!(p["q"], json!("soup"));
    }

    /// Every malformed query is `bad_request` with a message naming the
    /// parameter.
    #[test]
    fn malformed_queries_are_refused_by_name() {
        for (q, says) in [
            ("limit=ten", "limit"),
            ("limit=1&limit=2", "twice"),
            ("sort=random", "sort"),
            ("category=gift", "category"),
            ("near=52.5", "near"),
            ("near=52.5,13.4", "radius_km"),
            ("radius_km=3", "near"),
            ("radius_km=far&near=1,2", "radius_km"),
            ("author=xyz", "author"),
            ("since_lamport=-1", "since_lamport"),
            ("past_ttl=yes", "past_ttl"),
            ("colour=red", "unknown query parameter"),
            ("q=%zz", "percent"),
        ] {
            let e = list_params(q).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{q}");
            assert!(e.message.contains(says), "{q}: {}", e.message);
        }
    }
}
