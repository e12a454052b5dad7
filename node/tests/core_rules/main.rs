//! The core's rule tests, in-process and I/O-free (they build with
//! `--no-default-features`): one module per area, one test binary.
//!
//! One binary rather than eight: each test binary links the node, so a
//! change to the core relinked eight, and every mutant of `scripts/mutants
//! core` paid for it (a rebuild after touching the listing: 3.7 s with
//! eight binaries, 2.9 s with one, on a quiet machine).
//! `cargo test -p hearth-node --test core_rules log_rules::` runs one
//! module.

#[path = "../common/mod.rs"]
mod common;

mod community_rules;
mod conversation_rules;
mod log_rules;
mod market_list;
mod market_service;
mod search;
mod view_changes;
mod view_properties;
