//! CBOR sequences (RFC 8742): encoded items back to back, with no framing.
//! This is the format of `hearth log export`: one encoded event after
//! another, in `(lamport, hash)` order.

use hearth_proto::cbor::{item_len, CborError};

/// One item of a sequence.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Position in the sequence, from 1 (as people count events).
    pub index: usize,
    /// Byte offset in the input.
    pub offset: usize,
    pub bytes: &'a [u8],
}

/// Where splitting stopped: an item whose end cannot be found (truncated or
/// malformed headers), so nothing after it can be read either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub index: usize,
    pub offset: usize,
    pub error: CborError,
}

/// Splits `bytes` into items. Each item is only delimited here, not
/// checked: a non-canonical or invalid item is still returned, so the caller
/// can name it and go on with the next.
pub fn split(bytes: &[u8]) -> (Vec<Item<'_>>, Option<Broken>) {
    let mut items = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let index = items.len() + 1;
        match item_len(&bytes[offset..]) {
            Ok(len) => {
                items.push(Item {
                    index,
                    offset,
                    bytes: &bytes[offset..offset + len],
                });
                offset += len;
            }
            Err(error) => {
                return (
                    items,
                    Some(Broken {
                        index,
                        offset,
                        error,
                    }),
                )
            }
        }
    }
    (items, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items are cut at their ends; an item whose end is past the input stops the split.
    #[test]
    fn splits_items_and_stops_at_a_truncated_one() {
        // 1, "a", [2, 3], then a byte string claiming 5 bytes with 1 left.
        let bytes = [0x01, 0x61, b'a', 0x82, 0x02, 0x03, 0x45, 0x00];
        let (items, broken) = split(&bytes);
        let spans: Vec<_> = items
            .iter()
            .map(|i| (i.index, i.offset, i.bytes.len()))
            .collect();
        assert_eq!(spans, vec![(1, 0, 1), (2, 1, 2), (3, 3, 3)]);
        assert_eq!(
            broken,
            Some(Broken {
                index: 4,
                offset: 6,
                error: CborError::LengthOverflow { offset: 0 }
            })
        );
    }

    /// No bytes is a sequence of no items, not an error.
    #[test]
    fn empty_input_is_an_empty_sequence() {
        let (items, broken) = split(&[]);
        assert!(items.is_empty() && broken.is_none());
    }
}
