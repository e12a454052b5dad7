//! Loader and embedder tests on a tiny model the tests write themselves
//! (same array names and layout as the real one, small widths).

use super::*;
use crate::npz::{write_npy, Array, Data};
use std::io::{Cursor, Write};

/// A deterministic value in [-0.5, 0.5) for weight `i` of array `salt`.
fn val(salt: usize, i: usize) -> f32 {
    let h = (i as u64 + 1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt as u64 * 0x1234_5678_9abc);
    ((h >> 40) % 1000) as f32 / 1000.0 - 0.5
}

fn f32s(salt: usize, shape: &[usize]) -> Array {
    let n = shape.iter().product();
    Array {
        shape: shape.to_vec(),
        data: Data::F32((0..n).map(|i| val(salt, i)).collect()),
    }
}

/// The arrays of a tiny model: 2 table blocks of 8 rows (16 piece ids),
/// embedding 8, branches 4, sentence 6, hidden 5 and 7, output 512.
fn tiny_arrays() -> Vec<(String, Array)> {
    let (emb, cnn, sent, hid, wide) = (8, 4, 6, 5, 7);
    let mut v: Vec<(String, Array)> = Vec::new();
    for q in 1..=2 {
        v.push((
            format!("q{q}"),
            Array {
                shape: vec![8, emb],
                data: Data::U8(
                    (0..8 * emb)
                        .map(|i| ((i * 7 + q * 13) % 64) as u8)
                        .collect(),
                ),
            },
        ));
    }
    v.push(("scale".into(), f32s(1, &[2])));
    v.push(("lo".into(), f32s(2, &[2])));
    v.push((
        "bits".into(),
        Array {
            shape: vec![1],
            data: Data::I8(vec![6]),
        },
    ));
    for (s, order) in [(2usize, 2usize), (3, 3), (5, 5)] {
        v.push((format!("proj{s}"), f32s(10 + s, &[emb, cnn])));
        v.push((format!("proj_b{s}"), f32s(20 + s, &[cnn])));
        v.push((format!("ln_g{s}"), f32s(30 + s, &[cnn])));
        v.push((format!("ln_b{s}"), f32s(40 + s, &[cnn])));
        v.push((format!("w1_{s}"), f32s(50 + s, &[order * cnn, cnn])));
        v.push((format!("b1_{s}"), f32s(60 + s, &[cnn])));
        v.push((format!("w2_{s}"), f32s(70 + s, &[order * cnn, cnn])));
        v.push((format!("b2_{s}"), f32s(80 + s, &[cnn])));
    }
    let feat = emb + 3 * cnn;
    v.push(("ln_g".into(), f32s(90, &[feat])));
    v.push(("ln_b".into(), f32s(91, &[feat])));
    v.push(("cnn_W".into(), f32s(92, &[feat, sent])));
    v.push(("cnn_b".into(), f32s(93, &[sent])));
    v.push(("d0".into(), f32s(94, &[sent, hid])));
    v.push(("p1".into(), f32s(95, &[sent, hid])));
    v.push(("d1".into(), f32s(96, &[hid, hid])));
    v.push(("d2".into(), f32s(97, &[hid, wide])));
    v.push(("p3".into(), f32s(98, &[hid, DIM])));
    v.push(("d3".into(), f32s(99, &[wide, DIM])));
    v.push((
        "eps".into(),
        Array {
            shape: vec![],
            data: Data::F64(vec![1e-12]),
        },
    ));
    v
}

fn npz_bytes(arrays: &[(String, Array)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, a) in arrays {
        w.start_file(format!("{name}.npy"), opts).unwrap();
        w.write_all(&write_npy(a)).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// 13 pieces besides the 3 reserved: 16 ids, the table's 16 rows.
fn tiny_sp() -> Vec<u8> {
    let pieces = [
        ("\u{2581}", -2.0),
        ("\u{2581}a", -1.0),
        ("a", -3.0),
        ("b", -3.0),
        ("ab", -2.5),
        ("\u{2581}ab", -2.0),
        ("c", -3.0),
        ("\u{2581}c", -2.0),
        ("ß", -3.0),
        ("ü", -3.0),
        ("\u{2581}b", -2.0),
        ("ca", -2.5),
        ("bc", -2.5),
    ];
    tokenizer::testing::model(&pieces, &tokenizer::testing::charsmap(&[(b'A', "a")]))
}

fn write_model(dir: &Path, sp: &[u8], arrays: &[(String, Array)]) {
    std::fs::write(dir.join(TOKENIZER_FILE), sp).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), npz_bytes(arrays)).unwrap();
}

fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &tiny_sp(), &tiny_arrays());
    dir
}

fn load_err(sp: &[u8], arrays: &[(String, Array)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), sp, arrays);
    Embedder::load(dir.path()).unwrap_err().to_string()
}

/// A text's vector is unit length, the same alone or in any batch, and differs between texts.
#[test]
fn vectors_are_normalised_and_independent_of_batching() {
    let dir = tiny_dir();
    let e = Embedder::load(dir.path()).unwrap();
    let texts = ["ab c", "", "ßüx", "Abba  cab", "c"];
    let together = e.embed(&texts);
    assert_eq!(together.len(), texts.len());
    for (i, t) in texts.iter().enumerate() {
        let alone = e.embed(&[t])[0];
        let norm: f32 = alone.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{t:?} norm {norm}");
        let diff = alone
            .iter()
            .zip(&together[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-6, "{t:?} differs in a batch by {diff}");
    }
    assert_ne!(together[0], together[3]);
    assert!(e.embed(&[]).is_empty());
    // A batch larger than one forward pass (384 tokens) splits and still agrees.
    let many: Vec<&str> = texts.iter().cycle().take(300).copied().collect();
    let big = e.embed(&many);
    for (i, v) in big.iter().enumerate() {
        let d = v
            .iter()
            .zip(&together[i % texts.len()])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-6, "text {i} differs by {d}");
    }
}

/// Token ids are wrapped in bos/eos and a text too long for one pass is cut to TEXT_TOKENS_MAX.
#[test]
fn long_texts_are_cut_to_the_token_bound() {
    let dir = tiny_dir();
    let e = Embedder::load(dir.path()).unwrap();
    assert_eq!(e.token_ids("ab"), vec![1, 8, 2]);
    let long = "x".repeat(3 * TEXT_TOKENS_MAX);
    let ids = e.token_ids(&long);
    assert_eq!(ids.len(), TEXT_TOKENS_MAX);
    assert_eq!(ids.last(), Some(&EOS_ID));
    let v = e.embed(&[&long])[0];
    assert!(v.iter().all(|x| x.is_finite()));
}

/// The embedder can be shared across threads.
#[test]
fn embedder_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Embedder>();
}

/// Missing files, a non-zip weights file, a missing or misshapen array and mismatched files each fail naming the file and the problem.
#[test]
fn bad_model_dirs_are_refused_naming_file_and_problem() {
    let empty = tempfile::tempdir().unwrap();
    let e = Embedder::load(empty.path()).unwrap_err().to_string();
    assert!(e.contains("cannot read") && e.contains("sp.model"), "{e}");
    assert!(e.contains("scripts/fetch-model"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(TOKENIZER_FILE), tiny_sp()).unwrap();
    let e = Embedder::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("cannot read") && e.contains("weights.npz"),
        "{e}"
    );

    std::fs::write(dir.path().join(WEIGHTS_FILE), b"not a zip").unwrap();
    let e = Embedder::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("weights.npz") && e.contains("not a zip archive"),
        "{e}"
    );

    let e = load_err(b"\x0a\x05", &tiny_arrays());
    assert!(
        e.contains("sp.model is not a usable SentencePiece model"),
        "{e}"
    );

    let without = |name: &str| -> Vec<(String, Array)> {
        tiny_arrays()
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    };
    let e = load_err(&tiny_sp(), &without("d3"));
    assert!(
        e.contains("weights.npz") && e.contains("entry d3.npy is missing"),
        "{e}"
    );
    let e = load_err(&tiny_sp(), &without("q1"));
    assert!(e.contains("entry q1.npy is missing"), "{e}");

    let reshaped = |name: &str, a: Array| -> Vec<(String, Array)> {
        tiny_arrays()
            .into_iter()
            .map(|(n, x)| if n == name { (n, a.clone()) } else { (n, x) })
            .collect()
    };
    let e = load_err(&tiny_sp(), &reshaped("w1_3", f32s(1, &[13, 4])));
    assert!(
        e.contains("entry w1_3.npy has shape [13, 4], expected (12, 4)"),
        "{e}"
    );
    let e = load_err(&tiny_sp(), &reshaped("d3", f32s(1, &[7, 256])));
    assert!(
        e.contains("entry d3.npy has shape [7, 256], expected (7, 512)"),
        "{e}"
    );
    let e = load_err(
        &tiny_sp(),
        &reshaped(
            "q2",
            Array {
                shape: vec![8, 7],
                data: Data::U8(vec![0; 56]),
            },
        ),
    );
    assert!(
        e.contains("entry q2.npy has shape [8, 7], expected (8, 8) like q1"),
        "{e}"
    );
    let e = load_err(
        &tiny_sp(),
        &reshaped(
            "cnn_b",
            Array {
                shape: vec![6],
                data: Data::F64(vec![0.0; 6]),
            },
        ),
    );
    assert!(e.contains("entry cnn_b.npy is <f8, not <f4"), "{e}");
    let mut nan = f32s(1, &[6]);
    if let Data::F32(v) = &mut nan.data {
        v[2] = f32::NAN;
    }
    let e = load_err(&tiny_sp(), &reshaped("cnn_b", nan));
    assert!(
        e.contains("entry cnn_b.npy holds a value that is not finite"),
        "{e}"
    );

    // 17 pieces for a table of 16 rows.
    let mut pieces: Vec<(String, f32)> = (0..13).map(|i| (format!("p{i}"), -1.0)).collect();
    pieces.push(("q".into(), -1.0));
    let refs: Vec<(&str, f32)> = pieces.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    let sp = tokenizer::testing::model(&refs, &tokenizer::testing::charsmap(&[]));
    let e = load_err(&sp, &tiny_arrays());
    assert!(
        e.contains("table has 16 rows but") && e.contains("17 pieces"),
        "{e}"
    );
}
