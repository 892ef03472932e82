//! Conditioning on the session's previous text (`stt.condition_on_previous_text`): each decode
//! is prompted with the finals just before it, as faster-whisper and openai-whisper do within a
//! file, so a word cut by noise is read in the light of the sentence it belongs to.
//!
//! Bounded and reset so it cannot feed a loop: only text the hallucination filter passed is
//! remembered (a filtered final never reaches the next prompt), at most [`MAX_CONTEXT_CHARS`]
//! of it, and it is dropped when the language changes or after [`RESET_GAP_S`] of silence.

use std::sync::Arc;

/// The most recent text kept as context, in characters (cut at a word boundary): ~50 tokens of
/// English, 200–400 of Korean, of which Whisper keeps what fits in 224 with the own prompt.
pub const MAX_CONTEXT_CHARS: usize = 200;

/// Silence after which the previous text no longer says anything about what comes next.
pub const RESET_GAP_S: f64 = 30.0;

#[derive(Debug, Default)]
pub(super) struct Conditioning {
    enabled: bool,
    last: Option<Previous>,
}

#[derive(Debug)]
struct Previous {
    text: String,
    language: String,
    end_s: f64,
}

impl Conditioning {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            last: None,
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Adds a final's text (one the filter passed), starting afresh after a language change
    /// or a long silence.
    pub(super) fn remember(&mut self, text: &str, language: &str, start_s: f64, end_s: f64) {
        if !self.enabled || text.trim().is_empty() {
            return;
        }
        let joined = match self.last.take() {
            Some(p) if p.language == language && start_s - p.end_s <= RESET_GAP_S => {
                format!("{} {}", p.text, text.trim())
            }
            _ => text.trim().to_owned(),
        };
        self.last = Some(Previous {
            text: last_chars(&joined, MAX_CONTEXT_CHARS).to_owned(),
            language: language.to_owned(),
            end_s,
        });
    }

    pub(super) fn forget(&mut self) {
        self.last = None;
    }

    /// The prompt for a decode of audio starting at `start_s`: the previous text when it is
    /// recent enough, then the session's own prompt. Whisper keeps the *last* 224 prompt
    /// tokens, so when both do not fit it is the previous text that gives way, never the
    /// domain words the operator configured.
    pub(super) fn prompt(&self, own: Option<&Arc<str>>, start_s: f64) -> Option<Arc<str>> {
        let context = self
            .last
            .as_ref()
            .filter(|p| self.enabled && start_s - p.end_s <= RESET_GAP_S)
            .map(|p| p.text.as_str());
        match (own, context) {
            (own, None) => own.cloned(),
            (None, Some(context)) => Some(Arc::from(context)),
            (Some(own), Some(context)) => Some(Arc::from(format!("{context} {own}"))),
        }
    }
}

/// The end of `text`, at most `max` characters, starting at a word when it has to cut.
fn last_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    if count <= max {
        return text;
    }
    let cut = text.char_indices().nth(count - max).map_or(0, |(i, _)| i);
    let tail = &text[cut..];
    match tail.find(' ') {
        Some(space) if space + 1 < tail.len() => &tail[space + 1..],
        _ => tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_the_recent_text_then_the_own_prompt() {
        let mut c = Conditioning::new(true);
        let own: Arc<str> = Arc::from("강남대로");
        assert_eq!(c.prompt(Some(&own), 0.0).as_deref(), Some("강남대로"));
        c.remember("first sentence.", "en", 0.0, 2.0);
        c.remember(" second one.", "en", 3.0, 5.0);
        assert_eq!(
            c.prompt(None, 6.0).as_deref(),
            Some("first sentence. second one.")
        );
        assert_eq!(
            c.prompt(Some(&own), 6.0).as_deref(),
            Some("first sentence. second one. 강남대로")
        );
    }

    #[test]
    fn a_long_silence_or_a_new_language_starts_afresh() {
        let mut c = Conditioning::new(true);
        c.remember("old words", "en", 0.0, 1.0);
        assert_eq!(c.prompt(None, 1.0 + RESET_GAP_S + 1.0), None);
        c.remember("new words", "en", 1.0 + RESET_GAP_S + 1.0, 40.0);
        assert_eq!(c.prompt(None, 41.0).as_deref(), Some("new words"));
        c.remember("안녕하세요", "ko", 42.0, 43.0);
        assert_eq!(c.prompt(None, 44.0).as_deref(), Some("안녕하세요"));
        c.forget();
        assert_eq!(c.prompt(None, 44.0), None);
    }

    #[test]
    fn off_means_only_the_own_prompt() {
        let mut c = Conditioning::new(false);
        c.remember("text", "en", 0.0, 1.0);
        assert_eq!(c.prompt(None, 1.0), None);
    }

    #[test]
    fn the_context_keeps_the_last_whole_words_within_the_bound() {
        let mut c = Conditioning::new(true);
        let long = "word ".repeat(100);
        c.remember(&long, "en", 0.0, 1.0);
        let p = c.prompt(None, 1.0).unwrap();
        assert!(p.chars().count() <= MAX_CONTEXT_CHARS, "{p}");
        assert!(p.starts_with("word"), "{p}");
        let korean = "가나다라마바사 ".repeat(40);
        c.remember(&korean, "ko", 2.0, 3.0);
        let p = c.prompt(None, 3.0).unwrap();
        assert!(p.chars().count() <= MAX_CONTEXT_CHARS);
        assert!(p.starts_with("가나다라마바사"), "{p}");
    }
}
