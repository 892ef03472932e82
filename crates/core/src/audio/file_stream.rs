//! A file read as 16 kHz mono chunks in bounded memory: decode → resample, a tenth of a second
//! at a time, within a length limit. What file transcription feeds the session driver, so a
//! 3-hour recording costs the same memory as a 3-second one.

use crate::audio::decode::{FileDecoder, seconds};
use crate::audio::resample::StreamResampler;
use crate::audio::{AudioError, MAX_FILE_SAMPLE_RATE, MIN_FILE_SAMPLE_RATE, hours_minutes};

/// Decoded frames asked of the decoder per step when the rate is not known yet.
const FIRST_READ_FRAMES: usize = 4096;

/// A file's audio at 16 kHz, handed out in chunks; see the module doc.
#[derive(Debug)]
pub struct FileStream16k {
    decoder: FileDecoder,
    /// Made once the file's rate is known.
    resampler: Option<StreamResampler>,
    /// The longest audio accepted, in seconds; `None`: no limit.
    limit_s: Option<u64>,
    /// One step's decoded samples at the file's rate (reused).
    raw: Vec<f32>,
    /// 16 kHz samples not handed out yet (less than a chunk plus one step).
    ready: Vec<f32>,
    /// The decoder has ended and the resampler's tail is in `ready`.
    ended: bool,
}

impl FileStream16k {
    /// Reads `decoder`'s audio, refusing it with [`AudioError::TooLong`] once it is longer than
    /// `limit_s`: at once when the header declares more (and the file's size can hold what it
    /// declares), else as soon as that much was decoded. The decoded count decides; the header
    /// only refuses early.
    pub fn new(decoder: FileDecoder, limit_s: Option<u64>) -> Result<Self, AudioError> {
        if let Some(rate) = decoder.sample_rate() {
            if !(MIN_FILE_SAMPLE_RATE..=MAX_FILE_SAMPLE_RATE).contains(&rate) {
                return Err(AudioError::UnsupportedSampleRate {
                    rate,
                    min: MIN_FILE_SAMPLE_RATE,
                    max: MAX_FILE_SAMPLE_RATE,
                });
            }
            if let (Some(limit), Some(declared)) = (limit_s, decoder.declared_frames())
                && declared > limit.saturating_mul(u64::from(rate))
            {
                return Err(AudioError::TooLong {
                    limit_s: limit,
                    found: format!(
                        "its header declares {}",
                        hours_minutes(declared / u64::from(rate))
                    ),
                });
            }
        }
        Ok(FileStream16k {
            decoder,
            resampler: None,
            limit_s,
            raw: Vec::new(),
            ready: Vec::new(),
            ended: false,
        })
    }

    /// The file's own sample rate, once known.
    pub fn sample_rate(&self) -> Option<u32> {
        self.decoder.sample_rate()
    }

    /// Seconds of audio decoded so far (the whole file's length once the last chunk is out).
    pub fn duration_s(&self) -> f64 {
        seconds(
            self.decoder.frames(),
            self.decoder.sample_rate().unwrap_or(0),
        )
    }

    /// The next `len` samples at 16 kHz (fewer only for the last chunk); `None` after the last.
    /// An error ends the stream: the file is damaged or too long.
    pub fn next_chunk(&mut self, len: usize) -> Result<Option<Vec<f32>>, AudioError> {
        let len = len.max(1);
        while self.ready.len() < len && !self.ended {
            self.step()?;
        }
        if self.ready.is_empty() {
            return Ok(None);
        }
        let rest = self.ready.split_off(len.min(self.ready.len()));
        Ok(Some(std::mem::replace(&mut self.ready, rest)))
    }

    /// Decodes about a tenth of a second and resamples it into `ready`; at the end of the
    /// file, checks the decode as a whole and flushes the resampler.
    fn step(&mut self) -> Result<(), AudioError> {
        self.raw.clear();
        let frames = self
            .decoder
            .sample_rate()
            .map_or(FIRST_READ_FRAMES, |rate| (rate / 10) as usize);
        let more = self.decoder.read(&mut self.raw, frames)?;
        self.check_limit()?;
        if !self.raw.is_empty() {
            let resampler = match &mut self.resampler {
                Some(resampler) => resampler,
                None => {
                    let rate =
                        self.decoder
                            .sample_rate()
                            .ok_or_else(|| AudioError::Undecodable {
                                reason: "the file does not state its sample rate".into(),
                            })?;
                    self.resampler.insert(StreamResampler::for_file(rate)?)
                }
            };
            resampler.process(&self.raw, &mut self.ready);
        }
        if !more {
            self.decoder.finish()?;
            if let Some(resampler) = &mut self.resampler {
                resampler.finish(&mut self.ready);
            }
            self.ended = true;
        }
        Ok(())
    }

    fn check_limit(&self) -> Result<(), AudioError> {
        let (Some(limit), Some(rate)) = (self.limit_s, self.decoder.sample_rate()) else {
            return Ok(());
        };
        if self.decoder.frames() > limit.saturating_mul(u64::from(rate)) {
            return Err(AudioError::TooLong {
                limit_s: limit,
                found: format!("more than {} of audio was decoded", hours_minutes(limit)),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::resample::resample_all;
    use std::f32::consts::PI;

    /// A 16-bit PCM WAV whose data chunk says `declared_bytes` (the true size when `None`).
    fn wav(rate: u32, channels: u16, samples: &[i16], declared_bytes: Option<u32>) -> Vec<u8> {
        crate::audio::wav::wav_s16le(rate, channels, samples, declared_bytes)
    }

    fn tone(rate: u32, seconds: f32) -> Vec<i16> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| (12000.0 * (2.0 * PI * 440.0 * i as f32 / rate as f32).sin()) as i16)
            .collect()
    }

    fn stream(bytes: Vec<u8>, limit_s: Option<u64>) -> Result<FileStream16k, AudioError> {
        FileStream16k::new(FileDecoder::from_bytes(bytes, Some("wav"))?, limit_s)
    }

    fn read_all(s: &mut FileStream16k, chunk: usize) -> Result<Vec<Vec<f32>>, AudioError> {
        let mut chunks = Vec::new();
        while let Some(c) = s.next_chunk(chunk)? {
            chunks.push(c);
        }
        Ok(chunks)
    }

    #[test]
    fn chunks_are_exact_and_match_the_whole_file_resampler() {
        for rate in [16_000, 48_000, 44_100, 8_000, 96_000] {
            let pcm = tone(rate, 2.3);
            let mut s = stream(wav(rate, 1, &pcm, None), None).unwrap();
            let chunks = read_all(&mut s, 8000).unwrap();
            let (last, whole) = chunks.split_last().unwrap();
            assert!(whole.iter().all(|c| c.len() == 8000), "{rate}");
            assert!(!last.is_empty() && last.len() <= 8000, "{rate}");
            let streamed: Vec<f32> = chunks.concat();
            let mono: Vec<f32> = pcm.iter().map(|&v| f32::from(v) / 32768.0).collect();
            let reference = resample_all(&mono, rate).unwrap();
            assert!(
                streamed.len().abs_diff(reference.len()) <= 1,
                "{rate}: {} vs {}",
                streamed.len(),
                reference.len()
            );
            // Away from the edges both are the same band-limited tone.
            let worst = streamed[800..streamed.len() - 800]
                .iter()
                .zip(&reference[800..])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 0.01, "{rate}: differs by {worst}");
            assert!((s.duration_s() - 2.3).abs() < 0.01, "{rate}");
            assert_eq!(s.sample_rate(), Some(rate));
        }
    }

    #[test]
    fn longer_than_the_limit_is_refused_from_the_header() {
        let e = stream(wav(16_000, 1, &tone(16_000, 3.0), None), Some(2)).unwrap_err();
        assert_eq!(e.code(), "file_too_long", "{e}");
        assert!(e.to_string().contains("header declares 3 s"), "{e}");
        assert!(e.to_string().contains("limit of 2 s"), "{e}");
        // Within the limit: read to the end.
        let mut s = stream(wav(16_000, 1, &tone(16_000, 3.0), None), Some(3)).unwrap();
        assert_eq!(read_all(&mut s, 4000).unwrap().concat().len(), 48_000);
    }

    #[test]
    fn longer_than_the_limit_stops_while_decoding() {
        // No length in the header (a recorder's placeholder): the decoded count refuses it,
        // without decoding the rest.
        let bytes = wav(16_000, 1, &tone(16_000, 3.0), Some(u32::MAX));
        let mut s = stream(bytes, Some(2)).unwrap();
        let e = read_all(&mut s, 4000).unwrap_err();
        assert_eq!(e.code(), "file_too_long", "{e}");
        assert!(
            e.to_string().contains("more than 2 s of audio was decoded"),
            "{e}"
        );
        assert!(s.duration_s() < 2.2, "stopped early: {} s", s.duration_s());
    }

    #[test]
    fn a_wav_without_a_length_reads_to_the_end_of_the_file() {
        // 0xFFFFFFFF: "unknown", what recorders writing to a pipe leave in the header.
        let pcm = tone(16_000, 1.5);
        let mut s = stream(wav(16_000, 1, &pcm, Some(u32::MAX)), Some(60)).unwrap();
        let got = read_all(&mut s, 8000).unwrap().concat().len();
        // Whole packets only: a last partial packet (under 0.1 s) may be left out.
        assert!(got <= pcm.len() && got + 1600 >= pcm.len(), "{got}");
    }

    #[test]
    fn a_header_claiming_more_than_the_file_holds_is_not_trusted() {
        // 1 s of audio whose header claims ~2 GB (18 h): no early refusal, no huge buffer;
        // the decode reads what is there and reports the early end.
        let bytes = wav(16_000, 1, &tone(16_000, 1.0), Some(0x7FFF_FFF0));
        let decoder = FileDecoder::from_bytes(bytes, Some("wav")).unwrap();
        assert_eq!(decoder.declared_frames(), None);
        let mut s = FileStream16k::new(decoder, Some(60)).unwrap();
        let mut got = 0;
        let e = loop {
            match s.next_chunk(8000) {
                Ok(Some(c)) => got += c.len(),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert!(got <= 16_000, "{got}");
        if let Some(e) = e {
            assert_eq!(e.code(), "undecodable_audio", "{e}");
            assert!(e.to_string().contains("truncated"), "{e}");
        }
    }

    #[test]
    fn empty_and_bad_rates_are_errors() {
        let mut s = stream(wav(16_000, 1, &[], None), None);
        let e = match &mut s {
            Ok(s) => read_all(s, 8000).unwrap_err(),
            Err(e) => std::mem::replace(e, AudioError::EmptyAudio),
        };
        assert!(
            matches!(e.code(), "empty_audio" | "undecodable_audio"),
            "{e}"
        );
        let e = stream(wav(2_000, 1, &tone(2_000, 0.5), None), None).unwrap_err();
        assert_eq!(e.code(), "unsupported_sample_rate", "{e}");
    }
}
