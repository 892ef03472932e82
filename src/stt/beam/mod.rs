//! A beam search that keeps its width, for decodes with a beam.
//!
//! whisper.cpp's own beam search (whisper-rs-sys 0.15) draws each beam's candidates at random
//! from the token distribution (`whisper_sample_token_topk` samples `k` times instead of
//! taking the `k` likeliest), and a beam that ends stops taking candidates, so its beam of 5
//! gains far less than openai-whisper's or CTranslate2's (docs/accuracy.md). sori runs the
//! search itself over whisper.cpp's decoder calls, on a scratch state holding the same audio,
//! and has whisper.cpp's own greedy pass follow the result through the logits filter. So
//! whisper.cpp still cuts the audio into passes, checks each pass and falls back to higher
//! temperatures, makes the segments and times the words by DTW, as before.
//!
//! The guide predicts where each pass starts and what its prompt is, as whisper.cpp computes
//! them, and checks the prediction against whisper.cpp's own first logits of the pass: they
//! must match, or the guide lets whisper.cpp decode the rest of the call alone (greedy). A
//! pass whisper.cpp decodes again at a higher temperature fails that check too.

mod rules;
mod search;

use std::ffi::{CString, c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use whisper_rs_sys as sys;

use self::rules::Vocab;
use self::search::{Hypothesis, Pass, SearchCost, TokenModel};
use super::whisper::{read_pass_position, suppress_unsafe_timestamps};

/// whisper.cpp drops the prompt for a pass that starts this close to the end (mel frames).
const SHORT_REST_FRAMES: i64 = 500;
/// The largest difference between whisper.cpp's first logits of a pass and the scratch
/// state's for the prediction to count as right (the same computation, up to summation order).
const LOGIT_TOLERANCE: f32 = 1e-2;

/// What the guide needs to know about the decode it follows.
pub(crate) struct GuideSetup<'a> {
    pub audio: &'a [f32],
    pub width: usize,
    pub threads: c_int,
    /// The `audio_ctx` whisper.cpp decodes with (0: the model's whole window).
    pub audio_ctx: c_int,
    pub language: &'a str,
    /// The decode's prompt, as given to whisper.cpp.
    pub prompt: &'a [c_int],
    /// Words timed by DTW: the guide also applies sori's DTW timestamp filter.
    pub dtw: bool,
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Where the guide expects whisper.cpp's next pass to start, and with what text before it.
#[derive(Debug, Clone)]
struct Expected {
    seek: i64,
    /// whisper.cpp's `prompt_past1` at that point.
    past: Vec<c_int>,
}

/// The state the search ran on: its own whisper.cpp state over the same audio.
struct Scratch {
    state: *mut sys::whisper_state,
    /// The prompt and tokens the state's decoder cache holds, in order.
    cached: Vec<c_int>,
    prompt: Vec<c_int>,
    buffer: Vec<c_int>,
}

/// Follows one whisper.cpp `full` call (see the module's doc); handed to whisper.cpp as the
/// logits filter's user data.
pub(crate) struct BeamGuide<'a> {
    setup: GuideSetup<'a>,
    language: CString,
    scratch: Option<Scratch>,
    expected: Option<Expected>,
    plan: Option<Hypothesis>,
    vocab: Option<Vocab>,
    pub report: GuideReport,
}

/// What the guide did in one call, for the debug log and tests.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct GuideReport {
    /// Passes the search chose the tokens of.
    pub guided: usize,
    /// Passes whisper.cpp started where the guide did not expect (a retry at a higher
    /// temperature, or a prediction off): from there on it decoded alone.
    pub lost: usize,
    /// Guided passes whose tokens whisper.cpp did not take as the search chose them (never seen:
    /// it would mean the rules here and whisper.cpp's differ).
    pub strayed: usize,
    pub steps: usize,
    pub model_calls: usize,
    /// Time spent making the scratch state and encoding its passes, and searching (ms).
    pub scratch_ms: u64,
    pub search_ms: u64,
}

impl<'a> BeamGuide<'a> {
    pub fn new(setup: GuideSetup<'a>) -> Self {
        let expected = Expected {
            seek: 0,
            past: setup.prompt.to_vec(),
        };
        let language = CString::new(setup.language).unwrap_or_default();
        Self {
            setup,
            language,
            scratch: None,
            expected: Some(expected),
            plan: None,
            vocab: None,
            report: GuideReport::default(),
        }
    }

    /// The logits filter and its user data, for `FullParams::set_filter_logits_callback`.
    pub fn filter(&mut self) -> (sys::whisper_logits_filter_callback, *mut c_void) {
        (Some(guide_filter), self as *mut Self as *mut c_void)
    }

    /// One call of the filter: at a pass's first token, search the pass; then follow it.
    ///
    /// # Safety
    /// `ctx` and `state` are the running `full` call's; `logits` holds the whole vocabulary.
    unsafe fn on_logits(
        &mut self,
        ctx: *mut sys::whisper_context,
        state: *mut sys::whisper_state,
        sampled: &[c_int],
        logits: &mut [f32],
    ) {
        let vocab = *self.vocab.get_or_insert_with(|| unsafe { read_vocab(ctx) });
        if sampled.is_empty() {
            self.plan = None;
            if let Some(expected) = self.expected.take() {
                self.plan = unsafe { self.start_pass(ctx, state, expected, logits, &vocab) };
            }
        }
        let followed = self
            .plan
            .as_ref()
            .map(|plan| plan.tokens.get(..sampled.len()) == Some(sampled));
        if followed == Some(false) {
            self.report.strayed += 1;
        }
        let step = self
            .plan
            .as_ref()
            .filter(|_| followed == Some(true))
            .and_then(|plan| {
                Some((
                    *plan.tokens.get(sampled.len())?,
                    plan.logprobs[sampled.len()],
                ))
            });
        match step {
            Some((token, logprob)) => rules::force(logits, token, logprob, sampled, &vocab),
            None => {
                self.plan = None;
                if self.setup.dtw {
                    let has_text = sampled.iter().any(|&t| (t as usize) < vocab.eot);
                    let pass = unsafe { read_pass_position(state, has_text) };
                    suppress_unsafe_timestamps(logits, vocab.timestamp_begin, pass);
                }
            }
        }
    }

    /// Searches the pass whisper.cpp is starting, if it is the expected one; `None` (and no
    /// more guiding in this call) otherwise.
    unsafe fn start_pass(
        &mut self,
        ctx: *mut sys::whisper_context,
        state: *mut sys::whisper_state,
        expected: Expected,
        first_logits: &[f32],
        vocab: &Vocab,
    ) -> Option<Hypothesis> {
        let end = i64::from(unsafe { sys::whisper_n_len_from_state(state) });
        let (prompt, used_past) = unsafe { self.prompt_for(ctx, &expected, end) };
        let threads = self.setup.threads;
        let (dtw, width, cancel) = (self.setup.dtw, self.setup.width, self.setup.cancel.clone());
        let started = std::time::Instant::now();
        let scratch = match unsafe { self.scratch(ctx) } {
            Ok(scratch) => scratch,
            Err(e) => {
                tracing::warn!(error = %e, "beam search: no scratch state; whisper.cpp decodes alone");
                return None;
            }
        };
        if unsafe {
            sys::whisper_encode_with_state(ctx, scratch.state, expected.seek as c_int, threads)
        } != 0
        {
            tracing::warn!("beam search: the scratch encode failed; whisper.cpp decodes alone");
            return None;
        }
        scratch.cached.clear();
        scratch.prompt = prompt;
        let scratch_ms = started.elapsed().as_millis() as u64;
        let started = std::time::Instant::now();
        let mut model = ScratchModel {
            ctx,
            scratch,
            threads,
            n_vocab: vocab.n_vocab,
        };
        let first = match model.logits(&[]) {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(error = %e, "beam search: the scratch decode failed");
                return None;
            }
        };
        if !same_logits(first, first_logits, vocab) {
            self.report.lost += 1;
            tracing::debug!(
                seek = expected.seek,
                "beam search: whisper.cpp's pass is not the one expected; it decodes alone from here"
            );
            return None;
        }
        let no_speech =
            no_speech_probability(first, unsafe { sys::whisper_token_nosp(ctx) } as usize);
        let pass = Pass {
            seek: expected.seek,
            end,
            dtw,
            max_steps: (unsafe { sys::whisper_n_text_ctx(ctx) } / 2 - 4).max(1) as usize,
        };
        let cancelled = move || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
        let mut cost = SearchCost::default();
        let best = search::search(&mut model, vocab, &pass, width, &cancelled, &mut cost)?;
        self.report.search_ms += started.elapsed().as_millis() as u64;
        self.report.scratch_ms += scratch_ms;
        self.report.guided += 1;
        self.report.steps += cost.steps;
        self.report.model_calls += cost.model_calls;
        self.expected = next_pass(&best, &pass, used_past, no_speech, vocab);
        Some(best)
    }

    /// The prompt whisper.cpp gives the expected pass (its `prompt_past1` rule), and the part of
    /// the past it takes.
    unsafe fn prompt_for(
        &self,
        ctx: *mut sys::whisper_context,
        expected: &Expected,
        end: i64,
    ) -> (Vec<c_int>, Vec<c_int>) {
        let mut past = expected.past.clone();
        if expected.seek > 0 && expected.seek + SHORT_REST_FRAMES >= end {
            past.clear();
        }
        let max_prompt = (unsafe { sys::whisper_n_text_ctx(ctx) } / 2) as usize;
        let take = past.len().min(max_prompt.saturating_sub(1));
        let used = past[past.len() - take..].to_vec();
        let mut prompt = Vec::with_capacity(used.len() + 4);
        if !used.is_empty() {
            prompt.push(unsafe { sys::whisper_token_prev(ctx) });
            prompt.extend_from_slice(&used);
        }
        prompt.push(unsafe { sys::whisper_token_sot(ctx) });
        if unsafe { sys::whisper_is_multilingual(ctx) } != 0 {
            let lang = unsafe { sys::whisper_lang_id(self.language.as_ptr()) };
            prompt.push(unsafe { sys::whisper_token_lang(ctx, lang) });
            prompt.push(unsafe { sys::whisper_token_transcribe(ctx) });
        }
        (prompt, used)
    }

    /// The scratch state, made on first use: a `full` call limited to 100 ms computes the
    /// whole audio's mel and sets the encoder window, then stops before encoding.
    unsafe fn scratch(&mut self, ctx: *mut sys::whisper_context) -> Result<&mut Scratch, String> {
        if self.scratch.is_none() {
            let state = unsafe { sys::whisper_init_state(ctx) };
            if state.is_null() {
                return Err("whisper_init_state failed".into());
            }
            let scratch = self.scratch.insert(Scratch {
                state,
                cached: Vec::new(),
                prompt: Vec::new(),
                buffer: Vec::new(),
            });
            let mut params = unsafe {
                sys::whisper_full_default_params(
                    sys::whisper_sampling_strategy_WHISPER_SAMPLING_GREEDY,
                )
            };
            params.n_threads = self.setup.threads;
            params.language = self.language.as_ptr();
            params.audio_ctx = self.setup.audio_ctx;
            params.duration_ms = 100;
            params.no_context = true;
            params.print_progress = false;
            params.print_realtime = false;
            params.print_special = false;
            params.print_timestamps = false;
            let audio = self.setup.audio;
            let rc = unsafe {
                sys::whisper_full_with_state(
                    ctx,
                    scratch.state,
                    params,
                    audio.as_ptr(),
                    audio.len() as c_int,
                )
            };
            if rc != 0 {
                self.scratch = None;
                return Err(format!("the scratch state's mel failed ({rc})"));
            }
        }
        Ok(self.scratch.as_mut().expect("made above"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: made by `whisper_init_state`, freed once, here.
        unsafe { sys::whisper_free_state(self.state) }
    }
}

/// The search's decoder: the scratch state, re-reading only what differs from its cache.
struct ScratchModel<'s> {
    ctx: *mut sys::whisper_context,
    scratch: &'s mut Scratch,
    threads: c_int,
    n_vocab: usize,
}

impl TokenModel for ScratchModel<'_> {
    fn logits(&mut self, prefix: &[c_int]) -> Result<&[f32], String> {
        let s = &mut *self.scratch;
        s.buffer.clear();
        s.buffer.extend_from_slice(&s.prompt);
        s.buffer.extend_from_slice(prefix);
        let shared = s
            .cached
            .iter()
            .zip(&s.buffer)
            .take_while(|(a, b)| a == b)
            .count();
        let n_past = shared.min(s.buffer.len() - 1);
        let new = &s.buffer[n_past..];

        // SAFETY: the state is alive; `new` holds `new.len()` tokens.
        let rc = unsafe {
            sys::whisper_decode_with_state(
                self.ctx,
                s.state,
                new.as_ptr(),
                new.len() as c_int,
                n_past as c_int,
                self.threads,
            )
        };
        s.cached.clear();
        if rc != 0 {
            return Err(format!("whisper_decode_with_state returned {rc}"));
        }
        s.cached.extend_from_slice(&s.buffer);
        // SAFETY: whisper.cpp keeps one row of logits per decoded token; the last is ours.
        let logits = unsafe {
            let base = sys::whisper_get_logits_from_state(s.state);
            std::slice::from_raw_parts(base.add((new.len() - 1) * self.n_vocab), self.n_vocab)
        };
        Ok(logits)
    }
}

/// The pass whisper.cpp starts after accepting `best` (its `seek` and `prompt_past1` rules).
fn next_pass(
    best: &Hypothesis,
    pass: &Pass,
    used_past: Vec<c_int>,
    no_speech: f32,
    vocab: &Vocab,
) -> Option<Expected> {
    let kept = &best.tokens[..best.result_len.min(best.tokens.len())];
    let single_timestamp_ending = kept.len() > 1
        && (kept[kept.len() - 2] as usize) < vocab.timestamp_begin
        && (kept[kept.len() - 1] as usize) > vocab.timestamp_begin;
    let delta = if single_timestamp_ending {
        (pass.end - pass.seek).min(search::FULL_WINDOW_FRAMES)
    } else {
        best.seek_delta
    };
    let seek = pass.seek + delta;
    if seek + 10 >= pass.end {
        return None;
    }
    // whisper.cpp's defaults, which sori keeps: no_speech_thold 0.6, logprob_thold -1.
    let is_no_speech = no_speech > 0.6 && best.score() < -1.0;
    let mut past = used_past;
    if !is_no_speech {
        past.extend_from_slice(kept);
    }
    Some(Expected { seek, past })
}

/// Whether two decodes of a pass's prompt agree: compared over the text tokens, which
/// whisper.cpp leaves as they are before its filter (but the blank, closed on the first step).
fn same_logits(ours: &[f32], theirs: &[f32], vocab: &Vocab) -> bool {
    (0..vocab.eot)
        .filter(|&i| i != vocab.blank)
        .all(|i| (ours[i] - theirs[i]).abs() <= LOGIT_TOLERANCE)
}

fn no_speech_probability(raw: &[f32], no_speech: usize) -> f32 {
    let max = raw.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = raw.iter().map(|l| (l - max).exp()).sum();
    (raw[no_speech] - max).exp() / sum
}

/// The token ids the rules need.
unsafe fn read_vocab(ctx: *mut sys::whisper_context) -> Vocab {
    let mut blank: [c_int; 4] = [0; 4];
    let space = c" ";
    let n = unsafe { sys::whisper_tokenize(ctx, space.as_ptr(), blank.as_mut_ptr(), 4) };
    unsafe {
        Vocab {
            eot: sys::whisper_token_eot(ctx) as usize,
            blank: if n == 1 { blank[0] as usize } else { 220 },
            timestamp_begin: sys::whisper_token_beg(ctx) as usize,
            n_vocab: sys::whisper_n_vocab(ctx).max(0) as usize,
        }
    }
}

/// whisper.cpp's logits filter for guided decodes; its user data is the `BeamGuide`.
unsafe extern "C" fn guide_filter(
    ctx: *mut sys::whisper_context,
    state: *mut sys::whisper_state,
    tokens: *const sys::whisper_token_data,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    // SAFETY: `user_data` is the guide, alive and not otherwise borrowed for the whole `full`
    // call; `logits` holds the whole vocabulary and `tokens` the pass's sampled tokens.
    unsafe {
        let guide = &mut *(user_data as *mut BeamGuide);
        let n_vocab = sys::whisper_n_vocab(ctx).max(0) as usize;
        let logits = std::slice::from_raw_parts_mut(logits, n_vocab);
        let sampled: Vec<c_int> = match usize::try_from(n_tokens) {
            Ok(n) if n > 0 && !tokens.is_null() => std::slice::from_raw_parts(tokens, n)
                .iter()
                .map(|t| t.id)
                .collect(),
            _ => Vec::new(),
        };
        guide.on_logits(ctx, state, &sampled, logits);
    }
}
