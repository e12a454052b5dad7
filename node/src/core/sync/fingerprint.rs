//! Range fingerprints (DESIGN.md §5), the whole-log digest a store keeps
//! up to date as it inserts, and the salted short ids that sketches are
//! made of.

use hearth_proto::EventHash;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use super::FINGERPRINT_BYTES;

/// Incremental range fingerprint: the sum mod 2^256 of the item hashes (as
/// little-endian integers) and their count. Order-free, so one pass over
/// `store.keys(range)` suffices, and two accumulators of adjacent ranges can
/// be merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accumulator {
    sum: [u64; 4],
    count: u64,
}

impl Accumulator {
    pub fn add(&mut self, h: &EventHash) {
        let mut carry = 0u128;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h.0[i * 8..i * 8 + 8]);
            let v = u128::from(*limb) + u128::from(u64::from_le_bytes(w)) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        self.count += 1;
    }

    /// Adds the items of another (disjoint) range: the accumulator of the
    /// union.
    pub fn merge(&mut self, other: &Accumulator) {
        let mut carry = 0u128;
        for (limb, o) in self.sum.iter_mut().zip(other.sum) {
            let v = u128::from(*limb) + u128::from(o) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        self.count += other.count;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// SHA-256 of the session salt, the sum and the count, truncated to
    /// [`FINGERPRINT_BYTES`]. The salt changes every session, so a chance
    /// collision of truncated fingerprints cannot hide one difference
    /// twice.
    pub fn fingerprint(&self, salt: u64) -> [u8; FINGERPRINT_BYTES] {
        let mut h = Sha256::new();
        h.update(salt.to_le_bytes());
        for limb in self.sum {
            h.update(limb.to_le_bytes());
        }
        h.update(self.count.to_le_bytes());
        let mut out = [0u8; FINGERPRINT_BYTES];
        out.copy_from_slice(&h.finalize()[..FINGERPRINT_BYTES]);
        out
    }
}

/// 64-bit words of a [`LogDigest`]: 4,096 bits.
pub const LOG_DIGEST_WORDS: usize = 64;

/// The whole log's digest: the word-wise sum mod 2^64 of a 4,096-bit
/// expansion of each item hash (ChaCha20 keyed by the hash), an additive
/// multiset hash in the style of LtHash (Bellare-Micciancio's AdHash with a
/// wide group).
///
/// Why not the 256-bit sum of [`Accumulator`]: a session opens with the
/// fingerprint of the whole log computed from this cached value, so the
/// session salt is applied to the sum, not to each item. A chance collision
/// of truncated fingerprints still changes with every salt. A crafted one
/// would not: a member who finds two sets of events with equal sums could
/// hide one from the other in every session. For a 256-bit sum
/// Wagner's generalised birthday search finds such sets in about 2^32
/// work; for a 4,096-bit group it takes about 2^(2*sqrt(4096)) = 2^128
/// (and a lattice (SIS) attack on 64 words mod 2^64 would need a basis
/// reduction far beyond reach). So a difference still cannot be hidden
/// twice, as with per-item salting; the assumption is now the collision
/// resistance of this additive hash rather than a per-session salt.
///
/// Updated per insert (one 512-byte ChaCha20 block run, well under a
/// microsecond) so the opening costs O(1) whatever the log size.
#[derive(Clone, PartialEq, Eq)]
pub struct LogDigest {
    words: [u64; LOG_DIGEST_WORDS],
    count: u64,
}

impl Default for LogDigest {
    fn default() -> Self {
        LogDigest {
            words: [0; LOG_DIGEST_WORDS],
            count: 0,
        }
    }
}

impl std::fmt::Debug for LogDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDigest")
            .field("count", &self.count)
            .field("fingerprint", &self.fingerprint(0))
            .finish()
    }
}

impl LogDigest {
    /// A digest of `hashes` computed from scratch (what a store without a
    /// cached one, and the tests, use).
    pub fn of<'a>(hashes: impl IntoIterator<Item = &'a EventHash>) -> LogDigest {
        let mut d = LogDigest::default();
        for h in hashes {
            d.add(h);
        }
        d
    }

    pub fn add(&mut self, h: &EventHash) {
        for (w, e) in self.words.iter_mut().zip(expand(h)) {
            *w = w.wrapping_add(e);
        }
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The whole-range fingerprint of a session: SHA-256 of a domain
    /// label, the salt, the words and the count, truncated to
    /// [`FINGERPRINT_BYTES`]. The label keeps it apart from every
    /// [`Accumulator::fingerprint`].
    pub fn fingerprint(&self, salt: u64) -> [u8; FINGERPRINT_BYTES] {
        let mut h = Sha256::new();
        h.update(b"hearth log digest");
        h.update(salt.to_le_bytes());
        for w in self.words {
            h.update(w.to_le_bytes());
        }
        h.update(self.count.to_le_bytes());
        let mut out = [0u8; FINGERPRINT_BYTES];
        out.copy_from_slice(&h.finalize()[..FINGERPRINT_BYTES]);
        out
    }
}

/// An item's 4,096-bit expansion: the ChaCha20 key stream under the item's
/// hash as key (zero nonce). The hash is SHA-256 of a signed event, so the
/// key is already uniform; ChaCha20 (not a reduced-round variant) keeps the
/// expansions unrelated across keys. The key stream is ChaCha20's (RFC
/// 8439 with nonce and counter 0) and `rand_chacha` keeps its output
/// value-stable, so every peer computes the same words.
fn expand(h: &EventHash) -> [u64; LOG_DIGEST_WORDS] {
    let mut rng = ChaCha20Rng::from_seed(h.0);
    let mut out = [0u64; LOG_DIGEST_WORDS];
    for w in &mut out {
        *w = rng.next_u64();
    }
    out
}

/// An item's id within one session: the first 8 bytes of
/// SHA-256(salt || event hash), as a field element (never 0).
///
/// Salting matters twice. A rare collision of two short ids cannot hide
/// the same difference in the next session. And unlike a plain sum of
/// hashes, which a member could attack by crafting events whose hashes
/// cancel (a generalised-birthday search), nobody can pick events to
/// collide under a salt chosen after they were signed.
pub fn short_id(salt: u64, hash: &EventHash) -> u64 {
    let mut h = Sha256::new();
    h.update(salt.to_le_bytes());
    h.update(hash.0);
    let mut w = [0u8; 8];
    w.copy_from_slice(&h.finalize()[..8]);
    // 0 is not a usable field element (no locator root); 1 in 2^64 items
    // shares id 1 with this one, which is only a short-id collision.
    u64::from_le_bytes(w).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(first: u8) -> EventHash {
        let mut h = [0xffu8; 32];
        h[0] = first;
        EventHash(h)
    }

    /// The fingerprint depends on the set, not the order; and on the salt.
    #[test]
    fn accumulator_is_order_free_and_salted() {
        let (a, b) = (hash(1), hash(2));
        let mut x = Accumulator::default();
        x.add(&a);
        x.add(&b);
        let mut y = Accumulator::default();
        y.add(&b);
        y.add(&a);
        assert_eq!(x, y);
        assert_eq!(x.fingerprint(7), y.fingerprint(7));
        assert_ne!(x.fingerprint(7), Accumulator::default().fingerprint(7));
        assert_ne!(x.fingerprint(7), x.fingerprint(8), "salted per session");
    }

    /// Two sets whose 256-bit sums (and counts) collide, as a crafted pair
    /// would, still have different log digests and opening fingerprints;
    /// the digest is order-free and its fingerprint salted and apart from
    /// the accumulator's.
    #[test]
    fn log_digest_separates_sets_whose_sums_collide() {
        // {a, b} and {c, d} with a + b = c + d mod 2^256.
        let word = |v: u64| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&v.to_le_bytes());
            h[31] = 0x80;
            EventHash(h)
        };
        let (a, b, c, d) = (word(10), word(20), word(5), word(25));
        let (mut x, mut y) = (Accumulator::default(), Accumulator::default());
        x.add(&a);
        x.add(&b);
        y.add(&c);
        y.add(&d);
        assert_eq!(x, y, "the 256-bit sums collide");
        let (dx, dy) = (LogDigest::of([&a, &b]), LogDigest::of([&c, &d]));
        assert_ne!(dx, dy);
        assert_ne!(dx.fingerprint(7), dy.fingerprint(7));
        assert_eq!(dx, LogDigest::of([&b, &a]), "order-free");
        assert_ne!(dx.fingerprint(7), dx.fingerprint(8), "salted per session");
        assert_ne!(dx.fingerprint(7), x.fingerprint(7), "apart from sums");
    }

    /// Short ids differ per salt and are never zero.
    #[test]
    fn short_ids_are_salted() {
        assert_ne!(short_id(1, &hash(3)), short_id(2, &hash(3)));
        assert_ne!(short_id(1, &hash(3)), 0);
    }

    fn limbs(l: [u64; 4]) -> EventHash {
        let mut h = [0u8; 32];
        for (i, w) in l.iter().enumerate() {
            h[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        EventHash(h)
    }

    /// The accumulator is the sum mod 2^256 of the hashes as little-endian
    /// integers (carries cross limbs, the top one is dropped), so two sets
    /// of the same size but other items fingerprint differently; merging
    /// two accumulators gives the sum of both sets.
    #[test]
    fn accumulator_sums_hashes_mod_2_256() {
        let (a, b) = (
            limbs([u64::MAX, 5, u64::MAX, u64::MAX]),
            limbs([1, 7, 1, 0]),
        );
        let mut acc = Accumulator::default();
        acc.add(&a);
        acc.add(&b);
        // Limb 0 wraps and carries; limb 1 is 5 + 7 + 1; limb 2 wraps and
        // carries into limb 3, which wraps: its carry leaves the 256 bits.
        assert_eq!(acc.sum, [0, 13, 0, 0]);
        assert_eq!(acc.count(), 2);
        let mut other = Accumulator::default();
        other.add(&limbs([2, 0, 0, 0]));
        other.add(&limbs([3, 0, 0, 0]));
        assert_eq!(other.sum, [5, 0, 0, 0]);
        assert_eq!(other.count(), acc.count());
        assert_ne!(acc.fingerprint(7), other.fingerprint(7));
        let (mut x, mut y) = (Accumulator::default(), Accumulator::default());
        x.add(&a);
        y.add(&b);
        x.merge(&y);
        assert_eq!(x, acc, "merge is the sum of both sets");
    }

    /// A log digest's debug form names its count and fingerprint (the
    /// 4,096-bit words themselves would flood a log line).
    #[test]
    fn log_digest_debug_shows_count_and_fingerprint() {
        let d = LogDigest::of([&hash(1), &hash(2)]);
        let shown = format!("{d:?}");
        assert!(shown.starts_with("LogDigest"), "{shown}");
        assert!(shown.contains("count: 2"), "{shown}");
        assert!(
            shown.contains(&format!("{:?}", d.fingerprint(0))),
            "{shown}"
        );
    }
}
