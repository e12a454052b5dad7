//! The conversation capabilities (issue 14): `market.reply`, `market.claim`,
//! `market.accept_claim`, `dm.send`, `conversation.list`, `conversation.get`.
//!
//! Content limits live here, where an event is made, not at ingest (DESIGN.md
//! §4). Direct messages are opened here, with this node's key, when asked:
//! the view holds boxes, never plaintext. Reading messages is for this
//! node's own user only: a remote caller is refused whatever its level.

use hearth_proto::sealed::{self, DirectMessage, OpenError, SealError};
use hearth_proto::{
    Category, ClaimRef, DmSealed, EventHash, EventId, EventRef, NodeId, Payload, PostClaim,
    PostReply, VerifiedEvent,
};
use serde::{Deserialize, Serialize};

use crate::core::bus::{BusError, Caller, Descriptor};
use crate::core::log::AppendError;
use crate::core::views::conversations::{Sealed, Thread};
use crate::core::views::market::Post;
use crate::core::views::PostKey;
use crate::core::Node;
use crate::store::EventStore;

pub const REPLY: &str = "market.reply";
pub const CLAIM: &str = "market.claim";
pub const ACCEPT_CLAIM: &str = "market.accept_claim";
pub const DM_SEND: &str = "dm.send";
pub const LIST: &str = "conversation.list";
pub const GET: &str = "conversation.get";

/// A reply is a few lines under a post, not a second post.
pub const REPLY_CHARS_MAX: usize = 1_000;
/// A claim's note: "I can come by tomorrow".
pub const NOTE_CHARS_MAX: usize = 280;
/// A direct message: a letter fits, and the sealed event stays far below
/// the 16 KiB event limit even in 4-byte characters (4,000 x 4 + overhead).
pub const DM_CHARS_MAX: usize = 3_000;
/// Conversations `conversation.list` returns: one small answer.
pub const LIST_MAX: usize = 200;

const fn desc(name: &'static str, idempotent: bool, writes: bool) -> Descriptor {
    Descriptor {
        name,
        version: 1,
        max_concurrent: 4,
        trust_required: Some(hearth_proto::Level::Member),
        timeout_ms: 10_000,
        idempotent,
        writes,
    }
}

pub static DESCRIPTORS: [Descriptor; 6] = [
    desc(REPLY, false, true),
    desc(CLAIM, false, true),
    desc(ACCEPT_CLAIM, true, true),
    desc(DM_SEND, false, true),
    desc(LIST, true, false),
    desc(GET, true, false),
];

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyParams {
    /// The post: its id and its author.
    pub post: EventRef,
    pub body: String,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimParams {
    pub post: EventRef,
    #[serde(default)]
    pub note: Option<String>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptParams {
    /// One of this node's posts.
    #[cfg_attr(
        feature = "runtime",
        schemars(with = "hearth_proto::ids::EventIdSchema")
    )]
    pub post: EventId,
    /// The claim to accept: its id and its author.
    pub claim: EventRef,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DmSendParams {
    pub to: NodeId,
    pub body: String,
    /// The post the message is about, if any.
    #[serde(default)]
    pub post: Option<EventRef>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
/// `conversation.get`: a post's public thread, or the messages with one member.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    #[serde(default)]
    pub post: Option<EventRef>,
    #[serde(default)]
    pub with: Option<NodeId>,
}

/// What a write made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub id: EventId,
    pub hash: EventHash,
    pub lamport: u64,
}

impl Published {
    fn of(e: &VerifiedEvent) -> Self {
        Published {
            id: e.event().id,
            hash: *e.hash(),
            lamport: e.event().lamport,
        }
    }
}

/// One message between this node and another member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: EventId,
    pub lamport: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub ts: u64,
    /// The text, for messages to this node that opened; `None` for messages
    /// this node sent (a sealed box opens only for its recipient) and for
    /// boxes that did not open.
    pub body: Option<String>,
    pub post: Option<EventRef>,
    /// Why a box addressed to this node did not open (someone else's key,
    /// cut short, forged signature): shown, never hidden.
    pub error: Option<String>,
}

/// One entry of `conversation.list`: a member this node exchanged messages with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub with: NodeId,
    pub received: usize,
    pub sent: usize,
    pub last_lamport: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
}

/// `conversation.get`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConversationView {
    Thread {
        post: EventRef,
        thread: Thread,
        /// The accepted claim's author, when the post ended that way.
        fulfilled_by: Option<NodeId>,
    },
    Messages {
        with: NodeId,
        messages: Vec<MessageView>,
    },
}

fn append_error(e: AppendError) -> BusError {
    match e {
        AppendError::Sign(hearth_proto::EventError::TooLarge { size }) => BusError::bad_request(
            format!("the event encodes to {size} bytes, over the event limit; shorten the text"),
        ),
        other => other
            .storage_refusal()
            .unwrap_or_else(|| BusError::internal(other)),
    }
}

fn check_text(what: &str, text: &str, max: usize, may_be_empty: bool) -> Result<(), BusError> {
    if !may_be_empty && text.trim().is_empty() {
        return Err(BusError::bad_request(format!(
            "{what} is empty; write something"
        )));
    }
    let n = text.chars().count();
    if n > max {
        return Err(BusError::bad_request(format!(
            "{what} is {n} characters, over the limit of {max}; shorten it"
        )));
    }
    Ok(())
}

impl<S: EventStore> Node<S> {
    /// Writes are signed by this node: local callers only, and only while
    /// this node is a member.
    fn conversation_writer(&self, caller: Caller) -> Result<NodeId, BusError> {
        let me = self.node_id();
        if let Caller::Remote(peer) = caller {
            return Err(BusError::unauthorized(format!(
                "{peer} cannot write through this node: events are signed by their author's own node"
            )));
        }
        if !self.views().membership.is_active(&me) {
            return Err(BusError::unauthorized(format!(
                "this node ({me}) is not a member of community {}; ask an anchor to run `hearth member add {me}`",
                self.community()
            )));
        }
        Ok(me)
    }

    /// A post this node shows or showed (ended posts keep their thread).
    fn conversation_post(&self, post: &EventRef) -> Result<&Post, BusError> {
        self.views()
            .market
            .get(&PostKey {
                author: post.author,
                id: post.id,
            })
            .filter(|p| p.author_active)
            .ok_or_else(|| {
                BusError::not_found(format!(
                    "no post {} by {}; list posts with `hearth list`",
                    post.id, post.author
                ))
            })
    }

    pub fn market_reply(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: ReplyParams,
    ) -> Result<Published, BusError> {
        self.conversation_writer(caller)?;
        check_text("the reply", &p.body, REPLY_CHARS_MAX, false)?;
        self.conversation_post(&p.post)?;
        let e = self
            .publish(
                now_ms,
                Payload::PostReply(PostReply {
                    target: p.post,
                    body: p.body,
                }),
            )
            .map_err(append_error)?;
        Ok(Published::of(&e))
    }

    pub fn market_claim(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: ClaimParams,
    ) -> Result<Published, BusError> {
        let me = self.conversation_writer(caller)?;
        if let Some(note) = &p.note {
            check_text("the note", note, NOTE_CHARS_MAX, true)?;
        }
        let post = self.conversation_post(&p.post)?;
        if post.author == me {
            return Err(BusError::bad_request(
                "this is your own post; nobody to claim it from",
            ));
        }
        if !matches!(post.content.category, Category::Offer | Category::Request) {
            return Err(BusError::bad_request(format!(
                "only offers and requests can be claimed; this post is {}",
                post.content.category
            )));
        }
        if !post.is_live(now_ms) {
            return Err(BusError::bad_request(
                "this post has ended; it can no longer be claimed",
            ));
        }
        let e = self
            .publish(
                now_ms,
                Payload::PostClaim(PostClaim {
                    target: p.post,
                    note: p.note,
                }),
            )
            .map_err(append_error)?;
        Ok(Published::of(&e))
    }

    pub fn market_accept_claim(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: AcceptParams,
    ) -> Result<Published, BusError> {
        let me = self.conversation_writer(caller)?;
        let target = EventRef {
            author: me,
            id: p.post,
        };
        let post = self.conversation_post(&target).map_err(|_| {
            BusError::not_found(format!(
                "you have no post {}; only a post's author can accept a claim on it",
                p.post
            ))
        })?;
        if let Some(x) = &post.expired {
            return Err(BusError::bad_request(format!(
                "this post has already ended ({}); a claim can no longer be accepted",
                x.reason
            )));
        }
        let thread = self
            .views()
            .conversations
            .thread(&target, &self.views().membership);
        let Some(claim) = thread
            .claims
            .iter()
            .find(|c| c.claim.reference() == p.claim)
        else {
            return Err(BusError::not_found(format!(
                "no claim {} by {} on this post; see `hearth inbox`",
                p.claim.id, p.claim.author
            )));
        };
        if claim.withdrawn {
            return Err(BusError::bad_request(
                "that claim was withdrawn by its author",
            ));
        }
        let e = self
            .publish(
                now_ms,
                Payload::ClaimAccepted(ClaimRef {
                    target,
                    claim: p.claim,
                }),
            )
            .map_err(append_error)?;
        Ok(Published::of(&e))
    }

    pub fn dm_send(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: DmSendParams,
    ) -> Result<Published, BusError> {
        let me = self.conversation_writer(caller)?;
        check_text("the message", &p.body, DM_CHARS_MAX, false)?;
        if p.to == me {
            return Err(BusError::bad_request(
                "that is this node; write to another member",
            ));
        }
        if !self.views().membership.is_active(&p.to) {
            return Err(BusError::not_found(format!(
                "{} is not a member of this community; see `hearth member list`",
                p.to
            )));
        }
        let msg = DirectMessage {
            from: me,
            to: p.to,
            post: p.post,
            body: p.body,
            ts: now_ms,
        };
        let sealed = sealed::seal(&self.identity, &msg, &mut self.rng).map_err(|e| match e {
            SealError::TooLarge { .. } => BusError::bad_request(e.to_string()),
            SealError::RecipientKey(_) | SealError::WrongSender { .. } => {
                BusError::bad_request(e.to_string())
            }
        })?;
        let e = self
            .publish(now_ms, Payload::DmSealed(DmSealed { to: p.to, sealed }))
            .map_err(append_error)?;
        Ok(Published::of(&e))
    }

    /// The members this node exchanged messages with, most recent first.
    pub fn conversation_list(&self, caller: Caller) -> Result<ConversationList, BusError> {
        only_local(caller)?;
        let me = self.node_id();
        let mut by_peer: std::collections::BTreeMap<NodeId, ConversationSummary> =
            std::collections::BTreeMap::new();
        let conv = &self.views().conversations;
        let mut add = |with: NodeId, s: &Sealed, received: bool| {
            let entry = by_peer.entry(with).or_insert(ConversationSummary {
                with,
                received: 0,
                sent: 0,
                last_lamport: 0,
            });
            if received {
                entry.received += 1;
            } else {
                entry.sent += 1;
            }
            entry.last_lamport = entry.last_lamport.max(s.key.lamport);
        };
        for s in conv.sealed_to(me) {
            add(s.from, s, true);
        }
        for s in conv.sealed_from(me) {
            add(s.to, s, false);
        }
        let mut conversations: Vec<ConversationSummary> = by_peer.into_values().collect();
        conversations.sort_by(|a, b| {
            b.last_lamport
                .cmp(&a.last_lamport)
                .then(a.with.cmp(&b.with))
        });
        conversations.truncate(LIST_MAX);
        Ok(ConversationList { conversations })
    }

    pub fn conversation_get(
        &self,
        caller: Caller,
        p: GetParams,
    ) -> Result<ConversationView, BusError> {
        match (p.post, p.with) {
            (Some(post), None) => {
                self.conversation_post(&post)?;
                let v = self.views();
                let thread = v.conversations.thread(&post, &v.membership);
                let fulfilled_by = thread.accepted.map(|a| a.fulfilled_by());
                Ok(ConversationView::Thread {
                    post,
                    thread,
                    fulfilled_by,
                })
            }
            (None, Some(with)) => {
                only_local(caller)?;
                Ok(ConversationView::Messages {
                    with,
                    messages: self.messages_with(with),
                })
            }
            _ => Err(BusError::bad_request(
                "give exactly one of `post` (a post's thread) or `with` (messages with a member)",
            )),
        }
    }

    /// Messages both ways with `with`, in (lamport, hash) order; those to
    /// this node opened with its key.
    fn messages_with(&self, with: NodeId) -> Vec<MessageView> {
        let me = self.node_id();
        let conv = &self.views().conversations;
        let mut out: Vec<(hearth_proto::EventKey, MessageView)> = Vec::new();
        for s in conv.sealed_between(&with, &me) {
            let opened = sealed::open(&self.identity, &s.sealed).and_then(|m| {
                if m.from == s.from {
                    Ok(m)
                } else {
                    // The envelope's author and the signed sender must agree,
                    // or a member could pass off another's message as theirs.
                    Err(OpenError::Malformed(format!(
                        "sealed by {} but signed by {}",
                        s.from, m.from
                    )))
                }
            });
            let (body, post, error) = match opened {
                Ok(m) => (Some(m.body), m.post, None),
                Err(e) => (None, None, Some(e.to_string())),
            };
            out.push((
                s.key,
                MessageView {
                    id: s.id,
                    lamport: s.key.lamport,
                    from: s.from,
                    to: s.to,
                    ts: s.ts,
                    body,
                    post,
                    error,
                },
            ));
        }
        for s in conv.sealed_between(&me, &with) {
            out.push((
                s.key,
                MessageView {
                    id: s.id,
                    lamport: s.key.lamport,
                    from: s.from,
                    to: s.to,
                    ts: s.ts,
                    body: None,
                    post: None,
                    error: None,
                },
            ));
        }
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, m)| m).collect()
    }
}

fn only_local(caller: Caller) -> Result<(), BusError> {
    match caller {
        Caller::Remote(peer) => Err(BusError::unauthorized(format!(
            "{peer}: direct messages are private to this node's own user"
        ))),
        _ => Ok(()),
    }
}
