//! Work done on each final after it was sent — keywords, related documents — one task per
//! final (and per revision that changed one), with results streamed back as events. One
//! generic fan-out serves every kind; the kinds themselves (LLM keywords, RAG retrieval) live
//! in the server and implement [`Enricher`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::protocol::{EffectiveOptions, ServerMessage};

/// A final's text, as an enricher receives it.
#[derive(Debug, Clone)]
pub struct FinalText {
    pub segment_id: u64,
    pub text: String,
}

/// What an enricher made of one final.
#[derive(Debug)]
pub enum Enriched {
    /// The events to send (possibly none, e.g. an answer that was rejected).
    Events(Vec<ServerMessage>),
    /// The backend is down. The `error` event is sent once per outage, not once per final; the
    /// next success ends the outage.
    Unavailable(ServerMessage),
}

/// Where an enricher sends events that are ready before its result (each keyword as soon as
/// the LLM has written it).
#[derive(Clone)]
pub struct EarlyEvents(mpsc::UnboundedSender<Report>);

impl EarlyEvents {
    pub fn send(&self, event: ServerMessage) {
        let _ = self.0.send(Report::Early(event));
    }
}

pub type EnrichFuture = Pin<Box<dyn Future<Output = Enriched> + Send>>;

/// One kind of work on finals.
pub trait Enricher: Send + Sync + 'static {
    /// Whether a session with these options wants it (`keywords=true`, `rag=true`).
    fn wanted(&self, options: &EffectiveOptions) -> bool;
    /// How long a closing session waits for the results still pending.
    fn drain_limit(&self) -> Duration;
    /// Works on one final (runs as its own task).
    fn enrich(&self, segment: FinalText, early: EarlyEvents) -> EnrichFuture;
}

pub enum Report {
    Early(ServerMessage),
    Done(Enriched),
}

/// One session's requests to one enricher.
pub struct FanOut {
    enricher: Arc<dyn Enricher>,
    tx: mpsc::UnboundedSender<Report>,
    rx: mpsc::UnboundedReceiver<Report>,
    pending: usize,
    outage_reported: bool,
}

impl FanOut {
    pub fn new(enricher: Arc<dyn Enricher>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            enricher,
            tx,
            rx,
            pending: 0,
            outage_reported: false,
        }
    }

    pub fn wanted(&self, options: &EffectiveOptions) -> bool {
        self.enricher.wanted(options)
    }

    pub fn drain_limit(&self) -> Duration {
        self.enricher.drain_limit()
    }

    /// Starts a task for every non-empty final among `events`, and for every revision: its
    /// keywords and documents replace those of the text it corrected.
    pub fn request(&mut self, events: &[ServerMessage]) {
        for event in events {
            let (ServerMessage::Final {
                segment_id, text, ..
            }
            | ServerMessage::Revision {
                segment_id, text, ..
            }) = event
            else {
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            let segment = FinalText {
                segment_id: *segment_id,
                text: text.clone(),
            };
            let work = self.enricher.enrich(segment, EarlyEvents(self.tx.clone()));
            let tx = self.tx.clone();
            self.pending += 1;
            tokio::spawn(async move {
                let result = work.await;
                let _ = tx.send(Report::Done(result));
            });
        }
    }

    /// Finals whose result has not arrived yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The next events (possibly none). Never returns while nothing is pending, so it can sit
    /// in a `select!`.
    pub async fn next(&mut self) -> Vec<ServerMessage> {
        if self.pending == 0 {
            return std::future::pending().await;
        }
        // The fan-out holds a sender itself, so the channel never closes.
        let Some(report) = self.rx.recv().await else {
            return std::future::pending().await;
        };
        match report {
            Report::Early(event) => vec![event],
            Report::Done(result) => {
                self.pending -= 1;
                self.events_of(result)
            }
        }
    }

    /// Collects the results still pending, waiting at most `limit`.
    pub async fn drain(&mut self, limit: Duration) -> Vec<ServerMessage> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while self.pending > 0 {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(events) => out.extend(events),
                Err(_) => break,
            }
        }
        out
    }

    fn events_of(&mut self, result: Enriched) -> Vec<ServerMessage> {
        match result {
            Enriched::Events(events) => {
                self.outage_reported = false;
                events
            }
            Enriched::Unavailable(error) => {
                if std::mem::replace(&mut self.outage_reported, true) {
                    Vec::new()
                } else {
                    vec![error]
                }
            }
        }
    }
}
