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

/// The noise bench's mixes, made by `sori bench --noise --vad` (which also compares the voice
/// detectors on them): speech from `scripts/peers.sh audio`, music from `scripts/peers.sh noise`.
fn noise_mixes() -> std::path::PathBuf {
    let music = repo_root().join("data/bench/noise/music/.complete");
    assert!(
        music.is_file() && repo_root().join("data/bench/peers/joined.wav").is_file(),
        "the noise bench's audio is missing; fetch it with: \
         ./scripts/peers.sh audio && ./scripts/peers.sh noise"
    );
    let report = scratch_dir().join("vad-bench.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sori"))
        .args(["bench", "--noise", "--vad", "--json"])
        .arg(&report)
        .current_dir(repo_root())
        .env(
            "SORI_ONNXRUNTIME_LIB",
            ".tools/onnxruntime/libonnxruntime.so.1.31.1",
        )
        .output()
        .expect("sori bench runs");
    assert!(
        out.status.success(),
        "sori bench --noise --vad: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bench's own figures: Silero never opens an utterance on the music alone.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let music_alone = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["detector"] == "silero" && r["condition"] == "music alone")
        .expect("a row for Silero on the music alone");
    assert_eq!(music_alone["utterances"], 0, "{music_alone}");
    repo_root().join("data/bench/noise/mixes")
}

/// Conditioned file windows over music at 5 dB, segmented by Silero: one of them made
/// whisper.cpp end a pass 0.10–0.16 s before the window's end, and its DTW over that rest
/// aborted the process (checked on this mix before the guard). `sori transcribe` must read it.
#[test]
fn a_pass_ending_just_before_the_end_of_a_window_never_aborts_the_process() {
    let mix = noise_mixes().join("music-5dB.wav");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sori"))
        .arg("transcribe")
        .arg(&mix)
        .args([
            "--language",
            "en",
            "--workers",
            "2",
            "--threads",
            "1",
            "--model",
        ])
        .arg(model_path())
        .current_dir(repo_root())
        .env("SORI_CONDITION_ON_PREVIOUS_TEXT", "true")
        .env("SORI_VAD_DETECTOR", "silero")
        .env(
            "SORI_ONNXRUNTIME_LIB",
            ".tools/onnxruntime/libonnxruntime.so.1.31.1",
        )
        .output()
        .expect("sori transcribe runs");
    assert!(
        out.status.success(),
        "sori transcribe ended with {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("dashwood"), "{text}");
}
