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

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod prometheus;

use prometheus::Encoder;
pub use prometheus::{Counter, Family, Histogram, HistogramSnapshot};

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
/// Final latency (last word's audio in → final out), in seconds.
const FINAL_LATENCY_BUCKETS: &[f64] = &[0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0];
/// The window of the recent final-latency percentile shown to load balancers.
const RECENT_WINDOW: Duration = Duration::from_secs(60);
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

/// The live protocols sessions are labelled with: sori's `/ws`, Deepgram's `/v1/listen`,
/// OpenAI's `/v1/realtime`.
pub const LIVE_PROTOCOLS: [&str; 3] = ["sori", "deepgram", "openai_realtime"];

/// Counters and histograms of the whole process; see the module comment.
pub struct Metrics {
    sessions_opened: Family<Counter>,
    sessions_refused: Family<Counter>,
    audio_received_seconds: Counter,
    decodes: Family<Counter>,
    decode_seconds: Histogram,
    decode_audio_seconds: Counter,
    real_time_factor: Histogram,
    queue_wait_seconds: Histogram,
    decode_busy_seconds: Counter,
    partials_preempted: Counter,
    segments_final: Counter,
    segments_filtered: Family<Counter>,
    segments_revised: Counter,
    revision_windows: Family<Counter>,
    final_latency_seconds: Histogram,
    /// (when, latency in seconds) of the finals of the last minute.
    recent_final_latency: Mutex<VecDeque<(Instant, f64)>>,
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
    /// Share of the decoders' time spent decoding over the last minute (0–1).
    pub decode_utilisation: f64,
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
            sessions_opened: Family::new(&["protocol"], Counter::default),
            sessions_refused: Family::new(&["protocol", "reason"], Counter::default),
            audio_received_seconds: Counter::default(),
            decodes: Family::new(&["outcome"], Counter::default),
            decode_seconds: Histogram::new(DECODE_BUCKETS),
            decode_audio_seconds: Counter::default(),
            real_time_factor: Histogram::new(RTF_BUCKETS),
            queue_wait_seconds: Histogram::new(QUEUE_WAIT_BUCKETS),
            decode_busy_seconds: Counter::default(),
            partials_preempted: Counter::default(),
            segments_final: Counter::default(),
            segments_filtered: Family::new(&["reason"], Counter::default),
            segments_revised: Counter::default(),
            revision_windows: Family::new(&["outcome"], Counter::default),
            final_latency_seconds: Histogram::new(FINAL_LATENCY_BUCKETS),
            recent_final_latency: Mutex::new(VecDeque::new()),
            llm_request_seconds: Family::new(&["purpose"], || Histogram::new(LLM_BUCKETS)),
            llm_errors: Family::new(&["purpose", "kind"], Counter::default),
            cache_hits: Family::new(&["namespace"], Counter::default),
            cache_misses: Family::new(&["namespace"], Counter::default),
            rag_request_seconds: Family::new(&["operation"], || Histogram::new(RAG_BUCKETS)),
        };
        for protocol in LIVE_PROTOCOLS {
            metrics.sessions_opened.touch(&[protocol]);
            metrics.sessions_refused.touch(&[protocol, "server_full"]);
        }
        for outcome in DECODE_OUTCOMES {
            metrics.decodes.touch(&[outcome]);
        }
        for reason in crate::stt::filter::DropReason::LABELS {
            metrics.segments_filtered.touch(&[reason]);
        }
        for outcome in RevisionOutcome::ALL {
            metrics.revision_windows.touch(&[outcome.as_str()]);
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
    /// A live session of `protocol` (one of [`LIVE_PROTOCOLS`]) was admitted.
    pub fn session_opened(&self, protocol: &str) {
        self.sessions_opened.with(&[protocol], Counter::inc);
    }

    /// A live connection of `protocol` was refused; `reason` is sori's error code for it
    /// (`server_full`, `too_many_connections`, `token_required`, …).
    pub fn session_refused(&self, protocol: &str, reason: &str) {
        self.sessions_refused
            .with(&[protocol, reason], Counter::inc);
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
        self.decode_busy_seconds.add(decode.as_secs_f64());
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

    /// A waiting final cancelled a running partial or revision.
    pub fn partial_preempted(&self) {
        self.partials_preempted.inc();
    }

    /// A live session released a final `latency` after its last word's audio arrived.
    pub fn final_released(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        self.final_latency_seconds.observe(seconds);
        let now = Instant::now();
        let mut recent = self
            .recent_final_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.push_back((now, seconds));
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RECENT_WINDOW)
        {
            recent.pop_front();
        }
    }

    /// The 95th percentile of the last minute's final latencies; `None` without finals.
    pub fn recent_final_latency_p95(&self) -> Option<f64> {
        let now = Instant::now();
        let recent = self
            .recent_final_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut latencies: Vec<f64> = recent
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= RECENT_WINDOW)
            .map(|(_, s)| *s)
            .collect();
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_by(f64::total_cmp);
        let rank = ((latencies.len() as f64 * 0.95).ceil() as usize).clamp(1, latencies.len());
        Some(latencies[rank - 1])
    }

    /// A final segment was sent.
    pub fn segment_final(&self) {
        self.segments_final.inc();
    }

    /// A live session's revision window came to `outcome`; `revised` segments got a `revision`.
    pub fn revision_window(&self, outcome: RevisionOutcome, revised: u64) {
        self.revision_windows
            .with(&[outcome.as_str()], Counter::inc);
        self.segments_revised.add(revised as f64);
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
        self.render_process(&mut out, gauges);
        self.render_sessions(&mut out, gauges);
        self.render_decoder(&mut out, gauges);
        self.render_segments(&mut out);
        self.render_llm(&mut out);
        self.render_cache(&mut out);
        self.render_rag(&mut out);
        out.text
    }

    /// Build information and uptime.
    fn render_process(&self, out: &mut Encoder, gauges: &ServerGauges) {
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
    }

    /// Sessions: open, limit, admitted, refused, audio received and lag.
    fn render_sessions(&self, out: &mut Encoder, gauges: &ServerGauges) {
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
        out.counter_family(
            "sori_sessions_total",
            "Live sessions admitted since start, by protocol (sori, deepgram, openai_realtime).",
            &self.sessions_opened,
        );
        out.counter_family(
            "sori_sessions_refused_total",
            "Live connections refused, by protocol and sori's reason code (server_full, token_invalid, ...).",
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
    }

    /// The decoder: workers, queue, decodes and their timing.
    fn render_decoder(&self, out: &mut Encoder, gauges: &ServerGauges) {
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
        out.gauge(
            "sori_decode_utilisation",
            "Share of the decoder workers' time spent decoding over the last minute (0-1).",
            gauges.decode_utilisation,
        );
        out.counter(
            "sori_decode_busy_seconds_total",
            "Time the decoder workers spent decoding, every outcome included.",
            &self.decode_busy_seconds,
        );
        out.counter(
            "sori_decode_partials_preempted_total",
            "Partial and revision decodes cancelled so that a waiting final (or, for a revision, a partial) could start.",
            &self.partials_preempted,
        );
        out.histogram(
            "sori_decode_queue_wait_seconds",
            "Time a decode request waited in the queue for a worker.",
            &self.queue_wait_seconds,
        );
    }

    /// Final segments sent and filtered.
    fn render_segments(&self, out: &mut Encoder) {
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
        out.counter(
            "sori_segments_revised_total",
            "Live finals corrected by a revision event.",
            &self.segments_revised,
        );
        out.counter_family(
            "sori_revision_windows_total",
            "Live revision windows, by outcome: decoded, skipped (no idle decoder before the next window), dropped (cancelled for a final, or failed), redecoded (doubtful word times: decoded again in shorter windows).",
            &self.revision_windows,
        );
        out.histogram(
            "sori_final_latency_seconds",
            "Live finals: from the arrival of the last word's audio to the final being sent.",
            &self.final_latency_seconds,
        );
        out.gauge(
            "sori_final_latency_p95_seconds",
            "95th percentile of the last minute's live final latencies (0 when there were none).",
            self.recent_final_latency_p95().unwrap_or(0.0),
        );
    }

    /// LLM requests and errors.
    fn render_llm(&self, out: &mut Encoder) {
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
    }

    /// Cache hits and misses.
    fn render_cache(&self, out: &mut Encoder) {
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
    }

    /// RAG operations.
    fn render_rag(&self, out: &mut Encoder) {
        out.histogram_family(
            "sori_rag_request_seconds",
            "Duration of a successful RAG operation (search: retrieval; query: retrieval and answer).",
            &self.rag_request_seconds,
        );
    }
}

/// What became of a live session's revision window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionOutcome {
    /// Decoded and split back into its segments.
    Decoded,
    /// Replaced by the next window before a decoder was idle.
    Skipped,
    /// Cancelled for a final, or failed: the finals stand.
    Dropped,
    /// Its word times were doubtful: decoded again in shorter windows, each counted again.
    Redecoded,
}

impl RevisionOutcome {
    pub const ALL: [Self; 4] = [Self::Decoded, Self::Skipped, Self::Dropped, Self::Redecoded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decoded => "decoded",
            Self::Skipped => "skipped",
            Self::Dropped => "dropped",
            Self::Redecoded => "redecoded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(text.contains("sori_revision_windows_total{outcome=\"skipped\"} 0\n"));
    }
}
