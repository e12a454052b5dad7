//! Range fingerprints (DESIGN.md §5) and the salted short ids that sketches
//! are made of.

use hearth_proto::EventHash;
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

    /// Short ids differ per salt and are never zero.
    #[test]
    fn short_ids_are_salted() {
        assert_ne!(short_id(1, &hash(3)), short_id(2, &hash(3)));
        assert_ne!(short_id(1, &hash(3)), 0);
    }
}
