//! The marketplace listing (`market.list`) against a naive model: every
//! filter mix, every sort, walked page by page through the cursor, equals
//! filtering and sorting all posts by hand; `total` and facets equal a
//! count over the filtered set; refusals name what was wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use crate::common::*;
use hearth_node::core::services::market::ListResult;
use hearth_node::core::views::market::{
    haversine_km, Near, PastTtl, Sort, LIST_LIMIT_DEFAULT, TAG_FACETS_MAX,
};
use hearth_node::core::views::{ListQuery, Post, PostKey};
use hearth_node::core::{ErrorCode, Node};
use hearth_node::store::MemoryStore;
use hearth_proto::{Category, Level, Location, Payload, PostContent, PostExpired, PostUpdated};
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
            node.log_mut()
                .append_received(f.post_with(who, lamport, id, c))
                .unwrap();
            lamport = next_lamport(lamport);
            names.push(PostKey { author: who.node_id(), id: post_id(id) });
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

/// A limit of 0 or over 200, a cursor that is not one, a cursor of
/// another sort, a bad `near` and `nearest` without `near` are each
/// `bad_request` with a message naming the problem.
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
            node.log_mut()
                .append_received(f.post_with(who, lamport, id, c))
                .unwrap();
            lamport = next_lamport(lamport);
            names.push(PostKey { author: who.node_id(), id: post_id(id) });
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
            node.log_mut()
                .append_received(f.post_with(who, lamport, id, c))
                .unwrap();
            lamport = next_lamport(lamport);
            names.push(PostKey { author: who.node_id(), id: post_id(id) });
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
