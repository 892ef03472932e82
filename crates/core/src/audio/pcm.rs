//! Live PCM frames → mono `f32` samples.
//!
//! A client declares its format once (`encoding`, `sample_rate`, `channels`), then sends raw
//! little-endian PCM about 50 times a second. [`decode_frame`] turns one such frame into mono
//! samples in `[-1, 1]`, appending to the caller's buffer: no allocation beyond that buffer
//! growing, no intermediate copies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audio::{
    AudioError, MAX_STREAM_SAMPLE_RATE, MIN_STREAM_SAMPLE_RATE, TARGET_SAMPLE_RATE,
};

/// Sample encoding of a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// 16-bit signed integer, little-endian: what browsers' `Int16Array` and most SDKs send.
    #[default]
    #[serde(alias = "s16le", alias = "pcm16", alias = "linear16")]
    PcmS16le,
    /// 32-bit IEEE float, little-endian: what Web Audio's `Float32Array` holds.
    #[serde(alias = "f32le", alias = "float32")]
    PcmF32le,
    /// G.711 μ-law, 8 bits: telephony (North America, Japan), usually at 8 kHz.
    #[serde(alias = "mulaw", alias = "ulaw", alias = "g711_ulaw")]
    PcmMulaw,
    /// G.711 A-law, 8 bits: telephony (Europe, Korea), usually at 8 kHz.
    #[serde(alias = "alaw", alias = "g711_alaw")]
    PcmAlaw,
}

impl Encoding {
    /// Every encoding, for listings (e.g. `/api/config`).
    pub const ALL: [Encoding; 4] = [
        Encoding::PcmS16le,
        Encoding::PcmF32le,
        Encoding::PcmMulaw,
        Encoding::PcmAlaw,
    ];

    /// The canonical protocol name (`pcm_s16le`, `pcm_f32le`).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::PcmS16le => "pcm_s16le",
            Encoding::PcmF32le => "pcm_f32le",
            Encoding::PcmMulaw => "pcm_mulaw",
            Encoding::PcmAlaw => "pcm_alaw",
        }
    }

    /// Bytes in one sample of one channel.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::PcmS16le => 2,
            Encoding::PcmF32le => 4,
            Encoding::PcmMulaw | Encoding::PcmAlaw => 1,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = AudioError;

    /// Accepts the canonical names and common aliases, case-insensitively:
    /// `pcm_s16le`/`s16le`/`pcm16`/`linear16`, `pcm_f32le`/`f32le`/`float32`,
    /// `pcm_mulaw`/`mulaw`/`ulaw`/`g711_ulaw` and `pcm_alaw`/`alaw`/`g711_alaw`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pcm_s16le" | "s16le" | "pcm16" | "linear16" => Ok(Encoding::PcmS16le),
            "pcm_f32le" | "f32le" | "float32" => Ok(Encoding::PcmF32le),
            "pcm_mulaw" | "mulaw" | "ulaw" | "g711_ulaw" => Ok(Encoding::PcmMulaw),
            "pcm_alaw" | "alaw" | "g711_alaw" => Ok(Encoding::PcmAlaw),
            _ => Err(AudioError::UnsupportedEncoding { got: s.to_string() }),
        }
    }
}

/// The declared format of a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcmFormat {
    /// How each sample is stored.
    pub encoding: Encoding,
    /// Samples per second per channel; 8000–48000 Hz.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo, interleaved L R; downmixed by averaging).
    pub channels: u16,
}

impl Default for PcmFormat {
    /// 16 kHz mono s16le: Whisper's own rate, no resampling needed.
    fn default() -> Self {
        PcmFormat {
            encoding: Encoding::PcmS16le,
            sample_rate: TARGET_SAMPLE_RATE,
            channels: 1,
        }
    }
}

impl PcmFormat {
    /// Checks the rate (8000–48000 Hz) and channel count (1 or 2).
    pub fn validate(&self) -> Result<(), AudioError> {
        if !(MIN_STREAM_SAMPLE_RATE..=MAX_STREAM_SAMPLE_RATE).contains(&self.sample_rate) {
            return Err(AudioError::UnsupportedSampleRate {
                rate: self.sample_rate,
                min: MIN_STREAM_SAMPLE_RATE,
                max: MAX_STREAM_SAMPLE_RATE,
            });
        }
        if !(1..=2).contains(&self.channels) {
            return Err(AudioError::UnsupportedChannels {
                channels: self.channels,
            });
        }
        Ok(())
    }

    /// Bytes in one sample frame (one sample of every channel).
    pub fn bytes_per_frame(&self) -> usize {
        self.encoding.bytes_per_sample() * usize::from(self.channels.max(1))
    }

    /// Bytes per second of audio in this format (for lag and size limits).
    pub fn bytes_per_second(&self) -> usize {
        self.bytes_per_frame() * self.sample_rate as usize
    }
}

/// Appends the mono `f32` samples of one frame to `out`.
///
/// - `pcm_s16le` is scaled by 1/32768 (so `i16::MIN` is exactly -1.0);
/// - `pcm_f32le` must be finite (NaN or ±inf is an error) and is clamped to `[-1, 1]`;
/// - stereo is downmixed by averaging left and right.
///
/// A byte count that is not a whole number of sample frames is an error, and so is a bad
/// sample: in both cases nothing from this frame is appended. An empty frame appends nothing.
/// The format is assumed validated ([`PcmFormat::validate`]); a zero channel count is treated
/// as mono.
pub fn decode_frame(fmt: &PcmFormat, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), AudioError> {
    let frame_bytes = fmt.bytes_per_frame();
    if !bytes.len().is_multiple_of(frame_bytes) {
        return Err(AudioError::BadFrameLength {
            len: bytes.len(),
            multiple: frame_bytes,
            encoding: fmt.encoding,
            channels: fmt.channels,
        });
    }
    out.reserve(bytes.len() / frame_bytes);
    let stereo = fmt.channels == 2;
    match fmt.encoding {
        Encoding::PcmS16le => {
            const SCALE: f32 = 1.0 / 32768.0;
            let s16 = |b: &[u8]| f32::from(i16::from_le_bytes([b[0], b[1]])) * SCALE;
            if stereo {
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|fr| (s16(&fr[..2]) + s16(&fr[2..])) * 0.5),
                );
            } else {
                out.extend(bytes.chunks_exact(2).map(s16));
            }
        }
        Encoding::PcmMulaw | Encoding::PcmAlaw => {
            const SCALE: f32 = 1.0 / 32768.0;
            let expand = if fmt.encoding == Encoding::PcmMulaw {
                mulaw_to_linear
            } else {
                alaw_to_linear
            };
            let sample = |b: u8| f32::from(expand(b)) * SCALE;
            if stereo {
                out.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|fr| (sample(fr[0]) + sample(fr[1])) * 0.5),
                );
            } else {
                out.extend(bytes.iter().map(|&b| sample(b)));
            }
        }
        Encoding::PcmF32le => {
            let start = out.len();
            let f32le = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            for (i, sample) in bytes.chunks_exact(4).map(f32le).enumerate() {
                if !sample.is_finite() {
                    out.truncate(start);
                    return Err(AudioError::InvalidSamples {
                        index: i,
                        value: sample.to_string(),
                    });
                }
                let v = sample.clamp(-1.0, 1.0);
                if stereo && i % 2 == 1 {
                    // Second channel of the frame: average with the first, already pushed.
                    if let Some(left) = out.last_mut() {
                        *left = (*left + v) * 0.5;
                    }
                } else {
                    out.push(v);
                }
            }
        }
    }
    Ok(())
}

/// G.711 μ-law byte → 16-bit linear sample (ITU-T G.711; 0xFF and 0x7F are silence).
pub fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// G.711 A-law byte → 16-bit linear sample (ITU-T G.711; 0xD5 and 0x55 are the quietest).
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_bytes_expand_to_the_standard_values() {
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x7F), 0);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        let mut out = Vec::new();
        decode_frame(&fmt(Encoding::PcmMulaw, 1), &[0xFF, 0x80], &mut out).unwrap();
        assert_eq!(out, vec![0.0, 32124.0 / 32768.0]);
    }

    fn fmt(encoding: Encoding, channels: u16) -> PcmFormat {
        PcmFormat {
            encoding,
            sample_rate: 16_000,
            channels,
        }
    }

    fn s16_bytes(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn s16_mono_scales_to_unit_range() {
        let mut out = Vec::new();
        let b = s16_bytes(&[0, 16384, -16384, i16::MAX, i16::MIN]);
        decode_frame(&fmt(Encoding::PcmS16le, 1), &b, &mut out).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 0.5);
        assert_eq!(out[2], -0.5);
        assert!((out[3] - 1.0).abs() < 1e-4);
        assert_eq!(out[4], -1.0);
    }

    #[test]
    fn appends_without_touching_existing_samples() {
        let mut out = vec![0.25f32];
        decode_frame(&fmt(Encoding::PcmS16le, 1), &s16_bytes(&[16384]), &mut out).unwrap();
        assert_eq!(out, vec![0.25, 0.5]);
    }

    #[test]
    fn s16_stereo_downmixes_by_averaging() {
        let mut out = Vec::new();
        let b = s16_bytes(&[16384, 0, -16384, -16384, 16384, -16384]);
        decode_frame(&fmt(Encoding::PcmS16le, 2), &b, &mut out).unwrap();
        assert_eq!(out, vec![0.25, -0.5, 0.0]);
    }

    #[test]
    fn f32_mono_and_clamping() {
        let mut out = Vec::new();
        let b = f32_bytes(&[0.0, 0.5, -0.25, 1.5, -3.0]);
        decode_frame(&fmt(Encoding::PcmF32le, 1), &b, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 0.5, -0.25, 1.0, -1.0]);
    }

    #[test]
    fn f32_stereo_downmixes_by_averaging() {
        let mut out = vec![9.0];
        let b = f32_bytes(&[0.5, 0.0, -1.0, -0.5, 2.0, 0.0]);
        decode_frame(&fmt(Encoding::PcmF32le, 2), &b, &mut out).unwrap();
        assert_eq!(out, vec![9.0, 0.25, -0.75, 0.5]);
    }

    #[test]
    fn odd_byte_counts_are_rejected_with_sizes() {
        let mut out = vec![1.0];
        let e = decode_frame(&fmt(Encoding::PcmS16le, 1), &[1, 2, 3], &mut out).unwrap_err();
        assert_eq!(e.code(), "bad_frame_length");
        let msg = e.to_string();
        assert!(
            msg.contains("3 bytes") && msg.contains("multiple of 2"),
            "{msg}"
        );
        let e = decode_frame(&fmt(Encoding::PcmS16le, 2), &[0; 6], &mut out).unwrap_err();
        assert!(e.to_string().contains("multiple of 4"), "{e}");
        let e = decode_frame(&fmt(Encoding::PcmF32le, 2), &[0; 12], &mut out).unwrap_err();
        assert!(e.to_string().contains("multiple of 8"), "{e}");
        assert_eq!(out, vec![1.0], "nothing appended from bad frames");
    }

    #[test]
    fn empty_frame_is_fine() {
        let mut out = Vec::new();
        decode_frame(&fmt(Encoding::PcmF32le, 2), &[], &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn non_finite_floats_are_rejected_and_nothing_pushed() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for ch in [1u16, 2] {
                let mut out = vec![0.125];
                let b = f32_bytes(&[0.1, 0.2, 0.3, bad, 0.4, 0.5]);
                let e = decode_frame(&fmt(Encoding::PcmF32le, ch), &b, &mut out).unwrap_err();
                assert_eq!(e.code(), "invalid_samples");
                assert!(e.to_string().contains("sample 3"), "{e}");
                assert_eq!(out, vec![0.125]);
            }
        }
    }

    #[test]
    fn validate_rates_and_channels() {
        let mut f = PcmFormat::default();
        assert!(f.validate().is_ok());
        for ok in [8000, 11025, 16000, 22050, 44100, 48000] {
            f.sample_rate = ok;
            assert!(f.validate().is_ok(), "{ok}");
        }
        for bad in [0, 7999, 48001, 96000] {
            f.sample_rate = bad;
            let e = f.validate().unwrap_err();
            assert_eq!(e.code(), "unsupported_sample_rate");
            assert!(e.to_string().contains("8000–48000 Hz"), "{e}");
        }
        f.sample_rate = 16000;
        for bad in [0u16, 3, 6] {
            f.channels = bad;
            let e = f.validate().unwrap_err();
            assert_eq!(e.code(), "unsupported_channels");
            assert!(e.to_string().contains("mono (1) or stereo (2)"), "{e}");
        }
    }

    #[test]
    fn encoding_names_parse_and_serialize() {
        assert_eq!("pcm_s16le".parse::<Encoding>().unwrap(), Encoding::PcmS16le);
        assert_eq!("PCM_F32LE".parse::<Encoding>().unwrap(), Encoding::PcmF32le);
        assert_eq!("linear16".parse::<Encoding>().unwrap(), Encoding::PcmS16le);
        let e = "opus".parse::<Encoding>().unwrap_err();
        assert_eq!(e.code(), "unsupported_encoding");
        assert!(e.to_string().contains("\"opus\""), "{e}");
        assert_eq!(Encoding::default(), Encoding::PcmS16le);
        assert_eq!(Encoding::PcmF32le.to_string(), "pcm_f32le");
        for enc in Encoding::ALL {
            assert_eq!(enc.as_str().parse::<Encoding>().unwrap(), enc);
        }
    }

    #[test]
    fn serde_names_are_snake_case_with_aliases() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, StrDeserializer};
        let parse = |s: &'static str| {
            let d: StrDeserializer<'_, Error> = s.into_deserializer();
            Encoding::deserialize(d)
        };
        assert_eq!(parse("pcm_s16le").unwrap(), Encoding::PcmS16le);
        assert_eq!(parse("pcm_f32le").unwrap(), Encoding::PcmF32le);
        assert_eq!(parse("pcm16").unwrap(), Encoding::PcmS16le);
        assert_eq!(parse("mulaw").unwrap(), Encoding::PcmMulaw);
        assert_eq!(parse("g711_alaw").unwrap(), Encoding::PcmAlaw);
        assert!(parse("opus").is_err());
    }

    #[test]
    fn bytes_per_second() {
        let f = PcmFormat {
            encoding: Encoding::PcmF32le,
            sample_rate: 48_000,
            channels: 2,
        };
        assert_eq!(f.bytes_per_frame(), 8);
        assert_eq!(f.bytes_per_second(), 384_000);
    }
}
