//! Sealed direct messages: the `box` of a `dm.sealed` event.
//!
//! This module owns the wire format of a private message and the key
//! conversion it rests on. Outside tools check it (tests/py/sealed_check.py
//! opens our boxes with PyNaCl, and we open theirs), so every step is a
//! libsodium primitive used as libsodium documents it:
//!
//! 1. The recipient's X25519 key is derived from their ed25519 identity as
//!    `crypto_sign_ed25519_pk_to_curve25519` does (Edwards to Montgomery,
//!    refusing small-order and off-subgroup points); the recipient's own
//!    X25519 secret as `crypto_sign_ed25519_sk_to_curve25519` does (the first
//!    32 bytes of SHA-512 of the seed, clamped).
//! 2. Sign, then seal. The inner message is the canonical CBOR map
//!    `{v: 1, from: bytes(32), to: bytes(32), post?: {author: bytes(32),
//!    id: bytes(16)}, body: text, ts: uint}`; the sender signs
//!    `"hearthnet/dm/v1" || 0x00 || those exact bytes` with ed25519 (strict
//!    verification on open, as for events). `to` is inside the signature so
//!    that the recipient cannot re-seal the message to a third party as if
//!    it had been written to them.
//! 3. The plaintext is the canonical CBOR map `{msg: bytes, sig: bytes(64)}`
//!    followed by zero bytes up to the next multiple of [`PAD_BLOCK_BYTES`],
//!    so a box's length tells only its length class. Opening checks that the
//!    padding is all zeros and shorter than one block.
//! 4. The box is `crypto_box_seal(plaintext, recipient_x25519_pk)`: an
//!    ephemeral X25519 key, 32 bytes, then XSalsa20-Poly1305 under the nonce
//!    BLAKE2b-192(epk || pk) ([`SEAL_OVERHEAD_BYTES`] = 48 bytes more than
//!    the plaintext).
//!
//! Randomness (the ephemeral key) is a parameter: the core owns its RNG.

use crypto_box::aead::rand_core::CryptoRngCore;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use sha2::{Digest, Sha512};

use crate::cbor::{self, Value};
use crate::event::EVENT_BYTES_MAX;
use crate::ids::NodeId;
use crate::payload::{EventRef, Fields};
use crate::sign::{verify_strict, Identity};

/// Version written in the inner message's `v`.
pub const SEALED_VERSION: u64 = 1;
/// Plaintexts are zero-padded to a multiple of this many bytes: lengths leak
/// only in steps of 256 (a few lines of text), at most 255 bytes of waste.
pub const PAD_BLOCK_BYTES: usize = 256;
/// `crypto_box_SEALBYTES`: the ephemeral public key and the Poly1305 tag.
pub const SEAL_OVERHEAD_BYTES: usize = crypto_box::SEALBYTES;
/// The smallest well-formed box: one padding block, sealed.
pub const SEALED_BYTES_MIN: usize = PAD_BLOCK_BYTES + SEAL_OVERHEAD_BYTES;
/// A box travels inside one event, so it can never be larger than one; the
/// bound is checked before any decryption work is done.
pub const SEALED_BYTES_MAX: usize = EVENT_BYTES_MAX;
/// Prefix of the inner signature's input, so a message signature can never
/// be replayed as an event signature (`hearthnet/event/v1`) or vice versa.
pub const DM_SIGNING_DOMAIN: &[u8] = b"hearthnet/dm/v1\0";

/// A private message as its author wrote it, before sealing or after opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectMessage {
    pub from: NodeId,
    pub to: NodeId,
    /// The post the message is about, if any.
    pub post: Option<EventRef>,
    pub body: String,
    /// The author's wall clock, Unix milliseconds (advisory, like an event's).
    pub ts: u64,
}

/// Why a message could not be sealed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the message says it is from {from}, but the sealing key is {key}")]
    WrongSender { from: NodeId, key: NodeId },
    #[error("recipient {0} is not a usable ed25519 key (small order or not on the curve)")]
    RecipientKey(NodeId),
    #[error("sealed message would be {size} bytes, over the {SEALED_BYTES_MAX}-byte limit; shorten the text")]
    TooLarge { size: usize },
}

/// Why a box did not open into a message for this node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("box is {len} bytes: not 48 plus a positive multiple of 256 (up to {SEALED_BYTES_MAX}); it was cut short or is not a sealed message")]
    Truncated { len: usize },
    #[error(
        "box does not open with this node's key: it is addressed to someone else, or was altered"
    )]
    NotForMe,
    #[error("box opened but its padding is wrong: {0}")]
    BadPadding(&'static str),
    #[error("inner message is malformed: {0}")]
    Malformed(String),
    #[error("inner signature does not verify for the stated sender {0}")]
    BadSignature(NodeId),
    #[error(
        "inner message is addressed to {to}, not to this node: someone re-sealed another's message"
    )]
    Misaddressed { to: NodeId },
}

/// The X25519 public key of an ed25519 identity, as libsodium's
/// `crypto_sign_ed25519_pk_to_curve25519`: `None` for an encoding that is not
/// a point, a small-order point, or a point outside the prime-order subgroup.
pub fn x25519_public_from_ed25519(key: &NodeId) -> Option<[u8; 32]> {
    let point = CompressedEdwardsY(key.0).decompress()?;
    if point.is_small_order() || !point.is_torsion_free() {
        return None;
    }
    Some(point.to_montgomery().to_bytes())
}

/// The X25519 secret of an ed25519 seed, as libsodium's
/// `crypto_sign_ed25519_sk_to_curve25519`: SHA-512 of the seed, first half,
/// clamped.
pub fn x25519_secret_from_ed25519_seed(seed: &[u8; 32]) -> [u8; 32] {
    let digest = Sha512::digest(seed);
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&digest[..32]);
    secret[0] &= 248;
    secret[31] &= 127;
    secret[31] |= 64;
    secret
}

impl DirectMessage {
    /// The canonical CBOR bytes the sender signs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut entries = vec![
            ("v", Value::Uint(SEALED_VERSION)),
            ("from", Value::bytes(&self.from.0[..])),
            ("to", Value::bytes(&self.to.0[..])),
            ("body", Value::text(&self.body)),
            ("ts", Value::Uint(self.ts)),
        ];
        if let Some(post) = &self.post {
            entries.push(("post", post.to_value()));
        }
        Value::map(entries).to_bytes()
    }

    /// Parses the inner message strictly: canonical CBOR, known keys only.
    pub fn from_bytes(bytes: &[u8]) -> Result<DirectMessage, OpenError> {
        let malformed = |e: &dyn std::fmt::Display| OpenError::Malformed(e.to_string());
        let value = cbor::decode(bytes).map_err(|e| malformed(&e))?;
        let mut f = Fields::new(TYPE_INNER, &value).map_err(|e| malformed(&e))?;
        let v = f.uint("v").map_err(|e| malformed(&e))?;
        if v != SEALED_VERSION {
            return Err(OpenError::Malformed(format!(
                "version {v}; this node reads version {SEALED_VERSION}"
            )));
        }
        let from = f.node_id("from").map_err(|e| malformed(&e))?;
        let to = f.node_id("to").map_err(|e| malformed(&e))?;
        let post = f
            .optional("post")
            .map(|p| EventRef::from_value(TYPE_INNER, "post", p))
            .transpose()
            .map_err(|e| malformed(&e))?;
        let body = f.text("body").map_err(|e| malformed(&e))?;
        let ts = f.uint("ts").map_err(|e| malformed(&e))?;
        f.finish().map_err(|e| malformed(&e))?;
        Ok(DirectMessage {
            from,
            to,
            post,
            body,
            ts,
        })
    }
}

/// Name used in schema errors about the inner message.
const TYPE_INNER: &str = "sealed message";

fn signing_input(msg_bytes: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(DM_SIGNING_DOMAIN.len() + msg_bytes.len());
    input.extend_from_slice(DM_SIGNING_DOMAIN);
    input.extend_from_slice(msg_bytes);
    input
}

/// The padded plaintext: `{msg, sig}` then zeros to a multiple of 256.
fn padded_plaintext(msg_bytes: Vec<u8>, sig: [u8; 64]) -> Vec<u8> {
    let mut plain = Value::map([
        ("msg", Value::bytes(msg_bytes)),
        ("sig", Value::bytes(&sig[..])),
    ])
    .to_bytes();
    let padded_len = plain.len().div_ceil(PAD_BLOCK_BYTES) * PAD_BLOCK_BYTES;
    plain.resize(padded_len, 0);
    plain
}

/// Signs `msg` as `sender` and seals it to `msg.to`.
pub fn seal(
    sender: &Identity,
    msg: &DirectMessage,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, SealError> {
    if msg.from != sender.node_id() {
        return Err(SealError::WrongSender {
            from: msg.from,
            key: sender.node_id(),
        });
    }
    let recipient = x25519_public_from_ed25519(&msg.to).ok_or(SealError::RecipientKey(msg.to))?;
    let msg_bytes = msg.to_bytes();
    let sig = sender.sign(&signing_input(&msg_bytes));
    let plain = padded_plaintext(msg_bytes, sig);
    let size = plain.len() + SEAL_OVERHEAD_BYTES;
    if size > SEALED_BYTES_MAX {
        return Err(SealError::TooLarge { size });
    }
    crypto_box::PublicKey::from_bytes(recipient)
        .seal(rng, &plain)
        // XSalsa20-Poly1305 fails only for plaintexts near 2^38 bytes,
        // far above the bound checked just before.
        .map_err(|_| SealError::TooLarge { size })
}

/// Seals `msg` to `msg.to` with an inner signature by `signer`, whoever
/// `msg.from` names: a forged box, for tests of what a recipient's node
/// does with one (anyone holding the crypto could build it; the library
/// only refuses to do so by accident in [`seal`]).
#[doc(hidden)]
pub fn seal_signed_by(
    signer: &Identity,
    msg: &DirectMessage,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, SealError> {
    let recipient = x25519_public_from_ed25519(&msg.to).ok_or(SealError::RecipientKey(msg.to))?;
    let msg_bytes = msg.to_bytes();
    let sig = signer.sign(&signing_input(&msg_bytes));
    let plain = padded_plaintext(msg_bytes, sig);
    let size = plain.len() + SEAL_OVERHEAD_BYTES;
    crypto_box::PublicKey::from_bytes(recipient)
        .seal(rng, &plain)
        .map_err(|_| SealError::TooLarge { size })
}

/// Opens a box addressed to `recipient`, checks its padding, its inner
/// signature and that it was written to `recipient`.
pub fn open(recipient: &Identity, sealed: &[u8]) -> Result<DirectMessage, OpenError> {
    let len = sealed.len();
    if !(SEALED_BYTES_MIN..=SEALED_BYTES_MAX).contains(&len)
        || !(len - SEAL_OVERHEAD_BYTES).is_multiple_of(PAD_BLOCK_BYTES)
    {
        return Err(OpenError::Truncated { len });
    }
    let secret = x25519_secret_from_ed25519_seed(&recipient.seed());
    // libsodium refuses an ephemeral key whose shared secret is all zeros
    // (a small-order point); crypto_box would go on with a zero key. Refuse
    // it here too, so the two accept the same boxes.
    let mut epk = [0u8; 32];
    epk.copy_from_slice(&sealed[..32]);
    if MontgomeryPoint(epk).mul_clamped(secret).to_bytes() == [0u8; 32] {
        return Err(OpenError::NotForMe);
    }
    let plain = crypto_box::SecretKey::from_bytes(secret)
        .unseal(sealed)
        .map_err(|_| OpenError::NotForMe)?;

    let item_len =
        cbor::item_len(&plain).map_err(|e| OpenError::Malformed(format!("plaintext: {e}")))?;
    let (item, padding) = plain.split_at(item_len);
    if padding.len() >= PAD_BLOCK_BYTES {
        return Err(OpenError::BadPadding("a whole block or more of padding"));
    }
    if padding.iter().any(|b| *b != 0) {
        return Err(OpenError::BadPadding("padding bytes are not all zero"));
    }
    let outer = cbor::decode(item).map_err(|e| OpenError::Malformed(format!("plaintext: {e}")))?;
    let mut f = Fields::new(TYPE_INNER, &outer).map_err(|e| OpenError::Malformed(e.to_string()))?;
    let msg_bytes = f
        .bytes("msg")
        .map_err(|e| OpenError::Malformed(e.to_string()))?;
    let sig_bytes = f
        .bytes("sig")
        .map_err(|e| OpenError::Malformed(e.to_string()))?;
    f.finish()
        .map_err(|e| OpenError::Malformed(e.to_string()))?;
    let sig = <[u8; 64]>::try_from(sig_bytes.as_slice()).map_err(|_| {
        OpenError::Malformed(format!("signature is {} bytes, not 64", sig_bytes.len()))
    })?;

    let msg = DirectMessage::from_bytes(&msg_bytes)?;
    if !verify_strict(&msg.from, &signing_input(&msg_bytes), &sig) {
        return Err(OpenError::BadSignature(msg.from));
    }
    if msg.to != recipient.node_id() {
        return Err(OpenError::Misaddressed { to: msg.to });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::aead::rand_core::{CryptoRng, RngCore};

    /// A deterministic stand-in for the core's RNG (tests only).
    struct CounterRng(u64);
    impl RngCore for CounterRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(8) {
                let v = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }
        fn try_fill_bytes(
            &mut self,
            dest: &mut [u8],
        ) -> Result<(), crypto_box::aead::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for CounterRng {}

    fn id(n: u8) -> Identity {
        Identity::from_seed([n; 32])
    }

    fn message(from: &Identity, to: &Identity, body: &str) -> DirectMessage {
        DirectMessage {
            from: from.node_id(),
            to: to.node_id(),
            post: Some(EventRef {
                author: to.node_id(),
                id: crate::EventId::from_bytes([7; 16]),
            }),
            body: body.into(),
            ts: 1_700_000_000_000,
        }
    }

    /// Seals the plaintext exactly as `seal` does, from parts a test chooses.
    fn seal_raw(to: &Identity, plain: &[u8]) -> Vec<u8> {
        let pk = x25519_public_from_ed25519(&to.node_id()).expect("valid key");
        crypto_box::PublicKey::from_bytes(pk)
            .seal(&mut CounterRng(9), plain)
            .expect("seals")
    }

    /// A message sealed to B opens for B into exactly what A wrote.
    #[test]
    fn round_trip() {
        let (a, b) = (id(1), id(2));
        let msg = message(&a, &b, "Ich hätte gern einen Wasserkanister.");
        let sealed = seal(&a, &msg, &mut CounterRng(1)).expect("seals");
        assert_eq!(open(&b, &sealed), Ok(msg.clone()));
        let no_post = DirectMessage { post: None, ..msg };
        let sealed = seal(&a, &no_post, &mut CounterRng(2)).expect("seals");
        assert_eq!(open(&b, &sealed), Ok(no_post));
    }

    /// The converted X25519 public key is the public key of the converted secret.
    #[test]
    fn key_conversions_agree() {
        for n in 1..20u8 {
            let who = id(n);
            let public = x25519_public_from_ed25519(&who.node_id()).expect("valid key");
            let secret = x25519_secret_from_ed25519_seed(&who.seed());
            assert_eq!(
                crypto_box::SecretKey::from_bytes(secret)
                    .public_key()
                    .to_bytes(),
                public
            );
        }
    }

    /// Small-order and non-point ed25519 keys are refused as recipients.
    #[test]
    fn bad_recipient_keys_are_refused() {
        // The identity point (small order) and a y with no x on the curve.
        let identity_point = {
            let mut b = [0u8; 32];
            b[0] = 1;
            NodeId(b)
        };
        assert_eq!(x25519_public_from_ed25519(&identity_point), None);
        let not_a_point = {
            let mut b = [0u8; 32];
            b[0] = 2;
            NodeId(b)
        };
        assert_eq!(x25519_public_from_ed25519(&not_a_point), None);
        let msg = DirectMessage {
            to: identity_point,
            ..message(&id(1), &id(2), "hi")
        };
        assert_eq!(
            seal(&id(1), &msg, &mut CounterRng(1)),
            Err(SealError::RecipientKey(identity_point))
        );
    }

    /// A box sealed to B does not open for C.
    #[test]
    fn box_for_someone_else_does_not_open() {
        let (a, b, c) = (id(1), id(2), id(3));
        let sealed = seal(&a, &message(&a, &b, "for B"), &mut CounterRng(1)).expect("seals");
        assert_eq!(open(&c, &sealed), Err(OpenError::NotForMe));
    }

    /// A cut box is refused by length; a box with a flipped byte does not open.
    #[test]
    fn truncated_or_altered_box_is_refused() {
        let (a, b) = (id(1), id(2));
        let sealed = seal(&a, &message(&a, &b, "hello"), &mut CounterRng(1)).expect("seals");
        for cut in [0, 1, 47, 48, sealed.len() - 1, sealed.len() - 16] {
            assert_eq!(
                open(&b, &sealed[..cut]),
                Err(OpenError::Truncated { len: cut }),
                "cut at {cut}"
            );
        }
        let mut altered = sealed.clone();
        altered[100] ^= 1;
        assert_eq!(open(&b, &altered), Err(OpenError::NotForMe));
    }

    /// Sealing with a key other than the message's `from` is refused.
    #[test]
    fn sealing_as_someone_else_is_refused() {
        let (a, b, c) = (id(1), id(2), id(3));
        assert_eq!(
            seal(&c, &message(&a, &b, "hi"), &mut CounterRng(1)),
            Err(SealError::WrongSender {
                from: a.node_id(),
                key: c.node_id()
            })
        );
    }

    /// A box whose inner signature was made by another key than `from` is refused.
    #[test]
    fn inner_signature_by_another_key_is_refused() {
        let (a, b, mallory) = (id(1), id(2), id(6));
        let msg = message(&a, &b, "I am A, honestly");
        let msg_bytes = msg.to_bytes();
        let sig = mallory.sign(&signing_input(&msg_bytes));
        let sealed = seal_raw(&b, &padded_plaintext(msg_bytes, sig));
        assert_eq!(open(&b, &sealed), Err(OpenError::BadSignature(a.node_id())));
    }

    /// Changing `to` breaks the signature; an intact message re-sealed to a
    /// third party is refused as misaddressed.
    #[test]
    fn changed_or_resealed_recipient_is_refused() {
        let (a, b, c) = (id(1), id(2), id(3));
        let msg = message(&a, &b, "meant for B");
        let sig = a.sign(&signing_input(&msg.to_bytes()));
        // B changes `to` to C and re-seals to C under A's signature.
        let changed = DirectMessage {
            to: c.node_id(),
            ..msg.clone()
        };
        let sealed = seal_raw(&c, &padded_plaintext(changed.to_bytes(), sig));
        assert_eq!(open(&c, &sealed), Err(OpenError::BadSignature(a.node_id())));
        // B re-seals A's intact message to C.
        let sealed = seal_raw(&c, &padded_plaintext(msg.to_bytes(), sig));
        assert_eq!(
            open(&c, &sealed),
            Err(OpenError::Misaddressed { to: b.node_id() })
        );
    }

    /// Boxes are 48 + a multiple of 256 bytes, and the length class grows
    /// only when the text crosses a block.
    #[test]
    fn padding_lengths() {
        let (a, b) = (id(1), id(2));
        let mut previous = 0;
        for len in [0usize, 1, 50, 100, 200, 300, 1000, 4000] {
            let msg = message(&a, &b, &"x".repeat(len));
            let sealed = seal(&a, &msg, &mut CounterRng(len as u64)).expect("seals");
            assert!((sealed.len() - SEAL_OVERHEAD_BYTES).is_multiple_of(PAD_BLOCK_BYTES));
            assert!(sealed.len() >= previous);
            // At most one block more than the unpadded plaintext needs.
            let unpadded = msg.to_bytes().len() + 64 + 16;
            assert!(sealed.len() - SEAL_OVERHEAD_BYTES < unpadded + PAD_BLOCK_BYTES);
            assert_eq!(open(&b, &sealed), Ok(msg));
            previous = sealed.len();
        }
        let msg = message(&a, &b, &"x".repeat(SEALED_BYTES_MAX));
        assert!(matches!(
            seal(&a, &msg, &mut CounterRng(1)),
            Err(SealError::TooLarge { .. })
        ));
    }

    /// Non-zero padding, and a whole extra block of zeros, are refused.
    #[test]
    fn bad_padding_is_refused() {
        let (a, b) = (id(1), id(2));
        let msg = message(&a, &b, "padded");
        let msg_bytes = msg.to_bytes();
        let sig = a.sign(&signing_input(&msg_bytes));
        let good = padded_plaintext(msg_bytes, sig);
        assert_eq!(open(&b, &seal_raw(&b, &good)), Ok(msg));

        let mut nonzero = good.clone();
        let last = nonzero.len() - 1;
        nonzero[last] = 1;
        assert_eq!(
            open(&b, &seal_raw(&b, &nonzero)),
            Err(OpenError::BadPadding("padding bytes are not all zero"))
        );
        let mut extra_block = good.clone();
        extra_block.resize(good.len() + PAD_BLOCK_BYTES, 0);
        assert_eq!(
            open(&b, &seal_raw(&b, &extra_block)),
            Err(OpenError::BadPadding("a whole block or more of padding"))
        );
    }

    /// Plaintexts that are not `{msg, sig}` with a valid inner map are malformed.
    #[test]
    fn malformed_plaintext_is_refused() {
        let (a, b) = (id(1), id(2));
        let pad = |mut v: Vec<u8>| {
            let n = v.len().div_ceil(PAD_BLOCK_BYTES) * PAD_BLOCK_BYTES;
            v.resize(n, 0);
            v
        };
        // Not a map at all.
        let plain = pad(Value::Uint(5).to_bytes());
        assert!(matches!(
            open(&b, &seal_raw(&b, &plain)),
            Err(OpenError::Malformed(_))
        ));
        // An inner message with an unknown key.
        let inner = Value::map([
            ("v", Value::Uint(1)),
            ("from", Value::bytes(a.node_id().0.to_vec())),
            ("to", Value::bytes(b.node_id().0.to_vec())),
            ("body", Value::text("x")),
            ("ts", Value::Uint(1)),
            ("extra", Value::Uint(1)),
        ])
        .to_bytes();
        let sig = a.sign(&signing_input(&inner));
        let sealed = seal_raw(&b, &padded_plaintext(inner, sig));
        assert!(matches!(open(&b, &sealed), Err(OpenError::Malformed(e)) if e.contains("extra")));
        // A wrong version.
        let inner = Value::map([
            ("v", Value::Uint(2)),
            ("from", Value::bytes(a.node_id().0.to_vec())),
            ("to", Value::bytes(b.node_id().0.to_vec())),
            ("body", Value::text("x")),
            ("ts", Value::Uint(1)),
        ])
        .to_bytes();
        let sig = a.sign(&signing_input(&inner));
        let sealed = seal_raw(&b, &padded_plaintext(inner, sig));
        assert!(
            matches!(open(&b, &sealed), Err(OpenError::Malformed(e)) if e.contains("version 2"))
        );
    }
}
