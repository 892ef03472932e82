//! The figures of `sori bench --load`, its pass/fail verdict and its Markdown report.

use std::collections::BTreeMap;
use std::path::Path;

use sori_core::protocol::close_code;

use super::{LoadArgs, SAMPLE_EVERY, TRAILING_SILENCE_MS, Tally};
use crate::bench::percentile;

/// The figures `sori bench --load` prints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub model: String,
    pub workers: usize,
    pub threads: usize,
    pub clients: usize,
    pub max_sessions: usize,
    pub audio: String,
    pub audio_s: f64,
    pub duration_s: f64,
    pub sessions_completed: usize,
    /// Refusals with `server_full` and close 1013.
    pub refused_1013: usize,
    /// Any other refusal, as "close code / error code" → count.
    pub other_refusals: BTreeMap<String, usize>,
    /// Close codes of admitted sessions → count (1000 expected).
    pub session_close_codes: BTreeMap<String, usize>,
    /// Largest number of open sessions the server counted (sampled every 10 ms).
    pub max_open_sessions: usize,
    pub max_wer_allowed: f64,
    pub wer_median: f64,
    pub wer_max: f64,
    pub wrong_transcripts: usize,
    /// The transcript with the highest WER (when any is above 0), for the report.
    pub worst_transcript: Option<String>,
    pub finals: usize,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub latency_max_s: f64,
    pub max_lag_ms: u64,
    pub errors: usize,
    pub failures: Vec<String>,
    pub rss_before_model_mb: f64,
    pub rss_start_mb: f64,
    pub warmup_s: f64,
    pub rss_after_warmup_mb: f64,
    pub rss_end_mb: f64,
    pub rss_max_mb: f64,
    /// Least-squares slope of RSS over the samples after warm-up.
    pub rss_slope_mb_per_min: f64,
    /// (seconds since the clients started, RSS MB), every 5 s.
    pub rss_samples: Vec<(f64, f64)>,
}

/// What the run was, and what it measured besides the clients' tally.
#[derive(Debug, Default)]
pub(super) struct RunFacts {
    pub(super) model: String,
    pub(super) workers: usize,
    pub(super) threads: usize,
    pub(super) clients: usize,
    pub(super) audio_s: f64,
    pub(super) duration_s: f64,
    pub(super) max_open_sessions: usize,
    pub(super) rss_before_model_mb: f64,
    pub(super) rss_start_mb: f64,
    pub(super) rss_end_mb: f64,
}

impl LoadReport {
    /// The figures of a finished run.
    pub(super) fn new(
        args: &LoadArgs,
        facts: RunFacts,
        tally: Tally,
        rss_samples: Vec<(f64, f64)>,
    ) -> Self {
        let warmup_s = (facts.duration_s * 0.2).min(60.0);
        let after: Vec<(f64, f64)> = rss_samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= warmup_s)
            .collect();
        let wers = tally.sorted_wers();
        let latencies = tally.sorted_latencies();
        let (refused_1013, other_refusals) = tally.refusals_by_kind();
        LoadReport {
            model: facts.model,
            workers: facts.workers,
            threads: facts.threads,
            clients: facts.clients,
            max_sessions: args.max_sessions,
            audio: args.audio.display().to_string(),
            audio_s: facts.audio_s,
            duration_s: facts.duration_s,
            sessions_completed: tally.sessions.len(),
            refused_1013,
            other_refusals,
            session_close_codes: tally.close_codes(),
            max_open_sessions: facts.max_open_sessions,
            max_wer_allowed: args.max_wer,
            wer_median: percentile(&wers, 0.5),
            wer_max: wers.last().copied().unwrap_or(0.0),
            wrong_transcripts: tally
                .sessions
                .iter()
                .filter(|s| s.wer > args.max_wer)
                .count(),
            worst_transcript: tally
                .sessions
                .iter()
                .filter(|s| s.wer > 0.0)
                .max_by(|a, b| a.wer.total_cmp(&b.wer))
                .map(|s| s.text.clone()),
            finals: latencies.len(),
            latency_p50_s: percentile(&latencies, 0.5),
            latency_p95_s: percentile(&latencies, 0.95),
            latency_max_s: latencies.last().copied().unwrap_or(0.0),
            max_lag_ms: tally
                .sessions
                .iter()
                .map(|s| s.max_lag_ms)
                .max()
                .unwrap_or(0),
            errors: tally.sessions.iter().map(|s| s.errors.len()).sum(),
            failures: tally.failures,
            rss_before_model_mb: facts.rss_before_model_mb,
            rss_start_mb: facts.rss_start_mb,
            warmup_s,
            rss_after_warmup_mb: after.first().map_or(facts.rss_end_mb, |s| s.1),
            rss_end_mb: facts.rss_end_mb,
            rss_max_mb: rss_samples.iter().map(|s| s.1).fold(0.0, f64::max),
            rss_slope_mb_per_min: slope(&after) * 60.0,
            rss_samples,
        }
    }

    /// Why the run failed, if it did: a wrong transcript, an unexpected error or close code,
    /// a refusal other than 1013, more open sessions than allowed, or no session at all.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sessions_completed == 0 {
            problems.push("no session completed".to_owned());
        }
        if self.wrong_transcripts > 0 {
            problems.push(format!(
                "{} transcripts above {:.0} % WER (worst: {:?})",
                self.wrong_transcripts,
                self.max_wer_allowed * 100.0,
                self.worst_transcript.as_deref().unwrap_or_default()
            ));
        }
        if self.errors > 0 {
            problems.push(format!("{} error events in admitted sessions", self.errors));
        }
        let abnormal: usize = self
            .session_close_codes
            .iter()
            .filter(|(code, _)| code.as_str() != "1000")
            .map(|(_, n)| n)
            .sum();
        if abnormal > 0 {
            problems.push(format!(
                "{abnormal} sessions did not close with 1000: {:?}",
                self.session_close_codes
            ));
        }
        if !self.other_refusals.is_empty() {
            problems.push(format!(
                "refusals other than 1013: {:?}",
                self.other_refusals
            ));
        }
        if self.max_open_sessions > self.max_sessions {
            problems.push(format!(
                "{} sessions were open at once (limit {})",
                self.max_open_sessions, self.max_sessions
            ));
        }
        problems.extend(self.failures.iter().take(10).cloned());
        if self.failures.len() > 10 {
            problems.push(format!("… {} failures in all", self.failures.len()));
        }
        problems
    }

    /// The report: what ran, a table of figures, the worst transcript, RSS over time and the
    /// verdict with its reasons.
    pub fn to_markdown(&self) -> String {
        let mut out = self.markdown_intro();
        out.push_str("| figure | value |\n|---|---|\n");
        for (name, value) in self.figure_rows() {
            out.push_str(&format!("| {name} | {value} |\n"));
        }
        if let Some(text) = &self.worst_transcript {
            out.push_str(&format!(
                "\nworst transcript ({:.1} % WER): {text:?}\n",
                self.wer_max * 100.0
            ));
        }
        out.push_str(&format!(
            "\nRSS (MB) about every minute: {}\n",
            self.rss_per_minute().join(", ")
        ));
        let problems = self.problems();
        if problems.is_empty() {
            out.push_str("\nresult: PASS\n");
        } else {
            out.push_str(&format!("\nresult: FAIL\n- {}\n", problems.join("\n- ")));
        }
        out
    }

    /// What ran: model, clients, limit, duration and clip.
    fn markdown_intro(&self) -> String {
        format!(
            "model `{}`, {} worker(s) × {} thread(s); {} clients against max_sessions {}, {:.1} min; \
             each session streams {} ({:.1} s) in real time + {:.1} s of silence\n\n",
            self.model,
            self.workers,
            self.threads,
            self.clients,
            self.max_sessions,
            self.duration_s / 60.0,
            Path::new(&self.audio)
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            self.audio_s,
            TRAILING_SILENCE_MS as f64 / 1000.0
        )
    }

    /// The rows of the figures table.
    fn figure_rows(&self) -> [(&'static str, String); 12] {
        [
            ("sessions completed", format!("{}", self.sessions_completed)),
            (
                "refused with `server_full` + 1013",
                format!("{}", self.refused_1013),
            ),
            ("other refusals", codes(&self.other_refusals)),
            (
                "close codes of admitted sessions",
                codes(&self.session_close_codes),
            ),
            (
                "most sessions open at once (server's count)",
                format!("{}", self.max_open_sessions),
            ),
            (
                "WER median / max",
                format!(
                    "{:.1} % / {:.1} %",
                    self.wer_median * 100.0,
                    self.wer_max * 100.0
                ),
            ),
            (
                "transcripts above the WER limit",
                format!(
                    "{} (limit {:.0} %)",
                    self.wrong_transcripts,
                    self.max_wer_allowed * 100.0
                ),
            ),
            (
                "end of speech → final, p50 / p95 / max",
                format!(
                    "{:.2} / {:.2} / {:.2} s ({} finals)",
                    self.latency_p50_s, self.latency_p95_s, self.latency_max_s, self.finals
                ),
            ),
            ("largest `status` lag_ms", format!("{}", self.max_lag_ms)),
            (
                "error events / client failures",
                format!("{} / {}", self.errors, self.failures.len()),
            ),
            (
                "RSS before the model / server idle / after warm-up / end / max",
                format!(
                    "{:.0} / {:.0} / {:.0} (at {:.0} s) / {:.0} / {:.0} MB",
                    self.rss_before_model_mb,
                    self.rss_start_mb,
                    self.rss_after_warmup_mb,
                    self.warmup_s,
                    self.rss_end_mb,
                    self.rss_max_mb
                ),
            ),
            (
                "RSS slope after warm-up",
                format!("{:+.2} MB/min", self.rss_slope_mb_per_min),
            ),
        ]
    }

    /// The first and last RSS samples and about one a minute between them.
    fn rss_per_minute(&self) -> Vec<String> {
        self.rss_samples
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| {
                *i == 0
                    || *i + 1 == self.rss_samples.len()
                    || (t % 60.0) < SAMPLE_EVERY.as_secs_f64() - 0.5
            })
            .map(|(_, s)| s)
            .map(|(t, mb)| format!("{:.0} s {mb:.0}", t))
            .collect()
    }
}

/// `code: count, …`, or `none`.
fn codes(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        "none".to_owned()
    } else {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Tally {
    fn sorted_wers(&self) -> Vec<f64> {
        let mut wers: Vec<f64> = self.sessions.iter().map(|s| s.wer).collect();
        wers.sort_by(f64::total_cmp);
        wers
    }

    /// Every final's latency, over all sessions, sorted.
    fn sorted_latencies(&self) -> Vec<f64> {
        let mut latencies: Vec<f64> = self
            .sessions
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort_by(f64::total_cmp);
        latencies
    }

    /// Close codes of admitted sessions → count.
    fn close_codes(&self) -> BTreeMap<String, usize> {
        let mut session_close_codes = BTreeMap::new();
        for s in &self.sessions {
            let code = s.close.map_or_else(|| "none".to_owned(), |c| c.to_string());
            *session_close_codes.entry(code).or_default() += 1;
        }
        session_close_codes
    }

    /// Refusals with `server_full` and close 1013, and the others as "close / error" → count.
    fn refusals_by_kind(&self) -> (usize, BTreeMap<String, usize>) {
        let (mut refused_1013, mut other_refusals) = (0, BTreeMap::new());
        for ((close, error), n) in &self.refusals {
            if *close == Some(close_code::TRY_LATER) && error == "server_full" {
                refused_1013 += n;
            } else {
                let close = close.map_or_else(|| "none".to_owned(), |c| c.to_string());
                *other_refusals
                    .entry(format!("{close} / {error}"))
                    .or_default() += n;
            }
        }
        (refused_1013, other_refusals)
    }
}

/// Least-squares slope of y over x (per unit of x); 0 with fewer than two points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_per_unit_of_x() {
        assert_eq!(slope(&[(0.0, 1.0)]), 0.0);
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        assert!((slope(&line) - 0.5).abs() < 1e-12);
    }
}
