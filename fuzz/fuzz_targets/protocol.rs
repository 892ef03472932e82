//! Client text frames on `/ws`: `parse_client_text`, the base64 of `audio` messages, and the
//! stream options a client sets in a `start` message or in the `/ws` query string, checked the
//! way `session::resolve_options` checks them (language, encoding, then rate and channels).
//!
//! Properties: nothing panics; every error has a stable code and a message; decoded audio is
//! never longer than the `len / 4 * 3` bound `/ws` checks against `server.max_frame_bytes`
//! before decoding; accepted base64 re-encodes to itself (the standard alphabet is canonical).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sori::audio::pcm::{Encoding, PcmFormat};
use sori::protocol::{
    ClientMessage, Language, ServerMessage, StreamOptions, decode_base64_audio, parse_client_text,
};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time the server sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match parse_client_text(text) {
        Ok(ClientMessage::Audio { audio }) => check_audio(&audio),
        Ok(ClientMessage::Start(options)) => check_options(&options),
        Ok(ClientMessage::Flush | ClientMessage::Keepalive | ClientMessage::Stop) => {}
        Err(e) => check_error(e.code(), &e.to_string()),
    }

    // The `/ws?…` query string (serde_urlencoded into the same options).
    if let Ok(options) = serde_urlencoded::from_str::<StreamOptions>(text) {
        check_options(&options);
    }

    // A bare payload, as if it were the `audio` field.
    check_audio(text);
});

fn check_error(code: &str, message: &str) {
    assert!(
        !code.is_empty()
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    assert!(!message.is_empty());
    // The error event the server sends back must serialise.
    let json = ServerMessage::error(code, message, false).to_json();
    assert!(json.starts_with('{'));
}

fn check_audio(audio: &str) {
    match decode_base64_audio(audio) {
        Ok(bytes) => {
            assert!(
                bytes.len() <= audio.len() / 4 * 3,
                "{} bytes decoded from {} base64 characters: more than /ws's size check allows",
                bytes.len(),
                audio.len()
            );
            let again = base64::engine::general_purpose::STANDARD.encode(&bytes);
            assert_eq!(again, audio.trim(), "accepted base64 is not canonical");
        }
        Err(e) => check_error(e.code(), &e.to_string()),
    }
}

/// What `session::resolve_options` does with requested options, minus the session.
fn check_options(options: &StreamOptions) {
    if let Some(language) = &options.language {
        match language.parse::<Language>() {
            Ok(l) => assert_eq!(l.as_str().parse::<Language>(), Ok(l)),
            Err(message) => assert!(!message.is_empty()),
        }
    }
    let encoding = match options.encoding.as_deref().map(str::parse::<Encoding>) {
        None => Encoding::PcmS16le,
        Some(Ok(e)) => {
            assert_eq!(e.as_str().parse::<Encoding>().ok(), Some(e));
            e
        }
        Some(Err(e)) => {
            check_error(e.code(), &e.to_string());
            return;
        }
    };
    let format = PcmFormat {
        encoding,
        sample_rate: options.sample_rate.unwrap_or(16_000),
        channels: options.channels.unwrap_or(1),
    };
    match format.validate() {
        Ok(()) => {
            assert!((8_000..=48_000).contains(&format.sample_rate));
            assert!((1..=2).contains(&format.channels));
            assert!(format.bytes_per_second() > 0);
        }
        Err(e) => check_error(e.code(), &e.to_string()),
    }
}
