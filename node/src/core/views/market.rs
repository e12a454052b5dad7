//! The marketplace: posts as every node derives them from its events.
//!
//! The view keeps the raw facts (every `created`, every update, every expiry,
//! by key), which are a function of the *set* of events; everything shown is
//! derived from those facts and the current membership levels. So the same
//! set in any order gives the same state, and an update or expiry that
//! arrives before its `created` simply waits among the facts.
//!
//! Rules (DESIGN.md §4): a post is named by (author, ULID); it shows the
//! content of the latest of its `created` and its author's updates; it is
//! shown while its author is member/trusted/anchor, not expired by a counting
//! expiry, and `expires_at > now`. Of two `created` with one name, the lower
//! hash is the post.
//!
//! Rules added in issue 10 (docs/decisions.md, "Rules added in issue 10"),
//! all read from the community settings of the membership view:
//! - *Capped expiry*: the effective expiry is `min(content.expires_at,
//!   content_event.ts + post_ttl_max_s * 1000)`, so no member's own config
//!   can make a post outlive the community's limit. `ts` is the author's
//!   clock: a member who also fakes `ts` escapes the cap, and moderation is
//!   the answer to that.
//! - *Moderation*: a `moderated` expiry counts, like `stale`, while its
//!   author is trusted or an anchor, and reaches every post with that id.
//! - *Per-author bound*: of an author's posts without a counting expiry,
//!   only the `posts_per_author_max` with the highest `created` keys show;
//!   the older ones are `over_limit`. Kept incrementally, split per author
//!   into the shown top and the hidden rest, so a post entering or leaving
//!   moves at most one other post across the boundary (an author who never
//!   passed the bound is only counted).
//!
//! Indexes (by Lamport; the listing's by category, tag, author, place and
//! expiry) hold only *shown* posts, so `list` walks at most what it returns
//! plus posts past `expires_at` that the sweeper has not marked yet. The
//! listing's are built on the first listing, not kept from the start: a
//! replay does not pay for them, and a view that never lists (the
//! simulator's nodes) never holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use hearth_proto::{
    EventHash, EventId, EventKey, ExpiryReason, NodeId, Payload, PostContent, VerifiedEvent,
};
use serde::{Deserialize, Serialize};

use super::membership::{MembershipChange, MembershipView};
use super::small_map::SmallMap;
use super::ViewError;
use crate::core::search::{Document, LazyIndex, SearchIndex};

mod listing;
use listing::ListIndexes;
pub use listing::{
    haversine_km, Facets, ListError, ListPage, ListQuery, Listed, Near, PastTtl, Sort, TagCount,
    LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, RADIUS_KM_MAX, TAG_FACETS_MAX,
};

/// Changes to what the view shows recorded between two
/// [`MarketView::take_changes`]: one applied event's worth. An author's
/// removal or a settings change can touch every post, so past this many
/// the rest are counted, not kept (the change feed then tells its clients
/// to reload).
pub const CHANGES_MAX: usize = 4096;

/// How one post's place in the view changed when an event was applied:
/// the raw material of the node's change feed. Derived by comparing the
/// post before and after, so it reports what the view shows, not what
/// events say (an update from a non-author changes nothing, so reports
/// nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostChange {
    /// Now shown, and was not (new, or its author admitted again, or
    /// back within the per-author bound).
    Added,
    /// Shown before and after, with other content or another expiry.
    Updated,
    /// Was shown, and a counting expiry now ends it.
    Expired,
    /// Was shown, and is hidden without an expiry (author no longer a
    /// member, or over the per-author bound).
    Hidden,
}

impl PostChange {
    /// What changed between `old` and `new` (the same post's name), if
    /// anything a reader of the view would see.
    fn between(old: Option<&Post>, new: Option<&Post>) -> Option<PostChange> {
        let was = old.filter(|p| p.is_shown());
        let is = new.filter(|p| p.is_shown());
        match (was, is) {
            (None, Some(_)) => Some(PostChange::Added),
            (Some(o), Some(n)) => (o.content_event != n.content_event
                || o.expires_at != n.expires_at)
                .then_some(PostChange::Updated),
            (Some(_), None) if new.is_some_and(|p| p.expired.is_some()) => {
                Some(PostChange::Expired)
            }
            (Some(_), None) => Some(PostChange::Hidden),
            (None, None) => None,
        }
    }
}

/// A post's name: its author and its ULID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PostKey {
    pub author: NodeId,
    pub id: EventId,
}

impl PostKey {
    /// Every name of `author`'s posts: maps keyed by name hold them as
    /// this one range.
    fn all_of(author: NodeId) -> std::ops::RangeInclusive<PostKey> {
        let first = PostKey {
            author,
            id: EventId::nil(),
        };
        let last = PostKey {
            author,
            id: EventId::from(u128::MAX),
        };
        first..=last
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Created {
    key: EventKey,
    ts: u64,
    content: Arc<PostContent>,
    client_id: Option<String>,
}

/// One update's content and its author's clock, which the TTL cap reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Update {
    ts: u64,
    content: Arc<PostContent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Expiry {
    by: NodeId,
    reason: ExpiryReason,
}

/// How a post ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    pub by: NodeId,
    pub reason: ExpiryReason,
    /// Key of the counting expiry event (the latest one that counts).
    pub event: EventKey,
}

/// A post as the view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub id: EventId,
    pub author: NodeId,
    /// Key of the `created` event.
    pub created: EventKey,
    /// Author's clock at creation (advisory).
    pub created_ts: u64,
    /// Key of the event whose content is shown (`created` or an update).
    pub content_event: EventKey,
    /// That event's `ts` (author's clock), from which the TTL cap counts.
    pub content_ts: u64,
    /// Shared with the event and the facts, not copied.
    pub content: Arc<PostContent>,
    /// Effective expiry, Unix ms: `content.expires_at` capped at
    /// `content_ts + post_ttl_max_s * 1000` (the community's limit).
    pub expires_at: u64,
    pub client_id: Option<String>,
    /// Boxed: most posts have none, and a post is stored once per node.
    pub expired: Option<Box<Expired>>,
    /// Whether the author's current level lets the post show.
    pub author_active: bool,
    /// Hidden by the per-author bound: the author has at least
    /// `posts_per_author_max` newer posts without a counting expiry.
    pub over_limit: bool,
}

impl Post {
    pub fn key(&self) -> PostKey {
        PostKey {
            author: self.author,
            id: self.id,
        }
    }

    /// Shown at `now`: author active, no counting expiry, within the
    /// per-author bound, effective expiry not passed.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.is_shown() && self.expires_at > now_ms
    }

    fn is_shown(&self) -> bool {
        self.author_active && self.expired.is_none() && !self.over_limit
    }

    /// Whether the post takes a place in its author's bound: every post
    /// without a counting expiry, whatever its TTL (the bound reads no `now`).
    fn in_bound(&self) -> bool {
        self.expired.is_none()
    }

    fn bound_key(&self) -> BoundKey {
        (self.created, self.id)
    }
}

/// Order within an author's bound: the `created` key, then the id.
type BoundKey = (EventKey, EventId);

/// One author's posts without a counting expiry, split at the bound.
/// While they are no more than the bound every one shows, so only their
/// number is kept: most authors never reach it, and a set of keys per
/// author in every node was a tenth of the simulator's heap.
#[derive(Debug, Clone)]
enum AuthorBound {
    /// At most the bound: this many, all shown.
    Within(usize),
    /// Past it, until the author is back to half of it. Invariant: `rest`
    /// is empty unless `top` holds exactly the bound, and every key in
    /// `top` is above every key in `rest`.
    Over {
        /// The newest `posts_per_author_max`: shown.
        top: BTreeSet<BoundKey>,
        /// The older ones: hidden as over the limit.
        rest: BTreeSet<BoundKey>,
    },
}

impl Default for AuthorBound {
    fn default() -> Self {
        AuthorBound::Within(0)
    }
}

impl AuthorBound {
    /// The bound over `keys` (the author's, in any order).
    fn of(mut keys: Vec<BoundKey>, max: usize) -> AuthorBound {
        if keys.len() <= max {
            return AuthorBound::Within(keys.len());
        }
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let rest = keys.split_off(max);
        AuthorBound::Over {
            top: keys.into_iter().collect(),
            rest: rest.into_iter().collect(),
        }
    }

    /// Adds `k`; returns the post it pushed out of the shown ones, if any.
    /// `others` lists the author's other keys: read only when `k` is the
    /// first past the bound, to split them.
    fn insert(
        &mut self,
        k: BoundKey,
        max: usize,
        others: impl FnOnce() -> Vec<BoundKey>,
    ) -> Option<EventId> {
        match self {
            AuthorBound::Within(n) if *n < max => {
                *n += 1;
                None
            }
            AuthorBound::Within(n) => {
                let mut keys = others();
                debug_assert_eq!(keys.len(), *n);
                keys.push(k);
                *self = AuthorBound::of(keys, max);
                // The one key pushed out, unless it is `k` itself.
                match self {
                    AuthorBound::Over { rest, .. } => {
                        rest.first().filter(|out| **out != k).map(|out| out.1)
                    }
                    AuthorBound::Within(_) => None,
                }
            }
            AuthorBound::Over { top, rest } => {
                if top.len() < max {
                    debug_assert!(rest.is_empty());
                    top.insert(k);
                    return None;
                }
                match top.first() {
                    Some(low) if *low < k => {
                        top.insert(k);
                        let out = top.pop_first()?;
                        rest.insert(out);
                        Some(out.1)
                    }
                    _ => {
                        rest.insert(k);
                        None
                    }
                }
            }
        }
    }

    /// Removes `k`; returns the post that moved up into the shown ones, if
    /// any.
    fn remove(&mut self, k: &BoundKey, max: usize) -> Option<EventId> {
        let (top, rest) = match self {
            AuthorBound::Within(n) => {
                *n = n.saturating_sub(1);
                return None;
            }
            AuthorBound::Over { top, rest } => (top, rest),
        };
        let up = if top.remove(k) {
            rest.pop_last().map(|up| {
                top.insert(up);
                up.1
            })
        } else {
            rest.remove(k);
            None
        };
        // Back to a count only well under the bound: an author at the
        // bound whose posts are updated (each a remove and an insert)
        // would otherwise split their keys again at every update.
        if rest.is_empty() && top.len() <= max / 2 {
            *self = AuthorBound::Within(top.len());
        }
        up
    }

    /// Whether the post at `k` is hidden by the bound.
    fn is_over(&self, k: &BoundKey) -> bool {
        match self {
            AuthorBound::Within(_) => false,
            AuthorBound::Over { top, .. } => !top.contains(k),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, AuthorBound::Within(0))
    }
}

/// `posts_per_author_max` as a count (the schema guarantees at least 1).
fn bound_of(membership: &MembershipView) -> usize {
    usize::try_from(membership.settings().posts_per_author_max).unwrap_or(usize::MAX)
}

/// Index order: newest shown content first.
type IndexKey = (std::cmp::Reverse<EventKey>, PostKey);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Facts {
    /// Every `created`, by name then hash (lowest hash wins).
    created: BTreeMap<PostKey, SmallMap<EventHash, Created>>,
    /// Every update, by the name it reaches (its author + target).
    updates: BTreeMap<PostKey, SmallMap<EventKey, Update>>,
    /// Every expiry, by target id: stale ones may reach other authors' posts.
    expiries: BTreeMap<EventId, SmallMap<EventKey, Expiry>>,
    max_lamport: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MarketView {
    facts: Facts,
    posts: BTreeMap<PostKey, Post>,
    /// Every created post's name, id first: the posts an expiry's target
    /// id reaches (almost always one: ids are unique per author). A set of
    /// pairs rather than a map of small maps: no allocation per post. (An
    /// author's posts are a range of `facts.created`, which is in name
    /// order, so they need no index of their own.)
    names_by_id: BTreeSet<(EventId, NodeId)>,
    /// Ids that `by` marked stale or moderated, to re-check when `by`'s
    /// level changes.
    stale_ids_by: BTreeMap<NodeId, BTreeSet<EventId>>,
    /// The per-author bound (module docs); derived, rebuilt with the posts.
    bounds: BTreeMap<NodeId, AuthorBound>,
    client_ids: BTreeMap<(NodeId, String), PostKey>,
    /// Shown posts, newest shown content first (`since_lamport`, the
    /// sweeper, search).
    by_lamport: BTreeSet<IndexKey>,
    /// The listing's indexes of the shown posts, built on the first
    /// listing (`listing::ListIndexes`); none until then.
    lists: OnceLock<ListIndexes>,
    /// Keyword search over the shown posts (issue 13), kept with the other
    /// indexes once built: every post that enters or leaves them enters or
    /// leaves it. Built on the first search ([`MarketView::with_search`]).
    search: LazyIndex<PostKey>,
    /// During a full replay: record facts only, derive once at the end.
    bulk: bool,
    /// Shown-state changes since the last [`MarketView::take_changes`]
    /// (at most [`CHANGES_MAX`]); none are recorded in bulk mode.
    changes: Vec<(PostKey, PostChange)>,
    /// Changes past [`CHANGES_MAX`] since the last take: counted only.
    changes_lost: u64,
    /// DELIBERATE BUG, for the simulator's tests only (`fault-injection`):
    /// when set, a post shows the update *applied last* rather than the one
    /// with the highest key, so the view depends on arrival order. Survives
    /// `reset` (it stands for broken code, not state).
    #[cfg(feature = "fault-injection")]
    arrival_order_bug: bool,
    /// The update of each post applied last, kept only while the bug is on.
    #[cfg(feature = "fault-injection")]
    last_applied_update: BTreeMap<PostKey, EventKey>,
}

impl MarketView {
    /// Starts a full replay: `apply` records facts without deriving posts
    /// (levels change along the way; only the final ones matter).
    pub fn begin_bulk(&mut self) {
        self.bulk = true;
    }

    /// Ends a full replay: derives every post once and builds the indexes
    /// from sorted data, instead of one ordered insert per event.
    pub fn end_bulk(&mut self, membership: &MembershipView) {
        self.bulk = false;
        self.rebuild(membership, false);
    }

    /// Records one post's change, if any, within [`CHANGES_MAX`].
    fn record(&mut self, name: PostKey, old: Option<&Post>, new: Option<&Post>) {
        if let Some(change) = PostChange::between(old, new) {
            self.push_change(name, change);
        }
    }

    fn push_change(&mut self, name: PostKey, change: PostChange) {
        if self.changes.len() < CHANGES_MAX {
            self.changes.push((name, change));
        } else {
            self.changes_lost += 1;
        }
    }

    /// The changes recorded since the last call, in the order they
    /// happened, and how many more there were past [`CHANGES_MAX`].
    pub fn take_changes(&mut self) -> (Vec<(PostKey, PostChange)>, u64) {
        let lost = std::mem::take(&mut self.changes_lost);
        (std::mem::take(&mut self.changes), lost)
    }

    /// Re-derives every post from the facts and rebuilds every index;
    /// with `report`, records how each post's shown state changed (a
    /// settings change), else nothing (a replay: nothing was shown yet).
    fn rebuild(&mut self, membership: &MembershipView, report: bool) {
        let mut updates = self.facts.updates.iter().peekable();
        let mut author: Option<(NodeId, bool)> = None;
        let mut posts: BTreeMap<PostKey, Post> = self
            .facts
            .created
            .iter()
            .filter_map(|(name, created)| {
                // Updates without a creation are skipped on the way.
                while updates.next_if(|(u, _)| *u < name).is_some() {}
                let post_updates = updates.next_if(|(u, _)| *u == name).map(|(_, u)| u);
                let active = match author {
                    Some((a, active)) if a == name.author => active,
                    _ => {
                        let active = membership.is_active(&name.author);
                        author = Some((name.author, active));
                        active
                    }
                };
                self.derive_from(name, created, post_updates, active, membership)
                    .map(|p| (*name, p))
            })
            .collect();
        self.bounds = Self::bounds_of(&mut posts, bound_of(membership));
        let mut by_lamport = Vec::with_capacity(posts.len());
        let mut client_ids = BTreeMap::new();
        // Every post may have changed: rebuilt on the next search.
        self.search.reset();
        for post in posts.values() {
            if let Some(c) = &post.client_id {
                client_ids.insert((post.author, c.clone()), post.key());
            }
            if post.is_shown() {
                by_lamport.push(Self::index_key(post));
            }
        }
        self.by_lamport = by_lamport.into_iter().collect();
        self.client_ids = client_ids;
        // Built again on the next listing.
        self.lists = OnceLock::new();
        let old = std::mem::replace(&mut self.posts, posts);
        if report {
            // Posts are never dropped from the view (their facts stay), so
            // walking the new posts covers every name.
            let found: Vec<(PostKey, PostChange)> = self
                .posts
                .iter()
                .filter_map(|(n, p)| PostChange::between(old.get(n), Some(p)).map(|c| (*n, c)))
                .collect();
            for (name, change) in found {
                self.push_change(name, change);
            }
        }
    }

    /// Splits every author's posts at the bound, newest first, and marks
    /// the older ones `over_limit`: one sort per author.
    fn bounds_of(posts: &mut BTreeMap<PostKey, Post>, max: usize) -> BTreeMap<NodeId, AuthorBound> {
        let mut keys: BTreeMap<NodeId, Vec<BoundKey>> = BTreeMap::new();
        for p in posts.values().filter(|p| p.in_bound()) {
            keys.entry(p.author).or_default().push(p.bound_key());
        }
        let mut bounds = BTreeMap::new();
        for (author, ks) in keys {
            let bound = AuthorBound::of(ks, max);
            if let AuthorBound::Over { rest, .. } = &bound {
                for (_, id) in rest {
                    if let Some(p) = posts.get_mut(&PostKey { author, id: *id }) {
                        p.over_limit = true;
                    }
                }
            }
            bounds.insert(author, bound);
        }
        bounds
    }

    pub fn reset(&mut self) {
        #[cfg(feature = "fault-injection")]
        let arrival_order_bug = self.arrival_order_bug;
        *self = MarketView::default();
        #[cfg(feature = "fault-injection")]
        {
            self.arrival_order_bug = arrival_order_bug;
        }
    }

    /// Turns on the deliberate arrival-order bug (see `arrival_order_bug`).
    #[cfg(feature = "fault-injection")]
    pub fn inject_arrival_order_bug(&mut self) {
        self.arrival_order_bug = true;
    }

    /// Applies one logged event, then re-derives whatever posts it or the
    /// membership change it caused can touch.
    pub fn apply(
        &mut self,
        event: &VerifiedEvent,
        membership: &MembershipView,
        change: &MembershipChange,
    ) {
        let e = event.event();
        let key = event.key();
        let mut touched: BTreeSet<PostKey> = BTreeSet::new();
        match &e.payload {
            Payload::PostCreated(p) => {
                let name = PostKey {
                    author: e.author,
                    id: e.id,
                };
                self.facts.created.entry(name).or_default().insert(
                    key.hash,
                    Created {
                        key,
                        ts: e.ts,
                        content: p.content.clone(),
                        client_id: p.client_id.clone(),
                    },
                );
                self.names_by_id.insert((e.id, e.author));
                touched.insert(name);
            }
            Payload::PostUpdated(u) => {
                let name = PostKey {
                    author: e.author,
                    id: u.target,
                };
                self.facts.updates.entry(name).or_default().insert(
                    key,
                    Update {
                        ts: e.ts,
                        content: u.content.clone(),
                    },
                );
                #[cfg(feature = "fault-injection")]
                if self.arrival_order_bug {
                    self.last_applied_update.insert(name, key);
                }
                touched.insert(name);
            }
            Payload::PostExpired(x) => {
                self.facts.expiries.entry(x.target).or_default().insert(
                    key,
                    Expiry {
                        by: e.author,
                        reason: x.reason.clone(),
                    },
                );
                if counts_when_trusted(&x.reason) {
                    self.stale_ids_by
                        .entry(e.author)
                        .or_default()
                        .insert(x.target);
                }
                touched.extend(self.names_with_id(&x.target));
            }
            // Issue 14: the post's author accepting a claim ends the post as
            // `fulfilled` (the conversations view says by whom). Recorded as
            // the author's own expiry, so the expiry rules apply unchanged;
            // an acceptance by anyone else is not an expiry at all.
            Payload::ClaimAccepted(c) if c.target.author == e.author => {
                let expiry = Expiry {
                    by: e.author,
                    reason: ExpiryReason::Fulfilled,
                };
                let all = self.facts.expiries.entry(c.target.id).or_default();
                all.insert(key, expiry);
                touched.extend(self.names_with_id(&c.target.id));
            }
            _ => {}
        }
        if matches!(
            e.payload,
            Payload::PostCreated(_)
                | Payload::PostUpdated(_)
                | Payload::PostExpired(_)
                | Payload::ClaimAccepted(_)
        ) {
            self.facts.max_lamport = self.facts.max_lamport.max(e.lamport);
        }
        if self.bulk {
            return;
        }
        if change.limits_changed {
            // The cap and the bound of every post may move: rare (an
            // anchor's deliberate act), so one full re-derivation.
            self.rebuild(membership, true);
            return;
        }
        for who in &change.active_changed {
            touched.extend(self.names_by_author(who));
        }
        for who in &change.trusted_changed {
            touched.extend(self.names_marked_stale_by(who));
        }
        for name in touched {
            self.refresh(name, membership);
        }
    }

    fn names_with_id(&self, id: &EventId) -> Vec<PostKey> {
        self.names_by_id
            .range((*id, NodeId([0; 32]))..=(*id, NodeId([0xff; 32])))
            .map(|(id, author)| PostKey {
                author: *author,
                id: *id,
            })
            .collect()
    }

    /// `who`'s own posts: they show only while `who` is active.
    fn names_by_author(&self, who: &NodeId) -> Vec<PostKey> {
        self.facts
            .created
            .range(PostKey::all_of(*who))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Posts `who` marked stale: the mark counts only while `who` is
    /// trusted or an anchor.
    fn names_marked_stale_by(&self, who: &NodeId) -> Vec<PostKey> {
        self.stale_ids_by
            .get(who)
            .into_iter()
            .flatten()
            .flat_map(|id| self.names_with_id(id))
            .collect()
    }

    /// Re-derives one post from the facts, moves its index entries and its
    /// place in the author's bound; a post the bound moved across its
    /// boundary only has its `over_limit` flag flipped.
    fn refresh(&mut self, name: PostKey, membership: &MembershipView) {
        let max = bound_of(membership);
        let derived = self.derive(&name, membership);
        let mut crossed: Vec<EventId> = Vec::new();
        let old = self.posts.remove(&name);
        if let Some(old) = &old {
            self.unindex(old);
            if old.in_bound() {
                let bound = self.bounds.entry(name.author).or_default();
                crossed.extend(bound.remove(&old.bound_key(), max));
                if bound.is_empty() {
                    self.bounds.remove(&name.author);
                }
            }
        }
        if let Some(mut post) = derived {
            if post.in_bound() {
                let bound = self.bounds.entry(name.author).or_default();
                let posts = &self.posts;
                let others = || Self::bound_keys_of(posts, name.author);
                crossed.extend(bound.insert(post.bound_key(), max, others));
                post.over_limit = bound.is_over(&post.bound_key());
            }
            self.index(&post);
            self.record(name, old.as_ref(), Some(&post));
            self.posts.insert(name, post);
        } else {
            self.record(name, old.as_ref(), None);
        }
        for id in crossed {
            if id != name.id {
                self.reflag(PostKey {
                    author: name.author,
                    id,
                });
            }
        }
    }

    /// The bound keys of `author`'s posts in `posts` that take a place in
    /// the bound.
    fn bound_keys_of(posts: &BTreeMap<PostKey, Post>, author: NodeId) -> Vec<BoundKey> {
        posts
            .range(PostKey::all_of(author))
            .map(|(_, p)| p)
            .filter(|p| p.in_bound())
            .map(Post::bound_key)
            .collect()
    }

    /// Sets a post's `over_limit` from its author's bound, re-indexing it if
    /// that changed.
    fn reflag(&mut self, name: PostKey) {
        let Some(post) = self.posts.get(&name) else {
            return;
        };
        let over = self
            .bounds
            .get(&name.author)
            .is_some_and(|b| b.is_over(&post.bound_key()));
        if post.over_limit == over {
            return;
        }
        let old = post.clone();
        let mut post = post.clone();
        self.unindex(&post);
        post.over_limit = over;
        self.index(&post);
        self.record(name, Some(&old), Some(&post));
        self.posts.insert(name, post);
    }

    fn derive(&self, name: &PostKey, membership: &MembershipView) -> Option<Post> {
        let created = self.facts.created.get(name)?;
        let updates = self.facts.updates.get(name);
        self.derive_from(
            name,
            created,
            updates,
            membership.is_active(&name.author),
            membership,
        )
    }

    /// [`Self::derive`] with the post's facts and its author's standing
    /// already found: `rebuild` walks `created` and `updates` side by side
    /// (both in name order) and asks the membership once per author,
    /// instead of four B-tree searches per post (a profile of a 1M replay
    /// put a third of applying in those searches).
    fn derive_from(
        &self,
        name: &PostKey,
        created: &SmallMap<EventHash, Created>,
        updates: Option<&SmallMap<EventKey, Update>>,
        author_active: bool,
        membership: &MembershipView,
    ) -> Option<Post> {
        let created = created.values().next()?;
        let latest = updates.and_then(|u| u.iter().next_back());
        // DELIBERATE BUG (tests only): the update applied last, not the latest.
        #[cfg(feature = "fault-injection")]
        let latest = self
            .last_applied_update
            .get(name)
            .filter(|_| self.arrival_order_bug)
            .and_then(|last| updates?.iter().find(|(k, _)| *k == last))
            .or(latest);
        let (content_event, content_ts, content) = latest
            .filter(|(k, _)| **k > created.key)
            .map(|(k, u)| (*k, u.ts, u.content.clone()))
            .unwrap_or_else(|| (created.key, created.ts, created.content.clone()));
        let cap_ms = membership.settings().post_ttl_max_s.saturating_mul(1000);
        let expires_at = content.expires_at.min(content_ts.saturating_add(cap_ms));
        let expired = self.facts.expiries.get(&name.id).and_then(|all| {
            all.iter().rev().find_map(|(k, x)| {
                let counts = x.by == name.author
                    || (counts_when_trusted(&x.reason) && membership.is_trusted(&x.by));
                counts.then(|| Expired {
                    by: x.by,
                    reason: x.reason.clone(),
                    event: *k,
                })
            })
        });
        Some(Post {
            id: name.id,
            author: name.author,
            created: created.key,
            created_ts: created.ts,
            content_event,
            content_ts,
            content,
            expires_at,
            client_id: created.client_id.clone(),
            expired: expired.map(Box::new),
            author_active,
            // Set from the author's bound by the caller.
            over_limit: false,
        })
    }

    fn index_key(post: &Post) -> IndexKey {
        (std::cmp::Reverse(post.content_event), post.key())
    }

    fn index(&mut self, post: &Post) {
        if let Some(c) = &post.client_id {
            self.client_ids.insert((post.author, c.clone()), post.key());
        }
        if !post.is_shown() {
            return;
        }
        if let Some(search) = self.search.get_mut() {
            search.insert(post.key(), Document::of(&post.content));
        }
        self.by_lamport.insert(Self::index_key(post));
        if let Some(lists) = self.lists.get_mut() {
            lists.index(post);
        }
    }

    fn unindex(&mut self, post: &Post) {
        if let Some(search) = self.search.get_mut() {
            search.remove(&post.key());
        }
        self.by_lamport.remove(&Self::index_key(post));
        if let Some(lists) = self.lists.get_mut() {
            lists.unindex(post);
        }
    }

    /// A post by name, whatever its state (expired and hidden ones too).
    pub fn get(&self, name: &PostKey) -> Option<&Post> {
        self.posts.get(name)
    }

    /// Every post with this id (normally one; ids are unique per author).
    pub fn find(&self, id: &EventId) -> Vec<&Post> {
        self.names_with_id(id)
            .iter()
            .filter_map(|n| self.posts.get(n))
            .collect()
    }

    /// The post an author created with `client_id`, for idempotent posting.
    pub fn by_client_id(&self, author: &NodeId, client_id: &str) -> Option<&Post> {
        self.client_ids
            .get(&(*author, client_id.to_owned()))
            .and_then(|n| self.posts.get(n))
    }

    /// Runs `f` on the keyword index of the shown posts, building it first
    /// if no search has yet (a post past its TTL stays in it until swept:
    /// callers check [`Post::is_live`]).
    pub fn with_search<R>(&self, f: impl FnOnce(&SearchIndex<PostKey>) -> R) -> R {
        self.search.with(|| self.search_index_now(), f)
    }

    /// Builds the keyword index now, so the first search does not wait.
    pub fn warm_search(&self) {
        self.with_search(|_| ());
    }

    fn search_index_now(&self) -> SearchIndex<PostKey> {
        let mut index = SearchIndex::default();
        for post in self.posts.values().filter(|p| p.is_shown()) {
            index.insert(post.key(), Document::of(&post.content));
        }
        index
    }

    /// Every live post, newest first.
    pub fn all_active(&self, now_ms: u64) -> impl Iterator<Item = &Post> {
        self.by_lamport
            .iter()
            .filter_map(|(_, n)| self.posts.get(n))
            .filter(move |p| p.is_live(now_ms))
    }

    /// Shown posts live at `now_ms`, in key order: what a semantic search
    /// ranks (its order does not matter). Reads the posts in place rather
    /// than through the Lamport index, which costs a lookup per post.
    pub fn live_posts(&self, now_ms: u64) -> impl Iterator<Item = &Post> {
        self.posts.values().filter(move |p| p.is_live(now_ms))
    }

    /// Shown posts whose TTL has passed: what the sweeper marks stale.
    pub fn past_ttl(&self, now_ms: u64) -> impl Iterator<Item = &Post> {
        self.by_lamport
            .iter()
            .filter_map(|(_, n)| self.posts.get(n))
            .filter(move |p| p.expires_at <= now_ms)
    }

    /// Highest Lamport time of any marketplace event applied.
    pub fn max_lamport(&self) -> u64 {
        self.facts.max_lamport
    }

    pub fn post_count(&self) -> usize {
        self.posts.len()
    }

    pub fn snapshot_state(&self) -> Result<Vec<u8>, ViewError> {
        super::to_cbor(&self.facts)
    }

    /// Restores the facts and re-derives everything; `membership` must be
    /// restored first.
    pub fn restore_state(
        &mut self,
        bytes: &[u8],
        membership: &MembershipView,
    ) -> Result<(), ViewError> {
        let facts: Facts = super::from_cbor(bytes)?;
        self.reset();
        self.names_by_id = facts.created.keys().map(|n| (n.id, n.author)).collect();
        for (id, all) in &facts.expiries {
            for x in all.values().filter(|x| counts_when_trusted(&x.reason)) {
                self.stale_ids_by.entry(x.by).or_default().insert(*id);
            }
        }
        self.facts = facts;
        self.rebuild(membership, false);
        Ok(())
    }

    /// Digest of every derived post, in name order: equal digests mean equal
    /// marketplaces (the convergence check of tests and the simulator).
    pub fn digest(&self) -> [u8; 32] {
        super::digest_of(&self.posts)
    }
}

/// Reasons by which someone other than the author may end a post: they
/// count while the expiry's author is trusted or an anchor (DESIGN.md §4,
/// and `moderated` from issue 10).
fn counts_when_trusted(reason: &ExpiryReason) -> bool {
    matches!(reason, ExpiryReason::Stale | ExpiryReason::Moderated)
}

#[cfg(test)]
mod tests {
    use hearth_proto::{EventHash, EventId, EventKey};

    use super::{AuthorBound, BoundKey};

    fn key(lamport: u64) -> BoundKey {
        (
            EventKey {
                lamport,
                hash: EventHash([lamport as u8; 32]),
            },
            EventId::from_parts(lamport, 0),
        )
    }

    /// The bound keeps every key only while an author is past it, and goes
    /// back to a bare count once well under it: what it shows is the same
    /// either way (the rule tests check that), but an author at the bound
    /// whose posts are updated would otherwise split their keys again at
    /// every update, and every author who ever posted would keep an entry.
    #[test]
    fn an_author_bound_is_a_count_again_only_well_under_the_limit() {
        let max = 4;
        let mut bound = AuthorBound::default();
        let keys: Vec<BoundKey> = (1..=5).map(key).collect();
        for (i, k) in keys.iter().enumerate() {
            let all_before = keys[..i].to_vec();
            bound.insert(*k, max, || all_before);
        }
        assert!(
            matches!(&bound, AuthorBound::Over { top, rest } if top.len() == 4 && rest.len() == 1)
        );
        assert!(bound.is_over(&keys[0]), "the oldest of five is hidden");

        // The newest goes: the hidden one moves up; the bound still holds
        // every key while one more would pass it.
        assert_eq!(bound.remove(&keys[4], max), Some(keys[0].1));
        assert!(
            matches!(&bound, AuthorBound::Over { top, rest } if top.len() == 4 && rest.is_empty())
        );
        bound.remove(&keys[3], max);
        assert!(
            matches!(&bound, AuthorBound::Over { top, .. } if top.len() == 3),
            "three of four is not yet well under the bound: {bound:?}"
        );
        bound.remove(&keys[2], max);
        assert!(
            matches!(bound, AuthorBound::Within(2)),
            "half the bound is a count again: {bound:?}"
        );
        assert!(!bound.is_empty());
        bound.remove(&keys[1], max);
        bound.remove(&keys[0], max);
        assert!(bound.is_empty(), "no posts left: {bound:?}");
    }
}
