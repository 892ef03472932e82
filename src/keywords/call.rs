//! One keyword request to the LLM: under the concurrency limit, the timeout, one retry on a
//! connection failure and the circuit breaker; streamed when keywords are wanted early.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, ResponseFormat,
    ResponseFormatJsonSchema,
};
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use super::filter::{ProposedKeyword, filter_keywords};
use super::prompt::{AnswerKeyword, EXAMPLE_ANSWER, EXAMPLE_SEGMENT};
use super::scan;
use super::{KeywordError, KeywordExtractor};
use crate::llm::CallError;
use crate::metrics::{LlmErrorKind, LlmPurpose};
use crate::protocol::Keyword;

impl KeywordExtractor {
    /// One chat completion under the concurrency limit, the timeout, one retry on a
    /// connection failure, and the circuit breaker. Returns the message content.
    pub(super) async fn call(
        &self,
        model: &str,
        text: &str,
        early: Option<&UnboundedSender<Keyword>>,
    ) -> Result<String, KeywordError> {
        if !self.breaker.allow() {
            crate::metrics::global().llm_error(LlmPurpose::Keywords, LlmErrorKind::CircuitOpen);
            return Err(KeywordError::Unavailable(
                "resting after a failure".to_owned(),
            ));
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| KeywordError::Unavailable("shutting down".to_owned()))?;
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let outcome = tokio::time::timeout(timeout, self.complete(model, text, early)).await;
            let failed = outcome.as_ref().map_or(Some(LlmErrorKind::Timeout), |r| {
                r.as_ref().err().map(CallError::kind)
            });
            crate::metrics::global().llm_request(LlmPurpose::Keywords, started.elapsed(), failed);
            let error = match outcome {
                Ok(Ok(content)) => {
                    self.breaker.success();
                    return Ok(content);
                }
                Ok(Err(CallError::Rejected(reason))) => {
                    // The endpoint is up; it answered badly.
                    self.breaker.success();
                    return Err(KeywordError::Rejected(reason));
                }
                Ok(Err(CallError::Connection(reason))) if attempt == 1 => {
                    tracing::debug!(%reason, "LLM connection failed; retrying once");
                    continue;
                }
                Ok(Err(CallError::Connection(reason) | CallError::Server(reason))) => reason,
                Err(_) => format!("no answer within {} ms", self.cfg.timeout_ms),
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            self.breaker.failure();
            return Err(KeywordError::Unavailable(error));
        }
    }

    async fn complete(
        &self,
        model: &str,
        text: &str,
        early: Option<&UnboundedSender<Keyword>>,
    ) -> Result<String, CallError> {
        let request = self.request(model, text)?;
        let Some(early) = early else {
            let response = self
                .client
                .chat
                .chat()
                .create(request)
                .await
                .map_err(CallError::from)?;
            return response
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.message.content)
                .ok_or_else(|| {
                    CallError::Rejected("the answer has no message content".to_owned())
                });
        };
        let mut stream = self
            .client
            .chat
            .chat()
            .create_stream(request)
            .await
            .map_err(CallError::from)?;
        let mut content = String::new();
        let mut scanner = scan::ItemScanner::default();
        let mut proposed: Vec<ProposedKeyword> = Vec::new();
        let mut sent = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(CallError::from)?;
            let Some(piece) = chunk
                .choices
                .into_iter()
                .next()
                .and_then(|c| c.delta.content)
            else {
                continue;
            };
            content.push_str(&piece);
            let items = scanner.feed(&piece);
            if items.is_empty() {
                continue;
            }
            proposed.extend(
                items
                    .iter()
                    .filter_map(|item| serde_json::from_str::<AnswerKeyword>(item).ok())
                    .map(ProposedKeyword::from),
            );
            let kept = filter_keywords(
                proposed.iter().cloned(),
                text,
                &self.cfg.categories,
                self.cfg.max_keywords,
            );
            for keyword in kept.into_iter().skip(sent) {
                sent += 1;
                let _ = early.send(keyword);
            }
        }
        if content.is_empty() {
            return Err(CallError::Rejected(
                "the streamed answer has no message content".to_owned(),
            ));
        }
        Ok(content)
    }

    /// The chat request for `text`: system prompt, worked example, segment, JSON schema.
    /// Public so tests can check the exact body sori sends against a real server.
    pub fn request(
        &self,
        model: &str,
        text: &str,
    ) -> Result<CreateChatCompletionRequest, CallError> {
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessage::from(self.system_prompt.as_str()).into(),
            ChatCompletionRequestUserMessage::from(EXAMPLE_SEGMENT).into(),
            ChatCompletionRequestAssistantMessage::from(EXAMPLE_ANSWER).into(),
            ChatCompletionRequestUserMessage::from(text).into(),
        ];
        CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages(messages)
            .temperature(0.0)
            .max_completion_tokens(256u32)
            .response_format(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: Some("Keywords of one transcript segment".to_owned()),
                    name: "keywords".to_owned(),
                    schema: self.schema.clone(),
                    strict: Some(true),
                },
            })
            .build()
            .map_err(|e| CallError::Rejected(format!("request could not be built: {e}")))
    }
}
