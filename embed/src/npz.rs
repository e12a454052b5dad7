//! Reads NumPy `.npz` archives: a zip of `.npy` files (stored or deflated),
//! each one array with a small text header. Only what the model uses:
//! little-endian `f4`, `f8`, `u1`, `i1`, C order, any rank (a scalar is
//! rank 0). Everything a bad file can get wrong is an [`NpzError`], never a
//! panic, and no entry is inflated past [`ENTRY_BYTES_MAX`].

use std::collections::BTreeMap;
use std::io::{Read, Seek};

/// The largest array an entry may hold (bytes after inflation). The model's
/// largest is 3.9 MB; a header that claims more is a corrupt or hostile
/// file, refused before anything is allocated for it.
pub const ENTRY_BYTES_MAX: u64 = 256 << 20;

/// The largest `.npy` header read (the format's own v1 limit is 64 KiB).
const HEADER_BYTES_MAX: usize = 64 << 10;

/// What is wrong with an archive or one of its arrays.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("not a zip archive ({0})")]
    NotZip(String),
    #[error("entry {name}.npy is missing")]
    Missing { name: String },
    #[error("entry {name}.npy cannot be read: {problem}")]
    Entry { name: String, problem: String },
}

/// An array's element type and values.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    I8(Vec<i8>),
}

impl Data {
    /// The numpy `descr` of this type (for error messages).
    pub fn descr(&self) -> &'static str {
        match self {
            Data::F32(_) => "<f4",
            Data::F64(_) => "<f8",
            Data::U8(_) => "|u1",
            Data::I8(_) => "|i1",
        }
    }
}

/// One array: its shape (empty for a scalar) and values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// An open archive; arrays are read one at a time so that only one is
/// inflated at once.
#[derive(Debug)]
pub struct Npz<R> {
    zip: zip::ZipArchive<R>,
}

impl<R: Read + Seek> Npz<R> {
    /// Reads the archive's directory from `reader`.
    pub fn new(reader: R) -> Result<Self, NpzError> {
        let zip = zip::ZipArchive::new(reader).map_err(|e| NpzError::NotZip(e.to_string()))?;
        Ok(Npz { zip })
    }

    /// The array names (entry names without `.npy`), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .zip
            .file_names()
            .filter_map(|n| n.strip_suffix(".npy"))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// Whether the archive holds an array called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.zip.index_for_name(&format!("{name}.npy")).is_some()
    }

    /// Reads and parses the array `name`.
    pub fn array(&mut self, name: &str) -> Result<Array, NpzError> {
        let entry = format!("{name}.npy");
        let file = match self.zip.by_name(&entry) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(NpzError::Missing { name: name.into() })
            }
            Err(e) => {
                return Err(NpzError::Entry {
                    name: name.into(),
                    problem: e.to_string(),
                })
            }
        };
        read_npy(file).map_err(|problem| NpzError::Entry {
            name: name.into(),
            problem,
        })
    }
}

/// Parses one `.npy` stream.
pub fn read_npy(mut r: impl Read) -> Result<Array, String> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|e| format!("truncated header ({e})"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let header_len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|e| format!("truncated header ({e})"))?;
            usize::from(u16::from_le_bytes(b))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|e| format!("truncated header ({e})"))?;
            usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX)
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    if header_len > HEADER_BYTES_MAX {
        return Err(format!("header of {header_len} bytes is too long"));
    }
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)
        .map_err(|e| format!("truncated header ({e})"))?;
    let header = std::str::from_utf8(&header).map_err(|_| "header is not text".to_string())?;
    let (descr, fortran, shape) = parse_header(header)?;
    if fortran {
        return Err("Fortran-order arrays are not supported".into());
    }
    let item = match descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        "|u1" | "<u1" | "u1" => 1,
        "|i1" | "<i1" | "i1" => 1,
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    let bytes = count
        .checked_mul(item)
        .filter(|b| *b <= ENTRY_BYTES_MAX)
        .ok_or_else(|| format!("shape {shape:?} is larger than {ENTRY_BYTES_MAX} bytes"))?;
    let bytes = usize::try_from(bytes).map_err(|_| "array too large".to_string())?;
    let mut raw = Vec::with_capacity(bytes);
    r.take(bytes as u64)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read the data ({e})"))?;
    if raw.len() != bytes {
        return Err(format!(
            "data is truncated: shape {shape:?} needs {bytes} bytes, found {}",
            raw.len()
        ));
    }
    let data = match descr.as_str() {
        "<f4" => Data::F32(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        "<f8" => Data::F64(
            raw.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        d if d.ends_with("u1") => Data::U8(raw),
        _ => Data::I8(raw.into_iter().map(|b| b as i8).collect()),
    };
    Ok(Array { shape, data })
}

/// Parses the header dict, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (7530, 512), }`.
fn parse_header(h: &str) -> Result<(String, bool, Vec<usize>), String> {
    let fields = dict_fields(h)?;
    let descr = fields
        .get("descr")
        .ok_or("header has no 'descr'")?
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .to_owned();
    let fortran = match fields
        .get("fortran_order")
        .ok_or("header has no 'fortran_order'")?
        .trim()
    {
        "False" => false,
        "True" => true,
        other => return Err(format!("bad fortran_order {other:?}")),
    };
    let shape_src = fields.get("shape").ok_or("header has no 'shape'")?.trim();
    let inner = shape_src
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape {shape_src:?}"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_src:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr, fortran, shape))
}

/// Splits a flat Python dict literal into `key -> value source`. Values
/// are strings, booleans or tuples (whose commas sit inside parentheses).
fn dict_fields(h: &str) -> Result<BTreeMap<String, String>, String> {
    let body = h
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or("header is not a dict")?;
    let mut out = BTreeMap::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut parts = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| format!("bad header entry {part:?}"))?;
        let k = k.trim().trim_matches(|c| c == '\'' || c == '"');
        out.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// Writes one array as `.npy` v1 bytes: the tests build tiny models with it.
pub fn write_npy(a: &Array) -> Vec<u8> {
    let shape = match a.shape.len() {
        0 => "()".to_owned(),
        1 => format!("({},)", a.shape[0]),
        _ => format!(
            "({})",
            a.shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        a.data.descr()
    );
    // Pad so the data starts on a 64-byte boundary, ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match &a.data {
        Data::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::U8(v) => out.extend_from_slice(v),
        Data::I8(v) => out.extend(v.iter().map(|&b| b as u8)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn archive(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// Every supported dtype and rank survives a write and a read, stored or deflated.
    #[test]
    fn arrays_round_trip_through_stored_and_deflated_archives() {
        let arrays = [
            (
                "m",
                Array {
                    shape: vec![2, 3],
                    data: Data::F32(vec![1.0, -2.5, 3.0, 0.0, 1e-7, 7.25]),
                },
            ),
            (
                "s",
                Array {
                    shape: vec![],
                    data: Data::F64(vec![1e-12]),
                },
            ),
            (
                "q",
                Array {
                    shape: vec![4],
                    data: Data::U8(vec![0, 1, 63, 255]),
                },
            ),
            (
                "b",
                Array {
                    shape: vec![1],
                    data: Data::I8(vec![-6]),
                },
            ),
        ];
        for deflate in [false, true] {
            let entries: Vec<(String, Vec<u8>)> = arrays
                .iter()
                .map(|(n, a)| (format!("{n}.npy"), write_npy(a)))
                .collect();
            let refs: Vec<(&str, Vec<u8>)> = entries
                .iter()
                .map(|(n, b)| (n.as_str(), b.clone()))
                .collect();
            let mut npz = Npz::new(Cursor::new(archive(&refs, deflate))).unwrap();
            assert_eq!(npz.names(), vec!["b", "m", "q", "s"]);
            for (name, a) in &arrays {
                assert_eq!(&npz.array(name).unwrap(), a, "{name} deflate={deflate}");
            }
        }
    }

    /// A missing entry, a non-zip file and broken arrays are refused with what is wrong.
    #[test]
    fn bad_archives_and_arrays_are_refused_with_the_reason() {
        let good = write_npy(&Array {
            shape: vec![2],
            data: Data::F32(vec![1.0, 2.0]),
        });
        let mut npz = Npz::new(Cursor::new(archive(&[("a.npy", good.clone())], true))).unwrap();
        let e = npz.array("nope").unwrap_err().to_string();
        assert_eq!(e, "entry nope.npy is missing");

        let e = Npz::new(Cursor::new(b"hello, not a zip".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("not a zip archive"), "{e}");

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\x93NUMP".to_vec(), "truncated header"),
            (b"PK\x03\x04 not npy at all".to_vec(), "bad magic"),
            (good[..good.len() - 3].to_vec(), "data is truncated"),
        ];
        for (bytes, want) in cases {
            let e = read_npy(Cursor::new(bytes)).unwrap_err();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
        // The same array with its header text edited (the length re-encoded).
        let swap = |from: &str, to: &str| {
            let hlen = usize::from(u16::from_le_bytes([good[8], good[9]]));
            let header = std::str::from_utf8(&good[10..10 + hlen])
                .unwrap()
                .replace(from, to);
            let mut bytes = good[..8].to_vec();
            bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&good[10 + hlen..]);
            read_npy(Cursor::new(bytes)).unwrap_err()
        };
        assert!(swap("<f4", "<c8").contains("unsupported dtype"));
        assert!(swap("False", "True ").contains("Fortran-order"));
        assert!(swap("(2,)", "(x,)").contains("bad shape"));
        let huge = swap("(2,)", "(99999999999,)");
        assert!(huge.contains("larger than"), "{huge}");
    }
}
