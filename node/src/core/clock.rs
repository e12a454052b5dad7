//! The Lamport clock.

use hearth_proto::LAMPORT_MAX;

/// A received Lamport time may move the clock forward by at most this much
/// (2^24): one member publishing a huge value cannot exhaust everyone's
/// clock, while honest peers, whose clocks differ by far less, still pull
/// each other forward.
pub const LAMPORT_JUMP_MAX: u64 = 1 << 24;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportClock {
    now: u64,
}

impl LamportClock {
    pub fn new(now: u64) -> Self {
        LamportClock { now }
    }

    pub fn current(&self) -> u64 {
        self.now
    }

    /// The time for a new local event, or `None` if the clock is exhausted.
    pub fn next(&self) -> Option<u64> {
        self.now.checked_add(1).filter(|t| *t <= LAMPORT_MAX)
    }

    /// Records a local event's time.
    pub fn set_local(&mut self, t: u64) {
        debug_assert!(t > self.now);
        self.now = t;
    }

    /// Advances to a received time unless it jumps too far (see
    /// [`LAMPORT_JUMP_MAX`]). Returns whether the clock moved.
    pub fn observe(&mut self, t: u64) -> bool {
        if t > self.now && t - self.now <= LAMPORT_JUMP_MAX {
            self.now = t;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_advances_within_the_jump_bound_only() {
        let mut c = LamportClock::new(10);
        assert!(c.observe(10 + LAMPORT_JUMP_MAX));
        assert!(!c.observe(c.current() + LAMPORT_JUMP_MAX + 1));
        assert!(!c.observe(5));
        assert_eq!(c.current(), 10 + LAMPORT_JUMP_MAX);
    }

    #[test]
    fn next_refuses_past_lamport_max() {
        assert_eq!(LamportClock::new(LAMPORT_MAX).next(), None);
        assert_eq!(LamportClock::new(1).next(), Some(2));
    }
}
