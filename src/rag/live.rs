//! Live RAG for a session: each final segment retrieves related chunks, sent as a `rag`
//! event; while retrieval is down the session gets one `rag_unavailable` error per outage,
//! and transcription never waits for it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{RagError, RagSlot};
use crate::protocol::{RagHit, ServerMessage};

/// Related chunks sent per final.
const LIVE_TOP_K: usize = 3;

pub struct SessionRag {
    slot: Arc<RagSlot>,
    tx: mpsc::UnboundedSender<(u64, u64, Result<Vec<RagHit>, RagError>)>,
    rx: mpsc::UnboundedReceiver<(u64, u64, Result<Vec<RagHit>, RagError>)>,
    pending: usize,
    outage_reported: bool,
}

impl SessionRag {
    pub fn new(slot: Arc<RagSlot>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            slot,
            tx,
            rx,
            pending: 0,
            outage_reported: false,
        }
    }

    /// Starts retrieval for every non-empty final among `events`.
    pub fn request(&mut self, events: &[ServerMessage]) {
        for event in events {
            let ServerMessage::Final {
                segment_id, text, ..
            } = event
            else {
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            let (slot, tx, segment_id, text) = (
                Arc::clone(&self.slot),
                self.tx.clone(),
                *segment_id,
                text.clone(),
            );
            self.pending += 1;
            tokio::spawn(async move {
                let started = Instant::now();
                let result = match slot.get().await {
                    Ok(rag) => rag.search(&text, LIVE_TOP_K).await.map(|(hits, _)| {
                        hits.into_iter()
                            .map(|h| RagHit {
                                text: h.text,
                                source: h.source,
                                page: h.page,
                                score: h.score,
                            })
                            .collect()
                    }),
                    Err(e) => Err(e),
                };
                let ms = started.elapsed().as_millis() as u64;
                let _ = tx.send((segment_id, ms, result));
            });
        }
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Collects the results still pending, waiting at most `limit`.
    pub async fn drain(&mut self, limit: std::time::Duration) -> Vec<ServerMessage> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while self.pending > 0 {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(events) => out.extend(events),
                Err(_) => break,
            }
        }
        out
    }

    /// The next result as events (possibly none); never returns while nothing is pending.
    pub async fn next(&mut self) -> Vec<ServerMessage> {
        let Some((segment_id, latency_ms, result)) = self.rx.recv().await else {
            return std::future::pending().await;
        };
        self.pending = self.pending.saturating_sub(1);
        match result {
            Ok(hits) => {
                self.outage_reported = false;
                vec![ServerMessage::Rag {
                    segment_id,
                    hits,
                    latency_ms,
                }]
            }
            Err(RagError::Invalid(_)) => Vec::new(),
            Err(e) => {
                tracing::warn!(segment_id, error = %e, "no related documents: RAG unavailable");
                if std::mem::replace(&mut self.outage_reported, true) {
                    return Vec::new();
                }
                vec![ServerMessage::error(
                    "rag_unavailable",
                    format!(
                        "related documents are paused: {e}. Transcription goes on; they resume when retrieval is back."
                    ),
                    false,
                )]
            }
        }
    }
}
