//! Saved searches (issue 11, item 7): `subscription.create`, `.list`,
//! `.delete` and `.deliveries`, served through the one request path
//! ([`super::dispatch`]), so the HTTP API and the Unix socket both have
//! them. This module owns the subscriptions: their filters and checks,
//! the file that keeps them across restarts, and the task that matches
//! new posts against them.
//!
//! - A subscription is a filter (`category` any of, `tags` all of, `q` the
//!   market search's rule: the text in the title, body or a tag,
//!   case-insensitive; `near` `{lat, lng, radius_km}` in decimal degrees,
//!   posts without a location never match it) and optionally a webhook
//!   URL (`http://` or `https://` only), with a secret drawn at creation
//!   to sign deliveries ([`super::webhook`]).
//! - The matcher reads the node's change feed on its own task: every
//!   `post.added` that matches a subscription marks it (a count and the
//!   time of the last match), publishes a `match` change (the stream's
//!   `match` event) and, for a webhook, offers a delivery to the bounded
//!   queue. Ingest never waits for it; if the matcher falls behind the
//!   feed it logs how many changes it missed.
//! - Kept in `subscriptions.json` in the data dir (0600: it holds the
//!   secrets), rewritten whole through a temporary file and a rename, so a
//!   crash leaves the old file or the new one. A file that cannot be read
//!   is left as it is: the node starts without saved searches and refuses
//!   to change them until the file is fixed or removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hearth_proto::Category;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tracing::{info_span, warn, Instrument};

use super::webhook::{Deliveries, Job};
use crate::core::bus::BusError;
use crate::core::services::market::PostView;
use crate::net::changes::Change;
use crate::net::driver::{now_ms, Handle};

pub const CREATE: &str = "subscription.create";
pub const LIST: &str = "subscription.list";
pub const DELETE: &str = "subscription.delete";
pub const DELIVERIES: &str = "subscription.deliveries";
/// Every method of this module, in the order `rpc.discover` lists them.
pub const METHODS: [&str; 4] = [CREATE, LIST, DELETE, DELIVERIES];

/// The file in the data dir.
pub const FILE: &str = "subscriptions.json";
/// Saved searches per node: each is checked against every new post, and
/// a household keeps a handful.
pub const SUBSCRIPTIONS_MAX: usize = 64;
/// Values per filter list (categories, tags).
pub const FILTER_VALUES_MAX: usize = 16;
/// Longest `q`, in characters.
pub const QUERY_CHARS_MAX: usize = 200;
/// Longest webhook URL.
pub const URL_CHARS_MAX: usize = 2048;
/// Longest `name`.
pub const NAME_CHARS_MAX: usize = 100;
/// Deliveries one `subscription.deliveries` returns at most.
pub const DELIVERIES_PAGE_MAX: usize = super::webhook::LOG_MAX;

/// `near`: a circle in decimal degrees and kilometres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Near {
    pub lat: f64,
    pub lng: f64,
    pub radius_km: f64,
}

/// One category, or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `subscription.create`'s params.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    category: Option<OneOrMany>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    near: Option<Near>,
    #[serde(default)]
    webhook: Option<String>,
}

/// What a saved search matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<Category>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<Near>,
}

impl Filter {
    /// Whether `post` matches (see module docs).
    pub fn matches(&self, post: &PostView) -> bool {
        if !self.category.is_empty() && !self.category.contains(&post.category) {
            return false;
        }
        if !self.tags.iter().all(|t| post.tags.contains(t)) {
            return false;
        }
        if let Some(q) = &self.q {
            let hit = post.title.to_lowercase().contains(q)
                || post.body.to_lowercase().contains(q)
                || post.tags.iter().any(|t| t.contains(q));
            if !hit {
                return false;
            }
        }
        if let Some(near) = &self.near {
            let Some(l) = &post.location else {
                return false;
            };
            let (lat, lng) = (l.lat as f64 / 1e6, l.lng as f64 / 1e6);
            if haversine_km(near.lat, near.lng, lat, lng) > near.radius_km {
                return false;
            }
        }
        true
    }
}

/// Great-circle distance on a sphere of the Earth's mean radius.
pub fn haversine_km(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

/// A saved search as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_ms: u64,
    pub filter: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Hex, 32 random bytes; only with a webhook. Shown once, by create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// How often a subscription matched since the node started (not kept
/// across restarts: the delivery log is not either).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Marks {
    pub matches: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_match_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileForm {
    version: u32,
    subscriptions: Vec<Subscription>,
}

const FILE_VERSION: u32 = 1;

#[derive(Debug, Default)]
struct State {
    subs: BTreeMap<String, Subscription>,
    marks: BTreeMap<String, Marks>,
    /// Why the file could not be read at start: changes are refused
    /// until it is fixed, so it is never overwritten.
    broken: Option<String>,
}

/// The saved searches of one node.
#[derive(Debug)]
pub struct Subscriptions {
    file: PathBuf,
    state: Mutex<State>,
    deliveries: Deliveries,
}

impl Subscriptions {
    /// Loads the saved searches from `data_dir`, starts the delivery task
    /// and the matcher on the current runtime, and installs them on
    /// `handle` (once: a second call returns the first).
    pub fn start(data_dir: &Path, handle: &Handle) -> Arc<Subscriptions> {
        if let Some(running) = handle.subscriptions.get() {
            return running.clone();
        }
        let file = data_dir.join(FILE);
        let mut state = State::default();
        match load(&file) {
            Ok(subs) => state.subs = subs.into_iter().map(|s| (s.id.clone(), s)).collect(),
            Err(e) => {
                warn!(error = %e, "saved searches not loaded");
                state.broken = Some(e);
            }
        }
        let subs = Arc::new(Subscriptions {
            file,
            state: Mutex::new(state),
            deliveries: Deliveries::start(),
        });
        if handle.subscriptions.set(subs.clone()).is_err() {
            // Another start won the race: use that one.
            return handle.subscriptions.get().cloned().unwrap_or(subs);
        }
        let feed = handle.changes.clone();
        let matcher = subs.clone();
        // Subscribed now, not when the task first runs: a post made right
        // after the server started is matched too.
        let mut rx = feed.subscribe();
        tokio::spawn(
            async move {
                loop {
                    match rx.recv().await {
                        Ok(s) => {
                            if let Change::PostAdded(post) = &s.change {
                                for change in matcher.on_post(post) {
                                    feed.publish(change);
                                }
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            warn!(
                                missed = n,
                                "saved searches fell behind: {n} changes not matched"
                            )
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            }
            .instrument(info_span!("saved_searches")),
        );
        subs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the subscriptions `post` matches, queues their deliveries,
    /// and returns their `match` changes.
    fn on_post(&self, post: &PostView) -> Vec<Change> {
        let now = now_ms();
        let mut state = self.lock();
        let hits: Vec<Subscription> = state
            .subs
            .values()
            .filter(|s| s.filter.matches(post))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(hits.len());
        for sub in hits {
            let m = state.marks.entry(sub.id.clone()).or_default();
            m.matches += 1;
            m.last_match_ms = Some(now);
            if let (Some(url), Some(secret)) = (&sub.webhook, &sub.secret) {
                let body = serde_json::to_vec(post).unwrap_or_default();
                self.deliveries.offer(Job {
                    id: ulid::Ulid::new().to_string(),
                    subscription: sub.id.clone(),
                    post: post.id.to_string(),
                    url: url.clone(),
                    secret: secret.clone(),
                    body: body.into(),
                });
            }
            out.push(Change::Match {
                subscription: sub.id,
                post: Box::new(post.clone()),
            });
        }
        out
    }

    /// Serves one of [`METHODS`] (params checked by [`check_params`]).
    pub fn call(&self, name: &str, params: Value) -> Result<Value, BusError> {
        match name {
            CREATE => self.create(params),
            LIST => Ok(self.list()),
            DELETE => self.delete(params),
            DELIVERIES => self.delivery_log(params),
            _ => Err(BusError::not_found(format!("no method named {name:?}"))),
        }
    }

    /// Waits on this to see deliveries finish (see `Deliveries::finished`).
    pub fn deliveries_finished(&self) -> tokio::sync::watch::Receiver<u64> {
        self.deliveries.finished()
    }

    fn create(&self, params: Value) -> Result<Value, BusError> {
        let p: CreateParams = serde_json::from_value(params)
            .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))?;
        let (filter, name, webhook) = check(p)?;
        let secret = webhook.as_ref().map(|_| {
            use rand_core::RngCore;
            let mut key = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut key);
            hex::encode(key)
        });
        let sub = Subscription {
            id: ulid::Ulid::new().to_string(),
            name,
            created_ms: now_ms(),
            filter,
            webhook,
            secret,
        };
        let mut state = self.lock();
        self.writable(&state)?;
        if state.subs.len() >= SUBSCRIPTIONS_MAX {
            return Err(BusError::new(
                crate::core::ErrorCode::Overloaded,
                format!(
                    "this node keeps at most {SUBSCRIPTIONS_MAX} saved searches: \
                     delete one first (subscription.delete)"
                ),
            ));
        }
        state.subs.insert(sub.id.clone(), sub.clone());
        if let Err(e) = save(&self.file, &state.subs) {
            state.subs.remove(&sub.id);
            return Err(e);
        }
        Ok(json!({ "subscription": sub }))
    }

    fn writable(&self, state: &State) -> Result<(), BusError> {
        match &state.broken {
            None => Ok(()),
            Some(why) => Err(BusError::unavailable(format!(
                "saved searches cannot change: {why}; fix or remove {} and restart the node",
                self.file.display()
            ))),
        }
    }

    fn list(&self) -> Value {
        let state = self.lock();
        let items: Vec<Value> = state
            .subs
            .values()
            .map(|s| {
                let mut v = serde_json::to_value(Subscription {
                    secret: None,
                    ..s.clone()
                })
                .unwrap_or(Value::Null);
                let marks = state.marks.get(&s.id).copied().unwrap_or_default();
                if let (Some(o), Ok(Value::Object(m))) =
                    (v.as_object_mut(), serde_json::to_value(marks))
                {
                    o.extend(m);
                }
                v
            })
            .collect();
        json!({ "subscriptions": items })
    }

    fn delete(&self, params: Value) -> Result<Value, BusError> {
        let p: DeleteParams = serde_json::from_value(params)
            .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))?;
        let mut state = self.lock();
        self.writable(&state)?;
        let Some(old) = state.subs.remove(&p.id) else {
            return Err(BusError::not_found(format!(
                "no saved search {:?}: subscription.list shows them",
                p.id
            )));
        };
        if let Err(e) = save(&self.file, &state.subs) {
            state.subs.insert(old.id.clone(), old);
            return Err(e);
        }
        state.marks.remove(&p.id);
        Ok(json!({ "deleted": p.id }))
    }

    fn delivery_log(&self, params: Value) -> Result<Value, BusError> {
        let p: DeliveriesParams = match params {
            Value::Null => DeliveriesParams::default(),
            v => serde_json::from_value(v)
                .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))?,
        };
        let limit = p.limit.unwrap_or(50);
        if limit > DELIVERIES_PAGE_MAX {
            return Err(BusError::bad_request(format!(
                "limit {limit} is above {DELIVERIES_PAGE_MAX}, the deliveries the node keeps"
            )));
        }
        let items = self.deliveries.log(p.subscription.as_deref(), limit);
        Ok(json!({ "deliveries": items }))
    }
}

/// Checks and normalises the params: the filter, the name, the URL.
fn check(p: CreateParams) -> Result<(Filter, Option<String>, Option<String>), BusError> {
    let bad = |m: String| BusError::bad_request(m);
    let categories = match p.category {
        None => Vec::new(),
        Some(OneOrMany::One(c)) => vec![c],
        Some(OneOrMany::Many(cs)) => cs,
    };
    if categories.len() > FILTER_VALUES_MAX || p.tags.len() > FILTER_VALUES_MAX {
        return Err(bad(format!(
            "at most {FILTER_VALUES_MAX} categories and {FILTER_VALUES_MAX} tags"
        )));
    }
    let category = categories
        .iter()
        .map(|c| {
            Category::parse(c.trim()).ok_or_else(|| {
                bad(format!(
                    "category {c:?} is not one: use offer, request, info or emergency"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tags: Vec<String> = p
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let q = match p.q.map(|q| q.trim().to_lowercase()) {
        Some(q) if q.chars().count() > QUERY_CHARS_MAX => {
            return Err(bad(format!(
                "q is longer than {QUERY_CHARS_MAX} characters"
            )))
        }
        Some(q) if q.is_empty() => None,
        q => q,
    };
    if let Some(n) = &p.near {
        let ok = (-90.0..=90.0).contains(&n.lat)
            && (-180.0..=180.0).contains(&n.lng)
            && n.radius_km > 0.0
            && n.radius_km <= 20_037.5;
        if !ok {
            return Err(bad(
                "near must be {lat: -90..90, lng: -180..180, radius_km: above 0, at most 20037.5} \
                 in decimal degrees and kilometres"
                    .into(),
            ));
        }
    }
    let name = p
        .name
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > NAME_CHARS_MAX)
    {
        return Err(bad(format!(
            "name is longer than {NAME_CHARS_MAX} characters"
        )));
    }
    let webhook = p.webhook.map(|u| check_url(u.trim())).transpose()?;
    Ok((
        Filter {
            category,
            tags,
            q,
            near: p.near,
        },
        name,
        webhook,
    ))
}

/// A webhook URL: `http://` or `https://`, with a host.
pub fn check_url(url: &str) -> Result<String, BusError> {
    let refuse = |why: &str| {
        BusError::bad_request(format!(
            "webhook {url:?} {why}: give an http:// or https:// URL such as \
             http://192.168.1.20:8123/api/webhook/hearth"
        ))
    };
    if url.len() > URL_CHARS_MAX {
        return Err(refuse(&format!(
            "is longer than {URL_CHARS_MAX} characters"
        )));
    }
    // The scheme first, by hand: `Uri` refuses some schemes' URLs
    // (`file:///x`) before it can say which scheme they have.
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .filter(|s| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
    match scheme.as_deref() {
        Some("http") | Some("https") => {}
        Some(other) => return Err(refuse(&format!("uses {other}:, not http or https"))),
        None => return Err(refuse("has no scheme")),
    }
    let after_scheme = url.split_once(':').map_or("", |(_, rest)| rest);
    let authority = after_scheme.strip_prefix("//").unwrap_or_default();
    if authority.is_empty() || authority.starts_with(['/', '?', '#']) {
        return Err(refuse("has no host"));
    }
    let uri: axum::http::Uri = url.parse().map_err(|_| refuse("is not a URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse("has no host"));
    }
    Ok(url.to_owned())
}

fn load(file: &Path) -> Result<Vec<Subscription>, String> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let form: FileForm = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a saved-searches file: {e}", file.display()))?;
    if form.version != FILE_VERSION {
        return Err(format!(
            "{} is version {}, this node reads version {FILE_VERSION}",
            file.display(),
            form.version
        ));
    }
    Ok(form.subscriptions)
}

/// Writes the file whole: a temporary file (0600) then a rename.
fn save(file: &Path, subs: &BTreeMap<String, Subscription>) -> Result<(), BusError> {
    let form = FileForm {
        version: FILE_VERSION,
        subscriptions: subs.values().cloned().collect(),
    };
    let fail = |e: &dyn std::fmt::Display| {
        BusError::unavailable(format!(
            "saved searches not written to {}: {e}; nothing changed",
            file.display()
        ))
    };
    let bytes = serde_json::to_vec_pretty(&form).map_err(|e| fail(&e))?;
    let tmp = file.with_extension("json.tmp");
    write_private(&tmp, &bytes).map_err(|e| fail(&e))?;
    std::fs::rename(&tmp, file).map_err(|e| fail(&e))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `subscription.delete`'s params.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    id: String,
}

/// `subscription.deliveries`'s params.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeliveriesParams {
    #[serde(default)]
    subscription: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `subscription.list` takes none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {}

/// Decodes `params` as `name`'s params type, so a bad one is refused as
/// bad params (JSON-RPC -32602) before anything runs; `Err` holds why.
pub fn check_params(name: &str, params: &Value) -> Result<(), String> {
    fn decodes<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
        T::deserialize(v).map(drop).map_err(|e| e.to_string())
    }
    match name {
        CREATE => decodes::<CreateParams>(params),
        LIST => decodes::<ListParams>(params),
        DELETE => decodes::<DeleteParams>(params),
        DELIVERIES => decodes::<DeliveriesParams>(params),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs other than http(s) with a host are refused, saying why.
    #[test]
    fn only_http_and_https_urls_with_a_host() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("HTTPS://example.org/x?y=1").is_ok());
        for (url, says) in [
            ("ftp://example.org/x", "uses ftp"),
            ("file:///etc/passwd", "uses file"),
            ("javascript:alert(1)", "uses javascript"),
            ("http://exa mple.org/", "is not a URL"),
            ("not a url", "has no scheme"),
            ("/just/a/path", "has no scheme"),
            ("http:///path-only", "has no host"),
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.message.contains(says), "{url}: {}", e.message);
        }
    }

    /// Haversine: one degree of latitude is about 111.2 km.
    #[test]
    fn haversine_one_degree() {
        let d = haversine_km(48.0, 11.0, 49.0, 11.0);
        assert!((d - 111.19).abs() < 0.1, "{d}");
    }
}
