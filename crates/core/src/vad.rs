//! Utterance segmenter: 16 kHz mono audio in, utterance start / end events out.
//!
//! Each 16 ms frame is speech when earshot's neural detector scores it at or above
//! `speech_threshold` *and* its RMS passes the energy gate. An utterance opens after a short run
//! of speech frames (with `pre_roll_ms` of the audio before it, so the first word is never cut),
//! and ends after `silence_ms` of non-speech, keeping `tail_ms` of that silence. Utterances with
//! less voiced audio than `min_speech_ms` are discarded; utterances reaching
//! `max_utterance_s` are split between two words: in the gap between words that a decode of
//! the open utterance found ([`Segmenter::note_word_gaps`], fed by the session before the
//! maximum is reached), else at the quietest recent point. The rest stays open as the next
//! utterance, so a word is never cut in two when its neighbours' timestamps are known.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::audio::TARGET_SAMPLE_RATE;
use crate::config::VadConfig;

/// earshot works on 256-sample (16 ms) frames at 16 kHz.
pub const FRAME_SAMPLES: usize = 256;
const SAMPLES_PER_MS: u64 = TARGET_SAMPLE_RATE as u64 / 1000;
/// Consecutive speech frames needed to open an utterance: one loud click does not.
const ONSET_FRAMES: usize = 2;
/// How far before `max_utterance_s` the word boundaries are asked for (at most): time for a
/// decode of the open utterance to come back before the cut on a live stream.
const MAX_BOUNDARY_LEAD_S: f64 = 5.0;
/// A word gap is searched this far either side of its timestamps for its quietest frame.
const GAP_MARGIN_SAMPLES: u64 = TARGET_SAMPLE_RATE as u64 / 20;

/// A finished utterance, ready to decode.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// Sample index (16 kHz) of the first sample, from the start of the stream.
    pub start_sample: u64,
    pub samples: Vec<f32>,
    /// False when the utterance was cut at the maximum length while speech went on.
    pub speech_final: bool,
    /// RMS over the whole utterance; the filter rejects text decoded from near-silence.
    pub rms: f32,
    /// The audio between the end of the previous utterance (or the start of the stream) and
    /// this one's start, when the segmenter keeps it ([`Segmenter::keep_gaps`]) and it was
    /// no longer than asked; empty when this utterance goes on from the one before (a cut at
    /// the maximum length).
    pub lead: Option<Vec<f32>>,
}

impl Utterance {
    pub fn start_s(&self) -> f64 {
        self.start_sample as f64 / TARGET_SAMPLE_RATE as f64
    }
    pub fn end_s(&self) -> f64 {
        self.end_sample() as f64 / TARGET_SAMPLE_RATE as f64
    }
    /// Sample index (16 kHz) just past the last sample.
    pub fn end_sample(&self) -> u64 {
        self.start_sample + self.samples.len() as u64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// Speech began; the utterance's audio is available from `Segmenter::open_utterance`.
    Started { start_sample: u64 },
    /// The utterance ended and should be decoded.
    Ended(Utterance),
    /// The utterance ended with too little voiced audio to be speech.
    Discarded { start_sample: u64 },
}

/// Scores a 16 ms frame (256 samples at 16 kHz) for voice, 0.0–1.0. earshot's neural
/// detector is the product's; tests that drive the scheduler without recorded speech use
/// [`EnergyDetector`].
pub trait VoiceDetector: Send {
    fn voice_probability(&mut self, frame: &[f32]) -> f32;
}

impl VoiceDetector for earshot::Detector {
    fn voice_probability(&mut self, frame: &[f32]) -> f32 {
        self.predict_f32(frame)
    }
}

/// Makes one detector per session (a detector keeps state from frame to frame). Shared by
/// every session of a server, so it may hold a loaded model.
pub type DetectorFactory = Arc<dyn Fn() -> Box<dyn VoiceDetector> + Send + Sync>;

/// earshot's WebRTC-style neural model, built into the binary: the default detector.
pub fn earshot_detector() -> DetectorFactory {
    Arc::new(|| earshot::Detector::default_boxed())
}

/// A test double for the neural detector: a frame is voice when its RMS is at least 0.05, so
/// tests can write "speech" as a loud tone and silence as zeros and drive the segmenter and the
/// scheduler without recorded speech. Never used by the server.
pub struct EnergyDetector;

impl VoiceDetector for EnergyDetector {
    fn voice_probability(&mut self, frame: &[f32]) -> f32 {
        if rms(frame) >= 0.05 { 1.0 } else { 0.0 }
    }
}

/// [`EnergyDetector`] as a [`DetectorFactory`].
pub fn energy_detector() -> DetectorFactory {
    Arc::new(|| Box::new(EnergyDetector))
}

pub struct Segmenter {
    /// The server's settings; `cfg` is them with the session's own choices ([`Segmenter::tune`]).
    base: VadConfig,
    cfg: VadConfig,
    /// Utterances end only on `flush` or at the maximum length, never on silence.
    manual: bool,
    detector: Box<dyn VoiceDetector>,
    /// Samples waiting for a full frame.
    pending: Vec<f32>,
    /// Samples consumed into frames so far.
    consumed: u64,
    /// Recent audio kept while idle, to prepend when speech starts.
    pre_roll: VecDeque<f32>,
    pre_roll_cap: usize,
    onset_run: usize,
    open: Option<OpenUtterance>,
    /// File sessions: the audio since the last utterance ended ([`Segmenter::keep_gaps`]).
    gap: Option<GapAudio>,
}

/// The audio between two utterances, kept up to `cap` samples: a file's decode window joins
/// the two with it instead of silence.
struct GapAudio {
    cap: usize,
    samples: Vec<f32>,
    /// False once the gap outgrew `cap` (or was dropped): this gap is not given.
    whole: bool,
}

impl GapAudio {
    fn restart(&mut self, samples: Vec<f32>) {
        self.whole = samples.len() <= self.cap;
        self.samples = if self.whole { samples } else { Vec::new() };
    }

    fn extend(&mut self, frame: &[f32]) {
        if self.whole && self.samples.len() + frame.len() <= self.cap {
            self.samples.extend_from_slice(frame);
        } else {
            self.lose();
        }
    }

    /// This gap will not be given (too long, or its audio was dropped).
    fn lose(&mut self) {
        self.whole = false;
        self.samples = Vec::new();
    }

    /// The gap before an utterance that opened with its last `pre_roll` samples.
    fn lead(&mut self, pre_roll: usize) -> Option<Vec<f32>> {
        let mut samples = std::mem::take(&mut self.samples);
        let whole = std::mem::replace(&mut self.whole, true);
        (whole && samples.len() >= pre_roll).then(|| {
            samples.truncate(samples.len() - pre_roll);
            samples
        })
    }
}

struct OpenUtterance {
    start_sample: u64,
    samples: Vec<f32>,
    /// RMS of each frame of `samples`, for finding a quiet split point.
    frame_rms: Vec<f32>,
    voiced_samples: u64,
    silence_run: u64,
    /// The gaps between consecutive words that a decode of this utterance found: where a cut
    /// at the maximum length may fall.
    word_gaps: Vec<WordGap>,
    /// The gap before it, when gaps are kept.
    lead: Option<Vec<f32>>,
}

/// The place between two consecutive words, from a decode's timestamps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WordGap {
    /// Where the first word ends and the next begins (samples from the stream's start; the
    /// same sample when Whisper heard no pause).
    pub from: u64,
    pub to: u64,
    /// The first word ends a sentence or clause (`.`, `,`, `?`, …): the best place to cut.
    pub after_punctuation: bool,
}

impl WordGap {
    /// How good a place to cut: a pause Whisper heard (its length), better still after
    /// punctuation. Whisper's token timestamps are only good to about a tenth of a second,
    /// so a gap with no pause is the last resort.
    fn score(&self) -> f64 {
        let pause_s = (self.to.saturating_sub(self.from)) as f64 / f64::from(TARGET_SAMPLE_RATE);
        pause_s + if self.after_punctuation { 0.3 } else { 0.0 }
    }
}

impl Segmenter {
    /// A segmenter with earshot's detector.
    pub fn new(cfg: &VadConfig) -> Self {
        Self::with_detector(cfg, earshot::Detector::default_boxed())
    }

    pub fn with_detector(cfg: &VadConfig, detector: Box<dyn VoiceDetector>) -> Self {
        let pre_roll_cap =
            (cfg.pre_roll_ms * SAMPLES_PER_MS) as usize + ONSET_FRAMES * FRAME_SAMPLES;
        Self {
            base: cfg.clone(),
            cfg: cfg.clone(),
            manual: false,
            detector,
            pending: Vec::with_capacity(FRAME_SAMPLES),
            consumed: 0,
            pre_roll: VecDeque::with_capacity(pre_roll_cap + FRAME_SAMPLES),
            pre_roll_cap,
            onset_run: 0,
            open: None,
            gap: None,
        }
    }

    /// Keeps the audio between utterances, up to `max_s` seconds of it, and gives it with the
    /// next utterance ([`Utterance::lead`]). For file sessions, whose decode windows join
    /// utterances: in noise, Whisper hears a word better with the real audio around it.
    pub fn keep_gaps(&mut self, max_s: f64) {
        let cap = (max_s.max(0.0) * f64::from(TARGET_SAMPLE_RATE)) as usize;
        self.gap = Some(GapAudio {
            cap,
            samples: Vec::new(),
            whole: self.consumed == 0 && self.open.is_none(),
        });
    }

    /// Forgets the open utterance and the audio waiting before one (nothing is emitted).
    pub fn discard(&mut self) {
        self.open = None;
        self.pre_roll.clear();
        self.onset_run = 0;
        if let Some(gap) = self.gap.as_mut() {
            gap.lose();
        }
    }

    /// A session's own end-of-utterance silence and speech threshold (`None`: the server's),
    /// and whether only `flush` ends an utterance. Applies from the next frame.
    pub fn tune(&mut self, silence_ms: Option<u64>, speech_threshold: Option<f64>, manual: bool) {
        self.cfg.silence_ms = silence_ms.unwrap_or(self.base.silence_ms);
        self.cfg.speech_threshold = speech_threshold.unwrap_or(self.base.speech_threshold);
        self.manual = manual;
    }

    /// Feeds 16 kHz mono samples of any count; appends the events they cause.
    pub fn push(&mut self, samples: &[f32], events: &mut Vec<VadEvent>) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME_SAMPLES - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == FRAME_SAMPLES {
                let frame = std::mem::take(&mut self.pending);
                self.process_frame(&frame, events);
                self.pending = frame;
                self.pending.clear();
            }
        }
    }

    /// Every utterance of `audio`, segmented whole and flushed at its end (benchmarks and
    /// tests; a session pushes as audio arrives and reads the events).
    pub fn utterances(mut self, audio: &[f32]) -> Vec<Utterance> {
        let mut events = Vec::new();
        self.push(audio, &mut events);
        self.flush(&mut events);
        events
            .into_iter()
            .filter_map(|e| match e {
                VadEvent::Ended(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    /// Ends the open utterance now (client `flush`, or end of stream).
    pub fn flush(&mut self, events: &mut Vec<VadEvent>) {
        if let Some(open) = self.open.as_mut() {
            open.samples.extend_from_slice(&self.pending);
            if open.silence_run > 0 {
                // Part of the silence under way: trimmed like it, so the final's audio is the
                // same as `pending_final` promised.
                open.silence_run += self.pending.len() as u64;
            }
            self.consumed += self.pending.len() as u64;
            self.pending.clear();
        }
        self.close(true, events);
        self.onset_run = 0;
    }

    /// The audio of the utterance being spoken, if one is open: (start sample, samples).
    pub fn open_utterance(&self) -> Option<(u64, &[f32])> {
        self.open
            .as_ref()
            .map(|o| (o.start_sample, o.samples.as_slice()))
    }

    /// The audio this utterance's final will have if the silence now under way lasts: speech
    /// plus `tail_ms`. Available once the trailing silence reached `tail_ms`, so a decode can
    /// start before `silence_ms` has passed (the result is used if no speech resumes).
    pub fn pending_final(&self) -> Option<(u64, &[f32])> {
        let open = self.open.as_ref()?;
        let tail = self.cfg.tail_ms * SAMPLES_PER_MS;
        // With manual turns silence ends nothing: a decode started on it would be wasted.
        if self.manual
            || open.silence_run < tail.max(1)
            || open.voiced_samples < self.cfg.min_speech_ms * SAMPLES_PER_MS
        {
            return None;
        }
        let keep = open.samples.len() - (open.silence_run - tail) as usize;
        Some((open.start_sample, &open.samples[..keep]))
    }

    /// Samples received so far (16 kHz), including those still waiting for a full frame.
    pub fn position(&self) -> u64 {
        self.consumed + self.pending.len() as u64
    }

    /// Whether the open utterance is close enough to `max_utterance_s` that it will be cut
    /// soon: the time to find its word boundaries (a third of the maximum, at most 5 s, ahead).
    pub fn nearing_max_length(&self) -> bool {
        let Some(open) = self.open.as_ref() else {
            return false;
        };
        let lead = (self.cfg.max_utterance_s / 3.0).min(MAX_BOUNDARY_LEAD_S);
        open.samples.len() as f64
            >= (self.cfg.max_utterance_s - lead) * f64::from(TARGET_SAMPLE_RATE)
    }

    /// Where the words of the open utterance starting at `start_sample` lie, from a decode of
    /// it: the gaps between its consecutive words (after the last word the decoded audio
    /// ended, perhaps mid-word: no gap there) are the places a cut at the maximum length may
    /// fall. Ignored when that utterance is no longer the open one.
    pub fn note_word_gaps(&mut self, start_sample: u64, gaps: Vec<WordGap>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.start_sample == start_sample {
            open.word_gaps = gaps;
        }
    }

    fn process_frame(&mut self, frame: &[f32], events: &mut Vec<VadEvent>) {
        let rms = rms(frame);
        let score = self.detector.voice_probability(frame);
        let is_speech = f64::from(score) >= self.cfg.speech_threshold
            && f64::from(rms) >= self.cfg.energy_threshold;
        self.consumed += FRAME_SAMPLES as u64;

        match self.open.as_mut() {
            Some(open) => {
                open.samples.extend_from_slice(frame);
                open.frame_rms.push(rms);
                if is_speech {
                    open.voiced_samples += FRAME_SAMPLES as u64;
                    open.silence_run = 0;
                } else {
                    open.silence_run += FRAME_SAMPLES as u64;
                }
                if !self.manual && open.silence_run >= self.cfg.silence_ms * SAMPLES_PER_MS {
                    self.close(true, events);
                } else if open.samples.len() as f64
                    >= self.cfg.max_utterance_s * f64::from(TARGET_SAMPLE_RATE)
                {
                    self.split_between_words(events);
                }
            }
            None => {
                if let Some(gap) = self.gap.as_mut() {
                    gap.extend(frame);
                }
                self.pre_roll.extend(frame.iter().copied());
                while self.pre_roll.len() > self.pre_roll_cap {
                    self.pre_roll.pop_front();
                }
                self.onset_run = if is_speech { self.onset_run + 1 } else { 0 };
                if self.onset_run >= ONSET_FRAMES {
                    self.open_from_pre_roll(events);
                }
            }
        }
    }

    fn open_from_pre_roll(&mut self, events: &mut Vec<VadEvent>) {
        let samples: Vec<f32> = self.pre_roll.drain(..).collect();
        let start_sample = self.consumed - samples.len() as u64;
        let frame_rms = samples.chunks(FRAME_SAMPLES).map(rms).collect();
        let lead = self.gap.as_mut().and_then(|gap| gap.lead(samples.len()));
        self.open = Some(OpenUtterance {
            start_sample,
            voiced_samples: (ONSET_FRAMES * FRAME_SAMPLES) as u64,
            silence_run: 0,
            samples,
            frame_rms,
            word_gaps: Vec::new(),
            lead,
        });
        self.onset_run = 0;
        events.push(VadEvent::Started { start_sample });
    }

    /// Ends the open utterance, trimming trailing silence beyond `tail_ms`.
    fn close(&mut self, speech_final: bool, events: &mut Vec<VadEvent>) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        let tail = self.cfg.tail_ms * SAMPLES_PER_MS;
        let excess_silence = open.silence_run.saturating_sub(tail) as usize;
        let keep = open.samples.len().saturating_sub(excess_silence);
        // The trimmed silence becomes the next utterance's pre-roll.
        let trimmed = open.samples.split_off(keep);
        self.pre_roll.clear();
        let from = trimmed.len().saturating_sub(self.pre_roll_cap);
        self.pre_roll.extend(trimmed[from..].iter().copied());

        if open.voiced_samples < self.cfg.min_speech_ms * SAMPLES_PER_MS {
            if let Some(gap) = self.gap.as_mut() {
                // Too short to be an utterance: part of the gap after all.
                match open.lead {
                    Some(mut audio) => {
                        audio.extend_from_slice(&open.samples);
                        audio.extend_from_slice(&trimmed);
                        gap.restart(audio);
                    }
                    None => gap.lose(),
                }
            }
            events.push(VadEvent::Discarded {
                start_sample: open.start_sample,
            });
            return;
        }
        if let Some(gap) = self.gap.as_mut() {
            gap.restart(trimmed);
        }
        events.push(VadEvent::Ended(Utterance {
            start_sample: open.start_sample,
            rms: rms(&open.samples),
            samples: open.samples,
            speech_final,
            lead: open.lead,
        }));
    }

    /// Cuts a too-long utterance between two words, ends the first part and keeps the rest
    /// open as a new utterance. The cut lies in the last half (at most the last 10 s): in the
    /// best word gap known there ([`WordGap::score`]), at its quietest frame; without one, at
    /// the quietest frame of the last third (at most the last 5 s).
    fn split_between_words(&mut self, events: &mut Vec<VadEvent>) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let frames = open.frame_rms.len();
        let frame_of =
            |sample: u64| (sample.saturating_sub(open.start_sample) as usize) / FRAME_SAMPLES;
        let ten_s = (10 * TARGET_SAMPLE_RATE as usize) / FRAME_SAMPLES;
        let gap_window_first = frames - (frames / 2).min(ten_s).max(1);
        // The best-scoring gap in the window (the latest of equals), searched a little either
        // side of its timestamps for its quietest frame.
        let in_gap = open
            .word_gaps
            .iter()
            .filter(|gap| frame_of(gap.from) >= gap_window_first)
            .max_by(|a, b| a.score().total_cmp(&b.score()))
            .map(|gap| {
                let first =
                    frame_of(gap.from.saturating_sub(GAP_MARGIN_SAMPLES)).max(gap_window_first);
                let last = frame_of(gap.to + GAP_MARGIN_SAMPLES).min(frames.saturating_sub(2));
                (first, last.max(first) + 1)
            });
        let (first, end) = in_gap.unwrap_or_else(|| {
            let window = (frames / 3).min((5 * TARGET_SAMPLE_RATE as usize) / FRAME_SAMPLES);
            (frames - window.max(1), frames.saturating_sub(1))
        });
        tracing::debug!(
            start_sample = open.start_sample,
            between_words = in_gap.is_some(),
            known_gaps = open.word_gaps.len(),
            "utterance at its maximum length is cut"
        );
        let quietest = quietest_frame(&open.frame_rms, first, end).unwrap_or(frames - 1);
        let cut = (quietest * FRAME_SAMPLES).min(open.samples.len());
        let rest = open.samples.split_off(cut);
        let rest_rms = open.frame_rms.split_off(quietest.min(open.frame_rms.len()));
        let rest_start = open.start_sample + cut as u64;
        let first_part = Utterance {
            start_sample: open.start_sample,
            rms: rms(&open.samples),
            samples: std::mem::take(&mut open.samples),
            speech_final: false,
            lead: open.lead.take(),
        };
        if self.gap.is_some() {
            open.lead = Some(Vec::new());
        }
        open.start_sample = rest_start;
        open.samples = rest;
        open.frame_rms = rest_rms;
        open.voiced_samples = open.samples.len() as u64;
        open.word_gaps.clear();
        events.push(VadEvent::Ended(first_part));
        events.push(VadEvent::Started {
            start_sample: rest_start,
        });
    }
}

/// The quietest frame in `first..end`, smoothed over three frames so one quiet frame inside
/// a word does not win.
fn quietest_frame(frame_rms: &[f32], first: usize, end: usize) -> Option<usize> {
    let frames = frame_rms.len();
    let smoothed = |i: usize| {
        frame_rms[i.saturating_sub(1)..=(i + 1).min(frames - 1)]
            .iter()
            .sum::<f32>()
    };
    (first..end.min(frames)).min_by(|&a, &b| smoothed(a).total_cmp(&smoothed(b)))
}

pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f32 = samples.iter().map(|s| s * s).sum();
    (sum / samples.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VadConfig {
        VadConfig::default()
    }

    fn run(seg: &mut Segmenter, audio: &[f32], chunk: usize) -> Vec<VadEvent> {
        let mut events = Vec::new();
        for c in audio.chunks(chunk) {
            seg.push(c, &mut events);
        }
        events
    }

    #[test]
    fn silence_opens_nothing() {
        let mut seg = Segmenter::new(&cfg());
        let events = run(&mut seg, &vec![0.0; 16000 * 10], 320);
        assert!(events.is_empty(), "{events:?}");
        assert!(seg.open_utterance().is_none());
        assert_eq!(seg.position(), 160_000);
    }

    #[test]
    fn quiet_audio_is_gated_by_energy() {
        // A tone far below the energy threshold never opens an utterance, whatever the detector says.
        let tone: Vec<f32> = (0..16000 * 3)
            .map(|i| 0.005 * (i as f32 * 0.05).sin())
            .collect();
        let mut seg = Segmenter::new(&cfg());
        assert!(run(&mut seg, &tone, 160).is_empty());
    }

    /// 8 s of "speech" for the energy test double: a loud tone with no pause, quieter (still
    /// speech) from 5.5 to 5.7 s, so that is where a cut without word gaps falls.
    fn unbroken_speech() -> Vec<f32> {
        (0..16000 * 8)
            .map(|i| {
                let t = i as f32 / 16000.0;
                let amplitude = if (5.5..5.7).contains(&t) { 0.1 } else { 0.4 };
                amplitude * (i as f32 * 0.05).sin()
            })
            .collect()
    }

    fn split_cfg() -> VadConfig {
        VadConfig {
            max_utterance_s: 6.0,
            silence_ms: 2000,
            ..VadConfig::default()
        }
    }

    /// Feeds `audio` in 20 ms chunks; once the open utterance nears its maximum length,
    /// notes `gaps` (from, to in seconds, after punctuation) as a decode of it would. Returns
    /// the first part cut off.
    fn first_cut(audio: &[f32], gaps: &[(f64, f64, bool)]) -> Utterance {
        let mut seg = Segmenter::with_detector(&split_cfg(), Box::new(EnergyDetector));
        let mut events = Vec::new();
        let mut noted = false;
        for chunk in audio.chunks(320) {
            seg.push(chunk, &mut events);
            if !noted && seg.nearing_max_length() {
                let (start, _) = seg.open_utterance().expect("open");
                seg.note_word_gaps(start, word_gaps(gaps));
                noted = true;
            }
            if let Some(VadEvent::Ended(u)) =
                events.iter().find(|e| matches!(e, VadEvent::Ended(_)))
            {
                return u.clone();
            }
        }
        panic!("no cut in {events:?}");
    }

    fn word_gaps(gaps: &[(f64, f64, bool)]) -> Vec<WordGap> {
        let at = |s: f64| (s * 16000.0) as u64;
        gaps.iter()
            .map(|&(from, to, after_punctuation)| WordGap {
                from: at(from),
                to: at(to),
                after_punctuation,
            })
            .collect()
    }

    #[test]
    fn without_word_gaps_the_cut_falls_at_the_quietest_point() {
        let cut = first_cut(&unbroken_speech(), &[]);
        assert!(!cut.speech_final);
        assert!(
            (5.45..5.75).contains(&cut.end_s()),
            "cut at {}",
            cut.end_s()
        );
    }

    #[test]
    fn a_cut_at_the_maximum_length_falls_in_the_best_word_gap() {
        // Not at the quieter 5.5 s inside a word: in the pause Whisper heard at 4.1–4.2 s
        // (± 50 ms), the longest of the gaps in the last half.
        let gaps = [
            (2.0, 2.0, false),
            (3.5, 3.55, false),
            (4.1, 4.2, false),
            (4.4, 4.4, false),
        ];
        let cut = first_cut(&unbroken_speech(), &gaps);
        assert!(
            (4.03..=4.27).contains(&cut.end_s()),
            "cut at {}",
            cut.end_s()
        );
    }

    #[test]
    fn punctuation_makes_a_gap_the_better_place() {
        let gaps = [(3.5, 3.5, true), (4.1, 4.2, false)];
        let cut = first_cut(&unbroken_speech(), &gaps);
        assert!(
            (3.43..=3.57).contains(&cut.end_s()),
            "cut at {}",
            cut.end_s()
        );
    }

    #[test]
    fn word_gaps_in_the_first_half_are_not_used() {
        // A cut at 1 s would leave a 5 s remainder: the quietest recent point is used instead.
        let cut = first_cut(&unbroken_speech(), &[(1.0, 1.1, true)]);
        assert!(
            (5.45..5.75).contains(&cut.end_s()),
            "cut at {}",
            cut.end_s()
        );
    }

    #[test]
    fn word_gaps_of_another_utterance_are_ignored() {
        let mut seg = Segmenter::with_detector(&split_cfg(), Box::new(EnergyDetector));
        let mut events = Vec::new();
        seg.push(&unbroken_speech()[..16000 * 5], &mut events);
        let (start, _) = seg.open_utterance().expect("open");
        let gaps = word_gaps(&[(4.0, 4.1, false)]);
        seg.note_word_gaps(start + 1, gaps.clone());
        assert!(seg.open.as_ref().is_some_and(|o| o.word_gaps.is_empty()));
        seg.note_word_gaps(start, gaps.clone());
        assert_eq!(seg.open.as_ref().map(|o| o.word_gaps.clone()), Some(gaps));
    }

    /// Loud tone (speech to the energy detector) or a quiet one (a pause), `seconds` long.
    fn tone_of(seconds: f64, amplitude: f32) -> Vec<f32> {
        (0..(seconds * 16000.0) as usize)
            .map(|i| amplitude * (i as f32 * 0.05).sin())
            .collect()
    }

    #[test]
    fn kept_gaps_are_the_audio_between_utterances_blips_included() {
        let speech = |s| tone_of(s, 0.4);
        let pause = |s| tone_of(s, 0.002);
        let audio = [
            pause(0.5),
            speech(1.0),
            pause(1.2),
            speech(0.05), // a blip, too short for an utterance: part of the pause
            pause(1.3),
            speech(1.0),
            pause(6.0), // longer than the 4 s kept
            speech(1.0),
            pause(1.5),
        ]
        .concat();
        let mut seg = Segmenter::with_detector(&cfg(), Box::new(EnergyDetector));
        seg.keep_gaps(4.0);
        let mut events = Vec::new();
        for chunk in audio.chunks(320) {
            seg.push(chunk, &mut events);
        }
        seg.flush(&mut events);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, VadEvent::Discarded { .. }))
        );
        let utterances: Vec<&Utterance> = events
            .iter()
            .filter_map(|e| match e {
                VadEvent::Ended(u) => Some(u),
                _ => None,
            })
            .collect();
        assert_eq!(utterances.len(), 3, "{events:?}");
        let between = |a: &Utterance, b: &Utterance| {
            audio[a.end_sample() as usize..b.start_sample as usize].to_vec()
        };
        assert_eq!(
            utterances[0].lead.as_deref(),
            Some(&audio[..utterances[0].start_sample as usize])
        );
        let lead = utterances[1]
            .lead
            .as_ref()
            .expect("a pause of about 2 s is kept");
        assert_eq!(lead, &between(utterances[0], utterances[1]));
        assert!(lead.iter().any(|s| s.abs() > 0.1), "with the blip in it");
        assert_eq!(utterances[2].lead, None, "6 s is longer than kept");

        let plain = Segmenter::with_detector(&cfg(), Box::new(EnergyDetector));
        assert!(
            plain.utterances(&audio).iter().all(|u| u.lead.is_none()),
            "no gaps are kept unless asked"
        );
    }

    #[test]
    fn the_rest_of_a_cut_utterance_has_no_gap_before_it() {
        let mut seg = Segmenter::with_detector(&split_cfg(), Box::new(EnergyDetector));
        seg.keep_gaps(4.0);
        let cuts = seg.utterances(&unbroken_speech());
        assert_eq!(cuts.len(), 2);
        assert!(!cuts[0].speech_final);
        assert_eq!(cuts[1].lead.as_deref(), Some(&[][..]));
        assert_eq!(cuts[1].start_sample, cuts[0].end_sample());
    }

    #[test]
    fn rms_of_a_full_scale_square_is_one() {
        assert!((rms(&[1.0, -1.0, 1.0, -1.0]) - 1.0).abs() < 1e-6);
        assert_eq!(rms(&[]), 0.0);
    }
}
