//! `list_p99`: `MarketView::list` latency with `n` live posts (100k), over
//! 10,000 queries timed one by one, in a mix: no filter, a category, one
//! tag, `since_lamport`, a category and a tag; every query with limit 50.
//! Target p99 <= 1 ms. Ceiling: a raw `BTreeMap` range walk of 50 entries
//! over `n` keys, timed the same way in the same run.
//!
//! The view is built through `EventLog::append_received` over the
//! in-memory store (the view is the same whatever the store).

use std::collections::BTreeMap;
use std::time::Instant;

use hearth_node::core::views::ListQuery;
use hearth_node::core::EventLog;
use hearth_node::store::MemoryStore;
use hearth_proto::Category;
use serde_json::json;

use super::{emit, figure, percentile, progress, round, sign_all, Fixture, Mix, Rng, TAGS};
use crate::FIXED_NOW_MS;

const QUERIES: usize = 10_000;
const WARMUP: usize = 1_000;
const LIMIT: usize = 50;
const TARGET_P99_US: f64 = 1000.0;
const KINDS: [&str; 5] = [
    "none",
    "category",
    "tag",
    "since_lamport",
    "category_and_tag",
];

pub fn list(n: usize) -> anyhow::Result<()> {
    let fx = Fixture::new(20)?;
    let mut mix = Mix::new(&fx, 0x11575);
    let plan = mix.plan_live(n);
    progress(format_args!(
        "list: signing {} events for {n} live posts",
        plan.len()
    ));
    let events = sign_all(&fx.signers(), plan)?;
    let (mut log, _) = EventLog::open(MemoryStore::new(), fx.genesis())?;
    for e in fx.history().iter().cloned().chain(events) {
        log.append_received(e)?;
    }
    let market = &log.views().market;
    let live = market.all_active(FIXED_NOW_MS).count();
    let max_lamport = market.max_lamport();
    let first_lamport = fx.history().len() as u64 + 1;

    let mut rng = Rng::new(0x9e77);
    let queries: Vec<(usize, ListQuery)> = (0..WARMUP + QUERIES)
        .map(|i| {
            let kind = i % KINDS.len();
            let q = match kind {
                0 => ListQuery::default(),
                1 => ListQuery {
                    category: Some(Category::ALL[rng.below(4) as usize]),
                    ..Default::default()
                },
                2 => ListQuery {
                    tags: vec![TAGS[rng.below(TAGS.len() as u64) as usize].into()],
                    ..Default::default()
                },
                3 => ListQuery {
                    since_lamport: Some(
                        first_lamport + rng.below(max_lamport.saturating_sub(first_lamport)),
                    ),
                    ..Default::default()
                },
                _ => ListQuery {
                    category: Some(Category::ALL[rng.below(4) as usize]),
                    tags: vec![TAGS[rng.below(TAGS.len() as u64) as usize].into()],
                    ..Default::default()
                },
            };
            (
                kind,
                ListQuery {
                    limit: Some(LIMIT),
                    ..q
                },
            )
        })
        .collect();

    progress(format_args!(
        "list: {QUERIES} queries over {live} live posts"
    ));
    let mut samples = Vec::with_capacity(QUERIES);
    let mut by_kind: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    let mut returned = 0usize;
    for (i, (kind, q)) in queries.iter().enumerate() {
        let t = Instant::now();
        let got = market.list(q, FIXED_NOW_MS);
        let us = t.elapsed().as_secs_f64() * 1e6;
        std::hint::black_box(&got);
        if i >= WARMUP {
            returned += got.len();
            samples.push(us);
            by_kind[*kind].push(us);
        }
    }
    samples.sort_by(f64::total_cmp);
    for k in &mut by_kind {
        k.sort_by(f64::total_cmp);
    }

    // Ceiling: 50 entries from a random start in a BTreeMap of n keys.
    let map: BTreeMap<u64, u64> = (0..n as u64).map(|i| (i * 3, i)).collect();
    let mut raw = Vec::with_capacity(QUERIES);
    for i in 0..WARMUP + QUERIES {
        let from = rng.below(3 * n as u64);
        let t = Instant::now();
        let s: u64 = map.range(from..).take(LIMIT).map(|(_, v)| *v).sum();
        let us = t.elapsed().as_secs_f64() * 1e6;
        std::hint::black_box(s);
        if i >= WARMUP {
            raw.push(us);
        }
    }
    raw.sort_by(f64::total_cmp);

    let p99 = percentile(&samples, 99.0);
    // The single-filter kinds alone (no category-and-tag intersection).
    let mut single: Vec<f64> = by_kind[..4].iter().flatten().copied().collect();
    single.sort_by(f64::total_cmp);
    let raw_p99 = percentile(&raw, 99.0);
    let kinds: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .zip(&by_kind)
        .map(|(name, s)| {
            (
                (*name).to_owned(),
                json!({
                    "p50_us": round(percentile(s, 50.0), 1),
                    "p99_us": round(percentile(s, 99.0), 1),
                    "max_us": round(s.last().copied().unwrap_or(0.0), 1),
                }),
            )
        })
        .collect();
    emit(figure(
        "list_p99",
        json!({
            "live_posts": live,
            "posts_in_view": market.post_count(),
            "mix": mix.counts.to_json(),
            "queries": samples.len(),
            "avg_returned": round(returned as f64 / samples.len().max(1) as f64, 1),
            "p50_us": round(percentile(&samples, 50.0), 1),
            "p99_us": round(p99, 1),
            "max_us": round(samples.last().copied().unwrap_or(0.0), 1),
            "target_p99_us": TARGET_P99_US,
            "ratio_to_target": round(p99 / TARGET_P99_US, 3),
            "pass": p99 <= TARGET_P99_US,
            "ceiling": "btreemap_range_50_p99_us (raw BTreeMap walk of 50 entries, same run)",
            "ceiling_value": round(raw_p99, 2),
            "ceiling_p50_us": round(percentile(&raw, 50.0), 2),
            "ratio": round(p99 / raw_p99.max(1e-3), 1),
            "p99_us_single_filter_kinds": round(percentile(&single, 99.0), 1),
            "by_kind": kinds,
        }),
    ));
    Ok(())
}
