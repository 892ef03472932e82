//! An OpenAI-compatible `/v1/embeddings` endpoint: the local multilingual-E5 server that
//! `scripts/embed-server.sh` runs here, BGE-M3 behind vLLM or another embedding server in
//! production.

use std::time::Duration;

use serde::Deserialize;

use super::{EmbedError, Purpose};
use crate::config::RagConfig;
use crate::llm::{connect_timeout, http_client};

pub struct RemoteEmbedder {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
}

impl RemoteEmbedder {
    pub fn new(cfg: &RagConfig) -> Self {
        let http = http_client(
            Some(Duration::from_millis(cfg.timeout_ms)),
            connect_timeout(cfg.timeout_ms),
        );
        Self {
            http,
            url: cfg.embed_url.trim_end_matches('/').to_owned(),
            api_key: cfg.embed_api_key.clone(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first model the endpoint lists (`GET /models`).
    pub async fn first_model(&self) -> Result<String, EmbedError> {
        crate::llm::first_model(&self.http, &self.url, self.api_key.as_deref())
            .await
            .map_err(|e| self.unavailable(e))?
            .ok_or_else(|| {
                self.bad(
                    "GET /models lists no model; set rag.embed_model (SORI_EMBED_MODEL)".to_owned(),
                )
            })
    }

    /// One `/embeddings` call; vectors come back in input order, as the server made them.
    pub async fn request(
        &self,
        model: &str,
        inputs: &[String],
        purpose: Purpose,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        #[derive(Deserialize)]
        struct Answer {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            embedding: Vec<f32>,
            #[serde(default)]
            index: Option<usize>,
        }
        // `input_type` tells E5 servers (the local one) which prefix to add; servers of
        // models without one ignore it.
        let body = serde_json::json!({
            "model": model,
            "input": inputs,
            "input_type": purpose.as_str(),
        });
        let mut request = self
            .http
            .post(format!("{}/embeddings", self.url))
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.unavailable(e))?;
        let response = super::super::successful(response)
            .await
            .map_err(|failure| {
                if failure.server_side {
                    self.unavailable(failure.reason)
                } else {
                    self.bad(failure.reason)
                }
            })?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| self.bad(format!("not an embeddings answer ({e})")))?;
        if answer.data.len() != inputs.len() {
            return Err(self.bad(format!(
                "{} vectors for {} texts",
                answer.data.len(),
                inputs.len()
            )));
        }
        let mut items = answer.data;
        items.sort_by_key(|item| item.index.unwrap_or(usize::MAX));
        Ok(items.into_iter().map(|item| item.embedding).collect())
    }

    pub fn unavailable(&self, reason: impl ToString) -> EmbedError {
        EmbedError::Unavailable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    pub fn bad(&self, reason: String) -> EmbedError {
        EmbedError::BadAnswer {
            url: self.url.clone(),
            reason,
        }
    }
}
