//! `hearth mcp`: a Model Context Protocol server on stdio, so an assistant
//! on the household's device can read and post on the marketplace. It owns
//! the MCP side only (lifecycle, `tools/list`, `tools/call`); every tool is
//! one JSON-RPC call to the running node's HTTP API ([`HttpRpc`]), so the
//! node checks and answers exactly as it does for the page and the CLI.
//!
//! Transport (MCP 2025-06-18, "stdio"): one JSON-RPC 2.0 message per line
//! on stdin, answers one per line on stdout, nothing else on stdout (logs
//! go to stderr); end of stdin ends the server with exit 0.
//!
//! Errors: what the protocol defines (a line that is not JSON, a message
//! that is not a request, an unknown method or tool) is a JSON-RPC error;
//! what goes wrong with a tool's work (bad arguments, the node not running,
//! not yet admitted, disk full) is a tool result with `isError: true` and a
//! message saying what to do, so the assistant can read it and act.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use hearth_proto::payload::{LAT_MAX, LNG_MAX};
use hearth_proto::Category;
use serde_json::{json, Map, Value};
use tracing::{debug, info};

use crate::api;
use crate::cli::http_client::{HttpRpc, HttpRpcError};
use crate::cli::Ctx;
use crate::core::services::market::{
    self, BODY_CHARS_MAX, CLIENT_ID_CHARS_MAX, LABEL_CHARS_MAX, SEARCH_LIMIT_MAX, TAGS_MAX,
    TAG_CHARS_MAX, TITLE_CHARS_MAX,
};
use crate::core::views::market::LIST_LIMIT_MAX;

/// Protocol versions this server speaks, newest first. `initialize`
/// answers the client's version when it is one of these, else the newest
/// (the client then decides whether it can go on).
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];
/// A message line over this is refused (and skipped to its end): the
/// longest tool call, a post at its limits, is under 20 KiB; 1 MiB is the
/// node's own request bound.
pub const LINE_BYTES_MAX: usize = 1 << 20;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;

#[derive(Debug, Args)]
pub struct McpArgs {
    /// The running node's HTTP API, IP:PORT [default: api.listen in
    /// config.toml, else 127.0.0.1:7878].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
}

/// Serves MCP on stdin/stdout until stdin ends.
pub fn run(ctx: &mut Ctx, a: McpArgs) -> anyhow::Result<()> {
    let addr = match (a.http, ctx.config()?.api.listen) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text.trim().parse().with_context(|| {
            format!("config key api.listen = {text:?}: expected IP:PORT such as 127.0.0.1:7878")
        })?,
        (None, None) => api::DEFAULT_LISTEN
            .parse()
            .context("the default API address")?,
    };
    let client = HttpRpc::new(addr, api::token::path(ctx.dir.root()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    info!(node = %addr, "MCP server on stdio");
    let mut server = Server::new(|method: &str, params: Value, write: bool| {
        runtime.block_on(client.call(method, params, write))
    });
    serve(io::stdin().lock(), io::stdout().lock(), &mut server)
}

/// Reads messages until end of input, writing each answer on its own line.
/// A closed stdout (the client went away) ends it quietly.
pub fn serve<F>(
    mut input: impl BufRead,
    mut output: impl Write,
    server: &mut Server<F>,
) -> anyhow::Result<()>
where
    F: FnMut(&str, Value, bool) -> Result<Value, HttpRpcError>,
{
    let mut line = Vec::new();
    loop {
        let answer = match read_line(&mut input, &mut line).context("reading stdin")? {
            Line::End => return Ok(()),
            Line::TooLong => Some(error(
                Value::Null,
                INVALID_REQUEST,
                &format!("message line over {LINE_BYTES_MAX} bytes: skipped"),
            )),
            Line::Message if line.iter().all(u8::is_ascii_whitespace) => None,
            Line::Message => server.handle_line(&line),
        };
        let Some(answer) = answer else { continue };
        let mut text = answer.to_string();
        text.push('\n');
        match output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing stdout"),
        }
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    End,
    /// A line (without its end) is in the buffer.
    Message,
    /// A line over [`LINE_BYTES_MAX`], read to its end and dropped.
    TooLong,
}

/// Reads one line into `buf`, holding at most [`LINE_BYTES_MAX`] bytes.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let bound = u64::try_from(LINE_BYTES_MAX)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let n = io::Read::take(&mut *input, bound).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Line::Message);
    }
    if buf.len() > LINE_BYTES_MAX {
        buf.clear();
        input.skip_until(b'\n')?;
        return Ok(Line::TooLong);
    }
    // The last line, without its newline.
    Ok(Line::Message)
}

/// A JSON-RPC error answer.
fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// The MCP session: which version was agreed, and how to reach the node
/// (`call(method, params, write)`, a closure so tests can stand in for it).
#[derive(Debug)]
pub struct Server<F> {
    call: F,
    /// The version `initialize` agreed; `None` before it.
    version: Option<&'static str>,
}

impl<F> Server<F>
where
    F: FnMut(&str, Value, bool) -> Result<Value, HttpRpcError>,
{
    pub fn new(call: F) -> Server<F> {
        Server {
            call,
            version: None,
        }
    }

    /// The answer to one line, or `None` (a notification, or a response).
    pub fn handle_line(&mut self, line: &[u8]) -> Option<Value> {
        match serde_json::from_slice(line) {
            Ok(message) => self.handle(message),
            Err(e) => Some(error(
                Value::Null,
                PARSE_ERROR,
                &format!(
                    "parse error: the line is not JSON ({e}); send one JSON-RPC message per line"
                ),
            )),
        }
    }

    fn handle(&mut self, message: Value) -> Option<Value> {
        let mut obj = match message {
            Value::Object(obj) => obj,
            Value::Array(_) => {
                return Some(error(
                    Value::Null,
                    INVALID_REQUEST,
                    "invalid request: MCP 2025-06-18 has no batches; send one message per line",
                ))
            }
            _ => {
                return Some(error(
                    Value::Null,
                    INVALID_REQUEST,
                    "invalid request: a message must be a JSON object",
                ))
            }
        };
        let id = obj.remove("id");
        let id = match id {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
            Some(_) => {
                return Some(error(
                    Value::Null,
                    INVALID_REQUEST,
                    "invalid request: \"id\" must be a string or a number",
                ))
            }
        };
        let shown_id = id.clone().unwrap_or(Value::Null);
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Some(error(
                shown_id,
                INVALID_REQUEST,
                "invalid request: \"jsonrpc\" must be \"2.0\"",
            ));
        }
        let method = match obj.get("method") {
            Some(Value::String(m)) => m.clone(),
            // An answer to a request of ours: this server sends none.
            None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => {
                debug!("ignoring a response: this server sends no requests");
                return None;
            }
            _ => {
                return Some(error(
                    shown_id,
                    INVALID_REQUEST,
                    "invalid request: \"method\" must be a string",
                ))
            }
        };
        let Some(id) = id else {
            // Notifications (`notifications/initialized`, `.../cancelled`,
            // ...) are never answered; none changes what this server does.
            debug!(%method, "notification");
            return None;
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Some(error(
                    id,
                    INVALID_PARAMS,
                    "invalid params: \"params\" must be an object",
                ))
            }
        };
        let answer = match method.as_str() {
            "initialize" => self.initialize(&params),
            "ping" => Ok(json!({})),
            "tools/list" | "tools/call" if self.version.is_none() => Err((
                INVALID_REQUEST,
                "not initialized: send `initialize` first".to_owned(),
            )),
            "tools/list" => Ok(self.tools_list()),
            "tools/call" => self.tools_call(&params),
            other => Err((
                METHOD_NOT_FOUND,
                format!(
                    "no method named {other:?}; this server answers initialize, ping, \
                     tools/list and tools/call"
                ),
            )),
        };
        Some(match answer {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, message)) => error(id, code, &message),
        })
    }

    fn initialize(&mut self, params: &Map<String, Value>) -> Result<Value, (i64, String)> {
        let Some(asked) = params.get("protocolVersion").and_then(Value::as_str) else {
            return Err((
                INVALID_PARAMS,
                format!(
                    "invalid params: initialize needs \"protocolVersion\", a string such as {:?}",
                    PROTOCOL_VERSIONS[0]
                ),
            ));
        };
        let version = negotiate(asked);
        self.version = Some(version);
        info!(asked, version, "initialized");
        Ok(json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": {
                "name": "hearth",
                "title": "HearthNet node",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": INSTRUCTIONS,
        }))
    }

    /// Whether the agreed version has 2025-06-18's additions (tool titles,
    /// `structuredContent`). Versions are dates, so they compare as text.
    fn has_structured_content(&self) -> bool {
        self.version.is_some_and(|v| v >= "2025-06-18")
    }

    fn tools_list(&self) -> Value {
        let newest = self.has_structured_content();
        let tools: Vec<Value> = tools()
            .into_iter()
            .map(|t| {
                let mut v = json!({
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": t.input_schema,
                    "annotations": {
                        "title": t.title,
                        "readOnlyHint": !t.writes,
                        "destructiveHint": false,
                        "idempotentHint": t.idempotent,
                        // Reads and posts stay inside the community's mesh.
                        "openWorldHint": false,
                    },
                });
                if newest {
                    v["title"] = json!(t.title);
                }
                v
            })
            .collect();
        json!({ "tools": tools })
    }

    fn tools_call(&mut self, params: &Map<String, Value>) -> Result<Value, (i64, String)> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err((
                INVALID_PARAMS,
                "invalid params: tools/call needs \"name\", the tool's name".to_owned(),
            ));
        };
        let all = tools();
        let Some(tool) = all.iter().find(|t| t.name == name) else {
            let names: Vec<&str> = all.iter().map(|t| t.name).collect();
            return Err((
                INVALID_PARAMS,
                format!("unknown tool {name:?}; the tools are {}", names.join(", ")),
            ));
        };
        let args = match params.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(a) => a.clone(),
        };
        if let Err(why) = check(&tool.input_schema, &args, "") {
            return Ok(self.tool_error(&format!(
                "bad arguments for {name}: {why}; see the tool's input schema"
            )));
        }
        debug!(tool = name, method = tool.method, "calling the node");
        Ok(match (self.call)(tool.method, args, tool.writes) {
            Ok(result) => self.tool_result(result),
            Err(e) => self.tool_error(&describe(&e)),
        })
    }

    /// A tool's answer: the node's JSON as text (every version), and as
    /// `structuredContent` too where the version has it.
    fn tool_result(&self, result: Value) -> Value {
        let mut v = json!({
            "content": [{ "type": "text", "text": result.to_string() }],
            "isError": false,
        });
        if self.has_structured_content() && result.is_object() {
            v["structuredContent"] = result;
        }
        v
    }

    fn tool_error(&self, message: &str) -> Value {
        json!({ "content": [{ "type": "text", "text": message }], "isError": true })
    }
}

/// The version to answer a client that asked for `asked`.
pub fn negotiate(asked: &str) -> &'static str {
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == asked)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

/// Told to the client at `initialize` (MCP hands it to the model).
const INSTRUCTIONS: &str = "These tools reach the HearthNet node running on this device: a \
peer-to-peer marketplace of one neighbourhood. market_list, market_search and market_get read \
posts; market_post publishes a post to every member of the community, signed by this node, so \
post only what the person asked for. Posts cannot be deleted, only expired.";

/// A call the node refused, as a person (or an assistant) can act on it.
fn describe(e: &HttpRpcError) -> String {
    let HttpRpcError::Refused { code, message, .. } = e else {
        return e.to_string();
    };
    match code.as_str() {
        "unauthorized" if message.contains("not a member") => {
            format!("not yet admitted: {message}")
        }
        "unauthorized" => format!("refused by the node: {message}"),
        "bad_request" => format!("the node refused the arguments: {message}"),
        "not_found" => format!("not found: {message}"),
        "storage_full" => format!("the node's disk is full: {message}"),
        "overloaded" => format!("the node is busy: {message}; try again in a moment"),
        "unavailable" => format!("the node cannot do this now: {message}"),
        "timeout" => format!("the node timed out: {message}"),
        other => format!("{other}: {message}"),
    }
}

/// One tool: its MCP face and the node's method behind it. The arguments
/// are the method's params, field for field (a test holds them to the
/// params types).
#[derive(Debug)]
struct Tool {
    name: &'static str,
    title: &'static str,
    method: &'static str,
    description: &'static str,
    /// From the capability's descriptor: needs the token.
    writes: bool,
    idempotent: bool,
    input_schema: Value,
}

/// What the tools return, said once for the descriptions.
macro_rules! post_shape {
    () => {
        "A Post is {id (ULID), author (node id, 64 hex), author_name?, category, title, body, \
         tags, expires_at (Unix ms), location? {lat, lng (microdegrees, degrees x 1e6), label}, \
         client_id?, lamport, created_lamport, created_ts (Unix ms), status (active, expired, \
         past_ttl, hidden or over_limit), expired_reason?, expired_by?}."
    };
}

fn tools() -> Vec<Tool> {
    let tool = |name, title, method, description, input_schema| {
        let d = crate::core::services::descriptor(method);
        Tool {
            name,
            title,
            method,
            description,
            writes: d.is_some_and(|d| d.writes),
            idempotent: d.is_some_and(|d| d.idempotent),
            input_schema,
        }
    };
    vec![
        tool(
            "market_list",
            "List posts",
            market::LIST,
            concat!(
                "List live posts on the neighbourhood marketplace, newest first; optionally only ",
                "one category, only posts carrying every given tag, or only those newer than a ",
                "Lamport time. Returns JSON {\"posts\": [Post], \"max_lamport\": n}; pass ",
                "max_lamport back as since_lamport to get only what changed since. ",
                post_shape!()
            ),
            object(
                &[
                    ("category", category()),
                    ("tags", tags("Only posts carrying every one of these tags.")),
                    (
                        "since_lamport",
                        json!({"type": "integer", "minimum": 0,
                               "description": "Only posts whose content is newer than this Lamport time (max_lamport of an earlier answer)."}),
                    ),
                    (
                        "limit",
                        integer(1, LIST_LIMIT_MAX, "Posts at most (default 50)."),
                    ),
                ],
                &[],
            ),
        ),
        tool(
            "market_search",
            "Search posts",
            market::SEARCH,
            concat!(
                "Search live posts by keyword: a case-insensitive match in title, body and tags. ",
                "Returns JSON {\"mode\": \"keyword\", \"results\": [Post]}. ",
                post_shape!()
            ),
            object(
                &[
                    (
                        "query",
                        json!({"type": "string", "minLength": 1, "maxLength": TITLE_CHARS_MAX,
                               "description": "Words to look for, e.g. \"ladder\"."}),
                    ),
                    ("category", category()),
                    (
                        "limit",
                        integer(1, SEARCH_LIMIT_MAX, "Results at most (default 20)."),
                    ),
                ],
                &["query"],
            ),
        ),
        tool(
            "market_get",
            "Get a post",
            market::GET,
            concat!(
                "One post by id, in any state: status says whether it is active, and an expired ",
                "post carries expired_reason and expired_by. Returns JSON Post. ",
                post_shape!()
            ),
            object(
                &[
                    (
                        "id",
                        json!({"type": "string", "minLength": 26, "maxLength": 26,
                               "examples": ["01HZY3Q6V0Z8K7W2M4N5P6R7S8"],
                               "description": "The post's id (a ULID, as market_list shows it)."}),
                    ),
                    (
                        "author",
                        json!({"type": "string", "minLength": 64, "maxLength": 64,
                               "examples": [NODE_ID_EXAMPLE],
                               "description": "The author's node id, needed only when several authors used the same id."}),
                    ),
                ],
                &["id"],
            ),
        ),
        tool(
            "market_post",
            "Publish a post",
            market::POST,
            concat!(
                "Publish a post to every member of the community, signed by this node (it must ",
                "have been admitted by an anchor). Returns JSON {\"post\": Post, \"created\": bool}. ",
                "Pass a client_id (any unique string) so that a retry returns the first post ",
                "instead of publishing twice (created is then false). ",
                post_shape!()
            ),
            object(
                &[
                    ("category", category()),
                    (
                        "title",
                        json!({"type": "string", "minLength": 1, "maxLength": TITLE_CHARS_MAX,
                               "description": "One line, e.g. \"Ladder to lend\"."}),
                    ),
                    (
                        "body",
                        json!({"type": "string", "maxLength": BODY_CHARS_MAX,
                               "description": "Details; newlines allowed."}),
                    ),
                    ("tags", tags("Lowercase words to find the post by, e.g. [\"tools\"].")),
                    (
                        "ttl_seconds",
                        json!({"type": "integer", "minimum": 1,
                               "description": "How long the post stays up, from now (default: the node's market.default_ttl_seconds)."}),
                    ),
                    (
                        "location",
                        object(
                            &[
                                ("lat", integer_i64(-LAT_MAX, LAT_MAX, "Latitude in microdegrees (degrees x 1e6).")),
                                ("lng", integer_i64(-LNG_MAX, LNG_MAX, "Longitude in microdegrees (degrees x 1e6).")),
                                (
                                    "label",
                                    json!({"type": "string", "maxLength": LABEL_CHARS_MAX,
                                           "description": "A place people know, e.g. \"Corner shop\"."}),
                                ),
                            ],
                            &["lat", "lng", "label"],
                        ),
                    ),
                    (
                        "client_id",
                        json!({"type": "string", "minLength": 1, "maxLength": CLIENT_ID_CHARS_MAX,
                               "description": "Any unique string; the same one again returns the first post."}),
                    ),
                ],
                &["category", "title"],
            ),
        ),
    ]
}

const NODE_ID_EXAMPLE: &str = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f";

/// An object schema with these properties (in this order) and no others.
fn object(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn category() -> Value {
    let names: Vec<Value> = Category::ALL
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    json!({"type": "string", "enum": names,
           "description": "offer (something to give or lend), request (something needed), info (news), emergency."})
}

fn tags(description: &str) -> Value {
    json!({"type": "array", "maxItems": TAGS_MAX,
           "items": {"type": "string", "minLength": 1, "maxLength": TAG_CHARS_MAX},
           "description": description})
}

fn integer(min: usize, max: usize, description: &str) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max, "description": description})
}

fn integer_i64(min: i64, max: i64, description: &str) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max, "description": description})
}

/// Checks `value` against `schema`: the subset of JSON Schema the tools'
/// schemas use (object with properties, required and no others; string
/// with enum and length in characters; integer with bounds; array with
/// items and a count), so the schemas shown are the checks made. `at` is
/// the argument's path (`""` for the arguments object itself).
fn check(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let name = if at.is_empty() {
        "the arguments".to_owned()
    } else {
        format!("`{at}`")
    };
    let shown = || {
        let mut s = value.to_string();
        if s.chars().count() > 60 {
            s = s.chars().take(60).collect::<String>() + "...";
        }
        s
    };
    match schema["type"].as_str() {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                return Err(format!("{name} must be a JSON object, got {}", shown()));
            };
            let empty = Map::new();
            let properties = schema["properties"].as_object().unwrap_or(&empty);
            let join = |prefix: &str, key: &str| {
                if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                }
            };
            if let Some(unknown) = obj.keys().find(|k| !properties.contains_key(*k)) {
                let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown argument `{}`; the arguments are {}",
                    join(at, unknown),
                    known.join(", ")
                ));
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !obj.contains_key(key) {
                    return Err(format!("`{}` is required", join(at, key)));
                }
            }
            for (key, v) in obj {
                check(&properties[key], v, &join(at, key))?;
            }
            Ok(())
        }
        Some("string") => {
            let Some(s) = value.as_str() else {
                return Err(format!("{name} must be a string, got {}", shown()));
            };
            if let Some(allowed) = schema["enum"].as_array() {
                if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    return Err(format!(
                        "{name} must be one of {}, got {}",
                        names.join(", "),
                        shown()
                    ));
                }
            }
            let n = s.chars().count() as u64;
            let min = schema["minLength"].as_u64().unwrap_or(0);
            let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
            if n < min || n > max {
                return Err(if min == max {
                    format!("{name} must be {min} characters, got {n}")
                } else if max == u64::MAX {
                    format!("{name} must be at least {min} characters, got {n}")
                } else {
                    format!("{name} must be {min} to {max} characters, got {n}")
                });
            }
            Ok(())
        }
        Some("integer") => {
            let n = match (value.as_i64(), value.as_u64()) {
                (Some(n), _) => i128::from(n),
                (None, Some(n)) => i128::from(n),
                _ => return Err(format!("{name} must be a whole number, got {}", shown())),
            };
            let min = schema["minimum"].as_i64().map(i128::from);
            let max = schema["maximum"].as_i64().map(i128::from);
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                let range = match (min, max) {
                    (Some(a), Some(b)) => format!("from {a} to {b}"),
                    (Some(a), None) => format!("at least {a}"),
                    (None, Some(b)) => format!("at most {b}"),
                    (None, None) => String::new(),
                };
                return Err(format!("{name} must be {range}, got {n}"));
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return Err(format!("{name} must be an array, got {}", shown()));
            };
            let max = schema["maxItems"].as_u64().unwrap_or(u64::MAX);
            if items.len() as u64 > max {
                return Err(format!(
                    "{name} holds at most {max} items, got {}",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        // A schema this checker does not know accepts anything; the node
        // checks the params again anyway.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::services::market::{GetParams, PostParams, SearchParams};
    use crate::core::views::market::ListQuery;

    /// A value valid under `schema` with every property set: the example
    /// when the schema has one, else the smallest value its bounds allow.
    fn full_example(schema: &Value) -> Value {
        if let Some(e) = schema["examples"].get(0) {
            return e.clone();
        }
        match schema["type"].as_str() {
            Some("object") => Value::Object(
                schema["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), full_example(v)))
                    .collect(),
            ),
            Some("string") => match schema["enum"].get(0) {
                Some(e) => e.clone(),
                None => json!("a".repeat(
                    usize::try_from(schema["minLength"].as_u64().unwrap_or(1).max(1)).unwrap_or(1)
                )),
            },
            Some("integer") => json!(schema["minimum"].as_i64().unwrap_or(0).max(1)),
            Some("array") => json!([full_example(&schema["items"])]),
            _ => Value::Null,
        }
    }

    /// Every tool's schema names exactly fields its node method takes:
    /// an example with every argument set passes the schema check and
    /// decodes into the method's params type (which refuses unknown
    /// fields), and one without a required argument does neither.
    #[test]
    fn tool_schemas_are_the_methods_params() {
        /// The params decoded by the method's type and encoded again: a
        /// key the type does not have is refused or dropped.
        fn decodes(method: &str, v: &Value) -> Result<Value, String> {
            fn again<T: serde::de::DeserializeOwned + serde::Serialize>(
                v: &Value,
            ) -> Result<Value, String> {
                let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
                serde_json::to_value(t).map_err(|e| e.to_string())
            }
            match method {
                market::LIST => again::<ListQuery>(v),
                market::SEARCH => again::<SearchParams>(v),
                market::GET => again::<GetParams>(v),
                market::POST => again::<PostParams>(v),
                other => panic!("no params type known for {other}"),
            }
        }
        let tools = tools();
        assert_eq!(tools.len(), 4);
        for t in &tools {
            let full = full_example(&t.input_schema);
            assert_eq!(check(&t.input_schema, &full, ""), Ok(()), "{}", t.name);
            let decoded =
                decodes(t.method, &full).unwrap_or_else(|e| panic!("{}: {full}: {e}", t.name));
            for (key, value) in full.as_object().into_iter().flatten() {
                // A single category is the one-element list the listing keeps.
                let as_list = json!([value]);
                assert!(
                    &decoded[key] == value || (key == "category" && decoded[key] == as_list),
                    "{}: `{key}` is not a param: {} vs {value}",
                    t.name,
                    decoded[key]
                );
            }
            for required in t.input_schema["required"].as_array().into_iter().flatten() {
                let mut missing = full.clone();
                let key = required.as_str().unwrap_or_default();
                if let Some(o) = missing.as_object_mut() {
                    o.remove(key);
                }
                assert!(check(&t.input_schema, &missing, "").is_err());
                assert!(decodes(t.method, &missing).is_err(), "{}: {key}", t.name);
            }
            assert!(crate::core::services::descriptor(t.method).is_some());
        }
        let post = tools.iter().find(|t| t.name == "market_post");
        assert!(
            post.is_some_and(|t| t.writes),
            "market_post needs the token"
        );
        assert!(tools.iter().filter(|t| t.writes).count() == 1);
    }

    /// Bad arguments are named with what was expected.
    #[test]
    fn argument_checks_say_what_is_wrong() {
        let tools = tools();
        let schema = |name: &str| {
            tools
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.input_schema.clone())
                .unwrap_or_default()
        };
        let post = schema("market_post");
        let cases = [
            (json!({"title": "x"}), "`category` is required"),
            (
                json!({"category": "sale", "title": "x"}),
                "`category` must be one of offer, request, info, emergency, got \"sale\"",
            ),
            (
                json!({"category": "offer", "title": ""}),
                "`title` must be 1 to 120 characters, got 0",
            ),
            (
                json!({"category": "offer", "title": "x", "colour": "red"}),
                "unknown argument `colour`",
            ),
            (
                json!({"category": "offer", "title": "x", "tags": ["ok", 3]}),
                "`tags[1]` must be a string, got 3",
            ),
            (
                json!({"category": "offer", "title": "x", "location": {"lat": 1, "lng": 2}}),
                "`location.label` is required",
            ),
            (
                json!({"category": "offer", "title": "x", "location": {"lat": 91_000_000, "lng": 0, "label": ""}}),
                "`location.lat` must be from -90000000 to 90000000, got 91000000",
            ),
            (json!(["offer"]), "the arguments must be a JSON object"),
        ];
        for (args, expected) in cases {
            let err = check(&post, &args, "").err().unwrap_or_default();
            assert!(err.contains(expected), "{args}: {err}");
        }
        let list = schema("market_list");
        let err = check(&list, &json!({"limit": "ten"}), "")
            .err()
            .unwrap_or_default();
        assert!(err.contains("`limit` must be a whole number"), "{err}");
        let err = check(&list, &json!({"limit": 0}), "")
            .err()
            .unwrap_or_default();
        assert!(err.contains("from 1 to 200"), "{err}");
    }

    /// The client's version is kept when this server speaks it; any other
    /// gets the newest, which the client may then refuse.
    #[test]
    fn initialize_negotiates_the_version() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), "2024-11-05");
        assert_eq!(negotiate("2099-01-01"), "2025-06-18");
        let mut s = Server::new(|_: &str, _: Value, _: bool| Ok(json!({})));
        let a = s.handle(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2024-11-05", "capabilities": {}}}));
        let a = a.unwrap_or_default();
        assert_eq!(a["result"]["protocolVersion"], json!("2024-11-05"), "{a}");
        // 2024-11-05 has no tool titles nor structured content.
        let list = s
            .handle(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .unwrap_or_default();
        assert!(list["result"]["tools"][0].get("title").is_none(), "{list}");
        let a = s
            .handle(json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}}))
            .unwrap_or_default();
        assert_eq!(a["error"]["code"], json!(INVALID_PARAMS), "{a}");
    }

    /// Tool errors from the node are turned into text that says what to
    /// do; a node that is not a member is "not yet admitted".
    #[test]
    fn node_refusals_read_as_actions() {
        let refused = |code: &str, message: &str| HttpRpcError::Refused {
            code: code.to_owned(),
            number: -32001,
            message: message.to_owned(),
        };
        let text = describe(&refused(
            "unauthorized",
            "this node (ab) is not a member of community cd; ask an anchor to run `hearth member add ab`",
        ));
        assert!(
            text.starts_with("not yet admitted: ") && text.contains("member add"),
            "{text}"
        );
        let text = describe(&refused("storage_full", "the disk is full"));
        assert!(text.contains("disk is full"), "{text}");
        let text = describe(&HttpRpcError::NotRunning {
            addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
        });
        assert!(
            text.contains("not running") && text.contains("`hearth run`"),
            "{text}"
        );
    }

    /// Protocol errors: a request before `initialize`, a batch, a bad id,
    /// a wrong `jsonrpc`, an unknown method; notifications and responses
    /// are never answered.
    #[test]
    fn protocol_errors_and_silent_messages() {
        let mut s = Server::new(|_: &str, _: Value, _: bool| Ok(json!({})));
        let code = |a: Option<Value>| a.map(|a| a["error"]["code"].clone());
        assert_eq!(
            code(s.handle(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))),
            Some(json!(INVALID_REQUEST))
        );
        assert_eq!(code(s.handle(json!([]))), Some(json!(INVALID_REQUEST)));
        assert_eq!(
            code(s.handle(json!({"jsonrpc": "2.0", "id": [1], "method": "ping"}))),
            Some(json!(INVALID_REQUEST))
        );
        assert_eq!(
            code(s.handle(json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}))),
            Some(json!(INVALID_REQUEST))
        );
        assert_eq!(
            code(s.handle(json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}))),
            Some(json!(METHOD_NOT_FOUND))
        );
        assert_eq!(
            s.handle(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            None
        );
        assert_eq!(
            s.handle(json!({"jsonrpc": "2.0", "id": 7, "result": {}})),
            None
        );
        let pong = s
            .handle(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}))
            .unwrap_or_default();
        assert_eq!(pong, json!({"jsonrpc": "2.0", "id": "p", "result": {}}));
    }

    /// A line over the bound is skipped to its end, and the next line is
    /// read whole.
    #[test]
    fn an_overlong_line_is_skipped() {
        let mut input = vec![b'x'; LINE_BYTES_MAX + 10];
        input.extend_from_slice(b"\n{\"a\":1}\r\nlast");
        let mut input = io::Cursor::new(input);
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut input, &mut buf).ok(), Some(Line::TooLong));
        assert_eq!(read_line(&mut input, &mut buf).ok(), Some(Line::Message));
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(read_line(&mut input, &mut buf).ok(), Some(Line::Message));
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut input, &mut buf).ok(), Some(Line::End));
    }
}
