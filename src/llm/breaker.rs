//! A circuit breaker for an endpoint: after a failure, calls are refused for a while instead
//! of each waiting for its own timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Stops calling an endpoint that just failed for `rest`, then lets one trial call through;
/// its success closes the circuit, its failure opens it again (for twice as long, up to a minute).
pub struct Breaker {
    rest: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Clone, Copy)]
enum BreakerState {
    Closed,
    Open { until: Instant, rest: Duration },
    Trial { rest: Duration },
}

impl Breaker {
    pub fn new(rest: Duration) -> Self {
        Self {
            rest,
            state: Mutex::new(BreakerState::Closed),
        }
    }

    /// Whether a call may go out now; after the rest this lets exactly one trial through.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            BreakerState::Closed => true,
            BreakerState::Open { until, rest } if Instant::now() >= until => {
                *state = BreakerState::Trial { rest };
                true
            }
            BreakerState::Open { .. } | BreakerState::Trial { .. } => false,
        }
    }

    /// The endpoint answered: close the circuit.
    pub fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = BreakerState::Closed;
    }

    /// The endpoint failed: rest, twice as long as last time when the trial failed.
    pub fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rest = match *state {
            BreakerState::Trial { rest } | BreakerState::Open { rest, .. } => {
                (rest * 2).min(Duration::from_secs(60))
            }
            BreakerState::Closed => self.rest,
        };
        *state = BreakerState::Open {
            until: Instant::now() + rest,
            rest,
        };
    }

    /// "closed", "open" or "trial", for `/api/status`.
    pub fn state_name(&self) -> &'static str {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::Trial { .. } => "trial",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_rests_then_allows_one_trial() {
        let b = Breaker::new(Duration::from_millis(30));
        assert!(b.allow());
        b.failure();
        assert!(!b.allow(), "open right after a failure");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one trial after the rest");
        assert!(!b.allow(), "only one trial at a time");
        b.failure();
        assert_eq!(b.state_name(), "open");
        std::thread::sleep(Duration::from_millis(45));
        assert!(!b.allow(), "the second rest is twice as long");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.success();
        assert_eq!(b.state_name(), "closed");
        assert!(b.allow() && b.allow());
    }
}
