//! Speech to text, engine-free: the decoder interface, the worker pool that keeps the blocking
//! decode off the async runtime, the hallucination filter and Whisper's language sets. The
//! engines (whisper.cpp in the server crate, the scripted test decoder) implement [`Decoder`].

pub mod engine;
pub mod filter;
pub mod language;
pub mod queue;
pub mod scripted;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::protocol::{Language, Word};
use language::{Detection, LanguageSet};

/// How one utterance is decoded.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    pub language: Language,
    /// With `Language::Auto`: the languages detection may choose from (a set of one forces
    /// that language, which is how a session's locked language is decoded); `None` = every
    /// language the model knows.
    pub languages: Option<LanguageSet>,
    /// 0 or 1 = greedy; more = beam search of this width.
    pub beam_size: usize,
    pub threads: usize,
    /// Encoder window in whisper frames (50 per second); `None` = the model's full 30 s.
    pub audio_ctx: Option<u32>,
    /// Text the decoder is conditioned on (domain vocabulary); `None` for none.
    pub initial_prompt: Option<Arc<str>>,
    /// Word-level timestamps cost a little; partials skip them.
    pub word_timestamps: bool,
    /// Time the words from the model's attention (DTW) where the engine can: a file window's
    /// words are split between its utterances by their times, which whisper.cpp's heuristic
    /// gets wrong across pauses. Costs ~14 % of a decode on the CPU, so live decodes skip it.
    pub aligned_words: bool,
    /// A partial: text that will be replaced, so decoded as cheaply as the engine can (no
    /// timestamp tokens, one segment, no temperature fallback).
    pub draft: bool,
    /// Set by the session when the result is no longer wanted (a partial overtaken by the
    /// utterance's end); the decoder then stops early with `SttError::Cancelled`.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl DecodeOptions {
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// The decoder's result for one utterance. Times are seconds from the utterance's first sample.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub text: String,
    /// Language the decoder used (the detected one when the session asked for `auto`).
    pub language: String,
    /// When the language was detected: how sure, within the set it was chosen from.
    /// `None` when it was forced.
    pub detection: Option<Detection>,
    pub words: Vec<Word>,
    /// The words' times may put words in the wrong place (DTW's path lost the audio): a file
    /// window's words are then split by `segments`, or its utterances are decoded again.
    pub words_doubtful: bool,
    /// The decoder's segments over `words`, in the order it wrote them: where a file window's
    /// words go when their own times are doubtful. Empty when the decoder gives none.
    pub segments: Vec<SegmentSpan>,
    /// Mean log-probability of the text tokens.
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    /// Encoder window actually used, in whisper frames.
    pub audio_ctx: u32,
}

/// One segment of a decode: the span its timestamp tokens give, in seconds from the start of
/// the decoded audio, and how many of the transcript's words (the next ones in order) it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentSpan {
    pub start: f64,
    pub end: f64,
    pub words: usize,
}

/// A speech decoder: 16 kHz mono utterance audio plus options in, transcript out.
/// whisper.cpp implements it (the server crate); another engine (CTranslate2) can sit beside it,
/// and [`scripted::ScriptedDecoder`] drives the scheduler in tests without a model.
pub trait Decoder: Send {
    fn decode(&mut self, audio: &[f32], opts: &DecodeOptions) -> Result<Transcript, SttError>;
}

/// Errors of the speech-to-text layer.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error(
        "Whisper model file {path} does not exist; run `sori model fetch` or set --model / SORI_MODEL"
    )]
    ModelMissing { path: String },
    #[error("Whisper model {path} could not be loaded: {reason}")]
    ModelLoad { path: String, reason: String },
    #[error("decoding failed: {0}")]
    Decode(String),
    #[error("the utterance has no audio")]
    EmptyAudio,
    #[error("the decoder pool has shut down")]
    PoolClosed,
    #[error("the decode was cancelled because its result was no longer needed")]
    Cancelled,
}

/// Encoder window for `seconds` of audio: the utterance plus a margin, never below the
/// minimum and never above the model's 30 s (1500 frames). Too small a window makes the
/// decoder loop, hence the margin and the floor.
pub fn trimmed_audio_ctx(seconds: f64, margin_s: f64, min_s: f64) -> u32 {
    const FRAMES_PER_SECOND: f64 = 50.0;
    const FULL_WINDOW: u32 = 1500;
    let wanted = ((seconds + margin_s).max(min_s) * FRAMES_PER_SECOND).ceil() as u32;
    wanted.min(FULL_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_follows_the_utterance_within_bounds() {
        assert_eq!(trimmed_audio_ctx(11.0, 1.0, 4.0), 600);
        assert_eq!(trimmed_audio_ctx(1.0, 1.0, 6.0), 300);
        assert_eq!(trimmed_audio_ctx(29.9, 1.0, 4.0), 1500);
        assert_eq!(trimmed_audio_ctx(0.0, 0.0, 0.0), 0);
    }
}
