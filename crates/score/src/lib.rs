//! Transcript scoring: word and character error rates after a normalisation that takes out
//! what must not count as an error (case, punctuation, spacing, how a number is written,
//! KsponSpeech marks), with Korean-aware rules (docs/accuracy.md). Pure text in, figures out:
//! used by `sori eval` and `sori bench` (the `sori-tools` crate), by `sori model fetch`'s check
//! of the converted models on the JFK clip, and by the tests (as `sori::eval`).
//!
//! - [`normalize`]: what does not count as an error, and which rules apply (Hangul in the
//!   reference → Korean);
//! - [`korean`]: numbers written in digits read out in Hangul;
//! - [`metrics`]: edit distance with an alignment, pooled counts, hallucinated segments.

pub mod korean;
pub mod metrics;
pub mod normalize;

pub use metrics::edit_distance;
pub use normalize::Profile;

/// What the JFK test clip (`data/jfk.wav`) says: the reference of `sori model fetch`'s check,
/// the benches and the tests.
pub const JFK_REFERENCE: &str = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.";

/// The normalised words of `text`, under the rules its own script selects.
pub fn normalize(text: &str) -> Vec<String> {
    normalize::words(text, Profile::of(text))
}

/// Word error rate of `hypothesis` against `reference`, after normalisation (the rules are
/// chosen by the reference's script). An empty reference gives 0 for an empty hypothesis and
/// 1 otherwise.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let profile = Profile::of(reference);
    let r = normalize::words(reference, profile);
    let h = normalize::words(hypothesis, profile);
    error_rate(&r, &h)
}

/// Character error rate, ignoring spaces and punctuation.
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let profile = Profile::of(reference);
    let r = normalize::chars_of(&normalize::words(reference, profile));
    let h = normalize::chars_of(&normalize::words(hypothesis, profile));
    error_rate(&r, &h)
}

fn error_rate<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> f64 {
    if reference.is_empty() {
        return if hypothesis.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(reference, hypothesis) as f64 / reference.len() as f64
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

    #[test]
    fn cer_treats_korean_numbers_alike_however_written() {
        assert_eq!(cer("삼십오", "35"), 0.0);
        assert_eq!(cer("천 원", "1,000원"), 0.0);
        assert_eq!(cer("이천이십육 년", "2026년"), 0.0);
        assert_eq!(cer("(1시)/(한 시)에 봐요", "한 시에 봐요"), 0.0);
    }
}
