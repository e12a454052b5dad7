//! `hearth member add`: an anchor admits a node or changes its level.

use clap::{Subcommand, ValueEnum};
use hearth_proto::{Level, NodeId};
use serde::Serialize;

use crate::cli::{finish_write, now_ms, Ctx};

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Set a node's level: admit it (member), trust it, make it an anchor,
    /// or remove it. Only an anchor's word counts.
    Add {
        /// The node's ID (64 hex characters, as `hearth init` printed it).
        node_id: NodeId,
        #[arg(long, value_enum, default_value_t = LevelArg::Member)]
        level: LevelArg,
    },
}

/// Levels as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LevelArg {
    Member,
    Trusted,
    Anchor,
    Removed,
}

impl From<LevelArg> for Level {
    fn from(l: LevelArg) -> Level {
        match l {
            LevelArg::Member => Level::Member,
            LevelArg::Trusted => Level::Trusted,
            LevelArg::Anchor => Level::Anchor,
            LevelArg::Removed => Level::Removed,
        }
    }
}

#[derive(Debug, Serialize)]
struct MemberSet {
    member: NodeId,
    level: Level,
    event: String,
}

pub fn run(ctx: &mut Ctx, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::Add { node_id, level } => add(ctx, node_id, level.into()),
    }
}

fn add(ctx: &mut Ctx, member: NodeId, level: Level) -> anyhow::Result<()> {
    let (mut node, _) = ctx.open_node()?;
    let event = node.set_member(now_ms(), member, level)?;
    finish_write(&mut node)?;
    let report = MemberSet {
        member,
        level,
        event: event.hash().to_hex(),
    };
    ctx.out.show(&report, |w| {
        writeln!(w, "set {member} to {level} (event {})", report.event)
    })
}
