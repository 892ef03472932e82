//! A session's way out: frames wait in a bounded queue for a writer task whose every send has
//! a deadline (`server.send_timeout_s`), so the session loop never waits on a client: one that
//! does not read is cut off and never holds its session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::SinkExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Lost, Sender};
use crate::protocol::{ServerMessage, close_code};

/// Messages handed to the writer task ahead of the one it is sending.
const WRITER_QUEUE: usize = 8;

/// A client cut off for not reading gets this long to take the close frame saying so.
const STALLED_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A session's way out: messages wait here (bounded by [`OUTBOX_MAX`]) for a writer task
/// that sends them one by one, each within the send deadline. The session loop never waits
/// on a send.
pub struct Outbox {
    /// Each message with the moment it was queued: its send deadline counts from then.
    waiting: VecDeque<(Message, Instant)>,
    /// To the writer; `None` once everything was handed over ([`Outbox::finish`]).
    queue: Option<mpsc::Sender<(Message, Instant)>>,
    writer: JoinHandle<Result<(), Lost>>,
}

impl Outbox {
    pub(super) fn new(sink: Sender, deadline: Duration) -> Self {
        let (queue, rx) = mpsc::channel(WRITER_QUEUE);
        Self {
            waiting: VecDeque::new(),
            queue: Some(queue),
            writer: tokio::spawn(write(sink, rx, deadline).in_current_span()),
        }
    }

    /// One of sori's own events, as JSON text.
    pub fn push(&mut self, event: &ServerMessage) {
        self.push_frame(Message::Text(event.to_json().into()));
    }

    pub fn push_all(&mut self, events: &[ServerMessage]) {
        for event in events {
            self.push(event);
        }
    }

    /// Any serialisable message, as JSON text (another protocol's events).
    pub fn push_json<T: Serialize>(&mut self, message: &T) {
        let json = serde_json::to_string(message).expect("protocol messages always serialise");
        self.push_frame(Message::Text(json.into()));
    }

    pub fn push_frame(&mut self, frame: Message) {
        self.waiting.push_back((frame, Instant::now()));
    }

    pub fn push_close(&mut self, code: u16, reason: &str) {
        self.push_frame(close_frame(code, reason));
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Hands waiting messages to the writer as it takes them; returns only when the writer
    /// stopped (the client is not reading, or gone). Cancel-safe.
    pub(super) async fn deliver(&mut self) -> Lost {
        while let Some(queue) = self.queue.as_ref().filter(|_| !self.waiting.is_empty()) {
            let permit = tokio::select! {
                permit = queue.reserve() => permit,
                ended = &mut self.writer => return writer_failure(ended),
            };
            let Ok(permit) = permit else {
                break; // the writer stopped; its result says why
            };
            if let Some(message) = self.waiting.pop_front() {
                permit.send(message);
            }
        }
        self.writer_ended().await
    }

    async fn writer_ended(&mut self) -> Lost {
        writer_failure((&mut self.writer).await)
    }

    /// Hands over everything waiting, then waits until the writer sent it all.
    pub(super) async fn finish(&mut self) -> Result<(), Lost> {
        if let Some(queue) = self.queue.take() {
            while let Some(message) = self.waiting.pop_front() {
                if queue.send(message).await.is_err() {
                    break; // the writer stopped; its result says why
                }
            }
        }
        (&mut self.writer).await?
    }
}

impl Drop for Outbox {
    /// A writer still sending when its session ends (a client gone or cut off) stops now.
    fn drop(&mut self) {
        self.writer.abort();
    }
}

fn writer_failure(ended: Result<Result<(), Lost>, tokio::task::JoinError>) -> Lost {
    match ended {
        Ok(Ok(())) => Lost::Vanished,
        Ok(Err(lost)) => lost,
        Err(e) => Lost::Writer(e),
    }
}

/// The writer task: messages must keep leaving: from the moment one is queued until nothing
/// waits any more, at most `deadline` may pass, or the client is not reading: it gets a close
/// frame 1008 saying so if its buffers still take one, and the writer stops.
///
/// A deadline per send alone is not enough: a client that never reads still takes a few
/// bytes now and then (the kernel compacts its full receive buffer and reopens the window),
/// so each send finishes in time while the backlog never clears, and the frames it keeps
/// sending keep its session alive (`sori bench --hostile`'s stalled client, measured).
async fn write(
    mut sink: Sender,
    mut queue: mpsc::Receiver<(Message, Instant)>,
    deadline: Duration,
) -> Result<(), Lost> {
    // When the current run of waiting messages began; `None` when nothing waits.
    let mut backlog_since: Option<Instant> = None;
    while let Some((message, queued)) = queue.recv().await {
        let since = *backlog_since.get_or_insert(queued);
        let due = tokio::time::Instant::from_std(since + deadline);
        match tokio::time::timeout_at(due, sink.send(message)).await {
            Ok(Ok(())) => {
                if queue.is_empty() {
                    backlog_since = None;
                }
            }
            Ok(Err(e)) => return Err(Lost::Broken(e)),
            Err(_) => {
                let lost = Lost::Stalled(deadline);
                let close = close_frame(close_code::POLICY, &lost.to_string());
                let _ = tokio::time::timeout(STALLED_CLOSE_WAIT, sink.send(close)).await;
                return Err(lost);
            }
        }
    }
    Ok(())
}

pub fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(close_reason(reason)),
    }))
}

/// Close reasons are limited to 123 bytes by the protocol; cut on a character boundary.
fn close_reason(message: &str) -> String {
    let mut end = message.len().min(123);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_the_protocol_limit_on_a_character_boundary() {
        let reason = close_reason(&"가".repeat(100));
        assert!(reason.len() <= 123 && reason.chars().all(|c| c == '가'));
    }
}
