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

pub use sori_core::config::{FilterSettings, SttConfig, VadConfig, VoiceDetectorKind};

pub mod auto;
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
    #[error(
        "refusing to listen on {address} ({knob}) with no API tokens: anyone who can reach it could stream, transcribe and read the index. Set SORI_API_TOKENS (server.api_tokens) so clients need a token, or SORI_ALLOW_OPEN=true (server.allow_open) if this server is meant to be open (e.g. behind an authenticating proxy); or listen on 127.0.0.1"
    )]
    Open {
        knob: &'static str,
        address: SocketAddr,
    },
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
    /// 0 = what the machine carries with the loaded model (`auto::session_limit`).
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
    /// Open `/ws` sessions, SSE status streams and uploads allowed from one client address,
    /// together; 0 = no limit.
    pub max_connections_per_client: usize,
    /// A session is ended (its finals sent, then closed) after this long; 0 = no limit.
    pub max_session_s: u64,
    /// A session that sends nothing (audio, `keepalive`, anything) for this long is ended; 0 =
    /// never.
    pub idle_timeout_s: u64,
    /// Audio waiting to be decoded per session, in seconds; frames beyond it are refused with
    /// an error (the client is sending faster than the server decodes).
    pub max_backlog_s: f64,
    /// On SIGTERM / ctrl-c, open sessions get this long to finish their last finals; the
    /// process exits within it whatever clients do.
    pub shutdown_grace_s: u64,
    /// Longest audio a file upload or `sori transcribe` accepts, in seconds; longer is refused
    /// with 413 (a 3-hour meeting fits the default).
    pub max_file_s: u64,
    /// File transcriptions running at once; the next is refused with 503 and `Retry-After`.
    /// 0 = one per decoder worker (`stt.workers`).
    pub max_file_jobs: usize,
    /// Every send to a client must finish within this long, or the client is closed (it is not
    /// reading); its finals are already in `outputs/`.
    pub send_timeout_s: u64,
    /// A connection must send its whole request header within this long.
    pub header_timeout_s: u64,
    /// A request body (an upload) must arrive within this long.
    pub body_timeout_s: u64,
    /// Open TCP connections the server holds at once (all clients); beyond it new ones are
    /// accepted and closed at once.
    pub max_connections: usize,
    /// Open TCP connections one client address may hold (REST, SSE and `/ws` together); 0 =
    /// no limit.
    pub max_connections_per_address: usize,
    /// TLS handshakes in progress at once; the rest wait to be accepted.
    pub max_tls_handshakes: usize,
    /// Transcripts in `outputs_dir` older than this many days are deleted (checked at start
    /// and hourly); 0 = keep forever.
    pub outputs_max_age_days: u64,
    /// With no `api_tokens`, sori refuses to listen on a non-loopback address unless this says
    /// the operator means it.
    pub allow_open: bool,
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
    /// Calls in flight at once to each of the embedder, the reranker and the answering LLM;
    /// the rest wait their turn, so a burst of `/query` cannot pile onto a slow backend.
    pub max_concurrent: usize,
    /// After a failure, the embedder, reranker or answering LLM is left alone this long.
    pub retry_after_ms: u64,
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
            max_concurrent: 4,
            retry_after_ms: 5_000,
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
            max_sessions: 0,
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
            max_file_s: 4 * 3600,
            max_file_jobs: 0,
            send_timeout_s: 10,
            header_timeout_s: 10,
            body_timeout_s: 300,
            max_connections: 8192,
            max_connections_per_address: 256,
            max_tls_handshakes: 64,
            outputs_max_age_days: 30,
            allow_open: false,
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

    /// The configuration as `/api/config` shows it: API keys and tokens are replaced by
    /// `"***"`, and so is the password in every URL (LLM, embedder, reranker, Qdrant, Redis).
    pub fn redacted(&self) -> serde_json::Value {
        let mut shown = self.clone();
        if shown.llm.api_key.is_some() {
            shown.llm.api_key = Some("***".to_owned());
        }
        for token in &mut shown.server.api_tokens {
            *token = "***".to_owned();
        }
        shown.llm.base_url = redact_url_password(&shown.llm.base_url);
        shown.rag.embed_url = redact_url_password(&shown.rag.embed_url);
        for url in [
            &mut shown.cache.redis_url,
            &mut shown.rag.qdrant_url,
            &mut shown.rag.rerank_url,
        ] {
            *url = url.as_deref().map(redact_url_password);
        }
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

    /// With no API tokens, refuses a non-loopback `server.bind` (and `server.tls_bind` when a
    /// certificate makes it listen) unless `server.allow_open` says the operator means it.
    /// Checked by `sori serve` only: the other commands listen nowhere.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        if !server.api_tokens.is_empty() || server.allow_open {
            return Ok(());
        }
        let mut listening = vec![("server.bind", server.bind)];
        if server.tls_cert.is_some() {
            listening.push(("server.tls_bind", server.tls_bind));
        }
        match listening.into_iter().find(|(_, a)| !a.ip().is_loopback()) {
            Some((knob, address)) => Err(ConfigError::Open { knob, address }),
            None => Ok(()),
        }
    }
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`. The credentials end at the last
/// `@` of the authority (as URL parsers read it), so a password holding `@` is hidden whole; a
/// user part with no password (`https://TOKEN@host`) is hidden too, as it is often a secret.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

#[cfg(test)]
mod tests;
