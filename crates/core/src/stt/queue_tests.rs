//! The pool's ordering and cancellation rules, driven by the scripted decoder (a test double:
//! no model; each answer names the seconds of audio it was given, which is how a test tells the
//! requests apart).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Priority;
use crate::audio::TARGET_SAMPLE_RATE;
use crate::stt::engine::{DecodeOutcome, DecodeRequest, SttPool};
use crate::stt::scripted::{Script, ScriptedDecoder};
use crate::stt::{DecodeOptions, SttError};

fn pool(workers: usize, script: &Arc<Script>) -> SttPool {
    let script = Arc::clone(script);
    SttPool::start(workers, 16, move || {
        Ok(ScriptedDecoder::new(Arc::clone(&script)))
    })
    .unwrap()
}

/// `seconds` of audio (the job's name in the script's calls) with an optional cancel flag.
async fn submit(
    pool: &SttPool,
    job_id: u64,
    seconds: f32,
    priority: Priority,
    cancel: Option<Arc<AtomicBool>>,
    reply: &mpsc::UnboundedSender<DecodeOutcome>,
) {
    let samples = (seconds * TARGET_SAMPLE_RATE as f32) as usize;
    let opts = DecodeOptions {
        cancel,
        ..DecodeOptions::default()
    };
    pool.reserve().await.unwrap().send(DecodeRequest {
        job_id,
        audio: Arc::from(vec![0.1f32; samples]),
        opts,
        priority,
        reply: reply.clone(),
    });
}

/// Waits until the script has been asked for `n` decodes.
async fn until_calls(script: &Script, n: usize) {
    let started = Instant::now();
    while script.calls().len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no decode started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn finals_go_before_partials_and_partials_before_revisions() {
    let script = Script::new().delay(Duration::from_millis(30)).shared();
    let pool = pool(1, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // The worker is busy with job 1 while the others queue, in an order the pool must undo.
    submit(&pool, 1, 1.0, Priority::final_due(at(0)), None, &tx).await;
    until_calls(&script, 1).await;
    submit(&pool, 2, 2.0, Priority::partial_due(at(5)), None, &tx).await;
    submit(&pool, 3, 3.0, Priority::final_due(at(20)), None, &tx).await;
    submit(&pool, 4, 4.0, Priority::final_due(at(10)), None, &tx).await;
    submit(&pool, 5, 5.0, Priority::partial_due(at(1)), None, &tx).await;
    submit(&pool, 6, 6.0, Priority::revision_due(at(0)), None, &tx).await;
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(rx.recv().await.unwrap().job_id);
    }
    assert_eq!(
        order,
        [1, 4, 3, 5, 2, 6],
        "the running one, finals by deadline, then partials by deadline, then revisions"
    );
}

#[tokio::test]
async fn a_final_cancels_the_partial_started_last_when_no_worker_is_free() {
    let script = Script::new().delay(Duration::from_secs(3)).shared();
    let pool = pool(1, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let now = Instant::now();
    submit(&pool, 1, 1.0, Priority::partial_due(now), Some(cancel), &tx).await;
    until_calls(&script, 1).await;
    let final_sent = Instant::now();
    submit(&pool, 2, 2.0, Priority::final_due(now), None, &tx).await;
    let partial = rx.recv().await.unwrap();
    assert_eq!(partial.job_id, 1);
    assert!(matches!(partial.result, Err(SttError::Cancelled)));
    assert!(
        final_sent.elapsed() < Duration::from_secs(1),
        "the partial stopped at once, not after its 3 s"
    );
    assert_eq!(pool.snapshot().partials_preempted, 1);
    let done = rx.recv().await.unwrap();
    assert_eq!(done.job_id, 2);
    assert!(done.result.is_ok());
}

#[tokio::test]
async fn a_final_cancels_a_running_revision_before_any_partial() {
    let script = Script::new().delay(Duration::from_secs(3)).shared();
    let pool = pool(2, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let revision = Arc::new(AtomicBool::new(false));
    let partial = Arc::new(AtomicBool::new(false));
    submit(
        &pool,
        1,
        1.0,
        Priority::revision_due(now),
        Some(Arc::clone(&revision)),
        &tx,
    )
    .await;
    until_calls(&script, 1).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The partial starts last, so by start time alone it would be the one cancelled.
    submit(
        &pool,
        2,
        2.0,
        Priority::partial_due(now),
        Some(Arc::clone(&partial)),
        &tx,
    )
    .await;
    until_calls(&script, 2).await;
    submit(&pool, 3, 3.0, Priority::final_due(now), None, &tx).await;
    let first = rx.recv().await.unwrap();
    assert_eq!(first.job_id, 1, "the revision gave way");
    assert!(matches!(first.result, Err(SttError::Cancelled)));
    assert!(
        !partial.load(std::sync::atomic::Ordering::Relaxed),
        "the partial ran on"
    );
}

#[tokio::test]
async fn a_partial_cancels_a_running_revision_but_never_another_partial() {
    let script = Script::new().delay(Duration::from_secs(3)).shared();
    let pool = pool(1, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let revision = Arc::new(AtomicBool::new(false));
    submit(
        &pool,
        1,
        1.0,
        Priority::revision_due(now),
        Some(Arc::clone(&revision)),
        &tx,
    )
    .await;
    until_calls(&script, 1).await;
    let partial = Arc::new(AtomicBool::new(false));
    submit(
        &pool,
        2,
        2.0,
        Priority::partial_due(now),
        Some(Arc::clone(&partial)),
        &tx,
    )
    .await;
    let first = rx.recv().await.unwrap();
    assert_eq!(first.job_id, 1);
    assert!(matches!(first.result, Err(SttError::Cancelled)));
    until_calls(&script, 2).await;
    // Another partial waits its turn: partials are equals.
    submit(&pool, 3, 3.0, Priority::partial_due(now), None, &tx).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!partial.load(std::sync::atomic::Ordering::Relaxed));
}

#[tokio::test]
async fn a_waiting_revision_is_cancelled_when_a_final_finds_no_free_worker() {
    let script = Script::new().delay(Duration::from_millis(300)).shared();
    let pool = pool(1, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    submit(&pool, 1, 1.0, Priority::final_due(now), None, &tx).await;
    until_calls(&script, 1).await;
    let revision = Arc::new(AtomicBool::new(false));
    submit(
        &pool,
        2,
        2.0,
        Priority::revision_due(now),
        Some(Arc::clone(&revision)),
        &tx,
    )
    .await;
    submit(&pool, 3, 3.0, Priority::final_due(now), None, &tx).await;
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let o = rx.recv().await.unwrap();
        outcomes.push((o.job_id, matches!(o.result, Err(SttError::Cancelled))));
    }
    assert_eq!(outcomes, [(1, false), (3, false), (2, true)]);
    assert_eq!(script.calls().len(), 2, "the revision was never decoded");
}

#[tokio::test]
async fn a_final_leaves_partials_alone_while_a_worker_is_free() {
    let script = Script::new().delay(Duration::from_millis(300)).shared();
    let pool = pool(2, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let now = Instant::now();
    submit(&pool, 1, 1.0, Priority::partial_due(now), Some(cancel), &tx).await;
    until_calls(&script, 1).await;
    submit(&pool, 2, 2.0, Priority::final_due(now), None, &tx).await;
    for _ in 0..2 {
        let outcome = rx.recv().await.unwrap();
        assert!(outcome.result.is_ok(), "job {} failed", outcome.job_id);
    }
    assert_eq!(pool.snapshot().partials_preempted, 0);
    // And a final never cancels another final.
    submit(&pool, 3, 3.0, Priority::final_due(now), None, &tx).await;
    submit(&pool, 4, 4.0, Priority::final_due(now), None, &tx).await;
    submit(&pool, 5, 5.0, Priority::final_due(now), None, &tx).await;
    for _ in 0..3 {
        assert!(rx.recv().await.unwrap().result.is_ok());
    }
}

#[tokio::test]
async fn a_partial_cancelled_while_it_waits_is_never_decoded() {
    let script = Script::new().delay(Duration::from_millis(100)).shared();
    let pool = pool(1, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    submit(&pool, 1, 1.0, Priority::final_due(now), None, &tx).await;
    until_calls(&script, 1).await;
    let cancel = Arc::new(AtomicBool::new(false));
    submit(
        &pool,
        2,
        2.0,
        Priority::partial_due(now),
        Some(cancel.clone()),
        &tx,
    )
    .await;
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(rx.recv().await.unwrap().result.is_ok());
    let skipped = rx.recv().await.unwrap();
    assert!(matches!(skipped.result, Err(SttError::Cancelled)));
    assert_eq!(
        script.calls().len(),
        1,
        "the cancelled partial never reached the decoder"
    );
}

#[tokio::test]
async fn utilisation_counts_the_time_spent_decoding() {
    let script = Script::new().delay(Duration::from_millis(200)).shared();
    let pool = pool(1, &script);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    for job in 0..3 {
        submit(&pool, job, 1.0, Priority::final_due(started), None, &tx).await;
    }
    for _ in 0..3 {
        rx.recv().await.unwrap();
    }
    let busy = pool.snapshot().utilisation;
    // Busy for ~600 ms of the ~600 ms since the pool started: near 1.
    assert!(busy > 0.6, "utilisation {busy}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = pool.snapshot().utilisation;
    assert!(
        later < busy * 0.75,
        "idle time lowers it: {busy} then {later}"
    );
}
