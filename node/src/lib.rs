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

/// The allocator `hearth` runs with; the bench binary installs the same
/// one, so its figures are the node's. A listing builds its page's post
/// views from a few hundred small strings: glibc serves only 7 chunks a
/// size from its per-thread cache and the rest from its bins, which
/// measured ~35 µs of a 50-post page (docs/performance.md, "Listing at
/// 100k"); mimalloc's per-thread free lists have no such cap. Built
/// without transparent huge pages (`no_thp`): zeroing and compacting for
/// them was half of a 1M-event replay (docs/decisions.md, "mimalloc without
/// transparent huge pages").
#[cfg(feature = "runtime")]
pub use mimalloc::MiMalloc as NodeAllocator;
