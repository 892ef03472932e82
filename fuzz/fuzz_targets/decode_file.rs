//! Uploaded files: `audio::decode::decode_bytes`, what `POST /api/transcribe` and
//! `/v1/audio/transcriptions` run on the upload, then `resample::resample_all` to 16 kHz, what
//! the transcriber runs next.
//!
//! Input: byte 0 picks the extension hint (taken from the upload's file name in the server),
//! the rest is the file. scripts/fuzz.sh caps inputs with -max_len so one run stays fast.
//!
//! Properties: nothing panics; a decoded file has samples, all in [-1, 1], a sample rate and a
//! matching duration; resampling a file in the accepted rate range gives finite samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sori::audio::decode::decode_bytes;
use sori::audio::resample::resample_all;
use sori::audio::{AudioError, MAX_FILE_SAMPLE_RATE, MIN_FILE_SAMPLE_RATE};

const HINTS: [Option<&str>; 8] = [
    None,
    Some("wav"),
    Some("mp3"),
    Some("flac"),
    Some("ogg"),
    Some(".WAV"),
    Some(""),
    Some("txt"),
];

/// Decoded audio longer than this is not resampled (it would dominate the run time). At
/// -max_len=65536 only highly compressible streams (constant FLAC subframes, say) get there.
const MAX_RESAMPLED_SAMPLES: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let hint = HINTS[usize::from(selector) % HINTS.len()];
    match decode_bytes(file.to_vec(), hint) {
        Ok(decoded) => {
            assert!(!decoded.samples.is_empty());
            assert!(decoded.sample_rate > 0);
            assert!(
                decoded.samples.iter().all(|v| (-1.0..=1.0).contains(v)),
                "a decoded sample is outside [-1, 1] or not finite"
            );
            let duration = decoded.samples.len() as f64 / f64::from(decoded.sample_rate);
            assert!((decoded.duration_s - duration).abs() < 1e-9);
            if decoded.samples.len() > MAX_RESAMPLED_SAMPLES {
                return;
            }
            match resample_all(&decoded.samples, decoded.sample_rate) {
                Ok(out) => {
                    assert!(
                        out.iter().all(|v| v.is_finite()),
                        "non-finite resampled sample"
                    );
                    if decoded.sample_rate == 16_000 {
                        assert_eq!(out, decoded.samples);
                    }
                }
                Err(e) => {
                    assert!(
                        !(MIN_FILE_SAMPLE_RATE..=MAX_FILE_SAMPLE_RATE)
                            .contains(&decoded.sample_rate),
                        "resampling {} Hz failed: {e}",
                        decoded.sample_rate
                    );
                    assert_eq!(e.code(), "unsupported_sample_rate");
                }
            }
        }
        Err(e) => {
            assert!(matches!(
                e,
                AudioError::Undecodable { .. } | AudioError::EmptyAudio
            ));
            assert!(!e.to_string().is_empty() && e.is_client_error());
        }
    }
});
