//! Accuracy measures: text normalisation, word error rate and character error rate.
//!
//! Normalisation (documented in docs/benchmarks.md): lowercase; every character that is not a
//! letter, digit or whitespace becomes a space (so "country." = "country" and "can't" = "can t"
//! on both sides); whitespace collapsed. CER additionally ignores spacing, which Korean
//! writers apply inconsistently.

/// What the JFK test clip (`data/jfk.wav`) says: the reference of `sori model fetch`'s check,
/// the benches and the tests.
pub const JFK_REFERENCE: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";

/// Lowercased words without punctuation.
pub fn normalize(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .to_lowercase();
    cleaned.split_whitespace().map(str::to_owned).collect()
}

/// Word error rate of `hypothesis` against `reference`, after normalisation.
/// An empty reference gives 0 for an empty hypothesis and 1 otherwise.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    error_rate(&r, &h)
}

/// Character error rate, ignoring spaces and punctuation.
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let chars = |t: &str| -> Vec<char> { normalize(t).concat().chars().collect() };
    error_rate(&chars(reference), &chars(hypothesis))
}

fn error_rate<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> f64 {
    if reference.is_empty() {
        return if hypothesis.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(reference, hypothesis) as f64 / reference.len() as f64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_and_punctuation() {
        assert_eq!(
            normalize("And so, my fellow Americans!"),
            ["and", "so", "my", "fellow", "americans"]
        );
        assert_eq!(
            wer("Ask not what your country", "ask not, what your country."),
            0.0
        );
    }

    #[test]
    fn wer_counts_substitutions_insertions_and_deletions() {
        assert!((wer("a b c d", "a x c") - 0.5).abs() < 1e-9); // one substitution, one deletion
        assert!((wer("a b", "a b c d") - 1.0).abs() < 1e-9); // two insertions
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "hello"), 1.0);
    }

    #[test]
    fn cer_ignores_korean_spacing() {
        assert_eq!(
            cer("시청해 주셔서 감사합니다", "시청해주셔서 감사합니다."),
            0.0
        );
        assert!((cer("가나다라", "가나라") - 0.25).abs() < 1e-9);
    }
}
