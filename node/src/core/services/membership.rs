//! Admitting and changing members: `community.member.set` from an anchor.

use hearth_proto::{Level, MemberSet, NodeId, Payload, VerifiedEvent};

use crate::core::bus::BusError;
use crate::core::Node;
use crate::store::EventStore;

impl<S: EventStore> Node<S> {
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
            .map_err(BusError::internal)
    }
}
