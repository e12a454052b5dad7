"""Independent check of HearthNet's sealed direct messages with PyNaCl.

Run by proto/tests/sealed_python.rs with the venv that scripts/test makes.
It reads one JSON object on stdin:

  {"recipient_seed": hex, "sender_seed": hex, "box": hex, "expect": {...},
   "reply": {"body": text, "ts": int, "post": {"author": hex, "id": hex}|null}}

and does two things with nothing but libsodium (through PyNaCl) and a small
canonical CBOR codec written here, independent of the Rust code:

1. opens `box` with only the recipient's ed25519 seed (converted with
   crypto_sign_ed25519_sk_to_curve25519, as libsodium documents), checks the
   zero padding, decodes the inner message, checks its fields against
   `expect` and verifies the sender's ed25519 signature over
   "hearthnet/dm/v1\\0" || the inner message bytes;
2. writes a message from the recipient back to the sender, signed with
   PyNaCl and sealed with crypto_box_seal to the sender's converted key, and
   prints {"box": hex} for the Rust side to open.

Any failed check exits non-zero with the reason on stderr.
"""

import json
import sys

import nacl.bindings as sodium
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

DOMAIN = b"hearthnet/dm/v1\x00"
PAD_BLOCK = 256


def fail(why):
    print(f"sealed_check: {why}", file=sys.stderr)
    sys.exit(1)


# --- a minimal canonical CBOR codec for the subset messages use -----------

def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | info]) + n.to_bytes(width, "big")
    raise ValueError("integer too large")


def encode(v):
    if isinstance(v, bool):
        raise ValueError("no booleans in messages")
    if isinstance(v, int):
        return _head(0, v)
    if isinstance(v, bytes):
        return _head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode("utf-8")
        return _head(3, len(b)) + b
    if isinstance(v, dict):
        # RFC 8949 §4.2.1: keys sorted by their encoded bytes.
        items = sorted((encode(k), encode(x)) for k, x in v.items())
        return _head(5, len(items)) + b"".join(k + x for k, x in items)
    raise ValueError(f"cannot encode {type(v)}")


def decode(b, pos=0):
    """Returns (value, next position). Rejects what messages never hold."""
    initial = b[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        n = info
    elif info in (24, 25, 26, 27):
        width = 1 << (info - 24)
        n = int.from_bytes(b[pos:pos + width], "big")
        if len(b) < pos + width or (n < 24 if width == 1 else n < 1 << (4 * width)):
            fail("non-shortest or truncated CBOR head")
        pos += width
    else:
        fail(f"unsupported CBOR additional info {info}")
    if major == 0:
        return n, pos
    if major in (2, 3):
        raw = b[pos:pos + n]
        if len(raw) != n:
            fail("truncated CBOR string")
        return (raw if major == 2 else raw.decode("utf-8")), pos + n
    if major == 5:
        out, last_key = {}, None
        for _ in range(n):
            start = pos
            k, pos = decode(b, pos)
            key_bytes = b[start:pos]
            if last_key is not None and key_bytes <= last_key:
                fail("CBOR map keys not in canonical order")
            last_key = key_bytes
            out[k], pos = decode(b, pos)
        return out, pos
    fail(f"unsupported CBOR major type {major}")


# --- the checks -----------------------------------------------------------

def x25519_secret(seed):
    ed_pk = bytes(SigningKey(seed).verify_key)
    return sodium.crypto_sign_ed25519_sk_to_curve25519(seed + ed_pk)


def x25519_public(ed_pk):
    return sodium.crypto_sign_ed25519_pk_to_curve25519(ed_pk)


def open_box(recipient_seed, box):
    plain = SealedBox(PrivateKey(x25519_secret(recipient_seed))).decrypt(box)
    if len(plain) % PAD_BLOCK != 0:
        fail(f"plaintext is {len(plain)} bytes, not a multiple of {PAD_BLOCK}")
    outer, end = decode(plain)
    padding = plain[end:]
    if len(padding) >= PAD_BLOCK or any(padding):
        fail("padding is not fewer than 256 zero bytes")
    if set(outer) != {"msg", "sig"}:
        fail(f"plaintext keys are {sorted(outer)}, not msg and sig")
    msg_bytes, sig = outer["msg"], outer["sig"]
    msg, end = decode(msg_bytes)
    if end != len(msg_bytes) or encode(msg) != msg_bytes:
        fail("inner message is not canonical CBOR")
    # Raises BadSignatureError (non-zero exit) if the signature is wrong.
    VerifyKey(msg["from"]).verify(DOMAIN + msg_bytes, sig)
    return msg


def seal_message(sender_seed, to_ed_pk, body, ts, post):
    sender = SigningKey(sender_seed)
    msg = {"v": 1, "from": bytes(sender.verify_key), "to": to_ed_pk, "body": body, "ts": ts}
    if post is not None:
        msg["post"] = {"author": bytes.fromhex(post["author"]), "id": bytes.fromhex(post["id"])}
    msg_bytes = encode(msg)
    sig = sender.sign(DOMAIN + msg_bytes).signature
    plain = encode({"msg": msg_bytes, "sig": sig})
    plain += bytes(-len(plain) % PAD_BLOCK)
    return SealedBox(PublicKey(x25519_public(to_ed_pk))).encrypt(plain)


def main():
    req = json.load(sys.stdin)
    recipient_seed = bytes.fromhex(req["recipient_seed"])
    sender_seed = bytes.fromhex(req["sender_seed"])
    recipient_pk = bytes(SigningKey(recipient_seed).verify_key)
    sender_pk = bytes(SigningKey(sender_seed).verify_key)

    msg = open_box(recipient_seed, bytes.fromhex(req["box"]))
    expect = req["expect"]
    got = {
        "v": msg["v"],
        "from": msg["from"].hex(),
        "to": msg["to"].hex(),
        "body": msg["body"],
        "ts": msg["ts"],
        "post": None if "post" not in msg else
        {"author": msg["post"]["author"].hex(), "id": msg["post"]["id"].hex()},
    }
    if got != expect:
        fail(f"opened message differs:\n got    {got}\n expect {expect}")
    if msg["from"] != sender_pk or msg["to"] != recipient_pk:
        fail("from/to are not the sender's and recipient's keys")
    extra = set(msg) - {"v", "from", "to", "post", "body", "ts"}
    if extra:
        fail(f"inner message has unknown keys {sorted(extra)}")

    reply = req["reply"]
    box = seal_message(recipient_seed, sender_pk, reply["body"], reply["ts"], reply["post"])
    json.dump({"box": box.hex()}, sys.stdout)


if __name__ == "__main__":
    main()
