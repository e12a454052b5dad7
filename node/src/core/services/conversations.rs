//! The conversation capabilities (issue 14): `market.reply`, `market.claim`,
//! `market.withdraw_claim`, `market.accept_claim`, `dm.send`,
//! `conversation.list`, `conversation.get`, `conversation.mark_read`.
//!
//! Content limits live here, where an event is made, not at ingest (DESIGN.md
//! §4). Direct messages are opened here, with this node's key, when asked:
//! the view holds boxes, never plaintext. Reading messages is for this
//! node's own user only: a remote caller is refused whatever its level.
//!
//! What is this node's alone and never an event (which messages its user
//! has read, the text of the messages it sent, which a sealed box cannot
//! give back to its sender) is kept by the runtime behind [`LocalInbox`]
//! (`net::inbox`); the core reads and writes it only through that trait,
//! given with each call, so it stays free of I/O.

use hearth_proto::sealed::{self, DirectMessage, OpenError, SealError};
use hearth_proto::{
    Category, ClaimRef, DmSealed, EventHash, EventId, EventKey, EventRef, NodeId, Payload,
    PostClaim, PostReply, VerifiedEvent,
};
use serde::{Deserialize, Serialize};

use crate::core::bus::{BusError, Caller, Descriptor};
use crate::core::log::AppendError;
use crate::core::views::conversations::Thread;
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
pub const WITHDRAW_CLAIM: &str = "market.withdraw_claim";
pub const MARK_READ: &str = "conversation.mark_read";

/// A reply is a few lines under a post, not a second post.
pub const REPLY_CHARS_MAX: usize = 1_000;
/// A claim's note: "I can come by tomorrow".
pub const NOTE_CHARS_MAX: usize = 280;
/// A direct message: a letter fits, and the sealed event stays far below
/// the 16 KiB event limit even in 4-byte characters (4,000 x 4 + overhead).
pub const DM_CHARS_MAX: usize = 3_000;
/// Conversations `conversation.list` returns: one small answer.
pub const LIST_MAX: usize = 200;
/// How long an ended post's thread stays readable by its participants (the
/// post's author and everyone who replied or claimed), counted from when
/// the post ended: long enough to arrange the pick-up and to look back at
/// it; after it, replies and notes are withheld from everyone.
pub const THREAD_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;
/// Characters of the last message a list entry shows: one line of a list.
pub const PREVIEW_CHARS_MAX: usize = 80;

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

pub static DESCRIPTORS: [Descriptor; 8] = [
    desc(REPLY, false, true),
    desc(CLAIM, false, true),
    desc(WITHDRAW_CLAIM, true, true),
    desc(ACCEPT_CLAIM, true, true),
    desc(DM_SEND, false, true),
    desc(LIST, true, false),
    desc(GET, true, false),
    // Not a log write, but a change of this node's state: it needs the
    // token like a write (`api::dispatch::Method::private`).
    desc(MARK_READ, true, false),
];

/// Names a conversation in this node's local read state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConversationKey {
    /// The private messages with a member.
    With(NodeId),
    /// A post's public thread (replies and claims).
    Post(EventRef),
}

/// This node's own copy of a message it sealed (the box opens only for its
/// recipient): local, never an event, never gossiped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCopy {
    pub to: NodeId,
    pub body: String,
    #[serde(default)]
    pub post: Option<EventRef>,
}

/// The runtime's local state of this node's conversations (see the module
/// docs). Implementations keep it bounded and durable as they see fit; a
/// failure to keep something is reported as text and becomes `internal`.
pub trait LocalInbox {
    /// Whether this node's user read item `item` (an event's key) of
    /// `conversation`.
    fn is_read(&self, conversation: &ConversationKey, item: &EventKey) -> bool;
    /// Records that the user read exactly `items` of `conversation` (every
    /// item it shows now: earlier marks of items it no longer shows go).
    fn mark_read(&self, conversation: ConversationKey, items: &[EventKey]) -> Result<(), String>;
    /// The text of a message this node sent, if it kept a copy.
    fn sent_copy(&self, key: &EventKey) -> Option<SentCopy>;
    /// Keeps the text of a message this node just sent.
    fn keep_sent(&self, key: EventKey, copy: SentCopy) -> Result<(), String>;
    /// Whether read state can be kept at all (`mark_read` is `unavailable`
    /// otherwise).
    fn keeps_state(&self) -> bool {
        true
    }
}

/// No local state: nothing read, no copies. What the core answers with when
/// no runtime gives an inbox (remote callers, tests of the core alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInbox;

impl LocalInbox for NoInbox {
    fn is_read(&self, _: &ConversationKey, _: &EventKey) -> bool {
        false
    }
    fn mark_read(&self, _: ConversationKey, _: &[EventKey]) -> Result<(), String> {
        Err("this node keeps no read state here".into())
    }
    fn sent_copy(&self, _: &EventKey) -> Option<SentCopy> {
        None
    }
    fn keep_sent(&self, _: EventKey, _: SentCopy) -> Result<(), String> {
        Ok(())
    }
    fn keeps_state(&self) -> bool {
        false
    }
}

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

/// `market.withdraw_claim`: takes back this node's claim on a post.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawParams {
    /// The claimed post: its id and its author.
    pub post: EventRef,
    /// Which of this node's claims on it; without it, the latest one still
    /// standing.
    #[serde(default)]
    #[cfg_attr(
        feature = "runtime",
        schemars(with = "Option<hearth_proto::ids::EventIdSchema>")
    )]
    pub claim: Option<EventId>,
}

/// `conversation.mark_read`: every item a conversation shows now is read.
/// It names a conversation as `conversation.get` does.
pub type MarkReadParams = GetParams;

/// What `conversation.mark_read` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedRead {
    /// Items newly marked read.
    pub marked: usize,
    /// Unread items left in the conversation (0).
    pub unread: usize,
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

/// The conversation a [`GetParams`] names.
enum Named {
    Post(EventRef),
    With(NodeId),
}

impl GetParams {
    /// Exactly one of `post` and `with`, or a refusal that says so.
    fn named(&self) -> Result<Named, BusError> {
        match (self.post, self.with) {
            (Some(post), None) => Ok(Named::Post(post)),
            (None, Some(with)) => Ok(Named::With(with)),
            _ => Err(BusError::bad_request(
                "give exactly one of `post` (a post's thread) or `with` (messages with a member)",
            )),
        }
    }
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
    /// The text: of messages to this node that opened, and of messages
    /// this node sent while it kept their copy (a sealed box opens only
    /// for its recipient); `None` for boxes that did not open.
    pub body: Option<String>,
    pub post: Option<EventRef>,
    /// Why a box addressed to this node did not open (someone else's key,
    /// cut short, forged signature): shown, never hidden.
    pub error: Option<String>,
    /// This node sent it.
    #[serde(default)]
    pub outgoing: bool,
    /// This node's user read it (always true for sent messages).
    #[serde(default)]
    pub read: bool,
}

/// What a conversation kind an entry of `conversation.list` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Private messages with a member (`with`).
    Dm,
    /// The public thread of a post (`post`) this node wrote, replied to
    /// or claimed.
    Post,
}

/// The newest item of a conversation, for a list line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub from: NodeId,
    pub lamport: u64,
    pub ts: u64,
    /// Its first [`PREVIEW_CHARS_MAX`] characters (cut on a character
    /// boundary); absent for a box that did not open, a sent message
    /// without a copy, or a claim without a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One entry of `conversation.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub kind: ConversationKind,
    /// The member, for `dm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<NodeId>,
    /// The post, for `post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<EventRef>,
    /// The post's title, for `post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The member's profile name (`dm`), or the post author's (`post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Items from others this node's user has not marked read.
    pub unread: usize,
    /// Messages or replies and claims from others.
    pub received: usize,
    /// Messages, replies and claims of this node.
    pub sent: usize,
    pub last_lamport: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Preview>,
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
        /// Boxed: a thread is far larger than the other variant.
        thread: Box<Thread>,
        /// The accepted claim's author, when the post ended that way.
        fulfilled_by: Option<NodeId>,
        /// For an ended post: until when (Unix ms) its participants may
        /// still read the thread's texts.
        #[serde(default)]
        readable_until: Option<u64>,
        /// The texts (reply bodies, claim notes) are withheld: the post
        /// ended and the caller took no part in the thread, or the
        /// retention period is over.
        #[serde(default)]
        withheld: bool,
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

    /// Takes back this node's claim on a post (an event, so every node
    /// shows it withdrawn).
    pub fn market_withdraw_claim(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: WithdrawParams,
    ) -> Result<Published, BusError> {
        let me = self.conversation_writer(caller)?;
        self.conversation_post(&p.post)?;
        let thread = self
            .views()
            .conversations
            .thread(&p.post, &self.views().membership);
        let mut mine = thread.claims.iter().filter(|c| c.claim.author == me);
        let claim = match p.claim {
            Some(id) => mine.rfind(|c| c.claim.id == id),
            None => mine.rfind(|c| !c.withdrawn),
        }
        .ok_or_else(|| {
            BusError::not_found(format!(
                "you have no claim {}on post {}; see `hearth inbox --post {}`",
                p.claim.map(|c| format!("{c} ")).unwrap_or_default(),
                p.post.id,
                p.post.id
            ))
        })?;
        if claim.accepted {
            return Err(BusError::bad_request(
                "your claim was accepted and the post has ended; write to its author instead",
            ));
        }
        if claim.withdrawn {
            return Err(BusError::bad_request("that claim is already withdrawn"));
        }
        let e = self
            .publish(
                now_ms,
                Payload::ClaimWithdrawn(ClaimRef {
                    target: p.post,
                    claim: claim.claim.reference(),
                }),
            )
            .map_err(append_error)?;
        Ok(Published::of(&e))
    }

    /// [`Node::dm_send_with`] without a local inbox: no copy is kept.
    pub fn dm_send(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: DmSendParams,
    ) -> Result<Published, BusError> {
        self.dm_send_with(now_ms, caller, p, &NoInbox)
    }

    /// Seals and publishes a message, and keeps its text in `inbox` so this
    /// node can show what it sent.
    pub fn dm_send_with(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: DmSendParams,
        inbox: &dyn LocalInbox,
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
        let copy = SentCopy {
            to: msg.to,
            body: msg.body,
            post: msg.post,
        };
        if let Err(why) = inbox.keep_sent(e.key(), copy) {
            // The message is sealed, stored and on its way; only this
            // node's own copy of the text is missing.
            tracing::warn!(error = %why, "could not keep the copy of a sent message");
        }
        Ok(Published::of(&e))
    }

    /// [`Node::conversation_list_with`] without local state.
    pub fn conversation_list(
        &self,
        now_ms: u64,
        caller: Caller,
    ) -> Result<ConversationList, BusError> {
        self.conversation_list_with(now_ms, caller, &NoInbox)
    }

    /// This node's conversations, most recent first: the members it
    /// exchanged messages with, and the threads of its posts and of posts
    /// it replied to or claimed.
    pub fn conversation_list_with(
        &self,
        now_ms: u64,
        caller: Caller,
        inbox: &dyn LocalInbox,
    ) -> Result<ConversationList, BusError> {
        only_local(caller)?;
        let me = self.node_id();
        let v = self.views();
        let mut peers: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
        peers.extend(v.conversations.sealed_to(me).map(|s| s.from));
        peers.extend(v.conversations.sealed_from(me).map(|s| s.to));
        let mut conversations: Vec<ConversationSummary> = peers
            .into_iter()
            .map(|with| self.dm_summary(with, inbox))
            .collect();
        for post in v.conversations.threads_of(&me) {
            if let Some(summary) = self.thread_summary(now_ms, &post, inbox)? {
                conversations.push(summary);
            }
        }
        conversations.retain(|c| c.received + c.sent > 0);
        conversations.sort_by(|a, b| {
            b.last_lamport
                .cmp(&a.last_lamport)
                .then(a.with.cmp(&b.with))
                .then(a.post.cmp(&b.post))
        });
        conversations.truncate(LIST_MAX);
        Ok(ConversationList { conversations })
    }

    fn dm_summary(&self, with: NodeId, inbox: &dyn LocalInbox) -> ConversationSummary {
        let messages = self.messages_with(with, inbox);
        let received = messages.iter().filter(|m| !m.outgoing).count();
        let unread = messages.iter().filter(|m| !m.read).count();
        let last = messages.last().map(|m| Preview {
            from: m.from,
            lamport: m.lamport,
            ts: m.ts,
            text: m.body.as_deref().map(preview),
        });
        ConversationSummary {
            kind: ConversationKind::Dm,
            with: Some(with),
            post: None,
            title: None,
            name: self
                .views()
                .membership
                .display_name(&with)
                .map(str::to_owned),
            unread,
            received,
            sent: messages.len() - received,
            last_lamport: last.as_ref().map_or(0, |l| l.lamport),
            last,
        }
    }

    /// A followed thread's entry; `None` for a post this node does not show.
    fn thread_summary(
        &self,
        now_ms: u64,
        post: &EventRef,
        inbox: &dyn LocalInbox,
    ) -> Result<Option<ConversationSummary>, BusError> {
        let me = self.node_id();
        let Ok(shown) = self.conversation_post(post) else {
            return Ok(None);
        };
        // This node takes part in every thread it lists: only the
        // retention period withholds the preview's text.
        let withheld = self
            .ended_at(shown, now_ms)?
            .is_some_and(|ended| now_ms >= ended.saturating_add(THREAD_RETENTION_MS));
        let v = self.views();
        let thread = v.conversations.thread(post, &v.membership);
        let conversation = ConversationKey::Post(*post);
        let items = thread_items(&thread);
        let from_others: Vec<&ThreadItem> = items.iter().filter(|i| i.from != me).collect();
        let last = items.last().map(|i| Preview {
            from: i.from,
            lamport: i.key.lamport,
            ts: i.ts,
            text: i.text.filter(|_| !withheld).map(preview),
        });
        Ok(Some(ConversationSummary {
            kind: ConversationKind::Post,
            with: None,
            post: Some(*post),
            title: Some(shown.content.title.clone()),
            name: v.membership.display_name(&post.author).map(str::to_owned),
            unread: from_others
                .iter()
                .filter(|i| !inbox.is_read(&conversation, &i.key))
                .count(),
            received: from_others.len(),
            sent: items.len() - from_others.len(),
            last_lamport: last.as_ref().map_or(0, |l| l.lamport),
            last,
        }))
    }

    /// [`Node::conversation_get_with`] without local state.
    pub fn conversation_get(
        &self,
        now_ms: u64,
        caller: Caller,
        p: GetParams,
    ) -> Result<ConversationView, BusError> {
        self.conversation_get_with(now_ms, caller, p, &NoInbox)
    }

    pub fn conversation_get_with(
        &self,
        now_ms: u64,
        caller: Caller,
        p: GetParams,
        inbox: &dyn LocalInbox,
    ) -> Result<ConversationView, BusError> {
        match p.named()? {
            Named::Post(post) => {
                let shown = self.conversation_post(&post)?;
                let v = self.views();
                let mut thread = v.conversations.thread(&post, &v.membership);
                let fulfilled_by = thread.accepted.map(|a| a.fulfilled_by());
                let readable_until = self
                    .ended_at(shown, now_ms)?
                    .map(|ended| ended.saturating_add(THREAD_RETENTION_MS));
                let reader = match caller {
                    Caller::Remote(peer) => peer,
                    _ => self.node_id(),
                };
                let withheld = readable_until
                    .is_some_and(|until| now_ms >= until || !participates(&thread, &post, &reader));
                if withheld {
                    for r in &mut thread.replies {
                        r.body.clear();
                    }
                    for c in &mut thread.claims {
                        c.claim.note = None;
                    }
                }
                Ok(ConversationView::Thread {
                    post,
                    thread: Box::new(thread),
                    fulfilled_by,
                    readable_until,
                    withheld,
                })
            }
            Named::With(with) => {
                only_local(caller)?;
                Ok(ConversationView::Messages {
                    with,
                    messages: self.messages_with(with, inbox),
                })
            }
        }
    }

    /// When `post` ended (Unix ms, the author's clocks): at its `expires_at`
    /// or at the `ts` of its counting expiry event, whichever came first;
    /// `None` while it is live. A function of the event set, `now` given
    /// by the caller as for the TTL (DESIGN.md §4): no clock read here.
    fn ended_at(&self, post: &Post, now_ms: u64) -> Result<Option<u64>, BusError> {
        let Some(expired) = &post.expired else {
            return Ok((post.expires_at <= now_ms).then_some(post.expires_at));
        };
        let event = self
            .log()
            .store()
            .get(&expired.event.hash)
            .map_err(|e| BusError::internal(format!("reading the post's expiry: {e}")))?
            .ok_or_else(|| BusError::internal("the post's expiry event is not in the log"))?;
        Ok(Some(event.event().ts.min(post.expires_at)))
    }

    /// Marks every item a conversation shows now as read by this node's
    /// user: the messages from `with`, or the replies and claims of others
    /// under `post`.
    pub fn conversation_mark_read(
        &self,
        caller: Caller,
        p: MarkReadParams,
        inbox: &dyn LocalInbox,
    ) -> Result<MarkedRead, BusError> {
        only_local(caller)?;
        if !inbox.keeps_state() {
            return Err(BusError::unavailable(
                "read state is kept by the running node (`hearth run`); call it there",
            ));
        }
        let me = self.node_id();
        let (conversation, items) = match p.named()? {
            Named::With(with) => (
                ConversationKey::With(with),
                self.views()
                    .conversations
                    .sealed_between(&with, &me)
                    .map(|s| s.key)
                    .collect::<Vec<_>>(),
            ),
            Named::Post(post) => {
                self.conversation_post(&post)?;
                let v = self.views();
                let thread = v.conversations.thread(&post, &v.membership);
                let items = thread_items(&thread)
                    .into_iter()
                    .filter(|i| i.from != me)
                    .map(|i| i.key)
                    .collect();
                (ConversationKey::Post(post), items)
            }
        };
        let marked = items
            .iter()
            .filter(|k| !inbox.is_read(&conversation, k))
            .count();
        inbox
            .mark_read(conversation, &items)
            .map_err(|why| BusError::internal(format!("could not keep the read state: {why}")))?;
        Ok(MarkedRead { marked, unread: 0 })
    }

    /// Messages both ways with `with`, in (lamport, hash) order; those to
    /// this node opened with its key, those it sent from its kept copies.
    fn messages_with(&self, with: NodeId, inbox: &dyn LocalInbox) -> Vec<MessageView> {
        let me = self.node_id();
        let conv = &self.views().conversations;
        let conversation = ConversationKey::With(with);
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
                    outgoing: false,
                    read: inbox.is_read(&conversation, &s.key),
                },
            ));
        }
        for s in conv.sealed_between(&me, &with) {
            let copy = inbox.sent_copy(&s.key);
            out.push((
                s.key,
                MessageView {
                    id: s.id,
                    lamport: s.key.lamport,
                    from: s.from,
                    to: s.to,
                    ts: s.ts,
                    body: copy.as_ref().map(|c| c.body.clone()),
                    post: copy.and_then(|c| c.post),
                    error: None,
                    outgoing: true,
                    read: true,
                },
            ));
        }
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// Unread messages from `with` (the live stream's `message` event).
    pub fn unread_from(&self, with: NodeId, inbox: &dyn LocalInbox) -> usize {
        let conversation = ConversationKey::With(with);
        self.views()
            .conversations
            .sealed_between(&with, &self.node_id())
            .filter(|s| !inbox.is_read(&conversation, &s.key))
            .count()
    }
}

/// Whether `who` takes part in `post`'s thread: its author, or someone
/// whose reply or claim it shows.
fn participates(thread: &Thread, post: &EventRef, who: &NodeId) -> bool {
    post.author == *who
        || thread.replies.iter().any(|r| r.author == *who)
        || thread.claims.iter().any(|c| c.claim.author == *who)
}

/// One reply or claim of a thread, for counting and previews.
struct ThreadItem<'a> {
    key: hearth_proto::EventKey,
    from: NodeId,
    ts: u64,
    text: Option<&'a str>,
}

/// A thread's replies and claims in (lamport, hash) order.
fn thread_items(thread: &Thread) -> Vec<ThreadItem<'_>> {
    let mut items: Vec<ThreadItem<'_>> = thread
        .replies
        .iter()
        .map(|r| ThreadItem {
            key: r.key,
            from: r.author,
            ts: r.ts,
            text: Some(r.body.as_str()),
        })
        .chain(thread.claims.iter().map(|c| ThreadItem {
            key: c.claim.key,
            from: c.claim.author,
            ts: c.claim.ts,
            text: c.claim.note.as_deref(),
        }))
        .collect();
    items.sort_by_key(|i| i.key);
    items
}

/// The first [`PREVIEW_CHARS_MAX`] characters of `text`, on one line.
fn preview(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(PREVIEW_CHARS_MAX)
        .collect();
    one_line
}

fn only_local(caller: Caller) -> Result<(), BusError> {
    match caller {
        Caller::Remote(peer) => Err(BusError::unauthorized(format!(
            "{peer}: direct messages are private to this node's own user"
        ))),
        _ => Ok(()),
    }
}
