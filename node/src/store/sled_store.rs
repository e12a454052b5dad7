//! The on-disk [`EventStore`] over sled 0.34.
//!
//! # Layout
//!
//! One sled tree (`log`) with one-byte key prefixes, so every insert is a
//! single atomic `apply_batch` of three records: an event is never stored
//! half-indexed.
//!
//! | key | value |
//! |---|---|
//! | `e` + lamport (8, BE) + hash (32) = `EventKey::to_bytes()` | encoded event |
//! | `h` + hash (32) | `EventKey` bytes (40) |
//! | `s` + arrival seq (8, BE) | `EventKey` bytes (40) + event count after this insert (8, BE) |
//! | `m` + name (UTF-8) | meta value |
//! | `i` + event id (16) + hash (32) | empty; legacy, see below |
//!
//! Big-endian numbers make byte order equal key order, so a scan of the `e`
//! prefix is the log in `(lamport, hash)` order and a scan of `s` is arrival
//! order. `range` and `keys` read only the `e` records: no lookup per event.
//!
//! The `i` records were a by-id index, written with every event until
//! issue 15: only tests asked for events by id, and the fourth record cost
//! every insert. Nothing writes or reads them now ([`EventStore::get_by_id`]
//! scans the log). A store written by an older version keeps the ones it
//! has (no migration): they sit outside every prefix a read scans, so they
//! only take disk space, and an older version opening the store afterwards
//! finds no `i` record for the events stored since.
//!
//! # Counters
//!
//! The event count and the arrival counter live in memory and are both read
//! at open from the last `s` record (one seek): its key is the last arrival,
//! and its value carries the count, written in the same atomic batch as the
//! event. So open is O(1), not O(n): with snapshots a node opens by reading
//! only the arrivals after its snapshot, and counting the `h` keys instead
//! would cost about 1 s per million events (measured) on every open, CLI
//! commands included. Keeping the count under a meta key of its own would rewrite one
//! hot key on every insert, which measured 10-20% slower inserts here;
//! riding on the `s` record, which is written anyway, costs nothing
//! measurable. An `s` value of 40 bytes (a store written before the count
//! was kept) makes open count the `h` keys once.
//!
//! # Durability
//!
//! `insert` does not flush; [`EventStore::flush`] does (`Db::flush`, an
//! fsync). Between the two, sled's own flusher writes the log out every
//! [`FLUSH_EVERY_MS`] (500 ms, set explicitly): a received event that the
//! caller has not flushed can be lost in a crash (process kill or power loss)
//! for up to about 500 ms after `insert` returned, plus the time the
//! background flush itself takes under load. Losing such an event is
//! harmless: the peers that sent it still hold it and anti-entropy sync
//! brings it back. Local events are flushed before `append_local` answers
//! (DESIGN.md section 4), so they are never in that window. A crash never
//! leaves a torn event: each batch is recovered whole or not at all, and the
//! arrival counter resumes after the highest arrival that survived.
//!
//! # A full disk
//!
//! Two sled 0.34.7 behaviours shape this (read in its source):
//!
//! - **A failed snapshot write bricks the next open** (spacejam/sled#1527).
//!   sled writes its snapshot only while opening (`read_snapshot_or_default`
//!   -> `advance_snapshot` -> `write_snapshot`; `take_fuzzy_snapshot` has no
//!   caller in 0.34.7), holding the store's lock, as `snap.<lsn>.generating`:
//!   write, `fsync`, then rename to `snap.<lsn>`, and only after the rename
//!   remove older `snap.*` files. A full disk fails the write and leaves the
//!   `.generating` file, often empty; the next open takes the highest-named
//!   `snap.*` file, which is that one, and fails with "Read corrupted data at
//!   file offset None". So a `.generating` file is never a snapshot sled
//!   relied on: the open that wrote it failed before the rename, before
//!   zeroing any segment and before removing the older snapshot. Removing it
//!   returns the directory to the state before that open: sled reads the
//!   last complete snapshot (or none) and replays its log from there, its
//!   ordinary recovery path. [`SledStore::open`] therefore removes every
//!   `snap.*.generating` file, with a `warn!` naming it, but only while it
//!   holds the store's lock itself: a live owner may be writing one that
//!   very moment.
//! - **sled never writes again after an I/O error.** Its first failed log
//!   write is kept as a `global_error` that every later reservation and
//!   flush returns; only opening clears it. Reads from the open handle keep
//!   working. So on `ENOSPC` (or a read-only remount) the store enters a
//!   [`WriteState`] other than `Ok`: writes are refused at once with
//!   [`StoreError::Full`] (or `ReadOnly`), reads go on, and
//!   [`EventStore::recover`] reopens the store once there is room again
//!   ([`RESUME_FREE_BYTES_MIN`] free, probed with `statvfs` so a hopeless
//!   reopen never costs the handle that serves reads). A reopened store holds
//!   what was durable: local events were flushed before they were
//!   acknowledged, so none of those is lost; received events not yet flushed
//!   may be, and sync fetches them again.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::mpsc::TrySendError;
use std::sync::OnceLock;

use fs2::FileExt;
use hearth_proto::{EventHash, EventKey, VerifiedEvent};
use tracing::{info, warn};

use super::{EventIter, EventStore, StoreError, WriteState};
use crate::core::sync::{Accumulator, FingerprintIndex, LogDigest};

/// sled's background flush period in milliseconds: the crash window for
/// received events the log has not flushed yet. sled's default is the same
/// today; it is set explicitly because the window is part of this store's
/// contract and must not move with a sled upgrade.
pub const FLUSH_EVERY_MS: u64 = 500;

/// How long `open` waits for a store lock that another handle is releasing.
pub const LOCK_WAIT_MS: u64 = 2_000;
const LOCK_RETRY_MS: u64 = 50;

/// Events read ahead by `range`: ~1.6 MB at typical sizes, enough to keep
/// the consumer busy while the reader waits on the disk.
pub const PREFETCH_EVENTS: usize = 4096;
/// Events handed over at once by the prefetch thread.
pub const PREFETCH_CHUNK: usize = 256;

/// Free space a full store waits for before it reopens: sled grows its
/// file a segment (512 KiB by default) at a time and writes a snapshot while
/// opening, so with less than two segments and some room for the snapshot a
/// reopen would fail again, and a failed reopen leaves no handle to read
/// from.
pub const RESUME_FREE_BYTES_MIN: u64 = 2 * 1024 * 1024;

/// sled reports a held lock as an `Other` I/O error whose text carries the
/// OS's `WouldBlock`; match both forms.
fn is_lock_busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// Runs `attempt` again while `busy` says its error is a lock another
/// handle is still letting go of, for up to [`LOCK_WAIT_MS`]: sled's
/// background threads hold the lock a moment after the handle drops.
fn retry_while_locked<T, E>(
    mut attempt: impl FnMut() -> Result<T, E>,
    busy: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut waited_ms = 0;
    loop {
        match attempt() {
            Err(e) if busy(&e) && waited_ms < LOCK_WAIT_MS => {
                std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
                waited_ms += LOCK_RETRY_MS;
            }
            done => return done,
        }
    }
}

/// Opens a sled database of `config`, waiting for a lock another handle in
/// this process is releasing ([`retry_while_locked`]): for the node's other
/// sled trees (the inbox, the vector cache), which a restart in the same
/// process reopens at once.
pub fn open_waiting_for_lock(config: &sled::Config) -> sled::Result<sled::Db> {
    retry_while_locked(
        || config.open(),
        |e| matches!(e, sled::Error::Io(io) if is_lock_busy(io)),
    )
}

/// `ENOSPC` or `EDQUOT`. sled hands a stored error back as a copy that keeps
/// the kind but not the OS code, so the kind is what counts.
fn is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28 | 122))
}

/// `EROFS` or `EACCES`/`EPERM`.
fn is_read_only(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
    )
}

/// Sorts a sled error into the store's operating conditions.
fn classify(location: &str, op: &str, e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if is_lock_busy(io) => StoreError::Locked(format!(
            "the store {location} is in use by another process \
             (is `hearth run` running on this data dir?): {io}"
        )),
        sled::Error::Io(io) if is_full(io) => {
            StoreError::Full(format!("{op} in the store {location}: {io}"))
        }
        sled::Error::Io(io) if is_read_only(io) => {
            StoreError::ReadOnly(format!("{op} in the store {location}: {io}"))
        }
        _ => StoreError::Io(format!("{op} in sled store {location}: {e}")),
    }
}

/// Removes sled's unfinished snapshot files (see the module doc), holding
/// the store's lock meanwhile. A store that does not exist yet, or whose
/// `db` file cannot be opened, is left to sled to report.
fn remove_unfinished_snapshots(path: &Path, location: &str) -> Result<(), StoreError> {
    let Ok(db_file) = std::fs::File::open(path.join("db")) else {
        return Ok(());
    };
    if let Err(e) = db_file.try_lock_exclusive() {
        return Err(StoreError::Locked(format!(
            "the store {location} is in use by another process \
             (is `hearth run` running on this data dir?): {e}"
        )));
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let file = entry.path();
            warn!(
                file = %file.display(),
                "removing sled's unfinished snapshot (left by a failed write, e.g. a full disk); \
                 the store recovers from its last complete snapshot and its log"
            );
            if let Err(e) = std::fs::remove_file(&file) {
                warn!(file = %file.display(), error = %e, "cannot remove unfinished snapshot");
            }
        }
    }
    // Dropping the file releases the lock; sled takes it again at once.
    drop(db_file);
    Ok(())
}

const EVENT: u8 = b'e';
const BY_HASH: u8 = b'h';
const ARRIVAL: u8 = b's';
const META: u8 = b'm';

const EVENT_KEY_LEN: usize = 40;
/// An `s` value: the event's key, then the event count after its insert.
const ARRIVAL_VALUE_LEN: usize = EVENT_KEY_LEN + 8;

#[derive(Debug)]
pub struct SledStore {
    /// The open database; `None` only after a reopen failed (see
    /// [`EventStore::recover`]), until one succeeds.
    handle: Option<Handle>,
    /// The directory, for reopening; `None` for a temporary store.
    path: Option<PathBuf>,
    /// Where the store lives, for error messages.
    location: String,
    len: u64,
    last_arrival: u64,
    write_state: WriteState,
    /// Sync fingerprints, built from the keys by the first sync that needs
    /// them (opening stays a count, not a scan) and then kept up to date
    /// on every insert. A reopen starts without one.
    fingerprints: OnceLock<FingerprintIndex>,
}

#[derive(Debug)]
struct Handle {
    db: sled::Db,
    tree: sled::Tree,
}

fn prefixed(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// An `s` record's value: the event's key and the count after its insert.
fn arrival_value(key_bytes: &[u8; EVENT_KEY_LEN], len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(ARRIVAL_VALUE_LEN);
    v.extend_from_slice(key_bytes);
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// A raw key as a reader can find it again: prefix letter, then hex.
fn show_key(raw: &[u8]) -> String {
    match raw.split_first() {
        Some((p, rest)) if p.is_ascii_graphic() => {
            format!("{}/{}", char::from(*p), hex::encode(rest))
        }
        _ => hex::encode(raw),
    }
}

fn corrupt(raw_key: &[u8], reason: String) -> StoreError {
    StoreError::Corrupt {
        what: format!("record {}", show_key(raw_key)),
        reason,
    }
}

/// The part of `raw` after its prefix byte, which must be `len` bytes long.
fn body(raw: &[u8], len: usize) -> Result<&[u8], StoreError> {
    match raw.get(1..) {
        Some(b) if b.len() == len => Ok(b),
        _ => Err(corrupt(
            raw,
            format!("key is {} bytes, expected {}", raw.len(), 1 + len),
        )),
    }
}

/// Parses an `EventKey` stored under (or as the value of) `raw_key`.
fn event_key(raw_key: &[u8], bytes: &[u8]) -> Result<EventKey, StoreError> {
    match EventKey::from_bytes(bytes) {
        Some(k) if bytes.len() == EVENT_KEY_LEN => Ok(k),
        _ => Err(corrupt(
            raw_key,
            format!(
                "event key is {} bytes, expected {EVENT_KEY_LEN}",
                bytes.len()
            ),
        )),
    }
}

fn u64_of(raw_key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(raw_key, format!("{} bytes, expected 8", bytes.len())))?;
    Ok(u64::from_be_bytes(b))
}

/// Maps a bound on event keys onto the `e`-prefixed key space. `Unbounded`
/// stays inside the prefix: `[e, f)`.
fn event_bound(b: Bound<EventKey>, is_end: bool) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(prefixed(EVENT, &[&k.to_bytes()])),
        Bound::Excluded(k) => Bound::Excluded(prefixed(EVENT, &[&k.to_bytes()])),
        Bound::Unbounded if is_end => Bound::Excluded(vec![EVENT + 1]),
        Bound::Unbounded => Bound::Included(vec![EVENT]),
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// sled holds an exclusive file lock. A process that just closed the
    /// store may keep it for a moment (sled's background threads finish
    /// after the handle drops), so a busy lock is retried for up to
    /// [`LOCK_WAIT_MS`] before the error names the likely cause.
    ///
    /// Before sled opens, unfinished snapshot files are removed (module doc).
    /// Errors are sorted: [`StoreError::Locked`] only when the lock is really
    /// held, [`StoreError::Full`] and [`StoreError::ReadOnly`] for a full or
    /// unwritable disk (sled cannot open a store without writing to it).
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let location = format!("at {}", path.display());
        let config = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(FLUSH_EVERY_MS));
        let db = retry_while_locked(
            || {
                remove_unfinished_snapshots(path, &location)
                    .and_then(|()| config.open().map_err(|e| classify(&location, "open", e)))
            },
            |e| matches!(e, StoreError::Locked(_)),
        )?;
        Self::from_db(db, location, Some(path.to_owned()))
    }

    /// A store that lives only as long as the value (tests, benchmarks).
    pub fn temporary() -> Result<SledStore, StoreError> {
        let location = "(temporary)".to_owned();
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| classify(&location, "open", e))?;
        Self::from_db(db, location, None)
    }

    fn from_db(
        db: sled::Db,
        location: String,
        path: Option<PathBuf>,
    ) -> Result<SledStore, StoreError> {
        let tree = db
            .open_tree("log")
            .map_err(|e| classify(&location, "open the tree", e))?;
        let last = tree.scan_prefix([ARRIVAL]).next_back();
        let mut store = SledStore {
            handle: Some(Handle { db, tree }),
            path,
            location,
            len: 0,
            last_arrival: 0,
            write_state: WriteState::Ok,
            fingerprints: OnceLock::new(),
        };
        let (last_arrival, len) = match last {
            None => (0, 0),
            Some(item) => {
                let (k, v) = item.map_err(|e| store.io("read arrival counter", e))?;
                let seq = u64_of(&k, body(&k, 8)?)?;
                match v.get(EVENT_KEY_LEN..) {
                    Some(count) if v.len() == ARRIVAL_VALUE_LEN => (seq, u64_of(&k, count)?),
                    // Written before the count was kept: count once.
                    _ => (seq, store.count_events()?),
                }
            }
        };
        store.last_arrival = last_arrival;
        store.len = len;
        Ok(store)
    }

    fn count_events(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for item in self.tree()?.scan_prefix([BY_HASH]) {
            item.map_err(|e| self.io("count events", e))?;
            n += 1;
        }
        Ok(n)
    }

    fn io(&self, op: &str, e: sled::Error) -> StoreError {
        classify(&self.location, op, e)
    }

    /// A failed write: sorts the error and, for a full or read-only disk,
    /// refuses further writes until [`EventStore::recover`] (sled would
    /// refuse them anyway, see the module doc).
    fn write_failed(&mut self, op: &str, e: sled::Error) -> StoreError {
        let err = classify(&self.location, op, e);
        if let Some(state) = err.write_state() {
            if self.write_state != state {
                warn!(store = %self.location, error = %err, "writes refused until this clears");
            }
            self.write_state = state;
        }
        err
    }

    /// The open tree, or why there is none.
    fn tree(&self) -> Result<&sled::Tree, StoreError> {
        match &self.handle {
            Some(h) => Ok(&h.tree),
            None => Err(self.refusal("read")),
        }
    }

    /// The error for an operation refused in the current state.
    fn refusal(&self, op: &str) -> StoreError {
        let location = &self.location;
        let closed = if self.handle.is_none() {
            " (the store is closed until a reopen succeeds)"
        } else {
            ""
        };
        match self.write_state {
            WriteState::ReadOnly => StoreError::ReadOnly(format!(
                "{op} refused: the store {location} cannot be written{closed}"
            )),
            WriteState::Full | WriteState::Ok => StoreError::Full(format!(
                "{op} refused: the disk holding the store {location} filled up{closed}; \
                 writes resume once there is room"
            )),
        }
    }

    /// The tree, for a write: refused while the store is not writable.
    fn writable_tree(&self, op: &str) -> Result<&sled::Tree, StoreError> {
        if self.write_state != WriteState::Ok {
            return Err(self.refusal(op));
        }
        self.tree()
    }

    /// Whether the disk looks able to take writes again: enough free space
    /// for a full store, a file created and removed for a read-only one.
    fn probe_writable(&self, path: &Path) -> Result<(), StoreError> {
        match self.write_state {
            WriteState::Ok => Ok(()),
            WriteState::Full => {
                let free = fs2::available_space(path).map_err(|e| {
                    StoreError::Full(format!("cannot measure free space {}: {e}", self.location))
                })?;
                if free < RESUME_FREE_BYTES_MIN {
                    return Err(StoreError::Full(format!(
                        "{free} bytes free on the disk holding the store {}; writes resume \
                         by themselves at {RESUME_FREE_BYTES_MIN}",
                        self.location
                    )));
                }
                Ok(())
            }
            WriteState::ReadOnly => {
                let probe = path.join(".hearth-write-probe");
                std::fs::write(&probe, b"")
                    .and_then(|()| std::fs::remove_file(&probe))
                    .map_err(|e| {
                        StoreError::ReadOnly(format!(
                            "the store {} still cannot be written: {e}",
                            self.location
                        ))
                    })
            }
        }
    }

    /// The raw tree, for tests that corrupt records on purpose (`None`
    /// after a failed reopen).
    #[doc(hidden)]
    pub fn raw_tree(&self) -> Option<&sled::Tree> {
        self.handle.as_ref().map(|h| &h.tree)
    }

    /// Reads and re-checks the event filed under `key`, which an index
    /// (named by `index_key`) pointed at.
    fn event_at(&self, index_key: &[u8], key: &EventKey) -> Result<VerifiedEvent, StoreError> {
        let bytes = self
            .tree()?
            .get(prefixed(EVENT, &[&key.to_bytes()]))
            .map_err(|e| self.io("read event", e))?
            .ok_or_else(|| corrupt(index_key, format!("points at missing event {}", key.hash)))?;
        reload(&bytes, &key.hash)
    }
}

impl SledStore {
    /// Whether the event filed under `key` is stored, for the duplicate
    /// check of `insert`. Once a sync has built the fingerprint index, the
    /// index answers from memory (a binary search) instead of a sled
    /// lookup of the `h` record: it holds every `e` key, and a hash fixes
    /// its key (the same hash is the same bytes, so the same Lamport time),
    /// so asking for the key is asking for the hash.
    fn holds(&self, key: &EventKey) -> Result<bool, StoreError> {
        match self.fingerprints.get() {
            Some(index) => Ok(index.contains(key)),
            None => self.contains(&key.hash),
        }
    }

    /// The fingerprint index, built from the keys on first use: one scan
    /// of the `e` records (~1 s per million events), once per open.
    fn fingerprints(&self) -> Result<&FingerprintIndex, StoreError> {
        if let Some(index) = self.fingerprints.get() {
            return Ok(index);
        }
        let mut index = FingerprintIndex::new();
        for key in self.keys(Bound::Unbounded, Bound::Unbounded) {
            index.insert(key?);
        }
        Ok(self.fingerprints.get_or_init(|| index))
    }
}

impl EventStore for SledStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        let key = event.key();
        self.writable_tree("insert")?;
        if self.holds(&key)? {
            return Ok(None);
        }
        let key_bytes = key.to_bytes();
        let seq = self.last_arrival + 1;
        let len = self.len + 1;
        let mut batch = sled::Batch::default();
        batch.insert(prefixed(EVENT, &[&key_bytes]), event.bytes());
        batch.insert(prefixed(BY_HASH, &[&key.hash.0]), &key_bytes[..]);
        batch.insert(
            prefixed(ARRIVAL, &[&seq.to_be_bytes()]),
            arrival_value(&key_bytes, len),
        );
        // The operation is named only on failure: formatting the hash on
        // every insert was a measurable share of the core's per-event cost.
        let applied = self.writable_tree("insert")?.apply_batch(batch);
        if let Err(e) = applied {
            return Err(self.write_failed(&format!("insert event {}", key.hash), e));
        }
        self.last_arrival = seq;
        self.len = len;
        if let Some(index) = self.fingerprints.get_mut() {
            index.insert(key);
        }
        Ok(Some(seq))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.writable_tree("flush")?;
        let flushed = match &self.handle {
            Some(h) => h.db.flush(),
            None => return Err(self.refusal("flush")),
        };
        if let Err(e) = flushed {
            return Err(self.write_failed("flush", e));
        }
        Ok(())
    }

    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        self.tree()?
            .contains_key(prefixed(BY_HASH, &[&hash.0]))
            .map_err(|e| self.io("look up hash", e))
    }

    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        let index_key = prefixed(BY_HASH, &[&hash.0]);
        let Some(v) = self
            .tree()?
            .get(&index_key)
            .map_err(|e| self.io("look up hash", e))?
        else {
            return Ok(None);
        };
        let key = event_key(&index_key, &v)?;
        if key.hash != *hash {
            return Err(corrupt(
                &index_key,
                format!("points at event {} under another hash", key.hash),
            ));
        }
        self.event_at(&index_key, &key).map(Some)
    }

    /// Reads and re-checks events on a prefetch thread while the caller
    /// consumes them: replay is reading, decoding and applying to views, and
    /// the work is shared between two cores. Decoding goes to whichever side
    /// has time ([`Prefetched`]): a scanned chunk is handed over raw, for the
    /// caller to decode as it iterates, while the channel has room (the
    /// caller keeps up), and decoded on the thread while the channel is full
    /// (the caller is the slower side). Measured: at 50k events the caller
    /// applies faster than the thread scans and decodes, and a replay took
    /// 0.37 -> 0.27 s; at 1M applying is the slower side and the thread
    /// decodes nearly every chunk, as before. The channel is bounded
    /// ([`PREFETCH_EVENTS`]), and the thread stops as soon as the caller
    /// drops the iterator.
    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        let range = (event_bound(from, false), event_bound(to, true));
        let tree = match self.tree() {
            Ok(t) => t.clone(),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let location = self.location.clone();
        // Chunks, not single events: one hand-over per PREFETCH_CHUNK events
        // keeps the two threads from waking each other for every event.
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Prefetched>(PREFETCH_EVENTS / PREFETCH_CHUNK);
        let spawned = std::thread::Builder::new()
            .name("sled-prefetch".into())
            .spawn(move || {
                let mut chunk = Vec::with_capacity(PREFETCH_CHUNK);
                for item in tree.range(range) {
                    // A bad record is reported in place and the scan goes
                    // on, as without the thread; a dropped receiver ends it.
                    chunk.push(item.map_err(|e| {
                        StoreError::Io(format!("scan events of sled store {location}: {e}"))
                    }));
                    if chunk.len() == PREFETCH_CHUNK {
                        let full =
                            std::mem::replace(&mut chunk, Vec::with_capacity(PREFETCH_CHUNK));
                        let handed = match tx.try_send(Prefetched::Raw(full)) {
                            Ok(()) => Ok(()),
                            Err(TrySendError::Full(raw)) => tx.send(raw.decoded()),
                            Err(TrySendError::Disconnected(_)) => return,
                        };
                        if handed.is_err() {
                            return;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = tx.send(Prefetched::Raw(chunk));
                }
            });
        match spawned {
            Ok(_) => Box::new(rx.into_iter().flat_map(Prefetched::into_events)),
            Err(e) => Box::new(std::iter::once(Err(StoreError::Io(format!(
                "starting the prefetch thread: {e}"
            ))))),
        }
    }

    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_> {
        let range = (event_bound(from, false), event_bound(to, true));
        let tree = match self.tree() {
            Ok(t) => t,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(tree.range(range).map(move |item| {
            let (k, _) = item.map_err(|e| self.io("scan event keys", e))?;
            event_key(&k, body(&k, EVENT_KEY_LEN)?)
        }))
    }

    fn fingerprint(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Result<Accumulator, StoreError> {
        Ok(self.fingerprints()?.fingerprint(from.as_ref(), to.as_ref()))
    }

    fn log_digest(&self) -> Result<LogDigest, StoreError> {
        Ok(self.fingerprints()?.digest().clone())
    }

    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        // Every `s` key is 9 bytes, so "after s+seq" is exactly "greater than seq".
        let start = Bound::Excluded(prefixed(ARRIVAL, &[&seq.to_be_bytes()]));
        let end = Bound::Excluded(vec![ARRIVAL + 1]);
        let tree = match self.tree() {
            Ok(t) => t,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(tree.range((start, end)).map(move |item| {
            let (k, v) = item.map_err(|e| self.io("scan arrivals", e))?;
            let n = u64_of(&k, body(&k, 8)?)?;
            // 40 bytes in a store written before the count was kept.
            let key = match v.len() {
                ARRIVAL_VALUE_LEN => event_key(&k, &v[..EVENT_KEY_LEN])?,
                _ => event_key(&k, &v)?,
            };
            Ok((n, self.event_at(&k, &key)?))
        }))
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn last_arrival(&self) -> u64 {
        self.last_arrival
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let op = format!("write meta {key:?}");
        if let Err(e) = self
            .writable_tree(&op)?
            .insert(prefixed(META, &[key.as_bytes()]), value)
        {
            return Err(self.write_failed(&op, e));
        }
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree()?
            .get(prefixed(META, &[key.as_bytes()]))
            .map_err(|e| self.io(&format!("read meta {key:?}"), e))?
            .map(|v| v.to_vec()))
    }

    fn write_state(&self) -> WriteState {
        self.write_state
    }

    /// Reopens the store once the disk can take writes again: sled keeps
    /// its first I/O error for the life of the handle, so a failed handle
    /// never writes again (module doc). The probe comes first, so while the
    /// disk is still full the old handle stays and keeps serving reads.
    fn recover(&mut self) -> Result<bool, StoreError> {
        if self.write_state == WriteState::Ok && self.handle.is_some() {
            return Ok(false);
        }
        let Some(path) = self.path.clone() else {
            return Err(self.refusal("reopen (a temporary store cannot be reopened)"));
        };
        self.probe_writable(&path)?;
        // sled's lock must be free before the new handle can take it.
        self.handle = None;
        match SledStore::open(&path) {
            Ok(fresh) => {
                info!(store = %self.location, "the store takes writes again (reopened)");
                *self = fresh;
                Ok(true)
            }
            Err(e) => {
                if let Some(state) = e.write_state() {
                    self.write_state = state;
                } else if self.write_state == WriteState::Ok {
                    self.write_state = WriteState::Full;
                }
                Err(e)
            }
        }
    }

    fn location(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => self.location.clone(),
        }
    }
}

/// A chunk of `range`'s scan, as the prefetch thread hands it over:
/// decoded there, or raw for the receiving side to decode.
enum Prefetched {
    Decoded(Vec<Result<VerifiedEvent, StoreError>>),
    Raw(Vec<Result<(sled::IVec, sled::IVec), StoreError>>),
}

impl Prefetched {
    /// This chunk with every record decoded (a no-op for a decoded one).
    fn decoded(self) -> Prefetched {
        match self {
            Prefetched::Raw(records) => {
                Prefetched::Decoded(records.into_iter().map(decode_record).collect())
            }
            decoded => decoded,
        }
    }

    fn into_events(self) -> Box<dyn Iterator<Item = Result<VerifiedEvent, StoreError>>> {
        match self {
            Prefetched::Decoded(events) => Box::new(events.into_iter()),
            Prefetched::Raw(records) => Box::new(records.into_iter().map(decode_record)),
        }
    }
}

/// Re-checks and decodes one scanned `e` record.
fn decode_record(
    record: Result<(sled::IVec, sled::IVec), StoreError>,
) -> Result<VerifiedEvent, StoreError> {
    let (k, v) = record?;
    let key = event_key(&k, body(&k, EVENT_KEY_LEN)?)?;
    reload(&v, &key.hash)
}

/// Re-checks a record read back from disk.
fn reload(bytes: &[u8], hash: &EventHash) -> Result<VerifiedEvent, StoreError> {
    VerifiedEvent::reload(bytes, hash).map_err(|source| StoreError::BadEvent {
        hash: *hash,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::cbor::Value;
    use hearth_proto::{CommunityId, Event, EventId, Identity, Payload};

    fn record(n: u64) -> (sled::IVec, sled::IVec) {
        let identity = Identity::from_seed([3; 32]);
        let event = Event {
            id: EventId::from_parts(1_767_225_600_000, u128::from(n)),
            ts: 1_767_225_600_000,
            author: identity.node_id(),
            lamport: n,
            community: CommunityId([7; 32]),
            payload: Payload::Unknown {
                type_name: "test.note".into(),
                data: Value::map([("n", Value::Uint(n))]),
            },
        }
        .sign(&identity)
        .unwrap();
        (
            prefixed(EVENT, &[&event.key().to_bytes()]).into(),
            event.bytes().into(),
        )
    }

    /// A chunk decoded on the prefetch thread yields exactly what the same
    /// chunk handed over raw yields when the reader decodes it: the events
    /// in order, and a bad record's error in its place.
    #[test]
    fn a_chunk_decodes_the_same_on_either_side() {
        let mut chunk: Vec<Result<(sled::IVec, sled::IVec), StoreError>> =
            (0..5).map(|n| Ok(record(n))).collect();
        if let Ok((_, v)) = &mut chunk[2] {
            *v = sled::IVec::from(&b"\xa1garbage"[..]);
        }
        chunk.push(Err(StoreError::Io("scan failed".into())));
        let render = |p: Prefetched| -> Vec<String> {
            p.into_events()
                .map(|r| match r {
                    Ok(e) => format!("event {}", e.event().lamport),
                    Err(e) => format!("error {e}"),
                })
                .collect()
        };
        let copy = || {
            chunk
                .iter()
                .map(|r| match r {
                    Ok(kv) => Ok(kv.clone()),
                    Err(e) => Err(StoreError::Io(e.to_string())),
                })
                .collect::<Vec<_>>()
        };
        let raw = render(Prefetched::Raw(copy()));
        let decoded = Prefetched::Raw(copy()).decoded();
        assert!(matches!(decoded, Prefetched::Decoded(_)));
        assert_eq!(render(decoded), raw);
        assert_eq!(raw.len(), 6);
        assert_eq!(raw[0], "event 0");
        assert!(raw[2].starts_with("error stored event"), "{}", raw[2]);
        assert_eq!(raw[4], "event 4");
        assert!(raw[5].contains("scan failed"), "{}", raw[5]);
    }
}
