//! Keywords from a real llama.cpp server (the same OpenAI-compatible API as vLLM), cached in a
//! real Redis, and the faults a deliberately broken endpoint injects.

use std::time::Duration;

use crate::support::faulty_llm::{Fault, FaultyLlm};
use crate::support::servers::{LLM_TEST_TIMEOUT_MS, RedisServer, llama_server};
use crate::support::*;
use serde_json::Value;
use sori::cache::Cache;
use sori::config::{Config, LlmConfig};
use sori::keywords::{KeywordExtractor, normalize};

fn llm_config(base_url: &str) -> LlmConfig {
    LlmConfig {
        base_url: base_url.to_owned(),
        timeout_ms: LLM_TEST_TIMEOUT_MS,
        ..LlmConfig::default()
    }
}

fn category_ids() -> Vec<String> {
    LlmConfig::default()
        .categories
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn server_with_llm(base_url: &str, tweak: impl FnOnce(&mut Config)) -> std::net::SocketAddr {
    let mut config = test_config();
    config.llm = llm_config(base_url);
    config.llm.retry_after_ms = 300;
    // Fault tests shorten this again.
    config.llm.timeout_ms = LLM_TEST_TIMEOUT_MS;
    // Whisper one thread, the LLM server one: oversubscribed cores stall both (ggml's
    // barriers spin).
    config.stt.threads = 1;
    tweak(&mut config);
    start_server(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn korean_and_english_sentences_give_keywords_that_occur_in_them() {
    let llm = llama_server();
    let extractor = KeywordExtractor::new(
        &llm_config(&llm.base_url),
        Cache::memory(100),
        Duration::from_secs(60),
    );
    let sentences = [
        "오늘 오후 3시 경부고속도로 서울요금소 부근에서 화물차 추돌 사고가 발생했습니다",
        "The fire department sent two trucks to the Main Street bridge at noon.",
    ];
    for sentence in sentences {
        let result = extractor.extract(sentence).await.expect("keywords");
        eprintln!(
            "{sentence} → {:?} in {} ms",
            result.keywords, result.latency_ms
        );
        assert!(!result.keywords.is_empty(), "no keywords for {sentence}");
        assert!(!result.cached);
        assert_eq!(result.model, llm.model);
        let haystack = normalize(sentence);
        for k in &result.keywords {
            assert!(
                haystack.contains(&normalize(&k.text)),
                "{k:?} is not in {sentence}"
            );
            assert!(
                category_ids().contains(&k.category),
                "unknown category {k:?}"
            );
            assert!(!k.label.is_empty());
        }
    }
    let status = extractor.status().await;
    assert!(status.reachable);
    assert_eq!(status.circuit, "closed");
    assert!(status.last_latency_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_gives_each_keyword_early_and_the_same_list_at_the_end() {
    let llm = llama_server();
    let extractor = KeywordExtractor::new(
        &llm_config(&llm.base_url),
        Cache::memory(100),
        Duration::from_secs(60),
    );
    let sentence = "어제 밤 11시 강남역 사거리에서 버스와 택시가 충돌해 서울시 교통정보센터가 우회를 안내했습니다";
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = std::time::Instant::now();
    let collect = async {
        let mut early = Vec::new();
        while let Some(k) = rx.recv().await {
            early.push((k, started.elapsed()));
        }
        early
    };
    let (result, early) = tokio::join!(
        async move {
            let r = extractor.extract_streaming(sentence, Some(&tx)).await;
            drop(tx);
            r
        },
        collect
    );
    let result = result.expect("keywords");
    let early_keywords: Vec<_> = early.iter().map(|(k, _)| k.clone()).collect();
    eprintln!(
        "early {early:?}; whole answer after {} ms",
        result.latency_ms
    );
    assert!(!result.keywords.is_empty());
    assert_eq!(
        early_keywords, result.keywords,
        "the early keywords are exactly the final list"
    );
    let first = early[0].1.as_millis() as u64;
    assert!(
        first < result.latency_ms,
        "the first keyword ({first} ms) must come before the whole answer ({} ms)",
        result.latency_ms
    );
}

/// Streams the JFK clip and returns every message up to `closed`.
async fn stream_jfk(addr: std::net::SocketAddr, query: &str) -> Vec<Value> {
    let (mut ws, _) = connect_ready(addr, query).await;
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    stop_and_collect(&mut ws).await
}

fn keyword_events(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "keywords")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_final_gets_its_keywords_and_repeats_come_from_redis() {
    let llm = llama_server();
    let redis = RedisServer::start();
    let addr = server_with_llm(&llm.base_url, |c| c.cache.redis_url = Some(redis.url()));

    // One keywords event per final: revisions, which bring their own, are the driver's tests.
    let first = stream_jfk(addr, "?language=en&revisions=false").await;
    let finals = finals(&first);
    assert!(!finals.is_empty());
    let kws = keyword_events(&first);
    assert_eq!(
        kws.len(),
        finals.len(),
        "one keywords event per final: {first:?}"
    );
    for k in &kws {
        let id = k["segment_id"].as_u64().unwrap();
        let final_at = first
            .iter()
            .position(|m| m["type"] == "final" && m["segment_id"] == id)
            .unwrap();
        let kw_at = first.iter().position(|m| std::ptr::eq(m, *k)).unwrap();
        assert!(kw_at > final_at, "keywords must follow their final");
        assert_eq!(k["cached"], false);
        assert_eq!(k["model"], llm.model.as_str());
        let text = finals.iter().find(|f| f["segment_id"] == id).unwrap()["text"]
            .as_str()
            .unwrap();
        for kw in k["keywords"].as_array().unwrap() {
            assert!(
                normalize(text).contains(&normalize(kw["text"].as_str().unwrap())),
                "{kw} not in {text}"
            );
        }
    }
    assert!(
        kws.iter()
            .any(|k| !k["keywords"].as_array().unwrap().is_empty()),
        "the JFK sentence has nouns (country, Americans): {kws:?}"
    );
    // Each keyword came early too, between its final and its segment's `keywords`, in order.
    for k in &kws {
        let id = &k["segment_id"];
        let final_at = first
            .iter()
            .position(|m| m["type"] == "final" && &m["segment_id"] == id)
            .unwrap();
        let kw_at = first.iter().position(|m| std::ptr::eq(m, *k)).unwrap();
        let early: Vec<(usize, &Value)> = first
            .iter()
            .enumerate()
            .filter(|(_, m)| m["type"] == "keyword" && &m["segment_id"] == id)
            .collect();
        assert!(early.iter().all(|(at, _)| *at > final_at && *at < kw_at));
        let early: Vec<&Value> = early.iter().map(|(_, m)| &m["keyword"]).collect();
        let whole: Vec<&Value> = k["keywords"].as_array().unwrap().iter().collect();
        assert_eq!(early, whole, "early keywords of segment {id}");
    }
    assert_eq!(
        first.last().unwrap()["type"],
        "closed",
        "keywords come before closed"
    );

    // The same speech again, in a new session: the same segments, answered from Redis.
    let second = stream_jfk(addr, "?language=en&revisions=false").await;
    let kws2 = keyword_events(&second);
    assert_eq!(kws2.len(), kws.len());
    assert!(kws2.iter().all(|k| k["cached"] == true), "{kws2:?}");
    assert!(
        second.iter().all(|m| m["type"] != "keyword"),
        "a cache hit is answered whole, not streamed"
    );
    // Results arrive as they finish, so match them by segment.
    for a in &kws {
        let b = kws2
            .iter()
            .find(|b| b["segment_id"] == a["segment_id"])
            .expect("same segment");
        assert_eq!(a["keywords"], b["keywords"]);
    }

    let status: Value = reqwest::get(format!("http://{addr}/cache/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["type"], "redis");
    assert_eq!(status["connected"], true);
    assert!(
        status["hits"].as_u64().unwrap() >= kws.len() as u64,
        "{status}"
    );
    assert!(status["current_size"].as_u64().unwrap() >= 1, "{status}");
    let api: Value = reqwest::get(format!("http://{addr}/api/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["llm"]["reachable"], true, "{api}");
    assert_eq!(api["llm"]["model"], llm.model.as_str());
    // The GPU as NVML reports it on this machine.
    let gpu = sori::gpu::gpu_status();
    assert_eq!(api["gpu"]["available"], gpu.available, "{api}");
    assert_eq!(api["gpu"]["used_by_whisper"], gpu.used_by_whisper, "{api}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_can_turn_keywords_off() {
    let llm = llama_server();
    let addr = server_with_llm(&llm.base_url, |_| {});
    let messages = stream_jfk(addr, "?language=en&keywords=false").await;
    assert!(!finals(&messages).is_empty());
    assert!(keyword_events(&messages).is_empty());
}

/// Two stretches of speech with a pause between: at least two finals, streamed as fast as possible.
fn two_utterances() -> Vec<u8> {
    let jfk = jfk_16k();
    to_s16le(&[&jfk[..], &vec![0.0f32; 32000], &jfk].concat())
}

/// Streams through an endpoint with `fault`: finals keep coming; returns the messages.
async fn run_with_fault(fault: Fault) -> (Vec<Value>, FaultyLlm) {
    let faulty = FaultyLlm::start(fault).await;
    let addr = server_with_llm(&faulty.base_url(), |c| c.llm.timeout_ms = 1500);
    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    send_pcm(&mut ws, &two_utterances(), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    assert!(
        finals(&messages).len() >= 2,
        "finals must keep flowing: {messages:?}"
    );
    let wer = sori::eval::wer(
        &format!("{JFK_REFERENCE} {JFK_REFERENCE}"),
        &final_text(&messages),
    );
    assert!(
        wer <= 0.10,
        "transcription disturbed by the LLM fault: WER {wer}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m["type"] != "keywords" && m["type"] != "keyword"),
        "nothing bad may be forwarded: {messages:?}"
    );
    (messages, faulty)
}

fn llm_errors(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| m["type"] == "error" && m["code"] == "llm_unavailable")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_hangs_gives_one_error_per_outage() {
    let (messages, _) = run_with_fault(Fault::Hang).await;
    assert_eq!(llm_errors(&messages), 1, "{messages:?}");
    let e = messages
        .iter()
        .find(|m| m["code"] == "llm_unavailable")
        .unwrap();
    assert_eq!(e["fatal"], false);
    assert!(e["message"].as_str().unwrap().contains("1500 ms"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_with_http_500_gives_one_error() {
    let (messages, _) = run_with_fault(Fault::Http500).await;
    assert_eq!(llm_errors(&messages), 1, "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_dropping_connections_gives_one_error_after_a_retry() {
    let (messages, faulty) = run_with_fault(Fault::CloseConnection).await;
    assert_eq!(llm_errors(&messages), 1, "{messages:?}");
    assert!(
        faulty.requests() >= 2,
        "a dropped connection is retried once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_schema_violations_are_rejected_not_forwarded() {
    for fault in [Fault::InvalidJson, Fault::SchemaViolation] {
        let (messages, faulty) = run_with_fault(fault).await;
        // The endpoint is up, so this is not an outage: no error event, just nothing forwarded.
        assert_eq!(llm_errors(&messages), 0, "{messages:?}");
        assert!(faulty.requests() >= 2, "every final was tried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keywords_resume_in_the_same_session_when_the_endpoint_recovers() {
    let faulty = FaultyLlm::start(Fault::Http500).await;
    let addr = server_with_llm(&faulty.base_url(), |c| c.llm.timeout_ms = 1500);
    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    let jfk = to_s16le(&jfk_16k());
    send_pcm(&mut ws, &jfk, 32000, 100, false).await;
    send_json(&mut ws, serde_json::json!({"type": "flush"})).await;
    let mut seen = Vec::new();
    while llm_errors(&seen) == 0 {
        seen.push(next_json(&mut ws).await.expect("open"));
    }
    faulty.set_fault(None);
    tokio::time::sleep(Duration::from_millis(700)).await; // past the breaker's rest
    send_pcm(&mut ws, &jfk, 32000, 100, false).await;
    let rest = stop_and_collect(&mut ws).await;
    seen.extend(rest);
    assert_eq!(llm_errors(&seen), 1);
    let kws = keyword_events(&seen);
    assert!(!kws.is_empty(), "keywords must resume: {seen:?}");
    assert!(kws.iter().all(|k| k["model"] == "faulty"));
}
