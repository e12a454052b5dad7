//! The one request path of the local APIs: a named call with JSON params,
//! answered with JSON or a [`BusError`]. The Unix socket
//! (`net::local_api`) and the HTTP API (`api::rpc`) both call [`call`], so a
//! capability behaves the same whichever door it came in by.
//!
//! Three kinds of names are served: the bus capabilities (by their
//! descriptors, run by the driver as `Caller::Local`), `node.status`
//! (answered by the driver, which knows the peers) and the log calls
//! (`log.export`, `log.import`, `log.contains`, paged inside the driver),
//! and the saved searches (`subscription.*`, [`subscriptions`]).

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::subscriptions;
use crate::core::bus::{BusError, Descriptor};
use crate::net::driver::{Command, Handle};
use crate::net::local_api::{LogAnswer, LogRequest, LOG_CONTAINS, LOG_EXPORT, LOG_IMPORT};

pub const NODE_STATUS: &str = "node.status";

/// What a name refers to, and so whether calling it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A bus capability: its descriptor says whether it writes.
    Capability(&'static Descriptor),
    /// `node.status`: a read.
    NodeStatus,
    /// A log call: `log.import` writes, the others read.
    Log(&'static str),
    /// A saved-search call (`api::subscriptions`): create and delete write.
    Subscription(&'static str),
}

impl Method {
    /// The method named `name`, if this node serves one.
    pub fn find(name: &str) -> Option<Method> {
        if name == NODE_STATUS {
            return Some(Method::NodeStatus);
        }
        if let Some(log) = [LOG_EXPORT, LOG_IMPORT, LOG_CONTAINS]
            .into_iter()
            .find(|l| *l == name)
        {
            return Some(Method::Log(log));
        }
        if let Some(s) = subscriptions::METHODS.into_iter().find(|s| *s == name) {
            return Some(Method::Subscription(s));
        }
        crate::core::services::descriptor(name).map(Method::Capability)
    }

    /// Whether a call changes the log (and so needs the HTTP token).
    pub fn writes(self) -> bool {
        match self {
            Method::Capability(d) => d.writes,
            Method::NodeStatus => false,
            Method::Log(name) => name == LOG_IMPORT,
            Method::Subscription(name) => {
                name == subscriptions::CREATE || name == subscriptions::DELETE
            }
        }
    }

    /// Every name served, capabilities first in descriptor order.
    pub fn names() -> Vec<&'static str> {
        crate::core::services::descriptors()
            .map(|d| d.name)
            .chain([NODE_STATUS, LOG_EXPORT, LOG_IMPORT, LOG_CONTAINS])
            .chain(subscriptions::METHODS)
            .collect()
    }
}

/// Whether `e` came from decoding the params (the handler never ran):
/// `bad_request` whose message starts "invalid params" (the bus's and the
/// log calls' decoders) or "params:" (JSON that is not CBOR-able).
pub fn is_param_error(e: &BusError) -> bool {
    e.code == crate::core::ErrorCode::BadRequest
        && (e.message.starts_with("invalid params") || e.message.starts_with("params:"))
}

/// Serves `name` with `params` through the running node. Unknown names are
/// `not_found` (as the bus says it).
pub async fn call(name: &str, params: Value, handle: &Handle) -> Result<Value, BusError> {
    if name == NODE_STATUS {
        let status = handle
            .status()
            .await
            .ok_or_else(|| BusError::unavailable("the node is shutting down"))?;
        return serde_json::to_value(status).map_err(BusError::internal);
    }
    if subscriptions::METHODS.contains(&name) {
        let subs = handle.subscriptions.get().ok_or_else(|| {
            BusError::unavailable(
                "saved searches run with the HTTP API: start the node without --no-http",
            )
        })?;
        return subs.call(name, params);
    }
    if let Some(request) = LogRequest::parse(name, params.clone()) {
        let answer = log_call(request?, handle).await?;
        return serde_json::to_value(answer).map_err(BusError::internal);
    }
    let params = ciborium::Value::serialized(&params)
        .map_err(|e| BusError::bad_request(format!("params: {e}")))?;
    let answer = handle.call(name, params).await?;
    answer.deserialized::<Value>().map_err(BusError::internal)
}

/// The socket's wire form of an answer: `{"ok": ...}` or `{"error": ...}`.
pub fn socket_answer(result: Result<Value, BusError>) -> Value {
    match result {
        Ok(v) => json!({ "ok": v }),
        Err(e) => socket_error(&e),
    }
}

pub fn socket_error(e: &BusError) -> Value {
    json!({ "error": { "code": e.code.as_str(), "message": e.message } })
}

async fn log_call(request: LogRequest, handle: &Handle) -> Result<LogAnswer, BusError> {
    let (reply, rx) = oneshot::channel();
    handle
        .commands
        .send(Command::Log { request, reply })
        .await
        .map_err(|_| BusError::unavailable("the node is shutting down"))?;
    rx.await
        .map_err(|_| BusError::unavailable("the node stopped before answering"))?
}
