//! Keywords for a session's finals: the keyword extractor as one of the driver's enrichers.
//! Each keyword is sent (`keyword`) as soon as the LLM has written it, then the segment's
//! `keywords`; while the LLM is down the session gets one `llm_unavailable` error per outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{KeywordError, KeywordExtractor};
use crate::driver::enrich::{EarlyEvents, EnrichFuture, Enriched, Enricher, FinalText};
use crate::protocol::{EffectiveOptions, ServerMessage};

pub struct KeywordsEnricher {
    pub extractor: Arc<KeywordExtractor>,
    /// How long a closing session waits for its last keywords.
    pub drain_limit: Duration,
}

impl Enricher for KeywordsEnricher {
    fn wanted(&self, options: &EffectiveOptions) -> bool {
        options.keywords
    }

    fn drain_limit(&self) -> Duration {
        self.drain_limit
    }

    fn enrich(&self, segment: FinalText, early: EarlyEvents) -> EnrichFuture {
        let extractor = Arc::clone(&self.extractor);
        Box::pin(async move {
            let started = Instant::now();
            let segment_id = segment.segment_id;
            let (early_tx, mut early_rx) = tokio::sync::mpsc::unbounded_channel();
            let extraction = async move {
                let result = extractor
                    .extract_streaming(&segment.text, Some(&early_tx))
                    .await;
                drop(early_tx);
                result
            };
            let forward = async {
                while let Some(keyword) = early_rx.recv().await {
                    early.send(ServerMessage::Keyword {
                        segment_id,
                        keyword,
                        latency_ms: started.elapsed().as_millis() as u64,
                    });
                }
            };
            let (result, ()) = tokio::join!(extraction, forward);
            match result {
                Ok(extraction) => Enriched::Events(vec![ServerMessage::Keywords {
                    segment_id,
                    keywords: extraction.keywords,
                    model: extraction.model,
                    latency_ms: extraction.latency_ms,
                    cached: extraction.cached,
                }]),
                Err(KeywordError::Unavailable(reason)) => {
                    tracing::warn!(segment_id, %reason, "no keywords: LLM unavailable");
                    Enriched::Unavailable(ServerMessage::error(
                        "llm_unavailable",
                        format!(
                            "keywords are paused: {reason}. Transcription goes on; keywords resume when the LLM is back."
                        ),
                        false,
                    ))
                }
                // Already logged with its reason; a bad answer is never forwarded.
                Err(KeywordError::Rejected(_)) => Enriched::Events(Vec::new()),
            }
        })
    }
}
