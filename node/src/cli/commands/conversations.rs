//! The conversation commands: `reply`, `claim`, `accept`, `msg` (writes,
//! signed by this node) and `inbox` (this node's messages, opened with its
//! key). Thin wrappers over the core's handlers of issue 14.

use anyhow::Context;
use clap::Args;
use hearth_proto::{EventId, EventRef, NodeId};

use crate::cli::render::{block, line};
use crate::cli::Ctx;
use crate::core::services::conversations::{
    self, AcceptParams, ClaimParams, ConversationList, ConversationView, DmSendParams, GetParams,
    Published, ReplyParams,
};
use crate::core::services::market::{self, PostView};

fn event_id(s: &str) -> Result<EventId, String> {
    EventId::from_string(s).map_err(|e| format!("not an id (a 26-character ULID): {e}"))
}

/// The post `id` (by `author` when given), as the market names it.
fn post_ref(ctx: &Ctx, id: EventId, author: Option<NodeId>) -> anyhow::Result<EventRef> {
    let post: PostView = ctx.call(market::GET, &market::GetParams { id, author }, false)?;
    Ok(EventRef {
        author: post.author,
        id: post.id,
    })
}

#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The post's id.
    #[arg(value_parser = event_id)]
    pub post: EventId,
    /// The reply, shown to every member under the post.
    pub text: String,
    /// The post's author, when several posts share the id.
    #[arg(long, value_name = "NODE_ID")]
    pub author: Option<NodeId>,
}

pub fn reply(ctx: &mut Ctx, a: ReplyArgs) -> anyhow::Result<()> {
    let post = post_ref(ctx, a.post, a.author)?;
    let done: Published = ctx.call(
        conversations::REPLY,
        &ReplyParams { post, body: a.text },
        true,
    )?;
    ctx.out.show(&done, |w| {
        writeln!(w, "replied to {} ({})", post.id, done.id)
    })
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The offer or request to claim.
    #[arg(value_parser = event_id)]
    pub post: EventId,
    /// A note for the post's author ("I can come tomorrow").
    #[arg(long)]
    pub note: Option<String>,
    /// The post's author, when several posts share the id.
    #[arg(long, value_name = "NODE_ID")]
    pub author: Option<NodeId>,
}

pub fn claim(ctx: &mut Ctx, a: ClaimArgs) -> anyhow::Result<()> {
    let post = post_ref(ctx, a.post, a.author)?;
    let done: Published = ctx.call(
        conversations::CLAIM,
        &ClaimParams { post, note: a.note },
        true,
    )?;
    ctx.out.show(&done, |w| {
        writeln!(
            w,
            "claimed {} (claim {}); its author can accept it with `hearth accept`",
            post.id, done.id
        )
    })
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// One of your posts.
    #[arg(value_parser = event_id)]
    pub post: EventId,
    /// The claim to accept, as `hearth inbox --post` lists it.
    #[arg(value_parser = event_id)]
    pub claim: EventId,
}

pub fn accept(ctx: &mut Ctx, a: AcceptArgs) -> anyhow::Result<()> {
    // The market prefers this node's own post when several share the id.
    let target = post_ref(ctx, a.post, None)?;
    let thread: ConversationView = ctx.call(
        conversations::GET,
        &GetParams {
            post: Some(target),
            with: None,
        },
        false,
    )?;
    let claimer = match &thread {
        ConversationView::Thread { thread, .. } => thread
            .claims
            .iter()
            .find(|c| c.claim.id == a.claim)
            .map(|c| c.claim.author),
        ConversationView::Messages { .. } => None,
    }
    .with_context(|| {
        format!(
            "no claim {} on your post {}; see `hearth inbox --post {}`",
            a.claim, a.post, a.post
        )
    })?;
    let done: Published = ctx.call(
        conversations::ACCEPT_CLAIM,
        &AcceptParams {
            post: a.post,
            claim: EventRef {
                author: claimer,
                id: a.claim,
            },
        },
        true,
    )?;
    ctx.out.show(&done, |w| {
        writeln!(w, "accepted; {} is fulfilled by {claimer}", a.post)
    })
}

#[derive(Debug, Args)]
pub struct MsgArgs {
    /// The member to write to (node ID).
    pub to: NodeId,
    /// The message: sealed so that only that member can read it.
    pub text: String,
    /// The post the message is about.
    #[arg(long, value_parser = event_id)]
    pub post: Option<EventId>,
}

pub fn msg(ctx: &mut Ctx, a: MsgArgs) -> anyhow::Result<()> {
    let post = match a.post {
        Some(id) => Some(post_ref(ctx, id, None)?),
        None => None,
    };
    let done: Published = ctx.call(
        conversations::DM_SEND,
        &DmSendParams {
            to: a.to,
            body: a.text,
            post,
        },
        true,
    )?;
    ctx.out.show(&done, |w| {
        writeln!(
            w,
            "sealed to {} ({}); it travels with the log and is read when they are online",
            a.to, done.id
        )
    })
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Show the messages with this member.
    #[arg(long, value_name = "NODE_ID", conflicts_with = "post")]
    pub with: Option<NodeId>,
    /// Show this post's replies and claims.
    #[arg(long, value_parser = event_id)]
    pub post: Option<EventId>,
    /// The post's author, when several posts share the id.
    #[arg(long, value_name = "NODE_ID", requires = "post")]
    pub author: Option<NodeId>,
}

pub fn inbox(ctx: &mut Ctx, a: InboxArgs) -> anyhow::Result<()> {
    if a.with.is_none() && a.post.is_none() {
        let list: ConversationList =
            ctx.call(conversations::LIST, &serde_json::json!({}), false)?;
        return ctx.out.show(&list, |w| {
            if list.conversations.is_empty() {
                return writeln!(w, "no messages");
            }
            for c in &list.conversations {
                let who = match (&c.with, &c.post) {
                    (Some(with), _) => with.to_string(),
                    (None, Some(post)) => format!("post {}", post.id),
                    (None, None) => String::new(),
                };
                let label = c.title.as_deref().or(c.name.as_deref()).map(line);
                let label = label.map(|l| format!(" ({l})")).unwrap_or_default();
                writeln!(
                    w,
                    "{who}{label}  {} unread, {} received, {} sent  (lamport {})",
                    c.unread, c.received, c.sent, c.last_lamport
                )?;
            }
            Ok(())
        });
    }
    let post = match a.post {
        Some(id) => Some(post_ref(ctx, id, a.author)?),
        None => None,
    };
    let view: ConversationView =
        ctx.call(conversations::GET, &GetParams { post, with: a.with }, false)?;
    ctx.out.show(&view, |w| match &view {
        ConversationView::Thread {
            thread,
            fulfilled_by,
            ..
        } => {
            if let Some(by) = fulfilled_by {
                writeln!(w, "fulfilled by {by}")?;
            }
            for c in &thread.claims {
                let state = match (c.accepted, c.withdrawn) {
                    (true, _) => " [accepted]",
                    (false, true) => " [withdrawn]",
                    _ => "",
                };
                let note = c.claim.note.as_deref().map(line).unwrap_or_default();
                writeln!(
                    w,
                    "claim {} by {}{state}  {note}",
                    c.claim.id, c.claim.author
                )?;
            }
            for r in &thread.replies {
                writeln!(w, "{}: {}", r.author, block(&r.body, "    "))?;
            }
            if thread.claims.is_empty() && thread.replies.is_empty() {
                writeln!(w, "no replies or claims yet")?;
            }
            Ok(())
        }
        ConversationView::Messages { messages, .. } => {
            if messages.is_empty() {
                return writeln!(w, "no messages");
            }
            for m in messages {
                match (&m.body, &m.error) {
                    (Some(text), _) if m.outgoing => {
                        writeln!(w, "you -> {}: {}", m.to, block(text, "    "))?
                    }
                    (Some(text), _) => writeln!(w, "{} -> you: {}", m.from, block(text, "    "))?,
                    (None, Some(e)) => writeln!(w, "{} -> you: (unreadable: {e})", m.from)?,
                    (None, None) => writeln!(w, "you -> {}: (sealed for them)", m.to)?,
                }
            }
            Ok(())
        }
    })
}
