//! The identity key file: the 32-byte ed25519 seed as 64 lowercase hex
//! characters and a newline, readable by its owner only.
//!
//! Whoever can read this file can sign events as this node, so it is created
//! with mode 0600, never overwritten, and refused on load if group or others
//! may read or write it (as ssh does with private keys).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use hearth_proto::Identity;
use rand_core::{OsRng, RngCore};

/// Permission bits for group and others: none may be set.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Creates a new random identity at `path`. Fails if the file exists.
pub fn create(path: &Path) -> anyhow::Result<Identity> {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let identity = Identity::from_seed(seed);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} already exists; refusing to overwrite an identity key",
                path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("cannot create {}", path.display())),
        })?;
    file.write_all(encode(&identity).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(identity)
}

/// Loads the identity at `path`, refusing a file others may read.
pub fn load(path: &Path) -> anyhow::Result<Identity> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & GROUP_OTHER_BITS != 0 {
        bail!(
            "{} has mode {mode:04o}: an identity key must be private to its owner; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not an identity key", path.display()))
}

fn encode(identity: &Identity) -> String {
    format!("{}\n", hex::encode(identity.seed()))
}

fn parse(text: &str) -> anyhow::Result<Identity> {
    let hex_text = text.strip_suffix('\n').unwrap_or(text);
    if hex_text.len() != 64 || !hex_text.bytes().all(|c| c.is_ascii_hexdigit()) {
        bail!("expected 64 hex characters and a newline");
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut seed).context("expected 64 hex characters")?;
    Ok(Identity::from_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file text round-trips to the same key: 64 hex characters and a newline.
    #[test]
    fn encode_then_parse_gives_the_same_key() {
        let id = Identity::from_seed([7; 32]);
        let text = encode(&id);
        assert_eq!(text.len(), 65);
        assert_eq!(parse(&text).unwrap().node_id(), id.node_id());
    }

    /// Text that is not exactly 64 hex characters is not a key.
    #[test]
    fn short_or_non_hex_text_is_refused() {
        assert!(parse("abcd\n").is_err());
        assert!(parse(&"zz".repeat(32)).is_err());
    }

    /// A new key file is 0600 and never overwritten; a group-readable one is refused with the fix.
    #[test]
    fn create_refuses_to_overwrite_and_load_refuses_open_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let id = create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(&path).unwrap().node_id(), id.node_id());
        let again = create(&path).unwrap_err().to_string();
        assert!(again.contains("refusing to overwrite"), "{again}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let open = format!("{:#}", load(&path).unwrap_err());
        assert!(open.contains("chmod 600"), "{open}");
    }
}
