//! The `hearth` binary end to end: real processes on temporary data dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hearth_node::cli::cbor_seq;
use hearth_proto::VerifiedEvent;
use serde_json::Value;
use tempfile::TempDir;

/// One node's data dir, and the binary run against it.
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

    /// A node that founded "Lindenhof Street" and is its anchor.
    fn founder() -> Node {
        let n = Node::new();
        n.ok(&["community", "create", "--name", "Lindenhof Street"]);
        n
    }

    /// The command with a clean environment: no HEARTH_* or RUST_LOG from
    /// the machine running the tests.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
        c.env_clear().arg("--data-dir").arg(&self.dir).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
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

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs a command that must fail with exit status 1; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "hearth {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    fn node_id(&self) -> String {
        self.json(&["status"])["node_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn post(&self, category: &str, title: &str, tags: &[&str]) -> String {
        let mut args = vec!["post", "--category", category, "--title", title];
        for t in tags {
            args.extend_from_slice(&["--tag", t]);
        }
        self.json(&args)["post"]["id"].as_str().unwrap().to_owned()
    }

    fn titles(&self) -> Vec<String> {
        let list = self.json(&["list"]);
        list["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_owned())
            .collect()
    }

    fn export(&self, file: &Path) -> Vec<u8> {
        self.ok(&["log", "export", file.to_str().unwrap()]);
        std::fs::read(file).unwrap()
    }
}

fn temp_file(name: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join(name);
    (tmp, path)
}

/// `init` writes a 0600 key file of 64 hex characters and prints the node ID; a second `init` refuses.
#[test]
fn init_creates_a_private_key_file() {
    let n = Node::new();
    let printed = n.ok(&["init"]);
    let key = n.dir.join("identity.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert_eq!(printed.trim(), n.node_id());
    assert!(n.fails(&["init"]).contains("refusing to overwrite"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

/// A key file that group or others may read is refused with a fix to run.
#[test]
fn key_file_readable_by_others_is_refused() {
    let n = Node::new();
    n.ok(&["init"]);
    let key = n.dir.join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = n.fails(&["status"]);
    assert!(err.contains("identity.key has mode 0644"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

/// A post made after `community create` shows in `list --json` with its normalised tags.
#[test]
fn post_then_list_json_shows_the_post() {
    let n = Node::founder();
    let id = n.post("offer", "Ladder to lend", &["Tools", "garden"]);
    let list = n.json(&["list"]);
    let posts = list["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["id"], id.as_str());
    assert_eq!(posts[0]["title"], "Ladder to lend");
    assert_eq!(posts[0]["category"], "offer");
    assert_eq!(posts[0]["tags"], serde_json::json!(["tools", "garden"]));
    assert_eq!(posts[0]["author"], n.node_id().as_str());
    let status = n.json(&["status"]);
    assert_eq!(status["community"]["name"], "Lindenhof Street");
    assert_eq!(status["community"]["level"], "anchor");
    assert_eq!(status["community"]["posts_live"], 1);
}

/// Filters, `get` and `search` find the post they should and no other.
#[test]
fn list_filters_get_and_search_answer_from_the_view() {
    let n = Node::founder();
    let water = n.post("request", "Water canisters", &["water"]);
    n.post("offer", "Ladder", &["tools"]);
    let offers = n.json(&["list", "--category", "offer"]);
    assert_eq!(offers["posts"].as_array().unwrap().len(), 1);
    let tagged = n.json(&["list", "--tag", "WATER"]);
    assert_eq!(tagged["posts"][0]["id"], water.as_str());
    let found = n.json(&["search", "canister"]);
    assert_eq!(found["mode"], "keyword");
    assert_eq!(found["results"].as_array().unwrap().len(), 1);
    assert_eq!(n.json(&["get", &water])["title"], "Water canisters");
    assert!(n
        .fails(&["get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"])
        .contains("error: not_found: "));
}

/// Posting twice with one `--client-id` publishes one post and returns it twice.
#[test]
fn post_with_same_client_id_twice_gives_one_post() {
    let n = Node::founder();
    let args = [
        "post",
        "--category",
        "info",
        "--title",
        "Street party",
        "--client-id",
        "party-1",
    ];
    let first = n.json(&args);
    let second = n.json(&args);
    assert_eq!(first["created"], true);
    assert_eq!(second["created"], false);
    assert_eq!(first["post"]["id"], second["post"]["id"]);
    assert_eq!(n.titles(), vec!["Street party"]);
}

/// The author can update and then end a post; it leaves `list` and `get` reports why.
#[test]
fn author_updates_and_expires_own_post() {
    let n = Node::founder();
    let id = n.post("offer", "Ladder", &[]);
    let updated = n.json(&["update", &id, "--title", "Long ladder", "--tag", "tools"]);
    assert_eq!(updated["title"], "Long ladder");
    assert_eq!(updated["tags"], serde_json::json!(["tools"]));
    let receipt = n.json(&["expire", &id, "--reason", "fulfilled"]);
    assert_eq!(receipt["expired_now"], true);
    assert!(n.titles().is_empty());
    let post = n.json(&["get", &id]);
    assert_eq!(post["status"], "expired");
    assert_eq!(post["expired_reason"], "fulfilled");
    // Again: nothing new is signed.
    assert_eq!(n.json(&["expire", &id])["expired_now"], false);
}

/// A node that imported the community but was never admitted cannot post: `unauthorized`, not a member.
#[test]
fn unadmitted_node_cannot_post() {
    let anchor = Node::founder();
    anchor.post("offer", "Ladder", &[]);
    let (_tmp, file) = temp_file("log.cbor");
    anchor.export(&file);
    let stranger = Node::new();
    stranger.ok(&["log", "import", file.to_str().unwrap()]);
    assert_eq!(
        stranger.titles(),
        vec!["Ladder"],
        "reads work before admission"
    );
    let err = stranger.fails(&["post", "--category", "info", "--title", "Hello"]);
    assert!(err.starts_with("error: unauthorized: "), "{err}");
    assert!(err.contains("is not a member"), "{err}");
    assert!(stranger.titles() == vec!["Ladder"]);
}

/// `member add` by a member who is not an anchor is `unauthorized`; by the anchor it admits.
#[test]
fn member_add_by_non_anchor_is_unauthorized() {
    let anchor = Node::founder();
    let member = Node::new();
    member.ok(&["init"]);
    anchor.ok(&["member", "add", &member.node_id()]);
    let (_tmp, file) = temp_file("log.cbor");
    anchor.export(&file);
    member.ok(&["log", "import", file.to_str().unwrap()]);
    assert_eq!(member.json(&["status"])["community"]["level"], "member");
    member.post("request", "Drill", &[]);
    let other = Node::new();
    other.ok(&["init"]);
    let err = member.fails(&["member", "add", &other.node_id()]);
    assert!(err.starts_with("error: unauthorized: "), "{err}");
    assert!(err.contains("only an anchor"), "{err}");
}

/// A member cannot end another member's post for a reason only its author may give.
#[test]
fn expire_by_non_author_is_unauthorized() {
    let anchor = Node::founder();
    let member = Node::new();
    member.ok(&["init"]);
    anchor.ok(&["member", "add", &member.node_id()]);
    let id = anchor.post("offer", "Ladder", &[]);
    let (_tmp, file) = temp_file("log.cbor");
    anchor.export(&file);
    member.ok(&["log", "import", file.to_str().unwrap()]);
    let err = member.fails(&["expire", &id, "--reason", "fulfilled"]);
    assert!(err.starts_with("error: unauthorized: "), "{err}");
    assert_eq!(member.titles(), vec!["Ladder"]);
}

/// Export, import into an empty dir, export again: the same bytes.
#[test]
fn export_import_export_is_byte_stable() {
    let anchor = Node::founder();
    let member = Node::new();
    member.ok(&["init"]);
    anchor.ok(&["member", "add", &member.node_id(), "--level", "trusted"]);
    let a = anchor.post("offer", "Ladder", &["tools"]);
    anchor.post("request", "Water canisters", &["water"]);
    anchor.ok(&[
        "update",
        &a,
        "--body",
        "3 m",
        "--lat",
        "-33856784",
        "--lng",
        "151215297",
    ]);
    let b = anchor.post("info", "Street party", &[]);
    anchor.ok(&["expire", &b]);
    let (_tmp, file) = temp_file("first.cbor");
    let first = anchor.export(&file);
    // A CBOR sequence of every event, each valid, in (lamport, hash) order.
    let (items, broken) = cbor_seq::split(&first);
    assert!(broken.is_none());
    let keys: Vec<_> = items
        .iter()
        .map(|i| VerifiedEvent::decode(i.bytes).unwrap().key())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        keys.len() as u64,
        anchor.json(&["status"])["community"]["events"]
            .as_u64()
            .unwrap()
    );

    let restored = Node::new();
    let report = restored.json(&["log", "import", file.to_str().unwrap()]);
    assert_eq!(report["rejected"], serde_json::json!([]));
    assert_eq!(
        report["imported"].as_u64().unwrap() + 1,
        report["items"].as_u64().unwrap()
    );
    // Exported to stdout this time: the same bytes either way.
    let again = restored.run(&["log", "export", "-"]);
    assert!(again.status.success());
    assert_eq!(again.stdout, first);
    assert_eq!(restored.titles(), anchor.titles());
    // Importing the same file again changes nothing and is not an error.
    let report = restored.json(&["log", "import", file.to_str().unwrap()]);
    assert_eq!(report["imported"], 0);
}

/// A corrupted event is named with its reason, the valid ones are imported, and the exit status is 1.
#[test]
fn import_rejects_a_corrupted_event_and_keeps_the_rest() {
    let anchor = Node::founder();
    anchor.post("offer", "Ladder to lend", &[]);
    anchor.post("request", "Water canisters", &[]);
    let (_tmp, file) = temp_file("log.cbor");
    let mut bytes = anchor.export(&file);
    let at = bytes.windows(6).position(|w| w == b"Ladder").unwrap();
    bytes[at] = b'B'; // "Badder": same length, so the signature no longer matches
    std::fs::write(&file, &bytes).unwrap();

    let restored = Node::new();
    let err = restored.fails(&["log", "import", file.to_str().unwrap()]);
    let line = err
        .lines()
        .find(|l| l.starts_with("rejected event #2 (hash "))
        .unwrap();
    assert!(line.contains("signature does not verify"), "{err}");
    assert!(err.contains("error: 1 of 3 events"), "{err}");
    assert_eq!(restored.titles(), vec!["Water canisters"]);
}

/// Events of another community are rejected by name.
#[test]
fn import_of_another_community_is_rejected() {
    let ours = Node::founder();
    let theirs = Node::founder();
    theirs.post("offer", "Ladder", &[]);
    let (_tmp, file) = temp_file("log.cbor");
    theirs.export(&file);
    let err = ours.fails(&["log", "import", file.to_str().unwrap()]);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("belongs to community"))
            .count(),
        2,
        "{err}"
    );
    assert!(ours.titles().is_empty());
}

/// An unknown key in config.toml fails every command, naming the key and the file.
#[test]
fn unknown_config_key_names_key_and_file() {
    let n = Node::founder();
    let path = n.dir.join("config.toml");
    std::fs::write(&path, "[market]\ndefault_ttl_secs = 60\n").unwrap();
    let err = n.fails(&["list"]);
    assert!(err.contains("default_ttl_secs"), "{err}");
    assert!(err.contains(&format!("{}:2:", path.display())), "{err}");
}

/// `HEARTH_MARKET_ENABLED=false` disables the market: reads answer `unavailable`.
#[test]
fn env_override_disables_the_market() {
    let n = Node::founder();
    let out = n
        .cmd(&["list"])
        .env("HEARTH_MARKET_ENABLED", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: unavailable: "), "{err}");
}

/// A command without a community explains how to get one; a usage error exits 2.
#[test]
fn missing_community_and_usage_errors_are_explained() {
    let n = Node::new();
    n.ok(&["init"]);
    let err = n.fails(&["list"]);
    assert!(err.contains("hearth community create"), "{err}");
    let out = n.run(&["post", "--category", "gift", "--title", "x"]);
    assert_eq!(out.status.code(), Some(2));
}
