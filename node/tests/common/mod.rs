//! A small community to test against: one anchor, keys to admit, and
//! helpers to sign events at chosen Lamport times.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fillable_store;
// The HTTP harness needs the runtime; the core's tests (and the mutation
// runs over the core, scripts/mutants) build without it.
#[cfg(feature = "runtime")]
pub mod http;

use hearth_node::core::{Config, Node};
use hearth_node::store::MemoryStore;
use hearth_proto::{
    Category, CommunityId, CommunitySettings, Event, EventId, ExpiryReason, Genesis, Identity,
    Level, MemberSet, Payload, PostContent, PostCreated, PostExpired, PostUpdated, VerifiedEvent,
};

/// 2026-01-01T00:00:00Z, the tests' "now".
pub const NOW: u64 = 1_767_225_600_000;
pub const DAY_MS: u64 = 24 * 3600 * 1000;

pub fn key(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

pub struct Fixture {
    pub anchor: Identity,
    pub genesis: VerifiedEvent,
    pub community: CommunityId,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let anchor = key(1);
        let genesis = Event {
            id: EventId::from_parts(NOW, 1),
            ts: NOW,
            author: anchor.node_id(),
            lamport: 0,
            community: CommunityId::default(),
            payload: Payload::Genesis(Genesis {
                name: "Lindenhof Street".into(),
                anchors: vec![anchor.node_id()],
            }),
        }
        .sign(&anchor)
        .unwrap();
        let community = genesis.founded_community().unwrap();
        Fixture {
            anchor,
            genesis,
            community,
        }
    }

    pub fn event(&self, who: &Identity, lamport: u64, id: u128, payload: Payload) -> VerifiedEvent {
        Event {
            id: EventId::from_parts(NOW, id),
            ts: NOW,
            author: who.node_id(),
            lamport,
            community: self.community,
            payload,
        }
        .sign(who)
        .unwrap()
    }

    pub fn member_set(
        &self,
        by: &Identity,
        lamport: u64,
        member: &Identity,
        level: Level,
    ) -> VerifiedEvent {
        self.event(
            by,
            lamport,
            u128::from(lamport) << 16 | 0xfff,
            Payload::MemberSet(MemberSet {
                member: member.node_id(),
                level,
            }),
        )
    }

    pub fn post(&self, who: &Identity, lamport: u64, id: u128, title: &str) -> VerifiedEvent {
        self.post_with(
            who,
            lamport,
            id,
            content(title, Category::Offer, &["tools"], NOW + DAY_MS),
        )
    }

    pub fn post_with(
        &self,
        who: &Identity,
        lamport: u64,
        id: u128,
        content: PostContent,
    ) -> VerifiedEvent {
        self.event(
            who,
            lamport,
            id,
            Payload::PostCreated(PostCreated {
                content: content.into(),
                client_id: None,
            }),
        )
    }

    pub fn update(&self, who: &Identity, lamport: u64, target: u128, title: &str) -> VerifiedEvent {
        self.event(
            who,
            lamport,
            (u128::from(lamport) << 32) | target,
            Payload::PostUpdated(PostUpdated {
                target: EventId::from_parts(NOW, target),
                content: content(title, Category::Offer, &["tools"], NOW + DAY_MS).into(),
            }),
        )
    }

    pub fn expire(
        &self,
        who: &Identity,
        lamport: u64,
        target: u128,
        reason: ExpiryReason,
    ) -> VerifiedEvent {
        self.event(
            who,
            lamport,
            (u128::from(lamport) << 40) | target,
            Payload::PostExpired(PostExpired {
                target: EventId::from_parts(NOW, target),
                reason,
            }),
        )
    }

    /// A node for `who` over a fresh in-memory store.
    pub fn node(&self, who: &Identity) -> Node<MemoryStore> {
        self.node_on(who, MemoryStore::new())
    }

    /// A node for `who` over `store` (a test double, say).
    pub fn node_on<S: hearth_node::store::EventStore>(&self, who: &Identity, store: S) -> Node<S> {
        Node::new(who.clone(), &self.genesis, store, Config::default(), 7).unwrap()
    }

    /// A node for `who` on which the anchor has admitted `who` at `level`.
    pub fn admitted_node(&self, who: &Identity, level: Level) -> Node<MemoryStore> {
        let mut node = self.node(who);
        if who.node_id() != self.anchor.node_id() {
            let set = self.member_set(&self.anchor, 1, who, level);
            node.log_mut().append_received(set).unwrap();
        }
        node
    }
}

pub fn content(title: &str, category: Category, tags: &[&str], expires_at: u64) -> PostContent {
    PostContent {
        category,
        title: title.into(),
        body: format!("body of {title}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        expires_at,
        location: None,
    }
}

/// A `community.settings` payload: the name, the TTL cap and the per-author
/// bound.
pub fn settings(name: &str, ttl_s: u64, per_author: u64) -> Payload {
    Payload::Settings(CommunitySettings {
        name: name.into(),
        post_ttl_max_s: ttl_s,
        posts_per_author_max: per_author,
    })
}

pub fn post_id(n: u128) -> EventId {
    EventId::from_parts(NOW, n)
}

/// The titles of the posts `node` lists at `now` (up to 200), sorted.
pub fn titles<S: hearth_node::store::EventStore>(node: &Node<S>, now: u64) -> Vec<String> {
    let mut t: Vec<String> = node
        .market_list(
            now,
            hearth_node::core::views::ListQuery {
                limit: Some(200),
                ..Default::default()
            },
        )
        .unwrap()
        .posts
        .into_iter()
        .map(|p| p.title)
        .collect();
    t.sort();
    t
}

/// What a local `market.post` of an offer with this title and body sends.
pub fn offer_params(title: &str, body: String) -> hearth_node::core::services::market::PostParams {
    hearth_node::core::services::market::PostParams {
        category: Category::Offer,
        title: title.into(),
        body,
        tags: vec!["tools".into()],
        ttl_seconds: None,
        location: None,
        client_id: None,
    }
}
