//! The reference model: DESIGN.md §4's view rules, written a second time,
//! as plainly as possible, so the simulator can check that nodes are
//! *right*, not only that they agree.
//!
//! A deterministic bug in `node::core::views` converges happily: every node
//! computes the same wrong answer. This module owns an independent answer.
//! It shares no code with `core/views` (it folds `hearth_proto` types and
//! names the view's `Post` and `PostKey` only to read the core's answer):
//! take a node's whole event set, sort it by `(lamport, hash)`, fold it once,
//! then derive every post from what the fold collected. No indexes, no
//! incremental updates, no snapshots: slow and obviously right.
//!
//! Issue 10's rules (docs/decisions.md, "Rules added in issue 10") are
//! here too, each written from that text, not from the view's code:
//! - *settings*: the fold keeps the latest `community.settings` whose
//!   author is an anchor at its point of the order (else the defaults with
//!   the genesis name);
//! - *names*: the latest profile per author, shown while the author is
//!   active;
//! - *capped expiry*: `min(expires_at, content ts + post_ttl_max_s * 1000)`,
//!   saturating;
//! - *moderation*: a `moderated` expiry counts like `stale`, from a key
//!   that is trusted or an anchor now;
//! - *the per-author bound*: after every post is derived, each author's
//!   posts without a counting expiry are sorted newest `created` first and
//!   all but the first `posts_per_author_max` are `over_limit`.
//!
//! How to add a rule: ordered facts (settings, levels, names) go into
//! [`Fold`] as one more `match` arm in [`Fold::apply`]; per-post rules go
//! into [`Reference::derive`] (one function per question: content, expiry,
//! shown), rules across posts into [`Reference::new`], and a new shown field
//! into [`PostRow`] together with its value read from the core's `Post` in
//! [`PostRow::of_core`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hearth_node::core::views::conversations::Thread;
use hearth_node::core::views::market::{Post, PostKey};
use hearth_proto::{
    CommunitySettings, EventId, EventKey, EventRef, ExpiryReason, Level, NodeId, Payload,
    PostContent, VerifiedEvent,
};

/// Conversation bounds (docs/decisions.md, "Conversations"), written out
/// here rather than imported, so a wrong bound in the view is a mismatch:
/// of one author's replies under a post the lowest 20 keys count, a post
/// shows the lowest 200 counting replies of active authors; claims 4 and 100.
const REPLIES_PER_AUTHOR: usize = 20;
const REPLIES_PER_POST: usize = 200;
const CLAIMS_PER_AUTHOR: usize = 4;
const CLAIMS_PER_POST: usize = 100;

/// What the model says a post's conversation shows: reply keys, claims as
/// (key, withdrawn, accepted), and the accepted claim. Compared with
/// [`ThreadRow::of_core`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    pub replies: Vec<EventKey>,
    pub claims: Vec<(EventKey, bool, bool)>,
    /// The winning acceptance event and the claim it accepts.
    pub accepted: Option<(EventKey, EventRef)>,
}

impl ThreadRow {
    /// The same fields, read from the core's thread.
    pub fn of_core(t: &Thread) -> ThreadRow {
        ThreadRow {
            replies: t.replies.iter().map(|r| r.key).collect(),
            claims: t
                .claims
                .iter()
                .map(|c| (c.claim.key, c.withdrawn, c.accepted))
                .collect(),
            accepted: t.accepted.map(|a| (a.key, a.claim)),
        }
    }
}

/// Of `items` (key, author, ..) in key order: each author's first
/// `per_author`, then of those by active authors the first `per_post`.
fn bounded<T: Copy>(
    items: &[(EventKey, NodeId, T)],
    per_author: usize,
    per_post: usize,
    active: impl Fn(&NodeId) -> bool,
) -> Vec<(EventKey, NodeId, T)> {
    let mut count: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut out: Vec<(EventKey, NodeId, T)> = Vec::new();
    let mut sorted = items.to_vec();
    sorted.sort_by_key(|x| x.0);
    sorted.dedup_by_key(|x| x.0);
    for item in sorted {
        let n = count.entry(item.1).or_default();
        *n += 1;
        if *n <= per_author && active(&item.1) {
            out.push(item);
        }
    }
    out.truncate(per_post);
    out
}

/// The settings in force before any anchor signed some (docs/decisions.md,
/// "Settings in force"): 30 days, 100 posts. Written out here rather than
/// imported from the view, so a wrong default there is a mismatch.
pub const POST_TTL_MAX_S_DEFAULT: u64 = 2_592_000;
pub const POSTS_PER_AUTHOR_MAX_DEFAULT: u64 = 100;

/// What the model says about one post, in the fields the core's view
/// shows today. Compared field by field with [`PostRow::of_core`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRow {
    pub author: NodeId,
    pub id: EventId,
    /// The `created` that is the post (the lowest hash of that name).
    pub created: EventKey,
    /// The event whose content is shown, and the content itself.
    pub content_event: EventKey,
    pub content: Arc<PostContent>,
    /// The shown content event's `ts`, from which the TTL cap counts.
    pub content_ts: u64,
    /// The effective expiry: `content.expires_at` capped at `content_ts +
    /// post_ttl_max_s * 1000`.
    pub expires_at: u64,
    pub client_id: Option<String>,
    /// The latest expiry that counts: (by, reason, event).
    pub expired: Option<(NodeId, ExpiryReason, EventKey)>,
    /// The author's current level lets the post show.
    pub author_active: bool,
    /// Hidden by the per-author bound.
    pub over_limit: bool,
}

impl PostRow {
    /// The same fields, read from the core's view.
    pub fn of_core(p: &Post) -> PostRow {
        PostRow {
            author: p.author,
            id: p.id,
            created: p.created,
            content_event: p.content_event,
            content: p.content.clone(),
            content_ts: p.content_ts,
            expires_at: p.expires_at,
            client_id: p.client_id.clone(),
            expired: p
                .expired
                .as_ref()
                .map(|x| (x.by, x.reason.clone(), x.event)),
            author_active: p.author_active,
            over_limit: p.over_limit,
        }
    }

    /// Listed at `now`: author active, no counting expiry, within the
    /// bound, and its effective expiry not passed.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.author_active && self.expired.is_none() && !self.over_limit && self.expires_at > now_ms
    }

    /// The status `get` reports at `now`, first that applies: `expired`,
    /// `hidden` (author inactive), `over_limit`, `past_ttl`, `active`.
    pub fn status(&self, now_ms: u64) -> &'static str {
        if self.expired.is_some() {
            "expired"
        } else if !self.author_active {
            "hidden"
        } else if self.over_limit {
            "over_limit"
        } else if self.expires_at <= now_ms {
            "past_ttl"
        } else {
            "active"
        }
    }
}

/// A post's name as the fold files things: (author, id).
type Name = (NodeId, EventId);
/// A `created`: its key, its `ts`, content and client id.
type CreatedFact = (EventKey, u64, Arc<PostContent>, Option<String>);
/// An update: its key, its `ts` and the new content.
type UpdateFact = (EventKey, u64, Arc<PostContent>);

/// The ordered fold: everything whose meaning depends on the position of
/// an event in `(lamport, hash)` order.
#[derive(Debug, Default)]
struct Fold {
    genesis_anchors: Vec<NodeId>,
    genesis_name: String,
    /// The latest `community.settings` whose author was an anchor at its
    /// point of the order (None: the defaults).
    settings: Option<CommunitySettings>,
    /// Each author's latest profile name (the fold is in key order, so the
    /// last one seen is the latest).
    names: BTreeMap<NodeId, String>,
    /// Current levels: `member.set` applied in order, each only if its
    /// author is an anchor at that point.
    levels: BTreeMap<NodeId, Level>,
    /// Every `member.set` (author, member, level), order kept for the
    /// closure (which does not care about order).
    sets: Vec<(NodeId, NodeId, Level)>,
    /// Every `created` by name, lowest hash first.
    created: BTreeMap<Name, Vec<CreatedFact>>,
    /// Every update by the name it reaches (its own author + target), in
    /// key order.
    updates: BTreeMap<Name, Vec<UpdateFact>>,
    /// Every expiry by target id, in key order: (key, by, reason).
    expiries: BTreeMap<EventId, Vec<(EventKey, NodeId, ExpiryReason)>>,
    /// Conversations: every reply under a post, in key order (key, author).
    replies: BTreeMap<EventRef, Vec<(EventKey, NodeId)>>,
    /// Every claim on a post, in key order (key, author, id).
    claims: BTreeMap<EventRef, Vec<(EventKey, NodeId, EventId)>>,
    /// Claims withdrawn by their own author.
    withdrawn: BTreeSet<EventRef>,
    /// Per post, its author's acceptance with the highest key (the fold
    /// runs in key order, so the last one written).
    accepted: BTreeMap<EventRef, (EventKey, EventRef)>,
}

impl Fold {
    fn apply(&mut self, ev: &VerifiedEvent) {
        let e = ev.event();
        let key = ev.key();
        match &e.payload {
            Payload::Genesis(g) => {
                self.genesis_anchors = g.anchors.clone();
                self.genesis_name = g.name.clone();
                for a in &g.anchors {
                    self.levels.insert(*a, Level::Anchor);
                }
            }
            Payload::MemberSet(m) => {
                self.sets.push((e.author, m.member, m.level));
                if self.levels.get(&e.author) == Some(&Level::Anchor) {
                    self.levels.insert(m.member, m.level);
                }
            }
            Payload::PostCreated(p) => {
                let all = self.created.entry((e.author, e.id)).or_default();
                all.push((key, e.ts, p.content.clone(), p.client_id.clone()));
                all.sort_by_key(|c| c.0.hash);
            }
            Payload::PostUpdated(u) => {
                self.updates.entry((e.author, u.target)).or_default().push((
                    key,
                    e.ts,
                    u.content.clone(),
                ));
            }
            Payload::PostExpired(x) => {
                self.expiries
                    .entry(x.target)
                    .or_default()
                    .push((key, e.author, x.reason.clone()));
            }
            Payload::Settings(set) => {
                if self.levels.get(&e.author) == Some(&Level::Anchor) {
                    self.settings = Some(set.clone());
                }
            }
            Payload::Profile(p) => {
                self.names.insert(e.author, p.name.clone());
            }
            // Conversations (issue 14, docs/decisions.md "Conversations").
            Payload::PostReply(r) => {
                self.replies
                    .entry(r.target)
                    .or_default()
                    .push((key, e.author));
            }
            Payload::PostClaim(c) => {
                self.claims
                    .entry(c.target)
                    .or_default()
                    .push((key, e.author, e.id));
            }
            Payload::ClaimWithdrawn(w) => {
                // Only the claim's own author can withdraw it.
                if w.claim.author == e.author {
                    self.withdrawn.insert(w.claim);
                }
            }
            Payload::ClaimAccepted(a) => {
                // Only the post's author accepts; the highest key wins, and
                // the post ends `fulfilled` as if its author expired it.
                if a.target.author == e.author {
                    self.accepted.insert(a.target, (key, a.claim));
                    self.expiries.entry(a.target.id).or_default().push((
                        key,
                        e.author,
                        ExpiryReason::Fulfilled,
                    ));
                }
            }
            // Sealed messages show in no public view; the checker opens
            // them with each node's key instead.
            Payload::DmSealed(_) | Payload::Unknown { .. } => {}
        }
    }
}

/// The model over one event set.
#[derive(Debug)]
pub struct Reference {
    fold: Fold,
    /// The settings in force (see [`Reference::settings`]).
    settings: CommunitySettings,
    vouched: BTreeSet<NodeId>,
    posts: BTreeMap<PostKey, PostRow>,
    /// Every post with a conversation, derived once (a final check
    /// compares a thousand nodes with one model).
    threads: BTreeMap<EventRef, ThreadRow>,
    events: usize,
}

impl Reference {
    /// Builds the model from an event set in any order.
    pub fn new(mut events: Vec<VerifiedEvent>) -> Reference {
        events.sort_by_key(|e| e.key());
        events.dedup_by_key(|e| e.key());
        let mut fold = Fold::default();
        for ev in &events {
            fold.apply(ev);
        }
        let vouched = closure(&fold.genesis_anchors, &fold.sets);
        let settings = fold.settings.clone().unwrap_or_else(|| CommunitySettings {
            name: fold.genesis_name.clone(),
            post_ttl_max_s: POST_TTL_MAX_S_DEFAULT,
            posts_per_author_max: POSTS_PER_AUTHOR_MAX_DEFAULT,
        });
        let mut model = Reference {
            fold,
            settings,
            vouched,
            posts: BTreeMap::new(),
            threads: BTreeMap::new(),
            events: events.len(),
        };
        let names: Vec<Name> = model.fold.created.keys().copied().collect();
        for (author, id) in names {
            if let Some(row) = model.derive(author, id) {
                model.posts.insert(PostKey { author, id }, row);
            }
        }
        model.apply_bound();
        model.threads = model
            .conversation_posts()
            .into_iter()
            .map(|p| (p, model.derive_thread(&p)))
            .collect();
        model
    }

    /// The per-author bound: of each author's posts without a counting
    /// expiry, newest `created` first, all past the first
    /// `posts_per_author_max` are over the limit. TTLs and `now` play no
    /// part.
    fn apply_bound(&mut self) {
        let max = usize::try_from(self.settings().posts_per_author_max).unwrap_or(usize::MAX);
        let mut by_author: BTreeMap<NodeId, Vec<(EventKey, PostKey)>> = BTreeMap::new();
        for (name, row) in &self.posts {
            if row.expired.is_none() {
                by_author
                    .entry(row.author)
                    .or_default()
                    .push((row.created, *name));
            }
        }
        for (_, mut posts) in by_author {
            posts.sort_by(|a, b| b.cmp(a));
            for (_, name) in posts.into_iter().skip(max) {
                if let Some(row) = self.posts.get_mut(&name) {
                    row.over_limit = true;
                }
            }
        }
    }

    /// The settings in force: the latest that counted, else the defaults
    /// with the genesis name.
    pub fn settings(&self) -> &CommunitySettings {
        &self.settings
    }

    /// Posts with any conversation fact (a reply, claim or acceptance).
    pub fn conversation_posts(&self) -> BTreeSet<EventRef> {
        let f = &self.fold;
        f.replies
            .keys()
            .chain(f.claims.keys())
            .chain(f.accepted.keys())
            .copied()
            .collect()
    }

    /// The accepted claim of `post`: its author's acceptance with the
    /// highest `(lamport, hash)`.
    pub fn accepted(&self, post: &EventRef) -> Option<(EventKey, EventRef)> {
        self.fold.accepted.get(post).copied()
    }

    /// What `post`'s conversation shows (see [`ThreadRow`]), derived.
    /// Each post with a conversation and what its thread shows.
    pub fn threads(&self) -> &BTreeMap<EventRef, ThreadRow> {
        &self.threads
    }

    fn derive_thread(&self, post: &EventRef) -> ThreadRow {
        let f = &self.fold;
        let replies: Vec<(EventKey, NodeId, ())> = f
            .replies
            .get(post)
            .into_iter()
            .flatten()
            .map(|(k, a)| (*k, *a, ()))
            .collect();
        let claims = f.claims.get(post).map(Vec::as_slice).unwrap_or_default();
        let accepted = self.accepted(post);
        ThreadRow {
            replies: bounded(&replies, REPLIES_PER_AUTHOR, REPLIES_PER_POST, |a| {
                self.active(a)
            })
            .into_iter()
            .map(|r| r.0)
            .collect(),
            claims: bounded(claims, CLAIMS_PER_AUTHOR, CLAIMS_PER_POST, |a| {
                self.active(a)
            })
            .into_iter()
            .map(|(key, author, id)| {
                let claim = EventRef { author, id };
                (
                    key,
                    f.withdrawn.contains(&claim),
                    accepted.is_some_and(|(_, c)| c == claim),
                )
            })
            .collect(),
            accepted,
        }
    }

    /// Display names shown: the latest profile of each author who is active
    /// now.
    pub fn names(&self) -> BTreeMap<NodeId, String> {
        self.fold
            .names
            .iter()
            .filter(|(k, _)| self.active(k))
            .map(|(k, n)| (*k, n.clone()))
            .collect()
    }

    /// Every key with a profile, shown or not: where a view might wrongly
    /// show a name.
    pub fn profile_authors(&self) -> impl Iterator<Item = &NodeId> {
        self.fold.names.keys()
    }

    fn level(&self, who: &NodeId) -> Option<Level> {
        self.fold.levels.get(who).copied()
    }

    fn active(&self, who: &NodeId) -> bool {
        matches!(
            self.level(who),
            Some(Level::Member | Level::Trusted | Level::Anchor)
        )
    }

    fn trusted(&self, who: &NodeId) -> bool {
        matches!(self.level(who), Some(Level::Trusted | Level::Anchor))
    }

    /// One post from the collected facts (DESIGN.md §4).
    fn derive(&self, author: NodeId, id: EventId) -> Option<PostRow> {
        // Of two `created` with one name, the lower hash is the post.
        let (created, created_ts, created_content, client_id) =
            self.fold.created.get(&(author, id))?.first()?;
        // Shown content: the latest of the `created` and the author's own
        // updates (updates by others are filed under their own name).
        let mut content_event = *created;
        let mut content_ts = *created_ts;
        let mut content = created_content.clone();
        for (k, ts, c) in self.fold.updates.get(&(author, id)).into_iter().flatten() {
            if *k > content_event {
                content_event = *k;
                content_ts = *ts;
                content = c.clone();
            }
        }
        // The community's cap counts from the shown content's own clock.
        let cap_ms = self.settings().post_ttl_max_s.saturating_mul(1000);
        let expires_at = content.expires_at.min(content_ts.saturating_add(cap_ms));
        // The latest expiry that counts: the author's own, any reason; a
        // `stale` or `moderated` one by someone trusted or an anchor *now*.
        let mut expired = None;
        for (k, by, reason) in self.fold.expiries.get(&id).into_iter().flatten() {
            let by_moderator = matches!(reason, ExpiryReason::Stale | ExpiryReason::Moderated);
            let counts = *by == author || (by_moderator && self.trusted(by));
            if counts && expired.as_ref().is_none_or(|(_, _, at)| k > at) {
                expired = Some((*by, reason.clone(), *k));
            }
        }
        Some(PostRow {
            author,
            id,
            created: *created,
            content_event,
            content,
            content_ts,
            expires_at,
            client_id: client_id.clone(),
            expired,
            author_active: self.active(&author),
            // Set across the author's posts by `apply_bound`.
            over_limit: false,
        })
    }

    /// Events the model was built from.
    pub fn event_count(&self) -> usize {
        self.events
    }

    /// Whether `author`'s events may be in the log at all.
    pub fn is_vouched(&self, author: &NodeId) -> bool {
        self.vouched.contains(author)
    }

    /// Levels that mean something: `removed` is the same as never admitted
    /// to every rule, so it is left out (the core may or may not keep it).
    pub fn levels(&self) -> BTreeMap<NodeId, Level> {
        self.fold
            .levels
            .iter()
            .filter(|(_, l)| **l != Level::Removed)
            .map(|(k, l)| (*k, *l))
            .collect()
    }

    /// Every post, expired and hidden ones too, by name.
    pub fn posts(&self) -> &BTreeMap<PostKey, PostRow> {
        &self.posts
    }

    /// The marketplace as `list` shows it at `now` (no filter, no limit):
    /// newest shown content first, ties by name.
    pub fn listed(&self, now_ms: u64) -> Vec<PostKey> {
        let mut live: Vec<(EventKey, PostKey)> = self
            .posts
            .iter()
            .filter(|(_, p)| p.is_live(now_ms))
            .map(|(k, p)| (p.content_event, *k))
            .collect();
        live.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        live.into_iter().map(|(_, k)| k).collect()
    }
}

/// The vouching closure (DESIGN.md §4), as a fixed point: vouched anchors
/// are the genesis anchors and every key a vouched anchor set to `anchor`;
/// vouched authors are those and every key a vouched anchor set to member,
/// trusted or anchor. Order plays no part.
fn closure(genesis_anchors: &[NodeId], sets: &[(NodeId, NodeId, Level)]) -> BTreeSet<NodeId> {
    let mut anchors: BTreeSet<NodeId> = genesis_anchors.iter().copied().collect();
    loop {
        let before = anchors.len();
        for (by, member, level) in sets {
            if *level == Level::Anchor && anchors.contains(by) {
                anchors.insert(*member);
            }
        }
        if anchors.len() == before {
            break;
        }
    }
    let mut vouched = anchors.clone();
    for (by, member, level) in sets {
        if *level != Level::Removed && anchors.contains(by) {
            vouched.insert(*member);
        }
    }
    vouched
}
