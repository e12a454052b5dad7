//! The search relevance set (tests/data/relevance) and the figures a
//! ranker earns on it: recall@10 and MRR@10, overall and per kind of query.
//!
//! The test (tests/tests/relevance.rs) and the benchmark (`scripts/bench
//! --only search`) both use this module, so they report the same numbers.
//! A ranker is any function from a query's text to post indexes, best
//! first: [`keyword_ranker`] is the node's keyword search over the set,
//! [`substring_ranker`] the seed's substring search. Semantic and hybrid
//! rankers plug in the same way once the embedder lands (issue 13).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use hearth_node::core::search::{rank, Document, SearchIndex, Stemming};
use serde_json::Value;

/// Results a ranker is judged on: recall@10 and MRR@10.
pub const CUTOFF: usize = 10;

/// One post of the set.
#[derive(Debug, Clone)]
pub struct SetPost {
    pub id: String,
    pub lang: String,
    pub category: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
}

impl SetPost {
    pub fn document(&self) -> Document<'_> {
        Document {
            title: &self.title,
            body: &self.body,
            tags: &self.tags,
        }
    }
}

/// One labelled query: the posts that answer it, and what kind of query it
/// is (`exact`, `paraphrase`, `misspelling`, `cross_language`,
/// `no_shared_word`, `compound`).
#[derive(Debug, Clone)]
pub struct SetQuery {
    pub id: String,
    pub lang: String,
    pub kind: String,
    pub query: String,
    /// Indexes into [`RelevanceSet::posts`].
    pub relevant: BTreeSet<usize>,
}

#[derive(Debug, Clone)]
pub struct RelevanceSet {
    pub posts: Vec<SetPost>,
    pub queries: Vec<SetQuery>,
}

/// Where the set lives in the repository.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/relevance")
}

fn text(v: &Value, field: &str, what: &str) -> anyhow::Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{what}: field {field:?} is missing or not a string"))
}

fn strings(v: &Value, field: &str, what: &str) -> anyhow::Result<Vec<String>> {
    v.get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{what}: field {field:?} is missing or not a list"))?
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{what}: {field:?} holds a non-string"))
        })
        .collect()
}

fn read_list(name: &str) -> anyhow::Result<Vec<Value>> {
    let path = data_dir().join(name);
    let raw =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&raw).with_context(|| format!("parsing {}", path.display()))?;
    match v {
        Value::Array(items) => Ok(items),
        _ => bail!("{} is not a JSON list", path.display()),
    }
}

impl RelevanceSet {
    /// Reads posts.json and queries.json; an unknown post id in a query's
    /// `relevant` list is an error naming the query.
    pub fn load() -> anyhow::Result<RelevanceSet> {
        let posts = read_list("posts.json")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let what = format!("posts.json item {i}");
                Ok(SetPost {
                    id: text(v, "id", &what)?,
                    lang: text(v, "lang", &what)?,
                    category: text(v, "category", &what)?,
                    title: text(v, "title", &what)?,
                    body: text(v, "body", &what)?,
                    tags: strings(v, "tags", &what)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let by_id: BTreeMap<&str, usize> = posts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        if by_id.len() != posts.len() {
            bail!("posts.json has duplicate ids");
        }
        let queries = read_list("queries.json")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let what = format!("queries.json item {i}");
                let relevant = strings(v, "relevant", &what)?
                    .iter()
                    .map(|id| {
                        by_id.get(id.as_str()).copied().ok_or_else(|| {
                            anyhow!("{what}: relevant post {id:?} is not in posts.json")
                        })
                    })
                    .collect::<anyhow::Result<BTreeSet<usize>>>()?;
                if relevant.is_empty() {
                    bail!("{what}: no relevant posts");
                }
                Ok(SetQuery {
                    id: text(v, "id", &what)?,
                    lang: text(v, "lang", &what)?,
                    kind: text(v, "kind", &what)?,
                    query: text(v, "query", &what)?,
                    relevant,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(RelevanceSet { posts, queries })
    }
}

/// Recall@10 and MRR@10 averaged over some queries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    pub queries: usize,
    /// Mean share of a query's relevant posts in its first 10 results.
    pub recall_at_10: f64,
    /// Mean of 1 / rank of the first relevant result (0 if none in the
    /// first 10).
    pub mrr: f64,
    /// Share of queries whose first result is relevant.
    pub top1: f64,
}

/// A ranker's figures on the set.
#[derive(Debug, Clone)]
pub struct Figures {
    pub ranker: String,
    pub all: Scores,
    pub by_kind: BTreeMap<String, Scores>,
}

impl Figures {
    pub fn to_json(&self) -> Value {
        let s = |x: &Scores| {
            serde_json::json!({
                "queries": x.queries,
                "recall_at_10": round4(x.recall_at_10),
                "mrr": round4(x.mrr),
                "top1": round4(x.top1),
            })
        };
        serde_json::json!({
            "ranker": self.ranker,
            "all": s(&self.all),
            "by_kind": self.by_kind.iter().map(|(k, v)| (k.clone(), s(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[derive(Default)]
struct Sums {
    n: usize,
    recall: f64,
    rr: f64,
    top1: usize,
}

impl Sums {
    fn add(&mut self, recall: f64, rr: f64) {
        self.n += 1;
        self.recall += recall;
        self.rr += rr;
        self.top1 += usize::from(rr == 1.0);
    }

    fn scores(&self) -> Scores {
        let n = self.n.max(1) as f64;
        Scores {
            queries: self.n,
            recall_at_10: self.recall / n,
            mrr: self.rr / n,
            top1: self.top1 as f64 / n,
        }
    }
}

/// Runs `ranker` on every query of `set` and scores its first
/// [`CUTOFF`] results.
pub fn evaluate(set: &RelevanceSet, name: &str, ranker: impl Fn(&str) -> Vec<usize>) -> Figures {
    let mut all = Sums::default();
    let mut by_kind: BTreeMap<String, Sums> = BTreeMap::new();
    for q in &set.queries {
        let ranked = ranker(&q.query);
        let top = &ranked[..ranked.len().min(CUTOFF)];
        let found = top.iter().filter(|i| q.relevant.contains(i)).count();
        let recall = found as f64 / q.relevant.len() as f64;
        let rr = top
            .iter()
            .position(|i| q.relevant.contains(i))
            .map_or(0.0, |r| 1.0 / (r + 1) as f64);
        all.add(recall, rr);
        by_kind.entry(q.kind.clone()).or_default().add(recall, rr);
    }
    Figures {
        ranker: name.into(),
        all: all.scores(),
        by_kind: by_kind.into_iter().map(|(k, s)| (k, s.scores())).collect(),
    }
}

/// What the keyword search answers for one query: the ranking with its
/// scores (0 for a substring-only hit) and the hits that contain the
/// query verbatim (the seed rule's).
#[derive(Debug, Clone, Default)]
pub struct KeywordHits {
    pub ranked: Vec<(usize, f32)>,
    pub verbatim: Vec<usize>,
}

/// The node's keyword search over the set with scores: the same index, the
/// same query parsing and the same substring rule as `market.search`.
pub fn keyword_scored_ranker(
    set: &RelevanceSet,
    stemming: Stemming,
) -> impl Fn(&str) -> KeywordHits + '_ {
    let mut index = SearchIndex::new(stemming);
    for (i, p) in set.posts.iter().enumerate() {
        index.insert(i, p.document());
    }
    move |query: &str| {
        let q = index.query(query);
        let scored = index.scores(&q, |_| true);
        let substring: BTreeSet<usize> = if q.needle.is_empty() {
            BTreeSet::new()
        } else {
            index.containing(&q.needle, |_| true)
        };
        let hits = rank(scored, &substring, CUTOFF);
        KeywordHits {
            verbatim: hits.iter().filter(|h| h.substring).map(|h| h.key).collect(),
            ranked: hits.into_iter().map(|h| (h.key, h.score)).collect(),
        }
    }
}

/// [`keyword_scored_ranker`] without the scores.
pub fn keyword_ranker(set: &RelevanceSet, stemming: Stemming) -> impl Fn(&str) -> Vec<usize> + '_ {
    let scored = keyword_scored_ranker(set, stemming);
    move |query: &str| scored(query).ranked.into_iter().map(|(i, _)| i).collect()
}

/// The seed's search, the baseline: posts containing the query as a
/// case-insensitive substring, title hits first, then newer first (later
/// in the file stands for newer).
pub fn substring_ranker(set: &RelevanceSet) -> impl Fn(&str) -> Vec<usize> + '_ {
    move |query: &str| {
        let needle = query.trim().to_lowercase();
        if needle.is_empty() {
            return Vec::new();
        }
        let mut hits: Vec<(bool, usize)> = set
            .posts
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, p)| p.document().contains(&needle))
            .map(|(i, p)| (!p.title.to_lowercase().contains(&needle), i))
            .collect();
        hits.sort_by_key(|(not_title, _)| *not_title);
        hits.into_iter().map(|(_, i)| i).collect()
    }
}

/// Ranking by meaning over the set with a loaded model: every post's
/// title and body start (as the node embeds them, `semantic::post_text`)
/// scored by cosine against the query's vector; the best
/// `SEMANTIC_DEPTH`, with their cosines.
pub fn semantic_scored_ranker<'a>(
    set: &'a RelevanceSet,
    model: &'a hearth_embed::Embedder,
) -> impl Fn(&str) -> Vec<(usize, f32)> + 'a {
    let texts: Vec<String> = set
        .posts
        .iter()
        .map(|p| hearth_node::semantic::post_text(&p.title, &p.body))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors: Vec<[f32; hearth_embed::DIM]> = refs
        .chunks(32)
        .flat_map(|batch| model.embed(batch))
        .collect();
    move |query: &str| {
        let Some(q) = model.embed(&[query.trim()]).into_iter().next() else {
            return Vec::new();
        };
        let scored = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i, hearth_node::semantic::rank::dot(&q, v)));
        hearth_node::semantic::rank::top_k(scored, hearth_node::semantic::search::SEMANTIC_DEPTH)
    }
}

/// [`semantic_scored_ranker`] without the scores.
pub fn semantic_ranker<'a>(
    set: &'a RelevanceSet,
    model: &'a hearth_embed::Embedder,
) -> impl Fn(&str) -> Vec<usize> + 'a {
    let scored = semantic_scored_ranker(set, model);
    move |query: &str| scored(query).into_iter().map(|(i, _)| i).collect()
}

/// `hybrid`: the semantic and keyword rankings fused by `how`, as
/// `market.search` fuses them (`semantic::rank::HYBRID` there).
pub fn hybrid_ranker<'a>(
    semantic: impl Fn(&str) -> Vec<(usize, f32)> + 'a,
    keyword: impl Fn(&str) -> KeywordHits + 'a,
    how: hearth_node::semantic::rank::Fusion,
) -> impl Fn(&str) -> Vec<usize> + 'a {
    move |query: &str| {
        let (s, k) = (semantic(query), keyword(query));
        hearth_node::semantic::rank::Fused {
            semantic: &s,
            keyword: &k.ranked,
            verbatim: &k.verbatim,
        }
        .rank(how, CUTOFF)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
    }
}

impl RelevanceSet {
    /// The same posts with only the queries `keep` selects (by position):
    /// a split to choose a parameter on one part and check it on the other.
    pub fn with_queries(&self, keep: impl Fn(usize) -> bool) -> RelevanceSet {
        RelevanceSet {
            posts: self.posts.clone(),
            queries: self
                .queries
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, q)| q.clone())
                .collect(),
        }
    }
}
