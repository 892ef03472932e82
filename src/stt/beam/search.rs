//! The beam search: each step, every live hypothesis offers its `width + 1` likeliest next
//! tokens, the likeliest continuations fill the beam again, and hypotheses that end are set
//! aside until `width` of them have; the best of those by whisper.cpp's own score (the mean
//! log-probability of the tokens it keeps) wins. This is openai-whisper's search (patience 1),
//! which faster-whisper's CTranslate2 follows, over whisper.cpp's rules and log-probabilities.
//! (Ranking as openai-whisper does instead, by renormalised log-probabilities and the end's
//! log-probability counted, read ten 0 dB white-noise mixes with 447 word errors against 407.)

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
    /// Each token's log-probability as whisper.cpp records it (see [`rules::logprobs`]).
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
    fn extend(
        &self,
        token: c_int,
        logprob: f32,
        step: usize,
        pass: &Pass,
        vocab: &Vocab,
    ) -> Option<(Self, bool)> {
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

    /// whisper.cpp's score, which it also checks against `logprob_thold`: the mean
    /// log-probability of the tokens it keeps.
    pub fn score(&self) -> f64 {
        if self.result_len == 0 {
            return f64::NEG_INFINITY;
        }
        let kept: f64 = self.logprobs[..self.result_len]
            .iter()
            .map(|&l| f64::from(l))
            .sum();
        kept / self.result_len as f64
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
    let mut asked: Vec<c_int> = Vec::new();
    for step in 0..pass.max_steps {
        if cancelled() {
            return None;
        }
        cost.steps += 1;
        order_by_shared_prefix(&mut live, &mut asked);
        let mut candidates: Vec<(f64, usize, c_int, f32)> = Vec::new();
        for (source, hypothesis) in live.iter().enumerate() {
            cost.model_calls += 1;
            asked.clone_from(&hypothesis.tokens);
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
                Some((ended, true)) if finished.len() < width => finished.push(ended),
                Some((_, true)) => {}
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
    pool.into_iter()
        .max_by(|a, b| a.score().total_cmp(&b.score()))
}

/// Orders the hypotheses so that each shares the longest prefix with the one before it,
/// starting from `asked`, the prefix the model read last. The model re-reads what follows
/// the shared prefix, and re-reading two or more tokens costs whisper.cpp about three times
/// one (base, CPU), so each step starts where the last ended and families of hypotheses that
/// parted long ago are visited one after the other.
fn order_by_shared_prefix(live: &mut [Hypothesis], asked: &mut Vec<c_int>) {
    let shared = |a: &[c_int], b: &[c_int]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let mut previous = std::mem::take(asked);
    for i in 0..live.len() {
        let next = (i..live.len())
            .max_by(|&a, &b| {
                shared(&previous, &live[a].tokens)
                    .cmp(&shared(&previous, &live[b].tokens))
                    .then(live[b].tokens.cmp(&live[a].tokens))
            })
            .expect("i < len");
        live.swap(i, next);
        previous.clone_from(&live[i].tokens);
    }
    *asked = previous;
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

#[cfg(test)]
mod tests {
    use super::*;

    const V: Vocab = rules::TOY_VOCAB;

    /// Test double for whisper.cpp's decoder: next-token probabilities scripted per prefix
    /// (unscripted tokens, and every token after an unscripted prefix, are all but impossible);
    /// a broken one fails every call.
    /// Each prefix, and the probabilities of the tokens that may follow it.
    type Script = Vec<(Vec<c_int>, Vec<(c_int, f32)>)>;

    struct ScriptedModel {
        script: Script,
        broken: bool,
        logits: Vec<f32>,
        asked: Vec<Vec<c_int>>,
    }

    impl ScriptedModel {
        fn new(script: Script) -> Self {
            Self {
                script,
                broken: false,
                logits: Vec::new(),
                asked: Vec::new(),
            }
        }
    }

    impl TokenModel for ScriptedModel {
        fn logits(&mut self, prefix: &[c_int]) -> Result<&[f32], String> {
            if self.broken {
                return Err("the decoder failed".into());
            }
            self.asked.push(prefix.to_vec());
            self.logits = vec![-30.0; V.n_vocab];
            if let Some((_, next)) = self.script.iter().find(|(p, _)| p == prefix) {
                for &(token, p) in next {
                    self.logits[token as usize] = p.ln();
                }
            }
            Ok(&self.logits)
        }
    }

    /// A pass over 10 s of audio: `<|0.00|>`, a text token, another, `<|0.52|>`, the end.
    fn script() -> Script {
        vec![
            (vec![], vec![(14, 1.0)]),
            (vec![14], vec![(1, 0.6), (2, 0.4)]),
            // After the likelier first word, the second is anyone's guess…
            (
                vec![14, 1],
                vec![(4, 0.2), (5, 0.2), (6, 0.2), (7, 0.2), (8, 0.2)],
            ),
            // …after the other, it is sure.
            (vec![14, 2], vec![(4, 0.99)]),
            (vec![14, 1, 4], vec![(40, 1.0)]),
            (vec![14, 2, 4], vec![(40, 1.0)]),
            (vec![14, 1, 4, 40], vec![(10, 1.0)]),
            (vec![14, 2, 4, 40], vec![(10, 1.0)]),
        ]
    }

    const PASS: Pass = Pass {
        seek: 0,
        end: 1000,
        dtw: false,
        max_steps: 20,
    };

    fn run(model: &mut ScriptedModel, width: usize) -> Option<Hypothesis> {
        search(
            model,
            &V,
            &PASS,
            width,
            &|| false,
            &mut SearchCost::default(),
        )
    }

    #[test]
    fn the_beam_finds_the_likelier_sentence_that_greedy_misses() {
        let greedy = run(&mut ScriptedModel::new(script()), 1).unwrap();
        assert_eq!(greedy.tokens, vec![14, 1, 4, 40, 10]);
        let beam = run(&mut ScriptedModel::new(script()), 2).unwrap();
        assert_eq!(beam.tokens, vec![14, 2, 4, 40, 10]);
        // whisper.cpp keeps the tokens up to the last timestamp.
        assert_eq!(beam.result_len, 4);
        assert!(beam.score() > greedy.score());
        assert_eq!(beam.seek_delta, 2 * (40 - 14));
    }

    #[test]
    fn each_step_starts_where_the_model_read_last() {
        let mut model = ScriptedModel::new(script());
        run(&mut model, 2).unwrap();
        // Each step starts from the family of the prefix read last: [14, 2] then [14, 2, 4].
        let asked: Vec<&[c_int]> = model.asked.iter().map(|p| &p[..]).collect();
        let expected: Vec<&[c_int]> = vec![
            &[],
            &[14],
            &[15],
            &[14, 1],
            &[14, 2],
            &[14, 2, 4],
            &[14, 1, 4],
            &[14, 1, 4, 40],
            &[14, 2, 4, 40],
        ];
        assert_eq!(asked, expected);
    }

    #[test]
    fn a_failing_model_or_a_cancelled_decode_gives_no_plan() {
        let mut broken = ScriptedModel::new(script());
        broken.broken = true;
        assert!(run(&mut broken, 2).is_none());
        let mut model = ScriptedModel::new(script());
        let cancelled = search(
            &mut model,
            &V,
            &PASS,
            2,
            &|| true,
            &mut SearchCost::default(),
        );
        assert!(cancelled.is_none());
        assert!(model.asked.is_empty());
    }
}
