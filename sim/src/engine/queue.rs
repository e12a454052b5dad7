//! The event queue: every action of a run, ordered by `(time, seq)`.
//!
//! `seq` breaks ties in insertion order, so one seed is one run.

use super::*;

/// Most queued actions at once. A run of 1,000 nodes holds a few hundred
/// thousand (in-flight messages plus one timer per node); far more means a
/// feedback loop in the model, which should stop the run, not eat memory.
pub const QUEUE_ENTRIES_MAX: usize = 20_000_000;

#[derive(Debug)]
pub(super) enum Action {
    Deliver { from: Ix, to: Ix, msg: Msg },
    Tick { node: Ix, incarnation: u32 },
    SyncTimer { node: Ix, incarnation: u32 },
    Heartbeat { node: Ix, incarnation: u32 },
    SyncTimeout { node: Ix, peer: Ix, session: u64 },
    Workload,
    Adversary { adv: usize },
    Fault(Fault),
    Check,
}

#[derive(Debug)]
pub(super) struct Scheduled {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl Sim {
    pub(super) fn schedule(&mut self, at: u64, action: Action) -> Result<(), SimError> {
        if self.queue.len() >= QUEUE_ENTRIES_MAX {
            return Err(SimError::QueueFull);
        }
        self.seq += 1;
        self.queue.push(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            action,
        });
        Ok(())
    }
}
