//! `GET /metrics` after a real session (the JFK clip over `/ws`, the real model), checked with
//! Prometheus's own parser and linter (`promtool check metrics`); `GET /ready` with the core
//! ready and the optional parts named, switched off or down.
//!
//! Counters are process-wide and other tests in this binary may run at the same time, so the
//! checks compare values before and after the session.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::support::*;
use serde_json::Value;

const INSTALL_PROMTOOL: &str = "install it with: apt-get install -y prometheus";

/// Fails (never skips) when promtool is missing.
fn require_promtool() {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool (Debian's prometheus package) is needed to check /metrics; {INSTALL_PROMTOOL} \
         (scripts/install-deps.sh does)"
    );
}

/// `/metrics` and its content type.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.text().await.unwrap(), content_type)
}

/// The value of one series, written as it appears before the value (`name{labels}`).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

fn required(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("{series} is missing from /metrics:\n{text}"))
}

/// Runs `promtool check metrics` on `text`; returns its exit status and everything it said.
fn promtool_check(text: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool does not start ({e}); {INSTALL_PROMTOOL}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_session_shows_in_metrics_that_promtool_accepts() {
    require_promtool();
    let addr = server();
    let (before, _) = scrape(addr).await;

    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    assert!(!finals(&messages).is_empty(), "no final: {messages:?}");

    let (after, content_type) = scrape(addr).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    let delta = |series: &str| required(&after, series) - value(&before, series).unwrap_or(0.0);
    assert!(
        delta("sori_sessions_total{protocol=\"sori\"}") >= 1.0,
        "session not counted"
    );
    let audio = delta("sori_audio_received_seconds_total");
    assert!(audio > 10.0, "JFK is 11 s of audio; counted {audio} s");
    assert!(
        delta("sori_decode_seconds_count") >= 1.0,
        "no decode in the histogram"
    );
    assert!(delta("sori_decode_real_time_factor_count") >= 1.0);
    assert!(delta("sori_decodes_total{outcome=\"ok\"}") >= 1.0);
    assert!(delta("sori_segments_final_total") >= 1.0);
    // Headroom for a load balancer: final latency from the last word, decoder busy time.
    assert!(delta("sori_final_latency_seconds_count") >= 1.0);
    assert!(required(&after, "sori_final_latency_p95_seconds") > 0.0);
    assert!(delta("sori_decode_busy_seconds_total") > 0.0);
    assert!(required(&after, "sori_decode_utilisation") > 0.0);
    required(&after, "sori_decode_partials_preempted_total");
    let status: Value = reqwest::get(format!("http://{addr}/api/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headroom = &status["headroom"];
    assert!(headroom["sessions_free"].as_u64().is_some(), "{status}");
    assert!(
        headroom["decoder_utilisation"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    assert!(
        headroom["final_latency_p95_s"].as_f64().unwrap() > 0.0,
        "{status}"
    );
    assert_eq!(
        required(&after, "sori_decode_seconds_bucket{le=\"+Inf\"}"),
        required(&after, "sori_decode_seconds_count"),
        "+Inf bucket and count disagree"
    );
    // Gauges of this server, and series that exist before their first event.
    assert_eq!(required(&after, "sori_decode_workers"), 1.0);
    for series in [
        "sori_sessions_active",
        "sori_decode_queue_depth",
        "sori_session_lag_max_seconds",
        "sori_segments_filtered_total{reason=\"no_speech\"}",
        "sori_llm_errors_total{purpose=\"keywords\",kind=\"timeout\"}",
        "sori_rag_request_seconds_count{operation=\"search\"}",
    ] {
        required(&after, series);
    }

    // That promtool rejects what it should is checked apart from the suite
    // (scripts/check-tools.sh promtool).
    let (status, said) = promtool_check(&after);
    assert!(
        status.success() && said.trim().is_empty(),
        "promtool check metrics: {status}, {said}\n--- metrics ---\n{after}"
    );

    // Every metric is documented.
    let docs = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    for family in after.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not described in docs/operations.md"
        );
    }
}

async fn ready(addr: SocketAddr) -> (u16, Value) {
    let response = reqwest::get(format!("http://{addr}/ready")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_the_model_is_loaded_naming_the_optional_parts() {
    let (status, body) = ready(server()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["stopping"], false);
    let whisper = &body["parts"]["whisper"];
    assert_eq!(whisper["state"], "ready", "{body}");
    assert_eq!(whisper["required"], true);
    assert_eq!(whisper["workers"], 1);
    assert!(!whisper["model"].as_str().unwrap_or_default().is_empty());
    // The test configuration switches every optional part off.
    for part in ["llm", "redis", "rag"] {
        assert_eq!(body["parts"][part]["state"], "disabled", "{part}: {body}");
        assert_eq!(body["parts"][part]["required"], false);
    }
    let health = reqwest::get(format!("http://{}/health", server()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A server whose optional parts are all configured and all down: the LLM, Redis and the
/// embedding endpoint point at a closed port. Shared by the tests below.
fn degraded_server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut config = test_config();
        // The small model, one thread: beside the shared server, on two cores.
        config.stt.model = repo_root().join("models/ggml-tiny.en.bin");
        assert!(
            config.stt.model.is_file(),
            "run `sori model fetch` (it writes ggml-tiny.en.bin)"
        );
        config.stt.threads = 1;
        config.llm.enabled = true;
        config.llm.base_url = format!("http://127.0.0.1:{closed}/v1");
        // A named model: keyword calls go straight to the chat endpoint.
        config.llm.model = Some("absent-model".to_owned());
        config.cache.redis_url = Some(format!("redis://127.0.0.1:{closed}"));
        config.rag.enabled = true;
        config.rag.embed_url = format!("http://127.0.0.1:{closed}/v1");
        config.rag.store_dir = scratch_dir().join("metrics-ready-store");
        start_server(config)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_with_every_optional_part_down_names_each_and_stays_200() {
    let (status, body) = ready(degraded_server()).await;
    assert_eq!(
        status, 200,
        "optional parts do not decide readiness: {body}"
    );
    assert_eq!(body["parts"]["whisper"]["state"], "ready");
    for part in ["llm", "redis", "rag"] {
        let p = &body["parts"][part];
        assert_eq!(p["state"], "unavailable", "{part}: {body}");
        assert_eq!(p["required"], false);
        assert!(p["error"].is_string(), "{part} says why: {body}");
    }
    assert!(
        body["parts"]["llm"]["base_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_calls_to_a_down_llm_are_timed_and_counted_as_errors() {
    let addr = degraded_server();
    let (before, _) = scrape(addr).await;
    let (mut ws, ready) = connect_ready(addr, "?language=en&keywords=true").await;
    assert_eq!(ready["options"]["keywords"], true);
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    assert!(!finals(&messages).is_empty(), "no final: {messages:?}");

    let (after, _) = scrape(addr).await;
    let delta = |series: &str| required(&after, series) - value(&before, series).unwrap_or(0.0);
    assert!(
        delta("sori_llm_request_seconds_count{purpose=\"keywords\"}") >= 1.0,
        "no keyword request timed"
    );
    let errors: f64 = ["connection", "timeout", "server", "circuit_open"]
        .iter()
        .map(|kind| {
            let series = format!("sori_llm_errors_total{{purpose=\"keywords\",kind=\"{kind}\"}}");
            delta(&series)
        })
        .sum();
    assert!(errors >= 1.0, "the failed keyword calls are not counted");
    // The keyword cache was asked first (and missed: Redis is down too).
    assert!(required(&after, "sori_cache_misses_total{namespace=\"keywords\"}") >= 1.0);
}
