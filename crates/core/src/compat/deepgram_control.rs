//! The text messages of a Deepgram live client: `KeepAlive`, `Finalize`, `CloseStream`.

use serde::Deserialize;

/// A text frame from a Deepgram client.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum ControlMessage {
    KeepAlive,
    Finalize,
    CloseStream,
}

/// What a text frame could not be, for the `Error` reply.
pub fn parse_control(text: &str) -> Result<ControlMessage, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "text message not understood ({e}); send binary linear16 audio, or JSON \
             {{\"type\": \"KeepAlive\" | \"Finalize\" | \"CloseStream\"}}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_parse_and_others_say_what_is_accepted() {
        assert_eq!(
            parse_control(r#"{"type":"Finalize"}"#),
            Ok(ControlMessage::Finalize)
        );
        assert_eq!(
            parse_control(r#"{"type":"KeepAlive"}"#),
            Ok(ControlMessage::KeepAlive)
        );
        assert_eq!(
            parse_control(r#"{"type":"CloseStream"}"#),
            Ok(ControlMessage::CloseStream)
        );
        let err = parse_control(r#"{"type":"Close"}"#).unwrap_err();
        assert!(err.contains("CloseStream"), "{err}");
        assert!(parse_control("not json").is_err());
    }
}
