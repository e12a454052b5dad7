//! The core reports what its views show differently after each applied
//! event (`Output::ViewChanged`), the raw material of the live stream:
//! derived from the view before and after, so events the view ignores
//! report nothing, and a restart's replay reports nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{key, Fixture};
use hearth_node::core::views::{PostChange, PostKey, ViewChange};
use hearth_node::core::{Config, Input, Node, Output, Source};
use hearth_node::store::MemoryStore;
use hearth_proto::{EventId, ExpiryReason, Level, VerifiedEvent};

/// Feeds `event` to `node` as if from a peer; returns the view changes.
fn changes(node: &mut Node<MemoryStore>, event: &VerifiedEvent) -> Vec<ViewChange> {
    node.handle(
        common::NOW,
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
            id: EventId::from_parts(common::NOW, 10),
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
