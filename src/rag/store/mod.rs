//! The vector store behind RAG: chunks with a dense and a sparse vector, searched by either.
//!
//! Two backends sit behind one type, [`VectorStore`], because sori runs in two very different places:
//!
//! - **Embedded (`qdrant-edge`, the default).** Qdrant's own engine linked into the binary: no server
//!   to install or run, data in one directory that survives restarts. This is what a single box, a
//!   laptop and the test suite use (no registry here ships a Qdrant server, so tests could not use one).
//! - **Server (`qdrant-client`, production).** A Qdrant server reached over gRPC
//!   (`SORI_QDRANT_URL`), shared by several sori instances and operated on its own (snapshots,
//!   replication, memory of its own).
//!
//! Both hold the same layout, so moving from one to the other is a re-index, not a migration of
//! code: collection `documents`; a named dense vector `dense` (cosine, its size set by the embedding
//! model when the store is created and checked on every open); a named sparse vector `sparse`
//! (term id → weight, computed by sori; the engine's IDF modifier is switched on, so weights should
//! be term frequencies, not TF-IDF); payload `text`, `source`, `page` (optional), `date` (optional),
//! `chunk_index`, `indexed_at` (unix seconds), `version` (set by [`VectorStore::replace_source`]);
//! a keyword index on `source`.
//! Point ids are UUID v5 of (source, chunk index) — and of the version where there is one —,
//! identical in both backends. Re-indexing ([`VectorStore::replace_source`]) writes the new version
//! under fresh ids beside the old one and only then deletes the old one, so a failure half-way
//! never leaves a source with neither.
//!
//! The embedded engine is blocking: every call runs on tokio's blocking pool, never on the async
//! runtime's workers. Writes are serialised by one async mutex and flushed to disk before they
//! return; reads run concurrently with each other and with a write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qdrant_client::qdrant as q;
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams,
    EdgeVectorParams, FacetRequest, FacetValue, FieldCondition, FieldIndexOperations, Filter,
    JsonPath, Match, Modifier, NamedQuery, OperationError, Payload, PayloadFieldSchema,
    PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStructPersisted,
    QueryEnum, QueryRequest, ScoredPoint, ScoringQuery, ScrollRequest, UpdateOperation,
    VectorInternal, VectorPersisted, VectorStructPersisted, WithPayloadInterface, WithVector,
};
use serde_json::{Map, Value};
use uuid::Uuid;

mod edge;
mod server;

#[cfg(test)]
use edge::edge_layout;
use edge::{EdgeStore, create_edge, load_edge};
use server::ServerStore;

/// Collection name, the same in both backends.
const COLLECTION: &str = "documents";
/// Name of the dense vector in every point.
const DENSE: &str = "dense";
/// Name of the sparse vector in every point.
const SPARSE: &str = "sparse";
/// Payload key that `delete_source` and `sources` work on (keyword-indexed).
const SOURCE_KEY: &str = "source";
/// Payload key naming which indexing of its source a point belongs to.
const VERSION_KEY: &str = "version";
/// File qdrant-edge writes its configuration to; its presence marks a directory as a store.
const EDGE_CONFIG_FILE: &str = "edge_config.json";
/// Namespace of the UUID v5 point ids. Never change it: ids of existing stores derive from it.
const POINT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_2c3e_9d4a_4e57_8a0b_5c6d_7e8f_9012);
/// Points per engine write. Bounds the size of one WAL record and the time one write holds the
/// engine's update lock, so searches interleave with a large indexing run.
const WRITE_BATCH: usize = 256;
/// Page size when scrolling the embedded store to list sources.
const SCROLL_PAGE: usize = 1024;
/// Most distinct sources `sources()` reports (one facet request).
const MAX_SOURCES: usize = 100_000;
/// Most results one search returns; larger requests are refused rather than allocated.
const MAX_TOP_K: usize = 10_000;
/// How long `healthy()` waits for a Qdrant server.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// A sparse vector: term ids and their weights (same length, ids unique).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    /// Term ids (any `u32`: hashed terms are fine, the engine maps them to compact ids).
    pub indices: Vec<u32>,
    /// Weight of each term, in the order of `indices`.
    pub values: Vec<f32>,
}

/// One chunk to store.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    /// The chunk's text, returned with every hit.
    pub text: String,
    /// Where the chunk came from (file name or URL); `delete_source` and `sources` group by it.
    pub source: String,
    /// Page in the source, when it has pages.
    pub page: Option<u32>,
    /// Date of the document as given (stored and returned, not interpreted).
    pub date: Option<String>,
    /// Position in the source; with `source` it makes the point id.
    pub chunk_index: u32,
    /// Embedding, exactly [`VectorStore::dim`] values.
    pub dense: Vec<f32>,
    /// Term weights for keyword-style retrieval.
    pub sparse: SparseVector,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Point id (UUID v5 of source and chunk index): the same chunk has the same id in dense and
    /// sparse results, so it can key their fusion.
    pub id: String,
    pub text: String,
    pub source: String,
    pub page: Option<u32>,
    pub date: Option<String>,
    pub chunk_index: u32,
    /// Cosine similarity for dense search, IDF-weighted term overlap for sparse search: the two
    /// scales differ, so fuse by rank, not by score.
    pub score: f32,
}

/// What went wrong in the vector store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot answer now: the server is down or unreachable, the directory is locked by
    /// another process, or the files cannot be read or written.
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    /// The request is wrong (vector size, malformed sparse vector, unusable directory, foreign
    /// collection layout); repeating it will not help.
    #[error("invalid vector store request: {0}")]
    Invalid(String),
    /// The store was built for vectors of another size than the embedding model now makes.
    #[error(
        "the vector store at {location} holds {stored}-dimensional vectors but the embedding model \
         makes {requested}-dimensional ones; {hint}"
    )]
    DimensionMismatch {
        location: String,
        stored: usize,
        requested: usize,
        hint: &'static str,
    },
    /// A filesystem operation on the store's directory failed.
    #[error("vector store directory {}: {source}; check that it exists, is writable and the disk has room", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which versions of a source's points an operation touches.
#[derive(Debug, Clone)]
enum Versions {
    All,
    Only(String),
    AllBut(String),
}

/// The vector store: embedded engine or Qdrant server, same operations and layout.
#[derive(Clone)]
pub struct VectorStore {
    backend: Backend,
    /// Dense vector size, fixed when the store was created (the embedding model's output size).
    dim: usize,
}

#[derive(Clone)]
enum Backend {
    Edge(EdgeStore),
    Server(ServerStore),
}

impl fmt::Debug for VectorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = match &self.backend {
            Backend::Edge(edge) => edge.dir.display().to_string(),
            Backend::Server(server) => server.url.clone(),
        };
        f.debug_struct("VectorStore")
            .field("kind", &self.kind())
            .field("location", &location)
            .field("dim", &self.dim)
            .finish()
    }
}

impl VectorStore {
    /// Opens (or creates) the embedded store under `dir` with vectors of `dim`. Refuses a store
    /// created with another dimension (clear error naming both sizes and the directory, suggesting
    /// re-indexing into a new directory).
    ///
    /// Blocking (reads the directory); call it at start-up or inside `spawn_blocking`. The directory
    /// must be missing, empty, or a store made by this function: a non-empty directory that is not a
    /// store is refused rather than filled. One process at a time: qdrant-edge takes an exclusive
    /// `flock` on the directory's WAL, released when the last clone of the store is dropped.
    pub fn open_embedded(dir: &Path, dim: usize) -> Result<Self, StoreError> {
        check_dim(dim)?;
        let shard = if dir.join(EDGE_CONFIG_FILE).is_file() {
            load_edge(dir, dim)?
        } else {
            create_edge(dir, dim)?
        };
        tracing::info!(dir = %dir.display(), dim, "embedded vector store (qdrant-edge) open");
        Ok(Self {
            backend: Backend::Edge(EdgeStore {
                shard: Arc::new(shard),
                writer: Arc::new(tokio::sync::Mutex::new(())),
                dir: dir.to_path_buf(),
            }),
            dim,
        })
    }

    /// Connects to a Qdrant server and creates collection `documents` if missing (same layout;
    /// refuses a mismatched dimension).
    ///
    /// `url` is the server's gRPC endpoint (port 6334 by default, not the REST port 6333).
    pub async fn connect_server(
        url: &str,
        api_key: Option<&str>,
        dim: usize,
    ) -> Result<Self, StoreError> {
        check_dim(dim)?;
        let server = ServerStore::connect(url, api_key, dim).await?;
        tracing::info!(url, dim, "Qdrant server vector store connected");
        Ok(Self {
            backend: Backend::Server(server),
            dim,
        })
    }

    /// Which backend answers: `"qdrant-edge"` (embedded) or `"qdrant"` (server).
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Edge(_) => "qdrant-edge",
            Backend::Server(_) => "qdrant",
        }
    }

    /// Size of the dense vectors this store holds.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Stores `chunks`, replacing any chunk with the same (source, chunk index).
    ///
    /// Every chunk is checked before anything is written, so a bad chunk rejects the whole call.
    pub async fn upsert(&self, chunks: Vec<StoredChunk>) -> Result<(), StoreError> {
        self.write(chunks, None).await
    }

    /// Stores `chunks` (each of `source`) as the new version of `source`, then deletes every
    /// earlier version; returns how many chunks those had. The new version is complete before
    /// the old one goes, so a failure leaves the old version searchable (and what was written
    /// of the new one is removed again). Searches in between may see both versions.
    pub async fn replace_source(
        &self,
        source: &str,
        chunks: Vec<StoredChunk>,
    ) -> Result<usize, StoreError> {
        if let Some(other) = chunks.iter().find(|c| c.source != source) {
            return Err(StoreError::Invalid(format!(
                "chunk {} names source {:?}, not {source:?}; a source is replaced by its own chunks",
                other.chunk_index, other.source
            )));
        }
        let version = Uuid::new_v4().simple().to_string();
        if let Err(e) = self.write(chunks, Some(&version)).await {
            let partial = Versions::Only(version);
            if let Err(cleanup) = self.delete_points(source, partial).await {
                tracing::warn!(source, error = %cleanup, "a failed re-index left part of its chunks");
            }
            return Err(e);
        }
        self.delete_points(source, Versions::AllBut(version)).await
    }

    async fn write(
        &self,
        chunks: Vec<StoredChunk>,
        version: Option<&str>,
    ) -> Result<(), StoreError> {
        for chunk in &chunks {
            let what = || format!("chunk {} of {:?}", chunk.chunk_index, chunk.source);
            check_dense(&chunk.dense, self.dim, &what)?;
            check_sparse(&chunk.sparse, &what)?;
        }
        if chunks.is_empty() {
            return Ok(());
        }
        let stamp = Stamp {
            indexed_at: unix_seconds(),
            version: version.map(str::to_owned),
        };
        match &self.backend {
            Backend::Edge(edge) => edge.upsert(chunks, stamp).await,
            Backend::Server(server) => server.upsert(chunks, stamp).await,
        }
    }

    /// Deletes every chunk whose payload `source` equals `source`; returns how many were deleted.
    pub async fn delete_source(&self, source: &str) -> Result<usize, StoreError> {
        self.delete_points(source, Versions::All).await
    }

    async fn delete_points(&self, source: &str, versions: Versions) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Edge(edge) => edge.delete_points(source, versions).await,
            Backend::Server(server) => server.delete_points(source, versions).await,
        }
    }

    /// The `top_k` chunks whose dense vectors are nearest to `vector`, best first; `score` is the
    /// cosine similarity (higher is closer).
    pub async fn search_dense(&self, vector: &[f32], top_k: usize) -> Result<Vec<Hit>, StoreError> {
        check_dense(vector, self.dim, &|| "query".to_owned())?;
        check_top_k(top_k)?;
        if top_k == 0 {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Edge(edge) => edge.search_dense(vector.to_vec(), top_k).await,
            Backend::Server(server) => server.search_dense(vector.to_vec(), top_k).await,
        }
    }

    /// The `top_k` chunks sharing the most weight with `vector`, best first; `score` is the sum of
    /// query weight × stored weight × IDF over shared terms. Chunks with no shared term are not
    /// returned.
    pub async fn search_sparse(
        &self,
        vector: &SparseVector,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        check_sparse(vector, &|| "query".to_owned())?;
        check_top_k(top_k)?;
        if top_k == 0 || vector.indices.is_empty() {
            return Ok(Vec::new());
        }
        let (indices, values) = sorted_sparse(vector);
        match &self.backend {
            Backend::Edge(edge) => edge.search_sparse(indices, values, top_k).await,
            Backend::Server(server) => server.search_sparse(indices, values, top_k).await,
        }
    }

    /// Number of chunks stored (exact).
    pub async fn count(&self) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Edge(edge) => edge.count().await,
            Backend::Server(server) => server.count().await,
        }
    }

    /// Every source with its chunk count (for listing and for `/api/status`), sorted by source.
    pub async fn sources(&self) -> Result<Vec<(String, usize)>, StoreError> {
        match &self.backend {
            Backend::Edge(edge) => edge.sources().await,
            Backend::Server(server) => server.sources().await,
        }
    }

    /// Whether the store answers right now (server reachable / shard usable).
    pub async fn healthy(&self) -> bool {
        match &self.backend {
            Backend::Edge(edge) => edge.healthy().await,
            Backend::Server(server) => server.healthy().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks and conversions shared by both backends
// ---------------------------------------------------------------------------------------------

fn check_top_k(top_k: usize) -> Result<(), StoreError> {
    if top_k > MAX_TOP_K {
        return Err(StoreError::Invalid(format!(
            "{top_k} results requested; at most {MAX_TOP_K} are returned per search"
        )));
    }
    Ok(())
}

fn check_dim(dim: usize) -> Result<(), StoreError> {
    if dim == 0 {
        return Err(StoreError::Invalid(
            "vector size 0 requested; pass the embedding model's output size (e.g. 384)".into(),
        ));
    }
    Ok(())
}

fn check_dense(vector: &[f32], dim: usize, what: &dyn Fn() -> String) -> Result<(), StoreError> {
    if vector.len() != dim {
        return Err(StoreError::Invalid(format!(
            "{}: dense vector has {} dimensions, expected {dim} (the size the store was created \
             with); embed with the model that built the store, or re-index into a new store",
            what(),
            vector.len(),
        )));
    }
    if let Some((i, v)) = vector.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StoreError::Invalid(format!(
            "{}: dense vector value {i} is {v}; every value must be a finite number",
            what()
        )));
    }
    Ok(())
}

fn check_sparse(vector: &SparseVector, what: &dyn Fn() -> String) -> Result<(), StoreError> {
    if vector.indices.len() != vector.values.len() {
        return Err(StoreError::Invalid(format!(
            "{}: sparse vector has {} term ids but {} weights; they must pair up one to one",
            what(),
            vector.indices.len(),
            vector.values.len(),
        )));
    }
    let mut seen = HashSet::with_capacity(vector.indices.len());
    if let Some(dup) = vector.indices.iter().find(|&&i| !seen.insert(i)) {
        return Err(StoreError::Invalid(format!(
            "{}: sparse vector repeats term id {dup}; sum the weights of a term into one entry",
            what()
        )));
    }
    if let Some(v) = vector.values.iter().find(|v| !v.is_finite()) {
        return Err(StoreError::Invalid(format!(
            "{}: sparse vector weight {v} is not a finite number",
            what()
        )));
    }
    Ok(())
}

/// The sparse vector's pairs ordered by term id (the engine's scoring walks sorted lists).
fn sorted_sparse(vector: &SparseVector) -> (Vec<u32>, Vec<f32>) {
    let mut pairs: Vec<(u32, f32)> = vector
        .indices
        .iter()
        .copied()
        .zip(vector.values.iter().copied())
        .collect();
    pairs.sort_unstable_by_key(|&(i, _)| i);
    pairs.into_iter().unzip()
}

/// Deterministic point id of a chunk: upserting a source again overwrites its chunks.
fn point_id(source: &str, chunk_index: u32) -> Uuid {
    // The unit separator cannot end a sane source name, so ("a1", 2) and ("a", 12) differ.
    let key = format!("{source}\u{1f}{chunk_index}");
    Uuid::new_v5(&POINT_ID_NAMESPACE, key.as_bytes())
}

/// The point id of a chunk written with `stamp`: a new version gets ids of its own, so it
/// is stored beside the old one instead of over it.
fn stamped_point_id(chunk: &StoredChunk, stamp: &Stamp) -> Uuid {
    match &stamp.version {
        None => point_id(&chunk.source, chunk.chunk_index),
        Some(version) => {
            let key = format!("{}\u{1f}{}\u{1f}{version}", chunk.source, chunk.chunk_index);
            Uuid::new_v5(&POINT_ID_NAMESPACE, key.as_bytes())
        }
    }
}

/// What every point of one write carries beside its chunk.
#[derive(Debug, Clone)]
struct Stamp {
    indexed_at: u64,
    version: Option<String>,
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn payload_of(chunk: &StoredChunk, stamp: &Stamp) -> Map<String, Value> {
    let mut payload = Map::new();
    payload.insert("text".into(), chunk.text.clone().into());
    payload.insert(SOURCE_KEY.into(), chunk.source.clone().into());
    if let Some(page) = chunk.page {
        payload.insert("page".into(), page.into());
    }
    if let Some(date) = &chunk.date {
        payload.insert("date".into(), date.clone().into());
    }
    payload.insert("chunk_index".into(), chunk.chunk_index.into());
    payload.insert("indexed_at".into(), stamp.indexed_at.into());
    if let Some(version) = &stamp.version {
        payload.insert(VERSION_KEY.into(), version.clone().into());
    }
    payload
}

/// Builds a hit from a stored payload. Points written by something else than sori may lack fields;
/// they come back with empty text / source rather than failing the whole search.
fn hit_from_payload(id: String, score: f32, payload: &Map<String, Value>) -> Hit {
    let string = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
    let small_int = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    };
    Hit {
        id,
        text: string("text").unwrap_or_default(),
        source: string(SOURCE_KEY).unwrap_or_default(),
        page: small_int("page"),
        date: string("date"),
        chunk_index: small_int("chunk_index").unwrap_or_default(),
        score,
    }
}

#[cfg(test)]
mod tests;
