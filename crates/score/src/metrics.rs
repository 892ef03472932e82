//! Edit distance with an alignment, error counts that pool across files, and the
//! hallucinated-segment count.

use serde::Serialize;

use crate::normalize::{Profile, chars_of, words};

/// Edits against a number of reference units (words for WER, characters for CER). Pooling
/// adds both, so a total is Σ edits ÷ Σ units, not a mean of per-file rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Substitutions + deletions + insertions.
    pub edits: usize,
    /// Units in the normalised reference.
    pub units: usize,
}

impl Count {
    /// `edits / units`; `None` when the reference has no units (a silence file).
    pub fn rate(&self) -> Option<f64> {
        (self.units > 0).then(|| self.edits as f64 / self.units as f64)
    }

    pub fn add(&mut self, other: Count) {
        self.edits += other.edits;
        self.units += other.units;
    }
}

/// As JSON: `{"edits": 3, "units": 22, "rate": 0.136}` (`rate` null without units).
impl Serialize for Count {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown {
            edits: usize,
            units: usize,
            rate: Option<f64>,
        }
        Shown {
            edits: self.edits,
            units: self.units,
            rate: self.rate(),
        }
        .serialize(s)
    }
}

/// Which error rate a file is judged by: WER for English-like text, CER for Korean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Wer,
    Cer,
}

impl Metric {
    pub fn for_profile(profile: Profile) -> Self {
        match profile {
            Profile::English => Metric::Wer,
            Profile::Korean => Metric::Cer,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Wer => "WER",
            Metric::Cer => "CER",
        }
    }
}

/// Prefix edit distances: `t[i * (m + 1) + j]` = distance of `a[..i]` to `b[..j]`.
fn prefix_table<T: PartialEq>(a: &[T], b: &[T]) -> Vec<u32> {
    let width = b.len() + 1;
    let mut table = vec![0u32; (a.len() + 1) * width];
    for (j, cell) in table.iter_mut().take(width).enumerate() {
        *cell = j as u32;
    }
    for i in 1..=a.len() {
        table[i * width] = i as u32;
        for j in 1..=b.len() {
            let substitution = table[(i - 1) * width + j - 1] + u32::from(a[i - 1] != b[j - 1]);
            let deletion = table[(i - 1) * width + j] + 1;
            let insertion = table[i * width + j - 1] + 1;
            table[i * width + j] = substitution.min(deletion).min(insertion);
        }
    }
    table
}

fn reversed<T>(s: &[T]) -> Vec<&T> {
    s.iter().rev().collect()
}

/// Largest reference × hypothesis table (cells, 4 bytes each, two tables) for the exact
/// test of [`inserted_spans`]: about 4,500 units on each side (a quarter of an hour of
/// Korean speech in characters).
pub const MAX_SPAN_TEST_CELLS: usize = 20_000_000;

/// For each span `[start, end)` of `hypothesis`: whether some minimum-edit alignment of the
/// whole hypothesis against `reference` inserts every unit of the span. Exact test: the
/// distance equals, for some reference position `i`, the prefix distance up to `(i, start)`
/// plus the span's length plus the suffix distance from `(i, end)`. `None` when the texts
/// are too long for the tables (see [`MAX_SPAN_TEST_CELLS`]).
pub fn inserted_spans<T: PartialEq>(
    reference: &[T],
    hypothesis: &[T],
    spans: &[(usize, usize)],
) -> Option<Vec<bool>> {
    let (n, m) = (reference.len(), hypothesis.len());
    if (n + 1).saturating_mul(m + 1) > MAX_SPAN_TEST_CELLS {
        return None;
    }
    let width = m + 1;
    let forward = prefix_table(reference, hypothesis);
    let backward = prefix_table(&reversed(reference), &reversed(hypothesis));
    // Distance of reference[i..] to hypothesis[j..].
    let suffix = |i: usize, j: usize| backward[(n - i) * width + (m - j)];
    let total = forward[n * width + m];
    Some(
        spans
            .iter()
            .map(|&(a, b)| {
                b > a
                    && (0..=n)
                        .any(|i| forward[i * width + a] + (b - a) as u32 + suffix(i, b) == total)
            })
            .collect(),
    )
}

/// Levenshtein distance with one row of memory.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// One path's transcript scored against the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub wer: Count,
    pub cer: Count,
    /// Normalised hypothesis words (each final normalised on its own, then joined).
    pub words: Vec<String>,
    pub hallucinated_segments: usize,
}

/// Scores `finals` (the texts of a path's `final` events, in order) against the normalised
/// reference `reference` under `profile`.
///
/// A final is a **hallucinated segment** when it has at least one unit after normalisation
/// and some minimum-edit alignment of the whole hypothesis against the reference, in the
/// file's metric (words for WER, characters for CER), inserts every one of its units: text
/// with no counterpart at all in what was said. With an empty reference (a silence or noise
/// file) every final with any text is one. (Past [`MAX_SPAN_TEST_CELLS`], a final none of
/// whose words occurs in the reference.)
pub fn score(reference: &[String], finals: &[String], profile: Profile) -> Scored {
    let per_final: Vec<Vec<String>> = finals.iter().map(|f| words(f, profile)).collect();
    let hypothesis: Vec<String> = per_final.iter().flatten().cloned().collect();
    let (reference_chars, hypothesis_chars) = (chars_of(reference), chars_of(&hypothesis));

    // Each final's units, in the file's metric, as a span of the hypothesis units.
    let lengths: Vec<usize> = match Metric::for_profile(profile) {
        Metric::Wer => per_final.iter().map(Vec::len).collect(),
        Metric::Cer => per_final.iter().map(|w| chars_of(w).len()).collect(),
    };
    let spans: Vec<(usize, usize)> = lengths
        .iter()
        .scan(0, |start, &len| {
            let span = (*start, *start + len);
            *start += len;
            Some(span)
        })
        .collect();
    let inserted = match Metric::for_profile(profile) {
        Metric::Wer => inserted_spans(reference, &hypothesis, &spans),
        Metric::Cer => inserted_spans(&reference_chars, &hypothesis_chars, &spans),
    };
    // Too long for the exact test: a final none of whose words occurs in the reference.
    let inserted = inserted.unwrap_or_else(|| {
        per_final
            .iter()
            .map(|w| !w.is_empty() && w.iter().all(|word| !reference.contains(word)))
            .collect()
    });
    let hallucinated_segments = inserted.iter().filter(|&&i| i).count();
    Scored {
        wer: Count {
            edits: edit_distance(reference, &hypothesis),
            units: reference.len(),
        },
        cer: Count {
            edits: edit_distance(&reference_chars, &hypothesis_chars),
            units: reference_chars.len(),
        },
        words: hypothesis,
        hallucinated_segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_span_is_inserted_when_some_best_alignment_inserts_all_of_it() {
        let r = w("a b");
        // "z" and "y" are inserted; "a b" is matched.
        let h = w("z a b y");
        assert_eq!(
            inserted_spans(&r, &h, &[(0, 1), (1, 3), (3, 4)]).unwrap(),
            [true, false, true]
        );
        // Ties: "you" can match either copy; the second span counts as inserted because one
        // best alignment inserts all of it, whichever the tie-break would have picked.
        let r = w("for you");
        let h = w("for you thank you");
        assert_eq!(
            inserted_spans(&r, &h, &[(0, 2), (2, 4)]).unwrap(),
            [false, true]
        );
        // A substituted unit is not an insertion.
        assert_eq!(
            inserted_spans(&w("a b"), &w("a x"), &[(1, 2)]).unwrap(),
            [false]
        );
        // Empty spans never count; an empty reference makes every non-empty span inserted.
        assert_eq!(
            inserted_spans(&[], &w("x y"), &[(0, 0), (0, 2)]).unwrap(),
            [false, true]
        );
    }

    #[test]
    fn oversized_texts_skip_the_exact_test() {
        let long = vec![1u8; 5000];
        assert!(inserted_spans(&long, &long, &[(0, 1)]).is_none());
    }

    #[test]
    fn prefix_table_agrees_with_the_one_row_distance() {
        let pairs = [
            ("kitten", "sitting"),
            ("", "abc"),
            ("abc", ""),
            ("가나다라", "가라"),
            ("flaw", "lawn"),
        ];
        for (a, b) in pairs {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let table = prefix_table(&a, &b);
            assert_eq!(table[table.len() - 1] as usize, edit_distance(&a, &b));
        }
    }

    #[test]
    fn counts_pool_by_summing_edits_and_units() {
        let mut total = Count::default();
        total.add(Count { edits: 1, units: 2 }); // 50 %
        total.add(Count { edits: 0, units: 8 }); // 0 %
        assert_eq!(total.rate(), Some(0.1)); // not the mean of ratios (25 %)
        assert_eq!(Count { edits: 3, units: 0 }.rate(), None);
        assert_eq!(
            serde_json::to_value(Count { edits: 1, units: 4 }).unwrap(),
            serde_json::json!({"edits": 1, "units": 4, "rate": 0.25})
        );
    }

    #[test]
    fn a_final_with_only_inserted_words_is_a_hallucination() {
        let reference = words("ask not what your country can do for you", Profile::English);
        let finals = [
            "Ask not what your country can do for you.".to_owned(),
            "Thank you for watching!".to_owned(),
        ];
        let s = score(&reference, &finals, Profile::English);
        assert_eq!(s.hallucinated_segments, 1);
        assert_eq!(s.wer, Count { edits: 4, units: 9 });
        // A final with one wrong word but a matching one is not.
        let finals = [
            "ask not what your county".to_owned(),
            "can do for you".to_owned(),
        ];
        let s = score(&reference, &finals, Profile::English);
        assert_eq!(s.hallucinated_segments, 0);
        assert_eq!(s.wer.edits, 1);
    }

    #[test]
    fn every_final_on_an_empty_reference_is_a_hallucination() {
        let finals = [
            "시청해 주셔서 감사합니다".to_owned(),
            "...".to_owned(), // no units after normalisation: not counted
            "구독".to_owned(),
        ];
        let s = score(&[], &finals, Profile::Korean);
        assert_eq!(s.hallucinated_segments, 2);
        assert_eq!(
            s.cer,
            Count {
                edits: 13,
                units: 0
            }
        );
        assert_eq!(s.cer.rate(), None);
    }

    #[test]
    fn korean_is_scored_in_characters_ignoring_spaces() {
        let reference = words("이천이십육 년 삼월", Profile::Korean);
        let s = score(&reference, &["2026년 3월".to_owned()], Profile::Korean);
        assert_eq!(s.cer, Count { edits: 0, units: 8 });
        assert_eq!(s.hallucinated_segments, 0);
    }
}
