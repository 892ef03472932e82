//! Each open session's decode lag, for the server's monitor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The latest lag each open session reported (updated with its `status` events).
#[derive(Clone, Default)]
pub struct SessionLags(Arc<Mutex<HashMap<String, u64>>>);

impl SessionLags {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, session_id: &str, lag_ms: u64) {
        let mut lags = self.lock();
        match lags.get_mut(session_id) {
            Some(lag) => *lag = lag_ms,
            None => {
                lags.insert(session_id.to_owned(), lag_ms);
            }
        }
    }

    pub fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// The largest lag of any open session (0 when none).
    pub fn max(&self) -> u64 {
        self.lock().values().copied().max().unwrap_or(0)
    }
}
