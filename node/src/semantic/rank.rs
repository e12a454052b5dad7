//! The arithmetic of ranking by meaning: cosine top-k and reciprocal rank
//! fusion. Pure and deterministic: ties go to the smaller key.

use std::cmp::Ordering;

/// RRF's constant: damps the weight of the very first ranks so one list
/// cannot dominate (60 is the value of Cormack et al. and most engines).
pub const RRF_K: f32 = 60.0;

/// Dot product; with L2-normalised vectors this is the cosine.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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

    /// Cosine of normalised vectors is their dot product.
    #[test]
    fn dot_is_cosine_of_unit_vectors() {
        assert!((dot(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert!(dot(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    }
}
