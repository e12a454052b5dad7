//! The HTTP API's bearer token: `api.token` in the data dir, owner-only
//! (mode 0600), 32 random bytes as hex. Created by the first `hearth run`
//! that serves HTTP, replaced by `hearth token rotate`.
//!
//! The server reads the file on every request that needs it (a few dozen
//! bytes from the page cache), so a rotation takes effect at once with no
//! reload signal, and a token deleted by hand stops every write.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

/// The token file's name in the data dir.
pub const TOKEN_FILE: &str = "api.token";
/// Random bytes in a token (64 hex characters).
pub const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the API token {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the API token {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The token file of a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

fn fresh() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The token in `file`, creating it (0600) if there is none yet.
pub fn load_or_create(file: &Path) -> Result<String, TokenError> {
    match read(file) {
        Ok(t) => Ok(t),
        Err(TokenError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            rotate(file)
        }
        Err(e) => Err(e),
    }
}

/// The token in `file`, trimmed.
pub fn read(file: &Path) -> Result<String, TokenError> {
    std::fs::read_to_string(file)
        .map(|t| t.trim().to_owned())
        .map_err(|source| TokenError::Read {
            path: file.to_owned(),
            source,
        })
}

/// Writes a new token to `file` (0600, through a temporary file renamed
/// over the old one, so a reader sees the old token or the new, never a
/// half-written one) and returns it.
pub fn rotate(file: &Path) -> Result<String, TokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let token = fresh();
    let tmp = file.with_extension("token.tmp");
    let err = |source| TokenError::Write {
        path: file.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(token.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, file).map_err(err)?;
    Ok(token)
}

/// Compares in time independent of where the texts differ.
pub fn matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token file is created owner-only, kept across loads, and a
    /// rotation replaces it.
    #[test]
    fn created_0600_kept_and_rotated() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = path(dir.path());
        let first = load_or_create(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&file).ok(), Some(first.clone()));
        let second = rotate(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(first, second);
        assert_eq!(read(&file).ok(), Some(second.clone()));
        assert!(matches(&second, &second) && !matches(&first, &second));
        assert!(!matches("", ""), "an empty token matches nothing");
    }
}
