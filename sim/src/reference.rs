//! The reference model: DESIGN.md §4's view rules, written a second time,
//! as plainly as possible, so the simulator can check that nodes are
//! *right*, not only that they agree.
//!
//! A deterministic bug in `node::core::views` converges happily: every node
//! computes the same wrong answer. This module owns an independent answer.
//! It shares no code with `core/views` (it folds `hearth_proto` types and
//! names the view's `Post` and `PostKey` only to read the core's answer):
//! take a node's whole event set, sort it by `(lamport, hash)`, fold it once,
//! then derive every post from what the fold collected. No indexes, no
//! incremental updates, no snapshots: slow and obviously right.
//!
//! How to add a rule (capped TTL from `community.settings`, `moderated`
//! expiries, a per-author active-post bound, display names): ordered facts
//! (settings, levels, names) go into [`Fold`] as one more `match` arm in
//! [`Fold::apply`]; per-post rules go into [`Reference::derive`] (one
//! function per question: content, expiry, shown), and a new shown field
//! into [`PostRow`] together with its value read from the core's `Post` in
//! [`PostRow::of_core`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hearth_node::core::views::market::{Post, PostKey};
use hearth_proto::{
    EventId, EventKey, ExpiryReason, Level, NodeId, Payload, PostContent, VerifiedEvent,
};

/// What the model says about one post, in the fields the core's view
/// shows today. Compared field by field with [`PostRow::of_core`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRow {
    pub author: NodeId,
    pub id: EventId,
    /// The `created` that is the post (the lowest hash of that name).
    pub created: EventKey,
    /// The event whose content is shown, and the content itself.
    pub content_event: EventKey,
    pub content: Arc<PostContent>,
    pub client_id: Option<String>,
    /// The latest expiry that counts: (by, reason, event).
    pub expired: Option<(NodeId, ExpiryReason, EventKey)>,
    /// The author's current level lets the post show.
    pub author_active: bool,
}

impl PostRow {
    /// The same fields, read from the core's view.
    pub fn of_core(p: &Post) -> PostRow {
        PostRow {
            author: p.author,
            id: p.id,
            created: p.created,
            content_event: p.content_event,
            content: p.content.clone(),
            client_id: p.client_id.clone(),
            expired: p
                .expired
                .as_ref()
                .map(|x| (x.by, x.reason.clone(), x.event)),
            author_active: p.author_active,
        }
    }

    /// Listed at `now`: shown and its TTL not passed.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.author_active && self.expired.is_none() && self.content.expires_at > now_ms
    }
}

/// A post's name as the fold files things: (author, id).
type Name = (NodeId, EventId);
/// A `created`: its key, content and client id.
type CreatedFact = (EventKey, Arc<PostContent>, Option<String>);

/// The ordered fold: everything whose meaning depends on the position of
/// an event in `(lamport, hash)` order.
#[derive(Debug, Default)]
struct Fold {
    genesis_anchors: Vec<NodeId>,
    /// Current levels: `member.set` applied in order, each only if its
    /// author is an anchor at that point.
    levels: BTreeMap<NodeId, Level>,
    /// Every `member.set` (author, member, level), order kept for the
    /// closure (which does not care about order).
    sets: Vec<(NodeId, NodeId, Level)>,
    /// Every `created` by name, lowest hash first.
    created: BTreeMap<Name, Vec<CreatedFact>>,
    /// Every update by the name it reaches (its own author + target), in
    /// key order.
    updates: BTreeMap<Name, Vec<(EventKey, Arc<PostContent>)>>,
    /// Every expiry by target id, in key order: (key, by, reason).
    expiries: BTreeMap<EventId, Vec<(EventKey, NodeId, ExpiryReason)>>,
}

impl Fold {
    fn apply(&mut self, ev: &VerifiedEvent) {
        let e = ev.event();
        let key = ev.key();
        match &e.payload {
            Payload::Genesis(g) => {
                self.genesis_anchors = g.anchors.clone();
                for a in &g.anchors {
                    self.levels.insert(*a, Level::Anchor);
                }
            }
            Payload::MemberSet(m) => {
                self.sets.push((e.author, m.member, m.level));
                if self.levels.get(&e.author) == Some(&Level::Anchor) {
                    self.levels.insert(m.member, m.level);
                }
            }
            Payload::PostCreated(p) => {
                let all = self.created.entry((e.author, e.id)).or_default();
                all.push((key, p.content.clone(), p.client_id.clone()));
                all.sort_by_key(|c| c.0.hash);
            }
            Payload::PostUpdated(u) => {
                self.updates
                    .entry((e.author, u.target))
                    .or_default()
                    .push((key, u.content.clone()));
            }
            Payload::PostExpired(x) => {
                self.expiries
                    .entry(x.target)
                    .or_default()
                    .push((key, e.author, x.reason.clone()));
            }
            // The issue-10 rules (settings, names) are not modelled yet;
            // the workload does not make these events.
            Payload::Settings(_) | Payload::Profile(_) => {}
            Payload::Unknown { .. } => {}
        }
    }
}

/// The model over one event set.
#[derive(Debug)]
pub struct Reference {
    fold: Fold,
    vouched: BTreeSet<NodeId>,
    posts: BTreeMap<PostKey, PostRow>,
    events: usize,
}

impl Reference {
    /// Builds the model from an event set in any order.
    pub fn new(mut events: Vec<VerifiedEvent>) -> Reference {
        events.sort_by_key(|e| e.key());
        events.dedup_by_key(|e| e.key());
        let mut fold = Fold::default();
        for ev in &events {
            fold.apply(ev);
        }
        let vouched = closure(&fold.genesis_anchors, &fold.sets);
        let mut model = Reference {
            fold,
            vouched,
            posts: BTreeMap::new(),
            events: events.len(),
        };
        let names: Vec<Name> = model.fold.created.keys().copied().collect();
        for (author, id) in names {
            if let Some(row) = model.derive(author, id) {
                model.posts.insert(PostKey { author, id }, row);
            }
        }
        model
    }

    fn level(&self, who: &NodeId) -> Option<Level> {
        self.fold.levels.get(who).copied()
    }

    fn active(&self, who: &NodeId) -> bool {
        matches!(
            self.level(who),
            Some(Level::Member | Level::Trusted | Level::Anchor)
        )
    }

    fn trusted(&self, who: &NodeId) -> bool {
        matches!(self.level(who), Some(Level::Trusted | Level::Anchor))
    }

    /// One post from the collected facts (DESIGN.md §4).
    fn derive(&self, author: NodeId, id: EventId) -> Option<PostRow> {
        // Of two `created` with one name, the lower hash is the post.
        let (created, created_content, client_id) =
            self.fold.created.get(&(author, id))?.first()?;
        // Shown content: the latest of the `created` and the author's own
        // updates (updates by others are filed under their own name).
        let mut content_event = *created;
        let mut content = created_content.clone();
        for (k, c) in self.fold.updates.get(&(author, id)).into_iter().flatten() {
            if *k > content_event {
                content_event = *k;
                content = c.clone();
            }
        }
        // The latest expiry that counts: the author's own, any reason; a
        // `stale` one by someone trusted or an anchor *now*.
        let mut expired = None;
        for (k, by, reason) in self.fold.expiries.get(&id).into_iter().flatten() {
            let counts = *by == author || (*reason == ExpiryReason::Stale && self.trusted(by));
            if counts && expired.as_ref().is_none_or(|(_, _, at)| k > at) {
                expired = Some((*by, reason.clone(), *k));
            }
        }
        Some(PostRow {
            author,
            id,
            created: *created,
            content_event,
            content,
            client_id: client_id.clone(),
            expired,
            author_active: self.active(&author),
        })
    }

    /// Events the model was built from.
    pub fn event_count(&self) -> usize {
        self.events
    }

    /// Whether `author`'s events may be in the log at all.
    pub fn is_vouched(&self, author: &NodeId) -> bool {
        self.vouched.contains(author)
    }

    /// Levels that mean something: `removed` is the same as never admitted
    /// to every rule, so it is left out (the core may or may not keep it).
    pub fn levels(&self) -> BTreeMap<NodeId, Level> {
        self.fold
            .levels
            .iter()
            .filter(|(_, l)| **l != Level::Removed)
            .map(|(k, l)| (*k, *l))
            .collect()
    }

    /// Every post, expired and hidden ones too, by name.
    pub fn posts(&self) -> &BTreeMap<PostKey, PostRow> {
        &self.posts
    }

    /// The marketplace as `list` shows it at `now` (no filter, no limit):
    /// newest shown content first, ties by name.
    pub fn listed(&self, now_ms: u64) -> Vec<PostKey> {
        let mut live: Vec<(EventKey, PostKey)> = self
            .posts
            .iter()
            .filter(|(_, p)| p.is_live(now_ms))
            .map(|(k, p)| (p.content_event, *k))
            .collect();
        live.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        live.into_iter().map(|(_, k)| k).collect()
    }
}

/// The vouching closure (DESIGN.md §4), as a fixed point: vouched anchors
/// are the genesis anchors and every key a vouched anchor set to `anchor`;
/// vouched authors are those and every key a vouched anchor set to member,
/// trusted or anchor. Order plays no part.
fn closure(genesis_anchors: &[NodeId], sets: &[(NodeId, NodeId, Level)]) -> BTreeSet<NodeId> {
    let mut anchors: BTreeSet<NodeId> = genesis_anchors.iter().copied().collect();
    loop {
        let before = anchors.len();
        for (by, member, level) in sets {
            if *level == Level::Anchor && anchors.contains(by) {
                anchors.insert(*member);
            }
        }
        if anchors.len() == before {
            break;
        }
    }
    let mut vouched = anchors.clone();
    for (by, member, level) in sets {
        if *level != Level::Removed && anchors.contains(by) {
            vouched.insert(*member);
        }
    }
    vouched
}
