//! Word times from the model's attention (DTW) on the real model: a decode that asks for
//! aligned words runs in the model's DTW context and one that does not keeps whisper.cpp's
//! heuristic times, and clips too short for whisper.cpp's DTW median filter decode instead of
//! aborting the process.

use crate::support::*;
use sori::protocol::Language;
use sori::stt::whisper::WhisperModel;
use sori::stt::{DecodeOptions, Decoder, Transcript};

/// The product's smallest trimmed encoder window (`stt.audio_ctx_min_s`, 6 s).
const TRIMMED: Option<u32> = Some(300);

fn opts(aligned_words: bool, audio_ctx: Option<u32>) -> DecodeOptions {
    DecodeOptions {
        language: Language::En,
        threads: 2,
        audio_ctx,
        word_timestamps: true,
        aligned_words,
        ..DecodeOptions::default()
    }
}

fn assert_reads_jfk(t: &Transcript, audio_s: f64) {
    let wer = sori::eval::wer(JFK_REFERENCE, &t.text);
    assert!(wer <= 0.1, "WER {wer}: {:?}", t.text);
    assert!(!t.words.is_empty(), "{t:?}");
    for pair in t.words.windows(2) {
        assert!(
            pair[0].start <= pair[1].start,
            "words in order: {:?}",
            t.words
        );
    }
    for w in &t.words {
        assert!(
            0.0 <= w.start && w.start <= w.end && w.end <= audio_s + 0.01,
            "{w:?} within the {audio_s} s of audio"
        );
    }
}

#[test]
fn aligned_words_come_from_the_dtw_context_and_tiny_clips_never_abort() {
    let model = WhisperModel::load(&test_config().stt.model, false, true).expect("the model loads");
    assert!(model.dtw_timestamps(), "base has an alignment-head preset");
    let mut decoder = model.new_decoder().expect("a decoder");
    let jfk = jfk_16k();
    let seconds = jfk.len() as f64 / 16_000.0;

    let plain = decoder
        .decode(&jfk, &opts(false, None))
        .expect("a plain decode");
    let aligned = decoder
        .decode(&jfk, &opts(true, None))
        .expect("an aligned decode");
    assert_reads_jfk(&plain, seconds);
    assert_reads_jfk(&aligned, seconds);
    // The two contexts time the same words differently (DTW against the heuristic that spreads
    // a segment's time over its tokens).
    let moved = plain
        .words
        .iter()
        .zip(&aligned.words)
        .filter(|(p, a)| (p.start - a.start).abs() > 0.05)
        .count();
    assert!(
        moved > 0,
        "aligned words were timed as plain ones:\n{:?}\n{:?}",
        plain.words,
        aligned.words
    );

    // whisper.cpp aborts the process when a DTW pass spans fewer than 8 encoder frames
    // (0.16 s): clips of 0.05–0.2 s of speech, and of silence, decoded with aligned
    // words, must come back (with or without text).
    for len in [800, 1_600, 2_560, 3_200] {
        for start_s in [0.0, 1.0, 3.2, 6.5] {
            let start = (start_s * 16_000.0) as usize;
            let clip = &jfk[start..start + len];
            let decoded = decoder.decode(clip, &opts(true, TRIMMED));
            assert!(decoded.is_ok(), "{len} samples at {start_s} s: {decoded:?}");
        }
    }
    let silence = vec![0.0f32; 1_000];
    assert!(decoder.decode(&silence, &opts(true, TRIMMED)).is_ok());
}
