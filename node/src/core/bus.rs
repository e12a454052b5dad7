//! The capability bus: named handlers with descriptors. The same handler
//! answers a local call and (with the mesh) a remote `/hearthnet/bus/2`
//! request; only the [`Caller`] differs.

use std::collections::{BTreeMap, VecDeque};
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
    /// The node's disk is full: a local write was refused and nothing was
    /// written. Local only: remote callers cannot write, so never see it.
    StorageFull,
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
            ErrorCode::StorageFull => "storage_full",
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
    /// Signs events into the log (a write), as opposed to only reading the
    /// views. The HTTP API asks for its token on writes by this flag, so a
    /// new capability is classed where it is declared, not in a name list.
    pub writes: bool,
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

/// Requests waiting for their capability's handler, bounded per capability
/// by its descriptor: one more than `max_concurrent` waiting is refused with
/// `overloaded`, and a request still waiting at its deadline (`timeout_ms`
/// after it arrived) is answered `timeout` instead of being served late.
#[derive(Debug)]
pub struct BusQueue<T> {
    queues: BTreeMap<&'static str, VecDeque<(u64, T)>>,
}

impl<T> Default for BusQueue<T> {
    fn default() -> Self {
        BusQueue {
            queues: BTreeMap::new(),
        }
    }
}

impl<T> BusQueue<T> {
    /// Queues `item` for `desc`'s handler, or hands it back with the
    /// `overloaded` error to answer.
    pub fn offer(
        &mut self,
        desc: &'static Descriptor,
        now_ms: u64,
        item: T,
    ) -> Result<(), (T, BusError)> {
        let queue = self.queues.entry(desc.name).or_default();
        if queue.len() >= desc.max_concurrent as usize {
            return Err((
                item,
                BusError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "{} is serving {} calls already; try again",
                        desc.name, desc.max_concurrent
                    ),
                ),
            ));
        }
        queue.push_back((now_ms.saturating_add(desc.timeout_ms), item));
        Ok(())
    }

    /// The next request to answer, oldest deadline first, with `Some(error)`
    /// if it waited past its deadline.
    pub fn pop(&mut self, now_ms: u64) -> Option<(T, Option<BusError>)> {
        let name = *self
            .queues
            .iter()
            .filter_map(|(name, q)| q.front().map(|(deadline, _)| (deadline, name)))
            .min()?
            .1;
        let queue = self.queues.get_mut(name)?;
        let (deadline, item) = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(name);
        }
        let late = (now_ms > deadline).then(|| {
            BusError::new(
                ErrorCode::Timeout,
                format!("{name} waited past its timeout"),
            )
        });
        Some((item, late))
    }

    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
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

    static DESC: Descriptor = Descriptor {
        name: "test.cap",
        version: 1,
        max_concurrent: 2,
        trust_required: None,
        timeout_ms: 100,
        idempotent: true,
        writes: false,
    };

    #[test]
    fn queue_over_max_concurrent_is_overloaded() {
        let mut q = BusQueue::default();
        assert!(q.offer(&DESC, 0, 1).is_ok());
        assert!(q.offer(&DESC, 0, 2).is_ok());
        let (item, err) = q.offer(&DESC, 0, 3).unwrap_err();
        assert_eq!((item, err.code), (3, ErrorCode::Overloaded));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn request_waiting_past_its_timeout_is_answered_timeout() {
        let mut q = BusQueue::default();
        q.offer(&DESC, 0, 1).unwrap();
        q.offer(&DESC, 50, 2).unwrap();
        let (first, late) = q.pop(120).unwrap();
        assert_eq!(first, 1);
        assert_eq!(late.map(|e| e.code), Some(ErrorCode::Timeout));
        let (second, late) = q.pop(120).unwrap();
        assert_eq!((second, late), (2, None));
        assert!(q.pop(120).is_none() && q.is_empty());
    }

    #[test]
    fn error_codes_serialise_as_wire_names() {
        let text = serde_json::to_string(&ErrorCode::BadRequest).unwrap_or_default();
        assert_eq!(text, "\"bad_request\"");
    }

    /// `storage_full` is spelled the same by serde and by `as_str`.
    #[test]
    fn storage_full_serialises_as_its_wire_name() {
        let text = serde_json::to_string(&ErrorCode::StorageFull).unwrap_or_default();
        assert_eq!(text, "\"storage_full\"");
        assert_eq!(ErrorCode::StorageFull.as_str(), "storage_full");
    }
}
