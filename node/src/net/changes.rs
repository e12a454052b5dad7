//! The node's change feed: what its views show differently (posts added,
//! updated, expired or hidden; levels changed), what happens to its peers
//! (connected, disconnected, a sync finished) and, from saved searches,
//! which posts matched. The HTTP API's live stream (`GET /api/stream`) and
//! the webhooks read it; the driver and the saved searches publish to it.
//!
//! Post changes come from what the core actually applied
//! (`Output::ViewChanged`), never from the events themselves, so an update
//! the view ignores (not by the author) reports nothing, and events from
//! gossip, sync, an imported file and this node's own posts all report
//! alike.
//!
//! Every change gets a sequence number in this run of the node, and the
//! feed keeps the last [`RING_MAX`] of them so a reader that reconnects can
//! be given what it missed ([`ChangeFeed::resume`]). Event ids carry a
//! random prefix drawn at start, so an id from an earlier run of the node
//! is never taken for one of this run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hearth_proto::{Category, EventId, EventRef, ExpiryReason, Level, NodeId};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::core::services::conversations::LocalInbox;
use crate::core::services::market::PostView;
use crate::core::views::conversations::{ClaimStatus, ConversationChange};
use crate::core::Node;
use crate::store::EventStore;

/// Changes a subscriber may fall behind before it is told it lagged (and
/// the stream sends it a `reset`): a burst of a few hundred posts (an
/// import, a sync after days offline) fits; a reader that stops reading
/// costs at most this many changes of memory, never blocks the driver.
pub const BROADCAST_MAX: usize = 1024;
/// Recent changes kept for readers that reconnect with `Last-Event-ID`:
/// minutes of a busy neighbourhood, a few hundred KB at most.
pub const RING_MAX: usize = 1024;

/// One change, as the stream names and shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A post is now shown (new, or shown again).
    PostAdded(Box<PostView>),
    /// A shown post has new content (or a new effective expiry).
    PostUpdated(Box<PostView>),
    /// A shown post ended by a counting expiry.
    PostExpired(PostGone),
    /// A shown post is hidden without an expiry: its author is no longer
    /// a member, or it is over the per-author bound.
    PostHidden(PostGone),
    /// A key's level changed (`level: None`: it has none now).
    MemberLevel {
        node: NodeId,
        level: Option<Level>,
        name: Option<String>,
    },
    PeerConnected(PeerChange),
    PeerDisconnected(PeerChange),
    /// A sync this node started finished; counts are events.
    SyncFinished {
        peer: String,
        node: Option<NodeId>,
        received: u64,
        sent: u64,
        rounds: u32,
    },
    /// A reply now shows under a post (issue 14): public, no text (the
    /// page fetches the thread).
    Reply {
        post: EventRef,
        author: NodeId,
        id: EventId,
        lamport: u64,
    },
    /// A claim now shows under a post, or was withdrawn (`state`).
    Claim {
        post: EventRef,
        author: NodeId,
        id: EventId,
        lamport: u64,
        state: ClaimStatus,
    },
    /// A post's author accepted a claim: the post is fulfilled by
    /// `claim.author`.
    ClaimAccepted {
        post: EventRef,
        claim: EventRef,
        lamport: u64,
    },
    /// A private message to (or from) this node is stored. No text and no
    /// sender's words: the stream is open on loopback, bodies need the
    /// token (`conversation.get`).
    Message {
        with: NodeId,
        lamport: u64,
        /// Unread messages from `with` now.
        unread: usize,
        /// This node sent it.
        outgoing: bool,
    },
    /// A saved search matched a post.
    Match {
        subscription: String,
        post: Box<PostView>,
    },
    /// The reader must reload: changes were lost (too many at once).
    Reset {
        reason: String,
    },
}

/// A post that left the view: enough to remove it, and its category and
/// tags so filtered readers see the removals of what they were shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostGone {
    pub id: EventId,
    pub author: NodeId,
    /// The expiry's reason, or why it is hidden (`author_inactive`,
    /// `over_limit`).
    pub reason: String,
    /// Who ended it (an expiry), absent for a hidden post.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<NodeId>,
    /// For reason `fulfilled` by an accepted claim: the claim's author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfilled_by: Option<NodeId>,
    pub category: Category,
    pub tags: Vec<String>,
}

impl PostGone {
    pub fn reason_of(reason: &ExpiryReason) -> String {
        reason.as_str().to_owned()
    }
}

/// A peer that came or went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerChange {
    pub peer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Change {
    /// The SSE `event:` name (docs/api.md).
    pub fn name(&self) -> &'static str {
        match self {
            Change::PostAdded(_) => "post.added",
            Change::PostUpdated(_) => "post.updated",
            Change::PostExpired(_) => "post.expired",
            Change::PostHidden(_) => "post.hidden",
            Change::MemberLevel { .. } => "member.level",
            Change::PeerConnected(_) => "peer.connected",
            Change::PeerDisconnected(_) => "peer.disconnected",
            Change::SyncFinished { .. } => "sync.finished",
            Change::Reply { .. } => "reply",
            Change::Claim { .. } => "claim",
            Change::ClaimAccepted { .. } => "claim_accepted",
            Change::Message { .. } => "message",
            Change::Match { .. } => "match",
            Change::Reset { .. } => "reset",
        }
    }

    /// The SSE `data:` (JSON).
    pub fn data(&self) -> Value {
        match self {
            Change::PostAdded(p) | Change::PostUpdated(p) => json_of(p.as_ref()),
            Change::PostExpired(g) | Change::PostHidden(g) => json_of(g),
            Change::MemberLevel { node, level, name } => {
                let mut v = json!({ "node": node, "level": level });
                if let (Some(n), Some(o)) = (name, v.as_object_mut()) {
                    o.insert("name".into(), json!(n));
                }
                v
            }
            Change::PeerConnected(p) | Change::PeerDisconnected(p) => json_of(p),
            Change::SyncFinished {
                peer,
                node,
                received,
                sent,
                rounds,
            } => json!({
                "peer": peer, "node": node, "received": received,
                "sent": sent, "rounds": rounds,
            }),
            Change::Reply {
                post,
                author,
                id,
                lamport,
            } => json!({ "post": post, "author": author, "id": id, "lamport": lamport }),
            Change::Claim {
                post,
                author,
                id,
                lamport,
                state,
            } => json!({
                "post": post, "author": author, "id": id, "lamport": lamport,
                "state": state.as_str(),
            }),
            Change::ClaimAccepted {
                post,
                claim,
                lamport,
            } => json!({
                "post": post, "claim": claim, "claim_author": claim.author,
                "lamport": lamport,
            }),
            Change::Message {
                with,
                lamport,
                unread,
                outgoing,
            } => json!({
                "with": with, "lamport": lamport, "unread": unread, "outgoing": outgoing,
            }),
            Change::Match { subscription, post } => {
                json!({ "subscription": subscription, "post": json_of(post.as_ref()) })
            }
            Change::Reset { reason } => json!({ "reason": reason }),
        }
    }

    /// The category and tags of a post change (the stream's filters read
    /// them); `None` for changes about no post, which every reader gets.
    pub fn post_facets(&self) -> Option<(Category, &[String])> {
        match self {
            Change::PostAdded(p) | Change::PostUpdated(p) => Some((p.category, &p.tags)),
            Change::Match { post, .. } => Some((post.category, &post.tags)),
            Change::PostExpired(g) | Change::PostHidden(g) => Some((g.category, &g.tags)),
            _ => None,
        }
    }
}

/// The feed's form of a conversation change (issue 14): replies, claims
/// and acceptances for every reader; a sealed message only when this node
/// wrote or receives it, as `message` without any of its text.
pub fn conversation_change<S: EventStore>(
    node: &Node<S>,
    inbox: &dyn LocalInbox,
    change: ConversationChange,
) -> Option<Change> {
    Some(match change {
        ConversationChange::Reply {
            post,
            author,
            id,
            key,
        } => Change::Reply {
            post,
            author,
            id,
            lamport: key.lamport,
        },
        ConversationChange::Claim {
            post,
            author,
            id,
            key,
            state,
        } => Change::Claim {
            post,
            author,
            id,
            lamport: key.lamport,
            state,
        },
        ConversationChange::Accepted { post, claim, key } => Change::ClaimAccepted {
            post,
            claim,
            lamport: key.lamport,
        },
        ConversationChange::Sealed { from, to, key, .. } => {
            let me = node.node_id();
            let (with, outgoing) = match (from == me, to == me) {
                (false, true) => (from, false),
                (true, false) => (to, true),
                _ => return None,
            };
            Change::Message {
                with,
                lamport: key.lamport,
                unread: node.unread_from(with, inbox),
                outgoing,
            }
        }
    })
}

fn json_of<T: Serialize>(v: &T) -> Value {
    // Plain data with string keys: serialising cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A change with its place in this run's sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    /// 1, 2, 3, ... in the order published.
    pub seq: u64,
    pub change: Change,
}

/// Why a reader that asked to resume must reload instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("event id {0:?} is not one this node gives out")]
    Malformed(String),
    #[error("event id {0:?} is from an earlier run of the node")]
    OtherRun(String),
    #[error("event id {0:?} is older than the {RING_MAX} changes the node keeps")]
    TooOld(String),
    #[error("event id {0:?} is ahead of this node's changes")]
    Ahead(String),
}

/// What a resuming reader gets: the live receiver (subscribed before the
/// ring was read, so nothing falls between) and the changes it missed, or
/// why it must reload; `last` is the newest change the ring held then.
#[derive(Debug)]
pub struct Resumed {
    pub live: broadcast::Receiver<Arc<Stamped>>,
    pub missed: Result<Vec<Arc<Stamped>>, ResumeError>,
    pub last: u64,
}

#[derive(Debug)]
struct Ring {
    /// Sequence number of the last change published (0: none yet).
    last: u64,
    /// The last [`RING_MAX`] changes, oldest first.
    recent: VecDeque<Arc<Stamped>>,
}

/// The feed: a bounded broadcast plus the ring of recent changes.
#[derive(Debug)]
pub struct ChangeFeed {
    /// Random per run: the prefix of every event id.
    run: String,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Stamped>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed::new()
    }
}

impl ChangeFeed {
    pub fn new() -> ChangeFeed {
        use rand_core::RngCore;
        let run = format!("{:08x}", rand_core::OsRng.next_u32());
        ChangeFeed {
            run,
            ring: Mutex::new(Ring {
                last: 0,
                recent: VecDeque::with_capacity(RING_MAX),
            }),
            tx: broadcast::channel(BROADCAST_MAX).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Nothing half-done can be seen: each critical section is a push
        // or a copy.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `change` to every subscriber and the ring; returns its
    /// sequence number. Never blocks on a reader.
    pub fn publish(&self, change: Change) -> u64 {
        let mut ring = self.lock();
        ring.last += 1;
        let stamped = Arc::new(Stamped {
            seq: ring.last,
            change,
        });
        if ring.recent.len() >= RING_MAX {
            ring.recent.pop_front();
        }
        ring.recent.push_back(stamped.clone());
        // Sent under the lock, so `resume` sees each change either in the
        // ring or on its receiver, in order. No receivers is fine.
        let _ = self.tx.send(stamped);
        ring.last
    }

    /// A receiver of the changes published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }

    /// Readers subscribed now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The SSE id of change `seq`: `<run>-<seq>`.
    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.run)
    }

    /// The newest change's sequence number (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().last
    }

    /// Subscribes, and gives the changes after event id `after` (None: a
    /// fresh reader, nothing missed).
    pub fn resume(&self, after: Option<&str>) -> Resumed {
        let ring = self.lock();
        let live = self.tx.subscribe();
        let missed = match after {
            None => Ok(Vec::new()),
            Some(id) => self.missed_after(&ring, id),
        };
        Resumed {
            live,
            missed,
            last: ring.last,
        }
    }

    fn missed_after(&self, ring: &Ring, id: &str) -> Result<Vec<Arc<Stamped>>, ResumeError> {
        let (run, seq) = id
            .trim()
            .rsplit_once('-')
            .and_then(|(run, seq)| Some((run, seq.parse::<u64>().ok()?)))
            .ok_or_else(|| ResumeError::Malformed(id.to_owned()))?;
        if run != self.run {
            return Err(ResumeError::OtherRun(id.to_owned()));
        }
        if seq > ring.last {
            return Err(ResumeError::Ahead(id.to_owned()));
        }
        // The reader holds `seq`; it needs `seq + 1` onwards, which the
        // ring holds if its oldest is at most `seq + 1`.
        let oldest = ring.recent.front().map_or(ring.last + 1, |s| s.seq);
        if seq + 1 < oldest {
            return Err(ResumeError::TooOld(id.to_owned()));
        }
        Ok(ring
            .recent
            .iter()
            .filter(|s| s.seq > seq)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(n: u64) -> Change {
        Change::Reset {
            reason: n.to_string(),
        }
    }

    /// A reader resuming from an id of the ring gets exactly the changes
    /// after it; one from another run, a garbled one, one ahead or one the
    /// ring dropped must reload.
    #[test]
    fn resume_gives_what_was_missed_or_says_why_not() {
        let feed = ChangeFeed::new();
        for n in 1..=(RING_MAX as u64 + 10) {
            feed.publish(reset(n));
        }
        let last = feed.last_seq();
        let r = feed.resume(Some(&feed.event_id(last - 2)));
        let seqs: Vec<u64> = r.missed.unwrap().iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![last - 1, last]);
        assert_eq!(
            feed.resume(Some(&feed.event_id(last))).missed.unwrap(),
            vec![]
        );
        let oldest_ok = last - RING_MAX as u64;
        assert!(feed.resume(Some(&feed.event_id(oldest_ok))).missed.is_ok());
        assert!(matches!(
            feed.resume(Some(&feed.event_id(oldest_ok - 1))).missed,
            Err(ResumeError::TooOld(_))
        ));
        assert!(matches!(
            feed.resume(Some(&feed.event_id(last + 1))).missed,
            Err(ResumeError::Ahead(_))
        ));
        assert!(matches!(
            feed.resume(Some("0badc0de-3")).missed,
            Err(ResumeError::OtherRun(_))
        ));
        assert!(matches!(
            feed.resume(Some("banana")).missed,
            Err(ResumeError::Malformed(_))
        ));
    }

    /// A change published after a resume arrives on its receiver, not in
    /// the missed list: nothing is given twice or lost.
    #[tokio::test]
    async fn live_changes_follow_the_missed_ones() {
        let feed = ChangeFeed::new();
        feed.publish(reset(1));
        let mut r = feed.resume(Some(&feed.event_id(0)));
        feed.publish(reset(2));
        assert_eq!(r.missed.unwrap().len(), 1);
        assert_eq!(r.live.recv().await.unwrap().seq, 2);
    }
}
