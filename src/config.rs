//! Typed configuration: defaults → `sori.toml` → `SORI_*` environment → command-line flags.
//!
//! Every knob has a default that serves; `validate` rejects values that cannot work with a
//! message naming the knob, and `redacted` is the view `/api/config` shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stt::language::LanguageSet;
pub use sori_core::config::{FilterSettings, SttConfig, VadConfig};

/// Why a configuration could not be loaded; each message names the source and the knob.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?} is not valid: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("configuration value {knob} is not valid: {reason}")]
    Invalid { knob: &'static str, reason: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub stt: SttConfig,
    pub vad: VadConfig,
    pub filter: FilterSettings,
    pub llm: LlmConfig,
    pub cache: CacheConfig,
    pub rag: RagConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback by default: exposing a microphone stream is the operator's decision.
    pub bind: SocketAddr,
    /// Where each session's `.jsonl`, `.srt` and `.vtt` transcripts are written.
    pub outputs_dir: PathBuf,
    /// Largest WebSocket frame accepted; bigger frames get an error (close 1009 at the transport limit).
    pub max_frame_bytes: usize,
    /// Concurrent `/ws` sessions admitted; the next one is refused with close code 1013.
    pub max_sessions: usize,
    /// Largest upload accepted by `POST /api/transcribe`.
    pub max_upload_bytes: usize,
    /// How often a session is sent a `status` event (lag, queue depth), in milliseconds.
    pub status_interval_ms: u64,
    /// How often `/api/status/stream` pushes the monitor's state, in milliseconds.
    pub monitor_interval_ms: u64,
    /// PEM certificate chain for the HTTPS/WSS listener (with `tls_key`; both or neither).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the HTTPS/WSS listener.
    pub tls_key: Option<PathBuf>,
    /// Where the HTTPS/WSS listener listens when a certificate is set. Browsers allow the
    /// microphone only on https or localhost, so this one faces other machines.
    pub tls_bind: SocketAddr,
    /// API tokens; empty = no authentication. Clients send `Authorization: Bearer TOKEN` or
    /// `?token=TOKEN` (browsers cannot set headers on a WebSocket). Never shown or logged.
    pub api_tokens: Vec<String>,
    /// Origins allowed to open `/ws` from a browser (e.g. `https://ops.example.kr`); empty =
    /// any. Clients that send no Origin (non-browser) are not affected.
    pub allowed_origins: Vec<String>,
    /// Open `/ws` connections allowed from one client address; 0 = no limit.
    pub max_connections_per_client: usize,
    /// A session is ended (its finals sent, then closed) after this long; 0 = no limit.
    pub max_session_s: u64,
    /// A session that sends nothing (audio, `keepalive`, anything) for this long is ended; 0 =
    /// never.
    pub idle_timeout_s: u64,
    /// Audio waiting to be decoded per session, in seconds; frames beyond it are refused with
    /// an error (the client is sending faster than the server decodes).
    pub max_backlog_s: f64,
    /// On SIGTERM / ctrl-c, open sessions get this long to finish their last finals.
    pub shutdown_grace_s: u64,
}

/// The OpenAI-compatible endpoint that extracts keywords from final segments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Keywords for finals; sessions may turn them off with `keywords=false`.
    pub enabled: bool,
    /// vLLM's default address; a local llama.cpp server uses the same API.
    pub base_url: String,
    /// Model name; `None` = the first model the endpoint lists at `GET /models`.
    pub model: Option<String>,
    /// Sent as a bearer token; never shown in `/api/config` or logs.
    pub api_key: Option<String>,
    /// One LLM call may take this long before it counts as a failure.
    pub timeout_ms: u64,
    /// LLM calls in flight at once, across sessions (the rest wait their turn).
    pub max_concurrent: usize,
    /// Keywords kept per segment after filtering.
    pub max_keywords: usize,
    /// After a failure the endpoint is left alone this long before it is tried again.
    pub retry_after_ms: u64,
    /// Keyword categories the model may choose from (id, Korean label, English label).
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: String,
    pub ko: String,
    pub en: String,
}

/// Retrieval over indexed documents: embeddings, the vector store, and answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RagConfig {
    /// `/index`, `/search`, `/query` and live `rag` events; off = those answer 503.
    pub enabled: bool,
    /// OpenAI-compatible `/v1/embeddings` endpoint (`scripts/embed-server.sh` runs a local one;
    /// production points at BGE-M3 behind vLLM or another embedding server).
    pub embed_url: String,
    /// Embedding model name; `None` = the first model the endpoint lists (or the model
    /// directory's name).
    pub embed_model: Option<String>,
    /// A local ONNX sentence-embedding model directory: when set, vectors are computed in this
    /// process (fastembed on ONNX Runtime) and `embed_url` is not used.
    /// `scripts/onnx-embedder.sh fetch` makes an English one (all-MiniLM-L6-v2, int8).
    pub embed_model_dir: Option<PathBuf>,
    /// ONNX Runtime's shared library, loaded at run time for `embed_model_dir`.
    pub onnxruntime_lib: PathBuf,
    /// Threads of the in-process embedding model.
    pub embed_threads: usize,
    /// Bearer token for the embedding endpoint; never shown.
    pub embed_api_key: Option<String>,
    /// Put before queries and before passages. Requests also carry `input_type` ("query" /
    /// "passage"), from which the local E5 server adds E5's prefixes itself; set these to
    /// "query: " / "passage: " for an E5 model behind a server that does not. Empty = nothing.
    pub query_prefix: String,
    pub passage_prefix: String,
    /// Embedded Qdrant (qdrant-edge) data directory, used when `qdrant_url` is unset.
    pub store_dir: PathBuf,
    /// A Qdrant server (`http://host:6334`, gRPC); unset = the embedded store.
    pub qdrant_url: Option<String>,
    pub qdrant_api_key: Option<String>,
    /// Chunk size and overlap when indexing, in characters.
    pub chunk_chars: usize,
    pub chunk_overlap: usize,
    /// Candidates retrieved per query (dense and sparse each), then kept after reranking.
    pub top_k_retrieval: usize,
    pub top_k_rerank: usize,
    /// A cross-encoder reranking endpoint (Jina/Cohere `/rerank` API: vLLM, llama.cpp's
    /// server with `--rerank`, text-embeddings-inference), e.g. `http://127.0.0.1:8000/v1`;
    /// unset = candidates keep their fused order.
    pub rerank_url: Option<String>,
    pub rerank_model: Option<String>,
    /// Bearer token for the rerank endpoint; never shown.
    pub rerank_api_key: Option<String>,
    /// Context given to the LLM for an answer, in characters.
    pub max_context_chars: usize,
    /// Embeddings are reused this long (seconds); query results this long.
    pub embed_ttl_s: u64,
    pub query_ttl_s: u64,
    /// One embedding or store call may take this long.
    pub timeout_ms: u64,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            embed_url: "http://127.0.0.1:8100/v1".to_owned(),
            embed_model: None,
            embed_model_dir: None,
            onnxruntime_lib: PathBuf::from(".tools/onnxruntime/libonnxruntime.so.1.31.1"),
            embed_threads: 1,
            embed_api_key: None,
            query_prefix: String::new(),
            passage_prefix: String::new(),
            store_dir: PathBuf::from("data/qdrant"),
            qdrant_url: None,
            qdrant_api_key: None,
            chunk_chars: 1000,
            chunk_overlap: 150,
            top_k_retrieval: 10,
            top_k_rerank: 5,
            rerank_url: None,
            rerank_model: None,
            rerank_api_key: None,
            max_context_chars: 2048,
            embed_ttl_s: 24 * 3600,
            query_ttl_s: 3600,
            timeout_ms: 10_000,
        }
    }
}

/// Where cached results live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `redis://host:port/db`; unset = an in-memory cache in this process.
    pub redis_url: Option<String>,
    /// Entries kept by the in-memory cache.
    pub max_entries: usize,
    /// Keyword results are reused for the same text this long, in seconds.
    pub keyword_ttl_s: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        let category = |id: &str, ko: &str, en: &str| Category {
            id: id.to_owned(),
            ko: ko.to_owned(),
            en: en.to_owned(),
        };
        Self {
            enabled: true,
            base_url: "http://127.0.0.1:8000/v1".to_owned(),
            model: None,
            api_key: None,
            timeout_ms: 10_000,
            max_concurrent: 2,
            max_keywords: 8,
            retry_after_ms: 5_000,
            categories: vec![
                category("person", "인물", "person"),
                category("place", "장소", "place"),
                category("organization", "기관", "organization"),
                category("datetime", "날짜/시간", "date/time"),
                category("number", "수량/금액", "number/amount"),
                category("facility", "도로/시설", "road/facility"),
                category("event", "사건/사고", "event/incident"),
                category("topic", "주제", "topic"),
            ],
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            max_entries: 10_000,
            keyword_ttl_s: 3600,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 5000)),
            outputs_dir: PathBuf::from("outputs"),
            max_frame_bytes: 1 << 20,
            max_sessions: 32,
            max_upload_bytes: 200 << 20,
            status_interval_ms: 1000,
            monitor_interval_ms: 1000,
            tls_cert: None,
            tls_key: None,
            tls_bind: SocketAddr::from(([0, 0, 0, 0], 5443)),
            api_tokens: Vec::new(),
            allowed_origins: Vec::new(),
            max_connections_per_client: 8,
            max_session_s: 4 * 3600,
            idle_timeout_s: 60,
            max_backlog_s: 120.0,
            shutdown_grace_s: 20,
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (if given or `sori.toml` exists), then `SORI_*` variables.
    /// Flags are applied by the caller afterwards, then `validate` is called.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None if Path::new("sori.toml").exists() => Self::from_file(Path::new("sori.toml"))?,
            None => Self::default(),
        };
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies every `SORI_*` variable this build knows; unknown `SORI_*` names are ignored
    /// so that one environment can serve several versions.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            match name.as_str() {
                "SORI_BIND" => self.server.bind = parse_env("SORI_BIND", &value)?,
                "SORI_OUTPUTS_DIR" => self.server.outputs_dir = PathBuf::from(value),
                "SORI_MAX_FRAME_BYTES" => {
                    self.server.max_frame_bytes = parse_env("SORI_MAX_FRAME_BYTES", &value)?
                }
                "SORI_MAX_SESSIONS" => {
                    self.server.max_sessions = parse_env("SORI_MAX_SESSIONS", &value)?
                }
                "SORI_TLS_CERT" => {
                    self.server.tls_cert =
                        Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
                }
                "SORI_TLS_KEY" => {
                    self.server.tls_key =
                        Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
                }
                "SORI_API_TOKENS" => self.server.api_tokens = comma_list(&value),
                "SORI_ALLOWED_ORIGINS" => self.server.allowed_origins = comma_list(&value),
                "SORI_MAX_CONNECTIONS_PER_CLIENT" => {
                    self.server.max_connections_per_client =
                        parse_env("SORI_MAX_CONNECTIONS_PER_CLIENT", &value)?
                }
                "SORI_MAX_SESSION_S" => {
                    self.server.max_session_s = parse_env("SORI_MAX_SESSION_S", &value)?
                }
                "SORI_IDLE_TIMEOUT_S" => {
                    self.server.idle_timeout_s = parse_env("SORI_IDLE_TIMEOUT_S", &value)?
                }
                "SORI_TLS_BIND" => self.server.tls_bind = parse_env("SORI_TLS_BIND", &value)?,
                "SORI_MODEL" => self.stt.model = PathBuf::from(value),
                "SORI_LANGUAGE" => self.stt.language = parse_env("SORI_LANGUAGE", &value)?,
                "SORI_WORKERS" => self.stt.workers = parse_env("SORI_WORKERS", &value)?,
                "SORI_THREADS" => self.stt.threads = parse_env("SORI_THREADS", &value)?,
                "SORI_BEAM_SIZE" => self.stt.beam_size = parse_env("SORI_BEAM_SIZE", &value)?,
                "SORI_AUDIO_CTX_TRIM" => {
                    self.stt.audio_ctx_trim = parse_env("SORI_AUDIO_CTX_TRIM", &value)?
                }
                "SORI_INITIAL_PROMPT" => {
                    self.stt.initial_prompt = Some(value).filter(|v| !v.trim().is_empty())
                }
                "SORI_LANGUAGES" => {
                    let set: LanguageSet = parse_env("SORI_LANGUAGES", &value)?;
                    self.stt.languages = set.to_strings();
                }
                "SORI_LANGUAGE_LOCK" => {
                    self.stt.language_lock = parse_env("SORI_LANGUAGE_LOCK", &value)?
                }
                "SORI_LANGUAGE_LOCK_PROBABILITY" => {
                    self.stt.language_lock_probability =
                        parse_env("SORI_LANGUAGE_LOCK_PROBABILITY", &value)?
                }
                "SORI_LANGUAGE_LOCK_MIN_S" => {
                    self.stt.language_lock_min_s = parse_env("SORI_LANGUAGE_LOCK_MIN_S", &value)?
                }
                "SORI_MAX_PROMPT_CHARS" => {
                    self.stt.max_prompt_chars = parse_env("SORI_MAX_PROMPT_CHARS", &value)?
                }
                "SORI_VAD_ENERGY_THRESHOLD" => {
                    self.vad.energy_threshold = parse_env("SORI_VAD_ENERGY_THRESHOLD", &value)?
                }
                "SORI_VAD_SILENCE_MS" => {
                    self.vad.silence_ms = parse_env("SORI_VAD_SILENCE_MS", &value)?
                }
                "SORI_LLM_BASE_URL" => self.llm.base_url = value,
                "SORI_LLM_MODEL" => self.llm.model = Some(value).filter(|v| !v.is_empty()),
                "SORI_LLM_API_KEY" => self.llm.api_key = Some(value).filter(|v| !v.is_empty()),
                "SORI_KEYWORDS" => self.llm.enabled = parse_env("SORI_KEYWORDS", &value)?,
                "SORI_REDIS_URL" => self.cache.redis_url = Some(value).filter(|v| !v.is_empty()),
                "SORI_RAG" => self.rag.enabled = parse_env("SORI_RAG", &value)?,
                "SORI_EMBED_URL" => self.rag.embed_url = value,
                "SORI_EMBED_MODEL" => self.rag.embed_model = Some(value).filter(|v| !v.is_empty()),
                "SORI_EMBED_MODEL_DIR" => {
                    self.rag.embed_model_dir =
                        Some(value).filter(|v| !v.is_empty()).map(PathBuf::from)
                }
                "SORI_ONNXRUNTIME_LIB" => self.rag.onnxruntime_lib = PathBuf::from(value),
                "SORI_EMBED_API_KEY" => {
                    self.rag.embed_api_key = Some(value).filter(|v| !v.is_empty())
                }
                "SORI_QDRANT_URL" => self.rag.qdrant_url = Some(value).filter(|v| !v.is_empty()),
                "SORI_QDRANT_API_KEY" => {
                    self.rag.qdrant_api_key = Some(value).filter(|v| !v.is_empty())
                }
                "SORI_RERANK_URL" => self.rag.rerank_url = Some(value).filter(|v| !v.is_empty()),
                "SORI_RERANK_MODEL" => {
                    self.rag.rerank_model = Some(value).filter(|v| !v.is_empty())
                }
                "SORI_RERANK_API_KEY" => {
                    self.rag.rerank_api_key = Some(value).filter(|v| !v.is_empty())
                }
                "SORI_QDRANT_DIR" => self.rag.store_dir = PathBuf::from(value),
                "SORI_FILTER_PATTERNS_FILE" => {
                    self.filter.patterns_file = Some(PathBuf::from(value))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |knob, reason: &str| {
            Err(ConfigError::Invalid {
                knob,
                reason: reason.to_owned(),
            })
        };
        if self.stt.workers == 0 || self.stt.workers > 64 {
            return invalid("stt.workers", "must be between 1 and 64");
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid(
                "server.tls_cert / server.tls_key",
                "set both (SORI_TLS_CERT and SORI_TLS_KEY) or neither",
            );
        }
        if self.stt.threads == 0 || self.stt.threads > 256 {
            return invalid("stt.threads", "must be between 1 and 256");
        }
        if self.stt.beam_size > 16 {
            return invalid("stt.beam_size", "must be between 0 (greedy) and 16");
        }
        if self.stt.queue_capacity == 0 {
            return invalid("stt.queue_capacity", "must be at least 1");
        }
        if let Err(e) = LanguageSet::from_items(&self.stt.languages) {
            return Err(ConfigError::Invalid {
                knob: "stt.languages",
                reason: e.to_string(),
            });
        }
        if !(self.stt.language_lock_probability > 0.0 && self.stt.language_lock_probability <= 1.0)
        {
            return invalid(
                "stt.language_lock_probability",
                "must be above 0 and at most 1",
            );
        }
        if !(0.0..=30.0).contains(&self.stt.language_lock_min_s) {
            return invalid(
                "stt.language_lock_min_s",
                "must be between 0 and 30 seconds",
            );
        }
        if self.stt.max_prompt_chars == 0 || self.stt.max_prompt_chars > 10_000 {
            return invalid("stt.max_prompt_chars", "must be between 1 and 10000");
        }
        if let Some(prompt) = &self.stt.initial_prompt
            && prompt.trim().chars().count() > self.stt.max_prompt_chars
        {
            return Err(ConfigError::Invalid {
                knob: "stt.initial_prompt",
                reason: format!(
                    "has {} characters, more than stt.max_prompt_chars ({}); shorten it or raise the limit",
                    prompt.trim().chars().count(),
                    self.stt.max_prompt_chars
                ),
            });
        }
        if !(0.0..=30.0).contains(&self.stt.audio_ctx_min_s) {
            return invalid("stt.audio_ctx_min_s", "must be between 0 and 30 seconds");
        }
        if !(0.0..=1.0).contains(&self.vad.energy_threshold) {
            return invalid("vad.energy_threshold", "must be between 0.0 and 1.0 (RMS)");
        }
        if !(0.0..=1.0).contains(&self.vad.speech_threshold) {
            return invalid("vad.speech_threshold", "must be between 0.0 and 1.0");
        }
        if self.vad.silence_ms < 100 || self.vad.silence_ms > 10_000 {
            return invalid("vad.silence_ms", "must be between 100 and 10000 ms");
        }
        if !(1.0..=30.0).contains(&self.vad.max_utterance_s) {
            return invalid("vad.max_utterance_s", "must be between 1 and 30 seconds");
        }
        if self.server.max_frame_bytes < 1024 {
            return invalid("server.max_frame_bytes", "must be at least 1024 bytes");
        }
        if !self.llm.base_url.starts_with("http://") && !self.llm.base_url.starts_with("https://") {
            return invalid("llm.base_url", "must start with http:// or https://");
        }
        if self.llm.categories.is_empty() {
            return invalid("llm.categories", "needs at least one category");
        }
        if self.llm.max_concurrent == 0 || self.llm.max_keywords == 0 {
            return invalid(
                "llm.max_concurrent",
                "llm.max_concurrent and llm.max_keywords must be at least 1",
            );
        }
        if self.server.max_sessions == 0 {
            return invalid("server.max_sessions", "must be at least 1");
        }
        Ok(())
    }

    /// The configuration as `/api/config` shows it: the LLM key and any password in the Redis
    /// URL are replaced by `"***"`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut shown = self.clone();
        if shown.llm.api_key.is_some() {
            shown.llm.api_key = Some("***".to_owned());
        }
        for token in &mut shown.server.api_tokens {
            *token = "***".to_owned();
        }
        shown.cache.redis_url = shown.cache.redis_url.as_deref().map(redact_url_password);
        for key in [
            &mut shown.rag.embed_api_key,
            &mut shown.rag.qdrant_api_key,
            &mut shown.rag.rerank_api_key,
        ] {
            if key.is_some() {
                *key = Some("***".to_owned());
            }
        }
        serde_json::to_value(shown).unwrap_or_default()
    }
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// `a, b,,c` → `["a", "b", "c"]`.
fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_env<T>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
        name,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Language;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let c = Config::default();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:5000");
        assert_eq!(c.vad.energy_threshold, 0.02);
        assert_eq!(c.vad.silence_ms, 1000);
        assert_eq!(c.filter.no_speech_threshold, 0.6);
        assert_eq!(c.filter.logprob_threshold, -1.0);
        assert_eq!(c.filter.compression_ratio_threshold, 2.4);
        assert!(!c.stt.condition_on_previous_text);
        c.validate().unwrap();
    }

    #[test]
    fn env_overrides_file_values() {
        let mut c: Config = toml::from_str(
            "[server]\nbind = \"127.0.0.1:6000\"\n[stt]\nmodel = \"a.bin\"\nlanguage = \"en\"\n",
        )
        .unwrap();
        assert_eq!(c.server.bind.port(), 6000);
        c.apply_env(env(&[
            ("SORI_BIND", "127.0.0.1:7000"),
            ("SORI_MODEL", "b.bin"),
            ("SORI_LANGUAGE", "auto"),
            ("SORI_MAX_SESSIONS", "3"),
            ("SORI_UNRELATED", "x"),
        ]))
        .unwrap();
        assert_eq!(c.server.bind.port(), 7000);
        assert_eq!(c.stt.model, PathBuf::from("b.bin"));
        assert_eq!(c.stt.language, Language::Auto);
        assert_eq!(c.server.max_sessions, 3);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let mut c = Config::default();
        let err = c
            .apply_env(env(&[("SORI_MAX_FRAME_BYTES", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SORI_MAX_FRAME_BYTES"), "{err}");
        let err = c
            .apply_env(env(&[("SORI_LANGUAGE", "fr")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SORI_LANGUAGE") && err.contains("ko"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("SORI_LLM_API_KEY", "sk-secret"),
            ("SORI_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
            ("SORI_LLM_BASE_URL", "http://vllm:8000/v1"),
            ("SORI_LLM_MODEL", "qwen"),
        ]))
        .unwrap();
        assert_eq!(c.llm.api_key.as_deref(), Some("sk-secret"));
        let shown = c.redacted().to_string();
        assert!(
            !shown.contains("sk-secret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("redis://:***@127.0.0.1:6379/0"), "{shown}");
        assert!(shown.contains("http://vllm:8000/v1") && shown.contains("qwen"));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let err = toml::from_str::<Config>("[vad]\nsilence = 3\n").unwrap_err();
        assert!(err.to_string().contains("silence"), "{err}");
    }

    #[test]
    fn language_settings_parse_and_validate() {
        let c = Config::default();
        assert_eq!(c.stt.language, Language::Ko, "Korean is forced by default");
        assert_eq!(c.stt.languages, ["ko", "en"]);
        assert!(c.stt.language_lock);
        let mut c = Config::default();
        c.apply_env(env(&[
            ("SORI_LANGUAGES", "Korean, ja ,en"),
            ("SORI_LANGUAGE_LOCK", "false"),
            ("SORI_LANGUAGE_LOCK_PROBABILITY", "0.8"),
            ("SORI_MAX_PROMPT_CHARS", "50"),
            ("SORI_INITIAL_PROMPT", "세종대로 광화문"),
        ]))
        .unwrap();
        assert_eq!(c.stt.languages, ["ko", "ja", "en"]);
        assert!(!c.stt.language_lock);
        assert_eq!(c.stt.language_lock_probability, 0.8);
        c.validate().unwrap();
        let err = c
            .apply_env(env(&[("SORI_LANGUAGES", "ko,klingon")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SORI_LANGUAGES") && err.contains("klingon"),
            "{err}"
        );

        let mut c: Config = toml::from_str("[stt]\nlanguages = [\"ko\", \"xx\"]\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("stt.languages") && err.contains("\"xx\""),
            "{err}"
        );
        c.stt.languages = vec!["all".to_owned()];
        c.validate().unwrap();
        assert!(c.stt.language_set().is_all());
        c.stt.initial_prompt = Some("가".repeat(300));
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("stt.initial_prompt") && err.contains("300"),
            "{err}"
        );
        c.stt.initial_prompt = None;
        c.stt.language_lock_probability = 1.5;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("language_lock_probability")
        );
    }

    #[test]
    fn validation_names_the_knob() {
        let mut c = Config::default();
        c.vad.max_utterance_s = 45.0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("vad.max_utterance_s"), "{err}");
    }
}
