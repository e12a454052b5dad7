//! Fixed-size identifiers. Text forms are lowercase hex (NodeID, community id,
//! event hash) and Crockford base32 for event ids (ULID), as users see them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error parsing an identifier from text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {len} bytes of lowercase hex, got {got:?}")]
pub struct IdParseError {
    pub what: &'static str,
    pub len: usize,
    pub got: String,
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// From a slice that must be exactly 32 bytes.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(b).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || IdParseError { what: $what, len: 32, got: s.to_owned() };
                if s.len() != 64 || s.bytes().any(|c| c.is_ascii_uppercase()) {
                    return Err(err());
                }
                let bytes = hex::decode(s).map_err(|_| err())?;
                Self::from_slice(&bytes).ok_or_else(err)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        /// Its text form: 64 lowercase hex digits.
        #[cfg(feature = "schemars")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": concat!("A ", $what, ": 32 bytes as lowercase hex."),
                })
            }
        }
    };
}

hex_id!(
    /// An ed25519 public key: the identity of a device (and its libp2p PeerId).
    NodeId,
    "node id"
);
hex_id!(
    /// SHA-256 of a community's genesis event.
    CommunityId,
    "community id"
);
hex_id!(
    /// SHA-256 of an encoded event: gossip message id and sync item id.
    EventHash,
    "event hash"
);

/// An event's id: a ULID (16 bytes on the wire).
pub type EventId = ulid::Ulid;

/// The JSON Schema of an [`EventId`]'s text form (a ULID in Crockford
/// base32), for fields of that type: `#[schemars(with = "EventIdSchema")]`
/// (`ulid::Ulid` is a foreign type, so it cannot carry the impl itself).
#[cfg(feature = "schemars")]
#[derive(Debug)]
pub struct EventIdSchema;

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for EventIdSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$",
            "description": "An event id: a ULID, 26 characters of Crockford base32.",
        })
    }
}
