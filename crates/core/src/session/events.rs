//! Decode outcomes into protocol events: the hallucination filter decides what is sent, and
//! the session's summary counts it.

use super::scheduler::{JobKind, JobMeta};
use super::{Session, round_ms};
use crate::protocol::{ServerMessage, Word};
use crate::stt::Transcript;
use crate::stt::engine::DecodeOutcome;
use crate::stt::filter::Candidate;

impl Session {
    /// Events released since the last call.
    pub fn take_events(&mut self) -> Vec<ServerMessage> {
        std::mem::take(&mut self.outbox)
    }

    pub(super) fn complete_final(&mut self, meta: JobMeta, outcome: DecodeOutcome) {
        let JobKind::Final { speech_final } = meta.kind else {
            return;
        };
        let job_id = outcome.job_id;
        let event = self.final_event(&meta, speech_final, outcome);
        self.note_sent(meta.segment_id, &event);
        self.finished.insert(job_id, event);
        self.release_in_order();
    }

    pub(super) fn partial_event(
        &mut self,
        meta: &JobMeta,
        transcript: Option<&Transcript>,
    ) -> Option<ServerMessage> {
        // Once the segment's final is queued, its partials are stale.
        if self.open_segment != Some(meta.segment_id) || !self.options.partials {
            return None;
        }
        let text = self.clean_text(transcript?, meta).ok()?;
        if text == self.last_partial_text {
            return None;
        }
        self.last_partial_text.clone_from(&text);
        self.summary.partials += 1;
        Some(ServerMessage::Partial {
            segment_id: meta.segment_id,
            text,
            start: round_ms(meta.start_s),
            end: round_ms(meta.end_s),
        })
    }

    /// The final (or `filtered` / `error`) events of a decoded utterance, with a `language`
    /// event before the final when it locked the session's language.
    pub(super) fn final_event(
        &mut self,
        meta: &JobMeta,
        speech_final: bool,
        outcome: DecodeOutcome,
    ) -> Vec<ServerMessage> {
        let transcript = match outcome.result {
            Ok(t) => t,
            Err(e) => {
                self.summary.errors += 1;
                tracing::warn!(session = %self.id, segment = meta.segment_id, error = %e, "decode failed");
                return vec![ServerMessage::error(
                    "decode_failed",
                    format!("segment {} could not be decoded: {e}", meta.segment_id),
                    false,
                )];
            }
        };
        if let Some(d) = &transcript.detection {
            tracing::debug!(
                segment = meta.segment_id,
                language = d.language,
                probability = d.probability,
                raw_probability = d.raw_probability,
                "language detected"
            );
        }
        match self.clean_text(&transcript, meta) {
            Ok(text) => {
                self.conditioning
                    .remember(&text, &transcript.language, meta.start_s, meta.end_s);
                let mut events = Vec::with_capacity(2);
                if let Some(lock) = self.lock_language(meta, &transcript) {
                    events.push(lock);
                }
                self.summary.finals += 1;
                crate::metrics::global().segment_final();
                let words = self.absolute_words(meta, &transcript, &text);
                events.push(ServerMessage::Final {
                    segment_id: meta.segment_id,
                    text,
                    start: round_ms(meta.start_s),
                    end: round_ms(meta.end_s),
                    language: transcript.language,
                    words,
                    avg_logprob: transcript.avg_logprob,
                    no_speech_prob: transcript.no_speech_prob,
                    speech_final,
                });
                events
            }
            Err(reason) => {
                self.summary.filtered += 1;
                crate::metrics::global().segment_filtered(reason.as_str());
                tracing::info!(
                    session = %self.id,
                    segment = meta.segment_id,
                    reason = %reason,
                    text = %transcript.text,
                    "segment filtered"
                );
                self.options
                    .filtered
                    .then(|| ServerMessage::Filtered {
                        segment_id: meta.segment_id,
                        text: transcript.text.clone(),
                        reason: reason.as_str().to_owned(),
                        start: round_ms(meta.start_s),
                        end: round_ms(meta.end_s),
                    })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// The words of a decode that its filtered `text` kept ([`words_in_text`]), timed from the
    /// stream's start (a decode times them from its audio's).
    pub(super) fn absolute_words(
        &self,
        meta: &JobMeta,
        transcript: &Transcript,
        text: &str,
    ) -> Vec<crate::protocol::Word> {
        words_in_text(&transcript.words, text)
            .into_iter()
            .map(|w| crate::protocol::Word {
                word: w.word.clone(),
                start: round_ms((meta.start_s + w.start).min(meta.end_s)),
                end: round_ms((meta.start_s + w.end).min(meta.end_s)),
                probability: w.probability,
            })
            .collect()
    }

    /// Applies the hallucination filter; returns the text to send or why it was dropped.
    pub(super) fn clean_text(
        &self,
        transcript: &Transcript,
        meta: &JobMeta,
    ) -> Result<String, crate::stt::filter::DropReason> {
        self.filter
            .apply(&Candidate {
                text: &transcript.text,
                avg_logprob: transcript.avg_logprob,
                no_speech_prob: transcript.no_speech_prob,
                audio_rms: meta.rms,
                duration_s: (meta.end_s - meta.start_s) as f32,
            })
            .map(|text| text.into_owned())
    }
}

/// The decoded words the filtered text kept, in order. The filter strips annotations
/// ("[BLANK_AUDIO]", ">>", "(music)") and cuts repetition loops from a final's text; a word it
/// took out must not reach the client in `words` either (Whisper writes "[BLANK_AUDIO]" over
/// stretches of loud white noise, and a file window placed it with the next utterance). Each of
/// the text's words is matched to the next decoded word spelt the same; when one cannot be (the
/// text was changed some other way), every decoded word is kept.
fn words_in_text<'w>(words: &'w [Word], text: &str) -> Vec<&'w Word> {
    let mut kept = Vec::with_capacity(words.len());
    let mut remaining = words.iter();
    for spelt in text.split_whitespace() {
        match remaining.by_ref().find(|w| w.word == spelt) {
            Some(word) => kept.push(word),
            None => return words.iter().collect(),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(spelt: &str) -> Vec<Word> {
        spelt
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| Word {
                word: w.to_owned(),
                start: i as f64,
                end: i as f64 + 0.5,
                probability: 0.9,
            })
            .collect()
    }

    fn spelt(kept: &[&Word]) -> Vec<(String, f64)> {
        kept.iter().map(|w| (w.word.clone(), w.start)).collect()
    }

    #[test]
    fn words_the_filter_took_out_of_the_text_are_left_out() {
        let decoded = words("[BLANK_AUDIO] You might >> even have been made");
        assert_eq!(
            spelt(&words_in_text(&decoded, "You might even have been made")),
            spelt(
                &decoded
                    .iter()
                    .filter(|w| !w.word.starts_with(['[', '>']))
                    .collect::<Vec<_>>()
            )
        );
        // A loop cut to its first occurrence keeps that occurrence's words.
        let looped = words("thank you thank you thank you for coming");
        assert_eq!(
            spelt(&words_in_text(&looped, "thank you for coming")),
            [
                ("thank".into(), 0.0),
                ("you".into(), 1.0),
                ("for".into(), 6.0),
                ("coming".into(), 7.0)
            ]
        );
        // A text changed some other way keeps every word.
        assert_eq!(
            words_in_text(&decoded, "You might, even").len(),
            decoded.len()
        );
    }
}
