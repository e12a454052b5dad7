//! Child process of the crash test: appends local posts to a sled store in
//! a loop and prints each event's hash once `append_local` has returned.
//! The parent kills it with SIGKILL and checks every printed hash survived.

use std::io::Write;

use anyhow::Context;
use hearth_node::core::bus::Caller;
use hearth_node::core::services::market::PostParams;
use hearth_node::core::{Config, Node};
use hearth_node::store::SledStore;
use hearth_proto::Category;
use hearth_tests::{genesis, identity, FIXED_NOW_MS};

/// Upper bound on appends, so a child that is never killed still ends.
const APPENDS_MAX: u64 = 100_000;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: crash_writer DATA_DIR")?;
    let anchor = identity(1);
    let genesis = genesis(&anchor, "Crash Street")?;
    let store = SledStore::open(std::path::Path::new(&dir)).context("open store")?;
    let mut node = Node::new(anchor, &genesis, store, Config::default(), 1)?;
    let mut out = std::io::stdout().lock();
    for i in 0..APPENDS_MAX {
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
