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
use super::guard::{Guard, RESTING};
use super::pipeline::{Source, Turn};
use crate::config::{LlmConfig, RagConfig};
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
    /// `rag.max_concurrent` answers at once, and a breaker that rests a failing endpoint.
    guard: Guard,
}

/// Whether an answer failed because the endpoint is down (not because it answered badly).
#[derive(Debug)]
struct Failed {
    error: RagError,
    outage: bool,
}

impl Answerer {
    pub fn new(cfg: &LlmConfig, rag: &RagConfig) -> Self {
        Self {
            client: ChatClient::new(cfg),
            cfg: cfg.clone(),
            model: RwLock::new(cfg.model.clone()),
            guard: Guard::new(rag),
        }
    }

    /// "closed", "open" or "trial", for `/api/status`.
    pub fn circuit(&self) -> &'static str {
        self.guard.circuit()
    }

    /// The answer to `question` from `sources`, after the conversation so far; with the model.
    /// Under the concurrency bound and the breaker: while the endpoint rests after a failure,
    /// questions are refused at once instead of each waiting for its timeout.
    pub async fn answer(
        &self,
        question: &str,
        sources: &[Source],
        history: &[Turn],
    ) -> Result<(String, String), RagError> {
        let call = self.answer_once(question, sources, history);
        match self.guard.run(call, |f: &Failed| f.outage).await {
            Ok(result) => result.map_err(|f| f.error),
            Err(_resting) => {
                crate::metrics::global().llm_error(LlmPurpose::Answer, LlmErrorKind::CircuitOpen);
                Err(RagError::Llm(RESTING.to_owned()))
            }
        }
    }

    async fn answer_once(
        &self,
        question: &str,
        sources: &[Source],
        history: &[Turn],
    ) -> Result<(String, String), Failed> {
        let down = |error| Failed {
            error,
            outage: true,
        };
        let model = self.model().await.map_err(down)?;
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
            .map_err(|e| Failed {
                error: RagError::Llm(format!("request could not be built: {e}")),
                outage: false,
            })?;
        let timeout = Duration::from_millis(self.cfg.timeout_ms.saturating_mul(3));
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.client.chat.chat().create(request)).await;
        let failed = outcome.as_ref().map_or(Some(LlmErrorKind::Timeout), |r| {
            r.as_ref().err().map(error_kind)
        });
        crate::metrics::global().llm_request(LlmPurpose::Answer, started.elapsed(), failed);
        let response = match outcome {
            Err(_) => {
                let waited = timeout.as_millis();
                return Err(down(RagError::Llm(format!("no answer within {waited} ms"))));
            }
            Ok(Err(e)) => {
                return Err(Failed {
                    outage: error_kind(&e) != LlmErrorKind::Rejected,
                    error: RagError::Llm(e.to_string()),
                });
            }
            Ok(Ok(response)) => response,
        };
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                crate::metrics::global().llm_error(LlmPurpose::Answer, LlmErrorKind::Rejected);
                Failed {
                    error: RagError::Llm("the answer is empty".to_owned()),
                    outage: false,
                }
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
