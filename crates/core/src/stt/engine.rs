//! The decoder pool: a fixed number of worker threads, each owning one `Decoder`, fed by a
//! bounded queue. whisper.cpp blocks for hundreds of milliseconds per call, so it never runs on
//! the async runtime; sessions wait for queue space instead (and report the lag).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{DecodeOptions, Decoder, SttError, Transcript};

/// One utterance to decode, with the channel its outcome goes back on.
pub struct DecodeRequest {
    /// Chosen by the caller to match the outcome to its request.
    pub job_id: u64,
    pub audio: Arc<[f32]>,
    pub opts: DecodeOptions,
    pub reply: mpsc::UnboundedSender<DecodeOutcome>,
}

pub struct DecodeOutcome {
    pub job_id: u64,
    pub result: Result<Transcript, SttError>,
    /// Time spent waiting for a worker.
    pub queued: Duration,
    /// Time the decoder itself took.
    pub decode: Duration,
}

struct Queued {
    request: DecodeRequest,
    enqueued: Instant,
}

/// Counters shared by the pool handle and its workers.
#[derive(Default)]
struct PoolStats {
    queued: AtomicUsize,
    busy: AtomicUsize,
    decodes: AtomicU64,
    decode_us: AtomicU64,
    audio_us: AtomicU64,
}

/// A snapshot for status events, `/api/status` and metrics.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PoolSnapshot {
    pub workers: usize,
    pub busy: usize,
    pub queue_depth: usize,
    pub decodes: u64,
    /// Total decode time divided by total audio decoded (lower is faster).
    pub real_time_factor: f64,
}

#[derive(Clone)]
pub struct SttPool {
    tx: mpsc::Sender<Queued>,
    stats: Arc<PoolStats>,
    workers: usize,
}

/// A reserved place in the queue: sending through it cannot block.
pub struct PoolPermit<'a> {
    permit: mpsc::Permit<'a, Queued>,
    stats: &'a PoolStats,
}

impl PoolPermit<'_> {
    pub fn send(self, request: DecodeRequest) {
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.permit.send(Queued {
            request,
            enqueued: Instant::now(),
        });
    }
}

impl SttPool {
    /// Starts `workers` threads, each with a decoder made by `make_decoder` (called on the
    /// worker's own thread). Fails if any decoder cannot be made.
    pub fn start<F, D>(
        workers: usize,
        queue_capacity: usize,
        make_decoder: F,
    ) -> Result<Self, SttError>
    where
        F: Fn() -> Result<D, SttError> + Send + Sync + 'static,
        D: Decoder + 'static,
    {
        let (tx, rx) = mpsc::channel::<Queued>(queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        let make_decoder = Arc::new(make_decoder);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for index in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            let stats = Arc::clone(&stats);
            let make_decoder = Arc::clone(&make_decoder);
            let ready_tx = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("sori-stt-{index}"))
                .spawn(move || match make_decoder() {
                    Ok(decoder) => {
                        let _ = ready_tx.send(Ok(()));
                        drop(ready_tx);
                        worker_loop(decoder, &rx, &stats);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                })
                .map_err(|e| SttError::Decode(format!("cannot start a decoder thread: {e}")))?;
        }
        drop(ready_tx);
        for _ in 0..workers.max(1) {
            ready_rx.recv().map_err(|_| SttError::PoolClosed)??;
        }
        Ok(Self {
            tx,
            stats,
            workers: workers.max(1),
        })
    }

    /// Waits for a place in the queue (the backpressure point).
    pub async fn reserve(&self) -> Result<PoolPermit<'_>, SttError> {
        let permit = self.tx.reserve().await.map_err(|_| SttError::PoolClosed)?;
        Ok(PoolPermit {
            permit,
            stats: &self.stats,
        })
    }

    /// Decodes one utterance and waits for the result (for callers without their own loop).
    pub async fn decode(&self, audio: Arc<[f32]>, opts: DecodeOptions) -> DecodeOutcome {
        let (reply, mut rx) = mpsc::unbounded_channel();
        match self.reserve().await {
            Ok(permit) => permit.send(DecodeRequest {
                job_id: 0,
                audio,
                opts,
                reply,
            }),
            Err(e) => {
                return DecodeOutcome {
                    job_id: 0,
                    result: Err(e),
                    queued: Duration::ZERO,
                    decode: Duration::ZERO,
                };
            }
        }
        rx.recv().await.unwrap_or(DecodeOutcome {
            job_id: 0,
            result: Err(SttError::PoolClosed),
            queued: Duration::ZERO,
            decode: Duration::ZERO,
        })
    }

    /// False once every worker thread has exited: nothing would decode a queued request.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// True when some worker is idle and nothing waits: a good moment for optional work (partials).
    pub fn has_idle_worker(&self) -> bool {
        self.stats.queued.load(Ordering::Relaxed) == 0
            && self.stats.busy.load(Ordering::Relaxed) < self.workers
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let audio_us = self.stats.audio_us.load(Ordering::Relaxed);
        PoolSnapshot {
            workers: self.workers,
            busy: self.stats.busy.load(Ordering::Relaxed),
            queue_depth: self.stats.queued.load(Ordering::Relaxed),
            decodes: self.stats.decodes.load(Ordering::Relaxed),
            real_time_factor: if audio_us == 0 {
                0.0
            } else {
                self.stats.decode_us.load(Ordering::Relaxed) as f64 / audio_us as f64
            },
        }
    }
}

fn worker_loop<D: Decoder>(mut decoder: D, rx: &Mutex<mpsc::Receiver<Queued>>, stats: &PoolStats) {
    loop {
        // Only one idle worker waits on the channel at a time; the others wait on the lock.
        let next = match rx.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        let Some(Queued { request, enqueued }) = next else {
            return; // every sender dropped: the pool is shutting down
        };
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        stats.busy.fetch_add(1, Ordering::Relaxed);
        let queued = enqueued.elapsed();
        let started = Instant::now();
        // A decoder panic must not take the worker (and every later session) down with it.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            decoder.decode(&request.audio, &request.opts)
        }))
        .unwrap_or_else(|_| Err(SttError::Decode("the decoder panicked".to_owned())));
        let decode = started.elapsed();
        stats.busy.fetch_sub(1, Ordering::Relaxed);
        stats.decodes.fetch_add(1, Ordering::Relaxed);
        stats
            .decode_us
            .fetch_add(decode.as_micros() as u64, Ordering::Relaxed);
        stats.audio_us.fetch_add(
            (request.audio.len() as u64 * 1_000_000) / crate::audio::TARGET_SAMPLE_RATE as u64,
            Ordering::Relaxed,
        );
        let audio_s = request.audio.len() as f64 / f64::from(crate::audio::TARGET_SAMPLE_RATE);
        crate::metrics::global().decode_finished(outcome_label(&result), queued, decode, audio_s);
        let _ = request.reply.send(DecodeOutcome {
            job_id: request.job_id,
            result,
            queued,
            decode,
        });
    }
}

/// The `outcome` label of `sori_decodes_total` (one of [`crate::metrics::DECODE_OUTCOMES`]).
fn outcome_label(result: &Result<Transcript, SttError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(SttError::Cancelled) => "cancelled",
        Err(_) => "error",
    }
}
