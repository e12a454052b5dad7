//! Conversation rules (issue 14): replies, claims, acceptances and sealed
//! messages, each a function of the event set; every bad input stored or
//! refused as docs/decisions.md "Conversations (issue 14)" says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use hearth_node::core::bus::Caller;
use hearth_node::core::services::conversations::{ConversationView, GetParams};
use hearth_node::core::views::conversations::{
    ClaimStatus, ConversationChange, CLAIMS_PER_AUTHOR_PER_POST_MAX,
    REPLIES_PER_AUTHOR_PER_POST_MAX, SEALED_PER_PAIR_MAX,
};
use hearth_node::core::views::{ViewChange, Views};
use hearth_node::core::Node;
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::sealed::{open, seal, seal_signed_by, DirectMessage, OpenError};
use hearth_proto::{
    ClaimRef, DmSealed, EventRef, ExpiryReason, Identity, Level, Payload, PostClaim, PostReply,
    VerifiedEvent,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct World {
    f: Fixture,
    a: Identity,
    b: Identity,
    c: Identity,
}

impl World {
    fn new() -> Self {
        World {
            f: Fixture::new(),
            a: key(2),
            b: key(3),
            c: key(4),
        }
    }

    /// Admissions of A, B and C, and A's offer (post id 100).
    fn base(&self) -> Vec<VerifiedEvent> {
        vec![
            self.f.member_set(&self.f.anchor, 1, &self.a, Level::Member),
            self.f.member_set(&self.f.anchor, 2, &self.b, Level::Member),
            self.f.member_set(&self.f.anchor, 3, &self.c, Level::Member),
            self.f
                .post(&self.a, 4, 100, "Wasserkanister zu verschenken"),
        ]
    }

    fn offer(&self) -> EventRef {
        EventRef {
            author: self.a.node_id(),
            id: post_id(100),
        }
    }

    fn reply(&self, who: &Identity, lamport: u64, id: u128, target: EventRef) -> VerifiedEvent {
        self.f.event(
            who,
            lamport,
            id,
            Payload::PostReply(PostReply {
                target,
                body: format!("reply {id}"),
            }),
        )
    }

    fn claim(&self, who: &Identity, lamport: u64, id: u128) -> VerifiedEvent {
        self.f.event(
            who,
            lamport,
            id,
            Payload::PostClaim(PostClaim {
                target: self.offer(),
                note: Some("I'd like one".into()),
            }),
        )
    }

    fn claim_ref(who: &Identity, id: u128) -> EventRef {
        EventRef {
            author: who.node_id(),
            id: post_id(id),
        }
    }

    fn accept(&self, who: &Identity, lamport: u64, id: u128, claim: EventRef) -> VerifiedEvent {
        self.f.event(
            who,
            lamport,
            id,
            Payload::ClaimAccepted(ClaimRef {
                target: self.offer(),
                claim,
            }),
        )
    }

    fn withdraw(&self, who: &Identity, lamport: u64, id: u128, claim: EventRef) -> VerifiedEvent {
        self.f.event(
            who,
            lamport,
            id,
            Payload::ClaimWithdrawn(ClaimRef {
                target: self.offer(),
                claim,
            }),
        )
    }

    fn sealed(
        &self,
        from: &Identity,
        to: &Identity,
        lamport: u64,
        id: u128,
        text: &str,
    ) -> VerifiedEvent {
        let msg = DirectMessage {
            from: from.node_id(),
            to: to.node_id(),
            post: Some(self.offer()),
            body: text.into(),
            ts: NOW,
        };
        let sealed = seal(from, &msg, &mut ChaCha20Rng::seed_from_u64(id as u64)).unwrap();
        self.dm(from, to, lamport, id, sealed)
    }

    fn dm(
        &self,
        from: &Identity,
        to: &Identity,
        lamport: u64,
        id: u128,
        sealed: Vec<u8>,
    ) -> VerifiedEvent {
        self.f.event(
            from,
            lamport,
            id,
            Payload::DmSealed(DmSealed {
                to: to.node_id(),
                sealed,
            }),
        )
    }

    /// A node for `who` holding `events`, applied in the given order.
    fn node(&self, who: &Identity, events: &[VerifiedEvent]) -> Node<MemoryStore> {
        let mut node = self.f.node(who);
        for e in events {
            node.log_mut().append_received(e.clone()).unwrap();
        }
        node
    }
}

fn views(node: &Node<MemoryStore>) -> &Views {
    node.views()
}

/// Replies and claims are listed per post in (lamport, hash) order, and the
/// same set in any arrival order gives the same thread and digest.
#[test]
fn thread_is_ordered_and_independent_of_arrival_order() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.reply(&w.c, 9, 200, w.offer()));
    events.push(w.reply(&w.b, 7, 201, w.offer()));
    events.push(w.claim(&w.b, 8, 202));
    events.push(w.claim(&w.c, 6, 203));
    let forward = w.node(&w.c, &events);
    let mut reversed_events = events.clone();
    reversed_events[4..].reverse();
    let reversed = w.node(&w.c, &reversed_events);

    let t = views(&forward)
        .conversations
        .thread(&w.offer(), &views(&forward).membership);
    let lamports: Vec<u64> = t.replies.iter().map(|r| r.key.lamport).collect();
    assert_eq!(lamports, vec![7, 9]);
    let claimers: Vec<_> = t.claims.iter().map(|c| c.claim.author).collect();
    assert_eq!(claimers, vec![w.c.node_id(), w.b.node_id()]);
    assert_eq!(
        t,
        views(&reversed)
            .conversations
            .thread(&w.offer(), &views(&reversed).membership)
    );
    assert_eq!(views(&forward).digest(), views(&reversed).digest());
}

/// The post's author accepting B's claim ends the post as fulfilled by B,
/// on every node.
#[test]
fn author_acceptance_ends_post_fulfilled_by_claimer() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.claim(&w.b, 5, 200));
    events.push(w.accept(&w.a, 6, 201, World::claim_ref(&w.b, 200)));
    for who in [&w.a, &w.b, &w.c] {
        let node = w.node(who, &events);
        let v = views(&node);
        let post = v.market.get(&hearth_node::core::views::PostKey {
            author: w.a.node_id(),
            id: post_id(100),
        });
        let expired = post.unwrap().expired.as_ref().expect("post ended");
        assert_eq!(expired.reason, ExpiryReason::Fulfilled);
        assert_eq!(expired.by, w.a.node_id());
        let t = v.conversations.thread(&w.offer(), &v.membership);
        assert_eq!(t.accepted.unwrap().fulfilled_by(), w.b.node_id());
        assert!(t.claims[0].accepted);
    }
}

/// A claim acceptance by someone other than the post's author changes
/// nothing: the event is stored, the post stays live, no claim is accepted.
#[test]
fn acceptance_by_non_author_has_no_effect() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.claim(&w.b, 5, 200));
    let mut node = w.node(&w.c, &events);
    let (len, market) = (node.log().store().len(), views(&node).market.digest());
    let conversations = views(&node).conversations.digest();
    // C (not the author) "accepts" B's claim; so does B itself.
    for (who, id) in [(&w.c, 201), (&w.b, 202)] {
        node.log_mut()
            .append_received(w.accept(who, 6, id, World::claim_ref(&w.b, 200)))
            .unwrap();
    }
    assert_eq!(node.log().store().len(), len + 2, "both stored");
    assert_eq!(views(&node).market.digest(), market);
    assert_eq!(views(&node).conversations.digest(), conversations);
    let v = views(&node);
    assert!(v.market.list(&Default::default(), NOW).len() == 1);
    assert_eq!(
        v.conversations.thread(&w.offer(), &v.membership).accepted,
        None
    );
}

/// Post ids are unique per author only: C may give its own post the id of
/// A's offer. C "accepting" a claim on A's offer still ends nothing, not
/// even C's own post of that id (an acceptance ends a post as its author's
/// expiry, so one recorded for C would end C's).
#[test]
fn acceptance_by_non_author_ends_no_post_of_the_same_id() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.f.post(&w.c, 4, 100, "Same id, another author"));
    events.push(w.claim(&w.b, 5, 200));
    events.push(w.accept(&w.c, 6, 201, World::claim_ref(&w.b, 200)));
    let node = w.node(&w.a, &events);
    let live = views(&node).market.list(&Default::default(), NOW);
    assert_eq!(live.len(), 2, "A's offer and C's post both live: {live:?}");
}

/// Of several acceptances by the author the highest (lamport, hash) wins,
/// whatever the arrival order: one accepted claim at most.
#[test]
fn latest_acceptance_wins() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.claim(&w.b, 5, 200));
    events.push(w.claim(&w.c, 5, 201));
    events.push(w.accept(&w.a, 9, 202, World::claim_ref(&w.c, 201)));
    events.push(w.accept(&w.a, 7, 203, World::claim_ref(&w.b, 200)));
    for order in [false, true] {
        let mut evs = events.clone();
        if order {
            evs[4..].reverse();
        }
        let node = w.node(&w.a, &evs);
        let v = views(&node);
        let t = v.conversations.thread(&w.offer(), &v.membership);
        assert_eq!(t.accepted.unwrap().fulfilled_by(), w.c.node_id());
        assert_eq!(t.claims.iter().filter(|c| c.accepted).count(), 1);
    }
}

/// A withdrawal counts only from the claim's author.
#[test]
fn withdrawal_counts_only_from_claim_author() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.claim(&w.b, 5, 200));
    events.push(w.withdraw(&w.c, 6, 201, World::claim_ref(&w.b, 200)));
    let node = w.node(&w.a, &events);
    let v = views(&node);
    assert!(!v.conversations.thread(&w.offer(), &v.membership).claims[0].withdrawn);
    events.push(w.withdraw(&w.b, 7, 202, World::claim_ref(&w.b, 200)));
    let node = w.node(&w.a, &events);
    let v = views(&node);
    assert!(v.conversations.thread(&w.offer(), &v.membership).claims[0].withdrawn);
}

/// A removed member's replies and claims are hidden; re-admission shows them.
#[test]
fn removed_member_replies_hidden() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.reply(&w.b, 5, 200, w.offer()));
    events.push(w.claim(&w.b, 5, 201));
    events.push(w.reply(&w.c, 5, 202, w.offer()));
    events.push(w.f.member_set(&w.f.anchor, 10, &w.b, Level::Removed));
    let node = w.node(&w.a, &events);
    let v = views(&node);
    let t = v.conversations.thread(&w.offer(), &v.membership);
    assert_eq!(t.replies.len(), 1);
    assert_eq!(t.replies[0].author, w.c.node_id());
    assert!(t.claims.is_empty());
    events.push(w.f.member_set(&w.f.anchor, 11, &w.b, Level::Member));
    let node = w.node(&w.a, &events);
    let v = views(&node);
    assert_eq!(
        v.conversations
            .thread(&w.offer(), &v.membership)
            .replies
            .len(),
        2
    );
}

/// One author's replies under one post are bounded: the first
/// REPLIES_PER_AUTHOR_PER_POST_MAX by key count, in any arrival order;
/// claims likewise.
#[test]
fn replies_and_claims_bounded_per_author() {
    let w = World::new();
    let extra = 5;
    let mut flood: Vec<VerifiedEvent> = (0..(REPLIES_PER_AUTHOR_PER_POST_MAX + extra) as u64)
        .map(|i| w.reply(&w.b, 10 + i, 1000 + u128::from(i), w.offer()))
        .collect();
    flood.extend(
        (0..(CLAIMS_PER_AUTHOR_PER_POST_MAX + extra) as u64)
            .map(|i| w.claim(&w.b, 10 + i, 5000 + u128::from(i))),
    );
    for reverse in [false, true] {
        let mut evs = w.base();
        let mut f = flood.clone();
        if reverse {
            f.reverse();
        }
        evs.extend(f);
        let node = w.node(&w.a, &evs);
        let v = views(&node);
        let t = v.conversations.thread(&w.offer(), &v.membership);
        assert_eq!(t.replies.len(), REPLIES_PER_AUTHOR_PER_POST_MAX);
        assert_eq!(
            t.replies.last().unwrap().key.lamport,
            10 + REPLIES_PER_AUTHOR_PER_POST_MAX as u64 - 1
        );
        assert_eq!(t.claims.len(), CLAIMS_PER_AUTHOR_PER_POST_MAX);
    }
}

/// A reply to a post this node does not hold is stored (the post may come
/// later), changes no post, and shows under the post once it arrives.
#[test]
fn reply_to_unknown_post_is_stored_and_waits_for_the_post() {
    let w = World::new();
    let unknown = EventRef {
        author: w.a.node_id(),
        id: post_id(999),
    };
    let mut node = w.node(&w.c, &w.base());
    let (len, market) = (node.log().store().len(), views(&node).market.digest());
    node.log_mut()
        .append_received(w.reply(&w.b, 5, 200, unknown))
        .unwrap();
    assert_eq!(node.log().store().len(), len + 1);
    assert_eq!(views(&node).market.digest(), market);
    assert!(views(&node)
        .market
        .get(&hearth_node::core::views::PostKey {
            author: unknown.author,
            id: unknown.id
        })
        .is_none());
    node.log_mut()
        .append_received(w.f.post(&w.a, 6, 999, "late post"))
        .unwrap();
    let v = views(&node);
    assert_eq!(
        v.conversations
            .thread(&unknown, &v.membership)
            .replies
            .len(),
        1
    );
}

/// C stores and keeps A's and B's sealed messages but cannot read them;
/// B reads the one to B, A the one to A.
#[test]
fn sealed_box_for_someone_else_is_stored_but_unreadable() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.sealed(&w.b, &w.a, 5, 200, "Kann ich einen haben?"));
    events.push(w.sealed(&w.a, &w.b, 6, 201, "Klar, komm vorbei."));
    let node = w.node(&w.c, &events);
    assert_eq!(
        node.log().store().len(),
        events.len() as u64 + 1,
        "genesis + all"
    );
    let v = views(&node);
    assert_eq!(v.conversations.sealed_count(), 2);
    for s in v
        .conversations
        .sealed_to(w.a.node_id())
        .chain(v.conversations.sealed_to(w.b.node_id()))
    {
        assert_eq!(open(&w.c, &s.sealed), Err(OpenError::NotForMe));
    }
    let to_a: Vec<_> = v.conversations.sealed_to(w.a.node_id()).collect();
    assert_eq!(
        open(&w.a, &to_a[0].sealed).unwrap().body,
        "Kann ich einen haben?"
    );
    assert_eq!(to_a[0].from, w.b.node_id());
    let to_b: Vec<_> = v.conversations.sealed_to(w.b.node_id()).collect();
    assert_eq!(
        open(&w.b, &to_b[0].sealed).unwrap().body,
        "Klar, komm vorbei."
    );
}

/// A truncated box is still a valid event (ingest cannot tell): stored,
/// synced, and refused as truncated by its recipient.
#[test]
fn truncated_sealed_box_is_stored_and_refused_on_open() {
    let w = World::new();
    let good = w.sealed(&w.b, &w.a, 5, 200, "hello");
    let Payload::DmSealed(d) = &good.event().payload else {
        panic!("a dm.sealed")
    };
    let cut = d.sealed[..d.sealed.len() - 10].to_vec();
    let mut node = w.node(&w.a, &w.base());
    let len = node.log().store().len();
    let market = views(&node).market.digest();
    node.log_mut()
        .append_received(w.dm(&w.b, &w.a, 6, 201, cut.clone()))
        .unwrap();
    assert_eq!(node.log().store().len(), len + 1);
    assert_eq!(views(&node).market.digest(), market, "no post changed");
    let v = views(&node);
    let stored: Vec<_> = v.conversations.sealed_to(w.a.node_id()).collect();
    assert_eq!(
        open(&w.a, &stored[0].sealed),
        Err(OpenError::Truncated { len: cut.len() })
    );
}

/// The conversations view survives a snapshot and restore unchanged.
#[test]
fn snapshot_round_trip_keeps_conversations() {
    let w = World::new();
    let mut events = w.base();
    events.push(w.reply(&w.b, 5, 200, w.offer()));
    events.push(w.claim(&w.b, 5, 201));
    events.push(w.accept(&w.a, 6, 202, World::claim_ref(&w.b, 201)));
    events.push(w.sealed(&w.b, &w.a, 7, 203, "hi"));
    let node = w.node(&w.a, &events);
    let cover = hearth_node::core::views::SnapshotCover {
        arrival: 1,
        clock: 7,
    };
    let bytes = views(&node).snapshot_state(cover).unwrap();
    let mut restored = Views::default();
    restored.restore_state(&bytes).unwrap();
    assert_eq!(restored.digest(), views(&node).digest());
    let t = restored
        .conversations
        .thread(&w.offer(), &restored.membership);
    assert_eq!(t.accepted.unwrap().fulfilled_by(), w.b.node_id());
}

/// A 100-character message (no post reference) is a two-block box, 560
/// bytes, and its `dm.sealed` event stays under 850 bytes in the log (the
/// figure docs/decisions.md gives).
#[test]
fn sealed_message_log_cost_per_100_characters() {
    let w = World::new();
    let msg = DirectMessage {
        from: w.b.node_id(),
        to: w.a.node_id(),
        post: None,
        body: "x".repeat(100),
        ts: NOW,
    };
    let sealed = seal(&w.b, &msg, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
    assert_eq!(sealed.len(), 48 + 2 * 256);
    let event = w.dm(&w.b, &w.a, 5, 200, sealed);
    let size = event.bytes().len();
    println!("dm.sealed event with 100 characters: {size} bytes");
    assert!((560..850).contains(&size), "{size}");
}

/// The one message A's node shows from B: its text, or why it did not open.
fn only_message_from(node: &Node<MemoryStore>, from: &Identity) -> (Option<String>, String) {
    let got = node
        .conversation_get(
            NOW,
            Caller::Local,
            GetParams {
                post: None,
                with: Some(from.node_id()),
            },
        )
        .unwrap();
    let ConversationView::Messages { messages, .. } = got else {
        panic!("messages")
    };
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    (m.body.clone(), m.error.clone().unwrap_or_default())
}

/// A box for A whose inner signature is by another key than its stated
/// sender (B's event, `from` B, signed by C) is a valid event: stored and
/// synced, no post or thread changes, and A's node shows it as unreadable
/// with the reason, never its text.
#[test]
fn inner_signature_by_another_key_is_stored_and_refused_on_open() {
    let w = World::new();
    let msg = DirectMessage {
        from: w.b.node_id(),
        to: w.a.node_id(),
        post: None,
        body: "I am B, honestly".into(),
        ts: NOW,
    };
    let forged = seal_signed_by(&w.c, &msg, &mut ChaCha20Rng::seed_from_u64(9)).unwrap();
    let mut node = w.node(&w.a, &w.base());
    let (len, market) = (node.log().store().len(), views(&node).market.digest());
    let thread = {
        let v = views(&node);
        v.conversations.thread(&w.offer(), &v.membership)
    };
    node.log_mut()
        .append_received(w.dm(&w.b, &w.a, 5, 200, forged))
        .unwrap();
    assert_eq!(node.log().store().len(), len + 1, "stored");
    assert_eq!(views(&node).market.digest(), market);
    let v = views(&node);
    assert_eq!(v.conversations.thread(&w.offer(), &v.membership), thread);
    let (body, error) = only_message_from(&node, &w.b);
    assert_eq!(body, None);
    assert!(error.contains("inner signature"), "{error}");
}

/// A box that C sealed and signed as itself, but published in an event by
/// B, is refused on open: the envelope's author and the signed sender must
/// agree, or B could pass off C's words as its own.
#[test]
fn box_signed_by_someone_other_than_its_event_author_is_refused() {
    let w = World::new();
    let msg = DirectMessage {
        from: w.c.node_id(),
        to: w.a.node_id(),
        post: None,
        body: "C wrote this".into(),
        ts: NOW,
    };
    let sealed_by_c = seal(&w.c, &msg, &mut ChaCha20Rng::seed_from_u64(10)).unwrap();
    let mut node = w.node(&w.a, &w.base());
    let market = views(&node).market.digest();
    node.log_mut()
        .append_received(w.dm(&w.b, &w.a, 5, 200, sealed_by_c))
        .unwrap();
    assert_eq!(views(&node).market.digest(), market);
    let (body, error) = only_message_from(&node, &w.b);
    assert_eq!(body, None);
    assert!(error.contains("signed by"), "{error}");
}

/// What an event changed, as the node reports it to its driver.
fn changes_of(
    node: &mut Node<MemoryStore>,
    e: &VerifiedEvent,
) -> Vec<hearth_node::core::views::ViewChange> {
    node.receive(e.bytes(), hearth_node::core::Source::File)
        .unwrap();
    std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            hearth_node::core::Output::ViewChanged(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The live events come from what the view kept and shows: a reply and a
/// claim report themselves, the author's acceptance reports
/// `Accepted` (beside the post's expiry), and a non-author's acceptance
/// or a removed member's reply report nothing.
#[test]
fn conversation_changes_report_only_what_shows() {
    use hearth_node::core::views::conversations::{ClaimStatus, ConversationChange};
    use hearth_node::core::views::ViewChange;
    let w = World::new();
    let mut node = w.node(&w.c, &w.base());
    let conv = |changes: Vec<ViewChange>| -> Vec<ConversationChange> {
        changes
            .into_iter()
            .filter_map(|c| match c {
                ViewChange::Conversation(c) => Some(c),
                _ => None,
            })
            .collect()
    };
    let reply = w.reply(&w.b, 5, 200, w.offer());
    assert!(matches!(
        conv(changes_of(&mut node, &reply))[..],
        [ConversationChange::Reply { author, .. }] if author == w.b.node_id()
    ));
    let claim = w.claim(&w.b, 6, 201);
    assert!(matches!(
        conv(changes_of(&mut node, &claim))[..],
        [ConversationChange::Claim {
            state: ClaimStatus::Open,
            ..
        }]
    ));
    let by_c = w.accept(&w.c, 7, 202, World::claim_ref(&w.b, 201));
    assert!(changes_of(&mut node, &by_c).is_empty(), "not the author's");
    let by_a = w.accept(&w.a, 8, 203, World::claim_ref(&w.b, 201));
    let changes = changes_of(&mut node, &by_a);
    assert!(conv(changes.clone()).iter().any(
        |c| matches!(c, ConversationChange::Accepted { claim, .. } if claim.author == w.b.node_id())
    ));
    assert!(
        changes.iter().any(|c| matches!(c, ViewChange::Post { .. })),
        "the post ended"
    );
    let removed = w.f.member_set(&w.f.anchor, 9, &w.b, Level::Removed);
    changes_of(&mut node, &removed);
    let hidden = w.reply(&w.b, 10, 204, w.offer());
    assert!(
        conv(changes_of(&mut node, &hidden)).is_empty(),
        "B was removed"
    );
}

// ------------------------------------------------- what each query names

/// The conversation changes the core reports for `events`, fed one by one.
fn reported(node: &mut Node<MemoryStore>, events: &[VerifiedEvent]) -> Vec<ConversationChange> {
    let mut out = Vec::new();
    for e in events {
        // A duplicate is refused (`Duplicate`): it reports nothing either.
        let _ = node.log_mut().append_received(e.clone());
        let (changes, _) = node.log_mut().take_changes();
        out.extend(changes.into_iter().filter_map(|c| match c {
            ViewChange::Conversation(c) => Some(c),
            _ => None,
        }));
    }
    out
}

/// Each conversation event reports what now shows, and only that: a reply
/// and a claim by members, a withdrawal by the claim's author, the
/// author's latest acceptance, a sealed message; nothing for a reply by a
/// removed member, a withdrawal by someone else, an acceptance that a
/// later one already beat, or a claim over its author's bound.
#[test]
fn each_conversation_event_reports_what_now_shows() {
    let w = World::new();
    let mut node = w.node(&w.f.anchor, &w.base());
    let offer = w.offer();
    let reply = w.reply(&w.b, 10, 200, offer);
    let claim = w.claim(&w.b, 11, 201);
    let b_claim = World::claim_ref(&w.b, 201);
    let c_claim_event = w.claim(&w.c, 12, 202);
    let c_claim = World::claim_ref(&w.c, 202);
    let later = w.accept(&w.a, 31, 301, c_claim);
    let earlier = w.accept(&w.a, 30, 300, b_claim);
    let got = reported(
        &mut node,
        &[
            reply.clone(),
            claim.clone(),
            c_claim_event.clone(),
            later.clone(),
            earlier,
        ],
    );
    assert_eq!(
        got,
        vec![
            ConversationChange::Reply {
                post: offer,
                author: w.b.node_id(),
                id: post_id(200),
                key: reply.key(),
            },
            ConversationChange::Claim {
                post: offer,
                author: w.b.node_id(),
                id: post_id(201),
                key: claim.key(),
                state: ClaimStatus::Open,
            },
            ConversationChange::Claim {
                post: offer,
                author: w.c.node_id(),
                id: post_id(202),
                key: c_claim_event.key(),
                state: ClaimStatus::Open,
            },
            ConversationChange::Accepted {
                post: offer,
                claim: c_claim,
                key: later.key(),
            },
        ],
        "the earlier acceptance, beaten already, reports nothing"
    );
    assert_eq!(
        views(&node).conversations.accepted(&offer).map(|a| a.claim),
        Some(c_claim)
    );

    // A withdrawal by someone else reports nothing; by the author, the claim.
    let foreign = w.withdraw(&w.c, 40, 400, b_claim);
    assert_eq!(reported(&mut node, &[foreign]), vec![]);
    let own = w.withdraw(&w.b, 41, 401, b_claim);
    assert_eq!(
        reported(&mut node, std::slice::from_ref(&own)),
        vec![ConversationChange::Claim {
            post: offer,
            author: w.b.node_id(),
            id: post_id(201),
            key: own.key(),
            state: ClaimStatus::Withdrawn,
        }]
    );
    assert_eq!(reported(&mut node, &[own]), vec![], "a duplicate");
    let again = w.withdraw(&w.b, 42, 402, b_claim);
    assert_eq!(
        reported(&mut node, &[again]),
        vec![],
        "a second withdrawal of a withdrawn claim"
    );

    // Past C's bound of claims on the offer, a newer claim reports nothing.
    let claims: Vec<VerifiedEvent> = (0..CLAIMS_PER_AUTHOR_PER_POST_MAX as u64)
        .map(|i| w.claim(&w.c, 50 + i, 500 + u128::from(i)))
        .collect();
    let got = reported(&mut node, &claims);
    assert_eq!(
        got.len(),
        CLAIMS_PER_AUTHOR_PER_POST_MAX - 1,
        "C had one already"
    );
    assert!(
        got.iter().all(|c| matches!(
            c,
            ConversationChange::Claim {
                state: ClaimStatus::Open,
                ..
            }
        )),
        "a claim after another claim was accepted is open: {got:?}"
    );

    // A removed member's reply is stored but reports nothing.
    let removal = w.f.member_set(&w.f.anchor, 60, &w.b, Level::Removed);
    let _ = reported(&mut node, &[removal]);
    let hidden = w.reply(&w.b, 61, 600, offer);
    assert_eq!(reported(&mut node, std::slice::from_ref(&hidden)), vec![]);
    assert!(node.log().store().contains(hidden.hash()).unwrap());

    // A sealed message reports its pair.
    let dm = w.sealed(&w.a, &w.c, 70, 700, "Gern, komm vorbei");
    assert_eq!(
        reported(&mut node, std::slice::from_ref(&dm)),
        vec![ConversationChange::Sealed {
            from: w.a.node_id(),
            to: w.c.node_id(),
            id: post_id(700),
            key: dm.key(),
        }]
    );
}

/// A node follows the threads of its own posts that have replies or
/// claims, and of the posts it replied to or claimed; no others.
#[test]
fn threads_of_are_own_posts_with_activity_and_posts_taken_part_in() {
    let w = World::new();
    let mut events = w.base();
    let quiet = w.f.post(&w.c, 5, 101, "Niemand antwortet");
    let b_offer = w.f.post(&w.b, 6, 102, "Leiter");
    let b_ref = EventRef {
        author: w.b.node_id(),
        id: post_id(102),
    };
    events.extend([
        quiet,
        b_offer,
        w.reply(&w.b, 10, 200, w.offer()),
        w.claim(&w.c, 11, 201),
        w.reply(&w.a, 12, 202, b_ref),
    ]);
    let node = w.node(&w.f.anchor, &events);
    let conv = &views(&node).conversations;
    let set = |refs: &[EventRef]| {
        refs.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(conv.threads_of(&w.a.node_id()), set(&[w.offer(), b_ref]));
    assert_eq!(conv.threads_of(&w.b.node_id()), set(&[w.offer(), b_ref]));
    assert_eq!(conv.threads_of(&w.c.node_id()), set(&[w.offer()]));
    assert_eq!(conv.threads_of(&w.f.anchor.node_id()), set(&[]));
}

/// Sealed messages are found by sender, by recipient and by pair, and
/// counted; claim states read as the API names them.
#[test]
fn sealed_messages_are_found_by_sender_recipient_and_pair() {
    let w = World::new();
    let mut events = w.base();
    events.extend([
        w.sealed(&w.a, &w.b, 10, 200, "1"),
        w.sealed(&w.a, &w.c, 11, 201, "2"),
        w.sealed(&w.b, &w.a, 12, 202, "3"),
        w.sealed(&w.a, &w.b, 13, 203, "4"),
    ]);
    let node = w.node(&w.f.anchor, &events);
    let conv = &views(&node).conversations;
    let ids = |it: &mut dyn Iterator<Item = &hearth_node::core::views::conversations::Sealed>| {
        it.map(|s| s.id).collect::<Vec<_>>()
    };
    let mut from_a = ids(&mut conv.sealed_from(w.a.node_id()));
    from_a.sort();
    assert_eq!(from_a, vec![post_id(200), post_id(201), post_id(203)]);
    assert_eq!(ids(&mut conv.sealed_to(w.a.node_id())), vec![post_id(202)]);
    assert_eq!(
        ids(&mut conv.sealed_between(&w.a.node_id(), &w.b.node_id())),
        vec![post_id(200), post_id(203)],
        "oldest first"
    );
    assert_eq!(ids(&mut conv.sealed_from(w.c.node_id())), vec![]);
    assert_eq!(conv.sealed_count(), 4);
    assert_eq!(
        [
            ClaimStatus::Open,
            ClaimStatus::Withdrawn,
            ClaimStatus::Accepted
        ]
        .map(ClaimStatus::as_str),
        ["open", "withdrawn", "accepted"]
    );
}

/// The digest tells different conversations apart, and a reset view
/// holds nothing.
#[test]
fn digest_tells_conversations_apart_and_reset_empties() {
    let w = World::new();
    let empty = Views::default().conversations.digest();
    let mut node = w.node(&w.f.anchor, &w.base());
    assert_eq!(
        views(&node).conversations.digest(),
        empty,
        "no conversation yet"
    );
    node.log_mut()
        .append_received(w.reply(&w.b, 10, 200, w.offer()))
        .unwrap();
    let one = views(&node).conversations.digest();
    assert_ne!(one, empty);
    node.log_mut()
        .append_received(w.sealed(&w.a, &w.b, 11, 201, "hi"))
        .unwrap();
    assert_ne!(views(&node).conversations.digest(), one);
    let mut conv = views(&node).conversations.clone();
    conv.reset();
    assert_eq!(conv.digest(), empty);
    assert_eq!(conv.sealed_count(), 0);
}

/// Sealed messages between one sender and one recipient are bounded: past
/// `SEALED_PER_PAIR_MAX` the oldest goes, the newest is kept and reported,
/// and a message older than all kept ones is neither kept nor reported.
#[test]
fn sealed_messages_per_pair_are_bounded_newest_kept() {
    let w = World::new();
    let mut node = w.node(&w.f.anchor, &w.base());
    let max = SEALED_PER_PAIR_MAX as u64;
    let all: Vec<VerifiedEvent> = (0..=max)
        .map(|i| w.sealed(&w.a, &w.b, 100 + i, 1_000 + u128::from(i), "hi"))
        .collect();
    let got = reported(&mut node, &all);
    assert_eq!(
        got.len() as u64,
        max + 1,
        "each was the newest when it came"
    );
    let kept: Vec<_> = views(&node)
        .conversations
        .sealed_between(&w.a.node_id(), &w.b.node_id())
        .map(|s| s.id)
        .collect();
    assert_eq!(kept.len(), SEALED_PER_PAIR_MAX);
    assert_eq!(kept.first(), Some(&post_id(1_001)), "the oldest went");
    let stale = w.sealed(&w.a, &w.b, 50, 999, "late and old");
    assert_eq!(reported(&mut node, &[stale]), vec![]);
    assert_eq!(
        views(&node).conversations.sealed_count(),
        SEALED_PER_PAIR_MAX
    );
}
