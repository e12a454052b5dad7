//! The marketplace service on one node: posting, idempotency, expiry rules,
//! the sweeper, search, and restart from snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use hearth_node::core::bus::{Caller, ErrorCode};
use hearth_node::core::services::market::{
    ExpireParams, GetParams, PostParams, SearchParams, UpdateParams,
};
use hearth_node::core::views::ListQuery;
use hearth_node::core::{Config, Input, Node, Output};
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::{Category, ExpiryReason, Level, Location, Payload};

fn params(title: &str) -> PostParams {
    PostParams {
        category: Category::Offer,
        title: title.into(),
        body: "two 10-litre canisters".into(),
        tags: vec!["Water".into(), " emergency-kit ".into()],
        ttl_seconds: None,
        location: None,
        client_id: None,
    }
}

/// A post made through the service is in the log and shows in `list`.
#[test]
fn test_post_event_appears_in_view_after_apply() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let before = node.log().store().len();
    let receipt = node
        .market_post(NOW, Caller::Local, params("Water canisters"))
        .unwrap();
    assert!(receipt.created);
    assert_eq!(node.log().store().len(), before + 1);
    let list = node.market_list(NOW, ListQuery::default()).unwrap();
    assert_eq!(list.posts.len(), 1);
    assert_eq!(list.posts[0].title, "Water canisters");
    assert_eq!(
        list.posts[0].tags,
        vec!["water", "emergency-kit"],
        "tags normalised"
    );
    assert_eq!(list.posts[0].status, "active");
    assert_eq!(
        list.posts[0].expires_at,
        NOW + 7 * DAY_MS,
        "default TTL is 7 days"
    );
    let broadcast = std::iter::from_fn(|| node.poll_output())
        .filter(|o| matches!(o, Output::Broadcast(_)))
        .count();
    assert_eq!(broadcast, 1, "the new event is queued for gossip");
}

/// The same (author, client_id) returns the first post, also after a
/// restart, because the answer comes from the log-derived view.
#[test]
fn test_post_is_idempotent_on_client_id() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let p = PostParams {
        client_id: Some("web-1".into()),
        ..params("Ladder to lend")
    };
    let first = node.market_post(NOW, Caller::Local, p.clone()).unwrap();
    let second = node.market_post(NOW + 5, Caller::Local, p.clone()).unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.post.id, second.post.id);
    let events = node.log().store().len();

    let store = node.into_store().unwrap();
    let mut restarted =
        Node::new(f.anchor.clone(), &f.genesis, store, Config::default(), 8).unwrap();
    let third = restarted.market_post(NOW + 10, Caller::Local, p).unwrap();
    assert!(!third.created);
    assert_eq!(third.post.id, first.post.id);
    assert_eq!(
        restarted.log().store().len(),
        events,
        "no new event after restart"
    );
}

/// Someone other than the author cannot end a post as fulfilled, and a
/// plain member cannot mark it stale; an unknown id is `not_found`.
#[test]
fn test_expire_unauthorized_caller_rejected() {
    let f = Fixture::new();
    let alice = key(2);
    let bob = key(3);
    let mut node = f.admitted_node(&bob, Level::Member);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 2, &alice, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(f.post(&alice, 3, 42, "Alice's drill"))
        .unwrap();
    let events = node.log().store().len();
    let digest = node.views().digest();

    let err = node
        .market_expire(
            NOW,
            Caller::Local,
            ExpireParams {
                id: post_id(42),
                author: None,
                reason: ExpiryReason::Fulfilled,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
    let err = node
        .market_expire(
            NOW + 2 * DAY_MS,
            Caller::Local,
            ExpireParams {
                id: post_id(42),
                author: None,
                reason: ExpiryReason::Stale,
            },
        )
        .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::Unauthorized,
        "member is not trusted: {err}"
    );
    let err = node
        .market_expire(
            NOW,
            Caller::Local,
            ExpireParams {
                id: post_id(99),
                author: None,
                reason: ExpiryReason::Fulfilled,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(node.log().store().len(), events, "nothing was signed");
    assert_eq!(node.views().digest(), digest);
}

/// The author may expire their own post; a second expire changes nothing.
#[test]
fn author_expiry_hides_the_post_and_repeats_are_idempotent() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let id = node
        .market_post(NOW, Caller::Local, params("Bread"))
        .unwrap()
        .post
        .id;
    let r = node
        .market_expire(
            NOW,
            Caller::Local,
            ExpireParams {
                id,
                author: None,
                reason: ExpiryReason::Fulfilled,
            },
        )
        .unwrap();
    assert!(r.expired_now);
    assert_eq!(r.post.status, "expired");
    let events = node.log().store().len();
    let again = node
        .market_expire(
            NOW,
            Caller::Local,
            ExpireParams {
                id,
                author: None,
                reason: ExpiryReason::Withdrawn,
            },
        )
        .unwrap();
    assert!(!again.expired_now);
    assert_eq!(node.log().store().len(), events);
    assert!(node
        .market_list(NOW, ListQuery::default())
        .unwrap()
        .posts
        .is_empty());
}

/// On a tick past the sweep interval, a trusted node appends a
/// `market.post.expired` with reason `stale` for a post past its TTL.
#[test]
fn test_auto_expire_appends_event_with_stale_reason() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.log_mut()
        .append_received(f.member_set(&f.anchor, 2, &alice, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(f.post_with(
            &alice,
            3,
            7,
            content("Soup", Category::Offer, &[], NOW + 1000),
        ))
        .unwrap();
    // Past TTL: hidden from list at once, before any stale event.
    assert!(node
        .market_list(NOW + 2000, ListQuery::default())
        .unwrap()
        .posts
        .is_empty());

    node.handle(NOW, Input::Tick); // arms the sweep timer
    let due = node.poll_timeout().unwrap();
    assert_eq!(due, NOW + 60_000);
    let before = node.log().store().len();
    node.handle(due, Input::Tick);
    assert_eq!(node.log().store().len(), before + 1);
    let expiry = node
        .log()
        .store()
        .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .map(|e| e.unwrap())
        .find(|e| matches!(e.event().payload, Payload::PostExpired(_)))
        .expect("an expiry event was appended");
    match &expiry.event().payload {
        Payload::PostExpired(x) => {
            assert_eq!(x.reason, ExpiryReason::Stale);
            assert_eq!(x.target, post_id(7));
        }
        _ => unreachable!(),
    }
    assert_eq!(expiry.event().author, f.anchor.node_id());
    let got = node
        .market_get(
            due,
            GetParams {
                id: post_id(7),
                author: None,
            },
        )
        .unwrap();
    assert_eq!(got.status, "expired");
    assert_eq!(got.expired_reason, Some(ExpiryReason::Stale));
    // A second sweep has nothing left to do.
    node.handle(due + 60_000, Input::Tick);
    assert_eq!(node.log().store().len(), before + 1);
}

/// A plain member's sweeper only expires its own posts.
#[test]
fn member_sweeper_leaves_others_posts_alone() {
    let f = Fixture::new();
    let bob = key(3);
    let mut node = f.admitted_node(&bob, Level::Member);
    node.log_mut()
        .append_received(f.post_with(
            &f.anchor,
            2,
            7,
            content("Anchor's", Category::Info, &[], NOW + 1),
        ))
        .unwrap();
    assert_eq!(node.sweep(NOW + 10), 0);
}

/// Full replay, snapshot and restore all give the incremental state.
#[test]
fn test_replay_then_snapshot_then_restore_equal_state() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.set_member(NOW, alice.node_id(), Level::Member)
        .unwrap();
    for i in 0..20u128 {
        node.log_mut()
            .append_received(f.post(&alice, 10 + i as u64, i, &format!("post {i}")))
            .unwrap();
    }
    node.log_mut()
        .append_received(f.update(&alice, 40, 3, "post 3, updated"))
        .unwrap();
    node.log_mut()
        .append_received(f.expire(&alice, 41, 4, ExpiryReason::Fulfilled))
        .unwrap();
    let incremental = node.views().digest();

    let report = node.log_mut().replay_all().unwrap();
    assert_eq!(report.snapshot_arrival, None);
    assert_eq!(
        node.views().digest(),
        incremental,
        "full replay equals incremental"
    );

    node.shutdown().unwrap();
    // Two more events after the snapshot, replayed on restart.
    node.log_mut()
        .append_received(f.post(&alice, 50, 100, "after snapshot"))
        .unwrap();
    node.log_mut()
        .append_received(f.expire(&alice, 51, 5, ExpiryReason::Withdrawn))
        .unwrap();
    let expected = node.views().digest();
    let clock = node.log().clock();
    let store = node.into_store().unwrap();
    let restarted = Node::new(f.anchor.clone(), &f.genesis, store, Config::default(), 9).unwrap();
    let report = restarted.replay_report();
    assert!(
        report.snapshot_arrival.is_some(),
        "restored from the snapshot"
    );
    assert_eq!(
        report.replayed, 2,
        "only the arrivals after the snapshot were replayed"
    );
    assert_eq!(restarted.views().digest(), expected);
    assert_eq!(restarted.log().clock(), clock);
}

/// A corrupt snapshot is ignored with a full replay, not a failed start.
#[test]
fn corrupt_snapshot_falls_back_to_full_replay() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    node.market_post(NOW, Caller::Local, params("Jam")).unwrap();
    let expected = node.views().digest();
    let mut store = node.into_store().unwrap();
    store.put_meta("snapshot", b"\xa1garbage").unwrap();
    let restarted = Node::new(f.anchor.clone(), &f.genesis, store, Config::default(), 9).unwrap();
    assert_eq!(restarted.replay_report().snapshot_arrival, None);
    assert_eq!(restarted.views().digest(), expected);
}

/// Without an embedder, search is a case-insensitive substring match over
/// title, body and tags, title hits first, and says `mode: "keyword"`.
#[test]
fn test_search_falls_back_to_substring_when_embedding_unavailable() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let mut post = |title: &str, body: &str, tags: &[&str]| {
        node.market_post(
            NOW,
            Caller::Local,
            PostParams {
                body: body.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..params(title)
            },
        )
        .unwrap()
        .post
        .id
    };
    let in_body = post("Canisters", "clean WATER containers", &[]);
    let in_title = post("Drinking Water", "from the well", &[]);
    let in_tag = post("Filters", "ceramic", &["water-filter"]);
    let _miss = post("Bread", "sourdough", &["food"]);
    let r = node
        .market_search(
            NOW,
            SearchParams {
                query: "water".into(),
                category: None,
                limit: None,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.mode, "keyword");
    let ids: Vec<_> = r.results.iter().map(|p| p.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], in_title, "title hit ranks first");
    assert_eq!(&ids[1..], &[in_tag, in_body], "then newer first");
    let err = node
        .market_search(
            NOW,
            SearchParams {
                query: "  ".into(),
                category: None,
                limit: None,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

/// Each content limit is enforced with `bad_request` and nothing is signed.
#[test]
fn post_content_limits_are_bad_requests() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let cases = [
        PostParams {
            title: "".into(),
            ..params("x")
        },
        PostParams {
            title: "t".repeat(121),
            ..params("x")
        },
        PostParams {
            body: "b".repeat(4001),
            ..params("x")
        },
        PostParams {
            tags: (0..11).map(|i| format!("t{i}")).collect(),
            ..params("x")
        },
        PostParams {
            tags: vec!["x".repeat(33)],
            ..params("x")
        },
        PostParams {
            tags: vec!["  ".into()],
            ..params("x")
        },
        PostParams {
            ttl_seconds: Some(31 * 24 * 3600),
            ..params("x")
        },
        PostParams {
            ttl_seconds: Some(0),
            ..params("x")
        },
        PostParams {
            location: Some(Location {
                lat: 90_000_001,
                lng: 0,
                label: String::new(),
            }),
            ..params("x")
        },
        PostParams {
            location: Some(Location {
                lat: 0,
                lng: -180_000_001,
                label: String::new(),
            }),
            ..params("x")
        },
        // 4,000 four-byte characters pass the character limit but not the event size limit.
        PostParams {
            body: "🍞".repeat(4000),
            title: "🍞".repeat(120),
            ..params("x")
        },
    ];
    let events = node.log().store().len();
    for p in cases {
        let err = node.market_post(NOW, Caller::Local, p.clone()).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{}: {err}", p.title);
    }
    assert_eq!(node.log().store().len(), events);
}

/// A node that has not been admitted answers its own user's post with
/// `unauthorized` instead of making an event others would hold pending.
#[test]
fn non_member_node_cannot_post() {
    let f = Fixture::new();
    let stranger = key(9);
    let mut node = f.node(&stranger);
    let err = node
        .market_post(NOW, Caller::Local, params("Hello"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(err.message.contains("not a member"), "{err}");
    assert_eq!(node.log().store().len(), 1, "only the genesis");
}

/// Remote callers below `member` are refused by the bus, and writes are
/// never signed on a remote caller's behalf.
#[test]
fn bus_checks_trust_and_refuses_remote_writes() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let list = ciborium::Value::Map(vec![]);
    let err = node
        .call(
            NOW,
            Caller::Remote(key(9).node_id()),
            "market.list",
            list.clone(),
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    node.set_member(NOW, alice.node_id(), Level::Member)
        .unwrap();
    assert!(node
        .call(
            NOW,
            Caller::Remote(alice.node_id()),
            "market.list",
            list.clone()
        )
        .is_ok());
    let post = ciborium::Value::serialized(&params("x")).unwrap();
    let err = node
        .call(NOW, Caller::Remote(alice.node_id()), "market.post", post)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let err = node
        .call(NOW, Caller::Local, "market.nope", list)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let bad = ciborium::Value::Map(vec![(
        ciborium::Value::Text("limit".into()),
        ciborium::Value::Text("x".into()),
    )]);
    let err = node
        .call(NOW, Caller::Local, "market.list", bad)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

/// A disabled market answers every market capability with `unavailable`.
#[test]
fn disabled_market_is_unavailable() {
    let f = Fixture::new();
    let mut config = Config::default();
    config.market.enabled = false;
    let mut node = Node::new(f.anchor.clone(), &f.genesis, MemoryStore::new(), config, 1).unwrap();
    let err = node
        .market_post(NOW, Caller::Local, params("x"))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    let err = node.market_list(NOW, ListQuery::default()).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
}

/// An update replaces the content whole; the author only.
#[test]
fn update_replaces_content_and_keeps_client_id() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&f.anchor, Level::Anchor);
    let p = PostParams {
        client_id: Some("c1".into()),
        location: Some(Location {
            lat: 1,
            lng: 2,
            label: "here".into(),
        }),
        ..params("Old")
    };
    let id = node.market_post(NOW, Caller::Local, p).unwrap().post.id;
    let v = node
        .market_update(
            NOW + 1,
            Caller::Local,
            UpdateParams {
                id,
                title: Some("New".into()),
                remove_location: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(v.title, "New");
    assert_eq!(v.location, None);
    assert_eq!(v.client_id.as_deref(), Some("c1"));
    assert!(v.lamport > v.created_lamport);
    let err = node
        .market_update(
            NOW,
            Caller::Local,
            UpdateParams {
                id: post_id(12345),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

/// The market view's Lamport high-water mark is the highest Lamport time
/// of a marketplace event (post, update, expiry) it applied, not of other
/// events; its live posts are the shown, unexpired ones, newest first.
#[test]
fn max_lamport_and_live_posts_follow_the_market_events() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut node = f.node(&anchor);
    let mut add = |e| node.log_mut().append_received(e).map(drop).unwrap();
    add(f.member_set(&anchor, 1, &bob, Level::Member));
    add(f.post(&bob, 5, 10, "Ladder"));
    add(f.post(&bob, 7, 11, "Drill"));
    add(f.post(&bob, 6, 12, "Saw"));
    add(f.update(&bob, 8, 10, "Tall ladder"));
    add(f.expire(&bob, 9, 12, ExpiryReason::Fulfilled));
    add(f.member_set(&anchor, 40, &key(3), Level::Member));
    let market = &node.views().market;
    assert_eq!(
        market.max_lamport(),
        9,
        "the expiry, not the later admission"
    );
    let live: Vec<&str> = market
        .all_active(NOW)
        .map(|p| p.content.title.as_str())
        .collect();
    assert_eq!(live, vec!["Tall ladder", "Drill"], "newest content first");
    assert_eq!(market.live_posts(NOW).count(), 2);
    assert_eq!(
        market.all_active(NOW + 2 * DAY_MS).count(),
        0,
        "past their expiry"
    );
}
