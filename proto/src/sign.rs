//! Device identity and event signatures.
//!
//! Signatures are ed25519 over a domain-separated input, verified with
//! `verify_strict` (canonical S, no small-order A or R): the rule libsodium
//! also applies, so every implementation accepts the same events.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::ids::NodeId;

/// Prefix of every signing input: the domain tag and a zero byte, so an
/// event signature can never be replayed as a signature over anything else.
pub const SIGNING_DOMAIN: &[u8] = b"hearthnet/event/v1\0";

/// A device's secret key. Debug output never shows the secret.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// From the 32-byte secret seed (RFC 8032).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn node_id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// Strict RFC 8032 verification of `sig` by `author` over `msg`.
pub(crate) fn verify_strict(author: &NodeId, msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(author.as_bytes()) else {
        return false;
    };
    key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
}
