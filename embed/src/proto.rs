//! The few protobuf wire-format reads that `sp.model` needs: a field
//! iterator over one message's bytes. No schema, no allocation; truncated
//! or malformed input is an error, never a panic.

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over `(field number, value)` of one message.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| format!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint too long at byte {}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| format!("field of {n} bytes runs past the end at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| "field number too large".to_string())?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported wire type {w} at byte {}", self.pos)),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

/// Encoders for the tests' tiny models.
#[cfg(test)]
pub mod write {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(out, u64::from(field) << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        varint(out, u64::from(field) << 3);
        varint(out, v);
    }

    pub fn float(out: &mut Vec<u8>, field: u32, v: f32) {
        varint(out, u64::from(field) << 3 | 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every wire type the model uses decodes, and truncation is reported instead of panicking.
    #[test]
    fn fields_decode_and_truncation_is_an_error() {
        let mut m = Vec::new();
        write::uint(&mut m, 3, 300);
        write::bytes(&mut m, 1, b"hi");
        write::float(&mut m, 2, -1.5);
        write::uint(&mut m, 40, 7);
        let got: Vec<_> = Fields::new(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![
                (3, Value::Varint(300)),
                (1, Value::Bytes(b"hi")),
                (2, Value::Fixed32((-1.5f32).to_bits())),
                (40, Value::Varint(7)),
            ]
        );
        for cut in 1..m.len() {
            let r: Result<Vec<_>, _> = Fields::new(&m[..cut]).collect();
            if let Err(e) = r {
                assert!(e.contains("truncated") || e.contains("past the end"), "{e}");
            } else {
                // Cuts on a field boundary are valid shorter messages.
                assert!([3, 7, 12].contains(&cut), "cut {cut} parsed");
            }
        }
        let bad = [0x0bu8, 0]; // wire type 3 (groups) is not used by sp.model
        let e = Fields::new(&bad).next().unwrap().unwrap_err();
        assert!(e.contains("wire type 3"), "{e}");
    }
}
