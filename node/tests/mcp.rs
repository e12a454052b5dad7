//! `hearth mcp` as an assistant's host runs it: a child process spoken to
//! over pipes, one JSON-RPC message per line, in front of a real `hearth run`
//! serving its HTTP API on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::{json, Value};

const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");
/// A guard against a hung child, not a synchronisation: every wait below
/// is for a line the child writes.
const LINE_WAIT_MAX: Duration = Duration::from_secs(120);

/// Lines of a child's stdout, read on a thread so the pipe never fills.
fn lines_of(out: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A `hearth run` with its HTTP API on an ephemeral loopback port.
struct Node {
    child: Child,
    dir: PathBuf,
    http: SocketAddr,
    lines: Receiver<String>,
    _tmp: tempfile::TempDir,
}

impl Node {
    /// The first run of a data dir: it founds a community, as its anchor.
    fn start() -> Node {
        Node::start_with(&["--name", "Mill Lane"])
    }

    /// A node that joined another's community from an invite and was not
    /// admitted (the anchor's data dir never runs).
    fn start_unadmitted() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let anchor = tmp.path().join("anchor");
        let hearth = |args: &[&str]| {
            let out = Command::new(HEARTH)
                .arg("--data-dir")
                .arg(&anchor)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            out.stdout
        };
        hearth(&["init"]);
        hearth(&["community", "create", "--name", "Mill Lane"]);
        let invite: Value =
            serde_json::from_slice(&hearth(&["--json", "community", "invite"])).unwrap();
        Node::start_with(&["--join", invite["invite"].as_str().unwrap()])
    }

    fn start_with(first_run: &[&str]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        let mut child = Command::new(HEARTH)
            .arg("--data-dir")
            .arg(&dir)
            .arg("run")
            .args(first_run)
            .args([
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--http",
                "127.0.0.1:0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let http = loop {
            let line = lines
                .recv_timeout(LINE_WAIT_MAX)
                .expect("hearth run ended before printing its HTTP API");
            if let Some(url) = line.strip_prefix("HTTP API: http://") {
                break url.split('/').next().unwrap().parse().unwrap();
            }
        };
        Node {
            child,
            dir,
            http,
            lines,
            _tmp: tmp,
        }
    }

    /// SIGINT, then waits for the clean stop.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        assert!(self.child.wait().unwrap().success());
        // The child has exited, so its stdout is at EOF: read until the
        // reader thread hangs up (`try_iter` raced it for the last lines).
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(10)) {
            rest.push(line);
        }
        assert!(rest.iter().any(|l| l == "stopped cleanly"), "{rest:?}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `hearth mcp` child over pipes.
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line it wrote on stdout, to check they are all protocol.
    seen: Vec<String>,
    next_id: u64,
}

impl Mcp {
    /// `hearth --data-dir DIR mcp [--http ADDR]`.
    fn start(dir: &Path, http: Option<SocketAddr>) -> Mcp {
        let mut cmd = Command::new(HEARTH);
        cmd.arg("--data-dir").arg(dir).arg("mcp");
        if let Some(http) = http {
            cmd.args(["--http", &http.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        Mcp {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            next_id: 1,
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn recv(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(LINE_WAIT_MAX)
            .expect("hearth mcp wrote no answer");
        self.seen.push(line.clone());
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Sends a request and returns its whole answer (checked for its id).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_line(&msg.to_string());
        let answer = self.recv();
        assert_eq!(answer["id"], json!(id), "{answer}");
        assert_eq!(answer["jsonrpc"], json!("2.0"), "{answer}");
        answer
    }

    fn initialize(&mut self) -> Value {
        let a = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "test", "version": "1"}}),
        );
        self.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        a
    }

    /// `tools/call`: the result (a tool result, error or not).
    fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let a = self.request("tools/call", json!({"name": tool, "arguments": arguments}));
        assert!(a.get("error").is_none(), "{tool}: {a}");
        a["result"].clone()
    }

    /// A tool call that must succeed: its JSON, checked to be the same in
    /// the text content and in `structuredContent`.
    fn ok(&mut self, tool: &str, arguments: Value) -> Value {
        let r = self.call(tool, arguments);
        assert_eq!(r["isError"], json!(false), "{tool}: {r}");
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(r["content"][0]["type"], json!("text"));
        assert_eq!(text, r["structuredContent"], "{r}");
        text
    }

    /// A tool call that must fail as a tool error: its message.
    fn tool_error(&mut self, tool: &str, arguments: Value) -> String {
        let r = self.call(tool, arguments);
        assert_eq!(r["isError"], json!(true), "{tool}: {r}");
        r["content"][0]["text"].as_str().unwrap().to_owned()
    }

    /// Closes stdin and returns the exit status, after checking that every
    /// line it wrote on stdout was a JSON-RPC message.
    fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.try_iter());
        for line in &self.seen {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout carried a non-protocol line ({e}): {line}"));
            assert_eq!(v["jsonrpc"], json!("2.0"), "{line}");
        }
        status
    }
}

/// A free loopback port nothing listens on (bound, then released).
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `initialize` agrees on 2025-06-18 and says it serves tools; after the
/// `initialized` notification (never answered), `tools/list` gives the four
/// market tools, each with an object input schema naming its required
/// arguments and a description of what it returns.
#[test]
fn initialize_then_tools_list_gives_four_tools_with_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mcp = Mcp::start(tmp.path(), Some(dead_addr()));
    let init = mcp.initialize();
    assert_eq!(
        init["result"]["protocolVersion"],
        json!("2025-06-18"),
        "{init}"
    );
    assert_eq!(init["result"]["serverInfo"]["name"], json!("hearth"));
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let list = mcp.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["market_get", "market_list", "market_post", "market_search"]
    );
    let required = |name: &str| -> Vec<String> {
        let t = tools.iter().find(|t| t["name"] == json!(name)).unwrap();
        assert_eq!(t["inputSchema"]["type"], json!("object"), "{t}");
        assert_eq!(
            t["inputSchema"]["additionalProperties"],
            json!(false),
            "{t}"
        );
        assert!(
            t["description"].as_str().unwrap().contains("Returns JSON"),
            "{t}"
        );
        serde_json::from_value(t["inputSchema"]["required"].clone()).unwrap()
    };
    assert_eq!(required("market_post"), ["category", "title"]);
    assert_eq!(required("market_search"), ["query"]);
    assert_eq!(required("market_get"), ["id"]);
    assert!(required("market_list").is_empty());
    let post = tools
        .iter()
        .find(|t| t["name"] == json!("market_post"))
        .unwrap();
    assert_eq!(
        post["inputSchema"]["properties"]["category"]["enum"],
        json!(["offer", "request", "info", "emergency"])
    );
    assert_eq!(post["annotations"]["readOnlyHint"], json!(false));
    assert!(mcp.finish().success());
}

/// Through a running node: `market_post` publishes, `market_search` and
/// `market_list` find the post, `market_get` returns it by id, and the
/// same `client_id` again returns the first post instead of a second. The
/// node's address comes from `api.listen` in the data dir's config.
#[test]
fn post_then_search_list_and_get_through_the_running_node() {
    let node = Node::start();
    std::fs::write(
        node.dir.join("config.toml"),
        format!("[api]\nlisten = \"{}\"\n", node.http),
    )
    .unwrap();
    let mut mcp = Mcp::start(&node.dir, None);
    mcp.initialize();
    let args = json!({"category": "offer", "title": "Ladder to lend",
        "body": "Three metres, aluminium.", "tags": ["tools"], "client_id": "mcp-1"});
    let receipt = mcp.ok("market_post", args.clone());
    assert_eq!(receipt["created"], json!(true), "{receipt}");
    let post = &receipt["post"];
    let id = post["id"].as_str().unwrap().to_owned();
    assert_eq!(post["title"], json!("Ladder to lend"));
    assert_eq!(post["status"], json!("active"));
    let found = mcp.ok("market_search", json!({"query": "ladder"}));
    let ids: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["post"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "{found}");
    let none = mcp.ok("market_search", json!({"query": "piano"}));
    assert_eq!(none["results"], json!([]), "{none}");
    let listed = mcp.ok(
        "market_list",
        json!({"tags": ["tools"], "category": "offer"}),
    );
    assert_eq!(listed["posts"][0]["id"], json!(id), "{listed}");
    let got = mcp.ok("market_get", json!({"id": id}));
    assert_eq!(got["title"], json!("Ladder to lend"), "{got}");
    assert_eq!(got["body"], json!("Three metres, aluminium."));
    let again = mcp.ok("market_post", args);
    assert_eq!(again["created"], json!(false), "{again}");
    assert_eq!(again["post"]["id"], json!(id));
    assert!(mcp.finish().success());
}

/// Bad arguments are tool errors (`isError`) naming the argument and what
/// it takes, checked before the node is asked; ids the node cannot read or
/// does not hold are tool errors with the node's reason; an unknown tool is
/// a JSON-RPC invalid-params error listing the tools; and a write without
/// the token file says where the token comes from.
#[test]
fn bad_arguments_and_unknown_posts_are_tool_errors() {
    let node = Node::start();
    let mut mcp = Mcp::start(&node.dir, Some(node.http));
    mcp.initialize();
    let text = mcp.tool_error(
        "market_post",
        json!({"category": "sale", "title": "Ladder"}),
    );
    assert!(
        text.contains("`category`") && text.contains("offer, request, info, emergency"),
        "{text}"
    );
    let text = mcp.tool_error("market_post", json!({"category": "offer"}));
    assert!(text.contains("`title` is required"), "{text}");
    let text = mcp.tool_error("market_list", json!({"limit": "ten"}));
    assert!(text.contains("`limit` must be a whole number"), "{text}");
    let text = mcp.tool_error("market_search", json!({"query": "x", "sort": "new"}));
    assert!(text.contains("unknown argument `sort`"), "{text}");
    let text = mcp.tool_error("market_get", json!({"id": "01HZY3Q6V0Z8K7W2M4N5P6R7S8"}));
    assert!(text.starts_with("not found: "), "{text}");
    let text = mcp.tool_error("market_get", json!({"id": "UUUUUUUUUUUUUUUUUUUUUUUUUU"}));
    assert!(
        text.starts_with("the node refused the arguments: ") && text.contains("id"),
        "{text}"
    );
    let a = mcp.request(
        "tools/call",
        json!({"name": "market_delete", "arguments": {}}),
    );
    assert_eq!(a["error"]["code"], json!(-32602), "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("market_list"),
        "{a}"
    );
    std::fs::remove_file(node.dir.join("api.token")).unwrap();
    let text = mcp.tool_error(
        "market_post",
        json!({"category": "offer", "title": "Ladder"}),
    );
    assert!(
        text.contains("api.token") && text.contains("hearth run"),
        "{text}"
    );
    let listed = mcp.ok("market_list", json!({}));
    assert_eq!(listed["posts"], json!([]), "reads need no token: {listed}");
    assert!(mcp.finish().success());
}

/// When the node stops, a tool call is a tool error saying the node is not
/// running and how to start it, and the MCP server itself keeps serving.
#[test]
fn a_stopped_node_is_a_clear_tool_error_and_the_server_goes_on() {
    let mut node = Node::start();
    let mut mcp = Mcp::start(&node.dir, Some(node.http));
    mcp.initialize();
    mcp.ok("market_list", json!({}));
    node.stop();
    let text = mcp.tool_error("market_list", json!({}));
    assert!(
        text.contains("not running") && text.contains("`hearth run`"),
        "{text}"
    );
    let pong = mcp.request("ping", json!({}));
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(mcp.finish().success());
}

/// A line that is not JSON gets a JSON-RPC parse error (id null) and the
/// server keeps going: a request before `initialize` is refused, an unknown
/// method is method-not-found, a ping answers; end of stdin ends it with
/// exit 0, and stdout carried nothing but protocol messages.
#[test]
fn garbage_is_a_parse_error_and_the_server_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mcp = Mcp::start(tmp.path(), Some(dead_addr()));
    mcp.send_line("this is not json {");
    let a = mcp.recv();
    assert_eq!(a["error"]["code"], json!(-32700), "{a}");
    assert_eq!(a["id"], Value::Null, "{a}");
    let a = mcp.request("tools/list", json!({}));
    assert_eq!(a["error"]["code"], json!(-32600), "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize"),
        "{a}"
    );
    mcp.initialize();
    let a = mcp.request("resources/list", json!({}));
    assert_eq!(a["error"]["code"], json!(-32601), "{a}");
    mcp.send_line("");
    mcp.send_line("[1, 2]");
    let a = mcp.recv();
    assert_eq!(a["error"]["code"], json!(-32600), "{a}");
    let a = mcp.request("ping", json!({}));
    assert_eq!(a["result"], json!({}), "{a}");
    assert!(mcp.finish().success());
}

/// A node that joined but was not admitted: `market_post` is a tool error
/// that says so and what to do, while reads work.
#[test]
fn a_post_before_admission_says_not_yet_admitted() {
    let node = Node::start_unadmitted();
    let mut mcp = Mcp::start(&node.dir, Some(node.http));
    mcp.initialize();
    let text = mcp.tool_error(
        "market_post",
        json!({"category": "offer", "title": "Ladder"}),
    );
    assert!(
        text.starts_with("not yet admitted: ") && text.contains("hearth member add"),
        "{text}"
    );
    let listed = mcp.ok("market_list", json!({}));
    assert_eq!(listed["posts"], json!([]), "{listed}");
    assert!(mcp.finish().success());
}
