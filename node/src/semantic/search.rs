//! `market.search` for the local user, by meaning where a model is
//! reachable (issue 13, M06 §4.3).
//!
//! 1. The keyword answer comes from the core (BM25 with the substring
//!    rule): it is the fallback, and one half of the hybrid.
//! 2. The query is embedded by this node's model, else by the closest
//!    member peer that offers `embed.text` (closest by the round trip of
//!    its `node.capabilities` answer), failing over to the next one.
//! 3. The live posts passing the filters are scored by cosine against their
//!    cached vectors; posts without one are embedded by the same provider,
//!    up to [`INLINE_EMBED_MAX`] per search (the warmer does the rest in
//!    the background, so the first search after a restart stays quick).
//! 4. `hybrid` (the default) fuses the semantic and keyword rankings
//!    ([`super::rank::HYBRID`]: a score-normalised linear mix); `semantic`
//!    returns the cosine ranking alone.
//! 5. No provider answered: the keyword results, `mode: "keyword"`,
//!    `degraded: "partition"` (DESIGN.md's code), and a warning in the log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::{Category, NodeId, PostContent};
use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tracing::{debug, info_span, warn, Instrument};

use super::cache::{VectorCache, VectorKey};
use super::rank::{dot, top_k, Fused, HYBRID};
use super::{
    post_text, EmbedText, EmbedTextParams, EmbedTextResult, EMBED_TEXT, TEXTS_PER_CALL_MAX,
};
use crate::core::bus::BusError;
use crate::core::search::Document;
use crate::core::services::market::{
    ListSearch, PostView, SearchHit, SearchMode, SearchParams, SearchResult, LIST, SEARCH_LIMIT_MAX,
};
use crate::core::views::market::{ListQuery, MarketView, PostKey};
use crate::core::ErrorCode;
use crate::net::driver::Handle;

/// Post texts embedded while a search waits: 8 batches, well under a
/// second on a provider; the rest are left to the warmer.
pub const INLINE_EMBED_MAX: usize = 8 * TEXTS_PER_CALL_MAX;
/// Post texts the warmer embeds per round.
pub const WARM_BATCH_MAX: usize = 8 * TEXTS_PER_CALL_MAX;
/// How often the warmer looks for posts without vectors.
pub const WARM_INTERVAL: Duration = Duration::from_secs(2);
/// A peer's answer to `node.capabilities` is trusted this long.
pub const PROVIDER_CHECK_TTL: Duration = Duration::from_secs(300);
/// Peers asked for their capabilities per search (each one a round trip).
pub const PROVIDER_PROBES_MAX: usize = 8;
/// Candidates the semantic ranking keeps before fusion.
pub const SEMANTIC_DEPTH: usize = 100;
/// The bus call that lists what a node serves (answered by the driver).
pub const NODE_CAPABILITIES: &str = "node.capabilities";

/// A live post that a search may rank: its name, the key of its content
/// (which changes with every update) and the content, shared not copied.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub key: PostKey,
    pub vector_key: VectorKey,
    /// Lamport time of its content: the newest are embedded first when
    /// not all missing vectors can be made at once.
    pub lamport: u64,
    pub content: Arc<PostContent>,
}

/// The live posts passing `category` and `tags`: what the semantic ranking
/// scores. Read by the driver from its view (cheap: no text is copied).
pub fn candidates(
    market: &MarketView,
    now_ms: u64,
    category: Option<Category>,
    tags: &[String],
) -> Vec<Candidate> {
    market
        .live_posts(now_ms)
        .filter(|p| category.is_none_or(|c| p.content.category == c))
        .filter(|p| tags.iter().all(|t| p.content.tags.contains(t)))
        .map(|p| Candidate {
            key: p.key(),
            vector_key: (p.id, p.content_event.hash),
            lamport: p.content_event.lamport,
            content: p.content.clone(),
        })
        .collect()
}

/// A post and its vector.
type Scored = (PostKey, Arc<[f32]>);

/// Who embeds for this node.
#[derive(Debug, Clone)]
enum Provider {
    Local(Arc<EmbedText>),
    Peer(PeerId),
}

#[derive(Debug, Clone, Copy)]
struct PeerInfo {
    offers: bool,
    rtt: Duration,
    checked: Instant,
}

/// Answers `market.search` for the local user; one per running node.
pub struct Searcher {
    handle: Handle,
    local: Option<Arc<EmbedText>>,
    cache: Mutex<VectorCache>,
    peers: Mutex<BTreeMap<PeerId, PeerInfo>>,
    /// Whether the last search had to fall back (a warning once per change,
    /// not per search).
    degraded: Mutex<bool>,
    metrics: CacheMetrics,
}

/// Vector cache lookups by searches, in `/metrics`
/// (`hearth_search_vector_cache_{hits,misses}_total`): a hit is a post
/// vector found in memory or on disk, a miss one that had to be embedded.
/// The warmer's lookups are not counted: they say nothing of how warm the
/// cache is when a user searches.
#[derive(Debug, Clone, Default)]
struct CacheMetrics {
    hits: Counter,
    misses: Counter,
}

impl CacheMetrics {
    fn register(handle: &Handle) -> CacheMetrics {
        let m = CacheMetrics::default();
        let mut registry = crate::net::driver::lock_registry(&handle.metrics);
        let r = registry.sub_registry_with_prefix("hearth");
        r.register(
            "search_vector_cache_hits",
            "Post vectors a search found cached (memory or disk)",
            m.hits.clone(),
        );
        r.register(
            "search_vector_cache_misses",
            "Post vectors a search had to embed (not cached)",
            m.misses.clone(),
        );
        m
    }
}

impl std::fmt::Debug for Searcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Searcher")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Searcher {
    pub fn new(handle: Handle, local: Option<Arc<EmbedText>>, cache: VectorCache) -> Searcher {
        let metrics = CacheMetrics::register(&handle);
        Searcher {
            metrics,
            handle,
            local,
            cache: Mutex::new(cache),
            peers: Mutex::new(BTreeMap::new()),
            degraded: Mutex::new(false),
        }
    }

    /// The cache's counters (tests, metrics).
    pub fn cache_stats(&self) -> super::cache::CacheStats {
        lock(&self.cache).stats()
    }

    pub fn cache_len(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Serves one `market.search` call from its CBOR params.
    pub async fn serve(&self, params: ciborium::Value) -> Result<ciborium::Value, BusError> {
        let request: SearchParams = params
            .deserialized()
            .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))?;
        let result = self
            .search(request)
            .instrument(info_span!("search"))
            .await?;
        ciborium::Value::serialized(&result).map_err(BusError::internal)
    }

    /// Serves a local `market.list` with `q`: the hybrid search (keyword
    /// and `degraded` when no provider answers) picks and orders the hits,
    /// at most [`SEARCH_LIMIT_MAX`]; the core pages them with the
    /// listing's filters (`Node::market_list_ranked`).
    pub async fn list(&self, params: ciborium::Value) -> Result<ciborium::Value, BusError> {
        let query: ListQuery = params
            .deserialized()
            .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))?;
        let Some(text) = query.q.clone() else {
            return self.handle.call_core(LIST, params).await;
        };
        if self.providers().await.is_empty() {
            // Keyword only: the core searches and pages in one call (no
            // views of every hit made, encoded and decoded in between),
            // and the answer says why it is not by meaning.
            self.note_degraded(true, &no_provider().message);
            let mut page = self.handle.call_core(LIST, params).await?;
            mark_partition(&mut page);
            return Ok(page);
        }
        let found = self
            .search(SearchParams {
                query: text,
                limit: Some(SEARCH_LIMIT_MAX),
                ..SearchParams::default()
            })
            .await?;
        let ranked = found.results.iter().map(|h| key_of(&h.post)).collect();
        let search = ListSearch {
            mode: found.mode,
            degraded: found.degraded,
        };
        let page = self.handle.list_ranked(query, ranked, search).await?;
        ciborium::Value::serialized(&page).map_err(BusError::internal)
    }

    pub async fn search(&self, request: SearchParams) -> Result<SearchResult, BusError> {
        let keyword = self.keyword(&request).await?;
        if request.mode == SearchMode::Keyword {
            return Ok(keyword);
        }
        match self.semantic(&request).await {
            Ok(ranked) => {
                self.note_degraded(false, "");
                let limit = keyword_limit(&request);
                let keys: Vec<(PostKey, f32)> = match request.mode {
                    SearchMode::Semantic => ranked.into_iter().take(limit).collect(),
                    _ => {
                        let words: Vec<(PostKey, f32)> = keyword
                            .results
                            .iter()
                            .map(|h| (key_of(&h.post), h.score))
                            .collect();
                        let needle = request.query.trim().to_lowercase();
                        let verbatim: Vec<PostKey> = keyword
                            .results
                            .iter()
                            .filter(|h| {
                                Document {
                                    title: &h.post.title,
                                    body: &h.post.body,
                                    tags: &h.post.tags,
                                }
                                .contains(&needle)
                            })
                            .map(|h| key_of(&h.post))
                            .collect();
                        Fused {
                            semantic: &ranked,
                            keyword: &words,
                            verbatim: &verbatim,
                        }
                        .rank(HYBRID, limit)
                    }
                };
                let mut views = self.views(keys.iter().map(|(k, _)| *k).collect()).await?;
                Ok(SearchResult {
                    mode: request.mode.as_str().into(),
                    degraded: None,
                    results: keys
                        .into_iter()
                        .filter_map(|(k, score)| {
                            views.remove(&k).map(|post| SearchHit { post, score })
                        })
                        .collect(),
                })
            }
            Err(e) => {
                self.note_degraded(true, &e.message);
                Ok(SearchResult {
                    degraded: Some(ErrorCode::Partition.as_str().into()),
                    ..keyword
                })
            }
        }
    }

    fn note_degraded(&self, now: bool, why: &str) {
        let mut was = lock(&self.degraded);
        if *was != now {
            if now {
                warn!(
                    why,
                    "no embedding provider answered: search is keyword-only"
                );
            } else {
                tracing::info!("an embedding provider answers again: search ranks by meaning");
            }
            *was = now;
        }
    }

    async fn keyword(&self, r: &SearchParams) -> Result<SearchResult, BusError> {
        let value = ciborium::Value::serialized(r).map_err(BusError::internal)?;
        self.handle
            .call_core(crate::core::services::market::SEARCH, value)
            .await?
            .deserialized()
            .map_err(BusError::internal)
    }

    /// The candidates ranked by cosine, best first (at most
    /// [`SEMANTIC_DEPTH`]), or why no provider could embed the query.
    async fn semantic(&self, r: &SearchParams) -> Result<Vec<(PostKey, f32)>, BusError> {
        // Before the candidates: with no provider, copying every live
        // post out of the driver (and looking each up in the cache) would
        // be the whole cost of a search that then falls back anyway.
        let providers = self.providers_or_partition().await?;
        let tags: Vec<String> = r.tags.iter().map(|t| t.trim().to_lowercase()).collect();
        let mut candidates = self
            .handle
            .search_candidates(r.category, tags.clone())
            .await?;
        if r.near.is_some() {
            candidates.retain(|c| r.admits_content(&tags, &c.content));
        }
        let (known, missing) = self.split_cached(&candidates);
        self.metrics.hits.inc_by(known.len() as u64);
        self.metrics.misses.inc_by(missing.len() as u64);
        let inline: Vec<&Candidate> = missing.into_iter().take(INLINE_EMBED_MAX).collect();
        let mut texts = vec![r.query.trim().to_owned()];
        texts.extend(
            inline
                .iter()
                .map(|c| post_text(&c.content.title, &c.content.body)),
        );
        let (model, vectors) = self.embed_anywhere(providers, texts.clone()).await?;
        let mut vectors = vectors.into_iter();
        let query = vectors
            .next()
            .ok_or_else(|| BusError::internal("the provider returned no vectors"))?;
        let mut scored: Vec<(PostKey, f32)> = Vec::with_capacity(candidates.len());
        {
            let mut cache = lock(&self.cache);
            cache.use_model(&model);
            for ((c, v), text) in inline.iter().zip(vectors).zip(texts.iter().skip(1)) {
                let v: Arc<[f32]> = Arc::from(v);
                scored.push((c.key, dot(&query, &v)));
                cache.put(c.vector_key, text, v);
            }
        }
        scored.extend(known.into_iter().map(|(key, v)| (key, dot(&query, &v))));
        Ok(top_k(scored, SEMANTIC_DEPTH))
    }

    /// Candidates with a cached vector (memory or disk), and the rest,
    /// newest first.
    fn split_cached<'a>(&self, candidates: &'a [Candidate]) -> (Vec<Scored>, Vec<&'a Candidate>) {
        let mut cache = lock(&self.cache);
        let mut known = Vec::with_capacity(candidates.len());
        let mut missing: Vec<&Candidate> = Vec::new();
        for c in candidates {
            match cache.get(&c.vector_key, || {
                post_text(&c.content.title, &c.content.body)
            }) {
                Some(v) => known.push((c.key, v)),
                None => missing.push(c),
            }
        }
        missing.sort_by_key(|c| (std::cmp::Reverse(c.lamport), c.key));
        (known, missing)
    }

    /// Embeds `texts` (at most [`INLINE_EMBED_MAX`] + 1) with the first
    /// provider that answers: this node's model, else peers by round trip.
    async fn embed_anywhere(
        &self,
        providers: Vec<Provider>,
        texts: Vec<String>,
    ) -> Result<(String, Vec<Vec<f32>>), BusError> {
        let mut last = no_provider();
        for provider in providers {
            match self.embed_with(&provider, &texts).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    debug!(?provider, error = %e.message, "embedding provider failed; next");
                    if let Provider::Peer(peer) = provider {
                        lock(&self.peers).remove(&peer);
                    }
                    last = BusError::new(ErrorCode::Partition, e.message);
                }
            }
        }
        Err(last)
    }

    async fn embed_with(
        &self,
        provider: &Provider,
        texts: &[String],
    ) -> Result<(String, Vec<Vec<f32>>), BusError> {
        let mut model = String::new();
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(TEXTS_PER_CALL_MAX) {
            let params = EmbedTextParams {
                texts: batch.to_vec(),
            };
            let answer: EmbedTextResult = match provider {
                Provider::Local(embed) => {
                    let embed = embed.clone();
                    tokio::task::spawn_blocking(move || embed.run(&params))
                        .await
                        .map_err(BusError::internal)??
                }
                Provider::Peer(peer) => {
                    let value = ciborium::Value::serialized(&params).map_err(BusError::internal)?;
                    self.handle
                        .remote_call(*peer, EMBED_TEXT, value)
                        .await?
                        .deserialized()
                        .map_err(|e| BusError::bad_request(format!("embed.text answer: {e}")))?
                }
            };
            if answer.vectors.len() != batch.len() || (!model.is_empty() && model != answer.model) {
                return Err(BusError::bad_request(format!(
                    "embed.text answered {} vectors of model {:?} for {} texts",
                    answer.vectors.len(),
                    answer.model,
                    batch.len()
                )));
            }
            model = answer.model;
            out.extend(answer.vectors.into_iter().map(normalised));
        }
        Ok((model, out))
    }

    /// [`Self::providers`], or `partition` when there is none.
    async fn providers_or_partition(&self) -> Result<Vec<Provider>, BusError> {
        let providers = self.providers().await;
        if providers.is_empty() {
            return Err(no_provider());
        }
        Ok(providers)
    }

    /// This node's model, then member peers offering `embed.text`, closest
    /// first. Peers not asked lately are asked (a few per search).
    async fn providers(&self) -> Vec<Provider> {
        if let Some(local) = &self.local {
            return vec![Provider::Local(local.clone())];
        }
        // Not `status()`: that probes the store (a write) on every call.
        let Some(peers) = self.handle.peers().await else {
            return Vec::new();
        };
        let members: Vec<(PeerId, NodeId)> = peers
            .iter()
            .filter_map(|p| Some((p.peer_id.parse::<PeerId>().ok()?, p.node_id?)))
            .collect();
        let stale: Vec<PeerId> = {
            let known = lock(&self.peers);
            members
                .iter()
                .filter(|(peer, _)| {
                    known
                        .get(peer)
                        .is_none_or(|i| i.checked.elapsed() > PROVIDER_CHECK_TTL)
                })
                .map(|(peer, _)| *peer)
                .take(PROVIDER_PROBES_MAX)
                .collect()
        };
        let probes = stale.into_iter().map(|peer| async move {
            let started = Instant::now();
            let answer = self
                .handle
                .remote_call(peer, NODE_CAPABILITIES, ciborium::Value::Null)
                .await;
            let offers = answer
                .ok()
                .and_then(|v| v.deserialized::<Capabilities>().ok())
                .is_some_and(|c| c.capabilities.iter().any(|n| n == EMBED_TEXT));
            (peer, offers, started.elapsed())
        });
        let results = futures::future::join_all(probes).await;
        let mut known = lock(&self.peers);
        for (peer, offers, rtt) in results {
            known.insert(
                peer,
                PeerInfo {
                    offers,
                    rtt,
                    checked: Instant::now(),
                },
            );
        }
        let mut offering: Vec<(Duration, PeerId)> = members
            .iter()
            .filter_map(|(peer, _)| known.get(peer).filter(|i| i.offers).map(|i| (i.rtt, *peer)))
            .collect();
        offering.sort();
        offering
            .into_iter()
            .map(|(_, p)| Provider::Peer(p))
            .collect()
    }

    async fn views(&self, keys: Vec<PostKey>) -> Result<BTreeMap<PostKey, PostView>, BusError> {
        Ok(self
            .handle
            .post_views(keys)
            .await?
            .into_iter()
            .map(|v| (key_of(&v), v))
            .collect())
    }

    /// One round of background warming: embeds up to [`WARM_BATCH_MAX`]
    /// live posts that have no vector yet. Returns how many it embedded.
    pub async fn warm_once(&self) -> Result<usize, BusError> {
        let providers = self.providers_or_partition().await?;
        let candidates = self.handle.search_candidates(None, Vec::new()).await?;
        let missing: Vec<Candidate> = {
            let (_, missing) = self.split_cached(&candidates);
            missing.into_iter().take(WARM_BATCH_MAX).cloned().collect()
        };
        if missing.is_empty() {
            return Ok(0);
        }
        let texts: Vec<String> = missing
            .iter()
            .map(|c| post_text(&c.content.title, &c.content.body))
            .collect();
        let (model, vectors) = self.embed_anywhere(providers, texts.clone()).await?;
        let mut cache = lock(&self.cache);
        cache.use_model(&model);
        for ((c, v), text) in missing.iter().zip(vectors).zip(&texts) {
            cache.put(c.vector_key, text, Arc::from(v));
        }
        Ok(missing.len())
    }

    /// Warms the cache every [`WARM_INTERVAL`] until the node stops.
    pub async fn warm_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WARM_INTERVAL).await;
            match self.warm_once().await {
                Ok(n) if n > 0 => debug!(embedded = n, "search cache warmed"),
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::Unavailable => return,
                Err(_) => {} // no provider now: the next round tries again
            }
        }
    }
}

/// Sets `search.degraded` of an encoded
/// [`ListResult`](crate::core::services::market::ListResult) to `partition`, in
/// place: decoding and re-encoding a page of posts to change one field
/// costs more than the keyword search it reports on.
fn mark_partition(page: &mut ciborium::Value) {
    let ciborium::Value::Map(entries) = page else {
        return;
    };
    let Some((_, ciborium::Value::Map(search))) = entries
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some("search"))
    else {
        return;
    };
    let partition = ciborium::Value::Text(ErrorCode::Partition.as_str().into());
    match search
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some("degraded"))
    {
        Some((_, v)) => *v = partition,
        None => search.push((ciborium::Value::Text("degraded".into()), partition)),
    }
}

fn no_provider() -> BusError {
    BusError::new(
        ErrorCode::Partition,
        "no member peer that offers embed.text is connected",
    )
}

/// What `node.capabilities` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capabilities {
    pub capabilities: Vec<String>,
}

fn key_of(v: &PostView) -> PostKey {
    PostKey {
        author: v.author,
        id: v.id,
    }
}

fn keyword_limit(r: &SearchParams) -> usize {
    r.limit
        .unwrap_or(crate::core::services::market::SEARCH_LIMIT_DEFAULT)
        .min(crate::core::services::market::SEARCH_LIMIT_MAX)
}

/// A provider's vector, L2-normalised here too: a peer's answer is not
/// trusted to be, and cosine needs it.
fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm.is_finite() && norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
    v
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::services::market::ListResult;
    use crate::core::views::market::Facets;

    fn page(search: Option<ListSearch>) -> ciborium::Value {
        let page = ListResult {
            posts: Vec::new(),
            max_lamport: 7,
            next_cursor: None,
            total: 0,
            facets: Facets::default(),
            search,
        };
        ciborium::Value::serialized(&page).unwrap()
    }

    /// A keyword page gets `degraded: partition` and nothing else changes;
    /// a page without a search is left as it is.
    #[test]
    fn mark_partition_sets_only_the_search_degraded_field() {
        let mut v = page(Some(ListSearch {
            mode: "keyword".into(),
            degraded: None,
        }));
        mark_partition(&mut v);
        let got: ListResult = v.deserialized().unwrap();
        let search = got.search.unwrap();
        assert_eq!(search.mode, "keyword");
        assert_eq!(search.degraded.as_deref(), Some("partition"));
        assert_eq!(got.max_lamport, 7);

        let mut plain = page(None);
        let before = plain.clone();
        mark_partition(&mut plain);
        assert_eq!(plain, before);
    }
}
