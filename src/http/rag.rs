//! RAG endpoints, with the original system's paths and bodies: `POST /index`, `POST /search`,
//! `POST /query`, `POST /embed`, `POST /embed/batch`, plus `GET /index` (sources) and
//! `DELETE /index?source=…`. Thin: parse, call `rag::Rag`, map errors to JSON.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::rag::embed::{EmbedError, Purpose};
use crate::rag::store::StoreError;
use crate::rag::{DocMeta, RagError};

impl From<RagError> for AppError {
    fn from(e: RagError) -> Self {
        let (status, code) = match &e {
            RagError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            RagError::Disabled => (StatusCode::SERVICE_UNAVAILABLE, "rag_disabled"),
            RagError::NotConnected(_) => (StatusCode::SERVICE_UNAVAILABLE, "rag_unavailable"),
            RagError::UnknownSession => (StatusCode::NOT_FOUND, "unknown_session"),
            RagError::Embed(EmbedError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "embedder_unavailable")
            }
            RagError::Embed(EmbedError::BadAnswer { .. }) => {
                (StatusCode::BAD_GATEWAY, "embedder_bad_answer")
            }
            RagError::Embed(EmbedError::Local { .. }) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "embedder_failed")
            }
            RagError::Store(StoreError::Invalid(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "store_invalid")
            }
            RagError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            RagError::Llm(_) => (StatusCode::SERVICE_UNAVAILABLE, "llm_unavailable"),
        };
        AppError::new(status, code, e.to_string())
    }
}

/// Whether a `Content-Type` names JSON: `application/json` or `application/<x>+json`, with any
/// parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Parses a JSON body, answering 415 when it is not declared as JSON (so a cross-site
/// `text/plain` or form POST, which browsers send without asking, cannot reach a state-changing
/// endpoint) and 400 with what was wrong and the accepted shape.
fn parse<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    shape: &str,
) -> Result<T, AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !content_type.as_deref().is_some_and(is_json) {
        let got = content_type.map_or_else(|| "none".to_owned(), |c| format!("{c:?}"));
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "this endpoint accepts only JSON: send the body with \"Content-Type: application/json\" (got {got}); expected {shape}"
            ),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        AppError::bad_request("invalid_json", format!("{e}; expected a JSON body {shape}"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexBody {
    text: String,
    metadata: DocMeta,
}

const INDEX_SHAPE: &str = r#"{"text": "...", "metadata": {"source": "name", "page": 1, "date": "2026-01-31"}} (page and date optional)"#;

pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let body: IndexBody = parse(&headers, &body, INDEX_SHAPE)?;
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let report = rag
        .index(&body.metadata, &[(body.metadata.page, body.text)])
        .await?;
    Ok(Json(json!({ "status": "indexed", "report": report })))
}

#[derive(Deserialize)]
pub struct SourceQuery {
    source: Option<String>,
}

pub async fn delete_source(
    State(state): State<AppState>,
    Query(q): Query<SourceQuery>,
) -> Result<Json<Value>, AppError> {
    let source = q.source.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        AppError::bad_request(
            "missing_source",
            "name the source to delete: DELETE /index?source=NAME",
        )
    })?;
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let deleted = rag.delete(&source).await?;
    Ok(Json(json!({ "source": source, "deleted": deleted })))
}

pub async fn list_sources(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let sources = rag.store().sources().await.map_err(RagError::Store)?;
    let list: Vec<Value> = sources
        .into_iter()
        .map(|(source, chunks)| json!({ "source": source, "chunks": chunks }))
        .collect();
    Ok(Json(json!({ "sources": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    query: String,
    #[serde(default)]
    top_k: Option<usize>,
}

const SEARCH_SHAPE: &str = r#"{"query": "...", "top_k": 5} (top_k 1-50, optional)"#;

pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let body: SearchBody = parse(&headers, &body, SEARCH_SHAPE)?;
    let top_k = body.top_k.unwrap_or(5);
    if !(1..=50).contains(&top_k) {
        return Err(AppError::bad_request(
            "invalid_top_k",
            format!("top_k {top_k} is out of range; use 1 to 50"),
        ));
    }
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let (hits, timings) = rag.search(&body.query, top_k).await?;
    let hits: Vec<Value> = hits
        .into_iter()
        .map(|h| {
            json!({
                "text": h.text,
                "score": h.score,
                "metadata": { "source": h.source, "page": h.page, "date": h.date, "chunk_index": h.chunk_index },
            })
        })
        .collect();
    Ok(Json(json!({ "hits": hits, "timings": timings })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    query: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    session_id: Option<String>,
}

const QUERY_SHAPE: &str = r#"{"query": "...", "keywords": ["..."], "session_id": "..."} (keywords optional; session_id only to follow up, as a previous answer gave it)"#;

pub async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let body: QueryBody = parse(&headers, &body, QUERY_SHAPE)?;
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let answer = rag
        .query(&body.query, &body.keywords, body.session_id.as_deref())
        .await?;
    Ok(Json(serde_json::to_value(answer).unwrap_or_default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedBody {
    text: String,
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedBatchBody {
    texts: Vec<String>,
    #[serde(default)]
    kind: Option<String>,
}

/// "query" or "passage" (default): which E5 prefix the texts get.
fn purpose(kind: Option<&str>) -> Result<Purpose, AppError> {
    match kind.unwrap_or("passage") {
        "passage" => Ok(Purpose::Passage),
        "query" => Ok(Purpose::Query),
        other => Err(AppError::bad_request(
            "invalid_kind",
            format!("kind {other:?} is not known; use \"query\" or \"passage\""),
        )),
    }
}

pub async fn embed(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let body: EmbedBody = parse(
        &headers,
        &body,
        r#"{"text": "...", "kind": "passage"|"query"}"#,
    )?;
    let purpose = purpose(body.kind.as_deref())?;
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let mut vectors = rag
        .embedder()
        .embed(&[body.text], purpose)
        .await
        .map_err(RagError::from)?;
    Ok(Json(json!({
        "embedding": vectors.pop().unwrap_or_default(),
        "dim": rag.embedder().dim(),
        "model": rag.embedder().model(),
    })))
}

/// Texts per `/embed/batch` request.
const MAX_BATCH: usize = 256;

pub async fn embed_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let body: EmbedBatchBody = parse(
        &headers,
        &body,
        r#"{"texts": ["...", "..."], "kind": "passage"|"query"}"#,
    )?;
    if body.texts.is_empty() || body.texts.len() > MAX_BATCH {
        return Err(AppError::bad_request(
            "invalid_batch",
            format!(
                "texts has {} entries; send 1 to {MAX_BATCH}",
                body.texts.len()
            ),
        ));
    }
    let purpose = purpose(body.kind.as_deref())?;
    let rag = state.rag.get().await.map_err(AppError::from)?;
    let vectors = rag
        .embedder()
        .embed(&body.texts, purpose)
        .await
        .map_err(RagError::from)?;
    Ok(Json(json!({
        "embeddings": vectors,
        "dim": rag.embedder().dim(),
        "model": rag.embedder().model(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_content_types_pass() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(refused), "{refused}");
        }
    }
}
