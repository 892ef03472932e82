//! Live PCM: what `Session::push_pcm` does with a binary `/ws` frame, minus the VAD and Whisper.
//! Frames go through `pcm::decode_frame` into mono `f32`, then through the `StreamResampler`
//! to 16 kHz, and the stream is ended with `finish` (as on `stop` or a rate change).
//!
//! Input: 4 header bytes choose the format, then the stream.
//! - byte 0: bit 0 encoding (s16le / f32le), bit 1 channels (1 / 2), bits 2-7 how many bytes
//!   (0-63) the first frame has, the rest being split into frames of that size too (plus one
//!   odd-sized tail frame);
//! - bytes 1-2: the sample rate; below 40001 it is 8000 + that (any rate in 8000..=48000),
//!   otherwise one of the rates clients really use;
//! - byte 3: frame size multiplier (frame = (bits 2-7 of byte 0 + 1) × (byte 3 + 1) bytes).
//!
//! Properties: nothing panics; a frame is accepted whole or not at all (accepted: exactly
//! `len / bytes_per_frame` samples appended, all in [-1, 1]; rejected: nothing appended, and
//! only for a length that is not a whole number of sample frames or a non-finite float); the
//! resampled stream is finite, has `round(n × 16000 / rate)` samples after `finish`, does not
//! depend on how it was cut into calls, and a finished resampler gives the same output again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sori::audio::AudioError;
use sori::audio::pcm::{Encoding, PcmFormat, decode_frame};
use sori::audio::resample::StreamResampler;

const COMMON_RATES: [u32; 10] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 44_101,
];

fuzz_target!(|data: &[u8]| {
    let [b0, r0, r1, b3, ref stream @ ..] = *data else {
        return;
    };
    let raw_rate = u32::from(u16::from_le_bytes([r0, r1]));
    let format = PcmFormat {
        encoding: if b0 & 1 == 0 {
            Encoding::PcmS16le
        } else {
            Encoding::PcmF32le
        },
        sample_rate: if raw_rate <= 40_000 {
            8_000 + raw_rate
        } else {
            COMMON_RATES[raw_rate as usize % COMMON_RATES.len()]
        },
        channels: if b0 & 2 == 0 { 1 } else { 2 },
    };
    format
        .validate()
        .expect("every rate and channel count chosen here is valid");
    let frame_len = (usize::from(b0 >> 2) + 1) * (usize::from(b3) + 1);

    // Frame decoding, frame by frame, as the session does.
    let mut mono = Vec::new();
    for frame in stream.chunks(frame_len) {
        // Only the last sample can be touched by a bug here (stereo f32 averages into it).
        let (before, last) = (mono.len(), mono.last().copied());
        match decode_frame(&format, frame, &mut mono) {
            Ok(()) => {
                assert_eq!(frame.len() % format.bytes_per_frame(), 0);
                assert_eq!(mono.len(), before + frame.len() / format.bytes_per_frame());
                assert_eq!(
                    mono[..before].last().copied(),
                    last,
                    "an earlier sample changed"
                );
                assert!(
                    mono[before..].iter().all(|v| (-1.0..=1.0).contains(v)),
                    "a decoded sample is outside [-1, 1] or not finite"
                );
            }
            Err(e) => {
                assert_eq!(mono.len(), before, "a rejected frame appended samples");
                assert_eq!(
                    mono.last().copied(),
                    last,
                    "a rejected frame changed a sample"
                );
                match e {
                    AudioError::BadFrameLength { len, multiple, .. } => {
                        assert_eq!(len, frame.len());
                        assert_eq!(multiple, format.bytes_per_frame());
                        assert_ne!(len % multiple, 0);
                    }
                    AudioError::InvalidSamples { index, .. } => {
                        assert_eq!(format.encoding, Encoding::PcmF32le);
                        let at = index * 4;
                        let v = f32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
                        assert!(!v.is_finite());
                    }
                    other => panic!("unexpected error for a PCM frame: {other:?}"),
                }
                assert!(!e.to_string().is_empty() && e.is_client_error());
            }
        }
    }

    // Resampling: in the frames' own pieces, in one piece, and again after `finish` reset it.
    let rate = format.sample_rate;
    let mut resampler = StreamResampler::new(rate).expect("valid stream rate");
    let mut pieces = Vec::new();
    let samples_per_frame = (frame_len / format.bytes_per_frame()).max(1);
    for piece in mono.chunks(samples_per_frame) {
        resampler.process(piece, &mut pieces);
    }
    resampler.finish(&mut pieces);

    let expected = (mono.len() as u64 * 16_000 + u64::from(rate) / 2) / u64::from(rate);
    assert_eq!(
        pieces.len() as u64,
        expected,
        "{} samples at {rate} Hz resampled to {} samples, not {expected}",
        mono.len(),
        pieces.len()
    );
    assert!(
        pieces.iter().all(|v| v.is_finite()),
        "non-finite resampled sample"
    );

    let mut whole = Vec::new();
    resampler.process(&mono, &mut whole);
    resampler.finish(&mut whole);
    assert!(
        whole == pieces,
        "the output depends on how the stream was cut, or a finished resampler kept state \
         ({rate} Hz, {} samples, pieces of {samples_per_frame})",
        mono.len()
    );
});
