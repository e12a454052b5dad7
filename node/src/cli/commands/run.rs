//! `hearth run`: the node on the mesh. The first run on an empty data dir
//! founds a community (asking its name on a terminal) or, with `--join`,
//! joins one from an invite, and says what to do next; later runs rejoin
//! the mesh where the node left it and print one line saying who they are.
//! Stops cleanly on SIGINT/SIGTERM: a final snapshot and flush, exit 0.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use libp2p::Multiaddr;

use crate::api::{self, ApiConfig};
use crate::cli::commands::community;
use crate::cli::data_dir::Genesis;
use crate::cli::render;
use crate::cli::Ctx;
use crate::core::Node;
use crate::net::driver::{self, NetConfig, NetEvent};
use crate::net::local_api;
use crate::net::reach::{self, ReachConfig};
use crate::store::SledStore;

/// The name a first run founds its community with when nobody gives one;
/// `hearth community rename NAME` changes it later.
pub const DEFAULT_NAME: &str = "My neighbourhood";

/// Times the first run asks again for a name it cannot use (empty after
/// trimming is taken as the default, so only an over-long name is asked
/// again): a person gets a second chance, a script feeding bad lines gets
/// an error instead of a loop.
const NAME_PROMPTS_MAX: usize = 3;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address to listen on (repeatable) [default: all interfaces, TCP and
    /// QUIC, any port].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Peer to dial at start (repeatable), besides those `join` saved.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Anti-entropy period with every connected peer.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub sync_interval_seconds: u64,
    /// Name of the community the first run founds [default: asked on a
    /// terminal, else "My neighbourhood"].
    #[arg(long, conflicts_with = "join")]
    pub name: Option<String>,
    /// Join the community of this invite (`hearth community invite`) on the
    /// first run, then run; on a data dir that already holds that community,
    /// just run.
    #[arg(long, value_name = "INVITE")]
    pub join: Option<String>,
    /// Serve the local HTTP API (JSON-RPC, /metrics, /health) on this
    /// IP:PORT [default: api.listen in config.toml, else 127.0.0.1:7878].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    pub http: Option<SocketAddr>,
    /// Do not serve the HTTP API.
    #[arg(long)]
    pub no_http: bool,
    /// Allow the HTTP API on a non-loopback address; every request, reads
    /// included, then needs the token.
    #[arg(long)]
    pub lan: bool,
    /// The profile of an always-on community machine with a public
    /// address: listens on all interfaces on --port (TCP and QUIC), relays
    /// for households behind NAT, answers Kademlia queries, no mDNS; prints
    /// the address to put in invites.
    #[arg(long)]
    pub anchor: bool,
    /// The fixed port of --anchor (TCP and UDP/QUIC).
    #[arg(long, value_name = "PORT", default_value_t = ANCHOR_PORT, requires = "anchor")]
    pub port: u16,
    /// Relay for households behind NAT without the rest of --anchor (only
    /// useful on a node others can reach).
    #[arg(long)]
    pub relay_server: bool,
    /// Do not ask the home router to forward a port (UPnP).
    #[arg(long)]
    pub no_upnp: bool,
    /// Announce this address as reachable without waiting for AutoNAT to
    /// confirm it (an anchor behind a port forward); repeatable.
    #[arg(long, value_name = "MULTIADDR")]
    pub external: Vec<Multiaddr>,
    /// Period of the Kademlia walk that finds community members this node
    /// has not met.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub discovery_interval_seconds: u64,
}

/// The port `--anchor` listens on unless `--port` says otherwise
/// (libp2p's customary port).
pub const ANCHOR_PORT: u16 = 4001;

/// The listen addresses of the anchor profile: every interface, `port`,
/// TCP and QUIC.
pub fn anchor_listen(port: u16) -> Vec<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    let any = Multiaddr::empty().with(Protocol::Ip4(std::net::Ipv4Addr::UNSPECIFIED));
    vec![
        any.clone().with(Protocol::Tcp(port)),
        any.with(Protocol::Udp(port)).with(Protocol::QuicV1),
    ]
}

pub fn run(ctx: &mut Ctx, a: RunArgs) -> anyhow::Result<()> {
    // Checked before anything is created or founded: a refused address
    // leaves the data dir as it was.
    let http = http_config(ctx, &a)?;
    let mut bootstrap = a.bootstrap;
    let (node, first_run) = match (&a.join, ctx.dir.has_genesis()) {
        (Some(text), has_genesis) => {
            let invite = community::decode_invite(text)?;
            let ours = has_genesis && ctx.dir.load_genesis()?.community == invite.genesis.community;
            if ours {
                // Already joined: the invite's addresses still help this run.
                bootstrap.extend(invite.addrs);
                (ctx.open_node()?.0, None)
            } else {
                // Refuses a dir of another community with what to do.
                let (node, joined) = community::join_node(ctx, invite)?;
                ctx.out.show(&joined, |w| joined.lines(w))?;
                (node, Some(FirstRun::Joined))
            }
        }
        (None, true) => (ctx.open_node()?.0, None),
        (None, false) => {
            let (name, defaulted) = match a.name {
                Some(name) => (name, false),
                None => ask_name()?,
            };
            let node = community::found(ctx, &name)?;
            (node, Some(FirstRun::Founded { defaulted }))
        }
    };
    let genesis = ctx.dir.load_genesis()?;
    if let Some(first) = first_run {
        let text = next_steps(first, ctx.dir.root(), &genesis, http.is_some());
        ctx.out.note(format_args!("{text}"))?;
    }
    bootstrap.extend(saved_peers(ctx)?);
    let defaults = NetConfig::default();
    let listen = match (a.listen.is_empty(), a.anchor) {
        (false, _) => a.listen,
        (true, true) => anchor_listen(a.port),
        (true, false) => defaults.listen.clone(),
    };
    let cfg = NetConfig {
        listen,
        bootstrap,
        // An anchor's neighbours are on the internet, not its LAN.
        mdns: !a.no_mdns && !a.anchor,
        sync_interval: Duration::from_secs(a.sync_interval_seconds.max(1)),
        search: crate::semantic::setup(ctx.dir.root(), ctx.config()?.embed.model_dir.as_deref())?,
        reach: ReachConfig {
            anchor: a.anchor,
            relay_server: a.relay_server,
            upnp: !a.no_upnp && !a.anchor,
            external: a.external,
            walk_interval: Duration::from_secs(a.discovery_interval_seconds.max(1)),
            ..defaults.reach.clone()
        },
        inbox: std::sync::Arc::new(
            crate::net::inbox::Inbox::open(&ctx.dir.root().join(INBOX_DIR))
                .context("opening the inbox (read marks, copies of sent messages)")?,
        ),
        ..defaults
    };
    serve(node, cfg, &ctx.dir.socket_path(), &genesis, http)
}

/// Where `hearth run` keeps this node's local inbox state (`net::inbox`),
/// under the data dir.
const INBOX_DIR: &str = "inbox";

/// The HTTP API's settings from the flags and `api.listen`, or `None`
/// with `--no-http`. A non-loopback address without `--lan` is refused.
fn http_config(ctx: &Ctx, a: &RunArgs) -> anyhow::Result<Option<(ApiConfig, api::Tuning)>> {
    if a.no_http {
        return Ok(None);
    }
    let config = ctx.config()?.api;
    let tuning = api::Tuning {
        health_no_peers: std::time::Duration::from_secs(config.health_no_peers_s),
        ..api::Tuning::default()
    };
    let listen = match (a.http, config.listen) {
        (Some(addr), _) => addr,
        (None, Some(text)) => text.trim().parse().with_context(|| {
            format!("config key api.listen = {text:?}: expected IP:PORT such as 127.0.0.1:7878")
        })?,
        (None, None) => api::DEFAULT_LISTEN
            .parse()
            .context("the default API address")?,
    };
    if !listen.ip().is_loopback() && !a.lan {
        return Err(api::ServeError::NotLoopback { addr: listen }.into());
    }
    Ok(Some((
        ApiConfig {
            listen,
            lan: a.lan,
            token_file: api::token::path(ctx.dir.root()),
        },
        tuning,
    )))
}

/// Runs the node until a signal, printing who it is once it answers.
fn serve(
    node: Node<SledStore>,
    cfg: NetConfig,
    socket: &Path,
    genesis: &Genesis,
    http: Option<(ApiConfig, api::Tuning)>,
) -> anyhow::Result<()> {
    let node_id = node.node_id().to_hex();
    // The current name: an anchor may have renamed the community since
    // the genesis.
    let name = node.views().membership.community_name().to_owned();
    let anchor = cfg.reach.anchor;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signals()?;
        let running = driver::spawn(node, cfg)?;
        let api = local_api::serve(socket, running.handle.clone()).await?;
        let http = match http {
            None => None,
            Some((http, tuning)) => {
                match api::serve_with(http, tuning, running.handle.clone()).await {
                    Ok(server) => Some(server),
                    Err(e) => {
                        // Stop the node cleanly before saying why.
                        running.handle.shutdown().await;
                        let _ = running.task.await;
                        api.abort();
                        let _ = std::fs::remove_file(socket);
                        return Err(e.into());
                    }
                }
            }
        };
        // The one line every run prints, once the local API answers: the
        // node id as `member add` takes it, and the community by name.
        println!("{}", running_line(&node_id, &name, genesis));
        if let Some(http) = &http {
            println!("HTTP API: {}", http.url());
            print_pairing(http);
        }
        // Under --lan on an unspecified address, the pairing link waits for
        // the first LAN address the mesh reports (the server cannot tell
        // which of its addresses a phone reaches).
        let mut pairing = http
            .as_ref()
            .filter(|h| h.lan() && h.pairing_url().is_none())
            .map(|h| h.pairing_handle());
        let mut events = running.events;
        let peer = running.handle.peer_id;
        let printer = tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if let NetEvent::Listening(addr) = e {
                    println!("listening on {addr}");
                    if anchor && reach::invite_worthy(&addr) {
                        let full = format!("{addr}/p2p/{peer}");
                        println!(
                            "address for invites: {full}  (hearth community invite --addr {full})"
                        );
                    }
                    if let Some(ip) = lan_ip(&addr) {
                        if let Some(p) = pairing.take() {
                            p.set_lan_host(ip);
                            if let Some(url) = p.pairing_url() {
                                print_pairing_url(&url);
                            }
                        }
                    }
                }
            }
        });
        let mut task = running.task;
        let stopped_early = tokio::select! {
            r = &mut task => Some(r),
            () = shutdown => None,
        };
        // The HTTP API first: requests in flight finish while the node
        // still answers them.
        if let Some(http) = http {
            http.shutdown().await;
        }
        let result = match stopped_early {
            Some(r) => r,
            None => {
                running.handle.shutdown().await;
                task.await
            }
        };
        api.abort();
        printer.abort();
        let _ = std::fs::remove_file(socket);
        result.context("the node's task failed")??;
        println!("stopped cleanly");
        Ok(())
    })
}

/// Under `--lan`: the link a phone opens to pair with this node, and its
/// QR code drawn in the terminal (issue 12).
fn print_pairing(http: &api::ApiServer) {
    if let Some(url) = http.pairing_url() {
        print_pairing_url(&url);
    }
}

fn print_pairing_url(url: &str) {
    println!("Pair a phone on this network: open {url}");
    println!("{}", api::web::qr_text(url));
}

/// An IPv4 LAN address (not loopback, not unspecified) of a listen address.
fn lan_ip(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) if !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local() => {
            Some(std::net::IpAddr::V4(ip))
        }
        _ => None,
    })
}

/// `node <hex id> in community "<name>" (<community id>)`.
pub fn running_line(node_id: &str, name: &str, genesis: &Genesis) -> String {
    format!(
        "node {node_id} in community \"{}\" ({})",
        render::line(name),
        genesis.community
    )
}

/// How this run came to have its community.
#[derive(Debug, Clone, Copy)]
enum FirstRun {
    /// Founded here; `defaulted` if nobody chose the name.
    Founded { defaulted: bool },
    /// Joined from `--join`.
    Joined,
}

/// The community name for a first run without `--name`: asked on a
/// terminal (empty answer: the default), else the default. Returns the
/// name and whether it is the default nobody chose.
fn ask_name() -> anyhow::Result<(String, bool)> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok((DEFAULT_NAME.to_owned(), true));
    }
    let mut err = std::io::stderr();
    writeln!(
        err,
        "This data dir has no community yet: this run founds one, with you as its anchor."
    )?;
    for _ in 0..NAME_PROMPTS_MAX {
        write!(err, "Name of your community [{DEFAULT_NAME}]: ")?;
        err.flush()?;
        let mut answer = String::new();
        if stdin.lock().read_line(&mut answer)? == 0 {
            // End of input: nobody to ask.
            return Ok((DEFAULT_NAME.to_owned(), true));
        }
        let answer = answer.trim();
        if answer.is_empty() {
            return Ok((DEFAULT_NAME.to_owned(), true));
        }
        match community::check_name(answer) {
            Ok(()) => return Ok((answer.to_owned(), false)),
            Err(e) => writeln!(err, "{e:#}")?,
        }
    }
    bail!("no usable community name after {NAME_PROMPTS_MAX} tries; pass --name NAME")
}

/// What a newcomer does next, printed once by the first run.
fn next_steps(first: FirstRun, dir: &Path, genesis: &Genesis, web: bool) -> String {
    let hearth = hearth_command(dir);
    let dir_shown = dir.display();
    let key = dir.join(crate::cli::data_dir::IDENTITY_FILE);
    let key = key.display();
    let mut t = String::new();
    if let FirstRun::Founded { defaulted: true } = first {
        t += &format!(
            "Named it \"{}\"; rename it any time: {hearth} community rename NAME\n",
            render::line(&genesis.name)
        );
    }
    t += "\nNext steps (in another terminal while this node runs):\n";
    if web {
        t += "  in your browser         open the `HTTP API:` link below: the marketplace page\n";
    }
    match first {
        FirstRun::Founded { .. } => {
            t += &format!(
                "  post something          {hearth} post --category offer --title \"Ladder to lend\" --tag tools\n"
            );
            t += &format!(
                "  invite a neighbour      {hearth} community invite   (send them the string it prints)\n"
            );
            t += "  they join with          hearth join <invite>, then hearth run\n";
            t += "                      or  hearth run --join <invite>\n";
            t += &format!(
                "  then admit them         {hearth} member add <their node id>   (they see it when they join)\n"
            );
        }
        FirstRun::Joined => {
            t += "  wait for an anchor to admit you (the line above has your node id);\n";
            t += "  until then this node syncs and reads, and your posts are refused\n";
            t += &format!(
                "  then post something     {hearth} post --category offer --title \"Ladder to lend\" --tag tools\n"
            );
        }
    }
    t += &format!("  your data               {dir_shown}\n");
    t += &format!("  your identity key       {key}   (it IS this node: keep it private)\n");
    t += &format!(
        "  back it up              {hearth} backup FILE   (the key, the community and the log)\n"
    );
    t
}

/// How to spell `hearth` in the hints so they reach this data dir: plain
/// when it is the default one, else with `--data-dir`.
fn hearth_command(dir: &Path) -> String {
    match crate::cli::default_data_dir() {
        Ok(default) if default == dir => "hearth".to_owned(),
        _ => format!("hearth --data-dir {}", dir.display()),
    }
}

/// Peers saved by `hearth join`, one multiaddr per line.
fn saved_peers(ctx: &Ctx) -> anyhow::Result<Vec<Multiaddr>> {
    let path = ctx.dir.peers_path();
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            l.parse()
                .with_context(|| format!("{}:{}: not a multiaddr: {l}", path.display(), i + 1))
        })
        .collect()
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to from the moment this returns,
/// so a signal that comes right after the node says it runs stops it
/// cleanly rather than killing it by the default action.
fn shutdown_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}
