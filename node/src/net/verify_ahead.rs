//! Verifying a batch of received events on a second core while the core
//! stores them (issue 15 item 1).
//!
//! A sync message brings up to a batch of events at once. The core takes
//! them one by one: decode, `verify_strict`, store, apply. Verification is
//! about as costly as everything after it, so on one core the log ingests
//! at half the verify rate. [`VerifyAhead`] is the core's
//! [`VerifiedMemo`]: when the core announces a batch
//! ([`VerifiedMemo::ahead`]), a worker thread decodes and verifies the
//! batch in order, and the core's own decode of each event waits for the
//! worker's result instead of doing the work again. While the core stores
//! event `i`, the worker verifies `i + 1`: ingest runs at the slower of
//! the two stages instead of their sum.
//!
//! It changes no outcome, only where the work runs: decoding and verifying
//! are pure functions of the bytes, the worker keeps no event it could not
//! verify (the core then decodes those itself and reports its own error),
//! and anything the core does not ask for is dropped when the batch ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hearth_proto::{EventHash, VerifiedEvent};
use tracing::warn;

use crate::core::VerifiedMemo;

/// Batches queued for the worker before [`VerifiedMemo::ahead`] gives up
/// on handing one over (the core then verifies that batch itself). One is
/// normal: the core announces a batch and consumes it before the next.
const BATCHES_QUEUED_MAX: usize = 2;

/// How long the core waits for the worker's answer on one event before it
/// verifies the event itself: a worker that died or stalls costs speed,
/// never correctness. Verifying one event takes ~70 µs.
const WAIT_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct State {
    /// The worker's results not yet taken by the core, by hash. At most
    /// one batch: entries the core never asks for go at [`VerifiedMemo::done`].
    verified: BTreeMap<EventHash, VerifiedEvent>,
    /// Bumped by `done`: results of a batch the core is done with are
    /// dropped by the worker instead of kept.
    generation: u64,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever the worker finishes an event or a batch.
    progress: Condvar,
    /// Events handed to the worker and not finished yet. Zero means the
    /// core need not look or wait: the fast path of a gossip message.
    outstanding: AtomicUsize,
}

/// The memo a running node gives its core. See the module docs.
#[derive(Debug)]
pub struct VerifyAhead {
    shared: Arc<Shared>,
    jobs: Mutex<SyncSender<(u64, Vec<Vec<u8>>)>>,
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

/// The worker: verifies each batch in order, keeping what verified. The
/// rest of a batch the core is done with is skipped, not verified.
fn work(shared: &Shared, jobs: Receiver<(u64, Vec<Vec<u8>>)>) {
    for (generation, batch) in jobs {
        for bytes in batch {
            let current = shared
                .state
                .lock()
                .is_ok_and(|state| state.generation == generation);
            let verified = if current {
                VerifiedEvent::decode(&bytes).ok()
            } else {
                None
            };
            if let (Some(event), Ok(mut state)) = (verified, shared.state.lock()) {
                if state.generation == generation {
                    state.verified.insert(*event.hash(), event);
                }
            }
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            shared.progress.notify_all();
        }
    }
}

impl VerifiedMemo for VerifyAhead {
    /// The worker's result for these bytes, waiting while it is still on
    /// the batch; `None` (the core verifies itself) if the worker has
    /// nothing more to give or could not verify them.
    fn get(&self, hash: &EventHash) -> Option<VerifiedEvent> {
        if self.shared.outstanding.load(Ordering::Acquire) == 0 {
            let mut state = self.shared.state.lock().ok()?;
            return state.verified.remove(hash);
        }
        let mut state = self.shared.state.lock().ok()?;
        loop {
            if let Some(event) = state.verified.remove(hash) {
                return Some(event);
            }
            if self.shared.outstanding.load(Ordering::Acquire) == 0 {
                return None;
            }
            let (next, timeout) = self
                .shared
                .progress
                .wait_timeout(state, WAIT_MAX)
                .ok()?;
            if timeout.timed_out() {
                warn!("verifier fell behind; verifying on the node's own thread");
                return None;
            }
            state = next;
        }
    }

    /// Nothing to keep: each result is taken once, by the core that asked.
    fn put(&self, _event: &VerifiedEvent) {}

    fn ahead(&self, batch: &[Vec<u8>]) {
        let generation = match self.shared.state.lock() {
            Ok(state) => state.generation,
            Err(_) => return,
        };
        let Ok(jobs) = self.jobs.lock() else {
            return;
        };
        self.shared
            .outstanding
            .fetch_add(batch.len(), Ordering::AcqRel);
        if jobs.try_send((generation, batch.to_vec())).is_err() {
            // The worker is gone or still busy: the core does the work.
            self.shared
                .outstanding
                .fetch_sub(batch.len(), Ordering::AcqRel);
        }
    }

    fn done(&self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.generation += 1;
            state.verified.clear();
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

    /// Every event of an announced batch comes back from the worker, the
    /// same event the core would have decoded itself.
    #[test]
    fn an_announced_batch_is_verified_by_the_worker() -> Result<(), Box<dyn std::error::Error>> {
        let memo = VerifyAhead::spawn()?;
        let batch = signed(50);
        assert_eq!(batch.len(), 50);
        memo.ahead(&batch);
        for bytes in &batch {
            let own = VerifiedEvent::decode(bytes)?;
            let got = memo.get(&hash_bytes(bytes));
            assert_eq!(got.map(|e| e.bytes().to_vec()), Some(own.bytes().to_vec()));
        }
        memo.done();
        Ok(())
    }

    /// Bytes that do not verify are never handed out: the core decodes
    /// them itself and reports its own error.
    #[test]
    fn a_forged_event_is_not_handed_out() -> Result<(), Box<dyn std::error::Error>> {
        let memo = VerifyAhead::spawn()?;
        let mut batch = signed(3);
        let forged = batch.get_mut(1).ok_or("no event")?;
        let at = forged.len() / 2;
        forged[at] ^= 1;
        memo.ahead(&batch);
        assert!(memo.get(&hash_bytes(&batch[0])).is_some());
        assert!(memo.get(&hash_bytes(&batch[1])).is_none());
        assert!(memo.get(&hash_bytes(&batch[2])).is_some());
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
        // Taking the last one waits for the worker to finish the batch.
        assert!(memo.get(&hash_bytes(&batch[3])).is_some());
        memo.done();
        assert!(memo.get(&hash_bytes(&batch[0])).is_none());
        assert_eq!(memo.shared.state.lock().map(|s| s.verified.len()).ok(), Some(0));
        Ok(())
    }
}
