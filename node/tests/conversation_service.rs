//! The conversation capabilities on three core nodes that exchange their
//! events by hand (the libp2p mesh is exercised elsewhere): claim, accept,
//! reply, private messages stored everywhere and readable by one node, a
//! node offline while a message is written; and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hearth_node::core::bus::{Caller, ErrorCode};
use hearth_node::core::services::conversations::{
    AcceptParams, ClaimParams, ConversationKind, ConversationView, DmSendParams, GetParams,
    MarkReadParams, NoInbox, ReplyParams, WithdrawParams, THREAD_RETENTION_MS,
};
use hearth_node::core::services::market::PostParams;
use hearth_node::core::views::PostKey;
use hearth_node::core::{Node, Output};
use hearth_node::net::inbox::Inbox;
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::{Category, EventRef, ExpiryReason, Identity, Level, VerifiedEvent};

struct Three {
    a: Identity,
    b: Identity,
    c: Identity,
    nodes: Vec<Node<MemoryStore>>,
}

impl Three {
    fn new() -> Self {
        let f = Fixture::new();
        let (a, b, c) = (key(2), key(3), key(4));
        let admissions = [
            f.member_set(&f.anchor, 1, &a, Level::Member),
            f.member_set(&f.anchor, 2, &b, Level::Member),
            f.member_set(&f.anchor, 3, &c, Level::Member),
        ];
        let nodes = [&a, &b, &c]
            .into_iter()
            .map(|who| {
                let mut n = f.node(who);
                for e in &admissions {
                    n.log_mut().append_received(e.clone()).unwrap();
                }
                n
            })
            .collect();
        Three { a, b, c, nodes }
    }

    /// Events node `from` published since the last call.
    fn drain(&mut self, from: usize) -> Vec<VerifiedEvent> {
        std::iter::from_fn(|| self.nodes[from].poll_output())
            .filter_map(|o| match o {
                Output::Broadcast(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    /// Delivers what `from` published to the nodes in `to`.
    fn deliver(&mut self, from: usize, to: &[usize]) -> Vec<VerifiedEvent> {
        let events = self.drain(from);
        for &i in to {
            for e in &events {
                self.nodes[i].log_mut().append_received(e.clone()).unwrap();
            }
        }
        events
    }

    fn offer(&mut self) -> EventRef {
        let receipt = self.nodes[0]
            .market_post(
                NOW,
                Caller::Local,
                PostParams {
                    category: Category::Offer,
                    title: "Wasserkanister zu verschenken".into(),
                    body: "zwei Stück".into(),
                    tags: vec![],
                    ttl_seconds: None,
                    location: None,
                    client_id: None,
                },
            )
            .unwrap();
        self.deliver(0, &[1, 2]);
        EventRef {
            author: self.a.node_id(),
            id: receipt.post.id,
        }
    }
}

/// B claims A's offer, A accepts, and every node shows the post ended as
/// fulfilled by B.
#[test]
fn claim_accept_fulfils_on_every_node() {
    let mut t = Three::new();
    let post = t.offer();
    let claim = t.nodes[1]
        .market_claim(
            NOW,
            Caller::Local,
            ClaimParams {
                post,
                note: Some("Ich hätte gern einen".into()),
            },
        )
        .unwrap();
    t.deliver(1, &[0, 2]);
    t.nodes[0]
        .market_accept_claim(
            NOW,
            Caller::Local,
            AcceptParams {
                post: post.id,
                claim: EventRef {
                    author: t.b.node_id(),
                    id: claim.id,
                },
            },
        )
        .unwrap();
    t.deliver(0, &[1, 2]);
    for node in &t.nodes {
        let p = node
            .views()
            .market
            .get(&PostKey {
                author: post.author,
                id: post.id,
            })
            .unwrap();
        assert_eq!(p.expired.as_ref().unwrap().reason, ExpiryReason::Fulfilled);
        match node
            .conversation_get(
                NOW,
                Caller::Local,
                GetParams {
                    post: Some(post),
                    with: None,
                },
            )
            .unwrap()
        {
            ConversationView::Thread { fulfilled_by, .. } => {
                assert_eq!(fulfilled_by, Some(t.b.node_id()))
            }
            other => panic!("a thread, got {other:?}"),
        }
    }
    assert_eq!(
        t.nodes[0].views().digest(),
        t.nodes[2].views().digest(),
        "A and C converge"
    );
}

/// C stores A's and B's sealed messages but reads neither; A, offline while
/// B wrote, reads B's message once the events reach it.
#[test]
fn sealed_messages_stored_everywhere_readable_by_recipient_only() {
    let mut t = Three::new();
    let post = t.offer();
    // A is offline: B's message reaches only C.
    t.nodes[1]
        .dm_send(
            NOW,
            Caller::Local,
            DmSendParams {
                to: t.a.node_id(),
                body: "Ist noch einer da?".into(),
                post: Some(post),
            },
        )
        .unwrap();
    let written = t.deliver(1, &[2]);
    let messages = |node: &Node<MemoryStore>, with: &Identity| match node
        .conversation_get(
            NOW,
            Caller::Local,
            GetParams {
                post: None,
                with: Some(with.node_id()),
            },
        )
        .unwrap()
    {
        ConversationView::Messages { messages, .. } => messages,
        other => panic!("messages, got {other:?}"),
    };
    assert!(
        messages(&t.nodes[0], &t.b).is_empty(),
        "A has not seen it yet"
    );
    assert_eq!(
        t.nodes[2].views().conversations.sealed_count(),
        1,
        "C stores it"
    );
    assert!(
        messages(&t.nodes[2], &t.b).is_empty(),
        "and C has no conversation with B"
    );
    // A comes back: C (not B) hands it the event, as sync would.
    for e in written {
        t.nodes[0].log_mut().append_received(e).unwrap();
    }
    let got = messages(&t.nodes[0], &t.b);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_deref(), Some("Ist noch einer da?"));
    assert_eq!(got[0].post, Some(post));
    // A answers; C stores it too and reads nothing.
    t.nodes[0]
        .dm_send(
            NOW,
            Caller::Local,
            DmSendParams {
                to: t.b.node_id(),
                body: "Ja, komm vorbei.".into(),
                post: None,
            },
        )
        .unwrap();
    t.deliver(0, &[1, 2]);
    assert_eq!(t.nodes[2].views().conversations.sealed_count(), 2);
    let at_b = messages(&t.nodes[1], &t.a);
    assert_eq!(at_b.len(), 2, "B's own (unreadable to B) and A's answer");
    assert_eq!(
        at_b[0].body, None,
        "a sent box opens only for its recipient"
    );
    assert_eq!(at_b[1].body.as_deref(), Some("Ja, komm vorbei."));
    let list = t.nodes[0].conversation_list(NOW, Caller::Local).unwrap();
    assert_eq!(list.conversations.len(), 1);
    assert_eq!(
        (list.conversations[0].received, list.conversations[0].sent),
        (1, 1)
    );
}

/// Refusals: a reply to an unknown post, accepting a claim on someone
/// else's post, claiming one's own post, an empty or too long text, a
/// message to a non-member, and a stranger reading this node's messages.
/// None of them writes.
#[test]
fn bad_requests_are_refused_and_write_nothing() {
    let mut t = Three::new();
    let post = t.offer();
    let before: Vec<u64> = t.nodes.iter().map(|n| n.log().store().len()).collect();
    let unknown = EventRef {
        author: t.a.node_id(),
        id: post_id(999),
    };
    let err = t.nodes[1]
        .market_reply(
            NOW,
            Caller::Local,
            ReplyParams {
                post: unknown,
                body: "hallo?".into(),
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = t.nodes[1]
        .market_reply(
            NOW,
            Caller::Local,
            ReplyParams {
                post,
                body: "x".repeat(5_000),
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("shorten"), "{}", err.message);
    // C tries to accept a claim on A's post: C has no such post.
    let err = t.nodes[2]
        .market_accept_claim(
            NOW,
            Caller::Local,
            AcceptParams {
                post: post.id,
                claim: EventRef {
                    author: t.b.node_id(),
                    id: post_id(5),
                },
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = t.nodes[0]
        .market_claim(NOW, Caller::Local, ClaimParams { post, note: None })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    let err = t.nodes[1]
        .dm_send(
            NOW,
            Caller::Local,
            DmSendParams {
                to: key(9).node_id(),
                body: "hi".into(),
                post: None,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = t.nodes[1]
        .dm_send(
            NOW,
            Caller::Local,
            DmSendParams {
                to: t.a.node_id(),
                body: "   ".into(),
                post: None,
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    let err = t.nodes[0]
        .conversation_get(
            NOW,
            Caller::Remote(t.c.node_id()),
            GetParams {
                post: None,
                with: Some(t.b.node_id()),
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let err = t.nodes[0]
        .conversation_list(NOW, Caller::Remote(t.c.node_id()))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    let after: Vec<u64> = t.nodes.iter().map(|n| n.log().store().len()).collect();
    assert_eq!(before, after);
}

/// B withdraws its claim: every node shows it withdrawn, and A can no
/// longer accept it. Withdrawing again, withdrawing with no claim, or
/// withdrawing an accepted claim is refused and writes nothing.
#[test]
fn withdrawn_claim_shows_everywhere_and_cannot_be_accepted() {
    let mut t = Three::new();
    let post = t.offer();
    let claim = t.nodes[1]
        .market_claim(NOW, Caller::Local, ClaimParams { post, note: None })
        .unwrap();
    t.deliver(1, &[0, 2]);
    t.nodes[1]
        .market_withdraw_claim(NOW, Caller::Local, WithdrawParams { post, claim: None })
        .unwrap();
    t.deliver(1, &[0, 2]);
    for node in &t.nodes {
        let thread = node
            .views()
            .conversations
            .thread(&post, &node.views().membership);
        assert!(thread.claims[0].withdrawn, "withdrawn on every node");
    }
    let before: Vec<u64> = t.nodes.iter().map(|n| n.log().store().len()).collect();
    let again = t.nodes[1]
        .market_withdraw_claim(
            NOW,
            Caller::Local,
            WithdrawParams {
                post,
                claim: Some(claim.id),
            },
        )
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::BadRequest, "{}", again.message);
    let none = t.nodes[2]
        .market_withdraw_claim(NOW, Caller::Local, WithdrawParams { post, claim: None })
        .unwrap_err();
    assert_eq!(none.code, ErrorCode::NotFound, "{}", none.message);
    let accept = t.nodes[0]
        .market_accept_claim(
            NOW,
            Caller::Local,
            AcceptParams {
                post: post.id,
                claim: EventRef {
                    author: t.b.node_id(),
                    id: claim.id,
                },
            },
        )
        .unwrap_err();
    assert_eq!(accept.code, ErrorCode::BadRequest, "{}", accept.message);
    // C claims and is accepted; C cannot withdraw it afterwards.
    let c_claim = t.nodes[2]
        .market_claim(NOW, Caller::Local, ClaimParams { post, note: None })
        .unwrap();
    t.deliver(2, &[0, 1]);
    t.nodes[0]
        .market_accept_claim(
            NOW,
            Caller::Local,
            AcceptParams {
                post: post.id,
                claim: EventRef {
                    author: t.c.node_id(),
                    id: c_claim.id,
                },
            },
        )
        .unwrap();
    t.deliver(0, &[1, 2]);
    let accepted = t.nodes[2]
        .market_withdraw_claim(NOW, Caller::Local, WithdrawParams { post, claim: None })
        .unwrap_err();
    assert_eq!(accepted.code, ErrorCode::BadRequest, "{}", accepted.message);
    let after: Vec<u64> = t.nodes.iter().map(|n| n.log().store().len()).collect();
    assert_eq!(
        after,
        before.iter().map(|n| n + 2).collect::<Vec<_>>(),
        "only C's claim and A's acceptance were written"
    );
}

/// With a local inbox: the sender sees the text it sent, the recipient's
/// list counts the message unread with the sender's name and a preview,
/// and marking the conversation read clears it; a message that arrives
/// later with a lower Lamport time still counts as unread. Without an
/// inbox, marking read is `unavailable`; asking for both or neither of
/// `with`/`post` is `bad_request`.
#[test]
fn inbox_counts_unread_and_keeps_sent_texts() {
    let mut t = Three::new();
    let (a_inbox, b_inbox) = (Inbox::in_memory(), Inbox::in_memory());
    let post = t.offer();
    t.nodes[1]
        .member_profile(
            NOW,
            Caller::Local,
            hearth_node::core::services::membership::ProfileParams { name: "Bea".into() },
        )
        .unwrap();
    t.deliver(1, &[0, 2]);
    let dm = |to: &Identity, body: &str| DmSendParams {
        to: to.node_id(),
        body: body.into(),
        post: None,
    };
    t.nodes[1]
        .dm_send_with(NOW, Caller::Local, dm(&t.a, "Hallo A"), &b_inbox)
        .unwrap();
    // Written, but held back: it arrives after A marked the first read.
    let late = t.drain(1);
    t.nodes[1]
        .dm_send_with(NOW, Caller::Local, dm(&t.a, "Noch da?"), &b_inbox)
        .unwrap();
    t.deliver(1, &[0, 2]);
    t.nodes[1]
        .market_reply(
            NOW,
            Caller::Local,
            ReplyParams {
                post,
                body: "Gibt es noch welche?".into(),
            },
        )
        .unwrap();
    t.deliver(1, &[0, 2]);

    let mine = t.nodes[1]
        .conversation_get_with(
            NOW,
            Caller::Local,
            GetParams {
                post: None,
                with: Some(t.a.node_id()),
            },
            &b_inbox,
        )
        .unwrap();
    let ConversationView::Messages { messages, .. } = mine else {
        panic!("messages")
    };
    let sent: Vec<_> = messages.iter().map(|m| m.body.as_deref()).collect();
    assert_eq!(
        sent,
        [Some("Hallo A"), Some("Noch da?")],
        "B sees what it sent"
    );
    assert!(messages.iter().all(|m| m.outgoing && m.read));

    let list = t.nodes[0]
        .conversation_list_with(NOW, Caller::Local, &a_inbox)
        .unwrap();
    let dm_entry = list
        .conversations
        .iter()
        .find(|c| c.kind == ConversationKind::Dm)
        .unwrap();
    assert_eq!(dm_entry.name.as_deref(), Some("Bea"));
    assert_eq!((dm_entry.unread, dm_entry.received), (1, 1));
    assert_eq!(
        dm_entry.last.as_ref().unwrap().text.as_deref(),
        Some("Noch da?")
    );
    let thread = list
        .conversations
        .iter()
        .find(|c| c.kind == ConversationKind::Post)
        .unwrap();
    assert_eq!(thread.post, Some(post));
    assert_eq!(thread.unread, 1, "B's reply under A's post");
    let read = |p: MarkReadParams, inbox: &Inbox| {
        t.nodes[0].conversation_mark_read(Caller::Local, p, inbox)
    };
    let marked = read(
        MarkReadParams {
            with: Some(t.b.node_id()),
            post: None,
        },
        &a_inbox,
    )
    .unwrap();
    assert_eq!(marked.marked, 1);
    for e in late {
        t.nodes[0].log_mut().append_received(e).unwrap();
    }
    let list = t.nodes[0]
        .conversation_list_with(NOW, Caller::Local, &a_inbox)
        .unwrap();
    let dm_entry = list
        .conversations
        .iter()
        .find(|c| c.kind == ConversationKind::Dm)
        .unwrap();
    assert_eq!(
        (dm_entry.unread, dm_entry.received),
        (1, 2),
        "the late message with a lower Lamport time is unread"
    );
    let err = t.nodes[0]
        .conversation_mark_read(
            Caller::Local,
            MarkReadParams {
                with: Some(t.b.node_id()),
                post: None,
            },
            &NoInbox,
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    let both = t.nodes[0]
        .conversation_mark_read(
            Caller::Local,
            MarkReadParams {
                with: Some(t.b.node_id()),
                post: Some(post),
            },
            &a_inbox,
        )
        .unwrap_err();
    assert_eq!(both.code, ErrorCode::BadRequest);
    let remote = t.nodes[0]
        .conversation_mark_read(
            Caller::Remote(t.c.node_id()),
            MarkReadParams {
                with: Some(t.b.node_id()),
                post: None,
            },
            &a_inbox,
        )
        .unwrap_err();
    assert_eq!(remote.code, ErrorCode::Unauthorized);
}

/// Retention: once a post ended, its participants (its author and whoever
/// replied) still read the thread's texts until the end plus
/// `THREAD_RETENTION_MS`, counted from the expiry event's own time; a
/// member who took no part gets the thread without texts at once, and
/// after the period nobody gets them. The replies stay listed and the
/// answer is the same on every node with the same events and `now`.
#[test]
fn ended_thread_texts_kept_for_participants_then_withheld() {
    let mut t = Three::new();
    let post = t.offer();
    t.nodes[1]
        .market_reply(
            NOW,
            Caller::Local,
            ReplyParams {
                post,
                body: "Ich komme morgen".into(),
            },
        )
        .unwrap();
    t.deliver(1, &[0, 2]);
    let ended = NOW + 1_000;
    t.nodes[0]
        .market_expire(
            ended,
            Caller::Local,
            hearth_node::core::services::market::ExpireParams {
                id: post.id,
                author: None,
                reason: ExpiryReason::Fulfilled,
            },
        )
        .unwrap();
    t.deliver(0, &[1, 2]);
    let get = |node: &Node<MemoryStore>, now: u64| match node
        .conversation_get(
            now,
            Caller::Local,
            GetParams {
                post: Some(post),
                with: None,
            },
        )
        .unwrap()
    {
        ConversationView::Thread {
            thread,
            readable_until,
            withheld,
            ..
        } => (thread.replies[0].body.clone(), readable_until, withheld),
        other => panic!("a thread, got {other:?}"),
    };
    let until = ended + THREAD_RETENTION_MS;
    let during = ended + 10;
    assert_eq!(
        get(&t.nodes[0], during),
        ("Ich komme morgen".to_owned(), Some(until), false),
        "the author reads it"
    );
    assert_eq!(get(&t.nodes[1], during).0, "Ich komme morgen", "so does B");
    assert_eq!(
        get(&t.nodes[2], during),
        (String::new(), Some(until), true),
        "C took no part"
    );
    for node in &t.nodes {
        assert_eq!(get(node, until), (String::new(), Some(until), true));
        assert_eq!(get(node, until - 1).2, node.node_id() == t.c.node_id());
    }
}
