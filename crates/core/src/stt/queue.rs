//! The decoder pool's queue: every session's requests in one place, taken by urgency rather
//! than arrival. Finals (and speculative finals) go before any partial, the one whose speech
//! ended first first; partials go by the time their session last got one, so every session
//! gets its turn; a live final's revision goes last. A final that finds every worker busy
//! cancels a running revision, else the partial started last, and a partial cancels a
//! revision, so each waits for one decode step instead of a whole decode: revisions only ever
//! use a worker nobody else needs.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::engine::DecodeRequest;

/// Which decodes go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// A final, or the speculative decode that becomes one: someone waits for it.
    Final,
    /// Text that will be replaced: worth a decode only when nothing else waits.
    Partial,
    /// Finals already sent, decoded again together for a better text (a live session's
    /// revision window): worth a decode only on a worker nobody else needs.
    Revision,
}

/// A request's place in the queue: its urgency, then its deadline (earlier first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub urgency: Urgency,
    /// For a final, when its speech ended; for a partial, when its session last had one.
    pub deadline: Instant,
}

impl Priority {
    pub fn final_due(deadline: Instant) -> Self {
        Self {
            urgency: Urgency::Final,
            deadline,
        }
    }

    pub fn partial_due(deadline: Instant) -> Self {
        Self {
            urgency: Urgency::Partial,
            deadline,
        }
    }

    pub fn revision_due(deadline: Instant) -> Self {
        Self {
            urgency: Urgency::Revision,
            deadline,
        }
    }
}

/// A request waiting for a worker, holding its place in the bounded queue until taken.
pub(super) struct Waiting {
    pub(super) request: DecodeRequest,
    pub(super) enqueued: Instant,
    pub(super) _place: OwnedSemaphorePermit,
    /// Arrival order: equal priorities are served first come, first served.
    seq: u64,
}

impl Waiting {
    fn key(&self) -> (Urgency, Instant, u64) {
        let p = self.request.priority;
        (p.urgency, p.deadline, self.seq)
    }
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.key().cmp(&other.key())
    }
}

/// What one worker is decoding.
#[derive(Clone)]
pub(super) struct Running {
    urgency: Urgency,
    started: Instant,
    cancel: Option<Arc<AtomicBool>>,
}

/// The queue and what each worker runs, behind the pool's one lock.
pub(super) struct Schedule {
    waiting: BinaryHeap<Reverse<Waiting>>,
    running: Vec<Option<Running>>,
    next_seq: u64,
    /// Set when the last pool handle is gone: workers finish what waits, then exit.
    pub(super) closed: bool,
}

impl Schedule {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            waiting: BinaryHeap::new(),
            running: vec![None; workers],
            next_seq: 0,
            closed: false,
        }
    }

    /// Queues a request. Returns true when it cancelled a less urgent running decode to make
    /// room.
    pub(super) fn push(&mut self, request: DecodeRequest, place: OwnedSemaphorePermit) -> bool {
        let urgency = request.priority.urgency;
        self.next_seq += 1;
        self.waiting.push(Reverse(Waiting {
            request,
            enqueued: Instant::now(),
            _place: place,
            seq: self.next_seq,
        }));
        self.preempt_for(urgency)
    }

    /// When more requests of `urgency` or above wait than workers are free, cancels every
    /// waiting revision and a running decode less urgent than `urgency`: the least urgent (a revision before a partial), the
    /// one started last among equals (the most left to do). A final may cancel a partial or
    /// a revision, a partial only a revision. A cancelled decode stops within one ggml graph
    /// step.
    fn preempt_for(&mut self, urgency: Urgency) -> bool {
        if urgency == Urgency::Revision {
            return false;
        }
        let waiting = self
            .waiting
            .iter()
            .filter(|w| w.0.request.priority.urgency <= urgency)
            .count();
        let free = self.running.iter().filter(|r| r.is_none()).count();
        if waiting <= free {
            return false;
        }
        // Revisions still waiting would only run on a worker nobody needs: there is none.
        for w in self.waiting.iter() {
            let request = &w.0.request;
            if request.priority.urgency == Urgency::Revision
                && let Some(cancel) = &request.opts.cancel
            {
                cancel.store(true, Ordering::Relaxed);
            }
        }
        let victim = self
            .running
            .iter()
            .flatten()
            .filter(|r| r.urgency > urgency)
            .filter_map(|r| r.cancel.as_ref().map(|c| ((r.urgency, r.started), c)))
            .filter(|(_, c)| !c.load(Ordering::Relaxed))
            .max_by_key(|(key, _)| *key);
        match victim {
            Some((_, cancel)) => {
                cancel.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The most urgent request, marked as running on `worker`.
    pub(super) fn take(&mut self, worker: usize) -> Option<Waiting> {
        let Reverse(next) = self.waiting.pop()?;
        self.running[worker] = Some(Running {
            urgency: next.request.priority.urgency,
            started: Instant::now(),
            cancel: next.request.opts.cancel.clone(),
        });
        Some(next)
    }

    pub(super) fn finished(&mut self, worker: usize) {
        self.running[worker] = None;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
