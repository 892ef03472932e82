//! A minimal WAV writer (16 kHz mono 16-bit PCM) for generated test and benchmark audio.

use std::io::Write;
use std::path::Path;

use super::TARGET_SAMPLE_RATE;

/// Writes `samples` (mono, 16 kHz, [-1, 1]) as a canonical 44-byte-header PCM WAV file.
pub fn write_wav_16k(path: &Path, samples: &[f32]) -> std::io::Result<()> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&TARGET_SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(TARGET_SAMPLE_RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    std::fs::File::create(path)?.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_wav_decodes_back() {
        let path = std::env::temp_dir().join(format!("sori-wav-{}.wav", std::process::id()));
        let samples: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.1).sin() * 0.5).collect();
        write_wav_16k(&path, &samples).unwrap();
        let decoded = crate::audio::decode::decode_file(&path).unwrap();
        assert_eq!(decoded.sample_rate, 16000);
        assert_eq!(decoded.samples.len(), 1600);
        assert!((decoded.samples[10] - samples[10]).abs() < 1e-3);
        std::fs::remove_file(path).ok();
    }
}
