//! Anti-entropy sync between simulated nodes, through the cores' own sync
//! sessions: periodic and on-connect starts, timeouts, give-ups.

use super::*;

/// Peers a restarted or healed node syncs with at once ("on connect").
pub(super) const SYNC_ON_CONNECT_PEERS: usize = 2;

#[derive(Debug, Clone, Copy)]
pub(super) struct SyncOut {
    pub(super) session: u64,
    pub(super) last_ms: u64,
    /// Both logs' last arrival numbers when the sync started: when it
    /// completes, each side must hold everything the other held then.
    pub(super) own_arrival: u64,
    pub(super) peer_arrival: u64,
}

impl Sim {
    /// Tallies how a delivered sync message reconciles: split ranges, id
    /// lists, decoded sketches (the summary shows the workload exercises
    /// more than the opening sketch). Undecodable messages are the core's
    /// to refuse, and count nothing here.
    pub(super) fn count_sync_ranges(&mut self, bytes: &[u8]) {
        let Ok(msg) = SyncMessage::decode(bytes) else {
            return;
        };
        let open = msg
            .ranges
            .iter()
            .filter(|r| !matches!(r.mode, Mode::Skip))
            .count() as u64;
        if open > 1 {
            self.stats.sync_split_ranges += open;
        }
        for r in &msg.ranges {
            match r.mode {
                Mode::Ids(_) => self.stats.sync_id_lists += 1,
                Mode::Roots(_) => self.stats.sync_sketch_roots += 1,
                _ => {}
            }
        }
    }

    pub(super) fn on_sync_timer(&mut self, i: Ix, incarnation: u32) -> Result<(), SimError> {
        if self.slots[i].incarnation != incarnation || self.slots[i].core.is_none() {
            return Ok(());
        }
        let reachable: Vec<Ix> = self.peers[i]
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| self.reachable(i, p))
            .collect();
        if !reachable.is_empty() {
            let peer = reachable[self.rng_net.index(reachable.len())];
            self.start_sync(i, peer)?;
        }
        let interval = self.cfg.sync_interval_ms;
        // As the driver: the interval plus up to a quarter more.
        let next = self.now + interval + self.rng_net.below(interval / 4 + 1);
        self.schedule(
            next,
            Action::SyncTimer {
                node: i,
                incarnation,
            },
        )
    }

    pub(super) fn start_sync(&mut self, i: Ix, peer: Ix) -> Result<(), SimError> {
        if self.slots[i].sync_out.contains_key(&peer) {
            return Ok(());
        }
        let peer_id = self.ids[peer];
        let (own_arrival, peer_arrival) = (self.last_arrival(i), self.last_arrival(peer));
        let Some(core) = self.slots[i].core.as_mut() else {
            return Ok(());
        };
        match core.sync_start(peer_id) {
            Ok(Some(bytes)) => {
                let session = self.next_session;
                self.next_session += 1;
                self.stats.sync_sessions += 1;
                let now = self.now;
                self.slots[i].sync_out.insert(
                    peer,
                    SyncOut {
                        session,
                        last_ms: now,
                        own_arrival,
                        peer_arrival,
                    },
                );
                self.send(i, peer, Msg::SyncRequest { session, bytes })?;
                self.schedule(
                    now + self.cfg.sync_timeout_ms,
                    Action::SyncTimeout {
                        node: i,
                        peer,
                        session,
                    },
                )
            }
            Ok(None) => Ok(()),
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

    pub(super) fn on_sync_timeout(
        &mut self,
        i: Ix,
        peer: Ix,
        session: u64,
    ) -> Result<(), SimError> {
        let Some(s) = self.slots[i].sync_out.get(&peer).copied() else {
            return Ok(());
        };
        if s.session != session {
            return Ok(());
        }
        let idle = self.now.saturating_sub(s.last_ms);
        if idle < self.cfg.sync_timeout_ms {
            // Progress since: look again when this round would time out.
            return self.schedule(
                s.last_ms + self.cfg.sync_timeout_ms,
                Action::SyncTimeout {
                    node: i,
                    peer,
                    session,
                },
            );
        }
        self.stats.sync_timeouts += 1;
        self.give_up_sync(i, peer);
        Ok(())
    }

    /// Last arrival number of node `i`'s store (0 if down or an adversary).
    pub(super) fn last_arrival(&self, i: Ix) -> u64 {
        self.slots
            .get(i)
            .and_then(|s| s.core.as_ref())
            .map_or(0, |c| c.log().store().last_arrival())
    }

    /// Node `i` gives up the sync it started with `peer` (a timeout or a
    /// failed answer), as the driver does: only its own session goes; the
    /// peer keeps whatever session it has with `i` (a fresh salt replaces
    /// it when `i` starts again).
    pub(super) fn give_up_sync(&mut self, i: Ix, peer: Ix) {
        let peer_id = self.ids[peer];
        if let Some(core) = self.slots[i].core.as_mut() {
            core.sync_abort_initiated(&peer_id);
        }
        self.slots[i].sync_out.remove(&peer);
    }

    /// Forgets the syncs between `i` and `peer` on both sides, as the driver
    /// does when a connection closes.
    pub(super) fn abort_sync(&mut self, i: Ix, peer: Ix) {
        let n = self.slots.len();
        for (a, b) in [(i, peer), (peer, i)] {
            if a < n {
                let b_id = self.ids[b];
                if let Some(core) = self.slots[a].core.as_mut() {
                    core.sync_abort(&b_id);
                }
                self.slots[a].sync_out.remove(&b);
            }
        }
    }

    pub(super) fn sync_on_connect(&mut self, i: Ix) -> Result<(), SimError> {
        if self.slots[i].core.is_none() {
            return Ok(());
        }
        let reachable: Vec<Ix> = self.peers[i]
            .iter()
            .map(|&(p, _)| p)
            .filter(|&p| self.reachable(i, p))
            .collect();
        for _ in 0..SYNC_ON_CONNECT_PEERS.min(reachable.len()) {
            let peer = reachable[self.rng_net.index(reachable.len())];
            self.start_sync(i, peer)?;
        }
        Ok(())
    }
}
