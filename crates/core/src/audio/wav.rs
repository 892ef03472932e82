//! A minimal WAV writer (16-bit PCM) for generated test and benchmark audio; its header may
//! declare a length of the caller's choosing (the lying headers the decoder must survive).

use std::io::Write;
use std::path::Path;

use super::TARGET_SAMPLE_RATE;

/// Writes `samples` (mono, 16 kHz, [-1, 1]) as a canonical 44-byte-header PCM WAV file.
pub fn write_wav_16k(path: &Path, samples: &[f32]) -> std::io::Result<()> {
    let pcm: Vec<i16> = samples
        .iter()
        .map(|s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
        .collect();
    let out = wav_s16le(TARGET_SAMPLE_RATE, 1, &pcm, None);
    std::fs::File::create(path)?.write_all(&out)
}
/// A 16-bit PCM RIFF/WAVE file of `interleaved` samples whose data chunk declares
/// `declared_bytes` (the true size when `None`: a header may lie, and files must survive it).
pub fn wav_s16le(
    rate: u32,
    channels: u16,
    interleaved: &[i16],
    declared_bytes: Option<u32>,
) -> Vec<u8> {
    let data_len = (interleaved.len() * 2) as u32;
    let declared = declared_bytes.unwrap_or(data_len);
    let mut b = Vec::with_capacity(44 + interleaved.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&declared.saturating_add(36).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&declared.to_le_bytes());
    for s in interleaved {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
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
