//! One side of a reconciliation: each message in gets one message out.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;

use hearth_proto::{EventHash, EventKey, EVENT_BYTES_MAX};
use serde::{Deserialize, Serialize};

use super::fingerprint::{short_id, Accumulator};
use super::message::{KeyBound, Mode, Range, SyncMessage};
use super::{
    sketch, SyncError, BUCKETS_MAX, CHILD_DIFFERENCES_TARGET, EVENTS_MAX, EVENT_BATCH_BYTES_MAX,
    IDS_MAX, MESSAGES_MAX, OPENING_CAPACITY, RANGES_MAX, RANGE_BYTES_MAX, ROUNDS_MAX,
    SKETCH_CAPACITY_MAX, STRATA_CAPACITY, STRATA_LEVELS_MAX, SYNDROMES_MAX,
};
use crate::store::{EventStore, StoreError};

/// What a session did, for status and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStats {
    /// Messages this side handled from the peer.
    pub messages_in: u32,
    /// Of those, the ones with open ranges (reconciliation rounds).
    pub rounds: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub events_sent: u64,
    pub events_received: u64,
}

/// One side of a reconciliation with one peer. The same type serves the
/// initiator ([`SyncSession::initiate`]) and the responder
/// (`SyncSession::default()`).
///
/// Events in a peer's message are handed to the caller as they are
/// ([`SyncSession::take_received`]), asked for or not: the peer pushes what
/// it worked out we lack, and the caller verifies every one of them exactly
/// like a gossiped event, so an unsolicited push gains a peer nothing that
/// gossip would not. What sync does enforce is the batch bounds.
#[derive(Debug, Default)]
pub struct SyncSession {
    /// The salt of fingerprints and short ids: chosen by the initiator,
    /// adopted by a responder from the first message with ranges. 0 until
    /// then (an initiator never chooses 0, and 0 is what a message without
    /// ranges decodes to).
    salt: u64,
    stats: SyncStats,
    /// Events the peer lacks that did not fit in the last message. Bounded
    /// by our own store: only our events are ever queued.
    outbox: VecDeque<EventHash>,
    /// Events we asked for (`Want`, `Roots`) and have not seen arrive.
    awaiting: u64,
    /// Received event bytes for the caller to verify and admit.
    received: Vec<Vec<u8>>,
    /// The peer's last message left nothing open: no range to answer and
    /// a batch of events that was not full, so the peer had none left.
    peer_finished: bool,
}

impl SyncSession {
    /// Starts a reconciliation: one range covering everything, with the
    /// fingerprint of the store's cached [`LogDigest`](super::LogDigest)
    /// (or the id list of a tiny log). Equal logs settle on it in one round
    /// trip without hashing a single item. For unequal ones the responder
    /// answers with a salted sketch and estimation levels, from which up to
    /// a few differences decode directly and more are sized.
    /// `salt` comes from the node's seeded generator, fresh per session.
    pub fn initiate<S: EventStore>(
        store: &S,
        salt: u64,
    ) -> Result<(SyncSession, SyncMessage), SyncError> {
        let mode = if store.len() <= OPENING_CAPACITY as u64 {
            Mode::Ids(short_ids(salt, &keys_in(store, None, None)?))
        } else {
            own_fingerprint(store, salt, true, &[])?
        };
        let msg = SyncMessage {
            salt,
            ranges: vec![Range { upper: None, mode }],
            events: Vec::new(),
        };
        let mut session = SyncSession {
            salt,
            ..SyncSession::default()
        };
        session.stats.bytes_sent = msg.encode().len() as u64;
        Ok((session, msg))
    }

    /// The session's salt; 0 for a responder that has not seen a message
    /// with ranges yet.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// Whether `msg` can belong to this session. A message with ranges
    /// carries its session's salt; one without (events, or "nothing
    /// more") carries none and belongs to whichever session is running.
    pub fn continues(&self, msg: &SyncMessage) -> bool {
        msg.ranges.is_empty() || self.salt == 0 || msg.salt == self.salt
    }

    /// Handles one message from the peer and returns the answer. An empty
    /// answer ([`SyncMessage::is_empty`]) means this side has nothing more
    /// to say. A refused message (an error) leaves the session as it was;
    /// that includes a message of another session
    /// ([`SyncError::OtherSession`], see [`SyncSession::continues`]).
    pub fn handle<S: EventStore>(
        &mut self,
        store: &S,
        bytes: &[u8],
    ) -> Result<SyncMessage, SyncError> {
        let msg = SyncMessage::decode(bytes)?;
        self.handle_message(store, msg, bytes.len())
    }

    /// [`SyncSession::handle`] for a message the caller has decoded from
    /// `encoded_len` bytes.
    pub fn handle_message<S: EventStore>(
        &mut self,
        store: &S,
        msg: SyncMessage,
        encoded_len: usize,
    ) -> Result<SyncMessage, SyncError> {
        if !self.continues(&msg) {
            return Err(SyncError::OtherSession {
                ours: self.salt,
                theirs: msg.salt,
            });
        }
        let open = msg.ranges.iter().any(|r| r.mode != Mode::Skip);
        if self.stats.messages_in >= MESSAGES_MAX || (open && self.stats.rounds >= ROUNDS_MAX) {
            return Err(SyncError::TooManyRounds);
        }
        let plan = plan(store, &msg)?;
        let batch = self.batch(store, &plan.push)?;
        let reply = SyncMessage {
            salt: msg.salt,
            ranges: plan.ranges,
            events: batch.events,
        };
        let sent = reply.encode().len();

        // Commit. Nothing below can fail.
        if self.salt == 0 && !msg.ranges.is_empty() {
            self.salt = msg.salt;
        }
        self.outbox.drain(..batch.from_outbox);
        self.outbox
            .extend(plan.push[batch.from_push..].iter().copied());
        self.awaiting = if msg.is_empty() {
            // The peer has nothing more to send: what did not come will
            // not come in this session (it was not there to find).
            0
        } else {
            self.awaiting.saturating_sub(msg.events.len() as u64)
        } + plan.expect;
        let s = &mut self.stats;
        s.messages_in += 1;
        s.rounds += u32::from(open);
        s.bytes_received += encoded_len as u64;
        s.bytes_sent += sent as u64;
        s.events_received += msg.events.len() as u64;
        s.events_sent += reply.events.len() as u64;
        self.peer_finished = !open && !batch_full(&msg.events);
        self.received.extend(msg.events);
        Ok(reply)
    }

    /// Takes events from the outbox, then from `push`, within the batch
    /// bounds; says how many of each it used.
    fn batch<S: EventStore>(&self, store: &S, push: &[EventHash]) -> Result<Batch, SyncError> {
        let mut events = Vec::new();
        let (mut bytes, mut used) = (0usize, 0usize);
        for hash in self.outbox.iter().chain(push) {
            if events.len() >= EVENTS_MAX {
                break;
            }
            // Only our own stored events are queued; one removed since
            // (never, today) is simply not sent.
            if let Some(event) = store.get(hash)? {
                if bytes + event.bytes().len() > EVENT_BATCH_BYTES_MAX {
                    break;
                }
                bytes += event.bytes().len();
                events.push(event.into_bytes());
            }
            used += 1;
        }
        let from_outbox = used.min(self.outbox.len());
        Ok(Batch {
            events,
            from_outbox,
            from_push: used - from_outbox,
        })
    }

    /// Event bytes received so far, for the caller to verify and admit.
    pub fn take_received(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.received)
    }

    /// Nothing left to send and nothing awaited.
    pub fn is_done(&self) -> bool {
        self.outbox.is_empty() && self.awaiting == 0
    }

    /// Whether the session is over when `next`, our answer to the peer's
    /// last message, is not sent: it is empty, we await nothing, and the
    /// peer's message left no range open and carried a batch of events
    /// that was not full (a batch stops only at an event that does not
    /// fit, so the peer had no more to push). Ending here saves the empty
    /// closing round trip that "answer an empty message with one" costs.
    pub fn finished(&self, next: &SyncMessage) -> bool {
        next.is_empty() && self.is_done() && self.peer_finished
    }

    pub fn stats(&self) -> SyncStats {
        self.stats
    }
}

/// Whether a batch of events may have stopped short of the sender's queue:
/// it has the most events a message may carry, or so many bytes that an
/// event of the largest size might not have fit.
fn batch_full(events: &[Vec<u8>]) -> bool {
    let bytes: usize = events.iter().map(Vec::len).sum();
    events.len() >= EVENTS_MAX || bytes + EVENT_BYTES_MAX > EVENT_BATCH_BYTES_MAX
}

#[derive(Debug)]
struct Batch {
    events: Vec<Vec<u8>>,
    from_outbox: usize,
    from_push: usize,
}

/// The answer to one message, made without touching the session.
#[derive(Debug, Default)]
struct Plan {
    ranges: Vec<Range>,
    /// Our events the peer lacks, in key order.
    push: Vec<EventHash>,
    /// Events we asked for in `ranges`.
    expect: u64,
    /// Upper bound of the encoded size of `ranges`.
    spent: usize,
    /// Sketch syndromes in `ranges` (the peer's decoding work).
    syndromes: usize,
}

/// What one incoming range tells us.
#[derive(Debug)]
enum Outcome {
    /// Equal, or the peer said skip.
    Settled,
    /// Both differences known: push ours, maybe ask for theirs.
    Resolved {
        push: Vec<EventHash>,
        ask: Option<Mode>,
        expect: u64,
    },
    /// A root polynomial we could not fully match: push what matched and
    /// reopen the range.
    Reopen { push: Vec<EventHash> },
    /// Different, not resolved: `floor` is a lower bound of the number of
    /// differences, `estimate` a better guess when the peer sent
    /// estimation levels.
    Differs {
        theirs: u64,
        floor: u64,
        estimate: Option<f64>,
        answered_fingerprint: bool,
    },
}

#[derive(Debug)]
struct Assessed {
    upper: Option<KeyBound>,
    mine: Vec<EventKey>,
    /// Short ids of `mine`, when they were needed.
    ids: Vec<u64>,
    outcome: Outcome,
    /// Our fingerprint of the range (a `Mode::Fingerprint`), for answers
    /// that leave it open; `Skip` for a settled range, which needs none.
    fingerprint: Mode,
}

/// Upper bound of an encoded fingerprint range with this bound. Every
/// incoming range can be answered with one, so this much is reserved for
/// each range still to answer. Even 4,096 of them with 32-byte prefixes
/// (64 bytes each) take only 256 KiB of RANGE_BYTES_MAX.
fn fingerprint_bytes_max(upper: &Option<KeyBound>) -> usize {
    range_bytes_max(&Range {
        upper: upper.clone(),
        mode: Mode::Fingerprint {
            count: 0,
            fp: [0; super::FINGERPRINT_BYTES],
        },
    })
}

fn plan<S: EventStore>(store: &S, msg: &SyncMessage) -> Result<Plan, SyncError> {
    let salt = msg.salt;
    // Pass 1: compare each range with our items.
    let mut assessed = Vec::with_capacity(msg.ranges.len());
    let mut lower: Option<&KeyBound> = None;
    for range in &msg.ranges {
        assessed.push(assess(store, salt, lower, range)?);
        lower = range.upper.as_ref();
    }
    // Pass 2: answer each, within the message budget. Invariant: what is
    // spent plus a fingerprint for every range still to answer fits.
    // `reserve[i]`: the fingerprints of the ranges after range i.
    let mut reserve = vec![0usize; assessed.len()];
    for i in (1..assessed.len()).rev() {
        reserve[i - 1] = reserve[i] + fingerprint_bytes_max(&assessed[i].upper);
    }
    let mut plan = Plan::default();
    let total = assessed.len();
    for (i, mut a) in assessed.into_iter().enumerate() {
        let remaining = (total - i - 1, reserve[i]);
        let answers_with_ids =
            matches!(a.outcome, Outcome::Reopen { .. } | Outcome::Differs { .. });
        if answers_with_ids && a.ids.len() != a.mine.len() {
            a.ids = short_ids(salt, &a.mine);
        }
        let answer = match a.outcome {
            Outcome::Settled => {
                plan.skip(a.upper);
                continue;
            }
            Outcome::Resolved { push, ask, expect } => {
                plan.push.extend(push);
                match ask {
                    None => {
                        plan.skip(a.upper);
                        continue;
                    }
                    Some(mode) => {
                        let r = vec![Range {
                            upper: a.upper.clone(),
                            mode,
                        }];
                        if plan.fits(&r, remaining) {
                            plan.expect += expect;
                        }
                        r
                    }
                }
            }
            Outcome::Reopen { push } => {
                plan.push.extend(push);
                if a.mine.len() <= IDS_MAX {
                    vec![Range {
                        upper: a.upper.clone(),
                        mode: Mode::Ids(a.ids.clone()),
                    }]
                } else {
                    vec![Range {
                        upper: a.upper.clone(),
                        mode: a.fingerprint.clone(),
                    }]
                }
            }
            Outcome::Differs {
                theirs,
                floor,
                estimate,
                answered_fingerprint,
            } => respond(
                &a.upper,
                &a.mine,
                &a.ids,
                &a.fingerprint,
                theirs,
                floor,
                estimate,
                answered_fingerprint,
            ),
        };
        if plan.fits(&answer, remaining) {
            plan.add(answer);
        } else {
            // Out of budget: our fingerprint keeps the range open for the
            // next round (the peer answers it like any other).
            plan.add(vec![Range {
                upper: a.upper,
                mode: a.fingerprint,
            }]);
        }
    }
    while plan.ranges.last().is_some_and(|r| r.mode == Mode::Skip) {
        plan.ranges.pop();
    }
    debug_assert!(plan.ranges.len() <= RANGES_MAX && plan.spent <= RANGE_BYTES_MAX);
    Ok(plan)
}

impl Plan {
    fn skip(&mut self, upper: Option<KeyBound>) {
        // Consecutive skips merge into one: fewer bytes, same meaning.
        if let Some(last) = self.ranges.last_mut() {
            if last.mode == Mode::Skip {
                last.upper = upper;
                return;
            }
        }
        self.add(vec![Range {
            upper,
            mode: Mode::Skip,
        }]);
    }

    /// Whether `ranges` fit, keeping room for `(count, bytes)` of
    /// fingerprints for the ranges still to answer.
    fn fits(&self, ranges: &[Range], (count, bytes_reserved): (usize, usize)) -> bool {
        let bytes: usize = ranges.iter().map(range_bytes_max).sum();
        let syndromes: usize = ranges.iter().map(syndromes_in).sum();
        self.ranges.len() + ranges.len() + count <= RANGES_MAX
            && self.spent + bytes + bytes_reserved <= RANGE_BYTES_MAX
            && self.syndromes + syndromes <= SYNDROMES_MAX
    }

    fn add(&mut self, ranges: Vec<Range>) {
        self.spent += ranges.iter().map(range_bytes_max).sum::<usize>();
        self.syndromes += ranges.iter().map(syndromes_in).sum::<usize>();
        self.ranges.extend(ranges);
    }
}

fn syndromes_in(r: &Range) -> usize {
    match &r.mode {
        Mode::Sketch {
            syndromes, strata, ..
        } => syndromes.len() + strata.len(),
        _ => 0,
    }
}

/// Upper bound of a range's encoded size.
fn range_bytes_max(r: &Range) -> usize {
    let bound = r.upper.as_ref().map_or(0, |b| 1 + 9 + 2 + b.prefix.len());
    let words = |n: usize| 9 + 8 * n;
    2 + bound
        + match &r.mode {
            Mode::Skip => 0,
            Mode::Fingerprint { .. } => 9 + 9,
            Mode::Sketch {
                syndromes, strata, ..
            } => 9 + words(syndromes.len()) + words(strata.len()),
            Mode::Ids(v) | Mode::Want(v) | Mode::Roots(v) => words(v.len()),
        }
}

fn assess<S: EventStore>(
    store: &S,
    salt: u64,
    lower: Option<&KeyBound>,
    range: &Range,
) -> Result<Assessed, SyncError> {
    let upper = range.upper.clone();
    let whole = lower.is_none() && upper.is_none();
    let settled = |upper| Assessed {
        upper,
        mine: Vec::new(),
        ids: Vec::new(),
        outcome: Outcome::Settled,
        fingerprint: Mode::Skip,
    };
    if range.mode == Mode::Skip {
        return Ok(settled(upper));
    }
    // A fingerprint is compared with the store's cached one before any
    // key is read: equal ranges (and equal logs) cost no scan.
    let cached = match range.mode {
        Mode::Fingerprint { .. } => {
            let ours = cached_fingerprint(store, salt, whole, lower, upper.as_ref())?;
            if ours == range.mode {
                return Ok(settled(upper));
            }
            Some(ours)
        }
        _ => None,
    };
    let mine = keys_in(store, lower, upper.as_ref())?;
    let n_m = mine.len() as u64;
    let mut ids = Vec::new();
    let outcome = match &range.mode {
        Mode::Skip => Outcome::Settled,
        // Known to differ (compared above). A big difference of the
        // counts is itself the estimate: a node back from offline lacks
        // the newest events, and we answer at once with a partition of
        // our items sized for them, instead of estimation levels first
        // (one round trip less). If there are more differences than that,
        // the sketches that fail are answered with bigger ones.
        Mode::Fingerprint { count, .. } => {
            let delta = count.abs_diff(n_m);
            Outcome::Differs {
                theirs: *count,
                floor: delta.max(1),
                estimate: (delta >= OPENING_CAPACITY as u64).then_some(delta as f64),
                answered_fingerprint: true,
            }
        }
        Mode::Sketch {
            count,
            syndromes,
            strata,
        } => {
            ids = short_ids(salt, &mine);
            let capacity = syndromes.len();
            let delta = count.abs_diff(n_m);
            let diff = xor(syndromes, &sketch::sketch(&ids, capacity));
            let zero = diff.iter().all(|&w| w == 0);
            if zero && *count == n_m {
                Outcome::Settled
            } else if let Some(resolved) = (!zero)
                .then(|| resolve_sketch(&diff, &mine, &ids, *count))
                .flatten()
            {
                resolved
            } else {
                // Not decodable: at least `capacity` differences (more
                // than twice that if the sketches agree but counts do not).
                let floor = if zero {
                    2 * capacity as u64 + 1
                } else {
                    capacity as u64
                };
                let estimate = (!strata.is_empty()).then(|| {
                    let levels = strata.len() / STRATA_CAPACITY;
                    let x = xor(strata, &sketch::strata(&ids, levels));
                    sketch::estimate(floor as usize, &x).max(delta as f64)
                });
                Outcome::Differs {
                    theirs: *count,
                    floor: floor.max(delta),
                    estimate,
                    answered_fingerprint: false,
                }
            }
        }
        Mode::Ids(theirs) => {
            ids = short_ids(salt, &mine);
            let theirs: BTreeSet<u64> = theirs.iter().copied().collect();
            let ours: BTreeSet<u64> = ids.iter().copied().collect();
            let push = pick(&mine, &ids, |id| !theirs.contains(&id));
            let want: Vec<u64> = theirs.difference(&ours).copied().collect();
            Outcome::Resolved {
                push,
                expect: want.len() as u64,
                ask: (!want.is_empty()).then_some(Mode::Want(want)),
            }
        }
        Mode::Want(wanted) => {
            ids = short_ids(salt, &mine);
            let wanted: BTreeSet<u64> = wanted.iter().copied().collect();
            Outcome::Resolved {
                push: pick(&mine, &ids, |id| wanted.contains(&id)),
                ask: None,
                expect: 0,
            }
        }
        Mode::Roots(coeffs) => {
            ids = short_ids(salt, &mine);
            let push = pick(&mine, &ids, |id| sketch::eval(coeffs, id) == 0);
            if push.len() == coeffs.len() {
                Outcome::Resolved {
                    push,
                    ask: None,
                    expect: 0,
                }
            } else {
                Outcome::Reopen { push }
            }
        }
    };
    let fingerprint = match (&outcome, cached) {
        (Outcome::Settled, _) => Mode::Skip,
        (_, Some(ours)) => ours,
        (_, None) => own_fingerprint(store, salt, whole, &mine)?,
    };
    Ok(Assessed {
        upper,
        mine,
        ids,
        outcome,
        fingerprint,
    })
}

/// Our fingerprint of a range from the store's cache: the log digest for
/// the whole key space, the range's accumulator otherwise.
fn cached_fingerprint<S: EventStore>(
    store: &S,
    salt: u64,
    whole: bool,
    lower: Option<&KeyBound>,
    upper: Option<&KeyBound>,
) -> Result<Mode, SyncError> {
    if whole {
        return own_fingerprint(store, salt, true, &[]);
    }
    let from = lower.map_or(Bound::Unbounded, |b| Bound::Included(b.as_key()));
    let to = upper.map_or(Bound::Unbounded, |b| Bound::Excluded(b.as_key()));
    let acc = store.fingerprint(from, to)?;
    Ok(Mode::Fingerprint {
        count: acc.count(),
        fp: acc.fingerprint(salt),
    })
}

/// Our fingerprint of a range whose keys `mine` we hold: the log digest's
/// for the whole key space (a cached value, so `mine` is not read), the
/// sum of `mine` otherwise.
///
/// The whole key space is the one range fingerprinted with the wide
/// digest: it opens every session, where a crafted collision would
/// otherwise hide a difference in every session (see
/// [`LogDigest`](super::LogDigest)). Deeper ranges keep the 256-bit sum:
/// they are reached only after the opening found a difference, and the
/// salted sketches and id lists that follow find it.
fn own_fingerprint<S: EventStore>(
    store: &S,
    salt: u64,
    whole: bool,
    mine: &[EventKey],
) -> Result<Mode, SyncError> {
    let (count, fp) = if whole {
        let digest = store.log_digest()?;
        (digest.count(), digest.fingerprint(salt))
    } else {
        let mut acc = Accumulator::default();
        for k in mine {
            acc.add(&k.hash);
        }
        (acc.count(), acc.fingerprint(salt))
    };
    Ok(Mode::Fingerprint { count, fp })
}

/// Decodes the sketch of the difference and splits it: roots among our
/// items are what the peer lacks; the rest of the polynomial names what we
/// lack. `None` when it does not decode or does not add up with the counts.
fn resolve_sketch(diff: &[u64], mine: &[EventKey], ids: &[u64], theirs: u64) -> Option<Outcome> {
    let coeffs = sketch::decode(diff)?;
    let mut rest = coeffs.clone();
    let mut push = Vec::new();
    for (key, &id) in mine.iter().zip(ids) {
        if sketch::eval(&coeffs, id) == 0 {
            rest = sketch::divide_root(&rest, id)?;
            push.push(key.hash);
        }
    }
    // Their extra items minus ours must be the difference of the counts.
    let balance = rest.len() as i128 - push.len() as i128;
    if balance != i128::from(theirs) - mine.len() as i128 {
        return None;
    }
    Some(Outcome::Resolved {
        push,
        expect: rest.len() as u64,
        ask: (!rest.is_empty()).then_some(Mode::Roots(rest)),
    })
}

/// The answer to a range that differs and is not resolved.
///
/// - Our id list when it is no bigger than the sketch we would send, or
///   when answering a fingerprint and the list is within [`IDS_MAX`].
/// - When the peer's side is that small, our fingerprint instead: the peer
///   answers it with its list (a fingerprint is never answered with a
///   fingerprint, so two sides cannot ask each other forever).
/// - With an estimate `d` of the differences: our sketch of capacity
///   `capacity(d)` if that is at most [`SKETCH_CAPACITY_MAX`], else a
///   partition of our items into sub-ranges of about
///   [`CHILD_DIFFERENCES_TARGET`] differences each, each with a sketch.
/// - Without one: our sketch of capacity `capacity(floor)` (at most the
///   cap) with estimation levels.
///
/// Why this ends: a sketch that fails tells the receiver that there are at
/// least that many differences. So along a range, sketch capacities
/// strictly grow up to [`SKETCH_CAPACITY_MAX`]. Past it the range is
/// partitioned into at least two parts, and small parts are listed.
#[allow(clippy::too_many_arguments)]
fn respond(
    upper: &Option<KeyBound>,
    mine: &[EventKey],
    ids: &[u64],
    fingerprint: &Mode,
    theirs: u64,
    floor: u64,
    estimate: Option<f64>,
    answering_fingerprint: bool,
) -> Vec<Range> {
    let n = mine.len();
    let levels = strata_levels(n as u64 + theirs);
    // Above every capacity that failed here (the floor), so a peer that
    // fails this one too knows more: capacities grow to the cap, and past
    // it the range is partitioned.
    let first_capacity = capacity(floor as f64).min(SKETCH_CAPACITY_MAX);
    // Ids cost as many words as a sketch of that capacity.
    let listable = match estimate {
        Some(d) => capacity(d),
        None => first_capacity + STRATA_CAPACITY * levels,
    }
    .min(IDS_MAX);
    let one = |mode| {
        vec![Range {
            upper: upper.clone(),
            mode,
        }]
    };
    // A differing fingerprint is a deferred range or a request for our
    // list: list whenever the list is allowed, so a request always works.
    if n <= listable || (answering_fingerprint && n <= IDS_MAX) {
        return one(Mode::Ids(ids.to_vec()));
    }
    if !answering_fingerprint && theirs <= listable as u64 {
        return one(fingerprint.clone());
    }
    match estimate {
        Some(d) if capacity(d) <= SKETCH_CAPACITY_MAX => one(Mode::Sketch {
            count: n as u64,
            syndromes: sketch::sketch(ids, capacity(d)),
            strata: Vec::new(),
        }),
        Some(d) => partition(upper, mine, ids, d),
        None => one(Mode::Sketch {
            count: n as u64,
            syndromes: sketch::sketch(ids, first_capacity),
            strata: sketch::strata(ids, levels),
        }),
    }
}

/// Splits our items into about `d / CHILD_DIFFERENCES_TARGET` sub-ranges
/// of equal count, each answered with a sketch sized for its share of the
/// `d` differences (or its id list when that is smaller, or a sketch with
/// estimation levels when its share is still too big for one sketch).
fn partition(upper: &Option<KeyBound>, mine: &[EventKey], ids: &[u64], d: f64) -> Vec<Range> {
    let n = mine.len();
    let (buckets, cap) = partition_shape(n, d);
    let per = n.div_ceil(buckets.max(1));
    let mut out = Vec::with_capacity(buckets);
    let mut start = 0;
    while start < n {
        let end = (start + per).min(n);
        let bound = if end == n {
            upper.clone()
        } else {
            Some(KeyBound::between(&mine[end - 1], &mine[end]))
        };
        let part = &ids[start..end];
        let mode = if part.len() <= cap.min(IDS_MAX) {
            Mode::Ids(part.to_vec())
        } else if cap <= SKETCH_CAPACITY_MAX {
            Mode::Sketch {
                count: part.len() as u64,
                syndromes: sketch::sketch(part, cap),
                strata: Vec::new(),
            }
        } else {
            Mode::Sketch {
                count: part.len() as u64,
                syndromes: sketch::sketch(part, OPENING_CAPACITY),
                strata: sketch::strata(part, strata_levels(2 * part.len() as u64)),
            }
        };
        out.push(Range { upper: bound, mode });
        start = end;
    }
    out
}

/// How many parts `n` items with about `d` differences are split into, and
/// the sketch capacity each part gets.
fn partition_shape(n: usize, d: f64) -> (usize, usize) {
    let mut buckets = ((d / CHILD_DIFFERENCES_TARGET).ceil() as usize)
        .clamp(2, BUCKETS_MAX)
        .min(n);
    let mut cap = capacity(d / buckets as f64);
    if cap > SKETCH_CAPACITY_MAX {
        // Each part gets an estimating sketch. Keep the whole partition
        // within half of a message's syndromes, so it always fits in a
        // reply (a partition that never fits would be deferred forever).
        let per_part =
            OPENING_CAPACITY + STRATA_CAPACITY * strata_levels(2 * n as u64 / buckets as u64 + 2);
        buckets = buckets.min((SYNDROMES_MAX / 2 / per_part).max(2));
        cap = capacity(d / buckets as f64);
    }
    (buckets, cap)
}

/// Sketch capacity for an expected `d` differences: two standard
/// deviations of a Poisson count above it, plus the spare syndrome and
/// one more for the estimate's own error.
fn capacity(d: f64) -> usize {
    (d + 2.0 * d.sqrt()).ceil() as usize + 2
}

/// Estimation levels for a range of about `items` items (both sides): the
/// top level samples 4^-levels of them, down to about half a sketch.
fn strata_levels(items: u64) -> usize {
    let mut levels = 0;
    while levels < STRATA_LEVELS_MAX && (items >> (2 * levels)) > (STRATA_CAPACITY / 2) as u64 {
        levels += 1;
    }
    levels
}

fn xor(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn pick(mine: &[EventKey], ids: &[u64], keep: impl Fn(u64) -> bool) -> Vec<EventHash> {
    mine.iter()
        .zip(ids)
        .filter(|(_, &id)| keep(id))
        .map(|(k, _)| k.hash)
        .collect()
}

fn short_ids(salt: u64, keys: &[EventKey]) -> Vec<u64> {
    keys.iter().map(|k| short_id(salt, &k.hash)).collect()
}

/// Our keys in `[lower, upper)`; `None` is the start or the end of the key
/// space.
fn keys_in<S: EventStore>(
    store: &S,
    lower: Option<&KeyBound>,
    upper: Option<&KeyBound>,
) -> Result<Vec<EventKey>, StoreError> {
    let from = lower.map_or(Bound::Unbounded, |b| Bound::Included(b.as_key()));
    let to = upper.map_or(Bound::Unbounded, |b| Bound::Excluded(b.as_key()));
    store.keys(from, to).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` sorted keys, three to a Lamport time.
    fn sorted_keys(n: u64) -> Vec<EventKey> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&i.to_be_bytes());
                h[31] = 1;
                EventKey {
                    lamport: 1 + i / 3,
                    hash: EventHash(h),
                }
            })
            .collect()
    }

    /// A partition whose shares of the differences are too big for one
    /// sketch each still uses every bucket, and gives each part a small
    /// sketch with estimation levels sized for both sides' items of the
    /// part, so the peer can size its next answer.
    #[test]
    fn parts_too_big_for_one_sketch_carry_estimation_levels() {
        // 256 parts of 150 items; 20,000 differences is ~78 a part,
        // past SKETCH_CAPACITY_MAX once the margin is added.
        let mine = sorted_keys(BUCKETS_MAX as u64 * 150);
        let ids = short_ids(7, &mine);
        let parts = partition(&None, &mine, &ids, 20_000.0);
        assert_eq!(parts.len(), BUCKETS_MAX, "every bucket used");
        // 2 x 150 items: levels sampling 1/4, 1/16 and 1/64 of them.
        assert_eq!(strata_levels(300), 3);
        let mut total = 0;
        for (i, r) in parts.iter().enumerate() {
            let Mode::Sketch {
                count,
                syndromes,
                strata,
            } = &r.mode
            else {
                panic!("part {i}: {:?}", r.mode);
            };
            assert_eq!(*count, 150, "part {i}");
            assert_eq!(syndromes.len(), OPENING_CAPACITY, "part {i}");
            assert_eq!(strata.len(), 3 * STRATA_CAPACITY, "part {i}");
            assert_eq!(r.upper.is_none(), i + 1 == parts.len(), "part {i}");
            total += count;
        }
        assert_eq!(total, mine.len() as u64);
    }

    /// A fingerprint range with this bound (what a deferred range costs).
    fn fingerprint_range(upper: Option<KeyBound>) -> Range {
        Range {
            upper,
            mode: Mode::Fingerprint {
                count: 0,
                fp: [0; crate::core::sync::FINGERPRINT_BYTES],
            },
        }
    }

    /// A sketch range of `syndromes` syndromes and `strata` level words.
    fn sketch_range(syndromes: usize, strata: usize) -> Range {
        Range {
            upper: None,
            mode: Mode::Sketch {
                count: 0,
                syndromes: vec![1; syndromes],
                strata: vec![1; strata],
            },
        }
    }

    /// A plan fits ranges exactly up to each of a reply's three budgets,
    /// counting what it holds, the new ranges and the reserve for the
    /// ranges still to answer: ranges (RANGES_MAX), encoded bytes
    /// (RANGE_BYTES_MAX) and sketch syndromes (SYNDROMES_MAX). One over
    /// any one of them, the others within theirs, does not fit.
    #[test]
    fn a_plan_fits_ranges_up_to_each_budget_exactly() {
        let fp = fingerprint_range(None);
        let two = [fp.clone(), fp.clone()];
        // Ranges: held + new + reserved.
        let plan = Plan {
            ranges: vec![fp.clone(); RANGES_MAX - 5],
            ..Plan::default()
        };
        assert!(plan.fits(&two, (3, 0)), "exactly RANGES_MAX");
        assert!(!plan.fits(&two, (4, 0)), "one range over");
        // Bytes: spent + new + reserved.
        let reserved = 1_000;
        let plan = Plan {
            spent: RANGE_BYTES_MAX - 2 * range_bytes_max(&fp) - reserved,
            ..Plan::default()
        };
        assert!(plan.fits(&two, (0, reserved)), "exactly RANGE_BYTES_MAX");
        assert!(!plan.fits(&two, (0, reserved + 1)), "one byte over");
        // Syndromes: held + new (6 syndromes and 4 or 5 level words).
        let plan = Plan {
            syndromes: SYNDROMES_MAX - 10,
            ..Plan::default()
        };
        assert!(
            plan.fits(&[sketch_range(6, 4)], (0, 0)),
            "exactly SYNDROMES_MAX"
        );
        assert!(
            !plan.fits(&[sketch_range(6, 5)], (0, 0)),
            "one syndrome over"
        );
    }

    /// The encoded size of `r` alone, as one range of a message.
    fn encoded_len(r: &Range) -> usize {
        let msg = |r: Range| {
            SyncMessage {
                salt: 0,
                ranges: vec![r],
                events: Vec::new(),
            }
            .encode()
            .len()
        };
        // A bare Skip (no bound) is a 2-byte array: the rest is the message.
        let around = msg(Range {
            upper: None,
            mode: Mode::Skip,
        }) - 2;
        msg(r.clone()) - around
    }

    /// CBOR header bytes of a byte string of `len` bytes.
    fn bytes_header(len: usize) -> usize {
        match len {
            0..24 => 1,
            24..256 => 2,
            _ => 3,
        }
    }

    /// `range_bytes_max` bounds a range's encoded size, and is exact but
    /// for the headers of its byte strings (taken as 9 bytes each) and the
    /// Lamport delta of a bound without a prefix (taken as a 12-byte
    /// pair): every field of every mode counts, at its widest.
    #[test]
    fn range_bytes_max_is_the_encoded_size_at_its_widest() {
        let wide = Some(KeyBound {
            lamport: u64::MAX,
            prefix: vec![0xab; 32],
        });
        let bare = Some(KeyBound {
            lamport: u64::MAX,
            prefix: Vec::new(),
        });
        let words = |n: usize| vec![u64::MAX; n];
        let headers =
            |lists: &[usize]| -> usize { lists.iter().map(|&n| 9 - bytes_header(8 * n)).sum() };
        let cases = [
            (wide.clone(), Mode::Skip, 0),
            (bare.clone(), Mode::Skip, 3),
            (
                wide.clone(),
                Mode::Fingerprint {
                    count: u64::MAX,
                    fp: [0xff; 8],
                },
                0,
            ),
            (
                wide.clone(),
                Mode::Sketch {
                    count: u64::MAX,
                    syndromes: words(SKETCH_CAPACITY_MAX),
                    strata: words(STRATA_LEVELS_MAX * STRATA_CAPACITY),
                },
                headers(&[SKETCH_CAPACITY_MAX, STRATA_LEVELS_MAX * STRATA_CAPACITY]),
            ),
            (
                None,
                Mode::Sketch {
                    count: u64::MAX,
                    syndromes: words(1),
                    strata: Vec::new(),
                },
                headers(&[1, 0]),
            ),
            (wide.clone(), Mode::Ids(words(IDS_MAX)), headers(&[IDS_MAX])),
            (None, Mode::Want(Vec::new()), headers(&[0])),
            (bare, Mode::Roots(words(5)), 3 + headers(&[5])),
        ];
        for (upper, mode, slack) in cases {
            let r = Range { upper, mode };
            let (max, len) = (range_bytes_max(&r), encoded_len(&r));
            assert!(max >= len, "{r:?}: bound {max} under {len} bytes");
            assert_eq!(max - len, slack, "{r:?}: bound {max} for {len} bytes");
        }
    }

    /// A sketch is sized for `d` expected differences plus two standard
    /// deviations (2 sqrt d), rounded up, plus two.
    #[test]
    fn capacity_adds_two_deviations_and_two() {
        assert_eq!(capacity(0.0), 2);
        assert_eq!(capacity(1.0), 5); // 1 + 2, + 2
        assert_eq!(capacity(16.0), 26); // 16 + 8, + 2
        assert_eq!(capacity(24.0), 36); // 24 + 9.8 -> 34, + 2
    }

    /// A partition's parts are limited only where their estimating sketches
    /// would pass half of a message's syndromes: 8 estimation levels per
    /// part (72 syndromes with the opening sketch) allow 227 parts, which
    /// takes about 9.3 M items in one range. Below that, or while each
    /// part's share fits one sketch, the parts follow the differences.
    #[test]
    fn partition_parts_are_limited_only_past_half_a_message() {
        let big = 1e7;
        // n / 128 = 81,918 + 2 = 81,920 = 5 * 4^7: 8 levels, the limit binds.
        let at_eight_levels = 81_918 * 128;
        assert_eq!(
            partition_shape(at_eight_levels, big),
            (227, capacity(big / 227.0))
        );
        // One item-pair fewer per part: 7 levels, 64 syndromes a part, and
        // all 256 parts fit in half a message.
        let below = 81_917 * 128;
        assert_eq!(partition_shape(below, big), (256, capacity(big / 256.0)));
        // A share each part's own sketch settles (24 differences): never
        // limited, however many items.
        let settled = 256.0 * CHILD_DIFFERENCES_TARGET;
        assert_eq!(
            partition_shape(at_eight_levels, settled),
            (256, capacity(CHILD_DIFFERENCES_TARGET))
        );
        // A share of 48 needs a sketch of exactly SKETCH_CAPACITY_MAX: one
        // sketch still settles it, so no estimation levels and no limit.
        assert_eq!(capacity(48.0), SKETCH_CAPACITY_MAX);
        assert_eq!(
            partition_shape(at_eight_levels, 256.0 * 48.0),
            (256, SKETCH_CAPACITY_MAX)
        );
        assert_eq!(partition_shape(1_000, 30.0), (2, capacity(15.0)));
    }

    /// Estimation levels for `items` items: one more for each factor of 4
    /// until the top level samples at most STRATA_CAPACITY / 2 = 4 of
    /// them, and at most STRATA_LEVELS_MAX.
    #[test]
    fn strata_levels_grow_by_factors_of_four_to_the_cap() {
        for (items, levels) in [
            (0, 0),
            (4, 0),
            (5, 1),
            (19, 1),
            (20, 2),
            (300, 3),
            (320, 4),
            (5 << 28, 15),
            (5 << 30, STRATA_LEVELS_MAX),
            (u64::MAX, STRATA_LEVELS_MAX),
        ] {
            assert_eq!(strata_levels(items), levels, "{items} items");
        }
    }

    /// How a differing range is answered (`respond`), at each rule's
    /// boundary: our id list when it is no longer than the sketch we would
    /// send (its capacity plus the estimation levels), or, asked by a
    /// fingerprint, within IDS_MAX; our fingerprint when the peer's side
    /// is that small; one sketch sized for an estimate up to
    /// SKETCH_CAPACITY_MAX and a partition past it; without an estimate a
    /// sketch above the floor, with estimation levels.
    #[test]
    fn a_differing_range_is_answered_by_the_cheapest_rule() {
        let salt = 3;
        let fp = Mode::Fingerprint {
            count: 9,
            fp: [9; 8],
        };
        let answer = |n: u64, theirs: u64, estimate: Option<f64>, asked_by_fp: bool| {
            let mine = sorted_keys(n);
            let ids = short_ids(salt, &mine);
            respond(&None, &mine, &ids, &fp, theirs, 1, estimate, asked_by_fp)
        };
        let listed = |r: &[Range], n: usize| matches!(r, [Range { upper: None, mode: Mode::Ids(ids) }] if ids.len() == n);
        // Floor 1, no estimate: a capacity-5 sketch with 4 levels for
        // 1,000 + 37 items is 5 + 4 x 8 = 37 words. So 37 ids are listed
        // and 38 sketched.
        assert_eq!((capacity(1.0), strata_levels(1_037)), (5, 4));
        assert_eq!(strata_levels(1_038), 4);
        assert!(listed(&answer(37, 1_000, None, false), 37));
        let r = answer(38, 1_000, None, false);
        assert!(
            matches!(&r[..], [Range { upper: None, mode: Mode::Sketch { count: 38, syndromes, strata } }]
                if syndromes.len() == 5 && strata.len() == 4 * STRATA_CAPACITY),
            "{r:?}"
        );
        // Asked by a fingerprint: listed up to IDS_MAX, sketched past it.
        assert!(listed(&answer(38, 1_000, None, true), 38));
        assert!(listed(&answer(IDS_MAX as u64, 1_000, None, true), IDS_MAX));
        let r = answer(IDS_MAX as u64 + 1, 1_000, None, true);
        assert!(
            matches!(
                &r[..],
                [Range {
                    mode: Mode::Sketch { .. },
                    ..
                }]
            ),
            "{r:?}"
        );
        // 200 of ours against 10 of theirs (at most 5 + 3 x 8 = 29 for 210
        // items): our fingerprint, which the peer answers with its list.
        assert_eq!(strata_levels(210), 3);
        assert_eq!(
            answer(200, 10, None, false),
            vec![Range {
                upper: None,
                mode: fp.clone()
            }]
        );
        // An estimate of 30: one sketch of capacity(30) = 43, no levels.
        let r = answer(200, 1_000, Some(30.0), false);
        assert!(
            matches!(&r[..], [Range { upper: None, mode: Mode::Sketch { count: 200, syndromes, strata } }]
                if syndromes.len() == 43 && strata.is_empty()),
            "{r:?}"
        );
        // An estimate of 10,000: past SKETCH_CAPACITY_MAX, a partition
        // (256 parts of 8 items, here listed).
        let r = answer(2_000, 20_000, Some(10_000.0), false);
        assert_eq!(r.len(), 250);
        assert!(r
            .iter()
            .all(|p| matches!(&p.mode, Mode::Ids(ids) if ids.len() == 8)));
        assert!(r.last().is_some_and(|p| p.upper.is_none()));
    }

    /// A partition for `d` differences has about d / CHILD_DIFFERENCES_TARGET
    /// parts of equal count, each with a sketch sized for its share, each
    /// bounded between its last item and the next part's first.
    #[test]
    fn a_partition_sizes_its_parts_for_their_share() {
        let mine = sorted_keys(10_000);
        let ids = short_ids(7, &mine);
        // 240 differences: 10 parts of 1,000 items, each for 24.
        assert_eq!(capacity(24.0), 36);
        let parts = partition(&None, &mine, &ids, 240.0);
        assert_eq!(parts.len(), 10);
        for (i, r) in parts.iter().enumerate() {
            let (start, end) = (i * 1_000, (i + 1) * 1_000);
            let expected = Mode::Sketch {
                count: 1_000,
                syndromes: sketch::sketch(&ids[start..end], 36),
                strata: Vec::new(),
            };
            assert_eq!(r.mode, expected, "part {i}");
            let upper = (end < mine.len()).then(|| KeyBound::between(&mine[end - 1], &mine[end]));
            assert_eq!(r.upper, upper, "part {i}");
        }
    }

    /// A part is listed when its ids are no more than its sketch's
    /// capacity (and IDS_MAX), and sketched otherwise: with ~78
    /// differences a part (capacity 98, too big for one sketch), a small
    /// sketch with estimation levels for both sides' items of the part.
    #[test]
    fn parts_are_listed_only_when_the_list_is_no_longer_than_their_sketch() {
        assert_eq!(capacity(20_000.0 / BUCKETS_MAX as f64), 98);
        // (items a part, listed, levels for twice that)
        for (per, listed, levels) in [(90u64, true, 0), (110, false, 3), (160, false, 4)] {
            let mine = sorted_keys(BUCKETS_MAX as u64 * per);
            let ids = short_ids(7, &mine);
            let parts = partition(&None, &mine, &ids, 20_000.0);
            assert_eq!(parts.len(), BUCKETS_MAX, "{per} a part");
            for r in &parts {
                match &r.mode {
                    Mode::Ids(ids) => assert!(listed && ids.len() as u64 == per, "{per} a part"),
                    Mode::Sketch {
                        count,
                        syndromes,
                        strata,
                    } => {
                        assert!(!listed, "{per} a part: sketched");
                        assert_eq!(*count, per);
                        assert_eq!(syndromes.len(), OPENING_CAPACITY);
                        assert_eq!(strata.len(), levels * STRATA_CAPACITY, "{per} a part");
                    }
                    other => panic!("{per} a part: {other:?}"),
                }
            }
        }
    }

    /// A batch counts as full at EVENTS_MAX events, or once an event of the
    /// largest size might not fit after it: exactly at those bounds, and
    /// not one short of them.
    #[test]
    fn a_batch_is_full_at_its_count_or_when_a_largest_event_might_not_fit() {
        assert!(!batch_full(&[]));
        let room = EVENT_BATCH_BYTES_MAX - EVENT_BYTES_MAX;
        assert!(!batch_full(&[vec![0; room]]), "a largest event still fits");
        assert!(batch_full(&[vec![0; room + 1]]));
        assert!(!batch_full(&vec![vec![0]; EVENTS_MAX - 1]));
        assert!(batch_full(&vec![vec![0]; EVENTS_MAX]));
    }

    /// Adding ranges to a plan spends their bytes and syndromes on top of
    /// what it already holds, so the budget sees every range of the reply.
    #[test]
    fn adding_ranges_spends_their_bytes_and_syndromes() {
        let (sketch, fp) = (sketch_range(6, 8), fingerprint_range(None));
        let mut plan = Plan::default();
        plan.add(vec![sketch.clone(), fp.clone()]);
        plan.add(vec![sketch.clone()]);
        assert_eq!(
            plan.ranges,
            vec![sketch.clone(), fp.clone(), sketch.clone()]
        );
        assert_eq!(
            plan.spent,
            2 * range_bytes_max(&sketch) + range_bytes_max(&fp)
        );
        assert_eq!(plan.syndromes, 2 * (6 + 8));
    }
}
