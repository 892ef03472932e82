//! The figures of `sori bench --capacity`: per client, per level, and the capacity decision.

use super::client::{Seen, final_latency};
use super::gpu::GpuLevel;
use crate::bench::percentile;

/// One client's session, summed up.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClientFigures {
    /// Per final: its last word's audio sent → its arrival, in seconds.
    pub latencies_s: Vec<f64>,
    pub partials: usize,
    /// Seconds of speech: the sum of the finals' `end − start`.
    pub speech_s: f64,
    /// Partials per second of speech (0 without speech).
    pub partial_rate: f64,
    /// The joined finals against the reference.
    pub wer: f64,
    pub text: String,
    /// Anything but a normal session: `error` events, a close other than 1000, no `closed`,
    /// transport failures.
    pub errors: Vec<String>,
    pub close_code: Option<u16>,
    /// The model the server named in `ready`.
    #[serde(skip)]
    pub model: Option<String>,
}

impl ClientFigures {
    pub fn from_seen(seen: &Seen, reference: &str, frame_s: f64) -> Self {
        let latencies_s = match seen.start {
            Some(start) => seen
                .finals
                .iter()
                .map(|f| {
                    let arrived = f.arrival.saturating_duration_since(start).as_secs_f64();
                    final_latency(f.spoken_until(), arrived, frame_s)
                })
                .collect(),
            None => Vec::new(),
        };
        let speech_s: f64 = seen.finals.iter().map(|f| (f.end - f.start).max(0.0)).sum();
        let text = seen
            .finals
            .iter()
            .map(|f| f.text.trim())
            .collect::<Vec<_>>()
            .join(" ");
        let mut errors = seen.errors.clone();
        if seen.close_code.is_some_and(|c| c != 1000) {
            errors.push(format!("close code {}", seen.close_code.unwrap_or(0)));
        }
        ClientFigures {
            latencies_s,
            partials: seen.partials,
            speech_s,
            partial_rate: if speech_s > 0.0 {
                seen.partials as f64 / speech_s
            } else {
                0.0
            },
            wer: sori_score::wer(reference, &text),
            text,
            errors,
            close_code: seen.close_code,
            model: seen.model.clone(),
        }
    }
}

/// One level: N clients at once.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LevelFigures {
    pub clients: usize,
    /// From the first client's start to the last client's close frame.
    pub wall_s: f64,
    pub finals: usize,
    /// Over every final of every client.
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub latency_max_s: f64,
    pub wer_mean: f64,
    pub wer_worst: f64,
    pub partial_rate_min: f64,
    pub partial_rate_mean: f64,
    /// Decode seconds over the level ÷ (wall seconds × decoder workers).
    pub decoder_utilisation: f64,
    /// Highest VmRSS of the server seen during the level (sampled every 0.5 s).
    pub peak_rss_mb: f64,
    /// GPU memory and utilisation from the server's `/api/status` during the level, when its
    /// decoder is on a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuLevel>,
    /// "client i: …" for every abnormal thing a client saw.
    pub errors: Vec<String>,
    pub per_client: Vec<ClientFigures>,
}

impl LevelFigures {
    pub fn new(
        per_client: Vec<ClientFigures>,
        wall_s: f64,
        decoder_utilisation: f64,
        peak_rss_mb: f64,
    ) -> Self {
        let mut latencies: Vec<f64> = per_client
            .iter()
            .flat_map(|c| c.latencies_s.iter().copied())
            .collect();
        latencies.sort_by(f64::total_cmp);
        let n = per_client.len().max(1) as f64;
        let errors = per_client
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.errors.iter().map(move |e| format!("client {i}: {e}")))
            .collect();
        LevelFigures {
            clients: per_client.len(),
            wall_s,
            finals: latencies.len(),
            latency_p50_s: percentile(&latencies, 0.50),
            latency_p95_s: percentile(&latencies, 0.95),
            latency_max_s: latencies.last().copied().unwrap_or(0.0),
            wer_mean: per_client.iter().map(|c| c.wer).sum::<f64>() / n,
            wer_worst: per_client.iter().map(|c| c.wer).fold(0.0, f64::max),
            partial_rate_min: per_client
                .iter()
                .map(|c| c.partial_rate)
                .reduce(f64::min)
                .unwrap_or(0.0),
            partial_rate_mean: per_client.iter().map(|c| c.partial_rate).sum::<f64>() / n,
            decoder_utilisation,
            peak_rss_mb,
            gpu: None,
            errors,
            per_client,
        }
    }
}

/// What a level must hold to count (the targets of issue 16).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Thresholds {
    pub max_p95_s: f64,
    /// Allowed rise of the worst client's WER over the baseline level's (0.01 = 1 point).
    pub max_wer_rise: f64,
    pub min_partial_rate: f64,
}

/// The verdict over all levels.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Capacity {
    /// The highest number of clients of a level that held; 0 when none did.
    pub streams: usize,
    /// The level whose WER is the baseline: the one with the fewest clients (1 by default).
    pub baseline_clients: usize,
    pub baseline_wer: f64,
    /// Per level, in the order measured: whether it held.
    pub held: Vec<bool>,
}

/// Whether `level` holds the targets against the baseline WER: final p95, the worst
/// client's WER, every client's partial rate, and no errors (a refused or broken session is
/// not a stream the machine carries).
pub fn holds(level: &LevelFigures, baseline_wer: f64, t: &Thresholds) -> bool {
    level.clients > 0
        && level.finals > 0
        && level.latency_p95_s <= t.max_p95_s
        && level.wer_worst <= baseline_wer + t.max_wer_rise + 1e-9
        && level.partial_rate_min >= t.min_partial_rate
        && level.errors.is_empty()
}

/// Whether the last level measured misses the targets, against the first level's WER (the
/// levels run from the fewest clients up): where `--stop-at-first-miss` ends the sweep.
pub fn last_missed(levels: &[LevelFigures], t: &Thresholds) -> bool {
    match (levels.first(), levels.last()) {
        (Some(first), Some(last)) => !holds(last, first.wer_worst, t),
        _ => false,
    }
}

/// The highest level that holds the targets (not necessarily every level below it: each
/// level's verdict is printed beside it).
pub fn capacity(levels: &[LevelFigures], t: &Thresholds) -> Capacity {
    let baseline = levels.iter().min_by_key(|l| l.clients);
    let baseline_wer = baseline.map_or(0.0, |l| l.wer_worst);
    let held: Vec<bool> = levels.iter().map(|l| holds(l, baseline_wer, t)).collect();
    let streams = levels
        .iter()
        .zip(&held)
        .filter(|(_, h)| **h)
        .map(|(l, _)| l.clients)
        .max()
        .unwrap_or(0);
    Capacity {
        streams,
        baseline_clients: baseline.map_or(0, |l| l.clients),
        baseline_wer,
        held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: Thresholds = Thresholds {
        max_p95_s: 1.5,
        max_wer_rise: 0.01,
        min_partial_rate: 0.5,
    };

    fn level(clients: usize, p95: f64, wer: f64, partials: f64) -> LevelFigures {
        LevelFigures {
            clients,
            finals: 6 * clients,
            latency_p95_s: p95,
            wer_worst: wer,
            partial_rate_min: partials,
            ..LevelFigures::default()
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted = [0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 2.5];
        assert_eq!(percentile(&sorted, 0.50), 1.3);
        assert_eq!(percentile(&sorted, 0.95), 2.5);
        assert_eq!(percentile(&sorted, 0.0), 0.9);
        assert_eq!(percentile(&[1.25], 0.95), 1.25);
        assert_eq!(percentile(&[], 0.95), 0.0);
    }

    #[test]
    fn capacity_is_the_highest_level_within_every_target() {
        let levels = vec![
            level(1, 1.34, 0.040, 1.01),
            level(2, 1.30, 0.040, 0.95),
            level(4, 1.32, 0.045, 0.81),
            level(6, 1.69, 0.040, 0.56),  // latency
            level(8, 1.40, 0.060, 0.60),  // WER more than a point above 1-stream
            level(12, 1.45, 0.040, 0.40), // partials starve
        ];
        let c = capacity(&levels, &TARGETS);
        assert_eq!(c.streams, 4);
        assert_eq!(c.baseline_clients, 1);
        assert_eq!(c.held, [true, true, true, false, false, false]);
    }

    #[test]
    fn a_wer_exactly_one_point_up_and_p95_on_the_limit_still_hold() {
        let levels = vec![level(1, 1.0, 0.05, 1.0), level(8, 1.5, 0.06, 0.5)];
        assert_eq!(capacity(&levels, &TARGETS).streams, 8);
    }

    #[test]
    fn errors_or_no_finals_fail_a_level_and_nothing_held_is_zero() {
        let mut broken = level(2, 1.0, 0.0, 1.0);
        broken.errors.push("client 1: close code 1011".into());
        let mut silent = level(4, 0.0, 0.0, 1.0);
        silent.finals = 0;
        let levels = vec![level(1, 1.9, 0.0, 1.0), broken, silent];
        let c = capacity(&levels, &TARGETS);
        assert_eq!(c.streams, 0);
        assert_eq!(c.held, [false, false, false]);
    }

    #[test]
    fn the_sweep_stops_at_the_first_level_that_misses() {
        let mut levels = vec![level(8, 1.0, 0.02, 1.0)];
        assert!(!last_missed(&levels, &TARGETS));
        levels.push(level(32, 1.4, 0.03, 0.8));
        assert!(!last_missed(&levels, &TARGETS));
        levels.push(level(64, 1.7, 0.03, 0.8));
        assert!(last_missed(&levels, &TARGETS));
        // A WER more than a point over the first level's misses too.
        let levels = vec![level(8, 1.0, 0.02, 1.0), level(32, 1.0, 0.04, 1.0)];
        assert!(last_missed(&levels, &TARGETS));
        assert!(!last_missed(&[], &TARGETS));
    }

    #[test]
    fn the_fewest_clients_give_the_baseline_when_there_is_no_single_stream() {
        let levels = vec![level(4, 1.0, 0.10, 1.0), level(2, 1.0, 0.08, 1.0)];
        let c = capacity(&levels, &TARGETS);
        assert_eq!((c.baseline_clients, c.baseline_wer), (2, 0.08));
        assert_eq!(c.streams, 2);
    }
}
