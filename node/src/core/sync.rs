//! Lamport-range anti-entropy (DESIGN.md §5). Being written.
