//! The embedded backend: Qdrant's engine (qdrant-edge) in this process, data in one directory.

use super::*;

/// The embedded engine.
///
/// Locking: qdrant-edge's `EdgeShard` is `Sync` and guards its own segments, so reads share it
/// freely. Writes go through `writer` because `EdgeShard::flush` *panics* (`try_lock().expect`) if
/// another write holds the WAL at that moment; one writer at a time makes that impossible.
///
/// Durability: qdrant-edge 0.7.2 appends every write to its WAL but never replays it on load, so
/// only flushed segments survive a crash; every write is therefore flushed before it returns.
/// Nor does it ever truncate the WAL: `wal/` grows by the size of every write (about 2.3 KB per
/// 384-d chunk, so ~23 MB per 10,000 chunks indexed or re-indexed) and is only reclaimed by
/// re-indexing into a new directory. Its files must not be removed by hand: the WAL's sequence
/// numbers are the points' versions, and restarting them would make the engine ignore new writes.
#[derive(Clone)]
pub(super) struct EdgeStore {
    pub(super) shard: Arc<EdgeShard>,
    pub(super) writer: Arc<tokio::sync::Mutex<()>>,
    pub(super) dir: PathBuf,
}

pub(super) fn edge_layout(dim: usize) -> EdgeConfig {
    EdgeConfig::builder()
        .vector(
            DENSE,
            EdgeVectorParams::builder(dim, Distance::Cosine).build(),
        )
        .sparse_vector(
            SPARSE,
            EdgeSparseVectorParams::builder()
                .modifier(Modifier::Idf)
                .build(),
        )
        .build()
}

pub(super) fn create_edge(dir: &Path, dim: usize) -> Result<EdgeShard, StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StoreError::Invalid(format!(
                    "{} is not empty and holds no vector store (no {EDGE_CONFIG_FILE}); point the \
                     store at an empty or new directory",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        Err(e) => return Err(io(e)),
    }
    let shard = EdgeShard::new(dir, edge_layout(dim)).map_err(|e| open_error(dir, &e))?;
    let index =
        UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
            field_name: source_path(),
            field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
        }));
    shard.update(index).map_err(|e| open_error(dir, &e))?;
    flush_edge(&shard, dir)?;
    Ok(shard)
}

pub(super) fn load_edge(dir: &Path, dim: usize) -> Result<EdgeShard, StoreError> {
    // Check the layout from the config file before opening, so a mismatch touches nothing.
    let config = match EdgeConfig::load(dir) {
        Some(Ok(config)) => config,
        Some(Err(e)) => return Err(open_error(dir, &e)),
        None => {
            return Err(open_error(
                dir,
                &OperationError::service_error("config file vanished"),
            ));
        }
    };
    let dense = config
        .vectors
        .get(DENSE)
        .ok_or_else(|| foreign_store(dir))?;
    if !config.sparse_vectors.contains_key(SPARSE) || dense.distance != Distance::Cosine {
        return Err(foreign_store(dir));
    }
    if dense.size != dim {
        return Err(StoreError::DimensionMismatch {
            location: dir.display().to_string(),
            stored: dense.size,
            requested: dim,
            hint: "re-index the documents into a new directory with the current model, or switch \
                   back to the model that built this store",
        });
    }
    EdgeShard::load(dir, None).map_err(|e| open_error(dir, &e))
}

fn foreign_store(dir: &Path) -> StoreError {
    StoreError::Invalid(format!(
        "{} holds a qdrant-edge store without sori's layout (cosine vector `{DENSE}` and sparse \
         vector `{SPARSE}`); point sori at a new directory",
        dir.display()
    ))
}

fn open_error(dir: &Path, err: &OperationError) -> StoreError {
    let message = err.to_string();
    // qdrant-edge holds an exclusive `flock` on `wal/`; a second opener gets EWOULDBLOCK, which
    // only shows in the error's text.
    if message.contains("WouldBlock") {
        return StoreError::Unavailable(format!(
            "the embedded vector store at {} is in use by another sori process (its WAL is \
             locked); stop that process or give this one another directory",
            dir.display()
        ));
    }
    StoreError::Unavailable(format!(
        "cannot open the embedded vector store at {}: {message}. If another sori process uses \
         this directory, stop it or give this one another directory; if the files are damaged, \
         re-index into a new directory",
        dir.display()
    ))
}

fn engine_error(dir: &Path, err: &OperationError) -> StoreError {
    match err {
        // Requests the engine itself refuses (the checks above should have caught them first).
        OperationError::WrongVectorDimension { .. }
        | OperationError::ValidationError { .. }
        | OperationError::WrongSparse
        | OperationError::VectorNameNotExists { .. } => StoreError::Invalid(format!(
            "the embedded vector store refused the request: {err}"
        )),
        _ => StoreError::Unavailable(format!(
            "embedded vector store at {} failed: {err}",
            dir.display()
        )),
    }
}

/// Flushes WAL and segments to disk. qdrant-edge panics when a flush fails (`expect`), so the
/// panic is caught here and becomes an error; the write stays in memory and the next flush retries.
fn flush_edge(shard: &EdgeShard, dir: &Path) -> Result<(), StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| shard.flush())).map_err(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown reason".to_owned());
        StoreError::Unavailable(format!(
            "could not write the embedded vector store at {} to disk ({reason}); check free space \
             and permissions",
            dir.display()
        ))
    })
}

/// Runs blocking engine work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        StoreError::Unavailable(format!(
            "embedded vector store task failed ({e}); restart sori if this repeats"
        ))
    })?
}

/// The payload path `source` (built directly: the engine's parsing constructor is test-only).
fn source_path() -> JsonPath {
    JsonPath {
        first_key: SOURCE_KEY.to_owned(),
        rest: Vec::new(),
    }
}

/// `key == value` on a top-level payload key.
fn matches(key: &str, value: &str) -> qdrant_edge::Condition {
    let path = JsonPath {
        first_key: key.to_owned(),
        rest: Vec::new(),
    };
    qdrant_edge::Condition::Field(FieldCondition::new_match(
        path,
        Match::from(value.to_owned()),
    ))
}

/// The points of `source`, of the given versions.
fn source_filter(source: &str, versions: Versions) -> Filter {
    let mut filter = Filter::new_must(matches(SOURCE_KEY, source));
    match versions {
        Versions::All => {}
        Versions::Only(version) => filter
            .must
            .get_or_insert_with(Vec::new)
            .push(matches(VERSION_KEY, &version)),
        Versions::AllBut(version) => filter.must_not = Some(vec![matches(VERSION_KEY, &version)]),
    }
    filter
}

impl EdgeStore {
    /// Runs a read on the blocking pool; engine errors name the directory.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&EdgeShard) -> Result<T, OperationError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shard = Arc::clone(&self.shard);
        let dir = self.dir.clone();
        blocking(move || work(&shard).map_err(|e| engine_error(&dir, &e))).await
    }

    /// Runs a write on the blocking pool while holding the writer lock, then flushes.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&EdgeShard) -> Result<T, OperationError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Taken before entering the blocking pool, so waiting writers do not hold pool threads.
        // Moved into the closure: if the caller's future is dropped, the write still completes.
        let guard = Arc::clone(&self.writer).lock_owned().await;
        let shard = Arc::clone(&self.shard);
        let dir = self.dir.clone();
        blocking(move || {
            let _guard = guard;
            let out = work(&shard).map_err(|e| engine_error(&dir, &e));
            // Flush even after a failed write: earlier batches of the same call may have landed.
            let flushed = flush_edge(&shard, &dir);
            let out = out?;
            flushed?;
            Ok(out)
        })
        .await
    }

    pub(super) async fn upsert(
        &self,
        chunks: Vec<StoredChunk>,
        stamp: Stamp,
    ) -> Result<(), StoreError> {
        let mut points = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            let (indices, values) = sorted_sparse(&chunk.sparse);
            let sparse = qdrant_edge::SparseVector::new(indices, values).map_err(|e| {
                StoreError::Invalid(format!(
                    "chunk {} of {:?}: sparse vector refused: {e}",
                    chunk.chunk_index, chunk.source
                ))
            })?;
            let vectors = HashMap::from([
                (
                    DENSE.to_owned(),
                    VectorPersisted::Dense(chunk.dense.clone()),
                ),
                (SPARSE.to_owned(), VectorPersisted::Sparse(sparse)),
            ]);
            points.push(PointStructPersisted {
                id: PointId::Uuid(stamped_point_id(chunk, &stamp)),
                vector: VectorStructPersisted::Named(vectors),
                payload: Some(Payload(payload_of(chunk, &stamp).into_iter().collect())),
            });
        }
        drop(chunks);
        self.write(move |shard| {
            let mut points = points.into_iter().peekable();
            while points.peek().is_some() {
                let batch: Vec<_> = points.by_ref().take(WRITE_BATCH).collect();
                shard.update(UpdateOperation::PointOperation(
                    PointOperations::UpsertPoints(PointInsertOperations::PointsList(batch)),
                ))?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn delete_points(
        &self,
        source: &str,
        versions: Versions,
    ) -> Result<usize, StoreError> {
        let filter = source_filter(source, versions);
        self.write(move |shard| {
            let matching = shard.count(CountRequest {
                filter: Some(filter.clone()),
                exact: true,
            })?;
            if matching > 0 {
                shard.update(UpdateOperation::PointOperation(
                    PointOperations::DeletePointsByFilter(filter),
                ))?;
            }
            Ok(matching)
        })
        .await
    }

    pub(super) async fn query(
        &self,
        query: VectorInternal,
        using: &str,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                query, using,
            )))),
            filter: None,
            score_threshold: None,
            limit: top_k,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let points = self.read(move |shard| shard.query(request)).await?;
        Ok(points.into_iter().map(edge_hit).collect())
    }

    pub(super) async fn search_dense(
        &self,
        vector: Vec<f32>,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        self.query(VectorInternal::Dense(vector), DENSE, top_k)
            .await
    }

    pub(super) async fn search_sparse(
        &self,
        indices: Vec<u32>,
        values: Vec<f32>,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let sparse = qdrant_edge::SparseVector::new(indices, values)
            .map_err(|e| StoreError::Invalid(format!("query: sparse vector refused: {e}")))?;
        self.query(VectorInternal::Sparse(sparse), SPARSE, top_k)
            .await
    }

    pub(super) async fn count(&self) -> Result<usize, StoreError> {
        self.read(|shard| {
            shard.count(CountRequest {
                filter: None,
                exact: true,
            })
        })
        .await
    }

    /// Counts per source from the keyword index on `source` (a facet: cost grows with the number
    /// of sources, not of chunks). Falls back to scrolling every point if a segment lacks the index.
    pub(super) async fn sources(&self) -> Result<Vec<(String, usize)>, StoreError> {
        self.read(|shard| {
            let request = FacetRequest {
                key: source_path(),
                limit: MAX_SOURCES,
                filter: None,
                exact: true,
            };
            let mut sources: Vec<(String, usize)> = match shard.facet(request) {
                Ok(response) => response
                    .hits
                    .into_iter()
                    .filter_map(|hit| match hit.value {
                        FacetValue::Keyword(source) => Some((source, hit.count)),
                        _ => None,
                    })
                    .collect(),
                Err(OperationError::MissingMapIndexForFacet { .. }) => scroll_sources(shard)?,
                Err(e) => return Err(e),
            };
            sources.sort();
            Ok(sources)
        })
        .await
    }

    pub(super) async fn healthy(&self) -> bool {
        let config_file = self.dir.join(EDGE_CONFIG_FILE);
        let answered = self
            .read(|shard| {
                shard.count(CountRequest {
                    filter: None,
                    exact: false,
                })
            })
            .await;
        // A directory removed under a running store still answers from memory and open mmaps,
        // but the next flush would fail: report it now.
        answered.is_ok() && config_file.is_file()
    }
}

/// Every source with its count by reading each point's `source` (linear in the number of chunks:
/// ~15 ms per 10,000 here).
fn scroll_sources(shard: &EdgeShard) -> Result<Vec<(String, usize)>, OperationError> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut offset = None;
    loop {
        let (records, next) = shard.scroll(ScrollRequest {
            offset,
            limit: Some(SCROLL_PAGE),
            filter: None,
            with_payload: Some(WithPayloadInterface::Fields(vec![source_path()])),
            with_vector: WithVector::Bool(false),
            order_by: None,
        })?;
        for record in records {
            let source = record
                .payload
                .as_ref()
                .and_then(|p| p.0.get(SOURCE_KEY))
                .and_then(Value::as_str)
                .unwrap_or_default();
            *counts.entry(source.to_owned()).or_default() += 1;
        }
        match next {
            Some(next) => offset = Some(next),
            None => break,
        }
    }
    Ok(counts.into_iter().collect())
}

fn edge_hit(point: ScoredPoint) -> Hit {
    let payload = point.payload.map(|p| p.0).unwrap_or_default();
    hit_from_payload(point.id.to_string(), point.score, &payload)
}
