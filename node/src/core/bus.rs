//! The capability bus: named handlers with descriptors. The same handler
//! answers a local call and (with the mesh) a remote `/hearthnet/bus/1`
//! request; only the [`Caller`] differs.

use std::fmt;

use hearth_proto::{Level, NodeId};
use serde::{Deserialize, Serialize};

/// Error codes on the wire (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    Partition,
    Overloaded,
    Timeout,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Partition => "partition",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A handler's refusal: a wire code and a sentence for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct BusError {
    pub code: ErrorCode,
    pub message: String,
}

impl BusError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BusError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, m)
    }
    pub fn internal(m: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, m.to_string())
    }
}

/// What a capability promises; the driver enforces concurrency and timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub name: &'static str,
    pub version: u32,
    /// Calls served at once; one more is `overloaded`.
    pub max_concurrent: u32,
    /// Least level a remote caller needs (`None`: anyone).
    pub trust_required: Option<Level>,
    pub timeout_ms: u64,
    /// Safe to retry: a repeat has no further effect.
    pub idempotent: bool,
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The node's own user (CLI, local API). Reads are always allowed: it is
    /// the owner's own view. Writes are signed by the node, so the node
    /// itself must be a member.
    Local,
    /// A peer over the bus, with its level checked against the descriptor.
    Remote(NodeId),
}

/// Whether `level` satisfies `required` (anchor > trusted > member).
pub fn level_satisfies(level: Option<Level>, required: Option<Level>) -> bool {
    fn rank(l: Level) -> u8 {
        match l {
            Level::Removed => 0,
            Level::Member => 1,
            Level::Trusted => 2,
            Level::Anchor => 3,
        }
    }
    match required {
        None => true,
        Some(req) => level.is_some_and(|l| rank(l) >= rank(req) && l.is_active()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_satisfies_nothing_and_anchor_satisfies_member() {
        assert!(!level_satisfies(Some(Level::Removed), Some(Level::Member)));
        assert!(!level_satisfies(None, Some(Level::Member)));
        assert!(level_satisfies(Some(Level::Anchor), Some(Level::Member)));
        assert!(!level_satisfies(Some(Level::Member), Some(Level::Trusted)));
        assert!(level_satisfies(None, None));
    }

    #[test]
    fn error_codes_serialise_as_wire_names() {
        let text = serde_json::to_string(&ErrorCode::BadRequest).unwrap_or_default();
        assert_eq!(text, "\"bad_request\"");
    }
}
