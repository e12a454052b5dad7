//! Keyword search (`market.search`, issue 13) on one node: folding,
//! stemming, compounds, misspellings, the seed's substring rule, filters,
//! deterministic ranking, and an index that follows posts as they are
//! added, updated, expired and reloaded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use hearth_node::core::bus::{Caller, ErrorCode};
use hearth_node::core::search::BODY_INDEXED_CHARS_MAX;
use hearth_node::core::services::market::{
    ExpireParams, PostParams, SearchParams, SearchResult, UpdateParams, QUERY_CHARS_MAX,
};
use hearth_node::core::views::market::{ListQuery, Near, Sort};
use hearth_node::core::{Config, Node};
use hearth_node::store::MemoryStore;
use hearth_proto::{Category, EventId, ExpiryReason, Level, Location};

struct Market {
    node: Node<MemoryStore>,
}

impl Market {
    fn new() -> Self {
        let f = Fixture::new();
        Market {
            node: f.admitted_node(&f.anchor, Level::Anchor),
        }
    }

    fn post(&mut self, category: Category, title: &str, body: &str, tags: &[&str]) -> EventId {
        self.node
            .market_post(
                NOW,
                Caller::Local,
                PostParams {
                    category,
                    title: title.into(),
                    body: body.into(),
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    ttl_seconds: None,
                    location: None,
                    client_id: None,
                },
            )
            .unwrap()
            .post
            .id
    }

    fn offer(&mut self, title: &str, body: &str) -> EventId {
        self.post(Category::Offer, title, body, &[])
    }

    fn search_at(&self, now: u64, p: SearchParams) -> SearchResult {
        self.node.market_search(now, p).unwrap()
    }

    fn search(&self, query: &str) -> SearchResult {
        self.search_at(
            NOW,
            SearchParams {
                query: query.into(),
                ..Default::default()
            },
        )
    }

    fn ids(&self, query: &str) -> Vec<EventId> {
        self.search(query).results.iter().map(|h| h.id).collect()
    }
}

/// Umlauts, ß and case fold away: "schlussel" finds "Schlüssel" and
/// "STRASSE" finds "Straße".
#[test]
fn search_folds_case_and_diacritics() {
    let mut m = Market::new();
    let key = m.offer("Schlüssel gefunden", "am Briefkasten");
    let street = m.offer("Straße gesperrt", "wegen Bauarbeiten");
    m.offer("Fahrrad", "zu verschenken");
    assert_eq!(m.ids("schlussel"), vec![key]);
    assert_eq!(m.ids("STRASSE"), vec![street]);
    assert_eq!(m.ids("Bauarbeiten straße"), vec![street]);
}

/// German and English word forms meet at their stems, whatever the
/// language of the query: "Häusern" finds "Haus", "berries" finds "berry",
/// "Kinder" finds "Kind" (none is a substring of the other, and too few
/// trigrams are shared to match without the stem).
#[test]
fn search_matches_german_and_english_word_forms() {
    let mut m = Market::new();
    let haus = m.offer("Klingel kaputt in Haus 3", "Elektriker gesucht");
    let berry = m.offer("Fresh berry jam", "made this week");
    let kind = m.offer("Sitz für ein Kind", "bis 22 kg");
    m.offer("Brot", "frisch gebacken");
    let found = m.search("Häusern");
    assert_eq!(found.results.len(), 1, "{found:?}");
    assert_eq!(found.results[0].id, haus);
    assert!(found.results[0].score > 0.0);
    assert_eq!(m.ids("berries"), vec![berry]);
    assert_eq!(m.ids("Kinder"), vec![kind]);
}

/// A word inside a compound is found through trigrams of its stem:
/// "Kanistern" (not a substring of the post) finds "Wasserkanister".
#[test]
fn search_finds_a_word_inside_a_compound() {
    let mut m = Market::new();
    let canister = m.offer("Wasserkanister zu verleihen", "20 Liter mit Hahn");
    m.offer("Gartenschlauch", "30 Meter");
    m.offer("Kinderwagen", "gut erhalten");
    let found = m.search("Kanistern");
    assert_eq!(found.results.len(), 1, "{found:?}");
    assert_eq!(found.results[0].id, canister);
    assert!(found.results[0].score > 0.0);
}

/// A one-letter typo still finds the post ("Bohrmashine").
#[test]
fn search_tolerates_a_typo() {
    let mut m = Market::new();
    let drill = m.offer("Bohrmaschine zum Ausleihen", "mit Bohrersatz");
    m.offer("Rasenmäher", "im Gartenhaus");
    assert_eq!(m.ids("Bohrmashine"), vec![drill]);
}

/// The seed rule: every post containing the query as a case-insensitive
/// substring is in the results, even when the match lies past the indexed
/// start of the body (so the index gives it no score) and better-scoring
/// posts would fill the limit.
#[test]
fn every_substring_match_is_in_the_results() {
    let mut m = Market::new();
    let filler = "x ".repeat(BODY_INDEXED_CHARS_MAX);
    let mut deep = Vec::new();
    for i in 0..3 {
        deep.push(m.offer(&format!("Notiz {i}"), &format!("{filler} Ersatzschlüssel")));
    }
    for i in 0..12 {
        // Spelt without the umlaut: the index matches them (folded), the
        // substring rule does not.
        m.offer(&format!("Schlussel {i}"), "Schlussel, Schlussel, Schlussel");
    }
    let r = m.search_at(
        NOW,
        SearchParams {
            query: "SCHLÜSSEL".into(),
            limit: Some(5),
            ..Default::default()
        },
    );
    assert_eq!(r.results.len(), 5);
    let ids: Vec<EventId> = r.results.iter().map(|h| h.id).collect();
    for d in &deep {
        assert!(ids.contains(d), "substring match {d} missing from {ids:?}");
    }
}

/// Equal scores are ordered by post key, and two nodes that received the
/// same posts in opposite orders answer identically.
#[test]
fn ranking_is_deterministic_with_ties_by_post_key() {
    let f = Fixture::new();
    let events: Vec<_> = (0..6u128)
        .map(|i| {
            f.post(
                &f.anchor,
                1 + i as u64,
                100 + (i * 7919) % 13,
                "Leiter zu verleihen",
            )
        })
        .collect();
    let mut a = f.node(&key(5));
    let mut b = f.node(&key(6));
    for e in &events {
        a.log_mut().append_received(e.clone()).unwrap();
    }
    for e in events.iter().rev() {
        b.log_mut().append_received(e.clone()).unwrap();
    }
    let p = SearchParams {
        query: "leiter".into(),
        ..Default::default()
    };
    let ra = a.market_search(NOW, p.clone()).unwrap();
    let rb = b.market_search(NOW, p).unwrap();
    assert_eq!(ra, rb);
    let ids: Vec<EventId> = ra.results.iter().map(|h| h.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids.len(), 6);
    assert_eq!(ids, sorted, "ties ordered by post key (one author: by id)");
}

/// An update re-indexes the post in an index already built: its old words
/// no longer find it, its new ones do.
#[test]
fn an_update_reindexes_the_post() {
    let mut m = Market::new();
    let id = m.offer("Leiter zu verleihen", "Alu, 3 m");
    assert_eq!(
        m.ids("Leiter"),
        vec![id],
        "the first search builds the index"
    );
    m.node
        .market_update(
            NOW + 1,
            Caller::Local,
            UpdateParams {
                id,
                title: Some("Fahrradanhänger zu verleihen".into()),
                body: Some("bis 40 kg".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(m.ids("Leiter").is_empty());
    assert_eq!(m.ids("Anhänger"), vec![id]);
}

/// Expired posts and posts past their TTL (not yet swept) are not found;
/// live ones still are.
#[test]
fn expired_and_lapsed_posts_are_not_found() {
    let mut m = Market::new();
    let ended = m.offer("Leiter zu verleihen", "");
    let live = m.offer("Leiter, lang", "");
    let short = m
        .node
        .market_post(
            NOW,
            Caller::Local,
            PostParams {
                category: Category::Offer,
                title: "Leiter für heute".into(),
                body: String::new(),
                tags: vec![],
                ttl_seconds: Some(60),
                location: None,
                client_id: None,
            },
        )
        .unwrap()
        .post
        .id;
    assert_eq!(
        m.ids("leiter").len(),
        3,
        "the first search builds the index"
    );
    m.node
        .market_expire(
            NOW + 1,
            Caller::Local,
            ExpireParams {
                id: ended,
                author: None,
                reason: ExpiryReason::Fulfilled,
            },
        )
        .unwrap();
    let now = m.ids("leiter");
    assert!(now.contains(&live) && now.contains(&short) && !now.contains(&ended));
    let later = m.search_at(
        NOW + 61_000,
        SearchParams {
            query: "leiter".into(),
            ..Default::default()
        },
    );
    let later: Vec<EventId> = later.results.iter().map(|h| h.id).collect();
    assert_eq!(later, vec![live]);
}

/// Category and tag filters apply before ranking and the limit: the best
/// post of the filtered set comes back even when better posts are outside
/// it.
#[test]
fn filters_apply_before_ranking() {
    let mut m = Market::new();
    for i in 0..5 {
        m.post(
            Category::Offer,
            &format!("Wasser {i}"),
            "Wasser Wasser",
            &["wasser"],
        );
    }
    let emergency = m.post(Category::Emergency, "Kein Wasser im Haus", "", &["notfall"]);
    let tagged = m.post(
        Category::Request,
        "Suche Kanister",
        "für Wasser",
        &["Notfall"],
    );
    let r = m.search_at(
        NOW,
        SearchParams {
            query: "wasser".into(),
            category: Some(Category::Emergency),
            limit: Some(1),
            ..Default::default()
        },
    );
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].id, emergency);
    let r = m.search_at(
        NOW,
        SearchParams {
            query: "wasser".into(),
            tags: vec![" NOTFALL ".into()],
            ..Default::default()
        },
    );
    let mut ids: Vec<EventId> = r.results.iter().map(|h| h.id).collect();
    ids.sort();
    let mut want = vec![emergency, tagged];
    want.sort();
    assert_eq!(ids, want);
}

/// `near` keeps only posts with a location inside the circle (haversine,
/// as `market.list`'s `near`), before ranking: a post without a location
/// and one 5 km away are left out even though they match best; a bad
/// circle is a `bad_request` naming the field.
#[test]
fn near_filters_by_distance_before_ranking() {
    let mut m = Market::new();
    let at = |lat: i64, lng: i64| {
        Some(Location {
            lat,
            lng,
            label: String::new(),
        })
    };
    let mut located = |title: &str, location: Option<Location>| {
        m.node
            .market_post(
                NOW,
                Caller::Local,
                PostParams {
                    category: Category::Offer,
                    title: title.into(),
                    body: "Leiter Leiter Leiter".into(),
                    tags: Vec::new(),
                    ttl_seconds: None,
                    location,
                    client_id: None,
                },
            )
            .unwrap()
            .post
            .id
    };
    // Berlin Alexanderplatz 52.5219, 13.4132; 0.01 deg of latitude ~ 1.1 km.
    let close = located("Leiter", at(52_525_900, 13_413_200));
    let _far = located("Leiter Leiter", at(52_566_900, 13_413_200));
    let _nowhere = located("Leiter Leiter Leiter", None);
    let near = |radius_km: f64| SearchParams {
        query: "leiter".into(),
        near: Some(Near {
            lat: 52.5219,
            lng: 13.4132,
            radius_km,
        }),
        ..Default::default()
    };
    let r = m.search_at(NOW, near(2.0));
    let ids: Vec<EventId> = r.results.iter().map(|h| h.id).collect();
    assert_eq!(ids, vec![close]);
    assert_eq!(m.search_at(NOW, near(10.0)).results.len(), 2);
    assert_eq!(m.search("leiter").results.len(), 3);
    let err = m.node.market_search(NOW, near(-1.0)).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("radius_km"), "{}", err.message);
}

/// A listing with `q` and no sort is in the search's relevance order and
/// pages by position (`r.<n>` cursors); with a sort it is in that order;
/// a cursor that is not a relevance one, or a bad limit, is refused.
#[test]
fn listing_with_q_pages_in_relevance_order() {
    let mut m = Market::new();
    let body_only = m.offer("Werkzeug", "eine Leiter");
    let title = m.offer("Leiter Leiter", "Leiter zu verleihen");
    let _other = m.offer("Brot", "frisch");
    let list = |q: ListQuery| m.node.market_list(NOW, q);
    let query = |cursor: Option<String>, sort: Option<Sort>| ListQuery {
        q: Some("leiter".into()),
        limit: Some(1),
        cursor,
        sort,
        ..ListQuery::default()
    };
    let first = list(query(None, None)).unwrap();
    assert_eq!(first.posts[0].id, title, "the best match first");
    assert_eq!(first.total, 2);
    let cursor = first.next_cursor.clone().unwrap();
    assert_eq!(cursor, "r.1");
    let second = list(query(Some(cursor), None)).unwrap();
    assert_eq!(second.posts[0].id, body_only);
    assert_eq!(second.next_cursor, None);
    let newest = list(query(None, Some(Sort::Newest))).unwrap();
    assert_eq!(newest.posts[0].id, title, "newest first with a sort");
    let oldest = list(query(None, Some(Sort::Oldest))).unwrap();
    assert_eq!(oldest.posts[0].id, body_only);
    let keyset = oldest.next_cursor.unwrap();
    for bad in [keyset, "r.x".to_owned(), "x".to_owned()] {
        let err = list(query(Some(bad.clone()), None)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{bad}");
        assert!(
            err.message.contains("by relevance"),
            "{bad}: {}",
            err.message
        );
    }
    let err = list(ListQuery {
        limit: Some(0),
        ..query(None, None)
    })
    .unwrap_err();
    assert!(err.message.contains("limit must be"), "{}", err.message);
}

/// The answer says which search answered (`keyword`), that it is not
/// degraded (`null`), and gives each result a score beside the post.
#[test]
fn the_answer_names_mode_degraded_and_scores() {
    let mut m = Market::new();
    m.offer("Ladder to lend", "6 m");
    m.offer("Drill", "and a ladder hook");
    let r = m.search("ladder");
    assert_eq!(r.mode, "keyword");
    assert_eq!(r.degraded, None);
    assert!(r.results[0].score >= r.results[1].score);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["degraded"].is_null(), "{json}");
    assert_eq!(json["results"][0]["post"]["title"], "Ladder to lend");
    assert!(json["results"][0]["score"].as_f64().unwrap() > 0.0);
    let back: SearchResult = serde_json::from_value(json).unwrap();
    assert_eq!(back.results[0].title, "Ladder to lend");
}

/// An empty or over-long query is a `bad_request` that says what to do.
#[test]
fn bad_queries_are_refused() {
    let m = Market::new();
    for query in [String::new(), "   ".into(), "x".repeat(QUERY_CHARS_MAX + 1)] {
        let err = m
            .node
            .market_search(
                NOW,
                SearchParams {
                    query,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(
            err.message.contains("empty") || err.message.contains("at most"),
            "{}",
            err.message
        );
    }
}

/// After a restart (views restored from the snapshot) the index is rebuilt
/// and answers as before.
#[test]
fn the_index_is_rebuilt_after_a_restart() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let mut m_ids = Vec::new();
    for title in ["Leiter zu verleihen", "Bohrmaschine", "Ladder"] {
        m_ids.push(
            node.market_post(
                NOW,
                Caller::Local,
                PostParams {
                    category: Category::Offer,
                    title: title.into(),
                    body: String::new(),
                    tags: vec![],
                    ttl_seconds: None,
                    location: None,
                    client_id: None,
                },
            )
            .unwrap()
            .post
            .id,
        );
    }
    let p = SearchParams {
        query: "leiter".into(),
        ..Default::default()
    };
    let before = node.market_search(NOW, p.clone()).unwrap();
    node.shutdown().unwrap();
    let store = node.into_store().unwrap();
    let restarted = Node::new(f.anchor.clone(), &f.genesis, store, Config::default(), 9).unwrap();
    assert_eq!(restarted.market_search(NOW, p).unwrap(), before);
    assert_eq!(before.results[0].id, m_ids[0]);
}

/// A post whose author is no longer a member leaves the index with the
/// view's other indexes.
#[test]
fn a_removed_members_posts_are_not_found() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let who = key(7);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 1, &who, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(f.post(&who, 2, 500, "Leiter zu verleihen"))
        .unwrap();
    let p = SearchParams {
        query: "leiter".into(),
        ..Default::default()
    };
    assert_eq!(node.market_search(NOW, p.clone()).unwrap().results.len(), 1);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 3, &who, Level::Removed))
        .unwrap();
    assert!(node.market_search(NOW, p).unwrap().results.is_empty());
}

/// An index kept up to date post by post answers exactly like one built
/// from scratch after the same events (same posts, same scores).
#[test]
fn an_incremental_index_equals_a_fresh_one() {
    let f = Fixture::new();
    let who = key(7);
    let p = |q: &str| SearchParams {
        query: q.into(),
        ..Default::default()
    };
    let mut events = vec![f.member_set(&f.anchor, 1, &who, Level::Member)];
    let titles = [
        "Leiter zu verleihen",
        "Ladder for the weekend",
        "Wasserkanister",
        "Leitern und Kanister",
        "Bohrmaschine",
    ];
    for (i, t) in titles.iter().enumerate() {
        events.push(f.post(&who, 2 + i as u64, 600 + i as u128, t));
    }
    events.push(f.update(&who, 10, 602, "Kanister, leer"));
    events.push(f.expire(&who, 11, 600, ExpiryReason::Fulfilled));
    events.push(f.post(&f.anchor, 12, 700, "Leiter, Kanister, Bohrer"));
    let mut early = f.node(&key(5));
    let mut late = f.node(&key(6));
    for e in &events {
        early.log_mut().append_received(e.clone()).unwrap();
        // Searching after every event builds the index at the first and
        // then keeps it up to date.
        early.market_search(NOW, p("leiter")).unwrap();
        late.log_mut().append_received(e.clone()).unwrap();
    }
    for q in ["leiter", "kanister", "ladder bohrmaschine"] {
        assert_eq!(
            early.market_search(NOW, p(q)).unwrap(),
            late.market_search(NOW, p(q)).unwrap(),
            "query {q:?}"
        );
    }
}

/// `degraded` decodes from a text and from null (bus/2 carries null as
/// null, so the old empty-array shim is gone); anything else is refused.
#[test]
fn degraded_decodes_from_text_and_null() {
    use ciborium::Value;
    let answer = |degraded: Value| {
        Value::Map(vec![
            (Value::Text("mode".into()), Value::Text("keyword".into())),
            (Value::Text("degraded".into()), degraded),
            (Value::Text("results".into()), Value::Array(vec![])),
        ])
        .deserialized::<SearchResult>()
    };
    assert_eq!(answer(Value::Null).unwrap().degraded, None);
    assert_eq!(
        answer(Value::Text("partition".into()))
            .unwrap()
            .degraded
            .as_deref(),
        Some("partition")
    );
    assert!(answer(Value::Array(vec![])).is_err());
    assert!(answer(Value::Array(vec![Value::Null])).is_err());
    assert!(answer(Value::Integer(3.into())).is_err());
}
