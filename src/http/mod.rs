//! The HTTP surface: `app(state)` builds the router; `serve` runs it until shutdown.

pub mod access;
pub mod api;
pub mod conn;
pub mod deepgram;
pub mod health;
pub mod limits;
pub mod listen;
pub mod live;
pub mod openai;
pub mod pages;
pub mod probes;
pub mod rag;
pub mod realtime;
pub mod tls;
pub mod unread_body;
pub mod upload;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::cache::Cache;
pub use crate::driver::SessionLags;
use crate::driver::enrich::Enricher;
use crate::enrich::Enrichment;
use crate::keywords::KeywordExtractor;
use crate::transcribe::Transcriber;

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub transcriber: Arc<Transcriber>,
    /// Keyword extraction for finals; `None` when `llm.enabled` is off.
    pub keywords: Option<Arc<KeywordExtractor>>,
    /// Shared result cache (Redis or in-memory).
    pub cache: Cache,
    /// Retrieval over indexed documents (connects on first use).
    pub rag: Arc<crate::rag::RagSlot>,
    /// What finals go through after they are sent (keywords, RAG), for every transport.
    pub enrichers: Arc<[Arc<dyn Enricher>]>,
    /// Open `/ws` sessions (admission control).
    pub sessions: Arc<AtomicUsize>,
    /// Each open session's decode lag, for the monitor.
    pub lags: SessionLags,
    pub started: Instant,
    /// Tokens and the Origin allow-list.
    pub access: Arc<access::Access>,
    /// Open `/ws` sessions, SSE streams and uploads per client address
    /// (`server.max_connections_per_client`).
    pub clients: access::ClientConnections,
    /// Open TCP connections, in all and per address (`server.max_connections*`).
    pub connections: conn::OpenConnections,
    /// Set once on SIGTERM / ctrl-c: sessions finish their last finals and close with 1001.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// The backends' latest state (LLM, cache, RAG), probed in the background: what
    /// `/api/status`, its stream, `/ready` and `/metrics` show, however many ask.
    pub probes: probes::Probes,
}

impl AppState {
    /// Builds the shared state: connects the cache (Redis when `cache.redis_url` is set, in
    /// memory otherwise), the keyword extractor (when `llm.enabled`) and RAG.
    pub async fn new(transcriber: Transcriber) -> Self {
        let config = Arc::clone(&transcriber.config);
        let cache = match &config.cache.redis_url {
            Some(url) => Cache::redis(url, config.cache.max_entries).await,
            None => Cache::memory(config.cache.max_entries),
        };
        let enrichment = Enrichment::new(&config, &cache);
        if config.rag.enabled {
            // Connect now so the first request does not wait; failures are retried on use.
            let slot = Arc::clone(&enrichment.rag);
            tokio::spawn(async move {
                let _ = slot.get().await;
            });
        }
        start_pruning(&config.server);
        let every = Duration::from_millis(config.server.monitor_interval_ms);
        let probes =
            probes::Probes::start(every, enrichment.keywords.as_ref(), &cache, &enrichment.rag);
        Self {
            probes,
            keywords: enrichment.keywords,
            rag: enrichment.rag,
            enrichers: enrichment.enrichers,
            cache,
            transcriber: Arc::new(transcriber),
            sessions: Arc::new(AtomicUsize::new(0)),
            lags: SessionLags::default(),
            started: Instant::now(),
            access: Arc::new(access::Access::new(&config.server)),
            clients: access::ClientConnections::default(),
            connections: conn::OpenConnections::default(),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Tells every open session to finish (graceful shutdown).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Waits until every `/ws` session has ended, or `grace` has passed; true when all ended.
    pub async fn sessions_ended(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while self.sessions.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

/// Deletes transcripts older than `server.outputs_max_age_days` (0 keeps them), now and hourly.
fn start_pruning(server: &crate::config::ServerConfig) {
    let days = server.outputs_max_age_days;
    if days == 0 {
        return;
    }
    let max_age = Duration::from_secs(days.saturating_mul(86_400));
    let dir = server.outputs_dir.clone();
    tokio::spawn(crate::outputs::prune::run(
        dir,
        max_age,
        crate::outputs::prune::EVERY,
    ));
}

pub fn app(state: AppState) -> Router {
    let max_upload = state.transcriber.config.server.max_upload_bytes;
    // Uploads count against their address's place limit and end on shutdown.
    let long = || axum::middleware::from_fn_with_state(state.clone(), limits::long_request);
    Router::new()
        .route("/", get(pages::index))
        .route("/static/{file}", get(pages::static_file))
        .route("/ws", get(ws::upgrade))
        .route("/v1/listen", get(deepgram::upgrade))
        .route("/v1/realtime", get(realtime::upgrade))
        .route("/health", get(api::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/api/config", get(api::config))
        .route("/api/status", get(api::status))
        .route("/api/status/stream", get(api::status_stream))
        .route("/cache/status", get(api::cache_status))
        .route(
            "/index",
            post(rag::index)
                .route_layer(long())
                .get(rag::list_sources)
                .delete(rag::delete_source)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/search", post(rag::search))
        .route("/query", post(rag::query))
        .route("/embed", post(rag::embed))
        .route("/embed/batch", post(rag::embed_batch))
        .route(
            "/api/transcribe",
            post(api::transcribe)
                .route_layer(long())
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route(
            "/v1/audio/transcriptions",
            post(openai::transcriptions)
                .route_layer(long())
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_token,
        ))
        .layer(axum::middleware::from_fn(unread_body::close_if_unread))
        .with_state(state)
}

pub use listen::serve_on;

/// Serves `app(state)` on `listener` until `shutdown` resolves (see [`serve_on`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, state, shutdown).await
}

/// An API error: an HTTP status and a JSON body `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::audio::AudioError> for AppError {
    fn from(e: crate::audio::AudioError) -> Self {
        let status = if e.is_client_error() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self::new(status, e.code(), e.to_string())
    }
}
