//! Silero VAD v6 as the voice detector (`vad.detector = "silero"`) on real parts: Silero's
//! ONNX model and ONNX Runtime's library from PyPI (`scripts/onnx-embedder.sh fetch`), JFK,
//! and white noise as loud as the speech. The segmenter tests run no Whisper; one session over
//! `/ws` shows the server streams with it.

use std::path::PathBuf;

use crate::support::*;
use sori::config::{VadConfig, VoiceDetectorKind};
use sori::vad::{Segmenter, Utterance};
use sori::voice::detector_factory;

const SR: usize = 16_000;

/// Silero's model and ONNX Runtime, or a loud failure saying how to get them.
fn silero_files() -> (PathBuf, PathBuf) {
    let model = repo_root().join("models/vad/silero_vad.onnx");
    let lib = repo_root().join(".tools/onnxruntime/libonnxruntime.so.1.31.1");
    assert!(
        model.is_file() && lib.is_file(),
        "Silero VAD's model or ONNX Runtime is missing ({} / {}); \
         fetch them with: scripts/onnx-embedder.sh fetch",
        model.display(),
        lib.display()
    );
    (model, lib)
}

fn silero_vad() -> (VadConfig, PathBuf) {
    let (model, lib) = silero_files();
    let vad = VadConfig {
        detector: VoiceDetectorKind::Silero,
        silero_model: model,
        ..VadConfig::default()
    };
    (vad, lib)
}

fn utterances_of(vad: &VadConfig, lib: &std::path::Path, audio: &[f32]) -> Vec<Utterance> {
    let factory = detector_factory(vad, lib).expect("Silero loads");
    Segmenter::with_detector(vad, factory()).utterances(audio)
}

/// 2 s of white noise, JFK, 3 s of noise, at `snr_db` (JFK's power ÷ the noise's), and where
/// JFK starts in it.
fn jfk_in_noise(snr_db: f32) -> (Vec<f32>, usize) {
    let jfk = jfk_16k();
    let noise_rms = sori::vad::rms(&jfk) / 10f32.powf(snr_db / 20.0);
    let lead = 2 * SR;
    let mut noise = white_noise(lead + jfk.len() + 3 * SR, noise_rms);
    for (n, s) in noise[lead..].iter_mut().zip(&jfk) {
        *n = (*n + s).clamp(-1.0, 1.0);
    }
    (noise, lead)
}

#[test]
fn silero_finds_jfk_and_its_pauses_through_noise_as_loud_as_the_speech() {
    let (vad, lib) = silero_vad();
    let clean = utterances_of(&vad, &lib, &jfk_16k());
    assert!(!clean.is_empty(), "no speech found in JFK");
    assert!(
        clean[0].start_s() < 0.3,
        "first word cut: {}",
        clean[0].start_s()
    );
    assert!(clean.last().unwrap().end_s() > 10.4);

    let (mix, lead) = jfk_in_noise(0.0);
    let lead_s = lead as f64 / SR as f64;
    let noisy = utterances_of(&vad, &lib, &mix);
    let spans: Vec<(f64, f64)> = noisy.iter().map(|u| (u.start_s(), u.end_s())).collect();
    // The noise before and after the speech is no utterance: the speech is found where it is,
    assert!(
        !noisy.is_empty() && noisy[0].start_s() > lead_s - 0.5 && noisy[0].start_s() < lead_s + 0.3,
        "JFK starts at {lead_s} s: {spans:?}"
    );
    assert!(
        noisy.last().unwrap().end_s() < lead_s + 11.0 + 1.5,
        "the trailing noise was taken for speech: {spans:?}"
    );
    // and its pauses are still heard: it ends on silence, never at the maximum length.
    assert!(
        noisy.iter().all(|u| u.speech_final),
        "cut at the maximum length: {spans:?}"
    );
    assert!(
        noisy.len() + 1 >= clean.len(),
        "{} utterances in clean speech, {} in noise: {spans:?}",
        clean.len(),
        noisy.len()
    );

    // The noise alone, 30 s of it: nothing.
    let alone = white_noise(30 * SR, sori::vad::rms(&jfk_16k()));
    let found = utterances_of(&vad, &lib, &alone);
    assert!(
        found.is_empty(),
        "noise taken for speech: {} utterance(s)",
        found.len()
    );
}

#[test]
fn a_missing_or_foreign_silero_model_is_refused_with_what_to_do() {
    let (mut vad, lib) = silero_vad();
    vad.silero_model = PathBuf::from("/nonexistent/silero_vad.onnx");
    let Err(error) = detector_factory(&vad, &lib) else {
        panic!("a missing model loaded");
    };
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/silero_vad.onnx") && message.contains("onnx-embedder.sh"),
        "{message}"
    );

    // Another ONNX model (the embedder's, which the same script fetches) is not Silero's.
    let embedder = repo_root().join("models/embed/all-minilm-l6-v2-int8/model.onnx");
    assert!(
        embedder.is_file(),
        "the embedding model is missing; fetch it with: scripts/onnx-embedder.sh fetch"
    );
    vad.silero_model = embedder;
    let Err(error) = detector_factory(&vad, &lib) else {
        panic!("the embedding model was taken for Silero's");
    };
    assert!(error.to_string().contains("inputs are"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_silero_transcribes_speech_in_noise_over_ws() {
    let (vad, lib) = silero_vad();
    let mut config = test_config();
    config.vad = vad;
    config.rag.onnxruntime_lib = lib;
    let addr = start_server(config);
    let (mut ws, _) = connect_ready(addr, "?language=en").await;
    let (mix, _) = jfk_in_noise(10.0);
    send_pcm(&mut ws, &to_s16le(&mix), 32_000, 20, false).await;
    let messages = stop_and_collect(&mut ws).await;
    let text = final_text(&messages).to_lowercase();
    for words in [
        "fellow americans",
        "what your country can do for you",
        "for your country",
    ] {
        assert!(text.contains(words), "{words:?} not in {text:?}");
    }
}
