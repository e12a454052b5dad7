//! Webhook deliveries of saved searches: a POST of the matching post's
//! JSON to the subscription's URL, signed with the subscription's secret.
//! This module owns the delivery side: the bounded queue, the task that
//! drains it, the retries with backoff and jitter, the HTTP client and the
//! bounded delivery log.
//!
//! - Headers: `X-Hearth-Signature: sha256=<hex HMAC-SHA256(body, secret)>`
//!   and `X-Hearth-Delivery: <ULID>`, the same on every attempt, so the
//!   receiver can drop a repeat of a delivery it already took.
//! - A 2xx answer delivers; anything else (another status, a refused
//!   connection, no answer within [`ATTEMPT_TIMEOUT`]) is retried after
//!   `BACKOFF_BASE * 2^(attempt-1)` plus up to half that again at random,
//!   at most [`ATTEMPTS_MAX`] attempts, then abandoned.
//! - Matching never waits on a delivery: it offers the job to a queue of
//!   [`QUEUE_MAX`] and, if that is full, logs the delivery as dropped.
//!   Deliveries run on their own task, [`CONCURRENT_MAX`] at a time, so a
//!   slow or failing target delays only its own deliveries.
//! - The client is hyper's HTTP/1 connection (already built for axum),
//!   one connection per attempt; `https://` through rustls (already built
//!   for QUIC) with the webpki roots.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Request, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};

use crate::net::driver::now_ms;

/// Jobs waiting for the delivery task: a burst of matching posts (a sync
/// after days offline) fits; past it a delivery is logged as dropped
/// rather than making matching wait.
pub const QUEUE_MAX: usize = 256;
/// Deliveries in flight at once: a few slow targets cannot hold every
/// delivery, and the node opens at most this many connections for them.
pub const CONCURRENT_MAX: usize = 8;
/// Attempts per delivery, the first included: with the backoff below the
/// last is about 15-22 s after the first, enough for a receiver that
/// restarts.
pub const ATTEMPTS_MAX: u32 = 5;
/// The first retry waits this long (plus jitter); each next one twice as
/// long.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// One attempt (connect, send, read the status) may take this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries the log keeps (newest), for `subscription.deliveries`.
pub const LOG_MAX: usize = 256;

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub at_ms: u64,
    /// The HTTP status answered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why there was no status (connection refused, timeout, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Queued, or between attempts.
    Pending,
    Delivered,
    /// Every attempt failed.
    Abandoned,
    /// The queue was full: never attempted.
    Dropped,
}

/// One delivery as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The `X-Hearth-Delivery` id.
    pub id: String,
    pub subscription: String,
    pub post: String,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
}

/// A delivery to make.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub subscription: String,
    pub post: String,
    pub url: String,
    pub secret: String,
    pub body: Bytes,
}

/// The delivery queue, log and task.
#[derive(Debug)]
pub struct Deliveries {
    queue: mpsc::Sender<Job>,
    log: Arc<Mutex<VecDeque<Delivery>>>,
    /// Deliveries finished (delivered, abandoned or dropped) so far: tests
    /// and operators can wait on it instead of polling the log.
    finished: watch::Receiver<u64>,
}

/// Shared by the task and the front.
#[derive(Debug)]
struct Shared {
    log: Arc<Mutex<VecDeque<Delivery>>>,
    finished: watch::Sender<u64>,
    backoff_base: Duration,
}

impl Shared {
    fn update(&self, id: &str, f: impl FnOnce(&mut Delivery)) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = log.iter_mut().rev().find(|d| d.id == id) {
            f(d);
        }
    }

    fn finish(&self) {
        self.finished.send_modify(|n| *n += 1);
    }
}

impl Deliveries {
    /// Starts the delivery task on the current runtime. It ends when the
    /// last `Deliveries` (its queue's sender) is dropped.
    pub fn start() -> Deliveries {
        Deliveries::start_with(BACKOFF_BASE)
    }

    /// [`Deliveries::start`] with another backoff base (tests).
    pub fn start_with(backoff_base: Duration) -> Deliveries {
        let (queue, jobs) = mpsc::channel(QUEUE_MAX);
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_MAX)));
        let (finished_tx, finished) = watch::channel(0);
        let shared = Arc::new(Shared {
            log: log.clone(),
            finished: finished_tx,
            backoff_base,
        });
        tokio::spawn(run(jobs, shared));
        Deliveries {
            queue,
            log,
            finished,
        }
    }

    /// Logs `job` and queues it; never waits. A full queue logs it as
    /// dropped.
    pub fn offer(&self, job: Job) {
        let mut entry = Delivery {
            id: job.id.clone(),
            subscription: job.subscription.clone(),
            post: job.post.clone(),
            url: job.url.clone(),
            state: DeliveryState::Pending,
            attempts: Vec::new(),
        };
        let queued = self.queue.try_send(job);
        if queued.is_err() {
            warn!(delivery = %entry.id, "webhook queue full: delivery dropped");
            entry.state = DeliveryState::Dropped;
        }
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if log.len() >= LOG_MAX {
                log.pop_front();
            }
            log.push_back(entry);
        }
    }

    /// The newest `limit` deliveries (of `subscription`, if given), newest
    /// first.
    pub fn log(&self, subscription: Option<&str>, limit: usize) -> Vec<Delivery> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .rev()
            .filter(|d| subscription.is_none_or(|s| d.subscription == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Counts finished deliveries (see the field).
    pub fn finished(&self) -> watch::Receiver<u64> {
        self.finished.clone()
    }
}

async fn run(mut jobs: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_MAX));
    while let Some(job) = jobs.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            deliver(&job, &shared).await;
            drop(permit);
        });
    }
}

/// Every attempt of one delivery, logged as it goes.
async fn deliver(job: &Job, shared: &Shared) {
    let signature = format!(
        "sha256={}",
        hex::encode(hmac_sha256(job.secret.as_bytes(), &job.body))
    );
    for attempt in 1..=ATTEMPTS_MAX {
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, post_once(job, &signature))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())));
        let delivered = matches!(outcome, Ok(s) if (200..300).contains(&s));
        let record = Attempt {
            at_ms: now_ms(),
            status: outcome.as_ref().ok().copied(),
            error: outcome.as_ref().err().cloned(),
        };
        debug!(delivery = %job.id, attempt, ?record, "webhook attempt");
        let last = attempt == ATTEMPTS_MAX;
        shared.update(&job.id, |d| {
            d.attempts.push(record);
            if delivered {
                d.state = DeliveryState::Delivered;
            } else if last {
                d.state = DeliveryState::Abandoned;
            }
        });
        if delivered {
            shared.finish();
            return;
        }
        if !last {
            tokio::time::sleep(backoff(shared.backoff_base, attempt)).await;
        }
    }
    info!(delivery = %job.id, url = %job.url, "webhook abandoned after {ATTEMPTS_MAX} attempts");
    shared.finish();
}

/// The wait after failed attempt `attempt` (1-based): exponential, plus
/// up to half again at random, so many failing deliveries do not retry in
/// lockstep.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    use rand_core::RngCore;
    let step = base.saturating_mul(1u32 << (attempt - 1).min(16));
    let spread = (step.as_millis() as u64 / 2).max(1);
    step + Duration::from_millis(rand_core::OsRng.next_u64() % spread)
}

/// One POST; the status answered, or why there was none.
async fn post_once(job: &Job, signature: &str) -> Result<u16, String> {
    let uri: Uri = job.url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("not an http:// or https:// URL".into()),
    };
    let host = uri.host().ok_or("URL without a host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            header::HOST,
            uri.authority().map_or(host.to_owned(), |a| a.to_string()),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "hearth-node webhook")
        .header("x-hearth-signature", signature)
        .header("x-hearth-delivery", &job.id)
        .body(Full::new(job.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    if !https {
        return send(TokioIo::new(tcp), request).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
    let tls = tls_connector()?
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
    send(TokioIo::new(tls), request).await
}

/// Sends `request` on a fresh HTTP/1 connection over `io`.
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"));
    conn.abort();
    Ok(answer?.status().as_u16())
}

/// The TLS client, built once: rustls with aws-lc-rs (what QUIC builds)
/// and the webpki roots.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONNECTOR: std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>> =
        std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
        })
        .clone()
}

/// HMAC-SHA256 (RFC 2104) of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    use hmac::{Mac, SimpleHmac};
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut mac = match SimpleHmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is RFC 4231's HMAC-SHA256 (test case 2).
    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// An https:// target is spoken to over TLS: a plain HTTP server
    /// there fails the attempt with a TLS error, not a delivery.
    #[tokio::test]
    async fn https_targets_are_spoken_to_over_tls() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let job = Job {
            id: "d".into(),
            subscription: "s".into(),
            post: "p".into(),
            url: format!("https://localhost:{}/hook", addr.port()),
            secret: "k".into(),
            body: Bytes::from_static(b"{}"),
        };
        let e = post_once(&job, "sha256=00").await.unwrap_err();
        assert!(e.contains("TLS"), "{e}");
    }

    /// Backoff doubles per attempt and adds at most half again.
    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4u32 {
            let step = 100u64 << (attempt - 1);
            let b = backoff(base, attempt).as_millis() as u64;
            assert!((step..step + step / 2).contains(&b), "{attempt}: {b}");
        }
    }
}
