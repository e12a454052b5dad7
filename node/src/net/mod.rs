//! The mesh: libp2p swarm and the one driver loop around the core.
//!
//! The driver translates swarm events into core inputs and core outputs into
//! swarm calls, nothing more (protocol logic lives in `core`).

pub mod behaviour;
pub mod changes;
pub mod driver;
pub mod gossip;
pub mod identity;
pub mod inbox;
pub mod local_api;
pub mod reach;
pub mod verify_ahead;
pub mod wire;
