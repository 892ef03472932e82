//! Reading a whisper.cpp decode back: its segments (text, tokens, times), the transcript they
//! make, and the stretch of audio a decode passed over with next to no words.

use std::ffi::c_int;

use whisper_rs::WhisperState;

use super::alignment;
use super::language::Detection;
use super::{DecodeOptions, SegmentSpan, Transcript};
use crate::protocol::Word;

/// Whisper timestamps are in units of 10 ms.
pub(super) const CENTISECONDS: f64 = 100.0;

/// Samples in one centisecond.
pub(super) const SAMPLES_PER_CS: usize = crate::audio::TARGET_SAMPLE_RATE as usize / 100;

/// A stretch of audio shorter than this is never judged passed over: a pause between
/// sentences, or a pass's last words, can leave a few quiet seconds.
const PASSED_OVER_MIN_S: f64 = 8.0;

/// Fewer words a second than this over such a stretch: the decode passed over the speech.
/// Read speech runs at 2–3 words a second (JFK and the LibriVox clips: 2.1–2.6).
const PASSED_OVER_MAX_WORDS_PER_S: f64 = 1.0;

/// One text token of a segment; times in centiseconds from the start of the decoded audio.
pub(super) struct TokenRead {
    bytes: Vec<u8>,
    t0: i64,
    t1: i64,
    /// DTW's time; negative where whisper.cpp computed none.
    t_dtw: i64,
    p: f32,
    plog: f32,
}

/// One segment of a decode; times in centiseconds from the start of the decoded audio.
pub(super) struct SegmentRead {
    text: String,
    tokens: Vec<TokenRead>,
    t0: i64,
    t1: i64,
    no_speech_prob: f32,
}

impl SegmentRead {
    fn word_count(&self) -> usize {
        self.text.split_whitespace().count()
    }

    /// Where the segment starts, in samples of the decoded audio.
    pub(super) fn start_sample(&self) -> usize {
        usize::try_from(self.t0).unwrap_or(0) * SAMPLES_PER_CS
    }

    /// The same segment in audio that starts `by` centiseconds earlier.
    fn shifted(mut self, by: i64) -> Self {
        self.t0 += by;
        self.t1 += by;
        for token in &mut self.tokens {
            token.t0 += by;
            token.t1 += by;
            if token.t_dtw >= 0 {
                token.t_dtw += by;
            }
        }
        self
    }
}

/// Every segment of the decode that just ran in `state`; `eot` is the end-of-text token, the
/// first of the special tokens (timestamps and the like), which are left out.
pub(super) fn read_segments(state: &WhisperState, eot: c_int) -> Vec<SegmentRead> {
    state
        .as_iter()
        .map(|segment| {
            let tokens = (0..segment.n_tokens())
                .filter_map(|t| segment.get_token(t))
                .filter_map(|token| {
                    let data = token.token_data();
                    if data.id >= eot {
                        return None;
                    }
                    Some(TokenRead {
                        bytes: token.to_bytes().ok()?.to_vec(),
                        t0: data.t0,
                        t1: data.t1,
                        t_dtw: data.t_dtw,
                        p: data.p,
                        plog: data.plog,
                    })
                })
                .collect();
            SegmentRead {
                text: segment
                    .to_str_lossy()
                    .map(|t| t.into_owned())
                    .unwrap_or_default(),
                tokens,
                t0: segment.start_timestamp(),
                t1: segment.end_timestamp(),
                no_speech_prob: segment.no_speech_probability(),
            }
        })
        .collect()
}

/// Logs each segment of a decode of `samples` of audio (at `trace` level: diagnosis only).
pub(super) fn trace(segments: &[SegmentRead], samples: usize) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    for segment in segments {
        let plog_sum: f64 = segment.tokens.iter().map(|t| f64::from(t.plog)).sum();
        let mean_plog = plog_sum / segment.tokens.len().max(1) as f64;
        tracing::trace!(
            audio_s = samples as f64 / f64::from(crate::audio::TARGET_SAMPLE_RATE),
            t0_s = segment.t0 as f64 / CENTISECONDS,
            t1_s = segment.t1 as f64 / CENTISECONDS,
            mean_plog,
            no_speech = segment.no_speech_prob,
            text = %segment.text,
            "segment read back"
        );
    }
}

/// The first segment from which on the decode gave fewer than
/// [`PASSED_OVER_MAX_WORDS_PER_S`] to at least [`PASSED_OVER_MIN_S`] of audio: the segment's
/// words against the audio from its start to the next segment's (or to `audio_cs`, the end).
///
/// whisper.cpp prompts each pass of a decode with the text of the passes before it. In loud
/// noise a pass so prompted can write a few words of that text again, or a short sentence,
/// and end: whisper.cpp then moves on by the whole 30 s window, and the speech under it is
/// lost (`white-0dB-3` of the noise bench: 22 s of speech read as "than how you can do for
/// your country."). The audio before the first segment is not judged: no prompt of this
/// decode's own preceded it.
pub(super) fn passed_over(segments: &[SegmentRead], audio_cs: i64) -> Option<usize> {
    segments.iter().enumerate().position(|(i, segment)| {
        let until = segments.get(i + 1).map_or(audio_cs, |next| next.t0);
        let seconds = (until - segment.t0) as f64 / CENTISECONDS;
        seconds >= PASSED_OVER_MIN_S
            && (segment.word_count() as f64) < seconds * PASSED_OVER_MAX_WORDS_PER_S
    })
}

/// Puts the segments of a second decode, of the audio from `segments[from]`'s start on, in
/// place of `segments[from..]` when it found more words there; returns whether it did.
pub(super) fn splice_if_more_words(
    segments: &mut Vec<SegmentRead>,
    from: usize,
    again: Vec<SegmentRead>,
) -> bool {
    let Some(start) = segments.get(from).map(|s| s.t0) else {
        return false;
    };
    let before: usize = segments[from..].iter().map(SegmentRead::word_count).sum();
    let after: usize = again.iter().map(SegmentRead::word_count).sum();
    if after <= before {
        return false;
    }
    segments.truncate(from);
    segments.extend(again.into_iter().map(|s| s.shifted(start)));
    true
}

/// The transcript the segments of one decode make: text, words and scores. Words are timed by
/// DTW when `dtw`, over `samples` of audio.
pub(super) fn assemble(
    segments: &[SegmentRead],
    dtw: bool,
    opts: &DecodeOptions,
    language: &str,
    detection: Option<Detection>,
    samples: usize,
) -> Transcript {
    let mut text = String::new();
    let mut words = WordBuilder::default();
    let mut logprob_sum = 0.0f64;
    let mut token_count = 0usize;
    // Each segment's timestamp-token span, in seconds: whether DTW's path held is judged by it,
    // and a window whose word times are doubtful is split by it.
    let mut spans = Vec::with_capacity(segments.len());
    for segment in segments {
        text.push_str(&segment.text);
        let words_before = words.done.len();
        for token in &segment.tokens {
            logprob_sum += f64::from(token.plog);
            token_count += 1;
            words.push(&token.bytes, token.t0, token.t1, token.t_dtw, token.p);
        }
        // A segment's last word ends with it: the next segment starts a new word.
        words.finish_word();
        spans.push(SegmentSpan {
            start: segment.t0 as f64 / CENTISECONDS,
            end: segment.t1 as f64 / CENTISECONDS,
            words: words.done.len() - words_before,
        });
    }
    let (words, words_doubtful) = if opts.word_timestamps {
        let end_s = samples as f64 / f64::from(crate::audio::TARGET_SAMPLE_RATE);
        words.finish(dtw.then_some(end_s), &spans)
    } else {
        spans.clear();
        (Vec::new(), false)
    };
    Transcript {
        text: text.trim().to_owned(),
        language: language.to_owned(),
        detection,
        words,
        words_doubtful,
        segments: spans,
        avg_logprob: if token_count == 0 {
            0.0
        } else {
            (logprob_sum / token_count as f64) as f32
        },
        no_speech_prob: segments.first().map_or(0.0, |s| s.no_speech_prob),
        audio_ctx: opts.audio_ctx.unwrap_or(1500),
    }
}

/// Joins BPE tokens into words. A token starting with a space starts a new word; Korean
/// syllables can be split across tokens as partial UTF-8, so bytes are joined before decoding.
#[derive(Default)]
struct WordBuilder {
    done: Vec<Word>,
    /// Each done word's DTW time (its first token's), in centiseconds; negative where
    /// whisper.cpp computed none.
    dtw_starts: Vec<i64>,
    bytes: Vec<u8>,
    start: i64,
    end: i64,
    dtw_start: i64,
    prob_sum: f32,
    tokens: u32,
}

impl WordBuilder {
    /// Adds a token: its bytes, whisper.cpp's heuristic times `t0`–`t1`, its DTW time and its
    /// probability.
    fn push(&mut self, token: &[u8], t0: i64, t1: i64, t_dtw: i64, p: f32) {
        if token.first() == Some(&b' ') && !self.bytes.is_empty() {
            self.finish_word();
        }
        if self.bytes.is_empty() {
            self.start = t0;
            self.dtw_start = t_dtw;
        }
        self.bytes.extend_from_slice(token);
        self.end = t1.max(self.start);
        self.prob_sum += p;
        self.tokens += 1;
    }

    fn finish_word(&mut self) {
        let word = String::from_utf8_lossy(&self.bytes).trim().to_owned();
        if !word.is_empty() {
            self.done.push(Word {
                word,
                start: self.start as f64 / CENTISECONDS,
                end: self.end as f64 / CENTISECONDS,
                probability: self.prob_sum / self.tokens.max(1) as f32,
            });
            self.dtw_starts.push(self.dtw_start);
        }
        self.bytes.clear();
        self.prob_sum = 0.0;
        self.tokens = 0;
    }

    /// The words, and whether their times are doubtful. Timed by DTW when `dtw_end_s` (the
    /// audio's length) is given and DTW's path is sane ([`alignment::doubtful`], judged with the
    /// decode's segment `spans`); by the heuristic otherwise, then marked doubtful when DTW was
    /// asked for.
    fn finish(mut self, dtw_end_s: Option<f64>, spans: &[SegmentSpan]) -> (Vec<Word>, bool) {
        self.finish_word();
        let Some(end_s) = dtw_end_s else {
            return (self.done, false);
        };
        if alignment::doubtful(&self.dtw_starts, spans) {
            return (self.done, true);
        }
        let starts: Vec<f64> = self
            .dtw_starts
            .iter()
            .map(|&t| t as f64 / CENTISECONDS)
            .collect();
        alignment::retime(&mut self.done, &starts, end_s);
        (self.done, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_join_tokens_and_split_korean_bytes_correctly() {
        let mut b = WordBuilder::default();
        let han = "한국".as_bytes(); // 6 bytes, split mid-syllable across tokens
        b.push(b" And", 0, 20, -1, 0.9);
        b.push(b" so", 20, 40, -1, 0.8);
        b.push(&[b' ', han[0], han[1]], 40, 50, -1, 0.5);
        b.push(&han[2..], 50, 60, -1, 0.5);
        b.push(b",", 60, 61, -1, 0.7);
        let (words, _) = b.finish(None, &[]);
        let texts: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(texts, ["And", "so", "한국,"]);
        assert_eq!(words[2].start, 0.40);
        assert_eq!(words[2].end, 0.61);
    }

    /// A segment of `text` from `t0` to `t1` (seconds), one token per word; its text starts
    /// with a space, as whisper.cpp's do.
    fn segment(text: &str, t0: f64, t1: f64) -> SegmentRead {
        let (t0, t1) = ((t0 * CENTISECONDS) as i64, (t1 * CENTISECONDS) as i64);
        SegmentRead {
            text: format!(" {text}"),
            tokens: text
                .split_whitespace()
                .map(|w| TokenRead {
                    bytes: format!(" {w}").into_bytes(),
                    t0,
                    t1,
                    t_dtw: -1,
                    p: 0.9,
                    plog: -0.1,
                })
                .collect(),
            t0,
            t1,
            no_speech_prob: 0.0,
        }
    }

    /// `white-0dB-3` of the noise bench as the window decode read it: a first pass of 20 s,
    /// then one sentence and nothing over the last 24 s.
    fn white_0db_3() -> Vec<SegmentRead> {
        vec![
            segment(
                "And so my fellow American, ask not what your country can do for you, ask what \
                 you can do for your country.",
                0.0,
                11.0,
            ),
            segment(
                "And Mr. John Dashwood had done research to consider how much different it is",
                11.0,
                20.0,
            ),
            segment("than how you can do for your country.", 20.0, 21.5),
        ]
    }

    #[test]
    fn speech_read_as_one_short_sentence_is_passed_over() {
        assert_eq!(passed_over(&white_0db_3(), 4392), Some(2));
        // The same decode over audio that ends soon after the sentence: nothing passed over.
        assert_eq!(passed_over(&white_0db_3(), 2600), None);
        // A pause of a few seconds between sentences is not a stretch passed over,
        let paused = vec![
            segment("ask not what your country can do for you", 0.0, 3.0),
            segment("ask what you can do", 7.0, 9.0),
        ];
        assert_eq!(passed_over(&paused, 1000), None);
        // nor is audio with no text at all (noise alone: nothing to decode again).
        assert_eq!(passed_over(&[], 4000), None);
    }

    #[test]
    fn a_second_decode_replaces_the_rest_only_when_it_finds_more_words() {
        let again = vec![
            segment("He was not so young a man.", 1.0, 4.0),
            segment(
                "He must be rather cold-hearted and rather selfish.",
                5.0,
                9.0,
            ),
        ];
        let mut segments = white_0db_3();
        assert!(splice_if_more_words(&mut segments, 2, again));
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts.len(), 4);
        assert!(texts[2].starts_with(" He was not"));
        // Times are moved to the window's: the second decode started at 20 s.
        assert_eq!((segments[2].t0, segments[3].t1), (2100, 2900));
        assert_eq!(segments[3].tokens[0].t0, 2500);
        assert_eq!(segments[3].tokens[0].t_dtw, -1, "no DTW time stays none");

        let mut segments = white_0db_3();
        let fewer = vec![segment("Your country.", 0.5, 1.5)];
        assert!(!splice_if_more_words(&mut segments, 2, fewer));
        assert_eq!(segments[2].text, " than how you can do for your country.");
        assert!(!splice_if_more_words(&mut segments, 3, Vec::new()));
    }

    #[test]
    fn a_transcript_counts_every_segments_tokens() {
        let opts = DecodeOptions {
            word_timestamps: true,
            ..DecodeOptions::default()
        };
        let t = assemble(&white_0db_3(), false, &opts, "en", None, 4392 * 160);
        assert!(t.text.starts_with("And so my fellow") && t.text.ends_with("your country."));
        assert_eq!(t.words.len(), t.text.split_whitespace().count());
        assert!((t.avg_logprob + 0.1).abs() < 1e-6);
        assert!(!t.words_doubtful);
    }
}
