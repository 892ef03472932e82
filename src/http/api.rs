//! REST handlers: thin wrappers over the shared engine.

use axum::Json;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

use super::access::ClientAddr;
use super::upload::{self, Upload};
use super::{AppError, AppState};
use crate::outputs::{Cue, to_srt, to_text, to_vtt};
use crate::protocol::Language;
use crate::transcribe::FileTranscript;

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn config(State(state): State<AppState>) -> Json<serde_json::Value> {
    let t = &state.transcriber;
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "gpu": t.placement.on_gpu(),
        "decoder": {
            "device": if t.placement.on_gpu() { "gpu" } else { "cpu" },
            "gpus": t.placement.gpus,
            "cpu_reason": t.placement.cpu_reason,
            "workers": t.config.stt.workers,
            "threads": t.config.stt.threads,
        },
        "model": t.model_name,
        "filter_patterns": t.filter.pattern_count(),
        "config": t.config.redacted(),
    }))
}

/// Live state for the monitor: sessions, decoder queue and lag, GPU, LLM, cache.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(status_snapshot(&state).await)
}

/// The same state pushed as server-sent events (`data:` one JSON object per event) every
/// `server.monitor_interval_ms`, for the page's monitor. Each stream holds a place of its
/// client address (`server.max_connections_per_client`, shared with `/ws`: 429 beyond it),
/// and ends when the server stops, so a monitor never holds up a shutdown.
pub async fn status_stream(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, AppError> {
    let limit = state.transcriber.config.server.max_connections_per_client;
    let place = state.clients.admit(peer.ip(), limit).ok_or_else(|| {
        tracing::info!(%peer, limit, "status stream refused: too many from this address");
        super::limits::too_many_from_address(limit)
    })?;
    let every = Duration::from_millis(state.transcriber.config.server.monitor_interval_ms.max(100));
    let mut stopping = state.stopping.subscribe();
    let ticks = futures_util::stream::unfold(
        (state, place, true),
        move |(state, place, first)| async move {
            if !first {
                tokio::time::sleep(every).await;
            }
            let event = Event::default().data(status_snapshot(&state).await.to_string());
            Some((Ok(event), (state, place, false)))
        },
    );
    let stream = futures_util::StreamExt::take_until(ticks, async move {
        super::conn::stopped(&mut stopping).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The monitor's state: local figures read now, the backends (LLM, cache, RAG) as their
/// background probes last found them (`super::probes`), so no request probes a backend.
pub async fn status_snapshot(state: &AppState) -> serde_json::Value {
    use super::probes::Probed;
    let probes = &state.probes;
    let (llm, cache, rag) = tokio::join!(probes.llm(), probes.cache(), probes.rag());
    let llm = match llm {
        None => serde_json::json!({ "enabled": false }),
        Some(Probed::Answered(status)) => serde_json::to_value(status).unwrap_or_default(),
        Some(missing) => serde_json::json!({
            "enabled": true,
            "reachable": false,
            "error": missing.missing(),
        }),
    };
    let cache = match cache {
        Probed::Answered(status) => serde_json::to_value(status).unwrap_or_default(),
        missing => serde_json::json!({ "connected": false, "error": missing.missing() }),
    };
    let rag = match rag {
        Probed::Answered(status) => status,
        missing => serde_json::json!({
            "enabled": state.rag.enabled(),
            "connected": false,
            "error": missing.missing(),
        }),
    };
    serde_json::json!({
        "uptime_s": state.started.elapsed().as_secs(),
        "sessions": state.sessions.load(std::sync::atomic::Ordering::Relaxed),
        "max_sessions": state.transcriber.config.server.max_sessions,
        "max_lag_ms": state.lags.max(),
        "decoder": state.transcriber.pool.snapshot(),
        "headroom": headroom(state),
        "gpu": crate::gpu::gpu_status(),
        "llm": llm,
        "cache": cache,
        "rag": rag,
    })
}

/// What a load balancer needs to decide whether to send this server another stream: free
/// session places, how busy the decoders were and how late finals came over the last minute.
fn headroom(state: &AppState) -> serde_json::Value {
    let sessions = state.sessions.load(std::sync::atomic::Ordering::Relaxed);
    let max_sessions = state.transcriber.config.server.max_sessions;
    serde_json::json!({
        "sessions_free": max_sessions.saturating_sub(sessions),
        "decoder_utilisation": state.transcriber.pool.snapshot().utilisation,
        "final_latency_p95_s": crate::metrics::global().recent_final_latency_p95(),
    })
}

/// Cache type, size and hit rate (the sibling back-end's shape).
pub async fn cache_status(State(state): State<AppState>) -> Json<crate::cache::CacheStatus> {
    Json(state.cache.status().await)
}

pub async fn not_found() -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/protocol.md for /ws and the REST paths",
    )
}

/// Output formats of file transcription.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Text,
    Srt,
    Vtt,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "text" | "txt" => Ok(Format::Text),
            "srt" => Ok(Format::Srt),
            "vtt" => Ok(Format::Vtt),
            other => Err(format!(
                "format {other:?} is not supported; use json, text, srt or vtt"
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TranscribeParams {
    pub language: Option<String>,
    pub format: Option<String>,
    pub prompt: Option<String>,
    /// `true`: each segment gets its keywords (as a live session's `keywords` events).
    pub keywords: Option<String>,
    /// `true`: each segment gets its related documents (as live `rag` events).
    pub rag: Option<String>,
}

/// A `true` / `false` option of `/api/transcribe` (query or form field).
fn flag(name: &'static str, value: Option<&str>) -> Result<bool, AppError> {
    match value.map(str::trim) {
        None => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no" | "") => Ok(false),
        Some(other) => Err(AppError::bad_request(
            "invalid_option",
            format!("{name}={other:?} is not understood; use true or false"),
        )),
    }
}

/// `POST /api/transcribe`: a multipart form with a `file` field (and optional `language`,
/// `format`, `prompt` fields), or the raw audio file as the body with the options in the query.
/// Refused with 503 and `Retry-After` while `server.max_file_jobs` files are being transcribed;
/// the upload is spooled to a temporary file, never held in memory.
pub async fn transcribe(
    State(state): State<AppState>,
    Query(query): Query<TranscribeParams>,
    request: Request,
) -> Response {
    let _job = match upload::admit(&state) {
        Ok(job) => job,
        Err(busy) => return busy.into_response(),
    };
    match transcribe_request(&state, query, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Options checked, upload spooled, transcribed, rendered.
async fn transcribe_request(
    state: &AppState,
    query: TranscribeParams,
    request: Request,
) -> Result<Response, AppError> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (file, file_name, params) = if is_multipart {
        read_multipart(request, state, query).await?
    } else {
        // The options are all in the query: check them before reading the upload.
        FileOptions::parse(state, &query)?;
        let limit = state.transcriber.config.server.max_upload_bytes;
        (upload::spool_body(request, limit).await?, None, query)
    };
    if file.is_empty() {
        return Err(AppError::bad_request(
            "empty_upload",
            "no audio received; send a wav, mp3, flac or ogg file as the body or as the multipart field \"file\"",
        ));
    }
    let options = FileOptions::parse(state, &params)?;
    let request = Upload {
        language: options.language,
        prompt: params.prompt,
        keywords: options.keywords,
        rag: options.rag,
    };
    let transcript = upload::transcribe_upload(state, &file, file_name.as_deref(), request).await?;
    Ok(render(options.format, &transcript))
}

/// `/api/transcribe`'s options, checked.
struct FileOptions {
    language: Language,
    format: Format,
    keywords: bool,
    rag: bool,
}

impl FileOptions {
    fn parse(state: &AppState, params: &TranscribeParams) -> Result<Self, AppError> {
        let language = match params.language.as_deref() {
            Some(l) => l
                .parse::<Language>()
                .map_err(|m| AppError::bad_request("unsupported_language", m))?,
            None => state.transcriber.config.stt.language,
        };
        let format = match params.format.as_deref() {
            Some(f) => f
                .parse::<Format>()
                .map_err(|m| AppError::bad_request("unsupported_format", m))?,
            None => Format::Json,
        };
        let keywords = flag("keywords", params.keywords.as_deref())?;
        if keywords && state.keywords.is_none() {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "keywords_disabled",
                "keyword extraction is off on this server (llm.enabled = false, SORI_KEYWORDS=false); ask without keywords=true",
            ));
        }
        let rag = flag("rag", params.rag.as_deref())?;
        if rag && !state.transcriber.config.rag.enabled {
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rag_disabled",
                "RAG is off on this server (rag.enabled = false, SORI_RAG=false); ask without rag=true",
            ));
        }
        Ok(FileOptions {
            language,
            format,
            keywords,
            rag,
        })
    }
}

/// A transcript in one of `/api/transcribe`'s formats, with the matching content type.
pub(super) fn render(format: Format, transcript: &FileTranscript) -> Response {
    let cues: Vec<Cue> = transcript
        .segments
        .iter()
        .filter_map(Cue::from_final)
        .collect();
    match format {
        Format::Json => Json(transcript).into_response(),
        Format::Text => plain("text/plain; charset=utf-8", to_text(&cues)),
        Format::Srt => plain("application/x-subrip; charset=utf-8", to_srt(&cues)),
        Format::Vtt => plain("text/vtt; charset=utf-8", to_vtt(&cues)),
    }
}

pub(super) fn plain(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn read_multipart(
    request: Request,
    state: &AppState,
    mut params: TranscribeParams,
) -> Result<(upload::Spooled, Option<String>, TranscribeParams), AppError> {
    let form = upload::read_form(request, state).await?;
    for (name, value) in form.fields {
        match name.as_str() {
            "language" => params.language = Some(value),
            "format" => params.format = Some(value),
            "prompt" => params.prompt = Some(value),
            "keywords" => params.keywords = Some(value),
            "rag" => params.rag = Some(value),
            _ => {}
        }
    }
    let (file, file_name) = form.file.ok_or_else(|| {
        AppError::bad_request(
            "missing_file",
            "multipart form has no \"file\" field; attach the audio as \"file\"",
        )
    })?;
    Ok((file, file_name, params))
}
