//! `hearth reply/claim/accept/msg/inbox` end to end: two data dirs that
//! exchange their logs by export and import (as sync would).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

struct Node {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Node {
    fn new() -> Node {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("hearth");
        Node { _tmp: tmp, dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .env_clear()
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hearth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "hearth {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn node_id(&self) -> String {
        self.json(&["status"])["node_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Imports everything `from` holds.
    fn pull(&self, from: &Node) {
        let tmp = TempDir::new().unwrap();
        let file = tmp.path().join("log.cbor");
        from.ok(&["log", "export", file.to_str().unwrap()]);
        self.ok(&["log", "import", file.to_str().unwrap()]);
    }
}

/// B claims A's offer and writes to A; A sees the claim, reads the message,
/// accepts, and the post leaves the list fulfilled by B; accepting a claim
/// on someone else's post is refused.
#[test]
fn claim_message_accept_through_the_cli() {
    let a = Node::new();
    a.ok(&["community", "create", "--name", "Lindenhof Street"]);
    let b = Node::new();
    b.ok(&["init"]);
    let b_id = b.node_id();
    a.ok(&["member", "add", &b_id]);
    let post = a.json(&["post", "--category", "offer", "--title", "Wasserkanister"])["post"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.pull(&a);
    let claim = b.json(&["claim", &post, "--note", "Ich hätte gern einen"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.ok(&["reply", &post, "Schön!"]);
    b.ok(&["msg", &a.node_id(), "Wann kann ich ihn holen?"]);
    // B cannot accept on A's post: B has no post with that id of its own.
    let err = b.fails(&["accept", &post, &claim]);
    assert!(err.contains("error: not_found: "), "{err}");

    a.pull(&b);
    let thread = a.json(&["inbox", "--post", &post]);
    assert_eq!(thread["thread"]["claims"][0]["claim"]["id"], claim.as_str());
    assert_eq!(thread["thread"]["replies"][0]["body"], "Schön!");
    let text = a.ok(&["inbox", "--with", &b_id]);
    assert!(text.contains("Wann kann ich ihn holen?"), "{text}");
    let list = a.json(&["inbox"]);
    assert_eq!(list["conversations"][0]["with"], b_id.as_str());

    a.ok(&["accept", &post, &claim]);
    let thread = a.json(&["inbox", "--post", &post]);
    assert_eq!(thread["fulfilled_by"], b_id.as_str());
    assert_eq!(a.json(&["list"])["posts"].as_array().unwrap().len(), 0);
}
