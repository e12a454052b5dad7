//! This node's local inbox state (issue 14): which messages, replies and
//! claims its user has read, and the text of the messages it sent (a sealed
//! box opens only for its recipient, so the sender keeps its own copy).
//! None of it is an event: it is never gossiped or synced, and another
//! device of the same person starts with its own.
//!
//! The core reads and writes it through `services::conversations::
//! LocalInbox`, given with each local call; this module owns where it lives:
//! in memory, written through to a small sled database (`<data dir>/inbox`)
//! when the runtime gives one, so read marks and sent texts survive a
//! restart. Also here: which sent messages still wait for a recipient that
//! has not been connected since (`node.status`'s `dm_waiting`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use hearth_proto::{EventKey, NodeId};
use serde::{Deserialize, Serialize};

use crate::core::services::conversations::{ConversationKey, LocalInbox, SentCopy};

/// Conversations with read marks: a household talks with far fewer
/// members and threads; past this the lowest-named conversation's marks go
/// (it shows as unread again, nothing is lost).
pub const READ_CONVERSATIONS_MAX: usize = 4_096;
/// Read marks per conversation: the view shows at most 256 messages per
/// sender and 300 replies and claims per post, and a mark names only what
/// the conversation showed when it was marked.
pub const READ_ITEMS_MAX: usize = 512;
/// Copies of sent messages kept: the newest (by log key) win. At most
/// 3,000 characters each, so the store stays in the tens of MB at worst
/// and is usually a few KB.
pub const SENT_COPIES_MAX: usize = 2_048;

/// Why the inbox's store failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("the inbox store at {path}: {source}")]
    Store { path: String, source: sled::Error },
    #[error("an inbox record cannot be encoded: {0}")]
    Encode(String),
}

/// A sent message's copy and whether it still waits for its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SentRecord {
    copy: SentCopy,
    /// Its recipient has not been connected to this node since it was sent.
    waiting: bool,
}

#[derive(Debug, Default)]
struct State {
    read: BTreeMap<ConversationKey, BTreeSet<EventKey>>,
    sent: BTreeMap<EventKey, SentRecord>,
}

#[derive(Debug)]
struct Store {
    path: String,
    db: sled::Db,
    read: sled::Tree,
    sent: sled::Tree,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<State>,
    store: Option<Store>,
}

fn cbor<T: Serialize>(v: &T) -> Result<Vec<u8>, InboxError> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| InboxError::Encode(e.to_string()))?;
    Ok(out)
}

impl Inbox {
    /// An inbox kept in memory only (tests; a node without a data dir).
    pub fn in_memory() -> Inbox {
        Inbox::default()
    }

    /// Opens (or creates) the inbox kept in directory `dir`, loading what
    /// it holds. A record that does not decode is dropped with a warning:
    /// it is only read state or a copy, never a part of the log.
    pub fn open(dir: &Path) -> Result<Inbox, InboxError> {
        let path = dir.display().to_string();
        let err = |source| InboxError::Store {
            path: path.clone(),
            source,
        };
        let db =
            crate::store::open_waiting_for_lock(&sled::Config::new().path(dir)).map_err(err)?;
        let read = db.open_tree("read").map_err(err)?;
        let sent = db.open_tree("sent").map_err(err)?;
        let mut state = State::default();
        for item in read.iter() {
            let (k, v) = item.map_err(err)?;
            let key: Result<ConversationKey, _> = ciborium::from_reader(&k[..]);
            let items: Result<BTreeSet<EventKey>, _> = ciborium::from_reader(&v[..]);
            match (key, items) {
                (Ok(key), Ok(items)) => {
                    state.read.insert(key, items);
                }
                _ => tracing::warn!(%path, "an unreadable read mark in the inbox: dropped"),
            }
        }
        for item in sent.iter() {
            let (k, v) = item.map_err(err)?;
            let record: Result<SentRecord, _> = ciborium::from_reader(&v[..]);
            match (EventKey::from_bytes(&k), record) {
                (Some(key), Ok(record)) => {
                    state.sent.insert(key, record);
                }
                _ => tracing::warn!(%path, "an unreadable sent copy in the inbox: dropped"),
            }
        }
        Ok(Inbox {
            state: Mutex::new(state),
            store: Some(Store {
                path,
                db,
                read,
                sent,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the state whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, f: impl FnOnce(&Store) -> sled::Result<()>) -> Result<(), InboxError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        f(store)
            .and_then(|()| store.db.flush().map(drop))
            .map_err(|source| InboxError::Store {
                path: store.path.clone(),
                source,
            })
    }

    /// `recipient` is connected now: gossip or the sync on connecting
    /// carries what this node wrote to it, so nothing waits for it any more.
    pub fn recipient_seen(&self, recipient: &NodeId) {
        let mut state = self.lock();
        let mut changed = Vec::new();
        for (key, record) in state.sent.iter_mut() {
            if record.waiting && record.copy.to == *recipient {
                record.waiting = false;
                changed.push((*key, record.clone()));
            }
        }
        drop(state);
        let written = self.write(|s| {
            for (key, record) in &changed {
                let bytes = cbor(record).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
                s.sent.insert(key.to_bytes(), bytes)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record delivered messages");
        }
    }

    /// Sent messages whose recipient has not been connected since they
    /// were written, except to recipients in `connected` now.
    pub fn waiting(&self, connected: &BTreeSet<NodeId>) -> usize {
        self.lock()
            .sent
            .values()
            .filter(|r| r.waiting && !connected.contains(&r.copy.to))
            .count()
    }
}

impl LocalInbox for Inbox {
    fn is_read(&self, conversation: &ConversationKey, item: &EventKey) -> bool {
        self.lock()
            .read
            .get(conversation)
            .is_some_and(|items| items.contains(item))
    }

    fn mark_read(&self, conversation: ConversationKey, items: &[EventKey]) -> Result<(), String> {
        // The newest marks matter most: keep the highest keys.
        let marks: BTreeSet<EventKey> = items.iter().rev().take(READ_ITEMS_MAX).copied().collect();
        let mut state = self.lock();
        state.read.insert(conversation, marks.clone());
        let mut dropped = None;
        if state.read.len() > READ_CONVERSATIONS_MAX {
            dropped = state.read.pop_first().map(|(k, _)| k);
        }
        drop(state);
        self.write(|s| {
            let key = cbor(&conversation).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            let value = cbor(&marks).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            s.read.insert(key, value)?;
            if let Some(gone) = dropped {
                let key = cbor(&gone).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
                s.read.remove(key)?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
    }

    fn sent_copy(&self, key: &EventKey) -> Option<SentCopy> {
        self.lock().sent.get(key).map(|r| r.copy.clone())
    }

    fn keep_sent(&self, key: EventKey, copy: SentCopy) -> Result<(), String> {
        let record = SentRecord {
            copy,
            waiting: true,
        };
        let mut state = self.lock();
        state.sent.insert(key, record.clone());
        let mut dropped = None;
        if state.sent.len() > SENT_COPIES_MAX {
            dropped = state.sent.pop_first().map(|(k, _)| k);
        }
        drop(state);
        self.write(|s| {
            let bytes = cbor(&record).map_err(|e| sled::Error::Unsupported(e.to_string()))?;
            s.sent.insert(key.to_bytes(), bytes)?;
            if let Some(gone) = dropped {
                s.sent.remove(gone.to_bytes())?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::EventHash;

    fn key(n: u64) -> EventKey {
        EventKey {
            lamport: n,
            hash: EventHash([n as u8; 32]),
        }
    }

    fn copy(to: u8, body: &str) -> SentCopy {
        SentCopy {
            to: NodeId([to; 32]),
            body: body.into(),
            post: None,
        }
    }

    /// Read marks and sent copies survive closing and reopening the inbox
    /// store; a delivered message stays delivered.
    #[test]
    fn read_marks_and_sent_copies_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        let with = ConversationKey::With(NodeId([7; 32]));
        {
            let inbox = Inbox::open(&path).unwrap();
            inbox.mark_read(with, &[key(1), key(2)]).unwrap();
            inbox.keep_sent(key(3), copy(7, "hello")).unwrap();
            inbox.keep_sent(key(4), copy(8, "hi")).unwrap();
            inbox.recipient_seen(&NodeId([8; 32]));
        }
        let inbox = Inbox::open(&path).unwrap();
        assert!(inbox.is_read(&with, &key(2)));
        assert!(!inbox.is_read(&with, &key(3)));
        assert_eq!(inbox.sent_copy(&key(3)).unwrap().body, "hello");
        assert_eq!(
            inbox.waiting(&BTreeSet::new()),
            1,
            "only the one to 7 waits"
        );
        assert_eq!(inbox.waiting(&BTreeSet::from([NodeId([7; 32])])), 0);
    }

    /// The sent copies are bounded: past the bound the oldest goes.
    #[test]
    fn sent_copies_are_bounded_oldest_first() {
        let inbox = Inbox::in_memory();
        for n in 0..(SENT_COPIES_MAX as u64 + 3) {
            inbox.keep_sent(key(n), copy(1, "x")).unwrap();
        }
        assert!(inbox.sent_copy(&key(2)).is_none());
        assert!(inbox.sent_copy(&key(3)).is_some());
        assert_eq!(inbox.lock().sent.len(), SENT_COPIES_MAX);
    }
}
