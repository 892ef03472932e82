//! Drives a [`Session`] against the shared decoder pool: hands its jobs to the pool when it
//! has room and feeds the outcomes back.

use tokio::sync::mpsc;

use super::Session;
use crate::protocol::ServerMessage;
use crate::stt::engine::{DecodeOutcome, DecodeRequest, SttPool};

/// Drives a `Session` against the decoder pool.
pub struct Stream {
    pub session: Session,
    pool: SttPool,
    reply_tx: mpsc::UnboundedSender<DecodeOutcome>,
    reply_rx: mpsc::UnboundedReceiver<DecodeOutcome>,
}

impl Stream {
    pub fn new(session: Session, pool: SttPool) -> Self {
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        Self {
            session,
            pool,
            reply_tx,
            reply_rx,
        }
    }

    /// Hands jobs to the pool and waits for the next outcome; returns the events it releases
    /// (possibly none). Cancel-safe: use it in `select!` beside the transport. It never
    /// returns while the session has nothing to do, so callers waiting for the end check
    /// `session.is_drained()` before each call.
    pub async fn progress(&mut self) -> Vec<ServerMessage> {
        loop {
            let released = self.session.take_events();
            if !released.is_empty() {
                return released;
            }
            if self.session.has_job(self.pool.has_idle_worker()) {
                tokio::select! {
                    permit = self.pool.reserve() => {
                        let Ok(permit) = permit else {
                            return vec![ServerMessage::error("decoder_unavailable", "the decoder pool has shut down", true)];
                        };
                        if let Some(job) = self.session.next_job(true) {
                            permit.send(self.request(job));
                        }
                        continue;
                    }
                    outcome = self.reply_rx.recv() => {
                        if let Some(outcome) = outcome {
                            self.session.on_outcome(outcome);
                            // Return even when nothing was released (a filtered final), so
                            // callers waiting for `is_drained` see the change.
                            return self.session.take_events();
                        }
                    }
                }
            } else if let Some(outcome) = self.reply_rx.recv().await {
                self.session.on_outcome(outcome);
                return self.session.take_events();
            }
        }
    }

    /// Hands the pool every job the session has ready while the queue has room, without
    /// waiting (a file keeps every worker busy; outcomes are taken in by `progress`).
    pub fn submit_ready(&mut self) {
        while self.session.has_job(self.pool.has_idle_worker()) {
            let Some(permit) = self.pool.try_reserve() else {
                return;
            };
            let Some(job) = self.session.next_job(true) else {
                return;
            };
            permit.send(self.request(job));
        }
    }

    fn request(&self, job: super::Job) -> DecodeRequest {
        DecodeRequest {
            job_id: job.job_id,
            audio: job.audio,
            opts: job.opts,
            priority: job.priority,
            reply: self.reply_tx.clone(),
        }
    }

    /// Ends the stream and returns every remaining event (the last finals).
    pub async fn finish(&mut self) -> Vec<ServerMessage> {
        self.session.finish();
        self.drain().await
    }

    /// Waits until every queued final has been released.
    pub async fn drain(&mut self) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        while !self.session.is_drained() {
            out.extend(self.progress().await);
        }
        out
    }

    pub fn pool(&self) -> &SttPool {
        &self.pool
    }
}
