//! `hearth status`: who this node is, its community, and its log.

use hearth_proto::Level;
use serde::Serialize;

use crate::cli::render::{self, relative};
use crate::cli::{now_ms, Ctx};
use crate::store::EventStore;

#[derive(Debug, Serialize)]
struct Status {
    data_dir: String,
    node_id: String,
    /// Absent until the node founds or imports a community.
    community: Option<Community>,
}

#[derive(Debug, Serialize)]
struct Community {
    id: String,
    name: String,
    /// This node's level; `None` while not admitted.
    level: Option<Level>,
    /// Events in the log (genesis included).
    events: u64,
    /// The Lamport clock: the next local event gets `clock + 1`.
    clock: u64,
    /// Highest Lamport time of any marketplace event.
    market_max_lamport: u64,
    /// Events held until their author is admitted (kept in memory only, so
    /// a command-line run starts with none).
    pending: usize,
    /// Posts the view knows, in any state.
    posts: usize,
    /// Of those, the ones `list` can show now.
    posts_live: usize,
}

pub fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    if let Some(mut running) = crate::cli::client::Client::connect(&ctx.dir.socket_path())? {
        return running_status(ctx, &mut running);
    }
    let identity = ctx.dir.load_identity()?;
    let community = if ctx.dir.has_genesis() {
        let (node, genesis) = ctx.open_node()?;
        let views = node.views();
        Some(Community {
            id: genesis.community.to_hex(),
            name: views.membership.community_name().to_owned(),
            level: views.membership.level(&node.node_id()),
            events: node.log().store().len(),
            clock: node.log().clock(),
            market_max_lamport: views.market.max_lamport(),
            pending: node.log().pending_len(),
            posts: views.market.post_count(),
            posts_live: views.market.all_active(now_ms()).count(),
        })
    } else {
        None
    };
    let status = Status {
        data_dir: ctx.dir.root().display().to_string(),
        node_id: identity.node_id().to_hex(),
        community,
    };
    ctx.out.show(&status, |w| {
        let row = |w: &mut dyn std::io::Write, k: &str, v: &str| writeln!(w, "{k:<10}  {v}");
        row(w, "node", &status.node_id)?;
        let Some(c) = &status.community else {
            row(w, "community", "none yet: `hearth run` founds one; `hearth run --join <invite>` (or `hearth join <invite>`) joins one")?;
            return row(w, "data dir", &status.data_dir);
        };
        row(w, "community", &format!("{}  {}", c.id, render::line(&c.name)))?;
        let level = c.level.map_or("not a member (ask an anchor: `hearth member add <this node>`)", |l| l.as_str());
        row(w, "level", level)?;
        row(w, "events", &format!("{} (clock {}, market max lamport {})", c.events, c.clock, c.market_max_lamport))?;
        row(w, "pending", &c.pending.to_string())?;
        row(w, "posts", &format!("{} ({} live)", c.posts, c.posts_live))?;
        row(w, "data dir", &status.data_dir)
    })
}

/// Status of a running node: the offline fields plus its peers.
fn running_status(ctx: &mut Ctx, client: &mut crate::cli::client::Client) -> anyhow::Result<()> {
    let value = client.call("node.status", serde_json::json!({}))?;
    let status: crate::net::driver::Status = serde_json::from_value(value)?;
    ctx.out
        .show(&status, |w| write_running(w, &status, now_ms()))
}

/// The text of a running node's status: who it is, its log, and for each
/// peer how it is connected (direct, relayed, hole-punched), then this
/// node's reachability, relay slots and the reservations it holds.
fn write_running(
    w: &mut dyn std::io::Write,
    status: &crate::net::driver::Status,
    now_ms: u64,
) -> std::io::Result<()> {
    match &status.display_name {
        Some(me) => writeln!(
            w,
            "node        {}  {}  (running)",
            status.node_id,
            render::line(me)
        )?,
        None => writeln!(w, "node        {}  (running)", status.node_id)?,
    }
    writeln!(
        w,
        "community   {}  {}",
        status.community,
        render::line(&status.community_name)
    )?;
    let level = status.level.map_or(
        "not a member (ask an anchor: `hearth member add <this node>`)",
        |l| l.as_str(),
    );
    writeln!(w, "level       {level}")?;
    writeln!(
        w,
        "events      {} (clock {}, {} pending)",
        status.events, status.clock, status.pending
    )?;
    writeln!(w, "posts       {}", status.posts)?;
    match &status.storage_note {
        Some(note) => writeln!(w, "storage     {}: {note}", status.storage.as_str())?,
        None => writeln!(w, "storage     {}", status.storage.as_str())?,
    }
    for a in &status.listen {
        writeln!(w, "listening   {a}")?;
    }
    writeln!(w, "peers       {}", status.peers.len())?;
    for p in &status.peers {
        let synced = p
            .last_sync_ms
            .map_or("never".to_owned(), |t| relative(t, now_ms));
        // People read node ids (what `member add` takes); a libp2p
        // peer id only for a peer whose key is not a node id.
        let who = p.node_id.map_or_else(
            || format!("{} (not a HearthNet node id)", p.peer_id),
            |n| render::short_id(&n.to_hex()).to_owned(),
        );
        match p.connection {
            Some(how) => writeln!(w, "  {who}  last sync {synced}  ({})", how.as_str())?,
            None => writeln!(w, "  {who}  last sync {synced}")?,
        }
    }
    let r = &status.reach;
    let reachability = match r.reachability {
        crate::net::reach::Reachability::Public => "public (others can dial this node)",
        crate::net::reach::Reachability::Private => {
            "behind NAT (reached through relays; hole punching upgrades)"
        }
        crate::net::reach::Reachability::Unknown => "not known yet (AutoNAT has not answered)",
    };
    writeln!(w, "reachable   {reachability}")?;
    for a in &r.external {
        writeln!(w, "external    {a}")?;
    }
    for res in &r.reservations {
        let state = if res.accepted { "reserved" } else { "asking" };
        // By node id, as everywhere people read this.
        let relay = res
            .relay
            .parse::<libp2p::PeerId>()
            .ok()
            .and_then(|p| crate::net::identity::node_id(&p))
            .map_or_else(
                || res.relay.clone(),
                |n| render::short_id(&n.to_hex()).to_owned(),
            );
        writeln!(w, "relay slot  {relay}  {state}")?;
    }
    if r.relay_server {
        writeln!(w, "relaying    for {} reservations", r.reservations_held)?;
    }
    writeln!(w, "members known (Kademlia)  {}", r.routing_table.len())?;
    if status.gossip.rate_limited > 0 {
        writeln!(
            w,
            "rate limit  {} gossip messages over a peer's rate were dropped (sync fetches them later)",
            status.gossip.rate_limited
        )?;
    }
    for b in &status.banned {
        let who = b.node_id.map_or_else(
            || b.peer_id.clone(),
            |n| render::short_id(&n.to_hex()).to_owned(),
        );
        writeln!(
            w,
            "banned      {who}  sent invalid events; ban ends {}",
            relative(b.until_ms, now_ms)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::net::driver::Status;
    use crate::net::reach::{ConnKind, Reachability, Reservation};

    /// A node behind NAT: each peer line says how it is connected.
    fn status(relay: &libp2p::PeerId) -> Status {
        let mut s: Status = serde_json::from_value(serde_json::json!({
            "node_id": "11".repeat(32),
            "community": "22".repeat(32),
            "level": "member",
            "events": 3, "clock": 3, "pending": 0, "posts": 0,
            "listen": [], "peers": [], "digest": "",
            "gossip": {"received": 0, "unique": 0},
        }))
        .unwrap();
        for (n, kind) in [
            ("33", ConnKind::Direct),
            ("44", ConnKind::Relayed),
            ("55", ConnKind::HolePunched),
        ] {
            s.peers.push(crate::net::driver::PeerStatus {
                node_id: Some(serde_json::from_value(serde_json::json!(n.repeat(32))).unwrap()),
                peer_id: libp2p::PeerId::random().to_string(),
                last_sync_ms: None,
                score: None,
                connection: Some(kind),
                address: None,
                connected_since_ms: None,
                events_received: 0,
                events_sent: 0,
            });
        }
        s.reach.reachability = Reachability::Private;
        s.reach.reservations = vec![Reservation {
            relay: relay.to_string(),
            accepted: true,
        }];
        s
    }

    /// `hearth status` of a running node shows each peer's connection
    /// kind, this node's reachability, its relay slots (by the relay's
    /// node id) and, on a relay, the reservations it holds.
    #[test]
    fn test_running_status_shows_kinds_reachability_and_slots() {
        let relay_node = crate::net::identity::keypair(&hearth_proto::Identity::from_seed([7; 32]));
        let relay = relay_node.public().to_peer_id();
        let mut s = status(&relay);
        let mut out = Vec::new();
        write_running(&mut out, &s, 0).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in ["(direct)", "(relayed)", "(hole-punched)", "behind NAT"] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
        let relay_id = crate::net::identity::node_id(&relay).unwrap().to_hex();
        let slot = format!("relay slot  {}  reserved", render::short_id(&relay_id));
        assert!(text.contains(&slot), "no {slot:?} in:\n{text}");
        assert!(!text.contains("relaying"), "not a relay:\n{text}");

        s.reach.reachability = Reachability::Public;
        s.reach.reservations[0].accepted = false;
        s.reach.relay_server = true;
        s.reach.reservations_held = 3;
        let mut out = Vec::new();
        write_running(&mut out, &s, 0).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in ["public", "asking", "relaying    for 3 reservations"] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
    }
}
