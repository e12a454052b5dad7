//! `rpc.discover`: the OpenRPC 1.3 document of every method served,
//! generated from [`super::dispatch::METHODS`] (the table `Method::find`
//! answers from) and the params/result types' JSON Schemas (schemars), so
//! it cannot drift from the code.
//!
//! Each method carries its bus descriptor as extension fields:
//! `x-trust` (least level a remote bus caller needs; `null`: anyone),
//! `x-timeout-ms`, `x-max-concurrent`, `x-idempotent`, `x-writes`,
//! `x-version` and `x-capability` (the bus name, which differs for
//! `member.set`). Methods the driver answers itself (`node.*`, `log.*`,
//! `rpc.discover`) have no descriptor: they carry `x-bus: false`,
//! `x-idempotent` and `x-writes` only, and are not served to remote peers.
//!
//! The meta-schema the document is checked against in the tests is shipped
//! in `docs/openrpc/meta-schema.json`.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::dispatch::{Method, METHODS};
use super::rpc;
use crate::core::ErrorCode;
use crate::net::local_api::{Cursor, Outcome};
use hearth_proto::EventHash;

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// `log.export` params (the schema of `LogRequest::Export`, which decodes
/// them).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ExportParams {
    /// Start after this event (from the start of the log without it): the
    /// `next` of the page before.
    #[serde(default)]
    pub after: Option<Cursor>,
}

/// One `log.export` page.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ExportPage {
    /// Encoded events as hex, in `(lamport, hash)` order.
    pub events: Vec<String>,
    /// Where the next page starts; `null` after the last.
    pub next: Option<Cursor>,
}

/// `log.import` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ImportParams {
    /// Encoded events as hex.
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ImportResult {
    /// One outcome per event, in order.
    pub outcomes: Vec<Outcome>,
}

/// `log.contains` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ContainsParams {
    pub hashes: Vec<EventHash>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContainsResult {
    /// Whether each hash is held, in order.
    pub held: Vec<bool>,
}

/// The schema of `rpc.discover`'s result: an OpenRPC document.
pub fn document_schema(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "An OpenRPC 1.3 document (https://spec.open-rpc.org/).",
        "required": ["openrpc", "info", "methods"],
    })
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// The content descriptors of a params object: one per property, for
/// `paramStructure: by-name`.
fn params_of(schema: &Schema, definitions: &Map<String, Value>) -> Vec<Value> {
    let mut object = schema.as_value().clone();
    if let Some(name) = object
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
    {
        object = definitions.get(name).cloned().unwrap_or(Value::Null);
    }
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = object.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let mut d = json!({
                "name": name,
                "required": required.contains(&name.as_str()),
                "schema": schema,
            });
            if let Some(text) = schema.get("description") {
                d["description"] = text.clone();
            }
            d
        })
        .collect()
}

fn extensions(method: Option<Method>) -> Map<String, Value> {
    let mut x = Map::new();
    match method {
        Some(Method::Capability(d)) => {
            x.insert("x-capability".into(), json!(d.name));
            x.insert("x-version".into(), json!(d.version));
            x.insert("x-trust".into(), json!(d.trust_required));
            x.insert("x-timeout-ms".into(), json!(d.timeout_ms));
            x.insert("x-max-concurrent".into(), json!(d.max_concurrent));
            x.insert("x-idempotent".into(), json!(d.idempotent));
            x.insert("x-writes".into(), json!(d.writes));
        }
        Some(m) => {
            x.insert("x-bus".into(), json!(false));
            x.insert("x-idempotent".into(), json!(!m.writes()));
            x.insert("x-writes".into(), json!(m.writes()));
        }
        None => {}
    }
    x
}

/// The JSON-RPC errors every method may answer, for `components.errors`:
/// the standard invalid params, and one number per wire code
/// (`error.data.code` names it). Methods refer to them by `$ref`.
fn errors() -> Map<String, Value> {
    let mut errors = Map::new();
    errors.insert(
        "invalid_params".into(),
        json!({
            "code": rpc::INVALID_PARAMS,
            "message": "invalid params",
            "data": { "code": ErrorCode::BadRequest.as_str() },
        }),
    );
    errors.extend(
        [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::Partition,
            ErrorCode::Overloaded,
            ErrorCode::Timeout,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::StorageFull,
        ]
        .into_iter()
        .map(|c| {
            let error = json!({
                "code": rpc::error_number(c),
                "message": c.as_str(),
                "data": { "code": c.as_str() },
            });
            (c.as_str().to_owned(), error)
        }),
    );
    errors
}

fn build() -> Value {
    let mut generator = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut methods = Vec::new();
    let mut param_schemas = Vec::new();
    for spec in METHODS {
        let params = (spec.params)(&mut generator);
        let result = (spec.result)(&mut generator);
        param_schemas.push(params);
        methods.push((spec, result));
    }
    let definitions = generator.take_definitions(true);
    let errors = errors();
    let error_refs: Vec<Value> = errors
        .keys()
        .map(|k| json!({ "$ref": format!("#/components/errors/{k}") }))
        .collect();
    let methods: Vec<Value> = methods
        .into_iter()
        .zip(param_schemas)
        .map(|((spec, result), params)| {
            let mut m = json!({
                "name": spec.name,
                "summary": spec.summary,
                "paramStructure": "by-name",
                "params": params_of(&params, &definitions),
                "result": { "name": "result", "schema": result },
                "errors": error_refs,
            });
            if let Value::Object(obj) = &mut m {
                obj.extend(extensions(Method::find(spec.name)));
            }
            m
        })
        .collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "HearthNet node",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The local API of a HearthNet node: POST /rpc (JSON-RPC 2.0, \
                batches up to 64). Writes need `Authorization: Bearer <token>`. \
                Wire error codes are JSON-RPC errors -32000..-32008 with the code's \
                name in error.data.code.",
        },
        "methods": methods,
        "components": { "schemas": definitions, "errors": errors },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log calls' schema types decode as the log decoder does: a page
    /// cursor and an import batch written by the types parse as requests.
    #[test]
    fn log_schema_types_match_the_log_decoder() {
        use crate::net::local_api::{LogRequest, LOG_CONTAINS, LOG_EXPORT, LOG_IMPORT};
        let cursor = Cursor {
            lamport: 3,
            hash: EventHash([7; 32]),
        };
        let export = ExportParams {
            after: Some(cursor),
        };
        let v = serde_json::to_value(&export).unwrap_or_default();
        assert!(matches!(LogRequest::parse(LOG_EXPORT, v), Some(Ok(_))));
        let import = ImportParams {
            events: vec!["00".into()],
        };
        let v = serde_json::to_value(&import).unwrap_or_default();
        assert!(matches!(LogRequest::parse(LOG_IMPORT, v), Some(Ok(_))));
        let contains = ContainsParams {
            hashes: vec![EventHash([1; 32])],
        };
        let v = serde_json::to_value(&contains).unwrap_or_default();
        assert!(matches!(LogRequest::parse(LOG_CONTAINS, v), Some(Ok(_))));
    }

    /// Every served name is in the document once, with its params split
    /// by name (market.post has a required `title`).
    #[test]
    fn the_document_lists_every_method() {
        let doc = document();
        let names: Vec<&str> = doc["methods"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, Method::names());
        let post = doc["methods"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "market.post"))
            .cloned()
            .unwrap_or_default();
        let title = post["params"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "title"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(title["required"], json!(true), "{post}");
        assert_eq!(post["x-writes"], json!(true));
        assert_eq!(post["x-max-concurrent"], json!(4));
    }
}
