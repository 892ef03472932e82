//! The test infrastructure for real servers, checked against the real servers: llama.cpp's
//! llama-server (JSON-schema-constrained chat completions in Korean and English), Redis (RESP,
//! outage and restart, dying with the test process), and every mode of the fault-injection
//! endpoint.

mod support;

use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs, ResponseFormat,
    ResponseFormatJsonSchema,
};
use serde_json::{Value, json};
use support::faulty_llm::{FAULTY_MODEL, Fault, FaultyLlm};
use support::servers::{RedisServer, Resp, llama_server, redis_command};

const KOREAN: &str = "내일 오전 9시 서울역 앞에서 교통사고 대책 회의가 열립니다";
const ENGLISH: &str = "The quarterly budget review meeting moves to Friday at the Seoul office.";

/// The schema sori sends: `{"keywords":[{"text": string, "category": string}]}`.
fn keywords_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "keywords": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "category": {"type": "string"}},
                    "required": ["text", "category"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["keywords"],
        "additionalProperties": false
    })
}

/// Parses `content` and checks it against the keywords schema; returns (text, category) pairs.
fn schema_valid_keywords(content: &str) -> Result<Vec<(String, String)>, String> {
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
    list.iter()
        .map(|item| {
            let item = item.as_object().ok_or("a keyword is not an object")?;
            match (item.get("text"), item.get("category"), item.len()) {
                (Some(Value::String(text)), Some(Value::String(category)), 2) => {
                    Ok((text.clone(), category.clone()))
                }
                _ => Err(format!("bad keyword {item:?}")),
            }
        })
        .collect()
}

fn chat_request(model: &str, system: &str, user: &str, schema: bool) -> Value {
    let mut body = json!({
        "model": model,
        "temperature": 0,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user}
        ]
    });
    if schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "keywords", "schema": keywords_schema()}
        });
    }
    body
}

const KEYWORD_PROMPT: &str = "Extract the important keywords from the user's transcript segment. \
Answer with JSON: {\"keywords\":[{\"text\":\"...\",\"category\":\"...\"}]}. \
Categories: person, place, organization, time, event, topic.";

/// An HTTP client. The crate's reqwest has rustls without a built-in crypto provider (the
/// `rustls-no-provider` feature async-openai is built with), so install ring's first.
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// The message content of a chat completion from a real server.
async fn real_completion(body: &Value) -> String {
    let server = llama_server();
    let response = post_chat(&server.base_url, body, Duration::from_secs(180))
        .await
        .expect("llama-server answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "chat completion failed: {text}");
    let completion: Value = serde_json::from_str(&text).expect("a JSON completion");
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no message content: {completion}"))
        .to_owned()
}

// ------------------------------------------------------------------------------ llama-server

#[tokio::test]
async fn llama_server_lists_its_model() {
    let server = llama_server();
    assert!(
        server.base_url.starts_with("http://127.0.0.1:") && server.base_url.ends_with("/v1"),
        "{}",
        server.base_url
    );
    let models = get_json(format!("{}/models", server.base_url)).await;
    assert_eq!(models["object"], "list");
    assert_eq!(
        models["data"][0]["id"], "qwen2.5-coder-0.5b-instruct",
        "{models}"
    );
    assert_eq!(server.model, "qwen2.5-coder-0.5b-instruct");
}

/// Keywords for `sentence` under the schema: valid, non-empty, and at least one is a phrase of
/// the sentence (the 0.5B model is weak, but it does copy phrases from its input).
async fn assert_keywords_for(sentence: &str) {
    let server = llama_server();
    let content =
        real_completion(&chat_request(&server.model, KEYWORD_PROMPT, sentence, true)).await;
    let keywords = schema_valid_keywords(&content)
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
async fn llama_server_answers_korean_with_schema_valid_keywords() {
    assert_keywords_for(KOREAN).await;
}

#[tokio::test]
async fn llama_server_answers_english_with_schema_valid_keywords() {
    assert_keywords_for(ENGLISH).await;
}

/// The schema is enforced by the server (a grammar), not merely suggested: a prompt that asks
/// for prose still yields schema-valid JSON, and the same prompt without a schema does not.
#[tokio::test]
async fn llama_server_enforces_the_schema_against_the_prompt() {
    let server = llama_server();
    let prose = "Reply with a short poem about the user's sentence, in plain text. Never use JSON.";
    let unconstrained = real_completion(&chat_request(&server.model, prose, KOREAN, false)).await;
    assert!(
        schema_valid_keywords(&unconstrained).is_err(),
        "without a schema the model should follow the prose prompt: {unconstrained}"
    );
    let constrained = real_completion(&chat_request(&server.model, prose, KOREAN, true)).await;
    schema_valid_keywords(&constrained)
        .unwrap_or_else(|why| panic!("schema not enforced ({why}): {constrained}"));
}

/// A keywords call made the way sori makes it, with async-openai (which parses responses
/// strictly); returns the message content.
async fn async_openai_content(base_url: &str, model: &str, user: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(base_url)
            .with_api_key("unused"),
    );
    let messages: Vec<ChatCompletionRequestMessage> = vec![
        ChatCompletionRequestSystemMessage::from(KEYWORD_PROMPT).into(),
        ChatCompletionRequestUserMessage::from(user).into(),
    ];
    let request = CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages(messages)
        .temperature(0.0)
        .max_completion_tokens(256u32)
        .response_format(ResponseFormat::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: Some("Keywords of one transcript segment".to_owned()),
                name: "keywords".to_owned(),
                schema: keywords_schema(),
                strict: Some(true),
            },
        })
        .build()
        .expect("a valid request");
    let response = client
        .chat()
        .create(request)
        .await
        .unwrap_or_else(|e| panic!("async-openai call to {base_url} failed: {e}"));
    response.choices[0]
        .message
        .content
        .clone()
        .expect("message content")
}

/// async-openai accepts what llama-server and the fault-injection endpoint answer.
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

fn bulk(text: &str) -> Resp {
    Resp::Bulk(Some(text.as_bytes().to_vec()))
}

#[test]
fn redis_speaks_resp_survives_nothing_and_restarts_on_the_same_port() {
    let mut redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(
        redis.command(&["PING"]).unwrap(),
        Resp::Simple("PONG".into())
    );
    assert_eq!(
        redis.command(&["SET", "sori:test", "소리"]).unwrap(),
        Resp::Simple("OK".into())
    );
    assert_eq!(redis.command(&["GET", "sori:test"]).unwrap(), bulk("소리"));
    assert_eq!(
        redis.command(&["GET", "sori:missing"]).unwrap(),
        Resp::Bulk(None)
    );
    assert!(matches!(
        redis.command(&["NOSUCHCOMMAND"]).unwrap(),
        Resp::Error(_)
    ));
    // Persistence is off, as the tests' start flags say.
    let Resp::Array(Some(save)) = redis.command(&["CONFIG", "GET", "save"]).unwrap() else {
        panic!("CONFIG GET save is an array");
    };
    assert_eq!(save, vec![bulk("save"), bulk("")]);

    let port = redis.port();
    redis.kill();
    let refused = redis
        .command(&["PING"])
        .expect_err("a killed server must not answer");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    redis.kill(); // idempotent

    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(
        redis.command(&["PING"]).unwrap(),
        Resp::Simple("PONG".into())
    );
    assert_eq!(
        redis.command(&["GET", "sori:test"]).unwrap(),
        Resp::Bulk(None),
        "nothing persists across a restart"
    );
}

#[test]
fn redis_stops_when_dropped() {
    let redis = RedisServer::start();
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
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "redis_dies_with_the_test_process", "--nocapture"])
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
    chat_request(FAULTY_MODEL, KEYWORD_PROMPT, user, true)
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
