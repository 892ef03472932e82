//! Index, search and query: the one set of domain functions behind `POST /index`, `/search`,
//! `/query`, `sori index` and live `rag` events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::chunk::{ChunkOptions, chunk_text};
use super::embed::{EmbedError, Embedder, Purpose};
use super::rerank::{Reranker, order_by};
use super::sparse::sparse_vector;
use super::store::{Hit, StoreError, StoredChunk, VectorStore};
use super::{RagError, answer};
use crate::cache::{Cache, key_hash};
use crate::config::{LlmConfig, RagConfig};
use crate::metrics::RagOperation;

const QUERY_NAMESPACE: &str = "rag_query";
const META_NAMESPACE: &str = "rag_meta";
const SESSION_NAMESPACE: &str = "rag_session";
/// Reciprocal-rank fusion constant: how much lower ranks still count (60 is the usual choice).
const RRF_K: f32 = 60.0;

/// Where a document came from; `source` names it for re-indexing and deletion.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocMeta {
    pub source: String,
    #[serde(default)]
    pub page: Option<u32>,
    #[serde(default)]
    pub date: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub source: String,
    pub chunks: usize,
    /// Chunks of an earlier version of the same source that were replaced.
    pub replaced: usize,
    pub took_ms: u64,
}

/// Time spent in each step of a query, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub embed_ms: f64,
    pub search_ms: f64,
    pub rerank_ms: f64,
    pub llm_ms: f64,
    pub total_ms: f64,
    /// How the candidates were ordered: `fusion`, `cross-encoder`, or `fusion` with why the
    /// configured cross-encoder was not used.
    #[serde(default)]
    pub reranked_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// The number the answer cites it by: `[1]`, `[2]`…
    pub n: usize,
    pub source: String,
    pub page: Option<u32>,
    pub date: Option<String>,
    pub text: String,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryAnswer {
    pub answer: String,
    pub sources: Vec<Source>,
    pub model: String,
    pub cached: bool,
    pub timings: Timings,
    /// The conversation this answer belongs to: issued by the server on a question without
    /// one, to be sent with follow-ups. `None` only in the shared answer cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// One past turn of a multi-turn conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Turn {
    pub question: String,
    pub answer: String,
}

/// Turns of a session kept as context for the next question.
const MAX_TURNS: usize = 4;

pub struct Rag {
    cfg: RagConfig,
    embedder: Embedder,
    /// A cross-encoder endpoint; `None` = fused order.
    reranker: Option<Reranker>,
    store: VectorStore,
    cache: Cache,
    answerer: answer::Answerer,
    /// Bumped by every index change; part of the query cache key, so cached answers never
    /// outlive the documents they came from. Kept in the cache too, so replicas sharing one
    /// Redis see each other's changes.
    generation: AtomicU64,
    /// Held while a document's new version replaces its old one, so two re-indexings of one
    /// source do not delete each other's new version. In this process only: replicas sharing
    /// a Qdrant server should not re-index the same source at the same moment.
    index_writes: tokio::sync::Mutex<()>,
}

impl Rag {
    /// Connects the embedder and opens (or connects to) the vector store sized for its model.
    pub async fn connect(cfg: &RagConfig, llm: &LlmConfig, cache: Cache) -> Result<Self, RagError> {
        let embedder = Embedder::connect(cfg, cache.clone()).await?;
        let store = match &cfg.qdrant_url {
            Some(url) => {
                VectorStore::connect_server(url, cfg.qdrant_api_key.as_deref(), embedder.dim())
                    .await?
            }
            None => {
                let (dir, dim) = (cfg.store_dir.clone(), embedder.dim());
                tokio::task::spawn_blocking(move || VectorStore::open_embedded(&dir, dim))
                    .await
                    .map_err(|e| RagError::Store(StoreError::Unavailable(e.to_string())))??
            }
        };
        tracing::info!(
            embedder = %embedder.source(),
            model = embedder.model(),
            dim = embedder.dim(),
            store = store.kind(),
            "RAG ready"
        );
        Ok(Self {
            cfg: cfg.clone(),
            embedder,
            reranker: Reranker::from_config(cfg),
            store,
            cache,
            answerer: answer::Answerer::new(llm, cfg),
            generation: AtomicU64::new(0),
            index_writes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    pub fn store(&self) -> &VectorStore {
        &self.store
    }

    /// Indexes one document: embeds its chunks (dense and sparse vectors), stores them as the
    /// source's new version, and only then removes any earlier version of the same source — a
    /// failure at any step leaves the earlier version searchable. `pages` are (page number,
    /// text) in order.
    pub async fn index(
        &self,
        meta: &DocMeta,
        pages: &[(Option<u32>, String)],
    ) -> Result<IndexReport, RagError> {
        let started = Instant::now();
        let source = meta.source.trim();
        if source.is_empty() {
            return Err(RagError::Invalid(
                "metadata.source is empty; name the document (a file name or an id) so it can be re-indexed and deleted".to_owned(),
            ));
        }
        let opts = ChunkOptions {
            max_chars: self.cfg.chunk_chars,
            overlap_chars: self.cfg.chunk_overlap,
        };
        let mut pieces: Vec<(Option<u32>, String)> = Vec::new();
        for (page, text) in pages {
            pieces.extend(chunk_text(text, opts).into_iter().map(|c| (*page, c)));
        }
        if pieces.is_empty() {
            return Err(RagError::Invalid(format!(
                "{source}: no text to index (empty, or only whitespace)"
            )));
        }
        let texts: Vec<String> = pieces.iter().map(|(_, t)| t.clone()).collect();
        let dense = self.embedder.embed(&texts, Purpose::Passage).await?;
        let chunks: Vec<StoredChunk> = pieces
            .into_iter()
            .zip(dense)
            .enumerate()
            .map(|(i, ((page, text), dense))| StoredChunk {
                sparse: sparse_vector(&text),
                text,
                source: source.to_owned(),
                page,
                date: meta.date.clone(),
                chunk_index: i as u32,
                dense,
            })
            .collect();
        let count = chunks.len();
        let replaced = {
            // Two re-indexings of one source must not each delete the other's new version.
            let _one_at_a_time = self.index_writes.lock().await;
            self.store.replace_source(source, chunks).await?
        };
        self.bump_generation().await;
        Ok(IndexReport {
            source: source.to_owned(),
            chunks: count,
            replaced,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Removes a source; returns how many chunks it had.
    pub async fn delete(&self, source: &str) -> Result<usize, RagError> {
        let deleted = self.store.delete_source(source).await?;
        self.bump_generation().await;
        Ok(deleted)
    }

    /// Hybrid retrieval: dense and sparse candidates (`top_k_retrieval` each) fused by
    /// reciprocal rank, then reranked by the cross-encoder when one is configured; best
    /// `top_k` first. Scores are the cross-encoder's, or the fused ones.
    pub async fn search(&self, query: &str, top_k: usize) -> Result<(Vec<Hit>, Timings), RagError> {
        let started = Instant::now();
        let query = query.trim();
        if query.is_empty() {
            return Err(RagError::Invalid("query is empty".to_owned()));
        }
        let vector = self
            .embedder
            .embed(&[query.to_owned()], Purpose::Query)
            .await?
            .pop()
            .unwrap_or_default();
        let embedded = Instant::now();
        let k = self.cfg.top_k_retrieval.max(top_k);
        let terms = sparse_vector(query);
        let (dense, sparse) = tokio::join!(
            self.store.search_dense(&vector, k),
            self.store.search_sparse(&terms, k)
        );
        let searched = Instant::now();
        let (hits, reranked_by) = match &self.reranker {
            Some(reranker) => {
                let candidates = fuse(&[dense?, sparse?], k);
                rerank(reranker, query, candidates, top_k).await
            }
            None => (fuse(&[dense?, sparse?], top_k), "fusion".to_owned()),
        };
        let done = Instant::now();
        crate::metrics::global().rag_request(RagOperation::Search, done - started);
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        Ok((
            hits,
            Timings {
                embed_ms: ms(started, embedded),
                search_ms: ms(embedded, searched),
                rerank_ms: ms(searched, done),
                llm_ms: 0.0,
                total_ms: ms(started, done),
                reranked_by,
            },
        ))
    }

    /// Retrieval with the query expanded by `keywords`, then an answer from the LLM that
    /// cites its sources. Answers are cached per (question, keywords, index generation,
    /// conversation so far).
    ///
    /// Conversations are the server's: without `session_id` a new one is started under a fresh
    /// random id (UUID v4, returned in the answer); a `session_id` the server did not issue, or
    /// whose conversation expired, is refused ([`RagError::UnknownSession`]), so nobody reads or
    /// extends a conversation by guessing or choosing its name.
    pub async fn query(
        &self,
        question: &str,
        keywords: &[String],
        session_id: Option<&str>,
    ) -> Result<QueryAnswer, RagError> {
        let started = Instant::now();
        let (session_id, history) = match session_id {
            Some(id) => match self.history(id).await {
                Some(history) => (id.to_owned(), history),
                None => return Err(RagError::UnknownSession),
            },
            None => (uuid::Uuid::new_v4().to_string(), Vec::new()),
        };
        let generation = self.generation().await.to_string();
        let cache_key = key_hash(&[
            question.trim(),
            &keywords.join("\u{1f}"),
            &generation,
            &serde_json::to_string(&history).unwrap_or_default(),
        ]);
        if let Some(hit) = self.cache.get(QUERY_NAMESPACE, &cache_key).await
            && let Ok(mut cached) = serde_json::from_str::<QueryAnswer>(&hit)
        {
            cached.cached = true;
            cached.timings = Timings {
                total_ms: started.elapsed().as_secs_f64() * 1000.0,
                ..Timings::default()
            };
            self.remember(&session_id, history, question, &cached.answer)
                .await;
            cached.session_id = Some(session_id);
            crate::metrics::global().rag_request(RagOperation::Query, started.elapsed());
            return Ok(cached);
        }

        let expanded = expand(question, keywords);
        let (hits, mut timings) = self.search(&expanded, self.cfg.top_k_rerank).await?;
        let sources = context(&hits, self.cfg.max_context_chars);
        let llm_started = Instant::now();
        let (answer, model) = self.answerer.answer(question, &sources, &history).await?;
        timings.llm_ms = llm_started.elapsed().as_secs_f64() * 1000.0;
        timings.total_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut result = QueryAnswer {
            answer,
            sources,
            model,
            cached: false,
            timings,
            session_id: None,
        };
        if let Ok(json) = serde_json::to_string(&result) {
            let ttl = Duration::from_secs(self.cfg.query_ttl_s);
            self.cache
                .set(QUERY_NAMESPACE, &cache_key, &json, ttl)
                .await;
        }
        self.remember(&session_id, history, question, &result.answer)
            .await;
        result.session_id = Some(session_id);
        crate::metrics::global().rag_request(RagOperation::Query, started.elapsed());
        Ok(result)
    }

    /// The turns of a conversation the server issued; `None` for an id it does not know (never
    /// issued, or expired `query_ttl_s` after its last question).
    async fn history(&self, session_id: &str) -> Option<Vec<Turn>> {
        let key = key_hash(&[session_id]);
        let json = self.cache.get(SESSION_NAMESPACE, &key).await?;
        Some(serde_json::from_str(&json).unwrap_or_default())
    }

    async fn remember(&self, session_id: &str, mut turns: Vec<Turn>, question: &str, answer: &str) {
        turns.push(Turn {
            question: question.to_owned(),
            answer: answer.to_owned(),
        });
        let keep = turns.len().saturating_sub(MAX_TURNS);
        let turns = &turns[keep..];
        if let Ok(json) = serde_json::to_string(turns) {
            let ttl = Duration::from_secs(self.cfg.query_ttl_s);
            let key = key_hash(&[session_id]);
            self.cache.set(SESSION_NAMESPACE, &key, &json, ttl).await;
        }
    }

    async fn generation(&self) -> u64 {
        let shared = self
            .cache
            .get(META_NAMESPACE, "generation")
            .await
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        self.generation.load(Ordering::Relaxed).max(shared)
    }

    async fn bump_generation(&self) {
        let next = self.generation().await + 1;
        self.generation.store(next, Ordering::Relaxed);
        // Long enough to outlive every cached answer of the old generation.
        let ttl = Duration::from_secs(self.cfg.query_ttl_s.saturating_mul(2).max(60));
        self.cache
            .set(META_NAMESPACE, "generation", &next.to_string(), ttl)
            .await;
    }

    /// Whether the embedder and the store both answer right now.
    pub async fn healthy(&self) -> (bool, bool) {
        tokio::join!(self.embedder.healthy(), self.store.healthy())
    }
}

/// The question with the keywords the client extracted appended (those not already in it).
/// The cross-encoder's order of `candidates`, best `top_k`; on failure the fused order, with
/// the reason in the label (retrieval never fails because the reranker did).
async fn rerank(
    reranker: &Reranker,
    query: &str,
    mut candidates: Vec<Hit>,
    top_k: usize,
) -> (Vec<Hit>, String) {
    if candidates.is_empty() {
        return (candidates, "cross-encoder".to_owned());
    }
    let texts: Vec<&str> = candidates.iter().map(|h| h.text.as_str()).collect();
    match reranker.scores(query, &texts).await {
        Ok(scores) => {
            let mut hits: Vec<Hit> = order_by(candidates, &scores)
                .into_iter()
                .map(|(mut hit, score)| {
                    hit.score = score;
                    hit
                })
                .collect();
            hits.truncate(top_k);
            (hits, "cross-encoder".to_owned())
        }
        Err(e) => {
            tracing::warn!(error = %e, "reranking failed; keeping the fused order");
            candidates.truncate(top_k);
            (candidates, format!("fusion (cross-encoder failed: {e})"))
        }
    }
}

fn expand(question: &str, keywords: &[String]) -> String {
    let mut out = question.trim().to_owned();
    let lowered = out.to_lowercase();
    for k in keywords {
        let k = k.trim();
        if !k.is_empty() && !lowered.contains(&k.to_lowercase()) {
            out.push(' ');
            out.push_str(k);
        }
    }
    out
}

/// Reciprocal-rank fusion of ranked lists: a chunk's score is Σ 1 / (k + rank) over the
/// lists it appears in, so agreement between dense and sparse retrieval wins.
pub fn fuse(lists: &[Vec<Hit>], top_k: usize) -> Vec<Hit> {
    let mut scores: HashMap<String, (f32, Hit)> = HashMap::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f32 + 1.0);
            scores
                .entry(hit.id.clone())
                .and_modify(|(s, _)| *s += add)
                .or_insert_with(|| (add, hit.clone()));
        }
    }
    let mut fused: Vec<Hit> = scores
        .into_values()
        .map(|(score, mut hit)| {
            hit.score = score;
            hit
        })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    fused.truncate(top_k);
    fused
}

/// The hits that fit in `max_chars` of context, numbered for citation (a hit that does not
/// fit whole is cut, at least the first one is always given).
fn context(hits: &[Hit], max_chars: usize) -> Vec<Source> {
    let mut used = 0;
    let mut out = Vec::new();
    for hit in hits {
        let room = max_chars.saturating_sub(used);
        if room < 100 && !out.is_empty() {
            break;
        }
        let text: String = hit.text.chars().take(room.max(100)).collect();
        used += text.chars().count();
        out.push(Source {
            n: out.len() + 1,
            source: hit.source.clone(),
            page: hit.page,
            date: hit.date.clone(),
            text,
            score: hit.score,
        });
    }
    out
}

impl From<EmbedError> for RagError {
    fn from(e: EmbedError) -> Self {
        RagError::Embed(e)
    }
}

impl From<StoreError> for RagError {
    fn from(e: StoreError) -> Self {
        RagError::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, score: f32) -> Hit {
        Hit {
            id: id.to_owned(),
            text: format!("text of {id}"),
            source: "s".to_owned(),
            page: None,
            date: None,
            chunk_index: 0,
            score,
        }
    }

    #[test]
    fn fusion_rewards_agreement_between_lists() {
        let dense = vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)];
        let sparse = vec![hit("c", 5.0), hit("d", 4.0), hit("b", 1.0)];
        let fused = fuse(&[dense, sparse], 3);
        let ids: Vec<&str> = fused.iter().map(|h| h.id.as_str()).collect();
        // b and c appear in both lists; c ranks 1st in sparse and 3rd in dense.
        assert_eq!(ids, ["c", "b", "a"]);
        assert!(fused[0].score > fused[2].score);
    }

    #[test]
    fn expansion_adds_only_new_keywords_and_context_respects_the_budget() {
        assert_eq!(
            expand(
                "서울역 사고 상황은?",
                &["서울역".to_owned(), "추돌".to_owned()]
            ),
            "서울역 사고 상황은? 추돌"
        );
        let long = Hit {
            text: "가".repeat(1500),
            ..hit("x", 1.0)
        };
        let sources = context(&[long.clone(), long.clone(), long], 2048);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].n, 1);
        assert_eq!(
            sources
                .iter()
                .map(|s| s.text.chars().count())
                .sum::<usize>(),
            2048
        );
    }
}
