//! Quick timing loop for the forward pass (not the real benchmark, which is
//! `scripts/bench --only embed`): texts/s at batch 1 and 32 on this thread.
//! `cargo run --release -p hearth-embed --example embed_speed [texts]`
//! with `HEARTH_EMBED_MODEL_DIR` set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

const TITLES: [&str; 8] = [
    "Leiter zu verleihen",
    "Need a ladder for the weekend",
    "Gasgeruch im Treppenhaus",
    "Suche Babysitter für Dienstag",
    "Stromausfall in der Lindenstraße",
    "Äpfel aus dem Garten",
    "Rauchmelder piept in 3B",
    "Water off in building C",
];
const BODIES: [&str; 4] = [
    "Bitte bis Freitag abholen, ich wohne im zweiten Stock.",
    "Just ring the bell at number 12, any time after six.",
    "Wir treffen uns um 19 Uhr im Hof neben der Bäckerei.",
    "The caretaker has been told but nobody has come yet.",
];

/// Nanoseconds this thread has run (the machine is shared; wall time counts others' turns).
fn cpu_ns() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn main() {
    let dir = std::env::var_os("HEARTH_EMBED_MODEL_DIR").expect("set HEARTH_EMBED_MODEL_DIR");
    let n: usize = std::env::args()
        .nth(1)
        .map_or(640, |a| a.parse().expect("texts"));
    let t = Instant::now();
    let e = hearth_embed::Embedder::load(&dir).unwrap();
    eprintln!("load {:.3} s", t.elapsed().as_secs_f64());
    let texts: Vec<String> = (0..n)
        .map(|i| format!("{}. {}", TITLES[i % 8], BODIES[(i / 8) % 4]))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    std::hint::black_box(e.embed(&refs[..32.min(n)]));
    let batches: Vec<usize> = match std::env::args().nth(2) {
        Some(b) => vec![b.parse().expect("batch")],
        None => vec![1, 32, 1, 32],
    };
    for batch in batches {
        let t = cpu_ns();
        for c in refs.chunks(batch) {
            std::hint::black_box(e.embed(c));
        }
        let s = (cpu_ns() - t) / 1e9;
        eprintln!("batch {batch:2}: {:7.1} texts/s", n as f64 / s);
    }
    let t = Instant::now();
    for r in &refs {
        std::hint::black_box(e.token_ids(r));
    }
    eprintln!(
        "tokenizer: {:.1} us/text",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
