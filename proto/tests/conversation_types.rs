//! The conversation event types of issue 14: the exact `data` encoding of a
//! reply (written out by hand), round trips of every type through signing
//! and decoding, and schema rejections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hearth_proto::cbor::Value;
use hearth_proto::payload::{
    TYPE_CLAIM_ACCEPTED, TYPE_DM_SEALED, TYPE_POST_CLAIM, TYPE_POST_REPLY,
};
use hearth_proto::{
    ClaimRef, CommunityId, DmSealed, Event, EventError, EventId, EventRef, Identity, NodeId,
    Payload, PostClaim, PostReply, SchemaError, VerifiedEvent,
};

fn me() -> Identity {
    Identity::from_seed([7; 32])
}

fn event(payload: Payload) -> Event {
    Event {
        id: EventId::from_bytes([0x05; 16]),
        ts: 1_767_225_600_000,
        author: me().node_id(),
        lamport: 9,
        community: CommunityId([0x11; 32]),
        payload,
    }
}

fn post() -> EventRef {
    EventRef {
        author: NodeId([0xaa; 32]),
        id: EventId::from_bytes([0x01; 16]),
    }
}

fn refused(type_name: &str, data: Value<'static>) -> SchemaError {
    match event(Payload::Unknown {
        type_name: type_name.into(),
        data,
    })
    .sign(&me())
    {
        Err(EventError::Schema(s)) => s,
        other => panic!("expected a schema error, got {other:?}"),
    }
}

fn ref_value(author: Vec<u8>, id: Vec<u8>) -> Value<'static> {
    Value::map([("author", Value::bytes(author)), ("id", Value::bytes(id))])
}

/// `{body: "Gern", target: {id, author}}` in canonical key order, by hand:
/// `body` (4) before `target` (6); inside the reference `id` (2) before
/// `author` (6).
#[test]
fn reply_data_encodes_to_the_known_bytes() {
    let expected = format!(
        "a2 64626f6479 644765726e 66746172676574 a2 626964 50{} 66617574686f72 5820{}",
        "01".repeat(16),
        "aa".repeat(32)
    )
    .replace(' ', "");
    let p = Payload::PostReply(PostReply {
        target: post(),
        body: "Gern".into(),
    });
    assert_eq!(hex::encode(p.to_value().to_bytes()), expected);
}

/// Every conversation type signs, decodes and verifies back to the same
/// typed payload under its wire name.
#[test]
fn conversation_events_round_trip() {
    let claim = EventRef {
        author: NodeId([0xbb; 32]),
        id: EventId::from_bytes([0x02; 16]),
    };
    for payload in [
        Payload::PostReply(PostReply {
            target: post(),
            body: "Ich hätte gern einen".into(),
        }),
        Payload::PostClaim(PostClaim {
            target: post(),
            note: None,
        }),
        Payload::PostClaim(PostClaim {
            target: post(),
            note: Some("morgen?".into()),
        }),
        Payload::ClaimWithdrawn(ClaimRef {
            target: post(),
            claim,
        }),
        Payload::ClaimAccepted(ClaimRef {
            target: post(),
            claim,
        }),
        Payload::DmSealed(DmSealed {
            to: NodeId([0xcc; 32]),
            sealed: vec![0x5a; 304],
        }),
    ] {
        let signed = event(payload.clone()).sign(&me()).unwrap();
        let back = VerifiedEvent::decode(signed.bytes()).unwrap();
        assert_eq!(back.event().payload, payload);
        assert_eq!(back.event().payload.type_name(), payload.type_name());
    }
}

/// A reply without a body, a reference whose author is 31 bytes, a claim
/// with an unknown field, a box written as text and an acceptance without
/// its claim are each invalid, naming the field.
#[test]
fn malformed_conversation_data_is_refused() {
    let good_ref = || ref_value(vec![0xaa; 32], vec![1; 16]);
    let e = refused(TYPE_POST_REPLY, Value::map([("target", good_ref())]));
    assert_eq!(e.field, "body");
    let e = refused(
        TYPE_POST_REPLY,
        Value::map([
            ("target", ref_value(vec![0xaa; 31], vec![1; 16])),
            ("body", Value::text("x")),
        ]),
    );
    assert_eq!(e.field, "target.author");
    let e = refused(
        TYPE_POST_CLAIM,
        Value::map([("target", good_ref()), ("price", Value::Uint(3))]),
    );
    assert_eq!(e.field, "price");
    let e = refused(
        TYPE_DM_SEALED,
        Value::map([
            ("to", Value::bytes(vec![0xcc; 32])),
            ("box", Value::text("not bytes")),
        ]),
    );
    assert_eq!(e.field, "box");
    let e = refused(TYPE_CLAIM_ACCEPTED, Value::map([("target", good_ref())]));
    assert_eq!(e.field, "claim");
}
