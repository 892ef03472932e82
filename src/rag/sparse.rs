//! Sparse (lexical) vectors for the keyword half of hybrid retrieval. Dense embeddings miss
//! exact names — a road number, a facility code, a person — that operators search for; term
//! overlap finds them. Korean words carry particles (서울역에서, 서울역은), so Hangul words
//! become character bigrams, which match across particles without a morphological analyser.

use std::collections::BTreeMap;

use super::store::SparseVector;

/// Terms of `text`: lowercase words of letters/digits outside Hangul (two characters or
/// more, or any number), and overlapping Hangul syllable bigrams (a one-syllable word is a
/// term itself).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let lowered = word.to_lowercase();
        let mut latin = String::new();
        let mut hangul: Vec<char> = Vec::new();
        for c in lowered.chars() {
            if is_hangul(c) {
                flush_latin(&mut latin, &mut out);
                hangul.push(c);
            } else {
                flush_hangul(&mut hangul, &mut out);
                latin.push(c);
            }
        }
        flush_latin(&mut latin, &mut out);
        flush_hangul(&mut hangul, &mut out);
    }
    out
}

fn flush_latin(latin: &mut String, out: &mut Vec<String>) {
    let keep = latin.chars().count() >= 2 || latin.chars().any(|c| c.is_ascii_digit());
    if keep {
        out.push(std::mem::take(latin));
    } else {
        latin.clear();
    }
}

fn flush_hangul(hangul: &mut Vec<char>, out: &mut Vec<String>) {
    match hangul.len() {
        0 => {}
        1 => out.push(hangul[0].to_string()),
        _ => out.extend(hangul.windows(2).map(|w| w.iter().collect::<String>())),
    }
    hangul.clear();
}

fn is_hangul(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// A stable 32-bit id for a term (FNV-1a): the same term gets the same dimension in every
/// process and every store, with no vocabulary to keep.
fn term_id(term: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in term.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The sparse vector of `text`: each term's id with weight 1 + ln(count) (repeats count, but
/// less and less), sorted by id. How rare a term is across documents (IDF) is left to the
/// store, which sees them all.
pub fn sparse_vector(text: &str) -> SparseVector {
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    for term in terms(text) {
        *counts.entry(term_id(&term)).or_default() += 1;
    }
    SparseVector {
        indices: counts.keys().copied().collect(),
        values: counts.values().map(|&n| 1.0 + (n as f32).ln()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn korean_words_become_bigrams_that_match_across_particles() {
        assert_eq!(terms("서울역에서"), ["서울", "울역", "역에", "에서"]);
        let doc: Vec<String> = terms("서울역은 혼잡합니다");
        for t in terms("서울역") {
            assert!(doc.contains(&t), "{t} missing from {doc:?}");
        }
        assert_eq!(terms("강 A1 x 10km"), ["강", "a1", "10km"]);
        assert_eq!(terms("Main-Street's"), ["main", "street"]);
    }

    #[test]
    fn vectors_are_sorted_unique_and_weight_repeats_sublinearly() {
        let v = sparse_vector("사고 사고 사고 도로");
        assert_eq!(v.indices.len(), 2);
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        let repeated = v
            .indices
            .iter()
            .position(|&i| i == term_id("사고"))
            .unwrap();
        let once = 1 - repeated;
        assert!((v.values[repeated] - (1.0 + 3f32.ln())).abs() < 1e-6);
        assert_eq!(v.values[once], 1.0);
        assert_eq!(sparse_vector("  .,! "), SparseVector::default());
    }
}
