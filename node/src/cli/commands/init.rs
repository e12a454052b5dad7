//! `hearth init`: create this device's identity.

use serde::Serialize;

use crate::cli::Ctx;

#[derive(Debug, Serialize)]
struct Initialised {
    node_id: String,
    identity_file: String,
}

/// Creates the identity key; refuses if the data dir already has one.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    if ctx.dir.has_identity() {
        let existing = ctx.dir.load_identity()?;
        anyhow::bail!(
            "{} already holds an identity (node id {}); refusing to overwrite it",
            ctx.dir.root().display(),
            existing.node_id()
        );
    }
    let identity = ctx.dir.create_identity()?;
    let report = Initialised {
        node_id: identity.node_id().to_hex(),
        identity_file: ctx.dir.identity_path().display().to_string(),
    };
    ctx.out.show(&report, |w| writeln!(w, "{}", report.node_id))
}
