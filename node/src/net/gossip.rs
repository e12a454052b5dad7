//! Gossipsub as DESIGN.md §3 fixes it: raw event bytes on the topic
//! `hearthnet/1/<community hex>`, libp2p signing off (events carry their own
//! signatures), message id = SHA-256 of the bytes (the event hash), and
//! every message validated by the core before it is forwarded.
//!
//! This module also owns the defences of the gossip path: the peer-score
//! parameters (what an invalid event costs and what honest behaviour earns),
//! the per-peer rate limiter that sits before the core, and the list of
//! peers banned for falling below the graylist threshold. The limiter and
//! the ban list are plain data with `now` passed in; the driver owns the
//! clock and the swarm calls.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hearth_proto::CommunityId;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use libp2p::PeerId;
use sha2::{Digest, Sha256};

use super::driver::UNPUBLISHED_MAX;

/// A gossipsub frame can carry many events (an IWANT answer bundles them),
/// and the limit applies to the whole frame: 1 MiB, far above one 16 KiB event.
pub const MAX_TRANSMIT_BYTES: usize = 1 << 20;
/// Per-connection send queue: a burst of a few hundred posts (a node back
/// online publishing its backlog) must not overflow it.
pub const HANDLER_QUEUE_LEN: usize = 10_000;

pub fn topic(community: &CommunityId) -> IdentTopic {
    IdentTopic::new(format!("hearthnet/1/{}", community.to_hex()))
}

pub fn message_id(bytes: &[u8]) -> MessageId {
    MessageId::new(&Sha256::digest(bytes))
}

/// Builds the behaviour with every setting that matters spelled out.
pub fn behaviour(
    community: &CommunityId,
    heartbeat: Duration,
) -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub::ConfigBuilder::default()
        // Anonymous: no from/seqno/signature fields; events are self-signed.
        .validation_mode(ValidationMode::Anonymous)
        // Message id = event hash; the default (from + seqno) would be the
        // same for every unsigned message and drop all but the first.
        .message_id_fn(|m: &gossipsub::Message| message_id(&m.data))
        // Forward only what the core accepted (report_message_validation_result).
        .validate_messages()
        .max_transmit_size(MAX_TRANSMIT_BYTES)
        .connection_handler_queue_len(HANDLER_QUEUE_LEN)
        // Default is 1 s; a community mesh converges faster with shorter
        // heartbeats, and tests pass a small value so meshes form quickly.
        .heartbeat_interval(heartbeat)
        // Publish to every subscribed peer, not only the mesh: a post reaches
        // a small neighbourhood at once even before the mesh is grafted.
        .flood_publish(true)
        // Events are kept for sync anyway; remember ids long enough that a
        // burst relayed around the mesh is not re-delivered.
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gossip = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)?;
    let (params, thresholds) = scoring(community);
    gossip.with_peer_score(params, thresholds)?;
    Ok(gossip)
}

// Peer scoring: the arithmetic (gossipsub v1.1 score, one topic, weight 1).
//
// Credit, the only positive terms, each capped so that no honest history
// can pay for invalid events:
// - P1 time in the mesh: +1 per minute grafted, capped at +10 (ten minutes).
//   Counted only while the peer is in our mesh, and a negative score gets it
//   pruned at the next heartbeat, so a penalised peer loses P1 at once.
// - P2 first deliveries: +0.1 per event it was first to bring, capped at +10
//   (100 events), the counter decaying to a tenth in an hour.
// So credit <= +20 (also the topic cap).
//
// Penalty, P4 invalid events: -16 x c^2, c = invalid events delivered
// (decaying, half-life one hour while connected, frozen while disconnected
// because gossipsub does not decay retained scores):
// - c = 1: -16,  below the gossip threshold (-10): no IHAVE/IWANT with it;
// - c = 2: -64,  below the publish threshold (-50): we stop flooding to it;
//                 above the graylist (-80) even with no credit;
// - c = 3: -144, below the graylist (-80) even with the full +20 credit:
//                 gossipsub drops its RPCs and the driver disconnects and
//                 bans it (BAN_DURATION).
// Staying graylisted: with the full +20 credit the score is back above -80
// when 16 c^2 < 100, c < 2.5, i.e. after 3,600 s x log2(3 / 2.5) = 16 min
// connected; with no credit (c < 2.24) after 25 min. The ban (10 min) comes
// first and freezes the counter (retained scores do not decay), so a
// forger is refused for 10 min, then graylisted for 16-25 min more.
// Everything else that could push an honest peer down is off or tolerant:
// P3/P3b (mesh delivery deficits: a quiet neighbourhood topic would punish
// everyone), P5 (we set no application score), P6 (households share a
// router's IP; tests share loopback), slow-peer penalties (our own send
// queue overflowing during a backlog burst is not the peer's fault, and
// sync repairs it); P7 (protocol misbehaviour: GRAFT during backoff, broken
// IWANT promises) tolerates two incidents (a reconnect race) and forgets
// within seconds, but punishes a spammer quadratically while it lasts.

/// Score below which gossipsub ignores a peer's RPCs, and the driver
/// disconnects and bans it.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;
/// P4 weight: what one invalid event costs, squared by their count.
pub const INVALID_EVENT_WEIGHT: f64 = -16.0;
/// The P4 counter halves in an hour of connection: a forger stays
/// graylisted for minutes, an honest peer that relayed one bad event
/// (a bug) recovers within the hour.
pub const INVALID_EVENT_HALF_LIFE: Duration = Duration::from_secs(3600);
/// P1: credit per second in the mesh (+1 per minute)...
pub const MESH_TIME_CREDIT_PER_S: f64 = 1.0 / 60.0;
/// ...up to this many seconds (+10).
pub const MESH_TIME_CAP_S: f64 = 600.0;
/// P2: credit per event first delivered...
pub const FIRST_DELIVERY_CREDIT: f64 = 0.1;
/// ...up to this many events (+10).
pub const FIRST_DELIVERY_CAP: f64 = 100.0;
/// The most positive score a peer can hold (P1 + P2 caps).
pub const CREDIT_MAX: f64 =
    MESH_TIME_CREDIT_PER_S * MESH_TIME_CAP_S + FIRST_DELIVERY_CREDIT * FIRST_DELIVERY_CAP;
/// Counters are decayed this often (gossipsub's minimum).
const DECAY_INTERVAL: Duration = Duration::from_secs(1);
/// A counter below this counts as zero.
const DECAY_TO_ZERO: f64 = 0.1;

/// Per-interval decay factor for a counter that should halve in `half_life`.
fn decay_for_half_life(half_life: Duration) -> f64 {
    0.5_f64.powf(DECAY_INTERVAL.as_secs_f64() / half_life.as_secs_f64())
}

/// Peer scoring: every topic and global parameter chosen here, field by
/// field (no `..Default::default()`, whose values change between versions);
/// the arithmetic is in the comment above.
pub fn scoring(community: &CommunityId) -> (PeerScoreParams, PeerScoreThresholds) {
    let topic = TopicScoreParams {
        // One topic: its score is the score.
        topic_weight: 1.0,
        // P1: the default (1 ms quantum, cap 3,600) earned ~1,000 points a
        // second and out-paid any penalty within a second; +1 a minute,
        // capped at +10.
        time_in_mesh_weight: MESH_TIME_CREDIT_PER_S,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: MESH_TIME_CAP_S,
        // P2: small, capped credit for bringing events first (default
        // weight 1, cap 2,000 would let a relay bank +2,000).
        first_message_deliveries_weight: FIRST_DELIVERY_CREDIT,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(3600)),
        first_message_deliveries_cap: FIRST_DELIVERY_CAP,
        // P3: off. It punishes mesh peers that deliver fewer than
        // `threshold` messages per window: a quiet neighbourhood topic
        // (a few posts a day) would punish every honest peer. The other
        // P3 fields only matter when the weight is non-zero.
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 20.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(5),
        // P3b: off, it is the sticky form of P3.
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        // P4: three invalid events graylist a peer whatever its credit.
        invalid_message_deliveries_weight: INVALID_EVENT_WEIGHT,
        invalid_message_deliveries_decay: decay_for_half_life(INVALID_EVENT_HALF_LIFE),
    };
    let mut topics = HashMap::new();
    topics.insert(self::topic(community).hash(), topic);
    let params = PeerScoreParams {
        topics,
        // Positive topic score never exceeds the P1 + P2 caps anyway; the
        // cap says so (default 3,600).
        topic_score_cap: CREDIT_MAX,
        // P5: we never set an application score.
        app_specific_weight: 0.0,
        // P6: off. Households behind one router (and loopback tests) share
        // an IP; the threshold is gossipsub's default, unused at weight 0.
        ip_colocation_factor_weight: 0.0,
        ip_colocation_factor_threshold: 10.0,
        ip_colocation_factor_whitelist: Default::default(),
        // P7: a reconnect race can cost an honest peer one GRAFT-in-backoff
        // (two penalty points): tolerate two (default 0). Beyond, the
        // default -10 x excess^2, forgotten at 0.2 a second (default), so
        // a spammer is punished while it spams and nobody for long.
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 2.0,
        behaviour_penalty_decay: 0.2,
        // Gossipsub's minimum and default.
        decay_interval: DECAY_INTERVAL,
        decay_to_zero: DECAY_TO_ZERO,
        // Longer than the ban, so a banned peer comes back with its
        // penalty (retained scores do not decay); a peer away for an hour
        // is forgotten (default).
        retain_score: Duration::from_secs(3600),
        // Off (default -0.2 per message): our own send queue overflowing
        // during a backlog burst is not the peer's misbehaviour, and a
        // large enough burst would otherwise graylist an honest slow node.
        slow_peer_weight: 0.0,
        slow_peer_threshold: 0.0,
        slow_peer_decay: 0.2,
    };
    let thresholds = PeerScoreThresholds {
        // One invalid event (-16) stops gossip (IHAVE/IWANT) with a peer.
        gossip_threshold: -10.0,
        // Two (-64) stop our flood-publishing to it.
        publish_threshold: -50.0,
        // Three (-144 + at most +20) graylist it.
        graylist_threshold: GRAYLIST_THRESHOLD,
        // PX is off in our config; only a peer with full credit could
        // offer peers if it were turned on (default 10).
        accept_px_threshold: CREDIT_MAX / 2.0,
        // Opportunistic grafting when the mesh's median peer has earned
        // less than five minutes in the mesh (default 20, above our cap,
        // would graft every time).
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

/// Gossip messages a peer may bring at once before the rate limit applies:
/// a node back from offline republishes up to `UNPUBLISHED_MAX` (1,024)
/// local events in one burst through each peer, plus room for the rest of
/// the neighbourhood's live traffic relayed in the same minutes.
pub const GOSSIP_BURST_MAX: u32 = UNPUBLISHED_MAX as u32 + 256;
/// Sustained messages per second per peer once the burst is spent. A
/// neighbourhood of 500 households posting ten times a day makes ~0.06
/// events a second, all of which one relay may carry; 10 a second is 170
/// times that, and refills a whole burst in about two minutes.
pub const GOSSIP_RATE_PER_S: u32 = 10;
/// Peers whose buckets are kept. A node talks to tens of peers; past this
/// the bucket untouched longest is dropped. It has been refilling all that
/// time, so dropping it gives its peer little it did not already have, and
/// buckets outlive disconnects so a reconnect does not refill one.
pub const GOSSIP_RATE_PEERS_MAX: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per propagating peer, in front of the core: over the
/// limit a message is ignored (not stored now; sync brings it later, so
/// the log stays a function of the event set).
#[derive(Debug)]
pub struct RateLimiter {
    buckets: BTreeMap<PeerId, Bucket>,
    burst: f64,
    per_s: f64,
    peers_max: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(GOSSIP_BURST_MAX, GOSSIP_RATE_PER_S, GOSSIP_RATE_PEERS_MAX)
    }
}

impl RateLimiter {
    pub fn new(burst: u32, per_s: u32, peers_max: usize) -> RateLimiter {
        RateLimiter {
            buckets: BTreeMap::new(),
            burst: f64::from(burst),
            per_s: f64::from(per_s),
            peers_max: peers_max.max(1),
        }
    }

    /// Takes a token from `peer`'s bucket; false when it has none left.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= self.peers_max {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.buckets.remove(&p);
            }
        }
        let burst = self.burst;
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_s).min(burst);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Peers with a bucket (at most `peers_max`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// How long a peer that fell below the graylist threshold is refused
/// (the default of `NetConfig::ban_duration`).
/// Its gossipsub score is retained (not decayed) meanwhile, so when it
/// comes back it is still graylisted until its penalty decays.
pub const BAN_DURATION: Duration = Duration::from_secs(600);
/// Bans held at once. Each costs an entry; an attacker with many keys
/// could fill the list, so past this the ban ending soonest is lifted
/// early: that peer is still graylisted by its retained score.
pub const BANNED_PEERS_MAX: usize = 256;

/// Peers refused until a deadline. The driver blocks them in the swarm
/// and unblocks them when `expire` returns them.
#[derive(Debug, Default)]
pub struct BanList {
    until: BTreeMap<PeerId, Instant>,
}

impl BanList {
    /// Bans `peer` until `now + duration`. Returns a peer whose ban was
    /// lifted early to stay within `BANNED_PEERS_MAX`, to be unblocked.
    pub fn ban(&mut self, peer: PeerId, now: Instant, duration: Duration) -> Option<PeerId> {
        let mut lifted = None;
        if !self.until.contains_key(&peer) && self.until.len() >= BANNED_PEERS_MAX {
            lifted = self.until.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p);
            if let Some(p) = lifted {
                self.until.remove(&p);
            }
        }
        self.until.insert(peer, now + duration);
        lifted
    }

    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.until.get(peer).is_some_and(|t| *t > now)
    }

    /// Removes and returns the bans that ended by `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let ended: Vec<PeerId> = self
            .until
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &ended {
            self.until.remove(p);
        }
        ended
    }

    /// When the next ban ends, to arm the driver's timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.until.values().min().copied()
    }

    /// Banned peers and when each ban ends.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &Instant)> {
        self.until.iter()
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The score of a peer with `invalid` invalid events and `credit` of
    /// P1 + P2, as gossipsub computes it for one topic of weight 1.
    fn score(invalid: f64, credit: f64) -> f64 {
        INVALID_EVENT_WEIGHT * invalid * invalid + credit
    }

    /// The parameters pass gossipsub's own validation.
    #[test]
    fn scoring_parameters_are_valid() {
        let (params, thresholds) = scoring(&CommunityId::default());
        params.validate().unwrap();
        thresholds.validate().unwrap();
        assert_eq!(params.topics.len(), 1);
    }

    /// Two invalid events leave a peer above the graylist (still
    /// connected, score negative); three graylist it whatever its credit.
    #[test]
    fn three_invalid_events_graylist_two_do_not() {
        assert!(score(1.0, CREDIT_MAX) < CREDIT_MAX);
        assert!(score(2.0, 0.0) > GRAYLIST_THRESHOLD);
        assert!(score(2.0, 0.0) < 0.0);
        assert!(score(3.0, CREDIT_MAX) < GRAYLIST_THRESHOLD);
    }

    /// After three invalid events a peer stays graylisted for minutes of
    /// connection, even with the full credit.
    #[test]
    fn a_forger_stays_graylisted_for_minutes() {
        let (params, _) = scoring(&CommunityId::default());
        let topic = params.topics.values().next().unwrap();
        let decay = topic.invalid_message_deliveries_decay;
        let mut c = 3.0_f64;
        let mut seconds = 0;
        while score(c, CREDIT_MAX) < GRAYLIST_THRESHOLD {
            c *= decay;
            seconds += 1;
        }
        assert!(
            (10 * 60..30 * 60).contains(&seconds),
            "graylisted for {seconds} s"
        );
    }

    /// The time-in-mesh credit grows at +1 a minute and stops at +10: the
    /// default grew ~1,000 a second.
    #[test]
    fn mesh_time_credit_is_slow_and_capped() {
        let (params, _) = scoring(&CommunityId::default());
        let t = params.topics.values().next().unwrap();
        let per_s = t.time_in_mesh_weight / t.time_in_mesh_quantum.as_secs_f64();
        assert!((per_s * 60.0 - 1.0).abs() < 1e-9);
        assert!((t.time_in_mesh_weight * t.time_in_mesh_cap - 10.0).abs() < 1e-9);
        let credit = t.time_in_mesh_weight * t.time_in_mesh_cap
            + t.first_message_deliveries_weight * t.first_message_deliveries_cap;
        assert!(credit <= 20.0 && (credit - CREDIT_MAX).abs() < 1e-9);
        assert!(params.topic_score_cap <= CREDIT_MAX);
    }

    /// A peer gets its burst, then one message per refill interval.
    #[test]
    fn rate_limiter_allows_the_burst_then_the_rate() {
        let mut r = RateLimiter::new(5, 10, 8);
        let p = PeerId::random();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(r.allow(p, t0));
        }
        assert!(!r.allow(p, t0), "the burst is spent");
        assert!(!r.allow(p, t0 + Duration::from_millis(50)));
        assert!(r.allow(p, t0 + Duration::from_millis(150)), "refilled one");
        assert!(!r.allow(p, t0 + Duration::from_millis(150)));
        // A long pause refills the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert!(r.allow(p, later));
        }
        assert!(!r.allow(p, later));
    }

    /// One peer's flood does not spend another peer's tokens.
    #[test]
    fn rate_limiter_buckets_are_per_peer() {
        let mut r = RateLimiter::new(2, 1, 8);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        while r.allow(a, t0) {}
        assert!(r.allow(b, t0));
        assert!(r.allow(b, t0));
        assert!(!r.allow(b, t0));
    }

    /// The bucket map never holds more than its bound; the bucket
    /// untouched longest is the one dropped.
    #[test]
    fn rate_limiter_map_is_bounded() {
        let mut r = RateLimiter::new(2, 1, 3);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().take(3).enumerate() {
            r.allow(*p, t0 + Duration::from_millis(i as u64));
            r.allow(*p, t0 + Duration::from_millis(i as u64));
        }
        assert!(!r.allow(peers[2], t0 + Duration::from_millis(2)));
        r.allow(peers[3], t0 + Duration::from_millis(3));
        assert_eq!(r.len(), 3);
        // peers[0] was dropped (a fresh full bucket), peers[2] was kept
        // (still empty).
        assert!(!r.allow(peers[2], t0 + Duration::from_millis(4)));
    }

    /// A ban holds until its deadline, then `expire` returns the peer.
    #[test]
    fn ban_holds_until_it_expires() {
        let mut bans = BanList::default();
        let p = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(bans.ban(p, t0, BAN_DURATION), None);
        assert!(bans.is_banned(&p, t0 + BAN_DURATION / 2));
        assert!(bans.expire(t0 + BAN_DURATION / 2).is_empty());
        assert_eq!(bans.next_expiry(), Some(t0 + BAN_DURATION));
        assert!(!bans.is_banned(&p, t0 + BAN_DURATION));
        assert_eq!(bans.expire(t0 + BAN_DURATION), vec![p]);
        assert!(bans.is_empty());
    }

    /// Past `BANNED_PEERS_MAX` the ban ending soonest is lifted early and
    /// returned, so the driver can unblock it.
    #[test]
    fn ban_list_is_bounded() {
        let mut bans = BanList::default();
        let t0 = Instant::now();
        let first = PeerId::random();
        assert_eq!(bans.ban(first, t0, BAN_DURATION), None);
        for i in 1..BANNED_PEERS_MAX {
            let at = t0 + Duration::from_millis(i as u64);
            let lifted = bans.ban(PeerId::random(), at, BAN_DURATION);
            assert_eq!(lifted, None);
        }
        let lifted = bans.ban(PeerId::random(), t0 + Duration::from_secs(1), BAN_DURATION);
        assert_eq!(lifted, Some(first));
        assert_eq!(bans.len(), BANNED_PEERS_MAX);
    }
}
