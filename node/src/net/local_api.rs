//! The running node's local API: a Unix socket in the data dir, readable
//! and writable by the owner only (mode 0600), speaking one JSON object per
//! line: `{"capability": "market.list", "params": {...}}` answered by
//! `{"ok": ...}` or `{"error": {"code": "...", "message": "..."}}`.
//!
//! Calls go to the same bus dispatch as remote calls, as `Caller::Local`.
//! `node.status` is answered by the driver (it knows the peers). The HTTP
//! API (JSON-RPC, SSE, web UI) will extend this, not replace it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, info_span, warn, Instrument};

use super::driver::Handle;
use crate::core::bus::BusError;

/// A request line longer than this is refused (a post is at most ~16 KiB).
pub const REQUEST_BYTES_MAX: u64 = 1 << 20;
/// Local clients served at once; more wait for a slot.
pub const CONNECTIONS_MAX: usize = 16;

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
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let path: PathBuf = path.to_owned();
    Ok(tokio::spawn(
        async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let handle = handle.clone();
                        tokio::spawn(async move {
                            if let Err(e) = connection(stream, handle).await {
                                debug!(error = %e, "local API connection ended");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => warn!(error = %e, "accepting on the local API socket"),
                }
            }
        }
        .instrument(info_span!("local_api", socket = %path.display())),
    ))
}

async fn connection(stream: UnixStream, handle: Handle) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(REQUEST_BYTES_MAX + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() as u64 > REQUEST_BYTES_MAX {
            error_json(&BusError::bad_request(format!(
                "request is over {REQUEST_BYTES_MAX} bytes"
            )))
        } else {
            answer(&line, &handle).await
        };
        let mut out = answer.to_string();
        out.push('\n');
        write.write_all(out.as_bytes()).await?;
        if line.len() as u64 > REQUEST_BYTES_MAX {
            return Ok(()); // the rest of that line is garbage to us
        }
    }
}

fn error_json(e: &BusError) -> Value {
    json!({ "error": { "code": e.code.as_str(), "message": e.message } })
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
    call(capability, params, handle)
        .instrument(info_span!("local_call", capability))
        .await
}

async fn call(capability: &str, params: Value, handle: &Handle) -> Value {
    if capability == "node.status" {
        return match handle.status().await {
            Some(status) => json!({ "ok": status }),
            None => error_json(&BusError::unavailable("the node is shutting down")),
        };
    }
    let params = match ciborium::Value::serialized(&params) {
        Ok(p) => p,
        Err(e) => return error_json(&BusError::bad_request(format!("params: {e}"))),
    };
    match handle.call(capability, params).await {
        Ok(v) => match v.deserialized::<Value>() {
            Ok(v) => json!({ "ok": v }),
            Err(e) => error_json(&BusError::internal(e)),
        },
        Err(e) => error_json(&e),
    }
}
