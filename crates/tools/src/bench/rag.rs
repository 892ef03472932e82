//! `sori bench --rag`: embedding, search, fusion, retrieval and full `/query` latency on the
//! configured embedding endpoint, an embedded store filled to `chunks` chunks in a temporary
//! directory, and (when reachable) the LLM.

use std::time::{Duration, Instant};

use sori::cache::Cache;
use sori::config::Config;
use sori::rag::embed::Purpose;
use sori::rag::pipeline::fuse;
use sori::rag::sparse::sparse_vector;
use sori::rag::store::StoredChunk;
use sori::rag::{DocMeta, Rag};

use super::percentile;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RagFigures {
    pub embed_model: String,
    pub dim: usize,
    pub chunks: usize,
    /// One text per request, uncached.
    pub embed_one_p50_ms: f64,
    pub embed_one_p95_ms: f64,
    /// One request of 32 texts (the same short questions), per text.
    pub embed_batch_per_text_ms: f64,
    pub dense_p50_ms: f64,
    pub dense_p95_ms: f64,
    pub sparse_p50_ms: f64,
    pub sparse_p95_ms: f64,
    pub fuse_p50_ms: f64,
    /// Query embedding (uncached) + dense + sparse + fusion.
    pub retrieval_p50_ms: f64,
    pub retrieval_p95_ms: f64,
    /// Full `/query` (retrieval + LLM answer), when the LLM answered.
    pub query_p50_ms: Option<f64>,
    pub query_p95_ms: Option<f64>,
    pub queries_answered: usize,
}

/// Questions in the users' domains for the retrieval and query timings.
const QUESTIONS: &[&str] = &[
    "터널에서 불이 나면 운전자는 어디로 대피하나요?",
    "하이패스 요금이 결제되지 않았을 때 언제까지 내야 하나요?",
    "눈이 많이 오면 화물차 통행은 어떻게 되나요?",
    "가드레일 교체 예산은 얼마로 승인됐나요?",
    "How long does a refund for a double charge take?",
    "What is the load limit on the Main Street bridge?",
];

/// A document the answers can come from, indexed for real next to the synthetic chunks.
const DOCUMENT: &str = "터널 안에서 화재가 발생하면 관제센터는 즉시 진입 차단 신호를 켜고 \
소방서에 신고합니다. 비상구는 250미터 간격으로 설치되어 있습니다. 하이패스 미납 통행료는 30일 \
안에 납부하면 가산금이 없습니다. 폭설 시에는 화물차 통행을 제한합니다. 2분기 회의에서 가드레일 \
교체 예산 3억 원이 승인되었습니다. Refunds for a double charge are issued within five business \
days. The Main Street bridge load limit stays at forty tonnes.";

pub async fn rag_latency(
    config: &Config,
    chunks: usize,
    runs: usize,
) -> anyhow::Result<RagFigures> {
    let dir = std::env::temp_dir().join(format!("sori-bench-rag-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rag_config = config.rag.clone();
    rag_config.enabled = true;
    rag_config.store_dir = dir.clone();
    let rag = Rag::connect(&rag_config, &config.llm, Cache::memory(100_000)).await?;
    let result = measure(&rag, chunks, runs.max(1)).await;
    drop(rag);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(rag: &Rag, chunks: usize, runs: usize) -> anyhow::Result<RagFigures> {
    let embedder = rag.embedder();
    let (mut one, batch_per_text) = time_embedding(rag, runs).await?;
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    fill_store(rag, chunks, &mut rng).await?;
    let mut searches = time_searches(rag, runs, &mut rng).await?;
    let mut queries = time_queries(rag, runs).await;

    for v in [&mut one, &mut queries] {
        v.sort_by(f64::total_cmp);
    }
    searches.sort();
    Ok(RagFigures {
        embed_model: embedder.model().to_owned(),
        dim: embedder.dim(),
        chunks: rag.store().count().await?,
        embed_one_p50_ms: percentile(&one, 0.5),
        embed_one_p95_ms: percentile(&one, 0.95),
        embed_batch_per_text_ms: batch_per_text,
        dense_p50_ms: percentile(&searches.dense, 0.5),
        dense_p95_ms: percentile(&searches.dense, 0.95),
        sparse_p50_ms: percentile(&searches.sparse, 0.5),
        sparse_p95_ms: percentile(&searches.sparse, 0.95),
        fuse_p50_ms: percentile(&searches.fusion, 0.5),
        retrieval_p50_ms: percentile(&searches.retrieval, 0.5),
        retrieval_p95_ms: percentile(&searches.retrieval, 0.95),
        query_p50_ms: (!queries.is_empty()).then(|| percentile(&queries, 0.5)),
        query_p95_ms: (!queries.is_empty()).then(|| percentile(&queries, 0.95)),
        queries_answered: queries.len(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Embedding: one text per request (distinct texts, so nothing comes from the cache), then
/// one batch of 32. Returns each single request's time and the batch's time per text.
async fn time_embedding(rag: &Rag, runs: usize) -> anyhow::Result<(Vec<f64>, f64)> {
    let embedder = rag.embedder();
    let mut one = Vec::new();
    for i in 0..(12 * runs) {
        let text = format!("{} ({i})", QUESTIONS[i % QUESTIONS.len()]);
        let started = Instant::now();
        embedder.embed(&[text], Purpose::Passage).await?;
        one.push(ms(started.elapsed()));
    }
    let batch: Vec<String> = (0..32)
        .map(|i| format!("{} [{i}]", QUESTIONS[i % QUESTIONS.len()]))
        .collect();
    let started = Instant::now();
    embedder.embed(&batch, Purpose::Passage).await?;
    let batch_per_text = ms(started.elapsed()) / batch.len() as f64;
    Ok((one, batch_per_text))
}

/// The store: one real document, the rest synthetic chunks with random unit vectors, up to
/// `chunks` in all.
async fn fill_store(rag: &Rag, chunks: usize, rng: &mut XorShift) -> anyhow::Result<()> {
    let meta = DocMeta {
        source: "bench-document".to_owned(),
        page: None,
        date: None,
    };
    rag.index(&meta, &[(None, DOCUMENT.to_owned())]).await?;
    let dim = rag.embedder().dim();
    let mut stored = 1;
    while stored < chunks {
        let n = (chunks - stored).min(500);
        let batch: Vec<StoredChunk> = (0..n)
            .map(|i| {
                let text = rng.sentence();
                StoredChunk {
                    sparse: sparse_vector(&text),
                    text,
                    source: format!("synthetic-{}", (stored + i) / 10),
                    page: None,
                    date: None,
                    chunk_index: ((stored + i) % 10) as u32,
                    dense: rng.unit_vector(dim),
                }
            })
            .collect();
        rag.store().upsert(batch).await?;
        stored += n;
    }
    Ok(())
}

/// Milliseconds per search step, one entry per try.
struct SearchTimes {
    dense: Vec<f64>,
    sparse: Vec<f64>,
    fusion: Vec<f64>,
    /// Query embedding (uncached) + dense + sparse + fusion.
    retrieval: Vec<f64>,
}

impl SearchTimes {
    fn sort(&mut self) {
        for v in [
            &mut self.dense,
            &mut self.sparse,
            &mut self.fusion,
            &mut self.retrieval,
        ] {
            v.sort_by(f64::total_cmp);
        }
    }
}

/// Search alone, then the whole retrieval with an uncached query embedding.
async fn time_searches(rag: &Rag, runs: usize, rng: &mut XorShift) -> anyhow::Result<SearchTimes> {
    let dim = rag.embedder().dim();
    let (mut dense, mut sparse, mut fusion, mut retrieval) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..(50 * runs) {
        let question = format!("{} {i}", QUESTIONS[i % QUESTIONS.len()]);
        let vector = rng.unit_vector(dim);
        let terms = sparse_vector(&question);
        let started = Instant::now();
        let d = rag.store().search_dense(&vector, 10).await?;
        dense.push(ms(started.elapsed()));
        let started = Instant::now();
        let s = rag.store().search_sparse(&terms, 10).await?;
        sparse.push(ms(started.elapsed()));
        let started = Instant::now();
        let _ = fuse(&[d, s], 5);
        fusion.push(ms(started.elapsed()));
        if i < 20 * runs {
            let started = Instant::now();
            rag.search(&question, 5).await?;
            retrieval.push(ms(started.elapsed()));
        }
    }
    Ok(SearchTimes {
        dense,
        sparse,
        fusion,
        retrieval,
    })
}

/// Full queries through the LLM, while it answers: the first failure ends them.
async fn time_queries(rag: &Rag, runs: usize) -> Vec<f64> {
    let mut queries = Vec::new();
    for (i, question) in QUESTIONS
        .iter()
        .cycle()
        .take(QUESTIONS.len() * runs)
        .enumerate()
    {
        let question = format!("{question} ({i})");
        let started = Instant::now();
        match rag.query(&question, &[], None).await {
            Ok(_) => queries.push(ms(started.elapsed())),
            Err(e) => {
                eprintln!("[bench] /query failed, LLM figures left out: {e}");
                break;
            }
        }
    }
    queries
}

impl RagFigures {
    pub fn to_markdown(&self) -> String {
        let query = match (self.query_p50_ms, self.query_p95_ms) {
            (Some(p50), Some(p95)) => {
                format!("| full `/query` (LLM answer) | {p50:.0} | {p95:.0} |\n")
            }
            _ => "| full `/query` | LLM not reachable | |\n".to_owned(),
        };
        format!(
            "RAG with `{}` ({}-d), {} chunks in qdrant-edge\n\n\
             | step | p50 ms | p95 ms |\n|---|---|---|\n\
             | embed one text (uncached) | {:.1} | {:.1} |\n\
             | embed, batch of 32, per text | {:.1} | |\n\
             | dense search, top 10 | {:.2} | {:.2} |\n\
             | sparse search, top 10 | {:.2} | {:.2} |\n\
             | rank fusion | {:.3} | |\n\
             | retrieval (embed query + both searches + fusion) | {:.1} | {:.1} |\n{query}",
            self.embed_model,
            self.dim,
            self.chunks,
            self.embed_one_p50_ms,
            self.embed_one_p95_ms,
            self.embed_batch_per_text_ms,
            self.dense_p50_ms,
            self.dense_p95_ms,
            self.sparse_p50_ms,
            self.sparse_p95_ms,
            self.fuse_p50_ms,
            self.retrieval_p50_ms,
            self.retrieval_p95_ms,
        )
    }
}

/// A small deterministic generator for synthetic chunks (the figures must not depend on a
/// random seed from run to run).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.unit()).collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.into_iter().map(|x| x / norm).collect()
    }

    /// About 40 words of random Hangul syllables and digits (~150 characters).
    fn sentence(&mut self) -> String {
        (0..40)
            .map(|_| {
                let len = 1 + (self.next() % 3) as usize;
                (0..len)
                    .map(|_| char::from_u32(0xAC00 + (self.next() % 2350) as u32).unwrap_or('가'))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}
