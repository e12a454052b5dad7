//! The node's sync sessions, one per peer and role. The driver calls these
//! on connection, on the periodic timer and for every sync message; events
//! that arrive through sync go through [`Node::receive`] like any other.

use std::collections::BTreeMap;

use hearth_proto::NodeId;
use tracing::{debug, info_span};

use super::sync::{SyncError, SyncSession, SyncStats};
use super::{Node, Source};
use crate::store::EventStore;

/// Sessions kept at once per role: one per connected peer, bounded so a
/// swarm of peers cannot make a node keep unbounded state.
pub const SYNC_SESSIONS_MAX: usize = 256;

/// Both roles' sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    initiated: BTreeMap<NodeId, SyncSession>,
    answering: BTreeMap<NodeId, SyncSession>,
}

/// A finished sync, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub peer: NodeId,
    pub stats: SyncStats,
}

impl<S: EventStore> Node<S> {
    /// Starts a sync with `peer` unless one is running; returns the first
    /// message to send.
    pub fn sync_start(&mut self, peer: NodeId) -> Result<Option<Vec<u8>>, SyncError> {
        if self.sessions.initiated.contains_key(&peer)
            || self.sessions.initiated.len() >= SYNC_SESSIONS_MAX
        {
            return Ok(None);
        }
        // Never 0: a responder takes salt 0 to mean "not chosen yet".
        let salt = self.next_random_u64() | 1;
        let (session, msg) = SyncSession::initiate(self.log.store(), salt)?;
        self.sessions.initiated.insert(peer, session);
        Ok(Some(msg.encode()))
    }

    /// Answers a sync message from `peer` (the responder side).
    pub fn sync_answer(&mut self, peer: NodeId, bytes: &[u8]) -> Result<Vec<u8>, SyncError> {
        let _span = info_span!("sync_answer", %peer).entered();
        if !self.sessions.answering.contains_key(&peer)
            && self.sessions.answering.len() >= SYNC_SESSIONS_MAX
        {
            // Forget the oldest-keyed session rather than refuse: it is
            // only bookkeeping of an exchange the peer restarts if needed.
            if let Some(first) = self.sessions.answering.keys().next().copied() {
                self.sessions.answering.remove(&first);
            }
        }
        let mut session = self.sessions.answering.remove(&peer).unwrap_or_default();
        let result = session.handle(self.log.store(), bytes);
        self.admit(peer, &mut session);
        let reply = result?;
        if !(reply.is_empty() && session.is_done()) {
            self.sessions.answering.insert(peer, session);
        }
        Ok(reply.encode())
    }

    /// Handles the peer's answer (the initiator side). Returns the next
    /// message to send, or `None` when the sync is complete.
    pub fn sync_continue(
        &mut self,
        peer: NodeId,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, SyncError> {
        let _span = info_span!("sync_continue", %peer).entered();
        let Some(mut session) = self.sessions.initiated.remove(&peer) else {
            return Ok(None); // a late answer to a sync we gave up on
        };
        let reply_was_empty = bytes_is_empty_message(bytes);
        let result = session.handle(self.log.store(), bytes);
        self.admit(peer, &mut session);
        let next = result?;
        if next.is_empty() && reply_was_empty && session.is_done() {
            debug!(stats = ?session.stats(), "sync complete");
            self.last_sync = Some(SyncReport {
                peer,
                stats: session.stats(),
            });
            return Ok(None);
        }
        self.sessions.initiated.insert(peer, session);
        Ok(Some(next.encode()))
    }

    /// Forgets sessions with a peer that went away or failed.
    pub fn sync_abort(&mut self, peer: &NodeId) {
        self.sessions.initiated.remove(peer);
        self.sessions.answering.remove(peer);
    }

    /// Whether a sync we started with `peer` is still running.
    pub fn sync_running(&self, peer: &NodeId) -> bool {
        self.sessions.initiated.contains_key(peer)
    }

    /// The last completed sync this node initiated.
    pub fn last_sync(&self) -> Option<SyncReport> {
        self.last_sync
    }

    fn admit(&mut self, peer: NodeId, session: &mut SyncSession) {
        for bytes in session.take_received() {
            // Refusals are logged by `receive`; sync carries on with the rest.
            let _ = self.receive(&bytes, Source::Sync(peer));
        }
    }
}

fn bytes_is_empty_message(bytes: &[u8]) -> bool {
    super::sync::SyncMessage::decode(bytes).is_ok_and(|m| m.is_empty())
}
