//! The session driver: everything a stream needs beyond PCM in and events out, for any
//! transport. A transport adapter (`/ws`, file upload, the CLI, a drop-in protocol) only moves
//! its own frames: it feeds the driver audio and commands, and sends what [`Driver::next`]
//! yields, until [`Step::Closed`].
//!
//! The driver owns the session's options, its transcript files, the idle / length / shutdown
//! limits, the `status` ticks, the keyword and RAG fan-out ([`enrich`]), and the closing drain:
//! the last finals, then each enricher's pending results within its time limit, then `closed`.

mod client;
pub mod enrich;
mod lags;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, Interval};

pub use client::{MAX_INVALID_MESSAGES, Reply};
use enrich::{Enricher, FanOut};
pub use lags::SessionLags;

use crate::audio::AudioError;
use crate::engine::Engine;
use crate::outputs::{TranscriptError, TranscriptWriter};
use crate::protocol::{EffectiveOptions, ServerMessage, SessionSummary, close_code};
use crate::session::Stream;

/// Limits and outputs of one kind of session (live streams get all of them; files none).
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Largest audio frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Audio waiting for a decoder, in seconds, beyond which frames are refused.
    pub max_backlog_s: f64,
    /// Longest `prompt` a `start` message may set, in characters.
    pub max_prompt_chars: usize,
    /// Nothing heard from the client for this long ends the session.
    pub idle_timeout: Option<Duration>,
    /// Sessions end after this long.
    pub max_session: Option<Duration>,
    /// How often a `status` event is sent; `None` for none (files).
    pub status_interval: Option<Duration>,
    /// Where the transcript (`.jsonl`, `.srt`, `.vtt`) is written; `None` for nowhere.
    pub outputs_dir: Option<PathBuf>,
}

impl DriverConfig {
    /// No limits, no status events, no transcript files: a whole file transcribed at once.
    pub fn for_files(max_prompt_chars: usize) -> Self {
        Self {
            max_frame_bytes: usize::MAX,
            max_backlog_s: f64::INFINITY,
            max_prompt_chars,
            idle_timeout: None,
            max_session: None,
            status_interval: None,
            outputs_dir: None,
        }
    }
}

/// How a session ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// `stop`, a close frame, a limit or shutdown: the last finals and their keywords are
    /// sent, then `closed`, then the transport closes with `code` and `reason`.
    Graceful { code: u16, reason: &'static str },
    /// The client is gone: the session finishes and writes its transcript, sending nothing.
    Gone,
}

impl Ending {
    /// The client asked to stop.
    pub fn stopped() -> Self {
        Ending::Graceful {
            code: close_code::NORMAL,
            reason: "stopped",
        }
    }
}

/// What the transport should do next.
#[derive(Debug)]
pub enum Step {
    /// Send these events (finals are already in the transcript file, or one
    /// `transcript_not_saved` error among them says they are not).
    Send(Vec<ServerMessage>),
    /// A limit or the server ended the session: send `notice` if there is one; the driver is
    /// now closing and goes on yielding the last events.
    Ending(Option<ServerMessage>),
    /// Everything was sent: for a graceful end, send `closed` and close with the code.
    Closed(Closed),
}

#[derive(Debug)]
pub struct Closed {
    pub summary: SessionSummary,
    /// The `closed` event and the close code and reason, unless the client is gone.
    pub farewell: Option<(ServerMessage, u16, &'static str)>,
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Live,
    /// Sending the last finals.
    Finals,
    /// Waiting for the pending results of fan-out `index`, until `until`.
    Enrich {
        index: usize,
        until: Instant,
    },
    Done,
}

pub struct Driver {
    id: String,
    model_name: String,
    stream: Stream,
    config: DriverConfig,
    writer: Option<TranscriptWriter>,
    /// The client was told its transcript is not saved (once per session, not once per line).
    transcript_error_sent: bool,
    /// Client messages that could not be understood; past [`MAX_INVALID_MESSAGES`] the session ends.
    invalid_messages: u32,
    /// The transcript's files, once its subtitles are written.
    outputs: Vec<PathBuf>,
    /// Keywords, then RAG: the order their late results are drained in.
    fanouts: Vec<FanOut>,
    status: Option<Interval>,
    last_heard: Instant,
    session_end: Option<Instant>,
    /// Set by the server on SIGTERM; `None` where nothing can stop the server under it.
    stopping: Option<watch::Receiver<bool>>,
    /// How long the closing drain may take once the server stops (`None`: no bound of its own).
    shutdown_drain: Option<Duration>,
    /// When that drain must end, from the moment the driver saw the server stop.
    shutdown_at: Option<Instant>,
    /// The server's table of lags, for the monitor.
    lags: Option<SessionLags>,
    phase: Phase,
    ending: Option<Ending>,
}

/// A session as its transport sees it, before it starts.
pub struct Opening {
    pub id: String,
    pub options: EffectiveOptions,
    /// Problems with what the client asked for, sent after `ready` (the defaults were used).
    pub early_errors: Vec<ServerMessage>,
}

impl Driver {
    /// Starts a session: its stream on `engine`, its transcript file, its fan-out to every
    /// enricher (each one only acts for sessions whose options want it).
    pub fn start(
        engine: &Engine,
        config: DriverConfig,
        opening: Opening,
        enrichers: &[Arc<dyn Enricher>],
    ) -> Result<(Self, Vec<ServerMessage>), AudioError> {
        let Opening {
            id,
            options,
            early_errors,
        } = opening;
        let stream = engine.stream(id.clone(), options)?;
        // No file is created before the first final: a session with no speech leaves none.
        let writer = config
            .outputs_dir
            .as_ref()
            .map(|dir| TranscriptWriter::new(dir, &id));
        let now = Instant::now();
        let status = config.status_interval.map(|every| {
            let mut interval = tokio::time::interval_at(now + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let mut driver = Self {
            model_name: engine.model_name.clone(),
            // A limit too far to express as an instant is no limit.
            session_end: config.max_session.and_then(|d| now.checked_add(d)),
            fanouts: enrichers.iter().cloned().map(FanOut::new).collect(),
            id,
            stream,
            config,
            writer,
            transcript_error_sent: false,
            invalid_messages: 0,
            outputs: Vec::new(),
            status,
            last_heard: now,
            stopping: None,
            shutdown_drain: None,
            shutdown_at: None,
            lags: None,
            phase: Phase::Live,
            ending: None,
        };
        tracing::info!(options = ?driver.options(), "session opened");
        let mut greeting = vec![driver.ready()];
        driver.stream.session.summary_mut().errors += early_errors.len() as u64;
        greeting.extend(early_errors);
        Ok((driver, greeting))
    }

    /// Ends the session gracefully (close 1001) when `stopping` turns true.
    pub fn stop_on(mut self, stopping: watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// Once the server stops, the last finals and the enrichers' results get at most `drain`;
    /// then the session closes with what it has, so the server exits within its grace.
    pub fn drain_within(mut self, drain: Duration) -> Self {
        self.shutdown_drain = Some(drain);
        self
    }

    /// Measures each final's latency for `/metrics` and `/api/status` (live sessions).
    pub fn measure_latency(mut self) -> Self {
        self.stream.session.measure_latency();
        self
    }

    /// Marks a file session: its utterances are decoded together in windows of up to
    /// `max_s` seconds (`stt.file_merge_s`; 0 = one decode each), joined as `join` says, each
    /// still its own final. Throughput over latency, so never for live sessions.
    pub fn merge_file_windows(mut self, max_s: f64, join: crate::session::WindowJoin) -> Self {
        self.stream.session.merge_file_windows(max_s, join);
        self
    }

    /// Revises a live session's finals in windows of up to `max_s` seconds
    /// (`stt.live_revision_s`; 0 = none) when its `revisions` option is on: sori's own
    /// protocol only, which has the `revision` event.
    pub fn revise_live(mut self, max_s: f64, join: crate::session::WindowJoin) -> Self {
        self.stream.session.revise_live(max_s, join);
        self
    }

    /// Reports this session's lag in `lags` with every `status` tick (removed when it closes).
    pub fn report_lag_to(mut self, lags: SessionLags) -> Self {
        self.lags = Some(lags);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn options(&self) -> &EffectiveOptions {
        self.stream.session.options()
    }

    /// The `ready` event for the session's current options.
    pub fn ready(&self) -> ServerMessage {
        self.stream.session.ready_message(&self.model_name)
    }

    /// The client said something (audio, a command, a ping): the idle clock restarts.
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Whether the session still takes audio and commands.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Whether a final waits for a decoder: a file transport waits (calling [`next`](Self::next))
    /// before it feeds more audio, so a long file is never queued whole.
    pub fn final_waiting(&self) -> bool {
        self.stream.session.has_job(false)
    }

    /// Files: hands the decoders every final they have room for, without waiting, so that a
    /// file keeps every worker busy (one worker each is `stt.workers` single-threaded ones).
    pub fn submit_ready(&mut self) {
        self.stream.submit_ready();
    }

    /// Files: whether a final is still waiting for room (this file's decodes in flight are
    /// as many as the workers, or the queue is full), or the open utterance's boundary decode
    /// is (the cut at the maximum length waits for its word gaps): call [`next`](Self::next)
    /// before feeding more, so a long file is never queued whole.
    pub fn final_held_back(&self) -> bool {
        self.stream.session.has_waiting_final() || self.stream.session.boundary_pending()
    }

    /// Feeds mono samples at the session's sample rate (files; no frame or backlog limit).
    pub fn push_samples(&mut self, samples: &[f32]) {
        if self.is_live() {
            self.stream.session.push_samples(samples);
        }
    }

    /// Ends the open utterance now (`flush`, Deepgram's `Finalize`).
    pub fn flush(&mut self) {
        if self.is_live() {
            self.stream.session.flush();
        }
    }

    /// Drops the open utterance's audio undecoded (OpenAI's `input_audio_buffer.clear`).
    pub fn clear(&mut self) {
        if self.is_live() {
            self.stream.session.clear();
        }
    }

    /// Starts closing: no more audio; [`next`](Self::next) yields the last events, then
    /// [`Step::Closed`]. A later `Gone` (the client vanished while closing) stops sending.
    pub fn close(&mut self, ending: Ending) {
        if ending == Ending::Gone {
            self.ending = Some(Ending::Gone);
        }
        if self.phase != Phase::Live {
            return;
        }
        self.ending.get_or_insert(ending);
        self.stream.session.finish();
        self.phase = Phase::Finals;
    }

    fn client_gone(&self) -> bool {
        self.ending == Some(Ending::Gone)
    }

    /// What happens next. Cancel-safe: transports `select!` on it beside their socket.
    pub async fn next(&mut self) -> Step {
        match self.phase {
            Phase::Live => self.next_live().await,
            Phase::Finals => self.next_final().await,
            Phase::Enrich { index, until } => self.next_enrichment(index, until).await,
            Phase::Done => std::future::pending().await,
        }
    }

    async fn next_live(&mut self) -> Step {
        let idle_at = self
            .config
            .idle_timeout
            .and_then(|d| self.last_heard.checked_add(d));
        tokio::select! {
            events = self.stream.progress() => Step::Send(self.released(events)),
            events = next_of_any(&mut self.fanouts) => Step::Send(self.recorded(events)),
            _ = tick(&mut self.status) => Step::Send(vec![self.status_event()]),
            _ = sleep_until(idle_at) => self.limit_reached(Limit::Idle),
            _ = sleep_until(self.session_end) => self.limit_reached(Limit::Length),
            _ = shutdown(&mut self.stopping) => self.limit_reached(Limit::Shutdown),
        }
    }

    async fn next_final(&mut self) -> Step {
        if !self.stream.session.is_drained() {
            let drain = self.shutdown_drain;
            tokio::select! {
                events = self.stream.progress() => return Step::Send(self.released(events)),
                () = drain_deadline(&mut self.stopping, &mut self.shutdown_at, drain) => {
                    tracing::warn!("the server is stopping: closing before the last finals");
                }
            }
        }
        let subtitles_failed = self.finish_transcript();
        // The enrichers run side by side: one deadline for all, the longest limit of theirs.
        let longest = self.fanouts.iter().map(FanOut::drain_limit).max();
        let until = Instant::now() + longest.unwrap_or(Duration::ZERO);
        self.phase = Phase::Enrich { index: 0, until };
        if let Some(error) = subtitles_failed {
            return Step::Send(vec![error]);
        }
        Box::pin(self.next()).await
    }

    async fn next_enrichment(&mut self, index: usize, until: Instant) -> Step {
        if self.client_gone() || index >= self.fanouts.len() {
            return self.closed();
        }
        let fanout = &mut self.fanouts[index];
        if fanout.pending() > 0 {
            let drain = self.shutdown_drain;
            tokio::select! {
                result = tokio::time::timeout_at(until, fanout.next()) => {
                    if let Ok(events) = result {
                        return Step::Send(self.recorded(events));
                    }
                }
                () = drain_deadline(&mut self.stopping, &mut self.shutdown_at, drain) => {
                    // The server is stopping: no enricher is waited for any longer.
                    self.phase = Phase::Enrich { index: self.fanouts.len(), until };
                    return Box::pin(self.next()).await;
                }
            }
        }
        self.phase = Phase::Enrich {
            index: index + 1,
            until,
        };
        Box::pin(self.next()).await
    }

    /// Events the session released: finals and revisions go to the transcript and to the
    /// enrichers.
    fn released(&mut self, events: Vec<ServerMessage>) -> Vec<ServerMessage> {
        let has_final = events.iter().any(|e| {
            matches!(
                e,
                ServerMessage::Final { .. } | ServerMessage::Revision { .. }
            )
        });
        if has_final && !self.client_gone() {
            let options = self.stream.session.options();
            for fanout in &mut self.fanouts {
                if fanout.wanted(options) {
                    fanout.request(&events);
                }
            }
        }
        self.recorded(events)
    }

    /// Writes what belongs in the transcript file (finals, revisions, keywords); passes
    /// everything on.
    /// A failed write adds one `transcript_not_saved` error (the first time only).
    fn recorded(&mut self, mut events: Vec<ServerMessage>) -> Vec<ServerMessage> {
        let mut failure = None;
        if let Some(writer) = self.writer.as_mut() {
            for event in &events {
                if let Err(e) = writer.record(event) {
                    failure.get_or_insert(e);
                }
            }
        }
        let notice = failure.and_then(|e| self.transcript_failed(&e));
        if self.client_gone() {
            return Vec::new();
        }
        events.extend(notice);
        events
    }

    /// The subtitle files, once every final is out; the error to send if they failed.
    fn finish_transcript(&mut self) -> Option<ServerMessage> {
        let result = self.writer.as_mut().map(TranscriptWriter::finish)?;
        match result {
            Ok(files) => {
                self.outputs = files;
                None
            }
            Err(e) => self.transcript_failed(&e),
        }
    }

    /// Logs a transcript write that failed; the first time, the `error` event telling the
    /// client (not fatal: the session goes on, its events are still sent).
    fn transcript_failed(&mut self, error: &TranscriptError) -> Option<ServerMessage> {
        if self.transcript_error_sent {
            tracing::debug!(error = %error, "the transcript could not be saved (again)");
            return None;
        }
        tracing::error!(error = %error, "the transcript could not be saved");
        self.transcript_error_sent = true;
        if self.client_gone() {
            return None;
        }
        self.stream.session.summary_mut().errors += 1;
        Some(ServerMessage::error(
            "transcript_not_saved",
            format!(
                "the server could not save this session's transcript ({}); the session goes on and its events are still sent, but keep your own copy of them",
                error.reason()
            ),
            false,
        ))
    }

    fn status_event(&self) -> ServerMessage {
        let session = &self.stream.session;
        let lag_ms = session.lag_ms();
        if let Some(lags) = &self.lags {
            lags.set(&self.id, lag_ms);
        }
        ServerMessage::Status {
            lag_ms,
            queue_depth: self.stream.pool().snapshot().queue_depth,
            audio_seconds: session.audio_seconds(),
            language: session.language().map(str::to_owned),
        }
    }

    fn limit_reached(&mut self, limit: Limit) -> Step {
        let (notice, ending) = limit.notice(&self.config);
        self.close(ending);
        Step::Ending(notice)
    }

    /// The end: subtitle files written, the summary logged, the `closed` event made.
    fn closed(&mut self) -> Step {
        self.phase = Phase::Done;
        if let Some(lags) = &self.lags {
            lags.remove(&self.id);
        }
        let files = std::mem::take(&mut self.outputs);
        let summary = {
            let s = self.stream.session.summary_mut();
            s.outputs = files.iter().map(|p| p.display().to_string()).collect();
            s.audio_seconds = (s.audio_seconds * 1000.0).round() / 1000.0;
            s.clone()
        };
        let ending = self.ending.clone().unwrap_or_else(Ending::stopped);
        tracing::info!(
            audio_s = summary.audio_seconds,
            finals = summary.finals,
            filtered = summary.filtered,
            graceful = matches!(ending, Ending::Graceful { .. }),
            "session closed"
        );
        let farewell = match ending {
            Ending::Graceful { code, reason } => Some((
                ServerMessage::Closed {
                    session_id: self.id.clone(),
                    summary: summary.clone(),
                },
                code,
                reason,
            )),
            Ending::Gone => None,
        };
        Step::Closed(Closed { summary, farewell })
    }
}

/// Why the driver ended a session by itself.
enum Limit {
    Idle,
    Length,
    Shutdown,
}

impl Limit {
    fn notice(&self, config: &DriverConfig) -> (Option<ServerMessage>, Ending) {
        let seconds = |d: Option<Duration>| d.map_or(0, |d| d.as_secs());
        match self {
            Limit::Idle => (
                Some(ServerMessage::error(
                    "idle_timeout",
                    format!(
                        "nothing received for {} s; send audio or {{\"type\":\"keepalive\"}} to keep a session open",
                        seconds(config.idle_timeout)
                    ),
                    true,
                )),
                Ending::Graceful {
                    code: close_code::NORMAL,
                    reason: "idle",
                },
            ),
            Limit::Length => (
                Some(ServerMessage::error(
                    "session_too_long",
                    format!(
                        "sessions last at most {} s on this server; open a new one to go on",
                        seconds(config.max_session)
                    ),
                    true,
                )),
                Ending::Graceful {
                    code: close_code::NORMAL,
                    reason: "session length limit",
                },
            ),
            Limit::Shutdown => (
                None,
                Ending::Graceful {
                    code: close_code::GOING_AWAY,
                    reason: "server shutting down",
                },
            ),
        }
    }
}

/// The next events of whichever fan-out has some (never returns when none is pending).
async fn next_of_any(fanouts: &mut [FanOut]) -> Vec<ServerMessage> {
    match fanouts {
        [] => std::future::pending().await,
        [only] => only.next().await,
        [first, rest @ ..] => {
            tokio::select! {
                events = first.next() => events,
                events = Box::pin(next_of_any(rest)) => events,
            }
        }
    }
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a stopping server's drain time is up: `drain` after the driver first sees
/// `stopping` (remembered in `at`, so the deadline holds across calls); never without a drain
/// limit or while the server runs.
async fn drain_deadline(
    stopping: &mut Option<watch::Receiver<bool>>,
    at: &mut Option<Instant>,
    drain: Option<Duration>,
) {
    let Some(drain) = drain else {
        return std::future::pending().await;
    };
    if at.is_none() {
        shutdown(stopping).await;
        *at = Some(Instant::now() + drain);
    }
    sleep_until(*at).await
}

async fn shutdown(stopping: &mut Option<watch::Receiver<bool>>) {
    match stopping {
        Some(rx) => {
            if rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
