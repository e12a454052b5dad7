//! Every way bytes can fail to be an event, one test each (DESIGN.md
//! section 3). Each malformed input starts from a valid signed event and
//! changes one thing, and each test asserts the exact `EventError` (with its
//! field or byte offset). Where the rule is structural, the event is re-signed
//! over its new content (or the check is shown to fire in
//! `SignedEvent::decode`, before any signature is looked at), so the error
//! seen is the rule's own and not `BadSignature`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hearth_proto::cbor::{self, CborError, Value};
use hearth_proto::payload::{LAT_MAX, LNG_MAX};
use hearth_proto::{
    hash_bytes, Category, CommunityId, Event, EventError, EventHash, EventId, Genesis, Identity,
    Level, Location, MemberSet, NodeId, Payload, PostContent, PostCreated, PostExpired,
    PostUpdated, SchemaError, SignedEvent, VerifiedEvent, EVENT_BYTES_MAX, LAMPORT_MAX,
    SIGNING_DOMAIN,
};

const SEED: [u8; 32] = [7; 32];
const OTHER_SEED: [u8; 32] = [8; 32];
const TS: u64 = 1_767_225_600_000;
/// Placeholder value whose encoding is replaced by hand-written bytes.
const HOLE: &str = "\u{0}hole\u{0}";
/// Order of the ed25519 group, little-endian (RFC 8032: L = 2^252 + ...).
const GROUP_ORDER_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];
const UNKNOWN_TYPE: &str = "garden.plot.shared";

// ---------------------------------------------------------------- fixtures

fn me() -> Identity {
    Identity::from_seed(SEED)
}

fn other() -> Identity {
    Identity::from_seed(OTHER_SEED)
}

fn content() -> PostContent {
    PostContent {
        category: Category::Offer,
        title: "Water canisters".into(),
        body: "Two 10 l canisters, clean. Pick up today.".into(),
        tags: vec!["water".into(), "emergency-kit".into()],
        expires_at: TS + 86_400_000,
        location: Some(Location {
            lat: -33_868_820,
            lng: 151_209_296,
            label: "Town square".into(),
        }),
    }
}

fn post_with(lamport: u64, content: PostContent) -> Event {
    Event {
        id: EventId::from_bytes([0x01; 16]),
        ts: TS,
        author: me().node_id(),
        lamport,
        community: CommunityId([0x11; 32]),
        payload: Payload::PostCreated(PostCreated {
            content: content.into(),
            client_id: Some("web-1".into()),
        }),
    }
}

fn post_at(lamport: u64) -> Event {
    post_with(lamport, content())
}

fn genesis() -> Event {
    Event {
        id: EventId::from_bytes([0x02; 16]),
        ts: TS,
        author: me().node_id(),
        lamport: 0,
        community: CommunityId::default(),
        payload: Payload::Genesis(Genesis {
            name: "Lindenhof Street".into(),
            anchors: vec![me().node_id()],
        }),
    }
}

fn member_set() -> Event {
    Event {
        payload: Payload::MemberSet(MemberSet {
            member: other().node_id(),
            level: Level::Member,
        }),
        ..post_at(3)
    }
}

fn updated() -> Event {
    Event {
        payload: Payload::PostUpdated(PostUpdated {
            target: EventId::from_bytes([0x01; 16]),
            content: content().into(),
        }),
        ..post_at(4)
    }
}

fn expired() -> Event {
    Event {
        payload: Payload::PostExpired(PostExpired {
            target: EventId::from_bytes([0x01; 16]),
            reason: hearth_proto::ExpiryReason::Fulfilled,
        }),
        ..post_at(5)
    }
}

/// A valid post, encoded.
fn post_bytes() -> Vec<u8> {
    encode(post_at(2))
}

fn encode(e: Event) -> Vec<u8> {
    e.sign(&me()).expect("fixture is valid").into_bytes()
}

// ----------------------------------------------------------- CBOR surgery

/// A decoded value detached from its bytes, for editing.
type V = Value<'static>;

/// The envelope entries of an encoded event, in canonical order.
fn entries(bytes: &[u8]) -> Vec<(V, V)> {
    match cbor::decode(bytes)
        .expect("fixture is canonical")
        .into_owned()
    {
        Value::Map(entries) => entries,
        other => panic!("fixture is a {}", other.kind()),
    }
}

fn field<'a>(map: &'a mut [(V, V)], key: &str) -> &'a mut V {
    map.iter_mut()
        .find(|(k, _)| *k == Value::text(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {key}"))
}

fn map_mut(v: &mut V) -> &mut Vec<(V, V)> {
    match v {
        Value::Map(entries) => entries,
        other => panic!("{} is not a map", other.kind()),
    }
}

/// The `data` map of an envelope.
fn data(env: &mut [(V, V)]) -> &mut Vec<(V, V)> {
    map_mut(field(env, "data"))
}

/// The `location` map inside a post's `data`.
fn location(env: &mut [(V, V)]) -> &mut Vec<(V, V)> {
    map_mut(field(data(env), "location"))
}

fn set(map: &mut Vec<(V, V)>, key: &str, value: V) {
    match map.iter_mut().find(|(k, _)| *k == Value::text(key)) {
        Some((_, v)) => *v = value,
        None => map.push((Value::text(key.to_owned()), value)),
    }
}

fn remove(map: &mut Vec<(V, V)>, key: &str) {
    let before = map.len();
    map.retain(|(k, _)| *k != Value::text(key));
    assert_eq!(map.len(), before - 1, "{key} was present");
}

/// Signs an envelope map as an (unchecking) author would: `sig` over the
/// domain tag and the canonical map without `sig`, by the key `seed`.
fn sign_map_with(mut env: Vec<(V, V)>, seed: [u8; 32]) -> Vec<u8> {
    env.retain(|(k, _)| *k != Value::text("sig"));
    let mut msg = SIGNING_DOMAIN.to_vec();
    msg.extend(Value::Map(env.clone()).to_bytes());
    let sig = SigningKey::from_bytes(&seed).sign(&msg).to_bytes();
    env.push((Value::text("sig"), Value::bytes(sig.to_vec())));
    Value::Map(env).to_bytes()
}

/// Re-signs an edited envelope with the fixture key.
fn resign(env: Vec<(V, V)>) -> Vec<u8> {
    sign_map_with(env, SEED)
}

/// A map written exactly in the given order (the encoder would sort it).
fn raw_map(map: &[(V, V)]) -> Vec<u8> {
    assert!(map.len() < 24);
    let mut out = vec![0xa0 | map.len() as u8];
    for (k, v) in map {
        out.extend(k.to_bytes());
        out.extend(v.to_bytes());
    }
    out
}

/// Encodes `env` (which holds one `HOLE` somewhere) and puts `raw` where
/// the hole's encoding was. Returns the bytes and the offset of `raw`.
fn fill(env: Vec<(V, V)>, raw: &[u8]) -> (Vec<u8>, usize) {
    let bytes = Value::Map(env).to_bytes();
    let at = find(&bytes, &Value::text(HOLE).to_bytes());
    let hole_len = Value::text(HOLE).to_bytes().len();
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(&bytes[at + hole_len..]);
    (out, at)
}

/// The one position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "needle {} is not unique",
        hex::encode(needle)
    );
    hits[0]
}

fn splice(bytes: &[u8], at: usize, remove: usize, insert: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&bytes[at + remove..]);
    out
}

fn bytes_as_number_array(v: &Value) -> Value<'static> {
    match v {
        Value::Bytes(b) => Value::Array(b.iter().map(|x| Value::Uint(u64::from(*x))).collect()),
        other => panic!("{} is not a byte string", other.kind()),
    }
}

// -------------------------------------------------------------- asserting

/// The error of a structural rejection: `SignedEvent::decode` already fails
/// (so the signature is never consulted) and full decoding fails the same way.
fn structural(bytes: &[u8]) -> EventError {
    let early = SignedEvent::decode(bytes).expect_err("rejected before signature checking");
    let full = VerifiedEvent::decode(bytes).expect_err("rejected");
    assert_eq!(full, early);
    full
}

fn cbor_error(e: CborError) -> EventError {
    EventError::Cbor(e)
}

/// Asserts a schema error of `type_name` naming `field`; returns its problem.
fn schema(err: EventError, type_name: &str, field: &str) -> String {
    match err {
        EventError::Schema(SchemaError {
            type_name: t,
            field: f,
            problem,
        }) => {
            assert_eq!((t, f.as_str()), (type_name, field), "problem: {problem}");
            problem
        }
        other => panic!("expected a schema error for {field}, got {other:?}"),
    }
}

// ============================================================ sanity

/// The surgery helpers are sound: re-signing an unedited envelope gives back
/// the original bytes (ed25519 is deterministic), which decode and verify.
#[test]
fn resigning_an_unedited_envelope_reproduces_the_event() {
    for e in [post_at(2), genesis(), member_set(), updated(), expired()] {
        let bytes = encode(e);
        assert_eq!(resign(entries(&bytes)), bytes);
        assert!(VerifiedEvent::decode(&bytes).is_ok());
    }
}

// ============================================================ canonical CBOR

/// An integer in a longer form than needed (lamport 2 as `18 02`) is rejected.
#[test]
fn non_shortest_lamport_is_rejected() {
    let bytes = post_bytes();
    let at = find(&bytes, b"\x67lamport\x02") + 8;
    let bad = splice(&bytes, at, 1, &[0x18, 0x02]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::NonShortest { offset: at })
    );
}

/// A negative integer in a longer form than needed (a latitude) is rejected.
#[test]
fn non_shortest_negative_integer_is_rejected() {
    let bytes = post_bytes();
    let mut env = entries(&bytes);
    set(location(&mut env), "lat", Value::text(HOLE));
    // -33_868_820 is Nint(33_868_819): 4 bytes suffice, written here in 8.
    let mut raw = vec![0x3b, 0, 0, 0, 0];
    raw.extend(33_868_819u32.to_be_bytes());
    let (bad, at) = fill(env, &raw);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::NonShortest { offset: at })
    );
}

/// A length in a longer form than needed (`id` as `58 10` instead of `50`) is rejected.
#[test]
fn non_shortest_byte_string_length_is_rejected() {
    let bytes = post_bytes();
    let at = find(&bytes, b"\x62id\x50") + 3;
    let bad = splice(&bytes, at, 1, &[0x58, 0x10]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::NonShortest { offset: at })
    );
}

/// The envelope's map header in a longer form (`b8 09` instead of `a9`) is rejected.
#[test]
fn non_shortest_map_header_is_rejected() {
    let bytes = post_bytes();
    assert_eq!(bytes[0], 0xa9);
    let bad = splice(&bytes, 0, 1, &[0xb8, 0x09]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::NonShortest { offset: 0 })
    );
}

/// An indefinite-length envelope map (`bf ... ff`) is rejected.
#[test]
fn indefinite_length_envelope_map_is_rejected() {
    let bytes = post_bytes();
    let mut bad = splice(&bytes, 0, 1, &[0xbf]);
    bad.push(0xff);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Indefinite { offset: 0 })
    );
}

/// An indefinite-length `data` map is rejected.
#[test]
fn indefinite_length_data_map_is_rejected() {
    let bytes = post_bytes();
    let mut env = entries(&bytes);
    let definite = field(&mut env, "data").to_bytes();
    let mut raw = vec![0xbf];
    raw.extend_from_slice(&definite[1..]);
    raw.push(0xff);
    *field(&mut env, "data") = Value::text(HOLE);
    let (bad, at) = fill(env, &raw);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Indefinite { offset: at })
    );
}

/// An indefinite-length array (`tags` as `9f ... ff`) is rejected.
#[test]
fn indefinite_length_array_is_rejected() {
    let bytes = post_bytes();
    let mut env = entries(&bytes);
    let definite = field(data(&mut env), "tags").to_bytes();
    let mut raw = vec![0x9f];
    raw.extend_from_slice(&definite[1..]);
    raw.push(0xff);
    set(data(&mut env), "tags", Value::text(HOLE));
    let (bad, at) = fill(env, &raw);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Indefinite { offset: at })
    );
}

/// An indefinite-length (chunked) byte string (`id` as `5f 50 .. ff`) is rejected.
#[test]
fn indefinite_length_byte_string_is_rejected() {
    let bytes = post_bytes();
    let mut env = entries(&bytes);
    let mut raw = vec![0x5f];
    raw.extend(field(&mut env, "id").to_bytes());
    raw.push(0xff);
    *field(&mut env, "id") = Value::text(HOLE);
    let (bad, at) = fill(env, &raw);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Indefinite { offset: at })
    );
}

/// An indefinite-length (chunked) text string (`title` as `7f .. ff`) is rejected.
#[test]
fn indefinite_length_text_is_rejected() {
    let bytes = post_bytes();
    let mut env = entries(&bytes);
    let mut raw = vec![0x7f];
    raw.extend(field(data(&mut env), "title").to_bytes());
    raw.push(0xff);
    set(data(&mut env), "title", Value::text(HOLE));
    let (bad, at) = fill(env, &raw);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Indefinite { offset: at })
    );
}

/// Envelope keys out of canonical order (`id` before `v`) are rejected at the later key.
#[test]
fn unsorted_envelope_keys_are_rejected() {
    let mut env = entries(&post_bytes());
    env.swap(0, 1);
    assert_eq!(env[1].0, Value::text("v"));
    let at = 1 + env[0].0.to_bytes().len() + env[0].1.to_bytes().len();
    let bad = raw_map(&env);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::UnsortedKeys { offset: at })
    );
}

/// Keys of `data` out of canonical order are rejected at the later key.
#[test]
fn unsorted_data_keys_are_rejected() {
    let mut env = entries(&post_bytes());
    let mut d = data(&mut env).clone();
    d.swap(0, 1);
    let first_len = d[0].0.to_bytes().len() + d[0].1.to_bytes().len();
    *field(&mut env, "data") = Value::text(HOLE);
    let (bad, at) = fill(env, &raw_map(&d));
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::UnsortedKeys {
            offset: at + 1 + first_len
        })
    );
}

/// A key that appears twice in the envelope (`ts`) is rejected at the second one.
#[test]
fn duplicate_envelope_key_is_rejected() {
    let mut env = entries(&post_bytes());
    assert_eq!(env[2].0, Value::text("ts"));
    env.insert(3, env[2].clone());
    let at: usize = 1 + env[..3]
        .iter()
        .map(|(k, v)| k.to_bytes().len() + v.to_bytes().len())
        .sum::<usize>();
    let bad = raw_map(&env);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::DuplicateKey { offset: at })
    );
}

/// A key that appears twice in `data` is rejected, even with equal values.
#[test]
fn duplicate_data_key_is_rejected() {
    let mut env = entries(&post_bytes());
    let mut d = data(&mut env).clone();
    d.insert(1, d[0].clone());
    let first_len = d[0].0.to_bytes().len() + d[0].1.to_bytes().len();
    *field(&mut env, "data") = Value::text(HOLE);
    let (bad, at) = fill(env, &raw_map(&d));
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::DuplicateKey {
            offset: at + 1 + first_len
        })
    );
}

/// A float in a known type's data (latitude as a double) is rejected.
#[test]
fn float_in_known_type_data_is_rejected() {
    let mut env = entries(&post_bytes());
    set(location(&mut env), "lat", Value::text(HOLE));
    let mut raw = vec![0xfb];
    raw.extend((-33.868_82f64).to_bits().to_be_bytes());
    let (bad, at) = fill(env, &raw);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Float { offset: at })
    );
}

/// A float in an unknown type's data is rejected: half, single and double alike.
#[test]
fn float_in_unknown_type_data_is_rejected() {
    for raw in [
        &[0xf9, 0x3c, 0x00][..],
        &[0xfa, 0x3f, 0x80, 0x00, 0x00],
        &[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
    ] {
        let mut env = entries(&unknown_bytes());
        set(data(&mut env), "size", Value::text(HOLE));
        let (bad, at) = fill(env, raw);
        assert_eq!(
            structural(&bad),
            cbor_error(CborError::Float { offset: at })
        );
    }
}

/// A float where the envelope wants an integer (`lamport` = 2.0) is rejected as a float.
#[test]
fn float_envelope_value_is_rejected() {
    let mut env = entries(&post_bytes());
    *field(&mut env, "lamport") = Value::text(HOLE);
    let (bad, at) = fill(env, &[0xf9, 0x40, 0x00]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Float { offset: at })
    );
}

/// An absent optional field written as null (`client_id: null`) is rejected.
#[test]
fn null_for_absent_optional_is_rejected() {
    let mut env = entries(&post_bytes());
    set(data(&mut env), "client_id", Value::text(HOLE));
    let (bad, at) = fill(env, &[0xf6]);
    assert_eq!(structural(&bad), cbor_error(CborError::Null { offset: at }));
}

/// Null and undefined are rejected in an unknown type's data too.
#[test]
fn null_and_undefined_in_unknown_type_data_are_rejected() {
    for raw in [0xf6u8, 0xf7] {
        let mut env = entries(&unknown_bytes());
        set(data(&mut env), "size", Value::text(HOLE));
        let (bad, at) = fill(env, &[raw]);
        assert_eq!(structural(&bad), cbor_error(CborError::Null { offset: at }));
    }
}

/// Simple values other than true/false (simple 16, simple 255) are rejected.
#[test]
fn other_simple_values_are_rejected() {
    for (raw, value) in [(&[0xf0u8][..], 16u8), (&[0xf8, 0xff], 255)] {
        let mut env = entries(&unknown_bytes());
        set(data(&mut env), "size", Value::text(HOLE));
        let (bad, at) = fill(env, raw);
        assert_eq!(
            structural(&bad),
            cbor_error(CborError::Simple { value, offset: at })
        );
    }
}

/// A tag (epoch-time tag 1 around `expires_at`) is rejected.
#[test]
fn tag_is_rejected() {
    let mut env = entries(&post_bytes());
    let mut raw = vec![0xc1];
    raw.extend(field(data(&mut env), "expires_at").to_bytes());
    set(data(&mut env), "expires_at", Value::text(HOLE));
    let (bad, at) = fill(env, &raw);
    assert_eq!(structural(&bad), cbor_error(CborError::Tag { offset: at }));
}

/// A tag on an envelope byte string (`id` as tag 37, UUID) is rejected.
#[test]
fn tagged_envelope_field_is_rejected() {
    let mut env = entries(&post_bytes());
    let mut raw = vec![0xd8, 37];
    raw.extend(field(&mut env, "id").to_bytes());
    *field(&mut env, "id") = Value::text(HOLE);
    let (bad, at) = fill(env, &raw);
    assert_eq!(structural(&bad), cbor_error(CborError::Tag { offset: at }));
}

/// Reserved additional-information values (0x1c) are rejected.
#[test]
fn reserved_additional_information_is_rejected() {
    let mut env = entries(&post_bytes());
    set(data(&mut env), "expires_at", Value::text(HOLE));
    let (bad, at) = fill(env, &[0x1c]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::Reserved { offset: at })
    );
}

/// Text that is not UTF-8 is rejected.
#[test]
fn invalid_utf8_text_is_rejected() {
    let mut env = entries(&post_bytes());
    set(data(&mut env), "title", Value::text(HOLE));
    let (bad, at) = fill(env, &[0x62, 0xc3, 0x28]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::InvalidUtf8 { offset: at })
    );
}

/// One byte after the event is rejected, as is a second event (a CBOR sequence).
#[test]
fn trailing_bytes_are_rejected() {
    let bytes = post_bytes();
    let mut bad = bytes.clone();
    bad.push(0x00);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::TrailingBytes { count: 1 })
    );
    let second = encode(genesis());
    let mut two = bytes.clone();
    two.extend_from_slice(&second);
    assert_eq!(
        structural(&two),
        cbor_error(CborError::TrailingBytes {
            count: second.len()
        })
    );
}

/// Input that ends inside a header (the 8-byte `ts`) is rejected as truncated.
#[test]
fn truncated_header_is_rejected() {
    let bytes = post_bytes();
    let ts = find(&bytes, b"\x62ts\x1b") + 3;
    let bad = &bytes[..ts + 4];
    assert_eq!(
        structural(bad),
        cbor_error(CborError::Truncated { offset: ts + 1 })
    );
}

/// Input that ends inside a byte string (the last byte of `community` cut)
/// is rejected: the declared length exceeds what is left.
#[test]
fn truncated_byte_string_is_rejected() {
    let bytes = post_bytes();
    let bad = &bytes[..bytes.len() - 1];
    let community = bytes.len() - 34;
    assert_eq!(&bytes[community..community + 2], &[0x58, 0x20]);
    assert_eq!(
        structural(bad),
        cbor_error(CborError::LengthOverflow { offset: community })
    );
}

/// Empty input is rejected as truncated at byte 0.
#[test]
fn empty_input_is_rejected() {
    assert_eq!(
        structural(&[]),
        cbor_error(CborError::Truncated { offset: 0 })
    );
}

/// Every proper prefix of a valid event is rejected as truncated or overlong.
#[test]
fn every_prefix_is_rejected() {
    let bytes = post_bytes();
    for n in 0..bytes.len() {
        match structural(&bytes[..n]) {
            EventError::Cbor(CborError::Truncated { .. } | CborError::LengthOverflow { .. }) => {}
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
}

/// Nesting deeper than `DEPTH_MAX` (in an unknown type's data) is rejected.
#[test]
fn nesting_deeper_than_the_limit_is_rejected() {
    // data is at depth 1, `data.size` at 2: 15 arrays put the leaf at 17.
    let mut deep = Value::Uint(0);
    for _ in 0..15 {
        deep = Value::Array(vec![deep]);
    }
    let mut env = entries(&unknown_bytes());
    set(data(&mut env), "size", deep);
    let bad = resign(env.clone());
    let at = find(&bad, &[0x81; 15]);
    assert_eq!(
        structural(&bad),
        cbor_error(CborError::TooDeep {
            offset: at + (cbor::DEPTH_MAX + 1 - 2)
        })
    );
    // One level less is within the limit.
    let Value::Array(inner) = field(data(&mut env), "size").clone() else {
        unreachable!()
    };
    set(data(&mut env), "size", inner[0].clone());
    assert!(VerifiedEvent::decode(&resign(env)).is_ok());
}

/// Bytes whose top-level item is not a map are rejected with its kind.
#[test]
fn non_map_event_is_rejected() {
    assert_eq!(structural(&[0x80]), EventError::NotAMap { kind: "array" });
    assert_eq!(
        structural(&[0x01]),
        EventError::NotAMap {
            kind: "unsigned integer"
        }
    );
}

// ============================================================ envelope

/// Format version 2 (and 0) is rejected, even when correctly signed.
#[test]
fn unknown_version_is_rejected() {
    for v in [2u64, 0] {
        let mut env = entries(&post_bytes());
        *field(&mut env, "v") = Value::Uint(v);
        assert_eq!(structural(&resign(env)), EventError::UnsupportedVersion(v));
    }
}

/// A correctly signed event over 16,384 bytes is rejected before parsing.
#[test]
fn oversized_event_is_rejected_at_decode() {
    let mut env = entries(&post_bytes());
    set(data(&mut env), "body", Value::text("x".repeat(17_000)));
    let bad = resign(env);
    assert!(bad.len() > EVENT_BYTES_MAX);
    assert_eq!(structural(&bad), EventError::TooLarge { size: bad.len() });
    // The size is checked first: oversized garbage is TooLarge, not a CBOR error.
    let junk = vec![0xffu8; EVENT_BYTES_MAX + 1];
    assert_eq!(
        structural(&junk),
        EventError::TooLarge {
            size: EVENT_BYTES_MAX + 1
        }
    );
}

/// `Event::sign` refuses to produce an event over 16,384 bytes.
#[test]
fn sign_refuses_oversized_event() {
    let body = "x".repeat(17_000);
    let mut c = content();
    c.body.clone_from(&body);
    // What the encoding would be: the same envelope, hand-signed.
    let mut env = entries(&post_bytes());
    set(data(&mut env), "body", Value::text(body));
    let size = resign(env).len();
    assert_eq!(
        post_with(2, c).sign(&me()).expect_err("too large"),
        EventError::TooLarge { size }
    );
}

/// The size limit is inclusive: exactly 16,384 bytes is accepted, one more is not.
#[test]
fn event_of_exactly_the_size_limit_is_accepted() {
    let base = post_bytes().len();
    // Everything but the body's text item, then a body of 256..=65535
    // bytes, whose header is 3 bytes (0x79 and a 2-byte length).
    let old_body = Value::text(content().body).to_bytes().len();
    let fits = EVENT_BYTES_MAX - (base - old_body) - 3;
    let mut c = content();
    c.body = "y".repeat(fits);
    let ok = post_with(2, c.clone()).sign(&me()).expect("at the limit");
    assert_eq!(ok.bytes().len(), EVENT_BYTES_MAX);
    assert!(VerifiedEvent::decode(ok.bytes()).is_ok());
    c.body.push('y');
    assert_eq!(
        post_with(2, c).sign(&me()).expect_err("over the limit"),
        EventError::TooLarge {
            size: EVENT_BYTES_MAX + 1
        }
    );
}

/// Lamport 2^53 is rejected at decode (correctly signed) and refused by `sign`.
#[test]
fn lamport_two_to_the_53_is_rejected() {
    for lamport in [1u64 << 53, u64::MAX] {
        let mut env = entries(&post_bytes());
        *field(&mut env, "lamport") = Value::Uint(lamport);
        assert_eq!(
            structural(&resign(env)),
            EventError::LamportTooLarge(lamport)
        );
        assert_eq!(
            post_at(lamport).sign(&me()).expect_err("refused"),
            EventError::LamportTooLarge(lamport)
        );
    }
}

/// Lamport 2^53 - 1, the largest allowed, signs, decodes and verifies.
#[test]
fn lamport_two_to_the_53_minus_one_is_accepted() {
    assert_eq!(LAMPORT_MAX, (1u64 << 53) - 1);
    let signed = post_at(LAMPORT_MAX).sign(&me()).expect("at the limit");
    let decoded = VerifiedEvent::decode(signed.bytes()).expect("verifies");
    assert_eq!(decoded.event().lamport, LAMPORT_MAX);
    assert_eq!(decoded, signed);
}

/// Byte fields written as arrays of numbers (`id`, `author`, `community`, `sig`) are the wrong type.
#[test]
fn byte_fields_as_number_arrays_are_rejected() {
    for name in ["id", "author", "community", "sig"] {
        let mut env = entries(&post_bytes());
        let f = field(&mut env, name);
        *f = bytes_as_number_array(f);
        let bad = if name == "sig" {
            Value::Map(env).to_bytes()
        } else {
            resign(env)
        };
        assert_eq!(
            structural(&bad),
            EventError::WrongType {
                field: name,
                expected: "a byte string",
                got: "array"
            },
            "{name}"
        );
    }
}

/// Byte fields of the wrong length (`id`, `author`, `community`, `sig`, one short or one long) are rejected.
#[test]
fn wrong_length_byte_fields_are_rejected() {
    for (name, expected) in [("id", 16), ("author", 32), ("community", 32), ("sig", 64)] {
        for got in [expected - 1, expected + 1] {
            let mut env = entries(&post_bytes());
            *field(&mut env, name) = Value::bytes(vec![0x5a; got]);
            let bad = if name == "sig" {
                Value::Map(env).to_bytes()
            } else {
                resign(env)
            };
            assert_eq!(
                structural(&bad),
                EventError::WrongLength {
                    field: name,
                    expected,
                    got
                },
                "{name}"
            );
        }
    }
}

/// Envelope scalars of the wrong type (`v` as text, negative `ts`, `lamport` as bytes, `type` as bytes) are rejected.
#[test]
fn mistyped_envelope_fields_are_rejected() {
    let cases: [(&'static str, Value, &'static str, &'static str); 4] = [
        ("v", Value::text("1"), "an unsigned integer", "text"),
        (
            "ts",
            Value::Nint(0),
            "an unsigned integer",
            "negative integer",
        ),
        (
            "lamport",
            Value::bytes(vec![2]),
            "an unsigned integer",
            "byte string",
        ),
        (
            "type",
            Value::bytes(b"market.post.created".to_vec()),
            "text",
            "byte string",
        ),
    ];
    for (name, value, expected, got) in cases {
        let mut env = entries(&post_bytes());
        *field(&mut env, name) = value;
        assert_eq!(
            structural(&resign(env)),
            EventError::WrongType {
                field: name,
                expected,
                got
            }
        );
    }
}

/// Each of the nine envelope fields, when missing, is named in the error.
#[test]
fn missing_envelope_fields_are_rejected() {
    for name in [
        "v",
        "id",
        "ts",
        "sig",
        "data",
        "type",
        "author",
        "lamport",
        "community",
    ] {
        let mut env = entries(&post_bytes());
        remove(&mut env, name);
        let bad = if name == "sig" {
            Value::Map(env).to_bytes()
        } else {
            resign(env)
        };
        assert_eq!(structural(&bad), EventError::MissingField(name), "{name}");
    }
}

/// An extra envelope field (`x`, or a non-text key) is rejected even when signed.
#[test]
fn unknown_envelope_field_is_rejected() {
    let mut env = entries(&post_bytes());
    env.push((Value::text("x"), Value::Uint(0)));
    assert_eq!(
        structural(&resign(env)),
        EventError::UnknownField("x".into())
    );
    let mut env = entries(&post_bytes());
    env.push((Value::Uint(0), Value::Uint(0)));
    assert_eq!(
        structural(&resign(env)),
        EventError::UnknownField("<unsigned integer>".into())
    );
}

// ============================================================ payload schema

/// A known type with a required field missing (`title`) is rejected.
#[test]
fn known_type_missing_field_is_rejected() {
    let mut env = entries(&post_bytes());
    remove(data(&mut env), "title");
    let problem = schema(structural(&resign(env)), "market.post.created", "title");
    assert!(problem.contains("missing"), "{problem}");
    // Inside `location` too.
    let mut env = entries(&post_bytes());
    remove(location(&mut env), "label");
    schema(structural(&resign(env)), "market.post.created", "label");
}

/// A known type with an extra key (`color`; `client_id` on an update) is rejected.
#[test]
fn known_type_unknown_extra_key_is_rejected() {
    let mut env = entries(&post_bytes());
    set(data(&mut env), "color", Value::text("blue"));
    let problem = schema(structural(&resign(env)), "market.post.created", "color");
    assert!(problem.contains("not part of this type"), "{problem}");

    let mut env = entries(&encode(updated()));
    set(data(&mut env), "client_id", Value::text("web-1"));
    schema(structural(&resign(env)), "market.post.updated", "client_id");

    let mut env = entries(&post_bytes());
    set(location(&mut env), "alt", Value::Uint(12));
    schema(structural(&resign(env)), "market.post.created", "alt");
}

/// A known type with a mistyped field (`expires_at` as text, a tag as a number, `member` as a number array, a short `target`) is rejected.
#[test]
fn known_type_mistyped_field_is_rejected() {
    let mut env = entries(&post_bytes());
    set(data(&mut env), "expires_at", Value::text("tomorrow"));
    schema(
        structural(&resign(env)),
        "market.post.created",
        "expires_at",
    );

    let mut env = entries(&post_bytes());
    set(data(&mut env), "tags", Value::Array(vec![Value::Uint(1)]));
    schema(structural(&resign(env)), "market.post.created", "tags");

    let mut env = entries(&encode(member_set()));
    let d = data(&mut env);
    let member = bytes_as_number_array(field(d, "member"));
    set(d, "member", member);
    schema(structural(&resign(env)), "community.member.set", "member");

    let mut env = entries(&encode(expired()));
    set(data(&mut env), "target", Value::bytes(vec![1; 15]));
    schema(structural(&resign(env)), "market.post.expired", "target");

    let mut env = entries(&encode(genesis()));
    set(
        data(&mut env),
        "anchors",
        Value::Array(vec![Value::bytes(vec![1; 31])]),
    );
    schema(structural(&resign(env)), "community.genesis", "anchors");

    let mut env = entries(&post_bytes());
    *field(&mut env, "data") = Value::Array(vec![]);
    schema(structural(&resign(env)), "market.post.created", "data");
}

/// A category outside offer/request/info/emergency is rejected.
#[test]
fn bad_category_is_rejected() {
    for bad in ["sale", "Offer", ""] {
        let mut env = entries(&post_bytes());
        set(data(&mut env), "category", Value::text(bad));
        schema(structural(&resign(env)), "market.post.created", "category");
    }
}

/// A level outside member/trusted/anchor/removed is rejected.
#[test]
fn bad_level_is_rejected() {
    for bad in ["owner", "Member", ""] {
        let mut env = entries(&encode(member_set()));
        set(data(&mut env), "level", Value::text(bad));
        schema(structural(&resign(env)), "community.member.set", "level");
    }
}

/// A latitude beyond ±90,000,000 microdegrees is rejected; ±90,000,000 is accepted.
#[test]
fn latitude_out_of_range_is_rejected() {
    for lat in [LAT_MAX + 1, -LAT_MAX - 1] {
        let mut env = entries(&post_bytes());
        set(location(&mut env), "lat", int(lat));
        schema(
            structural(&resign(env)),
            "market.post.created",
            "location.lat",
        );
    }
    for lat in [LAT_MAX, -LAT_MAX] {
        let mut env = entries(&post_bytes());
        set(location(&mut env), "lat", int(lat));
        assert!(VerifiedEvent::decode(&resign(env)).is_ok(), "{lat}");
    }
    // Beyond i64 altogether.
    let mut env = entries(&post_bytes());
    set(location(&mut env), "lat", Value::Uint(u64::MAX));
    schema(structural(&resign(env)), "market.post.created", "lat");
}

/// A longitude beyond ±180,000,000 microdegrees is rejected; ±180,000,000 is accepted.
#[test]
fn longitude_out_of_range_is_rejected() {
    for lng in [LNG_MAX + 1, -LNG_MAX - 1] {
        let mut env = entries(&post_bytes());
        set(location(&mut env), "lng", int(lng));
        schema(
            structural(&resign(env)),
            "market.post.created",
            "location.lng",
        );
    }
    for lng in [LNG_MAX, -LNG_MAX] {
        let mut env = entries(&post_bytes());
        set(location(&mut env), "lng", int(lng));
        assert!(VerifiedEvent::decode(&resign(env)).is_ok(), "{lng}");
    }
}

/// `Event::sign` refuses a post whose location is out of range.
#[test]
fn sign_refuses_out_of_range_location() {
    let mut c = content();
    c.location = Some(Location {
        lat: 0,
        lng: LNG_MAX + 1,
        label: String::new(),
    });
    schema(
        post_with(2, c).sign(&me()).expect_err("refused"),
        "market.post.created",
        "location.lng",
    );
}

/// An unknown type whose `data` is not a map is rejected.
#[test]
fn unknown_type_with_non_map_data_is_rejected() {
    let mut env = entries(&unknown_bytes());
    *field(&mut env, "data") = Value::Array(vec![Value::Uint(1)]);
    schema(structural(&resign(env)), "unknown type", "data");
}

fn int(n: i64) -> Value<'static> {
    if n >= 0 {
        Value::Uint(n as u64)
    } else {
        Value::Nint((-1 - n) as u64)
    }
}

// ============================================================ genesis

/// A genesis with a non-zero `community` is rejected at decode and refused by `sign`.
#[test]
fn genesis_with_nonzero_community_is_rejected() {
    let mut env = entries(&encode(genesis()));
    *field(&mut env, "community") = Value::bytes(vec![1; 32]);
    assert_eq!(
        structural(&resign(env)),
        EventError::Genesis("community must be 32 zero bytes")
    );
    let e = Event {
        community: CommunityId([1; 32]),
        ..genesis()
    };
    assert_eq!(
        e.sign(&me()).expect_err("refused"),
        EventError::Genesis("community must be 32 zero bytes")
    );
}

/// A genesis with a non-zero `lamport` is rejected at decode and refused by `sign`.
#[test]
fn genesis_with_nonzero_lamport_is_rejected() {
    let mut env = entries(&encode(genesis()));
    *field(&mut env, "lamport") = Value::Uint(1);
    assert_eq!(
        structural(&resign(env)),
        EventError::Genesis("lamport must be 0")
    );
    let e = Event {
        lamport: 1,
        ..genesis()
    };
    assert_eq!(
        e.sign(&me()).expect_err("refused"),
        EventError::Genesis("lamport must be 0")
    );
}

/// A genesis whose author is not among its anchors is rejected at decode and refused by `sign`.
#[test]
fn genesis_author_not_among_anchors_is_rejected() {
    let mut env = entries(&encode(genesis()));
    set(
        data(&mut env),
        "anchors",
        Value::Array(vec![Value::bytes(other().node_id().0.to_vec())]),
    );
    assert_eq!(
        structural(&resign(env)),
        EventError::Genesis("author must be one of the anchors")
    );
    let e = Event {
        payload: Payload::Genesis(Genesis {
            name: "x".into(),
            anchors: vec![other().node_id()],
        }),
        ..genesis()
    };
    assert_eq!(
        e.sign(&me()).expect_err("refused"),
        EventError::Genesis("author must be one of the anchors")
    );
}

/// A genesis with no anchors at all is rejected.
#[test]
fn genesis_without_anchors_is_rejected() {
    let mut env = entries(&encode(genesis()));
    set(data(&mut env), "anchors", Value::Array(vec![]));
    schema(structural(&resign(env)), "community.genesis", "anchors");
}

// ============================================================ signatures

/// Flipping any one of several bits of the signature (in R and in S) fails verification.
#[test]
fn flipped_signature_bit_is_rejected() {
    let bytes = post_bytes();
    let sig_at = find(&bytes, b"\x63sig\x58\x40") + 6;
    for bit in [0usize, 7, 100, 255, 256, 300, 503, 511] {
        let mut bad = bytes.clone();
        bad[sig_at + bit / 8] ^= 1 << (bit % 8);
        // Structurally fine: only the signature check catches it.
        assert!(SignedEvent::decode(&bad).is_ok());
        assert_eq!(
            VerifiedEvent::decode(&bad).expect_err("bad signature"),
            EventError::BadSignature(me().node_id()),
            "bit {bit}"
        );
    }
}

/// A change to signed content (one letter of the title) fails verification.
#[test]
fn edited_content_is_rejected() {
    let bytes = post_bytes();
    let at = find(&bytes, b"Water canisters");
    let mut bad = bytes.clone();
    bad[at] = b'w';
    assert!(SignedEvent::decode(&bad).is_ok());
    assert_eq!(
        VerifiedEvent::decode(&bad).expect_err("bad signature"),
        EventError::BadSignature(me().node_id())
    );
}

/// `Event::sign` refuses a key that is not the event's author.
#[test]
fn sign_with_another_key_is_wrong_signer() {
    assert_eq!(
        post_at(2).sign(&other()).expect_err("refused"),
        EventError::WrongSigner {
            key: other().node_id(),
            author: me().node_id()
        }
    );
}

/// An event signed by a key other than its `author` fails verification.
#[test]
fn signature_by_another_key_is_rejected() {
    let bad = sign_map_with(entries(&post_bytes()), OTHER_SEED);
    assert!(SignedEvent::decode(&bad).is_ok());
    assert_eq!(
        VerifiedEvent::decode(&bad).expect_err("bad signature"),
        EventError::BadSignature(me().node_id())
    );
    // And claiming the other key as author while signing with ours.
    let mut env = entries(&post_bytes());
    *field(&mut env, "author") = Value::bytes(other().node_id().0.to_vec());
    assert_eq!(
        VerifiedEvent::decode(&resign(env)).expect_err("bad signature"),
        EventError::BadSignature(other().node_id())
    );
}

/// A signature over the map without the domain tag fails verification.
#[test]
fn signature_without_the_domain_tag_is_rejected() {
    let mut env = entries(&post_bytes());
    env.retain(|(k, _)| *k != Value::text("sig"));
    let sig = SigningKey::from_bytes(&SEED)
        .sign(&Value::Map(env.clone()).to_bytes())
        .to_bytes();
    env.push((Value::text("sig"), Value::bytes(sig.to_vec())));
    assert_eq!(
        VerifiedEvent::decode(&Value::Map(env).to_bytes()).expect_err("bad signature"),
        EventError::BadSignature(me().node_id())
    );
}

/// A non-canonical S (S + L, which satisfies the same group equation) fails strict verification.
#[test]
fn non_canonical_signature_scalar_is_rejected() {
    let bytes = post_bytes();
    let sig_at = find(&bytes, b"\x63sig\x58\x40") + 6;
    let s = &bytes[sig_at + 32..sig_at + 64];
    // S' = S + L, little-endian; S < L < 2^253, so no carry out of 32 bytes.
    let mut s2 = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(GROUP_ORDER_L[i]) + carry;
        s2[i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert_eq!(s2[31] & 0xe0, 0, "S + L keeps the top three bits clear");
    let mut bad = bytes.clone();
    bad[sig_at + 32..sig_at + 64].copy_from_slice(&s2);
    assert!(SignedEvent::decode(&bad).is_ok());
    assert_eq!(
        VerifiedEvent::decode(&bad).expect_err("non-canonical S"),
        EventError::BadSignature(me().node_id())
    );
}

/// A small-order author key (the identity point) with the trivial signature
/// (R = identity, S = 0) is rejected, though non-strict verification accepts it.
#[test]
fn small_order_author_is_rejected() {
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let mut env = entries(&post_bytes());
    *field(&mut env, "author") = Value::bytes(identity_point.to_vec());
    *field(&mut env, "sig") = Value::bytes(sig.to_vec());
    let bad = Value::Map(env).to_bytes();
    let signed = SignedEvent::decode(&bad).expect("structurally fine");
    // The trap this test guards: plain verification would take it.
    let key = VerifyingKey::from_bytes(&identity_point).expect("a curve point");
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig);
    assert!(key.verify(&signed.signing_input(), &dalek_sig).is_ok());
    assert!(key
        .verify_strict(&signed.signing_input(), &dalek_sig)
        .is_err());
    assert_eq!(
        VerifiedEvent::decode(&bad).expect_err("small-order key"),
        EventError::BadSignature(NodeId(identity_point))
    );
}

// ============================================================ accepted

/// A valid envelope with an unknown type whose data is a map of ints, bytes, text, arrays, maps and booleans.
fn unknown_bytes() -> Vec<u8> {
    let mut env = entries(&post_bytes());
    *field(&mut env, "type") = Value::text(UNKNOWN_TYPE);
    *field(&mut env, "data") = unknown_data();
    resign(env)
}

fn unknown_data() -> Value<'static> {
    Value::map([
        ("size", Value::Uint(12)),
        ("depth", Value::Nint(4)),
        ("owner", Value::bytes(vec![9; 32])),
        (
            "crops",
            Value::Array(vec![Value::text("kale"), Value::text("🥕")]),
        ),
        ("open", Value::Bool(true)),
        (
            "where",
            Value::Map(vec![
                (Value::Uint(1), Value::text("north")),
                (Value::bytes(vec![]), Value::Bool(false)),
            ]),
        ),
    ])
}

/// Sorts map entries by encoded key, recursively: the order decoding yields.
fn sorted(v: Value<'_>) -> Value<'_> {
    match v {
        Value::Map(m) => {
            let mut m: Vec<(Value<'_>, Value<'_>)> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            m.sort_by_key(|(k, _)| k.to_bytes());
            Value::Map(m)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// An unknown type with a valid envelope is accepted: it decodes, verifies and keeps its data as `Payload::Unknown`.
#[test]
fn unknown_type_with_valid_envelope_is_accepted() {
    let bytes = unknown_bytes();
    let verified = VerifiedEvent::decode(&bytes).expect("accepted");
    assert_eq!(
        verified.event().payload,
        Payload::Unknown {
            type_name: UNKNOWN_TYPE.into(),
            data: sorted(unknown_data())
        }
    );
    assert_eq!(verified.bytes(), &bytes[..]);
    assert_eq!(verified.hash(), &hash_bytes(&bytes));
    // The same event built and signed locally gives the same bytes.
    let local = Event {
        payload: Payload::Unknown {
            type_name: UNKNOWN_TYPE.into(),
            data: sorted(unknown_data()),
        },
        ..post_at(2)
    };
    assert_eq!(local.sign(&me()).expect("signs"), verified);
}

/// `VerifiedEvent::reload` with a hash other than the bytes' own is `HashMismatch`.
#[test]
fn reload_with_wrong_hash_is_rejected() {
    let bytes = post_bytes();
    let right = hash_bytes(&bytes);
    let mut wrong = right;
    wrong.0[0] ^= 1;
    assert_eq!(
        VerifiedEvent::reload(&bytes, &wrong).expect_err("mismatch"),
        EventError::HashMismatch {
            expected: wrong,
            got: right
        }
    );
    assert_eq!(
        VerifiedEvent::reload(&bytes, &EventHash::default()).expect_err("mismatch"),
        EventError::HashMismatch {
            expected: EventHash::default(),
            got: right
        }
    );
    let reloaded = VerifiedEvent::reload(&bytes, &right).expect("right hash");
    assert_eq!(reloaded, VerifiedEvent::decode(&bytes).expect("valid"));
}

/// `VerifiedEvent::reload` still decodes strictly: non-canonical bytes with their own hash are rejected.
#[test]
fn reload_of_non_canonical_bytes_is_rejected() {
    let bytes = post_bytes();
    let at = find(&bytes, b"\x67lamport\x02") + 8;
    let bad = splice(&bytes, at, 1, &[0x18, 0x02]);
    assert_eq!(
        VerifiedEvent::reload(&bad, &hash_bytes(&bad)).expect_err("strict"),
        cbor_error(CborError::NonShortest { offset: at })
    );
}

// ============================================================ what sign produces

/// `Event::sign` refuses unknown data with a duplicate key, which no receiver would accept.
#[test]
fn sign_refuses_unknown_data_with_duplicate_keys() {
    let e = Event {
        payload: Payload::Unknown {
            type_name: UNKNOWN_TYPE.into(),
            data: Value::Map(vec![
                (Value::text("a"), Value::Uint(1)),
                (Value::text("a"), Value::Uint(2)),
            ]),
        },
        ..post_at(2)
    };
    assert!(matches!(
        e.sign(&me()),
        Err(EventError::Cbor(CborError::DuplicateKey { .. }))
    ));
}

/// `Event::sign` refuses unknown data nested deeper than receivers decode.
#[test]
fn sign_refuses_unknown_data_nested_too_deep() {
    let mut deep = Value::Uint(0);
    for _ in 0..15 {
        deep = Value::Array(vec![deep]);
    }
    let e = Event {
        payload: Payload::Unknown {
            type_name: UNKNOWN_TYPE.into(),
            data: Value::map([("size", deep)]),
        },
        ..post_at(2)
    };
    assert!(matches!(
        e.sign(&me()),
        Err(EventError::Cbor(CborError::TooDeep { .. }))
    ));
}

/// What `Event::sign` returns is what a receiver decodes from its bytes,
/// even for an unsorted unknown map or a known type given as `Payload::Unknown`.
#[test]
fn signed_event_equals_its_decoding() {
    let unsorted = Event {
        payload: Payload::Unknown {
            type_name: UNKNOWN_TYPE.into(),
            data: Value::Map(vec![
                (Value::text("zz"), Value::Uint(1)),
                (Value::text("a"), Value::Uint(2)),
            ]),
        },
        ..post_at(2)
    };
    let disguised = Event {
        payload: Payload::Unknown {
            type_name: "market.post.expired".into(),
            data: expired().payload.to_value().into_owned(),
        },
        ..expired()
    };
    for e in [disguised, unsorted] {
        let signed = e.sign(&me()).expect("valid on the wire");
        let decoded = VerifiedEvent::decode(signed.bytes()).expect("verifies");
        assert_eq!(decoded, signed);
    }
}
