//! The HearthNet node.
//!
//! - [`core`]: the sans-IO state machine (log, views, services, bus). Pure:
//!   builds with `--no-default-features`.
//! - [`store`]: the `EventStore` trait, in-memory and sled implementations.
//! - `cli` (feature `runtime`): the `hearth` command.

pub mod core;
pub mod store;

#[cfg(feature = "runtime")]
pub mod cli;
