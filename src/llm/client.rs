//! HTTP clients for OpenAI-compatible endpoints: plain reqwest for `/models`, `/embeddings`
//! and `/rerank`, and async-openai's chat client over the same connection pool.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;

use super::install_tls_provider;
use crate::config::LlmConfig;

/// Opening a connection may take the request's timeout, but never more than 3 s: an endpoint
/// that does not accept a connection by then is down, and the caller should learn it soon.
pub fn connect_timeout(request_timeout_ms: u64) -> Duration {
    Duration::from_millis(request_timeout_ms.min(3_000))
}

/// A reqwest client over rustls with `connect_timeout`, and `request_timeout` on every
/// request when given (chat calls set their own deadline around the call instead).
pub fn http_client(
    request_timeout: Option<Duration>,
    connect_timeout: Duration,
) -> reqwest::Client {
    install_tls_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(timeout) = request_timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .connect_timeout(connect_timeout)
        .build()
        .unwrap_or_default()
}

/// The chat endpoint of `llm.base_url`: async-openai for completions and the reqwest client
/// under it for model discovery, both with the configured key.
pub struct ChatClient {
    /// Chat completions, plain and streamed.
    pub chat: Client<OpenAIConfig>,
    /// The same connection pool, for `GET /models`.
    pub http: reqwest::Client,
}

impl ChatClient {
    pub fn new(cfg: &LlmConfig) -> Self {
        let http = http_client(None, connect_timeout(cfg.timeout_ms));
        let mut openai = OpenAIConfig::new().with_api_base(cfg.base_url.trim_end_matches('/'));
        if let Some(key) = &cfg.api_key {
            openai = openai.with_api_key(key.clone());
        }
        Self {
            chat: Client::with_config(openai).with_http_client(http.clone()),
            http,
        }
    }
}
