//! Word times from the decoder's own attention (whisper.cpp's DTW token timestamps).
//!
//! whisper.cpp times each token either by a heuristic over the timestamp tokens, which spreads a
//! segment's time over its tokens (so a segment that spans a pause puts its words in the pause,
//! up to a second or more off), or by dynamic time warping over the cross-attention of the
//! model's alignment heads, which follows the audio. The heads differ per model, so the
//! preset is picked from the model file's header; a file that matches no preset keeps the
//! heuristic. DTW needs attention weights, so it is off with flash attention (sori never turns
//! flash attention on).

use std::path::Path;

use whisper_rs::DtwModelPreset;

use super::SegmentSpan;

/// English-only models have one token fewer than the multilingual ones (51 864 against 51 865,
/// or 51 866 for large-v3).
const ENGLISH_ONLY_VOCAB: i32 = 51_864;

/// The alignment heads for the model in `path`, if its shape is one whisper.cpp has a preset
/// for; `None` for an unreadable header or another shape (a distilled or fine-tuned model with
/// changed layers), which then keeps the heuristic timestamps.
pub fn preset_for(path: &Path) -> Option<DtwModelPreset> {
    let h = sori_models::convert::read_ggml_header(path).ok()?;
    let english = h.n_vocab == ENGLISH_ONLY_VOCAB;
    let preset = match (h.n_text_layer, h.n_text_state, english) {
        (4, 384, true) => DtwModelPreset::TinyEn,
        (4, 384, false) => DtwModelPreset::Tiny,
        (6, 512, true) => DtwModelPreset::BaseEn,
        (6, 512, false) => DtwModelPreset::Base,
        (12, 768, true) => DtwModelPreset::SmallEn,
        (12, 768, false) => DtwModelPreset::Small,
        (24, 1024, true) => DtwModelPreset::MediumEn,
        (24, 1024, false) => DtwModelPreset::Medium,
        (4, 1280, false) if h.n_mels == 128 => DtwModelPreset::LargeV3Turbo,
        (32, 1280, false) if h.n_mels == 128 => DtwModelPreset::LargeV3,
        // large-v1 and large-v2 share their shape; v2 is the one in use.
        (32, 1280, false) => DtwModelPreset::LargeV2,
        _ => return None,
    };
    Some(preset)
}

/// Consecutive words on one DTW frame that mark a path that lost the audio.
///
/// A few words on one frame are DTW's path compressing a quick phrase: over the 28–30 s passes
/// of a long file window even clean JFK gets three ("do for you") or five, and sending such a
/// window back to be decoded one utterance at a time cost more words in noise than it placed
/// (docs/accuracy.md, "File windows longer than 30 s"). The path that lost the audio, with
/// Whisper's segments out of order, piled eight words onto one frame.
const PILE_UP_WORDS: usize = 6;

/// How far a segment may start before the previous one ended, in seconds, before the segments
/// count as written out of order.
const BACKWARDS_S: f64 = 0.5;

/// Whether DTW's times for a decode cannot be trusted to place words.
///
/// whisper.cpp aligns all of a decode's text tokens as one path forward through the audio. When
/// Whisper writes its segments out of order (in a file window it sometimes writes the next
/// utterance's sentence before the end of the current one's), no such path fits, and the path
/// piles the tokens in between onto one frame, often in a pause. Either sign makes the times
/// doubtful: `dtw_starts` are the words' DTW times (centiseconds, negative where none), and
/// `segments` the segments' timestamp-token spans in seconds, in the order Whisper wrote them.
pub fn doubtful(dtw_starts: &[i64], segments: &[SegmentSpan]) -> bool {
    let missing = dtw_starts.iter().any(|&t| t < 0);
    let piled = dtw_starts
        .windows(PILE_UP_WORDS)
        .any(|run| run.iter().all(|&t| t == run[0]));
    let backwards = segments
        .windows(2)
        .any(|pair| pair[1].start < pair[0].end - BACKWARDS_S);
    missing || piled || backwards
}

/// Longest typical word, in seconds: a word is given at most twice the median spacing of the
/// transcript's words, and that median is taken as at most this.
const MAX_MEDIAN_WORD_S: f64 = 0.7;

/// Spacing assumed for a transcript of one word.
const ONE_WORD_S: f64 = 0.35;

/// Times `words` from their DTW `starts` (seconds, one per word) in audio `end_s` long.
///
/// DTW gives each token the time its attention moves onto it, so a word runs until the next
/// word starts; but across a pause the path stays on the word before (or on its punctuation)
/// until speech resumes, so a word's end is also cut at twice the median spacing of the
/// transcript's words, as openai-whisper's alignment does at sentence ends. Starts are kept in
/// the order Whisper wrote them, even where its segments went back in time.
pub fn retime(words: &mut [crate::protocol::Word], starts: &[f64], end_s: f64) {
    debug_assert_eq!(words.len(), starts.len());
    let starts: Vec<f64> = starts.iter().map(|s| s.clamp(0.0, end_s)).collect();
    let mut spacing: Vec<f64> = starts
        .windows(2)
        .map(|p| p[1] - p[0])
        .filter(|d| *d > 0.0)
        .collect();
    spacing.sort_by(f64::total_cmp);
    let median = spacing
        .get(spacing.len() / 2)
        .copied()
        .unwrap_or(ONE_WORD_S);
    let longest = 2.0 * median.min(MAX_MEDIAN_WORD_S);
    for (i, word) in words.iter_mut().enumerate() {
        let start = starts[i];
        let next = starts
            .get(i + 1)
            .copied()
            .filter(|&next| next > start)
            .unwrap_or(end_s);
        word.start = start;
        word.end = next.min(start + longest).max(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Word;

    fn words(n: usize) -> Vec<Word> {
        (0..n)
            .map(|i| Word {
                word: format!("w{i}"),
                start: 0.0,
                end: 0.0,
                probability: 0.9,
            })
            .collect()
    }

    #[test]
    fn a_word_before_a_pause_ends_near_its_start_not_where_speech_resumes() {
        let mut w = words(5);
        // Four words 0.3 s apart, then a 3 s pause before the last one.
        retime(&mut w, &[1.0, 1.3, 1.6, 1.9, 5.0], 6.0);
        let times: Vec<(f64, f64)> = w.iter().map(|w| (w.start, w.end)).collect();
        assert_eq!(times[0], (1.0, 1.3));
        // The median spacing is 0.3 s, so the word before the pause gets 0.6 s, not 3.1 s.
        assert!((times[3].1 - 2.5).abs() < 1e-9, "{times:?}");
        assert_eq!(times[4].0, 5.0);
        assert!((times[4].1 - 5.6).abs() < 1e-9, "{times:?}");
    }

    #[test]
    fn words_stay_within_the_audio_and_never_end_before_they_start() {
        let mut w = words(3);
        // A segment written out of order: the second word starts before the first.
        retime(&mut w, &[2.0, 1.5, 9.0], 4.0);
        assert_eq!((w[1].start, w[2].start), (1.5, 4.0));
        assert!(w.iter().all(|w| w.start <= w.end && w.end <= 4.0), "{w:?}");
    }

    #[test]
    fn a_long_pile_up_or_segments_written_backwards_make_the_times_doubtful() {
        let span = |start, end| SegmentSpan {
            start,
            end,
            words: 1,
        };
        let forward = [span(0.0, 2.0), span(2.4, 5.0)];
        assert!(
            !doubtful(&[10, 40, 40, 40, 40, 40, 90], &forward),
            "five words may share a frame"
        );
        assert!(
            doubtful(&[10, 40, 40, 40, 40, 40, 40, 90], &forward),
            "six may not"
        );
        assert!(doubtful(&[10, 40, 90], &[span(0.0, 5.0), span(2.0, 3.0)]));
        assert!(
            doubtful(&[10, -1, 90], &forward),
            "a word without a DTW time"
        );
    }
}
