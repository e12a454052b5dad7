//! `hearth name NAME`: set this node's display name (a signed profile
//! event every member's node shows beside this node's ID).

use clap::Args;

use crate::cli::{render, Ctx};
use crate::core::services::membership::{ProfileParams, ProfileReceipt, PROFILE};

#[derive(Debug, Args)]
pub struct NameArgs {
    /// Your display name, 1 to 40 characters, e.g. "Ana (no. 14)".
    pub name: String,
}

pub fn name(ctx: &mut Ctx, args: NameArgs) -> anyhow::Result<()> {
    let receipt: ProfileReceipt = ctx.call(PROFILE, &ProfileParams { name: args.name }, true)?;
    ctx.out.show(&receipt, |w| {
        if receipt.changed {
            writeln!(
                w,
                "your display name is now {}",
                render::line(&receipt.name)
            )
        } else {
            writeln!(
                w,
                "your display name is already {}; nothing new published",
                render::line(&receipt.name)
            )
        }
    })
}
