//! Issue 15, points 5 and 6, from outside: cross-site requests (Origin, Content-Type, CORS),
//! tokens in URLs, what `/ready` tells strangers, credentials in `/api/config`, the refusal to
//! listen openly without tokens, and backends probed once however many monitors watch.
//!
//! The servers decode with the scripted test double (nothing here transcribes). The LLM and
//! embedding endpoints are [`CountingBackend`], a NAMED TEST DOUBLE that answers
//! `GET /models` and `POST /embeddings` and counts every request: what is tested is who calls
//! the backends and how often, never what they answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{
    connect_ready, model_path, scratch_dir, start_server_without_whisper, test_config,
};

/// An OpenAI-compatible stand-in that counts requests per prefix and path
/// (`/llm/v1/models`, `/embed/v1/embeddings`…). FOR COUNTING ONLY: its vectors are a hash of
/// the text, not embeddings.
#[derive(Clone, Default)]
struct CountingBackend {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl CountingBackend {
    /// Serves on 127.0.0.1:0 on its own thread until the test binary exits.
    fn start() -> (Self, SocketAddr) {
        let backend = Self::default();
        let app = Router::new()
            .route("/{who}/v1/models", get(models))
            .route("/{who}/v1/embeddings", post(embeddings))
            .with_state(backend.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        (backend, rx.recv().unwrap())
    }

    fn count(&self, key: &str) -> usize {
        self.counts.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn hit(&self, key: String) {
        *self.counts.lock().unwrap().entry(key).or_insert(0) += 1;
    }
}

async fn models(State(b): State<CountingBackend>, UrlPath(who): UrlPath<String>) -> Json<Value> {
    b.hit(format!("{who}/models"));
    Json(json!({ "object": "list", "data": [{ "id": "counting", "object": "model" }] }))
}

async fn embeddings(
    State(b): State<CountingBackend>,
    UrlPath(who): UrlPath<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    b.hit(format!("{who}/embeddings"));
    let inputs = body["input"].as_array().cloned().unwrap_or_default();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let seed = text
                .as_str()
                .unwrap_or("")
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let vector: Vec<f32> = (0..8)
                .map(|i| 1.0 + ((seed >> i) & 0xff) as f32 / 255.0)
                .collect();
            json!({ "index": index, "embedding": vector })
        })
        .collect();
    Json(json!({ "data": data }))
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn sources(addr: SocketAddr) -> Vec<String> {
    let body: Value = reqwest::get(format!("http://{addr}/index"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("no sources list: {body}"))
        .iter()
        .map(|s| s["source"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_are_refused_and_cors_answers_only_listed_origins() {
    let (backend, backend_addr) = CountingBackend::start();
    let mut config = test_config();
    config.rag.enabled = true;
    config.rag.embed_url = format!("http://{backend_addr}/embed/v1");
    config.rag.store_dir = fresh_dir("hostile-access-store");
    config.server.allowed_origins = vec!["https://ops.example.kr".to_owned()];
    let addr = start_server_without_whisper(config);
    let http = reqwest::Client::new();
    let document =
        json!({ "text": "비상구는 250미터 간격입니다.", "metadata": { "source": "cross-site" } });
    assert!(sources(addr).await.is_empty(), "a fresh store");
    let embedded_before = backend.count("embed/embeddings");

    // What a cross-site <form> can send without asking: text/plain, url-encoded, no type.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = http
            .post(format!("http://{addr}/index"))
            .body(document.to_string());
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("application/json"), "{message}");
        eprintln!("[hostile_access] POST /index as {content_type:?}: 415 {message}");
    }
    // A browser on another site, even with the right type: 403 before anything runs.
    let response = http
        .post(format!("http://{addr}/index"))
        .header("origin", "https://evil.example")
        .json(&document)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
    let status = http
        .get(format!("http://{addr}/api/status"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "the Origin list covers reads too");
    assert!(sources(addr).await.is_empty(), "nothing was indexed");
    assert_eq!(
        backend.count("embed/embeddings"),
        embedded_before,
        "refused requests never reached the embedder"
    );

    // CORS preflight: answered for the listed origin, not for another.
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, format!("http://{addr}/index"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let allowed = preflight("https://ops.example.kr").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://ops.example.kr");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed_headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed_headers.contains("content-type") && allowed_headers.contains("authorization"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    eprintln!(
        "[hostile_access] preflight: listed origin {}, other origin {} without CORS headers",
        allowed.status(),
        refused.status()
    );

    // The listed origin's real request works and may be read by its page.
    let response = http
        .post(format!("http://{addr}/index"))
        .header("origin", "https://ops.example.kr")
        .json(&document)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://ops.example.kr"
    );
    assert_eq!(sources(addr).await, ["cross-site"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_tokens_only_on_ws_ready_tells_strangers_no_urls_and_config_hides_passwords() {
    let down = closed_port();
    let mut config = test_config();
    config.server.api_tokens = vec!["hostile-t0ken".to_owned()];
    // A configured but unreachable LLM, with credentials in its URL (one password holds '@').
    config.llm.enabled = true;
    config.llm.base_url = format!("http://sori:llm-p@ss@127.0.0.1:{down}/v1");
    config.cache.redis_url = Some(format!("redis://user:p@ss@127.0.0.1:{down}/0"));
    let addr = start_server_without_whisper(config);
    let http = reqwest::Client::new();

    // REST: the header only; the URL's token is refused with the way to send it.
    let response = http
        .get(format!("http://{addr}/api/status?token=hostile-t0ken"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_in_url", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let response = http
        .get(format!("http://{addr}/api/status"))
        .bearer_auth("hostile-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // /ws (and the page's EventSource stream), where browsers cannot set headers, take it.
    let (_ws, ready) = connect_ready(addr, "?token=hostile-t0ken").await;
    assert_eq!(ready["type"], "ready");
    let stream = http
        .get(format!(
            "http://{addr}/api/status/stream?token=hostile-t0ken"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);

    // /ready: the verdict and the states for anyone; details for a valid token only.
    let stranger = http
        .get(format!("http://{addr}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stranger.status(),
        200,
        "optional parts do not decide readiness"
    );
    let text = stranger.text().await.unwrap();
    eprintln!("[hostile_access] /ready without a token: {text}");
    for leak in ["http", "127.0.0.1", "error", "model", "p@ss", "refused"] {
        assert!(!text.contains(leak), "{leak} shown to a stranger: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["parts"]["llm"]["state"], "unavailable", "{body}");
    assert_eq!(body["parts"]["whisper"]["state"], "ready", "{body}");
    let trusted: Value = http
        .get(format!("http://{addr}/ready"))
        .bearer_auth("hostile-t0ken")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let llm = &trusted["parts"]["llm"];
    assert!(llm["error"].is_string(), "{trusted}");
    assert!(
        llm["base_url"]
            .as_str()
            .unwrap()
            .starts_with("http://sori:***@127.0.0.1"),
        "{trusted}"
    );
    assert!(!trusted.to_string().contains("p@ss"), "{trusted}");

    // /api/config: no password of any URL, even one holding '@'.
    let config = http
        .get(format!("http://{addr}/api/config"))
        .bearer_auth("hostile-t0ken")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in ["p@ss", "llm-p", "hostile-t0ken"] {
        assert!(!config.contains(secret), "{secret} shown: {config}");
    }
    assert!(
        config.contains(&format!("redis://user:***@127.0.0.1:{down}/0")),
        "{config}"
    );
    assert!(
        config.contains(&format!("http://sori:***@127.0.0.1:{down}/v1")),
        "{config}"
    );
}

/// Runs `sori serve --bind 0.0.0.0:0` with `env`, and no tokens nor allow_open inherited.
fn sori_serve(env: &[(&str, &str)]) -> std::process::Child {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sori"));
    command
        .args(["serve", "--bind", "0.0.0.0:0"])
        .env_remove("SORI_API_TOKENS")
        .env_remove("SORI_ALLOW_OPEN")
        .env("SORI_MODEL", model_path())
        .env("SORI_KEYWORDS", "false")
        .env("SORI_OUTPUTS_DIR", fresh_dir("hostile-access-serve"))
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command.spawn().expect("run target/release/sori")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_an_open_address_without_tokens_unless_told() {
    let refused = sori_serve(&[]).wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    eprintln!(
        "[hostile_access] sori serve --bind 0.0.0.0:0, no tokens: {}\n{said}",
        refused.status
    );
    assert!(!refused.status.success());
    for fix in ["SORI_API_TOKENS", "SORI_ALLOW_OPEN=true", "0.0.0.0"] {
        assert!(said.contains(fix), "the message names {fix}: {said}");
    }

    // Told it is meant to be open: it loads the model and listens.
    let mut open = sori_serve(&[("SORI_ALLOW_OPEN", "true")]);
    let stderr = open.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let port = line.split("0.0.0.0:").nth(1).and_then(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u16>().ok().filter(|p| *p != 0)
            });
            if let Some(port) = port {
                let _ = tx.send(port);
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(180));
    let health = match port {
        Ok(port) => reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .ok(),
        Err(_) => None,
    };
    let _ = open.kill();
    let _ = open.wait();
    let port = port.expect("with SORI_ALLOW_OPEN=true sori listens (logs its address)");
    let health = health.expect("/health answers");
    assert_eq!(health.status(), 200);
    eprintln!("[hostile_access] with SORI_ALLOW_OPEN=true it listened on 0.0.0.0:{port}");
}

/// Reads an SSE stream, counting `data:` events, until the task is aborted.
async fn watch_stream(response: reqwest::Response, events: Arc<Mutex<usize>>) {
    let mut body = response.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        let n = String::from_utf8_lossy(&chunk).matches("data: ").count();
        *events.lock().unwrap() += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_monitors_and_two_hundred_status_requests_probe_the_backends_as_one_would() {
    let (backend, backend_addr) = CountingBackend::start();
    let interval = Duration::from_millis(500);
    let mut config = test_config();
    config.server.monitor_interval_ms = interval.as_millis() as u64;
    // All 50 monitors come from 127.0.0.1: lift the per-address caps (tested elsewhere).
    config.server.max_connections_per_client = 0;
    config.server.max_connections_per_address = 0;
    config.llm.enabled = true;
    config.llm.base_url = format!("http://{backend_addr}/llm/v1");
    config.llm.model = Some("counting".to_owned());
    config.rag.enabled = true;
    config.rag.embed_url = format!("http://{backend_addr}/embed/v1");
    config.rag.store_dir = fresh_dir("hostile-access-probes");
    let addr = start_server_without_whisper(config);
    let http = reqwest::Client::new();
    // Settled: RAG connected, the probes running.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = http
            .get(format!("http://{addr}/api/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["rag"]["connected"] == true && status["llm"]["reachable"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backends never came up: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let llm_before = backend.count("llm/models");
    let embed_before = backend.count("embed/models");
    let started = Instant::now();
    let events = Arc::new(Mutex::new(0usize));
    let mut monitors = Vec::new();
    for _ in 0..50 {
        let response = http
            .get(format!("http://{addr}/api/status/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        monitors.push(tokio::spawn(watch_stream(response, Arc::clone(&events))));
    }
    let mut answered = 0;
    for i in 0..200 {
        let path = match i % 10 {
            0 => "/ready",
            1 => "/metrics",
            _ => "/api/status",
        };
        let response = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elapsed = started.elapsed();
    let llm_probes = backend.count("llm/models") - llm_before;
    let embed_probes = backend.count("embed/models") - embed_before;
    for monitor in monitors {
        monitor.abort();
    }
    let events = *events.lock().unwrap();
    // One prober: one probe per interval, plus one for a probe under way at each end.
    let one_monitor = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    eprintln!(
        "[hostile_access] {:.1} s, 50 SSE monitors ({events} events) + {answered} requests to \
         /api/status, /ready, /metrics: {llm_probes} LLM GET /models, {embed_probes} embedder \
         GET /models; one probe per {} ms would be {one_monitor}",
        elapsed.as_secs_f64(),
        interval.as_millis()
    );
    assert!(events >= 50 * 2, "the monitors were fed: {events} events");
    for (what, probes) in [("LLM", llm_probes), ("embedder", embed_probes)] {
        assert!(
            probes <= one_monitor + 2,
            "{what}: {probes} probes in {elapsed:?}, one monitor's worth is {one_monitor}"
        );
        assert!(probes >= 2, "{what} is still probed: {probes}");
    }
}
