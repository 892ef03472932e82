//! One audio stream, free of any transport: PCM bytes in, protocol events out.
//!
//! `Session` is synchronous and does no I/O. Its parts, one file each, in the order audio
//! flows through them:
//! - this file: the front end (PCM decoding, resampling to 16 kHz, the VAD) and the options;
//! - [`scheduler`]: which decode jobs to run (finals first, then speculation and partials when
//!   a worker is free), cancelling stale partials, releasing finals in segment order;
//! - `context`: the previous text each decode is prompted with (`condition_on_previous_text`);
//! - `language`: with `auto`, the languages a decode may choose from and the session lock;
//! - `merge`: file sessions only, consecutive utterances decoded together in one window and
//!   split back into their own finals;
//! - `revise`: live sessions only, finals already sent decoded again in windows on an idle
//!   worker, and corrected with `revision` events;
//! - `events`: decode outcomes into `partial` / `final` / `filtered` events through the
//!   hallucination filter;
//! - [`options`]: what a client may ask for, validated;
//! - [`stream`]: drives a `Session` against the shared decoder pool (async).
//!
//! The driver (`crate::driver`) runs a `Stream` for a transport: limits, outputs, keywords.

mod context;
mod events;
mod language;
mod latency;
mod merge;
pub use merge::WindowJoin;
pub mod options;
mod revise;
pub mod scheduler;
pub mod stream;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::audio::pcm::{PcmFormat, decode_frame};
use crate::audio::resample::StreamResampler;
use crate::audio::{AudioError, TARGET_SAMPLE_RATE};
use crate::engine::Engine;
use crate::protocol::{EffectiveOptions, PROTOCOL_VERSION, ServerMessage, SessionSummary};
use crate::stt::DecodeOptions;
use crate::stt::filter::HallucinationFilter;
use crate::stt::language::{LanguageSet, LockRule};
use crate::vad::{Segmenter, VadEvent};

use options::language_set;
pub use options::{
    MAX_SILENCE_MS, MIN_SILENCE_MS, OptionsError, check_prompt, default_options, resolve_options,
};
use scheduler::{Job, JobMeta, Speculation};
pub use stream::Stream;

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
    /// The previous text decodes are prompted with (`stt.condition_on_previous_text`).
    conditioning: context::Conditioning,
    ctx_trim: Option<(f64, f64)>,
    /// Partials decoded as drafts (`stt.draft_partials`).
    draft_partials: bool,
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
    /// When the last partial decode came back: partials of the session that waited longest go
    /// first in the pool's queue.
    last_partial_at: Instant,
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
    /// Live sessions only: when their audio arrived, for the final-latency metric.
    arrivals: Option<latency::ArrivalClock>,
    /// File sessions only: utterances gathered into decode windows (`merge_file_windows`).
    windows: Option<merge::Windows>,
    /// A file session (`merge_file_windows` was called): its feed waits for decodes.
    file: bool,
    /// Beam width of window decodes: a file's, and live revisions (`stt.window_beam_size`).
    window_beam_size: usize,
    /// Live sessions: the revision windows' length and joins (`revise_live`), when the server
    /// revises finals.
    revision_window: Option<(f64, WindowJoin)>,
    /// Live sessions with `revisions`: finals gathered to be decoded again together.
    revisions: Option<revise::Revisions>,
    /// The open utterance a boundary decode was asked for (the cut at the maximum length).
    boundary_for: Option<u64>,
    boundary_in_flight: bool,
}

impl Session {
    pub fn new(id: String, options: EffectiveOptions, engine: &Engine) -> Result<Self, AudioError> {
        let stt = &engine.stt;
        let format = PcmFormat {
            encoding: options.encoding,
            sample_rate: options.sample_rate,
            channels: options.channels,
        };
        format.validate()?;
        let resampler = StreamResampler::new(format.sample_rate)?;
        let mut vad = Segmenter::with_detector(&engine.vad, (engine.voice_detector)());
        vad.tune(
            options.silence_ms,
            options.speech_threshold,
            options.manual_turns,
        );
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
                aligned_words: false,
                draft: false,
                cancel: None,
            },
            conditioning: context::Conditioning::new(stt.condition_on_previous_text),
            draft_partials: stt.draft_partials,
            ctx_trim: stt
                .audio_ctx_trim
                .then_some((stt.audio_ctx_margin_s, stt.audio_ctx_min_s)),
            partial_interval: (stt.partial_interval_ms * TARGET_SAMPLE_RATE as u64 / 1000) as usize,
            max_finals_in_flight: stt.workers.max(1),
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
            vad,
            filter: Arc::clone(&engine.filter),
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
            last_partial_at: Instant::now(),
            partial_cancel: None,
            speculation: None,
            final_order: VecDeque::new(),
            finished: BTreeMap::new(),
            outbox: Vec::new(),
            summary: SessionSummary::default(),
            arrivals: None,
            windows: None,
            file: false,
            window_beam_size: stt.window_beam_size,
            revision_window: None,
            revisions: None,
            boundary_for: None,
            boundary_in_flight: false,
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
            options: Box::new(self.options.clone()),
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
            self.conditioning.forget();
            self.languages = language_set(&options);
            self.lock_rule.enabled = options.language_lock;
        }
        self.decode_defaults.language = options.language;
        self.decode_defaults.initial_prompt = options.prompt.as_deref().map(Arc::from);
        self.vad.tune(
            options.silence_ms,
            options.speech_threshold,
            options.manual_turns,
        );
        self.options = options;
        self.apply_revision_option();
        Ok(())
    }

    /// Sets the per-session initial prompt (domain words); the caller has checked its length
    /// ([`check_prompt`]).
    pub fn set_prompt(&mut self, prompt: Option<&str>) {
        let prompt = prompt.map(str::trim).filter(|p| !p.is_empty());
        self.decode_defaults.initial_prompt = prompt.map(Arc::from);
        self.options.prompt = prompt.map(str::to_owned);
    }

    /// Measures each final's latency from the arrival of its last word's audio (live sessions;
    /// a file's audio arrives all at once and would only measure the queue).
    pub fn measure_latency(&mut self) {
        self.arrivals.get_or_insert_with(Default::default);
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
        if let Some(clock) = self.arrivals.as_mut() {
            clock.arrived(resampled.len());
        }
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
        self.seal_window();
        self.cancel_stale_partial();
        if self.options.vad_events {
            self.outbox.push(ServerMessage::Flushed {
                next_segment_id: self.next_segment_id,
            });
        }
    }

    /// Drops the audio of the open utterance, undecoded (OpenAI's `input_audio_buffer.clear`):
    /// no final comes for it. Finals of utterances already ended are kept.
    pub fn clear(&mut self) {
        self.vad.discard();
        if let Some(segment_id) = self.open_segment.take() {
            self.speech_stopped(segment_id, self.vad.position(), false);
        }
        self.drop_speculation();
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
        self.finish_revisions();
    }

    pub(super) fn feed_vad(&mut self, samples: &[f32]) {
        let mut events = std::mem::take(&mut self.vad_events);
        events.clear();
        self.vad.push(samples, &mut events);
        self.handle_vad_events(&mut events);
        self.vad_events = events;
        self.cancel_stale_partial();
        self.seal_revision_when_quiet();
    }

    pub(super) fn handle_vad_events(&mut self, events: &mut Vec<VadEvent>) {
        for event in events.drain(..) {
            match event {
                VadEvent::Started { start_sample } => {
                    let segment_id = self.next_segment_id;
                    self.open_segment = Some(segment_id);
                    self.next_segment_id += 1;
                    self.partial_mark = 0;
                    self.last_partial_text.clear();
                    if self.options.vad_events {
                        let start = round_ms(start_sample as f64 / f64::from(TARGET_SAMPLE_RATE));
                        self.outbox
                            .push(ServerMessage::SpeechStarted { segment_id, start });
                    }
                }
                VadEvent::Discarded { .. } => {
                    if let Some(segment_id) = self.open_segment.take() {
                        self.speech_stopped(segment_id, self.vad.position(), false);
                    }
                    self.drop_speculation();
                }
                VadEvent::Ended(utterance) => {
                    let segment_id = self.open_segment.take().unwrap_or_else(|| {
                        self.next_segment_id += 1;
                        self.next_segment_id - 1
                    });
                    let end = utterance.end_sample();
                    self.speech_stopped(segment_id, end, true);
                    self.queue_final(segment_id, utterance);
                }
            }
        }
    }

    /// `speech_stopped` for clients that asked for VAD events.
    fn speech_stopped(&mut self, segment_id: u64, end_sample: u64, kept: bool) {
        if self.options.vad_events {
            let end = round_ms(end_sample as f64 / f64::from(TARGET_SAMPLE_RATE));
            self.outbox.push(ServerMessage::SpeechStopped {
                segment_id,
                end,
                kept,
            });
        }
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
