//! File uploads, shared by `POST /api/transcribe` and `POST /v1/audio/transcriptions`: the
//! admission of file jobs (`server.max_file_jobs`: 503 with `Retry-After` when full), the
//! upload spooled to a temporary file as it arrives (never held in memory), and its
//! transcription through the streaming file path (`server.max_file_s`: 413 past it).

use std::path::{Path, PathBuf};

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{AppError, AppState};
use crate::audio::AudioError;
use crate::protocol::Language;
use crate::transcribe::{FileJob, FileRequest, FileTranscript};

/// What a client refused for a full house is told to wait, in seconds.
pub const RETRY_AFTER_S: u64 = 10;

/// The largest text field of a multipart form (the prompt, options): the file goes to disk,
/// everything else is kept in memory, so it is bounded too.
const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Bytes gathered before each write to the spool file.
const SPOOL_BUFFER_BYTES: usize = 256 * 1024;

/// Takes a place for one file job, or says why not: a 503 `server_busy` with `Retry-After`.
pub(super) fn admit(state: &AppState) -> Result<FileJob, Busy> {
    state.transcriber.try_file_job().ok_or_else(|| {
        let limit = state.transcriber.file_jobs_limit();
        tracing::info!(
            limit,
            "file transcription refused: every file job place is taken"
        );
        Busy { limit }
    })
}

/// Every place for a file job is taken (`server.max_file_jobs`).
#[derive(Debug, thiserror::Error)]
#[error(
    "the server is already transcribing {limit} file(s), its limit (server.max_file_jobs); try again in {RETRY_AFTER_S} s"
)]
pub struct Busy {
    pub limit: usize,
}

impl Busy {
    /// The `Retry-After` header this refusal carries.
    pub fn retry_after() -> (header::HeaderName, HeaderValue) {
        (header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S))
    }
}

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let mut response = AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            self.to_string(),
        )
        .into_response();
        let (name, value) = Busy::retry_after();
        response.headers_mut().insert(name, value);
        response
    }
}

/// An upload written to a temporary file (in `std::env::temp_dir()`, `TMPDIR`), removed when
/// this drops: after the transcription, on an error, or when the client goes away.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    bytes: u64,
}

impl Spooled {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The upload's size.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot remove a spooled upload");
        }
    }
}

/// Writes an upload to a fresh temporary file as its pieces arrive, refusing it past `limit`
/// bytes.
struct Spool {
    file: BufWriter<tokio::fs::File>,
    /// Removes the file if the spool is abandoned half-way.
    spooled: Spooled,
    limit: usize,
}

impl Spool {
    async fn create(limit: usize) -> Result<Self, AppError> {
        let path =
            std::env::temp_dir().join(format!("sori-upload-{}", uuid::Uuid::new_v4().simple()));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&path).await.map_err(spool_failed)?;
        Ok(Spool {
            file: BufWriter::with_capacity(SPOOL_BUFFER_BYTES, file),
            spooled: Spooled { path, bytes: 0 },
            limit,
        })
    }

    async fn write(&mut self, piece: &[u8]) -> Result<(), AppError> {
        self.spooled.bytes += piece.len() as u64;
        if self.spooled.bytes > self.limit as u64 {
            return Err(too_large(self.limit));
        }
        self.file.write_all(piece).await.map_err(spool_failed)
    }

    async fn finish(mut self) -> Result<Spooled, AppError> {
        self.file.flush().await.map_err(spool_failed)?;
        Ok(self.spooled)
    }
}

fn spool_failed(e: std::io::Error) -> AppError {
    tracing::error!(error = %e, dir = %std::env::temp_dir().display(), "cannot spool an upload");
    AppError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "upload_not_stored",
        format!("the server could not store the upload for decoding: {e}"),
    )
}

fn too_large(limit: usize) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload_too_large",
        format!(
            "the upload exceeds this server's limit of {limit} bytes (server.max_upload_bytes); send a smaller file"
        ),
    )
}

/// Spools a raw request body (`/api/transcribe` with the audio as the body).
pub(super) async fn spool_body(request: Request, limit: usize) -> Result<Spooled, AppError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut spool = Spool::create(limit).await?;
    let mut body = request.into_body().into_data_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| {
            AppError::bad_request(
                "upload_interrupted",
                format!("the upload could not be read to its end: {e}"),
            )
        })?;
        spool.write(&piece).await?;
    }
    spool.finish().await
}

/// A multipart upload: the `file` field spooled to disk, every other field as text.
#[derive(Debug, Default)]
pub(super) struct UploadForm {
    /// The `file` field and its file name (the last one when there are several).
    pub file: Option<(Spooled, Option<String>)>,
    /// Other fields; repeated names (`timestamp_granularities[]`) appear once per value.
    pub fields: Vec<(String, String)>,
}

/// A multipart body that could not be read. `status` tells a malformed form (400) from one
/// over the upload limit (413).
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
        } else if e.status.is_server_error() {
            "upload_not_stored"
        } else {
            "invalid_multipart"
        };
        AppError::new(e.status, code, e.message)
    }
}

impl From<AppError> for FormError {
    fn from(e: AppError) -> Self {
        FormError {
            status: e.status,
            message: e.message,
        }
    }
}

/// Reads a `multipart/form-data` body (within the route's body limit), spooling the `file`
/// field to disk as it arrives.
pub(super) async fn read_form(request: Request, state: &AppState) -> Result<UploadForm, FormError> {
    let limit = state.transcriber.config.server.max_upload_bytes;
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
    while let Some(mut field) = multipart.next_field().await.map_err(failed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().map(str::to_owned);
            // A second `file` replaces the first, whose spool is removed here.
            form.file = None;
            let mut spool = Spool::create(limit).await?;
            while let Some(piece) = field.chunk().await.map_err(failed)? {
                spool.write(&piece).await?;
            }
            form.file = Some((spool.finish().await?, file_name));
        } else {
            let mut text = Vec::new();
            while let Some(piece) = field.chunk().await.map_err(failed)? {
                if text.len() + piece.len() > MAX_FIELD_BYTES {
                    return Err(FormError {
                        status: StatusCode::BAD_REQUEST,
                        message: format!(
                            "form field {name:?} is longer than {MAX_FIELD_BYTES} bytes; only \"file\" may be large"
                        ),
                    });
                }
                text.extend_from_slice(&piece);
            }
            let text = String::from_utf8(text).map_err(|_| FormError {
                status: StatusCode::BAD_REQUEST,
                message: format!("form field {name:?} is not UTF-8 text"),
            })?;
            form.fields.push((name, text));
        }
    }
    Ok(form)
}

/// What to do with an uploaded file.
pub(super) struct Upload {
    pub language: Language,
    pub prompt: Option<String>,
    pub keywords: bool,
    pub rag: bool,
}

/// Transcribes a spooled upload through the session driver (with the server's keyword and
/// RAG enrichers), decoding it piece by piece off the async runtime: the part of file
/// transcription that `/api/transcribe` and `/v1/audio/transcriptions` share. The extension of
/// `file_name` only speeds up probing; the content decides.
pub(super) async fn transcribe_upload(
    state: &AppState,
    file: &Spooled,
    file_name: Option<&str>,
    upload: Upload,
) -> Result<FileTranscript, AppError> {
    let prompt = match upload.prompt.as_deref() {
        Some(p) => crate::session::check_prompt(p, state.transcriber.config.stt.max_prompt_chars)
            .map_err(|e| AppError::bad_request(e.code, e.message))?,
        None => None,
    };
    let extension =
        file_name.and_then(|n| n.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()));
    let request = FileRequest {
        language: upload.language,
        prompt,
        keywords: upload.keywords,
        rag: upload.rag,
    };
    state
        .transcriber
        .transcribe_file(
            file.path(),
            extension.as_deref(),
            &request,
            &state.enrichers,
        )
        .await
        .map_err(file_error)
}

/// A file's audio error as an HTTP error: 413 past `server.max_file_s`, 422 for a file that
/// cannot be decoded, 500 for the server's own failures.
pub(super) fn file_error(e: AudioError) -> AppError {
    let status = match &e {
        AudioError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        e if e.is_client_error() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "file transcription failed");
    }
    AppError::new(status, e.code(), e.to_string())
}
