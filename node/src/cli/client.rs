//! The CLI's side of the running node's local API: one JSON request per
//! line over the Unix socket `node.sock` in the data dir (see
//! `net::local_api` for the server and the format).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// A call that takes longer than this is reported as a timeout: the longest
/// capability timeout is 10 s.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The running node hung up or refused mid-call: the call may or may not
/// have been carried out, so the message says how to check and retry.
#[derive(Debug, thiserror::Error)]
#[error(
    "the running node ({socket}) closed the connection before answering ({cause}); \
     the call may not have been carried out: check `hearth run`'s log (restart it if it \
     is stuck), then retry"
)]
pub struct ConnectionClosed {
    socket: String,
    cause: String,
}

#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects if a node runs on this data dir. A socket file nobody
    /// listens on (a node that was killed) counts as "not running".
    pub fn connect(path: &Path) -> anyhow::Result<Option<Client>> {
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
        };
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.set_write_timeout(Some(CALL_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Some(Client {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        }))
    }

    fn closed(&self, cause: impl std::fmt::Display) -> anyhow::Error {
        ConnectionClosed {
            socket: self.path.display().to_string(),
            cause: cause.to_string(),
        }
        .into()
    }

    /// Calls `capability` with `params`; a refusal becomes an error that
    /// starts with its wire code (`unauthorized: ...`).
    pub fn call(&mut self, capability: &str, params: Value) -> anyhow::Result<Value> {
        let mut line = json!({ "capability": capability, "params": params }).to_string();
        line.push('\n');
        if let Err(e) = self.writer.write_all(line.as_bytes()) {
            return Err(match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    self.closed(format!("sending failed: {e}"))
                }
                _ => anyhow::Error::new(e).context("sending to the running node"),
            });
        }
        let mut answer = String::new();
        let n = match self.reader.read_line(&mut answer) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(self.closed(format!("reading failed: {e}")))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bail!(
                    "timeout: the running node did not answer {capability} within {} s; \
                     it may still carry it out",
                    CALL_TIMEOUT.as_secs()
                )
            }
            Err(e) => return Err(e).context("reading the running node's answer"),
        };
        if n == 0 {
            return Err(self.closed("no answer"));
        }
        let mut answer: Value =
            serde_json::from_str(&answer).context("the running node's answer is not JSON")?;
        if let Some(ok) = answer.get_mut("ok") {
            return Ok(ok.take());
        }
        let code = answer["error"]["code"].as_str().unwrap_or("internal");
        let message = answer["error"]["message"].as_str().unwrap_or("no message");
        bail!("{code}: {message}")
    }
}
