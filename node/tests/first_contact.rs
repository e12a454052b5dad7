//! A newcomer's first five minutes, through the real binary: the first
//! `hearth run` says what to do next, `run --join` joins from an invite (or
//! refuses a data dir of another community), and event text written by a
//! hostile member can neither fake lines nor reach the terminal as control
//! sequences. Running nodes are awaited by the lines they print (a reader
//! thread and a bounded `recv_timeout`), never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_proto::{
    Category, CommunityId, Event, EventId, Genesis, Identity, Level, Location, MemberSet, Payload,
    PostContent, PostCreated, VerifiedEvent,
};

const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");
/// Guard against a node that never prints what we await: fail, not hang.
const LINE_WAIT: Duration = Duration::from_secs(60);
/// Polls of 100 ms for a peer to connect: a 30 s guard against hangs.
const PEER_POLLS: usize = 300;

fn hearth(dir: &Path, args: &[&str]) -> Output {
    Command::new(HEARTH)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
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

/// A running `hearth run` whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `hearth run` on loopback, stdin not a terminal.
    fn start(dir: &Path, extra: &[&str]) -> Running {
        let mut cmd = Command::new(HEARTH);
        cmd.arg("--data-dir")
            .arg(dir)
            .args([
                "run",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
                "--no-http",
            ])
            .args(extra)
            .stdin(Stdio::null());
        Running::spawn(cmd)
    }

    /// Spawns `cmd` with its stdout read line by line on a thread.
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// Every line up to and including the first that starts with `prefix`
    /// (after any `^C` a terminal echoed in front of it).
    fn until(&self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(LINE_WAIT) {
                Ok(line) => {
                    let done = line.trim_start_matches("^C").starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line starting with {prefix:?} ({e}); got {seen:#?}"),
            }
        }
    }

    /// SIGTERM, as a service manager stops it: the node exits 0 and says so.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        self.until("stopped cleanly");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "node exited with {status}");
    }
}

fn node_id(dir: &Path) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(dir, &["--json", "status"])).unwrap();
    v["node_id"].as_str().unwrap().to_owned()
}

/// A first run with no terminal and no `--name` founds the default
/// community, says how to rename it, and prints the next steps (post,
/// invite, how another household joins, where the data and the key are,
/// backup) before its one "node" line; a later run prints only that line.
/// Nowhere is a libp2p peer id shown.
#[test]
fn first_run_explains_itself_and_later_runs_print_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let node = Running::start(&dir, &[]);
    let first = node.until("node ").join("\n");
    let id = node_id(&dir);
    let shown_dir = format!("hearth --data-dir {}", dir.display());
    for wanted in [
        "Named it \"My neighbourhood\"",
        "community rename NAME",
        "Next steps",
        &format!("{shown_dir} post --category offer --title"),
        &format!("{shown_dir} community invite"),
        "hearth join <invite>, then hearth run",
        "hearth run --join <invite>",
        &format!("{shown_dir} member add <their node id>"),
        &dir.display().to_string(),
        &dir.join("identity.key").display().to_string(),
        &format!("{shown_dir} backup FILE"),
        &format!("node {id} in community \"My neighbourhood\""),
    ] {
        assert!(first.contains(wanted), "missing {wanted:?} in:\n{first}");
    }
    assert!(!first.contains("12D3KooW"), "a peer id is shown:\n{first}");
    // `status` of the running node names the community, with node ids only.
    let status = ok(&dir, &["status"]);
    assert!(status.contains("My neighbourhood"), "{status}");
    assert!(!status.contains("12D3KooW"), "{status}");
    node.stop();

    let again = Running::start(&dir, &[]);
    let lines = again.until("node ");
    assert_eq!(
        lines,
        vec![format!(
            "node {id} in community \"My neighbourhood\" ({})",
            community_id(&dir)
        )],
        "a later run prints one line"
    );
    again.stop();
}

fn community_id(dir: &Path) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok(dir, &["--json", "status"])).unwrap();
    v["community"]["id"]
        .as_str()
        .or_else(|| v["community"].as_str())
        .unwrap()
        .to_owned()
}

/// A first run given `--name` founds a community of that name and does not
/// suggest renaming it.
#[test]
fn first_run_with_name_uses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let node = Running::start(&dir, &["--name", "Lindenhof Street"]);
    let first = node.until("node ").join("\n");
    assert!(
        first.contains("in community \"Lindenhof Street\""),
        "{first}"
    );
    assert!(!first.contains("rename"), "{first}");
    node.stop();
}

/// On a terminal, the first run asks for the community's name (offering
/// the default), asks again after a name it cannot use, founds the
/// community with the answer, and stops cleanly on Ctrl-C typed at that
/// terminal. Runs under util-linux `script` for a pseudo-terminal; skipped
/// with a message where `script` is missing.
#[test]
fn first_run_on_a_terminal_asks_for_the_name() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (for a pseudo-terminal) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let run = format!(
        "exec {HEARTH} --data-dir {} run --listen /ip4/127.0.0.1/tcp/0 --no-mdns --no-http",
        dir.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &run, "/dev/null"]).stdin(Stdio::piped());
    let mut node = Running::spawn(cmd);
    let mut keys = node.child.stdin.take().unwrap();
    // Typed ahead: the terminal holds the answers until the prompts read them.
    writeln!(keys, "{}", "x".repeat(200)).unwrap();
    writeln!(keys, "Lindenhof Street").unwrap();
    keys.flush().unwrap();
    let first = node.until("node ").join("\n");
    for wanted in [
        "Name of your community [My neighbourhood]:",
        "must be 1 to 120 characters, got 200",
        "in community \"Lindenhof Street\"",
        "Next steps",
    ] {
        assert!(first.contains(wanted), "missing {wanted:?} in:\n{first}");
    }
    assert!(!first.contains("rename"), "{first}");
    // Ctrl-C at the terminal: SIGINT to the node, which stops cleanly.
    keys.write_all(b"\x03").unwrap();
    keys.flush().unwrap();
    node.until("stopped cleanly");
    let status = node.child.wait().unwrap();
    assert!(status.success(), "node exited with {status}");
}

/// A first run refuses a community name with control characters, and
/// `run --join` a damaged invite, each before writing anything: the data
/// dir then has no community (and `status` says how to get one).
#[test]
fn first_run_refuses_a_bad_name_or_invite_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let cases: [(&[&str], &str); 4] = [
        (&["--name", "Lindenhof\nby 3f2a"], "control characters"),
        (&["--name", "   "], "must be 1 to 120 characters, got 0"),
        (
            &["--join", "hearth-invite:zz"],
            "the invite is not valid hex",
        ),
        (
            &["--join", "lindenhof"],
            "an invite starts with \"hearth-invite:\"",
        ),
    ];
    for (args, wanted) in cases {
        let mut all = vec!["run", "--no-mdns"];
        all.extend_from_slice(args);
        let out = hearth(&dir, &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(
            !err.contains("Lindenhof\nby"),
            "the name was echoed raw: {err}"
        );
        assert!(
            !dir.join("genesis.cbor").exists(),
            "{args:?} wrote a community"
        );
    }
    let out = hearth(&dir, &["community", "create", "--name", "x\u{1b}[8m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("x\\e[8m"));
    assert!(!dir.join("genesis.cbor").exists());
}

/// On a terminal, three unusable names in a row end the first run with an
/// error that says to pass `--name`, and found nothing.
#[test]
fn first_run_on_a_terminal_gives_up_after_three_bad_names() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` (for a pseudo-terminal) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let run = format!(
        "exec {HEARTH} --data-dir {} run --no-mdns --no-http",
        dir.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &run, "/dev/null"]).stdin(Stdio::piped());
    let mut node = Running::spawn(cmd);
    let mut keys = node.child.stdin.take().unwrap();
    for _ in 0..3 {
        writeln!(keys, "{}", "x".repeat(121)).unwrap();
    }
    keys.flush().unwrap();
    let lines = node.until("error: no usable community name after 3 tries; pass --name NAME");
    assert_eq!(
        lines.iter().filter(|l| l.contains("got 121")).count(),
        3,
        "{lines:#?}"
    );
    let status = node.child.wait().unwrap();
    assert!(!status.success());
    drop(keys);
    assert!(!dir.join("genesis.cbor").exists());
}

/// An invite from a founded community (no node running, an explicit
/// address) for the tests below.
fn founder(tmp: &Path, name: &str) -> (std::path::PathBuf, String) {
    let dir = tmp.join("founder");
    ok(&dir, &["community", "create", "--name", name]);
    let invite = ok(
        &dir,
        &["community", "invite", "--addr", "/ip4/127.0.0.1/tcp/9"],
    )
    .trim()
    .to_owned();
    (dir, invite)
}

/// `hearth run --join <invite>` on a fresh data dir joins that community
/// (prints the id to admit and what to do meanwhile) and runs, reaching the
/// running founder; its `status` names that peer by short node id, never
/// by libp2p peer id. On the same dir again it just runs, without joining
/// twice.
#[test]
fn run_join_on_a_fresh_dir_joins_then_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (founder_dir, _) = founder(tmp.path(), "Lindenhof Street");
    let founder_node = Running::start(&founder_dir, &[]);
    founder_node.until("node ");
    let founder_id = node_id(&founder_dir);
    let invite = ok(&founder_dir, &["community", "invite"]).trim().to_owned();
    let dir = tmp.path().join("neighbour");
    let node = Running::start(&dir, &["--join", &invite]);
    let first = node.until("node ").join("\n");
    let id = node_id(&dir);
    for wanted in [
        "joined \"Lindenhof Street\"",
        &format!("hearth member add {id}"),
        "wait for an anchor to admit you",
        &format!("node {id} in community \"Lindenhof Street\""),
    ] {
        assert!(first.contains(wanted), "missing {wanted:?} in:\n{first}");
    }
    assert_eq!(community_id(&dir), community_id(&founder_dir));
    // Across processes there is no event to await: poll the node's own
    // answer, bounded (as node/tests/run.rs does).
    let mut status = String::new();
    for _ in 0..PEER_POLLS {
        status = ok(&dir, &["status"]);
        if status.contains(&founder_id[..8]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        status.contains(&format!("  {}  last sync", &founder_id[..8])),
        "{status}"
    );
    assert!(status.contains("Lindenhof Street"), "{status}");
    assert!(!status.contains("12D3KooW"), "{status}");
    node.stop();
    founder_node.stop();

    let again = Running::start(&dir, &["--join", &invite]);
    let lines = again.until("node ");
    assert_eq!(lines.len(), 1, "joined again: {lines:#?}");
    again.stop();
}

/// `hearth run --join` on a data dir of another community refuses before
/// starting, says what to do, and leaves that dir's community as it was;
/// so does `hearth join`.
#[test]
fn run_join_refuses_a_dir_of_another_community() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, invite) = founder(tmp.path(), "Lindenhof Street");
    let dir = tmp.path().join("other");
    ok(&dir, &["community", "create", "--name", "Other Street"]);
    let before = community_id(&dir);
    for args in [
        vec!["run", "--no-mdns", "--join", &invite],
        vec!["join", &invite],
    ] {
        let out = hearth(&dir, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("already belongs to community")
                && err.contains("\"Other Street\"")
                && err.contains("\"Lindenhof Street\"")
                && err.contains("hearth --data-dir DIR run --join <invite>"),
            "{err}"
        );
    }
    assert_eq!(community_id(&dir), before);
    assert!(ok(&dir, &["status"]).contains("Other Street"));
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn sign(who: &Identity, community: CommunityId, lamport: u64, payload: Payload) -> VerifiedEvent {
    let now = now_ms();
    Event {
        id: EventId::from_parts(now, u128::from(lamport) + 1),
        ts: now,
        author: who.node_id(),
        lamport,
        community,
        payload,
    }
    .sign(who)
    .unwrap()
}

const HOSTILE_NAME: &str = "Evil\u{1b}]0;pwned\u{7}Street";
const HOSTILE_TAG: &str = "\u{1b}[8mhidden";

/// A log as a hostile member would make it, signing with the proto API
/// (the local `post` refuses such text): a community whose name sets the
/// terminal's title, and a post whose title fakes a "by" line, whose tag
/// hides text, whose label flips text right to left and whose body tries
/// to start a line at column 0. Returns the file and the anchor's id.
fn hostile_log(path: &Path) -> String {
    let anchor = Identity::from_seed([1; 32]);
    let member = Identity::from_seed([2; 32]);
    let genesis = sign(
        &anchor,
        CommunityId::default(),
        0,
        Payload::Genesis(Genesis {
            name: HOSTILE_NAME.into(),
            anchors: vec![anchor.node_id()],
        }),
    );
    let community = genesis.founded_community().unwrap();
    let admit = sign(
        &anchor,
        community,
        1,
        Payload::MemberSet(MemberSet {
            member: member.node_id(),
            level: Level::Member,
        }),
    );
    let anchor_hex = anchor.node_id().to_hex();
    let fake = format!("{:28}by {}  ·  expires in 6d 23h", "", &anchor_hex[..8]);
    let post = sign(
        &member,
        community,
        2,
        Payload::PostCreated(PostCreated {
            content: Arc::new(PostContent {
                category: Category::Offer,
                title: format!("Free ladder\n{fake}"),
                body: format!("fine\n{fake}\r\u{1b}[2Kstatus      active"),
                tags: vec![HOSTILE_TAG.into()],
                expires_at: now_ms() + 7 * 24 * 3600 * 1000,
                location: Some(Location {
                    lat: 1,
                    lng: 2,
                    label: "\u{202e}txt.exe".into(),
                }),
            }),
            client_id: None,
        }),
    );
    let mut bytes = Vec::new();
    for e in [&genesis, &admit, &post] {
        bytes.extend_from_slice(e.bytes());
    }
    // A copy of the post with an extra envelope key that sets the
    // terminal's title: canonical (the longest key sorts last), so the
    // import rejects it for the unknown field and quotes the key.
    let mut forged = post.bytes().to_vec();
    assert_eq!(forged[0], 0xa9, "an event is a 9-entry map");
    forged[0] = 0xaa;
    let key = "\u{1b}]0;pwned\u{7}";
    forged.push(0x60 | u8::try_from(key.len()).unwrap());
    forged.extend_from_slice(key.as_bytes());
    forged.push(0x00);
    bytes.extend_from_slice(&forged);
    std::fs::write(path, bytes).unwrap();
    anchor_hex
}

/// No raw control or bidi character from an event reaches stdout.
fn assert_clean(what: &str, out: &str) {
    let bad: Vec<char> = out
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} printed raw {bad:?}:\n{out}");
}

/// Event text from a hostile member is escaped in every human output:
/// `list` prints exactly two lines for the post (its title's `\nby <anchor>`
/// shows as `\n`, not as a fake "by" line), `\e[8m` in a tag and
/// `\e]0;..\a` in the community name show as text in `list`, `get`,
/// `search`, `status` (offline and running) and the import's report and
/// rejection lines (a forged copy's unknown field quoted), and a
/// body's lines never start at column 0. `--json` keeps the exact text.
#[test]
fn hostile_event_text_is_escaped_on_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("hostile.cbor");
    let anchor_hex = hostile_log(&file);
    let dir = tmp.path().join("victim");
    let import = hearth(&dir, &["log", "import", file.to_str().unwrap()]);
    assert_eq!(import.status.code(), Some(1), "the forged copy is rejected");
    let imported = String::from_utf8(import.stdout).unwrap();
    assert_clean("import", &imported);
    assert!(
        imported.contains("Evil\\e]0;pwned\\u{7}Street"),
        "{imported}"
    );
    let rejected = String::from_utf8(import.stderr).unwrap();
    assert_clean("import's rejections", &rejected);
    assert!(
        rejected.contains("unknown field `\\e]0;pwned\\u{7}`"),
        "{rejected}"
    );

    let list = ok(&dir, &["list"]);
    assert_clean("list", &list);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "one post is two lines:\n{list}");
    assert!(lines[0].contains("Free ladder\\n"), "{list}");
    assert!(
        lines[0].contains(&format!("by {}", &anchor_hex[..8])),
        "{list}"
    );
    assert!(
        !lines[1].contains(&anchor_hex[..8]),
        "the real by line names the member:\n{list}"
    );
    assert!(lines[0].contains("\\e[8mhidden"), "{list}");
    assert!(lines[1].contains("\\u{202e}txt.exe"), "{list}");

    let v: serde_json::Value = serde_json::from_str(&ok(&dir, &["--json", "list"])).unwrap();
    let post = &v["posts"][0];
    assert_eq!(post["tags"][0], HOSTILE_TAG, "JSON keeps the exact text");
    let id = post["id"].as_str().unwrap().to_owned();

    let get = ok(&dir, &["get", &id]);
    assert_clean("get", &get);
    let field_rows: Vec<&str> = get.lines().filter(|l| !l.starts_with(' ')).collect();
    let fields: Vec<&str> = field_rows
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        fields.iter().filter(|f| **f == "status").count(),
        1,
        "a body line posed as a field:\n{get}"
    );
    assert!(get.contains("\\r\\e[2Kstatus"), "{get}");

    let search = ok(&dir, &["search", "ladder"]);
    assert_clean("search", &search);
    assert!(search.contains("\\e[8mhidden"), "{search}");

    let status = ok(&dir, &["status"]);
    assert_clean("status", &status);
    assert!(status.contains("Evil\\e]0;pwned\\u{7}Street"), "{status}");

    let node = Running::start(&dir, &[]);
    let line = node.until("node ").join("\n");
    assert_clean("run", &line);
    assert!(line.contains("Evil\\e]0;pwned\\u{7}Street"), "{line}");
    let running = ok(&dir, &["status"]);
    assert!(running.contains("(running)"), "{running}");
    assert_clean("running status", &running);
    assert!(running.contains("Evil\\e]0;pwned\\u{7}Street"), "{running}");
    node.stop();
}
