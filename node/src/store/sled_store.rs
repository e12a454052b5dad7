//! The on-disk [`EventStore`] over sled 0.34.
//!
//! # Layout
//!
//! One sled tree (`log`) with one-byte key prefixes, so every insert is a
//! single atomic `apply_batch`: an event is never stored half-indexed.
//!
//! | key | value |
//! |---|---|
//! | `e` + lamport (8, BE) + hash (32) = `EventKey::to_bytes()` | encoded event |
//! | `h` + hash (32) | `EventKey` bytes (40) |
//! | `i` + event id (16) + hash (32) | empty |
//! | `s` + arrival seq (8, BE) | `EventKey` bytes (40) + event count after this insert (8, BE) |
//! | `m` + name (UTF-8) | meta value |
//!
//! Big-endian numbers make byte order equal key order, so a scan of the `e`
//! prefix is the log in `(lamport, hash)` order and a scan of `s` is arrival
//! order. `range` and `keys` read only the `e` records: no lookup per event.
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

use std::ops::Bound;
use std::path::Path;

use hearth_proto::{EventHash, EventId, EventKey, VerifiedEvent};

use super::{EventIter, EventStore, StoreError};

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
const PREFETCH_CHUNK: usize = 256;

/// sled reports a held lock as an `Other` I/O error whose text carries the
/// OS's `WouldBlock`; match both forms.
fn is_lock_busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

const EVENT: u8 = b'e';
const BY_HASH: u8 = b'h';
const BY_ID: u8 = b'i';
const ARRIVAL: u8 = b's';
const META: u8 = b'm';

const EVENT_KEY_LEN: usize = 40;
/// An `s` value: the event's key, then the event count after its insert.
const ARRIVAL_VALUE_LEN: usize = EVENT_KEY_LEN + 8;
const ID_LEN: usize = 16;
const HASH_LEN: usize = 32;

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    /// Where the store lives, for error messages.
    location: String,
    len: u64,
    last_arrival: u64,
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
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let location = format!("at {}", path.display());
        let config = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(FLUSH_EVERY_MS));
        let mut waited_ms = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if is_lock_busy(&e) && waited_ms < LOCK_WAIT_MS => {
                    std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
                    waited_ms += LOCK_RETRY_MS;
                }
                Err(sled::Error::Io(e)) if is_lock_busy(&e) => {
                    return Err(StoreError::Io(format!(
                        "the sled store {location} is in use by another process \
                         (is `hearth run` running on this data dir?): {e}"
                    )))
                }
                Err(e) => return Err(StoreError::Io(format!("open sled store {location}: {e}"))),
            }
        };
        Self::from_db(db, location)
    }

    /// A store that lives only as long as the value (tests, benchmarks).
    pub fn temporary() -> Result<SledStore, StoreError> {
        let location = "(temporary)".to_owned();
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| StoreError::Io(format!("open sled store {location}: {e}")))?;
        Self::from_db(db, location)
    }

    fn from_db(db: sled::Db, location: String) -> Result<SledStore, StoreError> {
        let mut store = SledStore {
            tree: db
                .open_tree("log")
                .map_err(|e| StoreError::Io(format!("open tree of sled store {location}: {e}")))?,
            db,
            location,
            len: 0,
            last_arrival: 0,
        };
        let last = store.tree.scan_prefix([ARRIVAL]).next_back();
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
        for item in self.tree.scan_prefix([BY_HASH]) {
            item.map_err(|e| self.io("count events", e))?;
            n += 1;
        }
        Ok(n)
    }

    fn io(&self, op: &str, e: sled::Error) -> StoreError {
        StoreError::Io(format!("{op} in sled store {}: {e}", self.location))
    }

    /// The raw tree, for tests that corrupt records on purpose.
    #[doc(hidden)]
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Reads and re-checks the event filed under `key`, which an index
    /// (named by `index_key`) pointed at.
    fn event_at(&self, index_key: &[u8], key: &EventKey) -> Result<VerifiedEvent, StoreError> {
        let bytes = self
            .tree
            .get(prefixed(EVENT, &[&key.to_bytes()]))
            .map_err(|e| self.io("read event", e))?
            .ok_or_else(|| corrupt(index_key, format!("points at missing event {}", key.hash)))?;
        reload(&bytes, &key.hash)
    }
}

impl EventStore for SledStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        let key = event.key();
        if self.contains(&key.hash)? {
            return Ok(None);
        }
        let key_bytes = key.to_bytes();
        let seq = self.last_arrival + 1;
        let len = self.len + 1;
        let mut batch = sled::Batch::default();
        batch.insert(prefixed(EVENT, &[&key_bytes]), event.bytes());
        batch.insert(prefixed(BY_HASH, &[&key.hash.0]), &key_bytes[..]);
        batch.insert(
            prefixed(BY_ID, &[&event.event().id.to_bytes(), &key.hash.0]),
            &[][..],
        );
        batch.insert(
            prefixed(ARRIVAL, &[&seq.to_be_bytes()]),
            arrival_value(&key_bytes, len),
        );
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.io(&format!("insert event {}", key.hash), e))?;
        self.last_arrival = seq;
        self.len = len;
        Ok(Some(seq))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.io("flush", e))?;
        Ok(())
    }

    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        self.tree
            .contains_key(prefixed(BY_HASH, &[&hash.0]))
            .map_err(|e| self.io("look up hash", e))
    }

    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        let index_key = prefixed(BY_HASH, &[&hash.0]);
        let Some(v) = self
            .tree
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

    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefixed(BY_ID, &[&id.to_bytes()])) {
            let (k, _) = item.map_err(|e| self.io("scan id index", e))?;
            let b = body(&k, ID_LEN + HASH_LEN)?;
            let hash = EventHash::from_slice(&b[ID_LEN..])
                .ok_or_else(|| corrupt(&k, "unreadable hash".into()))?;
            match self.get(&hash)? {
                Some(e) => out.push(e),
                None => return Err(corrupt(&k, format!("points at missing event {hash}"))),
            }
        }
        Ok(out)
    }

    /// Reads and re-checks events on a prefetch thread while the caller
    /// consumes them: replay is half reading and decoding, half applying to
    /// views, and the two halves overlap on two cores. The channel is bounded
    /// ([`PREFETCH_EVENTS`]), and the thread stops as soon as the caller drops
    /// the iterator.
    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        let range = (event_bound(from, false), event_bound(to, true));
        let tree = self.tree.clone();
        let location = self.location.clone();
        // Chunks, not single events: one hand-over per PREFETCH_CHUNK events
        // keeps the two threads from waking each other for every event.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<VerifiedEvent, StoreError>>>(
            PREFETCH_EVENTS / PREFETCH_CHUNK,
        );
        let spawned = std::thread::Builder::new()
            .name("sled-prefetch".into())
            .spawn(move || {
                let mut chunk = Vec::with_capacity(PREFETCH_CHUNK);
                for item in tree.range(range) {
                    // A bad record is reported in place and the scan goes
                    // on, as without the thread; a dropped receiver ends it.
                    chunk.push(
                        item.map_err(|e| {
                            StoreError::Io(format!("scan events of sled store {location}: {e}"))
                        })
                        .and_then(|(k, v)| {
                            let key = event_key(&k, body(&k, EVENT_KEY_LEN)?)?;
                            reload(&v, &key.hash)
                        }),
                    );
                    if chunk.len() == PREFETCH_CHUNK
                        && tx
                            .send(std::mem::replace(
                                &mut chunk,
                                Vec::with_capacity(PREFETCH_CHUNK),
                            ))
                            .is_err()
                    {
                        return;
                    }
                }
                if !chunk.is_empty() {
                    let _ = tx.send(chunk);
                }
            });
        match spawned {
            Ok(_) => Box::new(rx.into_iter().flatten()),
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
        Box::new(self.tree.range(range).map(move |item| {
            let (k, _) = item.map_err(|e| self.io("scan event keys", e))?;
            event_key(&k, body(&k, EVENT_KEY_LEN)?)
        }))
    }

    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        // Every `s` key is 9 bytes, so "after s+seq" is exactly "greater than seq".
        let start = Bound::Excluded(prefixed(ARRIVAL, &[&seq.to_be_bytes()]));
        let end = Bound::Excluded(vec![ARRIVAL + 1]);
        Box::new(self.tree.range((start, end)).map(move |item| {
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
        self.tree
            .insert(prefixed(META, &[key.as_bytes()]), value)
            .map_err(|e| self.io(&format!("write meta {key:?}"), e))?;
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(prefixed(META, &[key.as_bytes()]))
            .map_err(|e| self.io(&format!("read meta {key:?}"), e))?
            .map(|v| v.to_vec()))
    }
}

/// Re-checks a record read back from disk.
fn reload(bytes: &[u8], hash: &EventHash) -> Result<VerifiedEvent, StoreError> {
    VerifiedEvent::reload(bytes, hash).map_err(|source| StoreError::BadEvent {
        hash: *hash,
        source,
    })
}
