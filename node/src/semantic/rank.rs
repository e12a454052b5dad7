//! The arithmetic of ranking by meaning: cosine top-k and the fusions of
//! the semantic and keyword rankings. Pure and deterministic: ties go to the smaller key.

use std::cmp::Ordering;

/// RRF's constant: damps the weight of the very first ranks so one list
/// cannot dominate (60 is the value of Cormack et al. and most engines).
pub const RRF_K: f32 = 60.0;

/// Lanes of [`dot`]: independent partial sums the compiler keeps in one
/// SIMD register (a single running sum is a dependency chain it may not
/// reorder).
const DOT_LANES: usize = 8;

/// Dot product; with L2-normalised vectors this is the cosine. A search
/// takes one per candidate post (10k x 512 products), so it is summed in
/// [`DOT_LANES`] lanes; the rounding differs from a left-to-right sum by
/// float noise only.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; DOT_LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The `k` items with the highest score, best first; equal scores by key.
pub fn top_k<K: Ord + Clone>(
    scored: impl IntoIterator<Item = (K, f32)>,
    k: usize,
) -> Vec<(K, f32)> {
    let mut all: Vec<(K, f32)> = scored.into_iter().filter(|(_, s)| s.is_finite()).collect();
    let order = |a: &(K, f32), b: &(K, f32)| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    };
    if all.len() > k {
        all.select_nth_unstable_by(k, order);
        all.truncate(k);
    }
    all.sort_by(order);
    all
}

/// Reciprocal rank fusion of ranked lists (best first): each item scores
/// the sum of `1 / (RRF_K + rank)` over the lists it is in (rank from 1).
/// Best first; equal scores by key.
pub fn fuse<K: Ord + Clone>(lists: &[Vec<K>], k: usize) -> Vec<(K, f32)> {
    let mut scores: std::collections::BTreeMap<K, f32> = std::collections::BTreeMap::new();
    for list in lists {
        for (i, key) in list.iter().enumerate() {
            *scores.entry(key.clone()).or_default() += 1.0 / (RRF_K + (i + 1) as f32);
        }
    }
    top_k(scores, k)
}

/// How `hybrid` combines the semantic and keyword rankings (measured on
/// the relevance set: docs/decisions.md, "Search: hybrid fusion").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion with a weight per list: each item scores
    /// `w / (k + rank)` summed over the lists it is in.
    Rrf { k: f32, semantic: f32, keyword: f32 },
    /// Each list's scores min-max normalised to 0..=1 over its own items,
    /// then `alpha * semantic + (1 - alpha) * keyword` (0 where absent).
    Linear { alpha: f32 },
    /// The semantic ranking alone, unless a keyword hit contains the query
    /// verbatim (its keyword score is the substring rule's, see
    /// [`Fused::verbatim`]): then plain RRF.
    VerbatimGate { k: f32 },
}

/// The fusion `hybrid` uses: 0.7 x the min-max normalised cosine plus
/// 0.3 x the min-max normalised BM25. Picked as the best MRR among 15
/// fusions on the even-numbered queries of the relevance set, then
/// checked on the odd-numbered ones (tests/tests/relevance.rs,
/// docs/decisions.md "Search: hybrid fusion").
pub const HYBRID: Fusion = Fusion::Linear { alpha: 0.7 };

/// The inputs of a fusion: each list best first, with its scores, and the
/// keyword hits that contain the query as a substring.
#[derive(Debug, Clone)]
pub struct Fused<'a, K> {
    pub semantic: &'a [(K, f32)],
    pub keyword: &'a [(K, f32)],
    pub verbatim: &'a [K],
}

impl<K: Ord + Clone> Fused<'_, K> {
    /// The best `limit` items under `how`, best first, ties by key.
    pub fn rank(&self, how: Fusion, limit: usize) -> Vec<(K, f32)> {
        let mut scores: std::collections::BTreeMap<K, f32> = std::collections::BTreeMap::new();
        let mut rrf = |list: &[(K, f32)], k: f32, w: f32| {
            for (i, (key, _)) in list.iter().enumerate() {
                *scores.entry(key.clone()).or_default() += w / (k + (i + 1) as f32);
            }
        };
        match how {
            Fusion::Rrf {
                k,
                semantic,
                keyword,
            } => {
                rrf(self.semantic, k, semantic);
                rrf(self.keyword, k, keyword);
            }
            Fusion::VerbatimGate { k } => {
                rrf(self.semantic, k, 1.0);
                if !self.verbatim.is_empty() {
                    rrf(self.keyword, k, 1.0);
                }
            }
            Fusion::Linear { alpha } => {
                for (list, w) in [(self.semantic, alpha), (self.keyword, 1.0 - alpha)] {
                    let (lo, hi) = list.iter().fold((f32::MAX, f32::MIN), |(lo, hi), (_, s)| {
                        (lo.min(*s), hi.max(*s))
                    });
                    let span = hi - lo;
                    for (key, s) in list {
                        let norm = if span > 0.0 { (s - lo) / span } else { 1.0 };
                        *scores.entry(key.clone()).or_default() += w * norm;
                    }
                }
            }
        }
        top_k(scores, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-k keeps the best k in order, ties broken by key, NaN dropped.
    #[test]
    fn top_k_orders_by_score_then_key() {
        let got = top_k(
            vec![(3, 0.5), (1, 0.9), (2, 0.5), (4, f32::NAN), (5, 0.1)],
            3,
        );
        assert_eq!(got, vec![(1, 0.9), (2, 0.5), (3, 0.5)]);
        assert_eq!(top_k(vec![(1, 1.0)], 5), vec![(1, 1.0)]);
    }

    /// An item high in both lists beats one first in only one of them.
    #[test]
    fn fusion_rewards_agreement() {
        let semantic = vec!["a", "b", "c"];
        let keyword = vec!["b", "c", "d"];
        let fused = fuse(&[semantic, keyword], 10);
        let order: Vec<&str> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, vec!["b", "c", "a", "d"]);
        let expect_b = 1.0 / (RRF_K + 2.0) + 1.0 / (RRF_K + 1.0);
        assert!((fused[0].1 - expect_b).abs() < 1e-6);
    }

    /// Weighted RRF lets the semantic list outvote a keyword first place;
    /// the verbatim gate ignores the keyword list unless the query is
    /// found verbatim; the linear mix normalises each list's scores.
    #[test]
    fn fusion_variants_weigh_the_lists() {
        let semantic = [("a", 0.9), ("b", 0.5)];
        let keyword = [("b", 12.0), ("c", 3.0)];
        let f = Fused {
            semantic: &semantic,
            keyword: &keyword,
            verbatim: &[],
        };
        let order = |how| -> Vec<&str> { f.rank(how, 10).into_iter().map(|(k, _)| k).collect() };
        assert_eq!(order(HYBRID), vec!["a", "b", "c"]);
        let plain = Fusion::Rrf {
            k: RRF_K,
            semantic: 1.0,
            keyword: 1.0,
        };
        assert_eq!(order(plain), vec!["b", "a", "c"]);
        assert_eq!(order(Fusion::VerbatimGate { k: RRF_K }), vec!["a", "b"]);
        let gated = Fused {
            verbatim: &["c"],
            ..f.clone()
        };
        assert_eq!(gated.rank(Fusion::VerbatimGate { k: RRF_K }, 10).len(), 3);
        // b: 0.5 * 0 + 0.5 * 1; a: 0.5 * 1; c: 0.5 * 0 -> b and a tie, by key.
        assert_eq!(order(Fusion::Linear { alpha: 0.5 }), vec!["a", "b", "c"]);
        assert_eq!(order(Fusion::Linear { alpha: 0.2 }), vec!["b", "a", "c"]);
    }

    /// Cosine of normalised vectors is their dot product.
    #[test]
    fn dot_is_cosine_of_unit_vectors() {
        assert!((dot(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert!(dot(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    }

    /// The laned sum equals the plain one (up to float noise) for lengths
    /// around the lane width, and reads only the shorter slice's length.
    #[test]
    fn dot_equals_the_plain_sum() {
        for n in [0usize, 1, 7, 8, 9, 16, 17, 512, 515] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 10.0).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
            assert!((dot(&a, &b[..n / 2]) - dot(&a[..n / 2], &b)).abs() < 1e-6);
        }
    }
}
