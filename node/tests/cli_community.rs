//! The issue-10 commands end to end on a founder's data dir: `member list`,
//! `name`, `community rename`, `community settings`, and the refusals of
//! removing the last anchor and of control characters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

struct Founder {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Founder {
    fn new() -> Founder {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("hearth");
        let f = Founder { _tmp: tmp, dir };
        f.ok(&["community", "create", "--name", "Lindenhof Street"]);
        f
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

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "hearth {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

/// The founder names itself, renames the community and lowers the limits;
/// `member list` and `community settings` show all of it.
#[test]
fn name_rename_settings_and_member_list() {
    let f = Founder::new();
    assert!(f.ok(&["name", "Ana (no. 14)"]).contains("Ana (no. 14)"));
    assert!(f
        .ok(&["community", "rename", "Lindenhof"])
        .contains("Lindenhof"));
    let s = f.json(&[
        "community",
        "settings",
        "--post-ttl-max-days",
        "7",
        "--posts-per-author-max",
        "20",
    ]);
    assert_eq!(s["post_ttl_max_s"], 7 * 24 * 3600);
    assert_eq!(s["posts_per_author_max"], 20);
    let list = f.json(&["member", "list"]);
    assert_eq!(list["community"], "Lindenhof");
    assert_eq!(list["members"][0]["level"], "anchor");
    assert_eq!(list["members"][0]["name"], "Ana (no. 14)");
    let text = f.ok(&["member", "list"]);
    assert!(text.contains("Lindenhof") && text.contains("anchor") && text.contains("Ana"));
    // A TTL above the new community limit is refused, naming it.
    let err = f.fails(&[
        "post",
        "--category",
        "offer",
        "--title",
        "x",
        "--ttl-seconds",
        "700000",
    ]);
    assert!(err.contains("post_ttl_max_s = 604800"), "{err}");
}

/// The only anchor cannot remove itself; the message says what to do.
#[test]
fn the_last_anchor_cannot_remove_itself() {
    let f = Founder::new();
    let me = f.json(&["status"])["node_id"].as_str().unwrap().to_owned();
    let err = f.fails(&["member", "add", &me, "--level", "removed"]);
    assert!(
        err.contains("you are the last anchor") && err.contains("--level anchor"),
        "{err}"
    );
    assert_eq!(f.json(&["member", "list"])["members"][0]["level"], "anchor");
}

/// A title with a newline and a name with an escape are refused clearly.
#[test]
fn control_characters_are_refused_by_post_and_name() {
    let f = Founder::new();
    let err = f.fails(&["post", "--category", "offer", "--title", "a\nby anchor"]);
    assert!(err.contains("control character"), "{err}");
    let err = f.fails(&["name", "Ana\u{1b}[8m"]);
    assert!(err.contains("control character"), "{err}");
    assert!(f.json(&["list"])["posts"].as_array().unwrap().is_empty());
}

/// People read names: `list` and `get` show the author's display name
/// beside the short id, and `status` shows the community's current name
/// after a rename, not the one in the genesis.
#[test]
fn list_get_and_status_show_names() {
    let f = Founder::new();
    f.ok(&["name", "Ana"]);
    f.ok(&["community", "rename", "Lindenhof Nord"]);
    let post = f.json(&["post", "--category", "offer", "--title", "Ladder to lend"]);
    let id = post["post"]["id"].as_str().unwrap().to_owned();
    let me = post["post"]["author"].as_str().unwrap().to_owned();
    let list = f.ok(&["list"]);
    assert!(
        list.contains(&format!("by Ana ({})", &me[..8])),
        "list names the author: {list}"
    );
    let get = f.ok(&["get", &id]);
    assert!(
        get.contains(&format!("{me}  Ana")),
        "get names the author: {get}"
    );
    let status = f.ok(&["status"]);
    assert!(status.contains("Lindenhof Nord"), "status: {status}");
    assert!(!status.contains("Lindenhof Street"), "status: {status}");
}
