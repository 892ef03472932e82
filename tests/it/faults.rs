//! Parts failing under a live session, for real: the llama.cpp server and Redis are killed
//! (SIGKILL) and restarted mid-session, and a client vanishes mid-utterance. Transcription
//! never stops, the parts recover by themselves, and no final a client was sent is missing
//! from its transcript file.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::servers::{LLM_TEST_TIMEOUT_MS, RedisServer, llama_server, own_llama_server};
use crate::support::*;
use serde_json::{Value, json};
use sori::config::Config;

fn wav_pcm(path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    // espeak's wav after sox: a 44-byte header, then s16 mono 16 kHz.
    bytes[44..].to_vec()
}

/// Three different English sentences, so no phase can be answered from the keyword cache.
fn sentences() -> [Vec<u8>; 3] {
    [
        (
            "fault-a",
            "The river bridge on highway seven is closed for repairs.",
        ),
        (
            "fault-b",
            "An ambulance arrived at the Seoul station tunnel entrance.",
        ),
        (
            "fault-c",
            "The budget committee approved new guardrails for the airport road.",
        ),
    ]
    .map(|(name, text)| wav_pcm(&espeak(name, "en-us", text)))
}

fn keyword_server(llm_url: &str, tweak: impl FnOnce(&mut Config)) -> SocketAddr {
    let mut config = test_config();
    config.llm.enabled = true;
    config.llm.base_url = llm_url.to_owned();
    config.llm.timeout_ms = LLM_TEST_TIMEOUT_MS;
    config.llm.retry_after_ms = 300;
    config.stt.threads = 1;
    tweak(&mut config);
    start_server(config)
}

/// Sends one utterance and a flush, then reads until its `keywords` event (or an LLM error)
/// arrived; returns what came.
async fn speak(ws: &mut Ws, pcm: &[u8]) -> Vec<Value> {
    send_pcm(ws, pcm, 32000, 100, false).await;
    send_json(ws, json!({"type": "flush"})).await;
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let message = next_json(ws).await.expect("the session stays open");
        let done = message["type"] == "keywords"
            || (message["type"] == "error" && message["code"] == "llm_unavailable");
        seen.push(message);
        if done {
            return seen;
        }
    }
}

fn of_type<'a>(messages: &'a [Value], kind: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_llm_killed_and_restarted_mid_session_costs_keywords_never_finals() {
    let [a, b, c] = sentences();
    let mut llm = own_llama_server();
    let addr = keyword_server(&llm.base_url, |_| {});
    let (mut ws, _) = connect_ready(addr, "?language=en").await;

    let up = speak(&mut ws, &a).await;
    assert_eq!(of_type(&up, "final").len(), 1, "{up:?}");
    assert_eq!(of_type(&up, "keywords").len(), 1, "{up:?}");

    llm.kill();
    let down = speak(&mut ws, &b).await;
    let text = final_text(&down).to_lowercase();
    assert!(
        text.contains("tunnel"),
        "finals go on while the LLM is down: {down:?}"
    );
    let outage = errors(&down);
    assert_eq!(outage.len(), 1, "{down:?}");
    assert_eq!(outage[0]["code"], "llm_unavailable");

    llm.restart();
    tokio::time::sleep(Duration::from_millis(700)).await; // past the breaker's rest
    let back = speak(&mut ws, &c).await;
    assert!(
        final_text(&back).to_lowercase().contains("budget"),
        "{back:?}"
    );
    let keywords = of_type(&back, "keywords");
    assert_eq!(keywords.len(), 1, "keywords resume by themselves: {back:?}");
    assert_eq!(keywords[0]["cached"], false);
    assert!(errors(&back).is_empty(), "one error per outage: {back:?}");
    let closing = stop_and_collect(&mut ws).await;
    assert_eq!(closing.last().unwrap()["type"], "closed");
}

async fn cache_connected(addr: SocketAddr) -> bool {
    let status: Value = reqwest::get(format!("http://{addr}/cache/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["connected"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_session_degrades_to_no_cache_and_comes_back() {
    let [a, b, _] = sentences();
    let mut redis = RedisServer::start();
    let llm = llama_server();
    let addr = keyword_server(&llm.base_url, |c| c.cache.redis_url = Some(redis.url()));
    let (mut ws, _) = connect_ready(addr, "?language=en").await;

    let first = speak(&mut ws, &a).await;
    assert_eq!(of_type(&first, "keywords")[0]["cached"], false);

    redis.kill();
    let during = speak(&mut ws, &b).await;
    assert!(
        final_text(&during).to_lowercase().contains("tunnel"),
        "{during:?}"
    );
    assert_eq!(
        of_type(&during, "keywords").len(),
        1,
        "computed without a cache"
    );
    assert!(
        errors(&during).is_empty(),
        "Redis down is not the client's error: {during:?}"
    );
    assert!(!cache_connected(addr).await);

    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cache_connected(addr).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The restarted Redis is empty; the next answer is computed and stored in it again.
    let again = speak(&mut ws, &a).await;
    assert_eq!(of_type(&again, "keywords")[0]["cached"], false, "{again:?}");
    let status: Value = reqwest::get(format!("http://{addr}/cache/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status["current_size"].as_u64().unwrap() >= 1, "{status}");
    let closing = stop_and_collect(&mut ws).await;
    assert_eq!(closing.last().unwrap()["type"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_utterance_finds_every_final_it_was_sent_in_its_file() {
    let mut config = test_config();
    let outputs = scratch_dir().join("killed-client-outputs");
    let _ = std::fs::remove_dir_all(&outputs);
    config.server.outputs_dir = outputs.clone();
    config.stt.threads = 1;
    let addr = start_server(config);
    let (ws, ready) = connect_ready(addr, "?language=en&partials=false").await;
    let id = ready["session_id"].as_str().unwrap().to_owned();

    // Stream in real time in the background; read until two finals came, then vanish in
    // the middle of the third utterance (no close frame: the process is gone).
    let pcm = to_s16le(&jfk_16k());
    let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
    let sender = tokio::spawn(async move {
        use futures_util::SinkExt;
        let started = tokio::time::Instant::now();
        for (i, frame) in pcm.chunks(3200).enumerate() {
            let _ = sink
                .send(tokio_tungstenite::tungstenite::Message::Binary(
                    frame.to_vec().into(),
                ))
                .await;
            tokio::time::sleep_until(started + Duration::from_millis(100 * (i as u64 + 1))).await;
        }
        sink
    });
    let mut received = Vec::new();
    while received.len() < 2 {
        let message = futures_util::StreamExt::next(&mut stream)
            .await
            .expect("open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = message {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "final" {
                received.push(v);
            }
        }
    }
    sender.abort();
    drop(stream);
    // The server is fine; the old socket is gone.
    drop(connect_ready(addr, "").await);

    // The session notices, finishes and writes; every final the client saw is in the file.
    let path = outputs.join(format!("{id}.jsonl"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = written
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let all_there = received.iter().all(|f| {
            lines
                .iter()
                .any(|l| l["segment_id"] == f["segment_id"] && l["text"] == f["text"])
        });
        if all_there && outputs.join(format!("{id}.srt")).is_file() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "finals missing from {}: sent {received:?}, file: {written}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
