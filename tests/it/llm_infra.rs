//! sori's keywords request against the real servers the tests use, and the test harness's
//! own guarantees: the request `sori::keywords` builds (prompt, worked example, JSON schema),
//! answered by llama.cpp's llama-server in Korean and English within that schema and parsed by
//! async-openai as the product parses it; the harness's Redis (outage and restart on the same
//! port, dying with the test process); and every mode of the fault-injection endpoint.
//!
//! What only the outside tools do — llama-server enforcing a schema against a contrary prompt,
//! Redis's own replies and persistence, promtool rejecting bad input — is not sori's behaviour
//! and is checked apart from this suite by `scripts/check-tools.sh`.

use std::io::ErrorKind;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::faulty_llm::{FAULTY_MODEL, Fault, FaultyLlm};
use crate::support::servers::{RedisServer, Resp, llama_server, redis_command};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::CreateChatCompletionRequest;
use serde_json::{Value, json};
use sori::cache::Cache;
use sori::config::LlmConfig;
use sori::keywords::KeywordExtractor;

const KOREAN: &str = "내일 오전 9시 서울역 앞에서 교통사고 대책 회의가 열립니다";
const ENGLISH: &str = "The quarterly budget review meeting moves to Friday at the Seoul office.";

/// The keywords request sori sends for `segment`, built by the production extractor with the
/// server's default settings (the endpoint's address plays no part in the request).
fn keywords_request(model: &str, segment: &str) -> CreateChatCompletionRequest {
    let extractor: Arc<KeywordExtractor> = KeywordExtractor::new(
        &LlmConfig::default(),
        Cache::memory(16),
        Duration::from_secs(60),
    );
    extractor
        .request(model, segment)
        .expect("the production request builds")
}

/// The same request as the JSON body that goes over the wire.
fn keywords_body(model: &str, segment: &str) -> Value {
    serde_json::to_value(keywords_request(model, segment)).expect("a JSON request")
}

/// Parses `content` and checks it against what the production schema allows: only
/// `"keywords"`, each keyword exactly `text` (1–60 characters) and `category` (one of the
/// configured ids), at most `max_keywords` of them. Returns (text, category) pairs.
fn schema_valid_keywords(content: &str) -> Result<Vec<(String, String)>, String> {
    let config = LlmConfig::default();
    let value: Value = serde_json::from_str(content).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("not an object")?;
    if object.len() != 1 {
        return Err(format!(
            "expected only \"keywords\", got {:?}",
            object.keys()
        ));
    }
    let list = object
        .get("keywords")
        .and_then(Value::as_array)
        .ok_or("\"keywords\" is not an array")?;
    if list.len() > config.max_keywords {
        return Err(format!(
            "{} keywords, more than {}",
            list.len(),
            config.max_keywords
        ));
    }
    list.iter()
        .map(|item| {
            let item = item.as_object().ok_or("a keyword is not an object")?;
            match (item.get("text"), item.get("category"), item.len()) {
                (Some(Value::String(text)), Some(Value::String(category)), 2)
                    if (1..=60).contains(&text.chars().count())
                        && config.categories.iter().any(|c| &c.id == category) =>
                {
                    Ok((text.clone(), category.clone()))
                }
                _ => Err(format!("bad keyword {item:?}")),
            }
        })
        .collect()
}

/// An HTTP client. The crate's reqwest has rustls without a built-in crypto provider (the
/// `rustls-no-provider` feature async-openai is built with), so install ring's first.
fn http() -> reqwest::Client {
    sori::keywords::install_tls_provider();
    reqwest::Client::new()
}

async fn get_json(url: String) -> Value {
    let response = http().get(&url).send().await.expect("GET answers");
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.expect("a JSON body")
}

async fn post_chat(
    base_url: &str,
    body: &Value,
    timeout: Duration,
) -> reqwest::Result<reqwest::Response> {
    http()
        .post(format!("{base_url}/chat/completions"))
        .json(body)
        .timeout(timeout)
        .send()
        .await
}

// ------------------------------------------------------------------------------ llama-server

/// The raw answer to sori's keywords request for `sentence`: within the production schema,
/// non-empty, and at least one keyword is a phrase of the sentence (the 0.5B model is weak,
/// but it does copy phrases from its input).
async fn assert_keywords_for(sentence: &str) {
    let server = llama_server();
    let body = keywords_body(&server.model, sentence);
    let response = post_chat(&server.base_url, &body, Duration::from_secs(180))
        .await
        .expect("llama-server answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "chat completion failed: {text}");
    let completion: Value = serde_json::from_str(&text).expect("a JSON completion");
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no message content: {completion}"));
    let keywords = schema_valid_keywords(content)
        .unwrap_or_else(|why| panic!("schema violated ({why}): {content}"));
    assert!(
        !keywords.is_empty(),
        "no keywords for {sentence:?}: {content}"
    );
    let lower = sentence.to_lowercase();
    assert!(
        keywords
            .iter()
            .any(|(text, _)| !text.trim().is_empty() && lower.contains(&text.to_lowercase())),
        "no keyword is a phrase of {sentence:?}: {content}"
    );
}

#[tokio::test]
async fn llama_server_answers_sori_s_korean_request_within_its_schema() {
    assert_keywords_for(KOREAN).await;
}

#[tokio::test]
async fn llama_server_answers_sori_s_english_request_within_its_schema() {
    assert_keywords_for(ENGLISH).await;
}

/// sori's keywords request sent with async-openai (which parses responses strictly), as the
/// product sends it; returns the message content.
async fn async_openai_content(base_url: &str, model: &str, user: &str) -> String {
    sori::keywords::install_tls_provider();
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(base_url)
            .with_api_key("unused"),
    );
    let response = client
        .chat()
        .create(keywords_request(model, user))
        .await
        .unwrap_or_else(|e| panic!("async-openai call to {base_url} failed: {e}"));
    response.choices[0]
        .message
        .content
        .clone()
        .expect("message content")
}

/// async-openai accepts what llama-server and the fault-injection endpoint answer to sori's
/// request.
#[tokio::test]
async fn async_openai_parses_llama_server_and_faulty_llm_completions() {
    let server = llama_server();
    let content = async_openai_content(&server.base_url, &server.model, KOREAN).await;
    schema_valid_keywords(&content).unwrap_or_else(|why| panic!("{why}: {content}"));

    let llm = FaultyLlm::start(Fault::SchemaViolation).await;
    let content = async_openai_content(&llm.base_url(), FAULTY_MODEL, KOREAN).await;
    assert_eq!(content, r#"{"words": 3}"#);
    llm.set_fault(None);
    let content = async_openai_content(&llm.base_url(), FAULTY_MODEL, ENGLISH).await;
    assert_eq!(
        schema_valid_keywords(&content).unwrap(),
        vec![("The".to_owned(), "topic".to_owned())]
    );
}

// ------------------------------------------------------------------------------ Redis

/// The harness's outage and recovery, which the cache and fault tests build on: `kill` takes
/// Redis down at once (connections refused; idempotent), `restart` brings it back on the same
/// port, and dropping the handle stops it.
#[test]
fn redis_harness_kills_restarts_on_the_same_port_and_stops_when_dropped() {
    let pong = || Resp::Simple("PONG".into());
    let mut redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.command(&["PING"]).unwrap(), pong());

    let port = redis.port();
    redis.kill();
    let refused = redis
        .command(&["PING"])
        .expect_err("a killed server must not answer");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    redis.kill(); // idempotent

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["PING"]).unwrap(), pong());

    let addr = redis.addr();
    drop(redis);
    let refused = redis_command(addr, &["PING"]).expect_err("a dropped server must not answer");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
}

const CHILD_ENV: &str = "SORI_TEST_REDIS_CHILD";

/// Runs this test again in a child process that starts Redis and exits without any destructor
/// (as a test binary does with its statics); the watchdog must take Redis down with it.
#[test]
fn redis_dies_with_the_test_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let redis = RedisServer::start();
        println!("REDIS_PORT={}", redis.port());
        std::mem::forget(redis);
        std::process::exit(0);
    }
    // This test's name in the test binary: its module path without the crate.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::redis_dies_with_the_test_process");
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let port: u16 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("REDIS_PORT="))
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the child printed no port: {stdout}\n{}",
                String::from_utf8_lossy(&child.stderr)
            )
        });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while redis_command(addr, &["PING"]).is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server on port {port} outlived its test process by 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------ fault injection

fn chat_body(user: &str) -> Value {
    keywords_body(FAULTY_MODEL, user)
}

#[tokio::test]
async fn faulty_llm_lists_its_model_in_every_mode() {
    let llm = FaultyLlm::start(Fault::CloseConnection).await;
    for fault in [Some(Fault::CloseConnection), Some(Fault::Hang), None] {
        llm.set_fault(fault);
        let models = get_json(format!("{}/models", llm.base_url())).await;
        assert_eq!(models["data"][0]["id"], "faulty", "{fault:?}: {models}");
    }
    assert_eq!(llm.requests(), 0, "model listings are not chat requests");
}

#[tokio::test]
async fn faulty_llm_hang_never_answers() {
    let llm = FaultyLlm::start(Fault::Hang).await;
    let started = Instant::now();
    let error = post_chat(
        &llm.base_url(),
        &chat_body(KOREAN),
        Duration::from_millis(1500),
    )
    .await
    .expect_err("a hanging endpoint must not answer");
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(llm.requests(), 1);
}

#[tokio::test]
async fn faulty_llm_http500_sends_a_json_error() {
    let llm = FaultyLlm::start(Fault::Http500).await;
    let response = post_chat(&llm.base_url(), &chat_body(KOREAN), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fault injection"),
        "{body}"
    );
    assert_eq!(llm.requests(), 1);
}

#[tokio::test]
async fn faulty_llm_invalid_json_is_a_200_with_a_broken_body() {
    let llm = FaultyLlm::start(Fault::InvalidJson).await;
    let response = post_chat(&llm.base_url(), &chat_body(KOREAN), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(llm.requests(), 1);
}

#[tokio::test]
async fn faulty_llm_schema_violation_is_a_well_formed_completion_with_wrong_content() {
    let llm = FaultyLlm::start(Fault::SchemaViolation).await;
    let completion: Value = post_chat(&llm.base_url(), &chat_body(KOREAN), Duration::from_secs(10))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .expect("a JSON completion");
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "faulty");
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    let parsed: Value = serde_json::from_str(content).expect("the content is JSON");
    assert_eq!(parsed, json!({"words": 3}));
    assert!(schema_valid_keywords(content).is_err());
    assert_eq!(llm.requests(), 1);
}

#[tokio::test]
async fn faulty_llm_close_connection_drops_chat_requests_only() {
    let llm = FaultyLlm::start(Fault::CloseConnection).await;
    for n in 1..=2 {
        let error = post_chat(&llm.base_url(), &chat_body(KOREAN), Duration::from_secs(10))
            .await
            .expect_err("a closed connection gives no response");
        assert!(!error.is_timeout(), "closed, not hung: {error:?}");
        assert_eq!(llm.requests(), n);
    }
    let models = get_json(format!("{}/models", llm.base_url())).await;
    assert_eq!(
        models["data"][0]["id"], "faulty",
        "the model list still works"
    );
}

/// `set_fault(None)` answers correctly: the recovery that tests of sori's breaker rely on.
#[tokio::test]
async fn faulty_llm_recovers_when_the_fault_is_cleared() {
    let llm = FaultyLlm::start(Fault::Http500).await;
    let failed = post_chat(&llm.base_url(), &chat_body(KOREAN), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);

    llm.set_fault(None);
    for (sentence, first_word) in [(KOREAN, "내일"), (ENGLISH, "The")] {
        let completion: Value = post_chat(
            &llm.base_url(),
            &chat_body(sentence),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
        let content = completion["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert_eq!(
            schema_valid_keywords(content).unwrap(),
            vec![(first_word.to_owned(), "topic".to_owned())]
        );
    }
    assert_eq!(llm.requests(), 3);

    llm.set_fault(Some(Fault::InvalidJson));
    let broken = post_chat(&llm.base_url(), &chat_body(KOREAN), Duration::from_secs(10))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(serde_json::from_str::<Value>(&broken).is_err());
    assert_eq!(llm.requests(), 4);
}
