//! `POST /v1/audio/transcriptions`: OpenAI's transcription API over the same decode and
//! transcription path as `/api/transcribe`, so OpenAI's SDKs and tools can use sori as is.
//!
//! Request: a multipart form with `file` (wav, mp3, flac or ogg), `model` (any name: the
//! server's own model answers, and says so in the `openai-model` header), `language` (ko, en,
//! auto), `prompt`, `response_format` (json, text, srt, vtt, verbose_json), `temperature`
//! (checked, then ignored: the server's decoding settings apply) and `timestamp_granularities[]`
//! (segment, word). OpenAI's other fields (`stream`, `include[]`, `chunking_strategy`, …)
//! are accepted and ignored. Errors come in OpenAI's shape:
//! `{"error":{"message","type","param","code"}}`.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::api::{Format, plain, render};
use super::upload::{self, Busy, FormError, Upload, read_form, transcribe_upload};
use super::{AppError, AppState};
use crate::protocol::{Language, ServerMessage};
use crate::stt::filter::compression_ratio;
use crate::transcribe::FileTranscript;

/// Why a transcription request was refused; rendered in OpenAI's error shape.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error(
        "could not read the request as multipart/form-data with the audio in a \"file\" field: {0}"
    )]
    Form(FormError),
    #[error(
        "the upload exceeds this server's limit of {limit} bytes (server.max_upload_bytes); send a smaller file"
    )]
    TooLarge { limit: usize },
    #[error("the form has no \"file\" field; attach the audio (wav, mp3, flac or ogg) as \"file\"")]
    MissingFile,
    #[error("the uploaded \"file\" is empty; send a wav, mp3, flac or ogg file")]
    EmptyFile,
    #[error("response_format {0:?} is not supported; use json, text, srt, vtt or verbose_json")]
    ResponseFormat(String),
    /// The message is `Language`'s own, which lists the accepted codes.
    #[error("{0}")]
    Language(String),
    #[error("timestamp_granularities[] {0:?} is not supported; use segment, word, or both")]
    Granularity(String),
    #[error("temperature {0:?} is not a number from 0 to 1")]
    Temperature(String),
    /// Every file job place is taken (`server.max_file_jobs`): 503 with `Retry-After`.
    #[error("{0}")]
    Busy(Busy),
    /// Size, decoding or transcription failed (the shared path's error).
    #[error("{}", .0.message)]
    Transcription(AppError),
}

impl From<AppError> for OpenAiError {
    fn from(e: AppError) -> Self {
        OpenAiError::Transcription(e)
    }
}

impl OpenAiError {
    fn status(&self) -> StatusCode {
        match self {
            OpenAiError::Form(e) => e.status,
            OpenAiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OpenAiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            // OpenAI answers 400 for a file it cannot decode, where `/api/transcribe` says 422.
            OpenAiError::Transcription(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                StatusCode::BAD_REQUEST
            }
            OpenAiError::Transcription(e) => e.status,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The form field at fault, as OpenAI names it.
    fn param(&self) -> Option<&'static str> {
        match self {
            OpenAiError::Form(_) | OpenAiError::TooLarge { .. } | OpenAiError::Busy(_) => None,
            OpenAiError::MissingFile | OpenAiError::EmptyFile => Some("file"),
            OpenAiError::ResponseFormat(_) => Some("response_format"),
            OpenAiError::Language(_) => Some("language"),
            OpenAiError::Granularity(_) => Some("timestamp_granularities"),
            OpenAiError::Temperature(_) => Some("temperature"),
            OpenAiError::Transcription(e) => e.status.is_client_error().then_some("file"),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            OpenAiError::Form(_) => "invalid_multipart",
            OpenAiError::TooLarge { .. } => "upload_too_large",
            OpenAiError::MissingFile => "missing_file",
            OpenAiError::EmptyFile => "empty_file",
            OpenAiError::ResponseFormat(_) => "unsupported_response_format",
            OpenAiError::Language(_) => "unsupported_language",
            OpenAiError::Granularity(_) => "unsupported_timestamp_granularity",
            OpenAiError::Temperature(_) => "invalid_temperature",
            OpenAiError::Busy(_) => "server_busy",
            OpenAiError::Transcription(e) => e.code,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = matches!(self, OpenAiError::Busy(_)).then(Busy::retry_after);
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = serde_json::json!({ "error": {
            "message": self.to_string(),
            "type": kind,
            "param": self.param(),
            "code": self.code(),
        }});
        let mut response = (status, Json(body)).into_response();
        if let Some((name, value)) = retry_after {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// OpenAI's `response_format` values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ResponseFormat {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

impl std::str::FromStr for ResponseFormat {
    type Err = OpenAiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(ResponseFormat::Json),
            "text" => Ok(ResponseFormat::Text),
            "srt" => Ok(ResponseFormat::Srt),
            "vtt" => Ok(ResponseFormat::Vtt),
            "verbose_json" => Ok(ResponseFormat::VerboseJson),
            other => Err(OpenAiError::ResponseFormat(other.to_owned())),
        }
    }
}

/// The request's options, checked before any audio is decoded.
struct Options {
    language: Language,
    prompt: Option<String>,
    format: ResponseFormat,
    /// `verbose_json` lists `segments` when true (also when no granularity is given).
    segments: bool,
    /// `verbose_json` lists `words` only when asked, as OpenAI does.
    words: bool,
}

impl Options {
    fn parse(
        fields: Vec<(String, String)>,
        default_language: Language,
    ) -> Result<Self, OpenAiError> {
        let mut options = Options {
            language: default_language,
            prompt: None,
            format: ResponseFormat::Json,
            segments: false,
            words: false,
        };
        let mut granularities = false;
        for (name, value) in fields {
            match name.as_str() {
                "language" if !value.trim().is_empty() => {
                    options.language = value.parse().map_err(OpenAiError::Language)?;
                }
                "prompt" if !value.is_empty() => options.prompt = Some(value),
                "response_format" => options.format = value.trim().parse()?,
                "temperature" => match value.trim().parse::<f64>() {
                    Ok(t) if (0.0..=1.0).contains(&t) => {}
                    _ => return Err(OpenAiError::Temperature(value)),
                },
                "timestamp_granularities[]" | "timestamp_granularities" => {
                    granularities = true;
                    match value.trim() {
                        "segment" => options.segments = true,
                        "word" => options.words = true,
                        _ => return Err(OpenAiError::Granularity(value)),
                    }
                }
                "model" => {
                    tracing::debug!(model = %value, "requested model (the server's answers)")
                }
                _ => {}
            }
        }
        options.segments |= !granularities;
        Ok(options)
    }
}

/// `POST /v1/audio/transcriptions`. Refused with 503 and `Retry-After` while
/// `server.max_file_jobs` files are being transcribed; the upload is spooled to a temporary
/// file, never held in memory.
pub async fn transcriptions(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, OpenAiError> {
    let _job = upload::admit(&state).map_err(OpenAiError::Busy)?;
    let limit = state.transcriber.config.server.max_upload_bytes;
    let form = read_form(request, &state).await.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            OpenAiError::TooLarge { limit }
        } else if e.status.is_server_error() {
            OpenAiError::Transcription(e.into())
        } else {
            OpenAiError::Form(e)
        }
    })?;
    let options = Options::parse(form.fields, state.transcriber.config.stt.language)?;
    let (file, file_name) = form.file.ok_or(OpenAiError::MissingFile)?;
    if file.is_empty() {
        return Err(OpenAiError::EmptyFile);
    }
    let transcript = transcribe_upload(
        &state,
        &file,
        file_name.as_deref(),
        Upload {
            language: options.language,
            prompt: options.prompt.clone(),
            keywords: false,
            rag: false,
        },
    )
    .await?;
    // OpenAI has no way to return a partial transcript with an error beside it.
    if let Some(ServerMessage::Error { code, message, .. }) = transcript
        .segments
        .iter()
        .find(|s| matches!(s, ServerMessage::Error { .. }))
    {
        tracing::warn!(%code, %message, "transcription failed");
        return Err(AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "transcription_failed",
            format!("part of the audio could not be transcribed: {message}"),
        )
        .into());
    }
    let mut response = match options.format {
        ResponseFormat::Json => Json(serde_json::json!({
            "text": transcript.text,
            "usage": Usage::of(&transcript),
        }))
        .into_response(),
        ResponseFormat::Text => plain(
            "text/plain; charset=utf-8",
            format!("{}\n", transcript.text),
        ),
        ResponseFormat::Srt => render(Format::Srt, &transcript),
        ResponseFormat::Vtt => render(Format::Vtt, &transcript),
        ResponseFormat::VerboseJson => Json(Verbose::of(&transcript, &options)).into_response(),
    };
    if let Ok(model) = HeaderValue::from_str(&state.transcriber.model_name) {
        response.headers_mut().insert("openai-model", model);
    }
    Ok(response)
}

/// OpenAI's `usage` for models billed by audio duration.
#[derive(Serialize)]
struct Usage {
    r#type: &'static str,
    seconds: f64,
}

impl Usage {
    fn of(transcript: &FileTranscript) -> Self {
        Usage {
            r#type: "duration",
            seconds: transcript.duration_s,
        }
    }
}

/// The `verbose_json` body.
#[derive(Serialize)]
struct Verbose<'a> {
    task: &'static str,
    /// The full English name, as OpenAI gives it ("korean", "english").
    language: String,
    duration: f64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<Vec<Segment<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<Vec<Word<'a>>>,
    usage: Usage,
}

/// One utterance. sori decodes each utterance on its own, so `seek` is its start in 10 ms
/// frames; whisper.cpp's token ids are not kept (`tokens` is empty) and decoding starts at
/// temperature 0.
#[derive(Serialize)]
struct Segment<'a> {
    id: usize,
    seek: u64,
    start: f64,
    end: f64,
    text: &'a str,
    tokens: [u32; 0],
    temperature: f32,
    avg_logprob: f32,
    compression_ratio: f32,
    no_speech_prob: f32,
}

#[derive(Serialize)]
struct Word<'a> {
    word: &'a str,
    start: f64,
    end: f64,
}

impl<'a> Verbose<'a> {
    fn of(transcript: &'a FileTranscript, options: &Options) -> Self {
        let finals = || {
            transcript.segments.iter().filter_map(|s| match s {
                ServerMessage::Final {
                    text,
                    start,
                    end,
                    words,
                    avg_logprob,
                    no_speech_prob,
                    ..
                } => Some((text, *start, *end, words, *avg_logprob, *no_speech_prob)),
                _ => None,
            })
        };
        let segments = options.segments.then(|| {
            finals()
                .enumerate()
                .map(
                    |(id, (text, start, end, _, avg_logprob, no_speech_prob))| Segment {
                        id,
                        seek: (start * 100.0).round() as u64,
                        start,
                        end,
                        text,
                        tokens: [],
                        temperature: 0.0,
                        avg_logprob,
                        compression_ratio: compression_ratio(text),
                        no_speech_prob,
                    },
                )
                .collect()
        });
        // OpenAI's words carry no punctuation ("Americans", not "Americans.").
        let words = options.words.then(|| {
            finals()
                .flat_map(|(_, _, _, words, _, _)| words)
                .filter_map(|w| {
                    let word = w
                        .word
                        .trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation());
                    (!word.is_empty()).then_some(Word {
                        word,
                        start: w.start,
                        end: w.end,
                    })
                })
                .collect()
        });
        Verbose {
            task: "transcribe",
            language: language_name(&transcript.language),
            duration: transcript.duration_s,
            text: &transcript.text,
            segments,
            words,
            usage: Usage::of(transcript),
        }
    }
}

/// Whisper's full name of a language code ("ko" → "korean"); the code itself when Whisper
/// has no such language (an `auto` request that found no speech).
fn language_name(code: &str) -> String {
    let known = code.len() <= 3 && code.bytes().all(|b| b.is_ascii_lowercase());
    known
        .then(|| whisper_rs::get_lang_id(code))
        .flatten()
        .and_then(whisper_rs::get_lang_str_full)
        .unwrap_or(code)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_default_to_json_segments_and_the_server_language() {
        let o = Options::parse(fields(&[("model", "whisper-1")]), Language::Ko).unwrap();
        assert_eq!(o.format, ResponseFormat::Json);
        assert_eq!(o.language, Language::Ko);
        assert!(o.segments && !o.words);
        let o = Options::parse(
            fields(&[
                ("language", "en"),
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "word"),
                ("temperature", "0.2"),
            ]),
            Language::Ko,
        )
        .unwrap();
        assert_eq!(o.language, Language::En);
        assert_eq!(o.format, ResponseFormat::VerboseJson);
        assert!(o.words && !o.segments, "only words were asked for");
    }

    #[test]
    fn bad_options_name_their_field_and_what_is_accepted() {
        let cases = [
            (
                ("response_format", "docx"),
                "response_format",
                "verbose_json",
            ),
            (("language", "fr"), "language", "ko, en or auto"),
            (
                ("timestamp_granularities[]", "char"),
                "timestamp_granularities",
                "word",
            ),
            (("temperature", "hot"), "temperature", "0 to 1"),
        ];
        for ((name, value), param, accepted) in cases {
            let e = Options::parse(fields(&[(name, value)]), Language::Ko)
                .err()
                .unwrap();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert_eq!(e.param(), Some(param));
            assert!(e.to_string().contains(accepted), "{e}");
        }
    }

    #[test]
    fn undecodable_audio_is_a_400_on_file() {
        let e = OpenAiError::from(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable_audio",
            "not audio",
        ));
        assert_eq!(
            (e.status(), e.param(), e.code()),
            (StatusCode::BAD_REQUEST, Some("file"), "undecodable_audio")
        );
    }

    #[test]
    fn language_names_are_whisper_full_names() {
        assert_eq!(language_name("ko"), "korean");
        assert_eq!(language_name("en"), "english");
        assert_eq!(language_name("auto"), "auto");
    }
}
