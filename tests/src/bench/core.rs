//! Single-node figures: ingest, replay, list, sync.

use std::ops::Bound;
use std::time::Instant;

use hearth_node::core::sync::SyncSession;
use hearth_node::core::views::ListQuery;
use hearth_node::core::{Config, EventLog, Node};
use hearth_node::store::{EventStore, MemoryStore, SledStore};
use hearth_proto::{Category, VerifiedEvent};
use serde_json::json;

use super::{emit, figure, percentile, rate, sign_posts};
use crate::identity;
use crate::mesh::Community;

/// Ingest (decode + verify + store in sled + view apply) against the
/// single-core `verify_strict` rate of the same events. Target >= 0.6.
pub fn ingest(n: usize) -> anyhow::Result<()> {
    let member = identity(2);
    let c = Community::new(std::slice::from_ref(&member))?;
    let events = sign_posts(&member, c.id(), 100, n)?;
    let verify_rate = rate(events.len(), |i| {
        let e = &events[i];
        let ok = hearth_proto::SignedEvent::decode(e.bytes()).map(|s| s.verify().is_ok());
        assert!(matches!(ok, Ok(true)));
    });
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(&dir.path().join("store"))?;
    let mut node = Node::new(identity(50), &c.genesis, store, Config::default(), 1)?;
    for h in &c.history {
        node.log_mut().append_received(h.clone())?;
    }
    let bytes: Vec<&[u8]> = events.iter().map(VerifiedEvent::bytes).collect();
    let t = Instant::now();
    for b in &bytes {
        node.receive(b, hearth_node::core::Source::File)?;
    }
    node.log_mut().flush()?;
    let ingest_rate = n as f64 / t.elapsed().as_secs_f64();
    let ratio = ingest_rate / verify_rate;
    // Breakdown: the same events, already verified, through the log alone
    // (store + view apply) on a second node.
    let dir2 = tempfile::tempdir()?;
    let mut node2 = Node::new(
        identity(51),
        &c.genesis,
        SledStore::open(&dir2.path().join("store"))?,
        Config::default(),
        1,
    )?;
    for h in &c.history {
        node2.log_mut().append_received(h.clone())?;
    }
    let verified: Vec<VerifiedEvent> = bytes
        .iter()
        .map(|b| VerifiedEvent::decode(b))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    for e in verified {
        node2.log_mut().append_received(e)?;
    }
    node2.log_mut().flush()?;
    let log_rate = n as f64 / t.elapsed().as_secs_f64();
    emit(figure(
        "ingest",
        json!({
            "events": n,
            "events_per_s": ingest_rate.round(),
            "log_only_events_per_s": log_rate.round(),
            "ceiling": "decode_and_verify_strict_per_s_single_core",
            "ceiling_value": verify_rate.round(),
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "target_ratio_min": 0.6,
            "pass": ratio >= 0.6,
        }),
    ));
    Ok(())
}

/// Replay of `n` events from sled into fresh views, beside the raw scan +
/// decode rate and the key-only scan rate of the same store. Target <= 3 s
/// for 1M events.
pub fn replay(n: usize) -> anyhow::Result<()> {
    let member = identity(2);
    let c = Community::new(std::slice::from_ref(&member))?;
    eprintln!("replay: signing {n} events");
    let events = sign_posts(&member, c.id(), 100, n)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store");
    {
        let mut store = SledStore::open(&path)?;
        store.insert(&c.genesis)?;
        store.put_meta("community", &c.id().0)?;
        for e in c.history.iter().chain(events.iter()) {
            store.insert(e)?;
        }
        store.flush()?;
    }
    drop(events);
    eprintln!("replay: store written");
    let store = SledStore::open(&path)?;
    let t = Instant::now();
    let keys = store.keys(Bound::Unbounded, Bound::Unbounded).count();
    let keys_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut decoded = 0usize;
    for e in store.range(Bound::Unbounded, Bound::Unbounded) {
        e?;
        decoded += 1;
    }
    let scan_decode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (log, report) = EventLog::open(store, &c.genesis)?;
    let replay_s = t.elapsed().as_secs_f64();
    assert_eq!(report.snapshot_arrival, None);
    let scale = 1_000_000.0 / n as f64;
    emit(figure(
        "replay",
        json!({
            "events": decoded,
            "replay_s": (replay_s * 1000.0).round() / 1000.0,
            "replay_s_per_million": (replay_s * scale * 1000.0).round() / 1000.0,
            "target_s_per_million": 3.0,
            "ratio_to_target": (replay_s * scale / 3.0 * 1000.0).round() / 1000.0,
            "ceiling": "scan_and_decode_s (same store, same run)",
            "ceiling_value": (scan_decode_s * 1000.0).round() / 1000.0,
            "ratio": (replay_s / scan_decode_s * 1000.0).round() / 1000.0,
            "keys_scan_s": (keys_s * 1000.0).round() / 1000.0,
            "keys": keys,
            "posts": log.views().market.post_count(),
            "pass": replay_s * scale <= 3.0,
        }),
    ));
    Ok(())
}

/// `list` latency with `n` live posts: p50/p99/max over 10,000 mixed
/// queries, beside a raw BTreeMap walk of 50 entries. Target p99 <= 1 ms.
pub fn list(n: usize) -> anyhow::Result<()> {
    let member = identity(2);
    let c = Community::new(std::slice::from_ref(&member))?;
    let events = sign_posts(&member, c.id(), 100, n)?;
    let mut node = c.node(&identity(50), 1)?;
    for e in events {
        node.log_mut().append_received(e)?;
    }
    let now = crate::FIXED_NOW_MS;
    let market = &node.views().market;
    let queries = [
        ListQuery::default(),
        ListQuery {
            category: Some(Category::Offer),
            ..Default::default()
        },
        ListQuery {
            tags: vec!["water".into()],
            ..Default::default()
        },
        ListQuery {
            since_lamport: Some(100 + n as u64 / 2),
            ..Default::default()
        },
        ListQuery {
            category: Some(Category::Info),
            tags: vec!["tools".into()],
            ..Default::default()
        },
    ];
    let mut samples = Vec::with_capacity(10_000);
    let mut returned = 0usize;
    for i in 0..10_000 {
        let q = &queries[i % queries.len()];
        let t = Instant::now();
        returned += market.list(q, now).len();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let map: std::collections::BTreeMap<u64, u64> = (0..n as u64).map(|i| (i, i)).collect();
    let mut raw = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let t = Instant::now();
        let s: u64 = map
            .range((i * 7) % n as u64..)
            .take(50)
            .map(|(_, v)| *v)
            .sum();
        std::hint::black_box(s);
        raw.push(t.elapsed().as_secs_f64() * 1e6);
    }
    raw.sort_by(f64::total_cmp);
    let p99 = percentile(&samples, 99.0);
    emit(figure(
        "list_p99",
        json!({
            "posts": market.post_count(),
            "queries": samples.len(),
            "avg_returned": returned / samples.len(),
            "p50_us": percentile(&samples, 50.0).round(),
            "p99_us": p99.round(),
            "max_us": samples.last().copied().unwrap_or(0.0).round(),
            "target_p99_us": 1000.0,
            "ratio_to_target": (p99 / 1000.0 * 1000.0).round() / 1000.0,
            "ceiling": "btreemap_walk_50_p99_us",
            "ceiling_value": (percentile(&raw, 99.0) * 100.0).round() / 100.0,
            "pass": p99 <= 1000.0,
        }),
    ));
    Ok(())
}

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
