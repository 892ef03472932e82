//! A concurrency bound and a circuit breaker for one RAG backend (the embedder, the reranker,
//! the LLM that answers `/query`), as the keyword client has: at most `rag.max_concurrent`
//! calls in flight, the rest wait their turn; after a failure, calls are refused for
//! `rag.retry_after_ms` (then one trial) instead of each waiting for its own timeout.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::RagConfig;
use crate::llm::Breaker;

/// The message of a call the breaker refused.
pub const RESTING: &str = "resting after a failure (circuit open); tried again in a few seconds";

pub struct Guard {
    permits: Semaphore,
    breaker: Breaker,
}

/// The breaker refused the call: the backend failed moments ago and is resting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resting;

impl Guard {
    pub fn new(cfg: &RagConfig) -> Self {
        Self {
            permits: Semaphore::new(cfg.max_concurrent.max(1)),
            breaker: Breaker::new(Duration::from_millis(cfg.retry_after_ms)),
        }
    }

    /// Runs `call` once a place is free and the breaker allows it. An error for which
    /// `outage` is true (unreachable, timed out, 5xx) opens the breaker; any other outcome
    /// (including a bad answer: the backend is up) closes it.
    pub async fn run<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        outage: impl Fn(&E) -> bool,
    ) -> Result<Result<T, E>, Resting> {
        let _permit = self.permits.acquire().await.map_err(|_| Resting)?;
        // Asked after the wait, so calls queued behind a failing one do not pile onto it.
        if !self.breaker.allow() {
            return Err(Resting);
        }
        let result = call.await;
        match &result {
            Err(e) if outage(e) => self.breaker.failure(),
            _ => self.breaker.success(),
        }
        Ok(result)
    }

    /// "closed", "open" or "trial", for `/api/status`.
    pub fn circuit(&self) -> &'static str {
        self.breaker.state_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn guard(max: usize, rest_ms: u64) -> Guard {
        Guard::new(&RagConfig {
            max_concurrent: max,
            retry_after_ms: rest_ms,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn an_outage_rests_the_backend_and_a_bad_answer_does_not() {
        let g = guard(2, 50);
        let bad: Result<(), &str> = Err("bad answer");
        assert_eq!(g.run(async { bad }, |_| false).await, Ok(bad));
        assert_eq!(g.circuit(), "closed");
        let down: Result<(), &str> = Err("refused");
        assert_eq!(g.run(async { down }, |_| true).await, Ok(down));
        assert_eq!(g.circuit(), "open");
        let called = AtomicUsize::new(0);
        let refused = g
            .run(
                async { Ok::<_, &str>(called.fetch_add(1, Ordering::SeqCst)) },
                |_| true,
            )
            .await;
        assert_eq!(refused, Err(Resting));
        assert_eq!(
            called.load(Ordering::SeqCst),
            0,
            "a resting backend is not called"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(g.run(async { Ok::<_, &str>(1) }, |_| true).await, Ok(Ok(1)));
        assert_eq!(g.circuit(), "closed");
    }

    #[tokio::test]
    async fn at_most_max_concurrent_calls_are_in_flight() {
        let g = Arc::new(guard(2, 50));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let calls = (0..8).map(|_| {
            let (g, now, most) = (Arc::clone(&g), Arc::clone(&now), Arc::clone(&most));
            tokio::spawn(async move {
                let call = async {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ()>(())
                };
                g.run(call, |_| true).await
            })
        });
        for call in calls.collect::<Vec<_>>() {
            assert_eq!(call.await.unwrap(), Ok(Ok(())));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
