//! CBOR sequences (RFC 8742): encoded items back to back, with no framing.
//! This is the format of `hearth log export`: one encoded event after
//! another, in `(lamport, hash)` order.
//!
//! [`SeqReader`] reads a sequence from any `Read` with a bounded buffer
//! (import never holds the whole file), and resynchronises after garbage:
//! bytes that cannot start an event are skipped, as one run, up to the next
//! `0xa9` that starts a delimitable item. Where an item may start (the
//! input's start, right after an item) any map is read as one, so a
//! near-event is named with its defect. [`split`] cuts a whole in-memory sequence (tests, small
//! inputs).

use std::io::{self, Read};

use hearth_proto::cbor::{item_len, CborError};
use hearth_proto::EVENT_BYTES_MAX;

/// The first byte of every event: a CBOR map of 9 entries (major type 5,
/// count 9). Anything else cannot start an event, so resynchronising after
/// garbage only stops at this byte.
pub const EVENT_FIRST_BYTE: u8 = 0xa9;

/// First bytes of a definite-length CBOR map (major type 5, counts 0 to
/// 2^64 - 1): an item that starts with one right after an event is read as
/// an item, so it is decoded and its defect named instead of skipped.
const MAP_FIRST_BYTES: std::ops::RangeInclusive<u8> = 0xa0..=0xbb;

/// Bytes asked of the source per read: large enough that a read is cheap,
/// small enough that the buffer stays a fixed, small size.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The most the reader ever buffers: one read chunk past one largest event
/// (an item is only delimited once it is whole). This bounds import's
/// memory whatever the input.
pub const BUFFER_BYTES_MAX: usize = READ_CHUNK_BYTES + EVENT_BYTES_MAX;

/// What the reader found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// A delimited item that starts like an event (not yet decoded or
    /// verified: that is the caller's job, which names what is wrong).
    Item {
        /// Position in the input, from 1, counting items and skipped runs.
        index: usize,
        /// Byte offset in the input.
        offset: u64,
        bytes: Vec<u8>,
    },
    /// A run of bytes none of which starts an event that fits, skipped.
    Skipped { index: usize, offset: u64, len: u64 },
}

/// A streaming reader of a CBOR sequence of events, with a bounded buffer
/// ([`BUFFER_BYTES_MAX`]).
#[derive(Debug)]
pub struct SeqReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
    /// Input offset of `buf[start]`.
    offset: u64,
    eof: bool,
    index: usize,
}

impl<R: Read> SeqReader<R> {
    pub fn new(src: R) -> SeqReader<R> {
        SeqReader {
            src,
            buf: Vec::with_capacity(BUFFER_BYTES_MAX),
            start: 0,
            offset: 0,
            eof: false,
            index: 0,
        }
    }

    /// Bytes read so far and not consumed.
    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Buffers until at least `want` bytes (at most `EVENT_BYTES_MAX`) are
    /// available or the input ends.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.available().len() < want && !self.eof {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK_BYTES, 0);
            let n = loop {
                match self.src.read(&mut self.buf[len..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(len);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(len + n);
            self.eof = n == 0;
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The length of the event-like item at the start of the buffer, if
    /// one starts there and ends within `EVENT_BYTES_MAX` bytes. Any
    /// definite-length map counts (not only `0xa9`), so a map with a field
    /// too many or too few is decoded and its reason named; resynchronising
    /// after garbage only stops at `0xa9`.
    fn item_here(&mut self) -> io::Result<Option<usize>> {
        if !self
            .available()
            .first()
            .is_some_and(|b| MAP_FIRST_BYTES.contains(b))
        {
            return Ok(None);
        }
        self.fill(EVENT_BYTES_MAX)?;
        let avail = self.available();
        let window = &avail[..avail.len().min(EVENT_BYTES_MAX)];
        Ok(item_len(window).ok())
    }

    /// The next item or skipped run; `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        self.fill(1)?;
        if self.available().is_empty() {
            return Ok(None);
        }
        self.index += 1;
        let index = self.index;
        let offset = self.offset;
        if let Some(len) = self.item_here()? {
            let bytes = self.available()[..len].to_vec();
            self.consume(len);
            return Ok(Some(Chunk::Item {
                index,
                offset,
                bytes,
            }));
        }
        // Garbage: skip this byte, then every byte up to the next one that
        // starts an item that fits. Scanning is a byte search, so even a
        // file of zeros goes at memory speed.
        self.consume(1);
        loop {
            self.fill(1)?;
            let avail = self.available();
            if avail.is_empty() {
                break;
            }
            match avail.iter().position(|b| *b == EVENT_FIRST_BYTE) {
                None => {
                    let n = avail.len();
                    self.consume(n);
                }
                Some(at) => {
                    self.consume(at);
                    if self.item_here()?.is_some() {
                        break;
                    }
                    self.consume(1);
                }
            }
        }
        Ok(Some(Chunk::Skipped {
            index,
            offset,
            len: self.offset - offset,
        }))
    }
}

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

    fn chunks(bytes: &[u8]) -> Vec<Chunk> {
        let mut r = SeqReader::new(bytes);
        let mut out = Vec::new();
        while let Some(c) = r.next_chunk().unwrap() {
            out.push(c);
        }
        out
    }

    /// A 9-entry map of small items, as an event starts.
    fn fake_event() -> Vec<u8> {
        let mut e = vec![EVENT_FIRST_BYTE];
        for k in 0..9u8 {
            e.extend_from_slice(&[0x61, b'a' + k, 0x01]);
        }
        e
    }

    /// Garbage before, between and after events is skipped as one run each,
    /// and the events around it are still read whole.
    #[test]
    fn reader_skips_garbage_runs_and_keeps_the_events() {
        let ev = fake_event();
        let mut input = vec![0u8; 1000];
        input.extend_from_slice(&ev);
        input.extend_from_slice(&[0xa9, 0xff, 0x00]); // an 0xa9 that starts nothing
        input.extend_from_slice(&ev);
        input.extend_from_slice(&[7; 5]);
        let got = chunks(&input);
        assert_eq!(
            got,
            vec![
                Chunk::Skipped {
                    index: 1,
                    offset: 0,
                    len: 1000
                },
                Chunk::Item {
                    index: 2,
                    offset: 1000,
                    bytes: ev.clone()
                },
                Chunk::Skipped {
                    index: 3,
                    offset: 1000 + ev.len() as u64,
                    len: 3
                },
                Chunk::Item {
                    index: 4,
                    offset: 1003 + ev.len() as u64,
                    bytes: ev.clone()
                },
                Chunk::Skipped {
                    index: 5,
                    offset: 1003 + 2 * ev.len() as u64,
                    len: 5
                },
            ]
        );
    }

    /// A map of another size right after an event is an item (decoded and
    /// named by the caller), not the start of a skipped run.
    #[test]
    fn reader_keeps_a_map_of_another_size_after_an_event() {
        let ev = fake_event();
        let mut ten = ev.clone();
        ten[0] = 0xaa;
        ten.extend_from_slice(&[0x61, b'z', 0x00]);
        let input = [&ev[..], &ten[..]].concat();
        let got = chunks(&input);
        assert_eq!(
            got,
            vec![
                Chunk::Item {
                    index: 1,
                    offset: 0,
                    bytes: ev.clone()
                },
                Chunk::Item {
                    index: 2,
                    offset: ev.len() as u64,
                    bytes: ten
                },
            ]
        );
    }

    /// Megabytes of zeros are one skipped run, read through a buffer that
    /// never grows past its bound.
    #[test]
    fn reader_buffer_stays_bounded_on_a_large_garbage_input() {
        let input = vec![0u8; 3 * 1024 * 1024];
        let mut r = SeqReader::new(&input[..]);
        let first = r.next_chunk().unwrap();
        assert_eq!(
            first,
            Some(Chunk::Skipped {
                index: 1,
                offset: 0,
                len: input.len() as u64
            })
        );
        assert!(
            r.buf.capacity() <= 2 * BUFFER_BYTES_MAX,
            "{}",
            r.buf.capacity()
        );
        assert_eq!(r.next_chunk().unwrap(), None);
    }

    /// An item that starts like an event but is longer than any event can
    /// be is skipped, and the event after it is found.
    #[test]
    fn reader_skips_an_oversized_item() {
        let mut input = vec![EVENT_FIRST_BYTE, 0x61, b'a', 0x5a, 0x00, 0x01, 0x00, 0x00];
        input.resize(70_000, 0x20);
        let ev = fake_event();
        input.extend_from_slice(&ev);
        let got = chunks(&input);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got[0], Chunk::Skipped { len: 70_000, .. }));
        assert!(matches!(&got[1], Chunk::Item { bytes, .. } if *bytes == ev));
    }

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
