//! The session's settings: the `stt`, `vad` and `filter` sections of the server's
//! configuration (`sori.toml`, `SORI_*`, flags), declared here because the session, the VAD and
//! the decoder pool read them. Defaults serve; the server validates them. Each field is also
//! listed once in the server's settings table (`src/config/settings.rs`: its `SORI_*` variable,
//! flag and documentation line); a test there fails when a field is missing from it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::protocol::Language;
use crate::stt::filter::FilterConfig;
use crate::stt::language::LanguageSet;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SttConfig {
    /// whisper.cpp ggml model file (see `sori model fetch`).
    pub model: PathBuf,
    /// Default language for sessions that do not pick one: `ko` (forced Korean, the right
    /// choice for Korean sites), `en`, or `auto` (detected among `languages`).
    pub language: Language,
    /// The languages `auto` may detect (Whisper codes, or `["all"]`). Whisper alone picks among
    /// ~99 languages and often hears short or noisy Korean as Japanese or Chinese.
    pub languages: Vec<String>,
    /// With `auto`: once one utterance's language was detected with confidence, keep it for the
    /// rest of the session instead of detecting per utterance. Sessions may turn it off.
    pub language_lock: bool,
    /// Detection probability (within `languages`) at or above which a session locks.
    pub language_lock_probability: f64,
    /// Shortest utterance, in seconds, whose detection may lock a session (short ones are the
    /// ones detection gets wrong).
    pub language_lock_min_s: f64,
    /// Decoder threads, each with its own whisper state over the one shared model; 0 = one per
    /// CPU core on small machines (the server's `config::auto`).
    pub workers: usize,
    /// CPU threads per decode call; 0 = automatic (1 on up to 8 cores, 2 beyond).
    pub threads: usize,
    /// 0 or 1 = greedy; more = beam search with this width. Live finals and partials.
    pub beam_size: usize,
    /// Beam width of the decodes that run in windows: a file's (`file_merge_s`) and a live
    /// session's revisions (`live_revision_s`); 0 or 1 = greedy. Nobody waits on them as on a
    /// live final, and in noise a beam of 5 makes fewer word errors than greedy, for several
    /// times its CPU (docs/accuracy.md, "Beam search in windows", "A beam search that keeps
    /// its width").
    pub window_beam_size: usize,
    /// Window decodes with a beam use whisper.cpp's own beam search instead of sori's. Its
    /// candidates are drawn at random rather than the likeliest taken (docs/accuracy.md,
    /// "A beam search that keeps its width"); it costs about half the CPU.
    pub whisper_cpp_beam: bool,
    /// Decode partials as drafts: no timestamp tokens, one segment, no temperature fallback.
    pub draft_partials: bool,
    /// Trim the encoder window to the utterance (plus a margin) instead of always 30 s.
    pub audio_ctx_trim: bool,
    /// Margin added to the trimmed encoder window, in seconds; too little makes the decoder loop.
    pub audio_ctx_margin_s: f64,
    /// Smallest trimmed encoder window, in seconds.
    pub audio_ctx_min_s: f64,
    /// Re-decode the open utterance this often (audio time) to send `partial` results.
    pub partial_interval_ms: u64,
    /// Files only (`POST /api/transcribe`, `/v1/audio/transcriptions`, `sori transcribe`):
    /// consecutive utterances are decoded together in one window of up to this many seconds
    /// (at most 120), each still its own segment; 0 = one decode per utterance. Whisper's
    /// encoder pays for at least `audio_ctx_min_s` and every decode for the decoder's start, so
    /// short utterances cost less joined, and in noise each word gains from the speech around
    /// it: 20 s windows are 3–7 WER points better than 10 s, and 60 s windows, which
    /// whisper.cpp decodes in passes of up to 30 s cut where its own segments end, 2–3 points
    /// better again in white noise, for 1.2–2.5× the decode time per file (docs/accuracy.md,
    /// "File windows longer than 30 s"; docs/benchmarks.md; 20 is the cheaper choice). Beyond
    /// 10 s it needs `dtw_timestamps` to put each word in its own segment. Live sessions never
    /// wait to fill a window.
    pub file_merge_s: f64,
    /// Live `/ws` sessions (sori's own protocol, `revisions=true`): finished utterances are
    /// gathered into windows of up to this many seconds (at most 120) and, once their finals
    /// have been sent, decoded again together on an idle worker; a segment whose words changed
    /// gets a `revision` event. Each final then hears the speech around it, as a file's do
    /// (docs/accuracy.md, "Live finals revised in windows"). Lowest-priority work: a final or
    /// partial that needs the worker cancels it. Needs `dtw_timestamps`; 0 = no revisions.
    pub live_revision_s: f64,
    /// Conditioning on the previous text feeds repetition loops, so it is off by default.
    pub condition_on_previous_text: bool,
    /// Time words by dynamic time warping over the model's alignment heads (whisper.cpp's DTW
    /// token timestamps) instead of the heuristic that spreads a segment's time over its
    /// tokens, in file windows and live revision windows only (live finals and partials skip
    /// its cost). Models whose shape has no
    /// preset keep the heuristic.
    pub dtw_timestamps: bool,
    /// Words to bias recognition towards (road names, facility names, …).
    pub initial_prompt: Option<String>,
    /// Longest initial prompt accepted, in characters (a session's `prompt` and this server's
    /// `initial_prompt`). Whisper reads at most 224 prompt tokens; a longer prompt also crowds
    /// the transcript out of the decoder's context.
    pub max_prompt_chars: usize,
    /// Decode requests waiting for a worker before sessions have to wait (backpressure).
    pub queue_capacity: usize,
    /// Use the GPU when whisper.cpp was built with one (feature `cuda`).
    pub use_gpu: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// The neural model that scores each frame for voice.
    pub detector: VoiceDetectorKind,
    /// Silero VAD's ONNX file, for `detector = "silero"`.
    pub silero_model: PathBuf,
    /// Frame RMS (full scale = 1.0) below which a frame never counts as speech.
    pub energy_threshold: f64,
    /// Voice probability from the neural detector at or above which a frame is speech.
    pub speech_threshold: f64,
    /// Silence that ends an utterance, in milliseconds.
    pub silence_ms: u64,
    /// Utterances with less voiced audio than this are dropped, in milliseconds.
    pub min_speech_ms: u64,
    /// Audio kept from before speech starts, so the first word is never cut, in milliseconds.
    pub pre_roll_ms: u64,
    /// Trailing silence kept at the end of an utterance, in milliseconds.
    pub tail_ms: u64,
    /// Longest utterance before it is split at its quietest point, in seconds (≤ 30).
    pub max_utterance_s: f64,
}

/// The neural voice detectors a server can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VoiceDetectorKind {
    /// earshot: a small WebRTC-style model built into the binary, 16 ms frames.
    #[default]
    Earshot,
    /// Silero VAD v6 over ONNX Runtime, 32 ms frames (`vad.silero_model`, `rag.onnxruntime_lib`).
    Silero,
}

impl VoiceDetectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earshot => "earshot",
            Self::Silero => "silero",
        }
    }
}

impl std::fmt::Display for VoiceDetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VoiceDetectorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "earshot" => Ok(Self::Earshot),
            "silero" => Ok(Self::Silero),
            other => Err(format!(
                "voice detector {other:?} is not known; use earshot or silero"
            )),
        }
    }
}

/// Thresholds of the hallucination filter (openai-whisper's defaults as the starting point).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSettings {
    pub no_speech_threshold: f64,
    pub logprob_threshold: f64,
    pub compression_ratio_threshold: f64,
    /// A phrase repeated more often than this in one segment is a decoder loop.
    pub max_repeats: usize,
    /// Text decoded from audio quieter than this RMS is treated as invented.
    pub min_rms: f64,
    /// User's own patterns, one per line, added to the built-in list.
    pub patterns_file: Option<PathBuf>,
}

impl Default for SttConfig {
    fn default() -> Self {
        Self {
            // q8_0: the same transcripts as f16 on the benchmark set, 20 % less time and 26 %
            // less memory on the CPU (docs/benchmarks.md). GPU images pick f16 (compose.yaml).
            model: PathBuf::from("models/ggml-base-q8_0.bin"),
            language: Language::Ko,
            languages: vec!["ko".to_owned(), "en".to_owned()],
            language_lock: true,
            language_lock_probability: 0.9,
            language_lock_min_s: 2.0,
            workers: 0,
            threads: 0,
            beam_size: 0,
            window_beam_size: 5,
            whisper_cpp_beam: false,
            draft_partials: true,
            audio_ctx_trim: true,
            audio_ctx_margin_s: 1.0,
            audio_ctx_min_s: 6.0,
            partial_interval_ms: 1000,
            file_merge_s: 60.0,
            live_revision_s: 60.0,
            condition_on_previous_text: false,
            dtw_timestamps: true,
            initial_prompt: None,
            max_prompt_chars: 200,
            queue_capacity: 32,
            use_gpu: true,
        }
    }
}

impl SttConfig {
    /// `languages`, parsed (falls back to every language if invalid; `validate` refuses that).
    pub fn language_set(&self) -> LanguageSet {
        LanguageSet::from_items(&self.languages).unwrap_or_else(|_| LanguageSet::all())
    }
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            detector: VoiceDetectorKind::Earshot,
            silero_model: PathBuf::from("models/vad/silero_vad.onnx"),
            energy_threshold: 0.02,
            speech_threshold: 0.5,
            silence_ms: 1000,
            min_speech_ms: 200,
            pre_roll_ms: 300,
            tail_ms: 300,
            max_utterance_s: 30.0,
        }
    }
}

impl Default for FilterSettings {
    fn default() -> Self {
        Self {
            no_speech_threshold: 0.6,
            logprob_threshold: -1.0,
            compression_ratio_threshold: 2.4,
            max_repeats: 4,
            min_rms: 0.005,
            patterns_file: None,
        }
    }
}

impl FilterSettings {
    /// The filter's thresholds as the filter takes them.
    pub fn filter_config(&self) -> FilterConfig {
        FilterConfig {
            no_speech_threshold: self.no_speech_threshold as f32,
            logprob_threshold: self.logprob_threshold as f32,
            compression_ratio_threshold: self.compression_ratio_threshold as f32,
            max_repeats: self.max_repeats,
            min_rms: self.min_rms as f32,
            extra_patterns_file: self.patterns_file.clone(),
        }
    }
}
