//! The SentencePiece unigram tokenizer of `sp.model`: the model's
//! normaliser (the precompiled character map, a darts-clone double-array
//! trie, plus the whitespace rules of its `normalizer_spec`) and Viterbi
//! segmentation over the pieces' scores.
//!
//! It reproduces the reference package's pure-Python port exactly (the
//! parity test checks the ids on every text), including where that port
//! differs from the C++ library: consecutive unknown characters stay
//! separate `<unk>` ids and every piece (control and user-defined ones
//! too) takes part in the segmentation with its score.

use crate::proto::{Fields, Value};

/// Piece ids the model reserves (the reference hard-codes them; the
/// loader checks the pieces carry these types).
pub const UNK_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;

/// Added to the lowest piece score for an unknown character (the
/// SentencePiece rule).
const UNK_PENALTY: f64 = 10.0;

/// Piece types (SentencePiece's `ModelProto.SentencePiece.Type`).
const TYPE_NORMAL: u64 = 1;
const TYPE_UNKNOWN: u64 = 2;
const TYPE_CONTROL: u64 = 3;

/// `▁`, which stands for a space inside pieces.
const SPACE_SYMBOL: &[u8] = "\u{2581}".as_bytes();

/// Marks a trie node that ends no piece.
const NO_PIECE: u32 = u32::MAX;

/// A loaded tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    scores: Vec<f32>,
    trie: Trie,
    unk_score: f64,
    normalizer: Normalizer,
}

impl Tokenizer {
    /// Parses a serialised `ModelProto`; the error says what is wrong.
    pub fn from_bytes(data: &[u8]) -> Result<Tokenizer, String> {
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let mut types: Vec<u64> = Vec::new();
        let mut scores: Vec<f32> = Vec::new();
        let mut normalizer_spec: Option<&[u8]> = None;
        for field in Fields::new(data) {
            match field? {
                (1, Value::Bytes(b)) => {
                    let index = pieces.len();
                    let (piece, score, kind) =
                        parse_piece(b).map_err(|e| format!("piece {index}: {e}"))?;
                    pieces.push(piece);
                    scores.push(score);
                    types.push(kind);
                }
                (2, Value::Bytes(trainer)) => check_trainer_spec(trainer)?,
                (3, Value::Bytes(spec)) => normalizer_spec = Some(spec),
                _ => {}
            }
        }
        if pieces.is_empty() {
            return Err("it has no pieces (is this a SentencePiece model?)".into());
        }
        let want = [
            (UNK_ID, TYPE_UNKNOWN, "<unk>"),
            (BOS_ID, TYPE_CONTROL, "<s>"),
            (EOS_ID, TYPE_CONTROL, "</s>"),
        ];
        for (id, kind, name) in want {
            if types.get(id as usize) != Some(&kind) {
                return Err(format!(
                    "piece {id} should be the {name} piece of type {kind}, found type {:?}",
                    types.get(id as usize)
                ));
            }
        }
        if pieces.len() > NO_PIECE as usize {
            return Err("too many pieces".into());
        }
        let normalizer = Normalizer::from_spec(normalizer_spec.unwrap_or_default())?;
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        if !min.is_finite() || scores.iter().any(|s| !s.is_finite()) {
            return Err("a piece score is not a finite number".into());
        }
        let trie = Trie::build(&pieces);
        Ok(Tokenizer {
            unk_score: f64::from(min) - UNK_PENALTY,
            scores,
            trie,
            normalizer,
        })
    }

    /// How many pieces the model has (ids are `0..vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.scores.len()
    }

    /// The ids of `text`: `<s>`, the pieces, `</s>` (an empty text is one
    /// `<unk>` between them, as in the reference).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalizer.normalize(text);
        let mut ids = vec![BOS_ID];
        if normalized.is_empty() {
            ids.push(UNK_ID);
        } else {
            ids.extend(self.viterbi(&normalized));
        }
        ids.push(EOS_ID);
        ids
    }

    /// The normalised form of `text` (spaces as `▁`), for tests.
    pub fn normalize(&self, text: &str) -> String {
        self.normalizer.normalize(text)
    }

    /// The best segmentation: for every character position, the best-scoring
    /// piece ending there, earliest start winning ties (strictly greater
    /// replaces); a character no piece of length one covers becomes `<unk>`.
    fn viterbi(&self, s: &str) -> Vec<u32> {
        let bytes = s.as_bytes();
        // Byte offset of each character, then the end.
        let starts: Vec<usize> = s
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(bytes.len()))
            .collect();
        let chars = starts.len() - 1;
        let mut best = vec![-1e38f64; chars + 1];
        best[0] = 0.0;
        let mut start_of = vec![0usize; chars + 1];
        let mut piece_of = vec![UNK_ID; chars + 1];
        for i in 0..chars {
            let base = best[i];
            let mut node = Trie::ROOT;
            let mut has_single = false;
            'walk: for j in i..chars {
                for &b in &bytes[starts[j]..starts[j + 1]] {
                    match self.trie.child(node, b) {
                        Some(next) => node = next,
                        None => break 'walk,
                    }
                }
                let piece = self.trie.piece(node);
                if piece != NO_PIECE {
                    let score = base + f64::from(self.scores[piece as usize]);
                    if score > best[j + 1] {
                        best[j + 1] = score;
                        start_of[j + 1] = i;
                        piece_of[j + 1] = piece;
                    }
                    if j == i {
                        has_single = true;
                    }
                }
            }
            if !has_single {
                let score = base + self.unk_score;
                if score > best[i + 1] {
                    best[i + 1] = score;
                    start_of[i + 1] = i;
                    piece_of[i + 1] = UNK_ID;
                }
            }
        }
        let mut ids = Vec::new();
        let mut p = chars;
        while p > 0 {
            ids.push(piece_of[p]);
            p = start_of[p];
        }
        ids.reverse();
        ids
    }
}

/// One `SentencePiece` message: text, score, type (NORMAL when absent).
fn parse_piece(b: &[u8]) -> Result<(Vec<u8>, f32, u64), String> {
    let mut piece = None;
    let mut score = 0.0f32;
    let mut kind = TYPE_NORMAL;
    for field in Fields::new(b) {
        match field? {
            (1, Value::Bytes(p)) => {
                std::str::from_utf8(p).map_err(|_| "its text is not UTF-8".to_string())?;
                piece = Some(p.to_vec());
            }
            (2, Value::Fixed32(bits)) => score = f32::from_bits(bits),
            (3, Value::Varint(t)) => kind = t,
            _ => {}
        }
    }
    let piece = piece.ok_or("it has no text")?;
    Ok((piece, score, kind))
}

/// Refuses models that are not unigram (`trainer_spec.model_type`, field
/// 3: 1 is UNIGRAM and the default) or use other reserved ids.
fn check_trainer_spec(b: &[u8]) -> Result<(), String> {
    for field in Fields::new(b) {
        match field.map_err(|e| format!("trainer_spec: {e}"))? {
            (3, Value::Varint(t)) if t != 1 => {
                return Err(format!(
                    "model type {t} is not unigram (1); only unigram models are supported"
                ))
            }
            (40, Value::Varint(id)) if id != u64::from(UNK_ID) => {
                return Err(format!("unk_id {id} is not {UNK_ID}"))
            }
            (41, Value::Varint(id)) if id != u64::from(BOS_ID) => {
                return Err(format!("bos_id {id} is not {BOS_ID}"))
            }
            (42, Value::Varint(id)) if id != u64::from(EOS_ID) => {
                return Err(format!("eos_id {id} is not {EOS_ID}"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A byte trie of the pieces; each node's children are a sorted run of
/// `edges`. When two pieces have the same text the later id wins (as in
/// the reference's dict).
#[derive(Debug)]
struct Trie {
    /// Per node: first edge, number of edges, piece id or [`NO_PIECE`].
    nodes: Vec<(u32, u32, u32)>,
    /// `(byte, child node)`, sorted by byte within each node's run.
    edges: Vec<(u8, u32)>,
}

impl Trie {
    const ROOT: u32 = 0;

    fn build(pieces: &[Vec<u8>]) -> Trie {
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut piece_of: Vec<u32> = vec![NO_PIECE];
        for (id, piece) in pieces.iter().enumerate() {
            let mut node = 0usize;
            for &b in piece {
                node = match children[node].iter().find(|(l, _)| *l == b) {
                    Some(&(_, c)) => c as usize,
                    None => {
                        let c = children.len();
                        children.push(Vec::new());
                        piece_of.push(NO_PIECE);
                        children[node].push((b, c as u32));
                        c
                    }
                };
            }
            // Empty pieces can never match (the reference looks up
            // non-empty substrings only); the root stays piece-less.
            if node != 0 {
                piece_of[node] = id as u32;
            }
        }
        let mut nodes = Vec::with_capacity(children.len());
        let mut edges = Vec::with_capacity(children.len());
        for (mut kids, piece) in children.into_iter().zip(piece_of) {
            kids.sort_unstable();
            nodes.push((edges.len() as u32, kids.len() as u32, piece));
            edges.extend(kids);
        }
        Trie { nodes, edges }
    }

    fn child(&self, node: u32, b: u8) -> Option<u32> {
        let (first, n, _) = self.nodes[node as usize];
        let run = &self.edges[first as usize..(first + n) as usize];
        run.binary_search_by_key(&b, |e| e.0).ok().map(|i| run[i].1)
    }

    fn piece(&self, node: u32) -> u32 {
        self.nodes[node as usize].2
    }
}

/// The normaliser of `normalizer_spec`.
#[derive(Debug)]
struct Normalizer {
    /// The double-array trie's units (empty: no character map).
    units: Vec<u32>,
    /// NUL-terminated replacements the trie's values point into.
    replacements: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

impl Normalizer {
    /// Reads `name` (1), `precompiled_charsmap` (2), `add_dummy_prefix`
    /// (3), `remove_extra_whitespaces` (4), `escape_whitespaces` (5) and
    /// refuses a custom rule table (6), which no shipped model uses.
    fn from_spec(spec: &[u8]) -> Result<Normalizer, String> {
        let mut name = String::new();
        let mut charsmap: &[u8] = &[];
        let mut n = Normalizer {
            units: Vec::new(),
            replacements: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        };
        for field in Fields::new(spec) {
            match field.map_err(|e| format!("normalizer_spec: {e}"))? {
                (1, Value::Bytes(b)) => name = String::from_utf8_lossy(b).into_owned(),
                (2, Value::Bytes(b)) => charsmap = b,
                (3, Value::Varint(v)) => n.add_dummy_prefix = v != 0,
                (4, Value::Varint(v)) => n.remove_extra_whitespaces = v != 0,
                (5, Value::Varint(v)) => n.escape_whitespaces = v != 0,
                (6, Value::Bytes(b)) if !b.is_empty() => {
                    return Err("normalizer_spec has a custom rule table; not supported".into())
                }
                _ => {}
            }
        }
        if charsmap.is_empty() {
            if !name.is_empty() && name != "identity" {
                return Err(format!(
                    "normalizer {name:?} has no precompiled character map"
                ));
            }
            return Ok(n);
        }
        let size = charsmap
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("the precompiled character map is truncated")?;
        let trie = charsmap
            .get(4..)
            .and_then(|rest| rest.get(..size))
            .filter(|t| t.len() % 4 == 0 && !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "the precompiled character map's trie ({size} bytes) does not fit in its {} bytes",
                    charsmap.len()
                )
            })?;
        n.units = trie
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        n.replacements = charsmap[4 + size..].to_vec();
        Ok(n)
    }

    /// A double-array unit's child offset (darts-clone encoding).
    fn offset(unit: u32) -> usize {
        ((unit >> 10) << ((unit & 0x200) >> 6)) as usize
    }

    /// The longest character-map key at `data[pos..]`: its replacement and
    /// length in bytes; or, when none matches, the character itself.
    fn prefix<'a>(&'a self, data: &'a [u8], pos: usize) -> (&'a [u8], usize) {
        let mut best_len = 0;
        let mut best_value = 0usize;
        if let Some(&root) = self.units.first() {
            let mut node = Self::offset(root);
            let mut i = pos;
            while let Some(&c) = data.get(i) {
                node ^= usize::from(c);
                let Some(&unit) = self.units.get(node) else {
                    break;
                };
                if unit & 0x8000_00ff != u32::from(c) {
                    break;
                }
                node ^= Self::offset(unit);
                i += 1;
                if unit & 0x100 != 0 {
                    let Some(&value) = self.units.get(node) else {
                        break;
                    };
                    best_len = i - pos;
                    best_value = (value & 0x7fff_ffff) as usize;
                }
            }
        }
        if best_len == 0 || best_value >= self.replacements.len() {
            let len = utf8_len(data, pos);
            return (&data[pos..pos + len], len);
        }
        let rest = &self.replacements[best_value..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        (&rest[..end], best_len)
    }

    fn normalize(&self, text: &str) -> String {
        let raw = text.as_bytes();
        let n = raw.len();
        let mut pos = 0;
        let strip = self.remove_extra_whitespaces;
        if strip {
            while pos < n {
                let (p, adv) = self.prefix(raw, pos);
                if p != b" " {
                    break;
                }
                pos += adv;
            }
        }
        if pos >= n {
            return String::new();
        }
        let space: &[u8] = if self.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            b" "
        };
        let mut out: Vec<u8> = Vec::with_capacity(n + 8);
        if self.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        let mut is_prev_space = strip;
        while pos < n {
            let (mut p, adv) = self.prefix(raw, pos);
            pos += adv;
            if strip && is_prev_space {
                while let Some(rest) = p.strip_prefix(b" ") {
                    p = rest;
                }
            }
            if p.is_empty() {
                continue;
            }
            if p.contains(&b' ') {
                for &b in p {
                    if b == b' ' {
                        out.extend_from_slice(space);
                    } else {
                        out.push(b);
                    }
                }
                is_prev_space = p.last() == Some(&b' ');
            } else {
                out.extend_from_slice(p);
                is_prev_space = false;
            }
        }
        if strip {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        // Replacements come from the model file; a broken one must not
        // panic (a valid model only ever yields UTF-8 here).
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// Length of the UTF-8 character starting at `data[pos]` (1 for a byte
/// that does not start a valid one), as SentencePiece counts it.
fn utf8_len(data: &[u8], pos: usize) -> usize {
    let first = data[pos];
    let len = match first {
        0x00..=0x7f => 1,
        _ if first >> 5 == 0x6 => 2,
        _ if first >> 4 == 0xe => 3,
        _ if first >> 3 == 0x1e => 4,
        _ => 1,
    };
    let valid = (1..len).all(|k| data.get(pos + k).is_some_and(|b| b & 0xc0 == 0x80));
    if valid {
        len
    } else {
        1
    }
}

/// Builds tiny `sp.model` files for the tests.
#[cfg(test)]
pub mod testing {
    use crate::proto::write;

    /// A character map with single-byte keys (`byte -> replacement`), laid
    /// out as darts-clone does: root offset 256, key `c` at `256 ^ c`, its
    /// value at `512 + c`.
    pub fn charsmap(keys: &[(u8, &str)]) -> Vec<u8> {
        let mut units = vec![0u32; 768];
        units[0] = 256 << 10;
        let mut repl = Vec::new();
        for &(c, r) in keys {
            let at = 256 ^ usize::from(c);
            let leaf = 512 + usize::from(c);
            units[at] = u32::from(c) | 0x100 | (((at ^ leaf) as u32) << 10);
            units[leaf] = repl.len() as u32 | 0x8000_0000;
            repl.extend_from_slice(r.as_bytes());
            repl.push(0);
        }
        let mut out = ((units.len() * 4) as u32).to_le_bytes().to_vec();
        for u in units {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend(repl);
        out
    }

    /// A model with the reserved pieces, then `pieces` (text, score), and
    /// the given character map.
    pub fn model(pieces: &[(&str, f32)], charsmap: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        let reserved = [("<unk>", 2), ("<s>", 3), ("</s>", 3)];
        for (text, kind) in reserved {
            let mut p = Vec::new();
            write::bytes(&mut p, 1, text.as_bytes());
            write::float(&mut p, 2, 0.0);
            write::uint(&mut p, 3, kind);
            write::bytes(&mut m, 1, &p);
        }
        for (text, score) in pieces {
            let mut p = Vec::new();
            write::bytes(&mut p, 1, text.as_bytes());
            write::float(&mut p, 2, *score);
            write::bytes(&mut m, 1, &p);
        }
        let mut trainer = Vec::new();
        write::uint(&mut trainer, 3, 1);
        write::bytes(&mut m, 2, &trainer);
        let mut spec = Vec::new();
        write::bytes(&mut spec, 1, b"nmt_nfkc");
        write::bytes(&mut spec, 2, charsmap);
        write::uint(&mut spec, 3, 1);
        write::uint(&mut spec, 4, 1);
        write::bytes(&mut m, 3, &spec);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Tokenizer {
        let map = testing::charsmap(&[(b'\t', " "), (b'A', "a"), (b'Q', "")]);
        let pieces = [
            ("\u{2581}", -2.0),
            ("\u{2581}a", -1.0),
            ("a", -3.0),
            ("b", -3.0),
            ("ab", -2.5),
            ("\u{2581}ab", -2.0),
            ("ü", -4.0),
            ("ab", -2.6), // a duplicate: the later id wins
        ];
        Tokenizer::from_bytes(&testing::model(&pieces, &map)).unwrap()
    }

    /// The normaliser applies the character map, collapses and trims whitespace and adds the dummy prefix.
    #[test]
    fn normalizer_maps_characters_and_collapses_whitespace() {
        let t = tiny();
        assert_eq!(t.normalize("A b"), "\u{2581}a\u{2581}b");
        assert_eq!(t.normalize("  a \t  b\t "), "\u{2581}a\u{2581}b");
        assert_eq!(
            t.normalize("aQb"),
            "\u{2581}ab",
            "a key mapped to nothing vanishes"
        );
        assert_eq!(t.normalize(" \t "), "");
        assert_eq!(t.normalize(""), "");
        assert_eq!(
            t.normalize("ü€"),
            "\u{2581}ü€",
            "unmapped characters pass through whole"
        );
    }

    /// Viterbi picks the best-scoring pieces, makes each uncovered character its own unk, and wraps ids in bos/eos.
    #[test]
    fn viterbi_segments_by_score_with_unknowns_kept_apart() {
        let t = tiny();
        // ids: 3 ▁, 4 ▁a, 5 a, 6 b, 7 ab, 8 ▁ab, 9 ü, 10 ab (dup).
        assert_eq!(t.encode("ab"), vec![BOS_ID, 8, EOS_ID]);
        assert_eq!(t.encode("b ab"), vec![BOS_ID, 3, 6, 8, EOS_ID]);
        assert_eq!(t.encode("ba"), vec![BOS_ID, 3, 6, 5, EOS_ID]);
        // "▁a" + "ab" (-3.6) beats "▁a" + "a" + "b" (-7); "ab" is id 10, the later duplicate.
        assert_eq!(t.encode("aab"), vec![BOS_ID, 4, 10, EOS_ID]);
        assert_eq!(t.encode("xü"), vec![BOS_ID, 3, UNK_ID, 9, EOS_ID]);
        assert_eq!(t.encode("€€"), vec![BOS_ID, 3, UNK_ID, UNK_ID, EOS_ID]);
        assert_eq!(t.encode(""), vec![BOS_ID, UNK_ID, EOS_ID]);
        assert_eq!(t.encode("   "), vec![BOS_ID, UNK_ID, EOS_ID]);
        assert_eq!(t.vocab_size(), 11);
    }

    /// Broken or unsupported sp.model files are refused with what is wrong.
    #[test]
    fn bad_models_are_refused_with_the_reason() {
        let good = testing::model(&[("a", -1.0)], &testing::charsmap(&[]));
        let err = |bytes: &[u8]| Tokenizer::from_bytes(bytes).unwrap_err();
        assert!(err(&good[..good.len() - 5]).contains("past the end"));
        assert!(err(b"").contains("no pieces"));
        assert!(err(b"\x0b").contains("wire type 3"));

        let mut no_unk = Vec::new();
        crate::proto::write::bytes(&mut no_unk, 1, b"\x0a\x01a");
        assert!(err(&no_unk).contains("<unk>"), "{}", err(&no_unk));

        let mut bpe = good.clone();
        let mut trainer = Vec::new();
        crate::proto::write::uint(&mut trainer, 3, 2);
        crate::proto::write::bytes(&mut bpe, 2, &trainer);
        assert!(err(&bpe).contains("not unigram"));

        let mut short_map = good.clone();
        let mut spec = Vec::new();
        crate::proto::write::bytes(&mut spec, 2, &[200, 0, 0, 0, 1, 2]);
        crate::proto::write::bytes(&mut short_map, 3, &spec);
        assert!(
            err(&short_map).contains("does not fit"),
            "{}",
            err(&short_map)
        );

        let mut no_map = good.clone();
        let mut spec = Vec::new();
        crate::proto::write::bytes(&mut spec, 1, b"nmt_nfkc");
        crate::proto::write::bytes(&mut no_map, 3, &spec);
        assert!(err(&no_map).contains("no precompiled character map"));
    }
}
