//! What `sori eval` reports: the JSON shape (docs/accuracy.md) and the terminal table.

use serde::Serialize;

use sori_score::metrics::{Count, Metric};
use sori_score::normalize::Profile;

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The directory evaluated, as given.
    pub dir: String,
    /// The ggml model file.
    pub model: String,
    /// `--language` as given: ko, en, auto, or ref (per file from the reference's script).
    pub language: String,
    /// The noise added to every file (`--noise`, `--snr`), e.g. `white noise at 5 dB SNR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    /// CPU threads per decode.
    pub threads: usize,
    pub files: Vec<FileReport>,
    /// Audio files without a reference `.txt` (not run).
    pub skipped: Vec<Skipped>,
    /// Files that could not be evaluated (undecodable audio, unreadable reference, a failed
    /// stream), with the reason.
    pub failed: Vec<Failed>,
    pub total: Totals,
}

/// One file, scored on each path that ran.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Path relative to the directory.
    pub file: String,
    pub reference: String,
    /// The reference after normalisation (words separated by single spaces).
    pub reference_normalized: String,
    /// Rules applied: korean when the reference has Hangul, english otherwise.
    pub profile: Profile,
    /// The file's headline error rate: cer for Korean, wer otherwise.
    pub metric: Metric,
    /// Language the file was transcribed with.
    pub language: String,
    pub audio_s: f64,
    pub offline: Option<PathReport>,
    pub stream: Option<PathReport>,
    /// streaming − offline, when both ran.
    pub delta: Option<Delta>,
}

/// One path (offline or streamed) over one file.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    /// Text of each `final` event, in order.
    pub finals: Vec<String>,
    /// The finals joined with spaces.
    pub hypothesis: String,
    /// The hypothesis after normalisation (each final normalised, words joined by spaces).
    pub hypothesis_normalized: String,
    /// Word errors against the reference's words.
    pub wer: Count,
    /// Character errors against the reference's characters, spaces ignored.
    pub cer: Count,
    /// The rate of the file's metric (`wer.rate` or `cer.rate`).
    pub error_rate: Option<f64>,
    /// Wall time of the path, in seconds.
    pub wall_s: f64,
    /// `wall_s / audio_s`: below 1 is faster than real time.
    pub rtf: f64,
    /// Finals whose every unit is an insertion (see `eval::metrics::score`).
    pub hallucinated_segments: usize,
}

/// streaming − offline.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Delta {
    pub wer: Option<f64>,
    pub cer: Option<f64>,
    pub error_rate: Option<f64>,
    pub rtf: f64,
    pub hallucinated_segments: i64,
}

impl Delta {
    fn between(
        offline: &PathTotalsView,
        stream: &PathTotalsView,
        metric_rate: impl Fn(&PathTotalsView) -> Option<f64>,
    ) -> Self {
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(s, o)| s - o);
        Delta {
            wer: diff(stream.wer.rate(), offline.wer.rate()),
            cer: diff(stream.cer.rate(), offline.cer.rate()),
            error_rate: diff(metric_rate(stream), metric_rate(offline)),
            rtf: stream.rtf - offline.rtf,
            hallucinated_segments: stream.hallucinated as i64 - offline.hallucinated as i64,
        }
    }
}

/// The figures a delta is taken between.
struct PathTotalsView {
    wer: Count,
    cer: Count,
    rtf: f64,
    hallucinated: usize,
}

impl FileReport {
    /// Fills in `delta` from the two paths.
    pub fn with_delta(mut self) -> Self {
        if let (Some(o), Some(s)) = (&self.offline, &self.stream) {
            let view = |p: &PathReport| PathTotalsView {
                wer: p.wer,
                cer: p.cer,
                rtf: p.rtf,
                hallucinated: p.hallucinated_segments,
            };
            let metric = self.metric;
            self.delta = Some(Delta::between(&view(o), &view(s), |v| match metric {
                Metric::Wer => v.wer.rate(),
                Metric::Cer => v.cer.rate(),
            }));
        }
        self
    }
}

/// Totals over the scored files.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub files: usize,
    pub audio_s: f64,
    pub offline: Option<PathTotals>,
    pub stream: Option<PathTotals>,
    pub delta: Option<Delta>,
}

/// One path pooled over the files: Σ edits ÷ Σ reference units.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PathTotals {
    /// Words, over every file.
    pub wer: Count,
    /// Characters, over every file.
    pub cer: Count,
    /// WER over the files scored by WER (English-like references).
    pub wer_files: Count,
    /// CER over the files scored by CER (Korean references).
    pub cer_files: Count,
    pub wall_s: f64,
    /// Σ wall ÷ Σ audio.
    pub rtf: f64,
    pub finals: usize,
    pub hallucinated_segments: usize,
}

impl Totals {
    pub fn of(files: &[FileReport]) -> Self {
        let audio_s: f64 = files.iter().map(|f| f.audio_s).sum();
        let pool = |path: fn(&FileReport) -> Option<&PathReport>| {
            let mut t = PathTotals::default();
            let mut any = false;
            for f in files {
                let Some(p) = path(f) else { continue };
                any = true;
                t.wer.add(p.wer);
                t.cer.add(p.cer);
                match f.metric {
                    Metric::Wer => t.wer_files.add(p.wer),
                    Metric::Cer => t.cer_files.add(p.cer),
                }
                t.wall_s += p.wall_s;
                t.finals += p.finals.len();
                t.hallucinated_segments += p.hallucinated_segments;
            }
            t.rtf = if audio_s > 0.0 {
                t.wall_s / audio_s
            } else {
                0.0
            };
            any.then_some(t)
        };
        let offline = pool(|f| f.offline.as_ref());
        let stream = pool(|f| f.stream.as_ref());
        let delta = offline.as_ref().zip(stream.as_ref()).map(|(o, s)| {
            let view = |p: &PathTotals| PathTotalsView {
                wer: p.wer,
                cer: p.cer,
                rtf: p.rtf,
                hallucinated: p.hallucinated_segments,
            };
            // Files mix metrics, so the total has no single error rate to compare.
            Delta::between(&view(o), &view(s), |_| None)
        });
        Totals {
            files: files.len(),
            audio_s,
            offline,
            stream,
            delta,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub file: String,
    pub error: String,
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:.1}", r * 100.0))
}

fn signed_points(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".to_owned(), |r| format!("{:+.1}", r * 100.0))
}

/// The columns of [`EvalReport::to_table`].
const TABLE_HEADER: [&str; 11] = [
    "file",
    "metric",
    "audio s",
    "WER off",
    "WER str",
    "CER off",
    "CER str",
    "Δ err",
    "RTF off",
    "RTF str",
    "halluc off/str",
];

impl EvalReport {
    /// The terminal table: one row per file and a total row; error rates in %, the file's
    /// own metric marked with `*`.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<Vec<String>> = self.files.iter().map(file_row).collect();
        rows.push(total_row(&self.total));
        let noise = match &self.noise {
            Some(noise) => format!(", {noise} added"),
            None => String::new(),
        };
        let mut out = format!(
            "model {}, {} thread(s), language {}{noise}; error rates in %, * = the file's metric, Δ err = streaming − offline (points)\n\n",
            self.model, self.threads, self.language
        );
        out.push_str(&aligned(&TABLE_HEADER, rows));
        out.push_str(&pooled_lines(&self.total));
        for s in &self.skipped {
            out.push_str(&format!("skipped {}: {}\n", s.file, s.reason));
        }
        for f in &self.failed {
            out.push_str(&format!("FAILED {}: {}\n", f.file, f.error));
        }
        out
    }
}

/// An error rate in % of the path that ran, `·` where it did not.
fn rate_cell<P>(path: Option<&P>, pick: impl Fn(&P) -> Count) -> String {
    path.map_or_else(|| "·".to_owned(), |p| percent(pick(p).rate()))
}

fn rtf_cell(rtf: Option<f64>) -> String {
    rtf.map_or_else(|| "·".to_owned(), |r| format!("{r:.2}"))
}

/// Hallucinated segments, offline/streamed.
fn halluc_cell(offline: Option<usize>, stream: Option<usize>) -> String {
    let show = |n: Option<usize>| n.map_or_else(|| "·".to_owned(), |n| n.to_string());
    format!("{}/{}", show(offline), show(stream))
}

/// One file's row; its own metric's rates are marked with `*`.
fn file_row(f: &FileReport) -> Vec<String> {
    let mark = |m: Metric, text: String| {
        if f.metric == m {
            format!("{text}*")
        } else {
            text
        }
    };
    let (offline, stream) = (f.offline.as_ref(), f.stream.as_ref());
    vec![
        f.file.clone(),
        f.metric.as_str().to_owned(),
        format!("{:.1}", f.audio_s),
        mark(Metric::Wer, rate_cell(offline, |p| p.wer)),
        mark(Metric::Wer, rate_cell(stream, |p| p.wer)),
        mark(Metric::Cer, rate_cell(offline, |p| p.cer)),
        mark(Metric::Cer, rate_cell(stream, |p| p.cer)),
        f.delta
            .map_or_else(|| "·".to_owned(), |d| signed_points(d.error_rate)),
        rtf_cell(offline.map(|p| p.rtf)),
        rtf_cell(stream.map(|p| p.rtf)),
        halluc_cell(
            offline.map(|p| p.hallucinated_segments),
            stream.map(|p| p.hallucinated_segments),
        ),
    ]
}

/// The total row: rates pooled over the files.
fn total_row(t: &Totals) -> Vec<String> {
    let (offline, stream) = (t.offline.as_ref(), t.stream.as_ref());
    vec![
        format!("total ({} files)", t.files),
        "pooled".to_owned(),
        format!("{:.1}", t.audio_s),
        rate_cell(offline, |p| p.wer),
        rate_cell(stream, |p| p.wer),
        rate_cell(offline, |p| p.cer),
        rate_cell(stream, |p| p.cer),
        "".to_owned(),
        rtf_cell(offline.map(|p| p.rtf)),
        rtf_cell(stream.map(|p| p.rtf)),
        halluc_cell(
            offline.map(|p| p.hallucinated_segments),
            stream.map(|p| p.hallucinated_segments),
        ),
    ]
}

/// The header, a rule, the rows and a rule before the last (total) row, in aligned columns:
/// the first left-aligned, the others right-aligned.
fn aligned(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = || widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>();
    let mut out = table_line(&widths, header.iter().map(|h| h.to_string()).collect());
    out.push_str(&table_line(&widths, rule()));
    let last = rows.len() - 1;
    for (i, row) in rows.into_iter().enumerate() {
        if i == last {
            out.push_str(&table_line(&widths, rule()));
        }
        out.push_str(&table_line(&widths, row));
    }
    out
}

fn table_line(widths: &[usize], cells: Vec<String>) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let pad = widths[i] - cell.chars().count();
        if i == 0 {
            out.push_str(cell);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str("  ");
            out.push_str(&" ".repeat(pad));
            out.push_str(cell);
        }
    }
    out.trim_end().to_owned() + "\n"
}

/// Per path, the rates of each metric over the files it scores, and the path's totals.
fn pooled_lines(t: &Totals) -> String {
    let mut out = String::new();
    for (name, path) in [("offline", &t.offline), ("streamed", &t.stream)] {
        if let Some(p) = path {
            out.push_str(&format!(
                "{name}: WER of English-like files {} %, CER of Korean files {} %, {} finals, {} hallucinated, {:.1} s wall\n",
                percent(p.wer_files.rate()),
                percent(p.cer_files.rate()),
                p.finals,
                p.hallucinated_segments,
                p.wall_s
            ));
        }
    }
    out
}
