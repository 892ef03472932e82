//! The live page: served files and the status stream over HTTP, then the whole page in a real
//! headless Chromium whose fake microphone plays the JFK clip, against a real llama.cpp server.

use std::time::{Duration, Instant};

use crate::support::servers::{LLM_TEST_TIMEOUT_MS, llama_server};
use crate::support::webdriver::Browser;
use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_are_served_with_the_contract_hooks() {
    let addr = server();
    let page = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for hook in [
        r#"id="start""#,
        r#"id="transcript""#,
        r#"id="monitor""#,
        r#"lang="ko""#,
    ] {
        assert!(html.contains(hook), "page lacks {hook}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must not load anything from elsewhere (no internet here)"
    );
    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("pcm-worklet.js", "text/javascript"),
        ("style.css", "text/css"),
    ] {
        let r = reqwest::get(format!("http://{addr}/static/{file}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{file}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    let missing = reqwest::get(format!("http://{addr}/static/nope.js"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("app.js")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_stream_pushes_json_at_least_every_two_seconds() {
    use futures_util::StreamExt;
    let addr = server();
    let response = reqwest::get(format!("http://{addr}/api/status/stream"))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events: Vec<(Instant, Value)> = Vec::new();
    while events.len() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("an event within 5 s")
            .expect("stream open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push((Instant::now(), serde_json::from_str(data).unwrap()));
            }
        }
    }
    for pair in events.windows(2) {
        assert!(pair[1].0 - pair[0].0 <= Duration::from_secs(2));
    }
    let status = &events[0].1;
    // The GPUs as NVML reports them on this machine (none, with the reason, on a CPU host).
    let gpu = sori::gpu::gpu_status();
    assert_eq!(status["gpu"]["available"], gpu.available, "{status}");
    assert_eq!(status["gpu"]["used_by_whisper"], gpu.used_by_whisper);
    let devices = status["gpu"]["devices"].as_array().expect("a device list");
    let shown: Vec<(&str, u64)> = devices
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap(),
                d["memory_total_mb"].as_u64().unwrap(),
            )
        })
        .collect();
    let reported: Vec<(&str, u64)> = gpu
        .devices
        .iter()
        .map(|d| (d.name.as_str(), d.memory_total_mb))
        .collect();
    assert_eq!(shown, reported, "{status}");
    if gpu.available {
        assert!(status["gpu"]["reason"].is_null(), "{status}");
    } else {
        assert!(status["gpu"]["reason"].as_str().unwrap().contains("NVML"));
    }
    for key in [
        "sessions",
        "max_sessions",
        "max_lag_ms",
        "decoder",
        "llm",
        "cache",
    ] {
        assert!(!status[key].is_null(), "status lacks {key}: {status}");
    }
}

/// The text of every final on the page, in order.
const FINALS_TEXT: &str = "return [...document.querySelectorAll('#transcript .final')].map(e => e.textContent).join(' ');";

/// Polls `check` every 250 ms until it returns true; after `limit`, fails showing the page.
async fn wait_for<F, Fut>(browser: &Browser, limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() > deadline {
            let mut page = String::new();
            for id in ["#conn", "#errors", "#transcript", "#monitor"] {
                page += &format!(
                    "\n{id}: {}",
                    browser
                        .text(id)
                        .await
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            browser
                .screenshot(&repo_root().join("target/e2e/failed.png"))
                .await;
            panic!("timed out waiting for {what}; the page shows:{page}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_with_the_jfk_clip_as_microphone_sees_transcript_keywords_and_monitor() {
    let llm = llama_server();
    let mut config = test_config();
    config.llm.enabled = true;
    config.llm.base_url = llm.base_url.clone();
    config.llm.timeout_ms = LLM_TEST_TIMEOUT_MS;
    config.stt.language = sori::protocol::Language::En;
    // One decoder thread beside the one-thread LLM server (two cores; see docs/benchmarks.md).
    config.stt.threads = 1;
    let addr = start_server(config);

    let browser = Browser::start(&data_file("jfk.wav")).await;
    browser.goto(&format!("http://{addr}/")).await;
    assert!(
        browser
            .text("#language option:checked")
            .await
            .contains("English"),
        "the server's default language (en here) is preselected"
    );
    browser.click("#start").await;

    wait_for(
        &browser,
        Duration::from_secs(120),
        "the clip's words",
        || async {
            // Finals only (partials are provisional); the VAD may split the sentence.
            let finals = browser.eval(FINALS_TEXT, serde_json::json!([])).await;
            sori::keywords::normalize(finals.as_str().unwrap_or_default())
                .contains("whatyoucandoforyourcountry")
        },
    )
    .await;
    wait_for(
        &browser,
        Duration::from_secs(90),
        "keyword chips",
        || async { browser.count("#transcript .keyword").await >= 1 },
    )
    .await;
    // The monitor shows the GPUs NVML reports here: each by name, or "no GPU".
    let gpus = sori::gpu::gpu_status();
    wait_for(&browser, Duration::from_secs(10), "the monitor", || async {
        let gpu = browser.text("#monitor #gpu-status").await;
        let llm = browser.text("#monitor #llm-status").await;
        let gpu_shown = if gpus.available {
            !gpu.contains("no GPU") && gpus.devices.iter().all(|d| gpu.contains(&d.name))
        } else {
            gpu.contains("no GPU")
        };
        gpu_shown && llm.contains("reachable") && !llm.contains("unreachable")
    })
    .await;

    // Every final is a `.final`; their text is the clip.
    let finals = browser.eval(FINALS_TEXT, serde_json::json!([])).await;
    let wer = sori::eval::wer(JFK_REFERENCE, finals.as_str().unwrap());
    eprintln!("page transcript: {finals} (WER {wer:.3})");
    assert!(wer <= 0.25, "the page shows the clip: WER {wer}, {finals}");
    let chips = browser
        .eval(
            "return [...document.querySelectorAll('#transcript .keyword')].map(e => e.textContent.trim());",
            serde_json::json!([]),
        )
        .await;
    eprintln!("keyword chips: {chips}");
    for chip in chips.as_array().unwrap() {
        let chip = sori::keywords::normalize(chip.as_str().unwrap());
        assert!(
            sori::keywords::normalize(JFK_REFERENCE).contains(&chip),
            "chip {chip} is not from the clip"
        );
    }

    let shot = repo_root().join("target/e2e/page.png");
    browser.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    eprintln!("screenshot: {}", shot.display());

    // Stopping ends the session cleanly.
    browser.click("#start").await;
    wait_for(
        &browser,
        Duration::from_secs(30),
        "the session to close",
        || async {
            let state = browser
                .eval(
                    "return document.getElementById('start').dataset.state;",
                    serde_json::json!([]),
                )
                .await;
            state == "idle"
        },
    )
    .await;
}
