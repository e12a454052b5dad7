//! A full disk, a read-only data dir and a held lock: the store recovers,
//! nothing acknowledged is lost, and every message says what is true.
//!
//! The full-disk tests need a small file system of their own: when running
//! as root they mount an 8 MiB tmpfs (unmounted by a guard, also when the
//! test fails); otherwise they print why they are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use hearth_node::core::bus::{Caller, ErrorCode};
use hearth_node::core::services::market::PostParams;
use hearth_node::core::{Config, Node};
use hearth_node::store::{SledStore, WriteState};
use tempfile::TempDir;

/// Posts tried before a full disk must have refused one: the disk is
/// filled to the last byte first, so what sled already allocated (a few
/// hundred KiB at most) is all it has, and each post is ~12 KB.
const POSTS_UNTIL_FULL_MAX: usize = 400;

/// A body of ~11.7 KB (3,900 three-byte characters, under the 4,000-character
/// limit): few posts fill what sled has left, so every list fits one page.
fn big_body() -> String {
    "€".repeat(3_900)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// `None` (after saying why) when not root or the mount fails.
    fn mount(test: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("SKIPPED {test}: needs root to mount a small tmpfs");
            return None;
        }
        let dir = TempDir::new().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED {test}: mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED {test}: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts read-only (`EROFS` for every write, root included).
    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {mode}: {out:?}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a store thread may still hold a file for a moment.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` to the last byte with one file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // Then byte by byte into the last partial chunk.
    while f.write_all(&[0]).is_ok() {}
    path
}

fn params(title: &str) -> PostParams {
    offer_params(title, big_body())
}

fn sled_node(f: &Fixture, store: SledStore) -> Node<SledStore> {
    Node::new(f.anchor.clone(), &f.genesis, store, Config::default(), 7).unwrap()
}

/// A node whose disk fills keeps answering `market.list`, refuses
/// `market.post` with `storage_full` (the view unchanged), reports the state,
/// and after space is freed accepts a post again without a restart; a
/// reopen then holds every acknowledged post.
#[test]
fn node_refuses_posts_on_full_disk_and_resumes_without_restart() {
    let Some(fs) = Tmpfs::mount("node_refuses_posts_on_full_disk_and_resumes_without_restart")
    else {
        return;
    };
    let f = Fixture::new();
    let store_dir = fs.path().join("store");
    let mut node = sled_node(&f, SledStore::open(&store_dir).unwrap());
    let mut acked = Vec::new();
    for i in 0..5 {
        let title = format!("before {i}");
        node.market_post(NOW, Caller::Local, params(&title))
            .unwrap();
        acked.push(title);
    }
    let filler = fill(fs.path());

    let mut refused = None;
    for i in 0..POSTS_UNTIL_FULL_MAX {
        let title = format!("filling {i}");
        match node.market_post(NOW, Caller::Local, params(&title)) {
            Ok(_) => acked.push(title),
            Err(e) => {
                refused = Some((title, e));
                break;
            }
        }
    }
    let (refused_title, err) = refused.expect("a post must be refused on a full disk");
    assert_eq!(err.code, ErrorCode::StorageFull, "{err}");
    assert!(err.message.contains("free space"), "says what to do: {err}");
    assert_eq!(node.log().write_state(), WriteState::Full);

    // Reads go on, and the view shows exactly what was acknowledged.
    acked.sort();
    assert_eq!(titles(&node, NOW), acked);
    assert!(!titles(&node, NOW).contains(&refused_title));
    // Still full: still refused, still readable.
    let again = node
        .market_post(NOW, Caller::Local, params("still full"))
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::StorageFull);
    assert_eq!(titles(&node, NOW), acked);

    std::fs::remove_file(&filler).unwrap();
    let receipt = node
        .market_post(NOW, Caller::Local, params("after space returned"))
        .expect("writes resume by themselves once space returns");
    assert!(receipt.created);
    assert_eq!(node.log().write_state(), WriteState::Ok);
    acked.push("after space returned".into());
    acked.sort();
    assert_eq!(titles(&node, NOW), acked);

    let store = node.into_store().unwrap();
    drop(store);
    let reopened = sled_node(&f, SledStore::open(&store_dir).unwrap());
    assert_eq!(
        titles(&reopened, NOW),
        acked,
        "every acknowledged post survives"
    );
}

/// The probe on a tick (the log's flush) clears the full state by itself
/// once space returns, with no write needed.
#[test]
fn tick_probe_clears_full_state_when_space_returns() {
    let Some(fs) = Tmpfs::mount("tick_probe_clears_full_state_when_space_returns") else {
        return;
    };
    let f = Fixture::new();
    let mut node = sled_node(&f, SledStore::open(&fs.path().join("store")).unwrap());
    let filler = fill(fs.path());
    let mut full = false;
    for i in 0..POSTS_UNTIL_FULL_MAX {
        if node
            .market_post(NOW, Caller::Local, params(&format!("p{i}")))
            .is_err()
        {
            full = true;
            break;
        }
    }
    assert!(full && node.log().write_state() == WriteState::Full);
    assert!(
        node.log_mut().flush().is_err(),
        "still full: the probe says so"
    );
    std::fs::remove_file(&filler).unwrap();
    node.handle(NOW, hearth_node::core::Input::Tick);
    assert_eq!(node.log().write_state(), WriteState::Ok);
}

/// The `hearth` binary posting onto a full disk: a refusal says
/// `storage_full`; after space is freed every acknowledged post is there
/// and a new post succeeds (sled's leftovers from the failed writes do not
/// brick the store).
#[test]
fn cli_full_disk_refuses_with_storage_full_and_recovers() {
    let Some(fs) = Tmpfs::mount("cli_full_disk_refuses_with_storage_full_and_recovers") else {
        return;
    };
    let dir = fs.path().join("hearth");
    let run = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .env_clear()
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    ok(&["community", "create", "--name", "Lindenhof Street"]);
    let body = big_body();
    let post = |title: &str| {
        run(&[
            "post",
            "--category",
            "offer",
            "--title",
            title,
            "--body",
            &body,
        ])
    };
    let mut acked = vec![];
    for i in 0..3 {
        let t = format!("before {i}");
        ok(&["post", "--category", "offer", "--title", &t]);
        acked.push(t);
    }
    let filler = fill(fs.path());
    let mut refusal = None;
    for i in 0..POSTS_UNTIL_FULL_MAX {
        let t = format!("filling {i}");
        let out = post(&t);
        if out.status.success() {
            acked.push(t);
        } else {
            refusal = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refusal = refusal.expect("a post must be refused on a full disk");
    assert!(refusal.contains("storage_full"), "{refusal}");
    assert!(!refusal.contains("another hearth"), "{refusal}");
    // More commands on the full disk: each failed open can leave sled's
    // unfinished snapshot behind.
    for _ in 0..3 {
        let _ = run(&["list"]);
    }

    std::fs::remove_file(&filler).unwrap();
    let list = ok(&["--json", "list", "--limit", "200"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let mut shown: Vec<String> = list["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect();
    shown.sort();
    acked.sort();
    for t in &acked {
        assert!(shown.contains(t), "acknowledged post {t:?} lost: {shown:?}");
    }
    ok(&[
        "post",
        "--category",
        "offer",
        "--title",
        "after space returned",
    ]);
}

/// A read-only data dir says "read-only" and names the directory, not a
/// lock held by someone else.
#[test]
fn read_only_data_dir_says_so() {
    // Root ignores file modes, so as root the data dir is on a tmpfs
    // remounted read-only; otherwise its modes say read-only.
    let fs = if is_root() {
        match Tmpfs::mount("read_only_data_dir_says_so") {
            Some(fs) => Some(fs),
            None => return,
        }
    } else {
        None
    };
    let tmp = TempDir::new().unwrap();
    let root = match &fs {
        Some(fs) => fs.path().join("hearth"),
        None => tmp.path().join("hearth"),
    };
    let run = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .env_clear()
            .arg("--data-dir")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["community", "create", "--name", "Lindenhof Street"])
        .status
        .success());
    assert!(run(&["post", "--category", "offer", "--title", "ladder"])
        .status
        .success());
    match &fs {
        Some(fs) => fs.remount("ro"),
        None => set_writable(&root, false),
    }
    let out = run(&["list"]);
    match &fs {
        Some(fs) => fs.remount("rw"),
        None => set_writable(&root, true),
    }
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read-only"), "{err}");
    assert!(err.contains(&root.display().to_string()), "{err}");
    assert!(!err.contains("another hearth"), "{err}");
}

fn set_writable(dir: &Path, writable: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if writable { 0o700 } else { 0o500 };
    for entry in walk(dir) {
        let m = if entry.is_dir() {
            mode
        } else if writable {
            0o600
        } else {
            0o400
        };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(m)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            for e in std::fs::read_dir(&out[i]).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    out
}

/// A founded data dir and a runner of `hearth` against it.
fn founded() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("hearth");
    let out = hearth(&dir, &["community", "create", "--name", "Lindenhof Street"]);
    assert!(out.status.success(), "{out:?}");
    (tmp, dir)
}

fn hearth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env_clear()
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// When another process really holds the store's lock, the message asks
/// whether another hearth is using the data dir.
#[test]
fn held_lock_gives_the_another_hearth_hint() {
    let (_tmp, dir) = founded();
    let held = SledStore::open(&dir.join("store")).unwrap();
    let out = hearth(&dir, &["list"]);
    drop(held);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another hearth is using this data dir"),
        "{err}"
    );
}

/// A corrupt store that nobody holds does not blame another hearth.
#[test]
fn corrupt_unlocked_store_gets_no_lock_hint() {
    let (_tmp, dir) = founded();
    assert!(
        hearth(&dir, &["post", "--category", "offer", "--title", "ladder"])
            .status
            .success()
    );
    let store = dir.join("store");
    // Open once more so sled writes a snapshot, then corrupt it.
    assert!(hearth(&dir, &["list"]).status.success());
    let snap = newest_snapshot(&store).expect("sled wrote a snapshot");
    std::fs::write(&snap, b"garbage, not a snapshot").unwrap();
    let out = hearth(&dir, &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the event store"), "{err}");
    assert!(!err.contains("another hearth"), "{err}");
}

fn newest_snapshot(store: &Path) -> Option<PathBuf> {
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
        })
        .collect();
    snaps.sort();
    snaps.pop()
}

/// A running node on a disk that fills: `post` is refused with
/// `storage_full` (exit 1), `status` says `full` and what to do, `list`
/// still answers; once space is freed `status` says `ok` and a post
/// succeeds without a restart; after a clean stop every acknowledged post
/// is in the store.
#[test]
fn running_node_reports_full_disk_and_resumes() {
    let Some(fs) = Tmpfs::mount("running_node_reports_full_disk_and_resumes") else {
        return;
    };
    let dir = fs.path().join("hearth");
    let ok = |args: &[&str]| {
        let out = hearth(&dir, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&ok(&all).stdout).unwrap()
    };
    ok(&["community", "create", "--name", "Lindenhof Street"]);
    let mut node = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env_clear()
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--no-http",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Across processes there is no event to await: poll the node's answer,
    // bounded (30 s).
    let mut up = false;
    for _ in 0..300 {
        if dir.join("node.sock").exists() && hearth(&dir, &["status"]).status.success() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let stop = |mut node: std::process::Child| {
        let _ = Command::new("kill")
            .args(["-INT", &node.id().to_string()])
            .status();
        node.wait().unwrap()
    };
    if !up {
        let _ = node.kill();
        panic!("the node did not start");
    }
    assert_eq!(json(&["status"])["storage"], "ok");

    let mut acked = vec![];
    let filler = fill(fs.path());
    let mut refusal = None;
    let body = big_body();
    for i in 0..POSTS_UNTIL_FULL_MAX {
        let t = format!("filling {i}");
        let out = hearth(
            &dir,
            &[
                "post",
                "--category",
                "offer",
                "--title",
                &t,
                "--body",
                &body,
            ],
        );
        if out.status.success() {
            acked.push(t);
        } else {
            refusal = Some(out);
            break;
        }
    }
    let refusal = refusal.expect("a post must be refused on a full disk");
    assert_eq!(refusal.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refusal.stderr);
    assert!(err.contains("storage_full"), "{err}");

    let status = json(&["status"]);
    assert_eq!(status["storage"], "full", "{status}");
    let note = status["storage_note"].as_str().unwrap_or_default();
    assert!(note.contains("free space on"), "{status}");
    let human = String::from_utf8_lossy(&ok(&["status"]).stdout).into_owned();
    assert!(human.contains("the disk is full"), "{human}");
    let listed = json(&["list", "--limit", "200"])["posts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        listed,
        acked.len(),
        "reads go on, showing what was acknowledged"
    );

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        json(&["status"])["storage"],
        "ok",
        "the probe sees the space"
    );
    ok(&[
        "post",
        "--category",
        "offer",
        "--title",
        "after space returned",
    ]);
    acked.push("after space returned".into());
    let exit = stop(node);
    assert!(exit.success(), "clean stop: {exit}");

    let list = json(&["list", "--limit", "200"]);
    let shown: Vec<&str> = list["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for t in &acked {
        assert!(shown.contains(&t.as_str()), "acknowledged {t:?} lost");
    }
}
