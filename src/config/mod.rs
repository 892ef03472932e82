//! Typed configuration: defaults → `sori.toml` → `SORI_*` environment → command-line flags.
//!
//! Every knob has a default that serves (the `Default` impls); [`settings::SECTIONS`] lists
//! each knob once with its variable, flag and documentation, and drives the environment
//! (`apply_env`), the unknown-variable warnings and docs/configuration.md. `validate` rejects
//! values that cannot work with a message naming the knob, and `redacted` is the view
//! `/api/config` shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use sori_core::config::{FilterSettings, SttConfig, VadConfig};

pub mod docs;
mod env;
pub mod flags;
pub mod settings;
mod validate;
pub mod values;

pub use env::{READ_ELSEWHERE, UnknownVar, known_names, unknown_env, warn_unknown_env};

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

#[cfg(test)]
mod tests;
