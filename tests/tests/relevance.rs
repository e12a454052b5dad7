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
use hearth_tests::relevance::{
    evaluate, hybrid_ranker, keyword_ranker, semantic_ranker, substring_ranker, RelevanceSet,
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
    let semantic_rank = semantic_ranker(&set, &model);
    let semantic = evaluate(&set, "semantic", &semantic_rank);
    let hybrid = evaluate(
        &set,
        "hybrid",
        hybrid_ranker(&semantic_rank, keyword_ranker(&set, Stemming::Both)),
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
