//! Live RAG for a session: retrieval as one of the driver's enrichers. Each final retrieves
//! related chunks, sent as a `rag` event; while retrieval is down the session gets one
//! `rag_unavailable` error per outage, and transcription never waits for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{RagError, RagSlot};
use crate::driver::enrich::{EarlyEvents, EnrichFuture, Enriched, Enricher, FinalText};
use crate::protocol::{EffectiveOptions, RagHit, ServerMessage};

/// Related chunks sent per final.
const LIVE_TOP_K: usize = 3;

pub struct RagEnricher {
    pub slot: Arc<RagSlot>,
    /// How long a closing session waits for its last related documents.
    pub drain_limit: Duration,
}

impl Enricher for RagEnricher {
    fn wanted(&self, options: &EffectiveOptions) -> bool {
        options.rag
    }

    fn drain_limit(&self) -> Duration {
        self.drain_limit
    }

    fn enrich(&self, segment: FinalText, _early: EarlyEvents) -> EnrichFuture {
        let slot = Arc::clone(&self.slot);
        Box::pin(async move {
            let started = Instant::now();
            let result = match slot.get().await {
                Ok(rag) => rag
                    .search(&segment.text, LIVE_TOP_K)
                    .await
                    .map(|(hits, _)| {
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
            let segment_id = segment.segment_id;
            match result {
                Ok(hits) => Enriched::Events(vec![ServerMessage::Rag {
                    segment_id,
                    hits,
                    latency_ms: started.elapsed().as_millis() as u64,
                }]),
                Err(RagError::Invalid(_)) => Enriched::Events(Vec::new()),
                Err(e) => {
                    tracing::warn!(segment_id, error = %e, "no related documents: RAG unavailable");
                    Enriched::Unavailable(ServerMessage::error(
                        "rag_unavailable",
                        format!(
                            "related documents are paused: {e}. Transcription goes on; they resume when retrieval is back."
                        ),
                        false,
                    ))
                }
            }
        })
    }
}
