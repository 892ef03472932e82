//! Live sessions: finals decoded again once the speech around them has been heard.
//!
//! A live final is decoded alone as soon as its utterance ends, so it hears none of the speech
//! around it; in noise that costs the words a file's windows keep (docs/accuracy.md, "Live
//! finals revised in windows"). A live session with `revisions` also gathers its finished
//! utterances into windows as a file session does (merge.rs: the same joins and pauses, up to
//! `stt.live_revision_s` of speech). A window is sealed when the next utterance would not fit,
//! after [`QUIET_SEAL_S`] of silence, and when the stream ends. Once every final in it has been
//! sent and a worker is idle, it is decoded as one and split back into its utterances; each
//! segment whose words changed gets a `revision` event carrying its new final.
//!
//! Revisions never hold a final or a partial back: they take no final slot of the session,
//! they are the pool's least urgent work, and a final or partial that finds no free worker
//! cancels a running one ([`crate::stt::queue`]). A cancelled or failed revision is dropped,
//! not retried: the finals stand. A window whose word times are doubtful is split by its
//! segments, or decoded again in shorter windows, as a file's is (merge.rs, `split`). At most
//! one sealed window waits per session (a newer one replaces it and those shorter ones), so a
//! loaded server skips
//! revisions instead of queueing them. When the stream ends, the last window is decoded
//! before `closed` on the next free worker, unless a final or partial that finds no free
//! worker cancels it first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::Session;
use super::merge::{Joined, Placed, Ready, WindowJoin, Windows, redecode, split};
use super::round_ms;
use super::scheduler::{Job, JobKind, JobMeta};
use crate::audio::TARGET_SAMPLE_RATE;
use crate::metrics::RevisionOutcome;
use crate::protocol::ServerMessage;
use crate::stt::engine::DecodeOutcome;
use crate::stt::queue::Priority;
use crate::vad::Utterance;

/// Silence after which the window being gathered is sealed: the speaker has stopped, so the
/// revision comes while the turn is still on screen instead of with the next one.
const QUIET_SEAL_S: f64 = 10.0;

/// One gathered utterance: what its revision needs to be judged and placed.
#[derive(Debug)]
struct Segment {
    start_s: f64,
    end_s: f64,
    rms: f32,
    /// The text its final gave the client ("" when it was filtered or failed); `None` until
    /// the final was released.
    sent: Option<String>,
}

/// A revision window being decoded.
#[derive(Debug)]
struct Running {
    job_id: u64,
    /// Where its utterances lie in `audio`.
    placed: Vec<Placed>,
    /// Kept to decode it again in shorter windows if its word times are doubtful.
    audio: Arc<[f32]>,
}

/// One live session's revision windows.
#[derive(Debug)]
pub(super) struct Revisions {
    windows: Windows,
    segments: BTreeMap<u64, Segment>,
    /// The sealed window waiting for an idle worker, or the shorter windows a doubtful one
    /// is decoded again in, oldest first.
    pending: VecDeque<Joined>,
    /// The window being decoded.
    running: Option<Running>,
    /// Where the last gathered utterance ended (sample), for the quiet seal.
    last_end: Option<u64>,
    /// The stream ended: the last window is decoded before the session closes, on the next
    /// free worker unless contention cancels it first.
    finishing: bool,
    /// The session's `revisions` option: off, nothing is gathered (a running decode's outcome
    /// is still taken in, and dropped).
    enabled: bool,
}

impl Revisions {
    fn new(windows: Windows) -> Self {
        Self {
            windows,
            segments: BTreeMap::new(),
            pending: VecDeque::new(),
            running: None,
            last_end: None,
            finishing: false,
            enabled: false,
        }
    }

    fn set_enabled(&mut self, enabled: bool) {
        if self.enabled && !enabled {
            self.windows.seal();
            self.pending.clear();
            self.segments.clear();
            self.last_end = None;
        }
        self.enabled = enabled;
    }

    fn take_ready(&mut self, ready: Ready) {
        match ready {
            // A window of one would decode the same audio again.
            Ready::Alone { job_id, .. } => {
                self.segments.remove(&job_id);
            }
            Ready::Window(joined) => {
                for skipped in std::mem::take(&mut self.pending) {
                    crate::metrics::global().revision_window(RevisionOutcome::Skipped, 0);
                    tracing::debug!(
                        utterances = skipped.placed.len(),
                        "a revision window was replaced before a worker was idle: skipped"
                    );
                    for p in &skipped.placed {
                        self.segments.remove(&p.job_id);
                    }
                }
                self.pending.push_back(joined);
            }
        }
    }

    fn seal(&mut self) {
        if let Some(ready) = self.windows.seal() {
            self.take_ready(ready);
        }
    }

    /// A window whose word times were doubtful: its utterances wait to be decoded again in the
    /// shorter windows a file's would be, ahead of any newer window. Those that would decode
    /// alone are left as their finals were (a window of one is not decoded again).
    fn decode_again(&mut self, audio: &[f32], placed: &[Placed]) {
        let mut again = Vec::new();
        for ready in redecode(audio, placed) {
            match ready {
                Ready::Window(joined) => again.push(joined),
                Ready::Alone { job_id, .. } => {
                    self.segments.remove(&job_id);
                }
            }
        }
        crate::metrics::global().revision_window(
            if again.is_empty() {
                RevisionOutcome::Dropped
            } else {
                RevisionOutcome::Redecoded
            },
            0,
        );
        tracing::debug!(
            utterances = placed.len(),
            windows = again.len(),
            "a revision window's word times are doubtful: decoded again in shorter windows"
        );
        for joined in again.into_iter().rev() {
            self.pending.push_front(joined);
        }
    }

    /// A revision is decoding, or one must still be decoded before the stream can close.
    fn outstanding(&self) -> bool {
        self.running.is_some() || (self.finishing && !self.pending.is_empty())
    }
}

/// Whether two texts say the same words: case, punctuation and spacing aside. A revision that
/// only moves a comma is not worth a client's redraw, nor a second keyword extraction.
fn same_words(a: &str, b: &str) -> bool {
    let letters = |t: &str| {
        t.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    letters(a) == letters(b)
}

impl Session {
    /// Revises this live session's finals in windows of up to `max_s` seconds joined as `join`
    /// says, when its options ask for revisions (`revisions`); `max_s` 0 turns them off. For
    /// sori's own protocol only: the others have no message to carry a revision.
    pub fn revise_live(&mut self, max_s: f64, join: WindowJoin) {
        self.revision_window = Some((max_s, join));
        self.apply_revision_option();
    }

    /// Starts or stops gathering as the session's `revisions` option says (at the start and
    /// after a `start` message). A window being gathered when they are turned off is dropped.
    pub(super) fn apply_revision_option(&mut self) {
        if self.revisions.is_none()
            && !self.file
            && let Some((max_s, join)) = self.revision_window
        {
            self.revisions = Windows::new(max_s, join.gap_s).map(Revisions::new);
            if self.revisions.is_some() && join.pause_s > 0.0 {
                self.vad.keep_gaps(join.pause_s);
            }
        }
        match self.revisions.as_mut() {
            Some(revisions) => revisions.set_enabled(self.options.revisions),
            None => self.options.revisions = false,
        }
    }

    /// `queue_final`'s hook: a copy of the utterance joins the revision window.
    pub(super) fn gather_for_revision(&mut self, segment_id: u64, utterance: &Utterance) {
        let Some(revisions) = self.revisions.as_mut().filter(|r| r.enabled) else {
            return;
        };
        revisions.segments.insert(
            segment_id,
            Segment {
                start_s: utterance.start_s(),
                end_s: utterance.end_s(),
                rms: utterance.rms,
                sent: None,
            },
        );
        revisions.last_end = Some(utterance.end_sample());
        let (ready, alone) = revisions.windows.add(
            segment_id,
            utterance.samples.clone(),
            utterance.lead.clone(),
        );
        for r in ready {
            revisions.take_ready(r);
        }
        if alone.is_some() {
            // Too long to share a window: its final already heard all it can.
            revisions.segments.remove(&segment_id);
        }
    }

    /// `complete_final`'s hook: the text the client was given for `segment_id`.
    pub(super) fn note_sent(&mut self, segment_id: u64, events: &[ServerMessage]) {
        let Some(segment) = self
            .revisions
            .as_mut()
            .and_then(|r| r.segments.get_mut(&segment_id))
        else {
            return;
        };
        let text = events.iter().find_map(|e| match e {
            ServerMessage::Final { text, .. } => Some(text.clone()),
            _ => None,
        });
        segment.sent = Some(text.unwrap_or_default());
    }

    /// Seals the window after [`QUIET_SEAL_S`] of silence (called as audio arrives).
    pub(super) fn seal_revision_when_quiet(&mut self) {
        let position = self.vad.position();
        let quiet = (QUIET_SEAL_S * f64::from(TARGET_SAMPLE_RATE)) as u64;
        if self.open_segment.is_some() {
            return;
        }
        if let Some(revisions) = self.revisions.as_mut()
            && revisions
                .last_end
                .is_some_and(|end| position >= end + quiet)
        {
            revisions.last_end = None;
            revisions.seal();
        }
    }

    /// The stream ended: the last window is sealed and decoded before the session closes.
    pub(super) fn finish_revisions(&mut self) {
        if let Some(revisions) = self.revisions.as_mut() {
            revisions.seal();
            revisions.finishing = true;
        }
    }

    /// Whether a revision can be handed out: a window waits, none is decoding, every final of
    /// the session has been released, and a worker is idle, or the stream ended (the last
    /// window then waits in the queue, where the first final or partial that finds no free
    /// worker cancels it: a closing session never waits long on a busy server for it).
    pub(super) fn revision_due(&self, worker_idle: bool) -> bool {
        self.revisions.as_ref().is_some_and(|r| {
            !r.pending.is_empty()
                && r.running.is_none()
                && (worker_idle || r.finishing)
                && self.waiting.is_empty()
                && self.final_order.is_empty()
        })
    }

    pub(super) fn revision_outstanding(&self) -> bool {
        self.revisions.as_ref().is_some_and(Revisions::outstanding)
    }

    /// The waiting window as a decode job. It is not counted in `in_flight`, which holds the
    /// session's final slots.
    pub(super) fn take_revision_job(&mut self) -> Option<Job> {
        if !self.revision_due(true) {
            return None;
        }
        let joined = self.revisions.as_mut()?.pending.pop_front()?;
        let start_s = joined
            .placed
            .first()
            .and_then(|p| self.revisions.as_ref()?.segments.get(&p.job_id))
            .map_or(0.0, |s| s.start_s);
        let job_id = self.new_job_id();
        let seconds = joined.audio.len() as f32 / TARGET_SAMPLE_RATE as f32;
        let mut opts = self.decode_options(seconds, true, None);
        opts.initial_prompt = self.prompt_at(start_s);
        self.in_window(&mut opts);
        opts.cancel = Some(Arc::default());
        tracing::debug!(
            job_id,
            utterances = joined.placed.len(),
            seconds,
            "revision window"
        );
        let audio: Arc<[f32]> = Arc::from(joined.audio);
        if let Some(revisions) = self.revisions.as_mut() {
            revisions.running = Some(Running {
                job_id,
                placed: joined.placed,
                audio: Arc::clone(&audio),
            });
        }
        Some(Job {
            job_id,
            audio,
            opts,
            priority: Priority::revision_due(Instant::now()),
            start_s,
        })
    }

    /// `on_outcome`'s hook: a revision's outcome becomes `revision` events (`None`); any
    /// other outcome is given back.
    pub(super) fn revision_outcome(&mut self, outcome: DecodeOutcome) -> Option<DecodeOutcome> {
        let Some(revisions) = self.revisions.as_mut().filter(|r| {
            r.running
                .as_ref()
                .is_some_and(|running| running.job_id == outcome.job_id)
        }) else {
            return Some(outcome);
        };
        let Running { placed, audio, .. } = revisions.running.take()?;
        let parts = match &outcome.result {
            Ok(window) if revisions.enabled => {
                let parts = split(window, &placed);
                if parts.is_none() {
                    revisions.decode_again(&audio, &placed);
                    return None;
                }
                parts
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "revision dropped: the finals stand");
                None
            }
        };
        let segments: Vec<(u64, Option<Segment>)> = placed
            .iter()
            .map(|p| (p.job_id, revisions.segments.remove(&p.job_id)))
            .collect();
        // A revision turned off while it decoded, or failed: dropped.
        let Some(parts) = parts else {
            crate::metrics::global().revision_window(RevisionOutcome::Dropped, 0);
            return None;
        };
        let before = self.summary.revisions;
        for ((segment_id, transcript), (_, segment)) in parts.into_iter().zip(segments) {
            let Some(segment) = segment else { continue };
            let meta = JobMeta {
                kind: JobKind::Final { speech_final: true },
                segment_id,
                start_s: segment.start_s,
                end_s: segment.end_s,
                rms: segment.rms,
                created: Instant::now(),
            };
            let text = self.clean_text(&transcript, &meta).unwrap_or_default();
            if segment
                .sent
                .as_deref()
                .is_some_and(|sent| same_words(sent, &text))
            {
                continue;
            }
            let words = if text.is_empty() {
                Vec::new()
            } else {
                self.absolute_words(&meta, &transcript, &text)
            };
            self.summary.revisions += 1;
            self.outbox.push(ServerMessage::Revision {
                segment_id,
                text,
                start: round_ms(meta.start_s),
                end: round_ms(meta.end_s),
                language: transcript.language,
                words,
                avg_logprob: transcript.avg_logprob,
                no_speech_prob: transcript.no_speech_prob,
            });
        }
        let revised = self.summary.revisions - before;
        crate::metrics::global().revision_window(RevisionOutcome::Decoded, revised);
        None
    }
}

#[cfg(test)]
#[path = "revise_tests.rs"]
mod tests;
