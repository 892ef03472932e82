//! The answer half of `/query`: the LLM reads the retrieved chunks and answers the question,
//! citing them as [1], [2]… It uses the same OpenAI-compatible endpoint as keywords.

use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs,
};
use tokio::sync::RwLock;

use super::RagError;
use super::pipeline::{Source, Turn};
use crate::config::LlmConfig;
use crate::llm::{ChatClient, error_kind, first_model};
use crate::metrics::{LlmErrorKind, LlmPurpose};

const SYSTEM_PROMPT: &str = "You answer questions from operators (meetings, call centres, traffic \
control rooms) using only the numbered context passages. 주어진 자료만 근거로 답합니다.\n\
Rules: answer in the language of the question, briefly (at most 5 sentences). After each fact, \
cite the passage it comes from as [1], [2]. If the passages do not contain the answer, say so \
(\"자료에 없습니다 / not in the documents\") instead of guessing.";

pub struct Answerer {
    client: ChatClient,
    cfg: LlmConfig,
    model: RwLock<Option<String>>,
}

impl Answerer {
    pub fn new(cfg: &LlmConfig) -> Self {
        Self {
            client: ChatClient::new(cfg),
            cfg: cfg.clone(),
            model: RwLock::new(cfg.model.clone()),
        }
    }

    /// The answer to `question` from `sources`, after the conversation so far; with the model.
    pub async fn answer(
        &self,
        question: &str,
        sources: &[Source],
        history: &[Turn],
    ) -> Result<(String, String), RagError> {
        let model = self.model().await?;
        let mut messages: Vec<ChatCompletionRequestMessage> =
            vec![ChatCompletionRequestSystemMessage::from(SYSTEM_PROMPT).into()];
        for turn in history {
            messages.push(ChatCompletionRequestUserMessage::from(turn.question.as_str()).into());
            messages.push(ChatCompletionRequestAssistantMessage::from(turn.answer.as_str()).into());
        }
        messages.push(ChatCompletionRequestUserMessage::from(prompt(question, sources)).into());
        let request = CreateChatCompletionRequestArgs::default()
            .model(&model)
            .messages(messages)
            .temperature(0.1)
            .max_completion_tokens(400u32)
            .build()
            .map_err(|e| RagError::Llm(format!("request could not be built: {e}")))?;
        let timeout = Duration::from_millis(self.cfg.timeout_ms.saturating_mul(3));
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.client.chat.chat().create(request)).await;
        let failed = outcome.as_ref().map_or(Some(LlmErrorKind::Timeout), |r| {
            r.as_ref().err().map(error_kind)
        });
        crate::metrics::global().llm_request(LlmPurpose::Answer, started.elapsed(), failed);
        let response = outcome
            .map_err(|_| RagError::Llm(format!("no answer within {} ms", timeout.as_millis())))?
            .map_err(|e| RagError::Llm(e.to_string()))?;
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                crate::metrics::global().llm_error(LlmPurpose::Answer, LlmErrorKind::Rejected);
                RagError::Llm("the answer is empty".to_owned())
            })?;
        Ok((text, model))
    }

    async fn model(&self) -> Result<String, RagError> {
        if let Some(model) = self.model.read().await.clone() {
            return Ok(model);
        }
        let found = first_model(
            &self.client.http,
            &self.cfg.base_url,
            self.cfg.api_key.as_deref(),
        )
        .await
        .map_err(|e| RagError::Llm(e.to_string()))
        .and_then(|listed| {
            listed.ok_or_else(|| {
                RagError::Llm("the LLM endpoint lists no model; set llm.model".to_owned())
            })
        })
        .inspect_err(|_| {
            crate::metrics::global().llm_error(LlmPurpose::Answer, LlmErrorKind::ModelList);
        })?;
        *self.model.write().await = Some(found.clone());
        Ok(found)
    }
}

/// The user message: numbered passages with where they come from, then the question.
fn prompt(question: &str, sources: &[Source]) -> String {
    let mut out = String::from("Context / 자료:\n");
    if sources.is_empty() {
        out.push_str("(none / 없음)\n");
    }
    for s in sources {
        let page = s.page.map(|p| format!(", p. {p}")).unwrap_or_default();
        out.push_str(&format!("[{}] ({}{page}) {}\n", s.n, s.source, s.text));
    }
    out.push_str(&format!("\nQuestion / 질문: {}", question.trim()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_numbers_passages_with_their_source() {
        let sources = vec![Source {
            n: 1,
            source: "manual.pdf".to_owned(),
            page: Some(3),
            date: None,
            text: "터널 화재 시 대피 안내".to_owned(),
            score: 0.5,
        }];
        let p = prompt("화재 시 어떻게 하나요?", &sources);
        assert!(p.contains("[1] (manual.pdf, p. 3) 터널 화재 시 대피 안내"));
        assert!(p.ends_with("질문: 화재 시 어떻게 하나요?"));
        assert!(prompt("q", &[]).contains("(none / 없음)"));
    }
}
