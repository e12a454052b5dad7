//! Where command results go: JSON (`--json`) or human text, on stdout.
//!
//! Write errors are returned, not panicked on, so `main` can tell a closed
//! pipe (`hearth list | head`), which is not an error, from a real failure.

use std::io::{self, BufWriter, Write};

use serde::Serialize;

#[derive(Debug)]
pub struct Output {
    json: bool,
    out: BufWriter<io::Stdout>,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output {
            json,
            out: BufWriter::new(io::stdout()),
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

/// Whether `err` is, somewhere in its chain, a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
