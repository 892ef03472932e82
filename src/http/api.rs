//! REST handlers: thin wrappers over the shared engine.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

use super::{AppError, AppState};
use crate::audio::decode::decode_bytes;
use crate::outputs::{Cue, to_srt, to_text, to_vtt};
use crate::protocol::Language;
use crate::transcribe::{FileRequest, FileTranscript};

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn config(State(state): State<AppState>) -> Json<serde_json::Value> {
    let t = &state.transcriber;
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "gpu": crate::gpu_available(),
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
/// `server.monitor_interval_ms`, for the page's monitor.
pub async fn status_stream(
    State(state): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let every = Duration::from_millis(state.transcriber.config.server.monitor_interval_ms.max(100));
    let stream = futures_util::stream::unfold((state, true), move |(state, first)| async move {
        if !first {
            tokio::time::sleep(every).await;
        }
        let event = Event::default().data(status_snapshot(&state).await.to_string());
        Some((Ok(event), (state, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

pub async fn status_snapshot(state: &AppState) -> serde_json::Value {
    let llm = match &state.keywords {
        Some(k) => serde_json::to_value(k.status().await).unwrap_or_default(),
        None => serde_json::json!({ "enabled": false }),
    };
    serde_json::json!({
        "uptime_s": state.started.elapsed().as_secs(),
        "sessions": state.sessions.load(std::sync::atomic::Ordering::Relaxed),
        "max_sessions": state.transcriber.config.server.max_sessions,
        "max_lag_ms": state.lags.max(),
        "decoder": state.transcriber.pool.snapshot(),
        "gpu": crate::gpu::gpu_status(),
        "llm": llm,
        "cache": state.cache.status().await,
        "rag": state.rag.status().await,
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
pub async fn transcribe(
    State(state): State<AppState>,
    Query(query): Query<TranscribeParams>,
    request: Request,
) -> Result<Response, AppError> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (bytes, file_name, params) = if is_multipart {
        read_multipart(request, &state, query).await?
    } else {
        let bytes = Bytes::from_request(request, &state).await.map_err(|e| {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "upload_too_large",
                e.to_string(),
            )
        })?;
        (bytes, None, query)
    };
    if bytes.is_empty() {
        return Err(AppError::bad_request(
            "empty_upload",
            "no audio received; send a wav, mp3, flac or ogg file as the body or as the multipart field \"file\"",
        ));
    }
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
    let request = Upload {
        language,
        prompt: params.prompt,
        keywords,
        rag,
    };
    let transcript = transcribe_upload(&state, bytes, file_name.as_deref(), request).await?;
    Ok(render(format, &transcript))
}

/// What to do with an uploaded file.
pub(super) struct Upload {
    pub language: Language,
    pub prompt: Option<String>,
    pub keywords: bool,
    pub rag: bool,
}

/// Checks an uploaded file's size, decodes it off the async runtime and transcribes it through
/// the session driver (with the server's keyword and RAG enrichers): the part of file
/// transcription that `/api/transcribe` and `/v1/audio/transcriptions` share. The extension of
/// `file_name` only speeds up probing; the content decides.
pub(super) async fn transcribe_upload(
    state: &AppState,
    bytes: Bytes,
    file_name: Option<&str>,
    upload: Upload,
) -> Result<FileTranscript, AppError> {
    let max_upload = state.transcriber.config.server.max_upload_bytes;
    if bytes.len() > max_upload {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload_too_large",
            format!(
                "upload of {} bytes exceeds the limit of {max_upload} bytes",
                bytes.len()
            ),
        ));
    }
    let prompt = match upload.prompt.as_deref() {
        Some(p) => crate::session::check_prompt(p, state.transcriber.config.stt.max_prompt_chars)
            .map_err(|e| AppError::bad_request(e.code, e.message))?,
        None => None,
    };
    let extension =
        file_name.and_then(|n| n.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()));
    let decoded =
        tokio::task::spawn_blocking(move || decode_bytes(bytes.to_vec(), extension.as_deref()))
            .await
            .map_err(|e| {
                AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    let request = FileRequest {
        language: upload.language,
        prompt,
        keywords: upload.keywords,
        rag: upload.rag,
    };
    Ok(state
        .transcriber
        .transcribe_with(decoded, &request, &state.enrichers)
        .await?)
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
) -> Result<(Bytes, Option<String>, TranscribeParams), AppError> {
    let form = read_form(request, state).await?;
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
    let (bytes, file_name) = form.file.ok_or_else(|| {
        AppError::bad_request(
            "missing_file",
            "multipart form has no \"file\" field; attach the audio as \"file\"",
        )
    })?;
    Ok((bytes, file_name, params))
}

/// A multipart upload: the `file` field and every other field as text, in the order sent.
#[derive(Debug, Default)]
pub(super) struct UploadForm {
    /// The `file` field's bytes and file name (the last one when there are several).
    pub file: Option<(Bytes, Option<String>)>,
    /// Other fields; repeated names (`timestamp_granularities[]`) appear once per value.
    pub fields: Vec<(String, String)>,
}

/// A multipart body that could not be read. `status` tells a malformed form (400) from one
/// over the upload limit (413), as axum reports them.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FormError {
    pub status: StatusCode,
    pub message: String,
}

impl From<FormError> for AppError {
    fn from(e: FormError) -> Self {
        let code = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            "upload_too_large"
        } else {
            "invalid_multipart"
        };
        AppError::new(e.status, code, e.message)
    }
}

/// Reads a whole `multipart/form-data` body (within the route's body limit).
pub(super) async fn read_form(request: Request, state: &AppState) -> Result<UploadForm, FormError> {
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| FormError {
            status: e.status(),
            message: e.body_text(),
        })?;
    let failed = |e: axum::extract::multipart::MultipartError| FormError {
        status: e.status(),
        message: e.body_text(),
    };
    let mut form = UploadForm::default();
    while let Some(field) = multipart.next_field().await.map_err(failed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().map(str::to_owned);
            form.file = Some((field.bytes().await.map_err(failed)?, file_name));
        } else {
            form.fields
                .push((name, field.text().await.map_err(failed)?));
        }
    }
    Ok(form)
}
