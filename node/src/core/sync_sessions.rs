//! The node's sync sessions, one per peer and role. The driver calls these
//! on connection, on the periodic timer and for every sync message; events
//! that arrive through sync go through [`Node::receive`] like any other.
//!
//! A responder tells a peer's sessions apart by salt. A message with
//! ranges carries its session's salt; one without (events, or "nothing
//! more") carries none and belongs to the running session. A peer runs one
//! sync with us at a time (`sync_start` starts no second one), so a message
//! with a new salt opens a new session: the old one is dropped, its queued
//! events and counters with it, since its initiator has given up on it. A
//! late message of that dropped session is refused. A message for no
//! session at all is answered on its own merits: every message is
//! self-contained but for the events queued to go out, so answering one
//! just starts a session.

use std::collections::BTreeMap;

use hearth_proto::NodeId;
use tracing::{debug, info_span};

use super::sync::{SyncError, SyncMessage, SyncSession, SyncStats};
use super::{Node, Source};
use crate::store::EventStore;

/// Sessions kept at once per role: one per connected peer, bounded so a
/// swarm of peers cannot make a node keep unbounded state.
pub const SYNC_SESSIONS_MAX: usize = 256;

/// Both roles' sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    initiated: BTreeMap<NodeId, SyncSession>,
    answering: BTreeMap<NodeId, Answering>,
}

/// The responder's session with one peer.
#[derive(Debug, Default)]
struct Answering {
    session: SyncSession,
    /// Salt of the session this one replaced, 0 if none. That session is
    /// over, so a late message of it is refused: answering it would spend
    /// this session's queued events on a reply nobody reads. One salt is
    /// enough for the common race (the old session's last request still
    /// in flight when the new one opens).
    replaced: u64,
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
        // Never 0: a message without ranges decodes with salt 0, and a
        // responder's session has salt 0 until it adopts the initiator's.
        let salt = self.next_random_u64() | 1;
        let (session, msg) = SyncSession::initiate(self.log.store(), salt)?;
        self.sessions.initiated.insert(peer, session);
        Ok(Some(msg.encode()))
    }

    /// Answers a sync message from `peer` (the responder side). A refused
    /// message ends the peer's session (the peer, told so, gives up its
    /// side too), except a late message of a replaced session, which
    /// leaves the running one untouched.
    pub fn sync_answer(&mut self, peer: NodeId, bytes: &[u8]) -> Result<Vec<u8>, SyncError> {
        let _span = info_span!("sync_answer", %peer).entered();
        let current = self.sessions.answering.remove(&peer);
        let msg = SyncMessage::decode(bytes)?;
        let mut answering = match current {
            Some(a) if a.session.continues(&msg) => a,
            Some(a) if a.replaced != 0 && msg.salt == a.replaced => {
                let ours = a.session.salt();
                self.sessions.answering.insert(peer, a);
                debug!(salt = msg.salt, "late message of a replaced sync session");
                return Err(SyncError::OtherSession {
                    ours,
                    theirs: msg.salt,
                });
            }
            Some(a) => {
                debug!(
                    old = a.session.salt(),
                    new = msg.salt,
                    "peer opened a new sync session; dropping the old one"
                );
                Answering {
                    session: SyncSession::default(),
                    replaced: a.session.salt(),
                }
            }
            None => {
                if self.sessions.answering.len() >= SYNC_SESSIONS_MAX {
                    // Forget the oldest-keyed session rather than refuse:
                    // it is only bookkeeping of an exchange the peer
                    // restarts if needed.
                    self.sessions.answering.pop_first();
                }
                Answering::default()
            }
        };
        let result = answering
            .session
            .handle_message(self.log.store(), msg, bytes.len());
        self.admit(peer, &mut answering.session);
        let reply = result?;
        if !(reply.is_empty() && answering.session.is_done()) {
            self.sessions.answering.insert(peer, answering);
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
        let msg = SyncMessage::decode(bytes)?;
        // An answer of another session fails this one (`OtherSession`):
        // each request gets one answer, so this session's own is lost.
        let result = session.handle_message(self.log.store(), msg, bytes.len());
        self.admit(peer, &mut session);
        let next = result?;
        // Over when neither side has anything left: no closing round trip
        // of two empty messages (see `SyncSession::finished`).
        if session.finished(&next) {
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

    /// Forgets both sessions with a peer that went away.
    pub fn sync_abort(&mut self, peer: &NodeId) {
        self.sessions.initiated.remove(peer);
        self.sessions.answering.remove(peer);
    }

    /// Forgets only the sync we started with `peer` (its request failed or
    /// was refused): a sync the peer is running with us, where we answer,
    /// goes on.
    pub fn sync_abort_initiated(&mut self, peer: &NodeId) {
        self.sessions.initiated.remove(peer);
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
        let received = session.take_received();
        if !received.is_empty() {
            self.receive_batch(&received, Source::Sync(peer));
        }
    }
}
