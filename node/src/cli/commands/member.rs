//! `hearth member add`: an anchor admits a node or changes its level.
//! `hearth member list`: who belongs, at which level, under which name.

use crate::cli::{render, Ctx};
use crate::core::services::membership::{
    MemberList, MemberSetParams, MemberSetReceipt, MEMBER_LIST, MEMBER_SET,
};
use clap::{Subcommand, ValueEnum};
use hearth_proto::{Level, NodeId};

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
    /// List the community's members: ID, level and display name.
    List,
}

/// `member.list` takes no params: an empty map.
#[derive(serde::Serialize)]
struct NoParams {}

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

pub fn run(ctx: &mut Ctx, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::Add { node_id, level } => add(ctx, node_id, level.into()),
        MemberCommand::List => list(ctx),
    }
}

fn list(ctx: &mut Ctx) -> anyhow::Result<()> {
    let list: MemberList = ctx.call(MEMBER_LIST, &NoParams {}, false)?;
    ctx.out.show(&list, |w| {
        // Names and the community name are event text: escaped.
        writeln!(
            w,
            "{} (active members: {})",
            render::line(&list.community),
            list.members.iter().filter(|m| m.level.is_active()).count()
        )?;
        for m in &list.members {
            let name = m.name.as_deref().unwrap_or("-");
            writeln!(w, "{}  {:<8}  {}", m.id, m.level, render::line(name))?;
        }
        Ok(())
    })
}

fn add(ctx: &mut Ctx, member: NodeId, level: Level) -> anyhow::Result<()> {
    let receipt: MemberSetReceipt =
        ctx.call(MEMBER_SET, &MemberSetParams { member, level }, true)?;
    ctx.out.show(&receipt, |w| {
        if receipt.changed {
            writeln!(w, "set {member} to {level}")
        } else {
            writeln!(w, "{member} is already {level}; nothing new published")
        }
    })
}
