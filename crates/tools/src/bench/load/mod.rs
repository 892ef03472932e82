//! `sori bench --load`: a soak test on loopback (docs/benchmarks.md).
//!
//! Starts a sori server in this process with `server.max_sessions = M` (and no per-client
//! limit), then runs N WebSocket clients — by default twice M — for a set time. Each client
//! repeatedly connects to `/ws`, streams a clip in real time (100 ms frames of `pcm_s16le` at
//! 16 kHz, then 2 s of silence), sends `stop`, collects the finals until `closed` and the close
//! frame, scores the transcript (WER against the clip's reference) and reconnects. Refusals
//! (`server_full` and close 1013) are counted and retried after a short back-off. Resident
//! memory (VmRSS) and the server's open-session count are sampled throughout.
//!
//! The server is [`sori::harness::LocalServer`] and the clients are
//! [`sori::harness::ws_client`], the ones the tests use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use sori::config::Config;
use sori::harness::ws_client::{self, Incoming, Ws};
use sori::harness::{LocalServer, WsClientError};
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::audio::decode::load_16k_mono;
use sori_core::protocol::{Language, ServerMessage, close_code};
use sori_score::JFK_REFERENCE;

use super::percentile;

/// Audio per WebSocket frame.
const FRAME_MS: u64 = 100;
/// Silence streamed after the clip, so the last utterance ends by the VAD as in live speech.
const TRAILING_SILENCE_MS: u64 = 2000;
/// How often resident memory is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long a session may take after its audio before it counts as hung.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// `sori bench --load` options (flattened into `sori bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Soak test instead: an in-process server and --clients real-time streaming clients
    /// (see docs/benchmarks.md). Takes --workers and --threads.
    #[arg(long)]
    pub load: bool,
    /// Concurrent streaming clients for --load (default: twice --max-sessions).
    #[arg(long, requires = "load")]
    pub clients: Option<usize>,
    /// The server's session limit (server.max_sessions) for --load.
    #[arg(long, default_value_t = 3, requires = "load")]
    pub max_sessions: usize,
    /// How long --load runs, in minutes.
    #[arg(long, default_value_t = 5.0, requires = "load")]
    pub minutes: f64,
    /// The clip every --load client streams; a same-named .txt beside it is its reference
    /// transcript (the JFK clip's is built in).
    #[arg(long, default_value = "data/jfk.wav", requires = "load")]
    pub audio: PathBuf,
    /// Highest WER an admitted --load session may have and still count as correct.
    #[arg(long, default_value_t = 0.10, requires = "load")]
    pub max_wer: f64,
    /// Wait after a refusal before a --load client tries again, in milliseconds.
    #[arg(long, default_value_t = 1000, requires = "load")]
    pub backoff_ms: u64,
}

/// One admitted session, as its client saw it.
#[derive(Debug, Clone)]
struct SessionResult {
    text: String,
    wer: f64,
    /// Per final: end of speech → the final's arrival, in seconds.
    latencies: Vec<f64>,
    /// Largest `lag_ms` in the session's `status` events.
    max_lag_ms: u64,
    /// `error` events (codes) — none are expected.
    errors: Vec<String>,
    close: Option<u16>,
}

enum Outcome {
    Completed(SessionResult),
    /// An `error` event with this code, then the close frame with this code.
    Refused {
        error: String,
        close: Option<u16>,
    },
}

#[derive(Default)]
struct Tally {
    sessions: Vec<SessionResult>,
    /// Refusals by close code and error code.
    refusals: BTreeMap<(Option<u16>, String), usize>,
    /// Unexpected failures (transport errors, timeouts, protocol surprises).
    failures: Vec<String>,
}

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

/// Runs the soak test; progress goes to stderr.
pub async fn run(
    mut config: Config,
    args: &LoadArgs,
    language: Language,
) -> anyhow::Result<LoadReport> {
    if args.max_sessions == 0 {
        bail!("--max-sessions must be at least 1");
    }
    let clients = args.clients.unwrap_or(2 * args.max_sessions);
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    let duration = Duration::from_secs_f64(args.minutes.max(0.0) * 60.0);
    let samples = load_16k_mono(&args.audio).with_context(|| {
        format!(
            "cannot read {}; run `sori model fetch` for data/jfk.wav",
            args.audio.display()
        )
    })?;
    let reference = reference_for(&args.audio)?;
    let audio_s = samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
    let mut pcm = to_s16le(&samples);
    pcm.extend(std::iter::repeat_n(
        0u8,
        2 * TRAILING_SILENCE_MS as usize * TARGET_SAMPLE_RATE as usize / 1000,
    ));
    let pcm = Arc::new(pcm);

    config.server.max_sessions = args.max_sessions;
    config.server.max_connections_per_client = 0;
    config.llm.enabled = false;
    config.rag.enabled = false;
    let tail_s = config.vad.tail_ms as f64 / 1000.0;
    let (model, workers, threads) = (
        config.stt.model.display().to_string(),
        config.stt.workers,
        config.stt.threads,
    );

    let rss_before_model_mb = rss_mb();
    let server = LocalServer::start_scratch(config).await?;
    let (addr, state) = (server.addr, server.state.clone());
    let rss_start_mb = rss_mb();
    eprintln!(
        "[load] server on {addr}: max_sessions {}, {workers} worker(s) × {threads} thread(s); \
         {clients} clients streaming {} ({audio_s:.1} s + {:.1} s silence) for {:.1} min; RSS {rss_start_mb:.0} MB",
        args.max_sessions,
        args.audio.display(),
        TRAILING_SILENCE_MS as f64 / 1000.0,
        duration.as_secs_f64() / 60.0
    );

    let started = Instant::now();
    let deadline = started + duration;
    let done = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let rss_samples = Arc::new(Mutex::new(vec![(0.0, rss_mb())]));
    let max_open = Arc::new(AtomicUsize::new(0));

    // The server's own count of open sessions, often enough to catch any excess.
    let watcher = tokio::spawn({
        let (state, max_open, done) = (state.clone(), Arc::clone(&max_open), Arc::clone(&done));
        async move {
            while !done.load(Ordering::Relaxed) {
                max_open.fetch_max(state.sessions.load(Ordering::SeqCst), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    let sampler = tokio::spawn({
        let (rss_samples, tally, done) = (
            Arc::clone(&rss_samples),
            Arc::clone(&tally),
            Arc::clone(&done),
        );
        async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.tick().await;
            let mut last_report = Instant::now();
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = started.elapsed().as_secs_f64();
                let rss = rss_mb();
                lock(&rss_samples).push((t, rss));
                if last_report.elapsed() >= Duration::from_secs(30) {
                    last_report = Instant::now();
                    let tally = lock(&tally);
                    eprintln!(
                        "[load] {:>5.0} s: {} sessions done, {} refused, {} failures; RSS {rss:.0} MB",
                        t,
                        tally.sessions.len(),
                        tally.refusals.values().sum::<usize>(),
                        tally.failures.len()
                    );
                }
            }
        }
    });

    let query = format!(
        "?sample_rate={TARGET_SAMPLE_RATE}&encoding=pcm_s16le&channels=1&language={language}&keywords=false"
    );
    let backoff = Duration::from_millis(args.backoff_ms);
    let stagger = Duration::from_secs_f64(audio_s / clients as f64);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (pcm, tally, reference, query) = (
            Arc::clone(&pcm),
            Arc::clone(&tally),
            reference.clone(),
            query.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Staggered starts, so that sessions do not all begin and end together.
            tokio::time::sleep(stagger * i as u32).await;
            while Instant::now() < deadline {
                match session(addr, &query, &pcm, &reference, tail_s).await {
                    Ok(Outcome::Completed(result)) => lock(&tally).sessions.push(result),
                    Ok(Outcome::Refused { error, close }) => {
                        *lock(&tally).refusals.entry((close, error)).or_default() += 1;
                        // A little jitter per client, so retries do not arrive in lockstep.
                        tokio::time::sleep(backoff + Duration::from_millis(37 * i as u64)).await;
                    }
                    Err(e) => {
                        eprintln!("[load] client {i}: {e:#}");
                        lock(&tally).failures.push(format!("client {i}: {e:#}"));
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let duration_s = started.elapsed().as_secs_f64();
    let rss_end_mb = rss_mb();
    lock(&rss_samples).push((duration_s, rss_end_mb));
    done.store(true, Ordering::Relaxed);
    watcher.await?;
    sampler.abort();
    server.shutdown().await?;

    let tally = std::mem::take(&mut *lock(&tally));
    let rss_samples = std::mem::take(&mut *lock(&rss_samples));
    let warmup_s = (duration_s * 0.2).min(60.0);
    let after: Vec<(f64, f64)> = rss_samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup_s)
        .collect();
    let mut wers: Vec<f64> = tally.sessions.iter().map(|s| s.wer).collect();
    wers.sort_by(f64::total_cmp);
    let mut latencies: Vec<f64> = tally
        .sessions
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let wrong = tally
        .sessions
        .iter()
        .filter(|s| s.wer > args.max_wer)
        .count();
    let mut session_close_codes = BTreeMap::new();
    for s in &tally.sessions {
        let code = s.close.map_or_else(|| "none".to_owned(), |c| c.to_string());
        *session_close_codes.entry(code).or_default() += 1;
    }
    let (mut refused_1013, mut other_refusals) = (0, BTreeMap::new());
    for ((close, error), n) in &tally.refusals {
        if *close == Some(close_code::TRY_LATER) && error == "server_full" {
            refused_1013 += n;
        } else {
            let close = close.map_or_else(|| "none".to_owned(), |c| c.to_string());
            *other_refusals
                .entry(format!("{close} / {error}"))
                .or_default() += n;
        }
    }
    Ok(LoadReport {
        model,
        workers,
        threads,
        clients,
        max_sessions: args.max_sessions,
        audio: args.audio.display().to_string(),
        audio_s,
        duration_s,
        sessions_completed: tally.sessions.len(),
        refused_1013,
        other_refusals,
        session_close_codes,
        max_open_sessions: max_open.load(Ordering::Relaxed),
        max_wer_allowed: args.max_wer,
        wer_median: percentile(&wers, 0.5),
        wer_max: wers.last().copied().unwrap_or(0.0),
        wrong_transcripts: wrong,
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
        rss_before_model_mb,
        rss_start_mb,
        warmup_s,
        rss_after_warmup_mb: after.first().map_or(rss_end_mb, |s| s.1),
        rss_end_mb,
        rss_max_mb: rss_samples.iter().map(|s| s.1).fold(0.0, f64::max),
        rss_slope_mb_per_min: slope(&after) * 60.0,
        rss_samples,
    })
}

impl LoadReport {
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

    pub fn to_markdown(&self) -> String {
        let codes = |m: &BTreeMap<String, usize>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut out = format!(
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
        );
        out.push_str("| figure | value |\n|---|---|\n");
        let rows = [
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
        ];
        for (name, value) in rows {
            out.push_str(&format!("| {name} | {value} |\n"));
        }
        if let Some(text) = &self.worst_transcript {
            out.push_str(&format!(
                "\nworst transcript ({:.1} % WER): {text:?}\n",
                self.wer_max * 100.0
            ));
        }
        let per_minute: Vec<String> = self
            .rss_samples
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| {
                *i == 0
                    || *i + 1 == self.rss_samples.len()
                    || (t % 60.0) < SAMPLE_EVERY.as_secs_f64() - 0.5
            })
            .map(|(_, s)| s)
            .map(|(t, mb)| format!("{:.0} s {mb:.0}", t))
            .collect();
        out.push_str(&format!(
            "\nRSS (MB) about every minute: {}\n",
            per_minute.join(", ")
        ));
        let problems = self.problems();
        if problems.is_empty() {
            out.push_str("\nresult: PASS\n");
        } else {
            out.push_str(&format!("\nresult: FAIL\n- {}\n", problems.join("\n- ")));
        }
        out
    }
}

/// One connection: a refusal, or a whole streamed session.
async fn session(
    addr: SocketAddr,
    query: &str,
    pcm: &[u8],
    reference: &str,
    tail_s: f64,
) -> anyhow::Result<Outcome> {
    let (mut sink, mut source) = ws_client::connect(addr, query).await?.split();
    // `ready`, or a refusal: `error` then the close frame.
    match ws_client::recv(&mut source, DRAIN_LIMIT).await? {
        Incoming::Message(ServerMessage::Ready { .. }) => {}
        Incoming::Message(ServerMessage::Error { code, .. }) => loop {
            if let Incoming::Closed(close) = ws_client::recv(&mut source, DRAIN_LIMIT).await? {
                return Ok(Outcome::Refused { error: code, close });
            }
        },
        other => bail!("expected ready or error first, got {other:?}"),
    }
    let frame_bytes = (TARGET_SAMPLE_RATE as u64 * FRAME_MS / 1000 * 2) as usize;
    let audio = Duration::from_secs_f64(pcm.len() as f64 / 2.0 / f64::from(TARGET_SAMPLE_RATE));
    // Read on a task of its own (arrival times stamped there) while the audio goes out.
    let reader = tokio::spawn(read_session(source, audio + DRAIN_LIMIT));
    let sent = async {
        let pace = Duration::from_millis(FRAME_MS);
        let start = ws_client::send_pcm(&mut sink, pcm, frame_bytes, Some(pace)).await?;
        ws_client::send_stop(&mut sink).await?;
        Ok::<_, WsClientError>(start)
    }
    .await;
    // The reader's account comes first: when sending failed, it says why the session ended.
    let (state, close) = reader.await??;
    let start = match sent {
        Ok(start) => start,
        Err(e) => bail!(
            "the session ended mid-stream ({e}): close {close:?}, errors {:?}",
            state.errors
        ),
    };
    let _ = sink.close().await;
    if !state.closed {
        bail!("closed ({close:?}) without a `closed` event");
    }
    // Frame i (audio up to (i + 1) frames) went out at `start + i` frames, as from a live
    // microphone whose audio time 0 was one frame before `start`.
    let origin = start
        .checked_sub(Duration::from_millis(FRAME_MS))
        .unwrap_or(start);
    let text = state.finals.join(" ");
    let latencies = state
        .final_ends
        .iter()
        .map(|(end, at)| {
            let end_of_speech = origin + Duration::from_secs_f64((end - tail_s).max(0.0));
            at.saturating_duration_since(end_of_speech).as_secs_f64()
        })
        .collect();
    Ok(Outcome::Completed(SessionResult {
        wer: sori_score::wer(reference, &text),
        text,
        latencies,
        max_lag_ms: state.max_lag_ms,
        errors: state.errors,
        close,
    }))
}

/// One whole streamed session that must be admitted: its transcript and, per final, the
/// seconds from the end of speech to the final's arrival (`sori bench --peers`).
pub(super) async fn stream_once(
    addr: SocketAddr,
    query: &str,
    pcm: &[u8],
    tail_s: f64,
) -> anyhow::Result<StreamedText> {
    match session(addr, query, pcm, "", tail_s).await? {
        Outcome::Completed(r) if r.errors.is_empty() => Ok(StreamedText {
            text: r.text,
            latencies: r.latencies,
        }),
        Outcome::Completed(r) => bail!("the session reported errors: {:?}", r.errors),
        Outcome::Refused { error, close } => bail!("refused: {error} (close {close:?})"),
    }
}

pub(super) struct StreamedText {
    pub text: String,
    pub latencies: Vec<f64>,
}

/// Everything an admitted session receives, each message stamped with its arrival, up to the
/// close frame (and its code). `timeout` bounds the wait for any one message.
async fn read_session(
    mut source: SplitStream<Ws>,
    timeout: Duration,
) -> Result<(Session, Option<u16>), WsClientError> {
    let mut state = Session::default();
    loop {
        let message = ws_client::recv(&mut source, timeout).await?;
        let at = Instant::now();
        match message {
            Incoming::Closed(close) => return Ok((state, close)),
            Incoming::Message(message) => state.take(at, message),
        }
    }
}

/// What an admitted session has received so far.
#[derive(Default)]
struct Session {
    finals: Vec<String>,
    /// Each final's end (audio seconds) and arrival.
    final_ends: Vec<(f64, Instant)>,
    max_lag_ms: u64,
    errors: Vec<String>,
    closed: bool,
}

impl Session {
    fn take(&mut self, at: Instant, message: ServerMessage) {
        match message {
            ServerMessage::Final { text, end, .. } => {
                self.finals.push(text);
                self.final_ends.push((end, at));
            }
            ServerMessage::Status { lag_ms, .. } => self.max_lag_ms = self.max_lag_ms.max(lag_ms),
            ServerMessage::Error { code, message, .. } => {
                eprintln!("[load] error event {code}: {message}");
                self.errors.push(code);
            }
            ServerMessage::Closed { .. } => self.closed = true,
            _ => {}
        }
    }
}

/// The reference transcript: `<clip>.txt`, or the built-in one for a clip named `jfk.*`.
fn reference_for(audio: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(audio.with_extension("txt")) {
        return Ok(text.trim().to_owned());
    }
    if audio.file_stem().is_some_and(|s| s == "jfk") {
        return Ok(JFK_REFERENCE.to_owned());
    }
    bail!(
        "no reference transcript for {}: put it in {}",
        audio.display(),
        audio.with_extension("txt").display()
    )
}

pub(super) fn to_s16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resident memory of this process now (VmRSS), in MB.
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
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

    #[test]
    fn jfk_has_a_built_in_reference() {
        let r = reference_for(Path::new("/nonexistent/jfk.wav")).unwrap();
        assert!(r.starts_with("And so my fellow Americans"));
        assert!(reference_for(Path::new("/nonexistent/other.wav")).is_err());
    }
}
