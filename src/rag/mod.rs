//! Retrieval over indexed documents: chunking, dense embeddings and sparse term vectors, a
//! Qdrant store (embedded by default, a server in production), hybrid search fused by rank,
//! and LLM answers that cite their sources.

pub mod answer;
pub mod chunk;
pub mod embed;
pub mod files;
pub mod guard;
pub mod live;
pub mod pipeline;
pub mod rerank;
pub mod slot;
pub mod sparse;
pub mod store;

pub use pipeline::{DocMeta, Rag};
pub use slot::RagSlot;

/// Why a RAG request failed. `Embed` / `Store` unavailability maps to HTTP 503.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error(transparent)]
    Embed(embed::EmbedError),
    #[error("the vector store failed: {0}")]
    Store(store::StoreError),
    #[error("the LLM could not answer: {0}")]
    Llm(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "RAG is off on this server: start it with rag.enabled = true (SORI_RAG=true) and an embedding endpoint (rag.embed_url, SORI_EMBED_URL)"
    )]
    Disabled,
    #[error("RAG cannot start: {0}; it is retried on the next request")]
    NotConnected(String),
    /// A `/query` named a conversation the server did not issue, or one that expired.
    #[error(
        "session_id is not a conversation this server started, or it expired (conversations end query_ttl_s after their last question); send the query without session_id to start a new one and use the session_id of its answer"
    )]
    UnknownSession,
}

/// Why an HTTP endpoint (embeddings, rerank) answered with an error status.
pub(crate) struct HttpFailure {
    /// A 5xx: the service is unavailable rather than the request wrong.
    pub server_side: bool,
    /// The status and the start of the body.
    pub reason: String,
}

/// The response when its status is a success, else what went wrong.
pub(crate) async fn successful(
    response: reqwest::Response,
) -> Result<reqwest::Response, HttpFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    Err(HttpFailure {
        server_side: status.is_server_error(),
        reason: format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ),
    })
}
