//! The running node's local API: a Unix socket in the data dir, readable
//! and writable by the owner only (mode 0600), speaking one JSON object per
//! line: `{"capability": "market.list", "params": {...}}` answered by
//! `{"ok": ...}` or `{"error": {"code": "...", "message": "..."}}`.
//!
//! Calls go to the same bus dispatch as remote calls, as `Caller::Local`.
//! `node.status` is answered by the driver (it knows the peers). The log
//! capabilities (`log.export`, `log.import`, `log.contains`) page the event
//! log in and out for `hearth log`, `hearth backup` and import while the node
//! runs; they run [`serve_log`] inside the driver loop, the same functions
//! the offline CLI calls on the data dir. Which call a name is and how it
//! reaches the driver is `api::dispatch`, shared with the HTTP API.
//!
//! This module also owns the socket's slots: a client is never made to wait
//! for another client's idle connection (see [`CONNECTIONS_MAX`]).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_proto::{EventHash, EventKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

#[cfg(test)]
use super::driver::Command;
use super::driver::Handle;
use crate::core::bus::BusError;
use crate::core::{IngestError, Ingested, Node, Source};
use crate::store::{EventStore, StoreError};

/// A request line longer than this is refused (a post is at most ~16 KiB;
/// an import batch of [`IMPORT_BATCH_BYTES`] as hex fits with room).
pub const REQUEST_BYTES_MAX: u64 = 1 << 20;
/// Local clients served at once. When all slots are taken, a new client
/// takes the slot of the connection idle the longest; only when every slot
/// is busy with a call is it refused (`overloaded`) at once, never queued.
pub const CONNECTIONS_MAX: usize = 16;
/// A connection with no request started for this long is closed: a client
/// that keeps a socket open and silent must not hold a slot for ever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Once a request line has started it must arrive whole within this long
/// (1 MiB over a local socket takes milliseconds): a client that trickles
/// bytes cannot hold its slot.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing one answer may take this long before the connection is dropped
/// (a client that stops reading).
pub const ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Event bytes per `log.export` page: hex doubles it, so an answer stays a
/// few hundred KiB, and one page is one bounded piece of driver work.
pub const EXPORT_PAGE_BYTES: usize = 256 * 1024;
/// Event bytes per `log.import` request: as hex it stays well under
/// [`REQUEST_BYTES_MAX`].
pub const IMPORT_BATCH_BYTES: usize = 256 * 1024;
/// Hashes per `log.contains` request: 64 hex characters each, under
/// [`REQUEST_BYTES_MAX`].
pub const CONTAINS_BATCH_MAX: usize = 4096;

pub const LOG_EXPORT: &str = "log.export";
pub const LOG_IMPORT: &str = "log.import";
pub const LOG_CONTAINS: &str = "log.contains";

/// One connection's entry in the slot table.
#[derive(Debug)]
struct Slot {
    /// Answering a call: never dropped to make room.
    busy: bool,
    /// When the connection last finished a call (or was accepted).
    last_active: Instant,
    /// Ends the connection's task when it is dropped to make room.
    abort: tokio::task::AbortHandle,
}

/// The connections being served, by accept order.
#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    open: BTreeMap<u64, Slot>,
}

type SharedSlots = Arc<Mutex<Slots>>;

fn lock(slots: &SharedSlots) -> std::sync::MutexGuard<'_, Slots> {
    // A panic while holding this lock cannot leave the table inconsistent
    // (each critical section is one insert, remove or flag change).
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slots {
    /// Makes room for one more connection: drops the connection idle the
    /// longest if all slots are taken. False if every slot is busy.
    fn make_room(&mut self) -> bool {
        if self.open.len() < CONNECTIONS_MAX {
            return true;
        }
        let oldest_idle = self
            .open
            .iter()
            .filter(|(_, s)| !s.busy)
            .min_by_key(|(id, s)| (s.last_active, **id))
            .map(|(id, _)| *id);
        match oldest_idle {
            Some(id) => {
                if let Some(slot) = self.open.remove(&id) {
                    debug!(
                        connection = id,
                        "dropping the longest-idle local connection"
                    );
                    slot.abort.abort();
                }
                true
            }
            None => false,
        }
    }

    fn set_busy(&mut self, id: u64, busy: bool) {
        if let Some(slot) = self.open.get_mut(&id) {
            slot.busy = busy;
            slot.last_active = Instant::now();
        }
    }
}

/// Removes the connection's slot however its task ends (also when aborted).
struct SlotGuard {
    id: u64,
    slots: SharedSlots,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        lock(&self.slots).open.remove(&self.id);
    }
}

/// Binds the socket (replacing a stale one from a killed node) and serves
/// it until the returned task is aborted. Fails if a node already runs here.
pub async fn serve(path: &Path, handle: Handle) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "a node is already running on this data dir ({} answers)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
    }
    let slots: SharedSlots = Arc::default();
    let path: PathBuf = path.to_owned();
    Ok(tokio::spawn(
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => accept(stream, &handle, &slots),
                    Err(e) => warn!(error = %e, "accepting on the local API socket"),
                }
            }
        }
        .instrument(info_span!("local_api", socket = %path.display())),
    ))
}

/// Serves a new connection in a slot of its own, or refuses it at once
/// with `overloaded` when every slot is busy with a call.
fn accept(stream: UnixStream, handle: &Handle, slots: &SharedSlots) {
    let mut table = lock(slots);
    if !table.make_room() {
        drop(table);
        tokio::spawn(async move {
            let refusal = error_json(&BusError::new(
                crate::core::ErrorCode::Overloaded,
                format!(
                    "all {CONNECTIONS_MAX} local API connections are busy answering calls; \
                     retry in a moment"
                ),
            ));
            let mut stream = stream;
            let line = format!("{refusal}\n");
            let _ =
                tokio::time::timeout(ANSWER_WRITE_TIMEOUT, stream.write_all(line.as_bytes())).await;
        });
        return;
    }
    let id = table.next_id;
    table.next_id += 1;
    let guard = SlotGuard {
        id,
        slots: slots.clone(),
    };
    let handle = handle.clone();
    // The table stays locked until the slot is in it, so the task's guard
    // cannot remove it first.
    let task = tokio::spawn(async move {
        let guard = guard;
        if let Err(e) = connection(stream, handle, &guard).await {
            debug!(error = %e, "local API connection ended");
        }
    });
    table.open.insert(
        id,
        Slot {
            busy: false,
            last_active: Instant::now(),
            abort: task.abort_handle(),
        },
    );
}

async fn connection(stream: UnixStream, handle: Handle, slot: &SlotGuard) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        // Idle deadline: wait for the first byte of the next request.
        match tokio::time::timeout(IDLE_TIMEOUT, reader.fill_buf()).await {
            Err(_) => {
                debug!("local API connection idle too long: closed");
                return Ok(());
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok([])) => return Ok(()),
            Ok(Ok(_)) => {}
        }
        // Read deadline: the rest of the line must follow promptly.
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(REQUEST_BYTES_MAX + 1);
        let read = limited.read_until(b'\n', &mut line);
        let n = match tokio::time::timeout(REQUEST_READ_TIMEOUT, read).await {
            Err(_) => bail!(
                "request line not finished within {} s: closed",
                REQUEST_READ_TIMEOUT.as_secs()
            ),
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        let too_long = line.len() as u64 > REQUEST_BYTES_MAX;
        lock(&slot.slots).set_busy(slot.id, true);
        let answer = if too_long {
            error_json(&BusError::bad_request(format!(
                "request is over {REQUEST_BYTES_MAX} bytes"
            )))
        } else {
            answer(&line, &handle).await
        };
        let mut out = answer.to_string();
        out.push('\n');
        let written = tokio::time::timeout(ANSWER_WRITE_TIMEOUT, write.write_all(out.as_bytes()))
            .await
            .context("the client did not read its answer in time")?;
        lock(&slot.slots).set_busy(slot.id, false);
        written?;
        if too_long {
            return Ok(()); // the rest of that line is garbage to us
        }
    }
}

fn error_json(e: &BusError) -> Value {
    crate::api::dispatch::socket_error(e)
}

async fn answer(line: &[u8], handle: &Handle) -> Value {
    let request: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return error_json(&BusError::bad_request(format!("request is not JSON: {e}"))),
    };
    let Some(capability) = request.get("capability").and_then(Value::as_str) else {
        return error_json(&BusError::bad_request("request has no \"capability\" text"));
    };
    let params = request.get("params").cloned().unwrap_or(json!({}));
    // The one request path shared with the HTTP API.
    let result = crate::api::dispatch::call(capability, params, handle)
        .instrument(info_span!("local_call", capability))
        .await;
    crate::api::dispatch::socket_answer(result)
}

/// A position in the log: after this event, in `(lamport, hash)` order.
#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub lamport: u64,
    pub hash: EventHash,
}

impl From<EventKey> for Cursor {
    fn from(k: EventKey) -> Cursor {
        Cursor {
            lamport: k.lamport,
            hash: k.hash,
        }
    }
}

/// The log requests of the local API (and of the offline CLI, which calls
/// [`serve_log`] on its own node the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "capability", content = "params")]
pub enum LogRequest {
    /// Up to [`EXPORT_PAGE_BYTES`] of events after `after` (from the start
    /// without it), as hex.
    #[serde(rename = "log.export")]
    Export { after: Option<Cursor> },
    /// Verifies and stores events exactly as received ones
    /// ([`Node::receive`]), one outcome each.
    #[serde(rename = "log.import")]
    Import { events: Vec<String> },
    /// Whether the log holds each hash (import's final check of events
    /// held pending).
    #[serde(rename = "log.contains")]
    Contains { hashes: Vec<EventHash> },
}

impl LogRequest {
    /// `None` if `capability` is not a log capability.
    pub(crate) fn parse(capability: &str, params: Value) -> Option<Result<LogRequest, BusError>> {
        if ![LOG_EXPORT, LOG_IMPORT, LOG_CONTAINS].contains(&capability) {
            return None;
        }
        let request = json!({ "capability": capability, "params": params });
        Some(
            serde_json::from_value(request)
                .map_err(|e| BusError::bad_request(format!("invalid params: {e}"))),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogAnswer {
    Page {
        /// Encoded events as hex, in `(lamport, hash)` order.
        events: Vec<String>,
        /// Where the next page starts; `None` after the last.
        next: Option<Cursor>,
    },
    Imported {
        outcomes: Vec<Outcome>,
    },
    Contains {
        held: Vec<bool>,
    },
}

/// What became of one received event.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Entered the log, with `count - 1` pending events it released.
    Stored { count: usize },
    /// Author not (yet) a member: held pending.
    Pending,
    /// Already in the log.
    Duplicate,
    /// Refused: `kind` groups like reasons (for counts), `reason` says it.
    Rejected { kind: String, reason: String },
}

/// The group of a refusal, for counting: a fixed set of names, whatever
/// the input (reasons themselves carry offsets and ids).
pub fn rejection_kind(e: &IngestError) -> &'static str {
    use hearth_proto::EventError as E;
    match e {
        IngestError::Invalid(e) => match e {
            E::TooLarge { .. } => "too large",
            E::Cbor(_) => "not canonical CBOR",
            E::NotAMap { .. }
            | E::MissingField(_)
            | E::UnknownField(_)
            | E::WrongType { .. }
            | E::WrongLength { .. } => "malformed envelope",
            E::UnsupportedVersion(_) => "unsupported version",
            E::LamportTooLarge(_) => "lamport too large",
            E::Schema(_) => "invalid payload",
            E::Genesis(_) => "invalid genesis",
            E::BadSignature(_) | E::WrongSigner { .. } => "bad signature",
            E::HashMismatch { .. } => "hash mismatch",
        },
        IngestError::WrongCommunity { .. } => "another community",
        IngestError::Duplicate(_) => "duplicate",
        IngestError::PendingFull(_) => "pending set full",
        IngestError::Store(_) => "store error",
    }
}

/// Receives each event as a peer's would be (`Source::File`: verified the
/// same, not relayed; sync carries it on). A store failure ends the batch.
pub fn receive_batch<S: EventStore>(
    node: &mut Node<S>,
    events: &[Vec<u8>],
) -> Result<Vec<Outcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(events.len());
    for bytes in events {
        outcomes.push(match node.receive(bytes, Source::File) {
            Ok(Ingested::Stored(stored)) => Outcome::Stored {
                count: stored.len(),
            },
            Ok(Ingested::Pending) => Outcome::Pending,
            Err(IngestError::Duplicate(_)) => Outcome::Duplicate,
            Err(IngestError::Store(e)) => return Err(e),
            Err(e) => Outcome::Rejected {
                kind: rejection_kind(&e).into(),
                reason: e.to_string(),
            },
        });
    }
    Ok(outcomes)
}

/// One page of the log after `after`: at least one event if any is left,
/// then more while they fit in `max_bytes`.
pub fn export_page<S: EventStore>(
    store: &S,
    after: Option<Cursor>,
    max_bytes: usize,
) -> Result<(Vec<Vec<u8>>, Option<Cursor>), StoreError> {
    let from = match after {
        Some(c) => Bound::Excluded(EventKey {
            lamport: c.lamport,
            hash: c.hash,
        }),
        None => Bound::Unbounded,
    };
    let mut events = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    for event in store.range(from, Bound::Unbounded) {
        let event = event?;
        if !events.is_empty() && bytes + event.bytes().len() > max_bytes {
            return Ok((events, last));
        }
        bytes += event.bytes().len();
        last = Some(Cursor::from(event.key()));
        events.push(event.into_bytes());
    }
    Ok((events, None))
}

/// Serves a log request on `node`: the driver runs this for the socket, the
/// offline CLI for its own node, so both answer alike.
pub fn serve_log<S: EventStore>(
    node: &mut Node<S>,
    request: LogRequest,
) -> Result<LogAnswer, BusError> {
    let store_error = |e: StoreError| BusError::internal(format!("event store: {e}"));
    match request {
        LogRequest::Export { after } => {
            let (events, next) =
                export_page(node.log().store(), after, EXPORT_PAGE_BYTES).map_err(store_error)?;
            Ok(LogAnswer::Page {
                events: events.iter().map(hex::encode).collect(),
                next,
            })
        }
        LogRequest::Import { events } => {
            let mut decoded = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                decoded.push(hex::decode(e).map_err(|err| {
                    BusError::bad_request(format!("events[{i}] is not hex: {err}"))
                })?);
            }
            let outcomes = receive_batch(node, &decoded).map_err(store_error)?;
            Ok(LogAnswer::Imported { outcomes })
        }
        LogRequest::Contains { hashes } => {
            let mut held = Vec::with_capacity(hashes.len());
            for h in &hashes {
                held.push(node.log().store().contains(h).map_err(store_error)?);
            }
            Ok(LogAnswer::Contains { held })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_slot(slots: &mut Slots, rt: &tokio::runtime::Runtime) -> u64 {
        let id = slots.next_id;
        slots.next_id += 1;
        let task = rt.spawn(std::future::pending::<()>());
        slots.open.insert(
            id,
            Slot {
                busy: false,
                last_active: Instant::now(),
                abort: task.abort_handle(),
            },
        );
        id
    }

    /// A full table drops its longest-idle connection, never a busy one,
    /// and refuses only when every slot is busy.
    #[test]
    fn full_table_drops_the_oldest_idle_and_never_a_busy_one() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let mut slots = Slots::default();
        let ids: Vec<u64> = (0..CONNECTIONS_MAX)
            .map(|_| idle_slot(&mut slots, &rt))
            .collect();
        slots.set_busy(ids[0], true);
        assert!(slots.make_room());
        assert!(slots.open.contains_key(&ids[0]), "busy slot kept");
        assert!(!slots.open.contains_key(&ids[1]), "oldest idle dropped");
        for id in &ids[2..] {
            slots.set_busy(*id, true);
        }
        idle_slot(&mut slots, &rt);
        let newest = slots.next_id - 1;
        slots.set_busy(newest, true);
        assert_eq!(slots.open.len(), CONNECTIONS_MAX);
        assert!(!slots.make_room(), "all busy: refused");
        assert_eq!(slots.open.len(), CONNECTIONS_MAX);
    }

    fn test_handle() -> (Handle, tokio::sync::mpsc::Receiver<Command>) {
        let (commands, rx) = tokio::sync::mpsc::channel(1);
        let (events, _) = tokio::sync::broadcast::channel(1);
        let handle = Handle {
            peer_id: libp2p::PeerId::random(),
            commands,
            events,
            metrics: Default::default(),
        };
        (handle, rx)
    }

    /// A request line that starts but does not end within the read
    /// deadline closes the connection (well before the idle deadline).
    #[tokio::test(start_paused = true)]
    async fn a_trickled_request_is_cut_off_at_the_read_deadline() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let guard = SlotGuard {
            id: 0,
            slots: Arc::default(),
        };
        let (handle, _rx) = test_handle();
        client.write_all(b"{\"capability\":").await.unwrap();
        let started = Instant::now();
        let err = connection(server, handle, &guard).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            err.to_string().contains("not finished within 10 s"),
            "{err}"
        );
        assert!(
            took >= REQUEST_READ_TIMEOUT && took < IDLE_TIMEOUT,
            "{took:?}"
        );
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "closed");
    }

    /// A connection that sends nothing is closed at the idle deadline.
    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_at_the_idle_deadline() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let guard = SlotGuard {
            id: 0,
            slots: Arc::default(),
        };
        let (handle, _rx) = test_handle();
        let started = Instant::now();
        connection(server, handle, &guard).await.unwrap();
        assert!(started.elapsed() >= IDLE_TIMEOUT);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "closed");
    }

    /// Log requests read the same JSON the client sends, and unknown
    /// capabilities are left to the bus.
    #[test]
    fn log_requests_parse_from_the_wire_form() {
        let r = LogRequest::parse(LOG_EXPORT, json!({ "after": null }));
        assert!(matches!(r, Some(Ok(LogRequest::Export { after: None }))));
        let r = LogRequest::parse(LOG_IMPORT, json!({ "events": 3 }));
        assert!(matches!(r, Some(Err(e)) if e.message.contains("invalid params")));
        assert!(LogRequest::parse("market.list", json!({})).is_none());
    }
}
