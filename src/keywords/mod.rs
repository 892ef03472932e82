//! Keywords for final segments from an OpenAI-compatible chat endpoint (vLLM in production,
//! llama.cpp's server here), constrained by a JSON schema, filtered against the segment text,
//! cached, and guarded by a timeout, one retry and a circuit breaker.

mod live;
mod scan;

pub use live::SessionKeywords;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::{OpenAIError, StreamError};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, ResponseFormat,
    ResponseFormatJsonSchema,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{RwLock, Semaphore};

use crate::cache::{Cache, key_hash};
use crate::config::{Category, LlmConfig};
use crate::metrics::{LlmErrorKind, LlmPurpose};
use crate::protocol::Keyword;

/// Changes whenever the prompt or the filtering changes, so cached results from an older
/// version are not reused.
const PROMPT_VERSION: &str = "kw-v1";
const CACHE_NAMESPACE: &str = "keywords";

/// Why no keywords came back.
#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    /// The endpoint could not be reached, timed out, failed, or is resting after failures.
    #[error("the LLM endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The endpoint answered with something that is not the keywords JSON.
    #[error("the LLM answer was rejected: {0}")]
    Rejected(String),
}

/// Keywords of one segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction {
    pub keywords: Vec<Keyword>,
    pub model: String,
    pub latency_ms: u64,
    pub cached: bool,
}

/// What the model must answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    keywords: Vec<AnswerKeyword>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerKeyword {
    text: String,
    category: String,
}

/// The endpoint's state for `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct LlmStatus {
    pub enabled: bool,
    pub base_url: String,
    pub reachable: bool,
    pub model: Option<String>,
    pub last_latency_ms: Option<u64>,
    pub calls: u64,
    pub failures: u64,
    pub rejected: u64,
    /// "closed" (calls go through), "open" (resting after a failure) or "trial".
    pub circuit: &'static str,
}

pub struct KeywordExtractor {
    cfg: LlmConfig,
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    model: RwLock<Option<String>>,
    cache: Cache,
    cache_ttl: Duration,
    permits: Semaphore,
    breaker: Breaker,
    schema: serde_json::Value,
    system_prompt: String,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    /// Latency of the last successful call + 1 (0 = none yet).
    last_latency_ms: AtomicU64,
}

impl KeywordExtractor {
    pub fn new(cfg: &LlmConfig, cache: Cache, cache_ttl: Duration) -> Arc<Self> {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(3_000)))
            .build()
            .unwrap_or_default();
        let mut openai = OpenAIConfig::new().with_api_base(cfg.base_url.trim_end_matches('/'));
        if let Some(key) = &cfg.api_key {
            openai = openai.with_api_key(key.clone());
        }
        Arc::new(Self {
            client: Client::with_config(openai).with_http_client(http.clone()),
            http,
            model: RwLock::new(cfg.model.clone()),
            cache,
            cache_ttl,
            permits: Semaphore::new(cfg.max_concurrent.max(1)),
            breaker: Breaker::new(Duration::from_millis(cfg.retry_after_ms)),
            schema: answer_schema(&cfg.categories, cfg.max_keywords),
            system_prompt: system_prompt(&cfg.categories, cfg.max_keywords),
            stats: Stats::default(),
            cfg: cfg.clone(),
        })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn categories(&self) -> &[Category] {
        &self.cfg.categories
    }

    /// Keywords of `text`: from the cache, or from the LLM (then cached).
    pub async fn extract(&self, text: &str) -> Result<Extraction, KeywordError> {
        self.extract_streaming(text, None).await
    }

    /// Like [`extract`](Self::extract), and when `early` is given the LLM answer is streamed:
    /// each keyword that passes the filter is sent to `early` the moment the model finishes
    /// writing it. The returned extraction holds the same keywords in the same order (a cache
    /// hit sends nothing early).
    pub async fn extract_streaming(
        &self,
        text: &str,
        early: Option<&UnboundedSender<Keyword>>,
    ) -> Result<Extraction, KeywordError> {
        let started = Instant::now();
        let normalized = normalize(text);
        let model = self.model().await?;
        if normalized.is_empty() {
            return Ok(Extraction {
                keywords: Vec::new(),
                model,
                latency_ms: 0,
                cached: false,
            });
        }
        let key = key_hash(&[
            &model,
            PROMPT_VERSION,
            &self.schema.to_string(),
            &normalized,
        ]);
        if let Some(hit) = self.cache.get(CACHE_NAMESPACE, &key).await
            && let Ok(keywords) = serde_json::from_str::<Vec<Keyword>>(&hit)
        {
            return Ok(Extraction {
                keywords,
                model,
                latency_ms: started.elapsed().as_millis() as u64,
                cached: true,
            });
        }

        let raw = self.call(&model, text, early).await?;
        let keywords = self.accept(&raw, text).inspect_err(|e| {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::Rejected);
            tracing::warn!(error = %e, answer = %truncate(&raw, 200), "LLM answer rejected");
        })?;
        if let Ok(json) = serde_json::to_string(&keywords) {
            self.cache
                .set(CACHE_NAMESPACE, &key, &json, self.cache_ttl)
                .await;
        }
        let latency_ms = started.elapsed().as_millis() as u64;
        self.stats
            .last_latency_ms
            .store(latency_ms + 1, Ordering::Relaxed);
        Ok(Extraction {
            keywords,
            model,
            latency_ms,
            cached: false,
        })
    }

    /// The model to ask: configured, or the first one the endpoint lists.
    async fn model(&self) -> Result<String, KeywordError> {
        if let Some(model) = self.model.read().await.clone() {
            return Ok(model);
        }
        if !self.breaker.allow() {
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::CircuitOpen);
            return Err(KeywordError::Unavailable(
                "resting after a failure".to_owned(),
            ));
        }
        let listed = self.list_models().await;
        if !matches!(listed, Ok(Some(_))) {
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::ModelList);
        }
        match listed {
            Ok(Some(model)) => {
                self.breaker.success();
                *self.model.write().await = Some(model.clone());
                Ok(model)
            }
            Ok(None) => {
                self.breaker.failure();
                Err(KeywordError::Unavailable(format!(
                    "{}/models lists no model; set llm.model (SORI_LLM_MODEL)",
                    self.cfg.base_url
                )))
            }
            Err(e) => {
                self.breaker.failure();
                Err(KeywordError::Unavailable(e))
            }
        }
    }

    async fn list_models(&self) -> Result<Option<String>, String> {
        first_model(&self.http, &self.cfg.base_url, self.cfg.api_key.as_deref()).await
    }

    /// One chat completion under the concurrency limit, the timeout, one retry on a
    /// connection failure, and the circuit breaker. Returns the message content.
    async fn call(
        &self,
        model: &str,
        text: &str,
        early: Option<&UnboundedSender<Keyword>>,
    ) -> Result<String, KeywordError> {
        if !self.breaker.allow() {
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::CircuitOpen);
            return Err(KeywordError::Unavailable(
                "resting after a failure".to_owned(),
            ));
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| KeywordError::Unavailable("shutting down".to_owned()))?;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = tokio::time::timeout(timeout, self.complete(model, text, early)).await;
            let failed = outcome.as_ref().map_or(Some(LlmErrorKind::Timeout), |r| {
                r.as_ref().err().map(CallError::kind)
            });
            crate::metrics::global().llm_request(LlmPurpose::Keywords, started.elapsed(), failed);
            let error = match outcome {
                Ok(Ok(content)) => {
                    self.breaker.success();
                    return Ok(content);
                }
                Ok(Err(CallError::Rejected(reason))) => {
                    // The endpoint is up; it answered badly.
                    self.breaker.success();
                    return Err(KeywordError::Rejected(reason));
                }
                Ok(Err(CallError::Connection(reason))) if attempt == 1 => {
                    tracing::debug!(%reason, "LLM connection failed; retrying once");
                    continue;
                }
                Ok(Err(CallError::Connection(reason) | CallError::Server(reason))) => reason,
                Err(_) => format!("no answer within {} ms", self.cfg.timeout_ms),
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            self.breaker.failure();
            return Err(KeywordError::Unavailable(error));
        }
    }

    async fn complete(
        &self,
        model: &str,
        text: &str,
        early: Option<&UnboundedSender<Keyword>>,
    ) -> Result<String, CallError> {
        let request = self.request(model, text)?;
        let Some(early) = early else {
            let response = self.client.chat().create(request).await.map_err(classify)?;
            return response
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
                .ok_or_else(|| {
                    CallError::Rejected("the answer has no message content".to_owned())
                });
        };
        let mut stream = self
            .client
            .chat()
            .create_stream(request)
            .await
            .map_err(classify)?;
        let mut content = String::new();
        let mut scanner = scan::ItemScanner::default();
        let mut proposed: Vec<ProposedKeyword> = Vec::new();
        let mut sent = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify)?;
            let Some(piece) = chunk
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.delta.content)
            else {
                continue;
            };
            content.push_str(&piece);
            let items = scanner.feed(&piece);
            if items.is_empty() {
                continue;
            }
            proposed.extend(
                items
                    .iter()
                    .filter_map(|item| serde_json::from_str::<AnswerKeyword>(item).ok())
                    .map(ProposedKeyword::from),
            );
            let kept = filter_keywords(
                proposed.iter().cloned(),
                text,
                &self.cfg.categories,
                self.cfg.max_keywords,
            );
            for keyword in kept.into_iter().skip(sent) {
                sent += 1;
                let _ = early.send(keyword);
            }
        }
        if content.is_empty() {
            return Err(CallError::Rejected(
                "the streamed answer has no message content".to_owned(),
            ));
        }
        Ok(content)
    }

    fn request(&self, model: &str, text: &str) -> Result<CreateChatCompletionRequest, CallError> {
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessage::from(self.system_prompt.as_str()).into(),
            ChatCompletionRequestUserMessage::from(EXAMPLE_SEGMENT).into(),
            ChatCompletionRequestAssistantMessage::from(EXAMPLE_ANSWER).into(),
            ChatCompletionRequestUserMessage::from(text).into(),
        ];
        CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages(messages)
            .temperature(0.0)
            .max_completion_tokens(256u32)
            .response_format(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: Some("Keywords of one transcript segment".to_owned()),
                    name: "keywords".to_owned(),
                    schema: self.schema.clone(),
                    strict: Some(true),
                },
            })
            .build()
            .map_err(|e| CallError::Rejected(format!("request could not be built: {e}")))
    }

    /// Parses the answer and keeps only keywords that are really in the segment, in a known
    /// category, not stop-words, without duplicates, at most `max_keywords`.
    fn accept(&self, answer: &str, segment: &str) -> Result<Vec<Keyword>, KeywordError> {
        let parsed: Answer = serde_json::from_str(answer.trim())
            .map_err(|e| KeywordError::Rejected(format!("not the keywords JSON ({e})")))?;
        Ok(filter_keywords(
            parsed.keywords,
            segment,
            &self.cfg.categories,
            self.cfg.max_keywords,
        ))
    }

    /// The endpoint's state, probing it (short timeout) when no call has shown it up.
    pub async fn status(&self) -> LlmStatus {
        let reachable = self.enabled() && self.list_models().await.is_ok();
        let last = self.stats.last_latency_ms.load(Ordering::Relaxed);
        LlmStatus {
            enabled: self.enabled(),
            base_url: self.cfg.base_url.clone(),
            reachable,
            model: self.model.read().await.clone(),
            last_latency_ms: (last > 0).then(|| last - 1),
            calls: self.stats.calls.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            circuit: self.breaker.state_name(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }
}

/// The first model an OpenAI-compatible endpoint lists at `GET {base_url}/models` (`None`
/// when it lists none); the error says which request failed and how.
pub async fn first_model(
    http: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Models {
        data: Vec<ModelEntry>,
    }
    #[derive(Deserialize)]
    struct ModelEntry {
        id: String,
    }
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let mut request = http.get(&url).timeout(Duration::from_secs(3));
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let models: Models = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: not a model list ({e})"))?;
    Ok(models.data.into_iter().next().map(|m| m.id))
}

/// reqwest is built without a default TLS backend (the default, aws-lc, needs a long C
/// build); `https://` endpoints use rustls with *ring*, installed once per process.
pub fn install_tls_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

enum CallError {
    Connection(String),
    Server(String),
    Rejected(String),
}

impl CallError {
    fn kind(&self) -> LlmErrorKind {
        match self {
            CallError::Connection(_) => LlmErrorKind::Connection,
            CallError::Server(_) => LlmErrorKind::Server,
            CallError::Rejected(_) => LlmErrorKind::Rejected,
        }
    }
}

fn classify(e: OpenAIError) -> CallError {
    match e {
        OpenAIError::Reqwest(e) if e.is_connect() || e.is_request() => {
            CallError::Connection(e.to_string())
        }
        OpenAIError::Reqwest(e) => CallError::Server(e.to_string()),
        OpenAIError::ApiError(e) => {
            CallError::Server(format!("the endpoint answered an error: {e}"))
        }
        OpenAIError::JSONDeserialize(e, content) => CallError::Rejected(format!(
            "the answer is not a chat completion ({e}): {}",
            truncate(&content, 120)
        )),
        // The endpoint answered, but not with chat completion chunks.
        OpenAIError::StreamError(e) if matches!(*e, StreamError::UnknownEvent(_)) => {
            CallError::Rejected(format!(
                "the streamed answer is not chat completion chunks: {e}"
            ))
        }
        other => CallError::Server(other.to_string()),
    }
}

/// A worked example given to the model before each segment (small models need one).
const EXAMPLE_SEGMENT: &str = "부산시청에서 김민수 과장이 내년 도로 예산 3억 원을 보고했습니다";
const EXAMPLE_ANSWER: &str = r#"{"keywords":[{"text":"부산시청","category":"organization"},{"text":"김민수","category":"person"},{"text":"내년","category":"datetime"},{"text":"도로 예산","category":"topic"},{"text":"3억 원","category":"number"}]}"#;

fn system_prompt(categories: &[Category], max: usize) -> String {
    let list = categories
        .iter()
        .map(|c| format!("- {} ({} / {})", c.id, c.ko, c.en))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "You extract keywords from one segment of a live transcript (Korean or English: meetings, \
call centres, traffic control rooms). 실시간 전사 문장에서 핵심 명사를 추출합니다.\n\
Rules:\n\
1. Return the important nouns and noun phrases: people, places, organisations, dates and times, \
numbers and amounts, roads and facilities, events and incidents, topics.\n\
2. Copy each keyword exactly as written in the segment. Do not translate, do not add words that \
are not in the segment. Leave out Korean particles and endings (은/는/이/가/을/를/에/에서/의/으로).\n\
3. No verbs, adjectives, pronouns or filler words. At most {max} keywords; an empty list when \
the segment has no content words.\n\
4. category is one of:\n{list}\n\
Answer with JSON only: {{\"keywords\":[{{\"text\":\"...\",\"category\":\"...\"}}]}}"
    )
}

fn answer_schema(categories: &[Category], max: usize) -> serde_json::Value {
    let ids: Vec<&str> = categories.iter().map(|c| c.id.as_str()).collect();
    serde_json::json!({
        "type": "object",
        "properties": {
            "keywords": {
                "type": "array",
                "maxItems": max,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": { "type": "string", "minLength": 1, "maxLength": 60 },
                        "category": { "type": "string", "enum": ids }
                    },
                    "required": ["text", "category"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["keywords"],
        "additionalProperties": false
    })
}

/// Words that carry no content in either language: a keyword made only of these is dropped
/// (the small local model sometimes proposes "And so" or "Ask not").
const STOP_WORDS: &[&str] = &[
    "것",
    "수",
    "등",
    "때",
    "곳",
    "거",
    "점",
    "이것",
    "그것",
    "저것",
    "여기",
    "거기",
    "저기",
    "우리",
    "저희",
    "제가",
    "저",
    "나",
    "너",
    "그",
    "이",
    "저것들",
    "여러분",
    "뭐",
    "무엇",
    "누구",
    "그리고",
    "그래서",
    "하지만",
    "그런데",
    "네",
    "예",
    "아니요",
    "it",
    "this",
    "that",
    "these",
    "those",
    "thing",
    "things",
    "something",
    "anything",
    "everything",
    "we",
    "you",
    "i",
    "they",
    "he",
    "she",
    "me",
    "us",
    "them",
    "one",
    "ones",
    "what",
    "who",
    "which",
    "and",
    "so",
    "or",
    "but",
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "from",
    "by",
    "as",
    "not",
    "no",
    "yes",
    "my",
    "your",
    "our",
    "their",
    "his",
    "her",
    "its",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "have",
    "has",
    "had",
    "ask",
    "asked",
    "say",
    "said",
    "tell",
    "told",
    "go",
    "get",
    "make",
    "know",
    "think",
    "see",
    "want",
    "let",
    "here",
    "there",
    "now",
    "then",
];

/// Korean predicate endings: a "keyword" ending like this is a verb or adjective, not a noun.
const PREDICATE_ENDINGS: &[&str] = &[
    "니다", "했다", "한다", "하는", "해요", "어요", "아요", "았다", "었다", "이다", "있다", "없다",
    "하고", "해서", "된다", "됐다",
];

/// True when the keyword is only function words, or a Korean predicate.
fn carries_no_content(text: &str) -> bool {
    let lowered = text.to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().all(|w| STOP_WORDS.contains(w))
        || PREDICATE_ENDINGS
            .iter()
            .any(|e| lowered.trim_end().ends_with(e))
}

/// Keeps the model's keywords that occur in the segment (ignoring case, spacing and
/// punctuation), in a configured category, not stop-words, first occurrence only.
pub fn filter_keywords(
    proposed: impl IntoIterator<Item = impl Into<ProposedKeyword>>,
    segment: &str,
    categories: &[Category],
    max: usize,
) -> Vec<Keyword> {
    let haystack = normalize(segment);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in proposed {
        let p: ProposedKeyword = p.into();
        let text = p
            .text
            .trim()
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_owned();
        let norm = normalize(&text);
        let Some(category) = categories.iter().find(|c| c.id == p.category.trim()) else {
            continue;
        };
        let too_short = norm.chars().count() < 2 && !norm.chars().any(is_cjk_or_digit);
        if norm.is_empty()
            || too_short
            || carries_no_content(&text)
            || !haystack.contains(&norm)
            || !seen.insert(norm)
        {
            continue;
        }
        out.push(Keyword {
            text,
            category: category.id.clone(),
            label: category.ko.clone(),
        });
        if out.len() == max {
            break;
        }
    }
    out
}

/// A keyword as the model proposed it, before filtering.
#[derive(Clone)]
pub struct ProposedKeyword {
    pub text: String,
    pub category: String,
}

impl From<AnswerKeyword> for ProposedKeyword {
    fn from(k: AnswerKeyword) -> Self {
        Self {
            text: k.text,
            category: k.category,
        }
    }
}

impl From<(&str, &str)> for ProposedKeyword {
    fn from((text, category): (&str, &str)) -> Self {
        Self {
            text: text.to_owned(),
            category: category.to_owned(),
        }
    }
}

fn is_cjk_or_digit(c: char) -> bool {
    c.is_ascii_digit()
        || ('\u{AC00}'..='\u{D7A3}').contains(&c)
        || ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Lowercase letters and digits only: spacing and punctuation do not matter for matching.
pub fn normalize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Stops calling an endpoint that just failed for `rest`, then lets one trial call through;
/// its success closes the circuit, its failure opens it again (for twice as long, up to a minute).
struct Breaker {
    rest: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Clone, Copy)]
enum BreakerState {
    Closed,
    Open { until: Instant, rest: Duration },
    Trial { rest: Duration },
}

impl Breaker {
    fn new(rest: Duration) -> Self {
        Self {
            rest,
            state: Mutex::new(BreakerState::Closed),
        }
    }

    fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            BreakerState::Closed => true,
            BreakerState::Open { until, rest } if Instant::now() >= until => {
                *state = BreakerState::Trial { rest };
                true
            }
            BreakerState::Open { .. } | BreakerState::Trial { .. } => false,
        }
    }

    fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = BreakerState::Closed;
    }

    fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rest = match *state {
            BreakerState::Trial { rest } | BreakerState::Open { rest, .. } => {
                (rest * 2).min(Duration::from_secs(60))
            }
            BreakerState::Closed => self.rest,
        };
        *state = BreakerState::Open {
            until: Instant::now() + rest,
            rest,
        };
    }

    fn state_name(&self) -> &'static str {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::Trial { .. } => "trial",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats() -> Vec<Category> {
        LlmConfig::default().categories
    }

    #[test]
    fn keeps_only_keywords_present_in_the_segment() {
        let segment = "내일 오전 9시 서울역 앞에서 교통사고 대책회의가 열립니다";
        let kept = filter_keywords(
            [
                ("서울역", "place"),
                ("대책 회의", "topic"), // spacing differs from the text: still found
                ("부산역", "place"),    // not in the text
                ("교통사고", "unknown"), // category not configured
                ("것", "topic"),        // stop-word
                ("서울역", "facility"), // duplicate
                ("오전 9시", "datetime"),
            ],
            segment,
            &cats(),
            8,
        );
        let texts: Vec<_> = kept.iter().map(|k| k.text.as_str()).collect();
        assert_eq!(texts, ["서울역", "대책 회의", "오전 9시"]);
        let verbs = filter_keywords(
            [("열립니다", "event"), ("발생했습니다", "event")],
            "회의가 열립니다 사고가 발생했습니다",
            &cats(),
            8,
        );
        assert!(verbs.is_empty(), "{verbs:?}");
        assert_eq!(kept[0].label, "장소");
    }

    #[test]
    fn english_matching_ignores_case_and_punctuation_and_caps_the_count() {
        let segment =
            "Ask not what your Country can do for you, ask what you can do for your country.";
        let kept = filter_keywords(
            [
                ("country", "topic"),
                ("you", "person"),
                ("Americans", "person"),
                ("a", "topic"),
            ],
            segment,
            &cats(),
            8,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].text, "country");
        let many: Vec<(String, &str)> = (0..20).map(|i| (format!("word{i}"), "topic")).collect();
        let text: String = many
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let kept = filter_keywords(
            many.iter().map(|(w, c)| (w.as_str(), *c)),
            &text,
            &cats(),
            5,
        );
        assert_eq!(kept.len(), 5);
    }

    #[test]
    fn schema_lists_the_configured_categories() {
        let schema = answer_schema(&cats(), 8);
        let ids = &schema["properties"]["keywords"]["items"]["properties"]["category"]["enum"];
        assert_eq!(ids.as_array().unwrap().len(), 8);
        assert!(system_prompt(&cats(), 8).contains("facility (도로/시설 / road/facility)"));
        // The worked example obeys its own schema and filter.
        let example: Answer = serde_json::from_str(EXAMPLE_ANSWER).unwrap();
        let kept = filter_keywords(example.keywords, EXAMPLE_SEGMENT, &cats(), 8);
        assert_eq!(kept.len(), 5);
    }

    #[test]
    fn breaker_rests_then_allows_one_trial() {
        let b = Breaker::new(Duration::from_millis(30));
        assert!(b.allow());
        b.failure();
        assert!(!b.allow(), "open right after a failure");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one trial after the rest");
        assert!(!b.allow(), "only one trial at a time");
        b.failure();
        assert_eq!(b.state_name(), "open");
        std::thread::sleep(Duration::from_millis(45));
        assert!(!b.allow(), "the second rest is twice as long");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.success();
        assert_eq!(b.state_name(), "closed");
        assert!(b.allow() && b.allow());
    }
}
