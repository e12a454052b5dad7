//! `POST /rpc`: JSON-RPC 2.0 (single calls and batches) over the shared
//! request path ([`super::dispatch::call`]).
//!
//! Wire error codes (DESIGN.md §6) become JSON-RPC errors with one number
//! each in the server-error range ([`error_number`]) and the code's name in
//! `error.data.code`; the standard numbers are kept for what JSON-RPC
//! itself defines: parse error, invalid request, unknown method, and bad
//! params (params that do not decode as the method's params type, told by
//! [`CallError`]'s kind, before the handler runs).
//!
//! Before a body is parsed it is bounded in size (413) and in nesting
//! ([`limits::JSON_DEPTH_MAX`], 400); writes and searches are rate limited
//! per client (429 `overloaded` with `Retry-After`, see [`limits`]).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::{info_span, Instrument};

use super::dispatch::{self, CallError, Method};
use super::limits::{self, Kind};
use super::AppState;
use crate::core::ErrorCode;

/// A request body over this is refused with 413: a post is at most ~16 KiB
/// and a batch of [`BATCH_MAX`] of them fits with room.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Calls in one batch: each runs in turn through the driver, so a longer
/// batch would hold the connection (and the driver's queue) too long.
pub const BATCH_MAX: usize = 64;
/// `log.export` calls in one batch: a batch's answer is built whole in
/// memory, so export pages (up to ~512 KiB of JSON each) are fetched one
/// per request, walking the cursor, never 64 at once.
pub const EXPORTS_PER_BATCH: usize = 1;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

/// The JSON-RPC error number of each wire code (documented in
/// docs/decisions.md and the README).
pub fn error_number(code: ErrorCode) -> i64 {
    match code {
        ErrorCode::BadRequest => -32000,
        ErrorCode::Unauthorized => -32001,
        ErrorCode::NotFound => -32002,
        ErrorCode::Partition => -32003,
        ErrorCode::Overloaded => -32004,
        ErrorCode::Timeout => -32005,
        ErrorCode::Unavailable => -32006,
        ErrorCode::Internal => -32007,
        ErrorCode::StorageFull => -32008,
    }
}

/// A JSON-RPC error answer.
pub fn error_object(id: Value, number: i64, code: ErrorCode, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": number, "message": message, "data": { "code": code.as_str() } },
    })
}

/// A failed call as a JSON-RPC error answer: the standard numbers for an
/// unknown method and bad params, the wire code's number otherwise.
pub fn call_error(id: Value, e: &CallError) -> Value {
    let number = match e {
        CallError::UnknownMethod(_) => METHOD_NOT_FOUND,
        CallError::InvalidParams(_) => INVALID_PARAMS,
        CallError::Failed(e) => error_number(e.code),
    };
    error_object(id, number, e.code(), &e.message())
}

/// A whole-request refusal (400, 401, 403, 413, 421, 429): answered as a
/// JSON-RPC error with id null under that HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for `Retry-After` (429).
    pub retry_after_s: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: ErrorCode, message: &str) -> Refusal {
        Refusal {
            status,
            code,
            message: message.to_owned(),
            retry_after_s: None,
        }
    }

    /// 429 `overloaded` with `Retry-After`.
    pub fn limited(limited: &limits::Limited) -> Refusal {
        Refusal {
            retry_after_s: Some(limited.retry_after_s),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Overloaded,
                &limited.message(),
            )
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = error_object(
            Value::Null,
            error_number(self.code),
            self.code,
            &self.message,
        );
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// A refusal as a response.
pub fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    Refusal::new(status, code, message).into_response()
}

/// One well-formed call of a request.
#[derive(Debug)]
struct Call {
    /// `None`: a notification, served but not answered.
    id: Option<Value>,
    name: String,
    method: Option<Method>,
    params: Value,
}

/// Reads one element of a request: a call, or the error answer it gets.
fn parse_call(v: Value) -> Result<Call, Value> {
    let invalid = |id: Value, why: &str| {
        error_object(
            id,
            INVALID_REQUEST,
            ErrorCode::BadRequest,
            &format!("invalid request: {why}"),
        )
    };
    let Value::Object(mut obj) = v else {
        return Err(invalid(Value::Null, "a call must be a JSON object"));
    };
    let id = obj.remove("id");
    let shown_id = id.clone().unwrap_or(Value::Null);
    if !matches!(
        id,
        None | Some(Value::Null | Value::Number(_) | Value::String(_))
    ) {
        return Err(invalid(
            Value::Null,
            "\"id\" must be a number, a string or null",
        ));
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(shown_id, "\"jsonrpc\" must be \"2.0\""));
    }
    let Some(name) = obj.get("method").and_then(Value::as_str).map(str::to_owned) else {
        return Err(invalid(shown_id, "\"method\" must be a string"));
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Err(error_object(
                shown_id,
                INVALID_PARAMS,
                ErrorCode::BadRequest,
                "invalid params: params must be an object of named params",
            ))
        }
    };
    Ok(Call {
        id,
        method: Method::find(&name),
        name,
        params,
    })
}

/// `POST /rpc`.
pub async fn rpc(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            &format!("request body is over {BODY_BYTES_MAX} bytes; send fewer calls per batch"),
        )
    };
    if declared.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return too_large();
    };
    if let Err(e) = limits::check_depth(&bytes, limits::JSON_DEPTH_MAX) {
        let body = error_object(
            Value::Null,
            INVALID_REQUEST,
            ErrorCode::BadRequest,
            &format!("invalid request: {e}"),
        );
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let request: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let body = error_object(
                Value::Null,
                PARSE_ERROR,
                ErrorCode::BadRequest,
                &format!("parse error: the body is not JSON: {e}"),
            );
            return axum::Json(body).into_response();
        }
    };
    let (items, batch) = match request {
        Value::Array(items) => {
            if items.is_empty() || items.len() > BATCH_MAX {
                let body = error_object(
                    Value::Null,
                    INVALID_REQUEST,
                    ErrorCode::BadRequest,
                    &format!(
                        "invalid request: a batch holds 1 to {BATCH_MAX} calls, not {}",
                        items.len()
                    ),
                );
                return axum::Json(body).into_response();
            }
            (items, true)
        }
        single => (vec![single], false),
    };
    let calls: Vec<Result<Call, Value>> = items.into_iter().map(parse_call).collect();
    let needs_token = calls
        .iter()
        .any(|c| matches!(c, Ok(Call { method: Some(m), .. }) if m.writes() || m.private()));
    if needs_token {
        if let Err(refused) = state.check_token(&headers) {
            return refused.into_response();
        }
        if let Err(refused) = state.check_origin(&headers) {
            return refused.into_response();
        }
    }
    let count = |f: fn(Method) -> bool| {
        let n = calls
            .iter()
            .filter(|c| matches!(c, Ok(Call { method: Some(m), .. }) if f(*m)))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let wants = [
        (Kind::Write, count(Method::writes)),
        (Kind::Search, count(Method::searches)),
    ];
    if let Err(refused) = state.rate_limit(peer, &headers, &wants) {
        return refused.into_response();
    }
    let mut answers = Vec::new();
    let mut exports = 0;
    for call in calls {
        match call {
            Err(answer) => answers.push(answer),
            Ok(call) => {
                let answer = if call.name == crate::net::local_api::LOG_EXPORT {
                    exports += 1;
                    if exports > EXPORTS_PER_BATCH {
                        Answer::Invalid(format!(
                            "invalid request: at most {EXPORTS_PER_BATCH} log.export per batch; \
                             fetch the next page with the cursor in another request"
                        ))
                    } else {
                        serve(&state, &call).await
                    }
                } else {
                    serve(&state, &call).await
                };
                if let Some(id) = call.id {
                    answers.push(answer.with_id(id));
                }
            }
        }
    }
    if answers.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    if batch {
        axum::Json(Value::Array(answers)).into_response()
    } else {
        axum::Json(answers.swap_remove(0)).into_response()
    }
}

/// What became of one call.
#[derive(Debug)]
enum Answer {
    Result(Value),
    Failed(CallError),
    /// Refused by a rule of this endpoint (not the method's).
    Invalid(String),
}

impl Answer {
    fn with_id(self, id: Value) -> Value {
        match self {
            Answer::Result(v) => json!({ "jsonrpc": "2.0", "id": id, "result": v }),
            Answer::Failed(e) => call_error(id, &e),
            Answer::Invalid(message) => {
                error_object(id, INVALID_REQUEST, ErrorCode::BadRequest, &message)
            }
        }
    }
}

/// Runs one call, counting it by method (unknown names as `unknown`, so
/// the label set stays bounded) and outcome.
async fn serve(state: &AppState, call: &Call) -> Answer {
    let label = if call.method.is_some() {
        call.name.as_str()
    } else {
        "unknown"
    };
    let answer = match dispatch::call(&call.name, call.params.clone(), &state.handle)
        .instrument(info_span!("rpc_call", method = %label))
        .await
    {
        Ok(v) => Answer::Result(v),
        Err(e) => Answer::Failed(e),
    };
    let outcome = match &answer {
        Answer::Result(_) => "ok",
        Answer::Failed(CallError::UnknownMethod(_)) => "unknown_method",
        Answer::Failed(CallError::InvalidParams(_)) => "invalid_params",
        Answer::Failed(CallError::Failed(e)) => e.code.as_str(),
        Answer::Invalid(_) => "invalid_request",
    };
    state.metrics.rpc_call(label, outcome);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each wire code has its own number, inside JSON-RPC's server-error
    /// range, so a client can tell them apart by number alone.
    #[test]
    fn wire_codes_map_to_distinct_server_error_numbers() {
        use ErrorCode as C;
        let codes = [
            C::BadRequest,
            C::Unauthorized,
            C::NotFound,
            C::Partition,
            C::Overloaded,
            C::Timeout,
            C::Unavailable,
            C::Internal,
            C::StorageFull,
        ];
        let mut numbers: Vec<i64> = codes.iter().map(|c| error_number(*c)).collect();
        assert!(numbers.iter().all(|n| (-32099..=-32000).contains(n)));
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), codes.len());
    }

    /// A call whose `id` is an object or array is an invalid request,
    /// answered with id null (its id cannot be echoed).
    #[test]
    fn a_structured_id_is_an_invalid_request() {
        let answer = parse_call(json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "x"}))
            .expect_err("refused");
        assert_eq!(answer["error"]["code"], json!(INVALID_REQUEST));
        assert_eq!(answer["id"], Value::Null);
        let answer = parse_call(json!({"jsonrpc": "2.0", "id": 1})).expect_err("refused");
        assert_eq!(answer["error"]["code"], json!(INVALID_REQUEST));
        assert_eq!(answer["id"], json!(1));
    }
}
