//! Keywords for final segments from an OpenAI-compatible chat endpoint (vLLM in production,
//! llama.cpp's server here), constrained by a JSON schema, filtered against the segment text,
//! cached, and guarded by a timeout, one retry and a circuit breaker.
//!
//! `extractor` (cache, model, accept) → `call` (the LLM round trip) → `prompt` (what is asked)
//! and `filter` (what is kept); `scan` finds keywords in a streamed answer; `live` is the
//! session driver's keyword enricher. The HTTP client, TLS, model discovery and the breaker
//! are the shared `crate::llm`.

mod call;
mod extractor;
mod filter;
mod live;
mod prompt;
mod scan;

use serde::Serialize;

use crate::protocol::Keyword;

/// Kept here for callers that set up TLS before any LLM client exists (tests, `http::tls`,
/// the harness); new code should use `crate::llm::install_tls_provider`.
pub use crate::llm::install_tls_provider;
pub use extractor::KeywordExtractor;
pub use filter::{ProposedKeyword, filter_keywords, normalize};
pub use live::KeywordsEnricher;

/// Why no keywords came back.
#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    /// The endpoint could not be reached, timed out, failed, or is resting after failures.
    #[error("the LLM endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The endpoint answered with something that is not the keywords JSON.
    #[error("the LLM answer was rejected: {0}")]
    Rejected(String),
}

/// Keywords of one segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction {
    pub keywords: Vec<Keyword>,
    pub model: String,
    pub latency_ms: u64,
    pub cached: bool,
}

/// The endpoint's state for `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct LlmStatus {
    pub enabled: bool,
    pub base_url: String,
    pub reachable: bool,
    pub model: Option<String>,
    pub last_latency_ms: Option<u64>,
    pub calls: u64,
    pub failures: u64,
    pub rejected: u64,
    /// "closed" (calls go through), "open" (resting after a failure) or "trial".
    pub circuit: &'static str,
}
