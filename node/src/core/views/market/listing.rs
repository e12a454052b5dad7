//! The marketplace listing (`market.list`, `GET /api/posts`): filters,
//! sorts, keyset cursors and facets over the shown posts of
//! [`MarketView`].
//!
//! What it owns: the listing indexes (by `created` key, category, tag,
//! author, location, expiry) of the shown posts and the counts the facets
//! read ([`LiveCounts`]), of the posts live at a time that each query
//! moves to its `now`: together [`ListIndexes`], built on the view's first
//! listing and kept in step with the shown posts after it.
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
//! common filters (categories with at most one of a tag, an author,
//! `since_lamport` or `near`) from counts of the live posts kept per tag,
//! author, Lamport bucket and grid cell; for the rest by walking the
//! smallest candidate set once.
//!
//! `near` uses floats (haversine): it is a question a caller asks, not a
//! rule of the view, so no view state depends on it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::sync::{Mutex, MutexGuard, PoisonError};

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

/// One tag's shown posts, in created order, each with its category slot
/// ([`cat_slot`]): a walk of a tag and a category skips the posts of other
/// categories without looking them up. (The counts the facets read are in
/// [`LiveCounts::by_tag`].)
#[derive(Debug, Clone, Default)]
pub(super) struct TagIndex {
    pub(super) posts: BTreeMap<CreatedKey, u8>,
}

/// One tag's live posts counted: by category, and by the other tags they
/// carry (what the facets of a one-tag filter read).
#[derive(Debug, Clone, Default)]
struct TagCounts {
    /// Live posts with this tag, by category ([`cat_slot`]).
    by_category: [u64; 4],
    /// Live posts with this tag and another, by the other tag and category.
    with: BTreeMap<String, [u64; 4]>,
}

impl TagCounts {
    fn is_empty(&self) -> bool {
        self.by_category == [0; 4]
    }
}

fn cat_slot(c: Category) -> usize {
    match c {
        Category::Offer => 0,
        Category::Request => 1,
        Category::Info => 2,
        Category::Emergency => 3,
    }
}

/// Facet counts of a group of live posts (one author's, one Lamport
/// bucket's): per category, and per tag by category. Entries that reach
/// zero are removed, so a group holds only what it counts.
#[derive(Debug, Clone, Default)]
pub(super) struct Counts {
    cat: [u64; 4],
    tags: BTreeMap<String, [u64; 4]>,
}

/// Counts one more post of category `slot` under `tag`. Looks the tag up
/// before inserting, so a tag already counted is not cloned: the live
/// counts move on every post that expires or arrives.
fn count_tag(map: &mut BTreeMap<String, [u64; 4]>, tag: &str, slot: usize) {
    match map.get_mut(tag) {
        Some(c) => c[slot] += 1,
        None => {
            let mut c = [0; 4];
            c[slot] = 1;
            map.insert(tag.to_owned(), c);
        }
    }
}

impl Counts {
    fn add(&mut self, post: &Post) {
        let slot = cat_slot(post.content.category);
        self.cat[slot] += 1;
        for t in &post.content.tags {
            count_tag(&mut self.tags, t, slot);
        }
    }

    fn sub(&mut self, post: &Post) {
        let slot = cat_slot(post.content.category);
        self.cat[slot] = self.cat[slot].saturating_sub(1);
        for t in &post.content.tags {
            if let Some(c) = self.tags.get_mut(t) {
                c[slot] = c[slot].saturating_sub(1);
                if *c == [0; 4] {
                    self.tags.remove(t);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.cat == [0; 4]
    }
}

/// Lamport buckets of the `since_lamport` counts, one level per shift:
/// buckets of 2^6 Lamport times inside buckets of 2^10, inside 2^14,
/// inside 2^18 (the last level unbounded). A query walks the posts of
/// `since`'s own smallest bucket above it (at most 64 Lamport times), then
/// at each level sums the buckets above `since`'s inside its bucket of the
/// next level (at most 15 each), and at the last level every bucket above
/// it: at 1M events about 30 sums and a few dozen posts, not 500k posts.
/// Smaller buckets walk fewer posts (each a lookup by name) but keep more
/// counts: 64 Lamport times keeps one group per ~64 posts.
const SINCE_SHIFTS: [u32; 4] = [6, 10, 14, 18];

/// The counts the facets and `total` read, of the shown posts that are
/// live at [`LiveCounts::at`] (effective expiry after it): overall, per
/// tag, per author, per Lamport bucket and per location-grid cell.
///
/// Why "live at a time" and not "shown": a listing counts live posts, and
/// subtracting the shown posts past their TTL on every query cost a post
/// lookup each (~3,200 at 100k posts when no sweeper runs: 2-3 ms).
/// Instead the counts follow the clock: a query at `now`
/// first moves them from `at` to `now`, removing the posts whose expiry
/// lies in `(at, now]` (or adding them back when `now` is earlier), so
/// each post leaves the counts once as time passes. The result is the
/// same function of the shown posts and `now` whatever time the counts
/// were at before: `at` is a cache position, not state a rule reads.
///
/// The counts are made on the first listing (a view that is never listed,
/// like the simulator's, never makes them), then kept in step with the
/// shown posts.
#[derive(Debug, Clone, Default)]
pub(super) struct LiveCounts {
    /// The counts are of the shown posts with effective expiry after this;
    /// `None`: not made yet, or a move between times did not finish (a
    /// panic part way): the next listing counts from scratch.
    at: Option<u64>,
    /// All live posts, by category.
    cat: [u64; 4],
    /// Per tag (a one-tag filter, and the tag facets of no filter).
    by_tag: BTreeMap<String, TagCounts>,
    /// Per author (`author` alone).
    by_author: BTreeMap<NodeId, Counts>,
    /// By content Lamport time >> each of [`SINCE_SHIFTS`].
    since: [BTreeMap<u64, Counts>; SINCE_SHIFTS.len()],
    /// Per location-grid cell ([`Grid`]), tags by [`Grid::tag_ids`].
    cells: BTreeMap<(i64, i64), CellCounts>,
    /// Per block of [`BLOCK`] x [`BLOCK`] cells (keyed by the cell key
    /// divided by [`BLOCK`]): a circle adds a block wholly inside it in
    /// one sum instead of sixteen.
    blocks: BTreeMap<(i64, i64), CellCounts>,
}

/// Side of a block of grid cells, in cells (0.008°: ~890 m by ~540 m at
/// 50°N). A `near` circle of 3 km holds ~40 whole blocks, whose ~640 cells
/// would otherwise each be a sum; larger blocks would fit whole in fewer
/// circles, smaller ones save less.
const BLOCK: i64 = 4;

fn block_of(cell: (i64, i64)) -> (i64, i64) {
    (cell.0.div_euclid(BLOCK), cell.1.div_euclid(BLOCK))
}

/// One grid cell's (or block's) live posts counted.
#[derive(Debug, Clone, Default)]
struct CellCounts {
    cat: [u64; 4],
    /// By tag id, then category slot.
    tags: BTreeMap<u32, [u64; 4]>,
}

impl CellCounts {
    fn add(&mut self, slot: usize, ids: &[u32]) {
        self.cat[slot] += 1;
        for id in ids {
            self.tags.entry(*id).or_default()[slot] += 1;
        }
    }

    fn sub(&mut self, slot: usize, ids: &[u32]) {
        self.cat[slot] = self.cat[slot].saturating_sub(1);
        for id in ids {
            if let Some(c) = self.tags.get_mut(id) {
                c[slot] = c[slot].saturating_sub(1);
                if *c == [0; 4] {
                    self.tags.remove(id);
                }
            }
        }
    }
}

/// Counts `(slot, ids)` into the entry `k` of `map`.
fn count_in(map: &mut BTreeMap<(i64, i64), CellCounts>, k: (i64, i64), slot: usize, ids: &[u32]) {
    map.entry(k).or_default().add(slot, ids);
}

/// Uncounts `(slot, ids)` from the entry `k` of `map`, removing it once
/// it counts nothing.
fn uncount_in(map: &mut BTreeMap<(i64, i64), CellCounts>, k: (i64, i64), slot: usize, ids: &[u32]) {
    if let Some(c) = map.get_mut(&k) {
        c.sub(slot, ids);
        if c.cat == [0; 4] {
            map.remove(&k);
        }
    }
}

impl LiveCounts {
    /// Counts a post live at `at`. Its tags must be in `grid`'s table if
    /// it has a location ([`Grid::add`] comes first).
    fn add(&mut self, post: &Post, grid: &Grid) {
        let slot = cat_slot(post.content.category);
        self.cat[slot] += 1;
        let tags = &post.content.tags;
        for t in tags {
            let tc = match self.by_tag.get_mut(t) {
                Some(tc) => tc,
                None => self.by_tag.entry(t.clone()).or_default(),
            };
            tc.by_category[slot] += 1;
            for other in tags.iter().filter(|o| *o != t) {
                count_tag(&mut tc.with, other, slot);
            }
        }
        let l = post.content_event.lamport;
        self.by_author.entry(post.author).or_default().add(post);
        for (level, shift) in self.since.iter_mut().zip(SINCE_SHIFTS) {
            level.entry(l >> shift).or_default().add(post);
        }
        if let Some(loc) = &post.content.location {
            let ids = grid.ids_of(tags);
            let cell = cell_of(loc.lat, loc.lng);
            count_in(&mut self.cells, cell, slot, &ids);
            count_in(&mut self.blocks, block_of(cell), slot, &ids);
        }
    }

    /// Uncounts a post [`LiveCounts::add`] counted (the same content).
    fn sub(&mut self, post: &Post, grid: &Grid) {
        fn sub_in<K: Ord>(map: &mut BTreeMap<K, Counts>, k: K, post: &Post) {
            if let Some(c) = map.get_mut(&k) {
                c.sub(post);
                if c.is_empty() {
                    map.remove(&k);
                }
            }
        }
        let slot = cat_slot(post.content.category);
        self.cat[slot] = self.cat[slot].saturating_sub(1);
        let tags = &post.content.tags;
        for t in tags {
            let Some(tc) = self.by_tag.get_mut(t) else {
                continue;
            };
            tc.by_category[slot] = tc.by_category[slot].saturating_sub(1);
            for other in tags.iter().filter(|o| *o != t) {
                if let Some(c) = tc.with.get_mut(other) {
                    c[slot] = c[slot].saturating_sub(1);
                    if *c == [0; 4] {
                        tc.with.remove(other);
                    }
                }
            }
            if tc.is_empty() {
                self.by_tag.remove(t);
            }
        }
        let l = post.content_event.lamport;
        sub_in(&mut self.by_author, post.author, post);
        for (level, shift) in self.since.iter_mut().zip(SINCE_SHIFTS) {
            sub_in(level, l >> shift, post);
        }
        if let Some(loc) = &post.content.location {
            let ids = grid.ids_of(tags);
            let cell = cell_of(loc.lat, loc.lng);
            uncount_in(&mut self.cells, cell, slot, &ids);
            uncount_in(&mut self.blocks, block_of(cell), slot, &ids);
        }
    }
}

/// The listing's location grid and its live counts.
#[derive(Debug, Default)]
pub(super) struct ListCounts {
    grid: Grid,
    /// Behind a lock because a query (`&self`) moves them to its `now`
    /// ([`MarketView::live_at`]); queries come one at a time from the
    /// node's driver, so it is never contended.
    live: Mutex<LiveCounts>,
}

impl Clone for ListCounts {
    fn clone(&self) -> Self {
        ListCounts {
            grid: self.grid.clone(),
            live: Mutex::new(
                self.live
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            ),
        }
    }
}

/// Side of a cell of the location grid, in microdegrees (0.002°: ~220 m
/// north-south, ~140 m east-west at 50°N). A `near` circle of a few km
/// covers hundreds of cells: those wholly inside add their counts, those
/// wholly outside are skipped, and only the posts of the cells on its edge
/// are measured one by one.
const CELL_UDEG: i64 = 2_000;
/// The grid answers circles up to this radius; wider ones (a question
/// about a whole region) walk every located post.
const GRID_RADIUS_KM_MAX: f64 = 50.0;
/// Mean km per degree of latitude (for the circle's bounding box).
const KM_PER_DEG: f64 = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;

/// Where a located post is and what a `near` walk asks of it before
/// looking it up: its place, category and expiry.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// Decimal degrees, as [`Near::distance`] computes them.
    lat: f64,
    lng: f64,
    /// `cos` of the latitude in radians, for the quick distance test.
    cos_lat: f64,
    /// Effective expiry (the post is live before it).
    expires_at: u64,
    slot: u8,
}

/// A post's interned tag ids ([`Grid::tag_ids`]), held in place when there
/// are few (most posts carry 1-3 tags), so reading a cell's spots does not
/// follow a pointer per post.
#[derive(Debug, Clone)]
enum TagIds {
    Few(u8, [u32; 3]),
    Many(Box<[u32]>),
}

impl TagIds {
    fn of(ids: Vec<u32>) -> TagIds {
        match ids.as_slice() {
            [] => TagIds::Few(0, [0; 3]),
            [a] => TagIds::Few(1, [*a, 0, 0]),
            [a, b] => TagIds::Few(2, [*a, *b, 0]),
            [a, b, c] => TagIds::Few(3, [*a, *b, *c]),
            _ => TagIds::Many(ids.into()),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            TagIds::Few(n, ids) => &ids[..usize::from(*n).min(3)],
            TagIds::Many(ids) => ids,
        }
    }
}

/// A located post in its grid cell: what `near` and the facets read,
/// without looking the post up.
#[derive(Debug, Clone)]
struct Spot {
    place: Place,
    tags: TagIds,
}

/// One cell's shown posts, in no order: every reader of a cell reads all
/// of its spots (a page sorts the matches it keeps), so they sit in one
/// array read front to back rather than in a tree. The keys are a second
/// array beside it (`keys[i]` is `spots[i]`'s post): the facets read only
/// the spots, one 64-byte line each, and a page reads the keys of its
/// matches. [`Grid::located`] says where each post is, for removal.
#[derive(Debug, Clone, Default)]
struct Cell {
    keys: Vec<CreatedKey>,
    spots: Vec<Spot>,
}

impl Cell {
    fn iter(&self) -> impl Iterator<Item = (&CreatedKey, &Spot)> {
        self.keys.iter().zip(&self.spots)
    }
}

/// A located post in created order: its place, read in place by a walk
/// of `near` in that order, and where its spot is.
#[derive(Debug, Clone, Copy)]
struct Located {
    place: Place,
    cell: (i64, i64),
    /// Index of its spot in the cell's array.
    at: usize,
}

/// Shown posts with a location, by grid cell (`near`).
#[derive(Debug, Clone, Default)]
pub(super) struct Grid {
    cells: BTreeMap<(i64, i64), Cell>,
    /// Every located shown post in created order (the candidates of
    /// `near` when the grid does not answer a circle, and the walk of a
    /// wide circle's first pages).
    located: BTreeMap<CreatedKey, Located>,
    /// Tag names as small numbers, so summing cells is array arithmetic.
    /// An id is never reused for another name; the table holds each tag
    /// any located post has shown, a few bytes per distinct tag.
    tag_ids: BTreeMap<String, u32>,
    tag_names: Vec<String>,
}

fn cell_of(lat: i64, lng: i64) -> (i64, i64) {
    (lat.div_euclid(CELL_UDEG), lng.div_euclid(CELL_UDEG))
}

impl Grid {
    fn add(&mut self, post: &Post, k: CreatedKey) {
        let Some(l) = &post.content.location else {
            return;
        };
        let slot = cat_slot(post.content.category);
        let mut tags = Vec::with_capacity(post.content.tags.len());
        for t in &post.content.tags {
            let id = match self.tag_ids.get(t) {
                Some(id) => *id,
                None => {
                    let id = u32::try_from(self.tag_names.len()).unwrap_or(u32::MAX);
                    self.tag_ids.insert(t.clone(), id);
                    self.tag_names.push(t.clone());
                    id
                }
            };
            tags.push(id);
        }
        self.insert(k, (l.lat, l.lng), post.expires_at, slot as u8, tags);
    }

    /// Adds the spot of the post `k` at `(lat, lng)` (microdegrees), its
    /// tags already interned.
    fn insert(&mut self, k: CreatedKey, at: (i64, i64), expires_at: u64, slot: u8, tags: Vec<u32>) {
        // Indexed twice would leave a stale spot behind.
        self.sub(&k);
        let at_cell = cell_of(at.0, at.1);
        let cell = self.cells.entry(at_cell).or_default();
        let lat = at.0 as f64 / 1e6;
        let place = Place {
            lat,
            lng: at.1 as f64 / 1e6,
            cos_lat: lat.to_radians().cos(),
            expires_at,
            slot,
        };
        let at = cell.spots.len();
        cell.keys.push(k);
        cell.spots.push(Spot {
            place,
            tags: TagIds::of(tags),
        });
        self.located.insert(
            k,
            Located {
                place,
                cell: at_cell,
                at,
            },
        );
    }

    /// Removes a located post's spot (a no-op for another post): the
    /// last spot of its cell takes its place in the array.
    fn sub(&mut self, k: &CreatedKey) {
        let Some(loc) = self.located.remove(k) else {
            return;
        };
        let Some(cell) = self.cells.get_mut(&loc.cell) else {
            return;
        };
        // `at` is kept right on every move; the search is a safety net.
        let at = match cell.keys.get(loc.at) {
            Some(key) if key == k => loc.at,
            _ => match cell.keys.iter().position(|key| key == k) {
                Some(at) => at,
                None => return,
            },
        };
        cell.keys.swap_remove(at);
        if at < cell.spots.len() {
            cell.spots.swap_remove(at);
        }
        if let Some(moved) = cell.keys.get(at) {
            if let Some(m) = self.located.get_mut(moved) {
                m.at = at;
            }
        }
        if cell.keys.is_empty() {
            self.cells.remove(&loc.cell);
        }
    }

    /// The interned ids of the tags the table holds.
    fn ids_of(&self, tags: &[String]) -> Vec<u32> {
        tags.iter()
            .filter_map(|t| self.tag_ids.get(t).copied())
            .collect()
    }

    /// [`cells_near`] over the grid's cells of posts.
    fn cells_near<'g>(&'g self, n: &Near, f: impl FnMut(&'g Cell, bool, f64)) -> Option<()> {
        cells_near(&self.cells, n, f)
    }
}

/// Calls `f(cell, inside, nearest_km)` on every cell of `cells` that may
/// hold a post within `n`: `inside` when every point of the cell is within
/// it; no post of the cell is closer than `nearest_km`. `None` when the
/// grid does not answer this circle (too wide, or its box reaches a pole
/// or the antimeridian). The same for the cells of posts and of counts:
/// whether a cell is inside depends on its place alone.
fn cells_near<'g, V>(
    cells: &'g BTreeMap<(i64, i64), V>,
    n: &Near,
    mut f: impl FnMut(&'g V, bool, f64),
) -> Option<()> {
    let scan = Scan::new(n)?;
    let ((row_lo, col_lo), (row_hi, col_hi)) = scan.cells;
    for row in row_lo..=row_hi {
        let g = scan.row(row, 1);
        for (&(_, col), cell) in cells.range((row, col_lo)..=(row, col_hi)) {
            if let Some((inside, nearest)) = scan.test(&g, col) {
                f(cell, inside, nearest);
            }
        }
    }
    Some(())
}

/// A circle's box on the grid, and the test of a grid square (a cell, or
/// a block of [`BLOCK`] x [`BLOCK`] cells) against the circle.
struct Scan {
    q: Quick,
    r: f64,
    /// Slack for the quick distance (relative error < 1e-4) and the
    /// rounding of haversine.
    slack: f64,
    /// The first and last cell (row, column) of the circle's box.
    cells: ((i64, i64), (i64, i64)),
}

/// One row of grid squares: its centre's latitude and cosine, the side,
/// and a bound on the distance from a square's centre to its points.
struct ScanRow {
    c_lat: f64,
    c_cos: f64,
    side: f64,
    half: f64,
}

impl Scan {
    /// `None` when the grid does not answer `n` (see [`cells_near`]).
    fn new(n: &Near) -> Option<Scan> {
        let r = n.radius_km;
        let dlat = r / KM_PER_DEG * 1.01 + CELL_UDEG as f64 / 1e6;
        let (lat_lo, lat_hi) = (n.lat - dlat, n.lat + dlat);
        if r > GRID_RADIUS_KM_MAX || lat_lo < -85.0 || lat_hi > 85.0 {
            return None;
        }
        let cos_min = lat_lo.abs().max(lat_hi.abs()).to_radians().cos();
        let dlng = r / (KM_PER_DEG * cos_min) * 1.01 + CELL_UDEG as f64 / 1e6;
        let (lng_lo, lng_hi) = (n.lng - dlng, n.lng + dlng);
        if lng_lo < -180.0 || lng_hi > 180.0 {
            return None;
        }
        let udeg = |d: f64| (d * 1e6).floor() as i64;
        Some(Scan {
            q: Quick::new(n),
            r,
            slack: r * 1e-3 + 1e-3,
            cells: (
                cell_of(udeg(lat_lo), udeg(lng_lo)),
                cell_of(udeg(lat_hi), udeg(lng_hi)),
            ),
        })
    }

    /// Row `row` of the squares `cells` cells wide.
    fn row(&self, row: i64, cells: i64) -> ScanRow {
        let side = (CELL_UDEG * cells) as f64 / 1e6;
        let c_lat = (row as f64 + 0.5) * side;
        // Every point of the square is within `half` of its centre (the
        // corner nearer the equator is the farthest; 0.1% spare).
        let toward_equator = if c_lat >= 0.0 {
            -side / 2.0
        } else {
            side / 2.0
        };
        ScanRow {
            c_lat,
            c_cos: c_lat.to_radians().cos(),
            side,
            half: haversine_km(c_lat, 0.0, c_lat + toward_equator, side / 2.0) * 1.001,
        }
    }

    /// `Some((inside, nearest_km))` when the square in column `col` of
    /// `row` may hold a post within the circle: `inside` when all of it
    /// is within; none of it is nearer than `nearest_km`.
    fn test(&self, row: &ScanRow, col: i64) -> Option<(bool, f64)> {
        let c_lng = (col as f64 + 0.5) * row.side;
        let d = self.q.km(row.c_lat, row.c_cos, c_lng);
        let nearest = (d - row.half - self.slack).max(0.0);
        if d + row.half < self.r - self.slack {
            Some((true, nearest))
        } else if d - row.half <= self.r + self.slack {
            Some((false, nearest))
        } else {
            None
        }
    }
}

/// A quick great-circle distance for points a few km apart: haversine
/// with `sin x ≈ x` and `asin x ≈ x` (relative error below 1e-5 at 50
/// km), used only with a slack, never to decide a post's place alone.
struct Quick {
    lat: f64,
    lng: f64,
    cos_lat: f64,
    /// [`Quick::within`]'s bounds on the squared half-angle: below
    /// `in2` a point is clearly within the circle, above `out2` clearly
    /// not (so a spot's test takes no square root).
    in2: f64,
    out2: f64,
}

impl Quick {
    fn new(n: &Near) -> Quick {
        let slack = n.radius_km * 1e-3 + 1e-6;
        let half_angle = |km: f64| km.max(0.0) / (2.0 * EARTH_RADIUS_KM);
        Quick {
            lat: n.lat,
            lng: n.lng,
            cos_lat: n.lat.to_radians().cos(),
            in2: half_angle(n.radius_km - slack).powi(2),
            out2: half_angle(n.radius_km + slack).powi(2),
        }
    }

    /// The square of the quick half-angle between the centre and a point
    /// (the distance is `2 R sqrt` of it).
    fn squared(&self, lat: f64, cos_lat: f64, lng: f64) -> f64 {
        let dp = (lat - self.lat).to_radians() / 2.0;
        let dl = (lng - self.lng).to_radians() / 2.0;
        dp * dp + self.cos_lat * cos_lat * dl * dl
    }

    fn km(&self, lat: f64, cos_lat: f64, lng: f64) -> f64 {
        2.0 * EARTH_RADIUS_KM * self.squared(lat, cos_lat, lng).sqrt()
    }

    /// Whether `spot` is within `n` (the circle this was made for),
    /// exactly as [`Near::distance`] says: the quick distance decides when
    /// it is clearly in or out (more than the slack of `r * 1e-3 + 1 mm`
    /// from the edge), haversine otherwise.
    fn within(&self, n: &Near, spot: &Place) -> bool {
        let x = self.squared(spot.lat, spot.cos_lat, spot.lng);
        if x < self.in2 {
            true
        } else if x > self.out2 {
            false
        } else {
            haversine_km(n.lat, n.lng, spot.lat, spot.lng) <= n.radius_km
        }
    }
}

/// Facets being summed: counts per category slot and per tag.
#[derive(Debug, Default)]
struct Acc<'a> {
    cat: [u64; 4],
    tags: BTreeMap<&'a str, u64>,
}

impl<'a> Acc<'a> {
    /// Adds a group's counts, in the categories `in_cats` admits.
    fn add_counts(&mut self, c: &'a Counts, in_cats: &impl Fn(usize) -> bool) {
        for s in (0..4).filter(|s| in_cats(*s)) {
            self.cat[s] += c.cat[s];
        }
        for (t, by) in &c.tags {
            let n: u64 = (0..4).filter(|s| in_cats(*s)).map(|s| by[s]).sum();
            if n > 0 {
                *self.tags.entry(t.as_str()).or_default() += n;
            }
        }
    }

    fn add_post(&mut self, p: &'a Post) {
        self.cat[cat_slot(p.content.category)] += 1;
        for t in &p.content.tags {
            *self.tags.entry(t.as_str()).or_default() += 1;
        }
    }

    fn done(self) -> (u64, Facets) {
        let total = self.cat.iter().sum();
        let facets = Facets {
            category: Category::ALL
                .into_iter()
                .map(|c| (c, self.cat[cat_slot(c)]))
                .collect(),
            tags: top_tags(self.tags),
        };
        (total, facets)
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

/// Whether a listing holds shown posts past their TTL: ones no counting
/// expiry has ended yet (the sweeper of a trusted member or an anchor, or
/// one of them pressing "Mark stale", ends them as `stale`). Readers see
/// the live market (`exclude`); those who may mark posts stale ask for
/// `only` to find them.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PastTtl {
    /// Live posts only.
    #[default]
    Exclude,
    /// Live posts and those past their TTL.
    Include,
    /// Only posts past their TTL.
    Only,
}

impl PastTtl {
    /// Whether a shown post with this TTL state belongs in the listing.
    fn admits(self, past: bool) -> bool {
        match self {
            PastTtl::Exclude => !past,
            PastTtl::Include => true,
            PastTtl::Only => past,
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
    /// Posts past their TTL not yet ended: `exclude` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub past_ttl: Option<PastTtl>,
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
        Pos::new(sort, post.expires_at, post.created, distance_km)
    }

    fn new(sort: Sort, expires_at: u64, created: EventKey, distance_km: Option<f64>) -> Pos {
        let primary = match sort {
            Sort::Newest | Sort::Oldest => 0,
            Sort::Expiring => expires_at,
            // Non-negative floats order as their bits do.
            Sort::Nearest => distance_km.unwrap_or(f64::MAX).to_bits(),
        };
        Pos { primary, created }
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
    past_ttl: PastTtl,
    sort: Sort,
    after: Option<Pos>,
    limit: usize,
}

impl Plan<'_> {
    /// Every filter but `near` (whose distance the caller computes).
    fn admits(&self, p: &Post, now_ms: u64) -> bool {
        p.is_shown() && self.past_ttl.admits(p.expires_at <= now_ms) && self.admits_shown(p)
    }

    /// [`Plan::admits`] but for the post's state (shown, past its TTL or
    /// not).
    fn admits_shown(&self, p: &Post) -> bool {
        (self.cats.is_empty() || self.cats.contains(&p.content.category))
            && self.tags.iter().all(|t| p.content.tags.contains(t))
            && self.author.is_none_or(|a| p.author == a)
            && self.since.is_none_or(|s| p.content_event.lamport > s)
    }

    /// Whether a post of this category slot may match.
    fn in_cats(&self, slot: usize) -> bool {
        self.cats.is_empty() || self.cats.iter().any(|c| cat_slot(*c) == slot)
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

    /// Counts kept per tag, category, author, Lamport bucket and grid
    /// cell answer the facets exactly: categories with at most one of a
    /// tag, an author, `since_lamport` or `near`.
    fn counts_answer(&self, hits: Option<&BTreeSet<PostKey>>) -> bool {
        let narrowing = usize::from(!self.tags.is_empty())
            + usize::from(self.author.is_some())
            + usize::from(self.since.is_some());
        hits.is_none() && self.tags.len() <= 1 && narrowing <= 1
            // The counts are of live posts.
            && self.past_ttl == PastTtl::Exclude
            // `near` by the location grid, with categories alone.
            && (self.near.is_none() || narrowing == 0)
    }
}

/// The listing's indexes of the shown posts and the counts its facets
/// read. Built on a view's first listing ([`MarketView::lists`]) and kept
/// in step with the shown posts from then on: a view that never lists (the
/// simulator's nodes, a node between its replay and its first page) never
/// holds them, which is a quarter of a large view's memory and most of a
/// full rebuild's index work.
#[derive(Debug, Clone, Default)]
pub(super) struct ListIndexes {
    /// Shown posts by their `created` key: the listing's stable order.
    by_created: BTreeSet<CreatedKey>,
    by_category: BTreeMap<Category, BTreeSet<CreatedKey>>,
    /// Per tag: its shown posts.
    by_tag: BTreeMap<String, TagIndex>,
    by_author: BTreeMap<NodeId, BTreeSet<CreatedKey>>,
    /// Shown posts by effective expiry (`sort=expiring`, the posts past
    /// their TTL that the sweeper has not marked yet, and the posts that
    /// leave the live counts as time passes).
    by_expiry: BTreeSet<(u64, CreatedKey)>,
    /// The location grid and the facet counts of the live posts.
    counts: ListCounts,
}

impl ListIndexes {
    /// The indexes of `posts`' shown ones, from scratch: from vectors,
    /// each collected into its set in one bulk build rather than one
    /// ordered insert per post. The live counts are left to the first
    /// listing ([`LiveCounts`]).
    pub(super) fn of(posts: &BTreeMap<PostKey, Post>) -> ListIndexes {
        let shown = || posts.values().filter(|p| p.is_shown());
        let key = |p: &Post| (p.created, p.key());
        let mut by_category: BTreeMap<Category, Vec<CreatedKey>> = BTreeMap::new();
        let mut by_author: BTreeMap<NodeId, Vec<CreatedKey>> = BTreeMap::new();
        let mut by_tag: BTreeMap<String, Vec<(CreatedKey, u8)>> = BTreeMap::new();
        let mut grid = Grid::default();
        for p in shown() {
            let k = key(p);
            grid.add(p, k);
            by_category.entry(p.content.category).or_default().push(k);
            by_author.entry(p.author).or_default().push(k);
            let slot = cat_slot(p.content.category) as u8;
            for t in &p.content.tags {
                match by_tag.get_mut(t) {
                    Some(keys) => keys.push((k, slot)),
                    None => {
                        by_tag.insert(t.clone(), vec![(k, slot)]);
                    }
                }
            }
        }
        ListIndexes {
            by_created: shown().map(key).collect(),
            by_expiry: shown().map(|p| (p.expires_at, key(p))).collect(),
            by_category: by_category
                .into_iter()
                .map(|(c, v)| (c, v.into_iter().collect()))
                .collect(),
            by_author: by_author
                .into_iter()
                .map(|(a, v)| (a, v.into_iter().collect()))
                .collect(),
            by_tag: by_tag
                .into_iter()
                .map(|(t, keys)| {
                    (
                        t,
                        TagIndex {
                            posts: keys.into_iter().collect(),
                        },
                    )
                })
                .collect(),
            counts: ListCounts {
                grid,
                live: Mutex::default(),
            },
        }
    }

    /// Adds a shown post, and counts it when it is live at the counts'
    /// time.
    pub(super) fn index(&mut self, post: &Post) {
        let k = (post.created, post.key());
        self.by_created.insert(k);
        self.by_category
            .entry(post.content.category)
            .or_default()
            .insert(k);
        self.by_author.entry(post.author).or_default().insert(k);
        self.by_expiry.insert((post.expires_at, k));
        let slot = cat_slot(post.content.category) as u8;
        for t in &post.content.tags {
            match self.by_tag.get_mut(t) {
                Some(ti) => ti.posts.insert(k, slot),
                None => self
                    .by_tag
                    .entry(t.clone())
                    .or_default()
                    .posts
                    .insert(k, slot),
            };
        }
        let lc = &mut self.counts;
        lc.grid.add(post, k);
        let live = lc.live.get_mut().unwrap_or_else(PoisonError::into_inner);
        if live.at.is_some_and(|at| post.expires_at > at) {
            live.add(post, &lc.grid);
        }
    }

    /// Removes a post (a no-op for a post that was not shown). `post` is
    /// as it was indexed.
    pub(super) fn unindex(&mut self, post: &Post) {
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
        self.by_expiry.remove(&(post.expires_at, k));
        for t in &post.content.tags {
            let Some(ti) = self.by_tag.get_mut(t) else {
                continue;
            };
            ti.posts.remove(&k);
            if ti.posts.is_empty() {
                self.by_tag.remove(t);
            }
        }
        let lc = &mut self.counts;
        let live = lc.live.get_mut().unwrap_or_else(PoisonError::into_inner);
        if live.at.is_some_and(|at| post.expires_at > at) {
            live.sub(post, &lc.grid);
        }
        lc.grid.sub(&k);
    }
}

impl MarketView {
    /// The listing indexes, built now if this is the view's first listing.
    fn lists(&self) -> &ListIndexes {
        self.lists.get_or_init(|| ListIndexes::of(&self.posts))
    }

    /// The live counts, moved to `now_ms` (see [`LiveCounts`]): the posts
    /// whose expiry lies between their time and `now_ms` leave them (or
    /// come back, when `now_ms` is earlier); made from scratch when there
    /// are none yet.
    fn live_at(&self, now_ms: u64) -> MutexGuard<'_, LiveCounts> {
        let lists = self.lists();
        // A panic while the lock was held leaves `at` unset when it
        // matters (below), so a poisoned lock is safe to take over.
        let mut live = lists
            .counts
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(at) = live.at else {
            *live = self.count_live(lists, now_ms);
            return live;
        };
        // Unset while moving: a panic part way leaves them to be recounted.
        live.at = None;
        let grid = &lists.counts.grid;
        // Every key of expiry `e` lies between these two.
        let last_of = |e: u64| (e, (KEY_MAX, NAME_MAX));
        if now_ms > at {
            let moved = lists
                .by_expiry
                .range((Excluded(last_of(at)), Included(last_of(now_ms))));
            for (_, (_, name)) in moved {
                if let Some(p) = self.posts.get(name) {
                    live.sub(p, grid);
                }
            }
        } else if now_ms < at {
            let moved = lists
                .by_expiry
                .range((Excluded(last_of(now_ms)), Included(last_of(at))));
            for (_, (_, name)) in moved {
                if let Some(p) = self.posts.get(name) {
                    live.add(p, grid);
                }
            }
        }
        live.at = Some(now_ms);
        live
    }

    /// The counts of the shown posts live at `now_ms`, from scratch.
    fn count_live(&self, lists: &ListIndexes, now_ms: u64) -> LiveCounts {
        let mut live = LiveCounts {
            at: Some(now_ms),
            ..LiveCounts::default()
        };
        let after = (now_ms, (KEY_MAX, NAME_MAX));
        for (_, (_, name)) in lists.by_expiry.range((Excluded(after), Unbounded)) {
            if let Some(p) = self.posts.get(name) {
                live.add(p, &lists.counts.grid);
            }
        }
        live
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
            past_ttl: query.past_ttl.unwrap_or_default(),
            sort,
            after,
            limit,
        };
        if plan.counts_answer(hits) {
            if let Some((total, facets, reach)) = self.counted_facets(&plan, now_ms) {
                let (items, more) = self.walk_page(&plan, total, reach, now_ms);
                return Ok(page(&plan, items, more, total, facets));
            }
        }
        // Collect the whole filtered set once: facets need it anyway.
        let mut all: Vec<Listed<'_>> = Vec::new();
        self.for_each_candidate(&plan, hits, now_ms, |p| {
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
    /// match (each post once; `f` still checks every filter) that is in
    /// `hits`, when given: the smallest set may be another filter's (an
    /// author's, a tag's, a circle's), which `plan` checks but `hits` is
    /// not part of.
    fn for_each_candidate<'a: 's, 's>(
        &'a self,
        plan: &'s Plan<'s>,
        hits: Option<&'s BTreeSet<PostKey>>,
        now_ms: u64,
        mut f: impl FnMut(&'a Post),
    ) {
        let (_, source) = self.source(plan, hits, None, None, now_ms);
        // Walking `hits` itself needs no membership check.
        let check = hits.filter(|_| !matches!(source, Source::Names(_)));
        self.for_each_in(source, plan, |p| {
            if check.is_none_or(|h| h.contains(&p.key())) {
                f(p);
            }
        });
    }

    /// The smallest set that must hold every match, and its size (for a
    /// tag's, the cost of reading it in lookups: [`MarketView::tag_cost`]).
    /// `since_size`: the size of the `since_lamport` set when known (it is
    /// otherwise the source only when nothing else narrows); `grid_reach`:
    /// the spots in the cells a `near` circle touches, when known (from
    /// the counts: [`MarketView::near_counts`]).
    fn source<'a: 's, 's>(
        &'a self,
        plan: &'s Plan<'s>,
        hits: Option<&'s BTreeSet<PostKey>>,
        since_size: Option<usize>,
        grid_reach: Option<usize>,
        now_ms: u64,
    ) -> (usize, Source<'s>) {
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
            let set = self.lists().by_author.get(&a).unwrap_or(empty);
            consider(set.len(), Source::Keys(set));
        }
        for t in plan.tags {
            let set = self
                .lists()
                .by_tag
                .get(t)
                .map(|ti| &ti.posts)
                .unwrap_or(&EMPTY_TAG);
            consider(self.tag_cost(set.len(), plan), Source::Tag(set));
        }
        if !plan.cats.is_empty() {
            let n = self.category_sizes(plan.cats);
            consider(n, Source::Categories(plan.cats));
        }
        if let Some(n) = &plan.near {
            let grid = &self.lists().counts.grid;
            let answered = match grid_reach {
                Some(reach) => Some(reach),
                None => {
                    let mut in_grid = 0;
                    grid.cells_near(n, |cell, _, _| in_grid += cell.spots.len())
                        .map(|()| in_grid)
                }
            };
            match answered {
                Some(in_grid) => consider(in_grid, Source::Grid(*n)),
                None => consider(grid.located.len(), Source::Located(&grid.located)),
            }
        }
        if plan.past_ttl == PastTtl::Only {
            // Few: the sweepers of trusted members end them within minutes.
            let n = self.past_ttl_keys(now_ms).count();
            consider(n, Source::PastTtl(now_ms));
        }
        if let (Some(_), Some(n)) = (plan.since, since_size) {
            consider(n, Source::Since);
        }
        match best {
            Some(b) => b,
            // `since` alone: the newest-content index down to it.
            None if plan.since.is_some() => (self.lists().by_created.len(), Source::Since),
            None => (
                self.lists().by_created.len(),
                Source::Keys(&self.lists().by_created),
            ),
        }
    }

    /// The cost, in post lookups, of reading `entries` of a tag's index
    /// for `plan`: each entry is read in place (its category is there), and
    /// only those of the plan's categories are looked up (about their
    /// share of all shown posts).
    fn tag_cost(&self, entries: usize, plan: &Plan<'_>) -> usize {
        if plan.cats.is_empty() {
            return entries;
        }
        let in_cats = self.category_sizes(plan.cats);
        let all = self.lists().by_created.len().max(1);
        entries / SPOT_READS_PER_LOOKUP + entries.saturating_mul(in_cats) / all
    }

    /// Calls `f` on every post of `source`.
    fn for_each_in<'a: 's, 's>(
        &'a self,
        source: Source<'s>,
        plan: &'s Plan<'s>,
        mut f: impl FnMut(&'a Post),
    ) {
        let get = |name: &PostKey| self.posts.get(name);
        match source {
            Source::Names(h) => h.iter().filter_map(get).for_each(f),
            Source::Keys(set) => set.iter().filter_map(|(_, n)| get(n)).for_each(f),
            Source::Located(m) => m.keys().filter_map(|(_, n)| get(n)).for_each(f),
            Source::Tag(set) => set
                .iter()
                .filter(|(_, slot)| plan.in_cats(usize::from(**slot)))
                .filter_map(|((_, n), _)| get(n))
                .for_each(f),
            Source::Categories(cats) => {
                let mut seen: Vec<Category> = Vec::new();
                for c in cats {
                    if seen.contains(c) {
                        continue;
                    }
                    seen.push(*c);
                    if let Some(set) = self.lists().by_category.get(c) {
                        set.iter().filter_map(|(_, n)| get(n)).for_each(&mut f);
                    }
                }
            }
            Source::PastTtl(now_ms) => self
                .past_ttl_keys(now_ms)
                .filter_map(|(_, n)| get(n))
                .for_each(f),
            Source::Grid(n) => {
                self.lists().counts.grid.cells_near(&n, |cell, _, _| {
                    cell.keys
                        .iter()
                        .filter_map(|(_, name)| get(name))
                        .for_each(&mut f);
                });
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

    /// Shown posts past their TTL, soonest expiry first.
    fn past_ttl_keys(&self, now_ms: u64) -> impl Iterator<Item = &CreatedKey> {
        self.lists()
            .by_expiry
            .iter()
            .take_while(move |(e, _)| *e <= now_ms)
            .map(|(_, k)| k)
    }

    fn category_sizes(&self, cats: &[Category]) -> usize {
        let mut seen: Vec<Category> = Vec::new();
        let mut n = 0;
        for c in cats {
            if !seen.contains(c) {
                seen.push(*c);
                n += self.lists().by_category.get(c).map_or(0, BTreeSet::len);
            }
        }
        n
    }

    /// `total` and facets from the counts of the posts live at `now_ms`
    /// (categories with at most one of a tag, an author, `since_lamport`
    /// or `near`): sums of kept counts, and the few posts of a Lamport
    /// bucket or of the cells on a circle's edge counted one by one.
    /// Also returns, for `near`, the spots in the cells the circle touches
    /// (what reading them for a page costs).
    fn counted_facets(&self, plan: &Plan<'_>, now_ms: u64) -> Option<(u64, Facets, Option<usize>)> {
        let in_cats =
            |slot: usize| plan.cats.is_empty() || plan.cats.iter().any(|c| cat_slot(*c) == slot);
        let live = self.live_at(now_ms);
        let live = &*live;
        let mut acc = Acc::default();
        let mut reach = None;
        match (plan.tags.first(), plan.author, plan.since) {
            (Some(t0), _, _) => {
                if let Some(tc) = live.by_tag.get(t0) {
                    for s in (0..4).filter(|s| in_cats(*s)) {
                        acc.cat[s] = tc.by_category[s];
                    }
                    let own: u64 = acc.cat.iter().sum();
                    if own > 0 {
                        acc.tags.insert(t0, own);
                    }
                    for (t, c) in &tc.with {
                        let n: u64 = (0..4).filter(|s| in_cats(*s)).map(|s| c[s]).sum();
                        if n > 0 {
                            acc.tags.insert(t, n);
                        }
                    }
                }
            }
            (None, Some(a), _) => {
                if let Some(c) = live.by_author.get(&a) {
                    acc.add_counts(c, &in_cats);
                }
            }
            (None, None, Some(since)) => self.since_counts(live, since, now_ms, &in_cats, &mut acc),
            (None, None, None) if plan.near.is_some() => {
                let n = plan.near?;
                reach = Some(self.near_counts(live, &n, now_ms, &in_cats, &mut acc)?);
            }
            (None, None, None) => {
                for s in (0..4).filter(|s| in_cats(*s)) {
                    acc.cat[s] = live.cat[s];
                }
                for (t, tc) in &live.by_tag {
                    let n: u64 = (0..4)
                        .filter(|s| in_cats(*s))
                        .map(|s| tc.by_category[s])
                        .sum();
                    if n > 0 {
                        acc.tags.insert(t, n);
                    }
                }
            }
        }
        let (total, facets) = acc.done();
        Some((total, facets, reach))
    }

    /// Adds the counts of the posts live at `now_ms` within `n`: the
    /// kept counts of the grid cells wholly inside, the posts of the cells
    /// on its edge one by one. Returns the number of spots in the cells
    /// the circle touches (the live ones inside, all on the edge); `None`
    /// when the grid does not answer this circle.
    fn near_counts<'a>(
        &'a self,
        live: &LiveCounts,
        n: &Near,
        now_ms: u64,
        in_cats: &impl Fn(usize) -> bool,
        acc: &mut Acc<'a>,
    ) -> Option<usize> {
        let grid = &self.lists().counts.grid;
        let mut cat = [0u64; 4];
        let mut tags = vec![0u64; grid.tag_names.len()];
        let mut reach = 0u64;
        // Category slots as masks: a sum is four ands and adds.
        let mask: [u64; 4] = std::array::from_fn(|s| if in_cats(s) { u64::MAX } else { 0 });
        let mut add = |c: &CellCounts| {
            reach += c.cat.iter().sum::<u64>();
            for (sum, (by, m)) in cat.iter_mut().zip(c.cat.iter().zip(mask)) {
                *sum += by & m;
            }
            for (id, by) in &c.tags {
                if let Some(t) = tags.get_mut(*id as usize) {
                    *t += (by[0] & mask[0])
                        + (by[1] & mask[1])
                        + (by[2] & mask[2])
                        + (by[3] & mask[3]);
                }
            }
        };
        // Blocks wholly inside add their counts; the cells of the blocks
        // on the edge are tested one by one, and the posts of the cells on
        // the edge one by one.
        let scan = Scan::new(n)?;
        let ((row_lo, col_lo), (row_hi, col_hi)) = scan.cells;
        let (b_lo, b_hi) = (block_of((row_lo, col_lo)), block_of((row_hi, col_hi)));
        // Block row -> the columns of its blocks on the edge, ascending.
        let mut edge_blocks: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for brow in b_lo.0..=b_hi.0 {
            let g = scan.row(brow, BLOCK);
            for (&(_, bcol), block) in live.blocks.range((brow, b_lo.1)..=(brow, b_hi.1)) {
                match scan.test(&g, bcol) {
                    Some((true, _)) => add(block),
                    Some((false, _)) => edge_blocks.entry(brow).or_default().push(bcol),
                    None => {}
                }
            }
        }
        let mut edge_cells: Vec<(i64, i64)> = Vec::new();
        for row in row_lo..=row_hi {
            let Some(bcols) = edge_blocks.get(&row.div_euclid(BLOCK)) else {
                continue;
            };
            let g = scan.row(row, 1);
            for bcol in bcols {
                let cols = (row, bcol * BLOCK)..=(row, bcol * BLOCK + BLOCK - 1);
                for (&(_, col), cell) in live.cells.range(cols) {
                    match scan.test(&g, col) {
                        Some((true, _)) => add(cell),
                        Some((false, _)) => edge_cells.push((row, col)),
                        None => {}
                    }
                }
            }
        }
        // A cell with no live post adds nothing: only those counted are read.
        for at in edge_cells {
            let Some(cell) = grid.cells.get(&at) else {
                continue;
            };
            reach += cell.spots.len() as u64;
            for spot in &cell.spots {
                let p = &spot.place;
                let slot = usize::from(p.slot);
                if p.expires_at > now_ms && in_cats(slot) && scan.q.within(n, p) {
                    cat[slot] += 1;
                    for id in spot.tags.as_slice() {
                        if let Some(t) = tags.get_mut(*id as usize) {
                            *t += 1;
                        }
                    }
                }
            }
        }
        for (s, c) in cat.iter().enumerate() {
            acc.cat[s] += c;
        }
        for (name, t) in grid.tag_names.iter().zip(tags) {
            if t > 0 {
                *acc.tags.entry(name.as_str()).or_default() += t;
            }
        }
        Some(usize::try_from(reach).unwrap_or(usize::MAX))
    }

    /// Adds the counts of the posts live at `now_ms` whose content is
    /// newer than `since` (see [`SINCE_SHIFTS`]).
    fn since_counts<'a>(
        &'a self,
        live: &'a LiveCounts,
        since: u64,
        now_ms: u64,
        in_cats: &impl Fn(usize) -> bool,
        acc: &mut Acc<'a>,
    ) {
        let levels = live.since.iter().zip(SINCE_SHIFTS).enumerate();
        for (i, (level, shift)) in levels {
            let own = since >> shift;
            let buckets = match SINCE_SHIFTS.get(i + 1) {
                // Up to the end of `since`'s bucket of the next level.
                Some(next) => level.range((
                    Excluded(own),
                    Excluded(((since >> next) + 1) << (next - shift)),
                )),
                None => level.range((Excluded(own), Unbounded)),
            };
            for (_, c) in buckets {
                acc.add_counts(c, in_cats);
            }
        }
        // The live posts of `since`'s own smallest bucket above it.
        let top = since | ((1 << SINCE_SHIFTS[0]) - 1);
        let from = (
            std::cmp::Reverse(EventKey {
                lamport: top,
                hash: EventHash([0xff; 32]),
            }),
            NAME_MIN,
        );
        for (std::cmp::Reverse(k), name) in self.by_lamport.range(from..) {
            if k.lamport <= since {
                break;
            }
            if let Some(p) = self.posts.get(name) {
                if p.expires_at > now_ms && in_cats(cat_slot(p.content.category)) {
                    acc.add_post(p);
                }
            }
        }
    }

    /// The page of a query the counts answer, `total` its matches: by
    /// walking one index in the sort's order from the cursor, or, when the
    /// matches are fewer than that walk would visit, by sorting the
    /// smallest candidate set. Returns the page and whether more follow.
    /// `reach`: for `near`, the spots in the cells the circle touches.
    fn walk_page<'a>(
        &'a self,
        plan: &Plan<'_>,
        total: u64,
        reach: Option<usize>,
        now_ms: u64,
    ) -> (Vec<Listed<'a>>, bool) {
        let want = plan.limit + 1;
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        if total == 0 {
            return (Vec::new(), false);
        }
        // The cheapest index to walk that holds every match, in created
        // order: a walk visits about `want` in every `len / total` of its
        // entries, and a tag's or the located posts' are read in place
        // (only some are looked up), so a larger one can cost less.
        let cost = |w: &Walk<'_>| {
            let visited = want.saturating_mul(w.len()) / total;
            match w {
                Walk::Tag(_) => self.tag_cost(visited, plan),
                Walk::Located(..) => visited / SPOT_READS_PER_LOOKUP + want,
                Walk::Keys(_) => visited,
            }
        };
        let mut set = Walk::Keys(&self.lists().by_created);
        let mut narrower: Vec<Walk<'a>> = Vec::new();
        if let [c] = plan.cats {
            narrower.push(Walk::Keys(
                self.lists().by_category.get(c).unwrap_or(&EMPTY),
            ));
        }
        for t in plan.tags {
            narrower.push(Walk::Tag(
                self.lists()
                    .by_tag
                    .get(t)
                    .map_or(&EMPTY_TAG, |ti| &ti.posts),
            ));
        }
        if let Some(a) = plan.author {
            narrower.push(Walk::Keys(self.lists().by_author.get(&a).unwrap_or(&EMPTY)));
        }
        if let Some(n) = plan.near {
            narrower.push(Walk::Located(&self.lists().counts.grid.located, n, now_ms));
        }
        for s in narrower {
            if cost(&s) < cost(&set) {
                set = s;
            }
        }
        // Posts visited by a walk: about `want` in every `set / total`;
        // newest first with `since`, the matches come first (a post's
        // content is never older than its creation).
        let walk = match plan.sort {
            // No index in distance order: the matches are sorted.
            Sort::Nearest => usize::MAX,
            Sort::Newest if plan.since.is_some() => want,
            Sort::Newest | Sort::Oldest => cost(&set),
            _ => want.saturating_mul(self.lists().by_created.len()) / total,
        };
        if let (Sort::Nearest, Some(n)) = (plan.sort, &plan.near) {
            if let Some(page) = self.nearest_page(plan, n, now_ms) {
                return page;
            }
        }
        let (candidates, source) = self.source(plan, None, Some(total), reach, now_ms);
        if let Source::Grid(n) = source {
            // A spot is read in place, a walk looks each post up.
            if candidates / SPOT_READS_PER_LOOKUP < walk {
                return self.grid_page(plan, &n, now_ms);
            }
        } else if candidates < walk {
            let mut v: Vec<(Pos, Listed<'_>)> = Vec::new();
            self.for_each_in(source, plan, |post| {
                if let Some(distance_km) = plan.matches(post, now_ms) {
                    let pos = Pos::of(plan.sort, post, distance_km);
                    if plan.is_after(&pos) {
                        v.push((pos, Listed { post, distance_km }));
                    }
                }
            });
            if v.len() > want {
                v.select_nth_unstable_by(want, |a, b| a.0.cmp_in(&b.0, plan.sort));
                v.truncate(want);
            }
            v.sort_unstable_by(|a, b| a.0.cmp_in(&b.0, plan.sort));
            return listed(v.into_iter().map(|(_, l)| l).collect(), plan.limit);
        }
        // Without a cursor there are `total` matches to find, no more.
        let take = if plan.after.is_none() {
            want.min(total)
        } else {
            want
        };
        let get = |(_, name): &CreatedKey| self.posts.get(name);
        let admitted = |post: &'a Post| {
            plan.matches(post, now_ms)
                .map(move |distance_km| Listed { post, distance_km })
        };
        let posts: Vec<Listed<'a>> = match plan.sort {
            Sort::Newest | Sort::Oldest => {
                let bounds = match (plan.after, plan.sort) {
                    (None, _) => (Unbounded, Unbounded),
                    (Some(a), Sort::Newest) => (Unbounded, Excluded((a.created, NAME_MIN))),
                    (Some(a), _) => (Excluded((a.created, NAME_MAX)), Unbounded),
                };
                let range = set.range(bounds, plan);
                if plan.sort == Sort::Newest {
                    range
                        .rev()
                        .filter_map(get)
                        .filter_map(admitted)
                        .take(take)
                        .collect()
                } else {
                    range
                        .filter_map(get)
                        .filter_map(admitted)
                        .take(take)
                        .collect()
                }
            }
            // `expiring` (`nearest` always has `near`, so never comes here).
            _ => {
                // Past-TTL posts are not live: start after `now`.
                let from = match plan.after {
                    Some(a) if a.primary > now_ms => (a.primary, (a.created, NAME_MAX)),
                    _ => (now_ms, (KEY_MAX, NAME_MAX)),
                };
                self.lists()
                    .by_expiry
                    .range((Excluded(from), Unbounded))
                    .map(|(_, k)| k)
                    .filter_map(get)
                    .filter_map(admitted)
                    .take(take)
                    .collect()
            }
        };
        listed(posts, plan.limit)
    }
}

/// An index walked in created order.
#[derive(Clone, Copy)]
enum Walk<'a> {
    Keys(&'a BTreeSet<CreatedKey>),
    /// A tag's posts with their category slots.
    Tag(&'a BTreeMap<CreatedKey, u8>),
    /// The located posts with their places, for a circle at a time.
    Located(&'a BTreeMap<CreatedKey, Located>, Near, u64),
}

impl<'a> Walk<'a> {
    fn len(&self) -> usize {
        match self {
            Walk::Keys(s) => s.len(),
            Walk::Tag(m) => m.len(),
            Walk::Located(m, ..) => m.len(),
        }
    }

    /// The keys within `bounds`, of the categories `plan` admits when the
    /// index knows them (a tag's), and for the located posts, of the TTL
    /// state and within the circle; the rest is checked on the post.
    fn range(
        self,
        bounds: (Bound<CreatedKey>, Bound<CreatedKey>),
        plan: &'a Plan<'a>,
    ) -> Box<dyn DoubleEndedIterator<Item = &'a CreatedKey> + 'a> {
        match self {
            Walk::Keys(s) => Box::new(s.range(bounds)),
            Walk::Tag(m) => Box::new(
                m.range(bounds)
                    .filter(|(_, slot)| plan.in_cats(usize::from(**slot)))
                    .map(|(k, _)| k),
            ),
            Walk::Located(m, n, now_ms) => {
                let q = Quick::new(&n);
                Box::new(
                    m.range(bounds)
                        .filter(move |(_, l)| {
                            let p = &l.place;
                            plan.past_ttl.admits(p.expires_at <= now_ms)
                                && plan.in_cats(usize::from(p.slot))
                                && q.within(&n, p)
                        })
                        .map(|(k, _)| k),
                )
            }
        }
    }
}

/// A match found in the location grid: its place in the sort, its name
/// and its spot (the post is looked up, and its exact distance computed,
/// only if it makes the page).
type SpotHit<'a> = (Pos, &'a PostKey, &'a Place);

/// How many spots are read in the time one post is looked up by name
/// (a tree search over every post's 48-byte name, and its distance),
/// roughly, for choosing between reading a circle's spots and walking an
/// index.
const SPOT_READS_PER_LOOKUP: usize = 16;

impl MarketView {
    /// Whether a located post matches `plan`: its spot answers the TTL
    /// state, the category and whether it is within `n` (exactly as
    /// [`Near::distance`]; `inside` when its cell is wholly within); the
    /// post is looked up only when the plan also filters by tags, author
    /// or `since_lamport`.
    #[allow(clippy::too_many_arguments)]
    fn spot_matches(
        &self,
        plan: &Plan<'_>,
        n: &Near,
        q: &Quick,
        inside: bool,
        name: &PostKey,
        spot: &Place,
        now_ms: u64,
    ) -> bool {
        if !plan.past_ttl.admits(spot.expires_at <= now_ms)
            || !plan.in_cats(usize::from(spot.slot))
            || !(inside || q.within(n, spot))
        {
            return false;
        }
        if !plan.tags.is_empty() || plan.author.is_some() || plan.since.is_some() {
            return self.posts.get(name).is_some_and(|p| plan.admits_shown(p));
        }
        true
    }

    /// A spot's place in `sort`, computing its distance only for
    /// `nearest`.
    fn spot_pos(sort: Sort, n: &Near, created: EventKey, spot: &Place) -> Pos {
        let d = (sort == Sort::Nearest).then(|| spot_distance(n, spot));
        Pos::new(sort, spot.expires_at, created, d)
    }

    /// The page from the best `want` hits: only those posts are looked up.
    fn page_of_hits<'a>(
        &'a self,
        plan: &Plan<'_>,
        n: &Near,
        mut hits: Vec<SpotHit<'a>>,
    ) -> (Vec<Listed<'a>>, bool) {
        let want = plan.limit + 1;
        let order = |a: &SpotHit<'a>, b: &SpotHit<'a>| a.0.cmp_in(&b.0, plan.sort);
        if hits.len() > want {
            hits.select_nth_unstable_by(want, order);
            hits.truncate(want);
        }
        hits.sort_unstable_by(order);
        let posts = hits
            .into_iter()
            .filter_map(|(_, name, spot)| {
                self.posts.get(name).map(|post| Listed {
                    post,
                    distance_km: Some(spot_distance(n, spot)),
                })
            })
            .collect();
        listed(posts, plan.limit)
    }

    /// A page of a `near` query in any sort from the spots of the cells
    /// the circle touches.
    fn grid_page<'a>(&'a self, plan: &Plan<'_>, n: &Near, now_ms: u64) -> (Vec<Listed<'a>>, bool) {
        let q = Quick::new(n);
        let mut hits: Vec<SpotHit<'a>> = Vec::new();
        self.lists().counts.grid.cells_near(n, |cell, inside, _| {
            for ((created, name), Spot { place: spot, .. }) in cell.iter() {
                if self.spot_matches(plan, n, &q, inside, name, spot, now_ms) {
                    let pos = Self::spot_pos(plan.sort, n, *created, spot);
                    if plan.is_after(&pos) {
                        hits.push((pos, name, spot));
                    }
                }
            }
        });
        self.page_of_hits(plan, n, hits)
    }

    /// A `sort=nearest` page from the location grid: cells in order of the
    /// nearest any of their posts can be, stopping once the page is full
    /// and the next cell cannot hold a post as near as its farthest.
    /// `None` when the grid does not answer the circle.
    fn nearest_page<'a>(
        &'a self,
        plan: &Plan<'_>,
        n: &Near,
        now_ms: u64,
    ) -> Option<(Vec<Listed<'a>>, bool)> {
        let want = plan.limit + 1;
        let mut cells: Vec<(f64, bool, &Cell)> = Vec::new();
        self.lists()
            .counts
            .grid
            .cells_near(n, |cell, inside, nearest| {
                cells.push((nearest, inside, cell))
            })?;
        cells.sort_by(|a, b| a.0.total_cmp(&b.0));
        let order = |a: &SpotHit<'a>, b: &SpotHit<'a>| a.0.cmp_in(&b.0, Sort::Nearest);
        let q = Quick::new(n);
        let mut best: Vec<SpotHit<'a>> = Vec::new();
        // The farthest distance among the best `want` so far.
        let mut kth = f64::INFINITY;
        for (nearest, inside, cell) in cells {
            if best.len() >= want && nearest > kth {
                break;
            }
            for ((created, name), Spot { place: spot, .. }) in cell.iter() {
                if self.spot_matches(plan, n, &q, inside, name, spot, now_ms) {
                    let pos = Self::spot_pos(Sort::Nearest, n, *created, spot);
                    if plan.is_after(&pos) {
                        best.push((pos, name, spot));
                    }
                }
            }
            if best.len() >= want {
                best.select_nth_unstable_by(want - 1, order);
                best.truncate(want);
                kth = best
                    .iter()
                    .map(|(pos, _, _)| f64::from_bits(pos.primary))
                    .fold(0.0, f64::max);
            }
        }
        Some(self.page_of_hits(plan, n, best))
    }
}

/// A spot's distance from the centre of `n`, exactly as
/// [`Near::distance`] computes a post's.
fn spot_distance(n: &Near, spot: &Place) -> f64 {
    haversine_km(n.lat, n.lng, spot.lat, spot.lng)
}

/// The first `limit` of `posts` as a page's items, and whether more follow.
fn listed(mut posts: Vec<Listed<'_>>, limit: usize) -> (Vec<Listed<'_>>, bool) {
    let more = posts.len() > limit;
    posts.truncate(limit);
    (posts, more)
}

static EMPTY: BTreeSet<CreatedKey> = BTreeSet::new();
static EMPTY_TAG: BTreeMap<CreatedKey, u8> = BTreeMap::new();
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
    /// Every located post.
    Located(&'a BTreeMap<CreatedKey, Located>),
    /// A tag's posts: those of other categories are skipped unread.
    Tag(&'a BTreeMap<CreatedKey, u8>),
    Categories(&'a [Category]),
    /// The grid cells that may hold posts within the circle.
    Grid(Near),
    Since,
    /// Shown posts whose effective expiry is at or before this time.
    PastTtl(u64),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u8) -> CreatedKey {
        (
            EventKey {
                lamport: u64::from(i),
                hash: EventHash([i; 32]),
            },
            PostKey {
                author: NodeId([7; 32]),
                id: ulid::Ulid(u128::from(i)),
            },
        )
    }

    /// Microdegrees: a town's cloud, points on and one microdegree beside
    /// cell edges, and clusters at the north pole and astride the
    /// antimeridian (where the grid does not answer).
    fn point() -> impl Strategy<Value = (i64, i64)> {
        prop_oneof![
            (-6i64..6, -6i64..6, -2i64..=2).prop_map(|(a, b, d)| (
                52_500_000 + a * CELL_UDEG + d,
                13_400_000 + b * CELL_UDEG - d
            )),
            (-20_000i64..20_000, -20_000i64..20_000)
                .prop_map(|(a, b)| (52_500_000 + a, 13_400_000 + b)),
            (89_980_000i64..=90_000_000, -180_000_000i64..=180_000_000),
            (-20_000i64..20_000, 0i64..20_000, proptest::bool::ANY).prop_map(|(a, b, east)| (
                a,
                if east {
                    180_000_000 - b
                } else {
                    b - 180_000_000
                }
            )),
        ]
    }

    fn radius() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0), 0.0f64..0.5, 0.0f64..4.0, 40.0f64..60.0]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// The location grid after random adds, moves and removals agrees
        /// with a brute-force filter: every located post's entry points at
        /// its own spot, and for random circles (radius 0, circles across
        /// cell edges, at the pole and the antimeridian, wider than the
        /// grid answers) the cells it visits hold exactly the posts within
        /// the circle by haversine, a cell called inside holds only posts
        /// within, and no post is nearer than its cell's `nearest`; when
        /// the grid does not answer, the circle is one it should not.
        #[test]
        fn grid_agrees_with_a_brute_force_filter(
            ops in proptest::collection::vec((0u8..40, proptest::option::weighted(0.8, point())), 0..160),
            circles in proptest::collection::vec((point(), radius()), 1..8),
        ) {
            let mut grid = Grid::default();
            let mut model: BTreeMap<CreatedKey, (i64, i64)> = BTreeMap::new();
            for (i, at) in &ops {
                let k = key(*i);
                match at {
                    Some(at) => {
                        grid.insert(k, *at, u64::from(*i), *i % 4, vec![u32::from(*i % 5); usize::from(*i % 6)]);
                        model.insert(k, *at);
                    }
                    None => {
                        grid.sub(&k);
                        model.remove(&k);
                    }
                }
            }
            let spots: usize = grid.cells.values().map(|c| c.spots.len()).sum();
            prop_assert_eq!(spots, grid.located.len());
            prop_assert!(grid.cells.values().all(|c| !c.spots.is_empty() && c.keys.len() == c.spots.len()));
            prop_assert!(grid.located.keys().eq(model.keys()));
            for (k, l) in &grid.located {
                let cell = &grid.cells[&l.cell];
                let spot = &cell.spots[l.at];
                prop_assert_eq!(&cell.keys[l.at], k);
                prop_assert_eq!(cell_of(model[k].0, model[k].1), l.cell);
                let want = u32::from(k.0.lamport as u8 % 5);
                prop_assert!(spot.tags.as_slice().iter().all(|t| *t == want));
                prop_assert_eq!(spot.tags.as_slice().len(), usize::from(k.0.lamport as u8 % 6));
            }
            for ((lat, lng), r) in &circles {
                let n = Near { lat: *lat as f64 / 1e6, lng: *lng as f64 / 1e6, radius_km: *r };
                let within = |(a, b): (i64, i64)| {
                    haversine_km(n.lat, n.lng, a as f64 / 1e6, b as f64 / 1e6) <= n.radius_km
                };
                let brute: BTreeSet<CreatedKey> =
                    model.iter().filter(|(_, at)| within(**at)).map(|(k, _)| *k).collect();
                let q = Quick::new(&n);
                let mut got = BTreeSet::new();
                let mut bad: Vec<String> = Vec::new();
                let answered = grid.cells_near(&n, |cell, inside, nearest| {
                    for (key, s) in cell.iter() {
                        let d = spot_distance(&n, &s.place);
                        if inside && d > n.radius_km {
                            bad.push(format!("{:?} at {d} km in an inside cell", key.0.lamport));
                        }
                        if d < nearest {
                            bad.push(format!("{:?} at {d} km, cell says >= {nearest}", key.0.lamport));
                        }
                        if inside || q.within(&n, &s.place) {
                            got.insert(*key);
                        }
                    }
                });
                prop_assert!(bad.is_empty(), "{:?}: {:?}", n, bad);
                match answered {
                    Some(()) => prop_assert_eq!(&got, &brute, "{:?}", n),
                    None => prop_assert!(
                        n.radius_km > GRID_RADIUS_KM_MAX
                            || n.lat.abs() > 84.0
                            || n.lng.abs() > 179.0,
                        "the grid refused {:?}", n
                    ),
                }
            }
        }
    }
}
