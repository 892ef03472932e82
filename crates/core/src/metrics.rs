//! Prometheus metrics: the counters and histograms the data path updates with one-line calls,
//! and the text encoder (exposition format 0.0.4) behind `GET /metrics`.
//!
//! Counters and histograms live in one process-wide registry, [`global`]: the decoder threads,
//! the cache and the LLM client update them without a handle to the server, and production runs
//! one server per process. Gauges that describe one server (open sessions, decoder queue, lag)
//! are read from that server's state at scrape time and handed to [`Metrics::render`] as
//! [`ServerGauges`]. Tests that start several servers in one process therefore compare counters
//! before and after what they do, never absolute values.
//!
//! Every metric is listed, with its meaning, in docs/operations.md.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Decode time of one utterance: tens of milliseconds (a short partial on a GPU) to tens of
/// seconds (a 30 s window with beam search on a loaded CPU).
const DECODE_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];
/// Decode time over audio time: below 1 keeps up with speech; the interesting range is 0.05–2.
const RTF_BUCKETS: &[f64] = &[0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0];
/// Time a decode request waits for a worker: 0 on an idle server, seconds when it falls behind.
const QUEUE_WAIT_BUCKETS: &[f64] = &[0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// One chat completion: a few hundred milliseconds (vLLM) to the timeout (a CPU llama.cpp).
const LLM_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];
/// Retrieval is milliseconds in process, more with a remote embedder and reranker; a `/query`
/// answer adds an LLM call.
const RAG_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// What an LLM call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmPurpose {
    /// Keywords of a final segment.
    Keywords,
    /// The answer of a RAG `/query`.
    Answer,
}

impl LlmPurpose {
    const ALL: [LlmPurpose; 2] = [LlmPurpose::Keywords, LlmPurpose::Answer];

    pub fn as_str(self) -> &'static str {
        match self {
            LlmPurpose::Keywords => "keywords",
            LlmPurpose::Answer => "answer",
        }
    }
}

/// Why an LLM call gave nothing usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmErrorKind {
    /// The endpoint could not be reached.
    Connection,
    /// No answer within the timeout.
    Timeout,
    /// The endpoint answered with an error (HTTP status, API error).
    Server,
    /// The endpoint answered, but not with what was asked (not the keywords JSON, empty).
    Rejected,
    /// No model configured and none could be listed at `GET {base_url}/models`.
    ModelList,
    /// Not attempted: the circuit breaker is resting after failures.
    CircuitOpen,
}

impl LlmErrorKind {
    const ALL: [LlmErrorKind; 6] = [
        LlmErrorKind::Connection,
        LlmErrorKind::Timeout,
        LlmErrorKind::Server,
        LlmErrorKind::Rejected,
        LlmErrorKind::ModelList,
        LlmErrorKind::CircuitOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LlmErrorKind::Connection => "connection",
            LlmErrorKind::Timeout => "timeout",
            LlmErrorKind::Server => "server",
            LlmErrorKind::Rejected => "rejected",
            LlmErrorKind::ModelList => "model_list",
            LlmErrorKind::CircuitOpen => "circuit_open",
        }
    }
}

/// A timed RAG operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RagOperation {
    /// Retrieval: embed the query, search the store, rerank (`/search`, live `rag` events, and
    /// the retrieval half of `/query`).
    Search,
    /// A whole `/query`: retrieval and the LLM's answer (or the cached answer).
    Query,
}

impl RagOperation {
    const ALL: [RagOperation; 2] = [RagOperation::Search, RagOperation::Query];

    pub fn as_str(self) -> &'static str {
        match self {
            RagOperation::Search => "search",
            RagOperation::Query => "query",
        }
    }
}

/// How a decode ended, as the `outcome` label of `sori_decodes_total`.
pub const DECODE_OUTCOMES: [&str; 3] = ["ok", "cancelled", "error"];

/// Counters and histograms of the whole process; see the module comment.
pub struct Metrics {
    sessions_opened: Counter,
    sessions_refused: Family<Counter>,
    audio_received_seconds: Counter,
    decodes: Family<Counter>,
    decode_seconds: Histogram,
    decode_audio_seconds: Counter,
    real_time_factor: Histogram,
    queue_wait_seconds: Histogram,
    segments_final: Counter,
    segments_filtered: Family<Counter>,
    llm_request_seconds: Family<Histogram>,
    llm_errors: Family<Counter>,
    cache_hits: Family<Counter>,
    cache_misses: Family<Counter>,
    rag_request_seconds: Family<Histogram>,
}

/// One server's state at scrape time (gauges), read by the `/metrics` handler.
#[derive(Debug, Clone, Default)]
pub struct ServerGauges {
    /// File name of the Whisper model, for `sori_build_info`.
    pub model: String,
    pub uptime_seconds: f64,
    pub sessions_active: usize,
    pub sessions_max: usize,
    /// The largest lag any open session reported, in seconds.
    pub lag_max_seconds: f64,
    pub workers: usize,
    pub workers_busy: usize,
    pub queue_depth: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every label value known in advance already present (at 0), so that
    /// dashboards and `rate()` see the series before the first event.
    pub fn new() -> Self {
        let metrics = Self {
            sessions_opened: Counter::default(),
            sessions_refused: Family::new(&["reason"], Counter::default),
            audio_received_seconds: Counter::default(),
            decodes: Family::new(&["outcome"], Counter::default),
            decode_seconds: Histogram::new(DECODE_BUCKETS),
            decode_audio_seconds: Counter::default(),
            real_time_factor: Histogram::new(RTF_BUCKETS),
            queue_wait_seconds: Histogram::new(QUEUE_WAIT_BUCKETS),
            segments_final: Counter::default(),
            segments_filtered: Family::new(&["reason"], Counter::default),
            llm_request_seconds: Family::new(&["purpose"], || Histogram::new(LLM_BUCKETS)),
            llm_errors: Family::new(&["purpose", "kind"], Counter::default),
            cache_hits: Family::new(&["namespace"], Counter::default),
            cache_misses: Family::new(&["namespace"], Counter::default),
            rag_request_seconds: Family::new(&["operation"], || Histogram::new(RAG_BUCKETS)),
        };
        metrics.sessions_refused.touch(&["server_full"]);
        for outcome in DECODE_OUTCOMES {
            metrics.decodes.touch(&[outcome]);
        }
        for reason in crate::stt::filter::DropReason::LABELS {
            metrics.segments_filtered.touch(&[reason]);
        }
        for purpose in LlmPurpose::ALL {
            metrics.llm_request_seconds.touch(&[purpose.as_str()]);
            for kind in LlmErrorKind::ALL {
                // Only keyword calls go through the circuit breaker.
                if purpose == LlmPurpose::Answer && kind == LlmErrorKind::CircuitOpen {
                    continue;
                }
                metrics.llm_errors.touch(&[purpose.as_str(), kind.as_str()]);
            }
        }
        for operation in RagOperation::ALL {
            metrics.rag_request_seconds.touch(&[operation.as_str()]);
        }
        metrics
    }

    /// A `/ws` session was admitted.
    pub fn session_opened(&self) {
        self.sessions_opened.inc();
    }

    /// A `/ws` connection was refused; `reason` is the `error` event's code (`server_full`, …).
    pub fn session_refused(&self, reason: &str) {
        self.sessions_refused.with(&[reason], Counter::inc);
    }

    /// `samples` of audio at `sample_rate` Hz reached a session (stream or file).
    pub fn audio_received(&self, samples: usize, sample_rate: u32) {
        if sample_rate > 0 {
            self.audio_received_seconds
                .add(samples as f64 / f64::from(sample_rate));
        }
    }

    /// A decoder worker finished a request: `outcome` is one of [`DECODE_OUTCOMES`]; `queued`
    /// is the wait for a worker, `decode` the decoder's own time, for `audio_seconds` of audio.
    /// Only successful decodes enter the latency and real-time-factor histograms: a cancelled
    /// partial stops early and would flatter them.
    pub fn decode_finished(
        &self,
        outcome: &str,
        queued: Duration,
        decode: Duration,
        audio_seconds: f64,
    ) {
        self.decodes.with(&[outcome], Counter::inc);
        self.queue_wait_seconds.observe(queued.as_secs_f64());
        if outcome == "ok" {
            self.decode_seconds.observe(decode.as_secs_f64());
            self.decode_audio_seconds.add(audio_seconds);
            if audio_seconds > 0.0 {
                self.real_time_factor
                    .observe(decode.as_secs_f64() / audio_seconds);
            }
        }
    }

    /// A final segment was sent.
    pub fn segment_final(&self) {
        self.segments_final.inc();
    }

    /// The hallucination filter dropped a final segment (`reason`: `DropReason::as_str`).
    pub fn segment_filtered(&self, reason: &str) {
        self.segments_filtered.with(&[reason], Counter::inc);
    }

    /// One request to the LLM endpoint took `took`; `error` says why it failed, if it did.
    pub fn llm_request(&self, purpose: LlmPurpose, took: Duration, error: Option<LlmErrorKind>) {
        self.llm_request_seconds
            .with(&[purpose.as_str()], |h| h.observe(took.as_secs_f64()));
        if let Some(kind) = error {
            self.llm_error(purpose, kind);
        }
    }

    /// An LLM call failed without a timed request (circuit open, no model, answer rejected
    /// after parsing).
    pub fn llm_error(&self, purpose: LlmPurpose, kind: LlmErrorKind) {
        self.llm_errors
            .with(&[purpose.as_str(), kind.as_str()], Counter::inc);
    }

    /// A cache lookup in `namespace` was a hit or a miss. Both series are created together.
    pub fn cache_lookup(&self, namespace: &str, hit: bool) {
        self.cache_hits
            .with(&[namespace], |c| c.add(if hit { 1.0 } else { 0.0 }));
        self.cache_misses
            .with(&[namespace], |c| c.add(if hit { 0.0 } else { 1.0 }));
    }

    /// A RAG operation succeeded in `took`.
    pub fn rag_request(&self, operation: RagOperation, took: Duration) {
        self.rag_request_seconds
            .with(&[operation.as_str()], |h| h.observe(took.as_secs_f64()));
    }

    /// Every metric in the Prometheus text format, the server's `gauges` first.
    pub fn render(&self, gauges: &ServerGauges) -> String {
        let mut out = Encoder::default();
        out.header(
            "sori_build_info",
            "Always 1; the labels name the version and the Whisper model.",
            "gauge",
        );
        out.sample(
            "sori_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("model", gauges.model.as_str()),
            ],
            1.0,
        );
        out.gauge(
            "sori_uptime_seconds",
            "Seconds since the server started.",
            gauges.uptime_seconds,
        );

        out.gauge(
            "sori_sessions_active",
            "Open /ws sessions.",
            gauges.sessions_active as f64,
        );
        out.gauge(
            "sori_sessions_max",
            "The limit of open /ws sessions (server.max_sessions).",
            gauges.sessions_max as f64,
        );
        out.counter(
            "sori_sessions_total",
            "/ws sessions admitted since start.",
            &self.sessions_opened,
        );
        out.counter_family(
            "sori_sessions_refused_total",
            "/ws connections refused, by the error code sent (server_full, token_invalid, ...).",
            &self.sessions_refused,
        );
        out.counter(
            "sori_audio_received_seconds_total",
            "Seconds of audio received by sessions (/ws streams and file transcriptions).",
            &self.audio_received_seconds,
        );
        out.gauge(
            "sori_session_lag_max_seconds",
            "The longest any open session's oldest unfinished final has been waiting.",
            gauges.lag_max_seconds,
        );

        out.gauge(
            "sori_decode_workers",
            "Decoder worker threads (stt.workers).",
            gauges.workers as f64,
        );
        out.gauge(
            "sori_decode_workers_busy",
            "Decoder workers decoding right now.",
            gauges.workers_busy as f64,
        );
        out.gauge(
            "sori_decode_queue_depth",
            "Decode requests waiting for a worker.",
            gauges.queue_depth as f64,
        );
        out.counter_family(
            "sori_decodes_total",
            "Decodes finished by a worker, by outcome (ok, cancelled: a stale partial, error).",
            &self.decodes,
        );
        out.histogram(
            "sori_decode_seconds",
            "Time the decoder took for one utterance (successful decodes).",
            &self.decode_seconds,
        );
        out.counter(
            "sori_decode_audio_seconds_total",
            "Seconds of audio decoded successfully (partials decode the same audio again).",
            &self.decode_audio_seconds,
        );
        out.histogram(
            "sori_decode_real_time_factor",
            "Decode time divided by the utterance's audio time, per decode (below 1 keeps up).",
            &self.real_time_factor,
        );
        out.histogram(
            "sori_decode_queue_wait_seconds",
            "Time a decode request waited in the queue for a worker.",
            &self.queue_wait_seconds,
        );

        out.counter(
            "sori_segments_final_total",
            "Final segments sent.",
            &self.segments_final,
        );
        out.counter_family(
            "sori_segments_filtered_total",
            "Final segments the hallucination filter dropped, by reason.",
            &self.segments_filtered,
        );

        out.histogram_family(
            "sori_llm_request_seconds",
            "Duration of one request to the LLM endpoint, by purpose (keywords, answer).",
            &self.llm_request_seconds,
        );
        out.counter_family(
            "sori_llm_errors_total",
            "LLM calls that gave nothing usable, by purpose and kind.",
            &self.llm_errors,
        );

        out.counter_family(
            "sori_cache_hits_total",
            "Cache lookups answered from the cache, by namespace.",
            &self.cache_hits,
        );
        out.counter_family(
            "sori_cache_misses_total",
            "Cache lookups that found nothing, by namespace.",
            &self.cache_misses,
        );

        out.histogram_family(
            "sori_rag_request_seconds",
            "Duration of a successful RAG operation (search: retrieval; query: retrieval and answer).",
            &self.rag_request_seconds,
        );
        out.text
    }
}

/// A monotonically increasing number. Kept as the bits of an `f64` so that fractional amounts
/// (seconds of audio) add up without a lock.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Adds `amount`; anything not positive (a negative amount, NaN) is ignored, so the counter
    /// never goes down.
    pub fn add(&self, amount: f64) {
        if amount.is_nan() || amount <= 0.0 {
            return;
        }
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + amount).to_bits())
            });
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into fixed buckets. A lock (not atomics per bucket) so that a scrape
/// sees the buckets, the count and the sum of the same observations: `+Inf` always equals
/// `_count`.
pub struct Histogram {
    /// Upper bounds, ascending, without `+Inf`.
    bounds: &'static [f64],
    state: Mutex<HistogramState>,
}

struct HistogramState {
    /// Observations per bucket (not cumulative); one more than `bounds` for `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
}

/// A histogram as the text format shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations ≤ bound)`, cumulative, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                buckets: vec![0; bounds.len() + 1],
                sum: 0.0,
            }),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`. NaN is ignored.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let index = self.bounds.partition_point(|bound| *bound < value);
        let mut state = lock(&self.state);
        state.buckets[index] += 1;
        state.sum += value;
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let state = lock(&self.state);
        let mut total = 0;
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&state.buckets)
            .map(|(bound, n)| {
                total += n;
                (bound, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: total,
            sum: state.sum,
        }
    }
}

/// One metric with labels: a child per distinct set of label values, made on first use.
pub struct Family<M> {
    label_names: &'static [&'static str],
    make: fn() -> M,
    /// Few children (tens at most), so a list searched in order: a lookup allocates nothing.
    children: Mutex<Vec<(Vec<String>, M)>>,
}

impl<M> Family<M> {
    pub fn new(label_names: &'static [&'static str], make: fn() -> M) -> Self {
        Self {
            label_names,
            make,
            children: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on the child with these label values (one per label name), making it if needed.
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        debug_assert_eq!(values.len(), self.label_names.len(), "one value per label");
        let mut children = lock(&self.children);
        let index = match children
            .iter()
            .position(|(v, _)| v.iter().map(String::as_str).eq(values.iter().copied()))
        {
            Some(index) => index,
            None => {
                let key = values.iter().map(|v| (*v).to_owned()).collect();
                children.push((key, (self.make)()));
                children.len() - 1
            }
        };
        f(&children[index].1)
    }

    /// Makes the child with these label values so that it is exported (at zero) before use.
    pub fn touch(&self, values: &[&str]) {
        self.with(values, |_| ());
    }

    /// Each child's label pairs and value, in the order they were made.
    fn collect<T>(&self, value: impl Fn(&M) -> T) -> Vec<(Vec<(&'static str, String)>, T)> {
        lock(&self.children)
            .iter()
            .map(|(values, child)| {
                let labels = self.label_names.iter().copied().zip(values.clone());
                (labels.collect(), value(child))
            })
            .collect()
    }
}

/// Every lock here guards plain numbers that are consistent between statements; a panic
/// elsewhere must not stop metrics.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes the text format: a `# HELP` and `# TYPE` line per family, then its samples.
#[derive(Default)]
struct Encoder {
    text: String,
}

impl Encoder {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, counter: &Counter) {
        self.header(name, help, "counter");
        self.sample(name, &[], counter.get());
    }

    /// A family with no children yet is left out, header included (as other clients do).
    fn counter_family(&mut self, name: &str, help: &str, family: &Family<Counter>) {
        let children = family.collect(Counter::get);
        if children.is_empty() {
            return;
        }
        self.header(name, help, "counter");
        for (labels, value) in children {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.sample(name, &labels, value);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, help, "histogram");
        self.histogram_samples(name, &[], &histogram.snapshot());
    }

    fn histogram_family(&mut self, name: &str, help: &str, family: &Family<Histogram>) {
        let children = family.collect(Histogram::snapshot);
        if children.is_empty() {
            return;
        }
        self.header(name, help, "histogram");
        for (labels, snapshot) in children {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.histogram_samples(name, &labels, &snapshot);
        }
    }

    fn histogram_samples(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, *count as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }
}

/// A sample value as Prometheus parses it (`+Inf`, not Rust's `inf`).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and line feed (a double quote stays as it is).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let h = Histogram::new(&[0.1, 1.0, 10.0]);
        for v in [0.05, 0.1, 0.5, 2.0, 20.0, f64::NAN] {
            h.observe(v);
        }
        let s = h.snapshot();
        // 0.1 falls in `le="0.1"`: bounds are inclusive.
        assert_eq!(
            s.buckets,
            vec![(0.1, 2), (1.0, 3), (10.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(s.count, 5, "NaN is not counted");
        assert!((s.sum - 22.65).abs() < 1e-9);
    }

    #[test]
    fn histogram_renders_every_bucket_sum_and_count() {
        let mut out = Encoder::default();
        let h = Histogram::new(&[0.5]);
        h.observe(0.25);
        h.observe(3.0);
        out.histogram("t_seconds", "A test.", &h);
        assert_eq!(
            out.text,
            "# HELP t_seconds A test.\n# TYPE t_seconds histogram\n\
             t_seconds_bucket{le=\"0.5\"} 1\nt_seconds_bucket{le=\"+Inf\"} 2\n\
             t_seconds_sum 3.25\nt_seconds_count 2\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let family = Family::new(&["namespace"], Counter::default);
        family.with(&["a\"b\\c\nd"], Counter::inc);
        let mut out = Encoder::default();
        out.counter_family("t_total", "Back\\slash\nand \"quotes\".", &family);
        assert_eq!(
            out.text,
            "# HELP t_total Back\\\\slash\\nand \"quotes\".\n# TYPE t_total counter\n\
             t_total{namespace=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn counters_only_go_up() {
        let c = Counter::default();
        c.add(1.5);
        c.add(-3.0);
        c.add(f64::NAN);
        c.inc();
        assert_eq!(c.get(), 2.5);
    }

    #[test]
    fn families_reuse_children_and_skip_empty_output() {
        let family = Family::new(&["purpose", "kind"], Counter::default);
        let mut out = Encoder::default();
        out.counter_family("t_total", "A test.", &family);
        assert!(out.text.is_empty(), "no children, no header");
        family.with(&["keywords", "timeout"], Counter::inc);
        family.with(&["keywords", "timeout"], Counter::inc);
        family.touch(&["answer", "timeout"]);
        out.counter_family("t_total", "A test.", &family);
        assert!(
            out.text
                .contains("t_total{purpose=\"keywords\",kind=\"timeout\"} 2\n")
        );
        assert!(
            out.text
                .contains("t_total{purpose=\"answer\",kind=\"timeout\"} 0\n")
        );
    }

    #[test]
    fn values_use_prometheus_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.005), "0.005");
        assert_eq!(format_value(3.0), "3");
    }

    #[test]
    fn a_fresh_registry_renders_every_family_with_help_and_type() {
        let metrics = Metrics::new();
        metrics.decode_finished(
            "ok",
            Duration::from_millis(10),
            Duration::from_millis(500),
            2.0,
        );
        metrics.cache_lookup("keywords", true);
        let text = metrics.render(&ServerGauges::default());
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
                    .unwrap_or(name);
                assert!(typed.contains(family), "{name} has no # TYPE before it");
            }
        }
        assert!(text.contains("sori_decode_real_time_factor_bucket{le=\"0.3\"} 1\n"));
        assert!(text.contains("sori_cache_misses_total{namespace=\"keywords\"} 0\n"));
        assert!(text.contains("sori_segments_filtered_total{reason=\"no_speech\"} 0\n"));
    }
}
