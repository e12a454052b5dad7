//! The network model standing in for gossipsub: links, latency, loss,
//! the mesh of D, eager push and lazy IHAVE/IWANT, the duplicate cache,
//! and each node's timers (core ticks and heartbeats).

use std::hash::{BuildHasherDefault, Hasher};

use super::*;

/// Entries in one node's duplicate cache, beside its time limit: a flood
/// cannot grow it without bound.
pub const SEEN_ENTRIES_MAX: usize = 1 << 18;

/// Heartbeats whose messages an IHAVE announces (gossipsub's
/// `history_gossip`).
pub(super) const HISTORY_GOSSIP: u64 = 3;

/// Heartbeats a message stays in the cache for IWANT (`history_length`).
pub(super) const MCACHE_HEARTBEATS: u64 = 5;

#[derive(Debug, Clone)]
pub(super) enum Msg {
    /// An event, shared by every copy in flight.
    Gossip(Rc<Gossip>),
    SyncRequest {
        session: u64,
        bytes: Vec<u8>,
    },
    SyncResponse {
        session: u64,
        bytes: Vec<u8>,
    },
    /// Lazy gossip: "I have these" (ids of recent messages), sent each
    /// heartbeat to a few connected peers outside the mesh.
    IHave(Rc<[EventHash]>),
    /// "Send me these", the answer to an IHAVE naming unseen ids.
    IWant(Vec<EventHash>),
}

/// A gossip message: event bytes and their message id (SHA-256 of the
/// bytes, as gossipsub is configured to compute it; computed once here
/// rather than at every hop, which gives the same id).
#[derive(Debug)]
pub(super) struct Gossip {
    pub(super) id: EventHash,
    pub(super) bytes: Vec<u8>,
}

impl Gossip {
    pub(super) fn new(bytes: Vec<u8>) -> Rc<Gossip> {
        Rc::new(Gossip {
            id: hash_bytes(&bytes),
            bytes,
        })
    }
}

impl Msg {
    pub(super) fn len(&self) -> usize {
        match self {
            Msg::Gossip(g) => g.bytes.len(),
            Msg::IHave(ids) => ids.len() * 32,
            Msg::IWant(ids) => ids.len() * 32,
            Msg::SyncRequest { bytes, .. } | Msg::SyncResponse { bytes, .. } => bytes.len(),
        }
    }
}

/// Gossipsub's duplicate cache: message ids seen within `ttl_ms`.
///
/// Keyed by the first 8 bytes of the id: ids are SHA-256 outputs, so two
/// messages of one run share a prefix with odds near 2^-40, and u64 keys
/// make the lookups that every delivery and IHAVE entry does cheap (this
/// cache was a tenth of a 1,000-node run, and still a tenth as a B-tree of
/// `u64`s: now a hash set, whose keys are already uniform).
#[derive(Debug, Default)]
pub(super) struct SeenCache {
    pub(super) set: SeenSet,
    pub(super) order: VecDeque<(u64, u64)>,
}

/// The cache's set: only asked "is it there", never iterated, so no order
/// of its can reach a run's behaviour (what the ban on hash sets in the
/// simulator guards against).
#[allow(clippy::disallowed_types)]
type SeenSet = std::collections::HashSet<u64, BuildHasherDefault<PrefixHasher>>;

/// Hashes a key to itself: the keys are SHA-256 prefixes, as uniform as
/// any hash of them would be, and the same in every run (no random seed).
#[derive(Debug, Default)]
pub(super) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; other input folds in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

pub(super) fn seen_key(hash: &EventHash) -> u64 {
    let b = &hash.0;
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl SeenCache {
    /// Records `hash`; false if it was already there.
    pub(super) fn insert(&mut self, now: u64, ttl_ms: u64, hash: EventHash) -> bool {
        while let Some(&(t, k)) = self.order.front() {
            if now.saturating_sub(t) < ttl_ms && self.order.len() < SEEN_ENTRIES_MAX {
                break;
            }
            self.order.pop_front();
            self.set.remove(&k);
        }
        let key = seen_key(&hash);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }

    pub(super) fn contains(&self, hash: &EventHash) -> bool {
        self.set.contains(&seen_key(hash))
    }

    pub(super) fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }
}

impl Sim {
    pub(super) fn is_up(&self, i: Ix) -> bool {
        i >= self.slots.len() || self.slots[i].core.is_some()
    }

    /// Whether a message can pass between `a` and `b` now (adversaries sit
    /// outside partitions: they are not what partitions test).
    pub(super) fn reachable(&self, a: Ix, b: Ix) -> bool {
        let n = self.slots.len();
        self.is_up(a) && self.is_up(b) && (a >= n || b >= n || self.group[a] == self.group[b])
    }

    /// The node's current mesh: its first D reachable connected peers.
    pub(super) fn mesh(&self, i: Ix) -> Vec<Ix> {
        self.peers[i]
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| self.reachable(i, p))
            .take(self.cfg.mesh_degree)
            .collect()
    }

    pub(super) fn link_latency(&self, from: Ix, to: Ix) -> u64 {
        let n = self.slots.len();
        if from >= n || to >= n {
            return self.cfg.latency_ms_max;
        }
        self.peers[from]
            .iter()
            .find(|&&(p, _)| p == to)
            .map_or(self.cfg.latency_ms_max, |&(_, l)| l)
    }

    /// Sends one message through the link model: bandwidth queueing,
    /// latency and jitter, and, while faults are on, loss, reordering and
    /// duplication.
    pub(super) fn send(&mut self, from: Ix, to: Ix, msg: Msg) -> Result<(), SimError> {
        let len = msg.len() as u64;
        match &msg {
            Msg::Gossip(_) => {
                self.stats.gossip_sent += 1;
                self.stats.gossip_bytes += len;
            }
            Msg::IHave(_) | Msg::IWant(_) => {
                self.stats.lazy_messages += 1;
                self.stats.lazy_bytes += len;
            }
            _ => {
                self.stats.sync_messages += 1;
                self.stats.sync_bytes += len;
            }
        }
        if !self.reachable(from, to) {
            self.stats.dropped += 1;
            return Ok(());
        }
        if self.faults_on && self.rng_net.chance(self.cfg.loss) {
            self.stats.lost += 1;
            return Ok(());
        }
        let mut depart = self.now;
        if from < self.slots.len() && self.cfg.bandwidth_bytes_per_s > 0 {
            let tx_ms = len * 1000 / self.cfg.bandwidth_bytes_per_s;
            let slot = &mut self.slots[from];
            depart = slot.uplink_free_at.max(self.now) + tx_ms;
            slot.uplink_free_at = depart;
        }
        let mut at =
            depart + self.link_latency(from, to) + self.rng_net.exp(self.cfg.jitter_ms_mean);
        if self.faults_on && self.rng_net.chance(self.cfg.reorder) {
            at += self.rng_net.below(self.cfg.reorder_ms_max);
        }
        if self.faults_on && self.rng_net.chance(self.cfg.duplicate) {
            self.stats.duplicated += 1;
            let again = at + self.rng_net.exp(self.cfg.jitter_ms_mean.max(1) * 4);
            self.schedule(
                again,
                Action::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            )?;
        }
        self.schedule(at, Action::Deliver { from, to, msg })
    }

    pub(super) fn gossip(
        &mut self,
        from: Ix,
        except: Option<Ix>,
        msg: &Rc<Gossip>,
    ) -> Result<(), SimError> {
        if from < self.slots.len() && self.cfg.gossip_lazy > 0 {
            let now = self.now;
            self.slots[from].mcache.push_back((now, msg.clone()));
        }
        for peer in self.mesh(from) {
            if Some(peer) != except {
                self.send(from, peer, Msg::Gossip(msg.clone()))?;
            }
        }
        Ok(())
    }

    pub(super) fn on_deliver(&mut self, from: Ix, to: Ix, msg: Msg) -> Result<(), SimError> {
        let n = self.slots.len();
        if to >= n && self.reachable(from, to) {
            // Only the sync forger answers anything (its syncs).
            if let (Msg::SyncRequest { session, bytes }, AdvKind::SyncForger) =
                (&msg, self.advs[to - n].kind)
            {
                return self.sync_forger_answer(to - n, from, *session, bytes);
            }
        }
        // A partition or crash after sending breaks the connection too.
        if !self.reachable(from, to) || to >= n {
            self.stats.dropped += 1;
            return Ok(());
        }
        let from_id = self.ids[from];
        let node_now = self.node_now(to);
        match msg {
            Msg::Gossip(msg) => {
                self.stats.gossip_delivered += 1;
                let hash = msg.id;
                let ttl = self.cfg.seen_ttl_ms;
                let now = self.now;
                if !self.slots[to].seen.insert(now, ttl, hash) {
                    self.stats.gossip_duplicates += 1;
                    self.trace(1, from as u64, to as u64, &hash.0);
                    return Ok(());
                }
                self.trace(2, from as u64, to as u64, &hash.0);
                let Some(core) = self.slots[to].core.as_mut() else {
                    return Ok(());
                };
                core.handle(
                    node_now,
                    Input::Received {
                        bytes: msg.bytes.clone(),
                        source: Source::Peer(from_id),
                    },
                );
                self.drain(to, Some((from, &msg)))
            }
            Msg::IHave(ids) => {
                self.trace(13, from as u64, to as u64, &[]);
                let want: Vec<EventHash> = ids
                    .iter()
                    .filter(|id| !self.slots[to].seen.contains(id))
                    .copied()
                    .collect();
                if want.is_empty() {
                    return Ok(());
                }
                self.stats.iwant_sent += 1;
                self.send(to, from, Msg::IWant(want))
            }
            Msg::IWant(ids) => {
                self.trace(14, from as u64, to as u64, &[]);
                let found: Vec<Rc<Gossip>> = ids
                    .iter()
                    .filter_map(|id| {
                        self.slots[to]
                            .mcache
                            .iter()
                            .find(|(_, g)| g.id == *id)
                            .map(|(_, g)| g.clone())
                    })
                    .collect();
                for g in found {
                    self.stats.gossip_pulled += 1;
                    self.send(to, from, Msg::Gossip(g))?;
                }
                Ok(())
            }
            Msg::SyncRequest { session, bytes } => {
                self.trace(3, from as u64, to as u64, &session.to_be_bytes());
                self.count_sync_ranges(&bytes);
                let Some(core) = self.slots[to].core.as_mut() else {
                    return Ok(());
                };
                let answer = core.sync_answer(from_id, &bytes);
                self.drain(to, None)?;
                match answer {
                    Ok(reply) => self.send(
                        to,
                        from,
                        Msg::SyncResponse {
                            session,
                            bytes: reply,
                        },
                    ),
                    Err(e) => {
                        self.stats.sync_errors += 1;
                        *self
                            .stats
                            .rejected
                            .entry(format!("sync: {}", reason_class(&e.to_string())))
                            .or_default() += 1;
                        Ok(())
                    }
                }
            }
            Msg::SyncResponse { session, bytes } => {
                self.trace(4, from as u64, to as u64, &session.to_be_bytes());
                self.count_sync_ranges(&bytes);
                let current = self.slots[to].sync_out.get(&from).map(|s| s.session);
                if current != Some(session) {
                    return Ok(()); // an answer to a sync given up on
                }
                self.stats.sync_round_trips += 1;
                let Some(core) = self.slots[to].core.as_mut() else {
                    return Ok(());
                };
                let next = core.sync_continue(from_id, &bytes);
                self.drain(to, None)?;
                match next {
                    Ok(Some(msg)) => {
                        let now = self.now;
                        if let Some(s) = self.slots[to].sync_out.get_mut(&from) {
                            s.last_ms = now;
                        }
                        self.send(
                            to,
                            from,
                            Msg::SyncRequest {
                                session,
                                bytes: msg,
                            },
                        )
                    }
                    Ok(None) => {
                        self.stats.sync_completed += 1;
                        if let Some(out) = self.slots[to].sync_out.remove(&from) {
                            self.audit_sync(to, from, out);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.stats.sync_errors += 1;
                        *self
                            .stats
                            .rejected
                            .entry(format!("sync: {}", reason_class(&e.to_string())))
                            .or_default() += 1;
                        self.give_up_sync(to, from);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Drains a node's outputs after an input: publishes its new events,
    /// relays what it accepted from gossip, records what it stored.
    pub(super) fn drain(
        &mut self,
        i: Ix,
        relay: Option<(Ix, &Rc<Gossip>)>,
    ) -> Result<(), SimError> {
        while let Some(out) = self.slots[i].core.as_mut().and_then(|c| c.poll_output()) {
            match out {
                Output::Broadcast(ev) => {
                    let hash = *ev.hash();
                    self.registry.entry(hash).or_insert(EventInfo::new(
                        self.now,
                        true,
                        ev.event().lamport,
                    ));
                    self.trace(5, i as u64, 0, &hash.0);
                    let (now, ttl) = (self.now, self.cfg.seen_ttl_ms);
                    self.slots[i].seen.insert(now, ttl, hash);
                    self.gossip(i, None, &Gossip::new(ev.bytes().to_vec()))?;
                }
                Output::Verdict {
                    hash,
                    source,
                    verdict,
                    reason,
                } => {
                    self.trace(6, i as u64, verdict as u64, &hash.0);
                    let reason = reason_class(reason.as_deref().unwrap_or("none"));
                    match verdict {
                        Verdict::Accept => {
                            if let (Source::Peer(_), Some((from, msg))) = (source, relay) {
                                self.gossip(i, Some(from), msg)?;
                            }
                        }
                        Verdict::Reject => {
                            *self.stats.rejected.entry(reason).or_default() += 1;
                        }
                        Verdict::Ignore => {
                            if reason.starts_with("duplicate") {
                                self.stats.gossip_duplicates +=
                                    u64::from(matches!(source, Source::Peer(_)));
                            }
                            *self.stats.ignored.entry(reason).or_default() += 1;
                        }
                    }
                }
                Output::Stored { hash, source } => {
                    self.trace(7, i as u64, 0, &hash.0);
                    match source {
                        Some(Source::Peer(_)) => self.stats.stored_via_gossip += 1,
                        Some(Source::Sync(_)) => self.stats.stored_via_sync += 1,
                        _ => self.stats.stored_other += 1,
                    }
                    if source.is_none() {
                        // A local event: `publish` reports it stored before
                        // it hands it out to broadcast.
                        self.check_local_event(i, &hash);
                    }
                    let now = self.now;
                    let info = self.registry.get_mut(&hash).map(|info| {
                        info.last_stored_ms = now;
                        *info
                    });
                    match info {
                        None => self.violation(Violation::InvalidEventStored { node: i, hash }),
                        Some(info) if source.is_some() => {
                            if info.lamport <= CLOCK_CONTAINED_MAX {
                                let seen = &mut self.slots[i].lamport_seen;
                                *seen = (*seen).max(info.lamport);
                            }
                            let latency = self.now.saturating_sub(info.published_ms);
                            if self.slots[i].up_since <= info.published_ms {
                                self.stats.delivery_ms.push(latency);
                            } else {
                                self.stats.catchup_ms.push(latency);
                            }
                        }
                        Some(_) => {}
                    }
                }
                // The live change feed is the driver's business; the
                // simulator checks the views themselves.
                Output::ViewChanged(_) => {}
            }
        }
        self.rearm_tick(i)
    }

    pub(super) fn rearm_tick(&mut self, i: Ix) -> Result<(), SimError> {
        let Some(core) = self.slots[i].core.as_ref() else {
            return Ok(());
        };
        let Some(due_node) = core.poll_timeout() else {
            return Ok(());
        };
        let due = due_node.saturating_add_signed(-self.slots[i].skew_ms);
        if self.slots[i].tick_at != Some(due) {
            self.slots[i].tick_at = Some(due);
            let incarnation = self.slots[i].incarnation;
            self.schedule(
                due,
                Action::Tick {
                    node: i,
                    incarnation,
                },
            )?;
        }
        Ok(())
    }

    pub(super) fn on_tick(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        let slot = &self.slots[i];
        if slot.incarnation != incarnation || slot.tick_at != Some(self.now) {
            return Ok(()); // superseded, or the node restarted since
        }
        let node_now = self.node_now(i);
        let Some(core) = self.slots[i].core.as_mut() else {
            return Ok(());
        };
        core.handle(node_now, Input::Tick);
        self.slots[i].tick_at = None;
        self.drain(i, None)
    }

    pub(super) fn schedule_heartbeat(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        if self.cfg.gossip_lazy == 0 {
            return Ok(());
        }
        let at = self.now + 1 + self.rng_net.below(self.cfg.heartbeat_ms);
        self.schedule(
            at,
            Action::Heartbeat {
                node: i,
                incarnation,
            },
        )
    }

    /// Gossipsub's heartbeat, as far as dissemination goes: forget old
    /// cache entries, then announce the ids of the last `HISTORY_GOSSIP`
    /// heartbeats to `gossip_lazy` random connected peers outside the mesh,
    /// which pull what they have not seen (IWANT). This is how a message
    /// gets past a mesh link that lost it without waiting for sync.
    pub(super) fn on_heartbeat(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        if self.slots[i].incarnation != incarnation || self.slots[i].core.is_none() {
            return Ok(());
        }
        let beat = self.cfg.heartbeat_ms;
        let now = self.now;
        let keep_from = now.saturating_sub(beat * MCACHE_HEARTBEATS);
        let announce_from = now.saturating_sub(beat * HISTORY_GOSSIP);
        let mcache = &mut self.slots[i].mcache;
        while mcache.front().is_some_and(|(t, _)| *t < keep_from) {
            mcache.pop_front();
        }
        let ids: Vec<EventHash> = mcache
            .iter()
            .filter(|(t, _)| *t >= announce_from)
            .map(|(_, g)| g.id)
            .collect();
        if !ids.is_empty() {
            let mesh = self.mesh(i);
            let mut others: Vec<Ix> = self.peers[i]
                .iter()
                .map(|&(p, _)| p)
                .filter(|&p| !mesh.contains(&p) && self.reachable(i, p))
                .collect();
            self.rng_net.shuffle(&mut others);
            others.truncate(self.cfg.gossip_lazy);
            let ids: Rc<[EventHash]> = ids.into();
            for p in others {
                self.stats.ihave_sent += 1;
                self.send(i, p, Msg::IHave(ids.clone()))?;
            }
        }
        self.schedule(
            now + beat,
            Action::Heartbeat {
                node: i,
                incarnation,
            },
        )
    }
}
