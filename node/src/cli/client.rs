//! The CLI's side of the running node's local API: one JSON request per
//! line over the Unix socket `node.sock` in the data dir (see
//! `net::local_api` for the server and the format).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// A call that takes longer than this is reported as a timeout: the longest
/// capability timeout is 10 s.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Client {
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
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
        };
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Some(Client {
            reader: BufReader::new(stream),
            writer,
        }))
    }

    /// Calls `capability` with `params`; a refusal becomes an error that
    /// starts with its wire code (`unauthorized: ...`).
    pub fn call(&mut self, capability: &str, params: Value) -> anyhow::Result<Value> {
        let mut line = json!({ "capability": capability, "params": params }).to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .context("sending to the running node")?;
        let mut answer = String::new();
        let n = self
            .reader
            .read_line(&mut answer)
            .context("reading the running node's answer")?;
        if n == 0 {
            bail!("the running node closed the connection without answering");
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
