//! Where command results go: JSON (`--json`) or human text, on stdout.
//!
//! Every write to our own stdout goes through [`StdoutWriter`], which tags
//! its errors with [`StdoutClosed`]. `main` swallows a broken pipe only when
//! it carries that tag (`hearth list | head`): a broken pipe anywhere else,
//! such as a send to the running node that closed its socket, is a real
//! failure and exits non-zero.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

/// The tag on an error from writing our own stdout. Only such an error,
/// with kind `BrokenPipe`, means "the reader went away" and is not a failure.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutClosed(io::Error);

/// Stdout, with every error wrapped as an `io::Error` of the same kind whose
/// inner error is [`StdoutClosed`]: the kind keeps callers' retries and
/// messages working, the inner type says where it came from.
#[derive(Debug)]
pub struct StdoutWriter(io::Stdout);

fn tag(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), StdoutClosed(e))
}

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(tag)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(tag)
    }
}

#[derive(Debug)]
pub struct Output {
    json: bool,
    out: BufWriter<StdoutWriter>,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output {
            json,
            out: BufWriter::new(StdoutWriter(io::stdout())),
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `value` as one pretty JSON document with `--json`, else runs
    /// `human` to write text.
    pub fn show<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        if self.json {
            let mut text = serde_json::to_vec_pretty(value)?;
            text.push(b'\n');
            self.out.write_all(&text)?;
        } else {
            human(&mut self.out)?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Human text only (progress lines); nothing with `--json`.
    pub fn note(&mut self, line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
        if !self.json {
            writeln!(self.out, "{line}")?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// The raw stream, for binary output (`log export -`).
    pub fn raw(&mut self) -> &mut dyn Write {
        &mut self.out
    }
}

/// Whether `err` is, somewhere in its chain, a write to our own stdout that
/// found the pipe closed (the reader, e.g. `head`, exited). Any other
/// broken pipe is not this.
pub fn is_stdout_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let tagged = |e: &io::Error| {
            e.kind() == io::ErrorKind::BrokenPipe
                && e.get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<StdoutClosed>().is_some())
        };
        cause.downcast_ref::<io::Error>().is_some_and(tagged)
            || cause
                .downcast_ref::<StdoutClosed>()
                .is_some_and(|e| e.0.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a broken pipe tagged as our stdout's counts as "stdout closed".
    #[test]
    fn only_a_tagged_broken_pipe_is_stdout_closed() {
        let ours = anyhow::Error::new(tag(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(is_stdout_closed(&ours.context("printing")));
        let socket = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("sending to the running node");
        assert!(!is_stdout_closed(&socket));
        let other = anyhow::Error::new(tag(io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_stdout_closed(&other));
    }
}
