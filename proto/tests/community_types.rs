//! The two event types of issue 10, `community.settings` and
//! `community.member.profile`, and the `moderated` expiry reason: their exact
//! `data` encodings (written out by hand, independent of the encoder), round
//! trips through signing and decoding, and every schema rejection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_proto::cbor::{self, Value};
use hearth_proto::payload::{TYPE_PROFILE, TYPE_SETTINGS};
use hearth_proto::{
    CommunityId, CommunitySettings, Event, EventError, EventId, ExpiryReason, Identity,
    MemberProfile, Payload, PostExpired, SchemaError, VerifiedEvent,
};

const TS: u64 = 1_767_225_600_000;

fn me() -> Identity {
    Identity::from_seed([7; 32])
}

fn event(payload: Payload) -> Event {
    Event {
        id: EventId::from_bytes([0x05; 16]),
        ts: TS,
        author: me().node_id(),
        lamport: 9,
        community: CommunityId([0x11; 32]),
        payload,
    }
}

fn settings() -> CommunitySettings {
    CommunitySettings {
        name: "Lindenhof".into(),
        post_ttl_max_s: 604_800,
        posts_per_author_max: 25,
    }
}

/// `{name, post_ttl_max_s, posts_per_author_max}` in canonical key order
/// (shorter key first), computed by hand.
const SETTINGS_DATA_HEX: &str = "a3646e616d65694c696e64656e686f666e706f73745f74746c5f6d61785f731a00093a8074706f7374735f7065725f617574686f725f6d61781819";
const PROFILE_DATA_HEX: &str = "a1646e616d6563416e61";

fn data_hex(p: &Payload) -> String {
    hex::encode(p.to_value().to_bytes())
}

/// Signs `data` under `type_name` as a hostile author would write it, and
/// returns the schema error that refuses it (signing decodes as a receiver).
fn refused(type_name: &str, data: Value<'_>) -> SchemaError {
    let e = event(Payload::Unknown {
        type_name: type_name.into(),
        data: data.clone().into_owned(),
    });
    match e.sign(&me()) {
        Err(EventError::Schema(s)) => {
            // The decoder's own schema check says the same.
            assert_eq!(Payload::from_value(type_name, data), Err(s.clone()));
            s
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

fn settings_map<'a>(entries: Vec<(&'a str, Value<'a>)>) -> Value<'a> {
    Value::map(entries)
}

/// A settings payload encodes to the hand-written canonical bytes.
#[test]
fn settings_data_encodes_to_the_known_bytes() {
    assert_eq!(data_hex(&Payload::Settings(settings())), SETTINGS_DATA_HEX);
}

/// A profile payload encodes to the hand-written canonical bytes.
#[test]
fn profile_data_encodes_to_the_known_bytes() {
    let p = Payload::Profile(MemberProfile { name: "Ana".into() });
    assert_eq!(data_hex(&p), PROFILE_DATA_HEX);
}

/// Signed settings and profile events decode and verify to the same typed
/// payloads, under their wire type names.
#[test]
fn settings_and_profile_events_round_trip() {
    for payload in [
        Payload::Settings(settings()),
        Payload::Profile(MemberProfile {
            name: "Ana from no. 4".into(),
        }),
    ] {
        let signed = event(payload.clone()).sign(&me()).unwrap();
        let back = VerifiedEvent::decode(signed.bytes()).unwrap();
        assert_eq!(back.event().payload, payload);
        assert_eq!(back.hash(), signed.hash());
    }
    assert_eq!(Payload::Settings(settings()).type_name(), TYPE_SETTINGS);
    assert_eq!(
        Payload::Profile(MemberProfile { name: "x".into() }).type_name(),
        TYPE_PROFILE
    );
    assert_eq!(TYPE_SETTINGS, "community.settings");
    assert_eq!(TYPE_PROFILE, "community.member.profile");
}

/// The hand-written bytes decode to the typed settings (decoder side of the
/// known answer).
#[test]
fn known_settings_bytes_decode_to_the_settings() {
    let bytes = hex::decode(SETTINGS_DATA_HEX).unwrap();
    let v = cbor::decode(&bytes).unwrap();
    assert_eq!(
        Payload::from_value(TYPE_SETTINGS, v),
        Ok(Payload::Settings(settings()))
    );
}

/// A zero TTL cap is refused by the schema: it would hide every post.
#[test]
fn settings_with_zero_ttl_cap_are_refused() {
    let s = refused(
        TYPE_SETTINGS,
        settings_map(vec![
            ("name", Value::text("x")),
            ("post_ttl_max_s", Value::Uint(0)),
            ("posts_per_author_max", Value::Uint(3)),
        ]),
    );
    assert_eq!(s.field, "post_ttl_max_s");
    assert!(s.problem.contains("at least 1"), "{}", s.problem);
}

/// A zero per-author bound is refused by the schema.
#[test]
fn settings_with_zero_per_author_bound_are_refused() {
    let s = refused(
        TYPE_SETTINGS,
        settings_map(vec![
            ("name", Value::text("x")),
            ("post_ttl_max_s", Value::Uint(5)),
            ("posts_per_author_max", Value::Uint(0)),
        ]),
    );
    assert_eq!(s.field, "posts_per_author_max");
}

/// Settings missing a field, with an extra field, or with a mistyped field
/// are refused, naming the field.
#[test]
fn settings_missing_extra_or_mistyped_fields_are_refused() {
    let missing = refused(
        TYPE_SETTINGS,
        settings_map(vec![
            ("name", Value::text("x")),
            ("post_ttl_max_s", Value::Uint(5)),
        ]),
    );
    assert_eq!(
        (missing.field.as_str(), missing.problem.as_str()),
        ("posts_per_author_max", "is missing")
    );
    let extra = refused(
        TYPE_SETTINGS,
        settings_map(vec![
            ("name", Value::text("x")),
            ("colour", Value::text("red")),
            ("post_ttl_max_s", Value::Uint(5)),
            ("posts_per_author_max", Value::Uint(5)),
        ]),
    );
    assert_eq!(extra.field, "colour");
    let mistyped = refused(
        TYPE_SETTINGS,
        settings_map(vec![
            ("name", Value::Uint(1)),
            ("post_ttl_max_s", Value::Uint(5)),
            ("posts_per_author_max", Value::Uint(5)),
        ]),
    );
    assert_eq!(mistyped.field, "name");
    let negative = refused(
        TYPE_SETTINGS,
        settings_map(vec![
            ("name", Value::text("x")),
            ("post_ttl_max_s", Value::Nint(0)),
            ("posts_per_author_max", Value::Uint(5)),
        ]),
    );
    assert_eq!(negative.field, "post_ttl_max_s");
}

/// A profile without a name, with a non-text name or an extra key is refused.
#[test]
fn profiles_missing_extra_or_mistyped_fields_are_refused() {
    assert_eq!(refused(TYPE_PROFILE, Value::Map(vec![])).field, "name");
    assert_eq!(
        refused(TYPE_PROFILE, Value::map([("name", Value::bytes(vec![1]))])).field,
        "name"
    );
    assert_eq!(
        refused(
            TYPE_PROFILE,
            Value::map([("name", Value::text("a")), ("age", Value::Uint(3))])
        )
        .field,
        "age"
    );
    let not_a_map = refused(TYPE_PROFILE, Value::Array(vec![]));
    assert_eq!(not_a_map.field, "data");
}

/// `moderated` is a known expiry reason with the wire text "moderated", and
/// it round-trips through a signed expiry.
#[test]
fn moderated_is_a_known_expiry_reason() {
    assert_eq!(ExpiryReason::parse("moderated"), ExpiryReason::Moderated);
    assert_eq!(ExpiryReason::Moderated.as_str(), "moderated");
    let e = event(Payload::PostExpired(PostExpired {
        target: EventId::from_bytes([1; 16]),
        reason: ExpiryReason::Moderated,
    }))
    .sign(&me())
    .unwrap();
    let back = VerifiedEvent::decode(e.bytes()).unwrap();
    match &back.event().payload {
        Payload::PostExpired(x) => assert_eq!(x.reason, ExpiryReason::Moderated),
        other => panic!("decoded as {other:?}"),
    }
}
