//! Faults: partitions and heals, crashes (clean or not) and restarts with
//! the durable store kept, invitations of late joiners.

use super::*;

/// A fault the random run schedules (scenarios call the methods directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Partition { groups: usize },
    Heal,
    Crash { node: Ix, clean: bool },
    Restart { node: Ix },
}

impl Sim {
    pub(super) fn apply_fault(&mut self, f: Fault) -> Result<(), SimError> {
        match f {
            Fault::Partition { groups } => {
                let g: Vec<u32> = (0..self.slots.len())
                    .map(|_| self.rng_fault.below(groups as u64) as u32)
                    .collect();
                self.partition(g);
                Ok(())
            }
            Fault::Heal => self.heal(),
            Fault::Crash { node, clean } => self.crash(node, clean),
            Fault::Restart { node } => self.restart(node),
        }
    }

    /// Splits the network: `group[i]` is node i's side. Connections across
    /// sides close, and with them their syncs.
    pub fn partition(&mut self, group: Vec<u32>) {
        self.trace(8, group.len() as u64, 0, &[]);
        self.group = group;
        for i in 0..self.slots.len() {
            let cut: Vec<Ix> = self.peers[i]
                .iter()
                .map(|&(p, _)| p)
                .filter(|&p| self.group[p] != self.group[i])
                .collect();
            for p in cut {
                self.abort_sync(i, p);
            }
        }
    }

    /// Heals every partition; every node syncs at once with a peer it can
    /// now reach (sync on connect).
    pub fn heal(&mut self) -> Result<(), SimError> {
        self.trace(9, 0, 0, &[]);
        self.group = vec![0; self.slots.len()];
        for i in 0..self.slots.len() {
            self.sync_on_connect(i)?;
        }
        Ok(())
    }

    /// Stops a node, keeping its durable store. `clean` writes a snapshot
    /// first (a shutdown); otherwise the restart replays from the last one.
    pub fn crash(&mut self, i: Ix, clean: bool) -> Result<(), SimError> {
        let Some(mut core) = self.slots[i].core.take() else {
            return Ok(());
        };
        self.trace(10, i as u64, u64::from(clean), &[]);
        self.stats.crashes += 1;
        if clean {
            if let Err(e) = core.shutdown() {
                *self
                    .stats
                    .workload_refused
                    .entry(format!("shutdown: {e}"))
                    .or_default() += 1;
            }
        }
        let store = if clean {
            core.into_store()
                .map_err(|source| SimError::Store { node: i, source })?
        } else {
            // A power cut: what was not flushed is gone.
            let unflushed = core.into_store_unflushed();
            let before = unflushed.len();
            let (store, own_lost) = unflushed
                .crash()
                .map_err(|source| SimError::Store { node: i, source })?;
            self.stats.lost_unflushed += before.saturating_sub(store.len());
            for hash in own_lost {
                self.violation(Violation::LocalEventLost { node: i, hash });
            }
            // Received events since the last flush may go (sync brings
            // them back); the log must not lose more than that.
            self.slots[i].log_len_max = store.durable_len();
            store
        };
        let slot = &mut self.slots[i];
        slot.parked = Some(store);
        slot.incarnation += 1;
        slot.tick_at = None;
        slot.seen.clear();
        slot.mcache.clear();
        let peers: Vec<Ix> = self.peers[i].iter().map(|&(p, _)| p).collect();
        for p in peers {
            self.abort_sync(i, p);
        }
        self.slots[i].sync_out.clear();
        Ok(())
    }

    /// Starts a node that is down (restart, or a late joiner's first start)
    /// on its kept store, and syncs with peers at once.
    pub fn restart(&mut self, i: Ix) -> Result<(), SimError> {
        if self.slots[i].core.is_some() {
            return Ok(());
        }
        if std::mem::take(&mut self.slots[i].awaiting_invite) {
            self.invite(i)?;
        }
        self.trace(11, i as u64, 0, &[]);
        self.stats.restarts += 1;
        let bug = if i == 1 { self.cfg.inject_bug } else { None };
        let store = self.slots[i]
            .parked
            .take()
            .unwrap_or_else(|| SimStore::new(self.ids[i], bug, self.table.as_ref()));
        let incarnation = self.slots[i].incarnation;
        let seed = seed_u64(
            self.cfg.seed,
            "rng",
            ((incarnation as u64) << 32) | i as u64,
        );
        let core = open_core(
            i,
            &self.slots[i].identity,
            &self.genesis,
            store,
            seed,
            &self.memo,
            self.cfg.inject_bug,
        )?;
        let slot = &mut self.slots[i];
        slot.core = Some(core);
        slot.up_since = self.now;
        slot.uplink_free_at = self.now;
        let len = self.log_len(i);
        self.check_log_len(i, len);
        // A hard crash may have lost received events: what the restarted
        // clock must be above is what the store kept.
        self.slots[i].lamport_seen = self.lamport_held(i);
        self.slots[i].tick_at = Some(self.now);
        self.schedule(
            self.now,
            Action::Tick {
                node: i,
                incarnation,
            },
        )?;
        let next = self.now + self.rng_net.below(self.cfg.sync_interval_ms);
        self.schedule(
            next,
            Action::SyncTimer {
                node: i,
                incarnation,
            },
        )?;
        self.schedule_heartbeat(i, incarnation)?;
        self.sync_on_connect(i)?;
        self.drain(i, None)
    }

    /// A newcomer's invitation: the first anchor that is up admits it (if
    /// the workload has not already). With no anchor up it starts
    /// unadmitted: its posts are refused, and held pending elsewhere, until
    /// the workload admits it.
    pub(super) fn invite(&mut self, i: Ix) -> Result<(), SimError> {
        if self.levels[i].is_active() {
            return Ok(());
        }
        let Some(anchor) = (0..self.cfg.anchors).find(|&a| self.slots[a].core.is_some()) else {
            self.refused("invite", "no anchor up");
            return Ok(());
        };
        if let Err(e) = self.set_level(anchor, i, Level::Member) {
            self.refused("invite", &refusal_code(&e));
        }
        Ok(())
    }
}
