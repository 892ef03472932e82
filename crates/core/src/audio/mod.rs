//! Audio ingest: everything between "bytes from a client or a file" and "16 kHz mono `f32`".
//!
//! - [`pcm`] parses live PCM frames (the WebSocket's binary or base64 audio) into mono `f32`.
//! - [`resample`] converts a stream or a whole clip to [`TARGET_SAMPLE_RATE`].
//! - [`decode`] opens audio files (WAV, MP3, FLAC, Ogg Vorbis) with symphonia.
//! - [`file_stream`] reads a file as 16 kHz chunks in bounded memory, within a length limit.
//! - [`noise`] mixes noise into speech at a chosen SNR (accuracy in noise).
//!
//! Every failure is an [`AudioError`] whose message says what was wrong and what is accepted, and
//! whose [`AudioError::code`] is a stable label for the protocol's `error` event.

use std::path::PathBuf;

pub mod decode;
pub mod file_stream;
pub mod noise;
pub mod pcm;
pub mod resample;
pub mod wav;

/// The sample rate Whisper (and the VAD) consume. Everything is converted to this.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Lowest sample rate a live stream may declare (narrow-band telephony).
pub const MIN_STREAM_SAMPLE_RATE: u32 = 8_000;

/// Highest sample rate a live stream may declare (browser microphones run at 44.1 or 48 kHz).
pub const MAX_STREAM_SAMPLE_RATE: u32 = 48_000;

/// Lowest sample rate accepted for a decoded file (below this no speech band is left).
pub const MIN_FILE_SAMPLE_RATE: u32 = 4_000;

/// Highest sample rate accepted for a decoded file (studio recordings go up to 384 kHz).
pub const MAX_FILE_SAMPLE_RATE: u32 = 384_000;

/// The file formats [`decode`] understands, as told to users in error messages.
pub const ACCEPTED_FILE_FORMATS: &str = "WAV (PCM or float), MP3, FLAC, Ogg Vorbis";

/// What can go wrong while turning bytes into 16 kHz mono samples.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The client named an encoding we do not parse.
    #[error(
        "audio encoding \"{got}\" is not supported; use \"pcm_s16le\" (16-bit signed little-endian) or \"pcm_f32le\" (32-bit float little-endian)"
    )]
    UnsupportedEncoding {
        /// What the client sent.
        got: String,
    },

    /// A sample rate outside the accepted range.
    #[error("sample rate {rate} Hz is not supported; use {min}–{max} Hz")]
    UnsupportedSampleRate {
        /// The rejected rate.
        rate: u32,
        /// Lowest accepted rate in this context (stream or file).
        min: u32,
        /// Highest accepted rate in this context.
        max: u32,
    },

    /// A channel count other than mono or stereo.
    #[error("{channels} audio channels are not supported; send mono (1) or stereo (2) audio")]
    UnsupportedChannels {
        /// The rejected channel count.
        channels: u16,
    },

    /// A frame whose byte count does not hold a whole number of sample frames.
    #[error(
        "audio frame of {len} bytes is not a whole number of samples; with {encoding} and {channels} channel(s) its length must be a multiple of {multiple} bytes"
    )]
    BadFrameLength {
        /// Bytes received.
        len: usize,
        /// Bytes per sample frame (bytes per sample × channels).
        multiple: usize,
        /// The declared encoding, for the message.
        encoding: pcm::Encoding,
        /// The declared channel count, for the message.
        channels: u16,
    },

    /// A float sample that is NaN or infinite.
    #[error(
        "audio frame has a non-finite sample ({value}) at sample {index}; pcm_f32le samples must be finite numbers in -1.0..=1.0"
    )]
    InvalidSamples {
        /// Index of the offending sample within the frame (interleaved, counting all channels).
        index: usize,
        /// "NaN", "inf" or "-inf".
        value: String,
    },

    /// A file symphonia could not probe or decode (unknown, truncated or corrupt).
    #[error(
        "audio file could not be decoded: {reason}; accepted formats: {formats}",
        formats = ACCEPTED_FILE_FORMATS
    )]
    Undecodable {
        /// Symphonia's reason, or ours.
        reason: String,
    },

    /// No samples at all (an empty upload or a file with no audio frames).
    #[error(
        "the audio contains no samples; send at least one sample of audio in one of: {formats}",
        formats = ACCEPTED_FILE_FORMATS
    )]
    EmptyAudio,

    /// The file could not be read from disk.
    #[error("could not read audio file {}: {source}; check that the path exists and is readable", path.display())]
    Io {
        /// The path we tried.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// A file longer than the length limit (`server.max_file_s`): refused as soon as its
    /// header declares more, or once that much was decoded; the rest is not decoded.
    #[error(
        "the audio is longer than this server's limit of {limit_s} s ({}): {found}; send a shorter file or split the recording (the limit is server.max_file_s, SORI_MAX_FILE_S)",
        hours_minutes(*limit_s)
    )]
    TooLong {
        /// The limit, in seconds.
        limit_s: u64,
        /// What showed it: "its header declares 5 h 00 min" or "more than … was decoded".
        found: String,
    },

    /// The server failed while reading the audio (a bug, not the client's fault).
    #[error("the audio could not be read because of an internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },

    /// The resampler refused its parameters (should not happen for validated rates).
    #[error(
        "could not resample audio from {rate} Hz to 16000 Hz: {reason}; use a sample rate of 8000–48000 Hz"
    )]
    Resample {
        /// The input rate.
        rate: u32,
        /// Rubato's reason.
        reason: String,
    },
}

impl AudioError {
    /// A stable snake_case code for the protocol's `error` event and HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::UnsupportedEncoding { .. } => "unsupported_encoding",
            AudioError::UnsupportedSampleRate { .. } => "unsupported_sample_rate",
            AudioError::UnsupportedChannels { .. } => "unsupported_channels",
            AudioError::BadFrameLength { .. } => "bad_frame_length",
            AudioError::InvalidSamples { .. } => "invalid_samples",
            AudioError::Undecodable { .. } => "undecodable_audio",
            AudioError::EmptyAudio => "empty_audio",
            AudioError::Io { .. } => "unreadable_file",
            AudioError::Resample { .. } => "resample_failed",
            AudioError::TooLong { .. } => "file_too_long",
            AudioError::Internal { .. } => "internal",
        }
    }

    /// True when the client (not the server) is at fault: map to a 4xx / non-fatal error event.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            AudioError::Resample { .. } | AudioError::Internal { .. }
        )
    }
}

/// `seconds` as "4 h 00 min", "1 min 30 s" or "45 s", for messages about lengths.
pub fn hours_minutes(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) if s > 0 => format!("{m} min {s:02} s"),
        (0, _) => format!("{m} min"),
        _ => format!("{h} h {m:02} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_is_accepted() {
        let e = AudioError::UnsupportedSampleRate {
            rate: 7000,
            min: 8000,
            max: 48000,
        };
        assert_eq!(
            e.to_string(),
            "sample rate 7000 Hz is not supported; use 8000–48000 Hz"
        );
        assert_eq!(e.code(), "unsupported_sample_rate");
        let e = AudioError::UnsupportedEncoding { got: "opus".into() };
        assert!(e.to_string().contains("pcm_s16le"), "{e}");
        assert_eq!(e.code(), "unsupported_encoding");
        let e = AudioError::Undecodable {
            reason: "garbage".into(),
        };
        assert!(e.to_string().contains("MP3"), "{e}");
        assert_eq!(e.code(), "undecodable_audio");
        assert_eq!(AudioError::EmptyAudio.code(), "empty_audio");
    }

    #[test]
    fn too_long_says_the_limit() {
        let e = AudioError::TooLong {
            limit_s: 4 * 3600,
            found: "its header declares 5 h 00 min".into(),
        };
        let m = e.to_string();
        assert!(m.contains("14400 s (4 h 00 min)"), "{m}");
        assert!(m.contains("server.max_file_s"), "{m}");
        assert_eq!(e.code(), "file_too_long");
        assert!(e.is_client_error());
        assert_eq!(hours_minutes(90), "1 min 30 s");
        assert_eq!(hours_minutes(60), "1 min");
        assert_eq!(hours_minutes(45), "45 s");
        assert_eq!(hours_minutes(3 * 3600 + 60), "3 h 01 min");
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let all = [
            AudioError::UnsupportedEncoding { got: String::new() },
            AudioError::UnsupportedSampleRate {
                rate: 0,
                min: 0,
                max: 0,
            },
            AudioError::UnsupportedChannels { channels: 3 },
            AudioError::BadFrameLength {
                len: 3,
                multiple: 2,
                encoding: pcm::Encoding::PcmS16le,
                channels: 1,
            },
            AudioError::InvalidSamples {
                index: 0,
                value: "NaN".into(),
            },
            AudioError::Undecodable {
                reason: String::new(),
            },
            AudioError::EmptyAudio,
            AudioError::Io {
                path: PathBuf::from("x"),
                source: std::io::Error::other("x"),
            },
            AudioError::Resample {
                rate: 1,
                reason: String::new(),
            },
            AudioError::TooLong {
                limit_s: 60,
                found: String::new(),
            },
            AudioError::Internal {
                reason: String::new(),
            },
        ];
        let mut codes: Vec<&str> = all.iter().map(|e| e.code()).collect();
        for c in &codes {
            assert!(
                c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c}"
            );
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
