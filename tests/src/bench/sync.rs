//! `sync`: two logs differing by `k` events, reconciled in the same run by
//! our sans-IO `SyncSession` and by negentropy-rs over the same item sets
//! (timestamp = Lamport time, id = the 32-byte event hash): round trips,
//! bytes and each side's CPU time, against the DESIGN.md §5 and issue 15
//! targets and the id floor (32 bytes per difference). One JSON line per
//! (case, implementation), `"impl": "hearth" | "negentropy"`.
//!
//! How the two are counted alike:
//! - Round trips: ours carries the events inside the session; negentropy
//!   reconciles ids only, so its `round_trips` add the fetch of the events
//!   the initiator lacks, in batches under our own per-message bounds
//!   (2,048 events, 576 KiB), after reconciliation; `reconcile_round_trips`
//!   is negentropy's messages alone. Events the responder lacks are pushed
//!   one way by both, no round trip.
//! - Bytes: `bytes_total` is every message plus, for negentropy, the fetch
//!   request (32 bytes per id) and the missing events' own bytes, which
//!   ours carries inside its messages. `bytes_beyond_missing` (total minus
//!   the missing events' bytes) is the reconciliation's own cost, ids-only
//!   for both, and the figure the plot compares.
//! - CPU per side: time inside the reconcile calls. Negentropy builds and
//!   seals a vector of items first (`setup_ms_*`, apart), where ours keeps
//!   a fingerprint index that the store updates on insert.

use std::ops::Bound;
use std::path::Path;
use std::time::Instant;

use hearth_node::core::sync::{
    FingerprintIndex, Mode, SyncMessage, SyncSession, EVENTS_MAX, EVENT_BATCH_BYTES_MAX,
    MESSAGE_BYTES_MAX,
};
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::VerifiedEvent;
use negentropy::{Id, Negentropy, NegentropyStorageBase, NegentropyStorageVector};
use serde_json::{json, Value};

use super::plot::{self, Axis, Series, Stroke};
use super::{emit, figure, progress, round, sign_posts};
use crate::identity;
use crate::mesh::Community;

/// Negentropy's frame size limit: our own message bound (1 MiB), so both
/// work under the same cap. (Negentropy's default, 0, is unbounded; at the
/// sizes measured here its messages stay under 1 MiB up to ~30,000
/// differences, so the two agree there.)
const NEGENTROPY_FRAME_BYTES: u64 = MESSAGE_BYTES_MAX as u64;

/// Round trips past which a reconciliation counts as stuck (ours stops
/// itself at 64 rounds with open ranges; negentropy has no such bound).
const ROUND_TRIPS_MAX: u32 = 4096;

/// Where the differences lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every `(n + k) / k`-th event, on one side or the other in turn.
    Scattered,
    /// The newest `k` events, missing on the initiator (a node back from
    /// offline).
    Tail,
}

impl Layout {
    fn describe(self) -> &'static str {
        match self {
            Layout::Scattered => "scattered, both ways",
            Layout::Tail => "newest missing on the initiator",
        }
    }
}

/// Which reconciliation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Hearth,
    Negentropy,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Hearth => "hearth",
            Impl::Negentropy => "negentropy",
        }
    }
}

/// One (case, implementation) as printed, for the plot.
#[derive(Debug, Clone)]
pub struct Measured {
    pub imp: Impl,
    pub layout: Layout,
    pub differences: usize,
    pub round_trips: u32,
    pub bytes_beyond_missing: usize,
    /// The busier side's CPU time inside the reconcile calls.
    pub cpu_ms_max: f64,
}

/// The cases issue 15 sets targets for: equal logs, 1 difference, 5,000
/// scattered, 5,000 newest missing.
pub const ISSUE_CASES: [(Layout, usize); 4] = [
    (Layout::Scattered, 0),
    (Layout::Scattered, 1),
    (Layout::Scattered, 5_000),
    (Layout::Tail, 5_000),
];

/// The `--plot` sweep: differences from none to a fifth of a 100k log,
/// scattered and at the tail.
pub const SWEEP: [usize; 7] = [0, 1, 10, 100, 1_000, 5_000, 20_000];

/// The sweep's cases on logs of `n` events: [`SWEEP`] up to a fifth of
/// the log (a `--quick` run's 10k logs stop at 1,000), scattered and at
/// the tail (where 0 differences would repeat the scattered case).
pub fn sweep_cases(n: usize) -> Vec<(Layout, usize)> {
    let ks = || SWEEP.iter().copied().filter(move |&k| k <= n / 5);
    let mut out: Vec<(Layout, usize)> = ks().map(|k| (Layout::Scattered, k)).collect();
    out.extend(ks().filter(|&k| k > 0).map(|k| (Layout::Tail, k)));
    out
}

/// Runs `cases` (layout, differences) on logs of `n` events, both
/// implementations each, over one set of signed events (signing is the
/// slow part: about a minute per million events on two cores).
pub fn cases(n: usize, cases: &[(Layout, usize)]) -> anyhow::Result<Vec<Measured>> {
    let k_max = cases.iter().map(|c| c.1).max().unwrap_or(0);
    let member = identity(2);
    let c = Community::new(std::slice::from_ref(&member))?;
    progress(format_args!("sync: signing {} events", n + k_max));
    let events = sign_posts(&member, c.id(), 100, n + k_max)?;
    let mut out = Vec::new();
    for &(layout, k) in cases {
        progress(format_args!("sync: n = {n}, {k} differences, {layout:?}"));
        let case = Case::new(&events[..n + k], n, k, layout);
        let ours = hearth(&case)?;
        out.push(case.emit(Impl::Hearth, &ours));
        let theirs = negentropy(&case)?;
        out.push(case.emit(Impl::Negentropy, &theirs));
    }
    Ok(out)
}

/// Which log holds an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Both,
    Initiator,
    Responder,
}

/// One case: the events and which side holds each.
struct Case<'a> {
    events: &'a [VerifiedEvent],
    sides: Vec<Side>,
    n: usize,
    k: usize,
    layout: Layout,
    /// Bytes of the events one side lacks (both ways).
    diff_bytes: usize,
    /// Bytes of all `n + k` events.
    event_bytes: usize,
    only_initiator: usize,
    only_responder: usize,
}

impl<'a> Case<'a> {
    fn new(events: &'a [VerifiedEvent], n: usize, k: usize, layout: Layout) -> Case<'a> {
        let stride = (n + k).checked_div(k).unwrap_or(usize::MAX);
        let mut diff = 0usize;
        let sides: Vec<Side> = (0..events.len())
            .map(|i| match layout {
                Layout::Tail if i >= n => Side::Responder,
                Layout::Scattered if k > 0 && i % stride == 0 && diff < k => {
                    diff += 1;
                    if diff % 2 == 1 {
                        Side::Initiator
                    } else {
                        Side::Responder
                    }
                }
                _ => Side::Both,
            })
            .collect();
        let mut case = Case {
            events,
            sides,
            n,
            k,
            layout,
            diff_bytes: 0,
            event_bytes: 0,
            only_initiator: 0,
            only_responder: 0,
        };
        for (e, side) in events.iter().zip(&case.sides) {
            let len = e.bytes().len();
            case.event_bytes += len;
            match side {
                Side::Both => {}
                Side::Initiator => {
                    case.diff_bytes += len;
                    case.only_initiator += 1;
                }
                Side::Responder => {
                    case.diff_bytes += len;
                    case.only_responder += 1;
                }
            }
        }
        case
    }

    /// The events `who` holds.
    fn held_by(&self, who: Side) -> impl Iterator<Item = &'a VerifiedEvent> + '_ {
        self.events
            .iter()
            .zip(&self.sides)
            .filter(move |(_, &s)| s == Side::Both || s == who)
            .map(|(e, _)| e)
    }

    /// Prints one JSON line for `imp`'s run and returns it for the plot.
    fn emit(&self, imp: Impl, r: &Run) -> Measured {
        let total = r.bytes_total;
        let beyond = total.saturating_sub(self.diff_bytes);
        let (ms_a, ms_b) = (r.cpu_ns.0 as f64 / 1e6, r.cpu_ns.1 as f64 / 1e6);
        let (target, ratio, pass) = match self.target(r, ms_a.max(ms_b)) {
            Some((t, ratio, pass)) => (Some(t), Some(round(ratio, 3)), Some(pass)),
            None => (None, None, None),
        };
        let mut fields = json!({
            "impl": imp.name(),
            "log_events": self.n,
            "differences": self.k,
            "layout": self.layout.describe(),
            "round_trips": r.round_trips,
            "reconcile_round_trips": r.reconcile_round_trips,
            "bytes_total": total,
            "bytes_missing_events": self.diff_bytes,
            "bytes_beyond_missing": beyond,
            "ratio_to_missing_events": round(total as f64 / self.diff_bytes.max(1) as f64, 2),
            "reconcile_bytes_x_id_floor": round(beyond as f64 / (32.0 * self.k.max(1) as f64), 1),
            "cpu_ms_initiator": round(ms_a, 3),
            "cpu_ms_responder": round(ms_b, 3),
            "largest_message_bytes": r.largest_message,
            "fingerprint_index_bytes": r.index_bytes,
            "event_bytes": self.event_bytes,
            "index_x_event_bytes": round(r.index_bytes as f64 / self.event_bytes.max(1) as f64, 3),
            "seconds": round(r.seconds, 3),
            "target": target,
            "ratio_to_target": ratio,
            "pass": pass,
        });
        if let (Some(obj), Some(extra)) = (fields.as_object_mut(), r.extra.as_object()) {
            for (key, value) in extra {
                obj.insert(key.clone(), value.clone());
            }
        }
        emit(figure("sync", fields));
        Measured {
            imp,
            layout: self.layout,
            differences: self.k,
            round_trips: r.round_trips,
            bytes_beyond_missing: beyond,
            cpu_ms_max: ms_a.max(ms_b),
        }
    }

    /// Issue 15's target for this case, if it sets one: its words, the
    /// largest of its parts as measured / bound (<= 1 meets it), and
    /// whether it is met. Equal logs: the ratio is the CPU part (the
    /// single round trip is a condition).
    fn target(&self, r: &Run, cpu_ms_max: f64) -> Option<(&'static str, f64, bool)> {
        let total = r.bytes_total as f64;
        let diff = self.diff_bytes.max(1) as f64;
        let beyond = r.bytes_total.saturating_sub(self.diff_bytes) as f64;
        let reconcile = f64::from(r.reconcile_round_trips);
        let (words, ratio, extra_ok) = match (self.layout, self.k) {
            (Layout::Scattered, 0) => (
                "equal logs: 1 round trip and <= 2 ms CPU per side",
                cpu_ms_max / 2.0,
                r.round_trips == 1,
            ),
            (Layout::Scattered, 1) => (
                "<= 2 round trips and <= 2048 bytes beyond the missing event",
                (f64::from(r.round_trips) / 2.0).max(beyond / 2048.0),
                true,
            ),
            (Layout::Scattered, 5_000) => (
                "<= 3 reconciling round trips and bytes <= 1.3x the missing events",
                (reconcile / 3.0).max(total / (1.3 * diff)),
                true,
            ),
            (Layout::Tail, 5_000) => (
                "<= 3 reconciling round trips and bytes <= 1.1x the missing events",
                (reconcile / 3.0).max(total / (1.1 * diff)),
                true,
            ),
            _ => return None,
        };
        Some((words, ratio, extra_ok && ratio <= 1.0))
    }
}

/// One implementation's run of a case.
struct Run {
    round_trips: u32,
    reconcile_round_trips: u32,
    bytes_total: usize,
    /// CPU inside the reconcile calls: (initiator, responder).
    cpu_ns: (u64, u64),
    /// Heap bytes of the per-log structure sync works from.
    index_bytes: usize,
    /// The biggest message either side sent.
    largest_message: usize,
    seconds: f64,
    /// Fields only this implementation has.
    extra: Value,
}

/// Runs `f` and adds the time it took to `total_ns`. Each side's calls run
/// on this one thread and do no I/O (memory stores), so this is that
/// side's CPU time, or a little more when the machine is busy. (Linux's
/// per-thread schedstat counter only moves at scheduler ticks, too coarse
/// for the microseconds an equal-log session takes.)
fn timed<T>(total_ns: &mut u64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    *total_ns += t.elapsed().as_nanos() as u64;
    out
}

/// Whether a message leaves a range open (asks or answers something).
fn open(m: &SyncMessage) -> bool {
    m.ranges.iter().any(|r| r.mode != Mode::Skip)
}

/// Our sync: the sans-IO sessions over two memory stores.
fn hearth(case: &Case<'_>) -> anyhow::Result<Run> {
    let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
    for e in case.held_by(Side::Initiator) {
        a.insert(e)?;
    }
    for e in case.held_by(Side::Responder) {
        b.insert(e)?;
    }
    // The fingerprint cache a store keeps, measured on a copy built the
    // same way (the stores do not expose theirs).
    let mut index = FingerprintIndex::new();
    for key in a.keys(Bound::Unbounded, Bound::Unbounded) {
        index.insert(key?);
    }
    let index_bytes = index.heap_bytes();
    drop(index);

    let (mut cpu_a, mut cpu_b) = (0u64, 0u64);
    let t = Instant::now();
    let (mut sa, first) = timed(&mut cpu_a, || SyncSession::initiate(&a, 0x5eed))?;
    let mut sb = SyncSession::default();
    let mut msg = first.encode();
    let mut msg_open = open(&first);
    let (mut sent_a, mut sent_b, mut rounds, mut reconcile_rounds) =
        (msg.len(), 0usize, 0u32, 0u32);
    let mut largest = msg.len();
    loop {
        rounds += 1;
        anyhow::ensure!(rounds <= ROUND_TRIPS_MAX, "our sync did not finish");
        let reply = timed(&mut cpu_b, || sb.handle(&b, &msg))?;
        for e in sb.take_received() {
            b.insert(&VerifiedEvent::decode(&e)?)?;
        }
        // A round trip that carries ranges, not only events.
        reconcile_rounds += u32::from(msg_open || open(&reply));
        let rb = reply.encode();
        sent_b += rb.len();
        largest = largest.max(rb.len());
        let next = timed(&mut cpu_a, || sa.handle(&a, &rb))?;
        for e in sa.take_received() {
            a.insert(&VerifiedEvent::decode(&e)?)?;
        }
        // As the node does: over when neither side has anything left,
        // without a closing exchange of empty messages.
        if sa.finished(&next) {
            break;
        }
        msg_open = open(&next);
        msg = next.encode();
        sent_a += msg.len();
        largest = largest.max(msg.len());
    }
    let seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(a.len() == b.len(), "our sync did not converge");
    Ok(Run {
        round_trips: rounds,
        reconcile_round_trips: reconcile_rounds,
        bytes_total: sent_a + sent_b,
        cpu_ns: (cpu_a, cpu_b),
        index_bytes,
        largest_message: largest,
        seconds,
        extra: json!({
            "negentropy_x_id_floor_design_table": match case.k { 0 | 1 => 55.0, 100 => 34.0, _ => 15.0 },
        }),
    })
}

/// Negentropy-rs over the same items: each side's sealed vector of
/// (Lamport time, event hash), then the initiator's `initiate` and
/// `reconcile_with_ids` against the responder's `reconcile` until the
/// initiator has nothing more to send. Checks that it found exactly the
/// differences.
fn negentropy(case: &Case<'_>) -> anyhow::Result<Run> {
    let (mut setup_a, mut setup_b) = (0u64, 0u64);
    let storage_a = timed(&mut setup_a, || storage(case, Side::Initiator))?;
    let storage_b = timed(&mut setup_b, || storage(case, Side::Responder))?;
    let items = storage_a.size()?;
    let mut a = Negentropy::borrowed(&storage_a, NEGENTROPY_FRAME_BYTES)?;
    let mut b = Negentropy::borrowed(&storage_b, NEGENTROPY_FRAME_BYTES)?;

    let (mut cpu_a, mut cpu_b) = (0u64, 0u64);
    let (mut have, mut need) = (Vec::new(), Vec::new());
    let t = Instant::now();
    let mut msg = timed(&mut cpu_a, || a.initiate())?;
    let (mut sent_a, mut sent_b, mut messages) = (msg.len(), 0usize, 0u32);
    let mut largest = msg.len();
    loop {
        messages += 1;
        anyhow::ensure!(messages <= ROUND_TRIPS_MAX, "negentropy did not finish");
        let reply = timed(&mut cpu_b, || b.reconcile(&msg))?;
        sent_b += reply.len();
        largest = largest.max(reply.len());
        match timed(&mut cpu_a, || {
            a.reconcile_with_ids(&reply, &mut have, &mut need)
        })? {
            Some(next) => {
                sent_a += next.len();
                largest = largest.max(next.len());
                msg = next;
            }
            None => break,
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        have.len() == case.only_initiator && need.len() == case.only_responder,
        "negentropy found {} + {} differences, the case has {} + {}",
        have.len(),
        need.len(),
        case.only_initiator,
        case.only_responder
    );
    // The events the initiator lacks, fetched after reconciliation in
    // batches under our own message bounds.
    let mut fetches = 0u32;
    let (mut batch_events, mut batch_bytes) = (0usize, 0usize);
    for (e, _) in case
        .events
        .iter()
        .zip(&case.sides)
        .filter(|(_, &s)| s == Side::Responder)
    {
        let len = e.bytes().len();
        if batch_events == 0
            || batch_events == EVENTS_MAX
            || batch_bytes + len > EVENT_BATCH_BYTES_MAX
        {
            fetches += 1;
            batch_events = 0;
            batch_bytes = 0;
        }
        batch_events += 1;
        batch_bytes += len;
    }
    let fetch_request = 32 * need.len();
    Ok(Run {
        round_trips: messages + fetches,
        reconcile_round_trips: messages,
        bytes_total: sent_a + sent_b + fetch_request + case.diff_bytes,
        cpu_ns: (cpu_a, cpu_b),
        index_bytes: items * std::mem::size_of::<negentropy::Item>(),
        largest_message: largest,
        seconds,
        extra: json!({
            "setup_ms_initiator": round(setup_a as f64 / 1e6, 3),
            "setup_ms_responder": round(setup_b as f64 / 1e6, 3),
            "frame_size_limit": NEGENTROPY_FRAME_BYTES,
            "bytes_reconcile_messages": sent_a + sent_b,
            "bytes_fetch_request": fetch_request,
            "fetch_round_trips": fetches,
            "counted": "round_trips = negentropy messages + fetches of the initiator's missing events (batches of <= 2,048 events, 576 KiB); bytes_total = messages + 32 B per fetched id + the missing events' bytes",
        }),
    })
}

/// The sealed negentropy storage of the events `who` holds.
fn storage(case: &Case<'_>, who: Side) -> anyhow::Result<NegentropyStorageVector> {
    let mut s = NegentropyStorageVector::with_capacity(case.events.len());
    for e in case.held_by(who) {
        let key = e.key();
        s.insert(key.lamport, Id::from_byte_array(key.hash.0))?;
    }
    s.seal()?;
    Ok(s)
}

/// The `--plot` charts of a sweep at `n` events: round trips, bytes beyond
/// the missing events (with the id floor) and the busier side's CPU,
/// against the number of differences (log axis; 0 is left out).
/// Negentropy's lines are drawn first and wider, ours on top, so both
/// show where they coincide.
pub fn plot(dir: &Path, n: usize, measured: &[Measured]) -> anyhow::Result<()> {
    let series = |y: &dyn Fn(&Measured) -> f64| -> Vec<Series> {
        [
            (
                Impl::Negentropy,
                Layout::Scattered,
                plot::VERMILION,
                Stroke::Solid,
            ),
            (Impl::Negentropy, Layout::Tail, plot::ORANGE, Stroke::Dashed),
            (Impl::Hearth, Layout::Scattered, plot::BLUE, Stroke::Solid),
            (Impl::Hearth, Layout::Tail, plot::SKY, Stroke::Dashed),
        ]
        .into_iter()
        .map(|(imp, layout, color, stroke)| Series {
            label: format!(
                "{}, {}",
                match imp {
                    Impl::Hearth => "hearth",
                    Impl::Negentropy => "negentropy-rs",
                },
                match layout {
                    Layout::Scattered => "scattered both ways",
                    Layout::Tail => "newest missing",
                }
            ),
            color,
            stroke,
            width: if imp == Impl::Negentropy { 3 } else { 2 },
            marker: if imp == Impl::Negentropy {
                plot::Marker::Triangle
            } else {
                plot::Marker::Circle
            },
            points: measured
                .iter()
                .filter(|m| m.imp == imp && m.layout == layout && m.differences > 0)
                .map(|m| (m.differences as f64, y(m)))
                .collect(),
        })
        .collect()
    };
    let log = |label| Axis {
        label,
        log: true,
        integer: false,
    };
    let x = log("differences (log)");
    let size = plot::number(&(n as f64));
    plot::lines(
        &dir.join("sync_round_trips.svg"),
        &format!("Sync round trips, {size} events per log (negentropy: + event fetches)"),
        x,
        Axis {
            label: "round trips",
            log: false,
            integer: true,
        },
        &series(&|m| f64::from(m.round_trips)),
    )?;
    let mut bytes = series(&|m| m.bytes_beyond_missing as f64);
    let mut ks: Vec<usize> = measured
        .iter()
        .map(|m| m.differences)
        .filter(|&k| k > 0)
        .collect();
    ks.sort_unstable();
    ks.dedup();
    bytes.push(Series {
        label: "id floor (32 B per difference)".into(),
        color: plot::GREY,
        stroke: Stroke::Dashed,
        width: 1,
        marker: plot::Marker::None,
        points: ks.iter().map(|&k| (k as f64, 32.0 * k as f64)).collect(),
    });
    plot::lines(
        &dir.join("sync_bytes.svg"),
        &format!("Sync bytes beyond the missing events, {size} events per log"),
        x,
        log("bytes (log)"),
        &bytes,
    )?;
    plot::lines(
        &dir.join("sync_cpu.svg"),
        &format!("Sync CPU of the busier side, {size} events per log"),
        x,
        log("ms inside reconcile calls (log)"),
        &series(&|m| m.cpu_ms_max),
    )?;
    Ok(())
}
