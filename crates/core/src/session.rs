//! One audio stream, free of any transport: PCM bytes in, protocol events out.
//!
//! `Session` is synchronous and does no I/O: it decodes and resamples PCM, runs the VAD,
//! decides which decode jobs to run (finals first, partials when a worker is free), and turns
//! decode outcomes into `partial` / `final` / `filtered` events in segment order. `Stream`
//! drives a `Session` against the shared decoder pool; `/ws`, file transcription and the
//! tests all use it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::audio::pcm::{Encoding, PcmFormat, decode_frame};
use crate::audio::resample::StreamResampler;
use crate::audio::{AudioError, TARGET_SAMPLE_RATE};
use crate::config::{SttConfig, VadConfig};
use crate::protocol::{
    EffectiveOptions, Language, PROTOCOL_VERSION, ServerMessage, SessionSummary, StreamOptions,
};
use crate::stt::engine::{DecodeOutcome, DecodeRequest, SttPool};
use crate::stt::filter::{Candidate, HallucinationFilter};
use crate::stt::language::{LanguageSet, LockRule};
use crate::stt::{DecodeOptions, Transcript, trimmed_audio_ctx};
use crate::vad::{Segmenter, Utterance, VadEvent};

/// Partials are not worth decoding for less audio than this.
const MIN_PARTIAL_SAMPLES: usize = TARGET_SAMPLE_RATE as usize;

/// Invalid stream options, with the protocol error code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    pub code: &'static str,
    pub message: String,
}

/// Checks a client's initial prompt: at most `max_chars` characters; blank means none.
pub fn check_prompt(prompt: &str, max_chars: usize) -> Result<Option<String>, OptionsError> {
    let prompt = prompt.trim();
    let chars = prompt.chars().count();
    if chars > max_chars {
        return Err(OptionsError {
            code: "prompt_too_long",
            message: format!(
                "prompt has {chars} characters; at most {max_chars} are accepted (stt.max_prompt_chars): \
                 give the domain words (road names, facility names) most likely to be said"
            ),
        });
    }
    Ok((!prompt.is_empty()).then(|| prompt.to_owned()))
}

/// Applies `requested` on top of `base`; the first invalid option is reported and nothing changes.
/// `max_prompt_chars` bounds the `prompt` option.
pub fn resolve_options(
    base: &EffectiveOptions,
    requested: &StreamOptions,
    max_prompt_chars: usize,
) -> Result<EffectiveOptions, OptionsError> {
    let mut out = base.clone();
    if let Some(lang) = &requested.language {
        out.language = lang.parse::<Language>().map_err(|message| OptionsError {
            code: "unsupported_language",
            message,
        })?;
    }
    if let Some(list) = &requested.languages {
        let set = LanguageSet::from_items(&list.0).map_err(|e| OptionsError {
            code: "unsupported_language",
            message: format!("languages: {e}"),
        })?;
        out.languages = set.to_strings();
    }
    if let Some(lock) = requested.language_lock {
        out.language_lock = lock;
    }
    if let Some(prompt) = &requested.prompt {
        out.prompt = check_prompt(prompt, max_prompt_chars)?;
    }
    if let Some(enc) = &requested.encoding {
        out.encoding = enc.parse::<Encoding>().map_err(|e| OptionsError {
            code: "unsupported_encoding",
            message: e.to_string(),
        })?;
    }
    if let Some(rate) = requested.sample_rate {
        out.sample_rate = rate;
    }
    if let Some(channels) = requested.channels {
        out.channels = channels;
    }
    let format = PcmFormat {
        encoding: out.encoding,
        sample_rate: out.sample_rate,
        channels: out.channels,
    };
    format.validate().map_err(|e| OptionsError {
        code: e.code(),
        message: e.to_string(),
    })?;
    if let Some(v) = requested.partials {
        out.partials = v;
    }
    if let Some(v) = requested.filtered {
        out.filtered = v;
    }
    if let Some(v) = requested.keywords {
        out.keywords = v;
    }
    if let Some(v) = requested.rag {
        out.rag = v;
    }
    Ok(out)
}

/// Options a session starts with before the client says anything.
/// `keywords` is whether the server has keyword extraction on (sessions may turn it off).
pub fn default_options(stt: &SttConfig, keywords: bool) -> EffectiveOptions {
    EffectiveOptions {
        language: stt.language,
        languages: stt.language_set().to_strings(),
        language_lock: stt.language_lock,
        sample_rate: TARGET_SAMPLE_RATE,
        encoding: Encoding::PcmS16le,
        channels: 1,
        partials: true,
        filtered: false,
        keywords,
        rag: false,
        prompt: stt
            .initial_prompt
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
    }
}

/// The detection set of `options` (validated when the options were resolved).
fn language_set(options: &EffectiveOptions) -> LanguageSet {
    LanguageSet::from_items(&options.languages).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "invalid language set; detecting among all languages");
        LanguageSet::all()
    })
}

/// A decode job the session wants run.
pub struct Job {
    pub job_id: u64,
    pub audio: Arc<[f32]>,
    pub opts: DecodeOptions,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum JobKind {
    Partial,
    /// The open utterance's audio up to `tail_ms` into a silence: becomes the final if the
    /// silence lasts, so the final is ready soon after `silence_ms` instead of a decode later.
    Speculative,
    Final {
        speech_final: bool,
    },
}

/// The speculative decode of the open utterance, if one was started.
struct Speculation {
    job_id: u64,
    segment_id: u64,
    start_sample: u64,
    len: usize,
    /// The outcome, once it arrived (kept until the utterance ends or speech resumes).
    outcome: Option<DecodeOutcome>,
}

#[derive(Clone, Copy)]
struct JobMeta {
    kind: JobKind,
    segment_id: u64,
    start_s: f64,
    end_s: f64,
    rms: f32,
    created: Instant,
}

pub struct Session {
    id: String,
    options: EffectiveOptions,
    /// `options.languages`, parsed: what `auto` chooses from.
    languages: LanguageSet,
    lock_rule: LockRule,
    /// With `auto`: the language the session was locked to, once detected with confidence.
    locked_language: Option<&'static str>,
    /// With `auto` before the lock: the language the open utterance's first partial detected,
    /// reused by its later partials (its final detects on the whole utterance again).
    partial_language: Option<(u64, &'static str)>,
    format: PcmFormat,
    resampler: StreamResampler,
    vad: Segmenter,
    filter: Arc<HallucinationFilter>,
    decode_defaults: DecodeOptions,
    ctx_trim: Option<(f64, f64)>,
    partial_interval: usize,
    max_finals_in_flight: usize,

    /// Reused buffers: the audio path runs 50 times a second per client.
    mono: Vec<f32>,
    resampled: Vec<f32>,
    vad_events: Vec<VadEvent>,

    next_segment_id: u64,
    /// Segment id of the utterance being spoken, if any.
    open_segment: Option<u64>,
    /// Open-utterance length (samples) when the last partial was requested.
    partial_mark: usize,
    last_partial_text: String,

    next_job_id: u64,
    jobs: HashMap<u64, JobMeta>,
    /// Final jobs not yet handed to the pool, oldest first.
    waiting: VecDeque<Job>,
    in_flight: usize,
    partial_in_flight: bool,
    /// Cancels the partial in flight once the utterance ended: its result would be stale,
    /// and the worker is better spent on the final.
    partial_cancel: Option<Arc<AtomicBool>>,
    speculation: Option<Speculation>,
    /// Final job ids in segment order; outcomes are released in this order.
    final_order: VecDeque<u64>,
    finished: BTreeMap<u64, Vec<ServerMessage>>,
    /// Events released and not yet collected by the driver.
    outbox: Vec<ServerMessage>,
    summary: SessionSummary,
}

impl Session {
    pub fn new(
        id: String,
        options: EffectiveOptions,
        stt: &SttConfig,
        vad: &VadConfig,
        filter: Arc<HallucinationFilter>,
        workers: usize,
    ) -> Result<Self, AudioError> {
        let format = PcmFormat {
            encoding: options.encoding,
            sample_rate: options.sample_rate,
            channels: options.channels,
        };
        format.validate()?;
        let resampler = StreamResampler::new(format.sample_rate)?;
        Ok(Self {
            id,
            decode_defaults: DecodeOptions {
                language: options.language,
                languages: None,
                beam_size: stt.beam_size,
                threads: stt.threads,
                audio_ctx: None,
                initial_prompt: options.prompt.as_deref().map(Arc::from),
                word_timestamps: true,
                cancel: None,
            },
            ctx_trim: stt
                .audio_ctx_trim
                .then_some((stt.audio_ctx_margin_s, stt.audio_ctx_min_s)),
            partial_interval: (stt.partial_interval_ms * TARGET_SAMPLE_RATE as u64 / 1000) as usize,
            max_finals_in_flight: workers.max(1),
            languages: language_set(&options),
            lock_rule: LockRule {
                enabled: options.language_lock,
                min_probability: stt.language_lock_probability as f32,
                min_seconds: stt.language_lock_min_s as f32,
            },
            locked_language: None,
            partial_language: None,
            options,
            format,
            resampler,
            vad: Segmenter::new(vad),
            filter,
            mono: Vec::new(),
            resampled: Vec::new(),
            vad_events: Vec::new(),
            next_segment_id: 0,
            open_segment: None,
            partial_mark: 0,
            last_partial_text: String::new(),
            next_job_id: 0,
            jobs: HashMap::new(),
            waiting: VecDeque::new(),
            in_flight: 0,
            partial_in_flight: false,
            partial_cancel: None,
            speculation: None,
            final_order: VecDeque::new(),
            finished: BTreeMap::new(),
            outbox: Vec::new(),
            summary: SessionSummary::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn options(&self) -> &EffectiveOptions {
        &self.options
    }

    pub fn ready_message(&self, model: &str) -> ServerMessage {
        ServerMessage::Ready {
            session_id: self.id.clone(),
            protocol_version: PROTOCOL_VERSION,
            model: model.to_owned(),
            options: self.options.clone(),
        }
    }

    /// Changes options mid-stream (a `start` message). Audio already received in the old
    /// format is flushed through the old resampler first.
    pub fn reconfigure(&mut self, options: EffectiveOptions) -> Result<(), AudioError> {
        let format = PcmFormat {
            encoding: options.encoding,
            sample_rate: options.sample_rate,
            channels: options.channels,
        };
        format.validate()?;
        if format.sample_rate != self.format.sample_rate {
            let resampler = StreamResampler::new(format.sample_rate)?;
            self.resampled.clear();
            self.resampler.finish(&mut self.resampled);
            self.resampler = resampler;
            let samples = std::mem::take(&mut self.resampled);
            self.feed_vad(&samples);
            self.resampled = samples;
        }
        self.format = format;
        // A new language choice starts detection afresh.
        if options.language != self.options.language
            || options.languages != self.options.languages
            || options.language_lock != self.options.language_lock
        {
            self.locked_language = None;
            self.partial_language = None;
            self.languages = language_set(&options);
            self.lock_rule.enabled = options.language_lock;
        }
        self.decode_defaults.language = options.language;
        self.decode_defaults.initial_prompt = options.prompt.as_deref().map(Arc::from);
        self.options = options;
        Ok(())
    }

    /// Sets the per-session initial prompt (domain words); the caller has checked its length
    /// ([`check_prompt`]).
    pub fn set_prompt(&mut self, prompt: Option<&str>) {
        let prompt = prompt.map(str::trim).filter(|p| !p.is_empty());
        self.decode_defaults.initial_prompt = prompt.map(Arc::from);
        self.options.prompt = prompt.map(str::to_owned);
    }

    /// The language finals are decoded in: the forced one, or with `auto` the locked one
    /// (`None` while still detecting).
    pub fn language(&self) -> Option<&'static str> {
        match self.options.language {
            Language::Ko => Some("ko"),
            Language::En => Some("en"),
            Language::Auto => self
                .locked_language
                .or_else(|| match self.languages.codes() {
                    [only] => Some(*only),
                    _ => None,
                }),
        }
    }

    /// Feeds raw PCM bytes in the session's format. A bad frame is rejected whole.
    pub fn push_pcm(&mut self, bytes: &[u8]) -> Result<(), AudioError> {
        self.mono.clear();
        decode_frame(&self.format, bytes, &mut self.mono)?;
        let mono = std::mem::take(&mut self.mono);
        self.push_samples(&mono);
        self.mono = mono;
        Ok(())
    }

    /// Feeds mono f32 samples at the session's sample rate.
    pub fn push_samples(&mut self, samples: &[f32]) {
        self.summary.audio_seconds += samples.len() as f64 / self.format.sample_rate as f64;
        crate::metrics::global().audio_received(samples.len(), self.format.sample_rate);
        self.resampled.clear();
        self.resampler.process(samples, &mut self.resampled);
        let resampled = std::mem::take(&mut self.resampled);
        self.feed_vad(&resampled);
        self.resampled = resampled;
    }

    /// Ends the open utterance now (client `flush`).
    pub fn flush(&mut self) {
        let mut events = std::mem::take(&mut self.vad_events);
        events.clear();
        self.vad.flush(&mut events);
        self.handle_vad_events(&mut events);
        self.vad_events = events;
        self.cancel_stale_partial();
    }

    /// End of stream: drains the resampler and ends the open utterance.
    pub fn finish(&mut self) {
        self.resampled.clear();
        self.resampler.finish(&mut self.resampled);
        let tail = std::mem::take(&mut self.resampled);
        self.feed_vad(&tail);
        self.resampled = tail;
        self.flush();
    }

    fn feed_vad(&mut self, samples: &[f32]) {
        let mut events = std::mem::take(&mut self.vad_events);
        events.clear();
        self.vad.push(samples, &mut events);
        self.handle_vad_events(&mut events);
        self.vad_events = events;
        self.cancel_stale_partial();
    }

    fn cancel_stale_partial(&mut self) {
        // Only once the utterance has ended: cancelling at every short pause (as a first
        // version did) starved partials entirely on a loaded machine.
        if self.partial_in_flight
            && (self.open_segment.is_none() || !self.waiting.is_empty())
            && let Some(flag) = self.partial_cancel.take()
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn handle_vad_events(&mut self, events: &mut Vec<VadEvent>) {
        for event in events.drain(..) {
            match event {
                VadEvent::Started { .. } => {
                    self.open_segment = Some(self.next_segment_id);
                    self.next_segment_id += 1;
                    self.partial_mark = 0;
                    self.last_partial_text.clear();
                }
                VadEvent::Discarded { .. } => {
                    self.open_segment = None;
                    self.drop_speculation();
                }
                VadEvent::Ended(utterance) => {
                    let segment_id = self.open_segment.take().unwrap_or_else(|| {
                        self.next_segment_id += 1;
                        self.next_segment_id - 1
                    });
                    self.queue_final(segment_id, utterance);
                }
            }
        }
    }

    fn queue_final(&mut self, segment_id: u64, utterance: Utterance) {
        if self.adopt_speculation(segment_id, &utterance) {
            return;
        }
        self.drop_speculation();
        let job_id = self.new_job_id();
        let seconds = utterance.samples.len() as f32 / TARGET_SAMPLE_RATE as f32;
        self.jobs.insert(
            job_id,
            JobMeta {
                kind: JobKind::Final {
                    speech_final: utterance.speech_final,
                },
                segment_id,
                start_s: utterance.start_s(),
                end_s: utterance.end_s(),
                rms: utterance.rms,
                created: Instant::now(),
            },
        );
        self.final_order.push_back(job_id);
        let opts = self.decode_options(seconds, true, None);
        self.waiting.push_back(Job {
            job_id,
            audio: Arc::from(utterance.samples),
            opts,
        });
    }

    /// Uses the speculative decode as this utterance's final when it decoded exactly this audio.
    fn adopt_speculation(&mut self, segment_id: u64, utterance: &Utterance) -> bool {
        let matches = self.speculation.as_ref().is_some_and(|s| {
            s.segment_id == segment_id
                && s.start_sample == utterance.start_sample
                && s.len == utterance.samples.len()
        });
        if !matches {
            return false;
        }
        let Some(speculation) = self.speculation.take() else {
            return false;
        };
        let job_id = speculation.job_id;
        tracing::debug!(
            job_id,
            ready = speculation.outcome.is_some(),
            "speculative decode becomes the final"
        );
        let kind = JobKind::Final {
            speech_final: utterance.speech_final,
        };
        self.final_order.push_back(job_id);
        match speculation.outcome {
            Some(outcome) => {
                if let Some(mut meta) = self.jobs.remove(&job_id) {
                    meta.kind = kind;
                    self.complete_final(meta, outcome);
                }
            }
            None => {
                if let Some(meta) = self.jobs.get_mut(&job_id) {
                    meta.kind = kind;
                }
            }
        }
        true
    }

    fn drop_speculation(&mut self) {
        if let Some(old) = self.speculation.take() {
            // Still in flight: its outcome finds no matching speculation and is ignored.
            if old.outcome.is_some() {
                self.jobs.remove(&old.job_id);
            }
        }
    }

    fn decode_options(&self, seconds: f32, words: bool, partial_of: Option<u64>) -> DecodeOptions {
        let mut opts = self.decode_defaults.clone();
        self.choose_languages(&mut opts, partial_of);
        opts.audio_ctx = self
            .ctx_trim
            .map(|(margin, min)| trimmed_audio_ctx(f64::from(seconds), margin, min));
        opts.word_timestamps = words;
        opts
    }

    /// With `auto`: what the decoder may choose from — the locked language, the open
    /// utterance's guess for its later partials, or the session's set. Called when a job is
    /// handed to the pool, so a final queued before the lock is still decoded in the locked
    /// language.
    fn choose_languages(&self, opts: &mut DecodeOptions, partial_of: Option<u64>) {
        if self.options.language != Language::Auto {
            opts.languages = None;
            return;
        }
        let guess = self
            .partial_language
            .filter(|(segment, _)| partial_of == Some(*segment))
            .map(|(_, code)| code);
        opts.languages = Some(match self.locked_language.or(guess) {
            Some(code) => LanguageSet::single(code),
            None => self.languages.clone(),
        });
    }

    fn new_job_id(&mut self) -> u64 {
        self.next_job_id += 1;
        self.next_job_id
    }

    /// The next job to run, if any: a waiting final, or a partial when `worker_idle` and the
    /// session has nothing else in flight. Taking it counts it as in flight.
    pub fn next_job(&mut self, worker_idle: bool) -> Option<Job> {
        if self.has_job(worker_idle) {
            return self.take_job();
        }
        None
    }

    /// Whether `next_job` would return something (without taking it).
    pub fn has_job(&self, worker_idle: bool) -> bool {
        if !self.waiting.is_empty() {
            return self.in_flight < self.max_finals_in_flight;
        }
        self.speculation_due(worker_idle) || self.partial_due(worker_idle)
    }

    /// Optional work (speculation, partials) only runs on an idle worker and when this
    /// session has nothing else in flight, so it never delays a final.
    fn optional_work_allowed(&self, worker_idle: bool) -> bool {
        worker_idle && self.in_flight == 0 && self.open_segment.is_some()
    }

    fn speculation_due(&self, worker_idle: bool) -> bool {
        if !self.optional_work_allowed(worker_idle) {
            return false;
        }
        match self.vad.pending_final() {
            Some((start, audio)) => !self.speculation.as_ref().is_some_and(|s| {
                s.segment_id == self.open_segment.unwrap_or(u64::MAX)
                    && s.start_sample == start
                    && s.len == audio.len()
            }),
            None => false,
        }
    }

    fn partial_due(&self, worker_idle: bool) -> bool {
        if !self.options.partials || !self.optional_work_allowed(worker_idle) {
            return false;
        }
        // In a silence nothing new is being said: speculation covers it.
        if self.vad.pending_final().is_some() {
            return false;
        }
        match self.vad.open_utterance() {
            Some((_, samples)) => {
                samples.len() >= MIN_PARTIAL_SAMPLES
                    && samples.len() >= self.partial_mark + self.partial_interval
            }
            None => false,
        }
    }

    fn take_job(&mut self) -> Option<Job> {
        if !self.waiting.is_empty() && self.in_flight < self.max_finals_in_flight {
            self.in_flight += 1;
            let mut job = self.waiting.pop_front();
            if let Some(job) = job.as_mut() {
                self.choose_languages(&mut job.opts, None);
            }
            tracing::debug!(job_id = job.as_ref().map(|j| j.job_id), "final decode job");
            return job;
        }
        let segment_id = self.open_segment?;
        let speculate = self.speculation_due(true);
        let (start_sample, samples) = if speculate {
            self.vad.pending_final()?
        } else {
            self.vad.open_utterance()?
        };
        let audio: Arc<[f32]> = Arc::from(samples);
        let start_s = start_sample as f64 / TARGET_SAMPLE_RATE as f64;
        let seconds = audio.len() as f32 / TARGET_SAMPLE_RATE as f32;
        let job_id = self.new_job_id();
        let kind = if speculate {
            self.drop_speculation();
            self.speculation = Some(Speculation {
                job_id,
                segment_id,
                start_sample,
                len: audio.len(),
                outcome: None,
            });
            JobKind::Speculative
        } else {
            self.partial_mark = audio.len();
            self.partial_in_flight = true;
            JobKind::Partial
        };
        let mut opts = self.decode_options(seconds, speculate, (!speculate).then_some(segment_id));
        if kind == JobKind::Partial {
            let flag = Arc::new(AtomicBool::new(false));
            opts.cancel = Some(Arc::clone(&flag));
            self.partial_cancel = Some(flag);
        }
        self.jobs.insert(
            job_id,
            JobMeta {
                kind,
                segment_id,
                start_s,
                end_s: start_s + seconds as f64,
                rms: crate::vad::rms(&audio),
                created: Instant::now(),
            },
        );
        self.in_flight += 1;
        tracing::debug!(job_id, ?kind, segment_id, seconds, "decode job");
        Some(Job {
            job_id,
            opts,
            audio,
        })
    }

    /// Takes in a decode outcome; the events it releases are collected with `take_events`.
    pub fn on_outcome(&mut self, outcome: DecodeOutcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(kind) = self.jobs.get(&outcome.job_id).map(|m| m.kind) else {
            tracing::debug!(job_id = outcome.job_id, "outcome of a forgotten job");
            return;
        };
        tracing::debug!(
            job_id = outcome.job_id,
            ?kind,
            ok = outcome.result.is_ok(),
            decode_ms = outcome.decode.as_millis() as u64,
            "decode outcome"
        );
        match kind {
            JobKind::Partial => {
                self.partial_in_flight = false;
                self.partial_cancel = None;
                if let Some(meta) = self.jobs.get(&outcome.job_id)
                    && let Ok(t) = &outcome.result
                    && let Some(d) = t.detection
                    && self.open_segment == Some(meta.segment_id)
                {
                    self.partial_language = Some((meta.segment_id, d.language));
                }
                if let Some(meta) = self.jobs.remove(&outcome.job_id) {
                    let event = self.partial_event(&meta, outcome.result.as_ref().ok());
                    self.outbox.extend(event);
                }
            }
            JobKind::Speculative => {
                let current = self
                    .speculation
                    .as_ref()
                    .is_some_and(|s| s.job_id == outcome.job_id);
                if !current {
                    self.jobs.remove(&outcome.job_id);
                    return;
                }
                // Show the finished utterance's text at once; the final follows if the silence lasts.
                if let Some(meta) = self.jobs.get(&outcome.job_id) {
                    let meta = *meta;
                    if let Some(event) = self.partial_event(&meta, outcome.result.as_ref().ok()) {
                        self.outbox.push(event);
                    }
                }
                if let Some(s) = self.speculation.as_mut() {
                    s.outcome = Some(outcome);
                }
            }
            JobKind::Final { .. } => {
                if let Some(meta) = self.jobs.remove(&outcome.job_id) {
                    self.complete_final(meta, outcome);
                }
            }
        }
    }

    /// Events released since the last call.
    pub fn take_events(&mut self) -> Vec<ServerMessage> {
        std::mem::take(&mut self.outbox)
    }

    fn complete_final(&mut self, meta: JobMeta, outcome: DecodeOutcome) {
        let JobKind::Final { speech_final } = meta.kind else {
            return;
        };
        let job_id = outcome.job_id;
        let event = self.final_event(&meta, speech_final, outcome);
        self.finished.insert(job_id, event);
        self.release_in_order();
    }

    fn partial_event(
        &mut self,
        meta: &JobMeta,
        transcript: Option<&Transcript>,
    ) -> Option<ServerMessage> {
        // Once the segment's final is queued, its partials are stale.
        if self.open_segment != Some(meta.segment_id) || !self.options.partials {
            return None;
        }
        let text = self.clean_text(transcript?, meta).ok()?;
        if text == self.last_partial_text {
            return None;
        }
        self.last_partial_text.clone_from(&text);
        self.summary.partials += 1;
        Some(ServerMessage::Partial {
            segment_id: meta.segment_id,
            text,
            start: round_ms(meta.start_s),
            end: round_ms(meta.end_s),
        })
    }

    /// The final (or `filtered` / `error`) events of a decoded utterance, with a `language`
    /// event before the final when it locked the session's language.
    fn final_event(
        &mut self,
        meta: &JobMeta,
        speech_final: bool,
        outcome: DecodeOutcome,
    ) -> Vec<ServerMessage> {
        let transcript = match outcome.result {
            Ok(t) => t,
            Err(e) => {
                self.summary.errors += 1;
                tracing::warn!(session = %self.id, segment = meta.segment_id, error = %e, "decode failed");
                return vec![ServerMessage::error(
                    "decode_failed",
                    format!("segment {} could not be decoded: {e}", meta.segment_id),
                    false,
                )];
            }
        };
        if let Some(d) = &transcript.detection {
            tracing::debug!(
                segment = meta.segment_id,
                language = d.language,
                probability = d.probability,
                raw_probability = d.raw_probability,
                "language detected"
            );
        }
        match self.clean_text(&transcript, meta) {
            Ok(text) => {
                let mut events = Vec::with_capacity(2);
                if let Some(lock) = self.lock_language(meta, &transcript) {
                    events.push(lock);
                }
                self.summary.finals += 1;
                crate::metrics::global().segment_final();
                let words = transcript
                    .words
                    .iter()
                    .map(|w| crate::protocol::Word {
                        word: w.word.clone(),
                        start: round_ms((meta.start_s + w.start).min(meta.end_s)),
                        end: round_ms((meta.start_s + w.end).min(meta.end_s)),
                        probability: w.probability,
                    })
                    .collect();
                events.push(ServerMessage::Final {
                    segment_id: meta.segment_id,
                    text,
                    start: round_ms(meta.start_s),
                    end: round_ms(meta.end_s),
                    language: transcript.language,
                    words,
                    avg_logprob: transcript.avg_logprob,
                    no_speech_prob: transcript.no_speech_prob,
                    speech_final,
                });
                events
            }
            Err(reason) => {
                self.summary.filtered += 1;
                crate::metrics::global().segment_filtered(reason.as_str());
                tracing::info!(
                    session = %self.id,
                    segment = meta.segment_id,
                    reason = %reason,
                    text = %transcript.text,
                    "segment filtered"
                );
                self.options
                    .filtered
                    .then(|| ServerMessage::Filtered {
                        segment_id: meta.segment_id,
                        text: transcript.text.clone(),
                        reason: reason.as_str().to_owned(),
                        start: round_ms(meta.start_s),
                        end: round_ms(meta.end_s),
                    })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Locks the session to the language of a kept final when the lock rule says so, and
    /// returns the `language` event announcing it.
    fn lock_language(&mut self, meta: &JobMeta, transcript: &Transcript) -> Option<ServerMessage> {
        if self.options.language != Language::Auto || self.locked_language.is_some() {
            return None;
        }
        let detection = transcript.detection?;
        let seconds = (meta.end_s - meta.start_s) as f32;
        if !self.lock_rule.locks(&detection, seconds) {
            return None;
        }
        self.locked_language = Some(detection.language);
        tracing::info!(
            session = %self.id,
            language = detection.language,
            probability = detection.probability,
            segment = meta.segment_id,
            "session language locked"
        );
        Some(ServerMessage::Language {
            language: detection.language.to_owned(),
            probability: (detection.probability * 1000.0).round() / 1000.0,
            segment_id: meta.segment_id,
            locked: true,
        })
    }

    /// Applies the hallucination filter; returns the text to send or why it was dropped.
    fn clean_text(
        &self,
        transcript: &Transcript,
        meta: &JobMeta,
    ) -> Result<String, crate::stt::filter::DropReason> {
        self.filter
            .apply(&Candidate {
                text: &transcript.text,
                avg_logprob: transcript.avg_logprob,
                no_speech_prob: transcript.no_speech_prob,
                audio_rms: meta.rms,
                duration_s: (meta.end_s - meta.start_s) as f32,
            })
            .map(|text| text.into_owned())
    }

    fn release_in_order(&mut self) {
        while let Some(&next) = self.final_order.front() {
            match self.finished.remove(&next) {
                Some(events) => {
                    self.final_order.pop_front();
                    self.outbox.extend(events);
                }
                None => break,
            }
        }
    }

    /// Every final has been released and collected.
    pub fn is_drained(&self) -> bool {
        self.waiting.is_empty() && self.final_order.is_empty() && self.outbox.is_empty()
    }

    /// Audio of finals waiting for a decoder, in seconds (the open utterance is capped by
    /// the segmenter's maximum length and not counted).
    pub fn backlog_seconds(&self) -> f64 {
        let samples: usize = self.waiting.iter().map(|job| job.audio.len()).sum();
        samples as f64 / TARGET_SAMPLE_RATE as f64
    }

    /// How long the oldest unfinished final has been waiting, in milliseconds.
    pub fn lag_ms(&self) -> u64 {
        self.final_order
            .front()
            .and_then(|id| self.jobs.get(id))
            .map(|m| m.created.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }

    pub fn summary(&self) -> &SessionSummary {
        &self.summary
    }

    /// Audio received so far, in seconds, rounded to milliseconds.
    pub fn audio_seconds(&self) -> f64 {
        round_ms(self.summary.audio_seconds)
    }

    pub fn summary_mut(&mut self) -> &mut SessionSummary {
        &mut self.summary
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Drives a `Session` against the decoder pool.
pub struct Stream {
    pub session: Session,
    pool: SttPool,
    reply_tx: mpsc::UnboundedSender<DecodeOutcome>,
    reply_rx: mpsc::UnboundedReceiver<DecodeOutcome>,
}

impl Stream {
    pub fn new(session: Session, pool: SttPool) -> Self {
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        Self {
            session,
            pool,
            reply_tx,
            reply_rx,
        }
    }

    /// Hands jobs to the pool and waits for the next outcome; returns the events it releases
    /// (possibly none). Cancel-safe: use it in `select!` beside the transport. It never
    /// returns while the session has nothing to do, so callers waiting for the end check
    /// `session.is_drained()` before each call.
    pub async fn progress(&mut self) -> Vec<ServerMessage> {
        loop {
            let released = self.session.take_events();
            if !released.is_empty() {
                return released;
            }
            if self.session.has_job(self.pool.has_idle_worker()) {
                tokio::select! {
                    permit = self.pool.reserve() => {
                        let Ok(permit) = permit else {
                            return vec![ServerMessage::error("decoder_unavailable", "the decoder pool has shut down", true)];
                        };
                        if let Some(job) = self.session.next_job(true) {
                            permit.send(DecodeRequest {
                                job_id: job.job_id,
                                audio: job.audio,
                                opts: job.opts,
                                reply: self.reply_tx.clone(),
                            });
                        }
                        continue;
                    }
                    outcome = self.reply_rx.recv() => {
                        if let Some(outcome) = outcome {
                            self.session.on_outcome(outcome);
                            // Return even when nothing was released (a filtered final), so
                            // callers waiting for `is_drained` see the change.
                            return self.session.take_events();
                        }
                    }
                }
            } else if let Some(outcome) = self.reply_rx.recv().await {
                self.session.on_outcome(outcome);
                return self.session.take_events();
            }
        }
    }

    /// Ends the stream and returns every remaining event (the last finals).
    pub async fn finish(&mut self) -> Vec<ServerMessage> {
        self.session.finish();
        self.drain().await
    }

    /// Waits until every queued final has been released.
    pub async fn drain(&mut self) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        while !self.session.is_drained() {
            out.extend(self.progress().await);
        }
        out
    }

    pub fn pool(&self) -> &SttPool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LanguageList;

    fn base() -> EffectiveOptions {
        default_options(&SttConfig::default(), false)
    }

    #[test]
    fn defaults_are_forced_korean_with_ko_en_for_auto() {
        let o = base();
        assert_eq!(o.language, Language::Ko);
        assert_eq!(o.languages, ["ko", "en"]);
        assert!(o.language_lock);
        assert_eq!(o.prompt, None);
    }

    #[test]
    fn language_sets_resolve_to_codes_or_say_what_is_accepted() {
        let requested = StreamOptions {
            language: Some("auto".into()),
            languages: Some(LanguageList(vec!["Japanese, ko".into()])),
            language_lock: Some(false),
            ..StreamOptions::default()
        };
        let o = resolve_options(&base(), &requested, 200).unwrap();
        assert_eq!(o.language, Language::Auto);
        assert_eq!(o.languages, ["ja", "ko"]);
        assert!(!o.language_lock);

        let bad = StreamOptions {
            languages: Some(LanguageList(vec!["ko".into(), "xx".into()])),
            ..StreamOptions::default()
        };
        let e = resolve_options(&base(), &bad, 200).unwrap_err();
        assert_eq!(e.code, "unsupported_language");
        assert!(e.message.starts_with("languages: ") && e.message.contains("\"xx\""));
    }

    #[test]
    fn prompts_are_bounded_and_blank_means_none() {
        assert_eq!(check_prompt("  ", 10).unwrap(), None);
        assert_eq!(
            check_prompt(" 양재 나들목 ", 10).unwrap().as_deref(),
            Some("양재 나들목")
        );
        // Characters, not bytes: six Hangul syllables are 18 bytes.
        assert!(check_prompt("가나다라마바", 6).is_ok());
        let e = check_prompt("가나다라마바사", 6).unwrap_err();
        assert_eq!(e.code, "prompt_too_long");
        assert!(e.message.contains('7') && e.message.contains('6'), "{e}");

        let requested = StreamOptions {
            prompt: Some("세종대로".into()),
            ..StreamOptions::default()
        };
        let o = resolve_options(&base(), &requested, 200).unwrap();
        assert_eq!(o.prompt.as_deref(), Some("세종대로"));
        let cleared = StreamOptions {
            prompt: Some(String::new()),
            ..StreamOptions::default()
        };
        assert_eq!(resolve_options(&o, &cleared, 200).unwrap().prompt, None);
    }
}
