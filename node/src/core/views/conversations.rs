//! Conversations: public replies and claims under posts, and sealed direct
//! messages, as every node derives them from its events (issue 14).
//!
//! Like the marketplace, the view keeps raw facts that are a function of the
//! *set* of events, and derives what it shows at query time from those facts
//! and the current membership levels. Rules (docs/decisions.md,
//! "Conversations (issue 14)"):
//!
//! - Replies and claims are listed per post in `(lamport, hash)` order. A
//!   reply or claim may name a post this node does not (yet) hold: it is kept
//!   and shows once the post arrives.
//! - Bounds, all set functions: of one author's replies under one post the
//!   first [`REPLIES_PER_AUTHOR_PER_POST_MAX`] count (a later one arriving
//!   with a lower key pushes the highest out, exactly as if it had come
//!   first); a post shows the first [`REPLIES_PER_POST_MAX`] counting
//!   replies of active authors. Claims likewise, per author and per post.
//! - A removed member's replies and claims are hidden (kept among the facts:
//!   re-admission shows them again).
//! - A withdrawal counts only from the claim's author.
//! - Acceptances count only from the post's author; of several, the highest
//!   `(lamport, hash)` wins, so at most one claim is accepted. The post ends
//!   as `fulfilled` (the marketplace view records the acceptance as the
//!   author's own expiry) and `fulfilled_by` is the accepted claim's author.
//! - A `dm.sealed` is kept per (sender, recipient) pair, the newest
//!   [`SEALED_PER_PAIR_MAX`] by key. The view never opens a box: it holds no
//!   key. The recipient's node opens boxes addressed to it when asked.

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::{EventId, EventKey, EventRef, NodeId, Payload, VerifiedEvent};
use serde::{Deserialize, Serialize};

use super::membership::MembershipView;
use super::small_map::SmallMap;
use super::ViewError;

/// Replies of one author under one post that count: a conversation needs
/// a few turns each, and one member cannot flood a thread past this.
pub const REPLIES_PER_AUTHOR_PER_POST_MAX: usize = 20;
/// Replies a post shows: a busy neighbourhood thread, still one small page.
pub const REPLIES_PER_POST_MAX: usize = 200;
/// Claims of one author on one post: claim, withdraw, claim again, a few
/// times over; more is noise.
pub const CLAIMS_PER_AUTHOR_PER_POST_MAX: usize = 4;
/// Claims a post shows: more than anyone will read before accepting one.
pub const CLAIMS_PER_POST_MAX: usize = 100;
/// Sealed messages kept per (sender, recipient): the newest win, so a
/// sender's flood evicts only its own older messages to that recipient.
pub const SEALED_PER_PAIR_MAX: usize = 256;

/// A public reply under a post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub key: EventKey,
    pub id: EventId,
    pub author: NodeId,
    pub ts: u64,
    pub body: String,
}

/// A claim on a post, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub key: EventKey,
    pub id: EventId,
    pub author: NodeId,
    pub ts: u64,
    pub note: Option<String>,
}

impl Claim {
    pub fn reference(&self) -> EventRef {
        EventRef {
            author: self.author,
            id: self.id,
        }
    }
}

/// A claim as a thread shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimState {
    pub claim: Claim,
    /// Its author withdrew it.
    pub withdrawn: bool,
    /// It is the post's accepted claim.
    pub accepted: bool,
}

/// The accepted claim of a post: the author's latest acceptance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// The acceptance event.
    pub key: EventKey,
    pub claim: EventRef,
}

impl Acceptance {
    /// Who the post was fulfilled by.
    pub fn fulfilled_by(&self) -> NodeId {
        self.claim.author
    }
}

/// What a post's conversation shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub replies: Vec<Reply>,
    pub claims: Vec<ClaimState>,
    pub accepted: Option<Acceptance>,
}

/// One `dm.sealed` event: who wrote to whom, when and how long is visible to
/// every node; the text only to the recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub key: EventKey,
    pub id: EventId,
    pub from: NodeId,
    pub to: NodeId,
    pub ts: u64,
    #[serde(with = "bytes")]
    pub sealed: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Facts {
    /// Per post, per author: that author's counting replies (the lowest keys).
    /// Small maps inside: most posts have a few repliers with a reply or two
    /// each, at most [`REPLIES_PER_AUTHOR_PER_POST_MAX`] per author, and a
    /// `BTreeMap` allocates room for eleven on its first entry (every node
    /// holds these). Serialized as the maps they replaced.
    replies: BTreeMap<EventRef, SmallMap<NodeId, SmallMap<EventKey, Reply>>>,
    /// Per post, per author: that author's counting claims (likewise).
    claims: BTreeMap<EventRef, SmallMap<NodeId, SmallMap<EventKey, Claim>>>,
    /// Claims withdrawn by their own author.
    withdrawn: BTreeSet<EventRef>,
    /// Per post: its author's latest acceptance (only the highest matters).
    accepted: BTreeMap<EventRef, Acceptance>,
    /// Per (sender, recipient): the newest sealed messages.
    sealed: BTreeMap<(NodeId, NodeId), BTreeMap<EventKey, Sealed>>,
}

/// A claim's state as a change reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Open,
    Withdrawn,
    Accepted,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Open => "open",
            ClaimStatus::Withdrawn => "withdrawn",
            ClaimStatus::Accepted => "accepted",
        }
    }
}

/// What one applied event changed in what conversations show: the data of
/// the live stream's `reply`, `claim`, `claim_accepted` and `message`
/// events. Reported only for what the view kept and shows (an acceptance by
/// a non-author, a reply over the bounds or by a removed member report
/// nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationChange {
    /// A reply now shows under `post`.
    Reply {
        post: EventRef,
        author: NodeId,
        id: EventId,
        key: EventKey,
    },
    /// A claim now shows under `post`, or its author withdrew it (`id` and
    /// `author` name the claim, `key` the event that changed it).
    Claim {
        post: EventRef,
        author: NodeId,
        id: EventId,
        key: EventKey,
        state: ClaimStatus,
    },
    /// The post's author accepted `claim`: the post ended as fulfilled.
    Accepted {
        post: EventRef,
        claim: EventRef,
        key: EventKey,
    },
    /// A sealed message from `from` to `to` is stored.
    Sealed {
        from: NodeId,
        to: NodeId,
        id: EventId,
        key: EventKey,
    },
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ConversationsView {
    facts: Facts,
    /// DELIBERATE BUG, for the simulator's tests only (`fault-injection`):
    /// keep a post's first applied acceptance, not the highest key.
    #[cfg(feature = "fault-injection")]
    first_acceptance_bug: bool,
}

/// Inserts `value` and keeps the `max` lowest keys; returns whether it stayed.
fn insert_lowest<V>(map: &mut SmallMap<EventKey, V>, key: EventKey, value: V, max: usize) -> bool {
    map.insert(key, value);
    if map.len() > max {
        map.pop_last();
    }
    map.contains_key(&key)
}

impl ConversationsView {
    pub fn reset(&mut self) {
        #[cfg(feature = "fault-injection")]
        let bug = self.first_acceptance_bug;
        *self = ConversationsView::default();
        #[cfg(feature = "fault-injection")]
        {
            self.first_acceptance_bug = bug;
        }
    }

    /// Turns on the deliberate first-acceptance bug (see its field).
    #[cfg(feature = "fault-injection")]
    pub fn inject_first_acceptance_bug(&mut self) {
        self.first_acceptance_bug = true;
    }

    /// Records one logged event's facts, saying what now shows differently
    /// (levels as they are after this event). Nothing is derived here: the
    /// thread is computed when asked, from the facts and current levels.
    pub fn apply_reporting(
        &mut self,
        event: &VerifiedEvent,
        membership: &MembershipView,
    ) -> Option<ConversationChange> {
        let e = event.event();
        let key = event.key();
        let active = membership.level(&e.author).is_some_and(|l| l.is_active());
        match &e.payload {
            Payload::PostReply(r) => {
                let reply = Reply {
                    key,
                    id: e.id,
                    author: e.author,
                    ts: e.ts,
                    body: r.body.clone(),
                };
                let mine = self
                    .facts
                    .replies
                    .entry(r.target)
                    .or_default()
                    .get_or_default(e.author);
                let kept = insert_lowest(mine, key, reply, REPLIES_PER_AUTHOR_PER_POST_MAX);
                (kept && active).then_some(ConversationChange::Reply {
                    post: r.target,
                    author: e.author,
                    id: e.id,
                    key,
                })
            }
            Payload::PostClaim(c) => {
                let claim = Claim {
                    key,
                    id: e.id,
                    author: e.author,
                    ts: e.ts,
                    note: c.note.clone(),
                };
                let reference = claim.reference();
                let mine = self
                    .facts
                    .claims
                    .entry(c.target)
                    .or_default()
                    .get_or_default(e.author);
                let kept = insert_lowest(mine, key, claim, CLAIMS_PER_AUTHOR_PER_POST_MAX);
                let state = self.claim_status(&c.target, &reference);
                (kept && active).then_some(ConversationChange::Claim {
                    post: c.target,
                    author: e.author,
                    id: e.id,
                    key,
                    state,
                })
            }
            Payload::ClaimWithdrawn(w) if w.claim.author == e.author => {
                let new = self.facts.withdrawn.insert(w.claim);
                (new && active).then_some(ConversationChange::Claim {
                    post: w.target,
                    author: w.claim.author,
                    id: w.claim.id,
                    key,
                    state: ClaimStatus::Withdrawn,
                })
            }
            Payload::ClaimAccepted(a) if a.target.author == e.author => {
                let new = Acceptance {
                    key,
                    claim: a.claim,
                };
                #[cfg(feature = "fault-injection")]
                let first_wins = self.first_acceptance_bug;
                #[cfg(not(feature = "fault-injection"))]
                let first_wins = false;
                let latest = self.facts.accepted.entry(a.target).or_insert(new);
                if latest.key < key && !first_wins {
                    *latest = new;
                }
                (latest.key == key).then_some(ConversationChange::Accepted {
                    post: a.target,
                    claim: a.claim,
                    key,
                })
            }
            Payload::DmSealed(d) => {
                let sealed = Sealed {
                    key,
                    id: e.id,
                    from: e.author,
                    to: d.to,
                    ts: e.ts,
                    sealed: d.sealed.clone(),
                };
                let pair = self.facts.sealed.entry((e.author, d.to)).or_default();
                pair.insert(key, sealed);
                if pair.len() > SEALED_PER_PAIR_MAX {
                    // Newest win: drop the lowest key.
                    pair.pop_first();
                }
                pair.contains_key(&key)
                    .then_some(ConversationChange::Sealed {
                        from: e.author,
                        to: d.to,
                        id: e.id,
                        key,
                    })
            }
            _ => None,
        }
    }

    /// A claim's state from the facts: withdrawn by its author wins over
    /// accepted (a withdrawn claim was not given the thing).
    fn claim_status(&self, post: &EventRef, claim: &EventRef) -> ClaimStatus {
        if self.facts.withdrawn.contains(claim) {
            ClaimStatus::Withdrawn
        } else if self
            .facts
            .accepted
            .get(post)
            .is_some_and(|a| a.claim == *claim)
        {
            ClaimStatus::Accepted
        } else {
            ClaimStatus::Open
        }
    }

    /// Posts with replies or claims that are `me`'s own, or on which `me`
    /// replied or claimed: the threads a node follows.
    pub fn threads_of(&self, me: &NodeId) -> BTreeSet<EventRef> {
        let mut out = BTreeSet::new();
        for (post, by) in &self.facts.replies {
            if post.author == *me || by.contains_key(me) {
                out.insert(*post);
            }
        }
        for (post, by) in &self.facts.claims {
            if post.author == *me || by.contains_key(me) {
                out.insert(*post);
            }
        }
        out
    }

    /// The conversation of `post`, as every node with the same events shows
    /// it. Does not check that the post exists: callers ask the market view.
    pub fn thread(&self, post: &EventRef, membership: &MembershipView) -> Thread {
        let active = |who: &NodeId| membership.level(who).is_some_and(|l| l.is_active());
        let accepted = self.facts.accepted.get(post).copied();
        let mut replies: Vec<Reply> = self
            .facts
            .replies
            .get(post)
            .into_iter()
            .flat_map(SmallMap::iter)
            .filter(|(author, _)| active(author))
            .flat_map(|(_, mine)| mine.values().cloned())
            .collect();
        replies.sort_by_key(|r| r.key);
        replies.truncate(REPLIES_PER_POST_MAX);
        let mut claims: Vec<ClaimState> = self
            .facts
            .claims
            .get(post)
            .into_iter()
            .flat_map(SmallMap::iter)
            .filter(|(author, _)| active(author))
            .flat_map(|(_, mine)| mine.values())
            .map(|c| ClaimState {
                claim: c.clone(),
                withdrawn: self.facts.withdrawn.contains(&c.reference()),
                accepted: accepted.is_some_and(|a| a.claim == c.reference()),
            })
            .collect();
        claims.sort_by_key(|c| c.claim.key);
        claims.truncate(CLAIMS_PER_POST_MAX);
        Thread {
            replies,
            claims,
            accepted,
        }
    }

    /// The accepted claim of `post`, if its author accepted one.
    pub fn accepted(&self, post: &EventRef) -> Option<Acceptance> {
        self.facts.accepted.get(post).copied()
    }

    /// Sealed messages addressed to `to`, per sender, oldest first.
    pub fn sealed_to(&self, to: NodeId) -> impl Iterator<Item = &Sealed> + '_ {
        self.facts
            .sealed
            .iter()
            .filter(move |((_, t), _)| *t == to)
            .flat_map(|(_, pair)| pair.values())
    }

    /// Sealed messages sent by `from`, per recipient, oldest first.
    pub fn sealed_from(&self, from: NodeId) -> impl Iterator<Item = &Sealed> + '_ {
        self.facts
            .sealed
            .range((from, NodeId([0; 32]))..=(from, NodeId([0xff; 32])))
            .flat_map(|(_, pair)| pair.values())
    }

    /// Sealed messages from `from` to `to`, oldest first.
    pub fn sealed_between(&self, from: &NodeId, to: &NodeId) -> impl Iterator<Item = &Sealed> {
        self.facts
            .sealed
            .get(&(*from, *to))
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// How many sealed messages the view holds, for status.
    pub fn sealed_count(&self) -> usize {
        self.facts.sealed.values().map(BTreeMap::len).sum()
    }

    pub fn snapshot_state(&self) -> Result<Vec<u8>, ViewError> {
        super::to_cbor(&self.facts)
    }

    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), ViewError> {
        self.facts = super::from_cbor(bytes)?;
        Ok(())
    }

    /// Digest of the facts: equal digests mean equal conversations (the
    /// shown threads are a function of the facts and the levels).
    pub fn digest(&self) -> [u8; 32] {
        super::digest_of(&self.facts)
    }
}

/// Boxes as CBOR byte strings, not arrays of numbers (serde_bytes is not a
/// dependency of the pure core).
mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match ciborium::Value::deserialize(d)? {
            ciborium::Value::Bytes(b) => Ok(b),
            _ => Err(serde::de::Error::custom("expected a byte string")),
        }
    }
}
