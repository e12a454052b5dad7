//! Verifying a batch of received events on a second core while the core
//! stores them (issue 15 item 1).
//!
//! A sync message brings up to a batch of events at once. The core takes
//! them one by one: decode, `verify_strict`, store, apply. Verification is
//! about as costly as everything after it, so on one core the log ingests
//! at half the verify rate. [`VerifyAhead`] is the core's
//! [`VerifiedMemo`]: when the core announces a batch
//! ([`VerifiedMemo::ahead`]), a worker thread decodes and verifies the
//! batch in order, and the core takes each event's result from it. While
//! the core stores event `i`, the worker verifies the ones after it: ingest
//! runs near the slower of the two stages instead of their sum. Both sides
//! take the next event nobody has started, so when the core catches up it
//! verifies that event itself rather than sleep; it waits only for the
//! event the worker is on.
//!
//! It changes no outcome, only where the work runs: decoding and verifying
//! are pure functions of the bytes, the worker keeps no event it could not
//! verify (the core then decodes those itself and reports its own error),
//! and anything the core does not ask for is dropped when the batch ends.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use hearth_proto::{EventHash, VerifiedEvent};
use tracing::warn;

use crate::core::VerifiedMemo;

/// Batches queued for the worker before [`VerifiedMemo::ahead`] gives up
/// on handing one over (the core then verifies that batch itself). One is
/// normal: the core announces a batch and consumes it before the next.
const BATCHES_QUEUED_MAX: usize = 2;

/// How long the core waits for the worker to finish the one event it is
/// verifying before it verifies that event itself: a worker that died or
/// stalls costs speed, never correctness. Verifying one event takes ~70 µs.
const WAIT_MAX: Duration = Duration::from_millis(500);

/// One event of the batch.
#[derive(Debug)]
enum Slot {
    /// Nobody has started on it.
    Waiting,
    /// The worker is verifying it.
    Started,
    /// The worker's result: `None` if the bytes did not verify.
    Done(Option<VerifiedEvent>),
    /// Handed to the core, or taken by the core to verify itself.
    Taken,
}

/// The batch the core announced last, and where each side is in it.
#[derive(Debug, Default)]
struct Batch {
    /// Bumped by each `ahead` and `done`: the worker drops a batch it
    /// finds replaced.
    generation: u64,
    bytes: Arc<[Vec<u8>]>,
    slots: Vec<Slot>,
    /// The next slot nobody has started: both sides move it forward.
    next: usize,
    /// The slot of the core's next `get`: the core takes the batch in order.
    core_at: usize,
    /// The core sleeps on the worker's event: wake it when that is done.
    core_waiting: bool,
}

#[derive(Debug, Default)]
struct Shared {
    batch: Mutex<Batch>,
    /// Signalled when the worker finishes the event the core waits for.
    finished: Condvar,
}

impl Shared {
    fn lock(&self) -> Option<MutexGuard<'_, Batch>> {
        self.batch.lock().ok()
    }
}

/// The memo a running node gives its core. See the module docs.
#[derive(Debug)]
pub struct VerifyAhead {
    shared: Arc<Shared>,
    jobs: Mutex<SyncSender<u64>>,
}

impl VerifyAhead {
    /// Starts the worker thread; it ends when the memo is dropped.
    pub fn spawn() -> std::io::Result<Arc<VerifyAhead>> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = sync_channel(BATCHES_QUEUED_MAX);
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("hearth-verify".into())
            .spawn(move || work(&worker, rx))?;
        Ok(Arc::new(VerifyAhead {
            shared,
            jobs: Mutex::new(tx),
        }))
    }
}

/// The worker: takes the next event nobody has started, verifies it,
/// leaves the result in its slot; until the batch is done or replaced.
fn work(shared: &Shared, jobs: Receiver<u64>) {
    for generation in jobs {
        loop {
            let (i, bytes) = {
                let Some(mut b) = shared.lock() else { return };
                if b.generation != generation || b.next >= b.slots.len() {
                    break;
                }
                let i = b.next;
                b.next += 1;
                b.slots[i] = Slot::Started;
                (i, b.bytes.clone())
            };
            let verified = VerifiedEvent::decode(&bytes[i]).ok();
            let Some(mut b) = shared.lock() else { return };
            if b.generation != generation {
                break;
            }
            b.slots[i] = Slot::Done(verified);
            if b.core_waiting && b.core_at == i {
                b.core_waiting = false;
                shared.finished.notify_all();
            } else if b.next >= b.slots.len() {
                // The whole batch is started: a test may be waiting for it.
                shared.finished.notify_all();
            }
        }
    }
}

impl VerifiedMemo for VerifyAhead {
    /// The worker's result for the core's next event of the batch. If the
    /// worker has not started on it, the core takes it to verify itself
    /// (`None`) rather than wait; if the worker is on it, the core waits
    /// for that one event. `None` as well when the bytes did not verify,
    /// when no batch is announced (a gossip message), or when the core
    /// asks for something other than the batch's next event.
    fn get(&self, hash: &EventHash) -> Option<VerifiedEvent> {
        let mut b = self.shared.lock()?;
        loop {
            let i = b.core_at;
            let next = b.next;
            let slot = b.slots.get_mut(i)?;
            match slot {
                Slot::Done(_) => {
                    let Slot::Done(result) = std::mem::replace(slot, Slot::Taken) else {
                        return None;
                    };
                    b.core_at += 1;
                    return result.filter(|e| e.hash() == hash);
                }
                Slot::Waiting => {
                    *slot = Slot::Taken;
                    b.core_at += 1;
                    if next == i {
                        b.next += 1;
                    }
                    return None;
                }
                Slot::Started => {
                    b.core_waiting = true;
                    let (next, timeout) = self.shared.finished.wait_timeout(b, WAIT_MAX).ok()?;
                    b = next;
                    if timeout.timed_out() && matches!(b.slots.get(i), Some(Slot::Started)) {
                        warn!("verifier stalled; verifying on the node's own thread");
                        b.core_at += 1;
                        return None;
                    }
                }
                Slot::Taken => {
                    b.core_at += 1;
                }
            }
        }
    }

    /// Nothing to keep: each result is taken once, by the core that asked.
    fn put(&self, _event: &VerifiedEvent) {}

    fn ahead(&self, batch: &[Vec<u8>]) {
        let generation = {
            let Some(mut b) = self.shared.lock() else {
                return;
            };
            b.generation += 1;
            b.bytes = batch.to_vec().into();
            b.slots = batch.iter().map(|_| Slot::Waiting).collect();
            b.next = 0;
            b.core_at = 0;
            b.core_waiting = false;
            b.generation
        };
        if let Ok(jobs) = self.jobs.lock() {
            // A worker that is gone or still busy leaves the work to the core.
            let _ = jobs.try_send(generation);
        }
    }

    fn done(&self) {
        if let Some(mut b) = self.shared.lock() {
            b.generation += 1;
            *b = Batch {
                generation: b.generation,
                ..Batch::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::{hash_bytes, CommunityId, Event, EventId, Identity, MemberProfile, Payload};

    fn signed(n: usize) -> Vec<Vec<u8>> {
        let who = Identity::from_seed([7; 32]);
        (0..n)
            .map(|i| {
                let event = Event {
                    id: EventId::from_parts(1_800_000_000_000, i as u128),
                    ts: 1_800_000_000_000,
                    author: who.node_id(),
                    lamport: i as u64 + 1,
                    community: CommunityId([3; 32]),
                    payload: Payload::Profile(MemberProfile {
                        name: format!("neighbour {i}"),
                    }),
                };
                event.sign(&who).map(|e| e.bytes().to_vec())
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default()
    }

    impl VerifyAhead {
        /// Waits until the worker has finished every event of the batch.
        fn settle(&self) {
            let Some(mut b) = self.shared.lock() else {
                return;
            };
            while b.next < b.slots.len() || b.slots.iter().any(|s| matches!(s, Slot::Started)) {
                match self.shared.finished.wait_timeout(b, WAIT_MAX) {
                    Ok((next, _)) => b = next,
                    Err(_) => return,
                }
            }
        }
    }

    /// Given the time, the worker verifies a whole announced batch, and
    /// the core gets each event, in order, exactly as it would have
    /// decoded it itself.
    #[test]
    fn an_announced_batch_is_verified_by_the_worker() -> Result<(), Box<dyn std::error::Error>> {
        let memo = VerifyAhead::spawn()?;
        let batch = signed(50);
        assert_eq!(batch.len(), 50);
        memo.ahead(&batch);
        memo.settle();
        for bytes in &batch {
            let own = VerifiedEvent::decode(bytes)?;
            let got = memo.get(&hash_bytes(bytes));
            assert_eq!(got.map(|e| e.bytes().to_vec()), Some(own.bytes().to_vec()));
        }
        memo.done();
        Ok(())
    }

    /// When the core is ahead of the worker it takes events to verify
    /// itself (`None`) instead of waiting, and moves the shared cursor so
    /// the worker starts after them: core and worker share the batch. The
    /// worker here is held back (its queue is never read), so the order of
    /// the two is fixed, not a race.
    #[test]
    fn the_core_takes_what_the_worker_has_not_started() {
        let (tx, _held) = sync_channel(BATCHES_QUEUED_MAX);
        let memo = VerifyAhead {
            shared: Arc::default(),
            jobs: Mutex::new(tx),
        };
        let batch = signed(20);
        memo.ahead(&batch);
        for bytes in &batch[..5] {
            assert!(memo.get(&hash_bytes(bytes)).is_none());
        }
        let b = memo.shared.lock().expect("lock");
        assert_eq!((b.core_at, b.next), (5, 5), "the worker would start at 5");
        assert!(b.slots[..5].iter().all(|s| matches!(s, Slot::Taken)));
        assert!(b.slots[5..].iter().all(|s| matches!(s, Slot::Waiting)));
    }

    /// Bytes that do not verify are never handed out (the core decodes
    /// them itself and reports its own error), nor is an event the core
    /// did not ask for.
    #[test]
    fn a_forged_or_other_event_is_not_handed_out() -> Result<(), Box<dyn std::error::Error>> {
        let memo = VerifyAhead::spawn()?;
        let mut batch = signed(4);
        let forged = batch.get_mut(1).ok_or("no event")?;
        let at = forged.len() / 2;
        forged[at] ^= 1;
        memo.ahead(&batch);
        memo.settle();
        assert!(memo.get(&hash_bytes(&batch[0])).is_some());
        assert!(memo.get(&hash_bytes(&batch[1])).is_none());
        assert!(
            memo.get(&hash_bytes(&batch[3])).is_none(),
            "asked out of order"
        );
        Ok(())
    }

    /// With no batch announced (a gossip message) the memo answers at
    /// once, and what the core put there is not kept.
    #[test]
    fn without_a_batch_nothing_is_remembered() -> Result<(), Box<dyn std::error::Error>> {
        let memo = VerifyAhead::spawn()?;
        let batch = signed(1);
        let event = VerifiedEvent::decode(&batch[0])?;
        memo.put(&event);
        assert!(memo.get(event.hash()).is_none());
        Ok(())
    }

    /// What the core did not take of a batch is dropped when it is done
    /// with it: the memo holds at most one batch.
    #[test]
    fn leftovers_go_when_the_batch_is_done() -> Result<(), Box<dyn std::error::Error>> {
        let memo = VerifyAhead::spawn()?;
        let batch = signed(4);
        memo.ahead(&batch);
        memo.settle();
        memo.done();
        assert!(memo.get(&hash_bytes(&batch[0])).is_none());
        assert_eq!(memo.shared.lock().map(|b| b.slots.len()), Some(0));
        Ok(())
    }
}
