//! What the bench reads from the server itself during a level: the decoder's counters from
//! `/metrics`, and its resident memory from `/proc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::bench::child::{ChildServer, rss_mb};

/// How often the server's VmRSS is read during a level.
const RSS_EVERY: Duration = Duration::from_millis(500);

/// The decoder counters a level's utilisation is computed from.
#[derive(Debug, Clone, Copy)]
pub struct DecodeCounters {
    /// `sori_decode_busy_seconds_total`: seconds the workers spent decoding, cancelled decodes
    /// included (servers before it had only `sori_decode_seconds_sum`, successful decodes only).
    pub seconds: f64,
    /// `sori_decode_workers`.
    pub workers: f64,
}

impl DecodeCounters {
    pub async fn read(http: &reqwest::Client, server: &ChildServer) -> anyhow::Result<Self> {
        let text = http
            .get(server.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let read =
            |name: &str| metric(&text, name).with_context(|| format!("/metrics has no {name}"));
        Ok(DecodeCounters {
            seconds: metric(&text, "sori_decode_busy_seconds_total")
                .map_or_else(|| read("sori_decode_seconds_sum"), Ok)?,
            workers: read("sori_decode_workers")?,
        })
    }

    /// Decode seconds since `before` ÷ (`wall_s` × workers): the share of the decoders' time
    /// spent decoding.
    pub fn utilisation_since(&self, before: &DecodeCounters, wall_s: f64) -> f64 {
        let capacity = wall_s * self.workers.max(1.0);
        if capacity > 0.0 {
            (self.seconds - before.seconds).max(0.0) / capacity
        } else {
            0.0
        }
    }
}

/// The value of an unlabelled series in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(name))
            .then(|| parts.next())
            .flatten()
            .and_then(|v| v.parse().ok())
    })
}

/// The server's highest VmRSS while it runs, read every [`RSS_EVERY`].
pub struct RssPeak {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssPeak {
    pub fn start(pid: u32) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let done = Arc::clone(&done);
            async move {
                let mut peak = 0.0f64;
                loop {
                    peak = peak.max(rss_mb(pid));
                    if done.load(Ordering::SeqCst) {
                        return peak;
                    }
                    tokio::time::sleep(RSS_EVERY).await;
                }
            }
        });
        RssPeak { done, task }
    }

    /// Stops sampling (after one last sample) and returns the peak, in MB.
    pub async fn stop(self) -> f64 {
        self.done.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unlabelled_series_and_skips_comments_and_prefixes() {
        let text = "# HELP sori_decode_seconds Time.\n# TYPE sori_decode_seconds histogram\n\
                    sori_decode_seconds_bucket{le=\"+Inf\"} 7\nsori_decode_seconds_sum 12.5\n\
                    sori_decode_seconds_count 7\nsori_decode_workers_busy 1\nsori_decode_workers 2\n";
        assert_eq!(metric(text, "sori_decode_seconds_sum"), Some(12.5));
        assert_eq!(metric(text, "sori_decode_workers"), Some(2.0));
        assert_eq!(metric(text, "sori_decode_seconds"), None);
    }

    #[test]
    fn utilisation_is_decode_time_over_worker_time() {
        let before = DecodeCounters {
            seconds: 10.0,
            workers: 2.0,
        };
        let after = DecodeCounters {
            seconds: 40.0,
            workers: 2.0,
        };
        assert!((after.utilisation_since(&before, 20.0) - 0.75).abs() < 1e-9);
    }
}
