//! What the model is asked: the system prompt with the configured categories, a worked
//! example, and the JSON schema its answer must follow.

use serde::Deserialize;

use super::filter::ProposedKeyword;
use crate::config::Category;

/// What the model must answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Answer {
    pub(super) keywords: Vec<AnswerKeyword>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerKeyword {
    text: String,
    category: String,
}

impl From<AnswerKeyword> for ProposedKeyword {
    fn from(k: AnswerKeyword) -> Self {
        Self {
            text: k.text,
            category: k.category,
        }
    }
}

/// A worked example given to the model before each segment (small models need one).
pub(super) const EXAMPLE_SEGMENT: &str =
    "부산시청에서 김민수 과장이 내년 도로 예산 3억 원을 보고했습니다";
pub(super) const EXAMPLE_ANSWER: &str = r#"{"keywords":[{"text":"부산시청","category":"organization"},{"text":"김민수","category":"person"},{"text":"내년","category":"datetime"},{"text":"도로 예산","category":"topic"},{"text":"3억 원","category":"number"}]}"#;

pub(super) fn system_prompt(categories: &[Category], max: usize) -> String {
    let list = categories
        .iter()
        .map(|c| format!("- {} ({} / {})", c.id, c.ko, c.en))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "You extract keywords from one segment of a live transcript (Korean or English: meetings, \
call centres, traffic control rooms). 실시간 전사 문장에서 핵심 명사를 추출합니다.\n\
Rules:\n\
1. Return the important nouns and noun phrases: people, places, organisations, dates and times, \
numbers and amounts, roads and facilities, events and incidents, topics.\n\
2. Copy each keyword exactly as written in the segment. Do not translate, do not add words that \
are not in the segment. Leave out Korean particles and endings (은/는/이/가/을/를/에/에서/의/으로).\n\
3. No verbs, adjectives, pronouns or filler words. At most {max} keywords; an empty list when \
the segment has no content words.\n\
4. category is one of:\n{list}\n\
Answer with JSON only: {{\"keywords\":[{{\"text\":\"...\",\"category\":\"...\"}}]}}"
    )
}

pub(super) fn answer_schema(categories: &[Category], max: usize) -> serde_json::Value {
    let ids: Vec<&str> = categories.iter().map(|c| c.id.as_str()).collect();
    serde_json::json!({
        "type": "object",
        "properties": {
            "keywords": {
                "type": "array",
                "maxItems": max,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": { "type": "string", "minLength": 1, "maxLength": 60 },
                        "category": { "type": "string", "enum": ids }
                    },
                    "required": ["text", "category"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["keywords"],
        "additionalProperties": false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlmConfig;
    use crate::keywords::filter_keywords;

    fn cats() -> Vec<Category> {
        LlmConfig::default().categories
    }

    #[test]
    fn schema_lists_the_configured_categories() {
        let schema = answer_schema(&cats(), 8);
        let ids = &schema["properties"]["keywords"]["items"]["properties"]["category"]["enum"];
        assert_eq!(ids.as_array().unwrap().len(), 8);
        assert!(system_prompt(&cats(), 8).contains("facility (도로/시설 / road/facility)"));
        // The worked example obeys its own schema and filter.
        let example: Answer = serde_json::from_str(EXAMPLE_ANSWER).unwrap();
        let kept = filter_keywords(example.keywords, EXAMPLE_SEGMENT, &cats(), 8);
        assert_eq!(kept.len(), 5);
    }
}
