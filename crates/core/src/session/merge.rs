//! File sessions: consecutive utterances decoded together in one window.
//!
//! Whisper's encoder pays for at least `stt.audio_ctx_min_s` of audio and every decode pays the
//! decoder's start, so a file's many short utterances cost more one by one than joined (JFK in
//! ~0.7× the decode time; docs/benchmarks.md, "File windows"), and each word hears more of the
//! speech around it: in noise 3–7 WER points from 10 to 20 s windows, and 2–3 more in white
//! noise from 20 to 60 s (docs/accuracy.md, "File windows longer than 30 s"). A window longer
//! than the model's 30 s is decoded by whisper.cpp in passes of up to 30 s, each starting where
//! the previous pass's last whole segment ended, so no pass starts mid-word, and each pass hears
//! a full 30 s. A file session (never a live one: its finals would wait for the window to fill)
//! gathers its utterances into a window of up to `stt.file_merge_s` seconds (60 by default, at
//! most [`MAX_WINDOW_S`]). Two neighbours are joined by the audio that was between them
//! when that pause lasted at most [`WindowJoin::pause_s`] (the segmenter keeps it,
//! [`crate::vad::Segmenter::keep_gaps`]): in noise Whisper hears a word better within the
//! real audio around it, and a word the detector missed in the pause is heard too. A longer
//! pause is replaced by [`WindowJoin::gap_s`] of silence, so Whisper hears a pause and the
//! words of neighbours stay apart. The window is decoded once, with word timestamps; each word
//! goes back to the utterance its midpoint is nearest (a pause is shared at its middle), and
//! every utterance becomes its own final (segment id, start, end, words, text) through the
//! usual filter and in-order release. That needs word times that follow the audio across the
//! joins: DTW timestamps (`stt.dtw_timestamps`); whisper.cpp's heuristic ones spread a segment
//! that spans a pause over it and are only safe in windows of up to 10 s joined by silence
//! ([`WindowJoin::HEURISTIC`]). When the decoder marks a window's word times doubtful (DTW's
//! path lost the audio), its words go whole segment by whole segment, by Whisper's timestamps
//! ([`owners_by_segment`]); where a segment holds speech of two utterances, the utterances are
//! queued again ([`redecode`]): in windows of up to 20 s if it was longer, else one by one.
//!
//! A window is handed to the decoder when the next utterance would not fit, when it has no room
//! left for any utterance, and when the stream ends or is flushed; so at most one window is
//! held back, and the file feed (which stops while a final waits for a decoder) stays bounded.
//! An utterance too long to share a window is decoded alone, as is a window of one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::Session;
use crate::audio::TARGET_SAMPLE_RATE;
use crate::protocol::Word;
use crate::stt::engine::DecodeOutcome;
use crate::stt::queue::Priority;
use crate::stt::{SttError, Transcript};
use crate::vad::Utterance;

/// How a file session's windows join two utterances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowJoin {
    /// Seconds of silence between two utterances whose pause is not kept.
    pub gap_s: f64,
    /// Pauses up to this long (s) keep the audio that was there; 0: none do.
    pub pause_s: f64,
}

impl WindowJoin {
    /// With DTW word times. Silence of 1 s: with 0.5 s, DTW ran a word before a gap (and its
    /// punctuation) past the gap's middle, into the next utterance; with 1 s every word of
    /// JFK ×6 in 20 s windows lands in its own utterance. Pauses of up to 3 s kept: 25 fewer
    /// word errors in 3162 words of speech in white noise and music at 0–10 dB SNR, and 10 s
    /// bought nothing more (docs/accuracy.md, "Windows that keep the pauses").
    pub const ALIGNED: Self = Self {
        gap_s: 1.0,
        pause_s: 3.0,
    };
    /// With whisper.cpp's heuristic word times (windows of at most 10 s): at 1 s of silence
    /// they put the first words after a gap in the utterance before it; at 0.5 s they do not.
    /// No pause is kept: they spread a segment that spans one over it.
    pub const HEURISTIC: Self = Self {
        gap_s: 0.5,
        pause_s: 0.0,
    };
}

/// The longest window: two minutes of a file's speech in one decode (four of whisper.cpp's
/// passes), so a long file still gives every worker windows to decode and its finals come out
/// as it goes.
const MAX_WINDOW_S: f64 = 120.0;

/// The longest window a doubtful window is decoded again in: long enough for the utterances to
/// hear each other, short enough for one pass (the 20 s default before 2026-12-07).
pub(super) const REDECODE_WINDOW_S: f64 = 20.0;

/// A window with less room than this left (after the gap) takes no more utterances: it is sent
/// at once instead of waiting for one that cannot fit. The VAD's shortest utterance (voiced
/// audio, pre-roll and tail) is about this long.
const MIN_ROOM_S: f64 = 1.0;

fn samples(seconds: f64) -> usize {
    (seconds * f64::from(TARGET_SAMPLE_RATE)).round() as usize
}

/// Where one utterance lies in a window's joined audio, in samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Placed {
    /// The utterance's final job (its meta and place in the release order).
    pub(super) job_id: u64,
    pub(super) offset: usize,
    pub(super) len: usize,
}

/// A window's joined audio and where each utterance lies in it.
#[derive(Debug)]
pub(super) struct Joined {
    pub(super) audio: Vec<f32>,
    pub(super) placed: Vec<Placed>,
}

/// What is ready for the decoder.
#[derive(Debug)]
pub(super) enum Ready {
    /// Two or more utterances joined.
    Window(Joined),
    /// A window of one: decoded as it would be without merging.
    Alone { job_id: u64, audio: Vec<f32> },
}

/// The gathering of one file session's utterances into windows.
#[derive(Debug)]
pub(super) struct Windows {
    /// Most audio in a window, gaps included, in samples.
    limit: usize,
    gap: usize,
    /// The window being gathered, in segment order.
    open: Vec<Part>,
    /// Its joined length so far, gaps included.
    open_len: usize,
    /// Windows with the decoder, by their decode job id: where their utterances lie, and the
    /// joined audio (to decode them one by one if the window's words cannot be placed).
    sent: HashMap<u64, (Vec<Placed>, Arc<[f32]>)>,
}

impl Windows {
    /// Windows of up to `max_s` seconds (at most [`MAX_WINDOW_S`]), utterances joined by
    /// `gap_s` of silence; `None` (one decode per utterance) for 0, a negative or a non-finite
    /// value, or one too short to hold two utterances.
    pub(super) fn new(max_s: f64, gap_s: f64) -> Option<Self> {
        let gap_s = if gap_s.is_finite() {
            gap_s.clamp(0.0, 5.0)
        } else {
            WindowJoin::ALIGNED.gap_s
        };
        if !max_s.is_finite() || max_s < gap_s + 2.0 * MIN_ROOM_S {
            return None;
        }
        Some(Self {
            limit: samples(max_s.min(MAX_WINDOW_S)),
            gap: samples(gap_s),
            open: Vec::new(),
            open_len: 0,
            sent: HashMap::new(),
        })
    }

    /// Takes an utterance (its final job id, audio, and the audio before it when the
    /// segmenter kept it): whatever it makes ready, in decode order. An utterance too long to
    /// share a window is given back after the open window.
    pub(super) fn add(
        &mut self,
        job_id: u64,
        audio: Vec<f32>,
        lead: Option<Vec<f32>>,
    ) -> (Vec<Ready>, Option<Vec<f32>>) {
        let mut ready = Vec::new();
        let joint = lead.as_ref().map_or(self.gap, Vec::len);
        if !self.open.is_empty() && self.open_len + joint + audio.len() > self.limit {
            ready.extend(self.seal());
        }
        if audio.len() + self.gap + samples(MIN_ROOM_S) > self.limit {
            return (ready, Some(audio));
        }
        if !self.open.is_empty() {
            self.open_len += joint;
        }
        self.open_len += audio.len();
        self.open.push(Part {
            job_id,
            audio,
            lead,
        });
        if self.open_len + self.gap + samples(MIN_ROOM_S) > self.limit {
            ready.extend(self.seal());
        }
        (ready, None)
    }

    /// The open window, if it holds anything.
    pub(super) fn seal(&mut self) -> Option<Ready> {
        self.open_len = 0;
        let mut open = std::mem::take(&mut self.open);
        if open.len() <= 1 {
            return open.pop().map(|part| Ready::Alone {
                job_id: part.job_id,
                audio: part.audio,
            });
        }
        Some(Ready::Window(join(&open, self.gap)))
    }

    /// Remembers where a window sent as decode job `job_id` put its utterances.
    pub(super) fn sent(&mut self, job_id: u64, placed: Vec<Placed>, audio: Arc<[f32]>) {
        self.sent.insert(job_id, (placed, audio));
    }
}

/// One utterance of the window being gathered.
#[derive(Debug)]
pub(super) struct Part {
    /// Its final job.
    job_id: u64,
    audio: Vec<f32>,
    /// The audio between the utterance before it and this one, when the segmenter kept it.
    lead: Option<Vec<f32>>,
}

/// A window whose word times were doubtful, decoded again: a window longer than
/// [`REDECODE_WINDOW_S`] as windows of at most that (the same audio, pauses and gaps as they
/// were), where DTW's shorter path rarely piles words up; a shorter one an utterance at a time.
/// Each utterance in noise hears less alone than in any window (docs/accuracy.md, "File
/// windows longer than 30 s").
pub(super) fn redecode(audio: &[f32], placed: &[Placed]) -> Vec<Ready> {
    let own = |p: &Placed| audio[p.offset..p.offset + p.len].to_vec();
    let shorter =
        Windows::new(REDECODE_WINDOW_S, 0.0).filter(|w| audio.len() > w.limit && placed.len() > 1);
    let Some(mut windows) = shorter else {
        return placed
            .iter()
            .map(|p| Ready::Alone {
                job_id: p.job_id,
                audio: own(p),
            })
            .collect();
    };
    let mut ready = Vec::new();
    let mut end_before = None;
    for p in placed {
        // What lay between this utterance and the one before, as the window had it.
        let lead = end_before.map(|end| audio[end..p.offset].to_vec());
        end_before = Some(p.offset + p.len);
        let (made, alone) = windows.add(p.job_id, own(p), lead);
        ready.extend(made);
        if let Some(audio) = alone {
            ready.push(Ready::Alone {
                job_id: p.job_id,
                audio,
            });
        }
    }
    ready.extend(windows.seal());
    ready
}

/// Utterances joined by the audio that was between them where it was kept, else by `gap`
/// samples of silence.
fn join(parts: &[Part], gap: usize) -> Joined {
    let mut audio = Vec::new();
    let mut placed = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            match &part.lead {
                Some(lead) => audio.extend_from_slice(lead),
                None => audio.resize(audio.len() + gap, 0.0),
            }
        }
        placed.push(Placed {
            job_id: part.job_id,
            offset: audio.len(),
            len: part.audio.len(),
        });
        audio.extend_from_slice(&part.audio);
    }
    Joined { audio, placed }
}

/// A window's transcript split back into one per utterance, or `None` when its words cannot be
/// placed (see [`owners`]). Each word's times are made relative to its utterance's audio. Text
/// is the words joined as Whisper's text joins them (words are split at the tokens that start
/// with a space); language and scores are the window's, except the mean log-probability, moved
/// by how much less (or more) sure the decoder was of this utterance's words than of the
/// window's. An utterance with no words gets an empty text (which the filter drops as `empty`,
/// as it would an utterance decoded alone to nothing).
pub(super) fn split(window: &Transcript, placed: &[Placed]) -> Option<Vec<(u64, Transcript)>> {
    let rate = f64::from(TARGET_SAMPLE_RATE);
    let mut words: Vec<Vec<Word>> = vec![Vec::new(); placed.len()];
    for (word, index) in window.words.iter().zip(owners(window, placed)?) {
        let p = placed[index];
        let len_s = p.len as f64 / rate;
        let offset_s = p.offset as f64 / rate;
        let start = (word.start - offset_s).clamp(0.0, len_s);
        words[index].push(Word {
            word: word.word.clone(),
            start,
            end: (word.end - offset_s).clamp(start, len_s),
            probability: word.probability,
        });
    }
    let window_confidence = mean_log_probability(&window.words);
    let parts = placed
        .iter()
        .zip(words)
        .map(|(p, words)| {
            let shift = match (mean_log_probability(&words), window_confidence) {
                (Some(own), Some(all)) => own - all,
                _ => 0.0,
            };
            let transcript = Transcript {
                text: words
                    .iter()
                    .map(|w| w.word.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                language: window.language.clone(),
                detection: window.detection,
                words,
                words_doubtful: false,
                segments: Vec::new(),
                avg_logprob: window.avg_logprob + shift,
                no_speech_prob: window.no_speech_prob,
                audio_ctx: window.audio_ctx,
            };
            (p.job_id, transcript)
        })
        .collect();
    Some(parts)
}

/// Which utterance each of the window's words belongs to, by index into `placed`: the one its
/// midpoint lies in, a gap shared at its middle. When the decoder marked the words' times
/// doubtful, whole segments are placed instead ([`owners_by_segment`]); `None` when they
/// cannot be either, and the window's utterances are decoded again.
fn owners(window: &Transcript, placed: &[Placed]) -> Option<Vec<usize>> {
    let rate = f64::from(TARGET_SAMPLE_RATE);
    // Where each utterance's share ends: the middle of the gap after it.
    let bounds: Vec<f64> = placed
        .windows(2)
        .map(|pair| (pair[0].offset + pair[0].len + pair[1].offset) as f64 / 2.0 / rate)
        .collect();
    let owner = |t: f64| bounds.iter().take_while(|&&b| t >= b).count();
    if window.words_doubtful {
        return owners_by_segment(window, placed, owner);
    }
    Some(
        window
            .words
            .iter()
            .map(|w| owner((w.start + w.end) / 2.0))
            .collect(),
    )
}

/// How much of another utterance's audio (s) a segment placed whole may span. Whisper's
/// timestamps in noise fall on whole seconds or so, a little past the speech they close.
const SEGMENT_OVERLAP_S: f64 = 1.0;

/// Places the window's words segment by segment, each whole segment with the utterance its
/// span's midpoint lies in (`owner` maps a time to it), when the words' own times are
/// doubtful. A pile-up of DTW's path marks words it could not place, but Whisper's text
/// itself is as good as the window heard it: of the noise bench's three doubtful windows (all
/// in white noise at 0 dB), the two placed so have 25 word errors fewer than when decoded again
/// in shorter windows (docs/accuracy.md, "Doubtful windows placed by their segments"). `None`
/// when the segments do not cover the words, go back to an earlier utterance, or span more
/// than [`SEGMENT_OVERLAP_S`] of another utterance's audio.
fn owners_by_segment(
    window: &Transcript,
    placed: &[Placed],
    owner: impl Fn(f64) -> usize,
) -> Option<Vec<usize>> {
    let total: usize = window.segments.iter().map(|s| s.words).sum();
    if window.segments.is_empty() || total != window.words.len() {
        return None;
    }
    let rate = f64::from(TARGET_SAMPLE_RATE);
    let mut owners = Vec::with_capacity(total);
    let mut previous = 0;
    for segment in window.segments.iter().filter(|s| s.words > 0) {
        let index = owner((segment.start + segment.end) / 2.0);
        let spans_another = placed.iter().enumerate().any(|(i, p)| {
            let (from, to) = (p.offset as f64 / rate, (p.offset + p.len) as f64 / rate);
            let overlap = segment.end.min(to) - segment.start.max(from);
            i != index && overlap > SEGMENT_OVERLAP_S
        });
        if index < previous || spans_another {
            tracing::debug!(
                ?segment,
                "a segment of a doubtful window cannot be placed whole"
            );
            return None;
        }
        previous = index;
        owners.extend(std::iter::repeat_n(index, segment.words));
    }
    tracing::debug!(
        segments = window.segments.len(),
        "a doubtful window's words placed by their segments"
    );
    Some(owners)
}

/// The mean natural log of the words' probabilities; `None` without words.
fn mean_log_probability(words: &[Word]) -> Option<f32> {
    if words.is_empty() {
        return None;
    }
    let sum: f32 = words.iter().map(|w| w.probability.max(1e-6).ln()).sum();
    Some(sum / words.len() as f32)
}

/// The same failure for each utterance of a failed window.
fn again(error: &SttError) -> SttError {
    match error {
        SttError::EmptyAudio => SttError::EmptyAudio,
        SttError::PoolClosed => SttError::PoolClosed,
        SttError::Cancelled => SttError::Cancelled,
        SttError::Decode(reason) => SttError::Decode(reason.clone()),
        other => SttError::Decode(other.to_string()),
    }
}

impl Session {
    /// Marks a file session: its utterances are decoded together in windows of up to `max_s`
    /// seconds (`stt.file_merge_s`; 0 = one decode each), joined as `join` says
    /// ([`WindowJoin::ALIGNED`] with DTW word times, [`WindowJoin::HEURISTIC`] without). Never
    /// for live sessions, whose finals would wait for the window to fill.
    pub fn merge_file_windows(&mut self, max_s: f64, join: WindowJoin) {
        self.file = true;
        self.windows = Windows::new(max_s, join.gap_s);
        if self.windows.is_some() && join.pause_s > 0.0 {
            self.vad.keep_gaps(join.pause_s);
        }
    }

    /// `queue_final`'s hook: a file session's utterance joins the open window (its final is
    /// already in the release order) and `None` is returned; otherwise it is given back to be
    /// queued alone.
    pub(super) fn gather(&mut self, job_id: u64, utterance: Utterance) -> Option<Utterance> {
        let Some(windows) = self.windows.as_mut() else {
            return Some(utterance);
        };
        let Utterance {
            start_sample,
            samples,
            speech_final,
            rms,
            lead,
        } = utterance;
        let (ready, alone) = windows.add(job_id, samples, lead);
        for r in ready {
            self.queue_ready(r);
        }
        alone.map(|samples| Utterance {
            start_sample,
            samples,
            speech_final,
            rms,
            lead: None,
        })
    }

    /// Hands the window being gathered to the decoder (the stream ended or was flushed).
    pub(super) fn seal_window(&mut self) {
        if let Some(ready) = self.windows.as_mut().and_then(Windows::seal) {
            self.queue_ready(ready);
        }
    }

    fn queue_ready(&mut self, ready: Ready) {
        let (job_id, audio, start_s): (u64, Arc<[f32]>, f64) = match ready {
            Ready::Alone { job_id, audio } => (job_id, Arc::from(audio), self.start_of(job_id)),
            Ready::Window(joined) => {
                let start_s = joined
                    .placed
                    .first()
                    .map_or(0.0, |p| self.start_of(p.job_id));
                let job_id = self.new_job_id();
                tracing::debug!(
                    job_id,
                    utterances = joined.placed.len(),
                    seconds = joined.audio.len() as f64 / f64::from(TARGET_SAMPLE_RATE),
                    "file window"
                );
                let audio: Arc<[f32]> = Arc::from(joined.audio);
                if let Some(windows) = self.windows.as_mut() {
                    windows.sent(job_id, joined.placed, Arc::clone(&audio));
                }
                (job_id, audio, start_s)
            }
        };
        let seconds = audio.len() as f32 / TARGET_SAMPLE_RATE as f32;
        let opts = self.decode_options(seconds, true, None);
        self.waiting.push_back(super::scheduler::Job {
            job_id,
            start_s,
            audio,
            opts,
            priority: Priority::final_due(Instant::now()),
        });
    }

    /// Where an utterance queued as a final starts (s).
    fn start_of(&self, job_id: u64) -> f64 {
        self.jobs.get(&job_id).map_or(0.0, |m| m.start_s)
    }

    /// `on_outcome`'s hook: a window's outcome becomes its utterances' finals (`None`);
    /// any other outcome is given back.
    pub(super) fn window_outcome(&mut self, outcome: DecodeOutcome) -> Option<DecodeOutcome> {
        let sent = self
            .windows
            .as_mut()
            .and_then(|w| w.sent.remove(&outcome.job_id));
        let Some((placed, audio)) = sent else {
            return Some(outcome);
        };
        tracing::debug!(
            job_id = outcome.job_id,
            utterances = placed.len(),
            ok = outcome.result.is_ok(),
            decode_ms = outcome.decode.as_millis() as u64,
            "file window decoded"
        );
        let DecodeOutcome {
            result,
            queued,
            decode,
            ..
        } = outcome;
        let results: Vec<(u64, Result<Transcript, SttError>)> = match &result {
            Ok(window) => match split(window, &placed) {
                Some(parts) => parts
                    .into_iter()
                    .map(|(job_id, t)| (job_id, Ok(t)))
                    .collect(),
                None => {
                    let again = redecode(&audio, &placed);
                    tracing::debug!(
                        utterances = placed.len(),
                        decodes = again.len(),
                        "the window's word times are doubtful: its utterances decode again in shorter windows or one by one"
                    );
                    for ready in again {
                        self.queue_ready(ready);
                    }
                    return None;
                }
            },
            Err(e) => placed.iter().map(|p| (p.job_id, Err(again(e)))).collect(),
        };
        for (job_id, result) in results {
            if let Some(meta) = self.jobs.remove(&job_id) {
                let outcome = DecodeOutcome {
                    job_id,
                    result,
                    queued,
                    decode,
                };
                self.complete_final(meta, outcome);
            }
        }
        None
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{SttConfig, VadConfig};
    use crate::driver::{Driver, DriverConfig, Ending, Opening, Step};
    use crate::protocol::ServerMessage;
    use crate::session::scheduler::Job;
    use crate::session::{Stream, default_options};
    use crate::stt::scripted::{Script, ScriptedDecoder, describe};
    use crate::stt::{DecodeOptions, Decoder};
    use crate::testing::{scripted_engine, silence, tone};

    const RATE: f64 = 16_000.0;
    const GAP_S: f64 = WindowJoin::ALIGNED.gap_s;

    /// The scripted decoder hearing each burst of tone as one word named by its length
    /// ("1.5s"), timed where it lies in the audio, as Whisper times the words of a window.
    pub(in crate::session) fn bursts(audio: &[f32], opts: &DecodeOptions) -> Transcript {
        let mut words = Vec::new();
        let mut start = None;
        let mut quiet = 0usize;
        for (i, s) in audio.iter().chain(&[0.0; 3200]).enumerate() {
            if s.abs() > 1e-4 {
                start.get_or_insert(i);
                quiet = 0;
            } else if let Some(first) = start {
                quiet += 1;
                // A fifth of a second of silence ends a burst.
                if quiet == 3200 {
                    let end = i + 1 - quiet;
                    words.push(Word {
                        word: format!("{:.1}s", (end - first) as f64 / RATE),
                        start: first as f64 / RATE,
                        end: end as f64 / RATE,
                        probability: 0.9,
                    });
                    start = None;
                }
            }
        }
        let mut t = describe(audio, opts);
        t.text = words
            .iter()
            .map(|w| w.word.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        t.words = words;
        t
    }

    fn script() -> Arc<Script> {
        Script::new().answer(|a, o| Ok(bursts(a, o))).shared()
    }

    /// A file session (merging up to `merge_s`) over `script`, one worker.
    fn file_stream(script: &Arc<Script>, merge_s: f64) -> Stream {
        let stt = SttConfig::default();
        let engine = scripted_engine(script, stt.clone(), VadConfig::default());
        let mut opts = default_options(&stt, false);
        opts.partials = false;
        let mut s = engine.stream("file".into(), opts).expect("valid options");
        s.session.merge_file_windows(merge_s, WindowJoin::ALIGNED);
        s
    }

    pub(in crate::session) fn decode(script: &Arc<Script>, job: &Job) -> DecodeOutcome {
        let mut decoder = ScriptedDecoder::new(Arc::clone(script));
        DecodeOutcome {
            job_id: job.job_id,
            result: decoder.decode(&job.audio, &job.opts),
            queued: Duration::ZERO,
            decode: Duration::ZERO,
        }
    }

    pub(in crate::session) fn seconds(job: &Job) -> f64 {
        job.audio.len() as f64 / RATE
    }

    /// Tone bursts of these lengths, each followed by 1.2 s of silence (which ends it).
    pub(in crate::session) fn speech(lengths: &[f64]) -> Vec<f32> {
        lengths
            .iter()
            .flat_map(|&s| [tone(s), silence(1.2)].concat())
            .collect()
    }

    /// (segment id, text, start, end, words as (text, start, end)) of each final.
    pub(in crate::session) type FinalView = (u64, String, f64, f64, Vec<(String, f64, f64)>);

    pub(in crate::session) fn finals(events: &[ServerMessage]) -> Vec<FinalView> {
        events
            .iter()
            .filter_map(|e| match e {
                ServerMessage::Final {
                    segment_id,
                    text,
                    start,
                    end,
                    words,
                    ..
                } => Some((
                    *segment_id,
                    text.clone(),
                    *start,
                    *end,
                    words
                        .iter()
                        .map(|w| (w.word.clone(), w.start, w.end))
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Runs a whole file through a session by hand: every job decoded by `script` as soon as
    /// it is there; the events and the seconds of audio of each decode.
    fn transcribe(
        script: &Arc<Script>,
        merge_s: f64,
        audio: &[f32],
    ) -> (Vec<ServerMessage>, Vec<f64>) {
        let mut s = file_stream(script, merge_s);
        let session = &mut s.session;
        let mut events = Vec::new();
        let mut decodes = Vec::new();
        let mut run = |session: &mut Session| {
            while let Some(job) = session.next_job(false) {
                decodes.push(seconds(&job));
                session.on_outcome(decode(script, &job));
                events.extend(session.take_events());
            }
        };
        for chunk in audio.chunks(8000) {
            session.push_samples(chunk);
            run(session);
        }
        session.finish();
        run(session);
        assert!(session.is_drained());
        (events, decodes)
    }

    fn placed(job_id: u64, offset_s: f64, len_s: f64) -> Placed {
        Placed {
            job_id,
            offset: samples(offset_s),
            len: samples(len_s),
        }
    }

    #[test]
    fn a_file_window_searches_with_the_window_beam() {
        let stt = SttConfig::default();
        assert_ne!(stt.beam_size, stt.window_beam_size, "the defaults differ");
        let script = script();
        let (_, decodes) = transcribe(&script, 60.0, &speech(&[2.0, 3.0, 2.0]));
        assert_eq!(decodes.len(), 1, "one window");
        let calls = script.calls();
        assert_eq!(calls[0].beam_size, stt.window_beam_size);
    }

    /// With a worker idle after every tenth of a second, a live session would decode each
    /// utterance speculatively once its silence reached the tail; a file session must not, or
    /// the speculation becomes the final and the utterance leaves the window.
    #[test]
    fn a_file_session_never_speculates_so_every_utterance_shares_the_window() {
        let script = script();
        let mut s = file_stream(&script, 60.0);
        let session = &mut s.session;
        let (mut events, mut decodes) = (Vec::new(), Vec::new());
        let mut run = |session: &mut Session| {
            while let Some(job) = session.next_job(true) {
                decodes.push(seconds(&job));
                session.on_outcome(decode(&script, &job));
                events.extend(session.take_events());
            }
        };
        for chunk in speech(&[2.0, 3.0, 2.0]).chunks(1600) {
            session.push_samples(chunk);
            run(session);
        }
        session.finish();
        run(session);
        assert!(session.is_drained());
        assert_eq!(finals(&events).len(), 3, "{events:?}");
        assert_eq!(decodes.len(), 1, "one window and nothing else: {decodes:?}");
    }

    #[test]
    fn merge_gathers_utterances_up_to_the_limit() {
        let mut w = Windows::new(30.0, GAP_S).unwrap();
        let mut sent = Vec::new();
        for id in 0..12 {
            let (ready, alone) = w.add(id, silence(5.0), None);
            assert!(alone.is_none());
            sent.extend(ready);
        }
        sent.extend(w.seal());
        let shapes: Vec<Vec<(u64, f64)>> = sent
            .iter()
            .map(|r| match r {
                Ready::Window(j) => j
                    .placed
                    .iter()
                    .map(|p| (p.job_id, p.offset as f64 / RATE))
                    .collect(),
                Ready::Alone { .. } => panic!("five of 5 s fit in 30 s"),
            })
            .collect();
        // Five of 5 s with four gaps of 1 s make 29 s; a sixth would not fit, nor would
        // anything in the last second, so the window goes at once.
        let five: Vec<(u64, f64)> = (0..5).map(|i| (i, i as f64 * (5.0 + GAP_S))).collect();
        assert_eq!(shapes[0], five);
        assert_eq!(
            shapes[1].iter().map(|p| p.0).collect::<Vec<_>>(),
            [5, 6, 7, 8, 9]
        );
        assert_eq!(shapes[2].iter().map(|p| p.0).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(shapes.len(), 3);
        let Ready::Window(first) = &sent[0] else {
            unreachable!()
        };
        assert_eq!(first.audio.len(), samples(25.0 + 4.0 * GAP_S));
    }

    #[test]
    fn merge_stops_adding_when_the_next_would_not_fit() {
        let mut w = Windows::new(28.0, GAP_S).unwrap();
        assert!(w.add(0, silence(20.0), None).0.is_empty());
        let (ready, alone) = w.add(1, silence(8.0), None);
        assert!(alone.is_none());
        assert!(
            matches!(&ready[..], [Ready::Alone { job_id: 0, .. }]),
            "20 + 1 + 8 > 28: the first goes, as a window of one"
        );
        assert!(w.add(2, silence(7.0), None).0.is_empty(), "8 + 1 + 7 fits");
        assert!(matches!(w.seal(), Some(Ready::Window(j)) if j.placed.len() == 2));
        assert!(w.seal().is_none());
    }

    #[test]
    fn merge_leaves_a_long_utterance_alone() {
        let mut w = Windows::new(28.0, GAP_S).unwrap();
        assert!(w.add(0, silence(3.0), None).0.is_empty());
        let (ready, alone) = w.add(1, silence(26.5), None);
        assert!(
            matches!(&ready[..], [Ready::Alone { job_id: 0, .. }]),
            "the open window goes first"
        );
        assert_eq!(alone.map(|a| a.len()), Some(samples(26.5)));
        assert!(w.seal().is_none(), "the long one was not kept");
    }

    #[test]
    fn merge_is_off_for_zero_or_nonsense() {
        assert!(Windows::new(0.0, GAP_S).is_none());
        assert!(Windows::new(-3.0, GAP_S).is_none());
        assert!(Windows::new(f64::NAN, GAP_S).is_none());
        assert!(
            Windows::new(1.0, GAP_S).is_none(),
            "too short for two utterances"
        );
        let w = Windows::new(600.0, GAP_S).unwrap();
        assert_eq!(w.limit, samples(MAX_WINDOW_S), "never beyond two minutes");
    }

    #[test]
    fn merge_splits_words_by_their_midpoint_back_to_their_utterances() {
        // Three utterances of 2 s, 3 s and 1 s joined with 0.5 s gaps: at 0, 2.5 and 6.0 s.
        let places = [
            placed(7, 0.0, 2.0),
            placed(8, 2.5, 3.0),
            placed(9, 6.0, 1.0),
        ];
        let word = |w: &str, start: f64, end: f64, probability: f32| Word {
            word: w.into(),
            start,
            end,
            probability,
        };
        let window = Transcript {
            text: "And so, my fellow Americans".into(),
            language: "en".into(),
            words: vec![
                word("And", 0.1, 0.4, 0.9),
                word("so,", 0.5, 2.3, 0.9), // runs into the gap, midpoint 1.4: the first's
                word("my", 2.1, 2.7, 0.9),  // midpoint 2.4, past the gap's middle: the second's
                word("fellow", 4.0, 5.8, 0.9), // ends in the gap: clamped to the second's end
                word("Americans", 6.2, 6.9, 0.2),
            ],
            avg_logprob: -0.3,
            no_speech_prob: 0.01,
            ..Transcript::default()
        };
        let parts = split(&window, &places).unwrap();
        type View<'a> = (u64, &'a str, Vec<(f64, f64)>);
        let view: Vec<View> = parts
            .iter()
            .map(|(id, t)| {
                let times = t
                    .words
                    .iter()
                    .map(|w| {
                        (
                            (w.start * 100.0).round() / 100.0,
                            (w.end * 100.0).round() / 100.0,
                        )
                    })
                    .collect();
                (*id, t.text.as_str(), times)
            })
            .collect();
        assert_eq!(
            view,
            [
                (7, "And so,", vec![(0.1, 0.4), (0.5, 2.0)]),
                (8, "my fellow", vec![(0.0, 0.2), (1.5, 3.0)]),
                (9, "Americans", vec![(0.2, 0.9)]),
            ]
        );
        assert!(
            parts
                .iter()
                .all(|(_, t)| t.language == "en" && t.no_speech_prob == 0.01)
        );
        // The last utterance's word was much less sure than the window's: its score drops.
        assert!(parts[0].1.avg_logprob > -0.3 && parts[2].1.avg_logprob < -1.3);
    }

    #[test]
    fn doubtful_word_times_place_whole_segments_or_nothing() {
        // Two utterances of 10 s joined by a 1 s gap; DTW piled words up, so the words' own
        // times say nothing (all at 4 s here) and the segments decide.
        let places = [placed(1, 0.0, 10.0), placed(2, 11.0, 10.0)];
        let words = |n: usize| {
            (0..n)
                .map(|i| Word {
                    word: format!("w{i}"),
                    start: 4.0,
                    end: 4.0,
                    probability: 0.5,
                })
                .collect::<Vec<_>>()
        };
        let span =
            |start: f64, end: f64, words: usize| crate::stt::SegmentSpan { start, end, words };
        let window = |segments: Vec<crate::stt::SegmentSpan>| Transcript {
            words: words(segments.iter().map(|s| s.words).sum()),
            words_doubtful: true,
            segments,
            ..Transcript::default()
        };
        let texts = |parts: Option<Vec<(u64, Transcript)>>| {
            parts.map(|p| p.into_iter().map(|(_, t)| t.text).collect::<Vec<_>>())
        };
        // A segment that ends a second past its utterance, into the gap, is still its own.
        let placed_whole = window(vec![
            span(0.0, 6.0, 2),
            span(6.0, 11.0, 1),
            span(11.0, 20.0, 3),
        ]);
        assert_eq!(
            texts(split(&placed_whole, &places)),
            Some(vec!["w0 w1 w2".to_owned(), "w3 w4 w5".to_owned()])
        );
        // A segment that holds speech of both utterances cannot be placed whole.
        let straddling = window(vec![span(0.0, 6.0, 2), span(6.0, 15.0, 4)]);
        assert_eq!(texts(split(&straddling, &places)), None);
        // Nor segments that go back to an earlier utterance, nor ones that miss words.
        let backwards = window(vec![span(12.0, 20.0, 2), span(1.0, 5.0, 2)]);
        assert_eq!(texts(split(&backwards, &places)), None);
        let mut short = window(vec![span(0.0, 6.0, 2)]);
        short.words.push(short.words[0].clone());
        assert_eq!(texts(split(&short, &places)), None);
        // Without segments (a decoder that gives none), the window is decoded again.
        let mut bare = window(vec![span(0.0, 6.0, 2)]);
        bare.segments.clear();
        assert_eq!(texts(split(&bare, &places)), None);
    }

    #[test]
    fn merge_gives_an_utterance_without_words_an_empty_text() {
        let places = [placed(1, 0.0, 2.0), placed(2, 2.5, 2.0)];
        let window = Transcript {
            text: "Hello".into(),
            words: vec![Word {
                word: "Hello".into(),
                start: 2.6,
                end: 3.0,
                probability: 0.8,
            }],
            ..Transcript::default()
        };
        let parts = split(&window, &places).unwrap();
        assert_eq!(parts[0].1.text, "");
        assert!(parts[0].1.words.is_empty());
        assert_eq!(parts[1].1.text, "Hello");
    }

    #[test]
    fn merge_decodes_a_files_utterances_once_with_a_final_each() {
        let audio = speech(&[1.5, 2.0, 2.5]);
        let script = script();
        let (merged, decodes) = transcribe(&script, 28.0, &audio);
        assert_eq!(
            decodes.len(),
            1,
            "one decode for the three utterances: {decodes:?}"
        );
        assert!(
            (decodes[0] - (1.5 + 1.2 + 2.0 + 1.2 + 2.5 + 0.3)).abs() < 0.02,
            "the file's own audio from the first tone to the last one's tail: {decodes:?}"
        );
        let (alone, decodes) = transcribe(&script, 0.0, &audio);
        assert_eq!(decodes.len(), 3, "the setting off: one decode each");
        let merged = finals(&merged);
        assert_eq!(
            merged,
            finals(&alone),
            "the same finals as when decoded one by one"
        );
        let texts: Vec<(u64, &str)> = merged.iter().map(|f| (f.0, f.1.as_str())).collect();
        assert_eq!(texts, [(0, "1.5s"), (1, "2.0s"), (2, "2.5s")]);
        for (_, _, start, end, words) in &merged {
            assert!(
                words
                    .iter()
                    .all(|w| *start <= w.1 && w.1 < w.2 && w.2 <= *end)
            );
        }
        // The second tone starts 1.5 + 1.2 s into the file.
        assert!((merged[1].4[0].1 - 2.7).abs() < 0.01, "{merged:?}");
    }

    #[test]
    fn a_window_keeps_the_audio_of_short_pauses_and_silences_long_ones() {
        // Tones with a quiet hum between (below the energy gate): 1.5 s after the first,
        // 5 s (longer than kept) after the second.
        let hum = |s: f64| -> Vec<f32> {
            (0..samples(s))
                .map(|i| 0.004 * (i as f32 * 0.3).sin())
                .collect()
        };
        let audio = [
            tone(1.0),
            hum(1.5),
            tone(1.0),
            hum(5.0),
            tone(1.0),
            hum(1.5),
        ]
        .concat();
        let script = script();
        let mut s = file_stream(&script, 28.0);
        s.session.push_samples(&audio);
        s.session.finish();
        let window = s.session.next_job(false).expect("one window");
        assert!(s.session.next_job(false).is_none());
        let (placed, _) = s.session.windows.as_ref().unwrap().sent[&window.job_id].clone();
        assert_eq!(placed.len(), 3);
        let starts: Vec<usize> = s
            .session
            .jobs
            .values()
            .map(|m| samples(m.start_s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // The first pause is the file's own audio, sample for sample, hum and all.
        let first_end = placed[0].offset + placed[0].len;
        let pause = &window.audio[first_end..placed[1].offset];
        let in_file = starts[0] + placed[0].len;
        assert_eq!(pause, &audio[in_file..starts[1]]);
        assert!(pause.iter().any(|s| s.abs() > 0.003));
        // The second became the usual second of silence.
        let second_end = placed[1].offset + placed[1].len;
        assert_eq!(placed[2].offset - second_end, samples(GAP_S));
        assert!(
            window.audio[second_end..placed[2].offset]
                .iter()
                .all(|&s| s == 0.0)
        );
    }

    #[test]
    fn a_window_whose_word_times_are_doubtful_is_decoded_again_one_by_one() {
        let audio = speech(&[1.5, 2.0, 2.5]);
        // A decoder whose word times are doubtful whenever it hears more than one burst (a
        // window), as whisper.cpp's are when DTW's path loses the audio.
        let doubting = Script::new()
            .answer(|a, o| {
                let mut t = bursts(a, o);
                t.words_doubtful = t.words.len() > 1;
                Ok(t)
            })
            .shared();
        let (events, decodes) = transcribe(&doubting, 28.0, &audio);
        assert_eq!(
            decodes.len(),
            4,
            "the window, then each utterance: {decodes:?}"
        );
        assert!(decodes[0] > decodes[1] + decodes[2], "{decodes:?}");
        let (alone, _) = transcribe(&script(), 0.0, &audio);
        assert_eq!(
            finals(&events),
            finals(&alone),
            "the same finals as when decoded one by one from the start"
        );
    }

    #[test]
    fn a_long_doubtful_window_is_decoded_again_in_windows_of_up_to_20_s() {
        // Seven utterances of ~4.6 s, 0.6 s apart: one window of 35.5 s, then one of four and
        // one of three.
        let audio = speech(&[4.0; 7]);
        // Word times doubtful in any window over 20 s, as DTW's path over a long pass can
        // pile words up.
        let doubting = Script::new()
            .answer(|a, o| {
                let mut t = bursts(a, o);
                t.words_doubtful = a.len() as f64 / RATE > REDECODE_WINDOW_S;
                Ok(t)
            })
            .shared();
        let (events, decodes) = transcribe(&doubting, 60.0, &audio);
        assert!(decodes[0] > 30.0, "one long window first: {decodes:?}");
        let again = &decodes[1..];
        assert!(
            again.len() == 2,
            "shorter windows, not one by one: {decodes:?}"
        );
        assert!(
            again.iter().all(|&s| 8.0 < s && s <= REDECODE_WINDOW_S),
            "windows of two or more utterances, none over 20 s: {decodes:?}"
        );
        let (alone, _) = transcribe(&script(), 0.0, &audio);
        assert_eq!(
            finals(&events),
            finals(&alone),
            "the same finals as when decoded one by one from the start"
        );
    }

    #[test]
    fn merge_holds_no_more_than_the_window_and_flushes_it_at_the_end() {
        // Twelve utterances of ~4.5 s: windows of five go as they fill, the rest at the end.
        let audio = speech(&[4.0; 12]);
        let script = script();
        let mut s = file_stream(&script, 28.0);
        let session = &mut s.session;
        let mut decodes = Vec::new();
        let mut events = Vec::new();
        for chunk in audio.chunks(8000) {
            session.push_samples(chunk);
            assert!(
                session.backlog_seconds() <= 28.0,
                "never more than a window waits"
            );
            while let Some(job) = session.next_job(false) {
                decodes.push(seconds(&job));
                session.on_outcome(decode(&script, &job));
                events.extend(session.take_events());
            }
        }
        assert_eq!(
            decodes.len(),
            2,
            "two full windows went while the file was read"
        );
        assert!(
            decodes.iter().all(|&s| (24.0..=28.0).contains(&s)),
            "{decodes:?}"
        );
        assert_eq!(finals(&events).len(), 10);
        assert!(!session.has_job(false), "the third is still gathering");
        assert!(!session.is_drained(), "its finals are owed");
        session.finish();
        let last = session
            .next_job(false)
            .expect("the end sends the open window");
        session.on_outcome(decode(&script, &last));
        events.extend(session.take_events());
        let ids: Vec<u64> = finals(&events).iter().map(|f| f.0).collect();
        assert_eq!(ids, (0..12).collect::<Vec<_>>());
        assert!(session.is_drained());
    }

    #[test]
    fn merge_keeps_segment_numbers_when_an_utterance_gets_no_words() {
        // The decoder hears nothing in the 1 s tone (a cough): that utterance is filtered
        // as empty, the others keep their ids.
        let script = Script::new()
            .answer(|a, o| {
                let mut t = bursts(a, o);
                t.words.retain(|w| w.word != "1.0s");
                t.text = t
                    .words
                    .iter()
                    .map(|w| w.word.clone())
                    .collect::<Vec<_>>()
                    .join(" ");
                Ok(t)
            })
            .shared();
        let (events, decodes) = transcribe(&script, 28.0, &speech(&[2.0, 1.0, 3.0]));
        assert_eq!(decodes.len(), 1);
        let ids: Vec<(u64, String)> = finals(&events).into_iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(ids, [(0, "2.0s".to_owned()), (2, "3.0s".to_owned())]);
    }

    #[test]
    fn merge_a_failed_window_is_an_error_for_each_utterance() {
        let script = Script::new()
            .answer(|_, _| Err(SttError::Decode("boom".into())))
            .shared();
        let (events, decodes) = transcribe(&script, 28.0, &speech(&[1.5, 2.0]));
        assert_eq!(decodes.len(), 1);
        let errors = events
            .iter()
            .filter(|e| matches!(e, ServerMessage::Error { code, .. } if code == "decode_failed"))
            .count();
        assert_eq!(errors, 2, "{events:?}");
    }

    /// Through the driver and the decoder pool, fed as `transcribe_feed` feeds a file.
    #[tokio::test]
    async fn merge_file_sessions_of_the_driver_and_never_live_ones() {
        async fn run(file: bool) -> (Vec<u64>, usize) {
            let script = script();
            let engine = scripted_engine(&script, SttConfig::default(), VadConfig::default());
            let mut options = default_options(&engine.stt, false);
            options.partials = false;
            let opening = Opening {
                id: "f".into(),
                options,
                early_errors: Vec::new(),
            };
            let (driver, _) =
                Driver::start(&engine, DriverConfig::for_files(200), opening, &[]).unwrap();
            let mut driver = if file {
                driver.merge_file_windows(engine.stt.file_merge_s, WindowJoin::ALIGNED)
            } else {
                driver
            };
            let mut events = Vec::new();
            for chunk in speech(&[1.5, 2.0, 1.0]).chunks(8000) {
                driver.push_samples(chunk);
                while driver.final_waiting() {
                    if let Step::Send(sent) = driver.next().await {
                        events.extend(sent);
                    }
                }
            }
            driver.close(Ending::stopped());
            loop {
                match tokio::time::timeout(Duration::from_secs(10), driver.next())
                    .await
                    .expect("the driver makes progress")
                {
                    Step::Send(sent) => events.extend(sent),
                    Step::Ending(notice) => events.extend(notice),
                    Step::Closed(_) => break,
                }
            }
            let ids = finals(&events).iter().map(|f| f.0).collect();
            (ids, script.calls().len())
        }
        assert_eq!(run(true).await, (vec![0, 1, 2], 1), "the default window");
        assert_eq!(run(false).await, (vec![0, 1, 2], 3), "unmarked: one each");
    }
}
