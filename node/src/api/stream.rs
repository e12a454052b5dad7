//! `GET /api/stream`: the node's change feed ([`crate::net::changes`]) as
//! Server-Sent Events (docs/api.md). This module owns the SSE side: the
//! bound on concurrent readers, the filters, resuming from
//! `Last-Event-ID`, the keep-alive comments, and ending every stream when
//! the server shuts down.
//!
//! - Every event carries the feed's id (`<run>-<seq>`). A reader that
//!   reconnects with `Last-Event-ID` gets the changes after it from the
//!   feed's ring; an id the ring no longer holds, from another run of the
//!   node, or garbled, gets one `reset` event (reload), then live changes.
//! - A reader too slow for the feed's bounded broadcast is never waited
//!   for: when it lags, it gets a `reset` and carries on from the newest
//!   change.
//! - `category` (repeatable: any of them) and `tags` (comma separated or
//!   repeated: all of them) filter the post events and `match`; changes
//!   about no post (members, peers, syncs, `reset`) reach every reader.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hearth_proto::Category;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::core::ErrorCode;
use crate::net::changes::{Change, ChangeFeed, Stamped};
use crate::net::driver::{lock_registry, Handle};

/// Readers connected at once. Each holds a connection, a task's worth of
/// memory and a broadcast receiver that may hold up to
/// `changes::BROADCAST_MAX` changes; a household's browsers and scripts
/// need a handful, a fan-out benchmark 100. Past this: 503 `overloaded`.
pub const SSE_CLIENTS_MAX: usize = 128;
/// A comment line this often keeps proxies and browsers from cutting an
/// idle stream (most cut after 30-60 s of silence).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Values accepted per filter parameter: a query is a small thing.
pub const FILTER_VALUES_MAX: usize = 32;

/// What the route shares: the feed, the reader count and gauge, and the
/// shutdown signal.
#[derive(Debug)]
struct StreamState {
    feed: Arc<ChangeFeed>,
    clients: AtomicUsize,
    gauge: Gauge,
    closing: watch::Receiver<bool>,
}

/// Ends every open stream, so a graceful shutdown of the server (which
/// waits for open responses) does not wait for readers forever.
#[derive(Debug)]
pub struct Closer(watch::Sender<bool>);

impl Closer {
    pub fn close(&self) {
        let _ = self.0.send(true);
    }
}

/// The route `GET /api/stream`, for any router state, and its closer.
/// Registers the `hearth_sse_clients` gauge in the node's registry.
pub fn routes<S: Clone + Send + Sync + 'static>(handle: &Handle) -> (Router<S>, Closer) {
    let (close, closing) = watch::channel(false);
    let gauge = Gauge::default();
    lock_registry(&handle.metrics)
        .sub_registry_with_prefix("hearth")
        .register(
            "sse_clients",
            "Readers connected to GET /api/stream",
            gauge.clone(),
        );
    let state = Arc::new(StreamState {
        feed: handle.changes.clone(),
        clients: AtomicUsize::new(0),
        gauge,
        closing,
    });
    let router = Router::new().route(
        "/api/stream",
        get(move |headers: HeaderMap, uri: Uri| {
            let state = state.clone();
            async move { stream(state, &headers, &uri) }
        }),
    );
    (router, Closer(close))
}

/// A REST error (docs/api.md): status plus `{"error": {code, message}}`.
fn rest_error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = json!({ "error": { "code": code.as_str(), "message": message } });
    (status, axum::Json(body)).into_response()
}

fn stream(state: Arc<StreamState>, headers: &HeaderMap, uri: &Uri) -> Response {
    let filter = match Filter::parse(uri.query().unwrap_or_default()) {
        Ok(f) => f,
        Err(message) => {
            return rest_error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &message)
        }
    };
    let Some(slot) = Slot::take(&state) else {
        let mut r = rest_error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            &format!(
                "{SSE_CLIENTS_MAX} readers are already connected to /api/stream, the most \
                 this node serves; close one (another tab?) or retry later"
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return r;
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let resumed = state.feed.resume(last_id);
    let mut backlog = VecDeque::new();
    match resumed.missed {
        Ok(missed) => backlog.extend(
            missed
                .iter()
                .filter(|s| filter.admits(&s.change))
                .map(|s| event_of(&state.feed, s)),
        ),
        Err(why) => backlog.push_back(reset_event(
            &state.feed,
            resumed.last,
            &format!("{why}: reload"),
        )),
    }
    let reader = Reader {
        live: resumed.live,
        backlog,
        skip_through: resumed.last,
        filter,
        closing: state.closing.clone(),
        _slot: slot,
        state,
    };
    let events = futures::stream::unfold(reader, |mut r| async move {
        let e = r.next().await?;
        Some((Ok::<Event, std::convert::Infallible>(e), r))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

fn event_of(feed: &ChangeFeed, s: &Stamped) -> Event {
    Event::default()
        .id(feed.event_id(s.seq))
        .event(s.change.name())
        .data(s.change.data().to_string())
}

/// A `reset` with the id of change `seq`: a reader that reconnects with it
/// resumes after the changes its reload covers.
fn reset_event(feed: &ChangeFeed, seq: u64, reason: &str) -> Event {
    let change = Change::Reset {
        reason: reason.to_owned(),
    };
    Event::default()
        .id(feed.event_id(seq))
        .event(change.name())
        .data(change.data().to_string())
}

/// One connected reader's place in [`SSE_CLIENTS_MAX`], given back on drop
/// (the stream ends, or the connection closes).
#[derive(Debug)]
struct Slot(Arc<StreamState>);

impl Slot {
    fn take(state: &Arc<StreamState>) -> Option<Slot> {
        state
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < SSE_CLIENTS_MAX).then_some(n + 1)
            })
            .ok()?;
        state.gauge.inc();
        Some(Slot(state.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

struct Reader {
    state: Arc<StreamState>,
    live: broadcast::Receiver<Arc<Stamped>>,
    /// Events to send before live ones: what was missed, or one `reset`.
    backlog: VecDeque<Event>,
    /// Live changes up to this one are covered already (by the backlog,
    /// or by the reload a `reset` asked for).
    skip_through: u64,
    filter: Filter,
    closing: watch::Receiver<bool>,
    _slot: Slot,
}

impl Reader {
    /// The next event to send; `None` ends the stream (server closing).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Some(e);
            }
            tokio::select! {
                biased;
                _ = self.closing.wait_for(|c| *c) => return None,
                got = self.live.recv() => match got {
                    Ok(s) if s.seq <= self.skip_through || !self.filter.admits(&s.change) => {}
                    Ok(s) => return Some(event_of(&self.state.feed, &s)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Too slow: skip what is queued and start afresh.
                        let last = self.state.feed.last_seq();
                        self.skip_through = last;
                        return Some(reset_event(
                            &self.state.feed,
                            last,
                            &format!("this reader fell {n} changes behind the node: reload"),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// The query's filters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Any of these (empty: any category).
    pub categories: Vec<Category>,
    /// All of these.
    pub tags: Vec<String>,
}

impl Filter {
    /// Parses `category=..&tags=..`; other parameters are refused, so a
    /// typo does not silently stream everything.
    pub fn parse(query: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "category" => {
                    let c = Category::parse(v.trim()).ok_or_else(|| {
                        format!(
                            "category={v:?} is not a category: use offer, request, info or emergency"
                        )
                    })?;
                    f.categories.push(c);
                }
                "tags" | "tag" => f.tags.extend(
                    v.split(',')
                        .map(|t| t.trim().to_lowercase())
                        .filter(|t| !t.is_empty()),
                ),
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}: /api/stream takes category and tags"
                    ))
                }
            }
        }
        if f.categories.len() > FILTER_VALUES_MAX || f.tags.len() > FILTER_VALUES_MAX {
            return Err(format!(
                "at most {FILTER_VALUES_MAX} categories and {FILTER_VALUES_MAX} tags per stream"
            ));
        }
        Ok(f)
    }

    /// Whether a reader with this filter gets `change`.
    pub fn admits(&self, change: &Change) -> bool {
        let Some((category, tags)) = change.post_facets() else {
            return true;
        };
        (self.categories.is_empty() || self.categories.contains(&category))
            && self.tags.iter().all(|t| tags.contains(t))
    }
}

/// `k=v` pairs of a query string, percent-decoded (`+` is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Filters parse repeated and comma-separated values, decode
    /// percent-escapes, and refuse unknown categories and parameters.
    #[test]
    fn filters_parse_and_refuse() {
        let f = Filter::parse("category=offer&category=request&tags=Garden,tools&tags=caf%C3%A9")
            .unwrap();
        assert_eq!(f.categories, vec![Category::Offer, Category::Request]);
        assert_eq!(f.tags, vec!["garden", "tools", "café"]);
        assert!(Filter::parse("category=bikes")
            .unwrap_err()
            .contains("not a category"));
        assert!(Filter::parse("catgory=offer")
            .unwrap_err()
            .contains("unknown query parameter"));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41+b"), "A b");
    }

    /// A reader that falls more than the broadcast's bound behind gets
    /// one `reset` (with the newest change's id), then live changes: the
    /// publisher never waited for it.
    #[tokio::test]
    async fn a_lagging_reader_gets_a_reset_then_live_changes() {
        let feed = Arc::new(ChangeFeed::new());
        let (_close, closing) = watch::channel(false);
        let state = Arc::new(StreamState {
            feed: feed.clone(),
            clients: AtomicUsize::new(0),
            gauge: Gauge::default(),
            closing: closing.clone(),
        });
        let resumed = feed.resume(None);
        let mut reader = Reader {
            live: resumed.live,
            backlog: VecDeque::new(),
            skip_through: resumed.last,
            filter: Filter::default(),
            closing,
            _slot: Slot::take(&state).unwrap(),
            state,
        };
        let reset = |n: usize| Change::Reset {
            reason: n.to_string(),
        };
        let total = crate::net::changes::BROADCAST_MAX + 10;
        for n in 0..total {
            feed.publish(reset(n));
        }
        let lagged = reader.next().await.unwrap();
        let text = format!("{lagged:?}");
        assert!(text.contains("fell") && text.contains("reload"), "{text}");
        assert!(text.contains(&feed.event_id(total as u64)), "{text}");
        feed.publish(reset(total));
        let next = format!("{:?}", reader.next().await.unwrap());
        assert!(next.contains(&feed.event_id(total as u64 + 1)), "{next}");
    }

    /// Changes about no post reach every reader; post changes only those
    /// whose filter they match.
    #[test]
    fn filters_apply_to_post_changes_only() {
        let f = Filter::parse("category=offer").unwrap();
        let reset = Change::Reset { reason: "x".into() };
        assert!(f.admits(&reset));
        let gone = |category| {
            Change::PostExpired(crate::net::changes::PostGone {
                id: hearth_proto::EventId::from_parts(1, 1),
                author: hearth_proto::NodeId::default(),
                reason: "fulfilled".into(),
                by: None,
                fulfilled_by: None,
                category,
                tags: vec!["tools".into()],
            })
        };
        assert!(f.admits(&gone(Category::Offer)));
        assert!(!f.admits(&gone(Category::Request)));
        let t = Filter::parse("tags=tools,garden").unwrap();
        assert!(!t.admits(&gone(Category::Offer)));
    }
}
