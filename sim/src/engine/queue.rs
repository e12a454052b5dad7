//! The event queue: every action of a run, ordered by time, ties in the
//! order they were scheduled, so one seed is one run.

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

/// Spare buckets kept for reuse: a run has a few thousand due times in
/// flight at once, and reusing their room saves an allocation per time.
const SPARE_BUCKETS_MAX: usize = 1024;
/// A spare bucket keeps at most this room: the burst of one busy moment
/// (a partition healing) would otherwise stay allocated in every spare.
const SPARE_BUCKET_ROOM_MAX: usize = 64;

/// Actions by due time; within one time, in the order they were scheduled.
/// That is the `(time, seq)` order of a heap with an insertion counter,
/// without the heap: a 1,000-node run holds millions of in-flight
/// messages, and a binary heap's pop (twenty levels of 80-byte moves
/// across a large array) was a tenth of its CPU, where the first bucket of
/// an ordered map stays in cache.
#[derive(Debug, Default)]
pub(super) struct EventQueue {
    buckets: BTreeMap<u64, VecDeque<Action>>,
    len: usize,
    spare: Vec<VecDeque<Action>>,
}

impl EventQueue {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, at: u64, action: Action) {
        let spare = &mut self.spare;
        self.buckets
            .entry(at)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push_back(action);
        self.len += 1;
    }

    /// The earliest due time, if any action is queued.
    pub(super) fn next_due(&self) -> Option<u64> {
        self.buckets.first_key_value().map(|(at, _)| *at)
    }

    /// The earliest action, first scheduled first, with its due time.
    pub(super) fn pop(&mut self) -> Option<(u64, Action)> {
        let mut first = self.buckets.first_entry()?;
        let at = *first.key();
        let action = first.get_mut().pop_front();
        if first.get().is_empty() {
            let bucket = first.remove();
            if self.spare.len() < SPARE_BUCKETS_MAX && bucket.capacity() <= SPARE_BUCKET_ROOM_MAX {
                self.spare.push(bucket);
            }
        }
        if action.is_some() {
            self.len -= 1;
        }
        action.map(|a| (at, a))
    }
}

impl Sim {
    pub(super) fn schedule(&mut self, at: u64, action: Action) -> Result<(), SimError> {
        if self.queue.len() >= QUEUE_ENTRIES_MAX {
            return Err(SimError::QueueFull);
        }
        self.queue.push(at.max(self.now), action);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_of(a: Option<(u64, Action)>) -> Option<(u64, Ix)> {
        a.map(|(at, action)| match action {
            Action::Tick { node, .. } => (at, node),
            other => panic!("not a tick: {other:?}"),
        })
    }

    fn tick(node: Ix) -> Action {
        Action::Tick {
            node,
            incarnation: 0,
        }
    }

    /// Actions come out by due time, and those due at one time in the
    /// order they were scheduled, also when one is scheduled for a time
    /// whose bucket was just emptied: the order a heap keyed by
    /// `(time, insertion)` gives, so a seed's trace does not change.
    #[test]
    fn actions_come_out_by_time_then_in_the_order_scheduled() {
        let mut q = EventQueue::default();
        for (at, node) in [(20, 1), (10, 2), (20, 3), (10, 4), (30, 5)] {
            q.push(at, tick(node));
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.next_due(), Some(10));
        assert_eq!(node_of(q.pop()), Some((10, 2)));
        assert_eq!(node_of(q.pop()), Some((10, 4)));
        // Time 10's bucket is gone; one scheduled for it again comes next.
        q.push(10, tick(6));
        assert_eq!(node_of(q.pop()), Some((10, 6)));
        assert_eq!(node_of(q.pop()), Some((20, 1)));
        q.push(20, tick(7));
        assert_eq!(node_of(q.pop()), Some((20, 3)));
        assert_eq!(node_of(q.pop()), Some((20, 7)));
        assert_eq!(q.len(), 1);
        assert_eq!(node_of(q.pop()), Some((30, 5)));
        assert_eq!((q.len(), q.next_due()), (0, None));
        assert!(q.pop().is_none());
    }
}
