//! Text embeddings from an OpenAI-compatible `/v1/embeddings` endpoint: the local
//! multilingual-E5 server `scripts/embed-server.sh` runs here, BGE-M3 behind vLLM or another
//! embedding server in production. Vectors are L2-normalised (cosine = dot product), their size
//! comes from the model, and each text's vector is cached (24 h by default).

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use crate::cache::{Cache, key_hash};
use crate::config::RagConfig;

const CACHE_NAMESPACE: &str = "embed";
/// Texts sent in one request; longer batches are split.
const BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The endpoint could not be reached, timed out or failed.
    #[error("the embedding endpoint {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// It answered, but not with one vector of the model's size per text.
    #[error("the embedding endpoint {url} answered badly: {reason}")]
    BadAnswer { url: String, reason: String },
}

/// What a text is for: E5-style models embed questions and documents differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Query,
    Passage,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Query => "query",
            Purpose::Passage => "passage",
        }
    }
}

pub struct Embedder {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    dim: usize,
    query_prefix: String,
    passage_prefix: String,
    cache: Cache,
    ttl: Duration,
}

impl Embedder {
    /// Connects: finds the model (configured, or the first the endpoint lists) and its vector
    /// size (by embedding one probe text).
    pub async fn connect(cfg: &RagConfig, cache: Cache) -> Result<Self, EmbedError> {
        crate::keywords::install_tls_provider();
        let url = cfg.embed_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(3_000)))
            .build()
            .unwrap_or_default();
        let mut embedder = Self {
            http,
            url,
            api_key: cfg.embed_api_key.clone(),
            model: String::new(),
            dim: 0,
            query_prefix: cfg.query_prefix.clone(),
            passage_prefix: cfg.passage_prefix.clone(),
            cache,
            ttl: Duration::from_secs(cfg.embed_ttl_s),
        };
        embedder.model = match &cfg.embed_model {
            Some(model) => model.clone(),
            None => embedder.first_model().await?,
        };
        let probe = embedder
            .request(&["dimension probe".to_owned()], Purpose::Query)
            .await?;
        embedder.dim = probe.first().map_or(0, Vec::len);
        if embedder.dim == 0 {
            return Err(embedder.bad("the probe text got an empty vector".to_owned()));
        }
        Ok(embedder)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One normalised vector per text, in order; cached texts are not sent again.
    pub async fn embed(
        &self,
        texts: &[String],
        purpose: Purpose,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let prefix = match purpose {
            Purpose::Query => &self.query_prefix,
            Purpose::Passage => &self.passage_prefix,
        };
        let inputs: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        let keys: Vec<String> = inputs
            .iter()
            .map(|input| key_hash(&[&self.model, purpose.as_str(), input]))
            .collect();
        let mut vectors: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        for key in &keys {
            let hit = self.cache.get(CACHE_NAMESPACE, key).await;
            vectors.push(hit.and_then(|h| decode_vector(&h, self.dim)));
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| vectors[i].is_none()).collect();
        for batch in missing.chunks(BATCH) {
            let batch_inputs: Vec<String> = batch.iter().map(|&i| inputs[i].clone()).collect();
            let fresh = self.request(&batch_inputs, purpose).await?;
            for (&i, vector) in batch.iter().zip(fresh) {
                if vector.len() != self.dim {
                    return Err(self.bad(format!(
                        "a vector of size {} where the model gives {}",
                        vector.len(),
                        self.dim
                    )));
                }
                self.cache
                    .set(CACHE_NAMESPACE, &keys[i], &encode_vector(&vector), self.ttl)
                    .await;
                vectors[i] = Some(vector);
            }
        }
        Ok(vectors.into_iter().flatten().collect())
    }

    /// Whether the endpoint answers its model list right now.
    pub async fn healthy(&self) -> bool {
        self.first_model().await.is_ok()
    }

    async fn first_model(&self) -> Result<String, EmbedError> {
        crate::keywords::first_model(&self.http, &self.url, self.api_key.as_deref())
            .await
            .map_err(|e| self.unavailable(e))?
            .ok_or_else(|| {
                self.bad(
                    "GET /models lists no model; set rag.embed_model (SORI_EMBED_MODEL)".to_owned(),
                )
            })
    }

    /// One `/embeddings` call; vectors come back normalised, in input order.
    async fn request(
        &self,
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
            "model": self.model,
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
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let reason = format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            );
            return Err(if status.is_server_error() {
                self.unavailable(reason)
            } else {
                self.bad(reason)
            });
        }
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
        items
            .into_iter()
            .map(|item| {
                normalize(item.embedding)
                    .ok_or_else(|| self.bad("a zero or non-finite vector".to_owned()))
            })
            .collect()
    }

    fn unavailable(&self, reason: impl ToString) -> EmbedError {
        EmbedError::Unavailable {
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }

    fn bad(&self, reason: String) -> EmbedError {
        EmbedError::BadAnswer {
            url: self.url.clone(),
            reason,
        }
    }
}

/// Scales to unit length; `None` for a zero or non-finite vector.
fn normalize(mut v: Vec<f32>) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v)
}

/// Cached vectors are little-endian f32 in base64 (a third of the JSON size).
fn encode_vector(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_vector(s: &str, dim: usize) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    (bytes.len() == dim * 4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// Cosine similarity of two normalised vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_vectors_round_trip_and_refuse_other_sizes() {
        let v = normalize(vec![3.0, 4.0]).unwrap();
        assert_eq!(v, [0.6, 0.8]);
        assert_eq!(decode_vector(&encode_vector(&v), 2).unwrap(), v);
        assert!(decode_vector(&encode_vector(&v), 3).is_none());
        assert!(normalize(vec![0.0, 0.0]).is_none());
        assert!(normalize(vec![f32::NAN, 1.0]).is_none());
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-6);
    }
}
