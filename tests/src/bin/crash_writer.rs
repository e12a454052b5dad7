//! Child process of the crash test: takes received events in sync-sized
//! batches the way a running node does (`receive_batch`, verified on a
//! second thread by `VerifyAhead`, flushed every `FLUSH_BATCH_EVENTS`)
//! and, between batches, appends a local post, printing its id once
//! `append_local` has returned. The parent kills it with SIGKILL at a
//! point of its choosing and checks every printed post survived.

use std::io::Write;

use anyhow::Context;
use hearth_node::core::bus::Caller;
use hearth_node::core::services::market::PostParams;
use hearth_node::core::{Config, Node, Source};
use hearth_node::net::verify_ahead::VerifyAhead;
use hearth_node::store::SledStore;
use hearth_proto::{Category, Event, EventId, MemberProfile, Payload};
use hearth_tests::{genesis, identity, FIXED_NOW_MS};

/// Upper bound on appends, so a child that is never killed still ends.
const APPENDS_MAX: u64 = 100_000;
/// Received events taken before each local post: a few per flush batch.
const RECEIVED_PER_POST: u64 = 40;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: crash_writer DATA_DIR")?;
    let anchor = identity(1);
    let genesis = genesis(&anchor, "Crash Street")?;
    let store = SledStore::open(std::path::Path::new(&dir)).context("open store")?;
    let mut node = Node::new(anchor.clone(), &genesis, store, Config::default(), 1)?;
    node.share_verified(VerifyAhead::spawn()?);
    // The anchor's own events from its other device, arriving by sync.
    let from = Source::Sync(hearth_tests::identity(2).node_id());
    let community = node.community();
    let mut out = std::io::stdout().lock();
    for i in 0..APPENDS_MAX {
        let batch = (0..RECEIVED_PER_POST)
            .map(|k| {
                let n = i * RECEIVED_PER_POST + k;
                let event = Event {
                    id: EventId::from_parts(FIXED_NOW_MS + n, u128::from(n) + 1),
                    ts: FIXED_NOW_MS + n,
                    author: anchor.node_id(),
                    lamport: 1_000_000 + n,
                    community,
                    payload: Payload::Profile(MemberProfile {
                        name: format!("device {n}"),
                    }),
                };
                Ok(event.sign(&anchor)?.bytes().to_vec())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        node.receive_batch(&batch, from);
        while node.poll_output().is_some() {}
        let receipt = node
            .market_post(
                FIXED_NOW_MS + i,
                Caller::Local,
                PostParams {
                    category: Category::Info,
                    title: format!("post {i}"),
                    body: "crash test".into(),
                    tags: vec![],
                    ttl_seconds: None,
                    location: None,
                    client_id: Some(format!("c{i}")),
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The append has returned: the event is durable. Only now say so.
        writeln!(out, "{}", receipt.post.id)?;
        out.flush()?;
    }
    Ok(())
}
