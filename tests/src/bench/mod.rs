//! Benchmarks behind `scripts/bench`: each figure is one JSON line on
//! stdout, with the ceiling it is compared to measured in the same run
//! (this machine is noisy; only same-run ratios compare across runs).
//! Progress goes to stderr.
//!
//! One module per figure: [`ingest`], [`replay`], [`list`], [`sync`],
//! [`search`] (its own fixture: the relevance set's posts), [`embed`] (the
//! embedding model), the multi-node ones in [`mesh`], and the HTTP stream's
//! fan-out in [`sse`]; [`plot`] draws the `--plot` charts. The single-node
//! figures share one fixture ([`Fixture`] and [`Mix`]): a community of 20 admitted members
//! writing a realistic stream (mostly new posts, some updates and expiries,
//! a few membership changes), signed on every core.

pub mod embed;
pub mod ingest;
pub mod list;
pub mod mesh;
pub mod plot;
pub mod replay;
pub mod sealed;
pub mod search;
pub mod sse;
pub mod sync;

use std::time::Instant;

use anyhow::anyhow;
use hearth_proto::{
    Category, CommunityId, Event, EventId, ExpiryReason, Identity, Level, Location, MemberSet,
    Payload, PostContent, PostCreated, PostExpired, PostUpdated, VerifiedEvent,
};
use serde_json::{json, Value};

use crate::mesh::Community;
use crate::FIXED_NOW_MS;

/// Prints one figure.
pub fn emit(figure: Value) {
    println!("{figure}");
}

/// Progress for the human watching (stderr, never mixed into the JSON).
pub fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

/// One figure's JSON object: its name, its fields, and the 1-minute load
/// average when it ended (other work on the machine skews the numbers).
pub fn figure(name: &str, fields: Value) -> Value {
    let mut v = json!({ "bench": name, "loadavg_1m": loadavg() });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
        for (k, x) in extra {
            obj.insert(k.clone(), x.clone());
        }
    }
    v
}

/// The 1-minute load average, if the OS tells (Linux).
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `x` rounded to `digits` decimals, for readable JSON.
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Operations per second of `f` run `n` times.
pub fn rate(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Percentile of sorted samples (0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Worker threads for fixture signing: every core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `n` posts by `author`, signed on every core (signing is the slow part of
/// building fixtures).
pub fn sign_posts(
    author: &Identity,
    community: CommunityId,
    first_lamport: u64,
    n: usize,
) -> anyhow::Result<Vec<VerifiedEvent>> {
    let plan = (0..n)
        .map(|i| {
            (
                0,
                post_event(author, community, first_lamport + i as u64, i),
            )
        })
        .collect();
    sign_all(std::slice::from_ref(author), plan)
}

/// One post by `author` (the mesh throughput figure's fixture).
pub fn post(
    author: &Identity,
    community: CommunityId,
    lamport: u64,
    i: usize,
) -> anyhow::Result<VerifiedEvent> {
    Ok(post_event(author, community, lamport, i).sign(author)?)
}

fn post_event(author: &Identity, community: CommunityId, lamport: u64, i: usize) -> Event {
    const TAGS: [&str; 8] = [
        "water", "tools", "food", "kids", "garden", "bikes", "help", "books",
    ];
    Event {
        id: EventId::from_parts(FIXED_NOW_MS, i as u128),
        ts: FIXED_NOW_MS,
        author: author.node_id(),
        lamport,
        community,
        payload: Payload::PostCreated(PostCreated {
            content: PostContent {
                category: Category::ALL[i % 4],
                title: format!("Post number {i}: something to share"),
                body: "A typical post body of a sentence or two, describing the thing on offer."
                    .into(),
                tags: vec![TAGS[i % 8].into(), TAGS[(i / 8) % 8].into()],
                expires_at: FIXED_NOW_MS + 30 * 24 * 3600 * 1000,
                location: None,
            }
            .into(),
            client_id: None,
        }),
    }
}

/// Signs `plan` (signer index into `signers`, event) on every core, keeping
/// the plan's order.
pub fn sign_all(
    signers: &[Identity],
    plan: Vec<(usize, Event)>,
) -> anyhow::Result<Vec<VerifiedEvent>> {
    let threads = cores();
    let chunk = plan.len().div_ceil(threads).max(1);
    let mut parts: Vec<Vec<(usize, Event)>> = Vec::with_capacity(threads);
    let mut rest = plan;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    let results: Vec<anyhow::Result<Vec<VerifiedEvent>>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                s.spawn(move || {
                    part.into_iter()
                        .map(|(who, event)| {
                            let signer =
                                signers.get(who).ok_or_else(|| anyhow!("no signer {who}"))?;
                            Ok(event.sign(signer)?)
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("signing thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// xorshift64*: a tiny deterministic generator, so every run builds the
/// same fixture.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A community of admitted members: the genesis by the anchor
/// (`identity(1)`), then one `member.set` per member (`identity(10 + i)`).
#[derive(Debug)]
pub struct Fixture {
    pub community: Community,
    pub members: Vec<Identity>,
}

impl Fixture {
    pub fn new(members: usize) -> anyhow::Result<Fixture> {
        let members: Vec<Identity> = (0..members)
            .map(|i| {
                u8::try_from(10 + i)
                    .map(crate::identity)
                    .map_err(|_| anyhow!("at most 245 members"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Fixture {
            community: Community::new(&members)?,
            members,
        })
    }

    pub fn id(&self) -> CommunityId {
        self.community.id()
    }

    pub fn genesis(&self) -> &VerifiedEvent {
        &self.community.genesis
    }

    /// The member admissions, in Lamport order after the genesis.
    pub fn history(&self) -> &[VerifiedEvent] {
        &self.community.history
    }

    /// Signers by [`Mix`] index: 0 is the anchor, `i + 1` is member `i`.
    pub fn signers(&self) -> Vec<Identity> {
        let mut s = vec![self.community.anchor.clone()];
        s.extend(self.members.iter().cloned());
        s
    }
}

/// What a [`Mix`] has planned so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct MixCounts {
    pub created: usize,
    pub updated: usize,
    pub expired: usize,
    pub member_sets: usize,
    /// Posts created with `expires_at` already past at [`FIXED_NOW_MS`]
    /// (waiting for the sweeper): `list` must skip them.
    pub lapsed: usize,
}

impl MixCounts {
    /// Posts that `list` shows at [`FIXED_NOW_MS`].
    pub fn live(&self) -> usize {
        self.created - self.expired - self.lapsed
    }

    pub fn to_json(self) -> Value {
        json!({
            "created": self.created,
            "updated": self.updated,
            "expired": self.expired,
            "member_sets": self.member_sets,
            "lapsed": self.lapsed,
        })
    }
}

/// Tags with a skewed popularity: the first ones are on many posts.
pub const TAGS: [&str; 12] = [
    "food", "tools", "kids", "garden", "water", "bikes", "help", "books", "clothes", "repair",
    "lift", "rare",
];

/// Plans a realistic event stream for a [`Fixture`]: 90% new posts, 7%
/// updates and 3% expiries of the author's recent posts (a third of the
/// expiries `stale` ones by the anchor), and 1 in 5,000 a `member.set`
/// (a member promoted to trusted or set back to member; each one re-derives
/// that member's posts in the view, so they are kept as rare as in life). Lamport times increase by one per event. Categories are
/// skewed (offers and requests common, emergencies rare), bodies 10-210
/// bytes (events of ~400 bytes), 1-3 tags, half the posts with a location, a third with a
/// client id, 3% already past `expires_at`.
#[derive(Debug)]
pub struct Mix {
    rng: Rng,
    community: CommunityId,
    anchor: hearth_proto::NodeId,
    members: Vec<hearth_proto::NodeId>,
    next_lamport: u64,
    seq: u64,
    /// Per member: recent posts still live (targets of updates and expiries).
    recent: Vec<Vec<EventId>>,
    pub counts: MixCounts,
}

const RECENT_MAX: usize = 64;
const DAY_MS: u64 = 24 * 3600 * 1000;

impl Mix {
    pub fn new(fx: &Fixture, seed: u64) -> Mix {
        Mix {
            rng: Rng::new(seed),
            community: fx.id(),
            anchor: fx.community.anchor.node_id(),
            members: fx.members.iter().map(Identity::node_id).collect(),
            next_lamport: fx.history().len() as u64 + 1,
            seq: 0,
            recent: vec![Vec::new(); fx.members.len()],
            counts: MixCounts::default(),
        }
    }

    /// The next `n` events, each with its signer's index in
    /// [`Fixture::signers`].
    pub fn plan(&mut self, n: usize) -> Vec<(usize, Event)> {
        (0..n).map(|_| self.next_event()).collect()
    }

    /// Events until `live` posts are showing.
    pub fn plan_live(&mut self, live: usize) -> Vec<(usize, Event)> {
        let mut out = Vec::new();
        while self.counts.live() < live {
            out.push(self.next_event());
        }
        out
    }

    fn event(&mut self, author: hearth_proto::NodeId, payload: Payload) -> Event {
        self.seq += 1;
        let lamport = self.next_lamport;
        self.next_lamport += 1;
        Event {
            // About one event a second, ending near FIXED_NOW_MS.
            id: EventId::from_parts(
                FIXED_NOW_MS - 10 * DAY_MS + self.seq * 1000,
                self.seq.into(),
            ),
            ts: FIXED_NOW_MS - 10 * DAY_MS + self.seq * 1000,
            author,
            lamport,
            community: self.community,
            payload,
        }
    }

    fn next_event(&mut self) -> (usize, Event) {
        let m = self.members.len().max(1);
        let who = self.rng.below(m as u64) as usize;
        if self.rng.below(5000) == 0 {
            // A member promoted to trusted, or back to member.
            self.counts.member_sets += 1;
            let level = if self.rng.percent(50) {
                Level::Trusted
            } else {
                Level::Member
            };
            let member = self.members[who];
            return (
                0,
                self.event(self.anchor, Payload::MemberSet(MemberSet { member, level })),
            );
        }
        let roll = self.rng.below(100);
        let has_recent = !self.recent[who].is_empty();
        if has_recent && roll < 7 {
            let k = self.rng.below(self.recent[who].len() as u64) as usize;
            let target = self.recent[who][k];
            self.counts.updated += 1;
            let content = self.content(false);
            return (
                who + 1,
                self.event(
                    self.members[who],
                    Payload::PostUpdated(PostUpdated {
                        target,
                        content: content.into(),
                    }),
                ),
            );
        }
        if has_recent && roll < 10 {
            let k = self.rng.below(self.recent[who].len() as u64) as usize;
            let target = self.recent[who].swap_remove(k);
            self.counts.expired += 1;
            // One in three expiries is the anchor sweeping a stale post.
            let (signer, author, reason) = match self.rng.below(3) {
                0 => (0, self.anchor, ExpiryReason::Stale),
                1 => (who + 1, self.members[who], ExpiryReason::Fulfilled),
                _ => (who + 1, self.members[who], ExpiryReason::Withdrawn),
            };
            return (
                signer,
                self.event(author, Payload::PostExpired(PostExpired { target, reason })),
            );
        }
        self.counts.created += 1;
        let lapsed = self.rng.percent(3);
        let content = self.content(lapsed);
        let client_id = self.rng.percent(33).then(|| format!("client-{}", self.seq));
        let event = self.event(
            self.members[who],
            Payload::PostCreated(PostCreated {
                content: content.into(),
                client_id,
            }),
        );
        if lapsed {
            self.counts.lapsed += 1;
        } else {
            let recent = &mut self.recent[who];
            if recent.len() == RECENT_MAX {
                recent.remove(0);
            }
            recent.push(event.id);
        }
        (who + 1, event)
    }

    fn content(&mut self, lapsed: bool) -> PostContent {
        const WORDS: [&str; 16] = [
            "spare",
            "ladder",
            "tomorrow",
            "garden",
            "bring",
            "neighbours",
            "soup",
            "please",
            "evening",
            "drill",
            "shared",
            "north",
            "street",
            "school",
            "batteries",
            "thanks",
        ];
        let category = match self.rng.below(100) {
            0..45 => Category::Offer,
            45..80 => Category::Request,
            80..98 => Category::Info,
            _ => Category::Emergency,
        };
        let title_words = 2 + self.rng.below(6) as usize;
        let mut title = format!("#{} ", self.seq);
        for _ in 0..title_words {
            title.push_str(WORDS[self.rng.below(16) as usize]);
            title.push(' ');
        }
        let body_len = 10 + self.rng.below(200) as usize;
        let mut body = String::with_capacity(body_len + 12);
        while body.len() < body_len {
            body.push_str(WORDS[self.rng.below(16) as usize]);
            body.push(' ');
        }
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            // Skewed: min of two uniform draws favours the first tags.
            let t = self
                .rng
                .below(TAGS.len() as u64 - 1)
                .min(self.rng.below(11)) as usize;
            let tag = TAGS[t].to_owned();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if self.rng.percent(1) {
            tags.push("rare".into());
        }
        let expires_at = if lapsed {
            FIXED_NOW_MS - 1 - self.rng.below(DAY_MS)
        } else {
            FIXED_NOW_MS + DAY_MS + self.rng.below(29 * DAY_MS)
        };
        let location = self.rng.percent(50).then(|| Location {
            lat: 52_520_000 + self.rng.below(100_000) as i64 - 50_000,
            lng: 13_405_000 + self.rng.below(100_000) as i64 - 50_000,
            label: if self.rng.percent(50) {
                "by the bakery".into()
            } else {
                String::new()
            },
        });
        PostContent {
            category,
            title: title.trim_end().to_owned(),
            body: body.trim_end().to_owned(),
            tags,
            expires_at,
            location,
        }
    }
}

/// Bytes under `dir` (best effort: unreadable entries count as 0).
pub(crate) fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
