//! RAG on real parts: the local multilingual-E5 embedding server, Qdrant's embedded engine on
//! disk, the real llama.cpp server for answers and a real Redis for the caches. The documents
//! in tests/data/rag were written for these tests (Korean and English).

use std::path::{Path, PathBuf};

use crate::support::servers::{
    LLM_TEST_TIMEOUT_MS, RedisServer, embed_server, free_port, llama_server,
};
use crate::support::*;
use serde_json::{Value, json};
use sori::cache::Cache;
use sori::config::Config;
use sori::rag::embed::{Embedder, Purpose, cosine};

fn docs_dir() -> PathBuf {
    repo_root().join("tests/data/rag")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rag_config(store_dir: &Path) -> Config {
    let mut config = test_config();
    config.rag.enabled = true;
    config.rag.embed_url = embed_server().base_url.clone();
    config.rag.store_dir = store_dir.to_owned();
    config.llm.base_url = llama_server().base_url.clone();
    config.llm.timeout_ms = LLM_TEST_TIMEOUT_MS;
    // One decoder thread beside the one-thread LLM and embedding servers.
    config.stt.threads = 1;
    config
}

async fn post(addr: std::net::SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Questions and the document that answers each, Korean first.
const QUESTIONS: &[(&str, &str)] = &[
    (
        "터널에서 불이 나면 운전자는 어디로 대피하나요?",
        "tunnel-fire.md",
    ),
    (
        "하이패스 요금이 결제되지 않았을 때 언제까지 내야 하나요?",
        "toll-gate.txt",
    ),
    (
        "눈이 많이 오면 화물차 통행은 어떻게 되나요?",
        "snow-removal.txt",
    ),
    (
        "가드레일 교체 예산은 얼마로 승인됐나요?",
        "budget-meeting.md",
    ),
    (
        "How long does a refund for a double charge take?",
        "refund-policy.txt",
    ),
    (
        "What is the load limit on the Main Street bridge?",
        "bridge-inspection.txt",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_korean_paraphrase_scores_above_an_unrelated_sentence() {
    let cfg = sori::config::RagConfig {
        embed_url: embed_server().base_url.clone(),
        ..Default::default()
    };
    let embedder = Embedder::connect(&cfg, Cache::memory(100)).await.unwrap();
    assert_eq!(embedder.dim(), 384, "multilingual-e5-small");
    let query = embedder
        .embed(&["서울역 근처 교통사고 상황".to_owned()], Purpose::Query)
        .await
        .unwrap();
    let passages = embedder
        .embed(
            &[
                "서울역 부근에서 차량 추돌 사고가 발생했습니다".to_owned(),
                "내일 본사에서 예산 회의가 열립니다".to_owned(),
            ],
            Purpose::Passage,
        )
        .await
        .unwrap();
    let (paraphrase, unrelated) = (
        cosine(&query[0], &passages[0]),
        cosine(&query[0], &passages[1]),
    );
    eprintln!("paraphrase {paraphrase:.3}, unrelated {unrelated:.3}");
    assert!(paraphrase > unrelated + 0.02, "{paraphrase} vs {unrelated}");
    for v in query.iter().chain(&passages) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_indexed_by_the_cli_are_found_after_a_restart_in_both_languages() {
    let store = fresh_dir("rag-cli-store");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sori"))
        .arg("index")
        .arg(docs_dir())
        .env("SORI_QDRANT_DIR", &store)
        .env("SORI_EMBED_URL", &embed_server().base_url)
        .output()
        .expect("run sori index");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sori index failed: {stderr}");
    assert!(stderr.contains("indexed 7 of 7 files"), "{stderr}");

    // A server started afterwards on the same directory sees everything.
    let addr = start_server_without_whisper(rag_config(&store));
    let sources = get(addr, "/index").await;
    assert_eq!(sources["sources"].as_array().unwrap().len(), 7, "{sources}");
    for (question, expected) in QUESTIONS {
        let (status, body) = post(addr, "/search", json!({"query": question, "top_k": 3})).await;
        assert_eq!(status, 200, "{body}");
        let first = body["hits"][0]["metadata"]["source"].as_str().unwrap();
        eprintln!("{question} → {first} ({})", body["hits"][0]["score"]);
        assert!(
            first.ends_with(expected),
            "{question}: {first} first, expected {expected}: {body}"
        );
        assert!(body["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindexing_a_source_replaces_it_and_delete_removes_it() {
    let mut config = rag_config(&fresh_dir("rag-reindex"));
    config.rag.chunk_chars = 200;
    let addr = start_server_without_whisper(config);
    let text = std::fs::read_to_string(docs_dir().join("tunnel-fire.md")).unwrap();
    let body =
        json!({"text": text, "metadata": {"source": "manual-7", "page": 3, "date": "2026-11-30"}});
    let (status, first) = post(addr, "/index", body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let chunks = first["report"]["chunks"].as_u64().unwrap();
    assert!(chunks >= 2, "{first}");
    let (_, second) = post(addr, "/index", body).await;
    assert_eq!(second["report"]["chunks"], chunks);
    assert_eq!(second["report"]["replaced"], chunks, "{second}");
    let sources = get(addr, "/index").await;
    assert_eq!(
        sources["sources"],
        json!([{"source": "manual-7", "chunks": chunks}])
    );

    let (_, found) = post(addr, "/search", json!({"query": "비상구 간격"})).await;
    assert_eq!(found["hits"][0]["metadata"]["page"], 3);
    assert_eq!(found["hits"][0]["metadata"]["date"], "2026-11-30");

    let deleted: Value = reqwest::Client::new()
        .delete(format!("http://{addr}/index?source=manual-7"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], chunks);
    let (_, after) = post(addr, "/search", json!({"query": "비상구 간격"})).await;
    assert_eq!(after["hits"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_answers_from_the_right_source_and_repeats_come_from_the_cache() {
    let addr = start_server_without_whisper(rag_config(&fresh_dir("rag-query")));
    for file in ["tunnel-fire.md", "toll-gate.txt", "refund-policy.txt"] {
        let text = std::fs::read_to_string(docs_dir().join(file)).unwrap();
        let (status, body) = post(
            addr,
            "/index",
            json!({"text": text, "metadata": {"source": file}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let question =
        json!({"query": "터널 비상구는 몇 미터 간격으로 있나요?", "keywords": ["비상구"]});
    let (status, answer) = post(addr, "/query", question.clone()).await;
    assert_eq!(status, 200, "{answer}");
    eprintln!("answer: {}", answer["answer"]);
    assert_eq!(answer["sources"][0]["source"], "tunnel-fire.md", "{answer}");
    assert_eq!(answer["sources"][0]["n"], 1);
    assert!(
        answer["answer"].as_str().unwrap().contains("250"),
        "{answer}"
    );
    assert_eq!(answer["cached"], false);
    for step in ["embed_ms", "search_ms", "rerank_ms", "llm_ms", "total_ms"] {
        assert!(
            answer["timings"][step].as_f64().is_some(),
            "{step}: {answer}"
        );
    }
    let (_, again) = post(addr, "/query", question).await;
    assert_eq!(again["cached"], true);
    assert_eq!(again["answer"], answer["answer"]);

    // Multi-turn: the server issues the conversation's id and the follow-up is answered.
    let (_, turn1) = post(
        addr,
        "/query",
        json!({"query": "How long does a refund for a double charge take?"}),
    )
    .await;
    let session_id = turn1["session_id"].as_str().expect("an issued session_id");
    assert_eq!(
        turn1["sources"][0]["source"], "refund-policy.txt",
        "{turn1}"
    );
    let (status, turn2) = post(
        addr,
        "/query",
        json!({"query": "And who must approve it after ninety days?", "session_id": session_id}),
    )
    .await;
    assert_eq!(status, 200, "{turn2}");
    assert_eq!(turn2["session_id"], session_id);
    assert!(!turn2["answer"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_cached_in_redis() {
    let redis = RedisServer::start();
    let mut config = rag_config(&fresh_dir("rag-embed-cache"));
    config.cache.redis_url = Some(redis.url());
    let addr = start_server_without_whisper(config);
    let (status, one) = post(addr, "/embed", json!({"text": "서울요금소 하이패스 차로"})).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["dim"], 384);
    assert_eq!(one["embedding"].as_array().unwrap().len(), 384);
    let before = get(addr, "/cache/status").await;
    let (_, two) = post(addr, "/embed", json!({"text": "서울요금소 하이패스 차로"})).await;
    assert_eq!(one["embedding"], two["embedding"]);
    let after = get(addr, "/cache/status").await;
    let hits = |s: &Value| s["namespaces"]["embed"]["hits"].as_u64().unwrap_or(0);
    assert_eq!(hits(&after), hits(&before) + 1, "{after}");
    assert_eq!(after["type"], "redis");

    let (status, batch) = post(
        addr,
        "/embed/batch",
        json!({"texts": ["하나", "two", "서울요금소 하이패스 차로"], "kind": "passage"}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["embeddings"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_rag_sends_related_chunks_after_each_final() {
    let addr = start_server(rag_config(&fresh_dir("rag-live")));
    for file in [
        "inaugural-address.txt",
        "bridge-inspection.txt",
        "toll-gate.txt",
    ] {
        let text = std::fs::read_to_string(docs_dir().join(file)).unwrap();
        post(
            addr,
            "/index",
            json!({"text": text, "metadata": {"source": file}}),
        )
        .await;
    }
    let (mut ws, ready) = connect_ready(addr, "?language=en&rag=true").await;
    assert_eq!(ready["options"]["rag"], true);
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    let rag: Vec<&Value> = messages.iter().filter(|m| m["type"] == "rag").collect();
    assert!(!rag.is_empty(), "{messages:?}");
    let last_final = finals(&messages).last().unwrap()["segment_id"].clone();
    let answer = rag
        .iter()
        .find(|m| m["segment_id"] == last_final)
        .expect("a rag event for the last final");
    assert_eq!(
        answer["hits"][0]["source"], "inaugural-address.txt",
        "{answer}"
    );
    assert!(answer["latency_ms"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_that_is_down_gives_503_and_one_live_error() {
    let mut config = rag_config(&fresh_dir("rag-down"));
    config.rag.embed_url = format!("http://127.0.0.1:{}/v1", free_port());
    config.rag.timeout_ms = 1000;
    let addr = start_server(config);
    let (status, body) = post(addr, "/search", json!({"query": "anything"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "rag_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{body}"
    );

    let (mut ws, _) = connect_ready(addr, "?language=en&rag=true").await;
    let jfk = to_s16le(&jfk_16k());
    let two = [&jfk[..], &vec![0u8; 64000], &jfk].concat();
    send_pcm(&mut ws, &two, 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    assert!(
        finals(&messages).len() >= 2,
        "finals keep flowing: {messages:?}"
    );
    let errors: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "error" && m["code"] == "rag_unavailable")
        .collect();
    assert_eq!(errors.len(), 1, "one error per outage: {messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let addr = server(); // RAG is off on the shared server
    let (status, body) = post(addr, "/search", json!({"query": "x"})).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "rag_disabled");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SORI_RAG")
    );

    let addr = start_server_without_whisper(rag_config(&fresh_dir("rag-bad")));
    let cases = [
        ("/index", json!({"text": "x"}), "invalid_json"),
        (
            "/index",
            json!({"text": "본문", "metadata": {"source": "  "}}),
            "invalid_request",
        ),
        (
            "/index",
            json!({"text": "   ", "metadata": {"source": "a"}}),
            "invalid_request",
        ),
        (
            "/search",
            json!({"query": "x", "top_k": 0}),
            "invalid_top_k",
        ),
        ("/search", json!({"query": "   "}), "invalid_request"),
        ("/search", json!({"q": "x"}), "invalid_json"),
        ("/query", json!({"query": 3}), "invalid_json"),
        (
            "/embed",
            json!({"text": "x", "kind": "other"}),
            "invalid_kind",
        ),
        ("/embed/batch", json!({"texts": []}), "invalid_batch"),
    ];
    for (path, body, code) in cases {
        let (status, answer) = post(addr, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{path} {body}: {answer}");
    }
    let raw = reqwest::Client::new()
        .post(format!("http://{addr}/search"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"query\""),
        "{body}"
    );
    let missing = reqwest::Client::new()
        .delete(format!("http://{addr}/index"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}

#[test]
fn pdf_pages_are_read_with_their_numbers_korean_included() {
    // A real two-page PDF, printed by Chromium from HTML (with embedded Korean glyphs).
    let chromium = "/usr/bin/chromium";
    assert!(
        Path::new(chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium (./scripts/install-deps.sh does)"
    );
    let dir = fresh_dir("rag-pdf");
    let html = dir.join("doc.html");
    std::fs::write(
        &html,
        r#"<html lang="ko"><head><meta charset="utf-8"></head><body>
<h1>터널 화재 대응 절차</h1><p>비상구는 250미터 간격으로 설치되어 있습니다.</p>
<p style="page-break-before: always">Page two: the Main Street bridge load limit is forty tonnes.</p>
</body></html>"#,
    )
    .unwrap();
    let pdf = dir.join("doc.pdf");
    let status = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run chromium");
    assert!(status.success() && pdf.is_file(), "chromium printed no PDF");

    let pages = sori::rag::files::load(&pdf).expect("PDF text");
    eprintln!("{pages:?}");
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(pages[0].0, Some(1));
    assert!(pages[0].1.contains("250"), "{pages:?}");
    assert!(
        pages[0]
            .1
            .replace(char::is_whitespace, "")
            .contains("비상구"),
        "Korean text from the PDF: {pages:?}"
    );
    assert!(pages[1].1.contains("forty tonnes"), "{pages:?}");

    // Files it cannot read say why.
    let garbage = dir.join("broken.pdf");
    std::fs::write(&garbage, b"%PDF-1.7 truncated").unwrap();
    let e = sori::rag::files::load(&garbage).unwrap_err().to_string();
    assert!(e.contains("broken.pdf"), "{e}");
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, [0xC0u8, 0xFF, 0x20]).unwrap();
    let e = sori::rag::files::load(&latin1).unwrap_err().to_string();
    assert!(e.contains("not UTF-8"), "{e}");
}
