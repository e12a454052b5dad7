//! The checker: invariants during the safety phase, convergence and the
//! reference model in the liveness phase, and the violations they find.

use super::*;

/// Violations kept with their text (the rest are counted).
pub const VIOLATIONS_MAX: usize = 64;

/// Violations the one-line summary lists (keeps the line short).
pub const SUMMARY_VIOLATIONS_MAX: usize = 8;

/// A node's Lamport clock above this means a Lamport bomb got through:
/// honest clocks grow by one per event, and 2^40 is far beyond any run.
pub const CLOCK_CONTAINED_MAX: u64 = 1 << 40;

/// Nodes whose views are compared with the reference model at each
/// safety-phase check. The model rebuilds from a node's whole log, so this
/// bounds a check's cost; the rotation reaches every node over a run, and
/// at the end of the liveness phase every node is compared.
pub const REFERENCE_SAMPLE_PER_CHECK: usize = 4;

/// Up to this many nodes every completed sync is audited for
/// completeness; above it one in [`SYNC_AUDIT_EVERY`] (an audit reads both
/// logs, which at 1,000 nodes and 10,000 events would dominate the run).
pub const SYNC_AUDIT_NODES_MAX: usize = 200;

pub const SYNC_AUDIT_EVERY: u64 = 16;

/// Mismatching posts a reference violation names (keeps the text short).
pub(super) const MISMATCH_DETAIL_MAX: usize = 3;

/// A broken invariant: the checker's findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An event that no honest node or valid adversary produced entered a log.
    InvalidEventStored { node: Ix, hash: EventHash },
    /// A node's log holds fewer events than it once did (durably, across
    /// a hard crash).
    LogShrank { node: Ix, had: u64, has: u64 },
    /// A hard crash lost an event the node had published itself: the log
    /// promises local events are flushed once appended.
    LocalEventLost { node: Ix, hash: EventHash },
    /// A listed post whose author is not an active member.
    InactiveAuthorShown { node: Ix, author: NodeId },
    /// A Lamport bomb moved an honest clock.
    ClockBombed { node: Ix, clock: u64 },
    /// Liveness: no convergence within the bound.
    NotConverged { detail: String },
    /// Incremental views differ from a full replay.
    ReplayMismatch { node: Ix },
    /// Views restored from a snapshot differ from the incremental ones.
    RestoreMismatch { node: Ix },
    /// An honest event is missing from the converged log.
    HonestEventMissing { hash: EventHash },
    /// A node's views differ from the reference model over its own log.
    ReferenceMismatch { node: Ix, detail: String },
    /// A node's log holds an event whose author the vouching closure over
    /// that same log does not vouch for.
    UnvouchedEventStored { node: Ix, author: NodeId },
    /// An honest node published a second expiry of one post (its views
    /// already showed the post expired: a sweeper or service bug).
    RedundantExpiry { node: Ix, target: EventId },
    /// An honest node published an event whose Lamport time is not above
    /// every (non-bomb) event it already held: its clock did not follow
    /// what it received, so its updates can sort below what they replace.
    LamportNotAdvanced { node: Ix, lamport: u64, seen: u64 },
    /// A sealed message its recipient cannot read (or whose text is not
    /// what was sent, or that its inbox does not show).
    SealedUnreadable {
        node: Ix,
        hash: EventHash,
        why: String,
    },
    /// A sealed message opened with the key of a node it was not sent to.
    SealedReadable { node: Ix, hash: EventHash },
    /// A sync reported complete while one side still lacked `missing`
    /// events the other held when it started.
    SyncIncomplete {
        initiator: Ix,
        responder: Ix,
        lacking: Ix,
        missing: u64,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::InvalidEventStored { node, hash } => {
                write!(f, "node {node} stored invalid event {hash}")
            }
            Violation::LogShrank { node, had, has } => {
                write!(f, "node {node}'s log shrank from {had} to {has} events")
            }
            Violation::InactiveAuthorShown { node, author } => {
                write!(f, "node {node} lists a post by inactive author {author}")
            }
            Violation::LocalEventLost { node, hash } => {
                write!(f, "node {node} lost its own event {hash} in a crash")
            }
            Violation::ClockBombed { node, clock } => {
                write!(f, "node {node}'s clock reached {clock}")
            }
            Violation::NotConverged { detail } => write!(f, "not converged: {detail}"),
            Violation::ReplayMismatch { node } => {
                write!(f, "node {node}: incremental views != full replay")
            }
            Violation::RestoreMismatch { node } => {
                write!(f, "node {node}: snapshot restore != incremental views")
            }
            Violation::HonestEventMissing { hash } => {
                write!(f, "honest event {hash} missing from the converged log")
            }
            Violation::ReferenceMismatch { node, detail } => {
                write!(
                    f,
                    "node {node}'s views differ from the reference model: {detail}"
                )
            }
            Violation::UnvouchedEventStored { node, author } => {
                write!(
                    f,
                    "node {node} stored an event of unvouched author {author}"
                )
            }
            Violation::RedundantExpiry { node, target } => {
                write!(f, "node {node} expired post {target} a second time")
            }
            Violation::LamportNotAdvanced {
                node,
                lamport,
                seen,
            } => write!(
                f,
                "node {node} published at Lamport {lamport} after holding an event at {seen}"
            ),
            Violation::SealedUnreadable { node, hash, why } => {
                write!(f, "node {node} cannot read sealed message {hash} sent to it: {why}")
            }
            Violation::SealedReadable { node, hash } => {
                write!(f, "node {node} opened sealed message {hash} not sent to it")
            }
            Violation::SyncIncomplete {
                initiator,
                responder,
                lacking,
                missing,
            } => write!(
                f,
                "sync {initiator} -> {responder} completed with node {lacking} lacking {missing} events"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct EventInfo {
    pub(super) published_ms: u64,
    pub(super) honest: bool,
    pub(super) lamport: u64,
    /// The last time a node stored it: once every node holds it, the
    /// event's full delivery time.
    pub(super) last_stored_ms: u64,
}

impl EventInfo {
    pub(super) fn new(published_ms: u64, honest: bool, lamport: u64) -> EventInfo {
        EventInfo {
            published_ms,
            honest,
            lamport,
            last_stored_ms: published_ms,
        }
    }
}

impl Sim {
    pub(super) fn violation(&mut self, v: Violation) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(v);
        }
    }

    /// Registers node `i`'s own new event and checks what an honest
    /// publisher promises: its Lamport time is above every event it held
    /// (the clock follows what it receives), and it never expires a post
    /// it already expired (the sweeper and the service skip ended posts).
    pub(super) fn check_local_event(&mut self, i: Ix, hash: &EventHash) {
        let ev = match self.slots[i]
            .core
            .as_ref()
            .map(|c| c.log().store().get(hash))
        {
            Some(Ok(Some(ev))) => ev,
            _ => return, // not readable back: the log checks cover it
        };
        let e = ev.event();
        self.registry
            .entry(*hash)
            .or_insert(EventInfo::new(self.now, true, e.lamport));
        let seen = self.slots[i].lamport_seen;
        if e.lamport <= seen {
            self.violation(Violation::LamportNotAdvanced {
                node: i,
                lamport: e.lamport,
                seen,
            });
        }
        self.slots[i].lamport_seen = seen.max(e.lamport);
        self.lamport_honest_max = self.lamport_honest_max.max(e.lamport);
        if let Payload::PostExpired(x) = &e.payload {
            if !self.expiries_published.insert((i, x.target)) {
                self.violation(Violation::RedundantExpiry {
                    node: i,
                    target: x.target,
                });
            }
        }
    }

    /// Highest non-bomb Lamport time in node `i`'s log (0 if down).
    pub(super) fn lamport_held(&self, i: Ix) -> u64 {
        let Some(core) = self.slots[i].core.as_ref() else {
            return 0;
        };
        let below_bombs = EventKey {
            lamport: CLOCK_CONTAINED_MAX + 1,
            hash: EventHash([0; 32]),
        };
        core.log()
            .store()
            .keys(Bound::Unbounded, Bound::Excluded(below_bombs))
            .filter_map(Result::ok)
            .map(|k| k.lamport)
            .max()
            .unwrap_or(0)
    }

    /// A completed sync between honest nodes made both sides whole as of
    /// its start: each holds every event the other held when it began
    /// (events are stored only once valid and vouched, and the vouching
    /// `member.set` travels in the same sync). Sync on its own, without
    /// gossip, must be complete: a reconciliation that drops part of a
    /// split range converges later by luck, not by design, and this is
    /// where it shows. Sampled above [`SYNC_AUDIT_NODES_MAX`] nodes: the
    /// audit reads both logs.
    pub(super) fn audit_sync(&mut self, initiator: Ix, responder: Ix, out: SyncOut) {
        let n = self.slots.len();
        if responder >= n
            || (n > SYNC_AUDIT_NODES_MAX && !out.session.is_multiple_of(SYNC_AUDIT_EVERY))
        {
            return;
        }
        for (holder, upto, other) in [
            (responder, out.peer_arrival, initiator),
            (initiator, out.own_arrival, responder),
        ] {
            let (Some(h), Some(o)) = (
                self.slots[holder].core.as_ref(),
                self.slots[other].core.as_ref(),
            ) else {
                return;
            };
            let missing = h
                .log()
                .store()
                .since_arrival(0)
                .filter_map(Result::ok)
                .take_while(|(seq, _)| *seq <= upto)
                .filter(|(_, e)| !o.log().store().contains(e.hash()).unwrap_or(true))
                .count() as u64;
            if missing > 0 {
                self.violation(Violation::SyncIncomplete {
                    initiator,
                    responder,
                    lacking: other,
                    missing,
                });
            }
        }
    }

    pub(super) fn log_len(&self, i: Ix) -> u64 {
        self.slots[i]
            .core
            .as_ref()
            .map_or(0, |c| c.log().store().len())
    }

    pub(super) fn check_log_len(&mut self, i: Ix, len: u64) {
        let had = self.slots[i].log_len_max;
        if len < had {
            self.violation(Violation::LogShrank {
                node: i,
                had,
                has: len,
            });
        }
        self.slots[i].log_len_max = had.max(len);
    }

    /// The safety invariants, on every running node (posts on a rotating
    /// sample): logs never shrink, clocks stay contained, and a listed post's
    /// author is an active member who was once admitted.
    pub fn check_invariants(&mut self) {
        self.checks += 1;
        let n = self.slots.len();
        for i in 0..n {
            if self.slots[i].core.is_none() {
                continue;
            }
            let len = self.log_len(i);
            self.check_log_len(i, len);
            let clock = self.slots[i].core.as_ref().map_or(0, |c| c.log().clock());
            if clock > CLOCK_CONTAINED_MAX {
                self.violation(Violation::ClockBombed { node: i, clock });
            }
        }
        let sample = self.cfg.check_sample.min(n);
        let start = (self.checks as usize * sample) % n;
        for k in 0..sample {
            let i = (start + k) % n;
            let now = self.node_now(i);
            let Some(core) = self.slots[i].core.as_ref() else {
                continue;
            };
            let membership = &core.views().membership;
            let bad: Vec<NodeId> = core
                .views()
                .market
                .all_active(now)
                .filter(|p| {
                    !membership.is_active(&p.author) || self.never_admitted.contains(&p.author)
                })
                .map(|p| p.author)
                .collect();
            for author in bad {
                self.violation(Violation::InactiveAuthorShown { node: i, author });
            }
        }
        if self.phase == Phase::Safety {
            self.check_reference_sample();
        }
    }

    /// The reference model over node `i`'s current log (None if down or
    /// the store cannot be read, which the log checks report).
    pub(super) fn reference_of(&self, i: Ix) -> Option<Reference> {
        let core = self.slots[i].core.as_ref()?;
        let events: Result<Vec<VerifiedEvent>, StoreError> = core
            .log()
            .store()
            .range(Bound::Unbounded, Bound::Unbounded)
            .collect();
        events.ok().map(Reference::new)
    }

    /// Compares node `i`'s views with `model`, built over the same log:
    /// levels, every post (expired and hidden ones too) and the list as
    /// `list` shows it at the node's own `now`; and every logged event's
    /// author must be vouched by the closure over that log.
    pub(super) fn check_reference(&mut self, i: Ix, model: &Reference) {
        let now = self.node_now(i);
        let Some(core) = self.slots[i].core.as_ref() else {
            return;
        };
        let mut problems: Vec<String> = Vec::new();
        let levels: BTreeMap<NodeId, Level> = core
            .views()
            .membership
            .levels()
            .iter()
            .filter(|(_, l)| **l != Level::Removed)
            .map(|(k, l)| (*k, *l))
            .collect();
        if levels != model.levels() {
            problems.push(format!(
                "levels: view has {} active keys, model {}",
                levels.len(),
                model.levels().len()
            ));
        }
        let market = &core.views().market;
        if market.post_count() != model.posts().len() {
            problems.push(format!(
                "{} posts in the view, {} in the model",
                market.post_count(),
                model.posts().len()
            ));
        }
        let membership = &core.views().membership;
        if membership.settings() != model.settings()
            || membership.community_name() != model.settings().name
        {
            problems.push(format!(
                "settings: view has {:?} (name {:?}), model {:?}",
                membership.settings(),
                membership.community_name(),
                model.settings()
            ));
        }
        let names = model.names();
        let mut keys: BTreeSet<NodeId> = model.profile_authors().copied().collect();
        keys.extend(membership.levels().keys().copied());
        for k in keys {
            let got = membership.display_name(&k);
            let want = names.get(&k).map(String::as_str);
            if got != want && problems.len() < MISMATCH_DETAIL_MAX {
                problems.push(format!("display name of {k}: view {got:?}, model {want:?}"));
            }
        }
        for (name, want) in model.posts() {
            let post = market.get(name);
            let got = post.map(PostRow::of_core);
            // The status `get` reports, as the service derives it from the
            // view's post, against the model's own.
            let status = post.map(|p| PostView::of(p, now, membership).status);
            let status_ok = status.as_deref() == Some(want.status(now));
            if (got.as_ref() != Some(want) || !status_ok) && problems.len() < MISMATCH_DETAIL_MAX {
                problems.push(format!(
                    "post {}/{}: view {:?} {status:?}, model {:?} {:?}",
                    name.author,
                    name.id,
                    got.map(|p| (
                        p.content_event,
                        p.expires_at,
                        p.expired,
                        p.author_active,
                        p.over_limit
                    )),
                    (
                        want.content_event,
                        want.expires_at,
                        &want.expired,
                        want.author_active,
                        want.over_limit
                    ),
                    want.status(now),
                ));
            }
        }
        // Conversations: each thread (replies, claims, withdrawn and
        // accepted marks, the accepted claim: who fulfilled the post).
        let conversations = &core.views().conversations;
        for (post, want) in model.threads() {
            let got = ThreadRow::of_core(&conversations.thread(post, membership));
            if got != *want && problems.len() < MISMATCH_DETAIL_MAX {
                problems.push(format!(
                    "thread of {}/{}: view {got:?}, model {want:?}",
                    post.author, post.id
                ));
            }
        }
        let listed: Vec<_> = market.all_active(now).map(|p| p.key()).collect();
        if listed != model.listed(now) {
            problems.push(format!(
                "list at {now}: view shows {}, model {}",
                listed.len(),
                model.listed(now).len()
            ));
        }
        let unvouched: BTreeSet<NodeId> = core
            .log()
            .store()
            .range(Bound::Unbounded, Bound::Unbounded)
            .filter_map(Result::ok)
            .map(|e| e.event().author)
            .filter(|a| !model.is_vouched(a))
            .collect();
        for author in unvouched {
            self.violation(Violation::UnvouchedEventStored { node: i, author });
        }
        if !problems.is_empty() {
            self.violation(Violation::ReferenceMismatch {
                node: i,
                detail: problems.join("; "),
            });
        }
    }

    /// The safety phase's sample: a few nodes per check, rotating.
    pub(super) fn check_reference_sample(&mut self) {
        let n = self.slots.len();
        for _ in 0..REFERENCE_SAMPLE_PER_CHECK.min(n) {
            let i = (self.reference_checks as usize) % n;
            self.reference_checks += 1;
            if let Some(model) = self.reference_of(i) {
                self.check_reference(i, &model);
            }
        }
    }

    /// Digest of a node's event set: its keys in order.
    pub(super) fn log_digest(&self, i: Ix) -> Option<[u8; 32]> {
        let core = self.slots[i].core.as_ref()?;
        let mut h = Sha256::new();
        for k in core.log().store().keys(Bound::Unbounded, Bound::Unbounded) {
            match k {
                Ok(k) => h.update(k.to_bytes()),
                Err(_) => return None,
            }
        }
        Some(h.finalize().into())
    }

    /// Whether every node is up and holds the same log and views. Cheap
    /// tests first: sizes, then the key sets, then the view digests.
    pub(super) fn convergence_gap(&self) -> Option<String> {
        let n = self.slots.len();
        if let Some(down) = (0..n).find(|&i| self.slots[i].core.is_none()) {
            return Some(format!("node {down} is down"));
        }
        let len0 = self.log_len(0);
        if let Some(i) = (1..n).find(|&i| self.log_len(i) != len0) {
            return Some(format!(
                "node {i} holds {} events, node 0 holds {len0}",
                self.log_len(i)
            ));
        }
        let d0 = self.log_digest(0);
        if let Some(i) = (1..n).find(|&i| self.log_digest(i) != d0) {
            return Some(format!("node {i}'s event set differs from node 0's"));
        }
        let v0 = self.slots[0].core.as_ref().map(|c| c.views().digest());
        if let Some(i) =
            (1..n).find(|&i| self.slots[i].core.as_ref().map(|c| c.views().digest()) != v0)
        {
            return Some(format!("node {i}'s views differ from node 0's"));
        }
        None
    }

    /// The liveness phase: faults off (partitions healed, every node up,
    /// no loss, adversaries and workload stopped), then run until every node
    /// holds the same log and views, within `liveness_ms_max`. Then the
    /// final checks: every honest event everywhere, the membership truth in
    /// every view, and incremental == full replay == snapshot restore.
    pub fn liveness(&mut self) -> Result<bool, SimError> {
        self.phase = Phase::Liveness;
        self.faults_on = false;
        let start = self.now;
        self.heal()?;
        for i in 0..self.slots.len() {
            self.restart(i)?;
        }
        let deadline = start + self.cfg.liveness_ms_max;
        let step = self.cfg.check_interval_ms.min(1_000);
        let mut gap = self.convergence_gap();
        while gap.is_some() && self.now < deadline {
            self.run_for(step)?;
            gap = self.convergence_gap();
        }
        if let Some(detail) = gap {
            self.violation(Violation::NotConverged {
                detail: format!("{detail} after {} virtual ms", self.now - start),
            });
            // Which nodes are wrong, not only different: each against the
            // model over its own log.
            for i in 0..self.slots.len() {
                if let Some(model) = self.reference_of(i) {
                    self.check_reference(i, &model);
                }
            }
            self.converged = false;
            return Ok(false);
        }
        self.converge_ms = Some(self.now - start);
        self.converged = true;
        self.final_checks()?;
        Ok(self.violation_count == 0)
    }

    pub(super) fn final_checks(&mut self) -> Result<(), SimError> {
        self.check_invariants();
        // Every node against the reference model. The logs are equal now
        // (convergence compared their keys), so one model serves all.
        if let Some(model) = self.reference_of(0) {
            for i in 0..self.slots.len() {
                self.check_reference(i, &model);
            }
        }
        // Every honest event in the (common) log.
        let missing: Vec<EventHash> = match self.slots[0].core.as_ref() {
            Some(core) => self
                .registry
                .iter()
                .filter(|(_, info)| info.honest)
                .filter(|(h, _)| !core.log().store().contains(h).unwrap_or(false))
                .map(|(h, _)| *h)
                .collect(),
            None => Vec::new(),
        };
        for hash in missing {
            self.violation(Violation::HonestEventMissing { hash });
        }
        // The membership truth: nobody the workload removed is listed.
        for i in 0..self.slots.len() {
            let now = self.node_now(i);
            let Some(core) = self.slots[i].core.as_ref() else {
                continue;
            };
            let bad: Vec<NodeId> = core
                .views()
                .market
                .all_active(now)
                .filter(|p| {
                    self.ids[..self.levels.len()]
                        .iter()
                        .position(|id| *id == p.author)
                        .is_some_and(|a| self.levels[a] == Level::Removed)
                })
                .map(|p| p.author)
                .collect();
            for author in bad {
                self.violation(Violation::InactiveAuthorShown { node: i, author });
            }
        }
        if self.cfg.conversations {
            self.check_sealed();
        }
        // Incremental == snapshot restore == full replay, on a sample.
        let n = self.slots.len();
        let sample = self.cfg.restore_sample.min(n);
        for k in 0..sample {
            let i = (k * n) / sample.max(1);
            self.check_restore(i)?;
        }
        Ok(())
    }

    /// Shuts node `i` down (snapshot), reopens it from its store, compares
    /// the restored views with the incremental ones, then replays the whole
    /// log and compares again.
    pub fn check_restore(&mut self, i: Ix) -> Result<(), SimError> {
        let Some(mut core) = self.slots[i].core.take() else {
            return Ok(());
        };
        let before = core.views().digest();
        core.shutdown().map_err(|e| SimError::Refused {
            node: i,
            message: e.to_string(),
        })?;
        let store = core
            .into_store()
            .map_err(|source| SimError::Store { node: i, source })?;
        let mut reopened = open_core(
            i,
            &self.slots[i].identity,
            &self.genesis,
            store,
            u64::from(self.slots[i].incarnation) + 1,
            &self.memo,
            self.cfg.inject_bug,
        )?;
        if reopened.views().digest() != before {
            self.violation(Violation::RestoreMismatch { node: i });
        }
        reopened
            .log_mut()
            .replay_all()
            .map_err(|source| SimError::Store { node: i, source })?;
        if reopened.views().digest() != before {
            self.violation(Violation::ReplayMismatch { node: i });
        }
        self.slots[i].core = Some(reopened);
        Ok(())
    }
}
