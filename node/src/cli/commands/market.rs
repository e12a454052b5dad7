//! The marketplace commands: `post`, `update`, `expire` (writes, signed by
//! this node) and `list`, `get`, `search` (reads of this node's view).
//!
//! Each is a thin wrapper over the core's typed handler of the same name
//! (`market_post`, ...), called as the local user; handler refusals come
//! back as errors that start with their wire code (`unauthorized: ...`).

use clap::{Args, ValueEnum};
use hearth_proto::{Category, EventId, ExpiryReason, Location, NodeId};

use crate::cli::render::{line, post_detail, post_line, relative};
use crate::cli::{now_ms, Ctx};
use crate::core::services::market::{
    self, ExpireParams, ExpireReceipt, GetParams, ListResult, PostParams, PostReceipt, PostView,
    SearchParams, SearchResult, UpdateParams,
};
use crate::core::views::ListQuery;

/// Categories as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CategoryArg {
    Offer,
    Request,
    Info,
    Emergency,
}

impl From<CategoryArg> for Category {
    fn from(c: CategoryArg) -> Category {
        match c {
            CategoryArg::Offer => Category::Offer,
            CategoryArg::Request => Category::Request,
            CategoryArg::Info => Category::Info,
            CategoryArg::Emergency => Category::Emergency,
        }
    }
}

/// A post id as people type it: the 26-character ULID `list` prints.
fn post_id(s: &str) -> Result<EventId, String> {
    EventId::from_string(s).map_err(|e| format!("not a post id (a 26-character ULID): {e}"))
}

/// Where a post is, in integer microdegrees (degrees x 1,000,000).
#[derive(Debug, Args)]
pub struct LocationArgs {
    /// Latitude in microdegrees, e.g. 52520008 for 52.520008 N.
    #[arg(
        long,
        value_name = "MICRODEG",
        allow_negative_numbers = true,
        requires = "lng"
    )]
    pub lat: Option<i64>,
    /// Longitude in microdegrees, e.g. -73985428 for 73.985428 W.
    #[arg(
        long,
        value_name = "MICRODEG",
        allow_negative_numbers = true,
        requires = "lat"
    )]
    pub lng: Option<i64>,
    /// A name for the place, e.g. "Lindenhof 12".
    #[arg(long, requires = "lat")]
    pub label: Option<String>,
}

impl LocationArgs {
    fn location(&self) -> Option<Location> {
        match (self.lat, self.lng) {
            (Some(lat), Some(lng)) => Some(Location {
                lat,
                lng,
                label: self.label.clone().unwrap_or_default(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct PostArgs {
    #[arg(long, value_enum)]
    pub category: CategoryArg,
    /// 1 to 120 characters.
    #[arg(long)]
    pub title: String,
    /// Up to 4,000 characters.
    #[arg(long, default_value = "")]
    pub body: String,
    /// A tag (repeatable, up to 10; stored lowercase).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Lifetime from now [default: market.default_ttl_seconds, 7 days].
    #[arg(long, value_name = "N")]
    pub ttl_seconds: Option<u64>,
    #[command(flatten)]
    pub location: LocationArgs,
    /// Makes the command safe to repeat: a second post with the same client
    /// id returns the first one instead of publishing again [default: a
    /// fresh ULID, printed, so a failed call can be retried safely].
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

/// Error codes that are a definite "no": the post was not made, so retrying
/// with the same client id would not help and is not suggested.
const DEFINITE_REFUSALS: [&str; 3] = ["bad_request:", "unauthorized:", "not_found:"];

pub fn post(ctx: &mut Ctx, a: PostArgs) -> anyhow::Result<()> {
    let now = now_ms();
    // Every post carries a client id, so whatever happens to this call (a
    // node that closes the socket, a timeout), repeating it with the same id
    // cannot publish twice.
    let client_id = a.client_id.unwrap_or_else(|| ulid::Ulid::new().to_string());
    let result: anyhow::Result<PostReceipt> = ctx.call(
        market::POST,
        &PostParams {
            category: a.category.into(),
            title: a.title,
            body: a.body,
            tags: a.tags,
            ttl_seconds: a.ttl_seconds,
            location: a.location.location(),
            client_id: Some(client_id.clone()),
        },
        true,
    );
    let receipt = match result {
        Ok(r) => r,
        Err(e)
            if DEFINITE_REFUSALS
                .iter()
                .any(|c| e.to_string().starts_with(c)) =>
        {
            return Err(e)
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "{e:#}\nthe post may or may not have been made: retry with --client-id {client_id} \
                 (the same id cannot post twice)"
            ))
        }
    };
    ctx.out.show(&receipt, |w| {
        let p = &receipt.post;
        if receipt.created {
            writeln!(
                w,
                "posted {} (expires {}; client id {client_id})",
                p.id,
                relative(p.expires_at, now)
            )
        } else {
            writeln!(
                w,
                "already posted as {} (same client id {client_id}); nothing new published",
                p.id
            )
        }
    })
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The post's id.
    #[arg(value_parser = post_id)]
    pub id: EventId,
    #[arg(long, value_enum)]
    pub category: Option<CategoryArg>,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub body: Option<String>,
    /// Replaces all tags (repeatable).
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "clear_tags")]
    pub tags: Vec<String>,
    /// Removes every tag.
    #[arg(long)]
    pub clear_tags: bool,
    /// New lifetime, counted from now.
    #[arg(long, value_name = "N")]
    pub ttl_seconds: Option<u64>,
    #[command(flatten)]
    pub location: LocationArgs,
    /// Removes the post's location.
    #[arg(long, conflicts_with = "lat")]
    pub remove_location: bool,
}

pub fn update(ctx: &mut Ctx, a: UpdateArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let tags = match (a.clear_tags, a.tags.is_empty()) {
        (true, _) => Some(Vec::new()),
        (false, false) => Some(a.tags),
        (false, true) => None,
    };
    let post: PostView = ctx.call(
        market::UPDATE,
        &UpdateParams {
            id: a.id,
            category: a.category.map(Category::from),
            title: a.title,
            body: a.body,
            tags,
            location: a.location.location(),
            remove_location: a.remove_location,
            ttl_seconds: a.ttl_seconds,
        },
        true,
    )?;
    ctx.out.show(&post, |w| {
        writeln!(w, "updated {}", post.id)?;
        post_line(w, &post, now)
    })
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    /// The post's id.
    #[arg(value_parser = post_id)]
    pub id: EventId,
    /// fulfilled, withdrawn, user_request, stale, moderated (trusted members
    /// and anchors, any post at once), or any other text.
    #[arg(long, default_value = "user_request")]
    pub reason: String,
    /// The post's author, when several posts share the id.
    #[arg(long, value_name = "NODE_ID")]
    pub author: Option<NodeId>,
}

pub fn expire(ctx: &mut Ctx, a: ExpireArgs) -> anyhow::Result<()> {
    let receipt: ExpireReceipt = ctx.call(
        market::EXPIRE,
        &ExpireParams {
            id: a.id,
            author: a.author,
            reason: ExpiryReason::parse(&a.reason),
        },
        true,
    )?;
    ctx.out.show(&receipt, |w| {
        let p = &receipt.post;
        let reason = p
            .expired_reason
            .as_ref()
            .map_or_else(|| a.reason.clone(), |r| r.to_string());
        // Another member's reason is event text: escaped.
        let reason = crate::cli::render::line(&reason);
        if receipt.expired_now {
            writeln!(w, "ended {} ({reason})", p.id)
        } else {
            writeln!(
                w,
                "{} had already ended ({reason}); nothing new published",
                p.id
            )
        }
    })
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum)]
    pub category: Option<CategoryArg>,
    /// Only posts with this tag (repeatable: posts must carry all of them).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only posts whose content changed after this Lamport time.
    #[arg(long, value_name = "N")]
    pub since_lamport: Option<u64>,
    /// At most this many posts [default: 50, at most 200].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn list(ctx: &mut Ctx, a: ListArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let result: ListResult = ctx.call(
        market::LIST,
        &ListQuery {
            category: a.category.map(Category::from).into_iter().collect(),
            tags: a.tags,
            since_lamport: a.since_lamport,
            limit: a.limit,
            ..ListQuery::default()
        },
        false,
    )?;
    ctx.out.show(&result, |w| {
        if result.posts.is_empty() {
            return writeln!(w, "no posts");
        }
        for p in &result.posts {
            post_line(w, p, now)?;
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The post's id.
    #[arg(value_parser = post_id)]
    pub id: EventId,
    /// The post's author, when several posts share the id.
    #[arg(long, value_name = "NODE_ID")]
    pub author: Option<NodeId>,
}

pub fn get(ctx: &mut Ctx, a: GetArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let post: PostView = ctx.call(
        market::GET,
        &GetParams {
            id: a.id,
            author: a.author,
        },
        false,
    )?;
    ctx.out.show(&post, |w| post_detail(w, &post, now))
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to look for in titles, bodies and tags. German and English
    /// word forms match ("Leitern" finds "Leiter"), and so do words inside
    /// compounds ("Kanister" finds "Wasserkanister").
    pub query: String,
    #[arg(long, value_enum)]
    pub category: Option<CategoryArg>,
    /// Only posts with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// At most this many results [default: 20, at most 100].
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn search(ctx: &mut Ctx, a: SearchArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let result: SearchResult = ctx.call(
        market::SEARCH,
        &SearchParams {
            query: a.query,
            category: a.category.map(Category::from),
            tags: a.tags,
            limit: a.limit,
            ..SearchParams::default()
        },
        false,
    )?;
    ctx.out.show(&result, |w| {
        let n = result.results.len();
        let s = if n == 1 { "" } else { "s" };
        let degraded = match &result.degraded {
            Some(why) => format!(", degraded: {}", line(why)),
            None => String::new(),
        };
        writeln!(w, "{n} result{s} ({} search{degraded})", result.mode)?;
        for hit in &result.results {
            write!(w, "{:>6.2}  ", hit.score)?;
            post_line(w, &hit.post, now)?;
        }
        Ok(())
    })
}
