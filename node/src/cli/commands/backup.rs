//! `hearth backup FILE` and `hearth restore FILE`: everything that makes a
//! node this node, in one file.
//!
//! A backup holds the identity key, the genesis, `config.toml` if present
//! and the whole event log, all inside one age file encrypted under a
//! passphrase (age's scrypt recipient). age authenticates every 64 KiB
//! chunk and marks the last one, so a wrong passphrase, a changed byte or a
//! cut-off file is refused before anything is written.
//!
//! Inside the encryption the file is [`MAGIC`] then sections, each a tag
//! byte, a 4-byte big-endian length and that many bytes: `K` the key file,
//! `G` the genesis event, `C` config.toml, `L` a page of the log (a CBOR
//! sequence), and `E` (the event count) last.
//!
//! Backup works while `hearth run` is up (the log is read through its
//! socket). Restore builds the data dir in a sibling staging dir, verifying
//! every event as an import would, and moves it into place only when all of
//! it checked out; it refuses a dir with a running node or an identity.

use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::{bail, Context};
use clap::Args;
use hearth_proto::EventHash;
use serde::Serialize;

use crate::cli::cbor_seq;
use crate::cli::client::Client;
use crate::cli::commands::log::{for_each_event, Offline, Sink};
use crate::cli::data_dir::{DataDir, Genesis, CONFIG_FILE, GENESIS_FILE, IDENTITY_FILE, STORE_DIR};
use crate::cli::{finish_write, key_file, Ctx};
use crate::core::Config;
use crate::net::local_api::{Outcome, EXPORT_PAGE_BYTES};

/// The first bytes of the plaintext: names the format and its version.
pub const MAGIC: &[u8; 16] = b"hearth-backup\0v1";
/// scrypt work factor of a backup, N = 2^18: 256 MiB and about a second
/// on a desktop, several on a small board (see `write_backup`).
const BACKUP_WORK_FACTOR: u8 = 18;
/// The highest work factor a restore accepts: ours with room to raise it
/// later. Far above it is a file meant to stall the machine (2^30 would
/// need 128 GiB), refused with a message.
const RESTORE_WORK_FACTOR_MAX: u8 = 20;
/// The environment variable read for the passphrase before asking.
pub const PASSPHRASE_ENV: &str = "HEARTH_BACKUP_PASSPHRASE";
/// No section is larger: a log page is at most [`EXPORT_PAGE_BYTES`] plus
/// one event, a config file far less. Bounds what restore buffers.
pub const SECTION_BYTES_MAX: u32 = 1 << 20;

const TAG_KEY: u8 = b'K';
const TAG_GENESIS: u8 = b'G';
const TAG_CONFIG: u8 = b'C';
const TAG_LOG: u8 = b'L';
const TAG_END: u8 = b'E';

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write (refused if it exists).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `hearth backup`.
    pub file: PathBuf,
}

/// The passphrase: from [`PASSPHRASE_ENV`], else asked on the terminal
/// (twice when `confirm`). Empty is refused.
fn passphrase(confirm: bool) -> anyhow::Result<SecretString> {
    let text = match std::env::var(PASSPHRASE_ENV) {
        Ok(p) => p,
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{PASSPHRASE_ENV} is not valid UTF-8")
        }
        Err(std::env::VarError::NotPresent) => {
            if !io::stdin().is_terminal() {
                bail!(
                    "no passphrase: set {PASSPHRASE_ENV} or run this command on a terminal \
                     to be asked for one"
                );
            }
            let first = rpassword::prompt_password("backup passphrase: ")
                .context("cannot read the passphrase from the terminal")?;
            if confirm && !first.is_empty() {
                let again = rpassword::prompt_password("the same passphrase again: ")
                    .context("cannot read the passphrase from the terminal")?;
                if again != first {
                    bail!("the two passphrases differ; nothing was written");
                }
            }
            first
        }
    };
    if text.is_empty() {
        bail!("the backup passphrase is empty: choose one (it encrypts the identity key)");
    }
    Ok(SecretString::from(text))
}

fn write_section(w: &mut dyn Write, tag: u8, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|n| *n <= SECTION_BYTES_MAX)
        .ok_or_else(|| io::Error::other(format!("section of {} bytes", bytes.len())))?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)
}

#[derive(Debug, Serialize)]
struct BackedUp {
    file: String,
    node_id: String,
    community: String,
    events: u64,
    config: bool,
}

pub fn backup(ctx: &mut Ctx, a: BackupArgs) -> anyhow::Result<()> {
    let dir = ctx.dir.clone();
    let identity = dir.load_identity()?;
    let key_text = fs::read(dir.identity_path())
        .with_context(|| format!("cannot read {}", dir.identity_path().display()))?;
    let genesis = dir.load_genesis()?;
    let config = match fs::read(dir.config_path()) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", dir.config_path().display()))
        }
    };
    if a.file.exists() {
        bail!(
            "{} exists; refusing to overwrite it: choose a new name or remove it first",
            a.file.display()
        );
    }
    let passphrase = passphrase(true)?;
    let tmp = sibling(&a.file, "tmp");
    let result = write_backup(&tmp, passphrase, |w| {
        w.write_all(MAGIC)?;
        write_section(w, TAG_KEY, &key_text)?;
        write_section(w, TAG_GENESIS, genesis.event.bytes())?;
        if let Some(c) = &config {
            write_section(w, TAG_CONFIG, c).context("config.toml is over 1 MiB")?;
        }
        let mut page = Vec::with_capacity(EXPORT_PAGE_BYTES);
        let events = for_each_event(&dir, |bytes| {
            page.extend_from_slice(bytes);
            if page.len() >= EXPORT_PAGE_BYTES {
                write_section(w, TAG_LOG, &page)?;
                page.clear();
            }
            Ok(())
        })?;
        if !page.is_empty() {
            write_section(w, TAG_LOG, &page)?;
        }
        write_section(w, TAG_END, &events.to_be_bytes())?;
        Ok(events)
    });
    let events = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e.context(format!("cannot write the backup {}", a.file.display())));
        }
    };
    fs::rename(&tmp, &a.file)
        .with_context(|| format!("cannot move the backup into {}", a.file.display()))?;
    let report = BackedUp {
        file: a.file.display().to_string(),
        node_id: identity.node_id().to_hex(),
        community: genesis.name.clone(),
        events,
        config: config.is_some(),
    };
    ctx.out.show(&report, |w| {
        writeln!(
            w,
            "backed up node {} of {:?}: identity key, genesis, {}{} events to {}",
            report.node_id,
            report.community,
            if report.config { "config.toml, " } else { "" },
            report.events,
            report.file
        )?;
        writeln!(
            w,
            "keep this file and its passphrase apart and safe: without the passphrase the \
             backup cannot be restored; with both, anyone can act as this node"
        )
    })
}

/// Writes an age file encrypted to `passphrase` at `path` (created 0600),
/// with `body` writing the plaintext; synced before it returns.
///
/// The scrypt work factor is [`BACKUP_WORK_FACTOR`], not age's default
/// (calibrated to about a second on the machine that encrypts, measured at
/// that moment): a backup made on a fast desktop must restore on a slow
/// board, and a restore on a busy machine calibrated its own limit so low
/// that it refused a backup made a minute earlier on the same machine.
fn write_backup(
    path: &Path,
    passphrase: SecretString,
    body: impl FnOnce(&mut dyn Write) -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut recipient = age::scrypt::Recipient::new(passphrase);
    recipient.set_work_factor(BACKUP_WORK_FACTOR);
    let mut age_out =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .context("cannot start the encryption")?
            .wrap_output(BufWriter::new(file))
            .context("cannot start the encryption")?;
    let n = body(&mut age_out)?;
    let file = age_out
        .finish()
        .context("cannot finish the encryption")?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(n)
}

/// `FILE` with `.{ext}` added, in the same directory (for atomic renames).
fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{ext}"));
    path.with_file_name(name)
}

#[derive(Debug, Serialize)]
struct Restored {
    data_dir: String,
    node_id: String,
    community: String,
    events: u64,
    config: bool,
}

/// Why `dir` cannot take a restore, if it cannot.
fn refuse_target(dir: &DataDir) -> anyhow::Result<()> {
    let root = dir.root().display();
    if Client::connect(&dir.socket_path())?.is_some() {
        bail!(
            "a node is running on {root} (its node.sock answers): restore only writes a fresh \
             data dir; stop it, or restore with --data-dir NEW_DIR"
        );
    }
    for (name, what) in [
        (IDENTITY_FILE, "an identity"),
        (GENESIS_FILE, "a community"),
        (STORE_DIR, "an event store"),
        (CONFIG_FILE, "a config file"),
    ] {
        if dir.root().join(name).exists() {
            bail!(
                "{root} already holds {what} ({name}); restore refuses to overwrite it: \
                 restore with --data-dir NEW_DIR (an empty or missing directory)"
            );
        }
    }
    Ok(())
}

pub fn restore(ctx: &mut Ctx, a: RestoreArgs) -> anyhow::Result<()> {
    let target = ctx.dir.clone();
    refuse_target(&target)?;
    let file =
        fs::File::open(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let passphrase = passphrase(false)?;
    let root = target.root();
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.restore-{}",
        root.file_name().unwrap_or_default().to_string_lossy(),
        ulid::Ulid::new()
    ));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let result = unpack(file, passphrase, &DataDir::new(staging.clone()), &a.file)
        .and_then(|r| move_into_place(&staging, root).map(|()| r));
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    report.data_dir = root.display().to_string();
    ctx.out.show(&report, |w| {
        writeln!(
            w,
            "restored node {} of {:?} into {}: {} events{}",
            report.node_id,
            report.community,
            report.data_dir,
            report.events,
            if report.config { ", config.toml" } else { "" }
        )?;
        writeln!(w, "start it with `hearth run`")
    })
}

/// Moves the staged data dir's contents into `root` (created if missing).
fn move_into_place(staging: &Path, root: &Path) -> anyhow::Result<()> {
    if !root.exists() {
        return fs::rename(staging, root)
            .with_context(|| format!("cannot move the restored data into {}", root.display()));
    }
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        let to = root.join(entry.file_name());
        fs::rename(entry.path(), &to)
            .with_context(|| format!("cannot move the restored data into {}", to.display()))?;
    }
    fs::remove_dir(staging).with_context(|| format!("cannot remove {}", staging.display()))
}

/// Why a backup cannot be opened, for a person.
fn open_error(e: age::DecryptError, file: &Path) -> anyhow::Error {
    let f = file.display();
    match e {
        age::DecryptError::NoMatchingKeys
        | age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed => anyhow::anyhow!(
            "wrong passphrase for {f} (or the file was changed): nothing was restored"
        ),
        age::DecryptError::InvalidMac => {
            anyhow::anyhow!("the header of {f} was changed or damaged: nothing was restored")
        }
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => anyhow::anyhow!(
            "{f} is not a hearth backup (not an age-encrypted file): nothing was restored"
        ),
        age::DecryptError::ExcessiveWork { required, .. } => anyhow::anyhow!(
            "{f} asks for scrypt work factor {required}, above the \
             {RESTORE_WORK_FACTOR_MAX} a restore accepts (hearth's backups use \
             {BACKUP_WORK_FACTOR}): refused as it would take too long (was it made by \
             another tool with a huge factor?); nothing was restored"
        ),
        age::DecryptError::Io(e) => anyhow::anyhow!(
            "cannot read {f}: {e} (a truncated or damaged backup?): nothing was restored"
        ),
    }
}

/// Reads exactly `buf.len()` bytes of plaintext; a short read or an
/// authentication failure is the backup's fault and says so.
fn read_exact(r: &mut dyn Read, buf: &mut [u8], file: &Path) -> anyhow::Result<()> {
    r.read_exact(buf).map_err(|e| {
        anyhow::anyhow!(
            "{} is damaged or truncated ({e}): nothing was restored",
            file.display()
        )
    })
}

/// Decrypts and checks the backup, writing a complete data dir into
/// `staging`. Any failure leaves only `staging` to delete.
fn unpack(
    file: fs::File,
    passphrase: SecretString,
    staging: &DataDir,
    path: &Path,
) -> anyhow::Result<Restored> {
    let decryptor = age::Decryptor::new(BufReader::new(file)).map_err(|e| open_error(e, path))?;
    if !decryptor.is_scrypt() {
        bail!(
            "{} is an age file but not passphrase-encrypted: not a hearth backup",
            path.display()
        );
    }
    let mut identity = age::scrypt::Identity::new(passphrase);
    identity.set_max_work_factor(RESTORE_WORK_FACTOR_MAX);
    let mut r = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| open_error(e, path))?;
    let damaged = |what: &str| {
        anyhow::anyhow!(
            "{} is damaged: {what}; nothing was restored",
            path.display()
        )
    };
    let mut magic = [0u8; 16];
    read_exact(&mut r, &mut magic, path)?;
    if &magic != MAGIC {
        bail!(
            "{} decrypts but is not a hearth backup (or a newer format): nothing was restored",
            path.display()
        );
    }
    let mut node = None;
    let mut node_id = None;
    let mut genesis: Option<Genesis> = None;
    let mut config = false;
    let mut events = 0u64;
    let mut pending: Vec<EventHash> = Vec::new();
    loop {
        let mut header = [0u8; 5];
        read_exact(&mut r, &mut header, path)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len > SECTION_BYTES_MAX {
            return Err(damaged("a section is larger than any backup writes"));
        }
        let mut body = vec![0u8; len as usize];
        read_exact(&mut r, &mut body, path)?;
        match header[0] {
            TAG_KEY => {
                let key_path = staging.identity_path();
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&key_path)
                    .with_context(|| format!("cannot create {}", key_path.display()))?;
                f.write_all(&body).and_then(|()| f.sync_all())?;
                node_id = Some(key_file::load(&key_path)?.node_id());
            }
            TAG_GENESIS => {
                let event = hearth_proto::VerifiedEvent::decode(&body)
                    .map_err(|e| damaged(&format!("its genesis is invalid ({e})")))?;
                let g = Genesis::new(event)?;
                staging.write_genesis(&g)?;
                genesis = Some(g);
            }
            TAG_CONFIG => {
                fs::write(staging.config_path(), &body)?;
                config = true;
            }
            TAG_LOG => {
                if node.is_none() {
                    if node_id.is_none() || genesis.is_none() {
                        return Err(damaged("the log comes before the key and genesis"));
                    }
                    node = Some(staging.open_node(Config::default())?.0);
                }
                let Some(node) = node.as_mut() else {
                    return Err(damaged("no node"));
                };
                let (items, broken) = cbor_seq::split(&body);
                if broken.is_some() {
                    return Err(damaged("a log page ends inside an event"));
                }
                let bytes: Vec<Vec<u8>> = items.iter().map(|i| i.bytes.to_vec()).collect();
                let outcomes = Offline(node).receive(&bytes)?;
                for (b, outcome) in bytes.iter().zip(outcomes) {
                    match outcome {
                        Outcome::Rejected { reason, .. } => {
                            return Err(damaged(&format!(
                                "it holds an invalid event ({})",
                                crate::cli::render::line(&reason)
                            )))
                        }
                        Outcome::Pending => pending.push(hearth_proto::hash_bytes(b)),
                        Outcome::Stored { .. } | Outcome::Duplicate => {}
                    }
                    events += 1;
                }
            }
            TAG_END => {
                let count = <[u8; 8]>::try_from(&body[..])
                    .map(u64::from_be_bytes)
                    .map_err(|_| damaged("its end marker is malformed"))?;
                if count != events {
                    return Err(damaged(&format!(
                        "it says {count} events but holds {events}"
                    )));
                }
                // Reading past the end makes age check the final chunk:
                // a file cut at a chunk boundary fails here.
                let mut extra = [0u8; 1];
                match r.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(damaged("bytes follow its end marker")),
                    Err(e) => {
                        return Err(damaged(&format!("its last chunk does not verify ({e})")))
                    }
                }
                break;
            }
            other => return Err(damaged(&format!("unknown section tag {other:#04x}"))),
        }
    }
    let (Some(node_id), Some(genesis)) = (node_id, genesis) else {
        return Err(damaged("it lacks the identity key or the genesis"));
    };
    if let Some(mut node) = node {
        let mut missing = 0;
        for h in &pending {
            let held = Offline(&mut node).contains(std::slice::from_ref(h))?;
            if !held.first().copied().unwrap_or(false) {
                missing += 1;
            }
        }
        if missing > 0 {
            return Err(damaged(&format!(
                "{missing} of its events have an author who is not a member"
            )));
        }
        finish_write(&mut node)?;
    }
    Ok(Restored {
        data_dir: String::new(),
        node_id: node_id.to_hex(),
        community: genesis.name,
        events,
        config,
    })
}
