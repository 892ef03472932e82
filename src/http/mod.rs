//! The HTTP surface: `app(state)` builds the router; `serve` runs it until shutdown.

pub mod access;
pub mod api;
pub mod health;
pub mod openai;
pub mod pages;
pub mod rag;
pub mod tls;
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
    /// Open `/ws` connections per client address.
    pub clients: access::ClientConnections,
    /// Set once on SIGTERM / ctrl-c: sessions finish their last finals and close with 1001.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
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
        Self {
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

pub fn app(state: AppState) -> Router {
    let max_upload = state.transcriber.config.server.max_upload_bytes;
    Router::new()
        .route("/", get(pages::index))
        .route("/static/{file}", get(pages::static_file))
        .route("/ws", get(ws::upgrade))
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
            post(api::transcribe).layer(DefaultBodyLimit::max(max_upload)),
        )
        .route(
            "/v1/audio/transcriptions",
            post(openai::transcriptions).layer(DefaultBodyLimit::max(max_upload)),
        )
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_token,
        ))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, state, shutdown).await
}

/// Serves `app(state)` on any listener (plain TCP, or [`tls::TlsListener`]).
pub async fn serve_on<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    access::ClientAddr:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    // Client addresses for the per-client connection limit.
    let service = app(state).into_make_service_with_connect_info::<access::ClientAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
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
