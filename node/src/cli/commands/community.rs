//! `hearth community create`: found a community with this node as its
//! only anchor. `hearth community rename` and `hearth community settings`:
//! an anchor signs new community settings (name, TTL cap, per-author bound).

use anyhow::{bail, Context};
use clap::Subcommand;
use hearth_proto::{CommunityId, Event, EventId, Genesis as GenesisData, Payload};
use rand_core::{OsRng, RngCore};
use serde::Serialize;

use crate::cli::data_dir::Genesis;
use crate::cli::{finish_write, now_ms, render, Ctx};
use crate::core::services::membership::{
    MemberList, SettingsParams, SettingsReceipt, MEMBER_LIST, SETTINGS,
};
use crate::core::{EventLog, Node};
use crate::store::SledStore;

/// A community name is shown in every member's status line: keep it short.
pub const NAME_CHARS_MAX: usize = 120;

#[derive(Debug, Subcommand)]
pub enum CommunityCommand {
    /// Found a new community; this node becomes its first anchor. Creates
    /// the identity too if there is none.
    Create {
        /// The community's name, e.g. "Lindenhof Street".
        #[arg(long)]
        name: String,
    },
    /// Print an invite for a new device: the community, its genesis event
    /// and where to reach this node (its listen addresses while `hearth run`
    /// is up, and any --addr given).
    Invite {
        /// An address where this node can be reached (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        addr: Vec<libp2p::Multiaddr>,
    },
    /// Rename the community (anchors only; every member sees the new name).
    Rename {
        /// The new name, e.g. "Lindenhof Street".
        name: String,
    },
    /// Show or change the community's limits (changing: anchors only).
    Settings {
        /// Longest a post stays up, in days (every node caps posts at this).
        #[arg(long, value_name = "N")]
        post_ttl_max_days: Option<u64>,
        /// Most posts one member can have up at once; older ones are hidden.
        #[arg(long, value_name = "N")]
        posts_per_author_max: Option<u64>,
    },
}

pub use crate::invite::{INVITE_ADDRS_MAX, INVITE_PREFIX};

#[derive(Debug, Serialize)]
struct Created {
    community_id: String,
    name: String,
    node_id: String,
    data_dir: String,
}

pub fn run(ctx: &mut Ctx, command: CommunityCommand) -> anyhow::Result<()> {
    match command {
        CommunityCommand::Create { name } => create(ctx, &name),
        CommunityCommand::Invite { addr } => invite(ctx, addr),
        CommunityCommand::Rename { name } => settings(
            ctx,
            SettingsParams {
                name: Some(name),
                ..SettingsParams::default()
            },
        ),
        CommunityCommand::Settings {
            post_ttl_max_days,
            posts_per_author_max,
        } => {
            let post_ttl_max_s = post_ttl_max_days
                .map(|d| {
                    d.checked_mul(24 * 3600)
                        .with_context(|| format!("--post-ttl-max-days {d} is far too large"))
                })
                .transpose()?;
            settings(
                ctx,
                SettingsParams {
                    name: None,
                    post_ttl_max_s,
                    posts_per_author_max,
                },
            )
        }
    }
}

/// Signs the merged settings (or, with no change asked, shows them).
fn settings(ctx: &mut Ctx, params: SettingsParams) -> anyhow::Result<()> {
    let asks_change = params.name.is_some()
        || params.post_ttl_max_s.is_some()
        || params.posts_per_author_max.is_some();
    let (settings, changed) = if asks_change {
        let r: SettingsReceipt = ctx.call(SETTINGS, &params, true)?;
        (r.settings, Some(r.changed))
    } else {
        #[derive(Serialize)]
        struct NoParams {}
        let list: MemberList = ctx.call(MEMBER_LIST, &NoParams {}, false)?;
        (list.settings, None)
    };
    ctx.out.show(&settings, |w| {
        match changed {
            Some(true) => writeln!(w, "published new community settings")?,
            Some(false) => writeln!(w, "the settings were already so; nothing new published")?,
            None => {}
        }
        writeln!(w, "name:                 {}", render::line(&settings.name))?;
        writeln!(
            w,
            "post TTL max:         {} days ({} s)",
            settings.post_ttl_max_s / (24 * 3600),
            settings.post_ttl_max_s
        )?;
        writeln!(w, "posts per author max: {}", settings.posts_per_author_max)
    })
}

fn invite(ctx: &mut Ctx, extra: Vec<libp2p::Multiaddr>) -> anyhow::Result<()> {
    let genesis = ctx.dir.load_genesis()?;
    let mut addrs: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    let running = crate::cli::client::Client::connect(&ctx.dir.socket_path())?;
    match running {
        Some(mut client) => {
            let status: crate::net::driver::Status =
                serde_json::from_value(client.call("node.status", serde_json::json!({}))?)?;
            let peer = crate::net::identity::peer_id(&status.node_id)
                .context("this node's key is not a valid ed25519 key")?;
            addrs.extend(crate::invite::dial_addresses(&status.listen, &peer));
        }
        None if addrs.is_empty() => tracing::warn!(
            "no node is running here and no --addr was given: the invite carries no address, \
             so the new device can only find this node by mDNS on the LAN"
        ),
        None => {}
    }
    addrs.truncate(INVITE_ADDRS_MAX);
    let text = crate::invite::encode(&genesis.community, &genesis.event, addrs.clone())
        .context("encoding the invite")?;
    #[derive(Serialize)]
    struct Shown<'a> {
        invite: &'a str,
        community: String,
        name: &'a str,
        addrs: &'a [String],
    }
    let shown = Shown {
        invite: &text,
        community: genesis.community.to_hex(),
        name: &genesis.name,
        addrs: &addrs,
    };
    ctx.out.show(&shown, |w| writeln!(w, "{text}"))
}

/// Refuses to put a second community in a data dir: fine when the dir has
/// none, or (with `allowed`) already holds that one.
fn refuse_other_community(ctx: &Ctx, allowed: Option<&Genesis>) -> anyhow::Result<()> {
    if !ctx.dir.has_genesis() {
        return Ok(());
    }
    let have = ctx.dir.load_genesis()?;
    match allowed {
        Some(wanted) if wanted.community == have.community => Ok(()),
        Some(wanted) => bail!(
            "{} already belongs to community {} \"{}\", and this invite is for {} \"{}\"; \
             a data dir holds one community: join with a fresh one, e.g. \
             `hearth --data-dir DIR run --join <invite>`",
            ctx.dir.root().display(),
            have.community,
            render::line(&have.name),
            wanted.community,
            render::line(&wanted.name)
        ),
        None => bail!(
            "{} already belongs to community {} \"{}\"; use another --data-dir",
            ctx.dir.root().display(),
            have.community,
            render::line(&have.name)
        ),
    }
}

/// An invite, decoded and checked: the community's verified genesis and the
/// addresses to dial first.
#[derive(Debug)]
pub struct Decoded {
    pub genesis: Genesis,
    pub addrs: Vec<libp2p::Multiaddr>,
}

/// Decodes an invite string; every way it can be wrong is an error saying which.
pub fn decode_invite(text: &str) -> anyhow::Result<Decoded> {
    let parts = crate::invite::decode(text).map_err(|e| match e {
        crate::invite::InviteError::Address(a) => anyhow::anyhow!(
            "the invite's address \"{}\" is not a multiaddr",
            render::line(&a)
        ),
        other => anyhow::Error::new(other),
    })?;
    let genesis = Genesis::new(parts.genesis)?;
    if genesis.community.0.as_slice() != parts.community.as_slice() {
        bail!(
            "the invite's genesis founds {}, not the community it names",
            genesis.community
        );
    }
    Ok(Decoded {
        genesis,
        addrs: parts.addrs,
    })
}

/// What `join` reports.
#[derive(Debug, Serialize)]
pub struct Joined {
    pub node_id: String,
    pub community: String,
    pub name: String,
    pub peers: usize,
}

impl Joined {
    /// The human lines both `hearth join` and `hearth run --join` print.
    pub fn lines(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            w,
            "joined \"{}\" ({})",
            render::line(&self.name),
            self.community
        )?;
        writeln!(w, "this node: {}", self.node_id)?;
        writeln!(
            w,
            "ask an anchor to admit it:  hearth member add {}",
            self.node_id
        )
    }
}

/// `hearth join INVITE`: stores the community's genesis (verified), saves
/// the invite's addresses for `hearth run`, and prints this node's id for
/// an anchor to admit.
pub fn join(ctx: &mut Ctx, text: &str) -> anyhow::Result<()> {
    let invite = decode_invite(text)?;
    let (mut node, joined) = join_node(ctx, invite)?;
    finish_write(&mut node)?;
    ctx.out.show(&joined, |w| {
        joined.lines(w)?;
        writeln!(w, "then start it:              hearth run")
    })
}

/// Joins the invite's community and returns the open node (the first
/// `hearth run --join` goes on with it: sled keeps its lock for a moment
/// after a close). Refuses a data dir that holds another community.
pub fn join_node(ctx: &mut Ctx, invite: Decoded) -> anyhow::Result<(Node<SledStore>, Joined)> {
    let Decoded { genesis, addrs } = invite;
    refuse_other_community(ctx, Some(&genesis))?;
    let config = ctx.config()?;
    let (identity, _) = ctx.dir.load_or_create_identity()?;
    let store = ctx.dir.open_store(&genesis)?;
    ctx.dir.write_genesis(&genesis)?;
    let node = Node::new(
        identity.clone(),
        &genesis.event,
        store,
        config,
        crate::cli::data_dir::os_rng_seed(),
    )
    .context("cannot open the community's log")?;
    let lines: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    let peers = ctx.dir.peers_path();
    std::fs::write(&peers, lines).with_context(|| format!("writing {}", peers.display()))?;
    let joined = Joined {
        node_id: identity.node_id().to_hex(),
        community: genesis.community.to_hex(),
        name: genesis.name.clone(),
        peers: addrs.len(),
    };
    Ok((node, joined))
}

/// Whether `name` (already trimmed) can name a community here.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        bail!("a community name must be 1 to {NAME_CHARS_MAX} characters, got {chars}");
    }
    if name.chars().any(char::is_control) {
        bail!(
            "a community name cannot hold control characters (line breaks, tabs, escapes): \"{}\"",
            render::line(name)
        );
    }
    Ok(())
}

fn create(ctx: &mut Ctx, name: &str) -> anyhow::Result<()> {
    let mut node = found(ctx, name)?;
    finish_write(&mut node)
}

/// Founds a community with this node as its anchor and returns the open
/// node (sled keeps its lock for a moment after a close, so callers that go
/// on, like the first `hearth run`, reuse this node rather than reopen).
pub fn found(ctx: &mut Ctx, name: &str) -> anyhow::Result<Node<SledStore>> {
    let name = name.trim();
    check_name(name).context("--name")?;
    refuse_other_community(ctx, None)?;
    // Config first: a bad config should fail before anything is written.
    let config = ctx.config()?;
    let (identity, _) = ctx.dir.load_or_create_identity()?;
    let now = now_ms();
    let me = identity.node_id();
    // A ULID's random part is 80 bits.
    let mut random = [0u8; 16];
    OsRng.fill_bytes(&mut random[6..]);
    let event = Event {
        id: EventId::from_parts(now, u128::from_be_bytes(random)),
        ts: now,
        author: me,
        lamport: 0,
        community: CommunityId::default(),
        payload: Payload::Genesis(GenesisData {
            name: name.to_owned(),
            anchors: vec![me],
        }),
    }
    .sign(&identity)
    .context("cannot sign the genesis event")?;
    let genesis = Genesis::new(event)?;
    let store = ctx.dir.open_store(&genesis)?;
    if let Some(stored) = EventLog::stored_community(&store)? {
        bail!(
            "the event store {} already holds community {stored} but {} is missing; \
             restore it or use another --data-dir",
            ctx.dir.store_path().display(),
            ctx.dir.genesis_path().display()
        );
    }
    ctx.dir.write_genesis(&genesis)?;
    let mut node = Node::new(
        identity,
        &genesis.event,
        store,
        config,
        crate::cli::data_dir::os_rng_seed(),
    )
    .context("cannot open the new community's log")?;
    node.shutdown()
        .context("cannot write the new community's log")?;
    let report = Created {
        community_id: genesis.community.to_hex(),
        name: genesis.name.clone(),
        node_id: me.to_hex(),
        data_dir: ctx.dir.root().display().to_string(),
    };
    ctx.out.show(&report, |w| {
        writeln!(
            w,
            "community  {}  {}",
            report.community_id,
            render::line(&report.name)
        )?;
        writeln!(w, "anchor     {}  (this node)", report.node_id)?;
        writeln!(w, "data dir   {}", report.data_dir)
    })?;
    Ok(node)
}
