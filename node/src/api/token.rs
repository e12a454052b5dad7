//! The HTTP API's bearer token: `api.token` in the data dir, owner-only
//! (mode 0600), 32 random bytes as hex. Created by the first `hearth run`
//! that serves HTTP, replaced by `hearth token rotate`.
//!
//! The server reads the file on every request that needs it (a few dozen
//! bytes from the page cache), so a rotation takes effect at once with no
//! reload signal, and a token deleted by hand stops every write.
//!
//! Device tokens (issue 12, `hearth run --lan`): a phone that opens the
//! pairing link gets a token of its own, kept here only as a SHA-256 hash
//! in `api.devices` (JSON, 0600) beside `api.token`, listed and revoked
//! from the page's node tab. Read on every request too, so a revocation
//! takes effect at once.

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
    #[error(
        "the device list {path} is not valid JSON ({source}); \
         delete it to unpair every device, then pair the phones again"
    )]
    Devices {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{DEVICES_MAX} devices are paired already; revoke one in the page's node tab first")]
    TooManyDevices,
    #[error(
        "a device name must be 1 to {DEVICE_NAME_CHARS_MAX} characters without control \
         characters, got {0:?}"
    )]
    DeviceName(String),
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
    let token = fresh();
    write_private(file, token.as_bytes())?;
    Ok(token)
}

/// A new random secret (the `--lan` pairing code).
pub fn secret() -> String {
    fresh()
}

/// Writes `bytes` to `file` (0600) through a temporary file renamed over it.
fn write_private(file: &Path, bytes: &[u8]) -> Result<(), TokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
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
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, file).map_err(err)?;
    Ok(())
}

/// The device list beside a token file.
pub const DEVICES_FILE: &str = "api.devices";
/// Paired devices at most: a household's phones and tablets, with room.
/// Bounds the file and the hashes compared on every LAN request.
pub const DEVICES_MAX: usize = 32;
/// A device's name as the page shows it in the node tab.
pub const DEVICE_NAME_CHARS_MAX: usize = 64;

/// A paired device. Only the hash of its token is kept: the file leaking
/// does not let anyone in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    /// A ULID: names the device for revocation.
    pub id: String,
    pub name: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Hex SHA-256 of the token.
    pub hash: String,
}

/// The device list that goes with `token_file`.
pub fn devices_path(token_file: &Path) -> PathBuf {
    token_file.with_file_name(DEVICES_FILE)
}

fn hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The paired devices (none when the file does not exist).
pub fn devices(file: &Path) -> Result<Vec<Device>, TokenError> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| TokenError::Devices {
            path: file.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(TokenError::Read {
            path: file.to_owned(),
            source,
        }),
    }
}

fn write_devices(file: &Path, list: &[Device]) -> Result<(), TokenError> {
    let bytes = serde_json::to_vec_pretty(list).map_err(|source| TokenError::Devices {
        path: file.to_owned(),
        source,
    })?;
    write_private(file, &bytes)
}

/// Pairs a new device named `name`: returns it and its token, which is
/// shown once and never stored.
pub fn pair(file: &Path, name: &str, now_ms: u64) -> Result<(Device, String), TokenError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > DEVICE_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(TokenError::DeviceName(name.chars().take(80).collect()));
    }
    let mut list = devices(file)?;
    if list.len() >= DEVICES_MAX {
        return Err(TokenError::TooManyDevices);
    }
    let token = fresh();
    let device = Device {
        id: ulid::Ulid::new().to_string(),
        name: name.to_owned(),
        created_ms: now_ms,
        hash: hash(&token),
    };
    list.push(device.clone());
    write_devices(file, &list)?;
    Ok((device, token))
}

/// Revokes the device `id`; false when there is none.
pub fn revoke(file: &Path, id: &str) -> Result<bool, TokenError> {
    let mut list = devices(file)?;
    let before = list.len();
    list.retain(|d| d.id != id);
    if list.len() == before {
        return Ok(false);
    }
    write_devices(file, &list)?;
    Ok(true)
}

/// The paired device whose token is `given`, if any (an unreadable list
/// matches nothing: the owner token still works to repair it).
pub fn device_of(file: &Path, given: &str) -> Option<Device> {
    let given = hash(given);
    devices(file)
        .ok()?
        .into_iter()
        .find(|d| matches(&given, &d.hash))
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

    /// A paired device's token is found by its hash (the token itself is
    /// not in the file), a revoked one no longer is, bad names and a full
    /// list are refused, and a corrupt list matches nothing.
    #[test]
    fn devices_pair_match_and_revoke() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = devices_path(&path(dir.path()));
        assert_eq!(devices(&file).map(|l| l.len()).ok(), Some(0));
        let (phone, token) = pair(&file, " Kitchen phone ", 7).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(phone.name, "Kitchen phone");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!text.contains(&token), "the token itself is never stored");
        assert_eq!(device_of(&file, &token), Some(phone.clone()));
        assert_eq!(device_of(&file, "nope"), None);
        assert!(matches!(pair(&file, "", 7), Err(TokenError::DeviceName(_))));
        assert!(matches!(
            pair(&file, "a\nb", 7),
            Err(TokenError::DeviceName(_))
        ));
        assert!(matches!(revoke(&file, "no-such-id"), Ok(false)));
        assert!(matches!(revoke(&file, &phone.id), Ok(true)));
        assert_eq!(device_of(&file, &token), None);
        for i in 0..DEVICES_MAX {
            pair(&file, &format!("d{i}"), 7).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(matches!(
            pair(&file, "one more", 7),
            Err(TokenError::TooManyDevices)
        ));
        std::fs::write(&file, "not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(devices(&file), Err(TokenError::Devices { .. })));
        assert_eq!(device_of(&file, &token), None);
    }
}
