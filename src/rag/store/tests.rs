//! Tests: the embedded backend on temporary directories (real qdrant-edge).

use super::*;

const DIM: usize = 8;
// Term ids spread over the whole u32 range, as hashed terms are.
const TRAFFIC: u32 = 7;
const ACCIDENT: u32 = 2_166_136_261;
const MEETING: u32 = 123_456;
const BUDGET: u32 = u32::MAX;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("sori-store-test-{}", Uuid::new_v4()));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unit vector along `axis`, slightly tilted towards `axis + 1` so no two are equal.
fn axis(axis: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[axis % DIM] = 1.0;
    v[(axis + 1) % DIM] = tilt;
    v
}

fn sparse(pairs: &[(u32, f32)]) -> SparseVector {
    SparseVector {
        indices: pairs.iter().map(|p| p.0).collect(),
        values: pairs.iter().map(|p| p.1).collect(),
    }
}

fn chunk(
    source: &str,
    index: u32,
    text: &str,
    dense: Vec<f32>,
    terms: &[(u32, f32)],
) -> StoredChunk {
    StoredChunk {
        text: text.to_owned(),
        source: source.to_owned(),
        page: Some(index + 1),
        date: Some("2024-05-01".to_owned()),
        chunk_index: index,
        dense,
        sparse: sparse(terms),
    }
}

/// Three sources, four chunks.
fn corpus() -> Vec<StoredChunk> {
    vec![
        chunk(
            "roads.pdf",
            0,
            "traffic accident on the bridge",
            axis(0, 0.1),
            &[(TRAFFIC, 1.0), (ACCIDENT, 1.0)],
        ),
        chunk(
            "roads.pdf",
            1,
            "traffic is heavy downtown",
            axis(1, 0.1),
            &[(TRAFFIC, 1.0)],
        ),
        chunk(
            "minutes.txt",
            0,
            "meeting about the budget",
            axis(2, 0.1),
            &[(MEETING, 1.0), (BUDGET, 2.0)],
        ),
        StoredChunk {
            page: None,
            date: None,
            ..chunk(
                "notes.md",
                0,
                "budget notes",
                axis(3, 0.1),
                &[(BUDGET, 1.0)],
            )
        },
    ]
}

async fn filled(dir: &Path) -> VectorStore {
    let store = VectorStore::open_embedded(dir, DIM).expect("open store");
    store.upsert(corpus()).await.expect("upsert");
    store
}

#[tokio::test]
async fn dense_search_returns_nearest_first_with_payload() {
    let dir = TempDir::new();
    let store = filled(&dir.0).await;
    assert_eq!(store.kind(), "qdrant-edge");
    assert_eq!(store.dim(), DIM);
    assert!(store.healthy().await);

    // Closest to axis 2 ("meeting"), a little towards axis 0; not normalised on purpose.
    let mut query = axis(2, 0.0);
    query[0] = 0.3;
    query.iter_mut().for_each(|v| *v *= 5.0);
    let hits = store.search_dense(&query, 3).await.expect("search");
    assert_eq!(hits.len(), 3);
    let best = &hits[0];
    assert_eq!(best.source, "minutes.txt");
    assert_eq!(best.text, "meeting about the budget");
    assert_eq!(best.chunk_index, 0);
    assert_eq!(best.page, Some(1));
    assert_eq!(best.date.as_deref(), Some("2024-05-01"));
    assert_eq!(best.id, point_id("minutes.txt", 0).to_string());
    assert_eq!(hits[1].source, "roads.pdf");
    assert_eq!(hits[1].chunk_index, 0);
    // Cosine similarity: in (0, 1], independent of the query's length, best first.
    assert!(
        best.score > 0.9 && best.score <= 1.0 + 1e-5,
        "score {}",
        best.score
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // Optional fields come back as None.
    let hits = store.search_dense(&axis(3, 0.1), 1).await.expect("search");
    assert_eq!(hits[0].source, "notes.md");
    assert_eq!((hits[0].page, hits[0].date.as_deref()), (None, None));
    assert!(
        (hits[0].score - 1.0).abs() < 1e-4,
        "score {}",
        hits[0].score
    );

    assert!(
        store
            .search_dense(&query, 0)
            .await
            .expect("top 0")
            .is_empty()
    );
}

#[tokio::test]
async fn sparse_search_ranks_by_overlapping_terms() {
    let dir = TempDir::new();
    let store = filled(&dir.0).await;

    // "traffic accident": the chunk with both terms first, the one with "traffic" next,
    // chunks sharing no term are not returned.
    let hits = store
        .search_sparse(&sparse(&[(ACCIDENT, 1.0), (TRAFFIC, 1.0)]), 10)
        .await
        .expect("sparse search");
    let got: Vec<_> = hits
        .iter()
        .map(|h| (h.source.as_str(), h.chunk_index))
        .collect();
    assert_eq!(got, [("roads.pdf", 0), ("roads.pdf", 1)]);
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);
    assert_eq!(hits[0].text, "traffic accident on the bridge");

    // A heavier weight on the stored term ranks that chunk first.
    let hits = store
        .search_sparse(&sparse(&[(BUDGET, 1.0)]), 10)
        .await
        .expect("sparse search");
    let got: Vec<_> = hits.iter().map(|h| h.source.as_str()).collect();
    assert_eq!(got, ["minutes.txt", "notes.md"]);

    let none = store
        .search_sparse(&sparse(&[(99, 1.0)]), 10)
        .await
        .expect("search");
    assert!(none.is_empty());
    let empty = store
        .search_sparse(&SparseVector::default(), 10)
        .await
        .expect("search");
    assert!(empty.is_empty());
}

#[tokio::test]
async fn reupsert_overwrites_and_delete_removes_one_source() {
    let dir = TempDir::new();
    let store = filled(&dir.0).await;
    assert_eq!(store.count().await.expect("count"), 4);

    // Re-index roads.pdf with new text: same ids, no duplicates.
    let mut again: Vec<_> = corpus()
        .into_iter()
        .filter(|c| c.source == "roads.pdf")
        .collect();
    again[0].text = "traffic accident cleared".to_owned();
    store.upsert(again).await.expect("re-upsert");
    assert_eq!(store.count().await.expect("count"), 4);
    let hits = store.search_dense(&axis(0, 0.1), 1).await.expect("search");
    assert_eq!(hits[0].text, "traffic accident cleared");

    let sources = store.sources().await.expect("sources");
    assert_eq!(
        sources,
        [
            ("minutes.txt".to_owned(), 1),
            ("notes.md".to_owned(), 1),
            ("roads.pdf".to_owned(), 2)
        ]
    );

    assert_eq!(store.delete_source("roads.pdf").await.expect("delete"), 2);
    assert_eq!(store.count().await.expect("count"), 2);
    let sources = store.sources().await.expect("sources");
    assert_eq!(
        sources,
        [("minutes.txt".to_owned(), 1), ("notes.md".to_owned(), 1)]
    );
    let hits = store.search_dense(&axis(0, 0.1), 10).await.expect("search");
    assert!(hits.iter().all(|h| h.source != "roads.pdf"));
    assert_eq!(
        store
            .delete_source("roads.pdf")
            .await
            .expect("delete again"),
        0
    );
    assert_eq!(
        store
            .delete_source("nothing.pdf")
            .await
            .expect("delete unknown"),
        0
    );
    // A source name that is a prefix of another does not match it.
    assert_eq!(
        store.delete_source("notes").await.expect("delete prefix"),
        0
    );
    assert_eq!(store.count().await.expect("count"), 2);
}

#[tokio::test]
async fn replacing_a_source_stores_the_new_version_before_the_old_one_goes() {
    let dir = TempDir::new();
    let store = filled(&dir.0).await;
    let roads = |text: &str| vec![chunk("roads.pdf", 0, text, axis(0, 0.1), &[(TRAFFIC, 1.0)])];
    // One chunk replaces the two written by `upsert` (points without a version).
    let replaced = store
        .replace_source("roads.pdf", roads("version two"))
        .await
        .expect("replace");
    assert_eq!(replaced, 2);
    assert_eq!(store.count().await.expect("count"), 3);
    let replaced = store
        .replace_source("roads.pdf", roads("version three"))
        .await
        .expect("replace again");
    assert_eq!(replaced, 1, "only the earlier version is deleted");
    let hits = store.search_dense(&axis(0, 0.1), 10).await.expect("search");
    let roads_texts: Vec<&str> = hits
        .iter()
        .filter(|h| h.source == "roads.pdf")
        .map(|h| h.text.as_str())
        .collect();
    assert_eq!(roads_texts, ["version three"]);
    assert_eq!(store.count().await.expect("count"), 3, "other sources kept");

    // A new version that cannot be stored (a vector of the wrong size) leaves the old one.
    let mut bad = roads("version four");
    bad[0].dense = vec![0.5; DIM + 1];
    let err = store
        .replace_source("roads.pdf", bad)
        .await
        .expect_err("wrong size");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let hits = store.search_dense(&axis(0, 0.1), 1).await.expect("search");
    assert_eq!(hits[0].text, "version three");
    assert_eq!(store.count().await.expect("count"), 3);

    // Chunks of another source cannot replace this one.
    let err = store
        .replace_source("minutes.txt", roads("stray"))
        .await
        .expect_err("another source");
    assert!(err.to_string().contains("minutes.txt"), "{err}");
    assert_eq!(store.count().await.expect("count"), 3);
}

#[tokio::test]
async fn reopening_keeps_data_and_refuses_another_dimension() {
    let dir = TempDir::new();
    {
        let store = filled(&dir.0).await;
        store.delete_source("notes.md").await.expect("delete");
    }
    let store = VectorStore::open_embedded(&dir.0, DIM).expect("reopen");
    assert_eq!(store.count().await.expect("count"), 3);
    let hits = store.search_dense(&axis(2, 0.1), 1).await.expect("search");
    assert_eq!(hits[0].text, "meeting about the budget");
    let hits = store
        .search_sparse(&sparse(&[(TRAFFIC, 1.0)]), 5)
        .await
        .expect("search");
    assert_eq!(hits.len(), 2);

    // While open, a second opener of the same directory is refused (the engine's lock).
    let second = VectorStore::open_embedded(&dir.0, DIM).expect_err("second opener");
    assert!(matches!(second, StoreError::Unavailable(_)), "{second}");
    assert!(
        second.to_string().contains("another sori process"),
        "{second}"
    );
    drop(store);

    let err = VectorStore::open_embedded(&dir.0, 16).expect_err("other dimension");
    let message = err.to_string();
    assert!(matches!(
        err,
        StoreError::DimensionMismatch {
            stored: 8,
            requested: 16,
            ..
        }
    ));
    assert!(message.contains("8-dimensional"), "{message}");
    assert!(message.contains("16-dimensional"), "{message}");
    assert!(message.contains(&dir.0.display().to_string()), "{message}");
    assert!(message.contains("new directory"), "{message}");

    // The refused open changed nothing.
    let store = VectorStore::open_embedded(&dir.0, DIM).expect("reopen after refusal");
    assert_eq!(store.count().await.expect("count"), 3);
}

#[tokio::test]
async fn wrong_vectors_are_invalid_and_name_the_sizes() {
    let dir = TempDir::new();
    let store = filled(&dir.0).await;

    let mut bad = corpus();
    bad[2].dense = vec![0.5; 5];
    let err = store.upsert(bad).await.expect_err("wrong size");
    let message = err.to_string();
    assert!(matches!(err, StoreError::Invalid(_)), "{message}");
    assert!(
        message.contains("has 5 dimensions, expected 8"),
        "{message}"
    );
    assert!(message.contains("minutes.txt"), "{message}");

    let err = store
        .search_dense(&[1.0; 3], 5)
        .await
        .expect_err("wrong query size");
    assert!(matches!(err, StoreError::Invalid(_)));
    assert!(
        err.to_string().contains("has 3 dimensions, expected 8"),
        "{err}"
    );

    let mut nan = axis(0, 0.0);
    nan[4] = f32::NAN;
    assert!(matches!(
        store.search_dense(&nan, 5).await,
        Err(StoreError::Invalid(_))
    ));

    let uneven = SparseVector {
        indices: vec![1, 2],
        values: vec![1.0],
    };
    let err = store
        .search_sparse(&uneven, 5)
        .await
        .expect_err("uneven sparse");
    assert!(
        err.to_string().contains("2 term ids but 1 weights"),
        "{err}"
    );
    let repeated = sparse(&[(1, 1.0), (1, 2.0)]);
    let err = store
        .search_sparse(&repeated, 5)
        .await
        .expect_err("repeated id");
    assert!(err.to_string().contains("repeats term id 1"), "{err}");

    // Nothing of the rejected batch was written.
    assert_eq!(store.count().await.expect("count"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_run_while_writes_and_flushes_happen() {
    let dir = TempDir::new();
    let store = filled(&dir.0).await;
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let hits = store.search_dense(&axis(i + r, 0.2), 3).await?;
                    assert!(!hits.is_empty());
                    store.search_sparse(&sparse(&[(TRAFFIC, 1.0)]), 3).await?;
                    store.sources().await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..10u32 {
                    let source = format!("batch-{w}.txt");
                    let chunks = (0..20)
                        .map(|i| {
                            let text = format!("round {round} chunk {i}");
                            chunk(&source, i, &text, axis(i as usize, 0.3), &[(MEETING, 1.0)])
                        })
                        .collect();
                    store.upsert(chunks).await?;
                    if round % 3 == 2 {
                        assert_eq!(store.delete_source(&source).await?, 20);
                    }
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in readers.into_iter().chain(writers) {
        task.await.expect("task").expect("store call");
    }
    assert_eq!(store.count().await.expect("count"), 4 + 2 * 20);
}

#[tokio::test]
async fn sources_are_listed_without_the_source_index_too() {
    // A store whose segments lack the `source` index (made by hand here) is still listed,
    // by scrolling instead of the facet.
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).expect("mkdir");
    drop(EdgeShard::new(&dir.0, edge_layout(DIM)).expect("bare shard"));
    let store = filled(&dir.0).await;
    let sources = store.sources().await.expect("sources");
    assert_eq!(
        sources,
        [
            ("minutes.txt".to_owned(), 1),
            ("notes.md".to_owned(), 1),
            ("roads.pdf".to_owned(), 2)
        ]
    );
    assert_eq!(store.delete_source("roads.pdf").await.expect("delete"), 2);
    assert_eq!(store.sources().await.expect("sources").len(), 2);
}

#[test]
fn refuses_zero_dimension_and_foreign_directories() {
    let dir = TempDir::new();
    assert!(matches!(
        VectorStore::open_embedded(&dir.0, 0),
        Err(StoreError::Invalid(_))
    ));
    std::fs::create_dir_all(&dir.0).expect("mkdir");
    std::fs::write(dir.0.join("holiday.jpg"), b"not a store").expect("write");
    let err = VectorStore::open_embedded(&dir.0, DIM).expect_err("foreign directory");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(dir.0.join("holiday.jpg").is_file());
}

#[test]
fn point_ids_are_deterministic_and_distinct() {
    assert_eq!(point_id("a.pdf", 3), point_id("a.pdf", 3));
    assert_ne!(point_id("a.pdf", 3), point_id("a.pdf", 4));
    assert_ne!(point_id("a1", 2), point_id("a", 12));
}
