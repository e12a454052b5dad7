//! `hearth log export` and `hearth log import`: the event log as a file.
//!
//! An export is a CBOR sequence (RFC 8742) of every stored event's encoded
//! bytes in `(lamport, hash)` order, so it depends only on the set of events:
//! export, import into an empty dir and export again gives the same bytes.
//!
//! An import streams the file (never holding it whole: see
//! `cbor_seq::SeqReader`), verifies every event as if a peer had sent it
//! (`Node::receive`) and stores the valid ones. Bytes that cannot start an
//! event are skipped as one run. The first [`REJECTIONS_SHOWN`] rejections
//! are named on stderr with their reason, then a count per reason; the
//! command fails if any was rejected. Into a data dir with no community it
//! first adopts the community whose genesis is in the file (a new device).
//!
//! While `hearth run` is up both go through its local socket (pages of the
//! log out, batches of events in); the node runs the same functions
//! (`net::local_api::serve_log`) as the offline path here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use hearth_proto::payload::TYPE_GENESIS;
use hearth_proto::{hash_bytes, EventHash, SignedEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::cbor_seq::{Chunk, SeqReader};
use crate::cli::client::Client;
use crate::cli::data_dir::{DataDir, Genesis};
use crate::cli::{finish_write, Ctx};
use crate::core::Node;
use crate::net::local_api::{
    self, Cursor, Outcome, CONTAINS_BATCH_MAX, IMPORT_BATCH_BYTES, LOG_CONTAINS, LOG_EXPORT,
    LOG_IMPORT,
};
use crate::store::{EventStore, SledStore};

/// Rejections named one by one (stderr and the JSON report); past this
/// only the count per reason grows, so a file of garbage cannot flood the
/// terminal or memory.
pub const REJECTIONS_SHOWN: usize = 20;
/// Events held pending (author not yet a member) whose final state is
/// re-checked at the end: 40 bytes each, so a few MB at most. Past this
/// they are counted as unchecked instead.
pub const PENDING_TRACKED_MAX: usize = 100_000;
/// Distinct communities' genesis events collected when adopting one: only
/// to name them in the refusal when there is more than one.
const GENESES_NAMED_MAX: usize = 8;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Write every event, in (lamport, hash) order, as a CBOR sequence.
    /// Works while `hearth run` is up (through its socket).
    Export {
        /// Output file; `-` or nothing for stdout.
        file: Option<PathBuf>,
    },
    /// Verify and store the events of a CBOR sequence (`-` for stdin).
    /// Into a data dir with no community, adopts the file's community.
    /// Works while `hearth run` is up (the node verifies each event).
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

#[derive(Debug, Deserialize)]
struct Page {
    events: Vec<String>,
    next: Option<Cursor>,
}

/// Calls `each` with every event's bytes in `(lamport, hash)` order: pages
/// through the running node's socket when `hearth run` is up, else reads
/// the store directly (no view replay). Returns the count.
pub fn for_each_event(
    dir: &DataDir,
    mut each: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut n = 0;
    if let Some(mut running) = Client::connect(&dir.socket_path())? {
        let mut after = None;
        loop {
            let answer = running.call(LOG_EXPORT, json!({ "after": after }))?;
            let page: Page = serde_json::from_value(answer)
                .context("unexpected answer from the running node to log.export")?;
            for hex_event in &page.events {
                let bytes = hex::decode(hex_event)
                    .context("the running node sent an event that is not hex")?;
                each(&bytes)?;
                n += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(n),
            }
        }
    }
    let genesis = dir.load_genesis()?;
    let store = dir.open_store(&genesis)?;
    if store.is_empty() {
        // genesis.cbor written but the log never opened: the genesis is
        // the whole log.
        each(genesis.event.bytes())?;
        return Ok(1);
    }
    for event in store.range(Bound::Unbounded, Bound::Unbounded) {
        let event = event.context("cannot read the event store")?;
        each(event.bytes())?;
        n += 1;
    }
    Ok(n)
}

fn export(ctx: &mut Ctx, file: Option<PathBuf>) -> anyhow::Result<()> {
    match file {
        None => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write binary CBOR to a terminal: give a FILE or redirect stdout"
                );
            }
            let dir = ctx.dir.clone();
            let out = ctx.out.raw();
            for_each_event(&dir, |bytes| Ok(out.write_all(bytes)?))?;
            out.flush()?;
            Ok(())
        }
        Some(path) => {
            let mut out = std::io::BufWriter::new(
                fs::File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            let events = for_each_event(&ctx.dir, |bytes| {
                out.write_all(bytes)
                    .with_context(|| format!("cannot write {}", path.display()))
            })?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
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
pub struct Rejected {
    /// Position in the file, from 1 (items and skipped runs).
    pub index: usize,
    /// Byte offset in the file.
    pub offset: u64,
    /// SHA-256 of the item's bytes (its event hash, were it valid); none
    /// for skipped bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<EventHash>,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Imported {
    /// Items in the file, counting each run of skipped bytes as one.
    pub items: usize,
    /// Events newly stored.
    pub imported: usize,
    /// Events this node already held.
    pub already_held: usize,
    /// The first [`REJECTIONS_SHOWN`] rejections.
    pub rejected: Vec<Rejected>,
    /// Every rejection, counted.
    pub rejected_total: usize,
    /// Rejections per reason.
    pub rejected_by_reason: BTreeMap<String, usize>,
    /// Events held pending past [`PENDING_TRACKED_MAX`], not re-checked.
    #[serde(skip_serializing_if = "is_zero")]
    pub pending_unchecked: usize,
    /// The community adopted from the file, when the data dir had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted_community: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Imported {
    fn reject(
        &mut self,
        index: usize,
        offset: u64,
        hash: Option<EventHash>,
        kind: &str,
        reason: String,
    ) {
        self.rejected_total += 1;
        *self.rejected_by_reason.entry(kind.to_owned()).or_default() += 1;
        if self.rejected.len() < REJECTIONS_SHOWN {
            // Reasons can quote event text (an unknown field's name).
            let shown = crate::cli::render::line(&reason);
            match &hash {
                Some(h) => eprintln!("rejected event #{index} (hash {h}): {shown}"),
                None => eprintln!("rejected item #{index} at byte {offset}: {shown}"),
            }
            self.rejected.push(Rejected {
                index,
                offset,
                hash,
                reason,
            });
        }
    }
}

/// Where imported events go: this process's own node, or the running one.
pub trait Sink {
    fn receive(&mut self, events: &[Vec<u8>]) -> anyhow::Result<Vec<Outcome>>;
    fn contains(&mut self, hashes: &[EventHash]) -> anyhow::Result<Vec<bool>>;
}

/// The data dir opened by this process.
#[derive(Debug)]
pub struct Offline<'a>(pub &'a mut Node<SledStore>);

impl Sink for Offline<'_> {
    fn receive(&mut self, events: &[Vec<u8>]) -> anyhow::Result<Vec<Outcome>> {
        let outcomes =
            local_api::receive_batch(self.0, events).context("cannot store imported events")?;
        // No network here: outputs (broadcasts, verdicts) have no taker.
        while self.0.poll_output().is_some() {}
        Ok(outcomes)
    }

    fn contains(&mut self, hashes: &[EventHash]) -> anyhow::Result<Vec<bool>> {
        let store = self.0.log().store();
        hashes
            .iter()
            .map(|h| store.contains(h).context("cannot read the event store"))
            .collect()
    }
}

/// The node `hearth run` runs on this data dir, through its socket.
#[derive(Debug)]
struct Running(Client);

impl Sink for Running {
    fn receive(&mut self, events: &[Vec<u8>]) -> anyhow::Result<Vec<Outcome>> {
        let hex: Vec<String> = events.iter().map(hex::encode).collect();
        let answer = self.0.call(LOG_IMPORT, json!({ "events": hex }))?;
        #[derive(Deserialize)]
        struct Answer {
            outcomes: Vec<Outcome>,
        }
        let answer: Answer = serde_json::from_value(answer)
            .context("unexpected answer from the running node to log.import")?;
        if answer.outcomes.len() != events.len() {
            bail!(
                "the running node answered {} outcomes for {} events",
                answer.outcomes.len(),
                events.len()
            );
        }
        Ok(answer.outcomes)
    }

    fn contains(&mut self, hashes: &[EventHash]) -> anyhow::Result<Vec<bool>> {
        let mut held = Vec::with_capacity(hashes.len());
        for part in hashes.chunks(CONTAINS_BATCH_MAX) {
            let answer = self.0.call(LOG_CONTAINS, json!({ "hashes": part }))?;
            #[derive(Deserialize)]
            struct Answer {
                held: Vec<bool>,
            }
            let answer: Answer = serde_json::from_value(answer)
                .context("unexpected answer from the running node to log.contains")?;
            held.extend(answer.held);
        }
        if held.len() != hashes.len() {
            bail!("the running node answered log.contains for the wrong number of hashes");
        }
        Ok(held)
    }
}

/// Events waiting to be sent to the sink, with where each came from.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<Vec<u8>>,
    meta: Vec<(usize, u64, EventHash)>,
    bytes: usize,
}

/// Streams `input` into `sink`: items in batches of [`IMPORT_BATCH_BYTES`],
/// garbage skipped and counted. `first` is a chunk already read (stdin's
/// peeked genesis). Memory: the reader's buffer, one batch, the bounded
/// report and pending list.
pub fn import_stream(
    sink: &mut dyn Sink,
    reader: &mut SeqReader<Box<dyn Read>>,
    first: Option<Chunk>,
    label: &str,
) -> anyhow::Result<Imported> {
    let mut report = Imported::default();
    let mut pending: Vec<(usize, u64, EventHash)> = Vec::new();
    let mut batch = Batch::default();
    let mut next = first;
    loop {
        let chunk = match next.take() {
            Some(c) => Some(c),
            None => reader
                .next_chunk()
                .with_context(|| format!("cannot read {label}"))?,
        };
        let Some(chunk) = chunk else { break };
        report.items += 1;
        match chunk {
            Chunk::Skipped { index, offset, len } => report.reject(
                index,
                offset,
                None,
                "not an event (skipped bytes)",
                format!(
                    "{len} bytes that do not start an event (an event is a CBOR map of 9 \
                     entries, first byte 0xa9, at most {} bytes) skipped",
                    hearth_proto::EVENT_BYTES_MAX
                ),
            ),
            Chunk::Item {
                index,
                offset,
                bytes,
            } => {
                batch.meta.push((index, offset, hash_bytes(&bytes)));
                batch.bytes += bytes.len();
                batch.events.push(bytes);
                if batch.bytes >= IMPORT_BATCH_BYTES {
                    send(sink, &mut batch, &mut report, &mut pending)?;
                }
            }
        }
    }
    send(sink, &mut batch, &mut report, &mut pending)?;
    // Held pending: a later item (the author's admission) may have
    // released them; what is still not in the log is rejected.
    for part in pending.chunks(CONTAINS_BATCH_MAX) {
        let hashes: Vec<EventHash> = part.iter().map(|(_, _, h)| *h).collect();
        let held = sink.contains(&hashes)?;
        for ((index, offset, hash), held) in part.iter().zip(held) {
            if !held {
                report.reject(
                    *index,
                    *offset,
                    Some(*hash),
                    "author not a member",
                    "its author is not a member of the community \
                     (no admission in the file or the log)"
                        .into(),
                );
            }
        }
    }
    Ok(report)
}

fn send(
    sink: &mut dyn Sink,
    batch: &mut Batch,
    report: &mut Imported,
    pending: &mut Vec<(usize, u64, EventHash)>,
) -> anyhow::Result<()> {
    if batch.events.is_empty() {
        return Ok(());
    }
    let outcomes = sink.receive(&batch.events)?;
    for ((index, offset, hash), outcome) in batch.meta.drain(..).zip(outcomes) {
        match outcome {
            Outcome::Stored { count } => report.imported += count,
            Outcome::Pending if pending.len() < PENDING_TRACKED_MAX => {
                pending.push((index, offset, hash))
            }
            Outcome::Pending => report.pending_unchecked += 1,
            Outcome::Duplicate => report.already_held += 1,
            Outcome::Rejected { kind, reason } => {
                report.reject(index, offset, Some(hash), &kind, reason)
            }
        }
    }
    batch.events.clear();
    batch.bytes = 0;
    Ok(())
}

fn open_input(file: &Path) -> anyhow::Result<Box<dyn Read>> {
    if file.as_os_str() == "-" {
        Ok(Box::new(std::io::stdin()))
    } else {
        let f = fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        Ok(Box::new(f))
    }
}

fn import(ctx: &mut Ctx, file: &Path) -> anyhow::Result<()> {
    let label = file.display().to_string();
    let mut reader = SeqReader::new(open_input(file)?);
    let (report, community_name) = if let Some(client) = Client::connect(&ctx.dir.socket_path())? {
        let report = import_stream(&mut Running(client), &mut reader, None, &label)?;
        (report, None)
    } else {
        let mut adopted = None;
        let mut first = None;
        if !ctx.dir.has_genesis() {
            let genesis = if file.as_os_str() == "-" {
                // stdin cannot be read twice: the genesis must come
                // first, as it does in every export.
                first = reader.next_chunk().context("cannot read stdin")?;
                let found = match &first {
                    Some(Chunk::Item { bytes, .. }) => genesis_of(bytes),
                    _ => None,
                };
                found.with_context(|| {
                    format!(
                        "{} has no community yet and stdin does not start with a valid \
                             community.genesis event to adopt; import the export file by path",
                        ctx.dir.root().display()
                    )
                })?
            } else {
                find_genesis(ctx, file)?
            };
            adopt(ctx, &genesis)?;
            adopted = Some(genesis.community.to_hex());
        }
        let (mut node, genesis) = ctx.open_node()?;
        let mut report = import_stream(&mut Offline(&mut node), &mut reader, first, &label)?;
        finish_write(&mut node)?;
        report.adopted_community = adopted;
        (report, Some(genesis.name))
    };
    if report.rejected_total > REJECTIONS_SHOWN {
        eprintln!(
            "... and {} more rejections ({} in all)",
            report.rejected_total - REJECTIONS_SHOWN,
            report.rejected_total
        );
    }
    if report.rejected_total > 0 {
        let counts: Vec<String> = report
            .rejected_by_reason
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        eprintln!("rejections by reason: {}", counts.join(", "));
    }
    ctx.out.show(&report, |w| {
        if let Some(c) = &report.adopted_community {
            writeln!(
                w,
                "adopted community {c}  {}",
                crate::cli::render::line(&community_name.unwrap_or_default())
            )?;
        }
        writeln!(
            w,
            "imported {} event{} from {} ({} already held, {} rejected)",
            report.imported,
            if report.imported == 1 { "" } else { "s" },
            file.display(),
            report.already_held,
            report.rejected_total
        )
    })?;
    if report.pending_unchecked > 0 {
        eprintln!(
            "warning: {} events were held pending (author not yet a member) past the first \
             {PENDING_TRACKED_MAX}; they are stored once their author is admitted",
            report.pending_unchecked
        );
    }
    if report.rejected_total > 0 {
        bail!(
            "{} of {} events in {} rejected",
            report.rejected_total,
            report.items,
            file.display()
        );
    }
    Ok(())
}

/// The verified genesis in `bytes`, if it is one.
fn genesis_of(bytes: &[u8]) -> Option<Genesis> {
    let signed = SignedEvent::decode(bytes).ok()?;
    if signed.event().payload.type_name() != TYPE_GENESIS {
        return None;
    }
    Genesis::new(signed.verify().ok()?).ok()
}

/// Reads the file once, streaming, for the one community it founds.
fn find_genesis(ctx: &Ctx, file: &Path) -> anyhow::Result<Genesis> {
    let mut reader = SeqReader::new(open_input(file)?);
    let mut found: Vec<Genesis> = Vec::new();
    while let Some(chunk) = reader
        .next_chunk()
        .with_context(|| format!("cannot read {}", file.display()))?
    {
        let Chunk::Item { bytes, .. } = chunk else {
            continue;
        };
        if let Some(genesis) = genesis_of(&bytes) {
            if found.len() < GENESES_NAMED_MAX
                && !found.iter().any(|g| g.community == genesis.community)
            {
                found.push(genesis);
            }
        }
    }
    match found.len() {
        0 => bail!(
            "{} has no community yet and {} holds no valid community.genesis event to adopt",
            ctx.dir.root().display(),
            file.display()
        ),
        1 => Ok(found.remove(0)),
        n => bail!(
            "{} holds the genesis of {n} communities ({}); import into a data dir of the one you mean",
            file.display(),
            found
                .iter()
                .map(|g| format!("{} {:?}", g.community, g.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Gives an empty data dir the community founded by `genesis`: creates an
/// identity if there is none, writes `genesis.cbor`.
fn adopt(ctx: &mut Ctx, genesis: &Genesis) -> anyhow::Result<()> {
    // Config before writing anything, as `community create` does.
    ctx.config()?;
    ctx.dir.load_or_create_identity()?;
    ctx.dir.write_genesis(genesis)?;
    Ok(())
}
