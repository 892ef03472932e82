//! The in-process embedding backend on real parts: fastembed over ONNX Runtime's shared
//! library from PyPI, all-MiniLM-L6-v2 (int8 ONNX) from a local directory, both fetched by
//! `scripts/onnx-embedder.sh fetch`. The model is English-only, so the documents and questions
//! here are the English ones of tests/data/rag. Also the cross-encoder rerank endpoint, against
//! llama.cpp's real `/v1/rerank` (see `llama_rerank_server` for what that can and cannot show).

use std::path::PathBuf;

use crate::support::servers::{free_port, llama_rerank_server};
use crate::support::*;
use serde_json::{Value, json};
use sori::cache::Cache;
use sori::config::RagConfig;
use sori::rag::embed::{Embedder, Purpose, cosine};
use sori::rag::rerank::Reranker;
use sori::rag::{DocMeta, Rag};

/// The files `scripts/onnx-embedder.sh fetch` makes, or a loud failure saying how to get them.
fn onnx_files() -> (PathBuf, PathBuf) {
    let model = repo_root().join("models/embed/all-minilm-l6-v2-int8");
    let lib = repo_root().join(".tools/onnxruntime/libonnxruntime.so.1.31.1");
    assert!(
        model.join("model.onnx").is_file() && lib.is_file(),
        "the ONNX embedding model or ONNX Runtime is missing ({} / {}); \
         fetch them with: scripts/onnx-embedder.sh fetch",
        model.display(),
        lib.display()
    );
    (model, lib)
}

fn onnx_rag_config() -> RagConfig {
    let (model, lib) = onnx_files();
    RagConfig {
        enabled: true,
        embed_model_dir: Some(model),
        onnxruntime_lib: lib,
        // Nothing listens here: the in-process backend must not need the endpoint.
        embed_url: "http://127.0.0.1:9/v1".to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_model_ranks_a_paraphrase_above_an_unrelated_sentence() {
    let embedder = Embedder::connect(&onnx_rag_config(), Cache::memory(100))
        .await
        .expect("load the ONNX model");
    assert_eq!(
        embedder.dim(),
        384,
        "all-MiniLM-L6-v2's size, read from the model"
    );
    assert_eq!(embedder.model(), "all-minilm-l6-v2-int8");
    assert!(
        embedder.source().starts_with("onnx:"),
        "{}",
        embedder.source()
    );

    let query = embedder
        .embed(
            &["a car crash near the train station".to_owned()],
            Purpose::Query,
        )
        .await
        .unwrap();
    let passages = [
        "Two vehicles collided close to the railway station this morning.".to_owned(),
        "The budget meeting takes place at headquarters tomorrow.".to_owned(),
    ];
    let together = embedder.embed(&passages, Purpose::Passage).await.unwrap();
    let (paraphrase, unrelated) = (
        cosine(&query[0], &together[0]),
        cosine(&query[0], &together[1]),
    );
    eprintln!("paraphrase {paraphrase:.3}, unrelated {unrelated:.3}");
    assert!(paraphrase > unrelated + 0.2, "{paraphrase} vs {unrelated}");
    for v in query.iter().chain(&together) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
    }
    // A text gets the same vector alone as in a batch (no cache: a fresh embedder).
    let fresh = Embedder::connect(&onnx_rag_config(), Cache::memory(100))
        .await
        .unwrap();
    let alone = fresh.embed(&passages[1..], Purpose::Passage).await.unwrap();
    assert!(cosine(&alone[0], &together[1]) > 0.999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_the_in_process_model_indexes_and_finds_english_documents() {
    let store = scratch_dir().join("rag-onnx-store");
    let _ = std::fs::remove_dir_all(&store);
    let mut config = test_config();
    config.rag = onnx_rag_config();
    config.rag.store_dir = store;
    config.stt.threads = 1;
    let addr = start_server(config);
    let http = reqwest::Client::new();
    for name in [
        "refund-policy.txt",
        "bridge-inspection.txt",
        "tunnel-fire.md",
    ] {
        let text = std::fs::read_to_string(repo_root().join("tests/data/rag").join(name)).unwrap();
        let response = http
            .post(format!("http://{addr}/index"))
            .json(&json!({"text": text, "metadata": {"source": name}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    for (question, expected) in [
        (
            "How long does a refund for a double charge take?",
            "refund-policy.txt",
        ),
        (
            "What is the load limit on the Main Street bridge?",
            "bridge-inspection.txt",
        ),
    ] {
        let body: Value = http
            .post(format!("http://{addr}/search"))
            .json(&json!({"query": question, "top_k": 3}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first = body["hits"][0]["metadata"]["source"].as_str().unwrap_or("");
        assert_eq!(first, expected, "{question}: {body}");
    }
    let embed: Value = http
        .post(format!("http://{addr}/embed"))
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(embed["dim"], 384, "{embed}");
    assert_eq!(embed["model"], "all-minilm-l6-v2-int8", "{embed}");
}

#[test]
fn a_missing_runtime_or_model_is_named_with_how_to_fetch_it() {
    let (model, _) = onnx_files();
    let run = |lib: &str, dir: &str| {
        let store = scratch_dir().join("rag-onnx-missing");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sori"))
            .args(["index", "tests/data/rag/refund-policy.txt"])
            .current_dir(repo_root())
            .env("SORI_QDRANT_DIR", &store)
            .env("SORI_EMBED_MODEL_DIR", dir)
            .env("SORI_ONNXRUNTIME_LIB", lib)
            .output()
            .expect("run sori index");
        assert!(
            !out.status.success(),
            "sori index succeeded without its parts"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(
        "/nonexistent/libonnxruntime.so",
        &model.display().to_string(),
    );
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so") && stderr.contains("onnx-embedder.sh"),
        "{stderr}"
    );
    let (_, lib) = onnx_files();
    let stderr = run(&lib.display().to_string(), "/nonexistent/model-dir");
    assert!(
        stderr.contains("/nonexistent/model-dir") && stderr.contains("no such directory"),
        "{stderr}"
    );
}

const ENGLISH_DOCS: [&str; 3] = [
    "refund-policy.txt",
    "bridge-inspection.txt",
    "tunnel-fire.md",
];

/// A pipeline on the in-process embedder over a fresh store holding the English documents.
async fn indexed_rag(name: &str, rerank_url: Option<String>) -> Rag {
    let mut cfg = onnx_rag_config();
    cfg.store_dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&cfg.store_dir);
    cfg.top_k_retrieval = 4;
    cfg.rerank_url = rerank_url;
    // Four candidates through the 0.5B chat model on one CPU thread take 10–30 s beside the
    // other tests (~25 prompt tokens/s on AVX2): this test checks the wire and the order, so
    // the timeout is not what it measures.
    cfg.timeout_ms = 120_000;
    let rag = Rag::connect(&cfg, &test_config().llm, Cache::memory(100))
        .await
        .expect("RAG on the in-process embedder");
    for name in ENGLISH_DOCS {
        let text = std::fs::read_to_string(repo_root().join("tests/data/rag").join(name)).unwrap();
        let meta = DocMeta {
            source: name.to_owned(),
            ..Default::default()
        };
        rag.index(&meta, &[(None, text)]).await.unwrap();
    }
    rag
}

fn ids(hits: &[sori::rag::store::Hit]) -> Vec<(String, u32)> {
    hits.iter()
        .map(|h| (h.source.clone(), h.chunk_index))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerank_endpoint_scores_the_candidates_and_a_dead_one_falls_back_to_fusion() {
    let server = llama_rerank_server();
    let cfg = RagConfig {
        rerank_url: Some(server.base_url.clone()),
        timeout_ms: 120_000,
        ..Default::default()
    };
    let reranker = Reranker::from_config(&cfg).expect("configured");
    let scores = reranker
        .scores(
            "What is the load limit on the bridge?",
            &[
                "The bridge carries at most 20 tonnes.",
                "Refunds take five days.",
            ],
        )
        .await
        .expect("llama-server's /v1/rerank answers");
    assert_eq!(scores.len(), 2);
    assert!(scores.iter().all(|s| s.is_finite()), "{scores:?}");

    let question = "What is the load limit on the Main Street bridge?";
    let fused = indexed_rag("rerank-none", None).await;
    let (by_fusion, timings) = fused.search(question, 2).await.unwrap();
    assert_eq!(by_fusion[0].source, "bridge-inspection.txt");
    assert_eq!(timings.reranked_by, "fusion");

    let reranked = indexed_rag("rerank-llama", Some(server.base_url.clone())).await;
    let (by_encoder, timings) = reranked.search(question, 2).await.unwrap();
    assert_eq!(timings.reranked_by, "cross-encoder", "{timings:?}");
    assert_eq!(by_encoder.len(), 2);
    assert!(timings.rerank_ms > 0.0);
    // The pipeline's order is the endpoint's scores over the fused candidates, best first,
    // ties in fused order: recompute it from the same endpoint.
    let (candidates, _) = fused.search(question, 4).await.unwrap();
    let texts: Vec<&str> = candidates.iter().map(|h| h.text.as_str()).collect();
    let scores = reranker.scores(question, &texts).await.unwrap();
    let mut expected: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let expected: Vec<(String, u32)> = expected[..2]
        .iter()
        .map(|&(i, _)| (candidates[i].source.clone(), candidates[i].chunk_index))
        .collect();
    eprintln!("fused {:?}, scores {scores:?}", ids(&candidates));
    assert_eq!(ids(&by_encoder), expected);
    assert_eq!(
        by_encoder[0].score,
        scores.iter().copied().fold(f32::MIN, f32::max)
    );

    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let broken = indexed_rag("rerank-dead", Some(dead)).await;
    let (fallback, timings) = broken.search(question, 2).await.unwrap();
    assert!(
        timings
            .reranked_by
            .starts_with("fusion (cross-encoder failed"),
        "{timings:?}"
    );
    assert_eq!(
        ids(&fallback),
        ids(&by_fusion),
        "the fallback is the fused order"
    );
}
