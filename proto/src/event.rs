//! The event envelope: decoding, signing, verification and hashing.
//!
//! The only ways to obtain a [`VerifiedEvent`] are [`Event::sign`],
//! [`SignedEvent::verify`] and [`VerifiedEvent::reload`] (for bytes this node
//! verified before it stored them), so code that holds one knows the bytes
//! are canonical, in bounds and signed by their author.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::cbor::{self, CborError, Value};
use crate::ids::{CommunityId, EventHash, EventId, NodeId};
use crate::payload::{Payload, SchemaError, TYPE_GENESIS};
use crate::sign::{verify_strict, Identity, SIGNING_DOMAIN};

/// Wire format version written in `v`.
pub const FORMAT_VERSION: u64 = 1;
/// An encoded event is at most this many bytes.
pub const EVENT_BYTES_MAX: usize = 16_384;
/// Lamport times stay exactly representable as IEEE doubles (JavaScript peers).
pub const LAMPORT_MAX: u64 = (1 << 53) - 1;

/// Why bytes are not a valid event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is {size} bytes, over the {EVENT_BYTES_MAX}-byte limit")]
    TooLarge { size: usize },
    #[error("not canonical CBOR: {0}")]
    Cbor(#[from] CborError),
    #[error("event is a {kind}, not a map")]
    NotAMap { kind: &'static str },
    #[error("envelope field `{0}` is missing")]
    MissingField(&'static str),
    #[error("envelope has unknown field `{0}`")]
    UnknownField(String),
    #[error("envelope field `{field}` is a {got}, not {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("envelope field `{field}` is {got} bytes, not {expected}")]
    WrongLength {
        field: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("unsupported format version {0} (this node speaks {FORMAT_VERSION})")]
    UnsupportedVersion(u64),
    #[error("lamport {0} is above the limit 2^53 - 1")]
    LamportTooLarge(u64),
    #[error("invalid payload: {0}")]
    Schema(#[from] SchemaError),
    #[error("invalid genesis: {0}")]
    Genesis(&'static str),
    #[error("signature does not verify for author {0}")]
    BadSignature(NodeId),
    #[error("stored bytes hash to {got}, not the recorded {expected}")]
    HashMismatch { expected: EventHash, got: EventHash },
    #[error("signing key {key} is not the event's author {author}")]
    WrongSigner { key: NodeId, author: NodeId },
}

/// Position of an event in the log: Lamport time, then hash bytewise. This is
/// the total order of conflict resolution and the key space of sync.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct EventKey {
    pub lamport: u64,
    pub hash: EventHash,
}

impl EventKey {
    /// Big-endian bytes, so byte order equals key order (store keys).
    pub fn to_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.lamport.to_be_bytes());
        out[8..].copy_from_slice(&self.hash.0);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<EventKey> {
        let lamport = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let hash = EventHash::from_slice(b.get(8..)?)?;
        Some(EventKey { lamport, hash })
    }
}

/// An event's fields without its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    /// Author's wall clock, Unix ms. Advisory only: nothing orders by it.
    pub ts: u64,
    pub author: NodeId,
    pub lamport: u64,
    pub community: CommunityId,
    pub payload: Payload,
}

impl Event {
    /// The envelope map, with or without `sig`.
    fn to_value<'a>(&'a self, sig: Option<&'a [u8; 64]>) -> Value<'a> {
        let mut entries = vec![
            ("v", Value::Uint(FORMAT_VERSION)),
            ("id", Value::bytes(self.id.to_bytes().to_vec())),
            ("ts", Value::Uint(self.ts)),
            ("data", self.payload.to_value()),
            ("type", Value::text(self.payload.type_name())),
            ("author", Value::bytes(&self.author.0[..])),
            ("lamport", Value::Uint(self.lamport)),
            ("community", Value::bytes(&self.community.0[..])),
        ];
        if let Some(sig) = sig {
            entries.push(("sig", Value::bytes(&sig[..])));
        }
        Value::map(entries)
    }

    /// The exact bytes that are signed: domain tag, then the map without `sig`.
    pub fn signing_input(&self) -> Vec<u8> {
        let mut out = SIGNING_DOMAIN.to_vec();
        cbor::encode_into(&self.to_value(None), &mut out);
        out
    }

    /// Signs with `identity`, which must be the author. Fails for an event
    /// that would break a wire rule, so nothing invalid is ever produced.
    pub fn sign(self, identity: &Identity) -> Result<VerifiedEvent, EventError> {
        if identity.node_id() != self.author {
            return Err(EventError::WrongSigner {
                key: identity.node_id(),
                author: self.author,
            });
        }
        check_envelope_rules(&self)?;
        let sig = identity.sign(&self.signing_input());
        let bytes = self.to_value(Some(&sig)).to_bytes();
        if bytes.len() > EVENT_BYTES_MAX {
            return Err(EventError::TooLarge { size: bytes.len() });
        }
        // Also decode the bytes as a receiver would: catches a local caller
        // building, say, an out-of-range location, or unknown-type data with
        // a duplicate key or nested too deep (which the encoder writes but no
        // decoder accepts). Keep the event as decoded, so it is what every
        // receiver sees: unknown maps in canonical order, and a known type
        // passed as `Payload::Unknown` parsed as that type.
        let event = SignedEvent::decode(&bytes)?.event;
        let hash = hash_bytes(&bytes);
        Ok(VerifiedEvent::new(Verified {
            event,
            sig,
            bytes,
            hash,
        }))
    }
}

/// SHA-256 of encoded event bytes.
pub fn hash_bytes(bytes: &[u8]) -> EventHash {
    EventHash(Sha256::digest(bytes).into())
}

/// Rules of the envelope that depend on more than one field.
fn check_envelope_rules(e: &Event) -> Result<(), EventError> {
    if e.lamport > LAMPORT_MAX {
        return Err(EventError::LamportTooLarge(e.lamport));
    }
    if let Payload::Genesis(g) = &e.payload {
        if e.community != CommunityId::default() {
            return Err(EventError::Genesis("community must be 32 zero bytes"));
        }
        if e.lamport != 0 {
            return Err(EventError::Genesis("lamport must be 0"));
        }
        if !g.anchors.contains(&e.author) {
            return Err(EventError::Genesis("author must be one of the anchors"));
        }
    }
    Ok(())
}

/// A decoded event whose signature has not been checked yet.
#[derive(Clone, Debug)]
pub struct SignedEvent {
    event: Event,
    sig: [u8; 64],
    bytes: Vec<u8>,
    sig_span: Range<usize>,
}

impl SignedEvent {
    /// Strictly decodes an encoded event: canonical CBOR, exactly the nine
    /// envelope fields with their types, version 1, a valid payload.
    pub fn decode(bytes: &[u8]) -> Result<SignedEvent, EventError> {
        if bytes.len() > EVENT_BYTES_MAX {
            return Err(EventError::TooLarge { size: bytes.len() });
        }
        let entries = match cbor::decode_map_spans(bytes)? {
            Some(entries) => entries,
            None => {
                let kind = cbor::decode(bytes)?.kind();
                return Err(EventError::NotAMap { kind });
            }
        };
        let mut env = Envelope::default();
        for (key, value, span) in entries {
            let Value::Text(key) = key else {
                return Err(EventError::UnknownField(format!("<{}>", key.kind())));
            };
            match key.as_ref() {
                "v" => env.v = Some(uint("v", value)?),
                "id" => env.id = Some(fixed::<16>("id", value)?),
                "ts" => env.ts = Some(uint("ts", value)?),
                "sig" => {
                    env.sig = Some(fixed::<64>("sig", value)?);
                    env.sig_span = span;
                }
                "data" => env.data = Some(value),
                "type" => match value {
                    Value::Text(t) => env.kind = Some(t),
                    other => return Err(wrong("type", "text", &other)),
                },
                "author" => env.author = Some(fixed::<32>("author", value)?),
                "lamport" => env.lamport = Some(uint("lamport", value)?),
                "community" => env.community = Some(fixed::<32>("community", value)?),
                _ => return Err(EventError::UnknownField(key.into_owned())),
            }
        }
        let v = env.v.ok_or(EventError::MissingField("v"))?;
        if v != FORMAT_VERSION {
            return Err(EventError::UnsupportedVersion(v));
        }
        let kind = env.kind.ok_or(EventError::MissingField("type"))?;
        let data = env.data.ok_or(EventError::MissingField("data"))?;
        let event = Event {
            id: EventId::from_bytes(env.id.ok_or(EventError::MissingField("id"))?),
            ts: env.ts.ok_or(EventError::MissingField("ts"))?,
            author: NodeId(env.author.ok_or(EventError::MissingField("author"))?),
            lamport: env.lamport.ok_or(EventError::MissingField("lamport"))?,
            community: CommunityId(env.community.ok_or(EventError::MissingField("community"))?),
            payload: Payload::from_value(&kind, data)?,
        };
        let sig = env.sig.ok_or(EventError::MissingField("sig"))?;
        check_envelope_rules(&event)?;
        Ok(SignedEvent {
            event,
            sig,
            bytes: bytes.to_vec(),
            sig_span: env.sig_span,
        })
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The signed bytes, cut out of the encoding rather than re-encoded: the
    /// map header loses one entry (9 -> 8, both one-byte headers) and the
    /// `sig` entry is skipped.
    pub fn signing_input(&self) -> Vec<u8> {
        debug_assert_eq!(self.bytes[0], 0xa9);
        let mut out = Vec::with_capacity(SIGNING_DOMAIN.len() + self.bytes.len());
        out.extend_from_slice(SIGNING_DOMAIN);
        out.push(0xa8);
        out.extend_from_slice(&self.bytes[1..self.sig_span.start]);
        out.extend_from_slice(&self.bytes[self.sig_span.end..]);
        out
    }

    /// Checks the signature strictly (RFC 8032, `verify_strict`).
    pub fn verify(self) -> Result<VerifiedEvent, EventError> {
        if !verify_strict(&self.event.author, &self.signing_input(), &self.sig) {
            return Err(EventError::BadSignature(self.event.author));
        }
        let hash = hash_bytes(&self.bytes);
        Ok(VerifiedEvent::new(Verified {
            event: self.event,
            sig: self.sig,
            bytes: self.bytes,
            hash,
        }))
    }
}

#[derive(Default)]
struct Envelope<'a> {
    v: Option<u64>,
    id: Option<[u8; 16]>,
    ts: Option<u64>,
    sig: Option<[u8; 64]>,
    sig_span: Range<usize>,
    data: Option<Value<'a>>,
    kind: Option<Cow<'a, str>>,
    author: Option<[u8; 32]>,
    lamport: Option<u64>,
    community: Option<[u8; 32]>,
}

fn wrong(field: &'static str, expected: &'static str, got: &Value<'_>) -> EventError {
    EventError::WrongType {
        field,
        expected,
        got: got.kind(),
    }
}

fn uint(field: &'static str, v: Value<'_>) -> Result<u64, EventError> {
    match v {
        Value::Uint(n) => Ok(n),
        other => Err(wrong(field, "an unsigned integer", &other)),
    }
}

fn fixed<const N: usize>(field: &'static str, v: Value<'_>) -> Result<[u8; N], EventError> {
    match v {
        Value::Bytes(b) => <[u8; N]>::try_from(&b[..]).map_err(|_| EventError::WrongLength {
            field,
            expected: N,
            got: b.len(),
        }),
        other => Err(wrong(field, "a byte string", &other)),
    }
}

/// An event that is canonical, within limits and correctly signed.
///
/// Immutable and shared: a clone is a reference count, so the log, the
/// pending set, the outputs and the views can all hold the same event (and
/// a simulator's many nodes the same copy) without copying its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEvent {
    inner: Arc<Verified>,
}

#[derive(Debug, PartialEq, Eq)]
struct Verified {
    event: Event,
    sig: [u8; 64],
    bytes: Vec<u8>,
    hash: EventHash,
}

impl VerifiedEvent {
    fn new(v: Verified) -> VerifiedEvent {
        VerifiedEvent { inner: Arc::new(v) }
    }

    /// Decode and verify in one step: what every network and file path uses.
    pub fn decode(bytes: &[u8]) -> Result<VerifiedEvent, EventError> {
        SignedEvent::decode(bytes)?.verify()
    }

    /// Re-reads bytes that this node verified before it stored them under
    /// `expected`. Decoding is strict as always and the hash must match, so
    /// corruption on disk is caught; the signature is not checked again,
    /// which is what makes replaying a million events take seconds.
    pub fn reload(bytes: &[u8], expected: &EventHash) -> Result<VerifiedEvent, EventError> {
        let got = hash_bytes(bytes);
        if &got != expected {
            return Err(EventError::HashMismatch {
                expected: *expected,
                got,
            });
        }
        let signed = SignedEvent::decode(bytes)?;
        Ok(VerifiedEvent::new(Verified {
            event: signed.event,
            sig: signed.sig,
            bytes: signed.bytes,
            hash: got,
        }))
    }

    pub fn event(&self) -> &Event {
        &self.inner.event
    }
    pub fn bytes(&self) -> &[u8] {
        &self.inner.bytes
    }
    /// The bytes, without a copy when this is the last holder.
    pub fn into_bytes(self) -> Vec<u8> {
        Arc::try_unwrap(self.inner).map_or_else(|shared| shared.bytes.clone(), |v| v.bytes)
    }
    pub fn hash(&self) -> &EventHash {
        &self.inner.hash
    }
    pub fn signature(&self) -> &[u8; 64] {
        &self.inner.sig
    }
    pub fn key(&self) -> EventKey {
        EventKey {
            lamport: self.inner.event.lamport,
            hash: self.inner.hash,
        }
    }
    /// For a genesis event, the id of the community it founds.
    pub fn founded_community(&self) -> Option<CommunityId> {
        (self.inner.event.payload.type_name() == TYPE_GENESIS)
            .then_some(CommunityId(self.inner.hash.0))
    }
}
