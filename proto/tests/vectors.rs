//! Known-answer vectors from the shared design (`vectors/events-v1.json`,
//! copied into `tests/data`): every event must be reproduced byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_proto::cbor::Value;
use hearth_proto::{
    CommunityId, Event, EventId, Identity, NodeId, Payload, SignedEvent, VerifiedEvent,
};
use serde_json::Value as Json;

fn vectors() -> Vec<Json> {
    let text = include_str!("data/events-v1.json");
    let doc: Json = serde_json::from_str(text).expect("vector file is JSON");
    doc["vectors"].as_array().expect("vectors array").clone()
}

fn hex32(v: &Json) -> [u8; 32] {
    let b = hex::decode(v["bytes_hex"].as_str().expect("bytes_hex")).expect("hex");
    b.try_into().expect("32 bytes")
}

/// JSON vector notation -> CBOR value: `{"bytes_hex": ..}` is a byte string.
fn to_value(v: &Json) -> Value<'static> {
    match v {
        Json::Object(m) if m.len() == 1 && m.contains_key("bytes_hex") => {
            Value::bytes(hex::decode(m["bytes_hex"].as_str().expect("hex")).expect("hex"))
        }
        Json::Object(m) => Value::map(m.iter().map(|(k, v)| (k.clone(), to_value(v)))),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::String(s) => Value::text(s.clone()),
        Json::Number(n) => match n.as_u64() {
            Some(u) => Value::Uint(u),
            None => Value::Nint((-1 - n.as_i64().expect("int")) as u64),
        },
        other => panic!("vector has a {other:?}, which events never hold"),
    }
}

fn event_of(v: &Json) -> Event {
    let f = &v["fields"];
    let kind = f["type"].as_str().expect("type");
    let id: [u8; 16] = hex::decode(f["id"]["bytes_hex"].as_str().expect("id"))
        .expect("hex")
        .try_into()
        .expect("16 bytes");
    Event {
        id: EventId::from_bytes(id),
        ts: f["ts"].as_u64().expect("ts"),
        author: NodeId(hex32(&f["author"])),
        lamport: f["lamport"].as_u64().expect("lamport"),
        community: CommunityId(hex32(&f["community"])),
        payload: Payload::from_value(kind, to_value(&f["data"])).expect("valid payload"),
    }
}

fn identity(v: &Json) -> Identity {
    let seed = hex::decode(v["secret_key_seed_hex"].as_str().expect("seed")).expect("hex");
    Identity::from_seed(seed.try_into().expect("32-byte seed"))
}

#[test]
fn vectors_cover_every_known_type() {
    let names: Vec<String> = vectors()
        .iter()
        .map(|v| v["fields"]["type"].as_str().unwrap_or("").to_owned())
        .collect();
    for t in [
        "community.genesis",
        "community.member.set",
        "market.post.created",
        "market.post.updated",
        "market.post.expired",
    ] {
        assert!(names.iter().any(|n| n == t), "no vector for {t}");
    }
}

#[test]
fn signing_reproduces_every_vector_byte_for_byte() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap_or("?");
        let id = identity(&v);
        assert_eq!(
            id.node_id().to_hex(),
            v["public_key_hex"].as_str().unwrap_or(""),
            "{name}: key"
        );
        let event = event_of(&v);
        assert_eq!(
            hex::encode(event.signing_input()),
            v["signing_input_hex"].as_str().unwrap_or(""),
            "{name}: signing input"
        );
        let signed = event.sign(&id).expect("signs");
        assert_eq!(
            hex::encode(signed.bytes()),
            v["encoded_hex"].as_str().unwrap_or(""),
            "{name}: bytes"
        );
        assert_eq!(
            signed.hash().to_hex(),
            v["hash_hex"].as_str().unwrap_or(""),
            "{name}: hash"
        );
        assert_eq!(
            hex::encode(signed.signature()),
            v["fields"]["sig"]["bytes_hex"].as_str().unwrap_or(""),
            "{name}: signature"
        );
        assert_eq!(
            signed.event().id.to_string(),
            v["id_ulid"].as_str().unwrap_or(""),
            "{name}: ulid"
        );
    }
}

#[test]
fn decoding_every_vector_verifies_and_cuts_the_same_signing_input() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap_or("?");
        let bytes = hex::decode(v["encoded_hex"].as_str().unwrap_or("")).expect("hex");
        let signed = SignedEvent::decode(&bytes).expect("decodes");
        assert_eq!(
            hex::encode(signed.signing_input()),
            v["signing_input_hex"].as_str().unwrap_or(""),
            "{name}"
        );
        assert_eq!(signed.event(), &event_of(&v), "{name}: fields");
        let verified = VerifiedEvent::decode(&bytes).expect("verifies");
        assert_eq!(
            verified.hash().to_hex(),
            v["hash_hex"].as_str().unwrap_or(""),
            "{name}"
        );
    }
}

#[test]
fn genesis_hash_is_the_community_id_of_the_others() {
    let vs = vectors();
    let genesis = VerifiedEvent::decode(
        &hex::decode(vs[0]["encoded_hex"].as_str().unwrap_or("")).expect("hex"),
    )
    .expect("genesis verifies");
    let community = genesis.founded_community().expect("is a genesis");
    for v in &vs[1..] {
        assert_eq!(CommunityId(hex32(&v["fields"]["community"])), community);
    }
}
