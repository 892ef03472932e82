//! A test double for [`Decoder`]: no model, answers from a script. It lets tests drive the
//! session's scheduler and the driver (finals before partials, speculation, cancellation,
//! in-order release, backlog, language lock) in milliseconds, and records every call so a
//! test can say what was decoded when. The product's truth stays with the real-model tests.
//!
//! The default answer names the audio it was given ("1.50 s"), so a test can tell which
//! utterance a final came from; [`Script::answer`] replaces it. Decodes can be made slow
//! ([`Script::delay`]) and honour cancellation while they "work", like whisper.cpp's abort
//! callback.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::language::Detection;
use super::{DecodeOptions, Decoder, SttError, Transcript};
use crate::audio::TARGET_SAMPLE_RATE;
use crate::protocol::Word;

/// One decode the double was asked for.
#[derive(Debug, Clone)]
pub struct Call {
    /// Seconds of audio.
    pub seconds: f32,
    /// Finals and speculative finals ask for word timestamps; partials do not.
    pub words: bool,
    /// With `auto`: the languages the decode could choose from.
    pub languages: Option<Vec<&'static str>>,
    /// The beam width asked for (0 or 1 = greedy).
    pub beam_size: usize,
    /// The decode was cancelled before it finished.
    pub cancelled: bool,
    /// When it started.
    pub started: Instant,
}

type Answer = dyn Fn(&[f32], &DecodeOptions) -> Result<Transcript, SttError> + Send + Sync;

/// What the scripted decoders of one test answer; shared by every worker of a pool.
pub struct Script {
    answer: Box<Answer>,
    delay: Duration,
    calls: Mutex<Vec<Call>>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            answer: Box::new(|audio, opts| Ok(describe(audio, opts))),
            delay: Duration::ZERO,
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers with `answer` instead of describing the audio.
    pub fn answer(
        mut self,
        answer: impl Fn(&[f32], &DecodeOptions) -> Result<Transcript, SttError> + Send + Sync + 'static,
    ) -> Self {
        self.answer = Box::new(answer);
        self
    }

    /// Every decode takes this long (checking for cancellation every millisecond).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// Every call so far, in the order they started.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Call>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The default answer: the audio's length as text ("1.50 s"), no speech doubt, one word per
/// second, and with `auto` the first language of the set detected with certainty.
pub fn describe(audio: &[f32], opts: &DecodeOptions) -> Transcript {
    let seconds = audio.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
    let detection = opts.languages.as_ref().map(|set| Detection {
        language: set.codes()[0],
        probability: 1.0,
        raw_probability: 1.0,
    });
    let language = match &detection {
        Some(d) => d.language.to_owned(),
        None => opts.language.as_str().to_owned(),
    };
    let text = format!("{seconds:.2} s");
    Transcript {
        words: vec![Word {
            word: text.clone(),
            start: 0.0,
            end: seconds,
            probability: 1.0,
        }],
        text,
        language,
        detection,
        avg_logprob: -0.1,
        no_speech_prob: 0.0,
        audio_ctx: opts.audio_ctx.unwrap_or(1500),
        words_doubtful: false,
        segments: Vec::new(),
    }
}

/// One worker's decoder over a shared [`Script`].
pub struct ScriptedDecoder {
    script: Arc<Script>,
}

impl ScriptedDecoder {
    pub fn new(script: Arc<Script>) -> Self {
        Self { script }
    }
}

impl Decoder for ScriptedDecoder {
    fn decode(&mut self, audio: &[f32], opts: &DecodeOptions) -> Result<Transcript, SttError> {
        if audio.is_empty() {
            return Err(SttError::EmptyAudio);
        }
        let index = {
            let mut calls = self.script.lock();
            calls.push(Call {
                seconds: audio.len() as f32 / TARGET_SAMPLE_RATE as f32,
                words: opts.word_timestamps,
                languages: opts.languages.as_ref().map(|set| set.codes().to_vec()),
                beam_size: opts.beam_size,
                cancelled: false,
                started: Instant::now(),
            });
            calls.len() - 1
        };
        let until = Instant::now() + self.script.delay;
        while Instant::now() < until {
            if opts.is_cancelled() {
                self.script.lock()[index].cancelled = true;
                return Err(SttError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (self.script.answer)(audio, opts)
    }
}
