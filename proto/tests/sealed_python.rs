//! The sealing of direct messages, checked against libsodium through PyNaCl
//! (tests/py/sealed_check.py, in the venv `scripts/test` makes).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hearth_proto::sealed::{open, seal, DirectMessage};
use hearth_proto::{EventId, EventRef, Identity};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let venv = repo_root().join("target/py-venv/bin/python");
    assert!(
        venv.exists(),
        "the Python venv {} is missing: run scripts/test (it makes target/py-venv \
         from scripts/py-requirements.txt) before this test",
        venv.display()
    );
    venv
}

/// A message the node sealed opens in PyNaCl with only the recipient's
/// ed25519 seed and its inner signature verifies there; a message PyNaCl
/// signed and sealed opens in the node with the same fields.
#[test]
fn pynacl_opens_ours_and_we_open_theirs() {
    let python = python();
    let a = Identity::from_seed([0x11; 32]);
    let b = Identity::from_seed([0x22; 32]);
    let post = EventRef {
        author: b.node_id(),
        id: EventId::from_bytes([0x42; 16]),
    };
    let msg = DirectMessage {
        from: a.node_id(),
        to: b.node_id(),
        post: Some(post),
        body: "Hallo! Ich hätte gern einen Wasserkanister. 💧".repeat(5),
        ts: 1_765_000_000_000,
    };
    let sealed = seal(&a, &msg, &mut ChaCha20Rng::seed_from_u64(7)).expect("seals");
    let request = serde_json::json!({
        "recipient_seed": hex::encode(b.seed()),
        "sender_seed": hex::encode(a.seed()),
        "box": hex::encode(&sealed),
        "expect": {
            "v": 1,
            "from": a.node_id().to_hex(),
            "to": b.node_id().to_hex(),
            "body": msg.body,
            "ts": msg.ts,
            "post": {"author": post.author.to_hex(), "id": hex::encode(post.id.to_bytes())},
        },
        "reply": {
            "body": "Gern, komm morgen vorbei.",
            "ts": 1_765_000_100_000u64,
            "post": {"author": post.author.to_hex(), "id": hex::encode(post.id.to_bytes())},
        },
    });

    let mut child = Command::new(&python)
        .arg(repo_root().join("tests/py/sealed_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(request.to_string().as_bytes())
        .expect("request written");
    let out = child.wait_with_output().expect("python finishes");
    assert!(
        out.status.success(),
        "sealed_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    let theirs = hex::decode(answer["box"].as_str().expect("box is text")).expect("box is hex");

    let opened = open(&a, &theirs).expect("the node opens PyNaCl's box");
    assert_eq!(
        opened,
        DirectMessage {
            from: b.node_id(),
            to: a.node_id(),
            post: Some(post),
            body: "Gern, komm morgen vorbei.".into(),
            ts: 1_765_000_100_000,
        }
    );
    // And it is for A alone.
    assert!(open(&b, &theirs).is_err());
}
