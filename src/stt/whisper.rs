//! whisper.cpp (through whisper-rs) behind the `Decoder` interface: one shared model, one
//! `WhisperState` per decoder.

use std::ffi::c_int;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use whisper_rs::{
    DtwModelPreset, FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters,
    WhisperState,
};

use super::alignment;
use super::beam::{BeamGuide, GuideSetup};
use super::language::{Detection, LanguageSet};
use super::segments::{self, SegmentRead};
use super::{DecodeOptions, Decoder, SttError, Transcript};
use crate::protocol::Language;

/// 100 ms at 16 kHz: whisper.cpp processes nothing shorter.
const MIN_DETECT_SAMPLES: usize = 1600;

/// Encoder window for language detection, in whisper frames: the decode's own window.
///
/// A smaller window would be cheaper (one decoder step needs none of the decode's margin
/// against loops: on the base model, one thread, a 0.8 s utterance detects in ~150 ms with a
/// 2 s window against ~470 ms with the decode's 6 s floor), but in whisper.cpp a decoder step
/// after `lang_detect` with a smaller window than the next one's is unreliable (reproduced on
/// the base model), and the detection state runs one such step per utterance. So detection
/// uses the decode's window, never the full 30 s that whisper.cpp's own `auto` may use (~3.3 s).
fn detection_ctx(opts: &DecodeOptions) -> u32 {
    opts.audio_ctx.unwrap_or(FULL_WINDOW)
}

/// The model's whole 30 s encoder window, in frames.
const FULL_WINDOW: u32 = 1500;

/// The smallest encoder window DTW accepts for `samples` of audio: whisper.cpp aborts the
/// process (`WHISPER_ASSERT(n_frames <= n_audio_ctx * 2)`) when the window is shorter than the
/// audio it aligns, up to 30 s. Each encoder frame is two 10 ms mel frames.
fn dtw_min_audio_ctx(samples: usize) -> u32 {
    let mel_frames = samples.div_ceil(160).min(2 * FULL_WINDOW as usize);
    mel_frames.div_ceil(2) as u32
}

/// The earliest timestamp token a DTW decode may end a segment on, in 20 ms steps (0.16 s).
/// whisper.cpp aligns each pass's words over the audio up to the pass's last timestamp (or to
/// the end of the audio, if sooner), through a median filter of width 7 that aborts the whole
/// process (`WHISPER_ASSERT(filter_width < a->ne[2])`) when that span holds fewer than 8
/// encoder frames (16 mel frames). No segment of speech ends that early, so the timestamps
/// between (0.02–0.14 s) are never sampled in DTW decodes.
const FIRST_DTW_TIMESTAMP: usize = 8;
/// The same span in mel frames (10 ms).
const MIN_DTW_MEL_FRAMES: i64 = 2 * FIRST_DTW_TIMESTAMP as i64;
/// whisper.cpp stops when less audio than this is left (mel frames: 0.1 s); with more, it
/// starts another pass over the rest.
const WHISPER_DELTA_MIN: i64 = 10;

/// A DTW decode of less audio than this is padded with silence to it, for the same reason.
const MIN_DTW_SAMPLES: usize = 3_200;
// One encoder frame is 20 ms, 320 samples.
const _: () = assert!(MIN_DTW_SAMPLES / 320 >= FIRST_DTW_TIMESTAMP);

/// Where a DTW decode's current pass stands, for [`suppress_unsafe_timestamps`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassPosition {
    /// The pass's start in the audio (mel frames, 10 ms).
    pub seek: i64,
    /// The audio's length (mel frames).
    pub end: i64,
    /// The pass has sampled text already.
    pub has_text: bool,
}

/// Sets to −∞ the logits of every timestamp that could leave whisper.cpp aligning fewer than
/// [`MIN_DTW_MEL_FRAMES`], which aborts the process; `timestamp_begin` is the index of `<|0.00|>`.
/// - 0.02–0.14 s: the pass would end that early (see [`FIRST_DTW_TIMESTAMP`]);
/// - `<|0.00|>` after text: the pass would end where it started;
/// - any timestamp leaving 0.10–0.16 s of audio after it: the pass ending there would start
///   another over a rest too short to align.
pub(crate) fn suppress_unsafe_timestamps(
    logits: &mut [f32],
    timestamp_begin: usize,
    pass: PassPosition,
) {
    let Some(timestamps) = logits.get_mut(timestamp_begin..) else {
        return;
    };
    for (i, logit) in timestamps.iter_mut().enumerate() {
        let rest = pass.end - (pass.seek + 2 * i as i64);
        let early = (1..FIRST_DTW_TIMESTAMP).contains(&i);
        let empty = i == 0 && pass.has_text;
        let short_rest = (WHISPER_DELTA_MIN..MIN_DTW_MEL_FRAMES).contains(&rest);
        if early || empty || short_rest {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// whisper.cpp's logits filter for DTW decodes; its user data points at the model's
/// `<|0.00|>` token id. The pass's start is the end of the last segment whisper.cpp has
/// committed (each pass starts where the previous one's last timestamp put it).
unsafe extern "C" fn dtw_timestamps_filter(
    ctx: *mut whisper_rs_sys::whisper_context,
    state: *mut whisper_rs_sys::whisper_state,
    tokens: *const whisper_rs_sys::whisper_token_data,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut std::ffi::c_void,
) {
    // SAFETY: `user_data` is `&WhisperModel::timestamp_begin`, `logits` holds the model's
    // whole vocabulary, `tokens` the pass's `n_tokens` sampled tokens, and `ctx` / `state` the
    // context and state of the `full` call that runs this filter, all alive for that call.
    unsafe {
        let begin = *(user_data as *const c_int) as usize;
        let n_vocab = whisper_rs_sys::whisper_n_vocab(ctx).max(0) as usize;
        let logits = std::slice::from_raw_parts_mut(logits, n_vocab);
        let eot = whisper_rs_sys::whisper_token_eot(ctx);
        let sampled = match usize::try_from(n_tokens) {
            Ok(n) if n > 0 && !tokens.is_null() => std::slice::from_raw_parts(tokens, n),
            _ => &[],
        };
        let pass = read_pass_position(state, sampled.iter().any(|t| t.id < eot));
        suppress_unsafe_timestamps(logits, begin, pass);
    }
}

/// The running pass's position, read from `state` (a `full` call's, alive): it starts at the
/// end of the last segment whisper.cpp has committed (each pass starts where the previous one's
/// last timestamp put it).
pub(crate) unsafe fn read_pass_position(
    state: *mut whisper_rs_sys::whisper_state,
    has_text: bool,
) -> PassPosition {
    // SAFETY: the caller's `state` is alive for this call.
    unsafe {
        let segments = whisper_rs_sys::whisper_full_n_segments_from_state(state);
        let seek = match segments {
            0 => 0,
            n => whisper_rs_sys::whisper_full_get_segment_t1_from_state(state, n - 1),
        };
        PassPosition {
            seek,
            end: i64::from(whisper_rs_sys::whisper_n_len_from_state(state)),
            has_text,
        }
    }
}

/// whisper.cpp's default work buffer for DTW, allocated per decode (untouched pages cost no
/// memory).
const DTW_MEM_BYTES: usize = 128 * 1024 * 1024;

/// One whisper.cpp context over the model file, with DTW over `preset`'s heads when given.
fn load_context(
    path: &Path,
    use_gpu: bool,
    preset: Option<DtwModelPreset>,
) -> Result<WhisperContext, SttError> {
    let mut params = WhisperContextParameters::default();
    params.use_gpu(use_gpu);
    if let Some(model_preset) = preset {
        params.dtw_parameters(whisper_rs::DtwParameters {
            mode: whisper_rs::DtwMode::ModelPreset { model_preset },
            dtw_mem_size: DTW_MEM_BYTES,
        });
    }
    WhisperContext::new_with_params(path, params).map_err(|e| SttError::ModelLoad {
        path: path.display().to_string(),
        reason: format!("{e:?} (is it a whisper.cpp ggml file?)"),
    })
}

/// The loaded model, shared by every decoder (weights are read-only).
pub struct WhisperModel {
    /// Decodes whose words need no more than whisper.cpp's heuristic times (live streams).
    ctx: WhisperContext,
    /// The same weights again with DTW over the alignment heads, for decodes that ask for
    /// [`DecodeOptions::aligned_words`] (file windows, live revision windows). whisper.cpp
    /// turns DTW on per context, and it costs every decode ~14 % on the CPU, so live finals
    /// and partials keep the context without it; this one is loaded on the first decode that
    /// needs it, so a server whose streams ask for no revisions never holds the weights twice.
    aligned: OnceLock<Result<WhisperContext, String>>,
    /// The alignment-head preset for this model's shape (`None`: DTW off or unknown shape).
    dtw_preset: Option<DtwModelPreset>,
    /// `<|0.00|>`'s token id, for the DTW decodes' logits filter.
    timestamp_begin: c_int,
    /// Window decodes with a beam use whisper.cpp's beam search, not sori's ([`BeamGuide`]).
    whisper_cpp_beam: std::sync::atomic::AtomicBool,
    use_gpu: bool,
    path: String,
    placement: super::placement::Placement,
}

impl WhisperModel {
    /// Loads a ggml model; `dtw` asks for word times from the alignment heads in decodes that
    /// want aligned words, granted when the model's shape has a preset (see [`alignment`]).
    pub fn load(path: &Path, use_gpu: bool, dtw: bool) -> Result<Arc<Self>, SttError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(SttError::ModelMissing { path: shown });
        }
        whisper_rs::install_logging_hooks();
        let dtw_preset = if dtw {
            alignment::preset_for(path)
        } else {
            None
        };
        if dtw && dtw_preset.is_none() {
            tracing::warn!(
                model = %shown,
                "no alignment-head preset for this model's shape: words keep whisper.cpp's heuristic times"
            );
        }
        let ctx = load_context(path, use_gpu, None)?;
        let placement = super::placement::settle(use_gpu);
        Ok(Arc::new(Self {
            timestamp_begin: ctx.token_beg(),
            whisper_cpp_beam: std::sync::atomic::AtomicBool::new(false),
            ctx,
            aligned: OnceLock::new(),
            dtw_preset,
            use_gpu,
            path: shown,
            placement,
        }))
    }

    /// Window decodes with a beam run whisper.cpp's own beam search (`stt.whisper_cpp_beam`)
    /// instead of sori's.
    pub fn set_whisper_cpp_beam(&self, on: bool) {
        self.whisper_cpp_beam
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The context with DTW on, loaded on first use; `None` when DTW is off for this model.
    fn aligned_context(&self) -> Result<Option<&WhisperContext>, SttError> {
        let Some(preset) = &self.dtw_preset else {
            return Ok(None);
        };
        let loaded = self.aligned.get_or_init(|| {
            tracing::info!(model = %self.path, "loading the model's DTW context for aligned word times (file windows)");
            load_context(Path::new(&self.path), self.use_gpu, Some(preset.clone()))
                .map_err(|e| e.to_string())
        });
        match loaded {
            Ok(ctx) => Ok(Some(ctx)),
            Err(reason) => Err(SttError::Decode(format!(
                "the model's DTW context could not be loaded: {reason}"
            ))),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where this model decodes (GPU or CPU, and why).
    pub fn placement(&self) -> &super::placement::Placement {
        &self.placement
    }

    /// Whether decodes that ask for aligned words get them timed by DTW over the alignment
    /// heads (otherwise by whisper.cpp's heuristic).
    pub fn dtw_timestamps(&self) -> bool {
        self.dtw_preset.is_some()
    }

    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }

    /// Languages this model has tokens for: 99, or 100 for large-v3 (Cantonese added), 0 for
    /// English-only models. whisper.cpp's detection reports a probability for all 100 either
    /// way; on a 99-language model the 100th is the `translate` token's and must be ignored.
    pub fn language_count(&self) -> usize {
        if !self.ctx.is_multilingual() {
            return 0;
        }
        (self.ctx.token_translate() - self.ctx.token_sot() - 1).max(0) as usize
    }

    /// A short human name such as "base" or "tiny" (whisper.cpp's own naming).
    pub fn kind(&self) -> String {
        self.ctx
            .model_type_readable_str_lossy()
            .map(|s| s.into_owned())
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    pub fn new_decoder(self: &Arc<Self>) -> Result<WhisperDecoder, SttError> {
        let state = self.ctx.create_state().map_err(|e| SttError::ModelLoad {
            path: self.path.clone(),
            reason: format!("cannot create a decoder state: {e:?}"),
        })?;
        Ok(WhisperDecoder {
            model: Arc::clone(self),
            state,
            aligned: None,
            detector: None,
            prompt_cache: None,
        })
    }

    fn prompt_tokens(&self, prompt: &str) -> Vec<c_int> {
        let clean: String = prompt.chars().filter(|c| *c != '\0').collect();
        // A prompt longer than half the text context would crowd out the transcript.
        let max = (self.ctx.n_text_ctx() / 2).max(1) as usize;
        let mut tokens = self.ctx.tokenize(&clean, max * 4).unwrap_or_default();
        if tokens.len() > max {
            tokens.drain(..tokens.len() - max);
        }
        tokens
    }
}

/// ggml's abort hook: stop computing once the job's cancel flag is set.
unsafe extern "C" fn abort_when_set(flag: *mut std::ffi::c_void) -> bool {
    // SAFETY: the pointer is `Arc::as_ptr` of an `AtomicBool` kept alive by the caller of `full`.
    let flag = unsafe { &*(flag as *const std::sync::atomic::AtomicBool) };
    flag.load(std::sync::atomic::Ordering::Relaxed)
}

/// One decoder: its own state over the shared model. Not shared between threads.
pub struct WhisperDecoder {
    model: Arc<WhisperModel>,
    state: WhisperState,
    /// A state over the model's DTW context, made afresh for each decode that asks for aligned
    /// words (file and revision windows); live finals and partials never touch it.
    aligned: Option<WhisperState>,
    /// A second state for language detection, made on first use (only `auto` needs it).
    /// whisper.cpp's `lang_detect` leaves its state such that the next `full` decode on it
    /// sometimes returns empty or garbled text, or falls into slow temperature fallbacks
    /// (reproduced on the base model); a state of its own keeps decodes exactly as without
    /// detection. Costs one more state's buffers (~100–200 MB for base) per decoder.
    detector: Option<WhisperState>,
    /// Tokenised prompt, reused while the prompt text stays the same.
    prompt_cache: Option<(Arc<str>, Arc<[c_int]>)>,
}

impl Decoder for WhisperDecoder {
    fn decode(&mut self, audio: &[f32], opts: &DecodeOptions) -> Result<Transcript, SttError> {
        if audio.is_empty() {
            return Err(SttError::EmptyAudio);
        }
        if opts.is_cancelled() {
            return Err(SttError::Cancelled);
        }
        let (language, detection) = self.choose_language(audio, opts)?;
        if opts.is_cancelled() {
            return Err(SttError::Cancelled);
        }
        let dtw = self.dtw_for(opts);
        // Before the encoder window is sized: it must cover the padded audio.
        let padded;
        let audio = if dtw && audio.len() < MIN_DTW_SAMPLES {
            padded = [audio, &vec![0.0; MIN_DTW_SAMPLES - audio.len()]].concat();
            &padded[..]
        } else {
            audio
        };
        let prompt_tokens = self.prompt_tokens(opts);
        let mut segments = self.full(audio, opts, language, &prompt_tokens, dtw)?;
        if opts.aligned_words {
            self.decode_passed_over_again(
                audio,
                opts,
                language,
                !prompt_tokens.is_empty(),
                &mut segments,
            )?;
        }
        Ok(segments::assemble(
            &segments,
            dtw,
            opts,
            language,
            detection,
            audio.len(),
        ))
    }
}

impl WhisperDecoder {
    /// Whether this decode's words are timed by DTW (a window decode, on a model with a preset).
    fn dtw_for(&self, opts: &DecodeOptions) -> bool {
        opts.aligned_words && opts.word_timestamps && self.model.dtw_timestamps()
    }

    /// The options' prompt as tokens (none: empty), tokenised once while it stays the same.
    fn prompt_tokens(&mut self, opts: &DecodeOptions) -> Arc<[c_int]> {
        let Some(prompt) = &opts.initial_prompt else {
            return Arc::new([]);
        };
        match &self.prompt_cache {
            Some((cached, tokens)) if cached == prompt => Arc::clone(tokens),
            _ => {
                let tokens: Arc<[c_int]> = self.model.prompt_tokens(prompt).into();
                self.prompt_cache = Some((Arc::clone(prompt), Arc::clone(&tokens)));
                tokens
            }
        }
    }

    /// One whisper.cpp `full` decode of `audio`, read back as segments: on a fresh state over
    /// the DTW context when `dtw`, else on the decoder's plain state.
    fn full(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
        language: &str,
        prompt_tokens: &[c_int],
        dtw: bool,
    ) -> Result<Vec<SegmentRead>, SttError> {
        if dtw {
            self.prepare_aligned_state()?;
        }
        let window = encoder_window(opts, audio.len(), dtw);
        let sori_beam = !self
            .model
            .whisper_cpp_beam
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut guide = (dtw && opts.beam_size > 1 && !opts.draft && sori_beam).then(|| {
            BeamGuide::new(GuideSetup {
                audio,
                width: opts.beam_size,
                threads: opts.threads.max(1) as c_int,
                audio_ctx: window.map_or(0, |w| w as c_int),
                language,
                prompt: prompt_tokens,
                dtw,
                cancel: opts.cancel.clone(),
            })
        });
        let filter = match (&mut guide, dtw) {
            (Some(guide), _) => LogitsFilter::Guide(guide.filter()),
            (None, true) => LogitsFilter::Dtw(&self.model.timestamp_begin),
            (None, false) => LogitsFilter::None,
        };
        let params = full_params(opts, language, prompt_tokens, window, filter);
        let state = match &mut self.aligned {
            Some(aligned) if dtw => aligned,
            _ => &mut self.state,
        };
        let decoded = state.full(params, audio);
        if let Some(guide) = &guide {
            tracing::debug!(report = ?guide.report, "beam search over whisper.cpp's decoder");
        }
        drop(guide);
        if opts.is_cancelled() {
            return Err(SttError::Cancelled);
        }
        decoded.map_err(|e| SttError::Decode(format!("{e:?}")))?;
        let read = segments::read_segments(state, self.model.ctx.token_eot());
        segments::trace(&read, audio.len());
        Ok(read)
    }

    /// A window decode that passed over a stretch of speech with next to no words
    /// ([`segments::passed_over`]) decodes the audio from there on again, with no prompt, and
    /// keeps that reading when it has more words. Only the first such stretch is tried, so a
    /// window costs at most two decodes; a stretch at the very start is tried only when the
    /// first decode had a prompt (without one, the second would be the same decode).
    fn decode_passed_over_again(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
        language: &str,
        prompted: bool,
        segments: &mut Vec<SegmentRead>,
    ) -> Result<(), SttError> {
        let audio_cs = (audio.len() / segments::SAMPLES_PER_CS) as i64;
        let Some(from) = segments::passed_over(segments, audio_cs) else {
            return Ok(());
        };
        if from == 0 && !prompted {
            return Ok(());
        }
        let start = segments[from].start_sample().min(audio.len());
        let rest = &audio[start..];
        if rest.len() < MIN_DTW_SAMPLES {
            return Ok(());
        }
        let again = match self.full(rest, opts, language, &[], self.dtw_for(opts)) {
            Ok(again) => again,
            Err(SttError::Cancelled) => return Err(SttError::Cancelled),
            // The first reading stands: it was whole, only poorer.
            Err(e) => {
                tracing::warn!(error = %e, "a window's second decode failed: its first reading stands");
                return Ok(());
            }
        };
        let replaced = segments::splice_if_more_words(segments, from, again);
        tracing::debug!(
            from_s = start as f64 / f64::from(crate::audio::TARGET_SAMPLE_RATE),
            replaced,
            "a window decode passed over speech: decoded again from there without the prompt"
        );
        Ok(())
    }

    /// Makes a fresh state over the DTW context for each window decode. whisper.cpp seeds the
    /// sampler of a state's first decoder once, when the state is made, so a pass that falls
    /// back to a higher temperature samples differently depending on everything the state
    /// decoded before: with a beam of 5, the same file read differently as the first file
    /// of a process and after others (docs/accuracy.md, "Beam search in windows"). A window's
    /// text now depends on its audio only, for one state's allocation per window.
    fn prepare_aligned_state(&mut self) -> Result<(), SttError> {
        self.aligned = None;
        let ctx = self
            .model
            .aligned_context()?
            .ok_or_else(|| SttError::Decode("DTW is off for this model".into()))?;
        let state = ctx.create_state().map_err(|e| {
            SttError::Decode(format!("cannot create a decoder state for DTW: {e:?}"))
        })?;
        self.aligned = Some(state);
        Ok(())
    }

    /// The language to decode in: the forced one, or the most probable one of the options'
    /// set (detected here, not by whisper.cpp, whose `auto` picks among all its languages).
    fn choose_language(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
    ) -> Result<(&'static str, Option<Detection>), SttError> {
        match opts.language {
            Language::Ko => return Ok(("ko", None)),
            Language::En => return Ok(("en", None)),
            Language::Auto => {}
        }
        if !self.model.is_multilingual() {
            return Ok(("en", None));
        }
        let all;
        let set = match &opts.languages {
            Some(set) => set,
            None => {
                all = LanguageSet::all();
                &all
            }
        };
        if let [only] = set.codes() {
            return Ok((only, None));
        }
        let probs = self.language_probabilities(audio, opts)?;
        let detection = set.pick(&probs).ok_or_else(|| {
            SttError::Decode(format!(
                "this model knows none of the languages {set}; use ones it was trained on"
            ))
        })?;
        Ok((detection.language, Some(detection)))
    }

    /// Whisper's probability of each of its languages for this utterance (index = language id).
    ///
    /// whisper.cpp's `lang_detect` encodes the mel already in the state, with the encoder
    /// window of the state's last `full` call. A `full` call limited to 100 ms of audio
    /// (`duration_ms`) computes the whole utterance's mel and sets the window, then stops
    /// before encoding anything; detection then costs one encoder pass at the trimmed window
    /// and one decoder step. (whisper.cpp's own `auto` detects with whatever window the
    /// previous utterance left behind, up to the full 30 s.)
    fn language_probabilities(
        &mut self,
        audio: &[f32],
        opts: &DecodeOptions,
    ) -> Result<Vec<f32>, SttError> {
        let threads = opts.threads.max(1);
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(threads as c_int);
        params.set_language(Some("en"));
        params.set_duration_ms(100);
        params.set_no_context(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_audio_ctx(detection_ctx(opts) as c_int);
        // Audio under 100 ms would make whisper.cpp return before setting the window.
        let padded;
        let audio = if audio.len() < MIN_DETECT_SAMPLES {
            padded = [
                audio,
                &[0.0; MIN_DETECT_SAMPLES][..MIN_DETECT_SAMPLES - audio.len()],
            ]
            .concat();
            &padded[..]
        } else {
            audio
        };
        let detector = match &mut self.detector {
            Some(state) => state,
            None => self
                .detector
                .insert(self.model.ctx.create_state().map_err(|e| {
                    SttError::Decode(format!("cannot create a language detection state: {e:?}"))
                })?),
        };
        detector
            .full(params, audio)
            .map_err(|e| SttError::Decode(format!("language detection (mel): {e:?}")))?;
        let (_, mut probs) = detector
            .lang_detect(0, threads)
            .map_err(|e| SttError::Decode(format!("language detection: {e:?}")))?;
        probs.truncate(self.model.language_count());
        Ok(probs)
    }
}

/// The encoder window (`audio_ctx`) for a decode of `samples` of audio: the options' trimmed
/// window, widened to the audio for DTW; `None`: the model's whole window.
fn encoder_window(opts: &DecodeOptions, samples: usize, dtw: bool) -> Option<u32> {
    let ctx = opts.audio_ctx?;
    Some(if dtw {
        ctx.max(dtw_min_audio_ctx(samples))
    } else {
        ctx
    })
}

/// The logits filter a decode runs with.
enum LogitsFilter<'m> {
    None,
    /// DTW's timestamp filter; the model's `<|0.00|>` token id is its user data.
    Dtw(&'m c_int),
    /// sori's beam search ([`BeamGuide`]): whisper.cpp decodes greedily, following it.
    Guide(
        (
            whisper_rs_sys::whisper_logits_filter_callback,
            *mut std::ffi::c_void,
        ),
    ),
}

/// whisper.cpp's parameters for one decode with encoder `window`.
fn full_params<'a, 'b>(
    opts: &DecodeOptions,
    language: &'a str,
    prompt_tokens: &'b [c_int],
    window: Option<u32>,
    filter: LogitsFilter<'_>,
) -> FullParams<'a, 'b> {
    let strategy = if opts.beam_size > 1 && !matches!(filter, LogitsFilter::Guide(_)) {
        SamplingStrategy::BeamSearch {
            beam_size: opts.beam_size as c_int,
            patience: -1.0,
        }
    } else {
        SamplingStrategy::Greedy { best_of: 1 }
    };
    let mut params = FullParams::new(strategy);
    params.set_n_threads(opts.threads as c_int);
    params.set_language(Some(language));
    params.set_translate(false);
    params.set_no_context(true);
    params.set_token_timestamps(opts.word_timestamps);
    params.set_suppress_blank(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    if let Some(window) = window {
        params.set_audio_ctx(window as c_int);
    }
    if opts.draft {
        // A partial's text is replaced within a second: skip the timestamp tokens and the
        // re-decodes at higher temperatures that a doubtful window triggers.
        params.set_no_timestamps(true);
        params.set_single_segment(true);
        params.set_temperature_inc(0.0);
    }
    if !prompt_tokens.is_empty() {
        params.set_tokens(prompt_tokens);
    }
    match filter {
        LogitsFilter::None => {}
        // SAFETY: the filter only writes the logits it is given, and reads the token id,
        // which the model holds (alive in the decoder) for the whole `full` call.
        LogitsFilter::Dtw(timestamp_begin) => unsafe {
            params.set_filter_logits_callback(Some(dtw_timestamps_filter));
            params.set_filter_logits_callback_user_data(
                timestamp_begin as *const c_int as *mut std::ffi::c_void,
            );
        },
        // SAFETY: the guide lives on the caller's stack, unmoved, until `full` returns.
        LogitsFilter::Guide((callback, guide)) => unsafe {
            params.set_filter_logits_callback(callback);
            params.set_filter_logits_callback_user_data(guide);
        },
    }
    if let Some(flag) = &opts.cancel {
        // whisper-rs's closure-based abort callback casts its user data to the wrong type,
        // so the plain C callback is used with a pointer to the flag. `opts` (and so the
        // Arc) outlives `full`, which is the only time the pointer is read.
        unsafe {
            params.set_abort_callback(Some(abort_when_set));
            params.set_abort_callback_user_data(Arc::as_ptr(flag) as *mut std::ffi::c_void);
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtw_decodes_never_end_a_pass_where_the_median_filter_lacks_audio() {
        let neg = f32::NEG_INFINITY;
        // <|0.00|> at index 4; 40 timestamps (0.00–0.78 s); a first pass over 0.6 s of audio.
        let fresh = PassPosition {
            seek: 0,
            end: 60,
            has_text: false,
        };
        let mut logits = vec![0.5f32; 44];
        suppress_unsafe_timestamps(&mut logits, 4, fresh);
        // Text tokens untouched; <|0.00|> may start a segment; 0.02–0.14 s may not end one;
        assert!(logits[..4].iter().all(|l| *l == 0.5));
        assert_eq!(logits[4], 0.5);
        assert!(logits[5..12].iter().all(|l| *l == neg));
        // nor may 0.46–0.50 s, which leave 0.14–0.10 s for a pass of their own;
        assert!(logits[12..27].iter().all(|l| *l == 0.5));
        assert!(
            logits[27..30].iter().all(|l| *l == neg),
            "{:?}",
            &logits[26..31]
        );
        assert!(logits[30..].iter().all(|l| *l == 0.5));

        // and once the pass has text, <|0.00|> is out too. A later pass (starting at 0.2 s)
        // has its short rest nearer its own start.
        let later = PassPosition {
            seek: 20,
            end: 60,
            has_text: true,
        };
        let mut logits = vec![0.5f32; 44];
        suppress_unsafe_timestamps(&mut logits, 4, later);
        assert_eq!(logits[4], neg);
        assert!(logits[5..12].iter().all(|l| *l == neg));
        assert!(logits[12..17].iter().all(|l| *l == 0.5));
        assert!(
            logits[17..20].iter().all(|l| *l == neg),
            "{:?}",
            &logits[16..21]
        );
        assert!(logits[20..].iter().all(|l| *l == 0.5));
    }

    #[test]
    fn the_dtw_window_covers_the_audio_up_to_the_models_window() {
        assert_eq!(dtw_min_audio_ctx(16_000), 50);
        assert_eq!(dtw_min_audio_ctx(16_001), 51);
        assert_eq!(dtw_min_audio_ctx(60 * 16_000), FULL_WINDOW);
    }

    /// The core's language table (used to parse and validate language sets without a model)
    /// is whisper.cpp's own list, in its token order.
    #[test]
    fn the_core_language_table_is_whisper_cpps() {
        let linked: Vec<(&str, &str)> = (0..=whisper_rs::get_lang_max_id())
            .filter_map(|id| {
                Some((
                    whisper_rs::get_lang_str(id)?,
                    whisper_rs::get_lang_str_full(id)?,
                ))
            })
            .collect();
        assert_eq!(linked, super::super::language::whisper_languages());
    }
}
