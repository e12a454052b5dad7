//! The HearthNet node.
//!
//! - [`core`]: the sans-IO state machine (log, views, services, bus). Pure:
//!   builds with `--no-default-features`.
//! - [`store`]: the `EventStore` trait, in-memory and sled implementations.
//! - `net` (feature `runtime`): libp2p swarm and the driver loop.
//! - `api` (feature `runtime`): the local HTTP API and the request path it
//!   shares with the Unix socket.
//! - `cli` (feature `runtime`): the `hearth` command.
//! - `semantic` (feature `runtime`): search by meaning, `embed.text`, the
//!   vector cache.

pub mod core;
pub mod store;

#[cfg(feature = "runtime")]
pub mod api;
#[cfg(feature = "runtime")]
pub mod cli;
#[cfg(feature = "runtime")]
pub mod invite;
#[cfg(feature = "runtime")]
pub mod net;
#[cfg(feature = "runtime")]
pub mod semantic;
