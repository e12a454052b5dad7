//! The on-disk [`EventStore`]: one sled tree, one-byte key prefixes, so every
//! insert is a single atomic `apply_batch` (an event is never half-indexed).
//!
//! | key | value |
//! |---|---|
//! | `e` + lamport (8, BE) + hash (32) | encoded event |
//! | `h` + hash | `EventKey` bytes (40) |
//! | `i` + event id (16) + hash | empty |
//! | `s` + arrival seq (8, BE) | `EventKey` bytes |
//! | `m` + name (UTF-8) | meta value |
//!
//! Open counts the `h` keys once (O(n) keys, no bodies; ~1 s per million on
//! this machine) instead of keeping a counter record that every insert would
//! have to rewrite. The arrival counter is read from the last `s` key.
//!
//! Durability: `insert` does not flush; `flush` does. sled also flushes on
//! its own every [`FLUSH_EVERY_MS`], which bounds how long an unflushed
//! received event can be lost in a crash.

use std::ops::Bound;
use std::path::Path;

use hearth_proto::{EventHash, EventId, EventKey, VerifiedEvent};

use super::{reload, EventIter, EventStore, StoreError};

/// sled's background flush period: the crash window for received events
/// that the log has not flushed yet (local events are flushed at once).
pub const FLUSH_EVERY_MS: u64 = 500;

const EVENT: u8 = b'e';
const BY_HASH: u8 = b'h';
const BY_ID: u8 = b'i';
const ARRIVAL: u8 = b's';
const META: u8 = b'm';

#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    tree: sled::Tree,
    len: u64,
    last_arrival: u64,
}

fn io(what: &str, e: sled::Error) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

fn prefixed(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn event_key_of(what: &str, bytes: &[u8]) -> Result<EventKey, StoreError> {
    if bytes.len() != 40 {
        return Err(StoreError::Corrupt {
            what: what.to_owned(),
            reason: format!("event key is {} bytes, not 40", bytes.len()),
        });
    }
    EventKey::from_bytes(bytes).ok_or_else(|| StoreError::Corrupt {
        what: what.to_owned(),
        reason: "unreadable event key".into(),
    })
}

/// Maps a bound on event keys onto the `e`-prefixed key space.
fn event_bound(b: Bound<EventKey>, is_end: bool) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(prefixed(EVENT, &[&k.to_bytes()])),
        Bound::Excluded(k) => Bound::Excluded(prefixed(EVENT, &[&k.to_bytes()])),
        // Unbounded stays inside the prefix: [e, f).
        Bound::Unbounded if is_end => Bound::Excluded(vec![EVENT + 1]),
        Bound::Unbounded => Bound::Included(vec![EVENT]),
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`.
    pub fn open(path: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| io(&format!("open store at {}", path.display()), e))?;
        Self::from_db(db)
    }

    /// A store that lives only as long as the value (tests, benchmarks).
    pub fn temporary() -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| io("open temporary store", e))?;
        Self::from_db(db)
    }

    fn from_db(db: sled::Db) -> Result<SledStore, StoreError> {
        let tree = db.open_tree("log").map_err(|e| io("open tree", e))?;
        let mut len = 0u64;
        for item in tree.scan_prefix([BY_HASH]) {
            item.map_err(|e| io("count events", e))?;
            len += 1;
        }
        let last_arrival = match tree.scan_prefix([ARRIVAL]).next_back() {
            None => 0,
            Some(item) => {
                let (k, _) = item.map_err(|e| io("read arrival counter", e))?;
                let raw: [u8; 8] = k.get(1..).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                    StoreError::Corrupt {
                        what: "arrival index".into(),
                        reason: format!("key of {} bytes", k.len()),
                    }
                })?;
                u64::from_be_bytes(raw)
            }
        };
        Ok(SledStore {
            db,
            tree,
            len,
            last_arrival,
        })
    }

    /// The raw tree, for tests that corrupt records on purpose.
    #[doc(hidden)]
    pub fn raw_tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn event_at(&self, key: &EventKey) -> Result<VerifiedEvent, StoreError> {
        let bytes = self
            .tree
            .get(prefixed(EVENT, &[&key.to_bytes()]))
            .map_err(|e| io("read event", e))?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("event {}", key.hash),
                reason: "index points at a missing event".into(),
            })?;
        reload(&bytes, &key.hash)
    }
}

impl EventStore for SledStore {
    fn insert(&mut self, event: &VerifiedEvent) -> Result<Option<u64>, StoreError> {
        let key = event.key();
        let key_bytes = key.to_bytes();
        if self.contains(&key.hash)? {
            return Ok(None);
        }
        let seq = self.last_arrival + 1;
        let mut batch = sled::Batch::default();
        batch.insert(prefixed(EVENT, &[&key_bytes]), event.bytes());
        batch.insert(prefixed(BY_HASH, &[&key.hash.0]), &key_bytes[..]);
        batch.insert(
            prefixed(BY_ID, &[&event.event().id.to_bytes(), &key.hash.0]),
            &[][..],
        );
        batch.insert(prefixed(ARRIVAL, &[&seq.to_be_bytes()]), &key_bytes[..]);
        self.tree
            .apply_batch(batch)
            .map_err(|e| io("insert event", e))?;
        self.last_arrival = seq;
        self.len += 1;
        Ok(Some(seq))
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| io("flush", e))?;
        Ok(())
    }

    fn contains(&self, hash: &EventHash) -> Result<bool, StoreError> {
        self.tree
            .contains_key(prefixed(BY_HASH, &[&hash.0]))
            .map_err(|e| io("look up hash", e))
    }

    fn get(&self, hash: &EventHash) -> Result<Option<VerifiedEvent>, StoreError> {
        match self
            .tree
            .get(prefixed(BY_HASH, &[&hash.0]))
            .map_err(|e| io("look up hash", e))?
        {
            None => Ok(None),
            Some(k) => {
                let key = event_key_of(&format!("hash index of {hash}"), &k)?;
                self.event_at(&key).map(Some)
            }
        }
    }

    fn get_by_id(&self, id: &EventId) -> Result<Vec<VerifiedEvent>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefixed(BY_ID, &[&id.to_bytes()])) {
            let (k, _) = item.map_err(|e| io("scan id index", e))?;
            let hash =
                k.get(17..)
                    .and_then(EventHash::from_slice)
                    .ok_or_else(|| StoreError::Corrupt {
                        what: format!("id index of {id}"),
                        reason: format!("key of {} bytes", k.len()),
                    })?;
            if let Some(e) = self.get(&hash)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn range(&self, from: Bound<EventKey>, to: Bound<EventKey>) -> EventIter<'_> {
        let range = (event_bound(from, false), event_bound(to, true));
        Box::new(self.tree.range(range).map(|item| {
            let (k, v) = item.map_err(|e| io("scan events", e))?;
            let key = event_key_of("event record", k.get(1..).unwrap_or_default())?;
            reload(&v, &key.hash)
        }))
    }

    fn keys(
        &self,
        from: Bound<EventKey>,
        to: Bound<EventKey>,
    ) -> Box<dyn Iterator<Item = Result<EventKey, StoreError>> + '_> {
        let range = (event_bound(from, false), event_bound(to, true));
        Box::new(self.tree.range(range).map(|item| {
            let (k, _) = item.map_err(|e| io("scan event keys", e))?;
            event_key_of("event record", k.get(1..).unwrap_or_default())
        }))
    }

    fn since_arrival(
        &self,
        seq: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, VerifiedEvent), StoreError>> + '_> {
        let from = prefixed(ARRIVAL, &[&seq.saturating_add(1).to_be_bytes()]);
        let start = if seq == u64::MAX {
            Bound::Excluded(vec![ARRIVAL + 1])
        } else {
            Bound::Included(from)
        };
        Box::new(
            self.tree
                .range((start, Bound::Excluded(vec![ARRIVAL + 1])))
                .map(|item| {
                    let (k, v) = item.map_err(|e| io("scan arrivals", e))?;
                    let raw: [u8; 8] =
                        k.get(1..).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                            StoreError::Corrupt {
                                what: "arrival index".into(),
                                reason: format!("key of {} bytes", k.len()),
                            }
                        })?;
                    let key = event_key_of("arrival index", &v)?;
                    Ok((u64::from_be_bytes(raw), self.event_at(&key)?))
                }),
        )
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
            .map_err(|e| io(&format!("write meta {key}"), e))?;
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(prefixed(META, &[key.as_bytes()]))
            .map_err(|e| io(&format!("read meta {key}"), e))?
            .map(|v| v.to_vec()))
    }
}
