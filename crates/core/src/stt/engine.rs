//! The decoder pool: a fixed number of worker threads, each owning one `Decoder`, fed by one
//! bounded queue that serves the most urgent request first (`queue.rs`). whisper.cpp blocks
//! for hundreds of milliseconds per call, so it never runs on the async runtime; sessions wait
//! for queue space instead (and report the lag).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use super::queue::{Priority, Schedule, Waiting};
use super::{DecodeOptions, Decoder, SttError, Transcript};

/// One utterance to decode, with the channel its outcome goes back on.
pub struct DecodeRequest {
    /// Chosen by the caller to match the outcome to its request.
    pub job_id: u64,
    pub audio: Arc<[f32]>,
    pub opts: DecodeOptions,
    /// Where it goes in the queue (finals before partials, each by deadline).
    pub priority: Priority,
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

/// How far back the pool's utilisation is measured.
const UTILISATION_WINDOW: Duration = Duration::from_secs(60);

/// Counters shared by the pool handle and its workers.
#[derive(Default)]
struct PoolStats {
    queued: AtomicUsize,
    busy: AtomicUsize,
    decodes: AtomicU64,
    decode_us: AtomicU64,
    audio_us: AtomicU64,
    /// Partials cancelled so that a final could start.
    preempted: AtomicU64,
    /// When each recent decode ended and how long it ran (the last minute's utilisation).
    recent: Mutex<VecDeque<(Instant, Duration)>>,
}

impl PoolStats {
    fn record_busy(&self, decode: Duration) {
        let now = Instant::now();
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        recent.push_back((now, decode));
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > UTILISATION_WINDOW)
        {
            recent.pop_front();
        }
    }

    /// Share of the workers' time spent decoding over the last minute (0–1), counting the
    /// decodes running now.
    fn utilisation(&self, workers: usize, started: Instant) -> f64 {
        let now = Instant::now();
        let window = now.duration_since(started).min(UTILISATION_WINDOW);
        if window.is_zero() {
            return 0.0;
        }
        let busy: Duration = self
            .recent
            .lock()
            .map(|recent| {
                recent
                    .iter()
                    .filter(|(at, _)| now.duration_since(*at) <= UTILISATION_WINDOW)
                    .map(|(_, d)| *d)
                    .sum()
            })
            .unwrap_or_default();
        (busy.as_secs_f64() / (window.as_secs_f64() * workers.max(1) as f64)).min(1.0)
    }
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
    /// Share of the workers' time spent decoding over the last minute (0–1).
    pub utilisation: f64,
    /// Partials cancelled so that a waiting final could start.
    pub partials_preempted: u64,
}

/// What the pool handles and the worker threads share.
struct Shared {
    schedule: Mutex<Schedule>,
    /// Signalled when work is queued or the pool closes.
    work: Condvar,
    /// Places in the bounded queue; a request holds one until a worker takes it.
    places: Arc<Semaphore>,
    stats: PoolStats,
    workers: usize,
    /// Worker threads still running.
    alive: AtomicUsize,
    started: Instant,
}

impl Shared {
    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        // A worker that panicked while holding the lock left the queue consistent (every
        // change is one push or pop), so carry on with it.
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the queue when the last pool handle is dropped: workers finish what waits, then exit.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.schedule().closed = true;
        self.0.places.close();
        self.0.work.notify_all();
    }
}

#[derive(Clone)]
pub struct SttPool {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

/// A reserved place in the queue: sending through it cannot block.
pub struct PoolPermit<'a> {
    place: tokio::sync::OwnedSemaphorePermit,
    shared: &'a Shared,
}

impl PoolPermit<'_> {
    pub fn send(self, request: DecodeRequest) {
        let shared = self.shared;
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        let preempted = shared.schedule().push(request, self.place);
        if preempted {
            shared.stats.preempted.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().partial_preempted();
            tracing::debug!("a waiting final cancelled a running partial");
        }
        shared.work.notify_one();
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
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            schedule: Mutex::new(Schedule::new(workers)),
            work: Condvar::new(),
            places: Arc::new(Semaphore::new(queue_capacity.max(1))),
            stats: PoolStats::default(),
            workers,
            alive: AtomicUsize::new(0),
            started: Instant::now(),
        });
        let pool = Self {
            shared: Arc::clone(&shared),
            _closer: Arc::new(Closer(Arc::clone(&shared))),
        };
        let make_decoder = Arc::new(make_decoder);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for index in 0..workers {
            let shared = Arc::clone(&shared);
            let make_decoder = Arc::clone(&make_decoder);
            let ready_tx = ready_tx.clone();
            shared.alive.fetch_add(1, Ordering::Relaxed);
            std::thread::Builder::new()
                .name(format!("sori-stt-{index}"))
                .spawn(move || {
                    match make_decoder() {
                        Ok(decoder) => {
                            let _ = ready_tx.send(Ok(()));
                            drop(ready_tx);
                            worker_loop(decoder, index, &shared);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                    shared.alive.fetch_sub(1, Ordering::Relaxed);
                })
                .map_err(|e| SttError::Decode(format!("cannot start a decoder thread: {e}")))?;
        }
        drop(ready_tx);
        for _ in 0..workers {
            ready_rx.recv().map_err(|_| SttError::PoolClosed)??;
        }
        Ok(pool)
    }

    /// Waits for a place in the queue (the backpressure point).
    pub async fn reserve(&self) -> Result<PoolPermit<'_>, SttError> {
        let place = Arc::clone(&self.shared.places)
            .acquire_owned()
            .await
            .map_err(|_| SttError::PoolClosed)?;
        Ok(PoolPermit {
            place,
            shared: &self.shared,
        })
    }

    /// A place in the queue if one is free now.
    pub fn try_reserve(&self) -> Option<PoolPermit<'_>> {
        let place = Arc::clone(&self.shared.places).try_acquire_owned().ok()?;
        Some(PoolPermit {
            place,
            shared: &self.shared,
        })
    }

    /// Decodes one utterance as a final and waits for the result (for callers without their
    /// own loop).
    pub async fn decode(&self, audio: Arc<[f32]>, opts: DecodeOptions) -> DecodeOutcome {
        let (reply, mut rx) = mpsc::unbounded_channel();
        match self.reserve().await {
            Ok(permit) => permit.send(DecodeRequest {
                job_id: 0,
                audio,
                opts,
                priority: Priority::final_due(Instant::now()),
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
        self.shared.alive.load(Ordering::Relaxed) > 0
    }

    /// True when some worker is idle and nothing waits: a good moment for optional work (partials).
    pub fn has_idle_worker(&self) -> bool {
        let stats = &self.shared.stats;
        stats.queued.load(Ordering::Relaxed) == 0
            && stats.busy.load(Ordering::Relaxed) < self.shared.workers
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let stats = &self.shared.stats;
        let audio_us = stats.audio_us.load(Ordering::Relaxed);
        PoolSnapshot {
            workers: self.shared.workers,
            busy: stats.busy.load(Ordering::Relaxed),
            queue_depth: stats.queued.load(Ordering::Relaxed),
            decodes: stats.decodes.load(Ordering::Relaxed),
            real_time_factor: if audio_us == 0 {
                0.0
            } else {
                stats.decode_us.load(Ordering::Relaxed) as f64 / audio_us as f64
            },
            utilisation: stats.utilisation(self.shared.workers, self.shared.started),
            partials_preempted: stats.preempted.load(Ordering::Relaxed),
        }
    }
}

/// Waits for the most urgent request; `None` once the pool is closed and nothing waits.
fn next_request(shared: &Shared, worker: usize) -> Option<Waiting> {
    let mut schedule = shared.schedule();
    loop {
        if let Some(next) = schedule.take(worker) {
            return Some(next);
        }
        if schedule.closed && schedule.is_empty() {
            return None;
        }
        schedule = shared
            .work
            .wait(schedule)
            .unwrap_or_else(|e| e.into_inner());
    }
}

fn worker_loop<D: Decoder>(mut decoder: D, worker: usize, shared: &Shared) {
    let stats = &shared.stats;
    while let Some(Waiting {
        request,
        enqueued,
        _place: place,
        ..
    }) = next_request(shared, worker)
    {
        // Taken: the place in the queue is free for the next request.
        drop(place);
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        stats.busy.fetch_add(1, Ordering::Relaxed);
        let queued = enqueued.elapsed();
        let started = Instant::now();
        // Cancelled while it waited (a partial overtaken by its utterance's end): skip it.
        let result = if request.opts.is_cancelled() {
            Err(SttError::Cancelled)
        } else {
            // A decoder panic must not take the worker (and every later session) down with it.
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                decoder.decode(&request.audio, &request.opts)
            }))
            .unwrap_or_else(|_| Err(SttError::Decode("the decoder panicked".to_owned())))
        };
        let decode = started.elapsed();
        shared.schedule().finished(worker);
        stats.busy.fetch_sub(1, Ordering::Relaxed);
        stats.decodes.fetch_add(1, Ordering::Relaxed);
        stats
            .decode_us
            .fetch_add(decode.as_micros() as u64, Ordering::Relaxed);
        stats.audio_us.fetch_add(
            (request.audio.len() as u64 * 1_000_000) / crate::audio::TARGET_SAMPLE_RATE as u64,
            Ordering::Relaxed,
        );
        stats.record_busy(decode);
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
