//! The marketplace listing (`market.list`) against a naive model: every
//! filter mix, every sort, walked page by page through the cursor, equals
//! filtering and sorting all posts by hand; `total` and facets equal a
//! count over the filtered set; refusals name what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use crate::common::*;
use hearth_node::core::services::market::ListResult;
use hearth_node::core::views::market::{
    haversine_km, Near, PastTtl, Sort, LIST_LIMIT_DEFAULT, RADIUS_KM_MAX, TAG_FACETS_MAX,
};
use hearth_node::core::views::{ListQuery, Post, PostKey};
use hearth_node::core::{ErrorCode, Node};
use hearth_node::store::MemoryStore;
use hearth_proto::{
    Category, Identity, Level, Location, Payload, PostContent, PostExpired, PostUpdated,
};
use proptest::prelude::*;

const TAGS: [&str; 5] = ["tools", "garden", "kids", "food", "rare"];

/// One generated post: category, tags (bits of TAGS), location cell or
/// none, lapsed, then an optional update and an optional expiry.
#[derive(Debug, Clone)]
struct Spec {
    author: u8,
    cat: usize,
    tags: u8,
    loc: Option<(i64, i64)>,
    lapsed: bool,
    update: Option<(usize, u8)>,
    expire: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        0usize..4,
        0u8..32,
        proptest::option::of((-20i64..20, -20i64..20)),
        proptest::bool::weighted(0.15),
        proptest::option::weighted(0.2, (0usize..4, 0u8..32)),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(author, cat, tags, loc, lapsed, update, expire)| Spec {
            author,
            cat,
            tags,
            loc,
            lapsed,
            update,
            expire,
        })
}

fn tags_of(bits: u8) -> Vec<String> {
    TAGS.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, t)| (*t).to_owned())
        .collect()
}

fn content_of(
    title: &str,
    cat: usize,
    bits: u8,
    loc: Option<(i64, i64)>,
    lapsed: bool,
) -> PostContent {
    PostContent {
        category: Category::ALL[cat],
        title: title.into(),
        body: String::new(),
        tags: tags_of(bits),
        expires_at: if lapsed { NOW - 1 } else { NOW + DAY_MS },
        // Cells of ~1 km around 52.5N 13.4E, in microdegrees.
        location: loc.map(|(a, b)| Location {
            lat: 52_500_000 + a * 9_000,
            lng: 13_400_000 + b * 15_000,
            label: String::new(),
        }),
    }
}

/// The Lamport time after `lamport` for the next generated event: the
/// `since_lamport` counts are kept in buckets of 2^6, 2^10, 2^14 and 2^18
/// Lamport times, so the events mix short steps (several in one smallest
/// bucket) with long ones (50 posts reach ~330k, across every level).
fn next_lamport(lamport: u64) -> u64 {
    lamport
        + match lamport % 3 {
            0 => 20_011,
            _ => 37,
        }
}

/// A node (the anchor) holding the posts of `specs` by three members, and
/// the next free Lamport time.
fn market_of(specs: &[Spec]) -> (Node<MemoryStore>, Vec<PostKey>, u64) {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let authors = [key(2), key(3), key(4)];
    let mut lamport = 1;
    for a in &authors {
        node.log_mut()
            .append_received(f.member_set(&f.anchor, lamport, a, Level::Member))
            .unwrap();
        lamport += 1;
    }
    let mut names = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let who = &authors[s.author as usize];
        let id = 1000 + i as u128;
        let e = f.post_with(
            who,
            lamport,
            id,
            content_of(&format!("p{i}"), s.cat, s.tags, s.loc, s.lapsed),
        );
        lamport = next_lamport(lamport);
        node.log_mut().append_received(e).unwrap();
        names.push(PostKey {
            author: who.node_id(),
            id: post_id(id),
        });
    }
    // Updates and expiries after every post, so lamports interleave.
    for (i, s) in specs.iter().enumerate() {
        let who = &authors[s.author as usize];
        let id = 1000 + i as u128;
        if let Some((cat, tags)) = s.update {
            let e = f.event(
                who,
                lamport,
                (u128::from(lamport) << 40) | id,
                Payload::PostUpdated(PostUpdated {
                    target: post_id(id),
                    content: content_of(&format!("p{i}u"), cat, tags, s.loc, s.lapsed).into(),
                }),
            );
            lamport = next_lamport(lamport);
            node.log_mut().append_received(e).unwrap();
        }
        if s.expire {
            let e = f.event(
                who,
                lamport,
                (u128::from(lamport) << 40) | id,
                Payload::PostExpired(PostExpired {
                    target: post_id(id),
                    reason: hearth_proto::ExpiryReason::Fulfilled,
                }),
            );
            lamport = next_lamport(lamport);
            node.log_mut().append_received(e).unwrap();
        }
    }
    (node, names, lamport)
}

#[derive(Debug, Clone)]
struct QuerySpec {
    cats: Vec<usize>,
    tags: u8,
    author: Option<u8>,
    since: Option<u64>,
    near: Option<(i64, i64, f64)>,
    sort: usize,
    limit: usize,
    /// None, or an index into [exclude, include, only].
    past_ttl: Option<usize>,
}

fn query_spec() -> impl Strategy<Value = QuerySpec> {
    (
        proptest::collection::vec(0usize..4, 0..3),
        prop_oneof![3 => Just(0u8), 2 => 0u8..32],
        proptest::option::weighted(0.2, 0u8..3),
        proptest::option::weighted(0.2, 0u64..400_000),
        proptest::option::weighted(0.3, (-20i64..20, -20i64..20, 0.5f64..15.0)),
        0usize..4,
        1usize..9,
        proptest::option::weighted(0.4, 0usize..3),
    )
        .prop_map(
            |(cats, tags, author, since, near, sort, limit, past_ttl)| QuerySpec {
                cats,
                tags,
                author,
                since,
                near,
                sort,
                limit,
                past_ttl,
            },
        )
}

fn point(a: i64, b: i64) -> (f64, f64) {
    (52.5 + a as f64 * 0.009, 13.4 + b as f64 * 0.015)
}

/// The naive answer: every shown post (live, past its TTL, or both, as
/// `past_ttl` asks), filtered and sorted by hand.
fn naive<'a>(node: &'a Node<MemoryStore>, names: &[PostKey], q: &ListQuery) -> Vec<&'a Post> {
    naive_at(node, names, q, NOW)
}

/// [`naive`] at the time `now`.
fn naive_at<'a>(
    node: &'a Node<MemoryStore>,
    names: &[PostKey],
    q: &ListQuery,
    now: u64,
) -> Vec<&'a Post> {
    let market = &node.views().market;
    let shown = |p: &Post| p.author_active && p.expired.is_none() && !p.over_limit;
    let mut v: Vec<&Post> = names
        .iter()
        .filter_map(|n| market.get(n))
        .filter(|p| {
            let past = p.expires_at <= now;
            shown(p)
                && match q.past_ttl.unwrap_or_default() {
                    PastTtl::Exclude => !past,
                    PastTtl::Include => true,
                    PastTtl::Only => past,
                }
        })
        .filter(|p| q.category.is_empty() || q.category.contains(&p.content.category))
        .filter(|p| q.tags.iter().all(|t| p.content.tags.contains(t)))
        .filter(|p| q.author.is_none_or(|a| p.author == a))
        .filter(|p| q.since_lamport.is_none_or(|s| p.content_event.lamport > s))
        .filter(|p| {
            q.near
                .is_none_or(|n| dist(&n, p).is_some_and(|d| d <= n.radius_km))
        })
        .collect();
    match q.sort.unwrap_or_default() {
        Sort::Newest => v.sort_by_key(|p| std::cmp::Reverse(p.created)),
        Sort::Oldest => v.sort_by_key(|p| p.created),
        Sort::Expiring => v.sort_by_key(|p| (p.expires_at, p.created)),
        Sort::Nearest => {
            let n = q.near.unwrap();
            v.sort_by(|a, b| {
                dist(&n, a)
                    .unwrap()
                    .total_cmp(&dist(&n, b).unwrap())
                    .then(a.created.cmp(&b.created))
            })
        }
    }
    v
}

fn dist(n: &Near, p: &Post) -> Option<f64> {
    let l = p.content.location.as_ref()?;
    Some(haversine_km(
        n.lat,
        n.lng,
        l.lat as f64 / 1e6,
        l.lng as f64 / 1e6,
    ))
}

/// Lists `q` at `NOW` page by page through the cursor. Every page must
/// carry the naive `total` and facets of `want` and pass `check`, a page
/// may have a next cursor only when it is full and matches remain after
/// it (no empty last page), and the walk must end within `want.len() + 1`
/// pages; returns the keys listed, in order.
fn walk_pages(
    node: &Node<MemoryStore>,
    q: &ListQuery,
    want: &[&Post],
    mut check: impl FnMut(&ListResult) -> Result<(), TestCaseError>,
) -> Result<Vec<PostKey>, TestCaseError> {
    let (cats, tags) = naive_facets(want);
    let mut got: Vec<PostKey> = Vec::new();
    let mut cursor = None;
    for _ in 0..=want.len() {
        let page = node
            .market_list(
                NOW,
                ListQuery {
                    cursor: cursor.clone(),
                    ..q.clone()
                },
            )
            .unwrap();
        prop_assert_eq!(page.total, want.len() as u64, "{:?}", q);
        prop_assert_eq!(&page.facets.category, &cats, "{:?}", q);
        let got_tags: Vec<(String, u64)> = page
            .facets
            .tags
            .iter()
            .map(|t| (t.tag.clone(), t.count))
            .collect();
        prop_assert_eq!(&got_tags, &tags, "{:?}", q);
        check(&page)?;
        got.extend(page.posts.iter().map(|p| PostKey {
            author: p.author,
            id: p.id,
        }));
        if page.next_cursor.is_some() {
            let limit = q.limit.unwrap_or(LIST_LIMIT_DEFAULT);
            prop_assert_eq!(
                page.posts.len(),
                limit,
                "a page before the last is full: {:?}",
                q
            );
            prop_assert!(
                got.len() < want.len(),
                "a next cursor after the last match: {:?}",
                q
            );
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    prop_assert!(cursor.is_none(), "the walk did not end");
    Ok(got)
}

/// Appends `who`'s post `id` with content `c` at `lamport` to the node
/// and records its name for the naive listing.
fn add_post(
    node: &mut Node<MemoryStore>,
    names: &mut Vec<PostKey>,
    f: &Fixture,
    who: &Identity,
    lamport: u64,
    id: u128,
    c: PostContent,
) {
    node.log_mut()
        .append_received(f.post_with(who, lamport, id, c))
        .unwrap();
    names.push(PostKey {
        author: who.node_id(),
        id: post_id(id),
    });
}

/// One page of `q` at `now` (its limit above the number of matches)
/// equals the naive answer: `total`, the facets, and the posts in order.
fn page_equals_naive(
    node: &Node<MemoryStore>,
    names: &[PostKey],
    q: &ListQuery,
    now: u64,
) -> Result<(), TestCaseError> {
    let want = naive_at(node, names, q, now);
    let (cats, tags) = naive_facets(&want);
    let page = node.market_list(now, q.clone()).unwrap();
    prop_assert_eq!(page.total, want.len() as u64, "{:?} at {}", q, now);
    prop_assert_eq!(&page.facets.category, &cats, "{:?} at {}", q, now);
    let got_tags: Vec<(String, u64)> = page
        .facets
        .tags
        .iter()
        .map(|t| (t.tag.clone(), t.count))
        .collect();
    prop_assert_eq!(&got_tags, &tags, "{:?} at {}", q, now);
    let got: Vec<PostKey> = page
        .posts
        .iter()
        .map(|p| PostKey {
            author: p.author,
            id: p.id,
        })
        .collect();
    let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
    prop_assert_eq!(got, want, "{:?} at {}", q, now);
    Ok(())
}

fn naive_facets(posts: &[&Post]) -> (BTreeMap<Category, u64>, Vec<(String, u64)>) {
    let mut cats: BTreeMap<Category, u64> = Category::ALL.iter().map(|c| (*c, 0)).collect();
    let mut tags: BTreeMap<String, u64> = BTreeMap::new();
    for p in posts {
        *cats.get_mut(&p.content.category).unwrap() += 1;
        for t in &p.content.tags {
            *tags.entry(t.clone()).or_default() += 1;
        }
    }
    let mut tags: Vec<(String, u64)> = tags.into_iter().collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    tags.truncate(TAG_FACETS_MAX);
    (cats, tags)
}

fn to_query(s: &QuerySpec, node: &Node<MemoryStore>) -> ListQuery {
    let near = s.near.map(|(a, b, r)| {
        let (lat, lng) = point(a, b);
        Near {
            lat,
            lng,
            radius_km: r,
        }
    });
    let sort = [Sort::Newest, Sort::Oldest, Sort::Expiring, Sort::Nearest][s.sort];
    let _ = node;
    ListQuery {
        category: s.cats.iter().map(|c| Category::ALL[*c]).collect(),
        tags: tags_of(s.tags),
        author: s.author.map(|a| key(2 + a).node_id()),
        since_lamport: s.since,
        sort: Some(if sort == Sort::Nearest && near.is_none() {
            Sort::Expiring
        } else {
            sort
        }),
        near,
        limit: Some(s.limit),
        past_ttl: s
            .past_ttl
            .map(|i| [PastTtl::Exclude, PastTtl::Include, PastTtl::Only][i]),
        ..ListQuery::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Walking every page of any filter mix (`past_ttl` included) and sort
    /// through the cursor gives exactly the naive filtered, sorted list,
    /// ending on the page with the last match (no next cursor after it),
    /// and every page's `total` and facets equal a count over the whole
    /// filtered set; a full replay of the same store (indexes built in
    /// bulk) lists the same.
    #[test]
    fn pages_equal_the_naive_listing(
        specs in proptest::collection::vec(spec(), 0..50),
        qs in proptest::collection::vec(query_spec(), 1..6),
    ) {
        let (node, names, _) = market_of(&specs);
        // The same store reopened: a full replay builds the indexes in
        // bulk, and must list the same.
        let f = Fixture::new();
        let replayed = Node::new(
            key(1),
            &f.genesis,
            node.log().store().clone(),
            hearth_node::core::Config::default(),
            7,
        )
        .unwrap();
        for s in &qs {
            let q = to_query(s, &node);
            let mut q_all = q.clone();
            q_all.limit = Some(200);
            prop_assert_eq!(
                node.market_list(NOW, q_all.clone()).unwrap(),
                replayed.market_list(NOW, q_all).unwrap()
            );
            let want = naive(&node, &names, &q);
            let got = walk_pages(&node, &q, &want, |page| {
                prop_assert!(page.posts.len() <= s.limit);
                for p in &page.posts {
                    prop_assert_eq!(p.distance_km.is_some(), q.near.is_some());
                }
                Ok(())
            })?;
            let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
            prop_assert_eq!(got, want, "{:?}", q);
        }
    }
}

/// A point within ±0.03° of 52.5N 13.4E, in microdegrees offsets.
fn dense_point() -> impl Strategy<Value = (i64, i64)> {
    (-30_000i64..30_000, -30_000i64..30_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `near` over a dense cloud (posts every few metres to hundreds of
    /// metres apart, so circles cut through grid cells that hold posts on
    /// both sides of their edge): every sort, categories and `past_ttl`,
    /// walked page by page, lists exactly the naive set in the naive
    /// order with the naive distances, `total` and facets, ending on the
    /// page with the last match.
    #[test]
    fn near_pages_equal_the_naive_listing_in_a_dense_cloud(
        posts in proptest::collection::vec((spec(), dense_point()), 1..120),
        qs in proptest::collection::vec(
            (dense_point(), 0.05f64..3.0, proptest::collection::vec(0usize..4, 0..3), 0usize..4, 1usize..30, proptest::option::weighted(0.4, 0usize..3)),
            1..6,
        ),
    ) {
        let f = Fixture::new();
        let authors = [key(2), key(3), key(4)];
        let (mut node, mut names, mut lamport) = market_of(&[]);
        for (i, (s, (dlat, dlng))) in posts.iter().enumerate() {
            let who = &authors[s.author as usize];
            let id = 7000 + i as u128;
            let mut c = content_of(&format!("p{id}"), s.cat, s.tags, None, s.lapsed);
            c.location = Some(Location {
                lat: 52_500_000 + dlat,
                lng: 13_400_000 + dlng,
                label: String::new(),
            });
            add_post(&mut node, &mut names, &f, who, lamport, id, c);
            lamport = next_lamport(lamport);
        }
        for ((dlat, dlng), r, cats, sort, limit, past_ttl) in &qs {
            let n = Near {
                lat: 52.5 + *dlat as f64 / 1e6,
                lng: 13.4 + *dlng as f64 / 1e6,
                radius_km: *r,
            };
            let q = ListQuery {
                category: cats.iter().map(|c| Category::ALL[*c]).collect(),
                near: Some(n),
                sort: Some([Sort::Newest, Sort::Oldest, Sort::Expiring, Sort::Nearest][*sort]),
                limit: Some(*limit),
                past_ttl: past_ttl.map(|i| [PastTtl::Exclude, PastTtl::Include, PastTtl::Only][i]),
                ..ListQuery::default()
            };
            let want = naive(&node, &names, &q);
            let got = walk_pages(&node, &q, &want, |page| {
                for p in &page.posts {
                    let post = node.views().market.get(&PostKey { author: p.author, id: p.id }).unwrap();
                    let d = dist(&n, post).unwrap();
                    prop_assert_eq!(p.distance_km.map(|k| k.0), Some((d * 1000.0).round() / 1000.0));
                }
                Ok(())
            })?;
            let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
            prop_assert_eq!(got, want, "{:?}", q);
        }
    }
}

const HOUR_MS: u64 = 3_600_000;

/// `NOW` moved by `h` hours.
fn hours(h: i64) -> u64 {
    NOW.checked_add_signed(h * HOUR_MS as i64).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The counts `total` and the facets read follow the clock: posts
    /// expiring at many times, queried at times that jump forward and
    /// back, with posts added (expiring before, at and after the last
    /// query's time) and updated between queries, list and count exactly
    /// the naive filtered set at each query's own time.
    #[test]
    fn counts_follow_the_clock(
        specs in proptest::collection::vec((spec(), -4i64..8), 0..30),
        steps in proptest::collection::vec(
            (
                -5i64..9,
                proptest::collection::vec((spec(), -4i64..8), 0..4),
                proptest::option::weighted(0.3, (0usize..64, -4i64..8)),
                query_spec(),
            ),
            1..8,
        ),
    ) {
        let f = Fixture::new();
        let authors = [key(2), key(3), key(4)];
        let (mut node, mut names, mut lamport) = market_of(&[]);
        let add = |node: &mut Node<MemoryStore>, names: &mut Vec<PostKey>, lamport: &mut u64, s: &Spec, h: i64| {
            let who = &authors[s.author as usize];
            let id = 5000 + names.len() as u128;
            let mut c = content_of(&format!("p{id}"), s.cat, s.tags, s.loc, false);
            c.expires_at = hours(h);
            node.log_mut()
                .append_received(f.post_with(who, *lamport, id, c))
                .unwrap();
            *lamport = next_lamport(*lamport);
            names.push(PostKey { author: who.node_id(), id: post_id(id) });
        };
        for (s, h) in &specs {
            add(&mut node, &mut names, &mut lamport, s, *h);
        }
        for (at, new_posts, update, qs) in &steps {
            for (s, h) in new_posts {
                add(&mut node, &mut names, &mut lamport, s, *h);
            }
            // Move one post's expiry (an update re-indexes it).
            if let Some((i, h)) = update {
                if !names.is_empty() {
                    let name = names[i % names.len()];
                    let who = authors.iter().find(|a| a.node_id() == name.author).unwrap();
                    let old = node.views().market.get(&name).unwrap().content.clone();
                    let mut c = (*old).clone();
                    c.expires_at = hours(*h);
                    node.log_mut()
                        .append_received(f.event(
                            who,
                            lamport,
                            (u128::from(lamport) << 40) | 7,
                            Payload::PostUpdated(PostUpdated { target: name.id, content: c.into() }),
                        ))
                        .unwrap();
                    lamport = next_lamport(lamport);
                }
            }
            let now = hours(*at);
            let mut q = to_query(qs, &node);
            q.limit = Some(200);
            page_equals_naive(&node, &names, &q, now)?;
        }
    }
}

/// The list of the REST examples: Berlin to Paris is about 878 km by
/// haversine, and a point is 0 km from itself.
#[test]
fn haversine_matches_known_distances() {
    let d = haversine_km(52.5200, 13.4050, 48.8566, 2.3522);
    assert!((d - 877.5).abs() < 2.0, "{d}");
    assert_eq!(haversine_km(10.0, 20.0, 10.0, 20.0), 0.0);
}

/// A limit of 0 or over 200, a cursor that is not one (not hex, of
/// another version, cut short), a cursor of another sort, a bad `near`
/// and `nearest` without `near` are each `bad_request` with a message
/// naming the problem.
#[test]
fn bad_queries_are_refused_with_reasons() {
    let specs: Vec<Spec> = (0..5)
        .map(|i| Spec {
            author: 0,
            cat: i % 4,
            tags: 1,
            loc: Some((0, 0)),
            lapsed: false,
            update: None,
            expire: false,
        })
        .collect();
    let (node, _, _) = market_of(&specs);
    let first = node
        .market_list(
            NOW,
            ListQuery {
                limit: Some(2),
                ..ListQuery::default()
            },
        )
        .unwrap();
    let newest_cursor = first.next_cursor.clone().unwrap();
    // The same cursor with another version byte, and cut short.
    let other_version = format!("02{}", &newest_cursor[2..]);
    let cut_short = newest_cursor[..10].to_owned();
    let near = |lat: f64, lng: f64, r: f64| {
        Some(Near {
            lat,
            lng,
            radius_km: r,
        })
    };
    for (q, says) in [
        (
            ListQuery {
                limit: Some(0),
                ..ListQuery::default()
            },
            "limit must be 1 to 200",
        ),
        (
            ListQuery {
                limit: Some(201),
                ..ListQuery::default()
            },
            "limit must be 1 to 200",
        ),
        (
            ListQuery {
                cursor: Some("zz".into()),
                ..ListQuery::default()
            },
            "cursor",
        ),
        (
            ListQuery {
                cursor: Some("01".repeat(50)),
                ..ListQuery::default()
            },
            "cursor",
        ),
        (
            ListQuery {
                cursor: Some(other_version),
                ..ListQuery::default()
            },
            "wrong length or version",
        ),
        (
            ListQuery {
                cursor: Some(cut_short),
                ..ListQuery::default()
            },
            "wrong length or version",
        ),
        (
            ListQuery {
                cursor: Some(newest_cursor),
                sort: Some(Sort::Oldest),
                ..ListQuery::default()
            },
            "sort=newest",
        ),
        (
            ListQuery {
                near: near(91.0, 0.0, 1.0),
                ..ListQuery::default()
            },
            "latitude",
        ),
        (
            ListQuery {
                near: near(0.0, 181.0, 1.0),
                ..ListQuery::default()
            },
            "longitude",
        ),
        (
            ListQuery {
                near: near(0.0, 0.0, 0.0),
                ..ListQuery::default()
            },
            "radius_km",
        ),
        (
            ListQuery {
                near: near(f64::NAN, 0.0, 1.0),
                ..ListQuery::default()
            },
            "latitude",
        ),
        (
            ListQuery {
                sort: Some(Sort::Nearest),
                ..ListQuery::default()
            },
            "nearest needs near",
        ),
        (
            ListQuery {
                tags: vec![" ".into()],
                ..ListQuery::default()
            },
            "empty tag",
        ),
    ] {
        let e = node.market_list(NOW, q.clone()).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{q:?}");
        assert!(e.message.contains(says), "{q:?}: {}", e.message);
    }
}

/// An update never moves a post in `newest`: a walk of pages during which
/// earlier-listed posts are updated still lists every post exactly once.
#[test]
fn updates_do_not_move_posts_in_newest() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    for i in 0..20u128 {
        node.log_mut()
            .append_received(f.post(&f.anchor, 1 + i as u64, i, &format!("p{i}")))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut lamport = 100;
    loop {
        let page = node
            .market_list(
                NOW,
                ListQuery {
                    limit: Some(3),
                    cursor: cursor.clone(),
                    ..ListQuery::default()
                },
            )
            .unwrap();
        for p in &page.posts {
            seen.push(p.title.clone());
            // Update the oldest post not yet seen: its content becomes the
            // newest, but its place in `newest` stays.
            let target = (0..20u128)
                .find(|i| !seen.iter().any(|t| t.starts_with(&format!("p{i}"))))
                .unwrap_or(0);
            node.log_mut()
                .append_received(f.update(
                    &f.anchor,
                    lamport,
                    target,
                    &format!("p{target} v{lamport}"),
                ))
                .unwrap();
            lamport += 1;
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut ids: Vec<String> = seen
        .iter()
        .map(|t| t.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 20, "{seen:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "{seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `since_lamport` at or just below a post's content Lamport time
    /// (inside the smallest count bucket, which the counts walk post by
    /// post) lists and counts exactly the naive set, with and without
    /// categories, also at the moment the lapsed posts expire.
    #[test]
    fn since_just_below_a_post_counts_the_naive_set(
        specs in proptest::collection::vec(spec(), 1..40),
        qs in proptest::collection::vec(
            (0usize..64, 0u64..70, proptest::collection::vec(0usize..4, 0..3), proptest::bool::ANY),
            1..8,
        ),
    ) {
        let (node, names, _) = market_of(&specs);
        for (i, below, cats, at_lapse) in &qs {
            let lamport = node.views().market.get(&names[i % names.len()]).unwrap().content_event.lamport;
            // The lapsed posts expire at NOW - 1: at that time they are
            // just not live any more.
            let now = if *at_lapse { NOW - 1 } else { NOW };
            let q = ListQuery {
                category: cats.iter().map(|c| Category::ALL[*c]).collect(),
                since_lamport: Some(lamport.saturating_sub(*below)),
                limit: Some(200),
                ..ListQuery::default()
            };
            page_equals_naive(&node, &names, &q, now)?;
        }
    }
}

/// A copy of the market view (its `Clone`) lists exactly what the
/// original does, `near` included: the copy carries the location grid,
/// not only the indexes.
#[test]
fn a_copied_market_view_lists_what_the_original_does() {
    let specs: Vec<Spec> = (0..24)
        .map(|i| Spec {
            author: (i % 3) as u8,
            cat: i % 4,
            tags: (i % 32) as u8 | 1,
            loc: Some(((i % 5) as i64 - 2, (i % 7) as i64 - 3)),
            lapsed: i % 6 == 0,
            update: None,
            expire: false,
        })
        .collect();
    let (node, _, _) = market_of(&specs);
    let market = &node.views().market;
    let near = Some(Near {
        lat: 52.5,
        lng: 13.4,
        radius_km: 2.0,
    });
    let queries = [
        ListQuery::default(),
        ListQuery {
            near,
            ..ListQuery::default()
        },
        ListQuery {
            near,
            sort: Some(Sort::Nearest),
            limit: Some(3),
            ..ListQuery::default()
        },
        ListQuery {
            near,
            category: vec![Category::Offer, Category::Info],
            sort: Some(Sort::Expiring),
            ..ListQuery::default()
        },
        ListQuery {
            tags: vec!["tools".into()],
            ..ListQuery::default()
        },
    ];
    // Listed first, so the original has its counts when it is copied.
    for q in &queries {
        market.list_page(q, None, NOW).unwrap();
    }
    let copy = market.clone();
    for q in &queries {
        let want = market.list_page(q, None, NOW).unwrap();
        assert!(
            !want.items.is_empty() && !want.facets.tags.is_empty(),
            "{q:?}"
        );
        assert_eq!(copy.list_page(q, None, NOW).unwrap(), want, "{q:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `sort=nearest` over a tight cluster (many posts in each of a few
    /// grid cells, so a cell read later can hold a post nearer than those
    /// of the cells read before it) lists, page by page with small
    /// limits, exactly the naive nearest-first order.
    #[test]
    fn nearest_pages_equal_the_naive_order_in_a_tight_cluster(
        posts in proptest::collection::vec(
            (0usize..4, (-3_000i64..3_000, -3_000i64..3_000)),
            2..60,
        ),
        qs in proptest::collection::vec(
            ((-3_000i64..3_000, -3_000i64..3_000), 0.05f64..0.5, 1usize..5),
            1..6,
        ),
    ) {
        let f = Fixture::new();
        let authors = [key(2), key(3), key(4)];
        let (mut node, mut names, mut lamport) = market_of(&[]);
        for (i, (cat, (dlat, dlng))) in posts.iter().enumerate() {
            let who = &authors[i % 3];
            let id = 9000 + i as u128;
            let mut c = content_of(&format!("p{id}"), *cat, 1, None, false);
            c.location = Some(Location {
                lat: 52_500_000 + dlat,
                lng: 13_400_000 + dlng,
                label: String::new(),
            });
            add_post(&mut node, &mut names, &f, who, lamport, id, c);
            lamport = next_lamport(lamport);
        }
        for ((dlat, dlng), r, limit) in &qs {
            let q = ListQuery {
                near: Some(Near {
                    lat: 52.5 + *dlat as f64 / 1e6,
                    lng: 13.4 + *dlng as f64 / 1e6,
                    radius_km: *r,
                }),
                sort: Some(Sort::Nearest),
                limit: Some(*limit),
                ..ListQuery::default()
            };
            let want = naive(&node, &names, &q);
            let got = walk_pages(&node, &q, &want, |_| Ok(()))?;
            let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
            prop_assert_eq!(got, want, "{:?}", q);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The grid's live counts (per cell and block, per category and tag)
    /// follow the clock and the posts leaving: posts in a dense cloud
    /// expiring at many times, `near` queries (with and without a tag)
    /// at times that jump forward and back, and posts ended by their
    /// author between queries; each query's `total`, facets and posts
    /// equal the naive answer at its own time.
    #[test]
    fn near_counts_follow_the_clock_and_ended_posts(
        posts in proptest::collection::vec((spec(), dense_point(), -4i64..8), 1..80),
        steps in proptest::collection::vec(
            (
                -5i64..9,
                proptest::option::weighted(0.5, 0usize..80),
                dense_point(),
                0.3f64..4.0,
                proptest::option::weighted(0.5, 0usize..5),
            ),
            1..8,
        ),
    ) {
        let f = Fixture::new();
        let authors = [key(2), key(3), key(4)];
        let (mut node, mut names, mut lamport) = market_of(&[]);
        for (i, (s, (dlat, dlng), h)) in posts.iter().enumerate() {
            let who = &authors[s.author as usize];
            let id = 9000 + i as u128;
            let mut c = content_of(&format!("p{id}"), s.cat, s.tags, None, false);
            c.expires_at = hours(*h);
            c.location = Some(Location {
                lat: 52_500_000 + dlat,
                lng: 13_400_000 + dlng,
                label: String::new(),
            });
            add_post(&mut node, &mut names, &f, who, lamport, id, c);
            lamport = next_lamport(lamport);
        }
        for (at, end, (dlat, dlng), r, tag) in &steps {
            if let Some(i) = end {
                let name = names[i % names.len()];
                let who = authors.iter().find(|a| a.node_id() == name.author).unwrap();
                node.log_mut()
                    .append_received(f.event(
                        who,
                        lamport,
                        (u128::from(lamport) << 40) | 11,
                        Payload::PostExpired(PostExpired {
                            target: name.id,
                            reason: hearth_proto::ExpiryReason::Fulfilled,
                        }),
                    ))
                    .unwrap();
                lamport = next_lamport(lamport);
            }
            let now = hours(*at);
            let q = ListQuery {
                near: Some(Near {
                    lat: 52.5 + *dlat as f64 / 1e6,
                    lng: 13.4 + *dlng as f64 / 1e6,
                    radius_km: *r,
                }),
                tags: tag.map(|t| vec![TAGS[t].to_owned()]).unwrap_or_default(),
                limit: Some(200),
                ..ListQuery::default()
            };
            page_equals_naive(&node, &names, &q, now)?;
        }
    }
}

/// Grid cells are 2,000 microdegrees on a side (`CELL_UDEG` in the
/// listing): posts and circles are placed on and one microdegree beside
/// their corners.
const CELL: i64 = 2_000;

/// Grid corners to build around, in microdegrees: both hemispheres, the
/// equator and the prime meridian (where rows and columns -1 and 0 meet),
/// and high latitudes (cells some tens of metres wide, inside the grid's
/// 85° limit).
const ORIGINS: [(i64, i64); 5] = [
    (52_500_000, 13_400_000),
    (-52_500_000, -13_400_000),
    (0, 0),
    (80_000_000, 100_000_000),
    (-84_000_000, -170_000_000),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `near` with posts on grid-cell corners and the circle's rim passing
    /// within a metre of one of them, in both hemispheres, at the equator
    /// and the prime meridian and at high latitudes: the circle's centre
    /// lies on the diagonal through that post's corner, so the post is
    /// the farthest or the nearest point of its cell, and a cell that only
    /// touches the circle by less than the grid's slack is still searched,
    /// one that reaches past it by less than that is not taken as wholly
    /// inside. Every sort, categories and a tag: `total`, facets and pages
    /// equal the naive answer.
    #[test]
    fn near_rims_through_cell_corners_equal_the_naive_listing(
        origin in 0usize..ORIGINS.len(),
        posts in proptest::collection::vec(
            ((-4i64..=4, -4i64..=4), (-1i64..=1, -1i64..=1), 0usize..4, 0u8..32, -2i64..8),
            1..40,
        ),
        qs in proptest::collection::vec(
            (0usize..40, 1i64..=4, (proptest::bool::ANY, proptest::bool::ANY), -900i64..=900, 0usize..6, 1usize..4),
            1..6,
        ),
    ) {
        let (lat0, lng0) = ORIGINS[origin];
        let f = Fixture::new();
        let authors = [key(2), key(3), key(4)];
        let (mut node, mut names, mut lamport) = market_of(&[]);
        let mut at = Vec::new();
        for (i, ((a, b), (ja, jb), cat, tags, h)) in posts.iter().enumerate() {
            let who = &authors[i % 3];
            let id = 11_000 + i as u128;
            let mut c = content_of(&format!("p{id}"), *cat, *tags, None, false);
            c.expires_at = hours(*h);
            let (lat, lng) = (lat0 + a * CELL + ja, lng0 + b * CELL + jb);
            c.location = Some(Location { lat, lng, label: String::new() });
            add_post(&mut node, &mut names, &f, who, lamport, id, c);
            lamport = next_lamport(lamport);
            at.push(((*a, *b), (lat, lng)));
        }
        for (pivot, m, (north, east), delta_mm, kind, limit) in &qs {
            let ((a, b), (plat, plng)) = at[pivot % at.len()];
            // The centre: `m` cells along a diagonal from the pivot's
            // corner, so the pivot is the farthest (or the nearest) point
            // of its cell from it.
            let sign = |s: bool| if s { 1 } else { -1 };
            let clat = lat0 + (a + *m * sign(*north)) * CELL;
            let clng = lng0 + (b + *m * sign(*east)) * CELL;
            let (clat, clng) = (clat as f64 / 1e6, clng as f64 / 1e6);
            let d = haversine_km(clat, clng, plat as f64 / 1e6, plng as f64 / 1e6);
            let n = Near { lat: clat, lng: clng, radius_km: d + *delta_mm as f64 / 1e6 };
            let mut q = ListQuery { near: Some(n), limit: Some(200), ..ListQuery::default() };
            match kind {
                0 => {}
                1 => q.category = vec![Category::ALL[*pivot % 4], Category::ALL[(*pivot + 1) % 4]],
                2 => q.tags = vec![TAGS[*pivot % TAGS.len()].to_owned()],
                3 => q.sort = Some(Sort::Expiring),
                4 => q.past_ttl = Some(PastTtl::Include),
                _ => {
                    q.sort = Some(Sort::Nearest);
                    q.limit = Some(*limit);
                }
            }
            if q.limit == Some(200) {
                page_equals_naive(&node, &names, &q, NOW)?;
            } else {
                let want = naive(&node, &names, &q);
                let got = walk_pages(&node, &q, &want, |_| Ok(()))?;
                let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
                prop_assert_eq!(got, want, "{:?}", q);
            }
        }
    }
}

/// A query's `category` and `tags` each take one value or a list of
/// them (`"category": "offer"` or `["offer", "request"]`), as the API
/// documents.
#[test]
fn category_and_tags_take_one_value_or_a_list() {
    let one: ListQuery = serde_json::from_str(r#"{"category": "offer", "tags": "tools"}"#).unwrap();
    assert_eq!(one.category, vec![Category::Offer]);
    assert_eq!(one.tags, vec!["tools".to_owned()]);
    let many: ListQuery =
        serde_json::from_str(r#"{"category": ["offer", "request"], "tags": ["tools", "kids"]}"#)
            .unwrap();
    assert_eq!(many.category, vec![Category::Offer, Category::Request]);
    assert_eq!(many.tags, vec!["tools".to_owned(), "kids".to_owned()]);
    let none: ListQuery = serde_json::from_str("{}").unwrap();
    assert_eq!(none, ListQuery::default());
}

/// `near`'s `radius_km` is admitted up to exactly RADIUS_KM_MAX (half
/// the Earth's circumference, so every located post is within it) and
/// refused just above it, naming `radius_km`.
#[test]
fn near_radius_is_admitted_up_to_its_maximum() {
    let specs: Vec<Spec> = (0..3)
        .map(|i| Spec {
            author: 0,
            cat: i,
            tags: 1,
            loc: Some((i as i64, -(i as i64))),
            lapsed: false,
            update: None,
            expire: false,
        })
        .collect();
    let (node, _, _) = market_of(&specs);
    let near = |radius_km: f64| ListQuery {
        near: Some(Near {
            lat: -30.0,
            lng: 100.0,
            radius_km,
        }),
        ..ListQuery::default()
    };
    assert_eq!(node.market_list(NOW, near(RADIUS_KM_MAX)).unwrap().total, 3);
    // The next float above the maximum (`f64::next_up` is newer than the
    // MSRV).
    let above = f64::from_bits(RADIUS_KM_MAX.to_bits() + 1);
    let e = node.market_list(NOW, near(above)).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("radius_km"), "{}", e.message);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// `since_lamport` equal to a post's own content Lamport time leaves
    /// that post out (only newer content is listed), also when the query
    /// walks every post of an author or a tag and checks each: for every
    /// post, the listing and counts since its own time, with its author
    /// or one of its tags, equal the naive answer.
    #[test]
    fn since_a_posts_own_lamport_leaves_it_out(
        specs in proptest::collection::vec(spec(), 1..30),
    ) {
        let (node, names, _) = market_of(&specs);
        for name in &names {
            let Some(p) = node.views().market.get(name) else {
                continue;
            };
            let since = Some(p.content_event.lamport);
            let by_author = ListQuery {
                since_lamport: since,
                author: Some(p.author),
                limit: Some(200),
                ..ListQuery::default()
            };
            page_equals_naive(&node, &names, &by_author, NOW)?;
            if let Some(t) = p.content.tags.first() {
                let by_tag = ListQuery {
                    since_lamport: since,
                    tags: vec![t.clone()],
                    limit: Some(200),
                    ..ListQuery::default()
                };
                page_equals_naive(&node, &names, &by_tag, NOW)?;
            }
        }
    }
}

/// A listing with `q` lists only posts the search found, whichever set
/// is smaller: an author's, a tag's, a category's or a circle's posts
/// fewer than the search's hits still only narrow them (by relevance and
/// with a sort), never stand in for them.
#[test]
fn a_search_restricts_a_listing_with_a_smaller_filter() {
    let f = Fixture::new();
    let authors = [key(2), key(3)];
    let (mut node, _, mut lamport) = market_of(&[]);
    // (author, title, category, tag bits, location): five posts say
    // "ladder"; the first author's two (one of them not a ladder) are the
    // only offers, the only "tools" and the only ones near (0, 0).
    let posts = [
        (0, "ladder to lend", 0, 1, Some((0, 0))),
        (0, "fresh bread", 0, 1, Some((0, 0))),
        (1, "ladder wanted", 1, 2, Some((15, 15))),
        (1, "long ladder", 2, 4, None),
        (1, "ladder rack", 3, 8, None),
        (1, "another ladder", 1, 2, None),
    ];
    for (i, (who, title, cat, tags, loc)) in posts.into_iter().enumerate() {
        let c = content_of(title, cat, tags, loc, false);
        node.log_mut()
            .append_received(f.post_with(&authors[who], lamport, 100 + i as u128, c))
            .unwrap();
        lamport = next_lamport(lamport);
    }
    let (lat, lng) = point(0, 0);
    let filters = [
        ListQuery {
            author: Some(authors[0].node_id()),
            ..ListQuery::default()
        },
        ListQuery {
            tags: vec!["tools".into()],
            ..ListQuery::default()
        },
        ListQuery {
            category: vec![Category::Offer],
            ..ListQuery::default()
        },
        ListQuery {
            near: Some(Near {
                lat,
                lng,
                radius_km: 0.5,
            }),
            ..ListQuery::default()
        },
    ];
    for filter in filters {
        // Without `q` the filter lists both of the first author's posts.
        assert_eq!(node.market_list(NOW, filter.clone()).unwrap().total, 2);
        for sort in [None, Some(Sort::Newest)] {
            let q = ListQuery {
                q: Some("ladder".into()),
                sort,
                ..filter.clone()
            };
            let page = node.market_list(NOW, q.clone()).unwrap();
            let titles: Vec<&str> = page.posts.iter().map(|p| p.title.as_str()).collect();
            assert_eq!(titles, ["ladder to lend"], "{q:?}");
            assert_eq!(page.total, 1, "{q:?}");
        }
    }
}

/// A post whose expiry is the query's own time is no longer live: `near`
/// counts and lists (cells wholly inside the circle and cells on its
/// edge alike) leave out every post expiring at `now`, beside posts that
/// live on in the same cells, and hold them a millisecond before.
#[test]
fn near_leaves_out_posts_expiring_at_the_query_time() {
    let f = Fixture::new();
    let authors = [key(2), key(3), key(4)];
    let (mut node, mut names, mut lamport) = market_of(&[]);
    let expiry = hours(1);
    // Every ~50 m due north of the centre out to ~2 km: cells wholly
    // inside a 1 km circle, cells on its edge and cells outside.
    for i in 0..40i64 {
        let who = &authors[(i % 3) as usize];
        let id = 12_000 + i as u128;
        let mut c = content_of(
            &format!("p{id}"),
            (i % 4) as usize,
            (i % 32) as u8,
            None,
            false,
        );
        // Every other post lives an hour longer, so each cell (the
        // counts read only cells holding a live post) keeps one.
        c.expires_at = if i % 2 == 0 { expiry } else { hours(2) };
        c.location = Some(Location {
            lat: 52_500_000 + i * 450,
            lng: 13_400_000 + (i % 5) * 300,
            label: String::new(),
        });
        add_post(&mut node, &mut names, &f, who, lamport, id, c);
        lamport = next_lamport(lamport);
    }
    let q = ListQuery {
        near: Some(Near {
            lat: 52.5,
            lng: 13.4,
            radius_km: 1.0,
        }),
        limit: Some(200),
        ..ListQuery::default()
    };
    for now in [expiry - 1, expiry, expiry + 1, expiry - 1] {
        page_equals_naive(&node, &names, &q, now).unwrap();
    }
    let before = node.market_list(expiry - 1, q.clone()).unwrap().total;
    let at = node.market_list(expiry, q).unwrap().total;
    assert!(at > 5 && before > at + 5, "{before} then {at}");
}

/// `sort=nearest` over a circle the location grid does not answer (wider
/// than the grid's 50 km) lists nearest first like any other: walked page
/// by page through the cursor, it equals the naive order (not the order
/// of expiry or creation the other sorts walk in).
#[test]
fn nearest_pages_over_a_circle_too_wide_for_the_grid_equal_the_naive_order() {
    let specs: Vec<Spec> = (0..30)
        .map(|i| Spec {
            author: (i % 3) as u8,
            cat: i % 4,
            tags: (i % 32) as u8,
            // Scattered so that creation order is not distance order.
            loc: Some(((i as i64 * 7) % 39 - 19, (i as i64 * 11) % 39 - 19)),
            lapsed: false,
            update: None,
            expire: false,
        })
        .collect();
    let (node, names, _) = market_of(&specs);
    for radius_km in [80.0, 5_000.0] {
        let q = ListQuery {
            near: Some(Near {
                lat: 52.3,
                lng: 13.1,
                radius_km,
            }),
            sort: Some(Sort::Nearest),
            limit: Some(4),
            ..ListQuery::default()
        };
        let want = naive(&node, &names, &q);
        assert_eq!(want.len(), 30);
        let got = walk_pages(&node, &q, &want, |_| Ok(())).unwrap();
        let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
        assert_eq!(got, want, "{q:?}");
    }
}

/// `sort=nearest` reads a cell whose centre is farther than the page's
/// farthest post so far while a point of it may still be nearer: with the
/// circle's centre on a cell's east edge, two posts at that cell's west
/// corners (about 175 m away) and one two cells east (about 135 m), the
/// nearest-first pages list the far cell's post first, in both
/// hemispheres.
#[test]
fn nearest_reads_a_farther_cell_that_holds_a_nearer_post() {
    for (centre_lat, lats) in [
        (52.501, [52_500_000, 52_501_999, 52_501_000]),
        (-52.501, [-52_500_001, -52_502_000, -52_501_000]),
    ] {
        let f = Fixture::new();
        let authors = [key(2), key(3), key(4)];
        let (mut node, mut names, mut lamport) = market_of(&[]);
        let lngs = [13_400_000, 13_400_000, 13_404_000];
        for (i, (lat, lng)) in lats.into_iter().zip(lngs).enumerate() {
            let who = &authors[i];
            let id = 13_000 + i as u128;
            let mut c = content_of(&format!("p{id}"), 0, 1, None, false);
            c.location = Some(Location {
                lat,
                lng,
                label: String::new(),
            });
            add_post(&mut node, &mut names, &f, who, lamport, id, c);
            lamport = next_lamport(lamport);
        }
        let q = ListQuery {
            near: Some(Near {
                lat: centre_lat,
                lng: 13.401_999,
                radius_km: 0.3,
            }),
            sort: Some(Sort::Nearest),
            limit: Some(1),
            ..ListQuery::default()
        };
        let want = naive(&node, &names, &q);
        assert_eq!(want.len(), 3, "{q:?}");
        assert_eq!(
            want[0].key(),
            names[2],
            "the post two cells east is nearest"
        );
        let got = walk_pages(&node, &q, &want, |_| Ok(())).unwrap();
        let want: Vec<PostKey> = want.iter().map(|p| p.key()).collect();
        assert_eq!(got, want, "{q:?}");
    }
}

/// A circle holding fewer posts than a tag, an author or `since` lists
/// only the circle's matches: with a popular tag only its tagged posts,
/// with an author only theirs, with `since` only the newer ones, as the
/// naive listing does.
#[test]
fn a_small_circle_with_a_popular_filter_lists_only_its_matches() {
    let f = Fixture::new();
    let authors = [key(2), key(3), key(4)];
    let (mut node, mut names, mut lamport) = market_of(&[]);
    let mut middle = 0;
    for i in 0..200i64 {
        let who = &authors[(i % 3) as usize];
        let id = 20_000 + i as u128;
        // Ten posts ~11 m apart at the centre, every other one tagged
        // "tools"; the rest tagged "tools", 11 to 33 km north of it.
        let (bits, lat) = if i < 10 {
            (if i % 2 == 0 { 1 } else { 2 }, 52_500_000 + i * 100)
        } else {
            (1, 52_600_000 + i * 1_000)
        };
        let mut c = content_of(&format!("p{id}"), (i % 4) as usize, bits, None, false);
        c.location = Some(Location {
            lat,
            lng: 13_400_000,
            label: String::new(),
        });
        add_post(&mut node, &mut names, &f, who, lamport, id, c);
        if i == 5 {
            middle = lamport;
        }
        lamport = next_lamport(lamport);
    }
    let near = Some(Near {
        lat: 52.5,
        lng: 13.4,
        radius_km: 0.5,
    });
    let queries = [
        ListQuery {
            tags: vec!["tools".into()],
            ..ListQuery::default()
        },
        ListQuery {
            author: Some(authors[1].node_id()),
            ..ListQuery::default()
        },
        ListQuery {
            since_lamport: Some(middle),
            ..ListQuery::default()
        },
    ];
    for q in queries {
        let q = ListQuery {
            near,
            limit: Some(200),
            ..q
        };
        page_equals_naive(&node, &names, &q, NOW).unwrap();
        let page = node.market_list(NOW, q.clone()).unwrap();
        assert!(
            (3..=5).contains(&page.total),
            "{q:?}: {} of the circle's ten",
            page.total
        );
    }
}
