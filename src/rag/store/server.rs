//! The server backend: a Qdrant server over gRPC (qdrant-client), for production and for
//! several sori instances sharing one collection. Exercised in production and by the compose
//! `rag` profile; no Qdrant server can be installed on the test machines.

use super::*;

/// A Qdrant server over gRPC.
///
/// Not exercised by the test suite (no Qdrant server can be installed on the build machines); it is
/// exercised in production and by the compose `rag` profile. `delete_source` counts then deletes:
/// on a server shared with other writers the returned number can be off by their concurrent writes.
#[derive(Clone)]
pub(super) struct ServerStore {
    client: qdrant_client::Qdrant,
    pub(super) url: String,
}

fn server_error(url: &str, what: &str, err: &qdrant_client::QdrantError) -> StoreError {
    StoreError::Unavailable(format!(
        "Qdrant at {url}: {what} failed: {err}. Check that the server runs and that the URL is \
         its gRPC port (6334 by default, not the REST port 6333)"
    ))
}

impl ServerStore {
    pub(super) async fn connect(
        url: &str,
        api_key: Option<&str>,
        dim: usize,
    ) -> Result<Self, StoreError> {
        // The client's own compatibility check blocks the calling thread and prints to stdout;
        // the health check below is async and logged instead.
        let client = qdrant_client::Qdrant::from_url(url)
            .api_key(api_key)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .skip_compatibility_check()
            .build()
            .map_err(|e| StoreError::Invalid(format!("Qdrant URL {url:?} is unusable: {e}")))?;
        let store = Self {
            client,
            url: url.to_owned(),
        };
        let health = store
            .client
            .health_check()
            .await
            .map_err(|e| server_error(url, "health check", &e))?;
        tracing::info!(url, version = %health.version, "Qdrant server reachable");
        store.ensure_collection(dim).await?;
        Ok(store)
    }

    pub(super) async fn ensure_collection(&self, dim: usize) -> Result<(), StoreError> {
        let url = self.url.as_str();
        let exists = self
            .client
            .collection_exists(COLLECTION)
            .await
            .map_err(|e| server_error(url, "collection check", &e))?;
        if !exists {
            let mut dense = q::VectorsConfigBuilder::default();
            dense.add_named_vector_params(
                DENSE,
                q::VectorParamsBuilder::new(dim as u64, q::Distance::Cosine),
            );
            let mut sparse = q::SparseVectorsConfigBuilder::default();
            sparse.add_named_vector_params(
                SPARSE,
                q::SparseVectorParamsBuilder::default().modifier(q::Modifier::Idf),
            );
            let created = self
                .client
                .create_collection(
                    q::CreateCollectionBuilder::new(COLLECTION)
                        .vectors_config(dense)
                        .sparse_vectors_config(sparse),
                )
                .await;
            if let Err(e) = created {
                // Another sori instance may have created it in the meantime; that is fine.
                let now_exists = self
                    .client
                    .collection_exists(COLLECTION)
                    .await
                    .unwrap_or(false);
                if !now_exists {
                    return Err(server_error(url, "creating collection `documents`", &e));
                }
            } else {
                tracing::info!(url, dim, "created Qdrant collection `documents`");
            }
        }

        let info = self
            .client
            .collection_info(COLLECTION)
            .await
            .map_err(|e| server_error(url, "reading collection `documents`", &e))?
            .result
            .ok_or_else(|| {
                StoreError::Unavailable(format!("Qdrant at {url} sent no info for `documents`"))
            })?;
        let params = info.config.as_ref().and_then(|c| c.params.as_ref());
        let dense = params
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref())
            .and_then(|c| match c {
                q::vectors_config::Config::ParamsMap(map) => map.map.get(DENSE).cloned(),
                q::vectors_config::Config::Params(_) => None,
            });
        let has_sparse = params
            .and_then(|p| p.sparse_vectors_config.as_ref())
            .is_some_and(|s| s.map.contains_key(SPARSE));
        let Some(dense) = dense.filter(|d| d.distance == q::Distance::Cosine as i32 && has_sparse)
        else {
            return Err(StoreError::Invalid(format!(
                "collection `documents` on Qdrant at {url} does not have sori's layout (cosine \
                 vector `{DENSE}` and sparse vector `{SPARSE}`); delete it or point sori at \
                 another Qdrant"
            )));
        };
        if dense.size != dim as u64 {
            return Err(StoreError::DimensionMismatch {
                location: format!("{url} (collection `documents`)"),
                stored: usize::try_from(dense.size).unwrap_or(usize::MAX),
                requested: dim,
                hint: "delete the collection and re-index with the current model, or switch back \
                       to the model that built it",
            });
        }

        if !info.payload_schema.contains_key(SOURCE_KEY) {
            self.client
                .create_field_index(
                    q::CreateFieldIndexCollectionBuilder::new(
                        COLLECTION,
                        SOURCE_KEY,
                        q::FieldType::Keyword,
                    )
                    .wait(true),
                )
                .await
                .map_err(|e| server_error(url, "creating the `source` index", &e))?;
        }
        Ok(())
    }

    pub(super) async fn upsert(
        &self,
        chunks: Vec<StoredChunk>,
        stamp: Stamp,
    ) -> Result<(), StoreError> {
        let points: Vec<q::PointStruct> = chunks
            .iter()
            .map(|chunk| {
                let (indices, values) = sorted_sparse(&chunk.sparse);
                let vectors = HashMap::from([
                    (DENSE.to_owned(), q::Vector::new_dense(chunk.dense.clone())),
                    (SPARSE.to_owned(), q::Vector::new_sparse(indices, values)),
                ]);
                q::PointStruct::new(
                    stamped_point_id(chunk, &stamp).to_string(),
                    vectors,
                    qdrant_client::Payload::from(payload_of(chunk, &stamp)),
                )
            })
            .collect();
        self.client
            .upsert_points_chunked(
                q::UpsertPointsBuilder::new(COLLECTION, points).wait(true),
                WRITE_BATCH,
            )
            .await
            .map_err(|e| server_error(&self.url, "upsert", &e))?;
        Ok(())
    }

    pub(super) async fn delete_points(
        &self,
        source: &str,
        versions: Versions,
    ) -> Result<usize, StoreError> {
        let of_source = q::Condition::matches(SOURCE_KEY, source.to_owned());
        let filter = || match &versions {
            Versions::All => q::Filter::must([of_source.clone()]),
            Versions::Only(version) => q::Filter::must([
                of_source.clone(),
                q::Condition::matches(VERSION_KEY, version.clone()),
            ]),
            Versions::AllBut(version) => q::Filter {
                must: vec![of_source.clone()],
                must_not: vec![q::Condition::matches(VERSION_KEY, version.clone())],
                ..Default::default()
            },
        };
        let matching = self
            .client
            .count(
                q::CountPointsBuilder::new(COLLECTION)
                    .filter(filter())
                    .exact(true),
            )
            .await
            .map_err(|e| server_error(&self.url, "count", &e))?
            .result
            .map_or(0, |r| r.count);
        if matching > 0 {
            self.client
                .delete_points(
                    q::DeletePointsBuilder::new(COLLECTION)
                        .points(filter())
                        .wait(true),
                )
                .await
                .map_err(|e| server_error(&self.url, "delete", &e))?;
        }
        Ok(usize::try_from(matching).unwrap_or(usize::MAX))
    }

    pub(super) async fn query(
        &self,
        query: q::VectorInput,
        using: &str,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        let response = self
            .client
            .query(
                q::QueryPointsBuilder::new(COLLECTION)
                    .query(q::Query::new_nearest(query))
                    .using(using)
                    .limit(top_k as u64)
                    .with_payload(true),
            )
            .await
            .map_err(|e| server_error(&self.url, "search", &e))?;
        Ok(response
            .result
            .into_iter()
            .map(|point| {
                let id = match point.id.and_then(|id| id.point_id_options) {
                    Some(q::point_id::PointIdOptions::Uuid(uuid)) => uuid,
                    Some(q::point_id::PointIdOptions::Num(num)) => num.to_string(),
                    None => String::new(),
                };
                let payload: Map<String, Value> =
                    qdrant_client::Payload::from(point.payload).into();
                hit_from_payload(id, point.score, &payload)
            })
            .collect())
    }

    pub(super) async fn search_dense(
        &self,
        vector: Vec<f32>,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        self.query(q::VectorInput::new_dense(vector), DENSE, top_k)
            .await
    }

    pub(super) async fn search_sparse(
        &self,
        indices: Vec<u32>,
        values: Vec<f32>,
        top_k: usize,
    ) -> Result<Vec<Hit>, StoreError> {
        self.query(q::VectorInput::new_sparse(indices, values), SPARSE, top_k)
            .await
    }

    pub(super) async fn count(&self) -> Result<usize, StoreError> {
        let count = self
            .client
            .count(q::CountPointsBuilder::new(COLLECTION).exact(true))
            .await
            .map_err(|e| server_error(&self.url, "count", &e))?
            .result
            .map_or(0, |r| r.count);
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// One exact facet request on the keyword-indexed `source` (at most [`MAX_SOURCES`] values).
    pub(super) async fn sources(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let response = self
            .client
            .facet(
                q::FacetCountsBuilder::new(COLLECTION, SOURCE_KEY)
                    .exact(true)
                    .limit(MAX_SOURCES as u64),
            )
            .await
            .map_err(|e| server_error(&self.url, "listing sources", &e))?;
        let mut sources: Vec<(String, usize)> = response
            .hits
            .into_iter()
            .filter_map(|hit| {
                let value = match hit.value?.variant? {
                    q::facet_value::Variant::StringValue(s) => s,
                    q::facet_value::Variant::IntegerValue(i) => i.to_string(),
                    q::facet_value::Variant::BoolValue(b) => b.to_string(),
                };
                Some((value, usize::try_from(hit.count).unwrap_or(usize::MAX)))
            })
            .collect();
        sources.sort();
        Ok(sources)
    }

    pub(super) async fn healthy(&self) -> bool {
        matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, self.client.health_check()).await,
            Ok(Ok(_))
        )
    }
}
