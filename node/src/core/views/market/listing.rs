//! The marketplace listing (`market.list`, `GET /api/posts`): filters,
//! sorts, keyset cursors and facets over the shown posts of
//! [`MarketView`].
//!
//! What it owns: the listing indexes (by `created` key, category, tag,
//! author, location, expiry) and the counts the facets read, kept in step
//! with the shown posts by [`MarketView::list_index`] and
//! [`MarketView::list_unindex`].
//!
//! Order: every sort ends on the post's `created` key, which no update
//! changes, and a cursor is the position of the last post of a page. So
//! walking pages while posts are added returns every post that existed at
//! the first page exactly once (a keyset cursor, not an offset).
//! `newest`/`oldest` order by the `created` key alone, so updates never
//! move a post; `expiring` orders by the effective expiry and `nearest` by
//! distance, which an update can change (docs/decisions.md).
//!
//! Cost: the page is found by walking the smallest index that must hold
//! every match. Facets and `total` count the whole filtered set: for the
//! common filters (categories and at most one tag) from counts kept per
//! tag and category, corrected by the few posts past their TTL that the
//! sweeper has not marked yet; for the rest by walking the smallest
//! candidate set once.
//!
//! `near` uses floats (haversine): it is a question a caller asks, not a
//! rule of the view, so no view state depends on it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

use hearth_proto::{Category, EventHash, EventKey, NodeId};
use serde::{Deserialize, Deserializer, Serialize};

use super::{MarketView, Post, PostKey};

/// A page holds this many posts when the caller gives no limit.
pub const LIST_LIMIT_DEFAULT: usize = 50;
/// And never more than this (a larger limit is refused, not clamped): a
/// page must stay a small answer.
pub const LIST_LIMIT_MAX: usize = 200;
/// The tag facet lists at most this many tags, the most used first: enough
/// for suggestions, and the answer stays small however many tags exist.
pub const TAG_FACETS_MAX: usize = 30;
/// `near`'s radius is at most half the Earth's circumference (anything
/// more is everything anyway).
pub const RADIUS_KM_MAX: f64 = 20_040.0;
/// Mean Earth radius (IUGG), for haversine.
const EARTH_RADIUS_KM: f64 = 6_371.008_8;
/// Version byte of the cursor encoding.
const CURSOR_VERSION: u8 = 1;

/// A shown post in the listing's stable order: its `created` key, then
/// its name (the key alone is unique; the name finds the post).
pub(super) type CreatedKey = (EventKey, PostKey);

/// One tag's posts and the counts the facets read, kept as posts enter and
/// leave the shown set.
#[derive(Debug, Clone, Default)]
pub(super) struct TagIndex {
    pub(super) posts: BTreeSet<CreatedKey>,
    /// Shown posts with this tag, by category ([`cat_slot`]).
    by_category: [u64; 4],
    /// Shown posts with this tag and another, by the other tag and category.
    with: BTreeMap<String, [u64; 4]>,
}

fn cat_slot(c: Category) -> usize {
    match c {
        Category::Offer => 0,
        Category::Request => 1,
        Category::Info => 2,
        Category::Emergency => 3,
    }
}

/// How a listing is ordered.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Newest `created` first.
    #[default]
    Newest,
    /// Oldest `created` first.
    Oldest,
    /// Soonest effective expiry first.
    Expiring,
    /// Closest to `near` first (needs `near`).
    Nearest,
}

impl Sort {
    fn slot(self) -> u8 {
        match self {
            Sort::Newest => 0,
            Sort::Oldest => 1,
            Sort::Expiring => 2,
            Sort::Nearest => 3,
        }
    }

    fn of_slot(b: u8) -> Option<Sort> {
        [Sort::Newest, Sort::Oldest, Sort::Expiring, Sort::Nearest]
            .into_iter()
            .find(|s| s.slot() == b)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Expiring => "expiring",
            Sort::Nearest => "nearest",
        }
    }
}

/// A circle on the Earth, in decimal degrees and kilometres.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Near {
    pub lat: f64,
    pub lng: f64,
    pub radius_km: f64,
}

/// Query for [`MarketView::list_page`] (and `market.list`).
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Posts in any of these categories (one, or a list).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub category: Vec<Category>,
    /// Posts must carry every one of these tags (one, or a list).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// Only this author's posts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<NodeId>,
    /// Only posts whose shown content is newer than this Lamport time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_lamport: Option<u64>,
    /// `newest` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<Sort>,
    /// Only posts with a location within the circle; results carry
    /// `distance_km`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<Near>,
    /// The market's search (answered by the service, not the view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// 1 to [`LIST_LIMIT_MAX`]; [`LIST_LIMIT_DEFAULT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One value or a list of them (`"category": "offer"` or `["offer", ...]`).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

/// Why a listing query was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ListError {
    #[error("limit must be 1 to {LIST_LIMIT_MAX}, got {0}; ask for more pages with next_cursor")]
    Limit(usize),
    #[error("cursor is not one this node gave out ({0}); drop it to start from the first page")]
    Cursor(&'static str),
    #[error(
        "cursor belongs to sort={cursor}, not sort={asked}; keep the sort while paging, or drop the cursor"
    )]
    CursorSort {
        cursor: &'static str,
        asked: &'static str,
    },
    #[error("near: {0}")]
    Near(String),
    #[error("sort=nearest needs near=LAT,LNG and radius_km")]
    NearestWithoutNear,
}

/// Counts over the whole filtered set, not just the page.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    /// Every category, zero included.
    pub category: BTreeMap<Category, u64>,
    /// At most [`TAG_FACETS_MAX`] tags, the most used first (ties by name).
    pub tags: Vec<TagCount>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCount {
    pub tag: String,
    pub count: u64,
}

/// A post of a page, with its distance when the query had `near`.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed<'a> {
    pub post: &'a Post,
    pub distance_km: Option<f64>,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage<'a> {
    pub items: Vec<Listed<'a>>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
    /// Posts in the whole filtered set.
    pub total: u64,
    pub facets: Facets,
}

/// A post's place in a sort: `primary` (0, the expiry, or the distance's
/// bits), then the `created` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    primary: u64,
    created: EventKey,
}

impl Pos {
    fn of(sort: Sort, post: &Post, distance_km: Option<f64>) -> Pos {
        let primary = match sort {
            Sort::Newest | Sort::Oldest => 0,
            Sort::Expiring => post.expires_at,
            // Non-negative floats order as their bits do.
            Sort::Nearest => distance_km.unwrap_or(f64::MAX).to_bits(),
        };
        Pos {
            primary,
            created: post.created,
        }
    }

    /// Listing order under `sort`: `Less` comes first.
    fn cmp_in(&self, other: &Pos, sort: Sort) -> Ordering {
        match sort {
            Sort::Newest => other.created.cmp(&self.created),
            Sort::Oldest => self.created.cmp(&other.created),
            Sort::Expiring | Sort::Nearest => {
                (self.primary, self.created).cmp(&(other.primary, other.created))
            }
        }
    }

    fn encode(&self, sort: Sort) -> String {
        let mut b = Vec::with_capacity(50);
        b.push(CURSOR_VERSION);
        b.push(sort.slot());
        b.extend_from_slice(&self.primary.to_be_bytes());
        b.extend_from_slice(&self.created.to_bytes());
        hex::encode(b)
    }

    fn decode(s: &str, sort: Sort) -> Result<Pos, ListError> {
        let b = hex::decode(s).map_err(|_| ListError::Cursor("not hex"))?;
        if b.len() != 50 || b[0] != CURSOR_VERSION {
            return Err(ListError::Cursor("wrong length or version"));
        }
        let made_for = Sort::of_slot(b[1]).ok_or(ListError::Cursor("unknown sort"))?;
        if made_for != sort {
            return Err(ListError::CursorSort {
                cursor: made_for.as_str(),
                asked: sort.as_str(),
            });
        }
        let mut primary = [0u8; 8];
        primary.copy_from_slice(&b[2..10]);
        let created = EventKey::from_bytes(&b[10..]).ok_or(ListError::Cursor("bad event key"))?;
        Ok(Pos {
            primary: u64::from_be_bytes(primary),
            created,
        })
    }
}

/// Great-circle distance in km between two points in decimal degrees.
pub fn haversine_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.clamp(0.0, 1.0).sqrt().asin()
}

impl Near {
    pub fn check(&self) -> Result<(), ListError> {
        if !self.lat.is_finite() || !(-90.0..=90.0).contains(&self.lat) {
            return Err(ListError::Near(format!(
                "latitude {} is not a number from -90 to 90 (decimal degrees)",
                self.lat
            )));
        }
        if !self.lng.is_finite() || !(-180.0..=180.0).contains(&self.lng) {
            return Err(ListError::Near(format!(
                "longitude {} is not a number from -180 to 180 (decimal degrees)",
                self.lng
            )));
        }
        if !self.radius_km.is_finite() || self.radius_km <= 0.0 || self.radius_km > RADIUS_KM_MAX {
            return Err(ListError::Near(format!(
                "radius_km {} must be above 0 and at most {RADIUS_KM_MAX}",
                self.radius_km
            )));
        }
        Ok(())
    }

    /// The post's distance when it has a location inside the circle.
    fn distance(&self, post: &Post) -> Option<f64> {
        let l = post.content.location.as_ref()?;
        // Locations are microdegrees on the wire (i64, well inside f64's
        // exact range).
        let d = haversine_km(self.lat, self.lng, l.lat as f64 / 1e6, l.lng as f64 / 1e6);
        (d <= self.radius_km).then_some(d)
    }
}

/// A checked query: what the walk needs.
#[derive(Debug)]
struct Plan<'q> {
    cats: &'q [Category],
    tags: &'q [String],
    author: Option<NodeId>,
    since: Option<u64>,
    near: Option<Near>,
    sort: Sort,
    after: Option<Pos>,
    limit: usize,
}

impl Plan<'_> {
    /// Every filter but `near` (whose distance the caller computes).
    fn admits(&self, p: &Post, now_ms: u64) -> bool {
        p.is_live(now_ms)
            && (self.cats.is_empty() || self.cats.contains(&p.content.category))
            && self.tags.iter().all(|t| p.content.tags.contains(t))
            && self.author.is_none_or(|a| p.author == a)
            && self.since.is_none_or(|s| p.content_event.lamport > s)
    }

    /// `Some(distance)` (`None` inside when `near` is not set) if `p`
    /// matches the whole query.
    fn matches(&self, p: &Post, now_ms: u64) -> Option<Option<f64>> {
        if !self.admits(p, now_ms) {
            return None;
        }
        match &self.near {
            None => Some(None),
            Some(n) => n.distance(p).map(Some),
        }
    }

    fn is_after(&self, pos: &Pos) -> bool {
        self.after
            .is_none_or(|a| pos.cmp_in(&a, self.sort) == Ordering::Greater)
    }

    /// Counts kept per tag and category answer the facets exactly.
    fn counts_answer(&self, hits: Option<&BTreeSet<PostKey>>) -> bool {
        hits.is_none()
            && self.author.is_none()
            && self.since.is_none()
            && self.near.is_none()
            && self.tags.len() <= 1
    }
}

impl MarketView {
    /// Adds a shown post to the listing indexes and counts.
    pub(super) fn list_index(&mut self, post: &Post) {
        let k = (post.created, post.key());
        self.by_created.insert(k);
        self.by_category
            .entry(post.content.category)
            .or_default()
            .insert(k);
        self.by_author.entry(post.author).or_default().insert(k);
        if post.content.location.is_some() {
            self.located.insert(k);
        }
        self.by_expiry.insert((post.expires_at, k));
        let slot = cat_slot(post.content.category);
        let tags = &post.content.tags;
        for t in tags {
            let ti = self.by_tag.entry(t.clone()).or_default();
            ti.posts.insert(k);
            ti.by_category[slot] += 1;
            for other in tags.iter().filter(|o| *o != t) {
                match ti.with.get_mut(other) {
                    Some(c) => c[slot] += 1,
                    None => {
                        let mut c = [0; 4];
                        c[slot] = 1;
                        ti.with.insert(other.clone(), c);
                    }
                }
            }
        }
    }

    /// Removes a post from the listing indexes and counts (a no-op for a
    /// post that was not shown).
    pub(super) fn list_unindex(&mut self, post: &Post) {
        let k = (post.created, post.key());
        if !self.by_created.remove(&k) {
            return;
        }
        if let Some(set) = self.by_category.get_mut(&post.content.category) {
            set.remove(&k);
        }
        if let Some(set) = self.by_author.get_mut(&post.author) {
            set.remove(&k);
            if set.is_empty() {
                self.by_author.remove(&post.author);
            }
        }
        self.located.remove(&k);
        self.by_expiry.remove(&(post.expires_at, k));
        let slot = cat_slot(post.content.category);
        let tags = &post.content.tags;
        for t in tags {
            let Some(ti) = self.by_tag.get_mut(t) else {
                continue;
            };
            ti.posts.remove(&k);
            ti.by_category[slot] = ti.by_category[slot].saturating_sub(1);
            for other in tags.iter().filter(|o| *o != t) {
                if let Some(c) = ti.with.get_mut(other) {
                    c[slot] = c[slot].saturating_sub(1);
                    if *c == [0; 4] {
                        ti.with.remove(other);
                    }
                }
            }
            if ti.posts.is_empty() {
                self.by_tag.remove(t);
            }
        }
    }

    /// Builds the listing indexes from scratch (after a full replay): from
    /// vectors, each collected into its set in one bulk build rather than
    /// one ordered insert per post.
    pub(super) fn build_list_indexes(&mut self, posts: &BTreeMap<PostKey, Post>) {
        let shown = || posts.values().filter(|p| p.is_shown());
        let key = |p: &Post| (p.created, p.key());
        let mut by_category: BTreeMap<Category, Vec<CreatedKey>> = BTreeMap::new();
        let mut by_author: BTreeMap<NodeId, Vec<CreatedKey>> = BTreeMap::new();
        let mut by_tag: BTreeMap<String, (Vec<CreatedKey>, TagIndex)> = BTreeMap::new();
        for p in shown() {
            let k = key(p);
            by_category.entry(p.content.category).or_default().push(k);
            by_author.entry(p.author).or_default().push(k);
            let slot = cat_slot(p.content.category);
            for t in &p.content.tags {
                let (keys, ti) = by_tag.entry(t.clone()).or_default();
                keys.push(k);
                ti.by_category[slot] += 1;
                for other in p.content.tags.iter().filter(|o| *o != t) {
                    match ti.with.get_mut(other) {
                        Some(c) => c[slot] += 1,
                        None => {
                            let mut c = [0; 4];
                            c[slot] = 1;
                            ti.with.insert(other.clone(), c);
                        }
                    }
                }
            }
        }
        self.by_created = shown().map(key).collect();
        self.located = shown()
            .filter(|p| p.content.location.is_some())
            .map(key)
            .collect();
        self.by_expiry = shown().map(|p| (p.expires_at, key(p))).collect();
        self.by_category = by_category
            .into_iter()
            .map(|(c, v)| (c, v.into_iter().collect()))
            .collect();
        self.by_author = by_author
            .into_iter()
            .map(|(a, v)| (a, v.into_iter().collect()))
            .collect();
        self.by_tag = by_tag
            .into_iter()
            .map(|(t, (keys, mut ti))| {
                ti.posts = keys.into_iter().collect();
                (t, ti)
            })
            .collect();
    }

    /// Live posts matching `query`, first page only: a convenience for
    /// callers that want the posts alone. An invalid query (limit, cursor,
    /// near) lists nothing; [`MarketView::list_page`] says why.
    pub fn list(&self, query: &ListQuery, now_ms: u64) -> Vec<&Post> {
        self.list_page(query, None, now_ms)
            .map(|p| p.items.into_iter().map(|l| l.post).collect())
            .unwrap_or_default()
    }

    /// One page of the live posts matching `query`, with `total` and the
    /// facets of the whole filtered set. `hits`, when given, restricts the
    /// set to those posts (the service's answer to `q`). Tags must already
    /// be normalised (lowercase, trimmed).
    pub fn list_page<'a>(
        &'a self,
        query: &ListQuery,
        hits: Option<&BTreeSet<PostKey>>,
        now_ms: u64,
    ) -> Result<ListPage<'a>, ListError> {
        let limit = query.limit.unwrap_or(LIST_LIMIT_DEFAULT);
        if limit == 0 || limit > LIST_LIMIT_MAX {
            return Err(ListError::Limit(limit));
        }
        if let Some(n) = &query.near {
            n.check()?;
        }
        let sort = query.sort.unwrap_or_default();
        if sort == Sort::Nearest && query.near.is_none() {
            return Err(ListError::NearestWithoutNear);
        }
        let after = query
            .cursor
            .as_deref()
            .map(|c| Pos::decode(c, sort))
            .transpose()?;
        let plan = Plan {
            cats: &query.category,
            tags: &query.tags,
            author: query.author,
            since: query.since_lamport,
            near: query.near,
            sort,
            after,
            limit,
        };
        if plan.counts_answer(hits) {
            let (total, facets) = self.counted_facets(&plan, now_ms);
            let (items, more) = self.walk_page(&plan, now_ms);
            return Ok(page(&plan, items, more, total, facets));
        }
        // Collect the whole filtered set once: facets need it anyway.
        let mut all: Vec<Listed<'_>> = Vec::new();
        self.for_each_candidate(&plan, hits, |p| {
            if let Some(distance_km) = plan.matches(p, now_ms) {
                all.push(Listed {
                    post: p,
                    distance_km,
                });
            }
        });
        let total = all.len() as u64;
        let facets = facets_of(all.iter().map(|l| l.post));
        let mut rest: Vec<(Pos, Listed<'_>)> = all
            .into_iter()
            .map(|l| (Pos::of(sort, l.post, l.distance_km), l))
            .filter(|(pos, _)| plan.is_after(pos))
            .collect();
        let more = rest.len() > limit;
        if more {
            rest.select_nth_unstable_by(limit, |a, b| a.0.cmp_in(&b.0, sort));
            rest.truncate(limit);
        }
        rest.sort_unstable_by(|a, b| a.0.cmp_in(&b.0, sort));
        Ok(page(
            &plan,
            rest.into_iter().map(|(_, l)| l).collect(),
            more,
            total,
            facets,
        ))
    }

    /// Calls `f` on every post of the smallest set that must hold every
    /// match (each post once; `f` still checks every filter).
    fn for_each_candidate<'a: 's, 's>(
        &'a self,
        plan: &'s Plan<'s>,
        hits: Option<&'s BTreeSet<PostKey>>,
        mut f: impl FnMut(&'a Post),
    ) {
        let empty = &EMPTY;
        // (size, source): the smallest wins.
        let mut best: Option<(usize, Source<'s>)> = None;
        let mut consider = |n: usize, s: Source<'s>| {
            if best.as_ref().is_none_or(|(m, _)| n < *m) {
                best = Some((n, s));
            }
        };
        if let Some(h) = hits {
            consider(h.len(), Source::Names(h));
        }
        if let Some(a) = plan.author {
            let set = self.by_author.get(&a).unwrap_or(empty);
            consider(set.len(), Source::Keys(set));
        }
        for t in plan.tags {
            let set = self.by_tag.get(t).map(|ti| &ti.posts).unwrap_or(empty);
            consider(set.len(), Source::Keys(set));
        }
        if !plan.cats.is_empty() {
            let n = self.category_sizes(plan.cats);
            consider(n, Source::Categories(plan.cats));
        }
        if plan.near.is_some() {
            consider(self.located.len(), Source::Keys(&self.located));
        }
        let source = match best {
            Some((_, s)) => s,
            // `since` alone: the newest-content index down to it.
            None if plan.since.is_some() => Source::Since,
            None => Source::Keys(&self.by_created),
        };
        let get = |name: &PostKey| self.posts.get(name);
        match source {
            Source::Names(h) => h.iter().filter_map(get).for_each(f),
            Source::Keys(set) => set.iter().filter_map(|(_, n)| get(n)).for_each(f),
            Source::Categories(cats) => {
                let mut seen: Vec<Category> = Vec::new();
                for c in cats {
                    if seen.contains(c) {
                        continue;
                    }
                    seen.push(*c);
                    if let Some(set) = self.by_category.get(c) {
                        set.iter().filter_map(|(_, n)| get(n)).for_each(&mut f);
                    }
                }
            }
            Source::Since => {
                let since = plan.since.unwrap_or(0);
                self.by_lamport
                    .iter()
                    .take_while(|(std::cmp::Reverse(k), _)| k.lamport > since)
                    .filter_map(|(_, n)| get(n))
                    .for_each(f);
            }
        }
    }

    fn category_sizes(&self, cats: &[Category]) -> usize {
        let mut seen: Vec<Category> = Vec::new();
        let mut n = 0;
        for c in cats {
            if !seen.contains(c) {
                seen.push(*c);
                n += self.by_category.get(c).map_or(0, BTreeSet::len);
            }
        }
        n
    }

    /// `total` and facets from the kept counts (categories and at most one
    /// tag), less the shown posts past their TTL that match.
    fn counted_facets(&self, plan: &Plan<'_>, now_ms: u64) -> (u64, Facets) {
        let in_cats =
            |slot: usize| plan.cats.is_empty() || plan.cats.iter().any(|c| cat_slot(*c) == slot);
        let mut cat = [0u64; 4];
        let mut tags: BTreeMap<&str, u64> = BTreeMap::new();
        match plan.tags.first() {
            None => {
                for c in Category::ALL {
                    if in_cats(cat_slot(c)) {
                        cat[cat_slot(c)] = self.by_category.get(&c).map_or(0, |s| s.len() as u64);
                    }
                }
                for (t, ti) in &self.by_tag {
                    let n: u64 = (0..4)
                        .filter(|s| in_cats(*s))
                        .map(|s| ti.by_category[s])
                        .sum();
                    if n > 0 {
                        tags.insert(t, n);
                    }
                }
            }
            Some(t0) => {
                if let Some(ti) = self.by_tag.get(t0) {
                    for s in (0..4).filter(|s| in_cats(*s)) {
                        cat[s] = ti.by_category[s];
                    }
                    let own: u64 = cat.iter().sum();
                    if own > 0 {
                        tags.insert(t0, own);
                    }
                    for (t, c) in &ti.with {
                        let n: u64 = (0..4).filter(|s| in_cats(*s)).map(|s| c[s]).sum();
                        if n > 0 {
                            tags.insert(t, n);
                        }
                    }
                }
            }
        }
        // Shown but past their TTL: counted above, not live.
        for (_, (_, name)) in self.by_expiry.iter().take_while(|(e, _)| *e <= now_ms) {
            let Some(p) = self.posts.get(name) else {
                continue;
            };
            let c = &p.content;
            if !in_cats(cat_slot(c.category)) || !plan.tags.iter().all(|t| c.tags.contains(t)) {
                continue;
            }
            let slot = cat_slot(c.category);
            cat[slot] = cat[slot].saturating_sub(1);
            for t in &c.tags {
                if let Some(n) = tags.get_mut(t.as_str()) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        let total = cat.iter().sum();
        let facets = Facets {
            category: Category::ALL
                .into_iter()
                .map(|c| (c, cat[cat_slot(c)]))
                .collect(),
            tags: top_tags(tags),
        };
        (total, facets)
    }

    /// The page of a query the counts answer (categories, at most one
    /// tag): by walking one index in the sort's order from the cursor, or,
    /// for `expiring` with a small candidate set, by sorting that set.
    /// Returns the page and whether more follow.
    fn walk_page(&self, plan: &Plan<'_>, now_ms: u64) -> (Vec<Listed<'_>>, bool) {
        // The smallest index that holds every match, in created order.
        let mut set = &self.by_created;
        if let [c] = plan.cats {
            set = self.by_category.get(c).unwrap_or(&EMPTY);
        }
        if let Some(t) = plan.tags.first() {
            let ts = self.by_tag.get(t).map(|ti| &ti.posts).unwrap_or(&EMPTY);
            if ts.len() < set.len() {
                set = ts;
            }
        }
        let get = |(_, name): &CreatedKey| self.posts.get(name);
        let admitted = |p: &&Post| plan.admits(p, now_ms);
        let posts: Vec<&Post> = match plan.sort {
            Sort::Newest | Sort::Oldest => {
                let range = match (plan.after, plan.sort) {
                    (None, _) => set.range(..),
                    (Some(a), Sort::Newest) => set.range(..(a.created, NAME_MIN)),
                    (Some(a), _) => set.range((Excluded((a.created, NAME_MAX)), Unbounded)),
                };
                if plan.sort == Sort::Newest {
                    range
                        .rev()
                        .filter_map(get)
                        .filter(admitted)
                        .take(plan.limit + 1)
                        .collect()
                } else {
                    range
                        .filter_map(get)
                        .filter(admitted)
                        .take(plan.limit + 1)
                        .collect()
                }
            }
            // Walking the expiry index visits about limit * all / matches
            // posts; sorting the candidates costs their number. Pick the
            // cheaper (compared squared to stay in integers).
            _ if set.len().saturating_mul(set.len())
                < plan.limit.saturating_mul(self.by_created.len()) =>
            {
                let mut v: Vec<(Pos, &Post)> = set
                    .iter()
                    .filter_map(get)
                    .filter(admitted)
                    .map(|p| (Pos::of(plan.sort, p, None), p))
                    .filter(|(pos, _)| plan.is_after(pos))
                    .collect();
                if v.len() > plan.limit + 1 {
                    v.select_nth_unstable_by(plan.limit + 1, |a, b| a.0.cmp_in(&b.0, plan.sort));
                    v.truncate(plan.limit + 1);
                }
                v.sort_unstable_by(|a, b| a.0.cmp_in(&b.0, plan.sort));
                v.into_iter().map(|(_, p)| p).collect()
            }
            // `expiring` (`nearest` always has `near`, so never comes here).
            _ => {
                // Past-TTL posts are not live: start after `now`.
                let from = match plan.after {
                    Some(a) if a.primary > now_ms => (a.primary, (a.created, NAME_MAX)),
                    _ => (now_ms, (KEY_MAX, NAME_MAX)),
                };
                self.by_expiry
                    .range((Excluded(from), Unbounded))
                    .map(|(_, k)| k)
                    .filter_map(get)
                    .filter(admitted)
                    .take(plan.limit + 1)
                    .collect()
            }
        };
        let more = posts.len() > plan.limit;
        let items = posts
            .into_iter()
            .take(plan.limit)
            .map(|post| Listed {
                post,
                distance_km: None,
            })
            .collect();
        (items, more)
    }
}

static EMPTY: BTreeSet<CreatedKey> = BTreeSet::new();
/// The lowest and highest names and keys, for range bounds.
const NAME_MIN: PostKey = PostKey {
    author: NodeId([0; 32]),
    id: ulid::Ulid(0),
};
const NAME_MAX: PostKey = PostKey {
    author: NodeId([0xff; 32]),
    id: ulid::Ulid(u128::MAX),
};
const KEY_MAX: EventKey = EventKey {
    lamport: u64::MAX,
    hash: EventHash([0xff; 32]),
};

/// Where the candidates of a filtered walk come from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Names(&'a BTreeSet<PostKey>),
    Keys(&'a BTreeSet<CreatedKey>),
    Categories(&'a [Category]),
    Since,
}

fn page<'a>(
    plan: &Plan<'_>,
    items: Vec<Listed<'a>>,
    more: bool,
    total: u64,
    facets: Facets,
) -> ListPage<'a> {
    let next_cursor = if more {
        items
            .last()
            .map(|l| Pos::of(plan.sort, l.post, l.distance_km).encode(plan.sort))
    } else {
        None
    };
    ListPage {
        items,
        next_cursor,
        total,
        facets,
    }
}

/// Facets by counting `posts`.
fn facets_of<'a>(posts: impl Iterator<Item = &'a Post>) -> Facets {
    let mut cat = [0u64; 4];
    let mut tags: BTreeMap<&str, u64> = BTreeMap::new();
    for p in posts {
        cat[cat_slot(p.content.category)] += 1;
        for t in &p.content.tags {
            *tags.entry(t.as_str()).or_default() += 1;
        }
    }
    Facets {
        category: Category::ALL
            .into_iter()
            .map(|c| (c, cat[cat_slot(c)]))
            .collect(),
        tags: top_tags(tags),
    }
}

/// The [`TAG_FACETS_MAX`] most used tags, ties by name.
fn top_tags(counts: BTreeMap<&str, u64>) -> Vec<TagCount> {
    let mut v: Vec<(&str, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(TAG_FACETS_MAX);
    v.into_iter()
        .map(|(tag, count)| TagCount {
            tag: tag.to_owned(),
            count,
        })
        .collect()
}
