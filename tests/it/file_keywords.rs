//! Keywords for files: `POST /api/transcribe?keywords=true` (and the form field) and
//! `sori transcribe --keywords` run the file through the same session driver and keyword
//! enricher as a live stream, with the real Whisper model and a real llama.cpp server.

use std::net::SocketAddr;
use std::process::Command;

use crate::support::servers::{LLM_TEST_TIMEOUT_MS, llama_server};
use crate::support::*;
use serde_json::Value;
use sori::keywords::normalize;

fn server_with_llm() -> SocketAddr {
    let llm = llama_server();
    let mut config = test_config();
    config.llm.enabled = true;
    config.llm.base_url = llm.base_url.clone();
    config.llm.timeout_ms = LLM_TEST_TIMEOUT_MS;
    config.stt.threads = 1;
    start_server(config)
}

fn jfk_form(extra: &[(&'static str, &'static str)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(data_file("jfk.wav")).unwrap())
            .file_name("jfk.wav"),
    );
    for (name, value) in extra {
        form = form.text(*name, *value);
    }
    form
}

/// Every segment has a `keywords` array, at least one keyword was found, and each keyword
/// occurs in its own segment's text.
fn assert_keywords_belong_to_their_segments(body: &Value) {
    let segments = body["segments"].as_array().expect("segments");
    assert!(!segments.is_empty(), "{body}");
    let mut found = 0;
    for segment in segments {
        assert_eq!(segment["type"], "final", "{segment}");
        let keywords = segment["keywords"]
            .as_array()
            .unwrap_or_else(|| panic!("segment without keywords: {segment}"));
        let text = normalize(segment["text"].as_str().unwrap());
        for k in keywords {
            let word = normalize(k["text"].as_str().unwrap());
            assert!(text.contains(&word), "{k} is not in {text}");
            assert!(k["category"].is_string() && k["label"].is_string(), "{k}");
            found += 1;
        }
    }
    assert!(found > 0, "no keywords at all: {body}");
    let wer = sori::eval::wer(JFK_REFERENCE, body["text"].as_str().unwrap());
    assert!(wer <= 0.10, "WER {wer}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_keywords_returns_each_segments_keywords() {
    let addr = server_with_llm();
    let url = format!("http://{addr}/api/transcribe?language=en&keywords=true");
    let response = reqwest::Client::new()
        .post(&url)
        .body(std::fs::read(data_file("jfk.wav")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_keywords_belong_to_their_segments(&body);

    // The same as form fields.
    let form = jfk_form(&[("language", "en"), ("keywords", "true")]);
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/transcribe"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_keywords_belong_to_their_segments(&body);

    // Without the option, segments carry no keywords (the JSON is as before).
    let form = jfk_form(&[("language", "en")]);
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/transcribe"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let segments = body["segments"].as_array().unwrap();
    assert!(
        segments.iter().all(|s| s.get("keywords").is_none()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_options_are_checked() {
    // The shared test server has keywords off.
    let addr = server();
    let client = reqwest::Client::new();
    let post = |query: &str| {
        client
            .post(format!("http://{addr}/api/transcribe?language=en&{query}"))
            .body(std::fs::read(data_file("jfk.wav")).unwrap())
            .send()
    };
    let response = post("keywords=perhaps").await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_option", "{body}");

    let response = post("keywords=true").await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "keywords_disabled", "{body}");

    let response = post("rag=true").await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rag_disabled", "{body}");
}

#[test]
fn cli_prints_each_segments_keywords() {
    let llm = llama_server();
    // Whisper and the LLM share two cores during tests: allow slow answers.
    let config = scratch_dir().join("file_keywords.toml");
    std::fs::write(&config, "[llm]\ntimeout_ms = 60000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sori"))
        .current_dir(repo_root())
        .env("SORI_MODEL", model_path())
        .env("SORI_LLM_BASE_URL", &llm.base_url)
        .env("RUST_LOG", "warn")
        .arg("--config")
        .arg(&config)
        .args(["transcribe", "--language", "en", "--keywords"])
        .arg(data_file("jfk.wav"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let keyword_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("    keywords: "))
        .collect();
    assert!(!keyword_lines.is_empty(), "{stdout}");
    // Each keyword line follows its segment's text and names words of it.
    for (i, line) in lines.iter().enumerate() {
        if let Some(list) = line.strip_prefix("    keywords: ") {
            let text = normalize(lines[i - 1]);
            for item in list.split(" · ") {
                let (_, word) = item.split_once(": ").expect("label: keyword");
                assert!(text.contains(&normalize(word)), "{word} not in {text}");
            }
        }
    }
    let text: String = lines
        .iter()
        .filter(|l| !l.starts_with("    keywords: "))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let wer = sori::eval::wer(JFK_REFERENCE, &text);
    assert!(wer <= 0.10, "WER {wer}: {text}");
}
