//! The simulator's only source of randomness: a seeded ChaCha8 stream with
//! the few draws the model needs. Floats are fine here (IEEE arithmetic is
//! deterministic); what matters is that nothing else feeds behaviour.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

#[derive(Debug, Clone)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// A stream derived from the run seed and a purpose label, so adding
    /// draws to one purpose (say, the workload) does not shift another's.
    pub fn new(seed: u64, stream: u64) -> SimRng {
        let mixed = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        SimRng(ChaCha8Rng::seed_from_u64(mixed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0), by widening multiply: no modulo bias
    /// worth the name at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform index into a slice of length `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Exponentially distributed with this mean, capped at 20 means so one
    /// unlucky draw cannot stall a run.
    pub fn exp(&mut self, mean: u64) -> u64 {
        let x = -(1.0 - self.unit()).ln() * mean as f64;
        (x.min(mean as f64 * 20.0)) as u64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
    }
}
