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
//! Indexes (by Lamport, by category, by tag) hold only *shown* posts, keyed
//! newest first, so `list` walks at most what it returns plus posts past
//! `expires_at` that the sweeper has not marked yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hearth_proto::{
    Category, EventHash, EventId, EventKey, ExpiryReason, NodeId, Payload, PostContent,
    VerifiedEvent,
};
use serde::{Deserialize, Serialize};

use super::membership::{MembershipChange, MembershipView};
use super::small_map::SmallMap;
use super::ViewError;

/// `list` returns at most this many posts when the caller gives no limit.
pub const LIST_LIMIT_DEFAULT: usize = 50;
/// And never more than this: a page must stay a small answer.
pub const LIST_LIMIT_MAX: usize = 500;

/// A post's name: its author and its ULID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PostKey {
    pub author: NodeId,
    pub id: EventId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Created {
    key: EventKey,
    ts: u64,
    content: Arc<PostContent>,
    client_id: Option<String>,
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
    /// Shared with the event and the facts, not copied.
    pub content: Arc<PostContent>,
    pub client_id: Option<String>,
    /// Boxed: most posts have none, and a post is stored once per node.
    pub expired: Option<Box<Expired>>,
    /// Whether the author's current level lets the post show.
    pub author_active: bool,
}

impl Post {
    pub fn key(&self) -> PostKey {
        PostKey {
            author: self.author,
            id: self.id,
        }
    }

    /// Shown at `now`: author active, no counting expiry, TTL not passed.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.is_shown() && self.content.expires_at > now_ms
    }

    fn is_shown(&self) -> bool {
        self.author_active && self.expired.is_none()
    }
}

/// Query for [`MarketView::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub category: Option<Category>,
    /// Posts must carry every one of these tags (lowercase).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only posts whose shown content is newer than this Lamport time.
    #[serde(default)]
    pub since_lamport: Option<u64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Index order: newest shown content first.
type IndexKey = (std::cmp::Reverse<EventKey>, PostKey);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Facts {
    /// Every `created`, by name then hash (lowest hash wins).
    created: BTreeMap<PostKey, SmallMap<EventHash, Created>>,
    /// Every update, by the name it reaches (its author + target).
    updates: BTreeMap<PostKey, SmallMap<EventKey, Arc<PostContent>>>,
    /// Every expiry, by target id: stale ones may reach other authors' posts.
    expiries: BTreeMap<EventId, SmallMap<EventKey, Expiry>>,
    max_lamport: u64,
}

#[derive(Debug, Clone, Default)]
pub struct MarketView {
    facts: Facts,
    posts: BTreeMap<PostKey, Post>,
    /// Authors of each id: almost always one (ids are unique per author).
    authors_by_id: BTreeMap<EventId, SmallMap<NodeId, ()>>,
    ids_by_author: BTreeMap<NodeId, BTreeSet<EventId>>,
    /// Ids that `by` marked stale, to re-check when `by`'s level changes.
    stale_ids_by: BTreeMap<NodeId, BTreeSet<EventId>>,
    client_ids: BTreeMap<(NodeId, String), PostKey>,
    by_lamport: BTreeSet<IndexKey>,
    by_category: BTreeMap<Category, BTreeSet<IndexKey>>,
    by_tag: BTreeMap<String, BTreeSet<IndexKey>>,
    /// During a full replay: record facts only, derive once at the end.
    bulk: bool,
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
        self.rebuild(membership);
    }

    /// Re-derives every post from the facts and rebuilds every index.
    fn rebuild(&mut self, membership: &MembershipView) {
        let posts: BTreeMap<PostKey, Post> = self
            .facts
            .created
            .keys()
            .filter_map(|name| self.derive(name, membership).map(|p| (*name, p)))
            .collect();
        let mut by_lamport = Vec::with_capacity(posts.len());
        let mut by_category: BTreeMap<Category, Vec<IndexKey>> = BTreeMap::new();
        let mut by_tag: BTreeMap<String, Vec<IndexKey>> = BTreeMap::new();
        let mut client_ids = BTreeMap::new();
        for post in posts.values() {
            if let Some(c) = &post.client_id {
                client_ids.insert((post.author, c.clone()), post.key());
            }
            if !post.is_shown() {
                continue;
            }
            let k = Self::index_key(post);
            by_lamport.push(k);
            by_category
                .entry(post.content.category)
                .or_default()
                .push(k);
            for tag in &post.content.tags {
                by_tag.entry(tag.clone()).or_default().push(k);
            }
        }
        self.by_lamport = by_lamport.into_iter().collect();
        self.by_category = by_category
            .into_iter()
            .map(|(c, v)| (c, v.into_iter().collect()))
            .collect();
        self.by_tag = by_tag
            .into_iter()
            .map(|(t, v)| (t, v.into_iter().collect()))
            .collect();
        self.client_ids = client_ids;
        self.posts = posts;
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
                self.authors_by_id
                    .entry(e.id)
                    .or_default()
                    .insert(e.author, ());
                self.ids_by_author.entry(e.author).or_default().insert(e.id);
                touched.insert(name);
            }
            Payload::PostUpdated(u) => {
                let name = PostKey {
                    author: e.author,
                    id: u.target,
                };
                self.facts
                    .updates
                    .entry(name)
                    .or_default()
                    .insert(key, u.content.clone());
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
                if x.reason == ExpiryReason::Stale {
                    self.stale_ids_by
                        .entry(e.author)
                        .or_default()
                        .insert(x.target);
                }
                touched.extend(self.names_with_id(&x.target));
            }
            _ => {}
        }
        if matches!(
            e.payload,
            Payload::PostCreated(_) | Payload::PostUpdated(_) | Payload::PostExpired(_)
        ) {
            self.facts.max_lamport = self.facts.max_lamport.max(e.lamport);
        }
        if self.bulk {
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
        self.authors_by_id
            .get(id)
            .into_iter()
            .flat_map(SmallMap::keys)
            .map(|author| PostKey {
                author: *author,
                id: *id,
            })
            .collect()
    }

    /// `who`'s own posts: they show only while `who` is active.
    fn names_by_author(&self, who: &NodeId) -> Vec<PostKey> {
        self.ids_by_author
            .get(who)
            .into_iter()
            .flatten()
            .map(|id| PostKey {
                author: *who,
                id: *id,
            })
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

    /// Re-derives one post from the facts, and moves its index entries.
    fn refresh(&mut self, name: PostKey, membership: &MembershipView) {
        let derived = self.derive(&name, membership);
        if let Some(old) = self.posts.remove(&name) {
            self.unindex(&old);
        }
        if let Some(post) = derived {
            self.index(&post);
            self.posts.insert(name, post);
        }
    }

    fn derive(&self, name: &PostKey, membership: &MembershipView) -> Option<Post> {
        let created = self.facts.created.get(name)?.values().next()?;
        let updates = self.facts.updates.get(name);
        let latest = updates.and_then(|u| u.iter().next_back());
        // DELIBERATE BUG (tests only): the update applied last, not the latest.
        #[cfg(feature = "fault-injection")]
        let latest = self
            .last_applied_update
            .get(name)
            .filter(|_| self.arrival_order_bug)
            .and_then(|last| updates?.iter().find(|(k, _)| *k == last))
            .or(latest);
        let (content_event, content) = latest
            .filter(|(k, _)| **k > created.key)
            .map(|(k, c)| (*k, c.clone()))
            .unwrap_or_else(|| (created.key, created.content.clone()));
        let expired = self.facts.expiries.get(&name.id).and_then(|all| {
            all.iter().rev().find_map(|(k, x)| {
                let counts = x.by == name.author
                    || (x.reason == ExpiryReason::Stale && membership.is_trusted(&x.by));
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
            content,
            client_id: created.client_id.clone(),
            expired: expired.map(Box::new),
            author_active: membership.is_active(&name.author),
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
        let k = Self::index_key(post);
        self.by_lamport.insert(k);
        self.by_category
            .entry(post.content.category)
            .or_default()
            .insert(k);
        for tag in &post.content.tags {
            self.by_tag.entry(tag.clone()).or_default().insert(k);
        }
    }

    fn unindex(&mut self, post: &Post) {
        let k = Self::index_key(post);
        self.by_lamport.remove(&k);
        if let Some(set) = self.by_category.get_mut(&post.content.category) {
            set.remove(&k);
        }
        for tag in &post.content.tags {
            if let Some(set) = self.by_tag.get_mut(tag) {
                set.remove(&k);
                if set.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }

    /// Live posts matching `query`, newest content first.
    pub fn list(&self, query: &ListQuery, now_ms: u64) -> Vec<&Post> {
        let limit = query
            .limit
            .unwrap_or(LIST_LIMIT_DEFAULT)
            .min(LIST_LIMIT_MAX);
        // Walk the smallest index that must contain every match: with a
        // category and a tag, whichever of the two sets is shorter bounds
        // the walk (one common tag must not make a rare category slow).
        let empty = BTreeSet::new();
        let index = query
            .tags
            .iter()
            .map(|t| self.by_tag.get(t).unwrap_or(&empty))
            .chain(
                query
                    .category
                    .map(|c| self.by_category.get(&c).unwrap_or(&empty)),
            )
            .min_by_key(|set| set.len())
            .unwrap_or(&self.by_lamport);
        let since = query.since_lamport;
        index
            .iter()
            .take_while(|(std::cmp::Reverse(k), _)| since.is_none_or(|s| k.lamport > s))
            .filter_map(|(_, name)| self.posts.get(name))
            .filter(|p| p.is_live(now_ms))
            .filter(|p| query.category.is_none_or(|c| p.content.category == c))
            .filter(|p| query.tags.iter().all(|t| p.content.tags.contains(t)))
            .take(limit)
            .collect()
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

    /// Every live post, newest first.
    pub fn all_active(&self, now_ms: u64) -> impl Iterator<Item = &Post> {
        self.by_lamport
            .iter()
            .filter_map(|(_, n)| self.posts.get(n))
            .filter(move |p| p.is_live(now_ms))
    }

    /// Shown posts whose TTL has passed: what the sweeper marks stale.
    pub fn past_ttl(&self, now_ms: u64) -> impl Iterator<Item = &Post> {
        self.by_lamport
            .iter()
            .filter_map(|(_, n)| self.posts.get(n))
            .filter(move |p| p.content.expires_at <= now_ms)
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
        for (name, created) in &facts.created {
            self.authors_by_id
                .entry(name.id)
                .or_default()
                .insert(name.author, ());
            self.ids_by_author
                .entry(name.author)
                .or_default()
                .insert(name.id);
            debug_assert!(!created.is_empty());
        }
        for (id, all) in &facts.expiries {
            for x in all.values().filter(|x| x.reason == ExpiryReason::Stale) {
                self.stale_ids_by.entry(x.by).or_default().insert(*id);
            }
        }
        self.facts = facts;
        self.rebuild(membership);
        Ok(())
    }

    /// Digest of every derived post, in name order: equal digests mean equal
    /// marketplaces (the convergence check of tests and the simulator).
    pub fn digest(&self) -> [u8; 32] {
        super::digest_of(&self.posts)
    }
}
