//! Canonical CBOR (RFC 8949 §4.2.1) for the subset events use.
//!
//! Encoding goes through `ciborium-ll`, which always writes the shortest
//! header. Decoding is our own strict reader over a byte slice: the canonical
//! rules are about the *raw* header width, which `ciborium-ll`'s `Header`
//! throws away, and we want every non-canonical form named in the error.
//!
//! Accepted data model: unsigned and negative integers, byte strings, text,
//! arrays, maps and the booleans. Floats, null/undefined, other simple
//! values, tags and indefinite lengths are rejected: an event has exactly one
//! encoding and so exactly one hash.

use std::borrow::Cow;
use std::cmp::Ordering;

use ciborium_ll::{Encoder, Header};

/// Nesting bound for decoding: events are shallow (envelope -> data ->
/// location), 16 leaves room for unknown types without letting a hostile
/// input exhaust the stack.
pub const DEPTH_MAX: usize = 16;

/// A CBOR item of the accepted subset. Maps keep their entries in canonical
/// order (by the encoded bytes of the keys) once decoded or encoded.
///
/// Strings and byte strings borrow from the input when decoded ([`decode`]
/// returns a `Value<'_>` tied to the bytes): an event's envelope and data
/// are read without one allocation per field, and only what the typed
/// payload keeps is copied. That made decoding the largest part of a
/// replay (issue 15 item 2). [`Value::into_owned`] detaches a value that
/// must outlive its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Uint(u64),
    /// A negative integer `-1 - n`, stored as `n` (CBOR major type 1).
    Nint(u64),
    Bytes(Cow<'a, [u8]>),
    Text(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Bool(bool),
}

/// Why bytes are not canonical CBOR of the accepted subset. Offsets are byte
/// positions in the input, so a report points at the offending item.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("input ends early at byte {offset}")]
    Truncated { offset: usize },
    #[error("integer or length at byte {offset} is not in its shortest form")]
    NonShortest { offset: usize },
    #[error("indefinite-length item at byte {offset}")]
    Indefinite { offset: usize },
    #[error("map keys out of canonical order at byte {offset}")]
    UnsortedKeys { offset: usize },
    #[error("duplicate map key at byte {offset}")]
    DuplicateKey { offset: usize },
    #[error("floating-point value at byte {offset} (coordinates are integer microdegrees)")]
    Float { offset: usize },
    #[error("null or undefined at byte {offset} (absent fields are left out)")]
    Null { offset: usize },
    #[error("unsupported simple value {value} at byte {offset}")]
    Simple { value: u8, offset: usize },
    #[error("tag at byte {offset}")]
    Tag { offset: usize },
    #[error("reserved additional-information value at byte {offset}")]
    Reserved { offset: usize },
    #[error("text at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("{count} trailing bytes after the item")]
    TrailingBytes { count: usize },
    #[error("nesting deeper than {DEPTH_MAX} at byte {offset}")]
    TooDeep { offset: usize },
    #[error("length at byte {offset} exceeds the input")]
    LengthOverflow { offset: usize },
}

impl<'a> Value<'a> {
    pub fn text(s: impl Into<Cow<'a, str>>) -> Value<'a> {
        Value::Text(s.into())
    }

    pub fn bytes(b: impl Into<Cow<'a, [u8]>>) -> Value<'a> {
        Value::Bytes(b.into())
    }

    /// Builds a map from entries in any order; encoding sorts them.
    pub fn map<K: Into<Cow<'a, str>>>(
        entries: impl IntoIterator<Item = (K, Value<'a>)>,
    ) -> Value<'a> {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect(),
        )
    }

    /// This value with every borrowed string copied, so it outlives its input.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Uint(n) => Value::Uint(n),
            Value::Nint(n) => Value::Nint(n),
            Value::Bool(b) => Value::Bool(b),
            Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
            Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
            Value::Array(items) => Value::Array(items.into_iter().map(Value::into_owned).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// A copy of this value that borrows its strings from `self`.
    pub fn borrowed(&self) -> Value<'_> {
        match self {
            Value::Uint(n) => Value::Uint(*n),
            Value::Nint(n) => Value::Nint(*n),
            Value::Bool(b) => Value::Bool(*b),
            Value::Bytes(b) => Value::Bytes(Cow::Borrowed(b)),
            Value::Text(t) => Value::Text(Cow::Borrowed(t)),
            Value::Array(items) => Value::Array(items.iter().map(Value::borrowed).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.borrowed(), v.borrowed()))
                    .collect(),
            ),
        }
    }

    /// The value for text key `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries.iter().find_map(|(k, v)| match k {
                Value::Text(t) if t == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// Human name of the item's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Uint(_) => "unsigned integer",
            Value::Nint(_) => "negative integer",
            Value::Bytes(_) => "byte string",
            Value::Text(_) => "text",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Bool(_) => "boolean",
        }
    }

    /// Canonical encoding of this value.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        encode_into(self, &mut out);
        out
    }
}

/// Appends the canonical encoding of `value` to `out`. Map entries are
/// written sorted by their encoded keys whatever order they are held in.
pub fn encode_into(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Uint(n) => push_header(out, Header::Positive(*n)),
        Value::Nint(n) => push_header(out, Header::Negative(*n)),
        Value::Bool(b) => push_header(out, Header::Simple(if *b { 21 } else { 20 })),
        Value::Bytes(b) => {
            push_header(out, Header::Bytes(Some(b.len())));
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            push_header(out, Header::Text(Some(t.len())));
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            push_header(out, Header::Array(Some(items.len())));
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Map(entries) => {
            push_header(out, Header::Map(Some(entries.len())));
            let mut encoded: Vec<(Vec<u8>, &Value<'_>)> =
                entries.iter().map(|(k, v)| (k.to_bytes(), v)).collect();
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, v) in encoded {
                out.extend_from_slice(&key);
                encode_into(v, out);
            }
        }
    }
}

fn push_header(out: &mut Vec<u8>, header: Header) {
    // Writing into a Vec cannot fail: its `Write` impl is infallible.
    let result = Encoder::from(&mut *out).push(header);
    debug_assert!(result.is_ok());
}

/// Decodes exactly one canonical item spanning all of `bytes`; its strings
/// borrow from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value<'_>, CborError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.item(0)?;
    if reader.pos != bytes.len() {
        return Err(CborError::TrailingBytes {
            count: bytes.len() - reader.pos,
        });
    }
    Ok(value)
}

/// Length of the first item in `bytes`, found by walking headers only.
///
/// This splits a CBOR sequence (RFC 8742, `hearth log export`) into items.
/// It checks well-formedness, not the canonical rules, on purpose: an item
/// that is non-canonical (or otherwise invalid) still has a clear end, so it
/// can be reported and skipped while the items after it are read. Indefinite
/// lengths are refused (no event has them, and the walk stays a loop over a
/// counter instead of a recursion); reserved header values too.
pub fn item_len(bytes: &[u8]) -> Result<usize, CborError> {
    let mut pos = 0usize;
    // Items still to read. Each takes at least one byte, so more than the
    // bytes left cannot be honest: checked below, which also bounds the count.
    let mut items_left: u64 = 1;
    while items_left > 0 {
        let offset = pos;
        let initial = *bytes.get(pos).ok_or(CborError::Truncated { offset })?;
        let info = initial & 0x1f;
        let width = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            28..=30 => return Err(CborError::Reserved { offset }),
            _ => return Err(CborError::Indefinite { offset }),
        };
        let arg = if width == 0 {
            u64::from(info)
        } else {
            let raw = bytes
                .get(pos + 1..pos + 1 + width)
                .ok_or(CborError::Truncated { offset: pos + 1 })?;
            raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        pos += 1 + width;
        items_left -= 1;
        push_children(initial >> 5, arg, &mut items_left, &mut pos, bytes, offset)?;
    }
    Ok(pos)
}

/// Accounts for what follows a header with argument `arg`: string bytes are
/// skipped, array elements, map entries and a tagged item are counted.
fn push_children(
    major: u8,
    arg: u64,
    items_left: &mut u64,
    pos: &mut usize,
    bytes: &[u8],
    offset: usize,
) -> Result<(), CborError> {
    let left = (bytes.len() - *pos) as u64;
    let children = match major {
        2 | 3 => {
            if arg > left {
                return Err(CborError::LengthOverflow { offset });
            }
            *pos += arg as usize;
            return Ok(());
        }
        4 => arg,
        5 => arg
            .checked_mul(2)
            .ok_or(CborError::LengthOverflow { offset })?,
        6 => 1,
        _ => 0,
    };
    *items_left = items_left
        .checked_add(children)
        .filter(|n| *n <= left)
        .ok_or(CborError::LengthOverflow { offset })?;
    Ok(())
}

/// One entry of a top-level map, with the byte span that its key and value
/// occupy in the input.
pub type SpannedEntry<'a> = (Value<'a>, Value<'a>, std::ops::Range<usize>);

/// Decodes a top-level item that must be a map, returning each entry with its
/// byte span, or `Ok(None)` when the (canonical) item is not a map. The event
/// layer uses the spans to rebuild the signing input without re-encoding.
pub fn decode_map_spans(bytes: &[u8]) -> Result<Option<Vec<SpannedEntry<'_>>>, CborError> {
    let mut reader = Reader { bytes, pos: 0 };
    let (major, len) = reader.head()?;
    if major != 5 {
        decode(bytes)?;
        return Ok(None);
    }
    let n = reader.len_of(len, 0)?;
    let mut out = Vec::with_capacity(n);
    let mut prev_key: Option<(usize, usize)> = None;
    for _ in 0..n {
        let key_start = reader.pos;
        let key = reader.item(1)?;
        let key_end = reader.pos;
        check_key_order(bytes, prev_key, (key_start, key_end))?;
        prev_key = Some((key_start, key_end));
        let value = reader.item(1)?;
        out.push((key, value, key_start..reader.pos));
    }
    if reader.pos != bytes.len() {
        return Err(CborError::TrailingBytes {
            count: bytes.len() - reader.pos,
        });
    }
    Ok(Some(out))
}

fn check_key_order(
    bytes: &[u8],
    prev: Option<(usize, usize)>,
    this: (usize, usize),
) -> Result<(), CborError> {
    if let Some((ps, pe)) = prev {
        match bytes[ps..pe].cmp(&bytes[this.0..this.1]) {
            Ordering::Less => {}
            Ordering::Equal => return Err(CborError::DuplicateKey { offset: this.0 }),
            Ordering::Greater => return Err(CborError::UnsortedKeys { offset: this.0 }),
        }
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Raw argument of a header: `None` for indefinite length (additional info 31).
type Arg = Option<u64>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(CborError::Truncated { offset: self.pos })?;
        let bytes: &'a [u8] = self.bytes;
        let slice = &bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Reads a header: (major type, argument), checking the shortest form.
    fn head(&mut self) -> Result<(u8, Arg), CborError> {
        let offset = self.pos;
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24 => {
                let v = u64::from(self.take(1)?[0]);
                // Simple values 24..=31 in the one-byte form are not
                // well-formed; other majors must use the immediate form below 24.
                if v < 24 {
                    return Err(CborError::NonShortest { offset });
                }
                Some(v)
            }
            25 => {
                let b = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if major != 7 && v <= 0xff {
                    return Err(CborError::NonShortest { offset });
                }
                Some(v)
            }
            26 => {
                let b = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if major != 7 && v <= 0xffff {
                    return Err(CborError::NonShortest { offset });
                }
                Some(v)
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let v = u64::from_be_bytes(a);
                if major != 7 && v <= 0xffff_ffff {
                    return Err(CborError::NonShortest { offset });
                }
                Some(v)
            }
            28..=30 => return Err(CborError::Reserved { offset }),
            _ => None,
        };
        if major == 7 && matches!(info, 25..=27) {
            return Err(CborError::Float { offset });
        }
        Ok((major, arg))
    }

    fn len_of(&self, arg: Arg, offset: usize) -> Result<usize, CborError> {
        let n = arg.ok_or(CborError::Indefinite { offset })?;
        // Every element takes at least one byte, so a length larger than
        // what is left cannot be honest; refusing it bounds allocation.
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(CborError::LengthOverflow { offset });
        }
        Ok(n as usize)
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        let offset = self.pos;
        if depth > DEPTH_MAX {
            return Err(CborError::TooDeep { offset });
        }
        let (major, arg) = self.head()?;
        match major {
            0 => Ok(Value::Uint(arg.ok_or(CborError::Indefinite { offset })?)),
            1 => Ok(Value::Nint(arg.ok_or(CborError::Indefinite { offset })?)),
            2 => {
                let n = self.len_of(arg, offset)?;
                Ok(Value::Bytes(Cow::Borrowed(self.take(n)?)))
            }
            3 => {
                let n = self.len_of(arg, offset)?;
                let raw = self.take(n)?;
                let text =
                    std::str::from_utf8(raw).map_err(|_| CborError::InvalidUtf8 { offset })?;
                Ok(Value::Text(Cow::Borrowed(text)))
            }
            4 => {
                let n = self.len_of(arg, offset)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                let n = self.len_of(arg, offset)?;
                let mut entries = Vec::with_capacity(n);
                let mut prev: Option<(usize, usize)> = None;
                for _ in 0..n {
                    let ks = self.pos;
                    let key = self.item(depth + 1)?;
                    let ke = self.pos;
                    check_key_order(self.bytes, prev, (ks, ke))?;
                    prev = Some((ks, ke));
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Ok(Value::Map(entries))
            }
            6 => Err(CborError::Tag { offset }),
            _ => match arg {
                Some(20) => Ok(Value::Bool(false)),
                Some(21) => Ok(Value::Bool(true)),
                Some(22) | Some(23) => Err(CborError::Null { offset }),
                None => Err(CborError::Indefinite { offset }),
                Some(v) => Err(CborError::Simple {
                    value: v as u8,
                    offset,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }

    #[test]
    fn shortest_forms_round_trip() {
        for n in [
            0u64,
            23,
            24,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let v = Value::Uint(n);
            assert_eq!(decode(&v.to_bytes()), Ok(v));
        }
    }

    #[test]
    fn non_shortest_integer_is_rejected() {
        assert_eq!(
            decode(&hex("1817")),
            Err(CborError::NonShortest { offset: 0 })
        );
        assert_eq!(
            decode(&hex("190017")),
            Err(CborError::NonShortest { offset: 0 })
        );
        assert_eq!(
            decode(&hex("1a000000ff")),
            Err(CborError::NonShortest { offset: 0 })
        );
        assert_eq!(
            decode(&hex("1b00000000ffffffff")),
            Err(CborError::NonShortest { offset: 0 })
        );
    }

    #[test]
    fn non_shortest_length_is_rejected() {
        assert_eq!(
            decode(&hex("580161")),
            Err(CborError::NonShortest { offset: 0 })
        );
    }

    #[test]
    fn indefinite_lengths_are_rejected() {
        assert_eq!(
            decode(&hex("5f41ff")),
            Err(CborError::Indefinite { offset: 0 })
        );
        assert_eq!(
            decode(&hex("9fff")),
            Err(CborError::Indefinite { offset: 0 })
        );
        assert_eq!(
            decode(&hex("bfff")),
            Err(CborError::Indefinite { offset: 0 })
        );
    }

    #[test]
    fn floats_nulls_tags_are_rejected() {
        assert_eq!(decode(&hex("f93c00")), Err(CborError::Float { offset: 0 }));
        assert_eq!(
            decode(&hex("fb3ff0000000000000")),
            Err(CborError::Float { offset: 0 })
        );
        assert_eq!(decode(&hex("f6")), Err(CborError::Null { offset: 0 }));
        assert_eq!(decode(&hex("f7")), Err(CborError::Null { offset: 0 }));
        assert_eq!(decode(&hex("c001")), Err(CborError::Tag { offset: 0 }));
        assert_eq!(
            decode(&hex("f0")),
            Err(CborError::Simple {
                value: 16,
                offset: 0
            })
        );
    }

    #[test]
    fn map_key_order_and_duplicates() {
        // {"b":1,"a":2}
        assert_eq!(
            decode(&hex("a2616201616102")),
            Err(CborError::UnsortedKeys { offset: 4 })
        );
        // {"a":1,"a":2}
        assert_eq!(
            decode(&hex("a2616101616102")),
            Err(CborError::DuplicateKey { offset: 4 })
        );
        // shorter key first: {"b":1,"aa":2} is canonical
        assert!(decode(&hex("a261620162616102")).is_ok());
    }

    #[test]
    fn encoder_sorts_keys_by_encoded_bytes() {
        let v = Value::map([("aa", Value::Uint(2)), ("b", Value::Uint(1))]);
        assert_eq!(v.to_bytes(), hex("a261620162616102"));
    }

    #[test]
    fn trailing_truncated_and_utf8() {
        assert_eq!(
            decode(&hex("0000")),
            Err(CborError::TrailingBytes { count: 1 })
        );
        assert_eq!(
            decode(&hex("62ff")),
            Err(CborError::LengthOverflow { offset: 0 })
        );
        assert_eq!(decode(&hex("19")), Err(CborError::Truncated { offset: 1 }));
        assert_eq!(
            decode(&hex("61ff")),
            Err(CborError::InvalidUtf8 { offset: 0 })
        );
        assert_eq!(decode(&hex("1c")), Err(CborError::Reserved { offset: 0 }));
    }

    /// The first item of a sequence ends where the next begins.
    #[test]
    fn item_len_splits_a_sequence() {
        // {"a":[1,h'ff']} then 7
        let seq = hex("a16161820141ff07");
        assert_eq!(item_len(&seq), Ok(seq.len() - 1));
        assert_eq!(item_len(&seq[seq.len() - 1..]), Ok(1));
    }

    /// Well-formed but non-canonical items still have their ends found.
    #[test]
    fn item_len_walks_non_canonical_items() {
        // Non-shortest int, a tag, a float, unsorted keys: well-formed, so
        // their ends are found even though `decode` refuses them.
        assert_eq!(item_len(&hex("181700")), Ok(2));
        assert_eq!(item_len(&hex("c00100")), Ok(2));
        assert_eq!(item_len(&hex("f93c0000")), Ok(3));
        assert_eq!(item_len(&hex("a261620161610200")), Ok(7));
    }

    /// Truncated, indefinite, reserved and over-long items are errors, never a wrong length.
    #[test]
    fn item_len_refuses_what_has_no_clear_end() {
        assert_eq!(item_len(&[]), Err(CborError::Truncated { offset: 0 }));
        assert_eq!(
            item_len(&hex("19ff")),
            Err(CborError::Truncated { offset: 1 })
        );
        assert_eq!(
            item_len(&hex("9f01ff")),
            Err(CborError::Indefinite { offset: 0 })
        );
        assert_eq!(item_len(&hex("1c")), Err(CborError::Reserved { offset: 0 }));
        assert_eq!(
            item_len(&hex("5bffffffffffffffff00")),
            Err(CborError::LengthOverflow { offset: 0 })
        );
        assert_eq!(
            item_len(&hex("9bffffffffffffffff00")),
            Err(CborError::LengthOverflow { offset: 0 })
        );
        assert_eq!(
            item_len(&hex("8201")),
            Err(CborError::LengthOverflow { offset: 0 })
        );
    }

    /// Decoded strings and byte strings point into the input (no copy per
    /// field), and `into_owned` detaches an equal value that outlives it.
    #[test]
    fn decoding_borrows_and_into_owned_detaches() {
        // {"a": h'0102', "b": ["xy"]}
        let bytes = hex("a26161420102616281627879");
        let value = decode(&bytes).expect("canonical");
        let Value::Map(entries) = &value else {
            panic!("not a map: {value:?}");
        };
        let range = bytes.as_ptr_range();
        let inside = |p: *const u8| range.contains(&p);
        match &entries[0].1 {
            Value::Bytes(Cow::Borrowed(b)) => assert!(inside(b.as_ptr())),
            other => panic!("bytes were copied: {other:?}"),
        }
        match &entries[1].1 {
            Value::Array(items) => match &items[0] {
                Value::Text(Cow::Borrowed(t)) => assert!(inside(t.as_ptr())),
                other => panic!("text was copied: {other:?}"),
            },
            other => panic!("not an array: {other:?}"),
        }
        let owned: Value<'static> = value.clone().into_owned();
        drop(bytes);
        assert_eq!(owned.to_bytes(), hex("a26161420102616281627879"));
        assert_eq!(owned.borrowed().to_bytes(), owned.to_bytes());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut bytes = vec![0x81u8; DEPTH_MAX + 2];
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(CborError::TooDeep { .. })));
    }
}
