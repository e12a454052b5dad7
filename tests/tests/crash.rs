//! Durability under SIGKILL: every local append that returned is on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use hearth_node::core::{Config, Node};
use hearth_node::store::{EventStore, SledStore};
use hearth_proto::EventId;
use hearth_tests::{genesis, identity};

/// A child appending in a loop is killed mid-stream; the store reopens
/// cleanly and holds every event whose append had returned.
#[test]
fn killed_writer_loses_no_returned_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<EventId> = Vec::new();
    // Wait (on the child's own output, not a timer) for 300 returned appends.
    while acked.len() < 300 {
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

    let anchor = identity(1);
    let genesis = genesis(&anchor, "Crash Street").unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    for id in &acked {
        assert_eq!(
            store.get_by_id(id).unwrap().len(),
            1,
            "acknowledged post {id} lost"
        );
    }
    let node = Node::new(anchor, &genesis, store, Config::default(), 1).unwrap();
    assert!(
        node.log().store().len() as usize > acked.len(),
        "genesis and every acked post"
    );
    for id in &acked {
        assert!(
            !node.views().market.find(id).is_empty(),
            "post {id} missing from the view"
        );
    }
}
