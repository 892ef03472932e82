//! With `auto`: the languages a decode may choose from, and locking the session to the
//! language of a confidently detected final.

use super::Session;
use super::scheduler::JobMeta;
use crate::protocol::{Language, ServerMessage};
use crate::stt::language::LanguageSet;
use crate::stt::{DecodeOptions, Transcript};

impl Session {
    /// The language finals are decoded in: the forced one, or with `auto` the locked one
    /// (`None` while still detecting).
    pub fn language(&self) -> Option<&'static str> {
        match self.options.language {
            Language::Ko => Some("ko"),
            Language::En => Some("en"),
            Language::Auto => self
                .locked_language
                .or_else(|| match self.languages.codes() {
                    [only] => Some(*only),
                    _ => None,
                }),
        }
    }

    /// With `auto`: what the decoder may choose from — the locked language, the open
    /// utterance's guess for its later partials, or the session's set. Called when a job is
    /// handed to the pool, so a final queued before the lock is still decoded in the locked
    /// language.
    pub(super) fn choose_languages(&self, opts: &mut DecodeOptions, partial_of: Option<u64>) {
        if self.options.language != Language::Auto {
            opts.languages = None;
            return;
        }
        let guess = self
            .partial_language
            .filter(|(segment, _)| partial_of == Some(*segment))
            .map(|(_, code)| code);
        opts.languages = Some(match self.locked_language.or(guess) {
            Some(code) => LanguageSet::single(code),
            None => self.languages.clone(),
        });
    }

    /// Locks the session to the language of a kept final when the lock rule says so, and
    /// returns the `language` event announcing it.
    pub(super) fn lock_language(
        &mut self,
        meta: &JobMeta,
        transcript: &Transcript,
    ) -> Option<ServerMessage> {
        if self.options.language != Language::Auto || self.locked_language.is_some() {
            return None;
        }
        let detection = transcript.detection?;
        let seconds = (meta.end_s - meta.start_s) as f32;
        if !self.lock_rule.locks(&detection, seconds) {
            return None;
        }
        self.locked_language = Some(detection.language);
        tracing::info!(
            session = %self.id,
            language = detection.language,
            probability = detection.probability,
            segment = meta.segment_id,
            "session language locked"
        );
        Some(ServerMessage::Language {
            language: detection.language.to_owned(),
            probability: (detection.probability * 1000.0).round() / 1000.0,
            segment_id: meta.segment_id,
            locked: true,
        })
    }
}
