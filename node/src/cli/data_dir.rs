//! The data directory: what a node keeps on disk, and opening it.
//!
//! ```text
//! DIR/identity.key   the node's secret key (0600), see `key_file`
//! DIR/config.toml    optional configuration
//! DIR/genesis.cbor   the encoded genesis event of the node's community
//! DIR/store/         the sled event store
//! ```
//!
//! `genesis.cbor` is what names the community: the core opens a log *for a
//! genesis*, and the store records the community it holds, so the two are
//! cross-checked on every open.

use std::fs::{self, DirBuilder};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hearth_proto::{CommunityId, Identity, Payload, VerifiedEvent};
use rand_core::{OsRng, RngCore};

use super::key_file;
use crate::core::{Config, EventLog, Node};
use crate::store::{SledStore, StoreError};

pub const IDENTITY_FILE: &str = "identity.key";
pub const CONFIG_FILE: &str = "config.toml";
pub const GENESIS_FILE: &str = "genesis.cbor";
pub const STORE_DIR: &str = "store";

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: PathBuf) -> DataDir {
        DataDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    pub fn genesis_path(&self) -> PathBuf {
        self.root.join(GENESIS_FILE)
    }

    /// The running node's local API (a Unix socket; present while
    /// `hearth run` is up).
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("node.sock")
    }

    /// Peers to dial at start, one multiaddr per line (written by `join`).
    pub fn peers_path(&self) -> PathBuf {
        self.root.join("peers.txt")
    }

    pub fn store_path(&self) -> PathBuf {
        self.root.join(STORE_DIR)
    }

    /// Creates the directory (owner-only, like the key inside it).
    pub fn create(&self) -> anyhow::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("cannot create data dir {}", self.root.display()))
    }

    pub fn has_identity(&self) -> bool {
        self.identity_path().exists()
    }

    /// Creates a new identity; fails if there is one.
    pub fn create_identity(&self) -> anyhow::Result<Identity> {
        self.create()?;
        key_file::create(&self.identity_path())
    }

    pub fn load_identity(&self) -> anyhow::Result<Identity> {
        let path = self.identity_path();
        if !path.exists() {
            bail!(
                "no identity in {}: run `hearth init` first",
                self.root.display()
            );
        }
        key_file::load(&path)
    }

    /// The identity, created first if there is none; `true` if created.
    pub fn load_or_create_identity(&self) -> anyhow::Result<(Identity, bool)> {
        if self.has_identity() {
            Ok((self.load_identity()?, false))
        } else {
            Ok((self.create_identity()?, true))
        }
    }

    pub fn has_genesis(&self) -> bool {
        self.genesis_path().exists()
    }

    /// The community's genesis event, verified again on every load.
    pub fn load_genesis(&self) -> anyhow::Result<Genesis> {
        let path = self.genesis_path();
        if !path.exists() {
            bail!(
                "{} belongs to no community yet: run `hearth community create --name NAME`, \
                 or `hearth log import FILE` to join one from an export",
                self.root.display()
            );
        }
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let event = VerifiedEvent::decode(&bytes)
            .with_context(|| format!("{} is not a valid event", path.display()))?;
        Genesis::new(event).with_context(|| format!("{} is not a genesis", path.display()))
    }

    /// Writes `genesis.cbor` atomically (temporary file, sync, rename), so a
    /// crash never leaves half a genesis.
    pub fn write_genesis(&self, genesis: &Genesis) -> anyhow::Result<()> {
        self.create()?;
        let path = self.genesis_path();
        let tmp = self.root.join(format!("{GENESIS_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(genesis.event.bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))
    }

    /// Opens the store and checks it holds `genesis`'s community (or none).
    ///
    /// The message says what is wrong: the "another hearth" hint only when
    /// the lock is really held; a full disk or a read-only data dir by name.
    /// sled 0.34 has no read-only mode (it writes its lock and a snapshot
    /// while opening), so read commands need a writable store too; the
    /// read-only message says so and what to do.
    pub fn open_store(&self, genesis: &Genesis) -> anyhow::Result<SledStore> {
        let path = self.store_path();
        let store = SledStore::open(&path).map_err(|e| {
            let advice = match &e {
                StoreError::Locked(_) => format!(
                    "cannot open the event store {}: another hearth is using this data dir \
                     (a `hearth run` or another command); stop it or wait for it to finish",
                    path.display()
                ),
                StoreError::Full(_) => format!(
                    "storage_full: cannot open the event store {}: the disk is full; free \
                     space on it and run the command again (nothing stored is lost)",
                    path.display()
                ),
                StoreError::ReadOnly(_) => format!(
                    "cannot open the event store {}: the data dir {} is read-only, and the \
                     store must be written even to read it (its database locks and \
                     snapshots itself on open); make it writable (`chmod u+w`, or remount \
                     read-write), or copy the data dir somewhere writable and pass \
                     --data-dir",
                    path.display(),
                    self.root.display()
                ),
                _ => format!("cannot open the event store {}", path.display()),
            };
            anyhow::Error::new(e).context(advice)
        })?;
        let stored = EventLog::stored_community(&store)
            .with_context(|| format!("cannot read the event store {}", path.display()))?;
        if let Some(stored) = stored {
            if stored != genesis.community {
                bail!(
                    "the event store {} holds community {stored}, but {} founds {}; \
                     the data dir is inconsistent",
                    path.display(),
                    self.genesis_path().display(),
                    genesis.community
                );
            }
        }
        Ok(store)
    }

    /// Opens the node: identity, genesis, store, views.
    pub fn open_node(&self, config: Config) -> anyhow::Result<(Node<SledStore>, Genesis)> {
        let identity = self.load_identity()?;
        let genesis = self.load_genesis()?;
        let store = self.open_store(&genesis)?;
        let node = Node::new(identity, &genesis.event, store, config, os_rng_seed())
            .with_context(|| format!("cannot open the node in {}", self.root.display()))?;
        Ok((node, genesis))
    }
}

/// A verified `community.genesis` event and what it founds.
#[derive(Debug, Clone)]
pub struct Genesis {
    pub event: VerifiedEvent,
    pub community: CommunityId,
    pub name: String,
}

impl Genesis {
    pub fn new(event: VerifiedEvent) -> anyhow::Result<Genesis> {
        let (Some(community), Payload::Genesis(g)) =
            (event.founded_community(), &event.event().payload)
        else {
            bail!(
                "event {} is a {}, not a community.genesis",
                event.hash(),
                event.event().payload.type_name()
            );
        };
        let name = g.name.clone();
        Ok(Genesis {
            event,
            community,
            name,
        })
    }
}

/// 32 bytes from the OS for a node's generator: it draws the ephemeral
/// keys of sealed messages, which must not be weaker than 256 bits.
pub fn os_rng_seed() -> crate::core::RngSeed {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    crate::core::RngSeed(seed)
}
