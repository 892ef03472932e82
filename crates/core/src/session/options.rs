//! What a client may ask of a session (`start` message, query string), validated against the
//! server's defaults.

use crate::audio::TARGET_SAMPLE_RATE;
use crate::audio::pcm::{Encoding, PcmFormat};
use crate::config::SttConfig;
use crate::protocol::{EffectiveOptions, Language, StreamOptions};
use crate::stt::language::LanguageSet;

/// Invalid stream options, with the protocol error code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    pub code: &'static str,
    pub message: String,
}

/// Checks a client's initial prompt: at most `max_chars` characters; blank means none.
pub fn check_prompt(prompt: &str, max_chars: usize) -> Result<Option<String>, OptionsError> {
    let prompt = prompt.trim();
    let chars = prompt.chars().count();
    if chars > max_chars {
        return Err(OptionsError {
            code: "prompt_too_long",
            message: format!(
                "prompt has {chars} characters; at most {max_chars} are accepted (stt.max_prompt_chars): \
                 give the domain words (road names, facility names) most likely to be said"
            ),
        });
    }
    Ok((!prompt.is_empty()).then(|| prompt.to_owned()))
}

/// Applies `requested` on top of `base`; the first invalid option is reported and nothing changes.
/// `max_prompt_chars` bounds the `prompt` option.
pub fn resolve_options(
    base: &EffectiveOptions,
    requested: &StreamOptions,
    max_prompt_chars: usize,
) -> Result<EffectiveOptions, OptionsError> {
    let mut out = base.clone();
    if let Some(lang) = &requested.language {
        out.language = lang.parse::<Language>().map_err(|message| OptionsError {
            code: "unsupported_language",
            message,
        })?;
    }
    if let Some(list) = &requested.languages {
        let set = LanguageSet::from_items(&list.0).map_err(|e| OptionsError {
            code: "unsupported_language",
            message: format!("languages: {e}"),
        })?;
        out.languages = set.to_strings();
    }
    if let Some(lock) = requested.language_lock {
        out.language_lock = lock;
    }
    if let Some(prompt) = &requested.prompt {
        out.prompt = check_prompt(prompt, max_prompt_chars)?;
    }
    if let Some(enc) = &requested.encoding {
        out.encoding = enc.parse::<Encoding>().map_err(|e| OptionsError {
            code: "unsupported_encoding",
            message: e.to_string(),
        })?;
    }
    if let Some(rate) = requested.sample_rate {
        out.sample_rate = rate;
    }
    if let Some(channels) = requested.channels {
        out.channels = channels;
    }
    let format = PcmFormat {
        encoding: out.encoding,
        sample_rate: out.sample_rate,
        channels: out.channels,
    };
    format.validate().map_err(|e| OptionsError {
        code: e.code(),
        message: e.to_string(),
    })?;
    if let Some(v) = requested.partials {
        out.partials = v;
    }
    if let Some(v) = requested.filtered {
        out.filtered = v;
    }
    if let Some(v) = requested.revisions {
        out.revisions = v;
    }
    if let Some(v) = requested.keywords {
        out.keywords = v;
    }
    if let Some(v) = requested.rag {
        out.rag = v;
    }
    if let Some(v) = requested.vad_events {
        out.vad_events = v;
    }
    if let Some(v) = requested.manual_turns {
        out.manual_turns = v;
    }
    if let Some(ms) = requested.silence_ms {
        if !(MIN_SILENCE_MS..=MAX_SILENCE_MS).contains(&ms) {
            return Err(OptionsError {
                code: "invalid_option",
                message: format!(
                    "silence_ms {ms} is out of range; use {MIN_SILENCE_MS} to {MAX_SILENCE_MS} ms"
                ),
            });
        }
        out.silence_ms = Some(ms);
    }
    if let Some(threshold) = requested.speech_threshold {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(OptionsError {
                code: "invalid_option",
                message: format!("speech_threshold {threshold} is out of range; use 0 to 1"),
            });
        }
        out.speech_threshold = Some(threshold);
    }
    Ok(out)
}

/// Options a session starts with before the client says anything.
/// `keywords` is whether the server has keyword extraction on (sessions may turn it off).
pub fn default_options(stt: &SttConfig, keywords: bool) -> EffectiveOptions {
    EffectiveOptions {
        language: stt.language,
        languages: stt.language_set().to_strings(),
        language_lock: stt.language_lock,
        sample_rate: TARGET_SAMPLE_RATE,
        encoding: Encoding::PcmS16le,
        channels: 1,
        partials: true,
        filtered: false,
        keywords,
        rag: false,
        prompt: stt
            .initial_prompt
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        vad_events: false,
        silence_ms: None,
        manual_turns: false,
        speech_threshold: None,
        revisions: stt.live_revision_s > 0.0,
    }
}

/// The shortest and longest end-of-utterance silence a session may ask for: below 100 ms
/// words are cut at every stop consonant; above 60 s an utterance would never end on silence
/// (`manual_turns` says that).
pub const MIN_SILENCE_MS: u64 = 100;
pub const MAX_SILENCE_MS: u64 = 60_000;

/// The detection set of `options` (validated when the options were resolved).
pub(super) fn language_set(options: &EffectiveOptions) -> LanguageSet {
    LanguageSet::from_items(&options.languages).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "invalid language set; detecting among all languages");
        LanguageSet::all()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LanguageList;

    fn base() -> EffectiveOptions {
        default_options(&SttConfig::default(), false)
    }

    #[test]
    fn defaults_are_forced_korean_with_ko_en_for_auto() {
        let o = base();
        assert_eq!(o.language, Language::Ko);
        assert_eq!(o.languages, ["ko", "en"]);
        assert!(o.language_lock);
        assert_eq!(o.prompt, None);
    }

    #[test]
    fn language_sets_resolve_to_codes_or_say_what_is_accepted() {
        let requested = StreamOptions {
            language: Some("auto".into()),
            languages: Some(LanguageList(vec!["Japanese, ko".into()])),
            language_lock: Some(false),
            ..StreamOptions::default()
        };
        let o = resolve_options(&base(), &requested, 200).unwrap();
        assert_eq!(o.language, Language::Auto);
        assert_eq!(o.languages, ["ja", "ko"]);
        assert!(!o.language_lock);

        let bad = StreamOptions {
            languages: Some(LanguageList(vec!["ko".into(), "xx".into()])),
            ..StreamOptions::default()
        };
        let e = resolve_options(&base(), &bad, 200).unwrap_err();
        assert_eq!(e.code, "unsupported_language");
        assert!(e.message.starts_with("languages: ") && e.message.contains("\"xx\""));
    }

    #[test]
    fn prompts_are_bounded_and_blank_means_none() {
        assert_eq!(check_prompt("  ", 10).unwrap(), None);
        assert_eq!(
            check_prompt(" 양재 나들목 ", 10).unwrap().as_deref(),
            Some("양재 나들목")
        );
        // Characters, not bytes: six Hangul syllables are 18 bytes.
        assert!(check_prompt("가나다라마바", 6).is_ok());
        let e = check_prompt("가나다라마바사", 6).unwrap_err();
        assert_eq!(e.code, "prompt_too_long");
        assert!(e.message.contains('7') && e.message.contains('6'), "{e}");

        let requested = StreamOptions {
            prompt: Some("세종대로".into()),
            ..StreamOptions::default()
        };
        let o = resolve_options(&base(), &requested, 200).unwrap();
        assert_eq!(o.prompt.as_deref(), Some("세종대로"));
        let cleared = StreamOptions {
            prompt: Some(String::new()),
            ..StreamOptions::default()
        };
        assert_eq!(resolve_options(&o, &cleared, 200).unwrap().prompt, None);
    }
}
