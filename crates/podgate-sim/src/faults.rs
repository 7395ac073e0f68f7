//! Fault injection of the simulated Kubernetes API server (a test double).
//!
//! Owns the faults that apply to every new request: forced 5xx answers (until cleared
//! or for a while, in tokio time) and added latency. Faults that act on open connections (dropped or expired watches,
//! a stopped server) live with the watches and the server; the public switches for all
//! of them are methods on `SimCluster`.

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug, Default)]
struct FaultState {
    fail_with: Option<u16>,
    /// When set, `fail_with` ends at this instant.
    fail_until: Option<Instant>,
    latency: Duration,
}

/// The request-level faults currently switched on.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    state: Mutex<FaultState>,
}

impl Faults {
    fn with<T>(&self, f: impl FnOnce(&mut FaultState) -> T) -> T {
        f(&mut self.state.lock())
    }

    /// Every new request is answered with this status code until `clear_failure`.
    pub(crate) fn fail_with(&self, code: u16) {
        self.with(|s| {
            s.fail_with = Some(code);
            s.fail_until = None;
        });
    }

    /// Every new request is answered with this status code for `period` (tokio time).
    pub(crate) fn fail_for(&self, code: u16, period: Duration) {
        let until = Instant::now() + period;
        self.with(|s| {
            s.fail_with = Some(code);
            s.fail_until = Some(until);
        });
    }

    pub(crate) fn clear_failure(&self) {
        self.with(|s| {
            s.fail_with = None;
            s.fail_until = None;
        });
    }

    pub(crate) fn failing(&self) -> Option<u16> {
        self.with(|s| match s.fail_until {
            Some(until) if Instant::now() >= until => {
                s.fail_with = None;
                s.fail_until = None;
                None
            }
            _ => s.fail_with,
        })
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

    #[tokio::test(start_paused = true)]
    async fn timed_failures_end_by_themselves() {
        let f = Faults::default();
        f.fail_for(503, Duration::from_secs(10));
        assert_eq!(f.failing(), Some(503));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(f.failing(), Some(503));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(f.failing(), None);
    }

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
