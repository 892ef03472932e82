//! A cross-encoder reranking endpoint, when one is configured (`rag.rerank_url`): the
//! Jina/Cohere `/rerank` API that vLLM, llama.cpp's server, Infinity and hosted services speak,
//! and text-embeddings-inference's variant of it. Without one, or when it fails, the fused
//! order of hybrid search stands.

use std::time::Duration;

use serde::Deserialize;

use super::guard::{Guard, RESTING};
use crate::config::RagConfig;
use crate::llm::{connect_timeout, http_client};

#[derive(Debug, thiserror::Error)]
pub enum RerankError {
    #[error("the rerank endpoint {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("the rerank endpoint {url} answered badly: {reason}")]
    BadAnswer { url: String, reason: String },
}

pub struct Reranker {
    http: reqwest::Client,
    url: String,
    model: Option<String>,
    api_key: Option<String>,
    /// `rag.max_concurrent` calls at once, and a breaker that rests a failing endpoint.
    guard: Guard,
}

/// Scores come back in either shape: `{"results":[{"index","relevance_score"}]}` (Jina,
/// Cohere, vLLM, llama.cpp) or `[{"index","score"}]` (text-embeddings-inference).
#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Results { results: Vec<Scored> },
    List(Vec<Scored>),
}

#[derive(Deserialize)]
struct Scored {
    index: usize,
    #[serde(alias = "score")]
    relevance_score: f32,
}

impl Reranker {
    /// `None` when no endpoint is configured.
    pub fn from_config(cfg: &RagConfig) -> Option<Self> {
        let url = cfg.rerank_url.as_deref()?.trim_end_matches('/').to_owned();
        let http = http_client(
            Some(Duration::from_millis(cfg.timeout_ms)),
            connect_timeout(cfg.timeout_ms),
        );
        Some(Self {
            http,
            url,
            model: cfg.rerank_model.clone(),
            api_key: cfg.rerank_api_key.clone(),
            guard: Guard::new(cfg),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A relevance score per document, in the documents' order; under the concurrency bound
    /// and the breaker (a resting endpoint is not called: the fused order stands).
    pub async fn scores(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>, RerankError> {
        let outage = |e: &RerankError| matches!(e, RerankError::Unavailable { .. });
        match self.guard.run(self.request(query, documents), outage).await {
            Ok(result) => result,
            Err(_resting) => Err(self.unavailable(RESTING)),
        }
    }

    /// "closed", "open" or "trial", for `/api/status`.
    pub fn circuit(&self) -> &'static str {
        self.guard.circuit()
    }

    async fn request(&self, query: &str, documents: &[&str]) -> Result<Vec<f32>, RerankError> {
        let mut body = serde_json::json!({
            "query": query,
            "documents": documents,
            // text-embeddings-inference names them `texts`.
            "texts": documents,
            "top_n": documents.len(),
            "return_documents": false,
        });
        if let Some(model) = &self.model {
            body["model"] = model.clone().into();
        }
        let mut request = self.http.post(format!("{}/rerank", self.url)).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.unavailable(e))?;
        let response = super::successful(response).await.map_err(|failure| {
            if failure.server_side {
                self.unavailable(failure.reason)
            } else {
                self.bad(failure.reason)
            }
        })?;
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| self.bad(format!("not a rerank answer ({e})")))?;
        let scored = match answer {
            Answer::Results { results } => results,
            Answer::List(list) => list,
        };
        let mut scores = vec![None; documents.len()];
        for item in scored {
            let slot = scores.get_mut(item.index).ok_or_else(|| {
                self.bad(format!(
                    "index {} for {} documents",
                    item.index,
                    documents.len()
                ))
            })?;
            if !item.relevance_score.is_finite() {
                return Err(self.bad("a non-finite score".to_owned()));
            }
            *slot = Some(item.relevance_score);
        }
        scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| self.bad(format!("no score for document {i}"))))
            .collect()
    }

    fn unavailable(&self, reason: impl ToString) -> RerankError {
        RerankError::Unavailable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    fn bad(&self, reason: String) -> RerankError {
        RerankError::BadAnswer {
            url: self.url.clone(),
            reason,
        }
    }
}

/// Reorders `items` by `scores`, best first; ties keep their earlier (fused) order.
pub fn order_by<T>(items: Vec<T>, scores: &[f32]) -> Vec<(T, f32)> {
    let mut scored: Vec<(usize, T, f32)> = items
        .into_iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (item, &score))| (i, item, score))
        .collect();
    scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    scored.into_iter().map(|(_, item, s)| (item, s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_answer_shapes_parse() {
        let jina: Answer =
            serde_json::from_str(r#"{"results":[{"index":1,"relevance_score":0.9}]}"#).unwrap();
        assert!(matches!(jina, Answer::Results { ref results } if results[0].index == 1));
        let tei: Answer = serde_json::from_str(r#"[{"index":0,"score":0.5}]"#).unwrap();
        assert!(matches!(tei, Answer::List(ref l) if l[0].relevance_score == 0.5));
    }

    #[test]
    fn ordering_is_by_score_and_ties_keep_the_fused_order() {
        let ordered = order_by(vec!["a", "b", "c", "d"], &[0.1, 0.9, 0.1, 0.5]);
        let names: Vec<&str> = ordered.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["b", "d", "a", "c"]);
    }
}
