//! Sealed direct messages (issue 14): seal and open per message, and the
//! bytes a `dm.sealed` event adds to the log per 100 characters of text.
//! The ceiling printed beside them is ed25519 signing in the same run: a
//! seal is one signature, one X25519 key generation and one X25519 shared
//! secret; an open is two X25519 operations and one strict verification.

use std::time::Instant;

use hearth_proto::sealed::{open, seal, DirectMessage};
use hearth_proto::{CommunityId, DmSealed, Event, EventId, Identity, Payload};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::json;

use super::{emit, figure, progress};
use crate::FIXED_NOW_MS;

pub fn sealed(messages: usize) -> anyhow::Result<()> {
    progress(format!("sealed: {messages} messages"));
    let a = Identity::from_seed([0x11; 32]);
    let b = Identity::from_seed([0x22; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let msg = |body: String| DirectMessage {
        from: a.node_id(),
        to: b.node_id(),
        post: None,
        body,
        ts: FIXED_NOW_MS,
    };
    let m = msg("x".repeat(100));

    let start = Instant::now();
    let mut boxes = Vec::with_capacity(messages);
    for _ in 0..messages {
        boxes.push(seal(&a, &m, &mut rng)?);
    }
    let seal_us = start.elapsed().as_secs_f64() * 1e6 / messages as f64;

    let start = Instant::now();
    for b_ in &boxes {
        open(&b, b_)?;
    }
    let open_us = start.elapsed().as_secs_f64() * 1e6 / messages as f64;

    // Same-run ceiling: signing an event of the same size.
    let event = |sealed: Vec<u8>| Event {
        id: EventId::from_parts(FIXED_NOW_MS, 1),
        ts: FIXED_NOW_MS,
        author: a.node_id(),
        lamport: 1,
        community: CommunityId([0x33; 32]),
        payload: Payload::DmSealed(DmSealed {
            to: b.node_id(),
            sealed,
        }),
    };
    let start = Instant::now();
    for b_ in boxes.iter().take(messages.min(1_000)) {
        event(b_.clone()).sign(&a)?;
    }
    let sign_us = start.elapsed().as_secs_f64() * 1e6 / messages.min(1_000) as f64;

    let mut per_length = Vec::new();
    let mut event_bytes_at = std::collections::BTreeMap::new();
    for chars in [0usize, 100, 500, 1_000, 3_000] {
        let sealed = seal(&a, &msg("x".repeat(chars)), &mut rng)?;
        let box_bytes = sealed.len();
        let event_bytes = event(sealed).sign(&a)?.bytes().len();
        event_bytes_at.insert(chars, event_bytes);
        per_length
            .push(json!({"chars": chars, "box_bytes": box_bytes, "event_bytes": event_bytes}));
    }
    let at = |chars: usize| event_bytes_at.get(&chars).copied().unwrap_or(0) as f64;
    // What 100 characters cost in the log: a whole 100-character message
    // (envelope, signed inner message and padding included), and the
    // marginal cost of 100 more characters in a long text (padding
    // averaged out), the figure to compare with 100 bytes of plaintext.
    let per_100_chars = json!({
        "message_of_100_chars": at(100),
        "marginal_in_long_texts": (at(3_000) - at(1_000)) / 20.0,
    });
    emit(figure(
        "sealed",
        json!({
            "messages": messages,
            "seal_us": seal_us,
            "open_us": open_us,
            "sign_event_us_ceiling": sign_us,
            // How many event signatures one seal or open costs (DESIGN §7's
            // same-run ratio).
            "seal_ratio": seal_us / sign_us,
            "open_ratio": open_us / sign_us,
            "log_bytes_by_length": per_length,
            "log_bytes_per_100_chars": per_100_chars,
        }),
    ));
    Ok(())
}
