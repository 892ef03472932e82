//! Text embeddings behind one interface, from one of two backends: an OpenAI-compatible
//! `/v1/embeddings` endpoint (the default: the local multilingual-E5 server that
//! `scripts/embed-server.sh` runs, BGE-M3 behind vLLM in production), or an ONNX model run in
//! this process by fastembed. Vectors are L2-normalised (cosine = dot product), their size
//! comes from the model, and each text's vector is cached (24 h by default).

mod onnx;
mod remote;

use std::time::Duration;

use base64::Engine;

use super::guard::{Guard, RESTING};
use crate::cache::{Cache, key_hash};
use crate::config::RagConfig;

const CACHE_NAMESPACE: &str = "embed";
/// Texts sent in one request or run at once; longer batches are split.
const BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The endpoint could not be reached, timed out or failed.
    #[error("the embedding endpoint {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// It answered, but not with one vector of the model's size per text.
    #[error("the embedding endpoint {url} answered badly: {reason}")]
    BadAnswer { url: String, reason: String },
    /// The in-process model (rag.embed_model_dir) could not be loaded or run.
    #[error("the embedding model in {dir} failed: {reason}")]
    Local { dir: String, reason: String },
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

/// Where vectors are computed.
enum Backend {
    Remote(remote::RemoteEmbedder),
    Onnx(onnx::OnnxEmbedder),
}

pub struct Embedder {
    backend: Backend,
    model: String,
    dim: usize,
    query_prefix: String,
    passage_prefix: String,
    cache: Cache,
    ttl: Duration,
    /// `rag.max_concurrent` calls at once, and a breaker that rests a failing endpoint.
    guard: Guard,
}

impl Embedder {
    /// Connects: in-process when `rag.embed_model_dir` is set, else the endpoint. Finds the
    /// model (configured, or the first the endpoint lists) and its vector size (by embedding
    /// one probe text).
    pub async fn connect(cfg: &RagConfig, cache: Cache) -> Result<Self, EmbedError> {
        let (backend, model) = match &cfg.embed_model_dir {
            Some(dir) => {
                let (dir, lib, threads) =
                    (dir.clone(), cfg.onnxruntime_lib.clone(), cfg.embed_threads);
                let onnx = tokio::task::spawn_blocking(move || {
                    onnx::OnnxEmbedder::load(&dir, &lib, threads)
                })
                .await
                .map_err(|e| EmbedError::Local {
                    dir: cfg
                        .embed_model_dir
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect(),
                    reason: e.to_string(),
                })??;
                let model = cfg.embed_model.clone().unwrap_or_else(|| onnx.name());
                (Backend::Onnx(onnx), model)
            }
            None => {
                let remote = remote::RemoteEmbedder::new(cfg);
                let model = match &cfg.embed_model {
                    Some(model) => model.clone(),
                    None => remote.first_model().await?,
                };
                (Backend::Remote(remote), model)
            }
        };
        let mut embedder = Self {
            backend,
            model,
            dim: 0,
            query_prefix: cfg.query_prefix.clone(),
            passage_prefix: cfg.passage_prefix.clone(),
            cache,
            ttl: Duration::from_secs(cfg.embed_ttl_s),
            guard: Guard::new(cfg),
        };
        let probe = embedder
            .compute(vec!["dimension probe".to_owned()], Purpose::Query)
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

    /// Where vectors come from: the endpoint's URL, or `onnx:` and the model directory.
    pub fn source(&self) -> String {
        match &self.backend {
            Backend::Remote(remote) => remote.url().to_owned(),
            Backend::Onnx(onnx) => format!("onnx:{}", onnx.dir().display()),
        }
    }

    /// One normalised vector per text, in order; cached texts are not computed again.
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
            let fresh = self.compute(batch_inputs, purpose).await?;
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

    /// Whether vectors can be had right now: the endpoint answers its model list (an
    /// in-process model is always there).
    pub async fn healthy(&self) -> bool {
        match &self.backend {
            Backend::Remote(remote) => remote.first_model().await.is_ok(),
            Backend::Onnx(_) => true,
        }
    }

    /// Normalised vectors for `inputs` from the backend, one per input, in order.
    async fn compute(
        &self,
        inputs: Vec<String>,
        purpose: Purpose,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let count = inputs.len();
        let call = async {
            match &self.backend {
                Backend::Remote(remote) => remote.request(&self.model, &inputs, purpose).await,
                Backend::Onnx(onnx) => onnx.embed(inputs.clone()).await,
            }
        };
        let outage = |e: &EmbedError| matches!(e, EmbedError::Unavailable { .. });
        let raw = match self.guard.run(call, outage).await {
            Ok(result) => result?,
            Err(_resting) => return Err(self.resting()),
        };
        if raw.len() != count {
            return Err(self.bad(format!("{} vectors for {count} texts", raw.len())));
        }
        raw.into_iter()
            .map(|v| normalize(v).ok_or_else(|| self.bad("a zero or non-finite vector".to_owned())))
            .collect()
    }

    /// "closed", "open" or "trial": the breaker in front of the backend, for `/api/status`.
    pub fn circuit(&self) -> &'static str {
        self.guard.circuit()
    }

    /// The breaker refused a call.
    fn resting(&self) -> EmbedError {
        match &self.backend {
            Backend::Remote(remote) => remote.unavailable(RESTING),
            Backend::Onnx(onnx) => EmbedError::Local {
                dir: onnx.dir().display().to_string(),
                reason: RESTING.to_owned(),
            },
        }
    }

    fn bad(&self, reason: String) -> EmbedError {
        match &self.backend {
            Backend::Remote(remote) => remote.bad(reason),
            Backend::Onnx(onnx) => EmbedError::Local {
                dir: onnx.dir().display().to_string(),
                reason,
            },
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
