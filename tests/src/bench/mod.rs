//! Benchmarks behind `scripts/bench`: each figure is one JSON line on
//! stdout, with the ceiling it is compared to measured in the same run
//! (this machine is noisy; only same-run ratios compare across runs).

pub mod core;
pub mod mesh;

use std::time::Instant;

use hearth_proto::{
    Category, CommunityId, Event, EventId, Identity, Payload, PostContent, PostCreated,
    VerifiedEvent,
};
use serde_json::{json, Value};

/// Prints one figure.
pub fn emit(figure: Value) {
    println!("{figure}");
}

pub fn figure(name: &str, fields: Value) -> Value {
    let mut v = json!({ "bench": name });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
        for (k, x) in extra {
            obj.insert(k.clone(), x.clone());
        }
    }
    v
}

/// Operations per second of `f` run `n` times.
pub fn rate(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Percentile of sorted samples (0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `n` posts by `author`, signed on every core (signing is the slow part of
/// building fixtures).
pub fn sign_posts(
    author: &Identity,
    community: CommunityId,
    first_lamport: u64,
    n: usize,
) -> anyhow::Result<Vec<VerifiedEvent>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = n.div_ceil(threads).max(1);
    let results: Vec<anyhow::Result<Vec<VerifiedEvent>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(|i| post(author, community, first_lamport + i as u64, i))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("signing thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(n);
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

pub fn post(
    author: &Identity,
    community: CommunityId,
    lamport: u64,
    i: usize,
) -> anyhow::Result<VerifiedEvent> {
    const TAGS: [&str; 8] = [
        "water", "tools", "food", "kids", "garden", "bikes", "help", "books",
    ];
    Ok(Event {
        id: EventId::from_parts(crate::FIXED_NOW_MS, i as u128),
        ts: crate::FIXED_NOW_MS,
        author: author.node_id(),
        lamport,
        community,
        payload: Payload::PostCreated(PostCreated {
            content: PostContent {
                category: Category::ALL[i % 4],
                title: format!("Post number {i}: something to share"),
                body: "A typical post body of a sentence or two, describing the thing on offer."
                    .into(),
                tags: vec![TAGS[i % 8].into(), TAGS[(i / 8) % 8].into()],
                expires_at: crate::FIXED_NOW_MS + 30 * 24 * 3600 * 1000,
                location: None,
            },
            client_id: None,
        }),
    }
    .sign(author)?)
}
