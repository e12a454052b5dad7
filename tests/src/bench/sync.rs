//! `sync`: two logs differing by `k` events, reconciled through the sans-IO
//! `SyncSession`: round trips, bytes and each side's CPU time, against the
//! DESIGN.md §5 and issue 15 targets and the id floor (32 bytes per
//! difference).

use std::ops::Bound;
use std::time::Instant;

use hearth_node::core::sync::{FingerprintIndex, Mode, SyncMessage, SyncSession};
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::VerifiedEvent;
use serde_json::json;

use super::{emit, figure, progress, round, sign_posts};
use crate::identity;
use crate::mesh::Community;

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

/// Sync of two `n`-event logs differing by `k` events (split across both
/// sides): round trips, bytes and CPU per side, against the DESIGN.md §5
/// and issue 15 targets and the id floor (32 bytes per difference).
pub fn sync(n: usize, k: usize) -> anyhow::Result<()> {
    run(n, k, false)
}

/// A node back from offline: the initiator lacks the newest `k` of `n + k`
/// events (issue 15: <= 3 round trips, bytes <= 1.1x the missing events).
pub fn sync_tail(n: usize, k: usize) -> anyhow::Result<()> {
    run(n, k, true)
}

fn run(n: usize, k: usize, tail: bool) -> anyhow::Result<()> {
    let member = identity(2);
    let c = Community::new(std::slice::from_ref(&member))?;
    progress(format_args!("sync: signing {} events", n + k));
    let events = sign_posts(&member, c.id(), 100, n + k)?;
    let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
    let stride = (n + k).checked_div(k).unwrap_or(usize::MAX);
    let (mut diff, mut diff_bytes, mut event_bytes) = (0usize, 0usize, 0usize);
    for (i, e) in events.iter().enumerate() {
        event_bytes += e.bytes().len();
        if tail && i >= n {
            diff_bytes += e.bytes().len();
            b.insert(e)?;
            diff += 1;
        } else if !tail && k > 0 && i % stride == 0 && diff < k {
            diff_bytes += e.bytes().len();
            if diff % 2 == 0 {
                a.insert(e)?;
            } else {
                b.insert(e)?;
            }
            diff += 1;
        } else {
            a.insert(e)?;
            b.insert(e)?;
        }
    }
    drop(events);
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
    loop {
        rounds += 1;
        let reply = timed(&mut cpu_b, || sb.handle(&b, &msg))?;
        for e in sb.take_received() {
            b.insert(&VerifiedEvent::decode(&e)?)?;
        }
        // A round trip that carries ranges, not only events.
        reconcile_rounds += u32::from(msg_open || open(&reply));
        let rb = reply.encode();
        sent_b += rb.len();
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
    }
    let elapsed = t.elapsed().as_secs_f64();
    anyhow::ensure!(a.len() == b.len(), "sync did not converge");
    let total = sent_a + sent_b;
    let beyond = total.saturating_sub(diff_bytes);
    let (ms_a, ms_b) = (cpu_a as f64 / 1e6, cpu_b as f64 / 1e6);
    let (target, pass) = match k {
        _ if tail => (
            "<= 3 reconciling round trips and bytes <= 1.1x the missing events",
            reconcile_rounds <= 3 && total as f64 <= 1.1 * diff_bytes as f64,
        ),
        0 => (
            "equal logs: 1 round trip and <= 2 ms CPU per side",
            rounds == 1 && ms_a <= 2.0 && ms_b <= 2.0,
        ),
        1 => (
            "<= 2 round trips and <= 2048 bytes beyond the missing event",
            rounds <= 2 && beyond <= 2048,
        ),
        _ => (
            "bytes <= 1.3x the missing events",
            total as f64 <= 1.3 * diff_bytes as f64,
        ),
    };
    emit(figure(
        "sync",
        json!({
            "log_events": n,
            "differences": k,
            "layout": if tail { "newest missing on the initiator" } else { "scattered, both ways" },
            "round_trips": rounds,
            "reconcile_round_trips": reconcile_rounds,
            "bytes_total": total,
            "bytes_missing_events": diff_bytes,
            "bytes_beyond_missing": beyond,
            "ratio_to_missing_events": round(total as f64 / diff_bytes.max(1) as f64, 2),
            "reconcile_bytes_x_id_floor": round(beyond as f64 / (32.0 * k.max(1) as f64), 1),
            "negentropy_x_id_floor_design_table": match k { 0 | 1 => 55.0, 100 => 34.0, _ => 15.0 },
            "cpu_ms_initiator": round(ms_a, 3),
            "cpu_ms_responder": round(ms_b, 3),
            "fingerprint_index_bytes": index_bytes,
            "event_bytes": event_bytes,
            "index_x_event_bytes": round(index_bytes as f64 / event_bytes.max(1) as f64, 3),
            "seconds": round(elapsed, 3),
            "target": target,
            "pass": pass,
        }),
    ));
    Ok(())
}
