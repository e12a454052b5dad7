//! Set sketches over GF(2^64), as in PinSketch / Minisketch.
//!
//! A set's sketch of capacity `c` is its odd power sums
//! `s_1, s_3, ..., s_{2c-1}` (`s_k` = XOR over the elements of `x^k`, in the
//! field). Sketches are linear: XOR-ing two sides' sketches gives the sketch
//! of the *symmetric difference*, whatever the sets' sizes. A difference of
//! at most `c` elements can be recovered from it (BCH decoding:
//! Berlekamp-Massey gives the polynomial whose roots are the elements).
//!
//! We accept a decoding only if it finds at most `c - 1` elements. A random
//! sketch (a difference larger than the capacity) decodes to at most `c - 1`
//! elements with probability about 2^-64, so the spare syndrome works as a
//! 64-bit checksum. Without it, a capacity-`c` sketch of a larger difference
//! decodes to `c` wrong elements with probability about 1/c!, which is often
//! for small `c`.
//!
//! We never search the field for roots. The decoding side tests the
//! polynomial against its own items: their roots are what the peer lacks.
//! It sends the rest of the polynomial (its coefficients) to the peer, who
//! tests it against its own items (`Mode::Roots`). That check is a second
//! line of defence: the roots must be there.
//!
//! Elements are 64-bit salted short ids, never 0 (see `short_id`).

/// Elements are bit-polynomials of degree < 64 modulo
/// `x^64 + x^4 + x^3 + x + 1`, an irreducible pentanomial (proved by the
/// Rabin test in this module's tests).
const MODULUS_LOW: u64 = 0x1b;
const _: () = assert!(
    MODULUS_LOW == (1 << 4) | (1 << 3) | (1 << 1) | 1,
    "reduce() folds with exactly these four terms"
);

/// Products by one fixed factor, four bits at a time: building the table
/// costs about as much as one plain product, and each product after that is
/// about 4x cheaper than bit by bit. Sketching multiplies every item by its
/// square `capacity` times, so the table pays for itself.
#[derive(Clone, Copy)]
struct MulTable([u128; 16]);

impl MulTable {
    fn new(a: u64) -> Self {
        let mut t = [0u128; 16];
        for i in 1..16 {
            t[i] = (t[i >> 1] << 1) ^ if i & 1 == 1 { u128::from(a) } else { 0 };
        }
        MulTable(t)
    }

    fn mul(&self, b: u64) -> u64 {
        let mut r = 0u128;
        for i in (0..16).rev() {
            r = (r << 4) ^ self.0[((b >> (4 * i)) & 15) as usize];
        }
        reduce(r)
    }
}

/// Reduces a carry-less product (degree <= 126) modulo the field polynomial.
fn reduce(r: u128) -> u64 {
    let lo = r as u64;
    let hi = (r >> 64) as u64;
    // hi * x^64 = hi * (x^4 + x^3 + x + 1): the bits that spill past 64
    // (at most 4 of them) are folded once more.
    let spill = (hi >> 60) ^ (hi >> 61) ^ (hi >> 63);
    lo ^ hi ^ (hi << 1) ^ (hi << 3) ^ (hi << 4) ^ spill ^ (spill << 1) ^ (spill << 3) ^ (spill << 4)
}

pub(super) fn mul(a: u64, b: u64) -> u64 {
    MulTable::new(a).mul(b)
}

/// `a^2`. Squaring is linear in characteristic 2: the carry-less square
/// of `a` has `a`'s bits at the even positions, so spreading the bits and
/// reducing once replaces a table build and a 16-step product (every
/// sketched item squares once, and `inverse` squares 64 times).
fn square(a: u64) -> u64 {
    let lo = spread_bits(a as u32);
    let hi = spread_bits((a >> 32) as u32);
    reduce((u128::from(hi) << 64) | u128::from(lo))
}

/// Bit `i` of `x` moved to bit `2i`, zeros between.
fn spread_bits(x: u32) -> u64 {
    let mut x = u64::from(x);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// `a^-1 = a^(2^64 - 2)`; `a` must not be 0.
fn inverse(a: u64) -> u64 {
    debug_assert!(a != 0);
    let (mut result, mut base, mut e) = (1u64, a, u64::MAX - 1);
    while e != 0 {
        if e & 1 == 1 {
            result = mul(result, base);
        }
        base = square(base);
        e >>= 1;
    }
    result
}

/// Adds `id` to a sketch: `s[i] ^= id^(2i+1)`.
fn add_powers(syndromes: &mut [u64], id: u64) {
    let by_square = MulTable::new(square(id));
    let mut power = id;
    for s in syndromes.iter_mut() {
        *s ^= power;
        power = by_square.mul(power);
    }
}

/// The sketch of capacity `capacity` of a set of ids.
pub(super) fn sketch(ids: &[u64], capacity: usize) -> Vec<u64> {
    let mut s = vec![0u64; capacity];
    for &id in ids {
        add_powers(&mut s, id);
    }
    s
}

/// Estimation levels: level `j` (1-based) is the sketch of capacity
/// [`STRATA_CAPACITY`](super::STRATA_CAPACITY) of the items whose short id
/// has its top `2j` bits clear, a 4^-j sample (the salt makes it a fair
/// one). Concatenated, level 1 first.
pub(super) fn strata(ids: &[u64], levels: usize) -> Vec<u64> {
    let cap = super::STRATA_CAPACITY;
    let mut s = vec![0u64; levels * cap];
    for &id in ids {
        let depth = (id.leading_zeros() as usize / 2).min(levels);
        for j in 1..=depth {
            add_powers(&mut s[(j - 1) * cap..j * cap], id);
        }
    }
    s
}

/// Decodes the sketch of a symmetric difference. Returns the coefficients
/// `c_1..c_L` of `P(x) = x^L + c_1 x^(L-1) + ... + c_L`, whose roots are the
/// `L` differing elements, or `None` unless `L <= capacity - 1` (the spare
/// syndrome, see module docs). An all-zero sketch decodes to `L = 0`.
pub(super) fn decode(odd: &[u64]) -> Option<Vec<u64>> {
    let n = 2 * odd.len();
    // All power sums s_1..s_2c: the even ones are squares (characteristic 2).
    let mut s = vec![0u64; n + 1];
    for j in 1..=n {
        s[j] = if j % 2 == 1 {
            odd[j / 2]
        } else {
            square(s[j / 2])
        };
    }
    // Berlekamp-Massey: the shortest LFSR generating s_1..s_n. Its
    // connection polynomial is the error locator prod(1 - x_i z).
    let mut c = vec![1u64];
    let mut b = vec![1u64];
    // The inverse of the last length change's discrepancy, kept: an
    // inverse costs ~127 products and changes at most `capacity` times.
    let (mut len, mut shift, mut b_inverse) = (0usize, 1usize, 1u64);
    for i in 0..n {
        let mut d = s[i + 1];
        for j in 1..=len.min(c.len() - 1) {
            d ^= mul(c[j], s[i + 1 - j]);
        }
        if d == 0 {
            shift += 1;
            continue;
        }
        let factor = MulTable::new(mul(d, b_inverse));
        let previous = c.clone();
        if c.len() < b.len() + shift {
            c.resize(b.len() + shift, 0);
        }
        for (j, &bj) in b.iter().enumerate() {
            c[j + shift] ^= factor.mul(bj);
        }
        if 2 * len <= i {
            len = i + 1 - len;
            b = previous;
            b_inverse = inverse(d);
            shift = 1;
        } else {
            shift += 1;
        }
    }
    while c.len() > 1 && c.last() == Some(&0) {
        c.pop();
    }
    // The locator must have degree exactly L (a missing top coefficient
    // would mean an element 0, which no id is), within the spare rule.
    if c.len() - 1 != len || len >= odd.len().max(1) {
        return None;
    }
    c.remove(0);
    Some(c)
}

/// `P(x)` for `P = x^L + c_1 x^(L-1) + ... + c_L`.
pub(super) fn eval(coeffs: &[u64], x: u64) -> u64 {
    let by_x = MulTable::new(x);
    coeffs.iter().fold(1u64, |acc, &c| by_x.mul(acc) ^ c)
}

/// `P / (x - root)` when `root` is a root of `P` (same coefficient form).
pub(super) fn divide_root(coeffs: &[u64], root: u64) -> Option<Vec<u64>> {
    let by_root = MulTable::new(root);
    let mut out = Vec::with_capacity(coeffs.len().saturating_sub(1));
    let mut carry = 1u64;
    for &c in coeffs {
        let next = c ^ by_root.mul(carry);
        out.push(next);
        carry = next;
    }
    // The last value computed is the remainder.
    match out.pop() {
        Some(0) => Some(out),
        _ => None,
    }
}

/// Estimates the size of a difference from its estimation levels (XOR of
/// both sides' `strata`), given that the full sketch of capacity
/// `failed_capacity` did not decode (so the difference has at least that
/// many elements). The densest level that decodes gives
/// `elements found x 4^level`; a level that fails says at least
/// `STRATA_CAPACITY x 4^level`.
pub(super) fn estimate(failed_capacity: usize, strata_xor: &[u64]) -> f64 {
    let cap = super::STRATA_CAPACITY;
    let mut floor = failed_capacity as f64;
    for (j, level) in strata_xor.chunks_exact(cap).enumerate() {
        let scale = 4f64.powi(j as i32 + 1);
        match decode(level) {
            Some(found) => return floor.max(found.len() as f64 * scale),
            None => floor = floor.max(cap as f64 * scale),
        }
    }
    floor
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::*;

    fn mul_bitwise(mut a: u64, mut b: u64) -> u64 {
        let mut r = 0;
        while b != 0 {
            if b & 1 == 1 {
                r ^= a;
            }
            b >>= 1;
            let carry = a >> 63;
            a <<= 1;
            if carry == 1 {
                a ^= MODULUS_LOW;
            }
        }
        r
    }

    fn ids(rng: &mut ChaCha8Rng, n: usize) -> Vec<u64> {
        (0..n).map(|_| rng.next_u64() | 1).collect()
    }

    /// The table product agrees with the schoolbook one.
    #[test]
    fn table_product_matches_bitwise_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..2000 {
            let (a, b) = (rng.next_u64(), rng.next_u64());
            assert_eq!(mul(a, b), mul_bitwise(a, b));
        }
        assert_eq!(mul(u64::MAX, u64::MAX), mul_bitwise(u64::MAX, u64::MAX));
    }

    /// The spread-bits square is the product of an element with itself,
    /// at the edges and at random.
    #[test]
    fn square_is_the_product_with_itself() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let edges = [
            0,
            1,
            2,
            u64::MAX,
            1 << 63,
            1 << 32,
            (1 << 32) - 1,
            0xaaaa_aaaa_aaaa_aaaa,
        ];
        for a in edges.into_iter().chain((0..2000).map(|_| rng.next_u64())) {
            assert_eq!(square(a), mul_bitwise(a, a), "{a:#x}");
        }
        assert_eq!(spread_bits(0b1011), 0b100_0101);
        assert_eq!(spread_bits(u32::MAX), 0x5555_5555_5555_5555);
    }

    /// The modulus is irreducible (Rabin's test for degree 64: x^(2^64) = x
    /// and gcd(x^(2^32) - x, f) = 1), so every non-zero element inverts.
    #[test]
    fn modulus_is_irreducible_and_elements_invert() {
        let x = 2u64;
        let frobenius = |k: u32| (0..k).fold(x, |a, _| square(a));
        assert_eq!(frobenius(64), x);
        // gcd over GF(2)[x] of f (degree 64) and g = x^(2^32) + x.
        let mut a: u128 = (1u128 << 64) | u128::from(MODULUS_LOW);
        let mut b: u128 = u128::from(frobenius(32) ^ x);
        while b != 0 {
            let db = 127 - b.leading_zeros();
            while a != 0 && 127 - a.leading_zeros() >= db {
                a ^= b << ((127 - a.leading_zeros()) - db);
            }
            std::mem::swap(&mut a, &mut b);
        }
        assert_eq!(a, 1, "gcd is 1");
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..50 {
            let a = rng.next_u64() | 1;
            assert_eq!(mul(a, inverse(a)), 1);
        }
    }

    /// A difference of up to capacity - 1 elements decodes exactly, split
    /// between the two sides in any way.
    #[test]
    fn differences_within_capacity_decode_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for cap in [1usize, 2, 5, 8, 36, 64] {
            for d in 0..cap {
                let shared = ids(&mut rng, 50);
                let diff = ids(&mut rng, d);
                let (mut a, mut b) = (shared.clone(), shared);
                for (i, &x) in diff.iter().enumerate() {
                    if i % 3 == 0 {
                        a.push(x)
                    } else {
                        b.push(x)
                    }
                }
                let x: Vec<u64> = sketch(&a, cap)
                    .iter()
                    .zip(sketch(&b, cap))
                    .map(|(p, q)| p ^ q)
                    .collect();
                let coeffs = decode(&x).unwrap_or_else(|| panic!("cap {cap} d {d}"));
                assert_eq!(coeffs.len(), d);
                let mut rest = coeffs;
                for &e in &diff {
                    assert_eq!(eval(&rest, e), 0);
                    rest = divide_root(&rest, e).unwrap();
                }
                assert!(rest.is_empty());
            }
        }
    }

    /// A difference at or over the capacity is refused, not misread.
    #[test]
    fn differences_over_capacity_are_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for cap in [1usize, 2, 3, 8, 36] {
            for d in [cap, cap + 1, 2 * cap + 3, 200] {
                let x = sketch(&ids(&mut rng, d), cap);
                assert!(decode(&x).is_none(), "cap {cap} d {d}");
            }
        }
    }

    /// A non-root does not divide.
    #[test]
    fn divide_root_refuses_non_roots() {
        let x = sketch(&[5, 9], 3);
        let coeffs = decode(&x).unwrap();
        assert!(divide_root(&coeffs, 7).is_none());
        assert_eq!(divide_root(&coeffs, 9).map(|c| c.len()), Some(1));
    }

    /// The estimation levels land within a factor of about two.
    #[test]
    fn strata_estimate_the_difference_size() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for d in [20usize, 100, 1000, 5000] {
            let diff = ids(&mut rng, d);
            let est = estimate(8, &strata(&diff, 8));
            let ratio = est / d as f64;
            assert!((0.3..=3.0).contains(&ratio), "d {d}: estimate {est}");
        }
    }

    /// When no estimation level decodes, the estimate is the bound the
    /// last (sparsest) failing level gives, STRATA_CAPACITY x 4^levels, or
    /// the failed capacity if that is higher.
    #[test]
    fn estimate_without_a_decoding_level_is_the_last_levels_bound() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let diff = ids(&mut rng, 5000);
        // Levels 1 and 2 sample ~1,250 and ~312 of the 5,000: neither
        // decodes.
        let strata_xor = strata(&diff, 2);
        assert_eq!(estimate(8, &strata_xor), 8.0 * 16.0);
        assert_eq!(estimate(500, &strata_xor), 500.0);
    }

    /// The densest estimation level that decodes gives the estimate: its
    /// element count times 4^level, its sampling rate (here above the
    /// floor that the failing level 1 sets).
    #[test]
    fn a_decoding_level_scales_its_count_by_its_sampling_rate() {
        // 15 ids with exactly their top 2 bits clear (level 1 only) and 5
        // with their top 4 bits clear (levels 1 and 2): level 1 holds 20
        // and fails, level 2 holds 5 and decodes.
        let mut diff: Vec<u64> = (0..15u64).map(|i| (1 << 61) | (i * 7919 + 1)).collect();
        diff.extend((0..5u64).map(|i| (1 << 59) | (i * 104_729 + 3)));
        let strata_xor = strata(&diff, 3);
        assert!(decode(&strata_xor[..8]).is_none(), "level 1 fails");
        assert_eq!(decode(&strata_xor[8..16]).map(|c| c.len()), Some(5));
        // Level 1's failure alone says at least 8 x 4 = 32.
        assert_eq!(estimate(8, &strata_xor), 5.0 * 16.0);
    }

    /// A difference whose first power sum is zero (ids a, b, c and
    /// a ^ b ^ c) decodes exactly: Berlekamp-Massey then meets a non-zero
    /// discrepancy that does not lengthen the LFSR, a branch random ids
    /// reach only with probability about 2^-64.
    #[test]
    fn a_difference_with_a_zero_first_power_sum_decodes() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for cap in [5usize, 6, 7, 8, 36] {
            let (a, b, c) = (rng.next_u64() | 1, rng.next_u64() | 1, rng.next_u64() | 1);
            let diff = [a, b, c, a ^ b ^ c];
            let x = sketch(&diff, cap);
            assert_eq!(x[0], 0, "the first power sum is zero");
            let coeffs = decode(&x).unwrap_or_else(|| panic!("cap {cap}"));
            assert_eq!(coeffs.len(), 4);
            let mut rest = coeffs;
            for &e in &diff {
                assert_eq!(eval(&rest, e), 0);
                rest = divide_root(&rest, e).unwrap();
            }
            assert!(rest.is_empty());
        }
    }
}
