//! The work a server does on every final after sending it: keywords from the LLM and related
//! documents from RAG, each one of the session driver's enrichers. Live sessions, file uploads
//! and `sori transcribe --keywords` all get theirs from here.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::config::Config;
use crate::driver::enrich::Enricher;
use crate::keywords::{KeywordExtractor, KeywordsEnricher};
use crate::rag::RagSlot;
use crate::rag::live::RagEnricher;

pub struct Enrichment {
    /// Keyword extraction; `None` when `llm.enabled` is off.
    pub keywords: Option<Arc<KeywordExtractor>>,
    /// Retrieval over indexed documents (connects on first use).
    pub rag: Arc<RagSlot>,
    /// Keywords first, then RAG: the order a closing session waits for them in.
    pub enrichers: Arc<[Arc<dyn Enricher>]>,
}

impl Enrichment {
    pub fn new(config: &Config, cache: &Cache) -> Self {
        let keywords = config.llm.enabled.then(|| {
            KeywordExtractor::new(
                &config.llm,
                cache.clone(),
                Duration::from_secs(config.cache.keyword_ttl_s),
            )
        });
        let rag = Arc::new(RagSlot::new(&config.rag, &config.llm, cache.clone()));
        let mut enrichers: Vec<Arc<dyn Enricher>> = Vec::new();
        if let Some(extractor) = &keywords {
            enrichers.push(Arc::new(KeywordsEnricher {
                extractor: Arc::clone(extractor),
                drain_limit: drain_limit(config.llm.timeout_ms),
            }));
        }
        enrichers.push(Arc::new(RagEnricher {
            slot: Arc::clone(&rag),
            drain_limit: drain_limit(config.rag.timeout_ms),
        }));
        Self {
            keywords,
            rag,
            enrichers: enrichers.into(),
        }
    }
}

/// A closing session waits for a backend's last results as long as one call may take, and a
/// second more.
fn drain_limit(timeout_ms: u64) -> Duration {
    Duration::from_millis(timeout_ms) + Duration::from_secs(1)
}
