//! The query string of Deepgram's `GET /v1/listen`, as Deepgram documents it, turned into a
//! sori session's options plus what only the adapter needs (interim results, endpointing,
//! utterance ends, VAD events). Parameters sori does not act on are accepted and named in the
//! log; values it cannot honour are refused with HTTP 400, as Deepgram refuses them.

use crate::protocol::{LanguageList, StreamOptions};

/// Shortest end-of-utterance silence sori takes from `endpointing`: Whisper transcribes whole
/// phrases, and Deepgram's default of 10 ms (LiveKit's 25 ms) would cut one at every stop
/// consonant. Shorter values are raised to this.
pub const MIN_ENDPOINTING_MS: u64 = 300;

/// Parameters Deepgram documents that sori accepts and does not act on (its transcripts come
/// from Whisper, punctuated and cased already; no diarisation, redaction or search).
const ACCEPTED_AND_IGNORED: &[&str] = &[
    "callback",
    "callback_method",
    "diarize",
    "diarize_version",
    "dictation",
    "extra",
    "filler_words",
    "mip_opt_out",
    "multichannel",
    "no_delay",
    "numerals",
    "profanity_filter",
    "redact",
    "replace",
    "search",
    "tag",
    "tier",
    "version",
];

/// When the stream's turns end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpointing {
    /// Not given: sori's `vad.silence_ms`.
    Default,
    /// `endpointing=N`: N ms of silence (at least [`MIN_ENDPOINTING_MS`]).
    Silence(u64),
    /// `endpointing=false`: finals still come at pauses, but never `speech_final: true`.
    Off,
}

/// What a Deepgram client asked for.
#[derive(Debug, Clone)]
pub struct ListenParams {
    /// The sori session's options (format, language, prompt, extras).
    pub options: StreamOptions,
    pub interim_results: bool,
    pub endpointing: Endpointing,
    /// `utterance_end_ms`: send `UtteranceEnd` after this much silence following a final.
    pub utterance_end_ms: Option<u64>,
    /// `vad_events`: send `SpeechStarted`.
    pub vad_events: bool,
    /// `model`, as asked (sori transcribes with its loaded Whisper model whatever it says).
    pub model: Option<String>,
    /// `sori_extras`: also send sori's `keyword`, `keywords` and `rag` events.
    pub sori_extras: bool,
    /// Parameters accepted and not acted on, for the log.
    pub ignored: Vec<String>,
}

/// A parameter that cannot be honoured: HTTP 400 with this message.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ParamError(pub String);

pub fn parse(query: Option<&str>) -> Result<ListenParams, ParamError> {
    let pairs: Vec<(String, String)> = match query {
        None | Some("") => Vec::new(),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| ParamError(format!("the query string is not understood: {e}")))?,
    };
    let mut params = ListenParams {
        options: StreamOptions {
            encoding: Some("pcm_s16le".to_owned()),
            ..StreamOptions::default()
        },
        interim_results: false,
        endpointing: Endpointing::Default,
        utterance_end_ms: None,
        vad_events: false,
        model: None,
        sori_extras: false,
        ignored: Vec::new(),
    };
    let mut vocabulary: Vec<String> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "encoding" => params.options.encoding = Some(encoding(&value)?),
            "sample_rate" => params.options.sample_rate = Some(number(&key, &value)?),
            "channels" => params.options.channels = Some(number(&key, &value)?),
            "language" => language(&value, &mut params.options)?,
            "interim_results" => params.interim_results = boolean(&key, &value)?,
            "endpointing" => params.endpointing = endpointing(&value)?,
            "utterance_end_ms" => params.utterance_end_ms = Some(number(&key, &value)?),
            "vad_events" => params.vad_events = boolean(&key, &value)?,
            // Whisper punctuates and cases on its own; both are accepted and change nothing.
            "punctuate" | "smart_format" => {
                boolean(&key, &value)?;
            }
            "keyterm" | "keywords" => vocabulary.push(keyterm(&value)),
            "model" => params.model = Some(value),
            "sori_extras" => params.sori_extras = boolean(&key, &value)?,
            "token" | "access_token" => {}
            other if ACCEPTED_AND_IGNORED.contains(&other) => params.ignored.push(key),
            _ => params.ignored.push(key),
        }
    }
    if params.utterance_end_ms.is_some() && !params.interim_results {
        return Err(ParamError(
            "utterance_end_ms needs interim_results=true (as on Deepgram)".to_owned(),
        ));
    }
    let vocabulary: Vec<String> = vocabulary.into_iter().filter(|w| !w.is_empty()).collect();
    if !vocabulary.is_empty() {
        params.options.prompt = Some(vocabulary.join(", "));
    }
    params.options.partials = Some(params.interim_results);
    params.options.keywords = Some(params.sori_extras);
    // Speech starts and stops drive SpeechStarted and UtteranceEnd; the adapter forwards
    // only what the client asked for.
    params.options.vad_events = Some(true);
    match params.endpointing {
        Endpointing::Silence(ms) => params.options.silence_ms = Some(ms),
        Endpointing::Default | Endpointing::Off => {}
    }
    Ok(params)
}

fn encoding(value: &str) -> Result<String, ParamError> {
    match value.to_ascii_lowercase().as_str() {
        "linear16" => Ok("pcm_s16le".to_owned()),
        "mulaw" => Ok("pcm_mulaw".to_owned()),
        "alaw" => Ok("pcm_alaw".to_owned()),
        other => Err(ParamError(format!(
            "encoding {other:?} is not supported; sori's live API takes encoding=linear16 \
             (16-bit little-endian PCM), mulaw or alaw, with sample_rate 8000-48000 and \
             channels 1 or 2"
        ))),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ParamError> {
    value
        .trim()
        .parse()
        .map_err(|_| ParamError(format!("{key}={value:?} is not a valid number")))
}

fn boolean(key: &str, value: &str) -> Result<bool, ParamError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ParamError(format!(
            "{key}={value:?} is not a boolean; use true or false"
        ))),
    }
}

fn endpointing(value: &str) -> Result<Endpointing, ParamError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "false" => Ok(Endpointing::Off),
        "true" => Ok(Endpointing::Default),
        ms => {
            let ms: u64 = ms.parse().map_err(|_| {
                ParamError(format!(
                    "endpointing={value:?} is neither milliseconds of silence nor false"
                ))
            })?;
            Ok(Endpointing::Silence(
                ms.clamp(MIN_ENDPOINTING_MS, crate::session::MAX_SILENCE_MS),
            ))
        }
    }
}

/// Deepgram's language codes (`en`, `en-US`, `ko-KR`, `multi`) as sori's (`en`, `ko`, `auto`).
fn language(value: &str, options: &mut StreamOptions) -> Result<(), ParamError> {
    let lower = value.trim().to_ascii_lowercase();
    let primary = lower.split(['-', '_']).next().unwrap_or("");
    match primary {
        "en" | "ko" => options.language = Some(primary.to_owned()),
        "multi" => {
            options.language = Some("auto".to_owned());
            options.languages = Some(LanguageList(vec!["ko".to_owned(), "en".to_owned()]));
        }
        _ => {
            return Err(ParamError(format!(
                "language {value:?} is not supported; use en, ko (any region, e.g. en-US, ko-KR) \
                 or multi (Korean and English, detected)"
            )));
        }
    }
    Ok(())
}

/// `keywords=word:boost` carries an intensifier sori has no use for; the word goes in the prompt.
fn keyterm(value: &str) -> String {
    let word = match value.rsplit_once(':') {
        Some((word, boost)) if boost.trim().parse::<f64>().is_ok() => word,
        _ => value,
    };
    word.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_usual_query_becomes_sori_options() {
        let p = parse(Some(
            "model=nova-3&encoding=linear16&sample_rate=24000&channels=1&language=en-US\
             &interim_results=true&endpointing=25&utterance_end_ms=1000&vad_events=true\
             &smart_format=true&punctuate=true&keyterm=sori&keyterm=Whisper&filler_words=false",
        ))
        .unwrap();
        assert_eq!(p.options.encoding.as_deref(), Some("pcm_s16le"));
        assert_eq!(p.options.sample_rate, Some(24000));
        assert_eq!(p.options.language.as_deref(), Some("en"));
        assert_eq!(p.options.partials, Some(true));
        assert_eq!(p.endpointing, Endpointing::Silence(MIN_ENDPOINTING_MS));
        assert_eq!(p.options.silence_ms, Some(MIN_ENDPOINTING_MS));
        assert_eq!(p.utterance_end_ms, Some(1000));
        assert!(p.vad_events);
        assert_eq!(p.options.prompt.as_deref(), Some("sori, Whisper"));
        assert_eq!(p.model.as_deref(), Some("nova-3"));
        assert_eq!(p.ignored, vec!["filler_words".to_owned()]);
    }

    #[test]
    fn defaults_are_linear16_final_results_only() {
        let p = parse(None).unwrap();
        assert_eq!(p.options.encoding.as_deref(), Some("pcm_s16le"));
        assert_eq!(p.options.partials, Some(false));
        assert_eq!(p.endpointing, Endpointing::Default);
        assert_eq!(p.options.silence_ms, None);
        let p = parse(Some("endpointing=false&language=multi&keywords=KTX:2")).unwrap();
        assert_eq!(p.endpointing, Endpointing::Off);
        assert_eq!(p.options.language.as_deref(), Some("auto"));
        assert_eq!(p.options.prompt.as_deref(), Some("KTX"));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_saying_what_is_accepted() {
        for (query, says) in [
            ("encoding=opus", "linear16"),
            ("language=ja", "multi"),
            ("sample_rate=fast", "number"),
            ("interim_results=maybe", "true or false"),
            ("endpointing=soon", "milliseconds"),
            ("utterance_end_ms=1000", "interim_results=true"),
        ] {
            let err = parse(Some(query)).unwrap_err();
            assert!(err.0.contains(says), "{query}: {err}");
        }
    }
}
