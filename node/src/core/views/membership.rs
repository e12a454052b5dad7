//! Who belongs to the community: the vouching closure that decides which
//! authors' events enter the log, and the levels the views use.
//!
//! Two different questions, answered from the same `member.set` events:
//! - *Vouched* (log admission, DESIGN.md §4): the genesis anchors, every key
//!   a vouched anchor set to `anchor`, and every key a vouched anchor set to
//!   `member`/`trusted`/`anchor`. Monotone: more events only grow it, so
//!   every node ends with the same log whatever the arrival order.
//! - *Level* (permissions in views): replay `member.set` in `(lamport, hash)`
//!   order, each effective only if its author is an anchor at that point.
//!
//! It also owns what the community is called and its limits (issue 10):
//! - *Settings*: `community.settings` events are merged into the same
//!   ordered replay; one counts only if its author is an anchor at its point
//!   of the order, and the settings in force are those of the latest one
//!   that counts (else [`default_settings`] with the genesis name).
//! - *Names*: a member's display name is the `community.member.profile` of
//!   theirs with the highest `(lamport, hash)`, shown only while active.

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::{CommunitySettings, EventKey, Level, NodeId, Payload, VerifiedEvent};
use serde::{Deserialize, Serialize};

use super::ViewError;

/// The community's name and limits, as the views apply them.
pub type Settings = CommunitySettings;

/// Default longest life of a post after its content event's `ts`: 30 days,
/// the longest a neighbourhood offer plausibly stays true.
pub const POST_TTL_MAX_S_DEFAULT: u64 = 30 * 24 * 3600;
/// Default posts without a counting expiry shown per author: far above what
/// a household posts, far below what hides everyone else's posts.
pub const POSTS_PER_AUTHOR_MAX_DEFAULT: u64 = 100;

/// The settings in force before any anchor signed some.
pub fn default_settings(genesis_name: &str) -> Settings {
    Settings {
        name: genesis_name.to_owned(),
        post_ttl_max_s: POST_TTL_MAX_S_DEFAULT,
        posts_per_author_max: POSTS_PER_AUTHOR_MAX_DEFAULT,
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MembershipView {
    genesis_anchors: Vec<NodeId>,
    genesis_name: String,
    /// Every logged `member.set`: key -> (author, member, level).
    sets: BTreeMap<EventKey, (NodeId, NodeId, Level)>,
    /// Every logged `community.settings`: key -> (author, settings). Few (an
    /// anchor's deliberate act), so each is kept for the ordered replay.
    /// Bounded like `sets`, by the log: only vouched authors' events enter
    /// it, and only an anchor's count. One by a vouched anchor arriving out
    /// of order replays the membership, O(sets + settings): an anchor
    /// flooding settings out of order costs quadratic time, a known limit
    /// (anchors are trusted; others' settings never replay).
    settings_events: BTreeMap<EventKey, (NodeId, Settings)>,
    /// The latest profile of each author: only the maximum key matters, and
    /// a maximum is the same whatever order the profiles came in. One entry
    /// per vouched author, so bounded by the membership itself.
    profiles: BTreeMap<NodeId, (EventKey, String)>,
    /// Derived: current levels by ordered replay.
    #[serde(skip)]
    levels: BTreeMap<NodeId, Level>,
    /// Derived: the settings in force, with the key of the settings event
    /// that set them (`None`: the defaults).
    #[serde(skip)]
    settings: Option<(Option<EventKey>, Settings)>,
    /// Derived: the monotone vouching closure.
    #[serde(skip)]
    vouched_anchors: BTreeSet<NodeId>,
    #[serde(skip)]
    vouched: BTreeSet<NodeId>,
}

/// What applying one event changed, for the views that depend on levels.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    /// Keys that became, or stopped being, active (member, trusted or
    /// anchor): their own posts show or hide.
    pub active_changed: BTreeSet<NodeId>,
    /// Keys that became, or stopped being, trusted or anchor: their stale
    /// marks on others' posts count or stop counting. A level change that
    /// moves neither (member to removed moves one; anchor to trusted
    /// neither) re-derives nothing.
    pub trusted_changed: BTreeSet<NodeId>,
    /// Keys whose current level changed at all (the change feed reports
    /// each; `active_changed` and `trusted_changed` are the subsets the
    /// marketplace re-derives for).
    pub levels_changed: BTreeSet<NodeId>,
    /// Keys that became vouched (their pending events may now enter the log).
    pub newly_vouched: BTreeSet<NodeId>,
    /// The market's limits in force changed (the TTL cap or the per-author
    /// bound): every post is re-derived (rare: an anchor's deliberate act).
    /// A rename alone moves neither, and re-deriving a town's posts on every
    /// node for a new community name would be seconds of work for nothing.
    pub limits_changed: bool,
}

/// The settings the market view derives from: the TTL cap and the
/// per-author bound (the name is shown, never derived from).
fn market_limits(s: &Settings) -> (u64, u64) {
    (s.post_ttl_max_s, s.posts_per_author_max)
}

impl MembershipChange {
    /// Records `key`'s move from `old` to `new` in the sets it affects.
    fn note(&mut self, key: NodeId, old: Option<Level>, new: Option<Level>) {
        let active = |l: Option<Level>| l.is_some_and(Level::is_active);
        let trusted = |l: Option<Level>| l.is_some_and(Level::is_trusted);
        if active(old) != active(new) {
            self.active_changed.insert(key);
        }
        if trusted(old) != trusted(new) {
            self.trusted_changed.insert(key);
        }
        if old != new {
            self.levels_changed.insert(key);
        }
    }
}

impl MembershipView {
    pub fn reset(&mut self) {
        *self = MembershipView::default();
    }

    /// Current level of `key`, if it was ever admitted by an effective set.
    pub fn level(&self, key: &NodeId) -> Option<Level> {
        self.levels.get(key).copied()
    }

    /// Member, trusted or anchor now.
    pub fn is_active(&self, key: &NodeId) -> bool {
        self.level(key).is_some_and(Level::is_active)
    }

    /// Trusted or anchor now: may mark others' posts stale.
    pub fn is_trusted(&self, key: &NodeId) -> bool {
        self.level(key).is_some_and(Level::is_trusted)
    }

    /// Whether `author`'s events enter the log (see module docs).
    pub fn is_vouched(&self, author: &NodeId) -> bool {
        self.vouched.contains(author)
    }

    pub fn levels(&self) -> &BTreeMap<NodeId, Level> {
        &self.levels
    }

    /// The settings in force (see module docs).
    pub fn settings(&self) -> &Settings {
        // Only before the genesis is applied: the defaults, unnamed.
        static BEFORE_GENESIS: Settings = Settings {
            name: String::new(),
            post_ttl_max_s: POST_TTL_MAX_S_DEFAULT,
            posts_per_author_max: POSTS_PER_AUTHOR_MAX_DEFAULT,
        };
        match &self.settings {
            Some((_, s)) => s,
            None => &BEFORE_GENESIS,
        }
    }

    /// The community's name: the latest counting settings' name, else the
    /// genesis name.
    pub fn community_name(&self) -> &str {
        &self.settings().name
    }

    /// `key`'s display name, while `key` is an active member and has set one.
    pub fn display_name(&self, key: &NodeId) -> Option<&str> {
        if !self.is_active(key) {
            return None;
        }
        self.profiles.get(key).map(|(_, name)| name.as_str())
    }

    /// Active anchors now: the service refuses a change that leaves none.
    pub fn anchor_count(&self) -> usize {
        self.levels
            .values()
            .filter(|l| **l == Level::Anchor)
            .count()
    }

    pub fn apply(&mut self, event: &VerifiedEvent) -> MembershipChange {
        let e = event.event();
        let key = event.key();
        match &e.payload {
            Payload::Genesis(g) => {
                self.genesis_anchors = g.anchors.clone();
                self.genesis_name = g.name.clone();
                self.recompute()
            }
            Payload::MemberSet(m) => {
                let is_last = self.is_after_all(&key);
                self.sets.insert(key, (e.author, m.member, m.level));
                if self.genesis_anchors.is_empty() {
                    self.recompute()
                } else if is_last {
                    self.apply_latest(e.author, m.member, m.level)
                } else {
                    self.apply_earlier(&key, e.author, m.member, m.level)
                }
            }
            Payload::Settings(s) => {
                let is_last = self.is_after_all(&key);
                self.settings_events.insert(key, (e.author, s.clone()));
                if self.genesis_anchors.is_empty() {
                    // Before the genesis nothing counts; the genesis replays.
                    MembershipChange::default()
                } else if !self.vouched_anchors.contains(&e.author) {
                    // Whoever is an anchor at some point of the replay is a
                    // vouched anchor, so this event counts nowhere in the
                    // current set, and a later set that sorts after it
                    // cannot change that (one that sorts before replays).
                    // Skipping the replay keeps a member's flood of
                    // out-of-order settings from costing quadratic time.
                    MembershipChange::default()
                } else if is_last {
                    let mut change = MembershipChange::default();
                    if self.level(&e.author) == Some(Level::Anchor) {
                        let old = self.settings.replace((Some(key), s.clone()));
                        change.limits_changed =
                            old.map(|(_, o)| market_limits(&o)) != Some(market_limits(s));
                    }
                    change
                } else {
                    self.replay_levels()
                }
            }
            Payload::Profile(p) => {
                let newer = self.profiles.get(&e.author).is_none_or(|(k, _)| *k < key);
                if newer {
                    self.profiles.insert(e.author, (key, p.name.clone()));
                }
                MembershipChange::default()
            }
            _ => MembershipChange::default(),
        }
    }

    /// Whether `key` sorts after every `member.set` and settings event: then
    /// it only extends the ordered replay.
    fn is_after_all(&self, key: &EventKey) -> bool {
        self.sets.keys().next_back().is_none_or(|last| last < key)
            && self
                .settings_events
                .keys()
                .next_back()
                .is_none_or(|last| last < key)
    }

    /// Fast path: a set that sorts after all others only extends the replay.
    fn apply_latest(&mut self, author: NodeId, member: NodeId, level: Level) -> MembershipChange {
        let mut change = MembershipChange::default();
        if self.level(&author) == Some(Level::Anchor) {
            let old = self.levels.insert(member, level);
            change.note(member, old, Some(level));
        }
        change.newly_vouched = self.grow_closure(author, member, level);
        change
    }

    /// A set that sorts before others (it arrived late, e.g. by sync): the
    /// levels are replayed unless [`MembershipView::earlier_without_replay`]
    /// can tell the outcome, but the closure is monotone and order-free, so
    /// it only grows by this set, as for the latest.
    fn apply_earlier(
        &mut self,
        key: &EventKey,
        author: NodeId,
        member: NodeId,
        level: Level,
    ) -> MembershipChange {
        let mut change = self
            .earlier_without_replay(key, author, member, level)
            .unwrap_or_else(|| self.replay_levels());
        change.newly_vouched = self.grow_closure(author, member, level);
        change
    }

    /// The levels after a set that sorts before others, in the cases where
    /// it provably moves no one's anchor status, so no other set or
    /// settings event changes whether it counts; `None`: replay. A node
    /// back from a week offline, or a partition healing, receives most of
    /// the sets it missed out of order, and a replay per set is quadratic
    /// in the community's size (a sixth of a 1,000-node heal in the
    /// simulator). The cases:
    /// - its author is no vouched anchor, so an anchor nowhere in the
    ///   replay: the set counts nowhere and nothing changes;
    /// - its author is a genesis anchor with no set of its own before it
    ///   (so an anchor at its point: it counts), it does not make an
    ///   anchor, its member is no vouched anchor (an anchor nowhere,
    ///   before or after), and no set of the member sorts after it: the
    ///   member's level is this set's, everyone else's is unchanged.
    fn earlier_without_replay(
        &mut self,
        key: &EventKey,
        author: NodeId,
        member: NodeId,
        level: Level,
    ) -> Option<MembershipChange> {
        if !self.vouched_anchors.contains(&author) {
            return Some(MembershipChange::default());
        }
        if level == Level::Anchor
            || self.vouched_anchors.contains(&member)
            || !self.genesis_anchors.contains(&author)
        {
            return None;
        }
        let replay_needed = self
            .sets
            .iter()
            .any(|(k, (_, m, _))| (*m == author && k < key) || (*m == member && k > key));
        if replay_needed {
            return None;
        }
        let mut change = MembershipChange::default();
        let old = self.levels.insert(member, level);
        change.note(member, old, Some(level));
        Some(change)
    }

    /// Replays every set and settings event in key order into the levels
    /// and the settings; returns what changed (`newly_vouched` left empty).
    fn replay_levels(&mut self) -> MembershipChange {
        let mut levels: BTreeMap<NodeId, Level> = self
            .genesis_anchors
            .iter()
            .map(|a| (*a, Level::Anchor))
            .collect();
        let mut settings = (None, default_settings(&self.genesis_name));
        let mut pending_settings = self.settings_events.iter().peekable();
        for (key, (author, member, level)) in &self.sets {
            // Settings that sort before this set see the levels so far.
            while let Some((sk, (sa, s))) = pending_settings.next_if(|(sk, _)| *sk < key) {
                if levels.get(sa) == Some(&Level::Anchor) {
                    settings = (Some(*sk), s.clone());
                }
            }
            if levels.get(author) == Some(&Level::Anchor) {
                levels.insert(*member, *level);
            }
        }
        for (sk, (sa, s)) in pending_settings {
            if levels.get(sa) == Some(&Level::Anchor) {
                settings = (Some(*sk), s.clone());
            }
        }
        let old_settings = self.settings.replace(settings);
        let old = std::mem::replace(&mut self.levels, levels);
        let mut change = MembershipChange {
            limits_changed: old_settings.map(|(_, s)| market_limits(&s))
                != Some(market_limits(self.settings())),
            ..MembershipChange::default()
        };
        for key in changed_keys(&old, &self.levels) {
            change.note(key, old.get(&key).copied(), self.level(&key));
        }
        change
    }

    /// Adds one set to the closure; cascades when a new anchor is vouched,
    /// because that anchor's earlier sets now count.
    fn grow_closure(&mut self, author: NodeId, member: NodeId, level: Level) -> BTreeSet<NodeId> {
        let mut newly = BTreeSet::new();
        if !self.vouched_anchors.contains(&author) {
            return newly;
        }
        let mut work = vec![(member, level)];
        while let Some((member, level)) = work.pop() {
            if !level.is_active() {
                continue;
            }
            if self.vouched.insert(member) {
                newly.insert(member);
            }
            if level == Level::Anchor && self.vouched_anchors.insert(member) {
                work.extend(
                    self.sets
                        .values()
                        .filter(|(a, _, _)| *a == member)
                        .map(|(_, m, l)| (*m, *l)),
                );
            }
        }
        newly
    }

    /// Full recomputation of levels and closure from the stored sets, used
    /// for the genesis and after restoring a snapshot (a set that arrives
    /// out of order takes `apply_earlier`).
    fn recompute(&mut self) -> MembershipChange {
        let mut change = self.replay_levels();
        let old_vouched = std::mem::take(&mut self.vouched);
        self.vouched_anchors.clear();
        for a in &self.genesis_anchors {
            self.vouched_anchors.insert(*a);
            self.vouched.insert(*a);
        }
        let sets: Vec<(NodeId, NodeId, Level)> = self.sets.values().copied().collect();
        // Closure to a fixed point; sets are few, so quadratic is fine.
        loop {
            let before = (self.vouched.len(), self.vouched_anchors.len());
            for (author, member, level) in &sets {
                if self.vouched_anchors.contains(author) && level.is_active() {
                    self.vouched.insert(*member);
                    if *level == Level::Anchor {
                        self.vouched_anchors.insert(*member);
                    }
                }
            }
            if before == (self.vouched.len(), self.vouched_anchors.len()) {
                break;
            }
        }
        change.newly_vouched = self.vouched.difference(&old_vouched).copied().collect();
        change
    }

    pub fn snapshot_state(&self) -> Result<Vec<u8>, ViewError> {
        super::to_cbor(self)
    }

    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), ViewError> {
        *self = super::from_cbor(bytes)?;
        self.recompute();
        Ok(())
    }

    /// Digest of the derived state, for convergence checks: levels, the
    /// closure, the settings in force and the names shown.
    pub fn digest(&self) -> [u8; 32] {
        let names: BTreeMap<&NodeId, &str> = self
            .profiles
            .keys()
            .filter_map(|k| self.display_name(k).map(|n| (k, n)))
            .collect();
        super::digest_of(&(&self.levels, &self.vouched, self.settings(), names))
    }
}

/// Keys whose value differs between two maps, in one ordered walk.
fn changed_keys(a: &BTreeMap<NodeId, Level>, b: &BTreeMap<NodeId, Level>) -> BTreeSet<NodeId> {
    let mut changed = BTreeSet::new();
    let (mut x, mut y) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (x.peek(), y.peek()) {
            (None, None) => return changed,
            (Some((k, _)), None) => {
                changed.insert(**k);
                x.next();
            }
            (None, Some((k, _))) => {
                changed.insert(**k);
                y.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    changed.insert(**ka);
                    x.next();
                }
                std::cmp::Ordering::Greater => {
                    changed.insert(**kb);
                    y.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        changed.insert(**ka);
                    }
                    x.next();
                    y.next();
                }
            },
        }
    }
}
