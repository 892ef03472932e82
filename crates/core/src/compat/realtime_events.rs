//! The client events of a Realtime transcription session, parsed leniently where OpenAI is
//! (an optional `event_id`, fields it does not use) and strictly where it matters (the type,
//! the audio).

use serde_json::Value;

use super::realtime_config::Dialect;

/// The event types a client may send, for error messages.
const ACCEPTED: &str = "session.update, transcription_session.update, \
                        input_audio_buffer.append, input_audio_buffer.commit, \
                        input_audio_buffer.clear";

#[derive(Debug, PartialEq)]
pub enum ClientEvent {
    SessionUpdate { session: Value, dialect: Dialect },
    Append { audio: String },
    Commit,
    Clear,
}

/// Why a client event was refused: OpenAI's `error` fields.
#[derive(Debug, PartialEq)]
pub struct EventError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// The client's `event_id`, when it gave one.
    pub event_id: Option<String>,
}

/// The event and the client's `event_id`.
pub fn parse_client_event(text: &str) -> Result<(ClientEvent, Option<String>), EventError> {
    let value: Value = serde_json::from_str(text).map_err(|e| EventError {
        code: "invalid_json",
        message: format!("the event is not JSON ({e}); send JSON objects with a \"type\" field"),
        param: None,
        event_id: None,
    })?;
    let event_id = value
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let fail = |code, message: String, param: Option<&str>| EventError {
        code,
        message,
        param: param.map(str::to_owned),
        event_id: event_id.clone(),
    };
    let kind = value.get("type").and_then(Value::as_str).ok_or_else(|| {
        fail(
            "missing_required_parameter",
            format!("the event has no \"type\"; accepted types: {ACCEPTED}"),
            Some("type"),
        )
    })?;
    let session = || {
        value.get("session").cloned().ok_or_else(|| {
            fail(
                "missing_required_parameter",
                format!("{kind} needs a \"session\" object"),
                Some("session"),
            )
        })
    };
    let event = match kind {
        "session.update" => ClientEvent::SessionUpdate {
            session: session()?,
            dialect: Dialect::Ga,
        },
        "transcription_session.update" => ClientEvent::SessionUpdate {
            session: session()?,
            dialect: Dialect::Beta,
        },
        "input_audio_buffer.append" => match value.get("audio") {
            Some(Value::String(audio)) => ClientEvent::Append {
                audio: audio.clone(),
            },
            _ => {
                return Err(fail(
                    "missing_required_parameter",
                    "input_audio_buffer.append needs \"audio\": base64 of the audio bytes"
                        .to_owned(),
                    Some("audio"),
                ));
            }
        },
        "input_audio_buffer.commit" => ClientEvent::Commit,
        "input_audio_buffer.clear" => ClientEvent::Clear,
        other => {
            return Err(fail(
                "invalid_value",
                format!(
                    "Invalid value: '{other}'. sori's Realtime transcription accepts: {ACCEPTED}"
                ),
                Some("type"),
            ));
        }
    };
    Ok((event, event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_their_client_ids() {
        let (event, id) = parse_client_event(
            r#"{"type":"input_audio_buffer.append","audio":"AAA=","event_id":"e1"}"#,
        )
        .unwrap();
        assert_eq!(
            event,
            ClientEvent::Append {
                audio: "AAA=".to_owned()
            }
        );
        assert_eq!(id.as_deref(), Some("e1"));
        let (event, _) =
            parse_client_event(r#"{"type":"transcription_session.update","session":{}}"#).unwrap();
        assert!(matches!(
            event,
            ClientEvent::SessionUpdate {
                dialect: Dialect::Beta,
                ..
            }
        ));
        assert_eq!(
            parse_client_event(r#"{"type":"input_audio_buffer.commit"}"#)
                .unwrap()
                .0,
            ClientEvent::Commit
        );
    }

    #[test]
    fn bad_events_name_what_is_wrong_and_what_is_accepted() {
        let unknown =
            parse_client_event(r#"{"type":"response.create","event_id":"x"}"#).unwrap_err();
        assert_eq!(
            (unknown.code, unknown.param.as_deref()),
            ("invalid_value", Some("type"))
        );
        assert!(unknown.message.contains("input_audio_buffer.append"));
        assert_eq!(unknown.event_id.as_deref(), Some("x"));
        assert_eq!(parse_client_event("{").unwrap_err().code, "invalid_json");
        assert_eq!(
            parse_client_event("{}").unwrap_err().param.as_deref(),
            Some("type")
        );
        let no_audio = parse_client_event(r#"{"type":"input_audio_buffer.append"}"#).unwrap_err();
        assert_eq!(no_audio.param.as_deref(), Some("audio"));
        let no_session = parse_client_event(r#"{"type":"session.update"}"#).unwrap_err();
        assert_eq!(no_session.param.as_deref(), Some("session"));
    }
}
