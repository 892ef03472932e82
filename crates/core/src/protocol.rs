//! Every message that crosses `/ws`, in one place (documented in `docs/protocol.md`).
//!
//! Client → server: binary frames of raw PCM, or JSON text frames tagged by `type`.
//! Server → client: JSON text frames tagged by `type`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audio::pcm::Encoding;

/// Bumped when a message changes incompatibly; sent in `ready`.
pub const PROTOCOL_VERSION: u32 = 1;

/// WebSocket close codes sori uses (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_LATER: u16 = 1013;
}

/// Spoken language of a session. `Auto` lets Whisper detect it per utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Ko,
    En,
    Auto,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ko => "ko",
            Language::En => "en",
            Language::Auto => "auto",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ko" | "korean" => Ok(Language::Ko),
            "en" | "english" => Ok(Language::En),
            "auto" | "" => Ok(Language::Auto),
            other => Err(format!(
                "language {other:?} is not supported; use ko, en or auto"
            )),
        }
    }
}

/// Options a client sets in the `/ws` query string or in a `start` message. Every field is
/// optional; what the server actually uses is echoed in `ready`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    pub language: Option<String>,
    /// With `language=auto`: the languages detection may choose from, `"ko,en"` (or a JSON
    /// array in `start`), or `"all"`.
    pub languages: Option<LanguageList>,
    /// With `language=auto`: keep the first confidently detected language for the rest of the
    /// session (default true); false re-detects every utterance (code-switching meetings).
    pub language_lock: Option<bool>,
    pub sample_rate: Option<u32>,
    pub encoding: Option<String>,
    pub channels: Option<u16>,
    /// Send `partial` results while an utterance is open (default true).
    pub partials: Option<bool>,
    /// Send `filtered` events for segments the hallucination filter dropped (default false).
    pub filtered: Option<bool>,
    /// Decode finished utterances again together and send `revision` events for finals whose
    /// text changed (default: true where the server has `stt.live_revision_s`).
    pub revisions: Option<bool>,
    /// Keyword extraction for finals (used once the keyword service is configured).
    pub keywords: Option<bool>,
    /// Live retrieval for finals (used once RAG is configured).
    pub rag: Option<bool>,
    /// Domain words passed to Whisper as its initial prompt for this session; empty clears
    /// the server's default prompt.
    pub prompt: Option<String>,
    /// Auth token for browsers, which cannot set headers on WebSockets.
    pub token: Option<String>,
    /// Send `speech_started` / `speech_stopped` as the voice detector opens and ends an
    /// utterance (default false).
    pub vad_events: Option<bool>,
    /// Silence that ends an utterance for this session, in milliseconds (default: the
    /// server's `vad.silence_ms`).
    pub silence_ms: Option<u64>,
    /// Utterances end only on `flush` (or at the maximum length), never on silence
    /// (default false): for clients that decide turns themselves.
    pub manual_turns: Option<bool>,
    /// Voice probability at or above which a frame is speech, 0–1 (default: the server's
    /// `vad.speech_threshold`).
    pub speech_threshold: Option<f64>,
}

/// A list of language codes as a client wrote it: `"ko,en"` in a query string, the same
/// string or `["ko","en"]` in JSON. Validated against Whisper's languages by the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LanguageList(pub Vec<String>);

impl<'de> Deserialize<'de> for LanguageList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = LanguageList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("language codes as \"ko,en\" or [\"ko\",\"en\"]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LanguageList, E> {
                Ok(LanguageList(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<LanguageList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(LanguageList(out))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A client's JSON text frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Sets or changes options before audio is sent.
    Start(StreamOptions),
    /// Base64 PCM in the session's encoding; `input_audio_buffer.append` is OpenAI Realtime's name.
    #[serde(alias = "input_audio_buffer.append")]
    Audio { audio: String },
    /// Ends the open utterance now and sends its final.
    Flush,
    /// Keeps an idle connection open.
    Keepalive,
    /// Finishes every pending utterance, sends the remaining finals and `closed`, then closes.
    Stop,
}

/// The message types a client may send, for error messages.
pub const CLIENT_MESSAGE_TYPES: &str = "start, audio, flush, keepalive, stop";

/// Why a text frame could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("text frame is not JSON ({0}); send JSON objects with a \"type\" field, or binary PCM")]
    NotJson(String),
    #[error("message has no \"type\" field; accepted types: {CLIENT_MESSAGE_TYPES}")]
    MissingType,
    #[error("unknown message type {0:?}; accepted types: {CLIENT_MESSAGE_TYPES}")]
    UnknownType(String),
    #[error("message {kind:?} is malformed: {reason}")]
    Malformed { kind: String, reason: String },
    #[error("\"audio\" is not valid base64 ({0}); send standard base64 of raw PCM bytes")]
    BadBase64(String),
}

impl ProtocolError {
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::NotJson(_) => "invalid_json",
            ProtocolError::MissingType | ProtocolError::UnknownType(_) => "unknown_type",
            ProtocolError::Malformed { .. } => "invalid_message",
            ProtocolError::BadBase64(_) => "invalid_base64",
        }
    }
}

/// Parses a text frame, telling apart "not JSON", "unknown type" and "bad fields".
pub fn parse_client_text(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let kind = match value.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        _ => return Err(ProtocolError::MissingType),
    };
    const KNOWN: [&str; 6] = [
        "start",
        "audio",
        "input_audio_buffer.append",
        "flush",
        "keepalive",
        "stop",
    ];
    if !KNOWN.contains(&kind.as_str()) {
        return Err(ProtocolError::UnknownType(kind));
    }
    serde_json::from_value(value).map_err(|e| ProtocolError::Malformed {
        kind,
        reason: e.to_string(),
    })
}

/// Decodes the base64 payload of an `audio` message.
pub fn decode_base64_audio(audio: &str) -> Result<Vec<u8>, ProtocolError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(audio.trim())
        .map_err(|e| ProtocolError::BadBase64(e.to_string()))
}

/// One recognised word with its time span in seconds from the start of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

/// A keyword of a final segment, with its category id and the category's Korean label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyword {
    pub text: String,
    pub category: String,
    pub label: String,
}

/// A document chunk related to a final segment (live RAG).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RagHit {
    pub text: String,
    pub source: String,
    pub page: Option<u32>,
    pub score: f32,
}

/// The options a session actually runs with, echoed in `ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectiveOptions {
    pub language: Language,
    /// Languages `auto` chooses from (Whisper codes; every code when unrestricted).
    pub languages: Vec<String>,
    /// Whether `auto` keeps the first confidently detected language (see the `language` event).
    pub language_lock: bool,
    pub sample_rate: u32,
    pub encoding: Encoding,
    pub channels: u16,
    pub partials: bool,
    pub filtered: bool,
    pub keywords: bool,
    pub rag: bool,
    /// The initial prompt Whisper is given (domain words), if any.
    pub prompt: Option<String>,
    /// `speech_started` / `speech_stopped` events are sent.
    #[serde(default)]
    pub vad_events: bool,
    /// This session's end-of-utterance silence; `None`: the server's `vad.silence_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_ms: Option<u64>,
    /// Utterances end only on `flush` or at the maximum length.
    #[serde(default)]
    pub manual_turns: bool,
    /// Finals are decoded again in windows and corrected with `revision` events.
    #[serde(default)]
    pub revisions: bool,
    /// This session's speech threshold; `None`: the server's `vad.speech_threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_threshold: Option<f64>,
}

/// Totals sent in `closed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub audio_seconds: f64,
    pub finals: u64,
    pub partials: u64,
    pub filtered: u64,
    pub errors: u64,
    /// `revision` events sent.
    #[serde(default)]
    pub revisions: u64,
    /// Files this session's transcript was written to.
    pub outputs: Vec<String>,
}

/// A server → client message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Ready {
        session_id: String,
        protocol_version: u32,
        model: String,
        /// Boxed: the options are the largest field of any message, and `ready` is rare.
        options: Box<EffectiveOptions>,
    },
    /// Provisional text of the open utterance; replaced by later partials and by its final.
    Partial {
        segment_id: u64,
        text: String,
        start: f64,
        end: f64,
    },
    Final {
        segment_id: u64,
        text: String,
        start: f64,
        end: f64,
        language: String,
        words: Vec<Word>,
        avg_logprob: f32,
        no_speech_prob: f32,
        /// True when the speaker stopped (silence, flush, stop); false when a long
        /// utterance was split at its maximum length and speech goes on.
        speech_final: bool,
    },
    /// One keyword of a final segment, sent the moment the LLM has written it (answers are
    /// streamed); the segment's `keywords` event follows with the complete list.
    Keyword {
        segment_id: u64,
        keyword: Keyword,
        /// Milliseconds from the request for keywords to this keyword.
        latency_ms: u64,
    },
    /// The voice detector heard speech begin (only with `vad_events`): segment `segment_id`
    /// is open from `start` seconds.
    SpeechStarted { segment_id: u64, start: f64 },
    /// The utterance of `segment_id` ended at `end` seconds (only with `vad_events`); `kept`
    /// is false when it held too little voiced audio to be decoded (no final follows).
    SpeechStopped {
        segment_id: u64,
        end: f64,
        kept: bool,
    },
    /// A `flush` ended every utterance before `next_segment_id` (only with `vad_events`): the
    /// finals of those segments are the flush's result.
    Flushed { next_segment_id: u64 },
    /// Keywords of a final segment, sent after that final.
    Keywords {
        segment_id: u64,
        keywords: Vec<Keyword>,
        model: String,
        latency_ms: u64,
        /// True when the result came from the cache, not from the LLM.
        cached: bool,
    },
    /// Indexed chunks related to a final segment (only with `rag=true`), sent after the final.
    Rag {
        segment_id: u64,
        hits: Vec<RagHit>,
        latency_ms: u64,
    },
    /// With `language=auto`: the session's language was detected with confidence and is kept
    /// for the rest of the session (sent once, before the final that decided it).
    Language {
        language: String,
        /// Detection probability within the session's language set.
        probability: f32,
        /// The segment whose utterance decided it.
        segment_id: u64,
        locked: bool,
    },
    /// A final decoded again with the speech around it (only with `revisions`): the segment's
    /// new final, replacing the one sent before. An empty `text` withdraws the segment (its
    /// words went to a neighbour, or the filter dropped it). A revision with text gets its own
    /// keywords and documents, as a final does.
    Revision {
        segment_id: u64,
        text: String,
        start: f64,
        end: f64,
        language: String,
        words: Vec<Word>,
        avg_logprob: f32,
        no_speech_prob: f32,
    },
    /// A segment the hallucination filter dropped (only sent to clients that asked).
    Filtered {
        segment_id: u64,
        text: String,
        reason: String,
        start: f64,
        end: f64,
    },
    Status {
        /// How far decoding trails the audio received, in milliseconds.
        lag_ms: u64,
        /// Decode requests waiting for a worker, across all sessions.
        queue_depth: usize,
        audio_seconds: f64,
        /// The language finals are decoded in: the forced one, or the locked one with `auto`;
        /// `null` while `auto` is still detecting per utterance.
        language: Option<String>,
    },
    Error {
        code: String,
        message: String,
        /// True when the server will close the connection after this message.
        fatal: bool,
    },
    Closed {
        session_id: String,
        summary: SessionSummary,
    },
}

/// What a client ends up showing: each segment's final text, replaced by its `revision` when
/// one came (an empty revision withdraws the segment), in segment order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentTexts(std::collections::BTreeMap<u64, String>);

impl SegmentTexts {
    /// Takes in a final or a revision; any other message is ignored.
    pub fn take(&mut self, message: &ServerMessage) {
        match message {
            ServerMessage::Final {
                segment_id, text, ..
            }
            | ServerMessage::Revision {
                segment_id, text, ..
            } => {
                self.0.insert(*segment_id, text.clone());
            }
            _ => {}
        }
    }

    /// The segments' texts in order, withdrawn ones left out.
    pub fn texts(&self) -> Vec<String> {
        self.0.values().filter(|t| !t.is_empty()).cloned().collect()
    }
}

impl ServerMessage {
    pub fn error(code: &str, message: impl Into<String>, fatal: bool) -> Self {
        ServerMessage::Error {
            code: code.to_owned(),
            message: message.into(),
            fatal,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_message() {
        assert!(matches!(
            parse_client_text(r#"{"type":"stop"}"#).unwrap(),
            ClientMessage::Stop
        ));
        assert!(matches!(
            parse_client_text(r#"{"type":"flush"}"#).unwrap(),
            ClientMessage::Flush
        ));
        assert!(matches!(
            parse_client_text(r#"{"type":"keepalive"}"#).unwrap(),
            ClientMessage::Keepalive
        ));
        match parse_client_text(r#"{"type":"audio","audio":"AAA="}"#).unwrap() {
            ClientMessage::Audio { audio } => assert_eq!(audio, "AAA="),
            other => panic!("{other:?}"),
        }
        match parse_client_text(r#"{"type":"input_audio_buffer.append","audio":"AAA="}"#).unwrap() {
            ClientMessage::Audio { audio } => assert_eq!(audio, "AAA="),
            other => panic!("{other:?}"),
        }
        match parse_client_text(r#"{"type":"start","language":"en","sample_rate":48000}"#).unwrap()
        {
            ClientMessage::Start(o) => {
                assert_eq!(o.language.as_deref(), Some("en"));
                assert_eq!(o.sample_rate, Some(48000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tells_apart_each_kind_of_bad_text() {
        assert_eq!(
            parse_client_text("hello").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(parse_client_text("{}").unwrap_err().code(), "unknown_type");
        let e = parse_client_text(r#"{"type":"dance"}"#).unwrap_err();
        assert_eq!(e.code(), "unknown_type");
        assert!(e.to_string().contains("flush"), "{e}");
        let e = parse_client_text(r#"{"type":"audio"}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_message");
        assert!(e.to_string().contains("audio"), "{e}");
        let e = parse_client_text(r#"{"type":"start","sample_rate":"fast"}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_message");
        assert_eq!(
            decode_base64_audio("!!!").unwrap_err().code(),
            "invalid_base64"
        );
    }

    #[test]
    fn server_messages_carry_their_type_tag() {
        let m = ServerMessage::Partial {
            segment_id: 3,
            text: "안녕".into(),
            start: 1.0,
            end: 2.0,
        };
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(v["type"], "partial");
        assert_eq!(v["segment_id"], 3);
        let e = ServerMessage::error("invalid_json", "x", false);
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["fatal"], false);
    }

    #[test]
    fn language_lists_come_as_a_string_or_an_array() {
        let q: StreamOptions =
            serde_urlencoded::from_str("language=auto&languages=ko,en&language_lock=false")
                .unwrap();
        assert_eq!(q.languages, Some(LanguageList(vec!["ko,en".to_owned()])));
        assert_eq!(q.language_lock, Some(false));
        for text in [
            r#"{"type":"start","languages":["ko","ja"]}"#,
            r#"{"type":"start","languages":"ko,ja"}"#,
        ] {
            match parse_client_text(text).unwrap() {
                ClientMessage::Start(o) => {
                    assert_eq!(o.languages.unwrap().0.join(","), "ko,ja");
                }
                other => panic!("{other:?}"),
            }
        }
        let e = parse_client_text(r#"{"type":"start","languages":5}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_message");
        assert!(e.to_string().contains("ko,en"), "{e}");
    }

    #[test]
    fn language_parsing_says_what_is_accepted() {
        assert_eq!("KO".parse::<Language>().unwrap(), Language::Ko);
        let e = "fr".parse::<Language>().unwrap_err();
        assert!(e.contains("ko, en or auto"));
    }
}
