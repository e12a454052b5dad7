//! Members and the community itself: `community.member.set` from an
//! anchor, `member.list`, the anchors' `community.settings` (name and
//! limits) and each member's own `member.profile` (display name).

use hearth_proto::{
    CommunitySettings, Level, MemberProfile, MemberSet, NodeId, Payload, VerifiedEvent,
};
use serde::{Deserialize, Serialize};

use super::market::check_no_control;
use crate::core::bus::{BusError, Caller, Descriptor};
use crate::core::views::Settings;
use crate::core::Node;
use crate::store::EventStore;

pub const MEMBER_SET: &str = "community.member.set";
pub const MEMBER_LIST: &str = "member.list";
pub const SETTINGS: &str = "community.settings";
pub const PROFILE: &str = "member.profile";

/// Display names: long enough for "Ana & Tom, no. 14", short enough for a
/// column of `member list`.
pub const DISPLAY_NAME_CHARS_MAX: usize = 40;
/// Community names: as `hearth community create` allows.
pub const COMMUNITY_NAME_CHARS_MAX: usize = 120;
/// The longest `post_ttl_max_s` the service signs: one year. Longer than
/// any neighbourhood offer stays true; the view accepts any positive value.
pub const POST_TTL_MAX_S_LIMIT: u64 = 365 * 24 * 3600;
/// The highest `posts_per_author_max` the service signs: a bound of a
/// million posts per author bounds nothing a flood cares about.
pub const POSTS_PER_AUTHOR_MAX_LIMIT: u64 = 100_000;

pub static DESCRIPTORS: [Descriptor; 4] = [
    Descriptor {
        name: MEMBER_SET,
        version: 1,
        max_concurrent: 1,
        trust_required: Some(Level::Anchor),
        timeout_ms: 5_000,
        // Setting the same level again signs nothing new (see below).
        idempotent: true,
        writes: true,
    },
    Descriptor {
        name: MEMBER_LIST,
        version: 1,
        max_concurrent: 4,
        // Who belongs is for members only.
        trust_required: Some(Level::Member),
        timeout_ms: 5_000,
        idempotent: true,
        writes: false,
    },
    Descriptor {
        name: SETTINGS,
        version: 1,
        max_concurrent: 1,
        trust_required: Some(Level::Anchor),
        timeout_ms: 5_000,
        // Settings equal to those in force sign nothing.
        idempotent: true,
        writes: true,
    },
    Descriptor {
        name: PROFILE,
        version: 1,
        max_concurrent: 1,
        trust_required: Some(Level::Member),
        timeout_ms: 5_000,
        // The same name again signs nothing.
        idempotent: true,
        writes: true,
    },
];

/// One member as `member.list` shows them.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberEntry {
    pub id: NodeId,
    pub level: Level,
    /// Unescaped text from an event: escape it before a terminal sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberList {
    /// The community's name (from its settings, else its genesis).
    pub community: String,
    pub settings: Settings,
    /// Every key an effective `member.set` (or the genesis) gave a level,
    /// removed ones included, in id order.
    pub members: Vec<MemberEntry>,
}

/// `community.settings` params: any subset, merged into those in force.
#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsParams {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub post_ttl_max_s: Option<u64>,
    #[serde(default)]
    pub posts_per_author_max: Option<u64>,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettingsReceipt {
    pub settings: Settings,
    /// False when nothing differed from the settings in force.
    pub changed: bool,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileParams {
    pub name: String,
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileReceipt {
    pub id: NodeId,
    pub name: String,
    /// False when this was already the name: nothing was signed.
    pub changed: bool,
}

/// Trims a name and checks its length (in chars) and characters.
fn checked_name(field: &str, raw: &str, max: usize) -> Result<String, BusError> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > max {
        return Err(BusError::bad_request(format!(
            "{field} must be 1 to {max} characters after trimming spaces, got {n}"
        )));
    }
    check_no_control(field, name, &[])?;
    Ok(name.to_owned())
}

fn local_only(caller: Caller, what: &str) -> Result<(), BusError> {
    match caller {
        Caller::Local => Ok(()),
        Caller::Remote(peer) => Err(BusError::unauthorized(format!(
            "{peer} cannot {what} through this node: the event is signed by this node"
        ))),
    }
}

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
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

#[cfg_attr(feature = "runtime", derive(schemars::JsonSchema))]
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
        local_only(caller, "set levels")?;
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
        let membership = &self.views().membership;
        let leaves_no_anchor = membership.level(&member) == Some(Level::Anchor)
            && level != Level::Anchor
            && membership.anchor_count() <= 1;
        if leaves_no_anchor {
            let whom = if member == me {
                "you are the last anchor".to_owned()
            } else {
                format!("{member} is the last anchor")
            };
            return Err(BusError::bad_request(format!(
                "{whom}: a community without an anchor can never admit anyone again; make another member an anchor first with `hearth member add <id> --level anchor`"
            )));
        }
        self.publish(now_ms, Payload::MemberSet(MemberSet { member, level }))
            .map_err(|e| e.storage_refusal().unwrap_or_else(|| BusError::internal(e)))
    }
}

impl<S: EventStore> Node<S> {
    /// Every member with their level and display name; a read, so remote
    /// members may ask too.
    pub fn member_list(&self) -> MemberList {
        let m = &self.views().membership;
        MemberList {
            community: m.community_name().to_owned(),
            settings: m.settings().clone(),
            members: m
                .levels()
                .iter()
                .map(|(id, level)| MemberEntry {
                    id: *id,
                    level: *level,
                    name: m.display_name(id).map(str::to_owned),
                })
                .collect(),
        }
    }

    /// Signs new community settings: those in force with `p` merged in.
    /// Anchors only (the view ignores anyone else's), local callers only.
    pub fn community_settings(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: SettingsParams,
    ) -> Result<SettingsReceipt, BusError> {
        local_only(caller, "change the community's settings")?;
        let me = self.node_id();
        let membership = &self.views().membership;
        if membership.level(&me) != Some(Level::Anchor) {
            return Err(BusError::unauthorized(format!(
                "only an anchor can change the community's name or limits; this node ({me}) is {}",
                membership
                    .level(&me)
                    .map(|l| l.as_str())
                    .unwrap_or("not a member")
            )));
        }
        let mut next: CommunitySettings = membership.settings().clone();
        if let Some(name) = &p.name {
            next.name = checked_name("the community name", name, COMMUNITY_NAME_CHARS_MAX)?;
        }
        if let Some(t) = p.post_ttl_max_s {
            if t == 0 || t > POST_TTL_MAX_S_LIMIT {
                return Err(BusError::bad_request(format!(
                    "post_ttl_max_s must be 1 to {POST_TTL_MAX_S_LIMIT} seconds (365 days), got {t}"
                )));
            }
            next.post_ttl_max_s = t;
        }
        if let Some(n) = p.posts_per_author_max {
            if n == 0 || n > POSTS_PER_AUTHOR_MAX_LIMIT {
                return Err(BusError::bad_request(format!(
                    "posts_per_author_max must be 1 to {POSTS_PER_AUTHOR_MAX_LIMIT}, got {n}"
                )));
            }
            next.posts_per_author_max = n;
        }
        if next == *membership.settings() {
            return Ok(SettingsReceipt {
                settings: next,
                changed: false,
            });
        }
        self.publish(now_ms, Payload::Settings(next.clone()))
            .map_err(BusError::internal)?;
        Ok(SettingsReceipt {
            settings: next,
            changed: true,
        })
    }

    /// Sets this node's display name (1 to 40 characters, no control
    /// characters). Members only: others' profiles are never shown.
    pub fn member_profile(
        &mut self,
        now_ms: u64,
        caller: Caller,
        p: ProfileParams,
    ) -> Result<ProfileReceipt, BusError> {
        local_only(caller, "set a display name")?;
        let me = self.node_id();
        if !self.views().membership.is_active(&me) {
            return Err(BusError::unauthorized(format!(
                "this node ({me}) is not a member, so its name would not be shown; ask an anchor to run `hearth member add {me}`"
            )));
        }
        let name = checked_name("a display name", &p.name, DISPLAY_NAME_CHARS_MAX)?;
        if self.views().membership.display_name(&me) == Some(name.as_str()) {
            return Ok(ProfileReceipt {
                id: me,
                name,
                changed: false,
            });
        }
        self.publish(
            now_ms,
            Payload::Profile(MemberProfile { name: name.clone() }),
        )
        .map_err(BusError::internal)?;
        Ok(ProfileReceipt {
            id: me,
            name,
            changed: true,
        })
    }
}
