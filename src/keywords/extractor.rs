//! The keyword extractor: normalise the segment, look it up in the cache, else ask the LLM
//! (see `call`), filter its answer against the segment, and cache what is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{RwLock, Semaphore};

use super::filter::{filter_keywords, normalize};
use super::prompt::{Answer, answer_schema, system_prompt};
use super::{Extraction, KeywordError, LlmStatus};
use crate::cache::{Cache, key_hash};
use crate::config::{Category, LlmConfig};
use crate::llm::{Breaker, ChatClient, DiscoveryError, first_model, truncate};
use crate::metrics::{LlmErrorKind, LlmPurpose};
use crate::protocol::Keyword;

/// Changes whenever the prompt or the filtering changes, so cached results from an older
/// version are not reused.
const PROMPT_VERSION: &str = "kw-v1";
const CACHE_NAMESPACE: &str = "keywords";

pub struct KeywordExtractor {
    pub(super) cfg: LlmConfig,
    pub(super) client: ChatClient,
    model: RwLock<Option<String>>,
    cache: Cache,
    cache_ttl: Duration,
    pub(super) permits: Semaphore,
    pub(super) breaker: Breaker,
    pub(super) schema: serde_json::Value,
    pub(super) system_prompt: String,
    pub(super) stats: Stats,
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) calls: AtomicU64,
    pub(super) failures: AtomicU64,
    rejected: AtomicU64,
    /// Latency of the last successful call + 1 (0 = none yet).
    last_latency_ms: AtomicU64,
}

impl KeywordExtractor {
    pub fn new(cfg: &LlmConfig, cache: Cache, cache_ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            client: ChatClient::new(cfg),
            model: RwLock::new(cfg.model.clone()),
            cache,
            cache_ttl,
            permits: Semaphore::new(cfg.max_concurrent.max(1)),
            breaker: Breaker::new(Duration::from_millis(cfg.retry_after_ms)),
            schema: answer_schema(&cfg.categories, cfg.max_keywords),
            system_prompt: system_prompt(&cfg.categories, cfg.max_keywords),
            stats: Stats::default(),
            cfg: cfg.clone(),
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn categories(&self) -> &[Category] {
        &self.cfg.categories
    }

    /// Keywords of `text`: from the cache, or from the LLM (then cached).
    pub async fn extract(&self, text: &str) -> Result<Extraction, KeywordError> {
        self.extract_streaming(text, None).await
    }

    /// Like [`extract`](Self::extract), and when `early` is given the LLM answer is streamed:
    /// each keyword that passes the filter is sent to `early` the moment the model finishes
    /// writing it. The returned extraction holds the same keywords in the same order (a cache
    /// hit sends nothing early).
    pub async fn extract_streaming(
        &self,
        text: &str,
        early: Option<&UnboundedSender<Keyword>>,
    ) -> Result<Extraction, KeywordError> {
        let started = Instant::now();
        let normalized = normalize(text);
        let model = self.model().await?;
        if normalized.is_empty() {
            return Ok(Extraction {
                keywords: Vec::new(),
                model,
                latency_ms: 0,
                cached: false,
            });
        }
        let key = key_hash(&[
            &model,
            PROMPT_VERSION,
            &self.schema.to_string(),
            &normalized,
        ]);
        if let Some(hit) = self.cache.get(CACHE_NAMESPACE, &key).await
            && let Ok(keywords) = serde_json::from_str::<Vec<Keyword>>(&hit)
        {
            return Ok(Extraction {
                keywords,
                model,
                latency_ms: started.elapsed().as_millis() as u64,
                cached: true,
            });
        }

        let raw = self.call(&model, text, early).await?;
        let keywords = self.accept(&raw, text).inspect_err(|e| {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::Rejected);
            tracing::warn!(error = %e, answer = %truncate(&raw, 200), "LLM answer rejected");
        })?;
        if let Ok(json) = serde_json::to_string(&keywords) {
            self.cache
                .set(CACHE_NAMESPACE, &key, &json, self.cache_ttl)
                .await;
        }
        let latency_ms = started.elapsed().as_millis() as u64;
        self.stats
            .last_latency_ms
            .store(latency_ms + 1, Ordering::Relaxed);
        Ok(Extraction {
            keywords,
            model,
            latency_ms,
            cached: false,
        })
    }

    /// The model to ask: configured, or the first one the endpoint lists.
    async fn model(&self) -> Result<String, KeywordError> {
        if let Some(model) = self.model.read().await.clone() {
            return Ok(model);
        }
        if !self.breaker.allow() {
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::CircuitOpen);
            return Err(KeywordError::Unavailable(
                "resting after a failure".to_owned(),
            ));
        }
        let listed = self.list_models().await;
        if !matches!(listed, Ok(Some(_))) {
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::ModelList);
        }
        match listed {
            Ok(Some(model)) => {
                self.breaker.success();
                *self.model.write().await = Some(model.clone());
                Ok(model)
            }
            Ok(None) => {
                self.breaker.failure();
                Err(KeywordError::Unavailable(format!(
                    "{}/models lists no model; set llm.model (SORI_LLM_MODEL)",
                    self.cfg.base_url
                )))
            }
            Err(e) => {
                self.breaker.failure();
                Err(KeywordError::Unavailable(e.to_string()))
            }
        }
    }

    async fn list_models(&self) -> Result<Option<String>, DiscoveryError> {
        first_model(
            &self.client.http,
            &self.cfg.base_url,
            self.cfg.api_key.as_deref(),
        )
        .await
    }
    /// Parses the answer and keeps only keywords that are really in the segment, in a known
    /// category, not stop-words, without duplicates, at most `max_keywords`.
    fn accept(&self, answer: &str, segment: &str) -> Result<Vec<Keyword>, KeywordError> {
        let parsed: Answer = serde_json::from_str(answer.trim())
            .map_err(|e| KeywordError::Rejected(format!("not the keywords JSON ({e})")))?;
        Ok(filter_keywords(
            parsed.keywords,
            segment,
            &self.cfg.categories,
            self.cfg.max_keywords,
        ))
    }

    /// The endpoint's state, probing it (short timeout) when no call has shown it up.
    pub async fn status(&self) -> LlmStatus {
        let reachable = self.enabled() && self.list_models().await.is_ok();
        let last = self.stats.last_latency_ms.load(Ordering::Relaxed);
        LlmStatus {
            enabled: self.enabled(),
            base_url: self.cfg.base_url.clone(),
            reachable,
            model: self.model.read().await.clone(),
            last_latency_ms: (last > 0).then(|| last - 1),
            calls: self.stats.calls.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            circuit: self.breaker.state_name(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }
}
