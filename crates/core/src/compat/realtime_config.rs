//! A Realtime transcription session's settings, read from `session.update` (the GA form:
//! `session.type = "transcription"`, `session.audio.input.{format, transcription,
//! turn_detection}`) or `transcription_session.update` (the beta form:
//! `input_audio_format`, `input_audio_transcription`, `turn_detection`), and echoed back in
//! `session.created` / `session.updated` in the form the client used.

use serde_json::{Value, json};

use crate::protocol::StreamOptions;

/// OpenAI's pcm16 is 24 kHz mono; G.711 is 8 kHz.
pub const PCM16_RATE: u32 = 24_000;
const G711_RATE: u32 = 8_000;

/// What the client's session asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// `pcm16` (or `audio/pcm`), `g711_ulaw` (`audio/pcmu`), `g711_alaw` (`audio/pcma`).
    pub format: AudioFormat,
    pub model: String,
    pub language: Option<String>,
    pub prompt: Option<String>,
    /// `None`: manual turns (`turn_detection: null`), committed by the client.
    pub turn_detection: Option<ServerVad>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Pcm16 { rate: u32 },
    Ulaw,
    Alaw,
}

/// `server_vad` (or `semantic_vad`, treated as `server_vad` with its defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerVad {
    pub threshold: f64,
    pub prefix_padding_ms: u64,
    pub silence_duration_ms: u64,
}

impl Default for ServerVad {
    fn default() -> Self {
        ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            format: AudioFormat::Pcm16 { rate: PCM16_RATE },
            model: "whisper-1".to_owned(),
            language: None,
            prompt: None,
            turn_detection: Some(ServerVad::default()),
        }
    }
}

/// What in an update cannot be used: an `invalid_request_error` naming `param`.
#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub param: String,
    pub message: String,
}

fn invalid(param: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        param: param.to_owned(),
        message: message.into(),
    }
}

/// Whether the client speaks the GA protocol (`session.update`) or the beta one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Ga,
    Beta,
}

impl SessionConfig {
    /// Applies an update's `session` object; fields it leaves out keep their values.
    pub fn update(&mut self, dialect: Dialect, session: &Value) -> Result<(), ConfigError> {
        if !session.is_object() {
            return Err(invalid("session", "session must be an object"));
        }
        let mut next = self.clone();
        match dialect {
            Dialect::Ga => next.update_ga(session)?,
            Dialect::Beta => next.update_beta(session)?,
        }
        *self = next;
        Ok(())
    }

    fn update_ga(&mut self, session: &Value) -> Result<(), ConfigError> {
        if let Some(kind) = session.get("type").and_then(Value::as_str)
            && kind != "transcription"
        {
            return Err(invalid(
                "session.type",
                format!(
                    "session type '{kind}' is not supported: sori transcribes speech; use \
                     'transcription' (or connect with ?intent=transcription)"
                ),
            ));
        }
        let input = session.pointer("/audio/input");
        if let Some(format) = input.and_then(|i| i.get("format")) {
            self.format = ga_format(format)?;
        }
        if let Some(t) = input.and_then(|i| i.get("transcription")) {
            self.transcription(t, "session.audio.input.transcription")?;
        }
        if let Some(td) = input.and_then(|i| i.get("turn_detection")) {
            self.turn_detection = turn_detection(td, "session.audio.input.turn_detection")?;
        }
        Ok(())
    }

    fn update_beta(&mut self, session: &Value) -> Result<(), ConfigError> {
        if let Some(format) = session.get("input_audio_format") {
            self.format = match format.as_str() {
                Some("pcm16") => AudioFormat::Pcm16 { rate: PCM16_RATE },
                Some("g711_ulaw") => AudioFormat::Ulaw,
                Some("g711_alaw") => AudioFormat::Alaw,
                _ => {
                    return Err(invalid(
                        "session.input_audio_format",
                        format!(
                            "input_audio_format {format} is not supported; use pcm16, \
                             g711_ulaw or g711_alaw"
                        ),
                    ));
                }
            };
        }
        if let Some(t) = session.get("input_audio_transcription") {
            self.transcription(t, "session.input_audio_transcription")?;
        }
        if let Some(td) = session.get("turn_detection") {
            self.turn_detection = turn_detection(td, "session.turn_detection")?;
        }
        Ok(())
    }

    fn transcription(&mut self, t: &Value, param: &str) -> Result<(), ConfigError> {
        if t.is_null() {
            return Ok(());
        }
        if let Some(model) = t.get("model").and_then(Value::as_str) {
            self.model = model.to_owned();
        }
        match t.get("language") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) if l.is_empty() => self.language = None,
            Some(Value::String(l)) => self.language = Some(language(l, param)?),
            Some(other) => {
                return Err(invalid(
                    &format!("{param}.language"),
                    format!("language must be a string, not {other}"),
                ));
            }
        }
        match t.get("prompt") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) => {
                self.prompt = Some(p.clone()).filter(|p| !p.trim().is_empty());
            }
            Some(other) => {
                return Err(invalid(
                    &format!("{param}.prompt"),
                    format!("prompt must be a string, not {other}"),
                ));
            }
        }
        Ok(())
    }

    /// The sori session options this configuration means.
    pub fn stream_options(&self) -> StreamOptions {
        let (encoding, rate) = match self.format {
            AudioFormat::Pcm16 { rate } => ("pcm_s16le", rate),
            AudioFormat::Ulaw => ("pcm_mulaw", G711_RATE),
            AudioFormat::Alaw => ("pcm_alaw", G711_RATE),
        };
        StreamOptions {
            encoding: Some(encoding.to_owned()),
            sample_rate: Some(rate),
            channels: Some(1),
            language: Some(self.language.clone().unwrap_or_else(|| "auto".to_owned())),
            prompt: Some(self.prompt.clone().unwrap_or_default()),
            partials: Some(true),
            keywords: Some(false),
            rag: Some(false),
            vad_events: Some(true),
            manual_turns: Some(self.turn_detection.is_none()),
            silence_ms: self.turn_detection.as_ref().map(|vad| {
                vad.silence_duration_ms.clamp(
                    crate::session::MIN_SILENCE_MS,
                    crate::session::MAX_SILENCE_MS,
                )
            }),
            // OpenAI's threshold is its own VAD's scale, not earshot's: echoed, not applied
            // (0.5 there cut quiet words short here).
            speech_threshold: None,
            ..StreamOptions::default()
        }
    }

    /// The session object of `session.created` / `session.updated`, in the client's dialect.
    pub fn describe(&self, id: &str, dialect: Dialect) -> Value {
        let turn_detection = self.turn_detection.as_ref().map(|vad| {
            json!({
                "type": "server_vad",
                "threshold": vad.threshold,
                "prefix_padding_ms": vad.prefix_padding_ms,
                "silence_duration_ms": vad.silence_duration_ms,
            })
        });
        let transcription = json!({
            "model": self.model,
            "language": self.language,
            "prompt": self.prompt.clone().unwrap_or_default(),
        });
        match dialect {
            Dialect::Ga => json!({
                "type": "transcription",
                "object": "realtime.transcription_session",
                "id": id,
                "audio": {
                    "input": {
                        "format": match self.format {
                            AudioFormat::Pcm16 { rate } => json!({"type": "audio/pcm", "rate": rate}),
                            AudioFormat::Ulaw => json!({"type": "audio/pcmu"}),
                            AudioFormat::Alaw => json!({"type": "audio/pcma"}),
                        },
                        "transcription": transcription,
                        "turn_detection": turn_detection,
                        "noise_reduction": null,
                    }
                },
                "include": null,
            }),
            Dialect::Beta => json!({
                "object": "realtime.transcription_session",
                "id": id,
                "input_audio_format": match self.format {
                    AudioFormat::Pcm16 { .. } => "pcm16",
                    AudioFormat::Ulaw => "g711_ulaw",
                    AudioFormat::Alaw => "g711_alaw",
                },
                "input_audio_transcription": transcription,
                "turn_detection": turn_detection,
                "input_audio_noise_reduction": null,
                "include": null,
                "modalities": ["text"],
                // Required by the beta SDK's type; sori issues no ephemeral keys.
                "client_secret": {"value": "", "expires_at": 0},
            }),
        }
    }
}

fn ga_format(format: &Value) -> Result<AudioFormat, ConfigError> {
    let param = "session.audio.input.format";
    match format.get("type").and_then(Value::as_str) {
        Some("audio/pcm") => {
            let rate = format
                .get("rate")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(PCM16_RATE));
            let rate = u32::try_from(rate).unwrap_or(0);
            if !(crate::audio::MIN_STREAM_SAMPLE_RATE..=crate::audio::MAX_STREAM_SAMPLE_RATE)
                .contains(&rate)
            {
                return Err(invalid(
                    &format!("{param}.rate"),
                    format!("rate {rate} is not supported; use 24000 (or 8000-48000)"),
                ));
            }
            Ok(AudioFormat::Pcm16 { rate })
        }
        Some("audio/pcmu") => Ok(AudioFormat::Ulaw),
        Some("audio/pcma") => Ok(AudioFormat::Alaw),
        _ => Err(invalid(
            param,
            format!("format {format} is not supported; use audio/pcm, audio/pcmu or audio/pcma"),
        )),
    }
}

fn turn_detection(td: &Value, param: &str) -> Result<Option<ServerVad>, ConfigError> {
    if td.is_null() {
        return Ok(None);
    }
    match td.get("type").and_then(Value::as_str) {
        Some("server_vad") | Some("semantic_vad") | None => {}
        Some(other) => {
            return Err(invalid(
                &format!("{param}.type"),
                format!("turn detection '{other}' is not supported; use server_vad or null"),
            ));
        }
    }
    let defaults = ServerVad::default();
    let threshold = td
        .get("threshold")
        .and_then(Value::as_f64)
        .unwrap_or(defaults.threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(invalid(
            &format!("{param}.threshold"),
            format!("threshold {threshold} is out of range; use 0.0 to 1.0"),
        ));
    }
    let ms = |key: &str, default: u64| td.get(key).and_then(Value::as_u64).unwrap_or(default);
    Ok(Some(ServerVad {
        threshold,
        prefix_padding_ms: ms("prefix_padding_ms", defaults.prefix_padding_ms),
        silence_duration_ms: ms("silence_duration_ms", defaults.silence_duration_ms),
    }))
}

/// OpenAI's ISO-639-1 codes; sori transcribes Korean and English.
fn language(code: &str, param: &str) -> Result<String, ConfigError> {
    let lower = code.trim().to_ascii_lowercase();
    match lower.split(['-', '_']).next().unwrap_or("") {
        primary @ ("en" | "ko") => Ok(primary.to_owned()),
        _ => Err(invalid(
            &format!("{param}.language"),
            format!("language '{code}' is not supported; use en or ko (or leave it out to detect)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_and_beta_updates_mean_the_same_session() {
        let mut ga = SessionConfig::default();
        ga.update(
            Dialect::Ga,
            &json!({"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "KTX"},
                "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 700}
            }}}),
        )
        .unwrap();
        let mut beta = SessionConfig::default();
        beta.update(
            Dialect::Beta,
            &json!({"input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "KTX"},
                "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 700}}),
        )
        .unwrap();
        assert_eq!(ga, beta);
        let options = ga.stream_options();
        assert_eq!(options.sample_rate, Some(24_000));
        assert_eq!(options.language.as_deref(), Some("en"));
        assert_eq!(options.silence_ms, Some(700));
        assert_eq!(
            options.speech_threshold, None,
            "OpenAI's threshold is not earshot's"
        );
        assert_eq!(options.manual_turns, Some(false));
    }

    #[test]
    fn null_turn_detection_means_manual_commits() {
        let mut c = SessionConfig::default();
        c.update(
            Dialect::Beta,
            &json!({"turn_detection": null, "input_audio_format": "g711_ulaw"}),
        )
        .unwrap();
        let options = c.stream_options();
        assert_eq!(options.manual_turns, Some(true));
        assert_eq!(options.encoding.as_deref(), Some("pcm_mulaw"));
        assert_eq!(options.sample_rate, Some(8_000));
    }

    #[test]
    fn what_cannot_be_used_names_the_parameter_and_keeps_the_session() {
        let mut c = SessionConfig::default();
        for (dialect, session, param) in [
            (Dialect::Ga, json!({"type": "realtime"}), "session.type"),
            (
                Dialect::Beta,
                json!({"input_audio_format": "mp3"}),
                "session.input_audio_format",
            ),
            (
                Dialect::Ga,
                json!({"audio": {"input": {"transcription": {"language": "ja"}}}}),
                "session.audio.input.transcription.language",
            ),
            (
                Dialect::Beta,
                json!({"turn_detection": {"type": "server_vad", "threshold": 2.0}}),
                "session.turn_detection.threshold",
            ),
        ] {
            let err = c.update(dialect, &session).unwrap_err();
            assert_eq!(err.param, param, "{session}");
        }
        assert_eq!(c, SessionConfig::default());
    }
}
