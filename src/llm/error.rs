//! What went wrong with a chat completion, sorted by what the caller does about it: retry a
//! connection failure, rest after a server failure, drop a rejected answer.

use async_openai::error::{OpenAIError, StreamError};

use crate::metrics::LlmErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The endpoint could not be reached (worth one retry).
    #[error("{0}")]
    Connection(String),
    /// The endpoint failed or answered an error.
    #[error("{0}")]
    Server(String),
    /// The endpoint is up but its answer is unusable.
    #[error("{0}")]
    Rejected(String),
}

impl CallError {
    /// The `kind` label of `sori_llm_errors_total`.
    pub fn kind(&self) -> LlmErrorKind {
        match self {
            CallError::Connection(_) => LlmErrorKind::Connection,
            CallError::Server(_) => LlmErrorKind::Server,
            CallError::Rejected(_) => LlmErrorKind::Rejected,
        }
    }
}

impl From<OpenAIError> for CallError {
    fn from(e: OpenAIError) -> Self {
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
}

/// The `kind` label of `sori_llm_errors_total` for a failed chat completion, for callers that
/// keep the error itself; the same sorting as `CallError::from`.
pub fn error_kind(e: &OpenAIError) -> LlmErrorKind {
    match e {
        OpenAIError::Reqwest(e) if e.is_connect() || e.is_request() => LlmErrorKind::Connection,
        OpenAIError::JSONDeserialize(..) => LlmErrorKind::Rejected,
        OpenAIError::StreamError(e) if matches!(**e, StreamError::UnknownEvent(_)) => {
            LlmErrorKind::Rejected
        }
        _ => LlmErrorKind::Server,
    }
}

/// The first `max` characters of `s`, for logs and messages that quote an answer.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
