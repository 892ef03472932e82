//! Who gets in and for how long: API tokens and the Origin allow-list, the session and
//! per-client limits (close 1013), idle and length limits, the decode backlog cap, and a
//! graceful SIGTERM of the real binary mid-utterance.

use std::time::Duration;

use crate::support::servers::free_port;
use crate::support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn connect_with(addr: std::net::SocketAddr, query: &str, origin: Option<&str>) -> Ws {
    let mut request = format!("ws://{addr}/ws{query}")
        .into_client_request()
        .unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .expect("ws connects")
        .0
}

fn first_error(messages: &[Value]) -> &Value {
    messages
        .iter()
        .find(|m| m["type"] == "error")
        .unwrap_or_else(|| panic!("no error event in {messages:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_the_api_and_the_socket_and_never_show() {
    let mut config = test_config();
    config.server.api_tokens = vec!["first-t0ken".to_owned(), "second-t0ken".to_owned()];
    config.server.allowed_origins = vec!["https://ops.example.kr".to_owned()];
    let addr = start_server(config);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{addr}{path}"));

    let response = get("/api/config").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_required", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );

    let body: Value = get("/api/config")
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "token_invalid", "{body}");

    let response = get("/api/config")
        .bearer_auth("second-t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("t0ken"), "a token is shown: {text}");
    assert!(text.contains("***"), "{text}");
    // REST takes the token from the header only (tests/it/hostile_access.rs).
    let response = get("/api/config?token=first-t0ken").send().await.unwrap();
    assert_eq!(response.status(), 401);
    // Probes and the page stay open.
    for path in ["/health", "/", "/static/app.js"] {
        assert_eq!(get(path).send().await.unwrap().status(), 200, "{path}");
    }
    let upload = http
        .post(format!("http://{addr}/api/transcribe"))
        .body(std::fs::read(data_file("jfk.wav")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 401, "uploads need the token too");

    // The socket: refused with an error event and close 1008, admitted with ?token=.
    let mut ws = connect(addr, "").await;
    let (messages, close) = until_close(&mut ws).await;
    assert_eq!(first_error(&messages)["code"], "token_required");
    assert_eq!(close.unwrap().0, 1008);
    let mut ws = connect(addr, "?token=wrong").await;
    let (messages, close) = until_close(&mut ws).await;
    assert_eq!(first_error(&messages)["code"], "token_invalid");
    assert_eq!(close.unwrap().0, 1008);
    let (mut ws, _) = connect_ready(addr, "?token=first-t0ken&language=en").await;
    let (messages, close) = {
        send_json(&mut ws, json!({"type": "stop"})).await;
        until_close(&mut ws).await
    };
    assert!(messages.iter().any(|m| m["type"] == "closed"));
    assert_eq!(close.unwrap().0, 1000);

    // A browser page from another site is refused; the allowed one gets in.
    let mut ws = connect_with(addr, "?token=first-t0ken", Some("https://evil.example")).await;
    let (messages, close) = until_close(&mut ws).await;
    assert_eq!(first_error(&messages)["code"], "origin_not_allowed");
    assert_eq!(close.unwrap().0, 1008);
    let mut ws = connect_with(addr, "?token=first-t0ken", Some("https://ops.example.kr")).await;
    let ready = next_json(&mut ws).await.unwrap();
    assert_eq!(ready["type"], "ready", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_limits_are_refused_with_1013() {
    let mut config = test_config();
    config.server.max_sessions = 3;
    config.server.max_connections_per_client = 2;
    let addr = start_server(config);

    let (first, _) = connect_ready(addr, "").await;
    let (_second, _) = connect_ready(addr, "").await;
    let mut third = connect(addr, "").await;
    let (messages, close) = until_close(&mut third).await;
    let error = first_error(&messages);
    assert_eq!(error["code"], "too_many_connections", "{error}");
    assert!(error["message"].as_str().unwrap().contains("127.0.0.1"));
    assert_eq!(close.unwrap().0, 1013);

    // A closed connection gives its place back.
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_again, _) = connect_ready(addr, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_server_full_gets_1013_too() {
    let mut config = test_config();
    config.server.max_sessions = 1;
    let addr = start_server(config);
    let (_only, _) = connect_ready(addr, "").await;
    let mut next = connect(addr, "").await;
    let (messages, close) = until_close(&mut next).await;
    assert_eq!(first_error(&messages)["code"], "server_full");
    let (code, reason) = close.unwrap();
    assert_eq!(code, 1013);
    assert!(reason.contains("try again"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_unless_kept_alive_and_long_ones_end_with_their_final() {
    let mut config = test_config();
    config.server.idle_timeout_s = 1;
    config.server.max_session_s = 3;
    config.stt.threads = 1;
    let addr = start_server(config);

    // Kept alive past the idle limit with keepalive messages.
    let (mut alive, _) = connect_ready(addr, "").await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        send_json(&mut alive, json!({"type": "keepalive"})).await;
    }
    // Silent: ended after a second, with a reason, `closed` and a normal close.
    let (mut idle, _) = connect_ready(addr, "").await;
    let started = std::time::Instant::now();
    let (messages, close) = until_close(&mut idle).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(first_error(&messages)["code"], "idle_timeout");
    assert!(messages.iter().any(|m| m["type"] == "closed"));
    assert_eq!(close.unwrap(), (1000, "idle".to_owned()));

    // The kept-alive one is still open and answers a stop normally.
    send_json(&mut alive, json!({"type": "stop"})).await;
    let (messages, close) = until_close(&mut alive).await;
    assert!(
        messages.iter().any(|m| m["type"] == "closed"),
        "{messages:?}"
    );
    assert_eq!(close.unwrap().0, 1000);

    // Streaming past the length limit: the speech so far still comes back as a final.
    let (mut long, _) = connect_ready(addr, "?language=en").await;
    let pcm = to_s16le(&jfk_16k());
    // 2.5 s of speech, then quiet: the length limit (3 s) comes before the idle one (3.5 s).
    send_pcm(&mut long, &pcm[..32000 * 5 / 2], 32000, 100, true).await;
    let (messages, close) = until_close(&mut long).await;
    assert_eq!(first_error(&messages)["code"], "session_too_long");
    let text = final_text(&messages).to_lowercase();
    assert!(
        text.contains("fellow"),
        "the cut utterance's final: {messages:?}"
    );
    assert_eq!(close.unwrap().1, "session length limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_faster_than_decoding_is_told_and_keeps_its_finals() {
    let mut config = test_config();
    config.server.max_backlog_s = 8.0;
    config.stt.threads = 1;
    config.vad.silence_ms = 300;
    let addr = start_server(config);
    let (mut ws, _) = connect_ready(addr, "?language=en&partials=false").await;
    // Six JFK clips (66 s) at once: each clip's pauses end utterances, which pile up.
    let pcm = to_s16le(&jfk_16k());
    let mut backlog_errors = 0;
    for _ in 0..6 {
        send_pcm(&mut ws, &pcm, 32000, 500, false).await;
    }
    send_json(&mut ws, json!({"type": "stop"})).await;
    let (messages, close) = until_close(&mut ws).await;
    for m in &messages {
        if m["type"] == "error" {
            assert_eq!(m["code"], "backlog_full", "{m}");
            assert!(m["message"].as_str().unwrap().contains("real time"));
            backlog_errors += 1;
        }
    }
    assert!(backlog_errors > 0, "no backlog_full error: {messages:?}");
    let finals = finals(&messages);
    assert!(
        !finals.is_empty(),
        "the queued finals still come: {messages:?}"
    );
    assert!(final_text(&messages).to_lowercase().contains("country"));
    // Refused frames are not counted as received.
    let summary = &messages.last().unwrap()["summary"];
    let accepted = summary["audio_seconds"].as_f64().unwrap();
    assert!(
        accepted > 8.0 && accepted < 66.0 - 0.5 * backlog_errors as f64 + 1.0,
        "{summary}"
    );
    assert_eq!(close.unwrap().0, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_utterance_sends_and_writes_the_last_final_then_exits_0() {
    let port = free_port();
    let outputs = scratch_dir().join("sigterm-outputs");
    let _ = std::fs::remove_dir_all(&outputs);
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_sori"))
        .arg("serve")
        .env("SORI_BIND", format!("127.0.0.1:{port}"))
        .env("SORI_MODEL", model_path())
        .env("SORI_OUTPUTS_DIR", &outputs)
        .env("SORI_KEYWORDS", "false")
        .env("SORI_RAG", "false")
        .env("SORI_THREADS", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sori serve");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while reqwest::get(format!("http://{addr}/health")).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "sori serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (mut ws, ready) = connect_ready(addr, "?language=en&partials=false").await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    // The first 2.5 s of JFK: mid-sentence, so the utterance is still open.
    let pcm = to_s16le(&jfk_16k());
    send_pcm(&mut ws, &pcm[..32000 * 5 / 2], 32000, 100, true).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let (messages, close) = until_close(&mut ws).await;
    let text = final_text(&messages).to_lowercase();
    assert!(
        text.contains("fellow"),
        "the open utterance's final: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m["type"] == "closed"),
        "{messages:?}"
    );
    assert_eq!(close.unwrap().0, 1001, "going away");
    // New connections are refused while it stops.
    assert!(reqwest::get(format!("http://{addr}/health")).await.is_err());

    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "sori exited with {exit}");
    let jsonl = std::fs::read_to_string(outputs.join(format!("{session_id}.jsonl")))
        .expect("the session's transcript file");
    assert!(jsonl.to_lowercase().contains("fellow"), "{jsonl}");
}
