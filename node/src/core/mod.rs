//! The sans-IO core of a node: a deterministic state machine.
//!
//! Like `quinn-proto`, this module contains no networking code, reads no
//! clock and draws no OS randomness: time comes in as `now_ms` (Unix
//! milliseconds) with every input, randomness from a seed given at
//! construction, and storage through the [`EventStore`] trait. The `hearth`
//! binary, the simulator and the tests all drive this same state:
//!
//! ```text
//! node.handle(now_ms, Input::Received { bytes, source })   // also Input::Tick
//! while let Some(out) = node.poll_output() { ... }         // Broadcast, Verdict
//! node.poll_timeout()                                       // next wake-up, ms
//! node.call(now_ms, caller, request)                        // capability bus
//! ```
//!
//! Where things happen: [`log`] admits, stores and fans out events;
//! [`views`] derive membership and the marketplace; [`services`] are the
//! capability handlers; [`bus`] names capabilities and wire error codes.

// The determinism guard: no clocks, no OS randomness, no hash-ordered
// collections in here (the bans are listed in clippy.toml).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod bus;
pub mod clock;
pub mod config;
pub mod log;
pub mod pending;
pub mod search;
pub mod services;
pub mod sync;
pub mod sync_sessions;
pub mod views;

use std::collections::VecDeque;
use std::sync::Arc;

use hearth_proto::{CommunityId, EventHash, Identity, NodeId, VerifiedEvent};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tracing::{debug, warn};

pub use bus::{BusError, Caller, Descriptor, ErrorCode};
pub use config::{Config, ConfigError, MarketConfig};
pub use log::{EventLog, IngestError, Ingested, OpenError, ReplayReport};

use crate::store::EventStore;

/// Where received bytes came from: decides the gossip verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A peer relayed it by gossip.
    Peer(NodeId),
    /// A peer sent it during anti-entropy sync.
    Sync(NodeId),
    /// An imported file.
    File,
}

/// Inputs to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Encoded event bytes from a peer or a file.
    Received { bytes: Vec<u8>, source: Source },
    /// The timer from [`Node::poll_timeout`] fired (or any periodic wake).
    Tick,
}

/// What to tell gossipsub about a received message (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and new: deliver and relay.
    Accept,
    /// Invalid by itself, or a non-member publishing its own events:
    /// penalise the sender.
    Reject,
    /// Duplicate, or pending relayed by a third peer who may know an
    /// admission we lack: drop without penalty.
    Ignore,
}

/// Outputs the driver acts on. Drained after every input, so the queue
/// never holds more than one input's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A new local event to publish to the mesh (boxed: events are large
    /// next to the other outputs).
    Broadcast(Box<VerifiedEvent>),
    /// The outcome of an [`Input::Received`].
    Verdict {
        hash: EventHash,
        source: Source,
        verdict: Verdict,
        reason: Option<String>,
    },
    /// An event entered the log: local (`source: None`), received, or
    /// released from pending by an admission that came from `source`.
    Stored {
        hash: EventHash,
        source: Option<Source>,
    },
    /// What the views show differently after an event was applied (after
    /// the `Stored` of that event): the driver's change feed is built from
    /// these, whatever brought the event (gossip, sync, a file, this node).
    ViewChanged(views::ViewChange),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Room kept in the output queue once it is drained. A burst (a sync batch
/// admitted, a settings change that re-derives every post) queues
/// thousands of outputs; without this the queue would keep that room for
/// the node's lifetime (measured in the simulator: a tenth of its heap,
/// every node holding the room of its largest burst).
const OUTPUTS_ROOM_KEPT: usize = 64;

#[derive(Debug)]
pub struct Node<S: EventStore> {
    identity: Identity,
    config: Config,
    log: EventLog<S>,
    rng: ChaCha20Rng,
    outputs: VecDeque<Output>,
    next_sweep_ms: Option<u64>,
    replay: ReplayReport,
    sessions: sync_sessions::Sessions,
    last_sync: Option<sync_sessions::SyncReport>,
    verified: Option<Arc<dyn VerifiedMemo>>,
}

/// Events already decoded and verified elsewhere in this process, by hash
/// of their bytes.
///
/// Decoding and verifying are pure functions of the bytes, so sharing their
/// result changes no outcome, only the cost. The simulator runs a thousand
/// cores that each receive the same events: with a memo each distinct byte
/// string is verified once and held in memory once. A running node's memo
/// (`net::verify_ahead`) verifies a sync message's events on a second
/// thread while this core stores them. Bytes that fail are never handed
/// out, so every core rejects them on its own.
pub trait VerifiedMemo: std::fmt::Debug + Send + Sync {
    fn get(&self, hash: &EventHash) -> Option<VerifiedEvent>;
    fn put(&self, event: &VerifiedEvent);
    /// A hint: these bytes are about to be decoded, in this order, so the
    /// memo may start on them elsewhere.
    fn ahead(&self, _batch: &[Vec<u8>]) {}
    /// The batch given to [`VerifiedMemo::ahead`] is done with.
    fn done(&self) {}
}

/// The 32 bytes that seed a node's random generator (ChaCha20). The
/// generator draws ULIDs, peer choices and the ephemeral keys of sealed
/// messages, so a real node seeds it with 32 bytes from the OS: a key is
/// never weaker than its seed. The simulator and tests give a `u64`
/// ([`From<u64>`]), expanded deterministically so that the same seed gives
/// the same trace; 64 bits are fine for them and never for a real node.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RngSeed(pub [u8; 32]);

impl std::fmt::Debug for RngSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A seed is as secret as the keys drawn from it.
        f.write_str("RngSeed(..)")
    }
}

impl From<[u8; 32]> for RngSeed {
    fn from(bytes: [u8; 32]) -> Self {
        RngSeed(bytes)
    }
}

impl From<u64> for RngSeed {
    /// The simulator's and tests' seeds: the 32 bytes rand_core's
    /// `seed_from_u64` expands a `u64` to (PCG32 output), a fixed function.
    fn from(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        RngSeed(bytes)
    }
}

impl<S: EventStore> Node<S> {
    /// Opens (or creates) the node's log for `genesis`'s community in
    /// `store` and rebuilds the views. `rng_seed` drives every random
    /// choice (see [`RngSeed`]: 32 bytes from the OS for a real node).
    pub fn new(
        identity: Identity,
        genesis: &VerifiedEvent,
        store: S,
        config: Config,
        rng_seed: impl Into<RngSeed>,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let (log, replay) = EventLog::open(store, genesis)?;
        debug!(?replay, events = log.store().len(), "node opened");
        Ok(Node {
            identity,
            config,
            log,
            rng: ChaCha20Rng::from_seed(rng_seed.into().0),
            outputs: VecDeque::new(),
            next_sweep_ms: None,
            replay,
            sessions: Default::default(),
            last_sync: None,
            verified: None,
        })
    }

    /// Shares decode-and-verify results with other cores (see [`VerifiedMemo`]).
    pub fn share_verified(&mut self, memo: Arc<dyn VerifiedMemo>) {
        self.verified = Some(memo);
    }

    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn community(&self) -> CommunityId {
        self.log.community()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn log(&self) -> &EventLog<S> {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut EventLog<S> {
        &mut self.log
    }

    pub fn views(&self) -> &views::Views {
        self.log.views()
    }

    /// Test-only (`fault-injection`): a DELIBERATE BUG that makes the
    /// marketplace view show, for a post with several updates, the update
    /// applied last instead of the one with the highest key, so the view
    /// depends on arrival order. Used by the simulator to prove its checker
    /// fails on a broken core; takes effect for events applied from now on.
    #[cfg(feature = "fault-injection")]
    pub fn inject_arrival_order_bug(&mut self) {
        self.log.views_mut().market.inject_arrival_order_bug();
    }

    /// Test-only (`fault-injection`): a DELIBERATE BUG that makes the
    /// conversations view keep the first acceptance of a post it applied
    /// instead of the highest `(lamport, hash)`, so the accepted claim
    /// depends on arrival order. The simulator's checker must catch it.
    #[cfg(feature = "fault-injection")]
    pub fn inject_first_acceptance_bug(&mut self) {
        self.log
            .views_mut()
            .conversations
            .inject_first_acceptance_bug();
    }

    /// Test-only (`fault-injection`): publishes `payload` as this node's
    /// event without a service's checks, for what the simulator's workload
    /// needs and no capability offers (a claim withdrawal; an author's
    /// second acceptance of one post, as from a second device): valid
    /// events the view rules must handle.
    #[cfg(feature = "fault-injection")]
    pub fn publish_unchecked(
        &mut self,
        now_ms: u64,
        payload: hearth_proto::Payload,
    ) -> Result<VerifiedEvent, log::AppendError> {
        self.publish(now_ms, payload)
    }

    /// How the views were rebuilt when the node opened.
    pub fn replay_report(&self) -> ReplayReport {
        self.replay
    }

    pub fn handle(&mut self, now_ms: u64, input: Input) {
        match input {
            Input::Received { bytes, source } => {
                let hash = hearth_proto::hash_bytes(&bytes);
                let (verdict, reason) = match self.receive_hashed(&bytes, Some(&hash), source) {
                    Ok(Ingested::Stored(_)) => (Verdict::Accept, None),
                    Ok(Ingested::Pending) => {
                        let verdict = match source {
                            Source::Peer(peer) if self.pending_author_is(&bytes, &peer) => {
                                Verdict::Reject
                            }
                            _ => Verdict::Ignore,
                        };
                        (
                            verdict,
                            Some("author is not a member (held pending)".into()),
                        )
                    }
                    Err(e) => {
                        let verdict = match e {
                            IngestError::Duplicate(_) | IngestError::PendingFull(_) => {
                                Verdict::Ignore
                            }
                            IngestError::Store(_) => Verdict::Ignore,
                            IngestError::Invalid(_) | IngestError::WrongCommunity { .. } => {
                                Verdict::Reject
                            }
                        };
                        (verdict, Some(e.to_string()))
                    }
                };
                self.outputs.push_back(Output::Verdict {
                    hash,
                    source,
                    verdict,
                    reason,
                });
            }
            Input::Tick => self.on_tick(now_ms),
        }
    }

    fn pending_author_is(&self, bytes: &[u8], peer: &NodeId) -> bool {
        hearth_proto::SignedEvent::decode(bytes).is_ok_and(|e| e.event().author == *peer)
    }

    /// Decodes, verifies and admits received bytes; the typed form of
    /// [`Input::Received`] for callers that want the reason (import).
    pub fn receive(&mut self, bytes: &[u8], source: Source) -> Result<Ingested, IngestError> {
        self.receive_hashed(bytes, None, source)
    }

    /// [`Node::receive`] for a batch from one source, in order (a sync
    /// message's events): the memo, if any, may verify ahead of the store.
    /// Refusals are logged by `receive`; the rest of the batch goes on.
    pub fn receive_batch(&mut self, batch: &[Vec<u8>], source: Source) {
        if let Some(memo) = &self.verified {
            memo.ahead(batch);
        }
        for bytes in batch {
            let _ = self.receive(bytes, source);
        }
        if let Some(memo) = &self.verified {
            memo.done();
        }
    }

    /// [`Node::receive`], with the bytes' hash if the caller has it.
    fn receive_hashed(
        &mut self,
        bytes: &[u8],
        hash: Option<&EventHash>,
        source: Source,
    ) -> Result<Ingested, IngestError> {
        let event = self.decode(bytes, hash)?;
        let result = self.log.append_received(event);
        match &result {
            Ok(Ingested::Stored(events)) => {
                for e in events {
                    self.outputs.push_back(Output::Stored {
                        hash: *e.hash(),
                        source: Some(source),
                    });
                }
            }
            Ok(Ingested::Pending) => debug!(?source, "event held pending"),
            Err(e) => debug!(?source, error = %e, "event refused"),
        }
        self.take_view_changes();
        result
    }

    /// Moves what the log's views recorded to the outputs.
    fn take_view_changes(&mut self) {
        let (changes, lost) = self.log.take_changes();
        self.outputs
            .extend(changes.into_iter().map(Output::ViewChanged));
        if lost > 0 {
            self.outputs
                .push_back(Output::ViewChanged(views::ViewChange::Lost { count: lost }));
        }
    }

    /// Decodes and verifies, or takes the memo's copy of the same bytes.
    /// Without a memo (a real node) nothing is hashed here: decoding
    /// hashes the bytes itself.
    fn decode(
        &self,
        bytes: &[u8],
        hash: Option<&EventHash>,
    ) -> Result<VerifiedEvent, hearth_proto::EventError> {
        let Some(memo) = &self.verified else {
            return VerifiedEvent::decode(bytes);
        };
        let hash = hash
            .copied()
            .unwrap_or_else(|| hearth_proto::hash_bytes(bytes));
        if let Some(event) = memo.get(&hash) {
            return Ok(event);
        }
        let event = VerifiedEvent::decode(bytes)?;
        memo.put(&event);
        Ok(event)
    }

    fn on_tick(&mut self, now_ms: u64) {
        if let Err(e) = self.log.flush() {
            warn!(error = %e, "flush failed");
        }
        let interval_ms = self
            .config
            .market
            .sweep_interval_seconds
            .saturating_mul(1000);
        match self.next_sweep_ms {
            Some(due) if now_ms < due => {}
            _ => {
                if self.next_sweep_ms.is_some() {
                    self.sweep(now_ms);
                }
                self.next_sweep_ms = Some(now_ms.saturating_add(interval_ms));
            }
        }
        let every = self.config.snapshot_every_events;
        if every > 0 && self.log.arrivals_since_snapshot() >= every {
            if let Err(e) = self.log.snapshot() {
                warn!(error = %e, "snapshot failed");
            }
        }
    }

    /// When the core next wants a [`Input::Tick`] (Unix ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_sweep_ms
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > OUTPUTS_ROOM_KEPT {
            self.outputs.shrink_to(OUTPUTS_ROOM_KEPT);
        }
        out
    }

    /// Next value of the node's seeded generator.
    fn next_random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Next random value for a ULID's 80 random bits.
    fn ulid_random(&mut self) -> u128 {
        let hi = u128::from(self.rng.next_u64());
        let lo = u128::from(self.rng.next_u64());
        ((hi << 64) | lo) & ((1u128 << 80) - 1)
    }

    /// Appends a local event and queues it for broadcast.
    fn publish(
        &mut self,
        now_ms: u64,
        payload: hearth_proto::Payload,
    ) -> Result<VerifiedEvent, log::AppendError> {
        let random = self.ulid_random();
        let event = self
            .log
            .append_local(&self.identity, now_ms, random, payload)?;
        self.outputs.push_back(Output::Stored {
            hash: *event.hash(),
            source: None,
        });
        self.take_view_changes();
        self.outputs
            .push_back(Output::Broadcast(Box::new(event.clone())));
        Ok(event)
    }

    /// Flushes and hands back the store (a restart in tests and tools).
    pub fn into_store(self) -> Result<S, crate::store::StoreError> {
        self.log.into_store()
    }

    /// Hands back the store without flushing: what a power cut leaves (the
    /// simulator's hard crash).
    pub fn into_store_unflushed(self) -> S {
        self.log.into_store_unflushed()
    }

    /// Writes a snapshot now and flushes (a clean shutdown).
    pub fn shutdown(&mut self) -> Result<(), log::SnapshotError> {
        self.log.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::RngSeed;

    /// A `u64` seed expands to the same 32 bytes every time (the
    /// simulator's "same seed, same trace"), and different seeds to
    /// different bytes; a seed never prints its bytes.
    #[test]
    fn u64_seeds_expand_deterministically_and_stay_unprinted() {
        assert_eq!(RngSeed::from(7u64), RngSeed::from(7u64));
        assert_ne!(RngSeed::from(7u64), RngSeed::from(8u64));
        assert_ne!(RngSeed::from(7u64).0, [0u8; 32]);
        assert_eq!(format!("{:?}", RngSeed([9; 32])), "RngSeed(..)");
    }
}
