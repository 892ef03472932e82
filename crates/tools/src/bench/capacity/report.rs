//! The report of `sori bench --capacity`: a Markdown table for docs/benchmarks.md, the
//! capacity line, and every figure for `--json`.

use super::figures::{Capacity, LevelFigures, Thresholds};

/// Everything `--capacity` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CapacityReport {
    /// The model the server named in `ready`.
    pub model: String,
    /// `sori_decode_workers` of the server.
    pub workers: f64,
    /// The flags and environment the `sori serve` child was given by the bench.
    pub server: Vec<String>,
    pub files: Vec<String>,
    /// Seconds each client streams: the files, the pauses between them and the silence.
    pub stream_s: f64,
    pub language: String,
    pub thresholds: Thresholds,
    pub levels: Vec<LevelFigures>,
    pub capacity: Capacity,
}

impl CapacityReport {
    /// What ran, the table (one row per level) and the errors, if any.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "model `{}`, {} decoder worker(s); server: `{}`; each client streams {} ({:.1} s, \
             language {})\n\n",
            self.model,
            self.workers,
            self.server.join(" "),
            self.files.join(", "),
            self.stream_s,
            self.language
        );
        out.push_str(
            "| clients | final p50 | final p95 | final max | WER mean / worst | \
             partials/s min / mean | decoder busy | peak RSS | errors | holds |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (level, held) in self.levels.iter().zip(&self.capacity.held) {
            out.push_str(&format!(
                "| {} | {:.2} s | {:.2} s | {:.2} s | {:.1} % / {:.1} % | {:.2} / {:.2} | {:.0} % | \
                 {:.0} MB | {} | {} |\n",
                level.clients,
                level.latency_p50_s,
                level.latency_p95_s,
                level.latency_max_s,
                level.wer_mean * 100.0,
                level.wer_worst * 100.0,
                level.partial_rate_min,
                level.partial_rate_mean,
                level.decoder_utilisation * 100.0,
                level.peak_rss_mb,
                level.errors.len(),
                if *held { "yes" } else { "no" }
            ));
        }
        for level in self.levels.iter().filter(|l| !l.errors.is_empty()) {
            out.push_str(&format!(
                "\n{} clients: {}",
                level.clients,
                level.errors.join("; ")
            ));
        }
        out
    }

    /// `capacity: 6 streams (p95 ≤ 1.50 s, WER ≤ 1-stream + 1 pt, partials ≥ 0.50/s)`.
    pub fn capacity_line(&self) -> String {
        let t = &self.thresholds;
        format!(
            "capacity: {} stream{} (p95 ≤ {:.2} s, WER ≤ {}-stream + {} pt, partials ≥ {:.2}/s, \
             no errors)",
            self.capacity.streams,
            if self.capacity.streams == 1 { "" } else { "s" },
            t.max_p95_s,
            self.capacity.baseline_clients,
            points(t.max_wer_rise),
            t.min_partial_rate
        )
    }
}

/// A WER difference in points: 0.01 → "1", 0.005 → "0.5".
fn points(rise: f64) -> String {
    let p = rise * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{p:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::capacity::figures::capacity;

    #[test]
    fn the_capacity_line_names_the_targets() {
        let thresholds = Thresholds {
            max_p95_s: 1.5,
            max_wer_rise: 0.01,
            min_partial_rate: 0.5,
        };
        let one = LevelFigures {
            clients: 1,
            finals: 6,
            latency_p95_s: 1.2,
            partial_rate_min: 1.0,
            ..LevelFigures::default()
        };
        let levels = vec![one.clone(), LevelFigures { clients: 6, ..one }];
        let report = CapacityReport {
            model: "ggml-base-q8_0.bin".into(),
            workers: 1.0,
            server: vec![],
            files: vec!["joined.wav".into()],
            stream_s: 50.0,
            language: "en".into(),
            thresholds,
            capacity: capacity(&levels, &thresholds),
            levels,
        };
        assert_eq!(
            report.capacity_line(),
            "capacity: 6 streams (p95 ≤ 1.50 s, WER ≤ 1-stream + 1 pt, partials ≥ 0.50/s, no errors)"
        );
        assert_eq!(report.to_markdown().matches("| yes |").count(), 2);
        assert_eq!(points(0.005), "0.5");
    }
}
