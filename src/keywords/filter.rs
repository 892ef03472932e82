//! Which proposed keywords are kept: those that occur in the segment (ignoring case, spacing
//! and punctuation), in a configured category, and that carry content (no stop-words, no
//! Korean predicates).

use crate::config::Category;
use crate::protocol::Keyword;

/// Words that carry no content in either language: a keyword made only of these is dropped
/// (the small local model sometimes proposes "And so" or "Ask not").
const STOP_WORDS: &[&str] = &[
    "것",
    "수",
    "등",
    "때",
    "곳",
    "거",
    "점",
    "이것",
    "그것",
    "저것",
    "여기",
    "거기",
    "저기",
    "우리",
    "저희",
    "제가",
    "저",
    "나",
    "너",
    "그",
    "이",
    "저것들",
    "여러분",
    "뭐",
    "무엇",
    "누구",
    "그리고",
    "그래서",
    "하지만",
    "그런데",
    "네",
    "예",
    "아니요",
    "it",
    "this",
    "that",
    "these",
    "those",
    "thing",
    "things",
    "something",
    "anything",
    "everything",
    "we",
    "you",
    "i",
    "they",
    "he",
    "she",
    "me",
    "us",
    "them",
    "one",
    "ones",
    "what",
    "who",
    "which",
    "and",
    "so",
    "or",
    "but",
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "at",
    "for",
    "with",
    "from",
    "by",
    "as",
    "not",
    "no",
    "yes",
    "my",
    "your",
    "our",
    "their",
    "his",
    "her",
    "its",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "have",
    "has",
    "had",
    "ask",
    "asked",
    "say",
    "said",
    "tell",
    "told",
    "go",
    "get",
    "make",
    "know",
    "think",
    "see",
    "want",
    "let",
    "here",
    "there",
    "now",
    "then",
];

/// Korean predicate endings: a "keyword" ending like this is a verb or adjective, not a noun.
const PREDICATE_ENDINGS: &[&str] = &[
    "니다", "했다", "한다", "하는", "해요", "어요", "아요", "았다", "었다", "이다", "있다", "없다",
    "하고", "해서", "된다", "됐다",
];

/// True when the keyword is only function words, or a Korean predicate.
fn carries_no_content(text: &str) -> bool {
    let lowered = text.to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().all(|w| STOP_WORDS.contains(w))
        || PREDICATE_ENDINGS
            .iter()
            .any(|e| lowered.trim_end().ends_with(e))
}

/// Keeps the model's keywords that occur in the segment (ignoring case, spacing and
/// punctuation), in a configured category, not stop-words, first occurrence only.
pub fn filter_keywords(
    proposed: impl IntoIterator<Item = impl Into<ProposedKeyword>>,
    segment: &str,
    categories: &[Category],
    max: usize,
) -> Vec<Keyword> {
    let haystack = normalize(segment);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in proposed {
        let p: ProposedKeyword = p.into();
        let text = p
            .text
            .trim()
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_owned();
        let norm = normalize(&text);
        let Some(category) = categories.iter().find(|c| c.id == p.category.trim()) else {
            continue;
        };
        let too_short = norm.chars().count() < 2 && !norm.chars().any(is_cjk_or_digit);
        if norm.is_empty()
            || too_short
            || carries_no_content(&text)
            || !haystack.contains(&norm)
            || !seen.insert(norm)
        {
            continue;
        }
        out.push(Keyword {
            text,
            category: category.id.clone(),
            label: category.ko.clone(),
        });
        if out.len() == max {
            break;
        }
    }
    out
}

/// A keyword as the model proposed it, before filtering.
#[derive(Clone)]
pub struct ProposedKeyword {
    pub text: String,
    pub category: String,
}

impl From<(&str, &str)> for ProposedKeyword {
    fn from((text, category): (&str, &str)) -> Self {
        Self {
            text: text.to_owned(),
            category: category.to_owned(),
        }
    }
}

fn is_cjk_or_digit(c: char) -> bool {
    c.is_ascii_digit()
        || ('\u{AC00}'..='\u{D7A3}').contains(&c)
        || ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

/// Lowercase letters and digits only: spacing and punctuation do not matter for matching.
pub fn normalize(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlmConfig;

    fn cats() -> Vec<Category> {
        LlmConfig::default().categories
    }

    #[test]
    fn keeps_only_keywords_present_in_the_segment() {
        let segment = "내일 오전 9시 서울역 앞에서 교통사고 대책회의가 열립니다";
        let kept = filter_keywords(
            [
                ("서울역", "place"),
                ("대책 회의", "topic"), // spacing differs from the text: still found
                ("부산역", "place"),    // not in the text
                ("교통사고", "unknown"), // category not configured
                ("것", "topic"),        // stop-word
                ("서울역", "facility"), // duplicate
                ("오전 9시", "datetime"),
            ],
            segment,
            &cats(),
            8,
        );
        let texts: Vec<_> = kept.iter().map(|k| k.text.as_str()).collect();
        assert_eq!(texts, ["서울역", "대책 회의", "오전 9시"]);
        let verbs = filter_keywords(
            [("열립니다", "event"), ("발생했습니다", "event")],
            "회의가 열립니다 사고가 발생했습니다",
            &cats(),
            8,
        );
        assert!(verbs.is_empty(), "{verbs:?}");
        assert_eq!(kept[0].label, "장소");
    }

    #[test]
    fn english_matching_ignores_case_and_punctuation_and_caps_the_count() {
        let segment =
            "Ask not what your Country can do for you, ask what you can do for your country.";
        let kept = filter_keywords(
            [
                ("country", "topic"),
                ("you", "person"),
                ("Americans", "person"),
                ("a", "topic"),
            ],
            segment,
            &cats(),
            8,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].text, "country");
        let many: Vec<(String, &str)> = (0..20).map(|i| (format!("word{i}"), "topic")).collect();
        let text: String = many
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let kept = filter_keywords(
            many.iter().map(|(w, c)| (w.as_str(), *c)),
            &text,
            &cats(),
            5,
        );
        assert_eq!(kept.len(), 5);
    }
}
