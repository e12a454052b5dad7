//! The marketplace capabilities: `market.post`, `market.update`,
//! `market.expire`, `market.list`, `market.get`, `market.search`, and the
//! sweeper that marks posts past their TTL as stale.
//!
//! Content limits live here, where a post is made, not at ingest: nodes with
//! other limits still accept the same log (DESIGN.md §4).

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::{
    Category, EventId, ExpiryReason, Level, Location, NodeId, Payload, PostContent, PostCreated,
    PostExpired, PostUpdated, LAMPORT_MAX,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::core::bus::{BusError, Caller, Descriptor};
use crate::core::log::AppendError;
use crate::core::views::market::{
    haversine_km, Facets, ListError, ListQuery, Near, Post, PostKey, LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
};
use crate::core::views::MembershipView;
use crate::core::Node;
use crate::store::EventStore;

pub const LIST: &str = "market.list";
pub const GET: &str = "market.get";
pub const POST: &str = "market.post";
pub const UPDATE: &str = "market.update";
pub const EXPIRE: &str = "market.expire";
pub const SEARCH: &str = "market.search";

pub const TITLE_CHARS_MAX: usize = 120;
pub const BODY_CHARS_MAX: usize = 4_000;
pub const TAGS_MAX: usize = 10;
pub const TAG_CHARS_MAX: usize = 32;
pub const CLIENT_ID_CHARS_MAX: usize = 64;
pub const LABEL_CHARS_MAX: usize = 120;
/// Posts the sweeper expires per tick: a node back from a week offline
/// catches up over a few ticks instead of one burst of events.
pub const SWEEP_BATCH_MAX: usize = 64;
/// Search answers at most this many posts.
pub const SEARCH_LIMIT_MAX: usize = 100;

const fn desc(
    name: &'static str,
    max_concurrent: u32,
    timeout_s: u64,
    idempotent: bool,
    writes: bool,
) -> Descriptor {
    Descriptor {
        name,
        version: 1,
        max_concurrent,
        trust_required: Some(hearth_proto::Level::Member),
        timeout_ms: timeout_s * 1000,
        idempotent,
        writes,
    }
}

pub static DESCRIPTORS: [Descriptor; 6] = [
    desc(LIST, 8, 5, true, false),
    desc(GET, 8, 5, true, false),
    desc(POST, 4, 10, true, true),
    desc(UPDATE, 4, 10, false, true),
    desc(EXPIRE, 4, 5, true, true),
    desc(SEARCH, 4, 10, true, false),
];

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostParams {
    pub category: Category,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Lifetime from now; the configured default if absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub location: Option<Location>,
    /// Makes posting idempotent: the same author and client id return the
    /// first post instead of making a second one.
    #[serde(default)]
    pub client_id: Option<String>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    #[cfg_attr(
        feature = "runtime",
        schemars(with = "hearth_proto::ids::EventIdSchema")
    )]
    pub id: EventId,
    #[serde(default)]
    pub category: Option<Category>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub remove_location: bool,
    /// New lifetime from now.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireParams {
    #[cfg_attr(
        feature = "runtime",
        schemars(with = "hearth_proto::ids::EventIdSchema")
    )]
    pub id: EventId,
    /// Which author's post, when several share the id.
    #[serde(default)]
    pub author: Option<NodeId>,
    #[serde(default = "default_reason")]
    pub reason: ExpiryReason,
}

fn default_reason() -> ExpiryReason {
    ExpiryReason::UserRequest
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    #[cfg_attr(
        feature = "runtime",
        schemars(with = "hearth_proto::ids::EventIdSchema")
    )]
    pub id: EventId,
    #[serde(default)]
    pub author: Option<NodeId>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub query: String,
    #[serde(default)]
    pub category: Option<Category>,
    /// Posts must carry every one of these tags (matched lowercase).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only posts with a location inside this circle (haversine, as
    /// `market.list`'s `near`); posts without a location are left out.
    #[serde(default)]
    pub near: Option<Near>,
    /// At most this many results [default 20, at most `SEARCH_LIMIT_MAX`].
    #[serde(default)]
    pub limit: Option<usize>,
    /// How to rank [default `hybrid`]. The core ranks by keyword only and
    /// says so in the answer's `mode`; a running node ranks by meaning
    /// when an embedding model is reachable (`semantic::search`).
    #[serde(default)]
    pub mode: SearchMode,
}

/// How `market.search` ranks.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Meaning and keywords fused (the default).
    #[default]
    Hybrid,
    /// By meaning alone.
    Semantic,
    /// BM25 with the substring rule: what the core answers itself.
    Keyword,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Semantic => "semantic",
            SearchMode::Keyword => "keyword",
        }
    }
}

impl SearchParams {
    /// Whether `post` passes the filters (category, every tag of `tags`,
    /// the lowercased `self.tags`, and `near`): they apply before ranking.
    pub fn admits(&self, tags: &[String], post: &Post) -> bool {
        self.admits_content(tags, &post.content)
    }

    /// [`SearchParams::admits`] on a post's content.
    pub fn admits_content(&self, tags: &[String], content: &PostContent) -> bool {
        self.category.is_none_or(|c| content.category == c)
            && tags.iter().all(|t| content.tags.contains(t))
            && self.near.as_ref().is_none_or(|n| within(n, content))
    }
}

/// Whether `content` has a location inside `near`: the rule of
/// `market.list`'s `near` (haversine; microdegrees on the wire).
fn within(near: &Near, content: &PostContent) -> bool {
    content.location.as_ref().is_some_and(|l| {
        haversine_km(near.lat, near.lng, l.lat as f64 / 1e6, l.lng as f64 / 1e6) <= near.radius_km
    })
}

/// A post as callers see it.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostView {
    #[cfg_attr(
        feature = "runtime",
        schemars(with = "hearth_proto::ids::EventIdSchema")
    )]
    pub id: EventId,
    pub author: NodeId,
    pub category: Category,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Lamport time of the shown content (the `created` or latest update).
    pub lamport: u64,
    pub created_lamport: u64,
    pub created_ts: u64,
    /// `active`, `expired` (a counting expiry), `past_ttl` (not yet swept),
    /// `hidden` (author no longer a member) or `over_limit` (the author has
    /// `posts_per_author_max` newer posts up).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_reason: Option<ExpiryReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<NodeId>,
    /// The author's display name, while they are a member and set one.
    /// Unescaped text from an event: escape it before a terminal sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// The author's level now (absent once removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_level: Option<Level>,
    /// Distance from the listing's `near` point (set only there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<Km>,
}

/// Kilometres, rounded to the metre: compared by bits so views of posts
/// stay `Eq` (a distance is display data, never a rule).
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Km(pub f64);

impl Km {
    pub fn rounded(km: f64) -> Km {
        Km((km * 1000.0).round() / 1000.0)
    }
}

impl PartialEq for Km {
    fn eq(&self, other: &Km) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Km {}

impl PostView {
    /// `expires_at` is the effective expiry (capped by the community's
    /// `post_ttl_max_s`), not the one the author wrote.
    pub fn of(p: &Post, now_ms: u64, membership: &MembershipView) -> PostView {
        let status = if p.expired.is_some() {
            "expired"
        } else if !p.author_active {
            "hidden"
        } else if p.over_limit {
            "over_limit"
        } else if p.expires_at <= now_ms {
            "past_ttl"
        } else {
            "active"
        };
        PostView {
            id: p.id,
            author: p.author,
            category: p.content.category,
            title: p.content.title.clone(),
            body: p.content.body.clone(),
            tags: p.content.tags.clone(),
            expires_at: p.expires_at,
            location: p.content.location.clone(),
            client_id: p.client_id.clone(),
            lamport: p.content_event.lamport,
            created_lamport: p.created.lamport,
            created_ts: p.created_ts,
            status: status.into(),
            expired_reason: p.expired.as_ref().map(|x| x.reason.clone()),
            expired_by: p.expired.as_ref().map(|x| x.by),
            author_name: membership.display_name(&p.author).map(str::to_owned),
            author_level: membership.level(&p.author),
            distance_km: None,
        }
    }
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostReceipt {
    pub post: PostView,
    /// False when `client_id` matched an earlier post, which is returned.
    pub created: bool,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireReceipt {
    pub post: PostView,
    /// False when the post had already expired: nothing new was signed.
    pub expired_now: bool,
}

/// A page of `market.list` (`GET /api/posts` answers the same, with
/// `posts` named `items`).
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResult {
    pub posts: Vec<PostView>,
    pub max_lamport: u64,
    /// Where the next page starts; absent on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// Posts in the whole filtered set.
    #[serde(default)]
    pub total: u64,
    /// Counts over the whole filtered set.
    #[serde(default)]
    pub facets: Facets,
    /// How `q` was answered; absent without `q`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<ListSearch>,
}

/// How the text match of a listing's `q` was made.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSearch {
    /// The search's own `mode` (`keyword` until another exists).
    pub mode: String,
    /// Why the search answered less well than it can, if it did.
    pub degraded: Option<String>,
}

/// What `market.search` answers.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Which search answered: `keyword` (BM25 with the substring rule)
    /// until semantic search lands (issue 13), then `semantic` or `hybrid`.
    pub mode: String,
    /// Why the answer is worse than asked for, as a wire code: `partition`
    /// when no embedding provider was reachable; `null` otherwise.
    #[serde(default)]
    pub degraded: Option<String>,
    pub results: Vec<SearchHit>,
}

/// One search result: the post and its score (`{post: {..}, score}` on the
/// wire). In Rust, `hit.title` reads through to the post.
///
/// Nested rather than `#[serde(flatten)]`: a flattened struct is decoded
/// through serde's buffered content, which claims to be human-readable, so
/// ids encoded as CBOR byte strings by a peer would no longer decode.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub post: PostView,
    /// The ranking score, higher is better; comparable only within one
    /// answer. 0 for a post found only because it contains the query.
    pub score: f32,
}

impl std::ops::Deref for SearchHit {
    type Target = PostView;
    fn deref(&self) -> &PostView {
        &self.post
    }
}

/// How a cursor of a listing in relevance order starts (then the offset).
const RELEVANCE_CURSOR: &str = "r.";

/// The offset of a relevance-order cursor.
fn relevance_offset(cursor: &str) -> Result<usize, BusError> {
    cursor
        .strip_prefix(RELEVANCE_CURSOR)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            BusError::bad_request(format!(
                "cursor {cursor:?} is not one this node gave out for a listing by relevance \
                 (q without sort); drop it to start from the first page"
            ))
        })
}

/// Default `limit` of a search.
pub const SEARCH_LIMIT_DEFAULT: usize = 20;
/// Longest query, in characters: a query is a few words; a longer one is
/// refused rather than cut, so the caller knows.
pub const QUERY_CHARS_MAX: usize = 500;

fn check_chars(field: &str, text: &str, min: usize, max: usize) -> Result<(), BusError> {
    let n = text.chars().count();
    if n < min || n > max {
        return Err(BusError::bad_request(format!(
            "{field} must be {min} to {max} characters, got {n}"
        )));
    }
    Ok(())
}

/// Refuses control characters (newlines, escapes, ...) in `text`, except
/// those in `allowed`: a title with a newline would fake a line of `list`
/// output on every neighbour's terminal, an escape could hide text.
pub(crate) fn check_no_control(field: &str, text: &str, allowed: &[char]) -> Result<(), BusError> {
    match text
        .char_indices()
        .find(|(_, c)| c.is_control() && !allowed.contains(c))
    {
        None => Ok(()),
        Some((at, c)) => Err(BusError::bad_request(format!(
            "{field} contains the control character {:?} (U+{:04X}) at byte {at}; {}",
            c,
            u32::from(c),
            if allowed.is_empty() {
                "control characters (newlines, tabs, escapes) are not allowed here".to_owned()
            } else {
                "only newlines and tabs are allowed here".to_owned()
            }
        ))),
    }
}

/// Trims, lowercases and dedupes tags, keeping their order.
fn normalise_tags(tags: &[String]) -> Result<Vec<String>, BusError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim().to_lowercase();
        check_chars("each tag", &t, 1, TAG_CHARS_MAX)?;
        check_no_control("tag", &t, &[])?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.len() > TAGS_MAX {
        return Err(BusError::bad_request(format!(
            "at most {TAGS_MAX} tags, got {}",
            out.len()
        )));
    }
    Ok(out)
}

fn check_location(l: &Location) -> Result<(), BusError> {
    use hearth_proto::payload::{LAT_MAX, LNG_MAX};
    if !(-LAT_MAX..=LAT_MAX).contains(&l.lat) {
        return Err(BusError::bad_request(format!(
            "location.lat {} is outside ±{LAT_MAX} microdegrees",
            l.lat
        )));
    }
    if !(-LNG_MAX..=LNG_MAX).contains(&l.lng) {
        return Err(BusError::bad_request(format!(
            "location.lng {} is outside ±{LNG_MAX} microdegrees",
            l.lng
        )));
    }
    check_chars("location.label", &l.label, 0, LABEL_CHARS_MAX)?;
    check_no_control("location.label", &l.label, &[])
}

/// Bodies keep their line breaks and tabs; titles keep nothing.
fn check_text_fields(title: &str, body: &str) -> Result<(), BusError> {
    check_chars("title", title, 1, TITLE_CHARS_MAX)?;
    check_no_control("title", title, &[])?;
    check_chars("body", body, 0, BODY_CHARS_MAX)?;
    check_no_control("body", body, &['\n', '\t'])
}

fn append_error(e: AppendError) -> BusError {
    match e {
        AppendError::Sign(hearth_proto::EventError::TooLarge { size }) => BusError::bad_request(
            format!("the post encodes to {size} bytes, over the event limit; shorten the body"),
        ),
        other => other
            .storage_refusal()
            .unwrap_or_else(|| BusError::internal(other)),
    }
}

impl<S: EventStore> Node<S> {
    fn market_enabled(&self) -> Result<(), BusError> {
        if self.config().market.enabled {
            Ok(())
        } else {
            Err(BusError::unavailable(
                "the market is disabled on this node (market.enabled = false)",
            ))
        }
    }

    /// Writes are signed by this node, so only local callers may write, and
    /// only while this node is a member.
    fn check_can_write(&self, caller: Caller) -> Result<NodeId, BusError> {
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

    /// The lifetime is refused above the lower of this node's config and
    /// the community's `post_ttl_max_s`: the view would cap it anyway, and
    /// a post that silently ends sooner than asked is a surprise. Without
    /// `ttl_seconds`, the default is lowered to the community's limit.
    fn ttl_to_expiry(&self, now_ms: u64, ttl_seconds: Option<u64>) -> Result<u64, BusError> {
        let m = &self.config().market;
        let community_max = self.views().membership.settings().post_ttl_max_s;
        let max = m.max_ttl_seconds.min(community_max);
        let ttl = ttl_seconds.unwrap_or(m.default_ttl_seconds.min(max));
        if ttl == 0 || ttl > max {
            return Err(BusError::bad_request(format!(
                "ttl_seconds must be 1 to {max} (the lower of this node's market.max_ttl_seconds = {} and the community's post_ttl_max_s = {community_max}), got {ttl}",
                m.max_ttl_seconds
            )));
        }
        Ok(now_ms.saturating_add(ttl.saturating_mul(1000)))
    }

    fn post_view(&self, author: NodeId, id: EventId, now_ms: u64) -> Result<PostView, BusError> {
        self.views()
            .market
            .get(&crate::core::views::PostKey { author, id })
            .map(|p| PostView::of(p, now_ms, &self.views().membership))
            .ok_or_else(|| {
                BusError::internal(format!("post {id} missing from the view after append"))
            })
    }

    pub fn market_post(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: PostParams,
    ) -> Result<PostReceipt, BusError> {
        self.market_enabled()?;
        let me = self.check_can_write(caller)?;
        if let Some(c) = &p.client_id {
            check_chars("client_id", c, 1, CLIENT_ID_CHARS_MAX)?;
            if let Some(existing) = self.views().market.by_client_id(&me, c) {
                return Ok(PostReceipt {
                    post: PostView::of(existing, now_ms, &self.views().membership),
                    created: false,
                });
            }
        }
        let title = p.title.trim().to_owned();
        check_text_fields(&title, &p.body)?;
        let tags = normalise_tags(&p.tags)?;
        if let Some(l) = &p.location {
            check_location(l)?;
        }
        let expires_at = self.ttl_to_expiry(now_ms, p.ttl_seconds)?;
        let payload = Payload::PostCreated(PostCreated {
            content: PostContent {
                category: p.category,
                title,
                body: p.body,
                tags,
                expires_at,
                location: p.location,
            }
            .into(),
            client_id: p.client_id,
        });
        let event = self.publish(now_ms, payload).map_err(append_error)?;
        info!(id = %event.event().id, "posted");
        Ok(PostReceipt {
            post: self.post_view(me, event.event().id, now_ms)?,
            created: true,
        })
    }

    pub fn market_update(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: UpdateParams,
    ) -> Result<PostView, BusError> {
        self.market_enabled()?;
        let me = self.check_can_write(caller)?;
        let key = crate::core::views::PostKey {
            author: me,
            id: p.id,
        };
        let post = self
            .views()
            .market
            .get(&key)
            .ok_or_else(|| BusError::not_found(format!("you have no post with id {}", p.id)))?;
        if let Some(x) = &post.expired {
            return Err(BusError::bad_request(format!(
                "post {} has expired ({}); an update cannot revive it",
                p.id, x.reason
            )));
        }
        let mut content = PostContent::clone(&post.content);
        if let Some(c) = p.category {
            content.category = c;
        }
        if let Some(t) = p.title {
            content.title = t.trim().to_owned();
        }
        if let Some(b) = p.body {
            content.body = b;
        }
        if let Some(tags) = p.tags {
            content.tags = tags;
        }
        if p.remove_location {
            content.location = None;
        }
        if let Some(l) = p.location {
            content.location = Some(l);
        }
        if p.ttl_seconds.is_some() {
            content.expires_at = self.ttl_to_expiry(now_ms, p.ttl_seconds)?;
        }
        check_text_fields(&content.title, &content.body)?;
        content.tags = normalise_tags(&content.tags)?;
        if let Some(l) = &content.location {
            check_location(l)?;
        }
        self.publish(
            now_ms,
            Payload::PostUpdated(PostUpdated {
                target: p.id,
                content: content.into(),
            }),
        )
        .map_err(append_error)?;
        self.post_view(me, p.id, now_ms)
    }

    /// Finds the post an expiry or get names: the given author's, else the
    /// caller's own, else the only one with that id.
    fn resolve(&self, id: &EventId, author: Option<NodeId>) -> Result<&Post, BusError> {
        let found = self.views().market.find(id);
        let me = self.node_id();
        let pick = match author {
            Some(a) => found.iter().find(|p| p.author == a).copied(),
            None => found
                .iter()
                .find(|p| p.author == me)
                .copied()
                .or_else(|| (found.len() == 1).then(|| found[0])),
        };
        match pick {
            Some(p) => Ok(p),
            None if found.len() > 1 => Err(BusError::bad_request(format!(
                "{} posts have id {id}; name the author",
                found.len()
            ))),
            None => Err(BusError::not_found(format!("no post with id {id}"))),
        }
    }

    pub fn market_expire(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: ExpireParams,
    ) -> Result<ExpireReceipt, BusError> {
        self.market_enabled()?;
        let me = self.check_can_write(caller)?;
        let post = self.resolve(&p.id, p.author)?;
        let (author, id) = (post.author, post.id);
        if post.expired.is_some() {
            return Ok(ExpireReceipt {
                post: PostView::of(post, now_ms, &self.views().membership),
                expired_now: false,
            });
        }
        self.can_expire(me, post, &p.reason, now_ms)?;
        self.publish(
            now_ms,
            Payload::PostExpired(PostExpired {
                target: id,
                reason: p.reason,
            }),
        )
        .map_err(append_error)?;
        Ok(ExpireReceipt {
            post: self.post_view(author, id, now_ms)?,
            expired_now: true,
        })
    }

    /// The author may end their post for any reason; a trusted member or an
    /// anchor may end anyone's post as `moderated` at any time, or mark it
    /// `stale` once it is past its (effective) TTL.
    fn can_expire(
        &self,
        who: NodeId,
        post: &Post,
        reason: &ExpiryReason,
        now_ms: u64,
    ) -> Result<(), BusError> {
        if who == post.author {
            return Ok(());
        }
        if *reason == ExpiryReason::Moderated {
            if !self.views().membership.is_trusted(&who) {
                return Err(BusError::unauthorized(
                    "ending another member's post as moderated needs level trusted or anchor; ask a trusted member or an anchor",
                ));
            }
            return Ok(());
        }
        if *reason != ExpiryReason::Stale {
            return Err(BusError::unauthorized(format!(
                "only the author can end a post as {reason}; others may mark it stale, or moderated if trusted"
            )));
        }
        if !self.views().membership.is_trusted(&who) {
            return Err(BusError::unauthorized(
                "marking another member's post stale needs level trusted or anchor",
            ));
        }
        if post.expires_at > now_ms {
            return Err(BusError::bad_request(format!(
                "post {} is not past its TTL yet (expires_at {}); a trusted member or an anchor can end it now as moderated",
                post.id, post.expires_at
            )));
        }
        Ok(())
    }

    /// A page of the market (`market.list`, `GET /api/posts`): filters,
    /// sort, cursor, facets (see `views::market::listing`). `q` narrows the
    /// set to what the market's search finds ([`Node::list_search`]).
    pub fn market_list(&self, now_ms: u64, q: ListQuery) -> Result<ListResult, BusError> {
        self.market_enabled()?;
        let ranked = match q.q.as_deref() {
            Some(text) => Some(self.list_search(now_ms, text)?),
            None => None,
        };
        self.market_list_ranked(now_ms, q, ranked)
    }

    /// [`Node::market_list`] with the search of `q` already made, best
    /// first (by this node's keyword search, or by the running node's
    /// hybrid search: `semantic::search`). Without a `sort`, a listing
    /// with `q` is in that relevance order and pages by position in it
    /// (the cursor is `r.<offset>`; at most [`SEARCH_LIMIT_MAX`] hits, so
    /// a page beyond them is empty); with a `sort`, the hits are listed in
    /// that order like any other filter's.
    pub fn market_list_ranked(
        &self,
        now_ms: u64,
        q: ListQuery,
        ranked: Option<(Vec<PostKey>, ListSearch)>,
    ) -> Result<ListResult, BusError> {
        self.market_enabled()?;
        let mut tags: Vec<String> = Vec::with_capacity(q.tags.len());
        for t in &q.tags {
            let t = t.trim().to_lowercase();
            if t.is_empty() {
                return Err(BusError::bad_request(
                    "tags contains an empty tag; leave it out",
                ));
            }
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let q = ListQuery { tags, ..q };
        if q.since_lamport.is_some_and(|s| s > LAMPORT_MAX) {
            return Err(BusError::bad_request("since_lamport is above 2^53 - 1"));
        }
        let (order, search) = match ranked {
            Some((order, info)) => (Some(order), Some(info)),
            None => (None, None),
        };
        let hits: Option<BTreeSet<PostKey>> = order.as_ref().map(|o| o.iter().copied().collect());
        let by_relevance = order.as_ref().filter(|_| q.sort.is_none());
        let market = &self.views().market;
        let membership = &self.views().membership;
        let bad = |e: ListError| BusError::bad_request(e.to_string());
        let (mut page, offset) = match by_relevance {
            None => (
                market.list_page(&q, hits.as_ref(), now_ms).map_err(bad)?,
                None,
            ),
            Some(_) => {
                let limit = q.limit.unwrap_or(LIST_LIMIT_DEFAULT);
                if limit == 0 || limit > LIST_LIMIT_MAX {
                    return Err(bad(ListError::Limit(limit)));
                }
                let offset = match q.cursor.as_deref() {
                    None => 0,
                    Some(c) => relevance_offset(c)?,
                };
                // Every hit passing the filters in one walk: there are at
                // most SEARCH_LIMIT_MAX (100) of them, under one page's max.
                let all = ListQuery {
                    cursor: None,
                    limit: Some(LIST_LIMIT_MAX),
                    ..q.clone()
                };
                let page = market.list_page(&all, hits.as_ref(), now_ms).map_err(bad)?;
                (page, Some((offset, limit)))
            }
        };
        if let (Some((offset, limit)), Some(order)) = (offset, by_relevance) {
            let place: BTreeMap<PostKey, usize> =
                order.iter().enumerate().map(|(i, k)| (*k, i)).collect();
            page.items
                .sort_by_key(|l| place.get(&l.post.key()).copied().unwrap_or(usize::MAX));
            let end = offset.saturating_add(limit).min(page.items.len());
            page.next_cursor = (end < page.items.len()).then(|| format!("{RELEVANCE_CURSOR}{end}"));
            page.items = page.items.drain(offset.min(end)..end).collect();
        }
        Ok(ListResult {
            posts: page
                .items
                .iter()
                .map(|l| PostView {
                    distance_km: l.distance_km.map(Km::rounded),
                    ..PostView::of(l.post, now_ms, membership)
                })
                .collect(),
            max_lamport: market.max_lamport(),
            next_cursor: page.next_cursor,
            total: page.total,
            facets: page.facets,
            search,
        })
    }

    /// The text match of a listing's `q`: the posts the market's keyword
    /// search finds, best first (at most its own limit,
    /// [`SEARCH_LIMIT_MAX`]). A running node replaces it with its hybrid
    /// search ([`Node::market_list_ranked`]).
    fn list_search(&self, now_ms: u64, text: &str) -> Result<(Vec<PostKey>, ListSearch), BusError> {
        // Keys only: the listing makes the views of its page itself.
        let hits = self
            .keyword_search(now_ms, text, |_| true, SEARCH_LIMIT_MAX)?
            .into_iter()
            .map(|(post, _)| post.key())
            .collect();
        Ok((
            hits,
            ListSearch {
                mode: "keyword".into(),
                degraded: None,
            },
        ))
    }

    /// A post in any state; its `status` says which, as of `now_ms`.
    pub fn market_get(&self, now_ms: u64, p: GetParams) -> Result<PostView, BusError> {
        self.market_enabled()?;
        self.resolve(&p.id, p.author)
            .map(|post| PostView::of(post, now_ms, &self.views().membership))
    }

    /// `market.search`: keyword search (BM25 over title, body and tags,
    /// stemmed German and English, trigrams for compounds; see
    /// `core::search`) over live posts passing the filters, which apply
    /// before ranking. Every post containing the query as a
    /// case-insensitive substring is among the results (up to `limit`).
    pub fn market_search(&self, now_ms: u64, p: SearchParams) -> Result<SearchResult, BusError> {
        let tags: Vec<String> = p.tags.iter().map(|t| t.trim().to_lowercase()).collect();
        if let Some(near) = &p.near {
            near.check()
                .map_err(|e| BusError::bad_request(e.to_string()))?;
        }
        let limit = p
            .limit
            .unwrap_or(SEARCH_LIMIT_DEFAULT)
            .min(SEARCH_LIMIT_MAX);
        let hits = self.keyword_search(now_ms, &p.query, |post| p.admits(&tags, post), limit)?;
        let membership = &self.views().membership;
        Ok(SearchResult {
            mode: "keyword".into(),
            degraded: None,
            results: hits
                .into_iter()
                .map(|(post, score)| SearchHit {
                    post: PostView::of(post, now_ms, membership),
                    score,
                })
                .collect(),
        })
    }

    /// Builds the keyword index now rather than on the first search (which
    /// otherwise pays for indexing every live post): for a node that will
    /// serve searches, once its log is open.
    pub fn warm_search(&self) {
        self.views().market.warm_search();
    }

    /// Keyword search for any caller with its own filter (the HTTP API's
    /// `q`): live posts that `accept` lets through and that match `query`,
    /// best first (ties by post key), at most `limit`, with their scores.
    /// Refuses an empty or over-long query with `bad_request`.
    pub fn keyword_search(
        &self,
        now_ms: u64,
        query: &str,
        accept: impl Fn(&Post) -> bool,
        limit: usize,
    ) -> Result<Vec<(&Post, f32)>, BusError> {
        self.market_enabled()?;
        let chars = query.chars().count();
        if chars > QUERY_CHARS_MAX {
            return Err(BusError::bad_request(format!(
                "query is {chars} characters; at most {QUERY_CHARS_MAX}: search for a few words"
            )));
        }
        if query.trim().is_empty() {
            return Err(BusError::bad_request(
                "query is empty; give a word or two to search for",
            ));
        }
        let market = &self.views().market;
        let wanted = |post: &Post| post.is_live(now_ms) && accept(post);
        let hits = market.with_search(|index| {
            let q = index.query(query);
            index.search(&q, |key| market.get(key).is_some_and(&wanted), limit)
        });
        Ok(hits
            .into_iter()
            .filter_map(|h| market.get(&h.key).map(|post| (post, h.score)))
            .collect())
    }

    /// Marks posts past their TTL as stale, where this node may: its own
    /// posts, or anyone's if it is trusted or an anchor. Returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        if !self.config().market.enabled {
            return 0;
        }
        let me = self.node_id();
        let membership = &self.views().membership;
        if !membership.is_active(&me) {
            return 0;
        }
        let trusted = membership.is_trusted(&me);
        let due: Vec<EventId> = self
            .views()
            .market
            .past_ttl(now_ms)
            .filter(|p| trusted || p.author == me)
            .map(|p| p.id)
            .take(SWEEP_BATCH_MAX)
            .collect();
        let mut done = 0;
        for id in due {
            let payload = Payload::PostExpired(PostExpired {
                target: id,
                reason: ExpiryReason::Stale,
            });
            match self.publish(now_ms, payload) {
                Ok(_) => done += 1,
                Err(e) => {
                    warn!(error = %e, %id, "sweeper could not expire post");
                    break;
                }
            }
        }
        if done > 0 {
            info!(expired = done, "sweeper marked posts stale");
        }
        done
    }
}
