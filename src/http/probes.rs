//! The backends' state, probed in the background: one task per backend (the keyword LLM's
//! `GET /models`, the cache — a Redis `SCAN` —, RAG's embedder and store) probes every
//! `server.monitor_interval_ms` under [`PROBE_TIMEOUT`] and keeps the latest answer in a
//! `watch` channel. `/api/status`, its SSE stream, `/ready` and `/metrics` read that state, so
//! 200 open monitors cause no more backend traffic than one, and a hanging backend never makes
//! a status request wait.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::cache::{Cache, CacheStatus};
use crate::keywords::{KeywordExtractor, LlmStatus};
use crate::rag::RagSlot;

/// How long one probe may take. Below the 1 s default timeout of Kubernetes probes, the
/// figure `/ready` always used; a backend slower than this is reported unavailable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// The latest probe of one backend.
#[derive(Debug, Clone)]
pub enum Probed<T> {
    /// The first probe is still under way.
    Pending,
    /// What the last probe found.
    Answered(T),
    /// The last probe did not answer within [`PROBE_TIMEOUT`].
    TimedOut,
}

impl<T> Probed<T> {
    /// Why there is no answer, for `error` fields; `None` when there is one.
    pub fn missing(&self) -> Option<String> {
        match self {
            Probed::Answered(_) => None,
            Probed::Pending => Some("not probed yet".to_owned()),
            Probed::TimedOut => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        }
    }
}

/// The latest state of every backend. Cloned into each request; the probing tasks end once
/// every clone is gone (the server state was dropped).
#[derive(Clone)]
pub struct Probes {
    /// The keyword LLM; `None` when `llm.enabled` is off (nothing to probe).
    llm: Option<watch::Receiver<Probed<LlmStatus>>>,
    cache: watch::Receiver<Probed<CacheStatus>>,
    rag: watch::Receiver<Probed<Value>>,
}

impl Probes {
    /// Starts one probing task per backend on the current runtime.
    pub fn start(
        every: Duration,
        keywords: Option<&Arc<KeywordExtractor>>,
        cache: &Cache,
        rag: &Arc<RagSlot>,
    ) -> Self {
        let every = every.max(Duration::from_millis(100));
        let llm = keywords.map(|k| {
            let k = Arc::clone(k);
            spawn_probe(every, move || {
                let k = Arc::clone(&k);
                async move { k.status().await }
            })
        });
        let cache = {
            let c = cache.clone();
            spawn_probe(every, move || {
                let c = c.clone();
                async move { c.status().await }
            })
        };
        let rag = {
            let r = Arc::clone(rag);
            spawn_probe(every, move || {
                let r = Arc::clone(&r);
                async move { r.status().await }
            })
        };
        Self { llm, cache, rag }
    }

    /// The keyword LLM's latest state; `None` when keywords are off.
    pub async fn llm(&self) -> Option<Probed<LlmStatus>> {
        match &self.llm {
            Some(rx) => Some(latest(rx).await),
            None => None,
        }
    }

    pub async fn cache(&self) -> Probed<CacheStatus> {
        latest(&self.cache).await
    }

    /// `RagSlot::status`'s JSON, as last probed.
    pub async fn rag(&self) -> Probed<Value> {
        latest(&self.rag).await
    }
}

/// Probes now and then every `every` until nobody holds the receiver.
fn spawn_probe<T, F, Fut>(every: Duration, probe: F) -> watch::Receiver<Probed<T>>
where
    T: Send + Sync + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let (tx, rx) = watch::channel(Probed::Pending);
    tokio::spawn(async move {
        loop {
            let found = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(answer) => Probed::Answered(answer),
                Err(_) => Probed::TimedOut,
            };
            tx.send_replace(found);
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = tx.closed() => return,
            }
        }
    });
    rx
}

/// The latest state; right after start, waits for the first probe (at most its timeout), so
/// the first `/ready` of a fresh server already names each part's state.
async fn latest<T: Clone>(rx: &watch::Receiver<Probed<T>>) -> Probed<T> {
    let mut rx = rx.clone();
    let first = PROBE_TIMEOUT + Duration::from_millis(200);
    let answered = tokio::time::timeout(first, rx.wait_for(|p| !matches!(p, Probed::Pending)));
    let found = match answered.await {
        Ok(Ok(state)) => Some(state.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| rx.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_task_probes_at_the_interval_however_many_read() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let every = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let rx = spawn_probe(every, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move { n }
        });
        for _ in 0..500 {
            assert!(matches!(latest(&rx).await, Probed::Answered(_)));
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
        for _ in 0..500 {
            assert!(matches!(latest(&rx).await, Probed::Answered(n) if n >= 2));
        }
        let most = started.elapsed().as_millis() / every.as_millis() + 1;
        let probed = calls.load(Ordering::SeqCst);
        assert!(probed as u128 <= most, "{probed} probes, at most {most}");
        drop(rx);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let after = calls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after,
            "the task ends with its readers"
        );
    }

    #[tokio::test]
    async fn a_hanging_backend_times_out_without_holding_readers() {
        let rx = spawn_probe(Duration::from_secs(1), std::future::pending::<u8>);
        assert!(matches!(latest(&rx).await, Probed::TimedOut));
        assert!(Probed::<u8>::TimedOut.missing().unwrap().contains("800 ms"));
    }
}
