//! Tests written to kill mutants that `scripts/mutants` found surviving in
//! `proto/src` (listed in docs/testing.md): each pins one boundary or helper
//! that the other tests pass through without looking at exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_proto::cbor::{self, CborError, Value, DEPTH_MAX};
use hearth_proto::{
    hash_bytes, CommunityId, Event, EventHash, EventId, EventKey, Identity, Level, MemberSet,
    Payload,
};

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}

/// `Value::get` finds a text key's value in a map, and nothing for a
/// missing key, a non-text key or a value that is not a map.
#[test]
fn value_get_finds_text_keys_of_maps_only() {
    let map = Value::map([("a", Value::Uint(1)), ("b", Value::Uint(2))]);
    assert_eq!(map.get("a"), Some(&Value::Uint(1)));
    assert_eq!(map.get("b"), Some(&Value::Uint(2)));
    assert_eq!(map.get("c"), None);
    let uint_keys = Value::Map(vec![(Value::Uint(0), Value::Uint(1))]);
    assert_eq!(uint_keys.get("0"), None);
    assert_eq!(Value::Array(vec![Value::text("a")]).get("a"), None);
}

/// Each header width accepts exactly the arguments the next shorter width
/// cannot hold: one below the boundary is non-shortest, the boundary is
/// canonical. Checked for integers and for lengths.
#[test]
fn shortest_form_boundaries_are_exact() {
    let cases = [
        ("1817", "1818"),
        ("1900ff", "190100"),
        ("1a0000ffff", "1a00010000"),
        ("1b00000000ffffffff", "1b0000000100000000"),
        ("3817", "3818"),
        ("3900ff", "390100"),
    ];
    for (refused, accepted) in cases {
        assert_eq!(
            cbor::decode(&hex(refused)),
            Err(CborError::NonShortest { offset: 0 }),
            "{refused}"
        );
        let bytes = hex(accepted);
        let value = cbor::decode(&bytes).expect(accepted);
        assert_eq!(value.to_bytes(), bytes);
    }
    // Lengths: a 24-byte string needs the one-byte form, a 23-byte one
    // must not use it.
    let mut refused = hex("5817");
    refused.extend([0u8; 23]);
    assert_eq!(
        cbor::decode(&refused),
        Err(CborError::NonShortest { offset: 0 })
    );
    let mut accepted = hex("5818");
    accepted.extend([0u8; 24]);
    assert_eq!(cbor::decode(&accepted), Ok(Value::bytes(vec![0; 24])));
}

/// Nesting exactly `DEPTH_MAX` deep decodes; one level more is refused.
#[test]
fn nesting_bound_is_exact() {
    let nested = |levels: usize| {
        let mut bytes = vec![0x81u8; levels];
        bytes.push(0x00);
        bytes
    };
    assert!(cbor::decode(&nested(DEPTH_MAX)).is_ok());
    assert_eq!(
        cbor::decode(&nested(DEPTH_MAX + 1)),
        Err(CborError::TooDeep {
            offset: DEPTH_MAX + 1
        })
    );
}

/// A length that takes exactly the bytes left decodes; one more is refused.
#[test]
fn length_bound_is_exact() {
    assert_eq!(
        cbor::decode(&hex("820000")),
        Ok(Value::Array(vec![Value::Uint(0), Value::Uint(0)]))
    );
    assert_eq!(
        cbor::decode(&hex("830000")),
        Err(CborError::LengthOverflow { offset: 0 })
    );
    assert_eq!(cbor::decode(&hex("42abcd")), Ok(Value::bytes(hex("abcd"))));
    assert_eq!(
        cbor::decode(&hex("43abcd")),
        Err(CborError::LengthOverflow { offset: 0 })
    );
    assert_eq!(cbor::item_len(&hex("820000")), Ok(3));
    assert_eq!(
        cbor::item_len(&hex("830000")),
        Err(CborError::LengthOverflow { offset: 0 })
    );
}

/// Simple values: one-byte forms below 32 are not well-formed, `false`,
/// `true` decode, null/undefined and the rest are refused by name.
#[test]
fn simple_values_are_told_apart() {
    assert_eq!(cbor::decode(&hex("f4")), Ok(Value::Bool(false)));
    assert_eq!(cbor::decode(&hex("f5")), Ok(Value::Bool(true)));
    assert_eq!(
        cbor::decode(&hex("f817")),
        Err(CborError::NonShortest { offset: 0 })
    );
    assert_eq!(
        cbor::decode(&hex("f820")),
        Err(CborError::Simple {
            value: 32,
            offset: 0
        })
    );
    assert_eq!(
        cbor::decode(&hex("fa3f800000")),
        Err(CborError::Float { offset: 0 })
    );
}

/// A map key counts as one level deeper than its map, as values do: a key
/// nested to the bound decodes, one level more is refused.
#[test]
fn map_keys_count_towards_the_nesting_bound() {
    let keyed = |levels: usize| {
        // {[[...[0]...]]: 0} with `levels` arrays in the key.
        let mut bytes = vec![0xa1u8];
        bytes.extend(vec![0x81u8; levels]);
        bytes.extend([0x00, 0x00]);
        bytes
    };
    assert!(cbor::decode(&keyed(DEPTH_MAX - 1)).is_ok());
    assert_eq!(
        cbor::decode(&keyed(DEPTH_MAX)),
        Err(CborError::TooDeep {
            offset: DEPTH_MAX + 1
        })
    );
}

/// Store keys: 8 bytes of big-endian Lamport time then the 32-byte hash,
/// so byte order is key order; they read back, and other lengths do not.
#[test]
fn event_key_bytes_round_trip_in_order() {
    let key = |lamport: u64, first: u8| EventKey {
        lamport,
        hash: EventHash([first; 32]),
    };
    let a = key(0x0102, 9);
    let bytes = a.to_bytes();
    assert_eq!(&bytes[..8], &[0, 0, 0, 0, 0, 0, 0x01, 0x02]);
    assert_eq!(&bytes[8..], &[9; 32]);
    assert_eq!(EventKey::from_bytes(&bytes), Some(a));
    assert_eq!(EventKey::from_bytes(&bytes[..39]), None);
    assert_eq!(
        EventKey::from_bytes(&[bytes.as_slice(), &[0]].concat()),
        None
    );
    assert_eq!(EventKey::from_bytes(&bytes[..7]), None);
    let keys = [key(1, 0xff), key(2, 0), key(256, 0), key(256, 1)];
    for pair in keys.windows(2) {
        assert!(pair[0] < pair[1]);
        assert!(pair[0].to_bytes() < pair[1].to_bytes());
    }
}

/// A verified event's key is its Lamport time and its hash: the position
/// the log and sync give it.
#[test]
fn verified_event_key_is_lamport_and_hash() {
    let me = Identity::from_seed([7; 32]);
    let event = Event {
        id: EventId::from_bytes([3; 16]),
        ts: 1_767_225_600_000,
        author: me.node_id(),
        lamport: 42,
        community: CommunityId([0x11; 32]),
        payload: Payload::MemberSet(MemberSet {
            member: me.node_id(),
            level: Level::Member,
        }),
    }
    .sign(&me)
    .expect("valid");
    assert_eq!(
        event.key(),
        EventKey {
            lamport: 42,
            hash: hash_bytes(event.bytes()),
        }
    );
}
