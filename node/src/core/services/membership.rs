//! Admitting and changing members: `community.member.set` from an anchor.

use hearth_proto::{Level, MemberSet, NodeId, Payload, VerifiedEvent};
use serde::{Deserialize, Serialize};

use crate::core::bus::{BusError, Caller, Descriptor};
use crate::core::Node;
use crate::store::EventStore;

pub const MEMBER_SET: &str = "community.member.set";

pub static DESCRIPTORS: [Descriptor; 1] = [Descriptor {
    name: MEMBER_SET,
    version: 1,
    max_concurrent: 1,
    trust_required: Some(Level::Anchor),
    timeout_ms: 5_000,
    // Setting the same level again signs nothing new (see below).
    idempotent: true,
}];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSetParams {
    pub member: NodeId,
    #[serde(default = "default_level")]
    pub level: Level,
}

fn default_level() -> Level {
    Level::Member
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberSetReceipt {
    pub member: NodeId,
    pub level: Level,
    /// False when the member already had this level: nothing was signed.
    pub changed: bool,
}

impl<S: EventStore> Node<S> {
    /// The bus form of [`Node::set_member`]: local callers only, since the
    /// event is signed by this node.
    pub fn member_set(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: MemberSetParams,
    ) -> Result<MemberSetReceipt, BusError> {
        if let Caller::Remote(peer) = caller {
            return Err(BusError::unauthorized(format!(
                "{peer} cannot set levels through this node: the event is signed by this node"
            )));
        }
        let changed = self.views().membership.level(&p.member) != Some(p.level);
        if changed {
            self.set_member(now_ms, p.member, p.level)?;
        }
        Ok(MemberSetReceipt {
            member: p.member,
            level: p.level,
            changed,
        })
    }

    /// Sets `member`'s level. Only an anchor's sets count (DESIGN.md §4), so
    /// a node that is not an anchor is told so instead of signing an event
    /// every other node would ignore.
    pub fn set_member(
        &mut self,
        now_ms: u64,
        member: NodeId,
        level: Level,
    ) -> Result<VerifiedEvent, BusError> {
        let me = self.node_id();
        if self.views().membership.level(&me) != Some(Level::Anchor) {
            return Err(BusError::unauthorized(format!(
                "only an anchor can set levels; this node ({me}) is {}",
                self.views()
                    .membership
                    .level(&me)
                    .map(|l| l.as_str())
                    .unwrap_or("not a member")
            )));
        }
        self.publish(now_ms, Payload::MemberSet(MemberSet { member, level }))
            .map_err(|e| e.storage_refusal().unwrap_or_else(|| BusError::internal(e)))
    }
}
