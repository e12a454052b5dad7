//! `hearth run`: the node on the mesh. The first run creates an identity
//! and a community; later runs rejoin the mesh where the node left it.
//! Stops cleanly on SIGINT/SIGTERM: a final snapshot and flush, exit 0.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use libp2p::Multiaddr;

use crate::cli::commands::community;
use crate::cli::Ctx;
use crate::net::driver::{self, NetConfig, NetEvent};
use crate::net::local_api;

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
    /// Name of the community the first run founds.
    #[arg(long, default_value = "My neighbourhood")]
    pub name: String,
}

pub fn run(ctx: &mut Ctx, a: RunArgs) -> anyhow::Result<()> {
    let node = if ctx.dir.has_genesis() {
        ctx.open_node()?.0
    } else {
        community::found(ctx, &a.name)?
    };
    let genesis = ctx.dir.load_genesis()?;
    let mut bootstrap = a.bootstrap;
    bootstrap.extend(saved_peers(ctx)?);
    let defaults = NetConfig::default();
    let cfg = NetConfig {
        listen: if a.listen.is_empty() {
            defaults.listen.clone()
        } else {
            a.listen
        },
        bootstrap,
        mdns: !a.no_mdns,
        sync_interval: Duration::from_secs(a.sync_interval_seconds.max(1)),
        ..defaults
    };
    let socket = ctx.dir.socket_path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = driver::spawn(node, cfg)?;
        let api = local_api::serve(&socket, running.handle.clone()).await?;
        println!(
            "node {} in community {} ({})",
            running.handle.peer_id, genesis.name, genesis.community
        );
        let mut events = running.events;
        let printer = tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                if let NetEvent::Listening(addr) = e {
                    println!("listening on {addr}");
                }
            }
        });
        let mut task = running.task;
        let stopped_early = tokio::select! {
            r = &mut task => Some(r),
            _ = shutdown_signal() => None,
        };
        let result = match stopped_early {
            Some(r) => r,
            None => {
                running.handle.shutdown().await;
                task.await
            }
        };
        api.abort();
        printer.abort();
        let _ = std::fs::remove_file(&socket);
        result.context("the node's task failed")??;
        println!("stopped cleanly");
        Ok(())
    })
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
}
