//! Real libp2p nodes on loopback TCP for the multi-node tests and the
//! gossip benchmarks. Nodes wait on the driver's events, never on timers;
//! the only timeout is a guard that turns a hang into a failure.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use anyhow::{anyhow, Context};
use hearth_node::core::{Config, Node};
use hearth_node::net::driver::{self, Handle, NetConfig, NetEvent, Running};
use hearth_node::store::MemoryStore;
use hearth_proto::{
    CommunityId, Event, EventHash, EventId, Identity, Level, MemberSet, Payload, VerifiedEvent,
};
use libp2p::Multiaddr;
use tokio::sync::broadcast;

use crate::{genesis, identity, FIXED_NOW_MS};

/// A hang becomes a failure after this long (a guard, not a wait).
pub const GUARD: Duration = Duration::from_secs(90);

/// A community whose anchor has admitted `members` up front: every node is
/// seeded with that history, as if it had synced it long ago.
#[derive(Debug)]
pub struct Community {
    pub anchor: Identity,
    pub genesis: VerifiedEvent,
    pub history: Vec<VerifiedEvent>,
}

impl Community {
    pub fn new(members: &[Identity]) -> anyhow::Result<Community> {
        let anchor = identity(1);
        let genesis = genesis(&anchor, "Mesh Street")?;
        let community = genesis
            .founded_community()
            .ok_or_else(|| anyhow!("not a genesis"))?;
        let history = members
            .iter()
            .enumerate()
            .map(|(i, m)| member_set(&anchor, community, 1 + i as u64, m, Level::Member))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Community {
            anchor,
            genesis,
            history,
        })
    }

    pub fn id(&self) -> CommunityId {
        CommunityId(self.genesis.hash().0)
    }

    /// A node for `who` with the community's history in a fresh store.
    pub fn node(&self, who: &Identity, seed: u64) -> anyhow::Result<Node<MemoryStore>> {
        let mut node = Node::new(
            who.clone(),
            &self.genesis,
            MemoryStore::new(),
            Config::default(),
            seed,
        )?;
        for e in &self.history {
            node.log_mut().append_received(e.clone())?;
        }
        Ok(node)
    }
}

pub fn member_set(
    anchor: &Identity,
    community: CommunityId,
    lamport: u64,
    member: &Identity,
    level: Level,
) -> Result<VerifiedEvent, hearth_proto::EventError> {
    Event {
        id: EventId::from_parts(FIXED_NOW_MS, u128::from(lamport)),
        ts: FIXED_NOW_MS,
        author: anchor.node_id(),
        lamport,
        community,
        payload: Payload::MemberSet(MemberSet {
            member: member.node_id(),
            level,
        }),
    }
    .sign(anchor)
}

/// A tiny deterministic generator for test topologies (xorshift64): the
/// same seed always wires the same mesh.
#[derive(Debug, Clone)]
pub struct Topology(u64);

impl Topology {
    pub fn new(seed: u64) -> Topology {
        Topology(seed | 1)
    }

    /// A number in `0..m`.
    pub fn pick(&mut self, m: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % m.max(1) as u64) as usize
    }
}

/// Loopback only, no mDNS, fast heartbeats, and periodic sync off unless a
/// test asks for it (sync still runs on every new connection).
pub fn test_net_config(bootstrap: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0"
            .parse()
            .unwrap_or_else(|_| Multiaddr::empty())],
        bootstrap,
        mdns: false,
        heartbeat: Duration::from_millis(100),
        sync_interval: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(300),
        ban_duration: hearth_node::net::gossip::BAN_DURATION,
        ..NetConfig::default()
    }
}

/// A running node under test.
#[derive(Debug)]
pub struct TestNode {
    pub handle: Handle,
    pub events: broadcast::Receiver<NetEvent>,
    pub task: tokio::task::JoinHandle<anyhow::Result<Node<MemoryStore>>>,
    /// Dialable address, with `/p2p/<peer id>`.
    pub addr: Multiaddr,
    /// Hashes this node has stored since it started.
    pub stored: BTreeSet<EventHash>,
    /// Events that arrived before the listen address, not yet looked at.
    backlog: VecDeque<NetEvent>,
}

impl TestNode {
    pub async fn start(node: Node<MemoryStore>, cfg: NetConfig) -> anyhow::Result<TestNode> {
        let Running {
            handle,
            mut events,
            task,
        } = driver::spawn(node, cfg)?;
        // A bootstrap connection can come up before the listen address:
        // keep such events for the test instead of dropping them.
        let mut backlog = VecDeque::new();
        let addr = loop {
            match recv(&mut events, "a listen address").await? {
                NetEvent::Listening(a) => break a,
                other => backlog.push_back(other),
            }
        };
        let addr = addr.with(libp2p::multiaddr::Protocol::P2p(handle.peer_id));
        Ok(TestNode {
            handle,
            events,
            task,
            addr,
            stored: BTreeSet::new(),
            backlog,
        })
    }

    /// Waits until every hash in `want` has been stored here.
    pub async fn wait_stored(&mut self, want: &BTreeSet<EventHash>) -> anyhow::Result<()> {
        while !want.is_subset(&self.stored) {
            self.next("stored events").await?;
        }
        Ok(())
    }

    /// Waits for the first event matching `pred`, remembering stored hashes.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&NetEvent) -> bool,
    ) -> anyhow::Result<NetEvent> {
        loop {
            let e = self.next(what).await?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }

    /// The next event (backlog first), remembering stored hashes.
    async fn next(&mut self, what: &str) -> anyhow::Result<NetEvent> {
        let e = match self.backlog.pop_front() {
            Some(e) => e,
            None => recv(&mut self.events, what).await?,
        };
        if let NetEvent::Stored { hash, .. } = &e {
            self.stored.insert(*hash);
        }
        Ok(e)
    }

    pub async fn digest(&self) -> anyhow::Result<String> {
        Ok(self.handle.status().await.context("status")?.digest)
    }

    pub async fn stop(self) -> anyhow::Result<Node<MemoryStore>> {
        self.handle.shutdown().await;
        self.task.await.context("driver task panicked")?
    }
}

async fn recv(events: &mut broadcast::Receiver<NetEvent>, what: &str) -> anyhow::Result<NetEvent> {
    match tokio::time::timeout(GUARD, events.recv()).await {
        Err(_) => Err(anyhow!("timed out waiting for {what}")),
        Ok(Ok(e)) => Ok(e),
        Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
            Err(anyhow!("fell {n} events behind waiting for {what}"))
        }
        Ok(Err(broadcast::error::RecvError::Closed)) => {
            Err(anyhow!("node stopped while waiting for {what}"))
        }
    }
}
