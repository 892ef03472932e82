//! The beam search: each step, every live hypothesis offers its `width + 1` likeliest next
//! tokens, the likeliest continuations fill the beam again, and hypotheses that end are set
//! aside until `width` of them have; the best of those by whisper.cpp's own score wins. This
//! is openai-whisper's and CTranslate2's search (patience 1), over whisper.cpp's rules.

use std::ffi::c_int;

use super::super::whisper::PassPosition;
use super::rules::{self, Vocab};

/// The decoder the search asks for next-token logits: after the pass's prompt, `prefix`.
pub(crate) trait TokenModel {
    fn logits(&mut self, prefix: &[c_int]) -> Result<&[f32], String>;
}

/// One pass of whisper.cpp over the audio from `seek` (mel frames, 10 ms) to `end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    pub seek: i64,
    pub end: i64,
    /// Words timed by DTW: sori's filter against too-short alignments applies.
    pub dtw: bool,
    /// whisper.cpp's step limit (`n_text_ctx / 2 - 4`).
    pub max_steps: usize,
}

/// whisper.cpp's first `seek_delta`: the whole 30 s window, in mel frames.
pub(crate) const FULL_WINDOW_FRAMES: i64 = 3000;
/// whisper.cpp ends a pass this close to the end of the audio (mel frames).
const END_MARGIN: i64 = 10;

/// A hypothesis: its tokens, their log-probabilities, and whisper.cpp's bookkeeping for it.
#[derive(Debug, Clone)]
pub(crate) struct Hypothesis {
    pub tokens: Vec<c_int>,
    pub logprobs: Vec<f32>,
    sum: f64,
    /// Where the last timestamp puts the next pass (mel frames from the pass's start).
    pub seek_delta: i64,
    has_timestamp: bool,
    /// How many tokens whisper.cpp keeps: up to the last timestamp.
    pub result_len: usize,
}

impl Hypothesis {
    fn empty() -> Self {
        Self {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            sum: 0.0,
            seek_delta: FULL_WINDOW_FRAMES,
            has_timestamp: false,
            result_len: 0,
        }
    }

    /// The hypothesis grown by `token` at `step`, and whether it ended there; `None` where
    /// whisper.cpp would mark it failed.
    fn extend(&self, token: c_int, logprob: f32, step: usize, pass: &Pass, vocab: &Vocab) -> Option<(Self, bool)> {
        let mut next = self.clone();
        next.tokens.push(token);
        next.logprobs.push(logprob);
        next.sum += f64::from(logprob);
        if token as usize > vocab.timestamp_begin {
            let delta = 2 * (token as i64 - vocab.timestamp_begin as i64);
            if next.has_timestamp && next.seek_delta > delta && next.result_len < step {
                return None;
            }
            next.seek_delta = delta;
            next.result_len = step + 1;
            next.has_timestamp = true;
        }
        let at_end = pass.seek + next.seek_delta + END_MARGIN >= pass.end;
        if token as usize == vocab.eot || (next.has_timestamp && at_end) {
            if next.result_len == 0 {
                if !at_end {
                    return None;
                }
                next.result_len = step + 1;
            }
            return Some((next, true));
        }
        if step + 1 == pass.max_steps
            && (next.result_len == 0 || next.seek_delta < FULL_WINDOW_FRAMES / 2)
        {
            return None;
        }
        Some((next, false))
    }

    /// whisper.cpp's score: the mean log-probability of the tokens it keeps.
    pub fn score(&self) -> f64 {
        if self.result_len == 0 {
            return f64::NEG_INFINITY;
        }
        let kept: f64 = self.logprobs[..self.result_len].iter().map(|&l| f64::from(l)).sum();
        kept / self.result_len as f64
    }

    /// The mean log-probability whisper.cpp checks against `logprob_thold`.
    pub fn mean_logprob(&self) -> f64 {
        self.score()
    }

    fn has_text(&self, vocab: &Vocab) -> bool {
        self.tokens.iter().any(|&t| (t as usize) < vocab.eot)
    }
}

/// What one search cost, for the debug log.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SearchCost {
    pub steps: usize,
    pub model_calls: usize,
}

/// The best hypothesis for the pass with `width` beams, or `None` when cancelled, when the
/// model fails, or when no hypothesis survives.
pub(crate) fn search(
    model: &mut impl TokenModel,
    vocab: &Vocab,
    pass: &Pass,
    width: usize,
    cancelled: &dyn Fn() -> bool,
    cost: &mut SearchCost,
) -> Option<Hypothesis> {
    let width = width.max(1);
    let mut live = vec![Hypothesis::empty()];
    let mut finished: Vec<Hypothesis> = Vec::new();
    let mut logprobs = Vec::with_capacity(vocab.n_vocab);
    for step in 0..pass.max_steps {
        if cancelled() {
            return None;
        }
        cost.steps += 1;
        // Neighbours in token order share the longest prefixes: the model re-reads least.
        live.sort_by(|a, b| a.tokens.cmp(&b.tokens));
        let mut candidates: Vec<(f64, usize, c_int, f32)> = Vec::new();
        for (source, hypothesis) in live.iter().enumerate() {
            cost.model_calls += 1;
            let raw = match model.logits(&hypothesis.tokens) {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::warn!(error = %e, "beam search: the decoder failed; whisper.cpp decodes this pass alone");
                    return None;
                }
            };
            let dtw = pass.dtw.then_some(PassPosition {
                seek: pass.seek,
                end: pass.end,
                has_text: hypothesis.has_text(vocab),
            });
            rules::logprobs(raw, &hypothesis.tokens, vocab, dtw, &mut logprobs);
            for (token, logprob) in likeliest(&logprobs, width + 1) {
                candidates.push((hypothesis.sum + f64::from(logprob), source, token, logprob));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut next = Vec::with_capacity(width);
        for (_, source, token, logprob) in candidates {
            match live[source].extend(token, logprob, step, pass, vocab) {
                None => {}
                Some((ended, true)) => {
                    if finished.len() < width {
                        finished.push(ended);
                    }
                }
                Some((growing, false)) => {
                    next.push(growing);
                    if next.len() == width {
                        break;
                    }
                }
            }
        }
        if finished.len() >= width || next.is_empty() {
            live = next;
            break;
        }
        live = next;
    }
    let pool = if finished.is_empty() { live } else { finished };
    pool.into_iter().max_by(|a, b| a.score().total_cmp(&b.score()))
}

/// The `n` likeliest open tokens, likeliest first (ties: lower id first).
fn likeliest(logprobs: &[f32], n: usize) -> Vec<(c_int, f32)> {
    let mut best: Vec<(c_int, f32)> = Vec::with_capacity(n + 1);
    for (id, &logprob) in logprobs.iter().enumerate() {
        if logprob == f32::NEG_INFINITY {
            continue;
        }
        if best.len() == n && logprob <= best[n - 1].1 {
            continue;
        }
        let at = best.partition_point(|&(_, l)| l >= logprob);
        best.insert(at, (id as c_int, logprob));
        best.truncate(n);
    }
    best
}
