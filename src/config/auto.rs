//! Sizes the server chooses from its machine when the operator leaves them at 0: decoder
//! workers × threads from the CPU cores (or the GPUs whisper.cpp decodes on), and the session
//! limit from the live streams a core carries with the loaded model (measured with
//! `sori bench --capacity`, docs/benchmarks.md).

use super::Config;

/// Live streams one CPU core carries with Whisper base (q8_0, partials on) inside the latency
/// target (final p95 ≤ 1.5 s after the last word): `sori bench --capacity` on 2 cores.
pub const BASE_STREAMS_PER_CORE: f64 = 4.0;

/// Whisper states (decoder workers) per GPU. Each holds its own KV cache and compute buffers
/// on the GPU (a few hundred MB for base) over the one shared copy of the weights, and runs
/// its kernels on its own CUDA streams, so several decodes overlap on one device.
pub const GPU_WORKERS_PER_GPU: usize = 4;

/// Live streams one GPU decoder worker is expected to carry with base. Not yet measured on a
/// GPU: `scripts/gpu-check.sh` measures it and prints the `SORI_MAX_SESSIONS` to set.
pub const GPU_BASE_STREAMS_PER_WORKER: f64 = 8.0;

/// What decodes: the CPU cores, or GPUs (with the cores that feed them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    Cpu { cores: usize },
    Gpu { cores: usize, gpus: usize },
}

/// What one decode costs next to base, by model size (whisper.cpp's CPU encoder and decoder
/// time grow about this much; only base is measured here, the others are estimates).
fn cost_relative_to_base(model_kind: &str) -> f64 {
    match model_kind {
        "tiny" => 0.45,
        "base" => 1.0,
        "small" => 3.2,
        "medium" => 9.0,
        "large" => 18.0,
        _ => 1.0,
    }
}

/// Decoder workers × threads for `cores` CPU cores.
///
/// Measured on 2 cores with 8 live streams (docs/benchmarks.md): one single-threaded worker
/// per core carries more streams than one worker with every core, since ggml's threads wait
/// for each other at every step of a decode and concurrent streams keep every worker busy.
/// Beyond 8 cores a worker gets 2 threads, so that one long final is not slower than on a
/// small machine; 12 workers at most (each holds its own decoder state).
pub fn decoder_layout(cores: usize) -> (usize, usize) {
    let cores = cores.max(1);
    if cores <= 8 {
        (cores, 1)
    } else {
        ((cores / 2).min(12), 2)
    }
}

/// Decoder workers × threads on GPUs: [`GPU_WORKERS_PER_GPU`] states per GPU, no more than
/// the cores (each worker's thread prepares its audio and runs what the GPU does not), and
/// the cores shared out as threads, at most 4 each.
pub fn gpu_decoder_layout(cores: usize, gpus: usize) -> (usize, usize) {
    let cores = cores.max(1);
    let workers = (gpus.max(1) * GPU_WORKERS_PER_GPU).min(cores);
    (workers, (cores / workers).clamp(1, 4))
}

/// The session limit for `cores` cores and a model of `model_kind` (`tiny`, `base`, …).
pub fn session_limit(cores: usize, model_kind: &str) -> usize {
    let streams = cores.max(1) as f64 * BASE_STREAMS_PER_CORE / cost_relative_to_base(model_kind);
    (streams.floor() as usize).max(1)
}

/// The session limit when `workers` decoder workers run on GPUs.
pub fn gpu_session_limit(workers: usize, model_kind: &str) -> usize {
    let streams =
        workers.max(1) as f64 * GPU_BASE_STREAMS_PER_WORKER / cost_relative_to_base(model_kind);
    (streams.floor() as usize).max(1)
}

impl Hardware {
    /// The automatic decoder workers × threads.
    pub fn decoder_layout(self) -> (usize, usize) {
        match self {
            Hardware::Cpu { cores } => decoder_layout(cores),
            Hardware::Gpu { cores, gpus } => gpu_decoder_layout(cores, gpus),
        }
    }

    /// The automatic session limit with `workers` decoder workers.
    fn session_limit(self, workers: usize, model_kind: &str) -> usize {
        match self {
            Hardware::Cpu { cores } => session_limit(cores, model_kind),
            Hardware::Gpu { .. } => gpu_session_limit(workers, model_kind),
        }
    }
}

/// The CPU cores this process may use (its affinity and cgroup quota included).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// Fills `stt.workers` and `stt.threads` where they are 0 (automatic) for `cores` cores.
    /// Commands that decode without a server (`sori bench`, `sori eval`) need only this.
    pub fn with_decoder_layout(self, cores: usize) -> Self {
        self.with_layout(decoder_layout(cores))
    }

    fn with_layout(mut self, (workers, threads): (usize, usize)) -> Self {
        if self.stt.workers == 0 {
            self.stt.workers = workers;
        }
        if self.stt.threads == 0 {
            self.stt.threads = threads;
        }
        self
    }

    /// Fills every automatic (0) size for the hardware and the loaded model, and logs what was
    /// chosen. Explicit settings are kept; explicit workers × threads that carry fewer streams
    /// than the automatic layout are warned about.
    pub fn sized_for(self, hardware: Hardware, model_kind: &str) -> Self {
        let explicit = (self.stt.workers, self.stt.threads);
        let automatic = hardware.decoder_layout();
        let mut sized = self.with_layout(automatic);
        if sized.server.max_sessions == 0 {
            sized.server.max_sessions = hardware.session_limit(sized.stt.workers, model_kind);
        }
        tracing::info!(
            ?hardware,
            model = model_kind,
            workers = sized.stt.workers,
            threads = sized.stt.threads,
            max_sessions = sized.server.max_sessions,
            "decoder layout and session limit (0 = automatic: docs/configuration.md)"
        );
        if explicit.0 != 0 && explicit.1 != 0 && explicit.0 < automatic.0 {
            tracing::warn!(
                workers = explicit.0,
                threads = explicit.1,
                automatic_workers = automatic.0,
                automatic_threads = automatic.1,
                "stt.workers × stt.threads set by hand carries fewer live streams on this machine \
                 than the automatic layout (docs/benchmarks.md, capacity); set both to 0 to use it"
            );
        }
        sized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_machines_get_a_single_threaded_worker_per_core() {
        assert_eq!(decoder_layout(1), (1, 1));
        assert_eq!(decoder_layout(2), (2, 1));
        assert_eq!(decoder_layout(8), (8, 1));
        assert_eq!(decoder_layout(16), (8, 2));
        assert_eq!(decoder_layout(64), (12, 2));
    }

    #[test]
    fn the_session_limit_follows_cores_and_model_size() {
        assert_eq!(session_limit(2, "base"), 8);
        assert_eq!(session_limit(2, "tiny"), 17);
        assert_eq!(session_limit(2, "medium"), 1);
        assert_eq!(session_limit(16, "small"), 20);
        assert_eq!(session_limit(1, "large"), 1, "never 0");
    }

    #[test]
    fn gpus_get_several_states_each_fed_by_the_cores() {
        assert_eq!(gpu_decoder_layout(16, 1), (4, 4));
        assert_eq!(
            gpu_decoder_layout(2, 1),
            (2, 1),
            "no more workers than cores"
        );
        assert_eq!(gpu_decoder_layout(32, 2), (8, 4));
        assert_eq!(gpu_session_limit(4, "base"), 32);
        let mut config = Config::default();
        config.stt.workers = 0;
        config.stt.threads = 0;
        config.server.max_sessions = 0;
        let sized = config.sized_for(Hardware::Gpu { cores: 16, gpus: 1 }, "base");
        assert_eq!(
            (
                sized.stt.workers,
                sized.stt.threads,
                sized.server.max_sessions
            ),
            (4, 4, 32)
        );
    }

    #[test]
    fn explicit_settings_are_kept_and_zeros_are_filled() {
        let mut config = Config::default();
        config.stt.workers = 0;
        config.stt.threads = 3;
        config.server.max_sessions = 0;
        let sized = config.sized_for(Hardware::Cpu { cores: 4 }, "base");
        assert_eq!(
            (
                sized.stt.workers,
                sized.stt.threads,
                sized.server.max_sessions
            ),
            (4, 3, 16)
        );
        let mut config = Config::default();
        config.stt.workers = 1;
        config.stt.threads = 2;
        config.server.max_sessions = 5;
        let kept = config.sized_for(Hardware::Cpu { cores: 2 }, "base");
        assert_eq!(
            (kept.stt.workers, kept.stt.threads, kept.server.max_sessions),
            (1, 2, 5)
        );
    }
}
