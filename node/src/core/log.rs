//! The event log: where an event is admitted, stored and fanned out to the
//! views (DESIGN.md §4).
//!
//! - [`EventLog::append_local`] signs a new event with the next Lamport time
//!   and stores it durably (flushed) before it returns.
//! - [`EventLog::append_received`] takes an already verified event, checks
//!   its community, dedupes by hash, and either stores it (author vouched) or
//!   holds it pending. Received events are flushed in batches of
//!   [`FLUSH_BATCH_EVENTS`] and on every [`EventLog::flush`] (the node calls
//!   it on each tick); the sled store also flushes itself every 500 ms. A
//!   crash can lose at most that window of *received* events, which sync
//!   fetches again from peers; a local event is never lost once appended.
//! - [`EventLog::open`] rebuilds the views: restore the snapshot, replay the
//!   arrivals after it; or replay everything if there is no usable snapshot.
//!
//! # A full disk
//!
//! A local event is acknowledged only once stored *and* flushed; it reaches
//! the views after both, so a failed insert or flush leaves the views as
//! they were and the caller gets [`AppendError::Store`] (the bus answers
//! `storage_full`). While the store refuses writes ([`WriteState`] not
//! `Ok`), reads go on from the views and the store, received events are
//! refused (the driver's verdict is `Ignore`, so sync brings them back), and
//! every write and every [`EventLog::flush`] (each tick) first calls
//! [`EventLog::probe_store`], which lets the store recover once there is
//! room. A store that recovers by reopening holds only what was durable, so
//! the views are rebuilt from it: they never show an event the disk lost.
//! A snapshot that cannot be written is skipped with a warning: it is a
//! cache of the views, and the log it would summarise is already stored.

use std::ops::Bound;

use hearth_proto::{
    CommunityId, Event, EventError, EventHash, EventId, Identity, Payload, VerifiedEvent,
};
use tracing::{debug, info_span, warn};

use super::bus::{BusError, ErrorCode};
use super::clock::LamportClock;
use super::pending::{Pending, PendingFull};
use super::views::{SnapshotCover, ViewChange, Views};
use crate::store::{EventStore, StoreError, WriteState};

/// Received events stored between forced flushes: bounds the crash window
/// by count when events arrive faster than ticks and sled's own 500 ms
/// flusher. 4,096 events are ~2 MB and a third of a second of ingest at
/// full speed; a crash loses at most those, which sync fetches again. It
/// was 256, which made a sync burst fsync-bound (40 fsyncs a second; the
/// ingest bench fell from 28k to 9.5k stores a second): issue 15 item 1.
pub const FLUSH_BATCH_EVENTS: usize = 4096;

const META_COMMUNITY: &str = "community";
const META_SNAPSHOT: &str = "snapshot";

/// Why a received event did not enter the log or the pending set.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid event: {0}")]
    Invalid(#[from] EventError),
    #[error("event belongs to community {got}, not {expected}")]
    WrongCommunity {
        expected: CommunityId,
        got: CommunityId,
    },
    #[error("duplicate event {0}: already held")]
    Duplicate(EventHash),
    #[error("author is not a member and the pending set refused the event: {0}")]
    PendingFull(#[from] PendingFull),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a local append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("cannot sign event: {0}")]
    Sign(#[from] EventError),
    #[error("the Lamport clock is exhausted")]
    ClockExhausted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppendError {
    /// The refusal to answer for a store that cannot take writes now:
    /// `storage_full` for a full disk (local only: remote callers cannot
    /// write, so they never see it), `unavailable` for a read-only one.
    /// `None` for other failures, which are the service's to map.
    pub fn storage_refusal(&self) -> Option<BusError> {
        let AppendError::Store(e) = self else {
            return None;
        };
        match e.write_state()? {
            WriteState::Full => Some(BusError::new(
                ErrorCode::StorageFull,
                format!(
                    "nothing was written: {e}; free space on that disk, \
                     writes resume by themselves"
                ),
            )),
            WriteState::ReadOnly => Some(BusError::unavailable(format!(
                "nothing was written: {e}; make the data dir writable, \
                 writes resume by themselves"
            ))),
            WriteState::Ok => None,
        }
    }
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("this data holds community {stored}, not {wanted}")]
    OtherCommunity {
        stored: CommunityId,
        wanted: CommunityId,
    },
    #[error("event {0} is not a community genesis")]
    NotGenesis(EventHash),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to a received event.
#[derive(Debug)]
pub enum Ingested {
    /// Entered the log, with any pending events it released (all in the
    /// order they were stored).
    Stored(Vec<VerifiedEvent>),
    /// Author not vouched: held pending.
    Pending,
}

/// How the views were rebuilt at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Arrival sequence the snapshot covered, if one was used.
    pub snapshot_arrival: Option<u64>,
    /// Events applied after the snapshot (or all of them).
    pub replayed: u64,
}

#[derive(Debug)]
pub struct EventLog<S: EventStore> {
    store: S,
    community: CommunityId,
    clock: LamportClock,
    pending: Pending,
    views: Views,
    unflushed: usize,
    /// Arrival sequence the stored snapshot covers (0: none).
    snapshot_arrival: u64,
    /// The store was reopened but rebuilding the views from it failed:
    /// the next probe tries again before anything is written.
    rebuild_due: bool,
    /// What the views show differently since the node last took these
    /// ([`EventLog::take_changes`], after every input): at most
    /// [`super::views::market::CHANGES_MAX`], the rest only counted, since
    /// one admission can release many pending events.
    changes: Vec<ViewChange>,
    changes_lost: u64,
}

impl<S: EventStore> EventLog<S> {
    /// Opens the log of `genesis`'s community in `store`, storing the genesis
    /// if the store is new, then rebuilds the views.
    pub fn open(mut store: S, genesis: &VerifiedEvent) -> Result<(Self, ReplayReport), OpenError> {
        let community = genesis
            .founded_community()
            .ok_or(OpenError::NotGenesis(*genesis.hash()))?;
        match store.get_meta(META_COMMUNITY)? {
            Some(stored) if stored != community.0 => {
                return Err(OpenError::OtherCommunity {
                    stored: CommunityId::from_slice(&stored).unwrap_or_default(),
                    wanted: community,
                })
            }
            Some(_) => {}
            None => {
                store.insert(genesis)?;
                store.put_meta(META_COMMUNITY, &community.0)?;
                store.flush()?;
            }
        }
        let mut log = EventLog {
            store,
            community,
            clock: LamportClock::default(),
            pending: Pending::default(),
            views: Views::default(),
            unflushed: 0,
            snapshot_arrival: 0,
            rebuild_due: false,
            changes: Vec::new(),
            changes_lost: 0,
        };
        let report = log.rebuild_views()?;
        Ok((log, report))
    }

    /// The community id stored in `store`, if it holds one.
    pub fn stored_community(store: &S) -> Result<Option<CommunityId>, StoreError> {
        Ok(store
            .get_meta(META_COMMUNITY)?
            .and_then(|b| CommunityId::from_slice(&b)))
    }

    fn rebuild_views(&mut self) -> Result<ReplayReport, StoreError> {
        let _span = info_span!("replay").entered();
        match self.restore_snapshot()? {
            Some(report) => Ok(report),
            None => self.replay_all(),
        }
    }

    /// Restores the stored snapshot and replays the arrivals after it;
    /// `None` if there is no usable snapshot.
    fn restore_snapshot(&mut self) -> Result<Option<ReplayReport>, StoreError> {
        if let Some(bytes) = self.store.get_meta(META_SNAPSHOT)? {
            match self.views.restore_state(&bytes) {
                Ok(cover) if cover.arrival <= self.store.last_arrival() => {
                    self.clock = LamportClock::new(cover.clock);
                    let mut replayed = 0;
                    for item in self.store.since_arrival(cover.arrival) {
                        let (_, event) = item?;
                        self.clock.observe(event.event().lamport);
                        self.views.apply(&event);
                        replayed += 1;
                    }
                    debug!(arrival = cover.arrival, replayed, "restored snapshot");
                    self.snapshot_arrival = cover.arrival;
                    return Ok(Some(ReplayReport {
                        snapshot_arrival: Some(cover.arrival),
                        replayed,
                    }));
                }
                Ok(cover) => warn!(
                    arrival = cover.arrival,
                    "snapshot is ahead of the store; replaying everything"
                ),
                Err(e) => warn!(error = %e, "snapshot unusable; replaying everything"),
            }
        }
        Ok(None)
    }

    /// Rebuilds the views from every stored event, in key order. Also the
    /// check that incremental state equals full replay.
    pub fn replay_all(&mut self) -> Result<ReplayReport, StoreError> {
        self.views.reset();
        self.views.begin_bulk();
        // Key order is the most generous order for the clock rule, so the
        // clock comes out at least where it was before the restart.
        self.clock = LamportClock::default();
        let mut replayed = 0;
        let mut failed = None;
        for item in self.store.range(Bound::Unbounded, Bound::Unbounded) {
            match item {
                Ok(event) => {
                    self.clock.observe(event.event().lamport);
                    self.views.apply(&event);
                    replayed += 1;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Leave bulk mode on every path, so later applies derive as usual.
        self.views.end_bulk();
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(ReplayReport {
            snapshot_arrival: None,
            replayed,
        })
    }

    pub fn community(&self) -> CommunityId {
        self.community
    }

    pub fn views(&self) -> &Views {
        &self.views
    }

    /// For [`super::Node::inject_arrival_order_bug`] only.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn views_mut(&mut self) -> &mut Views {
        &mut self.views
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn clock(&self) -> u64 {
        self.clock.current()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether this event waits in the pending set for its author's
    /// admission.
    pub fn is_pending(&self, hash: &EventHash) -> bool {
        self.pending.contains(hash)
    }

    /// Signs `payload` as a new event of `identity` at the next Lamport time
    /// and stores it durably. `random` fills the ULID's random part.
    pub fn append_local(
        &mut self,
        identity: &Identity,
        now_ms: u64,
        random: u128,
        payload: Payload,
    ) -> Result<VerifiedEvent, AppendError> {
        self.probe_store()?;
        let lamport = self.clock.next().ok_or(AppendError::ClockExhausted)?;
        let event = Event {
            id: EventId::from_parts(now_ms, random),
            ts: now_ms,
            author: identity.node_id(),
            lamport,
            community: self.community,
            payload,
        }
        .sign(identity)?;
        let _span = info_span!("append_local", hash = %event.hash(), kind = event.event().payload.type_name()).entered();
        // Insert, then flush, then the views: if either store step fails,
        // nothing is acknowledged and the views never show the event.
        let seq = self.store.insert(&event)?;
        debug_assert!(seq.is_some(), "a fresh signature cannot be a duplicate");
        self.store.flush()?;
        self.unflushed = 0;
        self.clock.set_local(lamport);
        self.fan_out(event.clone())?;
        Ok(event)
    }

    /// Admits a verified event received from a peer or a file.
    pub fn append_received(&mut self, event: VerifiedEvent) -> Result<Ingested, IngestError> {
        let _span = info_span!("append_received", hash = %event.hash()).entered();
        let e = event.event();
        let community = event.founded_community().unwrap_or(e.community);
        if community != self.community {
            return Err(IngestError::WrongCommunity {
                expected: self.community,
                got: community,
            });
        }
        let hash = *event.hash();
        if self.pending.contains(&hash) {
            return Err(IngestError::Duplicate(hash));
        }
        self.probe_store()?;
        if !self.views.membership.is_vouched(&e.author) {
            if self.store.contains(&hash)? {
                return Err(IngestError::Duplicate(hash));
            }
            self.pending.insert(event)?;
            return Ok(Ingested::Pending);
        }
        // The store's insert dedupes by hash itself: one lookup, not two.
        match self.store_received(event)? {
            Some(stored) => Ok(Ingested::Stored(stored)),
            None => Err(IngestError::Duplicate(hash)),
        }
    }

    /// Stores a vouched event, then any pending events it releases; `None`
    /// if the store already held it.
    fn store_received(
        &mut self,
        event: VerifiedEvent,
    ) -> Result<Option<Vec<VerifiedEvent>>, StoreError> {
        if self.store.insert(&event)?.is_none() {
            return Ok(None);
        }
        self.clock.observe(event.event().lamport);
        self.unflushed += 1;
        let stored = self.fan_out(event)?;
        if self.unflushed >= FLUSH_BATCH_EVENTS {
            self.flush()?;
        }
        Ok(Some(stored))
    }

    /// Applies a stored event to the views; releases pending events of
    /// authors it vouched for (which may vouch for more, hence the queue).
    fn fan_out(&mut self, first: VerifiedEvent) -> Result<Vec<VerifiedEvent>, StoreError> {
        let mut queue = vec![first];
        let mut done = Vec::new();
        let mut seen = Vec::new();
        while let Some(event) = queue.pop() {
            let change = self.views.apply_reporting(&event, &mut seen);
            self.keep_changes(&mut seen);
            done.push(event);
            for author in &change.newly_vouched {
                for released in self.pending.take_author(author) {
                    if self.store.insert(&released)?.is_some() {
                        self.clock.observe(released.event().lamport);
                        self.unflushed += 1;
                        queue.push(released);
                    }
                }
            }
        }
        Ok(done)
    }

    fn keep_changes(&mut self, seen: &mut Vec<ViewChange>) {
        for c in seen.drain(..) {
            match c {
                ViewChange::Lost { count } => self.changes_lost += count,
                c if self.changes.len() < super::views::market::CHANGES_MAX => self.changes.push(c),
                _ => self.changes_lost += 1,
            }
        }
    }

    /// What the views show differently since the last call (oldest
    /// first), and how many changes were dropped past the bound.
    pub fn take_changes(&mut self) -> (Vec<ViewChange>, u64) {
        (
            std::mem::take(&mut self.changes),
            std::mem::take(&mut self.changes_lost),
        )
    }

    /// Makes every stored event durable; first lets a store that refused
    /// writes recover (the node calls this on every tick).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.probe_store()?;
        if self.unflushed > 0 {
            self.store.flush()?;
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Whether the store takes writes now (`hearth status` shows it).
    pub fn write_state(&self) -> WriteState {
        self.store.write_state()
    }

    /// Lets a store that refused writes (full or read-only disk) recover,
    /// and rebuilds the views if it was reopened: a reopened store holds
    /// only what was durable, and the views must show no more than that.
    /// Cheap when the store is writable: one comparison. An error means
    /// the store still refuses writes; reads go on.
    pub fn probe_store(&mut self) -> Result<(), StoreError> {
        if self.store.write_state() != WriteState::Ok && self.store.recover()? {
            self.unflushed = 0;
            self.rebuild_due = true;
        }
        if self.rebuild_due {
            let report = self.rebuild_views()?;
            self.rebuild_due = false;
            warn!(
                replayed = report.replayed,
                events = self.store.len(),
                "the store takes writes again; views rebuilt from what it holds"
            );
        }
        Ok(())
    }

    /// Writes a snapshot of the views covering every stored event. A full
    /// or read-only disk skips it with a warning (a snapshot only speeds up
    /// the next open), so a clean shutdown after an acknowledged write
    /// never turns into a reported failure.
    pub fn snapshot(&mut self) -> Result<(), SnapshotError> {
        match self.write_snapshot() {
            Err(SnapshotError::Store(e)) if e.write_state().is_some() => {
                warn!(error = %e, "view snapshot skipped: the store refuses writes");
                Ok(())
            }
            other => other,
        }
    }

    fn write_snapshot(&mut self) -> Result<(), SnapshotError> {
        self.probe_store()?;
        let cover = SnapshotCover {
            arrival: self.store.last_arrival(),
            clock: self.clock.current(),
        };
        let bytes = self.views.snapshot_state(cover)?;
        self.store.put_meta(META_SNAPSHOT, &bytes)?;
        self.store.flush()?;
        self.unflushed = 0;
        self.snapshot_arrival = cover.arrival;
        Ok(())
    }

    /// Arrivals since the stored snapshot: what a restart would replay.
    pub fn arrivals_since_snapshot(&self) -> u64 {
        self.store
            .last_arrival()
            .saturating_sub(self.snapshot_arrival)
    }

    /// Consumes the log, returning the store (tests reopen it).
    pub fn into_store(mut self) -> Result<S, StoreError> {
        self.flush()?;
        Ok(self.store)
    }

    /// The store as a crash leaves it: nothing more is flushed.
    pub fn into_store_unflushed(self) -> S {
        self.store
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    View(#[from] super::views::ViewError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
