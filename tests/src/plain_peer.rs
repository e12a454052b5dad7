//! A plain rust-libp2p gossipsub peer, configured only as DESIGN.md §3
//! tells any outside implementation to be (anonymous messages, SHA-256 of
//! the bytes as the message id, the ident topic `hearthnet/1/<community>`)
//! and sharing nothing with hearth-node's own gossip setup. Tests use it to
//! play a neighbour that misbehaves at the gossip layer: it publishes
//! whatever bytes it is given. Waits are on its swarm's events; the only
//! timeout is the guard that turns a hang into a failure.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Context};
use hearth_proto::{
    Category, CommunityId, Event, EventId, Identity, Payload, PostContent, PostCreated,
};
use libp2p::futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};

use crate::mesh::GUARD;
use crate::FIXED_NOW_MS;

/// The swarm events of a plain peer.
pub type PlainEvent = SwarmEvent<gossipsub::Event>;

/// Events kept while the swarm is driven in the background of another
/// wait. A test sees a few dozen; past this the oldest are dropped (a wait
/// for one of them then ends at the guard, as a failure).
pub const BACKLOG_MAX: usize = 4096;

/// A gossipsub-only swarm with a fresh identity, subscribed to one
/// community's topic.
#[allow(missing_debug_implementations)] // libp2p's Swarm is not Debug
pub struct PlainPeer {
    pub swarm: Swarm<gossipsub::Behaviour>,
    pub topic: IdentTopic,
    /// Events seen by `drive_until`, not yet looked at by `wait_for`.
    backlog: VecDeque<PlainEvent>,
}

impl PlainPeer {
    pub fn new(community: &CommunityId) -> anyhow::Result<PlainPeer> {
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| {
                MessageId::new(&hearth_proto::hash_bytes(&m.data).0)
            })
            .max_transmit_size(1 << 20)
            // Fast heartbeats, as the nodes under test use.
            .heartbeat_interval(Duration::from_millis(100))
            .build()
            .map_err(|e| anyhow!("gossipsub config: {e}"))?;
        let behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
            .map_err(|e| anyhow!("gossipsub: {e}"))?;
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .context("TCP transport")?
            .with_behaviour(|_| behaviour)
            .map_err(|e| anyhow!("behaviour: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let topic = IdentTopic::new(format!("hearthnet/1/{}", community.to_hex()));
        swarm
            .behaviour_mut()
            .subscribe(&topic)
            .map_err(|e| anyhow!("subscribe: {e}"))?;
        Ok(PlainPeer {
            swarm,
            topic,
            backlog: VecDeque::new(),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    pub fn dial(&mut self, addr: Multiaddr) -> anyhow::Result<()> {
        self.swarm
            .dial(addr.clone())
            .with_context(|| format!("dial {addr}"))
    }

    /// Publishes raw bytes on the community topic.
    pub fn publish(&mut self, bytes: Vec<u8>) -> anyhow::Result<MessageId> {
        let topic = self.topic.clone();
        self.swarm
            .behaviour_mut()
            .publish(topic, bytes)
            .map_err(|e| anyhow!("publish: {e}"))
    }

    /// The next event (backlog first), driving the swarm meanwhile.
    pub async fn next(&mut self, what: &str) -> anyhow::Result<PlainEvent> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        tokio::time::timeout(GUARD, self.swarm.select_next_some())
            .await
            .map_err(|_| anyhow!("plain peer timed out waiting for {what}"))
    }

    /// Keeps this swarm running (its connections answered, its publishes
    /// sent) until `fut` completes, e.g. while a test waits on a node;
    /// events seen meanwhile go to the backlog.
    pub async fn drive_until<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                e = self.swarm.select_next_some() => {
                    if self.backlog.len() >= BACKLOG_MAX {
                        self.backlog.pop_front();
                    }
                    self.backlog.push_back(e);
                }
            }
        }
    }

    /// Drives the swarm until an event matches `pred`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&PlainEvent) -> bool,
    ) -> anyhow::Result<PlainEvent> {
        loop {
            let e = self.next(what).await?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }
}

/// A member's post, correctly signed, then one byte of its title changed:
/// still canonical CBOR of a well-formed post, but the signature no longer
/// verifies. `n` makes each forgery distinct (its own message id).
pub fn forged_post(author: &Identity, community: CommunityId, n: u64) -> anyhow::Result<Vec<u8>> {
    let title = format!("Ladder to lend {n}");
    let event = Event {
        id: EventId::from_parts(FIXED_NOW_MS, 1_000 + u128::from(n)),
        ts: FIXED_NOW_MS,
        author: author.node_id(),
        lamport: 100 + n,
        community,
        payload: Payload::PostCreated(PostCreated {
            content: PostContent {
                category: Category::Offer,
                title: title.clone(),
                body: "Aluminium, 3 m".into(),
                tags: vec![],
                expires_at: FIXED_NOW_MS + 86_400_000,
                location: None,
            }
            .into(),
            client_id: None,
        }),
    }
    .sign(author)?;
    let mut bytes = event.into_bytes();
    let at = bytes
        .windows(title.len())
        .position(|w| w == title.as_bytes())
        .ok_or_else(|| anyhow!("title not found in the encoding"))?;
    // "Ladder" -> "ladder": same length, still valid UTF-8.
    bytes[at] ^= 0x20;
    Ok(bytes)
}
