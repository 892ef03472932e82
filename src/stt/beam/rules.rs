//! whisper.cpp's token rules at temperature 0, in the order its `whisper_process_logits`
//! applies them, so that the search only picks tokens whisper.cpp's own pass accepts when it
//! follows the search; and the logits that make that pass take a chosen token with the
//! probability the search gave it.

use std::ffi::c_int;

use super::super::whisper::{PassPosition, suppress_unsafe_timestamps};

/// whisper.cpp's `max_initial_ts` (1.0 s, which sori keeps) in 20 ms timestamp steps.
const MAX_INITIAL_TIMESTAMP: usize = 50;

/// The token ids the rules need, read once from the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vocab {
    /// `<|endoftext|>`; every id below it is text.
    pub eot: usize,
    /// The lone space, which may not open a pass (whisper.cpp's `suppress_blank`).
    pub blank: usize,
    /// `<|0.00|>`; every id from it on is a timestamp.
    pub timestamp_begin: usize,
    pub n_vocab: usize,
}

impl Vocab {
    pub fn is_timestamp(&self, id: c_int) -> bool {
        id as usize >= self.timestamp_begin
    }
}

/// The index (20 ms steps) of the last timestamp after `<|0.00|>` in `sampled`: whisper.cpp
/// counts only those (`token.id > token_beg`) when it keeps timestamps from going back.
pub(crate) fn last_timestamp(sampled: &[c_int], vocab: &Vocab) -> Option<usize> {
    sampled
        .iter()
        .rev()
        .find(|&&id| id as usize > vocab.timestamp_begin)
        .map(|&id| id as usize - vocab.timestamp_begin)
}

/// Which kinds of token whisper.cpp's pairing rule leaves open after `sampled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    Any,
    /// After a segment's closing timestamp: its opening one, or the end.
    TimestampOrEnd,
    /// After a timestamp pair (or the pass's first token): text.
    NoTimestamp,
}

fn pairing(sampled: &[c_int], vocab: &Vocab) -> Pairing {
    let last_was = sampled.last().is_some_and(|&id| vocab.is_timestamp(id));
    let penultimate_was = sampled.len() < 2 || vocab.is_timestamp(sampled[sampled.len() - 2]);
    match (last_was, penultimate_was) {
        (true, true) => Pairing::NoTimestamp,
        (true, false) => Pairing::TimestampOrEnd,
        _ => Pairing::Any,
    }
}

/// The log-probabilities whisper.cpp's pass would sample the next token from after
/// `sampled`, given the decoder's `raw` logits: −∞ where a rule forbids the token. `dtw` is
/// the pass's position when its words are timed by DTW (sori's own filter then runs where
/// whisper.cpp runs the logits filter).
pub(crate) fn logprobs(
    raw: &[f32],
    sampled: &[c_int],
    vocab: &Vocab,
    dtw: Option<PassPosition>,
    out: &mut Vec<f32>,
) {
    let neg = f32::NEG_INFINITY;
    let (eot, begin) = (vocab.eot, vocab.timestamp_begin);
    out.clear();
    out.extend_from_slice(&raw[..vocab.n_vocab]);
    let initial = sampled.is_empty();
    if initial {
        out[eot] = neg;
        out[vocab.blank] = neg;
    }
    // Start of transcript, languages, tasks, no-speech, no-timestamps, previous text.
    out[eot + 1..begin].fill(neg);
    if let Some(pass) = dtw {
        suppress_unsafe_timestamps(out, begin, pass);
    }
    match pairing(sampled, vocab) {
        Pairing::NoTimestamp => out[begin..].fill(neg),
        Pairing::TimestampOrEnd => out[..eot].fill(neg),
        Pairing::Any => {}
    }
    if initial {
        let from = (begin + MAX_INITIAL_TIMESTAMP + 1).min(out.len());
        out[from..].fill(neg);
    }
    if let Some(last) = last_timestamp(sampled, vocab) {
        out[begin..begin + last].fill(neg);
    }
    log_softmax(out);
    // When the timestamps together outweigh every text token, a timestamp comes next. Like
    // whisper.cpp, the timestamps' log-probabilities are not renormalised.
    let timestamps = log_sum_exp(&out[begin..]);
    let best_text = out[..begin].iter().copied().fold(neg, f32::max);
    if timestamps > best_text {
        out[..begin].fill(neg);
    }
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum: f32 = values.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln()
}

fn log_softmax(values: &mut [f32]) {
    let norm = log_sum_exp(values);
    if norm == f32::NEG_INFINITY {
        return;
    }
    for v in values.iter_mut() {
        *v -= norm;
    }
}

/// Rewrites whisper.cpp's logits (its own suppressions applied, −∞) so that its greedy pass
/// takes `target` after `sampled`, with log-probability `logprob`: the target keeps it and the
/// rest of the mass is spread evenly over the other tokens of its kind (text or timestamp)
/// that whisper.cpp's later rules leave open, so the probabilities whisper.cpp records (and
/// scores, and falls back on) are the search's. Where that spread would outweigh the target,
/// the target alone is left open.
pub(crate) fn force(
    logits: &mut [f32],
    target: c_int,
    logprob: f32,
    sampled: &[c_int],
    vocab: &Vocab,
) {
    let neg = f32::NEG_INFINITY;
    let target = target as usize;
    let begin = vocab.timestamp_begin;
    let open = if target >= begin {
        let from = begin + last_timestamp(sampled, vocab).unwrap_or(0);
        let to = if sampled.is_empty() {
            (begin + MAX_INITIAL_TIMESTAMP + 1).min(logits.len())
        } else {
            logits.len()
        };
        from..to
    } else if pairing(sampled, vocab) == Pairing::TimestampOrEnd {
        // Only the end is open among non-timestamps here.
        target..target + 1
    } else {
        0..begin
    };
    let others = open
        .clone()
        .filter(|&i| i != target && logits[i] > neg)
        .count();
    let rest = 1.0 - f64::from(logprob).exp();
    let share = if others > 0 && rest > 0.0 {
        (rest / others as f64).ln() as f32
    } else {
        neg
    };
    let spread = share < logprob;
    for (i, logit) in logits.iter_mut().enumerate() {
        *logit = if i == target {
            if spread { logprob } else { 0.0 }
        } else if spread && open.contains(&i) && *logit > neg {
            share
        } else {
            neg
        };
    }
}

/// A toy vocabulary for tests: text 0–9, end 10, specials 11–13, timestamps 14–99
/// (`<|0.00|>` = 14).
#[cfg(test)]
pub(crate) const TOY_VOCAB: Vocab = Vocab {
    eot: 10,
    blank: 3,
    timestamp_begin: 14,
    n_vocab: 100,
};

#[cfg(test)]
mod tests {
    use super::*;

    const V: Vocab = TOY_VOCAB;
    const NEG: f32 = f32::NEG_INFINITY;

    fn open(lp: &[f32]) -> Vec<usize> {
        (0..lp.len()).filter(|&i| lp[i] > NEG).collect()
    }

    #[test]
    fn a_pass_opens_on_an_early_timestamp_then_pairs_its_timestamps() {
        let raw = vec![0.0f32; V.n_vocab];
        let mut lp = Vec::new();
        // First token: no end, no blank, no specials, no timestamp past 1.0 s (index 50); the
        // text is likelier than the timestamps together, so it stays open.
        let mut texty = raw.clone();
        texty[..10].fill(5.0);
        logprobs(&texty, &[], &V, None, &mut lp);
        let first = open(&lp);
        assert!(!first.contains(&10) && !first.contains(&3) && !first.contains(&12));
        assert!(first.contains(&0) && first.contains(&14) && first.contains(&64));
        assert!(!first.contains(&65));
        // After <|0.00|> (the pass's first token counts as a pair): text only.
        logprobs(&raw, &[14], &V, None, &mut lp);
        assert_eq!(open(&lp), vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // After text then <|0.40|>: its pair or the end, and never before 0.40.
        let mut ending = raw.clone();
        ending[10] = 6.0;
        logprobs(&ending, &[14, 5, 34], &V, None, &mut lp);
        let after_close = open(&lp);
        assert_eq!(after_close[0], 10);
        assert_eq!(
            after_close[1], 34,
            "the next segment may open where this one closed"
        );
        assert!(!after_close.contains(&33));
        // When the timestamps together outweigh every text token, only they stay open, with
        // their probabilities as before (not renormalised): 86 of 97 equal tokens.
        logprobs(&raw, &[14, 5], &V, None, &mut lp);
        assert_eq!(open(&lp), (14..100).collect::<Vec<_>>());
        let total: f32 = lp.iter().filter(|l| **l > NEG).map(|l| l.exp()).sum();
        assert!((total - 86.0 / 97.0).abs() < 1e-4, "{total}");
    }

    #[test]
    fn forcing_keeps_the_targets_probability_and_leaves_it_the_likeliest() {
        let mut lp = Vec::new();
        let mut raw = vec![0.0f32; V.n_vocab];
        raw[..10].fill(3.0);
        raw[7] = 4.5;
        logprobs(&raw, &[14, 5], &V, None, &mut lp);
        // Force token 7 (p ≈ 0.25): it keeps its log-probability, and it is the likeliest.
        let mut logits = raw.clone();
        logits[11..14].fill(NEG);
        force(&mut logits, 7, lp[7], &[14, 5], &V);
        let norm = log_sum_exp(&logits);
        assert!(
            (logits[7] - norm - lp[7]).abs() < 1e-4,
            "its log-probability is kept"
        );
        let argmax = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(argmax, 7);
        assert!(
            logits[14..].iter().all(|l| *l == NEG),
            "no timestamp may win"
        );
        assert!(
            logits[11..14].iter().all(|l| *l == NEG),
            "what whisper.cpp closed stays shut"
        );
        // Token 2 (p ≈ 0.06) would lose to the spread (10 others share 0.94): it alone is open.
        let mut logits = raw.clone();
        force(&mut logits, 2, lp[2], &[14, 5], &V);
        assert_eq!(open(&logits), vec![2]);
        // A closing timestamp's pair: only timestamps from it on carry the rest.
        let mut logits = vec![0.0f32; V.n_vocab];
        force(&mut logits, 40, -0.5, &[14, 5, 34], &V);
        assert!(logits[..34].iter().all(|l| *l == NEG));
        assert!(logits[34..].iter().all(|l| *l > NEG));
        // The end after a closing timestamp has no kin: it alone stays open.
        let mut logits = vec![0.0f32; V.n_vocab];
        force(&mut logits, 10, -2.0, &[14, 5, 34], &V);
        assert_eq!(open(&logits), vec![10]);
    }
}
