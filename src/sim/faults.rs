//! Fault injection of the simulated Kubernetes API server (a test double).
//!
//! Owns the faults that apply to every new request: forced 5xx answers until cleared,
//! and added latency. Faults that act on open connections (dropped or expired watches,
//! a stopped server) live with the watches and the server; the public switches for all
//! of them are methods on `SimCluster`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default)]
struct FaultState {
    fail_with: Option<u16>,
    latency: Duration,
}

/// The request-level faults currently switched on.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    state: Mutex<FaultState>,
}

impl Faults {
    fn with<T>(&self, f: impl FnOnce(&mut FaultState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every new request is answered with this status code until `clear_failure`.
    pub(crate) fn fail_with(&self, code: u16) {
        self.with(|s| s.fail_with = Some(code));
    }

    pub(crate) fn clear_failure(&self) {
        self.with(|s| s.fail_with = None);
    }

    pub(crate) fn failing(&self) -> Option<u16> {
        self.with(|s| s.fail_with)
    }

    /// Every new request waits this long (in tokio time) before it is handled.
    pub(crate) fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    pub(crate) fn latency(&self) -> Duration {
        self.with(|s| s.latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_last_until_cleared() {
        let f = Faults::default();
        assert_eq!(f.failing(), None);
        f.fail_with(503);
        assert_eq!(f.failing(), Some(503));
        f.clear_failure();
        assert_eq!(f.failing(), None);
        f.set_latency(Duration::from_millis(5));
        assert_eq!(f.latency(), Duration::from_millis(5));
    }
}
