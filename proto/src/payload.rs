//! Typed `data` payloads of the known event types, and their strict schema.
//!
//! Ingest checks only wire rules (types, enumerations, coordinate ranges):
//! content limits such as title length belong to the service that makes a
//! post, so nodes with different limits still accept the same log.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cbor::Value;
use crate::ids::{EventId, NodeId};

pub const TYPE_GENESIS: &str = "community.genesis";
pub const TYPE_MEMBER_SET: &str = "community.member.set";
pub const TYPE_POST_CREATED: &str = "market.post.created";
pub const TYPE_POST_UPDATED: &str = "market.post.updated";
pub const TYPE_POST_EXPIRED: &str = "market.post.expired";
pub const TYPE_SETTINGS: &str = "community.settings";
pub const TYPE_PROFILE: &str = "community.member.profile";
pub const TYPE_POST_REPLY: &str = "market.post.reply";
pub const TYPE_POST_CLAIM: &str = "market.post.claim";
pub const TYPE_CLAIM_WITHDRAWN: &str = "market.post.claim_withdrawn";
pub const TYPE_CLAIM_ACCEPTED: &str = "market.post.claim_accepted";
pub const TYPE_DM_SEALED: &str = "dm.sealed";

/// Latitude bound in microdegrees (±90°).
pub const LAT_MAX: i64 = 90_000_000;
/// Longitude bound in microdegrees (±180°).
pub const LNG_MAX: i64 = 180_000_000;

/// What is wrong with a known type's `data`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{type_name} data: field `{field}` {problem}")]
pub struct SchemaError {
    pub type_name: &'static str,
    pub field: String,
    pub problem: String,
}

/// The `data` of an event, by type. Unknown types keep their map as is: they
/// are stored and relayed for newer nodes, and ignored by every view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Genesis(Genesis),
    MemberSet(MemberSet),
    PostCreated(PostCreated),
    PostUpdated(PostUpdated),
    PostExpired(PostExpired),
    Settings(CommunitySettings),
    Profile(MemberProfile),
    PostReply(PostReply),
    PostClaim(PostClaim),
    ClaimWithdrawn(ClaimRef),
    ClaimAccepted(ClaimRef),
    DmSealed(DmSealed),
    Unknown {
        type_name: String,
        data: Value<'static>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    pub name: String,
    pub anchors: Vec<NodeId>,
}

#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Member,
    Trusted,
    Anchor,
    Removed,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Member => "member",
            Level::Trusted => "trusted",
            Level::Anchor => "anchor",
            Level::Removed => "removed",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "member" => Level::Member,
            "trusted" => Level::Trusted,
            "anchor" => Level::Anchor,
            "removed" => Level::Removed,
            _ => return None,
        })
    }
    /// Member, trusted or anchor: may post and is shown.
    pub fn is_active(self) -> bool {
        !matches!(self, Level::Removed)
    }
    /// Trusted or anchor: may mark others' posts stale.
    pub fn is_trusted(self) -> bool {
        matches!(self, Level::Trusted | Level::Anchor)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSet {
    pub member: NodeId,
    pub level: Level,
}

/// `community.settings`: the community's complete settings, replacing the
/// earlier ones as a whole. Counts only if its author is an anchor at its
/// point of the `(lamport, hash)` order (the views' rule, not ingest's).
/// Both numbers are at least 1: a zero would hide every post, which no
/// anchor means, so the schema refuses it outright.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommunitySettings {
    pub name: String,
    /// Longest a post stays up after its content event's `ts`, in seconds.
    pub post_ttl_max_s: u64,
    /// Most posts without a counting expiry shown per author.
    pub posts_per_author_max: u64,
}

/// `community.member.profile`: the author's display name. Length limits are
/// the service's, not ingest's (DESIGN.md §4).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberProfile {
    pub name: String,
}

#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Offer,
    Request,
    Info,
    Emergency,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Offer,
        Category::Request,
        Category::Info,
        Category::Emergency,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Offer => "offer",
            Category::Request => "request",
            Category::Info => "info",
            Category::Emergency => "emergency",
        }
    }
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place, in integer microdegrees (no floats on the wire).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub lat: i64,
    pub lng: i64,
    pub label: String,
}

/// The content of a post: what `created` sets and `updated` replaces whole.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PostContent {
    pub category: Category,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    /// Unix milliseconds.
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostCreated {
    /// Shared: the views keep this same content, not copies of it.
    pub content: Arc<PostContent>,
    pub client_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostUpdated {
    pub target: EventId,
    pub content: Arc<PostContent>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpiryReason {
    Fulfilled,
    Withdrawn,
    UserRequest,
    Stale,
    /// Ended by a trusted member or an anchor, whatever its TTL.
    Moderated,
    Other(String),
}

impl ExpiryReason {
    pub fn as_str(&self) -> &str {
        match self {
            ExpiryReason::Fulfilled => "fulfilled",
            ExpiryReason::Withdrawn => "withdrawn",
            ExpiryReason::UserRequest => "user_request",
            ExpiryReason::Stale => "stale",
            ExpiryReason::Moderated => "moderated",
            ExpiryReason::Other(s) => s,
        }
    }
    pub fn parse(s: &str) -> ExpiryReason {
        match s {
            "fulfilled" => ExpiryReason::Fulfilled,
            "withdrawn" => ExpiryReason::Withdrawn,
            "user_request" => ExpiryReason::UserRequest,
            "stale" => ExpiryReason::Stale,
            "moderated" => ExpiryReason::Moderated,
            other => ExpiryReason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ExpiryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExpiryReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A string: one of the known reasons, or any other text.
#[cfg(feature = "schemars")]
impl schemars::JsonSchema for ExpiryReason {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExpiryReason".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "fulfilled, withdrawn, user_request, stale, moderated, or other text",
            "examples": ["fulfilled", "withdrawn", "user_request", "stale", "moderated"],
        })
    }
}

impl<'de> Deserialize<'de> for ExpiryReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ExpiryReason::parse(&String::deserialize(d)?))
    }
}

#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
/// Names an event by its author and its ULID, as a post is named (DESIGN.md
/// §4): nobody can point at another's event by reusing its id. On the wire a
/// map `{author: bytes(32), id: bytes(16)}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventRef {
    pub author: NodeId,
    #[cfg_attr(feature = "schemars", schemars(with = "crate::ids::EventIdSchema"))]
    pub id: EventId,
}

impl EventRef {
    pub fn to_value(&self) -> Value<'_> {
        Value::map([
            ("author", Value::bytes(&self.author.0[..])),
            ("id", Value::bytes(self.id.to_bytes().to_vec())),
        ])
    }

    pub(crate) fn from_value(
        type_name: &'static str,
        field: &str,
        v: &Value,
    ) -> Result<EventRef, SchemaError> {
        let nested = |e: SchemaError| SchemaError {
            field: format!("{field}.{}", e.field),
            ..e
        };
        let mut f = Fields::new(type_name, v).map_err(|e| SchemaError {
            field: field.into(),
            ..e
        })?;
        let author = f.node_id("author").map_err(nested)?;
        let id = f.ulid("id").map_err(nested)?;
        f.finish().map_err(nested)?;
        Ok(EventRef { author, id })
    }
}

/// `market.post.reply`: a public answer under a post. Length limits are the
/// service's (DESIGN.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostReply {
    pub target: EventRef,
    pub body: String,
}

/// `market.post.claim`: "I'd like this" / "I can help", with an optional note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostClaim {
    pub target: EventRef,
    pub note: Option<String>,
}

/// `market.post.claim_withdrawn` (by the claim's author) and
/// `market.post.claim_accepted` (by the post's author): a post and one of
/// its claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRef {
    pub target: EventRef,
    pub claim: EventRef,
}

/// `dm.sealed`: a private message sealed to `to` (see [`crate::sealed`]).
/// Ingest checks only that `box` is a byte string: a box nobody can open is
/// still stored and relayed, since only its recipient could tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmSealed {
    pub to: NodeId,
    pub sealed: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostExpired {
    pub target: EventId,
    pub reason: ExpiryReason,
}

impl Payload {
    /// The event's `type` string.
    pub fn type_name(&self) -> &str {
        match self {
            Payload::Genesis(_) => TYPE_GENESIS,
            Payload::MemberSet(_) => TYPE_MEMBER_SET,
            Payload::PostCreated(_) => TYPE_POST_CREATED,
            Payload::PostUpdated(_) => TYPE_POST_UPDATED,
            Payload::PostExpired(_) => TYPE_POST_EXPIRED,
            Payload::Settings(_) => TYPE_SETTINGS,
            Payload::Profile(_) => TYPE_PROFILE,
            Payload::PostReply(_) => TYPE_POST_REPLY,
            Payload::PostClaim(_) => TYPE_POST_CLAIM,
            Payload::ClaimWithdrawn(_) => TYPE_CLAIM_WITHDRAWN,
            Payload::ClaimAccepted(_) => TYPE_CLAIM_ACCEPTED,
            Payload::DmSealed(_) => TYPE_DM_SEALED,
            Payload::Unknown { type_name, .. } => type_name,
        }
    }

    /// The `data` map as CBOR.
    pub fn to_value(&self) -> Value<'_> {
        match self {
            Payload::Genesis(g) => Value::map([
                ("name", Value::text(g.name.as_str())),
                (
                    "anchors",
                    Value::Array(g.anchors.iter().map(|a| Value::bytes(&a.0[..])).collect()),
                ),
            ]),
            Payload::MemberSet(m) => Value::map([
                ("member", Value::bytes(&m.member.0[..])),
                ("level", Value::text(m.level.as_str())),
            ]),
            Payload::PostCreated(p) => {
                let mut entries = content_entries(&p.content);
                if let Some(c) = &p.client_id {
                    entries.push(("client_id", Value::text(c)));
                }
                Value::map(entries)
            }
            Payload::PostUpdated(p) => {
                let mut entries = content_entries(&p.content);
                entries.push(("target", Value::bytes(p.target.to_bytes().to_vec())));
                Value::map(entries)
            }
            Payload::PostExpired(p) => Value::map([
                ("target", Value::bytes(p.target.to_bytes().to_vec())),
                ("reason", Value::text(p.reason.as_str())),
            ]),
            Payload::Settings(c) => Value::map([
                ("name", Value::text(c.name.as_str())),
                ("post_ttl_max_s", Value::Uint(c.post_ttl_max_s)),
                ("posts_per_author_max", Value::Uint(c.posts_per_author_max)),
            ]),
            Payload::Profile(p) => Value::map([("name", Value::text(p.name.as_str()))]),
            Payload::PostReply(r) => Value::map([
                ("target", r.target.to_value()),
                ("body", Value::text(r.body.as_str())),
            ]),
            Payload::PostClaim(c) => {
                let mut entries = vec![("target", c.target.to_value())];
                if let Some(note) = &c.note {
                    entries.push(("note", Value::text(note)));
                }
                Value::map(entries)
            }
            Payload::ClaimWithdrawn(c) | Payload::ClaimAccepted(c) => Value::map([
                ("target", c.target.to_value()),
                ("claim", c.claim.to_value()),
            ]),
            Payload::DmSealed(d) => Value::map([
                ("to", Value::bytes(&d.to.0[..])),
                ("box", Value::bytes(&d.sealed[..])),
            ]),
            Payload::Unknown { data, .. } => data.borrowed(),
        }
    }

    /// Parses `data` for `type_name`. Unknown types are accepted as they are.
    pub fn from_value(type_name: &str, data: Value<'_>) -> Result<Payload, SchemaError> {
        let parsed = match type_name {
            TYPE_GENESIS => {
                let mut f = Fields::new(TYPE_GENESIS, &data)?;
                let name = f.text("name")?;
                let anchors = f.array("anchors")?;
                let anchors = anchors
                    .iter()
                    .map(|a| node_id(TYPE_GENESIS, "anchors", a))
                    .collect::<Result<Vec<_>, _>>()?;
                if anchors.is_empty() {
                    return Err(f.invalid("anchors", "is empty: a community needs an anchor"));
                }
                f.finish()?;
                Payload::Genesis(Genesis { name, anchors })
            }
            TYPE_MEMBER_SET => {
                let mut f = Fields::new(TYPE_MEMBER_SET, &data)?;
                let member = node_id(TYPE_MEMBER_SET, "member", f.required("member")?)?;
                let level_text = f.text("level")?;
                let level = Level::parse(&level_text).ok_or_else(|| {
                    f.invalid(
                        "level",
                        &format!("is {level_text:?}, not member, trusted, anchor or removed"),
                    )
                })?;
                f.finish()?;
                Payload::MemberSet(MemberSet { member, level })
            }
            TYPE_POST_CREATED => {
                let mut f = Fields::new(TYPE_POST_CREATED, &data)?;
                let content = Arc::new(content(&mut f)?);
                let client_id = f
                    .optional("client_id")
                    .map(|v| f.as_text("client_id", v))
                    .transpose()?;
                f.finish()?;
                Payload::PostCreated(PostCreated { content, client_id })
            }
            TYPE_POST_UPDATED => {
                let mut f = Fields::new(TYPE_POST_UPDATED, &data)?;
                let target = f.ulid("target")?;
                let content = Arc::new(content(&mut f)?);
                f.finish()?;
                Payload::PostUpdated(PostUpdated { target, content })
            }
            TYPE_POST_EXPIRED => {
                let mut f = Fields::new(TYPE_POST_EXPIRED, &data)?;
                let target = f.ulid("target")?;
                let reason = ExpiryReason::parse(&f.text("reason")?);
                f.finish()?;
                Payload::PostExpired(PostExpired { target, reason })
            }
            TYPE_SETTINGS => {
                let mut f = Fields::new(TYPE_SETTINGS, &data)?;
                let name = f.text("name")?;
                let post_ttl_max_s = f.positive("post_ttl_max_s")?;
                let posts_per_author_max = f.positive("posts_per_author_max")?;
                f.finish()?;
                Payload::Settings(CommunitySettings {
                    name,
                    post_ttl_max_s,
                    posts_per_author_max,
                })
            }
            TYPE_PROFILE => {
                let mut f = Fields::new(TYPE_PROFILE, &data)?;
                let name = f.text("name")?;
                f.finish()?;
                Payload::Profile(MemberProfile { name })
            }
            TYPE_POST_REPLY => {
                let mut f = Fields::new(TYPE_POST_REPLY, &data)?;
                let target = f.event_ref("target")?;
                let body = f.text("body")?;
                f.finish()?;
                Payload::PostReply(PostReply { target, body })
            }
            TYPE_POST_CLAIM => {
                let mut f = Fields::new(TYPE_POST_CLAIM, &data)?;
                let target = f.event_ref("target")?;
                let note = f
                    .optional("note")
                    .map(|v| f.as_text("note", v))
                    .transpose()?;
                f.finish()?;
                Payload::PostClaim(PostClaim { target, note })
            }
            TYPE_CLAIM_WITHDRAWN | TYPE_CLAIM_ACCEPTED => {
                let name = if type_name == TYPE_CLAIM_WITHDRAWN {
                    TYPE_CLAIM_WITHDRAWN
                } else {
                    TYPE_CLAIM_ACCEPTED
                };
                let mut f = Fields::new(name, &data)?;
                let target = f.event_ref("target")?;
                let claim = f.event_ref("claim")?;
                f.finish()?;
                let c = ClaimRef { target, claim };
                if name == TYPE_CLAIM_WITHDRAWN {
                    Payload::ClaimWithdrawn(c)
                } else {
                    Payload::ClaimAccepted(c)
                }
            }
            TYPE_DM_SEALED => {
                let mut f = Fields::new(TYPE_DM_SEALED, &data)?;
                let to = f.node_id("to")?;
                let sealed = f.bytes("box")?;
                f.finish()?;
                Payload::DmSealed(DmSealed { to, sealed })
            }
            _ => {
                if !matches!(data, Value::Map(_)) {
                    return Err(SchemaError {
                        type_name: "unknown type",
                        field: "data".into(),
                        problem: format!("is a {}, not a map", data.kind()),
                    });
                }
                Payload::Unknown {
                    type_name: type_name.to_owned(),
                    data: data.into_owned(),
                }
            }
        };
        Ok(parsed)
    }
}

fn content_entries(c: &PostContent) -> Vec<(&'static str, Value<'_>)> {
    let mut entries = vec![
        ("category", Value::text(c.category.as_str())),
        ("title", Value::text(c.title.as_str())),
        ("body", Value::text(c.body.as_str())),
        (
            "tags",
            Value::Array(c.tags.iter().map(|t| Value::text(t.as_str())).collect()),
        ),
        ("expires_at", Value::Uint(c.expires_at)),
    ];
    if let Some(l) = &c.location {
        entries.push((
            "location",
            Value::map([
                ("lat", int_value(l.lat)),
                ("lng", int_value(l.lng)),
                ("label", Value::text(l.label.as_str())),
            ]),
        ));
    }
    entries
}

fn int_value(n: i64) -> Value<'static> {
    if n >= 0 {
        Value::Uint(n as u64)
    } else {
        // -1 - m = n  =>  m = -1 - n, which fits u64 for every negative i64.
        Value::Nint((-1 - n) as u64)
    }
}

fn content(f: &mut Fields<'_>) -> Result<PostContent, SchemaError> {
    let category_text = f.text("category")?;
    let category = Category::parse(&category_text).ok_or_else(|| {
        f.invalid(
            "category",
            &format!("is {category_text:?}, not offer, request, info or emergency"),
        )
    })?;
    let title = f.text("title")?;
    let body = f.text("body")?;
    let tags = f
        .array("tags")?
        .iter()
        .map(|t| f.as_text("tags", t))
        .collect::<Result<Vec<_>, _>>()?;
    let expires_at = f.uint("expires_at")?;
    let location = match f.optional("location") {
        None => None,
        Some(v) => {
            let mut l = Fields::new(f.type_name, v).map_err(|e| SchemaError {
                field: "location".into(),
                ..e
            })?;
            let lat = l.int("lat")?;
            let lng = l.int("lng")?;
            let label = l.text("label")?;
            if !(-LAT_MAX..=LAT_MAX).contains(&lat) {
                return Err(l.invalid(
                    "location.lat",
                    &format!("{lat} is outside ±{LAT_MAX} microdegrees"),
                ));
            }
            if !(-LNG_MAX..=LNG_MAX).contains(&lng) {
                return Err(l.invalid(
                    "location.lng",
                    &format!("{lng} is outside ±{LNG_MAX} microdegrees"),
                ));
            }
            l.finish()?;
            Some(Location { lat, lng, label })
        }
    };
    Ok(PostContent {
        category,
        title,
        body,
        tags,
        expires_at,
        location,
    })
}

fn node_id(type_name: &'static str, field: &str, v: &Value<'_>) -> Result<NodeId, SchemaError> {
    match v {
        Value::Bytes(b) => NodeId::from_slice(b).ok_or_else(|| SchemaError {
            type_name,
            field: field.into(),
            problem: format!("is {} bytes, not 32", b.len()),
        }),
        other => Err(SchemaError {
            type_name,
            field: field.into(),
            problem: format!("is a {}, not a byte string", other.kind()),
        }),
    }
}

/// Reads the fields of one `data` map, tracking which were used so that
/// `finish` can reject unknown keys.
pub(crate) struct Fields<'a> {
    type_name: &'static str,
    entries: &'a [(Value<'a>, Value<'a>)],
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(type_name: &'static str, v: &'a Value<'a>) -> Result<Self, SchemaError> {
        match v {
            Value::Map(entries) => Ok(Fields {
                type_name,
                entries,
                used: vec![false; entries.len()],
            }),
            other => Err(SchemaError {
                type_name,
                field: "data".into(),
                problem: format!("is a {}, not a map", other.kind()),
            }),
        }
    }

    fn invalid(&self, field: &str, problem: &str) -> SchemaError {
        SchemaError {
            type_name: self.type_name,
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn optional(&mut self, key: &str) -> Option<&'a Value<'a>> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| matches!(k, Value::Text(t) if t == key))?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    pub(crate) fn required(&mut self, key: &str) -> Result<&'a Value<'a>, SchemaError> {
        self.optional(key)
            .ok_or_else(|| self.invalid(key, "is missing"))
    }

    fn wrong(&self, key: &str, expected: &str, got: &Value<'_>) -> SchemaError {
        self.invalid(key, &format!("is a {}, not {expected}", got.kind()))
    }

    fn as_text(&self, key: &str, v: &Value<'_>) -> Result<String, SchemaError> {
        match v {
            Value::Text(t) => Ok(t.to_string()),
            other => Err(self.wrong(key, "text", other)),
        }
    }

    pub(crate) fn text(&mut self, key: &str) -> Result<String, SchemaError> {
        let v = self.required(key)?;
        self.as_text(key, v)
    }

    pub(crate) fn uint(&mut self, key: &str) -> Result<u64, SchemaError> {
        match self.required(key)? {
            Value::Uint(n) => Ok(*n),
            other => Err(self.wrong(key, "an unsigned integer", other)),
        }
    }

    /// An unsigned integer of at least 1.
    fn positive(&mut self, key: &str) -> Result<u64, SchemaError> {
        match self.uint(key)? {
            0 => Err(self.invalid(key, "is 0; it must be at least 1")),
            n => Ok(n),
        }
    }

    fn int(&mut self, key: &str) -> Result<i64, SchemaError> {
        match self.required(key)? {
            Value::Uint(n) if *n <= i64::MAX as u64 => Ok(*n as i64),
            Value::Nint(n) if *n < i64::MAX as u64 => Ok(-1 - *n as i64),
            Value::Uint(_) | Value::Nint(_) => Err(self.invalid(key, "is out of range")),
            other => Err(self.wrong(key, "an integer", other)),
        }
    }

    pub(crate) fn array(&mut self, key: &str) -> Result<&'a [Value<'a>], SchemaError> {
        match self.required(key)? {
            Value::Array(items) => Ok(items),
            other => Err(self.wrong(key, "an array", other)),
        }
    }

    pub(crate) fn ulid(&mut self, key: &str) -> Result<EventId, SchemaError> {
        match self.required(key)? {
            Value::Bytes(b) => <[u8; 16]>::try_from(&b[..])
                .map(EventId::from_bytes)
                .map_err(|_| self.invalid(key, &format!("is {} bytes, not 16", b.len()))),
            other => Err(self.wrong(key, "a byte string", other)),
        }
    }

    pub(crate) fn bytes(&mut self, key: &str) -> Result<Vec<u8>, SchemaError> {
        match self.required(key)? {
            Value::Bytes(b) => Ok(b.to_vec()),
            other => Err(self.wrong(key, "a byte string", other)),
        }
    }

    pub(crate) fn node_id(&mut self, key: &str) -> Result<NodeId, SchemaError> {
        let v = self.required(key)?;
        node_id(self.type_name, key, v)
    }

    pub(crate) fn event_ref(&mut self, key: &str) -> Result<EventRef, SchemaError> {
        let v = self.required(key)?;
        EventRef::from_value(self.type_name, key, v)
    }

    pub(crate) fn finish(self) -> Result<(), SchemaError> {
        match self.used.iter().position(|u| !u) {
            None => Ok(()),
            Some(i) => {
                let key = match &self.entries[i].0 {
                    Value::Text(t) => t.to_string(),
                    other => format!("<{}>", other.kind()),
                };
                Err(self.invalid(&key, "is not part of this type"))
            }
        }
    }
}
