//! Property tests of the wire format (DESIGN.md section 3): arbitrary valid
//! events round-trip byte for byte, every single-byte change of an encoded
//! event is refused, decoding never panics, and canonical CBOR round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use hearth_proto::cbor::{self, CborError, Value};
use hearth_proto::payload::{LAT_MAX, LNG_MAX};
use hearth_proto::{
    hash_bytes, Category, CommunityId, CommunitySettings, Event, EventId, ExpiryReason, Genesis,
    Identity, Level, Location, MemberProfile, MemberSet, NodeId, Payload, PostContent, PostCreated,
    PostExpired, PostUpdated, SignedEvent, VerifiedEvent, LAMPORT_MAX,
};
use proptest::prelude::*;
use proptest::sample::select;

const KNOWN_TYPES: [&str; 7] = [
    "community.genesis",
    "community.member.set",
    "community.settings",
    "community.member.profile",
    "market.post.created",
    "market.post.updated",
    "market.post.expired",
];

// ------------------------------------------------------------ CBOR values

/// Leaves of the accepted data model.
fn leaf() -> impl Strategy<Value = Value<'static>> {
    prop_oneof![
        any::<u64>().prop_map(Value::Uint),
        (0u64..30).prop_map(Value::Uint),
        any::<u64>().prop_map(Value::Nint),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::bytes),
        ".{0,12}".prop_map(Value::text),
        any::<bool>().prop_map(Value::Bool),
    ]
}

/// A map from generated entries: duplicate keys (by encoding) dropped,
/// the rest left in generation order, so usually not canonical order.
fn dedup_map(entries: Vec<(Value<'static>, Value<'static>)>) -> Value<'static> {
    let mut seen = std::collections::BTreeSet::new();
    Value::Map(
        entries
            .into_iter()
            .filter(|(k, _)| seen.insert(k.to_bytes()))
            .collect(),
    )
}

/// Arbitrary value trees (depth well within `DEPTH_MAX`), maps without
/// duplicate keys but in any order.
fn value() -> impl Strategy<Value = Value<'static>> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop_oneof![leaf(), inner.clone()], inner), 0..6)
                .prop_map(dedup_map),
        ]
    })
}

/// An arbitrary map, as unknown types carry.
fn data_map() -> impl Strategy<Value = Value<'static>> {
    prop::collection::vec((leaf(), value()), 0..6).prop_map(dedup_map)
}

/// `v` with every map's entries sorted by encoded key: the decoder's order.
fn canonical(v: Value<'_>) -> Value<'_> {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Map(entries) => {
            let sorted: BTreeMap<Vec<u8>, (Value, Value)> = entries
                .into_iter()
                .map(|(k, v)| (k.to_bytes(), (canonical(k), canonical(v))))
                .collect();
            Value::Map(sorted.into_values().collect())
        }
        other => other,
    }
}

// ------------------------------------------------------------ events

fn text(max: usize) -> impl Strategy<Value = String> {
    // Any Unicode scalar values, newlines and control characters included.
    prop::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect())
}

fn content() -> impl Strategy<Value = PostContent> {
    (
        select(Category::ALL.to_vec()),
        text(40),
        text(120),
        prop::collection::vec(text(12), 0..5),
        any::<u64>(),
        prop::option::of((-LAT_MAX..=LAT_MAX, -LNG_MAX..=LNG_MAX, text(20))),
    )
        .prop_map(
            |(category, title, body, tags, expires_at, loc)| PostContent {
                category,
                title,
                body,
                tags,
                expires_at,
                location: loc.map(|(lat, lng, label)| Location { lat, lng, label }),
            },
        )
}

fn event_id() -> impl Strategy<Value = EventId> {
    any::<[u8; 16]>().prop_map(EventId::from_bytes)
}

fn reason() -> impl Strategy<Value = ExpiryReason> {
    prop_oneof![
        select(vec![
            ExpiryReason::Fulfilled,
            ExpiryReason::Withdrawn,
            ExpiryReason::UserRequest,
            ExpiryReason::Stale,
            ExpiryReason::Moderated,
        ]),
        // Text parses to `Other` unless it is one of the four names.
        text(20).prop_map(|t| ExpiryReason::parse(&t)),
    ]
}

fn unknown_type_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
        text(24),
        // Near misses of the known names are unknown types too.
        select(KNOWN_TYPES.to_vec()).prop_map(|t| format!("{t}.v2")),
    ]
    .prop_filter("not a known type", |t| !KNOWN_TYPES.contains(&t.as_str()))
}

/// A payload; a genesis gets its author added to the anchors afterwards.
fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (content(), prop::option::of(text(16))).prop_map(|(content, client_id)| {
            Payload::PostCreated(PostCreated {
                content: content.into(),
                client_id,
            })
        }),
        (event_id(), content()).prop_map(|(target, content)| Payload::PostUpdated(PostUpdated {
            target,
            content: content.into()
        })),
        (event_id(), reason())
            .prop_map(|(target, reason)| Payload::PostExpired(PostExpired { target, reason })),
        (
            any::<[u8; 32]>(),
            select(vec![
                Level::Member,
                Level::Trusted,
                Level::Anchor,
                Level::Removed
            ])
        )
            .prop_map(|(m, level)| Payload::MemberSet(MemberSet {
                member: NodeId(m),
                level
            })),
        (text(30), prop::collection::vec(any::<[u8; 32]>(), 0..4)).prop_map(|(name, a)| {
            Payload::Genesis(Genesis {
                name,
                anchors: a.into_iter().map(NodeId).collect(),
            })
        }),
        (text(30), 1..=u64::MAX, 1..=u64::MAX).prop_map(|(name, t, n)| {
            Payload::Settings(CommunitySettings {
                name,
                post_ttl_max_s: t,
                posts_per_author_max: n,
            })
        }),
        text(40).prop_map(|name| Payload::Profile(MemberProfile { name })),
        (unknown_type_name(), data_map().prop_map(canonical))
            .prop_map(|(type_name, data)| Payload::Unknown { type_name, data }),
    ]
}

/// A valid event and the seed of its author.
fn event() -> impl Strategy<Value = ([u8; 32], Event)> {
    (
        any::<[u8; 32]>(),
        event_id(),
        any::<u64>(),
        prop_oneof![0..=LAMPORT_MAX, Just(LAMPORT_MAX), 0u64..100],
        any::<[u8; 32]>(),
        payload(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(seed, id, ts, lamport, community, payload, at)| {
            let author = Identity::from_seed(seed).node_id();
            let mut event = Event {
                id,
                ts,
                author,
                lamport,
                community: CommunityId(community),
                payload,
            };
            if let Payload::Genesis(g) = &mut event.payload {
                g.anchors.insert(at.index(g.anchors.len() + 1), author);
                event.lamport = 0;
                event.community = CommunityId::default();
            }
            (seed, event)
        })
}

fn signed() -> impl Strategy<Value = VerifiedEvent> {
    event().prop_map(|(seed, e)| {
        e.sign(&Identity::from_seed(seed))
            .expect("valid by construction")
    })
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Signing then decoding gives back the same event, bytes and hash, and
    /// re-encoding the decoded top-level map reproduces the bytes.
    #[test]
    fn signed_events_round_trip((seed, event) in event()) {
        let signed = event.clone().sign(&Identity::from_seed(seed)).expect("valid");
        prop_assert_eq!(signed.event(), &event);
        let bytes = signed.bytes();
        let decoded = VerifiedEvent::decode(bytes).expect("verifies");
        prop_assert_eq!(decoded.event(), &event);
        prop_assert_eq!(decoded.bytes(), bytes);
        prop_assert_eq!(decoded.hash(), &hash_bytes(bytes));
        prop_assert_eq!(decoded.hash(), signed.hash());
        prop_assert_eq!(&decoded, &signed);
        prop_assert_eq!(cbor::decode(bytes).expect("canonical").to_bytes(), bytes);
        prop_assert_eq!(
            SignedEvent::decode(bytes).expect("decodes").signing_input(),
            event.signing_input()
        );
        prop_assert_eq!(VerifiedEvent::reload(bytes, signed.hash()).expect("reloads"), signed.clone());
    }

    /// An unknown type's data given in any map order signs to the event a
    /// receiver decodes: the same data in canonical order.
    #[test]
    fn unknown_data_in_any_order_signs_to_its_decoding(
        (seed, event) in event(),
        type_name in unknown_type_name(),
        data in data_map(),
    ) {
        let event = Event {
            payload: Payload::Unknown { type_name: type_name.clone(), data: data.clone() },
            ..event
        };
        let signed = event.sign(&Identity::from_seed(seed)).expect("valid");
        prop_assert_eq!(
            &signed.event().payload,
            &Payload::Unknown { type_name, data: canonical(data) }
        );
        prop_assert_eq!(VerifiedEvent::decode(signed.bytes()).expect("verifies"), signed);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Decoding arbitrary bytes never panics.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = cbor::decode(&bytes);
        let _ = SignedEvent::decode(&bytes);
        let _ = VerifiedEvent::decode(&bytes);
    }

    /// Decoding a valid event with a few bytes overwritten, inserted or cut
    /// never panics (random bytes rarely get past the first header).
    #[test]
    fn decoding_damaged_events_never_panics(
        ev in signed(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = ev.into_bytes();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let _ = cbor::decode(&bytes);
        let _ = SignedEvent::decode(&bytes);
        let _ = VerifiedEvent::decode(&bytes);
    }

    /// Arbitrary value trees decode to themselves with maps in canonical
    /// order, and that canonical form re-encodes to the same bytes.
    #[test]
    fn cbor_values_round_trip(v in value()) {
        let bytes = v.to_bytes();
        let sorted = canonical(v);
        prop_assert_eq!(cbor::decode(&bytes), Ok(sorted.clone()));
        prop_assert_eq!(sorted.to_bytes(), bytes);
    }

    /// A map holding the same key twice encodes (the encoder does not check)
    /// but never decodes.
    #[test]
    fn cbor_duplicate_keys_never_decode(v in data_map(), k in leaf(), a in leaf(), b in leaf()) {
        let Value::Map(mut entries) = v else { unreachable!() };
        entries.push((k.clone(), a));
        entries.push((k, b));
        let bytes = Value::Map(entries).to_bytes();
        let result = cbor::decode(&bytes);
        prop_assert!(
            matches!(result, Err(CborError::DuplicateKey { .. })),
            "decoded as {:?}", result
        );
    }
}

proptest! {
    // Each case verifies one signature per byte of the event (a few hundred
    // ed25519 verifications, slow in a debug build): few cases, each exhaustive.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Changing any one byte of a valid event, at every position, makes it
    /// fail to decode or to verify. The replacement at each position is
    /// chosen by the test (never the original byte).
    #[test]
    fn every_single_byte_change_is_rejected(
        ev in signed(),
        masks in prop::collection::vec(1u8..=255, 64),
    ) {
        let bytes = ev.bytes();
        for i in 0..bytes.len() {
            let mut mutated = bytes.to_vec();
            mutated[i] ^= masks[i % masks.len()];
            prop_assert!(
                VerifiedEvent::decode(&mutated).is_err(),
                "byte {} changed from {:#04x} to {:#04x} still verifies", i, bytes[i], mutated[i]
            );
        }
    }
}

/// The same, with every one of the 255 replacements at every position, for
/// one fixed event: checked structurally for all, and by signature where
/// decoding succeeds.
#[test]
fn every_replacement_at_every_position_is_rejected_for_one_event() {
    let id = Identity::from_seed([7; 32]);
    let event = Event {
        id: EventId::from_bytes([1; 16]),
        ts: 1_767_225_600_000,
        author: id.node_id(),
        lamport: 2,
        community: CommunityId([0x11; 32]),
        payload: Payload::PostExpired(PostExpired {
            target: EventId::from_bytes([2; 16]),
            reason: ExpiryReason::Fulfilled,
        }),
    };
    let signed = event.sign(&id).expect("valid");
    let bytes = signed.bytes();
    let mut verified_checks = 0usize;
    for i in 0..bytes.len() {
        for r in 0..=255u8 {
            if r == bytes[i] {
                continue;
            }
            let mut mutated = bytes.to_vec();
            mutated[i] = r;
            if let Ok(s) = SignedEvent::decode(&mutated) {
                verified_checks += 1;
                assert!(
                    s.verify().is_err(),
                    "byte {i} changed from {:#04x} to {r:#04x} still verifies",
                    bytes[i]
                );
            }
        }
    }
    assert!(verified_checks > 0);
}
