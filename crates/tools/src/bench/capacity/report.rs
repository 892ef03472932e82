//! The report of `sori bench --capacity`: a Markdown table for docs/benchmarks.md, the
//! capacity line, and every figure for `--json`.

use super::figures::{Capacity, LevelFigures, Thresholds};
use super::gpu::Decoder;

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
    /// `/api/config`'s `decoder`: where whisper decodes, and why the CPU when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder: Option<Decoder>,
    /// GPU memory in use after the warm-up, before the first level (a GPU decoder only; every
    /// process on the devices, summed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_idle_mb: Option<f64>,
    /// [`Self::gpu_memory_idle_mb`] ÷ the decoder workers: what one more whisper state costs,
    /// at most (the CUDA context and the model are shared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_per_worker_mb: Option<f64>,
    pub thresholds: Thresholds,
    pub levels: Vec<LevelFigures>,
    /// `--stop-at-first-miss`: the levels not run because a smaller one missed the targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<usize>,
    pub capacity: Capacity,
}

impl CapacityReport {
    /// What ran, the table (one row per level) and the errors, if any. With the decoder on a
    /// GPU, two more columns: GPU memory peak and mean GPU utilisation.
    pub fn to_markdown(&self) -> String {
        let on_gpu = self.decoder.as_ref().is_some_and(Decoder::on_gpu);
        let mut out = format!(
            "model `{}`, {} decoder worker(s); server: `{}`; each client streams {} ({:.1} s, \
             language {})\n",
            self.model,
            self.workers,
            self.server.join(" "),
            self.files.join(", "),
            self.stream_s,
            self.language
        );
        if let Some(decoder) = &self.decoder {
            out.push_str(&decoder.line());
            out.push('\n');
        }
        if let (true, Some(idle), Some(per)) = (
            on_gpu,
            self.gpu_memory_idle_mb,
            self.gpu_memory_per_worker_mb,
        ) {
            out.push_str(&format!(
                "GPU memory after the warm-up: {idle:.0} MB, {per:.0} MB per worker\n"
            ));
        }
        out.push('\n');
        let (gpu_head, gpu_rule) = if on_gpu {
            (" GPU memory peak | GPU busy |", "---|---|")
        } else {
            ("", "")
        };
        out.push_str(&format!(
            "| clients | final p50 | final p95 | final max | WER mean / worst | \
             partials/s min / mean | decoder busy | peak RSS |{gpu_head} errors | holds |\n\
             |---|---|---|---|---|---|---|---|{gpu_rule}---|---|\n"
        ));
        for (level, held) in self.levels.iter().zip(&self.capacity.held) {
            out.push_str(&row(level, *held, on_gpu));
        }
        if !self.not_run.is_empty() {
            let not_run: Vec<String> = self.not_run.iter().map(ToString::to_string).collect();
            out.push_str(&format!(
                "\nnot run (--stop-at-first-miss): {} clients\n",
                not_run.join(", ")
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

/// One level's table row; the GPU columns only for a GPU decoder ("–" for a level without a
/// sample).
fn row(level: &LevelFigures, held: bool, on_gpu: bool) -> String {
    let gpu = match (on_gpu, &level.gpu) {
        (false, _) => String::new(),
        (true, Some(g)) => format!(
            " {:.0} MB | {:.0} % |",
            g.peak_memory_mb, g.utilisation_mean_pct
        ),
        (true, None) => " – | – |".to_owned(),
    };
    format!(
        "| {} | {:.2} s | {:.2} s | {:.2} s | {:.1} % / {:.1} % | {:.2} / {:.2} | {:.0} % | \
         {:.0} MB |{gpu} {} | {} |\n",
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
        if held { "yes" } else { "no" }
    )
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
    use crate::bench::capacity::gpu::GpuLevel;

    const THRESHOLDS: Thresholds = Thresholds {
        max_p95_s: 1.5,
        max_wer_rise: 0.01,
        min_partial_rate: 0.5,
    };

    fn level(clients: usize, p95: f64) -> LevelFigures {
        LevelFigures {
            clients,
            finals: 6,
            latency_p95_s: p95,
            partial_rate_min: 1.0,
            ..LevelFigures::default()
        }
    }

    fn report(levels: Vec<LevelFigures>, decoder: Option<Decoder>) -> CapacityReport {
        CapacityReport {
            model: "ggml-base-q8_0.bin".into(),
            workers: 2.0,
            server: vec![],
            files: vec!["joined.wav".into()],
            stream_s: 50.0,
            language: "en".into(),
            decoder,
            gpu_memory_idle_mb: None,
            gpu_memory_per_worker_mb: None,
            thresholds: THRESHOLDS,
            capacity: capacity(&levels, &THRESHOLDS),
            levels,
            not_run: vec![],
        }
    }

    #[test]
    fn the_capacity_line_names_the_targets() {
        let report = report(vec![level(1, 1.2), level(6, 1.2)], None);
        assert_eq!(
            report.capacity_line(),
            "capacity: 6 streams (p95 ≤ 1.50 s, WER ≤ 1-stream + 1 pt, partials ≥ 0.50/s, no errors)"
        );
        assert_eq!(report.to_markdown().matches("| yes |").count(), 2);
        assert_eq!(points(0.005), "0.5");
    }

    #[test]
    fn a_cpu_decoder_gets_its_reason_and_no_gpu_columns() {
        let cpu = Decoder {
            device: "cpu".into(),
            cpu_reason: Some("this build has no GPU support".into()),
            workers: Some(2),
            threads: Some(1),
            ..Decoder::default()
        };
        let report = report(vec![level(1, 1.2)], Some(cpu));
        let text = report.to_markdown();
        assert!(
            text.contains("decoder: cpu (this build has no GPU support), 2 workers × 1 thread")
        );
        assert!(!text.contains("GPU memory"), "{text}");
        assert!(text.contains("| peak RSS | errors | holds |"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["levels"][0].get("gpu").is_none());
        assert!(json.get("gpu_memory_per_worker_mb").is_none());
        assert!(json.get("not_run").is_none());
    }

    #[test]
    fn a_gpu_decoder_adds_memory_and_utilisation() {
        let gpu = Decoder {
            device: "gpu".into(),
            gpus: vec!["NVIDIA H200 (CUDA0)".into()],
            workers: Some(2),
            threads: Some(1),
            ..Decoder::default()
        };
        let mut levels = vec![level(8, 0.9), level(32, 1.4), level(64, 2.1)];
        levels[0].gpu = Some(GpuLevel {
            peak_memory_mb: 1900.0,
            utilisation_mean_pct: 12.4,
            samples: 90,
        });
        let mut report = report(levels, Some(gpu));
        report.gpu_memory_idle_mb = Some(1800.0);
        report.gpu_memory_per_worker_mb = Some(900.0);
        report.not_run = vec![128, 256];
        let text = report.to_markdown();
        assert!(text.contains("decoder: gpu (NVIDIA H200 (CUDA0)), 2 workers × 1 thread"));
        assert!(text.contains("GPU memory after the warm-up: 1800 MB, 900 MB per worker"));
        assert!(text.contains("| peak RSS | GPU memory peak | GPU busy | errors | holds |"));
        assert!(
            text.contains("| 0 MB | 1900 MB | 12 % | 0 | yes |"),
            "{text}"
        );
        assert!(text.contains("| 0 MB | – | – | 0 | no |"), "{text}");
        assert!(text.contains("not run (--stop-at-first-miss): 128, 256 clients"));
        assert_eq!(report.capacity.streams, 32);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["levels"][0]["gpu"]["peak_memory_mb"], 1900.0);
        assert_eq!(json["decoder"]["device"], "gpu");
        assert_eq!(json["gpu_memory_per_worker_mb"], 900.0);
        assert_eq!(json["not_run"], serde_json::json!([128, 256]));
    }
}
