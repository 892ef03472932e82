//! Sizes the server chooses from its machine when the operator leaves them at 0: decoder
//! workers × threads from the CPU cores, and the session limit from the live streams a core
//! carries with the loaded model (measured with `sori bench --capacity`, docs/benchmarks.md).

use super::Config;

/// Live streams one CPU core carries with Whisper base (q8_0, partials on) inside the latency
/// target (final p95 ≤ 1.5 s after the last word): `sori bench --capacity` on 2 cores.
pub const BASE_STREAMS_PER_CORE: f64 = 4.0;

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

/// The session limit for `cores` cores and a model of `model_kind` (`tiny`, `base`, …).
pub fn session_limit(cores: usize, model_kind: &str) -> usize {
    let streams = cores.max(1) as f64 * BASE_STREAMS_PER_CORE / cost_relative_to_base(model_kind);
    (streams.floor() as usize).max(1)
}

/// The CPU cores this process may use (its affinity and cgroup quota included).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// Fills `stt.workers` and `stt.threads` where they are 0 (automatic) for `cores` cores.
    /// Commands that decode without a server (`sori bench`, `sori eval`) need only this.
    pub fn with_decoder_layout(mut self, cores: usize) -> Self {
        let (workers, threads) = decoder_layout(cores);
        if self.stt.workers == 0 {
            self.stt.workers = workers;
        }
        if self.stt.threads == 0 {
            self.stt.threads = threads;
        }
        self
    }

    /// Fills every automatic (0) size for `cores` cores and the loaded model, and logs what was
    /// chosen. Explicit settings are kept; explicit workers × threads that carry fewer streams
    /// than the automatic layout are warned about.
    pub fn sized_for(self, cores: usize, model_kind: &str) -> Self {
        let explicit = (self.stt.workers, self.stt.threads);
        let mut sized = self.with_decoder_layout(cores);
        if sized.server.max_sessions == 0 {
            sized.server.max_sessions = session_limit(cores, model_kind);
        }
        tracing::info!(
            cores,
            model = model_kind,
            workers = sized.stt.workers,
            threads = sized.stt.threads,
            max_sessions = sized.server.max_sessions,
            "decoder layout and session limit (0 = automatic: docs/configuration.md)"
        );
        let automatic = decoder_layout(cores);
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
    fn explicit_settings_are_kept_and_zeros_are_filled() {
        let mut config = Config::default();
        config.stt.workers = 0;
        config.stt.threads = 3;
        config.server.max_sessions = 0;
        let sized = config.sized_for(4, "base");
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
        let kept = config.sized_for(2, "base");
        assert_eq!(
            (kept.stt.workers, kept.stt.threads, kept.server.max_sessions),
            (1, 2, 5)
        );
    }
}
