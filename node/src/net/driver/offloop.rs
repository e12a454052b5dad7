//! Calls the driver serves off its loop: `market.search` for the local user
//! (the [`Searcher`] awaits peers and models) and `market.list` with `q`
//! (the listing of the same search, by relevance), `embed.text` (CPU-bound, on
//! a blocking thread, at most its descriptor's `max_concurrent` at once,
//! for the local user and for member peers), and `node.capabilities` (what
//! this node serves, so peers can find an embedding provider).
//!
//! A remote call's answer must go out through the swarm, which only the
//! loop touches: finished work comes back on a channel the loop selects on.

use std::sync::Arc;

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{info_span, Instrument};

use super::{Driver, Handle};
use crate::core::bus::{level_satisfies, BusError};
use crate::core::services::market::{LIST, SEARCH};
use crate::core::ErrorCode;
use crate::net::identity;
use crate::net::wire::{BusRequest, BusResponse};
use crate::semantic::cache::{VectorCache, MEMORY_ENTRIES_DEFAULT};
use crate::semantic::search::{Capabilities, Searcher, NODE_CAPABILITIES};
use crate::semantic::{EmbedText, TextEmbedder, EMBED_TEXT, EMBED_TEXT_DESCRIPTOR};
use crate::store::EventStore;

/// Answers of remote calls finished off the loop, waiting to be sent: at
/// most `max_concurrent` embeddings run, so this stays small.
pub(super) const FINISHED_QUEUE_MAX: usize = 64;

/// What semantic search needs at start: the model, if this node has one,
/// and where vectors are kept.
#[derive(Clone, Default)]
pub struct SearchSetup {
    pub model: Option<Arc<dyn TextEmbedder>>,
    /// The sled tree for vectors (`None`: memory only).
    pub vectors: Option<sled::Tree>,
    /// Vectors in memory (default 5,000).
    pub cache_entries: Option<usize>,
    /// Warm the vector cache in the background (on in `hearth run`).
    pub warm: bool,
}

impl std::fmt::Debug for SearchSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchSetup")
            .field(
                "model",
                &self.model.as_ref().map(|m| m.model_id().to_owned()),
            )
            .field("vectors", &self.vectors.is_some())
            .field("cache_entries", &self.cache_entries)
            .finish()
    }
}

/// A local call handed back to the core: name, params, where to answer.
pub(super) type LocalCall = (
    String,
    ciborium::Value,
    oneshot::Sender<Result<ciborium::Value, BusError>>,
);

/// A remote call's answer, ready to send.
pub(super) type Finished = (ResponseChannel<BusResponse>, BusResponse);

pub(super) struct OffLoop {
    pub(super) searcher: Arc<Searcher>,
    embed: Option<Arc<EmbedText>>,
    slots: Arc<Semaphore>,
    finished: mpsc::Sender<Finished>,
}

impl OffLoop {
    pub(super) fn new(setup: &SearchSetup, handle: Handle) -> (OffLoop, mpsc::Receiver<Finished>) {
        let embed = setup.model.clone().map(|m| Arc::new(EmbedText::new(m)));
        let model_id = setup.model.as_ref().map_or("", |m| m.model_id());
        let cache = VectorCache::new(
            model_id,
            setup.cache_entries.unwrap_or(MEMORY_ENTRIES_DEFAULT),
            setup.vectors.clone(),
        );
        let searcher = Arc::new(Searcher::new(handle, embed.clone(), cache));
        if setup.warm {
            tokio::spawn(searcher.clone().warm_forever());
        }
        let (tx, rx) = mpsc::channel(FINISHED_QUEUE_MAX);
        let slots = Arc::new(Semaphore::new(
            EMBED_TEXT_DESCRIPTOR.max_concurrent as usize,
        ));
        (
            OffLoop {
                searcher,
                embed,
                slots,
                finished: tx,
            },
            rx,
        )
    }

    /// What this node serves: the core's capabilities, plus `embed.text`
    /// when a model is loaded.
    fn capabilities(&self) -> Capabilities {
        let mut names: Vec<String> = crate::core::services::descriptors()
            .map(|d| d.name.to_owned())
            .collect();
        if self.embed.is_some() {
            names.push(EMBED_TEXT.to_owned());
        }
        Capabilities {
            capabilities: names,
        }
    }

    /// Runs `embed.text` on a blocking thread if a slot is free.
    fn embed(
        &self,
        params: ciborium::Value,
    ) -> Result<impl std::future::Future<Output = Result<ciborium::Value, BusError>>, BusError>
    {
        let Some(embed) = self.embed.clone() else {
            return Err(BusError::not_found(
                "this node has no embedding model: run scripts/fetch-model, or search through a peer that has one",
            ));
        };
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            BusError::new(
                ErrorCode::Overloaded,
                format!(
                    "embed.text is serving {} calls already; try again",
                    EMBED_TEXT_DESCRIPTOR.max_concurrent
                ),
            )
        })?;
        Ok(async move {
            let answer = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                embed.serve(params)
            })
            .await;
            answer.map_err(BusError::internal)?
        })
    }
}

/// Whether `market.list` params carry a search (`q`): that listing is
/// served by the searcher, by meaning where a model is reachable.
fn has_q(params: &ciborium::Value) -> bool {
    params.as_map().is_some_and(|m| {
        m.iter()
            .any(|(k, v)| k.as_text() == Some("q") && !v.is_null())
    })
}

fn encode(result: Result<Capabilities, BusError>) -> Result<ciborium::Value, BusError> {
    result.and_then(|c| ciborium::Value::serialized(&c).map_err(BusError::internal))
}

impl<S: EventStore> Driver<S> {
    /// Serves a local call off the loop if it is one of ours; otherwise
    /// hands it back for the core.
    pub(super) fn local_call_off_loop(
        &mut self,
        name: String,
        params: ciborium::Value,
        reply: oneshot::Sender<Result<ciborium::Value, BusError>>,
    ) -> Option<LocalCall> {
        match name.as_str() {
            SEARCH => {
                let searcher = self.offloop.searcher.clone();
                tokio::spawn(
                    async move {
                        let _ = reply.send(searcher.serve(params).await);
                    }
                    .instrument(info_span!("market.search")),
                );
            }
            LIST if has_q(&params) => {
                let searcher = self.offloop.searcher.clone();
                tokio::spawn(
                    async move {
                        let _ = reply.send(searcher.list(params).await);
                    }
                    .instrument(info_span!("market.list")),
                );
            }
            EMBED_TEXT => match self.offloop.embed(params) {
                Ok(work) => {
                    tokio::spawn(async move {
                        let _ = reply.send(work.await);
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            NODE_CAPABILITIES => {
                let _ = reply.send(encode(Ok(self.offloop.capabilities())));
            }
            _ => return Some((name, params, reply)),
        }
        None
    }

    /// Serves a peer's call off the loop if it is one of ours; otherwise
    /// hands the channel back for the core's queue.
    pub(super) fn remote_call_off_loop(
        &mut self,
        peer: PeerId,
        request: &BusRequest,
        channel: ResponseChannel<BusResponse>,
    ) -> Option<ResponseChannel<BusResponse>> {
        let answer = match request.capability.as_str() {
            NODE_CAPABILITIES => encode(Ok(self.offloop.capabilities())),
            EMBED_TEXT => {
                let level =
                    identity::node_id(&peer).and_then(|n| self.node.views().membership.level(&n));
                if !level_satisfies(level, EMBED_TEXT_DESCRIPTOR.trust_required) {
                    Err(BusError::unauthorized(format!(
                        "{EMBED_TEXT} is for members of the community; {peer} is not one"
                    )))
                } else {
                    match self.offloop.embed(request.params.clone()) {
                        Ok(work) => {
                            let finished = self.offloop.finished.clone();
                            tokio::spawn(async move {
                                let response = match work.await {
                                    Ok(v) => BusResponse::Ok(v),
                                    Err(e) => BusResponse::Err(e),
                                };
                                let _ = finished.send((channel, response)).await;
                            });
                            return None;
                        }
                        Err(e) => Err(e),
                    }
                }
            }
            _ => return Some(channel),
        };
        let response = match answer {
            Ok(v) => BusResponse::Ok(v),
            Err(e) => BusResponse::Err(e),
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .bus
            .send_response(channel, response);
        None
    }

    /// Sends an answer finished off the loop.
    pub(super) fn on_finished(&mut self, (channel, response): Finished) {
        let _ = self
            .swarm
            .behaviour_mut()
            .bus
            .send_response(channel, response);
    }
}
