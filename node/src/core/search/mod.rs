//! Keyword search: an in-memory BM25 index over posts' title, body and
//! tags, kept up to date one post at a time.
//!
//! This module owns the text analysis ([`text`]), the index
//! ([`SearchIndex`]), query parsing ([`Query`]) and the final ranking rule
//! ([`rank`]) that keeps the seed's promise: every post containing the query
//! as a case-insensitive substring is in the results. It reads no clock, does
//! no I/O and iterates only ordered collections, so the same set of indexed
//! posts answers a query the same way on every node.
//!
//! How a post becomes terms (the same for a query):
//! 1. lowercase and fold diacritics (`Schlüssel` -> `schlussel`, `ß` -> `ss`);
//! 2. split into words, drop German and English stop words;
//! 3. stem each word with the German and the English Snowball stemmer
//!    (the language of a post or a query is not known; [`Stemming`]);
//! 4. cut each stem into character trigrams, so a query word found inside
//!    a compound still matches (`kanist` in `wasserkanist`), and so do
//!    most misspellings.
//!
//! Scoring: for each query word, the best BM25 of its stems plus a weaker
//! BM25 of its trigrams (their mean, so a long word does not outweigh a
//! short one). A word counts for a post only if one of its stems is in the
//! post or at least [`TRIGRAM_COVERAGE_MIN`] of its trigrams are. Fields
//! are weighted by repeating their terms: title x3, tags x2, body x1.

pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use text::{Language, Stemmers, Trigram};

/// Characters of a body that are indexed: the start of a post says what it
/// is about, and the cap bounds an index entry (about 3 KB of postings for
/// a full one). Words further in are still found by the substring rule.
pub const BODY_INDEXED_CHARS_MAX: usize = 600;
/// Tags indexed per post: the market allows 10; a post from a node with
/// looser limits must still cost bounded work.
pub const TAGS_INDEXED_MAX: usize = 16;
/// Query words used; the rest are ignored (a pasted paragraph is not a
/// query, and each word costs one walk over its postings).
pub const QUERY_WORDS_MAX: usize = 16;
/// Share of a query word's distinct trigrams a post must hold for the word
/// to count without an exact stem: lets a compound (`Wasserkanister` for
/// `Kanister`) or a one-letter typo through, but not a word sharing one
/// common syllable.
pub const TRIGRAM_COVERAGE_MIN: f32 = 0.6;
/// Weight of the trigram part against the exact stem (BM25 of a stem is
/// the stronger signal; trigrams break ties and reach compounds).
pub const TRIGRAM_WEIGHT: f32 = 0.5;

const TITLE_WEIGHT: u32 = 3;
const TAG_WEIGHT: u32 = 2;
const BODY_WEIGHT: u32 = 1;
/// BM25's usual constants (Robertson and Zaragoza).
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Which stems a post's and a query's words are indexed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stemming {
    /// Both the German and the English stem of every word (the default:
    /// equal MRR to `Guess` on the relevance set and no wrong guesses on
    /// short or mixed-language posts; docs/decisions.md).
    #[default]
    Both,
    /// Guess the language from function words; both stems when unsure.
    Guess,
}

/// The text of a post that is searched.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub tags: &'a [String],
}

impl<'a> Document<'a> {
    pub fn of(content: &'a hearth_proto::PostContent) -> Self {
        Document {
            title: &content.title,
            body: &content.body,
            tags: &content.tags,
        }
    }

    /// The seed rule: `needle` (already lowercase) is a substring of the
    /// lowercased title, body or a tag. Reads the whole body, not just the
    /// indexed start.
    pub fn contains(&self, needle_lower: &str) -> bool {
        contains_lowercase(self.title, needle_lower)
            || contains_lowercase(self.body, needle_lower)
            || self
                .tags
                .iter()
                .any(|t| contains_lowercase(t, needle_lower))
    }
}

/// `haystack.to_lowercase().contains(needle_lower)`, without allocating
/// when both are ASCII (then lowercasing is byte by byte): this check runs
/// over every live post on every search.
pub fn contains_lowercase(haystack: &str, needle_lower: &str) -> bool {
    if haystack.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle_lower.as_bytes());
        return n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(needle_lower)
}

/// Where one term's documents are: sorted by document number.
#[derive(Debug, Clone, Default)]
struct Postings {
    docs: Vec<u32>,
    /// Field-weighted term frequency, parallel to `docs`.
    tfs: Vec<u32>,
}

impl Postings {
    fn insert(&mut self, doc: u32, tf: u32) {
        match self.docs.binary_search(&doc) {
            Ok(at) => self.tfs[at] = tf,
            Err(at) => {
                self.docs.insert(at, doc);
                self.tfs.insert(at, tf);
            }
        }
    }

    fn remove(&mut self, doc: u32) {
        if let Ok(at) = self.docs.binary_search(&doc) {
            self.docs.remove(at);
            self.tfs.remove(at);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.docs.iter().copied().zip(self.tfs.iter().copied())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Term {
    Word(Box<str>),
    Gram(Trigram),
}

#[derive(Debug, Clone)]
struct Doc<K> {
    key: K,
    /// Weighted count of words, and of trigrams: BM25's document lengths.
    word_len: u32,
    gram_len: u32,
    /// The terms it is in, to take it out again without re-reading it.
    terms: Box<[u32]>,
    /// The whole text lowercased, fields joined by [`FIELD_SEPARATOR`]:
    /// what the seed rule scans, prepared once per post so a search
    /// neither lowercases nor allocates per post.
    lower: Box<str>,
}

/// A lowercase needle, searched for in prepared texts with a searcher
/// built once per query (SIMD where the CPU has it): the seed rule reads
/// every document when the scored ones do not settle it.
struct Needle<'a> {
    text: &'a str,
    finder: memchr::memmem::Finder<'a>,
    /// The needle holds [`FIELD_SEPARATOR`]: checked field by field, so
    /// it can match no document (no field holds the separator).
    across_fields: bool,
}

impl<'a> Needle<'a> {
    fn new(needle_lower: &'a str) -> Self {
        Needle {
            text: needle_lower,
            finder: memchr::memmem::Finder::new(needle_lower.as_bytes()),
            across_fields: needle_lower.contains(FIELD_SEPARATOR),
        }
    }

    /// Whether a prepared text holds the needle inside one field.
    fn is_in(&self, lower: &str) -> bool {
        if self.across_fields {
            lower
                .split(FIELD_SEPARATOR)
                .any(|field| field.contains(self.text))
        } else {
            self.finder.find(lower.as_bytes()).is_some()
        }
    }
}

/// Joins the fields of a document's prepared text. A needle without it
/// cannot match across two fields; one with it is checked field by field.
const FIELD_SEPARATOR: char = '\0';

/// The lowercased title, whole body and every tag, joined by
/// [`FIELD_SEPARATOR`]. Lowercasing is per character (the final sigma
/// rule looks only at letters, and the separator is none), so a field's
/// part equals that field lowercased on its own.
fn prepared_text(doc: Document<'_>) -> Box<str> {
    let len =
        doc.title.len() + doc.body.len() + doc.tags.iter().map(|t| t.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(len + 2);
    out.push_str(&doc.title.to_lowercase());
    out.push(FIELD_SEPARATOR);
    out.push_str(&doc.body.to_lowercase());
    for t in doc.tags {
        out.push(FIELD_SEPARATOR);
        out.push_str(&t.to_lowercase());
    }
    out.into_boxed_str()
}

/// A post's terms with their weighted frequencies.
#[derive(Debug, Default)]
struct Analysed {
    terms: BTreeMap<Term, u32>,
    word_len: u32,
    gram_len: u32,
}

/// An in-memory BM25 index of documents named by `K` (a post key in the
/// node; an index into the relevance set in tests).
///
/// Bounded per document: the body is read up to
/// [`BODY_INDEXED_CHARS_MAX`] characters and words are cut at
/// [`text::TOKEN_CHARS_MAX`], so a document holds at most a few hundred
/// postings. Terms no document uses are dropped, so the dictionary is
/// bounded by what is indexed now, not by everything ever seen.
#[derive(Debug, Clone)]
pub struct SearchIndex<K> {
    stemming: Stemming,
    stemmers: Stemmers,
    ids: BTreeMap<K, u32>,
    /// By document number; `None` for a free number.
    docs: Vec<Option<Doc<K>>>,
    /// By document number: `[word_len, gram_len]` of `docs` (zero for a
    /// free number), kept dense beside it because scoring reads one per
    /// posting: a few bytes each instead of a cache line of `Doc`.
    lens: Vec<[u32; 2]>,
    /// Free document numbers, lowest reused first so numbers stay dense.
    free_docs: BTreeSet<u32>,
    dictionary: BTreeMap<Term, u32>,
    /// By term number; postings of a free number are empty.
    postings: Vec<Postings>,
    /// By term number: the term, to drop it from the dictionary when its
    /// last document goes; `None` for a free number.
    terms: Vec<Option<Term>>,
    free_terms: Vec<u32>,
    word_len_total: u64,
    gram_len_total: u64,
}

impl<K: Ord + Copy> Default for SearchIndex<K> {
    fn default() -> Self {
        SearchIndex::new(Stemming::default())
    }
}

/// A [`SearchIndex`] built on first use and kept up to date from then on.
///
/// Indexing costs tens of microseconds per post; a node that never
/// searches (the simulator's thousand cores, a relay) should not pay it.
/// So the owner calls [`LazyIndex::get_mut`] where documents change (a
/// no-op until the index exists) and [`LazyIndex::with`] to search, which
/// builds the index from the owner's current documents the first time.
/// Built now or later, the index holds the same documents and answers the
/// same (scores do not depend on insertion order). The mutex lets a
/// search through `&self` build it; changes go through `&mut self` and
/// never lock.
#[derive(Debug)]
pub struct LazyIndex<K>(Mutex<Option<SearchIndex<K>>>);

impl<K> Default for LazyIndex<K> {
    fn default() -> Self {
        LazyIndex(Mutex::new(None))
    }
}

impl<K: Clone> Clone for LazyIndex<K> {
    fn clone(&self) -> Self {
        LazyIndex(Mutex::new(self.lock().clone()))
    }
}

impl<K> LazyIndex<K> {
    /// A panic inside a search leaves the index as it was (searches only
    /// read it, and a build assigns a finished index), so a poisoned lock
    /// is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Option<SearchIndex<K>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index, if it has been built: where documents change.
    pub fn get_mut(&mut self) -> Option<&mut SearchIndex<K>> {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
    }

    /// Drops the index; the next search rebuilds it (after a replay or a
    /// restore, when every document changed at once).
    pub fn reset(&mut self) {
        *self.0.get_mut().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether the index has been built.
    pub fn is_built(&self) -> bool {
        self.lock().is_some()
    }

    /// Runs `f` on the index, building it with `build` first if needed.
    pub fn with<R>(
        &self,
        build: impl FnOnce() -> SearchIndex<K>,
        f: impl FnOnce(&SearchIndex<K>) -> R,
    ) -> R {
        let mut guard = self.lock();
        let index = guard.get_or_insert_with(build);
        f(index)
    }
}

/// One query word: its stems and its distinct trigrams.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryWord {
    stems: Vec<String>,
    grams: Vec<Trigram>,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The trimmed, lowercased query: the substring the seed rule looks for.
    pub needle: String,
    words: Vec<QueryWord>,
}

impl Query {
    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.needle.is_empty()
    }
}

/// A ranked result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit<K> {
    pub key: K,
    /// BM25 score (0 for a post found only by the substring rule).
    pub score: f32,
    /// Whether the post contains the query as a substring.
    pub substring: bool,
}

impl<K: Ord + Copy> SearchIndex<K> {
    pub fn new(stemming: Stemming) -> Self {
        SearchIndex {
            stemming,
            stemmers: Stemmers::default(),
            ids: BTreeMap::new(),
            docs: Vec::new(),
            lens: Vec::new(),
            free_docs: BTreeSet::new(),
            dictionary: BTreeMap::new(),
            postings: Vec::new(),
            terms: Vec::new(),
            free_terms: Vec::new(),
            word_len_total: 0,
            gram_len_total: 0,
        }
    }

    /// Documents indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Distinct terms (words and trigrams) in use.
    pub fn term_count(&self) -> usize {
        self.dictionary.len()
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.ids.contains_key(key)
    }

    /// Indexes `doc` under `key`, replacing what `key` held.
    pub fn insert(&mut self, key: K, doc: Document<'_>) {
        self.remove(&key);
        let a = self.analyse(doc);
        let n = match self.free_docs.pop_first() {
            Some(n) => n,
            None => {
                self.docs.push(None);
                self.lens.push([0, 0]);
                u32::try_from(self.docs.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let mut terms = Vec::with_capacity(a.terms.len());
        for (term, tf) in a.terms {
            let t = self.term_number(term);
            self.postings[t as usize].insert(n, tf);
            terms.push(t);
        }
        self.word_len_total += u64::from(a.word_len);
        self.gram_len_total += u64::from(a.gram_len);
        self.lens[n as usize] = [a.word_len, a.gram_len];
        self.docs[n as usize] = Some(Doc {
            key,
            word_len: a.word_len,
            gram_len: a.gram_len,
            terms: terms.into_boxed_slice(),
            lower: prepared_text(doc),
        });
        self.ids.insert(key, n);
    }

    /// Takes `key` out; false if it was not indexed.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(n) = self.ids.remove(key) else {
            return false;
        };
        let Some(doc) = self.docs.get_mut(n as usize).and_then(Option::take) else {
            debug_assert!(false, "document number {n} named but empty");
            return false;
        };
        for &t in doc.terms.iter() {
            let postings = &mut self.postings[t as usize];
            postings.remove(n);
            if postings.docs.is_empty() {
                self.free_term(t);
            }
        }
        self.word_len_total -= u64::from(doc.word_len);
        self.gram_len_total -= u64::from(doc.gram_len);
        self.lens[n as usize] = [0, 0];
        if n as usize + 1 == self.docs.len() {
            self.docs.pop();
            // Trailing free numbers go too, so `docs` shrinks back.
            while self.docs.last().is_some_and(Option::is_none) {
                self.docs.pop();
                let last = u32::try_from(self.docs.len()).unwrap_or(u32::MAX);
                self.free_docs.remove(&last);
            }
            self.lens.truncate(self.docs.len());
        } else {
            self.free_docs.insert(n);
        }
        true
    }

    /// Empties the index.
    pub fn clear(&mut self) {
        *self = SearchIndex::new(self.stemming);
    }

    fn term_number(&mut self, term: Term) -> u32 {
        if let Some(&t) = self.dictionary.get(&term) {
            return t;
        }
        let t = match self.free_terms.pop() {
            Some(t) => t,
            None => {
                self.postings.push(Postings::default());
                self.terms.push(None);
                u32::try_from(self.postings.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.terms[t as usize] = Some(term.clone());
        self.dictionary.insert(term, t);
        t
    }

    fn free_term(&mut self, t: u32) {
        if let Some(term) = self.terms.get_mut(t as usize).and_then(Option::take) {
            self.dictionary.remove(&term);
        }
        self.free_terms.push(t);
    }

    fn analyse(&self, doc: Document<'_>) -> Analysed {
        let body_end = doc
            .body
            .char_indices()
            .nth(BODY_INDEXED_CHARS_MAX)
            .map_or(doc.body.len(), |(at, _)| at);
        let title = text::fold(doc.title);
        let body = text::fold(&doc.body[..body_end]);
        let tags: Vec<String> = doc
            .tags
            .iter()
            .take(TAGS_INDEXED_MAX)
            .map(|t| text::fold(t))
            .collect();
        let lang = match self.stemming {
            Stemming::Both => Language::Both,
            Stemming::Guess => {
                text::guess_language(text::tokens(&title).chain(text::tokens(&body)))
            }
        };
        let mut a = Analysed::default();
        let fields = std::iter::once((title.as_str(), TITLE_WEIGHT))
            .chain(std::iter::once((body.as_str(), BODY_WEIGHT)))
            .chain(tags.iter().map(|t| (t.as_str(), TAG_WEIGHT)));
        let mut grams = Vec::new();
        for (field, weight) in fields {
            for token in text::tokens(field).filter(|t| !text::is_stop_word(t)) {
                let stems = self.stemmers.stems(token, lang);
                a.word_len = a.word_len.saturating_add(weight);
                grams.clear();
                for stem in stems.iter() {
                    *a.terms.entry(Term::Word(stem.into())).or_default() += weight;
                    text::trigrams(stem, &mut grams);
                }
                grams.sort_unstable();
                grams.dedup();
                for &g in &grams {
                    *a.terms.entry(Term::Gram(g)).or_default() += weight;
                }
                let n = u32::try_from(grams.len()).unwrap_or(u32::MAX);
                a.gram_len = a.gram_len.saturating_add(weight.saturating_mul(n));
            }
        }
        a
    }
}

impl<K: Ord + Copy> SearchIndex<K> {
    /// Parses `text` the way documents are analysed. Stop words are
    /// dropped unless the query has nothing else ("the who").
    pub fn query(&self, text: &str) -> Query {
        let needle = text.trim().to_lowercase();
        let folded = text::fold(&needle);
        let lang = match self.stemming {
            Stemming::Both => Language::Both,
            Stemming::Guess => text::guess_language(text::tokens(&folded)),
        };
        let all_stop = text::tokens(&folded).all(text::is_stop_word);
        let mut words: Vec<QueryWord> = Vec::new();
        for token in text::tokens(&folded).filter(|t| all_stop || !text::is_stop_word(t)) {
            let stems = self.stemmers.stems(token, lang);
            let mut grams = Vec::new();
            for stem in stems.iter() {
                text::trigrams(stem, &mut grams);
            }
            grams.sort_unstable();
            grams.dedup();
            let word = QueryWord {
                stems: stems.iter().map(str::to_owned).collect(),
                grams,
            };
            if !words.contains(&word) {
                words.push(word);
            }
            if words.len() == QUERY_WORDS_MAX {
                break;
            }
        }
        Query { needle, words }
    }

    /// The seed rule over the index: keys of the documents `accept` lets
    /// through whose title, body (all of it) or a tag contains
    /// `needle_lower` (already lowercase). Scans each document's prepared
    /// text once; allocates only the answer.
    pub fn containing(
        &self,
        needle_lower: &str,
        mut accept: impl FnMut(&K) -> bool,
    ) -> BTreeSet<K> {
        let needle = Needle::new(needle_lower);
        self.docs
            .iter()
            .flatten()
            .filter(|d| needle.is_in(&d.lower))
            .map(|d| d.key)
            .filter(|k| accept(k))
            .collect()
    }

    fn postings_of(&self, term: &Term) -> Option<&Postings> {
        self.dictionary
            .get(term)
            .map(|&t| &self.postings[t as usize])
    }

    /// BM25 scores of the indexed documents `accept` lets through that
    /// match at least one query word, best first, ties by key.
    pub fn scores(&self, query: &Query, mut accept: impl FnMut(&K) -> bool) -> Vec<(K, f32)> {
        let mut out: Vec<(K, f32)> = self
            .matches(query)
            .into_iter()
            .filter_map(|(d, score)| self.key_of(d).map(|k| (k, score)))
            .filter(|(k, _)| accept(k))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    fn key_of(&self, doc: u32) -> Option<K> {
        self.docs.get(doc as usize)?.as_ref().map(|d| d.key)
    }

    /// The documents matching at least one query word, by document number
    /// (ascending), with their BM25 scores (always > 0). Reads only the
    /// postings of the query's terms.
    fn matches(&self, query: &Query) -> Vec<(u32, f32)> {
        let n_docs = self.ids.len();
        if n_docs == 0 || query.words.is_empty() {
            return Vec::new();
        }
        let n = n_docs as f32;
        let word_avg = (self.word_len_total as f32 / n).max(1.0);
        let gram_avg = (self.gram_len_total as f32 / n).max(1.0);
        // Each document's length norm, once per query: a common trigram's
        // postings name most documents, once per query word.
        let (word_norm, gram_norm): (Vec<f32>, Vec<f32>) = self
            .lens
            .iter()
            .map(|&[w, g]| (length_norm(w, word_avg), length_norm(g, gram_avg)))
            .unzip();
        let idf = |df: usize| (1.0 + (n - df as f32 + 0.5) / (df as f32 + 0.5)).ln();
        let slots = self.docs.len();
        let mut total = vec![0f32; slots];
        let mut matched = vec![false; slots];
        // Per word, reset between words (sized to the document numbers,
        // which stay dense: at most the number of indexed documents plus
        // the free numbers below the highest).
        let mut stem_best = vec![0f32; slots];
        let mut gram_sum = vec![0f32; slots];
        let mut gram_hits = vec![0u32; slots];
        let mut touched: Vec<u32> = Vec::new();
        for word in &query.words {
            touched.clear();
            for stem in &word.stems {
                let Some(p) = self.postings_of(&Term::Word(stem.as_str().into())) else {
                    continue;
                };
                let w = idf(p.docs.len());
                for (d, tf) in p.iter() {
                    let s = w * bm25_tf(tf, word_norm[d as usize]);
                    let best = &mut stem_best[d as usize];
                    if *best == 0.0 {
                        touched.push(d);
                    }
                    *best = best.max(s);
                }
            }
            let grams = word.grams.len() as f32;
            for g in &word.grams {
                let Some(p) = self.postings_of(&Term::Gram(*g)) else {
                    continue;
                };
                let w = idf(p.docs.len());
                for (d, tf) in p.iter() {
                    if gram_hits[d as usize] == 0 && stem_best[d as usize] == 0.0 {
                        touched.push(d);
                    }
                    gram_hits[d as usize] += 1;
                    gram_sum[d as usize] += w * bm25_tf(tf, gram_norm[d as usize]) / grams;
                }
            }
            for &d in &touched {
                let i = d as usize;
                let exact = stem_best[i] > 0.0;
                let coverage = if grams > 0.0 {
                    gram_hits[i] as f32 / grams
                } else {
                    0.0
                };
                if exact || coverage >= TRIGRAM_COVERAGE_MIN {
                    total[i] += stem_best[i] + TRIGRAM_WEIGHT * gram_sum[i];
                    matched[i] = true;
                }
                stem_best[i] = 0.0;
                gram_sum[i] = 0.0;
                gram_hits[i] = 0;
            }
        }
        matched
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| (i as u32, total[i]))
            .collect()
    }

    /// Takes the `take` best of `items` out, in rank order (score
    /// descending, ties by key), leaving the rest (unordered) in `items`.
    ///
    /// Selects by score alone first (no key is read), then orders runs of
    /// equal scores by key with the keys copied out once: many posts share
    /// a score (same words, same length), and comparing their keys in
    /// place would read a document per comparison.
    fn take_best(&self, items: &mut Vec<(u32, f32)>, take: usize) -> Vec<(u32, f32)> {
        let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        let mut end = items.len();
        if take > 0 && take < items.len() {
            items.select_nth_unstable_by(take - 1, by_score);
            // Every item scoring the same as the last one taken joins the
            // window: which of them go first is decided by key below.
            let last = items[take - 1].1;
            end = take;
            for i in take..items.len() {
                if items[i].1.total_cmp(&last).is_eq() {
                    items.swap(i, end);
                    end += 1;
                }
            }
        }
        let mut window: Vec<(u32, f32)> = items.drain(..end).collect();
        window.sort_unstable_by(by_score);
        let mut start = 0;
        while start < window.len() {
            let score = window[start].1;
            let run = window[start..]
                .iter()
                .take_while(|x| x.1.total_cmp(&score).is_eq())
                .count();
            if run > 1 {
                let needed = take.saturating_sub(start).min(run);
                let mut keyed: Vec<(Option<K>, u32)> = window[start..start + run]
                    .iter()
                    .map(|&(d, _)| (self.key_of(d), d))
                    .collect();
                // Only the run that straddles `take` is cut: its first
                // `needed` by key are kept in order, the rest go back.
                if needed > 0 && needed < run {
                    keyed.select_nth_unstable(needed - 1);
                }
                keyed[..needed].sort_unstable();
                for (slot, (_, d)) in window[start..start + run].iter_mut().zip(keyed) {
                    slot.0 = d;
                }
            }
            start += run;
        }
        if window.len() > take {
            items.extend(window.drain(take..));
        }
        window
    }

    /// The ranked answer to `query` over the documents `accept` lets
    /// through: exactly `rank(self.scores(query, accept),
    /// &self.containing(&query.needle, accept), limit)`, at a fraction of
    /// the cost on a large index.
    ///
    /// The scored matches are walked best first, in growing windows
    /// (selection, then a sort of the window only), and `accept` (a post
    /// lookup in the node) runs only on the ones that could be kept. When
    /// the scored matches already hold `limit` substring hits, the answer
    /// is those and nothing else is read: the common case of a query word
    /// many posts contain. Otherwise every other document is scanned for
    /// the substring, once, with a prebuilt searcher.
    pub fn search(
        &self,
        query: &Query,
        mut accept: impl FnMut(&K) -> bool,
        limit: usize,
    ) -> Vec<Hit<K>> {
        if limit == 0 {
            return Vec::new();
        }
        let needle = Needle::new(&query.needle);
        let mut matches = self.matches(query);
        let mut scored_docs = vec![false; self.docs.len()];
        for &(d, _) in &matches {
            scored_docs[d as usize] = true;
        }
        // The scored hits kept so far, in rank order: every accepted
        // substring hit, and the first `limit` accepted others.
        let mut kept: Vec<Hit<K>> = Vec::new();
        let (mut subs, mut others) = (0usize, 0usize);
        let mut window = limit.saturating_mul(4).max(16);
        'walk: while !matches.is_empty() {
            for (d, score) in self.take_best(&mut matches, window) {
                let Some(doc) = self.docs[d as usize].as_ref() else {
                    continue;
                };
                let substring = needle.is_in(&doc.lower);
                if (substring || others < limit) && accept(&doc.key) {
                    kept.push(Hit {
                        key: doc.key,
                        score,
                        substring,
                    });
                    if substring {
                        subs += 1;
                        if subs == limit {
                            break 'walk;
                        }
                    } else {
                        others += 1;
                    }
                }
            }
            window = window.saturating_mul(2);
        }
        let unscored: Vec<K> = if subs == limit {
            Vec::new()
        } else {
            let mut found: Vec<K> = self
                .docs
                .iter()
                .enumerate()
                .filter(|(d, _)| !scored_docs[*d])
                .filter_map(|(_, doc)| doc.as_ref())
                .filter(|doc| needle.is_in(&doc.lower))
                .map(|doc| doc.key)
                .filter(|k| accept(k))
                .collect();
            found.sort_unstable();
            found
        };
        // `rank`'s rule: substring hits first claim their places, up to
        // `limit`; the others fill what is left.
        let subs_kept = (subs + unscored.len()).min(limit);
        let others_max = limit - subs_kept;
        let mut others_seen = 0usize;
        kept.retain(|h| {
            if h.substring {
                return true;
            }
            others_seen += 1;
            others_seen <= others_max
        });
        kept.extend(unscored.into_iter().take(subs_kept - subs).map(|key| Hit {
            key,
            score: 0.0,
            substring: true,
        }));
        kept
    }
}

/// BM25's length part for a document of `len` against the mean `avg`:
/// `K1 * (1 - B + B * len / avg)`.
fn length_norm(len: u32, avg: f32) -> f32 {
    K1 * (1.0 - B + B * (len as f32 / avg))
}

/// BM25's saturating, length-normalised term frequency, given the
/// document's [`length_norm`].
fn bm25_tf(tf: u32, norm: f32) -> f32 {
    let tf = tf as f32;
    tf * (K1 + 1.0) / (tf + norm)
}

/// The final list: BM25 hits and substring hits together, best score
/// first, ties by key, at most `limit`. Every substring hit is kept (the
/// seed rule) as long as there are no more than `limit` of them: when the
/// list is cut, BM25-only hits make room for them. A substring hit the
/// index did not score (the match lies past the indexed start of the body,
/// or inside a word) gets score 0 and comes last.
pub fn rank<K: Ord + Copy>(
    scored: Vec<(K, f32)>,
    substring: &BTreeSet<K>,
    limit: usize,
) -> Vec<Hit<K>> {
    let mut all: Vec<Hit<K>> = scored
        .into_iter()
        .map(|(key, score)| Hit {
            key,
            score,
            substring: substring.contains(&key),
        })
        .collect();
    let scored_subs = all.iter().filter(|h| h.substring).count();
    if scored_subs < substring.len() {
        let have: BTreeSet<K> = all.iter().filter(|h| h.substring).map(|h| h.key).collect();
        all.extend(substring.difference(&have).map(|&key| Hit {
            key,
            score: 0.0,
            substring: true,
        }));
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
    }
    let subs_kept = substring.len().min(limit);
    let others_max = limit - subs_kept;
    let (mut subs, mut others) = (0usize, 0usize);
    all.retain(|h| {
        let keep = if h.substring {
            subs < subs_kept
        } else {
            others < others_max
        };
        if keep {
            if h.substring {
                subs += 1;
            } else {
                others += 1;
            }
        }
        keep
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc<'a>(title: &'a str, body: &'a str) -> Document<'a> {
        Document {
            title,
            body,
            tags: &[],
        }
    }

    fn keys(index: &SearchIndex<u32>, q: &str) -> Vec<u32> {
        index
            .scores(&index.query(q), |_| true)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The ASCII fast path agrees with lowercasing and `contains`.
    #[test]
    fn contains_lowercase_agrees_with_to_lowercase() {
        let cases = [
            ("Need a LADDER", "ladder"),
            ("Need a LADDER", "ladders"),
            ("Schlüssel GEFUNDEN", "schlüssel"),
            ("Schlüssel", "schlussel"),
            ("abc", ""),
            ("", "a"),
            ("ab", "abc"),
        ];
        for (h, n) in cases {
            assert_eq!(
                contains_lowercase(h, n),
                h.to_lowercase().contains(n),
                "{h:?} / {n:?}"
            );
        }
    }

    /// The prepared-text scan finds exactly the documents the field-by-field
    /// rule does: non-ASCII, tags past the indexed ones, the end of a long
    /// body, and a needle spanning two fields (which matches neither).
    #[test]
    fn containing_agrees_with_document_contains() {
        let tags: Vec<String> = (0..20).map(|i| format!("Tag{i}")).collect();
        let long_body = format!("{} GRÜNER Kanister", "x ".repeat(2000));
        let docs: Vec<(&str, &str, &[String])> = vec![
            ("Need a LADDER", "for the weekend", &[]),
            ("Schlüssel GEFUNDEN", "am Spielplatz", &[]),
            ("ΣΟΦΊΑ", "Straße", &[]),
            ("Bread", &long_body, &tags),
        ];
        let mut index = SearchIndex::new(Stemming::Both);
        for (i, (title, body, tags)) in docs.iter().enumerate() {
            index.insert(i as u32, Document { title, body, tags });
        }
        for needle in [
            "ladder",
            "schlüssel",
            "straße",
            "σοφία",
            "grüner kanister",
            "tag19",
            "ladder\0for",
            "weekend",
            "der\0am",
            "x",
            "",
        ] {
            let want: BTreeSet<u32> = docs
                .iter()
                .enumerate()
                .filter(|(_, (title, body, tags))| Document { title, body, tags }.contains(needle))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(index.containing(needle, |_| true), want, "{needle:?}");
        }
        assert!(index.containing("ladder\0for", |_| true).is_empty());
        assert_eq!(index.containing("tag19", |_| true), BTreeSet::from([3]));
        assert!(index.containing("bread", |k| *k != 3).is_empty());
    }

    /// Removing every document leaves no term and no document number behind.
    #[test]
    fn removing_everything_empties_the_index() {
        let mut index = SearchIndex::new(Stemming::Both);
        index.insert(1, doc("Leiter zu verleihen", "Alu, 3 m"));
        index.insert(2, doc("Ladder", "for the weekend"));
        index.insert(1, doc("Leiter verliehen", ""));
        assert_eq!(index.len(), 2);
        assert!(index.remove(&1));
        assert!(index.remove(&2));
        assert!(!index.remove(&2));
        assert_eq!(index.term_count(), 0);
        assert!(index.docs.is_empty() && index.free_docs.is_empty());
        assert_eq!((index.word_len_total, index.gram_len_total), (0, 0));
    }

    /// A word in the title outranks the same word in the body.
    #[test]
    fn title_outranks_body() {
        let mut index = SearchIndex::new(Stemming::Both);
        index.insert(1, doc("Offer", "I can lend a drill this week"));
        index.insert(2, doc("Drill to lend", "this week"));
        index.insert(3, doc("Bread", "fresh sourdough"));
        assert_eq!(keys(&index, "drill"), vec![2, 1]);
    }

    /// `search` answers exactly what the reference rule does (`rank` of
    /// every score and every substring hit), for random documents,
    /// queries, filters and limits: including windows past the first, a
    /// filter that hides hits, limits above the hit count and queries
    /// found only as substrings.
    #[test]
    fn search_equals_rank_of_scores_and_substrings() {
        use proptest::prelude::*;
        const WORDS: [&str; 12] = [
            "ladder",
            "ladders",
            "leiter",
            "drill",
            "bohrmaschine",
            "soup",
            "suppe",
            "wasser",
            "kanister",
            "wasserkanister",
            "the",
            "x",
        ];
        let word = proptest::sample::select(WORDS.to_vec());
        let text = proptest::collection::vec(word.clone(), 0..6).prop_map(|w| w.join(" "));
        let docs = proptest::collection::vec((text.clone(), text), 1..120);
        let query = prop_oneof![
            word.prop_map(str::to_owned),
            proptest::collection::vec(proptest::sample::select(WORDS.to_vec()), 1..3)
                .prop_map(|w| w.join(" ")),
            Just("ass".to_owned()),
            Just("r l".to_owned()),
        ];
        let config = ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest::test_runner::TestRunner::new(config)
            .run(
                &(docs, query, 0usize..40, 1u32..4),
                |(docs, query, limit, hide)| {
                    let mut index = SearchIndex::new(Stemming::Both);
                    for (i, (title, body)) in docs.iter().enumerate() {
                        index.insert(i as u32, doc(title, body));
                    }
                    let q = index.query(&query);
                    let accept = |k: &u32| hide == 1 || k % hide == 1;
                    let want = rank(
                        index.scores(&q, accept),
                        &index.containing(&q.needle, accept),
                        limit,
                    );
                    prop_assert_eq!(index.search(&q, accept, limit), want);
                    Ok(())
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The seed rule keeps substring hits when the list is cut.
    #[test]
    fn rank_keeps_substring_hits_within_the_limit() {
        let scored = vec![(1u32, 3.0), (2, 2.0), (3, 1.0)];
        let subs: BTreeSet<u32> = [3, 9].into();
        let hits = rank(scored, &subs, 3);
        let keys: Vec<u32> = hits.iter().map(|h| h.key).collect();
        assert_eq!(keys, vec![1, 3, 9]);
        assert_eq!(hits[2].score, 0.0);
    }
}
