//! Misbehaving members: forgers, flooders, impostors, Lamport bombs and
//! sync forgers, and the events they make.

use super::*;

/// Hostile posts kept for moderators to pick from (see `hostile_posts`).
pub(super) const HOSTILE_POSTS_MAX: usize = 4_096;

/// The flooder's faked clock on every fourth post: a century ahead, so the
/// TTL cap (which counts from `ts`) cannot reach it; only moderation can.
pub(super) const FAKED_TS_AHEAD_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AdvKind {
    BadSignature,
    NonMember,
    LamportBomb,
    Flooder,
    Impostor,
    SyncForger,
}

impl AdvKind {
    /// Whether anchor 0 admits this adversary before the run.
    pub(super) fn admitted(self) -> bool {
        !matches!(self, AdvKind::NonMember | AdvKind::SyncForger)
    }
}

#[derive(Debug)]
pub(super) struct Adversary {
    pub(super) identity: Identity,
    pub(super) kind: AdvKind,
    pub(super) peers: Vec<Ix>,
    pub(super) sent: u64,
}

/// The event's bytes with one bit of its signature's R flipped.
pub(super) fn flip_signature(ev: &VerifiedEvent) -> Vec<u8> {
    let mut b = ev.bytes().to_vec();
    if let Some(pos) = find(&b, ev.signature()) {
        b[pos] ^= 1;
    }
    b
}

/// Where `needle` starts in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Sim {
    pub(super) fn adversary_step(&mut self, a: usize) -> Result<(), SimError> {
        match self.advs[a].kind {
            AdvKind::Impostor => return self.impostor_step(a),
            AdvKind::SyncForger => return self.sync_forger_step(a),
            _ => {}
        }
        let n = self.slots.len();
        let kind = self.advs[a].kind;
        let burst = match kind {
            AdvKind::Flooder => (self.cfg.flood_events / 10).max(1),
            _ => 1,
        };
        for _ in 0..burst {
            let adv = &mut self.advs[a];
            adv.sent += 1;
            let sent = adv.sent;
            let lamport = match kind {
                AdvKind::LamportBomb => LAMPORT_MAX - adv.sent,
                _ => adv.sent,
            };
            let identity = adv.identity.clone();
            let title = format!("{kind:?} {lamport}");
            let ev = if kind == AdvKind::Flooder {
                // A hostile member's own config: posts that never expire
                // (the cap must end them), and every fourth with its clock
                // a century ahead (it escapes the cap; moderation ends it).
                let mut content = self.adversary_content(&title);
                content.expires_at = u64::MAX;
                let ts = if sent.is_multiple_of(4) {
                    self.now.saturating_add(FAKED_TS_AHEAD_MS)
                } else {
                    self.now
                };
                let community = self.genesis.founded_community().unwrap_or_default();
                let ev = self.adversary_event_at(
                    &identity,
                    lamport,
                    ts,
                    community,
                    Payload::PostCreated(PostCreated {
                        content: content.into(),
                        client_id: None,
                    }),
                )?;
                if self.hostile_posts.len() < HOSTILE_POSTS_MAX {
                    self.hostile_posts.push((identity.node_id(), ev.event().id));
                }
                ev
            } else {
                self.adversary_post(&identity, lamport, &title)?
            };
            let bytes: Vec<u8> = match kind {
                AdvKind::BadSignature => flip_signature(&ev),
                AdvKind::LamportBomb | AdvKind::Flooder => {
                    self.registry
                        .insert(*ev.hash(), EventInfo::new(self.now, false, lamport));
                    ev.bytes().to_vec()
                }
                _ => ev.bytes().to_vec(),
            };
            let msg = Gossip::new(bytes);
            self.trace(12, a as u64, lamport, &msg.id.0);
            let peers = self.advs[a].peers.clone();
            for p in peers {
                self.send(n + a, p, Msg::Gossip(msg.clone()))?;
            }
        }
        Ok(())
    }

    /// A post signed by `identity` in this community, a week's TTL.
    pub(super) fn adversary_post(
        &mut self,
        identity: &Identity,
        lamport: u64,
        title: &str,
    ) -> Result<VerifiedEvent, SimError> {
        let community = self.genesis.founded_community().unwrap_or_default();
        self.adversary_event(
            identity,
            lamport,
            community,
            Payload::PostCreated(PostCreated {
                content: self.adversary_content(title).into(),
                client_id: None,
            }),
        )
    }

    pub(super) fn adversary_content(&self, title: &str) -> PostContent {
        PostContent {
            category: Category::Offer,
            title: title.to_owned(),
            body: String::new(),
            tags: vec![],
            expires_at: self.now + 7 * 24 * 3600 * 1000,
            location: None,
        }
    }

    pub(super) fn adversary_event(
        &mut self,
        identity: &Identity,
        lamport: u64,
        community: CommunityId,
        payload: Payload,
    ) -> Result<VerifiedEvent, SimError> {
        self.adversary_event_at(identity, lamport, self.now, community, payload)
    }

    /// An adversary's event with its own choice of `ts` (the author's clock,
    /// advisory: nothing checks it against anyone's time).
    pub(super) fn adversary_event_at(
        &mut self,
        identity: &Identity,
        lamport: u64,
        ts: u64,
        community: CommunityId,
        payload: Payload,
    ) -> Result<VerifiedEvent, SimError> {
        let random = u128::from(self.rng_fault.next_u64());
        Ok(Event {
            id: EventId::from_parts(self.now, random),
            ts,
            author: identity.node_id(),
            lamport,
            community,
            payload,
        }
        .sign(identity)?)
    }

    /// The impostor, a plain member, publishes by gossip what only others
    /// may: an update of someone else's post, a `fulfilled` expiry of it
    /// (author-only), a `stale` or `moderated` expiry (trusted only), or
    /// community settings (anchors only). Its Lamport time
    /// is above every honest event's, so each would win if a view let it
    /// count. The events are valid and enter every log; views ignore them.
    pub(super) fn impostor_step(&mut self, a: usize) -> Result<(), SimError> {
        let n = self.slots.len();
        if self.posts.is_empty() {
            return Ok(());
        }
        let (author, target) = self.posts[self.rng_fault.index(self.posts.len())];
        let adv = &mut self.advs[a];
        adv.sent += 1;
        let (sent, identity) = (adv.sent, adv.identity.clone());
        let lamport = self.lamport_honest_max + 1;
        let payload = match sent % 5 {
            0 => Payload::PostUpdated(PostUpdated {
                target,
                content: self
                    .adversary_content(&format!("impostor's edit of node {author}'s post"))
                    .into(),
            }),
            1 => Payload::PostExpired(PostExpired {
                target,
                reason: ExpiryReason::Fulfilled,
            }),
            2 => Payload::PostExpired(PostExpired {
                target,
                reason: ExpiryReason::Stale,
            }),
            // A plain member moderating: counts only from trusted or anchor.
            3 => Payload::PostExpired(PostExpired {
                target,
                reason: ExpiryReason::Moderated,
            }),
            // A plain member's settings, drastic enough to show anywhere
            // they counted: a minute's cap, one post per author.
            _ => Payload::Settings(CommunitySettings {
                name: format!("impostor's name {sent}"),
                post_ttl_max_s: 60,
                posts_per_author_max: 1,
            }),
        };
        let community = self.genesis.founded_community().unwrap_or_default();
        let ev = self.adversary_event(&identity, lamport, community, payload)?;
        self.registry
            .insert(*ev.hash(), EventInfo::new(self.now, false, lamport));
        let msg = Gossip::new(ev.bytes().to_vec());
        self.trace(12, a as u64, lamport, &msg.id.0);
        let peers = self.advs[a].peers.clone();
        for p in peers {
            self.send(n + a, p, Msg::Gossip(msg.clone()))?;
        }
        Ok(())
    }

    /// The bad events the sync forger pushes: a member's post with a
    /// forged signature, the same garbled (cut in half), the same with a
    /// zeroed signature (unsigned), its own post (it is no member) and a
    /// member's genuine post for another community. The genuine post they
    /// are made from is never sent: if any of these enters a log, the
    /// registry does not know it.
    pub(super) fn forged_batch(&mut self, a: usize) -> Result<Vec<Vec<u8>>, SimError> {
        let n = self.slots.len();
        let adv = &mut self.advs[a];
        adv.sent += 1;
        let (sent, forger) = (adv.sent, adv.identity.clone());
        let lamport = self.lamport_honest_max + 1;
        let member = self.slots[1 + self.rng_fault.index(n - 1)].identity.clone();
        let genuine = self.adversary_post(&member, lamport, &format!("forged {sent}"))?;
        let forged = flip_signature(&genuine);
        let garbled = genuine.bytes()[..genuine.bytes().len() / 2].to_vec();
        let mut zeroed = genuine.bytes().to_vec();
        if let Some(pos) = find(&zeroed, genuine.signature()) {
            zeroed[pos..pos + 64].fill(0);
        }
        let own = self.adversary_post(&forger, lamport, "not a member")?;
        let elsewhere = self.adversary_event(
            &member,
            lamport,
            CommunityId([0x5a; 32]),
            Payload::PostCreated(PostCreated {
                content: self.adversary_content("elsewhere").into(),
                client_id: None,
            }),
        )?;
        Ok(vec![
            forged,
            garbled,
            zeroed,
            own.bytes().to_vec(),
            elsewhere.bytes().to_vec(),
        ])
    }

    /// The sync forger pushes its batch to each peer in a sync request of
    /// its own, and makes each peer open a sync with it (a connection:
    /// sync on connect), which it answers with another batch.
    pub(super) fn sync_forger_step(&mut self, a: usize) -> Result<(), SimError> {
        let n = self.slots.len();
        let peers = self.advs[a].peers.clone();
        for p in peers {
            if self.slots[p].core.is_none() {
                continue;
            }
            let events = self.forged_batch(a)?;
            let bytes = SyncMessage {
                events,
                ..SyncMessage::default()
            }
            .encode();
            self.trace(15, a as u64, p as u64, &hash_bytes(&bytes).0);
            let session = self.next_session;
            self.next_session += 1;
            self.send(n + a, p, Msg::SyncRequest { session, bytes })?;
            self.start_sync(p, n + a)?;
        }
        Ok(())
    }

    /// The sync forger's answer to a sync an honest node opened with it:
    /// a forged batch to its opening, "nothing more" to the rest.
    pub(super) fn sync_forger_answer(
        &mut self,
        a: usize,
        to: Ix,
        session: u64,
        request: &[u8],
    ) -> Result<(), SimError> {
        let opening = SyncMessage::decode(request).is_ok_and(|m| !m.ranges.is_empty());
        let events = if opening {
            self.forged_batch(a)?
        } else {
            Vec::new()
        };
        let bytes = SyncMessage {
            events,
            ..SyncMessage::default()
        }
        .encode();
        let n = self.slots.len();
        self.send(n + a, to, Msg::SyncResponse { session, bytes })
    }

    /// Injects one adversary burst now (scenarios).
    pub fn adversary_burst(&mut self, kind_index: usize) -> Result<(), SimError> {
        self.adversary_step(kind_index)
    }
}
