//! The RAG service as the server holds it: connected on first use and again after a failure,
//! so the server starts (and transcribes) while the embedding endpoint is down or starting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Rag, RagError};
use crate::cache::Cache;
use crate::config::{LlmConfig, RagConfig};

/// Connects RAG on first use and again after a failure (at most every few seconds), so the
/// server starts even while the embedding endpoint is still coming up or is down.
///
/// Two locks, so that nothing waits on a connection attempt but the callers that need it: the
/// state sits behind a plain mutex held only to read or write it (never across an `await`), and
/// connection attempts take turns on an async one. `status` never waits for a reconnect.
pub struct RagSlot {
    cfg: RagConfig,
    llm: LlmConfig,
    cache: Cache,
    state: Mutex<SlotState>,
    /// Held for the whole of one connection attempt: callers arriving meanwhile wait for its
    /// outcome instead of starting their own.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    rag: Option<Arc<Rag>>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

const RETRY_EVERY: Duration = Duration::from_secs(3);

impl RagSlot {
    pub fn new(cfg: &RagConfig, llm: &LlmConfig, cache: Cache) -> Self {
        Self {
            cfg: cfg.clone(),
            llm: llm.clone(),
            cache,
            state: Mutex::new(SlotState::default()),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connected service, connecting now if it is not (yet).
    pub async fn get(&self) -> Result<Arc<Rag>, RagError> {
        if !self.cfg.enabled {
            return Err(RagError::Disabled);
        }
        if let Some(rag) = self.state().rag.clone() {
            return Ok(rag);
        }
        let _turn = self.connecting.lock().await;
        let due = {
            let mut state = self.state();
            if let Some(rag) = &state.rag {
                return Ok(Arc::clone(rag));
            }
            let due = state
                .last_attempt
                .is_none_or(|t| t.elapsed() >= RETRY_EVERY);
            if due {
                state.last_attempt = Some(Instant::now());
            }
            due
        };
        if due {
            match Rag::connect(&self.cfg, &self.llm, self.cache.clone()).await {
                Ok(rag) => {
                    let rag = Arc::new(rag);
                    let mut state = self.state();
                    state.rag = Some(Arc::clone(&rag));
                    state.last_error = None;
                    return Ok(rag);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "RAG is not available");
                    self.state().last_error = Some(e.to_string());
                }
            }
        }
        Err(RagError::NotConnected(
            self.state()
                .last_error
                .clone()
                .unwrap_or_else(|| "not connected yet".to_owned()),
        ))
    }

    /// State for `/api/status`, without connecting and without waiting for a connection
    /// attempt in progress.
    pub async fn status(&self) -> Value {
        if !self.cfg.enabled {
            return json!({ "enabled": false });
        }
        let (rag, last_error) = {
            let state = self.state();
            (state.rag.clone(), state.last_error.clone())
        };
        let Some(rag) = rag else {
            return json!({
                "enabled": true,
                "connected": false,
                "error": last_error,
                "store": if self.cfg.qdrant_url.is_some() { "qdrant" } else { "qdrant-edge" },
            });
        };
        let (embedder_up, store_up) = rag.healthy().await;
        json!({
            "enabled": true,
            "connected": embedder_up && store_up,
            "store": rag.store().kind(),
            "store_up": store_up,
            "chunks": rag.store().count().await.ok(),
            "embedder": rag.embedder().source(),
            "embedder_up": embedder_up,
            "embedder_circuit": rag.embedder().circuit(),
            "embed_model": rag.embedder().model(),
            "dim": rag.embedder().dim(),
        })
    }
}
