//! `hearth community create`: found a community with this node as its
//! only anchor.

use anyhow::{bail, Context};
use clap::Subcommand;
use hearth_proto::{CommunityId, Event, EventId, Genesis as GenesisData, Payload};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use crate::cli::data_dir::Genesis;
use crate::cli::{finish_write, now_ms, Ctx};
use crate::core::{EventLog, Node};

/// A community name is shown in every member's status line: keep it short.
pub const NAME_CHARS_MAX: usize = 120;

#[derive(Debug, Subcommand)]
pub enum CommunityCommand {
    /// Found a new community; this node becomes its first anchor. Creates
    /// the identity too if there is none.
    Create {
        /// The community's name, e.g. "Lindenhof Street".
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Serialize)]
struct Created {
    community_id: String,
    name: String,
    node_id: String,
    data_dir: String,
}

pub fn run(ctx: &mut Ctx, command: CommunityCommand) -> anyhow::Result<()> {
    match command {
        CommunityCommand::Create { name } => create(ctx, &name),
    }
}

fn create(ctx: &mut Ctx, name: &str) -> anyhow::Result<()> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        bail!("--name must be 1 to {NAME_CHARS_MAX} characters, got {chars}");
    }
    if ctx.dir.has_genesis() {
        let g = ctx.dir.load_genesis()?;
        bail!(
            "{} already belongs to community {} ({:?}); use another --data-dir",
            ctx.dir.root().display(),
            g.community,
            g.name
        );
    }
    // Config first: a bad config should fail before anything is written.
    let config = ctx.config()?;
    let (identity, _) = ctx.dir.load_or_create_identity()?;
    let now = now_ms();
    let me = identity.node_id();
    // A ULID's random part is 80 bits.
    let mut random = [0u8; 16];
    OsRng.fill_bytes(&mut random[6..]);
    let event = Event {
        id: EventId::from_parts(now, u128::from_be_bytes(random)),
        ts: now,
        author: me,
        lamport: 0,
        community: CommunityId::default(),
        payload: Payload::Genesis(GenesisData {
            name: name.to_owned(),
            anchors: vec![me],
        }),
    }
    .sign(&identity)
    .context("cannot sign the genesis event")?;
    let genesis = Genesis::new(event)?;
    let store = ctx.dir.open_store(&genesis)?;
    if let Some(stored) = EventLog::stored_community(&store)? {
        bail!(
            "the event store {} already holds community {stored} but {} is missing; \
             restore it or use another --data-dir",
            ctx.dir.store_path().display(),
            ctx.dir.genesis_path().display()
        );
    }
    ctx.dir.write_genesis(&genesis)?;
    let mut node = Node::new(identity, &genesis.event, store, config, OsRng.next_u64())
        .context("cannot open the new community's log")?;
    finish_write(&mut node)?;
    let report = Created {
        community_id: genesis.community.to_hex(),
        name: genesis.name.clone(),
        node_id: me.to_hex(),
        data_dir: ctx.dir.root().display().to_string(),
    };
    ctx.out.show(&report, |w| {
        writeln!(w, "community  {}  {}", report.community_id, report.name)?;
        writeln!(w, "anchor     {}  (this node)", report.node_id)?;
        writeln!(w, "data dir   {}", report.data_dir)
    })
}
