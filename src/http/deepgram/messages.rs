//! Deepgram's live messages as its SDKs parse them: `Results`, `SpeechStarted`,
//! `UtteranceEnd`, `Metadata` and `Error` from the server; `KeepAlive`, `Finalize` and
//! `CloseStream` from the client.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::protocol::Word;

/// Deepgram reports one channel (channel 0 of 1); sori downmixes stereo the same way.
const ONE_CHANNEL: [u32; 2] = [0, 1];

/// The model a result came from, as Deepgram describes its own.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultsMetadata {
    pub request_id: String,
    pub model_info: ModelInfo,
    pub model_uuid: String,
}

#[derive(Debug, Serialize)]
pub struct DeepgramWord {
    /// Lower case, without punctuation, as Deepgram's `word`.
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub confidence: f64,
    /// The word as Whisper wrote it.
    pub punctuated_word: String,
}

#[derive(Debug, Serialize)]
pub struct Alternative {
    pub transcript: String,
    pub confidence: f64,
    pub words: Vec<DeepgramWord>,
}

#[derive(Debug, Serialize)]
pub struct Channel {
    pub alternatives: Vec<Alternative>,
}

/// A transcript: interim (`is_final: false`, from a partial) or final.
#[derive(Debug, Serialize)]
pub struct Results {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub channel_index: [u32; 2],
    pub duration: f64,
    pub start: f64,
    pub is_final: bool,
    pub speech_final: bool,
    pub from_finalize: bool,
    pub channel: Channel,
    pub metadata: ResultsMetadata,
}

impl Results {
    /// `words` empty for interim results (sori's partials carry no word timings).
    pub fn new(
        transcript: &str,
        (start, end): (f64, f64),
        words: &[Word],
        confidence: f64,
        metadata: ResultsMetadata,
    ) -> Self {
        Results {
            kind: "Results",
            channel_index: ONE_CHANNEL,
            duration: round_ms((end - start).max(0.0)),
            start: round_ms(start),
            is_final: false,
            speech_final: false,
            from_finalize: false,
            channel: Channel {
                alternatives: vec![Alternative {
                    transcript: transcript.trim().to_owned(),
                    confidence: round_ms(confidence),
                    words: words.iter().map(deepgram_word).collect(),
                }],
            },
            metadata,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SpeechStarted {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub channel: [u32; 2],
    pub timestamp: f64,
}

impl SpeechStarted {
    pub fn at(timestamp: f64) -> Self {
        SpeechStarted {
            kind: "SpeechStarted",
            channel: ONE_CHANNEL,
            timestamp: round_ms(timestamp),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UtteranceEnd {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub channel: [u32; 2],
    pub last_word_end: f64,
}

impl UtteranceEnd {
    pub fn after(last_word_end: f64) -> Self {
        UtteranceEnd {
            kind: "UtteranceEnd",
            channel: ONE_CHANNEL,
            last_word_end: round_ms(last_word_end),
        }
    }
}

/// Sent once, when the stream closes.
#[derive(Debug, Serialize)]
pub struct Metadata {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub transaction_key: &'static str,
    pub request_id: String,
    /// SHA-256 of the audio bytes received, hex.
    pub sha256: String,
    /// When the stream opened, RFC 3339 (UTC).
    pub created: String,
    /// Seconds of audio received.
    pub duration: f64,
    pub channels: u16,
    pub models: Vec<String>,
    pub model_info: BTreeMap<String, ModelInfo>,
}

/// A problem during the stream, in the shape of Deepgram's `Error` message.
#[derive(Debug, Serialize)]
pub struct StreamError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// sori's error code (`frame_too_large`, `backlog_full`, …).
    pub variant: String,
    pub description: String,
    pub message: String,
}

impl StreamError {
    pub fn new(code: &str, description: &str) -> Self {
        StreamError {
            kind: "Error",
            variant: code.to_owned(),
            description: description.to_owned(),
            message: description.to_owned(),
        }
    }
}

/// The body of an HTTP refusal before the upgrade, as Deepgram answers one.
#[derive(Debug, Serialize)]
pub struct HttpError {
    pub err_code: &'static str,
    pub err_msg: String,
    pub request_id: String,
}

fn deepgram_word(word: &Word) -> DeepgramWord {
    let punctuated = word.word.trim().to_owned();
    let bare: String = punctuated
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    DeepgramWord {
        word: if bare.is_empty() {
            punctuated.clone()
        } else {
            bare
        },
        start: round_ms(word.start),
        end: round_ms(word.end),
        confidence: round_ms(f64::from(word.probability)),
        punctuated_word: punctuated,
    }
}

fn round_ms(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `now` as RFC 3339 in UTC (`2026-12-05T21:40:00.123Z`).
pub fn rfc3339(now: std::time::SystemTime) -> String {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn words_keep_punctuation_only_in_punctuated_word() {
        let w = deepgram_word(&Word {
            word: " Country,".to_owned(),
            start: 1.0,
            end: 1.5,
            probability: 0.9,
        });
        assert_eq!(
            (w.word.as_str(), w.punctuated_word.as_str()),
            ("country", "Country,")
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_420_400_250);
        assert_eq!(rfc3339(t), "2026-12-04T21:40:00.250Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
