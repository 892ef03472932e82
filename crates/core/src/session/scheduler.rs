//! The session's decode scheduler: finals first (at most one per worker in flight), then a
//! speculative final once a silence reaches `tail_ms`, then partials at `partial_interval_ms`,
//! the optional work only on an idle worker. A partial in flight is cancelled once its
//! utterance ended; finals are released in segment order whatever order they finish in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::Session;
use crate::audio::TARGET_SAMPLE_RATE;
use crate::protocol::ServerMessage;
use crate::stt::engine::DecodeOutcome;
use crate::stt::queue::Priority;
use crate::stt::{DecodeOptions, trimmed_audio_ctx};
use crate::vad::{Utterance, WordGap};

/// Partials are not worth decoding for less audio than this.
const MIN_PARTIAL_SAMPLES: usize = TARGET_SAMPLE_RATE as usize;

/// A decode job the session wants run.
pub struct Job {
    pub job_id: u64,
    pub audio: Arc<[f32]>,
    pub opts: DecodeOptions,
    /// Its place in the pool's queue.
    pub priority: Priority,
    /// Where its audio starts in the stream (s): what the previous text is measured against.
    pub(crate) start_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum JobKind {
    Partial,
    /// The open utterance's audio up to `tail_ms` into a silence: becomes the final if the
    /// silence lasts, so the final is ready soon after `silence_ms` instead of a decode later.
    Speculative,
    Final {
        speech_final: bool,
    },
    /// The open utterance, decoded with word timestamps as it nears `max_utterance_s`: where
    /// its words lie, so the cut falls between two of them (a partial too, when asked for).
    Boundary,
}

/// The speculative decode of the open utterance, if one was started.
pub(super) struct Speculation {
    pub(super) job_id: u64,
    pub(super) segment_id: u64,
    pub(super) start_sample: u64,
    pub(super) len: usize,
    /// The prompt it was decoded with: it stands for the final only if the final's would be the same.
    pub(super) prompt: Option<Arc<str>>,
    /// The outcome, once it arrived (kept until the utterance ends or speech resumes).
    pub(super) outcome: Option<DecodeOutcome>,
}

#[derive(Clone, Copy)]
pub(super) struct JobMeta {
    pub(super) kind: JobKind,
    pub(super) segment_id: u64,
    pub(super) start_s: f64,
    pub(super) end_s: f64,
    pub(super) rms: f32,
    pub(super) created: Instant,
}

impl Session {
    pub(super) fn cancel_stale_partial(&mut self) {
        // Only once the utterance has ended: cancelling at every short pause (as a first
        // version did) starved partials entirely on a loaded machine.
        if self.partial_in_flight
            && (self.open_segment.is_none() || !self.waiting.is_empty())
            && let Some(flag) = self.partial_cancel.take()
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn queue_final(&mut self, segment_id: u64, utterance: Utterance) {
        self.gather_for_revision(segment_id, &utterance);
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
        // A file session's utterance may join a decode window instead (merge.rs).
        let Some(utterance) = self.gather(job_id, utterance) else {
            return;
        };
        let opts = self.decode_options(seconds, true, None);
        self.waiting.push_back(Job {
            job_id,
            start_s: utterance.start_s(),
            audio: Arc::from(utterance.samples),
            opts,
            // Due from the moment the speech ended.
            priority: Priority::final_due(Instant::now()),
        });
    }

    /// Uses the speculative decode as this utterance's final when it decoded exactly this audio.
    pub(super) fn adopt_speculation(&mut self, segment_id: u64, utterance: &Utterance) -> bool {
        let prompt = self.prompt_at(utterance.start_s());
        let matches = self.speculation.as_ref().is_some_and(|s| {
            s.segment_id == segment_id
                && s.start_sample == utterance.start_sample
                && s.len == utterance.samples.len()
                && s.prompt == prompt
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

    pub(super) fn drop_speculation(&mut self) {
        if let Some(old) = self.speculation.take() {
            // Still in flight: its outcome finds no matching speculation and is ignored.
            if old.outcome.is_some() {
                self.jobs.remove(&old.job_id);
            }
        }
    }

    pub(super) fn decode_options(
        &self,
        seconds: f32,
        words: bool,
        partial_of: Option<u64>,
    ) -> DecodeOptions {
        let mut opts = self.decode_defaults.clone();
        self.choose_languages(&mut opts, partial_of);
        opts.audio_ctx = self
            .ctx_trim
            .map(|(margin, min)| trimmed_audio_ctx(f64::from(seconds), margin, min));
        opts.word_timestamps = words;
        if words && self.file {
            self.in_window(&mut opts);
        }
        opts
    }

    /// Makes `opts` a window decode: a file's window (merge.rs) or a live revision (revise.rs).
    /// Its words are split between its utterances by their DTW times, and nobody waits on it as
    /// on a live final, so it searches wider.
    pub(super) fn in_window(&self, opts: &mut DecodeOptions) {
        opts.aligned_words = true;
        opts.beam_size = self.window_beam_size;
    }

    /// The prompt of a decode of audio from `start_s`: the previous text when conditioning is
    /// on, then the session's own prompt (context.rs says why in that order).
    pub(super) fn prompt_at(&self, start_s: f64) -> Option<Arc<str>> {
        self.conditioning
            .prompt(self.decode_defaults.initial_prompt.as_ref(), start_s)
    }

    /// Finals in flight at once: one per worker, or one when each is prompted with the text
    /// of the one before (it must have been decoded first).
    fn final_slots(&self) -> usize {
        if self.conditioning.enabled() {
            1
        } else {
            self.max_finals_in_flight
        }
    }

    pub(super) fn new_job_id(&mut self) -> u64 {
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

    /// Whether a final is queued in the session but not yet handed to the pool.
    pub fn has_waiting_final(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether `next_job` would return something (without taking it).
    pub fn has_job(&self, worker_idle: bool) -> bool {
        if !self.waiting.is_empty() {
            return self.in_flight < self.final_slots();
        }
        self.boundary_due(worker_idle)
            || self.speculation_due(worker_idle)
            || self.partial_due(worker_idle)
            || self.revision_due(worker_idle)
    }

    /// Whether the open utterance nears its maximum length with no decode yet asked for to
    /// find its word gaps. A file's is required work (its feed waits for it: see
    /// [`boundary_pending`](Self::boundary_pending)); a live stream's is optional, on an idle
    /// worker, like a partial.
    pub(super) fn boundary_due(&self, worker_idle: bool) -> bool {
        let Some(segment_id) = self.open_segment else {
            return false;
        };
        self.boundary_for != Some(segment_id)
            && self.vad.nearing_max_length()
            && (self.file || self.optional_work_allowed(worker_idle))
    }

    /// Files: a boundary decode is due or in flight; the feed waits for it, so the cut at the
    /// maximum length knows where the words are (a live stream's audio does not wait).
    pub fn boundary_pending(&self) -> bool {
        self.file && (self.boundary_in_flight || self.boundary_due(true))
    }

    /// Optional work (speculation, partials) only runs on an idle worker and when this
    /// session has nothing else in flight, so it never delays a final.
    pub(super) fn optional_work_allowed(&self, worker_idle: bool) -> bool {
        worker_idle && self.in_flight == 0 && self.open_segment.is_some()
    }

    /// A file session whose utterances are decoded in windows never speculates: a speculative
    /// decode adopted as the final takes its utterance out of the window (it was the file's
    /// first utterance every time, and one or two more of each noisy mix), where it would hear
    /// the speech around it; and nobody waits on a file's final the way a live speaker does.
    pub(super) fn speculation_due(&self, worker_idle: bool) -> bool {
        if !self.optional_work_allowed(worker_idle) || self.windows.is_some() {
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

    pub(super) fn partial_due(&self, worker_idle: bool) -> bool {
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

    pub(super) fn take_job(&mut self) -> Option<Job> {
        if !self.waiting.is_empty() && self.in_flight < self.final_slots() {
            self.in_flight += 1;
            let mut job = self.waiting.pop_front();
            if let Some(job) = job.as_mut() {
                self.choose_languages(&mut job.opts, None);
                // Now, not when queued: the finals before it have been decoded by now.
                job.opts.initial_prompt = self.prompt_at(job.start_s);
            }
            tracing::debug!(job_id = job.as_ref().map(|j| j.job_id), "final decode job");
            return job;
        }
        if let Some(segment_id) = self.open_segment {
            if self.boundary_due(true) {
                return self.take_boundary_job(segment_id);
            }
            if self.speculation_due(true) || self.partial_due(true) {
                return self.take_open_job(segment_id);
            }
        }
        self.take_revision_job()
    }

    /// A speculative final or a partial of the open utterance.
    fn take_open_job(&mut self, segment_id: u64) -> Option<Job> {
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
        let priority = if speculate {
            Priority::final_due(Instant::now())
        } else {
            Priority::partial_due(self.last_partial_at)
        };
        let prompt = self.prompt_at(start_s);
        let kind = if speculate {
            self.drop_speculation();
            self.speculation = Some(Speculation {
                job_id,
                segment_id,
                start_sample,
                len: audio.len(),
                prompt: prompt.clone(),
                outcome: None,
            });
            JobKind::Speculative
        } else {
            self.partial_mark = audio.len();
            self.partial_in_flight = true;
            JobKind::Partial
        };
        // Near the maximum length partials also say where the words are (for the cut), which
        // takes the timestamps a draft skips.
        let nearing_max = self.vad.nearing_max_length();
        let mut opts = self.decode_options(
            seconds,
            speculate || nearing_max,
            (!speculate).then_some(segment_id),
        );
        opts.initial_prompt = prompt;
        if kind == JobKind::Partial {
            opts.draft = self.draft_partials && !nearing_max;
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
            priority,
            start_s,
        })
    }

    /// The open utterance's audio so far, decoded with word timestamps ([`JobKind::Boundary`]).
    fn take_boundary_job(&mut self, segment_id: u64) -> Option<Job> {
        let (start_sample, samples) = self.vad.open_utterance()?;
        let audio: Arc<[f32]> = Arc::from(samples);
        let start_s = start_sample as f64 / TARGET_SAMPLE_RATE as f64;
        let seconds = audio.len() as f32 / TARGET_SAMPLE_RATE as f32;
        let job_id = self.new_job_id();
        let mut opts = self.decode_options(seconds, true, Some(segment_id));
        opts.initial_prompt = self.prompt_at(start_s);
        // The cut goes in the longest pause between words. whisper.cpp's heuristic times show
        // the pauses (a segment's words end at its timestamp tokens); DTW's do not (a word's
        // end is cut at twice the median spacing, so in running speech every gap is nil and
        // the cut fell inside "an ill-disposed young man" under music at 0 dB).
        opts.aligned_words = false;
        // Only its word times are used, not its text: no need for a file window's beam.
        opts.beam_size = self.decode_defaults.beam_size;
        if !self.file {
            // A live stream's is stale once the utterance ended, like a partial.
            let flag = Arc::new(AtomicBool::new(false));
            opts.cancel = Some(Arc::clone(&flag));
            self.partial_cancel = Some(flag);
            self.partial_in_flight = true;
        }
        self.jobs.insert(
            job_id,
            JobMeta {
                kind: JobKind::Boundary,
                segment_id,
                start_s,
                end_s: start_s + f64::from(seconds),
                rms: crate::vad::rms(&audio),
                created: Instant::now(),
            },
        );
        self.boundary_for = Some(segment_id);
        self.boundary_in_flight = true;
        self.in_flight += 1;
        tracing::debug!(job_id, segment_id, seconds, "boundary decode job");
        Some(Job {
            job_id,
            opts,
            audio,
            priority: Priority::final_due(Instant::now()),
            start_s,
        })
    }

    /// Hands the segmenter the word positions a decode of the open utterance found.
    fn note_word_gaps(&mut self, meta: &JobMeta, transcript: &crate::stt::Transcript) {
        if self.open_segment != Some(meta.segment_id) || transcript.words.is_empty() {
            return;
        }
        let rate = f64::from(TARGET_SAMPLE_RATE);
        let at = |seconds: f64| ((meta.start_s + seconds.max(0.0)) * rate).round() as u64;
        let gaps = transcript
            .words
            .windows(2)
            .map(|pair| WordGap {
                from: at(pair[0].end),
                to: at(pair[1].start.max(pair[0].end)),
                after_punctuation: pair[0]
                    .word
                    .trim_end()
                    .ends_with(['.', ',', '?', '!', ';', ':', '。', '、', '…']),
            })
            .collect();
        let start_sample = (meta.start_s * rate).round() as u64;
        self.vad.note_word_gaps(start_sample, gaps);
    }

    /// Takes in a decode outcome; the events it releases are collected with `take_events`.
    pub fn on_outcome(&mut self, outcome: DecodeOutcome) {
        let Some(outcome) = self.revision_outcome(outcome) else {
            return; // a live revision window's (revise.rs): not one of the final slots
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(outcome) = self.window_outcome(outcome) else {
            return; // a file window's, split into its utterances' finals (merge.rs)
        };
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
                self.last_partial_at = Instant::now();
                self.partial_cancel = None;
                if let Some(meta) = self.jobs.get(&outcome.job_id)
                    && let Ok(t) = &outcome.result
                    && let Some(d) = t.detection
                    && self.open_segment == Some(meta.segment_id)
                {
                    self.partial_language = Some((meta.segment_id, d.language));
                }
                if let Some(meta) = self.jobs.remove(&outcome.job_id) {
                    if let Ok(transcript) = &outcome.result {
                        self.note_word_gaps(&meta, transcript);
                    }
                    let event = self.partial_event(&meta, outcome.result.as_ref().ok());
                    self.outbox.extend(event);
                }
            }
            JobKind::Boundary => {
                self.boundary_in_flight = false;
                if !self.file {
                    self.partial_in_flight = false;
                    self.last_partial_at = Instant::now();
                    self.partial_cancel = None;
                }
                if let Some(meta) = self.jobs.remove(&outcome.job_id)
                    && let Ok(transcript) = &outcome.result
                {
                    self.note_word_gaps(&meta, transcript);
                    let event = self.partial_event(&meta, Some(transcript));
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

    pub(super) fn release_in_order(&mut self) {
        while let Some(&next) = self.final_order.front() {
            match self.finished.remove(&next) {
                Some(events) => {
                    self.final_order.pop_front();
                    self.record_latency(&events);
                    self.outbox.extend(events);
                }
                None => break,
            }
        }
    }

    /// A released final's latency, from the arrival of its last word's audio.
    fn record_latency(&self, events: &[ServerMessage]) {
        let Some(clock) = self.arrivals.as_ref() else {
            return;
        };
        for event in events {
            if let ServerMessage::Final { words, end, .. } = event {
                let last_word = words.last().map_or(*end, |w| w.end);
                if let Some(arrived) = clock.arrival_of(last_word) {
                    crate::metrics::global().final_released(arrived.elapsed());
                }
            }
        }
    }

    /// Every final has been released and collected.
    pub fn is_drained(&self) -> bool {
        self.waiting.is_empty()
            && self.final_order.is_empty()
            && self.outbox.is_empty()
            && !self.revision_outstanding()
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
}
