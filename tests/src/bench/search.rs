//! `search`: keyword search (`market.search`) latency over `n` live posts
//! (10k), and the relevance figures of the rankers on the relevance set.
//!
//! Posts are the relevance set's, cycled with a number and a varying word
//! so no two are equal (realistic lengths and vocabulary, German and
//! English), spread over 120 members so the per-author bound (100) hides
//! none. Queries are the set's 66, cycled; each is timed through
//! `Node::market_search` (index lookup, the substring scan of the seed
//! rule, and building the answer), limit 20. Target p99 <= 20 ms (issue
//! 13). Ceiling: the seed's substring search over the same posts, timed the
//! same way in the same run (a full scan: what keyword search replaces).
//!
//! Relevance: one line per ranker (`keyword`, `keyword_guess` with the
//! language-guessing stemmer, `substring`) with recall@10 and MRR@10,
//! overall and by kind of query.

use std::time::Instant;

use hearth_node::core::search::Stemming;
use hearth_node::core::services::market::SearchParams;
use hearth_proto::{Category, Event, EventId, Payload, PostContent, PostCreated};
use serde_json::json;

use super::{emit, figure, percentile, progress, round, sign_all, Fixture};
use crate::relevance::{evaluate, keyword_ranker, substring_ranker, RelevanceSet};
use crate::FIXED_NOW_MS;

const QUERIES: usize = 2_000;
const WARMUP: usize = 200;
const LIMIT: usize = 20;
const TARGET_P99_MS: f64 = 20.0;
/// Members posting: 10k posts stay under the per-author bound of 100.
const MEMBERS: usize = 120;
/// Words appended to cycled titles so repeated posts differ.
const VARIANTS: [&str; 8] = [
    "heute",
    "today",
    "dringend",
    "urgent",
    "Hinterhaus",
    "courtyard",
    "bitte",
    "thanks",
];

pub fn search(n: usize) -> anyhow::Result<()> {
    let set = RelevanceSet::load()?;
    relevance(&set);
    latency(&set, n)
}

fn relevance(set: &RelevanceSet) {
    let figures = [
        evaluate(set, "keyword", keyword_ranker(set, Stemming::Both)),
        evaluate(set, "keyword_guess", keyword_ranker(set, Stemming::Guess)),
        evaluate(set, "substring", substring_ranker(set)),
    ];
    for f in &figures {
        emit(figure("search_relevance", f.to_json()));
    }
}

fn latency(set: &RelevanceSet, n: usize) -> anyhow::Result<()> {
    let fx = Fixture::new(MEMBERS)?;
    let first_lamport = fx.history().len() as u64 + 1;
    let plan: Vec<(usize, Event)> = (0..n)
        .map(|i| {
            let p = &set.posts[i % set.posts.len()];
            let category = match p.category.as_str() {
                "offer" => Category::Offer,
                "request" => Category::Request,
                "info" => Category::Info,
                _ => Category::Emergency,
            };
            let who = i % MEMBERS;
            let event = Event {
                id: EventId::from_parts(FIXED_NOW_MS, i as u128 + 1_000_000),
                ts: FIXED_NOW_MS,
                author: fx.members[who].node_id(),
                lamport: first_lamport + i as u64,
                community: fx.id(),
                payload: Payload::PostCreated(PostCreated {
                    content: PostContent {
                        category,
                        title: format!("{} {}", p.title, VARIANTS[(i / 7) % VARIANTS.len()]),
                        body: format!("{} (#{i})", p.body),
                        tags: p.tags.clone(),
                        expires_at: FIXED_NOW_MS + 30 * 24 * 3600 * 1000,
                        location: None,
                    }
                    .into(),
                    client_id: None,
                }),
            };
            (who + 1, event)
        })
        .collect();
    progress(format_args!("search: signing {n} posts"));
    let events = sign_all(&fx.signers(), plan)?;
    let mut node = fx.community.node(&crate::identity(250), 1)?;
    let t = Instant::now();
    for e in events {
        node.log_mut().append_received(e)?;
    }
    let ingest_s = t.elapsed().as_secs_f64();
    let now = FIXED_NOW_MS + 1;
    let market = &node.views().market;
    let live = market.all_active(now).count();
    let t = Instant::now();
    let (docs, terms) = market.with_search(|index| (index.len(), index.term_count()));
    let build_s = t.elapsed().as_secs_f64();

    progress(format_args!(
        "search: {QUERIES} queries over {live} live posts"
    ));
    let mut samples = Vec::with_capacity(QUERIES);
    let mut returned = 0usize;
    for i in 0..WARMUP + QUERIES {
        let q = &set.queries[i % set.queries.len()];
        let p = SearchParams {
            query: q.query.clone(),
            limit: Some(LIMIT),
            ..Default::default()
        };
        let t = Instant::now();
        let r = node.market_search(now, p)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= WARMUP {
            returned += r.results.len();
            samples.push(ms);
        }
        std::hint::black_box(r);
    }
    samples.sort_by(f64::total_cmp);

    // Ceiling: the seed's substring search over the same live posts.
    let mut raw = Vec::with_capacity(QUERIES);
    for i in 0..WARMUP + QUERIES {
        let needle = set.queries[i % set.queries.len()].query.to_lowercase();
        let t = Instant::now();
        let hits = market
            .all_active(now)
            .filter(|p| {
                p.content.title.to_lowercase().contains(&needle)
                    || p.content.body.to_lowercase().contains(&needle)
                    || p.content.tags.iter().any(|t| t.contains(&needle))
            })
            .take(LIMIT)
            .count();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(hits);
        if i >= WARMUP {
            raw.push(ms);
        }
    }
    raw.sort_by(f64::total_cmp);

    let p99 = percentile(&samples, 99.0);
    emit(figure(
        "search_p99",
        json!({
            "posts_live": live,
            "indexed": docs,
            "terms": terms,
            "queries": QUERIES,
            "limit": LIMIT,
            "mean_results": round(returned as f64 / QUERIES as f64, 1),
            "p50_ms": round(percentile(&samples, 50.0), 3),
            "p99_ms": round(p99, 3),
            "max_ms": round(samples.last().copied().unwrap_or(0.0), 3),
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": p99 <= TARGET_P99_MS,
            "ceiling": "seed substring scan over the same posts",
            "ceiling_p50_ms": round(percentile(&raw, 50.0), 3),
            "ceiling_p99_ms": round(percentile(&raw, 99.0), 3),
            "ingest_posts_per_s": round(n as f64 / ingest_s, 0),
            "index_build_ms": round(build_s * 1e3, 1),
        }),
    ));
    Ok(())
}
