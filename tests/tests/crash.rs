//! Durability under SIGKILL: every local append that returned is on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::ops::Bound;
use std::process::{Command, Stdio};

use hearth_node::core::{Config, Node};
use hearth_node::store::{EventStore, SledStore};
use hearth_proto::EventId;
use hearth_tests::{genesis, identity};

/// A child taking received batches and appending local posts between
/// them is killed mid-stream, at several points; each time the store
/// reopens cleanly and holds every post whose append had returned, and
/// received events stored before it.
#[test]
fn killed_writer_loses_no_returned_append() {
    // Kill points spread over the first few flush batches of received
    // events (40 received per post, a flush every 4,096): before the first
    // batch flush, around it, and after several.
    for (run, kill_after) in [7_usize, 95, 101, 230, 333].into_iter().enumerate() {
        kill_and_check(run, kill_after);
    }
}

fn kill_and_check(run: usize, kill_after: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<EventId> = Vec::new();
    // Wait (on the child's own output, not a timer) for the returned appends.
    while acked.len() < kill_after {
        let line = lines.next().expect("child ended early").unwrap();
        acked.push(line.parse().unwrap());
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flush
    child.wait().unwrap();
    // Lines already in the pipe were printed after their append returned.
    acked.extend(
        lines
            .map_while(Result::ok)
            .filter_map(|l| l.parse::<EventId>().ok()),
    );
    eprintln!("run {run}: killed after {} acknowledged posts", acked.len());

    let anchor = identity(1);
    let genesis = genesis(&anchor, "Crash Street").unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // One scan of the reopened log, every event re-checked (the store keeps
    // no id index: `get_by_id` would scan once per post).
    let stored: Vec<EventId> = store
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(|e| e.unwrap().event().id)
        .collect();
    for id in &acked {
        assert_eq!(
            stored.iter().filter(|s| *s == id).count(),
            1,
            "acknowledged post {id} lost"
        );
    }
    let node = Node::new(anchor, &genesis, store, Config::default(), 1).unwrap();
    // Each local append flushes the store, so the received events taken
    // before the last acknowledged post are durable too: 40 per post.
    assert!(
        node.log().store().len() as usize > acked.len() * 41,
        "genesis, every acked post and the received events before each"
    );
    for id in &acked {
        assert!(
            !node.views().market.find(id).is_empty(),
            "post {id} missing from the view"
        );
    }
}
