//! `sync`: two logs differing by `k` events, reconciled through the sans-IO
//! `SyncSession`: round trips and bytes, against the DESIGN.md §5 targets
//! and the id floor (32 bytes per difference).

use std::time::Instant;

use hearth_node::core::sync::SyncSession;
use hearth_node::store::{EventStore, MemoryStore};
use hearth_proto::VerifiedEvent;
use serde_json::json;

use super::{emit, figure, sign_posts};
use crate::identity;
use crate::mesh::Community;

/// Sync of two `n`-event logs differing by `k` events (split across both
/// sides): round trips and bytes, against the DESIGN.md §5 targets and the
/// id floor (32 bytes per difference).
pub fn sync(n: usize, k: usize) -> anyhow::Result<()> {
    let member = identity(2);
    let c = Community::new(std::slice::from_ref(&member))?;
    let events = sign_posts(&member, c.id(), 100, n + k)?;
    let (mut a, mut b) = (MemoryStore::new(), MemoryStore::new());
    let stride = (n + k).checked_div(k).unwrap_or(usize::MAX);
    let (mut diff, mut diff_bytes) = (0usize, 0usize);
    for (i, e) in events.iter().enumerate() {
        if k > 0 && i % stride == 0 && diff < k {
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
    let t = Instant::now();
    let (mut sa, first) = SyncSession::initiate(&a, 0x5eed)?;
    let mut sb = SyncSession::default();
    let mut msg = first.encode();
    let (mut sent_a, mut sent_b, mut rounds) = (msg.len(), 0usize, 0u32);
    loop {
        rounds += 1;
        let reply = sb.handle(&b, &msg)?;
        for e in sb.take_received() {
            b.insert(&VerifiedEvent::decode(&e)?)?;
        }
        let rb = reply.encode();
        sent_b += rb.len();
        let next = sa.handle(&a, &rb)?;
        for e in sa.take_received() {
            a.insert(&VerifiedEvent::decode(&e)?)?;
        }
        if next.is_empty() && reply.is_empty() && sa.is_done() {
            break;
        }
        msg = next.encode();
        sent_a += msg.len();
    }
    let elapsed = t.elapsed().as_secs_f64();
    anyhow::ensure!(a.len() == b.len(), "sync did not converge");
    let total = sent_a + sent_b;
    let beyond = total.saturating_sub(diff_bytes);
    let (target, pass) = if k <= 1 {
        (
            "<= 3 round trips and <= 2048 bytes beyond the missing event",
            rounds <= 3 && beyond <= 2048,
        )
    } else {
        (
            "bytes <= 1.3x the missing events",
            total as f64 <= 1.3 * diff_bytes as f64,
        )
    };
    emit(figure(
        "sync",
        json!({
            "log_events": n,
            "differences": k,
            "round_trips": rounds,
            "bytes_total": total,
            "bytes_missing_events": diff_bytes,
            "bytes_beyond_missing": beyond,
            "ratio_to_missing_events": (total as f64 / diff_bytes.max(1) as f64 * 100.0).round() / 100.0,
            "reconcile_bytes_x_id_floor": (beyond as f64 / (32.0 * k.max(1) as f64) * 10.0).round() / 10.0,
            "negentropy_x_id_floor_design_table": if k <= 1 { 55.0 } else if k == 100 { 34.0 } else { 15.0 },
            "seconds": (elapsed * 1000.0).round() / 1000.0,
            "target": target,
            "pass": pass,
        }),
    ));
    Ok(())
}
