//! One session's keyword requests: a task per final segment, early keywords and results
//! turned into protocol events, one `llm_unavailable` error per outage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Extraction, KeywordError, KeywordExtractor};
use crate::protocol::{Keyword, ServerMessage};

/// What a session's keyword task reports: keywords as the model writes them, then the result.
enum Report {
    Early {
        segment_id: u64,
        keyword: Keyword,
        latency_ms: u64,
    },
    Done(u64, Result<Extraction, KeywordError>),
}

/// One session's keyword requests: one task per final, results as protocol events (each
/// keyword early as `keyword`, then the segment's `keywords`), and one `llm_unavailable` error
/// per outage rather than one per segment.
pub struct SessionKeywords {
    extractor: Arc<KeywordExtractor>,
    tx: tokio::sync::mpsc::UnboundedSender<Report>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Report>,
    pending: usize,
    outage_reported: bool,
}

impl SessionKeywords {
    pub fn new(extractor: Arc<KeywordExtractor>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            extractor,
            tx,
            rx,
            pending: 0,
            outage_reported: false,
        }
    }

    /// Starts keyword extraction for every non-empty final among `events`.
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
            let (extractor, tx, segment_id, text) = (
                Arc::clone(&self.extractor),
                self.tx.clone(),
                *segment_id,
                text.clone(),
            );
            self.pending += 1;
            tokio::spawn(async move {
                let started = Instant::now();
                let (early_tx, mut early_rx) = tokio::sync::mpsc::unbounded_channel();
                let extraction = async move {
                    let result = extractor.extract_streaming(&text, Some(&early_tx)).await;
                    drop(early_tx);
                    result
                };
                let forward = async {
                    while let Some(keyword) = early_rx.recv().await {
                        let _ = tx.send(Report::Early {
                            segment_id,
                            keyword,
                            latency_ms: started.elapsed().as_millis() as u64,
                        });
                    }
                };
                let (result, ()) = tokio::join!(extraction, forward);
                let _ = tx.send(Report::Done(segment_id, result));
            });
        }
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Waits for the next result and turns it into events (possibly none). Never returns
    /// while nothing is pending, so it can sit in a `select!`.
    pub async fn next(&mut self) -> Vec<ServerMessage> {
        match self.rx.recv().await {
            Some(Report::Early {
                segment_id,
                keyword,
                latency_ms,
            }) => vec![ServerMessage::Keyword {
                segment_id,
                keyword,
                latency_ms,
            }],
            Some(Report::Done(segment_id, result)) => {
                self.pending = self.pending.saturating_sub(1);
                self.events_for(segment_id, result)
            }
            None => std::future::pending().await,
        }
    }

    /// Collects the results still pending, waiting at most `limit`.
    pub async fn drain(&mut self, limit: Duration) -> Vec<ServerMessage> {
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

    fn events_for(
        &mut self,
        segment_id: u64,
        result: Result<Extraction, KeywordError>,
    ) -> Vec<ServerMessage> {
        match result {
            Ok(extraction) => {
                self.outage_reported = false;
                vec![ServerMessage::Keywords {
                    segment_id,
                    keywords: extraction.keywords,
                    model: extraction.model,
                    latency_ms: extraction.latency_ms,
                    cached: extraction.cached,
                }]
            }
            Err(KeywordError::Unavailable(reason)) => {
                tracing::warn!(segment_id, %reason, "no keywords: LLM unavailable");
                if std::mem::replace(&mut self.outage_reported, true) {
                    return Vec::new();
                }
                vec![ServerMessage::error(
                    "llm_unavailable",
                    format!(
                        "keywords are paused: {reason}. Transcription goes on; keywords resume when the LLM is back."
                    ),
                    false,
                )]
            }
            // Already logged with its reason; a bad answer is never forwarded.
            Err(KeywordError::Rejected(_)) => Vec::new(),
        }
    }
}
