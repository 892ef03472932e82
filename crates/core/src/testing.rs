//! Test doubles and signals for driving sessions without a model or recorded speech: an
//! engine whose decoders are [`ScriptedDecoder`]s and whose voice detector is the
//! [`EnergyDetector`](crate::vad::EnergyDetector), and tone / silence to feed it. Used by the
//! core's own tests and by the server's tests of what does not need Whisper.

use std::sync::Arc;

use crate::audio::TARGET_SAMPLE_RATE;
use crate::config::{FilterSettings, SttConfig, VadConfig};
use crate::engine::Engine;
use crate::stt::engine::SttPool;
use crate::stt::scripted::{Script, ScriptedDecoder};
use crate::vad::energy_detector;

/// An engine of `stt.workers` scripted decoders over `script`, with the energy detector.
pub fn scripted_engine(script: &Arc<Script>, stt: SttConfig, vad: VadConfig) -> Engine {
    let script = Arc::clone(script);
    let pool = SttPool::start(stt.workers, stt.queue_capacity, move || {
        Ok(ScriptedDecoder::new(Arc::clone(&script)))
    })
    .expect("scripted decoders start");
    Engine::new(
        stt,
        vad,
        &FilterSettings::default(),
        pool,
        "scripted".to_owned(),
    )
    .expect("built-in filter patterns load")
    .with_voice_detector(energy_detector())
}

/// `seconds` of a 440 Hz tone at amplitude 0.3, 16 kHz: "speech" to the energy detector.
pub fn tone(seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(TARGET_SAMPLE_RATE)).round() as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / TARGET_SAMPLE_RATE as f32;
            0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
        })
        .collect()
}

/// `seconds` of digital silence, 16 kHz.
pub fn silence(seconds: f64) -> Vec<f32> {
    vec![0.0; (seconds * f64::from(TARGET_SAMPLE_RATE)).round() as usize]
}

/// 16-bit little-endian PCM bytes of `samples` (what a live client sends).
pub fn pcm_s16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect()
}
