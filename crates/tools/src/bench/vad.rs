//! `sori bench --noise --vad`: the voice detectors side by side on the noise bench's mixes
//! (docs/accuracy.md, "Voice detectors"). No Whisper runs: each detector scores every 16 ms
//! frame of each mix, and sori's segmenter cuts the mix into utterances with it.
//!
//! What is speech is read off the clean speech the mixes are made of: a frame is speech when its
//! energy there is within 20 dB of the loud frames (the 90th percentile), else a pause. For
//! each detector and mix: the speech frames it keeps, the pause frames (or, for a noise alone,
//! all frames) it takes for speech, the utterances the segmenter makes of the mix, how many of
//! them ran to `vad.max_utterance_s`, and the detector's time per second of audio.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::noise::{Condition, write_mixes};
use sori::config::Config;
use sori_core::audio::TARGET_SAMPLE_RATE;
use sori_core::audio::decode::load_16k_mono;
use sori_core::config::{VadConfig, VoiceDetectorKind};
use sori_core::vad::{DetectorFactory, FRAME_SAMPLES, Segmenter, VoiceDetector, rms};

/// The speech the mixes are made of: the truth of which frames are speech.
const SPEECH: &str = "data/bench/peers/joined.wav";
/// A frame of the clean speech within this factor (in RMS) of the loud frames is speech: 20 dB.
const SPEECH_RMS_FRACTION: f32 = 0.1;

#[derive(Debug, Serialize)]
pub struct VadRow {
    pub condition: String,
    pub detector: String,
    /// Share of the speech frames scored as voice (absent for a noise alone).
    pub speech_kept: Option<f64>,
    /// Share of the pause frames (a noise alone: of all frames) scored as voice.
    pub noise_taken: f64,
    pub utterances: usize,
    /// Utterances cut at `vad.max_utterance_s` while speech (or noise taken for it) went on.
    pub forced_cuts: usize,
    pub longest_utterance_s: f64,
    /// Detector time per second of audio, in milliseconds.
    pub ms_per_audio_s: f64,
}

#[derive(Debug, Serialize)]
pub struct VadReport {
    pub speech_threshold: f64,
    pub energy_threshold: f64,
    pub max_utterance_s: f64,
    pub rows: Vec<VadRow>,
}

/// Scores every mix of `snrs` with each detector sori has.
pub fn run(config: &Config, snrs: &[f32]) -> anyhow::Result<VadReport> {
    let conditions = write_mixes(snrs, 1)?;
    let clean = load_16k_mono(Path::new(SPEECH))
        .with_context(|| format!("cannot read {SPEECH}; run ./scripts/peers.sh fetch"))?;
    let truth = speech_frames(&clean);
    let mut rows = Vec::new();
    for kind in [VoiceDetectorKind::Earshot, VoiceDetectorKind::Silero] {
        let mut vad = config.vad.clone();
        vad.detector = kind;
        let factory = sori::voice::detector_factory(&vad, &config.rag.onnxruntime_lib)
            .with_context(|| format!("the {kind} detector does not load"))?;
        for condition in &conditions {
            let audio = load_16k_mono(&condition.file)?;
            eprintln!("vad: {kind} on {}", condition.file.display());
            rows.push(measure(&vad, &factory, condition, &audio, &truth));
        }
    }
    Ok(VadReport {
        speech_threshold: config.vad.speech_threshold,
        energy_threshold: config.vad.energy_threshold,
        max_utterance_s: config.vad.max_utterance_s,
        rows,
    })
}

/// Which frames of the clean speech are speech.
fn speech_frames(clean: &[f32]) -> Vec<bool> {
    let levels: Vec<f32> = clean.chunks_exact(FRAME_SAMPLES).map(rms).collect();
    let mut sorted = levels.clone();
    sorted.sort_by(f32::total_cmp);
    let loud = sorted.get(sorted.len() * 9 / 10).copied().unwrap_or(0.0);
    levels
        .iter()
        .map(|&l| l >= loud * SPEECH_RMS_FRACTION)
        .collect()
}

fn measure(
    vad: &VadConfig,
    factory: &DetectorFactory,
    condition: &Condition,
    audio: &[f32],
    truth: &[bool],
) -> VadRow {
    let mut detector = factory();
    let mut spent = Duration::ZERO;
    let (mut kept, mut speech, mut taken, mut pauses) = (0usize, 0usize, 0usize, 0usize);
    for (i, frame) in audio.chunks_exact(FRAME_SAMPLES).enumerate() {
        let started = Instant::now();
        let voice = f64::from(detector.voice_probability(frame)) >= vad.speech_threshold;
        spent += started.elapsed();
        let is_speech = !condition.noise_only && truth.get(i).copied().unwrap_or(false);
        if is_speech {
            speech += 1;
            kept += usize::from(voice);
        } else {
            pauses += 1;
            taken += usize::from(voice);
        }
    }
    let (utterances, forced_cuts, longest_utterance_s) = segment(vad, factory(), audio);
    let share = |n: usize, of: usize| n as f64 / of.max(1) as f64;
    VadRow {
        condition: condition.label(),
        detector: vad.detector.to_string(),
        speech_kept: (!condition.noise_only).then(|| share(kept, speech)),
        noise_taken: share(taken, pauses),
        utterances,
        forced_cuts,
        longest_utterance_s,
        ms_per_audio_s: spent.as_secs_f64() * 1000.0
            / (audio.len() as f64 / f64::from(TARGET_SAMPLE_RATE)),
    }
}

/// The utterances sori's segmenter makes of `audio` with `vad`'s detector (no decoder runs, so
/// forced cuts fall at the quietest point): (count, cut at the maximum, longest in s).
fn segment(
    vad: &VadConfig,
    detector: Box<dyn VoiceDetector>,
    audio: &[f32],
) -> (usize, usize, f64) {
    let ended = Segmenter::with_detector(vad, detector).utterances(audio);
    let longest = ended
        .iter()
        .map(|u| u.samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE))
        .fold(0.0, f64::max);
    let forced = ended.iter().filter(|u| !u.speech_final).count();
    (ended.len(), forced, longest)
}

impl VadReport {
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "speech threshold {}, energy gate {} RMS (not applied to the shares), utterances of at most {} s\n\n\
             | audio | detector | speech kept | pauses / noise taken for speech | utterances | cut at the maximum | longest | ms per s of audio |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.speech_threshold, self.energy_threshold, self.max_utterance_s
        );
        for r in &self.rows {
            let kept = r
                .speech_kept
                .map_or("—".to_owned(), |k| format!("{:.1} %", k * 100.0));
            out.push_str(&format!(
                "| {} | {} | {kept} | {:.1} % | {} | {} | {:.1} s | {:.2} |\n",
                r.condition,
                r.detector,
                r.noise_taken * 100.0,
                r.utterances,
                r.forced_cuts,
                r.longest_utterance_s,
                r.ms_per_audio_s
            ));
        }
        out
    }
}
