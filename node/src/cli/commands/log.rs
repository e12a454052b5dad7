//! `hearth log export` and `hearth log import`: the event log as a file.
//!
//! An export is a CBOR sequence (RFC 8742) of every stored event's encoded
//! bytes in `(lamport, hash)` order, so it depends only on the set of events:
//! export, import into an empty dir and export again gives the same bytes.
//!
//! An import verifies every event as if a peer had sent it (`Node::receive`)
//! and stores the valid ones; each rejected event is named on stderr with its
//! reason, and the command fails if any was rejected. Into a data dir with
//! no community it first adopts the community whose genesis is in the file
//! (a new device restoring a backup).

use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use hearth_proto::payload::TYPE_GENESIS;
use hearth_proto::{hash_bytes, EventHash, SignedEvent};
use serde::Serialize;

use crate::cli::cbor_seq::{self, Item};
use crate::cli::data_dir::Genesis;
use crate::cli::{finish_write, Ctx};
use crate::core::{IngestError, Ingested, Source};
use crate::store::EventStore;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Write every event, in (lamport, hash) order, as a CBOR sequence.
    Export {
        /// Output file; `-` or nothing for stdout.
        file: Option<PathBuf>,
    },
    /// Verify and store the events of a CBOR sequence (`-` for stdin).
    /// Into a data dir with no community, adopts the file's community.
    Import { file: PathBuf },
}

pub fn run(ctx: &mut Ctx, command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Export { file } => export(ctx, file.filter(|f| f.as_os_str() != "-")),
        LogCommand::Import { file } => import(ctx, &file),
    }
}

#[derive(Debug, Serialize)]
struct Exported {
    events: u64,
    file: String,
}

/// Reads the store directly (no view replay): an export writes nothing.
fn export(ctx: &mut Ctx, file: Option<PathBuf>) -> anyhow::Result<()> {
    let genesis = ctx.dir.load_genesis()?;
    let store = ctx.dir.open_store(&genesis)?;
    let write_events = |w: &mut dyn Write| -> anyhow::Result<u64> {
        if store.is_empty() {
            // genesis.cbor written but the log never opened: the genesis
            // is the whole log.
            w.write_all(genesis.event.bytes())?;
            return Ok(1);
        }
        let mut n = 0;
        for event in store.range(Bound::Unbounded, Bound::Unbounded) {
            let event = event.context("cannot read the event store")?;
            w.write_all(event.bytes())?;
            n += 1;
        }
        w.flush()?;
        Ok(n)
    };
    match file {
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write binary CBOR to a terminal: give a FILE or redirect stdout"
                );
            }
            write_events(ctx.out.raw())?;
            Ok(())
        }
        Some(path) => {
            let mut out = std::io::BufWriter::new(
                fs::File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            let events = write_events(&mut out)
                .and_then(|n| {
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    Ok(n)
                })
                .with_context(|| format!("cannot write {}", path.display()))?;
            let report = Exported {
                events,
                file: path.display().to_string(),
            };
            ctx.out.show(&report, |w| {
                writeln!(w, "exported {} events to {}", report.events, report.file)
            })
        }
    }
}

#[derive(Debug, Serialize)]
struct Rejected {
    /// Position in the file, from 1.
    index: usize,
    /// SHA-256 of the item's bytes (its event hash, were it valid).
    hash: EventHash,
    reason: String,
}

#[derive(Debug, Default, Serialize)]
struct Imported {
    /// Items in the file (up to where it could be read).
    items: usize,
    /// Events newly stored.
    imported: usize,
    /// Events this node already held.
    already_held: usize,
    rejected: Vec<Rejected>,
    /// The community adopted from the file, when the data dir had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    adopted_community: Option<String>,
}

fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        Ok(bytes)
    } else {
        fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

fn import(ctx: &mut Ctx, file: &Path) -> anyhow::Result<()> {
    // Whole file in memory: simple, and items that cannot be decoded can
    // still be skipped by their length. Memory is the file's size.
    let bytes = read_input(file)?;
    let (items, broken) = cbor_seq::split(&bytes);
    let mut report = Imported {
        items: items.len() + usize::from(broken.is_some()),
        ..Imported::default()
    };
    if !ctx.dir.has_genesis() {
        let genesis = adopt(ctx, &items, file)?;
        report.adopted_community = Some(genesis.community.to_hex());
    }
    let (mut node, genesis) = ctx.open_node()?;
    let mut rejected = |index: usize, hash: EventHash, reason: String| {
        // Reasons can quote event text (an unknown field's name).
        eprintln!(
            "rejected event #{index} (hash {hash}): {}",
            crate::cli::render::line(&reason)
        );
        report.rejected.push(Rejected {
            index,
            hash,
            reason,
        });
    };
    // Held pending: a later item (the author's admission) may release them.
    let mut pending = Vec::new();
    let mut imported = 0;
    let mut already_held = 0;
    for item in &items {
        let hash = hash_bytes(item.bytes);
        match node.receive(item.bytes, Source::File) {
            Ok(Ingested::Stored(events)) => imported += events.len(),
            Ok(Ingested::Pending) => pending.push((item.index, hash)),
            Err(IngestError::Duplicate(_)) => already_held += 1,
            Err(IngestError::Store(e)) => {
                return Err(e).context("cannot store imported events");
            }
            Err(e) => rejected(item.index, hash, e.to_string()),
        }
        // No network here: outputs (broadcasts, verdicts) have no taker.
        while node.poll_output().is_some() {}
    }
    for (index, hash) in pending {
        if !node.log().store().contains(&hash)? {
            rejected(
                index,
                hash,
                "its author is not a member of the community (no admission in the file or the log)"
                    .into(),
            );
        }
    }
    if let Some(b) = &broken {
        let rest = &bytes[b.offset..];
        rejected(
            b.index,
            hash_bytes(rest),
            format!(
                "malformed item at byte {} ({}, counting from the item's start); \
                 its end cannot be found, so the last {} bytes of the file are not read",
                b.offset,
                b.error,
                rest.len()
            ),
        );
    }
    finish_write(&mut node)?;
    report.imported = imported;
    report.already_held = already_held;
    let n_rejected = report.rejected.len();
    ctx.out.show(&report, |w| {
        if let Some(c) = &report.adopted_community {
            writeln!(
                w,
                "adopted community {c}  {}",
                crate::cli::render::line(&genesis.name)
            )?;
        }
        writeln!(
            w,
            "imported {} event{} from {} ({} already held, {} rejected)",
            report.imported,
            if report.imported == 1 { "" } else { "s" },
            file.display(),
            report.already_held,
            n_rejected
        )
    })?;
    if n_rejected > 0 {
        bail!(
            "{n_rejected} of {} events in {} rejected",
            report.items,
            file.display()
        );
    }
    Ok(())
}

/// Gives an empty data dir the community founded by the genesis in the
/// file: verifies it, creates an identity if there is none, writes
/// `genesis.cbor`.
fn adopt(ctx: &mut Ctx, items: &[Item<'_>], file: &Path) -> anyhow::Result<Genesis> {
    let mut found: Vec<Genesis> = Vec::new();
    for item in items {
        let Ok(signed) = SignedEvent::decode(item.bytes) else {
            continue;
        };
        if signed.event().payload.type_name() != TYPE_GENESIS {
            continue;
        }
        let Ok(event) = signed.verify() else {
            continue;
        };
        let genesis = Genesis::new(event)?;
        if !found.iter().any(|g| g.community == genesis.community) {
            found.push(genesis);
        }
    }
    let genesis = match found.len() {
        0 => bail!(
            "{} has no community yet and {} holds no valid community.genesis event to adopt",
            ctx.dir.root().display(),
            file.display()
        ),
        1 => found.remove(0),
        n => bail!(
            "{} holds the genesis of {n} communities ({}); import into a data dir of the one you mean",
            file.display(),
            found
                .iter()
                .map(|g| format!("{} {:?}", g.community, g.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // Config before writing anything, as `community create` does.
    ctx.config()?;
    ctx.dir.load_or_create_identity()?;
    ctx.dir.write_genesis(&genesis)?;
    Ok(genesis)
}
