//! The one request path of the local APIs: a named call with JSON params,
//! answered with JSON or a [`CallError`]. The Unix socket
//! (`net::local_api`) and the HTTP API (`api::rpc`) both call [`call`], so a
//! method behaves the same whichever door it came in by.
//!
//! [`METHODS`] is the one table of what is served: [`Method::find`] looks
//! names up in it, [`call`] checks params against its types, and
//! `rpc.discover` ([`super::openrpc`]) describes it, so the OpenRPC document
//! cannot list a method the server does not answer, or miss one.
//!
//! Kinds of names served: the bus capabilities (by their descriptors, run
//! by the driver as `Caller::Local`), `node.status` and `node.peers`
//! (answered by the driver, which knows the peers), the log calls
//! (`log.export`, `log.import`, `log.contains`, paged inside the driver)
//! the saved searches (`subscription.*`, [`subscriptions`]) and
//! `rpc.discover`.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::subscriptions;
use crate::core::bus::{BusError, Descriptor};
use crate::core::services::{conversations, market, membership};
use crate::core::ErrorCode;
use crate::net::driver::{Command, Handle, PeerStatus};
use crate::net::local_api::{LogAnswer, LogRequest, LOG_CONTAINS, LOG_EXPORT, LOG_IMPORT};

use super::openrpc;

pub const NODE_STATUS: &str = "node.status";
pub const NODE_PEERS: &str = "node.peers";
pub const RPC_DISCOVER: &str = "rpc.discover";
/// The API name of the bus capability `community.member.set`. The
/// capability (and the event type DESIGN.md names) keep their name, which
/// the CLI and older scripts call; both names are served, as one method.
pub const MEMBER_SET: &str = "member.set";

/// Params of a method that takes none: an empty object (or none at all).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `node.peers`: the peers connected now, as `node.status` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PeersResult {
    pub peers: Vec<PeerStatus>,
}

/// What a served name runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bus capability of this (descriptor) name.
    Capability(&'static str),
    NodeStatus,
    NodePeers,
    /// A log call, by its name.
    Log(&'static str),
    Discover,
    /// A saved-search call, by its name.
    Subscription(&'static str),
}

/// One served method: its name, what it runs, and its types (for the
/// params check and the OpenRPC document).
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub target: Target,
    /// One line for the OpenRPC document.
    pub summary: &'static str,
    /// The params object's schema (a `$ref` into the generator's
    /// definitions for a named struct).
    pub params: fn(&mut SchemaGenerator) -> Schema,
    pub result: fn(&mut SchemaGenerator) -> Schema,
    /// Decodes the params as the handler will, so a bad one is refused as
    /// bad params (JSON-RPC -32602) before anything runs. `None` where the
    /// target decodes them itself as its first step (the log calls).
    check: Option<ParamsCheck>,
}

/// Decodes params as a handler's type would; `Err` holds the decoder's
/// sentence.
type ParamsCheck = fn(&Value) -> Result<(), String>;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn check<T: DeserializeOwned>(params: &Value) -> Result<(), String> {
    T::deserialize(params).map(drop).map_err(|e| e.to_string())
}

const fn capability<P: JsonSchema + DeserializeOwned, R: JsonSchema>(
    name: &'static str,
    capability: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        target: Target::Capability(capability),
        summary,
        params: schema::<P>,
        result: schema::<R>,
        check: Some(check::<P>),
    }
}

const fn log<P: JsonSchema, R: JsonSchema>(name: &'static str, summary: &'static str) -> Spec {
    Spec {
        name,
        target: Target::Log(name),
        summary,
        params: schema::<P>,
        result: schema::<R>,
        check: None,
    }
}

/// A saved-search method: its params are checked by
/// `subscriptions::check_params`; the schema is left open.
const fn subscription(name: &'static str, summary: &'static str, check: ParamsCheck) -> Spec {
    Spec {
        name,
        target: Target::Subscription(name),
        summary,
        params: schema::<Value>,
        result: schema::<Value>,
        check: Some(check),
    }
}

/// Every method served, in the order the OpenRPC document lists them.
pub static METHODS: &[Spec] = &[
    capability::<crate::core::views::market::ListQuery, market::ListResult>(
        market::LIST,
        market::LIST,
        "The marketplace's active posts, newest first, optionally filtered.",
    ),
    capability::<market::GetParams, market::PostView>(
        market::GET,
        market::GET,
        "One post by id (and author, where several share the id), whatever its status.",
    ),
    capability::<market::PostParams, market::PostReceipt>(
        market::POST,
        market::POST,
        "Signs and publishes a post; idempotent by client_id.",
    ),
    capability::<market::UpdateParams, market::PostReceipt>(
        market::UPDATE,
        market::UPDATE,
        "Replaces fields of this node's own post.",
    ),
    capability::<market::ExpireParams, market::ExpireReceipt>(
        market::EXPIRE,
        market::EXPIRE,
        "Ends a post (this node's own, or any as trusted or anchor).",
    ),
    capability::<market::SearchParams, market::SearchResult>(
        market::SEARCH,
        market::SEARCH,
        "Searches the active posts.",
    ),
    capability::<NoParams, membership::MemberList>(
        membership::MEMBER_LIST,
        membership::MEMBER_LIST,
        "The community: its name, settings and every member with level and name.",
    ),
    capability::<membership::MemberSetParams, membership::MemberSetReceipt>(
        MEMBER_SET,
        membership::MEMBER_SET,
        "Gives a node a level (anchors only); `removed` takes it away.",
    ),
    capability::<membership::MemberSetParams, membership::MemberSetReceipt>(
        membership::MEMBER_SET,
        membership::MEMBER_SET,
        "The bus name of member.set, kept for the CLI and older scripts.",
    ),
    capability::<membership::SettingsParams, membership::SettingsReceipt>(
        membership::SETTINGS,
        membership::SETTINGS,
        "Changes the community's name and limits (anchors only).",
    ),
    capability::<membership::ProfileParams, membership::ProfileReceipt>(
        membership::PROFILE,
        membership::PROFILE,
        "Sets this node's display name.",
    ),
    capability::<conversations::ReplyParams, Value>(
        conversations::REPLY,
        conversations::REPLY,
        "Answers a post publicly.",
    ),
    capability::<conversations::ClaimParams, Value>(
        conversations::CLAIM,
        conversations::CLAIM,
        "Claims a post (\"I'd like this\" / \"I can help\"), with an optional note.",
    ),
    capability::<conversations::WithdrawParams, Value>(
        conversations::WITHDRAW_CLAIM,
        conversations::WITHDRAW_CLAIM,
        "Takes back this node's claim on a post (the latest standing one, or `claim`).",
    ),
    capability::<conversations::AcceptParams, Value>(
        conversations::ACCEPT_CLAIM,
        conversations::ACCEPT_CLAIM,
        "Accepts a claim on this node's own post: the post ends as fulfilled by the claimant.",
    ),
    capability::<conversations::DmSendParams, Value>(
        conversations::DM_SEND,
        conversations::DM_SEND,
        "Sends a private message sealed to one member; the mesh carries it while they are offline.",
    ),
    capability::<NoParams, Value>(
        conversations::LIST,
        conversations::LIST,
        "This node's conversations: threads of its posts and private messages, opened (needs the token).",
    ),
    capability::<conversations::GetParams, Value>(
        conversations::GET,
        conversations::GET,
        "One conversation: a post's public thread, or the messages with one member (needs the token).",
    ),
    capability::<conversations::MarkReadParams, Value>(
        conversations::MARK_READ,
        conversations::MARK_READ,
        "Marks everything a conversation (`with` a member, or a `post`'s thread) shows now as read (needs the token).",
    ),
    Spec {
        name: NODE_STATUS,
        target: Target::NodeStatus,
        summary: "The running node: identity, log, peers, gossip and storage state.",
        params: schema::<NoParams>,
        result: schema::<crate::net::driver::Status>,
        check: Some(check::<NoParams>),
    },
    Spec {
        name: NODE_PEERS,
        target: Target::NodePeers,
        summary: "The peers connected now.",
        params: schema::<NoParams>,
        result: schema::<PeersResult>,
        check: Some(check::<NoParams>),
    },
    log::<openrpc::ExportParams, openrpc::ExportPage>(
        LOG_EXPORT,
        "One page of the log (at most 256 KiB of events) after a cursor; call again with `next` until it is null.",
    ),
    log::<openrpc::ImportParams, openrpc::ImportResult>(
        LOG_IMPORT,
        "Receives events as a peer's would be, one outcome each.",
    ),
    log::<openrpc::ContainsParams, openrpc::ContainsResult>(
        LOG_CONTAINS,
        "Whether the log holds each event hash.",
    ),
    subscription(
        subscriptions::CREATE,
        "Saves a search (category, tags, q, near) with an optional webhook URL; matching new posts are marked and delivered.",
        |p| subscriptions::check_params(subscriptions::CREATE, p),
    ),
    subscription(
        subscriptions::LIST,
        "The saved searches, with their match counts.",
        |p| subscriptions::check_params(subscriptions::LIST, p),
    ),
    subscription(
        subscriptions::DELETE,
        "Deletes a saved search by id.",
        |p| subscriptions::check_params(subscriptions::DELETE, p),
    ),
    subscription(
        subscriptions::DELIVERIES,
        "The recent webhook deliveries of a saved search, with their outcomes.",
        |p| subscriptions::check_params(subscriptions::DELIVERIES, p),
    ),
    Spec {
        name: RPC_DISCOVER,
        target: Target::Discover,
        summary: "This document: the OpenRPC description of every method served.",
        params: schema::<NoParams>,
        result: openrpc::document_schema,
        check: Some(check::<NoParams>),
    },
];

/// The entry of `name`, if it is served.
pub fn spec(name: &str) -> Option<&'static Spec> {
    METHODS.iter().find(|s| s.name == name)
}

/// What a name refers to, and so whether calling it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A bus capability: its descriptor says whether it writes.
    Capability(&'static Descriptor),
    /// `node.status`: a read.
    NodeStatus,
    /// `node.peers`: a read.
    NodePeers,
    /// A log call: `log.import` writes, the others read.
    Log(&'static str),
    /// `rpc.discover`: a read.
    Discover,
    /// A saved-search call (`api::subscriptions`): create and delete write.
    Subscription(&'static str),
}

impl Method {
    /// The method named `name`, if this node serves one.
    pub fn find(name: &str) -> Option<Method> {
        Some(match spec(name)?.target {
            Target::Capability(cap) => Method::Capability(crate::core::services::descriptor(cap)?),
            Target::NodeStatus => Method::NodeStatus,
            Target::NodePeers => Method::NodePeers,
            Target::Log(name) => Method::Log(name),
            Target::Discover => Method::Discover,
            Target::Subscription(name) => Method::Subscription(name),
        })
    }

    /// Whether a call changes the log (and so needs the HTTP token).
    pub fn writes(self) -> bool {
        match self {
            Method::Capability(d) => d.writes,
            Method::Log(name) => name == LOG_IMPORT,
            Method::NodeStatus | Method::NodePeers | Method::Discover => false,
            Method::Subscription(name) => {
                name == subscriptions::CREATE || name == subscriptions::DELETE
            }
        }
    }

    /// Whether a call reads this node's private messages: it needs the
    /// token like a write (another local program must not read them).
    pub fn private(self) -> bool {
        matches!(self, Method::Capability(d) if d.name == conversations::LIST
            || d.name == conversations::GET
            || d.name == conversations::MARK_READ)
    }

    /// Whether a call is a search (rate limited per client like writes:
    /// the costliest read).
    pub fn searches(self) -> bool {
        matches!(self, Method::Capability(d) if d.name == market::SEARCH)
    }

    /// Every name served, in [`METHODS`] order.
    pub fn names() -> Vec<&'static str> {
        METHODS.iter().map(|s| s.name).collect()
    }
}

/// Why a call was not answered with a result. The kinds JSON-RPC numbers
/// apart (unknown method, bad params) are told apart by type here, not by
/// the text of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No method of that name is served.
    UnknownMethod(String),
    /// The params do not decode as the method's params type: the handler
    /// never ran. Holds the decoder's sentence.
    InvalidParams(String),
    /// The method ran and refused (or the node could not run it).
    Failed(BusError),
}

impl From<BusError> for CallError {
    fn from(e: BusError) -> CallError {
        CallError::Failed(e)
    }
}

impl CallError {
    /// The wire code: `not_found` for an unknown name (as the bus says
    /// it), `bad_request` for bad params.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::UnknownMethod(_) => ErrorCode::NotFound,
            CallError::InvalidParams(_) => ErrorCode::BadRequest,
            CallError::Failed(e) => e.code,
        }
    }

    /// The sentence for the person.
    pub fn message(&self) -> String {
        match self {
            CallError::UnknownMethod(name) => format!(
                "no method named {name:?}; this node serves {}",
                Method::names().join(", ")
            ),
            CallError::InvalidParams(why) => format!("invalid params: {why}"),
            CallError::Failed(e) => e.message.clone(),
        }
    }

    /// As the bus's error (code and sentence), for the socket.
    pub fn into_bus(self) -> BusError {
        match self {
            CallError::Failed(e) => e,
            other => BusError::new(other.code(), other.message()),
        }
    }
}

/// Serves `name` with `params` through the running node.
pub async fn call(name: &str, params: Value, handle: &Handle) -> Result<Value, CallError> {
    let spec = spec(name).ok_or_else(|| CallError::UnknownMethod(name.to_owned()))?;
    // No params and empty params are the same call.
    let params = if params.is_null() { json!({}) } else { params };
    if let Some(check) = spec.check {
        check(&params).map_err(CallError::InvalidParams)?;
    }
    match spec.target {
        Target::NodeStatus => {
            let status = node_status(handle).await?;
            serde_json::to_value(status).map_err(|e| BusError::internal(e).into())
        }
        Target::NodePeers => {
            let peers = node_status(handle).await?.peers;
            serde_json::to_value(PeersResult { peers }).map_err(|e| BusError::internal(e).into())
        }
        Target::Discover => Ok(openrpc::document().clone()),
        Target::Subscription(name) => {
            let subs = handle.subscriptions.get().ok_or_else(|| {
                BusError::unavailable(
                    "saved searches run with the HTTP API: start the node without --no-http",
                )
            })?;
            Ok(subs.call(name, params)?)
        }
        Target::Log(log) => {
            let request = match LogRequest::parse(log, params) {
                Some(Ok(request)) => request,
                // Its decoder's only refusal is the params'.
                Some(Err(e)) => {
                    let why = e.message.strip_prefix("invalid params: ");
                    return Err(CallError::InvalidParams(
                        why.unwrap_or(&e.message).to_owned(),
                    ));
                }
                None => return Err(CallError::UnknownMethod(log.to_owned())),
            };
            let answer = log_call(request, handle).await?;
            serde_json::to_value(answer).map_err(|e| BusError::internal(e).into())
        }
        Target::Capability(cap) => {
            let params = ciborium::Value::serialized(&params)
                .map_err(|e| CallError::InvalidParams(e.to_string()))?;
            let answer = handle.call(cap, params).await?;
            answer
                .deserialized::<Value>()
                .map_err(|e| BusError::internal(e).into())
        }
    }
}

async fn node_status(handle: &Handle) -> Result<crate::net::driver::Status, BusError> {
    handle
        .status()
        .await
        .ok_or_else(|| BusError::unavailable("the node is shutting down"))
}

/// The socket's wire form of an answer: `{"ok": ...}` or `{"error": ...}`.
pub fn socket_answer(result: Result<Value, CallError>) -> Value {
    match result {
        Ok(v) => json!({ "ok": v }),
        Err(e) => socket_error(&e.into_bus()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bus capability is served under its own name, and every
    /// capability the table names has a descriptor: a capability added to
    /// the core without a table entry (or the reverse) fails here.
    #[test]
    fn the_table_and_the_descriptors_agree() {
        for d in crate::core::services::descriptors() {
            assert_eq!(
                Method::find(d.name),
                Some(Method::Capability(d)),
                "{} has no entry in METHODS",
                d.name
            );
        }
        for s in METHODS {
            assert!(
                Method::find(s.name).is_some(),
                "{} resolves to nothing",
                s.name
            );
        }
        let mut names = Method::names();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name is listed twice");
    }

    /// `member.set` is the same method as the bus's `community.member.set`:
    /// one descriptor, so one concurrency bound and one trust rule.
    #[test]
    fn member_set_is_the_bus_capability_by_another_name() {
        let api = Method::find(MEMBER_SET);
        let bus = Method::find(membership::MEMBER_SET);
        assert!(api.is_some_and(Method::writes));
        assert_eq!(api, bus);
    }

    /// Bad params are told by type: a field the params type does not have
    /// is `InvalidParams` before anything runs, whatever the message says.
    #[test]
    fn a_params_check_refuses_what_the_handler_would() {
        let spec = spec(market::SEARCH).and_then(|s| s.check);
        let check = spec.unwrap_or(|_| Ok(()));
        assert!(check(&json!({"query": "x"})).is_ok());
        let why = check(&json!({"query": "x", "colour": 1})).unwrap_err();
        assert!(why.contains("colour"), "{why}");
        assert!(check(&json!({})).is_err());
    }
}
