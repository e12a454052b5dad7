//! `hearth run` as a person uses it: two processes on loopback, an invite,
//! a join, an admission, posts both ways, and a clean SIGINT stop. Across
//! processes there is no event to await, so each wait polls the node's own
//! answer a bounded number of times and fails loudly when it runs out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");
/// Polls of 100 ms: a 30 s guard against hangs.
const POLLS: usize = 300;

fn hearth(dir: &Path, args: &[&str]) -> Output {
    Command::new(HEARTH)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = hearth(dir, args);
    assert!(
        out.status.success(),
        "hearth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn start(dir: &Path, extra: &[&str]) -> Child {
    let child = Command::new(HEARTH)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--sync-interval-seconds",
            "1",
            // Several nodes at once: none takes the default HTTP port.
            "--no-http",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll(
        || hearth(dir, &["--json", "status"]).status.success() && dir.join("node.sock").exists(),
        "node start",
    );
    child
}

fn poll(mut done: impl FnMut() -> bool, what: &str) {
    for _ in 0..POLLS {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("gave up waiting for {what}");
}

fn titles(dir: &Path) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(dir, &["--json", "list"])).unwrap();
    let mut t: Vec<String> = v["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect();
    t.sort();
    t
}

fn stop(mut child: Child) {
    // SIGINT: the node snapshots, flushes and exits 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "node exited with {status}");
}

/// First run founds a community; a second device joins by invite, is
/// refused until admitted, then posts flow both ways through the running
/// nodes' local sockets; both stop cleanly.
#[test]
fn invite_join_admit_and_post_between_two_running_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let node_a = start(&a, &["--name", "Lindenhof"]);
    let invite = ok(&a, &["community", "invite"]).trim().to_owned();
    assert!(invite.starts_with("hearth-invite:"));
    let joined: serde_json::Value =
        serde_json::from_str(&ok(&b, &["--json", "join", &invite])).unwrap();
    let b_id = joined["node_id"].as_str().unwrap().to_owned();
    let node_b = start(&b, &[]);

    // Not admitted yet: the running node refuses its own user's post.
    let refused = hearth(&b, &["post", "--category", "offer", "--title", "too early"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("unauthorized") && err.contains("not a member"),
        "{err}"
    );

    ok(&a, &["member", "add", &b_id]);
    poll(
        || {
            hearth(
                &b,
                &["post", "--category", "request", "--title", "Need rope"],
            )
            .status
            .success()
        },
        "admission to reach b",
    );
    ok(
        &a,
        &[
            "post",
            "--category",
            "offer",
            "--title",
            "Spare tent",
            "--tag",
            "camping",
        ],
    );
    poll(
        || titles(&a) == ["Need rope", "Spare tent"],
        "b's post on a",
    );
    poll(
        || titles(&b) == ["Need rope", "Spare tent"],
        "a's post on b",
    );
    let status: serde_json::Value = serde_json::from_str(&ok(&b, &["--json", "status"])).unwrap();
    assert_eq!(status["level"], "member");
    assert!(!status["peers"].as_array().unwrap().is_empty());
    stop(node_a);
    stop(node_b);
    // After the stop the data dir works directly again, with everything kept.
    assert_eq!(titles(&b), ["Need rope", "Spare tent"]);
}

/// A second `hearth run` on the same data dir is refused with a reason.
#[test]
fn second_node_on_the_same_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let node = start(&a, &[]);
    let out = Command::new(HEARTH)
        .arg("--data-dir")
        .arg(&a)
        .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use") || err.contains("already running"),
        "{err}"
    );
    stop(node);
}

/// A damaged invite is refused with a clear reason and nothing is written.
#[test]
fn damaged_invite_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("b");
    for bad in ["hello", "hearth-invite:zz", "hearth-invite:a1"] {
        let out = hearth(&b, &["join", bad]);
        assert!(!out.status.success(), "{bad}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    assert!(!b.join("genesis.cbor").exists());
}
