//! Conversations in the simulator (issue 14): the workload's replies,
//! claims, withdrawals, acceptances and sealed messages, and the checks
//! that only the recipient reads a sealed message.
//!
//! Threads (replies, claims, the accepted claim, who fulfilled a post) are
//! checked with the rest of the views: the convergence check compares every
//! node's view digest (conversation facts included), and the reference
//! model over a node's own log derives each thread independently
//! (`Reference::thread`). Sealed messages show in no public view, so this
//! module opens each recorded message with the recipient's key, with the
//! sender's and with a bystander's.

use hearth_node::core::services::conversations::{AcceptParams, ClaimParams, DmSendParams};
use hearth_node::core::services::conversations::{ConversationView, GetParams, ReplyParams};
use hearth_proto::sealed;
use hearth_proto::{ClaimRef, EventRef};

use super::*;

/// Share of workload actions that are conversation actions when
/// `SimConfig::conversations` is on.
pub(super) const CONVERSATION_SHARE: f64 = 0.3;

/// Claims the workload remembers to withdraw or accept later: plenty for a
/// run's choices, bounded so a long soak does not grow it without end
/// (older claims are forgotten first).
pub const CLAIMS_TRACKED_MAX: usize = 4_096;

/// Sealed messages whose readability the final checks verify: each costs
/// three box openings, so a long soak checks its first ones only.
pub const SEALED_AUDIT_MAX: usize = 512;

/// A claim the workload made, for a withdrawal or an acceptance later.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClaimMade {
    pub(super) claimer: Ix,
    pub(super) post_author: Ix,
    pub(super) post: EventRef,
    pub(super) claim: EventRef,
}

/// A sealed message the workload sent, with its plaintext.
#[derive(Debug, Clone)]
pub(super) struct SealedSent {
    pub(super) hash: EventHash,
    pub(super) from: Ix,
    pub(super) to: Ix,
    pub(super) body: String,
}

impl Sim {
    /// One conversation action by a random member that is up: a reply
    /// (35%), a claim (25%), a withdrawal (10%), an acceptance (15%,
    /// sometimes followed by a second acceptance of another claim, as from
    /// the author's second device) or a sealed message (15%).
    pub(super) fn conversation_step(&mut self) -> Result<(), SimError> {
        let roll = self.rng_work.below(100);
        let Some(i) = self.pick_poster() else {
            return Ok(());
        };
        let n = self.stats.workload_done;
        let now = self.node_now(i);
        match roll {
            0..=59 => {
                if self.posts.is_empty() {
                    return Ok(());
                }
                // Replies go to any post (some ended or unknown: refused);
                // claims to an offer or request the claimer sees live,
                // half of them to one claimed before, so posts collect
                // several claims and acceptances have a choice.
                let (a, post) = match self.claims.len() {
                    len if roll >= 35 && len > 0 && self.rng_work.chance(0.5) => {
                        let c = self.claims[self.rng_work.index(len)];
                        (c.post_author, c.post)
                    }
                    _ if roll >= 35 => {
                        let me = self.ids[i];
                        let Some(core) = self.slots[i].core.as_ref() else {
                            return Ok(());
                        };
                        let live: Vec<EventRef> = core
                            .views()
                            .market
                            .all_active(now)
                            .filter(|p| p.author != me)
                            .filter(|p| {
                                matches!(p.content.category, Category::Offer | Category::Request)
                            })
                            .map(|p| EventRef {
                                author: p.author,
                                id: p.id,
                            })
                            .collect();
                        if live.is_empty() {
                            return Ok(());
                        }
                        let post = live[self.rng_work.index(live.len())];
                        // An honest author (the flooder's posts are not claimed).
                        let Some(a) = self.ids[..self.levels.len()]
                            .iter()
                            .position(|id| *id == post.author)
                        else {
                            return Ok(());
                        };
                        (a, post)
                    }
                    _ => {
                        let (a, id) = self.posts[self.rng_work.index(self.posts.len())];
                        let author = self.ids[a];
                        (a, EventRef { author, id })
                    }
                };
                let Some(core) = self.slots[i].core.as_mut() else {
                    return Ok(());
                };
                if roll < 35 {
                    let r = core.market_reply(
                        now,
                        Caller::Local,
                        ReplyParams {
                            post,
                            body: format!("reply {n} by node {i}"),
                        },
                    );
                    self.drain(i, None)?;
                    match r {
                        Ok(_) => self.rule_done("replies"),
                        Err(e) => self.refused("market.reply", e.code.as_str()),
                    }
                } else {
                    let r = core.market_claim(
                        now,
                        Caller::Local,
                        ClaimParams {
                            post,
                            note: self.rng_work.chance(0.5).then(|| format!("note {n}")),
                        },
                    );
                    self.drain(i, None)?;
                    match r {
                        Ok(p) => {
                            self.rule_done("claims");
                            if self.claims.len() >= CLAIMS_TRACKED_MAX {
                                self.claims.remove(0);
                            }
                            self.claims.push(ClaimMade {
                                claimer: i,
                                post_author: a,
                                post,
                                claim: EventRef {
                                    author: self.ids[i],
                                    id: p.id,
                                },
                            });
                        }
                        Err(e) => self.refused("market.claim", e.code.as_str()),
                    }
                }
            }
            60..=69 => {
                let Some(c) = self.pick_claim() else {
                    return Ok(());
                };
                let now = self.node_now(c.claimer);
                let Some(core) = self.slots[c.claimer].core.as_mut() else {
                    return Ok(());
                };
                let r = core.publish_unchecked(
                    now,
                    Payload::ClaimWithdrawn(ClaimRef {
                        target: c.post,
                        claim: c.claim,
                    }),
                );
                self.drain(c.claimer, None)?;
                match r {
                    Ok(_) => self.rule_done("withdrawals"),
                    Err(e) => self.refused("claim.withdraw", &reason_class(&e.to_string())),
                }
            }
            70..=84 => {
                let Some(c) = self.pick_claim() else {
                    return Ok(());
                };
                let a = c.post_author;
                if !self.active_up(a) {
                    return Ok(());
                }
                let now = self.node_now(a);
                let Some(core) = self.slots[a].core.as_mut() else {
                    return Ok(());
                };
                let r = core.market_accept_claim(
                    now,
                    Caller::Local,
                    AcceptParams {
                        post: c.post.id,
                        claim: c.claim,
                    },
                );
                self.drain(a, None)?;
                match r {
                    Ok(_) => self.rule_done("acceptances"),
                    Err(e) => self.refused("market.accept_claim", e.code.as_str()),
                }
                // Now and then the author accepts another claim of the
                // same post from a second device (whose service did not
                // know of the first): the highest acceptance must win.
                if self.rng_work.chance(0.3) {
                    let other = self
                        .claims
                        .iter()
                        .rev()
                        .find(|o| o.post == c.post && o.claim != c.claim)
                        .map_or(c.claim, |o| o.claim);
                    let now = self.node_now(a);
                    let Some(core) = self.slots[a].core.as_mut() else {
                        return Ok(());
                    };
                    let r = core.publish_unchecked(
                        now,
                        Payload::ClaimAccepted(ClaimRef {
                            target: c.post,
                            claim: other,
                        }),
                    );
                    self.drain(a, None)?;
                    match r {
                        Ok(_) => self.rule_done("second acceptances"),
                        Err(e) => self.refused("second acceptance", &reason_class(&e.to_string())),
                    }
                }
            }
            _ => {
                // To any member, up or down: a message to a node that is
                // away waits in every log until it comes back.
                let honest = self.levels.len();
                let j = self.rng_work.index(honest);
                if j == i || self.levels[j] == Level::Removed {
                    return Ok(());
                }
                let body = format!("private note {n} from node {i} to node {j}");
                let to = self.ids[j];
                let Some(core) = self.slots[i].core.as_mut() else {
                    return Ok(());
                };
                let r = core.dm_send(
                    now,
                    Caller::Local,
                    DmSendParams {
                        to,
                        body: body.clone(),
                        post: None,
                    },
                );
                self.drain(i, None)?;
                match r {
                    Ok(p) => {
                        self.rule_done("sealed messages");
                        if self.sealed_sent.len() < SEALED_AUDIT_MAX {
                            self.sealed_sent.push(SealedSent {
                                hash: p.hash,
                                from: i,
                                to: j,
                                body,
                            });
                        }
                    }
                    Err(e) => self.refused("dm.send", e.code.as_str()),
                }
            }
        }
        Ok(())
    }

    /// A claim made earlier whose claimer is up (None if none was drawn).
    fn pick_claim(&mut self) -> Option<ClaimMade> {
        if self.claims.is_empty() {
            return None;
        }
        let c = self.claims[self.rng_work.index(self.claims.len())];
        self.slots[c.claimer].core.is_some().then_some(c)
    }

    /// Every recorded sealed message, in the (converged) log of node 0:
    /// the recipient's key opens it to the text that was sent, signed by
    /// its sender, and the recipient's node shows it in its inbox; the
    /// sender's key and a bystander's do not open it.
    pub(super) fn check_sealed(&mut self) {
        let sent = std::mem::take(&mut self.sealed_sent);
        let n = self.levels.len();
        for s in &sent {
            let stored = self.slots[0]
                .core
                .as_ref()
                .and_then(|c| c.log().store().get(&s.hash).ok().flatten());
            let Some(ev) = stored else {
                // HonestEventMissing reports it.
                continue;
            };
            let Payload::DmSealed(d) = &ev.event().payload else {
                self.violation(Violation::SealedUnreadable {
                    node: s.to,
                    hash: s.hash,
                    why: "the event is not a dm.sealed".into(),
                });
                continue;
            };
            match sealed::open(&self.slots[s.to].identity, &d.sealed) {
                Ok(m) if m.body == s.body && m.from == self.ids[s.from] => {}
                Ok(_) => self.violation(Violation::SealedUnreadable {
                    node: s.to,
                    hash: s.hash,
                    why: "opened to another text or sender".into(),
                }),
                Err(e) => self.violation(Violation::SealedUnreadable {
                    node: s.to,
                    hash: s.hash,
                    why: e.to_string(),
                }),
            }
            let now = self.node_now(s.to);
            let inbox = self.slots[s.to].core.as_ref().map(|c| {
                c.conversation_get(
                    now,
                    Caller::Local,
                    GetParams {
                        post: None,
                        with: Some(self.ids[s.from]),
                    },
                )
            });
            let shown = matches!(&inbox, Some(Ok(ConversationView::Messages { messages, .. }))
                if messages.iter().any(|m| m.body.as_deref() == Some(s.body.as_str())));
            if !shown {
                self.violation(Violation::SealedUnreadable {
                    node: s.to,
                    hash: s.hash,
                    why: "not in the recipient's inbox".into(),
                });
            }
            let bystander = (s.to + 1 + (s.hash.0[0] as usize) % (n - 1)) % n;
            for k in [s.from, bystander] {
                if k != s.to && sealed::open(&self.slots[k].identity, &d.sealed).is_ok() {
                    self.violation(Violation::SealedReadable {
                        node: k,
                        hash: s.hash,
                    });
                }
            }
        }
        self.sealed_sent = sent;
    }
}
