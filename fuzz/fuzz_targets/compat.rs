//! The other vendors' live protocols sori speaks (docs/compatibility.md): Deepgram's
//! `/v1/listen` query string and its text messages, OpenAI Realtime's client events and the
//! session settings of `session.update` / `transcription_session.update`.
//!
//! Input: byte 0 picks the parser (even: Deepgram, odd: OpenAI Realtime), the rest is the text
//! a client sent.
//!
//! Properties: nothing panics; every refusal names what was wrong (a message, and for
//! Realtime the parameter); accepted Deepgram parameters give options sori's session resolver
//! takes or refuses with a code; a refused Realtime update leaves the session as it was, an
//! accepted one gives stream options within sori's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sori::compat::deepgram_control::parse_control;
use sori::compat::deepgram_params;
use sori::compat::realtime_config::SessionConfig;
use sori::compat::realtime_events::{ClientEvent, parse_client_event};
use sori::config::SttConfig;
use sori::session::{MAX_SILENCE_MS, MIN_SILENCE_MS, default_options, resolve_options};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector % 2 == 0 {
        deepgram(text);
    } else {
        realtime(text);
    }
});

fn deepgram(text: &str) {
    match deepgram_params::parse(Some(text)) {
        Ok(params) => {
            let base = default_options(&SttConfig::default(), false);
            match resolve_options(&base, &params.options, 1000) {
                Ok(options) => {
                    if let Some(ms) = options.silence_ms {
                        assert!((MIN_SILENCE_MS..=MAX_SILENCE_MS).contains(&ms));
                    }
                    assert!(options.vad_events);
                }
                Err(e) => assert!(!e.code.is_empty() && !e.to_string().is_empty()),
            }
        }
        Err(e) => assert!(!e.0.is_empty()),
    }
    if let Err(message) = parse_control(text) {
        assert!(message.contains("CloseStream"));
    }
}

fn realtime(text: &str) {
    match parse_client_event(text) {
        Ok((ClientEvent::SessionUpdate { session, dialect }, _)) => {
            let mut config = SessionConfig::default();
            let before = config.clone();
            match config.update(dialect, &session) {
                Ok(()) => {
                    let options = config.stream_options();
                    let rate = options.sample_rate.unwrap();
                    assert!((8_000..=48_000).contains(&rate), "rate {rate}");
                    if let Some(ms) = options.silence_ms {
                        assert!((MIN_SILENCE_MS..=MAX_SILENCE_MS).contains(&ms));
                    }
                    if let Some(t) = options.speech_threshold {
                        assert!((0.0..=1.0).contains(&t));
                    }
                    let described = config.describe("sess_x", dialect);
                    assert!(described.is_object());
                }
                Err(e) => {
                    assert!(!e.message.is_empty() && e.param.starts_with("session"));
                    assert_eq!(config, before, "a refused update changes nothing");
                }
            }
        }
        Ok(_) => {}
        Err(e) => assert!(!e.code.is_empty() && !e.message.is_empty()),
    }
}
