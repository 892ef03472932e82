//! Repetition loops: a word, phrase or character run repeated too many times in a row.

use super::text::normalize;

/// Longest repeated unit looked for, in words (word loops) and in characters (loops in
/// unspaced text such as "감사합니다감사합니다…").
const MAX_UNIT_WORDS: usize = 12;
const MAX_UNIT_CHARS: usize = 20;

/// Where a loop is and how to cut it: keep `text[..keep_end]`, resume at `text[resume..]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct LoopCut {
    /// End (byte) of the first occurrence of the repeated unit.
    pub(super) keep_end: usize,
    /// Start (byte) of what follows the loop (and any partial repeat).
    pub(super) resume: usize,
    /// Whether the unit was words (rejoin with a space) or characters inside a word.
    pub(super) word_level: bool,
}

/// A whitespace-separated word: byte span plus normalised form.
struct Word {
    start: usize,
    end: usize,
    norm: String,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (ch.is_whitespace(), start) {
            (true, Some(s)) => {
                let norm = normalize(&text[s..i]);
                if !norm.is_empty() {
                    out.push(Word {
                        start: s,
                        end: i,
                        norm,
                    });
                }
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// Fewest words of a phrase that, said twice in a row, is Whisper doubling its text (at the
/// end of a short window) rather than a speaker repeating themselves.
pub(super) const MIN_DOUBLED_WORDS: usize = 5;

/// A unit of `min_words..=MAX_UNIT_WORDS` words repeated at least `min_reps` times in a row.
pub(super) fn word_loop(text: &str, min_reps: usize, min_words: usize) -> Option<LoopCut> {
    let w = words(text);
    let n = w.len();
    for i in 0..n {
        for k in min_words.max(1)..=MAX_UNIT_WORDS.min((n - i) / min_reps) {
            let same = |a: usize, b: usize| (0..k).all(|j| w[a + j].norm == w[b + j].norm);
            let mut reps = 1;
            while i + (reps + 1) * k <= n && same(i, i + reps * k) {
                reps += 1;
            }
            if reps < min_reps {
                continue;
            }
            // Swallow a trailing partial repeat ("… the end the end the").
            let mut j = i + reps * k;
            let partial = (0..k)
                .take_while(|&m| j + m < n && w[j + m].norm == w[i + m].norm)
                .count();
            if partial > 0 && partial < k && j + partial == n {
                j = n;
            }
            return Some(LoopCut {
                keep_end: w[i + k - 1].end,
                resume: if j < n { w[j].start } else { text.len() },
                word_level: true,
            });
        }
    }
    None
}

/// Inside one word (unspaced CJK/Hangul text), a unit of 1..=MAX_UNIT_CHARS characters with at
/// least one letter (digit runs such as "1000000" are numbers, not loops) repeated at least
/// `min_reps` times in a row.
pub(super) fn char_loop(text: &str, min_reps: usize) -> Option<LoopCut> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let byte_at = |idx: usize| chars.get(idx).map_or(text.len(), |c| c.0);
    for i in 0..n {
        if chars[i].1.is_whitespace() {
            continue;
        }
        for k in 1..=MAX_UNIT_CHARS.min((n - i) / min_reps) {
            let unit = &chars[i..i + k];
            if unit.iter().any(|c| c.1.is_whitespace()) {
                break;
            }
            if !unit.iter().any(|c| c.1.is_alphabetic()) {
                continue;
            }
            let same = |a: usize, b: usize| (0..k).all(|j| chars[a + j].1 == chars[b + j].1);
            let mut reps = 1;
            while i + (reps + 1) * k <= n && same(i, i + reps * k) {
                reps += 1;
            }
            if reps < min_reps {
                continue;
            }
            let mut j = i + reps * k;
            let partial = (0..k)
                .take_while(|&m| j + m < n && chars[j + m].1 == chars[i + m].1)
                .count();
            let word_ends = |idx: usize| idx >= n || chars[idx].1.is_whitespace();
            if partial > 0 && partial < k && word_ends(j + partial) {
                j += partial;
            }
            return Some(LoopCut {
                keep_end: byte_at(i + k),
                resume: byte_at(j),
                word_level: false,
            });
        }
    }
    None
}
