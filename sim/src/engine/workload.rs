//! The honest workload: members post, update, expire, moderate, change
//! settings and names, and anchors change levels.

use super::*;

/// Settings the anchors sign in turn: the cap lowered to a day, an hour
/// or minutes and the per-author bound to a few posts, so both bite
/// within a short run (the flooder alone posts more than any of these).
pub(super) const SETTINGS_CHOICES: [(u64, u64); 4] = [(86_400, 5), (3_600, 10), (600, 3), (120, 2)];

/// Community settings the anchors sign in one run at most. Settings are an
/// anchor's rare, deliberate act, and every node's market view re-derives
/// every post when they change (core/views/market.rs): at 4% of a 10,000-
/// action soak's actions (about 370 changes) that re-derivation was half
/// the soak's CPU, a cost no real community pays. Forty changes still make
/// settings race between the two anchors many times per run; runs of up
/// to about 1,000 actions never reach the bound, so their traces are as
/// before.
pub const SETTINGS_SIGNED_MAX: u64 = 40;

pub(super) const TAGS: [&str; 8] = [
    "tools", "garden", "food", "kids", "repair", "lift", "books", "power",
];

pub(super) fn refusal_code(e: &SimError) -> String {
    match e {
        SimError::Refused { message, .. } => message.split(':').next().unwrap_or("").to_owned(),
        other => reason_class(&other.to_string()),
    }
}

impl Sim {
    pub(super) fn active_up(&self, i: Ix) -> bool {
        self.slots[i].core.is_some() && self.levels[i] != Level::Removed
    }

    pub(super) fn pick_poster(&mut self) -> Option<Ix> {
        for _ in 0..8 {
            let i = self.rng_work.index(self.slots.len());
            if self.active_up(i) {
                return Some(i);
            }
        }
        None
    }

    pub(super) fn refused(&mut self, what: &str, code: &str) {
        *self
            .stats
            .workload_refused
            .entry(format!("{what}: {code}"))
            .or_default() += 1;
    }

    /// Posts from node `i` (a scenario step or the workload's).
    pub fn post(&mut self, i: Ix, ttl_seconds: Option<u64>) -> Result<EventId, SimError> {
        let n = self.posts.len();
        let category = Category::ALL[self.rng_work.index(Category::ALL.len())];
        let tag = TAGS[self.rng_work.index(TAGS.len())];
        let now = self.node_now(i);
        let core = self.slots[i].core.as_mut().ok_or(SimError::NotRunning(i))?;
        let receipt = core
            .market_post(
                now,
                Caller::Local,
                PostParams {
                    category,
                    title: format!("post {n}"),
                    body: format!("body of post {n} by node {i}"),
                    tags: vec![tag.into()],
                    ttl_seconds,
                    location: None,
                    client_id: None,
                },
            )
            .map_err(|e| SimError::Refused {
                node: i,
                message: e.to_string(),
            });
        self.drain(i, None)?;
        let id = receipt?.post.id;
        self.posts.push((i, id));
        Ok(id)
    }

    /// Sets `member`'s level, signed by anchor `anchor`.
    pub fn set_level(&mut self, anchor: Ix, member: Ix, level: Level) -> Result<(), SimError> {
        let now = self.node_now(anchor);
        let member_id = self.ids[member];
        let core = self.slots[anchor]
            .core
            .as_mut()
            .ok_or(SimError::NotRunning(anchor))?;
        let result = core.set_member(now, member_id, level);
        self.drain(anchor, None)?;
        result.map_err(|e| SimError::Refused {
            node: anchor,
            message: e.to_string(),
        })?;
        if member < self.levels.len() {
            self.levels[member] = level;
        }
        Ok(())
    }

    /// Node `by` expires `author`'s post `id` with `reason`.
    pub fn expire(
        &mut self,
        by: Ix,
        author: NodeId,
        id: EventId,
        reason: ExpiryReason,
    ) -> Result<(), SimError> {
        let now = self.node_now(by);
        let core = self.slots[by]
            .core
            .as_mut()
            .ok_or(SimError::NotRunning(by))?;
        let result = core.market_expire(
            now,
            Caller::Local,
            ExpireParams {
                id,
                author: Some(author),
                reason,
            },
        );
        self.drain(by, None)?;
        result.map(|_| ()).map_err(|e| SimError::Refused {
            node: by,
            message: e.to_string(),
        })
    }

    pub(super) fn workload_step(&mut self) -> Result<(), SimError> {
        self.stats.workload_done += 1;
        // Drawn only when conversations are on: runs without them keep
        // their traces.
        if self.cfg.conversations && self.rng_work.chance(CONVERSATION_SHARE) {
            return self.conversation_step();
        }
        let roll = self.rng_work.below(100);
        match roll {
            0..=54 => {
                let Some(i) = self.pick_poster() else {
                    return Ok(());
                };
                let ttl = self
                    .rng_work
                    .chance(self.cfg.short_ttl_fraction)
                    .then(|| self.rng_work.between(60, 600));
                if let Err(e) = self.post(i, ttl) {
                    self.refused("post", &refusal_code(&e));
                }
            }
            55..=79 => {
                if self.posts.is_empty() {
                    return Ok(());
                }
                let (author, id) = self.posts[self.rng_work.index(self.posts.len())];
                if !self.active_up(author) {
                    return Ok(());
                }
                let now = self.node_now(author);
                let edit = self.stats.workload_done;
                let Some(core) = self.slots[author].core.as_mut() else {
                    return Ok(());
                };
                let result = if roll < 70 {
                    core.market_update(
                        now,
                        Caller::Local,
                        UpdateParams {
                            id,
                            body: Some(format!("edit {edit}")),
                            ..UpdateParams::default()
                        },
                    )
                    .map(|_| ())
                } else {
                    core.market_expire(
                        now,
                        Caller::Local,
                        ExpireParams {
                            id,
                            author: None,
                            reason: ExpiryReason::Fulfilled,
                        },
                    )
                    .map(|_| ())
                };
                self.drain(author, None)?;
                if let Err(e) = result {
                    self.refused(if roll < 70 { "update" } else { "expire" }, e.code.as_str());
                }
            }
            80..=83 => {
                // A stale expiry by an anchor, of someone's post past TTL.
                let a = self.rng_work.index(self.cfg.anchors);
                let now = self.node_now(a);
                let me = self.ids[a];
                let Some(core) = self.slots[a].core.as_ref() else {
                    return Ok(());
                };
                let due = core
                    .views()
                    .market
                    .past_ttl(now)
                    .find(|p| p.author != me)
                    .map(|p| (p.author, p.id));
                if let Some((author, id)) = due {
                    if let Err(e) = self.expire(a, author, id, ExpiryReason::Stale) {
                        self.refused("stale", &refusal_code(&e));
                    }
                }
            }
            84..=86 => self.moderate_step()?,
            87..=90 => self.settings_step()?,
            91..=93 => self.profile_step()?,
            _ => {
                // Membership: anchor 0 removes, re-admits or promotes.
                if self.slots.len() <= self.cfg.anchors || self.slots[0].core.is_none() {
                    return Ok(());
                }
                let span = (self.slots.len() - self.cfg.anchors) as u64;
                let mut m = self.cfg.anchors + self.rng_work.below(span) as usize;
                // Half the time a member who set a display name: a removed
                // member's name must stop showing, and few are named.
                if !self.named.is_empty() && self.rng_work.chance(0.5) {
                    m = self.named[self.rng_work.index(self.named.len())];
                }
                let level = match (roll, self.levels[m]) {
                    (94..=96, Level::Member | Level::Trusted) => Level::Removed,
                    (_, Level::Removed) => Level::Member,
                    (_, Level::Member) => Level::Trusted,
                    _ => return Ok(()),
                };
                if let Err(e) = self.set_level(0, m, level) {
                    self.refused("member.set", &refusal_code(&e));
                }
            }
        }
        Ok(())
    }

    /// A trusted member or an anchor ends a post as `moderated`: half the
    /// time one of the flooder's (never-expiring, some with a faked clock),
    /// else any honest post. The service refuses nobody here (the workload
    /// picks a moderator its own membership truth says is trusted).
    pub(super) fn moderate_step(&mut self) -> Result<(), SimError> {
        let moderators: Vec<Ix> = (0..self.slots.len())
            .filter(|i| {
                self.slots[*i].core.is_some()
                    && matches!(self.levels[*i], Level::Trusted | Level::Anchor)
            })
            .collect();
        if moderators.is_empty() {
            return Ok(());
        }
        let by = moderators[self.rng_work.index(moderators.len())];
        let target = if !self.hostile_posts.is_empty() && self.rng_work.chance(0.5) {
            Some(self.hostile_posts[self.rng_work.index(self.hostile_posts.len())])
        } else if !self.posts.is_empty() {
            let (author, id) = self.posts[self.rng_work.index(self.posts.len())];
            Some((self.ids[author], id))
        } else {
            None
        };
        let Some((author, id)) = target else {
            return Ok(());
        };
        match self.expire(by, author, id, ExpiryReason::Moderated) {
            Ok(()) => self.rule_done("moderations"),
            Err(e) => self.refused("moderate", &refusal_code(&e)),
        }
        Ok(())
    }

    /// An anchor signs new settings: the next of [`SETTINGS_CHOICES`] (by
    /// a draw) and a new name. Both anchors do this, so settings race.
    pub(super) fn settings_step(&mut self) -> Result<(), SimError> {
        let signed = self.stats.rules_done.get("settings signed").copied();
        if signed.unwrap_or(0) >= SETTINGS_SIGNED_MAX {
            return Ok(());
        }
        let a = self.rng_work.index(self.cfg.anchors);
        let (ttl, max) = SETTINGS_CHOICES[self.rng_work.index(SETTINGS_CHOICES.len())];
        let name = format!("hearth-sim {}", self.stats.workload_done);
        match self.set_settings(a, Some(name), Some(ttl), Some(max)) {
            Ok(()) => self.rule_done("settings signed"),
            Err(e) => self.refused("community.settings", &refusal_code(&e)),
        }
        Ok(())
    }

    /// A member sets a display name (a new one each time).
    pub(super) fn profile_step(&mut self) -> Result<(), SimError> {
        let Some(i) = self.pick_poster() else {
            return Ok(());
        };
        let name = format!("household {i}.{}", self.stats.workload_done);
        match self.set_name(i, &name) {
            Ok(()) => {
                if i >= self.cfg.anchors && !self.named.contains(&i) {
                    self.named.push(i);
                }
                self.rule_done("names set")
            }
            Err(e) => self.refused("member.profile", &refusal_code(&e)),
        }
        Ok(())
    }

    pub(super) fn rule_done(&mut self, what: &str) {
        *self.stats.rules_done.entry(what.to_owned()).or_default() += 1;
    }

    /// Anchor `anchor` signs community settings (fields left `None` keep
    /// those in force).
    pub fn set_settings(
        &mut self,
        anchor: Ix,
        name: Option<String>,
        post_ttl_max_s: Option<u64>,
        posts_per_author_max: Option<u64>,
    ) -> Result<(), SimError> {
        let now = self.node_now(anchor);
        let core = self.slots[anchor]
            .core
            .as_mut()
            .ok_or(SimError::NotRunning(anchor))?;
        let result = core.community_settings(
            now,
            Caller::Local,
            SettingsParams {
                name,
                post_ttl_max_s,
                posts_per_author_max,
            },
        );
        self.drain(anchor, None)?;
        result.map(|_| ()).map_err(|e| SimError::Refused {
            node: anchor,
            message: e.to_string(),
        })
    }

    /// Node `i` sets its display name.
    pub fn set_name(&mut self, i: Ix, name: &str) -> Result<(), SimError> {
        let now = self.node_now(i);
        let core = self.slots[i].core.as_mut().ok_or(SimError::NotRunning(i))?;
        let result = core.member_profile(
            now,
            Caller::Local,
            ProfileParams {
                name: name.to_owned(),
            },
        );
        self.drain(i, None)?;
        result.map(|_| ()).map_err(|e| SimError::Refused {
            node: i,
            message: e.to_string(),
        })
    }
}
