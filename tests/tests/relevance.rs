//! Search quality on the relevance set (tests/data/relevance): the figures
//! are computed for every ranker we have, and keyword search beats the
//! seed's substring search.
//!
//! Hook for the semantic and hybrid rankers (issue 13): add them with
//! `relevance::evaluate` beside `keyword` below and assert that both beat
//! keyword on recall@10 and MRR, and that semantic top-1 on the
//! `cross_language` queries is at least 0.8.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_node::core::search::Stemming;
use hearth_node::semantic::rank::{Fusion, HYBRID, RRF_K};
use hearth_tests::relevance::{
    evaluate, hybrid_ranker, keyword_ranker, keyword_scored_ranker, semantic_scored_ranker,
    substring_ranker, RelevanceSet,
};

/// The set holds what issue 13 asks for: at least 300 posts, 60 labelled
/// queries, both languages, every kind of query.
#[test]
fn relevance_set_is_complete() {
    let set = RelevanceSet::load().unwrap();
    assert!(set.posts.len() >= 300, "{} posts", set.posts.len());
    assert!(set.queries.len() >= 60, "{} queries", set.queries.len());
    for lang in ["de", "en"] {
        assert!(set.posts.iter().filter(|p| p.lang == lang).count() >= 100);
        assert!(set.queries.iter().filter(|q| q.lang == lang).count() >= 20);
    }
    for kind in [
        "exact",
        "paraphrase",
        "misspelling",
        "cross_language",
        "no_shared_word",
        "compound",
    ] {
        assert!(
            set.queries.iter().filter(|q| q.kind == kind).count() >= 5,
            "fewer than 5 {kind} queries"
        );
    }
}

/// Keyword search's recall@10 and MRR are computed on the set, and its MRR
/// beats the substring baseline's.
#[test]
fn keyword_beats_substring_on_mrr() {
    let set = RelevanceSet::load().unwrap();
    let keyword = evaluate(&set, "keyword", keyword_ranker(&set, Stemming::Both));
    let substring = evaluate(&set, "substring", substring_ranker(&set));
    let guess = evaluate(&set, "keyword_guess", keyword_ranker(&set, Stemming::Guess));
    eprintln!("{}", keyword.to_json());
    eprintln!("{}", guess.to_json());
    eprintln!("{}", substring.to_json());
    assert_eq!(keyword.all.queries, set.queries.len());
    assert!(keyword.all.mrr > 0.0 && keyword.all.recall_at_10 > 0.0);
    assert!(
        keyword.all.mrr > substring.all.mrr,
        "keyword MRR {} <= substring MRR {}",
        keyword.all.mrr,
        substring.all.mrr
    );
    assert!(
        keyword.all.recall_at_10 > substring.all.recall_at_10,
        "keyword recall@10 {} <= substring recall@10 {}",
        keyword.all.recall_at_10,
        substring.all.recall_at_10
    );
}

/// With the real model (issue 13): semantic and hybrid search beat keyword
/// search on recall@10 and MRR, and semantic search puts a right answer
/// first for at least 80% of the cross-language queries. Needs the model
/// that scripts/test fetches (`HEARTH_EMBED_MODEL_DIR`); run by hand
/// without it, the test says so and passes.
#[test]
fn semantic_and_hybrid_beat_keyword() {
    let Some(dir) = std::env::var_os("HEARTH_EMBED_MODEL_DIR") else {
        eprintln!("skipped: HEARTH_EMBED_MODEL_DIR is not set (scripts/test sets it)");
        return;
    };
    let model = hearth_embed::Embedder::load(&dir).unwrap();
    let set = RelevanceSet::load().unwrap();
    let keyword = evaluate(&set, "keyword", keyword_ranker(&set, Stemming::Both));
    let semantic_rank = semantic_scored_ranker(&set, &model);
    let semantic = evaluate(&set, "semantic", |q: &str| {
        semantic_rank(q).into_iter().map(|(i, _)| i).collect()
    });
    let hybrid = evaluate(
        &set,
        "hybrid",
        hybrid_ranker(
            &semantic_rank,
            keyword_scored_ranker(&set, Stemming::Both),
            HYBRID,
        ),
    );
    for f in [&keyword, &semantic, &hybrid] {
        eprintln!("{}", f.to_json());
    }
    for f in [&semantic, &hybrid] {
        assert!(
            f.all.mrr > keyword.all.mrr && f.all.recall_at_10 > keyword.all.recall_at_10,
            "{} ({:?}) does not beat keyword ({:?})",
            f.ranker,
            f.all,
            keyword.all
        );
    }
    let cross = semantic.by_kind["cross_language"];
    assert!(
        cross.top1 >= 0.8,
        "semantic top-1 on cross-language: {cross:?}"
    );
}

/// The fusions `hybrid` was chosen from, in the order they are tried.
fn fusion_candidates() -> Vec<(String, Fusion)> {
    let mut all = Vec::new();
    for k in [10.0, RRF_K] {
        for semantic in [1.0, 2.0, 3.0, 5.0] {
            all.push((
                format!("rrf k={k} semantic x{semantic}"),
                Fusion::Rrf {
                    k,
                    semantic,
                    keyword: 1.0,
                },
            ));
        }
        all.push((format!("verbatim gate k={k}"), Fusion::VerbatimGate { k }));
    }
    for alpha in [0.5, 0.6, 0.7, 0.8, 0.9] {
        all.push((format!("linear alpha={alpha}"), Fusion::Linear { alpha }));
    }
    all
}

/// How `semantic::rank::HYBRID` was chosen, kept honest: every candidate
/// fusion is scored on the even-numbered queries of the set (the choice
/// split), the best MRR there (first on a tie) must be `HYBRID`, and its
/// figures on the odd-numbered queries (held out from the choice) are
/// printed beside plain RRF's and semantic's. Needs the model.
#[test]
fn hybrid_fusion_is_the_best_on_the_choice_split() {
    let Some(dir) = std::env::var_os("HEARTH_EMBED_MODEL_DIR") else {
        eprintln!("skipped: HEARTH_EMBED_MODEL_DIR is not set (scripts/test sets it)");
        return;
    };
    let model = hearth_embed::Embedder::load(&dir).unwrap();
    let set = RelevanceSet::load().unwrap();
    let choose = set.with_queries(|i| i % 2 == 0);
    let held_out = set.with_queries(|i| i % 2 == 1);
    let semantic_rank = semantic_scored_ranker(&set, &model);
    let figures = |s: &RelevanceSet, name: &str, how: Fusion| {
        evaluate(
            s,
            name,
            hybrid_ranker(
                &semantic_rank,
                keyword_scored_ranker(&set, Stemming::Both),
                how,
            ),
        )
    };
    let mut best: Option<(f64, String, Fusion)> = None;
    for (name, how) in fusion_candidates() {
        let on_choice = figures(&choose, &name, how);
        let on_held_out = figures(&held_out, &name, how);
        eprintln!(
            "{name:28} choice MRR {:.4} R@10 {:.4} | held-out MRR {:.4} R@10 {:.4}",
            on_choice.all.mrr,
            on_choice.all.recall_at_10,
            on_held_out.all.mrr,
            on_held_out.all.recall_at_10
        );
        if best
            .as_ref()
            .is_none_or(|(mrr, _, _)| on_choice.all.mrr > *mrr)
        {
            best = Some((on_choice.all.mrr, name, how));
        }
    }
    for (name, s) in [("choice", &choose), ("held-out", &held_out)] {
        let sem = evaluate(s, "semantic", |q: &str| {
            semantic_rank(q).into_iter().map(|(i, _)| i).collect()
        });
        eprintln!("semantic on {name}: {:?}", sem.all);
    }
    let (_, name, how) = best.unwrap();
    eprintln!("best on the choice split: {name}");
    assert_eq!(how, HYBRID, "the choice split picks {name}; HYBRID differs");
}
