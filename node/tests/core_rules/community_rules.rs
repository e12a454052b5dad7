//! The view rules and services of issue 10 on one node: the community's
//! capped TTL, `moderated` expiries, the per-author bound, settings signed
//! by anchors, display names, the last anchor, and control characters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use hearth_node::core::bus::{BusError, Caller, ErrorCode};
use hearth_node::core::services::market::{
    ExpireParams, GetParams, PostParams, PostView, UpdateParams,
};
use hearth_node::core::services::membership::{MemberSetParams, ProfileParams, SettingsParams};
use hearth_node::core::views::membership::{POSTS_PER_AUTHOR_MAX_DEFAULT, POST_TTL_MAX_S_DEFAULT};
use hearth_node::core::views::ListQuery;
use hearth_node::core::{Config, Node};
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::{
    Category, Event, EventId, ExpiryReason, Identity, Level, MemberProfile, Payload, PostContent,
    PostCreated, PostUpdated, VerifiedEvent,
};

const CAP_MS: u64 = POST_TTL_MAX_S_DEFAULT * 1000;

/// An event with its own `ts`: the TTL cap counts from the author's clock.
fn at_ts(
    f: &Fixture,
    who: &Identity,
    lamport: u64,
    id: u128,
    ts: u64,
    p: Payload,
) -> VerifiedEvent {
    Event {
        id: EventId::from_parts(NOW, id),
        ts,
        author: who.node_id(),
        lamport,
        community: f.community,
        payload: p,
    }
    .sign(who)
    .unwrap()
}

fn created(expires_at: u64, title: &str) -> Payload {
    Payload::PostCreated(PostCreated {
        content: content(title, Category::Offer, &["tools"], expires_at).into(),
        client_id: None,
    })
}

fn add(node: &mut Node<MemoryStore>, e: VerifiedEvent) {
    node.log_mut().append_received(e).unwrap();
}

fn get(node: &Node<MemoryStore>, author: &Identity, id: u128, now: u64) -> PostView {
    node.market_get(
        now,
        GetParams {
            id: post_id(id),
            author: Some(author.node_id()),
        },
    )
    .unwrap()
}

fn params(title: &str) -> PostParams {
    PostParams {
        category: Category::Offer,
        title: title.into(),
        body: "a body".into(),
        tags: vec![],
        ttl_seconds: None,
        location: None,
        client_id: None,
    }
}

fn code(r: Result<impl std::fmt::Debug, BusError>) -> (ErrorCode, String) {
    let e = r.unwrap_err();
    (e.code, e.message)
}

// ------------------------------------------------------------ capped TTL

/// A post asking never to expire is capped at its `ts` + 30 days (the
/// default community limit): listed before, gone after, shown capped.
#[test]
fn a_huge_expires_at_is_capped_at_ts_plus_the_community_limit() {
    let f = Fixture::new();
    let mallory = key(2);
    let mut node = f.admitted_node(&key(3), Level::Member);
    add(
        &mut node,
        f.member_set(&f.anchor, 2, &mallory, Level::Member),
    );
    add(
        &mut node,
        at_ts(&f, &mallory, 5, 1, NOW, created(u64::MAX, "forever")),
    );
    let before = get(&node, &mallory, 1, NOW);
    assert_eq!(before.expires_at, NOW + CAP_MS);
    assert_eq!(titles(&node, NOW + CAP_MS - 1), vec!["forever"]);
    assert!(titles(&node, NOW + CAP_MS).is_empty(), "gone at the cap");
    assert_eq!(get(&node, &mallory, 1, NOW + CAP_MS).status, "past_ttl");
}

/// The sweeper of a trusted node marks a capped post stale once the cap
/// has passed, not before, whatever `expires_at` it asked for.
#[test]
fn the_sweeper_ends_capped_posts_at_the_cap() {
    let f = Fixture::new();
    let mallory = key(2);
    let mut node = f.node(&f.anchor);
    add(
        &mut node,
        f.member_set(&f.anchor, 2, &mallory, Level::Member),
    );
    add(
        &mut node,
        at_ts(&f, &mallory, 5, 1, NOW, created(u64::MAX, "forever")),
    );
    assert_eq!(node.sweep(NOW + CAP_MS - 1), 0);
    assert_eq!(node.sweep(NOW + CAP_MS), 1);
    let p = get(&node, &mallory, 1, NOW + CAP_MS);
    assert_eq!(
        (p.status.as_str(), p.expired_reason),
        ("expired", Some(ExpiryReason::Stale))
    );
}

/// An update's own `ts` restarts the cap; an `expires_at` below the cap is
/// kept as written.
#[test]
fn the_cap_counts_from_the_shown_content_events_ts() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    add(
        &mut node,
        at_ts(&f, &alice, 5, 1, NOW, created(NOW + DAY_MS, "short")),
    );
    assert_eq!(get(&node, &alice, 1, NOW).expires_at, NOW + DAY_MS);
    let later = NOW + 10 * DAY_MS;
    let upd = Payload::PostUpdated(PostUpdated {
        target: post_id(1),
        content: content("renewed", Category::Offer, &[], u64::MAX).into(),
    });
    add(&mut node, at_ts(&f, &alice, 6, 2, later, upd));
    assert_eq!(get(&node, &alice, 1, NOW).expires_at, later + CAP_MS);
}

/// An anchor's settings lower the cap for posts already shown, and the
/// sweeper then sees them as past their TTL.
#[test]
fn new_settings_recap_existing_posts() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    add(
        &mut node,
        at_ts(&f, &alice, 5, 1, NOW, created(u64::MAX, "long")),
    );
    add(
        &mut node,
        f.event(&f.anchor, 6, 100, settings("Lindenhof", 3600, 100)),
    );
    let p = get(&node, &alice, 1, NOW);
    assert_eq!(p.expires_at, NOW + 3_600_000);
    assert_eq!(node.views().market.past_ttl(NOW + 3_600_000).count(), 1);
}

/// The service refuses a TTL above the community's limit, naming both the
/// node's and the community's limits.
#[test]
fn ttl_above_the_community_limit_is_refused_naming_both_limits() {
    let f = Fixture::new();
    let mut config = Config::default();
    config.market.max_ttl_seconds = 10 * 365 * 24 * 3600;
    let mut node = Node::new(f.anchor.clone(), &f.genesis, MemoryStore::new(), config, 1).unwrap();
    let mut p = params("too long");
    p.ttl_seconds = Some(POST_TTL_MAX_S_DEFAULT + 1);
    let (c, m) = code(node.market_post(NOW, Caller::Local, p));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(
        m.contains("market.max_ttl_seconds") && m.contains("post_ttl_max_s = 2592000"),
        "{m}"
    );
    let mut ok = params("just right");
    ok.ttl_seconds = Some(POST_TTL_MAX_S_DEFAULT);
    node.market_post(NOW, Caller::Local, ok).unwrap();
}

// ------------------------------------------------------------ moderation

/// A `moderated` expiry by a trusted member ends anyone's post at once,
/// shown with its reason; it stops counting when the moderator is no longer
/// trusted (current level, like `stale`).
#[test]
fn moderated_by_a_trusted_member_counts_while_they_are_trusted() {
    let f = Fixture::new();
    let (alice, tom) = (key(2), key(3));
    let mut node = f.admitted_node(&alice, Level::Member);
    add(&mut node, f.member_set(&f.anchor, 2, &tom, Level::Trusted));
    add(&mut node, f.post(&alice, 5, 1, "spam"));
    add(&mut node, f.expire(&tom, 6, 1, ExpiryReason::Moderated));
    let p = get(&node, &alice, 1, NOW);
    assert_eq!(p.status, "expired");
    assert_eq!(p.expired_reason, Some(ExpiryReason::Moderated));
    assert_eq!(p.expired_by, Some(tom.node_id()));
    add(&mut node, f.member_set(&f.anchor, 7, &tom, Level::Member));
    assert_eq!(get(&node, &alice, 1, NOW).status, "active");
}

/// A `moderated` expiry by a plain member is ignored by the view.
#[test]
fn moderated_by_a_plain_member_is_ignored_by_the_view() {
    let f = Fixture::new();
    let (alice, bob) = (key(2), key(3));
    let mut node = f.admitted_node(&alice, Level::Member);
    add(&mut node, f.member_set(&f.anchor, 2, &bob, Level::Member));
    add(&mut node, f.post(&alice, 5, 1, "mine"));
    add(&mut node, f.expire(&bob, 6, 1, ExpiryReason::Moderated));
    assert_eq!(get(&node, &alice, 1, NOW).status, "active");
    assert_eq!(titles(&node, NOW), vec!["mine"]);
}

/// The service lets a trusted member moderate a post before its TTL, and
/// refuses a plain member with `unauthorized`.
#[test]
fn the_service_allows_moderation_only_to_trusted_members_and_anchors() {
    let f = Fixture::new();
    let alice = key(2);
    let post = f.post(&alice, 5, 1, "offending");
    let expire = ExpireParams {
        id: post_id(1),
        author: Some(alice.node_id()),
        reason: ExpiryReason::Moderated,
    };
    let mut plain = f.admitted_node(&key(3), Level::Member);
    add(
        &mut plain,
        f.member_set(&f.anchor, 2, &alice, Level::Member),
    );
    add(&mut plain, post.clone());
    let before = plain.log().store().len();
    let (c, m) = code(plain.market_expire(NOW, Caller::Local, expire.clone()));
    assert_eq!(c, ErrorCode::Unauthorized, "{m}");
    assert_eq!(plain.log().store().len(), before, "nothing signed");
    let mut trusted = f.admitted_node(&key(4), Level::Trusted);
    add(
        &mut trusted,
        f.member_set(&f.anchor, 2, &alice, Level::Member),
    );
    add(&mut trusted, post);
    let r = trusted.market_expire(NOW, Caller::Local, expire).unwrap();
    assert!(r.expired_now);
    assert_eq!(r.post.status, "expired");
    assert_eq!(r.post.expired_reason, Some(ExpiryReason::Moderated));
}

// ------------------------------------------------------- per-author bound

/// Over the bound, the oldest posts are `over_limit` and unlisted; when a
/// newer one expires, the next older one shows again.
#[test]
fn over_limit_posts_are_hidden_and_the_next_shows_when_a_newer_expires() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    add(
        &mut node,
        f.event(&f.anchor, 2, 100, settings("Lindenhof", 3600 * 24, 2)),
    );
    for i in 1..=4u128 {
        add(
            &mut node,
            f.post(&alice, 10 + i as u64, i, &format!("p{i}")),
        );
    }
    assert_eq!(titles(&node, NOW), vec!["p3", "p4"]);
    assert_eq!(get(&node, &alice, 2, NOW).status, "over_limit");
    assert_eq!(get(&node, &alice, 1, NOW).status, "over_limit");
    add(&mut node, f.expire(&alice, 20, 4, ExpiryReason::Fulfilled));
    assert_eq!(titles(&node, NOW), vec!["p2", "p3"]);
    assert_eq!(get(&node, &alice, 2, NOW).status, "active");
    // A late `created` older than all of them stays hidden.
    add(&mut node, f.post(&alice, 3, 9, "p0"));
    assert_eq!(titles(&node, NOW), vec!["p2", "p3"]);
}

/// A settings change re-derives every post, and the next listing lists by
/// the new settings: with the listing's indexes already built by an
/// earlier listing, a lower bound unlists the author's older posts, a
/// cross-category filter and a tag filter agree, and raising the bound
/// again lists them all.
#[test]
fn a_listing_after_a_settings_change_follows_the_new_bound() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    for i in 1..=4u128 {
        add(
            &mut node,
            f.post(&alice, 10 + i as u64, i, &format!("p{i}")),
        );
    }
    let by_tag = |node: &Node<MemoryStore>| {
        let q = ListQuery {
            tags: vec!["tools".into()],
            limit: Some(200),
            ..ListQuery::default()
        };
        node.market_list(NOW, q).unwrap().total
    };
    assert_eq!(titles(&node, NOW), vec!["p1", "p2", "p3", "p4"]);
    assert_eq!(by_tag(&node), 4);
    add(
        &mut node,
        f.event(&f.anchor, 20, 100, settings("Lindenhof", 3600 * 24, 2)),
    );
    assert_eq!(titles(&node, NOW), vec!["p3", "p4"]);
    assert_eq!(by_tag(&node), 2);
    add(
        &mut node,
        f.event(&f.anchor, 21, 101, settings("Lindenhof", 3600 * 24, 10)),
    );
    assert_eq!(titles(&node, NOW), vec!["p1", "p2", "p3", "p4"]);
    assert_eq!(by_tag(&node), 4);
}

/// A flood by one member hides only the flooder's own oldest posts: the
/// newest `posts_per_author_max` show, and another member's post still does.
#[test]
fn a_flood_hides_only_the_flooders_oldest_posts() {
    let f = Fixture::new();
    let (flooder, alice) = (key(2), key(3));
    let mut node = f.admitted_node(&alice, Level::Member);
    add(
        &mut node,
        f.member_set(&f.anchor, 2, &flooder, Level::Member),
    );
    add(&mut node, f.post(&alice, 3, 1, "alice's ladder"));
    let flood = 10_000u128;
    for i in 0..flood {
        add(
            &mut node,
            f.post(&flooder, 10 + i as u64, 1_000 + i, "flood"),
        );
    }
    let max = POSTS_PER_AUTHOR_MAX_DEFAULT as usize;
    let q = ListQuery {
        limit: Some(200),
        ..ListQuery::default()
    };
    let posts = node.market_list(NOW, q).unwrap().posts;
    assert_eq!(posts.len(), max + 1);
    assert!(posts.iter().any(|p| p.title == "alice's ladder"));
    let shown_flood: Vec<u64> = posts
        .iter()
        .filter(|p| p.author == flooder.node_id())
        .map(|p| p.created_lamport)
        .collect();
    assert_eq!(
        shown_flood.iter().min(),
        Some(&(10 + flood as u64 - max as u64))
    );
}

// ------------------------------------------------------------- settings

/// Settings signed by a member who is not an anchor change nothing.
#[test]
fn settings_by_a_non_anchor_are_ignored() {
    let f = Fixture::new();
    let bob = key(3);
    let mut node = f.admitted_node(&bob, Level::Trusted);
    add(
        &mut node,
        f.event(&bob, 5, 100, settings("Bob's street", 60, 1)),
    );
    let m = &node.views().membership;
    assert_eq!(m.community_name(), "Lindenhof Street");
    assert_eq!(m.settings().post_ttl_max_s, POST_TTL_MAX_S_DEFAULT);
}

/// Settings by an anchor removed before them (in `(lamport, hash)` order)
/// are ignored, whichever arrives first; the anchor's earlier ones stay.
#[test]
fn settings_by_an_anchor_removed_before_them_are_ignored_in_any_order() {
    let f = Fixture::new();
    let dora = key(5);
    let events = [
        f.member_set(&f.anchor, 1, &dora, Level::Anchor),
        f.event(&dora, 2, 100, settings("Dora's first", 7200, 50)),
        f.member_set(&f.anchor, 3, &dora, Level::Member),
        f.event(&dora, 4, 101, settings("Dora's coup", 60, 1)),
    ];
    for order in [[0, 1, 2, 3], [0, 3, 1, 2], [3, 1, 0, 2], [0, 1, 3, 2]] {
        let mut node = f.node(&key(9));
        for i in order {
            let _ = node.log_mut().append_received(events[i].clone());
        }
        let m = &node.views().membership;
        assert_eq!(m.community_name(), "Dora's first", "order {order:?}");
        assert_eq!(m.settings().posts_per_author_max, 50);
    }
}

/// The settings service merges partial params into those in force, signs
/// nothing when nothing changes, and refuses non-anchors.
#[test]
fn the_settings_service_merges_and_is_for_anchors_only() {
    let f = Fixture::new();
    let mut anchor = f.node(&f.anchor);
    let r = anchor
        .community_settings(
            NOW,
            Caller::Local,
            SettingsParams {
                name: Some("  Lindenhof  ".into()),
                ..SettingsParams::default()
            },
        )
        .unwrap();
    assert!(r.changed);
    assert_eq!(r.settings.name, "Lindenhof");
    assert_eq!(r.settings.post_ttl_max_s, POST_TTL_MAX_S_DEFAULT);
    let again = anchor
        .community_settings(
            NOW,
            Caller::Local,
            SettingsParams {
                name: Some("Lindenhof".into()),
                ..SettingsParams::default()
            },
        )
        .unwrap();
    assert!(!again.changed);
    assert_eq!(anchor.views().membership.community_name(), "Lindenhof");
    let zero = SettingsParams {
        posts_per_author_max: Some(0),
        ..SettingsParams::default()
    };
    assert_eq!(
        code(anchor.community_settings(NOW, Caller::Local, zero)).0,
        ErrorCode::BadRequest
    );
    let mut member = f.admitted_node(&key(2), Level::Trusted);
    let (c, m) = code(member.community_settings(NOW, Caller::Local, SettingsParams::default()));
    assert_eq!(c, ErrorCode::Unauthorized, "{m}");
    let remote = Caller::Remote(key(2).node_id());
    assert_eq!(
        code(anchor.community_settings(NOW, remote, SettingsParams::default())).0,
        ErrorCode::Unauthorized
    );
}

// ----------------------------------------------------------------- names

/// The latest profile names a member, only while they are active; the
/// service trims and signs it, and `member.list` shows it.
#[test]
fn display_names_follow_the_latest_profile_of_active_members() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    let name = |n: &str| Payload::Profile(MemberProfile { name: n.into() });
    add(&mut node, f.event(&alice, 9, 200, name("Alice B")));
    add(&mut node, f.event(&alice, 5, 201, name("Alice")));
    assert_eq!(
        node.views().membership.display_name(&alice.node_id()),
        Some("Alice B")
    );
    let r = node
        .member_profile(
            NOW,
            Caller::Local,
            ProfileParams {
                name: "  Ali  ".into(),
            },
        )
        .unwrap();
    assert!(r.changed);
    assert_eq!(r.name, "Ali");
    let list = node.member_list();
    assert_eq!(list.community, "Lindenhof Street");
    let me = list
        .members
        .iter()
        .find(|m| m.id == alice.node_id())
        .unwrap();
    assert_eq!((me.level, me.name.as_deref()), (Level::Member, Some("Ali")));
    add(
        &mut node,
        f.member_set(&f.anchor, 30, &alice, Level::Removed),
    );
    assert_eq!(node.views().membership.display_name(&alice.node_id()), None);
}

/// Display names that are empty, too long or hold control characters are
/// refused with the reason, and nothing is signed.
#[test]
fn bad_display_names_are_refused() {
    let f = Fixture::new();
    let mut node = f.admitted_node(&key(2), Level::Member);
    let before = node.log().store().len();
    for bad in ["   ", &"x".repeat(41), "Ana\u{1b}[8m", "two\nlines"] {
        let (c, m) =
            code(node.member_profile(NOW, Caller::Local, ProfileParams { name: bad.into() }));
        assert_eq!(c, ErrorCode::BadRequest, "{bad:?}: {m}");
    }
    assert_eq!(node.log().store().len(), before);
    let mut stranger = f.node(&key(8));
    let (c, _) =
        code(stranger.member_profile(NOW, Caller::Local, ProfileParams { name: "x".into() }));
    assert_eq!(c, ErrorCode::Unauthorized);
}

/// A community name with a control character is refused.
#[test]
fn a_community_name_with_control_characters_is_refused() {
    let f = Fixture::new();
    let mut anchor = f.node(&f.anchor);
    let p = SettingsParams {
        name: Some("\u{1b}]0;owned\u{7}".into()),
        ..SettingsParams::default()
    };
    let (c, m) = code(anchor.community_settings(NOW, Caller::Local, p));
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(m.contains("control character"), "{m}");
}

// ----------------------------------------------------------- last anchor

/// The only anchor cannot remove or demote itself; with a second anchor it
/// can step down.
#[test]
fn the_last_anchor_cannot_leave_the_community_without_one() {
    let f = Fixture::new();
    let me = f.anchor.node_id();
    let mut node = f.node(&f.anchor);
    let before = node.log().store().len();
    for level in [Level::Removed, Level::Trusted, Level::Member] {
        let (c, m) =
            code(node.member_set(NOW, Caller::Local, MemberSetParams { member: me, level }));
        assert_eq!(c, ErrorCode::BadRequest);
        assert!(
            m.contains("you are the last anchor") && m.contains("--level anchor"),
            "{m}"
        );
    }
    assert_eq!(node.log().store().len(), before, "nothing signed");
    let dora = key(5).node_id();
    node.member_set(
        NOW,
        Caller::Local,
        MemberSetParams {
            member: dora,
            level: Level::Anchor,
        },
    )
    .unwrap();
    let r = node
        .member_set(
            NOW,
            Caller::Local,
            MemberSetParams {
                member: me,
                level: Level::Member,
            },
        )
        .unwrap();
    assert!(r.changed);
    assert_eq!(node.views().membership.level(&me), Some(Level::Member));
}

// ------------------------------------------------------ control characters

/// Titles and tags with any control character, and bodies with one other
/// than newline or tab, are refused by `post` and `update`; nothing is
/// signed. Bodies keep their newlines and tabs.
#[test]
fn control_characters_are_refused_in_titles_tags_and_bodies() {
    let f = Fixture::new();
    let mut node = f.node(&f.anchor);
    let before = node.log().store().len();
    let mut cases = Vec::new();
    let mut p = params("fake\nby anchor");
    cases.push(p.clone());
    p = params("ok");
    p.tags = vec!["\u{1b}[8mhidden".into()];
    cases.push(p.clone());
    p = params("ok");
    p.body = "bell \u{7}".into();
    cases.push(p);
    for p in cases {
        let (c, m) = code(node.market_post(NOW, Caller::Local, p));
        assert_eq!(c, ErrorCode::BadRequest);
        assert!(m.contains("control character"), "{m}");
    }
    assert_eq!(node.log().store().len(), before);
    let mut fine = params("two lines");
    fine.body = "line one\n\tline two".into();
    let r = node.market_post(NOW, Caller::Local, fine).unwrap();
    let upd = UpdateParams {
        id: r.post.id,
        title: Some("bad\rtitle".into()),
        ..UpdateParams::default()
    };
    assert_eq!(
        code(node.market_update(NOW, Caller::Local, upd)).0,
        ErrorCode::BadRequest
    );
}

/// `PostContent` written by a hostile member with control characters still
/// enters the log (ingest checks only wire rules) and keeps every view
/// intact: the escaping is the renderer's job.
#[test]
fn hostile_control_characters_are_stored_not_refused_at_ingest() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    let c = PostContent {
        title: "\u{1b}]0;owned\u{7}".into(),
        ..content("x", Category::Info, &[], NOW + DAY_MS)
    };
    add(&mut node, f.post_with(&alice, 5, 1, c));
    assert_eq!(get(&node, &alice, 1, NOW).status, "active");
}

/// `member.list` answers a remote member and refuses a remote stranger
/// with `unauthorized`; `community.settings` refuses any remote caller.
#[test]
fn member_list_is_a_members_only_read_and_settings_are_local_only() {
    let f = Fixture::new();
    let alice = key(2);
    let mut node = f.admitted_node(&alice, Level::Member);
    let member = Caller::Remote(alice.node_id());
    let stranger = Caller::Remote(key(8).node_id());
    let empty = || ciborium::Value::Map(vec![]);
    let list = node.call(NOW, member, "member.list", empty()).unwrap();
    let list: hearth_node::core::services::membership::MemberList = list.deserialized().unwrap();
    assert_eq!(list.members.len(), 2, "the anchor and alice");
    let e = node
        .call(NOW, stranger, "member.list", empty())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    let anchor = Caller::Remote(f.anchor.node_id());
    let e = node
        .call(NOW, anchor, "community.settings", empty())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    let e = node
        .call(
            NOW,
            Caller::Local,
            "member.list",
            ciborium::Value::Map(vec![(
                ciborium::Value::Text("x".into()),
                ciborium::Value::Integer(1.into()),
            )]),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest, "unknown params refused");
}
