//! The core reports what its views show differently after each applied
//! event (`Output::ViewChanged`), the raw material of the live stream:
//! derived from the view before and after, so events the view ignores
//! report nothing, and a restart's replay reports nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{key, settings, Fixture};
use hearth_node::core::views::market::CHANGES_MAX;
use hearth_node::core::views::membership::{POSTS_PER_AUTHOR_MAX_DEFAULT, POST_TTL_MAX_S_DEFAULT};
use hearth_node::core::views::{PostChange, PostKey, ViewChange, Views};
use hearth_node::core::{Config, Input, Node, Output, Source};
use hearth_node::store::MemoryStore;
use hearth_proto::{EventId, ExpiryReason, Level, VerifiedEvent};

/// Community settings signed by the anchor (key 1) at `lamport`.
fn settings_event(
    f: &Fixture,
    lamport: u64,
    name: &str,
    ttl_s: u64,
    per_author: u64,
) -> VerifiedEvent {
    f.event(
        &key(1),
        lamport,
        u128::from(lamport) << 48,
        settings(name, ttl_s, per_author),
    )
}

/// Feeds `event` to `node` as if from a peer; returns the view changes.
fn changes(node: &mut Node<MemoryStore>, event: &VerifiedEvent) -> Vec<ViewChange> {
    node.handle(
        crate::common::NOW,
        Input::Received {
            bytes: event.bytes().to_vec(),
            source: Source::Peer(key(9).node_id()),
        },
    );
    std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::ViewChanged(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// Admission, a post, an update by its author, a removal of the author,
/// the author back, and an expiry each report exactly what the view now
/// shows differently; an update by someone else and a duplicate report
/// nothing.
#[test]
fn each_event_reports_what_the_view_shows_differently() {
    let f = Fixture::new();
    let (anchor, bob, carol) = (key(1), key(2), key(3));
    let mut node = f.node(&anchor);
    let post = |change| ViewChange::Post {
        name: PostKey {
            author: bob.node_id(),
            id: EventId::from_parts(crate::common::NOW, 10),
        },
        change,
    };
    let level = |who: &hearth_proto::Identity, l| ViewChange::Level {
        node: who.node_id(),
        level: Some(l),
    };
    let admit_bob = f.member_set(&anchor, 1, &bob, Level::Member);
    assert_eq!(
        changes(&mut node, &admit_bob),
        vec![level(&bob, Level::Member)]
    );
    let created = f.post(&bob, 2, 10, "Ladder");
    assert_eq!(changes(&mut node, &created), vec![post(PostChange::Added)]);
    assert_eq!(changes(&mut node, &created), vec![], "a duplicate");
    let admit_carol = f.member_set(&anchor, 3, &carol, Level::Member);
    assert_eq!(
        changes(&mut node, &admit_carol),
        vec![level(&carol, Level::Member)]
    );
    assert_eq!(
        changes(&mut node, &f.update(&carol, 4, 10, "Mine now")),
        vec![],
        "an update by someone else changes nothing shown"
    );
    assert_eq!(
        changes(&mut node, &f.update(&bob, 5, 10, "Tall ladder")),
        vec![post(PostChange::Updated)]
    );
    assert_eq!(
        changes(&mut node, &f.member_set(&anchor, 6, &bob, Level::Removed)),
        vec![level(&bob, Level::Removed), post(PostChange::Hidden)]
    );
    assert_eq!(
        changes(&mut node, &f.member_set(&anchor, 7, &bob, Level::Member)),
        vec![level(&bob, Level::Member), post(PostChange::Added)]
    );
    assert_eq!(
        changes(&mut node, &f.expire(&bob, 8, 10, ExpiryReason::Fulfilled)),
        vec![post(PostChange::Expired)]
    );
}

/// Reopening a node replays its log into the views and reports nothing:
/// nothing was shown before, so nothing changed for a reader.
#[test]
fn a_restart_reports_nothing() {
    let f = Fixture::new();
    let mut node = f.node(&key(1));
    changes(&mut node, &f.member_set(&key(1), 1, &key(2), Level::Member));
    changes(&mut node, &f.post(&key(2), 2, 10, "Ladder"));
    let store = node.into_store().unwrap();
    let mut again = Node::new(key(1), &f.genesis, store, Config::default(), 7).unwrap();
    assert_eq!(again.views().market.post_count(), 1);
    assert!(again.poll_output().is_none());
}

/// A settings change re-derives every post but reports one as updated
/// only when it moves what the post shows: a rename reports nothing for
/// it, a shorter maximum TTL that cuts its expiry reports it updated.
#[test]
fn a_settings_change_reports_only_the_posts_whose_expiry_it_moves() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut node = f.node(&anchor);
    changes(&mut node, &f.member_set(&anchor, 1, &bob, Level::Member));
    // Expires a day after NOW, inside the default 30-day maximum.
    changes(&mut node, &f.post(&bob, 2, 10, "Ladder"));
    let settings = |lamport, name, ttl_s| {
        settings_event(&f, lamport, name, ttl_s, POSTS_PER_AUTHOR_MAX_DEFAULT)
    };
    let posts = |cs: Vec<ViewChange>| -> Vec<ViewChange> {
        cs.into_iter()
            .filter(|c| matches!(c, ViewChange::Post { .. }))
            .collect()
    };
    assert_eq!(
        posts(changes(
            &mut node,
            &settings(3, "Lindenhof", POST_TTL_MAX_S_DEFAULT)
        )),
        vec![],
        "a rename moves no post"
    );
    let name = PostKey {
        author: bob.node_id(),
        id: EventId::from_parts(crate::common::NOW, 10),
    };
    assert_eq!(
        posts(changes(&mut node, &settings(4, "Lindenhof", 3_600))),
        vec![ViewChange::Post {
            name,
            change: PostChange::Updated
        }],
        "an hour's maximum cuts the day's expiry"
    );
    let post = node.views().market.get(&name).unwrap();
    assert_eq!(post.expires_at, crate::common::NOW + 3_600_000);
}

/// A post is live up to the millisecond before its effective expiry and
/// not at it: the listing and the sweeper agree on the boundary.
#[test]
fn a_post_is_live_until_its_expiry_and_not_at_it() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut node = f.node(&anchor);
    changes(&mut node, &f.member_set(&anchor, 1, &bob, Level::Member));
    changes(&mut node, &f.post(&bob, 2, 10, "Ladder"));
    let name = PostKey {
        author: bob.node_id(),
        id: EventId::from_parts(crate::common::NOW, 10),
    };
    let post = node.views().market.get(&name).unwrap();
    let end = post.expires_at;
    assert!(post.is_live(end - 1));
    assert!(!post.is_live(end));
    let live_at = |t| node.views().market.live_posts(t).count();
    assert_eq!((live_at(end - 1), live_at(end)), (1, 0));
}

/// The log keeps at most `CHANGES_MAX` changes between two takes and
/// counts the rest as lost: the first `CHANGES_MAX` are exactly the ones
/// a reader taking after every event would have seen first, and the lost
/// count is the remainder, so the stream can tell its readers to reload.
#[test]
fn changes_past_the_bound_are_counted_as_lost() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let events: Vec<VerifiedEvent> = std::iter::once(f.member_set(&anchor, 1, &bob, Level::Member))
        .chain(
            (0..(CHANGES_MAX as u64 + 50))
                .map(|i| f.post(&bob, 2 + i, 10 + u128::from(i), "Ladder")),
        )
        .collect();
    // One reader takes after every event: the whole sequence, nothing lost.
    let mut each = f.node(&anchor);
    let mut all = Vec::new();
    for e in &events {
        each.log_mut().append_received(e.clone()).unwrap();
        let (changes, lost) = each.log_mut().take_changes();
        assert_eq!(lost, 0);
        all.extend(changes);
    }
    assert!(
        all.len() > CHANGES_MAX,
        "the workload must overflow the bound"
    );
    // The other takes once, after all of them.
    let mut once = f.node(&anchor);
    for e in &events {
        once.log_mut().append_received(e.clone()).unwrap();
    }
    let (kept, lost) = once.log_mut().take_changes();
    assert_eq!(kept.len(), CHANGES_MAX);
    assert_eq!(kept[..], all[..CHANGES_MAX]);
    assert_eq!(lost as usize, all.len() - CHANGES_MAX);
    assert_eq!(
        once.log_mut().take_changes(),
        (vec![], 0),
        "a take empties both"
    );
}

/// One event that changes more posts than the bound (a settings change
/// cutting every post's expiry) reports the first `CHANGES_MAX` of them
/// and how many more there were, and nothing else is lost.
#[test]
fn one_event_changing_more_posts_than_the_bound_reports_the_rest_as_lost() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut node = f.node(&anchor);
    let settings = |lamport, ttl_s| settings_event(&f, lamport, "Lindenhof", ttl_s, 10_000);
    let posts = CHANGES_MAX as u64 + 77;
    node.log_mut()
        .append_received(f.member_set(&anchor, 1, &bob, Level::Member))
        .unwrap();
    node.log_mut()
        .append_received(settings(2, POST_TTL_MAX_S_DEFAULT))
        .unwrap();
    for i in 0..posts {
        node.log_mut()
            .append_received(f.post(&bob, 3 + i, 10 + u128::from(i), "Ladder"))
            .unwrap();
        // Taken after each post, as the node does: nothing lost so far.
        assert_eq!(node.log_mut().take_changes().1, 0);
    }
    node.log_mut()
        .append_received(settings(3 + posts, 3_600))
        .unwrap();
    let (kept, lost) = node.log_mut().take_changes();
    assert_eq!(kept.len(), CHANGES_MAX);
    assert!(kept.iter().all(|c| matches!(
        c,
        ViewChange::Post {
            change: PostChange::Updated,
            ..
        }
    )));
    assert_eq!(lost, posts - CHANGES_MAX as u64);
}

/// The views report a loss only when they dropped something: applying
/// ordinary events directly to them never yields a `Lost` entry.
#[test]
fn ordinary_events_report_no_loss() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut views = Views::default();
    let mut out = Vec::new();
    for e in [
        f.genesis.clone(),
        f.member_set(&anchor, 1, &bob, Level::Member),
        f.post(&bob, 2, 10, "Ladder"),
    ] {
        views.apply_reporting(&e, &mut out);
    }
    assert!(out.iter().any(|c| matches!(c, ViewChange::Post { .. })));
    assert!(
        !out.iter().any(|c| matches!(c, ViewChange::Lost { .. })),
        "{out:?}"
    );
}

/// Resetting the views (before a full replay, or after a snapshot that
/// cannot be restored) forgets every level and post: what was shown is
/// rebuilt only from the events replayed after it.
#[test]
fn reset_views_forget_levels_and_posts() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut views = Views::default();
    for e in [
        f.genesis.clone(),
        f.member_set(&anchor, 1, &bob, Level::Member),
        f.post(&bob, 2, 10, "Ladder"),
    ] {
        views.apply(&e);
    }
    let empty = Views::default().digest();
    let no_members = Views::default().membership.digest();
    assert_ne!(views.membership.digest(), no_members, "an admission shows");
    assert_eq!(views.membership.level(&bob.node_id()), Some(Level::Member));
    assert_ne!(views.digest(), empty);
    views.reset();
    assert_eq!(views.membership.level(&bob.node_id()), None);
    assert_eq!(views.market.post_count(), 0);
    assert_eq!(views.digest(), empty);
    assert_eq!(views.membership.digest(), no_members);
}

/// The market view itself keeps at most `CHANGES_MAX` post changes for one
/// event and reports the rest as one `Lost` entry (the log's own bound
/// would hide an off-by-one here, so this asks the views directly).
#[test]
fn the_market_view_bounds_one_events_changes() {
    let f = Fixture::new();
    let (anchor, bob) = (key(1), key(2));
    let mut views = Views::default();
    let settings = |lamport, ttl_s| settings_event(&f, lamport, "Lindenhof", ttl_s, 10_000);
    let posts = CHANGES_MAX as u64 + 5;
    views.apply(&f.genesis);
    views.apply(&f.member_set(&anchor, 1, &bob, Level::Member));
    views.apply(&settings(2, POST_TTL_MAX_S_DEFAULT));
    for i in 0..posts {
        views.apply(&f.post(&bob, 3 + i, 10 + u128::from(i), "Ladder"));
    }
    let mut out = Vec::new();
    views.apply_reporting(&settings(3 + posts, 3_600), &mut out);
    let shown = out
        .iter()
        .filter(|c| matches!(c, ViewChange::Post { .. }))
        .count();
    assert_eq!(shown, CHANGES_MAX);
    assert_eq!(out.last(), Some(&ViewChange::Lost { count: 5 }));
}
