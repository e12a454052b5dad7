//! hearth-sim: a deterministic simulator of many HearthNet nodes.
//!
//! It runs real `hearth_node::core` instances (real verification, store,
//! sync sessions and views) on virtual time, over a network model that
//! stands in for gossipsub (eager push to a mesh of D, lazy IHAVE/IWANT to
//! others), under faults: loss, duplication, reordering,
//! bandwidth, partitions, crashes with the durable store kept, long
//! absences, late joiners, and misbehaving members. In the manner of
//! FoundationDB's and TigerBeetle's simulators (VOPR), one seed reproduces
//! one run exactly, and every run has two phases:
//!
//! - **safety**: faults on, invariants checked continuously: no invalid
//!   event in any log, no listed post by an inactive author, no log ever
//!   loses an event, no Lamport bomb moves an honest clock, an honest
//!   node's events sort above what it held and never expire a post twice,
//!   a completed sync leaves both sides whole, and a rotating sample of
//!   nodes shows exactly what the [`reference`] model computes from its
//!   own log;
//! - **liveness**: faults off; every node must reach the same log and the
//!   same view digests within a bounded virtual time, every honest event
//!   must be everywhere, every node's views must equal the reference
//!   model's, and on a sample of nodes incremental views must equal a
//!   snapshot restore and a full replay.
//!
//! [`run`] does a whole randomised run; [`Sim`] exposes the steps so
//! scenario tests can script one (partition, crash, post, heal, converge).

// One seed, one run: no clocks, no OS randomness, no hash-ordered
// iteration in the simulator either (clippy.toml; the CLI binary may read
// the clock for wall time and a random seed).
#![deny(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod config;
pub mod engine;
pub mod reference;
pub mod report;
pub mod rng;
pub mod store;

pub use config::{Adversaries, ConfigError, SimConfig, START_MS};
pub use engine::{run, run_observed, Fault, Ix, Phase, Sim, SimError, Violation};
pub use report::{LazySummary, Percentiles, Stats, Summary};
pub use store::{InjectedBug, SimStore};
